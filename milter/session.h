/*
 * session - per-connection and per-message state of one milter connection
 *
 * DESCRIPTION  struct conn_ctx is created in mlfi_connect and freed in mlfi_close; it pins
 *              the configuration snapshot the connection started with, so a reload never
 *              changes a session in flight. struct msg_ctx is the current transaction,
 *              reset at MAIL FROM, end of message, abort and close (libmilter sends no
 *              abort after we accept or reject): the fields both directions use, plus
 *              struct ib_msg (inbound.c's) and struct ob_msg (outbound.c's), each ended
 *              by its own module.
 * THREADS      One connection's callbacks never overlap, but may run on different threads;
 *              all state lives here, reached through smfi_getpriv().
 * OWNERSHIP    Every string is a copy owned by the context.
 */
#ifndef UM_SESSION_H
#define UM_SESSION_H

#include <stdbool.h>

#include "daemon.h"
#include "mode.h"
#include "runtime.h"

#define MSG_RCPTS_KEPT 5 /* first recipients kept for a rate-limit notice */

struct msg_hdr {
    char *name, *value;
};

/* Inbound message state: filled by inbound.c, freed by ib_msg_end() (inbound.h). */
struct ib_msg {
    bool spf_done;
    struct um_spf_result spf;
    struct um_dkim_verify_session *dkv;
    bool dkv_failed;
    char **from; /* From header values (at most UM_IB_MAX_FROM kept) */
    size_t nfrom, nfrom_seen;
    unsigned char *ar_forged; /* bit i set: the (i+1)th A-R header claims our authserv-id */
    size_t ar_forged_cap;     /* bytes in ar_forged */
    size_t nar_forged;        /* bits set */
    size_t nar_seen;          /* A-R headers seen (their per-name 1-based index) */
    bool ar_lost;             /* a forged one could not be recorded: tempfail at eom */
};

/* Outbound message state: filled by outbound.c, freed by ob_msg_end() (outbound.h), which
 * also gives back the rate-limit reservations of a message that did not complete. */
struct ob_msg {
    /* rate limit */
    bool rl_on;     /* this message is counted */
    bool rl_at_eom; /* decide once at end of message (local submission, uid key) */
    bool have_key;
    struct um_senderkey key;
    struct um_rlstore_held resv; /* reservations made at RCPT, given back unless committed */
    char *rcpt_first[MSG_RCPTS_KEPT];
    size_t nrcpt_first;
    unsigned rl_refused; /* recipients refused (or that would be, in monitor mode) */
    char *received;      /* the first Received header (uid source) */

    /* signing */
    struct msg_hdr *hdr; /* headers kept until the From domain is known (eoh) */
    size_t nhdr_kept, hdr_cap, hdr_bytes;
    bool sign_off;         /* not signing this message (reason logged) */
    const char *sign_skip; /* why not, for the verdict line */
    struct um_dkim_sign_session *sign;
    char sign_domain[256];
};

struct msg_ctx {
    bool active; /* counted in d->inflight */
    enum um_mode mode;
    int rule; /* index of the matching mode rule, -1 for the default */
    char *qid;
    char *envfrom;
    char *auth_authen;
    unsigned nrcpt;
    unsigned nhdr;
    const char *hold; /* quarantine reason for the end of message (static); NULL: none */
    struct ib_msg ib;
    struct ob_msg ob;
};

struct conn_ctx {
    struct um_daemon *d;
    struct um_runtime *rt; /* pinned snapshot */
    struct um_config *cfg; /* rt->cfg, borrowed */
    char sess[17];         /* 16 hex digits */
    char client_ip[64];
    char *client_name;
    char *helo;
    char *daemon_name;
    char *daemon_port;
    unsigned nmsg;
    bool leadspc;          /* SMFIP_HDR_LEADSPC negotiated: values keep their space */
    unsigned long noreply; /* SMFIP_NR_* steps negotiated: their callbacks must answer
                              SMFIS_NOREPLY (the MTA waits for nothing) */
    struct msg_ctx msg;
};

struct conn_ctx *conn_ctx_new(struct um_daemon *d);
void conn_ctx_free(struct conn_ctx *cc);
/* Starts a message: resets the previous one and counts this one in flight. */
void msg_ctx_begin(struct conn_ctx *cc);
/* Ends the current message (if any): the inbound and outbound parts end in their own
 * modules (ib_msg_end(), ob_msg_end(): an outbound message that did not complete gives back
 * its reservations), then its strings are freed and it is uncounted. Idempotent. */
void msg_ctx_end(struct conn_ctx *cc);
/* strdup that tolerates NULL. */
char *session_strdup(const char *s);

#endif
