/*
 * session.c - connection and message context lifecycle
 *
 * Design note: the in-flight counter that SIGTERM waits on is moved only here, by
 * msg_ctx_begin()/msg_ctx_end(), and msg_ctx_end() is idempotent, so every exit path of a
 * message (eom, abort, close, an early ACCEPT/REJECT) can call it without double counting.
 * What a message holds in one direction is that direction's business: msg_ctx_end() asks
 * inbound.c and outbound.c to end their parts and frees only the common fields.
 */
#include "session.h"
#include "inbound.h"
#include "outbound.h"

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
msg_ctx_end(struct conn_ctx *cc)
{
    struct msg_ctx *m = &cc->msg;

    if (m->active)
        atomic_fetch_sub(&cc->d->inflight, 1);
    ib_msg_end(cc);
    ob_msg_end(cc);
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
