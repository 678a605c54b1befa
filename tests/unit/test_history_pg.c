/*
 * test_history_pg - lib/history and lib/report on PostgreSQL, the store several MX hosts share
 *
 * Starts a private PostgreSQL server (initdb into a temporary directory as the postgres user,
 * or nobody, when run as root; unix socket only, listen_addresses='') and stops it at the end.
 * No PostgreSQL server binaries: exit 77 (skipped), or a failure under CI=true. Two history
 * handles record into it as two MX hosts would; the rows are read back; the report of the
 * same rows is byte-identical to the one built from SQLite (dry run), a real run records the
 * period as sent in reports_sent and a second run sends nothing, retention deletes the same
 * rows; a server that goes away costs counted, reported batches and the writer reconnects
 * when it is back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <zlib.h>

#include "history.h"
#include "report.h"

/* lib/submit's sendmail path with this binary (a compound literal: lives in the caller's block). */
#define VIA_SENDMAIL(path)                                                                         \
    (&(struct um_submit_opts){.via = UM_SUBMIT_VIA_SENDMAIL, .sendmail = (path)})

#define DAY    1700006400LL /* 2023-11-15 00:00:00 UTC */
#define NOW    (DAY + 86400 + 3600)
#define PG_BIN "/usr/lib/postgresql/15/bin"

/* The server under test (test process state). */
static char pg_dir[64] = "/tmp/um-pg-XXXXXX";
static char pg_conninfo[256];
static char pg_user[64];
static char work_dir[64] = "/tmp/um-pgw-XXXXXX";

static int
sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Runs a PostgreSQL tool as the server's owner. */
static int
pg_tool(const char *args)
{
    if (pg_user[0] != '\0')
        return sh("cd '%s' && runuser -u %s -- %s >>'%s/tool.log' 2>&1", pg_dir, pg_user, args,
                  pg_dir);
    return sh("cd '%s' && %s >>'%s/tool.log' 2>&1", pg_dir, args, pg_dir);
}

static int
pg_start(void)
{
    char args[1024];

    (void)snprintf(args, sizeof(args),
                   PG_BIN "/pg_ctl -D '%s/data' -w -t 60 -l '%s/server.log' -o "
                          "\"-k '%s' -c listen_addresses=''\" start",
                   pg_dir, pg_dir, pg_dir);
    return pg_tool(args);
}

static int
pg_stop(void)
{
    char args[512];

    (void)snprintf(args, sizeof(args), PG_BIN "/pg_ctl -D '%s/data' -w -m fast stop", pg_dir);
    return pg_tool(args);
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long long
pg_count(const char *sql)
{
    PGconn *c = PQconnectdb(pg_conninfo);
    PGresult *res;
    long long n = -1;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        fprintf(stderr, "pg_count: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return n;
}

static void
pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(pg_conninfo);
    PGresult *res;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
}

/* --- fake DNS ------------------------------------------------------------------------------- */

static enum um_status
fake_txt(void *arg, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    static const char org[] = "v=DMARC1; p=reject; rua=mailto:dmarc@example.org";
    static const char norua[] = "v=DMARC1; p=none";
    const char *txt = NULL;

    (void)arg;
    (void)err;
    memset(res, 0, sizeof(*res));
    res->result = UM_DNS_NXDOMAIN;
    if (strcmp(name, "_dmarc.example.org") == 0)
        txt = org;
    else if (strcmp(name, "_dmarc.norua.example") == 0)
        txt = norua;
    if (txt != NULL) {
        res->result = UM_DNS_OK;
        res->n = 1;
        res->rec = calloc(1, sizeof(*res->rec));
        assert_non_null(res->rec);
        res->rec[0].p = txt;
        res->rec[0].len = strlen(txt);
    }
    return UM_OK;
}

static void
fake_txt_fini(void *arg, struct um_dns_txt *res)
{
    (void)arg;
    free(res->rec);
    res->rec = NULL;
}

/* --- the recorded set ---------------------------------------------------------------------- */

static void
rec(struct um_history_rec *r, int64_t ts, const char *ip, const char *policy_domain)
{
    memset(r, 0, sizeof(*r));
    r->time = ts;
    snprintf(r->source_ip, sizeof(r->source_ip), "%s", ip);
    snprintf(r->header_from, sizeof(r->header_from), "%s", policy_domain);
    snprintf(r->envelope_from, sizeof(r->envelope_from), "%s", policy_domain);
    snprintf(r->spf_domain, sizeof(r->spf_domain), "%s", policy_domain);
    snprintf(r->policy_domain, sizeof(r->policy_domain), "%s", policy_domain);
    r->spf_result = UM_AUTH_PASS;
    r->dmarc_result = UM_DMARC_RESULT_PASS;
    r->spf_aligned = true;
    r->p = 'r';
    r->adkim = 'r';
    r->aspf = 'r';
    r->pct = 100;
    r->rua = true;
    r->disposition = UM_DMARC_POLICY_NONE;
}

/* The i-th of the 11 evaluations (as lib/report's unit test, plus a two-signature row):
 * example.org on DAY in four groups (3 + 2 + 1 + 1), one row without rua, one today, one very
 * old, one for a domain without rua. */
static void
nth(struct um_history_rec *r, int i)
{
    if (i < 3) {
        rec(r, DAY + 100 + i, "192.0.2.1", "example.org");
        r->ndkim = 1;
        strcpy(r->dkim[0].domain, "example.org");
        strcpy(r->dkim[0].selector, "s1");
        r->dkim[0].result = UM_AUTH_PASS;
        r->dkim_aligned = true;
    } else if (i < 5) {
        rec(r, DAY + 7200 + i, "198.51.100.9", "example.org");
        strcpy(r->envelope_from, "spoof.example");
        strcpy(r->spf_domain, "spoof.example");
        r->spf_result = UM_AUTH_SOFTFAIL;
        r->spf_aligned = false;
        r->dmarc_result = UM_DMARC_RESULT_FAIL;
        r->disposition = UM_DMARC_POLICY_QUARANTINE;
        r->p = 'q';
    } else if (i == 5) {
        rec(r, DAY + 80000, "2001:db8::5", "example.org");
        r->spf_result = UM_AUTH_FAIL;
        r->spf_aligned = false;
        r->spf_scope = UM_HISTORY_SPF_HELO;
        strcpy(r->spf_domain, "mx.<evil>.example");
        r->ndkim = 1;
        strcpy(r->dkim[0].domain, "other.example");
        strcpy(r->dkim[0].selector, "k&1");
        r->dkim[0].result = UM_AUTH_FAIL;
        r->dmarc_result = UM_DMARC_RESULT_FAIL;
        r->override = UM_HISTORY_OVERRIDE_LOCAL_POLICY;
        strcpy(r->override_comment, "exempt client");
        r->t = 'y';
    } else if (i == 6) {
        rec(r, DAY + 40000, "203.0.113.7", "example.org");
        r->ndkim = 2;
        strcpy(r->dkim[0].domain, "example.org");
        strcpy(r->dkim[0].selector, "s2");
        r->dkim[0].result = UM_AUTH_PASS;
        strcpy(r->dkim[1].domain, "esp.example");
        strcpy(r->dkim[1].selector, "e1");
        r->dkim[1].result = UM_AUTH_TEMPERROR;
        r->dkim_aligned = true;
    } else if (i == 7) {
        rec(r, DAY + 500, "192.0.2.1", "example.org");
        r->rua = false;
    } else if (i == 8) {
        rec(r, NOW - 10, "192.0.2.1", "example.org");
    } else if (i == 9) {
        rec(r, DAY - 400LL * 86400, "192.0.2.1", "old.example");
        r->rua = false;
    } else {
        rec(r, DAY + 10, "192.0.2.3", "norua.example");
    }
}

#define NREC  11
#define NDKIM 6

static void
populate_sqlite(const char *db)
{
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};

    assert_int_equal(um_history_open(db, 64, &h, &err), UM_OK);
    for (int i = 0; i < NREC; i++) {
        nth(&r, i);
        assert_true(um_history_record(h, &r));
    }
    um_history_close(h, 10000, &st);
    assert_int_equal(st.written, NREC);
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

/* Two MX hosts, two handles, one database: alternate records between them. */
static void
populate_pg(void)
{
    struct um_history *a = NULL, *b = NULL;
    struct um_history_stats sa, sb;
    struct um_history_rec r;
    struct um_error err = {0};
    struct errs e = {0};

    if (um_history_open_store(UM_HISTORY_STORE_POSTGRESQL, pg_conninfo, 64, &a, &err) != UM_OK)
        fail_msg("open: %s", err.msg);
    assert_int_equal(um_history_open_store(UM_HISTORY_STORE_POSTGRESQL, pg_conninfo, 64, &b, &err),
                     UM_OK);
    um_history_on_error(a, on_error, &e);
    um_history_on_error(b, on_error, &e);
    for (int i = 0; i < NREC; i++) {
        nth(&r, i);
        assert_true(um_history_record(i % 2 == 0 ? a : b, &r));
    }
    um_history_close(a, 10000, &sa);
    um_history_close(b, 10000, &sb);
    assert_int_equal(e.n, 0);
    assert_int_equal(sa.written, (NREC + 1) / 2);
    assert_int_equal(sb.written, NREC / 2);
    assert_int_equal(sa.failed + sb.failed + sa.dropped + sb.dropped, 0);
}

static int
setup(void **state)
{
    (void)state;
    pg_exec("SET client_min_messages = warning; DROP TABLE IF EXISTS evaluations,"
            " evaluation_dkim, schema_version, reports_sent");
    assert_int_equal(sh("rm -rf '%s/lite' '%s/out-lite' '%s/out-pg' && mkdir '%s/out-lite' "
                        "'%s/out-pg'",
                        work_dir, work_dir, work_dir, work_dir, work_dir),
                     0);
    return 0;
}

/* --- tests ---------------------------------------------------------------------------------- */

static void
test_two_hosts_rows(void **state)
{
    (void)state;
    populate_pg();
    assert_int_equal(pg_count("SELECT count(*) FROM evaluations"), NREC);
    assert_int_equal(pg_count("SELECT count(DISTINCT id) FROM evaluations"), NREC);
    assert_int_equal(pg_count("SELECT count(*) FROM evaluation_dkim"), NDKIM);
    assert_int_equal(pg_count("SELECT max(version) FROM schema_version"), 1);
    assert_int_equal(pg_count("SELECT count(*) FROM schema_version"), 1);
    /* Every DKIM row belongs to its evaluation, in signature order. */
    assert_int_equal(pg_count("SELECT count(*) FROM evaluation_dkim d JOIN evaluations e ON"
                              " e.id = d.eval_id WHERE (e.source_ip = '203.0.113.7' AND"
                              " ((d.idx = 0 AND d.selector = 's2' AND d.result = 'pass') OR"
                              " (d.idx = 1 AND d.domain = 'esp.example' AND"
                              " d.result = 'temperror')))"),
                     2);
    /* The fields of one row, as SQLite stores them. */
    assert_int_equal(
        pg_count("SELECT count(*) FROM evaluations WHERE source_ip = '2001:db8::5'"
                 " AND ts = 1700086400 AND spf_scope = 'helo' AND spf_result = 'fail'"
                 " AND spf_domain = 'mx.<evil>.example' AND dmarc_result = 'fail'"
                 " AND override = 'local_policy' AND override_comment = 'exempt client'"
                 " AND p = 'reject' AND sp IS NULL AND np IS NULL AND adkim = 'r'"
                 " AND t = 'y' AND psd IS NULL AND pct = 100 AND rua = 1"
                 " AND dkim_aligned = 0 AND disposition = 'none'"
                 " AND method = 'treewalk'"),
        1);
    assert_int_equal(pg_count("SELECT count(*) FROM evaluations WHERE rua = 0"), 2);
    /* A third handle finds the schema in place and adds to it. */
    populate_pg();
    assert_int_equal(pg_count("SELECT count(*) FROM evaluations"), 2 * NREC);
    assert_int_equal(pg_count("SELECT count(*) FROM schema_version"), 1);
}

static char *
slurp_gz(const char *path)
{
    gzFile g = gzopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    int n;

    assert_non_null(g);
    assert_non_null(buf);
    n = gzread(g, buf, (1 << 20) - 1);
    assert_true(n > 0);
    gzclose(g);
    return buf;
}

static struct um_report_opts
opts(void)
{
    struct um_report_opts o = {
        .org_name = "Receiver & Co",
        .email = "dmarc-noreply@receiver.example",
        .day = -1,
        .now = NOW,
        .txt = fake_txt,
        .txt_fini = fake_txt_fini,
    };
    return o;
}

#define FNAME "receiver.example!example.org!1700006400!1700092799!"

static void
test_report_same_as_sqlite(void **state)
{
    struct um_report_opts lo = opts(), po = opts();
    struct um_report_stats ls, ps;
    struct um_error err = {0};
    char lite[128], outl[128], outp[128], cmd[512], name[256] = "";
    char *xl, *xp;
    FILE *fp;

    (void)state;
    snprintf(lite, sizeof(lite), "%s/lite", work_dir);
    snprintf(outl, sizeof(outl), "%s/out-lite", work_dir);
    snprintf(outp, sizeof(outp), "%s/out-pg", work_dir);
    populate_sqlite(lite);
    populate_pg();
    lo.db_path = lite;
    lo.dry_run_dir = outl;
    po.store = UM_HISTORY_STORE_POSTGRESQL;
    po.db_path = pg_conninfo;
    po.dry_run_dir = outp;
    assert_int_equal(um_report_run(&lo, &ls, &err), UM_OK);
    if (um_report_run(&po, &ps, &err) != UM_OK)
        fail_msg("report: %s", err.msg);
    assert_int_equal(ps.periods, ls.periods);
    assert_int_equal(ps.written, 1);
    assert_int_equal(ls.written, 1);
    assert_int_equal(ps.skipped, ls.skipped);
    /* Same file name, same XML. */
    snprintf(cmd, sizeof(cmd), "ls '%s'", outp);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    assert_non_null(fgets(name, sizeof(name), fp));
    pclose(fp);
    name[strcspn(name, "\n")] = '\0';
    assert_int_equal(strncmp(name, FNAME, strlen(FNAME)), 0);
    snprintf(cmd, sizeof(cmd), "%s/%s", outl, name);
    xl = slurp_gz(cmd);
    snprintf(cmd, sizeof(cmd), "%s/%s", outp, name);
    xp = slurp_gz(cmd);
    assert_string_equal(xp, xl);
    /* Four records: 3, 2, 1 and 1 messages; the two-signature row keeps its order. */
    assert_non_null(strstr(xp, "<count>3</count>"));
    assert_non_null(strstr(xp, "<count>2</count>"));
    assert_non_null(strstr(xp, "<selector>s2</selector>"));
    assert_true(strstr(xp, "<selector>s2</selector>") < strstr(xp, "<selector>e1</selector>"));
    assert_non_null(strstr(xp, "<t>y</t>"));
    free(xl);
    free(xp);
    /* The dry run recorded nothing. */
    assert_int_equal(pg_count("SELECT count(*) FROM reports_sent"), 0);
}

static void
test_report_sent_once_and_retention(void **state)
{
    struct um_report_opts lo = opts(), po = opts();
    struct um_report_stats ls, ps;
    struct um_error err = {0};
    char lite[128], sendmail[128];
    FILE *fp;

    (void)state;
    snprintf(lite, sizeof(lite), "%s/lite", work_dir);
    snprintf(sendmail, sizeof(sendmail), "%s/sendmail", work_dir);
    fp = fopen(sendmail, "w");
    assert_non_null(fp);
    fputs("#!/bin/sh\ncat >/dev/null\nexit 0\n", fp);
    fclose(fp);
    assert_int_equal(chmod(sendmail, 0755), 0);
    populate_sqlite(lite);
    populate_pg();
    lo.db_path = lite;
    po.store = UM_HISTORY_STORE_POSTGRESQL;
    po.db_path = pg_conninfo;
    lo.submit = po.submit = VIA_SENDMAIL(sendmail);
    lo.retention_days = po.retention_days = 30;
    assert_int_equal(um_report_run(&lo, &ls, &err), UM_OK);
    if (um_report_run(&po, &ps, &err) != UM_OK)
        fail_msg("report: %s", err.msg);
    assert_int_equal(ps.sent, 1);
    assert_int_equal(ps.sent, ls.sent);
    assert_int_equal(ps.skipped, ls.skipped);
    assert_int_equal(ps.expired, 1);
    assert_int_equal(ps.expired, ls.expired);
    assert_int_equal(pg_count("SELECT count(*) FROM reports_sent WHERE policy_domain ="
                              " 'example.org' AND begin = 1700006400 AND state = 'sent'"),
                     1);
    assert_int_equal(pg_count("SELECT count(*) FROM reports_sent WHERE policy_domain ="
                              " 'norua.example' AND state = 'norua'"),
                     1);
    assert_int_equal(pg_count("SELECT count(*) FROM evaluations"), NREC - 1);
    /* A second run finds nothing new. */
    if (um_report_run(&po, &ps, &err) != UM_OK)
        fail_msg("report: %s", err.msg);
    assert_int_equal(ps.periods, 0);
    assert_int_equal(ps.sent, 0);
}

/* The server goes away: batches fail (counted, reported, no connection string in the
 * message), record() never blocks; the writer reconnects once it is back. */
static void
test_server_down_and_back(void **state)
{
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};
    struct errs e = {0};
    int waited;

    (void)state;
    assert_int_equal(um_history_open_store(UM_HISTORY_STORE_POSTGRESQL, pg_conninfo, 64, &h, &err),
                     UM_OK);
    um_history_on_error(h, on_error, &e);
    nth(&r, 0);
    assert_true(um_history_record(h, &r));
    for (waited = 0; waited < 10000; waited += 50) {
        um_history_stats(h, &st);
        if (st.written == 1)
            break;
        sleep_ms(50);
    }
    assert_int_equal(st.written, 1);
    assert_int_equal(pg_stop(), 0);
    assert_true(um_history_record(h, &r));
    for (waited = 0; waited < 10000; waited += 50) {
        um_history_stats(h, &st);
        if (st.failed == 1)
            break;
        sleep_ms(50);
    }
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.errors, 1);
    assert_true(um_history_record(h, &r)); /* reconnect fails: backoff starts */
    for (waited = 0; waited < 10000; waited += 50) {
        um_history_stats(h, &st);
        if (st.failed == 2)
            break;
        sleep_ms(50);
    }
    assert_int_equal(st.failed, 2);
    assert_int_equal(e.n, 1); /* the second failure of the episode is not a line of its own */
    assert_non_null(strstr(e.last, "history: postgresql: "));
    assert_non_null(strstr(e.last, "(1 records lost)"));
    assert_null(strstr(e.last, "dbname=")); /* libpq names the socket, never the string */
    assert_int_equal(pg_start(), 0);
    sleep_ms(1200); /* the first backoff is 1 s */
    assert_true(um_history_record(h, &r));
    for (waited = 0; waited < 10000; waited += 50) {
        um_history_stats(h, &st);
        if (st.written == 2 || st.failed > 2)
            break;
        sleep_ms(50);
    }
    assert_int_equal(st.written, 2);
    assert_int_equal(st.failed, 2);
    assert_int_equal(e.n, 3); /* the one held back, then the recovery */
    assert_string_equal(e.last,
                        "history: postgresql: writing again after 2 failures, 2 records lost");
    um_history_close(h, 5000, &st);
    assert_int_equal(pg_count("SELECT count(*) FROM evaluations"), 2);
}

static void
test_bad_conninfo(void **state)
{
    struct um_history *h = NULL;
    struct um_error err = {0};
    char bad[300];

    (void)state;
    snprintf(bad, sizeof(bad), "host=%s/nonexistent dbname=unimilter password=sekrit", pg_dir);
    assert_int_equal(um_history_open_store(UM_HISTORY_STORE_POSTGRESQL, bad, 8, &h, &err), UM_EIO);
    assert_null(h);
    assert_non_null(strstr(err.msg, "history: postgresql: connect: "));
    assert_null(strstr(err.msg, "sekrit"));
    assert_int_equal(um_history_open_store(UM_HISTORY_STORE_POSTGRESQL, "", 8, &h, &err),
                     UM_EINVAL);
}

/* --- the server ----------------------------------------------------------------------------- */

static int
server_up(void)
{
    char args[1024];
    struct passwd *pw;

    if (mkdtemp(pg_dir) == NULL || mkdtemp(work_dir) == NULL)
        return -1;
    if (geteuid() == 0) {
        pw = getpwnam("postgres");
        if (pw == NULL)
            pw = getpwnam("nobody");
        if (pw == NULL || chown(pg_dir, pw->pw_uid, pw->pw_gid) != 0)
            return -1;
        snprintf(pg_user, sizeof(pg_user), "%s", pw->pw_name);
    }
    (void)chmod(pg_dir, 0755);
    (void)snprintf(args, sizeof(args),
                   PG_BIN "/initdb -D '%s/data' -A trust -U postgres -E UTF8 --locale=C.UTF-8",
                   pg_dir);
    if (pg_tool(args) != 0 || pg_start() != 0)
        return -1;
    snprintf(pg_conninfo, sizeof(pg_conninfo), "host=%s dbname=postgres user=postgres", pg_dir);
    pg_exec("CREATE DATABASE unimilter");
    snprintf(pg_conninfo, sizeof(pg_conninfo), "host=%s dbname=unimilter user=postgres", pg_dir);
    return 0;
}

int
main(void)
{
    const char *ci = getenv("CI");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_conninfo),
        cmocka_unit_test_setup(test_two_hosts_rows, setup),
        cmocka_unit_test_setup(test_report_same_as_sqlite, setup),
        cmocka_unit_test_setup(test_report_sent_once_and_retention, setup),
        cmocka_unit_test_setup(test_server_down_and_back, setup),
    };
    int rc;

    if (access(PG_BIN "/initdb", X_OK) != 0 || access(PG_BIN "/pg_ctl", X_OK) != 0) {
        if (ci != NULL && strcmp(ci, "true") == 0) {
            fprintf(stderr, "test_history_pg: no PostgreSQL in " PG_BIN " (CI=true)\n");
            return 1;
        }
        fprintf(stderr, "test_history_pg: no PostgreSQL in " PG_BIN ": skipped\n");
        return 77;
    }
    if (server_up() != 0) {
        fprintf(stderr, "test_history_pg: cannot start PostgreSQL (see %s/*.log)\n", pg_dir);
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    (void)pg_stop();
    if (rc == 0)
        (void)sh("rm -rf '%s' '%s'", pg_dir, work_dir);
    return rc;
}
