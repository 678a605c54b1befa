/*
 * fuzz_dmarc_record - um_dmarc_record_parse() on arbitrary bytes
 *
 * Properties: a record that parses has every field in its domain (policies in the enum,
 * adkim/aspf 'r' or 's', pct 0..100, t 'y'/'n', psd 'y'/'n'/'u'), and an accepted input
 * starts (after whitespace) with a v tag. No I/O, no globals.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "dmarc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_dmarc_record r;
    struct um_str s = {(const char *)data, size};

    if (um_dmarc_record_parse(s, &r, NULL) == UM_OK) {
        assert(r.p <= UM_DMARC_POLICY_REJECT && r.sp <= UM_DMARC_POLICY_REJECT
               && r.np <= UM_DMARC_POLICY_REJECT);
        assert(r.p != UM_DMARC_POLICY_UNSET);
        assert(r.adkim == 'r' || r.adkim == 's');
        assert(r.aspf == 'r' || r.aspf == 's');
        assert(r.pct >= 0 && r.pct <= 100);
        assert(r.t == 'y' || r.t == 'n');
        assert(r.psd == 'y' || r.psd == 'n' || r.psd == 'u');
        assert(size >= 8); /* "v=DMARC1" at least */
    }
    return 0;
}
