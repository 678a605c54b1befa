/*
 * test_policy - lib/policy: every decision the daemon hands the MTA, as tables.
 *
 * The inbound rule is checked two ways: rows that pin whole decisions (reply code, enhanced
 * code and text byte for byte, as the milter and Postfix tests see them), and a sweep over
 * every combination of From status, DMARC result, policy, t=y, enforce and the four
 * *_action settings against the rule as the README states it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "dmarc.h"
#include "policy.h"

static char exempt_domain[] = "Lists.Example.ORG";
static char exempt_client[] = "192.0.2.99";
static char *exempt_domains[] = {exempt_domain};
static char *exempt_clients[] = {exempt_client};

static void
cfg_defaults(struct um_config *c)
{
    memset(c, 0, sizeof(*c));
    c->inbound.enforce = true;
    c->inbound.reject_action = UM_ACTION_REJECT;
    c->inbound.quarantine_action = UM_ACTION_HOLD;
    c->inbound.bad_from_action = UM_ACTION_REJECT;
    c->inbound.temperror_action = UM_ACTION_ACCEPT;
    c->inbound.exempt_domains = exempt_domains;
    c->inbound.nexempt_domains = 1;
    c->inbound.exempt_clients = exempt_clients;
    c->inbound.nexempt_clients = 1;
    c->ratelimit.action = UM_RL_ACTION_TEMPFAIL;
    c->dkim_sign.on_error = UM_ACTION_ACCEPT;
}

/* A DMARC result as lib/dmarc.c leaves it: t=y lowers a failing message's policy one step. */
static void
dmarc_res(struct um_dmarc_res *r, enum um_dmarc_result result, enum um_dmarc_policy policy,
          bool testing, const char *from, const char *policy_domain)
{
    memset(r, 0, sizeof(*r));
    r->result = result;
    r->policy = policy;
    r->testing = testing;
    if (result == UM_DMARC_RESULT_PASS)
        r->disposition = UM_DMARC_POLICY_NONE;
    else if (result == UM_DMARC_RESULT_FAIL && testing)
        r->disposition =
            policy == UM_DMARC_POLICY_REJECT ? UM_DMARC_POLICY_QUARANTINE : UM_DMARC_POLICY_NONE;
    else
        r->disposition = policy; /* other results: must not matter */
    (void)snprintf(r->from_domain, sizeof(r->from_domain), "%s", from);
    (void)snprintf(r->policy_domain, sizeof(r->policy_domain), "%s", policy_domain);
}

static void
want_decision(const char *name, const struct um_decision *got, enum um_action action,
              enum um_policy_reason reason, const char *code, const char *xcode,
              const char *text /* HOLD: the quarantine reason */)
{
    if (got->action != action)
        fail_msg("%s: action got %s, want %s", name, um_action_name(got->action),
                 um_action_name(action));
    if (got->reason != reason)
        fail_msg("%s: reason got %d (%s), want %d", name, (int)got->reason,
                 um_policy_reason_name(got->reason), (int)reason);
    if ((got->code == NULL) != (code == NULL) || (code != NULL && strcmp(got->code, code) != 0))
        fail_msg("%s: code got %s, want %s", name, got->code ? got->code : "(none)",
                 code ? code : "(none)");
    if ((got->xcode == NULL) != (xcode == NULL)
        || (xcode != NULL && strcmp(got->xcode, xcode) != 0))
        fail_msg("%s: xcode got %s, want %s", name, got->xcode ? got->xcode : "(none)",
                 xcode ? xcode : "(none)");
    if (action == UM_ACTION_HOLD) {
        if (got->quarantine == NULL || strcmp(got->quarantine, text) != 0 || got->text[0] != '\0')
            fail_msg("%s: quarantine got \"%s\" (text \"%s\"), want \"%s\"", name,
                     got->quarantine ? got->quarantine : "(none)", got->text, text);
    } else {
        if (got->quarantine != NULL)
            fail_msg("%s: quarantine \"%s\" without hold", name, got->quarantine);
        if (strcmp(got->text, text) != 0)
            fail_msg("%s: text got \"%s\", want \"%s\"", name, got->text, text);
    }
}

enum row_dmarc { RD_NONE_EVAL, RD_PASS, RD_FAIL, RD_TEMPERROR, RD_PERMERROR, RD_NONE };

static const struct inbound_row {
    const char *name;
    enum um_from_status from;
    enum row_dmarc dmarc;
    enum um_dmarc_policy policy;
    bool testing;
    const char *from_domain, *policy_domain, *client;
    /* settings (defaults when 0 / false, see the row) */
    bool monitor;
    enum um_action reject_action, quarantine_action, bad_from_action, temperror_action;
    /* want */
    enum um_action action;
    enum um_policy_reason reason;
    const char *code, *xcode, *text;
} inbound_rows[] = {
    {"pass", UM_FROM_OK, RD_PASS, UM_DMARC_POLICY_REJECT, false, "example.org", "example.org",
     "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_ACCEPT,
     UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"no evaluation", UM_FROM_OK, RD_NONE_EVAL, UM_DMARC_POLICY_UNSET, false, "", "", "192.0.2.1",
     false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_ACCEPT,
     UM_POLICY_NONE, NULL, NULL, ""},
    {"fail p=reject", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false, "a.example.org",
     "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_REJECT, UM_POLICY_DMARC_REJECT, "550", "5.7.1",
     "DMARC policy of example.org rejects this message (not authenticated)"},
    {"fail p=reject, np= without policy domain", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false,
     "gone.example.org", "", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_REJECT, UM_POLICY_DMARC_REJECT, "550", "5.7.1",
     "DMARC policy of gone.example.org rejects this message (not authenticated)"},
    {"fail p=reject t=y: quarantine", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, true,
     "example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_HOLD, UM_POLICY_DMARC_QUARANTINE, NULL, NULL,
     "unimilter: DMARC quarantine"},
    {"fail p=quarantine t=y: none", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_QUARANTINE, true,
     "example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"fail p=quarantine tag", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_QUARANTINE, false,
     "a.example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_TAG,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_TAG, UM_POLICY_DMARC_QUARANTINE, NULL, NULL,
     "DMARC policy of example.org"},
    {"fail p=reject hold", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false, "example.org",
     "example.org", "192.0.2.1", false, UM_ACTION_HOLD, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_HOLD, UM_POLICY_DMARC_REJECT, NULL, NULL,
     "unimilter: DMARC quarantine"},
    {"fail p=quarantine reject", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_QUARANTINE, false,
     "example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_REJECT,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_REJECT, UM_POLICY_DMARC_QUARANTINE, "550",
     "5.7.1", "DMARC policy of example.org rejects this message (not authenticated)"},
    {"fail p=none", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_NONE, false, "example.org", "example.org",
     "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_ACCEPT,
     UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"monitor only", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false, "example.org",
     "example.org", "192.0.2.1", true, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_MONITOR_ONLY, NULL, NULL, ""},
    {"exempt domain (case)", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false,
     "lists.example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_EXEMPT_DOMAIN, NULL, NULL, ""},
    {"exempt domain is not its parent", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_REJECT, false,
     "example.org", "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_REJECT, UM_ACTION_ACCEPT, UM_ACTION_REJECT, UM_POLICY_DMARC_REJECT, "550", "5.7.1",
     "DMARC policy of example.org rejects this message (not authenticated)"},
    {"exempt client", UM_FROM_OK, RD_FAIL, UM_DMARC_POLICY_QUARANTINE, false, "example.org",
     "example.org", "192.0.2.99", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_EXEMPT_CLIENT, NULL, NULL, ""},
    {"temperror accept", UM_FROM_OK, RD_TEMPERROR, UM_DMARC_POLICY_REJECT, false, "example.org",
     "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"temperror tempfail", UM_FROM_OK, RD_TEMPERROR, UM_DMARC_POLICY_UNSET, false, "example.org",
     "", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_TEMPFAIL,
     UM_ACTION_TEMPFAIL, UM_POLICY_DMARC_TEMPERROR, "451", "4.7.1",
     "Cannot authenticate this message now, try again later"},
    {"temperror tempfail, exempt client still tempfails", UM_FROM_OK, RD_TEMPERROR,
     UM_DMARC_POLICY_REJECT, false, "example.org", "example.org", "192.0.2.99", false,
     UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_TEMPFAIL, UM_ACTION_TEMPFAIL,
     UM_POLICY_DMARC_TEMPERROR, "451", "4.7.1",
     "Cannot authenticate this message now, try again later"},
    {"temperror tempfail, monitor only", UM_FROM_OK, RD_TEMPERROR, UM_DMARC_POLICY_REJECT, false,
     "example.org", "example.org", "192.0.2.1", true, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_REJECT, UM_ACTION_TEMPFAIL, UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"permerror", UM_FROM_OK, RD_PERMERROR, UM_DMARC_POLICY_REJECT, false, "example.org",
     "example.org", "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_TEMPFAIL, UM_ACTION_ACCEPT, UM_POLICY_NONE, NULL, NULL, ""},
    {"no From: reject", UM_FROM_NONE, RD_NONE_EVAL, UM_DMARC_POLICY_UNSET, false, "", "",
     "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT, UM_ACTION_ACCEPT,
     UM_ACTION_REJECT, UM_POLICY_NO_FROM, "550", "5.7.1",
     "Message must have exactly one From header with one address (RFC 5322 3.6)"},
    {"several From: tempfail", UM_FROM_SEVERAL, RD_NONE_EVAL, UM_DMARC_POLICY_UNSET, false, "", "",
     "192.0.2.1", false, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_TEMPFAIL, UM_ACTION_ACCEPT,
     UM_ACTION_TEMPFAIL, UM_POLICY_SEVERAL_FROM, "451", "4.7.1",
     "Cannot authenticate this message now, try again later"},
    {"several From: accept, even when monitoring", UM_FROM_SEVERAL, RD_NONE_EVAL,
     UM_DMARC_POLICY_UNSET, false, "", "", "192.0.2.99", true, UM_ACTION_REJECT, UM_ACTION_HOLD,
     UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_ACTION_ACCEPT, UM_POLICY_SEVERAL_FROM, NULL, NULL, ""},
    {"no From: reject from an exempt client too", UM_FROM_NONE, RD_NONE_EVAL, UM_DMARC_POLICY_UNSET,
     false, "", "", "192.0.2.99", true, UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_REJECT,
     UM_ACTION_ACCEPT, UM_ACTION_REJECT, UM_POLICY_NO_FROM, "550", "5.7.1",
     "Message must have exactly one From header with one address (RFC 5322 3.6)"},
};

static enum um_dmarc_result
row_result(enum row_dmarc d)
{
    switch (d) {
    case RD_PASS:
        return UM_DMARC_RESULT_PASS;
    case RD_FAIL:
        return UM_DMARC_RESULT_FAIL;
    case RD_TEMPERROR:
        return UM_DMARC_RESULT_TEMPERROR;
    case RD_PERMERROR:
        return UM_DMARC_RESULT_PERMERROR;
    case RD_NONE:
    case RD_NONE_EVAL:
        break;
    }
    return UM_DMARC_RESULT_NONE;
}

static void
test_inbound_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(inbound_rows) / sizeof(inbound_rows[0]); i++) {
        const struct inbound_row *r = &inbound_rows[i];
        struct um_config cfg;
        struct um_dmarc_res res;
        struct um_policy_inbound in = {r->from, NULL, r->client};
        struct um_decision dec;

        cfg_defaults(&cfg);
        cfg.inbound.enforce = !r->monitor;
        cfg.inbound.reject_action = r->reject_action;
        cfg.inbound.quarantine_action = r->quarantine_action;
        cfg.inbound.bad_from_action = r->bad_from_action;
        cfg.inbound.temperror_action = r->temperror_action;
        if (r->dmarc != RD_NONE_EVAL) {
            dmarc_res(&res, row_result(r->dmarc), r->policy, r->testing, r->from_domain,
                      r->policy_domain);
            in.dmarc = &res;
        }
        memset(&dec, 0x5a, sizeof(dec));
        um_policy_inbound(&cfg, &in, &dec);
        want_decision(r->name, &dec, r->action, r->reason, r->code, r->xcode, r->text);
    }
}

/* The rule as the README and unimilter.conf(5) state it, written the long way round. */
static enum um_action
spec_inbound(const struct um_config *c, enum um_from_status from, const struct um_dmarc_res *d,
             bool exempt)
{
    if (from != UM_FROM_OK)
        return c->inbound.bad_from_action;
    if (d == NULL)
        return UM_ACTION_ACCEPT;
    if (d->result == UM_DMARC_RESULT_TEMPERROR)
        return c->inbound.enforce ? c->inbound.temperror_action : UM_ACTION_ACCEPT;
    if (d->result != UM_DMARC_RESULT_FAIL || !c->inbound.enforce || exempt)
        return UM_ACTION_ACCEPT;
    if (d->disposition == UM_DMARC_POLICY_REJECT)
        return c->inbound.reject_action;
    if (d->disposition == UM_DMARC_POLICY_QUARANTINE)
        return c->inbound.quarantine_action;
    return UM_ACTION_ACCEPT;
}

static void
test_inbound_every_combination(void **state)
{
    static const enum um_action rejects[] = {UM_ACTION_REJECT, UM_ACTION_HOLD, UM_ACTION_TAG};
    static const enum um_action quarantines[] = {UM_ACTION_HOLD, UM_ACTION_TAG, UM_ACTION_REJECT};
    static const enum um_action bad_froms[] = {UM_ACTION_REJECT, UM_ACTION_TEMPFAIL,
                                               UM_ACTION_ACCEPT};
    static const enum um_action temperrors[] = {UM_ACTION_ACCEPT, UM_ACTION_TEMPFAIL};
    static const char *const clients[] = {"192.0.2.1", "192.0.2.99"};
    static const char *const froms[] = {"example.org", "LISTS.example.org"};
    size_t n = 0;

    (void)state;
    for (int fs = UM_FROM_OK; fs <= UM_FROM_SEVERAL; fs++)
        for (int dr = RD_NONE_EVAL; dr <= RD_NONE; dr++)
            for (int pol = UM_DMARC_POLICY_UNSET; pol <= UM_DMARC_POLICY_REJECT; pol++)
                for (int t = 0; t < 2; t++)
                    for (int enf = 0; enf < 2; enf++)
                        for (size_t ra = 0; ra < 3; ra++)
                            for (size_t qa = 0; qa < 3; qa++)
                                for (size_t bf = 0; bf < 3; bf++)
                                    for (size_t te = 0; te < 2; te++)
                                        for (size_t cl = 0; cl < 2; cl++)
                                            for (size_t fd = 0; fd < 2; fd++) {
                                                struct um_config cfg;
                                                struct um_dmarc_res res;
                                                struct um_policy_inbound in = {
                                                    (enum um_from_status)fs, NULL, clients[cl]};
                                                struct um_decision dec;
                                                enum um_action want;
                                                char name[160];

                                                cfg_defaults(&cfg);
                                                cfg.inbound.enforce = enf != 0;
                                                cfg.inbound.reject_action = rejects[ra];
                                                cfg.inbound.quarantine_action = quarantines[qa];
                                                cfg.inbound.bad_from_action = bad_froms[bf];
                                                cfg.inbound.temperror_action = temperrors[te];
                                                if (dr != RD_NONE_EVAL) {
                                                    dmarc_res(&res, row_result((enum row_dmarc)dr),
                                                              (enum um_dmarc_policy)pol, t != 0,
                                                              froms[fd], "example.org");
                                                    in.dmarc = &res;
                                                }
                                                um_policy_inbound(&cfg, &in, &dec);
                                                want = spec_inbound(&cfg, in.from, in.dmarc,
                                                                    cl == 1 || fd == 1);
                                                (void)snprintf(
                                                    name, sizeof(name),
                                                    "from=%d dmarc=%d p=%d t=%d enforce=%d ra=%zu "
                                                    "qa=%zu bf=%zu te=%zu "
                                                    "client=%zu dom=%zu",
                                                    fs, dr, pol, t, enf, ra, qa, bf, te, cl, fd);
                                                if (dec.action != want)
                                                    fail_msg("%s: got %s, want %s", name,
                                                             um_action_name(dec.action),
                                                             um_action_name(want));
                                                /* Every action carries what the funnel needs, and nothing else. */
                                                switch (dec.action) {
                                                case UM_ACTION_REJECT:
                                                    assert_string_equal(dec.code, "550");
                                                    assert_string_equal(dec.xcode, "5.7.1");
                                                    break;
                                                case UM_ACTION_TEMPFAIL:
                                                    assert_string_equal(dec.code, "451");
                                                    assert_string_equal(dec.xcode, "4.7.1");
                                                    break;
                                                case UM_ACTION_ACCEPT:
                                                case UM_ACTION_HOLD:
                                                case UM_ACTION_TAG:
                                                    assert_null(dec.code);
                                                    assert_null(dec.xcode);
                                                    break;
                                                }
                                                assert_true((dec.action == UM_ACTION_ACCEPT
                                                             || dec.action == UM_ACTION_HOLD)
                                                            == (dec.text[0] == '\0'));
                                                assert_true((dec.action == UM_ACTION_HOLD)
                                                            == (dec.quarantine != NULL));
                                                n++;
                                            }
    assert_int_equal(n, 3 * 6 * 4 * 2 * 2 * 3 * 3 * 3 * 2 * 2 * 2);
}

static void
test_ratelimit(void **state)
{
    static const struct {
        const char *name;
        bool monitor;
        enum um_rl_action action;
        enum um_action want;
        enum um_policy_reason reason;
        const char *code, *xcode, *text;
    } rows[] = {
        {"tempfail", false, UM_RL_ACTION_TEMPFAIL, UM_ACTION_TEMPFAIL, UM_POLICY_RATELIMIT, "451",
         "4.7.1",
         "Sender rate limit exceeded: at most 100 recipients per 3600 seconds, try again later"},
        {"reject", false, UM_RL_ACTION_REJECT, UM_ACTION_REJECT, UM_POLICY_RATELIMIT, "550",
         "5.7.1", "Sender rate limit exceeded: at most 100 recipients per 3600 seconds"},
        {"hold", false, UM_RL_ACTION_HOLD, UM_ACTION_HOLD, UM_POLICY_RATELIMIT, NULL, NULL,
         "unimilter: sender over its rate limit"},
        {"monitor (tempfail)", true, UM_RL_ACTION_TEMPFAIL, UM_ACTION_ACCEPT,
         UM_POLICY_RATELIMIT_MONITOR, NULL, NULL, ""},
        {"monitor (reject)", true, UM_RL_ACTION_REJECT, UM_ACTION_ACCEPT,
         UM_POLICY_RATELIMIT_MONITOR, NULL, NULL, ""},
        {"monitor (hold)", true, UM_RL_ACTION_HOLD, UM_ACTION_ACCEPT, UM_POLICY_RATELIMIT_MONITOR,
         NULL, NULL, ""},
    };
    struct um_decision dec;

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct um_config cfg;
        cfg_defaults(&cfg);
        cfg.ratelimit.monitor_only = rows[i].monitor;
        cfg.ratelimit.action = rows[i].action;
        um_policy_ratelimit(&cfg, 100, 3600, &dec);
        want_decision(rows[i].name, &dec, rows[i].want, rows[i].reason, rows[i].code, rows[i].xcode,
                      rows[i].text);
    }
    um_policy_ratelimit_unchecked(&dec);
    want_decision("store unavailable", &dec, UM_ACTION_TEMPFAIL, UM_POLICY_RATELIMIT_UNCHECKED,
                  "451", "4.3.0", "Sender rate limit cannot be checked now, try again later");
}

static void
test_sign_failed(void **state)
{
    struct um_config cfg;
    struct um_decision dec;

    (void)state;
    cfg_defaults(&cfg);
    cfg.dkim_sign.on_error = UM_ACTION_ACCEPT;
    um_policy_sign_failed(&cfg, &dec);
    want_decision("on_error accept", &dec, UM_ACTION_ACCEPT, UM_POLICY_SIGN_FAILED, NULL, NULL, "");
    cfg.dkim_sign.on_error = UM_ACTION_TEMPFAIL;
    um_policy_sign_failed(&cfg, &dec);
    want_decision("on_error tempfail", &dec, UM_ACTION_TEMPFAIL, UM_POLICY_SIGN_FAILED, "451",
                  "4.3.0", "unimilter: cannot sign this message now, try again later");
}

static void
test_session(void **state)
{
    struct um_decision dec;

    (void)state;
    um_policy_local_trouble(&dec);
    want_decision("local", &dec, UM_ACTION_TEMPFAIL, UM_POLICY_LOCAL, "451", "4.3.0",
                  "unimilter: temporary local problem, try again later");
    um_policy_draining(&dec);
    want_decision("draining", &dec, UM_ACTION_TEMPFAIL, UM_POLICY_DRAINING, "451", "4.3.2",
                  "unimilter is restarting, try again later");
}

/* The verdict line's action= and why= words are part of the log format operators search. */
static void
test_names(void **state)
{
    static const struct {
        enum um_policy_reason r;
        const char *why;
        bool local;
    } reasons[] = {
        {UM_POLICY_NONE, NULL, false},
        {UM_POLICY_NO_FROM, "no usable From", false},
        {UM_POLICY_SEVERAL_FROM, "several From", false},
        {UM_POLICY_DMARC_TEMPERROR, "dmarc temperror", false},
        {UM_POLICY_MONITOR_ONLY, "monitor only", true},
        {UM_POLICY_EXEMPT_DOMAIN, "exempt domain", true},
        {UM_POLICY_EXEMPT_CLIENT, "exempt client", true},
        {UM_POLICY_DMARC_REJECT, "dmarc p=reject", false},
        {UM_POLICY_DMARC_QUARANTINE, "dmarc p=quarantine", false},
    };

    (void)state;
    assert_string_equal(um_action_name(UM_ACTION_ACCEPT), "accept");
    assert_string_equal(um_action_name(UM_ACTION_REJECT), "reject");
    assert_string_equal(um_action_name(UM_ACTION_TEMPFAIL), "tempfail");
    assert_string_equal(um_action_name(UM_ACTION_HOLD), "hold");
    assert_string_equal(um_action_name(UM_ACTION_TAG), "tag");
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        const char *got = um_policy_reason_name(reasons[i].r);
        if ((got == NULL) != (reasons[i].why == NULL)
            || (got != NULL && strcmp(got, reasons[i].why) != 0))
            fail_msg("reason %d: got %s, want %s", (int)reasons[i].r, got ? got : "(null)",
                     reasons[i].why ? reasons[i].why : "(null)");
        assert_int_equal(um_policy_is_local_override(reasons[i].r), reasons[i].local);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inbound_rows), cmocka_unit_test(test_inbound_every_combination),
        cmocka_unit_test(test_ratelimit),    cmocka_unit_test(test_sign_failed),
        cmocka_unit_test(test_session),      cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
