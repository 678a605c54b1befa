/*
 * test_config - lib/config: a valid file, every error class with its exact message,
 * defaults, and the example configuration documenting every setting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[] = "/tmp/um_test_config.XXXXXX";

static const char *
write_conf(const char *name, const char *text)
{
    static char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void
test_valid(void **state)
{
    struct um_config *cfg = NULL;
    struct um_error err = {0};
    const char *p;

    (void)state;
    p = write_conf("valid.conf",
                   "socket = \"inet:8891@127.0.0.1\";\n"
                   "socket_mode = \"0666\";\n"
                   "user = \"nobody\";\n"
                   "authserv_id = \"mx.example.org\";\n"
                   "shutdown_timeout = 5;\n"
                   "log = { target = \"stderr\"; level = \"debug\"; };\n"
                   "mode = { default = \"skip\"; rules = (\n"
                   "  { daemon_name = \"ORIGINATING\"; mode = \"outbound\"; },\n"
                   "  { daemon_port = 587; authenticated = true; mode = \"outbound\"; }\n"
                   "); };\n"
                   "debug = { trace_header = true; };\n");
    if (um_config_load(p, &cfg, &err) != UM_OK)
        fail_msg("valid config rejected: %s", err.msg);
    assert_string_equal(cfg->socket, "inet:8891@127.0.0.1");
    assert_int_equal(cfg->socket_mode, 0666);
    assert_string_equal(cfg->user, "nobody");
    assert_null(cfg->group);
    assert_string_equal(cfg->authserv_id, "mx.example.org");
    assert_int_equal(cfg->shutdown_timeout, 5);
    assert_int_equal(cfg->log_target, UM_LOG_TARGET_STDERR);
    assert_int_equal(cfg->log_level, UM_LOG_DEBUG);
    assert_int_equal(cfg->mode.dflt, UM_MODE_SKIP);
    assert_int_equal(cfg->mode.n, 2);
    assert_string_equal(cfg->mode.rule[0].daemon_name, "ORIGINATING");
    assert_int_equal(cfg->mode.rule[0].daemon_port, -1);
    assert_int_equal(cfg->mode.rule[0].authenticated, UM_TRI_ANY);
    assert_int_equal(cfg->mode.rule[0].line, 8);
    assert_null(cfg->mode.rule[1].daemon_name);
    assert_int_equal(cfg->mode.rule[1].daemon_port, 587);
    assert_int_equal(cfg->mode.rule[1].authenticated, UM_TRI_YES);
    assert_true(cfg->trace_header);
    um_config_unref(cfg);

    p = write_conf("valid2.conf",
                   "ratelimit = { limit = 10; window = 600; action = \"hold\";\n"
                   "  key = [\"uid\", \"sender\"];\n"
                   "  overrides = ( { sender = \"@lists.example.org\"; exempt = true; },\n"
                   "                { sender = \"sasl:bulk\"; limit = 5000; } );\n"
                   "  notify = { mail_to = \"postmaster@example.org\"; }; };\n"
                   "dkim_sign = { header_canonicalization = \"simple\";\n"
                   "  keys = ( { name = \"r\"; domain = \"example.org\"; selector = \"s1\"; file = "
                   "\"/k/r.pem\"; },\n"
                   "           { name = \"e\"; domain = \"example.org\"; selector = \"s2\"; file = "
                   "\"/k/e.pem\"; identity = \"@example.org\"; } );\n"
                   "  rules = ( { from = \"*.example.org\"; keys = [\"r\", \"e\"]; } ); };\n");
    if (um_config_load(p, &cfg, &err) != UM_OK)
        fail_msg("valid config rejected: %s", err.msg);
    assert_int_equal(cfg->ratelimit.limit, 10);
    assert_int_equal(cfg->ratelimit.window, 600);
    assert_int_equal(cfg->ratelimit.action, UM_RL_ACTION_HOLD);
    assert_int_equal(cfg->ratelimit.nkey, 2);
    assert_string_equal(cfg->ratelimit.key[0], "uid");
    assert_int_equal(cfg->ratelimit.nrule, 2);
    assert_true(cfg->ratelimit.rule[0].exempt);
    assert_int_equal(cfg->ratelimit.rule[0].limit, -1);
    assert_int_equal(cfg->ratelimit.rule[1].limit, 5000);
    assert_false(cfg->ratelimit.rule[1].exempt);
    assert_string_equal(cfg->ratelimit.notify_mail_to, "postmaster@example.org");
    assert_null(cfg->ratelimit.notify_command);
    assert_int_equal(cfg->dkim_sign.header_canon, 1);
    assert_int_equal(cfg->dkim_sign.body_canon, 0);
    assert_int_equal(cfg->dkim_sign.nkey, 2);
    assert_null(cfg->dkim_sign.key[0].identity);
    assert_string_equal(cfg->dkim_sign.key[1].identity, "@example.org");
    assert_int_equal(cfg->dkim_sign.nrule, 1);
    assert_int_equal(cfg->dkim_sign.rule[0].nkeys, 2);
    assert_int_equal(cfg->dkim_sign.rule[0].line, 9);
    um_config_unref(cfg);
}

static void
test_defaults(void **state)
{
    struct um_config *cfg = NULL;
    struct um_error err = {0};
    char host[256];

    (void)state;
    assert_int_equal(um_config_load(write_conf("empty.conf", "# nothing\n"), &cfg, &err), UM_OK);
    assert_string_equal(cfg->socket, "unix:/run/unimilter/unimilter.sock");
    assert_int_equal(cfg->socket_mode, 0660);
    assert_null(cfg->socket_group);
    assert_string_equal(cfg->user, "unimilter");
    assert_int_equal(cfg->shutdown_timeout, 30);
    assert_int_equal(cfg->log_target, UM_LOG_TARGET_SYSLOG);
    assert_int_equal(cfg->log_level, UM_LOG_INFO);
    assert_int_equal(cfg->mode.dflt, UM_MODE_INBOUND);
    assert_int_equal(cfg->mode.n, 0);
    assert_false(cfg->trace_header);
    assert_true(cfg->ratelimit.enabled);
    assert_int_equal(cfg->ratelimit.limit, 100);
    assert_int_equal(cfg->ratelimit.window, 3600);
    assert_int_equal(cfg->ratelimit.action, UM_RL_ACTION_TEMPFAIL);
    assert_int_equal(cfg->ratelimit.nkey, 2);
    assert_string_equal(cfg->ratelimit.key[1], "sender");
    assert_string_equal(cfg->ratelimit.state_file, "/var/lib/unimilter/ratelimit.state");
    assert_string_equal(cfg->control_socket, "/run/unimilter/control.sock");
    assert_int_equal(cfg->dkim_sign.nkey, 0);
    assert_null(cfg->dkim_sign.headers);
    gethostname(host, sizeof(host));
    assert_string_equal(cfg->authserv_id, host);
    /* A reference keeps the snapshot alive after the loader's reference is gone. */
    assert_ptr_equal(um_config_ref(cfg), cfg);
    um_config_unref(cfg);
    assert_string_equal(cfg->user, "unimilter");
    um_config_unref(cfg);
    um_config_unref(NULL);
}

/* One row per error class; "F" in want stands for the file's path. */
static const struct {
    const char *name, *text, *want;
} error_cases[] = {
    {"syntax", "socket = \"unix:/x\";\nuser = ;\n", "F:2: syntax error: syntax error"},
    {"unknown top", "\n\nsockets = \"unix:/x\";\n", "F:3: sockets: unknown setting"},
    {"unknown nested", "log = {\n  levle = \"info\";\n};\n", "F:2: log.levle: unknown setting"},
    {"unknown in rule", "mode = { rules = (\n { daemon_nam = \"X\"; mode = \"skip\"; }\n); };\n",
     "F:2: mode.rules.[0].daemon_nam: unknown setting"},
    {"int as string", "shutdown_timeout = \"30\";\n",
     "F:1: shutdown_timeout: expected seconds as an integer"},
    {"int as float", "\nshutdown_timeout = 2.5;\n",
     "F:2: shutdown_timeout: expected seconds as an integer"},
    {"int range", "shutdown_timeout = 7200;\n",
     "F:1: shutdown_timeout: 7200 is out of range (0-3600 seconds)"},
    {"string as int", "user = 5;\n", "F:1: user: expected a string in double quotes"},
    {"empty string", "user = \"\";\n", "F:1: user: must not be empty"},
    {"bool as string", "debug = { trace_header = \"yes\"; };\n",
     "F:1: debug.trace_header: expected true or false"},
    {"group as scalar", "log = \"stderr\";\n", "F:1: log: expected a group: log = { ... };"},
    {"bad enum", "log = { level = \"verbose\"; };\n",
     "F:1: log.level: expected err, warning, info or debug, not \"verbose\""},
    {"bad target", "log = { target = \"file\"; };\n",
     "F:1: log.target: expected syslog or stderr, not \"file\""},
    {"bad socket", "socket = \"/run/x.sock\";\n",
     "F:1: socket: expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST"},
    {"bad inet port", "socket = \"inet:99999@127.0.0.1\";\n",
     "F:1: socket: expected inet:PORT@HOST or inet6:PORT@HOST with PORT 1-65535"},
    {"relative unix", "socket = \"unix:run/x.sock\";\n",
     "F:1: socket: a unix socket needs an absolute path, as in unix:/run/unimilter/unimilter.sock"},
    {"bad mode bits", "socket_mode = \"rw\";\n",
     "F:1: socket_mode: expected permission bits as an octal string, e.g. \"0660\""},
    {"bad mode", "mode = { default = \"verify\"; };\n",
     "F:1: mode.default: expected inbound, outbound or skip, not \"verify\""},
    {"rules not list", "mode = { rules = 3; };\n",
     "F:1: mode.rules: expected a list: ( { daemon_name = \"...\"; mode = \"...\"; }, ... )"},
    {"rule not group", "mode = { rules = ( \"x\" ); };\n",
     "F:1: mode.rules.[0]: expected braces: { daemon_name = \"...\"; mode = \"...\"; }"},
    {"rule without mode", "mode = { rules = (\n\n { daemon_port = 587; }\n); };\n",
     "F:3: mode.rules.[0]: a rule needs mode = \"inbound\", \"outbound\" or \"skip\""},
    {"rule without condition", "mode = { rules = ( { mode = \"skip\"; } ); };\n",
     "F:1: mode.rules.[0]: a rule needs at least one of daemon_name, daemon_port, authenticated"},
    {"rule port range",
     "mode = { rules = (\n { mode = \"skip\"; },\n { daemon_port = 0; mode = \"skip\"; }\n); };\n",
     "F:2: mode.rules.[0]: a rule needs at least one of daemon_name, daemon_port, authenticated"},
    {"second rule port",
     "mode = { rules = (\n { daemon_port = 25; mode = \"skip\"; },\n { daemon_port = 70000; mode = "
     "\"skip\"; }\n); };\n",
     "F:3: mode.rules.[1].daemon_port: 70000 is out of range (1-65535)"},
    {"duplicate", "user = \"a\";\nuser = \"b\";\n", "F:2: syntax error: duplicate setting name"},
    {"enum", "ratelimit = {\n action = \"drop\";\n};\n",
     "F:2: ratelimit.action: expected tempfail, hold or reject, not \"drop\""},
    {"window as string", "ratelimit = { window = \"1h\"; };\n",
     "F:1: ratelimit.window: expected seconds as an integer"},
    {"window zero", "ratelimit = { window = 0; };\n",
     "F:1: ratelimit.window: 0 is out of range (1-2678400 seconds)"},
    {"key source", "ratelimit = { key = [\"sasl\", \"login\"]; };\n",
     "F:1: ratelimit.key: \"login\" is not a sender key source (sasl, sender, sender_domain, "
     "client_ip, uid)"},
    {"key not array", "ratelimit = { key = \"sasl\"; };\n",
     "F:1: ratelimit.key: expected an array of strings: [\"a\", \"b\"]"},
    {"override both",
     "ratelimit = { overrides = (\n { sender = \"sasl:a\"; limit = 5; exempt = true; }\n); };\n",
     "F:2: ratelimit.overrides.[0]: an override needs either limit = N or exempt = true"},
    {"override neither", "ratelimit = { overrides = ( { sender = \"sasl:a\"; } ); };\n",
     "F:1: ratelimit.overrides.[0]: an override needs either limit = N or exempt = true"},
    {"override no sender", "ratelimit = { overrides = ( { limit = 5; } ); };\n",
     "F:1: ratelimit.overrides.[0]: an override needs sender = \"...\""},
    {"key incomplete",
     "dkim_sign = { keys = (\n { name = \"k\"; domain = \"example.org\"; }\n); };\n",
     "F:2: dkim_sign.keys.[0]: a key needs name, domain, selector and file"},
    {"key dup",
     "dkim_sign = { keys = (\n { name = \"k\"; domain = \"a.org\"; selector = \"s\"; file = "
     "\"/k\"; },\n { name = \"k\"; domain = \"b.org\"; selector = \"s\"; file = \"/k2\"; }\n); "
     "};\n",
     "F:3: dkim_sign.keys.[1]: key name \"k\" is already used on line 2"},
    {"rule unknown key",
     "dkim_sign = { keys = ();\n rules = (\n { from = \"a.org\"; keys = [\"nokey\"]; }\n); };\n",
     "F:3: dkim_sign.rules.[0].keys: no key named \"nokey\" in dkim_sign.keys"},
    {"header name", "dkim_sign = { headers = [\"From\", \"Sub ject\"]; };\n",
     "F:1: dkim_sign.headers: \"Sub ject\" is not a header field name"},
    {"canon", "dkim_sign = { body_canonicalization = \"nofws\"; };\n",
     "F:1: dkim_sign.body_canonicalization: expected relaxed or simple, not \"nofws\""},
};

static void
test_errors(void **state)
{
    char name[64], want[512];
    int failures = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        struct um_config *cfg = NULL;
        struct um_error err = {0};
        const char *p, *f;
        enum um_status st;

        snprintf(name, sizeof(name), "err%zu.conf", i);
        p = write_conf(name, error_cases[i].text);
        st = um_config_load(p, &cfg, &err);
        f = error_cases[i].want;
        if (*f == 'F')
            snprintf(want, sizeof(want), "%s%s", p, f + 1);
        else
            snprintf(want, sizeof(want), "%s", f);
        if (st != UM_EINVAL || cfg != NULL || strcmp(err.msg, want) != 0) {
            print_error("%s: got %s \"%s\", want EINVAL \"%s\"\n", error_cases[i].name,
                        um_status_name(st), err.msg, want);
            failures++;
            um_config_unref(cfg);
        }
    }
    assert_int_equal(failures, 0);
}

static void
test_missing_file(void **state)
{
    struct um_config *cfg = NULL;
    struct um_error err = {0};

    (void)state;
    assert_int_equal(um_config_load("/nonexistent/unimilter.conf", &cfg, &err), UM_EIO);
    assert_null(cfg);
    assert_string_equal(err.msg,
                        "/nonexistent/unimilter.conf: cannot open: No such file or directory");
}

static void
test_include(void **state)
{
    struct um_config *cfg = NULL;
    struct um_error err = {0};
    char text[600];

    (void)state;
    write_conf("inc.conf", "log = {\n  level = \"loud\";\n};\n");
    snprintf(text, sizeof(text), "user = \"x\";\n@include \"inc.conf\"\n");
    assert_int_equal(um_config_load(write_conf("main.conf", text), &cfg, &err), UM_EINVAL);
    /* The error names the included file and its line. */
    snprintf(text, sizeof(text),
             "%s/inc.conf:2: log.level: expected err, warning, info or debug, not \"loud\"",
             tmpdir);
    assert_string_equal(err.msg, text);
}

/* Every setting in the schema appears in the example file, with its default stated. */
static void
test_example_documents_every_setting(void **state)
{
    char path[512], *text;
    FILE *fp;
    long n;
    struct um_config *cfg = NULL;
    struct um_error err = {0};
    int missing = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/conf/unimilter.conf", UM_SOURCE_DIR);
    fp = fopen(path, "r");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    text = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(text, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    for (size_t i = 0; i < um_config_schema_count(); i++) {
        struct um_config_doc d;
        const char *leaf;
        char needle[128];

        um_config_schema_get(i, &d);
        leaf = strrchr(d.path, '.');
        leaf = leaf == NULL ? d.path : leaf + 1;
        snprintf(needle, sizeof(needle), "%s", leaf);
        if (strstr(text, needle) == NULL) {
            print_error("setting %s is not documented in conf/unimilter.conf\n", d.path);
            missing++;
        }
        if (d.doc == NULL || d.doc[0] == '\0') {
            print_error("setting %s has no documentation sentence\n", d.path);
            missing++;
        }
    }
    free(text);
    assert_int_equal(missing, 0);
    /* And the example itself is valid. */
    if (um_config_load(path, &cfg, &err) != UM_OK)
        fail_msg("example config rejected: %s", err.msg);
    assert_int_equal(cfg->mode.n, 4);
    um_config_unref(cfg);
}

/* Every word of every choice setting stores its own module's enum value (the name tables in
 * config.c are the only place a word meets its value, so a table out of order shows here). */
enum choice_field {
    CF_RL_ACTION,
    CF_RL_BACKEND,
    CF_RL_ON_ERROR,
    CF_VIA,
    CF_TLS,
    CF_METHOD,
    CF_REJECT,
    CF_QUARANTINE,
    CF_BAD_FROM,
    CF_TEMPERROR,
    CF_STORE,
    CF_HCANON,
    CF_BCANON,
    CF_SIGN_ON_ERROR,
};

static int
choice_get(const struct um_config *c, enum choice_field f)
{
    switch (f) {
    case CF_RL_ACTION:
        return (int)c->ratelimit.action;
    case CF_RL_BACKEND:
        return (int)c->ratelimit.backend;
    case CF_RL_ON_ERROR:
        return (int)c->ratelimit.redis_on_error;
    case CF_VIA:
        return (int)c->submit.via;
    case CF_TLS:
        return (int)c->submit.starttls;
    case CF_METHOD:
        return (int)c->inbound.dmarc_method;
    case CF_REJECT:
        return (int)c->inbound.reject_action;
    case CF_QUARANTINE:
        return (int)c->inbound.quarantine_action;
    case CF_BAD_FROM:
        return (int)c->inbound.bad_from_action;
    case CF_TEMPERROR:
        return (int)c->inbound.temperror_action;
    case CF_STORE:
        return (int)c->reports.history_store;
    case CF_HCANON:
        return (int)c->dkim_sign.header_canon;
    case CF_BCANON:
        return (int)c->dkim_sign.body_canon;
    case CF_SIGN_ON_ERROR:
        return (int)c->dkim_sign.on_error;
    }
    return -1;
}

static void
test_choices_are_enums(void **state)
{
    static const struct {
        const char *conf;
        enum choice_field f;
        int want;
    } rows[] = {
        {"", CF_RL_ACTION, UM_RL_ACTION_TEMPFAIL},
        {"ratelimit = { action = \"tempfail\"; };", CF_RL_ACTION, UM_RL_ACTION_TEMPFAIL},
        {"ratelimit = { action = \"hold\"; };", CF_RL_ACTION, UM_RL_ACTION_HOLD},
        {"ratelimit = { action = \"reject\"; };", CF_RL_ACTION, UM_RL_ACTION_REJECT},
        {"", CF_RL_BACKEND, UM_RL_BACKEND_MEMORY},
        {"ratelimit = { backend = \"redis\"; };", CF_RL_BACKEND, UM_RL_BACKEND_REDIS},
        {"", CF_RL_ON_ERROR, UM_RL_ON_ERROR_LOCAL},
        {"ratelimit = { redis = { on_error = \"tempfail\"; }; };", CF_RL_ON_ERROR,
         UM_RL_ON_ERROR_TEMPFAIL},
        {"ratelimit = { redis = { on_error = \"accept\"; }; };", CF_RL_ON_ERROR,
         UM_RL_ON_ERROR_ACCEPT},
        {"", CF_VIA, UM_SUBMIT_VIA_SMTP},
        {"submit = { via = \"sendmail\"; };", CF_VIA, UM_SUBMIT_VIA_SENDMAIL},
        {"", CF_TLS, UM_SUBMIT_TLS_AUTO},
        {"submit = { starttls = \"always\"; };", CF_TLS, UM_SUBMIT_TLS_ALWAYS},
        {"submit = { starttls = \"never\"; };", CF_TLS, UM_SUBMIT_TLS_NEVER},
        {"", CF_METHOD, UM_DMARC_METHOD_TREEWALK},
        {"inbound = { dmarc_method = \"psl\"; };", CF_METHOD, UM_DMARC_METHOD_PSL},
        {"", CF_REJECT, UM_ACTION_REJECT},
        {"inbound = { reject_action = \"hold\"; };", CF_REJECT, UM_ACTION_HOLD},
        {"inbound = { reject_action = \"tag\"; };", CF_REJECT, UM_ACTION_TAG},
        {"", CF_QUARANTINE, UM_ACTION_HOLD},
        {"inbound = { quarantine_action = \"tag\"; };", CF_QUARANTINE, UM_ACTION_TAG},
        {"inbound = { quarantine_action = \"reject\"; };", CF_QUARANTINE, UM_ACTION_REJECT},
        {"", CF_BAD_FROM, UM_ACTION_REJECT},
        {"inbound = { bad_from_action = \"tempfail\"; };", CF_BAD_FROM, UM_ACTION_TEMPFAIL},
        {"inbound = { bad_from_action = \"accept\"; };", CF_BAD_FROM, UM_ACTION_ACCEPT},
        {"", CF_TEMPERROR, UM_ACTION_ACCEPT},
        {"inbound = { temperror_action = \"tempfail\"; };", CF_TEMPERROR, UM_ACTION_TEMPFAIL},
        {"", CF_STORE, UM_HISTORY_STORE_SQLITE},
        {"reports = { history_store = \"postgresql\"; };", CF_STORE, UM_HISTORY_STORE_POSTGRESQL},
        {"", CF_HCANON, UM_DKIM_CANON_RELAXED},
        {"dkim_sign = { header_canonicalization = \"simple\"; };", CF_HCANON, UM_DKIM_CANON_SIMPLE},
        {"dkim_sign = { body_canonicalization = \"simple\"; };", CF_BCANON, UM_DKIM_CANON_SIMPLE},
        {"", CF_SIGN_ON_ERROR, UM_ACTION_ACCEPT},
        {"dkim_sign = { on_error = \"tempfail\"; };", CF_SIGN_ON_ERROR, UM_ACTION_TEMPFAIL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct um_config *cfg = NULL;
        struct um_error err = {0};
        int got;

        if (um_config_load(write_conf("choice.conf", rows[i].conf), &cfg, &err) != UM_OK)
            fail_msg("row %zu (%s): rejected: %s", i, rows[i].conf, err.msg);
        got = choice_get(cfg, rows[i].f);
        if (got != rows[i].want)
            fail_msg("row %zu (%s): got %d, want %d", i, rows[i].conf, got, rows[i].want);
        um_config_unref(cfg);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_choices_are_enums),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_example_documents_every_setting),
    };
    int rc;

    if (mkdtemp(tmpdir) == NULL)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            rc = rc == 0 ? 1 : rc;
    }
    return rc;
}
