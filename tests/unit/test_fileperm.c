/*
 * test_fileperm - lib/fileperm: real files and directories under a private temp dir, made
 * unsafe one way at a time with chmod/chown (the ownership cases need root, as in CI), each
 * refused with the exact message; the safe shapes (0644 root file, sticky world-writable
 * parent, symlinks owned by root) accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileperm.h"

static char tmpdir[] = "/tmp/um_test_fileperm.XXXXXX";

static const char *
mkpath(char *buf, size_t len, const char *name)
{
    (void)snprintf(buf, len, "%s/%s", tmpdir, name);
    return buf;
}

static void
mkfile(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x = 1;\n", 7), 7);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

/* check_path with a 022 policy; returns the status, message in err. */
static enum um_status
check(const char *path, mode_t deny, uid_t extra, struct um_error *err)
{
    struct um_fileperm p;

    um_fileperm_init(&p, deny);
    if (extra != 0)
        um_fileperm_add_owner(&p, extra);
    memset(err, 0, sizeof(*err));
    return um_fileperm_check_path(path, &p, err);
}

static void want_msg(const struct um_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
want_msg(const struct um_error *err, const char *fmt, ...)
{
    char want[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(want, sizeof(want), fmt, ap);
    va_end(ap);
    if (strcmp(err->msg, want) != 0)
        fail_msg("got \"%s\", want \"%s\"", err->msg, want);
}

static void
test_file_modes(void **state)
{
    char f[256];
    struct um_error err;

    (void)state;
    mkpath(f, sizeof(f), "good.conf");
    mkfile(f, 0644);
    if (check(f, 022, 0, &err) != UM_OK)
        fail_msg("0644 file refused: %s", err.msg);
    assert_int_equal(chmod(f, 0664), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is writable by group/others (mode 0664)", f);
    assert_int_equal(chmod(f, 0646), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is writable by group/others (mode 0646)", f);
    /* Keys: no group or other access at all. */
    assert_int_equal(chmod(f, 0640), 0);
    assert_int_equal(check(f, 077, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is readable by group/others (mode 0640; chmod 600)", f);
    assert_int_equal(chmod(f, 0600), 0);
    assert_int_equal(check(f, 077, 0, &err), UM_OK);
    /* Not a regular file. */
    assert_int_equal(check(tmpdir, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is not a regular file", tmpdir);
    /* Missing: the caller's own error. */
    mkpath(f, sizeof(f), "nope/none.conf");
    assert_int_equal(check(f, 022, 0, &err), UM_ENOENT);
    want_msg(&err, "cannot stat %s: No such file or directory", f);
}

static void
test_check_fd(void **state)
{
    char f[256];
    struct um_fileperm p;
    struct um_error err = {0};
    int fd;

    (void)state;
    mkpath(f, sizeof(f), "fd.conf");
    mkfile(f, 0666);
    fd = open(f, O_RDONLY);
    assert_true(fd >= 0);
    um_fileperm_init(&p, 022);
    assert_int_equal(um_fileperm_check_fd(fd, f, &p, &err), UM_EINVAL);
    want_msg(&err, "%s is writable by group/others (mode 0666)", f);
    assert_int_equal(fchmod(fd, 0644), 0);
    assert_int_equal(um_fileperm_check_fd(fd, f, &p, &err), UM_OK);
    close(fd);
}

static void
test_directories(void **state)
{
    char d[256], sub[256], f[256];
    struct um_error err;

    (void)state;
    mkpath(d, sizeof(d), "etc");
    assert_int_equal(mkdir(d, 0755), 0);
    mkpath(sub, sizeof(sub), "etc/unimilter");
    assert_int_equal(mkdir(sub, 0755), 0);
    mkpath(f, sizeof(f), "etc/unimilter/u.conf");
    mkfile(f, 0644);
    if (check(f, 022, 0, &err) != UM_OK)
        fail_msg("safe path refused: %s", err.msg);
    /* Any directory on the way, not only the last one. */
    assert_int_equal(chmod(d, 0775), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0775, no sticky bit)", d);
    assert_int_equal(chmod(d, 0757), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0757, no sticky bit)", d);
    /* A sticky world-writable directory (/tmp's shape) is fine for entries we own. */
    assert_int_equal(chmod(d, 01777), 0);
    if (check(f, 022, 0, &err) != UM_OK)
        fail_msg("sticky parent refused: %s", err.msg);
    assert_int_equal(chmod(d, 0755), 0);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0777, no sticky bit)", sub);
    assert_int_equal(chmod(sub, 0755), 0);
    /* Relative paths are walked from the working directory, "." and ".." included. */
    assert_int_equal(chdir(sub), 0);
    assert_int_equal(check("./../unimilter/u.conf", 022, 0, &err), UM_OK);
    assert_int_equal(chmod(d, 0777), 0);
    assert_int_equal(check("u.conf", 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0777, no sticky bit)", d);
    assert_int_equal(chmod(d, 0755), 0);
    assert_int_equal(chdir("/"), 0);
}

static void
test_owners(void **state)
{
    char d[256], f[256];
    struct um_error err;

    (void)state;
    if (geteuid() != 0)
        skip(); /* chown needs root; CI runs the unit tests as root */
    mkpath(d, sizeof(d), "own");
    assert_int_equal(mkdir(d, 0755), 0);
    mkpath(f, sizeof(f), "own/u.conf");
    mkfile(f, 0644);
    assert_int_equal(chown(f, 4242, 4242), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is owned by uid 4242, not root", f);
    /* An extra owner (keys: the run user) is accepted, and named in the message. */
    assert_int_equal(check(f, 022, 4242, &err), UM_OK);
    assert_int_equal(check(f, 022, 105, &err), UM_EINVAL);
    want_msg(&err, "%s is owned by uid 4242, not root or uid 105", f);
    assert_int_equal(chown(f, 0, 0), 0);
    /* A directory owned by someone else, even with mode 0755: he could swap the file. */
    assert_int_equal(chown(d, 4242, 4242), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is owned by uid 4242, not root", d);
    /* ... also when sticky: the owner of a sticky directory may remove anything in it. */
    assert_int_equal(chmod(d, 01777), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is owned by uid 4242, not root", d);
    assert_int_equal(chmod(d, 0755), 0);
    assert_int_equal(chown(d, 0, 0), 0);
    assert_int_equal(check(f, 022, 0, &err), UM_OK);
}

static void
test_symlinks(void **state)
{
    char d[256], f[256], ln[256], lnd[256], via[256], wd[256];
    struct um_error err;

    (void)state;
    mkpath(d, sizeof(d), "real");
    assert_int_equal(mkdir(d, 0755), 0);
    mkpath(f, sizeof(f), "real/u.conf");
    mkfile(f, 0644);
    /* A link to the file, and a link to its directory: both followed and checked. */
    mkpath(ln, sizeof(ln), "link.conf");
    assert_int_equal(symlink("real/u.conf", ln), 0);
    mkpath(lnd, sizeof(lnd), "dirlink");
    assert_int_equal(symlink(d, lnd), 0);
    mkpath(via, sizeof(via), "dirlink/u.conf");
    if (check(ln, 022, 0, &err) != UM_OK)
        fail_msg("link to a safe file refused: %s", err.msg);
    if (check(via, 022, 0, &err) != UM_OK)
        fail_msg("path through a safe dir link refused: %s", err.msg);
    /* The target's directory is what matters, wherever the link points. */
    assert_int_equal(chmod(d, 0777), 0);
    assert_int_equal(check(ln, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0777, no sticky bit)", d);
    assert_int_equal(check(via, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "directory %s is writable by group/others (mode 0777, no sticky bit)", d);
    assert_int_equal(chmod(d, 0755), 0);
    /* The target file's own mode, through the link. */
    assert_int_equal(chmod(f, 0666), 0);
    assert_int_equal(check(ln, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s is writable by group/others (mode 0666)", ln);
    assert_int_equal(chmod(f, 0644), 0);
    /* A link someone else owns (in a sticky dir he could write) could be repointed. */
    if (geteuid() == 0) {
        mkpath(wd, sizeof(wd), "tmpish");
        assert_int_equal(mkdir(wd, 01777), 0);
        assert_int_equal(chmod(wd, 01777), 0);
        mkpath(ln, sizeof(ln), "tmpish/evil.conf");
        assert_int_equal(symlink(f, ln), 0);
        assert_int_equal(lchown(ln, 4242, 4242), 0);
        assert_int_equal(check(ln, 022, 0, &err), UM_EINVAL);
        want_msg(&err, "symlink %s is owned by uid 4242, not root", ln);
    }
    /* A loop ends. */
    mkpath(ln, sizeof(ln), "loop");
    assert_int_equal(symlink("loop", ln), 0);
    assert_int_equal(check(ln, 022, 0, &err), UM_EINVAL);
    want_msg(&err, "%s: too many symlinks", ln);
}

static int
setup(void **state)
{
    (void)state;
    umask(022);
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return chmod(tmpdir, 0755);
}

static int
teardown(void **state)
{
    char cmd[300];

    (void)state;
    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_modes),  cmocka_unit_test(test_check_fd),
        cmocka_unit_test(test_directories), cmocka_unit_test(test_owners),
        cmocka_unit_test(test_symlinks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
