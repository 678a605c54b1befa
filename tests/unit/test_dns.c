/*
 * test_dns - lib/dns: server and name syntax (tables), setup errors, and the four results
 * plus the hard deadline against an in-process DNS responder on 127.0.0.1 (loopback only,
 * a thread of this test; no network and no system resolver are touched).
 *
 * The responder answers by the first label of the query name:
 *   multi.t   NOERROR, two TXT records: "ab" "cd" (two strings) and "x"
 *   empty.t   NOERROR, one TXT record of one empty string
 *   nx.t      NXDOMAIN
 *   nodata.t  NOERROR, no answer
 *   fail.t    SERVFAIL
 *   silent.t  no answer at all (the deadline must fire)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns.h"

static const struct {
    const char *s;
    bool ok;
} server_cases[] = {
    {"127.0.0.1", true},
    {"127.0.0.1@5353", true},
    {"::1", true},
    {"2001:db8::1@65535", true},
    {"", false},
    {"host.example", false},
    {"1.2.3.4@", false},
    {"1.2.3.4@0", false},
    {"1.2.3.4@65536", false},
    {"1.2.3.4@53x", false},
    {"1.2.3.4@-1", false},
    {"1.2.3.4:53", false},
    {"@53", false},
    {"1.2.3.4@99999999999999999999", false},
};

static void
test_server_syntax(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(server_cases) / sizeof(server_cases[0]); i++) {
        const char *why = NULL;
        bool got = um_dns_server_valid(server_cases[i].s, &why);

        if (got != server_cases[i].ok)
            fail_msg("server \"%s\": got %d, want %d", server_cases[i].s, got, server_cases[i].ok);
        if (!got && why == NULL)
            fail_msg("server \"%s\": no reason", server_cases[i].s);
    }
}

static void
test_name_syntax(void **state)
{
    static const struct {
        const char *name;
        bool ok;
    } cases[] = {
        {"example.org", true},
        {"example.org.", true},
        {"s1._domainkey.example.org", true},
        {"_dmarc.example.org", true},
        {"", false},
        {".", false},
        {"a..b", false},
        {".a", false},
        {"a b.example", false},
        {"a\\046b.example", false},
        {"a\nb", false},
        {"\xc3\xa9.example", false},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x", true},   /* 63 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x", false}, /* 64 */
    };
    char longname[300];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (um_dns_name_valid(cases[i].name) != cases[i].ok)
            fail_msg("name \"%s\": got %d, want %d", cases[i].name, !cases[i].ok, cases[i].ok);
    }
    /* 253 bytes is the most; 254 is too long. */
    memset(longname, 'a', sizeof(longname));
    for (size_t i = 9; i < 254; i += 10)
        longname[i] = '.';
    longname[253] = '\0';
    assert_true(um_dns_name_valid(longname));
    longname[253] = 'a';
    longname[254] = '\0';
    assert_false(um_dns_name_valid(longname));
    assert_false(um_dns_name_valid(NULL));
}

static void
test_new_errors(void **state)
{
    const char *bad[] = {"127.0.0.1@5353", "not-an-ip"};
    struct um_error err = {0};
    struct um_dns *dns = (struct um_dns *)1;

    (void)state;
    assert_int_equal(um_dns_new(bad, 2, 5, &dns, &err), UM_EINVAL);
    assert_null(dns);
    assert_string_equal(err.msg, "dns: server \"not-an-ip\": not an IP address");
    assert_int_equal(um_dns_new(bad, 1, 0, &dns, &err), UM_EINVAL);
    assert_int_equal(um_dns_new(bad, 1, UM_DNS_MAX_TIMEOUT + 1, &dns, &err), UM_EINVAL);
    um_dns_free(NULL);
}

/* --- an in-process responder ---------------------------------------------------------- */

struct responder {
    int fd;
    int stop[2];
    unsigned short port;
    pthread_t thread;
};

static size_t
put16(unsigned char *p, size_t o, unsigned v)
{
    p[o] = (unsigned char)(v >> 8);
    p[o + 1] = (unsigned char)v;
    return o + 2;
}

/* Appends one TXT RR (name by pointer to the question) with the given rdata. */
static size_t
put_txt(unsigned char *p, size_t o, const unsigned char *rdata, size_t rdlen)
{
    o = put16(p, o, 0xc00c); /* the question's name */
    o = put16(p, o, UM_DNS_TYPE_TXT);
    o = put16(p, o, 1);
    o = put16(p, o, 0);
    o = put16(p, o, 60); /* TTL */
    o = put16(p, o, (unsigned)rdlen);
    memcpy(p + o, rdata, rdlen);
    return o + rdlen;
}

static void
respond(struct responder *r, const unsigned char *q, size_t qlen, const struct sockaddr_in *to)
{
    unsigned char out[512];
    size_t qend = 12, o;
    unsigned rcode = 0, an = 0;
    char first[64] = "";

    if (qlen < 17 || qlen > sizeof(out))
        return;
    /* The question: labels, then type and class. */
    while (qend < qlen && q[qend] != 0)
        qend += 1u + q[qend];
    if (qend + 5 > qlen)
        return;
    qend += 5;
    if (q[12] < sizeof(first)) {
        memcpy(first, q + 13, q[12]);
        first[q[12]] = '\0';
    }
    if (strcmp(first, "silent") == 0)
        return;
    memcpy(out, q, qend);
    o = qend;
    if (strcmp(first, "nx") == 0) {
        rcode = 3;
    } else if (strcmp(first, "fail") == 0) {
        rcode = 2;
    } else if (strcmp(first, "multi") == 0) {
        static const unsigned char r1[] = {2, 'a', 'b', 2, 'c', 'd'}, r2[] = {1, 'x'};
        o = put_txt(out, o, r1, sizeof(r1));
        o = put_txt(out, o, r2, sizeof(r2));
        an = 2;
    } else if (strcmp(first, "empty") == 0) {
        static const unsigned char r1[] = {0};
        o = put_txt(out, o, r1, sizeof(r1));
        an = 1;
    }
    out[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR, opcode, RD as asked; AA off */
    out[3] = (unsigned char)(0x80 | rcode);         /* RA */
    put16(out, 4, 1);
    put16(out, 6, an);
    put16(out, 8, 0);
    put16(out, 10, 0); /* no EDNS: drops the OPT record of the query */
    (void)sendto(r->fd, out, o, 0, (const struct sockaddr *)to, sizeof(*to));
}

static void *
responder_main(void *arg)
{
    struct responder *r = arg;

    for (;;) {
        struct pollfd p[2] = {{r->fd, POLLIN, 0}, {r->stop[0], POLLIN, 0}};
        unsigned char q[512];
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t n;

        if (poll(p, 2, -1) < 0 || p[1].revents != 0)
            return NULL;
        n = recvfrom(r->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
        if (n > 0)
            respond(r, q, (size_t)n, &from);
    }
}

static int
setup_responder(void **state)
{
    static struct responder r;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r.fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (r.fd < 0 || bind(r.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0
        || getsockname(r.fd, (struct sockaddr *)&sa, &len) != 0 || pipe(r.stop) != 0)
        return -1;
    r.port = ntohs(sa.sin_port);
    if (pthread_create(&r.thread, NULL, responder_main, &r) != 0)
        return -1;
    *state = &r;
    return 0;
}

static int
teardown_responder(void **state)
{
    struct responder *r = *state;

    (void)!write(r->stop[1], "x", 1);
    pthread_join(r->thread, NULL);
    close(r->fd);
    close(r->stop[0]);
    close(r->stop[1]);
    return 0;
}

static struct um_dns *
new_dns(struct responder *r, unsigned timeout)
{
    char server[64];
    const char *servers[] = {server};
    struct um_error err = {0};
    struct um_dns *dns = NULL;

    snprintf(server, sizeof(server), "127.0.0.1@%u", r->port);
    if (um_dns_new(servers, 1, timeout, &dns, &err) != UM_OK)
        fail_msg("um_dns_new: %s", err.msg);
    return dns;
}

static void
test_results(void **state)
{
    static const struct {
        const char *name;
        enum um_dns_result want;
        size_t n;
        const char *rec0, *rec1, *reason;
    } cases[] = {
        {"multi.t", UM_DNS_OK, 2, "abcd", "x", ""},
        {"empty.t", UM_DNS_OK, 1, "", NULL, ""},
        {"nx.t", UM_DNS_NXDOMAIN, 0, NULL, NULL, ""},
        {"nodata.t", UM_DNS_NODATA, 0, NULL, NULL, ""},
        {"fail.t", UM_DNS_TEMPFAIL, 0, NULL, NULL, "rcode SERVFAIL"},
    };
    struct um_dns *dns = new_dns(*state, 5);
    struct um_error err = {0};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_dns_txt t;

        if (um_dns_txt(dns, cases[i].name, &t, &err) != UM_OK)
            fail_msg("%s: %s", cases[i].name, err.msg);
        if (t.result != cases[i].want)
            fail_msg("%s: got %s (%s), want %s", cases[i].name, um_dns_result_name(t.result),
                     t.reason, um_dns_result_name(cases[i].want));
        assert_int_equal(t.n, cases[i].n);
        /* The resolver may rotate records (rrset-roundrobin): compare as a set. */
        if (cases[i].rec0 != NULL && strcmp(t.rec[0].p, cases[i].rec0) != 0
            && (t.n < 2 || strcmp(t.rec[1].p, cases[i].rec0) != 0))
            fail_msg("%s: record \"%s\" missing", cases[i].name, cases[i].rec0);
        if (cases[i].rec1 != NULL && strcmp(t.rec[0].p, cases[i].rec1) != 0
            && strcmp(t.rec[1].p, cases[i].rec1) != 0)
            fail_msg("%s: record \"%s\" missing", cases[i].name, cases[i].rec1);
        for (size_t j = 0; j < t.n; j++)
            assert_int_equal(strlen(t.rec[j].p), t.rec[j].len);
        assert_string_equal(t.reason, cases[i].reason);
        um_dns_txt_fini(&t);
    }
    /* The raw view of the same answer: packet and per-RR rdata. */
    {
        struct um_dns_answer *a = NULL;

        assert_int_equal(um_dns_query(dns, "multi.t", UM_DNS_TYPE_TXT, &a, &err), UM_OK);
        assert_int_equal(a->result, UM_DNS_OK);
        assert_int_equal(a->rcode, 0);
        assert_int_equal(a->n, 2);
        {
            size_t k = a->rdata[0].len == 6 ? 0 : 1;
            assert_int_equal(a->rdata[k].len, 6);
            assert_memory_equal(a->rdata[k].p, "\2ab\2cd", 6);
            assert_int_equal(a->rdata[1 - k].len, 2);
        }
        assert_non_null(a->packet);
        assert_true(a->packet_len > 12);
        assert_int_equal(a->ttl, 60);
        um_dns_answer_free(a);
    }
    {
        struct um_dns_txt t;
        assert_int_equal(um_dns_txt(dns, "bad name.t", &t, &err), UM_EINVAL);
        um_dns_txt_fini(&t);
    }
    um_dns_free(dns);
}

static void
test_deadline(void **state)
{
    struct um_dns *dns = new_dns(*state, 1);
    struct um_error err = {0};
    struct um_dns_txt t;
    struct timespec a, b;
    long ms;

    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(um_dns_txt(dns, "silent.t", &t, &err), UM_OK);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ms = (long)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    if (t.result != UM_DNS_TEMPFAIL)
        fail_msg("silent server: got %s, want tempfail", um_dns_result_name(t.result));
    assert_string_equal(t.reason, "timed out after 1 s");
    assert_int_equal(t.rcode, -1);
    if (ms < 900 || ms > 2500)
        fail_msg("silent server: took %ld ms, want about 1000", ms);
    um_dns_txt_fini(&t);
    /* The resolver stays usable after a cancelled lookup, and answers from cache. */
    assert_int_equal(um_dns_txt(dns, "multi.t", &t, &err), UM_OK);
    assert_int_equal(t.result, UM_DNS_OK);
    um_dns_txt_fini(&t);
    um_dns_free(dns);
}

/* Many threads on one resolver: every answer right, one shared context. */
static void *
parallel_worker(void *arg)
{
    struct um_dns *dns = arg;
    struct um_error err = {0};

    for (int i = 0; i < 50; i++) {
        struct um_dns_txt t;
        const char *name = i % 2 ? "multi.t" : "nx.t";

        if (um_dns_txt(dns, name, &t, &err) != UM_OK)
            return (void *)1;
        if (t.result != (i % 2 ? UM_DNS_OK : UM_DNS_NXDOMAIN) || (i % 2 && t.n != 2)) {
            um_dns_txt_fini(&t);
            return (void *)1;
        }
        um_dns_txt_fini(&t);
    }
    return NULL;
}

static void
test_parallel(void **state)
{
    struct um_dns *dns = new_dns(*state, 5);
    pthread_t th[8];

    for (size_t i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, parallel_worker, dns), 0);
    for (size_t i = 0; i < 8; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    um_dns_free(dns);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_syntax), cmocka_unit_test(test_name_syntax),
        cmocka_unit_test(test_new_errors),    cmocka_unit_test(test_results),
        cmocka_unit_test(test_deadline),      cmocka_unit_test(test_parallel),
    };

    return cmocka_run_group_tests(tests, setup_responder, teardown_responder);
}
