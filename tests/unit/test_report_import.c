/*
 * test_report_import - lib/report_import: the sample aggregate reports of OpenDMARC and
 * Mail::DMARC (../shared/conformance) import with the record and message counts read off the
 * files; the malformed one is refused with its exact error and stores nothing; hostile input
 * (billion laughs, external entity, gzip bomb, oversized, multi-file zip, too many records)
 * is refused and stores nothing; a report arrives by mail (base64 gzip and zip attachments);
 * re-import is a no-op; the summary text of a known set, and its "new sources".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zlib.h>

#include "report_import.h"

#define OD  UM_SOURCE_DIR "/../shared/conformance/dmarc-opendmarc/testfiles/"
#define MD  UM_SOURCE_DIR "/../shared/conformance/dmarc-mail-dmarc/fixtures/"
#define NOW 1700000000LL

/* --- helpers ---------------------------------------------------------------------------------- */

static unsigned char *
slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (fp == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

struct fixture {
    char path[64];
    struct um_report_import *imp;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct um_error err = {0};
    int fd;

    assert_non_null(f);
    strcpy(f->path, "/tmp/test_report_import.XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    if (um_report_import_open(f->path, &f->imp, &err) != UM_OK)
        fail_msg("open: %s", err.msg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[80];

    um_report_import_close(f->imp);
    unlink(f->path);
    snprintf(p, sizeof(p), "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    free(f);
    return 0;
}

static long long
count_sql(const struct fixture *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;

    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void
assert_nothing_stored(const struct fixture *f, const char *what)
{
    long long r = count_sql(f, "SELECT count(*) FROM received_reports");
    long long w = count_sql(f, "SELECT count(*) FROM received_rows");
    long long a = count_sql(f, "SELECT count(*) FROM received_auth");
    if (r != 0 || w != 0 || a != 0)
        fail_msg("%s: stored %lld reports, %lld rows, %lld auth results; want none", what, r, w, a);
}

static char *
b64(const unsigned char *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(len * 2 + 8), *p = o;
    size_t col = 0;

    assert_non_null(o);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0)
                     | (i + 2 < len ? d[i + 2] : 0);
        *p++ = tab[v >> 18];
        *p++ = tab[(v >> 12) & 63];
        *p++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *p++ = i + 2 < len ? tab[v & 63] : '=';
        if ((col += 4) >= 76) {
            *p++ = '\r';
            *p++ = '\n';
            col = 0;
        }
    }
    *p = '\0';
    return o;
}

/* gzip of `head` followed by `pad` spaces, deflated in chunks (no pad-sized buffer). */
static unsigned char *
gzip_pad(const char *head, size_t pad, size_t *outlen)
{
    size_t cap = 1 << 20;
    unsigned char *out = malloc(cap), *spaces = malloc(65536);
    z_stream z;

    assert_non_null(out);
    assert_non_null(spaces);
    memset(spaces, ' ', 65536);
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    z.next_in = (unsigned char *)(uintptr_t)head;
    z.avail_in = (uInt)strlen(head);
    assert_int_equal(deflate(&z, Z_NO_FLUSH), Z_OK);
    while (pad > 0) {
        size_t n = pad < 65536 ? pad : 65536;
        z.next_in = (unsigned char *)(uintptr_t)spaces;
        z.avail_in = (uInt)n;
        assert_int_equal(deflate(&z, Z_NO_FLUSH), Z_OK);
        assert_true(z.avail_out > 0);
        pad -= n;
    }
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = z.total_out;
    deflateEnd(&z);
    free(spaces);
    return out;
}

/* A zip of n stored members, all holding the same data. */
static unsigned char *
zip_stored(unsigned n, const char *data, size_t *outlen)
{
    size_t dl = strlen(data), cap = 200 + n * (dl + 120), off = 0, cd;
    unsigned char *z = calloc(1, cap);
    uint32_t crc = (uint32_t)crc32(0L, (const unsigned char *)data, (uInt)dl);
    size_t loc[8];

    assert_non_null(z);
    assert_true(n <= 8);
#define LE16(v) (z[off++] = (unsigned char)(v), z[off++] = (unsigned char)((v) >> 8))
#define LE32(v) (LE16((v)&0xffff), LE16(((uint32_t)(v)) >> 16))
    for (unsigned i = 0; i < n; i++) {
        loc[i] = off;
        memcpy(z + off, "PK\3\4", 4), off += 4;
        LE16(20), LE16(0), LE16(0), LE16(0), LE16(0), LE32(crc), LE32(dl), LE32(dl), LE16(5),
            LE16(0);
        memcpy(z + off, "r.xml", 5), off += 5;
        memcpy(z + off, data, dl), off += dl;
    }
    cd = off;
    for (unsigned i = 0; i < n; i++) {
        memcpy(z + off, "PK\1\2", 4), off += 4;
        LE16(20), LE16(20), LE16(0), LE16(0), LE16(0), LE16(0), LE32(crc), LE32(dl), LE32(dl),
            LE16(5), LE16(0), LE16(0), LE16(0), LE16(0), LE32(0), LE32(loc[i]);
        memcpy(z + off, "r.xml", 5), off += 5;
    }
    {
        size_t cdlen = off - cd;
        memcpy(z + off, "PK\5\6", 4), off += 4;
        LE16(0), LE16(0), LE16(n), LE16(n), LE32(cdlen), LE32(cd), LE16(0);
    }
#undef LE16
#undef LE32
    *outlen = off;
    return z;
}

/* --- the samples ------------------------------------------------------------------------------ */

static const struct {
    const char *file, *org, *report_id;
    size_t records;
    uint64_t messages;
} samples[] = {
    /* record counts as SOURCE.md states them; messages are the sums of <count> */
    {OD "163.com!example.com!1337270400!1337356799.20120518163.xml", "163.com",
     "aggr_report_example.com_20120518_163.com", 50, 92},
    {OD "good.com!example.com!1337270400!1337356799.xml", "126.com",
     "aggr_report_example.com_20120518_126.com", 754, 183934},
    {OD "yeah.net!example.com!1337270400!1337356799.20120518.xml", "yeah.net",
     "aggr_report_example.com_20120518_yeah.net", 254, 21679},
    {MD "test_dmarc.xml", "Test Sender", "1234567890", 1, 1},
    {MD "test_dmarc.xml.gz", "Test Sender", "1234567890", 1, 1},
    {MD "test_dmarc.xml.zip", "Test Sender", "1234567890", 1, 1},
};

static void
test_samples_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        struct um_report_import_report *rep = NULL;
        struct um_error err = {0};
        unsigned char *data, *xml = NULL;
        size_t len, xmllen;
        uint64_t sum = 0;

        data = slurp(samples[i].file, &len);
        if (um_report_import_decode(samples[i].file, data, len, &xml, &xmllen, &err) != UM_OK
            || um_report_import_parse(samples[i].file, (struct um_str){(char *)xml, xmllen}, &rep,
                                      &err)
                   != UM_OK)
            fail_msg("%s: %s", samples[i].file, err.msg);
        if (rep->nrows != samples[i].records || rep->messages != samples[i].messages)
            fail_msg("%s: got %zu records, %llu messages; want %zu, %llu", samples[i].file,
                     rep->nrows, (unsigned long long)rep->messages, samples[i].records,
                     (unsigned long long)samples[i].messages);
        assert_string_equal(rep->org_name, samples[i].org);
        assert_string_equal(rep->report_id, samples[i].report_id);
        assert_string_equal(rep->domain, "example.com");
        assert_int_equal(rep->format, UM_REPORT_IMPORT_RFC7489);
        for (size_t k = 0; k < rep->nrows; k++)
            sum += rep->rows[k].count;
        assert_int_equal(sum, rep->messages);
        um_report_import_report_free(rep);
        free(xml);
        free(data);
    }
}

static void
test_samples_parse_fields(void **state)
{
    struct um_report_import_report *rep = NULL;
    const struct um_report_import_row *w;
    unsigned char *data;
    size_t len;

    (void)state;
    data = slurp(MD "test_dmarc.xml", &len);
    assert_int_equal(um_report_import_parse("t", (struct um_str){(char *)data, len}, &rep, NULL),
                     UM_OK);
    assert_int_equal(rep->begin, 1609459200);
    assert_int_equal(rep->end, 1609545600);
    assert_string_equal(rep->email, "noreply@test.example");
    assert_string_equal(rep->p, "none");
    assert_int_equal(rep->pct, 100);
    w = &rep->rows[0];
    assert_string_equal(w->source_ip, "1.2.3.4");
    assert_string_equal(w->disposition, "none");
    assert_string_equal(w->dkim_eval, "pass");
    assert_string_equal(w->header_from, "example.com");
    assert_int_equal(w->ndkim, 1);
    assert_string_equal(w->dkim[0].selector, "default");
    assert_int_equal(w->nspf, 1);
    assert_string_equal(w->spf[0].scope, "mfrom");
    assert_string_equal(w->spf[0].result, "pass");
    um_report_import_report_free(rep);
    free(data);
}

static void
test_samples_import_and_reimport(void **state)
{
    struct fixture *f = *state;

    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
            struct um_report_import_result res;
            struct um_error err = {0};
            unsigned char *data;
            size_t len;
            bool want_dup = round == 1 || strstr(samples[i].file, ".xml.") != NULL;

            data = slurp(samples[i].file, &len);
            if (um_report_import_bytes(f->imp, samples[i].file, data, len, NOW, &res, &err)
                != UM_OK)
                fail_msg("%s: %s", samples[i].file, err.msg);
            if (res.duplicate != want_dup)
                fail_msg("round %d %s: duplicate %d, want %d", round, samples[i].file,
                         res.duplicate, want_dup);
            if (!want_dup)
                assert_int_equal(res.records, samples[i].records);
            free(data);
        }
        assert_int_equal(count_sql(f, "SELECT count(*) FROM received_reports"), 4);
        assert_int_equal(count_sql(f, "SELECT count(*) FROM received_rows"), 50 + 754 + 254 + 1);
        assert_int_equal(count_sql(f, "SELECT sum(count) FROM received_rows"),
                         92 + 183934 + 21679 + 1);
        assert_int_equal(count_sql(f, "SELECT sum(messages) FROM received_reports"),
                         92 + 183934 + 21679 + 1);
    }
}

static void
test_malformed_sample(void **state)
{
    static const char path[] = OD "bad.com!example.com!1337140800!1337227200.xml";
    struct fixture *f = *state;
    struct um_report_import_result res;
    struct um_error err = {0};
    unsigned char *data;
    size_t len;
    char want[512];

    data = slurp(path, &len);
    assert_int_equal(um_report_import_bytes(f->imp, path, data, len, NOW, &res, &err), UM_EINVAL);
    /* <header_from>example.com<foo</header_from> on line 6 */
    snprintf(want, sizeof(want), "%s: malformed XML at line 6: error parsing attribute name", path);
    if (strlen(want) >= sizeof(err.msg))
        want[sizeof(err.msg) - 1] = '\0'; /* the error buffer truncates long paths */
    assert_string_equal(err.msg, want);
    assert_nothing_stored(f, "bad.com");
    free(data);
}

/* --- hostile input ---------------------------------------------------------------------------- */

#define RPT_HEAD                                                                                   \
    "<feedback><report_metadata><org_name>o</org_name><report_id>r1</report_id>"                   \
    "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"                      \
    "<policy_published><domain>example.org</domain></policy_published>"
#define RPT_REC(ip, n)                                                                             \
    "<record><row><source_ip>" ip "</source_ip><count>" #n "</count></row>"                        \
    "<identifiers><header_from>example.org</header_from></identifiers></record>"

static const struct {
    const char *name, *data;
    enum um_status want;
    const char *msg;
} hostile[] = {
    {"billion laughs",
     "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
     " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
     " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
     " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
     " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
     " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
     " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
     " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
     " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
     " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
     "]>\n<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>",
     UM_EINVAL,
     "billion laughs: refused: the XML has a DOCTYPE (DTDs and entity declarations are not "
     "allowed in a report)"},
    {"external entity",
     "<?xml version=\"1.0\"?>\n<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "
     "\"file:///etc/passwd\">]>\n" RPT_HEAD "<record><row><source_ip>192.0.2.1</source_ip>"
     "<count>1</count></row><identifiers><header_from>&xxe;</header_from></identifiers>"
     "</record></feedback>",
     UM_EINVAL,
     "external entity: refused: the XML has a DOCTYPE (DTDs and entity declarations are not "
     "allowed in a report)"},
    {"external DTD", "<!DOCTYPE feedback SYSTEM \"http://192.0.2.1/x.dtd\">" RPT_HEAD "</feedback>",
     UM_EINVAL,
     "external DTD: refused: the XML has a DOCTYPE (DTDs and entity declarations are not "
     "allowed in a report)"},
    {"undeclared entity", RPT_HEAD "<x>&foo;</x></feedback>", UM_EINVAL,
     "undeclared entity: malformed XML at line 1: Entity 'foo' not defined"},
    {"truncated", RPT_HEAD "<record>", UM_EINVAL,
     "truncated: malformed XML at line 1: Premature end of data in tag record line 1"},
    {"wrong root", "<html/>", UM_EINVAL, "wrong root: the root element is <html>, not <feedback>"},
    {"unknown namespace", "<feedback xmlns=\"urn:x\"/>", UM_EINVAL,
     "unknown namespace: unknown report namespace \"urn:x\""},
    {"no report_id",
     "<feedback><report_metadata><org_name>o</org_name><date_range><begin>1</begin><end>2</end>"
     "</date_range></report_metadata><policy_published><domain>d</domain></policy_published>"
     "</feedback>",
     UM_EINVAL, "no report_id: <report_id> is missing"},
    {"bad ip in record 2",
     RPT_HEAD RPT_REC("192.0.2.1", 3) RPT_REC("108r.166.27.220", 16) "</feedback>", UM_EINVAL,
     "bad ip in record 2: record 2: <source_ip> \"108r.166.27.220\" is not an IP address"},
    {"bad count", RPT_HEAD RPT_REC("192.0.2.1", x) "</feedback>", UM_EINVAL,
     "bad count: record 1: <count> \"x\" is not a number"},
    {"huge count", RPT_HEAD RPT_REC("192.0.2.1", 99999999999999999999999) "</feedback>", UM_EINVAL,
     "huge count: record 1: <count> 99999999999999999999999 is out of range"},
    {"control character",
     RPT_HEAD
     "<record><row><source_ip>192.0.2.1</source_ip><count>1</count>"
     "</row><identifiers><header_from>a&#10;b</header_from></identifiers></record></feedback>",
     UM_EINVAL, "control character: record 1: <header_from> contains a control character"},
    {"not a report", "hello world", UM_EINVAL,
     "not a report: not a report: neither XML, gzip, zip nor a mail message"},
    {"mail without report", "From: a@example.org\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
     UM_EINVAL,
     "mail without report: no aggregate report attachment (application/gzip, application/zip or "
     "text/xml) in the message"},
    /* fuzz: a message/rfc822 part that is no message (corpus crash-rfc822-no-headers) */
    {"rfc822 without headers",
     "From: a@example.org\r\nContent-Type: message/rfc822\r\n\r\nno headers here\r\n", UM_EINVAL,
     "rfc822 without headers: no aggregate report attachment (application/gzip, "
     "application/zip or text/xml) in the message"},
};

static void
test_hostile(void **state)
{
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        struct um_report_import_result res;
        struct um_error err = {0};
        enum um_status got;

        got =
            um_report_import_bytes(f->imp, hostile[i].name, (const unsigned char *)hostile[i].data,
                                   strlen(hostile[i].data), NOW, &res, &err);
        if (got != hostile[i].want || strcmp(err.msg, hostile[i].msg) != 0)
            fail_msg("%s: got %s \"%s\", want %s \"%s\"", hostile[i].name, um_status_name(got),
                     err.msg, um_status_name(hostile[i].want), hostile[i].msg);
        assert_nothing_stored(f, hostile[i].name);
    }
}

static void
test_gzip_bomb(void **state)
{
    struct fixture *f = *state;
    struct um_report_import_result res;
    struct um_error err = {0};
    unsigned char *gz;
    size_t len;

    /* 64 MiB of XML in about 64 KB: inflation must stop at the 20 MiB cap. */
    gz = gzip_pad(RPT_HEAD, (size_t)64 << 20, &len);
    assert_true(len < 200000);
    assert_int_equal(um_report_import_bytes(f->imp, "bomb.xml.gz", gz, len, NOW, &res, &err),
                     UM_ELIMIT);
    assert_string_equal(err.msg, "bomb.xml.gz: decompressed size exceeds 20971520 bytes");
    assert_nothing_stored(f, "gzip bomb");
    free(gz);
}

static void
test_oversized(void **state)
{
    struct fixture *f = *state;
    struct um_report_import_result res;
    struct um_error err = {0};
    size_t len = UM_REPORT_IMPORT_MAX_XML + 1;
    unsigned char *big = malloc(len);

    assert_non_null(big);
    memcpy(big, RPT_HEAD, strlen(RPT_HEAD));
    memset(big + strlen(RPT_HEAD), ' ', len - strlen(RPT_HEAD));
    assert_int_equal(um_report_import_bytes(f->imp, "big.xml", big, len, NOW, &res, &err),
                     UM_ELIMIT);
    assert_string_equal(err.msg, "big.xml: XML size 20971521 exceeds 20971520 bytes");
    assert_nothing_stored(f, "oversized");
    free(big);
}

static void
test_too_many_records(void **state)
{
    struct fixture *f = *state;
    struct um_report_import_result res;
    struct um_error err = {0};
    size_t n = UM_REPORT_IMPORT_MAX_RECORDS + 1, len = 0;
    char *x = malloc(strlen(RPT_HEAD) + n * 9 + 16);

    assert_non_null(x);
    len += (size_t)sprintf(x, "%s", RPT_HEAD);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(x + len, "<record/>");
    len += (size_t)sprintf(x + len, "</feedback>");
    assert_int_equal(
        um_report_import_bytes(f->imp, "many.xml", (unsigned char *)x, len, NOW, &res, &err),
        UM_ELIMIT);
    assert_string_equal(err.msg, "many.xml: more than 100000 records");
    assert_nothing_stored(f, "too many records");
    free(x);
}

static void
test_zip(void **state)
{
    struct fixture *f = *state;
    struct um_report_import_result res;
    struct um_error err = {0};
    unsigned char *z;
    size_t len;

    z = zip_stored(2, RPT_HEAD RPT_REC("192.0.2.1", 1) "</feedback>", &len);
    assert_int_equal(um_report_import_bytes(f->imp, "two.zip", z, len, NOW, &res, &err), UM_EINVAL);
    assert_string_equal(err.msg, "two.zip: zip archive holds 2 files; only a single report file is "
                                 "accepted");
    assert_nothing_stored(f, "multi-file zip");
    free(z);
    /* One stored member imports. */
    z = zip_stored(1, RPT_HEAD RPT_REC("192.0.2.1", 1) "</feedback>", &len);
    if (um_report_import_bytes(f->imp, "one.zip", z, len, NOW, &res, &err) != UM_OK)
        fail_msg("one.zip: %s", err.msg);
    assert_int_equal(res.records, 1);
    /* A flipped byte of the stored data fails the CRC. */
    z[40] ^= 1;
    assert_int_equal(um_report_import_bytes(f->imp, "crc.zip", z, len, NOW, &res, &err), UM_EINVAL);
    assert_string_equal(err.msg, "crc.zip: zip member fails its CRC check");
    free(z);
}

/* --- mail ------------------------------------------------------------------------------------- */

static void
test_mail(void **state)
{
    static const char *const types[] = {"application/gzip", "application/zip"};
    static const char *const files[] = {MD "test_dmarc.xml.gz", MD "test_dmarc.xml.zip"};
    struct fixture *f = *state;

    for (int i = 0; i < 2; i++) {
        struct um_report_import_result res;
        struct um_error err = {0};
        unsigned char *att;
        char *enc, *mail;
        size_t len;

        att = slurp(files[i], &len);
        enc = b64(att, len);
        mail = malloc(strlen(enc) + 1024);
        assert_non_null(mail);
        sprintf(mail,
                "From: noreply@test.example\r\nTo: dmarc@example.com\r\n"
                "Subject: Report Domain: example.com Submitter: test.example\r\n"
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n"
                "\tboundary=\"==b1==\"\r\n\r\n"
                "preamble\r\n--==b1==\r\nContent-Type: text/plain\r\n\r\nA report.\r\n"
                "--==b1==\r\nContent-Type: %s; name=\"r.xml.x\"\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"r.xml.x\"\r\n\r\n%s\r\n"
                "--==b1==--\r\n",
                types[i], enc);
        if (um_report_import_bytes(f->imp, "mail", (unsigned char *)mail, strlen(mail), NOW, &res,
                                   &err)
            != UM_OK)
            fail_msg("%s mail: %s", types[i], err.msg);
        assert_int_equal(res.duplicate, i == 1);
        assert_string_equal(res.org_name, "Test Sender");
        free(mail);
        free(enc);
        free(att);
    }
    assert_int_equal(count_sql(f, "SELECT count(*) FROM received_rows"), 1);
}

static void
test_rfc9990(void **state)
{
    static const char x[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n"
        "  <version>1.0</version>\n"
        "  <report_metadata><org_name>Receiver</org_name><email>r@rcv.example</email>"
        "<report_id>9990a</report_id><date_range><begin>1700006400</begin>"
        "<end>1700092800</end></date_range></report_metadata>\n"
        "  <policy_published><domain>Example.ORG</domain><p>reject</p><np>reject</np>"
        "<discovery_method>treewalk</discovery_method></policy_published>\n"
        "  <record><row><source_ip>2001:db8::1</source_ip><count>7</count>"
        "<policy_evaluated><disposition>reject</disposition><dkim>fail</dkim><spf>fail</spf>"
        "</policy_evaluated></row><identifiers><envelope_from>x.example</envelope_from>"
        "<header_from>example.org</header_from></identifiers><auth_results>"
        "<dkim><domain>x.example</domain><selector>s</selector><result>fail</result></dkim>"
        "<spf><domain>x.example</domain><scope>mfrom</scope><result>softfail</result></spf>"
        "</auth_results></record>\n</feedback>\n";
    struct um_report_import_report *rep = NULL;
    struct um_error err = {0};

    (void)state;
    if (um_report_import_parse("9990", (struct um_str){x, sizeof(x) - 1}, &rep, &err) != UM_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(rep->format, UM_REPORT_IMPORT_RFC9990);
    assert_string_equal(rep->domain, "example.org");
    assert_string_equal(rep->np, "reject");
    assert_int_equal(rep->pct, -1);
    assert_int_equal(rep->nrows, 1);
    assert_string_equal(rep->rows[0].source_ip, "2001:db8::1");
    assert_string_equal(rep->rows[0].envelope_from, "x.example");
    assert_string_equal(rep->rows[0].spf[0].result, "softfail");
    um_report_import_report_free(rep);
}

/* --- summary ---------------------------------------------------------------------------------- */

#define SUM_REC(ip, n, spf, dkim, ev)                                                              \
    "<record><row><source_ip>" ip "</source_ip><count>" #n "</count><policy_evaluated>"            \
    "<disposition>none</disposition><dkim>" ev "</dkim><spf>" ev "</spf></policy_evaluated>"       \
    "</row><identifiers><header_from>example.org</header_from></identifiers><auth_results>"        \
    "<dkim><domain>example.org</domain><result>" dkim "</result></dkim><spf>"                      \
    "<domain>example.org</domain><result>" spf "</result></spf></auth_results></record>"
#define SUM_HEAD(org, id, b, e)                                                                    \
    "<feedback><report_metadata><org_name>" org "</org_name><report_id>" id "</report_id>"         \
    "<date_range><begin>" #b "</begin><end>" #e "</end></date_range></report_metadata>"            \
    "<policy_published><domain>example.org</domain><p>reject</p></policy_published>"

static void
import_str(struct fixture *f, const char *name, const char *x)
{
    struct um_report_import_result res;
    struct um_error err = {0};

    if (um_report_import_bytes(f->imp, name, (const unsigned char *)x, strlen(x), NOW, &res, &err)
        != UM_OK)
        fail_msg("%s: %s", name, err.msg);
}

static char *
summary(struct fixture *f, const char *domain, int64_t since)
{
    struct um_report_import_summary_opts o = {
        .domain = domain, .since = since, .now = NOW, .update_seen = true};
    struct um_error err = {0};
    char *text = NULL;

    if (um_report_import_summary(f->imp, &o, &text, &err) != UM_OK)
        fail_msg("summary: %s", err.msg);
    return text;
}

static void
test_summary(void **state)
{
    struct fixture *f = *state;
    char *t;

    t = summary(f, NULL, -1);
    assert_string_equal(t, "no received reports\n");
    free(t);
    /* 2023-11-14 and 2023-11-15 */
    import_str(
        f, "a",
        SUM_HEAD("rcv.example", "a1", 1699920000, 1700006399) SUM_REC("192.0.2.1", 10, "pass",
                                                                      "pass", "pass")
            SUM_REC("198.51.100.7", 3, "fail", "fail",
                    "fail") "<record><row><source_ip>203.0.113.9</source_ip><count>2</count>"
                            "<policy_evaluated><dkim>pass</dkim><spf>fail</spf></"
                            "policy_evaluated></row>"
                            "<identifiers><header_from>news.example.org</header_from></identifiers>"
                            "<auth_results><dkim><domain>news.example.org</domain><result>pass</"
                            "result></dkim>"
                            "<spf><domain>bounce.example.net</domain><result>pass</result></spf>"
                            "</auth_results></record></feedback>");
    import_str(f, "b",
               SUM_HEAD("other.example", "b1", 1700006400, 1700092799)
                   SUM_REC("192.0.2.1", 5, "pass", "fail", "pass")
                       SUM_REC("2001:db8::25", 4, "softfail", "pass", "pass") "</feedback>");
    t = summary(f, NULL, -1);
    assert_string_equal(
        t,
        "domain example.org: 2 report(s), 2023-11-14 to 2023-11-15, 22 message(s), 3 source(s), "
        "3 new\n"
        "             pass      fail\n"
        "  spf          15         7\n"
        "  dkim         14         8\n"
        "  dmarc        19         3\n"
        "  source                                   messages  spf-pass dkim-pass dmarc-pass  new\n"
        "  192.0.2.1                                      15        15        10         15  new\n"
        "  2001:db8::25                                    4         0         4          4  new\n"
        "  198.51.100.7                                    3         0         0          0  new\n"
        "\n"
        "domain news.example.org: 1 report(s), 2023-11-14 to 2023-11-14, 2 message(s), 1 "
        "source(s), 1 new\n"
        "             pass      fail\n"
        "  spf           2         0\n"
        "  dkim          2         0\n"
        "  dmarc         2         0\n"
        "  source                                   messages  spf-pass dkim-pass dmarc-pass  new\n"
        "  203.0.113.9                                     2         2         2          2  "
        "new\n");
    free(t);
    /* The second run has seen them all; a new report brings one new source. */
    import_str(f, "c",
               SUM_HEAD("rcv.example", "c1", 1700092800, 1700179199)
                   SUM_REC("192.0.2.1", 1, "pass", "pass", "pass")
                       SUM_REC("192.0.2.99", 6, "fail", "fail", "fail") "</feedback>");
    t = summary(f, "example.org", -1);
    assert_string_equal(
        t,
        "domain example.org: 3 report(s), 2023-11-14 to 2023-11-16, 29 message(s), 4 source(s), "
        "1 new\n"
        "             pass      fail\n"
        "  spf          16        13\n"
        "  dkim         15        14\n"
        "  dmarc        20         9\n"
        "  source                                   messages  spf-pass dkim-pass dmarc-pass  new\n"
        "  192.0.2.1                                      16        16        11         16  -\n"
        "  192.0.2.99                                      6         0         0          0  new\n"
        "  2001:db8::25                                    4         0         4          4  -\n"
        "  198.51.100.7                                    3         0         0          0  -\n");
    free(t);
    /* --since 2023-11-15: reports ending from then on; new = in no report ending before. */
    t = summary(f, "example.org", 1700006400);
    assert_string_equal(
        t,
        "domain example.org: 2 report(s), 2023-11-15 to 2023-11-16, 16 message(s), 3 source(s), "
        "2 new\n"
        "             pass      fail\n"
        "  spf           6        10\n"
        "  dkim          5        11\n"
        "  dmarc        10         6\n"
        "  source                                   messages  spf-pass dkim-pass dmarc-pass  new\n"
        "  192.0.2.1                                       6         6         1          6  -\n"
        "  192.0.2.99                                      6         0         0          0  new\n"
        "  2001:db8::25                                    4         0         4          4  "
        "new\n");
    free(t);
    assert_int_equal(count_sql(f, "SELECT count(*) FROM received_seen"), 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_parse),
        cmocka_unit_test(test_samples_parse_fields),
        cmocka_unit_test_setup_teardown(test_samples_import_and_reimport, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_sample, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail, setup, teardown),
        cmocka_unit_test(test_rfc9990),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
