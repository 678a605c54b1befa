/*
 * dkim_sign.c - outbound DKIM signing: our own RFC 6376 / RFC 8463 signer on OpenSSL 3
 *
 * Design note. Keys: a PEM file is read once (regular file, no group/other bits, owned by root
 * or our user, at most UM_DKIM_SIGN_MAX_KEYFILE bytes), decoded once with the OpenSSL 3 EVP
 * API, and the EVP_PKEY is what struct um_signer keeps; the file bytes are wiped at once.
 * Decoding costs more than an RSA-2048 signature (~350 us with OpenSSL 3), which is why
 * libopendkim, which wants PEM text per message, was dropped from this path. The public half
 * is derived at load time (p= form), so check-keys never needs the private key. A key does
 * one thing after load, sign(digest) -> signature (um_dkim_sign_key_sign_digest), with
 * OpenSSL contexts made per call: the EVP_PKEY is only read, so threads share it.
 *
 * Message: headers are canonicalized as they arrive, but only those whose name is in the
 * signed set are kept (name + canonical bytes in one buffer). At end of headers the h= list
 * is fixed (message order), the kept fields are hashed in RFC 6376 5.4.2 order (for each
 * name, bottom instance first: a counting sort by name gives each entry its mirror
 * instance in O(n)), and the buffer is dropped. That header hash is common to all signers,
 * as is the body hash (same canonicalization, same SHA-256); at the end each signer copies
 * the header state, adds its own DKIM-Signature field (b= empty, no final CRLF, RFC 6376
 * 3.7) and signs the digest. SHA-256 is fetched once per struct um_dkim_sign.
 *
 * Body canonicalization is a small state machine fed by spans: runs of ordinary bytes are
 * copied with memcpy into an 8 KiB buffer that is hashed when full; only CR, LF (and SP/HTAB
 * for relaxed) take the slow path. State between chunks: a CR whose LF may come next, a
 * pending WSP run (relaxed), whether the line has output, and a count of held-back empty
 * lines (they matter only if more text follows). So any split of the body gives the same
 * bytes, the work is O(body) and the memory O(1).
 *
 * Output: the field is folded as it is built (LF + TAB; the MTA makes CRLF), and the text up
 * to "b=" is exactly what was hashed, so simple header canonicalization holds: a verifier
 * removes the b= value with its folding whitespace and sees the same bytes.
 *
 * XXX keygen.c also links OpenSSL (key generation, p= parsing): both are key modules.
 */
#define _DEFAULT_SOURCE /* explicit_bzero() is glibc/BSD, not POSIX */
#include "dkim_sign.h"
#include "fileperm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "buf.h"
#include "domain.h"

#define SIGN_NAME_MAX   128  /* key names, for error messages only */
#define SIGN_CANON_BUF  8192 /* body canonicalization output, hashed when full */
#define SIGN_FOLD_WIDTH 76   /* longest line we write, "DKIM-Signature: " included */

struct um_signer {
    char *name, *domain, *selector, *identity, *path;
    enum um_dkim_alg alg;
    unsigned bits;
    EVP_PKEY *pkey; /* decoded once; only read afterwards; OpenSSL clears it on free */
    size_t sig_size;
    char *pub_b64;
};

struct um_dkim_sign {
    enum um_dkim_canon hcanon, bcanon;
    bool leadspc;
    uint64_t fixed_time;
    char **names;    /* NULL-terminated: sign_headers, then oversign names not among them */
    char **oversign; /* NULL-terminated copy (maybe empty): the extra h= entries */
    EVP_MD *sha256;  /* fetched once; shared read-only */
};

struct um_dkim_canon_body {
    enum um_dkim_canon canon;
    um_dkim_canon_sink_fn *sink;
    void *arg;
    bool cr;         /* the last byte was a CR; whether an LF follows is not known yet */
    bool wsp;        /* relaxed: a WSP run is pending inside the line */
    bool in_line;    /* the current line has output */
    bool emitted;    /* anything at all was output */
    uint64_t blanks; /* empty lines held back: written only if text follows them */
    size_t len;
    char buf[SIGN_CANON_BUF];
};

enum sign_state { SIGN_HEADERS, SIGN_BODY, SIGN_DONE, SIGN_FAILED };

struct sign_one {
    const struct um_signer *key;
    char *value;
};

/* A kept header field: offsets into the session's store. */
struct sign_hdr {
    size_t name_off, name_len;   /* the name as written, trailing WSP trimmed (for h=) */
    size_t canon_off, canon_len; /* the canonical field with its CRLF */
    size_t list;                 /* index into ds->names */
};

struct um_dkim_sign_session {
    const struct um_dkim_sign *ds;
    enum sign_state state;
    enum um_status failed; /* the code to repeat once SIGN_FAILED */
    size_t n;
    struct sign_one one[UM_DKIM_SIGN_MAX_SIGNERS];
    EVP_MD_CTX *hctx;         /* the signed headers, common to all signers */
    EVP_MD_CTX *bctx;         /* the canonical body */
    bool hash_failed;         /* an EVP_DigestUpdate() from a sink failed */
    struct um_buf store;      /* kept headers (names and canonical fields) until end of headers */
    enum um_status store_err; /* set by the store sink */
    struct sign_hdr *hdr;
    size_t nhdr, hdr_cap;
    struct um_buf hlist; /* the h= value, fixed at end of headers */
    struct um_dkim_canon_body body;
};

static const char *const sign_default_headers[] = {
    "From",           "To",           "Cc",
    "Subject",        "Date",         "Message-ID",
    "MIME-Version",   "Content-Type", "Content-Transfer-Encoding",
    "Reply-To",       "In-Reply-To",  "References",
    "List-Id",        "List-Help",    "List-Unsubscribe",
    "List-Subscribe", "List-Post",    "List-Owner",
    "List-Archive",   NULL,
};
static const char *const sign_default_oversign[] = {"From", NULL};

/* RFC 8017 9.2 note 1: the DER DigestInfo prefix for SHA-256 (EMSA-PKCS1-v1_5 step 2). */
static const unsigned char sign_sha256_info[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                 0x01, 0x05, 0x00, 0x04, 0x20};

/* ---- keys ---------------------------------------------------------------------------- */

static char *
sign_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static bool
sign_suffix_ci(const char *s, size_t slen, const char *suf)
{
    size_t n = strlen(suf);

    return slen >= n && um_str_eq_ci((struct um_str){s + slen - n, n}, suf);
}

/* RFC 6376 3.5 i=: [local-part] "@" domain, domain the same as d= or a subdomain of it. */
static bool
sign_identity_ok(const char *i, const char *d)
{
    const char *at = strrchr(i, '@');
    size_t dl;

    if (at == NULL)
        return false;
    for (const char *p = i; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || c == ';' || c == '"')
            return false;
    }
    if (!um_domain_is_valid(um_str_of(at + 1), 0))
        return false;
    dl = strlen(at + 1);
    if (um_str_eq_ci((struct um_str){at + 1, dl}, d))
        return true;
    return dl > strlen(d) && at[1 + dl - strlen(d) - 1] == '.' && sign_suffix_ci(at + 1, dl, d);
}

static int
sign_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* encrypted keys are refused, never prompted for */
}

static const char *
sign_key_label(const struct um_dkim_sign_keyspec *spec)
{
    return spec->path != NULL ? spec->path : "(memory)";
}

static enum um_status
sign_spec_check(const struct um_dkim_sign_keyspec *spec, struct um_error *err)
{
    const char *name = spec->name != NULL ? spec->name : "";

    if (spec->name == NULL || spec->name[0] == '\0' || strlen(spec->name) > SIGN_NAME_MAX)
        return um_error_set(err, UM_EINVAL, "dkim key: missing or overlong key name");
    /* RFC 6376 3.5: d= is a domain-name and s= a selector, both RFC 5321 sub-domains (host
     * name labels); selectors may carry '_' in practice */
    if (spec->domain == NULL || !um_domain_is_valid(um_str_of(spec->domain), 0))
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": bad domain (d=)", name);
    if (spec->selector == NULL
        || !um_domain_is_valid(um_str_of(spec->selector), UM_DOMAIN_UNDERSCORE))
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": bad selector (s=)", name);
    if (spec->identity != NULL && !sign_identity_ok(spec->identity, spec->domain))
        return um_error_set(err, UM_EINVAL,
                            "dkim key \"%s\": identity (i=) must be in domain %s or below it", name,
                            spec->domain);
    return UM_OK;
}

static enum um_status
sign_pub_b64(EVP_PKEY *pk, enum um_dkim_alg alg, char **out)
{
    unsigned char *der = NULL, raw[32];
    size_t rawlen = sizeof(raw);
    int len;
    char *b64;

    if (alg == UM_DKIM_ALG_ED25519_SHA256) {
        if (EVP_PKEY_get_raw_public_key(pk, raw, &rawlen) != 1 || rawlen != sizeof(raw))
            return UM_EINVAL;
        der = raw;
        len = (int)rawlen;
    } else {
        len = i2d_PUBKEY(pk, &der);
        if (len <= 0)
            return UM_EINVAL;
    }
    b64 = malloc(((size_t)len + 2) / 3 * 4 + 1);
    if (b64 != NULL)
        (void)EVP_EncodeBlock((unsigned char *)b64, der, len);
    if (der != raw)
        OPENSSL_free(der);
    if (b64 == NULL)
        return UM_ENOMEM;
    *out = b64;
    return UM_OK;
}

void
um_dkim_sign_key_free(struct um_signer *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey); /* clears the private parts (BN_clear_free, cleansed Ed25519 bytes) */
    free(key->name);
    free(key->domain);
    free(key->selector);
    free(key->identity);
    free(key->path);
    free(key->pub_b64);
    free(key);
}

enum um_status
um_dkim_sign_key_from_pem(const struct um_dkim_sign_keyspec *spec, struct um_str pem,
                          struct um_signer **out, struct um_error *err)
{
    enum um_status st;
    struct um_signer *k = NULL;
    BIO *in = NULL;
    EVP_PKEY *pk = NULL;
    const char *label = sign_key_label(spec);

    *out = NULL;
    if ((st = sign_spec_check(spec, err)) != UM_OK)
        return st;
    if (pem.len == 0 || pem.len > UM_DKIM_SIGN_MAX_KEYFILE) {
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": %s is empty or larger than %d bytes",
                            spec->name, label, UM_DKIM_SIGN_MAX_KEYFILE);
    }
    in = BIO_new_mem_buf(pem.p, (int)pem.len);
    if (in == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": out of memory", spec->name);
        goto out;
    }
    pk = PEM_read_bio_PrivateKey(in, NULL, sign_no_passphrase, NULL);
    if (pk == NULL) {
        st = um_error_set(err, UM_EINVAL,
                          "dkim key \"%s\": %s holds no usable PEM private key "
                          "(unencrypted RSA or Ed25519 expected)",
                          spec->name, label);
        goto out;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": out of memory", spec->name);
        goto out;
    }
    if (EVP_PKEY_is_a(pk, "ED25519")) {
        k->alg = UM_DKIM_ALG_ED25519_SHA256;
        k->bits = 256;
    } else if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        if (bits < UM_DKIM_SIGN_MIN_RSA_BITS) {
            st = um_error_set(err, UM_EINVAL,
                              "dkim key \"%s\": %s: RSA key of %d bits is too short (minimum %d)",
                              spec->name, label, bits, UM_DKIM_SIGN_MIN_RSA_BITS);
            goto out;
        }
        k->alg = UM_DKIM_ALG_RSA_SHA256;
        k->bits = (unsigned)bits;
    } else {
        st = um_error_set(err, UM_EINVAL,
                          "dkim key \"%s\": %s: unsupported key type %s (RSA or Ed25519 expected)",
                          spec->name, label, EVP_PKEY_get0_type_name(pk));
        goto out;
    }
    k->name = sign_strdup(spec->name);
    k->domain = sign_strdup(spec->domain);
    k->selector = sign_strdup(spec->selector);
    k->path = sign_strdup(label);
    k->identity = spec->identity != NULL ? sign_strdup(spec->identity) : NULL;
    if (k->name == NULL || k->domain == NULL || k->selector == NULL || k->path == NULL
        || (spec->identity != NULL && k->identity == NULL)) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": out of memory", spec->name);
        goto out;
    }
    st = sign_pub_b64(pk, k->alg, &k->pub_b64);
    if (st != UM_OK) {
        (void)um_error_set(err, st, "dkim key \"%s\": %s: cannot derive the public key", spec->name,
                           label);
        goto out;
    }
    k->sig_size = (size_t)EVP_PKEY_get_size(pk);
    k->pkey = pk; /* the key is decoded once, here; signing only reads it */
    pk = NULL;
    *out = k;
    k = NULL;
out:
    ERR_clear_error(); /* the queue is per thread; leave it clean for the next caller */
    um_dkim_sign_key_free(k);
    BIO_free(in);
    EVP_PKEY_free(pk);
    return st;
}

enum um_status
um_dkim_sign_key_load(const struct um_dkim_sign_keyspec *spec, struct um_signer **out,
                      struct um_error *err)
{
    enum um_status st;
    char ebuf[128];
    struct stat sb;
    struct um_fileperm perm;
    struct um_error perr = {0};
    unsigned char *buf = NULL;
    size_t len = 0;
    int fd;

    *out = NULL;
    if ((st = sign_spec_check(spec, err)) != UM_OK)
        return st;
    if (spec->path == NULL || spec->path[0] == '\0')
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": no key file", spec->name);
    /* Keys: no group or other access; root, the run user or we may own them and the
     * directories on the way (fileperm.h). */
    um_fileperm_init(&perm, 077);
    um_fileperm_add_owner(&perm, spec->allowed_uid);
    if ((st = um_fileperm_check_dirs(spec->path, &perm, &perr)) != UM_OK)
        return um_error_set(err, st, "dkim key \"%s\": %s", spec->name, perr.msg);
    /* O_NONBLOCK: a FIFO put in place of a key must not hang the config check. */
    fd = open(spec->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return um_error_set(err, e == ENOENT ? UM_ENOENT : UM_EIO,
                            "dkim key \"%s\": cannot open %s: %s", spec->name, spec->path,
                            um_strerror(e, ebuf, sizeof(ebuf)));
    }
    if (fstat(fd, &sb) != 0) {
        st = um_error_set(err, UM_EIO, "dkim key \"%s\": cannot stat %s: %s", spec->name,
                          spec->path, um_strerror(errno, ebuf, sizeof(ebuf)));
        goto out;
    }
    if ((st = um_fileperm_check_fd(fd, spec->path, &perm, &perr)) != UM_OK) {
        st = um_error_set(err, st, "dkim key \"%s\": %s", spec->name, perr.msg);
        goto out;
    }
    if (sb.st_size <= 0 || sb.st_size > UM_DKIM_SIGN_MAX_KEYFILE) {
        st = um_error_set(err, UM_EINVAL, "dkim key \"%s\": %s is empty or larger than %d bytes",
                          spec->name, spec->path, UM_DKIM_SIGN_MAX_KEYFILE);
        goto out;
    }
    buf = malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": out of memory", spec->name);
        goto out;
    }
    while (len <= (size_t)sb.st_size) { /* reads one byte past st_size: detects growth */
        ssize_t r = read(fd, buf + len, (size_t)sb.st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = um_error_set(err, UM_EIO, "dkim key \"%s\": cannot read %s: %s", spec->name,
                              spec->path, um_strerror(errno, ebuf, sizeof(ebuf)));
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len > (size_t)sb.st_size) {
        st = um_error_set(err, UM_EINVAL, "dkim key \"%s\": %s changed while being read",
                          spec->name, spec->path);
        goto out;
    }
    st = um_dkim_sign_key_from_pem(spec, (struct um_str){(const char *)buf, len}, out, err);
out:
    if (buf != NULL) {
        explicit_bzero(buf, (size_t)sb.st_size + 1);
        free(buf);
    }
    (void)close(fd);
    return st;
}

enum um_dkim_alg
um_dkim_sign_key_alg(const struct um_signer *key)
{
    return key->alg;
}

const char *
um_dkim_sign_key_name(const struct um_signer *key)
{
    return key->name;
}

const char *
um_dkim_sign_key_domain(const struct um_signer *key)
{
    return key->domain;
}

const char *
um_dkim_sign_key_selector(const struct um_signer *key)
{
    return key->selector;
}

const char *
um_dkim_sign_key_identity(const struct um_signer *key)
{
    return key->identity;
}

unsigned
um_dkim_sign_key_bits(const struct um_signer *key)
{
    return key->bits;
}

const char *
um_dkim_sign_key_public_b64(const struct um_signer *key)
{
    return key->pub_b64;
}

const char *
um_dkim_sign_alg_name(enum um_dkim_alg alg)
{
    return alg == UM_DKIM_ALG_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

const char *
um_dkim_sign_alg_keytype(enum um_dkim_alg alg)
{
    return alg == UM_DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa";
}

size_t
um_dkim_sign_key_sig_size(const struct um_signer *key)
{
    return key->sig_size;
}

enum um_status
um_dkim_sign_key_sign_digest(const struct um_signer *key, const unsigned char *digest,
                             unsigned char *sig, size_t *siglen, struct um_error *err)
{
    enum um_status st = UM_OK;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *mctx = NULL;
    unsigned char info[sizeof(sign_sha256_info) + UM_DKIM_SIGN_DIGEST_LEN];
    char why[128] = "";
    bool ok;

    if (*siglen < key->sig_size) {
        return um_error_set(err, UM_EINVAL, "dkim sign: signature buffer too small for key \"%s\"",
                            key->name);
    }
    if (key->alg == UM_DKIM_ALG_RSA_SHA256) {
        /* The DigestInfo is built here, so no digest is fetched per call; RSA_PKCS1_PADDING
         * over it is EMSA-PKCS1-v1_5 with SHA-256. */
        memcpy(info, sign_sha256_info, sizeof(sign_sha256_info));
        memcpy(info + sizeof(sign_sha256_info), digest, UM_DKIM_SIGN_DIGEST_LEN);
        pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
        ok = pctx != NULL && EVP_PKEY_sign_init(pctx) == 1
             && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1
             && EVP_PKEY_sign(pctx, sig, siglen, info, sizeof(info)) == 1;
    } else {
        /* Ed25519 is one-shot only: EVP_DigestSign over the 32 digest bytes (RFC 8463 3). */
        mctx = EVP_MD_CTX_new();
        ok = mctx != NULL
             && EVP_DigestSignInit_ex(mctx, NULL, NULL, NULL, NULL, key->pkey, NULL) == 1
             && EVP_DigestSign(mctx, sig, siglen, digest, UM_DKIM_SIGN_DIGEST_LEN) == 1;
    }
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        if (e != 0)
            ERR_error_string_n(e, why, sizeof(why)); /* library and reason, never key bytes */
        st = um_error_set(err, UM_ETEMP, "dkim sign: OpenSSL could not sign with key \"%s\"%s%s",
                          key->name, why[0] != '\0' ? ": " : "", why);
    }
    ERR_clear_error();
    explicit_bzero(info, sizeof(info));
    EVP_PKEY_CTX_free(pctx);
    EVP_MD_CTX_free(mctx);
    return st;
}

/* ---- canonicalization (RFC 6376 3.4) ------------------------------------------------- */

/* Bytes that end a run of plain text in the body: line ends, and WSP for relaxed. */
static const bool canon_stop_simple[256] = {['\r'] = true, ['\n'] = true};
static const bool canon_stop_relaxed[256] = {
    ['\r'] = true, ['\n'] = true, [' '] = true, ['\t'] = true};

static bool
canon_is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* A small output buffer in front of a sink (header fields are short; one sink call each). */
struct canon_out {
    um_dkim_canon_sink_fn *sink;
    void *arg;
    size_t len;
    char buf[256];
};

static void
canon_out_flush(struct canon_out *o)
{
    if (o->len > 0)
        o->sink(o->arg, o->buf, o->len);
    o->len = 0;
}

static void
canon_out_byte(struct canon_out *o, char c)
{
    if (o->len == sizeof(o->buf))
        canon_out_flush(o);
    o->buf[o->len++] = c;
}

static void
canon_out_bytes(struct canon_out *o, const char *p, size_t n)
{
    if (n > sizeof(o->buf) - o->len) {
        canon_out_flush(o);
        if (n >= sizeof(o->buf)) {
            o->sink(o->arg, p, n);
            return;
        }
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* RFC 6376 3.4.1: the field as rebuilt (HEADERS in dkim_sign.h), bare LF -> CRLF. */
static void
canon_header_simple(struct canon_out *o, struct um_str name, struct um_str value, bool leadspc)
{
    size_t run = 0;

    canon_out_bytes(o, name.p, name.len);
    canon_out_bytes(o, leadspc ? ":" : ": ", leadspc ? 1 : 2);
    for (size_t i = 0; i < value.len; i++) {
        if (value.p[i] == '\n' && (i == 0 || value.p[i - 1] != '\r')) {
            canon_out_bytes(o, value.p + run, i - run);
            canon_out_byte(o, '\r');
            run = i;
        }
    }
    canon_out_bytes(o, value.p + run, value.len - run);
}

/* RFC 6376 3.4.2, steps in order: lower-case name; unfold (a line end followed by WSP goes);
 * WSP runs -> one SP; no WSP at the end of the value nor around the colon. A line end not
 * followed by WSP cannot come from an MTA (it would start the next field); it is unfolded
 * all the same and counts as white space, so the result is always one line. */
static void
canon_header_relaxed(struct canon_out *o, struct um_str name, struct um_str value)
{
    size_t nlen = name.len;
    bool started = false, wsp = false;

    while (nlen > 0 && canon_is_wsp(name.p[nlen - 1]))
        nlen--;
    for (size_t i = 0; i < nlen; i++)
        canon_out_byte(o, (char)um_ascii_tolower((unsigned char)name.p[i]));
    canon_out_byte(o, ':');
    for (size_t i = 0; i < value.len; i++) {
        char c = value.p[i];
        if (c == '\r' && i + 1 < value.len && value.p[i + 1] == '\n')
            c = value.p[++i];
        if (c == '\n' || canon_is_wsp(c)) {
            wsp = started; /* leading WSP (after the colon) goes */
            continue;
        }
        if (wsp)
            canon_out_byte(o, ' ');
        wsp = false;
        canon_out_byte(o, c);
        started = true;
    }
}

static void
canon_header(enum um_dkim_canon canon, struct um_str name, struct um_str value, bool leadspc,
             bool crlf, um_dkim_canon_sink_fn *sink, void *arg)
{
    struct canon_out o = {.sink = sink, .arg = arg};

    if (canon == UM_DKIM_CANON_SIMPLE)
        canon_header_simple(&o, name, value, leadspc);
    else
        canon_header_relaxed(&o, name, value);
    if (crlf)
        canon_out_bytes(&o, "\r\n", 2);
    canon_out_flush(&o);
}

void
um_dkim_canon_header(enum um_dkim_canon canon, struct um_str name, struct um_str value,
                     bool value_has_leading_space, um_dkim_canon_sink_fn *sink, void *arg)
{
    canon_header(canon, name, value, value_has_leading_space, true, sink, arg);
}

static void
body_flush(struct um_dkim_canon_body *bc)
{
    if (bc->len > 0)
        bc->sink(bc->arg, bc->buf, bc->len);
    bc->len = 0;
}

static void
body_put(struct um_dkim_canon_body *bc, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = sizeof(bc->buf) - bc->len;
        if (k == 0) {
            body_flush(bc);
            k = sizeof(bc->buf);
        }
        if (k > n)
            k = n;
        memcpy(bc->buf + bc->len, p, k);
        bc->len += k;
        p += k;
        n -= k;
    }
}

/* Text (no line end) joins the line: held-back empty lines and a pending WSP run first. */
static void
body_text(struct um_dkim_canon_body *bc, const char *p, size_t n)
{
    for (; bc->blanks > 0; bc->blanks--)
        body_put(bc, "\r\n", 2);
    if (bc->wsp)
        body_put(bc, " ", 1);
    bc->wsp = false;
    body_put(bc, p, n);
    bc->in_line = true;
    bc->emitted = true;
}

static void
body_eol(struct um_dkim_canon_body *bc)
{
    bc->wsp = false; /* relaxed: no WSP before a line end */
    if (bc->in_line)
        body_put(bc, "\r\n", 2);
    else
        bc->blanks++; /* an empty line: kept only if text follows */
    bc->in_line = false;
}

static void
canon_body_init(struct um_dkim_canon_body *bc, enum um_dkim_canon canon,
                um_dkim_canon_sink_fn *sink, void *arg)
{
    bc->canon = canon;
    bc->sink = sink;
    bc->arg = arg;
    bc->cr = bc->wsp = bc->in_line = bc->emitted = false;
    bc->blanks = 0;
    bc->len = 0;
}

void
um_dkim_canon_body_update(struct um_dkim_canon_body *bc, struct um_str chunk)
{
    const unsigned char *p = (const unsigned char *)chunk.p;
    const bool *stop = bc->canon == UM_DKIM_CANON_RELAXED ? canon_stop_relaxed : canon_stop_simple;
    size_t i = 0, n = chunk.len;

    if (n > 0 && bc->cr) { /* the CR that ended the previous chunk */
        bc->cr = false;
        if (p[0] == '\n') {
            body_eol(bc);
            i = 1;
        } else {
            body_text(bc, "\r", 1);
        }
    }
    while (i < n) {
        size_t j = i;

        /* A run of text. For relaxed, a single SP between two text bytes of the run is its
         * own canonical form, so ordinary prose stays on this path (not after a pending WSP
         * run: j > i means the byte before the SP is text). */
        for (;;) {
            while (j < n && !stop[p[j]])
                j++;
            if (j > i && j + 1 < n && p[j] == ' ' && !stop[p[j + 1]])
                j += 2;
            else
                break;
        }
        if (j > i)
            body_text(bc, chunk.p + i, j - i);
        if (j == n)
            break;
        i = j;
        switch (p[i]) {
        case ' ':
        case '\t': /* relaxed only: the run becomes one SP if text follows on the line */
            bc->wsp = true;
            i++;
            break;
        case '\n': /* bare LF: a line end, written as CRLF (RFC 5322 2.3) */
            body_eol(bc);
            i++;
            break;
        default: /* CR: a line end with the LF after it, else an ordinary byte */
            if (i + 1 == n) {
                bc->cr = true;
                i++;
            } else if (p[i + 1] == '\n') {
                body_eol(bc);
                i += 2;
            } else {
                body_text(bc, "\r", 1);
                i++;
            }
            break;
        }
    }
}

void
um_dkim_canon_body_final(struct um_dkim_canon_body *bc)
{
    if (bc->cr) /* a CR at the very end ends the line, as the MTA's CRLF will */
        body_eol(bc);
    bc->cr = false;
    if (bc->in_line) /* 3.4.3, 3.4.4: a CRLF is added to a last line without one */
        body_eol(bc);
    bc->blanks = 0; /* empty lines at the end are ignored */
    bc->wsp = false;
    if (!bc->emitted && bc->canon == UM_DKIM_CANON_SIMPLE)
        body_put(bc, "\r\n", 2); /* 3.4.3: an empty body is one CRLF; relaxed: nothing */
    bc->emitted = true;
    body_flush(bc);
}

enum um_status
um_dkim_canon_body_new(enum um_dkim_canon canon, um_dkim_canon_sink_fn *sink, void *arg,
                       struct um_dkim_canon_body **out, struct um_error *err)
{
    *out = malloc(sizeof(**out));
    if (*out == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim canon: out of memory");
    canon_body_init(*out, canon, sink, arg);
    return UM_OK;
}

void
um_dkim_canon_body_free(struct um_dkim_canon_body *bc)
{
    free(bc);
}

/* ---- signing context ----------------------------------------------------------------- */

static void
sign_list_free(char **l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; l[i] != NULL; i++)
        free(l[i]);
    free(l);
}

static bool
sign_list_has(char *const *l, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (um_str_eq_ci((struct um_str){l[i], strlen(l[i])}, name))
            return true;
    }
    return false;
}

/* Checks a NULL-terminated list of field names ([A-Za-z0-9-]+: they go into h= verbatim)
 * and appends copies to *l (*n entries, room for cap); with dedup, names already there
 * (ASCII case-insensitive) are skipped. */
static enum um_status
sign_list_add(const char *const *src, const char *what, bool dedup, char **l, size_t *n,
              struct um_error *err)
{
    size_t total = 0;

    for (size_t i = 0; src[i] != NULL; i++) {
        size_t len = strlen(src[i]);
        bool ok = len > 0 && len <= 64;
        for (size_t j = 0; ok && j < len; j++) {
            unsigned char c = (unsigned char)src[i][j];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                 || c == '-';
        }
        total += len + 1;
        if (!ok || total > 900) {
            return um_error_set(
                err, UM_EINVAL,
                ok ? "dkim sign: %s list too long" : "dkim sign: bad header name in %s list", what);
        }
        if (dedup && sign_list_has(l, *n, src[i]))
            continue;
        l[*n] = sign_strdup(src[i]);
        if (l[*n] == NULL)
            return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
        (*n)++;
    }
    return UM_OK;
}

static size_t
sign_list_len(const char *const *l)
{
    size_t n = 0;

    while (l[n] != NULL)
        n++;
    return n;
}

void
um_dkim_sign_free(struct um_dkim_sign *ds)
{
    if (ds == NULL)
        return;
    sign_list_free(ds->names);
    sign_list_free(ds->oversign);
    EVP_MD_free(ds->sha256);
    free(ds);
}

enum um_status
um_dkim_sign_new(const struct um_dkim_sign_opts *opts, struct um_dkim_sign **out,
                 struct um_error *err)
{
    static const struct um_dkim_sign_opts defaults = {0};
    const char *const *sign, *const *over;
    struct um_dkim_sign *ds;
    enum um_status st;
    size_t nsign, nover, nnames = 0, n = 0;

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    sign = opts->sign_headers != NULL ? opts->sign_headers : sign_default_headers;
    over = opts->oversign_headers != NULL ? opts->oversign_headers : sign_default_oversign;
    nsign = sign_list_len(sign);
    nover = sign_list_len(over);
    if (nsign == 0)
        return um_error_set(err, UM_EINVAL, "dkim sign: empty sign_headers list");
    ds = calloc(1, sizeof(*ds));
    if (ds == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    ds->hcanon =
        opts->header_canon == UM_DKIM_CANON_SIMPLE ? UM_DKIM_CANON_SIMPLE : UM_DKIM_CANON_RELAXED;
    ds->bcanon =
        opts->body_canon == UM_DKIM_CANON_SIMPLE ? UM_DKIM_CANON_SIMPLE : UM_DKIM_CANON_RELAXED;
    ds->leadspc = opts->value_has_leading_space;
    ds->fixed_time = opts->fixed_time;
    ds->names = calloc(nsign + nover + 1, sizeof(*ds->names));
    ds->oversign = calloc(nover + 1, sizeof(*ds->oversign));
    if (ds->names == NULL || ds->oversign == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
        goto fail;
    }
    /* Oversigned names are signed too: every instance, then one entry more. */
    if ((st = sign_list_add(sign, "sign_headers", true, ds->names, &nnames, err)) != UM_OK
        || (st = sign_list_add(over, "oversign_headers", false, ds->oversign, &n, err)) != UM_OK
        || (st = sign_list_add(over, "oversign_headers", true, ds->names, &nnames, err)) != UM_OK)
        goto fail;
    ds->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (ds->sha256 == NULL) {
        ERR_clear_error();
        st = um_error_set(err, UM_ETEMP, "dkim sign: OpenSSL has no SHA-256");
        goto fail;
    }
    *out = ds;
    return UM_OK;
fail:
    um_dkim_sign_free(ds);
    return st;
}

/* ---- one message --------------------------------------------------------------------- */

/* Marks the session failed. what NULL: err already says why (set by the caller). */
static enum um_status
sign_fail(struct um_dkim_sign_session *s, enum um_status code, struct um_error *err,
          const char *what, const struct um_signer *k)
{
    s->state = SIGN_FAILED;
    s->failed = code;
    if (what == NULL)
        return code;
    if (k != NULL)
        return um_error_set(err, code, "dkim sign: %s (key \"%s\")", what, k->name);
    return um_error_set(err, code, "dkim sign: %s", what);
}

static enum um_status
sign_state_check(struct um_dkim_sign_session *s, enum sign_state want, const char *what,
                 struct um_error *err)
{
    if (s->state == SIGN_FAILED)
        return um_error_set(err, s->failed, "dkim sign: %s after an earlier failure", what);
    if (s->state != want)
        return um_error_set(err, UM_EINVAL, "dkim sign: %s called out of order", what);
    return UM_OK;
}

static void
sign_hash_sink(void *arg, const char *p, size_t len)
{
    struct um_dkim_sign_session *s = arg;

    if (EVP_DigestUpdate(s->bctx, p, len) != 1)
        s->hash_failed = true;
}

static void
sign_store_sink(void *arg, const char *p, size_t len)
{
    struct um_dkim_sign_session *s = arg;

    if (s->store_err != UM_OK)
        return;
    if (len > UM_DKIM_SIGN_MAX_SIGNED_BYTES - s->store.len) {
        s->store_err = UM_ELIMIT;
        return;
    }
    um_buf_add(&s->store, p, len);
    if (s->store.oom)
        s->store_err = UM_ENOMEM;
}

static void
sign_store_drop(struct um_dkim_sign_session *s)
{
    free(s->store.p);
    free(s->hdr);
    s->store = (struct um_buf){0};
    s->hdr = NULL;
    s->nhdr = s->hdr_cap = 0;
}

void
um_dkim_sign_session_free(struct um_dkim_sign_session *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->one[i].value);
    sign_store_drop(s);
    free(s->hlist.p);
    EVP_MD_CTX_free(s->hctx);
    EVP_MD_CTX_free(s->bctx);
    free(s);
}

enum um_status
um_dkim_sign_begin(const struct um_dkim_sign *ds, const struct um_signer *const *signers,
                   size_t nsigners, const char *qid, struct um_dkim_sign_session **out,
                   struct um_error *err)
{
    struct um_dkim_sign_session *s;

    (void)qid;
    *out = NULL;
    if (nsigners == 0 || nsigners > UM_DKIM_SIGN_MAX_SIGNERS) {
        return um_error_set(err, UM_EINVAL, "dkim sign: %zu signers (1 to %d allowed)", nsigners,
                            UM_DKIM_SIGN_MAX_SIGNERS);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    s->ds = ds;
    s->n = nsigners;
    for (size_t i = 0; i < nsigners; i++)
        s->one[i].key = signers[i];
    s->hctx = EVP_MD_CTX_new();
    s->bctx = EVP_MD_CTX_new();
    if (s->hctx == NULL || s->bctx == NULL) {
        um_dkim_sign_session_free(s);
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    }
    if (EVP_DigestInit_ex2(s->hctx, ds->sha256, NULL) != 1
        || EVP_DigestInit_ex2(s->bctx, ds->sha256, NULL) != 1) {
        ERR_clear_error();
        um_dkim_sign_session_free(s);
        return um_error_set(err, UM_ETEMP, "dkim sign: cannot start SHA-256");
    }
    canon_body_init(&s->body, ds->bcanon, sign_hash_sink, s);
    s->state = SIGN_HEADERS;
    *out = s;
    return UM_OK;
}

/* Index of name (trailing WSP ignored) in ds->names, or SIZE_MAX. */
static size_t
sign_lookup(const struct um_dkim_sign *ds, struct um_str name)
{
    while (name.len > 0 && canon_is_wsp(name.p[name.len - 1]))
        name.len--;
    for (size_t i = 0; ds->names[i] != NULL; i++) {
        if (um_str_eq_ci(name, ds->names[i]))
            return i;
    }
    return SIZE_MAX;
}

enum um_status
um_dkim_sign_header(struct um_dkim_sign_session *s, struct um_str name, struct um_str value,
                    struct um_error *err)
{
    enum um_status st;
    size_t list, len, need;
    struct sign_hdr *h;

    if ((st = sign_state_check(s, SIGN_HEADERS, "header", err)) != UM_OK)
        return st;
    if (name.len == 0 || memchr(name.p, ':', name.len) != NULL)
        return um_error_set(err, UM_EINVAL, "dkim sign: bad header field name");
    /* One trailing line end is not part of the value. */
    if (value.len > 0 && value.p[value.len - 1] == '\n')
        value.len--;
    if (value.len > 0 && value.p[value.len - 1] == '\r')
        value.len--;
    /* The field as rebuilt, bare LFs made CRLF, must fit (signed or not, as before). */
    len = name.len + (s->ds->leadspc ? 1 : 2);
    for (size_t i = 0; i < value.len && len <= UM_DKIM_SIGN_MAX_HEADER; i++)
        len += value.p[i] == '\n' && (i == 0 || value.p[i - 1] != '\r') ? 2 : 1;
    if (len > UM_DKIM_SIGN_MAX_HEADER) {
        (void)um_error_set(err, UM_ELIMIT, "dkim sign: header field longer than %d bytes",
                           UM_DKIM_SIGN_MAX_HEADER);
        return sign_fail(s, UM_ELIMIT, err, NULL, NULL);
    }
    list = sign_lookup(s->ds, name);
    if (list == SIZE_MAX)
        return UM_OK; /* not signed: nothing to keep */
    if (s->nhdr == UM_DKIM_SIGN_MAX_SIGNED_HEADERS) {
        (void)um_error_set(err, UM_ELIMIT, "dkim sign: more than %d header fields to sign",
                           UM_DKIM_SIGN_MAX_SIGNED_HEADERS);
        return sign_fail(s, UM_ELIMIT, err, NULL, NULL);
    }
    if (s->nhdr == s->hdr_cap) {
        size_t cap = s->hdr_cap > 0 ? 2 * s->hdr_cap : 32;
        struct sign_hdr *nh = reallocarray(s->hdr, cap, sizeof(*nh));
        if (nh == NULL)
            return sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
        s->hdr = nh;
        s->hdr_cap = cap;
    }
    h = &s->hdr[s->nhdr];
    h->list = list;
    h->name_off = s->store.len;
    need = name.len;
    while (need > 0 && canon_is_wsp(name.p[need - 1]))
        need--;
    h->name_len = need;
    sign_store_sink(s, name.p, need);
    h->canon_off = s->store.len;
    canon_header(s->ds->hcanon, name, value, s->ds->leadspc, true, sign_store_sink, s);
    h->canon_len = s->store.len - h->canon_off;
    if (s->store_err == UM_ELIMIT) {
        (void)um_error_set(err, UM_ELIMIT, "dkim sign: header fields to sign exceed %d bytes",
                           UM_DKIM_SIGN_MAX_SIGNED_BYTES);
        return sign_fail(s, UM_ELIMIT, err, NULL, NULL);
    }
    if (s->store_err != UM_OK)
        return sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
    s->nhdr++;
    return UM_OK;
}

/* RFC 6376 5.4.2: h= lists the kept fields in message order; the n-th entry of a name from
 * the top hashes the n-th instance from the bottom. Counting sort by name: inst holds the
 * fields grouped by name in message order, start[] where each group begins. */
static enum um_status
sign_hash_headers(struct um_dkim_sign_session *s, struct um_error *err)
{
    const struct um_dkim_sign *ds = s->ds;
    size_t nn = 0, *start, *seen, *inst, *rank;
    bool ok = true;

    while (ds->names[nn] != NULL)
        nn++;
    start = calloc(2 * nn + 1 + 2 * s->nhdr, sizeof(*start));
    if (start == NULL)
        return sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
    seen = start + nn + 1;
    inst = seen + nn;
    rank = inst + s->nhdr;
    for (size_t j = 0; j < s->nhdr; j++)
        start[s->hdr[j].list + 1]++;
    for (size_t l = 0; l < nn; l++)
        start[l + 1] += start[l];
    for (size_t j = 0; j < s->nhdr; j++) {
        size_t l = s->hdr[j].list;
        rank[j] = seen[l]++;
        inst[start[l] + rank[j]] = j;
    }
    for (size_t j = 0; j < s->nhdr && ok; j++) {
        size_t l = s->hdr[j].list, count = start[l + 1] - start[l];
        const struct sign_hdr *use = &s->hdr[inst[start[l] + count - 1 - rank[j]]];
        const struct sign_hdr *h = &s->hdr[j];

        ok = EVP_DigestUpdate(s->hctx, s->store.p + use->canon_off, use->canon_len) == 1;
        if (j > 0)
            um_buf_add(&s->hlist, ":", 1);
        um_buf_add(&s->hlist, s->store.p + h->name_off, h->name_len);
    }
    for (size_t i = 0; ds->oversign[i] != NULL; i++) {
        if (s->hlist.len > 0)
            um_buf_add(&s->hlist, ":", 1);
        um_buf_str(&s->hlist, ds->oversign[i]);
    }
    free(start);
    if (!ok) {
        ERR_clear_error();
        return sign_fail(s, UM_ETEMP, err, "hashing the headers failed", NULL);
    }
    if (s->hlist.oom || s->hlist.len == 0)
        return sign_fail(s, s->hlist.oom ? UM_ENOMEM : UM_EINVAL, err,
                         s->hlist.oom ? "out of memory" : "no header field to sign", NULL);
    return UM_OK;
}

enum um_status
um_dkim_sign_eoh(struct um_dkim_sign_session *s, struct um_error *err)
{
    enum um_status st;

    if ((st = sign_state_check(s, SIGN_HEADERS, "end of headers", err)) != UM_OK)
        return st;
    if ((st = sign_hash_headers(s, err)) != UM_OK)
        return st;
    sign_store_drop(s);
    s->state = SIGN_BODY;
    return UM_OK;
}

enum um_status
um_dkim_sign_body(struct um_dkim_sign_session *s, struct um_str chunk, struct um_error *err)
{
    enum um_status st;

    if ((st = sign_state_check(s, SIGN_BODY, "body", err)) != UM_OK)
        return st;
    um_dkim_canon_body_update(&s->body, chunk);
    if (s->hash_failed) {
        ERR_clear_error();
        return sign_fail(s, UM_ETEMP, err, "hashing the body failed", NULL);
    }
    return UM_OK;
}

/* Appends one tag ("x=value;"), on the current line when it fits, else on a new one. */
static void
sign_fold_tag(struct um_buf *b, size_t *col, const char *tag)
{
    size_t len = strlen(tag);

    if (*col + 1 + len > SIGN_FOLD_WIDTH) {
        um_buf_add(b, "\n\t", 2);
        *col = 1;
    } else {
        um_buf_add(b, " ", 1);
        (*col)++;
    }
    um_buf_add(b, tag, len);
    *col += len;
}

/* h=: as one tag when it fits on a line, else folded after colons. */
static void
sign_fold_h(struct um_buf *b, size_t *col, const char *list)
{
    size_t len = strlen(list);
    const char *p = list;

    if (1 + 2 + len + 1 <= SIGN_FOLD_WIDTH) { /* TAB "h=" list ";" fits a fresh line */
        char tag[SIGN_FOLD_WIDTH + 1];
        (void)snprintf(tag, sizeof(tag), "h=%s;", list);
        sign_fold_tag(b, col, tag);
        return;
    }
    sign_fold_tag(b, col, "h=");
    while (*p != '\0') {
        const char *colon = strchr(p, ':');
        size_t n = colon != NULL ? (size_t)(colon - p) + 1 : strlen(p) + 1; /* with ':' or ';' */
        if (*col + n > SIGN_FOLD_WIDTH) {
            um_buf_add(b, "\n\t", 2);
            *col = 1;
        }
        um_buf_add(b, p, n - 1);
        um_buf_add(b, colon != NULL ? ":" : ";", 1);
        *col += n;
        p += n - (colon != NULL ? 0 : 1);
    }
}

/* The field value up to and including "b=", folded, starting with one SP. */
static void
sign_prefix(const struct um_dkim_sign_session *s, const struct um_signer *k, uint64_t t,
            const char *bh, struct um_buf *b)
{
    char tag[600];
    size_t col = sizeof("DKIM-Signature:") - 1;

    sign_fold_tag(b, &col, "v=1;");
    (void)snprintf(tag, sizeof(tag), "a=%s;", um_dkim_sign_alg_name(k->alg));
    sign_fold_tag(b, &col, tag);
    (void)snprintf(tag, sizeof(tag), "c=%s/%s;",
                   s->ds->hcanon == UM_DKIM_CANON_SIMPLE ? "simple" : "relaxed",
                   s->ds->bcanon == UM_DKIM_CANON_SIMPLE ? "simple" : "relaxed");
    sign_fold_tag(b, &col, tag);
    (void)snprintf(tag, sizeof(tag), "d=%s;", k->domain);
    sign_fold_tag(b, &col, tag);
    (void)snprintf(tag, sizeof(tag), "s=%s;", k->selector);
    sign_fold_tag(b, &col, tag);
    (void)snprintf(tag, sizeof(tag), "t=%llu;", (unsigned long long)t);
    sign_fold_tag(b, &col, tag);
    if (k->identity != NULL) {
        (void)snprintf(tag, sizeof(tag), "i=%s;", k->identity);
        sign_fold_tag(b, &col, tag);
    }
    (void)snprintf(tag, sizeof(tag), "bh=%s;", bh);
    sign_fold_tag(b, &col, tag);
    sign_fold_h(b, &col, s->hlist.p);
    um_buf_add(b, "\n\tb=", 4);
}

/* Appends base64 text after "\tb=", folded with LF TAB anywhere (RFC 6376 3.5: FWS is
 * allowed inside the b= value). */
static void
sign_fold_b64(struct um_buf *b, const char *b64)
{
    size_t col = 3, len = strlen(b64);

    while (len > 0) {
        size_t n = SIGN_FOLD_WIDTH - col;
        if (n > len)
            n = len;
        um_buf_add(b, b64, n);
        b64 += n;
        len -= n;
        if (len > 0) {
            um_buf_add(b, "\n\t", 2);
            col = 1;
        }
    }
}

struct sign_digest {
    EVP_MD_CTX *ctx;
    bool ok;
};

static void
sign_digest_sink(void *arg, const char *p, size_t len)
{
    struct sign_digest *d = arg;

    if (EVP_DigestUpdate(d->ctx, p, len) != 1)
        d->ok = false;
}

/* One signer: header state + its own field (b= empty, no final CRLF) -> digest -> sign. */
static enum um_status
sign_one(struct um_dkim_sign_session *s, size_t i, EVP_MD_CTX *mctx, uint64_t t, const char *bh,
         struct um_error *err)
{
    const struct um_signer *k = s->one[i].key;
    struct um_buf b = {0};
    unsigned char digest[EVP_MAX_MD_SIZE], *sig = NULL;
    unsigned int dlen = 0;
    size_t siglen = k->sig_size;
    char *b64 = NULL;
    struct sign_digest d = {mctx, true};
    enum um_status st = UM_OK;

    sign_prefix(s, k, t, bh, &b);
    if (b.oom) {
        free(b.p);
        return sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
    }
    d.ok = EVP_MD_CTX_copy_ex(mctx, s->hctx) == 1;
    if (d.ok)
        canon_header(s->ds->hcanon, UM_STR("DKIM-Signature"), (struct um_str){b.p, b.len}, true,
                     false, sign_digest_sink, &d);
    if (!d.ok || EVP_DigestFinal_ex(mctx, digest, &dlen) != 1 || dlen != UM_DKIM_SIGN_DIGEST_LEN) {
        ERR_clear_error();
        free(b.p);
        return sign_fail(s, UM_ETEMP, err, "hashing the headers failed", k);
    }
    sig = malloc(siglen);
    b64 = sig != NULL ? malloc((siglen + 2) / 3 * 4 + 1) : NULL;
    if (sig == NULL || b64 == NULL) {
        st = sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
        goto out;
    }
    if ((st = um_dkim_sign_key_sign_digest(k, digest, sig, &siglen, err)) != UM_OK) {
        st = sign_fail(s, st, err, NULL, NULL);
        goto out;
    }
    (void)EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
    sign_fold_b64(&b, b64);
    if (b.oom) {
        st = sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
        goto out;
    }
    if (s->ds->leadspc) {
        s->one[i].value = b.p; /* starts with the SP the MTA inserts verbatim */
        b.p = NULL;
    } else {
        s->one[i].value = sign_strdup(b.p + 1);
        if (s->one[i].value == NULL)
            st = sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
    }
out:
    free(b.p);
    free(sig);
    free(b64);
    return st;
}

enum um_status
um_dkim_sign_end(struct um_dkim_sign_session *s, struct um_error *err)
{
    enum um_status st;
    unsigned char bh[EVP_MAX_MD_SIZE];
    unsigned int bhlen = 0;
    char bh64[64];
    EVP_MD_CTX *mctx;
    uint64_t t;

    if ((st = sign_state_check(s, SIGN_BODY, "end of message", err)) != UM_OK)
        return st;
    um_dkim_canon_body_final(&s->body);
    if (s->hash_failed || EVP_DigestFinal_ex(s->bctx, bh, &bhlen) != 1
        || bhlen != UM_DKIM_SIGN_DIGEST_LEN) {
        ERR_clear_error();
        return sign_fail(s, UM_ETEMP, err, "hashing the body failed", NULL);
    }
    (void)EVP_EncodeBlock((unsigned char *)bh64, bh, (int)bhlen);
    t = s->ds->fixed_time != 0 ? s->ds->fixed_time : (uint64_t)time(NULL);
    mctx = EVP_MD_CTX_new();
    if (mctx == NULL)
        return sign_fail(s, UM_ENOMEM, err, "out of memory", NULL);
    for (size_t i = 0; i < s->n && st == UM_OK; i++)
        st = sign_one(s, i, mctx, t, bh64, err);
    EVP_MD_CTX_free(mctx);
    if (st != UM_OK)
        return st;
    s->state = SIGN_DONE;
    return UM_OK;
}

size_t
um_dkim_sign_count(const struct um_dkim_sign_session *s)
{
    return s->state == SIGN_DONE ? s->n : 0;
}

const char *
um_dkim_sign_value(const struct um_dkim_sign_session *s, size_t i)
{
    return s->state == SIGN_DONE && i < s->n ? s->one[i].value : NULL;
}

const struct um_signer *
um_dkim_sign_signer(const struct um_dkim_sign_session *s, size_t i)
{
    return i < s->n ? s->one[i].key : NULL;
}
