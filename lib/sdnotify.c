/*
 * sdnotify.c - sd_notify by hand
 *
 * Design note: the protocol is one datagram of newline-separated VAR=value lines to the
 * socket in $NOTIFY_SOCKET (systemd's sd_notify(3) documents it). Linking libsystemd for
 * that would add a dependency to a daemon that otherwise needs none of it, so we open a
 * SOCK_DGRAM socket, address it (a path, or '@' for the abstract namespace), send once with
 * MSG_NOSIGNAL and close. Work is bounded: one socket, one non-blocking send.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
um_sdnotify_send(const char *path, const char *state, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    size_t plen;
    socklen_t alen;
    ssize_t n;
    int fd, saved;

    if (path == NULL || path[0] == '\0')
        return 0;
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sun.sun_path)) {
        snprintf(err, errlen,
                 "NOTIFY_SOCKET \"%.100s\": not an absolute or abstract (@) socket "
                 "path of at most %zu bytes",
                 path, sizeof(sun.sun_path) - 1);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@') {
        sun.sun_path[0] = '\0'; /* abstract: the name's length, not a NUL, ends it */
        alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    } else {
        alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "NOTIFY_SOCKET %s: socket: %s", path, strerror(errno));
        return -1;
    }
    n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sun, alen);
    saved = errno;
    close(fd);
    if (n < 0 || (size_t)n != strlen(state)) {
        snprintf(err, errlen, "NOTIFY_SOCKET %s: cannot send \"%s\": %s", path, state,
                 n < 0 ? strerror(saved) : "short send");
        return -1;
    }
    return 1;
}
