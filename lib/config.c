/*
 * config.c - schema-checked libconfig loader
 *
 * Design note: one table (cfg_schema) lists every setting with its type, range, default
 * and a sentence of documentation. The loader walks the file's tree and looks each setting
 * up in the table, so an unknown or misplaced setting is an error by construction rather
 * than something each getter must remember to check. Defaults are applied by parsing the
 * table's default text through the same converters as file values, so the documented
 * default and the running default cannot drift. Lists of groups (mode.rules) use the path
 * "mode.rules.[].field" in the table. Work is linear in the size of the file.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum cfg_kind {
    CFG_GROUP,
    CFG_RULES,   /* list of mode rule groups */
    CFG_STRING,  /* char *, never NULL */
    CFG_OSTRING, /* char *, NULL when unset or "" */
    CFG_INT,
    CFG_BOOL,
    CFG_OCTAL,   /* permission bits written as a string, "0660" */
    CFG_SOCKET,
    CFG_LOGLEVEL,
    CFG_LOGTARGET,
    CFG_MODE,
    CFG_TRISTATE, /* bool in the file; UM_TRI_ANY when absent */
    CFG_PORT,     /* int, -1 when absent */
};

struct cfg_item {
    const char *path;
    enum cfg_kind kind;
    size_t off;      /* in struct um_config, or in struct um_mode_rule for "[]" paths */
    size_t line_off; /* offset of an int that records the line, or 0 */
    long min, max;
    const char *what; /* integer unit for messages: "seconds" */
    const char *dflt;
    const char *doc;
};

#define CO(f) offsetof(struct um_config, f)
#define RO(f) offsetof(struct um_mode_rule, f)

static const struct cfg_item cfg_schema[] = {
    {"socket", CFG_SOCKET, CO(socket), 0, 0, 0, NULL, "unix:/run/unimilter/unimilter.sock",
     "Where the MTA connects: unix:/path, inet:PORT@HOST or inet6:PORT@HOST."},
    {"socket_mode", CFG_OCTAL, CO(socket_mode), 0, 0, 0777, NULL, "0660",
     "Permission bits of a unix socket, as an octal string."},
    {"socket_group", CFG_OSTRING, CO(socket_group), CO(line_socket_group), 0, 0, NULL, "",
     "Group given to a unix socket so the MTA's user can connect (empty: unchanged)."},
    {"user", CFG_STRING, CO(user), CO(line_user), 0, 0, NULL, "unimilter",
     "User to switch to when started as root."},
    {"group", CFG_OSTRING, CO(group), CO(line_group), 0, 0, NULL, "",
     "Group to switch to when started as root (empty: the user's primary group)."},
    {"authserv_id", CFG_OSTRING, CO(authserv_id), 0, 0, 0, NULL, "",
     "authserv-id in Authentication-Results (empty: the host name)."},
    {"shutdown_timeout", CFG_INT, CO(shutdown_timeout), 0, 0, 3600, "seconds", "30",
     "Seconds SIGTERM waits for messages in flight before exiting."},
    {"log", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Logging."},
    {"log.target", CFG_LOGTARGET, CO(log_target), 0, 0, 0, NULL, "syslog",
     "syslog (facility mail) or stderr."},
    {"log.level", CFG_LOGLEVEL, CO(log_level), 0, 0, 0, NULL, "info",
     "err, warning, info (one line per message) or debug."},
    {"mode", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Which job each MTA daemon's mail gets."},
    {"mode.default", CFG_MODE, CO(mode.dflt), 0, 0, 0, NULL, "inbound",
     "Mode when no rule matches: inbound, outbound or skip."},
    {"mode.rules", CFG_RULES, 0, 0, 0, 0, NULL, "()",
     "Rules tried in order; the first whose conditions all hold gives the mode."},
    {"mode.rules.[].daemon_name", CFG_OSTRING, RO(daemon_name), 0, 0, 0, NULL, "",
     "Matches the {daemon_name} macro (case-insensitive)."},
    {"mode.rules.[].daemon_port", CFG_PORT, RO(daemon_port), 0, 1, 65535, "a port number", "",
     "Matches the {daemon_port} macro."},
    {"mode.rules.[].authenticated", CFG_TRISTATE, RO(authenticated), 0, 0, 0, NULL, "",
     "Matches when the client did (true) or did not (false) authenticate."},
    {"mode.rules.[].mode", CFG_MODE, RO(mode), 0, 0, 0, NULL, "",
     "The mode this rule selects: inbound, outbound or skip (required)."},
    {"debug", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Debugging aids."},
    {"debug.trace_header", CFG_BOOL, CO(trace_header), 0, 0, 0, NULL, "false",
     "Add an X-Unimilter-Mode header naming the mode that ran."},
};

#define CFG_NSCHEMA (sizeof(cfg_schema) / sizeof(cfg_schema[0]))

struct cfg_ctx {
    const char *file; /* the top file, when libconfig does not know a setting's file */
    const char *dir;  /* its directory, where @include names are resolved */
    struct um_config *cfg;
    struct um_error *err;
};

static const char *
cfg_kind_type(enum cfg_kind k)
{
    switch (k) {
    case CFG_GROUP:
        return "group";
    case CFG_RULES:
        return "list";
    case CFG_INT:
    case CFG_PORT:
        return "integer";
    case CFG_BOOL:
    case CFG_TRISTATE:
        return "boolean";
    case CFG_STRING:
    case CFG_OSTRING:
    case CFG_OCTAL:
    case CFG_SOCKET:
    case CFG_LOGLEVEL:
    case CFG_LOGTARGET:
    case CFG_MODE:
        return "string";
    }
    return "string";
}

size_t
um_config_schema_count(void)
{
    return CFG_NSCHEMA;
}

void
um_config_schema_get(size_t i, struct um_config_doc *out)
{
    const struct cfg_item *it = &cfg_schema[i < CFG_NSCHEMA ? i : 0];

    out->path = it->path;
    out->type = cfg_kind_type(it->kind);
    out->dflt = it->dflt;
    out->doc = it->doc;
}

static const struct cfg_item *
cfg_find(const char *path)
{
    for (size_t i = 0; i < CFG_NSCHEMA; i++)
        if (strcmp(cfg_schema[i].path, path) == 0)
            return &cfg_schema[i];
    return NULL;
}

/* "FILE:LINE: PATH: message" into ctx->err. Returns UM_EINVAL. */
static enum um_status cfg_fail(struct cfg_ctx *ctx, const config_setting_t *s, const char *path,
                               const char *fmt, ...) UM_PRINTF(4, 5);

static enum um_status
cfg_fail(struct cfg_ctx *ctx, const config_setting_t *s, const char *path, const char *fmt, ...)
{
    char msg[200];
    const char *file = NULL;
    int line = 0;
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s != NULL) {
        file = config_setting_source_file(s);
        line = config_setting_source_line(s);
    }
    if (file == NULL)
        file = ctx->file;
    if (file != ctx->file && strcmp(file, ctx->file) != 0 && file[0] != '/' && ctx->dir != NULL)
        return um_error_set(ctx->err, UM_EINVAL, "%s/%s:%d: %s: %s", ctx->dir, file, line, path,
                            msg);
    return um_error_set(ctx->err, UM_EINVAL, "%s:%d: %s: %s", file, line, path, msg);
}

static enum um_status
cfg_strdup(struct cfg_ctx *ctx, char **dst, const char *val, bool null_if_empty)
{
    free(*dst);
    *dst = NULL;
    if (null_if_empty && val[0] == '\0')
        return UM_OK;
    *dst = strdup(val);
    if (*dst == NULL)
        return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
    return UM_OK;
}

bool
um_config_socket_valid(const char *v, const char **why)
{
    const char *at;
    char *end;
    long port;

    if (strncmp(v, "unix:", 5) == 0 || strncmp(v, "local:", 6) == 0) {
        const char *p = strchr(v, ':') + 1;
        if (*p != '/') {
            *why = "a unix socket needs an absolute path, as in unix:/run/unimilter/unimilter.sock";
            return false;
        }
        return true;
    }
    if (strncmp(v, "inet:", 5) == 0 || strncmp(v, "inet6:", 6) == 0) {
        const char *p = strchr(v, ':') + 1;
        errno = 0;
        port = strtol(p, &end, 10);
        at = end;
        if (end == p || errno != 0 || port < 1 || port > 65535 || (*at != '@' && *at != '\0')
            || (*at == '@' && at[1] == '\0')) {
            *why = "expected inet:PORT@HOST or inet6:PORT@HOST with PORT 1-65535";
            return false;
        }
        return true;
    }
    *why = "expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST";
    return false;
}

/*
 * Converts one textual value (from the file, or a default from the table) into base.
 * s is NULL for defaults; then errors point at the schema, which is a bug caught by tests.
 */
static enum um_status
cfg_set_text(struct cfg_ctx *ctx, const struct cfg_item *it, void *base, const char *val,
             const config_setting_t *s, const char *path)
{
    char *slot = (char *)base + it->off;
    const char *why = NULL;

    switch (it->kind) {
    case CFG_STRING:
        if (val[0] == '\0')
            return cfg_fail(ctx, s, path, "must not be empty");
        return cfg_strdup(ctx, (char **)(void *)slot, val, false);
    case CFG_OSTRING:
        return cfg_strdup(ctx, (char **)(void *)slot, val, true);
    case CFG_SOCKET:
        if (!um_config_socket_valid(val, &why))
            return cfg_fail(ctx, s, path, "%s", why);
        return cfg_strdup(ctx, (char **)(void *)slot, val, false);
    case CFG_OCTAL: {
        char *end;
        long m;
        size_t n = strlen(val);
        if (n < 3 || n > 4 || strspn(val, "01234567") != n)
            return cfg_fail(ctx, s, path, "expected permission bits as an octal string, e.g. \"0660\"");
        m = strtol(val, &end, 8);
        if (m < it->min || m > it->max)
            return cfg_fail(ctx, s, path, "permission bits must be at most 0777");
        *(int *)(void *)slot = (int)m;
        return UM_OK;
    }
    case CFG_LOGLEVEL:
        if (um_log_level_parse(val, (enum um_log_level *)(void *)slot) != UM_OK)
            return cfg_fail(ctx, s, path, "expected err, warning, info or debug, not \"%s\"", val);
        return UM_OK;
    case CFG_LOGTARGET:
        if (strcmp(val, "syslog") == 0)
            *(enum um_log_target *)(void *)slot = UM_LOG_TARGET_SYSLOG;
        else if (strcmp(val, "stderr") == 0)
            *(enum um_log_target *)(void *)slot = UM_LOG_TARGET_STDERR;
        else
            return cfg_fail(ctx, s, path, "expected syslog or stderr, not \"%s\"", val);
        return UM_OK;
    case CFG_MODE:
        if (um_mode_parse(val, (enum um_mode *)(void *)slot) != UM_OK)
            return cfg_fail(ctx, s, path, "expected inbound, outbound or skip, not \"%s\"", val);
        return UM_OK;
    case CFG_INT: {
        char *end;
        long v;
        errno = 0;
        v = strtol(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0')
            return cfg_fail(ctx, s, path, "expected %s as an integer", it->what);
        if (v < it->min || v > it->max)
            return cfg_fail(ctx, s, path, "%ld is out of range (%ld-%ld %s)", v, it->min,
                            it->max, it->what);
        *(int *)(void *)slot = (int)v;
        return UM_OK;
    }
    case CFG_PORT:
        *(int *)(void *)slot = -1;
        return UM_OK;
    case CFG_BOOL:
        *(bool *)(void *)slot = strcmp(val, "true") == 0;
        return UM_OK;
    case CFG_TRISTATE:
        *(enum um_tristate *)(void *)slot = UM_TRI_ANY;
        return UM_OK;
    case CFG_GROUP:
    case CFG_RULES:
        return UM_OK;
    }
    return UM_OK;
}

/* Type-checks one scalar setting from the file and stores it. */
static enum um_status
cfg_set_setting(struct cfg_ctx *ctx, const struct cfg_item *it, void *base,
                const config_setting_t *s, const char *path)
{
    char *slot = (char *)base + it->off;
    int type = config_setting_type(s);
    char num[32];

    switch (it->kind) {
    case CFG_INT:
    case CFG_PORT:
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            return cfg_fail(ctx, s, path, "expected %s as an integer", it->what);
        (void)snprintf(num, sizeof(num), "%lld", config_setting_get_int64(s));
        if (it->kind == CFG_PORT) {
            long long v = config_setting_get_int64(s);
            if (v < it->min || v > it->max)
                return cfg_fail(ctx, s, path, "%lld is out of range (%ld-%ld)", v, it->min,
                                it->max);
            *(int *)(void *)slot = (int)v;
            return UM_OK;
        }
        return cfg_set_text(ctx, it, base, num, s, path);
    case CFG_BOOL:
    case CFG_TRISTATE:
        if (type != CONFIG_TYPE_BOOL)
            return cfg_fail(ctx, s, path, "expected true or false");
        if (it->kind == CFG_BOOL)
            *(bool *)(void *)slot = config_setting_get_bool(s) != 0;
        else
            *(enum um_tristate *)(void *)slot = config_setting_get_bool(s) ? UM_TRI_YES : UM_TRI_NO;
        return UM_OK;
    case CFG_GROUP:
    case CFG_RULES:
        return UM_OK; /* handled by the walker */
    case CFG_STRING:
    case CFG_OSTRING:
    case CFG_OCTAL:
    case CFG_SOCKET:
    case CFG_LOGLEVEL:
    case CFG_LOGTARGET:
    case CFG_MODE:
        if (type != CONFIG_TYPE_STRING)
            return cfg_fail(ctx, s, path, "expected a string in double quotes");
        if (it->line_off != 0)
            *(int *)(void *)((char *)base + it->line_off) = config_setting_source_line(s);
        return cfg_set_text(ctx, it, base, config_setting_get_string(s), s, path);
    }
    return UM_OK;
}

static enum um_status cfg_walk_group(struct cfg_ctx *ctx, const config_setting_t *g,
                                     const char *schema_prefix, const char *shown_prefix,
                                     void *base);

static enum um_status
cfg_walk_rules(struct cfg_ctx *ctx, const config_setting_t *list, const char *path)
{
    struct um_config *cfg = ctx->cfg;
    int n = config_setting_length(list);
    enum um_status st;
    char shown[128];

    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_fail(ctx, list, path, "expected a list of rules: ( { ... }, { ... } )");
    if (n == 0)
        return UM_OK;
    cfg->mode.rule = calloc((size_t)n, sizeof(*cfg->mode.rule));
    if (cfg->mode.rule == NULL)
        return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct um_mode_rule *r = &cfg->mode.rule[i];
        bool has_mode;

        r->daemon_port = -1;
        r->authenticated = UM_TRI_ANY;
        r->line = config_setting_source_line(e);
        cfg->mode.n = (size_t)i + 1;
        (void)snprintf(shown, sizeof(shown), "%s.[%d]", path, i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP)
            return cfg_fail(ctx, e, shown, "expected a rule in braces: { daemon_name = \"...\"; mode = \"...\"; }");
        has_mode = config_setting_get_member(e, "mode") != NULL;
        r->mode = UM_MODE_INBOUND;
        st = cfg_walk_group(ctx, e, "mode.rules.[]", shown, r);
        if (st != UM_OK)
            return st;
        if (!has_mode)
            return cfg_fail(ctx, e, shown, "a rule needs mode = \"inbound\", \"outbound\" or \"skip\"");
        if (r->daemon_name == NULL && r->daemon_port < 0 && r->authenticated == UM_TRI_ANY)
            return cfg_fail(ctx, e, shown,
                            "a rule needs at least one of daemon_name, daemon_port, authenticated");
    }
    return UM_OK;
}

static enum um_status
cfg_walk_group(struct cfg_ctx *ctx, const config_setting_t *g, const char *schema_prefix,
               const char *shown_prefix, void *base)
{
    int n = config_setting_length(g);
    char spath[128], shown[160];
    enum um_status st;

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct cfg_item *it;

        if (schema_prefix[0] == '\0') {
            (void)snprintf(spath, sizeof(spath), "%s", name);
            (void)snprintf(shown, sizeof(shown), "%s", name);
        } else {
            (void)snprintf(spath, sizeof(spath), "%s.%s", schema_prefix, name);
            (void)snprintf(shown, sizeof(shown), "%s.%s", shown_prefix, name);
        }
        it = cfg_find(spath);
        if (it == NULL)
            return cfg_fail(ctx, s, shown, "unknown setting");
        if (it->kind == CFG_GROUP) {
            if (config_setting_type(s) != CONFIG_TYPE_GROUP)
                return cfg_fail(ctx, s, shown, "expected a group: %s = { ... };", name);
            st = cfg_walk_group(ctx, s, spath, shown, base);
        } else if (it->kind == CFG_RULES) {
            st = cfg_walk_rules(ctx, s, shown);
        } else {
            st = cfg_set_setting(ctx, it, base, s, shown);
        }
        if (st != UM_OK)
            return st;
    }
    return UM_OK;
}

static enum um_status
cfg_defaults(struct cfg_ctx *ctx)
{
    for (size_t i = 0; i < CFG_NSCHEMA; i++) {
        const struct cfg_item *it = &cfg_schema[i];
        enum um_status st;

        if (strstr(it->path, "[]") != NULL)
            continue;
        st = cfg_set_text(ctx, it, ctx->cfg, it->dflt, NULL, it->path);
        if (st != UM_OK)
            return st;
    }
    return UM_OK;
}

static enum um_status
cfg_finish(struct cfg_ctx *ctx)
{
    struct um_config *cfg = ctx->cfg;
    char host[256];

    if (cfg->authserv_id == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            (void)snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        if (cfg_strdup(ctx, &cfg->authserv_id, host, false) != UM_OK)
            return UM_ENOMEM;
    }
    return UM_OK;
}

enum um_status
um_config_load(const char *path, struct um_config **out, struct um_error *err)
{
    config_t cf;
    struct um_config *cfg;
    struct cfg_ctx ctx;
    enum um_status st;
    char dir[PATH_MAX];
    const char *slash;
    FILE *fp;

    *out = NULL;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return um_error_set(err, UM_ENOMEM, "out of memory");
    atomic_init(&cfg->refs, 1);
    ctx.file = path;
    ctx.dir = NULL;
    ctx.cfg = cfg;
    ctx.err = err;
    cfg->path = strdup(path);
    if (cfg->path == NULL) {
        um_config_unref(cfg);
        return um_error_set(err, UM_ENOMEM, "out of memory");
    }
    st = cfg_defaults(&ctx);
    if (st != UM_OK) {
        um_config_unref(cfg);
        return st;
    }

    fp = fopen(path, "r");
    if (fp == NULL) {
        char eb[128];
        int e = errno;
        um_config_unref(cfg);
        return um_error_set(err, UM_EIO, "%s: cannot open: %s", path, um_strerror(e, eb, sizeof(eb)));
    }
    config_init(&cf);
    slash = strrchr(path, '/');
    if (slash != NULL && (size_t)(slash - path) < sizeof(dir)) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        config_set_include_dir(&cf, dir[0] == '\0' ? "/" : dir);
        ctx.dir = config_get_include_dir(&cf);
    }
    if (config_read(&cf, fp) != CONFIG_TRUE) {
        const char *ef = config_error_file(&cf);
        st = um_error_set(err, UM_EINVAL, "%s:%d: syntax error: %s", ef != NULL ? ef : path,
                          config_error_line(&cf), config_error_text(&cf));
    } else {
        st = cfg_walk_group(&ctx, config_root_setting(&cf), "", "", cfg);
        if (st == UM_OK)
            st = cfg_finish(&ctx);
    }
    config_destroy(&cf);
    (void)fclose(fp);
    if (st != UM_OK) {
        um_config_unref(cfg);
        return st;
    }
    *out = cfg;
    return UM_OK;
}

struct um_config *
um_config_ref(struct um_config *cfg)
{
    if (cfg != NULL)
        atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void
um_config_unref(struct um_config *cfg)
{
    if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) != 1)
        return;
    for (size_t i = 0; i < cfg->mode.n; i++)
        free(cfg->mode.rule[i].daemon_name);
    free(cfg->mode.rule);
    free(cfg->path);
    free(cfg->socket);
    free(cfg->socket_group);
    free(cfg->user);
    free(cfg->group);
    free(cfg->authserv_id);
    free(cfg);
}
