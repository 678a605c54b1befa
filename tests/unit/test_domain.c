/*
 * test_domain - lib/domain: the domain name rule and each flag, as a table of names with the
 * flags of every caller (DKIM d= and s=, key rules and From domains, SPF, the resolver), so
 * a row shows which caller takes which name. Long names are built in the test: labels of
 * 63 and 64 bytes, names of 253 and 254 bytes, with and without a final dot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "domain.h"

/* The flags each caller passes (the call sites spell them out the same way). */
#define HOST     0u
#define SELECTOR UM_DOMAIN_UNDERSCORE
#define KEYRULE  UM_DOMAIN_EDGE_HYPHEN
#define SPF      (UM_DOMAIN_FINAL_DOT | UM_DOMAIN_ANY_BYTE | UM_DOMAIN_TWO_LABELS)
#define RESOLVER (UM_DOMAIN_FINAL_DOT | UM_DOMAIN_PRINTABLE)

static const struct {
    const char *name;
    bool host, selector, keyrule, spf, resolver; /* want, per caller */
} cases[] = {
    /* name                          host   sel    keyr   spf    resolver */
    {"example.org", true, true, true, true, true},
    {"EXAMPLE.Org", true, true, true, true, true},
    {"a.b.c.d.example.co.uk", true, true, true, true, true},
    {"localhost", true, true, true, false, true},
    {"1", true, true, true, false, true},
    {"192.0.2.1", true, true, true, true, true},
    {"xn--bcher-kva.example", true, true, true, true, true},
    {"a-b.example", true, true, true, true, true},
    {"a--b.example", true, true, true, true, true},
    {"", false, false, false, false, false},
    {".", false, false, false, false, false},
    {"..", false, false, false, false, false},
    {".example.org", false, false, false, false, false},
    {"example..org", false, false, false, false, false},
    {"example.org.", false, false, false, true, true},
    {"example.org..", false, false, false, false, false},
    {"a.", false, false, false, false, true},
    {"-a.example", false, false, true, true, true},
    {"a-.example", false, false, true, true, true},
    {"example.a-", false, false, true, true, true},
    {"-", false, false, true, false, true},
    {"s1._domainkey.example.org", false, true, false, true, true},
    {"_dmarc.example.org", false, true, false, true, true},
    {"sel_1", false, true, false, false, true},
    {"a b.example", false, false, false, true, false},
    {"a\\.example", false, false, false, true, false},
    {"a@b.example", false, false, false, true, true},
    {"caf\xc3\xa9.example", false, false, false, true, false},
    {"tab\t.example", false, false, false, true, false},
};

static const char *
flags_name(unsigned flags)
{
    switch (flags) {
    case HOST:
        return "host";
    case SELECTOR:
        return "selector";
    case KEYRULE:
        return "keyrule";
    case SPF:
        return "spf";
    case RESOLVER:
        return "resolver";
    }
    return "?";
}

static void
check(const char *what, struct um_str name, unsigned flags, bool want)
{
    bool got = um_domain_is_valid(name, flags);

    if (got != want)
        fail_msg("%s (%zu bytes) as %s: got %d, want %d", what, name.len, flags_name(flags), got,
                 want);
}

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_str n = um_str_of(cases[i].name);

        check(cases[i].name, n, HOST, cases[i].host);
        check(cases[i].name, n, SELECTOR, cases[i].selector);
        check(cases[i].name, n, KEYRULE, cases[i].keyrule);
        check(cases[i].name, n, SPF, cases[i].spf);
        check(cases[i].name, n, RESOLVER, cases[i].resolver);
    }
}

/* Fills buf with labels of label bytes ('a'..) joined by dots until the name is total
 * bytes long (the last label takes what is left); returns buf. */
static char *
make_name(char *buf, size_t total, size_t label)
{
    size_t o = 0, l = 0;

    while (o < total) {
        if (l == label && o + 1 < total) {
            buf[o++] = '.';
            l = 0;
            continue;
        }
        buf[o] = (char)('a' + o % 26);
        o++;
        l++;
    }
    buf[o] = '\0';
    return buf;
}

static void
test_lengths(void **state)
{
    static const unsigned all[] = {HOST, SELECTOR, KEYRULE, SPF, RESOLVER};
    char buf[300], dotted[302];

    (void)state;
    for (size_t f = 0; f < sizeof(all) / sizeof(all[0]); f++) {
        bool two = (all[f] & UM_DOMAIN_TWO_LABELS) != 0;
        bool dot = (all[f] & UM_DOMAIN_FINAL_DOT) != 0;

        /* one label: 63 bytes is the most */
        check("63-byte label", um_str_of(make_name(buf, 63, 63)), all[f], !two);
        check("64-byte label", um_str_of(make_name(buf, 64, 64)), all[f], false);
        /* a 63-byte label among others, and a 64-byte one */
        (void)snprintf(dotted, sizeof(dotted), "%s.example", make_name(buf, 63, 63));
        check("63-byte first label", um_str_of(dotted), all[f], true);
        (void)snprintf(dotted, sizeof(dotted), "x.%s", make_name(buf, 64, 64));
        check("64-byte last label", um_str_of(dotted), all[f], false);
        /* the whole name: 253 bytes is the most; a final dot does not count */
        check("253 bytes", um_str_of(make_name(buf, 253, 63)), all[f], true);
        check("254 bytes", um_str_of(make_name(buf, 254, 63)), all[f], false);
        (void)snprintf(dotted, sizeof(dotted), "%s.", make_name(buf, 253, 63));
        check("253 bytes and a dot", um_str_of(dotted), all[f], dot);
        (void)snprintf(dotted, sizeof(dotted), "%s.", make_name(buf, 254, 63));
        check("254 bytes and a dot", um_str_of(dotted), all[f], false);
    }
}

/* The name is a byte range: bytes past len are not read, and a NUL inside is a byte. */
static void
test_byte_range(void **state)
{
    (void)state;
    check("prefix of example.org!", (struct um_str){"example.org!", 11}, HOST, true);
    check("example.org with a NUL", (struct um_str){"example\0org", 11}, HOST, false);
    check("example.org with a NUL", (struct um_str){"example\0org", 11}, RESOLVER, false);
    check("NULL", (struct um_str){NULL, 0}, RESOLVER, false);
    check("empty range", (struct um_str){"example.org", 0}, RESOLVER, false);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_byte_range),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
