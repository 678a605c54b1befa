/*
 * test_senderkey.c - sender key derivation and the Postfix Received uid parser
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "senderkey.h"

#define S(lit) ((struct um_str){(lit), sizeof(lit) - 1})
#define NONE   ((struct um_str){NULL, 0})

static struct um_str
cstr(const char *s)
{
    return s == NULL ? NONE : (struct um_str){s, strlen(s)};
}

/* order is a comma-separated list of source names parsed with um_senderkey_order_add(). */
static void
order_from(struct um_senderkey_order *o, const char *list)
{
    char buf[128];
    char *save = NULL;
    struct um_error err = {0};

    um_senderkey_order_init(o);
    (void)snprintf(buf, sizeof(buf), "%s", list);
    for (char *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        if (um_senderkey_order_add(o, cstr(w), &err) != UM_OK)
            fail_msg("order \"%s\": %s", list, err.msg);
    }
}

struct derive_case {
    const char *name, *order, *sasl, *sender, *ip, *received;
    enum um_status want_st;
    const char *want_key;
};

static const struct derive_case derive_cases[] = {
    {"sasl wins", "sasl,sender", "Alice", "<bob@example.org>", NULL, NULL, UM_OK, "sasl:alice"},
    {"no login: sender", "sasl,sender", NULL, "<Bob@Example.ORG>", NULL, NULL, UM_OK,
     "sender:bob@example.org"},
    {"empty login: sender", "sasl,sender", "", "<bob@example.org>", NULL, NULL, UM_OK,
     "sender:bob@example.org"},
    {"sender first", "sender,sasl", "alice", "<bob@example.org>", NULL, NULL, UM_OK,
     "sender:bob@example.org"},
    {"null sender skips", "sender,sasl", "alice", "<>", NULL, NULL, UM_OK, "sasl:alice"},
    {"null sender, spaces", "sender,client_ip", NULL, " < > ", "192.0.2.1", NULL, UM_OK,
     "ip:192.0.2.1"},
    {"sender without <>", "sender", NULL, "bob@example.org", NULL, NULL, UM_OK,
     "sender:bob@example.org"},
    {"source route dropped", "sender", NULL, "<@relay.example,@b.example:Bob@Example.org>", NULL,
     NULL, UM_OK, "sender:bob@example.org"},
    {"unterminated route skips", "sender,uid", NULL, "<@relay.example>", NULL,
     "by h (Postfix, from userid 33)", UM_OK, "uid:33"},
    {"local sender", "sender", NULL, "<www-data>", NULL, NULL, UM_OK, "sender:www-data"},
    {"domain", "sender_domain", NULL, "<bob@Mail.Example.ORG.>", NULL, NULL, UM_OK,
     "domain:mail.example.org"},
    {"domain of quoted local part", "sender_domain", NULL, "<\"a@b\"@example.net>", NULL, NULL,
     UM_OK, "domain:example.net"},
    {"domain: no @ skips", "sender_domain,sender", NULL, "<www-data>", NULL, NULL, UM_OK,
     "sender:www-data"},
    {"domain: empty domain skips", "sender_domain,client_ip", NULL, "<bob@>", "10.0.0.1", NULL,
     UM_OK, "ip:10.0.0.1"},
    {"domain before sasl", "sender_domain,sasl", "alice", "<bob@example.org>", NULL, NULL, UM_OK,
     "domain:example.org"},
    {"ipv4", "client_ip", NULL, NULL, "192.0.2.1", NULL, UM_OK, "ip:192.0.2.1"},
    {"ipv4 bracketed", "client_ip", NULL, NULL, "[192.0.2.1]", NULL, UM_OK, "ip:192.0.2.1"},
    {"ipv6 cut to /64", "client_ip", NULL, NULL, "2001:DB8:1:2:3:4:5:6", NULL, UM_OK,
     "ip:2001:db8:1:2::/64"},
    {"ipv6 tagged", "client_ip", NULL, NULL, "[IPv6:2001:db8::1]", NULL, UM_OK, "ip:2001:db8::/64"},
    {"ipv4-mapped", "client_ip", NULL, NULL, "::ffff:192.0.2.9", NULL, UM_OK, "ip:192.0.2.9"},
    {"junk ip skips", "client_ip,sender", NULL, "<a@b.example>", "unknown", NULL, UM_OK,
     "sender:a@b.example"},
    {"uid", "uid,sender", NULL, "<x@y.example>", NULL,
     "by web1.example.org (Postfix, from userid 33)", UM_OK, "uid:33"},
    {"uid junk skips", "uid,sender", NULL, "<x@y.example>", NULL, "from evil by x", UM_OK,
     "sender:x@y.example"},
    {"sasl before uid", "sasl,uid", "carol", NULL, NULL, "by h (Postfix, from userid 0)", UM_OK,
     "sasl:carol"},
    {"all five, last wins", "sasl,sender,sender_domain,client_ip,uid", NULL, "<>", "junk",
     "by h (Postfix, from userid 1000)", UM_OK, "uid:1000"},
    {"nothing yields", "sasl,sender", NULL, "<>", "192.0.2.1", NULL, UM_ENOENT, NULL},
    {"empty order", "", "alice", "<a@b>", NULL, NULL, UM_ENOENT, NULL},
};

static void
test_derive_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(derive_cases) / sizeof(derive_cases[0]); i++) {
        const struct derive_case *c = &derive_cases[i];
        struct um_senderkey_order o;
        struct um_senderkey_input in = {cstr(c->sasl), cstr(c->sender), cstr(c->ip),
                                        cstr(c->received)};
        struct um_senderkey k;
        struct um_error err = {0};

        order_from(&o, c->order);
        enum um_status st = um_senderkey_derive(&o, &in, &k, &err);
        if (st != c->want_st) {
            fail_msg("%s: got %s (%s), want %s", c->name, um_status_name(st), err.msg,
                     um_status_name(c->want_st));
        }
        if (c->want_key != NULL
            && (k.len != strlen(c->want_key) || strcmp(k.key, c->want_key) != 0)) {
            fail_msg("%s: got key \"%s\", want \"%s\"", c->name, k.key, c->want_key);
        }
    }
}

/* Every permutation of every subset of the five sources: the first yielding one wins. */
static void
test_derive_all_orders(void **state)
{
    static const char *const names[] = {"sasl", "sender", "sender_domain", "client_ip", "uid"};
    static const char *const keys[] = {"sasl:alice", "sender:bob@example.org", "domain:example.org",
                                       "ip:192.0.2.1", "uid:33"};
    struct um_senderkey_input in = {S("alice"), S("<bob@example.org>"), S("192.0.2.1"),
                                    S("by h (Postfix, from userid 33)")};
    struct um_senderkey_input none = {NONE, S("<>"), S("x"), S("junk")};
    unsigned long checked = 0;

    (void)state;
    /* Sequences of distinct indexes in base 6 (digit 0 = end), up to length 5. */
    for (unsigned code = 0; code < 6 * 6 * 6 * 6 * 6; code++) {
        unsigned idx[5], n = 0, seen = 0, c = code;
        bool ok = true;
        while (c > 0 && n < 5) {
            unsigned d = c % 6;
            c /= 6;
            if (d == 0 || (seen & (1u << d)) != 0) {
                ok = false;
                break;
            }
            seen |= 1u << d;
            idx[n++] = d - 1;
        }
        if (!ok || n == 0)
            continue;
        struct um_senderkey_order o;
        um_senderkey_order_init(&o);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(um_senderkey_order_add(&o, cstr(names[idx[i]]), NULL), UM_OK);
        /* With every source present the first one wins; with the first one absent, the
         * second; with none present, nothing. */
        for (unsigned skip = 0; skip <= n; skip++) {
            struct um_senderkey_input mix = in;
            for (unsigned i = 0; i < skip; i++) {
                switch (idx[i]) {
                case 0:
                    mix.sasl_login = none.sasl_login;
                    break;
                case 1:
                case 2:
                    mix.sender = none.sender;
                    break;
                case 3:
                    mix.client_ip = none.client_ip;
                    break;
                default:
                    mix.received = none.received;
                    break;
                }
            }
            /* Blanking the sender also blanks sender_domain: the winner is the first
             * source, at or after skip, whose input is still there. */
            const char *want = NULL;
            for (unsigned i = 0; i < n && want == NULL; i++) {
                bool present;
                switch (idx[i]) {
                case 0:
                    present = mix.sasl_login.p != NULL;
                    break;
                case 1:
                case 2:
                    present = mix.sender.len > 2;
                    break;
                case 3:
                    present = mix.client_ip.len > 1;
                    break;
                default:
                    present = mix.received.len > 4;
                    break;
                }
                if (present)
                    want = keys[idx[i]];
            }
            struct um_senderkey k;
            enum um_status st = um_senderkey_derive(&o, &mix, &k, NULL);
            if (want == NULL && st != UM_ENOENT)
                fail_msg("order %u skip %u: got %s \"%s\", want ENOENT", code, skip,
                         um_status_name(st), k.key);
            if (want != NULL && (st != UM_OK || strcmp(k.key, want) != 0))
                fail_msg("order %u skip %u: got %s \"%s\", want \"%s\"", code, skip,
                         um_status_name(st), st == UM_OK ? k.key : "", want);
            checked++;
        }
    }
    assert_true(checked > 300);
}

static void
test_derive_too_long(void **state)
{
    static char login[UM_SENDERKEY_MAX + 10];
    struct um_senderkey_order o;
    struct um_senderkey k;
    struct um_error err = {0};

    (void)state;
    um_senderkey_order_default(&o);
    /* "sasl:" + 1018 bytes is exactly UM_SENDERKEY_MAX: fits. */
    memset(login, 'A', sizeof(login));
    struct um_senderkey_input in = {
        {login, UM_SENDERKEY_MAX - 5}, S("<b@example.org>"), NONE, NONE};
    assert_int_equal(um_senderkey_derive(&o, &in, &k, &err), UM_OK);
    assert_int_equal(k.len, UM_SENDERKEY_MAX);
    assert_int_equal(k.key[UM_SENDERKEY_MAX], '\0');
    assert_int_equal(k.key[10], 'a');
    /* One more byte: refused, never truncated, never falls through to the sender. */
    in.sasl_login.len++;
    assert_int_equal(um_senderkey_derive(&o, &in, &k, &err), UM_ELIMIT);
    assert_string_equal(err.msg, "sender key too long (sasl, 1024 bytes, max 1023)");
}

static const struct {
    const char *name;
    const char *in;
    enum um_status want_st;
    enum um_senderkey_source want;
    const char *want_err;
} source_cases[] = {
    {"sasl", "sasl", UM_OK, UM_SENDERKEY_SOURCE_SASL, NULL},
    {"upper", "SENDER", UM_OK, UM_SENDERKEY_SOURCE_SENDER, NULL},
    {"domain", "sender_domain", UM_OK, UM_SENDERKEY_SOURCE_SENDER_DOMAIN, NULL},
    {"ip", "client_ip", UM_OK, UM_SENDERKEY_SOURCE_CLIENT_IP, NULL},
    {"uid", "uid", UM_OK, UM_SENDERKEY_SOURCE_UID, NULL},
    {"unknown", "login", UM_EINVAL, 0,
     "unknown sender key source \"login\" (want sasl, sender, sender_domain, client_ip or uid)"},
    {"dash", "client-ip", UM_EINVAL, 0,
     "unknown sender key source \"client-ip\" (want sasl, sender, sender_domain, client_ip or "
     "uid)"},
    {"empty", "", UM_EINVAL, 0,
     "unknown sender key source \"\" (want sasl, sender, sender_domain, client_ip or uid)"},
    {"control bytes escaped", "s\n\"", UM_EINVAL, 0,
     "unknown sender key source \"s\\x0a\\x22\" (want sasl, sender, sender_domain, client_ip or "
     "uid)"},
};

static void
test_source_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(source_cases) / sizeof(source_cases[0]); i++) {
        enum um_senderkey_source got = 0;
        struct um_error err = {0};
        enum um_status st = um_senderkey_source_parse(cstr(source_cases[i].in), &got, &err);
        if (st != source_cases[i].want_st)
            fail_msg("%s: got %s, want %s", source_cases[i].name, um_status_name(st),
                     um_status_name(source_cases[i].want_st));
        if (st == UM_OK && got != source_cases[i].want)
            fail_msg("%s: got %s, want %s", source_cases[i].name, um_senderkey_source_name(got),
                     um_senderkey_source_name(source_cases[i].want));
        if (source_cases[i].want_err != NULL && strcmp(err.msg, source_cases[i].want_err) != 0)
            fail_msg("%s: got error \"%s\", want \"%s\"", source_cases[i].name, err.msg,
                     source_cases[i].want_err);
        if (st == UM_OK)
            assert_string_equal(um_senderkey_source_name(got),
                                source_cases[i].in[0] == 'S' ? "sender" : source_cases[i].in);
    }
}

static void
test_order_add(void **state)
{
    struct um_senderkey_order o;
    struct um_error err = {0};

    (void)state;
    um_senderkey_order_init(&o);
    assert_int_equal(o.ipv6_prefix, 64);
    assert_int_equal(um_senderkey_order_add(&o, S("uid"), &err), UM_OK);
    assert_int_equal(um_senderkey_order_add(&o, S("sasl"), &err), UM_OK);
    assert_int_equal(um_senderkey_order_add(&o, S("UID"), &err), UM_EINVAL);
    assert_string_equal(err.msg, "sender key source \"uid\" listed twice");
    assert_int_equal(um_senderkey_order_add(&o, S("bogus"), &err), UM_EINVAL);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.src[0], UM_SENDERKEY_SOURCE_UID);
    assert_int_equal(o.src[1], UM_SENDERKEY_SOURCE_SASL);
    um_senderkey_order_default(&o);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.src[0], UM_SENDERKEY_SOURCE_SASL);
    assert_int_equal(o.src[1], UM_SENDERKEY_SOURCE_SENDER);
}

static const struct {
    const char *name;
    struct um_str in;
    enum um_status want_st;
    uint32_t want;
} uid_cases[] = {
    /* Real Postfix rows, as the milter receives the value (leading space, folded). */
    {"pickup",
     S(" by web1.example.org (Postfix, from userid 33)\n\tid 4Xk2Lp0ZQz; Tue,  3 Sep "
       "2024 10:00:00 +0200 (CEST)"),
     UM_OK, 33},
    {"crlf folded",
     S(" by mail.example.net (Postfix, from userid 1001)\r\n\tid 4Y0; Mon, 1 Jan "
       "2024 00:00:00 +0000 (UTC)"),
     UM_OK, 1001},
    {"root", S("by localhost (Postfix, from userid 0) id ABC;"), UM_OK, 0},
    {"folded inside comment", S("by h\n\t(Postfix,\n\tfrom  userid\t 500 ) id x"), UM_OK, 500},
    {"custom mail_name", S("by h (MyMTA, from userid 7)"), UM_OK, 7},
    {"case-insensitive", S("BY h (Postfix, FROM USERID 8)"), UM_OK, 8},
    {"largest", S("by h (Postfix, from userid 4294967294)"), UM_OK, 4294967294u},
    /* Junk. */
    {"smtp received",
     S("from mail.example.org (mail.example.org [192.0.2.1]) by mx.example.net "
       "(Postfix) with ESMTPS id 4Xk2"),
     UM_ENOENT, 0},
    {"postfix no userid", S("by mx.example.net (Postfix) with ESMTP id 4Xk2"), UM_ENOENT, 0},
    {"sendmail submit", S("(from www-data@localhost) by h (8.15.2/8.15.2/Submit) id 12"), UM_ENOENT,
     0},
    {"empty", S(""), UM_ENOENT, 0},
    {"only by", S("by"), UM_ENOENT, 0},
    {"by no host", S("by (Postfix, from userid 1)"), UM_ENOENT, 0},
    {"bypass word", S("bypass h (Postfix, from userid 1)"), UM_ENOENT, 0},
    {"no space before comment", S("by h(Postfix, from userid 1)"), UM_ENOENT, 0},
    {"no name", S("by h (, from userid 1)"), UM_ENOENT, 0},
    {"negative", S("by h (Postfix, from userid -1)"), UM_ENOENT, 0},
    {"minus one as uid_t", S("by h (Postfix, from userid 4294967295)"), UM_ENOENT, 0},
    {"overflow", S("by h (Postfix, from userid 99999999999)"), UM_ENOENT, 0},
    {"no digits", S("by h (Postfix, from userid )"), UM_ENOENT, 0},
    {"trailing junk", S("by h (Postfix, from userid 33x)"), UM_ENOENT, 0},
    {"unterminated", S("by h (Postfix, from userid 33"), UM_ENOENT, 0},
    {"no from", S("by h (Postfix, userid 33)"), UM_ENOENT, 0},
    {"nul in host", {"by h\0x (Postfix, from userid 33)", 31}, UM_ENOENT, 0},
    {"nested paren", S("by h ((Postfix, from userid 33)"), UM_ENOENT, 0},
};

static void
test_received_uid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(uid_cases) / sizeof(uid_cases[0]); i++) {
        uint32_t got = 12345;
        struct um_error err = {0};
        enum um_status st = um_senderkey_received_uid(uid_cases[i].in, &got, &err);
        if (st != uid_cases[i].want_st)
            fail_msg("%s: got %s (%s), want %s", uid_cases[i].name, um_status_name(st), err.msg,
                     um_status_name(uid_cases[i].want_st));
        if (st == UM_OK && got != uid_cases[i].want)
            fail_msg("%s: got uid %lu, want %lu", uid_cases[i].name, (unsigned long)got,
                     (unsigned long)uid_cases[i].want);
        if (st != UM_OK && (got != 12345 || err.msg[0] == '\0'))
            fail_msg("%s: failure touched *uid or gave no reason", uid_cases[i].name);
    }
}

/* Every prefix of a valid header is junk or the header itself: no read past the end. */
static void
test_received_uid_prefixes(void **state)
{
    static const char full[] = "by web1.example.org (Postfix, from userid 33) id 4X";
    uint32_t uid;

    (void)state;
    for (size_t n = 0; n <= sizeof(full) - 1; n++) {
        enum um_status st = um_senderkey_received_uid((struct um_str){full, n}, &uid, NULL);
        bool want_ok = n >= sizeof("by web1.example.org (Postfix, from userid 33)") - 1;
        if ((st == UM_OK) != want_ok)
            fail_msg("prefix %zu: got %s, want %s", n, um_status_name(st),
                     want_ok ? "OK" : "ENOENT");
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive_table),
        cmocka_unit_test(test_derive_all_orders),
        cmocka_unit_test(test_derive_too_long),
        cmocka_unit_test(test_source_parse),
        cmocka_unit_test(test_order_add),
        cmocka_unit_test(test_received_uid),
        cmocka_unit_test(test_received_uid_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
