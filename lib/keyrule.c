/*
 * keyrule.c - From domain -> signing keys; author domain extraction
 *
 * Design note. Rules are a short ordered array (one per signing domain, typically a handful),
 * so matching is a linear scan with first-match-wins, which is also the easiest order for an
 * operator to predict. Patterns are normalised when added (lower case, no trailing dot), so
 * a match is one suffix comparison per rule.
 *
 * Author domain. We sign for the domain a DMARC evaluator will see, so the parser follows
 * RFC 5322 3.4 / 3.6.2 closely enough to find exactly one mailbox and refuses anything with
 * more or less. Grammar accepted (CFWS = comments and white space, anywhere between tokens):
 *
 *     from        = address *("," address)          ; empty elements tolerated (obs-)
 *     address     = mailbox / group
 *     group       = display-name ":" [mailbox *("," mailbox)] ";"
 *     mailbox     = [display-name] "<" [obs-route ":"] addr-spec ">" / addr-spec
 *     addr-spec   = local-part "@" domain           ; the LAST unquoted "@"
 *     local-part  = one dot-atom or quoted-string (unquoted white space refused)
 *     domain      = LDH labels; CFWS only around dots; literals and non-ASCII refused
 *
 * One pass splits the value into mailboxes at top-level "," ":" ";" (quoted strings,
 * comments and angle brackets are skipped as units), counting the non-empty ones and keeping
 * the first; a second pass over that one mailbox finds the domain. Both are O(len) with no
 * allocation; comment nesting is bounded by UM_KEYRULE_MAX_COMMENT_DEPTH.
 */
#include "keyrule.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"

struct keyrule_rule {
    char *pattern; /* normalised: "example.com", "*.example.com" or "*" */
    char *keys[UM_KEYRULE_MAX_KEYS];
    size_t nkeys;
};

struct um_keyrule {
    struct keyrule_rule *rules;
    size_t n, cap;
};

static bool
keyrule_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A domain as a From header may write it (RFC 5322 dot-atom: a hyphen may start or end a
 * label) and as a rule names it: LDH labels of 1..63 bytes, 1..253 bytes in all. */
static bool
keyrule_hostname_ok(const char *s, size_t n)
{
    return um_domain_is_valid((struct um_str){s, n}, UM_DOMAIN_EDGE_HYPHEN);
}

enum um_status
um_keyrule_new(struct um_keyrule **out, struct um_error *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return um_error_set(err, UM_ENOMEM, "keyrule: out of memory");
    return UM_OK;
}

static void
keyrule_rule_fini(struct keyrule_rule *r)
{
    free(r->pattern);
    for (size_t i = 0; i < r->nkeys; i++)
        free(r->keys[i]);
}

void
um_keyrule_free(struct um_keyrule *kr)
{
    if (kr == NULL)
        return;
    for (size_t i = 0; i < kr->n; i++)
        keyrule_rule_fini(&kr->rules[i]);
    free(kr->rules);
    free(kr);
}

size_t
um_keyrule_count(const struct um_keyrule *kr)
{
    return kr->n;
}

static char *
keyrule_dup(const char *s, size_t n, bool lower)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    if (lower)
        um_ascii_lower(d, s, n);
    else
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

enum um_status
um_keyrule_add(struct um_keyrule *kr, const char *pattern, const char *const *keys, size_t nkeys,
               struct um_error *err)
{
    struct keyrule_rule r = {0};
    size_t n;
    const char *host;

    if (pattern == NULL || pattern[0] == '\0')
        return um_error_set(err, UM_EINVAL, "keyrule: empty domain pattern");
    n = strlen(pattern);
    if (n > 1 && pattern[n - 1] == '.')
        n--;
    host = pattern;
    if (n == 1 && pattern[0] == '*') {
        host = NULL;
    } else if (n > 2 && pattern[0] == '*' && pattern[1] == '.') {
        host = pattern + 2;
    } else if (pattern[0] == '.') {
        return um_error_set(err, UM_EINVAL,
                            "keyrule: pattern \"%s\" is ambiguous; write \"*%s\" for its "
                            "subdomains and/or \"%s\" for the domain itself",
                            pattern, pattern, pattern + 1);
    }
    if (host != NULL && !keyrule_hostname_ok(host, n - (size_t)(host - pattern))) {
        return um_error_set(err, UM_EINVAL,
                            "keyrule: bad domain pattern \"%s\" (want example.com, "
                            "*.example.com or *)",
                            pattern);
    }
    if (nkeys == 0 || nkeys > UM_KEYRULE_MAX_KEYS) {
        return um_error_set(err, UM_EINVAL, "keyrule: pattern \"%s\" has %zu keys (1 to %d)",
                            pattern, nkeys, UM_KEYRULE_MAX_KEYS);
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (keys[i] == NULL || keys[i][0] == '\0') {
            return um_error_set(err, UM_EINVAL, "keyrule: pattern \"%s\": empty key name", pattern);
        }
    }
    if (kr->n == kr->cap) {
        size_t cap = kr->cap == 0 ? 8 : kr->cap * 2;
        struct keyrule_rule *nr = realloc(kr->rules, cap * sizeof(*nr));
        if (nr == NULL)
            return um_error_set(err, UM_ENOMEM, "keyrule: out of memory");
        kr->rules = nr;
        kr->cap = cap;
    }
    r.pattern = keyrule_dup(pattern, n, true);
    for (size_t i = 0; r.pattern != NULL && i < nkeys; i++) {
        r.keys[i] = keyrule_dup(keys[i], strlen(keys[i]), false);
        if (r.keys[i] == NULL)
            break;
        r.nkeys = i + 1;
    }
    if (r.pattern == NULL || r.nkeys != nkeys) {
        keyrule_rule_fini(&r);
        return um_error_set(err, UM_ENOMEM, "keyrule: out of memory");
    }
    kr->rules[kr->n++] = r;
    return UM_OK;
}

static bool
keyrule_rule_matches(const char *pat, const char *d, size_t dl)
{
    size_t pl;

    if (pat[0] == '*' && pat[1] == '\0')
        return true;
    if (pat[0] == '*') { /* "*.example.com": a strict subdomain */
        pat += 1;        /* ".example.com" */
        pl = strlen(pat);
        return dl > pl && um_str_eq_ci((struct um_str){d + dl - pl, pl}, pat);
    }
    return um_str_eq_ci((struct um_str){d, dl}, pat);
}

void
um_keyrule_match(const struct um_keyrule *kr, struct um_str domain, struct um_keyrule_match *m)
{
    memset(m, 0, sizeof(*m));
    if (domain.len > 1 && domain.p[domain.len - 1] == '.')
        domain.len--;
    if (domain.len == 0 || domain.len > UM_KEYRULE_DOMAIN_MAX) {
        (void)snprintf(m->reason, sizeof(m->reason), "no usable author domain");
        return;
    }
    for (size_t i = 0; i < kr->n; i++) {
        const struct keyrule_rule *r = &kr->rules[i];
        if (keyrule_rule_matches(r->pattern, domain.p, domain.len)) {
            m->found = true;
            m->keys = (const char *const *)r->keys;
            m->nkeys = r->nkeys;
            m->pattern = r->pattern;
            m->rule = i;
            return;
        }
    }
    /* The domain was validated by the caller or is printed with its length bounded. */
    (void)snprintf(m->reason, sizeof(m->reason), "no rule matches %.*s (%zu rules)",
                   (int)(domain.len > 80 ? 80 : domain.len), domain.p, kr->n);
}

/* ---- From header parsing ------------------------------------------------------------- */

static bool
keyrule_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* At p[*i] == '(' : moves *i past the matching ')'. RFC 5322 3.2.2 (nested, quoted-pair). */
static enum um_status
keyrule_skip_comment(const char *p, size_t len, size_t *i, struct um_error *err)
{
    size_t depth = 0;

    for (; *i < len; (*i)++) {
        char c = p[*i];
        if (c == '\\') {
            (*i)++;
        } else if (c == '(') {
            if (++depth > UM_KEYRULE_MAX_COMMENT_DEPTH)
                return um_error_set(err, UM_EINVAL, "from: comments nested too deep");
        } else if (c == ')' && --depth == 0) {
            (*i)++;
            return UM_OK;
        }
    }
    return um_error_set(err, UM_EINVAL, "from: unterminated comment");
}

/* At p[*i] == '"' : moves *i past the closing quote. RFC 5322 3.2.4. */
static enum um_status
keyrule_skip_quoted(const char *p, size_t len, size_t *i, struct um_error *err)
{
    for ((*i)++; *i < len; (*i)++) {
        if (p[*i] == '\\')
            (*i)++;
        else if (p[*i] == '"') {
            (*i)++;
            return UM_OK;
        }
    }
    return um_error_set(err, UM_EINVAL, "from: unterminated quoted string");
}

struct keyrule_mbox {
    size_t start, end;   /* the whole mailbox */
    size_t astart, aend; /* inside <...> when angle */
    bool angle, nonempty;
};

/* Pass 2: the domain of one addr-spec p[s..e) (angle content or a bare addr-spec). */
static enum um_status
keyrule_addr_domain(const char *p, size_t s, size_t e, bool bare, char *buf, size_t buflen,
                    struct um_str *domain, struct um_error *err)
{
    enum um_status st;
    size_t at = SIZE_MAX, i, n = 0, localchars = 0;
    bool gap = false; /* CFWS seen since the last domain byte */
    char prev = '.';

    /* obs-route ("@a,@b:") ends at the last unquoted ':'; the last unquoted '@' splits. */
    for (i = s; i < e;) {
        if (p[i] == '"') {
            if ((st = keyrule_skip_quoted(p, e, &i, err)) != UM_OK)
                return st;
            continue;
        }
        if (p[i] == '(') {
            if ((st = keyrule_skip_comment(p, e, &i, err)) != UM_OK)
                return st;
            continue;
        }
        if (p[i] == ':') {
            if (bare)
                return um_error_set(err, UM_EINVAL, "from: stray ':' in address");
            s = i + 1;
            at = SIZE_MAX;
        } else if (p[i] == '@') {
            at = i;
        }
        i++;
    }
    if (at == SIZE_MAX)
        return um_error_set(err, UM_EINVAL, "from: address has no '@'");
    /* Local part: one word; CFWS only around it. */
    for (i = s; i < at;) {
        if (p[i] == '(') {
            if ((st = keyrule_skip_comment(p, at, &i, err)) != UM_OK)
                return st;
            gap = localchars > 0;
            continue;
        }
        if (keyrule_wsp(p[i])) {
            gap = localchars > 0;
            i++;
            continue;
        }
        if (gap)
            return um_error_set(err, UM_EINVAL, "from: white space inside the local part");
        if (p[i] == '"') {
            if ((st = keyrule_skip_quoted(p, at, &i, err)) != UM_OK)
                return st;
        } else {
            i++;
        }
        localchars++;
    }
    if (localchars == 0)
        return um_error_set(err, UM_EINVAL, "from: empty local part");
    gap = false;
    for (i = at + 1; i < e;) {
        unsigned char c = (unsigned char)p[i];
        if (c == '(') {
            if ((st = keyrule_skip_comment(p, e, &i, err)) != UM_OK)
                return st;
            gap = true;
            continue;
        }
        if (keyrule_wsp((char)c)) {
            gap = true;
            i++;
            continue;
        }
        if (c == '[')
            return um_error_set(err, UM_EINVAL, "from: domain literal cannot be signed for");
        if (c >= 0x80)
            return um_error_set(err, UM_EINVAL, "from: non-ASCII domain (A-labels expected)");
        if (!keyrule_ldh(c) && c != '.')
            return um_error_set(err, UM_EINVAL, "from: bad character 0x%02x in domain", c);
        if (gap && n > 0 && c != '.' && prev != '.')
            return um_error_set(err, UM_EINVAL, "from: white space inside the domain");
        if (n + 1 >= buflen || n >= UM_KEYRULE_DOMAIN_MAX + 1)
            return um_error_set(err, UM_EINVAL, "from: domain too long");
        buf[n++] = (char)um_ascii_tolower(c);
        prev = (char)c;
        gap = false;
        i++;
    }
    if (n > 1 && buf[n - 1] == '.')
        n--;
    if (!keyrule_hostname_ok(buf, n))
        return um_error_set(err, UM_EINVAL, "from: bad domain");
    buf[n] = '\0';
    *domain = (struct um_str){buf, n};
    return UM_OK;
}

enum um_status
um_keyrule_from_domain(const struct um_str *values, size_t nvalues, char *buf, size_t buflen,
                       struct um_str *domain, struct um_error *err)
{
    enum um_status st;
    struct keyrule_mbox cur = {0}, first = {0};
    size_t count = 0, i = 0;
    bool in_angle = false, in_group = false;
    const char *p;
    size_t len;

    *domain = (struct um_str){NULL, 0};
    if (buflen > 0)
        buf[0] = '\0';
    if (nvalues == 0)
        return um_error_set(err, UM_ENOENT, "from: no From header");
    if (nvalues > 1)
        return um_error_set(err, UM_ELIMIT, "from: %zu From headers", nvalues);
    p = values[0].p;
    len = values[0].len;
    cur.start = 0;
    while (i <= len) {
        char c = i < len ? p[i] : ','; /* the end closes the last mailbox */
        bool at_end = i == len;

        if (!at_end && c == '(') {
            if ((st = keyrule_skip_comment(p, len, &i, err)) != UM_OK)
                return st;
            continue;
        }
        if (!at_end && c == '"') {
            if ((st = keyrule_skip_quoted(p, len, &i, err)) != UM_OK)
                return st;
            cur.nonempty = true;
            continue;
        }
        if (in_angle && !at_end) {
            if (c == '>') {
                in_angle = false;
                cur.aend = i;
            } else if (c == '<') {
                return um_error_set(err, UM_EINVAL, "from: '<' inside an angle address");
            }
            i++;
            continue;
        }
        if (at_end && (in_angle || in_group))
            return um_error_set(err, UM_EINVAL, "from: unterminated %s",
                                in_angle ? "angle address" : "group");
        if (c == '<') {
            if (cur.angle)
                return um_error_set(err, UM_EINVAL, "from: two angle addresses in one mailbox");
            cur.angle = in_angle = cur.nonempty = true;
            cur.astart = i + 1;
        } else if (c == '>') {
            return um_error_set(err, UM_EINVAL, "from: stray '>'");
        } else if (c == ':') {
            if (in_group)
                return um_error_set(err, UM_EINVAL, "from: nested group");
            if (cur.angle)
                return um_error_set(err, UM_EINVAL, "from: ':' after an angle address");
            in_group = true; /* what came before was the group's display name */
            cur = (struct keyrule_mbox){.start = i + 1};
        } else if (c == ',' || c == ';') {
            if (c == ';' && !in_group)
                return um_error_set(err, UM_EINVAL, "from: ';' outside a group");
            if (c == ';')
                in_group = false;
            cur.end = i;
            if (cur.nonempty && ++count == 1)
                first = cur;
            cur = (struct keyrule_mbox){.start = i + 1};
        } else if (!keyrule_wsp(c)) {
            cur.nonempty = true;
        }
        i++;
    }
    if (count == 0)
        return um_error_set(err, UM_ENOENT, "from: no address in From");
    if (count > 1)
        return um_error_set(err, UM_ELIMIT, "from: %zu addresses in From", count);
    if (first.angle) {
        /* Nothing but CFWS may follow the '>'. */
        for (i = first.aend + 1; i < first.end;) {
            if (p[i] == '(') {
                if ((st = keyrule_skip_comment(p, first.end, &i, err)) != UM_OK)
                    return st;
            } else if (keyrule_wsp(p[i])) {
                i++;
            } else {
                return um_error_set(err, UM_EINVAL, "from: text after the angle address");
            }
        }
        return keyrule_addr_domain(p, first.astart, first.aend, false, buf, buflen, domain, err);
    }
    return keyrule_addr_domain(p, first.start, first.end, true, buf, buflen, domain, err);
}
