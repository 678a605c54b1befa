/*
 * report - DMARC aggregate reports (RFC 9990) from the evaluation history, sent by mail
 *
 * DESCRIPTION  um_report_run() is one run of `unimilter report`:
 *
 *                1. Periods: every (policy domain, UTC day) with rows in the history
 *                   (lib/history.h) whose record had rua=, the day complete (before the day
 *                   of opts->now), and not yet done in the reports_sent table; or only the
 *                   day opts->day.
 *                2. Addresses: TXT _dmarc.<policy domain> is fetched NOW, through the DNS
 *                   seam (the history keeps only the rua flag): the one v=DMARC1 record's
 *                   rua= mailto: URIs, each with its optional size limit ("!10m";
 *                   k/m/g/t are powers of 1024, none means bytes). No record or no mailto:
 *                   rua: the period is marked "norua" and never tried again; a DNS
 *                   temporary failure leaves it pending.
 *                3. The report: rows of the period grouped by source IP, identifiers,
 *                   disposition, override reason, alignment and the SPF and DKIM results;
 *                   one <record> per group with its count. Namespace
 *                   urn:ietf:params:xml:ns:dmarc-2.0; policy_published from the latest row.
 *                   Gzipped, named receiver!policy-domain!begin!end!report-id.xml.gz
 *                   (RFC 9990 / RFC 7489 7.2.1.1; report-id is alphanumeric).
 *                4. --dry-run (opts->dry_run_dir): the file is written there and nothing is
 *                   sent or recorded.
 *                5. Otherwise, per address: a domain outside the policy domain's tree needs
 *                   TXT <policy-domain>._report._dmarc.<rua-domain> with v=DMARC1 (RFC 7489
 *                   7.1, RFC 9990); a message larger than the address's limit is not sent
 *                   to it. The rest get one MIME message (RFC 7489 7.2.1.1 subject,
 *                   application/gzip attachment) through lib/submit (opts->submit: SMTP to a
 *                   relay, or `sendmail -i -f <email> -- rcpts`), envelope sender email.
 *                   Accepted: the period is "sent" and never sent again. Any failure, or
 *                   an address skipped by a DNS temporary failure: "pending", retried by
 *                   the next run. Every address refused: "skipped".
 *                6. Retention: rows (and reports_sent entries) older than retention_days
 *                   days before now are deleted.
 *
 *              Each decision is one log line through opts->log ("event=report
 *              domain=example.org begin=1700006400 action=sent rcpts=1 bytes=1234").
 * STORE        opts->store: the SQLite file (db_path), or the PostgreSQL database several
 *              MX hosts record into (db_path is then a libpq connection string, never
 *              quoted in messages). Same tables and results; on PostgreSQL a session
 *              advisory lock lets one `unimilter report` run at a time (a second one fails).
 * THREADS      Single-threaded use (a CLI). Reads the database beside a writing daemon
 *              (WAL).
 * OWNERSHIP    opts and everything it points to are borrowed for the call.
 * ERRORS       UM_OK when the run finished (individual periods may be pending: see stats);
 *              UM_EINVAL bad options; UM_EIO the database or the dry-run directory failed;
 *              UM_ENOMEM.
 * LIMITS       One period's report is built in memory (rows are grouped by SQLite first).
 *              An SMTP attempt is bounded by submit->timeout; a sendmail child is waited
 *              for without a timeout (a local queue submission).
 */
#ifndef UM_REPORT_H
#define UM_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dns.h"
#include "history.h"
#include "submit.h"

#define UM_REPORT_SENDMAIL_DEFAULT "/usr/sbin/sendmail"
#define UM_REPORT_NS               "urn:ietf:params:xml:ns:dmarc-2.0"
#define UM_REPORT_DAY              86400
#define UM_REPORT_MAX_RUA          8 /* mailto: URIs taken from one rua= */

/* The DNS seam (as lib/dmarc.h's): txt must always initialise *res. */
typedef enum um_status um_report_txt_fn(void *arg, const char *name, struct um_dns_txt *res,
                                        struct um_error *err);
typedef void um_report_txt_fini_fn(void *arg, struct um_dns_txt *res);
typedef void um_report_log_fn(void *arg, const char *line);

struct um_report_opts {
    const char *db_path;         /* SQLite file, or the libpq connection string for POSTGRESQL */
    enum um_history_store store; /* zero (the default): SQLite */
    const char *org_name;        /* report_metadata/org_name */
    const char *email;           /* report_metadata/email and the envelope/header From */
    const char *receiver;        /* our domain: file name, Submitter; NULL = the domain of email */
    const struct um_submit_opts *submit; /* NULL: sendmail UM_REPORT_SENDMAIL_DEFAULT */
    const char *dry_run_dir;             /* non-NULL: write files here; send and record nothing */
    int64_t day;             /* start of one UTC day to report, or -1: every complete day */
    int64_t now;             /* seconds since the epoch */
    unsigned retention_days; /* 0 = keep rows forever */
    um_report_txt_fn *txt;
    um_report_txt_fini_fn *txt_fini;
    void *dns_arg;
    um_report_log_fn *log; /* may be NULL */
    void *log_arg;
};

struct um_report_stats {
    unsigned periods; /* considered */
    unsigned written; /* files written (dry run) */
    unsigned sent;    /* messages accepted by sendmail */
    unsigned pending; /* left for a later run */
    unsigned skipped; /* no rua, or every address refused */
    uint64_t expired; /* history rows deleted by retention */
};

UM_NODISCARD enum um_status um_report_run(const struct um_report_opts *opts,
                                          struct um_report_stats *stats, struct um_error *err);

/* One rua= URI: "mailto:dmarc@example.org!10m". UM_OK with addr (NUL-terminated) and
 * *limit (0 = none); UM_ENOENT for a URI that is not mailto:; UM_EINVAL malformed. */
UM_NODISCARD enum um_status um_report_rua_parse(struct um_str uri, char *addr, size_t addrlen,
                                                uint64_t *limit, struct um_error *err);

/* "YYYY-MM-DD" (as strptime's %Y-%m-%d) -> the start of that UTC day in seconds since the
 * epoch, or -1 when s is anything else. Days before 1970 come out negative. */
int64_t um_report_parse_day(const char *s);

#endif
