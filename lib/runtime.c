/*
 * runtime.c - build the loaded snapshot from a parsed configuration
 *
 * Design note: everything expensive or fallible that a configuration implies (reading key
 * files, building regex-backed signing contexts, compiling the rate-limit policy) happens
 * here, once per load, never on the message path. Errors are prefixed with the file and
 * line the config parser recorded, so operators see where to look. Work is linear in the
 * number of keys and rules.
 */
#define _DEFAULT_SOURCE /* explicit_bzero() is glibc/BSD, not POSIX */
#include "runtime.h"
#include "fileperm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum um_status
rt_fail(struct um_error *err, const struct um_config *cfg, int line, const char *path,
        const struct um_error *inner)
{
    return um_error_set(err, inner->code == UM_OK ? UM_EINVAL : inner->code, "%s:%d: %s: %s",
                        cfg->path, line, path, inner->msg);
}

static enum um_status
rt_build_signing(struct um_runtime *rt, uid_t key_uid, struct um_error *err)
{
    const struct um_config *cfg = rt->cfg;
    const char **hdrs = NULL;
    struct um_error e = {0};
    enum um_status st = UM_OK;
    char path[64];

    rt->nkeys = cfg->dkim_sign.nkey;
    if (rt->nkeys > 0) {
        rt->keys = calloc(rt->nkeys, sizeof(*rt->keys));
        if (rt->keys == NULL)
            return um_error_set(err, UM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < rt->nkeys; i++) {
        const struct um_cfg_key *k = &cfg->dkim_sign.key[i];
        struct um_dkim_sign_keyspec spec = {k->name,     k->domain, k->selector,
                                            k->identity, k->file,   key_uid};
        if (um_dkim_sign_key_load(&spec, &rt->keys[i], &e) != UM_OK) {
            (void)snprintf(path, sizeof(path), "dkim_sign.keys.[%zu]", i);
            return rt_fail(err, cfg, k->line, path, &e);
        }
    }
    if (um_keyrule_new(&rt->keyrule, &e) != UM_OK)
        return rt_fail(err, cfg, cfg->dkim_sign.line_rules, "dkim_sign.rules", &e);
    for (size_t i = 0; i < cfg->dkim_sign.nrule; i++) {
        const struct um_cfg_signrule *r = &cfg->dkim_sign.rule[i];
        if (um_keyrule_add(rt->keyrule, r->from, (const char *const *)r->keys, r->nkeys, &e)
            != UM_OK) {
            (void)snprintf(path, sizeof(path), "dkim_sign.rules.[%zu]", i);
            return rt_fail(err, cfg, r->line, path, &e);
        }
    }
    if (cfg->dkim_sign.nheaders > 0) {
        hdrs = calloc(cfg->dkim_sign.nheaders + 1, sizeof(*hdrs));
        if (hdrs == NULL)
            return um_error_set(err, UM_ENOMEM, "out of memory");
        for (size_t i = 0; i < cfg->dkim_sign.nheaders; i++)
            hdrs[i] = cfg->dkim_sign.headers[i];
    }
    for (int lead = 0; lead < 2 && st == UM_OK; lead++) {
        struct um_dkim_sign_opts o = {0};
        o.header_canon = cfg->dkim_sign.header_canon;
        o.body_canon = cfg->dkim_sign.body_canon;
        o.sign_headers = hdrs;
        o.value_has_leading_space = lead == 1;
        st = um_dkim_sign_new(&o, &rt->sign[lead], &e);
        if (st != UM_OK)
            st = rt_fail(err, cfg, cfg->dkim_sign.line_keys, "dkim_sign", &e);
    }
    free(hdrs);
    return st;
}

static enum um_status
rt_build_ratelimit(struct um_runtime *rt, struct um_error *err)
{
    const struct um_config *cfg = rt->cfg;
    struct um_ratelimit_rule *rules = NULL;
    struct um_error e = {0};
    enum um_status st;

    um_senderkey_order_init(&rt->order);
    for (size_t i = 0; i < cfg->ratelimit.nkey; i++) {
        const char *src = cfg->ratelimit.key[i];
        if (um_senderkey_order_add(&rt->order, (struct um_str){src, strlen(src)}, &e) != UM_OK)
            return um_error_set(err, UM_EINVAL, "%s: ratelimit.key: %s", cfg->path, e.msg);
        if (strcmp(src, "uid") == 0)
            rt->order_has_uid = true;
    }
    if (cfg->ratelimit.nrule > 0) {
        rules = calloc(cfg->ratelimit.nrule, sizeof(*rules));
        if (rules == NULL)
            return um_error_set(err, UM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < cfg->ratelimit.nrule; i++) {
        const struct um_cfg_rlrule *r = &cfg->ratelimit.rule[i];
        rules[i].pattern = (struct um_str){r->sender, strlen(r->sender)};
        rules[i].kind = r->exempt ? UM_RATELIMIT_RULE_EXEMPT : UM_RATELIMIT_RULE_LIMIT;
        rules[i].limit = r->limit < 0 ? 0 : (unsigned)r->limit;
    }
    st = um_ratelimit_policy_new((unsigned)cfg->ratelimit.limit, (unsigned)cfg->ratelimit.window,
                                 rules, cfg->ratelimit.nrule, &rt->rlpol, &e);
    free(rules);
    if (st != UM_OK)
        return um_error_set(err, st, "%s: ratelimit.overrides: %s", cfg->path, e.msg);
    return UM_OK;
}

static enum um_status
rt_build_inbound(struct um_runtime *rt, struct um_dns *dns, struct um_error *err)
{
    const struct um_config *cfg = rt->cfg;
    struct um_error e = {0};

    rt->dns = dns;
    if (um_spf_new(dns, cfg->authserv_id, &rt->spf, &e) != UM_OK)
        return um_error_set(err, e.code, "%s: inbound.spf: %s", cfg->path, e.msg);
    for (int lead = 0; lead < 2; lead++) {
        struct um_dkim_verify_opts o = {0};
        o.max_signatures = (size_t)cfg->inbound.max_signatures;
        o.min_rsa_bits = (unsigned)cfg->inbound.min_key_bits;
        o.allow_rsa_sha1 = cfg->inbound.allow_rsa_sha1;
        o.value_has_leading_space = lead == 1;
        if (um_dkim_verify_new(dns, &o, &rt->dkimv[lead], &e) != UM_OK)
            return um_error_set(err, e.code, "%s: inbound: %s", cfg->path, e.msg);
    }
    {
        struct um_dmarc_opts o = {0};
        o.method = cfg->inbound.dmarc_method;
        o.psl_path = cfg->inbound.psl_file;
        if (um_dmarc_new(dns, &o, &rt->dmarc, &e) != UM_OK)
            return um_error_set(err, e.code, "%s: inbound.dmarc_method: %s", cfg->path, e.msg);
    }
    return UM_OK;
}

void
um_runtime_submit_opts(const struct um_config *cfg, struct um_submit_opts *o)
{
    *o = (struct um_submit_opts){
        .via = cfg->submit.via,
        .relay = cfg->submit.relay,
        .starttls = cfg->submit.starttls,
        .user = cfg->submit.user,
        .ca_file = cfg->submit.ca_file,
        .timeout = cfg->submit.timeout,
        .sendmail = cfg->submit.sendmail,
    };
}

/* The submit settings; the AUTH password is read here, once per configuration. */
static enum um_status
rt_build_submit(struct um_runtime *rt, uid_t key_uid, struct um_error *err)
{
    const struct um_config *cfg = rt->cfg;
    enum um_status st;

    um_runtime_submit_opts(cfg, &rt->submit);
    if (cfg->submit.password_file == NULL)
        return UM_OK;
    st = um_submit_password_read(cfg->submit.password_file, key_uid, &rt->submit_password, err);
    if (st != UM_OK) {
        char why[sizeof(err->msg)];
        (void)snprintf(why, sizeof(why), "%s", err->msg);
        return um_error_set(err, st, "%s:%d: submit.password_file: %s", cfg->path,
                            cfg->submit.line_password_file, why);
    }
    rt->submit.password = rt->submit_password;
    return UM_OK;
}

/* The programs the daemon runs (fileperm.h): whoever could write one would run code as us.
 * Owned by root or by us, not writable by group or others, nor the directories on the way. */
static enum um_status
rt_check_program(const struct um_config *cfg, const char *setting, const char *prog,
                 struct um_error *err)
{
    struct um_fileperm perm;
    struct um_error e = {0};

    um_fileperm_init(&perm, 022);
    if (prog[0] != '/')
        return um_error_set(err, UM_EINVAL, "%s: %s: \"%s\" is not an absolute path", cfg->path,
                            setting, prog);
    if (um_fileperm_check_path(prog, &perm, &e) != UM_OK)
        return um_error_set(err, e.code, "%s: %s: %s", cfg->path, setting, e.msg);
    return UM_OK;
}

static enum um_status
rt_check_programs(const struct um_config *cfg, struct um_error *err)
{
    enum um_status st;

    if (cfg->ratelimit.notify_command != NULL
        && (st = rt_check_program(cfg, "ratelimit.notify.command", cfg->ratelimit.notify_command,
                                  err))
               != UM_OK)
        return st;
    if (cfg->ratelimit.notify_mail_to != NULL && cfg->submit.via == UM_SUBMIT_VIA_SENDMAIL
        && cfg->submit.sendmail != NULL
        && (st = rt_check_program(cfg, "submit.sendmail", cfg->submit.sendmail, err)) != UM_OK)
        return st;
    return UM_OK;
}

enum um_status
um_runtime_build(struct um_config *cfg, uid_t key_uid, struct um_dns *dns, struct um_runtime **out,
                 struct um_error *err)
{
    struct um_runtime *rt = calloc(1, sizeof(*rt));
    enum um_status st;

    *out = NULL;
    if (rt == NULL)
        return um_error_set(err, UM_ENOMEM, "out of memory");
    atomic_init(&rt->refs, 1);
    rt->cfg = um_config_ref(cfg);
    st = rt_check_programs(cfg, err);
    if (st == UM_OK)
        st = rt_build_signing(rt, key_uid, err);
    if (st == UM_OK)
        st = rt_build_submit(rt, key_uid, err);
    if (st == UM_OK)
        st = rt_build_ratelimit(rt, err);
    if (st == UM_OK && dns != NULL)
        st = rt_build_inbound(rt, dns, err);
    if (st != UM_OK) {
        um_runtime_unref(rt);
        return st;
    }
    *out = rt;
    return UM_OK;
}

struct um_runtime *
um_runtime_ref(struct um_runtime *rt)
{
    if (rt != NULL)
        atomic_fetch_add(&rt->refs, 1);
    return rt;
}

void
um_runtime_unref(struct um_runtime *rt)
{
    if (rt == NULL || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    for (size_t i = 0; i < rt->nkeys; i++)
        um_dkim_sign_key_free(rt->keys[i]);
    free(rt->keys);
    um_keyrule_free(rt->keyrule);
    um_dkim_sign_free(rt->sign[0]);
    um_dkim_sign_free(rt->sign[1]);
    um_ratelimit_policy_free(rt->rlpol);
    um_spf_free(rt->spf);
    um_dkim_verify_free(rt->dkimv[0]);
    um_dkim_verify_free(rt->dkimv[1]);
    um_dmarc_free(rt->dmarc);
    if (rt->submit_password != NULL) {
        explicit_bzero(rt->submit_password, strlen(rt->submit_password));
        free(rt->submit_password);
    }
    um_config_unref(rt->cfg);
    free(rt);
}

const struct um_signer *
um_runtime_key(const struct um_runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->nkeys; i++)
        if (strcmp(rt->cfg->dkim_sign.key[i].name, name) == 0)
            return rt->keys[i];
    return NULL;
}
