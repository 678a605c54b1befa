/*
 * inbound.c - the inbound mode's message path: SPF, DKIM, DMARC, Authentication-Results
 *
 * Design note: one pass. SPF runs at MAIL FROM (its DNS answers land in the shared cache);
 * every header goes to the DKIM verifier as it arrives, From values are kept for DMARC,
 * and the positions of Authentication-Results headers that claim our authserv-id are
 * remembered; the body streams to the verifier. At end of message DMARC is evaluated from
 * our own SPF and DKIM results (never from headers anyone else wrote), one A-R header goes
 * to the top, every forged one is deleted from the highest index down (deleting in forward
 * order shifts the indices: OpenDKIM's CVE-2022-48521), and the policy decides.
 *
 * Forged A-R headers: there is no cap on how many are removed. Which A-R headers are ours to
 * delete is kept as one bit per A-R header seen (bit i: the header smfi_chgheader() calls
 * index i+1, indices counting only headers of that name), grown by doubling, so the cost is
 * bounded by what the MTA lets through (Postfix: header_size_limit per header and
 * message_size_limit in all, ~330,000 minimal A-R headers in 10 MB, a 41 KB bitmap). If
 * the bitmap cannot grow, or the MTA refuses a deletion, the message is tempfailed: it is
 * never passed on with a forged header still in it.
 */
#define _GNU_SOURCE /* asprintf */
#include "inbound.h"
#include "verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <stdint.h>

#define UM_IB_MAX_FROM 8

static bool
ib_is_loopback(const struct conn_ctx *cc)
{
    return strcmp(cc->client_ip, "127.0.0.1") == 0 || strcmp(cc->client_ip, "::1") == 0;
}

/* The envelope sender without angle brackets, in caller storage. */
static const char *
ib_mailfrom(const char *envfrom, char *buf, size_t len)
{
    size_t n;

    if (envfrom == NULL)
        return "";
    while (*envfrom == ' ')
        envfrom++;
    if (*envfrom == '<')
        envfrom++;
    n = strcspn(envfrom, ">");
    if (n >= len)
        n = len - 1;
    memcpy(buf, envfrom, n);
    buf[n] = '\0';
    return buf;
}

sfsistat
ib_envfrom(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;
    struct um_spf_query q;
    struct um_error err = {0};
    char mf[1024];

    (void)ctx;
    if (!cc->cfg->inbound.spf || cc->rt->spf == NULL || ib_is_loopback(cc))
        return SMFIS_CONTINUE;
    q.client_ip = cc->client_ip;
    q.helo = cc->helo;
    q.mail_from = ib_mailfrom(m->envfrom, mf, sizeof(mf));
    if (um_spf_check(cc->rt->spf, &q, &m->ib.spf, &err) != UM_OK) {
        um_log_msg(&cc->d->log, UM_LOG_ERR, "spf", "check failed: %s", err.msg);
        return SMFIS_CONTINUE;
    }
    m->ib.spf_done = true;
    return SMFIS_CONTINUE;
}

static void
ib_dkim_fail(struct conn_ctx *cc, const char *why)
{
    um_log_msg(&cc->d->log, UM_LOG_ERR, "dkim", "verification stopped: %s", why);
    um_dkim_verify_session_free(cc->msg.ib.dkv);
    cc->msg.ib.dkv = NULL;
    cc->msg.ib.dkv_failed = true;
}

/* Marks the A-R header just counted (index m->ib.nar_seen) as forged; false when it cannot be
 * recorded (no memory, or an index smfi_chgheader cannot express). */
static bool
ib_forged_mark(struct msg_ctx *m)
{
    size_t bit = m->ib.nar_seen - 1;

    if (m->ib.nar_seen > INT32_MAX)
        return false;
    if (bit / 8 >= m->ib.ar_forged_cap) {
        size_t cap = m->ib.ar_forged_cap != 0 ? m->ib.ar_forged_cap : 16;
        unsigned char *nb;
        while (bit / 8 >= cap)
            cap *= 2;
        nb = realloc(m->ib.ar_forged, cap);
        if (nb == NULL)
            return false;
        memset(nb + m->ib.ar_forged_cap, 0, cap - m->ib.ar_forged_cap);
        m->ib.ar_forged = nb;
        m->ib.ar_forged_cap = cap;
    }
    m->ib.ar_forged[bit / 8] |= (unsigned char)(1u << (bit % 8));
    m->ib.nar_forged++;
    return true;
}

/* Tempfails the message (a forged header could not be removed); logs once why. */
static sfsistat
ib_tempfail(SMFICTX *ctx, struct conn_ctx *cc, const char *why)
{
    return verdict_tempfail(ctx, cc, cc->msg.qid, "eom", why);
}

void
ib_header(SMFICTX *ctx, struct conn_ctx *cc, const char *name, const char *value)
{
    struct msg_ctx *m = &cc->msg;
    struct um_error err = {0};

    (void)ctx;
    if (strcasecmp(name, "Authentication-Results") == 0) {
        m->ib.nar_seen++;
        if (um_authres_is_ours(um_str_of(value), cc->cfg->authserv_id) && !ib_forged_mark(m))
            m->ib.ar_lost = true;
    }
    if (strcasecmp(name, "From") == 0) {
        m->ib.nfrom_seen++;
        if (m->ib.nfrom < UM_IB_MAX_FROM) {
            char **nf = realloc(m->ib.from, (m->ib.nfrom + 1) * sizeof(*nf));
            if (nf != NULL) {
                m->ib.from = nf;
                m->ib.from[m->ib.nfrom] = strdup(value);
                if (m->ib.from[m->ib.nfrom] != NULL)
                    m->ib.nfrom++;
            }
        }
    }
    if (m->ib.dkv == NULL && !m->ib.dkv_failed && cc->rt->dkimv[0] != NULL) {
        if (um_dkim_verify_begin(cc->rt->dkimv[cc->leadspc ? 1 : 0], cc->sess, &m->ib.dkv, &err)
            != UM_OK) {
            ib_dkim_fail(cc, err.msg);
            return;
        }
    }
    if (m->ib.dkv != NULL
        && um_dkim_verify_header(m->ib.dkv, um_str_of(name), um_str_of(value), &err) != UM_OK)
        ib_dkim_fail(cc, err.msg);
}

void
ib_eoh(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct um_error err = {0};

    (void)ctx;
    if (cc->msg.ib.dkv != NULL && um_dkim_verify_eoh(cc->msg.ib.dkv, &err) != UM_OK)
        ib_dkim_fail(cc, err.msg);
}

void
ib_body(SMFICTX *ctx, struct conn_ctx *cc, const unsigned char *chunk, size_t len)
{
    struct um_error err = {0};

    (void)ctx;
    if (cc->msg.ib.dkv != NULL
        && um_dkim_verify_body(cc->msg.ib.dkv, (struct um_str){(const char *)chunk, len}, &err)
               != UM_OK)
        ib_dkim_fail(cc, err.msg);
}

static enum um_auth
ib_dkim_auth(enum um_dkim_verify_result r)
{
    switch (r) {
    case UM_DKIM_VERIFY_NONE:
        return UM_AUTH_NONE;
    case UM_DKIM_VERIFY_PASS:
        return UM_AUTH_PASS;
    case UM_DKIM_VERIFY_FAIL:
        return UM_AUTH_FAIL;
    case UM_DKIM_VERIFY_NEUTRAL:
        return UM_AUTH_NEUTRAL;
    case UM_DKIM_VERIFY_POLICY:
        return UM_AUTH_POLICY;
    case UM_DKIM_VERIFY_TEMPERROR:
        return UM_AUTH_TEMPERROR;
    case UM_DKIM_VERIFY_PERMERROR:
        return UM_AUTH_PERMERROR;
    }
    return UM_AUTH_NONE;
}

static enum um_auth
ib_dmarc_auth(enum um_dmarc_result r)
{
    switch (r) {
    case UM_DMARC_RESULT_NONE:
        return UM_AUTH_NONE;
    case UM_DMARC_RESULT_PASS:
        return UM_AUTH_PASS;
    case UM_DMARC_RESULT_FAIL:
        return UM_AUTH_FAIL;
    case UM_DMARC_RESULT_TEMPERROR:
        return UM_AUTH_TEMPERROR;
    case UM_DMARC_RESULT_PERMERROR:
        return UM_AUTH_PERMERROR;
    }
    return UM_AUTH_NONE;
}

/* Everything the end of message decides, for the A-R header and the log line. */
struct ib_outcome {
    struct um_dkim_verify_results dkim;
    bool have_dkim;
    enum um_from_status from_status;
    char from_buf[256];
    struct um_str from_domain;
    struct um_dmarc_res dmarc;
    bool have_dmarc;
    struct um_decision dec; /* lib/policy.c's */
};

/* A property or result the builder refuses (hostile bytes, too long) is left out: the
 * header stays well-formed, which is all a reader needs. */
static void
ar_add(struct um_authres *ar, const char *method, enum um_auth r, const char *reason)
{
    if (um_authres_add(ar, method, r, reason, NULL) != UM_OK)
        return;
}

static void
ar_prop(struct um_authres *ar, const char *ptype, const char *prop, struct um_str v)
{
    if (um_authres_prop(ar, ptype, prop, v, NULL) != UM_OK)
        return;
}

static void
ib_authres(struct conn_ctx *cc, struct ib_outcome *o, char **out)
{
    const struct msg_ctx *m = &cc->msg;
    struct um_authres *ar = NULL;
    struct um_error err = {0};

    *out = NULL;
    if (um_authres_new(cc->cfg->authserv_id, &ar, &err) != UM_OK)
        return;
    if (m->ib.spf_done) {
        ar_add(ar, "spf", m->ib.spf.result, m->ib.spf.reason);
        ar_prop(ar, m->ib.spf.ar_ptype, m->ib.spf.ar_prop, um_str_of(m->ib.spf.ar_value));
    }
    if (o->have_dkim) {
        if (o->dkim.nsigs == 0) {
            ar_add(ar, "dkim", UM_AUTH_NONE, NULL);
        }
        for (size_t i = 0; i < o->dkim.nsigs; i++) {
            const struct um_dkim_verify_sig *s = &o->dkim.sigs[i];
            ar_add(ar, "dkim", ib_dkim_auth(s->result),
                   s->result == UM_DKIM_VERIFY_PASS ? NULL : s->reason);
            ar_prop(ar, "header", "d", um_str_of(s->d));
            ar_prop(ar, "header", "i", um_str_of(s->i));
            ar_prop(ar, "header", "s", um_str_of(s->s));
            ar_prop(ar, "header", "a", um_str_of(s->a));
            ar_prop(ar, "header", "b", um_str_of(s->b));
        }
    }
    if (o->have_dmarc) {
        const char *pol = um_dmarc_policy_name(o->dmarc.policy);
        ar_add(ar, "dmarc", ib_dmarc_auth(o->dmarc.result),
               o->dmarc.result == UM_DMARC_RESULT_PASS ? NULL : o->dmarc.reason);
        ar_prop(ar, "header", "from", um_str_of(o->dmarc.from_domain));
        if (o->dmarc.policy != UM_DMARC_POLICY_UNSET)
            ar_prop(ar, "policy", "dmarc", um_str_of(pol));
    } else if (o->from_status != UM_FROM_OK && cc->cfg->inbound.dmarc) {
        ar_add(ar, "dmarc", UM_AUTH_PERMERROR,
               o->from_status == UM_FROM_NONE ? "no usable From address"
                                              : "several From headers or authors");
    }
    if (um_authres_render(ar, out, &err) != UM_OK)
        *out = NULL;
    um_authres_free(ar);
}

static void
ib_verdict_log(struct conn_ctx *cc, const struct ib_outcome *o)
{
    const struct msg_ctx *m = &cc->msg;
    struct um_logline l;

    verdict_line_open(&l, cc);
    if (m->ib.spf_done) {
        um_logline_str(&l, "spf", um_auth_name(m->ib.spf.result));
        um_logline_str(&l, "spf.domain", m->ib.spf.domain);
    } else {
        um_logline_str(&l, "spf", "skipped");
    }
    if (o->have_dkim) {
        um_logline_str(&l, "dkim", um_dkim_verify_result_name(o->dkim.overall));
        for (size_t i = 0; i < o->dkim.nsigs && i < 3; i++) {
            char k[16];
            (void)snprintf(k, sizeof(k), "dkim%zu.d", i + 1);
            um_logline_str(&l, k, o->dkim.sigs[i].d);
            (void)snprintf(k, sizeof(k), "dkim%zu", i + 1);
            um_logline_str(&l, k, um_dkim_verify_result_name(o->dkim.sigs[i].result));
        }
        if (o->dkim.unverified > 0)
            um_logline_int(&l, "dkim.unverified", (long long)o->dkim.unverified);
    }
    if (o->have_dmarc) {
        um_logline_str(&l, "dmarc", um_dmarc_result_name(o->dmarc.result));
        um_logline_str(&l, "dmarc.from", o->dmarc.from_domain);
        um_logline_str(&l, "dmarc.p", um_dmarc_policy_name(o->dmarc.policy));
        um_logline_str(&l, "dmarc.reason", o->dmarc.reason);
    } else if (o->from_status != UM_FROM_OK) {
        um_logline_str(&l, "from.header", o->from_status == UM_FROM_NONE ? "none" : "several");
    }
    if (m->ib.nar_forged > 0)
        um_logline_int(&l, "ar.removed", (long long)m->ib.nar_forged);
    verdict_line_close(&l, cc, o->dec.action, um_policy_reason_name(o->dec.reason));
}

/* Copies a NUL-terminated string, cut to fit (history fields have fixed sizes). */
static void
ib_copy(char *dst, size_t len, const char *src)
{
    size_t n = src != NULL ? strnlen(src, len - 1) : 0;

    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

/* One history row for DMARC reports; queued, never blocking (a full queue drops, counted). */
static void
ib_record(struct conn_ctx *cc, const struct ib_outcome *o)
{
    const struct msg_ctx *m = &cc->msg;
    const struct um_dmarc_res *r = &o->dmarc;
    struct um_history_rec *h = calloc(1, sizeof(*h));
    char mf[1024];
    const char *at;

    if (h == NULL)
        return;
    h->time = (int64_t)time(NULL);
    ib_copy(h->source_ip, sizeof(h->source_ip), cc->client_ip);
    ib_copy(h->header_from, sizeof(h->header_from), r->from_domain);
    at = strrchr(ib_mailfrom(m->envfrom, mf, sizeof(mf)), '@');
    ib_copy(h->envelope_from, sizeof(h->envelope_from), at != NULL ? at + 1 : "");
    if (m->ib.spf_done) {
        h->spf_result = m->ib.spf.result;
        h->spf_scope =
            strcmp(m->ib.spf.identity, "helo") == 0 ? UM_HISTORY_SPF_HELO : UM_HISTORY_SPF_MFROM;
        ib_copy(h->spf_domain, sizeof(h->spf_domain), m->ib.spf.domain);
    }
    for (size_t i = 0; o->have_dkim && i < o->dkim.nsigs; i++) {
        if (h->ndkim == UM_HISTORY_MAX_DKIM) {
            h->ndkim_extra++;
            continue;
        }
        ib_copy(h->dkim[h->ndkim].domain, sizeof(h->dkim[0].domain), o->dkim.sigs[i].d);
        ib_copy(h->dkim[h->ndkim].selector, sizeof(h->dkim[0].selector), o->dkim.sigs[i].s);
        h->dkim[h->ndkim].result = ib_dkim_auth(o->dkim.sigs[i].result);
        h->ndkim++;
    }
    h->dmarc_result = r->result;
    h->dkim_aligned = r->dkim_aligned;
    h->spf_aligned = r->spf_aligned;
    h->method = cc->cfg->inbound.dmarc_method;
    ib_copy(h->policy_domain, sizeof(h->policy_domain), r->policy_domain);
    h->p = r->p;
    h->sp = r->sp;
    h->np = r->np;
    h->adkim = r->adkim;
    h->aspf = r->aspf;
    h->pct = r->pct;
    h->t = r->t;
    h->psd = r->psd_tag;
    h->rua = r->has_rua;
    h->disposition = UM_DMARC_POLICY_NONE;
    if (o->dec.action == UM_ACTION_REJECT)
        h->disposition = UM_DMARC_POLICY_REJECT;
    else if (o->dec.action == UM_ACTION_HOLD || o->dec.action == UM_ACTION_TAG)
        h->disposition = UM_DMARC_POLICY_QUARANTINE;
    if (um_policy_is_local_override(o->dec.reason)) {
        h->override = UM_HISTORY_OVERRIDE_LOCAL_POLICY;
        ib_copy(h->override_comment, sizeof(h->override_comment),
                um_policy_reason_name(o->dec.reason));
    } else if (r->sampled_out) {
        h->override = UM_HISTORY_OVERRIDE_SAMPLED_OUT;
    } else if (r->testing) {
        h->override = UM_HISTORY_OVERRIDE_POLICY_TEST_MODE;
        ib_copy(h->override_comment, sizeof(h->override_comment), "t=y");
    }
    if (!um_history_record(cc->d->history, h) && um_logger_wants(&cc->d->log, UM_LOG_DEBUG))
        um_log_msg(&cc->d->log, UM_LOG_DEBUG, "history", "evaluation not recorded (queue full)");
    free(h);
}

sfsistat
ib_eom(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;
    struct ib_outcome o;
    struct um_error err = {0};
    struct um_dmarc_dkim dk[UM_DMARC_MAX_DKIM];
    char *arval = NULL;
    sfsistat rc;

    memset(&o, 0, sizeof(o));
    if (m->ib.ar_lost)
        return ib_tempfail(ctx, cc, "out of memory recording forged Authentication-Results");
    if (m->ib.dkv != NULL) {
        if (um_dkim_verify_end(m->ib.dkv, &o.dkim, &err) == UM_OK)
            o.have_dkim = true;
        else
            um_log_msg(&cc->d->log, UM_LOG_ERR, "dkim", "verification failed: %s", err.msg);
    }
    /* RFC 7489 6.6.1: exactly one From with one author, else no DMARC evaluation. */
    {
        struct um_str vals[UM_IB_MAX_FROM];
        enum um_status st;
        for (size_t i = 0; i < m->ib.nfrom; i++)
            vals[i] = um_str_of(m->ib.from[i]);
        if (m->ib.nfrom_seen > m->ib.nfrom)
            st = UM_ELIMIT;
        else
            st = um_keyrule_from_domain(vals, m->ib.nfrom, o.from_buf, sizeof(o.from_buf),
                                        &o.from_domain, &err);
        o.from_status = st == UM_OK ? UM_FROM_OK : st == UM_ELIMIT ? UM_FROM_SEVERAL : UM_FROM_NONE;
    }
    if (o.from_status == UM_FROM_OK && cc->cfg->inbound.dmarc && cc->rt->dmarc != NULL) {
        struct um_dmarc_input in;
        char dom[256];
        size_t nd = 0;

        memset(&in, 0, sizeof(in));
        (void)snprintf(dom, sizeof(dom), "%.*s", (int)o.from_domain.len, o.from_domain.p);
        in.from_domain = dom;
        if (m->ib.spf_done) {
            in.spf_domain = m->ib.spf.domain;
            in.spf_pass = m->ib.spf.result == UM_AUTH_PASS;
            in.spf_helo = strcmp(m->ib.spf.identity, "helo") == 0;
        }
        for (size_t i = 0; o.have_dkim && i < o.dkim.nsigs && nd < UM_DMARC_MAX_DKIM; i++) {
            dk[nd].domain = o.dkim.sigs[i].d;
            dk[nd].selector = o.dkim.sigs[i].s;
            dk[nd].pass = o.dkim.sigs[i].result == UM_DKIM_VERIFY_PASS;
            nd++;
        }
        in.dkim = dk;
        in.ndkim = nd;
        {
            unsigned char r = 0;
            if (getrandom(&r, 1, 0) != 1)
                r = 0;
            in.pct_roll = r % 100;
        }
        if (um_dmarc_check(cc->rt->dmarc, &in, &o.dmarc, &err) == UM_OK)
            o.have_dmarc = true;
        else
            um_log_msg(&cc->d->log, UM_LOG_ERR, "dmarc", "evaluation failed: %s", err.msg);
    }
    {
        struct um_policy_inbound pin = {o.from_status, o.have_dmarc ? &o.dmarc : NULL,
                                        cc->client_ip};
        um_policy_inbound(cc->cfg, &pin, &o.dec);
    }

    /* Forged Authentication-Results claiming our authserv-id: all of them, highest first. */
    for (size_t i = m->ib.nar_seen; i > 0 && m->ib.nar_forged > 0; i--) {
        if ((i - 1) / 8 >= m->ib.ar_forged_cap
            || (m->ib.ar_forged[(i - 1) / 8] & (1u << ((i - 1) % 8))) == 0)
            continue;
        if (smfi_chgheader(ctx, MSTR("Authentication-Results"), (int)i, NULL) != MI_SUCCESS)
            return ib_tempfail(ctx, cc,
                               "the MTA refused to remove a forged Authentication-Results");
    }
    ib_authres(cc, &o, &arval);
    if (arval != NULL) {
        char *v = arval;
        char *lead = NULL;
        if (cc->leadspc && asprintf(&lead, " %s", arval) > 0)
            v = lead;
        if (smfi_insheader(ctx, 0, MSTR("Authentication-Results"), v) != MI_SUCCESS)
            um_log_msg(&cc->d->log, UM_LOG_ERR, "authres", "the MTA refused our header");
        free(lead);
        free(arval);
    }
    if (m->ib.spf_done && cc->cfg->inbound.received_spf && m->ib.spf.received_spf != NULL) {
        char *lead = NULL;
        if (asprintf(&lead, "%s%s", cc->leadspc ? " " : "", m->ib.spf.received_spf) > 0) {
            (void)smfi_insheader(ctx, 0, MSTR("Received-SPF"), lead);
            free(lead);
        }
    }
    rc = verdict_apply(ctx, cc, &o.dec);
    verdict_hold(ctx, cc, "dmarc");
    ib_verdict_log(cc, &o);
    /* Reports carry evaluations with a verdict; a tempfailed message will come back. */
    if (o.have_dmarc && cc->d->history != NULL && o.dec.action != UM_ACTION_TEMPFAIL
        && (o.dmarc.result == UM_DMARC_RESULT_PASS || o.dmarc.result == UM_DMARC_RESULT_FAIL))
        ib_record(cc, &o);
    return rc;
}

void
ib_msg_end(struct conn_ctx *cc)
{
    struct ib_msg *m = &cc->msg.ib;

    if (m->spf_done)
        um_spf_result_fini(&m->spf);
    um_dkim_verify_session_free(m->dkv);
    for (size_t i = 0; i < m->nfrom; i++)
        free(m->from[i]);
    free(m->from);
    free(m->ar_forged);
    memset(m, 0, sizeof(*m));
}
