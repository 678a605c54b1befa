/*
 * control.c - the local control socket behind `unimilter stats` and `unimilter reset`
 *
 * Design note. One unix stream socket (control_socket), one thread, one request per
 * connection. The thread polls the listening socket and a stop pipe; for each connection it
 * reads one request line with a 2-second deadline and a 1100-byte bound, writes the whole
 * response with a fresh 2-second deadline, and closes (after draining, for at most 0.5 s,
 * what the client still sends: see control_linger()). So a stuck or malicious local client holds
 * the thread for at most CONTROL_TIMEOUT_MS per phase (a silent one: once), and no request can make it allocate
 * more than the response of 1000 senders. Access control is the socket file itself: created
 * under umask 0177, then given the daemon's user as owner, control_socket_group (default:
 * the daemon's group) and control_socket_mode (default 0600): by default only root and the
 * daemon's user may read the counts and reset them, not every member of the MTA's group
 * that may talk to the milter socket.
 *
 * Protocol (text, LF-terminated lines; a request may also end at EOF):
 *
 *   request                 response
 *   stats [N]               ok window=<s> limit=<default> tracked=<keys> max=<max_senders>
 *                           <count> <limit> <refused> <key>      top N senders (default 20,
 *                           ...                                  1..1000), busiest first
 *   reset <key>             ok reset <key>        | err no such sender
 *   anything else           err <text>
 *
 * Keys are untrusted bytes (envelope senders, SASL names): on the wire they are written
 * escaped as the log does it (um_log_escape: bytes outside printable ASCII, '\\' and '"' as
 * \xHH), and `reset` takes that same escaped form and decodes \xHH, so any key shown by
 * `stats` can be pasted back exactly. "err ratelimit is disabled" when the daemon runs
 * without a limiter or the current configuration says ratelimit.enabled = false. Each
 * reset is logged at info (event=control action=reset sender=... result=...).
 *
 * State. `control` below is the one mutable static here: um_control_start() fills it in the
 * main thread before the control thread exists, the control thread only reads it, and
 * um_control_stop() (main thread) touches it again only after joining that thread. So every
 * access is ordered by pthread_create/pthread_join; no lock is needed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "ratelimit.h"

#define CONTROL_TIMEOUT_MS    2000
#define CONTROL_REQUEST_MAX   1100 /* bytes of one request line, LF included */
#define CONTROL_LINGER_MS     500  /* at most this long draining after the answer */
#define CONTROL_STATS_DEFAULT 20
#define CONTROL_STATS_MAX     1000

/* Written once by um_control_start() before the thread starts; see the design note. */
static struct control_state {
    int lfd;
    int stop[2];
    pthread_t thread;
    bool running;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} control = {.lfd = -1, .stop = {-1, -1}};

/* A growable response buffer; on allocation failure it remembers that and stays usable. */
struct control_out {
    char *p;
    size_t len, cap;
    bool oom;
};

static void control_printf(struct control_out *o, const char *fmt, ...) UM_PRINTF(2, 3);

static void
control_printf(struct control_out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->oom)
        return;
    for (;;) {
        size_t room = o->cap - o->len;

        va_start(ap, fmt);
        n = vsnprintf(o->p != NULL ? o->p + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 > o->len + (size_t)n + 1 ? o->cap * 2 : o->len + (size_t)n + 256;
        char *np = realloc(o->p, ncap);
        if (np == NULL) {
            o->oom = true;
            return;
        }
        o->p = np;
        o->cap = ncap;
    }
}

static long
control_ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Reads one line (without LF) into buf. Returns its length, -1 on timeout/error, -2 when
 * longer than CONTROL_REQUEST_MAX. */
static long
control_read_request(int fd, char *buf, size_t cap, const struct timespec *deadline)
{
    size_t len = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        long left = control_ms_left(deadline);
        ssize_t n;
        char *nl;

        if (left == 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return -1;
        }
        if (n == 0) /* EOF: the request is what came */
            break;
        len += (size_t)n;
        buf[len] = '\0';
        nl = memchr(buf, '\n', len);
        if (nl != NULL) {
            if ((size_t)(nl - buf) + 1 > CONTROL_REQUEST_MAX)
                return -2;
            len = (size_t)(nl - buf);
            break;
        }
        if (len >= CONTROL_REQUEST_MAX)
            return -2;
    }
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    return (long)len;
}

static void
control_write_all(int fd, const char *p, size_t len, const struct timespec *deadline)
{
    while (len > 0) {
        struct pollfd pf = {fd, POLLOUT, 0};
        long left = control_ms_left(deadline);
        ssize_t n;

        if (left == 0 || poll(&pf, 1, (int)left) <= 0)
            return;
        n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Closing with unread request bytes makes the kernel send RST, which can destroy the answer
 * before the client reads it (an oversized request). So: end our side, then read and drop
 * what the client still sends, up to 64 KiB, until its EOF or the deadline.
 */
static void
control_linger(int fd, const struct timespec *deadline)
{
    char junk[4096];
    size_t total = 0;

    (void)shutdown(fd, SHUT_WR);
    while (total < 64 * 1024) {
        struct pollfd p = {fd, POLLIN, 0};
        long left = control_ms_left(deadline);
        ssize_t n;

        if (left == 0 || poll(&p, 1, (int)left) <= 0)
            return;
        n = read(fd, junk, sizeof(junk));
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return;
        total += (size_t)n;
    }
}

/* Decodes the escaped key form (\xHH) in place; returns the length, or -1 on a bad escape. */
static long
control_unescape(char *s, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') {
            s[o++] = s[i];
            continue;
        }
        if (i + 3 >= len || s[i + 1] != 'x' || um_hexval(s[i + 2]) < 0 || um_hexval(s[i + 3]) < 0)
            return -1;
        s[o++] = (char)(um_hexval(s[i + 2]) * 16 + um_hexval(s[i + 3]));
        i += 3;
    }
    return (long)o;
}

static void
control_stats(struct um_daemon *d, const char *arg, struct control_out *o)
{
    struct um_ratelimit_stat *st;
    struct um_ratelimit_totals t;
    struct um_config *cfg;
    unsigned long n = CONTROL_STATS_DEFAULT;
    size_t got = 0;
    struct um_error err = {0};
    char esc[UM_RATELIMIT_KEY_MAX * 4 + 1];

    if (arg != NULL) {
        char *end;

        errno = 0;
        n = strtoul(arg, &end, 10);
        if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0 || n < 1
            || n > CONTROL_STATS_MAX) {
            control_printf(o, "err stats: count must be 1 to %d\n", CONTROL_STATS_MAX);
            return;
        }
    }
    st = calloc(n, sizeof(*st));
    if (st == NULL) {
        control_printf(o, "err out of memory\n");
        return;
    }
    if (um_rlstore_stats(d->rlstore, (int64_t)time(NULL), st, n, &got, &t, &err) != UM_OK) {
        free(st);
        control_printf(o, "err %s: %s\n", um_rlstore_name(d->rlstore), err.msg);
        return;
    }
    cfg = um_daemon_config(d);
    control_printf(o, "ok window=%d limit=%d tracked=%zu max=%zu\n", cfg->ratelimit.window,
                   cfg->ratelimit.limit, t.tracked, t.max_senders);
    um_config_unref(cfg);
    for (size_t i = 0; i < got; i++) {
        um_log_escape(esc, sizeof(esc), st[i].key, st[i].key_len);
        control_printf(o, "%u %u %u %s\n", st[i].count, st[i].limit, st[i].refused, esc);
    }
    free(st);
}

static void
control_reset(struct um_daemon *d, char *arg, size_t len, struct control_out *o)
{
    struct um_error err = {0};
    struct um_logline l;
    enum um_status s;
    char esc[CONTROL_REQUEST_MAX * 4 + 1];
    long klen = control_unescape(arg, len);

    if (klen <= 0 || klen > UM_RATELIMIT_KEY_MAX) {
        control_printf(o, "err reset: bad sender key (escape bytes as \\xHH; 1 to %d bytes)\n",
                       UM_RATELIMIT_KEY_MAX);
        return;
    }
    s = um_rlstore_reset(d->rlstore, (struct um_str){arg, (size_t)klen}, &err);
    um_logline_init(&l, NULL, "control");
    um_logline_str(&l, "action", "reset");
    um_logline_mem(&l, "sender", arg, (size_t)klen);
    um_logline_str(&l, "result", s == UM_OK ? "reset" : s == UM_ENOENT ? "not-tracked" : "error");
    um_log_emit(&d->log, UM_LOG_INFO, &l);
    um_log_escape(esc, sizeof(esc), arg, (size_t)klen);
    if (s == UM_OK)
        control_printf(o, "ok reset %s\n", esc);
    else if (s == UM_ENOENT)
        control_printf(o, "err no such sender\n");
    else
        control_printf(o, "err reset: %s\n", err.msg);
}

/* No limiter, or the current configuration turns it off (its counts wait for a reload). */
static bool
control_rl_enabled(struct um_daemon *d)
{
    struct um_config *cfg;
    bool on;

    if (d->rlstore == NULL)
        return false;
    cfg = um_daemon_config(d);
    on = cfg->ratelimit.enabled;
    um_config_unref(cfg);
    return on;
}

static void
control_handle(struct um_daemon *d, int fd)
{
    struct control_out o = {0};
    struct timespec deadline;
    char req[CONTROL_REQUEST_MAX + 2];
    long len;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += CONTROL_TIMEOUT_MS / 1000;
    len = control_read_request(fd, req, sizeof(req), &deadline);
    if (len == -1) {
        control_printf(&o, "err timeout or read error\n");
    } else if (len == -2) {
        control_printf(&o, "err request longer than %d bytes\n", CONTROL_REQUEST_MAX);
    } else if (strcmp(req, "stats") == 0 || strncmp(req, "stats ", 6) == 0) {
        if (!control_rl_enabled(d))
            control_printf(&o, "err ratelimit is disabled\n");
        else
            control_stats(d, req[5] == ' ' ? req + 6 : NULL, &o);
    } else if (strncmp(req, "reset ", 6) == 0) {
        if (!control_rl_enabled(d))
            control_printf(&o, "err ratelimit is disabled\n");
        else
            control_reset(d, req + 6, (size_t)len - 6, &o);
    } else {
        control_printf(&o, "err unknown request (want: stats [N] | reset KEY)\n");
    }
    /* A fresh deadline for the answer: the read may have used up its own. */
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += CONTROL_TIMEOUT_MS / 1000;
    if (o.oom) {
        free(o.p);
        o.p = NULL;
        o.len = 0;
        control_write_all(fd, "err out of memory\n", 18, &deadline);
    } else {
        control_write_all(fd, o.p, o.len, &deadline);
    }
    free(o.p);
    if (len != -1) { /* a silent client gets no more of our time */
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += CONTROL_LINGER_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        control_linger(fd, &deadline);
    }
}

static void *
control_thread(void *arg)
{
    struct um_daemon *d = arg;

    for (;;) {
        struct pollfd p[2] = {{control.lfd, POLLIN, 0}, {control.stop[0], POLLIN, 0}};
        int fd;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents != 0)
            break;
        if (p[0].revents == 0)
            continue;
        fd = accept(control.lfd, NULL, NULL);
        if (fd < 0) {
            struct timespec ts = {0, 100 * 1000 * 1000}; /* EMFILE and friends: no spin */
            char eb[128];

            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                continue;
            um_log_msg(&d->log, UM_LOG_WARNING, "control", "accept on %s: %s", control.path,
                       um_strerror(errno, eb, sizeof(eb)));
            nanosleep(&ts, NULL);
            continue;
        }
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        (void)fcntl(fd, F_SETFL, O_NONBLOCK);
        control_handle(d, fd);
        close(fd);
    }
    return NULL;
}

/* Refuses a non-socket file and a socket some process still listens on; unlinks a stale one. */
static int
control_clear_path(struct um_daemon *d, const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    char eb[128];
    int fd;

    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup",
                   "control socket %s exists and is not a socket; refusing to replace it", path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
        close(fd);
        um_log_msg(&d->log, UM_LOG_ERR, "startup",
                   "control socket %s is in use (another unimilter running?)", path);
        return -1;
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0 && errno != ENOENT) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket %s: cannot remove stale: %s",
                   path, um_strerror(errno, eb, sizeof(eb)));
        return -1;
    }
    return 0;
}

static int
control_bind(struct um_daemon *d, const struct um_config *cfg, const char *path, uid_t uid,
             gid_t gid)
{
    struct sockaddr_un sa;
    mode_t old;
    char eb[128];
    int rc;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup",
                   "control socket %s: want an absolute path shorter than %zu bytes", path,
                   sizeof(sa.sun_path));
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (control_clear_path(d, path, &sa) != 0)
        return -1;
    control.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (control.lfd < 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket: %s",
                   um_strerror(errno, eb, sizeof(eb)));
        return -1;
    }
    (void)fcntl(control.lfd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(control.lfd, F_SETFL, O_NONBLOCK);
    old = umask(0177);
    rc = bind(control.lfd, (const struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket %s: bind: %s", path,
                   um_strerror(errno, eb, sizeof(eb)));
        return -1;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(path, uid, gid) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket %s: chown: %s", path,
                   um_strerror(errno, eb, sizeof(eb)));
        (void)unlink(path);
        return -1;
    }
    if (chmod(path, (mode_t)cfg->control_socket_mode) != 0 || listen(control.lfd, 16) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket %s: %s", path,
                   um_strerror(errno, eb, sizeof(eb)));
        (void)unlink(path);
        return -1;
    }
    return 0;
}

static void
control_close_fds(void)
{
    if (control.lfd >= 0)
        close(control.lfd);
    if (control.stop[0] >= 0)
        close(control.stop[0]);
    if (control.stop[1] >= 0)
        close(control.stop[1]);
    control.lfd = control.stop[0] = control.stop[1] = -1;
}

int
um_control_start(struct um_daemon *d, const struct um_config *cfg, uid_t uid, gid_t gid)
{
    const char *path = cfg->control_socket;
    sigset_t all, old;
    int rc;

    if (path == NULL || path[0] == '\0')
        return 0;
    if (strncmp(path, "unix:", 5) == 0)
        path += 5;
    if (control.running) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket already started");
        return -1;
    }
    if (control_bind(d, cfg, path, uid, gid) != 0) {
        control_close_fds();
        return -1;
    }
    memcpy(control.path, path, strlen(path) + 1);
    if (pipe(control.stop) != 0) {
        control.stop[0] = control.stop[1] = -1;
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket: pipe failed");
        goto fail;
    }
    (void)fcntl(control.stop[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(control.stop[1], F_SETFD, FD_CLOEXEC);
    /* The control thread takes no signals: they belong to main()'s loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&control.thread, NULL, control_thread, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "startup", "control socket: cannot start its thread");
        goto fail;
    }
    control.running = true;
    um_log_msg(&d->log, UM_LOG_INFO, "startup", "control socket %s ready", control.path);
    return 0;
fail:
    (void)unlink(control.path);
    control_close_fds();
    return -1;
}

void
um_control_stop(struct um_daemon *d)
{
    struct stat st;
    char eb[128];

    if (!control.running)
        return;
    (void)!write(control.stop[1], "x", 1);
    pthread_join(control.thread, NULL);
    control.running = false;
    control_close_fds();
    if (lstat(control.path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(control.path) != 0
        && errno != ENOENT)
        um_log_msg(&d->log, UM_LOG_WARNING, "shutdown",
                   "control socket %s stays behind: unlink: %s", control.path,
                   um_strerror(errno, eb, sizeof(eb)));
}
