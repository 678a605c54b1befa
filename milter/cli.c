/*
 * cli.c - subcommands of the unimilter binary: stats, reset, keygen, check-keys
 *
 * Design note. These run as short-lived, single-threaded commands before main() parses the
 * daemon's options: um_cli_run() looks at argv[1] only, so `unimilter -c FILE` still means
 * the daemon. Each subcommand reads the same configuration file as the daemon (-c FILE,
 * default /etc/unimilter/unimilter.conf) for what it needs: control_socket for stats/reset,
 * user for key ownership, dkim_sign.keys and dns for check-keys. Output is for people, on
 * stdout; errors go to stderr as "unimilter: <subcommand>: <why>" and exit 1 (usage
 * errors: 64, EX_USAGE, like the daemon's options).
 *
 *   stats / reset   one request on the control socket (protocol in control.c), with a
 *                   10-second receive timeout, response bounded to 8 MiB. Keys are shown
 *                   escaped (\xHH) exactly as the daemon sends them; reset takes that form.
 *   keygen          lib/keygen writes DIR/DOMAIN.SELECTOR.pem (0600, never overwritten).
 *                   Run as root, the file is then given to the configured `user`, because
 *                   the daemon reads keys again on reload, after it has dropped root.
 *   check-keys      each dkim_sign key is loaded as the daemon would (same ownership and
 *                   mode rules), its selector's TXT record fetched through lib/dns with the
 *                   configured servers and timeout, and compared by lib/keygen. A DNS
 *                   temporary failure is reported as such, never as "not published".
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli_import.h"
#include "cli_report.h"
#include "cli.h"
#include "daemon.h"
#include "dkim_sign.h"
#include "dns.h"
#include "keygen.h"

#define CLI_DEFAULT_CONFIG "/etc/unimilter/unimilter.conf"
#define CLI_RESPONSE_MAX   (8u * 1024 * 1024)
#define CLI_TIMEOUT_S      10

static int
cli_usage(const char *cmd)
{
    if (strcmp(cmd, "stats") == 0)
        fprintf(stderr, "usage: unimilter stats [-c FILE] [-n N]\n");
    else if (strcmp(cmd, "reset") == 0)
        fprintf(stderr, "usage: unimilter reset [-c FILE] SENDER   (e.g. sasl:alice)\n");
    else if (strcmp(cmd, "keygen") == 0)
        fprintf(stderr, "usage: unimilter keygen -d DOMAIN -s SELECTOR [-t rsa|ed25519] "
                        "[-b BITS] -o DIR [-c FILE]\n");
    else
        fprintf(stderr, "usage: unimilter check-keys [-c FILE]\n");
    return EX_USAGE;
}

static struct um_config *
cli_load_config(const char *cmd, const char *path)
{
    struct um_error err = {0};
    struct um_config *cfg;

    if (um_config_load(path, &cfg, &err) != UM_OK) {
        fprintf(stderr, "unimilter: %s: %s\n", cmd, err.msg);
        return NULL;
    }
    return cfg;
}

/* --- stats / reset ---------------------------------------------------------------------- */

/* Sends req and reads the whole response (NUL-terminated, malloc'd) into *resp. */
static int
cli_request(const char *cmd, const char *sock, const char *req, char **resp)
{
    struct sockaddr_un sa;
    struct timeval tv = {CLI_TIMEOUT_S, 0};
    size_t len = 0, cap = 4096, reqlen = strlen(req);
    char eb[128], *buf;
    int fd;

    *resp = NULL;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strncmp(sock, "unix:", 5) == 0)
        sock += 5;
    if (strlen(sock) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "unimilter: %s: control socket path too long: %s\n", cmd, sock);
        return -1;
    }
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0 && (errno == EACCES || errno == EPERM))
            fprintf(stderr,
                    "unimilter: %s: permission denied on %s (control_socket_mode/"
                    "control_socket_group)\n",
                    cmd, sock);
        else
            fprintf(stderr, "unimilter: %s: cannot connect to %s: %s; is unimilter running?\n", cmd,
                    sock, um_strerror(errno, eb, sizeof(eb)));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (send(fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen) {
        fprintf(stderr, "unimilter: %s: %s: write: %s\n", cmd, sock,
                um_strerror(errno, eb, sizeof(eb)));
        close(fd);
        return -1;
    }
    (void)shutdown(fd, SHUT_WR);
    buf = malloc(cap);
    while (buf != NULL) {
        ssize_t n;

        if (len + 1 >= cap) {
            char *nb = cap >= CLI_RESPONSE_MAX ? NULL : realloc(buf, cap * 2);
            if (nb == NULL) {
                fprintf(stderr, "unimilter: %s: response too large\n", cmd);
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "unimilter: %s: %s: read: %s\n", cmd, sock,
                    errno == EAGAIN || errno == EWOULDBLOCK ? "timed out"
                                                            : um_strerror(errno, eb, sizeof(eb)));
            free(buf);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (buf == NULL) {
        fprintf(stderr, "unimilter: %s: out of memory\n", cmd);
        return -1;
    }
    buf[len] = '\0';
    *resp = buf;
    return 0;
}

/* Common part of stats and reset: config -> control socket path. */
static const char *
cli_control_path(const char *cmd, const struct um_config *cfg)
{
    if (cfg->control_socket == NULL || cfg->control_socket[0] == '\0') {
        fprintf(stderr, "unimilter: %s: control_socket is disabled in %s\n", cmd, cfg->path);
        return NULL;
    }
    return cfg->control_socket;
}

static int
cli_stats(int argc, char **argv)
{
    const char *conf = CLI_DEFAULT_CONFIG, *sock;
    struct um_config *cfg;
    unsigned long n = 20;
    char req[64], *resp, *line, *save = NULL;
    int c, rc = 1;

    while ((c = getopt(argc, argv, "c:n:")) != -1) {
        char *end;
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 'n':
            errno = 0;
            n = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0 || n < 1 || n > 1000) {
                fprintf(stderr, "unimilter: stats: -n wants a number from 1 to 1000\n");
                return EX_USAGE;
            }
            break;
        default:
            return cli_usage("stats");
        }
    }
    if (optind != argc)
        return cli_usage("stats");
    if ((cfg = cli_load_config("stats", conf)) == NULL)
        return 1;
    if ((sock = cli_control_path("stats", cfg)) == NULL
        || (snprintf(req, sizeof(req), "stats %lu\n", n), cli_request("stats", sock, req, &resp))
               != 0) {
        um_config_unref(cfg);
        return 1;
    }
    um_config_unref(cfg);
    line = strtok_r(resp, "\n", &save);
    if (line == NULL || strncmp(line, "ok ", 3) != 0) {
        fprintf(stderr, "unimilter: stats: %s\n",
                line == NULL                    ? "empty response"
                : strncmp(line, "err ", 4) == 0 ? line + 4
                                                : line);
        free(resp);
        return 1;
    }
    printf("%s\n", line + 3);
    printf("%8s %8s %8s  %s\n", "COUNT", "LIMIT", "REFUSED", "SENDER");
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        unsigned cnt, lim, ref;
        int off = 0;

        if (sscanf(line, "%u %u %u %n", &cnt, &lim, &ref, &off) != 3 || off == 0) {
            fprintf(stderr, "unimilter: stats: unexpected line: %s\n", line);
            goto out;
        }
        printf("%8u %8u %8u  %s\n", cnt, lim, ref, line + off);
    }
    rc = 0;
out:
    free(resp);
    return rc;
}

static int
cli_reset(int argc, char **argv)
{
    const char *conf = CLI_DEFAULT_CONFIG, *sock, *key;
    struct um_config *cfg;
    char *req, *resp;
    size_t klen;
    int c, rc = 1;

    while ((c = getopt(argc, argv, "c:")) != -1) {
        if (c != 'c')
            return cli_usage("reset");
        conf = optarg;
    }
    if (optind + 1 != argc)
        return cli_usage("reset");
    key = argv[optind];
    klen = strlen(key);
    if (klen == 0 || klen > 1000 || strchr(key, '\n') != NULL) {
        fprintf(stderr, "unimilter: reset: SENDER must be 1 to 1000 bytes on one line\n");
        return EX_USAGE;
    }
    if ((cfg = cli_load_config("reset", conf)) == NULL)
        return 1;
    sock = cli_control_path("reset", cfg);
    req = malloc(klen + 8);
    if (sock == NULL || req == NULL) {
        free(req);
        um_config_unref(cfg);
        return 1;
    }
    snprintf(req, klen + 8, "reset %s\n", key);
    if (cli_request("reset", sock, req, &resp) != 0) {
        free(req);
        um_config_unref(cfg);
        return 1;
    }
    free(req);
    um_config_unref(cfg);
    resp[strcspn(resp, "\n")] = '\0';
    if (strncmp(resp, "ok reset ", 9) == 0) {
        printf("reset %s\n", resp + 9);
        rc = 0;
    } else {
        fprintf(stderr, "unimilter: reset %s: %s\n", key,
                strncmp(resp, "err ", 4) == 0 ? resp + 4 : resp);
    }
    free(resp);
    return rc;
}

/* --- keygen ----------------------------------------------------------------------------- */

/* Run as root: give the new key to the configured user (the daemon re-reads keys on reload,
 * after dropping root). conf_given: -c was on the command line, so it must load. */
static int
cli_keygen_owner(const char *path, const char *conf, bool conf_given)
{
    struct passwd pw, *pwp = NULL;
    struct um_config *cfg;
    struct stat st;
    char buf[4096], eb[128];

    if (geteuid() != 0)
        return 0;
    if (!conf_given && stat(conf, &st) != 0) {
        printf("note: %s is owned by root (no %s to name the run user); chown it to the user "
               "unimilter runs as\n",
               path, conf);
        return 0;
    }
    if ((cfg = cli_load_config("keygen", conf)) == NULL)
        return -1;
    if (getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &pwp) != 0 || pwp == NULL) {
        printf("note: %s is owned by root (user \"%s\" does not exist yet); chown it to that "
               "user\n",
               path, cfg->user);
    } else if (chown(path, pw.pw_uid, (gid_t)-1) != 0) {
        fprintf(stderr, "unimilter: keygen: chown %s to %s: %s\n", path, cfg->user,
                um_strerror(errno, eb, sizeof(eb)));
        um_config_unref(cfg);
        return -1;
    } else {
        printf("owner: %s (user in %s), mode 0600\n", cfg->user, cfg->path);
    }
    um_config_unref(cfg);
    return 0;
}

static int
cli_keygen(int argc, char **argv)
{
    struct um_keygen_req req = {.alg = UM_DKIM_ALG_RSA_SHA256};
    struct um_error err = {0};
    const char *dir = NULL, *conf = CLI_DEFAULT_CONFIG;
    char path[PATH_MAX], absdir[PATH_MAX], *record = NULL, *end;
    unsigned long bits = 0;
    bool conf_given = false;
    struct stat st;
    int c;

    while ((c = getopt(argc, argv, "d:s:t:b:o:c:")) != -1) {
        switch (c) {
        case 'd':
            req.domain = optarg;
            break;
        case 's':
            req.selector = optarg;
            break;
        case 't':
            if (strcmp(optarg, "rsa") == 0) {
                req.alg = UM_DKIM_ALG_RSA_SHA256;
            } else if (strcmp(optarg, "ed25519") == 0) {
                req.alg = UM_DKIM_ALG_ED25519_SHA256;
            } else {
                fprintf(stderr, "unimilter: keygen: -t wants rsa or ed25519, not \"%s\"\n", optarg);
                return EX_USAGE;
            }
            break;
        case 'b':
            errno = 0;
            bits = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0
                || bits < UM_DKIM_SIGN_MIN_RSA_BITS || bits > UM_KEYGEN_MAX_RSA_BITS) {
                fprintf(stderr, "unimilter: keygen: -b wants RSA bits from %d to %d\n",
                        UM_DKIM_SIGN_MIN_RSA_BITS, UM_KEYGEN_MAX_RSA_BITS);
                return EX_USAGE;
            }
            break;
        case 'o':
            dir = optarg;
            break;
        case 'c':
            conf = optarg;
            conf_given = true;
            break;
        default:
            return cli_usage("keygen");
        }
    }
    if (optind != argc || req.domain == NULL || req.selector == NULL || dir == NULL)
        return cli_usage("keygen");
    if (bits != 0 && req.alg != UM_DKIM_ALG_RSA_SHA256) {
        fprintf(stderr, "unimilter: keygen: -b applies to rsa keys only\n");
        return EX_USAGE;
    }
    req.bits = (unsigned)bits;
    if (strchr(req.domain, '/') != NULL || strchr(req.selector, '/') != NULL || req.domain[0] == '.'
        || req.selector[0] == '.') {
        fprintf(stderr, "unimilter: keygen: bad domain or selector\n");
        return 1;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || realpath(dir, absdir) == NULL) {
        fprintf(stderr, "unimilter: keygen: %s is not a directory\n", dir);
        return 1;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s.%s.pem", absdir, req.domain, req.selector)
        >= sizeof(path)) {
        fprintf(stderr, "unimilter: keygen: path too long\n");
        return 1;
    }
    req.path = path;
    if (um_keygen_write(&req, &record, &err) != UM_OK) {
        fprintf(stderr, "unimilter: %s\n", err.msg); /* "keygen: ..." */
        return 1;
    }
    if (req.alg == UM_DKIM_ALG_RSA_SHA256)
        printf("wrote %s (rsa, %u bits, mode 0600)\n", path,
               req.bits != 0 ? req.bits : UM_KEYGEN_DEFAULT_RSA_BITS);
    else
        printf("wrote %s (ed25519, mode 0600)\n", path);
    if (cli_keygen_owner(path, conf, conf_given) != 0) {
        free(record);
        return 1;
    }
    printf("\n; publish this TXT record in the zone of %s:\n%s\n", req.domain, record);
    printf("# add the key to dkim_sign.keys in unimilter.conf:\n"
           "    { name = \"%s-%s\"; domain = \"%s\"; selector = \"%s\";\n"
           "      file = \"%s\"; },\n"
           "# and name it in a dkim_sign.rules entry, e.g.:\n"
           "    { from = \"%s\"; keys = [\"%s-%s\"]; },\n"
           "# then check the published record with: unimilter check-keys\n",
           req.domain, req.selector, req.domain, req.selector, path, req.domain, req.domain,
           req.selector);
    free(record);
    return 0;
}

/* --- check-keys ------------------------------------------------------------------------- */

/* One key: prints its line; returns true when it matches. */
static bool
cli_check_key(const struct um_cfg_key *k, struct um_dns *dns, uid_t allowed)
{
    struct um_dkim_sign_keyspec spec = {.name = k->name,
                                        .domain = k->domain,
                                        .selector = k->selector,
                                        .identity = k->identity,
                                        .path = k->file,
                                        .allowed_uid = allowed};
    struct um_error err = {0};
    struct um_signer *key = NULL;
    struct um_dns_txt txt;
    char fqdn[600];
    bool ok = false;

    snprintf(fqdn, sizeof(fqdn), "%s._domainkey.%s", k->selector, k->domain);
    if (um_dkim_sign_key_load(&spec, &key, &err) != UM_OK) {
        printf("%s %s KEY ERROR (%s)\n", k->name, fqdn, err.msg);
        return false;
    }
    if (um_dns_txt(dns, fqdn, &txt, &err) != UM_OK) {
        printf("%s %s DNS ERROR (%s)\n", k->name, fqdn, err.msg);
        goto out;
    }
    switch (txt.result) {
    case UM_DNS_NXDOMAIN:
    case UM_DNS_NODATA:
        printf("%s %s NOT PUBLISHED\n", k->name, fqdn);
        goto out;
    case UM_DNS_TEMPFAIL:
        printf("%s %s DNS ERROR (%s)\n", k->name, fqdn, txt.reason);
        goto out;
    case UM_DNS_OK:
        break;
    }
    ok = true;
    for (size_t i = 0; i < txt.n && ok; i++) {
        static const char *const names[] = {"match", "MISMATCH", "REVOKED", "WRONG_TYPE",
                                            "MALFORMED"};
        struct um_keygen_check chk;

        if (um_keygen_check(key, txt.rec[i], &chk, &err) != UM_OK) {
            printf("%s %s ERROR (%s)\n", k->name, fqdn, err.msg);
            ok = false;
        } else if (chk.verdict != UM_KEYGEN_MATCH) {
            /* RFC 6376 3.6.2.2: with several records a verifier may use any one of them,
             * so every one must carry this key. */
            char where[64] = "";
            if (txt.n > 1)
                snprintf(where, sizeof(where), "record %zu of %zu: ", i + 1, txt.n);
            if (chk.reason[0] != '\0' || where[0] != '\0')
                printf("%s %s %s (%s%s)\n", k->name, fqdn, names[chk.verdict], where, chk.reason);
            else
                printf("%s %s %s\n", k->name, fqdn, names[chk.verdict]);
            ok = false;
        }
    }
    if (ok)
        printf("%s %s match\n", k->name, fqdn);
out:
    um_dns_txt_fini(&txt);
    um_dkim_sign_key_free(key);
    return ok;
}

static int
cli_check_keys(int argc, char **argv)
{
    const char *conf = CLI_DEFAULT_CONFIG;
    struct passwd pw, *pwp = NULL;
    struct um_error err = {0};
    struct um_config *cfg;
    struct um_dns *dns = NULL;
    char buf[4096];
    uid_t allowed;
    size_t bad = 0;
    int c;

    while ((c = getopt(argc, argv, "c:")) != -1) {
        if (c != 'c')
            return cli_usage("check-keys");
        conf = optarg;
    }
    if (optind != argc)
        return cli_usage("check-keys");
    if ((cfg = cli_load_config("check-keys", conf)) == NULL)
        return 1;
    allowed = geteuid();
    if (getpwnam_r(cfg->user, &pw, buf, sizeof(buf), &pwp) == 0 && pwp != NULL)
        allowed = pw.pw_uid;
    if (cfg->dkim_sign.nkey == 0) {
        printf("no keys in dkim_sign.keys of %s\n", cfg->path);
        um_config_unref(cfg);
        return 0;
    }
    if (um_dns_new((const char *const *)cfg->dns_servers, cfg->ndns_servers,
                   (unsigned)cfg->dns_timeout, &dns, &err)
        != UM_OK) {
        fprintf(stderr, "unimilter: check-keys: %s\n", err.msg);
        um_config_unref(cfg);
        return 1;
    }
    for (size_t i = 0; i < cfg->dkim_sign.nkey; i++) {
        if (!cli_check_key(&cfg->dkim_sign.key[i], dns, allowed))
            bad++;
    }
    um_dns_free(dns);
    um_config_unref(cfg);
    return bad == 0 ? 0 : 1;
}

int
um_cli_run(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"stats", cli_stats},
        {"reset", cli_reset},
        {"keygen", cli_keygen},
        {"check-keys", cli_check_keys},
        {"report", um_cli_report},
        {"report-import", um_cli_report_import},
        {"report-summary", um_cli_report_summary},
    };

    if (argc < 2)
        return -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[1], cmds[i].name) == 0) {
            optind = 1; /* getopt over the subcommand's own arguments */
            return cmds[i].fn(argc - 1, argv + 1);
        }
    }
    return -1;
}
