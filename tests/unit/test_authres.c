/*
 * test_authres.c - RFC 8601 Authentication-Results builder and authserv-id parser
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authres.h"

#define MAXP 6

struct prop {
    const char *ptype, *prop, *value;
};
struct res {
    const char *method;
    enum um_auth result;
    const char *reason;
    struct prop props[MAXP];
};

struct build_case {
    const char *name, *id;
    struct res res[4];
    const char *want;
};

static const struct build_case build_cases[] = {
    {"no results", "mx.example.net", {{NULL, 0, NULL, {{0}}}}, "mx.example.net; none"},
    {"spf dkim dmarc",
     "mx.example.net",
     {{"spf", UM_AUTH_PASS, NULL, {{"smtp", "mailfrom", "example.org"}}},
      {"dkim",
       UM_AUTH_PASS,
       NULL,
       {{"header", "d", "example.org"},
        {"header", "i", "@example.org"},
        {"header", "s", "sel"},
        {"header", "a", "rsa-sha256"},
        {"header", "b", "abcdefgh"}}},
      {"dmarc",
       UM_AUTH_PASS,
       NULL,
       {{"header", "from", "example.org"}, {"policy", "dmarc", "reject"}}}},
     "mx.example.net;\n\tspf=pass smtp.mailfrom=example.org;\n\tdkim=pass header.d=example.org "
     "header.i=@example.org header.s=sel header.a=rsa-sha256 header.b=abcdefgh;\n\tdmarc=pass "
     "header.from=example.org policy.dmarc=reject"},
    {"reason escaped",
     "mx.example.net",
     {{"dkim", UM_AUTH_FAIL, "body hash (bh) \\ mismatch\r\n", {{"header", "d", "ex.org"}}}},
     "mx.example.net;\n\tdkim=fail (body hash \\(bh\\) \\\\ mismatch?\?) header.d=ex.org"},
    {"value quoted",
     "mx.example.net",
     {{"spf", UM_AUTH_SOFTFAIL, NULL, {{"smtp", "mailfrom", "a b\"c\\d@example.org"}}}},
     "mx.example.net;\n\tspf=softfail smtp.mailfrom=\"a b\\\"c\\\\d@example.org\""},
    {"value with ; quoted",
     "mx.example.net",
     {{"spf", UM_AUTH_NONE, NULL, {{"smtp", "helo", "x;dkim=pass"}}}},
     "mx.example.net;\n\tspf=none smtp.helo=\"x;dkim=pass\""},
    {"control byte dropped",
     "mx.example.net",
     {{"spf", UM_AUTH_FAIL, NULL, {{"smtp", "mailfrom", "a\rb"}, {"smtp", "helo", "h.example"}}}},
     "mx.example.net;\n\tspf=fail smtp.helo=h.example"},
    {"8-bit dropped",
     "mx.example.net",
     {{"dmarc", UM_AUTH_TEMPERROR, NULL, {{"header", "from", "\xc3\xa9.example"}}}},
     "mx.example.net;\n\tdmarc=temperror"},
    {"empty value quoted",
     "mx.example.net",
     {{"spf", UM_AUTH_PERMERROR, NULL, {{"smtp", "mailfrom", ""}}}},
     "mx.example.net;\n\tspf=permerror smtp.mailfrom=\"\""},
    {"policy word",
     "a.b",
     {{"dkim", UM_AUTH_POLICY, "weak key", {{0}}}},
     "a.b;\n\tdkim=policy (weak key)"},
    {"id quoted", "my id", {{"spf", UM_AUTH_NEUTRAL, NULL, {{0}}}}, "\"my id\";\n\tspf=neutral"},
};

static char *
build(const char *id, const struct res *res, size_t nres)
{
    struct um_authres *ar = NULL;
    struct um_error err = {0};
    char *out = NULL;

    if (um_authres_new(id, &ar, &err) != UM_OK)
        fail_msg("new: %s", err.msg);
    for (size_t i = 0; i < nres && res[i].method != NULL; i++) {
        if (um_authres_add(ar, res[i].method, res[i].result, res[i].reason, &err) != UM_OK)
            fail_msg("add: %s", err.msg);
        for (size_t j = 0; j < MAXP && res[i].props[j].ptype != NULL; j++) {
            const char *v = res[i].props[j].value;
            /* an unusable value is dropped: the rows show the rendered result */
            if (um_authres_prop(ar, res[i].props[j].ptype, res[i].props[j].prop,
                                (struct um_str){v, strlen(v)}, &err)
                != UM_OK)
                continue;
        }
    }
    if (um_authres_render(ar, &out, &err) != UM_OK)
        fail_msg("render: %s", err.msg);
    um_authres_free(ar);
    return out;
}

static void
test_build_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
        const struct build_case *c = &build_cases[i];
        char *got = build(c->id, c->res, 4);
        if (strcmp(got, c->want) != 0)
            fail_msg("%s: got\n[%s]\nwant\n[%s]", c->name, got, c->want);
        free(got);
    }
}

/* Many long values: every line (the first with the field name) stays under 998 bytes. */
static void
test_build_folds(void **state)
{
    struct um_authres *ar = NULL;
    char big[UM_AUTHRES_VALUE_MAX + 1], *out = NULL, *line;
    size_t n, first = UM_AUTHRES_FIELD_PREFIX;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[5] = '"'; /* quoted and escaped: longer than the raw bytes */
    assert_int_equal(um_authres_new("mx.example.net", &ar, NULL), UM_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(um_authres_add(ar, "dkim", UM_AUTH_PASS, big, NULL), UM_OK);
        for (int j = 0; j < 6; j++) {
            assert_int_equal(
                um_authres_prop(ar, "header", "i", (struct um_str){big, strlen(big)}, NULL), UM_OK);
        }
    }
    assert_int_equal(um_authres_prop(ar, "header", "i", (struct um_str){big, sizeof(big)}, NULL),
                     UM_EINVAL); /* one byte over VALUE_MAX (the NUL) */
    assert_int_equal(um_authres_prop(ar, "bad type", "i", UM_STR("x"), NULL), UM_EINVAL);
    assert_int_equal(um_authres_render(ar, &out, NULL), UM_OK);
    assert_null(strchr(out, '\r'));
    for (line = out; line != NULL;) {
        char *nl = strchr(line, '\n');
        n = nl == NULL ? strlen(line) : (size_t)(nl - line);
        if (n + first >= UM_AUTHRES_LINE_MAX)
            fail_msg("line of %zu bytes", n + first);
        if (nl != NULL && nl[1] != '\t')
            fail_msg("fold without TAB");
        first = 0;
        line = nl == NULL ? NULL : nl + 1;
    }
    free(out);
    um_authres_free(ar);
}

struct parse_case {
    const char *name, *value;
    enum um_status want_st;
    const char *want_id; /* raw, as it appears */
    bool ours;           /* against "mx.example.net" */
};

static const struct parse_case parse_cases[] = {
    /* RFC 8601 appendix B */
    {"B.2 none", "example.org 1; none", UM_OK, "example.org", false},
    {"B.3 spf", "example.com; spf=pass smtp.mailfrom=example.net", UM_OK, "example.com", false},
    {"B.4 auth", "example.com;\n\tauth=pass (cram-md5) smtp.auth=sender@example.net;\n\tspf=pass",
     UM_OK, "example.com", false},
    {"B.5 comment", "example.com; sender-id=pass header.from=example.com", UM_OK, "example.com",
     false},
    {"B.6 version", "example.com 1 ; dkim=pass", UM_OK, "example.com", false},
    {"ours", "mx.example.net; spf=pass", UM_OK, "mx.example.net", true},
    {"ours upper case", "MX.Example.NET; dkim=pass", UM_OK, "MX.Example.NET", true},
    {"ours after CFWS and comments", " \t(forged (nested) \\) x)\r\n mx.example.net;spf=pass",
     UM_OK, "mx.example.net", true},
    {"ours quoted", "\"mx.example.net\"; none", UM_OK, "mx.example.net", true},
    {"ours quoted-pair", "\"mx.ex\\ample.net\"; none", UM_OK, "mx.ex\\ample.net", true},
    {"ours no semicolon", "mx.example.net spf=pass", UM_OK, "mx.example.net", true},
    {"ours, broken tail", "mx.example.net (unterminated", UM_OK, "mx.example.net", true},
    {"prefix is not ours", "mx.example.net.evil; none", UM_OK, "mx.example.net.evil", false},
    {"shorter is not ours", "mx.example; none", UM_OK, "mx.example", false},
    {"empty", "", UM_EINVAL, NULL, false},
    {"only CFWS", "  (c) \t", UM_EINVAL, NULL, false},
    {"unterminated comment", "(mx.example.net; none", UM_EINVAL, NULL, false},
    {"unterminated quote", "\"mx.example.net; none", UM_EINVAL, NULL, false},
    {"starts with ;", "; spf=pass", UM_EINVAL, NULL, false},
    {"trailing backslash in comment", "(\\", UM_EINVAL, NULL, false},
    {"trailing backslash in quote", "\"\\", UM_EINVAL, NULL, false},
};

static void
test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct um_str v = {c->value, strlen(c->value)}, id;
        enum um_status st = um_authres_parse_id(v, &id);
        bool ours = um_authres_is_ours(v, "mx.example.net");

        if (st != c->want_st)
            fail_msg("%s: got %s, want %s", c->name, um_status_name(st),
                     um_status_name(c->want_st));
        if (st == UM_OK && (id.len != strlen(c->want_id) || memcmp(id.p, c->want_id, id.len) != 0))
            fail_msg("%s: got id \"%.*s\", want \"%s\"", c->name, (int)id.len, id.p, c->want_id);
        if (ours != c->ours)
            fail_msg("%s: got ours=%d, want %d", c->name, ours, c->ours);
    }
}

/* Deep nesting is refused, not recursed. */
static void
test_parse_deep_comment(void **state)
{
    char buf[4096];
    struct um_str id;

    (void)state;
    memset(buf, '(', sizeof(buf));
    assert_int_equal(um_authres_parse_id((struct um_str){buf, sizeof(buf)}, &id), UM_EINVAL);
}

static void
test_auth_names(void **state)
{
    (void)state;
    assert_string_equal(um_auth_name(UM_AUTH_SOFTFAIL), "softfail");
    assert_string_equal(um_auth_name(UM_AUTH_POLICY), "policy");
    assert_string_equal(um_auth_name((enum um_auth)99), "permerror");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_table), cmocka_unit_test(test_build_folds),
        cmocka_unit_test(test_parse_table), cmocka_unit_test(test_parse_deep_comment),
        cmocka_unit_test(test_auth_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
