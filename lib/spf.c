/*
 * spf.c - SPF (RFC 7208) with libspf2 evaluating and our DNS layer guarding it
 *
 * Design note. libspf2 compiles and interprets records; it asks a DNS layer (a struct of
 * function pointers, SPF_dns_server_t) for every RRset. Our layer answers from the shared
 * resolver and is where the RFC 7208 rules libspf2 lacks are enforced, because every step
 * of an evaluation passes through it, synchronously, in the calling thread:
 *
 *   - Request scope without globals: the lookup callback only receives its layer, so each
 *     layer belongs to one pool slot (SPF_server_t + layer, hook -> slot) and a slot serves
 *     one evaluation at a time. um_spf_check() pops a slot under the pool mutex (a leaf
 *     lock, never held across DNS), points slot->req at its stack state, and pushes the
 *     slot back. The pool grows to the peak concurrency; a slot costs one SPF_server_new_dns
 *     (about 10 us measured, see test_spf's bench row) the first time only.
 *   - Term counting (RFC 7208 4.6.4: include, a, mx, ptr, exists, redirect): one query per
 *     term reaches us, except the address lookups of an mx or ptr term, which follow its
 *     MX/PTR answer in order. We remember those target names and count an A/AAAA query for
 *     the next expected target as part of its term. A TXT query counts only when its answer
 *     holds an SPF record and it is not the first record fetch (that is the policy itself;
 *     exp= text is no SPF record, and an include/redirect target without one is a permerror
 *     in libspf2 anyway). XXX: a %{p} macro's PTR lookup counts as a term, and an a: term
 *     naming exactly the next expected MX target is not counted: both are harmless for real
 *     records and documented in test_spf.
 *   - The 11th term is refused before it is queried (libspf2 lets it run), a 3rd void
 *     answer (NXDOMAIN/NODATA to a term's own query) is refused, an MX RRset of more than 10
 *     names is refused. "Refused" sets a verdict in the request state and answers TRY_AGAIN
 *     to this and every later lookup, which makes libspf2 unwind at once; um_spf_check()
 *     then reports the verdict we set, not libspf2's.
 *   - Every SPF record in a TXT answer is checked by um_spf_record_is_valid() against the
 *     RFC 7208 section 12 grammar before libspf2 compiles it, so libspf2's lenient parsing
 *     (and its macro expander, CVE-2021-33912/-33913, CVE-2023-42118) only ever sees
 *     records with bounded, well-formed macros.
 *   - TEMPFAIL -> TRY_AGAIN, NXDOMAIN -> HOST_NOT_FOUND, NODATA -> NO_DATA; type 99 is never
 *     asked; the lookup never returns NULL (libspf2 would abort()).
 *
 * Record grammar checked (RFC 7208 section 12; names and macro letters case-insensitive):
 *   record    = "v=spf1" *( 1*SP ( [qualifier] mechanism / modifier ) ) *SP
 *   mechanism = "all" / "include:" domain-spec / "a" [":" domain-spec] [dual-cidr]
 *             / "mx" [":" domain-spec] [dual-cidr] / "ptr" [":" domain-spec]
 *             / "ip4:" ip4 ["/" 0-32] / "ip6:" ip6 ["/" 0-128] / "exists:" domain-spec
 *   modifier  = ("redirect" / "exp") "=" domain-spec / name "=" macro-string
 *   domain-spec = macro-string ( "." toplabel ["."] / macro-expand )
 *   macro-expand = "%{" letter *DIGIT ["r"] *delimiter "}" / "%%" / "%_" / "%-"
 * plus: redirect and exp at most once; c, r, t macros only in exp text (never checked:
 * we never expand exp); transformer digits 1..128 (0 and bigger numbers are refused as
 * oversized); the record at most UM_SPF_MAX_RECORD bytes. Work is O(len).
 */
#define _DEFAULT_SOURCE /* u_char and friends in spf2/spf.h */
#include "spf.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h> /* spf.h needs struct in_addr */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "domain.h"

#define SPF_NAME_BUF   1024 /* decoded names: 255 wire bytes -> at most ~1020 text bytes */
#define SPF_MAX_EXPECT UM_SPF_MAX_MX_PTR

struct spf_req {
    unsigned terms, voids, records;
    int af;              /* the client's address family */
    enum um_auth forced; /* UM_AUTH_NONE: no verdict of ours yet */
    char forced_why[160];
    char temp_why[160];                            /* reason of the first TEMPFAIL */
    char expect[SPF_MAX_EXPECT][SPF_NAME_BUF / 4]; /* MX/PTR targets still to be resolved */
    size_t nexpect, iexpect;
};

struct spf_slot {
    SPF_server_t *sp;
    SPF_dns_server_t *layer;
    struct um_spf *owner;
    struct spf_req *req; /* set only while an evaluation runs */
    struct spf_slot *next;
};

struct um_spf {
    struct um_spf_resolver rs;
    char *receiver;
    pthread_mutex_t lock; /* protects free_slots only */
    struct spf_slot *free_slots;
};

/* ---- record syntax --------------------------------------------------------------------- */

static bool
spf_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
spf_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* One macro-expand at p[*i] == '%'; *i moves past it. */
static bool
spf_macro(const char *p, size_t len, size_t *i, bool *is_expand_brace, const char **why)
{
    size_t j = *i + 1;
    unsigned long digits = 0;
    size_t ndig = 0;

    if (j >= len) {
        *why = "'%' at end of macro-string";
        return false;
    }
    if (p[j] == '%' || p[j] == '_' || p[j] == '-') {
        *i = j + 1;
        *is_expand_brace = false;
        return true;
    }
    if (p[j] != '{') {
        *why = "'%' not followed by '{', '%', '_' or '-'";
        return false;
    }
    j++;
    if (j >= len || strchr("slodiphcrtvSLODIPHCRTV", p[j]) == NULL || p[j] == '\0') {
        *why = "unknown macro letter";
        return false;
    }
    if (strchr("crtCRT", p[j]) != NULL) {
        *why = "macro letter c, r or t outside exp text";
        return false;
    }
    j++;
    while (j < len && spf_is_digit((unsigned char)p[j])) {
        if (++ndig > 3) {
            *why = "macro transformer digits too long";
            return false;
        }
        digits = digits * 10 + (unsigned long)(p[j] - '0');
        j++;
    }
    if (ndig > 0 && (digits == 0 || digits > 128)) {
        *why = "macro transformer out of range 1..128";
        return false;
    }
    if (j < len && (p[j] == 'r' || p[j] == 'R'))
        j++;
    while (j < len && strchr(".-+,/_=", p[j]) != NULL && p[j] != '\0')
        j++;
    if (j >= len || p[j] != '}') {
        *why = "unterminated or malformed macro";
        return false;
    }
    *i = j + 1;
    *is_expand_brace = true;
    return true;
}

/* macro-string over p[0..len); *ends_macro says whether the last element was a macro. */
static bool
spf_macro_string(const char *p, size_t len, bool *ends_macro, const char **why)
{
    size_t i = 0;

    *ends_macro = false;
    while (i < len) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            bool brace;
            if (!spf_macro(p, len, &i, &brace, why))
                return false;
            *ends_macro = true;
        } else if (c >= 0x21 && c <= 0x7e) {
            i++;
            *ends_macro = false;
        } else {
            *why = "byte outside macro-literal (control, space or 8-bit)";
            return false;
        }
    }
    return true;
}

/* RFC 7208 toplabel: alphanumerics with at least one letter, or with an inner hyphen. */
static bool
spf_toplabel(const char *p, size_t len)
{
    bool alpha = false;

    if (len == 0 || len > 63 || p[0] == '-' || p[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (spf_is_alpha(c))
            alpha = true;
        else if (c == '-')
            alpha = true; /* 1*alphanum "-" ... alphanum */
        else if (!spf_is_digit(c))
            return false;
    }
    return alpha;
}

static bool
spf_domain_spec(const char *p, size_t len, const char **why)
{
    bool ends_macro;
    size_t end = len, dot;

    if (len == 0) {
        *why = "empty domain-spec";
        return false;
    }
    if (!spf_macro_string(p, len, &ends_macro, why))
        return false;
    if (ends_macro)
        return true;
    if (end > 0 && p[end - 1] == '.')
        end--;
    for (dot = end; dot > 0 && p[dot - 1] != '.'; dot--)
        ;
    if (dot == 0) {
        *why = "domain-spec without a dot before its top label";
        return false;
    }
    if (dot < 2 && end == len) {
        *why = "domain-spec with an empty label";
        return false;
    }
    if (!spf_toplabel(p + dot, end - dot)) {
        /* A macro right before the last dot ("%{d}.") still ends in a domain. */
        *why = "domain-spec with an invalid top label";
        return false;
    }
    return true;
}

/* "/" cidr with no leading zero, value <= max. */
static bool
spf_cidr(const char *p, size_t len, unsigned max)
{
    unsigned v = 0;

    if (len == 0 || len > 3 || (len > 1 && p[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!spf_is_digit((unsigned char)p[i]))
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= max;
}

/* Length of a trailing "/" cidr (digits <= max) at the end of p[0..len), else 0. */
static size_t
spf_trailing_cidr(const char *p, size_t len, unsigned max, const char **why, bool *bad)
{
    size_t d = len;

    while (d > 0 && spf_is_digit((unsigned char)p[d - 1]))
        d--;
    if (d == len || d == 0 || p[d - 1] != '/')
        return 0;
    if (!spf_cidr(p + d, len - d, max)) {
        *why = max == 32 ? "bad ip4-cidr-length" : "bad ip6-cidr-length";
        *bad = true;
    }
    return len - d + 1;
}

/* [":" domain-spec] [ip4-cidr] ["//" ip6-cidr] after "a"/"mx"; the cidrs are taken from
 * the end (a domain-spec may itself hold '/'). */
static bool
spf_a_mx_arg(const char *arg, size_t len, const char **why)
{
    bool bad = false;
    size_t c6 = spf_trailing_cidr(arg, len, 128, why, &bad);

    if (c6 > 0 && (len - c6 == 0 || arg[len - c6 - 1] != '/'))
        c6 = 0, bad = false; /* a single '/': that was the ip4 cidr */
    if (bad)
        return false;
    if (c6 > 0)
        len -= c6 + 1;
    len -= spf_trailing_cidr(arg, len, 32, why, &bad);
    if (bad)
        return false;
    if (len == 0)
        return true;
    if (arg[0] != ':') {
        *why = "unknown mechanism";
        return false;
    }
    return spf_domain_spec(arg + 1, len - 1, why);
}

static bool
spf_ip_arg(const char *arg, size_t len, int af, const char **why)
{
    char buf[64];
    unsigned char addr[16];
    size_t slash;

    if (len == 0 || arg[0] != ':') {
        *why = af == AF_INET ? "ip4 without address" : "ip6 without address";
        return false;
    }
    arg++;
    len--;
    slash = len;
    for (size_t i = 0; i < len; i++) {
        if (arg[i] == '/') {
            slash = i;
            break;
        }
    }
    if (slash >= sizeof(buf)) {
        *why = "address too long";
        return false;
    }
    memcpy(buf, arg, slash);
    buf[slash] = '\0';
    if (inet_pton(af, buf, addr) != 1) {
        *why = af == AF_INET ? "bad ip4 address" : "bad ip6 address";
        return false;
    }
    if (slash < len && !spf_cidr(arg + slash + 1, len - slash - 1, af == AF_INET ? 32 : 128)) {
        *why = af == AF_INET ? "bad ip4-cidr-length" : "bad ip6-cidr-length";
        return false;
    }
    return true;
}

/* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
static bool
spf_is_name(const char *p, size_t len)
{
    if (len == 0 || !spf_is_alpha((unsigned char)p[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!spf_is_alpha(c) && !spf_is_digit(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

static bool
spf_word(const char *p, size_t len, const char *w)
{
    size_t wl = strlen(w);
    return len >= wl && strncasecmp(p, w, wl) == 0;
}

static bool
spf_term(const char *t, size_t len, unsigned *nredirect, unsigned *nexp, const char **why)
{
    size_t name_end = 0;

    while (name_end < len && t[name_end] != '=' && t[name_end] != ':' && t[name_end] != '/')
        name_end++;
    if (name_end < len && t[name_end] == '=') {
        if (!spf_is_name(t, name_end)) {
            *why = "bad modifier name";
            return false;
        }
        if (name_end == 8 && strncasecmp(t, "redirect", 8) == 0) {
            if (++*nredirect > 1) {
                *why = "redirect= more than once";
                return false;
            }
            return spf_domain_spec(t + 9, len - 9, why);
        }
        if (name_end == 3 && strncasecmp(t, "exp", 3) == 0) {
            if (++*nexp > 1) {
                *why = "exp= more than once";
                return false;
            }
            return spf_domain_spec(t + 4, len - 4, why);
        }
        bool em;
        return spf_macro_string(t + name_end + 1, len - name_end - 1, &em, why);
    }
    if (len > 0 && strchr("+-~?", t[0]) != NULL) {
        t++;
        len--;
    }
    if (len == 3 && strncasecmp(t, "all", 3) == 0)
        return true;
    if (spf_word(t, len, "include:"))
        return spf_domain_spec(t + 8, len - 8, why);
    if (spf_word(t, len, "exists:"))
        return spf_domain_spec(t + 7, len - 7, why);
    if (spf_word(t, len, "ip4"))
        return spf_ip_arg(t + 3, len - 3, AF_INET, why);
    if (spf_word(t, len, "ip6"))
        return spf_ip_arg(t + 3, len - 3, AF_INET6, why);
    if (spf_word(t, len, "ptr")) {
        if (len == 3)
            return true;
        if (t[3] != ':') {
            *why = "unknown mechanism";
            return false;
        }
        return spf_domain_spec(t + 4, len - 4, why);
    }
    if (spf_word(t, len, "mx"))
        return spf_a_mx_arg(t + 2, len - 2, why);
    if (spf_word(t, len, "a") && (len == 1 || t[1] == ':' || t[1] == '/'))
        return spf_a_mx_arg(t + 1, len - 1, why);
    *why = "unknown mechanism";
    return false;
}

bool
um_spf_record_is_valid(struct um_str rec, char *why, size_t whylen)
{
    const char *p = rec.p, *w = NULL;
    size_t len = rec.len, i = 6;
    unsigned nredirect = 0, nexp = 0;

    if (len > UM_SPF_MAX_RECORD) {
        w = "record too long";
        goto bad;
    }
    if (len < 6 || strncasecmp(p, "v=spf1", 6) != 0 || (len > 6 && p[6] != ' ')) {
        w = "not an SPF record";
        goto bad;
    }
    /* RFC 7208 12: only SP and VCHAR; checked first, so no term parser (inet_pton among
     * them) ever sees a NUL or a control byte (found by fuzz_spf_record) */
    for (size_t k = 0; k < len; k++) {
        if ((unsigned char)p[k] < 0x20 || (unsigned char)p[k] > 0x7e) {
            if (why != NULL && whylen > 0)
                (void)snprintf(why, whylen, "control or 8-bit byte at offset %zu", k);
            return false;
        }
    }
    while (i < len) {
        size_t start;
        if (p[i] == ' ') {
            i++;
            continue;
        }
        start = i;
        while (i < len && p[i] != ' ')
            i++;
        if (!spf_term(p + start, i - start, &nredirect, &nexp, &w)) {
            if (why != NULL && whylen > 0) {
                (void)snprintf(why, whylen, "%s in term %zu", w, start);
            }
            return false;
        }
    }
    return true;
bad:
    if (why != NULL && whylen > 0)
        (void)snprintf(why, whylen, "%s", w);
    return false;
}

/* ---- rewriting a valid record for libspf2 -------------------------------------------------
 *
 * What we hand libspf2 is the checked record, rewritten where libspf2 gets RFC 7208 wrong
 * (the client's address family is known, so every rewrite is exact for this evaluation):
 *   - redirect= goes last (libspf2 runs it in place), and is dropped when "all" is present
 *     (RFC 7208 6.1); exp= and unknown modifiers are dropped (no effect on the result; we
 *     never show exp= text, and libspf2 refuses legal modifier names with '.', '-', '_');
 *   - a /0 CIDR (libspf2 refuses to compile it): ip4:x/0 -> ip4:0.0.0.0/1 ip4:128.0.0.0/1,
 *     ip6:x/0 -> ip6:::/1 ip6:8000::/1; an a or mx term whose CIDR for the client's family
 *     is 0 matches when the name has any address of that family, which becomes an exists:
 *     term on a name our DNS layer recognises (SPF_MAGIC_*) and answers itself; a /0 for the
 *     other family is irrelevant and dropped.
 * XXX libspf2's expander is still buggy for legal macros: %{dN} with N >= the label count
 * gets a leading dot, %{l1r} of a one-label local part is empty (pinned in test_spf). Every
 * macro value but %{p} is known when a record is fetched (d is the name being answered), so
 * the fix is to expand them here and hand libspf2 macro-free records; not done yet.
 */
#define SPF_MAGIC_AAAA    "._um-aaaa.invalid"
#define SPF_MAGIC_MX_A    "._um-mx-a.invalid"
#define SPF_MAGIC_MX_AAAA "._um-mx-aaaa.invalid"

static size_t
spf_put(char *out, size_t cap, size_t n, const char *p, size_t len)
{
    if (n + len + 1 > cap)
        return cap; /* caller checks n < cap */
    memcpy(out + n, p, len);
    out[n + len] = '\0';
    return n + len;
}

/* out needs 4 * len + 64 bytes. Returns the new length. rec is valid (checked). */
static size_t
spf_rewrite(const char *rec, size_t len, int af, char *out, size_t cap)
{
    const char *redirect = NULL;
    size_t redirect_len = 0, n = 0, i = 6;
    bool has_all = false;

    n = spf_put(out, cap, n, "v=spf1", 6);
    while (i < len) {
        const char *t, *m;
        size_t tl, ml, name_end = 0, qn;

        if (rec[i] == ' ') {
            i++;
            continue;
        }
        t = rec + i;
        while (i < len && rec[i] != ' ')
            i++;
        tl = (size_t)(rec + i - t);
        while (name_end < tl && t[name_end] != '=' && t[name_end] != ':' && t[name_end] != '/')
            name_end++;
        if (name_end < tl && t[name_end] == '=') {
            if (name_end == 8 && strncasecmp(t, "redirect", 8) == 0) {
                redirect = t;
                redirect_len = tl;
            }
            continue; /* exp= and unknown modifiers: dropped */
        }
        qn = strchr("+-~?", t[0]) != NULL ? 1 : 0;
        m = t + qn;
        ml = tl - qn;
        if (ml == 3 && strncasecmp(m, "all", 3) == 0)
            has_all = true;
        n = spf_put(out, cap, n, " ", 1);
        if ((spf_word(m, ml, "ip4:") || spf_word(m, ml, "ip6:")) && ml > 2 && m[ml - 2] == '/'
            && m[ml - 1] == '0' && m[ml - 3] != '/') {
            bool v4 = m[2] == '4';
            n = spf_put(out, cap, n, t, qn);
            n = spf_put(out, cap, n, v4 ? "ip4:0.0.0.0/1 " : "ip6:::/1 ", v4 ? 14 : 9);
            n = spf_put(out, cap, n, t, qn);
            n = spf_put(out, cap, n, v4 ? "ip4:128.0.0.0/1" : "ip6:8000::/1", v4 ? 15 : 12);
            continue;
        }
        if ((spf_word(m, ml, "a") && (ml == 1 || m[1] == ':' || m[1] == '/'))
            || (spf_word(m, ml, "mx") && (ml == 2 || m[2] == ':' || m[2] == '/'))) {
            bool mx = m[0] == 'm' || m[0] == 'M', bad = false;
            const char *why = NULL;
            size_t kw = mx ? 2 : 1, rest = ml, c6 = 0, c4 = 0;
            const char *c6p = NULL, *c4p = NULL;

            c6 = spf_trailing_cidr(m, rest, 128, &why, &bad);
            if (c6 > 0 && rest - c6 > 0 && m[rest - c6 - 1] == '/') {
                c6p = m + rest - c6 + 1;
                rest -= c6 + 1;
            } else {
                c6 = 0;
            }
            c4 = spf_trailing_cidr(m, rest, 32, &why, &bad);
            if (c4 > 0) {
                c4p = m + rest - c4 + 1;
                rest -= c4;
            }
            bool z4 = c4p != NULL && c4p[0] == '0', z6 = c6p != NULL && c6p[0] == '0';
            bool zero = af == AF_INET ? z4 : z6;
            if (!z4 && !z6) {
                n = spf_put(out, cap, n, t, tl);
                continue;
            }
            n = spf_put(out, cap, n, t, qn);
            if (zero) {
                const char *spec = rest > kw ? m + kw + 1 : "%{d}";
                size_t sl = rest > kw ? rest - kw - 1 : 4;
                const char *magic = af == AF_INET ? (mx ? SPF_MAGIC_MX_A : NULL)
                                                  : (mx ? SPF_MAGIC_MX_AAAA : SPF_MAGIC_AAAA);
                if (sl > 1 && spec[sl - 1] == '.')
                    sl--;
                n = spf_put(out, cap, n, "exists:", 7);
                n = spf_put(out, cap, n, spec, sl);
                if (magic != NULL)
                    n = spf_put(out, cap, n, magic, strlen(magic));
                continue;
            }
            /* the /0 is for the other family: keep the term with the relevant cidr only */
            n = spf_put(out, cap, n, m, rest);
            if (af == AF_INET && c4p != NULL) {
                n = spf_put(out, cap, n, "/", 1);
                n = spf_put(out, cap, n, c4p, c4 - 1);
            } else if (af == AF_INET6 && c6p != NULL) {
                n = spf_put(out, cap, n, "//", 2);
                n = spf_put(out, cap, n, c6p, c6 - 1);
            }
            continue;
        }
        n = spf_put(out, cap, n, t, tl);
    }
    if (redirect != NULL && !has_all) {
        n = spf_put(out, cap, n, " ", 1);
        n = spf_put(out, cap, n, redirect, redirect_len);
    }
    return n;
}

/* ---- the DNS layer ---------------------------------------------------------------------- */

/* Uncompressed wire name -> dotted text ("" for the root). False when malformed. */
static bool
spf_wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    size_t i = 0, n = 0;

    while (i < len) {
        size_t l = p[i++];
        if (l == 0) {
            out[n] = '\0';
            return true;
        }
        if (l > 63 || i + l > len || n + l + 2 > outlen)
            return false;
        if (n > 0)
            out[n++] = '.';
        memcpy(out + n, p + i, l);
        n += l;
        i += l;
    }
    return false;
}

static bool
spf_is_record(const char *p, size_t len)
{
    return len >= 6 && strncasecmp(p, "v=spf1", 6) == 0 && (len == 6 || p[6] == ' ');
}

static void
spf_force(struct spf_req *rq, enum um_auth r, const char *what, const char *detail)
{
    if (rq->forced != UM_AUTH_NONE)
        return;
    rq->forced = r;
    (void)snprintf(rq->forced_why, sizeof(rq->forced_why), "%s%s", what, detail);
}

static SPF_dns_rr_t *
spf_rr(SPF_dns_server_t *s, const char *domain, ns_type type, SPF_dns_stat_t herrno)
{
    SPF_dns_rr_t *rr = SPF_dns_rr_new_init(s, domain, type, 0, herrno);
    /* libspf2 aborts on NULL: fall back to its static-free NXDOMAIN helper, then give up
     * the only way left (this is an out-of-memory path inside libspf2's own allocator). */
    if (rr == NULL)
        rr = SPF_dns_rr_new_nxdomain(s, domain);
    return rr;
}

/* The answer's records into rr; false when out of memory. */
static bool
spf_fill(SPF_dns_rr_t *rr, const struct um_dns_answer *ans, int qtype, struct spf_req *rq,
         bool *saw_record)
{
    int k = 0;

    for (size_t i = 0; i < ans->n; i++) {
        const unsigned char *d = (const unsigned char *)ans->rdata[i].p;
        size_t dl = ans->rdata[i].len;
        char name[SPF_NAME_BUF];
        size_t need;

        switch (qtype) {
        case UM_DNS_TYPE_A:
            if (dl != 4)
                continue;
            if (SPF_dns_rr_buf_realloc(rr, k, sizeof(struct in_addr)) != SPF_E_SUCCESS)
                return false;
            memcpy(&rr->rr[k]->a, d, 4);
            break;
        case UM_DNS_TYPE_AAAA:
            if (dl != 16)
                continue;
            if (SPF_dns_rr_buf_realloc(rr, k, sizeof(struct in6_addr)) != SPF_E_SUCCESS)
                return false;
            memcpy(&rr->rr[k]->aaaa, d, 16);
            break;
        case UM_DNS_TYPE_MX:
        case UM_DNS_TYPE_PTR: {
            size_t off = qtype == UM_DNS_TYPE_MX ? 2 : 0;
            if (dl < off || !spf_wire_name(d + off, dl - off, name, sizeof(name)))
                continue;
            need = strlen(name) + 1;
            if (SPF_dns_rr_buf_realloc(rr, k, need) != SPF_E_SUCCESS)
                return false;
            memcpy(rr->rr[k]->mx, name, need);
            if (rq->nexpect < SPF_MAX_EXPECT && need <= sizeof(rq->expect[0]))
                memcpy(rq->expect[rq->nexpect++], name, need);
            break;
        }
        case UM_DNS_TYPE_TXT: {
            /* rdata: character-strings; join them (RFC 7208 3.3) */
            char *t;
            size_t n = 0, j = 0;
            if (SPF_dns_rr_buf_realloc(rr, k, dl + 1) != SPF_E_SUCCESS)
                return false;
            t = rr->rr[k]->txt;
            while (j < dl) {
                size_t l = d[j++];
                if (j + l > dl)
                    l = dl - j;
                memcpy(t + n, d + j, l);
                n += l;
                j += l;
            }
            t[n] = '\0';
            if (memchr(t, '\0', n) != NULL) {
                spf_force(rq, UM_AUTH_PERMERROR, "TXT record holds a NUL byte", "");
                continue;
            }
            if (spf_is_record(t, n)) {
                char why[120];
                *saw_record = true;
                if (!um_spf_record_is_valid((struct um_str){t, n}, why, sizeof(why))) {
                    spf_force(rq, UM_AUTH_PERMERROR, "invalid SPF record: ", why);
                } else {
                    size_t cap = 4 * n + 64, nn;
                    char *rw = malloc(cap);
                    if (rw == NULL)
                        return false;
                    nn = spf_rewrite(t, n, rq->af, rw, cap);
                    if (nn >= cap || SPF_dns_rr_buf_realloc(rr, k, nn + 1) != SPF_E_SUCCESS) {
                        free(rw);
                        return false;
                    }
                    memcpy(rr->rr[k]->txt, rw, nn + 1);
                    free(rw);
                }
            }
            break;
        }
        default:
            continue;
        }
        k++;
    }
    rr->num_rr = k;
    return true;
}

/* One query through the seam: the result, or TEMPFAIL (with rq->temp_why) on failure. */
static enum um_dns_result
spf_ask(struct um_spf *spf, struct spf_req *rq, const char *name, int qtype,
        struct um_dns_answer **ans)
{
    struct um_error err = {0};
    enum um_status st = spf->rs.query(spf->rs.arg, name, qtype, ans, &err);

    if (st == UM_EINVAL)
        return UM_DNS_NXDOMAIN;
    if (st != UM_OK || *ans == NULL) {
        if (rq->temp_why[0] == '\0')
            (void)snprintf(rq->temp_why, sizeof(rq->temp_why), "dns: %.150s", err.msg);
        return UM_DNS_TEMPFAIL;
    }
    if ((*ans)->result == UM_DNS_TEMPFAIL && rq->temp_why[0] == '\0')
        (void)snprintf(rq->temp_why, sizeof(rq->temp_why), "dns: %.60s: %.80s", name,
                       (*ans)->reason);
    return (*ans)->result;
}

/* The rewritten a/0 and mx/0 terms (see spf_rewrite): does base have an address of the
 * family (directly, or through one of its first 10 MX hosts)? Returns the herrno to give;
 * *is_void says whether the term's own lookup was void (RFC 7208 4.6.4). */
static SPF_dns_stat_t
spf_magic(struct um_spf *spf, struct spf_req *rq, const char *base, bool mx, int atype,
          bool *is_void)
{
    struct um_dns_answer *ans = NULL;
    enum um_dns_result r;
    SPF_dns_stat_t h;

    *is_void = false;
    r = spf_ask(spf, rq, base, mx ? UM_DNS_TYPE_MX : atype, &ans);
    if (r == UM_DNS_OK && !mx) {
        h = ans->n > 0 ? NETDB_SUCCESS : NO_DATA;
    } else if (r == UM_DNS_OK) {
        h = NO_DATA;
        if (ans->n > UM_SPF_MAX_MX_PTR)
            spf_force(rq, UM_AUTH_PERMERROR, "mx: more than 10 MX records", "");
        for (size_t i = 0; i < ans->n && i < UM_SPF_MAX_MX_PTR && h == NO_DATA; i++) {
            char name[SPF_NAME_BUF];
            struct um_dns_answer *a2 = NULL;
            const unsigned char *d = (const unsigned char *)ans->rdata[i].p;
            if (ans->rdata[i].len < 2
                || !spf_wire_name(d + 2, ans->rdata[i].len - 2, name, sizeof(name)))
                continue;
            r = spf_ask(spf, rq, name, atype, &a2);
            if (r == UM_DNS_TEMPFAIL)
                h = TRY_AGAIN;
            else if (r == UM_DNS_OK && a2->n > 0)
                h = NETDB_SUCCESS;
            if (a2 != NULL)
                spf->rs.answer_free(spf->rs.arg, a2);
        }
    } else {
        h = r == UM_DNS_NXDOMAIN ? HOST_NOT_FOUND : r == UM_DNS_NODATA ? NO_DATA : TRY_AGAIN;
        *is_void = h != TRY_AGAIN;
    }
    if (ans != NULL)
        spf->rs.answer_free(spf->rs.arg, ans);
    return h;
}

static bool
spf_ends_with(const char *s, size_t len, const char *suffix, size_t *base_len)
{
    size_t sl = strlen(suffix);
    if (len <= sl || strcasecmp(s + len - sl, suffix) != 0)
        return false;
    *base_len = len - sl;
    return true;
}

static SPF_dns_rr_t *
spf_lookup(SPF_dns_server_t *s, const char *domain, ns_type rr_type, int should_cache)
{
    struct spf_slot *slot = s->hook;
    struct spf_req *rq = slot->req;
    struct um_spf *spf = slot->owner;
    struct um_dns_answer *ans = NULL;
    struct um_error err = {0};
    enum um_status st;
    SPF_dns_rr_t *rr;
    bool term = false, saw_record = false;
    int qtype = (int)rr_type;

    (void)should_cache;
    if (rq == NULL || rq->forced != UM_AUTH_NONE)
        return spf_rr(s, domain, rr_type, TRY_AGAIN);
    if (qtype != UM_DNS_TYPE_A && qtype != UM_DNS_TYPE_AAAA && qtype != UM_DNS_TYPE_MX
        && qtype != UM_DNS_TYPE_PTR && qtype != UM_DNS_TYPE_TXT)
        return spf_rr(s, domain, rr_type, NO_DATA); /* never type 99 (or anything else) */

    if (qtype == UM_DNS_TYPE_A || qtype == UM_DNS_TYPE_AAAA) {
        if (rq->iexpect < rq->nexpect && strcasecmp(rq->expect[rq->iexpect], domain) == 0) {
            rq->iexpect++; /* an mx/ptr term's address lookup */
        } else {
            rq->nexpect = rq->iexpect = 0;
            term = true;
        }
    } else {
        rq->nexpect = rq->iexpect = 0;
        term = qtype != UM_DNS_TYPE_TXT;
    }
    /* RFC 7208 4.6.4: at most 10 DNS-querying terms; refuse the 11th before it runs */
    if (term && rq->terms + 1 > UM_SPF_MAX_DNS_TERMS) {
        spf_force(rq, UM_AUTH_PERMERROR, "more than 10 DNS-querying terms", "");
        return spf_rr(s, domain, rr_type, TRY_AGAIN);
    }
    if (term)
        rq->terms++;

    {
        /* names are absolute: "example.com." is "example.com" */
        char q[SPF_NAME_BUF];
        size_t dl = strlen(domain), bl;
        bool mx = false, is_void;
        if (dl >= sizeof(q)) {
            rr = spf_rr(s, domain, rr_type, HOST_NOT_FOUND);
            goto voidcheck;
        }
        memcpy(q, domain, dl + 1);
        if (dl > 0 && q[dl - 1] == '.')
            q[--dl] = '\0';
        if (qtype == UM_DNS_TYPE_A
            && (spf_ends_with(q, dl, SPF_MAGIC_AAAA, &bl)
                || (mx = spf_ends_with(q, dl, SPF_MAGIC_MX_A, &bl))
                || (mx = spf_ends_with(q, dl, SPF_MAGIC_MX_AAAA, &bl)))) {
            int atype = strstr(q + bl, "aaaa") != NULL ? UM_DNS_TYPE_AAAA : UM_DNS_TYPE_A;
            SPF_dns_stat_t h;
            q[bl] = '\0';
            h = spf_magic(spf, rq, q, mx, atype, &is_void);
            rr = spf_rr(s, domain, rr_type, h);
            if (rr != NULL && h == NETDB_SUCCESS) {
                if (SPF_dns_rr_buf_realloc(rr, 0, sizeof(struct in_addr)) != SPF_E_SUCCESS) {
                    rr->herrno = TRY_AGAIN;
                } else {
                    rr->rr[0]->a.s_addr = htonl(0x7f000001);
                    rr->num_rr = 1;
                }
            }
            if (rr == NULL)
                return NULL;
            if (!is_void)
                term = false; /* only the term's own void answer counts */
            goto voidcheck;
        }
        st = spf->rs.query(spf->rs.arg, q, qtype, &ans, &err);
    }
    if (st == UM_EINVAL) {
        /* not a name we can put on the wire (empty or long label): it cannot exist */
        rr = spf_rr(s, domain, rr_type, HOST_NOT_FOUND);
        goto voidcheck;
    }
    if (st != UM_OK || ans == NULL) {
        if (rq->temp_why[0] == '\0')
            (void)snprintf(rq->temp_why, sizeof(rq->temp_why), "dns: %.150s", err.msg);
        return spf_rr(s, domain, rr_type, TRY_AGAIN);
    }
    switch (ans->result) {
    case UM_DNS_OK:
        rr = spf_rr(s, domain, rr_type, NETDB_SUCCESS);
        if (rr != NULL && !spf_fill(rr, ans, qtype, rq, &saw_record)) {
            SPF_dns_rr_free(rr);
            rr = spf_rr(s, domain, rr_type, TRY_AGAIN);
            if (rq->temp_why[0] == '\0')
                (void)snprintf(rq->temp_why, sizeof(rq->temp_why), "out of memory");
        }
        if (rr != NULL && rr->num_rr == 0)
            rr->herrno = NO_DATA;
        break;
    case UM_DNS_NXDOMAIN:
        rr = spf_rr(s, domain, rr_type, HOST_NOT_FOUND);
        break;
    case UM_DNS_NODATA:
        rr = spf_rr(s, domain, rr_type, NO_DATA);
        break;
    default:
        if (rq->temp_why[0] == '\0')
            (void)snprintf(rq->temp_why, sizeof(rq->temp_why), "dns: %.60s: %.80s", domain,
                           ans->reason);
        rr = spf_rr(s, domain, rr_type, TRY_AGAIN);
        break;
    }
    spf->rs.answer_free(spf->rs.arg, ans);
    if (rr == NULL)
        return NULL; /* not reached in practice: SPF_dns_rr_new_nxdomain failed too */

    if (qtype == UM_DNS_TYPE_TXT && saw_record) {
        /* include/redirect targets count; the policy's own record does not */
        if (rq->records++ > 0 && rq->terms + 1 > UM_SPF_MAX_DNS_TERMS)
            spf_force(rq, UM_AUTH_PERMERROR, "more than 10 DNS-querying terms", "");
        else if (rq->records > 1)
            rq->terms++;
    }
    /* RFC 7208 4.6.4: an mx term may not look up more than 10 exchanges */
    if (qtype == UM_DNS_TYPE_MX && rr->num_rr > UM_SPF_MAX_MX_PTR)
        spf_force(rq, UM_AUTH_PERMERROR, "mx: more than 10 MX records", "");
    /* RFC 7208 4.6.4: a ptr term uses the first 10 names and ignores the rest (libspf2 would
     * give permerror) */
    if (qtype == UM_DNS_TYPE_PTR && rr->num_rr > UM_SPF_MAX_MX_PTR)
        rr->num_rr = UM_SPF_MAX_MX_PTR;
voidcheck:
    /* RFC 7208 4.6.4: at most 2 void lookups */
    if (term && (rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA)
        && ++rq->voids > UM_SPF_MAX_VOID)
        spf_force(rq, UM_AUTH_PERMERROR, "more than 2 void lookups", "");
    if (rq->forced != UM_AUTH_NONE) {
        SPF_dns_rr_free(rr);
        return spf_rr(s, domain, rr_type, TRY_AGAIN);
    }
    return rr;
}

/* ---- the pool ----------------------------------------------------------------------------- */

static void
spf_layer_destroy(SPF_dns_server_t *layer)
{
    free(layer);
}

static void
spf_slot_free(struct spf_slot *slot)
{
    if (slot == NULL)
        return;
    if (slot->sp != NULL)
        SPF_server_free(slot->sp);
    if (slot->layer != NULL)
        SPF_dns_free(slot->layer);
    free(slot);
}

static struct spf_slot *
spf_slot_new(struct um_spf *spf)
{
    struct spf_slot *slot = calloc(1, sizeof(*slot));
    SPF_response_t *resp = NULL;

    if (slot == NULL)
        return NULL;
    slot->owner = spf;
    slot->layer = calloc(1, sizeof(*slot->layer));
    if (slot->layer == NULL)
        goto fail;
    slot->layer->lookup = spf_lookup;
    slot->layer->destroy = spf_layer_destroy;
    slot->layer->name = "unimilter";
    slot->layer->hook = slot;
    slot->sp = SPF_server_new_dns(slot->layer, 0);
    if (slot->sp == NULL)
        goto fail;
    if (SPF_server_set_rec_dom(slot->sp, spf->receiver) != SPF_E_SUCCESS)
        goto fail;
    /* never libspf2's openspf.org text; we do not use any explanation anyway */
    (void)SPF_server_set_explanation(slot->sp, "", &resp);
    SPF_response_free(resp);
    return slot;
fail:
    spf_slot_free(slot);
    return NULL;
}

static struct spf_slot *
spf_slot_get(struct um_spf *spf)
{
    struct spf_slot *slot;

    pthread_mutex_lock(&spf->lock);
    slot = spf->free_slots;
    if (slot != NULL)
        spf->free_slots = slot->next;
    pthread_mutex_unlock(&spf->lock);
    return slot != NULL ? slot : spf_slot_new(spf);
}

static void
spf_slot_put(struct um_spf *spf, struct spf_slot *slot)
{
    slot->req = NULL;
    pthread_mutex_lock(&spf->lock);
    slot->next = spf->free_slots;
    spf->free_slots = slot;
    pthread_mutex_unlock(&spf->lock);
}

static enum um_status
spf_dns_query(void *arg, const char *name, int qtype, struct um_dns_answer **out,
              struct um_error *err)
{
    return um_dns_query(arg, name, qtype, out, err);
}

static void
spf_dns_answer_free(void *arg, struct um_dns_answer *ans)
{
    (void)arg;
    um_dns_answer_free(ans);
}

enum um_status
um_spf_new(struct um_dns *dns, const char *receiver_name, struct um_spf **out, struct um_error *err)
{
    struct um_spf_resolver rs = {spf_dns_query, spf_dns_answer_free, dns};
    return um_spf_new_resolver(&rs, receiver_name, out, err);
}

enum um_status
um_spf_new_resolver(const struct um_spf_resolver *resolver, const char *receiver_name,
                    struct um_spf **out, struct um_error *err)
{
    struct um_spf *spf;
    struct spf_slot *slot;

    *out = NULL;
    if (receiver_name == NULL || !um_dns_name_valid(receiver_name))
        return um_error_set(err, UM_EINVAL, "spf: receiver name \"%s\" is not a host name",
                            receiver_name == NULL ? "" : receiver_name);
    spf = calloc(1, sizeof(*spf));
    if (spf == NULL)
        return um_error_set(err, UM_ENOMEM, "spf: out of memory");
    spf->rs = *resolver;
    spf->receiver = strdup(receiver_name);
    if (spf->receiver == NULL || pthread_mutex_init(&spf->lock, NULL) != 0) {
        free(spf->receiver);
        free(spf);
        return um_error_set(err, UM_ENOMEM, "spf: out of memory");
    }
    /* one slot up front, so a libspf2 that cannot start fails here and not per message */
    slot = spf_slot_new(spf);
    if (slot == NULL) {
        um_spf_free(spf);
        return um_error_set(err, UM_ENOMEM, "spf: cannot create a libspf2 server");
    }
    spf_slot_put(spf, slot);
    *out = spf;
    return UM_OK;
}

void
um_spf_free(struct um_spf *spf)
{
    if (spf == NULL)
        return;
    while (spf->free_slots != NULL) {
        struct spf_slot *s = spf->free_slots;
        spf->free_slots = s->next;
        spf_slot_free(s);
    }
    pthread_mutex_destroy(&spf->lock);
    free(spf->receiver);
    free(spf);
}

/* ---- the check ---------------------------------------------------------------------------- */

/* RFC 7208 4.3: a domain we can evaluate (labels 1..63, more than one label, <= 253); it
 * names no other malformation, so any byte may stand in a label. */
static bool
spf_domain_ok(const char *d)
{
    return um_domain_is_valid(um_str_of(d),
                              UM_DOMAIN_FINAL_DOT | UM_DOMAIN_ANY_BYTE | UM_DOMAIN_TWO_LABELS);
}

static enum um_auth
spf_map(SPF_result_t r, SPF_errcode_t e)
{
    switch (r) {
    case SPF_RESULT_PASS:
        return UM_AUTH_PASS;
    case SPF_RESULT_FAIL:
        return UM_AUTH_FAIL;
    case SPF_RESULT_SOFTFAIL:
        return UM_AUTH_SOFTFAIL;
    case SPF_RESULT_NEUTRAL:
        return UM_AUTH_NEUTRAL;
    case SPF_RESULT_NONE:
        return UM_AUTH_NONE;
    case SPF_RESULT_TEMPERROR:
        return UM_AUTH_TEMPERROR;
    case SPF_RESULT_PERMERROR:
        return UM_AUTH_PERMERROR;
    default:
        /* "(invalid)": a failed record fetch or a record libspf2 could not compile */
        return e == SPF_E_DNS_ERROR ? UM_AUTH_TEMPERROR : UM_AUTH_PERMERROR;
    }
}

/* Appends s to b as RFC 5322 quoted-string content (controls and 8-bit become '?'). */
static size_t
spf_quote(char *b, size_t cap, size_t n, const char *s, bool comment)
{
    for (; s != NULL && *s != '\0' && n + 3 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (comment ? (c == '(' || c == ')' || c == '\\') : (c == '"' || c == '\\'))
            b[n++] = '\\';
        b[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    b[n] = '\0';
    return n;
}

static enum um_status
spf_received(struct um_spf *spf, const struct um_spf_query *q, struct um_spf_result *res,
             const char *sender)
{
    size_t cap = 1024 + 2 * (strlen(sender) + strlen(q->helo != NULL ? q->helo : "")), n;
    char *b = malloc(cap), phrase[128];

    if (b == NULL)
        return UM_ENOMEM;
    /* RFC 7208 9.1: result (comment) key=value pairs */
    if (res->identity[0] == 'h')
        n = (size_t)snprintf(b, cap, "%s (%s: helo ", um_auth_name(res->result), spf->receiver);
    else
        n = (size_t)snprintf(b, cap, "%s (%s: domain of ", um_auth_name(res->result),
                             spf->receiver);
    n = spf_quote(b, cap, n, sender, true);
    switch (res->result) {
    case UM_AUTH_PASS:
        (void)snprintf(phrase, sizeof(phrase), "designates %s as permitted sender", q->client_ip);
        break;
    case UM_AUTH_FAIL:
    case UM_AUTH_SOFTFAIL:
        (void)snprintf(phrase, sizeof(phrase), "does not designate %s as permitted sender",
                       q->client_ip);
        break;
    case UM_AUTH_NEUTRAL:
        (void)snprintf(phrase, sizeof(phrase), "neither permits nor denies %s", q->client_ip);
        break;
    case UM_AUTH_TEMPERROR:
        (void)snprintf(phrase, sizeof(phrase), "could not be checked: temporary error");
        break;
    case UM_AUTH_PERMERROR:
        (void)snprintf(phrase, sizeof(phrase), "has a broken SPF policy: permanent error");
        break;
    default:
        (void)snprintf(phrase, sizeof(phrase), "does not designate permitted sender hosts");
        break;
    }
    n += (size_t)snprintf(b + n, cap - n, " %s) client-ip=%s; envelope-from=\"", phrase,
                          q->client_ip);
    n = spf_quote(b, cap, n, q->mail_from != NULL ? q->mail_from : "", false);
    n += (size_t)snprintf(b + n, cap - n, "\"; helo=\"");
    n = spf_quote(b, cap, n, q->helo, false);
    (void)snprintf(b + n, cap - n, "\"; receiver=%s; identity=%s;", spf->receiver, res->identity);
    res->received_spf = b;
    return UM_OK;
}

void
um_spf_result_fini(struct um_spf_result *res)
{
    if (res == NULL)
        return;
    free(res->domain);
    free(res->ar_value);
    free(res->received_spf);
    res->domain = res->ar_value = res->received_spf = NULL;
}

static bool
spf_is_loopback(int af, const unsigned char *a)
{
    static const unsigned char v6lo[16] = {[15] = 1};
    return af == AF_INET ? a[0] == 127 : memcmp(a, v6lo, 16) == 0;
}

enum um_status
um_spf_check(struct um_spf *spf, const struct um_spf_query *q, struct um_spf_result *res,
             struct um_error *err)
{
    const char *from = q->mail_from != NULL ? q->mail_from : "";
    const char *helo = q->helo != NULL ? q->helo : "";
    const char *at, *dom;
    unsigned char addr[16];
    char ip4[INET_ADDRSTRLEN], sender[1024];
    int af;
    struct spf_req rq;
    struct spf_slot *slot = NULL;
    SPF_request_t *req = NULL;
    SPF_response_t *resp = NULL;
    SPF_errcode_t e;
    enum um_status st = UM_OK;

    memset(res, 0, sizeof(*res));
    res->identity = from[0] != '\0' ? "mailfrom" : "helo";
    res->ar_ptype = "smtp";
    res->ar_prop = res->identity;
    if (q->client_ip == NULL)
        return um_error_set(err, UM_EINVAL, "spf: no client IP");
    if (inet_pton(AF_INET, q->client_ip, addr) == 1) {
        af = AF_INET;
    } else if (inet_pton(AF_INET6, q->client_ip, addr) == 1) {
        af = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)addr)) { /* RFC 7208 5: it is IPv4 */
            memmove(addr, addr + 12, 4);
            af = AF_INET;
        }
    } else {
        return um_error_set(err, UM_EINVAL, "spf: client IP \"%s\" is not an address",
                            q->client_ip);
    }
    /* The identity (RFC 7208 2.3, 2.4): MAIL FROM, or HELO for the null sender. */
    if (from[0] != '\0') {
        at = strrchr(from, '@');
        dom = at != NULL ? at + 1 : from;
        if (at != NULL && at != from)
            (void)snprintf(sender, sizeof(sender), "%s", from);
        else
            (void)snprintf(sender, sizeof(sender), "postmaster@%s", dom);
    } else {
        dom = helo;
        (void)snprintf(sender, sizeof(sender), "postmaster@%s", dom);
    }
    res->domain = strdup(dom);
    res->ar_value = strdup(dom);
    if (res->domain == NULL || res->ar_value == NULL)
        goto nomem;

    if (spf_is_loopback(af, addr)) {
        /* libspf2 would say pass without DNS; loopback is no remote client to check */
        res->result = UM_AUTH_NONE;
        (void)snprintf(res->reason, sizeof(res->reason), "loopback client not evaluated");
        goto header;
    }
    if (!spf_domain_ok(dom)) {
        /* RFC 7208 4.3: a malformed or single-label domain gives none without DNS */
        res->result = UM_AUTH_NONE;
        (void)snprintf(res->reason, sizeof(res->reason), "%s is not a valid domain",
                       res->identity[0] == 'h' ? "HELO" : "MAIL FROM");
        goto header;
    }

    memset(&rq, 0, sizeof(rq));
    rq.af = af;
    slot = spf_slot_get(spf);
    if (slot == NULL)
        goto nomem;
    slot->req = &rq;
    req = SPF_request_new(slot->sp);
    if (req == NULL)
        goto nomem;
    if (af == AF_INET) {
        (void)inet_ntop(AF_INET, addr, ip4, sizeof(ip4));
        e = SPF_request_set_ipv4_str(req, ip4);
    } else {
        e = SPF_request_set_ipv6_str(req, q->client_ip);
    }
    if (e != SPF_E_SUCCESS) {
        st = um_error_set(err, UM_EINVAL, "spf: client IP \"%s\" refused by libspf2", q->client_ip);
        goto out;
    }
    if (helo[0] != '\0' && SPF_request_set_helo_dom(req, helo) != SPF_E_SUCCESS)
        goto nomem;
    if (SPF_request_set_env_from(req, from[0] != '\0' ? from : sender) != 0)
        goto nomem;
    e = SPF_request_query_mailfrom(req, &resp);
    if (resp == NULL)
        goto nomem;
    res->result =
        spf_map(SPF_response_result(resp), e == SPF_E_DNS_ERROR ? e : SPF_response_errcode(resp));
    if (SPF_response_result(resp) == SPF_RESULT_INVALID && rq.temp_why[0] != '\0')
        res->result = UM_AUTH_TEMPERROR; /* the record fetch failed: SERVFAIL or timeout */
    if (rq.forced != UM_AUTH_NONE) {
        res->result = rq.forced;
        (void)snprintf(res->reason, sizeof(res->reason), "%s", rq.forced_why);
    } else if (res->result == UM_AUTH_TEMPERROR && rq.temp_why[0] != '\0') {
        (void)snprintf(res->reason, sizeof(res->reason), "%s", rq.temp_why);
    } else if (res->result == UM_AUTH_NONE) {
        (void)snprintf(res->reason, sizeof(res->reason), "no SPF record");
    } else if (res->result == UM_AUTH_PERMERROR || res->result == UM_AUTH_TEMPERROR) {
        (void)snprintf(res->reason, sizeof(res->reason), "%s", SPF_strerror(e));
    } else {
        (void)snprintf(res->reason, sizeof(res->reason), "%s",
                       SPF_strreason(SPF_response_reason(resp)));
    }
header:
    if (spf_received(spf, q, res, sender) != UM_OK)
        goto nomem;
out:
    if (resp != NULL)
        SPF_response_free(resp);
    if (req != NULL)
        SPF_request_free(req);
    if (slot != NULL)
        spf_slot_put(spf, slot);
    if (st != UM_OK)
        res->result = UM_AUTH_NONE;
    return st;
nomem:
    st = um_error_set(err, UM_ENOMEM, "spf: out of memory");
    goto out;
}
