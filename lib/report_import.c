/*
 * report_import.c - unpack, parse, store and summarise DMARC aggregate reports we receive
 *
 * Design note. An input goes through three independent steps, each testable alone:
 *
 *   decode   first bytes decide: 1f 8b is gzip (zlib, window 15+16); "PK\3\4" is a zip, read
 *            here from its local file header (stored or raw deflate, CRC checked) after the
 *            end-of-central-directory record says it holds exactly one file; '<' (after an
 *            optional BOM and white space) is XML; anything else must be a MIME message:
 *
 *              message  = headers CRLF body           ; RFC 5322, folded lines unfolded
 *              multipart: "--" boundary lines split the body (RFC 2046 5.1); each part is
 *                         walked again, at most UM_REPORT_IMPORT_MAX_DEPTH levels deep;
 *                         message/rfc822 parts (a forwarded report) are walked too
 *              leaf     : application/gzip, application/zip, text/xml, application/xml (and
 *                         x- variants, or octet-stream named *.xml, *.gz, *.zip) is the report;
 *                         base64, quoted-printable, 7bit, 8bit or binary transfer encoding
 *
 *            The first report attachment wins. Inflation stops as soon as the output passes
 *            UM_REPORT_IMPORT_MAX_XML, so a decompression bomb costs at most that much memory.
 *   parse    libxml2 into a tree with XML_PARSE_NONET and without XML_PARSE_NOENT,
 *            XML_PARSE_DTDLOAD or XML_PARSE_HUGE. Our internalSubset SAX hook stops the parser
 *            at any <!DOCTYPE>: an aggregate report has no DTD, and refusing it before its
 *            internal subset is read means no entity is ever declared, so neither "billion
 *            laughs" nor an external entity (file:///etc/passwd) can do anything. Text is
 *            gathered from text and CDATA children only (never through entity references).
 *            The record count is checked before any record is read. Grammar (RFC 7489
 *            appendix C; RFC 9990 has the same paths under its namespace; elements are
 *            matched by local name, the first of each name counts, unknown ones are ignored):
 *
 *              feedback/report_metadata/{org_name, email, report_id, date_range/{begin,end}}
 *              feedback/policy_published/{domain, adkim, aspf, p, sp, np, pct}
 *              feedback/record[]/row/{source_ip, count, policy_evaluated/{disposition,dkim,spf}}
 *                              /identifiers/{header_from, envelope_from, envelope_to}
 *                              /auth_results/{dkim[], spf[]}/{domain, selector, scope, result}
 *
 *            Required: org_name, report_id, begin, end, policy domain, and per record
 *            source_ip (an IP address), count and header_from. Values are trimmed, at most
 *            UM_REPORT_IMPORT_FIELD_MAX bytes and free of control characters; domains and
 *            result words are lower-cased.
 *   store    one BEGIN IMMEDIATE transaction per report; (org_name, report_id) already
 *            present means a duplicate and nothing is written. Per row, three flags are
 *            stored for the summary: spf_pass (some auth_results/spf is pass), dkim_pass
 *            (some auth_results/dkim is pass), dmarc_pass (policy_evaluated dkim or spf is
 *            pass, i.e. an aligned pass).
 *
 * The summary is SQL over received_rows grouped by header_from, then by source IP, ordered by
 * messages (descending) then address, so its text is stable. "New" is "not in received_seen"
 * (which each run then fills), or with a --since day "not in any report that ended before".
 */
#define _DEFAULT_SOURCE /* strncasecmp */
#include "report_import.h"
#include "buf.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <sqlite3.h>
#include <zlib.h>

#include "history.h"

#define RI_NS_7489 "http://dmarc.org/dmarc-xml/0.1"
#define RI_NS_9990 "urn:ietf:params:xml:ns:dmarc-2.0"
#define RI_BLOCK   65536

/* --- arena: every string of one parsed report ---------------------------------------------- */

struct ri_block {
    struct ri_block *next;
    size_t used, cap;
    char data[];
};

struct report_import_arena {
    struct ri_block *head;
};

static void *
ri_alloc(struct report_import_arena *a, size_t n)
{
    struct ri_block *b = a->head;

    n = (n + 15) & ~(size_t)15;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > RI_BLOCK ? n : RI_BLOCK;
        if ((b = malloc(sizeof(*b) + cap)) == NULL)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    b->used += n;
    return b->data + b->used - n;
}

static void
ri_arena_free(struct report_import_arena *a)
{
    while (a != NULL && a->head != NULL) {
        struct ri_block *b = a->head;
        a->head = b->next;
        free(b);
    }
    free(a);
}

/* --- decode: gzip, zip ------------------------------------------------------------------------ */

/* Inflates in[0..inlen) into a malloc'd, NUL-terminated buffer of at most
 * UM_REPORT_IMPORT_MAX_XML bytes; stops as soon as the output would be larger. *used gets
 * the compressed bytes consumed. */
static enum um_status
ri_inflate(const char *name, const char *what, const unsigned char *in, size_t inlen, int wbits,
           unsigned char **out, size_t *outlen, size_t *used, struct um_error *err)
{
    z_stream z;
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    enum um_status ret;
    int rc;

    *out = NULL;
    *outlen = 0;
    memset(&z, 0, sizeof(z));
    if (inlen > UINT32_MAX / 2)
        return um_error_set(err, UM_ELIMIT, "%s: %s data too large", name, what);
    if (inflateInit2(&z, wbits) != Z_OK)
        return um_error_set(err, UM_ENOMEM, "%s: inflateInit failed", name);
    z.next_in = (unsigned char *)(uintptr_t)in; /* zlib's API is not const-correct */
    z.avail_in = (uInt)inlen;
    for (;;) {
        if (len + 1 >= cap) {
            size_t ncap = cap == 0 ? 65536 : cap * 2;
            unsigned char *nb;
            if (ncap > UM_REPORT_IMPORT_MAX_XML + 2)
                ncap = UM_REPORT_IMPORT_MAX_XML + 2;
            if (ncap <= cap) {
                ret = um_error_set(err, UM_ELIMIT, "%s: decompressed size exceeds %u bytes", name,
                                   UM_REPORT_IMPORT_MAX_XML);
                goto fail;
            }
            if ((nb = realloc(buf, ncap)) == NULL) {
                ret = um_error_set(err, UM_ENOMEM, "%s: out of memory", name);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - 1 - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - 1 - z.avail_out;
        if (len > UM_REPORT_IMPORT_MAX_XML) {
            ret = um_error_set(err, UM_ELIMIT, "%s: decompressed size exceeds %u bytes", name,
                               UM_REPORT_IMPORT_MAX_XML);
            goto fail;
        }
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_OK || (rc == Z_BUF_ERROR && z.avail_out == 0 && z.avail_in > 0))
            continue;
        if (rc == Z_BUF_ERROR) {
            ret = um_error_set(err, UM_EINVAL, "%s: %s data is truncated", name, what);
            goto fail;
        }
        ret =
            um_error_set(err, rc == Z_MEM_ERROR ? UM_ENOMEM : UM_EINVAL, "%s: corrupt %s data (%s)",
                         name, what, z.msg != NULL ? z.msg : "inflate failed");
        goto fail;
    }
    buf[len] = '\0';
    *used = inlen - z.avail_in;
    (void)inflateEnd(&z);
    *out = buf;
    *outlen = len;
    return UM_OK;
fail:
    (void)inflateEnd(&z);
    free(buf);
    return ret;
}

static uint32_t
ri_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned
ri_le16(const unsigned char *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* PKWARE APPNOTE 4.3.7 local file header, 4.3.16 end of central directory record. */
static enum um_status
ri_unzip(const char *name, const unsigned char *d, size_t len, unsigned char **out, size_t *outlen,
         struct um_error *err)
{
    const unsigned char *eocd = NULL, *data;
    unsigned flags, method, nlen, xlen, entries;
    uint32_t crc, csize;
    size_t used = 0, off;
    enum um_status ret;

    if (len < 30)
        return um_error_set(err, UM_EINVAL, "%s: truncated zip archive", name);
    for (size_t i = len - 22 + 1; i-- > 0 && len - i <= 22 + 65535;) {
        if (memcmp(d + i, "PK\5\6", 4) == 0) {
            eocd = d + i;
            break;
        }
    }
    if (eocd == NULL)
        return um_error_set(err, UM_EINVAL,
                            "%s: zip archive has no end of central directory (truncated?)", name);
    entries = ri_le16(eocd + 10);
    if (entries != 1)
        return um_error_set(err, UM_EINVAL,
                            "%s: zip archive holds %u files; only a single report file is "
                            "accepted",
                            name, entries);
    flags = ri_le16(d + 6);
    method = ri_le16(d + 8);
    crc = ri_le32(d + 14);
    csize = ri_le32(d + 18);
    nlen = ri_le16(d + 26);
    xlen = ri_le16(d + 28);
    if (flags & 1u)
        return um_error_set(err, UM_EINVAL, "%s: encrypted zip archives are not supported", name);
    off = 30 + (size_t)nlen + xlen;
    if (off > len)
        return um_error_set(err, UM_EINVAL, "%s: truncated zip archive", name);
    data = d + off;
    if (method == 0) {
        if ((flags & 8u) || csize == 0xffffffffu)
            return um_error_set(err, UM_EINVAL,
                                "%s: stored zip member without its size is not supported", name);
        if (csize > len - off)
            return um_error_set(err, UM_EINVAL, "%s: truncated zip archive", name);
        if (csize > UM_REPORT_IMPORT_MAX_XML)
            return um_error_set(err, UM_ELIMIT, "%s: decompressed size exceeds %u bytes", name,
                                UM_REPORT_IMPORT_MAX_XML);
        if ((*out = malloc((size_t)csize + 1)) == NULL)
            return um_error_set(err, UM_ENOMEM, "%s: out of memory", name);
        memcpy(*out, data, csize);
        (*out)[csize] = '\0';
        *outlen = csize;
        used = csize;
    } else if (method == 8) {
        size_t avail = len - off;
        if (!(flags & 8u) && csize != 0xffffffffu) {
            if (csize > avail)
                return um_error_set(err, UM_EINVAL, "%s: truncated zip archive", name);
            avail = csize;
        }
        if ((ret = ri_inflate(name, "zip", data, avail, -15, out, outlen, &used, err)) != UM_OK)
            return ret;
    } else {
        return um_error_set(err, UM_EINVAL,
                            "%s: zip compression method %u is not supported (only stored and "
                            "deflate)",
                            name, method);
    }
    if (flags & 8u) { /* APPNOTE 4.3.9: data descriptor, optional signature, then crc */
        const unsigned char *dd = data + used;
        if ((size_t)(dd - d) + 4 <= len && memcmp(dd, "PK\7\10", 4) == 0)
            dd += 4;
        crc = (size_t)(dd - d) + 4 <= len ? ri_le32(dd) : 0;
    }
    if (crc32(0L, *out, (uInt)*outlen) != crc) {
        free(*out);
        *out = NULL;
        return um_error_set(err, UM_EINVAL, "%s: zip member fails its CRC check", name);
    }
    return UM_OK;
}

/* --- decode: MIME ------------------------------------------------------------------------------ */

struct ri_part {
    char type[128];     /* lower case media type, "" when absent */
    char boundary[128]; /* RFC 2046: at most 70 characters */
    char filename[128];
    char cte[32]; /* lower case transfer encoding */
};

/* A parameter of a header value: name=value or name="value". */
static void
ri_param(const char *v, size_t vlen, const char *pname, char *out, size_t outlen)
{
    size_t pl = strlen(pname);

    out[0] = '\0';
    for (size_t i = 0; i + pl + 1 < vlen; i++) {
        size_t j, n = 0;
        if (v[i] != ';')
            continue;
        j = i + 1;
        while (j < vlen && (v[j] == ' ' || v[j] == '\t'))
            j++;
        if (j + pl >= vlen || strncasecmp(v + j, pname, pl) != 0 || v[j + pl] != '=')
            continue;
        j += pl + 1;
        if (j < vlen && v[j] == '"') {
            for (j++; j < vlen && v[j] != '"' && n + 1 < outlen; j++)
                out[n++] = v[j];
        } else {
            for (; j < vlen && v[j] != ';' && v[j] != ' ' && v[j] != '\t' && n + 1 < outlen; j++)
                out[n++] = v[j];
        }
        out[n] = '\0';
        return;
    }
}

/* The value's first token, lower case, trimmed. */
static void
ri_token(const char *v, size_t vlen, char *out, size_t outlen)
{
    size_t n = 0, i = 0;

    while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
        i++;
    for (; i < vlen && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && n + 1 < outlen; i++)
        out[n++] = (char)um_ascii_tolower((unsigned char)v[i]);
    out[n] = '\0';
}

/* Parses the header block of d; *body gets the offset of the body. false: not a header block. */
static bool
ri_headers(const char *d, size_t len, struct ri_part *pt, size_t *body)
{
    size_t i = 0;
    bool any = false;

    memset(pt, 0, sizeof(*pt));
    while (i < len) {
        size_t s = i, e, colon;
        char line[2048];
        size_t n = 0;

        if (d[i] == '\n' || (d[i] == '\r' && i + 1 < len && d[i + 1] == '\n')) {
            *body = i + (d[i] == '\r' ? 2 : 1);
            return any;
        }
        /* One logical (unfolded) line into line[]; the excess of a huge header is cut. */
        for (;;) {
            e = i;
            while (e < len && d[e] != '\n')
                e++;
            for (size_t k = i; k < e && n + 1 < sizeof(line); k++) {
                if (d[k] != '\r')
                    line[n++] = d[k];
            }
            i = e < len ? e + 1 : e;
            if (i < len && (d[i] == ' ' || d[i] == '\t'))
                continue;
            break;
        }
        line[n] = '\0';
        colon = strcspn(line, ":");
        if (colon == n || colon == 0) {
            if (s == 0)
                return false;
            continue;
        }
        any = true;
        if (colon == 12 && strncasecmp(line, "content-type", 12) == 0) {
            ri_token(line + 13, n - 13, pt->type, sizeof(pt->type));
            ri_param(line + 13, n - 13, "boundary", pt->boundary, sizeof(pt->boundary));
            if (pt->filename[0] == '\0')
                ri_param(line + 13, n - 13, "name", pt->filename, sizeof(pt->filename));
        } else if (colon == 25 && strncasecmp(line, "content-transfer-encoding", 25) == 0) {
            ri_token(line + 26, n - 26, pt->cte, sizeof(pt->cte));
        } else if (colon == 19 && strncasecmp(line, "content-disposition", 19) == 0) {
            ri_param(line + 20, n - 20, "filename", pt->filename, sizeof(pt->filename));
        }
    }
    *body = len;
    return any;
}

static int
ri_b64(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Transfer decoding (RFC 2045 6.7, 6.8) into a malloc'd buffer. */
static enum um_status
ri_cte(const char *name, const struct ri_part *pt, const char *d, size_t len, unsigned char **out,
       size_t *outlen, struct um_error *err)
{
    unsigned char *o = malloc(len + 1);
    size_t n = 0;

    if (o == NULL)
        return um_error_set(err, UM_ENOMEM, "%s: out of memory", name);
    if (strcmp(pt->cte, "base64") == 0) {
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)d[i];
            int v;
            if (c == '=')
                break;
            if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
                continue;
            if ((v = ri_b64(c)) < 0) {
                free(o);
                return um_error_set(err, UM_EINVAL,
                                    "%s: invalid base64 in the attachment (byte 0x%02x)", name, c);
            }
            acc = (acc << 6) | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                o[n++] = (unsigned char)(acc >> bits);
            }
        }
    } else if (strcmp(pt->cte, "quoted-printable") == 0) {
        for (size_t i = 0; i < len; i++) {
            if (d[i] == '=' && i + 2 < len + 0 && um_hexval((unsigned char)d[i + 1]) >= 0
                && um_hexval((unsigned char)d[i + 2]) >= 0) {
                o[n++] = (unsigned char)(um_hexval((unsigned char)d[i + 1]) * 16
                                         + um_hexval((unsigned char)d[i + 2]));
                i += 2;
            } else if (d[i] == '=' && i + 1 < len && (d[i + 1] == '\n' || d[i + 1] == '\r')) {
                i += d[i + 1] == '\r' && i + 2 < len && d[i + 2] == '\n' ? 2 : 1;
            } else {
                o[n++] = (unsigned char)d[i];
            }
        }
    } else if (pt->cte[0] == '\0' || strcmp(pt->cte, "7bit") == 0 || strcmp(pt->cte, "8bit") == 0
               || strcmp(pt->cte, "binary") == 0) {
        memcpy(o, d, len);
        n = len;
    } else {
        free(o);
        return um_error_set(err, UM_EINVAL, "%s: unknown Content-Transfer-Encoding \"%s\"", name,
                            pt->cte);
    }
    o[n] = '\0';
    *out = o;
    *outlen = n;
    return UM_OK;
}

static bool
ri_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static bool
ri_is_report_part(const struct ri_part *pt)
{
    static const char *const types[] = {
        "application/gzip",  "application/x-gzip",           "application/zip",
        "application/x-zip", "application/x-zip-compressed", "text/xml",
        "application/xml",
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(pt->type, types[i]) == 0)
            return true;
    }
    return strcmp(pt->type, "application/octet-stream") == 0
           && (ri_ends_with(pt->filename, ".xml") || ri_ends_with(pt->filename, ".gz")
               || ri_ends_with(pt->filename, ".zip"));
}

static enum um_status ri_decode(const char *name, const unsigned char *d, size_t len, int depth,
                                unsigned char **xml, size_t *xmllen, struct um_error *err);

/* UM_ENOENT (err untouched): no report in this entity. */
static enum um_status
ri_mime(const char *name, const char *d, size_t len, int depth, unsigned char **xml, size_t *xmllen,
        struct um_error *err)
{
    struct ri_part pt;
    size_t body;

    if (depth > UM_REPORT_IMPORT_MAX_DEPTH)
        return um_error_set(err, UM_ELIMIT, "%s: MIME nesting deeper than %d levels", name,
                            UM_REPORT_IMPORT_MAX_DEPTH);
    if (!ri_headers(d, len, &pt, &body))
        return depth == 0 ? um_error_set(err, UM_EINVAL,
                                         "%s: not a report: neither XML, gzip, zip nor a mail "
                                         "message",
                                         name)
                          : UM_ENOENT;
    if (strncmp(pt.type, "multipart/", 10) == 0) {
        size_t bl = strlen(pt.boundary), i = body, start = 0;
        bool in = false;

        if (bl == 0)
            return um_error_set(err, UM_EINVAL, "%s: multipart message without a boundary", name);
        /* RFC 2046 5.1.1: delimiter lines are "--" boundary at the start of a line. */
        while (i < len) {
            size_t e = i;
            while (e < len && d[e] != '\n')
                e++;
            if (e - i >= bl + 2 && d[i] == '-' && d[i + 1] == '-'
                && memcmp(d + i + 2, pt.boundary, bl) == 0) {
                bool last = e - i >= bl + 4 && d[i + bl + 2] == '-' && d[i + bl + 3] == '-';
                if (in) {
                    size_t end = i;
                    enum um_status ret;
                    if (end > start && d[end - 1] == '\n')
                        end--;
                    if (end > start && d[end - 1] == '\r')
                        end--;
                    ret = ri_mime(name, d + start, end - start, depth + 1, xml, xmllen, err);
                    if (ret != UM_ENOENT)
                        return ret;
                }
                if (last)
                    break;
                in = true;
                start = e < len ? e + 1 : e;
            }
            i = e < len ? e + 1 : e;
        }
        return depth == 0 ? um_error_set(err, UM_EINVAL,
                                         "%s: no aggregate report attachment (application/gzip, "
                                         "application/zip or text/xml) in the message",
                                         name)
                          : UM_ENOENT;
    }
    if (strcmp(pt.type, "message/rfc822") == 0)
        return ri_mime(name, d + body, len - body, depth + 1, xml, xmllen, err);
    if (ri_is_report_part(&pt)) {
        unsigned char *raw = NULL;
        size_t rawlen = 0;
        enum um_status ret;

        if ((ret = ri_cte(name, &pt, d + body, len - body, &raw, &rawlen, err)) != UM_OK)
            return ret;
        ret = ri_decode(name, raw, rawlen, -1, xml, xmllen, err);
        free(raw);
        return ret;
    }
    return depth == 0 ? um_error_set(err, UM_EINVAL,
                                     "%s: no aggregate report attachment (application/gzip, "
                                     "application/zip or text/xml) in the message",
                                     name)
                      : UM_ENOENT;
}

/* depth < 0: inside an attachment, where no mail message is accepted any more. */
static enum um_status
ri_decode(const char *name, const unsigned char *d, size_t len, int depth, unsigned char **xml,
          size_t *xmllen, struct um_error *err)
{
    size_t i = 0, used;
    enum um_status ret;

    *xml = NULL;
    *xmllen = 0;
    if (len > UM_REPORT_IMPORT_MAX_INPUT)
        return um_error_set(err, UM_ELIMIT, "%s: input size %zu exceeds %u bytes", name, len,
                            UM_REPORT_IMPORT_MAX_INPUT);
    if (len >= 2 && d[0] == 0x1f && d[1] == 0x8b)
        return ri_inflate(name, "gzip", d, len, 15 + 16, xml, xmllen, &used, err);
    if (len >= 4 && memcmp(d, "PK\3\4", 4) == 0)
        return ri_unzip(name, d, len, xml, xmllen, err);
    if (len >= 4 && memcmp(d, "PK\5\6", 4) == 0)
        return um_error_set(err, UM_EINVAL, "%s: empty zip archive", name);
    if (len >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0)
        i = 3;
    while (i < len && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
        i++;
    if (i < len && d[i] == '<') {
        if (len > UM_REPORT_IMPORT_MAX_XML)
            return um_error_set(err, UM_ELIMIT, "%s: XML size %zu exceeds %u bytes", name, len,
                                UM_REPORT_IMPORT_MAX_XML);
        if ((*xml = malloc(len + 1)) == NULL)
            return um_error_set(err, UM_ENOMEM, "%s: out of memory", name);
        memcpy(*xml, d, len);
        (*xml)[len] = '\0';
        *xmllen = len;
        return UM_OK;
    }
    if (depth < 0)
        return um_error_set(err, UM_EINVAL, "%s: the attachment is neither XML, gzip nor zip",
                            name);
    if ((ret = ri_mime(name, (const char *)d, len, 0, xml, xmllen, err)) == UM_ENOENT)
        ret = um_error_set(err, UM_EINVAL,
                           "%s: no aggregate report attachment (application/gzip, "
                           "application/zip or text/xml) in the message",
                           name);
    return ret;
}

enum um_status
um_report_import_decode(const char *name, const unsigned char *data, size_t len,
                        unsigned char **xml, size_t *xmllen, struct um_error *err)
{
    return ri_decode(name, data, len, 0, xml, xmllen, err);
}

/* --- parse ------------------------------------------------------------------------------------ */

struct ri_parse {
    const char *name;
    struct report_import_arena *arena;
    struct um_error *err;
    char where[48]; /* "record 3: " or "" */
};

/* What the SAX hooks saw: a DOCTYPE (refused), the first error (libxml2 keeps the last). */
struct ri_sax {
    bool doctype;
    bool have_error;
    int line;
    char msg[160];
};

static void
ri_no_doctype(void *ctx, const xmlChar *name, const xmlChar *ext, const xmlChar *sys)
{
    xmlParserCtxtPtr c = ctx;

    (void)name;
    (void)ext;
    (void)sys;
    ((struct ri_sax *)c->_private)->doctype = true;
    xmlStopParser(c);
}

static void
ri_xml_error(void *ctx, xmlErrorPtr e)
{
    xmlParserCtxtPtr c = ctx;
    struct ri_sax *s = c != NULL ? c->_private : NULL;

    if (s == NULL || e == NULL || s->have_error || e->level < XML_ERR_ERROR)
        return;
    s->have_error = true;
    s->line = e->line;
    (void)snprintf(s->msg, sizeof(s->msg), "%s", e->message != NULL ? e->message : "");
    s->msg[strcspn(s->msg, "\n")] = '\0';
}

static bool
ri_is(const xmlNode *n, const char *local)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, local) == 0;
}

static const xmlNode *
ri_child(const xmlNode *n, const char *local)
{
    for (const xmlNode *c = n != NULL ? n->children : NULL; c != NULL; c = c->next) {
        if (ri_is(c, local))
            return c;
    }
    return NULL;
}

/* The element's text (text and CDATA children only), trimmed, checked, copied into the
 * arena; lower-cased when asked. Absent element: "" (or an error when required). */
static enum um_status
ri_text(struct ri_parse *ps, const xmlNode *parent, const char *local, bool required, bool lower,
        const char **out)
{
    const xmlNode *n = ri_child(parent, local);
    char buf[UM_REPORT_IMPORT_FIELD_MAX + 1];
    size_t len = 0, s = 0;
    char *p;

    *out = "";
    if (n == NULL) {
        if (required)
            return um_error_set(ps->err, UM_EINVAL, "%s: %s<%s> is missing", ps->name, ps->where,
                                local);
        return UM_OK;
    }
    for (const xmlNode *c = n->children; c != NULL; c = c->next) {
        size_t cl;
        const char *t;
        if (c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE)
            continue;
        t = (const char *)c->content;
        cl = t != NULL ? strlen(t) : 0;
        for (size_t i = 0; i < cl; i++) {
            unsigned char ch = (unsigned char)t[i];
            if (len == 0 && (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'))
                continue; /* leading white space */
            if (len >= sizeof(buf) - 1)
                return um_error_set(ps->err, UM_ELIMIT, "%s: %s<%s> is longer than %d bytes",
                                    ps->name, ps->where, local, UM_REPORT_IMPORT_FIELD_MAX);
            buf[len++] = (char)ch;
        }
    }
    while (len > 0
           && (buf[len - 1] == ' ' || buf[len - 1] == '\t' || buf[len - 1] == '\r'
               || buf[len - 1] == '\n'))
        len--;
    for (; s < len; s++) {
        unsigned char ch = (unsigned char)buf[s];
        if (ch < 0x20 || ch == 0x7f)
            return um_error_set(ps->err, UM_EINVAL, "%s: %s<%s> contains a control character",
                                ps->name, ps->where, local);
        if (lower && ch < 0x80)
            buf[s] = (char)um_ascii_tolower(ch);
    }
    if (len == 0 && required)
        return um_error_set(ps->err, UM_EINVAL, "%s: %s<%s> is empty", ps->name, ps->where, local);
    if ((p = ri_alloc(ps->arena, len + 1)) == NULL)
        return um_error_set(ps->err, UM_ENOMEM, "%s: out of memory", ps->name);
    memcpy(p, buf, len);
    p[len] = '\0';
    *out = p;
    return UM_OK;
}

/* An unsigned decimal; "1337270400.0" (trailing zeros after a dot) is accepted. */
static enum um_status
ri_number(struct ri_parse *ps, const xmlNode *parent, const char *local, bool required,
          uint64_t max, uint64_t *out, bool *present)
{
    const char *s;
    enum um_status ret;
    uint64_t v = 0;
    size_t i = 0;

    *out = 0;
    if (present != NULL)
        *present = false;
    if ((ret = ri_text(ps, parent, local, required, false, &s)) != UM_OK || s[0] == '\0')
        return ret;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (max - (uint64_t)(s[i] - '0')) / 10)
            return um_error_set(ps->err, UM_EINVAL, "%s: %s<%s> %s is out of range", ps->name,
                                ps->where, local, s);
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i > 0 && s[i] == '.') {
        for (i++; s[i] == '0'; i++)
            ;
    }
    if (i == 0 || s[i] != '\0')
        return um_error_set(ps->err, UM_EINVAL, "%s: %s<%s> \"%s\" is not a number", ps->name,
                            ps->where, local, s);
    *out = v;
    if (present != NULL)
        *present = true;
    return UM_OK;
}

static enum um_status
ri_auth(struct ri_parse *ps, const xmlNode *ar, const char *kind, size_t *n,
        struct um_report_import_auth **out)
{
    enum um_status ret;
    size_t k = 0;

    *n = 0;
    *out = NULL;
    for (const xmlNode *c = ar != NULL ? ar->children : NULL; c != NULL; c = c->next)
        k += ri_is(c, kind);
    if (k == 0)
        return UM_OK;
    if (k > UM_REPORT_IMPORT_MAX_AUTH)
        return um_error_set(ps->err, UM_ELIMIT, "%s: %smore than %d %s results", ps->name,
                            ps->where, UM_REPORT_IMPORT_MAX_AUTH, kind);
    if ((*out = ri_alloc(ps->arena, k * sizeof(**out))) == NULL)
        return um_error_set(ps->err, UM_ENOMEM, "%s: out of memory", ps->name);
    for (const xmlNode *c = ar->children; c != NULL; c = c->next) {
        struct um_report_import_auth *a;
        if (!ri_is(c, kind))
            continue;
        a = &(*out)[(*n)++];
        if ((ret = ri_text(ps, c, "domain", false, true, &a->domain)) != UM_OK
            || (ret = ri_text(ps, c, "selector", false, false, &a->selector)) != UM_OK
            || (ret = ri_text(ps, c, "scope", false, true, &a->scope)) != UM_OK
            || (ret = ri_text(ps, c, "result", false, true, &a->result)) != UM_OK)
            return ret;
    }
    return UM_OK;
}

static enum um_status
ri_record(struct ri_parse *ps, const xmlNode *rec, struct um_report_import_row *row)
{
    const xmlNode *r = ri_child(rec, "row"), *pe, *id, *ar;
    unsigned char addr[16];
    enum um_status ret;

    if (r == NULL)
        return um_error_set(ps->err, UM_EINVAL, "%s: %s<row> is missing", ps->name, ps->where);
    pe = ri_child(r, "policy_evaluated");
    id = ri_child(rec, "identifiers");
    ar = ri_child(rec, "auth_results");
    if (id == NULL)
        return um_error_set(ps->err, UM_EINVAL, "%s: %s<identifiers> is missing", ps->name,
                            ps->where);
    if ((ret = ri_text(ps, r, "source_ip", true, true, &row->source_ip)) != UM_OK)
        return ret;
    if (inet_pton(AF_INET, row->source_ip, addr) != 1
        && inet_pton(AF_INET6, row->source_ip, addr) != 1)
        return um_error_set(ps->err, UM_EINVAL, "%s: %s<source_ip> \"%s\" is not an IP address",
                            ps->name, ps->where, row->source_ip);
    if ((ret = ri_number(ps, r, "count", true, (uint64_t)1 << 53, &row->count, NULL)) != UM_OK
        || (ret = ri_text(ps, pe, "disposition", false, true, &row->disposition)) != UM_OK
        || (ret = ri_text(ps, pe, "dkim", false, true, &row->dkim_eval)) != UM_OK
        || (ret = ri_text(ps, pe, "spf", false, true, &row->spf_eval)) != UM_OK
        || (ret = ri_text(ps, id, "header_from", true, true, &row->header_from)) != UM_OK
        || (ret = ri_text(ps, id, "envelope_from", false, true, &row->envelope_from)) != UM_OK
        || (ret = ri_text(ps, id, "envelope_to", false, true, &row->envelope_to)) != UM_OK
        || (ret = ri_auth(ps, ar, "dkim", &row->ndkim, &row->dkim)) != UM_OK
        || (ret = ri_auth(ps, ar, "spf", &row->nspf, &row->spf)) != UM_OK)
        return ret;
    return UM_OK;
}

static enum um_status
ri_tree(struct ri_parse *ps, const xmlNode *root, struct um_report_import_report *rep)
{
    const xmlNode *md, *pp, *dr;
    enum um_status ret;
    uint64_t v;
    size_t nrec = 0, i = 0;
    bool present;

    if (root == NULL || !ri_is(root, "feedback"))
        return um_error_set(ps->err, UM_EINVAL, "%s: the root element is <%s>, not <feedback>",
                            ps->name, root != NULL ? (const char *)root->name : "");
    if (root->ns == NULL || root->ns->href == NULL
        || strcmp((const char *)root->ns->href, RI_NS_7489) == 0) {
        rep->format = UM_REPORT_IMPORT_RFC7489;
    } else if (strcmp((const char *)root->ns->href, RI_NS_9990) == 0) {
        rep->format = UM_REPORT_IMPORT_RFC9990;
    } else {
        char ns[80];
        (void)snprintf(ns, sizeof(ns), "%s", (const char *)root->ns->href);
        return um_error_set(ps->err, UM_EINVAL, "%s: unknown report namespace \"%s\"", ps->name,
                            ns);
    }
    for (const xmlNode *c = root->children; c != NULL; c = c->next)
        nrec += ri_is(c, "record");
    if (nrec > UM_REPORT_IMPORT_MAX_RECORDS)
        return um_error_set(ps->err, UM_ELIMIT, "%s: more than %d records", ps->name,
                            UM_REPORT_IMPORT_MAX_RECORDS);
    if ((md = ri_child(root, "report_metadata")) == NULL)
        return um_error_set(ps->err, UM_EINVAL, "%s: <report_metadata> is missing", ps->name);
    if ((pp = ri_child(root, "policy_published")) == NULL)
        return um_error_set(ps->err, UM_EINVAL, "%s: <policy_published> is missing", ps->name);
    if ((dr = ri_child(md, "date_range")) == NULL)
        return um_error_set(ps->err, UM_EINVAL, "%s: <date_range> is missing", ps->name);
    if ((ret = ri_text(ps, md, "org_name", true, false, &rep->org_name)) != UM_OK
        || (ret = ri_text(ps, md, "email", false, false, &rep->email)) != UM_OK
        || (ret = ri_text(ps, md, "report_id", true, false, &rep->report_id)) != UM_OK
        || (ret = ri_number(ps, dr, "begin", true, (uint64_t)1 << 40, &v, NULL)) != UM_OK)
        return ret;
    rep->begin = (int64_t)v;
    if ((ret = ri_number(ps, dr, "end", true, (uint64_t)1 << 40, &v, NULL)) != UM_OK)
        return ret;
    rep->end = (int64_t)v;
    if (rep->end < rep->begin)
        return um_error_set(ps->err, UM_EINVAL, "%s: <date_range> ends before it begins", ps->name);
    if ((ret = ri_text(ps, pp, "domain", true, true, &rep->domain)) != UM_OK
        || (ret = ri_text(ps, pp, "adkim", false, true, &rep->adkim)) != UM_OK
        || (ret = ri_text(ps, pp, "aspf", false, true, &rep->aspf)) != UM_OK
        || (ret = ri_text(ps, pp, "p", false, true, &rep->p)) != UM_OK
        || (ret = ri_text(ps, pp, "sp", false, true, &rep->sp)) != UM_OK
        || (ret = ri_text(ps, pp, "np", false, true, &rep->np)) != UM_OK
        || (ret = ri_number(ps, pp, "pct", false, 100, &v, &present)) != UM_OK)
        return ret;
    rep->pct = present ? (int)v : -1;
    if (nrec > 0 && (rep->rows = calloc(nrec, sizeof(*rep->rows))) == NULL)
        return um_error_set(ps->err, UM_ENOMEM, "%s: out of memory", ps->name);
    for (const xmlNode *c = root->children; c != NULL; c = c->next) {
        if (!ri_is(c, "record"))
            continue;
        (void)snprintf(ps->where, sizeof(ps->where), "record %zu: ", i + 1);
        if ((ret = ri_record(ps, c, &rep->rows[i])) != UM_OK)
            return ret;
        rep->messages += rep->rows[i].count;
        rep->nrows = ++i;
    }
    return UM_OK;
}

enum um_status
um_report_import_parse(const char *name, struct um_str xml, struct um_report_import_report **out,
                       struct um_error *err)
{
    /* No XML_PARSE_NOENT (no entity substitution), no DTDLOAD/DTDATTR/DTDVALID, no HUGE, no
     * XINCLUDE; NONET forbids the network even if something asked for it. */
    const int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
    struct report_import_arena *arena = NULL;
    struct um_report_import_report *rep = NULL;
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    struct ri_parse ps = {.name = name, .err = err};
    struct ri_sax sax = {0};
    enum um_status ret;

    *out = NULL;
    if (xml.len > UM_REPORT_IMPORT_MAX_XML)
        return um_error_set(err, UM_ELIMIT, "%s: XML size %zu exceeds %u bytes", name, xml.len,
                            UM_REPORT_IMPORT_MAX_XML);
    if ((arena = calloc(1, sizeof(*arena))) == NULL || (rep = calloc(1, sizeof(*rep))) == NULL
        || (ctxt = xmlNewParserCtxt()) == NULL) {
        ret = um_error_set(err, UM_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    ps.arena = arena;
    rep->arena = arena;
    ctxt->_private = &sax;
    ctxt->sax->internalSubset = ri_no_doctype;
    ctxt->sax->serror = ri_xml_error;
    doc = xmlCtxtReadMemory(ctxt, xml.p, (int)xml.len, NULL, NULL, opts);
    if (sax.doctype) {
        ret = um_error_set(err, UM_EINVAL,
                           "%s: refused: the XML has a DOCTYPE (DTDs and entity declarations are "
                           "not allowed in a report)",
                           name);
        goto out;
    }
    if (doc == NULL || !ctxt->wellFormed) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        if (!sax.have_error && e != NULL) {
            sax.line = e->line;
            (void)snprintf(sax.msg, sizeof(sax.msg), "%s", e->message != NULL ? e->message : "");
            sax.msg[strcspn(sax.msg, "\n")] = '\0';
        }
        ret = um_error_set(err, UM_EINVAL, "%s: malformed XML at line %d: %s", name, sax.line,
                           sax.msg[0] != '\0' ? sax.msg : "parse error");
        goto out;
    }
    if ((ret = ri_tree(&ps, xmlDocGetRootElement(doc), rep)) != UM_OK)
        goto out;
    *out = rep;
    rep = NULL;
out:
    if (doc != NULL)
        xmlFreeDoc(doc);
    if (ctxt != NULL)
        xmlFreeParserCtxt(ctxt);
    if (rep != NULL) {
        free(rep->rows);
        free(rep);
        ri_arena_free(arena);
    } else if (*out == NULL) {
        ri_arena_free(arena);
    }
    return ret;
}

void
um_report_import_report_free(struct um_report_import_report *r)
{
    if (r == NULL)
        return;
    ri_arena_free(r->arena);
    free(r->rows);
    free(r);
}

/* --- store ------------------------------------------------------------------------------------ */

struct um_report_import {
    sqlite3 *db;
    char path[512];
};

static const char ri_schema[] =
    "CREATE TABLE IF NOT EXISTS received_reports ("
    " id INTEGER PRIMARY KEY,"
    " org_name TEXT NOT NULL,"
    " report_id TEXT NOT NULL,"
    " email TEXT NOT NULL,"
    " begin_ts INTEGER NOT NULL,"
    " end_ts INTEGER NOT NULL,"
    " format TEXT NOT NULL,"
    " policy_domain TEXT NOT NULL,"
    " adkim TEXT NOT NULL, aspf TEXT NOT NULL, p TEXT NOT NULL, sp TEXT NOT NULL,"
    " np TEXT NOT NULL, pct INTEGER,"
    " records INTEGER NOT NULL,"
    " messages INTEGER NOT NULL,"
    " source TEXT NOT NULL,"
    " imported INTEGER NOT NULL,"
    " UNIQUE (org_name, report_id));"
    "CREATE TABLE IF NOT EXISTS received_rows ("
    " id INTEGER PRIMARY KEY,"
    " report INTEGER NOT NULL,"
    " source_ip TEXT NOT NULL,"
    " count INTEGER NOT NULL,"
    " disposition TEXT NOT NULL,"
    " dkim_eval TEXT NOT NULL,"
    " spf_eval TEXT NOT NULL,"
    " header_from TEXT NOT NULL,"
    " envelope_from TEXT NOT NULL,"
    " envelope_to TEXT NOT NULL,"
    " spf_pass INTEGER NOT NULL,"
    " dkim_pass INTEGER NOT NULL,"
    " dmarc_pass INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS received_rows_report ON received_rows (report);"
    "CREATE INDEX IF NOT EXISTS received_rows_from ON received_rows (header_from, source_ip);"
    "CREATE TABLE IF NOT EXISTS received_auth ("
    " row_id INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " result TEXT NOT NULL,"
    " PRIMARY KEY (row_id, kind, idx));"
    "CREATE TABLE IF NOT EXISTS received_seen ("
    " domain TEXT NOT NULL,"
    " source_ip TEXT NOT NULL,"
    " first_seen INTEGER NOT NULL,"
    " PRIMARY KEY (domain, source_ip));";

static enum um_status
ri_sql_error(struct um_report_import *imp, const char *what, struct um_error *err)
{
    return um_error_set(err, UM_EIO, "report-import: %s: %s: %s", imp->path, what,
                        sqlite3_errmsg(imp->db));
}

enum um_status
um_report_import_open(const char *path, struct um_report_import **out, struct um_error *err)
{
    struct um_report_import *imp;
    struct um_history *h = NULL;
    enum um_status ret;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return um_error_set(err, UM_EINVAL, "report-import: no database path");
    /* The history module owns its schema (and the WAL mode): opening creates or checks it. */
    if ((ret = um_history_open(path, 1, &h, err)) != UM_OK)
        return ret;
    um_history_close(h, 0, NULL);
    if ((imp = calloc(1, sizeof(*imp))) == NULL)
        return um_error_set(err, UM_ENOMEM, "report-import: out of memory");
    (void)snprintf(imp->path, sizeof(imp->path), "%s", path);
    if (sqlite3_open_v2(path, &imp->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL)
        != SQLITE_OK) {
        ret = ri_sql_error(imp, "open", err);
        goto fail;
    }
    (void)sqlite3_busy_timeout(imp->db, 10000);
    if (sqlite3_exec(imp->db, ri_schema, NULL, NULL, NULL) != SQLITE_OK) {
        ret = ri_sql_error(imp, "create tables", err);
        goto fail;
    }
    *out = imp;
    return UM_OK;
fail:
    um_report_import_close(imp);
    return ret;
}

void
um_report_import_close(struct um_report_import *imp)
{
    if (imp == NULL)
        return;
    if (imp->db != NULL)
        sqlite3_close(imp->db);
    free(imp);
}

static bool
ri_any_pass(const struct um_report_import_auth *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a[i].result, "pass") == 0)
            return true;
    }
    return false;
}

static int
ri_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static enum um_status
ri_store_row(struct um_report_import *imp, sqlite3_stmt *ins_row, sqlite3_stmt *ins_auth,
             int64_t report, const struct um_report_import_row *w, struct um_error *err)
{
    int64_t row_id;
    int rc = SQLITE_OK;

    sqlite3_reset(ins_row);
    rc |= sqlite3_bind_int64(ins_row, 1, report);
    rc |= ri_bind_text(ins_row, 2, w->source_ip);
    rc |= sqlite3_bind_int64(ins_row, 3, (sqlite3_int64)w->count);
    rc |= ri_bind_text(ins_row, 4, w->disposition);
    rc |= ri_bind_text(ins_row, 5, w->dkim_eval);
    rc |= ri_bind_text(ins_row, 6, w->spf_eval);
    rc |= ri_bind_text(ins_row, 7, w->header_from);
    rc |= ri_bind_text(ins_row, 8, w->envelope_from);
    rc |= ri_bind_text(ins_row, 9, w->envelope_to);
    rc |= sqlite3_bind_int(ins_row, 10, ri_any_pass(w->spf, w->nspf));
    rc |= sqlite3_bind_int(ins_row, 11, ri_any_pass(w->dkim, w->ndkim));
    rc |= sqlite3_bind_int(ins_row, 12,
                           strcmp(w->dkim_eval, "pass") == 0 || strcmp(w->spf_eval, "pass") == 0);
    if (rc != SQLITE_OK || sqlite3_step(ins_row) != SQLITE_DONE)
        return ri_sql_error(imp, "insert row", err);
    row_id = sqlite3_last_insert_rowid(imp->db);
    for (int k = 0; k < 2; k++) {
        const struct um_report_import_auth *a = k == 0 ? w->dkim : w->spf;
        size_t n = k == 0 ? w->ndkim : w->nspf;
        for (size_t i = 0; i < n; i++) {
            sqlite3_reset(ins_auth);
            rc = sqlite3_bind_int64(ins_auth, 1, row_id);
            rc |= ri_bind_text(ins_auth, 2, k == 0 ? "dkim" : "spf");
            rc |= sqlite3_bind_int64(ins_auth, 3, (sqlite3_int64)i);
            rc |= ri_bind_text(ins_auth, 4, a[i].domain);
            rc |= ri_bind_text(ins_auth, 5, a[i].selector);
            rc |= ri_bind_text(ins_auth, 6, a[i].scope);
            rc |= ri_bind_text(ins_auth, 7, a[i].result);
            if (rc != SQLITE_OK || sqlite3_step(ins_auth) != SQLITE_DONE)
                return ri_sql_error(imp, "insert auth result", err);
        }
    }
    return UM_OK;
}

enum um_status
um_report_import_store(struct um_report_import *imp, const struct um_report_import_report *r,
                       const char *source, int64_t now, struct um_report_import_result *res,
                       struct um_error *err)
{
    sqlite3_stmt *st = NULL, *ins_row = NULL, *ins_auth = NULL;
    enum um_status ret = UM_OK;
    int64_t report;
    int rc;

    memset(res, 0, sizeof(*res));
    (void)snprintf(res->org_name, sizeof(res->org_name), "%s", r->org_name);
    (void)snprintf(res->report_id, sizeof(res->report_id), "%s", r->report_id);
    (void)snprintf(res->domain, sizeof(res->domain), "%s", r->domain);
    if (sqlite3_exec(imp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ri_sql_error(imp, "begin", err);
    if (sqlite3_prepare_v2(imp->db,
                           "SELECT 1 FROM received_reports WHERE org_name = ?1 AND report_id = ?2",
                           -1, &st, NULL)
            != SQLITE_OK
        || ri_bind_text(st, 1, r->org_name) != SQLITE_OK
        || ri_bind_text(st, 2, r->report_id) != SQLITE_OK) {
        ret = ri_sql_error(imp, "select report", err);
        goto out;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        res->duplicate = true;
        goto out; /* rolled back: nothing was written */
    }
    if (rc != SQLITE_DONE) {
        ret = ri_sql_error(imp, "select report", err);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(imp->db,
                           "INSERT INTO received_reports (org_name, report_id, email, begin_ts,"
                           " end_ts, format, policy_domain, adkim, aspf, p, sp, np, pct, records,"
                           " messages, source, imported)"
                           " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL)
        != SQLITE_OK) {
        ret = ri_sql_error(imp, "insert report", err);
        goto out;
    }
    rc = ri_bind_text(st, 1, r->org_name);
    rc |= ri_bind_text(st, 2, r->report_id);
    rc |= ri_bind_text(st, 3, r->email);
    rc |= sqlite3_bind_int64(st, 4, r->begin);
    rc |= sqlite3_bind_int64(st, 5, r->end);
    rc |= ri_bind_text(st, 6, r->format == UM_REPORT_IMPORT_RFC9990 ? "rfc9990" : "rfc7489");
    rc |= ri_bind_text(st, 7, r->domain);
    rc |= ri_bind_text(st, 8, r->adkim);
    rc |= ri_bind_text(st, 9, r->aspf);
    rc |= ri_bind_text(st, 10, r->p);
    rc |= ri_bind_text(st, 11, r->sp);
    rc |= ri_bind_text(st, 12, r->np);
    rc |= r->pct >= 0 ? sqlite3_bind_int(st, 13, r->pct) : sqlite3_bind_null(st, 13);
    rc |= sqlite3_bind_int64(st, 14, (sqlite3_int64)r->nrows);
    rc |= sqlite3_bind_int64(st, 15, (sqlite3_int64)r->messages);
    rc |= ri_bind_text(st, 16, source != NULL ? source : "");
    rc |= sqlite3_bind_int64(st, 17, now);
    if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        ret = ri_sql_error(imp, "insert report", err);
        goto out;
    }
    report = sqlite3_last_insert_rowid(imp->db);
    if (sqlite3_prepare_v2(imp->db,
                           "INSERT INTO received_rows (report, source_ip, count, disposition,"
                           " dkim_eval, spf_eval, header_from, envelope_from, envelope_to,"
                           " spf_pass, dkim_pass, dmarc_pass) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &ins_row, NULL)
            != SQLITE_OK
        || sqlite3_prepare_v2(imp->db,
                              "INSERT INTO received_auth (row_id, kind, idx, domain, selector,"
                              " scope, result) VALUES (?,?,?,?,?,?,?)",
                              -1, &ins_auth, NULL)
               != SQLITE_OK) {
        ret = ri_sql_error(imp, "prepare", err);
        goto out;
    }
    for (size_t i = 0; i < r->nrows && ret == UM_OK; i++)
        ret = ri_store_row(imp, ins_row, ins_auth, report, &r->rows[i], err);
    if (ret == UM_OK) {
        sqlite3_finalize(st);
        sqlite3_finalize(ins_row);
        sqlite3_finalize(ins_auth);
        if (sqlite3_exec(imp->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            ret = ri_sql_error(imp, "commit", err);
            (void)sqlite3_exec(imp->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
        res->records = r->nrows;
        res->messages = r->messages;
        return UM_OK;
    }
out:
    sqlite3_finalize(st);
    sqlite3_finalize(ins_row);
    sqlite3_finalize(ins_auth);
    (void)sqlite3_exec(imp->db, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

enum um_status
um_report_import_bytes(struct um_report_import *imp, const char *name, const unsigned char *data,
                       size_t len, int64_t now, struct um_report_import_result *res,
                       struct um_error *err)
{
    struct um_report_import_report *rep = NULL;
    unsigned char *xml = NULL;
    size_t xmllen = 0;
    enum um_status ret;

    memset(res, 0, sizeof(*res));
    if ((ret = um_report_import_decode(name, data, len, &xml, &xmllen, err)) != UM_OK)
        return ret;
    ret = um_report_import_parse(name, (struct um_str){(const char *)xml, xmllen}, &rep, err);
    free(xml);
    if (ret != UM_OK)
        return ret;
    ret = um_report_import_store(imp, rep, name, now, res, err);
    um_report_import_report_free(rep);
    return ret;
}

/* --- summary ---------------------------------------------------------------------------------- */

/* The rows a summary looks at: ?1 domain (NULL: all), ?2 since (-1: all). */
#define RI_SCOPE                                                                                   \
    " FROM received_rows r JOIN received_reports p ON r.report = p.id"                             \
    " WHERE (?1 IS NULL OR r.header_from = ?1) AND (?2 < 0 OR p.end_ts >= ?2)"

static const char ri_domains_sql[] =
    "SELECT r.header_from, count(DISTINCT p.id), sum(r.count),"
    " sum(r.count * r.spf_pass), sum(r.count * r.dkim_pass), sum(r.count * r.dmarc_pass),"
    " min(p.begin_ts), max(p.end_ts), count(DISTINCT r.source_ip)" RI_SCOPE
    " GROUP BY r.header_from ORDER BY r.header_from";

/* ?3 the domain of the group; new: not in received_seen (?2 < 0), else in no report that
 * ended before ?2. */
static const char ri_sources_sql[] =
    "SELECT g.ip, g.n, g.spf, g.dkim, g.dmarc,"
    " CASE WHEN ?2 < 0 THEN NOT EXISTS (SELECT 1 FROM received_seen s"
    "   WHERE s.domain = ?3 AND s.source_ip = g.ip)"
    " ELSE NOT EXISTS (SELECT 1 FROM received_rows r2 JOIN received_reports p2"
    "   ON r2.report = p2.id WHERE r2.header_from = ?3 AND r2.source_ip = g.ip"
    "   AND p2.end_ts < ?2) END"
    " FROM (SELECT r.source_ip AS ip, sum(r.count) AS n, sum(r.count * r.spf_pass) AS spf,"
    "  sum(r.count * r.dkim_pass) AS dkim, sum(r.count * r.dmarc_pass) AS dmarc" RI_SCOPE
    "  AND r.header_from = ?3 GROUP BY r.source_ip) g"
    " ORDER BY g.n DESC, g.ip";

static const char ri_seen_sql[] =
    "INSERT OR IGNORE INTO received_seen (domain, source_ip,"
    " first_seen) SELECT DISTINCT r.header_from, r.source_ip, ?3" RI_SCOPE;

static void
ri_day(int64_t t, char out[16])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 16, "%Y-%m-%d", &tm) == 0)
        (void)snprintf(out, 16, "?");
}

static int
ri_bind_scope(sqlite3_stmt *st, const struct um_report_import_summary_opts *o)
{
    int rc = o->domain != NULL ? ri_bind_text(st, 1, o->domain) : sqlite3_bind_null(st, 1);
    return rc | sqlite3_bind_int64(st, 2, o->since);
}

static enum um_status
ri_sources(struct um_report_import *imp, const struct um_report_import_summary_opts *o,
           const char *domain, struct um_buf *b, struct um_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(imp->db, ri_sources_sql, -1, &st, NULL) != SQLITE_OK
        || ri_bind_scope(st, o) != SQLITE_OK || ri_bind_text(st, 3, domain) != SQLITE_OK) {
        sqlite3_finalize(st);
        return ri_sql_error(imp, "select sources", err);
    }
    um_buf_fmt(b, "  %-39s %9s %9s %9s %10s  %s\n", "source", "messages", "spf-pass", "dkim-pass",
               "dmarc-pass", "new");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *ip = sqlite3_column_text(st, 0);
        um_buf_fmt(b, "  %-39s %9lld %9lld %9lld %10lld  %s\n", ip != NULL ? (const char *)ip : "",
                   (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
                   (long long)sqlite3_column_int64(st, 3), (long long)sqlite3_column_int64(st, 4),
                   sqlite3_column_int(st, 5) ? "new" : "-");
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? UM_OK : ri_sql_error(imp, "select sources", err);
}

/* "new" count of one domain: the same test as in ri_sources_sql. */
static enum um_status
ri_count_new(struct um_report_import *imp, const struct um_report_import_summary_opts *o,
             const char *domain, long long *n, struct um_error *err)
{
    sqlite3_stmt *st = NULL;

    *n = 0;
    if (sqlite3_prepare_v2(imp->db, ri_sources_sql, -1, &st, NULL) != SQLITE_OK
        || ri_bind_scope(st, o) != SQLITE_OK || ri_bind_text(st, 3, domain) != SQLITE_OK) {
        sqlite3_finalize(st);
        return ri_sql_error(imp, "select sources", err);
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        *n += sqlite3_column_int(st, 5) != 0;
    sqlite3_finalize(st);
    return UM_OK;
}

enum um_status
um_report_import_summary(struct um_report_import *imp,
                         const struct um_report_import_summary_opts *o, char **text,
                         struct um_error *err)
{
    struct um_buf b = {0};
    sqlite3_stmt *st = NULL;
    enum um_status ret = UM_OK;
    unsigned ndomains = 0;
    int rc;

    *text = NULL;
    if (sqlite3_exec(imp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return ri_sql_error(imp, "begin", err);
    if (sqlite3_prepare_v2(imp->db, ri_domains_sql, -1, &st, NULL) != SQLITE_OK
        || ri_bind_scope(st, o) != SQLITE_OK) {
        ret = ri_sql_error(imp, "select domains", err);
        goto out;
    }
    while (ret == UM_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *dp = sqlite3_column_text(st, 0);
        char domain[UM_REPORT_IMPORT_FIELD_MAX + 1], d0[16], d1[16];
        long long msgs = sqlite3_column_int64(st, 2), nnew = 0;

        (void)snprintf(domain, sizeof(domain), "%s", dp != NULL ? (const char *)dp : "");
        ri_day(sqlite3_column_int64(st, 6), d0);
        ri_day(sqlite3_column_int64(st, 7), d1);
        if ((ret = ri_count_new(imp, o, domain, &nnew, err)) != UM_OK)
            break;
        if (ndomains++ > 0)
            um_buf_add(&b, "\n", 1);
        um_buf_fmt(&b,
                   "domain %s: %lld report(s), %s to %s, %lld message(s), %lld source(s), "
                   "%lld new\n",
                   domain, (long long)sqlite3_column_int64(st, 1), d0, d1, msgs,
                   (long long)sqlite3_column_int64(st, 8), nnew);
        um_buf_fmt(&b, "  %-5s %9s %9s\n", "", "pass", "fail");
        for (int k = 0; k < 3; k++) {
            long long pass = sqlite3_column_int64(st, 3 + k);
            um_buf_fmt(&b, "  %-5s %9lld %9lld\n",
                       k == 0   ? "spf"
                       : k == 1 ? "dkim"
                                : "dmarc",
                       pass, msgs - pass);
        }
        ret = ri_sources(imp, o, domain, &b, err);
    }
    if (ret == UM_OK && rc != SQLITE_DONE)
        ret = ri_sql_error(imp, "select domains", err);
    sqlite3_finalize(st);
    st = NULL;
    if (ret != UM_OK)
        goto out;
    if (ndomains == 0)
        um_buf_fmt(&b, "no received reports%s%s\n", o->domain != NULL ? " for " : "",
                   o->domain != NULL ? o->domain : "");
    if (o->update_seen) {
        if (sqlite3_prepare_v2(imp->db, ri_seen_sql, -1, &st, NULL) != SQLITE_OK
            || ri_bind_scope(st, o) != SQLITE_OK || sqlite3_bind_int64(st, 3, o->now) != SQLITE_OK
            || sqlite3_step(st) != SQLITE_DONE) {
            ret = ri_sql_error(imp, "update seen sources", err);
            goto out;
        }
    }
    if (b.oom) {
        ret = um_error_set(err, UM_ENOMEM, "report-summary: out of memory");
        goto out;
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(imp->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        ret = ri_sql_error(imp, "commit", err);
        (void)sqlite3_exec(imp->db, "ROLLBACK", NULL, NULL, NULL);
        free(b.p);
        return ret;
    }
    *text = b.p;
    return UM_OK;
out:
    sqlite3_finalize(st);
    (void)sqlite3_exec(imp->db, "ROLLBACK", NULL, NULL, NULL);
    free(b.p);
    return ret;
}
