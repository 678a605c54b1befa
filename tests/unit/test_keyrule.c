/*
 * test_keyrule - rule matching and author-domain extraction, table-driven
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keyrule.h"

static struct um_keyrule *
rules_build(void)
{
    static const char *const both[] = {"main-rsa", "main-ed"};
    static const char *const sub[] = {"sub-rsa"};
    static const char *const shop[] = {"shop-ed"};
    struct um_keyrule *kr = NULL;
    struct um_error err = {0};

    assert_int_equal(um_keyrule_new(&kr, &err), UM_OK);
    assert_int_equal(um_keyrule_add(kr, "Example.COM.", both, 2, &err), UM_OK);
    assert_int_equal(um_keyrule_add(kr, "shop.example.com", shop, 1, &err), UM_OK);
    assert_int_equal(um_keyrule_add(kr, "*.example.com", sub, 1, &err), UM_OK);
    return kr;
}

static void
test_keyrule_match_table(void **state)
{
    static const struct {
        const char *name, *domain, *want_key; /* want_key NULL: no signing */
        size_t want_rule;
    } cases[] = {
        {"exact", "example.com", "main-rsa", 0},
        {"exact, case and dot", "EXAMPLE.com.", "main-rsa", 0},
        {"first match wins over the wildcard", "shop.example.com", "shop-ed", 1},
        {"subdomain", "mail.example.com", "sub-rsa", 2},
        {"deep subdomain", "a.b.example.com", "sub-rsa", 2},
        {"suffix that is not a subdomain", "badexample.com", NULL, 0},
        {"parent", "com", NULL, 0},
        {"other", "example.org", NULL, 0},
        {"empty", "", NULL, 0},
    };
    struct um_keyrule *kr = rules_build();

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_keyrule_match m;
        um_keyrule_match(kr, (struct um_str){cases[i].domain, strlen(cases[i].domain)}, &m);
        if (cases[i].want_key == NULL) {
            if (m.found)
                fail_msg("%s: got rule %zu, want no match", cases[i].name, m.rule);
            if (m.reason[0] == '\0')
                fail_msg("%s: no reason given", cases[i].name);
            continue;
        }
        if (!m.found)
            fail_msg("%s: got no match (%s), want %s", cases[i].name, m.reason, cases[i].want_key);
        if (m.rule != cases[i].want_rule || strcmp(m.keys[0], cases[i].want_key) != 0)
            fail_msg("%s: got rule %zu key %s, want rule %zu key %s", cases[i].name, m.rule,
                     m.keys[0], cases[i].want_rule, cases[i].want_key);
    }
    {
        struct um_keyrule_match m;
        um_keyrule_match(kr, UM_STR("example.org"), &m);
        assert_string_equal(m.reason, "no rule matches example.org (3 rules)");
        um_keyrule_match(kr, UM_STR("example.com"), &m);
        assert_int_equal(m.nkeys, 2);
        assert_string_equal(m.keys[1], "main-ed");
        assert_string_equal(m.pattern, "example.com");
    }
    /* A catch-all added last catches the rest. */
    {
        static const char *const all[] = {"fallback"};
        struct um_keyrule_match m;
        struct um_error err = {0};
        assert_int_equal(um_keyrule_add(kr, "*", all, 1, &err), UM_OK);
        um_keyrule_match(kr, UM_STR("example.org"), &m);
        assert_true(m.found);
        assert_string_equal(m.keys[0], "fallback");
        um_keyrule_match(kr, UM_STR("example.com"), &m);
        assert_string_equal(m.keys[0], "main-rsa");
    }
    um_keyrule_free(kr);
}

static void
test_keyrule_add_errors(void **state)
{
    static const char *const k[] = {"k"};
    static const char *const empty[] = {""};
    struct um_keyrule *kr = NULL;
    struct um_error err = {0};

    (void)state;
    assert_int_equal(um_keyrule_new(&kr, &err), UM_OK);
    assert_int_equal(um_keyrule_add(kr, ".example.com", k, 1, &err), UM_EINVAL);
    assert_string_equal(err.msg, "keyrule: pattern \".example.com\" is ambiguous; write "
                                 "\"*.example.com\" for its subdomains and/or \"example.com\" "
                                 "for the domain itself");
    assert_int_equal(um_keyrule_add(kr, "ex ample.com", k, 1, &err), UM_EINVAL);
    assert_string_equal(err.msg, "keyrule: bad domain pattern \"ex ample.com\" (want "
                                 "example.com, *.example.com or *)");
    assert_int_equal(um_keyrule_add(kr, "a.*.example.com", k, 1, &err), UM_EINVAL);
    assert_int_equal(um_keyrule_add(kr, "*example.com", k, 1, &err), UM_EINVAL);
    assert_int_equal(um_keyrule_add(kr, "", k, 1, &err), UM_EINVAL);
    assert_int_equal(um_keyrule_add(kr, "example.com", k, 0, &err), UM_EINVAL);
    assert_string_equal(err.msg, "keyrule: pattern \"example.com\" has 0 keys (1 to 8)");
    assert_int_equal(um_keyrule_add(kr, "example.com", empty, 1, &err), UM_EINVAL);
    assert_int_equal(um_keyrule_count(kr), 0);
    um_keyrule_free(kr);
    um_keyrule_free(NULL);
}

static void
test_keyrule_from_domain_table(void **state)
{
    static const struct {
        const char *name, *from;
        enum um_status want;
        const char *want_domain;
    } cases[] = {
        /* RFC 5322 shapes */
        {"addr-spec", "joe@example.com", UM_OK, "example.com"},
        {"name-addr", "Joe Q. Public <john.q.public@example.com>", UM_OK, "example.com"},
        {"leading space (LEADSPC)", " Joe <joe@Example.COM>", UM_OK, "example.com"},
        {"quoted display name with @ and <>", "\"joe@evil.test <x@evil.test>\" <joe@example.com>",
         UM_OK, "example.com"},
        {"unquoted display name with @ (spoof shape)", "joe@evil.test <joe@example.com>", UM_OK,
         "example.com"},
        {"comments everywhere", "(c1) joe (c2) @ (c3) example.com (c4)", UM_OK, "example.com"},
        {"nested comment", "Joe <joe@example.com> (a (nested) comment)", UM_OK, "example.com"},
        {"comment holding an address", "joe@example.com (really evil@evil.test)", UM_OK,
         "example.com"},
        {"quoted local part with @", "\"a@b\"@example.com", UM_OK, "example.com"},
        {"quoted local part with space", "<\"joe q\"@example.com>", UM_OK, "example.com"},
        {"obs-route", "<@relay.test,@other.test:joe@example.com>", UM_OK, "example.com"},
        {"group with one member", "Team: joe@example.com;", UM_OK, "example.com"},
        {"trailing dot", "joe@example.com.", UM_OK, "example.com"},
        {"folded value", "Joe\r\n <joe@sub.example.com>", UM_OK, "sub.example.com"},
        {"bare LF fold", "Joe\n\t<joe@example.com>", UM_OK, "example.com"},
        {"empty list elements (obs)", " , joe@example.com , ", UM_OK, "example.com"},
        {"CFWS around a dot (obs-domain)", "joe@example . com", UM_OK, "example.com"},
        /* no author */
        {"empty", "", UM_ENOENT, NULL},
        {"only a comment", "(nobody)", UM_ENOENT, NULL},
        {"empty group", "undisclosed-recipients:;", UM_ENOENT, NULL},
        /* several authors */
        {"two addresses", "a@example.com, b@example.com", UM_ELIMIT, NULL},
        {"two in a group", "G: a@example.com, b@example.org;", UM_ELIMIT, NULL},
        {"group plus address", "G: a@example.com;, b@example.org", UM_ELIMIT, NULL},
        /* junk */
        {"no at", "Joe <joe>", UM_EINVAL, NULL},
        {"no at, bare", "joe", UM_EINVAL, NULL},
        {"empty local part", "@example.com", UM_EINVAL, NULL},
        {"domain literal", "joe@[192.0.2.1]", UM_EINVAL, NULL},
        {"non-ASCII domain", "joe@b\xc3\xbcro.example", UM_EINVAL, NULL},
        {"unterminated angle", "Joe <joe@example.com", UM_EINVAL, NULL},
        {"unterminated quote", "\"Joe <joe@example.com>", UM_EINVAL, NULL},
        {"unterminated comment", "joe@example.com (oops", UM_EINVAL, NULL},
        {"two angle addresses", "<a@example.com> <b@example.org>", UM_EINVAL, NULL},
        {"text after angle", "<a@example.com> trailing", UM_EINVAL, NULL},
        {"stray >", "joe@example.com>", UM_EINVAL, NULL},
        {"nested group", "A: B: joe@example.com;;", UM_EINVAL, NULL},
        {"semicolon outside group", "joe@example.com;", UM_EINVAL, NULL},
        {"unterminated group", "G: joe@example.com", UM_EINVAL, NULL},
        {"space in local part", "joe smith@example.com", UM_EINVAL, NULL},
        {"space in domain", "joe@exa mple.com", UM_EINVAL, NULL},
        {"empty label", "joe@example..com", UM_EINVAL, NULL},
        {"underscore", "joe@ex_ample.com", UM_EINVAL, NULL},
        {"long label", "joe@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
         UM_EINVAL, NULL},
        {"deep comments", "joe@example.com (((((((((((((((((((((((((deep)))))))))))))))))))))))))",
         UM_EINVAL, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[UM_KEYRULE_DOMAIN_MAX + 1];
        struct um_str v = {cases[i].from, strlen(cases[i].from)}, d;
        struct um_error err = {0};
        enum um_status got = um_keyrule_from_domain(&v, 1, buf, sizeof(buf), &d, &err);

        if (got != cases[i].want)
            fail_msg("%s: got %s (%s), want %s", cases[i].name, um_status_name(got), err.msg,
                     um_status_name(cases[i].want));
        if (got == UM_OK
            && (d.len != strlen(cases[i].want_domain)
                || memcmp(d.p, cases[i].want_domain, d.len) != 0))
            fail_msg("%s: got domain %.*s, want %s", cases[i].name, (int)d.len, d.p,
                     cases[i].want_domain);
        if (got != UM_OK && (d.len != 0 || err.msg[0] == '\0'))
            fail_msg("%s: failure without message or with a domain", cases[i].name);
    }
}

static void
test_keyrule_from_header_count(void **state)
{
    struct um_str two[2] = {UM_STR("a@example.com"), UM_STR("b@example.com")};
    char buf[UM_KEYRULE_DOMAIN_MAX + 1];
    struct um_str d;
    struct um_error err = {0};

    (void)state;
    assert_int_equal(um_keyrule_from_domain(two, 0, buf, sizeof(buf), &d, &err), UM_ENOENT);
    assert_string_equal(err.msg, "from: no From header");
    assert_int_equal(um_keyrule_from_domain(two, 2, buf, sizeof(buf), &d, &err), UM_ELIMIT);
    assert_string_equal(err.msg, "from: 2 From headers");
    assert_int_equal(um_keyrule_from_domain(two, 1, buf, 5, &d, &err), UM_EINVAL);
    assert_string_equal(err.msg, "from: domain too long");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyrule_match_table),
        cmocka_unit_test(test_keyrule_add_errors),
        cmocka_unit_test(test_keyrule_from_domain_table),
        cmocka_unit_test(test_keyrule_from_header_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
