/*
 * submit - hand one mail we wrote ourselves (a rate-limit notice, a DMARC report) to an MTA
 *
 * DESCRIPTION  um_submit_send() makes one attempt to deliver msg to rcpts:
 *                via SMTP (default): libcurl talks SMTP to o->relay ("smtp://127.0.0.1:25",
 *                  "smtps://host:465" for implicit TLS). STARTTLS: AUTO uses it when the
 *                  relay offers it, without checking the certificate (opportunistic, as
 *                  Postfix's "may"); ALWAYS requires it and checks the certificate and the
 *                  relay's name (system CAs, or o->ca_file); NEVER does not use it. smtps://
 *                  always checks. AUTH (any mechanism both sides know) when o->user is set.
 *                via SENDMAIL: `<o->sendmail> -i -f <from> -- rcpts...` with the message on
 *                  stdin, waited for. Needs no network, but under the shipped systemd unit
 *                  (NoNewPrivileges=yes) Postfix's setgid postdrop cannot queue it.
 *              from "" is the null reverse-path <> (RFC 5321 4.5.5, for automatic mail).
 *              msg is a whole message with CRLF line ends (headers, blank line, body); the
 *              SMTP path dot-stuffs it, sendmail gets it as it is.
 *              um_submit_password_read() reads the password file once (at configuration
 *              load), with the same rules as DKIM key files.
 * THREADS      Reentrant; libcurl's global state must be set up first (um_submit_init(),
 *              from main() before any thread starts).
 * OWNERSHIP    Everything is borrowed for the call.
 * ERRORS       UM_OK: the relay (or sendmail, exit 0) accepted the message. UM_ETEMP: worth
 *              trying again (no connection, timeout, 4xx, sendmail exit 75). UM_EINVAL:
 *              permanent (5xx, authentication refused, sendmail's other exits). err->msg
 *              names the relay with any user:password@ removed; the password is never in it.
 * LIMITS       One connection per call, bounded by o->timeout seconds (connect included).
 */
#ifndef UM_SUBMIT_H
#define UM_SUBMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common.h"

#define UM_SUBMIT_MAX_PASSWORD    1024 /* bytes in a password file, at most */
#define UM_SUBMIT_DEFAULT_RELAY   "smtp://127.0.0.1:25"
#define UM_SUBMIT_DEFAULT_TIMEOUT 30 /* seconds; the schema's default, as a number */

enum um_submit_via {
    UM_SUBMIT_VIA_SMTP = 0,
    UM_SUBMIT_VIA_SENDMAIL,
};

enum um_submit_tls {
    UM_SUBMIT_TLS_AUTO = 0,
    UM_SUBMIT_TLS_ALWAYS,
    UM_SUBMIT_TLS_NEVER,
};

struct um_submit_opts {
    enum um_submit_via via;
    const char *relay; /* libcurl URL: smtp://HOST[:PORT][/HELO-NAME] or smtps://... */
    enum um_submit_tls starttls;
    const char *user;           /* NULL: no AUTH */
    const char *password;       /* with user */
    const char *ca_file;        /* NULL: the system's CA store */
    int timeout;                /* seconds for the whole attempt */
    const char *sendmail;       /* via SENDMAIL: the binary */
    const _Atomic bool *cancel; /* SMTP: set -> the attempt ends soon (UM_ETEMP); may be NULL */
};

/* Once per process, before any thread exists. false: libcurl could not be set up. */
bool um_submit_init(void);

UM_NODISCARD enum um_status um_submit_send(const struct um_submit_opts *o, const char *from,
                                           const char *const *rcpts, size_t nrcpts, const char *msg,
                                           size_t len, struct um_error *err);

/* Reads the first line of path into *out (malloc'd; the caller wipes and frees it). The file
 * must be a regular file, owned by root or allowed_uid, with no group or other access. */
UM_NODISCARD enum um_status um_submit_password_read(const char *path, uid_t allowed_uid, char **out,
                                                    struct um_error *err);

/* relay with any "user:password@" removed, for messages and logs. */
void um_submit_relay_shown(const char *relay, char *buf, size_t len);

#endif
