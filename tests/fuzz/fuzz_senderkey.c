/*
 * fuzz_senderkey.c - sender key derivation and the Received uid parser on hostile bytes
 *
 * The input is split at its first three 0xff bytes into login, sender, client IP and
 * Received value.  Properties, not just "no crash": a derived key is short enough,
 * NUL-terminated, carries a known kind prefix and no upper-case ASCII; a parsed uid is a
 * real one and its header mentions "userid".
 */
#include <stdlib.h>
/* A property that must hold; abort() so it also fires in NDEBUG builds. */
#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "senderkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
has_prefix(const struct um_senderkey *k, const char *p)
{
    size_t n = strlen(p);

    return k->len > n && memcmp(k->key, p, n) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_str part[4] = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    const char *p = (const char *)data;
    size_t start = 0, n = 0;
    struct um_senderkey_order order;
    struct um_senderkey k;
    uint32_t uid;

    for (size_t i = 0; i <= size && n < 4; i++) {
        if (i == size || (n < 3 && data[i] == 0xff)) {
            part[n++] = (struct um_str){p + start, i - start};
            start = i + 1;
        }
    }
    struct um_senderkey_input in = {part[0], part[1], part[2], part[3]};

    um_senderkey_order_init(&order);
    order.src[0] = UM_SENDERKEY_SOURCE_UID;
    order.src[1] = UM_SENDERKEY_SOURCE_SASL;
    order.src[2] = UM_SENDERKEY_SOURCE_SENDER_DOMAIN;
    order.src[3] = UM_SENDERKEY_SOURCE_SENDER;
    order.src[4] = UM_SENDERKEY_SOURCE_CLIENT_IP;
    order.n = 5;
    order.ipv6_prefix = size > 0 ? 1u + data[0] % 128u : 64u;
    if (um_senderkey_derive(&order, &in, &k, NULL) == UM_OK) {
        FUZZ_CHECK(k.len <= UM_SENDERKEY_MAX && k.key[k.len] == '\0');
        FUZZ_CHECK(has_prefix(&k, "uid:") || has_prefix(&k, "sasl:") || has_prefix(&k, "domain:")
                   || has_prefix(&k, "sender:") || has_prefix(&k, "ip:"));
        for (size_t i = 0; i < k.len; i++)
            FUZZ_CHECK(!(k.key[i] >= 'A' && k.key[i] <= 'Z'));
    }
    if (um_senderkey_received_uid((struct um_str){p, size}, &uid, NULL) == UM_OK) {
        FUZZ_CHECK(uid < UINT32_MAX);
        bool seen = false;
        for (size_t i = 0; i + 6 <= size && !seen; i++)
            seen = um_str_eq_ci((struct um_str){p + i, 6}, "userid");
        FUZZ_CHECK(seen);
    }
    return 0;
}
