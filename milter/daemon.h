/*
 * daemon - process-wide state shared by the milter callbacks and the main thread
 *
 * DESCRIPTION  One struct um_daemon exists per process. main.c fills it before any thread
 *              starts and publishes its address once (um_daemon_set()); the callbacks reach
 *              it through um_daemon_get(), because libmilter gives callbacks no user pointer
 *              until smfi_setpriv(). daemon.c holds these accessors and the one runtime
 *              swap; it includes no other milter/ header, so nothing depends on main.c.
 * THREADS      rt is swapped by the main thread (start, reload) with um_daemon_publish()
 *              under cfg_lock; readers take a reference with um_daemon_runtime() and keep
 *              it for a whole connection. Counters and flags are atomics. Nothing else in
 *              it changes after startup.
 */
#ifndef UM_DAEMON_H
#define UM_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "log.h"
#include "history.h"
#include "rlstore.h"
#include "runtime.h"
#include "submitq.h"

#define UM_MAX_CHILDREN 64 /* notify commands running at once, at most */

/* libmilter takes char * for strings it never writes; this drops the const once, here. */
#define MSTR(s) ((char *)(uintptr_t)(s))

struct um_daemon {
    pthread_mutex_t cfg_lock;
    struct um_runtime *rt; /* current snapshot; guarded by cfg_lock */
    struct um_logger log;
    _Atomic int log_target;     /* enum um_log_target, switched by a reload */
    bool log_tty;               /* stderr is a terminal: syslog lines are echoed there */
    bool log_opened;            /* openlog() done (main thread only) */
    struct um_rlstore *rlstore; /* process lifetime; its policy is swapped on reload */
    struct um_dns *dns;         /* process lifetime: the one shared resolver and cache */
    struct um_history *history; /* DMARC evaluations (NULL: not recorded); process lifetime */
    struct um_submitq *submitq; /* notices to mail; process lifetime */
    pthread_mutex_t child_lock; /* guards children: notify commands not yet reaped */
    pid_t children[UM_MAX_CHILDREN];
    size_t nchildren;

    _Atomic bool draining;    /* SIGTERM seen: no new messages */
    _Atomic int inflight;     /* messages between MAIL FROM and their end */
    _Atomic int connections;  /* open milter connections */
    _Atomic bool warned_name; /* one warning per process for a missing macro */
    _Atomic bool warned_port;
    _Atomic bool warned_uid;
};

void um_daemon_set(struct um_daemon *d);
struct um_daemon *um_daemon_get(void);
/* A counted reference to the current configuration; release with um_config_unref(). */
struct um_config *um_daemon_config(struct um_daemon *d);
/* A counted reference to the current runtime; release with um_runtime_unref(). */
struct um_runtime *um_daemon_runtime(struct um_daemon *d);
/* Makes rt (its reference passes to the daemon; NULL at exit) the current runtime and
 * drops the daemon's reference to the previous one. Main thread only. */
void um_daemon_publish(struct um_daemon *d, struct um_runtime *rt);

#endif
