/*
 * dkim_sign - outbound DKIM signing (RFC 6376, RFC 8463) behind struct um_signer
 *
 * DESCRIPTION  A struct um_signer is one loaded private key plus its d=, s=, optional i= and
 *              algorithm (rsa-sha256 or ed25519-sha256); the key is decoded once, at load.
 *              A struct um_dkim_sign is the signing context of one config snapshot:
 *              canonicalization and the signed-header lists. A struct um_dkim_sign_session
 *              signs one message with one or more signers (RFC 8463 dual signing: RSA and
 *              Ed25519 on the same message), streaming:
 *
 *                  um_dkim_sign_begin(ds, signers, n, qid, &s, err);
 *                  um_dkim_sign_header(s, name, value, err);       once per header, in order
 *                  um_dkim_sign_eoh(s, err);
 *                  um_dkim_sign_body(s, chunk, err);               any number of chunks
 *                  um_dkim_sign_end(s, err);
 *                  for (i = 0; i < um_dkim_sign_count(s); i++)
 *                      smfi_insheader(ctx, 0, "DKIM-Signature", um_dkim_sign_value(s, i));
 *                  um_dkim_sign_session_free(s);
 *
 *              Our own signer on OpenSSL 3 (no libopendkim on this path): RFC 6376 3.4
 *              canonicalization, 3.7 hashes, 5.4.2 header selection; rsa-sha256 is
 *              RSASSA-PKCS1-v1_5 over the SHA-256 of the canonical data, ed25519-sha256 is
 *              PureEdDSA over that SHA-256 digest (RFC 8463 3). The body is hashed once per
 *              message and shared by all signers, as is the hash of the signed headers.
 * HEADERS      um_dkim_sign_header() takes the field name (no colon) and the value exactly as
 *              the MTA hands them. Folds may be LF or CRLF; every bare LF (in headers and in
 *              the body) becomes CRLF here. With opts.value_has_leading_space (the milter
 *              negotiated SMFIP_HDR_LEADSPC) the field is rebuilt as name ":" value, which is
 *              what simple header canonicalization needs; without it, as name ": " value
 *              (a guess, harmless for relaxed). The result of um_dkim_sign_value() is the
 *              header value without the "DKIM-Signature:" name, folded with LF + TAB only
 *              (no CR), as smfi_insheader() wants it; it starts with one space exactly when
 *              opts.value_has_leading_space is set (the MTA then inserts it verbatim).
 *              Lines stay within 76 characters (counting "DKIM-Signature: ") unless a
 *              single d=, s= or i= tag is longer; h= folds after a colon, b= anywhere.
 *              Prepend the headers in the order returned; each signature covers only the
 *              original headers, so their relative order does not matter to verifiers.
 * SIGNED SET   Default h=: From (oversigned: listed once more than it occurs), To, Cc,
 *              Subject, Date, Message-ID, MIME-Version, Content-Type,
 *              Content-Transfer-Encoding, Reply-To, In-Reply-To, References, List-Id,
 *              List-Help, List-Unsubscribe, List-Subscribe, List-Post, List-Owner,
 *              List-Archive. h= names every present header whose name is in sign_headers
 *              or oversign_headers (ASCII case-insensitive), in message order and spelled
 *              as in the message; then each oversign_headers name once more, as configured.
 *              Repeated names are hashed from the bottom up (RFC 6376 5.4.2), so the extra
 *              entries stand for absent instances and stop any being added later.
 * TAGS         In this order: v=1; a=; c=<header>/<body>; d=; s=; t=; i= (if configured);
 *              bh=; h=; b= (last). Never l= (the whole body is always signed), q=, x= or z=.
 * THREADS      A struct um_dkim_sign and loaded signers are immutable and may be shared by
 *              any number of threads (the decoded key and the fetched SHA-256 are only read;
 *              OpenSSL contexts are made per message). A session is used by one thread at a
 *              time. The canonicalizers below are reentrant.
 * OWNERSHIP    um_dkim_sign_new() copies the header lists. um_dkim_sign_key_load() copies
 *              its strings; the decoded key stays private to this module (OpenSSL clears
 *              its private parts when it is freed), and neither the key nor the file bytes
 *              (wiped with explicit_bzero() after decoding) appear in errors or logs. A
 *              session borrows ds and the signers (they must outlive it) and owns its
 *              results.
 * ERRORS       UM_EINVAL bad key/option (the message names the key and file, never its
 *              bytes); UM_ENOENT key file missing; UM_EIO read error; UM_ENOMEM; UM_ELIMIT a
 *              header longer than UM_DKIM_SIGN_MAX_HEADER, or signed headers beyond
 *              UM_DKIM_SIGN_MAX_SIGNED_HEADERS / UM_DKIM_SIGN_MAX_SIGNED_BYTES; UM_EINVAL
 *              from um_dkim_sign_eoh() when h= would be empty (no listed header present and
 *              no oversign_headers); UM_ETEMP OpenSSL failed to hash or sign this message
 *              (the caller lets the message through unsigned or tempfails, per policy). A
 *              failed session step leaves the session failed: later steps return the same
 *              code, and um_dkim_sign_session_free() is still required. (A bad field name
 *              and a call out of order are UM_EINVAL without failing the session.)
 * LIMITS       Memory per session: the canonical form of the headers that will be signed
 *              (until um_dkim_sign_eoh()), an 8 KiB body canonicalization buffer, two
 *              SHA-256 states and the results; the body is never held. Work is O(headers +
 *              body) plus one signature per signer. At most UM_DKIM_SIGN_MAX_SIGNERS
 *              signers per message.
 */
#ifndef UM_DKIM_SIGN_H
#define UM_DKIM_SIGN_H

#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#define UM_DKIM_SIGN_MAX_SIGNERS        8
#define UM_DKIM_SIGN_MAX_HEADER         (256 * 1024) /* bytes of one header field, after CRLF fixing */
#define UM_DKIM_SIGN_MAX_SIGNED_HEADERS 1000 /* header fields named in one h= (extras aside) */
#define UM_DKIM_SIGN_MAX_SIGNED_BYTES   (1024 * 1024) /* their canonical form, names included */
#define UM_DKIM_SIGN_MIN_RSA_BITS       1024
#define UM_DKIM_SIGN_MAX_KEYFILE        (64 * 1024) /* a PEM file larger than this is refused */
#define UM_DKIM_SIGN_DIGEST_LEN         32          /* SHA-256 */

enum um_dkim_alg {
    UM_DKIM_ALG_RSA_SHA256 = 0,
    UM_DKIM_ALG_ED25519_SHA256,
};

enum um_dkim_canon {
    UM_DKIM_CANON_RELAXED = 0, /* the default */
    UM_DKIM_CANON_SIMPLE,
};

struct um_signer;
struct um_dkim_sign;
struct um_dkim_sign_session;
struct um_dkim_canon_body;

/* What a key is, from config. All strings are borrowed for the call and copied. */
struct um_dkim_sign_keyspec {
    const char *name;     /* the config's key name, used in errors ("main-rsa") */
    const char *domain;   /* d= */
    const char *selector; /* s= */
    const char *identity; /* i= ("@example.com" or "user@sub.example.com"), or NULL */
    const char *path;     /* PEM file (PKCS#8 or traditional; RSA or Ed25519; unencrypted) */
    uid_t allowed_uid;    /* besides root, the owner the key file may have (our user) */
};

struct um_dkim_sign_opts {
    enum um_dkim_canon header_canon; /* zero-initialised opts mean relaxed/relaxed */
    enum um_dkim_canon body_canon;
    const char *const *sign_headers;     /* NULL-terminated; NULL = the default set above */
    const char *const *oversign_headers; /* NULL-terminated; NULL = {"From"}; empty = none */
    bool value_has_leading_space;        /* SMFIP_HDR_LEADSPC negotiated (see HEADERS) */
    uint64_t fixed_time;                 /* t= for tests and reproducible output; 0 = now */
};

/* Key loading. The file must be a regular file, mode & 077 == 0 (no group/other access),
 * owned by root or spec->allowed_uid; RSA needs >= UM_DKIM_SIGN_MIN_RSA_BITS bits. The key
 * is decoded here, once; signing never parses it again. */
UM_NODISCARD enum um_status um_dkim_sign_key_load(const struct um_dkim_sign_keyspec *spec,
                                                  struct um_signer **out, struct um_error *err);

/* The same from PEM text in memory (keygen round trips, tests); spec->path only names the
 * source in errors and may be NULL. pem is borrowed; the caller wipes its own copy. */
UM_NODISCARD enum um_status um_dkim_sign_key_from_pem(const struct um_dkim_sign_keyspec *spec,
                                                      struct um_str pem, struct um_signer **out,
                                                      struct um_error *err);

/* Frees the key (OpenSSL clears its private parts); NULL does nothing. */
void um_dkim_sign_key_free(struct um_signer *key);

/* Accessors (never NULL except identity; valid while key lives). */
enum um_dkim_alg um_dkim_sign_key_alg(const struct um_signer *key);
const char *um_dkim_sign_key_name(const struct um_signer *key);
const char *um_dkim_sign_key_domain(const struct um_signer *key);
const char *um_dkim_sign_key_selector(const struct um_signer *key);
const char *um_dkim_sign_key_identity(const struct um_signer *key);
unsigned um_dkim_sign_key_bits(const struct um_signer *key); /* RSA modulus bits; 256 ed25519 */

/* The public half as published in p= (RFC 6376 3.6.1, RFC 8463 4): base64 of the DER
 * SubjectPublicKeyInfo for RSA, of the raw 32-byte key for Ed25519. NUL-terminated. */
const char *um_dkim_sign_key_public_b64(const struct um_signer *key);

/* The key's one operation, sign(digest) -> signature, all a session needs from it (so the
 * key could move to a helper process). digest is the SHA-256 of the canonical data;
 * rsa-sha256: RSASSA-PKCS1-v1_5 (RFC 8017 8.2) of it, ed25519-sha256: PureEdDSA (RFC 8032
 * 5.1) with the 32 digest bytes as the message (RFC 8463 3). *siglen is the capacity of sig
 * on entry (at least um_dkim_sign_key_sig_size()) and the signature length on return.
 * Safe from any thread. UM_ETEMP when OpenSSL fails; UM_EINVAL when sig is too small. */
size_t um_dkim_sign_key_sig_size(const struct um_signer *key);
UM_NODISCARD enum um_status um_dkim_sign_key_sign_digest(const struct um_signer *key,
                                                         const unsigned char *digest,
                                                         unsigned char *sig, size_t *siglen,
                                                         struct um_error *err);

/* "rsa-sha256" / "ed25519-sha256"; "rsa" / "ed25519" for k=. */
const char *um_dkim_sign_alg_name(enum um_dkim_alg alg);
const char *um_dkim_sign_alg_keytype(enum um_dkim_alg alg);

/* Signing context of one config snapshot. opts NULL = all defaults. Header names must be
 * RFC 5322 field names made of letters, digits and '-' (they are written into h= as is),
 * at most 64 bytes each and 900 bytes per list. */
UM_NODISCARD enum um_status um_dkim_sign_new(const struct um_dkim_sign_opts *opts,
                                             struct um_dkim_sign **out, struct um_error *err);
void um_dkim_sign_free(struct um_dkim_sign *ds);

/* One message. qid is not used (NULL is fine); it stays for source compatibility. */
UM_NODISCARD enum um_status um_dkim_sign_begin(const struct um_dkim_sign *ds,
                                               const struct um_signer *const *signers,
                                               size_t nsigners, const char *qid,
                                               struct um_dkim_sign_session **out,
                                               struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_header(struct um_dkim_sign_session *s, struct um_str name,
                                                struct um_str value, struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_eoh(struct um_dkim_sign_session *s, struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_body(struct um_dkim_sign_session *s, struct um_str chunk,
                                              struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_end(struct um_dkim_sign_session *s, struct um_error *err);

/* After a successful um_dkim_sign_end(): one value per signer, in the order given to
 * um_dkim_sign_begin(). Owned by the session. */
size_t um_dkim_sign_count(const struct um_dkim_sign_session *s);
const char *um_dkim_sign_value(const struct um_dkim_sign_session *s, size_t i);
const struct um_signer *um_dkim_sign_signer(const struct um_dkim_sign_session *s, size_t i);

void um_dkim_sign_session_free(struct um_dkim_sign_session *s);

/* ---- canonicalization (RFC 6376 3.4), as the session uses it; known-answer tests and
 * fuzzing drive it directly. Output goes to a sink in pieces; the sink may not fail (it
 * records its own errors). Input bytes are arbitrary; CRLF, bare LF and a CR that ends the
 * last chunk of a body are line ends, any other CR is an ordinary byte. */
typedef void um_dkim_canon_sink_fn(void *arg, const char *p, size_t len);

/* One header field, canonical, with its final CRLF: name and value as um_dkim_sign_header()
 * takes them (the value without its final line end; value_has_leading_space as in HEADERS).
 * simple: the field as rebuilt, bare LF -> CRLF. relaxed (3.4.2): lower-case name without
 * trailing WSP, ':', the value unfolded, WSP runs as one SP, no WSP at either end. */
void um_dkim_canon_header(enum um_dkim_canon canon, struct um_str name, struct um_str value,
                          bool value_has_leading_space, um_dkim_canon_sink_fn *sink, void *arg);

/* Streaming body canonicalization; chunks may be split anywhere (a CRLF, a WSP run or the
 * trailing empty lines may straddle them). simple (3.4.3): empty lines at the end dropped,
 * CRLF added to a last line without one, an empty body is CRLF. relaxed (3.4.4): WSP runs as
 * one SP, WSP before a line end dropped, then the same for empty lines and the last line; an
 * empty body is empty. Memory O(1): empty lines are held back as a count. */
UM_NODISCARD enum um_status um_dkim_canon_body_new(enum um_dkim_canon canon,
                                                   um_dkim_canon_sink_fn *sink, void *arg,
                                                   struct um_dkim_canon_body **out,
                                                   struct um_error *err);
void um_dkim_canon_body_update(struct um_dkim_canon_body *bc, struct um_str chunk);
void um_dkim_canon_body_final(struct um_dkim_canon_body *bc); /* then only _free */
void um_dkim_canon_body_free(struct um_dkim_canon_body *bc);

#endif
