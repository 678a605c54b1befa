/*
 * senderkey.c - which sender a recipient is counted against
 *
 * Design note: a key is "kind:value", built by trying the operator's sources in order.
 * Every step is a bounded scan of bytes the MTA handed us; nothing allocates, so the
 * function can run in any callback.  Values are normalised only as far as needed for two
 * spellings of one sender to meet (ASCII lower-case, <> and source routes stripped,
 * inet_ntop() form of addresses), because the rate limiter, `unimilter stats` and the
 * policy patterns all see this exact string.
 *
 * Received grammar (Postfix pickup's "Received: by %s (%s, from userid %ld)"):
 *   value    = *FWS "by" 1*FWS host 1*FWS "(" name "," *FWS "from" 1*FWS "userid" 1*FWS
 *              uid *FWS ")" *OCTET
 *   host     = 1*(any byte except FWS, "(" and ")")
 *   name     = 1*(any byte except FWS, "(", ")" and ",")
 *   uid      = 1*10DIGIT                      ; <= 4294967294
 *   FWS      = SP / HTAB / CR / LF
 * Keywords compare case-insensitively.  Anything else is UM_ENOENT: the header is junk or
 * another MTA's, and the caller falls through to the next source.
 */
#include "senderkey.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* um_error_set() returns its code, but from another file; spelling the code out here lets
 * clang-analyzer follow the error paths. */
#define SK_FAIL(err, code, ...) ((void)um_error_set((err), (code), __VA_ARGS__), (code))

static const struct {
    enum um_senderkey_source src;
    const char *name;
    const char *prefix;
} senderkey_kinds[] = {
    {UM_SENDERKEY_SOURCE_SASL, "sasl", "sasl:"},
    {UM_SENDERKEY_SOURCE_SENDER, "sender", "sender:"},
    {UM_SENDERKEY_SOURCE_SENDER_DOMAIN, "sender_domain", "domain:"},
    {UM_SENDERKEY_SOURCE_CLIENT_IP, "client_ip", "ip:"},
    {UM_SENDERKEY_SOURCE_UID, "uid", "uid:"},
};
#define SENDERKEY_NKINDS (sizeof(senderkey_kinds) / sizeof(senderkey_kinds[0]))

static bool
senderkey_is_fws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static struct um_str
senderkey_trim(struct um_str s)
{
    while (s.len > 0 && senderkey_is_fws((unsigned char)s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && senderkey_is_fws((unsigned char)s.p[s.len - 1]))
        s.len--;
    return s;
}

/* Copies a printable rendering of untrusted bytes into buf for an error message. */
static const char *
senderkey_quote(struct um_str s, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < s.len && o + 5 < size; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o] = '\0';
    return buf;
}

const char *
um_senderkey_source_name(enum um_senderkey_source src)
{
    for (size_t i = 0; i < SENDERKEY_NKINDS; i++) {
        if (senderkey_kinds[i].src == src)
            return senderkey_kinds[i].name;
    }
    return "unknown";
}

static const char *
senderkey_prefix(enum um_senderkey_source src)
{
    for (size_t i = 0; i < SENDERKEY_NKINDS; i++) {
        if (senderkey_kinds[i].src == src)
            return senderkey_kinds[i].prefix;
    }
    return "unknown:";
}

enum um_status
um_senderkey_source_parse(struct um_str name, enum um_senderkey_source *out, struct um_error *err)
{
    char q[96];

    for (size_t i = 0; i < SENDERKEY_NKINDS; i++) {
        if (um_str_eq_ci(name, senderkey_kinds[i].name)) {
            *out = senderkey_kinds[i].src;
            return UM_OK;
        }
    }
    return SK_FAIL(err, UM_EINVAL,
                   "unknown sender key source \"%s\" (want sasl, sender, sender_domain, "
                   "client_ip or uid)",
                   senderkey_quote(name, q, sizeof(q)));
}

void
um_senderkey_order_init(struct um_senderkey_order *order)
{
    memset(order, 0, sizeof(*order));
    order->ipv6_prefix = 64;
}

void
um_senderkey_order_default(struct um_senderkey_order *order)
{
    um_senderkey_order_init(order);
    order->src[0] = UM_SENDERKEY_SOURCE_SASL;
    order->src[1] = UM_SENDERKEY_SOURCE_SENDER;
    order->n = 2;
}

enum um_status
um_senderkey_order_add(struct um_senderkey_order *order, struct um_str name, struct um_error *err)
{
    enum um_senderkey_source src;
    enum um_status st = um_senderkey_source_parse(name, &src, err);

    if (st != UM_OK)
        return st;
    for (size_t i = 0; i < order->n; i++) {
        if (order->src[i] == src) {
            return SK_FAIL(err, UM_EINVAL, "sender key source \"%s\" listed twice",
                           um_senderkey_source_name(src));
        }
    }
    /* Five distinct sources cannot overflow five slots; checked anyway. */
    if (order->n >= UM_SENDERKEY_MAX_SOURCES)
        return SK_FAIL(err, UM_EINVAL, "too many sender key sources");
    order->src[order->n++] = src;
    return UM_OK;
}

/*
 * Envelope sender as an address: trimmed, <> and an RFC 5321 4.1.2 source route removed.
 * Returns false for the null sender and for an unterminated route.
 */
static bool
senderkey_address(struct um_str s, struct um_str *addr)
{
    s = senderkey_trim(s);
    if (s.len >= 2 && s.p[0] == '<' && s.p[s.len - 1] == '>') {
        s.p++;
        s.len -= 2;
        s = senderkey_trim(s);
    }
    if (s.len > 0 && s.p[0] == '@') {
        const char *colon = memchr(s.p, ':', s.len);
        if (colon == NULL)
            return false;
        s.len -= (size_t)(colon + 1 - s.p);
        s.p = colon + 1;
    }
    *addr = s;
    return s.len > 0;
}

static bool
senderkey_domain(struct um_str s, struct um_str *dom)
{
    struct um_str addr;
    size_t at;

    if (!senderkey_address(s, &addr))
        return false;
    for (at = addr.len; at > 0 && addr.p[at - 1] != '@'; at--)
        continue;
    if (at == 0)
        return false;
    dom->p = addr.p + at;
    dom->len = addr.len - at;
    if (dom->len > 0 && dom->p[dom->len - 1] == '.')
        dom->len--;
    return dom->len > 0;
}

/* Writes the canonical text of an IP address into buf (NUL-terminated). */
static bool
senderkey_ip(struct um_str s, unsigned prefix, char *buf, size_t size)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    unsigned char a6[16];
    struct in_addr a4;

    s = senderkey_trim(s);
    if (s.len >= 2 && s.p[0] == '[' && s.p[s.len - 1] == ']') {
        s.p++;
        s.len -= 2;
    }
    if (s.len >= 5 && um_str_eq_ci((struct um_str){s.p, 5}, "ipv6:")) {
        s.p += 5;
        s.len -= 5;
    }
    if (s.len == 0 || s.len >= sizeof(tmp) || memchr(s.p, '\0', s.len) != NULL)
        return false;
    memcpy(tmp, s.p, s.len);
    tmp[s.len] = '\0';
    if (inet_pton(AF_INET, tmp, &a4) == 1)
        return inet_ntop(AF_INET, &a4, buf, (socklen_t)size) != NULL;
    if (inet_pton(AF_INET6, tmp, a6) != 1)
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
        memcpy(&a4, a6 + 12, 4);
        return inet_ntop(AF_INET, &a4, buf, (socklen_t)size) != NULL;
    }
    if (prefix == 0 || prefix > 128)
        prefix = 64;
    for (unsigned bit = prefix; bit < 128; bit++)
        a6[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    if (inet_ntop(AF_INET6, a6, buf, (socklen_t)size) == NULL)
        return false;
    if (prefix < 128) {
        size_t len = strlen(buf);
        int n = snprintf(buf + len, size - len, "/%u", prefix);
        if (n < 0 || (size_t)n >= size - len)
            return false;
    }
    return true;
}

/* Matches a case-insensitive keyword at *pos; advances past it. */
static bool
senderkey_word(struct um_str v, size_t *pos, const char *word)
{
    size_t n = strlen(word);

    if (v.len - *pos < n || !um_str_eq_ci((struct um_str){v.p + *pos, n}, word))
        return false;
    *pos += n;
    return true;
}

/* Skips FWS; returns how many bytes were skipped. */
static size_t
senderkey_fws(struct um_str v, size_t *pos)
{
    size_t start = *pos;

    while (*pos < v.len && senderkey_is_fws((unsigned char)v.p[*pos]))
        (*pos)++;
    return *pos - start;
}

/* Skips 1* bytes not in stop and not FWS; returns how many. */
static size_t
senderkey_token(struct um_str v, size_t *pos, const char *stop)
{
    size_t start = *pos;

    while (*pos < v.len) {
        unsigned char c = (unsigned char)v.p[*pos];
        if (senderkey_is_fws(c) || c == '\0' || strchr(stop, c) != NULL)
            break;
        (*pos)++;
    }
    return *pos - start;
}

enum um_status
um_senderkey_received_uid(struct um_str value, uint32_t *uid, struct um_error *err)
{
    size_t pos = 0, digits = 0;
    uint64_t n = 0;

    (void)senderkey_fws(value, &pos);
    if (!senderkey_word(value, &pos, "by") || senderkey_fws(value, &pos) == 0)
        return SK_FAIL(err, UM_ENOENT, "received: does not start with \"by HOST\"");
    if (senderkey_token(value, &pos, "()") == 0 || senderkey_fws(value, &pos) == 0)
        return SK_FAIL(err, UM_ENOENT, "received: no host after \"by\"");
    if (pos >= value.len || value.p[pos] != '(')
        return SK_FAIL(err, UM_ENOENT, "received: no comment after the host");
    pos++;
    if (senderkey_token(value, &pos, "(),") == 0 || pos >= value.len || value.p[pos] != ',')
        return SK_FAIL(err, UM_ENOENT, "received: comment is not \"(NAME, from userid N)\"");
    pos++;
    (void)senderkey_fws(value, &pos);
    if (!senderkey_word(value, &pos, "from") || senderkey_fws(value, &pos) == 0
        || !senderkey_word(value, &pos, "userid") || senderkey_fws(value, &pos) == 0) {
        return SK_FAIL(err, UM_ENOENT, "received: comment is not \"(NAME, from userid N)\"");
    }
    while (pos < value.len && value.p[pos] >= '0' && value.p[pos] <= '9') {
        if (++digits > 10)
            return SK_FAIL(err, UM_ENOENT, "received: uid too long");
        n = n * 10 + (uint64_t)(value.p[pos] - '0');
        pos++;
    }
    if (digits == 0)
        return SK_FAIL(err, UM_ENOENT, "received: no uid after \"userid\"");
    if (n >= UINT32_MAX)
        return SK_FAIL(err, UM_ENOENT, "received: uid out of range");
    (void)senderkey_fws(value, &pos);
    if (pos >= value.len || value.p[pos] != ')')
        return SK_FAIL(err, UM_ENOENT, "received: junk after the uid");
    *uid = (uint32_t)n;
    return UM_OK;
}

/* Writes prefix + lower-cased value; UM_ELIMIT when it does not fit. */
static enum um_status
senderkey_put(struct um_senderkey *out, enum um_senderkey_source src, struct um_str value,
              struct um_error *err)
{
    const char *prefix = senderkey_prefix(src);
    size_t plen = strlen(prefix);

    if (value.len > UM_SENDERKEY_MAX - plen) {
        return SK_FAIL(err, UM_ELIMIT, "sender key too long (%s, %zu bytes, max %d)",
                       um_senderkey_source_name(src), plen + value.len, UM_SENDERKEY_MAX);
    }
    memcpy(out->key, prefix, plen);
    um_ascii_lower(out->key + plen, value.p, value.len);
    out->len = plen + value.len;
    out->key[out->len] = '\0';
    out->source = src;
    return UM_OK;
}

enum um_status
um_senderkey_derive(const struct um_senderkey_order *order, const struct um_senderkey_input *in,
                    struct um_senderkey *out, struct um_error *err)
{
    char ip[INET6_ADDRSTRLEN + 8];
    struct um_str v;
    uint32_t uid;

    for (size_t i = 0; i < order->n && i < UM_SENDERKEY_MAX_SOURCES; i++) {
        enum um_senderkey_source src = order->src[i];
        switch (src) {
        case UM_SENDERKEY_SOURCE_SASL:
            if (in->sasl_login.p != NULL && in->sasl_login.len > 0)
                return senderkey_put(out, src, in->sasl_login, err);
            break;
        case UM_SENDERKEY_SOURCE_SENDER:
            if (in->sender.p != NULL && senderkey_address(in->sender, &v))
                return senderkey_put(out, src, v, err);
            break;
        case UM_SENDERKEY_SOURCE_SENDER_DOMAIN:
            if (in->sender.p != NULL && senderkey_domain(in->sender, &v))
                return senderkey_put(out, src, v, err);
            break;
        case UM_SENDERKEY_SOURCE_CLIENT_IP:
            if (in->client_ip.p != NULL
                && senderkey_ip(in->client_ip, order->ipv6_prefix, ip, sizeof(ip))) {
                return senderkey_put(out, src, (struct um_str){ip, strlen(ip)}, err);
            }
            break;
        case UM_SENDERKEY_SOURCE_UID:
            if (in->received.p != NULL
                && um_senderkey_received_uid(in->received, &uid, NULL) == UM_OK) {
                int n = snprintf(ip, sizeof(ip), "%lu", (unsigned long)uid);
                return senderkey_put(out, src, (struct um_str){ip, (size_t)n}, err);
            }
            break;
        }
    }
    return SK_FAIL(err, UM_ENOENT, "no sender key source yielded a value");
}
