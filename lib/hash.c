/*
 * hash.c - SipHash-2-4, written from the paper (8-byte little-endian message words, the
 * last one padded with the length in its top byte; 2 compression and 4 finalization rounds).
 */
#include "hash.h"

static uint64_t
hash_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static void
hash_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = hash_rotl(v[1], 13) ^ v[0];
    v[0] = hash_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = hash_rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = hash_rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = hash_rotl(v[1], 17) ^ v[2];
    v[2] = hash_rotl(v[2], 32);
}

uint64_t
um_siphash24(const uint64_t key[2], const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t v[4] = {key[0] ^ 0x736f6d6570736575ULL, key[1] ^ 0x646f72616e646f6dULL,
                     key[0] ^ 0x6c7967656e657261ULL, key[1] ^ 0x7465646279746573ULL};
    size_t i = 0;

    for (;;) {
        size_t take = len - i < 8 ? len - i : 8;
        uint64_t m = 0;

        for (size_t j = 0; j < take; j++)
            m |= (uint64_t)s[i + j] << (8 * j);
        if (take < 8)
            m |= (uint64_t)len << 56;
        v[3] ^= m;
        hash_round(v);
        hash_round(v);
        v[0] ^= m;
        i += take;
        if (take < 8)
            break;
    }
    v[2] ^= 0xff;
    for (int r = 0; r < 4; r++)
        hash_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}
