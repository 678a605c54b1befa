/*
 * test_spf.c - um_spf over the in-memory fake zone: results, limits, guards, headers
 *
 * Client addresses are never loopback (libspf2 would pass them; we answer none, see
 * test_loopback). The RFC 7208 suite runs in test_spf_suite.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include "../fakes/fake_dns_spf.c"

/* Zone text: one "name TYPE value" per line; TYPE A AAAA MX PTR TXT CNAME TIMEOUT. */
static void
zone_load(struct fake_zone *z, const char *text)
{
    char buf[8192], *save = NULL;

    fake_zone_reset(z);
    (void)snprintf(buf, sizeof(buf), "%s", text);
    for (char *l = strtok_r(buf, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        char *name = l, *type = strchr(l, ' '), *val;
        int t;
        if (type == NULL)
            fail_msg("zone line \"%s\"", l);
        *type++ = '\0';
        val = strchr(type, ' ');
        if (val != NULL)
            *val++ = '\0';
        t = strcmp(type, "A") == 0       ? UM_DNS_TYPE_A
            : strcmp(type, "AAAA") == 0  ? UM_DNS_TYPE_AAAA
            : strcmp(type, "MX") == 0    ? UM_DNS_TYPE_MX
            : strcmp(type, "PTR") == 0   ? UM_DNS_TYPE_PTR
            : strcmp(type, "TXT") == 0   ? UM_DNS_TYPE_TXT
            : strcmp(type, "CNAME") == 0 ? UM_DNS_TYPE_CNAME
                                         : FAKE_TYPE_TIMEOUT;
        fake_zone_add(z, name, t, val);
    }
}

#define ELEVEN_A                                                                                   \
    "v=spf1 a:n1.x.test a:n2.x.test a:n3.x.test a:n4.x.test a:n5.x.test a:n6.x.test "              \
    "a:n7.x.test a:n8.x.test a:n9.x.test a:n10.x.test a:hit.x.test -all"
#define TEN_A_HOSTS                                                                                \
    "n1.x.test A 10.0.0.1\nn2.x.test A 10.0.0.1\nn3.x.test A 10.0.0.1\nn4.x.test A "               \
    "10.0.0.1\nn5.x.test A 10.0.0.1\nn6.x.test A 10.0.0.1\nn7.x.test A 10.0.0.1\nn8.x.test "       \
    "A 10.0.0.1\nn9.x.test A 10.0.0.1\nn10.x.test A 10.0.0.1\nhit.x.test A 192.0.2.7\n"

struct spf_case {
    const char *name, *zone, *ip, *helo, *from;
    enum um_auth want;
    const char *want_identity, *want_domain, *want_reason; /* reason: substring, or NULL */
};

static const struct spf_case spf_cases[] = {
    /* RFC 7208 basics */
    {"ip4 in range", "example.org TXT v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.7", "h.example",
     "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    {"fail", "example.org TXT v=spf1 ip4:198.51.100.1 -all", "192.0.2.7", "h.example",
     "a@example.org", UM_AUTH_FAIL, "mailfrom", "example.org", NULL},
    {"softfail", "example.org TXT v=spf1 ~all", "192.0.2.7", "h.example", "a@example.org",
     UM_AUTH_SOFTFAIL, "mailfrom", "example.org", NULL},
    {"neutral", "example.org TXT v=spf1 ?all", "192.0.2.7", "h.example", "a@example.org",
     UM_AUTH_NEUTRAL, "mailfrom", "example.org", NULL},
    {"none: no record", "example.org TXT some other text", "192.0.2.7", "h.example",
     "a@example.org", UM_AUTH_NONE, "mailfrom", "example.org", "no SPF record"},
    {"none: nxdomain", "other.example TXT v=spf1 -all", "192.0.2.7", "h.example", "a@example.org",
     UM_AUTH_NONE, "mailfrom", "example.org", NULL},
    {"none: single label", "", "192.0.2.7", "h.example", "a@localhost", UM_AUTH_NONE, "mailfrom",
     "localhost", "not a valid domain"},
    {"ip6 pass", "example.org TXT v=spf1 ip6:2001:db8::/32 -all", "2001:db8::7", "h.example",
     "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    {"ip4-mapped client is IPv4", "example.org TXT v=spf1 ip4:192.0.2.7 -all", "::ffff:192.0.2.7",
     "h.example", "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    {"a and mx",
     "example.org TXT v=spf1 a mx -all\nexample.org MX 10,mx.example.org\n"
     "mx.example.org A 192.0.2.7",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    /* include chains */
    {"include chain pass",
     "example.org TXT v=spf1 include:i1.example.net -all\n"
     "i1.example.net TXT v=spf1 include:i2.example.net ?all\n"
     "i2.example.net TXT v=spf1 ip4:192.0.2.0/28 -all",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    {"include of fail is no match",
     "example.org TXT v=spf1 include:i1.example.net ~all\n"
     "i1.example.net TXT v=spf1 -all",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_SOFTFAIL, "mailfrom", "example.org", NULL},
    {"include of none is permerror", "example.org TXT v=spf1 include:nx.example.net -all",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_PERMERROR, "mailfrom", "example.org", NULL},
    {"redirect",
     "example.org TXT v=spf1 redirect=r.example.net\n"
     "r.example.net TXT v=spf1 ip4:192.0.2.7 -all",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_PASS, "mailfrom", "example.org", NULL},
    /* DNS trouble */
    {"temperror: record SERVFAIL", "example.org TIMEOUT", "192.0.2.7", "h.example", "a@example.org",
     UM_AUTH_TEMPERROR, "mailfrom", "example.org", "timed out"},
    {"temperror: a: SERVFAIL",
     "example.org TXT v=spf1 a:t.example.net -all\n"
     "t.example.net TIMEOUT",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_TEMPERROR, "mailfrom", "example.org", NULL},
    {"temperror: include SERVFAIL",
     "example.org TXT v=spf1 include:t.example.net -all\n"
     "t.example.net TIMEOUT",
     "192.0.2.7", "h.example", "a@example.org", UM_AUTH_TEMPERROR, "mailfrom", "example.org", NULL},
    /* RFC 7208 4.6.4 limits */
    {"11 a: terms, match on the 11th", "x.test TXT " ELEVEN_A "\n" TEN_A_HOSTS, "192.0.2.7",
     "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "more than 10"},
    {"10 a: terms, match on the 10th",
     "x.test TXT v=spf1 a:n1.x.test a:n2.x.test a:n3.x.test a:n4.x.test a:n5.x.test "
     "a:n6.x.test a:n7.x.test a:n8.x.test a:n9.x.test a:hit.x.test -all\n" TEN_A_HOSTS,
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PASS, "mailfrom", "x.test", NULL},
    {"10 a: terms, then -all",
     "x.test TXT v=spf1 a:n1.x.test a:n2.x.test a:n3.x.test "
     "a:n4.x.test a:n5.x.test a:n6.x.test a:n7.x.test a:n8.x.test a:n9.x.test a:n10.x.test "
     "-all\n" TEN_A_HOSTS,
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_FAIL, "mailfrom", "x.test", NULL},
    {"11th term is an include",
     "x.test TXT v=spf1 a:n1.x.test a:n2.x.test a:n3.x.test "
     "a:n4.x.test a:n5.x.test a:n6.x.test a:n7.x.test a:n8.x.test a:n9.x.test a:n10.x.test "
     "include:i.x.test -all\ni.x.test TXT v=spf1 +all\n" TEN_A_HOSTS,
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "more than 10"},
    {"3 void lookups", "x.test TXT v=spf1 a:nx1.x.test a:nx2.x.test a:nx3.x.test +all", "192.0.2.7",
     "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "void lookups"},
    {"2 void lookups", "x.test TXT v=spf1 a:nx1.x.test mx:nx2.x.test +all", "192.0.2.7",
     "h.example", "a@x.test", UM_AUTH_PASS, "mailfrom", "x.test", NULL},
    {"void: nodata counts too",
     "x.test TXT v=spf1 a:e.x.test a:e.x.test a:e.x.test +all\n"
     "e.x.test TXT exists",
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "void lookups"},
    {"mx with 11 names",
     "x.test TXT v=spf1 mx ?all\nx.test MX 1,m1.x.test\n"
     "x.test MX 1,m2.x.test\nx.test MX 1,m3.x.test\nx.test MX 1,m4.x.test\n"
     "x.test MX 1,m5.x.test\nx.test MX 1,m6.x.test\nx.test MX 1,m7.x.test\n"
     "x.test MX 1,m8.x.test\nx.test MX 1,m9.x.test\nx.test MX 1,m10.x.test\n"
     "x.test MX 1,m11.x.test",
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "MX"},
    /* HELO identity for the null sender (RFC 7208 2.3) */
    {"helo identity", "mail.example.org TXT v=spf1 ip4:192.0.2.7 -all", "192.0.2.7",
     "mail.example.org", "", UM_AUTH_PASS, "helo", "mail.example.org", NULL},
    {"helo identity fail", "mail.example.org TXT v=spf1 -all", "192.0.2.7", "mail.example.org",
     NULL, UM_AUTH_FAIL, "helo", "mail.example.org", NULL},
    {"helo literal is none", "", "192.0.2.7", "[192.0.2.7]", "", UM_AUTH_NONE, "helo",
     "[192.0.2.7]", NULL},
    /* records libspf2 must never see (macro CVEs, grammar) */
    {"macro transformer overflow", "x.test TXT v=spf1 exists:%{l1000r}.x.test -all", "192.0.2.7",
     "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "transformer"},
    {"macro transformer 129", "x.test TXT v=spf1 a:%{d129}.x.test -all", "192.0.2.7", "h.example",
     "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "transformer"},
    {"macro transformer 0", "x.test TXT v=spf1 a:%{d0}.x.test -all", "192.0.2.7", "h.example",
     "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "transformer"},
    {"unknown macro letter", "x.test TXT v=spf1 a:%{z}.x.test -all", "192.0.2.7", "h.example",
     "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "macro letter"},
    {"unterminated macro", "x.test TXT v=spf1 a:%{d.x.test -all", "192.0.2.7", "h.example",
     "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "macro"},
    {"bad record in include",
     "x.test TXT v=spf1 include:i.x.test -all\n"
     "i.x.test TXT v=spf1 exists:%{i9999}.x.test",
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PERMERROR, "mailfrom", "x.test", "transformer"},
    {"good macros pass",
     "x.test TXT v=spf1 exists:%{ir}.%{l}._spf.%{d} -all\n"
     "7.2.0.192.a._spf.x.test A 127.0.0.2",
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_PASS, "mailfrom", "x.test", NULL},
    /* XXX libspf2 1.2.10 (Debian): %{dN} with N >= the number of labels expands with a
     * leading dot (%{d2} of x.test is ".test"), and %{l1r} of a one-label local part is
     * empty. RFC 7208 7.3 wants "x.test" / "a". The row pins today's behaviour so a fix
     * (our own expansion in the DNS layer, see spf.c) shows up here. */
    {"libspf2 %{d2} bug (known)",
     "x.test TXT v=spf1 exists:%{d2}._spf.a.test -all\n"
     "x.test._spf.a.test A 127.0.0.2",
     "192.0.2.7", "h.example", "a@x.test", UM_AUTH_FAIL, "mailfrom", "x.test", NULL},
    {"/0 rewritten", "x.test TXT v=spf1 -ip4:10.0.0.0/0 +all", "192.0.2.7", "h.example", "a@x.test",
     UM_AUTH_FAIL, "mailfrom", "x.test", NULL},
};

static void
test_spf_table(void **state)
{
    static struct fake_zone zone;
    struct um_spf_resolver rs = fake_resolver_proto;
    struct um_spf *spf = NULL;
    struct um_error err = {0};

    (void)state;
    rs.arg = &zone;
    assert_int_equal(um_spf_new_resolver(&rs, "mx.receiver.example", &spf, &err), UM_OK);
    for (size_t i = 0; i < sizeof(spf_cases) / sizeof(spf_cases[0]); i++) {
        const struct spf_case *c = &spf_cases[i];
        struct um_spf_query q = {c->ip, c->helo, c->from};
        struct um_spf_result res;

        zone_load(&zone, c->zone);
        if (um_spf_check(spf, &q, &res, &err) != UM_OK)
            fail_msg("%s: error %s", c->name, err.msg);
        if (res.result != c->want)
            fail_msg("%s: got %s (%s), want %s", c->name, um_auth_name(res.result), res.reason,
                     um_auth_name(c->want));
        if (strcmp(res.identity, c->want_identity) != 0 || strcmp(res.domain, c->want_domain) != 0)
            fail_msg("%s: got %s %s, want %s %s", c->name, res.identity, res.domain,
                     c->want_identity, c->want_domain);
        if (c->want_reason != NULL && strstr(res.reason, c->want_reason) == NULL)
            fail_msg("%s: got reason \"%s\", want \"%s\"", c->name, res.reason, c->want_reason);
        if (zone.type99 != 0)
            fail_msg("%s: RR type 99 was queried", c->name);
        um_spf_result_fini(&res);
    }
    fake_zone_reset(&zone);
    um_spf_free(spf);
}

/* The record checker alone: RFC 7208 grammar rows. */
static void
test_record_is_valid(void **state)
{
    static const struct {
        const char *rec;
        bool want;
    } rows[] = {
        {"v=spf1", true},
        {"v=spf1 -all", true},
        {"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a/24//64 mx:m.example/0 ~all", true},
        {"v=spf1 include:_spf.example.com redirect=%{d}.example exp=e.%{d}", true},
        {"v=spf1 foo.bar-baz_q=anything%%", true},
        {"v=spf1 a:foo:bar/baz.example.com", true},
        {"v=spf1 exists:%{i}.%{h}.%{v}._spf.%{d3r-.}", true},
        {"V=SPF1 A:EXAMPLE.COM", true},
        {"v=spf10", false},
        {"v=spf1 a:example", false},
        {"v=spf1 a:1.2.3.4", false},
        {"v=spf1 ip4:192.0.2.1/032", false},
        {"v=spf1 ip4:192.0.2.1/33", false},
        {"v=spf1 ip4:192.0.2", false},
        {"v=spf1 ip6:::1/129", false},
        {"v=spf1 exists:%{c}.example.com", false},
        {"v=spf1 a:%{d128}.example.com", true},
        {"v=spf1 a:%{d1000}.example.com", false},
        {"v=spf1 redirect=a.example redirect=b.example", false},
        {"v=spf1 exp=a.example exp=b.example", false},
        {"v=spf1 include:", false},
        {"v=spf1 -exists:", false},
        {"v=spf1 9x=y", false},
        {"v=spf1 a:example.com\x01", false},
        {"v=spf1 \xc2\xa0"
         "all",
         false},
        {"v=spf1 all:foo", false},
        {"v=spf1 a:%", false},
        {"v=spf1 a:%x.example.com", false},
        {"v=spf1 ip4:192.0.2.0\0/32 -all", false}, /* fuzz_spf_record crash-4194882c */
    };
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len = strlen(rows[i].rec);
        if (strncmp(rows[i].rec, "v=spf1 ip4:192.0.2.0", 20) == 0 && len == 20)
            len = 29; /* the row with an embedded NUL */
        bool got = um_spf_record_is_valid((struct um_str){rows[i].rec, len}, why, sizeof(why));
        if (got != rows[i].want)
            fail_msg("\"%s\": got %d (%s), want %d", rows[i].rec, got, got ? "" : why,
                     rows[i].want);
    }
}

/* Received-SPF is ours (no openspf.org), hostile envelope bytes are neutralised. */
static void
test_received_spf(void **state)
{
    static struct fake_zone zone;
    struct um_spf_resolver rs = fake_resolver_proto;
    struct um_spf *spf = NULL;
    struct um_spf_query q = {"192.0.2.7", "h\r\n.example", "a\"b\r\nX-Evil: 1@example.org"};
    struct um_spf_result res;

    (void)state;
    rs.arg = &zone;
    zone_load(&zone, "example.org TXT v=spf1 ip4:192.0.2.7 -all");
    assert_int_equal(um_spf_new_resolver(&rs, "mx.receiver.example", &spf, NULL), UM_OK);
    assert_int_equal(um_spf_check(spf, &q, &res, NULL), UM_OK);
    assert_int_equal(res.result, UM_AUTH_PASS);
    assert_string_equal(res.ar_ptype, "smtp");
    assert_string_equal(res.ar_prop, "mailfrom");
    assert_string_equal(res.ar_value, "example.org");
    assert_string_equal(res.received_spf,
                        "pass (mx.receiver.example: domain of a\"b??X-Evil: 1@example.org "
                        "designates 192.0.2.7 as permitted sender) client-ip=192.0.2.7; "
                        "envelope-from=\"a\\\"b??X-Evil: 1@example.org\"; helo=\"h??.example\"; "
                        "receiver=mx.receiver.example; identity=mailfrom;");
    assert_null(strpbrk(res.received_spf, "\r\n"));
    um_spf_result_fini(&res);
    fake_zone_reset(&zone);
    um_spf_free(spf);
}

/* Decision (spf.h LOOPBACK): libspf2 passes loopback for free; we answer none, no DNS. */
static void
test_loopback(void **state)
{
    static struct fake_zone zone;
    struct um_spf_resolver rs = fake_resolver_proto;
    struct um_spf *spf = NULL;
    struct um_spf_result res;
    const char *ips[] = {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"};

    (void)state;
    rs.arg = &zone;
    zone_load(&zone, "example.org TXT v=spf1 -all");
    assert_int_equal(um_spf_new_resolver(&rs, "mx.receiver.example", &spf, NULL), UM_OK);
    for (size_t i = 0; i < 4; i++) {
        struct um_spf_query q = {ips[i], "h.example", "a@example.org"};
        assert_int_equal(um_spf_check(spf, &q, &res, NULL), UM_OK);
        if (res.result != UM_AUTH_NONE)
            fail_msg("%s: got %s, want none", ips[i], um_auth_name(res.result));
        um_spf_result_fini(&res);
    }
    assert_int_equal(zone.queries, 0);
    {
        struct um_spf_query q = {"not-an-ip", "h.example", "a@example.org"};
        assert_int_equal(um_spf_check(spf, &q, &res, NULL), UM_EINVAL);
        um_spf_result_fini(&res);
    }
    fake_zone_reset(&zone);
    um_spf_free(spf);
}

struct thread_arg {
    struct um_spf *spf;
    int bad;
};

static void *
spf_thread(void *p)
{
    struct thread_arg *ta = p;
    for (int i = 0; i < 200; i++) {
        /* alternate a pass and an over-the-limit record: the counters must not mix */
        struct um_spf_query q = {"192.0.2.7", "h.example", i % 2 ? "a@x.test" : "a@example.org"};
        struct um_spf_result res;
        if (um_spf_check(ta->spf, &q, &res, NULL) != UM_OK
            || res.result != (i % 2 ? UM_AUTH_PERMERROR : UM_AUTH_PASS))
            ta->bad++;
        um_spf_result_fini(&res);
    }
    return NULL;
}

/* One um_spf shared by 8 threads; each evaluation has its own counters. */
static void
test_threads(void **state)
{
    static struct fake_zone zone;
    struct um_spf_resolver rs = fake_resolver_proto;
    struct um_spf *spf = NULL;
    pthread_t th[8];
    struct thread_arg ta[8];

    (void)state;
    rs.arg = &zone;
    zone_load(&zone, "example.org TXT v=spf1 a:n1.x.test a:n2.x.test ip4:192.0.2.7 -all\n"
                     "x.test TXT " ELEVEN_A "\n" TEN_A_HOSTS);
    assert_int_equal(um_spf_new_resolver(&rs, "mx.receiver.example", &spf, NULL), UM_OK);
    for (int i = 0; i < 8; i++) {
        ta[i] = (struct thread_arg){spf, 0};
        assert_int_equal(pthread_create(&th[i], NULL, spf_thread, &ta[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(ta[i].bad, 0);
    }
    fake_zone_reset(&zone);
    um_spf_free(spf);
}

/* Cost of one pool slot (SPF_server_new_dns + our layer), paid once per concurrent
 * evaluation: printed, not asserted (timing). */
static void
test_bench_slot(void **state)
{
    struct um_spf_resolver rs = fake_resolver_proto;
    struct timespec a, b;
    int n = 200;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        struct um_spf *spf = NULL;
        assert_int_equal(um_spf_new_resolver(&rs, "mx.receiver.example", &spf, NULL), UM_OK);
        um_spf_free(spf);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    print_message("spf: one libspf2 server + layer: %.1f us\n",
                  ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n
                      / 1e3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spf_table),    cmocka_unit_test(test_record_is_valid),
        cmocka_unit_test(test_received_spf), cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_threads),      cmocka_unit_test(test_bench_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
