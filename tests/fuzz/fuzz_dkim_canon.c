/*
 * fuzz_dkim_canon.c - arbitrary bytes into the DKIM canonicalizers (lib/dkim_sign.h), which
 * see every header and body byte of every outbound message.
 *
 * Input: byte 0 picks the mode (bit 0: simple or relaxed; bit 1: a header field or a body;
 * bit 2: value_has_leading_space; bits 3..7: a chunk size of 1..32 bytes); the rest is the
 * body, or "name\0value" for a header field (names outside RFC 5322 ftext are skipped:
 * um_dkim_sign_header() refuses them before they get here). Properties:
 *   body    the output is the same whether the input comes in one piece or in chunks of that
 *           size (chunk boundaries may fall inside CRLF, a WSP run or trailing empty lines);
 *           every LF in it ends a CRLF; it ends in CRLF unless it is empty (only relaxed may
 *           be empty; simple gives at least CRLF); it never ends in an empty line unless it
 *           is exactly CRLF; relaxed has no HTAB and no SP before a CRLF or another SP.
 *   header  the output ends in CRLF; relaxed has no other CRLF (unfolded), no HTAB, no SP
 *           before the final CRLF or next to another SP, and its name is lower case.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dkim_sign.h"

#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
sink(void *arg, const char *p, size_t len)
{
    struct um_buf *o = arg;

    um_buf_add(o, p, len);
    FUZZ_CHECK(!o->oom);
}

static void
body(enum um_dkim_canon canon, const char *p, size_t len, size_t chunk, struct um_buf *o)
{
    struct um_dkim_canon_body *bc = NULL;

    FUZZ_CHECK(um_dkim_canon_body_new(canon, sink, o, &bc, NULL) == UM_OK);
    if (chunk == 0) {
        um_dkim_canon_body_update(bc, (struct um_str){p, len});
    } else {
        for (size_t i = 0; i < len; i += chunk)
            um_dkim_canon_body_update(bc,
                                      (struct um_str){p + i, len - i < chunk ? len - i : chunk});
    }
    um_dkim_canon_body_final(bc);
    um_dkim_canon_body_free(bc);
}

static void
check_lines(const struct um_buf *o, bool relaxed, bool header)
{
    for (size_t i = 0; i < o->len; i++) {
        char c = o->p[i];

        if (c == '\n')
            FUZZ_CHECK(i > 0 && o->p[i - 1] == '\r');
        if (!relaxed)
            continue;
        FUZZ_CHECK(c != '\t');
        if (c == ' ' && i + 1 < o->len)
            FUZZ_CHECK(o->p[i + 1] != ' '
                       && !(o->p[i + 1] == '\r' && i + 2 < o->len && o->p[i + 2] == '\n'));
        if (header && c == '\r' && i + 1 < o->len && o->p[i + 1] == '\n')
            FUZZ_CHECK(i + 2 == o->len);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_buf a = {0}, b = {0};
    enum um_dkim_canon canon;
    bool relaxed;

    if (size < 1)
        return 0;
    canon = (data[0] & 1) ? UM_DKIM_CANON_SIMPLE : UM_DKIM_CANON_RELAXED;
    relaxed = canon == UM_DKIM_CANON_RELAXED;
    if ((data[0] & 2) == 0) {
        const char *p = (const char *)data + 1;
        size_t len = size - 1;

        body(canon, p, len, 0, &a);
        body(canon, p, len, (size_t)(data[0] >> 3) + 1, &b);
        FUZZ_CHECK(a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0));
        check_lines(&a, relaxed, false);
        if (a.len == 0) {
            FUZZ_CHECK(relaxed);
        } else {
            FUZZ_CHECK(a.len >= 2 && a.p[a.len - 2] == '\r' && a.p[a.len - 1] == '\n');
            if (a.len > 2)
                FUZZ_CHECK(!(a.len >= 4 && memcmp(a.p + a.len - 4, "\r\n\r\n", 4) == 0));
        }
    } else {
        const char *p = (const char *)data + 1;
        const char *nul = memchr(p, '\0', size - 1);
        size_t nlen = nul != NULL ? (size_t)(nul - p) : size - 1;
        struct um_str name = {p, nlen};

        /* Field names reach the canonicalizer only after um_dkim_sign_header() checked them
         * (RFC 5322 ftext: printable US-ASCII except ':'). */
        for (size_t i = 0; i < nlen; i++) {
            if (p[i] < 33 || p[i] > 126 || p[i] == ':')
                return 0;
        }
        struct um_str value = {nul != NULL ? nul + 1 : p + nlen,
                               nul != NULL ? size - 1 - nlen - 1 : 0};

        um_dkim_canon_header(canon, name, value, (data[0] & 4) != 0, sink, &a);
        FUZZ_CHECK(a.len >= 2 && a.p[a.len - 2] == '\r' && a.p[a.len - 1] == '\n');
        check_lines(&a, relaxed, true);
        if (relaxed) {
            const char *colon = memchr(a.p, ':', a.len);
            for (const char *q = a.p; colon != NULL && q < colon; q++)
                FUZZ_CHECK(!(*q >= 'A' && *q <= 'Z'));
        }
    }
    free(a.p);
    free(b.p);
    return 0;
}
