/*
 * rlstore - the rate-limit store: one interface over the in-memory and the Redis limiter
 *
 * DESCRIPTION  The daemon counts recipients through a struct um_rlstore and never asks
 *              which limiter is behind it.  A store is an ops table plus its state, as
 *              struct um_dmarc_dns_ops is for DNS: reserve, release, stats, reset, a new
 *              policy at reload, and (memory only) the snapshot file.  Two stores exist:
 *                memory  lib/ratelimit.c, counts in this process (optional state file)
 *                redis   lib/ratelimit_redis.c, counts shared by every process using one
 *                        Redis server; when Redis is down or slow, the store itself applies
 *                        ratelimit.redis.on_error (enum um_rl_on_error): UM_ETEMP
 *                        (tempfail), an uncounted pass (accept), or its own in-memory
 *                        limiter (local), and logs each outage once, when it starts.
 *              Both hold the current policy: um_rlstore_set_policy() (reload) swaps it and
 *              every count survives; the next call of any connection uses it.
 *
 *              A reservation comes back as struct um_rlstore_resv (when n recipients were
 *              counted at which second, in which part of the store); giving it back with
 *              um_rlstore_release() reaches the same part, so a message counted locally
 *              during an outage is released locally after Redis has come back.
 *              struct um_rlstore_held is the list one message keeps until it completes.
 * THREADS      Every function on one store is safe from any thread (the limiters are);
 *              um_rlstore_free() only when no call is running.  A held list belongs to one
 *              message (one thread at a time).
 * OWNERSHIP    um_rlstore_new_memory()/_redis() take their own reference to the policy and
 *              own the limiters they create; the logger is borrowed for the store's life.
 *              Keys are borrowed for the call.
 * ERRORS       As the limiter behind: over the limit is UM_OK with decision->allowed
 *              false; UM_ETEMP only from a Redis store with on_error tempfail, or from
 *              release/reset/stats while Redis is down; UM_EINVAL, UM_ENOMEM, UM_ENOENT
 *              (reset of an unknown key), UM_EIO (snapshot) as ratelimit.h says.
 * LIMITS       No work of its own beyond one mutex-protected pointer copy per call (the
 *              Redis store's policy); the limits are the limiters'.
 */
#ifndef UM_RLSTORE_H
#define UM_RLSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "log.h"
#include "ratelimit.h"
#include "ratelimit_redis.h"

/* ratelimit.redis.on_error: what a Redis store does when Redis cannot answer (its names
 * are in lib/config.c's schema). */
enum um_rl_on_error {
    UM_RL_ON_ERROR_TEMPFAIL = 0, /* UM_ETEMP: the caller tempfails the recipient */
    UM_RL_ON_ERROR_ACCEPT = 1,   /* allowed and exempt: nothing counted, nothing to give back */
    UM_RL_ON_ERROR_LOCAL = 2,    /* counted in the store's own in-memory limiter */
};

/* One reservation, as um_rlstore_release() needs it back. */
struct um_rlstore_resv {
    int64_t ts;           /* decision.ts */
    unsigned n;           /* recipients */
    unsigned char origin; /* the part of the store that counted them (store-private) */
};

/* The ops a store implements; impl is its state. save and load may be NULL: the store keeps
 * no snapshot file (Redis keeps the counts itself). */
struct um_rlstore_ops {
    const char *name; /* "memory", "redis" */
    enum um_status (*reserve)(void *impl, struct um_str key, unsigned n, int64_t now,
                              struct um_ratelimit_decision *d, unsigned char *origin,
                              struct um_error *err);
    enum um_status (*release)(void *impl, unsigned char origin, struct um_str key, int64_t ts,
                              unsigned n, unsigned *released, struct um_error *err);
    enum um_status (*stats)(void *impl, int64_t now, struct um_ratelimit_stat *out, size_t max,
                            size_t *got, struct um_ratelimit_totals *t, struct um_error *err);
    enum um_status (*reset)(void *impl, struct um_str key, struct um_error *err);
    void (*set_policy)(void *impl, struct um_ratelimit_policy *policy,
                       enum um_rl_on_error on_error);
    enum um_status (*save)(void *impl, const char *path, int64_t now, struct um_error *err);
    enum um_status (*load)(void *impl, const char *path, int64_t now, size_t *loaded,
                           struct um_error *err);
    void (*free)(void *impl);
};

struct um_rlstore;

/* A store over any ops (tests: a fake). ops is borrowed (static const); impl is owned and
 * freed by ops->free. */
UM_NODISCARD enum um_status um_rlstore_new(const struct um_rlstore_ops *ops, void *impl,
                                           struct um_rlstore **out, struct um_error *err);

/* The in-memory store (um_ratelimit_new() with opts and policy). */
UM_NODISCARD enum um_status um_rlstore_new_memory(const struct um_ratelimit_opts *opts,
                                                  struct um_ratelimit_policy *policy,
                                                  struct um_rlstore **out, struct um_error *err);

/* The Redis store: a client per ro (no connection yet) plus the in-memory limiter per opts
 * that on_error local counts in (and whose max_senders stats report). log (may be NULL)
 * gets one warning per outage: "redis unavailable (WHY): WHAT". */
UM_NODISCARD enum um_status
um_rlstore_new_redis(const struct um_rlredis_opts *ro, const struct um_ratelimit_opts *opts,
                     struct um_ratelimit_policy *policy, enum um_rl_on_error on_error,
                     const struct um_logger *log, struct um_rlstore **out, struct um_error *err);

/* NULL does nothing. */
void um_rlstore_free(struct um_rlstore *s);

const char *um_rlstore_name(const struct um_rlstore *s);

/* Reserves n recipients for key at now (see um_ratelimit_reserve()). On UM_OK with
 * d->allowed and not d->exempt, *resv says what to give back. */
UM_NODISCARD enum um_status um_rlstore_reserve(struct um_rlstore *s, struct um_str key, unsigned n,
                                               int64_t now, struct um_ratelimit_decision *d,
                                               struct um_rlstore_resv *resv, struct um_error *err);

/* Gives back a reservation (the transaction did not complete); *released may be NULL. */
UM_NODISCARD enum um_status um_rlstore_release(struct um_rlstore *s, struct um_str key,
                                               const struct um_rlstore_resv *resv,
                                               unsigned *released, struct um_error *err);

/* Top senders (see um_ratelimit_stats()) and the totals: t->tracked is the keys stored
 * (Redis: the keys listed), t->max_senders the in-memory table's size. */
UM_NODISCARD enum um_status um_rlstore_stats(struct um_rlstore *s, int64_t now,
                                             struct um_ratelimit_stat *out, size_t max, size_t *got,
                                             struct um_ratelimit_totals *t, struct um_error *err);

/* Forgets one key: UM_OK, or UM_ENOENT when it was not tracked. */
UM_NODISCARD enum um_status um_rlstore_reset(struct um_rlstore *s, struct um_str key,
                                             struct um_error *err);

/* Reload: the new policy (and on_error, for a Redis store); counts are kept. Never fails. */
void um_rlstore_set_policy(struct um_rlstore *s, struct um_ratelimit_policy *policy,
                           enum um_rl_on_error on_error);

/* Whether the store keeps its counts in a snapshot file (ratelimit.state_file). */
bool um_rlstore_has_snapshot(const struct um_rlstore *s);

/* The snapshot (see um_ratelimit_save()/_load()); UM_OK and nothing done when the store
 * keeps none (*loaded 0). */
UM_NODISCARD enum um_status um_rlstore_save(struct um_rlstore *s, const char *path, int64_t now,
                                            struct um_error *err);
UM_NODISCARD enum um_status um_rlstore_load(struct um_rlstore *s, const char *path, int64_t now,
                                            size_t *loaded, struct um_error *err);

/* --- the reservations of one message ------------------------------------------------- */

struct um_rlstore_held {
    struct um_rlstore_resv *v;
    size_t n;
};

/* Remembers r, merged into the last entry when it has the same ts and origin. false: no
 * memory to remember it (it stays counted: never under-count). */
bool um_rlstore_hold(struct um_rlstore_held *h, const struct um_rlstore_resv *r);

/* Forgets every entry without giving it back (the message completed). */
void um_rlstore_held_clear(struct um_rlstore_held *h);

#endif
