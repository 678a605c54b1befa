/*
 * session.c - connection and message context lifecycle
 *
 * Design note: the in-flight counter that SIGTERM waits on is moved only here, by
 * msg_ctx_begin()/msg_ctx_end(), and msg_ctx_end() is idempotent, so every exit path of a
 * message (eom, abort, close, an early ACCEPT/REJECT) can call it without double counting.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

char *
session_strdup(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

struct conn_ctx *
conn_ctx_new(struct um_daemon *d)
{
    struct conn_ctx *cc = calloc(1, sizeof(*cc));
    unsigned char rnd[8];

    if (cc == NULL)
        return NULL;
    cc->d = d;
    cc->rt = um_daemon_runtime(d);
    cc->cfg = cc->rt->cfg;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* Not security-relevant: the id only ties log lines together. */
        unsigned long long t = (unsigned long long)time(NULL) ^ (unsigned long long)(size_t)cc;
        memcpy(rnd, &t, sizeof(rnd));
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        (void)snprintf(cc->sess + 2 * i, 3, "%02x", rnd[i]);
    cc->msg.rule = -1;
    atomic_fetch_add(&d->connections, 1);
    return cc;
}

void
msg_ctx_commit(struct conn_ctx *cc)
{
    um_rlstore_held_clear(&cc->msg.resv);
}

void
msg_ctx_end(struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;

    if (m->active)
        atomic_fetch_sub(&cc->d->inflight, 1);
    /* RFC 5321 transaction not completed: its recipients no longer count. */
    for (size_t i = 0; i < m->resv.n; i++) {
        unsigned released = 0;
        struct um_error err = {0};
        struct um_str key = {m->key.key, m->key.len};

        if (um_rlstore_release(cc->d->rlstore, key, &m->resv.v[i], &released, &err) != UM_OK)
            um_log_msg(&cc->d->log, UM_LOG_ERR, "ratelimit", "release failed: %s", err.msg);
    }
    um_rlstore_held_clear(&m->resv);
    for (size_t i = 0; i < m->nrcpt_first; i++)
        free(m->rcpt_first[i]);
    free(m->received);
    for (size_t i = 0; i < m->nhdr_kept; i++) {
        free(m->hdr[i].name);
        free(m->hdr[i].value);
    }
    free(m->hdr);
    um_dkim_sign_session_free(m->sign);
    if (m->spf_done)
        um_spf_result_fini(&m->spf);
    um_dkim_verify_session_free(m->dkv);
    for (size_t i = 0; i < m->nfrom; i++)
        free(m->from[i]);
    free(m->from);
    free(m->ar_forged);
    free(m->qid);
    free(m->envfrom);
    free(m->auth_authen);
    memset(m, 0, sizeof(*m));
    m->rule = -1;
}

void
msg_ctx_begin(struct conn_ctx *cc)
{
    msg_ctx_end(cc);
    cc->msg.active = true;
    cc->nmsg++;
    atomic_fetch_add(&cc->d->inflight, 1);
}

void
conn_ctx_free(struct conn_ctx *cc)
{
    if (cc == NULL)
        return;
    msg_ctx_end(cc);
    free(cc->client_name);
    free(cc->helo);
    free(cc->daemon_name);
    free(cc->daemon_port);
    um_runtime_unref(cc->rt);
    atomic_fetch_sub(&cc->d->connections, 1);
    free(cc);
}
