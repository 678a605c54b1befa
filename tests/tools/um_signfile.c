/*
 * um_signfile - sign a message file with lib/dkim_sign the way the milter will
 *
 * Usage: um_signfile [-c hdr/body] [-t unixtime] [-n chunk] [-L] [-l] [-u uid]
 *                    -k name:path:domain:selector[:identity] [-k ...]
 *                    [-r pattern=name[,name...] ...] FILE
 *
 * Headers are handed over one at a time as libmilter would with SMFIP_HDR_LEADSPC (value =
 * everything after the colon, folds included, final line end excluded); the body in chunks
 * of -n bytes (default 65536, as Postfix does). The signed message goes to stdout with CRLF
 * line ends (what an SMTP client sends; -L keeps LF), the DKIM-Signature fields on top.
 * With -r rules, keys come from the first rule matching the From domain; with no match or no
 * usable From the message is written unchanged and "unsigned: <reason>" goes to stderr.
 * -l: value_has_leading_space off (the MTA strips the space; the tool strips it too).
 * Exit: 0 ok (signed or deliberately unsigned), 2 error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dkim_sign.h"
#include "keyrule.h"

#define MAX_KEYS  16
#define MAX_RULES 32

struct hdr {
    char *name, *value; /* value: after ':' (with or without the leading space) */
};

static void
die(const char *what, const struct um_error *err)
{
    fprintf(stderr, "um_signfile: %s: %s\n", what, err != NULL ? err->msg : strerror(errno));
    exit(2);
}

static void
put_converted(FILE *out, const char *p, size_t len, bool crlf, bool *prev_cr)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n' && crlf && !*prev_cr)
            fputc('\r', out);
        fputc(p[i], out);
        *prev_cr = p[i] == '\r';
    }
}

static void
put_lf_only(FILE *out, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
            continue;
        fputc(p[i], out);
    }
}

int
main(int argc, char **argv)
{
    struct um_error err = {0};
    struct um_dkim_sign_opts opts = {.value_has_leading_space = true};
    struct um_signer *keys[MAX_KEYS];
    const struct um_signer *use[MAX_KEYS];
    size_t nkeys = 0, nuse = 0, chunk = 65536, nh = 0, caph = 0;
    struct um_keyrule *kr = NULL;
    struct hdr *h = NULL;
    bool crlf = true, prev_cr = false;
    uid_t uid = getuid();
    char *line = NULL, *cur = NULL;
    size_t lcap = 0, curlen = 0;
    ssize_t n;
    long body_off;
    FILE *in;
    int c;

    if (um_keyrule_new(&kr, &err) != UM_OK)
        die("keyrule", &err);
    while ((c = getopt(argc, argv, "c:t:n:Llu:k:r:")) != -1) {
        switch (c) {
        case 'c': {
            char *slash = strchr(optarg, '/');
            if (slash == NULL)
                die("-c wants hdr/body", NULL);
            *slash = '\0';
            opts.header_canon =
                strcmp(optarg, "simple") == 0 ? UM_DKIM_CANON_SIMPLE : UM_DKIM_CANON_RELAXED;
            opts.body_canon =
                strcmp(slash + 1, "simple") == 0 ? UM_DKIM_CANON_SIMPLE : UM_DKIM_CANON_RELAXED;
            break;
        }
        case 't':
            opts.fixed_time = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            chunk = strtoul(optarg, NULL, 10);
            if (chunk == 0)
                chunk = 1;
            break;
        case 'L':
            crlf = false;
            break;
        case 'l':
            opts.value_has_leading_space = false;
            break;
        case 'u':
            uid = (uid_t)strtoul(optarg, NULL, 10);
            break;
        case 'k': {
            char *f[5] = {0}, *save = NULL, *s = optarg;
            struct um_dkim_sign_keyspec spec;
            for (int i = 0; i < 5; i++, s = NULL)
                f[i] = strtok_r(s, ":", &save);
            if (f[3] == NULL || nkeys == MAX_KEYS)
                die("-k wants name:path:domain:selector[:identity]", NULL);
            spec = (struct um_dkim_sign_keyspec){.name = f[0],
                                                 .path = f[1],
                                                 .domain = f[2],
                                                 .selector = f[3],
                                                 .identity = f[4],
                                                 .allowed_uid = uid};
            if (um_dkim_sign_key_load(&spec, &keys[nkeys], &err) != UM_OK)
                die("key", &err);
            nkeys++;
            break;
        }
        case 'r': {
            char *eq = strchr(optarg, '='), *names[8], *save = NULL, *s;
            size_t nn = 0;
            if (eq == NULL)
                die("-r wants pattern=key[,key]", NULL);
            *eq = '\0';
            for (s = strtok_r(eq + 1, ",", &save); s != NULL && nn < 8;
                 s = strtok_r(NULL, ",", &save))
                names[nn++] = s;
            if (um_keyrule_add(kr, optarg, (const char *const *)names, nn, &err) != UM_OK)
                die("rule", &err);
            break;
        }
        default:
            die("bad option", NULL);
        }
    }
    if (optind + 1 != argc || nkeys == 0)
        die("usage: um_signfile [opts] -k name:path:domain:selector FILE", NULL);
    in = fopen(argv[optind], "rb");
    if (in == NULL)
        die(argv[optind], NULL);

    /* Headers (unfolded only in the sense of grouping lines; folds stay in the value). */
    for (;;) {
        bool end;
        n = getline(&line, &lcap, in);
        end = n <= 0 || strcmp(line, "\n") == 0 || strcmp(line, "\r\n") == 0;
        if (!end && (line[0] == ' ' || line[0] == '\t') && cur != NULL) {
            cur = realloc(cur, curlen + (size_t)n + 1);
            memcpy(cur + curlen, line, (size_t)n + 1);
            curlen += (size_t)n;
            continue;
        }
        if (cur != NULL) {
            char *colon = strchr(cur, ':');
            if (colon == NULL)
                die("header without colon", NULL);
            while (curlen > 0 && (cur[curlen - 1] == '\n' || cur[curlen - 1] == '\r'))
                cur[--curlen] = '\0';
            if (nh == caph) {
                caph = caph ? caph * 2 : 64;
                h = realloc(h, caph * sizeof(*h));
            }
            *colon = '\0';
            h[nh].name = strdup(cur);
            h[nh].value = strdup(colon + 1);
            nh++;
            free(cur);
            cur = NULL;
        }
        if (end)
            break;
        cur = malloc((size_t)n + 1);
        memcpy(cur, line, (size_t)n + 1);
        curlen = (size_t)n;
    }
    body_off = ftell(in);

    if (um_keyrule_count(kr) > 0) {
        struct um_str from[4];
        size_t nfrom = 0;
        char dom[UM_KEYRULE_DOMAIN_MAX + 1];
        struct um_str d;
        struct um_keyrule_match m;
        for (size_t i = 0; i < nh; i++) {
            if (strcasecmp(h[i].name, "From") == 0 && nfrom < 4)
                from[nfrom++] = (struct um_str){h[i].value, strlen(h[i].value)};
        }
        if (um_keyrule_from_domain(from, nfrom, dom, sizeof(dom), &d, &err) != UM_OK) {
            fprintf(stderr, "unsigned: %s\n", err.msg);
        } else {
            um_keyrule_match(kr, d, &m);
            if (!m.found)
                fprintf(stderr, "unsigned: %s\n", m.reason);
            for (size_t i = 0; m.found && i < m.nkeys; i++) {
                for (size_t j = 0; j < nkeys; j++) {
                    if (strcmp(um_dkim_sign_key_name(keys[j]), m.keys[i]) == 0)
                        use[nuse++] = keys[j];
                }
            }
        }
    } else {
        for (size_t i = 0; i < nkeys; i++)
            use[nuse++] = keys[i];
    }

    if (nuse > 0) {
        struct um_dkim_sign *ds;
        struct um_dkim_sign_session *s;
        char *buf = malloc(chunk);
        size_t r;

        if (um_dkim_sign_new(&opts, &ds, &err) != UM_OK)
            die("sign_new", &err);
        if (um_dkim_sign_begin(ds, use, nuse, "signfile", &s, &err) != UM_OK)
            die("begin", &err);
        for (size_t i = 0; i < nh; i++) {
            const char *v = h[i].value;
            if (!opts.value_has_leading_space && *v == ' ')
                v++;
            if (um_dkim_sign_header(s, (struct um_str){h[i].name, strlen(h[i].name)},
                                    (struct um_str){v, strlen(v)}, &err)
                != UM_OK)
                die("header", &err);
        }
        if (um_dkim_sign_eoh(s, &err) != UM_OK)
            die("eoh", &err);
        while ((r = fread(buf, 1, chunk, in)) > 0) {
            if (um_dkim_sign_body(s, (struct um_str){buf, r}, &err) != UM_OK)
                die("body", &err);
        }
        if (um_dkim_sign_end(s, &err) != UM_OK)
            die("end", &err);
        for (size_t i = 0; i < um_dkim_sign_count(s); i++) {
            const char *v = um_dkim_sign_value(s, i);
            fputs("DKIM-Signature:", stdout);
            if (!opts.value_has_leading_space)
                fputc(' ', stdout);
            prev_cr = false;
            put_converted(stdout, v, strlen(v), crlf, &prev_cr);
            fputs(crlf ? "\r\n" : "\n", stdout);
        }
        um_dkim_sign_session_free(s);
        um_dkim_sign_free(ds);
        free(buf);
    }

    /* The message as the MTA would send it on. */
    for (size_t i = 0; i < nh; i++) {
        prev_cr = false;
        if (crlf) {
            put_converted(stdout, h[i].name, strlen(h[i].name), true, &prev_cr);
            fputc(':', stdout);
            put_converted(stdout, h[i].value, strlen(h[i].value), true, &prev_cr);
            fputs("\r\n", stdout);
        } else {
            printf("%s:", h[i].name);
            put_lf_only(stdout, h[i].value, strlen(h[i].value));
            fputs("\n", stdout);
        }
    }
    if (body_off >= 0 && fseek(in, body_off, SEEK_SET) == 0) {
        char buf[65536];
        size_t r;

        fputs(crlf ? "\r\n" : "\n", stdout);
        prev_cr = false;
        while ((r = fread(buf, 1, sizeof(buf), in)) > 0) {
            if (crlf)
                put_converted(stdout, buf, r, true, &prev_cr);
            else
                put_lf_only(stdout, buf, r);
        }
    }
    fclose(in);
    for (size_t i = 0; i < nh; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
    free(line);
    for (size_t i = 0; i < nkeys; i++)
        um_dkim_sign_key_free(keys[i]);
    um_keyrule_free(kr);
    return fflush(stdout) == 0 ? 0 : 2;
}
