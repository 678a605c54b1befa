/*
 * test_rlstore.c - the rate-limit store through its one interface, both stores
 *
 * The same contract table runs on the memory store and on the Redis store (against a
 * redis-server this test starts: free loopback port, --save '', dir from mkdtemp). The
 * Redis store's on_error fallback runs against a port nothing listens on (connection
 * refused: UM_ETEMP from the client), then against the server started there, to show that
 * a reservation counted locally during an outage is given back locally. No redis-server:
 * the Redis parts are skipped (exit 77 if nothing else ran), a failure under CI=true.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "rlstore.h"
#include "testnet.h"

static char srv_bin[512];
static char srv_dir[256] = "/tmp/um-rlstore-XXXXXX";
static int srv_port;
static pid_t srv_pid = -1;

/* Log lines captured from the store (one test at a time). */
static char logbuf[8192];
static size_t loglen;

static void
sink(void *arg, enum um_log_level level, const char *line, size_t len)
{
    (void)arg;
    (void)level;
    if (loglen + len + 1 < sizeof(logbuf)) {
        memcpy(logbuf + loglen, line, len);
        loglen += len;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = '\0';
    }
}

static unsigned
count_lines(const char *needle)
{
    unsigned n = 0;

    for (const char *p = logbuf; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static struct um_str
cstr(const char *s)
{
    return (struct um_str){s, strlen(s)};
}

static bool
have_redis(void)
{
    return srv_bin[0] != '\0';
}

static void
server_start(void)
{
    char port[16], log[400];

    (void)snprintf(port, sizeof(port), "%d", srv_port);
    (void)snprintf(log, sizeof(log), "%s/redis.log", srv_dir);
    srv_pid = fork();
    if (srv_pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (srv_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            (void)dup2(fd, 1);
            (void)dup2(fd, 2);
        }
        execl(srv_bin, srv_bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
              "no", "--dir", srv_dir, "--daemonize", "no", "--protected-mode", "no", (char *)NULL);
        _exit(127);
    }
    /* Ready when it accepts a connection (the store's first call would otherwise fail). */
    for (int i = 0; i < 500; i++) {
        struct sockaddr_in a = {0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)srv_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            close(fd);
            return;
        }
        close(fd);
        sleep_ms(20);
    }
    fail_msg("redis-server did not start; see %s", log);
}

static void
server_kill(void)
{
    if (srv_pid > 0) {
        (void)kill(srv_pid, SIGKILL);
        (void)waitpid(srv_pid, NULL, 0);
        srv_pid = -1;
    }
}

static struct um_ratelimit_policy *
mk_policy(unsigned limit)
{
    struct um_ratelimit_policy *p = NULL;
    struct um_error err = {0};
    static const struct um_ratelimit_rule rules[] = {
        {{"@exempt.test", 12}, UM_RATELIMIT_RULE_EXEMPT, 0},
    };

    if (um_ratelimit_policy_new(limit, 3600, rules, 1, &p, &err) != UM_OK)
        fail_msg("policy_new: %s", err.msg);
    return p;
}

static struct um_rlstore *
mk_memory(struct um_ratelimit_policy *p)
{
    struct um_rlstore *s = NULL;
    struct um_error err = {0};

    if (um_rlstore_new_memory(NULL, p, &s, &err) != UM_OK)
        fail_msg("new_memory: %s", err.msg);
    return s;
}

static struct um_logger test_log;

static struct um_rlstore *
mk_redis(struct um_ratelimit_policy *p, enum um_rl_on_error on_error)
{
    struct um_rlredis_opts ro = {0};
    struct um_ratelimit_opts o = {0};
    struct um_rlstore *s = NULL;
    struct um_error err = {0};

    ro.port = (unsigned)srv_port;
    ro.timeout_ms = 500;
    ro.backoff_min_ms = 20;
    ro.backoff_max_ms = 50;
    o.max_senders = 1234;
    if (um_rlstore_new_redis(&ro, &o, p, on_error, &test_log, &s, &err) != UM_OK)
        fail_msg("new_redis: %s", err.msg);
    return s;
}

static struct um_ratelimit_decision
take(struct um_rlstore *s, const char *key, unsigned n, int64_t now, struct um_rlstore_resv *r)
{
    struct um_ratelimit_decision d;
    struct um_rlstore_resv tmp;
    struct um_error err = {0};

    if (um_rlstore_reserve(s, cstr(key), n, now, &d, r != NULL ? r : &tmp, &err) != UM_OK)
        fail_msg("reserve %s n=%u: %s", key, n, err.msg);
    return d;
}

/* --- the contract, on any store ------------------------------------------------------- */

static void
contract(struct um_rlstore *s, const char *name)
{
    struct um_rlstore_resv r1, r2;
    struct um_ratelimit_decision d;
    struct um_ratelimit_stat st[4];
    struct um_ratelimit_totals t;
    struct um_error err = {0};
    unsigned released = 0;
    size_t got = 0;

    /* limit 3: two and one fit, the fourth does not; the first refusal notifies. */
    d = take(s, "sasl:alice", 2, 100, &r1);
    assert_true(d.allowed);
    assert_int_equal(d.count, 2);
    assert_int_equal(r1.ts, 100);
    assert_int_equal(r1.n, 2);
    d = take(s, "sasl:alice", 1, 101, &r2);
    assert_true(d.allowed);
    assert_int_equal(d.count, 3);
    d = take(s, "sasl:alice", 1, 102, NULL);
    if (d.allowed)
        fail_msg("%s: 4th recipient allowed at limit 3", name);
    assert_true(d.notify);
    assert_int_equal(d.limit, 3);
    /* Exempt keys are not counted. */
    d = take(s, "sender:bob@exempt.test", 1, 102, NULL);
    assert_true(d.allowed && d.exempt);
    /* Give back the first two: two fit again. */
    assert_int_equal(um_rlstore_release(s, cstr("sasl:alice"), &r1, &released, &err), UM_OK);
    assert_int_equal(released, 2);
    /* Stats list alice with count 1 (the one at 101). */
    assert_int_equal(um_rlstore_stats(s, 103, st, 4, &got, &t, &err), UM_OK);
    if (got != 1 || st[0].count != 1 || strcmp(st[0].key, "sasl:alice") != 0)
        fail_msg("%s: stats got %zu, first %s count %u", name, got, got ? st[0].key : "-",
                 got ? st[0].count : 0);
    assert_int_equal(t.tracked, 1);
    d = take(s, "sasl:alice", 2, 104, NULL);
    assert_true(d.allowed);
    /* Reset forgets the key; a second reset finds nothing. */
    assert_int_equal(um_rlstore_reset(s, cstr("sasl:alice"), &err), UM_OK);
    assert_int_equal(um_rlstore_reset(s, cstr("sasl:alice"), &err), UM_ENOENT);
    d = take(s, "sasl:alice", 3, 105, NULL);
    assert_true(d.allowed);
    assert_int_equal(d.count, 3);
    /* A new policy (reload) keeps the counts: limit 4 lets one more in. */
    {
        struct um_ratelimit_policy *p4 = mk_policy(4);
        um_rlstore_set_policy(s, p4, UM_RL_ON_ERROR_LOCAL);
        um_ratelimit_policy_free(p4);
    }
    d = take(s, "sasl:alice", 1, 106, NULL);
    assert_true(d.allowed);
    assert_int_equal(d.count, 4);
    assert_int_equal(d.limit, 4);
    assert_false(take(s, "sasl:alice", 1, 107, NULL).allowed);
}

static void
test_memory_contract(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(3);
    struct um_rlstore *s = mk_memory(p);

    (void)state;
    assert_string_equal(um_rlstore_name(s), "memory");
    assert_true(um_rlstore_has_snapshot(s));
    contract(s, "memory");
    um_rlstore_free(s);
    um_ratelimit_policy_free(p);
}

static void
test_memory_snapshot(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(3);
    struct um_rlstore *a = mk_memory(p), *b = mk_memory(p);
    struct um_error err = {0};
    char path[300];
    size_t loaded = 0;

    (void)state;
    (void)snprintf(path, sizeof(path), "%s/state", srv_dir);
    (void)take(a, "sasl:carol", 3, 200, NULL);
    assert_int_equal(um_rlstore_save(a, path, 201, &err), UM_OK);
    assert_int_equal(um_rlstore_load(b, path, 202, &loaded, &err), UM_OK);
    assert_int_equal(loaded, 1);
    assert_false(take(b, "sasl:carol", 1, 203, NULL).allowed);
    (void)unlink(path);
    um_rlstore_free(a);
    um_rlstore_free(b);
    um_ratelimit_policy_free(p);
}

static void
test_redis_contract(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(3);
    struct um_rlstore *s;
    struct um_error err = {0};
    size_t loaded = 7;

    (void)state;
    if (!have_redis())
        skip();
    server_start();
    s = mk_redis(p, UM_RL_ON_ERROR_TEMPFAIL);
    assert_string_equal(um_rlstore_name(s), "redis");
    /* Redis keeps its counts itself: no snapshot, and asking for one does nothing. */
    assert_false(um_rlstore_has_snapshot(s));
    assert_int_equal(um_rlstore_save(s, "/nonexistent/dir/state", 1, &err), UM_OK);
    assert_int_equal(um_rlstore_load(s, "/nonexistent/dir/state", 1, &loaded, &err), UM_OK);
    assert_int_equal(loaded, 0);
    contract(s, "redis");
    {
        struct um_ratelimit_stat st[1];
        struct um_ratelimit_totals t;
        size_t got;
        assert_int_equal(um_rlstore_stats(s, 108, st, 1, &got, &t, &err), UM_OK);
        assert_int_equal(t.max_senders, 1234); /* the local table's size, as before */
    }
    um_rlstore_free(s);
    server_kill();
    um_ratelimit_policy_free(p);
}

/* --- on_error, inside the Redis store ----------------------------------------------- */

static void
test_redis_down_tempfail(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(3);
    struct um_rlstore *s = mk_redis(p, UM_RL_ON_ERROR_TEMPFAIL); /* nothing listens */
    struct um_ratelimit_decision d;
    struct um_rlstore_resv r;
    struct um_error err = {0};

    (void)state;
    loglen = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(um_rlstore_reserve(s, cstr("sasl:t"), 1, 10, &d, &r, &err), UM_ETEMP);
        assert_non_null(strstr(err.msg, "ratelimit: redis 127.0.0.1:"));
    }
    /* One outage, one line. */
    assert_int_equal(count_lines("redis unavailable ("), 1);
    assert_int_equal(count_lines("): tempfailing recipients"), 1);
    /* Exempt keys never reach Redis. */
    d = take(s, "sasl:x@exempt.test", 1, 10, NULL);
    assert_true(d.allowed && d.exempt);
    um_rlstore_free(s);
    um_ratelimit_policy_free(p);
}

static void
test_redis_down_accept(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(1);
    struct um_rlstore *s = mk_redis(p, UM_RL_ON_ERROR_ACCEPT);
    struct um_ratelimit_decision d;

    (void)state;
    loglen = 0;
    /* Uncounted passes, however many: allowed, exempt (nothing to give back). */
    for (int i = 0; i < 5; i++) {
        d = take(s, "sasl:a", 1, 10, NULL);
        assert_true(d.allowed);
        assert_true(d.exempt);
        assert_int_equal(d.count, 0);
    }
    assert_int_equal(count_lines("): accepting uncounted"), 1);
    um_rlstore_free(s);
    um_ratelimit_policy_free(p);
}

static void
test_redis_down_local_then_back(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(3);
    struct um_rlstore *s = mk_redis(p, UM_RL_ON_ERROR_LOCAL);
    struct um_ratelimit_decision d;
    struct um_rlstore_resv local;
    struct um_ratelimit_stat st[2];
    struct um_ratelimit_totals t;
    struct um_error err = {0};
    unsigned released = 0;
    size_t got = 0;

    (void)state;
    loglen = 0;
    /* Down: counted in the store's own memory, to the same limit. */
    d = take(s, "sasl:l", 2, 10, &local);
    assert_true(d.allowed);
    assert_int_equal(d.count, 2);
    assert_true(take(s, "sasl:l", 1, 11, NULL).allowed);
    assert_false(take(s, "sasl:l", 1, 12, NULL).allowed);
    assert_int_equal(count_lines("): counting locally"), 1);
    /* Stats and reset go to Redis: they fail while it is down. */
    assert_int_equal(um_rlstore_stats(s, 12, st, 2, &got, &t, &err), UM_ETEMP);
    assert_int_equal(um_rlstore_reset(s, cstr("sasl:l"), &err), UM_ETEMP);
    /* Reload to tempfail: the store follows at once. */
    um_rlstore_set_policy(s, p, UM_RL_ON_ERROR_TEMPFAIL);
    {
        struct um_rlstore_resv scratch;
        assert_int_equal(um_rlstore_reserve(s, cstr("sasl:l"), 1, 12, &d, &scratch, &err),
                         UM_ETEMP);
    }
    um_rlstore_set_policy(s, p, UM_RL_ON_ERROR_LOCAL);
    d = take(s, "sasl:m", 2, 10, &local); /* another key, counted locally */
    assert_true(d.allowed);

    if (!have_redis()) {
        um_rlstore_free(s);
        um_ratelimit_policy_free(p);
        skip();
    }
    /* Redis comes back: new reservations count there; the local one is given back locally. */
    server_start();
    for (int i = 0; i < 250; i++) {
        struct um_rlstore_resv r;
        if (um_rlstore_reserve(s, cstr("sasl:n"), 1, 20, &d, &r, &err) == UM_OK && d.count == 1
            && r.origin != local.origin)
            break;
        sleep_ms(20);
    }
    assert_int_equal(um_rlstore_stats(s, 20, st, 2, &got, &t, &err), UM_OK);
    assert_int_equal(got, 1); /* only sasl:n is in Redis */
    assert_string_equal(st[0].key, "sasl:n");
    assert_int_equal(um_rlstore_release(s, cstr("sasl:m"), &local, &released, &err), UM_OK);
    assert_int_equal(released, 2); /* found where it was counted */
    um_rlstore_free(s);
    server_kill();
    um_ratelimit_policy_free(p);
}

/* --- a reload while other threads count (ThreadSanitizer runs this) ------------------ */

struct worker {
    struct um_rlstore *s;
    char key[32];
    unsigned allowed;
};

static void *
worker_main(void *v)
{
    struct worker *w = v;

    for (int i = 0; i < 300; i++) {
        struct um_ratelimit_decision d;
        struct um_rlstore_resv r;
        struct um_error err = {0};
        if (um_rlstore_reserve(w->s, cstr(w->key), 1, 1000 + i / 50, &d, &r, &err) == UM_OK
            && d.allowed && !d.exempt) {
            w->allowed++;
            if (i % 7 == 0 && um_rlstore_release(w->s, cstr(w->key), &r, NULL, &err) == UM_OK)
                w->allowed--;
        }
    }
    return NULL;
}

/* on_error cycles through the settings given: with Redis, "local" is left out, since a
 * Redis call that times out under load is then counted locally besides what Redis holds,
 * and the bound below is one count's bound (a documented trait of the fallback). */
static void
swap_under_load(struct um_rlstore *s, const char *name, unsigned n_on_error)
{
    struct worker w[4];
    pthread_t t[4];

    for (int i = 0; i < 4; i++) {
        w[i].s = s;
        w[i].allowed = 0;
        (void)snprintf(w[i].key, sizeof(w[i].key), "sasl:w%d-%s", i, name);
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        /* One limit, new policy objects: a lowered limit forgets the counts above it (rl_trim,
         * README), so alternating 50 and 60 would let more than 60 through by design. */
        struct um_ratelimit_policy *p = mk_policy(60);
        um_rlstore_set_policy(s, p, (enum um_rl_on_error)((unsigned)i % n_on_error));
        um_ratelimit_policy_free(p);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        if (w[i].allowed > 60) /* never above the limit, whatever the swaps */
            fail_msg("%s store: worker %d had %u recipients allowed at once, limit 60", name, i,
                     w[i].allowed);
    }
}

static void
test_policy_swap_under_load(void **state)
{
    struct um_ratelimit_policy *p = mk_policy(50);
    struct um_rlstore *m = mk_memory(p), *r;

    (void)state;
    swap_under_load(m, "memory", 3);
    um_rlstore_free(m);
    if (have_redis())
        server_start();
    r = mk_redis(p, UM_RL_ON_ERROR_LOCAL); /* down: the local fallback; up: Redis */
    swap_under_load(r, "redis", 2);        /* tempfail, accept */
    um_rlstore_free(r);
    server_kill();
    um_ratelimit_policy_free(p);
}

/* --- a message's held reservations --------------------------------------------------- */

static void
test_held_merges_same_second_same_origin(void **state)
{
    struct um_rlstore_held h = {0};
    const struct um_rlstore_resv a = {100, 1, 1}, b = {100, 2, 1}, c = {100, 1, 0}, e = {101, 1, 0};

    (void)state;
    assert_true(um_rlstore_hold(&h, &a));
    assert_true(um_rlstore_hold(&h, &b));
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].n, 3);
    assert_true(um_rlstore_hold(&h, &c)); /* same second, other origin: kept apart */
    assert_true(um_rlstore_hold(&h, &e));
    assert_int_equal(h.n, 3);
    assert_int_equal(h.v[1].origin, 0);
    assert_int_equal(h.v[2].ts, 101);
    um_rlstore_held_clear(&h);
    assert_null(h.v);
    assert_int_equal(h.n, 0);
    um_rlstore_held_clear(&h); /* idempotent */
}

/* --- any ops: the interface dispatches, and a store without save keeps no snapshot ---- */

static unsigned fake_calls;

static enum um_status
fake_reserve(void *impl, struct um_str key, unsigned n, int64_t now,
             struct um_ratelimit_decision *d, unsigned char *origin, struct um_error *err)
{
    (void)impl;
    (void)key;
    (void)err;
    fake_calls++;
    memset(d, 0, sizeof(*d));
    d->allowed = true;
    d->count = n;
    d->ts = now;
    *origin = 9;
    return UM_OK;
}

static enum um_status
fake_release(void *impl, unsigned char origin, struct um_str key, int64_t ts, unsigned n,
             unsigned *released, struct um_error *err)
{
    (void)impl;
    (void)key;
    (void)ts;
    (void)err;
    fake_calls++;
    *released = origin == 9 ? n : 0;
    return UM_OK;
}

static void
fake_free(void *impl)
{
    free(impl);
}

static void
test_any_ops(void **state)
{
    static const struct um_rlstore_ops ops = {
        .name = "fake", .reserve = fake_reserve, .release = fake_release, .free = fake_free};
    struct um_rlstore *s = NULL;
    struct um_rlstore_resv r;
    struct um_error err = {0};
    unsigned released = 0;

    (void)state;
    assert_int_equal(um_rlstore_new(&ops, malloc(16), &s, &err), UM_OK);
    (void)take(s, "k", 4, 50, &r);
    assert_int_equal(r.origin, 9);
    assert_int_equal(r.ts, 50);
    assert_int_equal(um_rlstore_release(s, cstr("k"), &r, &released, &err), UM_OK);
    assert_int_equal(released, 4);
    assert_int_equal(fake_calls, 2);
    assert_false(um_rlstore_has_snapshot(s));
    um_rlstore_free(s);
    um_rlstore_free(NULL);
}

int
main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_contract),
        cmocka_unit_test(test_memory_snapshot),
        cmocka_unit_test(test_redis_contract),
        cmocka_unit_test(test_redis_down_tempfail),
        cmocka_unit_test(test_redis_down_accept),
        cmocka_unit_test(test_redis_down_local_then_back),
        cmocka_unit_test(test_policy_swap_under_load),
        cmocka_unit_test(test_held_merges_same_second_same_origin),
        cmocka_unit_test(test_any_ops),
    };
    const char *env = getenv("UM_REDIS_SERVER");
    const char *ci = getenv("CI");
    int rc;

    if (env != NULL ? access(env, X_OK) == 0 : access("/usr/bin/redis-server", X_OK) == 0)
        (void)snprintf(srv_bin, sizeof(srv_bin), "%s", env != NULL ? env : "/usr/bin/redis-server");
    else if (ci != NULL && strcmp(ci, "true") == 0) {
        fprintf(stderr, "redis-server not found and CI=true: failing\n");
        return 1;
    }
    (void)signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2) */
    um_logger_init(&test_log, sink, NULL, UM_LOG_DEBUG);
    if (mkdtemp(srv_dir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    srv_port = free_port(); /* nothing listens there until a test starts the server */
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    server_kill();
    {
        char log[400];
        (void)snprintf(log, sizeof(log), "%s/redis.log", srv_dir);
        (void)unlink(log);
        (void)rmdir(srv_dir);
    }
    return rc;
}
