/*
 * authres.c - RFC 8601 Authentication-Results: builder and authserv-id parser
 *
 * Design note: the builder keeps each method result as already-rendered text pieces (the
 * "method=result (reason)" head and one "ptype.prop=value" string per property), so the
 * sanitising happens once, when the untrusted value arrives, and rendering is only folding.
 * Folding: the first line is "authserv-id;", then each result starts a new line (LF TAB);
 * inside a result, a property goes on the same line while the line stays under
 * UM_AUTHRES_LINE_MAX bytes, else on a new one. Every piece is bounded (VALUE_MAX, REASON_MAX,
 * escaping at most doubles), so every piece fits on a line of its own and the 998 bound holds.
 *
 * Parser grammar (RFC 8601 2.2, only as far as the authserv-id):
 *   value        = [CFWS] authserv-id ...  (the rest, version and results, is not checked)
 *   authserv-id  = token / quoted-string          (RFC 2045 token; RFC 5322 quoted-string)
 *   CFWS         = *( WSP / CR / LF / comment )   comment = "(" *( ctext / quoted-pair /
 *                                                 comment ) ")"
 * Work is one left-to-right pass; comment nesting is bounded by UM_AUTHRES_COMMENT_DEPTH.
 */
#include "authres.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct authres_result {
    char *head; /* "spf=pass (reason)" */
    char *props[UM_AUTHRES_MAX_PROPS];
    size_t nprops;
};

struct um_authres {
    char *id; /* rendered authserv-id (token or quoted-string) */
    struct authres_result res[UM_AUTHRES_MAX_RESULTS];
    size_t nres;
};

static const char *const auth_names[] = {
    [UM_AUTH_NONE] = "none",           [UM_AUTH_PASS] = "pass",
    [UM_AUTH_FAIL] = "fail",           [UM_AUTH_SOFTFAIL] = "softfail",
    [UM_AUTH_NEUTRAL] = "neutral",     [UM_AUTH_TEMPERROR] = "temperror",
    [UM_AUTH_PERMERROR] = "permerror", [UM_AUTH_POLICY] = "policy",
};

const char *
um_auth_name(enum um_auth a)
{
    if ((unsigned)a >= sizeof(auth_names) / sizeof(auth_names[0]))
        return "permerror";
    return auth_names[a];
}

/* RFC 2045 token: any printable US-ASCII except SPACE and tspecials. */
static bool
authres_is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static bool
authres_is_keyword(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
              || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* Writes v as a pvalue: token (plus '@'), else quoted-string. NULL: unusable bytes. */
static char *
authres_pvalue(const char *v, size_t len)
{
    bool token = len > 0;
    size_t need = 3;
    char *out, *w;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c >= 0x7f) {
            if (c != '\t')
                return NULL;
        }
        if (!authres_is_token_char(c) && c != '@')
            token = false;
        need += (c == '"' || c == '\\') ? 2 : 1;
    }
    out = malloc(need);
    if (out == NULL)
        return NULL;
    w = out;
    if (!token)
        *w++ = '"';
    for (size_t i = 0; i < len; i++) {
        char c = v[i] == '\t' ? ' ' : v[i];
        if (c == '"' || c == '\\')
            *w++ = '\\';
        *w++ = c;
    }
    if (!token)
        *w++ = '"';
    *w = '\0';
    return out;
}

enum um_status
um_authres_new(const char *authserv_id, struct um_authres **out, struct um_error *err)
{
    struct um_authres *ar;

    *out = NULL;
    if (authserv_id == NULL || *authserv_id == '\0' || strlen(authserv_id) > 255)
        return um_error_set(err, UM_EINVAL, "authres: authserv-id empty or too long");
    ar = calloc(1, sizeof(*ar));
    if (ar == NULL)
        return um_error_set(err, UM_ENOMEM, "authres: out of memory");
    ar->id = authres_pvalue(authserv_id, strlen(authserv_id));
    if (ar->id == NULL) {
        free(ar);
        return um_error_set(err, UM_EINVAL, "authres: authserv-id has control or 8-bit bytes");
    }
    *out = ar;
    return UM_OK;
}

void
um_authres_free(struct um_authres *ar)
{
    if (ar == NULL)
        return;
    for (size_t i = 0; i < ar->nres; i++) {
        free(ar->res[i].head);
        for (size_t j = 0; j < ar->res[i].nprops; j++)
            free(ar->res[i].props[j]);
    }
    free(ar->id);
    free(ar);
}

enum um_status
um_authres_add(struct um_authres *ar, const char *method, enum um_auth result, const char *reason,
               struct um_error *err)
{
    char comment[UM_AUTHRES_REASON_MAX * 2 + 1];
    size_t n = 0, len;
    char *head;

    if (!authres_is_keyword(method))
        return um_error_set(err, UM_EINVAL, "authres: bad method name");
    if (ar->nres >= UM_AUTHRES_MAX_RESULTS)
        return um_error_set(err, UM_ELIMIT, "authres: more than %d results",
                            UM_AUTHRES_MAX_RESULTS);
    /* RFC 5322 3.2.2 ctext: printable except ( ) \, which are quoted-pairs here. */
    for (size_t i = 0; reason != NULL && reason[i] != '\0' && i < UM_AUTHRES_REASON_MAX; i++) {
        unsigned char c = (unsigned char)reason[i];
        if (c == '(' || c == ')' || c == '\\')
            comment[n++] = '\\';
        comment[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    comment[n] = '\0';
    len = strlen(method) + 1 + strlen(um_auth_name(result)) + (n > 0 ? n + 3 : 0) + 1;
    head = malloc(len);
    if (head == NULL)
        return um_error_set(err, UM_ENOMEM, "authres: out of memory");
    if (n > 0)
        (void)snprintf(head, len, "%s=%s (%s)", method, um_auth_name(result), comment);
    else
        (void)snprintf(head, len, "%s=%s", method, um_auth_name(result));
    ar->res[ar->nres].head = head;
    ar->res[ar->nres].nprops = 0;
    ar->nres++;
    return UM_OK;
}

enum um_status
um_authres_prop(struct um_authres *ar, const char *ptype, const char *property, struct um_str value,
                struct um_error *err)
{
    struct authres_result *r;
    char *pv, *s;
    size_t len;

    if (ar->nres == 0)
        return um_error_set(err, UM_EINVAL, "authres: property before any result");
    r = &ar->res[ar->nres - 1];
    if (!authres_is_keyword(ptype) || !authres_is_keyword(property))
        return um_error_set(err, UM_EINVAL, "authres: bad property name");
    if (r->nprops >= UM_AUTHRES_MAX_PROPS)
        return um_error_set(err, UM_ELIMIT, "authres: too many properties");
    if (value.len > UM_AUTHRES_VALUE_MAX || (value.p == NULL && value.len > 0))
        return um_error_set(err, UM_EINVAL, "authres: %s.%s value too long (%zu bytes)", ptype,
                            property, value.len);
    pv = authres_pvalue(value.p, value.len);
    if (pv == NULL)
        return um_error_set(err, UM_EINVAL, "authres: %s.%s value has control or 8-bit bytes",
                            ptype, property);
    len = strlen(ptype) + strlen(property) + strlen(pv) + 3;
    s = malloc(len);
    if (s == NULL) {
        free(pv);
        return um_error_set(err, UM_ENOMEM, "authres: out of memory");
    }
    (void)snprintf(s, len, "%s.%s=%s", ptype, property, pv);
    free(pv);
    r->props[r->nprops++] = s;
    return UM_OK;
}

enum um_status
um_authres_render(const struct um_authres *ar, char **out, struct um_error *err)
{
    size_t cap = strlen(ar->id) + 16, n, col;
    char *buf;

    *out = NULL;
    for (size_t i = 0; i < ar->nres; i++) {
        cap += strlen(ar->res[i].head) + 4;
        for (size_t j = 0; j < ar->res[i].nprops; j++)
            cap += strlen(ar->res[i].props[j]) + 3;
    }
    buf = malloc(cap);
    if (buf == NULL)
        return um_error_set(err, UM_ENOMEM, "authres: out of memory");
    n = (size_t)snprintf(buf, cap, "%s;", ar->id);
    if (ar->nres == 0) {
        memcpy(buf + n, " none", 6);
        *out = buf;
        return UM_OK;
    }
    for (size_t i = 0; i < ar->nres; i++) {
        const struct authres_result *r = &ar->res[i];
        size_t hl = strlen(r->head);

        memcpy(buf + n, "\n\t", 2);
        n += 2;
        memcpy(buf + n, r->head, hl);
        n += hl;
        col = 1 + hl; /* the TAB counts as one byte of the line */
        for (size_t j = 0; j < r->nprops; j++) {
            size_t pl = strlen(r->props[j]);
            /* +2: the ";" that may end this line and a margin */
            if (col + 1 + pl + 2 >= UM_AUTHRES_LINE_MAX) {
                memcpy(buf + n, "\n\t", 2);
                n += 2;
                col = 1;
            } else {
                buf[n++] = ' ';
                col++;
            }
            memcpy(buf + n, r->props[j], pl);
            n += pl;
            col += pl;
        }
        if (i + 1 < ar->nres)
            buf[n++] = ';';
    }
    buf[n] = '\0';
    *out = buf;
    return UM_OK;
}

/* Skips CFWS from *i; false on an unterminated or too deep comment. */
static bool
authres_skip_cfws(const char *p, size_t len, size_t *i)
{
    while (*i < len) {
        char c = p[*i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            (*i)++;
        } else if (c == '(') {
            unsigned depth = 0;
            do {
                c = p[*i];
                if (c == '\\') {
                    (*i)++; /* quoted-pair: skip the next byte too */
                } else if (c == '(') {
                    if (++depth > UM_AUTHRES_COMMENT_DEPTH)
                        return false;
                } else if (c == ')') {
                    depth--;
                }
                (*i)++;
            } while (depth > 0 && *i < len);
            if (depth > 0)
                return false;
        } else {
            return true;
        }
    }
    return true;
}

enum um_status
um_authres_parse_id(struct um_str value, struct um_str *id)
{
    const char *p = value.p;
    size_t len = p == NULL ? 0 : value.len, i = 0, start;

    id->p = NULL;
    id->len = 0;
    if (!authres_skip_cfws(p, len, &i) || i >= len)
        return UM_EINVAL;
    if (p[i] == '"') {
        start = ++i;
        while (i < len && p[i] != '"') {
            if (p[i] == '\\')
                i++;
            i++;
        }
        if (i >= len)
            return UM_EINVAL;
        id->p = p + start;
        id->len = i - start;
        i++;
    } else {
        start = i;
        while (i < len && authres_is_token_char((unsigned char)p[i]))
            i++;
        if (i == start)
            return UM_EINVAL;
        id->p = p + start;
        id->len = i - start;
    }
    /* What follows (CFWS, an optional version, ";" and the results) is not checked: a
     * header whose id is ours is forged however broken its tail (deleting is the safe side). */
    return UM_OK;
}

bool
um_authres_is_ours(struct um_str value, const char *authserv_id)
{
    struct um_str id;
    size_t k = 0;

    if (authserv_id == NULL || um_authres_parse_id(value, &id) != UM_OK)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char a = (unsigned char)id.p[i], b;
        if (a == '\\' && i + 1 < id.len)
            a = (unsigned char)id.p[++i];
        b = (unsigned char)authserv_id[k];
        if (b == '\0')
            return false;
        if (um_ascii_tolower(a) != um_ascii_tolower(b))
            return false;
        k++;
    }
    return authserv_id[k] == '\0';
}
