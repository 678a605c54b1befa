/*
 * test_history - lib/history: round trip through SQLite, queue full drops without blocking,
 * close drains, store failures counted and reported, unusable paths refused clearly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history.h"

struct tmp {
    char dir[64];
    char db[128];
};

static int
setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    strcpy(t->dir, "/tmp/um_history_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->db, sizeof(t->db), "%s/history.db", t->dir);
    *state = t;
    return 0;
}

static int
teardown(void **state)
{
    struct tmp *t = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    if (system(cmd) != 0)
        return -1;
    free(t);
    return 0;
}

static void
fill(struct um_history_rec *r, int i)
{
    memset(r, 0, sizeof(*r));
    r->time = 1700000000 + i;
    snprintf(r->source_ip, sizeof(r->source_ip), "192.0.2.%d", i % 250);
    strcpy(r->header_from, "example.org");
    strcpy(r->envelope_from, "bounce.example.org");
    r->spf_result = UM_AUTH_PASS;
    r->spf_scope = UM_HISTORY_SPF_MFROM;
    strcpy(r->spf_domain, "bounce.example.org");
    r->ndkim = 2;
    strcpy(r->dkim[0].domain, "example.org");
    strcpy(r->dkim[0].selector, "s1");
    r->dkim[0].result = UM_AUTH_PASS;
    strcpy(r->dkim[1].domain, "esp.example");
    strcpy(r->dkim[1].selector, "k2");
    r->dkim[1].result = UM_AUTH_FAIL;
    r->dmarc_result = UM_DMARC_RESULT_PASS;
    r->dkim_aligned = true;
    r->spf_aligned = true;
    strcpy(r->policy_domain, "example.org");
    r->p = 'r';
    r->sp = 'q';
    r->adkim = 'r';
    r->aspf = 's';
    r->pct = 100;
    r->t = 'n';
    r->rua = true;
    r->disposition = UM_DMARC_POLICY_NONE;
    r->override = UM_HISTORY_OVERRIDE_NONE;
}

static sqlite3 *
open_db(const char *path)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static long long
count_rows(const char *path, const char *sql)
{
    sqlite3 *db = open_db(path);
    sqlite3_stmt *st = NULL;
    long long n = -1;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void
test_roundtrip(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};
    sqlite3 *db;
    sqlite3_stmt *q = NULL;

    assert_int_equal(um_history_open(t->db, 16, &h, &err), UM_OK);
    fill(&r, 7);
    r.override = UM_HISTORY_OVERRIDE_LOCAL_POLICY;
    strcpy(r.override_comment, "exempt client");
    r.disposition = UM_DMARC_POLICY_NONE;
    r.dmarc_result = UM_DMARC_RESULT_FAIL;
    assert_true(um_history_record(h, &r));
    fill(&r, 8);
    r.ndkim = 0;
    r.spf_scope = UM_HISTORY_SPF_HELO;
    r.p = 0;
    assert_true(um_history_record(h, &r));
    um_history_close(h, 5000, &st);
    assert_int_equal(st.written, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.errors, 0);

    db = open_db(t->db);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT ts, source_ip, header_from, envelope_from, "
                                        "spf_result, spf_scope, dmarc_result, p, sp, aspf, "
                                        "override, override_comment, disposition, rua "
                                        "FROM evaluations ORDER BY id",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), 1700000007);
    assert_string_equal(sqlite3_column_text(q, 1), "192.0.2.7");
    assert_string_equal(sqlite3_column_text(q, 2), "example.org");
    assert_string_equal(sqlite3_column_text(q, 3), "bounce.example.org");
    assert_string_equal(sqlite3_column_text(q, 4), "pass");
    assert_string_equal(sqlite3_column_text(q, 5), "mfrom");
    assert_string_equal(sqlite3_column_text(q, 6), "fail");
    assert_string_equal(sqlite3_column_text(q, 7), "reject");
    assert_string_equal(sqlite3_column_text(q, 8), "quarantine");
    assert_string_equal(sqlite3_column_text(q, 9), "s");
    assert_string_equal(sqlite3_column_text(q, 10), "local_policy");
    assert_string_equal(sqlite3_column_text(q, 11), "exempt client");
    assert_string_equal(sqlite3_column_text(q, 12), "none");
    assert_int_equal(sqlite3_column_int(q, 13), 1);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(q, 5), "helo");
    assert_int_equal(sqlite3_column_type(q, 7), SQLITE_NULL); /* p absent */
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT domain, selector, result FROM evaluation_dkim "
                                        "ORDER BY eval_id, idx",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(q, 0), "example.org");
    assert_string_equal(sqlite3_column_text(q, 1), "s1");
    assert_string_equal(sqlite3_column_text(q, 2), "pass");
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(q, 2), "fail");
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);

    /* Reopening keeps the rows and the one schema_version row. */
    assert_int_equal(um_history_open(t->db, 16, &h, &err), UM_OK);
    um_history_close(h, 1000, NULL);
    assert_int_equal(count_rows(t->db, "SELECT count(*) FROM evaluations"), 2);
    assert_int_equal(count_rows(t->db, "SELECT count(*) FROM schema_version"), 1);
}

struct errs {
    int n;
    char last[512];
};

static void
on_error(void *arg, bool ok, const char *msg)
{
    struct errs *e = arg;

    (void)ok;
    e->n++;
    snprintf(e->last, sizeof(e->last), "%s", msg);
}

/* The store is locked by another writer for longer than the busy timeout: records beyond the
 * queue are dropped at once, the batch in flight fails and is reported, and the writer goes
 * on once the lock is gone. */
static void
test_queue_full_drops_never_blocks(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};
    struct errs e = {0};
    sqlite3 *locker;
    double t0, worst = 0;
    int accepted = 0;

    assert_int_equal(um_history_open(t->db, 4, &h, &err), UM_OK);
    um_history_on_error(h, on_error, &e);
    locker = open_db(t->db);
    assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    fill(&r, 1);
    for (int i = 0; i < 200; i++) {
        double d;
        t0 = now_ms();
        if (um_history_record(h, &r))
            accepted++;
        d = now_ms() - t0;
        if (d > worst)
            worst = d;
    }
    if (worst > 50.0)
        fail_msg("um_history_record blocked: worst call %.1f ms, want < 50", worst);
    /* At most the queue plus one batch taken by the writer. */
    if (accepted > 4 + UM_HISTORY_BATCH || accepted < 4)
        fail_msg("accepted: got %d, want 4..%d", accepted, 4 + UM_HISTORY_BATCH);
    um_history_stats(h, &st);
    assert_int_equal(st.dropped, 200 - accepted);
    /* Hold the lock past the busy timeout so the batch in flight fails. */
    nanosleep(&(struct timespec){(UM_HISTORY_BUSY_MS + 500) / 1000,
                                 ((UM_HISTORY_BUSY_MS + 500) % 1000) * 1000000L},
              NULL);
    assert_int_equal(sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(locker);
    assert_true(um_history_record(h, &r)); /* the store works again */
    um_history_close(h, 10000, &st);
    if (st.errors < 1)
        fail_msg("errors: got %llu, want >= 1", (unsigned long long)st.errors);
    assert_true(e.n >= 1);
    assert_non_null(strstr(e.last, "history.db"));
    assert_non_null(strstr(e.last, "records lost"));
    assert_int_equal(st.written + st.failed + st.dropped, 201);
    assert_true(st.written >= 1);
    assert_int_equal(count_rows(t->db, "SELECT count(*) FROM evaluations"), (long long)st.written);
}

static void
test_close_drains(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};

    assert_int_equal(um_history_open(t->db, 5000, &h, &err), UM_OK);
    for (int i = 0; i < 3000; i++) {
        fill(&r, i);
        assert_true(um_history_record(h, &r));
    }
    um_history_close(h, 30000, &st);
    assert_int_equal(st.written, 3000);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(count_rows(t->db, "SELECT count(*) FROM evaluations"), 3000);
    assert_int_equal(count_rows(t->db, "SELECT count(*) FROM evaluation_dkim"), 6000);
}

/* A zero drain bound with the store locked: close returns, and what is left is dropped. */
static void
test_close_bounded(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};
    sqlite3 *locker;
    double t0;

    assert_int_equal(um_history_open(t->db, 5000, &h, &err), UM_OK);
    locker = open_db(t->db);
    assert_int_equal(sqlite3_exec(locker, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    fill(&r, 1);
    for (int i = 0; i < 1000; i++)
        assert_true(um_history_record(h, &r));
    t0 = now_ms();
    um_history_close(h, 0, &st);
    /* One batch may wait out the busy timeout; nothing more. */
    if (now_ms() - t0 > UM_HISTORY_BUSY_MS + 1500)
        fail_msg("close took %.0f ms", now_ms() - t0);
    sqlite3_exec(locker, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(locker);
    assert_int_equal(st.written + st.failed + st.dropped, 1000);
    assert_true(st.dropped >= 1000 - UM_HISTORY_BATCH);
}

static const struct {
    const char *name;
    const char *path; /* appended to the temp dir */
    const char *want; /* in err.msg */
} bad_paths[] = {
    {"missing directory", "/no/such/dir/h.db", "unable to open database file"},
    {"a directory", "", "history: /tmp/um_history_"},
    {"not a database", "/junk.db", "file is not a database"},
};

static void
test_bad_paths(void **state)
{
    struct tmp *t = *state;
    char junk[128];
    FILE *f;

    snprintf(junk, sizeof(junk), "%s/junk.db", t->dir);
    f = fopen(junk, "w");
    assert_non_null(f);
    fputs("this is not an SQLite file, it is just some text long enough to be read\n", f);
    fclose(f);
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        struct um_history *h = (struct um_history *)1;
        struct um_error err = {0};
        char path[256];
        enum um_status got;

        snprintf(path, sizeof(path), "%s%s", t->dir, bad_paths[i].path);
        got = um_history_open(path, 8, &h, &err);
        if (got != UM_EIO)
            fail_msg("%s: got %s (%s), want EIO", bad_paths[i].name, um_status_name(got), err.msg);
        assert_null(h);
        if (strstr(err.msg, bad_paths[i].want) == NULL)
            fail_msg("%s: got \"%s\", want it to contain \"%s\"", bad_paths[i].name, err.msg,
                     bad_paths[i].want);
    }
}

static void
test_read_only_file(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_error err = {0};
    char uri[256];

    /* Root ignores file modes, so ask SQLite for a read-only open through a URI: the same
     * fallback SQLite takes silently when it cannot write the file. */
    assert_int_equal(um_history_open(t->db, 8, &h, &err), UM_OK);
    um_history_close(h, 1000, NULL);
    snprintf(uri, sizeof(uri), "file:%s?mode=ro", t->db);
    assert_int_equal(um_history_open(uri, 8, &h, &err), UM_EIO);
    assert_null(h);
    if (strstr(err.msg, "read-only") == NULL && strstr(err.msg, "readonly") == NULL)
        fail_msg("got \"%s\", want a read-only error", err.msg);
}

static void
test_newer_schema_refused(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_error err = {0};
    sqlite3 *db;

    assert_int_equal(um_history_open(t->db, 8, &h, &err), UM_OK);
    um_history_close(h, 1000, NULL);
    db = open_db(t->db);
    assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(um_history_open(t->db, 8, &h, &err), UM_EIO);
    assert_non_null(strstr(err.msg, "schema version 99 is newer"));
}

struct lines {
    int n, nok;
    char first[700], last[1024];
};

static void
on_line(void *arg, bool ok, const char *msg)
{
    struct lines *l = arg;

    if (l->n == 0)
        snprintf(l->first, sizeof(l->first), "%s", msg);
    l->n++;
    l->nok += ok ? 1 : 0;
    snprintf(l->last, sizeof(l->last), "%s", msg);
}

/* Records one at a time, each its own batch; waits until the writer has dealt with it. */
static void
record_each(struct um_history *h, int n)
{
    struct um_history_rec r;
    struct um_history_stats st;
    uint64_t before;

    um_history_stats(h, &st);
    before = st.written + st.failed;
    for (int i = 0; i < n; i++) {
        fill(&r, i);
        assert_true(um_history_record(h, &r));
        for (int w = 0; w < 5000; w++) {
            um_history_stats(h, &st);
            if (st.written + st.failed == before + (uint64_t)i + 1)
                break;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(st.written + st.failed, before + (uint64_t)i + 1);
    }
}

/* Issue 12: a store that fails every commit (here a trigger that aborts every insert, as a
 * full disk would) logged one line per message. Now: 300 failures are one line; the
 * recovery is one line with the count; with a 1 s interval a long episode gives one
 * summary per second; failures not yet reported are summed up at close. */
static void
test_failing_store_throttled(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_error err = {0};
    struct lines l = {0};
    sqlite3 *db;
    double t0, secs;
    int n;

    assert_int_equal(um_history_open(t->db, 8, &h, &err), UM_OK);
    um_history_on_error(h, on_line, &l);
    db = open_db(t->db);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER fail BEFORE INSERT ON evaluations "
                                  "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    record_each(h, 300);
    um_history_stats(h, &st);
    assert_int_equal(st.failed, 300);
    assert_int_equal(st.errors, 300);
    if (l.n != 1)
        fail_msg("300 failures: got %d log lines, want 1 (last: %s)", l.n, l.last);
    assert_non_null(strstr(l.first, "history.db: insert: disk full (test) (1 records lost)"));
    /* The store recovers: one line, with what the episode cost. */
    assert_int_equal(sqlite3_exec(db, "DROP TRIGGER fail", NULL, NULL, NULL), SQLITE_OK);
    record_each(h, 5);
    um_history_stats(h, &st);
    assert_int_equal(st.written, 5);
    if (l.n != 3 || l.nok != 1)
        fail_msg("recovery: got %d lines (%d ok), want 3 (1 ok): last \"%s\"", l.n, l.nok, l.last);
    if (strstr(l.last, "history.db: writing again after 300 failures, 300 records lost") == NULL)
        fail_msg("recovery line: got \"%s\"", l.last);
    /* A long episode with a 1 s interval: one summary per elapsed second at most. */
    um_history_error_interval(h, 1);
    l = (struct lines){0};
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TRIGGER fail BEFORE INSERT ON evaluations "
                                  "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    t0 = now_ms();
    for (n = 0; now_ms() - t0 < 2500; n += 20)
        record_each(h, 20);
    secs = (now_ms() - t0) / 1000.0;
    if (l.n < 3 || (double)l.n > 2 + secs)
        fail_msg("%d failures in %.1f s with a 1 s interval: got %d lines, want 3..%d", n, secs,
                 l.n, (int)(2 + secs));
    assert_non_null(strstr(l.last, "still failing: "));
    assert_non_null(strstr(l.last, "; latest: history: "));
    n = l.n;
    record_each(h, 1); /* within the interval: held back, then summed up at close */
    um_history_close(h, 1000, NULL);
    if (l.n != n + 1 || strstr(l.last, "still failing at close: ") == NULL)
        fail_msg("close: got %d lines after %d, last \"%s\"", l.n, n, l.last);
    sqlite3_close(db);
}

/* Issue 12: the database and its -wal/-shm hold every sender's IP: 0600 under umask 022. */
static void
test_created_mode(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_error err = {0};
    static const char *const sfx[] = {"", "-wal", "-shm"};
    mode_t old = umask(022);

    if (um_history_open(t->db, 8, &h, &err) != UM_OK)
        fail_msg("open: %s", err.msg);
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        struct stat sb;
        snprintf(p, sizeof(p), "%s%s", t->db, sfx[i]);
        if (stat(p, &sb) != 0)
            fail_msg("%s was not created", p);
        if ((sb.st_mode & 07777) != 0600)
            fail_msg("%s: got mode %04o, want 0600", p, (unsigned)(sb.st_mode & 07777));
    }
    um_history_close(h, 1000, NULL);
    umask(old);
}

static void
test_bad_args(void **state)
{
    struct tmp *t = *state;
    struct um_history *h = NULL;
    struct um_error err = {0};

    assert_int_equal(um_history_open(t->db, 0, &h, &err), UM_EINVAL);
    assert_int_equal(um_history_open("", 8, &h, &err), UM_EINVAL);
    assert_int_equal(um_history_open(t->db, UM_HISTORY_QUEUE_MAX + 1, &h, &err), UM_EINVAL);
    um_history_close(NULL, 0, NULL);
    assert_string_equal(um_history_override_name(UM_HISTORY_OVERRIDE_POLICY_TEST_MODE),
                        "policy_test_mode");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_drops_never_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_created_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_store_throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
