/*
 * dns.c - libunbound wrapper: one context, one cache, a hard deadline per lookup
 *
 * Design note. libunbound's blocking ub_resolve() has no per-call timeout: an unresponsive
 * forwarder made it return only after 17 s (../shared/notes/libraries.md 5.1), which would
 * stall a milter thread far past the MTA's own timeouts. So every lookup here is
 * asynchronous, in libunbound's threaded mode (ub_ctx_async(ctx, 1)): the query goes to
 * libunbound's background worker (ub_resolve_async), which shares the context's cache, and
 * the caller sleeps on its own condition variable with a CLOCK_MONOTONIC deadline.
 *
 * Answers come back through one pipe (ub_fd) and are handed out by ub_process(), which runs
 * the callbacks in the thread that calls it. We give that job to one dispatcher thread of
 * our own, started by um_dns_new(): it polls ub_fd and a stop pipe and calls ub_process().
 * The callback only stores the result in the caller's struct dns_wait and signals it. (Had
 * each caller polled ub_fd itself, one caller could process another's answer while that
 * one sat in poll() until its own timeout.)
 *
 * Cancelling at the deadline. In threaded mode ub_cancel() marks the query cancelled under
 * libunbound's context lock, and the answer path reads that mark under the same lock before
 * it decides to call the callback. So: ub_cancel() == 0 means the callback will never run,
 * and the waiter (on the caller's stack) may go; UB_NOID means the answer was already taken
 * off the queue by the dispatcher, whose callback is about to run or has run, so we wait for
 * it without a deadline (it does no I/O: a few instructions away).
 *
 * Bounds. A lookup holds no lock of ours while waiting; the only lock is the waiter's own.
 * infra-cache-max-rtt is lowered to the timeout so libunbound's own per-server retry
 * schedule fits inside it and background work for a dead server stops soon after the caller
 * has given up. Names are checked before they reach the library (no escapes, no control
 * bytes). TXT rdata is parsed with every length checked against the RR's rdata length.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#define DNS_CLASS_IN       1
#define DNS_RCODE_NOERROR  0
#define DNS_RCODE_NXDOMAIN 3

struct um_dns {
    struct ub_ctx *ctx;
    unsigned timeout_s;
    int stop[2]; /* dispatcher stop pipe */
    pthread_t thread;
    bool thread_started;
    _Atomic bool broken; /* the dispatcher lost the answer pipe: lookups fail fast */
};

/* One lookup in flight; lives on the caller's stack until the callback ran or was cancelled. */
struct dns_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    struct ub_result *res;
};

const char *
um_dns_result_name(enum um_dns_result r)
{
    switch (r) {
    case UM_DNS_OK:
        return "ok";
    case UM_DNS_NXDOMAIN:
        return "nxdomain";
    case UM_DNS_NODATA:
        return "nodata";
    case UM_DNS_TEMPFAIL:
        return "tempfail";
    }
    return "unknown";
}

static const char *
dns_rcode_name(int rcode, char *buf, size_t len)
{
    static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                        "NXDOMAIN", "NOTIMP",  "REFUSED"};

    if (rcode >= 0 && (size_t)rcode < sizeof(names) / sizeof(names[0]))
        return names[rcode];
    snprintf(buf, len, "%d", rcode);
    return buf;
}

bool
um_dns_server_valid(const char *s, const char **why)
{
    char ip[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *at;
    size_t iplen;

    if (s == NULL || s[0] == '\0') {
        *why = "empty";
        return false;
    }
    at = strchr(s, '@');
    iplen = at != NULL ? (size_t)(at - s) : strlen(s);
    if (iplen == 0 || iplen >= sizeof(ip)) {
        *why = "not an IP address";
        return false;
    }
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1) {
        *why = "not an IP address";
        return false;
    }
    if (at != NULL) {
        unsigned long port = 0;
        const char *p = at + 1;

        if (*p == '\0') {
            *why = "empty port after '@'";
            return false;
        }
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9' || port > 65535) {
                *why = "port is not a number from 1 to 65535";
                return false;
            }
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (port == 0 || port > 65535) {
            *why = "port is not a number from 1 to 65535";
            return false;
        }
    }
    return true;
}

bool
um_dns_name_valid(const char *name)
{
    size_t len, label = 0;

    if (name == NULL)
        return false;
    len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > UM_DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (c < 0x21 || c > 0x7e || c == '\\')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

/* The dispatcher: hands answers to the waiting callers until told to stop. */
static void *
dns_dispatch(void *arg)
{
    struct um_dns *dns = arg;
    int fd = ub_fd(dns->ctx);

    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {dns->stop[0], POLLIN, 0}};

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents != 0)
            break;
        if (p[0].revents != 0 && ub_process(dns->ctx) != 0)
            break; /* the answer pipe is gone: lookups time out, so fail them fast */
    }
    atomic_store(&dns->broken, true);
    return NULL;
}

static enum um_status
dns_set_option(struct um_dns *dns, const char *opt, const char *val, struct um_error *err)
{
    int rc = ub_ctx_set_option(dns->ctx, opt, val);

    if (rc != 0)
        return um_error_set(err, UM_ETEMP, "dns: option %s %s: %s", opt, val, ub_strerror(rc));
    return UM_OK;
}

static enum um_status
dns_configure(struct um_dns *dns, const char *const *servers, size_t n, struct um_error *err)
{
    char ms[32];
    enum um_status st;
    int rc;

    if ((rc = ub_ctx_async(dns->ctx, 1)) != 0)
        return um_error_set(err, UM_ETEMP, "dns: threaded mode: %s", ub_strerror(rc));
    snprintf(ms, sizeof(ms), "%u", dns->timeout_s * 1000u);
    if ((st = dns_set_option(dns, "infra-cache-max-rtt:", ms, err)) != UM_OK)
        return st;
    /* Source ports from the ephemeral range only: the SELinux policy then needs no
     * name_bind on reserved or unreserved port types (selinux/unimilter.te). */
    if ((st = dns_set_option(dns, "outgoing-port-avoid:", "0-32767", err)) != UM_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        if ((rc = ub_ctx_set_fwd(dns->ctx, servers[i])) != 0)
            return um_error_set(err, UM_EINVAL, "dns: server \"%s\": %s", servers[i],
                                ub_strerror(rc));
    }
    if (n == 0 && (rc = ub_ctx_resolvconf(dns->ctx, NULL)) != 0)
        return um_error_set(err, rc == UB_READFILE ? UM_EIO : UM_EINVAL,
                            "dns: /etc/resolv.conf: %s", ub_strerror(rc));
    return UM_OK;
}

/* Starts the dispatcher with every signal blocked: signals belong to the daemon's threads. */
static enum um_status
dns_start_dispatcher(struct um_dns *dns, struct um_error *err)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&dns->thread, NULL, dns_dispatch, dns);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        char eb[128];
        return um_error_set(err, UM_ETEMP, "dns: cannot start a thread: %s",
                            um_strerror(rc, eb, sizeof(eb)));
    }
    dns->thread_started = true;
    return UM_OK;
}

enum um_status
um_dns_new(const char *const *servers, size_t n, unsigned timeout_s, struct um_dns **out,
           struct um_error *err)
{
    struct um_dns *dns;
    enum um_status st;
    const char *why;

    *out = NULL;
    if (timeout_s < 1 || timeout_s > UM_DNS_MAX_TIMEOUT)
        return um_error_set(err, UM_EINVAL, "dns: timeout %u s is not within 1-%d", timeout_s,
                            UM_DNS_MAX_TIMEOUT);
    if (n > UM_DNS_MAX_SERVERS)
        return um_error_set(err, UM_EINVAL, "dns: %zu servers; at most %d", n, UM_DNS_MAX_SERVERS);
    for (size_t i = 0; i < n; i++) {
        if (!um_dns_server_valid(servers[i], &why))
            return um_error_set(err, UM_EINVAL, "dns: server \"%s\": %s",
                                servers[i] != NULL ? servers[i] : "", why);
    }
    dns = calloc(1, sizeof(*dns));
    if (dns == NULL)
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    dns->stop[0] = dns->stop[1] = -1;
    dns->timeout_s = timeout_s;
    atomic_init(&dns->broken, false);
    dns->ctx = ub_ctx_create();
    if (dns->ctx == NULL) {
        st = um_error_set(err, UM_ETEMP, "dns: cannot create the resolver context");
        goto fail;
    }
    if ((st = dns_configure(dns, servers, n, err)) != UM_OK)
        goto fail;
    if (pipe(dns->stop) != 0) {
        dns->stop[0] = dns->stop[1] = -1;
        st = um_error_set(err, UM_ETEMP, "dns: pipe failed");
        goto fail;
    }
    if ((st = dns_start_dispatcher(dns, err)) != UM_OK)
        goto fail;
    *out = dns;
    return UM_OK;
fail:
    um_dns_free(dns);
    return st;
}

void
um_dns_free(struct um_dns *dns)
{
    if (dns == NULL)
        return;
    if (dns->thread_started) {
        (void)!write(dns->stop[1], "x", 1);
        pthread_join(dns->thread, NULL);
    }
    if (dns->stop[0] >= 0)
        close(dns->stop[0]);
    if (dns->stop[1] >= 0)
        close(dns->stop[1]);
    if (dns->ctx != NULL)
        ub_ctx_delete(dns->ctx);
    free(dns);
}

/* Runs in the dispatcher thread (inside ub_process). */
static void
dns_callback(void *arg, int err, struct ub_result *res)
{
    struct dns_wait *w = arg;

    pthread_mutex_lock(&w->mu);
    w->err = err;
    w->res = res;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int
dns_wait_init(struct dns_wait *w)
{
    pthread_condattr_t ca;
    int rc;

    memset(w, 0, sizeof(*w));
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        pthread_cond_destroy(&w->cv);
        return -1;
    }
    return 0;
}

static void
dns_wait_fini(struct dns_wait *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/*
 * Resolves name/qtype with the deadline. UM_OK with *res set (the callback's result, may be
 * NULL when *uberr is set), or UM_OK with *res NULL and reason set (timeout, library error);
 * UM_ENOMEM.
 */
static enum um_status
dns_resolve(struct um_dns *dns, const char *name, int qtype, struct ub_result **res, char *reason,
            size_t rlen, struct um_error *err)
{
    struct dns_wait w;
    struct timespec deadline;
    int rc, id = 0;

    *res = NULL;
    if (atomic_load(&dns->broken)) {
        snprintf(reason, rlen, "resolver stopped");
        return UM_OK;
    }
    if (dns_wait_init(&w) != 0)
        return um_error_set(err, UM_ENOMEM, "dns: cannot set up a wait");
    rc = ub_resolve_async(dns->ctx, name, qtype, DNS_CLASS_IN, &w, dns_callback, &id);
    if (rc != 0) {
        dns_wait_fini(&w);
        if (rc == UB_NOMEM)
            return um_error_set(err, UM_ENOMEM, "dns: out of memory");
        snprintf(reason, rlen, "resolver: %s", ub_strerror(rc));
        return UM_OK;
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)dns->timeout_s;
    pthread_mutex_lock(&w.mu);
    while (!w.done) {
        if (pthread_cond_timedwait(&w.cv, &w.mu, &deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&w.mu);
    if (!w.done && ub_cancel(dns->ctx, id) == 0) {
        /* Cancelled: the callback will never run. */
        dns_wait_fini(&w);
        snprintf(reason, rlen, "timed out after %u s", dns->timeout_s);
        return UM_OK;
    }
    /* Done, or the answer is being delivered right now: wait for the callback. */
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    dns_wait_fini(&w);
    if (w.err != 0 || w.res == NULL) {
        ub_resolve_free(w.res);
        if (w.err == UB_NOMEM)
            return um_error_set(err, UM_ENOMEM, "dns: out of memory");
        snprintf(reason, rlen, "resolver: %s", ub_strerror(w.err));
        return UM_OK;
    }
    *res = w.res;
    return UM_OK;
}

/* Maps a finished result to one of the four outcomes; reason is set for TEMPFAIL. */
static enum um_dns_result
dns_classify(const struct ub_result *r, char *reason, size_t rlen)
{
    char nb[16];

    if (r->bogus) {
        snprintf(reason, rlen, "DNSSEC bogus: %s", r->why_bogus != NULL ? r->why_bogus : "");
        return UM_DNS_TEMPFAIL;
    }
    if (r->rcode == DNS_RCODE_NXDOMAIN)
        return UM_DNS_NXDOMAIN;
    if (r->rcode != DNS_RCODE_NOERROR) {
        snprintf(reason, rlen, "rcode %s", dns_rcode_name(r->rcode, nb, sizeof(nb)));
        return UM_DNS_TEMPFAIL;
    }
    return r->havedata ? UM_DNS_OK : UM_DNS_NODATA;
}

enum um_status
um_dns_query(struct um_dns *dns, const char *name, int qtype, struct um_dns_answer **out,
             struct um_error *err)
{
    struct um_dns_answer *a;
    struct ub_result *r = NULL;
    enum um_status st;
    size_t n = 0;

    *out = NULL;
    if (!um_dns_name_valid(name))
        return um_error_set(err, UM_EINVAL, "dns: not a plain DNS name");
    if (qtype <= 0 || qtype > 65535)
        return um_error_set(err, UM_EINVAL, "dns: bad query type %d", qtype);
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    a->qtype = qtype;
    a->rcode = -1;
    st = dns_resolve(dns, name, qtype, &r, a->reason, sizeof(a->reason), err);
    if (st != UM_OK) {
        free(a);
        return st;
    }
    if (r == NULL) {
        a->result = UM_DNS_TEMPFAIL;
        *out = a;
        return UM_OK;
    }
    a->backend_ = r;
    a->rcode = r->rcode;
    a->secure = r->secure != 0;
    a->result = dns_classify(r, a->reason, sizeof(a->reason));
    if (r->answer_packet != NULL && r->answer_len > 0) {
        a->packet = r->answer_packet;
        a->packet_len = (size_t)r->answer_len;
    }
    if (a->result == UM_DNS_OK) {
        while (r->data != NULL && r->data[n] != NULL)
            n++;
        a->ttl = r->ttl > 0 ? (unsigned)r->ttl : 0;
        a->rdata = n > 0 ? calloc(n, sizeof(*a->rdata)) : NULL;
        if (n > 0 && a->rdata == NULL) {
            um_dns_answer_free(a);
            return um_error_set(err, UM_ENOMEM, "dns: out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            a->rdata[i].p = r->data[i];
            a->rdata[i].len = r->len[i] > 0 ? (size_t)r->len[i] : 0;
        }
        a->n = n;
        if (n == 0)
            a->result = UM_DNS_NODATA;
    }
    *out = a;
    return UM_OK;
}

void
um_dns_answer_free(struct um_dns_answer *ans)
{
    if (ans == NULL)
        return;
    ub_resolve_free(ans->backend_);
    free(ans->rdata);
    free(ans);
}

/*
 * TXT RDATA (RFC 1035 3.3.14) is one or more <character-string>s: a length byte and that
 * many bytes. Returns the joined length, or -1 when a length runs past the rdata.
 */
static long
dns_txt_joined_len(const unsigned char *p, size_t len)
{
    size_t i = 0, total = 0;

    while (i < len) {
        size_t sl = p[i];

        if (sl > len - i - 1)
            return -1;
        total += sl;
        i += 1 + sl;
    }
    return (long)total;
}

enum um_status
um_dns_txt(struct um_dns *dns, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    struct um_dns_answer *a;
    enum um_status st;
    size_t total = 0, o = 0;

    memset(res, 0, sizeof(*res));
    res->rcode = -1;
    res->result = UM_DNS_TEMPFAIL;
    if ((st = um_dns_query(dns, name, UM_DNS_TYPE_TXT, &a, err)) != UM_OK)
        return st;
    if (a == NULL) /* not reached: UM_OK always sets it (keeps the analyzer informed) */
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    res->rcode = a->rcode;
    res->result = a->result;
    memcpy(res->reason, a->reason, sizeof(res->reason));
    if (a->result != UM_DNS_OK || a->n == 0)
        goto out;
    for (size_t i = 0; i < a->n; i++) {
        long l = dns_txt_joined_len((const unsigned char *)a->rdata[i].p, a->rdata[i].len);

        if (l < 0) {
            res->result = UM_DNS_TEMPFAIL;
            snprintf(res->reason, sizeof(res->reason), "malformed TXT record %zu", i + 1);
            goto out;
        }
        total += (size_t)l + 1;
    }
    res->rec = calloc(a->n, sizeof(*res->rec));
    res->store_ = malloc(total > 0 ? total : 1);
    if (res->rec == NULL || res->store_ == NULL) {
        um_dns_answer_free(a);
        um_dns_txt_fini(res);
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    }
    for (size_t i = 0; i < a->n; i++) {
        const unsigned char *p = (const unsigned char *)a->rdata[i].p;
        size_t len = a->rdata[i].len, j = 0, start = o;

        while (j < len) {
            size_t sl = p[j];

            memcpy(res->store_ + o, p + j + 1, sl);
            o += sl;
            j += 1 + sl;
        }
        res->store_[o++] = '\0';
        res->rec[i].p = res->store_ + start;
        res->rec[i].len = o - start - 1;
    }
    res->n = a->n;
out:
    um_dns_answer_free(a);
    return UM_OK;
}

void
um_dns_txt_fini(struct um_dns_txt *res)
{
    if (res == NULL)
        return;
    free(res->rec);
    free(res->store_);
    res->rec = NULL;
    res->store_ = NULL;
    res->n = 0;
}
