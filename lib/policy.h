/*
 * policy - what happens to a message: check results and settings -> one typed decision
 *
 * DESCRIPTION  Every answer the daemon gives the MTA about a message is decided here: the
 *              inbound rule (one From per RFC 7489 6.6.1, DMARC disposition, DNS trouble,
 *              monitor mode, exempt domains and clients), the outbound rate-limit outcome
 *              (and a store that cannot be asked), a DKIM signing failure, our own trouble,
 *              and a daemon that is shutting down. A decision is an action, the SMTP reply
 *              that goes with it (code, enhanced code, text) and a reason. milter/verdict.c
 *              is the one place that turns a decision into libmilter calls.
 *
 *              The whole inbound rule, in the order it is applied:
 *                no usable From / several From -> inbound.bad_from_action
 *                no DMARC evaluation, pass, none, permerror            -> accept
 *                temperror -> tempfail if enforce and temperror_action = tempfail, else accept
 *                fail with disposition reject or quarantine (after t=y and pct=):
 *                  enforce = false -> accept (monitor only); exempt From domain or client
 *                  -> accept (exempt ...); else reject_action / quarantine_action
 *                fail with any other disposition (none, t=y on quarantine)      -> accept
 *              Replies: 550 5.7.1 (DMARC or From reject, rate limit reject); 451 4.7.1
 *              (DMARC or From tempfail, rate limit tempfail); 451 4.3.0 (rate-limit store
 *              unavailable, signing failed, our own trouble); 451 4.3.2 (shutting down).
 * THREADS      Pure functions over borrowed, immutable inputs; safe from any thread.
 * OWNERSHIP    Inputs are borrowed for the call. A decision owns its text; its other strings
 *              are static.
 * ERRORS       None: every input has a decision.
 * LIMITS       O(exempt list length) per inbound decision; no allocation, no I/O.
 */
#ifndef UM_POLICY_H
#define UM_POLICY_H

#include <stdbool.h>

struct um_config;
struct um_dmarc_res;

/* What the MTA is told to do with the message (or, at RCPT, the recipient). */
enum um_action {
    UM_ACTION_ACCEPT = 0,
    UM_ACTION_REJECT,   /* 5xx reply */
    UM_ACTION_TEMPFAIL, /* 4xx reply, the client retries */
    UM_ACTION_HOLD,     /* accept into the MTA's hold queue (smfi_quarantine) */
    UM_ACTION_TAG,      /* accept with an X-Unimilter-Quarantine header */
};

/* Why; the inbound ones are the verdict line's why= (um_policy_reason_name). */
enum um_policy_reason {
    UM_POLICY_NONE = 0,            /* nothing to enforce */
    UM_POLICY_NO_FROM,             /* no usable From address */
    UM_POLICY_SEVERAL_FROM,        /* several From headers or authors */
    UM_POLICY_DMARC_TEMPERROR,     /* DNS trouble left DMARC undecided */
    UM_POLICY_MONITOR_ONLY,        /* inbound.enforce = false */
    UM_POLICY_EXEMPT_DOMAIN,       /* inbound.exempt_domains */
    UM_POLICY_EXEMPT_CLIENT,       /* inbound.exempt_clients */
    UM_POLICY_DMARC_REJECT,        /* fail, disposition reject */
    UM_POLICY_DMARC_QUARANTINE,    /* fail, disposition quarantine */
    UM_POLICY_RATELIMIT,           /* sender over its rate limit */
    UM_POLICY_RATELIMIT_MONITOR,   /* over, but ratelimit.monitor_only */
    UM_POLICY_RATELIMIT_UNCHECKED, /* the store cannot be asked (redis.on_error tempfail) */
    UM_POLICY_SIGN_FAILED,         /* DKIM signing failed */
    UM_POLICY_LOCAL,               /* our own trouble (memory, the MTA refused a change) */
    UM_POLICY_DRAINING,            /* the daemon is stopping or restarting */
};

/* RFC 7489 6.6.1: exactly one From header with one author. */
enum um_from_status {
    UM_FROM_OK = 0,
    UM_FROM_NONE,    /* no From header, or no usable address in it */
    UM_FROM_SEVERAL, /* several From headers, or several authors in one */
};

#define UM_POLICY_TEXT_MAX 400

struct um_decision {
    enum um_action action;
    enum um_policy_reason reason;
    const char *code;  /* SMTP reply code ("550", "451"); NULL: no reply of ours */
    const char *xcode; /* enhanced status code ("5.7.1"); NULL with code */
    /* REJECT/TEMPFAIL: the reply text; TAG: the value of the X-Unimilter-Quarantine header
     * (without leading space); else "". */
    char text[UM_POLICY_TEXT_MAX];
    const char *quarantine; /* HOLD: the reason the MTA records (static); else NULL */
};

struct um_policy_inbound {
    enum um_from_status from;
    const struct um_dmarc_res *dmarc; /* NULL: DMARC not evaluated (off, or it failed) */
    const char *client_ip;            /* for inbound.exempt_clients */
};

/* The inbound rule (see DESCRIPTION). */
void um_policy_inbound(const struct um_config *cfg, const struct um_policy_inbound *in,
                       struct um_decision *out);

/* A sender over its limit of `limit` recipients per `window` seconds: ratelimit.action,
 * or accept when ratelimit.monitor_only. */
void um_policy_ratelimit(const struct um_config *cfg, unsigned limit, unsigned window,
                         struct um_decision *out);

/* The rate-limit store cannot be asked and its fallback says tempfail. */
void um_policy_ratelimit_unchecked(struct um_decision *out);

/* DKIM signing failed: dkim_sign.on_error (accept unsigned, or tempfail). */
void um_policy_sign_failed(const struct um_config *cfg, struct um_decision *out);

/* Our own trouble: 451 4.3.0. */
void um_policy_local_trouble(struct um_decision *out);

/* The daemon is stopping: 451 4.3.2, new messages come back later. */
void um_policy_draining(struct um_decision *out);

/* "accept", "reject", "tempfail", "hold", "tag". */
const char *um_action_name(enum um_action action);

/* The verdict line's why= for an inbound reason ("dmarc p=reject"); NULL for none. */
const char *um_policy_reason_name(enum um_policy_reason reason);

/* Whether a local setting, not the domain's policy, let a failing message through (a DMARC
 * report's local_policy override). */
bool um_policy_is_local_override(enum um_policy_reason reason);

#endif
