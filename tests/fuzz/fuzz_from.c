/*
 * fuzz_from.c - RFC 5322 From header values into the author-domain extractor
 *
 * um_keyrule_from_domain() decides both which keys sign outbound mail and which domain
 * DMARC evaluates inbound, so it sees every hostile From. The input is split at 0xff bytes
 * into up to four header values. Properties: on success the domain lies inside the output
 * buffer, is non-empty, has no bytes outside the hostname alphabet and no empty label; on
 * failure the status is one of the documented ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyrule.h"

#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_str vals[4];
    size_t n = 0, start = 0;
    char buf[256];
    struct um_str dom = {NULL, 0};
    enum um_status st;

    for (size_t i = 0; i <= size && n < 4; i++) {
        if (i == size || data[i] == 0xff) {
            vals[n++] = (struct um_str){(const char *)data + start, i - start};
            start = i + 1;
        }
    }
    st = um_keyrule_from_domain(vals, n, buf, sizeof(buf), &dom, NULL);
    if (st == UM_OK) {
        FUZZ_CHECK(dom.len > 0 && dom.len < sizeof(buf));
        FUZZ_CHECK(dom.p >= buf && dom.p + dom.len <= buf + sizeof(buf));
        for (size_t i = 0; i < dom.len; i++) {
            char c = dom.p[i];
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
                       || c == '_' || (c >= 'A' && c <= 'Z'));
            FUZZ_CHECK(!(c == '.' && i + 1 < dom.len && dom.p[i + 1] == '.'));
        }
    } else {
        FUZZ_CHECK(st == UM_ENOENT || st == UM_ELIMIT || st == UM_EINVAL);
    }
    return 0;
}
