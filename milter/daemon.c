/*
 * daemon.c - the process-wide state: where callbacks find it, and the one runtime swap
 *
 * Design note: libmilter gives a callback no user pointer until smfi_setpriv(), so the
 * daemon's address is published once, before smfi_main(), and read from anywhere. The
 * configuration snapshot (struct um_runtime) is swapped by the main thread at start and at
 * every reload, always through um_daemon_publish(): one short critical section under
 * cfg_lock, the old snapshot released after it (connections that pinned it keep it alive).
 * This file has no libmilter and no other milter/ module in it, so everything else in
 * milter/ depends on it and it on nothing there (no cycle), and it is unit-tested as plain C.
 */
#include "daemon.h"

/* Written once by main() before any other thread exists; read-only afterwards. */
static struct um_daemon *daemon_current;

void
um_daemon_set(struct um_daemon *d)
{
    daemon_current = d;
}

struct um_daemon *
um_daemon_get(void)
{
    return daemon_current;
}

struct um_runtime *
um_daemon_runtime(struct um_daemon *d)
{
    struct um_runtime *rt;

    pthread_mutex_lock(&d->cfg_lock);
    rt = um_runtime_ref(d->rt);
    pthread_mutex_unlock(&d->cfg_lock);
    return rt;
}

struct um_config *
um_daemon_config(struct um_daemon *d)
{
    struct um_runtime *rt = um_daemon_runtime(d);
    struct um_config *cfg = um_config_ref(rt->cfg);

    um_runtime_unref(rt);
    return cfg;
}

void
um_daemon_publish(struct um_daemon *d, struct um_runtime *rt)
{
    struct um_runtime *old;

    pthread_mutex_lock(&d->cfg_lock);
    old = d->rt;
    d->rt = rt;
    pthread_mutex_unlock(&d->cfg_lock);
    um_runtime_unref(old);
}
