/*
 * history - the record of inbound DMARC evaluations (SQLite, written off the hot path)
 *
 * DESCRIPTION  One struct um_history_rec per evaluated message: who sent it (source IP,
 *              envelope and header From domains), what our SPF and DKIM checks said, what
 *              the published DMARC policy was, and what we did with the message and why.
 *              `unimilter report` aggregates these rows into RFC 9990 reports (lib/report.h).
 *
 *                um_history_open(path, queue_max, &h, err);   once per process
 *                um_history_on_error(h, fn, arg);             the daemon's log funnel
 *                um_history_record(h, &rec);                  per message; never blocks
 *                um_history_close(h, drain_ms);               at shutdown
 *
 *              um_history_record() copies the record into a bounded in-memory queue and
 *              returns at once. One writer thread takes up to UM_HISTORY_BATCH records at
 *              a time and inserts them in one transaction. A full queue drops the record
 *              (counted); a failing store loses the batch (counted as failed, one error
 *              reported through the callback). Mail is never delayed or failed by history.
 * STORE        UM_HISTORY_STORE_SQLITE (um_history_open()): one SQLite file in WAL mode (readers such as `unimilter report` run beside the
 *              writer), busy_timeout UM_HISTORY_BUSY_MS. Tables: schema_version(version),
 *              evaluations (one row per record), evaluation_dkim (its DKIM results, by
 *              evaluation id). The schema is created when missing; a file whose
 *              schema_version is newer than UM_HISTORY_SCHEMA_VERSION is refused.
 *              UM_HISTORY_STORE_POSTGRESQL (um_history_open_store(), target a libpq
 *              connection string): the same tables in one PostgreSQL database that several
 *              MX hosts write into (ids from a sequence), created when missing under an
 *              advisory lock. One transaction per batch; statements time out after
 *              UM_HISTORY_PG_TIMEOUT_MS. A lost connection fails the batch in hand (counted
 *              and reported like any store failure); the writer reconnects before the next
 *              batch, waiting 1, 2, 4 ... UM_HISTORY_PG_BACKOFF_MAX seconds between failed
 *              attempts, and fails the batches that arrive meanwhile without waiting.
 * THREADS      um_history_record() and um_history_stats() are safe from any thread; their
 *              one mutex is a leaf held only to move a pointer. The error callback runs on
 *              the writer thread, with no lock held. um_history_close() must not run
 *              concurrently with um_history_record() on the same handle.
 * OWNERSHIP    path is copied; a "file:" path is an SQLite URI (file:x.db?mode=ro).
 *              The record is copied (all its strings are fixed arrays).
 * ERRORS       um_history_open(): UM_EINVAL bad arguments; UM_EIO the database cannot be
 *              opened, created or written ("history: /x/y.db: unable to open database
 *              file"; "history: postgresql: connect: ..."; the connection string itself is
 *              never quoted, it may hold a password), or its schema is newer; UM_ENOMEM;
 *              UM_ETEMP no writer thread. PostgreSQL must be reachable at open.
 * LIMITS       At most queue_max (1..UM_HISTORY_QUEUE_MAX) records waiting; each takes about
 *              sizeof(struct um_history_rec) (~5 KB) of heap while queued. At most
 *              UM_HISTORY_MAX_DKIM DKIM results per record (the rest are counted in
 *              ndkim_extra only).
 */
#ifndef UM_HISTORY_H
#define UM_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authres.h"
#include "common.h"
#include "dmarc.h"

#define UM_HISTORY_SCHEMA_VERSION 1
#define UM_HISTORY_MAX_DKIM       8
#define UM_HISTORY_QUEUE_MAX      1000000
#define UM_HISTORY_BATCH          256
#define UM_HISTORY_BUSY_MS        2000
#define UM_HISTORY_PG_TIMEOUT_MS  10000 /* statement_timeout; connect_timeout 10 s */
#define UM_HISTORY_PG_BACKOFF_MAX 60    /* seconds between reconnection attempts, at most */
#define UM_HISTORY_DOMAIN_MAX     UM_DMARC_DOMAIN_MAX /* 253 + NUL */
#define UM_HISTORY_SELECTOR_MAX   64                  /* one DNS label + NUL */
#define UM_HISTORY_IP_MAX         46                  /* INET6_ADDRSTRLEN */

struct um_history;

enum um_history_store {
    UM_HISTORY_STORE_SQLITE = 0, /* target: a file path or "file:" URI */
    UM_HISTORY_STORE_POSTGRESQL, /* target: a libpq connection string */
};

/* Why the disposition applied differs from what the policy asked (RFC 9990 reason type;
 * RFC 7489 adds sampled_out). */
enum um_history_override {
    UM_HISTORY_OVERRIDE_NONE = 0,
    UM_HISTORY_OVERRIDE_LOCAL_POLICY,      /* exempt domain or client, monitor-only mode */
    UM_HISTORY_OVERRIDE_SAMPLED_OUT,       /* RFC 7489 pct= (PSL method) */
    UM_HISTORY_OVERRIDE_POLICY_TEST_MODE,  /* RFC 9989 t=y */
    UM_HISTORY_OVERRIDE_TRUSTED_FORWARDER, /* e.g. a trusted ARC sealer */
    UM_HISTORY_OVERRIDE_MAILING_LIST,
    UM_HISTORY_OVERRIDE_OTHER,
};

enum um_history_spf_scope {
    UM_HISTORY_SPF_MFROM = 0,
    UM_HISTORY_SPF_HELO,
};

struct um_history_dkim {
    char domain[UM_HISTORY_DOMAIN_MAX];     /* d= */
    char selector[UM_HISTORY_SELECTOR_MAX]; /* s= */
    enum um_auth result;                    /* pass, fail, neutral, policy, temperror, ... */
};

/* One evaluation. Strings are NUL-terminated; "" when unknown. Domains lower case. */
struct um_history_rec {
    int64_t time;                              /* seconds since the epoch (UTC) */
    char source_ip[UM_HISTORY_IP_MAX];         /* connecting client, textual */
    char header_from[UM_HISTORY_DOMAIN_MAX];   /* RFC 5322.From domain */
    char envelope_from[UM_HISTORY_DOMAIN_MAX]; /* RFC 5321.MailFrom domain ("" for <>) */
    char envelope_to[UM_HISTORY_DOMAIN_MAX];   /* first RCPT TO domain, optional */
    /* Our SPF check. */
    enum um_auth spf_result;
    enum um_history_spf_scope spf_scope;
    char spf_domain[UM_HISTORY_DOMAIN_MAX]; /* domain SPF evaluated (MAIL FROM or HELO) */
    /* Our DKIM checks, in signature order. */
    size_t ndkim;
    size_t ndkim_extra; /* results beyond UM_HISTORY_MAX_DKIM, not stored */
    struct um_history_dkim dkim[UM_HISTORY_MAX_DKIM];
    /* DMARC. */
    enum um_dmarc_result dmarc_result; /* pass, fail, none, temperror */
    bool dkim_aligned, spf_aligned;
    enum um_dmarc_method method;               /* how the policy was discovered */
    char policy_domain[UM_HISTORY_DOMAIN_MAX]; /* where the record was found */
    char p, sp, np;                            /* 'n','q','r' or 0 when absent */
    char adkim, aspf;                          /* 'r' or 's' */
    int pct;                                   /* 0..100 */
    char t, psd;                               /* 'y','n' or 0 */
    bool rua; /* the policy record had rua= (a report is owed); see lib/report.h */
    /* What we did. */
    enum um_dmarc_policy disposition; /* NONE, QUARANTINE or REJECT as applied */
    enum um_history_override override;
    char override_comment[128]; /* free text: "exempt client", "t=y" */
};

struct um_history_stats {
    uint64_t queued;  /* waiting now */
    uint64_t written; /* committed to the store */
    uint64_t dropped; /* refused because the queue was full, or left at close */
    uint64_t failed;  /* lost because the store failed */
    uint64_t errors;  /* store failures (one per failed batch or statement) */
};

/* Store failures, reported from the writer thread ("history: insert: database is locked"),
 * throttled: the first failure of an episode at once; then at most one summary every
 * UM_HISTORY_ERROR_INTERVAL seconds ("history: PATH: still failing: 37 more failures, 412
 * records lost in the last 60 s; latest: ..."), and only if there were more; a summary of
 * any unreported ones at close; and once, with ok = true, the recovery ("history: PATH:
 * writing again after 38 failures, 413 records lost"). */
#define UM_HISTORY_ERROR_INTERVAL 60
typedef void um_history_error_fn(void *arg, bool ok, const char *msg);

/* Opens (creating when missing) the database and starts the writer. May block on the file. */
UM_NODISCARD enum um_status um_history_open(const char *path, size_t queue_max,
                                            struct um_history **out, struct um_error *err);
/* The same with the store chosen: um_history_open() is UM_HISTORY_STORE_SQLITE. For
 * PostgreSQL, blocks until connected and the schema checked (connect_timeout 10 s unless
 * target says otherwise). */
UM_NODISCARD enum um_status um_history_open_store(enum um_history_store store, const char *target,
                                                  size_t queue_max, struct um_history **out,
                                                  struct um_error *err);
/* Where store failures go; NULL fn drops them (they are still counted). */
void um_history_on_error(struct um_history *h, um_history_error_fn *fn, void *arg);
/* The summary interval in seconds (default UM_HISTORY_ERROR_INTERVAL; tests shorten it). */
void um_history_error_interval(struct um_history *h, unsigned seconds);
/* Queues a copy of rec. Never blocks on I/O: false when it was dropped (queue full, closing,
 * out of memory), which is counted. */
bool um_history_record(struct um_history *h, const struct um_history_rec *rec);
void um_history_stats(struct um_history *h, struct um_history_stats *out);
/* Stops taking records, lets the writer drain for at most drain_ms milliseconds, drops what
 * is left (counted, and reported through the callback), closes the store and frees h.
 * *final (may be NULL) gets the last counters. NULL h does nothing. */
void um_history_close(struct um_history *h, unsigned drain_ms, struct um_history_stats *final);

/* "none", "local_policy", "sampled_out", "policy_test_mode", "trusted_forwarder",
 * "mailing_list", "other". */
const char *um_history_override_name(enum um_history_override o);

#endif
