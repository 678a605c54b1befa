/*
 * test_dns - lib/dns: server and name syntax (tables), setup errors, the four results, the
 * hard deadline and the answer cache, against an in-process DNS responder on 127.0.0.1
 * (loopback only, a thread of this test; no network and no system resolver are touched).
 * The responder's names are listed above respond(); it counts the queries that reach it.
 *
 * Observing the cache. libunbound caches too, behind ours, so "did not reach the responder"
 * holds for a libunbound cache hit as well and cannot by itself show that our cache
 * answered. What only our cache can do is hand two live answers the same storage: a fresh
 * answer is copied out of a new libunbound result, so while the first answer is held, a
 * second one with the same packet and rdata pointers came from the cache (same_storage).
 * The tests assert that, the responder's counts where they still say something (a hit asks
 * nothing; an entry past its TTL is asked for again, libunbound's copy having expired with
 * the same TTL), and um_dns_cache_stats().
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

#define RESPONDER_NAMES 256

struct responder {
    int fd;
    int stop[2];
    unsigned short port;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the counts */
    struct {
        char name[256];
        unsigned n;
    } seen[RESPONDER_NAMES]; /* queries received per name (lower-cased) */
};

/* How many queries for name (lower-case, no trailing dot) have reached the responder. */
static unsigned
responder_count(struct responder *r, const char *name)
{
    unsigned n = 0;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < RESPONDER_NAMES && r->seen[i].name[0] != '\0'; i++) {
        if (strcmp(r->seen[i].name, name) == 0) {
            n = r->seen[i].n;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void
responder_note(struct responder *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < RESPONDER_NAMES; i++) {
        if (r->seen[i].name[0] == '\0')
            snprintf(r->seen[i].name, sizeof(r->seen[i].name), "%s", name);
        if (strcmp(r->seen[i].name, name) == 0) {
            r->seen[i].n++;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

static size_t
put16(unsigned char *p, size_t o, unsigned v)
{
    p[o] = (unsigned char)(v >> 8);
    p[o + 1] = (unsigned char)v;
    return o + 2;
}

static size_t
put32(unsigned char *p, size_t o, unsigned long v)
{
    o = put16(p, o, (unsigned)(v >> 16) & 0xffff);
    return put16(p, o, (unsigned)v & 0xffff);
}

/* Appends one RR, its owner a compression pointer to offset owner, with the given rdata. */
static size_t
put_rr(unsigned char *p, size_t o, unsigned owner, unsigned type, unsigned long ttl,
       const unsigned char *rdata, size_t rdlen)
{
    o = put16(p, o, 0xc000 | owner);
    o = put16(p, o, type);
    o = put16(p, o, 1);
    o = put32(p, o, ttl);
    o = put16(p, o, (unsigned)rdlen);
    memcpy(p + o, rdata, rdlen);
    return o + rdlen;
}

/* Appends the SOA of the query's last label (the zone "t"), TTL and MINIMUM both ttl: what a
 * negative answer needs to be cacheable (RFC 2308 5). */
static size_t
put_soa(unsigned char *p, size_t o, unsigned zone, unsigned long ttl)
{
    unsigned char rd[22] = {0}; /* MNAME ".", RNAME ".", serial, refresh, retry, expire */

    put32(rd, 2, 1);
    put32(rd, 18, ttl); /* MINIMUM */
    return put_rr(p, o, zone, 6, ttl, rd, sizeof(rd));
}

/*
 * Answers by the first label of the query name up to a '-' ("multi-b" acts as "multi"):
 *   multi     TXT: two records, "ab" "cd" (two strings) and "x"; A: 192.0.2.1; TTL 60;
 *             any other type NODATA with an SOA
 *   empty     TXT: one record of one empty string, TTL 60
 *   ttl1      TXT "t", TTL 1          ttl0   TXT "z", TTL 0         long   TXT "l", TTL 86400
 *   nx        NXDOMAIN, SOA TTL 60    nxlong NXDOMAIN, SOA TTL 86400
 *   nxbare    NXDOMAIN without an SOA (libunbound then reports TTL 0)
 *   nodata    NOERROR, no answer, SOA TTL 60
 *   fail      SERVFAIL                silent no answer at all (the deadline must fire)
 * Every query that arrives is counted by name (responder_count).
 */
static void
respond(struct responder *r, const unsigned char *q, size_t qlen, const struct sockaddr_in *to)
{
    static const unsigned char txt2[] = {2, 'a', 'b', 2, 'c', 'd'}, txt1[] = {1, 'x'};
    static const unsigned char a1[] = {192, 0, 2, 1}, empty[] = {0};
    static const unsigned char t1[] = {1, 't'}, t0[] = {1, 'z'}, tl[] = {1, 'l'};
    unsigned char out[512];
    size_t qend = 12, o, zone = 12;
    unsigned rcode = 0, an = 0, ns = 0, qtype;
    char first[64] = "", name[256] = "";
    size_t nl = 0;

    if (qlen < 17 || qlen > sizeof(out))
        return;
    /* The question: labels, then type and class. */
    while (qend < qlen && q[qend] != 0) {
        size_t ll = q[qend];

        if (ll > 63 || qend + 1 + ll >= qlen || nl + ll + 2 > sizeof(name))
            return;
        zone = qend;
        if (nl > 0)
            name[nl++] = '.';
        um_ascii_lower(name + nl, (const char *)q + qend + 1, ll);
        nl += ll;
        name[nl] = '\0';
        qend += 1u + ll;
    }
    if (qend + 5 > qlen)
        return;
    qtype = (unsigned)q[qend + 1] << 8 | q[qend + 2];
    qend += 5;
    responder_note(r, name);
    {
        size_t fl = strcspn(name, ".-");
        if (fl < sizeof(first)) {
            memcpy(first, name, fl);
            first[fl] = '\0';
        }
    }
    if (strcmp(first, "silent") == 0)
        return;
    memcpy(out, q, qend);
    o = qend;
    if (strcmp(first, "nx") == 0 || strcmp(first, "nxlong") == 0) {
        rcode = 3;
        o = put_soa(out, o, (unsigned)zone, first[2] == 'l' ? 86400 : 60);
        ns = 1;
    } else if (strcmp(first, "nxbare") == 0) {
        rcode = 3;
    } else if (strcmp(first, "fail") == 0) {
        rcode = 2;
    } else if (strcmp(first, "multi") == 0 && qtype == UM_DNS_TYPE_TXT) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 60, txt2, sizeof(txt2));
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 60, txt1, sizeof(txt1));
        an = 2;
    } else if (strcmp(first, "multi") == 0 && qtype == UM_DNS_TYPE_A) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_A, 60, a1, sizeof(a1));
        an = 1;
    } else if (strcmp(first, "empty") == 0 && qtype == UM_DNS_TYPE_TXT) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 60, empty, sizeof(empty));
        an = 1;
    } else if (strcmp(first, "ttl1") == 0 && qtype == UM_DNS_TYPE_TXT) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 1, t1, sizeof(t1));
        an = 1;
    } else if (strcmp(first, "ttl0") == 0 && qtype == UM_DNS_TYPE_TXT) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 0, t0, sizeof(t0));
        an = 1;
    } else if (strcmp(first, "long") == 0 && qtype == UM_DNS_TYPE_TXT) {
        o = put_rr(out, o, 12, UM_DNS_TYPE_TXT, 86400, tl, sizeof(tl));
        an = 1;
    } else {
        o = put_soa(out, o, (unsigned)zone, 60); /* nodata, and types a name lacks */
        ns = 1;
    }
    out[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR, opcode, RD as asked; AA off */
    out[3] = (unsigned char)(0x80 | rcode);         /* RA */
    put16(out, 4, 1);
    put16(out, 6, an);
    put16(out, 8, ns);
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
    if (pthread_mutex_init(&r.mu, NULL) != 0)
        return -1;
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
    pthread_mutex_destroy(&r->mu);
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
        /* A cache hit (um_dns_txt asked first) reports the seconds left, a fresh answer the
         * record's TTL. */
        if (a->cached ? a->ttl == 0 || a->ttl > 60 : a->ttl != 60)
            fail_msg("multi.t: ttl %u (cached %d)", a->ttl, a->cached);
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

/* --- the answer cache ------------------------------------------------------------------- */

static struct um_dns_answer *
query(struct um_dns *dns, const char *name, int qtype)
{
    struct um_dns_answer *a = NULL;
    struct um_error err = {0};

    if (um_dns_query(dns, name, qtype, &a, &err) != UM_OK || a == NULL)
        fail_msg("%s: %s", name, err.msg);
    return a;
}

static struct um_dns_cache_stats
stats(struct um_dns *dns)
{
    struct um_dns_cache_stats st;

    um_dns_cache_stats(dns, &st);
    return st;
}

/* Whether two live answers share storage: only the cache can hand out the same bytes twice. */
static bool
same_storage(const struct um_dns_answer *a, const struct um_dns_answer *b)
{
    return a->packet == b->packet && a->rdata == b->rdata;
}

/* Same result, same records, same reply bytes. */
static void
assert_same_answer(const char *what, const struct um_dns_answer *a, const struct um_dns_answer *b)
{
    if (a->result != b->result || a->rcode != b->rcode || a->n != b->n
        || a->packet_len != b->packet_len)
        fail_msg("%s: answers differ", what);
    for (size_t i = 0; i < a->n; i++) {
        if (a->rdata[i].len != b->rdata[i].len
            || memcmp(a->rdata[i].p, b->rdata[i].p, a->rdata[i].len) != 0)
            fail_msg("%s: record %zu differs", what, i);
    }
    if (a->packet_len > 0 && memcmp(a->packet, b->packet, a->packet_len) != 0)
        fail_msg("%s: packets differ", what);
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* (1) A repeated lookup, in any letter case and with or without the trailing dot, is served
 * from the cache: same records, no query to the responder. */
static void
test_cache_hit(void **state)
{
    static const char *const again[] = {"multi.t", "MULTI.T", "Multi.T.", "multi.t."};
    struct responder *r = *state;
    struct um_dns *dns = new_dns(r, 5);
    struct um_dns_answer *first;
    struct um_error err = {0};
    struct um_dns_txt t;
    unsigned before;

    first = query(dns, "multi.t", UM_DNS_TYPE_TXT);
    assert_int_equal(first->result, UM_DNS_OK);
    assert_false(first->cached);
    assert_int_equal(first->ttl, 60);
    before = responder_count(r, "multi.t");
    assert_true(before >= 1);
    for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++) {
        struct um_dns_answer *a = query(dns, again[i], UM_DNS_TYPE_TXT);

        if (!a->cached || !same_storage(a, first))
            fail_msg("%s: not served from the cache", again[i]);
        assert_same_answer(again[i], a, first);
        assert_int_equal(a->qtype, UM_DNS_TYPE_TXT);
        assert_string_equal(a->reason, "");
        if (a->ttl == 0 || a->ttl > first->ttl)
            fail_msg("%s: ttl %u, want 1..%u", again[i], a->ttl, first->ttl);
        um_dns_answer_free(a);
    }
    /* um_dns_txt() rides on the same entry. */
    assert_int_equal(um_dns_txt(dns, "mUlTi.t", &t, &err), UM_OK);
    assert_int_equal(t.result, UM_DNS_OK);
    assert_int_equal(t.n, 2);
    um_dns_txt_fini(&t);
    assert_int_equal(responder_count(r, "multi.t"), before);
    assert_int_equal(stats(dns).hits, 5);
    assert_int_equal(stats(dns).misses, 1);
    assert_int_equal(stats(dns).entries, 1);
    /* Names are still checked first: a bad one never reaches the cache. */
    {
        struct um_dns_answer *a = (struct um_dns_answer *)1;
        assert_int_equal(um_dns_query(dns, "multi t", UM_DNS_TYPE_TXT, &a, &err), UM_EINVAL);
        assert_null(a);
        assert_int_equal(um_dns_query(dns, "multi.t", 0, &a, &err), UM_EINVAL);
        assert_int_equal(stats(dns).misses, 1);
    }
    um_dns_answer_free(first);
    um_dns_free(dns);
}

/* An answer handed out stays valid after the cache dropped it, and after um_dns_free. */
static void
test_cache_answer_outlives(void **state)
{
    struct um_dns *dns = new_dns(*state, 5);
    struct um_dns_answer *a = query(dns, "multi.t", UM_DNS_TYPE_TXT), *b;

    b = query(dns, "multi.t", UM_DNS_TYPE_TXT);
    assert_true(same_storage(a, b));
    um_dns_set_cache_max(dns, 0, UM_DNS_CACHE_BYTES); /* off: the cache lets go */
    assert_int_equal(stats(dns).entries, 0);
    um_dns_answer_free(a);
    um_dns_free(dns);
    /* b still holds the entry (ASan would see a use after free otherwise). */
    assert_int_equal(b->n, 2);
    assert_true(b->rdata[0].len == 6 || b->rdata[1].len == 6);
    assert_int_equal(b->packet[2] & 0x80, 0x80);
    um_dns_answer_free(b);
}

/* (2) An answer is cached for its TTL only: TTL 1 is asked again from the responder after
 * it ran out (libunbound's own copy expires with the same TTL, so the query is observable);
 * TTL 0 is never cached. */
static void
test_cache_expiry(void **state)
{
    struct responder *r = *state;
    struct um_dns *dns = new_dns(r, 5);
    struct um_dns_answer *a, *b;
    unsigned before;

    a = query(dns, "ttl1.t", UM_DNS_TYPE_TXT);
    assert_int_equal(a->result, UM_DNS_OK);
    assert_true(a->ttl <= 1);
    before = responder_count(r, "ttl1.t");
    sleep_ms(2100);
    b = query(dns, "ttl1.t", UM_DNS_TYPE_TXT);
    assert_int_equal(b->result, UM_DNS_OK);
    if (b->cached || same_storage(a, b))
        fail_msg("ttl1.t: served from the cache after its TTL ran out");
    assert_true(responder_count(r, "ttl1.t") > before);
    assert_same_answer("ttl1.t", a, b);
    um_dns_answer_free(a);
    um_dns_answer_free(b);

    a = query(dns, "ttl0.t", UM_DNS_TYPE_TXT);
    b = query(dns, "ttl0.t", UM_DNS_TYPE_TXT);
    assert_int_equal(a->result, UM_DNS_OK);
    assert_int_equal(a->ttl, 0);
    if (b->cached || same_storage(a, b))
        fail_msg("ttl0.t: a TTL of 0 was cached");
    um_dns_answer_free(a);
    um_dns_answer_free(b);
    assert_int_equal(stats(dns).hits, 0);
    um_dns_free(dns);
}

/* TTLs above the caps are cut to them (a hit reports the seconds left). */
static void
test_cache_ttl_caps(void **state)
{
    static const struct {
        const char *name;
        enum um_dns_result want;
        unsigned cap;
    } cases[] = {
        {"long.t", UM_DNS_OK, UM_DNS_CACHE_MAX_TTL},
        {"nxlong.t", UM_DNS_NXDOMAIN, UM_DNS_CACHE_MAX_NEG_TTL},
    };
    struct um_dns *dns = new_dns(*state, 5);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_dns_answer *a = query(dns, cases[i].name, UM_DNS_TYPE_TXT);
        struct um_dns_answer *b = query(dns, cases[i].name, UM_DNS_TYPE_TXT);

        if (a->result != cases[i].want || b->result != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].name, um_dns_result_name(b->result),
                     um_dns_result_name(cases[i].want));
        if (a->ttl <= cases[i].cap)
            fail_msg("%s: fresh ttl %u, want the record's (above %u)", cases[i].name, a->ttl,
                     cases[i].cap);
        if (!b->cached || !same_storage(a, b))
            fail_msg("%s: not served from the cache", cases[i].name);
        if (b->ttl == 0 || b->ttl > cases[i].cap)
            fail_msg("%s: cached ttl %u, want 1..%u", cases[i].name, b->ttl, cases[i].cap);
        um_dns_answer_free(a);
        um_dns_answer_free(b);
    }
    um_dns_free(dns);
}

/* (3) NXDOMAIN and NODATA (with an SOA, so with a negative TTL) are cached; a negative answer
 * without an SOA has TTL 0 and is not. */
static void
test_cache_negative(void **state)
{
    static const struct {
        const char *name;
        enum um_dns_result want;
        bool cached;
    } cases[] = {
        {"nx.t", UM_DNS_NXDOMAIN, true},
        {"nodata.t", UM_DNS_NODATA, true},
        {"Nx.T.", UM_DNS_NXDOMAIN, true}, /* the same entry as nx.t */
        {"nxbare.t", UM_DNS_NXDOMAIN, false},
    };
    struct responder *r = *state;
    struct um_dns *dns = new_dns(r, 5);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_dns_answer *a = query(dns, cases[i].name, UM_DNS_TYPE_TXT), *b;
        char lower[64];
        unsigned before;

        snprintf(lower, sizeof(lower), "%s", cases[i].name);
        um_ascii_lower(lower, lower, strlen(lower));
        lower[strcspn(lower, ".") + 2] = '\0'; /* "x.t." -> "x.t" */
        before = responder_count(r, lower);
        b = query(dns, cases[i].name, UM_DNS_TYPE_TXT);
        if (a->result != cases[i].want || b->result != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].name, um_dns_result_name(b->result),
                     um_dns_result_name(cases[i].want));
        assert_int_equal(b->n, 0);
        assert_null(b->rdata);
        if (b->cached != cases[i].cached || same_storage(a, b) != cases[i].cached)
            fail_msg("%s: cached %d, want %d", cases[i].name, b->cached, cases[i].cached);
        if (cases[i].cached) {
            assert_int_equal(responder_count(r, lower), before);
            assert_same_answer(cases[i].name, a, b);
            assert_true(b->ttl > 0 && b->ttl <= 60);
        } else {
            assert_int_equal(a->ttl, 0);
        }
        um_dns_answer_free(a);
        um_dns_answer_free(b);
    }
    um_dns_free(dns);
}

/* (4) Failures are never cached: each lookup of a SERVFAIL or silent name goes back to
 * libunbound. Whether the server itself is asked again is libunbound's business and not
 * observable here: libunbound 1.17 holds a SERVFAIL for about 5 s (after 5 tries) and keeps
 * retrying a silent server in the background. So this asserts fresh storage and the cache's
 * counters, not the responder's. */
static void
test_cache_failures(void **state)
{
    struct um_dns *dns = new_dns(*state, 1);
    struct um_dns_answer *a, *b;

    a = query(dns, "fail.t", UM_DNS_TYPE_TXT);
    b = query(dns, "fail.t", UM_DNS_TYPE_TXT);
    assert_int_equal(a->result, UM_DNS_TEMPFAIL);
    assert_int_equal(b->result, UM_DNS_TEMPFAIL);
    assert_string_equal(b->reason, "rcode SERVFAIL");
    assert_int_equal(b->rcode, 2);
    assert_false(b->cached);
    assert_int_equal(stats(dns).hits, 0);
    assert_int_equal(stats(dns).entries, 0);
    um_dns_answer_free(a);
    um_dns_answer_free(b);

    /* A timeout: libunbound goes on retrying in the background, so the responder's count
     * says nothing here; the cache's counters do. */
    a = query(dns, "silent.t", UM_DNS_TYPE_TXT);
    b = query(dns, "silent.t", UM_DNS_TYPE_TXT);
    assert_int_equal(a->result, UM_DNS_TEMPFAIL);
    assert_int_equal(b->result, UM_DNS_TEMPFAIL);
    assert_string_equal(b->reason, "timed out after 1 s");
    assert_false(b->cached);
    um_dns_answer_free(a);
    um_dns_answer_free(b);
    assert_int_equal(stats(dns).hits, 0);
    assert_int_equal(stats(dns).misses, 4);
    assert_int_equal(stats(dns).entries, 0);
    um_dns_free(dns);
}

/* (5) Each qtype of a name is its own entry. */
static void
test_cache_qtypes(void **state)
{
    static const unsigned char want_a[] = {192, 0, 2, 1};
    struct um_dns *dns = new_dns(*state, 5);
    struct um_dns_answer *txt = query(dns, "multi.t", UM_DNS_TYPE_TXT);
    struct um_dns_answer *a = query(dns, "multi.t", UM_DNS_TYPE_A);
    struct um_dns_answer *mx = query(dns, "multi.t", UM_DNS_TYPE_MX);
    struct um_dns_answer *a2, *txt2;

    assert_int_equal(txt->result, UM_DNS_OK);
    assert_int_equal(txt->n, 2);
    assert_int_equal(a->result, UM_DNS_OK);
    assert_false(a->cached);
    assert_int_equal(a->n, 1);
    assert_int_equal(a->rdata[0].len, 4);
    assert_memory_equal(a->rdata[0].p, want_a, 4);
    assert_int_equal(mx->result, UM_DNS_NODATA);
    assert_false(mx->cached);
    assert_int_equal(stats(dns).entries, 3);
    a2 = query(dns, "MULTI.t", UM_DNS_TYPE_A);
    txt2 = query(dns, "multi.T", UM_DNS_TYPE_TXT);
    assert_true(a2->cached && same_storage(a2, a));
    assert_true(txt2->cached && same_storage(txt2, txt));
    assert_int_equal(a2->qtype, UM_DNS_TYPE_A);
    assert_int_equal(txt2->qtype, UM_DNS_TYPE_TXT);
    assert_same_answer("multi.t/A", a2, a);
    assert_same_answer("multi.t/TXT", txt2, txt);
    um_dns_answer_free(txt);
    um_dns_answer_free(a);
    um_dns_answer_free(mx);
    um_dns_answer_free(a2);
    um_dns_answer_free(txt2);
    um_dns_free(dns);
}

/* (6) The bound: at most max entries, the least recently used goes first. libunbound still
 * holds an evicted name, so its re-lookup does not reach the responder either; that it
 * missed our cache shows in fresh storage and in the counters. */
static void
test_cache_bound(void **state)
{
    struct um_dns *dns = new_dns(*state, 5);
    struct um_dns_answer *a, *b, *c, *d, *x;

    um_dns_set_cache_max(dns, 3, UM_DNS_CACHE_BYTES);
    assert_int_equal(stats(dns).max_entries, 3);
    a = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    b = query(dns, "multi-b.t", UM_DNS_TYPE_TXT);
    c = query(dns, "multi-c.t", UM_DNS_TYPE_TXT);
    assert_int_equal(stats(dns).entries, 3);
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT); /* a is now the most recent; b the least */
    assert_true(x->cached && same_storage(x, a));
    um_dns_answer_free(x);
    d = query(dns, "multi-d.t", UM_DNS_TYPE_TXT); /* evicts b */
    assert_int_equal(stats(dns).entries, 3);
    assert_int_equal(stats(dns).evictions, 1);
    /* a, c and d are still there (each hit refreshes it: LRU order becomes c, d, a -> ...) */
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    assert_true(x->cached && same_storage(x, a));
    um_dns_answer_free(x);
    x = query(dns, "multi-c.t", UM_DNS_TYPE_TXT);
    assert_true(x->cached && same_storage(x, c));
    um_dns_answer_free(x);
    x = query(dns, "multi-d.t", UM_DNS_TYPE_TXT);
    assert_true(x->cached && same_storage(x, d));
    um_dns_answer_free(x);
    assert_int_equal(stats(dns).evictions, 1);
    /* b was evicted: asked of libunbound again (a new copy while the old one is held), and
     * now it pushes out a, the least recently used. */
    x = query(dns, "multi-b.t", UM_DNS_TYPE_TXT);
    if (x->cached || same_storage(x, b))
        fail_msg("multi-b.t: still cached after eviction");
    assert_same_answer("multi-b.t", x, b);
    assert_int_equal(stats(dns).entries, 3);
    assert_int_equal(stats(dns).evictions, 2);
    um_dns_answer_free(b);
    b = x;
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    assert_false(x->cached);
    um_dns_answer_free(x); /* (a is back in; c went out) */
    /* Shrinking evicts at once and keeps the most recent. */
    um_dns_set_cache_max(dns, 1, UM_DNS_CACHE_BYTES);
    assert_int_equal(stats(dns).entries, 1);
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    assert_true(x->cached);
    um_dns_answer_free(x);
    x = query(dns, "multi-d.t", UM_DNS_TYPE_TXT);
    assert_false(x->cached);
    um_dns_answer_free(x);
    assert_int_equal(stats(dns).entries, 1);
    /* The byte bound: an answer larger than it is not cached at all. */
    um_dns_set_cache_max(dns, 100, 1);
    assert_int_equal(stats(dns).entries, 0);
    assert_int_equal(stats(dns).bytes, 0);
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    um_dns_answer_free(x);
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    assert_false(x->cached);
    um_dns_answer_free(x);
    assert_int_equal(stats(dns).entries, 0);
    /* A byte bound that fits one entry holds one, whatever the entry bound. */
    um_dns_set_cache_max(dns, 100, UM_DNS_CACHE_BYTES);
    x = query(dns, "multi-a.t", UM_DNS_TYPE_TXT);
    um_dns_answer_free(x);
    um_dns_set_cache_max(dns, 100, stats(dns).bytes);
    x = query(dns, "multi-c.t", UM_DNS_TYPE_TXT);
    um_dns_answer_free(x);
    assert_int_equal(stats(dns).entries, 1);
    x = query(dns, "multi-c.t", UM_DNS_TYPE_TXT);
    assert_true(x->cached);
    um_dns_answer_free(x);
    um_dns_answer_free(a);
    um_dns_answer_free(b);
    um_dns_answer_free(c);
    um_dns_answer_free(d);
    um_dns_free(dns);
}

/* (7) Many threads on one resolver, the same and different names, a small cache so that
 * entries are evicted while other threads still hold them: every answer right. */
#define PAR_THREADS 8
#define PAR_ROUNDS  200

static const char *
parallel_check(struct um_dns *dns, unsigned k)
{
    static const unsigned char want_a[] = {192, 0, 2, 1};
    char name[32];
    struct um_dns_answer *a = NULL;
    struct um_error err = {0};
    const char *bad = NULL;

    switch (k % 5) {
    case 0:
    case 1:
        if (k % 5 == 0)
            snprintf(name, sizeof(name), "MULTI.t.");
        else
            snprintf(name, sizeof(name), "multi-%u.t", k % 12);
        if (um_dns_query(dns, name, UM_DNS_TYPE_TXT, &a, &err) != UM_OK)
            return "query failed";
        if (a->result != UM_DNS_OK || a->n != 2)
            bad = "TXT: wrong result";
        else if (!(a->rdata[0].len == 6 && a->rdata[1].len == 2)
                 && !(a->rdata[0].len == 2 && a->rdata[1].len == 6))
            bad = "TXT: wrong records";
        break;
    case 2:
        if (um_dns_query(dns, "multi.t", UM_DNS_TYPE_A, &a, &err) != UM_OK)
            return "query failed";
        if (a->result != UM_DNS_OK || a->n != 1 || a->rdata[0].len != 4
            || memcmp(a->rdata[0].p, want_a, 4) != 0)
            bad = "A: wrong answer";
        break;
    case 3:
        if (um_dns_query(dns, "nx.t", UM_DNS_TYPE_TXT, &a, &err) != UM_OK)
            return "query failed";
        if (a->result != UM_DNS_NXDOMAIN || a->n != 0)
            bad = "nx: wrong answer";
        break;
    default: {
        struct um_dns_txt t;
        if (um_dns_txt(dns, "nodata.t", &t, &err) != UM_OK)
            return "txt failed";
        if (t.result != UM_DNS_NODATA)
            bad = "nodata: wrong answer";
        um_dns_txt_fini(&t);
        return bad;
    }
    }
    if (bad == NULL && (a->packet == NULL || a->packet_len < 12))
        bad = "no packet";
    um_dns_answer_free(a);
    return bad;
}

struct par_job {
    struct um_dns *dns;
    unsigned id;
    const char *bad; /* what went wrong, or NULL */
};

static void *
parallel_worker(void *arg)
{
    static const unsigned char want_a[] = {192, 0, 2, 1};
    struct par_job *job = arg;
    struct um_dns_answer *held = NULL;
    struct um_error err = {0};

    for (unsigned i = 0; i < PAR_ROUNDS && job->bad == NULL; i++) {
        job->bad = parallel_check(job->dns, i * 7 + job->id);
        /* Keep one answer across rounds while others evict its entry; read it each time. */
        if (held != NULL && (held->n != 1 || memcmp(held->rdata[0].p, want_a, 4) != 0))
            job->bad = "held answer changed";
        if (i % 50 == 0) {
            um_dns_answer_free(held);
            held = NULL;
            if (um_dns_query(job->dns, "multi.t", UM_DNS_TYPE_A, &held, &err) != UM_OK)
                job->bad = "query failed";
        }
    }
    um_dns_answer_free(held);
    return NULL;
}

static void
test_parallel(void **state)
{
    struct um_dns *dns = new_dns(*state, 5);
    pthread_t th[PAR_THREADS];
    struct par_job jobs[PAR_THREADS];
    struct um_dns_cache_stats st;

    um_dns_set_cache_max(dns, 6, UM_DNS_CACHE_BYTES);
    for (unsigned i = 0; i < PAR_THREADS; i++) {
        jobs[i] = (struct par_job){dns, i, NULL};
        assert_int_equal(pthread_create(&th[i], NULL, parallel_worker, &jobs[i]), 0);
    }
    for (size_t i = 0; i < PAR_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].bad != NULL)
            fail_msg("thread %zu: %s", i, jobs[i].bad);
    }
    st = stats(dns);
    assert_true(st.entries <= 6);
    assert_true(st.hits > 0);
    assert_true(st.evictions > 0);
    assert_int_equal(st.hits + st.misses, PAR_THREADS * (PAR_ROUNDS + PAR_ROUNDS / 50));
    um_dns_free(dns);
}

/* Threads of this process, from /proc/self/status. */
static int
count_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;

    if (f == NULL)
        fail_msg("/proc/self/status: cannot open");
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    }
    fclose(f);
    return n;
}

/*
 * Issue 12: nothing of the resolver may be made by the first lookup. libunbound built its
 * worker (thread, event base, pipes) then, and libevent exit()s the process when no
 * descriptor is left for it, which under a descriptor shortage killed the daemon. After
 * um_dns_new(), lookups (an answer, a timeout) start no thread.
 */
static void
test_started_at_new(void **state)
{
    struct um_dns *dns = new_dns(*state, 1);
    struct um_dns_txt t;
    struct um_error err = {0};
    int before = count_threads();

    assert_int_equal(um_dns_txt(dns, "multi-started.t", &t, &err), UM_OK);
    assert_int_equal(t.result, UM_DNS_OK);
    um_dns_txt_fini(&t);
    assert_int_equal(um_dns_txt(dns, "silent-started.t", &t, &err), UM_OK);
    assert_int_equal(t.result, UM_DNS_TEMPFAIL);
    um_dns_txt_fini(&t);
    if (count_threads() != before)
        fail_msg("threads: %d after um_dns_new, %d after the first lookups", before,
                 count_threads());
    um_dns_free(dns);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_syntax),
        cmocka_unit_test(test_name_syntax),
        cmocka_unit_test(test_new_errors),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cache_hit),
        cmocka_unit_test(test_cache_answer_outlives),
        cmocka_unit_test(test_cache_expiry),
        cmocka_unit_test(test_cache_ttl_caps),
        cmocka_unit_test(test_cache_negative),
        cmocka_unit_test(test_cache_failures),
        cmocka_unit_test(test_cache_qtypes),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_started_at_new),
    };

    return cmocka_run_group_tests(tests, setup_responder, teardown_responder);
}
