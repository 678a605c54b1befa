/*
 * test_spf_suite.c - the openspf RFC 7208 test suite through um_spf (libspf2 + our guards)
 *
 * Data: tests/data/spf/rfc7208-tests.txt, converted from
 * ../shared/conformance/spf-openspf/rfc7208-tests.yml by tests/unit/spf_suite_convert.py
 * (format in that script). Every case runs with its scenario's zone served by the in-memory
 * fake; its result must be in the suite's allowed set. Cases we know we fail are listed in
 * known_failures[] with the reason; any other failure fails the test. A listed case that
 * passes is reported so the list can shrink. Explanation strings are not compared: we never
 * expand exp= (libspf2's expansion is broken and exp text is attacker-controlled).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fakes/fake_dns_spf.c"

#ifndef UM_SOURCE_DIR
#define UM_SOURCE_DIR "."
#endif

static const struct {
    const char *id, *why;
} known_failures[] = {
#include "spf_suite_known.h"
};

static const char *
known_why(const char *id)
{
    for (size_t i = 0; i < sizeof(known_failures) / sizeof(known_failures[0]); i++) {
        if (known_failures[i].id != NULL && strcmp(known_failures[i].id, id) == 0)
            return known_failures[i].why;
    }
    return NULL;
}

/* %XX-decoding in place; "\"\"" is the empty string; ',' becomes the fake's separator. */
static char *
decode(char *s, bool commas)
{
    char *w = s;

    if (strcmp(s, "\"\"") == 0) {
        s[0] = '\0';
        return s;
    }
    for (char *r = s; *r != '\0'; r++) {
        if (*r == '%' && r[1] != '\0' && r[2] != '\0') {
            char hex[3] = {r[1], r[2], '\0'};
            *w = (char)strtol(hex, NULL, 16);
            if (*w == '\0')
                *w = FAKE_NUL; /* the fake turns it back into a NUL byte on the wire */
            w++;
            r += 2;
        } else if (*r == ',' && commas) {
            *w++ = '\x1f';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return s;
}

static int
type_of(const char *t)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"A", UM_DNS_TYPE_A},           {"AAAA", UM_DNS_TYPE_AAAA},
                 {"MX", UM_DNS_TYPE_MX},         {"PTR", UM_DNS_TYPE_PTR},
                 {"TXT", UM_DNS_TYPE_TXT},       {"CNAME", UM_DNS_TYPE_CNAME},
                 {"TIMEOUT", FAKE_TYPE_TIMEOUT}, {"NOTXT", FAKE_TYPE_NOTXT}};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(types[i].name, t) == 0)
            return types[i].type;
    }
    fail_msg("unknown type %s", t);
    return 0;
}

static bool
allowed(const char *want, const char *got)
{
    char buf[256], *save = NULL;

    (void)snprintf(buf, sizeof(buf), "%s", want);
    for (char *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        if (strcmp(w, got) == 0)
            return true;
    }
    return false;
}

static void
test_rfc7208_suite(void **state)
{
    static struct fake_zone zone;
    struct um_spf_resolver rs = fake_resolver_proto;
    struct um_spf *spf = NULL;
    struct um_error err = {0};
    char line[70000];
    unsigned total = 0, passed = 0, known = 0, unexpected = 0, fixed = 0;
    FILE *fp = fopen(UM_SOURCE_DIR "/tests/data/spf/rfc7208-tests.txt", "r");

    (void)state;
    assert_non_null(fp);
    rs.arg = &zone;
    if (um_spf_new_resolver(&rs, "receiver.example", &spf, &err) != UM_OK)
        fail_msg("new: %s", err.msg);
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *save = NULL, *kind, *f[5];

        line[strcspn(line, "\n")] = '\0';
        kind = strtok_r(line, " ", &save);
        for (size_t i = 0; i < 5; i++)
            f[i] = strtok_r(NULL, " ", &save);
        if (kind == NULL)
            continue;
        if (strcmp(kind, "S") == 0) {
            fake_zone_reset(&zone);
        } else if (strcmp(kind, "Z") == 0) {
            int t = type_of(f[1]);
            char *v = strcmp(f[2], "!") == 0 ? (char[]){""} : decode(f[2], t == UM_DNS_TYPE_TXT);
            fake_zone_add(&zone, decode(f[0], false), t, v);
        } else if (strcmp(kind, "T") == 0) {
            struct um_spf_query q = {decode(f[1], false), decode(f[2], false), decode(f[3], false)};
            struct um_spf_result res;
            const char *why = known_why(f[0]), *got;
            enum um_status st = um_spf_check(spf, &q, &res, &err);

            got = st == UM_OK ? um_auth_name(res.result) : "(error)";
            total++;
            if (allowed(f[4], got)) {
                passed++;
                if (why != NULL) {
                    fixed++;
                    print_message("now passes (remove from spf_suite_known.h): %s\n", f[0]);
                }
            } else if (why != NULL) {
                known++;
                print_message("known failure %-28s got %-9s want %-18s: %s\n", f[0], got, f[4],
                              why);
            } else {
                unexpected++;
                print_message("FAIL %-28s got %-9s want %-18s (%s)\n", f[0], got, f[4],
                              st == UM_OK ? res.reason : err.msg);
            }
            um_spf_result_fini(&res);
        }
    }
    fclose(fp);
    fake_zone_reset(&zone);
    um_spf_free(spf);
    print_message("rfc7208 suite: %u/%u pass, %u known failures, %u unexpected\n", passed, total,
                  known, unexpected);
    assert_int_equal(total, 203);
    assert_int_equal(unexpected, 0);
    (void)fixed;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7208_suite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
