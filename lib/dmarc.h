/*
 * dmarc - DMARC evaluation of one message (RFC 9989 by default, RFC 7489 as a setting)
 *
 * DESCRIPTION  Given the RFC 5322.From domain and OUR OWN SPF and DKIM results (never
 *              headers), finds the DMARC policy record, decides alignment and says which
 *              policy the domain asks for and what to do before local overrides:
 *
 *                um_dmarc_new(dns, &opts, &dm, err);            once per config snapshot
 *                um_dmarc_check(dm, &in, &res, err);            once per message
 *
 *              Policy discovery and organizational domains (opts.method):
 *                TREEWALK (default, RFC 9989 4.10): TXT _dmarc.<from>; if there is no
 *                  single valid v=DMARC1 record, walk towards the root (at most
 *                  UM_DMARC_WALK_LABELS labels below the start, then one label at a time)
 *                  and take the first single valid record. The organizational domain of a
 *                  name is found by the same walk: the first psd=n domain; else the child
 *                  of the first psd=y domain; else the shortest domain with a record; else
 *                  the name itself. Tags np=, psd= and t= are honoured; pct= is ignored.
 *                PSL (RFC 7489 6.6.3): _dmarc.<from>, then _dmarc.<org> where org comes
 *                  from the public suffix list (Debian's, opts.psl_path); pct= sampling is
 *                  done here (RFC 7489 6.6.4), t=, np= and psd= are ignored.
 *              Alignment (RFC 9989 4.4 / RFC 7489 3.1): DKIM aligns when a PASSING
 *              signature's d= equals the From domain (adkim=s) or has the same
 *              organizational domain (adkim=r, the default); SPF likewise with the domain
 *              SPF passed for (MAIL FROM, or HELO when that was the identity checked) and
 *              aspf. Result: PASS if either aligns, else FAIL.
 *              Policy: p= when the record is the From domain's own; otherwise sp= for an
 *              existing subdomain (default p=) and, under TREEWALK, np= for a
 *              non-existent one (RFC 9989: NXDOMAIN/NODATA for A, AAAA and MX; default
 *              sp=, then p=). Disposition (what the record asks us to do with THIS
 *              message, before local overrides): NONE on PASS; on FAIL the policy, lowered
 *              one step (reject->quarantine, quarantine->none) when t=y (TREEWALK) or when
 *              the message is not sampled by pct= (PSL; RFC 7489 6.6.4).
 * RECORDS      Parsed by this module (RFC 9989 4.7 tag list; fuzzed): the record must start
 *              with v=DMARC1; unknown tags are ignored; an absent or invalid p= reads as
 *              p=none (TREEWALK), or, under PSL, as p=none only with a valid rua= and else
 *              as no record (RFC 7489 6.6.3, which also treats an invalid sp= that way);
 *              under TREEWALK invalid sp=/np= fall back to p=; invalid adkim/aspf/t/psd
 *              take their defaults.
 *              Several v=DMARC1 records at one name count as none there (RFC 7489 6.6.3,
 *              RFC 9989 4.10). libopendmarc is not used for parsing or alignment: its parser
 *              corrupts aspf with rf=iodef, ignores pct, knows no np/psd/t, and its PSL-only
 *              org domain is wrong for RFC 9989 (see dmarc.c). Its PSL code
 *              (opendmarc_get_tld) serves the PSL method.
 * RESULTS      PASS / FAIL as above. NONE: no policy record (also: a From domain that is not
 *              a valid DNS name). TEMPERROR: a lookup that mattered ended in TEMPFAIL
 *              (SERVFAIL, timeout); never read as "no record". PERMERROR is not produced
 *              today (an invalid record counts as none, as RFC 9989 says) but is reserved.
 * FROM         The caller passes one From domain. To get it, use um_keyrule_from_domain()
 *              (lib/keyrule.h): UM_ENOENT (no From / no address) and UM_ELIMIT (several From
 *              headers or addresses) are RFC 7489 6.6.1 cases the milter decides by config;
 *              they never reach this module.
 * THREADS      A struct um_dmarc is immutable after _new and shareable; um_dmarc_check() is
 *              reentrant. The PSL method uses libopendmarc's process-global PSL table:
 *              um_dmarc_new() with method PSL must not run concurrently with another
 *              um_dmarc_new() (opendmarc_policy_library_init is not thread safe); checks may.
 * OWNERSHIP    dns (or ops->arg) is borrowed and must outlive dm. All inputs are borrowed for
 *              the call. The result is self-contained (fixed-size, NUL-terminated strings).
 * ERRORS       UM_OK with res filled whenever a verdict was reached (TEMPERROR included).
 *              UM_EINVAL bad options or input (NULL from_domain); UM_ENOMEM; UM_EIO the PSL
 *              file is unreadable (PSL method, at _new).
 * LIMITS       Lookups per check: at most UM_DMARC_WALK_LABELS + 1 TXT queries for the From
 *              policy, the same per distinct non-identical domain whose org domain is needed
 *              (SPF domain, each passing DKIM d= up to UM_DMARC_MAX_DKIM), 3 for the np=
 *              existence test; all answered by the shared cache after the first message.
 */
#ifndef UM_DMARC_H
#define UM_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "dns.h"

#define UM_DMARC_WALK_LABELS 8   /* RFC 9989 4.10: shorten to 7 labels, then walk */
#define UM_DMARC_MAX_DKIM    32  /* passing signatures considered for alignment */
#define UM_DMARC_DOMAIN_MAX  254 /* 253 + NUL */
#define UM_DMARC_PSL_DEFAULT "/usr/share/publicsuffix/public_suffix_list.dat"

struct um_dmarc;

enum um_dmarc_method {
    UM_DMARC_METHOD_TREEWALK = 0, /* RFC 9989 (default) */
    UM_DMARC_METHOD_PSL,          /* RFC 7489: public suffix list, pct= */
};

/* XXX(authres): the words match enum um_auth (lib/authres.h); switch once it lands. */
enum um_dmarc_result {
    UM_DMARC_RESULT_NONE = 0,
    UM_DMARC_RESULT_PASS,
    UM_DMARC_RESULT_FAIL,
    UM_DMARC_RESULT_TEMPERROR,
    UM_DMARC_RESULT_PERMERROR,
};

enum um_dmarc_policy {
    UM_DMARC_POLICY_UNSET = 0, /* no record, or the tag is absent */
    UM_DMARC_POLICY_NONE,
    UM_DMARC_POLICY_QUARANTINE,
    UM_DMARC_POLICY_REJECT,
};

/* Which tag chose the policy. */
enum um_dmarc_policy_tag {
    UM_DMARC_TAG_NONE = 0, /* no policy (no record) */
    UM_DMARC_TAG_P,
    UM_DMARC_TAG_SP,
    UM_DMARC_TAG_NP,
};

/* The DNS seam: TXT of a name, and the result of any other lookup (A/AAAA/MX for np=). */
typedef enum um_status um_dmarc_txt_fn(void *arg, const char *name, struct um_dns_txt *res,
                                       struct um_error *err);
typedef void um_dmarc_txt_fini_fn(void *arg, struct um_dns_txt *res);
typedef enum um_status um_dmarc_rr_fn(void *arg, const char *name, int qtype,
                                      enum um_dns_result *result, struct um_error *err);
struct um_dmarc_dns_ops {
    um_dmarc_txt_fn *txt;           /* must always initialise *res */
    um_dmarc_txt_fini_fn *txt_fini; /* releases what txt filled */
    um_dmarc_rr_fn *rr;
    void *arg;
};

struct um_dmarc_opts {
    enum um_dmarc_method method;
    const char *psl_path; /* PSL method only; NULL = UM_DMARC_PSL_DEFAULT (copied) */
};

/* A DKIM result as DMARC needs it (only passing signatures align). */
struct um_dmarc_dkim {
    const char *domain;   /* d= */
    const char *selector; /* s= (for reports), may be NULL */
    bool pass;
};

struct um_dmarc_input {
    const char *from_domain; /* RFC 5322.From domain (see FROM); trailing dot allowed */
    /* Our SPF result: the domain it was evaluated for and whether it passed. */
    const char *spf_domain; /* MAIL FROM domain, or the HELO name when spf_helo; may be NULL */
    bool spf_pass;
    bool spf_helo; /* the identity was HELO (null reverse-path) */
    const struct um_dmarc_dkim *dkim;
    size_t ndkim;
    unsigned pct_roll; /* PSL method: uniform random 0..99 drawn by the caller; the message
                          is sampled when pct_roll < pct (RFC 7489 6.6.4) */
};

struct um_dmarc_res {
    enum um_dmarc_result result;
    enum um_dmarc_policy policy; /* what the domain asks for failing mail (p/sp/np) */
    enum um_dmarc_policy_tag policy_tag;
    enum um_dmarc_policy disposition; /* for this message, before local overrides: NONE on
                                         pass; policy after t=/pct= on fail; UNSET if none */
    bool dkim_aligned, spf_aligned;
    bool testing;     /* t=y seen (TREEWALK) */
    bool sampled_out; /* PSL: pct= excluded the message (policy lowered one step) */
    bool psd;         /* the record came from a psd=y domain */
    bool nonexistent; /* From domain found non-existent (np= was considered) */
    char from_domain[UM_DMARC_DOMAIN_MAX];   /* lower case, no trailing dot */
    char policy_domain[UM_DMARC_DOMAIN_MAX]; /* where the record was found ("" if none) */
    char org_domain[UM_DMARC_DOMAIN_MAX];    /* of the From domain */
    char dkim_domain[UM_DMARC_DOMAIN_MAX];   /* the aligned d= (first), "" if none */
    /* The record's tags, for logs and reports: 'n','q','r' or 0 when absent. */
    char p, sp, np;
    char adkim, aspf; /* 'r' or 's' (defaults applied) */
    int pct;          /* 0..100 (100 when absent) */
    char t, psd_tag;  /* 'y','n' or 0 (absent / unknown) */
    bool has_rua;     /* the record asks for aggregate reports (rua=) */
    char reason[320]; /* "aligned dkim d=example.com", "no policy record", "SERVFAIL on ..." */
};

UM_NODISCARD enum um_status um_dmarc_new(struct um_dns *dns, const struct um_dmarc_opts *opts,
                                         struct um_dmarc **out, struct um_error *err);
/* The same over any DNS seam (tests: an in-memory zone). ops is copied. */
UM_NODISCARD enum um_status um_dmarc_new_with_dns(const struct um_dmarc_dns_ops *ops,
                                                  const struct um_dmarc_opts *opts,
                                                  struct um_dmarc **out, struct um_error *err);
void um_dmarc_free(struct um_dmarc *dm);

/* Evaluates one message; may block on DNS (see LIMITS). */
UM_NODISCARD enum um_status um_dmarc_check(const struct um_dmarc *dm,
                                           const struct um_dmarc_input *in,
                                           struct um_dmarc_res *res, struct um_error *err);

/* One DMARC record (the TXT value), parsed. Exposed for tests and the fuzz harness. */
struct um_dmarc_record {
    enum um_dmarc_policy p, sp, np; /* UNSET when absent or invalid */
    char adkim, aspf;               /* 'r' (default) or 's' */
    int pct;                        /* 100 when absent or invalid */
    char t;                         /* 'y', 'n' (default) */
    char psd;                       /* 'y', 'n', or 'u' (absent / unknown) */
    bool has_rua;
    bool p_invalid;  /* p= absent or invalid (p reads NONE; see RECORDS) */
    bool sp_invalid; /* sp= present but invalid (RFC 7489 6.6.3 treats this like p_invalid) */
};
/* UM_OK: a DMARC record (v=DMARC1 first; see RECORDS for p_invalid). UM_EINVAL: not one;
 * err says why. Reads rec.len bytes; no allocation. */
UM_NODISCARD enum um_status um_dmarc_record_parse(struct um_str rec, struct um_dmarc_record *out,
                                                  struct um_error *err);

/* "none", "pass", "fail", "temperror", "permerror". */
const char *um_dmarc_result_name(enum um_dmarc_result r);
/* "", "none", "quarantine", "reject". */
const char *um_dmarc_policy_name(enum um_dmarc_policy p);

#endif
