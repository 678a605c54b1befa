/*
 * domain.c - domain name syntax
 *
 * Design note: one pass over the bytes with the length of the current label; a dot closes
 * a label, and the end of the name closes the last one. Closing checks the label's length
 * and, for host name labels, that it does not end with a hyphen; the first byte of a label
 * is checked for a leading hyphen as it is read. Nothing is copied, so the work is one
 * look at each byte. The callers (DKIM keys, key rules, SPF, the resolver) used to carry
 * four checks that differed in small ways; each difference is now a flag, named in
 * domain.h, so a reader sees at the call which rule applies.
 */
#include "domain.h"

static bool
domain_ldh(unsigned char c, unsigned flags)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || (c == '_' && (flags & UM_DOMAIN_UNDERSCORE) != 0);
}

static bool
domain_byte_ok(unsigned char c, unsigned flags)
{
    if ((flags & UM_DOMAIN_ANY_BYTE) != 0)
        return true;
    if ((flags & UM_DOMAIN_PRINTABLE) != 0)
        return c >= 0x21 && c <= 0x7e && c != '\\';
    return domain_ldh(c, flags);
}

bool
um_domain_is_valid(struct um_str name, unsigned flags)
{
    bool host = (flags & (UM_DOMAIN_PRINTABLE | UM_DOMAIN_ANY_BYTE)) == 0;
    bool edges = host && (flags & UM_DOMAIN_EDGE_HYPHEN) == 0;
    size_t len = name.len, label = 0, labels = 0;

    if (name.p == NULL)
        return false;
    if ((flags & UM_DOMAIN_FINAL_DOT) != 0 && len > 0 && name.p[len - 1] == '.')
        len--;
    if (len == 0 || len > UM_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)name.p[i] : '.';

        if (c == '.') {
            /* RFC 1123 2.1: a label ends with a letter or digit */
            if (label == 0 || (edges && name.p[i - 1] == '-'))
                return false;
            labels++;
            label = 0;
            continue;
        }
        if (!domain_byte_ok(c, flags) || ++label > UM_DOMAIN_LABEL_MAX)
            return false;
        if (edges && label == 1 && c == '-')
            return false;
    }
    return labels >= ((flags & UM_DOMAIN_TWO_LABELS) != 0 ? 2u : 1u);
}
