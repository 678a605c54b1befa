/*
 * test_submit.c - lib/submit (one attempt: sendmail exit codes, SMTP to a closed port, the
 * password file rules, relays shown without credentials) and lib/submitq (retries with
 * backoff, permanent failures, the attempt bound, a full queue, shutdown)
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "submit.h"
#include "submitq.h"

static char dir[64];

static int
setup(void **state)
{
    (void)state;
    (void)snprintf(dir, sizeof(dir), "/tmp/um-submit.XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    char cmd[128];
    (void)state;
    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static const char MSG[] =
    "From: <a@example.org>\r\nTo: <b@example.org>\r\nSubject: t\r\n\r\nbody\r\n";

static void
test_sendmail_exit_codes(void **state)
{
    static const struct {
        const char *script;
        enum um_status want;
    } cases[] = {
        {"#!/bin/sh\ncat >/dev/null\nexit 0\n", UM_OK},
        {"#!/bin/sh\ncat >/dev/null\nexit 75\n", UM_ETEMP},  /* EX_TEMPFAIL */
        {"#!/bin/sh\ncat >/dev/null\nexit 67\n", UM_EINVAL}, /* EX_NOUSER */
    };
    const char *rcpt[] = {"b@example.org"};
    char path[128];
    (void)state;

    (void)snprintf(path, sizeof(path), "%s/sendmail", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_submit_opts o = {.via = UM_SUBMIT_VIA_SENDMAIL, .sendmail = path};
        struct um_error err = {0};
        enum um_status got;

        write_file(path, cases[i].script, 0755);
        got = um_submit_send(&o, "", rcpt, 1, MSG, sizeof(MSG) - 1, &err);
        if (got != cases[i].want)
            fail_msg("case %zu: got %s, want %s (%s)", i, um_status_name(got),
                     um_status_name(cases[i].want), err.msg);
    }
}

static void
test_sendmail_gets_message_and_args(void **state)
{
    const char *rcpt[] = {"b@example.org", "c@example.org"};
    char path[128], out[128], script[512], buf[512] = "";
    struct um_submit_opts o = {.via = UM_SUBMIT_VIA_SENDMAIL};
    struct um_error err = {0};
    FILE *f;
    (void)state;

    (void)snprintf(path, sizeof(path), "%s/sendmail-save", dir);
    (void)snprintf(out, sizeof(out), "%s/saved", dir);
    (void)snprintf(script, sizeof(script), "#!/bin/sh\necho \"$*\" >'%s'\ncat >>'%s'\n", out, out);
    write_file(path, script, 0755);
    o.sendmail = path;
    assert_int_equal(um_submit_send(&o, "", rcpt, 2, MSG, sizeof(MSG) - 1, &err), UM_OK);
    f = fopen(out, "r");
    assert_non_null(f);
    assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
    fclose(f);
    /* the null sender is "<>" for sendmail's -f */
    assert_non_null(strstr(buf, "-i -f <> -- b@example.org c@example.org\n"));
    assert_non_null(strstr(buf, "Subject: t\r\n\r\nbody\r\n"));
}

static void
test_smtp_refused_is_temporary(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    const char *rcpt[] = {"b@example.org"};
    char relay[128];
    struct um_error err = {0};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    (void)state;

    /* A port that was free a moment ago and has no listener: connection refused. */
    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s);
    (void)snprintf(relay, sizeof(relay), "smtp://user:secret@127.0.0.1:%u",
                   (unsigned)ntohs(sa.sin_port));
    struct um_submit_opts o = {.relay = relay, .timeout = 5, .user = "u", .password = "pw-x"};
    assert_int_equal(um_submit_send(&o, "", rcpt, 1, MSG, sizeof(MSG) - 1, &err), UM_ETEMP);
    assert_non_null(strstr(err.msg, "smtp://127.0.0.1:"));
    assert_null(strstr(err.msg, "secret"));
    assert_null(strstr(err.msg, "pw-x"));
}

static void
test_relay_shown(void **state)
{
    static const char *const cases[][2] = {
        {"smtp://127.0.0.1:25", "smtp://127.0.0.1:25"},
        {"smtps://u:p@mail.example.org:465", "smtps://mail.example.org:465"},
        {"smtp://mail.example.org/helo@x", "smtp://mail.example.org/helo@x"},
    };
    char buf[128];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        um_submit_relay_shown(cases[i][0], buf, sizeof(buf));
        if (strcmp(buf, cases[i][1]) != 0)
            fail_msg("%s: got %s, want %s", cases[i][0], buf, cases[i][1]);
    }
}

static void
test_password_file(void **state)
{
    char path[128];
    char *pw = NULL;
    struct um_error err = {0};
    (void)state;

    (void)snprintf(path, sizeof(path), "%s/pw", dir);
    write_file(path, "s3cret\nignored\n", 0600);
    assert_int_equal(um_submit_password_read(path, getuid(), &pw, &err), UM_OK);
    assert_string_equal(pw, "s3cret");
    free(pw);
    pw = NULL;
    write_file(path, "s3cret\n", 0640);
    assert_int_equal(um_submit_password_read(path, getuid(), &pw, &err), UM_EINVAL);
    assert_non_null(strstr(err.msg, "mode 0640"));
    assert_null(strstr(err.msg, "s3cret"));
    write_file(path, "\n", 0400);
    assert_int_equal(um_submit_password_read(path, getuid(), &pw, &err), UM_EINVAL);
    assert_null(pw);
}

/* --- the queue, with a scripted send function --------------------------------------------- */

struct fake {
    _Atomic int calls;
    enum um_status script[16]; /* result of call i; UM_OK after the end */
    _Atomic bool block;        /* hold every send until cleared */
    _Atomic int released;
    char log[8192];
    _Atomic int loglen;
};

static enum um_status
fake_send(void *arg, const struct um_submit_opts *o, const char *from, const char *const *rcpts,
          size_t nrcpts, const char *msg, size_t len, struct um_error *err)
{
    struct fake *f = arg;
    int i = atomic_fetch_add(&f->calls, 1);

    (void)o;
    (void)from;
    (void)rcpts;
    (void)nrcpts;
    (void)msg;
    (void)len;
    while (atomic_load(&f->block))
        usleep(1000);
    if (i < 16 && f->script[i] != UM_OK)
        return um_error_set(err, f->script[i], "scripted failure %d", i);
    return UM_OK;
}

static void
fake_release(void *owner)
{
    atomic_fetch_add(&((struct fake *)owner)->released, 1);
}

static void
fake_sink(void *arg, enum um_log_level level, const char *line, size_t len)
{
    struct fake *f = arg;
    int at = atomic_fetch_add(&f->loglen, (int)len + 1);
    (void)level;
    if ((size_t)at + len + 2 < sizeof(f->log)) {
        memcpy(f->log + at, line, len);
        f->log[at + (int)len] = '\n';
    }
}

static struct um_logger lg;

static struct um_submitq *
fake_queue(struct fake *f, size_t max_jobs, unsigned max_attempts)
{
    struct um_submitq_params p = {.max_jobs = max_jobs,
                                  .max_attempts = max_attempts,
                                  .first_backoff_ms = 10,
                                  .max_backoff_ms = 40,
                                  .send = fake_send,
                                  .send_arg = f,
                                  .release = fake_release,
                                  .log = &lg};
    struct um_submitq *q = NULL;
    struct um_error err = {0};

    um_logger_init(&lg, fake_sink, f, UM_LOG_DEBUG);
    assert_int_equal(um_submitq_new(&p, &q, &err), UM_OK);
    return q;
}

static void
wait_released(struct fake *f, int n)
{
    for (int i = 0; i < 3000 && atomic_load(&f->released) < n; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&f->released), n);
}

static void
add(struct um_submitq *q, struct fake *f, enum um_status want)
{
    static const struct um_submit_opts o = {.relay = "smtp://127.0.0.1:25"};
    const char *rcpt[] = {"ops@example.org"};
    assert_int_equal(um_submitq_add(q, &o, f, "test", "", rcpt, 1, MSG, sizeof(MSG) - 1), want);
}

static void
test_queue_retries_then_sends(void **state)
{
    struct fake f = {.script = {UM_ETEMP, UM_ETEMP}};
    struct um_submitq *q = fake_queue(&f, 10, 5);
    (void)state;

    add(q, &f, UM_OK);
    wait_released(&f, 1);
    assert_int_equal(atomic_load(&f.calls), 3);
    assert_non_null(strstr(f.log, "result=deferred attempts=1 retry_in=1"));
    assert_non_null(strstr(f.log, "result=deferred attempts=2"));
    assert_non_null(strstr(f.log, "result=sent attempts=3"));
    um_submitq_free(q);
}

static void
test_queue_permanent_and_bounded(void **state)
{
    struct fake f = {.script = {UM_EINVAL, UM_ETEMP, UM_ETEMP, UM_ETEMP, UM_ETEMP}};
    struct um_submitq *q = fake_queue(&f, 10, 3);
    (void)state;

    add(q, &f, UM_OK); /* 5xx: one attempt, dropped */
    wait_released(&f, 1);
    assert_int_equal(atomic_load(&f.calls), 1);
    assert_non_null(strstr(f.log, "result=dropped attempts=1 error=\"scripted failure 0\""));
    add(q, &f, UM_OK); /* temporary every time: max_attempts (3), then dropped */
    wait_released(&f, 2);
    assert_int_equal(atomic_load(&f.calls), 4);
    assert_non_null(strstr(f.log, "result=dropped attempts=3"));
    um_submitq_free(q);
}

static void
test_queue_full_drops_newest(void **state)
{
    struct fake f = {.block = true};
    struct um_submitq *q = fake_queue(&f, 2, 3);
    (void)state;

    add(q, &f, UM_OK);
    add(q, &f, UM_OK);
    add(q, &f, UM_ELIMIT); /* the newest is dropped, at once */
    assert_int_equal(atomic_load(&f.released), 1);
    assert_non_null(strstr(f.log, "result=dropped attempts=0 error=\"queue full\""));
    atomic_store(&f.block, false);
    wait_released(&f, 3);
    assert_int_equal(atomic_load(&f.calls), 2);
    um_submitq_free(q);
}

static void
test_queue_free_drops_pending(void **state)
{
    struct fake f = {.script = {UM_ETEMP}};
    struct um_submitq_params p = {.max_jobs = 4,
                                  .max_attempts = 5,
                                  .first_backoff_ms = 60000,
                                  .max_backoff_ms = 60000,
                                  .send = fake_send,
                                  .send_arg = &f,
                                  .release = fake_release,
                                  .log = &lg};
    struct um_submitq *q = NULL;
    struct um_error err = {0};
    (void)state;

    um_logger_init(&lg, fake_sink, &f, UM_LOG_DEBUG);
    assert_int_equal(um_submitq_new(&p, &q, &err), UM_OK);
    add(q, &f, UM_OK);
    for (int i = 0; i < 3000 && atomic_load(&f.calls) < 1; i++)
        usleep(1000);
    usleep(20000);
    um_submitq_free(q); /* the retry is a minute away: dropped now, and said so */
    assert_int_equal(atomic_load(&f.released), 1);
    assert_non_null(strstr(f.log, "result=dropped attempts=1 error=\"shutting down\""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sendmail_exit_codes),
        cmocka_unit_test(test_sendmail_gets_message_and_args),
        cmocka_unit_test(test_smtp_refused_is_temporary),
        cmocka_unit_test(test_relay_shown),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_queue_retries_then_sends),
        cmocka_unit_test(test_queue_permanent_and_bounded),
        cmocka_unit_test(test_queue_full_drops_newest),
        cmocka_unit_test(test_queue_free_drops_pending),
    };
    if (!um_submit_init())
        return 1;
    return cmocka_run_group_tests(tests, setup, teardown);
}
