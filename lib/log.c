/*
 * log.c - key=value line builder and level filter
 *
 * Design note: lines are assembled in a fixed buffer on the caller's stack, so logging
 * never allocates and never fails; overflow marks the line truncated and ends it with
 * "...". Escaping is the single place untrusted bytes are made safe for syslog and
 * terminals: control bytes, DEL, 8-bit bytes, '\' and '"' become \xHH, so a log line can
 * neither be split (CR/LF) nor forge a key (quotes). Work per value is O(len).
 */
#include "log.h"

#include <stdio.h>
#include <string.h>

void
um_logger_init(struct um_logger *lg, um_log_sink_fn *sink, void *arg, enum um_log_level max)
{
    lg->sink = sink;
    lg->arg = arg;
    atomic_init(&lg->max_level, (int)max);
}

void
um_logger_set_level(struct um_logger *lg, enum um_log_level max)
{
    atomic_store(&lg->max_level, (int)max);
}

bool
um_logger_wants(const struct um_logger *lg, enum um_log_level level)
{
    return lg != NULL && lg->sink != NULL && (int)level <= atomic_load(&lg->max_level);
}

static void
logline_append(struct um_logline *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 1 - l->len;

    if (l->truncated)
        return;
    if (n > room) {
        n = room;
        l->truncated = true;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
    if (l->truncated && l->len >= 3)
        memcpy(l->buf + l->len - 3, "...", 3);
}

static bool
escape_needed(unsigned char c)
{
    return c < 0x20 || c >= 0x7f || c == '\\' || c == '"';
}

size_t
um_log_escape(char *dst, size_t dstlen, const char *val, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dstlen == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)val[i];
        if (escape_needed(c)) {
            if (o + 4 >= dstlen)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            if (o + 1 >= dstlen)
                break;
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}

const char *
um_log_escaped(char *dst, size_t dstlen, const char *val, size_t len)
{
    (void)um_log_escape(dst, dstlen, val, len);
    return dst;
}

void
um_logline_init(struct um_logline *l, const char *sess, const char *event)
{
    l->len = 0;
    l->truncated = false;
    l->buf[0] = '\0';
    if (sess != NULL) {
        logline_append(l, "sess=", 5);
        logline_append(l, sess, strlen(sess));
        logline_append(l, " ", 1);
    }
    logline_append(l, "event=", 6);
    logline_append(l, event, strlen(event));
}

void
um_logline_mem(struct um_logline *l, const char *key, const char *val, size_t len)
{
    char tmp[UM_LOGLINE_MAX];
    size_t n;
    bool quote = false;

    logline_append(l, " ", 1);
    logline_append(l, key, strlen(key));
    logline_append(l, "=", 1);
    if (val == NULL) {
        logline_append(l, "-", 1);
        return;
    }
    n = um_log_escape(tmp, sizeof(tmp), val, len);
    quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = tmp[i] == ' ' || tmp[i] == '=';
    if (quote)
        logline_append(l, "\"", 1);
    logline_append(l, tmp, n);
    if (quote)
        logline_append(l, "\"", 1);
}

void
um_logline_str(struct um_logline *l, const char *key, const char *val)
{
    um_logline_mem(l, key, val, val == NULL ? 0 : strlen(val));
}

void
um_logline_int(struct um_logline *l, const char *key, long long val)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", val);

    logline_append(l, " ", 1);
    logline_append(l, key, strlen(key));
    logline_append(l, "=", 1);
    logline_append(l, tmp, (size_t)n);
}

void
um_log_emit(const struct um_logger *lg, enum um_log_level level, const struct um_logline *l)
{
    if (um_logger_wants(lg, level))
        lg->sink(lg->arg, level, l->buf, l->len);
}

void
um_log_msg(const struct um_logger *lg, enum um_log_level level, const char *event, const char *fmt,
           ...)
{
    struct um_logline l;
    char text[UM_LOGLINE_MAX];
    va_list ap;
    int n;

    if (!um_logger_wants(lg, level))
        return;
    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(text))
        n = (int)sizeof(text) - 1;
    um_logline_init(&l, NULL, event);
    um_logline_mem(&l, "msg", text, (size_t)n);
    lg->sink(lg->arg, level, l.buf, l.len);
}

const char *
um_log_level_name(enum um_log_level level)
{
    switch (level) {
    case UM_LOG_ERR:
        return "err";
    case UM_LOG_WARNING:
        return "warning";
    case UM_LOG_INFO:
        return "info";
    case UM_LOG_DEBUG:
        return "debug";
    }
    return "info";
}

enum um_status
um_log_level_parse(const char *name, enum um_log_level *out)
{
    static const enum um_log_level all[] = {UM_LOG_ERR, UM_LOG_WARNING, UM_LOG_INFO, UM_LOG_DEBUG};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(name, um_log_level_name(all[i])) == 0) {
            *out = all[i];
            return UM_OK;
        }
    }
    return UM_EINVAL;
}
