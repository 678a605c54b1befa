/*
 * fileperm.c - ownership and mode checks for files read or run with root's rights
 *
 * Design note. Who may own what: root, plus the owners the caller names. The configuration
 * and the programs we run trust root and the uid reading them (geteuid(): root when the
 * daemon starts as root, the run user when it starts unprivileged or re-reads at reload);
 * NOT the daemon's configured `user` when we are root, because a daemon compromised after
 * its privilege drop could then rewrite the file that, at the next start, decides as root
 * which user to become and which program to run. Keys add `user` as an owner (the daemon
 * must be able to read them after the drop; a daemon that holds the key already gains
 * nothing by rewriting it).
 *
 * The walk resolves the path one component at a time, from / down, as the kernel does:
 * each directory is checked before we look inside it, a symlink's own owner is checked
 * (its directory already was) and its target is spliced in front of the rest of the path,
 * so a link planted in a writable place, or a writable directory behind a link, cannot
 * slip past as it could with realpath() followed by a check of the result.
 *
 * Sticky directories: a directory writable by group or others is refused unless it has
 * the sticky bit (S_ISVTX, as /tmp has: 1777). In a sticky directory a user who may write
 * it can add names but can rename or remove only the entries he owns (unless he owns the
 * directory, and the directory's owner is checked too); so an entry owned by root or by us
 * cannot be replaced or moved away by anyone else. The entry itself is then checked like
 * any other (owner, mode), which also catches a name someone else created first.
 *
 * Work: one lstat per component, at most UM_FP_MAX_LINKS symlinks followed.
 */
#define _DEFAULT_SOURCE /* S_ISVTX */
#include "fileperm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UM_FP_MAX_LINKS 40

void
um_fileperm_init(struct um_fileperm *p, mode_t deny)
{
    memset(p, 0, sizeof(*p));
    p->deny = deny;
    um_fileperm_add_owner(p, geteuid());
}

void
um_fileperm_add_owner(struct um_fileperm *p, uid_t uid)
{
    if (uid == 0 || p->nowners == UM_FILEPERM_MAX_OWNERS)
        return;
    for (size_t i = 0; i < p->nowners; i++)
        if (p->owners[i] == uid)
            return;
    p->owners[p->nowners++] = uid;
}

static bool
fp_owner_ok(const struct um_fileperm *p, uid_t uid)
{
    if (uid == 0)
        return true;
    for (size_t i = 0; i < p->nowners; i++)
        if (p->owners[i] == uid)
            return true;
    return false;
}

/* "root", "root or uid 105", "root, uid 105 or uid 1000" into buf. */
static const char *
fp_owner_list(const struct um_fileperm *p, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "root");

    for (size_t i = 0; i < p->nowners && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s uid %lu", i + 1 == p->nowners ? " or" : ",",
                              (unsigned long)p->owners[i]);
    return buf;
}

static enum um_status
fp_owner_err(const struct um_fileperm *p, const char *what, const char *path, uid_t uid,
             struct um_error *err)
{
    char who[96];

    return um_error_set(err, UM_EINVAL, "%s%s is owned by uid %lu, not %s", what, path,
                        (unsigned long)uid, fp_owner_list(p, who, sizeof(who)));
}

static enum um_status
fp_check_stat(const struct stat *sb, const char *path, const struct um_fileperm *p,
              struct um_error *err)
{
    mode_t bad = sb->st_mode & p->deny & 07777;

    if (!S_ISREG(sb->st_mode))
        return um_error_set(err, UM_EINVAL, "%s is not a regular file", path);
    if (!fp_owner_ok(p, sb->st_uid))
        return fp_owner_err(p, "", path, sb->st_uid, err);
    if ((bad & 022) != 0)
        return um_error_set(err, UM_EINVAL, "%s is writable by group/others (mode %04o)", path,
                            (unsigned)(sb->st_mode & 07777));
    if (bad != 0)
        return um_error_set(
            err, UM_EINVAL, "%s is readable by group/others (mode %04o; chmod %03o)", path,
            (unsigned)(sb->st_mode & 07777), (unsigned)(sb->st_mode & 0777 & ~p->deny));
    return UM_OK;
}

enum um_status
um_fileperm_check_fd(int fd, const char *path, const struct um_fileperm *p, struct um_error *err)
{
    struct stat sb;
    char eb[128];

    if (fstat(fd, &sb) != 0)
        return um_error_set(err, UM_EIO, "cannot stat %s: %s", path,
                            um_strerror(errno, eb, sizeof(eb)));
    return fp_check_stat(&sb, path, p, err);
}

static enum um_status
fp_check_dir(const struct stat *sb, const char *dir, const struct um_fileperm *p,
             struct um_error *err)
{
    if (!S_ISDIR(sb->st_mode))
        return um_error_set(err, UM_EINVAL, "%s is not a directory", dir);
    if (!fp_owner_ok(p, sb->st_uid))
        return fp_owner_err(p, "directory ", dir, sb->st_uid, err);
    if ((sb->st_mode & 022) != 0 && (sb->st_mode & S_ISVTX) == 0)
        return um_error_set(err, UM_EINVAL,
                            "directory %s is writable by group/others (mode %04o, no sticky bit)",
                            dir, (unsigned)(sb->st_mode & 07777));
    return UM_OK;
}

enum um_status
um_fileperm_check_dirs(const char *path, const struct um_fileperm *p, struct um_error *err)
{
    char todo[2 * PATH_MAX], cur[PATH_MAX], next[PATH_MAX], tmp[2 * PATH_MAX], eb[128];
    int nlinks = 0;
    struct stat sb;
    enum um_status st;

    if (path == NULL || path[0] == '\0')
        return um_error_set(err, UM_EINVAL, "empty path");
    if (path[0] == '/') {
        if ((size_t)snprintf(todo, sizeof(todo), "%s", path) >= sizeof(todo))
            return um_error_set(err, UM_EINVAL, "%.64s...: path too long", path);
    } else {
        if (getcwd(cur, sizeof(cur)) == NULL)
            return um_error_set(err, UM_EIO, "%s: cannot get the working directory: %s", path,
                                um_strerror(errno, eb, sizeof(eb)));
        if ((size_t)snprintf(todo, sizeof(todo), "%s/%s", cur, path) >= sizeof(todo))
            return um_error_set(err, UM_EINVAL, "%.64s...: path too long", path);
    }
    strcpy(cur, "/");
    if (lstat("/", &sb) != 0)
        return um_error_set(err, UM_EIO, "cannot stat /: %s", um_strerror(errno, eb, sizeof(eb)));
    if ((st = fp_check_dir(&sb, "/", p, err)) != UM_OK)
        return st;
    for (;;) {
        const char *c = todo, *rest;
        size_t clen;
        bool last;

        while (*c == '/')
            c++;
        if (*c == '\0')
            return UM_OK;
        clen = strcspn(c, "/");
        rest = c + clen;
        while (*rest == '/')
            rest++;
        last = *rest == '\0';
        if (clen == 1 && c[0] == '.') {
            memmove(todo, rest, strlen(rest) + 1);
            continue;
        }
        if (clen == 2 && c[0] == '.' && c[1] == '.') {
            char *sl = strrchr(cur, '/');
            if (sl != NULL && sl != cur)
                *sl = '\0';
            else
                strcpy(cur, "/");
            memmove(todo, rest, strlen(rest) + 1);
            continue;
        }
        if ((size_t)snprintf(next, sizeof(next), "%s%s%.*s", cur, strcmp(cur, "/") == 0 ? "" : "/",
                             (int)clen, c)
            >= sizeof(next))
            return um_error_set(err, UM_EINVAL, "%.64s...: path too long", path);
        if (lstat(next, &sb) != 0) {
            int e = errno;
            if (last || e == ENOENT)
                return UM_OK; /* the caller's open() or stat() says what is wrong */
            return um_error_set(err, e == ENOENT ? UM_ENOENT : UM_EIO, "cannot stat %s: %s", next,
                                um_strerror(e, eb, sizeof(eb)));
        }
        if (S_ISLNK(sb.st_mode)) {
            char target[PATH_MAX];
            ssize_t n;
            if (!fp_owner_ok(p, sb.st_uid))
                return fp_owner_err(p, "symlink ", next, sb.st_uid, err);
            if (++nlinks > UM_FP_MAX_LINKS)
                return um_error_set(err, UM_EINVAL, "%s: too many symlinks", path);
            n = readlink(next, target, sizeof(target) - 1);
            if (n < 0)
                return um_error_set(err, UM_EIO, "cannot read symlink %s: %s", next,
                                    um_strerror(errno, eb, sizeof(eb)));
            target[n] = '\0';
            if ((size_t)snprintf(tmp, sizeof(tmp), "%s%s%s", target, last ? "" : "/", rest)
                >= sizeof(todo))
                return um_error_set(err, UM_EINVAL, "%.64s...: path too long", path);
            memcpy(todo, tmp, strlen(tmp) + 1);
            if (target[0] == '/')
                strcpy(cur, "/");
            continue;
        }
        if (last)
            return UM_OK; /* the file itself: the caller checks it */
        if ((st = fp_check_dir(&sb, next, p, err)) != UM_OK)
            return st;
        memcpy(cur, next, strlen(next) + 1);
        memmove(todo, rest, strlen(rest) + 1);
    }
}

enum um_status
um_fileperm_check_path(const char *path, const struct um_fileperm *p, struct um_error *err)
{
    struct stat sb;
    enum um_status st;
    char eb[128];

    if ((st = um_fileperm_check_dirs(path, p, err)) != UM_OK)
        return st;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return um_error_set(err, e == ENOENT ? UM_ENOENT : UM_EIO, "cannot stat %s: %s", path,
                            um_strerror(e, eb, sizeof(eb)));
    }
    return fp_check_stat(&sb, path, p, err);
}
