/*
 * dkim_sign.c - outbound DKIM signing with libopendkim
 *
 * Design note. Keys: a PEM file is read once (regular file, no group/other bits, owned by root
 * or our user, at most UM_DKIM_SIGN_MAX_KEYFILE bytes), parsed with the OpenSSL 3 EVP API to
 * learn its type and size, and re-encoded as unencrypted PKCS#8 PEM into a buffer only this
 * file sees; the file bytes are wiped at once. libopendkim wants the PEM text per handle
 * (dkim_sign() copies it), so the text is what we keep; it is wiped on free. The public half
 * is derived at load time (p= form), so check-keys never needs the private text.
 *
 * Signing: one DKIM_LIB per struct um_dkim_sign (per config snapshot), set up completely
 * before it is shared because dkim_options() is unlocked; sessions only create handles, which
 * the library documents as safe from many threads. One DKIM handle per signer per message.
 * Headers and body go to every handle. Bare LF becomes CRLF here, not with
 * DKIM_LIBFLAGS_FIXCRLF, which cuts headers short (libraries.md 2.9). The body conversion is
 * streaming with one bit of state (was the previous byte CR?) and an 8 KiB output buffer, so
 * the work is O(body) and the memory O(1); libopendkim hashes the body as it arrives.
 * libopendkim stores the id pointer it is given (dkim_new), so the session owns that string
 * until every handle is freed. Output: dkim_getsighdr_d() folds with CRLF TAB; CRs are
 * dropped for smfi_insheader().
 *
 * XXX libopendkim frees its own copy of the key text without wiping it (dkim_free uses plain
 * free); a sign(digest) helper process would fix that and is what struct um_signer allows.
 * XXX keygen.c also links OpenSSL (key generation, p= parsing): both are key modules, and
 * libopendkim stays confined to this file.
 */
#define _DEFAULT_SOURCE /* explicit_bzero() is glibc/BSD, not POSIX */
#include "dkim_sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <opendkim/dkim.h>

#define SIGN_CONV_SIZE 8192
#define SIGN_NAME_MAX  128 /* key names, for error messages only */

struct um_signer {
    char *name, *domain, *selector, *identity, *path;
    enum um_dkim_alg alg;
    unsigned bits;
    unsigned char *pem; /* NUL-terminated PKCS#8 PEM; wiped on free */
    size_t pem_len;
    char *pub_b64;
};

struct um_dkim_sign {
    DKIM_LIB *lib;
    dkim_canon_t hcanon, bcanon;
    bool leadspc;
    char **sign;     /* NULL-terminated copies handed to libopendkim */
    char **oversign; /* NULL when none */
};

enum sign_state { SIGN_HEADERS, SIGN_BODY, SIGN_DONE, SIGN_FAILED };

struct sign_one {
    DKIM *dkim;
    const struct um_signer *key;
    char *value;
};

struct um_dkim_sign_session {
    const struct um_dkim_sign *ds;
    enum sign_state state;
    enum um_status failed; /* the code to repeat once SIGN_FAILED */
    size_t n;
    struct sign_one one[UM_DKIM_SIGN_MAX_SIGNERS];
    unsigned char *id; /* libopendkim keeps this pointer: must outlive the handles */
    unsigned char *hbuf;
    size_t hcap;
    bool prev_cr;
    bool body_open; /* body bytes seen and the last one was not LF */
    size_t clen;
    unsigned char conv[SIGN_CONV_SIZE];
};

static const char *const sign_default_headers[] = {
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Reply-To", "In-Reply-To", "References", "List-Id",
    "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner",
    "List-Archive", NULL,
};
static const char *const sign_default_oversign[] = {"From", NULL};

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

/* DNS name: LDH labels separated by dots (we never sign for anything else). */
static bool
sign_domain_ok(const char *s, bool allow_underscore)
{
    size_t n = strlen(s), label = 0;

    if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '-' || (allow_underscore && c == '_')))
            return false;
        if (++label > 63)
            return false;
    }
    return true;
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
    if (!sign_domain_ok(at + 1, false))
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
    if (spec->domain == NULL || !sign_domain_ok(spec->domain, false))
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": bad domain (d=)", name);
    if (spec->selector == NULL || !sign_domain_ok(spec->selector, true))
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": bad selector (s=)", name);
    if (spec->identity != NULL && !sign_identity_ok(spec->identity, spec->domain))
        return um_error_set(err, UM_EINVAL,
                            "dkim key \"%s\": identity (i=) must be in domain %s or below it",
                            name, spec->domain);
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
    if (key->pem != NULL) {
        explicit_bzero(key->pem, key->pem_len);
        free(key->pem);
    }
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
    BIO *in = NULL, *mem = NULL;
    EVP_PKEY *pk = NULL;
    BUF_MEM *bm = NULL;
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
    /* Re-encode as PKCS#8 PEM into memory that OpenSSL cleanses when it is freed. */
    mem = BIO_new(BIO_s_secmem());
    if (mem == NULL || PEM_write_bio_PrivateKey(mem, pk, NULL, NULL, 0, NULL, NULL) != 1
        || BIO_get_mem_ptr(mem, &bm) != 1 || bm == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": cannot re-encode the key", spec->name);
        goto out;
    }
    k->pem_len = bm->length + 1;
    k->pem = malloc(k->pem_len);
    k->name = sign_strdup(spec->name);
    k->domain = sign_strdup(spec->domain);
    k->selector = sign_strdup(spec->selector);
    k->path = sign_strdup(label);
    k->identity = spec->identity != NULL ? sign_strdup(spec->identity) : NULL;
    if (k->pem == NULL || k->name == NULL || k->domain == NULL || k->selector == NULL
        || k->path == NULL || (spec->identity != NULL && k->identity == NULL)) {
        st = um_error_set(err, UM_ENOMEM, "dkim key \"%s\": out of memory", spec->name);
        goto out;
    }
    memcpy(k->pem, bm->data, bm->length);
    k->pem[bm->length] = '\0';
    st = sign_pub_b64(pk, k->alg, &k->pub_b64);
    if (st != UM_OK) {
        (void)um_error_set(err, st, "dkim key \"%s\": %s: cannot derive the public key",
                           spec->name, label);
        goto out;
    }
    *out = k;
    k = NULL;
out:
    ERR_clear_error(); /* the queue is per thread; leave it clean for the next caller */
    um_dkim_sign_key_free(k);
    BIO_free(mem);
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
    unsigned char *buf = NULL;
    size_t len = 0;
    int fd;

    *out = NULL;
    if ((st = sign_spec_check(spec, err)) != UM_OK)
        return st;
    if (spec->path == NULL || spec->path[0] == '\0')
        return um_error_set(err, UM_EINVAL, "dkim key \"%s\": no key file", spec->name);
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
    if (!S_ISREG(sb.st_mode)) {
        st = um_error_set(err, UM_EINVAL, "dkim key \"%s\": %s is not a regular file", spec->name,
                          spec->path);
        goto out;
    }
    if ((sb.st_mode & 077) != 0) {
        st = um_error_set(err, UM_EINVAL,
                          "dkim key \"%s\": %s has mode %04o; group or other access is refused "
                          "(chmod 600)",
                          spec->name, spec->path, (unsigned)(sb.st_mode & 07777));
        goto out;
    }
    if (sb.st_uid != 0 && sb.st_uid != spec->allowed_uid) {
        st = um_error_set(err, UM_EINVAL, "dkim key \"%s\": %s is owned by uid %lu, not root or uid %lu",
                          spec->name, spec->path, (unsigned long)sb.st_uid,
                          (unsigned long)spec->allowed_uid);
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

/* Copies a NULL-terminated list of field names, checking each is [A-Za-z0-9-]+ (libopendkim
 * pastes them into a regular expression of at most 1024 bytes). */
static enum um_status
sign_list_copy(const char *const *src, const char *what, char ***out, struct um_error *err)
{
    size_t n = 0, total = 0;
    char **l;

    while (src[n] != NULL)
        n++;
    l = calloc(n + 1, sizeof(*l));
    if (l == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(src[i]);
        bool ok = len > 0 && len <= 64;
        for (size_t j = 0; ok && j < len; j++) {
            unsigned char c = (unsigned char)src[i][j];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                 || c == '-';
        }
        total += len + 1;
        if (!ok || total > 900) {
            sign_list_free(l);
            return um_error_set(err, UM_EINVAL,
                                ok ? "dkim sign: %s list too long"
                                   : "dkim sign: bad header name in %s list",
                                what);
        }
        l[i] = sign_strdup(src[i]);
        if (l[i] == NULL) {
            sign_list_free(l);
            return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
        }
    }
    *out = l;
    return UM_OK;
}

void
um_dkim_sign_free(struct um_dkim_sign *ds)
{
    if (ds == NULL)
        return;
    if (ds->lib != NULL)
        dkim_close(ds->lib);
    sign_list_free(ds->sign);
    sign_list_free(ds->oversign);
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

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    sign = opts->sign_headers != NULL ? opts->sign_headers : sign_default_headers;
    over = opts->oversign_headers != NULL ? opts->oversign_headers : sign_default_oversign;
    ds = calloc(1, sizeof(*ds));
    if (ds == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    ds->hcanon = opts->header_canon == UM_DKIM_CANON_SIMPLE ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
    ds->bcanon = opts->body_canon == UM_DKIM_CANON_SIMPLE ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED;
    ds->leadspc = opts->value_has_leading_space;
    if ((st = sign_list_copy(sign, "sign_headers", &ds->sign, err)) != UM_OK)
        goto fail;
    if (ds->sign[0] == NULL) {
        st = um_error_set(err, UM_EINVAL, "dkim sign: empty sign_headers list");
        goto fail;
    }
    if (over[0] != NULL && (st = sign_list_copy(over, "oversign_headers", &ds->oversign, err)) != UM_OK)
        goto fail;
    ds->lib = dkim_init(NULL, NULL);
    if (ds->lib == NULL) {
        st = um_error_set(err, UM_ENOMEM, "dkim sign: dkim_init failed");
        goto fail;
    }
    /* No DNS on the signing side; make sure dkim_close() never runs the res_* defaults. */
    dkim_dns_set_init(ds->lib, NULL);
    dkim_dns_set_close(ds->lib, NULL);
    if (dkim_options(ds->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, ds->sign, sizeof(char **))
            != DKIM_STAT_OK
        || (ds->oversign != NULL
            && dkim_options(ds->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, ds->oversign,
                            sizeof(char **))
                   != DKIM_STAT_OK)) {
        st = um_error_set(err, UM_EINVAL, "dkim sign: libopendkim refused the header lists");
        goto fail;
    }
    if (opts->fixed_time != 0) {
        uint64_t t = opts->fixed_time;
        if (dkim_options(ds->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof(t))
            != DKIM_STAT_OK) {
            st = um_error_set(err, UM_EINVAL, "dkim sign: libopendkim refused fixed_time");
            goto fail;
        }
    }
    *out = ds;
    return UM_OK;
fail:
    um_dkim_sign_free(ds);
    return st;
}

/* ---- one message --------------------------------------------------------------------- */

static enum um_status
sign_fail(struct um_dkim_sign_session *s, enum um_status code, struct um_error *err,
          const char *what, size_t i)
{
    const char *why = NULL;

    if (i < s->n && s->one[i].dkim != NULL)
        why = dkim_geterror(s->one[i].dkim);
    s->state = SIGN_FAILED;
    s->failed = code;
    if (i < s->n) {
        return um_error_set(err, code, "dkim sign: %s failed for key \"%s\"%s%s", what,
                            s->one[i].key->name, why != NULL ? ": " : "", why != NULL ? why : "");
    }
    return um_error_set(err, code, "dkim sign: %s failed", what);
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

void
um_dkim_sign_session_free(struct um_dkim_sign_session *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        if (s->one[i].dkim != NULL)
            (void)dkim_free(s->one[i].dkim);
        free(s->one[i].value);
    }
    free(s->hbuf);
    free(s->id);
    free(s);
}

enum um_status
um_dkim_sign_begin(const struct um_dkim_sign *ds, const struct um_signer *const *signers,
                   size_t nsigners, const char *qid, struct um_dkim_sign_session **out,
                   struct um_error *err)
{
    struct um_dkim_sign_session *s;

    *out = NULL;
    if (nsigners == 0 || nsigners > UM_DKIM_SIGN_MAX_SIGNERS) {
        return um_error_set(err, UM_EINVAL, "dkim sign: %zu signers (1 to %d allowed)", nsigners,
                            UM_DKIM_SIGN_MAX_SIGNERS);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    s->ds = ds;
    s->id = (unsigned char *)sign_strdup(qid != NULL ? qid : "unimilter");
    if (s->id == NULL) {
        free(s);
        return um_error_set(err, UM_ENOMEM, "dkim sign: out of memory");
    }
    for (size_t i = 0; i < nsigners; i++) {
        const struct um_signer *k = signers[i];
        DKIM_STAT ds_st = DKIM_STAT_OK;

        s->one[i].key = k;
        s->n = i + 1;
        s->one[i].dkim = dkim_sign(ds->lib, s->id, NULL, k->pem, (const unsigned char *)k->selector,
                                   (const unsigned char *)k->domain, ds->hcanon, ds->bcanon,
                                   k->alg == UM_DKIM_ALG_ED25519_SHA256 ? DKIM_SIGN_ED25519SHA256
                                                                        : DKIM_SIGN_RSASHA256,
                                   -1, &ds_st);
        if (s->one[i].dkim == NULL) {
            enum um_status st = um_error_set(err, ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP,
                                             "dkim sign: dkim_sign failed for key \"%s\": %s",
                                             k->name, dkim_getresultstr(ds_st));
            um_dkim_sign_session_free(s);
            return st;
        }
        /* Simple header canonicalization hashes our own field byte for byte, but libopendkim
         * folds it once with b= empty (while signing) and again with b= filled, and the fold
         * before "b=" can move. Unfolded, both are the same line. */
        if (ds->hcanon == DKIM_CANON_SIMPLE
            && dkim_set_margin(s->one[i].dkim, 0) != DKIM_STAT_OK) {
            enum um_status st = sign_fail(s, UM_ETEMP, err, "dkim_set_margin", i);
            um_dkim_sign_session_free(s);
            return st;
        }
        if (k->identity != NULL
            && dkim_set_signer(s->one[i].dkim, (const unsigned char *)k->identity) != DKIM_STAT_OK) {
            enum um_status st = sign_fail(s, UM_ETEMP, err, "dkim_set_signer", i);
            um_dkim_sign_session_free(s);
            return st;
        }
    }
    s->state = SIGN_HEADERS;
    *out = s;
    return UM_OK;
}

enum um_status
um_dkim_sign_header(struct um_dkim_sign_session *s, struct um_str name, struct um_str value,
                    struct um_error *err)
{
    enum um_status st;
    size_t need, len = 0;
    bool prev_cr = false;

    if ((st = sign_state_check(s, SIGN_HEADERS, "header", err)) != UM_OK)
        return st;
    if (name.len == 0 || memchr(name.p, ':', name.len) != NULL)
        return um_error_set(err, UM_EINVAL, "dkim sign: bad header field name");
    /* One trailing line end is not part of the value. */
    if (value.len > 0 && value.p[value.len - 1] == '\n')
        value.len--;
    if (value.len > 0 && value.p[value.len - 1] == '\r')
        value.len--;
    if (name.len > UM_DKIM_SIGN_MAX_HEADER || value.len > UM_DKIM_SIGN_MAX_HEADER)
        return sign_fail(s, UM_ELIMIT, err, "header too long:", SIZE_MAX);
    need = name.len + 2 + 2 * value.len + 1; /* worst case: every byte a bare LF */
    if (need > s->hcap) {
        unsigned char *nb = realloc(s->hbuf, need);
        if (nb == NULL)
            return sign_fail(s, UM_ENOMEM, err, "header buffer", SIZE_MAX);
        s->hbuf = nb;
        s->hcap = need;
    }
    memcpy(s->hbuf, name.p, name.len);
    len = name.len;
    s->hbuf[len++] = ':';
    if (!s->ds->leadspc)
        s->hbuf[len++] = ' ';
    for (size_t i = 0; i < value.len; i++) {
        unsigned char c = (unsigned char)value.p[i];
        if (c == '\n' && !prev_cr)
            s->hbuf[len++] = '\r';
        s->hbuf[len++] = c;
        prev_cr = c == '\r';
    }
    if (len > UM_DKIM_SIGN_MAX_HEADER)
        return sign_fail(s, UM_ELIMIT, err, "header too long:", SIZE_MAX);
    s->hbuf[len] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        DKIM_STAT ds_st = dkim_header(s->one[i].dkim, s->hbuf, len);
        if (ds_st != DKIM_STAT_OK)
            return sign_fail(s, ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP, err,
                             "dkim_header", i);
    }
    return UM_OK;
}

enum um_status
um_dkim_sign_eoh(struct um_dkim_sign_session *s, struct um_error *err)
{
    enum um_status st;

    if ((st = sign_state_check(s, SIGN_HEADERS, "end of headers", err)) != UM_OK)
        return st;
    for (size_t i = 0; i < s->n; i++) {
        DKIM_STAT ds_st = dkim_eoh(s->one[i].dkim);
        if (ds_st != DKIM_STAT_OK)
            return sign_fail(s, ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP, err,
                             "dkim_eoh", i);
    }
    s->state = SIGN_BODY;
    s->prev_cr = false;
    s->clen = 0;
    return UM_OK;
}

static enum um_status
sign_flush(struct um_dkim_sign_session *s, struct um_error *err)
{
    if (s->clen == 0)
        return UM_OK;
    for (size_t i = 0; i < s->n; i++) {
        DKIM_STAT ds_st = dkim_body(s->one[i].dkim, s->conv, s->clen);
        if (ds_st != DKIM_STAT_OK)
            return sign_fail(s, ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP, err,
                             "dkim_body", i);
    }
    s->clen = 0;
    return UM_OK;
}

enum um_status
um_dkim_sign_body(struct um_dkim_sign_session *s, struct um_str chunk, struct um_error *err)
{
    enum um_status st;

    if ((st = sign_state_check(s, SIGN_BODY, "body", err)) != UM_OK)
        return st;
    for (size_t i = 0; i < chunk.len; i++) {
        unsigned char c = (unsigned char)chunk.p[i];
        if (s->clen + 2 > sizeof(s->conv) && (st = sign_flush(s, err)) != UM_OK)
            return st;
        if (c == '\n' && !s->prev_cr) /* RFC 5322 2.3: bare LF is not a line end; fix it */
            s->conv[s->clen++] = '\r';
        s->conv[s->clen++] = c;
        s->prev_cr = c == '\r';
    }
    if (chunk.len > 0)
        s->body_open = chunk.p[chunk.len - 1] != '\n';
    return UM_OK;
}

/* Copies v without CRs (the MTA adds them), with a leading space if the MTA wants one. */
static char *
sign_strip_cr(const unsigned char *v, size_t len, bool leadspc)
{
    char *o = malloc(len + 2), *p = o;

    if (o == NULL)
        return NULL;
    if (leadspc)
        *p++ = ' ';
    for (size_t i = 0; i < len; i++) {
        if (v[i] != '\r')
            *p++ = (char)v[i];
    }
    *p = '\0';
    return o;
}

enum um_status
um_dkim_sign_end(struct um_dkim_sign_session *s, struct um_error *err)
{
    enum um_status st;

    if ((st = sign_state_check(s, SIGN_BODY, "end of message", err)) != UM_OK)
        return st;
    /* RFC 6376 3.4.3/3.4.4: a body not ending in CRLF is canonicalized with one added (the
     * MTA adds it on the wire too); libopendkim refuses to sign without it. */
    if (s->body_open
        && (st = um_dkim_sign_body(s, s->prev_cr ? UM_STR("\n") : UM_STR("\r\n"), err))
               != UM_OK)
        return st;
    if ((st = sign_flush(s, err)) != UM_OK)
        return st;
    for (size_t i = 0; i < s->n; i++) {
        unsigned char *v = NULL;
        size_t vlen = 0;
        DKIM_STAT ds_st = dkim_eom(s->one[i].dkim, NULL);

        if (ds_st != DKIM_STAT_OK)
            return sign_fail(s, ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP, err,
                             "dkim_eom", i);
        ds_st = dkim_getsighdr_d(s->one[i].dkim, sizeof("DKIM-Signature: ") - 1, &v, &vlen);
        if (ds_st != DKIM_STAT_OK || v == NULL)
            return sign_fail(s, UM_ETEMP, err, "dkim_getsighdr_d", i);
        s->one[i].value = sign_strip_cr(v, vlen, s->ds->leadspc);
        if (s->one[i].value == NULL)
            return sign_fail(s, UM_ENOMEM, err, "result copy", i);
    }
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
