/*
 * report.c - RFC 9990 aggregate reports from the history database
 *
 * Design note. SQLite does the aggregation: one GROUP BY over the period's evaluations,
 * whose key includes the DKIM results folded into one string by a correlated
 * group_concat (ordered by signature index), so a report costs one scan of the
 * (policy_domain, ts) index and memory proportional to the number of distinct rows, not of
 * messages. The XML is printed by hand into a growable buffer (it is write-only and its
 * shape is fixed); every string from the database is escaped, and bytes outside printable
 * ASCII (possible in hostile d= or HELO names) become '?', so the document is always
 * well-formed. IPv6 source addresses are written in full eight-group form because the
 * RFC 9990 schema's IPAddress pattern accepts no "::".
 *
 * Sending state lives in reports_sent (policy_domain, begin) -> state; "sent", "norua" and
 * "skipped" are final, "pending" is retried. The Report-ID is derived from (receiver,
 * policy domain, begin) so a retry carries the same id, which lets a receiver discard a
 * duplicate should sendmail have queued a message but failed afterwards.
 *
 * The rua addresses are re-read from DNS at report time rather than stored per message:
 * the evaluation path (lib/dmarc) exposes no rua text, the daily fetch is one query per
 * domain, and the domain owner's current addresses are the ones that want the report.
 *
 * The store is SQLite or the PostgreSQL database several MX hosts share (lib/history.h). The
 * few queries above run through rq_*(), which binds typed parameters (SQLite) or sends them
 * as text (libpq) and reads columns as text or integers; each query has a PostgreSQL text
 * written to give the same rows in the same order (bytewise collation, NULLs first), so the
 * XML is identical for identical rows.
 *
 * The mail goes out through lib/submit (SMTP to a relay, or a sendmail binary), one attempt
 * per run: what fails stays pending for the next run, which is the retry.
 */
#define _DEFAULT_SOURCE     /* strcasecmp, strncasecmp */
#define _XOPEN_SOURCE   700 /* strptime */
#include "report.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>
#include <zlib.h>

#include "buf.h"
#include "history.h"

struct rua {
    char addr[320];
    char domain[256];
    uint64_t limit;
};

struct period {
    char domain[UM_HISTORY_DOMAIN_MAX];
    int64_t begin;
};

struct report_run {
    const struct um_report_opts *o;
    struct um_report_stats *st;
    sqlite3 *db; /* one of db and pg is open */
    PGconn *pg;
    char receiver[256];
    char pgerr[300];
};

/* A query's parameter: text when s is not NULL, else the integer i. */
struct rparam {
    const char *s;
    int64_t i;
};

/* One query over either store: rows are read with rq_step() and rq_text()/rq_int(). */
struct rq {
    struct report_run *r;
    sqlite3_stmt *st;
    PGresult *res;
    int row, nrows;
};

static const char report_schema[] = "CREATE TABLE IF NOT EXISTS reports_sent ("
                                    " policy_domain TEXT NOT NULL,"
                                    " begin INTEGER NOT NULL,"
                                    " state TEXT NOT NULL,"
                                    " attempts INTEGER NOT NULL DEFAULT 0,"
                                    " last_error TEXT NOT NULL DEFAULT '',"
                                    " updated INTEGER NOT NULL,"
                                    " PRIMARY KEY (policy_domain, begin))";
static const char report_pg_schema[] = "CREATE TABLE IF NOT EXISTS reports_sent ("
                                       " policy_domain TEXT NOT NULL,"
                                       " begin BIGINT NOT NULL,"
                                       " state TEXT NOT NULL,"
                                       " attempts INTEGER NOT NULL DEFAULT 0,"
                                       " last_error TEXT NOT NULL DEFAULT '',"
                                       " updated BIGINT NOT NULL,"
                                       " PRIMARY KEY (policy_domain, begin))";
/* Session advisory lock: one `unimilter report` at a time on a shared database. */
#define REPORT_PG_LOCK "7586132"

/* --- small helpers ------------------------------------------------------------------------ */

/* XML text: escaped; bytes outside printable ASCII become '?'. */
static void
rb_xml(struct um_buf *b, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&':
            um_buf_str(b, "&amp;");
            break;
        case '<':
            um_buf_str(b, "&lt;");
            break;
        case '>':
            um_buf_str(b, "&gt;");
            break;
        case '"':
            um_buf_str(b, "&quot;");
            break;
        case '\'':
            um_buf_str(b, "&apos;");
            break;
        default:
            um_buf_add(b, c >= 0x20 && c < 0x7f ? (const char *)s : "?", 1);
        }
    }
}

static void
rb_elem(struct um_buf *b, const char *indent, const char *name, const char *val)
{
    um_buf_fmt(b, "%s<%s>", indent, name);
    rb_xml(b, val);
    um_buf_fmt(b, "</%s>\n", name);
}

static void UM_PRINTF(2, 3) report_log(const struct report_run *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (r->o->log == NULL)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    r->o->log(r->o->log_arg, line);
}

/* --- the store: SQLite or PostgreSQL, the few queries this file needs ----------------------- */

static const char *
rdb_errmsg(struct report_run *r)
{
    size_t n;

    if (r->pg == NULL)
        return r->db != NULL ? sqlite3_errmsg(r->db) : "out of memory";
    (void)snprintf(r->pgerr, sizeof(r->pgerr), "%s", PQerrorMessage(r->pg));
    n = strlen(r->pgerr);
    while (n > 0 && (r->pgerr[n - 1] == '\n' || r->pgerr[n - 1] == '\r'))
        r->pgerr[--n] = '\0';
    return r->pgerr;
}

/* NOTICEs ("relation ... already exists, skipping") are not failures: dropped. */
static void
report_pg_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Runs a statement that returns no rows; true on success. */
static bool
rdb_exec(struct report_run *r, const char *lite, const char *pg)
{
    PGresult *res;
    bool ok;

    if (r->pg == NULL)
        return sqlite3_exec(r->db, lite, NULL, NULL, NULL) == SQLITE_OK;
    res = PQexec(r->pg, pg);
    ok = res != NULL
         && (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    return ok;
}

/* Prepares and runs (PostgreSQL) or prepares and binds (SQLite); false on error. */
static bool
rq_open(struct report_run *r, struct rq *q, const char *lite, const char *pg,
        const struct rparam *pv, int n)
{
    memset(q, 0, sizeof(*q));
    q->r = r;
    q->row = -1;
    if (r->pg == NULL) {
        if (sqlite3_prepare_v2(r->db, lite, -1, &q->st, NULL) != SQLITE_OK)
            return false;
        for (int i = 0; i < n; i++) {
            if (pv[i].s != NULL)
                (void)sqlite3_bind_text(q->st, i + 1, pv[i].s, -1, SQLITE_STATIC);
            else
                (void)sqlite3_bind_int64(q->st, i + 1, pv[i].i);
        }
        return true;
    } else {
        char num[4][24];
        const char *v[8];
        int k = 0;
        if (n > 8)
            return false;
        for (int i = 0; i < n; i++) {
            if (pv[i].s != NULL) {
                v[i] = pv[i].s;
            } else {
                if (k == 4)
                    return false;
                (void)snprintf(num[k], sizeof(num[k]), "%lld", (long long)pv[i].i);
                v[i] = num[k++];
            }
        }
        q->res = PQexecParams(r->pg, pg, n, NULL, v, NULL, NULL, 0);
        if (q->res == NULL
            || (PQresultStatus(q->res) != PGRES_TUPLES_OK
                && PQresultStatus(q->res) != PGRES_COMMAND_OK))
            return false;
        q->nrows = PQntuples(q->res);
        return true;
    }
}

/* 1 a row, 0 no more, -1 error. */
static int
rq_step(struct rq *q)
{
    if (q->st != NULL) {
        int rc = sqlite3_step(q->st);
        return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    }
    if (q->res == NULL)
        return -1;
    if (q->row + 1 >= q->nrows)
        return 0;
    q->row++;
    return 1;
}

static bool
rq_isnull(const struct rq *q, int i)
{
    if (q->st != NULL)
        return sqlite3_column_type(q->st, i) == SQLITE_NULL;
    return PQgetisnull(q->res, q->row, i) != 0;
}

static const char *
rq_text(const struct rq *q, int i)
{
    const char *s;

    if (q->st != NULL)
        s = (const char *)sqlite3_column_text(q->st, i);
    else
        s = PQgetisnull(q->res, q->row, i) ? NULL : PQgetvalue(q->res, q->row, i);
    return s != NULL ? s : "";
}

static int64_t
rq_int(const struct rq *q, int i)
{
    if (q->st != NULL)
        return sqlite3_column_int64(q->st, i);
    return strtoll(rq_text(q, i), NULL, 10);
}

/* Rows changed by the DML statement just run. */
static uint64_t
rq_changes(const struct rq *q)
{
    if (q->st != NULL)
        return (uint64_t)sqlite3_changes(q->r->db);
    return strtoull(PQcmdTuples(q->res), NULL, 10);
}

static void
rq_close(struct rq *q)
{
    (void)sqlite3_finalize(q->st);
    PQclear(q->res);
    q->st = NULL;
    q->res = NULL;
}

/* FNV-1a 64: a stable, alphanumeric report id for (receiver, domain, begin). */
static void
report_id(const struct report_run *r, const struct period *p, char out[17])
{
    uint64_t h = 1469598103934665603ULL;
    char key[600];
    int n = snprintf(key, sizeof(key), "%s!%s!%lld", r->receiver, p->domain, (long long)p->begin);

    for (int i = 0; i < n && i < (int)sizeof(key); i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    (void)snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* RFC 9990 schema: IPv4 dotted, IPv6 as eight groups (no "::"). */
static void
report_ip(const char *in, char *out, size_t len)
{
    unsigned char a[16];

    if (inet_pton(AF_INET6, in, a) == 1) {
        (void)snprintf(out, len, "%x:%x:%x:%x:%x:%x:%x:%x", a[0] << 8 | a[1], a[2] << 8 | a[3],
                       a[4] << 8 | a[5], a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
                       a[12] << 8 | a[13], a[14] << 8 | a[15]);
        return;
    }
    (void)snprintf(out, len, "%s", in);
}

static const char *
report_spf_word(const char *w)
{
    static const char *const ok[] = {"none",     "neutral",   "pass",     "fail",
                                     "softfail", "temperror", "permerror"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(w, ok[i]) == 0)
            return ok[i];
    return "permerror";
}

static const char *
report_dkim_word(const char *w)
{
    static const char *const ok[] = {"none",    "pass",      "fail",     "policy",
                                     "neutral", "temperror", "permerror"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(w, ok[i]) == 0)
            return ok[i];
    return strcmp(w, "softfail") == 0 ? "fail" : "permerror";
}

/* --- rua ------------------------------------------------------------------------------------ */

enum um_status
um_report_rua_parse(struct um_str uri, char *addr, size_t addrlen, uint64_t *limit,
                    struct um_error *err)
{
    size_t i = 0, n = 0, end = uri.len;
    const char *bang;

    *limit = 0;
    while (uri.len > 0 && (uri.p[0] == ' ' || uri.p[0] == '\t')) {
        uri.p++;
        uri.len--;
    }
    while (uri.len > 0 && (uri.p[uri.len - 1] == ' ' || uri.p[uri.len - 1] == '\t'))
        uri.len--;
    end = uri.len;
    if (uri.len < 7 || strncasecmp(uri.p, "mailto:", 7) != 0)
        return um_error_set(err, UM_ENOENT, "rua: not a mailto: URI");
    bang = memchr(uri.p, '!', uri.len);
    if (bang != NULL) {
        size_t j = (size_t)(bang - uri.p) + 1;
        uint64_t v = 0;
        end = (size_t)(bang - uri.p);
        if (j >= uri.len)
            return um_error_set(err, UM_EINVAL, "rua: empty size limit");
        for (; j < uri.len && uri.p[j] >= '0' && uri.p[j] <= '9'; j++) {
            if (v > UINT64_MAX / 16)
                return um_error_set(err, UM_EINVAL, "rua: size limit too large");
            v = v * 10 + (uint64_t)(uri.p[j] - '0');
        }
        if (j < uri.len) {
            static const char units[] = "kmgt";
            const char *u = strchr(units, um_ascii_tolower((unsigned char)uri.p[j]));
            if (u == NULL || uri.p[j] == '\0' || j + 1 != uri.len)
                return um_error_set(err, UM_EINVAL, "rua: bad size limit");
            for (long k = 0; k <= u - units; k++)
                v *= 1024;
        }
        *limit = v;
    }
    /* RFC 3986 percent-decoding of the address (e.g. %21 for '!'). */
    for (i = 7; i < end; i++) {
        char c = uri.p[i];
        if (c == '%') {
            int hi = i + 2 < end ? um_hexval(uri.p[i + 1]) : -1;
            int lo = i + 2 < end ? um_hexval(uri.p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return um_error_set(err, UM_EINVAL, "rua: bad percent escape");
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f || c == ',' || c == '<' || c == '>'
            || c == '?')
            return um_error_set(err, UM_EINVAL, "rua: bad byte in the address");
        if (n + 1 >= addrlen)
            return um_error_set(err, UM_EINVAL, "rua: address too long");
        addr[n++] = c;
    }
    addr[n] = '\0';
    {
        const char *at = strrchr(addr, '@');
        if (at == NULL || at == addr || at[1] == '\0' || strchr(addr, '@') != at)
            return um_error_set(err, UM_EINVAL, "rua: not one address");
        /* The domain is a host name: letters, digits, '-' and '.', no empty label. */
        for (const char *d = at + 1; *d != '\0'; d++) {
            bool ok = (*d >= 'a' && *d <= 'z') || (*d >= 'A' && *d <= 'Z')
                      || (*d >= '0' && *d <= '9') || *d == '-'
                      || (*d == '.' && d != at + 1 && d[1] != '\0' && d[1] != '.');
            if (!ok)
                return um_error_set(err, UM_EINVAL, "rua: bad domain in the address");
        }
        /* Quotes and backslashes would need quoting in the mail headers we write. */
        if (strpbrk(addr, "\"\\") != NULL)
            return um_error_set(err, UM_EINVAL, "rua: bad byte in the address");
    }
    return UM_OK;
}

/* Fills rua[] from TXT _dmarc.<domain>. Returns 1 with *n set, 0 no rua (or no record),
 * -1 temporary failure (why in reason). */
static int
report_fetch_rua(struct report_run *r, const char *domain, struct rua *rua, size_t *n, char *reason,
                 size_t rlen)
{
    struct um_dns_txt txt;
    struct um_error err = {0};
    char name[300];
    const struct um_str *rec = NULL;
    int ret = 0;

    *n = 0;
    (void)snprintf(name, sizeof(name), "_dmarc.%s", domain);
    if (r->o->txt(r->o->dns_arg, name, &txt, &err) != UM_OK) {
        (void)snprintf(reason, rlen, "%s", err.msg);
        r->o->txt_fini(r->o->dns_arg, &txt);
        return -1;
    }
    if (txt.result == UM_DNS_TEMPFAIL) {
        (void)snprintf(reason, rlen, "%s: %s", name, txt.reason);
        r->o->txt_fini(r->o->dns_arg, &txt);
        return -1;
    }
    for (size_t i = 0; txt.result == UM_DNS_OK && i < txt.n; i++) {
        struct um_dmarc_record pr;
        if (um_dmarc_record_parse(txt.rec[i], &pr, NULL) != UM_OK)
            continue;
        if (rec != NULL) { /* RFC 9989 4.10: several records count as none */
            rec = NULL;
            break;
        }
        rec = &txt.rec[i];
    }
    (void)snprintf(reason, rlen, "no DMARC record at %s", name);
    /* The tag list: tag=value pairs separated by ';'. */
    for (size_t i = 0; rec != NULL && i < rec->len;) {
        size_t j = i, eq;
        while (j < rec->len && rec->p[j] != ';')
            j++;
        eq = i;
        while (eq < j && rec->p[eq] != '=')
            eq++;
        {
            size_t ts = i, te = eq;
            while (ts < te && (rec->p[ts] == ' ' || rec->p[ts] == '\t'))
                ts++;
            while (te > ts && (rec->p[te - 1] == ' ' || rec->p[te - 1] == '\t'))
                te--;
            if (eq < j && te - ts == 3 && strncasecmp(rec->p + ts, "rua", 3) == 0) {
                size_t u = eq + 1;
                (void)snprintf(reason, rlen, "no usable mailto: in rua= of %s", name);
                while (u < j && *n < UM_REPORT_MAX_RUA) {
                    size_t ue = u;
                    uint64_t lim;
                    while (ue < j && rec->p[ue] != ',')
                        ue++;
                    if (um_report_rua_parse((struct um_str){rec->p + u, ue - u}, rua[*n].addr,
                                            sizeof(rua[*n].addr), &lim, NULL)
                        == UM_OK) {
                        rua[*n].limit = lim;
                        (void)snprintf(rua[*n].domain, sizeof(rua[*n].domain), "%s",
                                       strrchr(rua[*n].addr, '@') + 1);
                        um_ascii_lower(rua[*n].domain, rua[*n].domain, strlen(rua[*n].domain));
                        (*n)++;
                        ret = 1;
                    }
                    u = ue + 1;
                }
            }
        }
        i = j + 1;
    }
    r->o->txt_fini(r->o->dns_arg, &txt);
    return ret;
}

/* Same tree: equal, or one is a subdomain of the other. XXX: an approximation of "same
 * organizational domain" that needs no PSL; it errs towards asking DNS for authorization. */
static bool
report_same_tree(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la == lb)
        return strcasecmp(a, b) == 0;
    if (la < lb) {
        const char *t = a;
        size_t tl = la;
        a = b;
        la = lb;
        b = t;
        lb = tl;
    }
    return a[la - lb - 1] == '.' && strcasecmp(a + la - lb, b) == 0;
}

/* RFC 7489 7.1 / RFC 9990: 1 authorized, 0 not, -1 temporary failure. */
static int
report_external_ok(struct report_run *r, const char *policy_domain, const char *rua_domain)
{
    struct um_dns_txt txt;
    struct um_error err = {0};
    char name[600];
    int ok = 0;

    if (report_same_tree(policy_domain, rua_domain))
        return 1;
    if ((size_t)snprintf(name, sizeof(name), "%s._report._dmarc.%s", policy_domain, rua_domain)
        > UM_DNS_NAME_MAX)
        return 0;
    if (r->o->txt(r->o->dns_arg, name, &txt, &err) != UM_OK) {
        r->o->txt_fini(r->o->dns_arg, &txt);
        return -1;
    }
    if (txt.result == UM_DNS_TEMPFAIL)
        ok = -1;
    for (size_t i = 0; txt.result == UM_DNS_OK && i < txt.n; i++) {
        struct um_str v = txt.rec[i];
        while (v.len > 0 && (v.p[0] == ' ' || v.p[0] == '\t')) {
            v.p++;
            v.len--;
        }
        if (v.len >= 8 && strncasecmp(v.p, "v=DMARC1", 8) == 0
            && (v.len == 8 || v.p[8] == ';' || v.p[8] == ' ' || v.p[8] == '\t'))
            ok = 1;
    }
    r->o->txt_fini(r->o->dns_arg, &txt);
    return ok;
}

/* --- the XML -------------------------------------------------------------------------------- */

static enum um_status
report_sql_error(struct report_run *r, const char *what, struct um_error *err)
{
    return um_error_set(err, UM_EIO, "report: %s: %s: %s",
                        r->pg != NULL ? "postgresql" : r->o->db_path, what, rdb_errmsg(r));
}

static const char report_rows_sql[] =
    "SELECT e.source_ip, e.header_from, e.envelope_from, e.disposition, e.dkim_aligned,"
    " e.spf_aligned, e.override, e.override_comment, e.spf_domain, e.spf_scope, e.spf_result,"
    " (SELECT group_concat(d.domain || char(31) || d.selector || char(31) || d.result,"
    "   char(30)) FROM (SELECT * FROM evaluation_dkim WHERE eval_id = e.id ORDER BY idx) d),"
    " count(*)"
    " FROM evaluations e WHERE e.policy_domain = ?1 AND e.ts >= ?2 AND e.ts < ?3 AND e.rua"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 ORDER BY 13 DESC, 1, 2, 3, 12";

static const char report_policy_sql[] =
    "SELECT p, sp, np, adkim, aspf, t, psd, method FROM evaluations"
    " WHERE policy_domain = ?1 AND ts >= ?2 AND ts < ?3 AND rua ORDER BY ts DESC, id DESC"
    " LIMIT 1";

/* PostgreSQL: the same results. The DKIM string is computed per row before grouping (a
 * correlated subquery may not use an ungrouped column there), string_agg for group_concat,
 * and the order made SQLite's: bytewise text, NULL (no DKIM) first. */
static const char report_pg_rows_sql[] =
    "SELECT e.source_ip, e.header_from, e.envelope_from, e.disposition, e.dkim_aligned,"
    " e.spf_aligned, e.override, e.override_comment, e.spf_domain, e.spf_scope, e.spf_result,"
    " e.dk, count(*) AS n FROM (SELECT v.*, (SELECT string_agg(d.domain || chr(31) ||"
    " d.selector || chr(31) || d.result, chr(30) ORDER BY d.idx) FROM evaluation_dkim d"
    " WHERE d.eval_id = v.id) AS dk FROM evaluations v WHERE v.policy_domain = $1 AND"
    " v.ts >= $2::bigint AND v.ts < $3::bigint AND v.rua <> 0) e"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 ORDER BY n DESC,"
    " e.source_ip COLLATE \"C\", e.header_from COLLATE \"C\", e.envelope_from COLLATE \"C\","
    " e.dk COLLATE \"C\" NULLS FIRST";

static const char report_pg_policy_sql[] =
    "SELECT p, sp, np, adkim, aspf, t, psd, method FROM evaluations"
    " WHERE policy_domain = $1 AND ts >= $2::bigint AND ts < $3::bigint AND rua <> 0"
    " ORDER BY ts DESC, id DESC LIMIT 1";

static void
report_dkim_xml(struct um_buf *b, const char *list)
{
    /* d \x1f s \x1f result, records joined by \x1e. */
    while (list != NULL && *list != '\0') {
        const char *end = strchr(list, '\x1e');
        size_t len = end != NULL ? (size_t)(end - list) : strlen(list);
        char one[600], *s, *res;

        (void)snprintf(one, sizeof(one), "%.*s", (int)len, list);
        s = strchr(one, '\x1f');
        res = s != NULL ? strchr(s + 1, '\x1f') : NULL;
        if (res != NULL) {
            *s++ = '\0';
            *res++ = '\0';
            um_buf_str(b, "      <dkim>\n");
            rb_elem(b, "        ", "domain", one);
            rb_elem(b, "        ", "selector", s);
            rb_elem(b, "        ", "result", report_dkim_word(res));
            um_buf_str(b, "      </dkim>\n");
        }
        list = end != NULL ? end + 1 : NULL;
    }
}

static enum um_status
report_xml(struct report_run *r, const struct period *p, const char *rid, struct um_buf *b,
           unsigned *nrec, struct um_error *err)
{
    const struct rparam pv[] = {{.s = p->domain}, {.i = p->begin}, {.i = p->begin + UM_REPORT_DAY}};
    struct rq q;
    enum um_status ret = UM_OK;

    *nrec = 0;
    um_buf_str(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    um_buf_str(b, "<feedback xmlns=\"" UM_REPORT_NS "\">\n  <report_metadata>\n");
    rb_elem(b, "    ", "org_name", r->o->org_name);
    rb_elem(b, "    ", "email", r->o->email);
    rb_elem(b, "    ", "report_id", rid);
    um_buf_fmt(b,
               "    <date_range>\n      <begin>%lld</begin>\n      <end>%lld</end>\n    "
               "</date_range>\n  </report_metadata>\n",
               (long long)p->begin, (long long)(p->begin + UM_REPORT_DAY - 1));

    if (!rq_open(r, &q, report_policy_sql, report_pg_policy_sql, pv, 3)) {
        ret = report_sql_error(r, "select policy", err);
        rq_close(&q);
        return ret;
    }
    um_buf_str(b, "  <policy_published>\n");
    rb_elem(b, "    ", "domain", p->domain);
    if (rq_step(&q) == 1) {
        static const char *const tags[] = {"p", "sp", "np", "adkim", "aspf", "t", "psd"};
        for (int i = 0; i < 7; i++) {
            if (!rq_isnull(&q, i))
                rb_elem(b, "    ", tags[i], rq_text(&q, i));
        }
        rb_elem(b, "    ", "discovery_method",
                strcmp(rq_text(&q, 7), "psl") == 0 ? "psl" : "treewalk");
    }
    rq_close(&q);
    um_buf_str(b, "  </policy_published>\n");

    if (!rq_open(r, &q, report_rows_sql, report_pg_rows_sql, pv, 3)) {
        ret = report_sql_error(r, "select rows", err);
        rq_close(&q);
        return ret;
    }
    for (;;) {
        int rc = rq_step(&q);
        char ip[64];
        const char *ov;
        if (rc == 0)
            break;
        if (rc < 0) {
            ret = report_sql_error(r, "select rows", err);
            break;
        }
        (*nrec)++;
        report_ip(rq_text(&q, 0), ip, sizeof(ip));
        um_buf_str(b, "  <record>\n    <row>\n");
        rb_elem(b, "      ", "source_ip", ip);
        um_buf_fmt(b, "      <count>%lld</count>\n", (long long)rq_int(&q, 12));
        um_buf_str(b, "      <policy_evaluated>\n");
        rb_elem(b, "        ", "disposition", rq_text(&q, 3));
        rb_elem(b, "        ", "dkim", rq_int(&q, 4) ? "pass" : "fail");
        rb_elem(b, "        ", "spf", rq_int(&q, 5) ? "pass" : "fail");
        ov = rq_text(&q, 6);
        if (strcmp(ov, "none") != 0 && ov[0] != '\0') {
            /* RFC 9990 dropped sampled_out (pct=): reported as other. */
            bool sampled = strcmp(ov, "sampled_out") == 0;
            um_buf_str(b, "        <reason>\n");
            rb_elem(b, "          ", "type", sampled ? "other" : ov);
            if (rq_text(&q, 7)[0] != '\0' || sampled)
                rb_elem(b, "          ", "comment",
                        rq_text(&q, 7)[0] != '\0' ? rq_text(&q, 7) : "sampled_out");
            um_buf_str(b, "        </reason>\n");
        }
        um_buf_str(b, "      </policy_evaluated>\n    </row>\n    <identifiers>\n");
        rb_elem(b, "      ", "envelope_from", rq_text(&q, 2));
        rb_elem(b, "      ", "header_from", rq_text(&q, 1));
        um_buf_str(b, "    </identifiers>\n    <auth_results>\n");
        report_dkim_xml(b, rq_text(&q, 11));
        um_buf_str(b, "      <spf>\n");
        rb_elem(b, "        ", "domain", rq_text(&q, 8));
        rb_elem(b, "        ", "scope", strcmp(rq_text(&q, 9), "helo") == 0 ? "helo" : "mfrom");
        rb_elem(b, "        ", "result", report_spf_word(rq_text(&q, 10)));
        um_buf_str(b, "      </spf>\n    </auth_results>\n  </record>\n");
    }
    rq_close(&q);
    um_buf_str(b, "</feedback>\n");
    if (ret == UM_OK && b->oom)
        ret = um_error_set(err, UM_ENOMEM, "report: out of memory");
    return ret;
}

/* gzip (RFC 1952) of in into out. */
static enum um_status
report_gzip(const struct um_buf *in, struct um_buf *out, struct um_error *err)
{
    z_stream z;
    unsigned char chunk[16384];
    int rc;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return um_error_set(err, UM_ENOMEM, "report: deflateInit2 failed");
    z.next_in = (unsigned char *)(uintptr_t)in->p;
    z.avail_in = (uInt)in->len;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        rc = deflate(&z, Z_FINISH);
        um_buf_add(out, (const char *)chunk, sizeof(chunk) - z.avail_out);
    } while (rc == Z_OK);
    deflateEnd(&z);
    if (rc != Z_STREAM_END || out->oom)
        return um_error_set(err, UM_ENOMEM, "report: gzip failed");
    return UM_OK;
}

/* --- mail ----------------------------------------------------------------------------------- */

static void
report_b64(struct um_buf *b, const struct um_buf *in)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col76 = 0;

    for (size_t i = 0; i < in->len; i += 3) {
        unsigned v = (unsigned char)in->p[i] << 16;
        char q[4];
        if (i + 1 < in->len)
            v |= (unsigned char)in->p[i + 1] << 8;
        if (i + 2 < in->len)
            v |= (unsigned char)in->p[i + 2];
        q[0] = tab[v >> 18 & 63];
        q[1] = tab[v >> 12 & 63];
        q[2] = i + 1 < in->len ? tab[v >> 6 & 63] : '=';
        q[3] = i + 2 < in->len ? tab[v & 63] : '=';
        um_buf_add(b, q, 4);
        col76 += 4;
        if (col76 >= 76) {
            um_buf_str(b, "\r\n");
            col76 = 0;
        }
    }
    if (col76 > 0)
        um_buf_str(b, "\r\n");
}

static void
report_mime(struct report_run *r, const struct period *p, const char *rid, const char *fname,
            const struct rua *rua, const bool *use, size_t nrua, const struct um_buf *gz,
            struct um_buf *m)
{
    char date[64];
    struct tm tm;
    time_t now = (time_t)r->o->now;
    bool first = true;

    (void)gmtime_r(&now, &tm);
    (void)strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    um_buf_fmt(m, "From: %s\r\nTo: ", r->o->email);
    for (size_t i = 0; i < nrua; i++) {
        if (!use[i])
            continue;
        um_buf_fmt(m, "%s%s", first ? "" : ",\r\n ", rua[i].addr);
        first = false;
    }
    um_buf_fmt(m, "\r\nDate: %s\r\n", date);
    um_buf_fmt(m, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s@%s>\r\n", p->domain,
               r->receiver, rid, r->receiver);
    um_buf_fmt(m, "Message-ID: <%s.%lld@%s>\r\n", rid, (long long)r->o->now, r->receiver);
    um_buf_str(m, "MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n");
    um_buf_fmt(m, "Content-Type: multipart/mixed; boundary=\"=_um_%s\"\r\n\r\n", rid);
    um_buf_fmt(m, "--=_um_%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", rid);
    um_buf_fmt(m, "This is a DMARC aggregate report (RFC 9990) for %s,\r\n", p->domain);
    um_buf_fmt(m, "from %s, covering %lld to %lld (UTC seconds).\r\n\r\n", r->receiver,
               (long long)p->begin, (long long)(p->begin + UM_REPORT_DAY - 1));
    um_buf_fmt(m, "--=_um_%s\r\nContent-Type: application/gzip; name=\"%s\"\r\n", rid, fname);
    um_buf_fmt(m,
               "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; "
               "filename=\"%s\"\r\n\r\n",
               fname);
    report_b64(m, gz);
    um_buf_fmt(m, "\r\n--=_um_%s--\r\n", rid);
}

/* Hands the message to the submit path (SMTP relay or sendmail); 0 when accepted, else -1
 * with why set. */
static int
report_send(struct report_run *r, const struct rua *rua, const bool *use, size_t nrua,
            const struct um_buf *m, char *why, size_t whylen)
{
    const struct um_submit_opts dflt = {.via = UM_SUBMIT_VIA_SENDMAIL,
                                        .sendmail = UM_REPORT_SENDMAIL_DEFAULT};
    const char *rcpts[UM_REPORT_MAX_RUA];
    struct um_error err = {0};
    size_t n = 0;

    for (size_t i = 0; i < nrua; i++)
        if (use[i])
            rcpts[n++] = rua[i].addr;
    if (um_submit_send(r->o->submit != NULL ? r->o->submit : &dflt, r->o->email, rcpts, n, m->p,
                       m->len, &err)
        == UM_OK)
        return 0;
    (void)snprintf(why, whylen, "%s", err.msg);
    return -1;
}

/* --- state ---------------------------------------------------------------------------------- */

static void
report_state(struct report_run *r, const struct period *p, const char *state, const char *why)
{
    const struct rparam pv[] = {
        {.s = p->domain}, {.i = p->begin}, {.s = state}, {.s = why}, {.i = r->o->now}};
    struct rq q;

    if (!rq_open(r, &q,
                 "INSERT INTO reports_sent (policy_domain, begin, state, attempts,"
                 " last_error, updated) VALUES (?1, ?2, ?3, 1, ?4, ?5)"
                 " ON CONFLICT (policy_domain, begin) DO UPDATE SET state = ?3,"
                 " attempts = attempts + 1, last_error = ?4, updated = ?5",
                 "INSERT INTO reports_sent (policy_domain, begin, state, attempts,"
                 " last_error, updated) VALUES ($1, $2::bigint, $3, 1, $4, $5::bigint)"
                 " ON CONFLICT (policy_domain, begin) DO UPDATE SET state = $3,"
                 " attempts = reports_sent.attempts + 1, last_error = $4, updated = $5::bigint",
                 pv, 5)
        || rq_step(&q) != 0)
        report_log(r, "event=report domain=%s begin=%lld action=error error=\"%s\"", p->domain,
                   (long long)p->begin, rdb_errmsg(r));
    rq_close(&q);
}

static void
report_pending(struct report_run *r, const struct period *p, const char *why)
{
    r->st->pending++;
    if (r->o->dry_run_dir == NULL)
        report_state(r, p, "pending", why);
    report_log(r, "event=report domain=%s begin=%lld action=pending reason=\"%s\"", p->domain,
               (long long)p->begin, why);
}

static void
report_skip(struct report_run *r, const struct period *p, const char *state, const char *why)
{
    r->st->skipped++;
    if (r->o->dry_run_dir == NULL)
        report_state(r, p, state, why);
    report_log(r, "event=report domain=%s begin=%lld action=skip reason=\"%s\"", p->domain,
               (long long)p->begin, why);
}

static enum um_status
report_write_file(struct report_run *r, const char *fname, const struct um_buf *gz,
                  struct um_error *err)
{
    char path[4096], eb[128];
    FILE *f = NULL;
    int fd;

    (void)snprintf(path, sizeof(path), "%s/%s", r->o->dry_run_dir, fname);
    /* The report names sender IPs: 0600 like the history it comes from, whatever the umask
     * and whatever mode an earlier file of the same name had. */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 && (fchmod(fd, 0600) != 0 || (f = fdopen(fd, "wb")) == NULL)) {
        int e = errno;
        (void)close(fd);
        return um_error_set(err, UM_EIO, "report: %s: %s", path, um_strerror(e, eb, sizeof(eb)));
    }
    if (f == NULL)
        return um_error_set(err, UM_EIO, "report: %s: %s", path,
                            um_strerror(errno, eb, sizeof(eb)));
    if (fwrite(gz->p, 1, gz->len, f) != gz->len) {
        int e = errno;
        (void)fclose(f);
        return um_error_set(err, UM_EIO, "report: %s: %s", path, um_strerror(e, eb, sizeof(eb)));
    }
    if (fclose(f) != 0) /* once only, even when it fails */
        return um_error_set(err, UM_EIO, "report: %s: %s", path,
                            um_strerror(errno, eb, sizeof(eb)));
    return UM_OK;
}

/* One period: build, then write or send. */
static enum um_status
report_period(struct report_run *r, const struct period *p, struct um_error *err)
{
    struct rua rua[UM_REPORT_MAX_RUA];
    bool use[UM_REPORT_MAX_RUA] = {false};
    struct um_buf xml = {0}, gz = {0}, mail = {0};
    char rid[17], fname[700], why[512] = "";
    size_t nrua = 0, nuse = 0;
    unsigned nrec = 0;
    bool temp = false;
    enum um_status ret = UM_OK;
    int got;

    r->st->periods++;
    got = report_fetch_rua(r, p->domain, rua, &nrua, why, sizeof(why));
    if (got < 0) {
        report_pending(r, p, why);
        return UM_OK;
    }
    if (got == 0) {
        report_skip(r, p, "norua", why);
        return UM_OK;
    }
    report_id(r, p, rid);
    (void)snprintf(fname, sizeof(fname), "%s!%s!%lld!%lld!%s.xml.gz", r->receiver, p->domain,
                   (long long)p->begin, (long long)(p->begin + UM_REPORT_DAY - 1), rid);
    if ((ret = report_xml(r, p, rid, &xml, &nrec, err)) != UM_OK
        || (ret = report_gzip(&xml, &gz, err)) != UM_OK)
        goto out;
    if (r->o->dry_run_dir != NULL) {
        if ((ret = report_write_file(r, fname, &gz, err)) == UM_OK) {
            r->st->written++;
            report_log(r,
                       "event=report domain=%s begin=%lld action=written file=\"%s\" "
                       "records=%u bytes=%zu",
                       p->domain, (long long)p->begin, fname, nrec, gz.len);
        }
        goto out;
    }
    /* The size limits apply to the whole message; build it for everyone first. */
    for (size_t i = 0; i < nrua; i++)
        use[i] = true;
    report_mime(r, p, rid, fname, rua, use, nrua, &gz, &mail);
    if (mail.oom) {
        ret = um_error_set(err, UM_ENOMEM, "report: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nrua; i++) {
        int ext;
        if (rua[i].limit > 0 && mail.len > rua[i].limit) {
            use[i] = false;
            report_log(r,
                       "event=report domain=%s begin=%lld rcpt=%s action=skip-rcpt "
                       "reason=\"report of %zu bytes exceeds the limit of %llu\"",
                       p->domain, (long long)p->begin, rua[i].addr, mail.len,
                       (unsigned long long)rua[i].limit);
            continue;
        }
        ext = report_external_ok(r, p->domain, rua[i].domain);
        if (ext == 0) {
            use[i] = false;
            report_log(r,
                       "event=report domain=%s begin=%lld rcpt=%s action=skip-rcpt "
                       "reason=\"%s._report._dmarc.%s does not authorize it\"",
                       p->domain, (long long)p->begin, rua[i].addr, p->domain, rua[i].domain);
        } else if (ext < 0) {
            use[i] = false;
            temp = true;
            report_log(r,
                       "event=report domain=%s begin=%lld rcpt=%s action=skip-rcpt "
                       "reason=\"temporary DNS failure checking the external destination\"",
                       p->domain, (long long)p->begin, rua[i].addr);
        } else {
            nuse++;
        }
    }
    if (nuse == 0) {
        if (temp)
            report_pending(r, p, "external destination check failed temporarily");
        else
            report_skip(r, p, "skipped", "no address may receive this report");
        goto out;
    }
    /* The To: header lists only the addresses that get it. */
    mail.len = 0;
    report_mime(r, p, rid, fname, rua, use, nrua, &gz, &mail);
    if (mail.oom) {
        ret = um_error_set(err, UM_ENOMEM, "report: out of memory");
        goto out;
    }
    if (report_send(r, rua, use, nrua, &mail, why, sizeof(why)) != 0) {
        report_pending(r, p, why);
        goto out;
    }
    if (temp) {
        /* XXX: the addresses that got it would get it again on retry; we prefer that to
         * losing the others, and the Report-ID lets receivers drop the duplicate. */
        report_pending(r, p, "some addresses not checked (temporary DNS failure)");
    } else {
        report_state(r, p, "sent", "");
    }
    r->st->sent++;
    report_log(r, "event=report domain=%s begin=%lld action=sent rcpts=%zu records=%u bytes=%zu",
               p->domain, (long long)p->begin, nuse, nrec, mail.len);
out:
    free(xml.p);
    free(gz.p);
    free(mail.p);
    return ret;
}

static const char report_periods_sql[] =
    "SELECT DISTINCT e.policy_domain, (e.ts / 86400) * 86400 AS day FROM evaluations e"
    " WHERE e.rua AND e.policy_domain != '' AND e.ts < ?1 AND (?2 < 0 OR (e.ts >= ?2 AND"
    " e.ts < ?2 + 86400)) AND NOT EXISTS (SELECT 1 FROM reports_sent s WHERE"
    " s.policy_domain = e.policy_domain AND s.begin = (e.ts / 86400) * 86400 AND"
    " s.state != 'pending') ORDER BY 2, 1";
static const char report_pg_periods_sql[] =
    "SELECT DISTINCT e.policy_domain COLLATE \"C\", (e.ts / 86400) * 86400 AS day"
    " FROM evaluations e WHERE e.rua <> 0 AND e.policy_domain <> '' AND e.ts < $1::bigint AND"
    " ($2::bigint < 0 OR (e.ts >= $2::bigint AND e.ts < $2::bigint + 86400)) AND NOT EXISTS"
    " (SELECT 1 FROM reports_sent s WHERE s.policy_domain = e.policy_domain AND"
    " s.begin = (e.ts / 86400) * 86400 AND s.state <> 'pending') ORDER BY 2, 1";

static enum um_status
report_expire(struct report_run *r, struct um_error *err)
{
    static const char *const sql[3][2] = {
        {"DELETE FROM evaluation_dkim WHERE eval_id IN (SELECT id FROM evaluations WHERE ts < ?1)",
         "DELETE FROM evaluation_dkim WHERE eval_id IN"
         " (SELECT id FROM evaluations WHERE ts < $1::bigint)"},
        {"DELETE FROM evaluations WHERE ts < ?1", "DELETE FROM evaluations WHERE ts < $1::bigint"},
        {"DELETE FROM reports_sent WHERE begin < ?1",
         "DELETE FROM reports_sent WHERE begin < $1::bigint"},
    };
    struct rparam pv[1];
    struct rq q;

    if (r->o->retention_days == 0)
        return UM_OK;
    pv[0].s = NULL;
    pv[0].i = r->o->now - (int64_t)r->o->retention_days * UM_REPORT_DAY;
    if (!rdb_exec(r, "BEGIN IMMEDIATE", "BEGIN"))
        return report_sql_error(r, "expire", err);
    for (int i = 0; i < 3; i++) {
        if (!rq_open(r, &q, sql[i][0], sql[i][1], pv, 1) || rq_step(&q) != 0) {
            enum um_status s = report_sql_error(r, "expire", err);
            rq_close(&q);
            (void)rdb_exec(r, "ROLLBACK", "ROLLBACK");
            return s;
        }
        if (i == 1)
            r->st->expired = rq_changes(&q);
        rq_close(&q);
    }
    if (!rdb_exec(r, "COMMIT", "COMMIT"))
        return report_sql_error(r, "expire", err);
    if (r->st->expired > 0)
        report_log(r, "event=report-expire rows=%llu before=%lld",
                   (unsigned long long)r->st->expired, (long long)pv[0].i);
    return UM_OK;
}

enum um_status
um_report_run(const struct um_report_opts *o, struct um_report_stats *stats, struct um_error *err)
{
    struct report_run r = {.o = o, .st = stats};
    struct um_history *h = NULL;
    struct period *pv = NULL;
    size_t np = 0, cap = 0;
    struct rparam par[2];
    struct rq q = {0};
    bool pg = o->store == UM_HISTORY_STORE_POSTGRESQL;
    enum um_status ret = UM_OK;
    int64_t today;

    memset(stats, 0, sizeof(*stats));
    if (o->db_path == NULL || o->org_name == NULL || o->email == NULL || o->txt == NULL
        || o->txt_fini == NULL || strchr(o->email, '@') == NULL)
        return um_error_set(err, UM_EINVAL,
                            "report: database path, org name, email (with @) and DNS needed");
    (void)snprintf(r.receiver, sizeof(r.receiver), "%s",
                   o->receiver != NULL ? o->receiver : strrchr(o->email, '@') + 1);
    today = o->now - o->now % UM_REPORT_DAY;
    if (o->day >= 0 && (o->day % UM_REPORT_DAY != 0 || o->day >= today))
        return um_error_set(err, UM_EINVAL,
                            "report: the day must be a complete UTC day before "
                            "today");
    /* The history module owns its schema: opening creates or checks it. */
    if ((ret = um_history_open_store(pg ? UM_HISTORY_STORE_POSTGRESQL : UM_HISTORY_STORE_SQLITE,
                                     o->db_path, 1, &h, err))
        != UM_OK)
        return ret;
    um_history_close(h, 0, NULL);
    if (pg) {
        static const char *const keys[] = {"connect_timeout", "dbname", NULL};
        const char *vals[] = {"10", o->db_path, NULL};
        PGresult *res;
        r.pg = PQconnectdbParams(keys, vals, 1);
        if (r.pg != NULL)
            (void)PQsetNoticeProcessor(r.pg, report_pg_notice, NULL);
        if (r.pg == NULL || PQstatus(r.pg) != CONNECTION_OK) {
            ret = report_sql_error(&r, "connect", err);
            goto out;
        }
        res = PQexec(r.pg, "SELECT pg_try_advisory_lock(" REPORT_PG_LOCK ")");
        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1
            || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
            PQclear(res);
            ret = um_error_set(err, UM_EIO,
                               "report: postgresql: another `unimilter report` is running");
            goto out;
        }
        PQclear(res);
    } else {
        if (sqlite3_open_v2(o->db_path, &r.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL)
            != SQLITE_OK) {
            ret = report_sql_error(&r, "open", err);
            goto out;
        }
        (void)sqlite3_busy_timeout(r.db, 10000);
    }
    if (!rdb_exec(&r, report_schema, report_pg_schema)) {
        ret = report_sql_error(&r, "create reports_sent", err);
        goto out;
    }
    par[0].s = par[1].s = NULL;
    par[0].i = today;
    par[1].i = o->day;
    if (!rq_open(&r, &q, report_periods_sql, report_pg_periods_sql, par, 2)) {
        ret = report_sql_error(&r, "select periods", err);
        goto out;
    }
    while (rq_step(&q) == 1) {
        if (np == cap) {
            struct period *npv = reallocarray(pv, cap == 0 ? 16 : cap * 2, sizeof(*pv));
            if (npv == NULL) {
                ret = um_error_set(err, UM_ENOMEM, "report: out of memory");
                goto out;
            }
            pv = npv;
            cap = cap == 0 ? 16 : cap * 2;
        }
        (void)snprintf(pv[np].domain, sizeof(pv[np].domain), "%s", rq_text(&q, 0));
        pv[np].begin = rq_int(&q, 1);
        np++;
    }
    rq_close(&q);
    for (size_t i = 0; i < np && ret == UM_OK; i++)
        ret = report_period(&r, &pv[i], err);
    if (ret == UM_OK && o->dry_run_dir == NULL)
        ret = report_expire(&r, err);
out:
    rq_close(&q);
    free(pv);
    if (r.db != NULL)
        sqlite3_close(r.db);
    PQfinish(r.pg);
    return ret;
}

int64_t
um_report_parse_day(const char *s)
{
    struct tm tm;
    const char *end;
    int64_t y, m, d, era, yoe, doy, doe;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    /* Days from civil (proleptic Gregorian), without timegm() and its time zone. */
    y = tm.tm_year + 1900;
    m = tm.tm_mon + 1;
    d = tm.tm_mday;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (era * 146097 + doe - 719468) * 86400;
}
