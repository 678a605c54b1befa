/*
 * mode.c - first-match rule table over MTA macros
 *
 * Design note: a linear scan over a handful of rules is cheaper and clearer than any
 * index; operators write few rules and read them top to bottom, like Postfix access maps.
 * The port macro arrives as text, so it is parsed strictly here (digits only, <= 65535);
 * anything else cannot match a port rule.
 */
#include "mode.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
mode_port(const char *s)
{
    long v = 0;

    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 65535)
            return -1;
    }
    return (int)v;
}

static bool
mode_rule_matches(const struct um_mode_rule *r, const struct um_mode_input *in, int port)
{
    if (r->daemon_name != NULL
        && (in->daemon_name == NULL || strcasecmp(r->daemon_name, in->daemon_name) != 0))
        return false;
    if (r->daemon_port >= 0 && r->daemon_port != port)
        return false;
    if (r->authenticated != UM_TRI_ANY) {
        bool authed = in->auth_authen != NULL && in->auth_authen[0] != '\0';
        if (authed != (r->authenticated == UM_TRI_YES))
            return false;
    }
    return true;
}

enum um_mode
um_mode_decide(const struct um_mode_rules *rules, const struct um_mode_input *in, int *matched)
{
    int port = mode_port(in->daemon_port);

    for (size_t i = 0; i < rules->n; i++) {
        if (mode_rule_matches(&rules->rule[i], in, port)) {
            if (matched != NULL)
                *matched = (int)i;
            return rules->rule[i].mode;
        }
    }
    if (matched != NULL)
        *matched = -1;
    return rules->dflt;
}

bool
um_mode_rules_use_name(const struct um_mode_rules *rules)
{
    for (size_t i = 0; i < rules->n; i++)
        if (rules->rule[i].daemon_name != NULL)
            return true;
    return false;
}

bool
um_mode_rules_use_port(const struct um_mode_rules *rules)
{
    for (size_t i = 0; i < rules->n; i++)
        if (rules->rule[i].daemon_port >= 0)
            return true;
    return false;
}

const char *
um_mode_name(enum um_mode mode)
{
    switch (mode) {
    case UM_MODE_INBOUND:
        return "inbound";
    case UM_MODE_OUTBOUND:
        return "outbound";
    case UM_MODE_SKIP:
        return "skip";
    }
    return "inbound";
}

enum um_status
um_mode_parse(const char *name, enum um_mode *out)
{
    static const enum um_mode all[] = {UM_MODE_INBOUND, UM_MODE_OUTBOUND, UM_MODE_SKIP};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(name, um_mode_name(all[i])) == 0) {
            *out = all[i];
            return UM_OK;
        }
    }
    return UM_EINVAL;
}
