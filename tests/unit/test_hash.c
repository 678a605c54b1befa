/*
 * test_hash - lib/hash: SipHash-2-4 against the reference vectors of the SipHash paper's
 * authors (key 00 01 .. 0f, messages 00 01 .. n-1 for n = 0..63; here a sample of them,
 * covering the empty message, every tail length 1..7, exactly one and two words, and the
 * paper's own 15-byte example), and the key actually keys the hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash.h"

static const struct {
    size_t len;
    uint64_t want;
} vectors[] = {
    {0, 0x726fdb47dd0e0e31ULL},  {1, 0x74f839c593dc67fdULL},  {2, 0x0d6c8009d9a94f5aULL},
    {3, 0x85676696d7fb7e2dULL},  {4, 0xcf2794e0277187b7ULL},  {5, 0x18765564cd99a68dULL},
    {6, 0xcbc9466e58fee3ceULL},  {7, 0xab0200f58b01d137ULL},  {8, 0x93f5f5799a932462ULL},
    {15, 0xa129ca6149be45e5ULL}, {16, 0x3f2acc7f57c29bdbULL}, {63, 0x958a324ceb064572ULL},
};

static void
test_vectors(void **state)
{
    const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char msg[64];

    (void)state;
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        uint64_t got = um_siphash24(key, msg, vectors[i].len);
        if (got != vectors[i].want)
            fail_msg("length %zu: got %016llx, want %016llx", vectors[i].len,
                     (unsigned long long)got, (unsigned long long)vectors[i].want);
    }
}

static void
test_keyed(void **state)
{
    const uint64_t k1[2] = {1, 2}, k2[2] = {1, 3};

    (void)state;
    assert_int_not_equal(um_siphash24(k1, "alice@example.org", 17),
                         um_siphash24(k2, "alice@example.org", 17));
    assert_int_equal(um_siphash24(k1, "alice@example.org", 17),
                     um_siphash24(k1, "alice@example.org", 17));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_keyed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
