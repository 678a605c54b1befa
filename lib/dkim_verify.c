/*
 * dkim_verify.c - inbound DKIM verification with libopendkim
 *
 * Design note. One DKIM_LIB per struct um_dkim_verify (per config snapshot), configured
 * completely in _new because dkim_options() and the callback setters are unlocked; afterwards
 * sessions only create DKIM handles, which libopendkim documents as safe from many threads.
 *
 * DNS: libopendkim's query callbacks (doc/libraries.md 3.1) call our key-query function
 * synchronously from dkim_eom(); "start" copies a reply packet into libopendkim's 8 KiB
 * buffer and "waitreply" hands over its length. libopendkim parses the packet itself
 * (rcode, ancount, CNAME skipping, TXT joining). The traps of doc/libraries.md 3.2 are avoided: a
 * TEMPFAIL (SERVFAIL, timeout, an oversized reply) returns DKIM_DNS_ERROR, which becomes
 * KEYFAIL = temperror (a SERVFAIL packet passed through would read as NOKEY); the init and
 * close hooks are set to NULL so dkim_close() never res_nclose()s/free()s our service handle,
 * and the service handle is set before any query so the unlocked lazy res_ninit never runs.
 * An NXDOMAIN without a packet is given to libopendkim as a synthesized header-only reply.
 *
 * Signature cap: a prescreen callback sees every signature at end of headers and marks those
 * beyond max_signatures with dkim_sig_ignore(), so libopendkim neither fetches their keys
 * nor verifies them; they are counted and reported as unverified. The session is found
 * through the handle's user context.
 *
 * Results follow the opendkim daemon's mapping (opendkim.c dkimf_ar_all_sigs) with two
 * corrections: pass needs DKIM_SIG_CHECK (PASSED and body hash MATCH; PASSED alone stays set
 * on a body change), and signature-level errors other than a bad signature are permerror
 * (the daemon calls a processed NOKEY signature "fail"; RFC 8601 2.7.1 says permerror).
 * Local policy comes after: rsa-sha1 (RFC 8301 3.1) and RSA keys below min_rsa_bits
 * (RFC 8301 3.2, libopendkim's own MINKEYBITS check gives KEYTOOSMALL) are "policy".
 *
 * Canonical input: bare LF becomes CRLF in headers and body here (FIXCRLF truncates headers,
 * doc/libraries.md 3.5). The body conversion streams through an 8 KiB buffer with one bit of
 * state, and stops once dkim_minbody() says no signature needs more (l=). Work is O(headers
 * + body) plus at most max_signatures key lookups; memory is one header plus libopendkim's
 * own per-signature state.
 */
#define _DEFAULT_SOURCE /* u_char in opendkim/dkim.h */
#include "dkim_verify.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <opendkim/dkim.h>

struct um_dkim_verify {
    DKIM_LIB *lib;
    um_dkim_key_query_fn *query;
    void *arg;
    size_t max_sigs;
    unsigned min_rsa_bits;
    bool allow_sha1;
    bool leadspc;
};

enum verify_state { VERIFY_HEADERS, VERIFY_BODY, VERIFY_DONE, VERIFY_FAILED };

struct um_dkim_verify_session {
    struct um_dkim_verify *v;
    DKIM *dkim;
    unsigned char *id; /* libopendkim keeps the pointer (dkim_new): owned until dkim_free */
    enum verify_state state;
    enum um_status failed;
    bool nosig;     /* no signature to verify: body is not fed */
    bool body_done; /* every l= satisfied */
    bool prev_cr, body_open;
    size_t found; /* signatures seen by the prescreen callback */
    size_t seen;  /* DKIM-Signature fields fed to us */
    unsigned char *hbuf;
    size_t hcap;
    unsigned char conv[8192];
    size_t clen;
    struct um_dkim_verify_sig *rows;
    size_t nrows;
    char **owned; /* the rows' strings (5 per row) */
    size_t nowned;
    struct um_dkim_verify_results res;
};

/* ---- DNS callbacks ------------------------------------------------------------------- */

static int
verify_dns_start(void *srv, int type, unsigned char *query, unsigned char *buf, size_t buflen,
                 void **qh)
{
    struct um_dkim_verify *v = srv;
    struct um_dkim_key_answer ans;
    size_t *h;

    *qh = NULL;
    if (type != UM_DNS_TYPE_TXT || query == NULL)
        return DKIM_DNS_ERROR;
    memset(&ans, 0, sizeof(ans));
    ans.result = UM_DNS_TEMPFAIL;
    if (v->query(v->arg, (const char *)query, buf, buflen, &ans, NULL) != UM_OK)
        return DKIM_DNS_ERROR;
    /* notes 2.5 trap 1: anything but a usable NOERROR/NXDOMAIN reply is KEYFAIL. */
    if (ans.result == UM_DNS_TEMPFAIL || ans.len < 12 || ans.len > buflen)
        return DKIM_DNS_ERROR;
    h = malloc(sizeof(*h));
    if (h == NULL)
        return DKIM_DNS_ERROR;
    *h = ans.len;
    *qh = h;
    return DKIM_DNS_SUCCESS;
}

static int
verify_dns_waitreply(void *srv, void *qh, struct timeval *timeout, size_t *bytes, int *error,
                     int *dnssec)
{
    (void)srv;
    (void)timeout; /* the lookup already ran, bounded by the resolver's own deadline */
    if (qh == NULL)
        return DKIM_DNS_ERROR;
    if (bytes != NULL)
        *bytes = *(size_t *)qh;
    if (error != NULL)
        *error = 0;
    if (dnssec != NULL)
        *dnssec = DKIM_DNSSEC_UNKNOWN; /* no trust anchor: "unknown" is the honest answer */
    return DKIM_DNS_SUCCESS;
}

static int
verify_dns_cancel(void *srv, void *qh)
{
    (void)srv;
    free(qh);
    return 0;
}

/* Writes a header-only reply with rcode into buf (12 bytes). */
static size_t
verify_synth_reply(unsigned char *buf, size_t buflen, int rcode)
{
    if (buflen < 12)
        return 0;
    memset(buf, 0, 12);
    buf[2] = 0x81;                                   /* QR, RD */
    buf[3] = (unsigned char)(0x80 | (rcode & 0x0f)); /* RA, rcode */
    return 12;
}

/* The production key query: the shared resolver's reply packet, copied. */
static enum um_status
verify_query_dns(void *arg, const char *name, unsigned char *buf, size_t buflen,
                 struct um_dkim_key_answer *ans, struct um_error *err)
{
    struct um_dns_answer *a = NULL;
    enum um_status st;

    ans->result = UM_DNS_TEMPFAIL;
    ans->len = 0;
    ans->reason[0] = '\0';
    st = um_dns_query(arg, name, UM_DNS_TYPE_TXT, &a, err);
    if (st == UM_EINVAL) {
        /* A name the resolver refuses to send (bad s= or d= bytes) has no key. */
        ans->result = UM_DNS_NXDOMAIN;
        ans->len = verify_synth_reply(buf, buflen, 3);
        return UM_OK;
    }
    if (st != UM_OK)
        return st;
    ans->result = a->result;
    if (a->result == UM_DNS_TEMPFAIL) {
        (void)snprintf(ans->reason, sizeof(ans->reason), "%s", a->reason);
    } else if (a->packet != NULL && a->packet_len >= 12 && a->packet_len <= buflen) {
        memcpy(buf, a->packet, a->packet_len);
        ans->len = a->packet_len;
    } else if (a->packet == NULL && a->result != UM_DNS_OK) {
        ans->len = verify_synth_reply(buf, buflen, a->result == UM_DNS_NXDOMAIN ? 3 : 0);
    } else {
        ans->result = UM_DNS_TEMPFAIL;
        (void)snprintf(ans->reason, sizeof(ans->reason), "reply of %zu bytes unusable",
                       a->packet_len);
    }
    um_dns_answer_free(a);
    return UM_OK;
}

/* ---- the verifier -------------------------------------------------------------------- */

static DKIM_CBSTAT
verify_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    struct um_dkim_verify_session *s = dkim_get_user_context(dkim);

    if (s == NULL || nsigs < 0)
        return DKIM_CBSTAT_CONTINUE;
    s->found = (size_t)nsigs;
    for (size_t i = s->v->max_sigs; i < (size_t)nsigs; i++)
        dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

void
um_dkim_verify_free(struct um_dkim_verify *v)
{
    if (v == NULL)
        return;
    if (v->lib != NULL)
        dkim_close(v->lib);
    free(v);
}

enum um_status
um_dkim_verify_new_with_query(um_dkim_key_query_fn *query, void *arg,
                              const struct um_dkim_verify_opts *opts, struct um_dkim_verify **out,
                              struct um_error *err)
{
    static const struct um_dkim_verify_opts defaults = {0};
    struct um_dkim_verify *v;
    unsigned int flags = DKIM_LIBFLAGS_NONE;
    unsigned int minbits;

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (query == NULL)
        return um_error_set(err, UM_EINVAL, "dkim verify: no key query function");
    if (opts->max_signatures > UM_DKIM_VERIFY_MAX_SIGS) {
        return um_error_set(err, UM_EINVAL, "dkim verify: max_signatures %zu (1 to %d allowed)",
                            opts->max_signatures, UM_DKIM_VERIFY_MAX_SIGS);
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim verify: out of memory");
    v->query = query;
    v->arg = arg;
    v->max_sigs = opts->max_signatures != 0 ? opts->max_signatures : UM_DKIM_VERIFY_DEFAULT_SIGS;
    v->min_rsa_bits = opts->min_rsa_bits != 0 ? opts->min_rsa_bits : UM_DKIM_VERIFY_MIN_RSA_BITS;
    v->allow_sha1 = opts->allow_rsa_sha1;
    v->leadspc = opts->value_has_leading_space;
    v->lib = dkim_init(NULL, NULL);
    if (v->lib == NULL) {
        free(v);
        return um_error_set(err, UM_ENOMEM, "dkim verify: dkim_init failed");
    }
    /* notes 2.5 traps 2 and 3: our service handle, never the res_* defaults. */
    dkim_dns_set_init(v->lib, NULL);
    dkim_dns_set_close(v->lib, NULL);
    (void)dkim_dns_set_query_service(v->lib, v);
    dkim_dns_set_query_start(v->lib, verify_dns_start);
    dkim_dns_set_query_waitreply(v->lib, verify_dns_waitreply);
    dkim_dns_set_query_cancel(v->lib, verify_dns_cancel);
    minbits = v->min_rsa_bits;
    if (dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) != DKIM_STAT_OK
        || dkim_options(v->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits))
               != DKIM_STAT_OK
        || dkim_set_prescreen(v->lib, verify_prescreen) != DKIM_STAT_OK) {
        um_dkim_verify_free(v);
        return um_error_set(err, UM_EINVAL, "dkim verify: libopendkim refused the options");
    }
    *out = v;
    return UM_OK;
}

enum um_status
um_dkim_verify_new(struct um_dns *dns, const struct um_dkim_verify_opts *opts,
                   struct um_dkim_verify **out, struct um_error *err)
{
    if (dns == NULL) {
        *out = NULL;
        return um_error_set(err, UM_EINVAL, "dkim verify: no resolver");
    }
    return um_dkim_verify_new_with_query(verify_query_dns, dns, opts, out, err);
}

/* ---- one message --------------------------------------------------------------------- */

static enum um_status
verify_fail(struct um_dkim_verify_session *s, enum um_status code, struct um_error *err,
            const char *what, DKIM_STAT ds_st)
{
    const char *why = s->dkim != NULL ? dkim_geterror(s->dkim) : NULL;

    s->state = VERIFY_FAILED;
    s->failed = code;
    if (why == NULL || why[0] == '\0')
        why = dkim_getresultstr(ds_st);
    return um_error_set(err, code, "dkim verify: %s failed: %s", what, why != NULL ? why : "?");
}

static enum um_status
verify_lib_status(DKIM_STAT ds_st)
{
    return ds_st == DKIM_STAT_NORESOURCE ? UM_ENOMEM : UM_ETEMP;
}

static enum um_status
verify_state_check(struct um_dkim_verify_session *s, enum verify_state want, const char *what,
                   struct um_error *err)
{
    if (s->state == VERIFY_FAILED)
        return um_error_set(err, s->failed, "dkim verify: %s after an earlier failure", what);
    if (s->state != want)
        return um_error_set(err, UM_EINVAL, "dkim verify: %s called out of order", what);
    return UM_OK;
}

static void
verify_rows_free(struct um_dkim_verify_session *s)
{
    for (size_t i = 0; i < s->nowned; i++)
        free(s->owned[i]);
    free(s->owned);
    s->owned = NULL;
    s->nowned = 0;
    free(s->rows);
    s->rows = NULL;
    s->nrows = 0;
}

void
um_dkim_verify_session_free(struct um_dkim_verify_session *s)
{
    if (s == NULL)
        return;
    if (s->dkim != NULL)
        (void)dkim_free(s->dkim);
    verify_rows_free(s);
    free(s->hbuf);
    free(s->id);
    free(s);
}

enum um_status
um_dkim_verify_begin(struct um_dkim_verify *v, const char *qid, struct um_dkim_verify_session **out,
                     struct um_error *err)
{
    struct um_dkim_verify_session *s;
    DKIM_STAT ds_st = DKIM_STAT_OK;
    const char *id = qid != NULL ? qid : "unimilter";
    size_t idlen = strlen(id);

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return um_error_set(err, UM_ENOMEM, "dkim verify: out of memory");
    s->v = v;
    s->id = malloc(idlen + 1);
    if (s->id == NULL) {
        free(s);
        return um_error_set(err, UM_ENOMEM, "dkim verify: out of memory");
    }
    memcpy(s->id, id, idlen + 1);
    s->dkim = dkim_verify(v->lib, s->id, NULL, &ds_st);
    if (s->dkim == NULL) {
        enum um_status st =
            um_error_set(err, verify_lib_status(ds_st), "dkim verify: dkim_verify failed: %s",
                         dkim_getresultstr(ds_st));
        um_dkim_verify_session_free(s);
        return st;
    }
    if (dkim_set_user_context(s->dkim, s) != DKIM_STAT_OK) {
        enum um_status st = um_error_set(err, UM_ETEMP, "dkim verify: cannot set context");
        um_dkim_verify_session_free(s);
        return st;
    }
    s->state = VERIFY_HEADERS;
    *out = s;
    return UM_OK;
}

enum um_status
um_dkim_verify_header(struct um_dkim_verify_session *s, struct um_str name, struct um_str value,
                      struct um_error *err)
{
    enum um_status st;
    size_t need, len;
    bool prev_cr = false;
    DKIM_STAT ds_st;

    if ((st = verify_state_check(s, VERIFY_HEADERS, "header", err)) != UM_OK)
        return st;
    if (name.len == 0 || memchr(name.p, ':', name.len) != NULL)
        return um_error_set(err, UM_EINVAL, "dkim verify: bad header field name");
    /* One trailing line end is not part of the value. */
    if (value.len > 0 && value.p[value.len - 1] == '\n')
        value.len--;
    if (value.len > 0 && value.p[value.len - 1] == '\r')
        value.len--;
    if (name.len > UM_DKIM_VERIFY_MAX_HEADER || value.len > UM_DKIM_VERIFY_MAX_HEADER) {
        s->state = VERIFY_FAILED;
        s->failed = UM_ELIMIT;
        return um_error_set(err, UM_ELIMIT, "dkim verify: header longer than %d bytes",
                            UM_DKIM_VERIFY_MAX_HEADER);
    }
    need = name.len + 2 + 2 * value.len + 1; /* worst case: every byte a bare LF */
    if (need > s->hcap) {
        unsigned char *nb = realloc(s->hbuf, need);
        if (nb == NULL) {
            s->state = VERIFY_FAILED;
            s->failed = UM_ENOMEM;
            return um_error_set(err, UM_ENOMEM, "dkim verify: out of memory");
        }
        s->hbuf = nb;
        s->hcap = need;
    }
    if (um_str_eq_ci(name, "DKIM-Signature"))
        s->seen++;
    memcpy(s->hbuf, name.p, name.len);
    len = name.len;
    s->hbuf[len++] = ':';
    if (!s->v->leadspc)
        s->hbuf[len++] = ' ';
    for (size_t i = 0; i < value.len; i++) {
        unsigned char c = (unsigned char)value.p[i];
        if (c == '\n' && !prev_cr)
            s->hbuf[len++] = '\r';
        s->hbuf[len++] = c;
        prev_cr = c == '\r';
    }
    s->hbuf[len] = '\0';
    ds_st = dkim_header(s->dkim, s->hbuf, len);
    /* A malformed header is the message's problem, not ours: libopendkim skips it. */
    if (ds_st == DKIM_STAT_NORESOURCE || ds_st == DKIM_STAT_INTERNAL)
        return verify_fail(s, verify_lib_status(ds_st), err, "dkim_header", ds_st);
    return UM_OK;
}

enum um_status
um_dkim_verify_eoh(struct um_dkim_verify_session *s, struct um_error *err)
{
    enum um_status st;
    DKIM_STAT ds_st;

    if ((st = verify_state_check(s, VERIFY_HEADERS, "end of headers", err)) != UM_OK)
        return st;
    ds_st = dkim_eoh(s->dkim);
    if (ds_st == DKIM_STAT_NORESOURCE || ds_st == DKIM_STAT_INTERNAL)
        return verify_fail(s, verify_lib_status(ds_st), err, "dkim_eoh", ds_st);
    /* NOSIG: nothing to verify. Other statuses (SYNTAX, CANTVRFY, ...) are per-signature
     * verdicts that dkim_eom() and the signature list report. */
    s->nosig = ds_st == DKIM_STAT_NOSIG;
    s->body_done = ds_st != DKIM_STAT_OK;
    s->state = VERIFY_BODY;
    return UM_OK;
}

static enum um_status
verify_flush(struct um_dkim_verify_session *s, struct um_error *err)
{
    DKIM_STAT ds_st;

    if (s->clen == 0)
        return UM_OK;
    ds_st = dkim_body(s->dkim, s->conv, s->clen);
    s->clen = 0;
    if (ds_st == DKIM_STAT_NORESOURCE || ds_st == DKIM_STAT_INTERNAL)
        return verify_fail(s, verify_lib_status(ds_st), err, "dkim_body", ds_st);
    if (ds_st != DKIM_STAT_OK || dkim_minbody(s->dkim) == 0)
        s->body_done = true; /* RFC 6376 8.2: every l= satisfied; the rest is not hashed */
    return UM_OK;
}

enum um_status
um_dkim_verify_body(struct um_dkim_verify_session *s, struct um_str chunk, struct um_error *err)
{
    enum um_status st;

    if ((st = verify_state_check(s, VERIFY_BODY, "body", err)) != UM_OK)
        return st;
    /* Runs of bytes up to the next LF are copied whole; only an LF is looked at. */
    for (size_t i = 0; i < chunk.len && !s->body_done;) {
        const char *p = chunk.p + i;
        const char *nl = memchr(p, '\n', chunk.len - i);
        size_t run = nl != NULL ? (size_t)(nl - p) : chunk.len - i;

        if (s->clen + 2 > sizeof(s->conv) && (st = verify_flush(s, err)) != UM_OK)
            return st;
        if (run > 0) {
            size_t take = run < sizeof(s->conv) - s->clen ? run : sizeof(s->conv) - s->clen;
            memcpy(s->conv + s->clen, p, take);
            s->clen += take;
            s->prev_cr = p[take - 1] == '\r';
            i += take;
            continue;
        }
        if (!s->prev_cr) /* RFC 5322 2.3: bare LF is not a line end; fix it */
            s->conv[s->clen++] = '\r';
        s->conv[s->clen++] = '\n';
        s->prev_cr = false;
        i++;
    }
    if (chunk.len > 0)
        s->body_open = chunk.p[chunk.len - 1] != '\n';
    return UM_OK;
}

/* A copy of p ("" for NULL) owned by the session (s->owned has room: 5 per row). */
static const char *
verify_keep(struct um_dkim_verify_session *s, const char *p)
{
    size_t n;
    char *o;

    if (p == NULL)
        p = "";
    n = strlen(p);
    o = malloc(n + 1);
    if (o == NULL)
        return NULL;
    memcpy(o, p, n + 1);
    s->owned[s->nowned++] = o;
    return o;
}

static const char *
verify_alg_name(DKIM_SIGINFO *sig, dkim_alg_t *algp)
{
    dkim_alg_t alg = DKIM_SIGN_UNKNOWN;

    if (dkim_sig_getsignalg(sig, &alg) != DKIM_STAT_OK)
        alg = DKIM_SIGN_UNKNOWN;
    *algp = alg;
    switch (alg) {
    case DKIM_SIGN_RSASHA1:
        return "rsa-sha1";
    case DKIM_SIGN_RSASHA256:
        return "rsa-sha256";
    case DKIM_SIGN_ED25519SHA256:
        return "ed25519-sha256";
    default:
        return "";
    }
}

/* The verdict of one signature (design note: daemon mapping, corrected). */
static enum um_dkim_verify_result
verify_sig_result(const struct um_dkim_verify *v, DKIM_SIGINFO *sig, dkim_alg_t alg, unsigned bits,
                  char *reason, size_t rlen)
{
    unsigned int flags = dkim_sig_getflags(sig);
    int bh = dkim_sig_getbh(sig);
    int e = dkim_sig_geterror(sig);
    const char *es = dkim_sig_geterrorstr(e);

    if (es == NULL)
        es = "unknown error";
    if (DKIM_SIG_CHECK(sig)) {
        if (alg == DKIM_SIGN_RSASHA1 && !v->allow_sha1) {
            (void)snprintf(reason, rlen, "rsa-sha1 not accepted (RFC 8301)");
            return UM_DKIM_VERIFY_POLICY;
        }
        if (alg != DKIM_SIGN_ED25519SHA256 && bits < v->min_rsa_bits) {
            (void)snprintf(reason, rlen, "key of %u bits, %u required", bits, v->min_rsa_bits);
            return UM_DKIM_VERIFY_POLICY;
        }
        (void)snprintf(reason, rlen, "ok");
        return UM_DKIM_VERIFY_PASS;
    }
    switch (e) {
    case DKIM_SIGERROR_MULTIREPLY:
    case DKIM_SIGERROR_KEYFAIL:
        (void)snprintf(reason, rlen, "%s", es);
        return UM_DKIM_VERIFY_TEMPERROR;
    case DKIM_SIGERROR_DNSSYNTAX:
        /* RFC 6376 6.1.2: a key record that does not parse is a permanent failure. Our
         * resolver already turned transport trouble into KEYFAIL, so this is the record. */
        (void)snprintf(reason, rlen, "%s", es);
        return UM_DKIM_VERIFY_PERMERROR;
    case DKIM_SIGERROR_KEYTOOSMALL:
        (void)snprintf(reason, rlen, "key of %u bits, %u required", bits, v->min_rsa_bits);
        return UM_DKIM_VERIFY_POLICY;
    default:
        break;
    }
    if (bh == DKIM_SIGBH_MISMATCH) {
        (void)snprintf(reason, rlen, "body hash mismatch");
        return UM_DKIM_VERIFY_FAIL;
    }
    if ((flags & DKIM_SIGFLAG_PROCESSED) != 0
        && (e == DKIM_SIGERROR_OK || e == DKIM_SIGERROR_BADSIG)) {
        (void)snprintf(reason, rlen, "%s", e == DKIM_SIGERROR_OK ? "signature mismatch" : es);
        return UM_DKIM_VERIFY_FAIL;
    }
    if (e != DKIM_SIGERROR_OK) {
        (void)snprintf(reason, rlen, "%s", es);
        return UM_DKIM_VERIFY_PERMERROR;
    }
    (void)snprintf(reason, rlen, "not evaluated");
    return UM_DKIM_VERIFY_NEUTRAL;
}

static enum um_status
verify_row(struct um_dkim_verify_session *s, DKIM_SIGINFO *sig, struct um_dkim_verify_sig *r)
{
    char buf[1024];
    size_t blen = sizeof(buf);
    unsigned int bits = 0;
    dkim_alg_t alg;
    const char *a = verify_alg_name(sig, &alg);

    if (dkim_sig_getkeysize(sig, &bits) != DKIM_STAT_OK)
        bits = 0;
    if (alg == DKIM_SIGN_ED25519SHA256
        && (dkim_sig_geterror(sig) == DKIM_SIGERROR_OK
            || dkim_sig_geterror(sig) == DKIM_SIGERROR_BADSIG))
        bits = 256; /* libopendkim reports 0 for Ed25519 keys */
    r->key_bits = bits;
    r->lib_error = dkim_sig_geterror(sig);
    r->result = verify_sig_result(s->v, sig, alg, bits, r->reason, sizeof(r->reason));
    r->a = verify_keep(s, a);
    r->d = verify_keep(s, (const char *)dkim_sig_getdomain(sig));
    r->s = verify_keep(s, (const char *)dkim_sig_getselector(sig));
    buf[0] = '\0';
    if (dkim_sig_getidentity(s->dkim, sig, (u_char *)buf, sizeof(buf)) != DKIM_STAT_OK)
        buf[0] = '\0';
    r->i = verify_keep(s, buf);
    buf[0] = '\0';
    if (dkim_get_sigsubstring(s->dkim, sig, buf, &blen) != DKIM_STAT_OK || blen >= sizeof(buf))
        blen = 0;
    buf[blen] = '\0';
    r->b = verify_keep(s, buf);
    if (r->a == NULL || r->d == NULL || r->s == NULL || r->i == NULL || r->b == NULL)
        return UM_ENOMEM;
    return UM_OK;
}

/* DKIM-Signature fields were there but libopendkim kept none (RFC 6376 6.1.1: unparsable,
 * or a required header such as From missing): one permerror row without evidence. */
static enum um_status
verify_unusable(struct um_dkim_verify_session *s, struct um_error *err)
{
    const char *why = dkim_geterror(s->dkim);
    struct um_dkim_verify_sig *r;

    s->rows = calloc(1, sizeof(*s->rows));
    s->owned = calloc(5, sizeof(*s->owned));
    if (s->rows == NULL || s->owned == NULL)
        return verify_fail(s, UM_ENOMEM, err, "result rows", DKIM_STAT_NORESOURCE);
    s->nrows = 1;
    r = &s->rows[0];
    r->result = UM_DKIM_VERIFY_PERMERROR;
    r->d = verify_keep(s, "");
    r->i = verify_keep(s, "");
    r->s = verify_keep(s, "");
    r->a = verify_keep(s, "");
    r->b = verify_keep(s, "");
    if (r->d == NULL || r->i == NULL || r->s == NULL || r->a == NULL || r->b == NULL)
        return verify_fail(s, UM_ENOMEM, err, "result copy", DKIM_STAT_NORESOURCE);
    (void)snprintf(r->reason, sizeof(r->reason), "signature unusable: %s",
                   why != NULL && why[0] != '\0' ? why : "syntax error");
    if (s->seen > s->v->max_sigs)
        s->res.unverified = s->seen - s->v->max_sigs;
    return UM_OK;
}

static void
verify_summarise(struct um_dkim_verify_session *s)
{
    s->res.nsigs = s->nrows;
    s->res.sigs = s->rows;
    s->res.overall = s->nrows == 0 ? UM_DKIM_VERIFY_NONE : s->rows[0].result;
    for (size_t i = 0; i < s->nrows; i++) {
        if (s->rows[i].result == UM_DKIM_VERIFY_PASS)
            s->res.overall = UM_DKIM_VERIFY_PASS;
    }
}

enum um_status
um_dkim_verify_end(struct um_dkim_verify_session *s, struct um_dkim_verify_results *res,
                   struct um_error *err)
{
    enum um_status st;
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;
    DKIM_STAT ds_st;
    size_t n;

    memset(res, 0, sizeof(*res));
    if ((st = verify_state_check(s, VERIFY_BODY, "end of message", err)) != UM_OK) {
        for (size_t i = 0; i < s->nrows; i++)
            s->rows[i].result = UM_DKIM_VERIFY_TEMPERROR;
        verify_summarise(s);
        if (s->state == VERIFY_FAILED)
            s->res.overall = UM_DKIM_VERIFY_TEMPERROR;
        *res = s->res;
        return st;
    }
    if (s->nosig && s->seen == 0) {
        s->state = VERIFY_DONE;
        verify_summarise(s);
        *res = s->res;
        return UM_OK;
    }
    /* RFC 6376 3.4.3/3.4.4: a body not ending in CRLF is canonicalized with one added. */
    if (s->body_open && !s->body_done
        && (st = um_dkim_verify_body(s, s->prev_cr ? UM_STR("\n") : UM_STR("\r\n"), err)) != UM_OK)
        goto failed;
    if (!s->body_done && (st = verify_flush(s, err)) != UM_OK)
        goto failed;
    ds_st = dkim_eom(s->dkim, NULL);
    if (ds_st == DKIM_STAT_NORESOURCE || ds_st == DKIM_STAT_INTERNAL) {
        st = verify_fail(s, verify_lib_status(ds_st), err, "dkim_eom", ds_st);
        goto failed;
    }
    if (s->nosig || dkim_getsiglist(s->dkim, &sigs, &nsigs) != DKIM_STAT_OK || sigs == NULL
        || nsigs < 0)
        nsigs = 0;
    if (nsigs == 0 && s->seen > 0) {
        st = verify_unusable(s, err);
        if (st != UM_OK)
            goto failed;
        s->state = VERIFY_DONE;
        verify_summarise(s);
        *res = s->res;
        return UM_OK;
    }
    n = (size_t)nsigs < s->v->max_sigs ? (size_t)nsigs : s->v->max_sigs;
    if ((size_t)nsigs > s->found)
        s->found = (size_t)nsigs;
    s->res.unverified = s->found > n ? s->found - n : 0;
    if (n > 0) {
        s->rows = calloc(n, sizeof(*s->rows));
        s->owned = calloc(5 * n, sizeof(*s->owned));
        if (s->rows == NULL || s->owned == NULL) {
            st = verify_fail(s, UM_ENOMEM, err, "result rows", DKIM_STAT_NORESOURCE);
            goto failed;
        }
    }
    for (size_t i = 0; i < n; i++) {
        s->nrows = i + 1;
        if (verify_row(s, sigs[i], &s->rows[i]) != UM_OK) {
            st = verify_fail(s, UM_ENOMEM, err, "result copy", DKIM_STAT_NORESOURCE);
            goto failed;
        }
    }
    s->state = VERIFY_DONE;
    verify_summarise(s);
    *res = s->res;
    return UM_OK;
failed:
    verify_rows_free(s);
    verify_summarise(s);
    s->res.overall = UM_DKIM_VERIFY_TEMPERROR;
    *res = s->res;
    return st;
}

const char *
um_dkim_verify_result_name(enum um_dkim_verify_result r)
{
    switch (r) {
    case UM_DKIM_VERIFY_NONE:
        return "none";
    case UM_DKIM_VERIFY_PASS:
        return "pass";
    case UM_DKIM_VERIFY_FAIL:
        return "fail";
    case UM_DKIM_VERIFY_NEUTRAL:
        return "neutral";
    case UM_DKIM_VERIFY_POLICY:
        return "policy";
    case UM_DKIM_VERIFY_TEMPERROR:
        return "temperror";
    case UM_DKIM_VERIFY_PERMERROR:
        return "permerror";
    }
    return "permerror";
}
