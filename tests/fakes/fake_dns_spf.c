/*
 * fake_dns_spf.c - an in-memory zone behind the um_spf resolver seam (struct um_spf_resolver)
 *
 * Included by the SPF tests (#include "../fakes/fake_dns_spf.c"). Entries are kept in
 * insertion order: name (raw bytes, ASCII case-insensitive), type, value. Answers follow
 * the rules of the openspf suite driver: a TIMEOUT (or SERVFAIL) entry makes every type not
 * listed before it fail temporarily; CNAMEs are followed (a repeated name ends the chain);
 * a name with entries but none of the type is NODATA; an unknown name is NXDOMAIN. Names
 * um_dns_name_valid() refuses give UM_EINVAL, as the real resolver does.
 * Values: A/AAAA in text; MX "pref,host"; PTR/CNAME a name; TXT character-strings joined by
 * '\x1f' (an empty value is an RR with no strings), FAKE_NUL stands for a NUL byte.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dns.h"
#include "spf.h"

#define FAKE_TYPE_TIMEOUT (-1)
#define FAKE_TYPE_NOTXT   (-2)
#define FAKE_MAX_ENTRIES  512
#define FAKE_NUL          '\x1e' /* in a TXT value: a NUL byte on the wire */

struct fake_entry {
    char *name, *value;
    int type;
};

struct fake_zone {
    struct fake_entry e[FAKE_MAX_ENTRIES];
    size_t n;
    _Atomic unsigned queries, type99;
};

static void
fake_zone_reset(struct fake_zone *z)
{
    for (size_t i = 0; i < z->n; i++) {
        free(z->e[i].name);
        free(z->e[i].value);
    }
    memset(z, 0, sizeof(*z));
}

static void
fake_zone_add(struct fake_zone *z, const char *name, int type, const char *value)
{
    if (z->n >= FAKE_MAX_ENTRIES)
        abort();
    z->e[z->n].name = strdup(name);
    z->e[z->n].value = strdup(value != NULL ? value : "");
    z->e[z->n].type = type;
    z->n++;
}

static size_t
fake_wire_name(const char *name, unsigned char *out, size_t cap)
{
    size_t n = 0, len = strlen(name);

    if (len > 0 && name[len - 1] == '.')
        len--;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && name[j] != '.')
            j++;
        if (j - i == 0 || j - i > 63 || n + 1 + (j - i) + 1 > cap)
            return 0;
        out[n++] = (unsigned char)(j - i);
        memcpy(out + n, name + i, j - i);
        n += j - i;
        i = j + 1;
    }
    out[n++] = 0;
    return n;
}

static bool
fake_add_rdata(struct um_dns_answer *a, int qtype, const char *v)
{
    unsigned char buf[70000];
    size_t n = 0;
    char *copy;

    switch (qtype) {
    case UM_DNS_TYPE_A:
        if (inet_pton(AF_INET, v, buf) != 1)
            return false;
        n = 4;
        break;
    case UM_DNS_TYPE_AAAA:
        if (inet_pton(AF_INET6, v, buf) != 1)
            return false;
        n = 16;
        break;
    case UM_DNS_TYPE_MX: {
        const char *c = strchr(v, ',');
        unsigned pref = (unsigned)atoi(v);
        buf[0] = (unsigned char)(pref >> 8);
        buf[1] = (unsigned char)pref;
        n = fake_wire_name(c != NULL ? c + 1 : "", buf + 2, sizeof(buf) - 2);
        if (n == 0)
            return false;
        n += 2;
        break;
    }
    case UM_DNS_TYPE_PTR:
        n = fake_wire_name(v, buf, sizeof(buf));
        if (n == 0)
            return false;
        break;
    case UM_DNS_TYPE_TXT: {
        const char *p = v;
        while (*v != '\0') {
            const char *e = strchr(p, '\x1f');
            size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
            do { /* strings over 255 bytes are split, as a zone file would */
                size_t k = l > 255 ? 255 : l;
                buf[n++] = (unsigned char)k;
                for (size_t x = 0; x < k; x++)
                    buf[n++] = p[x] == FAKE_NUL ? 0 : (unsigned char)p[x];
                p += k;
                l -= k;
            } while (l > 0);
            if (e == NULL)
                break;
            p = e + 1;
        }
        break;
    }
    default:
        return false;
    }
    copy = malloc(n + 1);
    a->rdata = realloc(a->rdata, (a->n + 1) * sizeof(*a->rdata));
    if (copy == NULL || a->rdata == NULL)
        abort();
    memcpy(copy, buf, n);
    a->rdata[a->n].p = copy;
    a->rdata[a->n].len = n;
    a->n++;
    return true;
}

static void
fake_answer_free(void *arg, struct um_dns_answer *a)
{
    (void)arg;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        free((void *)(uintptr_t)a->rdata[i].p);
    free(a->rdata);
    free(a);
}

static enum um_status
fake_query(void *arg, const char *name, int qtype, struct um_dns_answer **out, struct um_error *err)
{
    struct fake_zone *z = arg;
    struct um_dns_answer *a;
    const char *cur = name;
    const char *seen[9];
    size_t nseen = 0;

    *out = NULL;
    z->queries++;
    if (qtype == 99)
        z->type99++;
    if (!um_dns_name_valid(name))
        return um_error_set(err, UM_EINVAL, "fake: bad name");
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        abort();
    a->qtype = qtype;
    a->rcode = 0;
    for (;;) {
        bool exists = false, nxd = true, timeout = false, notxt = false;
        const char *cname = NULL;

        for (size_t i = 0; i < z->n; i++) {
            struct fake_entry *e = &z->e[i];
            if (strcasecmp(e->name, cur) != 0)
                continue;
            nxd = false;
            if (e->type == FAKE_TYPE_TIMEOUT) {
                if (!exists)
                    timeout = true;
                break;
            }
            if (e->type == FAKE_TYPE_NOTXT) {
                notxt = true;
                continue;
            }
            if (e->type == UM_DNS_TYPE_CNAME && qtype != UM_DNS_TYPE_CNAME)
                cname = e->value;
            if (e->type == qtype && !(notxt && qtype == UM_DNS_TYPE_TXT)) {
                exists = true;
                (void)fake_add_rdata(a, qtype, e->value);
            }
        }
        if (timeout) {
            a->result = UM_DNS_TEMPFAIL;
            a->rcode = -1;
            (void)snprintf(a->reason, sizeof(a->reason), "timed out after 1 s");
            for (size_t i = 0; i < a->n; i++)
                free((void *)(uintptr_t)a->rdata[i].p);
            a->n = 0;
            break;
        }
        if (a->n == 0 && cname != NULL && nseen < 8) {
            bool loop = false;
            seen[nseen++] = cur;
            for (size_t i = 0; i < nseen; i++)
                loop = loop || strcasecmp(seen[i], cname) == 0;
            if (!loop) {
                cur = cname;
                continue;
            }
        }
        a->result = a->n > 0 ? UM_DNS_OK : nxd ? UM_DNS_NXDOMAIN : UM_DNS_NODATA;
        a->rcode = nxd ? 3 : 0;
        break;
    }
    *out = a;
    return UM_OK;
}

static const struct um_spf_resolver fake_resolver_proto = {fake_query, fake_answer_free, NULL};
