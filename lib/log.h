/*
 * log - one key=value line per event, with untrusted bytes escaped
 *
 * DESCRIPTION  A line is built in caller storage (struct um_logline) as
 *              "sess=<id> event=<name> k=v k=v ..." and handed to a sink function the
 *              daemon supplies (syslog, stderr) or a test supplies (a capture buffer).
 *              Values are escaped here, never by callers: bytes outside printable ASCII,
 *              '\\' and '"' become \xHH; a value that is empty or contains a space, '"' or
 *              '=' is wrapped in double quotes.
 * THREADS      A struct um_logline belongs to one thread. um_log_emit() may be called from
 *              any thread; the sink must be thread-safe. The level is read atomically, so a
 *              reload may change it while other threads log.
 * OWNERSHIP    Keys are trusted literals; values are borrowed for the call and copied.
 * LIMITS       A line holds UM_LOGLINE_MAX - 1 bytes; a longer one ends in "..." and is
 *              still emitted (truncation never drops the line).
 */
#ifndef UM_LOG_H
#define UM_LOG_H

#include <stdatomic.h>
#include <stddef.h>

#include "common.h"

/* The values are syslog(3) priorities so the daemon can pass them straight through. */
enum um_log_level {
    UM_LOG_ERR = 3,     /* our fault; an operator must act */
    UM_LOG_WARNING = 4, /* a peer or configuration problem */
    UM_LOG_INFO = 6,    /* one verdict line per message, limit hits */
    UM_LOG_DEBUG = 7,   /* traces, off by default */
};

#define UM_LOGLINE_MAX 2048

typedef void um_log_sink_fn(void *arg, enum um_log_level level, const char *line, size_t len);

struct um_logger {
    um_log_sink_fn *sink;
    void *arg;
    _Atomic int max_level; /* lines above this level are dropped */
};

struct um_logline {
    char buf[UM_LOGLINE_MAX];
    size_t len;
    bool truncated;
};

void um_logger_init(struct um_logger *lg, um_log_sink_fn *sink, void *arg, enum um_log_level max);
void um_logger_set_level(struct um_logger *lg, enum um_log_level max);
bool um_logger_wants(const struct um_logger *lg, enum um_log_level level);

/* Starts a line: "sess=<sess> event=<event>", or "event=<event>" when sess is NULL. */
void um_logline_init(struct um_logline *l, const char *sess, const char *event);
/* Appends " key=value" with value escaped. A NULL value is written as "-". */
void um_logline_str(struct um_logline *l, const char *key, const char *val);
void um_logline_mem(struct um_logline *l, const char *key, const char *val, size_t len);
void um_logline_int(struct um_logline *l, const char *key, long long val);
void um_log_emit(const struct um_logger *lg, enum um_log_level level, const struct um_logline *l);

/*
 * Convenience for daemon messages: event=<event> msg="<formatted text>". The formatted
 * text is escaped like any value, so it may carry paths and peer data.
 */
void um_log_msg(const struct um_logger *lg, enum um_log_level level, const char *event,
                const char *fmt, ...) UM_PRINTF(4, 5);

/* Escapes len bytes of val into dst (always NUL-terminated); returns bytes written. */
size_t um_log_escape(char *dst, size_t dstlen, const char *val, size_t len);
/* The same, returning dst: untrusted bytes as a printf argument in an error message. */
const char *um_log_escaped(char *dst, size_t dstlen, const char *val, size_t len);

const char *um_log_level_name(enum um_log_level level);
/* "err", "warning", "info", "debug" -> level; UM_EINVAL for anything else. */
enum um_status um_log_level_parse(const char *name, enum um_log_level *out);

#endif
