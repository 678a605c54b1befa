/*
 * fileperm - may we trust a file (and the directories leading to it) we read as root?
 *
 * DESCRIPTION  One checker for every file whose contents decide what the daemon does with
 *              root's rights: the configuration and its @include files, DKIM keys, and the
 *              programs it runs (ratelimit.notify.command, the sendmail binaries). A file is
 *              trusted when it is a regular file, owned by root or by one of the extra owners
 *              the caller names, and has none of the caller's forbidden mode bits (022 for
 *              configuration and programs: not writable by group or others; 077 for keys:
 *              no group or other access at all). Every directory on the way to it, from /
 *              down, symlinks resolved one by one (OpenSSH's StrictModes, done per
 *              component), must be owned by root or an extra owner and not be writable by
 *              group or others, unless it has the sticky bit (see fileperm.c); a symlink on
 *              the way must be owned by root or an extra owner.
 * THREADS      Reentrant; no state.
 * ERRORS       UM_OK when trusted. UM_EINVAL with a message naming the path and the problem:
 *              "PATH is writable by group/others (mode 0666)", "PATH is owned by uid 1000,
 *              not root or uid 0", "directory /x is writable by group/others (mode 0777,
 *              no sticky bit)". UM_ENOENT / UM_EIO when a path cannot be looked at.
 * LIMITS       At most 40 symlinks and PATH_MAX bytes per path.
 */
#ifndef UM_FILEPERM_H
#define UM_FILEPERM_H

#include <stdbool.h>
#include <sys/types.h>

#include "common.h"

#define UM_FILEPERM_MAX_OWNERS 3

struct um_fileperm {
    uid_t owners[UM_FILEPERM_MAX_OWNERS]; /* besides root, who may own the file and dirs */
    size_t nowners;
    mode_t deny; /* the file must have none of these bits: 022 or 077 */
};

/* A policy with root and geteuid() as owners and deny as forbidden bits. */
void um_fileperm_init(struct um_fileperm *p, mode_t deny);
/* Adds one more owner (ignored when already there or the table is full). */
void um_fileperm_add_owner(struct um_fileperm *p, uid_t uid);

/* The open file fd, which the caller opened as path (named in errors): regular, owner, mode. */
UM_NODISCARD enum um_status um_fileperm_check_fd(int fd, const char *path,
                                                 const struct um_fileperm *p, struct um_error *err);
/* Every directory and symlink on the way to path (relative: from the working directory),
 * not path itself when it is no symlink. */
UM_NODISCARD enum um_status um_fileperm_check_dirs(const char *path, const struct um_fileperm *p,
                                                   struct um_error *err);
/* Both, for a file not yet opened (a program): the directories, then the file by stat(). */
UM_NODISCARD enum um_status um_fileperm_check_path(const char *path, const struct um_fileperm *p,
                                                   struct um_error *err);

#endif
