/*
 * inbound - the inbound mode's message path: SPF, DKIM verification, DMARC, one
 * Authentication-Results header, forged A-R removal and DMARC enforcement
 *
 * DESCRIPTION  Called from the mlfi_* callbacks for messages whose mode is inbound.
 *              ib_eom() adds the headers, has lib/policy.c decide (accept, reject 550
 *              5.7.1, hold, tag, tempfail), carries that out through milter/verdict.c and
 *              writes the message's one verdict log line.
 * THREADS      Per-connection state only; the checkers in the runtime are shared and
 *              thread-safe.
 */
#ifndef UM_INBOUND_H
#define UM_INBOUND_H

#include <libmilter/mfapi.h>

#include "session.h"

sfsistat ib_envfrom(SMFICTX *ctx, struct conn_ctx *cc);
void ib_header(SMFICTX *ctx, struct conn_ctx *cc, const char *name, const char *value);
void ib_eoh(SMFICTX *ctx, struct conn_ctx *cc);
void ib_body(SMFICTX *ctx, struct conn_ctx *cc, const unsigned char *chunk, size_t len);
/* The final answer: SMFIS_CONTINUE means accept (headers already added). */
sfsistat ib_eom(SMFICTX *ctx, struct conn_ctx *cc);
/* Frees the message's inbound state (SPF result, DKIM session, From values, forged A-R
 * positions) and zeroes it. Idempotent; called by msg_ctx_end(). */
void ib_msg_end(struct conn_ctx *cc);

#endif
