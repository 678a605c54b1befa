/*
 * ratelimit_redis.c - the sliding-window limiter of ratelimit.c, kept in Redis
 *
 * Design note.  Algorithm: per sender a sorted set of the recipients counted, scored by
 * the second they were counted (exact to the second, like the in-memory ring), plus a hash
 * with the member sequence and the episode.  One Lua script per decision does, atomically:
 * key clock t = max(now, newest score, last refusal); drop members with t - score >= window;
 * drop the oldest beyond `limit` (they can never decide again, as rl_trim() in ratelimit.c);
 * then either add n members stamped t or count a refusal (notify if the episode was not
 * live) and compute retry_after from the member that must age out.  That is the in-memory
 * algorithm line by line, so both backends give the same decisions for the same calls
 * (tests/unit/test_ratelimit_redis.c replays the in-memory test's script).  Why a ZSET and
 * not per-minute buckets: it is exact, and Redis trims it in O(log N + removed).
 *
 * Why the caller's clock: tests inject it, and a decision must not depend on which server
 * answered.  The price (synchronised clocks) is in the header.
 *
 * Connections: a mutex-protected pool; a borrowed context is used by one thread only.
 * Bounded work: one deadline per call (timeout_ms) of which connect and each command get
 * the rest (redisSetTimeout = SO_RCVTIMEO/SO_SNDTIMEO).  A failed connection drops every
 * idle one too (generation counter): after a Redis restart they are all dead.  If a reused
 * idle connection fails on I/O (not a timeout), the call is tried once more on a fresh one
 * within the same deadline, so the first call after a quiet restart does not fail.
 * XXX: if that I/O error came after the script ran (server died mid-reply), the retry counts
 * the reservation twice: conservative, never an under-count.
 * Outages: after a connection failure calls fail at once until the backoff has passed, then
 * one caller probes; so a dead Redis costs each message nothing, not timeout_ms.
 */
#define _POSIX_C_SOURCE 200809L
#include "ratelimit_redis.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "log.h"

#define RR_FAIL(err, code, ...) ((void)um_error_set((err), (code), __VA_ARGS__), (code))
#define RR_SCAN_COUNT           500

/* KEYS[1] zset, KEYS[2] meta; ARGV now n limit window ttl.
 * Returns {allowed, notify, count, refused, retry_after, ts}. */
static const char rr_lua_reserve[] =
    "local z, m = KEYS[1], KEYS[2]\n"
    "local now, n, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local window, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local t = now\n"
    "local top = redis.call('ZREVRANGE', z, 0, 0, 'WITHSCORES')\n"
    "if top[2] and tonumber(top[2]) > t then t = tonumber(top[2]) end\n"
    "local ep = redis.call('HMGET', m, 'r', 'l')\n"
    "local refused, last = tonumber(ep[1]) or 0, tonumber(ep[2]) or 0\n"
    "if refused > 0 and last > t then t = last end\n"
    "redis.call('ZREMRANGEBYSCORE', z, '-inf', t - window)\n"
    "if refused > 0 and t - last >= window then refused = 0 end\n"
    "local cnt = redis.call('ZCARD', z)\n"
    "if cnt > limit then\n"
    "  redis.call('ZREMRANGEBYRANK', z, 0, cnt - limit - 1)\n"
    "  cnt = limit\n"
    "end\n"
    "local allowed, notify, retry = 0, 0, 0\n"
    "if cnt + n <= limit then\n"
    "  local seq = redis.call('HINCRBY', m, 's', n) - n\n"
    "  local i = 0\n"
    "  while i < n do\n"
    "    local a = {}\n"
    "    local k = 0\n"
    "    while i < n and k < 512 do\n"
    "      i = i + 1\n"
    "      k = k + 1\n"
    "      a[#a + 1] = t\n"
    "      a[#a + 1] = string.format('%d:%d', t, seq + i)\n"
    "    end\n"
    "    redis.call('ZADD', z, unpack(a))\n"
    "  end\n"
    "  cnt = cnt + n\n"
    "  allowed = 1\n"
    "else\n"
    "  if refused == 0 then notify = 1 end\n"
    "  refused = refused + 1\n"
    "  last = t\n"
    "  if n <= limit then\n"
    "    local j = cnt - (limit - n) - 1\n"
    "    local e = redis.call('ZRANGE', z, j, j, 'WITHSCORES')\n"
    "    retry = tonumber(e[2]) + window - t\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', m, 'r', refused, 'l', last)\n"
    "redis.call('EXPIRE', z, ttl)\n"
    "redis.call('EXPIRE', m, ttl)\n"
    "return {allowed, notify, cnt, refused, retry, t}\n";

/* KEYS[1] zset; ARGV ts n.  Returns the number removed. */
static const char rr_lua_release[] =
    "local v = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "if #v > 0 then redis.call('ZREM', KEYS[1], unpack(v)) end\n"
    "return #v\n";

/* KEYS zset1 meta1 zset2 meta2 ...; ARGV now window limit1 limit2 ...
 * Returns {count1, refused1, oldest1, ...} per key, as ratelimit.c's stats would see it. */
static const char rr_lua_stats[] =
    "local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local out = {}\n"
    "for i = 1, #KEYS, 2 do\n"
    "  local z, m = KEYS[i], KEYS[i + 1]\n"
    "  local limit = tonumber(ARGV[2 + (i + 1) / 2])\n"
    "  local t = now\n"
    "  local top = redis.call('ZREVRANGE', z, 0, 0, 'WITHSCORES')\n"
    "  if top[2] and tonumber(top[2]) > t then t = tonumber(top[2]) end\n"
    "  local ep = redis.call('HMGET', m, 'r', 'l')\n"
    "  local refused, last = tonumber(ep[1]) or 0, tonumber(ep[2]) or 0\n"
    "  if refused > 0 and last > t then t = last end\n"
    "  if refused > 0 and t - last >= window then refused = 0 end\n"
    "  local lo = '(' .. string.format('%d', t - window)\n"
    "  local cnt = redis.call('ZCOUNT', z, lo, '+inf')\n"
    "  local skip = 0\n"
    "  if cnt > limit then skip = cnt - limit; cnt = limit end\n"
    "  local oldest = 0\n"
    "  if cnt > 0 then\n"
    "    local o = redis.call('ZRANGEBYSCORE', z, lo, '+inf', 'WITHSCORES', 'LIMIT', skip, 1)\n"
    "    oldest = tonumber(o[2])\n"
    "  end\n"
    "  out[#out + 1] = cnt\n"
    "  out[#out + 1] = refused\n"
    "  out[#out + 1] = oldest\n"
    "end\n"
    "return out\n";

/* RR_PLAIN: not a script, the command as the caller spelled it (rr_call). */
enum rr_script { RR_RESERVE = 0, RR_RELEASE, RR_STATS, RR_NSCRIPTS, RR_PLAIN = RR_NSCRIPTS };

static const char *const rr_scripts[RR_NSCRIPTS] = {rr_lua_reserve, rr_lua_release, rr_lua_stats};

struct rr_conn {
    redisContext *c;
    unsigned gen;
    bool reused; /* came from the idle list */
    bool probe;  /* this call is the outage's probe */
};

struct um_rlredis {
    char *host, *socket, *prefix;
    char addr[300]; /* "HOST:PORT" or "unix:PATH" for messages */
    unsigned port, timeout_ms, pool_size, backoff_min, backoff_max, expire_margin;
    size_t scan_max;
    char sha[RR_NSCRIPTS][41];

    pthread_mutex_t mu; /* everything below; never held across I/O */
    pthread_cond_t cv;  /* a connection went idle or was closed */
    redisContext **idle;
    unsigned nidle, nopen, gen;
    bool down, probing;
    uint64_t down_until_ms, backoff_ms;
    char last_error[160];
    uint64_t calls, failures, outages, connects;
};

/* --- helpers ------------------------------------------------------------------------ */

static uint64_t
rr_mono_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval
rr_tv(uint64_t ms)
{
    struct timeval tv;

    if (ms == 0)
        ms = 1; /* 0 would mean "no timeout" to hiredis */
    tv.tv_sec = (time_t)(ms / 1000u);
    tv.tv_usec = (suseconds_t)((ms % 1000u) * 1000u);
    return tv;
}

static enum um_status
rr_check_key(struct um_str key, struct um_error *err)
{
    if (key.p == NULL || key.len == 0)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: empty key");
    if (key.len > UM_RATELIMIT_KEY_MAX) {
        return RR_FAIL(err, UM_EINVAL, "ratelimit: key of %zu bytes (max %d)", key.len,
                       UM_RATELIMIT_KEY_MAX);
    }
    return UM_OK;
}

static enum um_status
rr_check_now(int64_t now, struct um_error *err)
{
    if (now < 0 || now > (int64_t)UINT32_MAX)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: time %lld out of range", (long long)now);
    return UM_OK;
}

/* Redis key names for key: zset "PREFIX{HEX}" and meta "PREFIX{HEX}:e".  The buffers hold
 * UM_RLREDIS_PREFIX_MAX + 2 * UM_RATELIMIT_KEY_MAX + 5 bytes. */
#define RR_NAME_MAX (UM_RLREDIS_PREFIX_MAX + 2 * UM_RATELIMIT_KEY_MAX + 5)

static size_t
rr_names(const struct um_rlredis *r, struct um_str key, char *z, char *m)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = strlen(r->prefix);

    memcpy(z, r->prefix, o);
    z[o++] = '{';
    for (size_t i = 0; i < key.len; i++) {
        unsigned char c = (unsigned char)um_ascii_tolower((unsigned char)key.p[i]);
        z[o++] = hex[c >> 4];
        z[o++] = hex[c & 15];
    }
    z[o++] = '}';
    z[o] = '\0';
    memcpy(m, z, o);
    memcpy(m + o, ":e", 3);
    return o;
}

/* rr_names() writes lower-case hex; any other digit means the name is not ours. */
static int
rr_unhex(char c)
{
    return c >= 'A' && c <= 'F' ? -1 : um_hexval(c);
}

/* "PREFIX{HEX}" -> key bytes in out (UM_RATELIMIT_KEY_MAX + 1); false if not ours. */
static bool
rr_decode_name(const struct um_rlredis *r, const char *name, size_t len, char *out, size_t *out_len)
{
    size_t pl = strlen(r->prefix), hl;

    if (len < pl + 4 || memcmp(name, r->prefix, pl) != 0 || name[pl] != '{' || name[len - 1] != '}')
        return false;
    hl = len - pl - 2;
    if (hl % 2 != 0 || hl / 2 > UM_RATELIMIT_KEY_MAX)
        return false;
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = rr_unhex(name[pl + 1 + 2 * i]), lo = rr_unhex(name[pl + 2 + 2 * i]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (char)(hi << 4 | lo);
    }
    out[hl / 2] = '\0';
    *out_len = hl / 2;
    return true;
}

/* --- the pool ----------------------------------------------------------------------- */

/* Drops every idle connection (they are presumed dead) into *drop for closing unlocked. */
static void
rr_drop_idle_locked(struct um_rlredis *r, redisContext **drop, unsigned *ndrop)
{
    r->gen++;
    for (unsigned i = 0; i < r->nidle; i++)
        drop[(*ndrop)++] = r->idle[i];
    r->nopen -= r->nidle;
    r->nidle = 0;
}

static void
rr_close_all(redisContext **drop, unsigned ndrop)
{
    for (unsigned i = 0; i < ndrop; i++)
        redisFree(drop[i]);
}

/* A connection failure: the client goes (or stays) down; msg is kept for fast failures. */
static void
rr_mark_down(struct um_rlredis *r, const char *msg)
{
    redisContext *drop[UM_RLREDIS_MAX_POOL];
    unsigned ndrop = 0;
    uint64_t now = rr_mono_ms();

    (void)pthread_mutex_lock(&r->mu);
    rr_drop_idle_locked(r, drop, &ndrop);
    if (!r->down) {
        r->down = true;
        r->outages++;
        r->backoff_ms = r->backoff_min;
    } else if (now >= r->down_until_ms) {
        /* a probe failed: wait longer next time */
        r->backoff_ms = r->backoff_ms * 2 > r->backoff_max ? r->backoff_max : r->backoff_ms * 2;
    }
    r->down_until_ms = now + r->backoff_ms;
    (void)snprintf(r->last_error, sizeof(r->last_error), "%s", msg);
    (void)pthread_cond_broadcast(&r->cv);
    (void)pthread_mutex_unlock(&r->mu);
    rr_close_all(drop, ndrop);
}

static enum um_status
rr_connect(struct um_rlredis *r, uint64_t deadline, struct rr_conn *cn, struct um_error *err)
{
    uint64_t now = rr_mono_ms();
    redisContext *c;
    char msg[200];

    if (now >= deadline) {
        (void)snprintf(msg, sizeof(msg), "timed out after %u ms", r->timeout_ms);
        goto fail;
    }
    if (r->socket != NULL)
        c = redisConnectUnixWithTimeout(r->socket, rr_tv(deadline - now));
    else
        c = redisConnectWithTimeout(r->host, (int)r->port, rr_tv(deadline - now));
    if (c == NULL) {
        (void)snprintf(msg, sizeof(msg), "connect: out of memory");
        goto fail;
    }
    if (c->err != 0) {
        (void)snprintf(msg, sizeof(msg), "connect: %s", c->errstr);
        redisFree(c);
        goto fail;
    }
    cn->c = c;
    (void)pthread_mutex_lock(&r->mu);
    r->connects++;
    (void)pthread_mutex_unlock(&r->mu);
    return UM_OK;
fail:
    (void)pthread_mutex_lock(&r->mu);
    r->nopen--;
    if (cn->probe)
        r->probing = false;
    (void)pthread_cond_signal(&r->cv);
    (void)pthread_mutex_unlock(&r->mu);
    rr_mark_down(r, msg);
    return RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: %s", r->addr, msg);
}

/* Borrows a connection (idle, else a new one) or fails fast while down. */
static enum um_status
rr_acquire(struct um_rlredis *r, uint64_t deadline, struct rr_conn *cn, struct um_error *err)
{
    struct timespec ts;
    uint64_t now;

    memset(cn, 0, sizeof(*cn));
    (void)pthread_mutex_lock(&r->mu);
    for (;;) {
        now = rr_mono_ms();
        if (r->down && (now < r->down_until_ms || r->probing)) {
            char last[sizeof(r->last_error)];
            uint64_t wait = now < r->down_until_ms ? r->down_until_ms - now : 0;
            memcpy(last, r->last_error, sizeof(last));
            (void)pthread_mutex_unlock(&r->mu);
            return RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: down, next attempt in %llu ms: %s",
                           r->addr, (unsigned long long)wait, last);
        }
        if (r->down) {
            r->probing = true;
            cn->probe = true;
        }
        if (r->nidle > 0) {
            cn->c = r->idle[--r->nidle];
            cn->reused = true;
            cn->gen = r->gen;
            (void)pthread_mutex_unlock(&r->mu);
            return UM_OK;
        }
        if (r->nopen < r->pool_size) {
            r->nopen++;
            cn->gen = r->gen;
            (void)pthread_mutex_unlock(&r->mu);
            return rr_connect(r, deadline, cn, err);
        }
        if (cn->probe) { /* cannot probe without a slot: let someone else */
            r->probing = false;
            cn->probe = false;
        }
        if (now >= deadline)
            break;
        ts.tv_sec = (time_t)(deadline / 1000u);
        ts.tv_nsec = (long)(deadline % 1000u) * 1000000L;
        (void)pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    (void)pthread_mutex_unlock(&r->mu);
    return RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: all %u connections busy", r->addr,
                   r->pool_size);
}

/* Gives a connection back: kept if healthy and current, else closed.  ok ends an outage. */
static void
rr_release(struct um_rlredis *r, struct rr_conn *cn, bool ok)
{
    redisContext *close_it = NULL;

    (void)pthread_mutex_lock(&r->mu);
    if (cn->probe)
        r->probing = false;
    if (ok && cn->c != NULL && cn->c->err == 0 && cn->gen == r->gen) {
        r->idle[r->nidle++] = cn->c;
    } else if (cn->c != NULL) {
        close_it = cn->c;
        r->nopen--;
    }
    if (ok && r->down) {
        r->down = false;
        r->backoff_ms = r->backoff_min;
    }
    (void)pthread_cond_signal(&r->cv);
    (void)pthread_mutex_unlock(&r->mu);
    cn->c = NULL;
    if (close_it != NULL)
        redisFree(close_it);
}

/* A reused connection found dead: close it and every other idle one, without going down. */
static void
rr_discard_stale(struct um_rlredis *r, struct rr_conn *cn)
{
    redisContext *drop[UM_RLREDIS_MAX_POOL];
    unsigned ndrop = 0;

    (void)pthread_mutex_lock(&r->mu);
    if (cn->probe)
        r->probing = false;
    r->nopen--;
    if (cn->gen == r->gen)
        rr_drop_idle_locked(r, drop, &ndrop);
    (void)pthread_cond_signal(&r->cv);
    (void)pthread_mutex_unlock(&r->mu);
    redisFree(cn->c);
    cn->c = NULL;
    rr_close_all(drop, ndrop);
}

static bool
rr_is_timeout(int saved_errno)
{
    return saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT
           || saved_errno == EINPROGRESS;
}

/*
 * One call under the call deadline, on a pooled connection: a script (EVALSHA, then EVAL on
 * NOSCRIPT; argv[0..2] are filled here: "EVALSHA", sha, numkeys from the caller's argv[2]) or,
 * with RR_PLAIN, argv as given. A connection that went stale while idle is retried once; a
 * failure marks Redis down and is counted. On UM_OK *out is a non-error reply to free.
 */
static enum um_status
rr_call(struct um_rlredis *r, enum rr_script s, int argc, const char **argv, size_t *argvlen,
        redisReply **out, struct um_error *err)
{
    uint64_t deadline = rr_mono_ms() + r->timeout_ms;
    enum um_status st;
    struct rr_conn cn;
    redisReply *rep = NULL;
    char msg[200];

    *out = NULL;
    (void)pthread_mutex_lock(&r->mu);
    r->calls++;
    (void)pthread_mutex_unlock(&r->mu);
    for (int attempt = 0;; attempt++) {
        int saved = 0;
        uint64_t now;

        if ((st = rr_acquire(r, deadline, &cn, err)) != UM_OK)
            goto failed;
        for (int round = 0; round < (s == RR_PLAIN ? 1 : 2); round++) {
            now = rr_mono_ms();
            if (now >= deadline) {
                (void)snprintf(msg, sizeof(msg), "timed out after %u ms", r->timeout_ms);
                goto io_fail;
            }
            (void)redisSetTimeout(cn.c, rr_tv(deadline - now));
            if (s != RR_PLAIN) {
                argv[0] = round == 0 ? "EVALSHA" : "EVAL";
                argv[1] = round == 0 ? r->sha[s] : rr_scripts[s];
                argvlen[0] = strlen(argv[0]);
                argvlen[1] = strlen(argv[1]);
            }
            errno = 0;
            rep = redisCommandArgv(cn.c, argc, argv, argvlen);
            saved = errno;
            if (rep == NULL)
                break;
            if (s != RR_PLAIN && rep->type == REDIS_REPLY_ERROR && round == 0
                && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
                freeReplyObject(rep);
                rep = NULL;
                continue;
            }
            break;
        }
        if (rep != NULL)
            break;
        if (cn.c->err == REDIS_ERR_IO && rr_is_timeout(saved)) {
            (void)snprintf(msg, sizeof(msg), "timed out after %u ms", r->timeout_ms);
        } else {
            (void)snprintf(msg, sizeof(msg), "%s",
                           cn.c->errstr[0] != '\0' ? cn.c->errstr : "no reply");
            if (cn.reused && attempt == 0 && !rr_is_timeout(saved)) {
                rr_discard_stale(r, &cn); /* e.g. Redis restarted while we were idle */
                continue;
            }
        }
    io_fail:
        rr_release(r, &cn, false);
        rr_mark_down(r, msg);
        st = RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: %s", r->addr, msg);
        goto failed;
    }
    rr_release(r, &cn, true);
    if (rep->type == REDIS_REPLY_ERROR) {
        st = RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: error reply: %.*s", r->addr,
                     (int)(rep->len > 150 ? 150 : rep->len), rep->str);
        freeReplyObject(rep);
        goto failed;
    }
    *out = rep;
    return UM_OK;
failed:
    (void)pthread_mutex_lock(&r->mu);
    r->failures++;
    (void)pthread_mutex_unlock(&r->mu);
    return st;
}

static enum um_status
rr_unexpected(struct um_rlredis *r, redisReply *rep, struct um_error *err)
{
    freeReplyObject(rep);
    (void)pthread_mutex_lock(&r->mu);
    r->failures++;
    (void)pthread_mutex_unlock(&r->mu);
    return RR_FAIL(err, UM_ETEMP, "ratelimit: redis %s: unexpected reply", r->addr);
}

/* An array reply of at least n integers. */
static bool
rr_ints(const redisReply *rep, size_t n)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    }
    return true;
}

/* --- lifecycle ---------------------------------------------------------------------- */

static bool
rr_sha1_hex(const char *s, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return false;
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    return true;
}

static char *
rr_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

enum um_status
um_rlredis_new(const struct um_rlredis_opts *o, struct um_rlredis **out, struct um_error *err)
{
    static const struct um_rlredis_opts dflt = {0};
    struct um_rlredis *r;
    pthread_condattr_t ca;
    const char *prefix;

    *out = NULL;
    if (o == NULL)
        o = &dflt;
    prefix = o->prefix != NULL ? o->prefix : UM_RLREDIS_DEFAULT_PREFIX;
    if (prefix[0] == '\0' || strlen(prefix) > UM_RLREDIS_PREFIX_MAX)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: prefix must have 1..%d bytes",
                       UM_RLREDIS_PREFIX_MAX);
    if (o->port > 65535)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: port %u not in 1..65535", o->port);
    if (o->timeout_ms > UM_RLREDIS_MAX_TIMEOUT_MS)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: timeout %u ms not in 1..%d",
                       o->timeout_ms, UM_RLREDIS_MAX_TIMEOUT_MS);
    if (o->pool_size > UM_RLREDIS_MAX_POOL)
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: pool of %u not in 1..%d", o->pool_size,
                       UM_RLREDIS_MAX_POOL);
    if (o->socket != NULL && (o->socket[0] == '\0' || strlen(o->socket) > 200))
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: bad socket path");
    if (o->host != NULL && (o->host[0] == '\0' || strlen(o->host) > 255))
        return RR_FAIL(err, UM_EINVAL, "ratelimit: redis: bad host");

    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return RR_FAIL(err, UM_ENOMEM, "ratelimit: redis: out of memory");
    (void)pthread_mutex_init(&r->mu, NULL);
    (void)pthread_condattr_init(&ca);
    (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    (void)pthread_cond_init(&r->cv, &ca);
    (void)pthread_condattr_destroy(&ca);
    r->port = o->port != 0 ? o->port : UM_RLREDIS_DEFAULT_PORT;
    r->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : UM_RLREDIS_DEFAULT_TIMEOUT_MS;
    r->pool_size = o->pool_size != 0 ? o->pool_size : UM_RLREDIS_DEFAULT_POOL;
    r->backoff_min = o->backoff_min_ms != 0 ? o->backoff_min_ms : UM_RLREDIS_DEFAULT_BACKOFF_MIN;
    r->backoff_max = o->backoff_max_ms != 0 ? o->backoff_max_ms : UM_RLREDIS_DEFAULT_BACKOFF_MAX;
    if (r->backoff_max < r->backoff_min)
        r->backoff_max = r->backoff_min;
    r->expire_margin = o->expire_margin != 0 ? o->expire_margin : UM_RLREDIS_DEFAULT_EXPIRE_MARGIN;
    r->scan_max = o->stats_scan_max != 0 ? o->stats_scan_max : UM_RLREDIS_DEFAULT_SCAN_MAX;
    r->prefix = rr_strdup(prefix);
    r->host = rr_strdup(o->host != NULL ? o->host : UM_RLREDIS_DEFAULT_HOST);
    r->socket = o->socket != NULL ? rr_strdup(o->socket) : NULL;
    r->idle = calloc(r->pool_size, sizeof(*r->idle));
    if (r->prefix == NULL || r->host == NULL || (o->socket != NULL && r->socket == NULL)
        || r->idle == NULL) {
        um_rlredis_free(r);
        return RR_FAIL(err, UM_ENOMEM, "ratelimit: redis: out of memory");
    }
    for (int i = 0; i < RR_NSCRIPTS; i++) {
        if (!rr_sha1_hex(rr_scripts[i], r->sha[i])) {
            um_rlredis_free(r);
            return RR_FAIL(err, UM_ENOMEM, "ratelimit: redis: SHA-1 unavailable");
        }
    }
    if (r->socket != NULL)
        (void)snprintf(r->addr, sizeof(r->addr), "unix:%s", r->socket);
    else
        (void)snprintf(r->addr, sizeof(r->addr), "%s:%u", r->host, r->port);
    r->backoff_ms = r->backoff_min;
    *out = r;
    return UM_OK;
}

void
um_rlredis_free(struct um_rlredis *r)
{
    if (r == NULL)
        return;
    for (unsigned i = 0; i < r->nidle; i++)
        redisFree(r->idle[i]);
    (void)pthread_mutex_destroy(&r->mu);
    (void)pthread_cond_destroy(&r->cv);
    free(r->idle);
    free(r->prefix);
    free(r->host);
    free(r->socket);
    free(r);
}

/* --- decisions ---------------------------------------------------------------------- */

enum um_status
um_rlredis_reserve(struct um_rlredis *r, const struct um_ratelimit_policy *policy,
                   struct um_str key, unsigned n, int64_t now, struct um_ratelimit_decision *d,
                   struct um_error *err)
{
    char z[RR_NAME_MAX], m[RR_NAME_MAX], a_now[24], a_n[24], a_lim[24], a_win[24], a_ttl[24];
    const char *argv[10];
    size_t argvlen[10];
    redisReply *rep;
    enum um_status st;
    unsigned limit, window;
    bool exempt;

    memset(d, 0, sizeof(*d));
    if ((st = rr_check_key(key, err)) != UM_OK || (st = rr_check_now(now, err)) != UM_OK)
        return st;
    if (n == 0 || n > UM_RATELIMIT_MAX_LIMIT) {
        return RR_FAIL(err, UM_EINVAL, "ratelimit: %u recipients not in 1..%d", n,
                       UM_RATELIMIT_MAX_LIMIT);
    }
    window = um_ratelimit_policy_window(policy);
    um_ratelimit_policy_match(policy, key, &limit, &exempt);
    d->limit = limit;
    d->window = window;
    if (exempt) {
        d->allowed = true;
        d->exempt = true;
        d->ts = now;
        return UM_OK;
    }
    (void)rr_names(r, key, z, m);
    (void)snprintf(a_now, sizeof(a_now), "%lld", (long long)now);
    (void)snprintf(a_n, sizeof(a_n), "%u", n);
    (void)snprintf(a_lim, sizeof(a_lim), "%u", limit);
    (void)snprintf(a_win, sizeof(a_win), "%u", window);
    (void)snprintf(a_ttl, sizeof(a_ttl), "%llu", (unsigned long long)window + r->expire_margin);
    argv[2] = "2";
    argv[3] = z;
    argv[4] = m;
    argv[5] = a_now;
    argv[6] = a_n;
    argv[7] = a_lim;
    argv[8] = a_win;
    argv[9] = a_ttl;
    for (int i = 2; i < 10; i++)
        argvlen[i] = strlen(argv[i]);
    if ((st = rr_call(r, RR_RESERVE, 10, argv, argvlen, &rep, err)) != UM_OK)
        return st;
    if (!rr_ints(rep, 6) || rep->element[2]->integer < 0 || rep->element[3]->integer < 0
        || rep->element[4]->integer < 0 || rep->element[5]->integer < 0)
        return rr_unexpected(r, rep, err);
    d->allowed = rep->element[0]->integer != 0;
    d->notify = rep->element[1]->integer != 0;
    d->count = (unsigned)rep->element[2]->integer;
    d->refused =
        rep->element[3]->integer > UINT_MAX ? UINT_MAX : (unsigned)rep->element[3]->integer;
    d->retry_after = (unsigned)rep->element[4]->integer;
    d->ts = rep->element[5]->integer;
    freeReplyObject(rep);
    return UM_OK;
}

enum um_status
um_rlredis_release(struct um_rlredis *r, struct um_str key, int64_t ts, unsigned n,
                   unsigned *released, struct um_error *err)
{
    char z[RR_NAME_MAX], m[RR_NAME_MAX], a_ts[24], a_n[24];
    const char *argv[6];
    size_t argvlen[6];
    redisReply *rep;
    enum um_status st;

    if (released != NULL)
        *released = 0;
    if ((st = rr_check_key(key, err)) != UM_OK || (st = rr_check_now(ts, err)) != UM_OK)
        return st;
    if (n == 0)
        return UM_OK;
    (void)rr_names(r, key, z, m);
    (void)snprintf(a_ts, sizeof(a_ts), "%lld", (long long)ts);
    (void)snprintf(a_n, sizeof(a_n), "%u", n);
    argv[2] = "1";
    argv[3] = z;
    argv[4] = a_ts;
    argv[5] = a_n;
    for (int i = 2; i < 6; i++)
        argvlen[i] = strlen(argv[i]);
    if ((st = rr_call(r, RR_RELEASE, 6, argv, argvlen, &rep, err)) != UM_OK)
        return st;
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0 || rep->integer > (long long)n)
        return rr_unexpected(r, rep, err);
    if (released != NULL)
        *released = (unsigned)rep->integer;
    freeReplyObject(rep);
    return UM_OK;
}

enum um_status
um_rlredis_reset(struct um_rlredis *r, struct um_str key, struct um_error *err)
{
    char z[RR_NAME_MAX], m[RR_NAME_MAX], q[96], k[UM_RATELIMIT_KEY_MAX + 1];
    const char *argv[3];
    size_t argvlen[3];
    redisReply *rep;
    enum um_status st;
    long long deleted;

    if ((st = rr_check_key(key, err)) != UM_OK)
        return st;
    (void)rr_names(r, key, z, m);
    argv[0] = "DEL";
    argv[1] = z;
    argv[2] = m;
    for (int i = 0; i < 3; i++)
        argvlen[i] = strlen(argv[i]);
    if ((st = rr_call(r, RR_PLAIN, 3, argv, argvlen, &rep, err)) != UM_OK)
        return st;
    if (rep->type != REDIS_REPLY_INTEGER)
        return rr_unexpected(r, rep, err);
    deleted = rep->integer;
    freeReplyObject(rep);
    if (deleted == 0) {
        um_ascii_lower(k, key.p, key.len);
        return RR_FAIL(err, UM_ENOENT, "ratelimit: \"%s\" is not tracked",
                       um_log_escaped(q, sizeof(q), k, key.len));
    }
    return UM_OK;
}

/* --- stats -------------------------------------------------------------------------- */

/* a ranks before b: higher count, then smaller key (as ratelimit.c). */
static bool
rr_stat_before(const struct um_ratelimit_stat *a, const struct um_ratelimit_stat *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c;

    if (a->count != b->count)
        return a->count > b->count;
    c = memcmp(a->key, b->key, n);
    return c < 0 || (c == 0 && a->key_len < b->key_len);
}

/* Inserts s into the top list out[0..*got) of at most max entries. */
static void
rr_stat_insert(struct um_ratelimit_stat *out, size_t max, size_t *got,
               const struct um_ratelimit_stat *s)
{
    size_t i = *got;

    if (max == 0)
        return;
    if (i == max) {
        if (!rr_stat_before(s, &out[max - 1]))
            return;
        i = max - 1;
    } else {
        (*got)++;
    }
    while (i > 0 && rr_stat_before(s, &out[i - 1])) {
        out[i] = out[i - 1];
        i--;
    }
    out[i] = *s;
}

/* Glob-escapes the prefix for SCAN MATCH and appends "{*}". */
static void
rr_scan_pattern(const char *prefix, char *out, size_t size)
{
    size_t o = 0;

    for (const char *p = prefix; *p != '\0' && o + 6 < size; p++) {
        if (*p == '*' || *p == '?' || *p == '[' || *p == ']' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    memcpy(out + o, "{*}", 4);
}

struct rr_page {
    const char **argv;
    size_t *argvlen;
    char **names; /* meta names, owned */
    unsigned *limits;
    char (*lim)[16];
    size_t nkeys;
};

static void
rr_page_free(struct rr_page *pg)
{
    if (pg->names != NULL) {
        for (size_t i = 0; i < pg->nkeys; i++)
            free(pg->names[i]);
    }
    free(pg->names);
    free(pg->argv);
    free(pg->argvlen);
    free(pg->limits);
    free(pg->lim);
    memset(pg, 0, sizeof(*pg));
}

/* Runs the stats script over one SCAN page of names. */
static enum um_status
rr_stats_page(struct um_rlredis *r, const struct um_ratelimit_policy *policy, int64_t now,
              const redisReply *keys, struct um_ratelimit_stat *out, size_t max, size_t *got,
              struct um_error *err)
{
    struct rr_page pg = {0};
    struct um_ratelimit_stat *st1;
    char a_now[24], a_win[24];
    size_t n = keys->elements, argc = 0, kept = 0;
    enum um_status st = UM_OK;
    redisReply *rep = NULL;

    st1 = malloc(sizeof(*st1));
    pg.argv = calloc(5 + 3 * n, sizeof(*pg.argv));
    pg.argvlen = calloc(5 + 3 * n, sizeof(*pg.argvlen));
    pg.names = calloc(n, sizeof(*pg.names));
    pg.limits = calloc(n, sizeof(*pg.limits));
    pg.lim = calloc(n, sizeof(*pg.lim));
    if (st1 == NULL || pg.argv == NULL || pg.argvlen == NULL || pg.names == NULL
        || pg.limits == NULL || pg.lim == NULL) {
        st = RR_FAIL(err, UM_ENOMEM, "ratelimit: redis: out of memory");
        goto out;
    }
    /* KEYS: zset, meta per kept key; keep the decoded key in names[] slot order. */
    pg.nkeys = n;
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = keys->element[i];
        size_t klen;
        bool exempt;

        if (k->type != REDIS_REPLY_STRING || !rr_decode_name(r, k->str, k->len, st1->key, &klen))
            continue;
        um_ratelimit_policy_match(policy, (struct um_str){st1->key, klen}, &pg.limits[kept],
                                  &exempt);
        if (exempt)
            continue;
        pg.names[kept] = malloc(k->len + 3);
        if (pg.names[kept] == NULL) {
            st = RR_FAIL(err, UM_ENOMEM, "ratelimit: redis: out of memory");
            goto out;
        }
        memcpy(pg.names[kept], k->str, k->len);
        memcpy(pg.names[kept] + k->len, ":e", 3);
        pg.argv[3 + 2 * kept] = k->str;
        pg.argvlen[3 + 2 * kept] = k->len;
        pg.argv[4 + 2 * kept] = pg.names[kept];
        pg.argvlen[4 + 2 * kept] = k->len + 2;
        kept++;
    }
    if (kept == 0)
        goto out;
    (void)snprintf(a_now, sizeof(a_now), "%lld", (long long)now);
    (void)snprintf(a_win, sizeof(a_win), "%u", um_ratelimit_policy_window(policy));
    argc = 3 + 2 * kept;
    pg.argv[argc] = a_now;
    pg.argvlen[argc++] = strlen(a_now);
    pg.argv[argc] = a_win;
    pg.argvlen[argc++] = strlen(a_win);
    for (size_t i = 0; i < kept; i++) {
        (void)snprintf(pg.lim[i], sizeof(pg.lim[i]), "%u", pg.limits[i]);
        pg.argv[argc] = pg.lim[i];
        pg.argvlen[argc++] = strlen(pg.lim[i]);
    }
    {
        char nk[24];
        (void)snprintf(nk, sizeof(nk), "%zu", 2 * kept);
        pg.argv[2] = nk;
        pg.argvlen[2] = strlen(nk);
        st = rr_call(r, RR_STATS, (int)argc, pg.argv, pg.argvlen, &rep, err);
    }
    if (st != UM_OK)
        goto out;
    if (!rr_ints(rep, 3 * kept)) {
        st = rr_unexpected(r, rep, err);
        rep = NULL;
        goto out;
    }
    for (size_t i = 0; i < kept; i++) {
        long long cnt = rep->element[3 * i]->integer;
        size_t klen;

        if (cnt <= 0)
            continue;
        (void)rr_decode_name(r, pg.argv[3 + 2 * i], pg.argvlen[3 + 2 * i], st1->key, &klen);
        st1->key_len = klen;
        st1->count = (unsigned)cnt;
        st1->limit = pg.limits[i];
        st1->refused = (unsigned)rep->element[3 * i + 1]->integer;
        st1->oldest = rep->element[3 * i + 2]->integer;
        rr_stat_insert(out, max, got, st1);
    }
out:
    if (rep != NULL)
        freeReplyObject(rep);
    pg.nkeys = kept;
    rr_page_free(&pg);
    free(st1);
    return st;
}

enum um_status
um_rlredis_stats(struct um_rlredis *r, const struct um_ratelimit_policy *policy, int64_t now,
                 struct um_ratelimit_stat *out, size_t max, size_t *got, struct um_error *err)
{
    char pattern[2 * UM_RLREDIS_PREFIX_MAX + 8], cursor[32] = "0", count[16];
    size_t seen = 0;
    enum um_status st;

    *got = 0;
    if ((st = rr_check_now(now, err)) != UM_OK)
        return st;
    rr_scan_pattern(r->prefix, pattern, sizeof(pattern));
    (void)snprintf(count, sizeof(count), "%d", RR_SCAN_COUNT);
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", count};
        size_t argvlen[6];
        redisReply *rep;

        for (int i = 0; i < 6; i++)
            argvlen[i] = strlen(argv[i]);
        if ((st = rr_call(r, RR_PLAIN, 6, argv, argvlen, &rep, err)) != UM_OK)
            return st;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2
            || rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= sizeof(cursor)
            || rep->element[1]->type != REDIS_REPLY_ARRAY)
            return rr_unexpected(r, rep, err);
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
        cursor[rep->element[0]->len] = '\0';
        seen += rep->element[1]->elements;
        st = rr_stats_page(r, policy, now, rep->element[1], out, max, got, err);
        freeReplyObject(rep);
        if (st != UM_OK)
            return st;
    } while (strcmp(cursor, "0") != 0 && seen < r->scan_max);
    return UM_OK;
}

void
um_rlredis_totals(struct um_rlredis *r, struct um_rlredis_totals *t)
{
    (void)pthread_mutex_lock(&r->mu);
    t->calls = r->calls;
    t->failures = r->failures;
    t->outages = r->outages;
    t->connects = r->connects;
    t->down = r->down;
    t->pool_size = r->pool_size;
    t->pool_open = r->nopen;
    (void)pthread_mutex_unlock(&r->mu);
}
