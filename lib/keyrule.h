/*
 * keyrule - which DKIM keys sign a message, chosen from its From domain
 *
 * DESCRIPTION  An ordered table of rules, each a domain pattern and a list of key names.
 *              um_keyrule_match() returns the keys of the FIRST rule whose pattern matches
 *              the author domain; no match means "do not sign", with a reason for the debug
 *              log. Patterns (compared ASCII case-insensitively, a trailing dot ignored):
 *                  example.com     exactly that domain
 *                  *.example.com   any subdomain of example.com (a.example.com,
 *                                  b.a.example.com), NOT example.com itself: list both
 *                                  rules when both are wanted
 *                  *               every domain (catch-all; put it last)
 *              ".example.com" and other wildcard forms are refused as ambiguous.
 *              um_keyrule_from_domain() finds the one author domain in the From header(s)
 *              (RFC 5322 3.6.2): display names, comments, quoted strings, angle brackets,
 *              obsolete routes and group syntax are understood.
 * THREADS      A table is filled by one thread, then immutable and shareable: match and
 *              from_domain are reentrant.
 * OWNERSHIP    um_keyrule_add() copies pattern and names. Match results point into the
 *              table and live as long as it does.
 * ERRORS       um_keyrule_add: UM_EINVAL bad pattern or key name, UM_ENOMEM.
 *              um_keyrule_from_domain: UM_OK and the domain (lower case, no trailing dot);
 *              UM_ENOENT no From header, or one with no address (e.g. "undisclosed:;");
 *              UM_ELIMIT more than one From header or more than one address (RFC 5322
 *              allows several authors; we do not pick one to sign for); UM_EINVAL
 *              unparseable, or the domain is a literal ([192.0.2.1]), not ASCII, or not a
 *              valid host name. In every non-OK case the caller must not sign.
 * LIMITS       A From value is scanned once, O(len), no allocation; comments nest at most
 *              UM_KEYRULE_MAX_COMMENT_DEPTH deep. Matching is O(rules).
 */
#ifndef UM_KEYRULE_H
#define UM_KEYRULE_H

#include "common.h"

#define UM_KEYRULE_MAX_KEYS          8 /* keys per rule (RSA + Ed25519 is the usual 2) */
#define UM_KEYRULE_MAX_COMMENT_DEPTH 16
#define UM_KEYRULE_DOMAIN_MAX        253

struct um_keyrule;

struct um_keyrule_match {
    bool found;
    const char *const *keys; /* key names, nkeys of them, when found */
    size_t nkeys;
    const char *pattern; /* the rule that matched, when found */
    size_t rule;         /* its index (0-based, order of um_keyrule_add) */
    char reason[128];    /* when !found: "no rule matches example.org (3 rules)" */
};

UM_NODISCARD enum um_status um_keyrule_new(struct um_keyrule **out, struct um_error *err);
void um_keyrule_free(struct um_keyrule *kr);

/* Appends a rule. keys: nkeys names, 1..UM_KEYRULE_MAX_KEYS, each non-empty. */
UM_NODISCARD enum um_status um_keyrule_add(struct um_keyrule *kr, const char *pattern,
                                           const char *const *keys, size_t nkeys,
                                           struct um_error *err);

size_t um_keyrule_count(const struct um_keyrule *kr);

/* Fills *m; never fails. domain is bytes (not NUL-terminated). */
void um_keyrule_match(const struct um_keyrule *kr, struct um_str domain,
                      struct um_keyrule_match *m);

/* values: the raw values of every From header of the message (nvalues of them). Writes the
 * domain, NUL-terminated, into buf (buflen >= UM_KEYRULE_DOMAIN_MAX + 1 always suffices) and
 * sets *domain to it. */
UM_NODISCARD enum um_status um_keyrule_from_domain(const struct um_str *values, size_t nvalues,
                                                   char *buf, size_t buflen, struct um_str *domain,
                                                   struct um_error *err);

#endif
