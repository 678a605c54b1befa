/*
 * ratelimit_redis - the per-sender sliding-window limiter, shared through Redis
 *
 * DESCRIPTION  The same limiter as ratelimit.h, with its state in one Redis server so that
 *              several unimilter processes (several submission hosts) share one count per
 *              sender.  Same guarantee: per key, in no span of `window` consecutive seconds
 *              are more than `limit` recipients accepted, to the second.  Same policy
 *              (struct um_ratelimit_policy, um_ratelimit_policy_match(): overrides and
 *              exemptions), same decision struct, same episodes (decision.notify on the
 *              first refusal of an episode only, across all processes), same give-back
 *              (release n entries stamped ts), same key rules (ASCII case-insensitive,
 *              1..UM_RATELIMIT_KEY_MAX bytes of anything).
 *
 *              Each decision is ONE Lua script run atomically by Redis (EVALSHA, EVAL when
 *              the server answers NOSCRIPT), so any number of processes and threads can
 *              never together overshoot.  Per sender, two keys:
 *                PREFIX{HEX}     ZSET, one member per counted recipient: score = second
 *                                stamped, member "TS:SEQ" (unique; SEQ from HINCRBY)
 *                PREFIX{HEX}:e   HASH: s = SEQ counter, r = refusals in the live episode,
 *                                l = time of the episode's last refusal
 *              HEX is the lower-cased key in hex, so any bytes are safe; the {braces} are a
 *              Redis Cluster hash tag keeping both keys in one slot.  Both keys get
 *              EXPIRE window + expire_margin on every write, so idle senders vanish.
 *
 *              Clock: the caller's `now` is sent to the script; Redis TIME is never used.
 *              So every process sharing a server must have a synchronised clock (NTP);
 *              a process whose clock is behind is handled as in ratelimit.h (the key's
 *              clock never goes back: it is the newest of now, its newest entry and its
 *              last refusal), one whose clock is ahead stamps entries that live longer
 *              (conservative).  EXPIRE runs on Redis's clock: expire_margin must exceed
 *              the worst skew between Redis and the processes.
 *
 *              Exempt keys never reach Redis (no round trip, nothing stored).
 *
 *              Failures: every function here returns UM_ETEMP when Redis is down, slow,
 *              restarting or answers an error; what to do then (tempfail, accept, fall
 *              back to the local limiter) is the caller's policy (rlstore.h: the Redis
 *              store applies ratelimit.redis.on_error).  After a connection
 *              failure the client is "down": calls fail at once, without I/O, until a
 *              backoff (backoff_min_ms, doubling to backoff_max_ms) has passed; then one
 *              call probes with a new connection while the others keep failing fast.
 *              The first success ends the outage.  um_rlredis_totals() counts outages so
 *              the caller can log once per outage.
 * THREADS      Every function is safe from any thread on one struct um_rlredis.  hiredis
 *              contexts are not thread-safe, so the client keeps a pool of at most
 *              pool_size connections; a call borrows one for its I/O.  The pool mutex is
 *              held only for bookkeeping, never across I/O.  The process must ignore
 *              SIGPIPE (hiredis 0.14 writes with write(2); libmilter's smfi_main() sets
 *              SIG_IGN, tests must do it themselves).
 * OWNERSHIP    Options strings are copied by um_rlredis_new().  Keys and the policy are
 *              borrowed for the call; the policy is only read (per call, so a reload just
 *              passes the new one).
 * ERRORS       Over the limit is a verdict: UM_OK with decision->allowed false.
 *              UM_EINVAL: empty key ("ratelimit: empty key"), key too long, now or ts
 *              outside 0..UINT32_MAX, n outside 1..UM_RATELIMIT_MAX_LIMIT, bad options.
 *              UM_ENOMEM.  UM_ENOENT from reset: key not tracked.  UM_ETEMP, messages
 *              "ratelimit: redis ADDR: ..." where ADDR is HOST:PORT or unix:PATH:
 *                "connect: Connection refused"       (connect failed)
 *                "timed out after 200 ms"            (whole call over its deadline)
 *                "Server closed the connection", ... (I/O error, hiredis's words)
 *                "error reply: LOADING ..."          (an error reply, Redis's words)
 *                "unexpected reply"                  (not what the script returns)
 *                "all 8 connections busy"            (pool exhausted until the deadline)
 *                "down, next attempt in 400 ms: ..." (backoff; the last error follows)
 * LIMITS       A call never takes longer than timeout_ms (plus scheduling): the connect
 *              and every read or write get only the time left of one deadline.
 *              XXX: a host name is resolved by getaddrinfo() without that bound; use an IP
 *              address or a unix socket.  stats: at most stats_scan_max keys examined, each
 *              SCAN page (COUNT 500) and its script bounded by timeout_ms.  Redis memory per
 *              sender: two small keys, about 100 bytes + 2x key length + ~40 bytes per
 *              recipient inside the window; at most `limit` members (older are trimmed).
 *              A reservation of n adds n ZSET members in one script (O(n log N)).
 */
#ifndef UM_RATELIMIT_REDIS_H
#define UM_RATELIMIT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ratelimit.h"

#define UM_RLREDIS_DEFAULT_HOST          "127.0.0.1"
#define UM_RLREDIS_DEFAULT_PORT          6379
#define UM_RLREDIS_DEFAULT_PREFIX        "um:rl:"
#define UM_RLREDIS_DEFAULT_TIMEOUT_MS    200
#define UM_RLREDIS_DEFAULT_POOL          8
#define UM_RLREDIS_DEFAULT_BACKOFF_MIN   100  /* ms */
#define UM_RLREDIS_DEFAULT_BACKOFF_MAX   5000 /* ms */
#define UM_RLREDIS_DEFAULT_EXPIRE_MARGIN 60   /* seconds */
#define UM_RLREDIS_DEFAULT_SCAN_MAX      100000
#define UM_RLREDIS_PREFIX_MAX            64
#define UM_RLREDIS_MAX_POOL              256
#define UM_RLREDIS_MAX_TIMEOUT_MS        60000

struct um_rlredis;

/* Zero means the default everywhere. */
struct um_rlredis_opts {
    const char *host;        /* IP address (see LIMITS); NULL: UM_RLREDIS_DEFAULT_HOST */
    unsigned port;           /* 0: 6379 */
    const char *socket;      /* unix socket path; when set, host and port are ignored */
    const char *prefix;      /* key prefix, 1..UM_RLREDIS_PREFIX_MAX bytes; NULL: "um:rl:" */
    unsigned timeout_ms;     /* whole-call deadline, 1..UM_RLREDIS_MAX_TIMEOUT_MS */
    unsigned pool_size;      /* connections, 1..UM_RLREDIS_MAX_POOL */
    unsigned backoff_min_ms; /* first wait after a failure */
    unsigned backoff_max_ms; /* the wait doubles up to this */
    unsigned expire_margin;  /* seconds added to the window for EXPIRE */
    size_t stats_scan_max;   /* keys examined by um_rlredis_stats() */
};

struct um_rlredis_totals {
    uint64_t calls;     /* calls that needed Redis */
    uint64_t failures;  /* of them, UM_ETEMP (fast failures while down included) */
    uint64_t outages;   /* up -> down transitions: log when this changes */
    uint64_t connects;  /* connections opened */
    bool down;          /* now in an outage */
    unsigned pool_size; /* connections allowed */
    unsigned pool_open; /* connections open now */
};

/* Checks and copies the options; does not connect (Redis may be down at startup). */
UM_NODISCARD enum um_status um_rlredis_new(const struct um_rlredis_opts *o, struct um_rlredis **out,
                                           struct um_error *err);

/* Closes every connection.  No call may be running.  NULL does nothing. */
void um_rlredis_free(struct um_rlredis *r);

/*
 * Reserves n recipients for key at now, all or nothing, under policy (as
 * um_ratelimit_reserve()).  decision->evicted_active is always false (Redis expires keys,
 * it does not evict them as long as it has memory).  May block up to timeout_ms.
 */
UM_NODISCARD enum um_status um_rlredis_reserve(struct um_rlredis *r,
                                               const struct um_ratelimit_policy *policy,
                                               struct um_str key, unsigned n, int64_t now,
                                               struct um_ratelimit_decision *d,
                                               struct um_error *err);

/* Gives back up to n recipients stamped ts (decision.ts); *released (may be NULL) says how
 * many were removed. */
UM_NODISCARD enum um_status um_rlredis_release(struct um_rlredis *r, struct um_str key, int64_t ts,
                                               unsigned n, unsigned *released,
                                               struct um_error *err);

/* Forgets one key (count and episode): UM_OK, or UM_ENOENT
 * "ratelimit: \"KEY\" is not tracked" as um_ratelimit_reset(). */
UM_NODISCARD enum um_status um_rlredis_reset(struct um_rlredis *r, struct um_str key,
                                             struct um_error *err);

/*
 * Top senders by count inside the window at now (ties: key order), at most max, into out[];
 * *got says how many.  Walks the prefix with SCAN, at most opts.stats_scan_max keys; keys
 * with count 0 and exempt keys are left out; limits come from policy.  Each page is one
 * round trip bounded by timeout_ms, so the whole call may take longer: it is for operators.
 */
UM_NODISCARD enum um_status um_rlredis_stats(struct um_rlredis *r,
                                             const struct um_ratelimit_policy *policy, int64_t now,
                                             struct um_ratelimit_stat *out, size_t max, size_t *got,
                                             struct um_error *err);

void um_rlredis_totals(struct um_rlredis *r, struct um_rlredis_totals *t);

#endif
