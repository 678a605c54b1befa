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
#include "fileperm.h"
#include "ratelimit.h"
#include "senderkey.h"
#include "submit.h"

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
    CFG_STRING,  /* char *, never NULL */
    CFG_OSTRING, /* char *, NULL when unset or "" */
    CFG_INT,
    CFG_BOOL,
    CFG_OCTAL, /* permission bits written as a string, "0660" */
    CFG_SOCKET,
    CFG_LOGLEVEL,
    CFG_LOGTARGET,
    CFG_MODE,
    CFG_TRISTATE, /* bool in the file; UM_TRI_ANY when absent */
    CFG_PORT,     /* int, -1 when absent */
    CFG_ENUM,     /* string from names[], stored as that entry's value (an int-sized enum) */
    CFG_STRARRAY, /* ["a", "b"]: char ** at off, size_t count at count_off */
    CFG_LIST,     /* ( { ... }, ... ): array of elem_size at off, size_t count at count_off */
};

/* One word of a CFG_ENUM setting and the value it stores. */
struct cfg_name {
    const char *name; /* NULL ends a table */
    int value;
};

struct cfg_ctx;
/* Checks one list element after its fields were read (required fields, combinations). */
typedef enum um_status cfg_elem_check_fn(struct cfg_ctx *ctx, const config_setting_t *e,
                                         const char *shown, void *elem);

struct cfg_item {
    const char *path;
    enum cfg_kind kind;
    size_t off;      /* in struct um_config, or in struct um_mode_rule for "[]" paths */
    size_t line_off; /* offset of an int that records the line, or 0 */
    long min, max;
    const char *what; /* integer unit for messages: "seconds" */
    const char *dflt;
    const char *doc;
    const struct cfg_name *names;  /* CFG_ENUM */
    size_t count_off;              /* CFG_STRARRAY, CFG_LIST */
    size_t elem_size;              /* CFG_LIST */
    cfg_elem_check_fn *elem_check; /* CFG_LIST */
    const char *elem_hint;         /* CFG_LIST: how one element looks */
    /* CFG_STRARRAY: checks one element; writes why into buf and returns false if bad. */
    bool (*str_check)(const char *v, char *buf, size_t len);
};

static bool cfg_check_key_source(const char *v, char *buf, size_t len);
static bool cfg_check_header_name(const char *v, char *buf, size_t len);
static bool cfg_check_dns_server(const char *v, char *buf, size_t len);

#define CO(f) offsetof(struct um_config, f)
#define RO(f) offsetof(struct um_mode_rule, f)

static enum um_status cfg_check_mode_rule(struct cfg_ctx *, const config_setting_t *, const char *,
                                          void *);
static enum um_status cfg_check_rlrule(struct cfg_ctx *, const config_setting_t *, const char *,
                                       void *);
static enum um_status cfg_check_key(struct cfg_ctx *, const config_setting_t *, const char *,
                                    void *);
static enum um_status cfg_check_signrule(struct cfg_ctx *, const config_setting_t *, const char *,
                                         void *);

/* The words of each CFG_ENUM setting and the enum value each one stores, in the order the
 * error message lists them. These tables are the only place a name meets its value. */
static const struct cfg_name cfg_rl_actions[] = {{"tempfail", UM_RL_ACTION_TEMPFAIL},
                                                 {"hold", UM_RL_ACTION_HOLD},
                                                 {"reject", UM_RL_ACTION_REJECT},
                                                 {NULL, 0}};
static const struct cfg_name cfg_canons[] = {
    {"relaxed", UM_DKIM_CANON_RELAXED}, {"simple", UM_DKIM_CANON_SIMPLE}, {NULL, 0}};
static const struct cfg_name cfg_on_error[] = {
    {"accept", UM_ACTION_ACCEPT}, {"tempfail", UM_ACTION_TEMPFAIL}, {NULL, 0}};
static const struct cfg_name cfg_dmarc_methods[] = {
    {"tree-walk", UM_DMARC_METHOD_TREEWALK}, {"psl", UM_DMARC_METHOD_PSL}, {NULL, 0}};
static const struct cfg_name cfg_rl_backends[] = {
    {"memory", UM_RL_BACKEND_MEMORY}, {"redis", UM_RL_BACKEND_REDIS}, {NULL, 0}};
static const struct cfg_name cfg_history_stores[] = {
    {"sqlite", UM_HISTORY_STORE_SQLITE}, {"postgresql", UM_HISTORY_STORE_POSTGRESQL}, {NULL, 0}};
static const struct cfg_name cfg_redis_on_error[] = {{"tempfail", UM_RL_ON_ERROR_TEMPFAIL},
                                                     {"accept", UM_RL_ON_ERROR_ACCEPT},
                                                     {"local", UM_RL_ON_ERROR_LOCAL},
                                                     {NULL, 0}};
static const struct cfg_name cfg_reject_actions[] = {
    {"reject", UM_ACTION_REJECT}, {"hold", UM_ACTION_HOLD}, {"tag", UM_ACTION_TAG}, {NULL, 0}};
static const struct cfg_name cfg_quarantine_actions[] = {
    {"hold", UM_ACTION_HOLD}, {"tag", UM_ACTION_TAG}, {"reject", UM_ACTION_REJECT}, {NULL, 0}};
static const struct cfg_name cfg_bad_from_actions[] = {{"reject", UM_ACTION_REJECT},
                                                       {"tempfail", UM_ACTION_TEMPFAIL},
                                                       {"accept", UM_ACTION_ACCEPT},
                                                       {NULL, 0}};
static const struct cfg_name cfg_temperror_actions[] = {
    {"accept", UM_ACTION_ACCEPT}, {"tempfail", UM_ACTION_TEMPFAIL}, {NULL, 0}};
static const struct cfg_name cfg_submit_via[] = {
    {"smtp", UM_SUBMIT_VIA_SMTP}, {"sendmail", UM_SUBMIT_VIA_SENDMAIL}, {NULL, 0}};
static const struct cfg_name cfg_submit_tls[] = {{"auto", UM_SUBMIT_TLS_AUTO},
                                                 {"always", UM_SUBMIT_TLS_ALWAYS},
                                                 {"never", UM_SUBMIT_TLS_NEVER},
                                                 {NULL, 0}};

/* CFG_ENUM writes the value through an int: every enum a table feeds must be int-sized. */
_Static_assert(sizeof(enum um_rl_action) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_dkim_canon) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_action) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_dmarc_method) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_rl_backend) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_history_store) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_rl_on_error) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_submit_via) == sizeof(int), "enum size");
_Static_assert(sizeof(enum um_submit_tls) == sizeof(int), "enum size");

#define RL(f)       CO(ratelimit.f)
#define CFG_STR_(x) #x
#define CFG_STR(x)  CFG_STR_(x)
#define SU(f)       CO(submit.f)
#define DS(f)       CO(dkim_sign.f)
#define IB(f)       CO(inbound.f)
#define RR(f)       offsetof(struct um_cfg_rlrule, f)
#define KO(f)       offsetof(struct um_cfg_key, f)
#define SR(f)       offsetof(struct um_cfg_signrule, f)

/* Plain entries list the first nine fields in order; list and enum entries use designated
 * initializers. The remaining fields are zero on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
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
    {"control_socket", CFG_OSTRING, CO(control_socket), 0, 0, 0, NULL,
     "/run/unimilter/control.sock",
     "Unix socket path for `unimilter stats` and `unimilter reset` (empty: none); owned by "
     "the daemon's user, see control_socket_mode and control_socket_group."},
    {"control_socket_mode", CFG_OCTAL, CO(control_socket_mode), 0, 0, 0777, NULL, "0600",
     "Permission bits of the control socket, as an octal string (default: only root and the "
     "daemon's user may use it)."},
    {"control_socket_group", CFG_OSTRING, CO(control_socket_group), CO(line_control_socket_group),
     0, 0, NULL, "",
     "Group given to the control socket, for a control_socket_mode like \"0660\" (empty: the "
     "daemon's own group)."},
    {"dns", CFG_GROUP, 0, 0, 0, 0, NULL, "", "The one caching resolver all checks share."},
    {.path = "dns.servers",
     .kind = CFG_STRARRAY,
     .off = CO(dns_servers),
     .count_off = CO(ndns_servers),
     .dflt = "[]",
     .str_check = cfg_check_dns_server,
     .doc = "Upstream servers, \"IP\" or \"IP@PORT\" (empty: the nameservers in "
            "/etc/resolv.conf)."},
    {"dns.timeout", CFG_INT, CO(dns_timeout), 0, 1, 60, "seconds", "5",
     "Seconds a DNS query may take before it counts as a temporary error."},
    {"log", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Logging."},
    {"log.target", CFG_LOGTARGET, CO(log_target), 0, 0, 0, NULL, "syslog",
     "syslog (facility mail) or stderr."},
    {"log.level", CFG_LOGLEVEL, CO(log_level), 0, 0, 0, NULL, "info",
     "err, warning, info (one line per message) or debug."},
    {"mode", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Which job each MTA daemon's mail gets."},
    {"mode.default", CFG_MODE, CO(mode.dflt), 0, 0, 0, NULL, "inbound",
     "Mode when no rule matches: inbound, outbound or skip."},
    {.path = "mode.rules",
     .kind = CFG_LIST,
     .off = CO(mode.rule),
     .count_off = CO(mode.n),
     .elem_size = sizeof(struct um_mode_rule),
     .elem_check = cfg_check_mode_rule,
     .elem_hint = "{ daemon_name = \"...\"; mode = \"...\"; }",
     .dflt = "()",
     .doc = "Rules tried in order; the first whose conditions all hold gives the mode."},
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

    {"ratelimit", CFG_GROUP, 0, 0, 0, 0, NULL, "",
     "Per-sender recipient limit over a sliding window (outbound mode)."},
    {"ratelimit.enabled", CFG_BOOL, RL(enabled), 0, 0, 0, NULL, "true",
     "Count and limit recipients of outbound mail."},
    {"ratelimit.limit", CFG_INT, RL(limit), 0, 0, 100000, "recipients", "100",
     "Recipients a sender may have accepted in any span of `window` seconds."},
    {"ratelimit.window", CFG_INT, RL(window), 0, 1, 2678400, "seconds", "3600",
     "Length of the sliding window, in seconds (precision: 1 s)."},
    {.path = "ratelimit.action",
     .kind = CFG_ENUM,
     .off = RL(action),
     .names = cfg_rl_actions,
     .dflt = "tempfail",
     .doc = "Over the limit: tempfail (451 4.7.1), hold (accept into the MTA's hold queue "
            "for review) or reject (550 5.7.1)."},
    {"ratelimit.monitor_only", CFG_BOOL, RL(monitor_only), 0, 0, 0, NULL, "false",
     "Count and log what would be limited, change nothing."},
    {.path = "ratelimit.key",
     .kind = CFG_STRARRAY,
     .off = RL(key),
     .count_off = RL(nkey),
     .dflt = "[\"sasl\", \"sender\"]",
     .str_check = cfg_check_key_source,
     .doc = "Who the sender is, first source with a value wins: sasl, sender, sender_domain, "
            "client_ip, uid (Postfix's 'from userid N' for local submissions)."},
    {"ratelimit.max_senders", CFG_INT, RL(max_senders), 0, 1, 10000000, "senders", "100000",
     "Senders tracked at most; idle ones are evicted first."},
    {"ratelimit.state_file", CFG_OSTRING, RL(state_file), 0, 0, 0, NULL,
     "/var/lib/unimilter/ratelimit.state",
     "Snapshot of the counts, written periodically and at shutdown, read at start (empty: "
     "none)."},
    {"ratelimit.snapshot_interval", CFG_INT, RL(snapshot_interval), 0, 10, 86400, "seconds", "60",
     "Seconds between snapshots: at most this much counting is lost on a crash."},
    {.path = "ratelimit.overrides",
     .kind = CFG_LIST,
     .off = RL(rule),
     .count_off = RL(nrule),
     .elem_size = sizeof(struct um_cfg_rlrule),
     .elem_check = cfg_check_rlrule,
     .elem_hint = "{ sender = \"sasl:alice\"; limit = 500; }",
     .dflt = "()",
     .doc = "Per-sender limits (higher or lower) and exemptions."},
    {"ratelimit.overrides.[].sender", CFG_OSTRING, RR(sender), 0, 0, 0, NULL, "",
     "A sender key (\"sasl:alice\", \"sender:a@example.org\", \"uid:33\"), \"@domain\" or "
     "\"@.domain\" (subdomains)."},
    {"ratelimit.overrides.[].limit", CFG_INT, RR(limit), 0, 0, 100000, "recipients", "",
     "This sender's limit."},
    {"ratelimit.overrides.[].exempt", CFG_BOOL, RR(exempt), 0, 0, 0, NULL, "false",
     "Never limit (mailing lists, known bulk senders)."},
    {.path = "ratelimit.backend",
     .kind = CFG_ENUM,
     .off = RL(backend),
     .names = cfg_rl_backends,
     .dflt = "memory",
     .doc = "Where counts live: memory (this process) or redis (shared by several MX hosts; "
            "the same sliding-window semantics; counts not snapshotted)."},
    {"ratelimit.redis", CFG_GROUP, 0, 0, 0, 0, NULL, "", "The Redis server for backend redis."},
    {"ratelimit.redis.host", CFG_STRING, RL(redis_host), 0, 0, 0, NULL, "127.0.0.1",
     "Redis host as an IP address (names are resolved outside the timeout)."},
    {"ratelimit.redis.port", CFG_INT, RL(redis_port), 0, 1, 65535, "a port number", "6379",
     "Redis TCP port."},
    {"ratelimit.redis.socket", CFG_OSTRING, RL(redis_socket), 0, 0, 0, NULL, "",
     "Redis unix socket path; when set, host and port are not used."},
    {"ratelimit.redis.prefix", CFG_STRING, RL(redis_prefix), 0, 0, 0, NULL,
     "um:rl:", "Prefix of every Redis key unimilter writes."},
    {"ratelimit.redis.timeout_ms", CFG_INT, RL(redis_timeout_ms), 0, 10, 10000, "milliseconds",
     "200", "Bound on one Redis decision, connect included."},
    {.path = "ratelimit.redis.on_error",
     .kind = CFG_ENUM,
     .off = RL(redis_on_error),
     .names = cfg_redis_on_error,
     .dflt = "local",
     .doc = "Redis down or slow: tempfail the recipient, accept it uncounted, or count it in "
            "this process's memory (local) until Redis is back."},
    {"ratelimit.notify", CFG_GROUP, 0, 0, 0, 0, NULL, "",
     "Who hears about a sender over the limit, once per episode."},
    {"ratelimit.notify.command", CFG_OSTRING, RL(notify_command), 0, 0, 0, NULL, "",
     "Program run with the details in its environment (UM_SENDER, UM_COUNT, UM_LIMIT, "
     "UM_WINDOW, UM_CLIENT_IP, UM_RCPTS) (empty: none). An absolute path, owned by root "
     "(or the user unimilter starts as, when not root), not writable by group or others, nor the "
     "directories "
     "above it."},
    {"ratelimit.notify.mail_to", CFG_OSTRING, RL(notify_mail_to), 0, 0, 0, NULL, "",
     "Address mailed with the details, through the submit settings (empty: none)."},

    {"submit", CFG_GROUP, 0, 0, 0, 0, NULL, "",
     "How the daemon's own mail (rate-limit notices) and `unimilter report` reach an MTA."},
    {.path = "submit.via",
     .kind = CFG_ENUM,
     .off = SU(via),
     .names = cfg_submit_via,
     .dflt = "smtp",
     .doc = "smtp (to submit.relay; works under the shipped systemd unit) or sendmail "
            "(submit.sendmail; Postfix's setgid postdrop fails under NoNewPrivileges=yes)."},
    {"submit.relay", CFG_STRING, SU(relay), SU(line_relay), 0, 0, NULL, UM_SUBMIT_DEFAULT_RELAY,
     "SMTP relay as a URL: smtp://HOST[:PORT] or smtps://HOST[:PORT] (implicit TLS)."},
    {.path = "submit.starttls",
     .kind = CFG_ENUM,
     .off = SU(starttls),
     .names = cfg_submit_tls,
     .dflt = "auto",
     .doc = "auto (when offered, certificate not checked), always (required, certificate and "
            "name checked) or never."},
    {"submit.user", CFG_OSTRING, SU(user), SU(line_user), 0, 0, NULL, "",
     "SMTP AUTH user (empty: no AUTH); needs password_file."},
    {"submit.password_file", CFG_OSTRING, SU(password_file), SU(line_password_file), 0, 0, NULL, "",
     "File whose first line is the AUTH password (read at load and reload; mode 0600 or "
     "0400, owned by root or `user`; never logged)."},
    {"submit.ca_file", CFG_OSTRING, SU(ca_file), 0, 0, 0, NULL, "",
     "CA certificates (PEM) for starttls always and smtps:// (empty: the system's)."},
    {"submit.timeout", CFG_INT, SU(timeout), 0, 1, 600, "seconds",
     CFG_STR(UM_SUBMIT_DEFAULT_TIMEOUT), "Seconds one attempt may take, connect included."},
    {"submit.from", CFG_OSTRING, SU(from), 0, 0, 0, NULL, "",
     "Envelope sender of notices (empty: the null sender <>, as for automatic mail)."},
    {"submit.sendmail", CFG_STRING, SU(sendmail), 0, 0, 0, NULL, "/usr/sbin/sendmail",
     "sendmail-compatible binary for via sendmail."},

    {"inbound", CFG_GROUP, 0, 0, 0, 0, NULL, "",
     "Inbound checks: SPF, DKIM, DMARC and one Authentication-Results header."},
    {"inbound.spf", CFG_BOOL, IB(spf), 0, 0, 0, NULL, "true", "Check SPF (RFC 7208)."},
    {"inbound.received_spf", CFG_BOOL, IB(received_spf), 0, 0, 0, NULL, "false",
     "Also add a Received-SPF header."},
    {"inbound.dkim_max_signatures", CFG_INT, IB(max_signatures), 0, 1, 50, "signatures", "5",
     "DKIM signatures verified per message; more are logged and not verified."},
    {"inbound.dkim_min_key_bits", CFG_INT, IB(min_key_bits), 0, 512, 16384, "bits", "1024",
     "RSA keys shorter than this give dkim=policy."},
    {"inbound.dkim_allow_rsa_sha1", CFG_BOOL, IB(allow_rsa_sha1), 0, 0, 0, NULL, "false",
     "Accept rsa-sha1 signatures (RFC 8301 forbids them)."},
    {"inbound.dmarc", CFG_BOOL, IB(dmarc), 0, 0, 0, NULL, "true", "Evaluate DMARC."},
    {.path = "inbound.dmarc_method",
     .kind = CFG_ENUM,
     .off = IB(dmarc_method),
     .names = cfg_dmarc_methods,
     .dflt = "tree-walk",
     .doc = "Policy and organizational domain discovery: tree-walk (RFC 9989) or psl (RFC 7489 "
            "with the Public Suffix List)."},
    {"inbound.psl_file", CFG_STRING, IB(psl_file), 0, 0, 0, NULL,
     "/usr/share/publicsuffix/public_suffix_list.dat", "Public Suffix List for dmarc_method psl."},
    {"inbound.enforce", CFG_BOOL, IB(enforce), 0, 0, 0, NULL, "true",
     "Apply DMARC policies; false: monitor only (results are still recorded)."},
    {.path = "inbound.reject_action",
     .kind = CFG_ENUM,
     .off = IB(reject_action),
     .names = cfg_reject_actions,
     .dflt = "reject",
     .doc = "What p=reject does: reject (550 5.7.1 naming the domain), hold or tag."},
    {.path = "inbound.quarantine_action",
     .kind = CFG_ENUM,
     .off = IB(quarantine_action),
     .names = cfg_quarantine_actions,
     .dflt = "hold",
     .doc = "What p=quarantine does: hold (MTA hold queue / Sendmail quarantine), tag (an "
            "X-Unimilter-Quarantine header) or reject."},
    {.path = "inbound.bad_from_action",
     .kind = CFG_ENUM,
     .off = IB(bad_from_action),
     .names = cfg_bad_from_actions,
     .dflt = "reject",
     .doc = "A message with no From, several From headers or several authors (RFC 5322 "
            "3.6): reject (550 5.7.1), tempfail or accept (DMARC then gives none)."},
    {.path = "inbound.temperror_action",
     .kind = CFG_ENUM,
     .off = IB(temperror_action),
     .names = cfg_temperror_actions,
     .dflt = "accept",
     .doc = "When DNS trouble leaves DMARC undecided: accept (with dmarc=temperror) or "
            "tempfail (the sender retries)."},
    {.path = "inbound.exempt_domains",
     .kind = CFG_STRARRAY,
     .off = IB(exempt_domains),
     .count_off = IB(nexempt_domains),
     .dflt = "[]",
     .doc = "From domains whose DMARC failures are not enforced (still recorded)."},
    {.path = "inbound.exempt_clients",
     .kind = CFG_STRARRAY,
     .off = IB(exempt_clients),
     .count_off = IB(nexempt_clients),
     .dflt = "[]",
     .doc = "Client IP addresses (trusted forwarders) whose DMARC failures are not enforced."},
    {"reports", CFG_GROUP, 0, 0, 0, 0, NULL, "", "DMARC evaluation history and reports."},
    {"reports.history_file", CFG_OSTRING, CO(reports.history_file), 0, 0, 0, NULL,
     "/var/lib/unimilter/dmarc-history.sqlite",
     "SQLite file every inbound DMARC evaluation is recorded in, off the mail path (empty: "
     "none)."},
    {.path = "reports.history_store",
     .kind = CFG_ENUM,
     .off = CO(reports.history_store),
     .names = cfg_history_stores,
     .dflt = "sqlite",
     .doc = "Where evaluations are recorded and `unimilter report` reads them: sqlite "
            "(history_file, this host) or postgresql (reports.postgresql, shared by several MX "
            "hosts)."},
    {"reports.postgresql", CFG_OSTRING, CO(reports.postgresql), 0, 0, 0, NULL, "",
     "libpq connection string of the shared history database for history_store postgresql "
     "(\"host=/run/postgresql dbname=unimilter\")."},
    {"reports.history_queue", CFG_INT, CO(reports.history_queue), 0, 1, 1000000, "records",
     "100000",
     "Evaluations waiting for the writer at most; beyond that they are dropped and counted, "
     "never delaying mail."},
    {"reports.retention_days", CFG_INT, CO(reports.retention_days), 0, 0, 3650, "days", "180",
     "`unimilter report` deletes evaluations older than this (0 keeps them)."},
    {"reports.org_name", CFG_OSTRING, CO(reports.org_name), 0, 0, 0, NULL, "",
     "Organization name in the reports we send (required for `unimilter report`)."},
    {"reports.email", CFG_OSTRING, CO(reports.email), 0, 0, 0, NULL, "",
     "Contact address in the reports, and their sender (required for `unimilter report`)."},
    {"reports.receiver", CFG_OSTRING, CO(reports.receiver), 0, 0, 0, NULL, "",
     "Our domain in report file names (empty: the domain of reports.email)."},
    {"dkim_sign", CFG_GROUP, 0, 0, 0, 0, NULL, "", "Outbound DKIM signing."},
    {.path = "dkim_sign.header_canonicalization",
     .kind = CFG_ENUM,
     .off = DS(header_canon),
     .names = cfg_canons,
     .dflt = "relaxed",
     .doc = "relaxed or simple."},
    {.path = "dkim_sign.body_canonicalization",
     .kind = CFG_ENUM,
     .off = DS(body_canon),
     .names = cfg_canons,
     .dflt = "relaxed",
     .doc = "relaxed or simple."},
    {.path = "dkim_sign.headers",
     .kind = CFG_STRARRAY,
     .off = DS(headers),
     .count_off = DS(nheaders),
     .dflt = "[]",
     .str_check = cfg_check_header_name,
     .doc = "Header fields to sign (empty: From (oversigned), To, Cc, Subject, Date, "
            "Message-ID, MIME-Version, Content-Type, Content-Transfer-Encoding, Reply-To, "
            "In-Reply-To, References, List-*)."},
    {.path = "dkim_sign.on_error",
     .kind = CFG_ENUM,
     .off = DS(on_error),
     .names = cfg_on_error,
     .dflt = "accept",
     .doc = "When signing fails: accept the message unsigned, or tempfail it."},
    {.path = "dkim_sign.keys",
     .kind = CFG_LIST,
     .off = DS(key),
     .count_off = DS(nkey),
     .line_off = DS(line_keys),
     .elem_size = sizeof(struct um_cfg_key),
     .elem_check = cfg_check_key,
     .elem_hint = "{ name = \"k1\"; domain = \"example.org\"; selector = \"s1\"; file = \"...\"; }",
     .dflt = "()",
     .doc = "Private keys (PEM, mode 0600 or 0400, owned by root or `user`)."},
    {"dkim_sign.keys.[].name", CFG_OSTRING, KO(name), 0, 0, 0, NULL, "",
     "Name the rules refer to (required)."},
    {"dkim_sign.keys.[].domain", CFG_OSTRING, KO(domain), 0, 0, 0, NULL, "", "d= (required)."},
    {"dkim_sign.keys.[].selector", CFG_OSTRING, KO(selector), 0, 0, 0, NULL, "", "s= (required)."},
    {"dkim_sign.keys.[].file", CFG_OSTRING, KO(file), 0, 0, 0, NULL, "",
     "PEM private key file, RSA (>= 1024 bits) or Ed25519 (required)."},
    {"dkim_sign.keys.[].identity", CFG_OSTRING, KO(identity), 0, 0, 0, NULL, "", "i= (optional)."},
    {.path = "dkim_sign.rules",
     .kind = CFG_LIST,
     .off = DS(rule),
     .count_off = DS(nrule),
     .line_off = DS(line_rules),
     .elem_size = sizeof(struct um_cfg_signrule),
     .elem_check = cfg_check_signrule,
     .elem_hint = "{ from = \"example.org\"; keys = [\"k1\"]; }",
     .dflt = "()",
     .doc = "From domain -> keys; first match wins; no match: not signed."},
    {"dkim_sign.rules.[].from", CFG_OSTRING, SR(from), 0, 0, 0, NULL, "",
     "\"example.org\" (exact), \"*.example.org\" (subdomains) or \"*\" (required)."},
    {.path = "dkim_sign.rules.[].keys",
     .kind = CFG_STRARRAY,
     .off = SR(keys),
     .count_off = SR(nkeys),
     .dflt = "[]",
     .doc = "Names of the keys to sign with; RSA and Ed25519 together sign twice (required)."},
};
#pragma GCC diagnostic pop

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
    case CFG_LIST:
        return "list";
    case CFG_STRARRAY:
        return "array of strings";
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
    case CFG_ENUM:
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
            return cfg_fail(ctx, s, path,
                            "expected permission bits as an octal string, e.g. \"0660\"");
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
            return cfg_fail(ctx, s, path, "%ld is out of range (%ld-%ld %s)", v, it->min, it->max,
                            it->what);
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
    case CFG_ENUM: {
        char all[160] = "";
        for (size_t i = 0; it->names[i].name != NULL; i++) {
            if (strcmp(val, it->names[i].name) == 0) {
                *(int *)(void *)slot = it->names[i].value;
                return UM_OK;
            }
        }
        for (size_t i = 0; it->names[i].name != NULL; i++) {
            if (i > 0)
                strncat(all, it->names[i + 1].name == NULL ? " or " : ", ",
                        sizeof(all) - strlen(all) - 1);
            strncat(all, it->names[i].name, sizeof(all) - strlen(all) - 1);
        }
        return cfg_fail(ctx, s, path, "expected %s, not \"%s\"", all, val);
    }
    case CFG_STRARRAY: {
        /* Defaults only: a list of double-quoted words, as written in the table. */
        char ***arr = (char ***)(void *)slot;
        size_t *cnt = (size_t *)(void *)((char *)base + it->count_off);
        const char *q = val;
        *arr = NULL;
        *cnt = 0;
        while ((q = strchr(q, '"')) != NULL) {
            const char *e = strchr(q + 1, '"');
            char **na;
            if (e == NULL)
                break;
            na = realloc(*arr, (*cnt + 1) * sizeof(char *));
            if (na == NULL)
                return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
            *arr = na;
            na[*cnt] = strndup(q + 1, (size_t)(e - q - 1));
            if (na[*cnt] == NULL)
                return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
            (*cnt)++;
            q = e + 1;
        }
        return UM_OK;
    }
    case CFG_GROUP:
    case CFG_LIST:
        return UM_OK;
    }
    return UM_OK;
}

static void
cfg_strarray_free(char **arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(arr[i]);
    free(arr);
}

static enum um_status
cfg_set_strarray(struct cfg_ctx *ctx, const struct cfg_item *it, void *base,
                 const config_setting_t *s, const char *path)
{
    char ***arr = (char ***)(void *)((char *)base + it->off);
    size_t *cnt = (size_t *)(void *)((char *)base + it->count_off);
    int type = config_setting_type(s);
    int n = config_setting_length(s);
    char why[160];

    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return cfg_fail(ctx, s, path, "expected an array of strings: [\"a\", \"b\"]");
    cfg_strarray_free(*arr, *cnt);
    *arr = NULL;
    *cnt = 0;
    if (n == 0)
        return UM_OK;
    *arr = calloc((size_t)n, sizeof(char *));
    if (*arr == NULL)
        return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v;
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return cfg_fail(ctx, s, path, "element %d: expected a string in double quotes", i);
        v = config_setting_get_string(e);
        if (v[0] == '\0')
            return cfg_fail(ctx, s, path, "element %d: must not be empty", i);
        if (it->str_check != NULL && !it->str_check(v, why, sizeof(why)))
            return cfg_fail(ctx, s, path, "%s", why);
        (*arr)[i] = strdup(v);
        if ((*arr)[i] == NULL)
            return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
        *cnt = (size_t)i + 1;
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
    case CFG_LIST:
        return UM_OK; /* handled by the walker */
    case CFG_STRARRAY:
        return cfg_set_strarray(ctx, it, base, s, path);
    case CFG_ENUM:
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

/* Defaults for one list element: every "<path>.[].field" entry with a default. */
static enum um_status
cfg_elem_defaults(struct cfg_ctx *ctx, const char *prefix, void *elem)
{
    size_t plen = strlen(prefix);

    for (size_t i = 0; i < CFG_NSCHEMA; i++) {
        const struct cfg_item *it = &cfg_schema[i];
        enum um_status st;

        if (strncmp(it->path, prefix, plen) != 0 || it->path[plen] != '.'
            || strchr(it->path + plen + 1, '.') != NULL)
            continue;
        if (it->kind == CFG_INT && it->dflt[0] == '\0') {
            *(int *)(void *)((char *)elem + it->off) = -1;
            continue;
        }
        if (it->kind == CFG_MODE || it->kind == CFG_STRING)
            continue; /* required: the element check says so */
        st = cfg_set_text(ctx, it, elem, it->dflt, NULL, it->path);
        if (st != UM_OK)
            return st;
    }
    return UM_OK;
}

static enum um_status
cfg_walk_list(struct cfg_ctx *ctx, const struct cfg_item *it, void *base,
              const config_setting_t *list, const char *shown_path)
{
    void **arr = (void **)(void *)((char *)base + it->off);
    size_t *cnt = (size_t *)(void *)((char *)base + it->count_off);
    int n = config_setting_length(list);
    char prefix[256], shown[300];
    enum um_status st;

    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_fail(ctx, list, shown_path, "expected a list: ( %s, ... )", it->elem_hint);
    if (it->line_off != 0)
        *(int *)(void *)((char *)base + it->line_off) = config_setting_source_line(list);
    if (n == 0)
        return UM_OK;
    *arr = calloc((size_t)n, it->elem_size);
    if (*arr == NULL)
        return um_error_set(ctx->err, UM_ENOMEM, "out of memory");
    (void)snprintf(prefix, sizeof(prefix), "%s.[]", it->path);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        void *elem = (char *)*arr + (size_t)i * it->elem_size;

        *cnt = (size_t)i + 1;
        (void)snprintf(shown, sizeof(shown), "%s.[%d]", shown_path, i);
        st = cfg_elem_defaults(ctx, prefix, elem);
        if (st != UM_OK)
            return st;
        if (config_setting_type(e) != CONFIG_TYPE_GROUP)
            return cfg_fail(ctx, e, shown, "expected braces: %s", it->elem_hint);
        st = cfg_walk_group(ctx, e, prefix, shown, elem);
        if (st == UM_OK)
            st = it->elem_check(ctx, e, shown, elem);
        if (st != UM_OK)
            return st;
    }
    return UM_OK;
}

static enum um_status
cfg_check_mode_rule(struct cfg_ctx *ctx, const config_setting_t *e, const char *shown, void *elem)
{
    struct um_mode_rule *r = elem;

    r->line = config_setting_source_line(e);
    if (config_setting_get_member(e, "mode") == NULL)
        return cfg_fail(ctx, e, shown, "a rule needs mode = \"inbound\", \"outbound\" or \"skip\"");
    if (r->daemon_name == NULL && r->daemon_port < 0 && r->authenticated == UM_TRI_ANY)
        return cfg_fail(ctx, e, shown,
                        "a rule needs at least one of daemon_name, daemon_port, authenticated");
    return UM_OK;
}

static enum um_status
cfg_check_rlrule(struct cfg_ctx *ctx, const config_setting_t *e, const char *shown, void *elem)
{
    struct um_cfg_rlrule *r = elem;
    struct um_error perr = {0};

    r->line = config_setting_source_line(e);
    if (r->sender == NULL)
        return cfg_fail(ctx, e, shown, "an override needs sender = \"...\"");
    if (um_ratelimit_pattern_check((struct um_str){r->sender, strlen(r->sender)}, &perr) != UM_OK)
        return cfg_fail(ctx, e, shown, "sender: %s", perr.msg);
    if (r->exempt == (r->limit >= 0))
        return cfg_fail(ctx, e, shown, "an override needs either limit = N or exempt = true");
    return UM_OK;
}

static bool
cfg_is_token(const char *v, const char *extra)
{
    for (const char *p = v; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || strchr(extra, *p) != NULL))
            return false;
    }
    return v[0] != '\0';
}

static enum um_status
cfg_check_key(struct cfg_ctx *ctx, const config_setting_t *e, const char *shown, void *elem)
{
    struct um_cfg_key *k = elem;

    k->line = config_setting_source_line(e);
    if (k->name == NULL || k->domain == NULL || k->selector == NULL || k->file == NULL)
        return cfg_fail(ctx, e, shown, "a key needs name, domain, selector and file");
    if (!cfg_is_token(k->domain, ".-_"))
        return cfg_fail(ctx, e, shown, "domain: \"%s\" is not a domain name", k->domain);
    if (!cfg_is_token(k->selector, ".-_"))
        return cfg_fail(ctx, e, shown, "selector: \"%s\" is not a valid selector", k->selector);
    return UM_OK;
}

static enum um_status
cfg_check_signrule(struct cfg_ctx *ctx, const config_setting_t *e, const char *shown, void *elem)
{
    struct um_cfg_signrule *r = elem;

    r->line = config_setting_source_line(e);
    if (r->from == NULL || r->nkeys == 0)
        return cfg_fail(ctx, e, shown, "a rule needs from = \"domain\" and keys = [\"name\", ...]");
    return UM_OK;
}

static bool
cfg_check_key_source(const char *v, char *buf, size_t len)
{
    struct um_error err = {0};
    enum um_senderkey_source src;

    if (um_senderkey_source_parse((struct um_str){v, strlen(v)}, &src, &err) == UM_OK)
        return true;
    (void)snprintf(buf, len,
                   "\"%s\" is not a sender key source (sasl, sender, sender_domain, "
                   "client_ip, uid)",
                   v);
    return false;
}

static bool
cfg_check_dns_server(const char *v, char *buf, size_t len)
{
    const char *at = strchr(v, '@');
    size_t hostlen = at != NULL ? (size_t)(at - v) : strlen(v);
    char *end;
    long port;

    if (hostlen == 0 || strspn(v, "0123456789abcdefABCDEF.:") < hostlen) {
        (void)snprintf(buf, len, "\"%s\": expected an IP address, optionally @PORT", v);
        return false;
    }
    if (at != NULL) {
        port = strtol(at + 1, &end, 10);
        if (end == at + 1 || *end != '\0' || port < 1 || port > 65535) {
            (void)snprintf(buf, len, "\"%s\": port must be 1-65535", v);
            return false;
        }
    }
    return true;
}

static bool
cfg_check_header_name(const char *v, char *buf, size_t len)
{
    if (cfg_is_token(v, "-"))
        return true;
    (void)snprintf(buf, len, "\"%s\" is not a header field name", v);
    return false;
}

static enum um_status
cfg_walk_group(struct cfg_ctx *ctx, const config_setting_t *g, const char *schema_prefix,
               const char *shown_prefix, void *base)
{
    int n = config_setting_length(g);
    char spath[256], shown[256];
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
        } else if (it->kind == CFG_LIST) {
            st = cfg_walk_list(ctx, it, base, s, shown);
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

static enum um_status cfg_fail_line(struct cfg_ctx *ctx, int line, const char *path,
                                    const char *fmt, ...) UM_PRINTF(4, 5);

static enum um_status
cfg_fail_line(struct cfg_ctx *ctx, int line, const char *path, const char *fmt, ...)
{
    char msg[200];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return um_error_set(ctx->err, UM_EINVAL, "%s:%d: %s: %s", ctx->file, line, path, msg);
}

/* Checks that span settings: unique key names, rules naming existing keys. */
static enum um_status
cfg_check_signing(struct cfg_ctx *ctx)
{
    struct um_config *cfg = ctx->cfg;
    char shown[64];

    for (size_t i = 0; i < cfg->dkim_sign.nkey; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->dkim_sign.key[i].name, cfg->dkim_sign.key[j].name) == 0) {
                (void)snprintf(shown, sizeof(shown), "dkim_sign.keys.[%zu]", i);
                return cfg_fail_line(ctx, cfg->dkim_sign.key[i].line, shown,
                                     "key name \"%s\" is already used on line %d",
                                     cfg->dkim_sign.key[i].name, cfg->dkim_sign.key[j].line);
            }
        }
    }
    for (size_t i = 0; i < cfg->dkim_sign.nrule; i++) {
        const struct um_cfg_signrule *r = &cfg->dkim_sign.rule[i];
        for (size_t k = 0; k < r->nkeys; k++) {
            bool found = false;
            for (size_t j = 0; j < cfg->dkim_sign.nkey && !found; j++)
                found = strcmp(r->keys[k], cfg->dkim_sign.key[j].name) == 0;
            if (!found) {
                (void)snprintf(shown, sizeof(shown), "dkim_sign.rules.[%zu].keys", i);
                return cfg_fail_line(ctx, r->line, shown, "no key named \"%s\" in dkim_sign.keys",
                                     r->keys[k]);
            }
        }
    }
    return UM_OK;
}

static enum um_status
cfg_finish(struct cfg_ctx *ctx)
{
    struct um_config *cfg = ctx->cfg;
    char host[256];
    enum um_status st = cfg_check_signing(ctx);

    if (st != UM_OK)
        return st;
    if (strncmp(cfg->submit.relay, "smtp://", 7) != 0
        && strncmp(cfg->submit.relay, "smtps://", 8) != 0)
        return cfg_fail_line(ctx, cfg->submit.line_relay, "submit.relay",
                             "\"%.80s\" is not smtp://HOST[:PORT] or smtps://HOST[:PORT]",
                             cfg->submit.relay);
    if ((cfg->submit.user == NULL) != (cfg->submit.password_file == NULL)) {
        bool u = cfg->submit.user != NULL;
        return cfg_fail_line(ctx, u ? cfg->submit.line_user : cfg->submit.line_password_file,
                             u ? "submit.user" : "submit.password_file", "needs submit.%s too",
                             u ? "password_file" : "user");
    }

    if (cfg->authserv_id == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            (void)snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        if (cfg_strdup(ctx, &cfg->authserv_id, host, false) != UM_OK)
            return UM_ENOMEM;
    }
    return UM_OK;
}

/*
 * The files @include brought in get the same check as the top file. libconfig 1.5 has no
 * include hook, but it records each setting's file (one interned string per file): every
 * file that contributed a setting is checked once, after the parse and before any of its
 * settings is used. A file that contributed no setting changed nothing.
 */
struct cfg_inc {
    const char *dir;      /* where libconfig resolved relative @include names */
    const char *seen[32]; /* files already checked (libconfig's interned names) */
    size_t nseen;
};

static enum um_status
cfg_check_includes_in(const config_setting_t *s, const char *top, const struct um_fileperm *perm,
                      struct cfg_inc *inc, struct um_error *err)
{
    const char *f = config_setting_source_file(s);
    enum um_status st;
    int n;

    if (f != NULL && strcmp(f, top) != 0) {
        bool seen = false;
        for (size_t i = 0; i < inc->nseen && !seen; i++)
            seen = inc->seen[i] == f;
        if (!seen) {
            char full[PATH_MAX];
            /* libconfig keeps the name as written; it opened it under the include dir. */
            if (f[0] != '/' && inc->dir != NULL) {
                if ((size_t)snprintf(full, sizeof(full), "%s/%s", inc->dir, f) >= sizeof(full))
                    return um_error_set(err, UM_EINVAL, "%s/%s: path too long", inc->dir, f);
            } else if ((size_t)snprintf(full, sizeof(full), "%s", f) >= sizeof(full)) {
                return um_error_set(err, UM_EINVAL, "%.64s...: path too long", f);
            }
            if ((st = um_fileperm_check_path(full, perm, err)) != UM_OK)
                return st;
            if (inc->nseen < sizeof(inc->seen) / sizeof(inc->seen[0]))
                inc->seen[inc->nseen++] = f;
        }
    }
    n = config_setting_length(s);
    for (int i = 0; i < n && (config_setting_is_group(s) || config_setting_is_list(s)); i++)
        if ((st = cfg_check_includes_in(config_setting_get_elem(s, (unsigned)i), top, perm, inc,
                                        err))
            != UM_OK)
            return st;
    return UM_OK;
}

static enum um_status
cfg_check_includes(const config_setting_t *root, const char *top, const char *dir,
                   const struct um_fileperm *perm, struct um_error *err)
{
    struct cfg_inc inc = {.dir = dir, .nseen = 0};

    return cfg_check_includes_in(root, top, perm, &inc, err);
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
    struct um_fileperm perm;
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

    /* Whoever can write the configuration decides, at the next start as root, which user we
     * become and which programs we run: only root and we may (fileperm.h). */
    um_fileperm_init(&perm, 022);
    if ((st = um_fileperm_check_dirs(path, &perm, err)) != UM_OK) {
        um_config_unref(cfg);
        return st;
    }
    fp = fopen(path, "r");
    if (fp == NULL) {
        char eb[128];
        int e = errno;
        um_config_unref(cfg);
        return um_error_set(err, UM_EIO, "%s: cannot open: %s", path,
                            um_strerror(e, eb, sizeof(eb)));
    }
    if ((st = um_fileperm_check_fd(fileno(fp), path, &perm, err)) != UM_OK) {
        (void)fclose(fp);
        um_config_unref(cfg);
        return st;
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
    } else if ((st = cfg_check_includes(config_root_setting(&cf), path, ctx.dir, &perm, err))
               == UM_OK) {
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
    free(cfg->control_socket);
    free(cfg->control_socket_group);
    cfg_strarray_free(cfg->dns_servers, cfg->ndns_servers);
    cfg_strarray_free(cfg->ratelimit.key, cfg->ratelimit.nkey);
    free(cfg->ratelimit.state_file);
    for (size_t i = 0; i < cfg->ratelimit.nrule; i++)
        free(cfg->ratelimit.rule[i].sender);
    free(cfg->ratelimit.rule);
    free(cfg->ratelimit.redis_host);
    free(cfg->ratelimit.redis_socket);
    free(cfg->ratelimit.redis_prefix);
    free(cfg->ratelimit.notify_command);
    free(cfg->ratelimit.notify_mail_to);
    free(cfg->submit.relay);
    free(cfg->submit.user);
    free(cfg->submit.password_file);
    free(cfg->submit.ca_file);
    free(cfg->submit.from);
    free(cfg->submit.sendmail);
    cfg_strarray_free(cfg->dkim_sign.headers, cfg->dkim_sign.nheaders);
    free(cfg->inbound.psl_file);
    free(cfg->reports.history_file);
    free(cfg->reports.postgresql);
    free(cfg->reports.org_name);
    free(cfg->reports.email);
    free(cfg->reports.receiver);
    cfg_strarray_free(cfg->inbound.exempt_domains, cfg->inbound.nexempt_domains);
    cfg_strarray_free(cfg->inbound.exempt_clients, cfg->inbound.nexempt_clients);
    for (size_t i = 0; i < cfg->dkim_sign.nkey; i++) {
        struct um_cfg_key *k = &cfg->dkim_sign.key[i];
        free(k->name);
        free(k->domain);
        free(k->selector);
        free(k->file);
        free(k->identity);
    }
    free(cfg->dkim_sign.key);
    for (size_t i = 0; i < cfg->dkim_sign.nrule; i++) {
        free(cfg->dkim_sign.rule[i].from);
        cfg_strarray_free(cfg->dkim_sign.rule[i].keys, cfg->dkim_sign.rule[i].nkeys);
    }
    free(cfg->dkim_sign.rule);
    free(cfg->path);
    free(cfg->socket);
    free(cfg->socket_group);
    free(cfg->user);
    free(cfg->group);
    free(cfg->authserv_id);
    free(cfg);
}
