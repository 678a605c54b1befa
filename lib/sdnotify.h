/*
 * sdnotify - the service manager's readiness protocol (sd_notify), without libsystemd
 *
 * DESCRIPTION  um_sdnotify_send() sends one state string ("READY=1", "RELOADING=1",
 *              "STOPPING=1", ...) as a single datagram to the AF_UNIX SOCK_DGRAM socket
 *              named by `path` (the value of $NOTIFY_SOCKET): a file system path when it
 *              starts with '/', the abstract namespace when it starts with '@' (the '@'
 *              becomes the leading NUL byte). A NULL or empty path means "not run by a
 *              service manager" and sends nothing.
 * THREADS      Reentrant: a socket per call, nothing shared.
 * ERRORS       1 sent; 0 nothing to do (no path); -1 with a message in err (bad path, or
 *              socket/sendto failed, errno text included).
 * LIMITS       One sendto(), non-blocking: never waits for the manager.
 */
#ifndef UM_SDNOTIFY_H
#define UM_SDNOTIFY_H

#include <stddef.h>

int um_sdnotify_send(const char *path, const char *state, char *err, size_t errlen);

#endif
