/*
 * callbacks.c - the libmilter callbacks: copy what libmilter hands us, decide, reply
 *
 * Design note: each callback is thin. It copies macro values and arguments into the
 * connection context (libmilter's strings die with the callback), asks lib/ for decisions
 * and turns them into SMFIS_* codes. The mode is decided per message at MAIL FROM, the
 * first point where {auth_authen} is known; connect-time macros are kept from connect.
 * Macros are requested with smfi_setsymlist so operators need not touch the MTA's macro
 * lists ({daemon_port} is in neither MTA's default list).
 *
 * Round trips: every reply the MTA waits for is a wakeup on both sides, and on a busy host
 * wakeups cost more than our work. HELO, each header, end of headers and each body chunk
 * can never end in anything but "continue" here (every verdict is made at MAIL, RCPT or
 * end of message), so we negotiate SMFIP_NR_HELO/HDR/EOH/BODY: the MTA streams them
 * without waiting and those callbacks answer SMFIS_NOREPLY (libmilter fakes a "continue"
 * for an MTA that lacks the feature). DATA and unknown commands are not sent at all
 * (SMFIP_NODATA, SMFIP_NOUNKNOWN) when the MTA can skip them. Connect keeps its reply:
 * a draining daemon turns new connections away there.
 */
#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/socket.h>

#include "callbacks.h"
#include "daemon.h"
#include "inbound.h"
#include "listen.h"
#include "outbound.h"
#include "session.h"
#include "verdict.h"

#define CONN(ctx) ((struct conn_ctx *)smfi_getpriv(ctx))

/* Steps whose replies we decline (see the note at the top). */
#define CB_NOREPLY (SMFIP_NR_HELO | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

/* "Continue" for a step: no reply at all when the MTA agreed to expect none. */
static sfsistat
cb_continue(const struct conn_ctx *cc, unsigned long step)
{
    return cc != NULL && (cc->noreply & step) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static const char *
cb_macro(SMFICTX *ctx, const char *name)
{
    return smfi_getsymval(ctx, MSTR(name));
}

/* Our own failures, through verdict.c's funnel (log once, 451 4.3.0); the message ends. */
static sfsistat
cb_tempfail(SMFICTX *ctx, struct conn_ctx *cc, const char *stage, const char *why)
{
    sfsistat rc = verdict_tempfail(ctx, cc, NULL, stage, why);

    if (cc != NULL)
        msg_ctx_end(cc);
    return rc;
}

static sfsistat
mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
               unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    unsigned long want = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;

    (void)f2;
    (void)f3;
    *pf0 = f0 & want;
    /* Headers with their leading space, exactly as received (DKIM simple canonicalization);
     * no replies where we never say anything but "continue"; no DATA or unknown commands. */
    *pf1 = f1 & (SMFIP_HDR_LEADSPC | CB_NOREPLY | SMFIP_NODATA | SMFIP_NOUNKNOWN);
    *pf2 = 0;
    *pf3 = 0;
    /* The context is born here so it can remember what was negotiated. */
    if (CONN(ctx) == NULL) {
        struct conn_ctx *cc = conn_ctx_new(um_daemon_get());
        if (cc == NULL || smfi_setpriv(ctx, cc) != MI_SUCCESS) {
            conn_ctx_free(cc);
            return SMFIS_REJECT; /* libmilter ends the connection; the MTA applies its default */
        }
    }
    CONN(ctx)->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
    CONN(ctx)->noreply = *pf1 & CB_NOREPLY;
    if ((f0 & SMFIF_SETSYMLIST) != 0) {
        (void)smfi_setsymlist(ctx, SMFIM_CONNECT,
                              MSTR("j _ {daemon_name} {daemon_port} {daemon_addr} {client_addr}"));
        (void)smfi_setsymlist(ctx, SMFIM_ENVFROM,
                              MSTR("i {auth_type} {auth_authen} {auth_author} {mail_addr}"));
        (void)smfi_setsymlist(ctx, SMFIM_ENVRCPT, MSTR("i {rcpt_addr}"));
        (void)smfi_setsymlist(ctx, SMFIM_EOH, MSTR("i"));
        (void)smfi_setsymlist(ctx, SMFIM_EOM, MSTR("i"));
    }
    return SMFIS_CONTINUE;
}

static void
cb_warn_missing_macros(struct conn_ctx *cc)
{
    struct um_daemon *d = cc->d;

    if (cc->daemon_name == NULL && um_mode_rules_use_name(&cc->cfg->mode)
        && !atomic_exchange(&d->warned_name, true)) {
        um_log_msg(&d->log, UM_LOG_WARNING, "config",
                   "the MTA sent no {daemon_name} macro, so mode rules on daemon_name cannot "
                   "match (%s:%d); Postfix: set milter_connect_macros to include {daemon_name} "
                   "and milter_macro_daemon_name (e.g. -o milter_macro_daemon_name=ORIGINATING "
                   "on the submission service); Sendmail: keep {daemon_name} in "
                   "confMILTER_MACROS_CONNECT and Name= in DAEMON_OPTIONS",
                   cc->cfg->path, cc->cfg->mode.rule[0].line);
    }
    if (cc->daemon_port == NULL && um_mode_rules_use_port(&cc->cfg->mode)
        && !atomic_exchange(&d->warned_port, true)) {
        um_log_msg(&d->log, UM_LOG_WARNING, "config",
                   "the MTA sent no {daemon_port} macro, so mode rules on daemon_port cannot "
                   "match (%s); Postfix (3.2 or later): add {daemon_port} to "
                   "milter_connect_macros; Sendmail: define(`confMILTER_MACROS_CONNECT', "
                   "confMILTER_MACROS_CONNECT`, {daemon_port}')",
                   cc->cfg->path);
    }
}

static sfsistat
mlfi_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct um_daemon *d = um_daemon_get();
    struct conn_ctx *cc;

    if (atomic_load(&d->draining))
        return SMFIS_TEMPFAIL; /* shutting down: the MTA retries or defers, nothing is lost */
    /* Descriptors short (listen.c): answer at once, keep the reserve for sessions in flight. */
    if (um_listen_short())
        return SMFIS_TEMPFAIL;
    cc = CONN(ctx);
    if (cc == NULL) { /* an MTA that did not negotiate (protocol version 1) */
        cc = conn_ctx_new(d);
        if (cc == NULL)
            return cb_tempfail(ctx, NULL, "connect", "out of memory");
        if (smfi_setpriv(ctx, cc) != MI_SUCCESS) {
            conn_ctx_free(cc);
            return cb_tempfail(ctx, NULL, "connect", "smfi_setpriv failed");
        }
    }
    if (hostaddr != NULL && hostaddr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)hostaddr;
        (void)inet_ntop(AF_INET, &sin->sin_addr, cc->client_ip, sizeof(cc->client_ip));
    } else if (hostaddr != NULL && hostaddr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)hostaddr;
        (void)inet_ntop(AF_INET6, &sin6->sin6_addr, cc->client_ip, sizeof(cc->client_ip));
    } else {
        (void)snprintf(cc->client_ip, sizeof(cc->client_ip), "unknown");
    }
    cc->client_name = session_strdup(hostname);
    cc->daemon_name = session_strdup(cb_macro(ctx, "{daemon_name}"));
    cc->daemon_port = session_strdup(cb_macro(ctx, "{daemon_port}"));
    cb_warn_missing_macros(cc);
    if (um_logger_wants(&d->log, UM_LOG_DEBUG)) {
        struct um_logline l;
        um_logline_init(&l, cc->sess, "connect");
        um_logline_str(&l, "ip", cc->client_ip);
        um_logline_str(&l, "host", cc->client_name);
        um_logline_str(&l, "daemon_name", cc->daemon_name);
        um_logline_str(&l, "daemon_port", cc->daemon_port);
        um_log_emit(&d->log, UM_LOG_DEBUG, &l);
    }
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_helo(SMFICTX *ctx, char *helohost)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc == NULL)
        return SMFIS_CONTINUE;
    free(cc->helo);
    cc->helo = session_strdup(helohost);
    return cb_continue(cc, SMFIP_NR_HELO);
}

static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
    struct conn_ctx *cc = CONN(ctx);
    struct um_mode_input in;
    struct um_daemon *d;

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "envfrom", "no connection context");
    d = cc->d;
    if (atomic_load(&d->draining)) {
        struct um_decision dec;
        msg_ctx_end(cc);
        um_policy_draining(&dec);
        return verdict_apply(ctx, cc, &dec);
    }
    msg_ctx_begin(cc);
    cc->msg.envfrom = session_strdup(argv != NULL ? argv[0] : NULL);
    cc->msg.auth_authen = session_strdup(cb_macro(ctx, "{auth_authen}"));
    in.daemon_name = cc->daemon_name;
    in.daemon_port = cc->daemon_port;
    in.auth_authen = cc->msg.auth_authen;
    cc->msg.mode = um_mode_decide(&cc->cfg->mode, &in, &cc->msg.rule);
    if (cc->msg.mode == UM_MODE_SKIP) {
        struct um_logline l;
        verdict_line_open(&l, cc);
        verdict_line_close(&l, cc, UM_ACTION_ACCEPT, NULL);
        msg_ctx_end(cc);
        return SMFIS_ACCEPT;
    }
    if (cc->msg.mode == UM_MODE_OUTBOUND)
        return ob_envfrom(ctx, cc);
    return ib_envfrom(ctx, cc);
}

static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "envrcpt", "no connection context");
    if (cc->msg.mode == UM_MODE_OUTBOUND) {
        sfsistat rc = ob_envrcpt(ctx, cc, argv != NULL ? argv[0] : NULL);
        if (rc != SMFIS_CONTINUE)
            return rc; /* this recipient only; the transaction goes on */
    }
    cc->msg.nrcpt++;
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "header", "no connection context");
    cc->msg.nhdr++;
    if (cc->msg.mode == UM_MODE_OUTBOUND)
        ob_header(ctx, cc, name, value);
    else
        ib_header(ctx, cc, name, value);
    return cb_continue(cc, SMFIP_NR_HDR);
}

static sfsistat
mlfi_eoh(SMFICTX *ctx)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "eoh", "no connection context");
    if (cc->msg.mode == UM_MODE_OUTBOUND)
        ob_eoh(ctx, cc);
    else
        ib_eoh(ctx, cc);
    return cb_continue(cc, SMFIP_NR_EOH);
}

static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "body", "no connection context");
    if (cc->msg.mode == UM_MODE_OUTBOUND)
        ob_body(ctx, cc, chunk, len);
    else
        ib_body(ctx, cc, chunk, len);
    return cb_continue(cc, SMFIP_NR_BODY);
}

static sfsistat
mlfi_eom(SMFICTX *ctx)
{
    struct conn_ctx *cc = CONN(ctx);
    struct um_logline l;
    const char *qid;

    if (cc == NULL)
        return cb_tempfail(ctx, NULL, "eom", "no connection context");
    qid = cb_macro(ctx, "i");
    free(cc->msg.qid);
    cc->msg.qid = session_strdup(qid);
    if (cc->msg.mode == UM_MODE_OUTBOUND) {
        sfsistat rc = ob_eom(ctx, cc);
        if (rc != SMFIS_CONTINUE) {
            msg_ctx_end(cc);
            return rc;
        }
    }
    if (cc->msg.mode == UM_MODE_INBOUND) {
        /* ib_eom adds the headers, decides, and writes the message's verdict line. */
        sfsistat rc = ib_eom(ctx, cc);
        if (rc == SMFIS_CONTINUE && cc->cfg->trace_header)
            (void)smfi_insheader(ctx, 0, MSTR("X-Unimilter-Mode"),
                                 MSTR(cc->leadspc ? " inbound" : "inbound"));
        msg_ctx_end(cc);
        return rc == SMFIS_CONTINUE ? SMFIS_ACCEPT : rc;
    }
    if (cc->cfg->trace_header) {
        char val[32];
        (void)snprintf(val, sizeof(val), "%s%s", cc->leadspc ? " " : "",
                       um_mode_name(cc->msg.mode));
        if (smfi_insheader(ctx, 0, MSTR("X-Unimilter-Mode"), val) != MI_SUCCESS)
            return cb_tempfail(ctx, cc, "eom", "cannot add X-Unimilter-Mode header");
    }
    verdict_line_open(&l, cc);
    if (cc->msg.mode == UM_MODE_OUTBOUND) {
        if (cc->msg.ob.have_key)
            um_logline_mem(&l, "rl.sender", cc->msg.ob.key.key, cc->msg.ob.key.len);
        if (cc->msg.ob.rl_refused > 0)
            um_logline_int(&l, "rl.over", cc->msg.ob.rl_refused);
        if (cc->msg.ob.sign != NULL && !cc->msg.ob.sign_off) {
            um_logline_str(&l, "dkim.d", cc->msg.ob.sign_domain);
            um_logline_int(&l, "dkim.sigs", (long long)um_dkim_sign_count(cc->msg.ob.sign));
        } else {
            um_logline_str(&l, "dkim.sign",
                           cc->msg.ob.sign_skip != NULL ? cc->msg.ob.sign_skip : "none");
        }
    }
    verdict_line_close(&l, cc, cc->msg.hold != NULL ? UM_ACTION_HOLD : UM_ACTION_ACCEPT, NULL);
    msg_ctx_end(cc);
    return SMFIS_ACCEPT;
}

static sfsistat
mlfi_abort(SMFICTX *ctx)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc != NULL)
        msg_ctx_end(cc);
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_close(SMFICTX *ctx)
{
    struct conn_ctx *cc = CONN(ctx);

    if (cc != NULL) {
        conn_ctx_free(cc);
        (void)smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

static const struct smfiDesc cb_desc = {
    .xxfi_name = MSTR("unimilter"),
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
    .xxfi_connect = mlfi_connect,
    .xxfi_helo = mlfi_helo,
    .xxfi_envfrom = mlfi_envfrom,
    .xxfi_envrcpt = mlfi_envrcpt,
    .xxfi_header = mlfi_header,
    .xxfi_eoh = mlfi_eoh,
    .xxfi_body = mlfi_body,
    .xxfi_eom = mlfi_eom,
    .xxfi_abort = mlfi_abort,
    .xxfi_close = mlfi_close,
    .xxfi_unknown = NULL,
    .xxfi_data = NULL,
    .xxfi_negotiate = mlfi_negotiate,
};

const struct smfiDesc *
um_callbacks_desc(void)
{
    return &cb_desc;
}
