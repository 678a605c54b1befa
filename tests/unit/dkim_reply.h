/*
 * dkim_reply.h - test helper: the DNS reply packet a fake key lookup hands libopendkim
 * (header, the question, and for TXT one answer RR split into strings of <= 255 bytes).
 * Shared by test_dkim_verify.c and test_dkim_dkimpy.c; include after <cmocka.h> and
 * <string.h>.
 */
#ifndef UM_TEST_DKIM_REPLY_H
#define UM_TEST_DKIM_REPLY_H

static size_t
put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

static size_t
fz_packet(unsigned char *buf, size_t buflen, const char *name, int rcode, const char *txt)
{
    size_t len = 0, tl = txt != NULL ? strlen(txt) : 0, rdlen = 0;
    const char *p = name;

    assert_true(buflen > 512 + tl + tl / 255 + 1);
    len += put16(buf + len, 0x1234);
    buf[len++] = 0x81;
    buf[len++] = (unsigned char)(0x80 | rcode);
    len += put16(buf + len, 1);
    len += put16(buf + len, txt != NULL ? 1 : 0);
    len += put16(buf + len, 0);
    len += put16(buf + len, 0);
    while (*p != '\0') {
        const char *dot = strchr(p, '.');
        size_t ll = dot != NULL ? (size_t)(dot - p) : strlen(p);
        buf[len++] = (unsigned char)ll;
        memcpy(buf + len, p, ll);
        len += ll;
        p += ll;
        if (*p == '.')
            p++;
    }
    buf[len++] = 0;
    len += put16(buf + len, 16);
    len += put16(buf + len, 1);
    if (txt == NULL)
        return len;
    len += put16(buf + len, 0xc00c);
    len += put16(buf + len, 16);
    len += put16(buf + len, 1);
    len += put16(buf + len, 0);
    len += put16(buf + len, 300);
    rdlen = tl + (tl + 254) / 255 + (tl == 0 ? 1 : 0);
    len += put16(buf + len, (unsigned)rdlen);
    if (tl == 0)
        buf[len++] = 0;
    for (size_t off = 0; off < tl; off += 255) {
        size_t n = tl - off > 255 ? 255 : tl - off;
        buf[len++] = (unsigned char)n;
        memcpy(buf + len, txt + off, n);
        len += n;
    }
    return len;
}

#endif
