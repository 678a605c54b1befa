/*
 * test_dkim_dkimpy - dkimpy 1.1.4's test data through our verifier, scored against dkimpy's suite
 *
 * Data: shared/conformance/dkim-dkimpy/data (dkimpy's dkim/tests/data, unchanged). The
 * expectations and the DNS maps come from dkimpy's test code (Debian python3-dkim 1.1.4,
 * /usr/lib/python3/dist-packages/dkim/tests/), which was not copied: each row below names the
 * test it mirrors and the dnsfuncN map it uses. Records that live only in that code (the
 * brisbane Ed25519 key, the gmail 20120113 key, the broken key of dnsfunc6, the
 * example._domainkey.canonical.com samples) are quoted here.
 *
 * Two parts:
 *   1. Static messages: the data files dkimpy verifies as they are (signed by dkimpy, Exim,
 *      Gmail; or unsigned, where verify() must be False).
 *   2. Round trips: dkimpy signs test.message / rfc6376.msg / ed25519test.msg with a data key
 *      and verifies against a data record (test.txt, test2.txt, badversion.txt, badk.txt,
 *      test_tlsrpt.txt, the 1024/2048-bit SPKI and RSAPublicKey records, ed25519test.dns).
 *      We sign the same input with the same key through lib/dkim_sign (all four
 *      canonicalization pairs, as dkimpy's loops do) and verify with our verifier.
 *
 * Verdict: dkimpy.verify() checks the first DKIM-Signature only (idx=0) and returns True or
 * False; we compare it with our row 0 being PASS (no signature = False). Each disagreement
 * must be on known_diff[] (case id + why); an unlisted one, or a listed one that now agrees,
 * fails the test. The score is printed. Verifier options are the production defaults
 * (rsa-sha1 refused, RSA >= 1024 bits), which match dkimpy's defaults (minkey=1024).
 */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "testfile.h"
#include "dkim_sign.h"
#include "dkim_reply.h"
#include "dkim_verify.h"

/* libopendkim 2.11.0~beta2 leaks the Ed25519 key it loads (see test_dkim_sign.c). */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
    return "leak:dkim_privkey_load\nleak:dkim_sig_process\n";
}

const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0"; /* full stacks through libcrypto for the suppression */
}

#define DATA UM_SOURCE_DIR "/../shared/conformance/dkim-dkimpy/data"

/* ---- records quoted from dkimpy's test code ------------------------------------------ */

/* test_dkim.py dnsfunc: sample_dns (512-bit RSA, s=email) */
#define SAMPLE_RSA                                                                                 \
    "k=rsa; s=email;p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52T"            \
    "b/mPfjC0QJTocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ=="
/* test_dkim.py dnsfunc6: the same with one base64 character dropped ("...hvNAQ...") */
#define SAMPLE_RSA_BROKEN                                                                          \
    "k=rsa; p=MFwwDQYJKoZIhvNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52T"                     \
    "b/mPfjC0QJTocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ=="
/* test_dkim.py dnsfunc: 20120113._domainkey.gmail.com */
#define GMAIL_20120113                                                                             \
    "k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1Kd87/UeJjenpabgbFwh"                    \
    "+eBCsSTrqmwIYYvywlbhbqoo2DymndFkbjOVIPIldNs/m40KF+yzMn1skyoxcTUGCQ"                           \
    "s8g3FgD2Ap3ZB5DekAo5wMmk4wimDO+U8QzI3SD07y2+07wlNWwIt8svnxgdxGkVbb"                           \
    "hzY8i+RQ9DpSVpPbF7ykQxtKXkv/ahW3KjViiAH+ghvvIhkx4xYSIc9oSwVmAl5Oct"                           \
    "MEeWUwg8Istjqz8BZeTWbf41fbNhte7Y+YqZOwq1Sd0DbvYAD9NOZK9vlfuac0598H"                           \
    "Y+vtSBczUiKERHv1yRbcaQtZFh5wtiRrN04BLUTD21MycBX5jYchHjPY/wIDAQAB"
/* RFC 8463 A.2, as dnsfunc5 and the Ed25519 dnsfunc publish it */
#define BRISBANE   "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
/* test_dkim_ed25519.py dnsfunc: sample_dns and test._domainkey.example.net */
#define SAMPLE_ED  "k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y="
#define EXAMPLE_ED "v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y="

/* A record is "@file" (a data file, its final newline dropped) or the text itself. */
struct rr {
    const char *name, *value;
};

#define MAXRR 6

/* test_dkim.py dnsfunc, with test._domainkey.example.com set per round trip (slot 0). */
#define ZONE_DKIM(rec)                                                                             \
    {                                                                                              \
        {"test._domainkey.example.com", rec}, {"example._domainkey.canonical.com", SAMPLE_RSA},    \
        {                                                                                          \
            "20120113._domainkey.gmail.com", GMAIL_20120113                                        \
        }                                                                                          \
    }
#define ZONE_DKIM5                                                                                 \
    {                                                                                              \
        {"example._domainkey.canonical.com", SAMPLE_RSA},                                          \
            {"test._domainkey.football.example.com", "@test.txt"},                                 \
        {                                                                                          \
            "brisbane._domainkey.football.example.com", BRISBANE                                   \
        }                                                                                          \
    }
#define ZONE_DKIM6                                                                                 \
    {                                                                                              \
        {"test._domainkey.football.example.com", SAMPLE_RSA_BROKEN},                               \
        {                                                                                          \
            "brisbane._domainkey.football.example.com", BRISBANE                                   \
        }                                                                                          \
    }
#define ZONE_DKIM7                                                                                 \
    {                                                                                              \
        {                                                                                          \
            "test._domainkey.legitimate.com(.attacker.com", "@test.txt"                            \
        }                                                                                          \
    }
#define ZONE_ED                                                                                    \
    {                                                                                              \
        {"example._domainkey.canonical.com", SAMPLE_ED},                                           \
            {"test._domainkey.example.net", EXAMPLE_ED},                                           \
            {"sed._domainkey.test.ex", "@eximtest.dns"},                                           \
        {                                                                                          \
            "brisbane._domainkey.football.example.com", BRISBANE                                   \
        }                                                                                          \
    }
/* test_dkim_rsavariants.py dnsfunc */
#define ZONE_RSAVAR                                                                                \
    {                                                                                              \
        {"test._domainkey.example.com", "@1024_testkey_wo_markers.pub.txt"},                       \
            {"test2._domainkey.example.com", "@1024_testkey_wo_markers.pub.rsa.txt"},              \
            {"test3._domainkey.example.com", "@2048_testkey_wo_markers.pub.txt"},                  \
            {"test4._domainkey.example.com", "@2048_testkey_wo_markers.pub.rsa.txt"},              \
        {                                                                                          \
            "test5._domainkey.example.com", "@2048_testkey_PKCS8.key.pub.txt"                      \
        }                                                                                          \
    }

/* ---- fake zone (after test_dkim_verify.c) -------------------------------------------- */

struct fz {
    const struct rr *rr;
    char *val[MAXRR]; /* resolved values */
    unsigned queries;
};

static char *
data_file(const char *name, size_t *len)
{
    char path[512];

    snprintf(path, sizeof(path), DATA "/%s", name);
    return read_file(path, len);
}

static void
fz_init(struct fz *z, const struct rr *rr)
{
    memset(z, 0, sizeof(*z));
    z->rr = rr;
    for (size_t i = 0; i < MAXRR && rr[i].name != NULL; i++) {
        if (rr[i].value[0] == '@') {
            size_t n;
            char *v = data_file(rr[i].value + 1, &n);
            while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
                v[--n] = '\0';
            z->val[i] = v;
        } else {
            z->val[i] = strdup(rr[i].value);
            assert_non_null(z->val[i]);
        }
    }
}

static void
fz_clear(struct fz *z)
{
    for (size_t i = 0; i < MAXRR; i++)
        free(z->val[i]);
    memset(z, 0, sizeof(*z));
}

/* dkimpy's maps answer only the names they list (others trip an assert there); here an
 * unlisted name is NXDOMAIN. */
static enum um_status
fz_query(void *arg, const char *name, unsigned char *buf, size_t buflen,
         struct um_dkim_key_answer *ans, struct um_error *err)
{
    struct fz *z = arg;
    size_t nl = strlen(name);
    const char *txt = NULL;

    (void)err;
    z->queries++;
    if (nl > 0 && name[nl - 1] == '.')
        nl--;
    for (size_t i = 0; i < MAXRR && z->rr[i].name != NULL; i++) {
        if (strlen(z->rr[i].name) == nl && strncasecmp(z->rr[i].name, name, nl) == 0) {
            txt = z->val[i];
            break;
        }
    }
    ans->reason[0] = '\0';
    ans->result = txt != NULL ? UM_DNS_OK : UM_DNS_NXDOMAIN;
    ans->len = fz_packet(buf, buflen, name, txt != NULL ? 0 : 3, txt);
    return UM_OK;
}

/* ---- messages ------------------------------------------------------------------------ */

/* A copy with every bare LF made CRLF (what an MTA hands a milter; SOURCE.md). */
static char *
to_crlf(const char *src, size_t len, size_t *outlen)
{
    char *out = malloc(2 * len + 1);
    size_t o = 0;

    assert_non_null(out);
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\n' && (i == 0 || src[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = src[i];
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* Walks a CRLF message as a milter with SMFIP_HDR_LEADSPC sees it: each header field's name
 * and value (the bytes after the colon, folds kept, no final CRLF), then the body. */
typedef enum um_status hdr_fn(void *s, struct um_str name, struct um_str value,
                              struct um_error *err);

static size_t
walk_headers(const char *msg, size_t len, hdr_fn *fn, void *s)
{
    struct um_error err = {0};
    size_t i = 0;

    while (i < len) {
        size_t start = i, colon, end;
        if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')
            return i + 2;
        end = i;
        while (end + 1 < len) {
            if (msg[end] == '\r' && msg[end + 1] == '\n'
                && (end + 2 >= len || (msg[end + 2] != ' ' && msg[end + 2] != '\t')))
                break;
            end++;
        }
        colon = start;
        while (colon < end && msg[colon] != ':')
            colon++;
        if (colon < end) {
            if (fn(s, (struct um_str){msg + start, colon - start},
                   (struct um_str){msg + colon + 1, end - colon - 1}, &err)
                != UM_OK)
                fail_msg("header %.*s: %s", (int)(colon - start), msg + start, err.msg);
        }
        i = end + 2;
    }
    return len;
}

static enum um_status
verify_hdr(void *s, struct um_str name, struct um_str value, struct um_error *err)
{
    return um_dkim_verify_header(s, name, value, err);
}

static enum um_status
sign_hdr(void *s, struct um_str name, struct um_str value, struct um_error *err)
{
    return um_dkim_sign_header(s, name, value, err);
}

struct verdict {
    bool pass;        /* dkimpy's sense: the first signature verified */
    size_t nsigs;     /* our rows */
    char detail[200]; /* our row 0: result (reason) */
};

static struct verdict
verify_msg(const char *msg, size_t len, const struct rr *zone)
{
    struct fz z;
    struct um_dkim_verify_opts o = {0, 0, false, true};
    struct um_dkim_verify *v = NULL;
    struct um_dkim_verify_session *s = NULL;
    struct um_dkim_verify_results res;
    struct um_error err = {0};
    struct verdict out = {false, 0, "no signature"};
    size_t i;

    fz_init(&z, zone);
    if (um_dkim_verify_new_with_query(fz_query, &z, &o, &v, &err) != UM_OK)
        fail_msg("verify_new: %s", err.msg);
    assert_int_equal(um_dkim_verify_begin(v, "DKIMPY", &s, &err), UM_OK);
    i = walk_headers(msg, len, verify_hdr, s);
    assert_int_equal(um_dkim_verify_eoh(s, &err), UM_OK);
    assert_int_equal(um_dkim_verify_body(s, (struct um_str){msg + i, len - i}, &err), UM_OK);
    assert_int_equal(um_dkim_verify_end(s, &res, &err), UM_OK);
    out.nsigs = res.nsigs;
    if (res.nsigs > 0) {
        out.pass = res.sigs[0].result == UM_DKIM_VERIFY_PASS;
        snprintf(out.detail, sizeof(out.detail), "%s (%s)",
                 um_dkim_verify_result_name(res.sigs[0].result), res.sigs[0].reason);
    }
    um_dkim_verify_session_free(s);
    um_dkim_verify_free(v);
    fz_clear(&z);
    return out;
}

/* Signs the CRLF message with key (header/body canonicalization given) and returns
 * "DKIM-Signature:" value CRLF + message (malloc'd, CRLF throughout). */
static char *
sign_msg(const struct um_signer *key, enum um_dkim_canon hc, enum um_dkim_canon bc, const char *msg,
         size_t len, size_t *outlen)
{
    struct um_dkim_sign_opts o = {
        .header_canon = hc, .body_canon = bc, .value_has_leading_space = true};
    struct um_dkim_sign *ds = NULL;
    struct um_dkim_sign_session *s = NULL;
    struct um_error err = {0};
    const char *v;
    char *out;
    size_t i, o_len = 0;

    if (um_dkim_sign_new(&o, &ds, &err) != UM_OK)
        fail_msg("sign_new: %s", err.msg);
    if (um_dkim_sign_begin(ds, &key, 1, "DKIMPY", &s, &err) != UM_OK)
        fail_msg("sign_begin: %s", err.msg);
    i = walk_headers(msg, len, sign_hdr, s);
    assert_int_equal(um_dkim_sign_eoh(s, &err), UM_OK);
    assert_int_equal(um_dkim_sign_body(s, (struct um_str){msg + i, len - i}, &err), UM_OK);
    if (um_dkim_sign_end(s, &err) != UM_OK)
        fail_msg("sign_end: %s", err.msg);
    v = um_dkim_sign_value(s, 0);
    out = malloc(2 * strlen(v) + len + 64);
    assert_non_null(out);
    o_len = (size_t)sprintf(out, "DKIM-Signature:");
    for (; *v != '\0'; v++) {
        if (*v == '\n')
            out[o_len++] = '\r';
        out[o_len++] = *v;
    }
    out[o_len++] = '\r';
    out[o_len++] = '\n';
    memcpy(out + o_len, msg, len);
    o_len += len;
    out[o_len] = '\0';
    *outlen = o_len;
    um_dkim_sign_session_free(s);
    um_dkim_sign_free(ds);
    return out;
}

/* ---- known differences and scoring --------------------------------------------------- */

/* Disagreements we accept: case id (as printed) + why. */
static const struct {
    const char *id, *why;
} known_diff[] = {
#define PKCS1                                                                                      \
    "p= is a bare PKCS#1 RSAPublicKey, not SubjectPublicKeyInfo: libopendkim decodes keys "        \
    "only with d2i_PUBKEY_bio (SPKI), dkimpy accepts both; RFC 6376 3.6.1's wording names "        \
    "RSAPublicKey, but its examples and every signer publish SPKI"
    {"1024_testkey_wo_markers.pub.rsa.txt simple/simple", PKCS1},
    {"1024_testkey_wo_markers.pub.rsa.txt simple/relaxed", PKCS1},
    {"1024_testkey_wo_markers.pub.rsa.txt relaxed/simple", PKCS1},
    {"1024_testkey_wo_markers.pub.rsa.txt relaxed/relaxed", PKCS1},
    {"2048_testkey_wo_markers.pub.rsa.txt simple/simple", PKCS1},
    {"2048_testkey_wo_markers.pub.rsa.txt simple/relaxed", PKCS1},
    {"2048_testkey_wo_markers.pub.rsa.txt relaxed/simple", PKCS1},
    {"2048_testkey_wo_markers.pub.rsa.txt relaxed/relaxed", PKCS1},
#undef PKCS1
};

static const char *
known_why(const char *id)
{
    for (size_t i = 0; i < sizeof(known_diff) / sizeof(known_diff[0]); i++) {
        if (strcmp(known_diff[i].id, id) == 0)
            return known_diff[i].why;
    }
    return NULL;
}

struct score {
    unsigned total, agree, known, unexpected, stale;
};

static struct score score_all;

static void
score(struct score *sc, const char *id, const char *dkimpy_test, bool want, const struct verdict *g)
{
    const char *why = known_why(id);

    sc->total++;
    if (g->pass == want) {
        sc->agree++;
        if (why != NULL) {
            sc->stale++;
            print_message("  STALE  %-44s now agrees (%s): drop it from known_diff\n", id,
                          g->detail);
        } else {
            print_message("  ok     %-44s %-5s %s\n", id, want ? "True" : "False", g->detail);
        }
    } else if (why != NULL) {
        sc->known++;
        print_message("  KNOWN  %-44s dkimpy %s, we %s: %s\n", id, want ? "True" : "False",
                      g->detail, why);
    } else {
        sc->unexpected++;
        print_message("  FAIL   %-44s got %s, want %s (dkimpy %s)\n", id, g->detail,
                      want ? "pass" : "not pass", dkimpy_test);
    }
}

static void
score_end(const char *what, const struct score *sc)
{
    print_message("dkimpy %s: %u/%u agree, %u known differences, %u unexpected, %u stale\n", what,
                  sc->agree, sc->total, sc->known, sc->unexpected, sc->stale);
    score_all.total += sc->total;
    score_all.agree += sc->agree;
    score_all.known += sc->known;
    score_all.unexpected += sc->unexpected;
    score_all.stale += sc->stale;
    assert_int_equal(sc->unexpected, 0);
    assert_int_equal(sc->stale, 0);
}

/* ---- 1. static messages -------------------------------------------------------------- */

static void
test_dkimpy_static(void **state)
{
    static const struct {
        const char *file, *dkimpy_test;
        bool want; /* dkimpy.verify() */
        struct rr zone[MAXRR];
    } cases[] = {
        {"test.message", "test_dkim.py test_verifies_nosig (dnsfunc)", false,
         ZONE_DKIM("@test.txt")},
        {"rfc6376.w1258.msg", "test_dkim.py test_non_utf8 (unsigned message, dnsfunc5)", false,
         ZONE_DKIM5},
        {"rfc6376.signed.msg", "test_dkim.py test_double_previous_verifies (dnsfunc5)", true,
         ZONE_DKIM5},
        {"rfc6376.signed.msg", "test_dkim_ed25519.py test_rfc8032_previous_verifies (dnsfunc)",
         true, ZONE_ED},
        /* Agrees (not pass): libopendkim calls the bad base64 in p= DKIM_SIGERROR_DNSSYNTAX,
         * which lib/dkim_verify.c maps to permerror (RFC 6376 6.1.2). */
        {"rfc6376.signed.rsa.msg", "test_dkim.py test_catch_bad_key (dnsfunc6)", false, ZONE_DKIM6},
        {"rfc6376.signed.rsa.msg", "SOURCE.md: verifies with test.txt (dnsfunc5)", true,
         ZONE_DKIM5},
        {"test.message.baddomain", "test_dkim.py test_invalid_domain_verify (dnsfunc7)", false,
         ZONE_DKIM7},
        {"test2.message", "test_dkim.py test_degenerate_folding (dnsfunc)", true,
         ZONE_DKIM("@test.txt")},
        {"ed25519test2.msg", "test_dkim_ed25519.py test_verify_third_party (dnsfunc)", true,
         ZONE_ED},
    };
    struct score sc = {0};

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t raw_len, len;
        char *raw = data_file(cases[c].file, &raw_len), *msg = to_crlf(raw, raw_len, &len);
        char id[160];
        const char *map = strrchr(cases[c].dkimpy_test, '(');
        struct verdict g = verify_msg(msg, len, cases[c].zone);

        snprintf(id, sizeof(id), "%s %.*s", cases[c].file, map != NULL ? (int)(strlen(map)) : 0,
                 map != NULL ? map : "");
        score(&sc, id, cases[c].dkimpy_test, cases[c].want, &g);
        free(raw);
        free(msg);
    }
    score_end("static messages", &sc);
}

/* ---- 2. round trips ------------------------------------------------------------------ */

static struct um_signer *
load_key(const char *file, const char *domain, const char *selector, bool ed25519_seed)
{
    struct um_dkim_sign_keyspec spec = {file, domain, selector, NULL, NULL, 0};
    struct um_signer *k = NULL;
    struct um_error err = {0};
    size_t len;
    char *pem = data_file(file, &len);

    if (ed25519_seed) {
        /* dkimpy's Ed25519 keys are a bare base64 seed: make PKCS#8 PEM of it. */
        unsigned char seed[48];
        BIO *b = BIO_new(BIO_s_mem());
        BUF_MEM *bm = NULL;
        EVP_PKEY *pk;

        assert_true(len >= 44);
        assert_int_equal(EVP_DecodeBlock(seed, (const unsigned char *)pem, 44), 33);
        pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        assert_non_null(pk);
        assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
        BIO_get_mem_ptr(b, &bm);
        if (um_dkim_sign_key_from_pem(&spec, (struct um_str){bm->data, bm->length}, &k, &err)
            != UM_OK)
            fail_msg("%s: %s", file, err.msg);
        OPENSSL_cleanse(seed, sizeof(seed));
        BIO_free(b);
        EVP_PKEY_free(pk);
    } else if (um_dkim_sign_key_from_pem(&spec, (struct um_str){pem, len}, &k, &err) != UM_OK) {
        fail_msg("%s: %s", file, err.msg);
    }
    free(pem);
    return k;
}

enum mutate { M_NONE, M_BODY_FOO, M_FROM_END, M_FROM_FRONT };

/* dkimpy's test_altered_body_fails appends "foo"; test_multiple_from_fails adds
 * From: "Resident Evil" <sales@spammer.com> after the last header or before the first. */
static char *
mutate(const char *signed_msg, size_t len, enum mutate m, size_t *outlen)
{
    static const char from[] = "From: \"Resident Evil\" <sales@spammer.com>\r\n";
    char *out = malloc(len + sizeof(from) + 8);
    const char *eoh = strstr(signed_msg, "\r\n\r\n");
    size_t h = 0;

    assert_non_null(out);
    assert_non_null(eoh);
    /* the DKIM-Signature is first; "in front" means in front of the original headers */
    if (m == M_FROM_FRONT) {
        const char *orig = strstr(signed_msg, "\r\n");
        while (orig != NULL && (orig[2] == ' ' || orig[2] == '\t'))
            orig = strstr(orig + 2, "\r\n");
        assert_non_null(orig);
        h = (size_t)(orig + 2 - signed_msg);
    } else {
        h = (size_t)(eoh + 2 - signed_msg);
    }
    if (m == M_BODY_FOO) {
        memcpy(out, signed_msg, len);
        memcpy(out + len, "foo", 3);
        *outlen = len + 3;
    } else if (m == M_NONE) {
        memcpy(out, signed_msg, len);
        *outlen = len;
    } else {
        memcpy(out, signed_msg, h);
        memcpy(out + h, from, sizeof(from) - 1);
        memcpy(out + h + sizeof(from) - 1, signed_msg + h, len - h);
        *outlen = len + sizeof(from) - 1;
    }
    out[*outlen] = '\0';
    return out;
}

static void
test_dkimpy_round_trips(void **state)
{
    static const struct {
        const char *name, *dkimpy_test; /* name: the record (or key) under test */
        const char *msg, *key, *domain, *selector;
        bool ed25519;
        enum mutate m;
        bool want;
        struct rr zone[MAXRR];
    } cases[] = {
        {"test.txt", "test_dkim.py test_verifies (dnsfunc)", "test.message", "test.private",
         "example.com", "test", false, M_NONE, true, ZONE_DKIM("@test.txt")},
        {"test2.txt (no k=)", "test_dkim.py test_implicit_k (dnsfunc2)", "test.message",
         "test.private", "example.com", "test", false, M_NONE, true, ZONE_DKIM("@test2.txt")},
        {"badversion.txt", "test_dkim.py test_bad_version (dnsfunc3)", "test.message",
         "test.private", "example.com", "test", false, M_NONE, false, ZONE_DKIM("@badversion.txt")},
        {"badk.txt", "test_dkim.py test_unknown_k (dnsfunc4)", "test.message", "test.private",
         "example.com", "test", false, M_NONE, false, ZONE_DKIM("@badk.txt")},
        {"test_tlsrpt.txt", "test_dkim_tlsrpt.py test_ignores_tlsrptsvc (dnsfunc6)", "test.message",
         "test.private", "example.com", "test", false, M_NONE, false,
         ZONE_DKIM("@test_tlsrpt.txt")},
        {"test.txt, body + foo", "test_dkim.py test_altered_body_fails (dnsfunc)", "test.message",
         "test.private", "example.com", "test", false, M_BODY_FOO, false, ZONE_DKIM("@test.txt")},
        {"test.txt, From added last", "test_dkim.py test_multiple_from_fails (dnsfunc)",
         "test.message", "test.private", "example.com", "test", false, M_FROM_END, false,
         ZONE_DKIM("@test.txt")},
        {"test.txt, From added first", "test_dkim.py test_multiple_from_fails (dnsfunc)",
         "test.message", "test.private", "example.com", "test", false, M_FROM_FRONT, false,
         ZONE_DKIM("@test.txt")},
        {"test.txt, rfc6376.msg", "test_dkim.py test_double_verifies (dnsfunc5)", "rfc6376.msg",
         "test.private", "football.example.com", "test", false, M_NONE, true, ZONE_DKIM5},
        {"1024_testkey_wo_markers.pub.txt",
         "test_dkim_rsavariants.py test_verifies_SubjectPublicKeyInfo1024", "test.message",
         "1024_testkey.key", "example.com", "test", false, M_NONE, true, ZONE_RSAVAR},
        {"1024_testkey_wo_markers.pub.rsa.txt",
         "test_dkim_rsavariants.py test_verifies_RSAPublicKey1024", "test.message",
         "1024_testkey.key", "example.com", "test2", false, M_NONE, true, ZONE_RSAVAR},
        {"2048_testkey_wo_markers.pub.txt",
         "test_dkim_rsavariants.py test_verifiesSubjectPublicKeyInfo2048", "test.message",
         "2048_testkey.key", "example.com", "test3", false, M_NONE, true, ZONE_RSAVAR},
        {"2048_testkey_wo_markers.pub.rsa.txt",
         "test_dkim_rsavariants.py test_verifiesRSAPublicKey2048", "test.message",
         "2048_testkey.key", "example.com", "test4", false, M_NONE, true, ZONE_RSAVAR},
        {"2048_testkey_PKCS8.key.pub.txt",
         "test_dkim_rsavariants.py test_verifies_RSAPublicKey2048PKCS8", "test.message",
         "2048_testkey_PKCS8.key", "example.com", "test5", false, M_NONE, true, ZONE_RSAVAR},
        {"ed25519test.key / example.net", "test_dkim_ed25519.py test_verifies (dnsfunc)",
         "ed25519test.msg", "ed25519test.key", "example.net", "test", true, M_NONE, true, ZONE_ED},
        {"rfc8032_7_1.key / brisbane", "test_dkim_ed25519.py test_rfc8032_verifies (dnsfunc)",
         "rfc6376.msg", "rfc8032_7_1.key", "football.example.com", "brisbane", true, M_NONE, true,
         ZONE_ED},
        {"ed25519test.key, body + foo", "test_dkim_ed25519.py test_altered_body_fails (dnsfunc)",
         "ed25519test.msg", "ed25519test.key", "example.net", "test", true, M_BODY_FOO, false,
         ZONE_ED},
    };
    static const struct {
        enum um_dkim_canon h, b;
        const char *name;
    } canons[] = {
        {UM_DKIM_CANON_SIMPLE, UM_DKIM_CANON_SIMPLE, "simple/simple"},
        {UM_DKIM_CANON_SIMPLE, UM_DKIM_CANON_RELAXED, "simple/relaxed"},
        {UM_DKIM_CANON_RELAXED, UM_DKIM_CANON_SIMPLE, "relaxed/simple"},
        {UM_DKIM_CANON_RELAXED, UM_DKIM_CANON_RELAXED, "relaxed/relaxed"},
    };
    struct score sc = {0};

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t raw_len, len;
        char *raw = data_file(cases[c].msg, &raw_len), *msg = to_crlf(raw, raw_len, &len);
        struct um_signer *k =
            load_key(cases[c].key, cases[c].domain, cases[c].selector, cases[c].ed25519);

        for (size_t n = 0; n < sizeof(canons) / sizeof(canons[0]); n++) {
            size_t slen, mlen;
            char *signed_msg = sign_msg(k, canons[n].h, canons[n].b, msg, len, &slen);
            char *m = mutate(signed_msg, slen, cases[c].m, &mlen);
            char id[160];
            struct verdict g = verify_msg(m, mlen, cases[c].zone);

            snprintf(id, sizeof(id), "%s %s", cases[c].name, canons[n].name);
            score(&sc, id, cases[c].dkimpy_test, cases[c].want, &g);
            free(m);
            free(signed_msg);
        }
        um_dkim_sign_key_free(k);
        free(raw);
        free(msg);
    }
    score_end("round trips (our signer, dkimpy's keys and records)", &sc);
}

static int
print_total(void **state)
{
    (void)state;
    print_message("dkimpy corpus: %u/%u agree, %u known differences\n", score_all.agree,
                  score_all.total, score_all.known);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dkimpy_static),
        cmocka_unit_test(test_dkimpy_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, print_total);
}
