/*
 * listen.c - the descriptor budget, and the guard on libmilter's accept()
 *
 * Design note. Every MTA connection costs one descriptor for as long as it lasts, and the
 * MTA, not we, decides how many there are. What used to happen when they ran out:
 *   - libmilter's listener (Debian 8.17, listener.c) treats a failing accept() (EMFILE) as
 *     a fault: it sleeps 1 s, then 2 s, 3 s, ... while the failures go on, and after 16 in a
 *     row it stops the milter. Connections queued meanwhile wait in the kernel's backlog
 *     with no answer for tens of seconds, and a long shortage ends the daemon.
 *   - a library that makes descriptors lazily may not survive: libunbound builds its worker
 *     (libevent base, pipes) at the first lookup and libevent exit()s the process when its
 *     socketpair fails. lib/dns.c now builds it before we serve; libunbound's outgoing
 *     sockets are capped (um_dns_new_capped) so lookups queue rather than fail.
 * libmilter offers no hook on its accept(), so we interpose the symbol: this file defines
 * accept(), the dynamic linker binds libmilter's call to it (an executable's definition
 * comes first in symbol lookup), and it calls accept4(..., 0), which is the same system
 * call under another name, so the real one is reached without dlsym. Only the listening
 * socket libmilter made (adopted by um_listen_adopt) is guarded; any other accept() passes
 * straight through. The guard never lets libmilter see a resource error: when it has to
 * say no it returns EINTR, which the listener retries at once without counting a failure
 * (after a short pause here, so it does not spin), and in between the listener checks
 * whether it was told to stop.
 *
 * The budget. limit is RLIMIT_NOFILE (the soft limit, first raised to the hard one);
 * reserve = limit/8 within [32, 4096] is kept for what sessions need besides their
 * connection (DNS sockets, the history database, Redis, notices). Two marks:
 *   refuse  in use >= limit - reserve: new connections are still accepted but refused at
 *           CONNECT with a tempfail (um_listen_short), so the MTA gets an answer at once
 *           and retries later, instead of waiting unanswered;
 *   hold    in use >= limit - reserve/2: the listener accepts nothing (the connection waits
 *           in the backlog) until descriptors come back, so refusals themselves cannot
 *           exhaust the reserve.
 * "In use" is the number of entries in /proc/self/fd, counted at most every 100 ms and
 * otherwise estimated as the last count plus the connections accepted since (an estimate
 * that only errs high); near the refuse mark it is counted every time. Without /proc the
 * lowest free descriptor number stands in (a lower bound).
 */
#include "listen.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

/* glibc has it under _GNU_SOURCE only; this file keeps POSIX names for accept()'s own
 * prototype (sys/socket.h), so it declares the one extension it needs itself. */
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

#define LISTEN_RESERVE_MIN 32
#define LISTEN_RESERVE_MAX 4096
#define LISTEN_RECOUNT_NS  (100LL * 1000 * 1000)
#define LISTEN_PAUSE_NS    (20L * 1000 * 1000)
#define LISTEN_WARN_EVERY  10 /* seconds between shortage warnings */

/*
 * The one guard of the process. libmilter's accept() call carries no user pointer, so this
 * state is reached through a static: limit, marks and log are written by um_listen_init()
 * before any thread exists; everything that changes later is atomic.
 */
static struct {
    long limit, refuse_at, hold_at;
    unsigned reserve;
    struct um_logger *log;
    _Atomic int lfd;               /* the adopted listener, or -1 */
    _Atomic bool stopping;         /* um_listen_stop(): accept nothing more */
    _Atomic long counted;          /* descriptors at the last count */
    _Atomic int64_t counted_at;    /* CLOCK_MONOTONIC ns of that count; 0: never */
    _Atomic long accepted_since;   /* connections accepted since that count */
    _Atomic int64_t warned_at;     /* last shortage warning, CLOCK_MONOTONIC s */
    _Atomic unsigned long refused; /* connections refused since the last warning */
    _Atomic unsigned long held;    /* listener pauses since the last warning */
} g = {.lfd = -1};

static int64_t
listen_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
listen_pause(void)
{
    struct timespec ts = {0, LISTEN_PAUSE_NS};

    nanosleep(&ts, NULL);
}

/* Open descriptors of this process; LONG_MAX when not even the count can get one. */
static long
listen_count(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;
    int fd;

    if (dir == NULL) {
        if (errno == EMFILE || errno == ENFILE)
            return LONG_MAX;
        /* No /proc: the lowest free number, which the kernel hands out first. */
        fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return errno == EMFILE ? LONG_MAX : 0;
        close(fd);
        return fd;
    }
    while ((e = readdir(dir)) != NULL) { /* NOLINT(concurrency-mt-unsafe): own DIR */
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(dir);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

long
um_listen_in_use(void)
{
    int64_t now = listen_now_ns();
    long est = atomic_load(&g.counted) + atomic_load(&g.accepted_since);

    if (atomic_load(&g.counted_at) == 0 || now - atomic_load(&g.counted_at) >= LISTEN_RECOUNT_NS
        || est >= g.refuse_at) {
        long n = listen_count();

        atomic_store(&g.accepted_since, 0);
        atomic_store(&g.counted, n);
        atomic_store(&g.counted_at, now);
        est = n;
    }
    return est;
}

/* One warning per LISTEN_WARN_EVERY seconds while the shortage lasts, with what it cost. */
static void
listen_warn(long in_use)
{
    int64_t now_s = listen_now_ns() / 1000000000LL, last = atomic_load(&g.warned_at);

    if (g.log == NULL || (last != 0 && now_s - last < LISTEN_WARN_EVERY)
        || !atomic_compare_exchange_strong(&g.warned_at, &last, now_s))
        return;
    um_log_msg(g.log, UM_LOG_WARNING, "resources",
               "file descriptors short: %ld of %ld in use (%u kept in reserve); new connections "
               "are refused with a tempfail (%lu so far) or wait in the backlog (%lu pauses); "
               "raise LimitNOFILE= or the MTA's process limits",
               in_use == LONG_MAX ? g.limit : in_use, g.limit, g.reserve,
               atomic_exchange(&g.refused, 0), atomic_exchange(&g.held, 0));
}

bool
um_listen_short(void)
{
    long n;

    if (g.limit == 0)
        return false;
    n = um_listen_in_use();
    if (n < g.refuse_at)
        return false;
    atomic_fetch_add(&g.refused, 1);
    listen_warn(n);
    return true;
}

int
accept(int fd, struct sockaddr *restrict addr, socklen_t *restrict len)
{
    long n;
    int c;

    if (fd < 0 || fd != atomic_load(&g.lfd))
        return accept4(fd, addr, len, 0);
    if (atomic_load(&g.stopping)) {
        /* No pause: libmilter calls us holding the lock smfi_stop() waits for; it checks
         * its stop flag as soon as we return. */
        errno = EINTR;
        return -1;
    }
    n = um_listen_in_use();
    if (n >= g.hold_at) {
        atomic_fetch_add(&g.held, 1);
        listen_warn(n);
        listen_pause();
        errno = EINTR;
        return -1;
    }
    c = accept4(fd, addr, len, 0);
    if (c >= 0) {
        atomic_fetch_add(&g.accepted_since, 1);
        return c;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        atomic_fetch_add(&g.held, 1);
        atomic_store(&g.counted_at, 0); /* count again next time */
        listen_warn(LONG_MAX);
        listen_pause();
        errno = EINTR;
    }
    return -1;
}

void
um_listen_init(struct um_logger *log, struct um_listen_budget *b)
{
    struct rlimit rl;
    char eb[128];

    g.log = log;
    memset(b, 0, sizeof(*b));
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    b->soft_before = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};

        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
        else
            um_log_msg(log, UM_LOG_DEBUG, "resources",
                       "cannot raise the descriptor limit from %lu to %lu: %s",
                       (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max,
                       um_strerror(errno, eb, sizeof(eb)));
    }
    g.limit =
        rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)INT_MAX ? INT_MAX : (long)rl.rlim_cur;
    g.reserve = (unsigned)(g.limit / 8);
    if (g.reserve < LISTEN_RESERVE_MIN)
        g.reserve = LISTEN_RESERVE_MIN;
    if (g.reserve > LISTEN_RESERVE_MAX)
        g.reserve = LISTEN_RESERVE_MAX;
    g.refuse_at = g.limit - (long)g.reserve;
    g.hold_at = g.limit - (long)g.reserve / 2;
    b->limit = g.limit;
    b->reserve = g.reserve;
    /* A quarter of the reserve for DNS: the rest covers history, Redis, notices, refusals. */
    b->dns_sockets = g.reserve / 4;
}

void
um_listen_adopt(int fd)
{
    atomic_store(&g.lfd, fd);
}

int
um_listen_find(void)
{
    int found = -1, n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        int v = 0;
        socklen_t vl = sizeof(v);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v != 0) {
            found = fd;
            n++;
        }
    }
    return n == 1 ? found : -1;
}

void
um_listen_stop(void)
{
    int fd = atomic_load(&g.lfd);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int c;

    atomic_store(&g.stopping, true);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    /* libmilter's listener sleeps in poll() for up to 5 s between looks at its stop flag,
     * holding the lock that smfi_stop() takes; a connection of our own (left unaccepted)
     * makes the listening socket readable and wakes it now. */
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (memcmp(&sin6->sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0)
            sin6->sin6_addr = in6addr_loopback;
    } else if (ss.ss_family != AF_UNIX) {
        return;
    }
    c = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c < 0)
        return;
    (void)connect(c, (struct sockaddr *)&ss, sl);
    close(c);
}
