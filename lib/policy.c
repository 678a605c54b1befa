/*
 * policy.c - one function per kind of decision, each a short chain of rules
 *
 * Design note: the rules are written as early returns in the order the header lists them,
 * so reading one function top to bottom is reading the rule; every branch ends in
 * policy_set(), which is where an action meets its reply. Replies are fixed texts (the
 * tests and operators' log searches depend on them byte for byte); only the DMARC reject
 * and tag texts name a domain, and the rate-limit texts its numbers. The exempt lists are
 * short and scanned linearly, case-insensitively (IPs and domain names both compare that
 * way). Work: O(exempt entries); no allocation.
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "dmarc.h"

static void
policy_set(struct um_decision *out, enum um_action action, enum um_policy_reason reason,
           const char *code, const char *xcode)
{
    out->action = action;
    out->reason = reason;
    out->code = code;
    out->xcode = xcode;
    out->text[0] = '\0';
    out->quarantine = NULL;
}

static bool
policy_list_has(char *const *list, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(list[i], v) == 0)
            return true;
    return false;
}

/* An action chosen by an inbound setting, with the reply it needs. */
static void
policy_inbound_act(struct um_decision *out, enum um_action action, enum um_policy_reason reason,
                   const struct um_dmarc_res *dmarc)
{
    switch (action) {
    case UM_ACTION_REJECT:
        policy_set(out, action, reason, "550", "5.7.1");
        if (dmarc == NULL)
            (void)snprintf(out->text, sizeof(out->text),
                           "Message must have exactly one From header with one address "
                           "(RFC 5322 3.6)");
        else
            (void)snprintf(out->text, sizeof(out->text),
                           "DMARC policy of %s rejects this message (not authenticated)",
                           dmarc->policy_domain[0] != '\0' ? dmarc->policy_domain
                                                           : dmarc->from_domain);
        return;
    case UM_ACTION_TEMPFAIL:
        policy_set(out, action, reason, "451", "4.7.1");
        (void)snprintf(out->text, sizeof(out->text), "%s",
                       "Cannot authenticate this message now, try again later");
        return;
    case UM_ACTION_HOLD:
        policy_set(out, action, reason, NULL, NULL);
        out->quarantine = "unimilter: DMARC quarantine";
        return;
    case UM_ACTION_TAG:
        policy_set(out, action, reason, NULL, NULL);
        (void)snprintf(out->text, sizeof(out->text), "DMARC policy of %s",
                       dmarc != NULL ? dmarc->policy_domain : "");
        return;
    case UM_ACTION_ACCEPT:
        break;
    }
    policy_set(out, UM_ACTION_ACCEPT, reason, NULL, NULL);
}

void
um_policy_inbound(const struct um_config *cfg, const struct um_policy_inbound *in,
                  struct um_decision *out)
{
    const struct um_dmarc_res *d = in->dmarc;
    enum um_action act;

    policy_set(out, UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL);
    /* RFC 7489 6.6.1: without exactly one author there is no DMARC evaluation. */
    if (in->from != UM_FROM_OK) {
        policy_inbound_act(out, cfg->inbound.bad_from_action,
                           in->from == UM_FROM_NONE ? UM_POLICY_NO_FROM : UM_POLICY_SEVERAL_FROM,
                           NULL);
        return;
    }
    if (d == NULL)
        return;
    if (d->result == UM_DMARC_RESULT_TEMPERROR) {
        if (cfg->inbound.temperror_action == UM_ACTION_TEMPFAIL && cfg->inbound.enforce)
            policy_inbound_act(out, UM_ACTION_TEMPFAIL, UM_POLICY_DMARC_TEMPERROR, d);
        return;
    }
    if (d->result != UM_DMARC_RESULT_FAIL)
        return;
    /* The disposition already has t=y (one step down) and pct= sampling applied. */
    if (d->disposition != UM_DMARC_POLICY_REJECT && d->disposition != UM_DMARC_POLICY_QUARANTINE)
        return;
    if (!cfg->inbound.enforce) {
        out->reason = UM_POLICY_MONITOR_ONLY;
        return;
    }
    if (policy_list_has(cfg->inbound.exempt_domains, cfg->inbound.nexempt_domains,
                        d->from_domain)) {
        out->reason = UM_POLICY_EXEMPT_DOMAIN;
        return;
    }
    if (in->client_ip != NULL
        && policy_list_has(cfg->inbound.exempt_clients, cfg->inbound.nexempt_clients,
                           in->client_ip)) {
        out->reason = UM_POLICY_EXEMPT_CLIENT;
        return;
    }
    if (d->disposition == UM_DMARC_POLICY_REJECT) {
        act = cfg->inbound.reject_action;
        policy_inbound_act(out, act, UM_POLICY_DMARC_REJECT, d);
    } else {
        act = cfg->inbound.quarantine_action;
        policy_inbound_act(out, act, UM_POLICY_DMARC_QUARANTINE, d);
    }
}

void
um_policy_ratelimit(const struct um_config *cfg, unsigned limit, unsigned window,
                    struct um_decision *out)
{
    if (cfg->ratelimit.monitor_only) {
        policy_set(out, UM_ACTION_ACCEPT, UM_POLICY_RATELIMIT_MONITOR, NULL, NULL);
        return;
    }
    switch (cfg->ratelimit.action) {
    case UM_RL_ACTION_HOLD:
        policy_set(out, UM_ACTION_HOLD, UM_POLICY_RATELIMIT, NULL, NULL);
        out->quarantine = "unimilter: sender over its rate limit";
        return;
    case UM_RL_ACTION_REJECT:
        policy_set(out, UM_ACTION_REJECT, UM_POLICY_RATELIMIT, "550", "5.7.1");
        (void)snprintf(out->text, sizeof(out->text),
                       "Sender rate limit exceeded: at most %u recipients per %u seconds", limit,
                       window);
        return;
    case UM_RL_ACTION_TEMPFAIL:
        break;
    }
    policy_set(out, UM_ACTION_TEMPFAIL, UM_POLICY_RATELIMIT, "451", "4.7.1");
    (void)snprintf(out->text, sizeof(out->text),
                   "Sender rate limit exceeded: at most %u recipients per %u seconds, try again "
                   "later",
                   limit, window);
}

void
um_policy_ratelimit_unchecked(struct um_decision *out)
{
    policy_set(out, UM_ACTION_TEMPFAIL, UM_POLICY_RATELIMIT_UNCHECKED, "451", "4.3.0");
    (void)snprintf(out->text, sizeof(out->text), "%s",
                   "Sender rate limit cannot be checked now, try again later");
}

void
um_policy_sign_failed(const struct um_config *cfg, struct um_decision *out)
{
    if (cfg->dkim_sign.on_error != UM_ACTION_TEMPFAIL) {
        policy_set(out, UM_ACTION_ACCEPT, UM_POLICY_SIGN_FAILED, NULL, NULL);
        return;
    }
    policy_set(out, UM_ACTION_TEMPFAIL, UM_POLICY_SIGN_FAILED, "451", "4.3.0");
    (void)snprintf(out->text, sizeof(out->text), "%s",
                   "unimilter: cannot sign this message now, try again later");
}

void
um_policy_local_trouble(struct um_decision *out)
{
    policy_set(out, UM_ACTION_TEMPFAIL, UM_POLICY_LOCAL, "451", "4.3.0");
    (void)snprintf(out->text, sizeof(out->text), "%s",
                   "unimilter: temporary local problem, try again later");
}

void
um_policy_draining(struct um_decision *out)
{
    policy_set(out, UM_ACTION_TEMPFAIL, UM_POLICY_DRAINING, "451", "4.3.2");
    (void)snprintf(out->text, sizeof(out->text), "%s", "unimilter is restarting, try again later");
}

const char *
um_action_name(enum um_action action)
{
    switch (action) {
    case UM_ACTION_ACCEPT:
        return "accept";
    case UM_ACTION_REJECT:
        return "reject";
    case UM_ACTION_TEMPFAIL:
        return "tempfail";
    case UM_ACTION_HOLD:
        return "hold";
    case UM_ACTION_TAG:
        return "tag";
    }
    return "accept";
}

const char *
um_policy_reason_name(enum um_policy_reason reason)
{
    switch (reason) {
    case UM_POLICY_NONE:
        return NULL;
    case UM_POLICY_NO_FROM:
        return "no usable From";
    case UM_POLICY_SEVERAL_FROM:
        return "several From";
    case UM_POLICY_DMARC_TEMPERROR:
        return "dmarc temperror";
    case UM_POLICY_MONITOR_ONLY:
        return "monitor only";
    case UM_POLICY_EXEMPT_DOMAIN:
        return "exempt domain";
    case UM_POLICY_EXEMPT_CLIENT:
        return "exempt client";
    case UM_POLICY_DMARC_REJECT:
        return "dmarc p=reject";
    case UM_POLICY_DMARC_QUARANTINE:
        return "dmarc p=quarantine";
    case UM_POLICY_RATELIMIT:
        return "rate limit";
    case UM_POLICY_RATELIMIT_MONITOR:
        return "rate limit, monitor only";
    case UM_POLICY_RATELIMIT_UNCHECKED:
        return "rate limit unchecked";
    case UM_POLICY_SIGN_FAILED:
        return "signing failed";
    case UM_POLICY_LOCAL:
        return "local problem";
    case UM_POLICY_DRAINING:
        return "restarting";
    }
    return NULL;
}

bool
um_policy_is_local_override(enum um_policy_reason reason)
{
    return reason == UM_POLICY_MONITOR_ONLY || reason == UM_POLICY_EXEMPT_DOMAIN
           || reason == UM_POLICY_EXEMPT_CLIENT;
}
