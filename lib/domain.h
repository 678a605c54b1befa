/*
 * domain - the syntax of a domain name, one rule with the variations callers need
 *
 * DESCRIPTION  um_domain_is_valid(name, flags) says whether name is a domain name: labels
 *              separated by single dots, each label 1..63 bytes, the whole name 1..253 bytes
 *              (RFC 1035 2.3.4: 255 on the wire is 253 in text), no dot first. Without
 *              flags a label is a host name label (RFC 1123 2.1, RFC 5321 4.1.2 sub-domain):
 *              letters, digits and hyphens, with neither first nor last byte a hyphen.
 *              All-numeric names pass; callers that must tell them from addresses check.
 *              The flags widen the rule for one caller's needs:
 *                UM_DOMAIN_FINAL_DOT   one trailing dot (an absolute name) is allowed; it
 *                                      does not count towards the 253
 *                UM_DOMAIN_UNDERSCORE  '_' counts as a letter (DKIM selectors, "_dmarc")
 *                UM_DOMAIN_EDGE_HYPHEN a label may begin or end with '-' (RFC 5322 dot-atom
 *                                      domains in mail headers allow it)
 *                UM_DOMAIN_PRINTABLE   a label may hold any printable ASCII byte but '\'
 *                                      (0x21..0x7e): any name the resolver can be asked
 *                UM_DOMAIN_ANY_BYTE    only lengths and dots are checked (RFC 7208 4.3
 *                                      calls no other name malformed)
 *                UM_DOMAIN_TWO_LABELS  at least two labels
 *              PRINTABLE and ANY_BYTE replace the host name bytes, so UNDERSCORE and
 *              EDGE_HYPHEN mean nothing next to them.
 * THREADS      A pure function; safe from any thread.
 * OWNERSHIP    name is borrowed for the call; it need not be NUL-terminated.
 * LIMITS       O(name.len); no allocation.
 */
#ifndef UM_DOMAIN_H
#define UM_DOMAIN_H

#include <stdbool.h>

#include "common.h"

#define UM_DOMAIN_MAX       253 /* bytes of text, without a final dot */
#define UM_DOMAIN_LABEL_MAX 63

enum um_domain_flag {
    UM_DOMAIN_FINAL_DOT = 1u << 0,
    UM_DOMAIN_UNDERSCORE = 1u << 1,
    UM_DOMAIN_EDGE_HYPHEN = 1u << 2,
    UM_DOMAIN_PRINTABLE = 1u << 3,
    UM_DOMAIN_ANY_BYTE = 1u << 4,
    UM_DOMAIN_TWO_LABELS = 1u << 5,
};

/* flags: a bitwise OR of enum um_domain_flag values (0 for a plain host name). */
bool um_domain_is_valid(struct um_str name, unsigned flags);

#endif
