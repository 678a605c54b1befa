/*
 * test_dmarc - DMARC discovery, alignment and disposition over an in-memory zone
 *
 * The zone sits behind the module's DNS seam (struct um_dmarc_dns_ops): TXT answers, A/AAAA/MX
 * existence for np=, and SERVFAIL names. Rows are RFC 9989 tree-walk cases first, then the
 * RFC 7489 PSL method (Debian's public suffix list), then the Mail::DMARC mock zone in
 * shared/conformance/dmarc-mail-dmarc (its comments state the intended outcomes).
 */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "dmarc.h"

#define CONF UM_SOURCE_DIR "/../shared/conformance"

/* ---- fake zone: "name TYPE data" ----------------------------------------------------- */

struct zrr {
    char name[256];
    char type[16]; /* TXT, A, AAAA, MX, SERVFAIL */
    char data[512];
};

struct zone {
    struct zrr rr[96];
    size_t n;
    unsigned queries;
};

static void
zone_add(struct zone *z, const char *name, const char *type, const char *data)
{
    struct zrr *r;
    size_t nl = strlen(name);

    assert_true(z->n < sizeof(z->rr) / sizeof(z->rr[0]));
    r = &z->rr[z->n++];
    if (nl > 0 && name[nl - 1] == '.')
        nl--;
    assert_true(nl < sizeof(r->name));
    memcpy(r->name, name, nl);
    r->name[nl] = '\0';
    snprintf(r->type, sizeof(r->type), "%s", type);
    snprintf(r->data, sizeof(r->data), "%s", data != NULL ? data : "");
}

/* Lines "name TYPE data" (data to end of line). */
static void
zone_lines(struct zone *z, const char *const *lines)
{
    for (size_t i = 0; lines != NULL && lines[i] != NULL; i++) {
        char name[256], type[16];
        int off = 0;
        if (sscanf(lines[i], "%255s %15s %n", name, type, &off) < 2)
            fail_msg("bad zone line %s", lines[i]);
        zone_add(z, name, type, lines[i] + off);
    }
}

static bool
zone_name_exists(const struct zone *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++) {
        if (strcasecmp(z->rr[i].name, name) == 0)
            return true;
    }
    return false;
}

static bool
zone_servfail(const struct zone *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++) {
        if (strcasecmp(z->rr[i].name, name) == 0 && strcmp(z->rr[i].type, "SERVFAIL") == 0)
            return true;
    }
    return false;
}

static enum um_status
zone_txt(void *arg, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    struct zone *z = arg;

    (void)err;
    memset(res, 0, sizeof(*res));
    z->queries++;
    if (zone_servfail(z, name)) {
        res->result = UM_DNS_TEMPFAIL;
        res->rcode = 2;
        snprintf(res->reason, sizeof(res->reason), "rcode SERVFAIL");
        return UM_OK;
    }
    res->rec = calloc(8, sizeof(*res->rec));
    assert_non_null(res->rec);
    for (size_t i = 0; i < z->n; i++) {
        if (strcasecmp(z->rr[i].name, name) == 0 && strcmp(z->rr[i].type, "TXT") == 0) {
            assert_true(res->n < 8);
            res->rec[res->n].p = z->rr[i].data;
            res->rec[res->n++].len = strlen(z->rr[i].data);
        }
    }
    res->result = res->n > 0                  ? UM_DNS_OK
                  : zone_name_exists(z, name) ? UM_DNS_NODATA
                                              : UM_DNS_NXDOMAIN;
    return UM_OK;
}

static void
zone_txt_fini(void *arg, struct um_dns_txt *res)
{
    (void)arg;
    free(res->rec);
    res->rec = NULL;
    res->n = 0;
}

static enum um_status
zone_rr(void *arg, const char *name, int qtype, enum um_dns_result *result, struct um_error *err)
{
    struct zone *z = arg;
    const char *t = qtype == UM_DNS_TYPE_A      ? "A"
                    : qtype == UM_DNS_TYPE_AAAA ? "AAAA"
                    : qtype == UM_DNS_TYPE_MX   ? "MX"
                                                : "?";

    (void)err;
    z->queries++;
    if (zone_servfail(z, name)) {
        *result = UM_DNS_TEMPFAIL;
        return UM_OK;
    }
    for (size_t i = 0; i < z->n; i++) {
        if (strcasecmp(z->rr[i].name, name) == 0 && strcmp(z->rr[i].type, t) == 0) {
            *result = UM_DNS_OK;
            return UM_OK;
        }
    }
    *result = zone_name_exists(z, name) ? UM_DNS_NODATA : UM_DNS_NXDOMAIN;
    return UM_OK;
}

static struct um_dmarc *
new_dmarc(struct zone *z, enum um_dmarc_method m)
{
    struct um_dmarc_dns_ops ops = {zone_txt, zone_txt_fini, zone_rr, z};
    struct um_dmarc_opts o = {m, NULL};
    struct um_dmarc *dm = NULL;
    struct um_error err = {0};

    if (um_dmarc_new_with_dns(&ops, &o, &dm, &err) != UM_OK)
        fail_msg("new: %s", err.msg);
    return dm;
}

/* ---- table --------------------------------------------------------------------------- */

#define TW      UM_DMARC_METHOD_TREEWALK
#define PSL     UM_DMARC_METHOD_PSL
#define R_NONE  UM_DMARC_RESULT_NONE
#define R_PASS  UM_DMARC_RESULT_PASS
#define R_FAIL  UM_DMARC_RESULT_FAIL
#define R_TEMP  UM_DMARC_RESULT_TEMPERROR
#define P_UNSET UM_DMARC_POLICY_UNSET
#define P_NONE  UM_DMARC_POLICY_NONE
#define P_QUAR  UM_DMARC_POLICY_QUARANTINE
#define P_REJ   UM_DMARC_POLICY_REJECT

static const char *const base_zone[] = {
    "_dmarc.rel.test TXT v=DMARC1; p=reject",
    "a.rel.test A 192.0.2.1",
    "_dmarc.strict.test TXT v=DMARC1; p=reject; adkim=s; aspf=s",
    "_dmarc.sp.test TXT v=DMARC1; p=reject; sp=quarantine",
    "sub.sp.test A 192.0.2.1",
    "_dmarc.np.test TXT v=DMARC1; p=none; sp=quarantine; np=reject",
    "real.np.test MX 10 mx.np.test",
    "_dmarc.psd.test TXT v=DMARC1; p=reject; psd=y",
    "_dmarc.example.com TXT v=DMARC1; p=quarantine",
    "_dmarc.multi.test TXT v=DMARC1; p=reject",
    "_dmarc.multi.test TXT v=DMARC1; p=none",
    "_dmarc.multi.test TXT v=spf1 -all",
    "_dmarc.sf.test SERVFAIL",
    "_dmarc.rf.test TXT v=DMARC1; p=reject; rf=iodef; ruf=mailto:f@rf.test",
    "sub.rf.test A 192.0.2.1",
    "_dmarc.ttest.test TXT v=DMARC1; p=reject; t=y",
    "_dmarc.pctzero.co.uk TXT v=DMARC1; p=reject; pct=0",
    "_dmarc.pcthalf.co.uk TXT v=DMARC1; p=reject; pct=50",
    "_dmarc.example.co.uk TXT v=DMARC1; p=reject; sp=none",
    "_dmarc.npuk.co.uk TXT v=DMARC1; p=none; sp=quarantine; np=reject",
    "_dmarc.nop.test TXT v=DMARC1; sp=reject",
    "_dmarc.noprua.test TXT v=DMARC1; rua=mailto:r@noprua.test",
    "_dmarc.orgsf.test TXT v=DMARC1; p=reject",
    "_dmarc.x.orgsf.test SERVFAIL",
    "_dmarc.npsf.test TXT v=DMARC1; p=none; np=reject",
    "ghost.npsf.test SERVFAIL",
    NULL,
};

struct dcase {
    const char *name;
    enum um_dmarc_method method;
    const char *from;
    const char *dkim_d; /* one signature, NULL = none */
    bool dkim_pass;
    const char *spf_d;
    bool spf_pass, spf_helo;
    unsigned roll;
    enum um_dmarc_result want;
    enum um_dmarc_policy want_policy, want_disp;
    enum um_dmarc_policy_tag want_tag;
    const char *want_policy_domain, *want_org;
};

static const struct dcase cases[] = {
    /* alignment */
    {"dkim relaxed: sibling d= same org", TW, "a.rel.test", "b.rel.test", true, NULL, false, false,
     0, R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, "rel.test", "rel.test"},
    {"dkim relaxed: d= fails -> no alignment", TW, "rel.test", "rel.test", false, NULL, false,
     false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P, "rel.test", "rel.test"},
    {"dkim strict: parent d= fails (opendmarc passed it)", TW, "strict.test", "mail.strict.test",
     true, NULL, false, false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P, "strict.test",
     "strict.test"},
    {"dkim strict: exact d= passes", TW, "strict.test", "STRICT.test.", true, NULL, false, false, 0,
     R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, "strict.test", NULL},
    {"spf relaxed: bounce subdomain", TW, "rel.test", NULL, false, "bounce.rel.test", true, false,
     0, R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, "rel.test", NULL},
    {"spf strict: bounce subdomain fails", TW, "strict.test", NULL, false, "bounce.strict.test",
     true, false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P, "strict.test", NULL},
    {"spf strict: exact passes", TW, "strict.test", NULL, false, "strict.test", true, false, 0,
     R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, NULL, NULL},
    {"spf not pass never aligns", TW, "rel.test", NULL, false, "rel.test", false, false, 0, R_FAIL,
     P_REJ, P_REJ, UM_DMARC_TAG_P, NULL, NULL},
    {"spf helo identity relaxed", TW, "rel.test", NULL, false, "mx.rel.test", true, true, 0, R_PASS,
     P_REJ, P_NONE, UM_DMARC_TAG_P, NULL, NULL},
    {"unrelated d= and spf", TW, "rel.test", "evil.test", true, "evil.test", true, false, 0, R_FAIL,
     P_REJ, P_REJ, UM_DMARC_TAG_P, NULL, NULL},
    {"rf=iodef keeps aspf relaxed", TW, "sub.rf.test", NULL, false, "rf.test", true, false, 0,
     R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, "rf.test", "rf.test"},
    /* policy selection */
    {"sub-domain From: sp=", TW, "sub.sp.test", NULL, false, NULL, false, false, 0, R_FAIL, P_QUAR,
     P_QUAR, UM_DMARC_TAG_SP, "sp.test", "sp.test"},
    {"np= for a non-existent subdomain", TW, "ghost.np.test", NULL, false, NULL, false, false, 0,
     R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_NP, "np.test", "np.test"},
    {"np= not for an existing subdomain", TW, "real.np.test", NULL, false, NULL, false, false, 0,
     R_FAIL, P_QUAR, P_QUAR, UM_DMARC_TAG_SP, "np.test", NULL},
    {"np= check SERVFAIL -> temperror", TW, "ghost.npsf.test", NULL, false, NULL, false, false, 0,
     R_TEMP, P_NONE, P_UNSET, UM_DMARC_TAG_P, "npsf.test", NULL},
    {"psd=y: org is the child of the PSD", TW, "a.b.psd.test", "x.b.psd.test", true, NULL, false,
     false, 0, R_PASS, P_REJ, P_NONE, UM_DMARC_TAG_P, "psd.test", "b.psd.test"},
    {"psd=y: sibling under the PSD is not aligned", TW, "a.b.psd.test", "other.psd.test", true,
     NULL, false, false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P, "psd.test", "b.psd.test"},
    {"tree walk from a.b.c.example.com", TW, "a.b.c.example.com", NULL, false, NULL, false, false,
     0, R_FAIL, P_QUAR, P_QUAR, UM_DMARC_TAG_P, "example.com", "example.com"},
    {"tree walk from 11 labels (7-label jump)", TW, "l1.l2.l3.l4.l5.l6.l7.l8.l9.example.com",
     "example.com", true, NULL, false, false, 0, R_PASS, P_QUAR, P_NONE, UM_DMARC_TAG_P,
     "example.com", "example.com"},
    {"multiple records -> none", TW, "multi.test", NULL, false, NULL, false, false, 0, R_NONE,
     P_UNSET, P_UNSET, UM_DMARC_TAG_NONE, "", NULL},
    {"SERVFAIL -> temperror", TW, "sf.test", NULL, false, NULL, false, false, 0, R_TEMP, P_UNSET,
     P_UNSET, UM_DMARC_TAG_NONE, "", NULL},
    {"org walk SERVFAIL, unaligned -> temperror", TW, "orgsf.test", "x.orgsf.test", true, NULL,
     false, false, 0, R_TEMP, P_REJ, P_UNSET, UM_DMARC_TAG_P, "orgsf.test", NULL},
    {"no record anywhere -> none", TW, "nothing.invalid", NULL, false, NULL, false, false, 0,
     R_NONE, P_UNSET, P_UNSET, UM_DMARC_TAG_NONE, "", "nothing.invalid"},
    {"t=y: reject applied as quarantine", TW, "ttest.test", NULL, false, NULL, false, false, 0,
     R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_P, "ttest.test", NULL},
    {"pct ignored under RFC 9989", TW, "pctzero.co.uk", NULL, false, NULL, false, false, 0, R_FAIL,
     P_REJ, P_REJ, UM_DMARC_TAG_P, NULL, NULL},
    {"no p= under RFC 9989 -> none", TW, "nop.test", NULL, false, NULL, false, false, 0, R_FAIL,
     P_NONE, P_NONE, UM_DMARC_TAG_P, "nop.test", NULL},
    /* RFC 7489 PSL method */
    {"7489: pct=0 samples out: reject -> quarantine", PSL, "pctzero.co.uk", NULL, false, NULL,
     false, false, 0, R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_P, "pctzero.co.uk", "pctzero.co.uk"},
    {"7489: pct=50 roll 49 applies", PSL, "pcthalf.co.uk", NULL, false, NULL, false, false, 49,
     R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P, NULL, NULL},
    {"7489: pct=50 roll 50 samples out", PSL, "pcthalf.co.uk", NULL, false, NULL, false, false, 50,
     R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_P, NULL, NULL},
    {"7489: t=y ignored", PSL, "ttest.test", NULL, false, NULL, false, false, 0, R_FAIL, P_REJ,
     P_REJ, UM_DMARC_TAG_P, NULL, NULL},
    {"7489: org fallback and sp=", PSL, "a.b.example.co.uk", NULL, false, NULL, false, false, 0,
     R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_SP, "example.co.uk", "example.co.uk"},
    {"7489: relaxed via PSL", PSL, "a.example.co.uk", "b.example.co.uk", true, NULL, false, false,
     0, R_PASS, P_NONE, P_NONE, UM_DMARC_TAG_SP, "example.co.uk", "example.co.uk"},
    {"7489: np= ignored", PSL, "ghost.npuk.co.uk", NULL, false, NULL, false, false, 0, R_FAIL,
     P_QUAR, P_QUAR, UM_DMARC_TAG_SP, "npuk.co.uk", "npuk.co.uk"},
    {"7489: no p= and no rua -> none", PSL, "nop.test", NULL, false, NULL, false, false, 0, R_NONE,
     P_UNSET, P_UNSET, UM_DMARC_TAG_NONE, "", NULL},
    {"7489: no p= with rua -> p=none", PSL, "noprua.test", NULL, false, NULL, false, false, 0,
     R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_P, "noprua.test", NULL},
    {"7489: SERVFAIL not hidden by org fallback", PSL, "sf.test", NULL, false, NULL, false, false,
     0, R_TEMP, P_UNSET, P_UNSET, UM_DMARC_TAG_NONE, "", NULL},
};

static void
run_case(struct um_dmarc *dm, const struct dcase *c)
{
    struct um_dmarc_dkim dk = {c->dkim_d, "s1", c->dkim_pass};
    struct um_dmarc_input in = {c->from,
                                c->spf_d,
                                c->spf_pass,
                                c->spf_helo,
                                c->dkim_d != NULL ? &dk : NULL,
                                c->dkim_d != NULL ? 1 : 0,
                                c->roll};
    struct um_dmarc_res res;
    struct um_error err = {0};

    if (um_dmarc_check(dm, &in, &res, &err) != UM_OK)
        fail_msg("%s: check failed: %s", c->name, err.msg);
    if (res.result != c->want)
        fail_msg("%s: got %s (%s), want %s", c->name, um_dmarc_result_name(res.result), res.reason,
                 um_dmarc_result_name(c->want));
    if (res.policy != c->want_policy)
        fail_msg("%s: got policy %s, want %s", c->name, um_dmarc_policy_name(res.policy),
                 um_dmarc_policy_name(c->want_policy));
    if (res.disposition != c->want_disp)
        fail_msg("%s: got disposition %s, want %s", c->name, um_dmarc_policy_name(res.disposition),
                 um_dmarc_policy_name(c->want_disp));
    if (res.policy_tag != c->want_tag)
        fail_msg("%s: got policy tag %d, want %d", c->name, res.policy_tag, c->want_tag);
    if (c->want_policy_domain != NULL && strcmp(res.policy_domain, c->want_policy_domain) != 0)
        fail_msg("%s: got policy domain '%s', want '%s'", c->name, res.policy_domain,
                 c->want_policy_domain);
    if (c->want_org != NULL && strcmp(res.org_domain, c->want_org) != 0)
        fail_msg("%s: got org domain '%s', want '%s'", c->name, res.org_domain, c->want_org);
}

static void
test_dmarc_table(void **state)
{
    struct zone z = {0};
    struct um_dmarc *tw, *psl;

    (void)state;
    zone_lines(&z, base_zone);
    tw = new_dmarc(&z, TW);
    psl = new_dmarc(&z, PSL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        run_case(cases[i].method == PSL ? psl : tw, &cases[i]);
    print_message("dmarc table: %zu rows\n", sizeof(cases) / sizeof(cases[0]));
    um_dmarc_free(tw);
    um_dmarc_free(psl);
}

/* rf=iodef: the tag value must not change adkim/aspf (libopendmarc's bug). */
static void
test_dmarc_record_parse(void **state)
{
    static const struct {
        const char *rec;
        enum um_status st;
        enum um_dmarc_policy p, sp, np;
        char adkim, aspf, t, psd;
        int pct;
    } rows[] = {
        {"v=DMARC1; p=reject; rf=iodef", UM_OK, P_REJ, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
        {"v=DMARC1;p=quarantine;sp=none;np=reject;adkim=s;aspf=s;pct=20;t=y;psd=n", UM_OK, P_QUAR,
         P_NONE, P_REJ, 's', 's', 'y', 'n', 20},
        {"  V = dmarc1 ; P = Reject ; ", UM_OK, P_REJ, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
        {"v=DMARC1; p=reject; pct=101; adkim=x; t=maybe", UM_OK, P_REJ, P_UNSET, P_UNSET, 'r', 'r',
         'n', 'u', 100},
        {"p=reject; v=DMARC1", UM_EINVAL, P_UNSET, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
        {"v=DMARC2; p=reject", UM_EINVAL, P_UNSET, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
        {"", UM_EINVAL, P_UNSET, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
        {"v=DMARC1; p=bogus", UM_OK, P_NONE, P_UNSET, P_UNSET, 'r', 'r', 'n', 'u', 100},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct um_dmarc_record r;
        enum um_status st =
            um_dmarc_record_parse((struct um_str){rows[i].rec, strlen(rows[i].rec)}, &r, NULL);
        if (st != rows[i].st)
            fail_msg("'%s': got %s, want %s", rows[i].rec, um_status_name(st),
                     um_status_name(rows[i].st));
        if (st != UM_OK)
            continue;
        if (r.p != rows[i].p || r.sp != rows[i].sp || r.np != rows[i].np || r.adkim != rows[i].adkim
            || r.aspf != rows[i].aspf || r.t != rows[i].t || r.psd != rows[i].psd
            || r.pct != rows[i].pct)
            fail_msg("'%s': got p=%d sp=%d np=%d adkim=%c aspf=%c t=%c psd=%c pct=%d", rows[i].rec,
                     r.p, r.sp, r.np, r.adkim, r.aspf, r.t, r.psd, r.pct);
    }
}

/* Mail::DMARC's mock zone (RFC 9989 fixtures), loaded as is. */
static void
load_mock_zone(struct zone *z)
{
    FILE *f = fopen(CONF "/dmarc-mail-dmarc/t-04.PurePerl.mock-zone.txt", "r");
    char line[1024];

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        char name[256], type[16], data[768];
        int off = 0;
        char *q;
        if (line[0] == ';' || sscanf(line, "%255s %*d %15s %n", name, type, &off) < 2)
            continue;
        snprintf(data, sizeof(data), "%s", line + off);
        data[strcspn(data, "\r\n")] = '\0';
        if (data[0] == '"') { /* one quoted string */
            memmove(data, data + 1, strlen(data));
            if ((q = strrchr(data, '"')) != NULL)
                *q = '\0';
        }
        zone_add(z, name, type, data);
    }
    fclose(f);
}

static void
test_dmarc_mail_dmarc_zone(void **state)
{
    static const struct dcase rows[] = {
        {"anchor psd=n: org is the anchor", TW, "sub.anchor.dmarctest.net", NULL, false, NULL,
         false, false, 0, R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_P, "anchor.dmarctest.net",
         "anchor.dmarctest.net"},
        {"psd=y: deep author, org is the PSD's child", TW, "deep.sub.psd.dmarctest.net",
         "sub.psd.dmarctest.net", true, NULL, false, false, 0, R_PASS, P_NONE, P_NONE,
         UM_DMARC_TAG_P, "psd.dmarctest.net", "sub.psd.dmarctest.net"},
        {"t=y: reject downgraded to quarantine", TW, "ttest.dmarctest.net", NULL, false, NULL,
         false, false, 0, R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_P, "ttest.dmarctest.net", NULL},
        {"np=reject: ghost subdomain", TW, "ghost.np.dmarctest.net", NULL, false, NULL, false,
         false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_NP, "np.dmarctest.net", "np.dmarctest.net"},
        {"np=reject: existing subdomain gets p", TW, "real.np.dmarctest.net", NULL, false, NULL,
         false, false, 0, R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_P, "np.dmarctest.net", NULL},
        {"np=reject: TXT-only name is non-existent", TW, "txtonly.np.dmarctest.net", NULL, false,
         NULL, false, false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_NP, "np.dmarctest.net", NULL},
        {"no np, sp=quarantine: ghost gets sp", TW, "ghost.npnosp.dmarctest.net", NULL, false, NULL,
         false, false, 0, R_FAIL, P_QUAR, P_QUAR, UM_DMARC_TAG_SP, "npnosp.dmarctest.net", NULL},
        {"np=none: ghost not enforced", TW, "ghost.npnone.dmarctest.net", NULL, false, NULL, false,
         false, 0, R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_NP, "npnone.dmarctest.net", NULL},
        {"np=reject + t=y: quarantine", TW, "ghost.npttest2.dmarctest.net", NULL, false, NULL,
         false, false, 0, R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_NP, "npttest2.dmarctest.net", NULL},
        {"example.com psd=n anchors subdomains", TW, "x.y.example.com", "example.com", true, NULL,
         false, false, 0, R_PASS, P_NONE, P_NONE, UM_DMARC_TAG_P, "example.com", "example.com"},
        {"invalid sp= under 9989 falls back to p", TW, "invalid-sp-and-without-rua.example.com",
         NULL, false, NULL, false, false, 0, R_FAIL, P_REJ, P_REJ, UM_DMARC_TAG_P,
         "invalid-sp-and-without-rua.example.com", NULL},
        {"7489: invalid sp=, no rua: no DMARC processing (6.6.3)", PSL,
         "invalid-sp-and-without-rua.example.com", NULL, false, NULL, false, false, 0, R_NONE,
         P_UNSET, P_UNSET, UM_DMARC_TAG_NONE, "", "example.com"},
        {"7489: invalid sp= with rua: p=none", PSL, "invalid-sp-and-with-rua.example.com", NULL,
         false, NULL, false, false, 0, R_FAIL, P_NONE, P_NONE, UM_DMARC_TAG_P,
         "invalid-sp-and-with-rua.example.com", NULL},
        {"7489: pct=90 roll 95 samples out", PSL, "mail-dmarc.tnpi.net", NULL, false, NULL, false,
         false, 95, R_FAIL, P_REJ, P_QUAR, UM_DMARC_TAG_P, "mail-dmarc.tnpi.net", "tnpi.net"},
    };
    struct zone z = {0};
    struct um_dmarc *tw, *psl;

    (void)state;
    load_mock_zone(&z);
    tw = new_dmarc(&z, TW);
    psl = new_dmarc(&z, PSL);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        run_case(rows[i].method == PSL ? psl : tw, &rows[i]);
    print_message("Mail::DMARC mock zone: %zu/%zu rows as intended\n",
                  sizeof(rows) / sizeof(rows[0]), sizeof(rows) / sizeof(rows[0]));
    um_dmarc_free(tw);
    um_dmarc_free(psl);
}

static void
test_dmarc_bad_input(void **state)
{
    struct zone z = {0};
    struct um_dmarc *dm = new_dmarc(&z, TW);
    struct um_dmarc_input in = {0};
    struct um_dmarc_res res;
    struct um_dmarc_opts bad = {(enum um_dmarc_method)7, NULL};
    struct um_dmarc_dns_ops ops = {zone_txt, zone_txt_fini, zone_rr, &z};
    struct um_dmarc *dm2 = NULL;

    (void)state;
    assert_int_equal(um_dmarc_check(dm, &in, &res, NULL), UM_EINVAL);
    in.from_domain = "bad..name";
    assert_int_equal(um_dmarc_check(dm, &in, &res, NULL), UM_OK);
    assert_int_equal(res.result, UM_DMARC_RESULT_NONE);
    in.from_domain = "";
    assert_int_equal(um_dmarc_check(dm, &in, &res, NULL), UM_OK);
    assert_int_equal(res.result, UM_DMARC_RESULT_NONE);
    assert_int_equal(z.queries, 0);
    assert_int_equal(um_dmarc_new_with_dns(&ops, &bad, &dm2, NULL), UM_EINVAL);
    assert_null(dm2);
    um_dmarc_free(dm);
    um_dmarc_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dmarc_record_parse),
        cmocka_unit_test(test_dmarc_table),
        cmocka_unit_test(test_dmarc_mail_dmarc_zone),
        cmocka_unit_test(test_dmarc_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
