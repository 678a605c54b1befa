/*
 * history.c - DMARC evaluation history: bounded queue, one writer thread (SQLite or PostgreSQL)
 *
 * Design note. The milter thread that finished a message must not wait for a disk, so
 * um_history_record() only mallocs a copy and appends its pointer to a ring of queue_max
 * slots under one mutex (a leaf: no I/O, no call out while held). A full ring means the
 * store is slower than the mail; the record is dropped and counted rather than making the
 * MTA wait, because the history serves reports, not delivery.
 *
 * The writer thread sleeps on a condition until records arrive, takes up to
 * UM_HISTORY_BATCH of them, and inserts them in one BEGIN IMMEDIATE ... COMMIT with two
 * prepared statements (one row in evaluations, one row per DKIM result in
 * evaluation_dkim). Batching bounds the fsyncs to one per batch; WAL with
 * synchronous=NORMAL lets `unimilter report` read while we write. A failed batch is rolled
 * back, counted (errors += 1, failed += its records) and reported through the error
 * callback, outside the lock; the thread then carries on with the next batch, so a store
 * that recovers (disk space freed, lock released) resumes without a restart. Reports are
 * throttled per failure episode (a full disk fails every batch, which was one log line per
 * message): the first failure at once, then at most one summary per interval with the
 * count since the last line, then one line when a batch commits again. The episode state
 * belongs to the writer thread alone.
 *
 * Work is bounded: one batch is at most UM_HISTORY_BATCH records, each statement waits at
 * most UM_HISTORY_BUSY_MS on a locked database. At close the writer drains until the queue
 * is empty or the deadline passes (checked between batches, so the bound is drain_ms plus
 * one batch); whatever is left is dropped and counted.
 *
 * PostgreSQL (several MX hosts, one database) takes the same path with libpq: BEGIN, one
 * INSERT ... RETURNING id per record plus its DKIM rows, COMMIT; statement_timeout bounds
 * each statement. A connection that breaks fails its batch and is dropped; the next batch
 * reconnects, and after a failed attempt the writer waits 1, 2, 4 ... 60 s before trying
 * again, failing (counting) the batches that come meanwhile at once rather than sleeping, so
 * a dead server costs records, never a growing backlog or a stuck shutdown. XXX: a connect
 * to an unreachable host still blocks the writer up to connect_timeout (10 s); the queue
 * absorbs that. The connection string is never written into a message (passwords).
 */
#include "history.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#define HISTORY_PG_LOCK "7586131" /* advisory lock key for schema creation ("um" history) */

struct um_history {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct um_history_rec **ring; /* queue_max slots */
    size_t cap, head, count;
    bool stopping;
    struct timespec deadline; /* CLOCK_MONOTONIC; valid when stopping */
    um_history_error_fn *on_error;
    void *on_error_arg;
    struct um_history_stats st; /* queued is computed from count */
    /* Writer-thread only after open. */
    enum um_history_store store;
    sqlite3 *db;
    sqlite3_stmt *ins_eval, *ins_dkim;
    PGconn *pg;
    unsigned pg_backoff; /* seconds; 0 after a good connection */
    time_t pg_retry_at;  /* CLOCK_MONOTONIC seconds: no connection attempt before */
    char *conninfo;      /* PostgreSQL: the connection string (never logged) */
    pthread_t writer;
    char *path; /* in messages: the file, or "postgresql" */
    /* Failure episode (writer thread only; the interval is set before records flow). */
    unsigned err_interval;     /* seconds between summaries */
    bool failing;              /* the last batch failed */
    time_t err_last;           /* CLOCK_MONOTONIC seconds of the last line reported */
    uint64_t ep_fail, ep_lost; /* failures and records lost in this episode */
    uint64_t un_fail, un_lost; /* of those, not yet reported */
    char err_msg[700];         /* the latest failure */
};

/* The columns after ts, shared by both stores' CREATE TABLE evaluations. */
#define HISTORY_EVAL_COLUMNS                                                                       \
    " source_ip TEXT NOT NULL,"                                                                    \
    " header_from TEXT NOT NULL,"                                                                  \
    " envelope_from TEXT NOT NULL,"                                                                \
    " envelope_to TEXT NOT NULL,"                                                                  \
    " spf_result TEXT NOT NULL,"                                                                   \
    " spf_scope TEXT NOT NULL,"                                                                    \
    " spf_domain TEXT NOT NULL,"                                                                   \
    " ndkim_extra INTEGER NOT NULL,"                                                               \
    " dmarc_result TEXT NOT NULL,"                                                                 \
    " dkim_aligned INTEGER NOT NULL,"                                                              \
    " spf_aligned INTEGER NOT NULL,"                                                               \
    " method TEXT NOT NULL,"                                                                       \
    " policy_domain TEXT NOT NULL,"                                                                \
    " p TEXT, sp TEXT, np TEXT, adkim TEXT, aspf TEXT, pct INTEGER, t TEXT, psd TEXT,"             \
    " rua INTEGER NOT NULL,"                                                                       \
    " disposition TEXT NOT NULL,"                                                                  \
    " override TEXT NOT NULL,"                                                                     \
    " override_comment TEXT NOT NULL);"                                                            \
    "CREATE INDEX IF NOT EXISTS evaluations_policy_ts ON evaluations (policy_domain, ts);"         \
    "CREATE INDEX IF NOT EXISTS evaluations_ts ON evaluations (ts);"
#define HISTORY_DKIM_COLUMNS                                                                       \
    " idx INTEGER NOT NULL,"                                                                       \
    " domain TEXT NOT NULL,"                                                                       \
    " selector TEXT NOT NULL,"                                                                     \
    " result TEXT NOT NULL,"                                                                       \
    " PRIMARY KEY (eval_id, idx));"

static const char history_schema[] =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS evaluations ("
    " id INTEGER PRIMARY KEY,"
    " ts INTEGER NOT NULL," HISTORY_EVAL_COLUMNS "CREATE TABLE IF NOT EXISTS evaluation_dkim ("
    " eval_id INTEGER NOT NULL," HISTORY_DKIM_COLUMNS;

/* PostgreSQL: the same tables; 64-bit ids from a sequence, 64-bit times. The advisory lock
 * (held to COMMIT) serialises MX hosts that start together: concurrent CREATE TABLE IF NOT
 * EXISTS can otherwise fail on the catalog's unique index. */
static const char history_pg_schema[] =
    "SELECT pg_advisory_xact_lock(" HISTORY_PG_LOCK ");"
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS evaluations ("
    " id BIGSERIAL PRIMARY KEY,"
    " ts BIGINT NOT NULL," HISTORY_EVAL_COLUMNS "CREATE TABLE IF NOT EXISTS evaluation_dkim ("
    " eval_id BIGINT NOT NULL," HISTORY_DKIM_COLUMNS;

static const char history_ins_eval[] =
    "INSERT INTO evaluations (ts, source_ip, header_from, envelope_from, envelope_to,"
    " spf_result, spf_scope, spf_domain, ndkim_extra, dmarc_result, dkim_aligned, spf_aligned,"
    " method, policy_domain, p, sp, np, adkim, aspf, pct, t, psd, rua, disposition, override,"
    " override_comment) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char history_ins_dkim[] =
    "INSERT INTO evaluation_dkim (eval_id, idx, domain, selector, result) VALUES (?,?,?,?,?)";
static const char history_pg_ins_eval[] =
    "INSERT INTO evaluations (ts, source_ip, header_from, envelope_from, envelope_to,"
    " spf_result, spf_scope, spf_domain, ndkim_extra, dmarc_result, dkim_aligned, spf_aligned,"
    " method, policy_domain, p, sp, np, adkim, aspf, pct, t, psd, rua, disposition, override,"
    " override_comment) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,"
    "$18,$19,$20,$21,$22,$23,$24,$25,$26) RETURNING id";
static const char history_pg_ins_dkim[] =
    "INSERT INTO evaluation_dkim (eval_id, idx, domain, selector, result) VALUES ($1,$2,$3,$4,$5)";

const char *
um_history_override_name(enum um_history_override o)
{
    static const char *const names[] = {
        "none",         "local_policy", "sampled_out", "policy_test_mode", "trusted_forwarder",
        "mailing_list", "other"};
    if ((size_t)o >= sizeof(names) / sizeof(names[0]))
        return "other";
    return names[o];
}

/* The record's tag chars as the report words: NULL (SQL NULL) when absent. */
static const char *
history_policy_word(char c)
{
    switch (c) {
    case 'n':
        return "none";
    case 'q':
        return "quarantine";
    case 'r':
        return "reject";
    default:
        return NULL;
    }
}

static void
history_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL)
        (void)sqlite3_bind_null(st, i);
    else
        (void)sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void
history_bind_char(sqlite3_stmt *st, int i, char c)
{
    char s[2] = {c, '\0'};

    if (c == 0)
        (void)sqlite3_bind_null(st, i);
    else
        (void)sqlite3_bind_text(st, i, s, 1, SQLITE_TRANSIENT);
}

/* One record; the caller holds the transaction. */
static int
history_insert(struct um_history *h, const struct um_history_rec *r)
{
    sqlite3_stmt *st = h->ins_eval;
    sqlite3_int64 id;
    int rc, i = 1;

    (void)sqlite3_reset(st);
    (void)sqlite3_bind_int64(st, i++, r->time);
    history_bind_text(st, i++, r->source_ip);
    history_bind_text(st, i++, r->header_from);
    history_bind_text(st, i++, r->envelope_from);
    history_bind_text(st, i++, r->envelope_to);
    history_bind_text(st, i++, um_auth_name(r->spf_result));
    history_bind_text(st, i++, r->spf_scope == UM_HISTORY_SPF_HELO ? "helo" : "mfrom");
    history_bind_text(st, i++, r->spf_domain);
    (void)sqlite3_bind_int64(st, i++, (sqlite3_int64)r->ndkim_extra);
    history_bind_text(st, i++, um_dmarc_result_name(r->dmarc_result));
    (void)sqlite3_bind_int(st, i++, r->dkim_aligned);
    (void)sqlite3_bind_int(st, i++, r->spf_aligned);
    history_bind_text(st, i++, r->method == UM_DMARC_METHOD_PSL ? "psl" : "treewalk");
    history_bind_text(st, i++, r->policy_domain);
    history_bind_text(st, i++, history_policy_word(r->p));
    history_bind_text(st, i++, history_policy_word(r->sp));
    history_bind_text(st, i++, history_policy_word(r->np));
    history_bind_char(st, i++, r->adkim);
    history_bind_char(st, i++, r->aspf);
    (void)sqlite3_bind_int(st, i++, r->pct);
    history_bind_char(st, i++, r->t);
    history_bind_char(st, i++, r->psd);
    (void)sqlite3_bind_int(st, i++, r->rua);
    history_bind_text(st, i++,
                      r->disposition == UM_DMARC_POLICY_REJECT       ? "reject"
                      : r->disposition == UM_DMARC_POLICY_QUARANTINE ? "quarantine"
                                                                     : "none");
    history_bind_text(st, i++, um_history_override_name(r->override));
    history_bind_text(st, i++, r->override_comment);
    rc = sqlite3_step(st);
    (void)sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return rc;
    id = sqlite3_last_insert_rowid(h->db);
    for (size_t k = 0; k < r->ndkim && k < UM_HISTORY_MAX_DKIM; k++) {
        st = h->ins_dkim;
        (void)sqlite3_reset(st);
        (void)sqlite3_bind_int64(st, 1, id);
        (void)sqlite3_bind_int64(st, 2, (sqlite3_int64)k);
        history_bind_text(st, 3, r->dkim[k].domain);
        history_bind_text(st, 4, r->dkim[k].selector);
        history_bind_text(st, 5, um_auth_name(r->dkim[k].result));
        rc = sqlite3_step(st);
        (void)sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return rc;
    }
    return SQLITE_DONE;
}

/* Reports msg through the callback; takes the lock only to read the callback. */
static void
history_report_ok(struct um_history *h, bool ok, const char *msg)
{
    um_history_error_fn *fn;
    void *arg;

    pthread_mutex_lock(&h->lock);
    fn = h->on_error;
    arg = h->on_error_arg;
    pthread_mutex_unlock(&h->lock);
    if (fn != NULL)
        fn(arg, ok, msg);
}

/* A batch failed (why in h->err_msg, n records lost) or, with n == 0 and !failed,
 * committed: the throttled report of a failure episode (writer thread). */
static time_t history_mono_sec(void);

static void
history_episode(struct um_history *h, bool failed, size_t n)
{
    char msg[1024];
    time_t now = history_mono_sec();

    if (failed) {
        h->ep_fail++;
        h->ep_lost += n;
        if (!h->failing) {
            h->failing = true;
            h->err_last = now;
            history_report_ok(h, false, h->err_msg);
            return;
        }
        h->un_fail++;
        h->un_lost += n;
        if (now - h->err_last < (time_t)h->err_interval)
            return;
    } else if (!h->failing) {
        return;
    }
    if (h->un_fail > 0) {
        (void)snprintf(msg, sizeof(msg),
                       "history: %s: still failing: %llu more failures, %llu records lost in "
                       "the last %lld s; latest: %s",
                       h->path, (unsigned long long)h->un_fail, (unsigned long long)h->un_lost,
                       (long long)(now - h->err_last), h->err_msg);
        history_report_ok(h, false, msg);
        h->un_fail = h->un_lost = 0;
        h->err_last = now;
    }
    if (!failed) {
        (void)snprintf(msg, sizeof(msg),
                       "history: %s: writing again after %llu failures, %llu records lost", h->path,
                       (unsigned long long)h->ep_fail, (unsigned long long)h->ep_lost);
        history_report_ok(h, true, msg);
        h->failing = false;
        h->ep_fail = h->ep_lost = 0;
    }
}

/* The failures not yet reported, at close. */
static void
history_episode_flush(struct um_history *h)
{
    char msg[1024];

    if (h->un_fail == 0)
        return;
    (void)snprintf(msg, sizeof(msg),
                   "history: %s: still failing at close: %llu more failures, %llu records lost; "
                   "latest: %s",
                   h->path, (unsigned long long)h->un_fail, (unsigned long long)h->un_lost,
                   h->err_msg);
    history_report_ok(h, false, msg);
    h->un_fail = h->un_lost = 0;
}

static void
history_report(struct um_history *h, const char *msg)
{
    history_report_ok(h, false, msg);
}

/* Writes one batch in one transaction; returns true when it was committed. */
static bool
history_sqlite_batch(struct um_history *h, struct um_history_rec **batch, size_t n)
{
    const char *what = "begin";
    int rc;

    rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        what = "insert";
        for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
            if (history_insert(h, batch[i]) != SQLITE_DONE)
                rc = SQLITE_ERROR;
        if (rc == SQLITE_OK) {
            what = "commit";
            rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
        }
    }
    if (rc == SQLITE_OK)
        return true;
    (void)snprintf(h->err_msg, sizeof(h->err_msg), "history: %s: %s: %s (%zu records lost)",
                   h->path, what, sqlite3_errmsg(h->db), n);
    (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    return false;
}

/* --- PostgreSQL ------------------------------------------------------------------------------ */

static time_t
history_mono_sec(void)
{
    struct timespec now;

    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec;
}

/* libpq's message without its trailing newline, into buf. */
static const char *
history_pg_errmsg(PGconn *pg, char *buf, size_t len)
{
    size_t n;

    (void)snprintf(buf, len, "%s", pg != NULL ? PQerrorMessage(pg) : "out of memory");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

/* NOTICEs ("relation ... already exists, skipping") are not failures: dropped. */
static void
history_pg_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs sql; true when it returned want. On false, why holds libpq's message. */
static bool
history_pg_exec(PGconn *pg, const char *sql, ExecStatusType want, char *why, size_t len)
{
    PGresult *res = PQexec(pg, sql);
    bool ok = res != NULL && PQresultStatus(res) == want;

    if (!ok)
        (void)history_pg_errmsg(pg, why, len);
    PQclear(res);
    return ok;
}

/* Creates or checks the schema: 1 done, 0 failed (why set), -1 the schema is newer. */
static int
history_pg_schema_check(struct um_history *h, char *why, size_t len)
{
    PGresult *res;
    int version = -1;

    if (!history_pg_exec(h->pg, "BEGIN", PGRES_COMMAND_OK, why, len))
        return 0;
    if (!history_pg_exec(h->pg, history_pg_schema, PGRES_COMMAND_OK, why, len))
        goto fail;
    res = PQexec(h->pg, "SELECT max(version) FROM schema_version");
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        (void)history_pg_errmsg(h->pg, why, len);
        PQclear(res);
        goto fail;
    }
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (version > UM_HISTORY_SCHEMA_VERSION) {
        (void)snprintf(why, len, "schema version %d is newer than this program's %d", version,
                       UM_HISTORY_SCHEMA_VERSION);
        char ignore[8];
        (void)history_pg_exec(h->pg, "ROLLBACK", PGRES_COMMAND_OK, ignore, sizeof(ignore));
        return -1;
    }
    if (version < 0
        && !history_pg_exec(h->pg, "INSERT INTO schema_version (version) VALUES (1)",
                            PGRES_COMMAND_OK, why, len))
        goto fail;
    if (history_pg_exec(h->pg, "COMMIT", PGRES_COMMAND_OK, why, len))
        return 1;
fail : {
    char ignore[8];
    (void)history_pg_exec(h->pg, "ROLLBACK", PGRES_COMMAND_OK, ignore, sizeof(ignore));
    return 0;
}
}

/* Connected with the schema checked: 1; 0 not now (why set; the next attempt waits for the
 * backoff); -1 the schema is newer than ours. Writer thread (or open, before it starts). */
static int
history_pg_connect(struct um_history *h, char *why, size_t len)
{
    static const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {"10", h->conninfo, NULL};
    char msg[400];
    time_t now = history_mono_sec();
    int ok;

    if (h->pg != NULL && PQstatus(h->pg) == CONNECTION_OK)
        return 1;
    if (h->pg_backoff > 0 && now < h->pg_retry_at) {
        (void)snprintf(why, len, "not connected (next attempt in %lld s)",
                       (long long)(h->pg_retry_at - now));
        return 0;
    }
    PQfinish(h->pg);
    /* expand_dbname: the connection string is expanded in place of dbname, so its own
     * connect_timeout, if any, overrides ours. */
    h->pg = PQconnectdbParams(keys, vals, 1);
    if (h->pg != NULL)
        (void)PQsetNoticeProcessor(h->pg, history_pg_notice, NULL);
    ok = h->pg != NULL && PQstatus(h->pg) == CONNECTION_OK ? 1 : 0;
    if (!ok) {
        (void)snprintf(why, len, "connect: %s", history_pg_errmsg(h->pg, msg, sizeof(msg)));
    } else {
        char set[64];
        (void)snprintf(set, sizeof(set), "SET statement_timeout = %d", UM_HISTORY_PG_TIMEOUT_MS);
        if (!history_pg_exec(h->pg, set, PGRES_COMMAND_OK, msg, sizeof(msg))) {
            (void)snprintf(why, len, "setup: %s", msg);
            ok = 0;
        } else if ((ok = history_pg_schema_check(h, msg, sizeof(msg))) != 1) {
            (void)snprintf(why, len, "schema: %s", msg);
        }
    }
    if (ok == 1) {
        h->pg_backoff = 0;
        return 1;
    }
    PQfinish(h->pg);
    h->pg = NULL;
    h->pg_backoff = h->pg_backoff == 0 ? 1 : h->pg_backoff * 2;
    if (h->pg_backoff > UM_HISTORY_PG_BACKOFF_MAX)
        h->pg_backoff = UM_HISTORY_PG_BACKOFF_MAX;
    h->pg_retry_at = history_mono_sec() + (time_t)h->pg_backoff;
    return ok;
}

/* One record in the open transaction; false with why set. */
static bool
history_pg_insert(struct um_history *h, const struct um_history_rec *r, char *why, size_t len)
{
    char ts[24], extra[24], dkal[4], spal[4], pct[16], rua[4], adkim[2], aspf[2], t[2], psd[2];
    char id[24], idx[24];
    const char *v[26];
    PGresult *res;
    int i = 0;

    (void)snprintf(ts, sizeof(ts), "%lld", (long long)r->time);
    (void)snprintf(extra, sizeof(extra), "%zu", r->ndkim_extra);
    (void)snprintf(dkal, sizeof(dkal), "%d", r->dkim_aligned ? 1 : 0);
    (void)snprintf(spal, sizeof(spal), "%d", r->spf_aligned ? 1 : 0);
    (void)snprintf(pct, sizeof(pct), "%d", r->pct);
    (void)snprintf(rua, sizeof(rua), "%d", r->rua ? 1 : 0);
    adkim[0] = r->adkim, aspf[0] = r->aspf, t[0] = r->t, psd[0] = r->psd;
    adkim[1] = aspf[1] = t[1] = psd[1] = '\0';
    v[i++] = ts;
    v[i++] = r->source_ip;
    v[i++] = r->header_from;
    v[i++] = r->envelope_from;
    v[i++] = r->envelope_to;
    v[i++] = um_auth_name(r->spf_result);
    v[i++] = r->spf_scope == UM_HISTORY_SPF_HELO ? "helo" : "mfrom";
    v[i++] = r->spf_domain;
    v[i++] = extra;
    v[i++] = um_dmarc_result_name(r->dmarc_result);
    v[i++] = dkal;
    v[i++] = spal;
    v[i++] = r->method == UM_DMARC_METHOD_PSL ? "psl" : "treewalk";
    v[i++] = r->policy_domain;
    v[i++] = history_policy_word(r->p);
    v[i++] = history_policy_word(r->sp);
    v[i++] = history_policy_word(r->np);
    v[i++] = r->adkim != 0 ? adkim : NULL;
    v[i++] = r->aspf != 0 ? aspf : NULL;
    v[i++] = pct;
    v[i++] = r->t != 0 ? t : NULL;
    v[i++] = r->psd != 0 ? psd : NULL;
    v[i++] = rua;
    v[i++] = r->disposition == UM_DMARC_POLICY_REJECT       ? "reject"
             : r->disposition == UM_DMARC_POLICY_QUARANTINE ? "quarantine"
                                                            : "none";
    v[i++] = um_history_override_name(r->override);
    v[i++] = r->override_comment;
    res = PQexecParams(h->pg, history_pg_ins_eval, i, NULL, v, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        (void)history_pg_errmsg(h->pg, why, len);
        PQclear(res);
        return false;
    }
    (void)snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    for (size_t k = 0; k < r->ndkim && k < UM_HISTORY_MAX_DKIM; k++) {
        const char *dv[5] = {id, idx, r->dkim[k].domain, r->dkim[k].selector,
                             um_auth_name(r->dkim[k].result)};
        (void)snprintf(idx, sizeof(idx), "%zu", k);
        res = PQexecParams(h->pg, history_pg_ins_dkim, 5, NULL, dv, NULL, NULL, 0);
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            (void)history_pg_errmsg(h->pg, why, len);
            PQclear(res);
            return false;
        }
        PQclear(res);
    }
    return true;
}

/* As history_sqlite_batch(), into PostgreSQL; (re)connects first. A connection that broke
 * is dropped, so the next batch reconnects. */
static bool
history_pg_batch(struct um_history *h, struct um_history_rec **batch, size_t n)
{
    char why[500] = "";
    const char *what = NULL; /* NULL: (re)connecting, why says how */
    bool ok = false;

    if (history_pg_connect(h, why, sizeof(why)) == 1) {
        what = "begin";
        if (history_pg_exec(h->pg, "BEGIN", PGRES_COMMAND_OK, why, sizeof(why))) {
            what = "insert";
            ok = true;
            for (size_t i = 0; i < n && ok; i++)
                ok = history_pg_insert(h, batch[i], why, sizeof(why));
            if (ok) {
                what = "commit";
                ok = history_pg_exec(h->pg, "COMMIT", PGRES_COMMAND_OK, why, sizeof(why));
            }
            if (!ok) {
                char ignore[8];
                (void)history_pg_exec(h->pg, "ROLLBACK", PGRES_COMMAND_OK, ignore, sizeof(ignore));
            }
        }
        if (!ok && PQstatus(h->pg) != CONNECTION_OK) {
            PQfinish(h->pg);
            h->pg = NULL;
        }
    }
    if (ok)
        return true;
    if (what == NULL)
        (void)snprintf(h->err_msg, sizeof(h->err_msg), "history: %s: %s (%zu records lost)",
                       h->path, why, n);
    else
        (void)snprintf(h->err_msg, sizeof(h->err_msg), "history: %s: %s: %s (%zu records lost)",
                       h->path, what, why, n);
    return false;
}

static bool
history_write_batch(struct um_history *h, struct um_history_rec **batch, size_t n)
{
    if (h->store == UM_HISTORY_STORE_POSTGRESQL)
        return history_pg_batch(h, batch, n);
    return history_sqlite_batch(h, batch, n);
}

static bool
history_past(const struct timespec *deadline)
{
    struct timespec now;

    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec
           || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static void *
history_writer(void *arg)
{
    struct um_history *h = arg;
    struct um_history_rec *batch[UM_HISTORY_BATCH];

    pthread_mutex_lock(&h->lock);
    for (;;) {
        size_t n = 0;
        bool ok;

        while (h->count == 0 && !h->stopping)
            pthread_cond_wait(&h->wake, &h->lock);
        if (h->count == 0 || (h->stopping && history_past(&h->deadline)))
            break;
        while (n < UM_HISTORY_BATCH && h->count > 0) {
            batch[n++] = h->ring[h->head];
            h->ring[h->head] = NULL;
            h->head = (h->head + 1) % h->cap;
            h->count--;
        }
        pthread_mutex_unlock(&h->lock);
        ok = history_write_batch(h, batch, n);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        history_episode(h, !ok, n);
        pthread_mutex_lock(&h->lock);
        if (ok) {
            h->st.written += n;
        } else {
            h->st.failed += n;
            h->st.errors++;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static enum um_status
history_db_error(struct um_history *h, const char *what, struct um_error *err)
{
    return um_error_set(err, UM_EIO, "history: %s: %s: %s", h->path, what,
                        h->db != NULL ? sqlite3_errmsg(h->db) : "out of memory");
}

/* Opens the file, sets WAL, creates or checks the schema, prepares the statements. */
static enum um_status
history_db_open(struct um_history *h, struct um_error *err)
{
    sqlite3_stmt *st = NULL;
    const char *mode = "";
    int version = -1;

    /* Every inbound sender's IP and domain: the file is created 0600 whatever the umask, and
     * SQLite gives the -wal and -shm files it creates the database file's mode. An existing
     * file keeps its mode (the operator's choice). An empty file is a new database to
     * SQLite. URIs ("file:...") are the caller's business. */
    if (strncmp(h->path, "file:", 5) != 0) {
        int fd = open(h->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            (void)fchmod(fd, 0600); /* O_CREAT's mode passes through umask: only fewer bits */
            (void)close(fd);
        }
    }
    if (sqlite3_open_v2(h->path, &h->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL)
        != SQLITE_OK)
        return history_db_error(h, "open", err);
    /* SQLite falls back to read-only when it cannot open for writing: refuse that here, not
     * at the first insert. */
    if (sqlite3_db_readonly(h->db, "main") == 1)
        return um_error_set(err, UM_EIO, "history: %s: the database is read-only", h->path);
    (void)sqlite3_busy_timeout(h->db, UM_HISTORY_BUSY_MS);
    if (sqlite3_prepare_v2(h->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
        return history_db_error(h, "journal_mode", err);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        mode = (const char *)sqlite3_column_text(st, 0);
    if (strcmp(mode, "wal") != 0) {
        (void)sqlite3_finalize(st);
        return history_db_error(h, "cannot switch to WAL mode", err);
    }
    (void)sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_exec(h->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK
        || sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return history_db_error(h, "setup", err);
    if (sqlite3_exec(h->db, history_schema, NULL, NULL, NULL) != SQLITE_OK
        || sqlite3_prepare_v2(h->db, "SELECT max(version) FROM schema_version", -1, &st, NULL)
               != SQLITE_OK) {
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        return history_db_error(h, "create schema", err);
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        version = sqlite3_column_int(st, 0);
    (void)sqlite3_finalize(st);
    if (version > UM_HISTORY_SCHEMA_VERSION) {
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        return um_error_set(err, UM_EIO,
                            "history: %s: schema version %d is newer than this program's %d",
                            h->path, version, UM_HISTORY_SCHEMA_VERSION);
    }
    if (version < 0
        && sqlite3_exec(h->db, "INSERT INTO schema_version (version) VALUES (1)", NULL, NULL, NULL)
               != SQLITE_OK) {
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        return history_db_error(h, "schema version", err);
    }
    if (sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return history_db_error(h, "create schema", err);
    if (sqlite3_prepare_v2(h->db, history_ins_eval, -1, &h->ins_eval, NULL) != SQLITE_OK
        || sqlite3_prepare_v2(h->db, history_ins_dkim, -1, &h->ins_dkim, NULL) != SQLITE_OK)
        return history_db_error(h, "prepare", err);
    return UM_OK;
}

static void
history_free(struct um_history *h)
{
    if (h == NULL)
        return;
    PQfinish(h->pg);
    free(h->conninfo);
    (void)sqlite3_finalize(h->ins_eval);
    (void)sqlite3_finalize(h->ins_dkim);
    if (h->db != NULL)
        (void)sqlite3_close(h->db);
    for (size_t i = 0; h->ring != NULL && i < h->count; i++)
        free(h->ring[(h->head + i) % h->cap]);
    free(h->ring);
    free(h->path);
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

enum um_status
um_history_open(const char *path, size_t queue_max, struct um_history **out, struct um_error *err)
{
    return um_history_open_store(UM_HISTORY_STORE_SQLITE, path, queue_max, out, err);
}

/* PostgreSQL at open: connected and the schema checked, or an error. */
static enum um_status
history_pg_open(struct um_history *h, struct um_error *err)
{
    char why[500];
    int rc = history_pg_connect(h, why, sizeof(why));

    if (rc == 1)
        return UM_OK;
    return um_error_set(err, UM_EIO, "history: postgresql: %s", why);
}

enum um_status
um_history_open_store(enum um_history_store store, const char *path, size_t queue_max,
                      struct um_history **out, struct um_error *err)
{
    struct um_history *h;
    pthread_condattr_t ca;
    enum um_status st;

    if (out == NULL)
        return um_error_set(err, UM_EINVAL, "history: no output");
    *out = NULL;
    if (store != UM_HISTORY_STORE_SQLITE && store != UM_HISTORY_STORE_POSTGRESQL)
        return um_error_set(err, UM_EINVAL, "history: unknown store %d", (int)store);
    if (path == NULL || path[0] == '\0')
        return um_error_set(err, UM_EINVAL, "history: empty %s",
                            store == UM_HISTORY_STORE_SQLITE ? "database path"
                                                             : "PostgreSQL connection string");
    if (queue_max == 0 || queue_max > UM_HISTORY_QUEUE_MAX)
        return um_error_set(err, UM_EINVAL, "history: queue size %zu not in 1..%d", queue_max,
                            UM_HISTORY_QUEUE_MAX);
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return um_error_set(err, UM_ENOMEM, "history: out of memory");
    h->err_interval = UM_HISTORY_ERROR_INTERVAL;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    h->cap = queue_max;
    h->store = store;
    if ((h->path = strdup(store == UM_HISTORY_STORE_SQLITE ? path : "postgresql")) == NULL
        || (store == UM_HISTORY_STORE_POSTGRESQL && (h->conninfo = strdup(path)) == NULL)
        || (h->ring = calloc(queue_max, sizeof(*h->ring))) == NULL) {
        history_free(h);
        return um_error_set(err, UM_ENOMEM, "history: out of memory");
    }
    st = store == UM_HISTORY_STORE_SQLITE ? history_db_open(h, err) : history_pg_open(h, err);
    if (st != UM_OK) {
        history_free(h);
        return st;
    }
    if (pthread_create(&h->writer, NULL, history_writer, h) != 0) {
        history_free(h);
        return um_error_set(err, UM_ETEMP, "history: cannot start the writer thread");
    }
    *out = h;
    return UM_OK;
}

void
um_history_error_interval(struct um_history *h, unsigned seconds)
{
    pthread_mutex_lock(&h->lock);
    h->err_interval = seconds;
    pthread_mutex_unlock(&h->lock);
}

void
um_history_on_error(struct um_history *h, um_history_error_fn *fn, void *arg)
{
    pthread_mutex_lock(&h->lock);
    h->on_error = fn;
    h->on_error_arg = arg;
    pthread_mutex_unlock(&h->lock);
}

bool
um_history_record(struct um_history *h, const struct um_history_rec *rec)
{
    struct um_history_rec *copy = malloc(sizeof(*copy));
    bool ok = false;

    if (copy != NULL)
        memcpy(copy, rec, sizeof(*copy));
    pthread_mutex_lock(&h->lock);
    if (copy != NULL && !h->stopping && h->count < h->cap) {
        h->ring[(h->head + h->count) % h->cap] = copy;
        h->count++;
        ok = true;
        pthread_cond_signal(&h->wake);
    } else {
        h->st.dropped++;
    }
    pthread_mutex_unlock(&h->lock);
    if (!ok)
        free(copy);
    return ok;
}

void
um_history_stats(struct um_history *h, struct um_history_stats *out)
{
    pthread_mutex_lock(&h->lock);
    *out = h->st;
    out->queued = h->count;
    pthread_mutex_unlock(&h->lock);
}

void
um_history_close(struct um_history *h, unsigned drain_ms, struct um_history_stats *final)
{
    size_t left;

    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    (void)clock_gettime(CLOCK_MONOTONIC, &h->deadline);
    h->deadline.tv_sec += drain_ms / 1000;
    h->deadline.tv_nsec += (long)(drain_ms % 1000) * 1000000L;
    if (h->deadline.tv_nsec >= 1000000000L) {
        h->deadline.tv_sec++;
        h->deadline.tv_nsec -= 1000000000L;
    }
    h->stopping = true;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->writer, NULL);
    history_episode_flush(h);
    left = h->count;
    h->st.dropped += left;
    if (left > 0) {
        char msg[512];
        (void)snprintf(msg, sizeof(msg),
                       "history: %s: %zu records not written within %u ms of shutdown", h->path,
                       left, drain_ms);
        history_report(h, msg);
    }
    if (final != NULL) {
        *final = h->st;
        final->queued = 0;
    }
    history_free(h);
}
