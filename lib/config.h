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
#include "dkim_sign.h"
#include "dmarc.h"
#include "history.h"
#include "log.h"
#include "mode.h"
#include "policy.h"
#include "rlstore.h" /* enum um_rl_on_error */
#include "submit.h"

enum um_log_target {
    UM_LOG_TARGET_SYSLOG = 0,
    UM_LOG_TARGET_STDERR,
};

enum um_rl_action {
    UM_RL_ACTION_TEMPFAIL = 0, /* 451 4.7.1 for the recipient (SMTP) or message (local) */
    UM_RL_ACTION_HOLD,         /* accept, then hold the message for review (smfi_quarantine) */
    UM_RL_ACTION_REJECT,       /* 550 5.7.1 */
};

/* ratelimit.backend: where the counts live. */
enum um_rl_backend {
    UM_RL_BACKEND_MEMORY = 0, /* this process (lib/ratelimit.c) */
    UM_RL_BACKEND_REDIS,      /* shared by several hosts (lib/ratelimit_redis.c) */
};

/* ratelimit.overrides: one per-sender limit or exemption. */
struct um_cfg_rlrule {
    char *sender; /* "sasl:alice", "@example.org", "@.example.org", ... */
    int limit;    /* -1: not given */
    bool exempt;
    int line;
};

/* dkim_sign.keys: one private key. */
struct um_cfg_key {
    char *name, *domain, *selector, *file, *identity; /* identity may be NULL */
    int line;
};

/* dkim_sign.rules: From domain pattern -> key names. */
struct um_cfg_signrule {
    char *from;
    char **keys;
    size_t nkeys;
    int line;
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
    bool trace_header;          /* debug: add X-Unimilter-Mode to every message */
    char *control_socket;       /* unix:/path of the control socket, NULL: none */
    int control_socket_mode;    /* permission bits of the control socket */
    char *control_socket_group; /* NULL: the run user's group */
    int line_control_socket_group;

    char **dns_servers; /* forwarders "IP" or "IP@PORT"; NULL: /etc/resolv.conf */
    size_t ndns_servers;
    int dns_timeout; /* seconds per query */

    struct {
        bool enabled;
        int limit;  /* recipients per window */
        int window; /* seconds */
        enum um_rl_action action;
        bool monitor_only;
        char **key; /* sender key sources, in order */
        size_t nkey;
        int max_senders;
        char *state_file; /* NULL: counts are not kept across restarts */
        int snapshot_interval;
        struct um_cfg_rlrule *rule;
        size_t nrule;
        enum um_rl_backend backend;
        char *redis_host;
        int redis_port;
        char *redis_socket; /* NULL: TCP */
        char *redis_prefix;
        int redis_timeout_ms;
        enum um_rl_on_error redis_on_error;
        char *notify_command; /* NULL: none */
        char *notify_mail_to; /* NULL: none */
    } ratelimit;

    /* submit: how the daemon's own mail (notices) and `unimilter report` reach an MTA. */
    struct {
        enum um_submit_via via;
        char *relay; /* libcurl URL */
        enum um_submit_tls starttls;
        char *user;          /* NULL: no AUTH */
        char *password_file; /* NULL: none; read by um_runtime_build() */
        char *ca_file;       /* NULL: the system's CAs */
        int timeout;         /* seconds per attempt */
        char *from;          /* envelope sender of notices; NULL: <> */
        char *sendmail;      /* via sendmail: the binary */
        int line_relay, line_user, line_password_file;
    } submit;

    struct {
        bool spf;           /* check SPF */
        bool received_spf;  /* add a Received-SPF header */
        int max_signatures; /* DKIM signatures verified per message */
        int min_key_bits;   /* shorter RSA keys give dkim=policy */
        bool allow_rsa_sha1;
        bool dmarc;                        /* evaluate DMARC */
        enum um_dmarc_method dmarc_method; /* tree-walk (RFC 9989) or psl (RFC 7489) */
        char *psl_file;
        bool enforce; /* false: monitor only */
        /* What lib/policy.c does; each setting allows only some actions (config.c). */
        enum um_action reject_action;     /* p=reject: reject, hold or tag */
        enum um_action quarantine_action; /* p=quarantine: hold, tag or reject */
        enum um_action bad_from_action;   /* no From / several From: reject, tempfail, accept */
        enum um_action temperror_action;  /* DMARC temperror: accept or tempfail */
        char **exempt_domains;            /* From domains whose failures are not enforced */
        size_t nexempt_domains;
        char **exempt_clients; /* client IPs (forwarders) whose failures are not enforced */
        size_t nexempt_clients;
    } inbound;

    struct {
        char *history_file;                  /* NULL: DMARC evaluations are not recorded */
        enum um_history_store history_store; /* sqlite (history_file) or postgresql */
        char *postgresql;                    /* libpq conninfo; NULL when unset */
        int history_queue;                   /* records waiting for the writer, at most */
        int retention_days; /* `unimilter report` deletes older evaluations (0: never) */
        char *org_name;     /* report_metadata/org_name; NULL: reports cannot be sent */
        char *email;        /* report_metadata/email and the sender of report mail */
        char *receiver;     /* our domain in file names; NULL: the domain of email */
    } reports;

    struct {
        enum um_dkim_canon header_canon, body_canon;
        char **headers; /* NULL: the built-in list */
        size_t nheaders;
        enum um_action on_error; /* signing failed: accept (unsigned) or tempfail */
        struct um_cfg_key *key;
        size_t nkey;
        struct um_cfg_signrule *rule;
        size_t nrule;
        int line_keys, line_rules;
    } dkim_sign;
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
