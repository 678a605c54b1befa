/*
 * runtime - a configuration snapshot with everything loaded that it names
 *
 * DESCRIPTION  um_runtime_build() turns a parsed struct um_config into what the message path
 *              uses: the DKIM private keys (loaded and permission-checked), the From-domain
 *              key rules, two signing contexts (header values with and without the leading
 *              space, per what each MTA connection negotiated), the rate-limit policy and the
 *              sender-key order, the submit settings with the AUTH password read from
 *              submit.password_file (same ownership rules as keys). Building happens off to the side at start and at reload;
 *              a failure names the config file, line and setting, and the running runtime
 *              stays. `unimilter -n` builds one too, so a missing key fails the check.
 * THREADS      Immutable once built; um_runtime_ref()/unref() are atomic, so connections
 *              pin the runtime they started with while a reload publishes a new one.
 * OWNERSHIP    The runtime holds a reference to cfg and owns everything else.
 * ERRORS       UM_OK; UM_EINVAL/UM_ENOENT/UM_EIO for a key or rule problem (message
 *              "FILE:LINE: dkim_sign.keys.[i]: ..."); UM_ENOMEM.
 */
#ifndef UM_RUNTIME_H
#define UM_RUNTIME_H

#include <stdatomic.h>
#include <sys/types.h>

#include "common.h"
#include "config.h"
#include "dkim_verify.h"
#include "dmarc.h"
#include "dns.h"
#include "spf.h"
#include "dkim_sign.h"
#include "keyrule.h"
#include "ratelimit.h"
#include "senderkey.h"
#include "submit.h"

struct um_runtime {
    _Atomic int refs;
    struct um_config *cfg;
    struct um_dkim_sign *sign[2]; /* [1]: header values carry their leading space */
    struct um_signer **keys;      /* parallel to cfg->dkim_sign.key */
    size_t nkeys;
    struct um_keyrule *keyrule;
    struct um_ratelimit_policy *rlpol;
    struct um_senderkey_order order;
    bool order_has_uid;           /* the uid source needs the headers: decide at end of message */
    struct um_submit_opts submit; /* points into cfg and submit_password */
    char *submit_password;        /* read from submit.password_file; wiped when freed */

    /* inbound (only when built with a resolver; NULL otherwise) */
    struct um_dns *dns; /* borrowed: the daemon's one resolver */
    struct um_spf *spf;
    struct um_dkim_verify *dkimv[2]; /* [1]: header values carry their leading space */
    struct um_dmarc *dmarc;
};

/* key_uid: besides root, the owner a key file may have (the user we run as). dns: the
 * shared resolver the inbound checks use, or NULL to build without them (config check). */
UM_NODISCARD enum um_status um_runtime_build(struct um_config *cfg, uid_t key_uid,
                                             struct um_dns *dns, struct um_runtime **out,
                                             struct um_error *err);
struct um_runtime *um_runtime_ref(struct um_runtime *rt);
void um_runtime_unref(struct um_runtime *rt);

/* The submit settings of cfg (pointing into it), without the password. */
void um_runtime_submit_opts(const struct um_config *cfg, struct um_submit_opts *o);

/* The loaded signer with this configured name, or NULL. */
const struct um_signer *um_runtime_key(const struct um_runtime *rt, const char *name);

#endif
