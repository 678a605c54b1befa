/*
 * fuzz_authres.c - incoming Authentication-Results values: the authserv-id parser, and the
 * builder fed the same bytes as a property value and a reason
 *
 * Properties: a parsed id is a non-empty range inside the input; the rendered value has no
 * CR or NUL and every line is shorter than 998 bytes.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authres.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_str v = {(const char *)data, size}, id;
    struct um_authres *ar = NULL;
    char reason[UM_AUTHRES_REASON_MAX + 1];
    char *out = NULL;
    size_t n;

    if (um_authres_parse_id(v, &id) == UM_OK) {
        assert(id.p >= v.p && id.len <= size && id.p + id.len <= v.p + size);
        assert(id.len > 0 || (id.p > v.p && id.p[-1] == '"'));
    }
    (void)um_authres_is_ours(v, "mx.example.net");

    if (um_authres_new("mx.example.net", &ar, NULL) != UM_OK)
        return 0;
    n = size < UM_AUTHRES_REASON_MAX ? size : UM_AUTHRES_REASON_MAX;
    memcpy(reason, data, n);
    reason[n] = '\0';
    if (um_authres_add(ar, "dkim", UM_AUTH_FAIL, reason, NULL) == UM_OK) {
        for (size_t i = 0; i < 8; i++)
            if (um_authres_prop(ar, "header", "i", v, NULL) != UM_OK)
                break;
    }
    if (um_authres_render(ar, &out, NULL) == UM_OK) {
        size_t col = UM_AUTHRES_FIELD_PREFIX;
        for (const char *p = out; *p != '\0'; p++) {
            assert(*p != '\r');
            col = *p == '\n' ? 0 : col + 1;
            assert(col < UM_AUTHRES_LINE_MAX);
        }
        free(out);
    }
    um_authres_free(ar);
    return 0;
}
