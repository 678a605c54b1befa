/*
 * dns.c - libunbound wrapper: one context, one cache, a hard deadline per lookup
 *
 * Design note. libunbound's blocking ub_resolve() has no per-call timeout: an unresponsive
 * forwarder made it return only after 17 s (doc/libraries.md 5.1), which would
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
 * The answer cache. Even a libunbound cache hit travels caller -> libunbound's worker (a
 * pipe) -> our dispatcher (ub_fd) -> caller (a condition variable): three thread hops and
 * dozens of syscalls, which under load cost more CPU than anything else on the inbound path
 * (perf, strace -c: ~300 context switches per message). Mail checks ask the same names over
 * and over (SPF include chains, DKIM keys, _dmarc), so um_dns_query() first looks in a cache
 * of its own and answers a hit in the calling thread with one uncontended mutex and no
 * syscall (clock_gettime is the vDSO). The cache is a chained hash table (SipHash-2-4 under
 * a random per-instance seed: names come from whoever sends us mail, and an unkeyed hash
 * would let them pile every entry into one chain) plus an LRU list, both under one mutex
 * held only for the find-and-link arithmetic, never across the resolver, I/O or allocation.
 * An entry is one immutable allocation (key, copies of the reply packet and of each rdata)
 * with an atomic reference count: the table holds one, and each answer handed out holds
 * one, so a hit is "find, move to the LRU front, count++" under the lock and the caller
 * reads packet and rdata without it; eviction only unlinks, and whoever drops the last
 * reference frees (outside the lock). Fresh answers use the same entry form, cacheable or
 * not, so um_dns_answer_free() has one path. Only final answers (OK, NXDOMAIN, NODATA) with
 * a TTL above 0 are stored, until that TTL (capped, dns.h) runs out on CLOCK_MONOTONIC;
 * TEMPFAILs never are, so each lookup of a failing name goes back to libunbound (which
 * itself holds a SERVFAIL for about 5 s before asking the server again). The TTL is
 * libunbound's ub_result.ttl bounded by the reply packet's own TTLs (dns_packet_life: for
 * negative answers ub_result.ttl is not usable on its own). A racing miss on the same key
 * replaces the older entry (both are valid answers).
 *
 * Bounds. A lookup holds no lock of ours while waiting; the only lock is the waiter's own.
 * The cache holds at most max_entries entries and max_bytes bytes (the LRU end goes first);
 * a hit or an insert walks one hash chain, whose length the bucket count (a power of two
 * >= max_entries) and the keyed hash keep near one, and evicts only what it just exceeded.
 * infra-cache-max-rtt is lowered to the timeout so libunbound's own per-server retry
 * schedule fits inside it and background work for a dead server stops soon after the caller
 * has given up. The price (issue 12, measured against a real unbound forwarder on
 * 127.0.0.1): a server whose retransmit timeout reaches that cap, which takes about three
 * timeouts in a row, is "unusable" to libunbound, which then answers SERVFAIL for every
 * name without asking it until the server's infra entry expires: infra-host-ttl, 900 s by
 * default (infra-keep-probing did not bring it back in our runs). A forwarder times out in
 * libunbound's eyes whenever it is itself slow, e.g. while it retries a blackholed
 * authoritative server for longer than our timeout; 200 such lookups made every name fail
 * for over 7 minutes (the test stopped there), though the forwarder answered them at once.
 * So infra-host-ttl is short (twice the timeout, 10-60 s): a forwarder marked unusable is
 * asked again within that (tests/milter/t_dnsrecover.sh: 6 s after such an episode). A quick
 * SERVFAIL from the forwarder is an answer and harms nothing. Names are checked before they reach the library (no escapes, no control
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
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "domain.h"
#include "hash.h"

#define DNS_CLASS_IN       1
#define DNS_RCODE_NOERROR  0
#define DNS_RCODE_NXDOMAIN 3
#define DNS_TYPE_SOA       6

#define DNS_NS_PER_S          1000000000LL
#define DNS_KEY_MAX           (2 + UM_DNS_NAME_MAX) /* qtype, then the name */
#define DNS_CACHE_MIN_BUCKETS 16
#define DNS_CACHE_MAX_BUCKETS ((size_t)1 << 20)

/*
 * One stored answer. Everything but the links is immutable once the entry is published;
 * the links (hnext, newer, older) belong to the cache lock. refs counts the cache's
 * reference (while linked) plus one per answer that borrows it.
 */
struct dns_entry {
    struct dns_entry *hnext;         /* hash chain; after unlinking, a to-release list */
    struct dns_entry *newer, *older; /* LRU list */
    _Atomic size_t refs;
    uint64_t hash;
    int64_t expires; /* CLOCK_MONOTONIC ns; meaningful only while cached */
    size_t size;     /* bytes allocated, counted against max_bytes */
    enum um_dns_result result;
    int rcode;
    unsigned ttl;  /* reported with a fresh answer (um_dns_answer.ttl) */
    unsigned life; /* seconds it may be cached, before the caps; 0: never */
    bool secure;
    const unsigned char *packet; /* into this allocation, or NULL */
    size_t packet_len;
    const unsigned char *key; /* qtype (2 bytes, big-endian) + the name, lower-cased */
    size_t key_len;
    size_t n;
    struct um_str rdata[]; /* n of them; the bytes follow in this allocation */
};

struct dns_cache {
    pthread_mutex_t mu;
    struct dns_entry **buckets;
    size_t nbuckets; /* a power of two */
    struct dns_entry *newest, *oldest;
    size_t count, bytes, max_entries, max_bytes;
    uint64_t hits, misses, evictions;
    uint64_t seed[2]; /* SipHash key; immutable */
};

struct um_dns {
    struct ub_ctx *ctx;
    unsigned timeout_s;
    int stop[2]; /* dispatcher stop pipe */
    pthread_t thread;
    bool thread_started;
    _Atomic bool broken; /* the dispatcher lost the answer pipe: lookups fail fast */
    bool cache_ready;
    struct dns_cache cache;
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
    return name != NULL
           && um_domain_is_valid(um_str_of(name), UM_DOMAIN_FINAL_DOT | UM_DOMAIN_PRINTABLE);
}

/* --- the answer cache ------------------------------------------------------------------ */

static int64_t
dns_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * DNS_NS_PER_S + ts.tv_nsec;
}

/* The cache key of a valid name: qtype, then the name lower-cased without a trailing dot. */
static size_t
dns_cache_key(const char *name, int qtype, unsigned char key[DNS_KEY_MAX])
{
    size_t len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
        len--;
    key[0] = (unsigned char)((unsigned)qtype >> 8);
    key[1] = (unsigned char)qtype;
    um_ascii_lower((char *)key + 2, name, len);
    return 2 + len;
}

static void
dns_entry_unref(struct dns_entry *e)
{
    if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

/* Drops the references of a list of unlinked entries (chained by hnext); call unlocked. */
static void
dns_entry_release(struct dns_entry *list)
{
    while (list != NULL) {
        struct dns_entry *next = list->hnext;

        dns_entry_unref(list);
        list = next;
    }
}

static unsigned
dns_get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* A TTL field; RFC 2181 8: one with the top bit set counts as 0. */
static uint32_t
dns_get_ttl(const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];

    return v > 0x7fffffffu ? 0 : v;
}

/* Steps *o over a (possibly compressed) domain name; false when it runs past len. */
static bool
dns_skip_name(const unsigned char *p, size_t len, size_t *o)
{
    size_t i = *o;

    while (i < len) {
        unsigned c = p[i];

        if (c == 0) {
            *o = i + 1;
            return true;
        }
        if ((c & 0xc0) == 0xc0) {
            if (len - i < 2)
                return false;
            *o = i + 2;
            return true;
        }
        if ((c & 0xc0) != 0)
            return false; /* reserved label types */
        i += 1 + c;
    }
    return false;
}

/*
 * How long a final answer may be cached, from its reply packet: for OK the smallest TTL in
 * the answer section (a CNAME chain lives as long as its shortest link, RFC 2181 5.2); for
 * NXDOMAIN/NODATA also at most the authority SOA's TTL and its MINIMUM (RFC 2308 5), and 0
 * without an SOA. We read the packet because ub_result.ttl cannot be trusted for negative
 * answers: libunbound takes the minimum over every RR it parsed, the EDNS OPT record
 * included, whose TTL field holds flags (DO = 32768), so an NXDOMAIN without an SOA comes
 * back with ttl 32768. Every read is bounded by len; 0 when the packet does not parse.
 */
static uint32_t
dns_packet_life(const unsigned char *p, size_t len, bool negative)
{
    size_t o = 12;
    unsigned qd, an, ns;
    uint32_t life = UINT32_MAX;
    bool soa = false;

    if (p == NULL || len < 12)
        return 0;
    qd = dns_get16(p + 4);
    an = dns_get16(p + 6);
    ns = dns_get16(p + 8);
    for (unsigned i = 0; i < qd; i++) {
        if (!dns_skip_name(p, len, &o) || len - o < 4)
            return 0;
        o += 4;
    }
    for (unsigned i = 0; i < an + (negative ? ns : 0); i++) {
        unsigned type, rdlen;
        uint32_t ttl;

        if (!dns_skip_name(p, len, &o) || len - o < 10)
            return 0;
        type = dns_get16(p + o);
        ttl = dns_get_ttl(p + o + 4);
        rdlen = dns_get16(p + o + 8);
        o += 10;
        if (rdlen > len - o)
            return 0;
        if (i >= an && type == DNS_TYPE_SOA && rdlen >= 22) { /* two names, five numbers */
            uint32_t minimum = dns_get_ttl(p + o + rdlen - 4);

            ttl = ttl < minimum ? ttl : minimum;
            soa = true;
        }
        if (i < an || type == DNS_TYPE_SOA)
            life = ttl < life ? ttl : life;
        o += rdlen;
    }
    if (negative && !soa)
        return 0;
    return life == UINT32_MAX ? 0 : life;
}

/* a + b into *sum; false on overflow. */
static bool
dns_size_add(size_t *sum, size_t b)
{
    if (*sum > SIZE_MAX - b)
        return false;
    *sum += b;
    return true;
}

/*
 * Copies what an answer needs out of a libunbound result into one allocation, with one
 * reference (the caller's). n rdata are copied (0 unless the result is OK). NULL when out
 * of memory.
 */
static struct dns_entry *
dns_entry_new(const struct ub_result *r, enum um_dns_result result, size_t n,
              const unsigned char *key, size_t key_len, uint64_t hash)
{
    struct dns_entry *e;
    size_t size = sizeof(*e), packet_len = 0;
    unsigned char *p;

    if (r->answer_packet != NULL && r->answer_len > 0)
        packet_len = (size_t)r->answer_len;
    if (n > (SIZE_MAX - size) / sizeof(e->rdata[0]))
        return NULL;
    size += n * sizeof(e->rdata[0]);
    if (!dns_size_add(&size, packet_len) || !dns_size_add(&size, key_len))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (r->len[i] > 0 && !dns_size_add(&size, (size_t)r->len[i]))
            return NULL;
    }
    e = malloc(size);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    atomic_init(&e->refs, 1);
    e->hash = hash;
    e->size = size;
    e->result = result;
    e->rcode = r->rcode;
    e->secure = r->secure != 0;
    e->n = n;
    p = (unsigned char *)(e->rdata + n);
    if (packet_len > 0) {
        memcpy(p, r->answer_packet, packet_len);
        e->packet = p;
        e->packet_len = packet_len;
        p += packet_len;
    }
    if (result != UM_DNS_TEMPFAIL && r->ttl > 0) {
        uint32_t life = dns_packet_life(e->packet, e->packet_len, result != UM_DNS_OK);

        e->life = (unsigned)r->ttl < life ? (unsigned)r->ttl : life;
        /* OK: the answer RRset's TTL as libunbound gives it; negative: the SOA's. */
        e->ttl = result == UM_DNS_OK ? (unsigned)r->ttl : e->life;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = r->len[i] > 0 ? (size_t)r->len[i] : 0;

        if (len > 0)
            memcpy(p, r->data[i], len);
        e->rdata[i].p = (const char *)p;
        e->rdata[i].len = len;
        p += len;
    }
    memcpy(p, key, key_len);
    e->key = p;
    e->key_len = key_len;
    return e;
}

/* Bucket count for a bound: the power of two >= max_entries, within the limits. */
static size_t
dns_cache_nbuckets(size_t max_entries)
{
    size_t nb = DNS_CACHE_MIN_BUCKETS;

    while (nb < max_entries && nb < DNS_CACHE_MAX_BUCKETS)
        nb *= 2;
    return nb;
}

static enum um_status
dns_cache_init(struct dns_cache *c, struct um_error *err)
{
    memset(c, 0, sizeof(*c));
    c->max_entries = UM_DNS_CACHE_ENTRIES;
    c->max_bytes = UM_DNS_CACHE_BYTES;
    c->nbuckets = dns_cache_nbuckets(c->max_entries);
    /* The seed only has to be unknown to senders; XXX without getrandom() (kernels before
     * 3.17) fall back to the clock and our address, guessable but not constant. */
    if (getrandom(c->seed, sizeof(c->seed), 0) != (ssize_t)sizeof(c->seed)) {
        c->seed[0] = (uint64_t)dns_now_ns();
        c->seed[1] = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
    }
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL)
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->buckets);
        c->buckets = NULL;
        return um_error_set(err, UM_ENOMEM, "dns: cannot set up the cache lock");
    }
    return UM_OK;
}

/* Drops the cache's references; answers still out keep their entries alive. */
static void
dns_cache_fini(struct dns_cache *c)
{
    struct dns_entry *e = c->newest;

    while (e != NULL) {
        struct dns_entry *older = e->older;

        dns_entry_unref(e);
        e = older;
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
}

/* Lock held. */
static struct dns_entry *
dns_cache_find(struct dns_cache *c, const unsigned char *key, size_t key_len, uint64_t hash)
{
    struct dns_entry *e = c->buckets[hash & (c->nbuckets - 1)];

    for (; e != NULL; e = e->hnext) {
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            return e;
    }
    return NULL;
}

/* Lock held. Takes e off the LRU list. */
static void
dns_cache_lru_unlink(struct dns_cache *c, struct dns_entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

/* Lock held. Puts e at the recently used end of the LRU list. */
static void
dns_cache_lru_push(struct dns_cache *c, struct dns_entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest != NULL)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

/* Lock held. Unlinks e and adds it to *garbage, whose references the caller drops unlocked. */
static void
dns_cache_remove(struct dns_cache *c, struct dns_entry *e, struct dns_entry **garbage)
{
    struct dns_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    dns_cache_lru_unlink(c, e);
    c->count--;
    c->bytes -= e->size;
    e->hnext = *garbage;
    *garbage = e;
}

/* Lock held. Evicts from the least recently used end until both bounds hold. */
static void
dns_cache_trim(struct dns_cache *c, struct dns_entry **garbage)
{
    while (c->oldest != NULL && (c->count > c->max_entries || c->bytes > c->max_bytes)) {
        dns_cache_remove(c, c->oldest, garbage);
        c->evictions++;
    }
}

/* A live entry for key with a reference for the caller, or NULL (a miss; an expired entry
 * met on the way is dropped). */
static struct dns_entry *
dns_cache_get(struct dns_cache *c, const unsigned char *key, size_t key_len, uint64_t hash,
              int64_t now)
{
    struct dns_entry *e, *garbage = NULL;

    pthread_mutex_lock(&c->mu);
    e = dns_cache_find(c, key, key_len, hash);
    if (e != NULL && e->expires <= now) {
        dns_cache_remove(c, e, &garbage);
        e = NULL;
    }
    if (e != NULL) {
        dns_cache_lru_unlink(c, e);
        dns_cache_lru_push(c, e);
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    dns_entry_release(garbage);
    return e;
}

/* Publishes e (expires set) unless it cannot fit; replaces an entry of the same key. */
static void
dns_cache_put(struct dns_cache *c, struct dns_entry *e)
{
    struct dns_entry *old, *garbage = NULL;
    struct dns_entry **bucket;

    pthread_mutex_lock(&c->mu);
    if (c->max_entries > 0 && e->size <= c->max_bytes) {
        old = dns_cache_find(c, e->key, e->key_len, e->hash);
        if (old != NULL)
            dns_cache_remove(c, old, &garbage);
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); /* the cache's */
        bucket = &c->buckets[e->hash & (c->nbuckets - 1)];
        e->hnext = *bucket;
        *bucket = e;
        dns_cache_lru_push(c, e);
        c->count++;
        c->bytes += e->size;
        dns_cache_trim(c, &garbage);
    }
    pthread_mutex_unlock(&c->mu);
    dns_entry_release(garbage);
}

void
um_dns_set_cache_max(struct um_dns *dns, size_t max_entries, size_t max_bytes)
{
    struct dns_cache *c = &dns->cache;
    struct dns_entry *garbage = NULL, **nb = NULL, **unused;
    size_t n = dns_cache_nbuckets(max_entries), cur;

    /* The new table is allocated outside the lock; without one the old stays (longer
     * chains, same answers). */
    pthread_mutex_lock(&c->mu);
    cur = c->nbuckets;
    pthread_mutex_unlock(&c->mu);
    if (n != cur)
        nb = calloc(n, sizeof(*nb));
    unused = nb;
    pthread_mutex_lock(&c->mu);
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    dns_cache_trim(c, &garbage);
    if (nb != NULL && c->nbuckets != n) {
        unused = c->buckets;
        c->buckets = nb;
        c->nbuckets = n;
        for (struct dns_entry *e = c->oldest; e != NULL; e = e->newer) {
            e->hnext = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    pthread_mutex_unlock(&c->mu);
    free(unused);
    dns_entry_release(garbage);
}

void
um_dns_cache_stats(struct um_dns *dns, struct um_dns_cache_stats *st)
{
    struct dns_cache *c = &dns->cache;

    pthread_mutex_lock(&c->mu);
    st->entries = c->count;
    st->bytes = c->bytes;
    st->max_entries = c->max_entries;
    st->max_bytes = c->max_bytes;
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    pthread_mutex_unlock(&c->mu);
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

/* infra-host-ttl in seconds: twice the lookup timeout, within [10, 60]. */
static unsigned
dns_host_ttl(unsigned timeout_s)
{
    unsigned t = 2 * timeout_s;

    return t < 10 ? 10 : t > 60 ? 60 : t;
}

static enum um_status
dns_configure(struct um_dns *dns, const char *const *servers, size_t n, unsigned max_sockets,
              struct um_error *err)
{
    char ms[32];
    enum um_status st;
    int rc;

    if ((rc = ub_ctx_async(dns->ctx, 1)) != 0)
        return um_error_set(err, UM_ETEMP, "dns: threaded mode: %s", ub_strerror(rc));
    snprintf(ms, sizeof(ms), "%u", dns->timeout_s * 1000u);
    if ((st = dns_set_option(dns, "infra-cache-max-rtt:", ms, err)) != UM_OK)
        return st;
    /* A server that timed out a few times is "unusable" until its entry expires (see the
     * note at the top): keep that short, so a forwarder that was only slow for some names
     * is asked again within seconds, not 15 minutes. */
    snprintf(ms, sizeof(ms), "%u", dns_host_ttl(dns->timeout_s));
    if ((st = dns_set_option(dns, "infra-host-ttl:", ms, err)) != UM_OK)
        return st;
    if (max_sockets > 0) {
        /* At most this many UDP sockets at once; further queries wait for one. */
        snprintf(ms, sizeof(ms), "%u", max_sockets);
        if ((st = dns_set_option(dns, "outgoing-range:", ms, err)) != UM_OK)
            return st;
    }
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

static enum um_status dns_resolve(struct um_dns *dns, const char *name, int qtype,
                                  struct ub_result **res, char *reason, size_t rlen,
                                  struct um_error *err);

/*
 * Makes libunbound build its worker now: the first asynchronous query creates the worker
 * thread, its event base and its pipes, and libevent exit()s the process when it cannot get
 * a descriptor for them. "localhost." is answered from libunbound's built-in local zone, so
 * this needs no server.
 */
static enum um_status
dns_start_worker(struct um_dns *dns, struct um_error *err)
{
    struct ub_result *r = NULL;
    char reason[128] = "";
    enum um_status st =
        dns_resolve(dns, "localhost.", UM_DNS_TYPE_A, &r, reason, sizeof(reason), err);

    if (st != UM_OK)
        return st;
    if (r == NULL)
        return um_error_set(err, UM_ETEMP, "dns: the resolver did not start: %s", reason);
    ub_resolve_free(r);
    return UM_OK;
}

enum um_status
um_dns_new(const char *const *servers, size_t n, unsigned timeout_s, struct um_dns **out,
           struct um_error *err)
{
    return um_dns_new_capped(servers, n, timeout_s, 0, out, err);
}

enum um_status
um_dns_new_capped(const char *const *servers, size_t n, unsigned timeout_s, unsigned max_sockets,
                  struct um_dns **out, struct um_error *err)
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
    if ((st = dns_cache_init(&dns->cache, err)) != UM_OK)
        goto fail;
    dns->cache_ready = true;
    dns->ctx = ub_ctx_create();
    if (dns->ctx == NULL) {
        st = um_error_set(err, UM_ETEMP, "dns: cannot create the resolver context");
        goto fail;
    }
    if ((st = dns_configure(dns, servers, n, max_sockets, err)) != UM_OK)
        goto fail;
    if (pipe(dns->stop) != 0) {
        dns->stop[0] = dns->stop[1] = -1;
        st = um_error_set(err, UM_ETEMP, "dns: pipe failed");
        goto fail;
    }
    if ((st = dns_start_dispatcher(dns, err)) != UM_OK)
        goto fail;
    if ((st = dns_start_worker(dns, err)) != UM_OK)
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
    if (dns->cache_ready)
        dns_cache_fini(&dns->cache);
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

/* Points a at e's storage, taking over the caller's reference to e. */
static void
dns_answer_borrow(struct um_dns_answer *a, struct dns_entry *e)
{
    a->backend_ = e;
    a->result = e->result;
    a->rcode = e->rcode;
    a->secure = e->secure;
    a->packet = e->packet;
    a->packet_len = e->packet_len;
    a->rdata = e->n > 0 ? e->rdata : NULL;
    a->n = e->n;
    a->ttl = e->ttl;
}

/* Seconds from now to expires, rounded up (> 0 for a live entry). */
static unsigned
dns_ttl_left(int64_t expires, int64_t now)
{
    return (unsigned)((expires - now + DNS_NS_PER_S - 1) / DNS_NS_PER_S);
}

enum um_status
um_dns_query(struct um_dns *dns, const char *name, int qtype, struct um_dns_answer **out,
             struct um_error *err)
{
    unsigned char key[DNS_KEY_MAX];
    struct um_dns_answer *a;
    struct dns_entry *e;
    struct ub_result *r = NULL;
    enum um_dns_result result;
    enum um_status st;
    size_t n = 0, key_len;
    uint64_t hash;
    int64_t now;

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
    key_len = dns_cache_key(name, qtype, key);
    hash = um_siphash24(dns->cache.seed, key, key_len);
    now = dns_now_ns();
    if ((e = dns_cache_get(&dns->cache, key, key_len, hash, now)) != NULL) {
        dns_answer_borrow(a, e);
        a->ttl = dns_ttl_left(e->expires, now);
        a->cached = true;
        *out = a;
        return UM_OK;
    }
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
    result = dns_classify(r, a->reason, sizeof(a->reason));
    if (result == UM_DNS_OK) {
        while (r->data != NULL && r->data[n] != NULL)
            n++;
        if (n == 0)
            result = UM_DNS_NODATA;
    }
    e = dns_entry_new(r, result, n, key, key_len, hash);
    ub_resolve_free(r);
    if (e == NULL) {
        free(a);
        return um_error_set(err, UM_ENOMEM, "dns: out of memory");
    }
    if (e->life > 0) { /* final (only those get a life) and with a TTL to count down */
        unsigned cap = result == UM_DNS_OK ? UM_DNS_CACHE_MAX_TTL : UM_DNS_CACHE_MAX_NEG_TTL;

        e->expires = dns_now_ns() + (int64_t)(e->life < cap ? e->life : cap) * DNS_NS_PER_S;
        dns_cache_put(&dns->cache, e);
    }
    dns_answer_borrow(a, e);
    *out = a;
    return UM_OK;
}

void
um_dns_answer_free(struct um_dns_answer *ans)
{
    if (ans == NULL)
        return;
    dns_entry_unref(ans->backend_);
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
