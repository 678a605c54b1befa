/*
 * cli_report.c - `unimilter report`: send (or, with --dry-run, write) DMARC aggregate reports
 *
 * Design note. A thin shell around um_report_run() (lib/report.h). Settings come from the
 * command line with the defaults proposed in reports/CONFIG.snippet.md, because the schema
 * does not know them yet; the configuration file (-c FILE, or the default one when it exists)
 * gives the DNS servers and timeout. The report run's decisions are printed one per line on
 * stdout; errors go to stderr as "unimilter: report: <why>" with exit 1, usage errors 64.
 * Meant to run once a day from a timer, after midnight UTC: it reports every complete day
 * not yet reported and retries what is pending. The mail goes out through the configured
 * submit settings (SMTP to submit.relay by default, even without a configuration file;
 * --sendmail PATH forces that binary); the AUTH password file is read here, as the caller.
 */
#define _DEFAULT_SOURCE /* explicit_bzero() is glibc/BSD, not POSIX */
#include "cli_report.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "fileperm.h"
#include "history.h"
#include "report.h"
#include "runtime.h"
#include "submit.h"

#define CLI_REPORT_CONFIG "/etc/unimilter/unimilter.conf"
#define CLI_REPORT_DB     "/var/lib/unimilter/dmarc-history.sqlite"
#define CLI_REPORT_KEEP   180

static int
report_usage(void)
{
    fprintf(stderr,
            "usage: unimilter report [-c FILE] [--dry-run DIR] [--day YYYY-MM-DD] [--db PATH]\n"
            "           --org NAME --email ADDR [--receiver DOMAIN] [--sendmail PATH]\n"
            "           [--retention DAYS]\n");
    return EX_USAGE;
}

static enum um_status
report_txt(void *arg, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    return um_dns_txt(arg, name, res, err);
}

static void
report_txt_fini(void *arg, struct um_dns_txt *res)
{
    (void)arg;
    um_dns_txt_fini(res);
}

static void
report_print(void *arg, const char *line)
{
    (void)arg;
    printf("%s\n", line);
    fflush(stdout);
}

int
um_cli_report(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dry-run", required_argument, NULL, 'n'},
        {"day", required_argument, NULL, 'D'},
        {"db", required_argument, NULL, 'b'},
        {"org", required_argument, NULL, 'o'},
        {"email", required_argument, NULL, 'e'},
        {"receiver", required_argument, NULL, 'r'},
        {"sendmail", required_argument, NULL, 's'},
        {"retention", required_argument, NULL, 'k'},
        {"now", required_argument, NULL, 'N'}, /* tests: pretend the time is this */
        {NULL, 0, NULL, 0},
    };
    struct um_report_opts o = {.db_path = CLI_REPORT_DB,
                               .day = -1,
                               .now = (int64_t)time(NULL),
                               .retention_days = CLI_REPORT_KEEP,
                               .txt = report_txt,
                               .txt_fini = report_txt_fini,
                               .log = report_print};
    const char *conf = NULL;
    struct um_config *cfg = NULL;
    struct um_dns *dns = NULL;
    struct um_report_stats st;
    /* Without a configuration file: the schema's defaults (SMTP to the local MTA). */
    struct um_submit_opts sub = {.via = UM_SUBMIT_VIA_SMTP,
                                 .relay = UM_SUBMIT_DEFAULT_RELAY,
                                 .starttls = UM_SUBMIT_TLS_AUTO,
                                 .timeout = UM_SUBMIT_DEFAULT_TIMEOUT};
    const char *sendmail = NULL;
    char *password = NULL;
    struct um_error err = {0};
    char *end;
    bool db_set = false, keep_set = false;
    int c, rc = 1;

    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 'n':
            o.dry_run_dir = optarg;
            break;
        case 'D':
            if ((o.day = um_report_parse_day(optarg)) < 0) {
                fprintf(stderr, "unimilter: report: --day %s: not YYYY-MM-DD\n", optarg);
                return EX_USAGE;
            }
            break;
        case 'b':
            o.db_path = optarg;
            db_set = true;
            break;
        case 'o':
            o.org_name = optarg;
            break;
        case 'e':
            o.email = optarg;
            break;
        case 'r':
            o.receiver = optarg;
            break;
        case 's':
            sendmail = optarg;
            break;
        case 'k': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v > 3650)
                return report_usage();
            o.retention_days = (unsigned)v;
            keep_set = true;
            break;
        }
        case 'N': {
            long long v = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 0)
                return report_usage();
            o.now = v;
            break;
        }
        default:
            return report_usage();
        }
    }
    if (optind != argc)
        return report_usage();
    if (conf == NULL && access(CLI_REPORT_CONFIG, R_OK) == 0)
        conf = CLI_REPORT_CONFIG;
    if (conf != NULL && um_config_load(conf, &cfg, &err) != UM_OK) {
        fprintf(stderr, "unimilter: report: %s\n", err.msg);
        return 1;
    }
    /* The configuration gives the defaults; command-line options override them. */
    if (cfg != NULL) {
        /* --db names an SQLite file and wins over the configured store. */
        if (!db_set && cfg->reports.history_store == UM_HISTORY_STORE_POSTGRESQL) {
            if (cfg->reports.postgresql == NULL) {
                fprintf(stderr,
                        "unimilter: report: %s: reports.history_store is postgresql "
                        "but reports.postgresql is empty\n",
                        conf);
                um_config_unref(cfg);
                return EX_CONFIG;
            }
            o.store = UM_HISTORY_STORE_POSTGRESQL;
            o.db_path = cfg->reports.postgresql;
        } else if (!db_set && cfg->reports.history_file != NULL) {
            o.db_path = cfg->reports.history_file;
        }
        if (o.org_name == NULL)
            o.org_name = cfg->reports.org_name;
        if (o.email == NULL)
            o.email = cfg->reports.email;
        if (o.receiver == NULL)
            o.receiver = cfg->reports.receiver;
        um_runtime_submit_opts(cfg, &sub);
        if (sendmail == NULL && o.dry_run_dir == NULL && cfg->submit.password_file != NULL) {
            if (um_submit_password_read(cfg->submit.password_file, geteuid(), &password, &err)
                != UM_OK) {
                fprintf(stderr, "unimilter: report: %s: submit.password_file: %s\n", conf, err.msg);
                um_config_unref(cfg);
                return EX_CONFIG;
            }
            sub.password = password;
        }
        if (!keep_set)
            o.retention_days = (unsigned)cfg->reports.retention_days;
    }
    if (sendmail != NULL) {
        /* --sendmail PATH: that binary, whatever the configuration says. */
        sub = (struct um_submit_opts){.via = UM_SUBMIT_VIA_SENDMAIL, .sendmail = sendmail};
    }
    o.submit = &sub;
    if (o.org_name == NULL || o.email == NULL) {
        fprintf(stderr,
                "unimilter: report: set reports.org_name and reports.email in %s (or "
                "--org and --email)\n",
                conf != NULL ? conf : CLI_REPORT_CONFIG);
        rc = EX_USAGE;
        goto out;
    }
    if (um_dns_new(cfg != NULL ? (const char *const *)cfg->dns_servers : NULL,
                   cfg != NULL ? cfg->ndns_servers : 0,
                   cfg != NULL ? (unsigned)cfg->dns_timeout : 5, &dns, &err)
        != UM_OK) {
        fprintf(stderr, "unimilter: report: %s\n", err.msg);
        goto out;
    }
    o.dns_arg = dns;
    /* The report job usually runs as root: the program it hands mail to must be as
     * trustworthy as the configuration (lib/fileperm.h). */
    if (o.dry_run_dir == NULL && (o.submit == NULL || o.submit->via == UM_SUBMIT_VIA_SENDMAIL)) {
        struct um_fileperm perm;
        const char *prog = o.submit != NULL && o.submit->sendmail != NULL
                               ? o.submit->sendmail
                               : UM_REPORT_SENDMAIL_DEFAULT;
        um_fileperm_init(&perm, 022);
        if (um_fileperm_check_path(prog, &perm, &err) != UM_OK) {
            fprintf(stderr, "unimilter: report: %s: %s\n",
                    sendmail != NULL ? "--sendmail" : "submit.sendmail", err.msg);
            goto out;
        }
    }
    if (um_report_run(&o, &st, &err) != UM_OK) {
        fprintf(stderr, "unimilter: report: %s\n", err.msg);
        goto out;
    }
    printf("periods=%u sent=%u written=%u pending=%u skipped=%u expired=%llu\n", st.periods,
           st.sent, st.written, st.pending, st.skipped, (unsigned long long)st.expired);
    rc = 0;
out:
    um_dns_free(dns);
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    if (cfg != NULL)
        um_config_unref(cfg);
    return rc;
}
