/*
 * senderkey - derive the rate-limit key of a message from an ordered list of sources
 *
 * DESCRIPTION  The operator configures an ordered list of sources; the first source that
 *              yields a value names the sender.  Each key carries its kind as a prefix, so
 *              two kinds never collide ("sasl:bob@example.org" is not
 *              "sender:bob@example.org"):
 *                sasl           "sasl:" + {auth_authen} login; empty login: next source
 *                sender         "sender:" + MAIL FROM address: blanks and <> stripped, an
 *                               RFC 5321 source route (<@a,@b:x@y>) dropped; the null
 *                               sender <> or an empty one: next source
 *                sender_domain  "domain:" + the part after the last '@' of that address,
 *                               one trailing dot dropped; no '@' or no domain: next source
 *                client_ip      "ip:" + the client address in inet_ntop() form; "[...]"
 *                               and "IPv6:" are stripped; IPv4-mapped IPv6 becomes IPv4;
 *                               other IPv6 is cut to order->ipv6_prefix bits and written
 *                               "ip:2001:db8:1:2::/64" (one customer rotating addresses
 *                               inside a /64 stays one sender); unparsable: next source
 *                uid            "uid:" + the local uid from the MTA's own
 *                               "Received: by HOST (Postfix, from userid N)" header
 *                               (um_senderkey_received_uid()); absent or junk: next source
 *              Every key is lower-cased (ASCII), so it is the same string the rate limiter
 *              stores, shows in `unimilter stats` and matches policy patterns against.
 *
 *              Locally submitted mail (Postfix non_smtpd_milters, the sendmail binary a web
 *              site's mail() calls) has no SASL login and a sender the site chooses freely;
 *              what identifies the site is the uid it runs as, which Postfix's pickup
 *              writes into the first Received header.  Only that first Received header (the
 *              one the MTA prepended) may be passed in: every later one came from the
 *              submitter and is forgeable.
 * THREADS      Pure functions on caller storage; reentrant.
 * OWNERSHIP    Inputs are borrowed for the call; the key is written into the caller's
 *              struct um_senderkey.
 * ERRORS       um_senderkey_derive(): UM_OK and key set; UM_ENOENT when no source yields a
 *              value (the caller decides: usually "not limited" and a debug line);
 *              UM_ELIMIT when the winning value would make a key longer than
 *              UM_SENDERKEY_MAX bytes (we never truncate: two senders could collide, and we
 *              never fall through: a long name must not buy a weaker key; refuse the
 *              recipient with a temporary failure).
 *              Parsers of configuration names return UM_EINVAL with a message that names
 *              the bad word; the config layer prefixes file:line.
 * LIMITS       Keys are at most UM_SENDERKEY_MAX bytes (= UM_RATELIMIT_KEY_MAX).  O(input)
 *              work, no allocation, no I/O.
 */
#ifndef UM_SENDERKEY_H
#define UM_SENDERKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define UM_SENDERKEY_MAX         1023 /* bytes of a key, without the NUL */
#define UM_SENDERKEY_MAX_SOURCES 5    /* each source at most once */

enum um_senderkey_source {
    UM_SENDERKEY_SOURCE_SASL = 1,
    UM_SENDERKEY_SOURCE_SENDER,
    UM_SENDERKEY_SOURCE_SENDER_DOMAIN,
    UM_SENDERKEY_SOURCE_CLIENT_IP,
    UM_SENDERKEY_SOURCE_UID,
};

/* The operator's ordered list.  Fill it with um_senderkey_order_init() and _add(). */
struct um_senderkey_order {
    enum um_senderkey_source src[UM_SENDERKEY_MAX_SOURCES];
    size_t n;
    unsigned ipv6_prefix; /* 1..128, default 64 */
};

/* What the milter knows about the message; absent values are {NULL, 0}. */
struct um_senderkey_input {
    struct um_str sasl_login; /* {auth_authen} */
    struct um_str sender;     /* MAIL FROM argument as received, e.g. "<Bob@Example.org>" */
    struct um_str client_ip;  /* {client_addr} or the connect callback's address */
    struct um_str received;   /* value of the FIRST Received header only (see above) */
};

struct um_senderkey {
    enum um_senderkey_source source; /* which source won */
    size_t len;
    char key[UM_SENDERKEY_MAX + 1]; /* len bytes, NUL-terminated */
};

/* Name as written in the configuration ("sender_domain"); never NULL. */
const char *um_senderkey_source_name(enum um_senderkey_source src);

/* Case-insensitive: "sasl", "sender", "sender_domain", "client_ip", "uid". */
UM_NODISCARD enum um_status
um_senderkey_source_parse(struct um_str name, enum um_senderkey_source *out, struct um_error *err);

/* Empty list, ipv6_prefix 64.  An empty list derives nothing (UM_ENOENT). */
void um_senderkey_order_init(struct um_senderkey_order *order);

/* The default: sasl, then sender. */
void um_senderkey_order_default(struct um_senderkey_order *order);

/* Appends a source by name; UM_EINVAL for an unknown name or one already listed. */
UM_NODISCARD enum um_status um_senderkey_order_add(struct um_senderkey_order *order,
                                                   struct um_str name, struct um_error *err);

/* First source in order that yields a value; see DESCRIPTION and ERRORS. */
UM_NODISCARD enum um_status um_senderkey_derive(const struct um_senderkey_order *order,
                                                const struct um_senderkey_input *in,
                                                struct um_senderkey *out, struct um_error *err);

/*
 * Parses a Received header value written by Postfix for locally submitted mail:
 *   [FWS] "by" FWS host FWS "(" mail_name "," FWS "from" FWS "userid" FWS uid [FWS] ")" ...
 * mail_name is any word ("Postfix" unless mail_name is changed); FWS is any run of space,
 * tab, CR and LF (the value may arrive folded); keywords are case-insensitive; uid is 1-10
 * decimal digits <= 4294967294 ((uid_t)-1 is never a real user).  Whatever follows ")" is
 * ignored.  UM_OK and *uid set, or UM_ENOENT (err says why) for anything else.
 */
UM_NODISCARD enum um_status um_senderkey_received_uid(struct um_str value, uint32_t *uid,
                                                      struct um_error *err);

#endif
