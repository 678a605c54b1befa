/*
 * hash - SipHash-2-4, the keyed hash of every table whose keys a sender can choose
 *
 * DESCRIPTION  um_siphash24(key, p, len) is SipHash-2-4 (Aumasson and Bernstein, 2012)
 *              with a 128-bit key given as two 64-bit words, k0 and k1 (the key bytes
 *              0..7 and 8..15 read little-endian), over len bytes at p; the 64-bit result.
 *              With a random key per process, a sender who picks the strings (rate-limit
 *              keys, DNS names) cannot predict which strings collide, so hash chains stay
 *              short. Callers choose and keep the key.
 * THREADS      A pure function; safe from any thread.
 */
#ifndef UM_HASH_H
#define UM_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t um_siphash24(const uint64_t key[2], const void *p, size_t len);

#endif
