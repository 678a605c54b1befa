/*
 * common.c - error helpers, ASCII case folding
 *
 * Design note: errors are formatted into the caller's fixed buffer with vsnprintf, which
 * truncates instead of allocating, so reporting an ENOMEM can never itself fail. Case
 * folding is ASCII arithmetic (um_ascii_tolower in common.h), never tolower(3): the names
 * we fold are protocol tokens, and a locale must not change which keys or domains match.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdio.h>
#include <string.h>

enum um_status
um_error_set(struct um_error *err, enum um_status code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    (void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *
um_status_name(enum um_status code)
{
    switch (code) {
    case UM_OK:
        return "OK";
    case UM_ENOMEM:
        return "ENOMEM";
    case UM_EINVAL:
        return "EINVAL";
    case UM_ETEMP:
        return "ETEMP";
    case UM_ELIMIT:
        return "ELIMIT";
    case UM_ENOENT:
        return "ENOENT";
    case UM_EIO:
        return "EIO";
    }
    return "UNKNOWN";
}

const char *
um_strerror(int errnum, char *buf, size_t len)
{
    /* With _POSIX_C_SOURCE and no _GNU_SOURCE this is the XSI variant returning int. */
    if (strerror_r(errnum, buf, len) != 0)
        (void)snprintf(buf, len, "error %d", errnum);
    return buf;
}

bool
um_str_eq_ci(struct um_str s, const char *lit)
{
    size_t n = strlen(lit);

    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (um_ascii_tolower((unsigned char)s.p[i]) != um_ascii_tolower((unsigned char)lit[i]))
            return false;
    }
    return true;
}

void
um_ascii_lower(char *dst, const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)um_ascii_tolower((unsigned char)src[i]);
}

int
um_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
