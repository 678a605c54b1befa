/*
 * dkim_sign - outbound DKIM signing (RFC 6376, RFC 8463) behind struct um_signer
 *
 * DESCRIPTION  A struct um_signer is one loaded private key plus its d=, s=, optional i= and
 *              algorithm (rsa-sha256 or ed25519-sha256). A struct um_dkim_sign is the signing
 *              context of one config snapshot: canonicalization and the signed-header lists.
 *              A struct um_dkim_sign_session signs one message with one or more signers
 *              (RFC 8463 dual signing: RSA and Ed25519 on the same message), streaming:
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
 * HEADERS      um_dkim_sign_header() takes the field name (no colon) and the value exactly as
 *              the MTA hands them. Folds may be LF or CRLF; every bare LF (in headers and in
 *              the body) becomes CRLF here. With opts.value_has_leading_space (the milter
 *              negotiated SMFIP_HDR_LEADSPC) the field is rebuilt as name ":" value, which is
 *              what simple header canonicalization needs; without it, as name ": " value
 *              (a guess, harmless for relaxed). The result of um_dkim_sign_value() is the
 *              header value without the "DKIM-Signature:" name, folded with LF + TAB only
 *              (no CR), as smfi_insheader() wants it; it starts with one space exactly when
 *              opts.value_has_leading_space is set (the MTA then inserts it verbatim).
 *              Prepend the headers in the order returned; each signature covers only the
 *              original headers, so their relative order does not matter to verifiers.
 * SIGNED SET   Default h=: From (oversigned: listed once more than it occurs), To, Cc,
 *              Subject, Date, Message-ID, MIME-Version, Content-Type,
 *              Content-Transfer-Encoding, Reply-To, In-Reply-To, References, List-Id,
 *              List-Help, List-Unsubscribe, List-Subscribe, List-Post, List-Owner,
 *              List-Archive. Never l= (the whole body is always signed).
 * THREADS      A struct um_dkim_sign and loaded signers are immutable and may be shared by
 *              any number of threads (one DKIM_LIB, set up before it is shared). A session is
 *              used by one thread at a time (one libopendkim handle per signer per message).
 * OWNERSHIP    um_dkim_sign_new() copies the header lists. um_dkim_sign_key_load() copies
 *              its strings; the key text stays private to this module, is wiped with
 *              explicit_bzero() on free, and never appears in errors or logs. A session
 *              borrows ds and the signers (they must outlive it) and owns its results.
 * ERRORS       UM_EINVAL bad key/option (the message names the key and file, never its
 *              bytes); UM_ENOENT key file missing; UM_EIO read error; UM_ENOMEM; UM_ELIMIT a
 *              header longer than UM_DKIM_SIGN_MAX_HEADER; UM_ETEMP libopendkim failed to
 *              sign this message (the caller lets the message through unsigned or tempfails,
 *              per policy). A failed session step leaves the session failed: later steps
 *              return the same code, and um_dkim_sign_session_free() is still required.
 * LIMITS       Memory per session: one header at a time plus an 8 KiB conversion buffer,
 *              plus what libopendkim keeps (the signed headers); the body is never held.
 *              At most UM_DKIM_SIGN_MAX_SIGNERS signers per message.
 */
#ifndef UM_DKIM_SIGN_H
#define UM_DKIM_SIGN_H

#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#define UM_DKIM_SIGN_MAX_SIGNERS 8
#define UM_DKIM_SIGN_MAX_HEADER  (256 * 1024) /* bytes of one header field, after CRLF fixing */
#define UM_DKIM_SIGN_MIN_RSA_BITS 1024
#define UM_DKIM_SIGN_MAX_KEYFILE (64 * 1024) /* a PEM file larger than this is refused */

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
 * owned by root or spec->allowed_uid; RSA needs >= UM_DKIM_SIGN_MIN_RSA_BITS bits. */
UM_NODISCARD enum um_status um_dkim_sign_key_load(const struct um_dkim_sign_keyspec *spec,
                                                  struct um_signer **out, struct um_error *err);

/* The same from PEM text in memory (keygen round trips, tests); spec->path only names the
 * source in errors and may be NULL. pem is borrowed; the caller wipes its own copy. */
UM_NODISCARD enum um_status um_dkim_sign_key_from_pem(const struct um_dkim_sign_keyspec *spec,
                                                      struct um_str pem, struct um_signer **out,
                                                      struct um_error *err);

/* Wipes and frees; NULL does nothing. */
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

/* "rsa-sha256" / "ed25519-sha256"; "rsa" / "ed25519" for k=. */
const char *um_dkim_sign_alg_name(enum um_dkim_alg alg);
const char *um_dkim_sign_alg_keytype(enum um_dkim_alg alg);

/* Signing context of one config snapshot. opts NULL = all defaults. Header names must be
 * RFC 5322 field names made of letters, digits and '-' (libopendkim turns them into a regex). */
UM_NODISCARD enum um_status um_dkim_sign_new(const struct um_dkim_sign_opts *opts,
                                             struct um_dkim_sign **out, struct um_error *err);
void um_dkim_sign_free(struct um_dkim_sign *ds);

/* One message. qid (may be NULL) is copied and only names the message in libopendkim. */
UM_NODISCARD enum um_status um_dkim_sign_begin(const struct um_dkim_sign *ds,
                                               const struct um_signer *const *signers,
                                               size_t nsigners, const char *qid,
                                               struct um_dkim_sign_session **out,
                                               struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_header(struct um_dkim_sign_session *s,
                                                struct um_str name, struct um_str value,
                                                struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_eoh(struct um_dkim_sign_session *s,
                                             struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_body(struct um_dkim_sign_session *s, struct um_str chunk,
                                              struct um_error *err);
UM_NODISCARD enum um_status um_dkim_sign_end(struct um_dkim_sign_session *s,
                                             struct um_error *err);

/* After a successful um_dkim_sign_end(): one value per signer, in the order given to
 * um_dkim_sign_begin(). Owned by the session. */
size_t um_dkim_sign_count(const struct um_dkim_sign_session *s);
const char *um_dkim_sign_value(const struct um_dkim_sign_session *s, size_t i);
const struct um_signer *um_dkim_sign_signer(const struct um_dkim_sign_session *s, size_t i);

void um_dkim_sign_session_free(struct um_dkim_sign_session *s);

#endif
