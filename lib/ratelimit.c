/*
 * ratelimit.c - sharded, exact sliding-window recipient counters
 *
 * Design note
 *
 * Algorithm.  Per key we keep the timestamps (uint32 Unix seconds) of the recipients
 * accepted inside the window, oldest first, in a ring.  Admitting n more at `now` is:
 * drop entries with now - ts >= window from the oldest end, then admit iff
 * count + n <= limit, and push n copies of now.  Because the ring is sorted, only its newest
 * `limit` entries can ever decide anything ("count < limit" is "the limit-th newest entry
 * has aged out"), so the ring never holds more than the limit and a lower limit after a
 * reload is applied exactly by dropping the oldest surplus.  The guarantee "at most limit in
 * any window seconds" then holds by construction, to the second, with no approximation; the
 * per-minute-bucket alternative (doc/design.md 5) admits up to a bucket late and saves memory
 * only for limits above ~60, which the issue's traffic (limits of 10-100) does not have.
 * Rings start small and double up to the key's limit (capped at UM_RATELIMIT_MAX_LIMIT), so
 * a sender of one recipient costs 4 bytes of ring, not 4 * limit.  Timestamps are
 * non-decreasing per key: a `now` older than the key's newest entry is raised to it, which
 * can only make entries expire later (conservative under clock steps).
 *
 * Table.  Keys (lower-cased, so matching is case-insensitive) are hashed with SipHash-2-4
 * under a caller-supplied seed: keys are envelope senders, chosen by whoever connects, and
 * an unkeyed hash would let them pile every key into one chain.  The hash picks a shard;
 * each shard has its own mutex, chained buckets (doubling at load factor 1) and an LRU
 * list.  A lock is held only for that arithmetic and memcpy; never for I/O, logging or a
 * call out of this module.  Shards never lock each other.
 *
 * Bounds.  max_senders is split evenly over the shards (so the total can never exceed it,
 * and eviction never needs a second lock).  A full shard evicts the least recently used idle
 * key, looking at most UM_RATELIMIT_EVICT_SCAN keys from the LRU end so a call's work stays
 * bounded.  If none of those is idle it evicts the least recently used key anyway.  We
 * prefer that to refusing new senders with UM_ELIMIT: a full table of active senders means
 * either max_senders is undersized, or someone is minting keys (random envelope senders);
 * refusing would then tempfail every new legitimate sender for a stranger's traffic - a
 * denial of service anyone can trigger on purpose - while evicting costs one sender's
 * history, and someone who can mint keys gets `limit` recipients per fresh key regardless.
 * The daemon sees decision.evicted_active and um_ratelimit_totals() and logs it.
 *
 * Policy.  Immutable, refcounted (atomic), swapped by um_ratelimit_set_policy() under each
 * shard's lock in turn.  Each shard carries the policy and a generation number; an entry
 * caches its effective limit with the generation it was computed for, so a reload costs one
 * lookup per key on its next use.  Rules are held in three sorted arrays (exact keys,
 * "@domain", "@.domain"), looked up by binary search: O(log rules) per lookup plus one
 * search per label of the domain.
 *
 * Snapshot grammar (version 1, text, one record per line, LF line ends):
 *   file     = "unimilter-ratelimit 1" LF *record "end" SP count LF
 *   record   = key SP episode SP n *(SP ts) LF     ; exactly n timestamps, non-decreasing
 *   key      = 1*(%x21-24 / %x26-7E / "%" 2HEXDIG) ; 1..UM_RATELIMIT_KEY_MAX bytes decoded
 *   episode  = "-" / ts                            ; time of the episode's last refusal
 *   n        = 1*6DIGIT                            ; <= UM_RATELIMIT_MAX_LIMIT
 *   ts, count = 1*10DIGIT                          ; ts <= 4294967295
 * Keys are unique within a file; count is the number of records.  The loader parses the
 * whole file into memory before touching the limiter.  A damaged file (a line cut short, a
 * bad record, garbage, a second record for a key, no end line, a wrong count) keeps the
 * records before the first damaged line, because each line is a complete record: losing
 * every count because the tail was lost would let every sender start over.  Nothing after
 * the damage is trusted (a record there may be misaligned garbage that happens to parse).
 */
#include "ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"

/* um_error_set() returns its code, but from another file; spelling the code out here lets
 * clang-analyzer follow the error paths. */
#define RL_FAIL(err, code, ...) ((void)um_error_set((err), (code), __VA_ARGS__), (code))

/* --- small helpers ------------------------------------------------------------------ */

/* Lower-cases key into buf (UM_RATELIMIT_KEY_MAX + 1 bytes). */
static enum um_status
rl_norm(struct um_str key, char *buf, struct um_error *err)
{
    if (key.p == NULL || key.len == 0)
        return RL_FAIL(err, UM_EINVAL, "ratelimit: empty key");
    if (key.len > UM_RATELIMIT_KEY_MAX) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: key of %zu bytes (max %d)", key.len,
                       UM_RATELIMIT_KEY_MAX);
    }
    um_ascii_lower(buf, key.p, key.len);
    buf[key.len] = '\0';
    return UM_OK;
}

static enum um_status
rl_check_now(int64_t now, struct um_error *err)
{
    if (now < 0 || now > (int64_t)UINT32_MAX)
        return RL_FAIL(err, UM_EINVAL, "ratelimit: time %lld out of range", (long long)now);
    return UM_OK;
}

/* SipHash-2-4 (lib/hash.h) under the table's seed. */
static uint64_t
rl_hash(const uint64_t seed[2], const char *p, size_t len)
{
    return um_siphash24(seed, p, len);
}

/* --- policy ------------------------------------------------------------------------- */

struct rl_rule {
    char *pat; /* lower-case; without "@" / "@." for domain rules */
    size_t len;
    bool exempt;
    unsigned limit;
    size_t index; /* position in the caller's array, for messages */
};

struct rl_rules {
    struct rl_rule *v;
    size_t n;
};

struct um_ratelimit_policy {
    atomic_size_t refs;
    unsigned limit, window;
    struct rl_rules exact, domain, sub;
};

static int
rl_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int
rl_rule_cmp(const void *a, const void *b)
{
    const struct rl_rule *x = a, *y = b;
    int c = rl_bytes_cmp(x->pat, x->len, y->pat, y->len);

    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index ? 1 : 0;
}

static const struct rl_rule *
rl_rules_find(const struct rl_rules *r, const char *p, size_t len)
{
    size_t lo = 0, hi = r->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = rl_bytes_cmp(r->v[mid].pat, r->v[mid].len, p, len);
        if (c == 0)
            return &r->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

enum um_status
um_ratelimit_pattern_check(struct um_str pattern, struct um_error *err)
{
    char q[96];

    if (pattern.p == NULL || pattern.len == 0)
        return RL_FAIL(err, UM_EINVAL, "ratelimit: empty pattern");
    if (pattern.len > UM_RATELIMIT_KEY_MAX) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: pattern of %zu bytes (max %d)", pattern.len,
                       UM_RATELIMIT_KEY_MAX);
    }
    if (pattern.p[0] == '@') {
        size_t skip = (pattern.len > 1 && pattern.p[1] == '.') ? 2 : 1;
        if (pattern.len == skip) {
            return RL_FAIL(err, UM_EINVAL, "ratelimit: pattern \"%s\" has no domain",
                           um_log_escaped(q, sizeof(q), pattern.p, pattern.len));
        }
        if (memchr(pattern.p + 1, '@', pattern.len - 1) != NULL) {
            return RL_FAIL(err, UM_EINVAL, "ratelimit: pattern \"%s\" has '@' inside its domain",
                           um_log_escaped(q, sizeof(q), pattern.p, pattern.len));
        }
    }
    return UM_OK;
}

static void
rl_policy_destroy(struct um_ratelimit_policy *p)
{
    struct rl_rules *all[3] = {&p->exact, &p->domain, &p->sub};

    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < all[k]->n; i++)
            free(all[k]->v[i].pat);
        free(all[k]->v);
    }
    free(p);
}

/* Checks rule i and appends it, lower-cased, to the array its pattern shape selects. */
static enum um_status
rl_rule_add(struct um_ratelimit_policy *p, const struct um_ratelimit_rule *r, size_t i,
            struct um_error *err)
{
    struct rl_rules *all[3] = {&p->exact, &p->domain, &p->sub};
    struct um_error e2;
    size_t skip = 0, k = 0;

    if (um_ratelimit_pattern_check(r->pattern, &e2) != UM_OK)
        return RL_FAIL(err, UM_EINVAL, "rule %zu: %s", i + 1, e2.msg);
    if (r->kind != UM_RATELIMIT_RULE_LIMIT && r->kind != UM_RATELIMIT_RULE_EXEMPT)
        return RL_FAIL(err, UM_EINVAL, "rule %zu: bad kind %d", i + 1, (int)r->kind);
    if (r->kind == UM_RATELIMIT_RULE_LIMIT && r->limit > UM_RATELIMIT_MAX_LIMIT) {
        return RL_FAIL(err, UM_EINVAL, "rule %zu: limit %u above %d", i + 1, r->limit,
                       UM_RATELIMIT_MAX_LIMIT);
    }
    if (r->pattern.p[0] == '@') {
        bool sub = r->pattern.p[1] == '.';
        skip = sub ? 2 : 1;
        k = sub ? 2 : 1;
    }
    struct rl_rule *dst = &all[k]->v[all[k]->n];
    dst->len = r->pattern.len - skip;
    dst->pat = malloc(dst->len + 1);
    if (dst->pat == NULL)
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    um_ascii_lower(dst->pat, r->pattern.p + skip, dst->len);
    dst->pat[dst->len] = '\0';
    dst->exempt = r->kind == UM_RATELIMIT_RULE_EXEMPT;
    dst->limit = dst->exempt ? 0 : r->limit;
    dst->index = i;
    all[k]->n++;
    return UM_OK;
}

/* Sorts one array and rejects duplicates, naming the later rule as the user wrote it. */
static enum um_status
rl_rules_sort(struct rl_rules *r, const struct um_ratelimit_rule *rules, struct um_error *err)
{
    char q[96];

    if (r->n < 2)
        return UM_OK;
    qsort(r->v, r->n, sizeof(struct rl_rule), rl_rule_cmp);
    for (size_t i = 1; i < r->n; i++) {
        const struct rl_rule *a = &r->v[i - 1], *b = &r->v[i];
        if (rl_bytes_cmp(a->pat, a->len, b->pat, b->len) == 0) {
            const struct um_str orig = rules[b->index].pattern;
            return RL_FAIL(err, UM_EINVAL, "rule %zu: duplicate pattern \"%s\"", b->index + 1,
                           um_log_escaped(q, sizeof(q), orig.p, orig.len));
        }
    }
    return UM_OK;
}

enum um_status
um_ratelimit_policy_new(unsigned limit, unsigned window, const struct um_ratelimit_rule *rules,
                        size_t nrules, struct um_ratelimit_policy **out, struct um_error *err)
{
    struct um_ratelimit_policy *p;
    struct rl_rules *all[3];
    enum um_status st = UM_OK;

    *out = NULL;
    if (limit > UM_RATELIMIT_MAX_LIMIT) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: limit %u above %d", limit,
                       UM_RATELIMIT_MAX_LIMIT);
    }
    if (window == 0 || window > UM_RATELIMIT_MAX_WINDOW) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: window %u not in 1..%u", window,
                       UM_RATELIMIT_MAX_WINDOW);
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    atomic_init(&p->refs, 1);
    p->limit = limit;
    p->window = window;
    all[0] = &p->exact;
    all[1] = &p->domain;
    all[2] = &p->sub;
    for (size_t k = 0; k < 3 && nrules > 0 && st == UM_OK; k++) {
        all[k]->v = calloc(nrules, sizeof(struct rl_rule));
        if (all[k]->v == NULL)
            st = RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    }
    for (size_t i = 0; i < nrules && st == UM_OK; i++)
        st = rl_rule_add(p, &rules[i], i, err);
    for (size_t k = 0; k < 3 && st == UM_OK; k++)
        st = rl_rules_sort(all[k], rules, err);
    if (st != UM_OK) {
        rl_policy_destroy(p);
        return st;
    }
    *out = p;
    return UM_OK;
}

struct um_ratelimit_policy *
um_ratelimit_policy_ref(struct um_ratelimit_policy *p)
{
    atomic_fetch_add(&p->refs, 1);
    return p;
}

void
um_ratelimit_policy_free(struct um_ratelimit_policy *p)
{
    if (p != NULL && atomic_fetch_sub(&p->refs, 1) == 1)
        rl_policy_destroy(p);
}

unsigned
um_ratelimit_policy_window(const struct um_ratelimit_policy *p)
{
    return p->window;
}

/* Lookup on an already lower-cased key. */
static void
rl_policy_lookup(const struct um_ratelimit_policy *p, const char *key, size_t len, unsigned *limit,
                 bool *exempt)
{
    const struct rl_rule *r = rl_rules_find(&p->exact, key, len);
    const char *dom = NULL;
    size_t dlen = 0;

    if (r == NULL) {
        for (size_t i = len; i > 0; i--) {
            if (key[i - 1] == '@') {
                dom = key + i;
                dlen = len - i;
                break;
            }
        }
        if (dom == NULL && len > 7 && memcmp(key, "domain:", 7) == 0) {
            dom = key + 7;
            dlen = len - 7;
        }
    }
    if (r == NULL && dom != NULL && dlen > 0) {
        r = rl_rules_find(&p->domain, dom, dlen);
        /* Parents from the longest: a.b.example.org -> b.example.org, example.org, org. */
        for (size_t i = 0; r == NULL && i < dlen; i++) {
            if (dom[i] == '.' && i + 1 < dlen)
                r = rl_rules_find(&p->sub, dom + i + 1, dlen - i - 1);
        }
    }
    *exempt = r != NULL && r->exempt;
    *limit = r != NULL ? r->limit : p->limit;
}

void
um_ratelimit_policy_match(const struct um_ratelimit_policy *p, struct um_str key, unsigned *limit,
                          bool *exempt)
{
    char buf[UM_RATELIMIT_KEY_MAX + 1];

    if (rl_norm(key, buf, NULL) != UM_OK) {
        *limit = p->limit;
        *exempt = false;
        return;
    }
    rl_policy_lookup(p, buf, key.len, limit, exempt);
}

/* --- the table ---------------------------------------------------------------------- */

struct rl_entry {
    struct rl_entry *hnext;         /* hash chain */
    struct rl_entry *lprev, *lnext; /* LRU list, head = most recently used */
    uint64_t hash;
    uint32_t *ring; /* cap slots; n live from head, oldest first */
    uint32_t head, n, cap;
    uint32_t limit; /* effective limit under generation gen */
    uint32_t gen;
    uint32_t last_refusal;
    uint32_t refused; /* refusals in the live episode; 0: none */
    uint16_t key_len;
    bool exempt;
    char key[]; /* lower-case, NUL-terminated */
};

struct rl_shard {
    pthread_mutex_t mu;
    struct rl_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count, cap;
    struct rl_entry *lru_head, *lru_tail;
    const struct um_ratelimit_policy *policy;
    uint32_t gen;
    uint64_t evicted_idle, evicted_active;
};

struct um_ratelimit {
    struct rl_shard *shards;
    unsigned nshards;
    size_t max_senders;
    uint64_t seed[2];
    pthread_mutex_t policy_mu; /* serialises set_policy; never held with a shard lock */
    struct um_ratelimit_policy *policy;
    uint32_t gen;
};

static uint32_t
rl_at(const struct rl_entry *e, uint32_t i)
{
    return e->ring[(e->head + i) % e->cap];
}

static uint32_t
rl_newest(const struct rl_entry *e)
{
    return rl_at(e, e->n - 1);
}

static bool
rl_episode_live(const struct rl_entry *e, uint32_t now, unsigned window)
{
    return e->refused > 0 && (now < e->last_refusal || now - e->last_refusal < window);
}

/* The key's clock: never behind its newest entry or last refusal. */
static uint32_t
rl_clock(const struct rl_entry *e, uint32_t now)
{
    if (e->n > 0 && rl_newest(e) > now)
        now = rl_newest(e);
    if (e->refused > 0 && e->last_refusal > now)
        now = e->last_refusal;
    return now;
}

static void
rl_expire(struct rl_entry *e, uint32_t now, unsigned window)
{
    while (e->n > 0 && now - rl_at(e, 0) >= window) {
        e->head = (e->head + 1) % e->cap;
        e->n--;
    }
    if (e->n == 0)
        e->head = 0;
    if (e->refused > 0 && !rl_episode_live(e, now, window))
        e->refused = 0;
}

/* Entries inside the window, without changing anything. */
static uint32_t
rl_live(const struct rl_entry *e, uint32_t now, unsigned window)
{
    uint32_t i = 0;

    now = rl_clock(e, now);
    while (i < e->n && now - rl_at(e, i) >= window)
        i++;
    return e->n - i;
}

/* Re-lays the ring out oldest-first at index 0 in a buffer of newcap slots. */
static bool
rl_relayout(struct rl_entry *e, uint32_t newcap)
{
    uint32_t *r = NULL;

    if (newcap > 0) {
        r = malloc((size_t)newcap * sizeof(*r));
        if (r == NULL)
            return false;
        for (uint32_t i = 0; i < e->n; i++)
            r[i] = rl_at(e, i);
    }
    free(e->ring);
    e->ring = r;
    e->cap = newcap;
    e->head = 0;
    return true;
}

/* Room for want entries (want <= e->limit): doubles, up to the limit. */
static bool
rl_reserve_ring(struct rl_entry *e, uint32_t want)
{
    uint32_t c;

    if (e->cap >= want)
        return true;
    c = e->cap < 2 ? 2 : e->cap;
    while (c < want)
        c *= 2;
    if (c > e->limit)
        c = e->limit;
    return rl_relayout(e, c);
}

static void
rl_push(struct rl_entry *e, uint32_t ts)
{
    e->ring[(e->head + e->n) % e->cap] = ts;
    e->n++;
}

/* Drops the oldest entries beyond the limit and gives back the surplus ring. */
static void
rl_trim(struct rl_entry *e)
{
    while (e->n > e->limit) {
        e->head = (e->head + 1) % e->cap;
        e->n--;
    }
    if (e->cap > e->limit)
        (void)rl_relayout(e, e->limit); /* on failure, the old ring stays: still correct */
    if (e->n == 0)
        e->head = 0;
}

static void
rl_refresh(const struct rl_shard *sh, struct rl_entry *e)
{
    unsigned limit;
    bool exempt;

    if (e->gen == sh->gen)
        return;
    rl_policy_lookup(sh->policy, e->key, e->key_len, &limit, &exempt);
    e->gen = sh->gen;
    e->exempt = exempt;
    e->limit = exempt ? 0 : limit;
    rl_trim(e);
}

static size_t
rl_bucket(const struct rl_shard *sh, uint64_t h)
{
    return (size_t)(h & (sh->nbuckets - 1));
}

static struct rl_shard *
rl_shard_of(struct um_ratelimit *rl, uint64_t h)
{
    return &rl->shards[(uint32_t)(h >> 32) % rl->nshards];
}

static struct rl_entry *
rl_find(const struct rl_shard *sh, uint64_t h, const char *key, size_t len)
{
    for (struct rl_entry *e = sh->buckets[rl_bucket(sh, h)]; e != NULL; e = e->hnext) {
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static void
rl_lru_unlink(struct rl_shard *sh, struct rl_entry *e)
{
    if (e->lprev != NULL)
        e->lprev->lnext = e->lnext;
    else
        sh->lru_head = e->lnext;
    if (e->lnext != NULL)
        e->lnext->lprev = e->lprev;
    else
        sh->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void
rl_lru_front(struct rl_shard *sh, struct rl_entry *e)
{
    if (sh->lru_head == e)
        return;
    if (e->lprev != NULL || e->lnext != NULL || sh->lru_tail == e)
        rl_lru_unlink(sh, e);
    e->lnext = sh->lru_head;
    if (sh->lru_head != NULL)
        sh->lru_head->lprev = e;
    sh->lru_head = e;
    if (sh->lru_tail == NULL)
        sh->lru_tail = e;
}

static void
rl_remove(struct rl_shard *sh, struct rl_entry *e)
{
    struct rl_entry **pp = &sh->buckets[rl_bucket(sh, e->hash)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    rl_lru_unlink(sh, e);
    sh->count--;
    free(e->ring);
    free(e);
}

static bool
rl_is_idle(const struct rl_entry *e, uint32_t now, unsigned window)
{
    return rl_live(e, now, window) == 0 && !rl_episode_live(e, rl_clock(e, now), window);
}

/* Makes room for one more key; returns true if a non-idle key had to go. */
static bool
rl_evict(struct rl_shard *sh, uint32_t now)
{
    struct rl_entry *e = sh->lru_tail;
    unsigned window = sh->policy->window;

    for (unsigned i = 0; e != NULL && i < UM_RATELIMIT_EVICT_SCAN; i++, e = e->lprev) {
        if (rl_is_idle(e, now, window)) {
            rl_remove(sh, e);
            sh->evicted_idle++;
            return false;
        }
    }
    rl_remove(sh, sh->lru_tail);
    sh->evicted_active++;
    return true;
}

static void
rl_grow_buckets(struct rl_shard *sh)
{
    size_t nb = sh->nbuckets * 2;
    struct rl_entry **b =
        calloc(nb, sizeof(*b)); /* NOLINT(bugprone-sizeof-expression): array of pointers */

    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < sh->nbuckets; i++) {
        struct rl_entry *e = sh->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->nbuckets = nb;
}

/* Stores a new key (the caller checked it is absent and not exempt). */
static struct rl_entry *
rl_insert(struct rl_shard *sh, uint64_t h, const char *key, size_t len, unsigned limit,
          uint32_t now, bool *evicted_active)
{
    struct rl_entry *e;

    if (sh->count >= sh->cap && sh->lru_tail != NULL)
        *evicted_active = rl_evict(sh, now) || *evicted_active;
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    e->hash = h;
    e->key_len = (uint16_t)len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    e->limit = limit;
    e->gen = sh->gen;
    if (sh->count >= sh->nbuckets)
        rl_grow_buckets(sh);
    e->hnext = sh->buckets[rl_bucket(sh, h)];
    sh->buckets[rl_bucket(sh, h)] = e;
    sh->count++;
    rl_lru_front(sh, e);
    return e;
}

enum um_status
um_ratelimit_new(const struct um_ratelimit_opts *opts, struct um_ratelimit_policy *policy,
                 struct um_ratelimit **out, struct um_error *err)
{
    struct um_ratelimit_opts o = {0};
    struct um_ratelimit *rl;

    *out = NULL;
    if (opts != NULL)
        o = *opts;
    if (o.max_senders == 0)
        o.max_senders = UM_RATELIMIT_DEFAULT_MAX_SENDERS;
    if (o.shards == 0)
        o.shards = UM_RATELIMIT_DEFAULT_SHARDS;
    if (o.shards > UM_RATELIMIT_MAX_SHARDS)
        o.shards = UM_RATELIMIT_MAX_SHARDS;
    if (o.shards > o.max_senders)
        o.shards = (unsigned)o.max_senders;
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    rl->shards = calloc(o.shards, sizeof(*rl->shards));
    if (rl->shards == NULL || pthread_mutex_init(&rl->policy_mu, NULL) != 0) {
        free(rl->shards);
        free(rl);
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    }
    rl->max_senders = o.max_senders;
    rl->seed[0] = o.seed[0];
    rl->seed[1] = o.seed[1];
    rl->policy = um_ratelimit_policy_ref(policy);
    for (unsigned i = 0; i < o.shards; i++) {
        struct rl_shard *sh = &rl->shards[i];
        sh->nbuckets = 16;
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
        sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
        if (sh->buckets == NULL || pthread_mutex_init(&sh->mu, NULL) != 0) {
            free(sh->buckets);
            rl->nshards = i;
            um_ratelimit_free(rl);
            return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
        }
        /* Even split; the first max % shards shards take one more. */
        sh->cap = o.max_senders / o.shards + (i < o.max_senders % o.shards ? 1 : 0);
        sh->policy = policy;
        rl->nshards = i + 1;
    }
    *out = rl;
    return UM_OK;
}

void
um_ratelimit_free(struct um_ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (unsigned i = 0; i < rl->nshards; i++) {
        struct rl_shard *sh = &rl->shards[i];
        struct rl_entry *e = sh->lru_head, *next;
        for (; e != NULL; e = next) {
            next = e->lnext;
            free(e->ring);
            free(e);
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    pthread_mutex_destroy(&rl->policy_mu);
    um_ratelimit_policy_free(rl->policy);
    free(rl->shards);
    free(rl);
}

void
um_ratelimit_set_policy(struct um_ratelimit *rl, struct um_ratelimit_policy *policy)
{
    struct um_ratelimit_policy *old;

    (void)pthread_mutex_lock(&rl->policy_mu);
    old = rl->policy;
    rl->policy = um_ratelimit_policy_ref(policy);
    rl->gen++;
    for (unsigned i = 0; i < rl->nshards; i++) {
        struct rl_shard *sh = &rl->shards[i];
        (void)pthread_mutex_lock(&sh->mu);
        sh->policy = policy;
        sh->gen = rl->gen;
        (void)pthread_mutex_unlock(&sh->mu);
    }
    (void)pthread_mutex_unlock(&rl->policy_mu);
    /* No shard points at old any more, and shards are only read under their lock. */
    um_ratelimit_policy_free(old);
}

static void
rl_decision_exempt(struct um_ratelimit_decision *d, unsigned window, uint32_t now)
{
    d->allowed = true;
    d->exempt = true;
    d->window = window;
    d->ts = now;
}

enum um_status
um_ratelimit_reserve(struct um_ratelimit *rl, struct um_str key, unsigned n, int64_t now,
                     struct um_ratelimit_decision *d, struct um_error *err)
{
    char k[UM_RATELIMIT_KEY_MAX + 1];
    enum um_status st;
    struct rl_shard *sh;
    struct rl_entry *e;
    unsigned window;
    uint32_t t;
    uint64_t h;

    memset(d, 0, sizeof(*d));
    if ((st = rl_norm(key, k, err)) != UM_OK || (st = rl_check_now(now, err)) != UM_OK)
        return st;
    if (n == 0 || n > UM_RATELIMIT_MAX_LIMIT) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %u recipients not in 1..%d", n,
                       UM_RATELIMIT_MAX_LIMIT);
    }
    h = rl_hash(rl->seed, k, key.len);
    sh = rl_shard_of(rl, h);
    (void)pthread_mutex_lock(&sh->mu);
    window = sh->policy->window;
    e = rl_find(sh, h, k, key.len);
    if (e == NULL) {
        unsigned limit;
        bool exempt;
        rl_policy_lookup(sh->policy, k, key.len, &limit, &exempt);
        if (exempt) {
            (void)pthread_mutex_unlock(&sh->mu);
            rl_decision_exempt(d, window, (uint32_t)now);
            d->limit = limit;
            return UM_OK;
        }
        e = rl_insert(sh, h, k, key.len, limit, (uint32_t)now, &d->evicted_active);
        if (e == NULL) {
            (void)pthread_mutex_unlock(&sh->mu);
            return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
        }
    } else {
        rl_refresh(sh, e);
        rl_lru_front(sh, e);
        if (e->exempt) {
            (void)pthread_mutex_unlock(&sh->mu);
            rl_decision_exempt(d, window, (uint32_t)now);
            return UM_OK;
        }
    }
    t = rl_clock(e, (uint32_t)now);
    rl_expire(e, t, window);
    if (e->n + n <= e->limit) {
        if (!rl_reserve_ring(e, e->n + n)) {
            (void)pthread_mutex_unlock(&sh->mu);
            return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
        }
        for (unsigned i = 0; i < n; i++)
            rl_push(e, t);
        d->allowed = true;
    } else {
        d->notify = e->refused == 0;
        if (e->refused < UINT32_MAX)
            e->refused++;
        e->last_refusal = t;
        if (n <= e->limit) {
            /* n fit once the entry at index n_now - (limit - n) - 1 has aged out. */
            uint32_t j = e->n - (e->limit - n) - 1;
            d->retry_after = (unsigned)((uint64_t)rl_at(e, j) + window - t);
        }
    }
    d->count = e->n;
    d->limit = e->limit;
    d->window = window;
    d->refused = e->refused;
    d->ts = t;
    (void)pthread_mutex_unlock(&sh->mu);
    return UM_OK;
}

enum um_status
um_ratelimit_peek(struct um_ratelimit *rl, struct um_str key, int64_t now,
                  struct um_ratelimit_decision *d, struct um_error *err)
{
    char k[UM_RATELIMIT_KEY_MAX + 1];
    enum um_status st;
    struct rl_shard *sh;
    struct rl_entry *e;
    uint32_t t = (uint32_t)now;
    uint64_t h;

    memset(d, 0, sizeof(*d));
    if ((st = rl_norm(key, k, err)) != UM_OK || (st = rl_check_now(now, err)) != UM_OK)
        return st;
    h = rl_hash(rl->seed, k, key.len);
    sh = rl_shard_of(rl, h);
    (void)pthread_mutex_lock(&sh->mu);
    d->window = sh->policy->window;
    e = rl_find(sh, h, k, key.len);
    if (e == NULL) {
        rl_policy_lookup(sh->policy, k, key.len, &d->limit, &d->exempt);
    } else {
        rl_refresh(sh, e); /* only brings the cached limit up to date */
        t = rl_clock(e, t);
        d->exempt = e->exempt;
        d->limit = e->limit;
        d->count = rl_live(e, t, d->window);
        d->refused = rl_episode_live(e, t, d->window) ? e->refused : 0;
    }
    (void)pthread_mutex_unlock(&sh->mu);
    d->allowed = d->exempt || d->count + 1 <= d->limit;
    d->ts = t;
    return UM_OK;
}

enum um_status
um_ratelimit_release(struct um_ratelimit *rl, struct um_str key, int64_t ts, unsigned n,
                     unsigned *released, struct um_error *err)
{
    char k[UM_RATELIMIT_KEY_MAX + 1];
    enum um_status st;
    struct rl_shard *sh;
    struct rl_entry *e;
    unsigned got = 0;
    uint64_t h;

    if (released != NULL)
        *released = 0;
    if ((st = rl_norm(key, k, err)) != UM_OK || (st = rl_check_now(ts, err)) != UM_OK)
        return st;
    h = rl_hash(rl->seed, k, key.len);
    sh = rl_shard_of(rl, h);
    (void)pthread_mutex_lock(&sh->mu);
    e = rl_find(sh, h, k, key.len);
    if (e != NULL && n > 0) {
        /* Compact in ring order, skipping up to n entries equal to ts. */
        uint32_t w = 0;
        for (uint32_t i = 0; i < e->n; i++) {
            uint32_t v = rl_at(e, i);
            if (v == (uint32_t)ts && got < n) {
                got++;
                continue;
            }
            e->ring[(e->head + w) % e->cap] = v;
            w++;
        }
        e->n = w;
        if (e->n == 0)
            e->head = 0;
    }
    (void)pthread_mutex_unlock(&sh->mu);
    if (released != NULL)
        *released = got;
    return UM_OK;
}

enum um_status
um_ratelimit_reset(struct um_ratelimit *rl, struct um_str key, struct um_error *err)
{
    char k[UM_RATELIMIT_KEY_MAX + 1], q[96];
    enum um_status st;
    struct rl_shard *sh;
    struct rl_entry *e;
    uint64_t h;

    if ((st = rl_norm(key, k, err)) != UM_OK)
        return st;
    h = rl_hash(rl->seed, k, key.len);
    sh = rl_shard_of(rl, h);
    (void)pthread_mutex_lock(&sh->mu);
    e = rl_find(sh, h, k, key.len);
    if (e != NULL)
        rl_remove(sh, e);
    (void)pthread_mutex_unlock(&sh->mu);
    if (e == NULL) {
        return RL_FAIL(err, UM_ENOENT, "ratelimit: \"%s\" is not tracked",
                       um_log_escaped(q, sizeof(q), k, key.len));
    }
    return UM_OK;
}

/* --- stats -------------------------------------------------------------------------- */

/* a ranks before b: higher count, then smaller key. */
static bool
rl_stat_before(const struct um_ratelimit_stat *a, const struct um_ratelimit_stat *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    return rl_bytes_cmp(a->key, a->key_len, b->key, b->key_len) < 0;
}

static int
rl_stat_cmp(const void *a, const void *b)
{
    return rl_stat_before(a, b) ? -1 : rl_stat_before(b, a) ? 1 : 0;
}

static void
rl_stat_swap(struct um_ratelimit_stat *a, struct um_ratelimit_stat *b)
{
    struct um_ratelimit_stat t = *a;

    *a = *b;
    *b = t;
}

/* heap[0] is the worst of the kept; sift the worst-ranked up. */
static void
rl_heap_up(struct um_ratelimit_stat *heap, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!rl_stat_before(&heap[parent], &heap[i]))
            break;
        rl_stat_swap(&heap[parent], &heap[i]);
        i = parent;
    }
}

static void
rl_heap_down(struct um_ratelimit_stat *heap, size_t n)
{
    size_t i = 0;

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && rl_stat_before(&heap[worst], &heap[l]))
            worst = l;
        if (r < n && rl_stat_before(&heap[worst], &heap[r]))
            worst = r;
        if (worst == i)
            return;
        rl_stat_swap(&heap[i], &heap[worst]);
        i = worst;
    }
}

static void
rl_stat_fill(struct um_ratelimit_stat *s, const struct rl_entry *e, uint32_t count, uint32_t now,
             unsigned window)
{
    memcpy(s->key, e->key, e->key_len + 1u);
    s->key_len = e->key_len;
    s->count = count;
    s->limit = e->limit;
    s->refused = rl_episode_live(e, now, window) ? e->refused : 0;
    s->oldest = rl_at(e, e->n - count);
}

void
um_ratelimit_stats(struct um_ratelimit *rl, int64_t now, struct um_ratelimit_stat *out, size_t max,
                   size_t *got)
{
    size_t n = 0;
    uint32_t t0 = (uint32_t)(now < 0 ? 0 : now > (int64_t)UINT32_MAX ? UINT32_MAX : now);

    for (unsigned i = 0; i < rl->nshards && max > 0; i++) {
        struct rl_shard *sh = &rl->shards[i];
        (void)pthread_mutex_lock(&sh->mu);
        unsigned window = sh->policy->window;
        for (struct rl_entry *e = sh->lru_head; e != NULL; e = e->lnext) {
            rl_refresh(sh, e);
            uint32_t t = rl_clock(e, t0);
            uint32_t c = rl_live(e, t, window);
            struct um_ratelimit_stat cand;
            if (c == 0)
                continue;
            if (n == max) {
                /* Compare on count first; copy the key only for a real contender. */
                if (c < out[0].count)
                    continue;
                rl_stat_fill(&cand, e, c, t, window);
                if (!rl_stat_before(&cand, &out[0]))
                    continue;
                out[0] = cand;
                rl_heap_down(out, n);
            } else {
                rl_stat_fill(&out[n], e, c, t, window);
                rl_heap_up(out, n);
                n++;
            }
        }
        (void)pthread_mutex_unlock(&sh->mu);
    }
    if (n > 1)
        qsort(out, n, sizeof(*out), rl_stat_cmp);
    *got = n;
}

void
um_ratelimit_totals(struct um_ratelimit *rl, struct um_ratelimit_totals *t)
{
    memset(t, 0, sizeof(*t));
    t->max_senders = rl->max_senders;
    for (unsigned i = 0; i < rl->nshards; i++) {
        struct rl_shard *sh = &rl->shards[i];
        (void)pthread_mutex_lock(&sh->mu);
        t->tracked += sh->count;
        t->evicted_idle += sh->evicted_idle;
        t->evicted_active += sh->evicted_active;
        (void)pthread_mutex_unlock(&sh->mu);
    }
}

/* --- snapshot: save ----------------------------------------------------------------- */

struct rl_buf {
    char *p;
    size_t len, cap;
};

static bool
rl_buf_put(struct rl_buf *b, const char *s, size_t len)
{
    if (len == 0)
        return true;
    if (b->cap - b->len < len) {
        size_t c = b->cap == 0 ? 4096 : b->cap;
        while (c - b->len < len)
            c *= 2;
        char *p = realloc(b->p, c);
        if (p == NULL)
            return false;
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
    return true;
}

static bool
rl_buf_u32(struct rl_buf *b, char sep, uint32_t v)
{
    char tmp[16];
    int n = snprintf(tmp, sizeof(tmp), "%c%lu", sep, (unsigned long)v);

    return rl_buf_put(b, tmp, (size_t)n);
}

/* One record, or nothing when the key holds nothing live at now. */
static bool
rl_save_entry(struct rl_buf *b, const struct rl_entry *e, uint32_t now, unsigned window,
              size_t *records)
{
    static const char hex[] = "0123456789ABCDEF";
    char enc[3 * UM_RATELIMIT_KEY_MAX];
    size_t o = 0;
    uint32_t t = rl_clock(e, now), live = rl_live(e, now, window);
    bool ep = rl_episode_live(e, t, window);

    if (live == 0 && !ep)
        return true;
    for (size_t i = 0; i < e->key_len; i++) {
        unsigned char c = (unsigned char)e->key[i];
        if (c > 0x20 && c < 0x7f && c != '%') {
            enc[o++] = (char)c;
        } else {
            enc[o++] = '%';
            enc[o++] = hex[c >> 4];
            enc[o++] = hex[c & 15];
        }
    }
    if (!rl_buf_put(b, enc, o))
        return false;
    if (ep ? !rl_buf_u32(b, ' ', e->last_refusal) : !rl_buf_put(b, " -", 2))
        return false;
    if (!rl_buf_u32(b, ' ', live))
        return false;
    for (uint32_t i = e->n - live; i < e->n; i++) {
        if (!rl_buf_u32(b, ' ', rl_at(e, i)))
            return false;
    }
    (*records)++;
    return rl_buf_put(b, "\n", 1);
}

static enum um_status
rl_io_error(struct um_error *err, const char *path, const char *what, int errnum)
{
    char eb[128];

    return RL_FAIL(err, UM_EIO, "ratelimit: %s: %s: %s", path, what,
                   um_strerror(errnum, eb, sizeof(eb)));
}

/* fsync the directory holding path, so the rename itself is durable. */
static enum um_status
rl_sync_dir(const char *path, struct um_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;

    if (slash == NULL) {
        dir = strdup(".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        dir = strndup(path, len);
    }
    if (dir == NULL)
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    fd = open(dir, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        free(dir);
        return rl_io_error(err, path, "open directory", e);
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EBADF) {
        int e = errno;
        (void)close(fd);
        free(dir);
        return rl_io_error(err, path, "fsync directory", e);
    }
    (void)close(fd);
    free(dir);
    return UM_OK;
}

enum um_status
um_ratelimit_save(struct um_ratelimit *rl, const char *path, int64_t now, struct um_error *err)
{
    struct rl_buf b = {0};
    enum um_status st;
    size_t records = 0, plen = strlen(path);
    char *tmp = malloc(plen + 8);
    FILE *f = NULL;
    int fd = -1, rc;

    if (tmp == NULL)
        return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
    if ((st = rl_check_now(now, err)) != UM_OK)
        goto out;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", 8);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st = rl_io_error(err, path, "create temporary file", errno);
        goto out;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        st = rl_io_error(err, tmp, "fdopen", errno);
        (void)close(fd);
        goto out;
    }
    fprintf(f, "unimilter-ratelimit %d\n", UM_RATELIMIT_SNAPSHOT_VERSION);
    for (unsigned i = 0; i < rl->nshards; i++) {
        struct rl_shard *sh = &rl->shards[i];
        bool ok = true;
        b.len = 0;
        (void)pthread_mutex_lock(&sh->mu);
        unsigned window = sh->policy->window;
        /* Oldest first, so that loading rebuilds the same LRU order. */
        for (struct rl_entry *e = sh->lru_tail; e != NULL && ok; e = e->lprev)
            ok = rl_save_entry(&b, e, (uint32_t)now, window, &records);
        (void)pthread_mutex_unlock(&sh->mu);
        if (!ok) {
            st = RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
            goto out;
        }
        if (b.len > 0 && fwrite(b.p, 1, b.len, f) != b.len) {
            st = rl_io_error(err, tmp, "write", errno);
            goto out;
        }
    }
    fprintf(f, "end %zu\n", records);
    if (fflush(f) != 0 || ferror(f)) {
        st = rl_io_error(err, tmp, "write", errno);
        goto out;
    }
    if (fsync(fileno(f)) != 0) {
        st = rl_io_error(err, tmp, "fsync", errno);
        goto out;
    }
    rc = fclose(f);
    f = NULL;
    if (rc != 0) {
        st = rl_io_error(err, tmp, "close", errno);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        st = rl_io_error(err, path, "rename", errno);
        goto out;
    }
    fd = -1;
    st = rl_sync_dir(path, err);
out:
    if (f != NULL)
        (void)fclose(f);
    if (st != UM_OK && fd >= 0)
        (void)unlink(tmp);
    free(tmp);
    free(b.p);
    return st;
}

/* --- snapshot: load ----------------------------------------------------------------- */

struct rl_rec {
    char *key;
    size_t key_len;
    size_t line;
    bool episode;
    uint32_t last_refusal;
    uint32_t n;
    uint32_t *ts;
};

struct rl_recs {
    struct rl_rec *v;
    size_t n, cap;
    bool n_bad_last; /* v[n - 1] is a record that failed to parse */
};

static void
rl_recs_free(struct rl_recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].key);
        free(r->v[i].ts);
    }
    free(r->v);
}

/* Parses a decimal field ending at SP or LF: 1..10 digits, <= max. */
static bool
rl_parse_u32(const char **pp, uint32_t max, uint32_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    size_t d = 0;

    while (*p >= '0' && *p <= '9') {
        if (++d > 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (d == 0 || v > max || (*p != ' ' && *p != '\n'))
        return false;
    *out = (uint32_t)v;
    *pp = p;
    return true;
}

/* One record line (with its LF).  On failure *why says what is wrong. */
static bool
rl_parse_record(const char *line, struct rl_rec *r, const char **why)
{
    char key[UM_RATELIMIT_KEY_MAX + 1];
    const char *p = line;
    size_t klen = 0;

    while (*p != ' ' && *p != '\n' && *p != '\0') {
        unsigned char c = (unsigned char)*p;
        if (klen == UM_RATELIMIT_KEY_MAX) {
            *why = "key too long";
            return false;
        }
        if (c == '%') {
            int hi = um_hexval(p[1]), lo = hi < 0 ? -1 : um_hexval(p[2]);
            if (hi < 0 || lo < 0) {
                *why = "bad %-escape in key";
                return false;
            }
            key[klen++] = (char)um_ascii_tolower(hi * 16 + lo);
            p += 3;
        } else if (c > 0x20 && c < 0x7f) {
            key[klen++] = (char)um_ascii_tolower(c);
            p++;
        } else {
            *why = "bad byte in key";
            return false;
        }
    }
    if (klen == 0 || *p != ' ') {
        *why = klen == 0 ? "empty key" : "missing fields after key";
        return false;
    }
    p++;
    if (p[0] == '-' && p[1] == ' ') {
        r->episode = false;
        p += 1;
    } else if (rl_parse_u32(&p, UINT32_MAX, &r->last_refusal) && *p == ' ') {
        r->episode = true;
    } else {
        *why = "bad episode field";
        return false;
    }
    p++;
    if (!rl_parse_u32(&p, UM_RATELIMIT_MAX_LIMIT, &r->n)) {
        *why = "bad count";
        return false;
    }
    r->ts = malloc(((size_t)r->n + 1) * sizeof(uint32_t));
    if (r->ts == NULL) {
        *why = "out of memory";
        return false;
    }
    for (uint32_t i = 0; i < r->n; i++) {
        if (*p != ' ') {
            *why = "fewer timestamps than the count";
            return false;
        }
        p++;
        if (!rl_parse_u32(&p, UINT32_MAX, &r->ts[i])) {
            *why = "bad timestamp";
            return false;
        }
        if (i > 0 && r->ts[i] < r->ts[i - 1]) {
            *why = "timestamps not in order";
            return false;
        }
    }
    if (*p != '\n') {
        *why = "more timestamps than the count";
        return false;
    }
    r->key = malloc(klen + 1);
    if (r->key == NULL) {
        *why = "out of memory";
        return false;
    }
    memcpy(r->key, key, klen);
    r->key[klen] = '\0';
    r->key_len = klen;
    return true;
}

static int
rl_rec_cmp(const void *a, const void *b)
{
    const struct rl_rec *x = a, *y = b;
    int c = rl_bytes_cmp(x->key, x->key_len, y->key, y->key_len);

    if (c != 0)
        return c;
    return x->line < y->line ? -1 : x->line > y->line ? 1 : 0;
}

/* Line 1.  A defect sets *why; a version we do not speak is its own error. */
static enum um_status
rl_parse_header(const char *line, const char *path, const char **why, struct um_error *err)
{
    unsigned long v;
    char tail;

    if (sscanf(line, "unimilter-ratelimit %lu%c", &v, &tail) != 2 || tail != '\n') {
        *why = "not a unimilter rate-limit snapshot";
        return UM_OK;
    }
    if (v != UM_RATELIMIT_SNAPSHOT_VERSION) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: line 1: unsupported version %lu (want %d)",
                       path, v, UM_RATELIMIT_SNAPSHOT_VERSION);
    }
    return UM_OK;
}

/* "end COUNT": COUNT must match the records read. */
static enum um_status
rl_parse_end(const char *line, size_t lineno, const struct rl_recs *recs, const char *path,
             const char **why, struct um_error *err)
{
    const char *p = line + 4;
    uint32_t count;

    if (!rl_parse_u32(&p, UINT32_MAX, &count) || *p != '\n') {
        *why = "bad end line";
        return UM_OK;
    }
    if (count != recs->n) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: line %zu: end says %lu keys, found %zu",
                       path, lineno, (unsigned long)count, recs->n);
    }
    return UM_OK;
}

static enum um_status
rl_parse_append(const char *line, size_t lineno, struct rl_recs *recs, const char **why,
                struct um_error *err)
{
    if (recs->n == recs->cap) {
        size_t c = recs->cap == 0 ? 64 : recs->cap * 2;
        struct rl_rec *v = realloc(recs->v, c * sizeof(*v));
        if (v == NULL)
            return RL_FAIL(err, UM_ENOMEM, "ratelimit: out of memory");
        recs->v = v;
        recs->cap = c;
    }
    struct rl_rec *r = &recs->v[recs->n];
    memset(r, 0, sizeof(*r));
    r->line = lineno;
    recs->n++; /* counted even when bad, so rl_recs_free() sees it */
    (void)rl_parse_record(line, r, why);
    return UM_OK;
}

static int
rl_rec_line_cmp(const void *a, const void *b)
{
    const struct rl_rec *x = a, *y = b;

    return x->line < y->line ? -1 : x->line > y->line ? 1 : 0;
}

/* Among the first *good records (in line order): a key seen twice is damage at the line of
 * its second record; *good shrinks to the records before the first such line, which is
 * returned (0: no duplicate). The records stay in line order. */
static size_t
rl_check_dups(struct rl_recs *recs, size_t *good)
{
    size_t dup_line = 0;

    if (*good < 2)
        return 0;
    qsort(recs->v, *good, sizeof(*recs->v), rl_rec_cmp);
    for (size_t i = 1; i < *good; i++) {
        const struct rl_rec *a = &recs->v[i - 1], *b = &recs->v[i];
        if (rl_bytes_cmp(a->key, a->key_len, b->key, b->key_len) == 0
            && (dup_line == 0 || b->line < dup_line))
            dup_line = b->line; /* rl_rec_cmp puts the earlier line first */
    }
    qsort(recs->v, *good, sizeof(*recs->v), rl_rec_line_cmp);
    if (dup_line != 0) {
        size_t k = 0;
        while (k < *good && recs->v[k].line < dup_line)
            k++;
        *good = k;
    }
    return dup_line;
}

/*
 * Reads and checks the whole file; the caller frees *recs either way. *good is how many of
 * recs (in line order) are sound and come before any damage: all of them when the file is
 * whole (UM_OK); those before the first bad line when it is damaged (UM_EINVAL, or UM_EIO
 * for a read error; err says the line and why); 0 when nothing can be trusted (not a
 * snapshot, another version, out of memory).
 */
static enum um_status
rl_parse_file(FILE *f, const char *path, struct rl_recs *recs, size_t *good, bool *partial,
              struct um_error *err)
{
    char *line = NULL;
    size_t lcap = 0, lineno = 0, dup_line;
    ssize_t len;
    bool ended = false;
    const char *why = NULL;
    enum um_status st = UM_OK;
    char q[64];

    *good = 0;
    *partial = false;
    while (st == UM_OK && why == NULL && (len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (len == 0 || line[len - 1] != '\n')
            why = "truncated line (no newline)";
        else if ((size_t)len != strlen(line))
            why = "NUL byte";
        else if (ended)
            why = "data after the end line";
        else if (lineno == 1)
            st = rl_parse_header(line, path, &why, err);
        else if (strncmp(line, "end ", 4) == 0)
            ended =
                (st = rl_parse_end(line, lineno, recs, path, &why, err)) == UM_OK && why == NULL;
        else if ((st = rl_parse_append(line, lineno, recs, &why, err)) == UM_OK && why != NULL)
            recs->n_bad_last = true; /* the bad record is in recs (to be freed), not sound */
    }
    free(line);
    if (st == UM_ENOMEM || (lineno <= 1 && st != UM_OK))
        return st; /* nothing to trust */
    *good = recs->n - (recs->n_bad_last ? 1 : 0);
    *partial = lineno > 1; /* the header was sound: damage, if any, comes after it */
    /* A duplicate key lies before any damage found so far: the damage starts there. */
    if ((dup_line = rl_check_dups(recs, good)) != 0) {
        const struct rl_rec *d = &recs->v[*good];
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: line %zu: duplicate key \"%s\"", path,
                       dup_line, um_log_escaped(q, sizeof(q), d->key, d->key_len));
    }
    if (st != UM_OK)
        return st; /* the end line's count (err set by rl_parse_end) */
    if (why == NULL && ferror(f)) {
        char eb[128];
        return RL_FAIL(err, UM_EIO, "ratelimit: %s: read: %s", path,
                       um_strerror(errno, eb, sizeof(eb)));
    }
    if (why != NULL)
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: line %zu: %s", path, lineno, why);
    if (lineno == 0)
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: empty file", path);
    if (!ended) {
        return RL_FAIL(err, UM_EINVAL, "ratelimit: %s: line %zu: truncated (no end line)", path,
                       lineno + 1);
    }
    return UM_OK;
}

/* Merges one record into the limiter under its shard lock.  Returns false on ENOMEM. */
static bool
rl_apply(struct um_ratelimit *rl, struct rl_rec *r, uint32_t now, bool *applied)
{
    uint64_t h = rl_hash(rl->seed, r->key, r->key_len);
    struct rl_shard *sh = rl_shard_of(rl, h);
    uint32_t *merged = NULL, first = 0, total, keep;
    bool ok = true, ep, dummy = false;
    struct rl_entry *e;
    unsigned window;

    *applied = false;
    /* A timestamp from a clock that has since stepped back counts as now (conservative). */
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->ts[i] > now)
            r->ts[i] = now;
    }
    if (r->episode && r->last_refusal > now)
        r->last_refusal = now;
    (void)pthread_mutex_lock(&sh->mu);
    window = sh->policy->window;
    while (first < r->n && now - r->ts[first] >= window)
        first++;
    ep = r->episode && now - r->last_refusal < window;
    if (first == r->n && !ep)
        goto out;
    e = rl_find(sh, h, r->key, r->key_len);
    if (e == NULL) {
        unsigned limit;
        bool exempt;
        rl_policy_lookup(sh->policy, r->key, r->key_len, &limit, &exempt);
        if (exempt)
            goto out;
        e = rl_insert(sh, h, r->key, r->key_len, limit, now, &dummy);
        if (e == NULL) {
            ok = false;
            goto out;
        }
    } else {
        rl_refresh(sh, e);
        rl_lru_front(sh, e);
        if (e->exempt)
            goto out;
    }
    rl_expire(e, rl_clock(e, now), window);
    /* Union of both sorted lists, newest `limit` kept. */
    total = e->n + (r->n - first);
    merged = malloc(((size_t)total + 1) * sizeof(*merged));
    if (merged == NULL) {
        ok = false;
        goto out;
    }
    {
        uint32_t i = 0, j = first, o = 0;
        while (i < e->n || j < r->n) {
            if (j >= r->n || (i < e->n && rl_at(e, i) <= r->ts[j]))
                merged[o++] = rl_at(e, i++);
            else
                merged[o++] = r->ts[j++];
        }
    }
    keep = total < e->limit ? total : e->limit;
    if (keep > e->cap && !rl_relayout(e, keep)) {
        ok = false;
        goto out;
    }
    e->head = 0;
    e->n = 0;
    for (uint32_t i = total - keep; i < total; i++)
        rl_push(e, merged[i]);
    if (ep) {
        if (e->refused == 0 || r->last_refusal > e->last_refusal)
            e->last_refusal = r->last_refusal;
        if (e->refused == 0)
            e->refused = 1;
    }
    *applied = true;
out:
    (void)pthread_mutex_unlock(&sh->mu);
    free(merged);
    return ok;
}

enum um_status
um_ratelimit_load(struct um_ratelimit *rl, const char *path, int64_t now, size_t *loaded,
                  struct um_error *err)
{
    struct rl_recs recs = {0};
    enum um_status st;
    size_t count = 0, good = 0;
    bool partial = false;
    FILE *f;

    if (loaded != NULL)
        *loaded = 0;
    if ((st = rl_check_now(now, err)) != UM_OK)
        return st;
    f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT)
            return UM_OK;
        return rl_io_error(err, path, "open", errno);
    }
    st = rl_parse_file(f, path, &recs, &good, &partial, err);
    (void)fclose(f);
    /* A damaged file (a crash mid-write on a filesystem that lost the rename's order, a
     * disk error, an editor): what precedes the damage is sound, so it is kept. */
    for (size_t i = 0; i < good; i++) {
        bool applied;
        if (!rl_apply(rl, &recs.v[i], (uint32_t)now, &applied)) {
            st =
                RL_FAIL(err, UM_ENOMEM, "ratelimit: %s: out of memory after %zu keys", path, count);
            break;
        }
        count += applied ? 1 : 0;
    }
    if (partial && (st == UM_EINVAL || st == UM_EIO)) {
        char why[sizeof(err->msg)];
        (void)snprintf(why, sizeof(why), "%s", err != NULL ? err->msg : "");
        st = RL_FAIL(err, st, "%s; the %zu record(s) before it kept", why, good);
    }
    rl_recs_free(&recs);
    if (loaded != NULL)
        *loaded = count;
    return st;
}
