/*
 * fuzz_rua.c - rua= URIs from hostile DMARC records into um_report_rua_parse()
 *
 * The address it returns is where a report is mailed, and it reaches a sendmail command
 * line. Properties: on success the address is NUL-terminated inside the buffer, has exactly
 * one '@' with text on both sides, a host-name domain, and no byte that could end or split
 * an argument or a header (controls, space, '"', comma, angle brackets, backslash); the status is
 * always one of the documented ones. (A leading '-' is a legal local part; lib/report.c
 * passes addresses after "--", so sendmail never reads one as an option.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char addr[320];
    uint64_t limit = 0;
    enum um_status st;

    memset(addr, 0x55, sizeof(addr));
    st = um_report_rua_parse((struct um_str){(const char *)data, size}, addr, sizeof(addr), &limit,
                             NULL);
    if (st == UM_OK) {
        size_t n = strnlen(addr, sizeof(addr));
        const char *at = strchr(addr, '@');

        FUZZ_CHECK(n < sizeof(addr) && n > 0);
        FUZZ_CHECK(at != NULL && at > addr && at[1] != '\0' && strchr(at + 1, '@') == NULL);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)addr[i];
            FUZZ_CHECK(c > 0x20 && c < 0x7f && strchr("\",<>\\ ", c) == NULL);
            if (addr + i > at)
                FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                           || (c >= '0' && c <= '9') || c == '-' || c == '.');
        }
    } else {
        FUZZ_CHECK(st == UM_ENOENT || st == UM_EINVAL);
    }
    return 0;
}
