/*
 * um_keygen - generate a DKIM key with lib/keygen (test helper; the product's CLI is
 * `unimilter keygen`)
 *
 * Usage: um_keygen rsa|ed25519 BITS DOMAIN SELECTOR PATH   -> record on stdout
 *        um_keygen -c PATH DOMAIN SELECTOR TXTVALUE        -> verdict on stdout (check)
 * Exit: 0 ok / match, 1 check verdict other than match, 2 error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygen.h"

int
main(int argc, char **argv)
{
    struct um_error err = {0};

    if (argc == 6 && strcmp(argv[1], "-c") == 0) {
        struct um_dkim_sign_keyspec spec = {.name = "check",
                                            .path = argv[2],
                                            .domain = argv[3],
                                            .selector = argv[4],
                                            .allowed_uid = getuid()};
        struct um_signer *key;
        struct um_keygen_check res;
        if (um_dkim_sign_key_load(&spec, &key, &err) != UM_OK
            || um_keygen_check(key, (struct um_str){argv[5], strlen(argv[5])}, &res, &err)
                   != UM_OK) {
            fprintf(stderr, "um_keygen: %s\n", err.msg);
            return 2;
        }
        printf("%s: %s\n", um_keygen_verdict_name(res.verdict), res.reason);
        um_dkim_sign_key_free(key);
        return res.verdict == UM_KEYGEN_MATCH ? 0 : 1;
    }
    if (argc == 6) {
        struct um_keygen_req req = {.alg = strcmp(argv[1], "ed25519") == 0
                                               ? UM_DKIM_ALG_ED25519_SHA256
                                               : UM_DKIM_ALG_RSA_SHA256,
                                    .bits = (unsigned)strtoul(argv[2], NULL, 10),
                                    .domain = argv[3],
                                    .selector = argv[4],
                                    .path = argv[5]};
        char *rec;
        if (um_keygen_write(&req, &rec, &err) != UM_OK) {
            fprintf(stderr, "um_keygen: %s\n", err.msg);
            return 2;
        }
        fputs(rec, stdout);
        free(rec);
        return 0;
    }
    fprintf(stderr, "usage: um_keygen rsa|ed25519 BITS DOMAIN SELECTOR PATH\n"
                    "       um_keygen -c PATH DOMAIN SELECTOR TXTVALUE\n");
    return 2;
}
