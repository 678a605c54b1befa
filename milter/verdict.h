/*
 * verdict - the one place a decision becomes libmilter calls, and the one verdict line
 *
 * DESCRIPTION  lib/policy.c decides; verdict_apply() carries a decision out: the SMTP reply
 *              for reject and tempfail (smfi_setreply, then the SMFIS_* code), the hold
 *              noted on the message (the MTA is asked at end of message, verdict_hold(),
 *              because smfi_quarantine() is refused before it), the X-Unimilter-Quarantine
 *              header for tag. verdict_tempfail() is the funnel for our own failures: one
 *              tempfail log line, then 451 4.3.0. Every message's verdict line starts with
 *              verdict_line_open() and ends with verdict_line_close(), whatever the mode.
 * THREADS      Per-connection state only.
 */
#ifndef UM_VERDICT_H
#define UM_VERDICT_H

#include <libmilter/mfapi.h>

#include "log.h"
#include "policy.h"
#include "session.h"

/* SMFIS_REJECT or SMFIS_TEMPFAIL with the reply set, else SMFIS_CONTINUE. cc may be NULL
 * for replies (a callback without a connection context). */
sfsistat verdict_apply(SMFICTX *ctx, struct conn_ctx *cc, const struct um_decision *dec);

/* End of message: asks the MTA to hold the message if a decision said so; `subsys` names
 * the log line when the MTA refuses. */
void verdict_hold(SMFICTX *ctx, struct conn_ctx *cc, const char *subsys);

/* Our own failure at `stage`: logs event=tempfail (with qid= when qid is not NULL) and
 * answers 451 4.3.0. cc may be NULL. */
sfsistat verdict_tempfail(SMFICTX *ctx, struct conn_ctx *cc, const char *qid, const char *stage,
                          const char *why);

/* The verdict line's head: qid (once known), ip, mode, the mode rule (not inbound, whose
 * rule is the default or one that chose it), envelope sender and recipients (not skip). */
void verdict_line_open(struct um_logline *l, const struct conn_ctx *cc);
/* Its tail: action= and, when given, why=; then the line is emitted at info. */
void verdict_line_close(struct um_logline *l, const struct conn_ctx *cc, enum um_action action,
                        const char *why);

#endif
