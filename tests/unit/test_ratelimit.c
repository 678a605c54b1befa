/*
 * test_ratelimit.c - the sliding-window limiter, with an injected clock
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit.h"
#include "ratelimit_scripts.h"

#define S(lit)   ((struct um_str){(lit), sizeof(lit) - 1})
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static struct um_str
cstr(const char *s)
{
    return (struct um_str){s, strlen(s)};
}

static struct um_ratelimit_policy *
mk_policy(unsigned limit, unsigned window, const struct um_ratelimit_rule *rules, size_t n)
{
    struct um_ratelimit_policy *p = NULL;
    struct um_error err = {0};

    if (um_ratelimit_policy_new(limit, window, rules, n, &p, &err) != UM_OK)
        fail_msg("policy_new: %s", err.msg);
    return p;
}

/* A limiter owning the only reference to its policy. */
static struct um_ratelimit *
mk_rl(unsigned limit, unsigned window, const struct um_ratelimit_rule *rules, size_t n,
      size_t max_senders, unsigned shards)
{
    struct um_ratelimit_opts o = {max_senders, shards, {0x0123456789abcdefULL, 42}};
    struct um_ratelimit_policy *p = mk_policy(limit, window, rules, n);
    struct um_ratelimit *rl = NULL;
    struct um_error err = {0};

    if (um_ratelimit_new(&o, p, &rl, &err) != UM_OK)
        fail_msg("new: %s", err.msg);
    um_ratelimit_policy_free(p);
    return rl;
}

static struct um_ratelimit_decision
take(struct um_ratelimit *rl, const char *key, unsigned n, int64_t now)
{
    struct um_ratelimit_decision d;
    struct um_error err = {0};

    if (um_ratelimit_reserve(rl, cstr(key), n, now, &d, &err) != UM_OK)
        fail_msg("reserve %s n=%u t=%lld: %s", key, n, (long long)now, err.msg);
    return d;
}

static unsigned
count_of(struct um_ratelimit *rl, const char *key, int64_t now)
{
    struct um_ratelimit_decision d;

    assert_int_equal(um_ratelimit_peek(rl, cstr(key), now, &d, NULL), UM_OK);
    return d.count;
}

/* --- the sliding guarantee, scripted ------------------------------------------------ */

static void
run_script(const char *name, unsigned limit, unsigned window, const struct step *s, size_t n)
{
    struct um_ratelimit *rl = mk_rl(limit, window, NULL, 0, 100, 1);

    for (size_t i = 0; i < n; i++) {
        struct um_ratelimit_decision d = take(rl, "sasl:alice", s[i].n, s[i].t);
        check_step(name, i, s, d, limit, window);
    }
    um_ratelimit_free(rl);
}

static void
test_clock_backwards(void **state)
{
    struct um_ratelimit *rl = mk_rl(2, 100, NULL, 0, 10, 1);
    struct um_ratelimit_decision d;

    (void)state;
    d = take(rl, "k", 2, 1000);
    assert_true(d.allowed);
    /* The clock steps back 500 s: the key's clock stays at 1000, nothing expires early. */
    d = take(rl, "k", 1, 500);
    assert_false(d.allowed);
    assert_int_equal(d.ts, 1000);
    assert_int_equal(d.retry_after, 100);
    d = take(rl, "k", 1, 1099);
    assert_false(d.allowed);
    d = take(rl, "k", 1, 1100);
    assert_true(d.allowed);
    assert_int_equal(d.ts, 1100);
    um_ratelimit_free(rl);
}

/* --- randomized property: exact both ways --------------------------------------------- */

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static unsigned
brute_count(const uint32_t *acc, size_t n, uint32_t t, unsigned window)
{
    unsigned c = 0;

    for (size_t i = 0; i < n; i++) {
        if (acc[i] <= t && t - acc[i] < window)
            c++;
    }
    return c;
}

static void
test_property_random(void **state)
{
    enum { ROUNDS = 300, OPS = 400 };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    static uint32_t acc[OPS * 3];

    (void)state;
    for (unsigned round = 0; round < ROUNDS; round++) {
        unsigned limit = 1 + (unsigned)(rnd(&seed) % 20);
        unsigned window = 1 + (unsigned)(rnd(&seed) % 200);
        bool releases = round % 2 == 1;
        struct um_ratelimit *rl = mk_rl(limit, window, NULL, 0, 10, 1);
        size_t nacc = 0;
        int64_t now = (int64_t)(rnd(&seed) % 1000);

        for (unsigned op = 0; op < OPS; op++) {
            uint64_t r = rnd(&seed);
            now += (int64_t)(r % 4 == 0 ? r % (2 * window) : r % 3);
            if (releases && nacc > 0 && r % 10 == 0) {
                /* Give back one recorded recipient. */
                size_t victim = (size_t)(rnd(&seed) % nacc);
                unsigned got = 0;
                assert_int_equal(um_ratelimit_release(rl, S("key"), acc[victim], 1, &got, NULL),
                                 UM_OK);
                /* Entries that aged out of the ring may be gone already. */
                if (got == 1)
                    acc[victim] = acc[--nacc];
                continue;
            }
            unsigned n = 1 + (unsigned)(rnd(&seed) % 3);
            struct um_ratelimit_decision d = take(rl, "key", n, now);
            uint32_t t = (uint32_t)d.ts;
            unsigned before = brute_count(acc, nacc, t, window);
            bool want = before + n <= limit;
            if (d.allowed != want) {
                fail_msg("round %u (limit %u window %u) op %u t=%u n=%u: got allowed=%d, want "
                         "%d (%u accepted in window)",
                         round, limit, window, op, t, n, d.allowed, want, before);
            }
            if (d.allowed) {
                for (unsigned i = 0; i < n; i++)
                    acc[nacc++] = t;
            }
            unsigned want_count = brute_count(acc, nacc, t, window);
            if (d.count != (want_count < limit ? want_count : limit))
                fail_msg("round %u op %u: got count %u, want %u", round, op, d.count, want_count);
        }
        /* No span of `window` seconds holds more than `limit`: check every span that ends
         * on an accepted recipient, which is where the maximum is. */
        for (size_t i = 0; i < nacc; i++) {
            unsigned c = brute_count(acc, nacc, acc[i], window);
            if (c > limit)
                fail_msg("round %u: %u accepted in the window ending at %u, limit %u", round, c,
                         acc[i], limit);
        }
        um_ratelimit_free(rl);
    }
}

/* --- policy --------------------------------------------------------------------------- */

static const struct um_ratelimit_rule match_rules[] = {
    {S("sasl:alice"), UM_RATELIMIT_RULE_LIMIT, 500},
    {S("@example.com"), UM_RATELIMIT_RULE_LIMIT, 50},
    {S("@.example.com"), UM_RATELIMIT_RULE_LIMIT, 20},
    {S("@Lists.Example.ORG"), UM_RATELIMIT_RULE_EXEMPT, 0},
    {S("sender:spam@lists.example.org"), UM_RATELIMIT_RULE_LIMIT, 5},
    {S("@.org"), UM_RATELIMIT_RULE_LIMIT, 7},
    {S("uid:33"), UM_RATELIMIT_RULE_LIMIT, 0},
    {S("@.deep.example.com"), UM_RATELIMIT_RULE_EXEMPT, 0},
};

static const struct {
    const char *key;
    unsigned limit;
    bool exempt;
} match_cases[] = {
    {"sasl:alice", 500, false},
    {"SASL:Alice", 500, false},
    {"sasl:alice2", 10, false},
    {"sasl:bob@example.com", 50, false},
    {"sender:bob@EXAMPLE.com", 50, false},
    {"sender:bob@mail.example.com", 20, false},
    {"sender:bob@a.b.example.com", 20, false},
    {"sender:bob@x.deep.example.com", 0, true},
    {"sender:bob@deep.example.com", 20, false},
    {"domain:example.com", 50, false},
    {"domain:mail.example.com", 20, false},
    {"sender:x@lists.example.org", 0, true},
    {"sender:spam@lists.example.org", 5, false},
    {"sender:x@other.org", 7, false},
    {"sender:x@org", 10, false},
    {"sender:x@notexample.com", 10, false},
    {"sasl:a@b@example.com", 50, false},
    {"sender:bob@", 10, false},
    {"uid:33", 0, false},
    {"uid:330", 10, false},
    {"ip:192.0.2.1", 10, false},
};

static void
test_policy_match(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(10, 3600, match_rules, NELEM(match_rules));

    (void)state;
    assert_int_equal(um_ratelimit_policy_window(p), 3600);
    for (size_t i = 0; i < NELEM(match_cases); i++) {
        unsigned limit = 9999;
        bool exempt = true;
        um_ratelimit_policy_match(p, cstr(match_cases[i].key), &limit, &exempt);
        if (limit != match_cases[i].limit || exempt != match_cases[i].exempt) {
            fail_msg("%s: got limit %u exempt %d, want limit %u exempt %d", match_cases[i].key,
                     limit, exempt, match_cases[i].limit, match_cases[i].exempt);
        }
    }
    um_ratelimit_policy_free(p);
}

static const struct {
    const char *name;
    unsigned limit, window;
    struct um_ratelimit_rule rules[3];
    size_t n;
    const char *want;
} policy_bad[] = {
    {"window 0",
     10,
     0,
     {{S("x"), UM_RATELIMIT_RULE_LIMIT, 1}},
     0,
     "ratelimit: window 0 not in 1..2678400"},
    {"limit too big",
     100001,
     60,
     {{S("x"), UM_RATELIMIT_RULE_LIMIT, 1}},
     0,
     "ratelimit: limit 100001 above 100000"},
    {"duplicate, other case",
     10,
     60,
     {{S("sasl:a"), UM_RATELIMIT_RULE_LIMIT, 1},
      {S("@x.org"), UM_RATELIMIT_RULE_EXEMPT, 0},
      {S("SASL:A"), UM_RATELIMIT_RULE_EXEMPT, 0}},
     3,
     "rule 3: duplicate pattern \"SASL:A\""},
    {"empty pattern",
     10,
     60,
     {{S(""), UM_RATELIMIT_RULE_LIMIT, 1}},
     1,
     "rule 1: ratelimit: empty pattern"},
    {"no domain",
     10,
     60,
     {{S("a"), UM_RATELIMIT_RULE_LIMIT, 1}, {S("@."), UM_RATELIMIT_RULE_LIMIT, 1}},
     2,
     "rule 2: ratelimit: pattern \"@.\" has no domain"},
    {"@ in domain",
     10,
     60,
     {{S("@a@b"), UM_RATELIMIT_RULE_EXEMPT, 0}},
     1,
     "rule 1: ratelimit: pattern \"@a@b\" has '@' inside its domain"},
    {"rule limit too big",
     10,
     60,
     {{S("k"), UM_RATELIMIT_RULE_LIMIT, 200000}},
     1,
     "rule 1: limit 200000 above 100000"},
    {"bad kind", 10, 60, {{S("k"), 0, 1}}, 1, "rule 1: bad kind 0"},
};

static void
test_policy_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(policy_bad); i++) {
        struct um_ratelimit_policy *p = (struct um_ratelimit_policy *)&p;
        struct um_error err = {0};
        enum um_status st = um_ratelimit_policy_new(policy_bad[i].limit, policy_bad[i].window,
                                                    policy_bad[i].rules, policy_bad[i].n, &p, &err);
        if (st != UM_EINVAL || p != NULL || strcmp(err.msg, policy_bad[i].want) != 0)
            fail_msg("%s: got %s \"%s\", want EINVAL \"%s\"", policy_bad[i].name,
                     um_status_name(st), err.msg, policy_bad[i].want);
    }
}

static void
test_overrides_and_exempt(void **state)
{
    struct um_ratelimit *rl = mk_rl(10, 3600, match_rules, NELEM(match_rules), 100, 4);
    struct um_ratelimit_decision d;
    struct um_ratelimit_totals tot;

    (void)state;
    /* Higher: alice gets 500. */
    d = take(rl, "sasl:alice", 500, 0);
    assert_true(d.allowed);
    assert_int_equal(d.limit, 500);
    assert_false(take(rl, "sasl:alice", 1, 1).allowed);
    /* Lower: spam@lists gets 5 although its domain is exempt. */
    assert_true(take(rl, "sender:spam@lists.example.org", 5, 0).allowed);
    d = take(rl, "sender:spam@lists.example.org", 1, 0);
    assert_false(d.allowed);
    assert_int_equal(d.limit, 5);
    /* Zero: uid 33 is blocked outright. */
    d = take(rl, "uid:33", 1, 0);
    assert_false(d.allowed);
    assert_true(d.notify);
    /* Exempt: never refused, never counted, never stored. */
    um_ratelimit_totals(rl, &tot);
    size_t before = tot.tracked;
    for (int i = 0; i < 2000; i++) {
        d = take(rl, "sender:list-bounces@lists.example.org", 1, i);
        if (!d.allowed || !d.exempt || d.count != 0)
            fail_msg("exempt, call %d: got allowed=%d exempt=%d count=%u", i, d.allowed, d.exempt,
                     d.count);
    }
    um_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.tracked, before);
    /* Default for everyone else. */
    d = take(rl, "sasl:carol", 11, 0);
    assert_false(d.allowed);
    assert_int_equal(d.limit, 10);
    um_ratelimit_free(rl);
}

static void
test_reload_keeps_counts(void **state)
{
    struct um_ratelimit *rl = mk_rl(10, 3600, NULL, 0, 100, 4);
    struct um_ratelimit_rule up = {S("sasl:bob"), UM_RATELIMIT_RULE_LIMIT, 20};
    struct um_ratelimit_rule ex = {S("sasl:bob"), UM_RATELIMIT_RULE_EXEMPT, 0};
    struct um_ratelimit_policy *p;
    struct um_ratelimit_decision d;

    (void)state;
    for (int t = 0; t < 8; t++)
        assert_true(take(rl, "sasl:alice", 1, t).allowed);
    assert_true(take(rl, "sasl:bob", 10, 0).allowed);

    /* Lower the default to 5: alice keeps her newest 5 (t=3..7) and is refused. */
    p = mk_policy(5, 3600, NULL, 0);
    um_ratelimit_set_policy(rl, p);
    um_ratelimit_policy_free(p);
    d = take(rl, "sasl:alice", 1, 100);
    assert_false(d.allowed);
    assert_int_equal(d.count, 5);
    assert_int_equal(d.limit, 5);
    assert_int_equal(d.retry_after, 3603 - 100);
    assert_false(take(rl, "sasl:alice", 1, 3602).allowed);
    assert_true(take(rl, "sasl:alice", 1, 3603).allowed);

    /* Raise bob to 20 by a rule: his 10 still count, 10 more fit, not 11. */
    p = mk_policy(5, 3600, &up, 1);
    um_ratelimit_set_policy(rl, p);
    um_ratelimit_policy_free(p);
    assert_int_equal(count_of(rl, "sasl:bob", 200), 10);
    assert_false(take(rl, "sasl:bob", 11, 200).allowed);
    d = take(rl, "sasl:bob", 10, 200);
    assert_true(d.allowed);
    assert_int_equal(d.count, 20);

    /* A longer window on reload: old entries count for longer. */
    p = mk_policy(5, 7200, &up, 1);
    um_ratelimit_set_policy(rl, p);
    um_ratelimit_policy_free(p);
    assert_int_equal(count_of(rl, "sasl:bob", 7000), 20);
    assert_false(take(rl, "sasl:bob", 1, 7000).allowed);

    /* Exempt bob: allowed; back to limited: his counts were dropped (documented). */
    p = mk_policy(5, 7200, &ex, 1);
    um_ratelimit_set_policy(rl, p);
    um_ratelimit_policy_free(p);
    d = take(rl, "sasl:bob", 1, 7001);
    assert_true(d.allowed && d.exempt);
    um_ratelimit_free(rl);
}

/* --- give-back, reset, peek, bad arguments ------------------------------------------- */

static void
test_release(void **state)
{
    struct um_ratelimit *rl = mk_rl(5, 100, NULL, 0, 100, 1);
    struct um_ratelimit_decision a, b;
    unsigned got = 99;

    (void)state;
    a = take(rl, "k", 3, 10);
    b = take(rl, "k", 2, 20);
    assert_true(a.allowed && b.allowed);
    assert_false(take(rl, "k", 1, 30).allowed);
    /* The first transaction aborts: its 3 come back. */
    assert_int_equal(um_ratelimit_release(rl, S("k"), a.ts, 3, &got, NULL), UM_OK);
    assert_int_equal(got, 3);
    assert_int_equal(count_of(rl, "k", 30), 2);
    assert_true(take(rl, "k", 3, 30).allowed);
    /* Releasing more than there is gives back only what is there. */
    assert_int_equal(um_ratelimit_release(rl, S("K"), b.ts, 5, &got, NULL), UM_OK);
    assert_int_equal(got, 2);
    assert_int_equal(count_of(rl, "k", 30), 3);
    /* A timestamp with nothing recorded, an unknown key, n = 0: nothing. */
    assert_int_equal(um_ratelimit_release(rl, S("k"), 11, 1, &got, NULL), UM_OK);
    assert_int_equal(got, 0);
    assert_int_equal(um_ratelimit_release(rl, S("nobody"), 30, 1, &got, NULL), UM_OK);
    assert_int_equal(got, 0);
    assert_int_equal(um_ratelimit_release(rl, S("k"), 30, 0, &got, NULL), UM_OK);
    assert_int_equal(got, 0);
    /* Aged out before the give-back: nothing to give. */
    assert_int_equal(count_of(rl, "k", 200), 0);
    um_ratelimit_free(rl);
}

static void
test_reset_and_peek(void **state)
{
    struct um_ratelimit *rl = mk_rl(3, 100, NULL, 0, 100, 2);
    struct um_ratelimit_decision d;
    struct um_error err = {0};

    (void)state;
    assert_int_equal(um_ratelimit_peek(rl, S("sasl:x"), 0, &d, NULL), UM_OK);
    assert_true(d.allowed);
    assert_int_equal(d.count, 0);
    assert_int_equal(d.limit, 3);
    assert_true(take(rl, "sasl:x", 3, 0).allowed);
    assert_false(take(rl, "sasl:x", 1, 1).allowed);
    assert_int_equal(um_ratelimit_peek(rl, S("SASL:X"), 1, &d, NULL), UM_OK);
    assert_false(d.allowed);
    assert_int_equal(d.count, 3);
    assert_int_equal(d.refused, 1);
    assert_int_equal(um_ratelimit_reset(rl, S("Sasl:X"), &err), UM_OK);
    d = take(rl, "sasl:x", 3, 2);
    assert_true(d.allowed);
    assert_int_equal(d.refused, 0);
    /* After a reset the episode starts over too. */
    assert_true(take(rl, "sasl:x", 1, 3).notify);
    assert_int_equal(um_ratelimit_reset(rl, S("sasl:nobody\n"), &err), UM_ENOENT);
    assert_string_equal(err.msg, "ratelimit: \"sasl:nobody\\x0a\" is not tracked");
    um_ratelimit_free(rl);
}

static void
test_bad_arguments(void **state)
{
    static char longkey[UM_RATELIMIT_KEY_MAX + 1];
    struct um_ratelimit *rl = mk_rl(3, 100, NULL, 0, 100, 2);
    struct um_ratelimit_decision d;
    struct {
        const char *name;
        struct um_str key;
        unsigned n;
        int64_t now;
        const char *want;
    } cases[] = {
        {"empty key", S(""), 1, 0, "ratelimit: empty key"},
        {"NULL key", {NULL, 0}, 1, 0, "ratelimit: empty key"},
        {"long key", {longkey, sizeof(longkey)}, 1, 0, "ratelimit: key of 1024 bytes (max 1023)"},
        {"n = 0", S("k"), 0, 0, "ratelimit: 0 recipients not in 1..100000"},
        {"n huge", S("k"), 100001, 0, "ratelimit: 100001 recipients not in 1..100000"},
        {"negative time", S("k"), 1, -1, "ratelimit: time -1 out of range"},
        {"time after 2106", S("k"), 1, 4294967296LL, "ratelimit: time 4294967296 out of range"},
    };

    (void)state;
    memset(longkey, 'a', sizeof(longkey));
    for (size_t i = 0; i < NELEM(cases); i++) {
        struct um_error err = {0};
        enum um_status st =
            um_ratelimit_reserve(rl, cases[i].key, cases[i].n, cases[i].now, &d, &err);
        if (st != UM_EINVAL || strcmp(err.msg, cases[i].want) != 0)
            fail_msg("%s: got %s \"%s\", want EINVAL \"%s\"", cases[i].name, um_status_name(st),
                     err.msg, cases[i].want);
    }
    /* The longest legal key works. */
    assert_true(take(rl, "k", 1, 0).allowed);
    assert_int_equal(
        um_ratelimit_reserve(rl, (struct um_str){longkey, UM_RATELIMIT_KEY_MAX}, 1, 0, &d, NULL),
        UM_OK);
    um_ratelimit_free(rl);
}

/* --- eviction ------------------------------------------------------------------------- */

static void
test_eviction_idle_first(void **state)
{
    struct um_ratelimit *rl = mk_rl(5, 100, NULL, 0, 2, 1);
    struct um_ratelimit_decision d;
    struct um_ratelimit_totals tot;

    (void)state;
    d = take(rl, "a", 1, 50); /* LRU end, active until 150 */
    assert_false(d.evicted_active);
    d = take(rl, "b", 1, 60); /* more recent, but ... */
    assert_int_equal(um_ratelimit_release(rl, S("b"), d.ts, 1, NULL, NULL), UM_OK); /* idle */
    d = take(rl, "c", 1, 70); /* full: the idle b goes, not the older a */
    assert_false(d.evicted_active);
    assert_int_equal(um_ratelimit_reset(rl, S("b"), NULL), UM_ENOENT);
    assert_int_equal(count_of(rl, "a", 70), 1);
    um_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.tracked, 2);
    assert_int_equal(tot.evicted_idle, 1);
    assert_int_equal(tot.evicted_active, 0);
    /* Nobody idle: the least recently used (a) goes anyway, and the caller is told. */
    d = take(rl, "d", 1, 80);
    assert_true(d.allowed);
    assert_true(d.evicted_active);
    assert_int_equal(count_of(rl, "a", 80), 0);
    assert_int_equal(count_of(rl, "c", 80), 1);
    um_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.tracked, 2);
    assert_int_equal(tot.evicted_active, 1);
    /* A key inside a live episode is not idle either. */
    um_ratelimit_free(rl);

    rl = mk_rl(1, 100, NULL, 0, 2, 1);
    assert_true(take(rl, "x", 1, 0).allowed);
    assert_false(take(rl, "x", 1, 99).allowed); /* episode live until 199 */
    assert_true(take(rl, "y", 1, 150).allowed); /* x has no entry left but an episode */
    d = take(rl, "z", 1, 160);                  /* x is LRU and not idle; y neither */
    assert_true(d.evicted_active);
    um_ratelimit_free(rl);
}

static void
test_eviction_bound(void **state)
{
    struct um_ratelimit *rl = mk_rl(5, 3600, NULL, 0, 100, 8);
    struct um_ratelimit_totals tot;
    char key[32];

    (void)state;
    for (int i = 0; i < 5000; i++) {
        (void)snprintf(key, sizeof(key), "sender:u%d@example.org", i);
        assert_true(take(rl, key, 1, i / 10).allowed);
        um_ratelimit_totals(rl, &tot);
        if (tot.tracked > 100)
            fail_msg("after %d keys: got %zu tracked, want <= 100", i + 1, tot.tracked);
    }
    um_ratelimit_totals(rl, &tot);
    assert_int_equal(tot.max_senders, 100);
    assert_true(tot.tracked >= 90);
    assert_int_equal(tot.evicted_idle + tot.evicted_active + tot.tracked, 5000);
    um_ratelimit_free(rl);
}

/* --- stats ---------------------------------------------------------------------------- */

static void
test_stats_top_n(void **state)
{
    static const struct um_ratelimit_rule r[] = {
        {S("sasl:big"), UM_RATELIMIT_RULE_LIMIT, 100},
        {S("sasl:list"), UM_RATELIMIT_RULE_EXEMPT, 0},
    };
    struct um_ratelimit *rl = mk_rl(10, 100, r, NELEM(r), 1000, 4);
    struct um_ratelimit_stat out[4];
    size_t got = 99;
    static const struct {
        const char *key;
        unsigned count, limit;
    } want[] = {{"sasl:big", 40, 100}, {"sasl:a", 7, 10}, {"sasl:b", 7, 10}, {"sasl:c", 3, 10}};

    (void)state;
    assert_true(take(rl, "sasl:old", 9, 0).allowed); /* aged out by t=150 */
    assert_true(take(rl, "sasl:c", 3, 100).allowed);
    assert_true(take(rl, "sasl:b", 7, 110).allowed);
    assert_true(take(rl, "sasl:big", 40, 120).allowed);
    assert_true(take(rl, "sasl:a", 7, 130).allowed);
    assert_true(take(rl, "sasl:d", 1, 140).allowed);
    assert_true(take(rl, "sasl:list", 90, 140).allowed);
    um_ratelimit_stats(rl, 150, out, NELEM(out), &got);
    assert_int_equal(got, 4);
    for (size_t i = 0; i < got; i++) {
        if (strcmp(out[i].key, want[i].key) != 0 || out[i].count != want[i].count
            || out[i].limit != want[i].limit || out[i].key_len != strlen(want[i].key))
            fail_msg("rank %zu: got %s %u/%u, want %s %u/%u", i, out[i].key, out[i].count,
                     out[i].limit, want[i].key, want[i].count, want[i].limit);
    }
    assert_int_equal(out[3].oldest, 100);
    /* Everything. */
    struct um_ratelimit_stat all[16];
    um_ratelimit_stats(rl, 150, all, NELEM(all), &got);
    assert_int_equal(got, 5);
    assert_string_equal(all[4].key, "sasl:d");
    um_ratelimit_stats(rl, 150, all, 0, &got);
    assert_int_equal(got, 0);
    um_ratelimit_free(rl);
}

static int
cmp_desc(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void
test_stats_random(void **state)
{
    enum { KEYS = 300, TOP = 25 };
    struct um_ratelimit *rl = mk_rl(50, 1000, NULL, 0, 1000, 8);
    static struct um_ratelimit_stat out[TOP];
    unsigned counts[KEYS];
    uint64_t seed = 7;
    char key[32];
    size_t got;

    (void)state;
    for (int i = 0; i < KEYS; i++) {
        counts[i] = 1 + (unsigned)(rnd(&seed) % 50);
        (void)snprintf(key, sizeof(key), "k%03d", i);
        assert_true(take(rl, key, counts[i], 0).allowed);
    }
    um_ratelimit_stats(rl, 0, out, TOP, &got);
    qsort(counts, KEYS, sizeof(counts[0]), cmp_desc);
    assert_int_equal(got, TOP);
    for (size_t i = 0; i < TOP; i++) {
        if (out[i].count != counts[i])
            fail_msg("rank %zu: got count %u, want %u", i, out[i].count, counts[i]);
        if (i > 0 && out[i].count == out[i - 1].count && strcmp(out[i - 1].key, out[i].key) >= 0)
            fail_msg("rank %zu: tie not in key order (%s, %s)", i, out[i - 1].key, out[i].key);
    }
    um_ratelimit_free(rl);
}

/* --- snapshot ------------------------------------------------------------------------- */

static char tmpdir[64];

static int
setup_tmpdir(void **state)
{
    (void)state;
    (void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_ratelimit.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown_tmpdir(void **state)
{
    char cmd[128];

    (void)state;
    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *
read_file(const char *path, size_t *len)
{
    static char buf[65536];
    FILE *f = fopen(path, "rb");

    assert_non_null(f);
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[*len] = '\0';
    (void)fclose(f);
    return buf;
}

static void
test_snapshot_golden(void **state)
{
    struct um_ratelimit *rl = mk_rl(3, 100, NULL, 0, 100, 1);
    char path[128];
    size_t len;
    struct um_error err = {0};

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/golden.snap", tmpdir);
    assert_true(take(rl, "sasl:Old", 1, 0).allowed); /* aged out at 150: not written */
    assert_true(take(rl, "sender:a b%c@x", 2, 60).allowed);
    assert_true(take(rl, "sender:a b%c@x", 1, 70).allowed);
    assert_false(take(rl, "sender:a b%c@x", 1, 80).allowed);
    assert_int_equal(um_ratelimit_save(rl, path, 150, &err), UM_OK);
    const char *got = read_file(path, &len);
    assert_string_equal(got, "unimilter-ratelimit 1\n"
                             "sender:a%20b%25c@x 80 3 60 60 70\n"
                             "end 1\n");
    um_ratelimit_free(rl);
}

static void
test_snapshot_round_trip(void **state)
{
    static const char *const keys[] = {
        "sasl:alice",         "sender:with space@example.org", "sasl:new\nline\r\ttab",
        "sasl:%41percent%",   "sasl:\x01\x7f\xff\xc3\xa9",     "uid:33",
        "sasl:\"quoted\" =x",
    };
    struct um_ratelimit *a = mk_rl(5, 3600, NULL, 0, 100, 4);
    struct um_ratelimit *b = mk_rl(5, 3600, NULL, 0, 100, 4);
    char path[128];
    size_t loaded = 0;
    struct um_error err = {0};

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/rt.snap", tmpdir);
    for (size_t i = 0; i < NELEM(keys); i++) {
        for (size_t j = 0; j <= i && j < 5; j++)
            assert_true(take(a, keys[i], 1, 1000 + (int64_t)(10 * i + j)).allowed);
    }
    assert_false(take(a, "uid:33", 1, 1100).allowed); /* episode */
    assert_int_equal(um_ratelimit_save(a, path, 1100, &err), UM_OK);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(um_ratelimit_load(b, path, 1200, &loaded, &err), UM_OK);
    assert_int_equal(loaded, NELEM(keys));
    for (size_t i = 0; i < NELEM(keys); i++) {
        unsigned ga = count_of(a, keys[i], 1200), gb = count_of(b, keys[i], 1200);
        if (ga != gb || gb != (i < 5 ? i + 1 : 5))
            fail_msg("key %zu: got %u after load, %u before, want %zu", i, gb, ga,
                     i < 5 ? i + 1 : 5);
    }
    /* Same timestamps: the 6th recipient of uid:33 fits at the same second in both. */
    for (int64_t t = 1200; t < 5000; t += 7) {
        struct um_ratelimit_decision da = take(a, "uid:33", 1, t), db = take(b, "uid:33", 1, t);
        if (da.allowed != db.allowed || da.count != db.count || da.notify != db.notify)
            fail_msg("t=%lld: got allowed=%d count=%u notify=%d after load, %d %u %d before",
                     (long long)t, db.allowed, db.count, db.notify, da.allowed, da.count,
                     da.notify);
    }
    /* Loading at a time when everything has aged out restores nothing. */
    struct um_ratelimit *c = mk_rl(5, 3600, NULL, 0, 100, 4);
    assert_int_equal(um_ratelimit_load(c, path, 1100 + 3600 + 100, &loaded, &err), UM_OK);
    assert_int_equal(loaded, 0);
    /* A missing file is a first start, not an error. */
    (void)snprintf(path, sizeof(path), "%s/missing.snap", tmpdir);
    assert_int_equal(um_ratelimit_load(c, path, 0, &loaded, &err), UM_OK);
    assert_int_equal(loaded, 0);
    um_ratelimit_free(a);
    um_ratelimit_free(b);
    um_ratelimit_free(c);
}

static void
test_snapshot_merge_and_small_limit(void **state)
{
    struct um_ratelimit *a = mk_rl(10, 100, NULL, 0, 100, 1);
    struct um_ratelimit *b = mk_rl(4, 100, NULL, 0, 100, 1);
    char path[128];
    size_t loaded;

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/merge.snap", tmpdir);
    assert_true(take(a, "k", 3, 10).allowed);
    assert_int_equal(um_ratelimit_save(a, path, 20, NULL), UM_OK);
    /* b already counts 2 at t=15 and has limit 4: the union (10,10,10,15,15) keeps the
     * newest 4, so the 5th fits when the 10s age out at 110. */
    assert_true(take(b, "k", 2, 15).allowed);
    assert_int_equal(um_ratelimit_load(b, path, 20, &loaded, NULL), UM_OK);
    assert_int_equal(loaded, 1);
    assert_int_equal(count_of(b, "k", 20), 4);
    assert_false(take(b, "k", 1, 109).allowed);
    assert_true(take(b, "k", 1, 110).allowed);
    um_ratelimit_free(a);
    um_ratelimit_free(b);
}

static const struct {
    const char *name;
    const char *text;
    size_t len;       /* 0: strlen */
    const char *want; /* after "ratelimit: PATH: " */
    int kept;         /* records before the damage, kept (-1: not a snapshot, none) */
} corrupt_cases[] = {
    {"empty", "", 0, "empty file", -1},
    {"wrong magic", "hello\n", 0, "line 1: not a unimilter rate-limit snapshot", -1},
    {"version 2", "unimilter-ratelimit 2\nend 0\n", 0, "line 1: unsupported version 2 (want 1)",
     -1},
    {"no end", "unimilter-ratelimit 1\nk - 1 100\n", 0, "line 3: truncated (no end line)", 1},
    {"truncated line", "unimilter-ratelimit 1\nk - 1 10", 0, "line 2: truncated line (no newline)",
     0},
    {"end count wrong", "unimilter-ratelimit 1\nk - 1 100\nend 2\n", 0,
     "line 3: end says 2 keys, found 1", 1},
    {"data after end", "unimilter-ratelimit 1\nend 0\nk - 1 100\n", 0,
     "line 3: data after the end line", 0},
    {"bad timestamp", "unimilter-ratelimit 1\nk - 2 100 1x0\nend 1\n", 0, "line 2: bad timestamp",
     0},
    {"timestamp overflow", "unimilter-ratelimit 1\nk - 1 4294967296\nend 1\n", 0,
     "line 2: bad timestamp", 0},
    {"too few", "unimilter-ratelimit 1\nk - 3 100 101\nend 1\n", 0,
     "line 2: fewer timestamps than the count", 0},
    {"too many", "unimilter-ratelimit 1\nk - 1 100 101\nend 1\n", 0,
     "line 2: more timestamps than the count", 0},
    {"out of order", "unimilter-ratelimit 1\nk - 2 101 100\nend 1\n", 0,
     "line 2: timestamps not in order", 0},
    {"count too big", "unimilter-ratelimit 1\nk - 100001 1\nend 1\n", 0, "line 2: bad count", 0},
    {"bad episode", "unimilter-ratelimit 1\nk x 1 100\nend 1\n", 0, "line 2: bad episode field", 0},
    {"bad escape", "unimilter-ratelimit 1\nk%4 - 1 100\nend 1\n", 0, "line 2: bad %-escape in key",
     0},
    {"control byte in key", "unimilter-ratelimit 1\nk\x01 - 1 100\nend 1\n", 0,
     "line 2: bad byte in key", 0},
    {"empty key", "unimilter-ratelimit 1\n - 1 100\nend 1\n", 0, "line 2: empty key", 0},
    {"double space", "unimilter-ratelimit 1\nk  - 1 100\nend 1\n", 0, "line 2: bad episode field",
     0},
    {"duplicate key, case", "unimilter-ratelimit 1\nk - 1 100\nj - 1 100\nK - 1 100\nend 3\n", 0,
     "line 4: duplicate key \"k\"", 2},
    {"NUL byte", "unimilter-ratelimit 1\nk\0 - 1 100\nend 1\n", 39, "line 2: NUL byte", 0},
    {"bad end", "unimilter-ratelimit 1\nend x\n", 0, "line 2: bad end line", 0},
    {"CRLF", "unimilter-ratelimit 1\r\nend 0\r\n", 0, "line 1: not a unimilter rate-limit snapshot",
     -1},
};

/* Issue 12: a real snapshot of six senders, damaged in two ways at its 3rd record (line 4):
 * cut off in the middle of the line, and that line overwritten with garbage. The two records
 * before the damage come back with their exact counts; nothing from the damage on does. */
static void
test_snapshot_damaged_keeps_prefix(void **state)
{
    struct um_ratelimit *a = mk_rl(10, 3600, NULL, 0, 100, 1);
    char path[128], want[512], text[4096], keys[6][32], cut[4096];
    const char *got;
    size_t len, line_start[16] = {0}, nlines = 0;
    struct um_error err = {0};

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/damaged.snap", tmpdir);
    for (unsigned i = 0; i < 6; i++) {
        char k[32];
        (void)snprintf(k, sizeof(k), "sasl:user%u", i);
        assert_true(take(a, k, i + 1, 1000 + i).allowed); /* user i: i + 1 recipients */
    }
    assert_int_equal(um_ratelimit_save(a, path, 1010, &err), UM_OK);
    got = read_file(path, &len);
    assert_true(len < sizeof(text));
    memcpy(text, got, len);
    for (size_t i = 0; i < len && nlines < 16; i++)
        if (i == 0 || text[i - 1] == '\n')
            line_start[nlines++] = i;
    assert_int_equal(nlines, 8);    /* header, 6 records, end */
    for (size_t l = 1; l <= 6; l++) /* the key of each record line, in file order */
        assert_int_equal(sscanf(text + line_start[l], "%31s", keys[l - 1]), 1);

    for (int damage = 0; damage < 2; damage++) {
        struct um_ratelimit *b = mk_rl(10, 3600, NULL, 0, 100, 1);
        size_t loaded = 99, n;
        if (damage == 0) { /* cut in the middle of line 4 (the 3rd record) */
            n = line_start[3] + (line_start[4] - line_start[3]) / 2;
            memcpy(cut, text, n);
            (void)snprintf(want, sizeof(want),
                           "ratelimit: %s: line 4: truncated line (no newline); the 2 record(s) "
                           "before it kept",
                           path);
        } else { /* line 4 replaced by garbage, the rest of the file intact */
            n = line_start[3];
            memcpy(cut, text, n);
            n += (size_t)snprintf(cut + n, sizeof(cut) - n, "this is garbage\n");
            memcpy(cut + n, text + line_start[4], len - line_start[4]);
            n += len - line_start[4];
            (void)snprintf(want, sizeof(want),
                           "ratelimit: %s: line 4: bad episode field; the 2 record(s) before it "
                           "kept",
                           path);
        }
        write_file(path, cut, n);
        memset(&err, 0, sizeof(err));
        assert_int_equal(um_ratelimit_load(b, path, 1020, &loaded, &err), UM_EINVAL);
        if (strcmp(err.msg, want) != 0)
            fail_msg("damage %d: got \"%s\", want \"%s\"", damage, err.msg, want);
        assert_int_equal(loaded, 2);
        for (size_t k = 0; k < 6; k++) {
            unsigned want_n = k < 2 ? count_of(a, keys[k], 1020) : 0;
            unsigned got_n = count_of(b, keys[k], 1020);
            if (got_n != want_n || (k < 2 && want_n == 0))
                fail_msg("damage %d: %s: got count %u, want %u", damage, keys[k], got_n, want_n);
        }
        um_ratelimit_free(b);
    }
    um_ratelimit_free(a);
}

static void
test_snapshot_corrupt(void **state)
{
    struct um_ratelimit_totals tot;
    char path[128], want[512];

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/corrupt.snap", tmpdir);
    for (size_t i = 0; i < NELEM(corrupt_cases); i++) {
        struct um_ratelimit *rl = mk_rl(5, 3600, NULL, 0, 100, 4);
        struct um_error err = {0};
        size_t len = corrupt_cases[i].len ? corrupt_cases[i].len : strlen(corrupt_cases[i].text);
        size_t loaded = 99, kept = corrupt_cases[i].kept < 0 ? 0 : (size_t)corrupt_cases[i].kept;
        write_file(path, corrupt_cases[i].text, len);
        if (corrupt_cases[i].kept < 0)
            (void)snprintf(want, sizeof(want), "ratelimit: %s: %s", path, corrupt_cases[i].want);
        else
            (void)snprintf(want, sizeof(want), "ratelimit: %s: %s; the %d record(s) before it kept",
                           path, corrupt_cases[i].want, corrupt_cases[i].kept);
        enum um_status st = um_ratelimit_load(rl, path, 200, &loaded, &err);
        if (st != UM_EINVAL || strcmp(err.msg, want) != 0)
            fail_msg("%s: got %s \"%s\", want EINVAL \"%s\"", corrupt_cases[i].name,
                     um_status_name(st), err.msg, want);
        um_ratelimit_totals(rl, &tot);
        if (loaded != kept || tot.tracked != kept)
            fail_msg("%s: got %zu keys loaded (%zu tracked), want %zu", corrupt_cases[i].name,
                     loaded, tot.tracked, kept);
        um_ratelimit_free(rl);
    }
    struct um_ratelimit *rl = mk_rl(5, 3600, NULL, 0, 100, 4);
    /* A valid file loads after all that. */
    static const char good[] = "unimilter-ratelimit 1\nsasl:%41 - 2 100 150\nend 1\n";
    write_file(path, good, sizeof(good) - 1);
    size_t loaded;
    assert_int_equal(um_ratelimit_load(rl, path, 200, &loaded, NULL), UM_OK);
    assert_int_equal(loaded, 1);
    assert_int_equal(count_of(rl, "sasl:a", 200), 2);
    um_ratelimit_free(rl);
}

static void
test_snapshot_io_error(void **state)
{
    struct um_ratelimit *rl = mk_rl(5, 3600, NULL, 0, 100, 4);
    struct um_error err = {0};
    char path[128];

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/no/such/dir/x.snap", tmpdir);
    assert_int_equal(um_ratelimit_save(rl, path, 0, &err), UM_EIO);
    assert_non_null(strstr(err.msg, "x.snap: create temporary file: No such file or directory"));
    um_ratelimit_free(rl);
}

/* --- threads -------------------------------------------------------------------------- */

struct hammer {
    struct um_ratelimit *rl;
    int id;
    unsigned accepted[8];
};

static void *
hammer_run(void *arg)
{
    struct hammer *h = arg;
    char key[16];

    for (int i = 0; i < 20000; i++) {
        struct um_ratelimit_decision d;
        /* Half the calls on the shared key, the rest spread over eight keys. */
        int k = i % 2 == 0 ? 0 : 1 + (i + h->id) % 7;
        (void)snprintf(key, sizeof(key), "key%d", k);
        if (um_ratelimit_reserve(h->rl, cstr(key), 1 + (unsigned)(i % 3 == 0), 1000 + i / 5000, &d,
                                 NULL)
            != UM_OK)
            return NULL;
        if (d.allowed)
            h->accepted[k] += 1 + (unsigned)(i % 3 == 0);
        if (i % 1000 == 0) {
            struct um_ratelimit_stat st[4];
            size_t got;
            um_ratelimit_stats(h->rl, 1000, st, 4, &got);
        }
    }
    return NULL;
}

static void
test_threads(void **state)
{
    enum { THREADS = 8, LIMIT = 997 };
    struct um_ratelimit *rl = mk_rl(LIMIT, 3600, NULL, 0, 1000, 16);
    pthread_t th[THREADS];
    struct hammer h[THREADS];
    unsigned total[8] = {0};

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        memset(&h[i], 0, sizeof(h[i]));
        h[i].rl = rl;
        h[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    }
    /* A reload in the middle must not lose or add anything. */
    struct um_ratelimit_policy *p = mk_policy(LIMIT, 3600, NULL, 0);
    um_ratelimit_set_policy(rl, p);
    um_ratelimit_policy_free(p);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        for (int k = 0; k < 8; k++)
            total[k] += h[i].accepted[k];
    }
    for (int k = 0; k < 8; k++) {
        char key[16];
        (void)snprintf(key, sizeof(key), "key%d", k);
        /* Every key is hammered far past its limit inside one window: exactly LIMIT, or
         * LIMIT-1 when the last free slot was smaller than a 2-recipient request. */
        if (total[k] > LIMIT || total[k] < LIMIT - 1)
            fail_msg("%s: got %u accepted, want %d (or %d)", key, total[k], LIMIT, LIMIT - 1);
        if (count_of(rl, key, 1003) != total[k])
            fail_msg("%s: got count %u, want %u accepted", key, count_of(rl, key, 1003), total[k]);
    }
    um_ratelimit_free(rl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sliding_10_per_hour),
        cmocka_unit_test(test_sliding_spent_at_1059),
        cmocka_unit_test(test_sliding_limit_one_and_zero),
        cmocka_unit_test(test_episode_notify_once),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_property_random),
        cmocka_unit_test(test_policy_match),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_overrides_and_exempt),
        cmocka_unit_test(test_reload_keeps_counts),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_reset_and_peek),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_eviction_idle_first),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_stats_top_n),
        cmocka_unit_test(test_stats_random),
        cmocka_unit_test(test_snapshot_golden),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_merge_and_small_limit),
        cmocka_unit_test(test_snapshot_corrupt),
        cmocka_unit_test(test_snapshot_damaged_keeps_prefix),
        cmocka_unit_test(test_snapshot_io_error),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
