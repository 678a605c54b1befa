/*
 * fuzz_domain.c - domain names from mail and DNS into the one domain-name validator
 *
 * um_domain_is_valid() sees HELO names, envelope and From domains and names built from DNS
 * answers. The first input byte picks the flags (its low six bits), the rest is the name.
 * Properties, for a name said to be valid: without its one allowed final dot it holds 1 to
 * UM_DOMAIN_MAX bytes, no empty label and no label over UM_DOMAIN_LABEL_MAX bytes; host name
 * rules (no PRINTABLE or ANY_BYTE) admit only letters, digits, '-' and, with UNDERSCORE,
 * '_', and no label starts or ends with '-' unless EDGE_HYPHEN; PRINTABLE admits only
 * 0x21..0x7e but '\'; TWO_LABELS means a dot inside. Every answer is also the same when
 * the name is passed with spare bytes after it (nothing past len is read).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"

#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_valid(const char *p, size_t len, unsigned flags)
{
    bool host = (flags & (UM_DOMAIN_PRINTABLE | UM_DOMAIN_ANY_BYTE)) == 0;
    size_t label = 0, labels = 0;

    if ((flags & UM_DOMAIN_FINAL_DOT) != 0 && len > 0 && p[len - 1] == '.')
        len--;
    FUZZ_CHECK(len >= 1 && len <= UM_DOMAIN_MAX);
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)p[i] : '.';

        if (c == '.') {
            FUZZ_CHECK(label >= 1 && label <= UM_DOMAIN_LABEL_MAX);
            if (host && (flags & UM_DOMAIN_EDGE_HYPHEN) == 0)
                FUZZ_CHECK(p[i - label] != '-' && p[i - 1] != '-');
            labels++;
            label = 0;
            continue;
        }
        label++;
        if (host)
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                       || c == '-' || (c == '_' && (flags & UM_DOMAIN_UNDERSCORE) != 0));
        else if ((flags & UM_DOMAIN_ANY_BYTE) == 0)
            FUZZ_CHECK(c >= 0x21 && c <= 0x7e && c != '\\');
    }
    if ((flags & UM_DOMAIN_TWO_LABELS) != 0)
        FUZZ_CHECK(labels >= 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags;
    char *copy;
    bool ok;

    if (size == 0)
        return 0;
    flags = data[0] & 0x3fu;
    ok = um_domain_is_valid((struct um_str){(const char *)data + 1, size - 1}, flags);
    if (ok)
        fuzz_check_valid((const char *)data + 1, size - 1, flags);
    /* the same bytes followed by more: the answer must not change */
    copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    memcpy(copy + size - 1, "x.", 2);
    FUZZ_CHECK(um_domain_is_valid((struct um_str){copy, size - 1}, flags) == ok);
    free(copy);
    return 0;
}
