/*
 * gen_man.c - prints unimilter.conf(5) in roff, from the configuration schema
 *
 * Design note. The SETTINGS section is generated from um_config_schema_get(), the same
 * table the loader checks files against and takes its defaults from, so the manual cannot
 * list a setting the daemon rejects or miss one it accepts (tests/install/t_man.sh checks
 * that every schema path appears). The hand-written parts (NAME, SYNOPSIS, DESCRIPTION
 * before the settings; EXAMPLES, FILES, SEE ALSO after) are roff files given on the
 * command line and copied verbatim.
 *
 * usage: gen_man HEAD.roff TAIL.roff [OUT]   (OUT: write there instead of stdout; the build
 *        uses it so that no shell redirection is needed in add_custom_command)
 *
 * Sections: one .SS per schema group ("dns", "ratelimit.notify"), in schema order, holding
 * the settings whose closest enclosing group it is; settings outside any group come first,
 * under "Top-level settings". Each setting is a .TP paragraph: path in bold, then type and
 * default, then its documentation sentence. Text is escaped for roff (backslash, leading
 * dot or quote, hyphen-minus in paths and values); `code` in a sentence becomes bold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static int
copy_file(const char *path)
{
    char buf[4096];
    size_t n;
    FILE *fp = fopen(path, "r");

    if (fp == NULL) {
        fprintf(stderr, "gen_man: cannot open %s\n", path);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(fp);
    return 0;
}

/* Escapes s for roff. literal: also hyphen-minus as \- (paths, values, commands). */
static void
put_escaped(const char *s, int literal)
{
    int bol = 1; /* at the beginning of an output line */

    for (; *s != '\0'; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", stdout);
        bol = 0;
        if (*s == '\\')
            fputs("\\e", stdout);
        else if (*s == '-' && literal)
            fputs("\\-", stdout);
        else if (*s == '\n') {
            putchar('\n');
            bol = 1;
        } else
            putchar(*s);
    }
}

/* A documentation sentence: `code` spans in bold, their hyphens as \-. */
static void
put_doc(const char *s)
{
    int code = 0;

    if (*s == '.' || *s == '\'')
        fputs("\\&", stdout);
    for (; *s != '\0'; s++) {
        if (*s == '`') {
            fputs(code ? "\\fR" : "\\fB", stdout);
            code = !code;
        } else if (*s == '\\') {
            fputs("\\e", stdout);
        } else if (*s == '-' && code) {
            fputs("\\-", stdout);
        } else {
            putchar(*s);
        }
    }
    if (code)
        fputs("\\fR", stdout);
    putchar('\n');
}

static int
is_group(const struct um_config_doc *d)
{
    return strcmp(d->type, "group") == 0;
}

/* Index of the closest enclosing group of path, or -1 for a top-level setting. */
static long
owner_of(const char *path, size_t n)
{
    long best = -1;
    size_t bestlen = 0;

    for (size_t i = 0; i < n; i++) {
        struct um_config_doc g;
        size_t len;

        um_config_schema_get(i, &g);
        len = strlen(g.path);
        if (is_group(&g) && len > bestlen && strncmp(path, g.path, len) == 0 && path[len] == '.') {
            best = (long)i;
            bestlen = len;
        }
    }
    return best;
}

static void
put_setting(const struct um_config_doc *d)
{
    printf(".TP\n.B ");
    put_escaped(d->path, 1);
    printf("\n(%s", d->type);
    if (strstr(d->path, ".[].") != NULL)
        printf(", a field of each list element");
    printf("; default: ");
    if (strcmp(d->type, "string") == 0) {
        printf("\\(dq");
        put_escaped(d->dflt, 1);
        printf("\\(dq");
    } else if (d->dflt[0] == '\0') {
        printf("none");
    } else {
        put_escaped(d->dflt, 1);
    }
    printf(")\n.br\n");
    put_doc(d->doc);
}

static void
put_section(long owner, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct um_config_doc d;

        um_config_schema_get(i, &d);
        if (!is_group(&d) && owner_of(d.path, n) == owner)
            put_setting(&d);
    }
}

int
main(int argc, char **argv)
{
    size_t n = um_config_schema_count();

    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: gen_man HEAD.roff TAIL.roff [OUT]\n");
        return 64;
    }
    if (argc == 4 && freopen(argv[3], "w", stdout) == NULL) {
        fprintf(stderr, "gen_man: cannot write %s\n", argv[3]);
        return 1;
    }
    if (copy_file(argv[1]) != 0)
        goto fail;
    printf(".SH SETTINGS\n"
           "Every setting unimilter accepts, grouped as in the file, with its type and\n"
           "default.\n"
           "Settings not given take their defaults; unknown settings are errors.\n"
           "Paths with\n.B [].\nname a field of each element of a list of groups.\n"
           ".SS Top-level settings\n");
    put_section(-1, n);
    for (size_t i = 0; i < n; i++) {
        struct um_config_doc g;

        um_config_schema_get(i, &g);
        if (!is_group(&g))
            continue;
        printf(".SS ");
        put_escaped(g.path, 1);
        putchar('\n');
        if (g.doc[0] != '\0') {
            printf(".PP\n");
            put_doc(g.doc);
        }
        put_section((long)i, n);
    }
    if (copy_file(argv[2]) != 0)
        goto fail;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gen_man: write error\n");
        goto fail;
    }
    return 0;
fail:
    if (argc == 4)
        (void)remove(argv[3]); /* no half-written page for make to take as up to date */
    return 1;
}
