/*
 * test_sdnotify - lib/sdnotify against real AF_UNIX datagram sockets: one bound to a file
 * path and one in the abstract namespace receive exactly the state sent, as one datagram;
 * no path sends nothing; a relative path and a socket that does not exist are errors that
 * name the path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"

static char tmpdir[] = "/tmp/um_test_sdnotify.XXXXXX";

/* Bind a datagram socket: a path, or '@name' in the abstract namespace. */
static int
bind_dgram(const char *path)
{
    struct sockaddr_un sun;
    size_t plen = strlen(path);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';
    else
        alen++;
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, alen), 0);
    return fd;
}

static void
expect_datagram(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    /* exactly one datagram */
    assert_true(recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0);
}

static void
test_path_socket(void **state)
{
    char path[200], err[256] = "";
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "%s/notify", tmpdir);
    fd = bind_dgram(path);
    assert_int_equal(um_sdnotify_send(path, "READY=1", err, sizeof(err)), 1);
    expect_datagram(fd, "READY=1");
    assert_int_equal(um_sdnotify_send(path, "RELOADING=1\nMONOTONIC_USEC=1", err, sizeof(err)), 1);
    expect_datagram(fd, "RELOADING=1\nMONOTONIC_USEC=1");
    close(fd);
    unlink(path);
}

static void
test_abstract_socket(void **state)
{
    char path[100], err[256] = "";
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "@um_test_sdnotify_%ld", (long)getpid());
    fd = bind_dgram(path);
    assert_int_equal(um_sdnotify_send(path, "STOPPING=1", err, sizeof(err)), 1);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
}

static void
test_no_manager(void **state)
{
    char err[256] = "";

    (void)state;
    assert_int_equal(um_sdnotify_send(NULL, "READY=1", err, sizeof(err)), 0);
    assert_int_equal(um_sdnotify_send("", "READY=1", err, sizeof(err)), 0);
    assert_string_equal(err, "");
}

static void
test_errors(void **state)
{
    char path[200], err[256] = "";

    (void)state;
    assert_int_equal(um_sdnotify_send("run/notify", "READY=1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"run/notify\": not an absolute or abstract"));
    snprintf(path, sizeof(path), "%s/absent", tmpdir);
    assert_int_equal(um_sdnotify_send(path, "READY=1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
}

static int
setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    return rmdir(tmpdir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_no_manager),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
