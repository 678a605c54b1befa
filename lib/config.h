/*
 * config - libconfig file -> validated, immutable, refcounted snapshot
 *
 * DESCRIPTION  um_config_load() reads one libconfig file (with @include relative to its
 *              directory), checks every setting against the schema in config.c and
 *              returns a snapshot. Unknown settings, wrong types and out-of-range values
 *              are errors; each error names file, line and setting:
 *                  conf/unimilter.conf:12: shutdown_timeout: expected seconds as an integer
 *              Settings not given take the documented defaults (um_config_schema()).
 * THREADS      A published snapshot is never written again. um_config_ref()/unref() are
 *              atomic, so connections pin the snapshot they started with while a reload
 *              publishes a new one.
 * OWNERSHIP    The snapshot owns all its strings (copied out of libconfig).
 * ERRORS       UM_OK and *out set; UM_EINVAL with err->msg the first error found;
 *              UM_EIO when the file cannot be read; UM_ENOMEM.
 * LIMITS       Only this module sees config_t / config_setting_t.
 */
#ifndef UM_CONFIG_H
#define UM_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>

#include "common.h"
#include "log.h"
#include "mode.h"

enum um_log_target {
    UM_LOG_TARGET_SYSLOG = 0,
    UM_LOG_TARGET_STDERR,
};

struct um_config {
    _Atomic int refs;
    char *path;

    char *socket;       /* "unix:/path", "inet:PORT@HOST", "inet6:PORT@HOST" */
    int socket_mode;    /* permission bits of a unix socket */
    char *socket_group; /* NULL: leave the group alone */
    char *user;         /* user to run as when started as root */
    char *group;        /* NULL: the user's primary group */
    int line_user, line_group, line_socket_group; /* where they were set (0: default) */

    enum um_log_target log_target;
    enum um_log_level log_level;

    char *authserv_id;    /* RFC 8601 authserv-id; default: the host name */
    int shutdown_timeout; /* seconds SIGTERM waits for messages in flight */

    struct um_mode_rules mode;
    bool trace_header; /* debug: add X-Unimilter-Mode to every message */
};

/* One schema entry, for documentation and for the "every setting is documented" test. */
struct um_config_doc {
    const char *path; /* "log.level", "mode.rules.[].daemon_port" */
    const char *type; /* "string", "integer", "boolean", "group", "list" */
    const char *dflt; /* default as written in the file, or "" */
    const char *doc;  /* one sentence */
};

UM_NODISCARD enum um_status um_config_load(const char *path, struct um_config **out,
                                           struct um_error *err);
struct um_config *um_config_ref(struct um_config *cfg);
void um_config_unref(struct um_config *cfg); /* frees at zero; NULL does nothing */

/* Whether v is a socket specification we accept; *why says what is wrong. */
bool um_config_socket_valid(const char *v, const char **why);

size_t um_config_schema_count(void);
void um_config_schema_get(size_t i, struct um_config_doc *out);

#endif
