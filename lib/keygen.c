/*
 * keygen.c - generate DKIM keys, format and check their DNS records
 *
 * Design note. Generation uses the OpenSSL 3 EVP API (EVP_PKEY_CTX by algorithm name), then
 * hands the PEM text to um_dkim_sign_key_from_pem(): the same code that loads keys in the
 * daemon validates the new one and derives its p= value, so keygen, check-keys and signing
 * can never disagree about the public half. The private PEM only lives in an OpenSSL
 * "secure memory" BIO (cleansed on free) between generation and the write.
 * The file is created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 so an existing file or a
 * planted symlink is never followed or overwritten; a failed write removes the partial file.
 *
 * check: the record is a tag=value list (RFC 6376 3.2, 3.6.1); we need v= (optional, must be
 * "DKIM1" and first when present), k= (default rsa) and p=. RSA p= is decoded as DER
 * SubjectPublicKeyInfo (what RFC 6376 says) or, leniently, a bare PKCS#1 RSAPublicKey (some
 * generators publish that and most verifiers accept it), re-encoded as SPKI and compared with
 * the loaded key's; Ed25519 p= must decode to exactly 32 bytes. Work is O(record length).
 */
#include "keygen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define KEYGEN_TXT_CHUNK 255  /* RFC 1035 3.3: one character-string */
#define KEYGEN_P_MAX     4096 /* decoded bytes; an 8192-bit SPKI is ~1.1 KB */

const char *
um_keygen_verdict_name(enum um_keygen_verdict v)
{
    switch (v) {
    case UM_KEYGEN_MATCH:
        return "match";
    case UM_KEYGEN_MISMATCH:
        return "mismatch";
    case UM_KEYGEN_REVOKED:
        return "revoked";
    case UM_KEYGEN_WRONG_TYPE:
        return "wrong-type";
    case UM_KEYGEN_MALFORMED:
        return "malformed";
    }
    return "unknown";
}

enum um_status
um_keygen_txt_value(const struct um_signer *key, char **value, struct um_error *err)
{
    const char *pub = um_dkim_sign_key_public_b64(key);
    const char *kt = um_dkim_sign_alg_keytype(um_dkim_sign_key_alg(key));
    size_t n = strlen(pub) + strlen(kt) + sizeof("v=DKIM1; k=; p=");
    char *v = malloc(n);

    if (v == NULL)
        return um_error_set(err, UM_ENOMEM, "keygen: out of memory");
    (void)snprintf(v, n, "v=DKIM1; k=%s; p=%s", kt, pub);
    *value = v;
    return UM_OK;
}

enum um_status
um_keygen_zone_record(const char *selector, const char *domain, const char *value, char **record,
                      struct um_error *err)
{
    size_t vlen = strlen(value), chunks = vlen / KEYGEN_TXT_CHUNK + 1;
    size_t cap = strlen(selector) + strlen(domain) + vlen + chunks * 8 + 64, len;
    char *r = malloc(cap);

    if (r == NULL)
        return um_error_set(err, UM_ENOMEM, "keygen: out of memory");
    for (size_t i = 0; i < vlen; i++) {
        if (value[i] == '"' || value[i] == '\\' || (unsigned char)value[i] < 0x20) {
            free(r);
            return um_error_set(err, UM_EINVAL, "keygen: record value needs quoting");
        }
    }
    len = (size_t)snprintf(r, cap, "%s._domainkey.%s. IN TXT (", selector, domain);
    for (size_t off = 0; off < vlen || off == 0; off += KEYGEN_TXT_CHUNK) {
        size_t n = vlen - off < KEYGEN_TXT_CHUNK ? vlen - off : KEYGEN_TXT_CHUNK;
        len += (size_t)snprintf(r + len, cap - len, "%s\"%.*s\"", off == 0 ? " " : "\n\t", (int)n,
                                value + off);
        if (vlen == 0)
            break;
    }
    (void)snprintf(r + len, cap - len, " )\n");
    *record = r;
    return UM_OK;
}

static EVP_PKEY *
keygen_generate(enum um_dkim_alg alg, unsigned bits)
{
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pk = NULL;

    ctx = EVP_PKEY_CTX_new_from_name(NULL, alg == UM_DKIM_ALG_ED25519_SHA256 ? "ED25519" : "RSA",
                                     NULL);
    if (ctx == NULL)
        return NULL;
    if (EVP_PKEY_keygen_init(ctx) != 1
        || (alg == UM_DKIM_ALG_RSA_SHA256 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) != 1)
        || EVP_PKEY_generate(ctx, &pk) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static enum um_status
keygen_write_file(const char *path, const char *data, size_t len, struct um_error *err)
{
    char ebuf[128];
    size_t off = 0;
    int fd, e;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        e = errno;
        return um_error_set(err, UM_EIO, "keygen: cannot create %s: %s%s", path,
                            um_strerror(e, ebuf, sizeof(ebuf)),
                            e == EEXIST ? " (refusing to overwrite)" : "");
    }
    if (fchmod(fd, 0600) != 0) /* O_CREAT honours umask, which may only remove bits: assert */
        goto fail;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return UM_OK;
fail:
    e = errno;
    if (fd >= 0)
        (void)close(fd);
    (void)unlink(path);
    return um_error_set(err, UM_EIO, "keygen: cannot write %s: %s", path,
                        um_strerror(e, ebuf, sizeof(ebuf)));
}

enum um_status
um_keygen_write(const struct um_keygen_req *req, char **record, struct um_error *err)
{
    unsigned bits = req->bits == 0 ? UM_KEYGEN_DEFAULT_RSA_BITS : req->bits;
    struct um_dkim_sign_keyspec spec = {
        .name = "new", .domain = req->domain, .selector = req->selector, .path = req->path};
    struct um_signer *key = NULL;
    EVP_PKEY *pk = NULL;
    BIO *mem = NULL;
    BUF_MEM *bm = NULL;
    char *value = NULL;
    enum um_status st;

    *record = NULL;
    if (req->path == NULL || req->path[0] == '\0' || req->domain == NULL || req->selector == NULL)
        return um_error_set(err, UM_EINVAL, "keygen: domain, selector and path are required");
    if (req->alg == UM_DKIM_ALG_RSA_SHA256
        && (bits < UM_DKIM_SIGN_MIN_RSA_BITS || bits > UM_KEYGEN_MAX_RSA_BITS)) {
        return um_error_set(err, UM_EINVAL, "keygen: RSA key size %u outside %d..%d", bits,
                            UM_DKIM_SIGN_MIN_RSA_BITS, UM_KEYGEN_MAX_RSA_BITS);
    }
    pk = keygen_generate(req->alg, bits);
    if (pk == NULL) {
        st = um_error_set(err, UM_ETEMP, "keygen: OpenSSL could not generate a %s key",
                          um_dkim_sign_alg_keytype(req->alg));
        goto out;
    }
    mem = BIO_new(BIO_s_secmem());
    if (mem == NULL || PEM_write_bio_PrivateKey(mem, pk, NULL, NULL, 0, NULL, NULL) != 1
        || BIO_get_mem_ptr(mem, &bm) != 1 || bm == NULL) {
        st = um_error_set(err, UM_ENOMEM, "keygen: cannot encode the key");
        goto out;
    }
    /* Validates domain/selector and derives p= before anything touches the disk. */
    st = um_dkim_sign_key_from_pem(&spec, (struct um_str){bm->data, bm->length}, &key, err);
    if (st != UM_OK)
        goto out;
    if ((st = keygen_write_file(req->path, bm->data, bm->length, err)) != UM_OK)
        goto out;
    if ((st = um_keygen_txt_value(key, &value, err)) != UM_OK)
        goto out;
    st = um_keygen_zone_record(req->selector, req->domain, value, record, err);
out:
    ERR_clear_error();
    free(value);
    um_dkim_sign_key_free(key);
    BIO_free(mem);
    EVP_PKEY_free(pk);
    return st;
}

/* ---- check --------------------------------------------------------------------------- */

static bool
keygen_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Strict base64 (RFC 4648 4) with white space ignored; returns decoded length or -1. */
static long
keygen_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    unsigned acc = 0, nbits = 0, pad = 0;
    size_t n = 0, chars = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        unsigned v;
        if (keygen_wsp(c))
            continue;
        if (c == '=') {
            pad++;
            chars++;
            continue;
        }
        if (pad > 0)
            return -1;
        if (c >= 'A' && c <= 'Z')
            v = (unsigned)(c - 'A');
        else if (c >= 'a' && c <= 'z')
            v = (unsigned)(c - 'a' + 26);
        else if (c >= '0' && c <= '9')
            v = (unsigned)(c - '0' + 52);
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else
            return -1;
        chars++;
        acc = (acc << 6) | v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (unsigned char)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    if (chars % 4 != 0 || pad > 2)
        return -1;
    return (long)n;
}

/* Finds tag t in a tag-list; sets *v to its value with surrounding WSP trimmed. */
static bool
keygen_tag(struct um_str txt, const char *t, struct um_str *v, bool *first)
{
    size_t i = 0, idx = 0;

    while (i < txt.len) {
        size_t s = i, e, eq;
        while (i < txt.len && txt.p[i] != ';')
            i++;
        e = i++;
        while (s < e && keygen_wsp(txt.p[s]))
            s++;
        for (eq = s; eq < e && txt.p[eq] != '='; eq++)
            ;
        if (eq < e) {
            size_t ne = eq;
            while (ne > s && keygen_wsp(txt.p[ne - 1]))
                ne--;
            if (um_str_eq_ci((struct um_str){txt.p + s, ne - s}, t) && ne - s == strlen(t)) {
                size_t vs = eq + 1, ve = e;
                while (vs < ve && keygen_wsp(txt.p[vs]))
                    vs++;
                while (ve > vs && keygen_wsp(txt.p[ve - 1]))
                    ve--;
                *v = (struct um_str){txt.p + vs, ve - vs};
                if (first != NULL)
                    *first = idx == 0;
                return true;
            }
        }
        if (e > s)
            idx++;
    }
    return false;
}

static void
keygen_verdict(struct um_keygen_check *res, enum um_keygen_verdict v, const char *reason)
{
    res->verdict = v;
    (void)snprintf(res->reason, sizeof(res->reason), "%s", reason);
}

/* Canonical p= (SPKI base64) of an RSA public key given as SPKI or PKCS#1 DER. */
static char *
keygen_rsa_canonical(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    unsigned char *out = NULL;
    char *b64 = NULL;
    int olen;

    if (pk == NULL || p != der + len) {
        OSSL_DECODER_CTX *dc;
        EVP_PKEY_free(pk);
        pk = NULL;
        dc = OSSL_DECODER_CTX_new_for_pkey(&pk, "DER", "type-specific", "RSA", EVP_PKEY_PUBLIC_KEY,
                                           NULL, NULL);
        p = der;
        size_t left = len;
        if (dc == NULL || OSSL_DECODER_from_data(dc, &p, &left) != 1 || left != 0) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        OSSL_DECODER_CTX_free(dc);
    }
    if (pk == NULL || !EVP_PKEY_is_a(pk, "RSA"))
        goto out;
    olen = i2d_PUBKEY(pk, &out);
    if (olen <= 0)
        goto out;
    b64 = malloc(((size_t)olen + 2) / 3 * 4 + 1);
    if (b64 != NULL)
        (void)EVP_EncodeBlock((unsigned char *)b64, out, olen);
out:
    OPENSSL_free(out);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return b64;
}

enum um_status
um_keygen_check(const struct um_signer *key, struct um_str txt, struct um_keygen_check *res,
                struct um_error *err)
{
    enum um_dkim_alg alg = um_dkim_sign_key_alg(key);
    const char *want = um_dkim_sign_alg_keytype(alg);
    struct um_str v, k = UM_STR("rsa"), p;
    unsigned char *der;
    long n;
    bool first;
    char *canon = NULL;

    memset(res, 0, sizeof(*res));
    if (keygen_tag(txt, "v", &v, &first) && (!first || !um_str_eq_ci(v, "DKIM1"))) {
        keygen_verdict(res, UM_KEYGEN_MALFORMED, "v= is not DKIM1 or not the first tag");
        return UM_OK;
    }
    (void)keygen_tag(txt, "k", &k, NULL);
    if (!um_str_eq_ci(k, want)) {
        (void)snprintf(res->reason, sizeof(res->reason), "k=%.*s but the key is %s",
                       (int)(k.len > 20 ? 20 : k.len), k.p, want);
        res->verdict = UM_KEYGEN_WRONG_TYPE;
        return UM_OK;
    }
    if (!keygen_tag(txt, "p", &p, NULL)) {
        keygen_verdict(res, UM_KEYGEN_MALFORMED, "no p= tag");
        return UM_OK;
    }
    if (p.len == 0) {
        keygen_verdict(res, UM_KEYGEN_REVOKED, "p= is empty (key revoked)");
        return UM_OK;
    }
    der = malloc(KEYGEN_P_MAX);
    if (der == NULL)
        return um_error_set(err, UM_ENOMEM, "keygen: out of memory");
    n = keygen_b64_decode(p.p, p.len, der, KEYGEN_P_MAX);
    if (n <= 0) {
        keygen_verdict(res, UM_KEYGEN_MALFORMED, "p= is not valid base64");
    } else if (alg == UM_DKIM_ALG_ED25519_SHA256) {
        if (n != 32) {
            keygen_verdict(res, UM_KEYGEN_MALFORMED, "p= is not a raw 32-byte Ed25519 key");
        } else {
            canon = malloc(45);
            if (canon == NULL) {
                free(der);
                return um_error_set(err, UM_ENOMEM, "keygen: out of memory");
            }
            (void)EVP_EncodeBlock((unsigned char *)canon, der, 32);
        }
    } else {
        canon = keygen_rsa_canonical(der, (size_t)n);
        if (canon == NULL)
            keygen_verdict(res, UM_KEYGEN_MALFORMED, "p= is not an RSA public key");
    }
    if (canon != NULL) {
        if (strcmp(canon, um_dkim_sign_key_public_b64(key)) == 0)
            keygen_verdict(res, UM_KEYGEN_MATCH, "published key matches");
        else
            keygen_verdict(res, UM_KEYGEN_MISMATCH, "published key is a different key");
    }
    free(canon);
    free(der);
    return UM_OK;
}
