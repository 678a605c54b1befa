/*
 * dmarc.c - DMARC policy discovery, alignment and disposition (RFC 9989; RFC 7489 as a setting)
 *
 * Design note. libopendmarc 1.4.2 knows only RFC 7489 and has four defects that sit exactly
 * on the decisions this module makes (doc/libraries.md 4.2): its own resolver hides SERVFAIL
 * behind the org-domain fallback, pct= is ignored, rf=iodef is OR-ed into aspf (breaking
 * relaxed SPF alignment), and np=/psd=/t= are unknown, with the org domain from the PSL only.
 * Working around each (stripping rf=, re-applying pct, recomputing alignment against a
 * tree-walk org domain) would leave libopendmarc deciding nothing, while its parser would
 * still see hostile bytes. So the record parser and the alignment test (both small: a tag
 * list and a suffix comparison) are ours, fuzzed (tests/fuzz/fuzz_dmarc_record.c) and
 * table-tested; libopendmarc supplies the one thing it does right, the public suffix list
 * lookup (opendmarc_get_tld, exported but undeclared in dmarc.h) for the RFC 7489 method.
 *
 * Record grammar (RFC 9989 4.7, RFC 7489 6.4), parsed without allocation:
 *   record  = "v" *WSP "=" *WSP "DMARC1" *( *WSP ";" [ *WSP tag *WSP "=" *WSP value ] ) *WSP
 *   p/sp/np = "none" / "quarantine" / "reject"    adkim/aspf = "r" / "s"
 *   pct     = 1*3DIGIT (0..100)                   t = "y" / "n"     psd = "y" / "n" / "u"
 * Unknown tags are ignored; the v= tag must come first.
 *
 * Tree walk (RFC 9989 4.10): query _dmarc.<domain>; then, from the domain shortened to at
 * most 7 labels (or by one label when it has fewer than 8), remove one label at a time down
 * to the top-level label. At most 1 + 7 queries per walk, all through the shared cache. At
 * each name, exactly one v=DMARC1 record counts; zero or several count as none. The policy
 * record is the first one found. The organizational domain comes from the same walk, carried
 * on past the policy record: the first psd=n domain; else the child (one label longer, toward
 * the start) of the first psd=y domain; else the shortest domain with a record; else the
 * start domain itself. Relaxed alignment of an identifier needs its org domain only when the
 * From org domain is a suffix of it, so most messages cost no extra walk.
 *
 * np= (RFC 9989): a From domain is non-existent when A, AAAA and MX all say NXDOMAIN or
 * NODATA. That costs three lookups, made only when DMARC failed, the record is not the From
 * domain's own, and np= would change the policy.
 *
 * TEMPFAIL never reads as "no record": a tempfail during discovery gives temperror; one during
 * an org-domain walk or the np= test gives temperror unless the message aligned anyway.
 */
#define _DEFAULT_SOURCE /* u_char for opendmarc/dmarc.h */
#include "dmarc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>

#include <opendmarc/dmarc.h>

/* Exported by libopendmarc but not declared in its header (doc/libraries.md 4.1). */
int opendmarc_get_tld(u_char *domain, u_char *tld, size_t tld_len);

struct um_dmarc {
    struct um_dmarc_dns_ops ops;
    enum um_dmarc_method method;
};

/* ---- record parsing ------------------------------------------------------------------ */

static bool
dm_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static struct um_str
dm_trim(struct um_str s)
{
    while (s.len > 0 && dm_wsp(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && dm_wsp(s.p[s.len - 1]))
        s.len--;
    return s;
}

static enum um_dmarc_policy
dm_policy_word(struct um_str v)
{
    if (um_str_eq_ci(v, "none"))
        return UM_DMARC_POLICY_NONE;
    if (um_str_eq_ci(v, "quarantine"))
        return UM_DMARC_POLICY_QUARANTINE;
    if (um_str_eq_ci(v, "reject"))
        return UM_DMARC_POLICY_REJECT;
    return UM_DMARC_POLICY_UNSET;
}

/* A single letter value among allowed ones (case-insensitive), or 0. */
static char
dm_letter(struct um_str v, const char *allowed)
{
    char c;

    if (v.len != 1)
        return 0;
    c = (char)um_ascii_tolower((unsigned char)v.p[0]);
    return strchr(allowed, c) != NULL && c != '\0' ? c : 0;
}

/* RFC 7489 6.3: at least one URI; we only check that some entry has a scheme. */
static bool
dm_rua_valid(struct um_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] == ':' && i > 0)
            return true;
    }
    return false;
}

enum um_status
um_dmarc_record_parse(struct um_str rec, struct um_dmarc_record *out, struct um_error *err)
{
    size_t i = 0, ntags = 0;
    bool have_p = false;

    memset(out, 0, sizeof(*out));
    out->adkim = 'r';
    out->aspf = 'r';
    out->pct = 100;
    out->t = 'n';
    out->psd = 'u';
    while (i <= rec.len) {
        size_t start = i, eq;
        struct um_str tag, val;

        while (i < rec.len && rec.p[i] != ';')
            i++;
        tag = (struct um_str){rec.p + start, i - start};
        i++; /* past ';' (or the end) */
        tag = dm_trim(tag);
        if (tag.len == 0) {
            if (ntags == 0)
                return um_error_set(err, UM_EINVAL, "dmarc: record does not start with v=");
            continue;
        }
        for (eq = 0; eq < tag.len && tag.p[eq] != '='; eq++)
            ;
        if (eq == tag.len) {
            if (ntags == 0)
                return um_error_set(err, UM_EINVAL, "dmarc: record does not start with v=");
            continue; /* a malformed tag-spec is ignored like an unknown tag */
        }
        val = dm_trim((struct um_str){tag.p + eq + 1, tag.len - eq - 1});
        tag = dm_trim((struct um_str){tag.p, eq});
        if (ntags++ == 0) {
            if (!um_str_eq_ci(tag, "v") || !um_str_eq_ci(val, "DMARC1"))
                return um_error_set(err, UM_EINVAL, "dmarc: record does not start with v=DMARC1");
            continue;
        }
        if (um_str_eq_ci(tag, "p")) {
            out->p = dm_policy_word(val);
            have_p = out->p != UM_DMARC_POLICY_UNSET;
        } else if (um_str_eq_ci(tag, "sp")) {
            out->sp = dm_policy_word(val);
            out->sp_invalid = out->sp == UM_DMARC_POLICY_UNSET;
        } else if (um_str_eq_ci(tag, "np")) {
            out->np = dm_policy_word(val);
        } else if (um_str_eq_ci(tag, "adkim")) {
            char c = dm_letter(val, "rs");
            out->adkim = c != 0 ? c : 'r';
        } else if (um_str_eq_ci(tag, "aspf")) {
            char c = dm_letter(val, "rs");
            out->aspf = c != 0 ? c : 'r';
        } else if (um_str_eq_ci(tag, "pct")) {
            int n = 0;
            bool ok = val.len >= 1 && val.len <= 3;
            for (size_t k = 0; ok && k < val.len; k++) {
                ok = isdigit((unsigned char)val.p[k]) != 0;
                n = n * 10 + (val.p[k] - '0');
            }
            out->pct = ok && n <= 100 ? n : 100;
        } else if (um_str_eq_ci(tag, "t")) {
            char c = dm_letter(val, "yn");
            out->t = c != 0 ? c : 'n';
        } else if (um_str_eq_ci(tag, "psd")) {
            char c = dm_letter(val, "ynu");
            out->psd = c != 0 ? c : 'u';
        } else if (um_str_eq_ci(tag, "rua")) {
            out->has_rua = dm_rua_valid(val);
        }
    }
    if (ntags == 0)
        return um_error_set(err, UM_EINVAL, "dmarc: empty record");
    if (!have_p) {
        /* RFC 7489 6.6.3: p=none when rua= is valid, else no record (the caller decides per
         * method); RFC 9989: p=none. */
        out->p_invalid = true;
        out->p = UM_DMARC_POLICY_NONE;
    }
    return UM_OK;
}

/* ---- DNS ----------------------------------------------------------------------------- */

enum dm_look { DM_NONE, DM_FOUND, DM_TEMPFAIL };

/* Does the TXT value start with the v=DMARC1 tag (RFC 9989 4.10 step 2)? */
static bool
dm_is_dmarc(struct um_str v)
{
    size_t i = 0;

    while (i < v.len && dm_wsp(v.p[i]))
        i++;
    if (i >= v.len || (v.p[i] != 'v' && v.p[i] != 'V'))
        return false;
    i++;
    while (i < v.len && dm_wsp(v.p[i]))
        i++;
    if (i >= v.len || v.p[i] != '=')
        return false;
    i++;
    while (i < v.len && dm_wsp(v.p[i]))
        i++;
    if (v.len - i < 6 || strncasecmp(v.p + i, "DMARC1", 6) != 0)
        return false;
    i += 6;
    return i == v.len || v.p[i] == ';' || dm_wsp(v.p[i]);
}

/* The one DMARC record at _dmarc.<domain>, if any. */
static enum um_status
dm_lookup(const struct um_dmarc *dm, const char *domain, struct um_dmarc_record *rec,
          enum dm_look *look, char *why, size_t whylen, struct um_error *err)
{
    char name[UM_DMARC_DOMAIN_MAX + 8];
    struct um_dns_txt t;
    enum um_status st;
    size_t found = 0, at = 0;

    *look = DM_NONE;
    if ((size_t)snprintf(name, sizeof(name), "_dmarc.%s", domain) >= sizeof(name))
        return UM_OK; /* longer than a DNS name: nothing can be published there */
    memset(&t, 0, sizeof(t));
    st = dm->ops.txt(dm->ops.arg, name, &t, err);
    if (st == UM_EINVAL) {
        dm->ops.txt_fini(dm->ops.arg, &t);
        return UM_OK; /* not a name the resolver sends: nothing there */
    }
    if (st != UM_OK) {
        dm->ops.txt_fini(dm->ops.arg, &t);
        return st;
    }
    if (t.result == UM_DNS_TEMPFAIL) {
        *look = DM_TEMPFAIL;
        /* Truncating a long name in the reason text is fine. */
        if (snprintf(why, whylen, "%s at %s", t.reason[0] != '\0' ? t.reason : "tempfail", name)
            < 0)
            why[0] = '\0';
    } else if (t.result == UM_DNS_OK) {
        for (size_t i = 0; i < t.n; i++) {
            if (dm_is_dmarc(t.rec[i])) {
                found++;
                at = i;
            }
        }
        /* RFC 7489 6.6.3 / RFC 9989 4.10: several records count as none. */
        if (found == 1 && um_dmarc_record_parse(t.rec[at], rec, NULL) == UM_OK
            && (dm->method == UM_DMARC_METHOD_TREEWALK || !rec->p_invalid || rec->has_rua))
            *look = DM_FOUND;
        else if (found > 1)
            if (snprintf(why, whylen, "%zu DMARC records at %s", found, name) < 0)
                why[0] = '\0';
    }
    dm->ops.txt_fini(dm->ops.arg, &t);
    return UM_OK;
}

static size_t
dm_labels(const char *d)
{
    size_t n = 1;

    for (; *d != '\0'; d++)
        n += *d == '.';
    return n;
}

/* The suffix of d with n labels (n <= labels(d)). */
static const char *
dm_suffix(const char *d, size_t n)
{
    size_t have = dm_labels(d);

    while (have > n) {
        d = strchr(d, '.') + 1;
        have--;
    }
    return d;
}

struct dm_walk {
    enum dm_look look; /* of the policy record */
    struct um_dmarc_record rec;
    const char *rec_domain; /* points into the start domain */
    const char *org;        /* points into the start domain; NULL if a tempfail hid it */
    bool tempfail;
    char why[160];
};

/* RFC 9989 4.10 tree walk from d (a suffix pointer chain into d). need_org carries the walk
 * on past the policy record to settle the organizational domain. */
static enum um_status
dm_walk(const struct um_dmarc *dm, const char *d, bool need_org, struct dm_walk *w,
        struct um_error *err)
{
    size_t n = dm_labels(d), next;
    const char *shortest = NULL;
    enum um_status st;

    memset(w, 0, sizeof(*w));
    w->look = DM_NONE;
    for (const char *cur = d;;) {
        struct um_dmarc_record rec;
        enum dm_look look;
        size_t cl = dm_labels(cur);

        if ((st = dm_lookup(dm, cur, &rec, &look, w->why, sizeof(w->why), err)) != UM_OK)
            return st;
        if (look == DM_TEMPFAIL) {
            w->tempfail = true;
            if (w->look == DM_NONE)
                w->look = DM_TEMPFAIL; /* the policy is unknown */
            w->org = NULL;
            return UM_OK;
        }
        if (look == DM_FOUND) {
            if (w->look == DM_NONE) {
                w->look = DM_FOUND;
                w->rec = rec;
                w->rec_domain = cur;
            }
            if (rec.psd == 'n') {
                w->org = cur;
                return UM_OK;
            }
            if (rec.psd == 'y') {
                w->org = cl < n ? dm_suffix(d, cl + 1) : d;
                return UM_OK;
            }
            shortest = cur;
            if (!need_org)
                break;
        }
        if (cl <= 1)
            break;
        next = cl >= UM_DMARC_WALK_LABELS ? UM_DMARC_WALK_LABELS - 1 : cl - 1;
        if (cur == d && n >= UM_DMARC_WALK_LABELS)
            next = UM_DMARC_WALK_LABELS - 1;
        cur = dm_suffix(d, next);
    }
    w->org = shortest != NULL ? shortest : d;
    return UM_OK;
}

/* ---- evaluation ---------------------------------------------------------------------- */

/* Lower-cases d into out without a trailing dot; false if it is not a usable name. */
static bool
dm_norm(const char *d, char *out, size_t outlen)
{
    size_t n = d != NULL ? strlen(d) : 0;

    if (n > 0 && d[n - 1] == '.')
        n--;
    if (n == 0 || n >= outlen)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c <= 0x20 || c >= 0x7f || (c == '.' && (i == 0 || d[i - 1] == '.')))
            return false;
        out[i] = (char)um_ascii_tolower(c);
    }
    out[n] = '\0';
    return true;
}

/* Is s equal to org or a subdomain of it? */
static bool
dm_under(const char *s, const char *org)
{
    size_t sl = strlen(s), ol = strlen(org);

    if (sl < ol || strcmp(s + sl - ol, org) != 0)
        return false;
    return sl == ol || s[sl - ol - 1] == '.';
}

/* PSL organizational domain (RFC 7489 3.2) via libopendmarc, or d itself. */
static void
dm_psl_org(const char *d, char *out, size_t outlen)
{
    u_char in[UM_DMARC_DOMAIN_MAX], tld[UM_DMARC_DOMAIN_MAX];

    (void)snprintf((char *)in, sizeof(in), "%s", d);
    tld[0] = '\0';
    if (opendmarc_get_tld(in, tld, sizeof(tld)) != 0 || tld[0] == '\0' || !dm_under(d, (char *)tld))
        (void)snprintf(out, outlen, "%s", d);
    else
        (void)snprintf(out, outlen, "%s", (const char *)tld);
}

/* Organizational domain of an identifier. *unknown when a tempfail hid it. */
static enum um_status
dm_org_of(const struct um_dmarc *dm, const char *id, char *out, size_t outlen, bool *unknown,
          struct um_error *err)
{
    struct dm_walk w;
    enum um_status st;

    *unknown = false;
    if (dm->method == UM_DMARC_METHOD_PSL) {
        dm_psl_org(id, out, outlen);
        return UM_OK;
    }
    if ((st = dm_walk(dm, id, true, &w, err)) != UM_OK)
        return st;
    if (w.org == NULL) {
        *unknown = true;
        out[0] = '\0';
        return UM_OK;
    }
    (void)snprintf(out, outlen, "%s", w.org);
    return UM_OK;
}

/* One identifier against the From domain: 1 aligned, 0 not, -1 unknown (tempfail). */
static enum um_status
dm_aligned(const struct um_dmarc *dm, const char *ident, char mode, const char *from,
           const char *from_org, int *out, struct um_error *err)
{
    char id[UM_DMARC_DOMAIN_MAX], org[UM_DMARC_DOMAIN_MAX];
    bool unknown;
    enum um_status st;

    *out = 0;
    if (ident == NULL || !dm_norm(ident, id, sizeof(id)))
        return UM_OK;
    if (strcmp(id, from) == 0) {
        *out = 1;
        return UM_OK;
    }
    if (mode == 's' || from_org[0] == '\0' || !dm_under(id, from_org))
        return UM_OK; /* org(id) is a suffix of id, so it cannot equal from_org */
    if ((st = dm_org_of(dm, id, org, sizeof(org), &unknown, err)) != UM_OK)
        return st;
    *out = unknown ? -1 : strcmp(org, from_org) == 0;
    return UM_OK;
}

static enum um_dmarc_policy
dm_lower(enum um_dmarc_policy p)
{
    return p == UM_DMARC_POLICY_REJECT ? UM_DMARC_POLICY_QUARANTINE : UM_DMARC_POLICY_NONE;
}

static char
dm_policy_char(enum um_dmarc_policy p)
{
    switch (p) {
    case UM_DMARC_POLICY_NONE:
        return 'n';
    case UM_DMARC_POLICY_QUARANTINE:
        return 'q';
    case UM_DMARC_POLICY_REJECT:
        return 'r';
    default:
        return 0;
    }
}

/* RFC 9989: A, AAAA and MX all NXDOMAIN/NODATA. *tempfail when a lookup could not say. */
static enum um_status
dm_nonexistent(const struct um_dmarc *dm, const char *d, bool *nonexistent, bool *tempfail,
               struct um_error *err)
{
    static const int types[] = {UM_DNS_TYPE_A, UM_DNS_TYPE_AAAA, UM_DNS_TYPE_MX};

    *nonexistent = true;
    *tempfail = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        enum um_dns_result r = UM_DNS_TEMPFAIL;
        enum um_status st = dm->ops.rr(dm->ops.arg, d, types[i], &r, err);
        if (st == UM_EINVAL)
            return UM_OK; /* not sendable: counts as non-existent */
        if (st != UM_OK)
            return st;
        if (r == UM_DNS_OK) {
            *nonexistent = false;
            return UM_OK;
        }
        if (r == UM_DNS_NXDOMAIN)
            return UM_OK; /* the name does not exist at all */
        if (r == UM_DNS_TEMPFAIL)
            *tempfail = true;
    }
    if (*tempfail)
        *nonexistent = false;
    return UM_OK;
}

static void
dm_copy_tags(struct um_dmarc_res *res, const struct um_dmarc_record *rec)
{
    res->p = dm_policy_char(rec->p);
    res->sp = dm_policy_char(rec->sp);
    res->np = dm_policy_char(rec->np);
    res->adkim = rec->adkim;
    res->aspf = rec->aspf;
    res->pct = rec->pct;
    res->t = rec->t;
    res->psd_tag = rec->psd == 'u' ? 0 : rec->psd;
    res->has_rua = rec->has_rua;
}

/* Policy discovery into res; *rec the record. Returns with res->result TEMPERROR/NONE when
 * no record applies. */
static enum um_status
dm_discover(const struct um_dmarc *dm, struct um_dmarc_res *res, struct um_dmarc_record *rec,
            bool *org_unknown, struct um_error *err)
{
    const char *from = res->from_domain;
    enum um_status st;

    *org_unknown = false;
    if (dm->method == UM_DMARC_METHOD_TREEWALK) {
        struct dm_walk w;
        if ((st = dm_walk(dm, from, true, &w, err)) != UM_OK)
            return st;
        if (w.look == DM_TEMPFAIL) {
            res->result = UM_DMARC_RESULT_TEMPERROR;
            (void)snprintf(res->reason, sizeof(res->reason), "policy lookup: %s", w.why);
            return UM_OK;
        }
        if (w.look == DM_NONE) {
            res->result = UM_DMARC_RESULT_NONE;
            (void)snprintf(res->reason, sizeof(res->reason), "no policy record%s%s",
                           w.why[0] != '\0' ? ": " : "", w.why);
            (void)snprintf(res->org_domain, sizeof(res->org_domain), "%s", from);
            return UM_OK;
        }
        *rec = w.rec;
        (void)snprintf(res->policy_domain, sizeof(res->policy_domain), "%s", w.rec_domain);
        if (w.org != NULL)
            (void)snprintf(res->org_domain, sizeof(res->org_domain), "%s", w.org);
        else
            *org_unknown = true;
        res->psd = w.rec.psd == 'y';
        return UM_OK;
    }
    /* RFC 7489 6.6.3: the From domain, then its PSL organizational domain. */
    {
        enum dm_look look;
        char why[160] = "";
        dm_psl_org(from, res->org_domain, sizeof(res->org_domain));
        if ((st = dm_lookup(dm, from, rec, &look, why, sizeof(why), err)) != UM_OK)
            return st;
        if (look == DM_FOUND) {
            (void)snprintf(res->policy_domain, sizeof(res->policy_domain), "%s", from);
        } else if (look == DM_NONE && strcmp(res->org_domain, from) != 0) {
            if ((st = dm_lookup(dm, res->org_domain, rec, &look, why, sizeof(why), err)) != UM_OK)
                return st;
            if (look == DM_FOUND)
                (void)snprintf(res->policy_domain, sizeof(res->policy_domain), "%s",
                               res->org_domain);
        }
        if (look == DM_FOUND && rec->sp_invalid) {
            /* RFC 7489 6.6.3: an invalid sp= is like an invalid p=. */
            if (!rec->has_rua) {
                look = DM_NONE;
                (void)snprintf(why, sizeof(why), "invalid sp= and no rua=");
            } else {
                rec->p = UM_DMARC_POLICY_NONE;
                rec->sp = UM_DMARC_POLICY_UNSET;
            }
        }
        if (look != DM_FOUND) {
            res->policy_domain[0] = '\0';
            res->result = look == DM_TEMPFAIL ? UM_DMARC_RESULT_TEMPERROR : UM_DMARC_RESULT_NONE;
            (void)snprintf(res->reason, sizeof(res->reason), "%s%s%s",
                           look == DM_TEMPFAIL ? "policy lookup: " : "no policy record",
                           look != DM_TEMPFAIL && why[0] != '\0' ? ": " : "", why);
            return UM_OK;
        }
        return UM_OK;
    }
}

/* Which policy applies (p/sp/np) and, for np, whether the From domain exists. */
static enum um_status
dm_choose_policy(const struct um_dmarc *dm, const struct um_dmarc_record *rec,
                 struct um_dmarc_res *res, bool *tempfail, struct um_error *err)
{
    enum um_dmarc_policy sp = rec->sp != UM_DMARC_POLICY_UNSET ? rec->sp : rec->p;

    *tempfail = false;
    if (strcmp(res->policy_domain, res->from_domain) == 0) {
        res->policy = rec->p;
        res->policy_tag = UM_DMARC_TAG_P;
        return UM_OK;
    }
    res->policy = sp;
    res->policy_tag = rec->sp != UM_DMARC_POLICY_UNSET ? UM_DMARC_TAG_SP : UM_DMARC_TAG_P;
    if (dm->method == UM_DMARC_METHOD_TREEWALK && rec->np != UM_DMARC_POLICY_UNSET && rec->np != sp
        && res->result == UM_DMARC_RESULT_FAIL) {
        bool nx;
        enum um_status st = dm_nonexistent(dm, res->from_domain, &nx, tempfail, err);
        if (st != UM_OK)
            return st;
        if (nx) {
            res->nonexistent = true;
            res->policy = rec->np;
            res->policy_tag = UM_DMARC_TAG_NP;
        }
    }
    return UM_OK;
}

enum um_status
um_dmarc_check(const struct um_dmarc *dm, const struct um_dmarc_input *in, struct um_dmarc_res *res,
               struct um_error *err)
{
    struct um_dmarc_record rec;
    enum um_status st;
    bool org_unknown = false, np_tempfail = false, unknown = false;
    int a;

    memset(res, 0, sizeof(*res));
    memset(&rec, 0, sizeof(rec));
    if (dm == NULL || in == NULL || in->from_domain == NULL)
        return um_error_set(err, UM_EINVAL, "dmarc: no From domain");
    if (!dm_norm(in->from_domain, res->from_domain, sizeof(res->from_domain))) {
        res->result = UM_DMARC_RESULT_NONE;
        (void)snprintf(res->reason, sizeof(res->reason), "From domain is not a DNS name");
        return UM_OK;
    }
    if ((st = dm_discover(dm, res, &rec, &org_unknown, err)) != UM_OK)
        return st;
    if (res->policy_domain[0] == '\0')
        return UM_OK; /* NONE or TEMPERROR, reason set */
    dm_copy_tags(res, &rec);
    /* Alignment (RFC 9989 4.4): DKIM first, any passing signature. */
    for (size_t i = 0; i < in->ndkim && i < UM_DMARC_MAX_DKIM && !res->dkim_aligned; i++) {
        if (!in->dkim[i].pass)
            continue;
        if ((st = dm_aligned(dm, in->dkim[i].domain, rec.adkim, res->from_domain, res->org_domain,
                             &a, err))
            != UM_OK)
            return st;
        if (a == 1) {
            res->dkim_aligned = true;
            (void)dm_norm(in->dkim[i].domain, res->dkim_domain, sizeof(res->dkim_domain));
        }
        unknown |= a < 0;
    }
    if (in->spf_pass) {
        if ((st = dm_aligned(dm, in->spf_domain, rec.aspf, res->from_domain, res->org_domain, &a,
                             err))
            != UM_OK)
            return st;
        res->spf_aligned = a == 1;
        unknown |= a < 0;
    }
    if (res->dkim_aligned || res->spf_aligned) {
        res->result = UM_DMARC_RESULT_PASS;
        res->disposition = UM_DMARC_POLICY_NONE;
        (void)snprintf(res->reason, sizeof(res->reason), "aligned %s%s%s",
                       res->dkim_aligned ? "dkim d=" : "spf ",
                       res->dkim_aligned ? res->dkim_domain : "",
                       res->dkim_aligned ? "" : (in->spf_helo ? "helo" : "mailfrom"));
    } else {
        res->result = UM_DMARC_RESULT_FAIL;
    }
    if ((st = dm_choose_policy(dm, &rec, res, &np_tempfail, err)) != UM_OK)
        return st;
    if (res->result == UM_DMARC_RESULT_PASS)
        return UM_OK;
    if (org_unknown || unknown || np_tempfail) {
        res->result = UM_DMARC_RESULT_TEMPERROR;
        (void)snprintf(res->reason, sizeof(res->reason), "%s",
                       np_tempfail ? "np=: existence check failed temporarily"
                                   : "organizational domain lookup failed temporarily");
        return UM_OK;
    }
    res->disposition = res->policy;
    if (dm->method == UM_DMARC_METHOD_TREEWALK && rec.t == 'y') {
        res->testing = true; /* RFC 9989 t=y: apply the next less strict policy */
        res->disposition = dm_lower(res->policy);
    } else if (dm->method == UM_DMARC_METHOD_PSL && in->pct_roll >= (unsigned)rec.pct) {
        res->sampled_out = true; /* RFC 7489 6.6.4 */
        res->disposition = dm_lower(res->policy);
    }
    (void)snprintf(res->reason, sizeof(res->reason), "not aligned (dkim %s, spf %s)",
                   in->ndkim == 0 ? "none" : "unaligned or failed",
                   !in->spf_pass ? "not pass" : "unaligned");
    return UM_OK;
}

/* ---- construction -------------------------------------------------------------------- */

static enum um_status
dm_dns_txt(void *arg, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    return um_dns_txt(arg, name, res, err);
}

static void
dm_dns_txt_fini(void *arg, struct um_dns_txt *res)
{
    (void)arg;
    um_dns_txt_fini(res);
}

static enum um_status
dm_dns_rr(void *arg, const char *name, int qtype, enum um_dns_result *result, struct um_error *err)
{
    struct um_dns_answer *a = NULL;
    enum um_status st = um_dns_query(arg, name, qtype, &a, err);

    if (st != UM_OK)
        return st;
    *result = a->result;
    um_dns_answer_free(a);
    return UM_OK;
}

enum um_status
um_dmarc_new_with_dns(const struct um_dmarc_dns_ops *ops, const struct um_dmarc_opts *opts,
                      struct um_dmarc **out, struct um_error *err)
{
    static const struct um_dmarc_opts defaults = {0};
    struct um_dmarc *dm;

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (ops == NULL || ops->txt == NULL || ops->txt_fini == NULL || ops->rr == NULL)
        return um_error_set(err, UM_EINVAL, "dmarc: incomplete DNS operations");
    if (opts->method != UM_DMARC_METHOD_TREEWALK && opts->method != UM_DMARC_METHOD_PSL)
        return um_error_set(err, UM_EINVAL, "dmarc: unknown method %d", (int)opts->method);
    if (opts->method == UM_DMARC_METHOD_PSL) {
        /* XXX libopendmarc keeps the PSL in a process-global table: one list per process;
         * a reload with another path replaces it for every snapshot. */
        OPENDMARC_LIB_T lib;
        const char *path = opts->psl_path != NULL ? opts->psl_path : UM_DMARC_PSL_DEFAULT;
        int rc;
        memset(&lib, 0, sizeof(lib));
        lib.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
        if (strlen(path) >= sizeof(lib.tld_source_file))
            return um_error_set(err, UM_EINVAL, "dmarc: public suffix list path too long");
        memcpy(lib.tld_source_file, path, strlen(path) + 1);
        rc = opendmarc_policy_library_init(&lib);
        if (rc != 0) {
            char eb[96];
            return um_error_set(err, UM_EIO, "dmarc: public suffix list %s: %s", path,
                                um_strerror(rc, eb, sizeof(eb)));
        }
    }
    dm = calloc(1, sizeof(*dm));
    if (dm == NULL)
        return um_error_set(err, UM_ENOMEM, "dmarc: out of memory");
    dm->ops = *ops;
    dm->method = opts->method;
    *out = dm;
    return UM_OK;
}

enum um_status
um_dmarc_new(struct um_dns *dns, const struct um_dmarc_opts *opts, struct um_dmarc **out,
             struct um_error *err)
{
    struct um_dmarc_dns_ops ops = {dm_dns_txt, dm_dns_txt_fini, dm_dns_rr, dns};

    if (dns == NULL) {
        *out = NULL;
        return um_error_set(err, UM_EINVAL, "dmarc: no resolver");
    }
    return um_dmarc_new_with_dns(&ops, opts, out, err);
}

void
um_dmarc_free(struct um_dmarc *dm)
{
    free(dm);
}

const char *
um_dmarc_result_name(enum um_dmarc_result r)
{
    switch (r) {
    case UM_DMARC_RESULT_NONE:
        return "none";
    case UM_DMARC_RESULT_PASS:
        return "pass";
    case UM_DMARC_RESULT_FAIL:
        return "fail";
    case UM_DMARC_RESULT_TEMPERROR:
        return "temperror";
    case UM_DMARC_RESULT_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

const char *
um_dmarc_policy_name(enum um_dmarc_policy p)
{
    switch (p) {
    case UM_DMARC_POLICY_NONE:
        return "none";
    case UM_DMARC_POLICY_QUARANTINE:
        return "quarantine";
    case UM_DMARC_POLICY_REJECT:
        return "reject";
    default:
        return "";
    }
}
