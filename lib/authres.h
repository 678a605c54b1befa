/*
 * authres - RFC 8601 Authentication-Results: build ours, find forged ones
 *
 * DESCRIPTION  enum um_auth holds the RFC 8601 result words every check reports (SPF,
 *              DKIM, DMARC). struct um_authres builds one header value:
 *
 *                mx.example.net;
 *                	spf=pass smtp.mailfrom=example.org;
 *                	dkim=pass (good signature) header.d=example.org header.s=sel ...;
 *                	dmarc=pass header.from=example.org policy.dmarc=reject
 *
 *              The caller adds method results one by one (um_authres_add) and then their
 *              properties (um_authres_prop), then renders the value (um_authres_render).
 *              With no result added the value is "authserv-id; none" (RFC 8601 2.2).
 *              um_authres_parse_id() reads the authserv-id of an incoming A-R value so the
 *              milter can delete every header that claims ours (um_authres_is_ours).
 * OUTPUT       The rendered value has no field name and no leading space; the caller adds
 *              "Authentication-Results". Folds are LF + TAB (milter style: no CR), one
 *              method result per line, further folds between properties; every line,
 *              counted with the 24 bytes of "Authentication-Results: " on the first, is
 *              shorter than UM_AUTHRES_LINE_MAX bytes. No CR, NUL or other control byte
 *              besides those folds ever appears.
 * UNTRUSTED    Property values (they come from messages and envelopes) are written as a
 *              token when every byte is an RFC 2045 token char or '@' ('@' is allowed by
 *              RFC 8601 2.2 pvalue); otherwise as a quoted-string with '"' and '\\'
 *              escaped. A value holding bytes that cannot appear in a quoted-string
 *              (controls, DEL, 8-bit) or longer than UM_AUTHRES_VALUE_MAX bytes is dropped
 *              (the property is left out; um_authres_prop reports UM_EINVAL). Reason
 *              comments are sanitised the same way: non-printable bytes become '?', and
 *              '(', ')' and '\\' are escaped; they are cut at UM_AUTHRES_REASON_MAX bytes.
 *              Method, ptype and property names are our literals and must be keywords
 *              (ALPHA / DIGIT / "-" / "_" / "."; UM_EINVAL otherwise).
 * PARSING      um_authres_parse_id() skips CFWS (comments nest, at most
 *              UM_AUTHRES_COMMENT_DEPTH deep), takes the authserv-id (a token or a
 *              quoted-string; RFC 8601 2.2 value) and accepts an optional version number
 *              after it. It never reads outside the given bytes and does O(len) work.
 * THREADS      A struct um_authres belongs to one thread; everything else is reentrant.
 * OWNERSHIP    Strings passed in are borrowed for the call and copied. The rendered value
 *              is malloc'd and owned by the caller (free()). The id from
 *              um_authres_parse_id() points into the caller's bytes.
 * ERRORS       UM_ENOMEM; UM_EINVAL for a bad name or an unusable value (see above);
 *              UM_ELIMIT when more than UM_AUTHRES_MAX_RESULTS results are added.
 */
#ifndef UM_AUTHRES_H
#define UM_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

#define UM_AUTHRES_LINE_MAX      998 /* RFC 5322 2.1.1, without the CRLF */
#define UM_AUTHRES_VALUE_MAX     400 /* raw bytes of one property value */
#define UM_AUTHRES_REASON_MAX    200 /* bytes of one reason comment */
#define UM_AUTHRES_MAX_RESULTS   64
#define UM_AUTHRES_MAX_PROPS     16 /* per result */
#define UM_AUTHRES_COMMENT_DEPTH 32
#define UM_AUTHRES_FIELD_PREFIX  24 /* strlen("Authentication-Results: ") */

/* RFC 8601 2.7 result words, shared by SPF, DKIM and DMARC. */
enum um_auth {
    UM_AUTH_NONE = 0,
    UM_AUTH_PASS,
    UM_AUTH_FAIL,
    UM_AUTH_SOFTFAIL,
    UM_AUTH_NEUTRAL,
    UM_AUTH_TEMPERROR,
    UM_AUTH_PERMERROR,
    UM_AUTH_POLICY,
};

/* "none", "pass", "fail", "softfail", "neutral", "temperror", "permerror", "policy";
 * "permerror" for anything out of range. Never NULL. */
const char *um_auth_name(enum um_auth a);

struct um_authres;

/* authserv_id is copied; it must be a token (a dot-atom host name) or it is quoted. */
UM_NODISCARD enum um_status um_authres_new(const char *authserv_id, struct um_authres **out,
                                           struct um_error *err);
void um_authres_free(struct um_authres *ar);

/* Starts a new method result: "method=result (reason)". reason may be NULL. */
UM_NODISCARD enum um_status um_authres_add(struct um_authres *ar, const char *method,
                                           enum um_auth result, const char *reason,
                                           struct um_error *err);
/* Adds "ptype.property=value" to the last result added. On UM_EINVAL for the value the
 * result stays usable and the property is simply not written. */
UM_NODISCARD enum um_status um_authres_prop(struct um_authres *ar, const char *ptype,
                                            const char *property, struct um_str value,
                                            struct um_error *err);
/* The folded header value (see OUTPUT), malloc'd into *out. */
UM_NODISCARD enum um_status um_authres_render(const struct um_authres *ar, char **out,
                                              struct um_error *err);

/* The authserv-id of an incoming A-R value (unfolded or not): *id points into value (for a
 * quoted-string: between the quotes, escapes still in place). UM_EINVAL when there is none
 * (empty, unterminated comment or quoted-string, no id before ';'). */
UM_NODISCARD enum um_status um_authres_parse_id(struct um_str value, struct um_str *id);
/* Whether value claims authserv_id (ASCII case-insensitive; quoted-pairs undone). False
 * when no id can be parsed. */
bool um_authres_is_ours(struct um_str value, const char *authserv_id);

#endif
