/*
 * common - status codes, error buffers and byte strings shared by every module
 *
 * DESCRIPTION  enum um_status is what fallible functions return; struct um_error is the
 *              caller-owned buffer that says why (no global error state); struct um_str is
 *              a borrowed byte range that is never assumed NUL-terminated. The ASCII case
 *              helpers are the only case folding lib/ and milter/ do: protocol names (DNS,
 *              header fields, tags) fold A-Z only, so they never consult the locale.
 * THREADS      Everything here is reentrant.
 * ERRORS       um_error_set() truncates silently at sizeof(msg) - 1 bytes.
 */
#ifndef UM_COMMON_H
#define UM_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define UM_NODISCARD    __attribute__((warn_unused_result))
#define UM_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum um_status {
    UM_OK = 0,
    UM_ENOMEM, /* allocation failed */
    UM_EINVAL, /* bad input or configuration */
    UM_ETEMP,  /* temporary failure: try again later */
    UM_ELIMIT, /* a configured or protocol limit was reached */
    UM_ENOENT, /* the thing asked for does not exist */
    UM_EIO,    /* an I/O or system call failed */
};

struct um_error {
    enum um_status code;
    char msg[256];
};

struct um_str {
    const char *p;
    size_t len;
};

#define UM_STR(lit) ((struct um_str){(lit), sizeof(lit) - 1})

/* The byte range of a C string; NULL gives the empty range "" (p is never NULL). */
static inline struct um_str
um_str_of(const char *s)
{
    return (struct um_str){s != NULL ? s : "", s != NULL ? strlen(s) : 0};
}

/* c with A-Z mapped to a-z; any other value (other bytes, negative chars, EOF) unchanged.
 * Unlike tolower(3) it ignores the locale. */
static inline int
um_ascii_tolower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Writes len bytes of src, A-Z lower-cased, to dst (dst == src lower-cases in place; other
 * overlaps are not allowed). Adds no NUL. */
void um_ascii_lower(char *dst, const char *src, size_t len);

/* Sets err (if not NULL) and returns code, so callers can "return um_error_set(...)". */
enum um_status um_error_set(struct um_error *err, enum um_status code, const char *fmt, ...)
    UM_PRINTF(3, 4);

/* Name of a status for logs ("ENOMEM"). Never NULL. */
const char *um_status_name(enum um_status code);

/* Reentrant strerror (hides the GNU/XSI strerror_r split); writes into buf, returns buf. */
const char *um_strerror(int errnum, char *buf, size_t len);

/* ASCII case-insensitive comparison of a byte range with a C string. */
bool um_str_eq_ci(struct um_str s, const char *lit);

/* The value of one hex digit (0-9, a-f, A-F), or -1 for any other byte. */
int um_hexval(int c);

#endif
