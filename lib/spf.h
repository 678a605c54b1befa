/*
 * spf - SPF (RFC 7208) with libspf2, guarded
 *
 * DESCRIPTION  um_spf_check() evaluates the MAIL FROM identity, or the HELO identity when
 *              MAIL FROM is empty (RFC 7208 2.3, 2.4), for one client IP and returns an
 *              RFC 8601 result word with its evidence: the identity, the domain checked,
 *              the value for Authentication-Results (smtp.mailfrom / smtp.helo), a short
 *              reason and a Received-SPF value (RFC 7208 9.1) built here, never libspf2's.
 *              libspf2 evaluates; our DNS layer under it (backed by the shared um_dns
 *              resolver) enforces what libspf2 lacks or gets wrong:
 *                - RFC 7208 4.6.4: at most UM_SPF_MAX_DNS_TERMS DNS-querying terms
 *                  (libspf2 lets an 11th run), at most UM_SPF_MAX_VOID void lookups
 *                  (NXDOMAIN or NODATA; libspf2 has no such limit), at most 10 A/AAAA
 *                  lookups per mx and per ptr term;
 *                - every SPF record a TXT answer carries is checked against the RFC 7208
 *                  grammar (section 12, macros per 7.1) before libspf2 compiles it; a
 *                  record outside it, or with a macro whose expansion could be oversized
 *                  (libspf2 CVE-2021-33912/-33913, CVE-2023-42118), gives permerror with
 *                  a reason and libspf2 never sees it;
 *                - SERVFAIL or a timeout gives temperror (libspf2 reports "invalid");
 *                - RR type 99 is never asked; libspf2's exp= text is never used.
 * LOOPBACK     libspf2 passes 127.0.0.0/8 and ::1 (also IPv4-mapped) without DNS. We never
 *              let that through: a loopback client gets UM_AUTH_NONE, reason "loopback
 *              client not evaluated", and no DNS is asked (the milter skips SPF for local
 *              submissions before it gets here).
 * REWRITES     Valid records are handed to libspf2 rewritten where it gets RFC 7208 wrong:
 *              redirect= last (dropped with "all"), exp= and unknown modifiers dropped, /0
 *              CIDRs expressed in terms libspf2 compiles (see spf.c). libspf2's macro
 *              expander is still used for well-formed macros; it mis-expands %{dN} when N
 *              is at least the label count (XXX in spf.c, pinned in test_spf).
 * SUITE        openspf rfc7208-tests.yml: 202/203 (test_spf_suite; the one failure is a
 *              name with spaces that lib/dns cannot send).
 * THREADS      One struct um_spf is shared by all threads; um_spf_check() may run in many
 *              threads at once. Each evaluation borrows a libspf2 server with its own DNS
 *              layer from a pool (a mutex held only to pop/push), so the per-evaluation
 *              counters live in request-scoped state, not in statics or thread-locals.
 *              A new slot (SPF_server_new_dns + layer) costs about 10 us, paid once per
 *              level of concurrency.
 * BLOCKING     um_spf_check() blocks on DNS: at most about (terms + 1) x 11 lookups, each
 *              bounded by the resolver's timeout.
 * OWNERSHIP    receiver_name and query strings are borrowed for the call (copied when
 *              kept). The um_dns (or resolver seam) must outlive the um_spf. Result strings
 *              are heap-owned by the result: um_spf_result_fini() releases them.
 * ERRORS       um_spf_new(): UM_ENOMEM, UM_EINVAL (receiver_name not a host name).
 *              um_spf_check(): UM_OK with res->result set (a DNS failure is
 *              UM_AUTH_TEMPERROR, not an error); UM_EINVAL a client_ip that is not an
 *              IPv4/IPv6 address; UM_ENOMEM. On error res holds no verdict (result NONE)
 *              but may still be finied.
 */
#ifndef UM_SPF_H
#define UM_SPF_H

#include <stddef.h>

#include "authres.h"
#include "common.h"
#include "dns.h"

#define UM_SPF_MAX_DNS_TERMS 10   /* RFC 7208 4.6.4 */
#define UM_SPF_MAX_VOID      2    /* RFC 7208 4.6.4 */
#define UM_SPF_MAX_MX_PTR    10   /* RFC 7208 4.6.4: address lookups per mx / ptr term */
#define UM_SPF_MAX_RECORD    4096 /* bytes of one SPF record we accept */

struct um_spf;

struct um_spf_query {
    const char *client_ip; /* "192.0.2.7" or "2001:db8::7" (an IPv4-mapped IPv6 is IPv4) */
    const char *helo;      /* HELO/EHLO argument; may be NULL or "" */
    const char *mail_from; /* envelope sender without <>; NULL or "" is the null sender */
};

struct um_spf_result {
    enum um_auth result;
    const char *identity; /* "mailfrom" or "helo" (static) */
    char *domain;         /* domain whose policy was evaluated ("" when none) */
    const char *ar_ptype; /* "smtp" (static) */
    const char *ar_prop;  /* "mailfrom" or "helo" (static) */
    char *ar_value;       /* the A-R property value: MAIL FROM domain, or the HELO name */
    char reason[160];     /* short, our words: "matched ip4:192.0.2.0/24", "void lookup
                              limit (2) exceeded", "dns: timed out after 5 s" */
    char *received_spf;   /* Received-SPF value (RFC 7208 9.1), unfolded, no field name */
};

/* The resolver seam: um_spf_new() uses um_dns_query() / um_dns_answer_free() on dns;
 * tests pass their own (an in-memory zone). query() must fill *out as um_dns_query does
 * (result, and rdata raw per RR type: A 4 bytes, AAAA 16, MX 2-byte preference + wire
 * name, PTR wire name, TXT character-strings); packet may be NULL. */
typedef enum um_status um_spf_query_fn(void *arg, const char *name, int qtype,
                                       struct um_dns_answer **out, struct um_error *err);
typedef void um_spf_answer_free_fn(void *arg, struct um_dns_answer *ans);

struct um_spf_resolver {
    um_spf_query_fn *query;
    um_spf_answer_free_fn *answer_free;
    void *arg;
};

/* receiver_name names us in Received-SPF and in %{r}. dns is borrowed (must outlive). */
UM_NODISCARD enum um_status um_spf_new(struct um_dns *dns, const char *receiver_name,
                                       struct um_spf **out, struct um_error *err);
/* The same over any resolver (tests); *resolver is copied. */
UM_NODISCARD enum um_status um_spf_new_resolver(const struct um_spf_resolver *resolver,
                                                const char *receiver_name, struct um_spf **out,
                                                struct um_error *err);
/* NULL does nothing. No um_spf_check() may be running. */
void um_spf_free(struct um_spf *spf);

/* Evaluates q (see DESCRIPTION). res is initialised here; call um_spf_result_fini() after
 * any return. May block on DNS. */
UM_NODISCARD enum um_status um_spf_check(struct um_spf *spf, const struct um_spf_query *q,
                                         struct um_spf_result *res, struct um_error *err);
void um_spf_result_fini(struct um_spf_result *res);

/* Checks one SPF record (the TXT text, starting "v=spf1") against RFC 7208 section 12 and
 * our expansion bounds. True when libspf2 may see it; else *why says what is wrong (static
 * text plus offset into why_buf). Pure; used by the DNS layer and the fuzz harness. */
bool um_spf_record_is_valid(struct um_str rec, char *why, size_t whylen);

#endif
