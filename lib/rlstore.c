/*
 * rlstore.c - the rate-limit store: memory and Redis behind one ops table
 *
 * Design note: the daemon used to ask "is Redis configured?" wherever it counted, gave back,
 * listed or reset, and kept the on_error fallback and the once-per-outage log in the
 * message path. Here each store is an ops table (as um_dmarc_dns_ops, or Redis's ae.c with
 * one API over epoll/kqueue/select), so a caller holds one pointer. The Redis store
 * contains the in-memory limiter it falls back to; a reservation records which of the two
 * counted it (origin), so the give-back reaches the same one whatever Redis does meanwhile.
 * The memory limiter swaps its policy internally; the Redis client reads the policy per
 * call, so the Redis store keeps the current one behind a mutex held only to take a
 * reference (never across I/O). Work per call: one limiter call, plus that pointer copy.
 */
#define _DEFAULT_SOURCE /* reallocarray() */
#include "rlstore.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct um_rlstore {
    const struct um_rlstore_ops *ops;
    void *impl;
};

enum { RLSTORE_ORIGIN_MEMORY = 0, RLSTORE_ORIGIN_REDIS = 1 };

/* --- memory ----------------------------------------------------------------------------- */

static enum um_status
mem_reserve(void *impl, struct um_str key, unsigned n, int64_t now, struct um_ratelimit_decision *d,
            unsigned char *origin, struct um_error *err)
{
    *origin = RLSTORE_ORIGIN_MEMORY;
    return um_ratelimit_reserve(impl, key, n, now, d, err);
}

static enum um_status
mem_release(void *impl, unsigned char origin, struct um_str key, int64_t ts, unsigned n,
            unsigned *released, struct um_error *err)
{
    (void)origin;
    return um_ratelimit_release(impl, key, ts, n, released, err);
}

static enum um_status
mem_stats(void *impl, int64_t now, struct um_ratelimit_stat *out, size_t max, size_t *got,
          struct um_ratelimit_totals *t, struct um_error *err)
{
    (void)err;
    um_ratelimit_totals(impl, t);
    um_ratelimit_stats(impl, now, out, max, got);
    return UM_OK;
}

static enum um_status
mem_reset(void *impl, struct um_str key, struct um_error *err)
{
    return um_ratelimit_reset(impl, key, err);
}

static void
mem_set_policy(void *impl, struct um_ratelimit_policy *policy, enum um_rl_on_error on_error)
{
    (void)on_error;
    um_ratelimit_set_policy(impl, policy);
}

static enum um_status
mem_save(void *impl, const char *path, int64_t now, struct um_error *err)
{
    return um_ratelimit_save(impl, path, now, err);
}

static enum um_status
mem_load(void *impl, const char *path, int64_t now, size_t *loaded, struct um_error *err)
{
    return um_ratelimit_load(impl, path, now, loaded, err);
}

static void
mem_free(void *impl)
{
    um_ratelimit_free(impl);
}

static const struct um_rlstore_ops rlstore_memory_ops = {
    .name = "memory",
    .reserve = mem_reserve,
    .release = mem_release,
    .stats = mem_stats,
    .reset = mem_reset,
    .set_policy = mem_set_policy,
    .save = mem_save,
    .load = mem_load,
    .free = mem_free,
};

/* --- redis ------------------------------------------------------------------------------ */

struct rlstore_redis {
    struct um_rlredis *client;
    struct um_ratelimit *local; /* on_error local; also sizes max_senders in stats */
    const struct um_logger *log;
    pthread_mutex_t mu;                 /* guards policy (the pointer, not the policy) */
    struct um_ratelimit_policy *policy; /* own reference */
    _Atomic int on_error;               /* enum um_rl_on_error */
    _Atomic unsigned long long outages_logged;
};

static struct um_ratelimit_policy *
redis_policy(struct rlstore_redis *r)
{
    struct um_ratelimit_policy *p;

    (void)pthread_mutex_lock(&r->mu);
    p = um_ratelimit_policy_ref(r->policy);
    (void)pthread_mutex_unlock(&r->mu);
    return p;
}

static enum um_status
redis_reserve(void *impl, struct um_str key, unsigned n, int64_t now,
              struct um_ratelimit_decision *d, unsigned char *origin, struct um_error *err)
{
    struct rlstore_redis *r = impl;
    struct um_ratelimit_policy *p = redis_policy(r);
    struct um_error rerr = {0};
    struct um_rlredis_totals t;
    enum um_rl_on_error on_error = (enum um_rl_on_error)atomic_load(&r->on_error);
    enum um_status st = um_rlredis_reserve(r->client, p, key, n, now, d, &rerr);

    um_ratelimit_policy_free(p);
    *origin = RLSTORE_ORIGIN_REDIS;
    if (st == UM_OK)
        return UM_OK;
    um_rlredis_totals(r->client, &t);
    if (atomic_exchange(&r->outages_logged, (unsigned long long)t.outages)
            != (unsigned long long)t.outages
        && r->log != NULL) {
        static const char *const what[] = {[UM_RL_ON_ERROR_TEMPFAIL] = "tempfailing recipients",
                                           [UM_RL_ON_ERROR_ACCEPT] = "accepting uncounted",
                                           [UM_RL_ON_ERROR_LOCAL] = "counting locally"};
        um_log_msg(r->log, UM_LOG_WARNING, "ratelimit", "redis unavailable (%s): %s", rerr.msg,
                   what[on_error]);
    }
    if (st != UM_ETEMP || on_error == UM_RL_ON_ERROR_TEMPFAIL)
        return um_error_set(err, st, "%s", rerr.msg);
    if (on_error == UM_RL_ON_ERROR_ACCEPT) {
        memset(d, 0, sizeof(*d));
        d->allowed = true;
        d->exempt = true; /* nothing counted, nothing to give back */
        return UM_OK;
    }
    *origin = RLSTORE_ORIGIN_MEMORY;
    return um_ratelimit_reserve(r->local, key, n, now, d, err);
}

static enum um_status
redis_release(void *impl, unsigned char origin, struct um_str key, int64_t ts, unsigned n,
              unsigned *released, struct um_error *err)
{
    struct rlstore_redis *r = impl;

    if (origin == RLSTORE_ORIGIN_REDIS)
        return um_rlredis_release(r->client, key, ts, n, released, err);
    return um_ratelimit_release(r->local, key, ts, n, released, err);
}

static enum um_status
redis_stats(void *impl, int64_t now, struct um_ratelimit_stat *out, size_t max, size_t *got,
            struct um_ratelimit_totals *t, struct um_error *err)
{
    struct rlstore_redis *r = impl;
    struct um_ratelimit_policy *p = redis_policy(r);
    enum um_status st = um_rlredis_stats(r->client, p, now, out, max, got, err);

    um_ratelimit_policy_free(p);
    um_ratelimit_totals(r->local, t);
    t->tracked = st == UM_OK ? *got : 0;
    return st;
}

static enum um_status
redis_reset(void *impl, struct um_str key, struct um_error *err)
{
    struct rlstore_redis *r = impl;

    return um_rlredis_reset(r->client, key, err);
}

static void
redis_set_policy(void *impl, struct um_ratelimit_policy *policy, enum um_rl_on_error on_error)
{
    struct rlstore_redis *r = impl;
    struct um_ratelimit_policy *old;

    um_ratelimit_set_policy(r->local, policy);
    (void)pthread_mutex_lock(&r->mu);
    old = r->policy;
    r->policy = um_ratelimit_policy_ref(policy);
    (void)pthread_mutex_unlock(&r->mu);
    um_ratelimit_policy_free(old);
    atomic_store(&r->on_error, (int)on_error);
}

static void
redis_free(void *impl)
{
    struct rlstore_redis *r = impl;

    if (r == NULL)
        return;
    um_rlredis_free(r->client);
    um_ratelimit_free(r->local);
    um_ratelimit_policy_free(r->policy);
    (void)pthread_mutex_destroy(&r->mu);
    free(r);
}

static const struct um_rlstore_ops rlstore_redis_ops = {
    .name = "redis",
    .reserve = redis_reserve,
    .release = redis_release,
    .stats = redis_stats,
    .reset = redis_reset,
    .set_policy = redis_set_policy,
    .save = NULL,
    .load = NULL,
    .free = redis_free,
};

/* --- the interface ---------------------------------------------------------------------- */

enum um_status
um_rlstore_new(const struct um_rlstore_ops *ops, void *impl, struct um_rlstore **out,
               struct um_error *err)
{
    struct um_rlstore *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL) {
        ops->free(impl);
        return um_error_set(err, UM_ENOMEM, "ratelimit: out of memory");
    }
    s->ops = ops;
    s->impl = impl;
    *out = s;
    return UM_OK;
}

enum um_status
um_rlstore_new_memory(const struct um_ratelimit_opts *opts, struct um_ratelimit_policy *policy,
                      struct um_rlstore **out, struct um_error *err)
{
    struct um_ratelimit *rl = NULL;
    enum um_status st = um_ratelimit_new(opts, policy, &rl, err);

    *out = NULL;
    if (st != UM_OK)
        return st;
    return um_rlstore_new(&rlstore_memory_ops, rl, out, err);
}

enum um_status
um_rlstore_new_redis(const struct um_rlredis_opts *ro, const struct um_ratelimit_opts *opts,
                     struct um_ratelimit_policy *policy, enum um_rl_on_error on_error,
                     const struct um_logger *log, struct um_rlstore **out, struct um_error *err)
{
    struct rlstore_redis *r;
    enum um_status st;

    *out = NULL;
    if ((unsigned)on_error > UM_RL_ON_ERROR_LOCAL)
        return um_error_set(err, UM_EINVAL, "ratelimit: bad on_error %d", (int)on_error);
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return um_error_set(err, UM_ENOMEM, "ratelimit: out of memory");
    (void)pthread_mutex_init(&r->mu, NULL);
    r->policy = um_ratelimit_policy_ref(policy);
    r->log = log;
    atomic_init(&r->on_error, (int)on_error);
    atomic_init(&r->outages_logged, 0);
    st = um_ratelimit_new(opts, policy, &r->local, err);
    if (st == UM_OK)
        st = um_rlredis_new(ro, &r->client, err);
    if (st != UM_OK) {
        redis_free(r);
        return st;
    }
    return um_rlstore_new(&rlstore_redis_ops, r, out, err);
}

void
um_rlstore_free(struct um_rlstore *s)
{
    if (s == NULL)
        return;
    s->ops->free(s->impl);
    free(s);
}

const char *
um_rlstore_name(const struct um_rlstore *s)
{
    return s->ops->name;
}

enum um_status
um_rlstore_reserve(struct um_rlstore *s, struct um_str key, unsigned n, int64_t now,
                   struct um_ratelimit_decision *d, struct um_rlstore_resv *resv,
                   struct um_error *err)
{
    unsigned char origin = 0;
    enum um_status st = s->ops->reserve(s->impl, key, n, now, d, &origin, err);

    resv->ts = st == UM_OK ? d->ts : 0;
    resv->n = n;
    resv->origin = origin;
    return st;
}

enum um_status
um_rlstore_release(struct um_rlstore *s, struct um_str key, const struct um_rlstore_resv *resv,
                   unsigned *released, struct um_error *err)
{
    return s->ops->release(s->impl, resv->origin, key, resv->ts, resv->n, released, err);
}

enum um_status
um_rlstore_stats(struct um_rlstore *s, int64_t now, struct um_ratelimit_stat *out, size_t max,
                 size_t *got, struct um_ratelimit_totals *t, struct um_error *err)
{
    *got = 0;
    memset(t, 0, sizeof(*t));
    return s->ops->stats(s->impl, now, out, max, got, t, err);
}

enum um_status
um_rlstore_reset(struct um_rlstore *s, struct um_str key, struct um_error *err)
{
    return s->ops->reset(s->impl, key, err);
}

void
um_rlstore_set_policy(struct um_rlstore *s, struct um_ratelimit_policy *policy,
                      enum um_rl_on_error on_error)
{
    s->ops->set_policy(s->impl, policy, on_error);
}

bool
um_rlstore_has_snapshot(const struct um_rlstore *s)
{
    return s->ops->save != NULL;
}

enum um_status
um_rlstore_save(struct um_rlstore *s, const char *path, int64_t now, struct um_error *err)
{
    return s->ops->save != NULL ? s->ops->save(s->impl, path, now, err) : UM_OK;
}

enum um_status
um_rlstore_load(struct um_rlstore *s, const char *path, int64_t now, size_t *loaded,
                struct um_error *err)
{
    if (loaded != NULL)
        *loaded = 0;
    return s->ops->load != NULL ? s->ops->load(s->impl, path, now, loaded, err) : UM_OK;
}

/* --- held reservations ------------------------------------------------------------------ */

bool
um_rlstore_hold(struct um_rlstore_held *h, const struct um_rlstore_resv *r)
{
    struct um_rlstore_resv *nv;

    if (h->n > 0 && h->v[h->n - 1].ts == r->ts && h->v[h->n - 1].origin == r->origin) {
        h->v[h->n - 1].n += r->n;
        return true;
    }
    nv = reallocarray(h->v, h->n + 1, sizeof(*nv));
    if (nv == NULL)
        return false;
    h->v = nv;
    h->v[h->n++] = *r;
    return true;
}

void
um_rlstore_held_clear(struct um_rlstore_held *h)
{
    free(h->v);
    h->v = NULL;
    h->n = 0;
}
