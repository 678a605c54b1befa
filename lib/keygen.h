/*
 * keygen - DKIM key generation and published-key checks (for `unimilter keygen|check-keys`)
 *
 * DESCRIPTION  um_keygen_write() generates an RSA (default 2048 bits, at least 1024) or
 *              Ed25519 key, writes its private half as PKCS#8 PEM to a new file (mode 0600,
 *              O_CREAT|O_EXCL: an existing file is never overwritten) and returns the DNS
 *              record to publish, in zone-file syntax:
 *                  SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; p=MIIB..."
 *                          "...rest" )
 *              each quoted string at most 255 bytes (RFC 1035 character-string). Ed25519
 *              records are "v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte key>"
 *              (RFC 8463 4). um_keygen_txt_value() gives the unquoted record value only.
 *              um_keygen_check() says whether a published TXT value (strings already
 *              concatenated, as DNS libraries return them) carries the public half of a
 *              loaded key; the DNS lookup is the caller's.
 * THREADS      Reentrant; no shared state.
 * OWNERSHIP    Returned strings are malloc'd and the caller frees them. Generated private
 *              key bytes are wiped before the functions return.
 * ERRORS       UM_EINVAL bad arguments (bits out of range, bad domain/selector);
 *              UM_EIO the file exists or cannot be written (the message names the path);
 *              UM_ENOMEM; UM_ETEMP key generation failed in OpenSSL.
 *              um_keygen_check() returns UM_OK whenever it reached a verdict, including
 *              "does not match" and "record malformed": see struct um_keygen_check.
 * LIMITS       RSA bits 1024..8192. Key generation may take a second or more (RSA 4096).
 */
#ifndef UM_KEYGEN_H
#define UM_KEYGEN_H

#include "common.h"
#include "dkim_sign.h"

#define UM_KEYGEN_DEFAULT_RSA_BITS 2048
#define UM_KEYGEN_MAX_RSA_BITS     8192

struct um_keygen_req {
    enum um_dkim_alg alg;
    unsigned bits;        /* RSA only; 0 = UM_KEYGEN_DEFAULT_RSA_BITS */
    const char *domain;   /* d= */
    const char *selector; /* s= */
    const char *path;     /* private key file to create */
};

/* Generates, writes req->path, and sets *record (zone-file text, ends with "\n"). */
UM_NODISCARD enum um_status um_keygen_write(const struct um_keygen_req *req, char **record,
                                            struct um_error *err);

/* "v=DKIM1; k=<rsa|ed25519>; p=<key->public>" for a loaded key. */
UM_NODISCARD enum um_status um_keygen_txt_value(const struct um_signer *key, char **value,
                                                struct um_error *err);

/* Zone-file record for selector/domain and an unquoted value, split into <= 255-byte strings.*/
UM_NODISCARD enum um_status um_keygen_zone_record(const char *selector, const char *domain,
                                                  const char *value, char **record,
                                                  struct um_error *err);

enum um_keygen_verdict {
    UM_KEYGEN_MATCH = 0,  /* p= is the public half of the key */
    UM_KEYGEN_MISMATCH,   /* a different key */
    UM_KEYGEN_REVOKED,    /* p= is empty (RFC 6376 3.6.1) */
    UM_KEYGEN_WRONG_TYPE, /* k= names another algorithm */
    UM_KEYGEN_MALFORMED,  /* not a DKIM key record, or p= does not decode */
};

struct um_keygen_check {
    enum um_keygen_verdict verdict;
    char reason[128]; /* for the CLI: "k=rsa but the key is ed25519" */
};

UM_NODISCARD enum um_status um_keygen_check(const struct um_signer *key, struct um_str txt,
                                            struct um_keygen_check *res, struct um_error *err);

const char *um_keygen_verdict_name(enum um_keygen_verdict v);

#endif
