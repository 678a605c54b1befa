/*
 * submit.c - one submission attempt over SMTP (libcurl) or through a sendmail binary
 *
 * Design note. The daemon's own mail (rate-limit notices) and `unimilter report` used to go
 * only through /usr/sbin/sendmail, which under the shipped unit cannot work: Postfix's
 * sendmail hands the file to the setgid postdrop, and NoNewPrivileges=yes drops the setgid.
 * SMTP to a relay needs no privileges, only AF_INET, which the unit allows anyway. libcurl
 * speaks SMTP with STARTTLS and SASL, is in Debian and well kept, and does the dot-stuffing
 * and the final "." itself, so this file only maps settings to options and results to
 * "sent / try again / give up". One connection per message: these mails are rare (one per
 * rate-limit episode, a few reports a day), so there is no connection cache to keep
 * correct. Work per call is bounded by the timeout (CURLOPT_TIMEOUT covers connect, TLS and
 * the whole dialogue).
 *
 * sendmail gets the message over a socketpair written with MSG_NOSIGNAL, so a child that
 * exits early cannot kill us with SIGPIPE, and no signal disposition is touched. Its exit
 * status follows sysexits: 75 (EX_TEMPFAIL) is temporary, any other failure permanent.
 */
#define _DEFAULT_SOURCE /* explicit_bzero() is glibc/BSD, not POSIX */
#include "submit.h"
#include "fileperm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#define SUBMIT_MAX_RCPTS 64

bool
um_submit_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

void
um_submit_relay_shown(const char *relay, char *buf, size_t len)
{
    const char *auth = relay != NULL ? strstr(relay, "://") : NULL;
    const char *at, *slash;

    if (relay == NULL) {
        (void)snprintf(buf, len, "(none)");
        return;
    }
    if (auth == NULL) {
        (void)snprintf(buf, len, "%s", relay);
        return;
    }
    auth += 3;
    slash = strchr(auth, '/');
    at = strchr(auth, '@');
    if (at != NULL && (slash == NULL || at < slash))
        (void)snprintf(buf, len, "%.*s%s", (int)(auth - relay), relay, at + 1);
    else
        (void)snprintf(buf, len, "%s", relay);
}

/* --- SMTP ----------------------------------------------------------------------------------- */

struct submit_src {
    const char *p;
    size_t len, off;
};

static size_t
submit_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct submit_src *s = arg;
    size_t n = size * nitems;

    if (n > s->len - s->off)
        n = s->len - s->off;
    memcpy(buf, s->p + s->off, n);
    s->off += n;
    return n;
}

static int
submit_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                curl_off_t ulnow)
{
    const _Atomic bool *cancel = arg;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load(cancel) ? 1 : 0;
}

static enum um_status
submit_smtp(const struct um_submit_opts *o, const char *from, const char *const *rcpts,
            size_t nrcpts, const char *msg, size_t len, struct um_error *err)
{
    struct submit_src src = {msg, len, 0};
    struct curl_slist *rl = NULL;
    char ebuf[CURL_ERROR_SIZE] = "", shown[512], rev[600];
    enum um_status st = UM_OK;
    long reply = 0;
    CURLcode rc;
    CURL *c;

    um_submit_relay_shown(o->relay, shown, sizeof(shown));
    c = curl_easy_init();
    if (c == NULL)
        return um_error_set(err, UM_ENOMEM, "submit: %s: cannot set up libcurl", shown);
    for (size_t i = 0; i < nrcpts; i++) {
        char addr[600];
        struct curl_slist *n;

        (void)snprintf(addr, sizeof(addr), "<%s>", rcpts[i]);
        n = curl_slist_append(rl, addr);
        if (n == NULL) {
            st = um_error_set(err, UM_ENOMEM, "submit: out of memory");
            goto out;
        }
        rl = n;
    }
    (void)snprintf(rev, sizeof(rev), "<%s>", from != NULL ? from : "");
    (void)curl_easy_setopt(c, CURLOPT_URL, o->relay);
    (void)curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    (void)curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    (void)curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    (void)curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)o->timeout);
    (void)curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)o->timeout);
    (void)curl_easy_setopt(c, CURLOPT_MAIL_FROM, rev);
    (void)curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rl);
    (void)curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    (void)curl_easy_setopt(c, CURLOPT_READFUNCTION, submit_read);
    (void)curl_easy_setopt(c, CURLOPT_READDATA, &src);
    (void)curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    if (o->cancel != NULL) {
        (void)curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, submit_progress);
        (void)curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)(uintptr_t)o->cancel);
        (void)curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    switch (o->starttls) {
    case UM_SUBMIT_TLS_AUTO:
        /* Opportunistic: encryption against passive listeners, no certificate check. */
        (void)curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
        if (strncmp(o->relay, "smtps:", 6) != 0) {
            (void)curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
            (void)curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        }
        break;
    case UM_SUBMIT_TLS_ALWAYS:
        (void)curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        break;
    case UM_SUBMIT_TLS_NEVER:
        (void)curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_NONE);
        break;
    }
    if (o->ca_file != NULL)
        (void)curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o->user != NULL) {
        (void)curl_easy_setopt(c, CURLOPT_USERNAME, o->user);
        (void)curl_easy_setopt(c, CURLOPT_PASSWORD, o->password != NULL ? o->password : "");
    }
    rc = curl_easy_perform(c);
    (void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply);
    if (rc != CURLE_OK) {
        enum um_status code = UM_ETEMP;

        if ((reply >= 500 && reply < 600) || rc == CURLE_LOGIN_DENIED || rc == CURLE_URL_MALFORMAT
            || rc == CURLE_UNSUPPORTED_PROTOCOL)
            code = UM_EINVAL;
        st = um_error_set(err, code, "submit: %s: %s%s (last reply %ld)", shown,
                          ebuf[0] != '\0' ? ebuf : curl_easy_strerror(rc),
                          code == UM_ETEMP ? ", will retry" : "", reply);
    }
out:
    curl_slist_free_all(rl);
    curl_easy_cleanup(c);
    return st;
}

/* --- sendmail ------------------------------------------------------------------------------- */

static enum um_status
submit_sendmail(const struct um_submit_opts *o, const char *from, const char *const *rcpts,
                size_t nrcpts, const char *msg, size_t len, struct um_error *err)
{
    const char *prog = o->sendmail != NULL ? o->sendmail : "/usr/sbin/sendmail";
    char *argv[6 + SUBMIT_MAX_RCPTS];
    int sv[2], status = 0;
    size_t argc = 0, off = 0;
    char eb[128];
    pid_t pid;

    if (nrcpts > SUBMIT_MAX_RCPTS)
        return um_error_set(err, UM_EINVAL, "submit: more than %d recipients", SUBMIT_MAX_RCPTS);
    argv[argc++] = (char *)(uintptr_t) "sendmail";
    argv[argc++] = (char *)(uintptr_t) "-i";
    argv[argc++] = (char *)(uintptr_t) "-f";
    argv[argc++] = (char *)(uintptr_t)(from != NULL && from[0] != '\0' ? from : "<>");
    argv[argc++] = (char *)(uintptr_t) "--";
    for (size_t i = 0; i < nrcpts; i++)
        argv[argc++] = (char *)(uintptr_t)rcpts[i];
    argv[argc] = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return um_error_set(err, UM_ETEMP, "submit: socketpair: %s",
                            um_strerror(errno, eb, sizeof(eb)));
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return um_error_set(err, UM_ETEMP, "submit: fork: %s", um_strerror(errno, eb, sizeof(eb)));
    }
    if (pid == 0) {
        if (dup2(sv[1], STDIN_FILENO) < 0)
            _exit(71);
        (void)shutdown(STDIN_FILENO, SHUT_WR);
        execv(prog, argv);
        _exit(69);
    }
    close(sv[1]);
    while (off < len) {
        ssize_t n = send(sv[0], msg + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the child went away: its exit status says why */
        off += (size_t)n;
    }
    close(sv[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return um_error_set(err, UM_ETEMP, "submit: waitpid: %s",
                                um_strerror(errno, eb, sizeof(eb)));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return UM_OK;
    if (WIFEXITED(status))
        return um_error_set(err, WEXITSTATUS(status) == 75 ? UM_ETEMP : UM_EINVAL,
                            "submit: %s exited with status %d%s", prog, WEXITSTATUS(status),
                            WEXITSTATUS(status) == 69 ? " (or could not be run)" : "");
    return um_error_set(err, UM_ETEMP, "submit: %s killed by signal %d", prog,
                        WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

enum um_status
um_submit_send(const struct um_submit_opts *o, const char *from, const char *const *rcpts,
               size_t nrcpts, const char *msg, size_t len, struct um_error *err)
{
    if (nrcpts == 0)
        return um_error_set(err, UM_EINVAL, "submit: no recipients");
    if (o->via == UM_SUBMIT_VIA_SENDMAIL)
        return submit_sendmail(o, from, rcpts, nrcpts, msg, len, err);
    return submit_smtp(o, from, rcpts, nrcpts, msg, len, err);
}

enum um_status
um_submit_password_read(const char *path, uid_t allowed_uid, char **out, struct um_error *err)
{
    char buf[UM_SUBMIT_MAX_PASSWORD + 2], eb[128];
    enum um_status st = UM_OK;
    ssize_t n;
    size_t len;
    int fd;

    *out = NULL;
    /* O_NONBLOCK: a FIFO put in place of the file must not hang the config check. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return um_error_set(err, e == ENOENT ? UM_ENOENT : UM_EIO, "cannot open %s: %s", path,
                            um_strerror(e, eb, sizeof(eb)));
    }
    /* The same rules as the DKIM keys (fileperm.h): no group or other access, owned by root
     * or allowed_uid, and the directories on the way not writable by others. */
    {
        struct um_fileperm perm;
        um_fileperm_init(&perm, 077);
        um_fileperm_add_owner(&perm, allowed_uid);
        st = um_fileperm_check_dirs(path, &perm, err);
        if (st == UM_OK)
            st = um_fileperm_check_fd(fd, path, &perm, err);
    }
    if (st != UM_OK) {
        close(fd);
        return st;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return um_error_set(err, UM_EIO, "cannot read %s: %s", path,
                            um_strerror(errno, eb, sizeof(eb)));
    buf[n] = '\0';
    len = strcspn(buf, "\r\n");
    if (len == 0 || len > UM_SUBMIT_MAX_PASSWORD) {
        explicit_bzero(buf, sizeof(buf));
        return um_error_set(err, UM_EINVAL,
                            "%s: the first line must hold the password (1-%d bytes)", path,
                            UM_SUBMIT_MAX_PASSWORD);
    }
    buf[len] = '\0';
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    if (*out == NULL)
        return um_error_set(err, UM_ENOMEM, "out of memory");
    return UM_OK;
}
