/*
 * fuzz_spf_record.c - the SPF record checker that stands between DNS and libspf2
 *
 * Properties: um_spf_record_is_valid() never reads outside the input and always
 * terminates its reason; an accepted record starts with "v=spf1", has no byte outside
 * 0x20..0x7e and no macro transformer over 128.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_str rec = {(const char *)data, size};
    char why[96];

    memset(why, 'x', sizeof(why));
    if (um_spf_record_is_valid(rec, why, sizeof(why))) {
        assert(size >= 6 && strncasecmp(rec.p, "v=spf1", 6) == 0);
        assert(size <= UM_SPF_MAX_RECORD);
        for (size_t i = 0; i < size; i++)
            assert(data[i] >= 0x20 && data[i] < 0x7f);
        for (size_t i = 0; i + 1 < size; i++) {
            size_t d = i + 3, n = 0;
            if (data[i] != '%')
                continue;
            if (data[i + 1] != '{') {
                i++; /* "%%", "%_", "%-" */
                continue;
            }
            while (d < size && data[d] >= '0' && data[d] <= '9')
                d++, n++;
            assert(n <= 3);
            assert(n < 3 || memcmp(data + i + 3, "128", 3) <= 0);
        }
    } else {
        assert(memchr(why, '\0', sizeof(why)) != NULL);
    }
    return 0;
}
