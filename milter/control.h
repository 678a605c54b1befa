/*
 * control - the local control socket (unimilter stats / reset)
 *
 * DESCRIPTION  um_control_start() binds cfg->control_socket (giving it owner uid, group gid
 *              and control_socket_mode), then serves it from one thread until
 *              um_control_stop(). Requests reach the rate-limit store (stats, reset).
 * THREADS      Start and stop from the main thread; the server is one thread of its own.
 * ERRORS       um_control_start() returns 0, or -1 after logging why.
 */
#ifndef UM_CONTROL_H
#define UM_CONTROL_H

#include "daemon.h"

int um_control_start(struct um_daemon *d, const struct um_config *cfg, uid_t uid, gid_t gid);
void um_control_stop(struct um_daemon *d);

#endif
