/*
 * notify.c - tell an operator that a sender went over its rate limit
 *
 * Design note: the limiter says "notify" once per episode, so this runs rarely. It must
 * never stall a milter thread: the command is started with posix_spawn and not waited for
 * (the main loop reaps exactly the children started here, so the submit queue's own
 * sendmail children are left to it), and the mailed notice is only copied into the submit
 * queue (lib/submitq.h), whose thread sends it over SMTP or through sendmail and retries.
 * Details reach the command through its environment, never through a shell, so sender
 * addresses cannot inject commands.
 */
#include "notify.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
notify_rcpts(char *buf, size_t len, const struct um_rl_notice *n)
{
    buf[0] = '\0';
    for (size_t i = 0; i < n->nrcpts; i++) {
        char esc[300];
        um_log_escape(esc, sizeof(esc), n->rcpts[i], strlen(n->rcpts[i]));
        if (i > 0)
            strncat(buf, " ", len - strlen(buf) - 1);
        strncat(buf, esc, len - strlen(buf) - 1);
    }
}

static void
notify_command(struct um_daemon *d, const char *cmd, const struct um_rl_notice *n)
{
    char e_sender[1100], e_count[40], e_limit[40], e_window[40], e_ip[90], e_rcpts[1600],
        e_refused[40], rcpts[1500], esc[1050];
    char *envp[] = {
        e_sender, e_count, e_limit,   e_window,
        e_ip,     e_rcpts, e_refused, (char *)(uintptr_t) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        NULL};
    char *argv[] = {(char *)(uintptr_t)cmd, NULL};
    pid_t pid;
    int rc;

    um_log_escape(esc, sizeof(esc), n->key, strlen(n->key));
    notify_rcpts(rcpts, sizeof(rcpts), n);
    (void)snprintf(e_sender, sizeof(e_sender), "UM_SENDER=%s", esc);
    (void)snprintf(e_count, sizeof(e_count), "UM_COUNT=%u", n->count);
    (void)snprintf(e_limit, sizeof(e_limit), "UM_LIMIT=%u", n->limit);
    (void)snprintf(e_window, sizeof(e_window), "UM_WINDOW=%u", n->window);
    (void)snprintf(e_ip, sizeof(e_ip), "UM_CLIENT_IP=%s", n->client_ip);
    (void)snprintf(e_rcpts, sizeof(e_rcpts), "UM_RCPTS=%s", rcpts);
    (void)snprintf(e_refused, sizeof(e_refused), "UM_REFUSED=%u", n->refused);
    pthread_mutex_lock(&d->child_lock);
    if (d->nchildren >= UM_MAX_CHILDREN) {
        pthread_mutex_unlock(&d->child_lock);
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "not running %s: %d earlier runs still going",
                   cmd, UM_MAX_CHILDREN);
        return;
    }
    rc = posix_spawn(&pid, cmd, NULL, NULL, argv, envp);
    if (rc == 0)
        d->children[d->nchildren++] = pid;
    pthread_mutex_unlock(&d->child_lock);
    if (rc != 0) {
        char eb[128];
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "cannot run %s: %s", cmd,
                   um_strerror(rc, eb, sizeof(eb)));
    }
}

/* Notices are mailed through the daemon's submit queue: a milter thread only copies. */
static void
notify_mail(struct um_daemon *d, struct um_runtime *rt, const char *to,
            const struct um_rl_notice *n)
{
    const struct um_config *cfg = rt->cfg;
    char msg[3600], rcpts[1500], esc[1050], date[64], from[300];
    const char *rcptv[1] = {to};
    time_t now = time(NULL);
    struct tm tm;
    int len;

    if (d->submitq == NULL)
        return;
    (void)gmtime_r(&now, &tm);
    (void)strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (cfg->submit.from != NULL)
        (void)snprintf(from, sizeof(from), "<%s>", cfg->submit.from);
    else
        (void)snprintf(from, sizeof(from), "<MAILER-DAEMON@%s>", cfg->authserv_id);
    um_log_escape(esc, sizeof(esc), n->key, strlen(n->key));
    notify_rcpts(rcpts, sizeof(rcpts), n);
    len = snprintf(msg, sizeof(msg),
                   "From: unimilter %s\r\nTo: <%s>\r\nDate: %s\r\n"
                   "Message-ID: <ratelimit.%s.%lld@%s>\r\n"
                   "Subject: unimilter: sender over its rate limit: %.200s\r\n"
                   "Auto-Submitted: auto-generated\r\n\r\n"
                   "Sender:      %s\r\nRecipients:  %u in the last %u seconds (limit %u)\r\n"
                   "Client IP:   %s\r\nFirst recipients of the message: %s\r\n"
                   "Session:     %s\r\n\r\n"
                   "Further refusals for this sender are not reported until it has been\r\n"
                   "quiet for a whole window. See `unimilter stats`; `unimilter reset "
                   "SENDER` clears its count.\r\n",
                   from, to, date, n->sess, (long long)now, cfg->authserv_id, esc, esc, n->count,
                   n->window, n->limit, n->client_ip, rcpts, n->sess);
    if (len < 0 || (size_t)len >= sizeof(msg))
        len = (int)strlen(msg);
    /* The queued notice pins this runtime: its submit settings and password stay valid. */
    um_submitq_add(d->submitq, &rt->submit, um_runtime_ref(rt), "ratelimit-notice",
                   cfg->submit.from, rcptv, 1, msg, (size_t)len);
}

void
um_notify_release(void *owner)
{
    um_runtime_unref(owner);
}

void
um_notify_reap(struct um_daemon *d)
{
    pthread_mutex_lock(&d->child_lock);
    for (size_t i = 0; i < d->nchildren;) {
        if (waitpid(d->children[i], NULL, WNOHANG) != 0)
            d->children[i] = d->children[--d->nchildren];
        else
            i++;
    }
    pthread_mutex_unlock(&d->child_lock);
}

void
um_notify_ratelimit(struct um_daemon *d, struct um_runtime *rt, const struct um_rl_notice *n)
{
    const struct um_config *cfg = rt->cfg;
    struct um_logline l;

    um_logline_init(&l, n->sess, "ratelimit-notice");
    um_logline_str(&l, "sender", n->key);
    um_logline_int(&l, "rcpts", n->count);
    um_logline_int(&l, "limit", n->limit);
    um_logline_int(&l, "window", n->window);
    um_logline_str(&l, "ip", n->client_ip);
    um_logline_str(&l, "command", cfg->ratelimit.notify_command);
    um_logline_str(&l, "mail_to", cfg->ratelimit.notify_mail_to);
    um_log_emit(&d->log, UM_LOG_WARNING, &l);
    if (cfg->ratelimit.notify_command != NULL)
        notify_command(d, cfg->ratelimit.notify_command, n);
    if (cfg->ratelimit.notify_mail_to != NULL)
        notify_mail(d, rt, cfg->ratelimit.notify_mail_to, n);
}
