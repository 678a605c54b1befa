/*
 * notify.c - tell an operator that a sender went over its rate limit
 *
 * Design note: the limiter says "notify" once per episode, so this runs rarely. It must
 * never stall a milter thread: the command is started with posix_spawn and not waited for
 * (the main loop reaps children), and the notice mailed through sendmail is small enough to
 * fit a pipe buffer, so writing it cannot block. Details reach the command through its
 * environment, never through a shell, so sender addresses cannot inject commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outbound.h"

extern char **environ;

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
    char *envp[] = {e_sender, e_count, e_limit, e_window, e_ip, e_rcpts, e_refused,
                    (char *)(uintptr_t) "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
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
    rc = posix_spawn(&pid, cmd, NULL, NULL, argv, envp);
    if (rc != 0) {
        char eb[128];
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "cannot run %s: %s", cmd,
                   um_strerror(rc, eb, sizeof(eb)));
    }
}

static void
notify_mail(struct um_daemon *d, const char *sendmail, const char *to,
            const struct um_rl_notice *n)
{
    char msg[3072], rcpts[1500], esc[1050], eb[128];
    char *argv[] = {(char *)(uintptr_t)sendmail, (char *)(uintptr_t) "-i",
                    (char *)(uintptr_t) "--", (char *)(uintptr_t)to, NULL};
    posix_spawn_file_actions_t fa;
    int p[2], len;
    pid_t pid;

    um_log_escape(esc, sizeof(esc), n->key, strlen(n->key));
    notify_rcpts(rcpts, sizeof(rcpts), n);
    len = snprintf(msg, sizeof(msg),
                   "To: %s\nSubject: unimilter: sender over its rate limit: %.200s\n"
                   "Auto-Submitted: auto-generated\n\n"
                   "Sender:      %s\nRecipients:  %u in the last %u seconds (limit %u)\n"
                   "Client IP:   %s\nFirst recipients of the message: %s\nSession:     %s\n\n"
                   "Further refusals for this sender are not reported until it has been\n"
                   "quiet for a whole window. See `unimilter stats`; `unimilter reset "
                   "SENDER` clears its count.\n",
                   to, esc, esc, n->count, n->window, n->limit, n->client_ip, rcpts, n->sess);
    if (len < 0 || (size_t)len >= sizeof(msg))
        len = (int)strlen(msg);
    if (pipe(p) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "pipe: %s", um_strerror(errno, eb, sizeof(eb)));
        return;
    }
    (void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0], STDIN_FILENO);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    if (posix_spawn(&pid, sendmail, &fa, NULL, argv, environ) != 0) {
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "cannot run %s", sendmail);
    } else if (write(p[1], msg, (size_t)len) != len) {
        um_log_msg(&d->log, UM_LOG_ERR, "notify", "short write to %s", sendmail);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(p[0]);
    close(p[1]);
}

void
um_notify_ratelimit(struct um_daemon *d, const struct um_config *cfg, const struct um_rl_notice *n)
{
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
        notify_mail(d, cfg->ratelimit.sendmail_path, cfg->ratelimit.notify_mail_to, n);
}
