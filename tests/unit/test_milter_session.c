/*
 * test_milter_session.c - the daemon state, the runtime swap and a message's lifecycle,
 * driven as plain C (no MTA, no libmilter session)
 *
 * A real runtime is built from a real (empty) configuration file, the rate-limit store is
 * the in-memory one. The outbound steps run with a NULL SMFICTX: on the paths used here
 * (within the limit, no signing keys) outbound.c makes no libmilter call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon.h"
#include "inbound.h"
#include "outbound.h"
#include "session.h"

static char tmpdir[] = "/tmp/um-milter-session-XXXXXX";
static char conf[300];

static void
sink(void *arg, enum um_log_level level, const char *line, size_t len)
{
    (void)arg;
    (void)level;
    (void)line;
    (void)len;
}

static struct um_runtime *
mk_runtime(void)
{
    struct um_config *cfg = NULL;
    struct um_runtime *rt = NULL;
    struct um_error err = {0};

    if (um_config_load(conf, &cfg, &err) != UM_OK)
        fail_msg("config: %s", err.msg);
    if (um_runtime_build(cfg, geteuid(), NULL, &rt, &err) != UM_OK)
        fail_msg("runtime: %s", err.msg);
    um_config_unref(cfg);
    return rt;
}

struct fixture {
    struct um_daemon d;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct um_error err = {0};

    assert_non_null(f);
    pthread_mutex_init(&f->d.cfg_lock, NULL);
    pthread_mutex_init(&f->d.child_lock, NULL);
    um_logger_init(&f->d.log, sink, NULL, UM_LOG_DEBUG);
    f->d.rt = mk_runtime();
    if (um_rlstore_new_memory(NULL, f->d.rt->rlpol, &f->d.rlstore, &err) != UM_OK)
        fail_msg("store: %s", err.msg);
    um_daemon_set(&f->d);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    um_daemon_publish(&f->d, NULL);
    um_rlstore_free(f->d.rlstore);
    pthread_mutex_destroy(&f->d.cfg_lock);
    pthread_mutex_destroy(&f->d.child_lock);
    um_daemon_set(NULL);
    free(f);
    return 0;
}

/* Recipients the store counts for key now (0 when it tracks none). */
static unsigned
counted(struct um_daemon *d, const char *key)
{
    struct um_ratelimit_stat st[4];
    struct um_ratelimit_totals t;
    struct um_error err = {0};
    size_t got = 0;

    assert_int_equal(um_rlstore_stats(d->rlstore, (int64_t)time(NULL), st, 4, &got, &t, &err),
                     UM_OK);
    for (size_t i = 0; i < got; i++)
        if (strcmp(st[i].key, key) == 0)
            return st[i].count;
    return 0;
}

/* MAIL FROM and two RCPTs of an authenticated sender, as the callbacks do them. */
static void
outbound_two_rcpts(struct conn_ctx *cc)
{
    msg_ctx_begin(cc);
    cc->msg.mode = UM_MODE_OUTBOUND;
    cc->msg.auth_authen = strdup("alice");
    cc->msg.envfrom = strdup("<alice@example.org>");
    assert_int_equal(ob_envfrom(NULL, cc), SMFIS_CONTINUE);
    assert_true(cc->msg.ob.have_key);
    assert_string_equal(cc->msg.ob.key.key, "sasl:alice");
    assert_int_equal(ob_envrcpt(NULL, cc, "<a@x.test>"), SMFIS_CONTINUE);
    cc->msg.nrcpt++;
    assert_int_equal(ob_envrcpt(NULL, cc, "<b@x.test>"), SMFIS_CONTINUE);
    cc->msg.nrcpt++;
}

/* --- daemon.c ------------------------------------------------------------------------ */

static void
test_publish_swaps_and_keeps_pinned(void **state)
{
    struct fixture *f = *state;
    struct um_runtime *first = um_daemon_runtime(&f->d), *next = mk_runtime(), *now;
    struct um_config *cfg;

    assert_ptr_equal(um_daemon_get(), &f->d);
    assert_int_equal(atomic_load(&first->refs), 2); /* the daemon's and ours */
    um_daemon_publish(&f->d, next);
    /* The pinned one lives on with our reference only; new readers see the new one. */
    assert_int_equal(atomic_load(&first->refs), 1);
    now = um_daemon_runtime(&f->d);
    assert_ptr_equal(now, next);
    cfg = um_daemon_config(&f->d);
    assert_ptr_equal(cfg, next->cfg);
    um_config_unref(cfg);
    um_runtime_unref(now);
    um_runtime_unref(first);
}

/* --- session.c: counting ------------------------------------------------------------- */

static void
test_inflight_counted_once(void **state)
{
    struct fixture *f = *state;
    struct conn_ctx *cc = conn_ctx_new(&f->d);

    assert_non_null(cc);
    assert_int_equal(atomic_load(&f->d.connections), 1);
    msg_ctx_begin(cc);
    msg_ctx_begin(cc); /* RSET-less second MAIL FROM: the first message ends */
    assert_int_equal(atomic_load(&f->d.inflight), 1);
    msg_ctx_end(cc);
    msg_ctx_end(cc); /* eom then close: idempotent */
    assert_int_equal(atomic_load(&f->d.inflight), 0);
    assert_int_equal(cc->msg.rule, -1);
    conn_ctx_free(cc);
    assert_int_equal(atomic_load(&f->d.connections), 0);
}

/* --- outbound.c + session.c: reservations -------------------------------------------- */

static void
test_abort_gives_back(void **state)
{
    struct fixture *f = *state;
    struct conn_ctx *cc = conn_ctx_new(&f->d);

    strcpy(cc->client_ip, "192.0.2.7");
    outbound_two_rcpts(cc);
    assert_int_equal(counted(&f->d, "sasl:alice"), 2);
    assert_int_equal(cc->msg.ob.resv.n, 1); /* same second: one entry of 2 */
    msg_ctx_end(cc);                        /* abort: the transaction did not complete */
    assert_int_equal(counted(&f->d, "sasl:alice"), 0);
    assert_int_equal(cc->msg.ob.resv.n, 0);
    conn_ctx_free(cc);
}

static void
test_completed_stays_counted(void **state)
{
    struct fixture *f = *state;
    struct conn_ctx *cc = conn_ctx_new(&f->d);

    strcpy(cc->client_ip, "192.0.2.7");
    outbound_two_rcpts(cc);
    assert_int_equal(ob_eom(NULL, cc), SMFIS_CONTINUE);
    msg_ctx_end(cc);
    assert_int_equal(counted(&f->d, "sasl:alice"), 2);
    /* A second message on the connection, closed before its end: only it is given back. */
    outbound_two_rcpts(cc);
    assert_int_equal(counted(&f->d, "sasl:alice"), 4);
    conn_ctx_free(cc);
    assert_int_equal(counted(&f->d, "sasl:alice"), 2);
}

static void
test_ob_msg_end_frees_and_zeroes(void **state)
{
    struct fixture *f = *state;
    struct conn_ctx *cc = conn_ctx_new(&f->d);

    strcpy(cc->client_ip, "192.0.2.7");
    outbound_two_rcpts(cc);
    ob_header(NULL, cc, "Received", "from x by y");
    assert_non_null(cc->msg.ob.received);
    assert_int_equal(cc->msg.ob.nrcpt_first, 2);
    ob_msg_end(cc);
    assert_null(cc->msg.ob.received);
    assert_int_equal(cc->msg.ob.nrcpt_first, 0);
    assert_false(cc->msg.ob.have_key);
    ob_msg_end(cc); /* idempotent */
    ib_msg_end(cc);
    ib_msg_end(cc);
    assert_int_equal(counted(&f->d, "sasl:alice"), 0);
    conn_ctx_free(cc); /* ASan: nothing leaks, nothing is freed twice */
}

int
main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_swaps_and_keeps_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_counted_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_gives_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completed_stays_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ob_msg_end_frees_and_zeroes, setup, teardown),
    };
    FILE *fp;
    int rc;

    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    (void)snprintf(conf, sizeof(conf), "%s/unimilter.conf", tmpdir);
    fp = fopen(conf, "w");
    if (fp == NULL || fputs("# defaults only\n", fp) < 0 || fclose(fp) != 0) {
        perror(conf);
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)unlink(conf);
    (void)rmdir(tmpdir);
    return rc;
}
