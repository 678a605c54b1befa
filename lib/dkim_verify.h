/*
 * dkim_verify - inbound DKIM verification (RFC 6376, RFC 8301, RFC 8463) with libopendkim
 *
 * DESCRIPTION  A struct um_dkim_verify is one DKIM_LIB set up for verifying, with its key
 *              lookups answered by the shared resolver (um_dns_query through libopendkim's
 *              DNS callbacks; never libopendkim's own res_* stub). A session verifies one
 *              message, streaming:
 *
 *                  um_dkim_verify_begin(v, qid, &s, err);
 *                  um_dkim_verify_header(s, name, value, err);   once per header, in order
 *                  um_dkim_verify_eoh(s, err);
 *                  um_dkim_verify_body(s, chunk, err);           any number of chunks
 *                  um_dkim_verify_end(s, &res, err);             res: one row per signature
 *                  um_dkim_verify_session_free(s);
 *
 *              Every DKIM-Signature up to opts.max_signatures is evaluated (DMARC needs
 *              each d= with its own result); the rest are counted in res.unverified and not
 *              verified. Each row carries RFC 8601 evidence: header.d, header.i, header.s,
 *              header.a, header.b (shortest prefix unique in the message, at least 8
 *              characters), the key size and a reason. Result words (what the opendkim
 *              daemon writes, notes 2.7, but decided with DKIM_SIG_CHECK, never with the
 *              PASSED flag alone, which stays set on a body-hash mismatch):
 *                PASS       signature and body hash verified, algorithm and key acceptable
 *                FAIL       signature or body hash did not verify
 *                POLICY     verified or not, refused by local policy: rsa-sha1 while
 *                           !opts.allow_rsa_sha1 (RFC 8301 3.1), an RSA key shorter than
 *                           opts.min_rsa_bits (RFC 8301 3.2), libopendkim's KEYTOOSMALL
 *                TEMPERROR  the key lookup failed temporarily (SERVFAIL, timeout, ...)
 *                PERMERROR  the signature or key is unusable: syntax, no key (NXDOMAIN
 *                           or no TXT), revoked key, unknown algorithm, expired, ...
 *                NEUTRAL    not evaluated for another reason
 *              A message without signatures yields nsigs 0 and overall NONE.
 * HEADERS      um_dkim_verify_header() takes the field name (no colon) and the value exactly
 *              as the MTA hands them. With opts.value_has_leading_space (SMFIP_HDR_LEADSPC
 *              negotiated) the field is rebuilt as name ":" value, exact for simple
 *              canonicalization; without it as name ": " value. Every bare LF becomes CRLF
 *              here, in headers and body (never libopendkim's FIXCRLF, notes 2.9).
 * DNS          A lookup whose result is TEMPFAIL (SERVFAIL, REFUSED, timeout, or an answer
 *              larger than libopendkim's 8 KiB buffer) is handed to libopendkim as a DNS
 *              error, so it becomes KEYFAIL = temperror, never "no key". NXDOMAIN and
 *              NODATA answers are passed through as packets (no key = permerror).
 *              um_dkim_verify_new_with_query() takes any key-query function: tests use it
 *              with an in-memory zone.
 * THREADS      A struct um_dkim_verify is immutable after _new and may be shared by any
 *              number of threads (one DKIM_LIB, notes 2.8). A session is used by one thread
 *              at a time. Lookups block the calling thread for at most the resolver timeout.
 * OWNERSHIP    dns (or the query function's arg) is borrowed and must outlive v. qid is
 *              copied. name/value/chunk are borrowed for the call. The result returned by
 *              _end belongs to the session and stays valid until _session_free.
 * ERRORS       UM_OK: the step ran; verdicts are data (a bad signature is UM_OK with FAIL).
 *              UM_ENOMEM; UM_EINVAL bad options or a call out of order; UM_ELIMIT a header
 *              longer than UM_DKIM_VERIFY_MAX_HEADER; UM_ETEMP libopendkim failed
 *              internally for this message (the caller records dkim=temperror or tempfails).
 *              After a failed step the session is failed: later steps return the same code,
 *              _end sets every row to TEMPERROR, and _session_free is still required.
 * LIMITS       At most opts.max_signatures (1..UM_DKIM_VERIFY_MAX_SIGS) signatures are
 *              verified, so key lookups per message are bounded by it. Memory: one header
 *              at a time plus what libopendkim keeps (headers, hashes); the body is never
 *              held, and feeding stops once every signature's l= is satisfied.
 */
#ifndef UM_DKIM_VERIFY_H
#define UM_DKIM_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "dns.h"

#define UM_DKIM_VERIFY_MAX_SIGS     32           /* hard cap on opts.max_signatures */
#define UM_DKIM_VERIFY_DEFAULT_SIGS 8            /* opts.max_signatures 0 means this */
#define UM_DKIM_VERIFY_MIN_RSA_BITS 1024         /* opts.min_rsa_bits 0 means this */
#define UM_DKIM_VERIFY_MAX_HEADER   (256 * 1024) /* one header field, after CRLF fixing */
#define UM_DKIM_VERIFY_KEY_PACKET   8192         /* libopendkim's reply buffer (MAXPACKET) */

/* XXX(authres): becomes enum um_auth (lib/authres.h) once that lands; same words. */
enum um_dkim_verify_result {
    UM_DKIM_VERIFY_NONE = 0, /* no signature (overall only) */
    UM_DKIM_VERIFY_PASS,
    UM_DKIM_VERIFY_FAIL,
    UM_DKIM_VERIFY_NEUTRAL,
    UM_DKIM_VERIFY_POLICY,
    UM_DKIM_VERIFY_TEMPERROR,
    UM_DKIM_VERIFY_PERMERROR,
};

struct um_dkim_verify;
struct um_dkim_verify_session;

struct um_dkim_verify_opts {
    size_t max_signatures;        /* 0 = UM_DKIM_VERIFY_DEFAULT_SIGS; max UM_..._MAX_SIGS */
    unsigned min_rsa_bits;        /* 0 = UM_DKIM_VERIFY_MIN_RSA_BITS */
    bool allow_rsa_sha1;          /* false: rsa-sha1 signatures give POLICY */
    bool value_has_leading_space; /* SMFIP_HDR_LEADSPC negotiated (see HEADERS) */
};

/* One key lookup as the seam sees it: the reply packet copied into buf (len bytes; at most
 * buflen), or a result saying there is none. TEMPFAIL means no usable reply. */
struct um_dkim_key_answer {
    enum um_dns_result result; /* OK / NXDOMAIN / NODATA: packet in buf; TEMPFAIL: none */
    size_t len;                /* packet bytes in buf */
    char reason[128];          /* TEMPFAIL: why */
};

/* Looks up TXT name (sel._domainkey.dom) and fills buf/ans; UM_OK whenever ans is set
 * (TEMPFAIL included). Called from libopendkim's callbacks on the verifying thread. */
typedef enum um_status um_dkim_key_query_fn(void *arg, const char *name, unsigned char *buf,
                                            size_t buflen, struct um_dkim_key_answer *ans,
                                            struct um_error *err);

/* One verified (or refused) signature. Strings are NUL-terminated and never NULL ("" when
 * the signature lacks the tag or it could not be read). */
struct um_dkim_verify_sig {
    enum um_dkim_verify_result result;
    const char *d;     /* header.d (signing domain, as in the signature) */
    const char *i;     /* header.i ("@d" when i= is absent, as libopendkim reports it) */
    const char *s;     /* header.s */
    const char *a;     /* header.a: "rsa-sha256", "rsa-sha1", "ed25519-sha256" or "" */
    const char *b;     /* header.b: shortest unique prefix of b=, >= 8 chars when b= is */
    unsigned key_bits; /* RSA modulus bits; 256 for ed25519; 0 when no key was read */
    int lib_error;     /* libopendkim DKIM_SIGERROR_* (0 = none), for debug logs */
    char reason[128];  /* "ok", "body hash mismatch", "key retrieval failed: ...", ... */
};

struct um_dkim_verify_results {
    enum um_dkim_verify_result overall; /* PASS if any row passed; else NONE when nsigs is 0;
                                           else the first row's result (for a summary) */
    size_t nsigs;                       /* rows in sigs (verified signatures) */
    const struct um_dkim_verify_sig *sigs;
    size_t unverified; /* DKIM-Signature headers beyond max_signatures (not verified) */
};

/* The verifier for one config snapshot, backed by the shared resolver. opts NULL = all
 * defaults. */
UM_NODISCARD enum um_status um_dkim_verify_new(struct um_dns *dns,
                                               const struct um_dkim_verify_opts *opts,
                                               struct um_dkim_verify **out, struct um_error *err);
/* The same with any key-query function (tests: an in-memory zone). */
UM_NODISCARD enum um_status um_dkim_verify_new_with_query(um_dkim_key_query_fn *query, void *arg,
                                                          const struct um_dkim_verify_opts *opts,
                                                          struct um_dkim_verify **out,
                                                          struct um_error *err);
/* NULL does nothing. No session may be live. */
void um_dkim_verify_free(struct um_dkim_verify *v);

/* One message. qid may be NULL (copied; names the message in libopendkim only). */
UM_NODISCARD enum um_status um_dkim_verify_begin(struct um_dkim_verify *v, const char *qid,
                                                 struct um_dkim_verify_session **out,
                                                 struct um_error *err);
UM_NODISCARD enum um_status um_dkim_verify_header(struct um_dkim_verify_session *s,
                                                  struct um_str name, struct um_str value,
                                                  struct um_error *err);
UM_NODISCARD enum um_status um_dkim_verify_eoh(struct um_dkim_verify_session *s,
                                               struct um_error *err);
/* Body bytes as the MTA sends them (CRLF or LF line ends). Cheap no-op once nothing more
 * is needed (no signatures, or every l= satisfied). */
UM_NODISCARD enum um_status um_dkim_verify_body(struct um_dkim_verify_session *s,
                                                struct um_str chunk, struct um_error *err);
/* Ends the message, runs the key lookups, fills *res (valid until _session_free). */
UM_NODISCARD enum um_status um_dkim_verify_end(struct um_dkim_verify_session *s,
                                               struct um_dkim_verify_results *res,
                                               struct um_error *err);
/* NULL does nothing. */
void um_dkim_verify_session_free(struct um_dkim_verify_session *s);

/* "none", "pass", "fail", "neutral", "policy", "temperror", "permerror" (RFC 8601). */
const char *um_dkim_verify_result_name(enum um_dkim_verify_result r);

#endif
