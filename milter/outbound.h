/*
 * outbound - the outbound mode's message path: recipient rate limit and DKIM signing
 *
 * DESCRIPTION  Called from the mlfi_* callbacks for messages whose mode is outbound.
 *              Rate limit: the sender key is derived at MAIL FROM; each RCPT reserves one
 *              recipient (SMTP), or the whole message reserves all its recipients at end of
 *              message (local submission through Postfix's non_smtpd_milters, which cannot
 *              refuse single recipients, and uid-keyed senders, whose key is in a header).
 *              Over the limit: tempfail, hold or reject as lib/policy.c decides from the
 *              configuration, a log line, and one notice per episode. Signing: headers are kept until end of headers, when the
 *              From domain picks the keys; the body streams to the signer; the signatures
 *              are inserted at end of message.
 * THREADS      Per-connection state only (struct conn_ctx); the limiter is shared and
 *              thread-safe.
 */
#ifndef UM_OUTBOUND_H
#define UM_OUTBOUND_H

#include <libmilter/mfapi.h>

#include "session.h"

sfsistat ob_envfrom(SMFICTX *ctx, struct conn_ctx *cc);
sfsistat ob_envrcpt(SMFICTX *ctx, struct conn_ctx *cc, const char *rcpt);
void ob_header(SMFICTX *ctx, struct conn_ctx *cc, const char *name, const char *value);
void ob_eoh(SMFICTX *ctx, struct conn_ctx *cc);
void ob_body(SMFICTX *ctx, struct conn_ctx *cc, const unsigned char *chunk, size_t len);
/* SMFIS_CONTINUE when the message may be accepted (headers added); anything else is the
 * final answer (the reply is already set). */
sfsistat ob_eom(SMFICTX *ctx, struct conn_ctx *cc);
/* Ends the message's outbound state: gives back the reservations it still holds (a
 * completed message gave them up in ob_eom(), so they stay counted), frees the kept
 * headers, recipients and signing session, and zeroes it. Idempotent; called by
 * msg_ctx_end(). */
void ob_msg_end(struct conn_ctx *cc);

#endif
