/*
 * dns - the one caching stub resolver every check shares (libunbound behind it)
 *
 * DESCRIPTION  struct um_dns is one resolver context with one answer cache, shared by SPF,
 *              DKIM key, DMARC record and check-keys lookups. Upstream servers are given as
 *              "IP" or "IP@PORT" (IPv4 or IPv6, port 1-65535) and used as forwarders; with
 *              none, the nameservers of /etc/resolv.conf are. Two kinds of lookup:
 *
 *                um_dns_txt()    TXT records of a name; each record's character-strings
 *                                are joined (RFC 6376 3.6.2.2, RFC 7208 3.3), one string
 *                                per record, in the resolver's order (it may rotate
 *                                them: rrset-roundrobin).
 *                um_dns_query()  any type: rcode, the answer packet in wire format (what
 *                                libopendkim and libspf2 adapters want), and each answer
 *                                RR's rdata (raw; uncompressed names for MX/PTR/NS).
 *
 *              Every lookup ends in one of four results (enum um_dns_result):
 *                OK        rcode NOERROR with at least one record of the type asked
 *                NXDOMAIN  rcode NXDOMAIN: the name does not exist
 *                NODATA    rcode NOERROR, no record of that type (the name exists)
 *                TEMPFAIL  anything else: SERVFAIL, REFUSED, a timeout, a bogus (DNSSEC)
 *                          answer, a malformed TXT rdata, the resolver failing. Never a
 *                          "no record": callers turn it into temperror / tempfail.
 *              A TEMPFAIL carries a reason ("timed out after 5 s", "rcode SERVFAIL").
 *
 * CACHE        In front of libunbound sits an in-process answer cache, so that a repeated
 *              lookup is served in the calling thread with no thread hop and no syscall
 *              (a libunbound cache hit still costs three hops; see dns.c). What is cached:
 *              um_dns_query() results that are final (OK, NXDOMAIN, NODATA) with a TTL
 *              above 0; never TEMPFAIL (timeouts, SERVFAIL, bogus, resolver errors). The
 *              key is qtype plus the name lower-cased without its trailing dot, so
 *              "Example.ORG." and "example.org" share one entry. How long: the TTL
 *              libunbound reports for the answer RRset, but no longer than any TTL in the
 *              reply's answer section (a CNAME chain lives as long as its shortest link);
 *              for NXDOMAIN/NODATA the smaller of the authority SOA's TTL and its MINIMUM
 *              (RFC 2308 5), so a negative answer without an SOA is not cached. Counted on
 *              CLOCK_MONOTONIC from when the answer arrived and capped at
 *              UM_DNS_CACHE_MAX_TTL (OK) or UM_DNS_CACHE_MAX_NEG_TTL (negative). A hit
 *              reports ttl as the seconds it has left; its packet is the reply as first
 *              received (its TTL fields are not aged). Bound: at most
 *              UM_DNS_CACHE_ENTRIES entries and UM_DNS_CACHE_BYTES bytes of storage (both
 *              settable with um_dns_set_cache_max()), least recently used evicted first;
 *              an expired entry is dropped when a lookup meets it. libunbound keeps its
 *              own cache behind this one, with its own TTL handling; it answers our misses
 *              (and its failures, never cached here, are tried again each time).
 *              um_dns_txt() is built on um_dns_query() and shares the cache (a TXT record
 *              it finds malformed is re-checked, and TEMPFAILs, on every hit).
 * TIMEOUTS     Each lookup returns within timeout_s seconds (plus scheduling): the query runs
 *              in libunbound's background thread and the caller waits on a condition with a
 *              deadline; at the deadline the query is cancelled and the result is TEMPFAIL.
 *              libunbound keeps resolving a cancelled query in the background (and caches
 *              what it learns), so a slow server costs the cache, never the caller.
 * THREADS      All functions on one struct um_dns are safe from any thread at once; the
 *              cache is shared. A cache hit holds the cache lock only to find the entry and
 *              take a reference (entries are immutable). um_dns_new() starts two threads
 *              (libunbound's worker and our dispatcher) and everything they need (event
 *              base, pipes) before it returns, so nothing is created lazily by the first
 *              lookup (libevent exit()s the process when it cannot get a descriptor); create
 *              it after any fork() and from a thread whose signal mask the daemon wants
 *              inherited.
 * OWNERSHIP    server strings and names are borrowed for the call. Results are owned by the
 *              caller and released with um_dns_txt_fini() / um_dns_answer_free(); an answer
 *              may share read-only storage with the cache and with other callers' answers
 *              (a reference, dropped by um_dns_answer_free), so never write through it. An
 *              answer stays valid after um_dns_free(). um_dns_free() must not run while
 *              lookups are in flight.
 * ERRORS       um_dns_new(): UM_EINVAL a bad server string ("dns: server \"x\": not an IP
 *              address"), UM_EIO resolv.conf unreadable, UM_ENOMEM, UM_ETEMP the resolver
 *              could not be set up. Lookups: UM_OK whenever a result (including TEMPFAIL) was
 *              reached; UM_EINVAL a name that is not a plain dotted DNS name (see below);
 *              UM_ENOMEM. Names are checked before the cache is consulted.
 * LIMITS       Names: 1..253 bytes (one trailing dot allowed), labels 1..63 bytes, bytes
 *              0x21..0x7e except '\\' (no escapes: the name is sent as written). At most
 *              UM_DNS_MAX_SERVERS servers. timeout_s 1..UM_DNS_MAX_TIMEOUT. TXT records are
 *              at most 65535 bytes each by construction (one RR).
 */
#ifndef UM_DNS_H
#define UM_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define UM_DNS_MAX_SERVERS 16
#define UM_DNS_MAX_TIMEOUT 60
#define UM_DNS_NAME_MAX    253

/* The answer cache (CACHE above). TTL caps in seconds: a longer TTL is cut to the cap, so
 * a changed record is seen within the cap even if its owner set a day; negative answers
 * get a shorter cap because a name that is just being created should appear soon. */
#define UM_DNS_CACHE_MAX_TTL     3600
#define UM_DNS_CACHE_MAX_NEG_TTL 300
#define UM_DNS_CACHE_ENTRIES     10000       /* default bound on entries */
#define UM_DNS_CACHE_BYTES       (16u << 20) /* default bound on their storage, bytes */

/* RR types callers use (host order). */
#define UM_DNS_TYPE_A     1
#define UM_DNS_TYPE_NS    2
#define UM_DNS_TYPE_CNAME 5
#define UM_DNS_TYPE_PTR   12
#define UM_DNS_TYPE_MX    15
#define UM_DNS_TYPE_TXT   16
#define UM_DNS_TYPE_AAAA  28

struct um_dns;

enum um_dns_result {
    UM_DNS_OK = 0,
    UM_DNS_NXDOMAIN,
    UM_DNS_NODATA,
    UM_DNS_TEMPFAIL,
};

/* One TXT lookup. rec[i].p is NUL-terminated (rec[i].len excludes it) and may itself hold
 * NUL bytes from the wire: use len. rec is NULL when n is 0. */
struct um_dns_txt {
    enum um_dns_result result;
    int rcode;          /* DNS rcode as received; -1 when no answer (timeout, failure) */
    size_t n;           /* records (OK only) */
    struct um_str *rec; /* joined character-strings, one per record */
    char reason[128];   /* TEMPFAIL: why; else "" */
    char *store_;       /* private: backing storage */
};

/* One raw lookup (um_dns_query). packet and rdata point into read-only storage the answer
 * holds a reference to (possibly shared with the cache): valid until um_dns_answer_free. */
struct um_dns_answer {
    enum um_dns_result result;
    int rcode;                   /* -1 when no answer arrived */
    int qtype;                   /* as asked */
    const unsigned char *packet; /* full reply in wire format, or NULL (packet_len 0) */
    size_t packet_len;
    struct um_str *rdata; /* answer RRs of qtype, raw rdata (not NUL-terminated); read-only */
    size_t n;
    unsigned ttl; /* seconds: OK the answer RRset's TTL, NXDOMAIN/NODATA the negative TTL
                   * (CACHE; 0 without an SOA), TEMPFAIL 0; a cache hit: the seconds left */
    bool secure;  /* DNSSEC-validated (only with a trust anchor; none is configured today) */
    bool cached;  /* served from the in-process cache */
    char reason[128];
    void *backend_; /* private: the stored answer this one borrows from, or NULL */
};

/* What the cache holds now and has done since um_dns_new (um_dns_cache_stats). */
struct um_dns_cache_stats {
    size_t entries;     /* answers held */
    size_t bytes;       /* their storage */
    size_t max_entries; /* the bounds in force */
    size_t max_bytes;
    uint64_t hits;      /* lookups answered from the cache */
    uint64_t misses;    /* lookups passed to libunbound (valid names only) */
    uint64_t evictions; /* entries dropped to stay within a bound */
};

/* Creates the resolver. servers may be NULL when n is 0 (then /etc/resolv.conf). */
UM_NODISCARD enum um_status um_dns_new(const char *const *servers, size_t n, unsigned timeout_s,
                                       struct um_dns **out, struct um_error *err);
/* The same, with at most max_sockets UDP sockets open towards the servers at any moment
 * (0: libunbound's default, thousands): lookups beyond it wait for a free socket instead of
 * taking descriptors the process may not have (a daemon sizes it from its RLIMIT_NOFILE). */
UM_NODISCARD enum um_status um_dns_new_capped(const char *const *servers, size_t n,
                                              unsigned timeout_s, unsigned max_sockets,
                                              struct um_dns **out, struct um_error *err);
/* Stops the dispatcher and the resolver; NULL does nothing. No lookup may be in flight. */
void um_dns_free(struct um_dns *dns);

/* Whether s is "IP" or "IP@PORT" as um_dns_new() takes it; *why says what is wrong. */
bool um_dns_server_valid(const char *s, const char **why);
/* Whether name passes the LIMITS above. */
bool um_dns_name_valid(const char *name);

/* TXT of name. *res is always initialised (fini it even on error). May block up to the
 * timeout. */
UM_NODISCARD enum um_status um_dns_txt(struct um_dns *dns, const char *name, struct um_dns_txt *res,
                                       struct um_error *err);
void um_dns_txt_fini(struct um_dns_txt *res);

/* Any type. *out is set (free it with um_dns_answer_free) whenever UM_OK is returned. */
UM_NODISCARD enum um_status um_dns_query(struct um_dns *dns, const char *name, int qtype,
                                         struct um_dns_answer **out, struct um_error *err);
void um_dns_answer_free(struct um_dns_answer *ans);

/* Sets the cache bounds (defaults UM_DNS_CACHE_ENTRIES, UM_DNS_CACHE_BYTES) and evicts down
 * to them at once; max_entries 0 or max_bytes 0 turns the cache off (and empties it). An
 * answer larger than max_bytes is not cached. Safe from any thread; answers already handed
 * out stay valid. */
void um_dns_set_cache_max(struct um_dns *dns, size_t max_entries, size_t max_bytes);
/* A consistent snapshot of the cache's counters. */
void um_dns_cache_stats(struct um_dns *dns, struct um_dns_cache_stats *st);

/* "ok", "nxdomain", "nodata", "tempfail". */
const char *um_dns_result_name(enum um_dns_result r);

#endif
