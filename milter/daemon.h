/*
 * daemon - process-wide state shared by the milter callbacks and the main thread
 *
 * DESCRIPTION  One struct um_daemon exists per process. main.c fills it before any thread
 *              starts and publishes its address once (um_daemon_set()); the callbacks reach
 *              it through um_daemon_get(), because libmilter gives callbacks no user pointer
 *              until smfi_setpriv().
 * THREADS      rt is swapped by the reload (main) thread under cfg_lock; readers take a
 *              reference with um_daemon_runtime() and keep it for a whole connection.
 *              Counters and flags are atomics. Nothing else in it changes after startup.
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
    _Atomic int log_target; /* enum um_log_target, switched by a reload */
    bool log_tty;           /* stderr is a terminal: syslog lines are echoed there */
    bool log_opened;        /* openlog() done (main thread only) */
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

/*
 * control.c: the local control socket (unimilter stats / reset). um_control_start() binds
 * cfg->control_socket (giving it owner uid, group gid and control_socket_mode), then serves
 * it from one thread until um_control_stop(). Returns 0, or -1 after logging why.
 */
int um_control_start(struct um_daemon *d, const struct um_config *cfg, uid_t uid, gid_t gid);
void um_control_stop(struct um_daemon *d);

/*
 * notify.c: um_notify_reap() reaps the notify commands that have exited (main loop, once a
 * second); um_notify_release() is the submit queue's release function for the runtime
 * reference a queued notice holds.
 */
void um_notify_reap(struct um_daemon *d);
void um_notify_release(void *owner);

/* cli.c: subcommands of the same binary (stats, reset, keygen, check-keys). Returns the
 * exit status, or -1 when argv[1] names no subcommand. */
int um_cli_run(int argc, char **argv);

/* callbacks.c: the filter description handed to smfi_register(). */
struct smfiDesc;
const struct smfiDesc *um_callbacks_desc(void);

#endif
