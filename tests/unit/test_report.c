/*
 * test_report - lib/report: a recorded set of evaluations yields exactly the expected
 * records and counts, the XML validates against the RFC 9990 schema (Mail::DMARC's copy,
 * namespace fix applied here), a period is sent once, a failing sendmail leaves it pending
 * and the next run sends it, size limits and external destinations are honoured, retention.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <sqlite3.h>
#include <zlib.h>

#include "history.h"
#include "report.h"

/* lib/submit's sendmail path with this binary (a compound literal: lives in the caller's block). */
#define VIA_SENDMAIL(path)                                                                         \
    (&(struct um_submit_opts){.via = UM_SUBMIT_VIA_SENDMAIL, .sendmail = (path)})

#define DAY  1700006400LL /* 2023-11-15 00:00:00 UTC */
#define NOW  (DAY + 86400 + 3600)
#define XSD  UM_SOURCE_DIR "/../shared/conformance/dmarc-mail-dmarc/share/rua-schema.xsd"
#define XSD2 "/work/shared/conformance/dmarc-mail-dmarc/share/rua-schema.xsd"

/* --- fake DNS ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *txt; /* NULL: NXDOMAIN; "TEMPFAIL": temporary failure */
} zone[] = {
    {"_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:dmarc@example.org!10m,"
                           "mailto:ext@reports.example.net, mailto:tiny@example.org!100,"
                           "mailto:x@evil.example, https://example.org/r"},
    {"example.org._report._dmarc.reports.example.net", "v=DMARC1"},
    {"_dmarc.norua.example", "v=DMARC1; p=none"},
    {"_dmarc.temp.example", "TEMPFAIL"},
    {"_dmarc.temp.example.later", "v=DMARC1; p=none; rua=mailto:d@temp.example"},
};

struct fake_dns {
    int temp_off; /* 1: temp.example answers (with its own rua) */
};

static enum um_status
fake_txt(void *arg, const char *name, struct um_dns_txt *res, struct um_error *err)
{
    struct fake_dns *f = arg;

    (void)err;
    memset(res, 0, sizeof(*res));
    res->result = UM_DNS_NXDOMAIN;
    if (f != NULL && f->temp_off && strcmp(name, "_dmarc.temp.example") == 0)
        name = "_dmarc.temp.example.later";
    for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++) {
        if (strcmp(zone[i].name, name) != 0)
            continue;
        if (strcmp(zone[i].txt, "TEMPFAIL") == 0) {
            res->result = UM_DNS_TEMPFAIL;
            strcpy(res->reason, "timed out after 1 s");
            return UM_OK;
        }
        res->result = UM_DNS_OK;
        res->n = 1;
        res->rec = calloc(1, sizeof(*res->rec));
        assert_non_null(res->rec);
        res->rec[0].p = zone[i].txt;
        res->rec[0].len = strlen(zone[i].txt);
    }
    return UM_OK;
}

static void
fake_txt_fini(void *arg, struct um_dns_txt *res)
{
    (void)arg;
    free(res->rec);
    res->rec = NULL;
}

/* --- fixture -------------------------------------------------------------------------------- */

struct fx {
    char dir[64];
    char db[128];
    char out[128];
    char log[8192];
    struct fake_dns dns;
};

static void
capture_log(void *arg, const char *line)
{
    struct fx *f = arg;
    size_t n = strlen(f->log);

    snprintf(f->log + n, sizeof(f->log) - n, "%s\n", line);
}

static void
rec(struct um_history_rec *r, int64_t ts, const char *ip, const char *policy_domain)
{
    memset(r, 0, sizeof(*r));
    r->time = ts;
    snprintf(r->source_ip, sizeof(r->source_ip), "%s", ip);
    snprintf(r->header_from, sizeof(r->header_from), "%s", policy_domain);
    snprintf(r->envelope_from, sizeof(r->envelope_from), "%s", policy_domain);
    snprintf(r->spf_domain, sizeof(r->spf_domain), "%s", policy_domain);
    snprintf(r->policy_domain, sizeof(r->policy_domain), "%s", policy_domain);
    r->spf_result = UM_AUTH_PASS;
    r->dmarc_result = UM_DMARC_RESULT_PASS;
    r->spf_aligned = true;
    r->p = 'r';
    r->adkim = 'r';
    r->aspf = 'r';
    r->pct = 100;
    r->rua = true;
    r->disposition = UM_DMARC_POLICY_NONE;
}

/* The recorded set: for example.org on DAY, three groups (3 + 2 + 1 messages) plus one row
 * without rua (not reported), one row today (not complete), one very old row (retention). */
static void
populate(const char *db)
{
    struct um_history *h = NULL;
    struct um_history_stats st;
    struct um_history_rec r;
    struct um_error err = {0};

    assert_int_equal(um_history_open(db, 64, &h, &err), UM_OK);
    for (int i = 0; i < 3; i++) {
        rec(&r, DAY + 100 + i, "192.0.2.1", "example.org");
        r.ndkim = 1;
        strcpy(r.dkim[0].domain, "example.org");
        strcpy(r.dkim[0].selector, "s1");
        r.dkim[0].result = UM_AUTH_PASS;
        r.dkim_aligned = true;
        assert_true(um_history_record(h, &r));
    }
    for (int i = 0; i < 2; i++) {
        rec(&r, DAY + 7200 + i, "198.51.100.9", "example.org");
        strcpy(r.envelope_from, "spoof.example");
        strcpy(r.spf_domain, "spoof.example");
        r.spf_result = UM_AUTH_SOFTFAIL;
        r.spf_aligned = false;
        r.dmarc_result = UM_DMARC_RESULT_FAIL;
        r.disposition = UM_DMARC_POLICY_QUARANTINE;
        r.p = 'q';
        assert_true(um_history_record(h, &r));
    }
    rec(&r, DAY + 80000, "2001:db8::5", "example.org");
    r.spf_result = UM_AUTH_FAIL;
    r.spf_aligned = false;
    r.spf_scope = UM_HISTORY_SPF_HELO;
    strcpy(r.spf_domain, "mx.<evil>.example");
    r.ndkim = 1;
    strcpy(r.dkim[0].domain, "other.example");
    strcpy(r.dkim[0].selector, "k&1");
    r.dkim[0].result = UM_AUTH_FAIL;
    r.dmarc_result = UM_DMARC_RESULT_FAIL;
    r.override = UM_HISTORY_OVERRIDE_LOCAL_POLICY;
    strcpy(r.override_comment, "exempt client");
    r.disposition = UM_DMARC_POLICY_NONE;
    assert_true(um_history_record(h, &r)); /* last row of the day: policy p=reject */
    rec(&r, DAY + 500, "192.0.2.1", "example.org");
    r.rua = false;
    assert_true(um_history_record(h, &r));
    rec(&r, NOW - 10, "192.0.2.1", "example.org"); /* today */
    assert_true(um_history_record(h, &r));
    rec(&r, DAY - 400LL * 86400, "192.0.2.1", "old.example");
    r.rua = false;
    assert_true(um_history_record(h, &r));
    rec(&r, DAY + 10, "192.0.2.3", "norua.example");
    assert_true(um_history_record(h, &r));
    um_history_close(h, 10000, &st);
    assert_int_equal(st.written, 10);
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/um_report_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/history.db", f->dir);
    snprintf(f->out, sizeof(f->out), "%s/out", f->dir);
    assert_int_equal(mkdir(f->out, 0700), 0);
    populate(f->db);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct um_report_opts
opts(struct fx *f)
{
    struct um_report_opts o = {
        .db_path = f->db,
        .org_name = "Receiver & Co",
        .email = "dmarc-noreply@receiver.example",
        .submit = NULL,
        .day = -1,
        .now = NOW,
        .txt = fake_txt,
        .txt_fini = fake_txt_fini,
        .dns_arg = &f->dns,
        .log = capture_log,
        .log_arg = f,
    };
    return o;
}

static void
write_script(const char *path, const char *body)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(body, fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0755), 0);
}

static long long
sql_count(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

static char *
slurp_gz(const char *path)
{
    gzFile g = gzopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    int n;

    assert_non_null(g);
    assert_non_null(buf);
    n = gzread(g, buf, (1 << 20) - 1);
    assert_true(n > 0);
    gzclose(g);
    return buf;
}

static int
count_of(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The published XSD does not compile under libxml2 (../SOURCE.md): add the default
 * namespace and elementFormDefault="qualified" to a copy, then validate. */
static void
validate(const char *xml)
{
    const char *xsd_path = access(XSD, R_OK) == 0 ? XSD : XSD2;
    FILE *fp = fopen(xsd_path, "rb");
    char *xsd = calloc(1, 65536), *fixed = calloc(1, 70000), *at;
    xmlSchemaParserCtxtPtr pc;
    xmlSchemaPtr schema;
    xmlSchemaValidCtxtPtr vc;
    xmlDocPtr doc;
    size_t n;

    assert_non_null(fp);
    n = fread(xsd, 1, 65535, fp);
    fclose(fp);
    assert_true(n > 0);
    at = strstr(xsd, "targetNamespace=\"urn:ietf:params:xml:ns:dmarc-2.0\"");
    assert_non_null(at);
    snprintf(fixed, 70000,
             "%.*sxmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\" "
             "elementFormDefault=\"qualified\" %s",
             (int)(at - xsd), xsd, at);
    pc = xmlSchemaNewMemParserCtxt(fixed, (int)strlen(fixed));
    schema = xmlSchemaParse(pc);
    assert_non_null(schema);
    vc = xmlSchemaNewValidCtxt(schema);
    doc = xmlReadMemory(xml, (int)strlen(xml), "report.xml", NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    if (xmlSchemaValidateDoc(vc, doc) != 0)
        fail_msg("report does not validate against the RFC 9990 schema:\n%s", xml);
    xmlFreeDoc(doc);
    xmlSchemaFreeValidCtxt(vc);
    xmlSchemaFree(schema);
    xmlSchemaFreeParserCtxt(pc);
    free(xsd);
    free(fixed);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void
test_dry_run_rows_and_schema(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_error err = {0};
    char path[512], cmd[256], name[256] = "";
    FILE *ls;
    char *xml;

    o.dry_run_dir = f->out;
    umask(022);
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.periods, 2); /* example.org and norua.example, DAY */
    assert_int_equal(st.written, 1);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.sent, 0);
    assert_non_null(strstr(f->log, "domain=norua.example"));
    snprintf(cmd, sizeof(cmd), "ls '%s'", f->out);
    ls = popen(cmd, "r");
    assert_non_null(ls);
    assert_non_null(fgets(name, sizeof(name), ls));
    pclose(ls);
    name[strcspn(name, "\n")] = '\0';
    /* receiver!policy-domain!begin!end!unique-id.xml.gz */
    if (strncmp(name, "receiver.example!example.org!1700006400!1700092799!", 51) != 0
        || strlen(name) != 51 + 16 + 7 || strcmp(name + 67, ".xml.gz") != 0)
        fail_msg("file name: got %s", name);
    snprintf(path, sizeof(path), "%s/%s", f->out, name);
    {
        /* It names sender IPs: 0600 whatever the umask (umask 022 above). */
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        if ((sb.st_mode & 07777) != 0600)
            fail_msg("%s: got mode %04o, want 0600", path, (unsigned)(sb.st_mode & 07777));
    }
    xml = slurp_gz(path);
    validate(xml);
    /* Exactly three records: 3 + 2 + 1 messages; the no-rua row and today's are not in. */
    assert_int_equal(count_of(xml, "<record>"), 3);
    assert_int_equal(count_of(xml, "<count>3</count>"), 1);
    assert_int_equal(count_of(xml, "<count>2</count>"), 1);
    assert_int_equal(count_of(xml, "<count>1</count>"), 1);
    assert_non_null(strstr(xml, "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">"));
    assert_non_null(strstr(xml, "<org_name>Receiver &amp; Co</org_name>"));
    assert_non_null(strstr(xml, "<begin>1700006400</begin>"));
    assert_non_null(strstr(xml, "<end>1700092799</end>"));
    assert_non_null(strstr(xml, "<domain>example.org</domain>\n    <p>reject</p>"));
    assert_non_null(strstr(xml, "<discovery_method>treewalk</discovery_method>"));
    assert_non_null(strstr(xml, "<source_ip>192.0.2.1</source_ip>\n      <count>3</count>\n"
                                "      <policy_evaluated>\n        <disposition>none"
                                "</disposition>\n        <dkim>pass</dkim>\n        <spf>pass"
                                "</spf>"));
    assert_non_null(strstr(xml, "<source_ip>198.51.100.9</source_ip>\n      <count>2</count>\n"
                                "      <policy_evaluated>\n        <disposition>quarantine"
                                "</disposition>\n        <dkim>fail</dkim>\n        <spf>fail"
                                "</spf>"));
    assert_non_null(strstr(xml, "<source_ip>2001:db8:0:0:0:0:0:5</source_ip>"));
    assert_non_null(strstr(xml, "<type>local_policy</type>\n          <comment>exempt client"));
    assert_non_null(strstr(xml, "<envelope_from>spoof.example</envelope_from>"));
    assert_non_null(strstr(xml, "<domain>spoof.example</domain>\n        <scope>mfrom</scope>\n"
                                "        <result>softfail</result>"));
    assert_non_null(strstr(xml, "<domain>mx.&lt;evil&gt;.example</domain>\n        <scope>helo"));
    assert_non_null(strstr(xml, "<selector>k&amp;1</selector>"));
    assert_int_equal(count_of(xml, "<dkim>\n"), 2);
    free(xml);
    /* A dry run records nothing. */
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM reports_sent"), 0);
}

static void
test_send_once(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_error err = {0};
    char sm[256], script[1024], path[256], args[512] = "";
    FILE *fp;
    char *mail;

    snprintf(sm, sizeof(sm), "%s/sendmail", f->dir);
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho \"$@\" >> '%s/args'\nn=$(ls '%s' | wc -l)\n"
             "cat > '%s/mail.'$n\nexit 0\n",
             f->dir, f->out, f->out);
    write_script(sm, script);
    o.submit = VIA_SENDMAIL(sm);
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.skipped, 1); /* norua.example */
    snprintf(path, sizeof(path), "%s/args", f->dir);
    fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(args, sizeof(args), fp));
    fclose(fp);
    /* tiny@ (!100) is too small, x@evil.example has no authorization record. */
    assert_string_equal(args, "-i -f dmarc-noreply@receiver.example -- dmarc@example.org "
                              "ext@reports.example.net\n");
    assert_non_null(strstr(f->log, "rcpt=tiny@example.org action=skip-rcpt"));
    assert_non_null(strstr(f->log, "exceeds the limit of 100"));
    assert_non_null(strstr(f->log, "rcpt=x@evil.example action=skip-rcpt"));
    snprintf(path, sizeof(path), "%s/mail.0", f->out);
    fp = fopen(path, "r");
    assert_non_null(fp);
    mail = calloc(1, 65536);
    assert_non_null(mail);
    assert_true(fread(mail, 1, 65535, fp) > 0);
    fclose(fp);
    assert_non_null(strstr(mail, "Subject: Report Domain: example.org Submitter: "
                                 "receiver.example Report-ID: <"));
    assert_non_null(strstr(mail, "Content-Type: application/gzip; name=\"receiver.example!"
                                 "example.org!1700006400!1700092799!"));
    assert_non_null(strstr(mail, "To: dmarc@example.org,\r\n ext@reports.example.net\r\n"));
    free(mail);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM reports_sent WHERE state = 'sent'"), 1);

    /* The second run sends nothing new. */
    f->log[0] = '\0';
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.periods, 0);
    assert_int_equal(st.sent, 0);
    assert_int_equal(count_of(args, "--"), 1);
    fp = fopen(path, "r");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/mail.1", f->out);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void
test_failing_sendmail_retried(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_error err = {0};
    char bad[256], good[256], script[512], path[256];

    snprintf(bad, sizeof(bad), "%s/sendmail-fail", f->dir);
    write_script(bad, "#!/bin/sh\ncat >/dev/null\necho 'queue full' >&2\nexit 75\n");
    snprintf(good, sizeof(good), "%s/sendmail-ok", f->dir);
    snprintf(script, sizeof(script), "#!/bin/sh\ncat > '%s/saved.eml'\nexit 0\n", f->out);
    write_script(good, script);

    o.submit = VIA_SENDMAIL(bad);
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.pending, 1);
    assert_non_null(strstr(f->log, "exited with status 75"));
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM reports_sent WHERE state = 'pending'"),
                     1);

    o.submit = VIA_SENDMAIL(good);
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.pending, 0);
    snprintf(path, sizeof(path), "%s/saved.eml", f->out);
    assert_int_equal(access(path, R_OK), 0);
    assert_int_equal(
        sql_count(f->db, "SELECT attempts FROM reports_sent WHERE policy_domain = 'example.org'"),
        2);

    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.periods, 0);
}

static void
test_dns_tempfail_pending(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_history *h = NULL;
    struct um_history_rec r;
    struct um_error err = {0};
    char ok[256];

    assert_int_equal(um_history_open(f->db, 8, &h, &err), UM_OK);
    rec(&r, DAY + 50, "192.0.2.77", "temp.example");
    assert_true(um_history_record(h, &r));
    um_history_close(h, 5000, NULL);
    snprintf(ok, sizeof(ok), "%s/sendmail-ok", f->dir);
    write_script(ok, "#!/bin/sh\ncat >/dev/null\nexit 0\n");
    o.submit = VIA_SENDMAIL(ok);
    o.day = DAY;
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.sent, 1); /* example.org */
    assert_non_null(strstr(f->log, "domain=temp.example begin=1700006400 action=pending"));
    f->dns.temp_off = 1; /* DNS answers again */
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.periods, 1);
    assert_int_equal(st.sent, 1);
    assert_non_null(strstr(f->log, "domain=temp.example begin=1700006400 action=sent rcpts=1"));
}

static void
test_retention(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_error err = {0};
    char ok[256];

    snprintf(ok, sizeof(ok), "%s/sendmail-ok", f->dir);
    write_script(ok, "#!/bin/sh\ncat >/dev/null\nexit 0\n");
    o.submit = VIA_SENDMAIL(ok);
    o.retention_days = 30;
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM evaluations"), 10);
    assert_int_equal(um_report_run(&o, &st, &err), UM_OK);
    assert_int_equal(st.expired, 1);
    assert_int_equal(sql_count(f->db, "SELECT count(*) FROM evaluations"), 9);
    assert_int_equal(
        sql_count(f->db, "SELECT count(*) FROM evaluations WHERE policy_domain = 'old.example'"),
        0);
}

static void
test_bad_options(void **state)
{
    struct fx *f = *state;
    struct um_report_opts o = opts(f);
    struct um_report_stats st;
    struct um_error err = {0};

    o.day = NOW - NOW % 86400; /* today is not complete */
    assert_int_equal(um_report_run(&o, &st, &err), UM_EINVAL);
    o = opts(f);
    o.email = "no-at-sign";
    assert_int_equal(um_report_run(&o, &st, &err), UM_EINVAL);
    o = opts(f);
    o.dry_run_dir = "/nonexistent/dir";
    assert_int_equal(um_report_run(&o, &st, &err), UM_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/receiver.example!example.org!"));
}

static const struct {
    const char *uri;
    enum um_status want;
    const char *addr;
    uint64_t limit;
} rua_cases[] = {
    {"mailto:dmarc@example.org", UM_OK, "dmarc@example.org", 0},
    {" mailto:dmarc@example.org!10m ", UM_OK, "dmarc@example.org", 10485760},
    {"MAILTO:a@b.example!50k", UM_OK, "a@b.example", 51200},
    {"mailto:a@b.example!1234", UM_OK, "a@b.example", 1234},
    {"mailto:a%21b@example.org", UM_OK, "a!b@example.org", 0},
    {"https://example.org/dmarc", UM_ENOENT, NULL, 0},
    {"mailto:", UM_EINVAL, NULL, 0},
    {"mailto:noat", UM_EINVAL, NULL, 0},
    {"mailto:a@b@c", UM_EINVAL, NULL, 0},
    {"mailto:a@b.example!", UM_EINVAL, NULL, 0},
    {"mailto:a@b.example!10x", UM_EINVAL, NULL, 0},
    {"mailto:a@b.example!99999999999999999999999", UM_EINVAL, NULL, 0},
    {"mailto:a%2@b.example", UM_EINVAL, NULL, 0},
    {"mailto:a b@example.org", UM_EINVAL, NULL, 0},
};

static void
test_rua_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rua_cases) / sizeof(rua_cases[0]); i++) {
        char addr[320] = "";
        uint64_t lim = 0;
        struct um_error err = {0};
        const char *u = rua_cases[i].uri;
        enum um_status got =
            um_report_rua_parse((struct um_str){u, strlen(u)}, addr, sizeof(addr), &lim, &err);
        if (got != rua_cases[i].want)
            fail_msg("%s: got %s (%s), want %s", u, um_status_name(got), err.msg,
                     um_status_name(rua_cases[i].want));
        if (got == UM_OK && (strcmp(addr, rua_cases[i].addr) != 0 || lim != rua_cases[i].limit))
            fail_msg("%s: got %s limit %llu, want %s limit %llu", u, addr, (unsigned long long)lim,
                     rua_cases[i].addr, (unsigned long long)rua_cases[i].limit);
    }
}

/* --day / --since parsing: start of the UTC day (known answers from Python's calendar.timegm). */
static void
test_parse_day(void **state)
{
    (void)state;
    assert_int_equal(um_report_parse_day("1970-01-01"), 0);
    assert_int_equal(um_report_parse_day("2026-11-24"), 1795478400);
    assert_int_equal(um_report_parse_day("2000-02-29"), 951782400);
    assert_int_equal(um_report_parse_day("2026-11-24x"), -1);
    assert_int_equal(um_report_parse_day("24.11.2026"), -1);
    assert_int_equal(um_report_parse_day(""), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rua_parse),
        cmocka_unit_test_setup_teardown(test_dry_run_rows_and_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_sendmail_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_tempfail_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test(test_parse_day),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    xmlCleanupParser();
    return rc;
}
