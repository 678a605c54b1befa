/*
 * session - per-connection and per-message state of one milter connection
 *
 * DESCRIPTION  struct conn_ctx is created in mlfi_connect and freed in mlfi_close; it pins
 *              the configuration snapshot the connection started with, so a reload never
 *              changes a session in flight. struct msg_ctx is the current transaction,
 *              reset at MAIL FROM, end of message, abort and close (libmilter sends no
 *              abort after we accept or reject).
 * THREADS      One connection's callbacks never overlap, but may run on different threads;
 *              all state lives here, reached through smfi_getpriv().
 * OWNERSHIP    Every string is a copy owned by the context.
 */
#ifndef UM_SESSION_H
#define UM_SESSION_H

#include <stdbool.h>

#include "daemon.h"
#include "mode.h"

struct msg_ctx {
    bool active;         /* counted in d->inflight */
    enum um_mode mode;
    int rule;            /* index of the matching mode rule, -1 for the default */
    char *qid;
    char *envfrom;
    char *auth_authen;
    unsigned nrcpt;
    unsigned nhdr;
};

struct conn_ctx {
    struct um_daemon *d;
    struct um_config *cfg; /* pinned snapshot */
    char sess[17];         /* 16 hex digits */
    char client_ip[64];
    char *client_name;
    char *helo;
    char *daemon_name;
    char *daemon_port;
    unsigned nmsg;
    bool leadspc;          /* SMFIP_HDR_LEADSPC negotiated: values keep their space */
    struct msg_ctx msg;
};

struct conn_ctx *conn_ctx_new(struct um_daemon *d);
void conn_ctx_free(struct conn_ctx *cc);
/* Starts a message: resets the previous one and counts this one in flight. */
void msg_ctx_begin(struct conn_ctx *cc);
/* Ends the current message (if any): frees its strings, uncounts it. Idempotent. */
void msg_ctx_end(struct conn_ctx *cc);
/* strdup that tolerates NULL. */
char *session_strdup(const char *s);

#endif
