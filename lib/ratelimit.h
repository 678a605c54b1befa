/*
 * ratelimit - per-sender recipient rate limiting over an exact sliding window
 *
 * DESCRIPTION  Counts accepted recipients per sender key (see senderkey.h) and says
 *              whether n more fit.  Guarantee, per key and for the caller's clock: in no
 *              span of `window` consecutive seconds are more than `limit` recipients
 *              accepted.  A recipient accepted at second t counts at time now while
 *              now - t < window, so after limit 10/3600 is spent at t = 0..9 the 11th fits
 *              at t = 3600 (when the first ages out), not before.  Precision: 1 second.
 *              The clock is injected: every call takes `now` (Unix seconds, 0..2^32-1);
 *              nothing here calls time().  If `now` goes backwards for a key, that key
 *              uses its newest stored timestamp instead (conservative: entries never
 *              expire early).
 *
 *              Policy (struct um_ratelimit_policy): default limit and window, plus rules
 *              that override the limit (higher or lower, 0 blocks) or exempt.  A policy is
 *              immutable from birth and refcounted; um_ratelimit_set_policy() swaps it at
 *              runtime and keeps every count.  Rule patterns, all ASCII case-insensitive:
 *                "sasl:alice"      exactly this key (write keys as `unimilter stats`
 *                                  shows them, with their kind prefix)
 *                "@example.com"    any key whose part after its LAST '@' is example.com,
 *                                  and the key "domain:example.com"
 *                "@.example.com"   the same for any subdomain of example.com (not
 *                                  example.com itself)
 *              Precedence: an exact rule, then "@domain", then the longest matching
 *              "@.parent"; else the default.  So "@lists.example.org" exempt and
 *              "sender:spammer@lists.example.org" 5 limits that one sender to 5.
 *
 *              Episodes: um_ratelimit_reserve() sets decision.notify on the first refusal
 *              of an episode only.  An episode starts with a refusal and ends when a full
 *              window passes with no refusal (or on reset/eviction).  We do not end it when
 *              the count dips below the limit: a sender pinned at the limit dips below each
 *              time one old recipient ages out, and would be reported every few minutes.
 *
 *              Give-back: a reservation records its recipients at decision.ts; release
 *              removes up to n entries stamped exactly ts.  Entries with equal timestamps
 *              are interchangeable (same expiry), so concurrent connections of one sender
 *              can never hand back each other's counts in a way that matters.
 *
 *              Exempt keys are not stored at all (no memory, count 0 in decisions); a key
 *              that becomes exempt on reload drops its count.
 *
 * THREADS      Every function on one struct um_ratelimit is safe from any thread.  The
 *              sender table is split into shards, each behind its own mutex, held only for
 *              arithmetic and memcpy (no I/O, no logging, no calls out of this module).
 *              um_ratelimit_save() takes one shard lock at a time and writes after
 *              unlocking.  A policy is immutable; its refcount is atomic.
 * OWNERSHIP    Keys and rule patterns are borrowed for the call and copied when stored.
 *              um_ratelimit_new() and um_ratelimit_set_policy() take their own reference
 *              to the policy; the caller still owns (and must free) its own.
 * ERRORS       Over-limit is a verdict, not an error: UM_OK with decision->allowed false.
 *              UM_EINVAL: bad key (empty, longer than UM_RATELIMIT_KEY_MAX), now outside
 *              0..UINT32_MAX, n outside 1..UM_RATELIMIT_MAX_LIMIT, bad rule, corrupt
 *              snapshot ("ratelimit: PATH: line N: why").  UM_ENOMEM: a new key or a larger
 *              ring could not be stored; nothing was counted (the caller should tempfail).
 *              UM_EIO: snapshot file I/O ("ratelimit: PATH: write: No space left...").
 * LIMITS       At most opts.max_senders tracked keys, split evenly over the shards; when a
 *              shard is full the least recently used idle key is evicted (idle: no entry
 *              inside the window and no live episode), looking at most
 *              UM_RATELIMIT_EVICT_SCAN keys from the LRU end; if none is idle, the least
 *              recently used key is evicted anyway and decision->evicted_active is set so
 *              the daemon can log "raise max_senders" (see ratelimit.c for why this beats
 *              refusing new senders).  Per key, at most min(limit, UM_RATELIMIT_MAX_LIMIT)
 *              timestamps are kept (only the newest `limit` can ever matter).  Each call is
 *              O(1) amortised in the number of keys and O(limit) worst case per key
 *              (a give-back from the middle of a ring, a policy change).
 *              Memory per tracked sender, x86-64 glibc, measured with 100000 senders and
 *              26-byte keys (struct, key, ring, malloc headers, hash buckets): about
 *              130 bytes + key length + 4 bytes per recipient inside the window; 155 bytes
 *              for a sender of one recipient, 219 at limit 20 with a full ring, 538 at
 *              limit 100.  100000 senders at limit 20 take about 22 MB.  Rings grow by
 *              doubling, to at most the key's limit.
 */
#ifndef UM_RATELIMIT_H
#define UM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define UM_RATELIMIT_KEY_MAX             1023           /* bytes; = UM_SENDERKEY_MAX */
#define UM_RATELIMIT_MAX_LIMIT           100000         /* recipients per window, per key */
#define UM_RATELIMIT_MAX_WINDOW          (31u * 86400u) /* seconds */
#define UM_RATELIMIT_DEFAULT_WINDOW      3600
#define UM_RATELIMIT_DEFAULT_MAX_SENDERS 100000
#define UM_RATELIMIT_DEFAULT_SHARDS      32
#define UM_RATELIMIT_MAX_SHARDS          256
#define UM_RATELIMIT_EVICT_SCAN          64
#define UM_RATELIMIT_SNAPSHOT_VERSION    1

struct um_ratelimit;
struct um_ratelimit_policy;

enum um_ratelimit_rule_kind {
    UM_RATELIMIT_RULE_LIMIT = 1, /* use rule.limit instead of the default */
    UM_RATELIMIT_RULE_EXEMPT,    /* never limited, never counted */
};

struct um_ratelimit_rule {
    struct um_str pattern; /* "key", "@domain" or "@.domain"; see DESCRIPTION */
    enum um_ratelimit_rule_kind kind;
    unsigned limit; /* 0..UM_RATELIMIT_MAX_LIMIT; ignored for EXEMPT */
};

struct um_ratelimit_opts {
    size_t max_senders; /* 0: UM_RATELIMIT_DEFAULT_MAX_SENDERS */
    unsigned shards;    /* 0: UM_RATELIMIT_DEFAULT_SHARDS; at most UM_RATELIMIT_MAX_SHARDS
                           and at most max_senders */
    uint64_t seed[2];   /* hash key against collision flooding: pass random bytes */
};

struct um_ratelimit_decision {
    bool allowed;         /* true: the n recipients are now counted */
    bool exempt;          /* an exemption matched; allowed is true, nothing counted */
    bool notify;          /* first refusal of an episode: tell someone, once */
    bool evicted_active;  /* storing this key evicted a non-idle one (table too small) */
    unsigned count;       /* recipients inside the window after this call */
    unsigned limit;       /* effective limit for this key */
    unsigned window;      /* seconds */
    unsigned refused;     /* refusals in the current episode, this one included */
    unsigned retry_after; /* refused: seconds until n would fit (0: never, n > limit) */
    int64_t ts;           /* allowed: timestamp recorded; give it to um_ratelimit_release() */
};

struct um_ratelimit_stat {
    char key[UM_RATELIMIT_KEY_MAX + 1]; /* NUL-terminated; may hold any other byte */
    size_t key_len;
    unsigned count;   /* recipients inside the window */
    unsigned limit;   /* effective limit */
    unsigned refused; /* refusals in the current episode (0: none live) */
    int64_t oldest;   /* timestamp of the oldest counted recipient */
};

struct um_ratelimit_totals {
    size_t tracked; /* keys stored now */
    size_t max_senders;
    uint64_t evicted_idle;   /* since um_ratelimit_new() */
    uint64_t evicted_active; /* non-zero: max_senders is too small for the traffic */
};

/* --- policy ------------------------------------------------------------------------- */

/* Syntax check of one pattern, for the config layer to call with file:line at hand. */
UM_NODISCARD enum um_status um_ratelimit_pattern_check(struct um_str pattern, struct um_error *err);

/*
 * Builds an immutable policy (refcount 1).  limit 0..UM_RATELIMIT_MAX_LIMIT, window
 * 1..UM_RATELIMIT_MAX_WINDOW.  Rules are copied; a duplicate pattern (case-insensitive) is
 * UM_EINVAL "rule N: duplicate pattern \"P\"" (N counts from 1).
 */
UM_NODISCARD enum um_status um_ratelimit_policy_new(unsigned limit, unsigned window,
                                                    const struct um_ratelimit_rule *rules,
                                                    size_t nrules, struct um_ratelimit_policy **out,
                                                    struct um_error *err);

/* Takes one more reference; returns p. */
struct um_ratelimit_policy *um_ratelimit_policy_ref(struct um_ratelimit_policy *p);

/* Drops one reference; frees on the last.  NULL does nothing. */
void um_ratelimit_policy_free(struct um_ratelimit_policy *p);

/* The effective limit of a key under p (pure lookup; key need not be lower-case). */
void um_ratelimit_policy_match(const struct um_ratelimit_policy *p, struct um_str key,
                               unsigned *limit, bool *exempt);

unsigned um_ratelimit_policy_window(const struct um_ratelimit_policy *p);

/* --- limiter ------------------------------------------------------------------------ */

/* opts NULL: all defaults (seed 0: fine for tests, not for a daemon). */
UM_NODISCARD enum um_status um_ratelimit_new(const struct um_ratelimit_opts *opts,
                                             struct um_ratelimit_policy *policy,
                                             struct um_ratelimit **out, struct um_error *err);

/* NULL does nothing. */
void um_ratelimit_free(struct um_ratelimit *rl);

/*
 * Publishes a new policy (reload).  Counts, episodes and LRU order are kept; each key picks
 * up its new limit on its next use (a lower limit keeps only the newest `limit` entries,
 * which is exact: older ones can never decide again).  Never fails.
 */
void um_ratelimit_set_policy(struct um_ratelimit *rl, struct um_ratelimit_policy *policy);

/*
 * Reserves n recipients for key at now, all or nothing: at RCPT n = 1; at end of message
 * (non_smtpd_milters) n = the message's recipient count.  On UM_OK, *d says what happened;
 * a reservation counts immediately, so parallel connections of one sender cannot overshoot.
 */
UM_NODISCARD enum um_status um_ratelimit_reserve(struct um_ratelimit *rl, struct um_str key,
                                                 unsigned n, int64_t now,
                                                 struct um_ratelimit_decision *d,
                                                 struct um_error *err);

/* As reserve with n = 1 but changes nothing (not even LRU order); d->allowed says whether
 * one more would fit.  Unknown keys report count 0. */
UM_NODISCARD enum um_status um_ratelimit_peek(struct um_ratelimit *rl, struct um_str key,
                                              int64_t now, struct um_ratelimit_decision *d,
                                              struct um_error *err);

/*
 * Gives back up to n recipients reserved at ts (decision.ts) for an aborted or rejected
 * transaction.  *released (may be NULL) says how many were removed: fewer than n when the
 * entries already aged out, were reset or evicted.  Releasing more than was reserved
 * under-counts the sender: don't.
 */
UM_NODISCARD enum um_status um_ratelimit_release(struct um_ratelimit *rl, struct um_str key,
                                                 int64_t ts, unsigned n, unsigned *released,
                                                 struct um_error *err);

/* Forgets one key (`unimilter reset SENDER`): UM_OK, or UM_ENOENT if it was not tracked. */
UM_NODISCARD enum um_status um_ratelimit_reset(struct um_ratelimit *rl, struct um_str key,
                                               struct um_error *err);

/*
 * Top senders by count inside the window at now (ties: key order), at most max of them,
 * into out[]; *got says how many.  Keys with count 0 are left out.  Locks one shard at a
 * time: O(keys * log max).
 */
void um_ratelimit_stats(struct um_ratelimit *rl, int64_t now, struct um_ratelimit_stat *out,
                        size_t max, size_t *got);

void um_ratelimit_totals(struct um_ratelimit *rl, struct um_ratelimit_totals *t);

/*
 * Snapshot, text, version 1 (see ratelimit.c for the grammar):
 *   unimilter-ratelimit 1\n
 *   KEY SP EPISODE SP N {SP TS}\n          one line per live key, TS ascending
 *   end SP COUNT\n
 * KEY is percent-encoded: bytes outside 0x21..0x7e and '%' are written %HH, so any bytes
 * round-trip.  EPISODE is "-" or the time of the episode's last refusal.
 *
 * save writes every live key (an entry inside the window at now, or a live episode) to a
 * temporary file in path's directory, fsyncs it, renames it over path and fsyncs the
 * directory: a crash leaves the old or the new snapshot, never half of one.  What a
 * restart can lose is what was counted since the last save.
 *
 * load reads path (a missing file is UM_OK: first start), drops entries no longer inside
 * the window at now, and merges the rest into the limiter (union of timestamps, newest kept;
 * the current policy sizes the rings, so set the policy first).  The file is parsed
 * completely before anything is applied.  A damaged file is UM_EINVAL (UM_EIO for a read
 * error) "ratelimit: PATH: line N: why; the K record(s) before it kept": the K records
 * before the first damaged line are applied all the same.  A file that is not a version 1
 * snapshot at all is UM_EINVAL "ratelimit: PATH: line 1: why" and changes nothing.
 * *loaded (may be NULL) counts the keys restored, also when the file was damaged.
 */
UM_NODISCARD enum um_status um_ratelimit_save(struct um_ratelimit *rl, const char *path,
                                              int64_t now, struct um_error *err);
UM_NODISCARD enum um_status um_ratelimit_load(struct um_ratelimit *rl, const char *path,
                                              int64_t now, size_t *loaded, struct um_error *err);

#endif
