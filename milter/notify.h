/*
 * notify - tell someone that a sender went over its rate limit (once per episode)
 *
 * DESCRIPTION  um_notify_ratelimit() runs the configured command and/or queues a mail to the
 *              configured address; it never blocks on either. um_notify_reap() reaps the
 *              commands that have exited (main loop, once a second); um_notify_release() is
 *              the submit queue's release function for the runtime reference a queued
 *              notice holds.
 * THREADS      um_notify_ratelimit() from any milter thread; reap from the main thread.
 */
#ifndef UM_NOTIFY_H
#define UM_NOTIFY_H

#include "daemon.h"

struct um_rl_notice {
    const char *sess, *key, *client_ip;
    unsigned count, limit, window, refused;
    const char *const *rcpts;
    size_t nrcpts;
};

void um_notify_ratelimit(struct um_daemon *d, struct um_runtime *rt, const struct um_rl_notice *n);
void um_notify_reap(struct um_daemon *d);
void um_notify_release(void *owner);

#endif
