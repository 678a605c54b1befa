/*
 * report_import - DMARC aggregate reports we receive: unpack, parse, store, summarise
 *
 * DESCRIPTION  The other half of lib/report.h: reports other receivers send about our own
 *              domains (the rua= of our DMARC records).
 *
 *                um_report_import_decode()   an .eml (MIME walk to the report attachment),
 *                                            a gzip or single-member zip, or bare XML ->
 *                                            the XML bytes
 *                um_report_import_parse()    XML (RFC 7489 appendix C, no namespace or
 *                                            http://dmarc.org/dmarc-xml/0.1; RFC 9990,
 *                                            urn:ietf:params:xml:ns:dmarc-2.0) -> a report
 *                um_report_import_open()     the history database (lib/history.h); the
 *                um_report_import_store()    received_* tables are created when missing;
 *                um_report_import_close()    one transaction per report
 *                um_report_import_summary()  per header_from domain: sources, pass/fail,
 *                                            sources new since the last summary
 *
 *              Hostile input is refused with an error that names the input and what is
 *              wrong: a DOCTYPE (so no entity expansion and no external entity is ever
 *              looked at), network access, malformed XML, an unknown root or namespace,
 *              missing required fields, a value that is no IP address or number, and every
 *              limit below. A refused report stores nothing.
 * STORE        received_reports (one row per report, UNIQUE (org_name, report_id): a report
 *              seen again is skipped), received_rows (one per <record>), received_auth (its
 *              DKIM and SPF auth_results), received_seen (domain, source_ip) pairs already
 *              shown by a summary.
 * THREADS      Single-threaded use (a CLI); a handle belongs to one thread. The database
 *              may be written by the daemon's history writer at the same time (WAL).
 * OWNERSHIP    Inputs are borrowed for the call. A parsed report owns all its strings (one
 *              arena), freed by um_report_import_report_free(). *xml from decode and *text
 *              from summary are malloc'd for the caller to free().
 * ERRORS       UM_OK; UM_EINVAL malformed or hostile input (err->msg "<name>: <why>");
 *              UM_ELIMIT a size, depth or count limit ("<name>: decompressed size exceeds
 *              20971520 bytes"); UM_EIO the database failed; UM_ENOMEM.
 * LIMITS       UM_REPORT_IMPORT_MAX_INPUT bytes in, UM_REPORT_IMPORT_MAX_XML bytes of XML
 *              (inflation stops there), UM_REPORT_IMPORT_MAX_RECORDS records,
 *              UM_REPORT_IMPORT_MAX_AUTH DKIM and SPF results per record,
 *              UM_REPORT_IMPORT_FIELD_MAX bytes per stored string, MIME nesting
 *              UM_REPORT_IMPORT_MAX_DEPTH. The XML is parsed into a tree: memory is a small
 *              multiple of the XML size.
 */
#ifndef UM_REPORT_IMPORT_H
#define UM_REPORT_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define UM_REPORT_IMPORT_MAX_INPUT   (32u * 1024 * 1024) /* a file or message as read */
#define UM_REPORT_IMPORT_MAX_XML     (20u * 1024 * 1024) /* decompressed XML */
#define UM_REPORT_IMPORT_MAX_RECORDS 100000
#define UM_REPORT_IMPORT_MAX_AUTH    16
#define UM_REPORT_IMPORT_FIELD_MAX   255 /* bytes, without the NUL */
#define UM_REPORT_IMPORT_MAX_DEPTH   8   /* MIME multipart nesting */

enum um_report_import_format {
    UM_REPORT_IMPORT_RFC7489 = 0, /* no namespace, or http://dmarc.org/dmarc-xml/0.1 */
    UM_REPORT_IMPORT_RFC9990,     /* urn:ietf:params:xml:ns:dmarc-2.0 */
};

/* One auth_results/dkim or auth_results/spf. Strings NUL-terminated, "" when absent. */
struct um_report_import_auth {
    const char *domain;
    const char *selector; /* DKIM only */
    const char *scope;    /* SPF only: "mfrom", "helo" */
    const char *result;   /* lower case as sent: "pass", "fail", "temperror", ... */
};

struct um_report_import_row {
    const char *source_ip; /* a valid IPv4 or IPv6 address, as sent */
    uint64_t count;
    const char *disposition; /* policy_evaluated: "none", "quarantine", "reject" or "" */
    const char *dkim_eval;   /* policy_evaluated/dkim: "pass", "fail" or "" */
    const char *spf_eval;    /* policy_evaluated/spf */
    const char *header_from; /* lower case */
    const char *envelope_from;
    const char *envelope_to;
    size_t ndkim, nspf; /* at most UM_REPORT_IMPORT_MAX_AUTH each */
    struct um_report_import_auth *dkim, *spf;
};

struct um_report_import_report {
    enum um_report_import_format format;
    const char *org_name, *email, *report_id;
    int64_t begin, end; /* seconds since the epoch (a trailing ".0" is accepted) */
    const char *domain; /* policy_published, lower case */
    const char *adkim, *aspf, *p, *sp, *np; /* "" when absent */
    int pct;                                /* -1 when absent */
    size_t nrows;
    struct um_report_import_row *rows;
    uint64_t messages; /* sum of the counts */
    struct report_import_arena *arena;
};

struct um_report_import_result {
    bool duplicate; /* (org_name, report_id) was already stored: nothing written */
    char org_name[UM_REPORT_IMPORT_FIELD_MAX + 1];
    char report_id[UM_REPORT_IMPORT_FIELD_MAX + 1];
    char domain[UM_REPORT_IMPORT_FIELD_MAX + 1];
    size_t records;
    uint64_t messages;
};

struct um_report_import_summary_opts {
    const char *domain; /* NULL: every domain */
    int64_t since;      /* -1: new = never shown by a summary; else reports ending at or
                         * after since, new = not seen in any report before since */
    int64_t now;        /* stored as first_seen in received_seen */
    bool update_seen;   /* record the sources shown (a normal run does) */
};

struct um_report_import;

/* Unpacks one input into its XML: *xml malloc'd (NUL-terminated, *xmllen bytes without it).
 * name is used in messages only. */
UM_NODISCARD enum um_status um_report_import_decode(const char *name, const unsigned char *data,
                                                    size_t len, unsigned char **xml, size_t *xmllen,
                                                    struct um_error *err);

/* Parses one aggregate report. Never loads a DTD, an entity or anything from the network. */
UM_NODISCARD enum um_status um_report_import_parse(const char *name, struct um_str xml,
                                                   struct um_report_import_report **out,
                                                   struct um_error *err);
void um_report_import_report_free(struct um_report_import_report *r);

/* Opens (creating tables when missing) the database at path. May block on the file. */
UM_NODISCARD enum um_status um_report_import_open(const char *path, struct um_report_import **out,
                                                  struct um_error *err);
void um_report_import_close(struct um_report_import *imp);

/* Stores a parsed report in one transaction (rolled back on any error), or finds it is a
 * duplicate. source (e.g. the file name) and now are stored with it. */
UM_NODISCARD enum um_status um_report_import_store(struct um_report_import *imp,
                                                   const struct um_report_import_report *r,
                                                   const char *source, int64_t now,
                                                   struct um_report_import_result *res,
                                                   struct um_error *err);

/* decode + parse + store of one input. */
UM_NODISCARD enum um_status um_report_import_bytes(struct um_report_import *imp, const char *name,
                                                   const unsigned char *data, size_t len,
                                                   int64_t now, struct um_report_import_result *res,
                                                   struct um_error *err);

/* The summary as plain text (*text malloc'd). Updates received_seen when asked to. */
UM_NODISCARD enum um_status um_report_import_summary(struct um_report_import *imp,
                                                     const struct um_report_import_summary_opts *o,
                                                     char **text, struct um_error *err);

#endif
