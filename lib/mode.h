/*
 * mode - which job a message gets, from the MTA daemon that received it
 *
 * DESCRIPTION  Rules map the MTA's {daemon_name} and/or {daemon_port} macros, and
 *              optionally whether the client authenticated ({auth_authen} non-empty), to a
 *              mode: inbound (verify), outbound (sign and rate-limit) or skip. Rules are
 *              tried in order; every condition a rule sets must hold; the first match wins;
 *              when none matches, the default mode applies.
 * THREADS      Pure functions over immutable rules; safe from any thread.
 * OWNERSHIP    Inputs are borrowed for the call.
 * ERRORS       um_mode_parse() returns UM_EINVAL for an unknown mode name.
 * LIMITS       O(number of rules) per decision; no allocation.
 */
#ifndef UM_MODE_H
#define UM_MODE_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

enum um_mode {
    UM_MODE_INBOUND = 0,
    UM_MODE_OUTBOUND,
    UM_MODE_SKIP,
};

enum um_tristate {
    UM_TRI_ANY = -1, /* the rule does not look at this */
    UM_TRI_NO = 0,
    UM_TRI_YES = 1,
};

struct um_mode_rule {
    char *daemon_name; /* NULL: any; compared case-insensitively */
    int daemon_port;   /* -1: any */
    enum um_tristate authenticated;
    enum um_mode mode;
    int line; /* config line, for logs */
};

struct um_mode_rules {
    struct um_mode_rule *rule;
    size_t n;
    enum um_mode dflt;
};

/* What the MTA told us. NULL means the macro never arrived. */
struct um_mode_input {
    const char *daemon_name;
    const char *daemon_port;
    const char *auth_authen;
};

/*
 * Decides the mode. *matched (if not NULL) gets the index of the matching rule, or -1 when
 * the default applied. A rule naming a macro that did not arrive does not match.
 */
enum um_mode um_mode_decide(const struct um_mode_rules *rules, const struct um_mode_input *in,
                            int *matched);

/* Whether any rule needs {daemon_name} / {daemon_port} (to warn when it never arrives). */
bool um_mode_rules_use_name(const struct um_mode_rules *rules);
bool um_mode_rules_use_port(const struct um_mode_rules *rules);

const char *um_mode_name(enum um_mode mode);
enum um_status um_mode_parse(const char *name, enum um_mode *out);

#endif
