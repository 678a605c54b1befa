/*
 * verdict.c - decisions to libmilter calls
 *
 * Design note: as Postfix's milter8 has one error path, every reply we set goes through
 * verdict_apply(), so a reply code, its enhanced code and its text always travel together
 * (they are chosen together in lib/policy.c). A hold is remembered as the static reason
 * string and applied once at end of message; reject and tempfail need nothing remembered.
 */
#include "verdict.h"

#include <stdio.h>

sfsistat
verdict_apply(SMFICTX *ctx, struct conn_ctx *cc, const struct um_decision *dec)
{
    switch (dec->action) {
    case UM_ACTION_REJECT:
        (void)smfi_setreply(ctx, MSTR(dec->code), MSTR(dec->xcode), MSTR(dec->text));
        return SMFIS_REJECT;
    case UM_ACTION_TEMPFAIL:
        (void)smfi_setreply(ctx, MSTR(dec->code), MSTR(dec->xcode), MSTR(dec->text));
        return SMFIS_TEMPFAIL;
    case UM_ACTION_HOLD:
        if (cc != NULL)
            cc->msg.hold = dec->quarantine;
        return SMFIS_CONTINUE;
    case UM_ACTION_TAG:
        if (cc != NULL) {
            char v[UM_POLICY_TEXT_MAX + 1];
            (void)snprintf(v, sizeof(v), "%s%s", cc->leadspc ? " " : "", dec->text);
            (void)smfi_insheader(ctx, 0, MSTR("X-Unimilter-Quarantine"), v);
        }
        return SMFIS_CONTINUE;
    case UM_ACTION_ACCEPT:
        break;
    }
    return SMFIS_CONTINUE;
}

void
verdict_hold(SMFICTX *ctx, struct conn_ctx *cc, const char *subsys)
{
    if (cc->msg.hold != NULL && smfi_quarantine(ctx, MSTR(cc->msg.hold)) != MI_SUCCESS)
        um_log_msg(&cc->d->log, UM_LOG_ERR, subsys, "the MTA refused to hold the message");
}

sfsistat
verdict_tempfail(SMFICTX *ctx, struct conn_ctx *cc, const char *qid, const char *stage,
                 const char *why)
{
    struct um_daemon *d = cc != NULL ? cc->d : um_daemon_get();
    struct um_decision dec;
    struct um_logline l;

    um_logline_init(&l, cc != NULL ? cc->sess : NULL, "tempfail");
    if (qid != NULL)
        um_logline_str(&l, "qid", qid);
    um_logline_str(&l, "stage", stage);
    um_logline_str(&l, "reason", why);
    um_log_emit(&d->log, UM_LOG_ERR, &l);
    um_policy_local_trouble(&dec);
    return verdict_apply(ctx, cc, &dec);
}

void
verdict_line_open(struct um_logline *l, const struct conn_ctx *cc)
{
    const struct msg_ctx *m = &cc->msg;

    um_logline_init(l, cc->sess, "verdict");
    if (m->qid != NULL)
        um_logline_str(l, "qid", m->qid);
    um_logline_str(l, "ip", cc->client_ip);
    um_logline_str(l, "mode", um_mode_name(m->mode));
    if (m->mode != UM_MODE_INBOUND)
        um_logline_int(l, "rule", m->rule);
    if (m->mode != UM_MODE_SKIP) {
        um_logline_str(l, "from", m->envfrom);
        um_logline_int(l, "rcpts", m->nrcpt);
    }
}

void
verdict_line_close(struct um_logline *l, const struct conn_ctx *cc, enum um_action action,
                   const char *why)
{
    um_logline_str(l, "action", um_action_name(action));
    if (why != NULL)
        um_logline_str(l, "why", why);
    um_log_emit(&cc->d->log, UM_LOG_INFO, l);
}
