/*
 * main.c - unimilter entry point: options, configuration, socket, privileges, signals
 *
 * Design note: libmilter's own signal thread (started inside smfi_main) takes SIGHUP and
 * SIGTERM as "stop" and does not wait for sessions in flight. Operators, logrotate and
 * `systemctl reload` send SIGHUP to reload, so we keep libmilter's thread from ever seeing
 * these signals in practice: smfi_main runs in a thread of its own (which, like every
 * thread we start, has HUP/USR1/TERM/INT blocked), while the main thread alone leaves them
 * unblocked with handlers that write the signal number to a self-pipe. Linux delivers a
 * process-directed signal to the main thread whenever that thread does not block it, so the
 * main loop reads the pipe and reloads (HUP, USR1) or drains and stops (TERM, INT). That
 * alone is not enough: a process-directed signal waits in the process's shared pending set
 * until some thread takes it, and a thread in sigwait() takes it from there whatever the
 * masks say, so under a stream of SIGHUPs libmilter's thread won one now and then and
 * stopped the milter. So its sigwait() never returns: this file defines sigwait(), the
 * dynamic linker binds libmilter's call to it (the executable's definition comes first),
 * and a call with libmilter's set {HUP, TERM, INT} just sleeps; any other set goes to
 * sigtimedwait(), the same wait under another name. Should smfi_main return on its own
 * anyway, we log it and exit non-zero so the supervisor restarts us; the MTA's
 * milter_default_action covers the gap. A reload builds a new snapshot off to the side and
 * publishes it only when it is valid; connections keep the snapshot they started with.
 */
#define _GNU_SOURCE /* setresuid, setresgid, setgroups */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "callbacks.h"
#include "cli.h"
#include "control.h"
#include "daemon.h"
#include "listen.h"
#include "notify.h"
#include "sdnotify.h"
#include "version.h"

#define UM_DEFAULT_CONFIG "/etc/unimilter/unimilter.conf"

/* The self-pipe written by the signal handler; set before the handlers are installed. */
static int main_sigpipe[2] = {-1, -1};
/* $NOTIFY_SOCKET, taken out of the environment by main_serve() before any thread exists (so
 * the programs we start do not inherit it); empty when no service manager asked. */
static char main_notify_socket[128];

static void
sink_stderr(void *arg, enum um_log_level level, const char *line, size_t len)
{
    char buf[UM_LOGLINE_MAX + 64];
    struct timespec ts;
    struct tm tm;
    int n;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ unimilter[%ld] %s: %.*s\n",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1000000, (long)getpid(), um_log_level_name(level), (int)len, line);
    if (n > 0)
        (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* The one sink the logger ever has: log.target is an atomic in the daemon, so a reload can
 * switch between syslog and stderr while other threads log (no function pointer changes).
 * With syslog and a terminal on stderr (an operator running it by hand), echo there too. */
static void
sink_daemon(void *arg, enum um_log_level level, const char *line, size_t len)
{
    struct um_daemon *d = arg;

    if (atomic_load(&d->log_target) != UM_LOG_TARGET_SYSLOG) {
        sink_stderr(NULL, level, line, len);
        return;
    }
    syslog((int)level, "%.*s", (int)len, line);
    if (d->log_tty)
        sink_stderr(NULL, level, line, len);
}

static void
usage(FILE *fp)
{
    fprintf(fp, "usage: unimilter [-c FILE] [-p SOCKET] [-n] [-V]\n"
                "  -c FILE    configuration file (default " UM_DEFAULT_CONFIG ")\n"
                "  -p SOCKET  listen here instead of the configured socket\n"
                "  -n         check the configuration and exit (0: valid, 1: not)\n"
                "  -V         print the versions of unimilter and its libraries\n");
}

struct main_ids {
    uid_t uid;
    gid_t gid;
    gid_t sock_gid;
    bool have_sock_gid;
    gid_t ctl_gid; /* control_socket_group */
    bool have_ctl_gid;
    bool drop;
    uid_t uid_for_keys; /* besides root, who may own key files */
};

/* Looks up user, group and socket group; errors name the file and line of the setting. */
static int
main_resolve_ids(const struct um_config *cfg, struct main_ids *ids, char *err, size_t errlen)
{
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    char buf[4096];

    memset(ids, 0, sizeof(*ids));
    ids->drop = geteuid() == 0;
    if (getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &pwp) != 0 || pwp == NULL) {
        if (ids->drop || cfg->line_user != 0) {
            snprintf(err, errlen, "%s:%d: user: no such user \"%s\"", cfg->path, cfg->line_user,
                     cfg->user);
            return -1;
        }
        ids->drop = false;
    } else {
        ids->uid = pw.pw_uid;
        ids->gid = pw.pw_gid;
    }
    if (cfg->group != NULL) {
        if (getgrnam_r(cfg->group, &gr, buf, sizeof(buf), &grp) != 0 || grp == NULL) {
            snprintf(err, errlen, "%s:%d: group: no such group \"%s\"", cfg->path, cfg->line_group,
                     cfg->group);
            return -1;
        }
        ids->gid = gr.gr_gid;
    }
    if (cfg->socket_group != NULL) {
        if (getgrnam_r(cfg->socket_group, &gr, buf, sizeof(buf), &grp) != 0 || grp == NULL) {
            snprintf(err, errlen, "%s:%d: socket_group: no such group \"%s\"", cfg->path,
                     cfg->line_socket_group, cfg->socket_group);
            return -1;
        }
        ids->sock_gid = gr.gr_gid;
        ids->have_sock_gid = true;
    }
    if (cfg->control_socket_group != NULL) {
        if (getgrnam_r(cfg->control_socket_group, &gr, buf, sizeof(buf), &grp) != 0
            || grp == NULL) {
            snprintf(err, errlen, "%s:%d: control_socket_group: no such group \"%s\"", cfg->path,
                     cfg->line_control_socket_group, cfg->control_socket_group);
            return -1;
        }
        ids->ctl_gid = gr.gr_gid;
        ids->have_ctl_gid = true;
    }
    return 0;
}

static const char *
main_unix_path(const char *sock)
{
    if (strncmp(sock, "unix:", 5) == 0)
        return sock + 5;
    if (strncmp(sock, "local:", 6) == 0)
        return sock + 6;
    return NULL;
}

/*
 * TCP_NODELAY on the inet listener. At end of message we answer with several small milter
 * replies in a row (each header edit, then the verdict), one write each inside libmilter.
 * With Nagle's algorithm the second write waits for the MTA's ACK of the first, which the
 * MTA delays (it has nothing to send while it waits for the verdict): a 40 ms stall per
 * message. libmilter offers no hook on its accept(), but Linux copies TCP_NODELAY from a
 * listening socket to the connections accepted on it, so we set it on the listener that
 * smfi_opensocket() made: the one TCP socket in accept state bound to our port.
 */
static void
main_tcp_nodelay(struct um_daemon *d, const char *sock)
{
    const char *colon = strchr(sock, ':');
    long port = colon != NULL ? strtol(colon + 1, NULL, 10) : 0;
    int set = 0;

    for (int fd = 0; fd < 1024 && port > 0; fd++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int v = 0, one = 1;
        socklen_t vl = sizeof(v);
        unsigned short p;

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) != 0 || v == 0)
            continue;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
            continue;
        if (ss.ss_family == AF_INET)
            p = ntohs(((const struct sockaddr_in *)(const void *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            p = ntohs(((const struct sockaddr_in6 *)(const void *)&ss)->sin6_port);
        else
            continue;
        if (p == port && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
            set++;
    }
    if (set == 0)
        um_log_msg(&d->log, UM_LOG_WARNING, "startup",
                   "socket %s: could not set TCP_NODELAY on the listener; replies at end of "
                   "message may wait for the MTA's delayed ACK",
                   sock);
}

static int
main_open_socket(struct um_daemon *d, const char *sock, const struct um_config *cfg,
                 const struct main_ids *ids)
{
    const char *path = main_unix_path(sock);
    mode_t old;
    int rc;

    if (path != NULL) {
        char dir[PATH_MAX];
        const char *slash = strrchr(path, '/');
        struct stat st;
        size_t n = (size_t)(slash - path);

        if (n >= sizeof(dir))
            n = sizeof(dir) - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
        if (n > 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
            um_log_msg(&d->log, UM_LOG_ERR, "startup",
                       "socket %s: directory %s does not exist (systemd creates it with "
                       "RuntimeDirectory=unimilter)",
                       sock, dir);
            return -1;
        }
        if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            um_log_msg(&d->log, UM_LOG_ERR, "startup",
                       "socket %s: %s exists and is not a socket; refusing to replace it", sock,
                       path);
            return -1;
        }
    }
    if (smfi_setconn(MSTR(sock)) != MI_SUCCESS) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "socket %s: smfi_setconn failed", sock);
        return -1;
    }
    /* Create the socket with no access for others; the configured mode is set below. */
    old = umask(0177);
    rc = smfi_opensocket(true); /* true: replace a stale unix socket */
    umask(old);
    if (rc != MI_SUCCESS) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup",
                   "socket %s: cannot listen (address in use, or no permission?)", sock);
        return -1;
    }
    if (path == NULL)
        main_tcp_nodelay(d, sock);
    if (path != NULL) {
        gid_t g = ids->have_sock_gid ? ids->sock_gid : (ids->drop ? ids->gid : (gid_t)-1);
        uid_t u = ids->drop ? ids->uid : (uid_t)-1;
        char eb[128];

        if ((u != (uid_t)-1 || g != (gid_t)-1) && chown(path, u, g) != 0) {
            um_log_msg(&d->log, UM_LOG_ERR, "startup", "socket %s: chown: %s", sock,
                       um_strerror(errno, eb, sizeof(eb)));
            return -1;
        }
        if (chmod(path, (mode_t)cfg->socket_mode) != 0) {
            um_log_msg(&d->log, UM_LOG_ERR, "startup", "socket %s: chmod: %s", sock,
                       um_strerror(errno, eb, sizeof(eb)));
            return -1;
        }
    }
    return 0;
}

/* setgroups, setresgid, setresuid, then prove that root cannot be regained. */
static int
main_drop_privileges(struct um_daemon *d, const struct um_config *cfg, const struct main_ids *ids)
{
    char eb[128];

    if (!ids->drop)
        return 0;
    if (ids->uid == 0) {
        um_log_msg(&d->log, UM_LOG_WARNING, "startup",
                   "user \"%s\" is root: running with full privileges", cfg->user);
        return 0;
    }
    if (setgroups(1, &ids->gid) != 0 || setresgid(ids->gid, ids->gid, ids->gid) != 0
        || setresuid(ids->uid, ids->uid, ids->uid) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "cannot switch to user %s: %s", cfg->user,
                   um_strerror(errno, eb, sizeof(eb)));
        return -1;
    }
    if (setuid(0) != -1 || seteuid(0) != -1 || getuid() == 0 || geteuid() == 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "root privileges could be regained; stopping");
        return -1;
    }
    um_log_msg(&d->log, UM_LOG_INFO, "startup", "running as user %s (uid %ld, gid %ld)", cfg->user,
               (long)ids->uid, (long)ids->gid);
    return 0;
}

/* The rate-limit store lives as long as the process; reloads swap only its policy. */
static int
main_ratelimit_init(struct um_daemon *d, const struct um_config *cfg)
{
    struct um_ratelimit_opts o = {0};
    struct um_error err = {0};
    size_t loaded = 0;

    o.max_senders = (size_t)cfg->ratelimit.max_senders;
    if (getrandom(o.seed, sizeof(o.seed), 0) != (ssize_t)sizeof(o.seed))
        o.seed[0] = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    if (cfg->ratelimit.backend == UM_RL_BACKEND_REDIS) {
        struct um_rlredis_opts ro = {0};
        ro.host = cfg->ratelimit.redis_host;
        ro.port = (unsigned)cfg->ratelimit.redis_port;
        ro.socket = cfg->ratelimit.redis_socket;
        ro.prefix = cfg->ratelimit.redis_prefix;
        ro.timeout_ms = (unsigned)cfg->ratelimit.redis_timeout_ms;
        if (um_rlstore_new_redis(&ro, &o, d->rt->rlpol, cfg->ratelimit.redis_on_error, &d->log,
                                 &d->rlstore, &err)
            != UM_OK) {
            um_log_msg(&d->log, UM_LOG_ERR, "startup", "%s: ratelimit.redis: %s", cfg->path,
                       err.msg);
            return -1;
        }
        um_log_msg(&d->log, UM_LOG_INFO, "ratelimit", "counting in Redis at %s",
                   cfg->ratelimit.redis_socket != NULL ? cfg->ratelimit.redis_socket
                                                       : cfg->ratelimit.redis_host);
    } else if (um_rlstore_new_memory(&o, d->rt->rlpol, &d->rlstore, &err) != UM_OK) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "rate limiter: %s", err.msg);
        return -1;
    }
    /* A shared store keeps the counts itself: no snapshot. */
    if (cfg->ratelimit.state_file != NULL && um_rlstore_has_snapshot(d->rlstore)) {
        if (um_rlstore_load(d->rlstore, cfg->ratelimit.state_file, (int64_t)time(NULL), &loaded,
                            &err)
            != UM_OK)
            um_log_msg(&d->log, UM_LOG_ERR, "ratelimit",
                       "saved counts damaged, loaded counts of %zu sender(s) from before the "
                       "damage: %s",
                       loaded, err.msg);
        else
            um_log_msg(&d->log, UM_LOG_INFO, "ratelimit", "loaded counts of %zu sender(s) from %s",
                       loaded, cfg->ratelimit.state_file);
    }
    return 0;
}

/* See the design note: libmilter's signal thread waits here for ever. */
int
sigwait(const sigset_t *restrict set, int *restrict sig)
{
    int r;

    if (sigismember(set, SIGHUP) == 1 && sigismember(set, SIGTERM) == 1
        && sigismember(set, SIGINT) == 1 && sigismember(set, SIGUSR1) == 0) {
        for (;;) {
            struct timespec ts = {86400, 0};
            nanosleep(&ts, NULL);
        }
    }
    do {
        r = sigtimedwait(set, NULL, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno;
    *sig = r;
    return 0;
}

static void
main_on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;

    (void)!write(main_sigpipe[1], &b, 1);
    errno = saved;
}

struct main_milter {
    pthread_t thread;
    _Atomic bool done;
    _Atomic bool stop_requested;
    int rc;
};

static void *
main_milter_thread(void *arg)
{
    struct main_milter *mm = arg;

    mm->rc = smfi_main();
    atomic_store(&mm->done, true);
    main_on_signal(0); /* wake the main loop */
    return NULL;
}

/* At start and at every reload (main thread only): log.target and log.level. */
static void
main_apply_logging(struct um_daemon *d, const struct um_config *cfg)
{
    if (cfg->log_target == UM_LOG_TARGET_SYSLOG && !d->log_opened) {
        openlog("unimilter", LOG_PID | LOG_NDELAY, LOG_MAIL);
        d->log_opened = true;
    }
    atomic_store(&d->log_target, (int)cfg->log_target);
    um_logger_set_level(&d->log, cfg->log_level);
}

static void
main_reload(struct um_daemon *d, const char *path, const char *sock, bool overridden, uid_t key_uid)
{
    struct um_config *ncfg, *old;
    struct um_runtime *nrt;
    struct um_error err = {0};
    enum um_status st;

    if (um_config_load(path, &ncfg, &err) != UM_OK) {
        um_log_msg(&d->log, UM_LOG_ERR, "reload",
                   "new configuration rejected, the running one stays: %s", err.msg);
        return;
    }
    st = um_runtime_build(ncfg, key_uid, d->dns, &nrt, &err);
    um_config_unref(ncfg);
    if (st != UM_OK) {
        um_log_msg(&d->log, UM_LOG_ERR, "reload",
                   "new configuration rejected, the running one stays: %s", err.msg);
        return;
    }
    old = um_daemon_config(d);
    if (!overridden && strcmp(sock, nrt->cfg->socket) != 0)
        um_log_msg(&d->log, UM_LOG_WARNING, "reload",
                   "socket changed to %s: takes effect at the next restart", nrt->cfg->socket);
    if (strcmp(old->user, nrt->cfg->user) != 0 || (old->group == NULL) != (nrt->cfg->group == NULL)
        || (old->group != NULL && strcmp(old->group, nrt->cfg->group) != 0))
        um_log_msg(&d->log, UM_LOG_WARNING, "reload",
                   "user/group changed: takes effect at the next restart");
    if (old->ratelimit.backend != nrt->cfg->ratelimit.backend)
        um_log_msg(&d->log, UM_LOG_WARNING, "reload",
                   "ratelimit.backend changed: takes effect at the next restart");
    if ((old->control_socket == NULL) != (nrt->cfg->control_socket == NULL)
        || (old->control_socket != NULL
            && strcmp(old->control_socket, nrt->cfg->control_socket) != 0)
        || old->control_socket_mode != nrt->cfg->control_socket_mode
        || (old->control_socket_group == NULL) != (nrt->cfg->control_socket_group == NULL)
        || (old->control_socket_group != NULL
            && strcmp(old->control_socket_group, nrt->cfg->control_socket_group) != 0))
        um_log_msg(&d->log, UM_LOG_WARNING, "reload",
                   "control socket settings changed: take effect at the next restart");
    if (old->ndns_servers != nrt->cfg->ndns_servers || old->dns_timeout != nrt->cfg->dns_timeout)
        um_log_msg(&d->log, UM_LOG_WARNING, "reload",
                   "dns settings changed: take effect at the next restart");
    um_config_unref(old);
    /* Counts survive: only the policy (limits, overrides, exemptions) is swapped. */
    um_rlstore_set_policy(d->rlstore, nrt->rlpol, nrt->cfg->ratelimit.redis_on_error);
    um_daemon_publish(d, nrt);
    main_apply_logging(d, nrt->cfg);
    um_log_msg(&d->log, UM_LOG_INFO, "reload", "configuration %s loaded", path);
}

/* Writes the rate-limit counts to the state file, if one is configured. */
static void
main_save_state(struct um_daemon *d, bool at_exit)
{
    struct um_config *cfg = um_daemon_config(d);
    struct um_error err = {0};

    if (cfg->ratelimit.state_file != NULL && um_rlstore_has_snapshot(d->rlstore)) {
        if (um_rlstore_save(d->rlstore, cfg->ratelimit.state_file, (int64_t)time(NULL), &err)
            != UM_OK)
            um_log_msg(&d->log, UM_LOG_ERR, "ratelimit", "cannot save counts: %s", err.msg);
        else if (at_exit)
            um_log_msg(&d->log, UM_LOG_INFO, "ratelimit", "counts saved to %s",
                       cfg->ratelimit.state_file);
    }
    um_config_unref(cfg);
}

static int
main_snapshot_interval(struct um_daemon *d)
{
    struct um_config *cfg = um_daemon_config(d);
    int v = cfg->ratelimit.snapshot_interval;

    um_config_unref(cfg);
    return v;
}

/* Creates the one resolver and rebuilds the first runtime with the inbound checks. */
static int
main_start_inbound(struct um_daemon *d, uid_t key_uid, unsigned dns_sockets)
{
    struct um_config *cfg = um_daemon_config(d);
    struct um_runtime *nrt;
    struct um_error err = {0};
    int rc = -1;

    if (um_dns_new_capped((const char *const *)cfg->dns_servers, cfg->ndns_servers,
                          (unsigned)cfg->dns_timeout, dns_sockets, &d->dns, &err)
        != UM_OK) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "%s: dns: %s", cfg->path, err.msg);
    } else if (um_runtime_build(cfg, key_uid, d->dns, &nrt, &err) != UM_OK) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "%s", err.msg);
    } else {
        um_daemon_publish(d, nrt);
        rc = 0;
    }
    um_config_unref(cfg);
    return rc;
}

static void
main_history_error(void *arg, bool ok, const char *msg)
{
    struct um_daemon *d = arg;

    um_log_msg(&d->log, ok ? UM_LOG_INFO : UM_LOG_ERR, "history", "%s", msg);
}

/* Opened as the run user, so the file belongs to it; a failure costs the history, not mail. */
static void
main_history_open(struct um_daemon *d)
{
    struct um_config *cfg = um_daemon_config(d);
    struct um_error err = {0};

    bool pg = cfg->reports.history_store == UM_HISTORY_STORE_POSTGRESQL;
    const char *target = pg ? cfg->reports.postgresql : cfg->reports.history_file;

    if (pg && target == NULL) {
        um_log_msg(&d->log, UM_LOG_ERR, "history",
                   "%s: reports.history_store is postgresql but reports.postgresql is empty: "
                   "DMARC evaluations will not be recorded",
                   cfg->path);
    } else if (target != NULL) {
        if (um_history_open_store(cfg->reports.history_store, target,
                                  (size_t)cfg->reports.history_queue, &d->history, &err)
            != UM_OK)
            um_log_msg(&d->log, UM_LOG_ERR, "history",
                       "%s:%s: DMARC evaluations will not be recorded", cfg->path, err.msg);
        else
            um_history_on_error(d->history, main_history_error, d);
    }
    um_config_unref(cfg);
}

/* The notice queue's thread: after the signal mask, as the run user. Without it, notices
 * are logged but not mailed (the log line says so). */
static void
main_submit_open(struct um_daemon *d)
{
    const struct um_submitq_params p = {
        .max_jobs = UM_SUBMITQ_MAX_JOBS,
        .max_attempts = UM_SUBMITQ_MAX_ATTEMPTS,
        .first_backoff_ms = UM_SUBMITQ_FIRST_BACKOFF,
        .max_backoff_ms = UM_SUBMITQ_MAX_BACKOFF,
        .release = um_notify_release,
        .log = &d->log,
    };
    struct um_error err = {0};

    if (um_submitq_new(&p, &d->submitq, &err) != UM_OK)
        um_log_msg(&d->log, UM_LOG_ERR, "submit", "%s: notices will not be mailed", err.msg);
}

/* Tells systemd (Type=notify) our state; a failure is logged and changes nothing else. */
static void
main_notify(struct um_daemon *d, const char *state)
{
    char err[300];

    if (um_sdnotify_send(main_notify_socket, state, err, sizeof(err)) < 0)
        um_log_msg(&d->log, UM_LOG_WARNING, "startup", "%s", err);
}

/* SIGTERM: refuse new messages, wait (bounded) for those in flight, stop libmilter. */
static void
main_drain(struct um_daemon *d, struct main_milter *mm)
{
    struct um_config *cfg = um_daemon_config(d);
    int waited_ms = 0, limit_ms = cfg->shutdown_timeout * 1000;

    um_config_unref(cfg);
    main_notify(d, "STOPPING=1");
    atomic_store(&d->draining, true);
    um_log_msg(&d->log, UM_LOG_INFO, "shutdown",
               "stopping: waiting up to %d s for %d message(s) in flight", limit_ms / 1000,
               atomic_load(&d->inflight));
    while (atomic_load(&d->inflight) > 0 && waited_ms < limit_ms && !atomic_load(&mm->done)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited_ms += 50;
    }
    if (atomic_load(&d->inflight) > 0)
        um_log_msg(&d->log, UM_LOG_WARNING, "shutdown",
                   "%d message(s) still in flight after %d s; the MTA applies its "
                   "milter_default_action to them",
                   atomic_load(&d->inflight), limit_ms / 1000);
    atomic_store(&mm->stop_requested, true);
    /* Wake libmilter's listener first: it holds the lock smfi_stop() needs for as long as
     * it sleeps in poll() (up to 5 s); woken, it lets go at once (listen.c). */
    um_listen_stop();
    (void)smfi_stop();
}

/* The milter socket file as we created it, so that exit removes that file and no other. */
struct main_sockfile {
    const char *path; /* NULL: not a unix socket, or not created */
    dev_t dev;
    ino_t ino;
};

static void
main_sockfile_note(struct main_sockfile *sf, const char *sock)
{
    struct stat st;

    sf->path = main_unix_path(sock);
    if (sf->path != NULL && stat(sf->path, &st) == 0) {
        sf->dev = st.st_dev;
        sf->ino = st.st_ino;
    } else {
        sf->path = NULL;
    }
}

/*
 * Removing a socket file needs write access to its directory, checked as the run user after
 * the privilege drop: when it is missing (a root-owned directory made by hand) the file
 * stays behind at exit. That is harmless (the next start replaces it), but it is said once,
 * at start, with the fix, rather than found later.
 */
static void
main_check_socket_dir(struct um_daemon *d, const char *what, const char *file,
                      const struct um_config *cfg)
{
    char dir[PATH_MAX];
    const char *slash = file != NULL ? strrchr(file, '/') : NULL;
    size_t n;

    if (slash == NULL)
        return;
    n = slash == file ? 1 : (size_t)(slash - file);
    if (n >= sizeof(dir))
        return;
    memcpy(dir, file, n);
    dir[n] = '\0';
    if (access(dir, W_OK | X_OK) != 0)
        um_log_msg(&d->log, UM_LOG_WARNING, "startup",
                   "%s %s: user %s cannot write its directory %s, so the socket file will stay "
                   "behind at exit (the next start replaces it); give the directory to that "
                   "user (systemd's RuntimeDirectory= does)",
                   what, file, cfg->user, dir);
}

static void
main_sockfile_remove(struct um_daemon *d, struct main_sockfile *sf)
{
    struct stat st;
    char eb[128];

    if (sf->path == NULL)
        return;
    /* Only the file we made: a successor may already have put its own there. */
    if (lstat(sf->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sf->dev
        && st.st_ino == sf->ino && unlink(sf->path) != 0 && errno != ENOENT)
        um_log_msg(&d->log, UM_LOG_WARNING, "shutdown", "socket %s stays behind: unlink: %s",
                   sf->path, um_strerror(errno, eb, sizeof(eb)));
    sf->path = NULL;
}

/* Milliseconds on CLOCK_MONOTONIC: timers here must not follow the wall clock. */
static int64_t
main_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The main thread's loop: signals arrive as bytes on the self-pipe, the rate-limit snapshot
 * is due on a monotonic deadline. Each turn first writes the snapshot if it is due, then
 * waits for signals no longer than until the next one, then takes every byte pending at
 * once: any number of SIGHUPs received meanwhile is one reload. So no stream of signals can
 * postpone the snapshot (a reload per signal used to keep the loop from ever reaching it).
 */
static void
main_loop(struct um_daemon *d, struct main_milter *mm, const char *path, const char *sock,
          bool overridden, const struct main_ids *ids)
{
    int64_t next_save = main_now_ms() + (int64_t)main_snapshot_interval(d) * 1000;
    bool stopping = false;

    while (!atomic_load(&mm->done)) {
        struct pollfd pfd = {main_sigpipe[0], POLLIN, 0};
        unsigned char buf[256];
        bool reload = false, stop = false;
        int64_t now = main_now_ms(), wait_ms;
        ssize_t n;

        um_notify_reap(d); /* notify commands (the submit queue waits for its own) */
        if (now >= next_save) {
            main_save_state(d, false);
            next_save = now + (int64_t)main_snapshot_interval(d) * 1000;
        }
        wait_ms = next_save - now;
        if (wait_ms > 1000)
            wait_ms = 1000;
        if (wait_ms < 0)
            wait_ms = 0;
        if (poll(&pfd, 1, (int)wait_ms) <= 0)
            continue;
        while ((n = read(main_sigpipe[0], buf, sizeof(buf))) > 0) {
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == SIGHUP || buf[i] == SIGUSR1)
                    reload = true;
                else if (buf[i] == SIGTERM || buf[i] == SIGINT)
                    stop = true;
            }
        }
        if (stop && !stopping) {
            stopping = true;
            main_drain(d, mm);
        } else if (reload && !stopping) {
            char state[64];
            struct timespec ts;

            /* systemd >= 253 wants the monotonic time with RELOADING=1; older ones ignore it */
            clock_gettime(CLOCK_MONOTONIC, &ts);
            snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
                     (unsigned long long)ts.tv_sec * 1000000ULL
                         + (unsigned long long)ts.tv_nsec / 1000ULL);
            main_notify(d, state);
            main_reload(d, path, sock, overridden, ids->uid_for_keys);
            main_notify(d, "READY=1");
        }
    }
}

static int
main_serve(struct um_daemon *d, const char *path, const char *sock, bool overridden,
           const struct main_ids *ids)
{
    struct main_milter mm = {0};
    struct main_sockfile sf = {0};
    struct um_listen_budget budget;
    sigset_t set;
    struct sigaction sa;
    struct um_config *cfg = um_daemon_config(d);
    int rc = 0, lfd;
    const char *ns = getenv("NOTIFY_SOCKET");

    if (ns != NULL && strlen(ns) < sizeof(main_notify_socket))
        memcpy(main_notify_socket, ns, strlen(ns) + 1);
    else if (ns != NULL)
        um_log_msg(&d->log, UM_LOG_WARNING, "startup",
                   "NOTIFY_SOCKET is longer than %zu bytes: ignored",
                   sizeof(main_notify_socket) - 1);
    (void)unsetenv("NOTIFY_SOCKET");
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Every thread created from here on inherits this mask. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (pipe(main_sigpipe) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "pipe failed");
        um_config_unref(cfg);
        return EX_OSERR;
    }
    (void)fcntl(main_sigpipe[0], F_SETFL, O_NONBLOCK);
    (void)fcntl(main_sigpipe[1], F_SETFL, O_NONBLOCK);
    (void)fcntl(main_sigpipe[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(main_sigpipe[1], F_SETFD, FD_CLOEXEC);

    /* Descriptors: the soft limit raised to the hard one; a reserve; DNS's share of it. */
    um_listen_init(&d->log, &budget);
    um_log_msg(&d->log, UM_LOG_INFO, "startup",
               "file descriptors: limit %ld (soft limit was %lu), %u kept in reserve, at most "
               "%u for DNS",
               budget.limit, (unsigned long)budget.soft_before, budget.reserve, budget.dns_sockets);
    /* The shared resolver starts threads: after the signal mask, before anything serves. */
    if (main_start_inbound(d, ids->uid_for_keys, budget.dns_sockets) != 0) {
        um_config_unref(cfg);
        return EX_CONFIG;
    }
    if (smfi_register(*um_callbacks_desc()) != MI_SUCCESS) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "smfi_register failed");
        um_config_unref(cfg);
        return EX_SOFTWARE;
    }
    /* Both sockets are created while we may still be root, then handed to the run user. */
    if (main_open_socket(d, sock, cfg, ids) != 0) {
        um_config_unref(cfg);
        return EX_OSERR;
    }
    main_sockfile_note(&sf, sock);
    /* Before the control socket exists, libmilter's is the one listening socket. */
    lfd = um_listen_find();
    if (lfd >= 0)
        um_listen_adopt(lfd);
    else
        um_log_msg(&d->log, UM_LOG_WARNING, "startup",
                   "socket %s: libmilter's listener not found; running out of descriptors "
                   "will make it pause for seconds",
                   sock);
    if (um_control_start(d, cfg, ids->drop ? ids->uid : (uid_t)-1,
                         ids->have_ctl_gid ? ids->ctl_gid : (ids->drop ? ids->gid : (gid_t)-1))
            != 0
        || main_drop_privileges(d, cfg, ids) != 0) {
        um_control_stop(d);
        main_sockfile_remove(d, &sf);
        um_config_unref(cfg);
        return EX_OSERR;
    }
    main_check_socket_dir(d, "socket", sf.path, cfg);
    main_check_socket_dir(d, "control socket",
                          cfg->control_socket != NULL
                                  && strncmp(cfg->control_socket, "unix:", 5) == 0
                              ? cfg->control_socket + 5
                              : cfg->control_socket,
                          cfg);
    um_config_unref(cfg);

    main_history_open(d);
    main_submit_open(d);
    if (pthread_create(&mm.thread, NULL, main_milter_thread, &mm) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "cannot start the milter thread");
        um_control_stop(d);
        main_sockfile_remove(d, &sf);
        return EX_OSERR;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    um_log_msg(&d->log, UM_LOG_INFO, "startup", "unimilter %s listening on %s", UM_VERSION, sock);
    /* Both sockets listen (libmilter's backlog holds early connections until its thread
     * accepts): only now may systemd call us started and let the MTA in. */
    main_notify(d, "READY=1");

    main_loop(d, &mm, path, sock, overridden, ids);
    pthread_join(mm.thread, NULL);
    main_sockfile_remove(d, &sf);
    um_control_stop(d);
    um_submitq_free(d->submitq); /* no milter thread is left to queue a notice */
    d->submitq = NULL;
    main_save_state(d, true);
    if (d->history != NULL) {
        struct um_history_stats hs;
        um_history_close(d->history, 2000, &hs);
        d->history = NULL;
        um_log_msg(&d->log, UM_LOG_INFO, "history",
                   "closed: %llu recorded, %llu dropped, %llu lost to store errors",
                   (unsigned long long)hs.written, (unsigned long long)hs.dropped,
                   (unsigned long long)hs.failed);
    }
    if (!atomic_load(&mm.stop_requested)) {
        um_log_msg(&d->log, UM_LOG_ERR, "shutdown",
                   "libmilter stopped without being asked (rc=%d); exiting for a restart", mm.rc);
        rc = EX_SOFTWARE;
    } else {
        um_log_msg(&d->log, UM_LOG_INFO, "shutdown", "stopped");
    }
    return rc;
}

int
main(int argc, char **argv)
{
    struct um_daemon d;
    struct um_error err = {0};
    struct um_config *cfg;
    struct main_ids ids;
    const char *path = UM_DEFAULT_CONFIG, *sock_override = NULL;
    bool check_only = false;
    char msg[512], *sock;
    struct um_runtime *rt;
    enum um_status st;
    int c, rc;

    /* A peer closing a socket (Redis, a notify pipe) must not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    /* libcurl (notices, reports over SMTP) is set up before any thread exists. */
    if (!um_submit_init()) {
        fprintf(stderr, "unimilter: cannot initialise libcurl\n");
        return EX_SOFTWARE;
    }
    /* Subcommands of the same binary: stats, reset, keygen, check-keys. */
    rc = um_cli_run(argc, argv);
    if (rc >= 0)
        return rc;
    while ((c = getopt(argc, argv, "c:p:nVh")) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'p':
            sock_override = optarg;
            break;
        case 'n':
            check_only = true;
            break;
        case 'V': {
            unsigned int ma = 0, mi = 0, pl = 0;
            um_version_print(stdout);
            (void)smfi_version(&ma, &mi, &pl);
            printf("libmilter %u.%u.%u\n", ma, mi, pl);
            return 0;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }

    if (um_config_load(path, &cfg, &err) != UM_OK) {
        fprintf(stderr, "unimilter: %s\n", err.msg);
        return check_only ? 1 : EX_CONFIG;
    }
    if (sock_override != NULL) {
        const char *why = NULL;
        if (!um_config_socket_valid(sock_override, &why)) {
            fprintf(stderr, "unimilter: -p %s: %s\n", sock_override, why);
            um_config_unref(cfg);
            return check_only ? 1 : EX_USAGE;
        }
    }
    if (main_resolve_ids(cfg, &ids, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "unimilter: %s\n", msg);
        um_config_unref(cfg);
        return check_only ? 1 : EX_CONFIG;
    }
    /* Keys may belong to root or to the user we will run as. */
    st = um_runtime_build(cfg, ids.drop ? ids.uid : geteuid(), NULL, &rt, &err);
    um_config_unref(cfg);
    if (st != UM_OK) {
        fprintf(stderr, "unimilter: %s\n", err.msg);
        return check_only ? 1 : EX_CONFIG;
    }
    cfg = rt->cfg;
    if (check_only) {
        printf("unimilter: %s: configuration OK\n", path);
        um_runtime_unref(rt);
        return 0;
    }

    memset(&d, 0, sizeof(d));
    pthread_mutex_init(&d.cfg_lock, NULL);
    pthread_mutex_init(&d.child_lock, NULL);
    atomic_init(&d.log_target, (int)UM_LOG_TARGET_STDERR);
    d.log_tty = isatty(STDERR_FILENO);
    um_logger_init(&d.log, sink_daemon, &d, UM_LOG_INFO);
    d.rt = rt;
    main_apply_logging(&d, cfg);
    if (main_ratelimit_init(&d, cfg) != 0) {
        um_runtime_unref(rt);
        return EX_SOFTWARE;
    }
    um_daemon_set(&d);
    /* A copy: the snapshot that holds cfg->socket may be freed by a reload. */
    sock = strdup(sock_override != NULL ? sock_override : cfg->socket);
    if (sock == NULL)
        return EX_OSERR;
    if (ids.drop)
        ids.uid_for_keys = ids.uid;
    else
        ids.uid_for_keys = geteuid();
    rc = main_serve(&d, path, sock, sock_override != NULL, &ids);
    free(sock);
    um_daemon_publish(&d, NULL);
    um_rlstore_free(d.rlstore);
    return rc;
}
