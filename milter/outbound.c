/*
 * outbound.c - rate limit and DKIM signing on the outbound message path
 *
 * Design note: a recipient is reserved in the limiter the moment it is accepted (RCPT), so
 * parallel connections of one sender cannot together exceed the limit; reservations of a
 * message that does not complete are given back by ob_msg_end(). Mail from the local host
 * (Postfix's non_smtpd_milters emulate a connection from "localhost" [127.0.0.1]; Postfix
 * does not let those milters refuse single recipients) and uid-keyed senders (the uid is in
 * Postfix's own Received header) are decided once, at end of message, for all recipients.
 * Headers are kept (bounded: UM_OB_MAX_HEADER_BYTES) only until end of headers, because the
 * From domain that picks the signing keys may come after other headers; the body streams.
 */
#include "outbound.h"
#include "notify.h"
#include "verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define UM_OB_MAX_HEADER_BYTES (1024 * 1024)

static bool
ob_is_local(const struct conn_ctx *cc)
{
    bool loopback = strcmp(cc->client_ip, "127.0.0.1") == 0 || strcmp(cc->client_ip, "::1") == 0;

    return loopback && cc->client_name != NULL && strcasecmp(cc->client_name, "localhost") == 0;
}

/* Derives the sender key; false (and rl_on cleared) when no source gives one. */
static bool
ob_derive_key(struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;
    struct um_senderkey_input in;
    struct um_error err = {0};
    enum um_status st;

    in.sasl_login = um_str_of(m->auth_authen);
    in.sender = um_str_of(m->envfrom);
    in.client_ip = um_str_of(cc->client_ip);
    in.received = um_str_of(m->ob.received);
    if (m->ob.rl_at_eom && cc->rt->order_has_uid && m->ob.received == NULL
        && !atomic_exchange(&cc->d->warned_uid, true))
        um_log_msg(&cc->d->log, UM_LOG_WARNING, "ratelimit",
                   "ratelimit.key lists uid, but the MTA showed no Received header with the "
                   "submitting uid (Postfix 3.7 does not pass its own 'from userid N' header "
                   "to non_smtpd_milters); using the next key source instead");
    st = um_senderkey_derive(&cc->rt->order, &in, &m->ob.key, &err);
    if (st != UM_OK) {
        struct um_logline l;
        um_logline_init(&l, cc->sess, "ratelimit");
        um_logline_str(&l, "action", "not-counted");
        um_logline_str(&l, "reason", err.msg);
        um_log_emit(&cc->d->log, st == UM_ENOENT ? UM_LOG_DEBUG : UM_LOG_WARNING, &l);
        m->ob.rl_on = false;
        return false;
    }
    m->ob.have_key = true;
    return true;
}

sfsistat
ob_envfrom(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;

    (void)ctx;
    m->ob.rl_on = cc->cfg->ratelimit.enabled;
    /* Local submissions are decided once at end of message (non_smtpd_milters cannot
     * refuse single recipients; the uid source, if any, is in a header). SMTP clients get
     * per-recipient answers whatever the key sources. */
    m->ob.rl_at_eom = ob_is_local(cc);
    if (m->ob.rl_on && !m->ob.rl_at_eom)
        (void)ob_derive_key(cc);
    return SMFIS_CONTINUE;
}

/* Over the limit: log, notify once per episode, and answer as lib/policy.c decides. */
static sfsistat
ob_over_limit(SMFICTX *ctx, struct conn_ctx *cc, const struct um_ratelimit_decision *dec,
              unsigned asked)
{
    struct msg_ctx *m = &cc->msg;
    struct um_decision pd;
    struct um_logline l;

    um_policy_ratelimit(cc->cfg, dec->limit, dec->window, &pd);
    m->ob.rl_refused += asked;
    um_logline_init(&l, cc->sess, "ratelimit");
    um_logline_mem(&l, "sender", m->ob.key.key, m->ob.key.len);
    um_logline_int(&l, "rcpts", (long long)dec->count + asked);
    um_logline_int(&l, "limit", dec->limit);
    um_logline_int(&l, "window", dec->window);
    um_logline_str(&l, "ip", cc->client_ip);
    um_logline_str(&l, "stage", m->ob.rl_at_eom ? "eom" : "rcpt");
    um_logline_str(&l, "action",
                   pd.reason == UM_POLICY_RATELIMIT_MONITOR ? "monitor"
                                                            : um_action_name(pd.action));
    um_log_emit(&cc->d->log, UM_LOG_INFO, &l);
    if (dec->notify) {
        struct um_rl_notice n = {
            cc->sess,         m->ob.key.key, cc->client_ip, dec->count + asked,
            dec->limit,       dec->window,   dec->refused,  (const char *const *)m->ob.rcpt_first,
            m->ob.nrcpt_first};
        um_notify_ratelimit(cc->d, cc->rt, &n);
    }
    return verdict_apply(ctx, cc, &pd);
}

/* One reservation in the store (which applies ratelimit.redis.on_error itself when Redis
 * is down or slow: UM_ETEMP only means "tempfail"). */
static sfsistat
ob_reserve(SMFICTX *ctx, struct conn_ctx *cc, unsigned n)
{
    struct msg_ctx *m = &cc->msg;
    struct um_ratelimit_decision dec;
    struct um_rlstore_resv resv;
    struct um_error err = {0};
    struct um_str key = {m->ob.key.key, m->ob.key.len};
    enum um_status st =
        um_rlstore_reserve(cc->d->rlstore, key, n, (int64_t)time(NULL), &dec, &resv, &err);

    if (st == UM_ETEMP) {
        /* ratelimit.redis.on_error = tempfail */
        struct um_decision pd;
        um_policy_ratelimit_unchecked(&pd);
        return verdict_apply(ctx, cc, &pd);
    }
    if (st != UM_OK) {
        um_log_msg(&cc->d->log, UM_LOG_ERR, "ratelimit", "not counted: %s", err.msg);
        return SMFIS_CONTINUE; /* a limiter fault must not stop mail */
    }
    if (dec.evicted_active)
        um_log_msg(&cc->d->log, UM_LOG_WARNING, "ratelimit",
                   "tracking table full: an active sender was evicted; raise "
                   "ratelimit.max_senders");
    if (!dec.allowed)
        return ob_over_limit(ctx, cc, &dec, n);
    /* Cannot remember it (no memory): it stays counted (never under-count). */
    if (!dec.exempt)
        (void)um_rlstore_hold(&m->ob.resv, &resv);
    return SMFIS_CONTINUE;
}

sfsistat
ob_envrcpt(SMFICTX *ctx, struct conn_ctx *cc, const char *rcpt)
{
    struct msg_ctx *m = &cc->msg;

    if (m->ob.nrcpt_first < MSG_RCPTS_KEPT && rcpt != NULL) {
        m->ob.rcpt_first[m->ob.nrcpt_first] = strdup(rcpt);
        if (m->ob.rcpt_first[m->ob.nrcpt_first] != NULL)
            m->ob.nrcpt_first++;
    }
    if (!m->ob.rl_on || m->ob.rl_at_eom || !m->ob.have_key)
        return SMFIS_CONTINUE;
    return ob_reserve(ctx, cc, 1);
}

static bool
ob_signing_configured(const struct conn_ctx *cc)
{
    return cc->rt->nkeys > 0 && um_keyrule_count(cc->rt->keyrule) > 0;
}

void
ob_header(SMFICTX *ctx, struct conn_ctx *cc, const char *name, const char *value)
{
    struct msg_ctx *m = &cc->msg;
    size_t need;

    (void)ctx;
    if (m->ob.received == NULL && strcasecmp(name, "Received") == 0)
        m->ob.received = strdup(value);
    if (!ob_signing_configured(cc) || m->ob.sign_off)
        return;
    need = strlen(name) + strlen(value) + 4;
    if (m->ob.hdr_bytes + need > UM_OB_MAX_HEADER_BYTES) {
        m->ob.sign_off = true;
        m->ob.sign_skip = "headers larger than 1 MiB";
        return;
    }
    if (m->ob.nhdr_kept == m->ob.hdr_cap) {
        size_t ncap = m->ob.hdr_cap == 0 ? 32 : m->ob.hdr_cap * 2;
        struct msg_hdr *nh = realloc(m->ob.hdr, ncap * sizeof(*nh));
        if (nh == NULL) {
            m->ob.sign_off = true;
            m->ob.sign_skip = "out of memory";
            return;
        }
        m->ob.hdr = nh;
        m->ob.hdr_cap = ncap;
    }
    m->ob.hdr[m->ob.nhdr_kept].name = strdup(name);
    m->ob.hdr[m->ob.nhdr_kept].value = strdup(value);
    if (m->ob.hdr[m->ob.nhdr_kept].name == NULL || m->ob.hdr[m->ob.nhdr_kept].value == NULL) {
        free(m->ob.hdr[m->ob.nhdr_kept].name);
        free(m->ob.hdr[m->ob.nhdr_kept].value);
        m->ob.sign_off = true;
        m->ob.sign_skip = "out of memory";
        return;
    }
    m->ob.nhdr_kept++;
    m->ob.hdr_bytes += need;
}

static void
ob_sign_fail(struct conn_ctx *cc, const char *why)
{
    struct um_logline l;

    cc->msg.ob.sign_off = true;
    cc->msg.ob.sign_skip = "signing failed";
    um_logline_init(&l, cc->sess, "dkim-sign");
    um_logline_str(&l, "domain", cc->msg.ob.sign_domain);
    um_logline_str(&l, "error", why);
    um_log_emit(&cc->d->log, UM_LOG_ERR, &l);
}

/* Picks the keys from the From domain and starts the signing session. */
static void
ob_sign_start(struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;
    struct um_str froms[8] = {{0}}, domain = {0};
    const struct um_signer *signers[UM_DKIM_SIGN_MAX_SIGNERS];
    struct um_keyrule_match match;
    struct um_error err = {0};
    size_t nfrom = 0, nsig = 0;

    for (size_t i = 0; i < m->ob.nhdr_kept; i++) {
        if (strcasecmp(m->ob.hdr[i].name, "From") == 0) {
            if (nfrom == sizeof(froms) / sizeof(froms[0])) {
                nfrom++;
                break;
            }
            froms[nfrom++] = um_str_of(m->ob.hdr[i].value);
        }
    }
    if (nfrom > sizeof(froms) / sizeof(froms[0])
        || um_keyrule_from_domain(froms, nfrom, m->ob.sign_domain, sizeof(m->ob.sign_domain),
                                  &domain, &err)
               != UM_OK) {
        m->ob.sign_off = true;
        m->ob.sign_skip = nfrom == 0 ? "no From header" : "unusable From header";
        um_log_msg(&cc->d->log, UM_LOG_DEBUG, "dkim-sign", "not signing: %s",
                   nfrom == 0 ? "no From header" : err.msg);
        return;
    }
    um_keyrule_match(cc->rt->keyrule, domain, &match);
    if (!match.found) {
        m->ob.sign_off = true;
        m->ob.sign_skip = "no rule for the From domain";
        if (um_logger_wants(&cc->d->log, UM_LOG_DEBUG)) {
            struct um_logline l;
            um_logline_init(&l, cc->sess, "dkim-sign");
            um_logline_str(&l, "action", "skip");
            um_logline_str(&l, "reason", match.reason);
            um_log_emit(&cc->d->log, UM_LOG_DEBUG, &l);
        }
        return;
    }
    for (size_t i = 0; i < match.nkeys && nsig < UM_DKIM_SIGN_MAX_SIGNERS; i++) {
        const struct um_signer *k = um_runtime_key(cc->rt, match.keys[i]);
        if (k != NULL)
            signers[nsig++] = k;
    }
    if (um_dkim_sign_begin(cc->rt->sign[cc->leadspc ? 1 : 0], signers, nsig, cc->sess, &m->ob.sign,
                           &err)
        != UM_OK) {
        ob_sign_fail(cc, err.msg);
        return;
    }
    for (size_t i = 0; i < m->ob.nhdr_kept; i++) {
        if (um_dkim_sign_header(m->ob.sign, um_str_of(m->ob.hdr[i].name),
                                um_str_of(m->ob.hdr[i].value), &err)
            != UM_OK) {
            ob_sign_fail(cc, err.msg);
            return;
        }
    }
    if (um_dkim_sign_eoh(m->ob.sign, &err) != UM_OK)
        ob_sign_fail(cc, err.msg);
}

void
ob_eoh(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;

    (void)ctx;
    if (ob_signing_configured(cc) && !m->ob.sign_off)
        ob_sign_start(cc);
    /* The kept headers are no longer needed. */
    for (size_t i = 0; i < m->ob.nhdr_kept; i++) {
        free(m->ob.hdr[i].name);
        free(m->ob.hdr[i].value);
    }
    free(m->ob.hdr);
    m->ob.hdr = NULL;
    m->ob.nhdr_kept = m->ob.hdr_cap = 0;
}

void
ob_body(SMFICTX *ctx, struct conn_ctx *cc, const unsigned char *chunk, size_t len)
{
    struct msg_ctx *m = &cc->msg;
    struct um_error err = {0};

    (void)ctx;
    if (m->ob.sign != NULL && !m->ob.sign_off
        && um_dkim_sign_body(m->ob.sign, (struct um_str){(const char *)chunk, len}, &err) != UM_OK)
        ob_sign_fail(cc, err.msg);
}

sfsistat
ob_eom(SMFICTX *ctx, struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;
    struct um_error err = {0};
    sfsistat rc;

    if (m->ob.rl_on && m->ob.rl_at_eom && m->nrcpt > 0 && ob_derive_key(cc)) {
        rc = ob_reserve(ctx, cc, m->nrcpt);
        if (rc != SMFIS_CONTINUE)
            return rc;
    }
    if (m->ob.sign != NULL && !m->ob.sign_off) {
        if (um_dkim_sign_end(m->ob.sign, &err) != UM_OK) {
            ob_sign_fail(cc, err.msg);
        } else {
            size_t n = um_dkim_sign_count(m->ob.sign);
            for (size_t i = 0; i < n; i++) {
                if (smfi_insheader(ctx, 0, MSTR("DKIM-Signature"),
                                   MSTR(um_dkim_sign_value(m->ob.sign, i)))
                    != MI_SUCCESS) {
                    ob_sign_fail(cc, "the MTA refused the DKIM-Signature header");
                    break;
                }
            }
        }
        if (m->ob.sign_off) {
            struct um_decision pd;
            um_policy_sign_failed(cc->cfg, &pd);
            rc = verdict_apply(ctx, cc, &pd);
            if (rc != SMFIS_CONTINUE)
                return rc;
        }
    }
    verdict_hold(ctx, cc, "ratelimit");
    um_rlstore_held_clear(&m->ob.resv); /* completed: its recipients stay counted */
    return SMFIS_CONTINUE;
}

void
ob_msg_end(struct conn_ctx *cc)
{
    struct ob_msg *o = &cc->msg.ob;

    /* RFC 5321 transaction not completed: its recipients no longer count. */
    for (size_t i = 0; i < o->resv.n; i++) {
        unsigned released = 0;
        struct um_error err = {0};
        struct um_str key = {o->key.key, o->key.len};

        if (um_rlstore_release(cc->d->rlstore, key, &o->resv.v[i], &released, &err) != UM_OK)
            um_log_msg(&cc->d->log, UM_LOG_ERR, "ratelimit", "release failed: %s", err.msg);
    }
    um_rlstore_held_clear(&o->resv);
    for (size_t i = 0; i < o->nrcpt_first; i++)
        free(o->rcpt_first[i]);
    free(o->received);
    for (size_t i = 0; i < o->nhdr_kept; i++) {
        free(o->hdr[i].name);
        free(o->hdr[i].value);
    }
    free(o->hdr);
    um_dkim_sign_session_free(o->sign);
    memset(o, 0, sizeof(*o));
}
