/*
 * buf - growable NUL-terminated text buffer
 *
 * DESCRIPTION  Appends bytes, strings or printf output, doubling the storage as needed. An
 *              allocation failure sets oom and makes later appends no-ops, so a caller checks
 *              once at the end instead of after every append.
 * THREADS      A buffer belongs to one thread.
 * OWNERSHIP    p is malloc'd and owned by the caller (free(b.p)); start from {0}.
 * LIMITS       um_buf_fmt() writes at most 511 bytes per call.
 */
#ifndef UM_BUF_H
#define UM_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

struct um_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

void um_buf_add(struct um_buf *b, const char *s, size_t n);
void um_buf_str(struct um_buf *b, const char *s);
void um_buf_fmt(struct um_buf *b, const char *fmt, ...) UM_PRINTF(2, 3);

#endif
