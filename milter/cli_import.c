/*
 * cli_import.c - `unimilter report-import` and `unimilter report-summary`
 *
 * Design note. Thin shells around lib/report_import.h. Both find the database as
 * `unimilter report` does: --db PATH, else reports.history_file of the configuration (-c FILE,
 * or the default file when it is readable). report-import takes files and directories (each
 * regular, non-hidden file of a directory, in name order, not recursive), or stdin when none
 * is named; each input is read whole (at most UM_REPORT_IMPORT_MAX_INPUT bytes: a larger file
 * is refused before it is read) and imported in its own transaction, so one bad report does
 * not stop the others. One line per input on stdout ("imported ...", "skipped ..."), errors
 * on stderr as "unimilter: report-import: <input>: <why>"; exit 1 when any input failed, 64
 * for usage errors. report-summary prints lib/report_import's table on stdout.
 */
#include "cli_import.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "report.h"
#include "report_import.h"

#define CLI_IMPORT_CONFIG "/etc/unimilter/unimilter.conf"

struct import_run {
    struct um_report_import *imp;
    int64_t now;
    unsigned imported, skipped, failed;
};

static int
import_usage(const char *cmd)
{
    if (strcmp(cmd, "report-import") == 0)
        fprintf(stderr, "usage: unimilter report-import [-c FILE] [--db PATH] [FILE|DIR...]\n");
    else
        fprintf(stderr, "usage: unimilter report-summary [-c FILE] [--db PATH] [--domain D] "
                        "[--since YYYY-MM-DD]\n");
    return EX_USAGE;
}

/* The database: --db, else reports.history_file. NULL after printing why. */
static char *
import_db_path(const char *cmd, const char *conf, const char *db)
{
    struct um_error err = {0};
    struct um_config *cfg = NULL;
    char *path = NULL;

    if (db != NULL)
        return strdup(db);
    if (conf == NULL && access(CLI_IMPORT_CONFIG, R_OK) == 0)
        conf = CLI_IMPORT_CONFIG;
    if (conf != NULL && um_config_load(conf, &cfg, &err) != UM_OK) {
        fprintf(stderr, "unimilter: %s: %s\n", cmd, err.msg);
        return NULL;
    }
    if (cfg != NULL && cfg->reports.history_file != NULL)
        path = strdup(cfg->reports.history_file);
    else
        fprintf(stderr, "unimilter: %s: set reports.history_file in %s (or --db PATH)\n", cmd,
                conf != NULL ? conf : CLI_IMPORT_CONFIG);
    if (cfg != NULL)
        um_config_unref(cfg);
    return path;
}

/* Reads fd whole; at most UM_REPORT_IMPORT_MAX_INPUT bytes (one more means too large). */
static int
import_read(int fd, const char *name, unsigned char **out, size_t *outlen)
{
    size_t len = 0, cap = 65536;
    unsigned char *buf = malloc(cap);
    char eb[128];

    while (buf != NULL) {
        ssize_t n;
        if (len == cap) {
            unsigned char *nb;
            if (cap > UM_REPORT_IMPORT_MAX_INPUT) {
                fprintf(stderr, "unimilter: report-import: %s: input exceeds %u bytes\n", name,
                        UM_REPORT_IMPORT_MAX_INPUT);
                free(buf);
                return -1;
            }
            cap =
                cap * 2 > UM_REPORT_IMPORT_MAX_INPUT + 1 ? UM_REPORT_IMPORT_MAX_INPUT + 1 : cap * 2;
            if ((nb = realloc(buf, cap)) == NULL)
                break;
            buf = nb;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "unimilter: report-import: %s: read: %s\n", name,
                    um_strerror(errno, eb, sizeof(eb)));
            free(buf);
            return -1;
        }
        if (n == 0) {
            if (len > UM_REPORT_IMPORT_MAX_INPUT) {
                fprintf(stderr, "unimilter: report-import: %s: input exceeds %u bytes\n", name,
                        UM_REPORT_IMPORT_MAX_INPUT);
                free(buf);
                return -1;
            }
            *out = buf;
            *outlen = len;
            return 0;
        }
        len += (size_t)n;
    }
    free(buf);
    fprintf(stderr, "unimilter: report-import: %s: out of memory\n", name);
    return -1;
}

static void
import_one(struct import_run *r, const char *name, int fd)
{
    struct um_report_import_result res;
    struct um_error err = {0};
    unsigned char *data = NULL;
    size_t len = 0;

    if (import_read(fd, name, &data, &len) != 0) {
        r->failed++;
        return;
    }
    if (um_report_import_bytes(r->imp, name, data, len, r->now, &res, &err) != UM_OK) {
        fprintf(stderr, "unimilter: report-import: %s\n", err.msg);
        r->failed++;
    } else if (res.duplicate) {
        printf("skipped %s: already imported (org=%s report_id=%s)\n", name, res.org_name,
               res.report_id);
        r->skipped++;
    } else {
        printf("imported %s: org=%s report_id=%s domain=%s records=%zu messages=%llu\n", name,
               res.org_name, res.report_id, res.domain, res.records,
               (unsigned long long)res.messages);
        r->imported++;
    }
    free(data);
}

static void
import_path(struct import_run *r, const char *path, bool from_dir)
{
    struct stat st;
    char eb[128];
    int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);

    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "unimilter: report-import: %s: %s\n", path,
                um_strerror(errno, eb, sizeof(eb)));
        if (fd >= 0)
            close(fd);
        r->failed++;
        return;
    }
    if (S_ISDIR(st.st_mode) && !from_dir) {
        struct dirent **ents = NULL;
        int n = scandir(path, &ents, NULL, alphasort);

        close(fd);
        if (n < 0) {
            fprintf(stderr, "unimilter: report-import: %s: %s\n", path,
                    um_strerror(errno, eb, sizeof(eb)));
            r->failed++;
            return;
        }
        for (int i = 0; i < n; i++) {
            char sub[PATH_MAX];
            if (ents[i]->d_name[0] != '.'
                && (size_t)snprintf(sub, sizeof(sub), "%s/%s", path, ents[i]->d_name) < sizeof(sub))
                import_path(r, sub, true);
            free(ents[i]);
        }
        free(ents);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        if (!from_dir) {
            fprintf(stderr, "unimilter: report-import: %s: not a regular file\n", path);
            r->failed++;
        }
        return;
    }
    if ((uint64_t)st.st_size > UM_REPORT_IMPORT_MAX_INPUT) {
        fprintf(stderr, "unimilter: report-import: %s: input size %lld exceeds %u bytes\n", path,
                (long long)st.st_size, UM_REPORT_IMPORT_MAX_INPUT);
        close(fd);
        r->failed++;
        return;
    }
    import_one(r, path, fd);
    close(fd);
}

static int64_t
import_parse_now(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    return *s == '\0' || *end != '\0' || v < 0 ? -1 : (int64_t)v;
}

int
um_cli_report_import(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'b'},
        {"now", required_argument, NULL, 'N'}, /* tests: pretend the time is this */
        {NULL, 0, NULL, 0},
    };
    struct import_run r = {.now = (int64_t)time(NULL)};
    const char *conf = NULL, *db = NULL;
    struct um_error err = {0};
    char *path;
    int c;

    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 'b':
            db = optarg;
            break;
        case 'N':
            if ((r.now = import_parse_now(optarg)) < 0)
                return import_usage("report-import");
            break;
        default:
            return import_usage("report-import");
        }
    }
    if ((path = import_db_path("report-import", conf, db)) == NULL)
        return 1;
    if (um_report_import_open(path, &r.imp, &err) != UM_OK) {
        fprintf(stderr, "unimilter: report-import: %s\n", err.msg);
        free(path);
        return 1;
    }
    free(path);
    if (optind == argc)
        import_one(&r, "stdin", STDIN_FILENO);
    for (int i = optind; i < argc; i++)
        import_path(&r, argv[i], false);
    um_report_import_close(r.imp);
    printf("imported=%u skipped=%u failed=%u\n", r.imported, r.skipped, r.failed);
    return r.failed == 0 ? 0 : 1;
}

int
um_cli_report_summary(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'b'},
        {"domain", required_argument, NULL, 'd'},
        {"since", required_argument, NULL, 's'},
        {"now", required_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    struct um_report_import_summary_opts o = {
        .since = -1, .now = (int64_t)time(NULL), .update_seen = true};
    const char *conf = NULL, *db = NULL;
    struct um_report_import *imp = NULL;
    struct um_error err = {0};
    char *path, *text = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 'b':
            db = optarg;
            break;
        case 'd':
            o.domain = optarg;
            break;
        case 's':
            if ((o.since = um_report_parse_day(optarg)) < 0) {
                fprintf(stderr, "unimilter: report-summary: --since %s: not YYYY-MM-DD\n", optarg);
                return EX_USAGE;
            }
            break;
        case 'N':
            if ((o.now = import_parse_now(optarg)) < 0)
                return import_usage("report-summary");
            break;
        default:
            return import_usage("report-summary");
        }
    }
    if (optind != argc)
        return import_usage("report-summary");
    if ((path = import_db_path("report-summary", conf, db)) == NULL)
        return 1;
    if (um_report_import_open(path, &imp, &err) != UM_OK
        || um_report_import_summary(imp, &o, &text, &err) != UM_OK) {
        fprintf(stderr, "unimilter: report-summary: %s\n", err.msg);
        um_report_import_close(imp);
        free(path);
        return 1;
    }
    fputs(text, stdout);
    free(text);
    um_report_import_close(imp);
    free(path);
    return 0;
}
