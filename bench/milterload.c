/*
 * milterload - load client for milters: speaks the milter protocol (version 6) as Postfix does
 *
 * A benchmark tool, not a test: it measures and asserts nothing about time.
 *
 *   milterload [-c SESSIONS] [-n MESSAGES] [-m MSGS_PER_CONN] [-p PID]... [-o RESULTS]
 *              [-t TIMEOUT_S] [-w THINK_MS] [-q] -d CORPUS_DIR [-f MANIFEST] SOCKET [SOCKET...]
 *
 * SOCKET is unix:/path, local:/path, inet:PORT@HOST or inet6:PORT@HOST. Several SOCKETs form
 * a chain, in order, as Postfix's smtpd_milters: each envelope event goes to every milter in
 * turn; the message content goes to milter 1, its header edits are applied, and the edited
 * headers go to milter 2 (cleanup(8) does the same: each milter sees what the previous one
 * left).
 *
 * DESIGN       SESSIONS threads take message numbers from one atomic counter. Each thread
 *              keeps one connection per milter and reuses it for up to MSGS_PER_CONN
 *              messages whose connect-level data (client IP, HELO, daemon name/port) match;
 *              then QUIT. Per connection: OPTNEG offering every action and every protocol
 *              step including SMFIP_HDR_LEADSPC (what Postfix 3.7 offers for version 6),
 *              then CONNECT, HELO, MAIL, RCPT..., DATA, HEADER..., EOH, BODY (65535-byte
 *              chunks of CRLF lines, as Postfix), EOM. Macros go before each event in the
 *              same write: the lists the milter asked for with SMFIR_SETSYMLIST, else
 *              Postfix's defaults plus {daemon_port} and {client_addr}; only macros that
 *              have a value are sent, as Postfix does. Steps the milter declined (SMFIP_NO*)
 *              are not sent (their macros are), replies it declined (SMFIP_NR_*) are not
 *              read. A transaction ended early (reject, tempfail, discard) is followed by
 *              ABORT before the next MAIL. Each write is one buffered send; inet sockets
 *              use TCP_NODELAY. A reject or tempfail at RCPT refuses that recipient only
 *              (Postfix); the message goes on while any recipient is left. With -w, each
 *              new connection waits THINK_MS milliseconds after HELO before its first MAIL,
 *              as Postfix does while a slow SMTP client takes its time: the milter holds
 *              every such connection open at once (resource-exhaustion tests).
 * REPLIES      accept/continue/reject/tempfail/discard/replycode/skip/progress, and at EOM
 *              add/insert/change header, quarantine, add/delete recipient, change sender,
 *              replace body (counted, not applied). A milter that closes the connection,
 *              times out or breaks the protocol costs one message: it is counted as an
 *              error and the session reconnects.
 * CPU          With -p PID (repeatable), reads utime+stime+cutime+cstime of PID and of all
 *              its descendants from /proc before and after the run, so threads, worker
 *              processes and reaped children count; prints CPU seconds per 1000 messages.
 * OUTPUT       A summary on stdout (key: value lines, stable for scripts). With -o, one line
 *              per message: "M\t<n>\t<file>\t<verdict>\t<latency us>", followed by
 *              "H\t<n>\t<milter>\t<op>\t<name>\t<value>" per header edit (op add|insert|change,
 *              value with \n \t \\ escaped) and "R\t<n>\t<milter>\t<reply>" per SMTP reply.
 * MANIFEST     Default CORPUS_DIR/manifest. Tab-separated, '#' comments, one message a line:
 *              file client_ip helo mail_from rcpts(comma-separated) daemon_name daemon_port
 *              sasl_user; "-" means empty; further columns are ignored (the corpus
 *              generator writes the expected results there).
 * LIMITS       Messages are read into memory once. Replies over 16 MiB are a protocol error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

/* Protocol constants (sendmail's mfdef.h), kept here: this client links no libmilter. */
#define ML_VERSION     6
#define ML_ACTIONS_ALL 0x1ffU    /* ADDHDRS..SETSYMLIST */
#define ML_PROTO_V6    0x1fffffU /* every step, every no-reply bit, HDR_LEADSPC */
#define P_NOCONNECT    0x1U
#define P_NOHELO       0x2U
#define P_NOMAIL       0x4U
#define P_NORCPT       0x8U
#define P_NOBODY       0x10U
#define P_NOHDRS       0x20U
#define P_NOEOH        0x40U
#define P_NR_HDR       0x80U
#define P_NODATA       0x200U
#define P_NR_CONN      0x1000U
#define P_NR_HELO      0x2000U
#define P_NR_MAIL      0x4000U
#define P_NR_RCPT      0x8000U
#define P_NR_DATA      0x10000U
#define P_NR_EOH       0x40000U
#define P_NR_BODY      0x80000U
#define P_HDR_LEADSPC  0x100000U
#define ML_CHUNK       65535
#define ML_MAX_REPLY   (16U << 20)
#define ML_MAX_MILTERS 8
#define ML_NSTAGES     7 /* SMFIM_CONNECT .. SMFIM_EOH */

enum stage { ST_CONNECT, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA, ST_EOM, ST_EOH, ST_NONE };
static const char stage_cmd[ML_NSTAGES] = {'C', 'H', 'M', 'R', 'T', 'E', 'N'};
/* Postfix 3.7 defaults (postconf -d), plus {daemon_port} and {client_addr} at connect. */
static const char *const postfix_macros[ML_NSTAGES] = {
    "j {daemon_name} {daemon_addr} {daemon_port} v _ {client_addr}",
    "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
    "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
    "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
    "i",
    "i",
    "i",
};

enum verdict { V_ACCEPT, V_REJECT, V_TEMPFAIL, V_DISCARD, V_QUARANTINE, V_ERROR, V_N };
static const char *const verdict_name[V_N] = {"accept",  "reject",     "tempfail",
                                              "discard", "quarantine", "error"};

struct hdr {
    char *name;
    char *value; /* raw: what follows the colon, leading space included, LF folds */
};

struct msg {
    char *file;
    char *ip, *helo, *from, *dname, *dport, *sasl;
    char **rcpt;
    size_t nrcpt;
    struct hdr *hdr;
    size_t nhdr;
    char *body; /* CRLF lines */
    size_t bodylen;
};

struct buf {
    char *p;
    size_t len, cap;
};

struct mconn {
    int fd;
    uint32_t actions, proto;
    char *symlist[ML_NSTAGES]; /* requested by the milter, or NULL */
    bool done;                 /* accepted (or skipped) for the rest of this message */
    struct buf out;
};

struct edit {
    int milter;
    char op; /* 'h' add, 'i' insert, 'm' change */
    uint32_t idx;
    char *name, *value;
};

struct result {
    enum verdict v;
    double lat_us;
    struct edit *ed;
    size_t ned;
    char *replies; /* "k\treply\n"... */
    size_t nhdradd;
};

struct cfg {
    const char *sock[ML_MAX_MILTERS];
    int nsock;
    int sessions;
    size_t total, per_conn;
    int timeout;
    int think_ms; /* -w: pause after HELO on a new connection */
    struct msg *msgs;
    size_t nmsgs;
    struct result *res;
    atomic_size_t next;
    atomic_ulong errors, conns;
    _Atomic uint32_t neg_actions[ML_MAX_MILTERS], neg_proto[ML_MAX_MILTERS]; /* last OPTNEG */
};

struct worker {
    struct cfg *c;
    struct mconn m[ML_MAX_MILTERS];
    bool open;
    size_t inconn;
    const struct msg *connmsg;
    unsigned long qid;
    int id;
};

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("milterload: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);

    if (p == NULL)
        die("out of memory");
    return p;
}

static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n == 0 ? 1 : n);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *
xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static double
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void
buf_add(struct buf *b, const void *p, size_t n)
{
    if (n == 0) /* p may be NULL then (an empty packet), and memcpy must not see it */
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void
buf_u32(struct buf *b, uint32_t v)
{
    uint32_t n = htonl(v);

    buf_add(b, &n, 4);
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s) + 1);
}

/* Starts a packet; returns the offset of its length word, fixed up by pkt_end(). */
static size_t
pkt_begin(struct buf *b, char cmd)
{
    size_t at = b->len;

    buf_u32(b, 0);
    buf_add(b, &cmd, 1);
    return at;
}

static void
pkt_end(struct buf *b, size_t at)
{
    uint32_t n = htonl((uint32_t)(b->len - at - 4));

    memcpy(b->p + at, &n, 4);
}

/* ---- corpus ---------------------------------------------------------------------------- */

static char *
slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *p = NULL;
    size_t n = 0, cap = 0, r;

    if (fp == NULL)
        return NULL;
    do {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 131072;
            p = xrealloc(p, cap);
        }
        r = fread(p + n, 1, cap - n - 1, fp);
        n += r;
    } while (r > 0);
    fclose(fp);
    p[n] = '\0';
    *len = n;
    return p;
}

/* Headers up to the first empty line (CRLF or LF), unfolded into raw values with LF folds;
 * the body re-lined with CRLF, as Postfix's cleanup stores and sends it. */
static void
msg_parse(struct msg *m, const char *p, size_t len)
{
    size_t i = 0, cap = 0;
    struct buf body = {0};

    while (i < len) {
        size_t e = i;
        while (e < len && p[e] != '\n')
            e++;
        size_t l = e - i;
        if (l > 0 && p[i + l - 1] == '\r')
            l--;
        if (l == 0) { /* end of headers */
            i = e < len ? e + 1 : e;
            break;
        }
        if ((p[i] == ' ' || p[i] == '\t') && m->nhdr > 0) {
            struct hdr *h = &m->hdr[m->nhdr - 1];
            size_t ol = strlen(h->value);
            h->value = xrealloc(h->value, ol + l + 2);
            h->value[ol] = '\n';
            memcpy(h->value + ol + 1, p + i, l);
            h->value[ol + 1 + l] = '\0';
        } else {
            const char *colon = memchr(p + i, ':', l);
            if (colon != NULL) {
                if (m->nhdr == cap) {
                    cap = cap ? cap * 2 : 32;
                    m->hdr = xrealloc(m->hdr, cap * sizeof(*m->hdr));
                }
                size_t nl = (size_t)(colon - (p + i));
                while (nl > 0 && (p[i + nl - 1] == ' ' || p[i + nl - 1] == '\t'))
                    nl--;
                m->hdr[m->nhdr].name = xstrndup(p + i, nl);
                m->hdr[m->nhdr].value = xstrndup(colon + 1, l - (size_t)(colon + 1 - (p + i)));
                m->nhdr++;
            }
        }
        i = e + 1;
    }
    while (i < len) {
        size_t e = i;
        while (e < len && p[e] != '\n')
            e++;
        size_t l = e - i;
        if (l > 0 && p[i + l - 1] == '\r')
            l--;
        buf_add(&body, p + i, l);
        buf_add(&body, "\r\n", 2);
        i = e + 1;
    }
    m->body = body.p;
    m->bodylen = body.len;
}

static char *
field(char **s)
{
    char *f = *s, *t;

    if (f == NULL)
        return xstrndup("", 0);
    t = strchr(f, '\t');
    if (t != NULL) {
        *t = '\0';
        *s = t + 1;
    } else {
        *s = NULL;
    }
    if (strcmp(f, "-") == 0)
        return xstrndup("", 0);
    return xstrndup(f, strlen(f));
}

static void
corpus_load(struct cfg *c, const char *dir, const char *manifest)
{
    char path[4096];
    FILE *fp;
    char *line = NULL;
    size_t lcap = 0, cap = 0;
    ssize_t n;

    if (manifest == NULL) {
        snprintf(path, sizeof(path), "%s/manifest", dir);
        manifest = path;
    }
    fp = fopen(manifest, "r");
    if (fp == NULL)
        die("%s: %s", manifest, strerror(errno));
    while ((n = getline(&line, &lcap, fp)) > 0) {
        char *s = line, *rc, *tok, *save = NULL;
        struct msg m = {0};
        char fpath[4096];
        size_t len;
        char *data;

        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        m.file = field(&s);
        m.ip = field(&s);
        m.helo = field(&s);
        m.from = field(&s);
        rc = field(&s);
        m.dname = field(&s);
        m.dport = field(&s);
        m.sasl = field(&s);
        for (tok = strtok_r(rc, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            m.rcpt = xrealloc(m.rcpt, (m.nrcpt + 1) * sizeof(*m.rcpt));
            m.rcpt[m.nrcpt++] = xstrndup(tok, strlen(tok));
        }
        free(rc);
        if (m.nrcpt == 0)
            die("%s: %s has no recipient", manifest, m.file);
        if (m.file[0] == '/')
            snprintf(fpath, sizeof(fpath), "%s", m.file);
        else
            snprintf(fpath, sizeof(fpath), "%s/%s", dir, m.file);
        data = slurp(fpath, &len);
        if (data == NULL)
            die("%s: %s", fpath, strerror(errno));
        msg_parse(&m, data, len);
        free(data);
        if (c->nmsgs == cap) {
            cap = cap ? cap * 2 : 256;
            c->msgs = xrealloc(c->msgs, cap * sizeof(*c->msgs));
        }
        c->msgs[c->nmsgs++] = m;
    }
    free(line);
    fclose(fp);
    if (c->nmsgs == 0)
        die("%s: no messages", manifest);
}

/* ---- connection ------------------------------------------------------------------------ */

static int
sock_open(const char *spec, int timeout)
{
    int fd = -1;
    struct timeval tv = {.tv_sec = timeout, .tv_usec = 0};

    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        const char *path = strchr(spec, ':') + 1;
        if (strlen(path) >= sizeof(sun.sun_path))
            return -1;
        strcpy(sun.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
            goto fail;
    } else if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
        char port[32], host[256];
        const char *p = strchr(spec, ':') + 1, *at = strchr(p, '@');
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        int one = 1;
        if (at == NULL || (size_t)(at - p) >= sizeof(port) || strlen(at + 1) >= sizeof(host))
            return -1;
        memcpy(port, p, (size_t)(at - p));
        port[at - p] = '\0';
        strcpy(host, at + 1);
        hints.ai_family = spec[4] == '6' ? AF_INET6 : AF_INET;
        if (getaddrinfo(host, port, &hints, &ai) != 0)
            return -1;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            freeaddrinfo(ai);
            goto fail;
        }
        freeaddrinfo(ai);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    } else {
        return -1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

static bool
flush(struct mconn *m)
{
    size_t off = 0;

    while (off < m->out.len) {
        ssize_t w = send(m->fd, m->out.p + off, m->out.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    m->out.len = 0;
    return true;
}

static bool
read_full(int fd, void *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        ssize_t r = recv(fd, (char *)p + off, n - off, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        off += (size_t)r;
    }
    return true;
}

/* One reply packet: *cmd and a NUL-terminated copy of its data in *data (caller frees). */
static bool
read_reply(struct mconn *m, char *cmd, char **data, size_t *len)
{
    uint32_t n;

    if (!flush(m) || !read_full(m->fd, &n, 4))
        return false;
    n = ntohl(n);
    if (n < 1 || n > ML_MAX_REPLY)
        return false;
    if (!read_full(m->fd, cmd, 1))
        return false;
    *len = n - 1;
    *data = xmalloc(n);
    if (!read_full(m->fd, *data, n - 1)) {
        free(*data);
        return false;
    }
    (*data)[n - 1] = '\0';
    return true;
}

static void
mconn_close(struct mconn *m, bool quit)
{
    if (m->fd >= 0) {
        if (quit) {
            m->out.len = 0;
            pkt_end(&m->out, pkt_begin(&m->out, 'Q'));
            (void)flush(m);
        }
        close(m->fd);
    }
    m->fd = -1;
    m->out.len = 0;
    for (int s = 0; s < ML_NSTAGES; s++) {
        free(m->symlist[s]);
        m->symlist[s] = NULL;
    }
}

static bool
optneg(struct mconn *m)
{
    size_t at = pkt_begin(&m->out, 'O');
    char cmd, *d;
    size_t len;
    uint32_t v[3];

    buf_u32(&m->out, ML_VERSION);
    buf_u32(&m->out, ML_ACTIONS_ALL);
    buf_u32(&m->out, ML_PROTO_V6);
    pkt_end(&m->out, at);
    if (!read_reply(m, &cmd, &d, &len))
        return false;
    if (cmd != 'O' || len < 12) {
        free(d);
        return false;
    }
    memcpy(v, d, 12);
    m->actions = ntohl(v[1]);
    m->proto = ntohl(v[2]);
    /* SMFIR_SETSYMLIST data: (uint32 stage, "names\0")... */
    for (size_t off = 12; off + 5 <= len;) {
        uint32_t st;
        memcpy(&st, d + off, 4);
        st = ntohl(st);
        off += 4;
        size_t sl = strnlen(d + off, len - off);
        if (st < ML_NSTAGES) {
            free(m->symlist[st]);
            m->symlist[st] = xstrndup(d + off, sl);
        }
        off += sl + 1;
    }
    free(d);
    return true;
}

/* ---- macros ---------------------------------------------------------------------------- */

struct ctxvals {
    const struct msg *msg;
    const char *rcpt;
    char qid[16];
    char client[300];
};

static const char *
macro_value(const struct ctxvals *cv, const char *name)
{
    const struct msg *m = cv->msg;
    char n[64];
    size_t l = strlen(name);

    if (l >= 2 && name[0] == '{' && name[l - 1] == '}' && l - 2 < sizeof(n)) {
        memcpy(n, name + 1, l - 2);
        n[l - 2] = '\0';
    } else if (l < sizeof(n)) {
        strcpy(n, name);
    } else {
        return NULL;
    }
    if (strcmp(n, "j") == 0)
        return "mx.bench.test";
    if (strcmp(n, "daemon_name") == 0)
        return m->dname[0] ? m->dname : "mx.bench.test";
    if (strcmp(n, "daemon_addr") == 0)
        return "127.0.0.1";
    if (strcmp(n, "daemon_port") == 0)
        return m->dport[0] ? m->dport : NULL;
    if (strcmp(n, "v") == 0)
        return "Postfix 3.7.11";
    if (strcmp(n, "_") == 0)
        return cv->client;
    if (strcmp(n, "client_addr") == 0)
        return m->ip;
    if (strcmp(n, "client_name") == 0 || strcmp(n, "client_ptr") == 0)
        return "unknown";
    if (strcmp(n, "i") == 0)
        return cv->qid;
    if (strcmp(n, "auth_type") == 0)
        return m->sasl[0] ? "PLAIN" : NULL;
    if (strcmp(n, "auth_authen") == 0)
        return m->sasl[0] ? m->sasl : NULL;
    if (strcmp(n, "mail_addr") == 0)
        return m->from;
    if (strcmp(n, "mail_mailer") == 0 || strcmp(n, "rcpt_mailer") == 0)
        return "smtp";
    if (strcmp(n, "rcpt_addr") == 0)
        return cv->rcpt;
    return NULL;
}

static void
send_macros(struct mconn *m, enum stage s, const struct ctxvals *cv)
{
    const char *list = m->symlist[s] ? m->symlist[s] : postfix_macros[s];
    char *copy = xstrndup(list, strlen(list)), *save = NULL, *tok;
    struct buf *b = &m->out;
    size_t at = pkt_begin(b, 'D');
    bool any = false;

    buf_add(b, &stage_cmd[s], 1);
    for (tok = strtok_r(copy, " ,", &save); tok != NULL; tok = strtok_r(NULL, " ,", &save)) {
        const char *v = macro_value(cv, tok);
        if (v == NULL)
            continue;
        buf_str(b, tok);
        buf_str(b, v);
        any = true;
    }
    free(copy);
    if (any)
        pkt_end(b, at);
    else
        b->len = at; /* Postfix sends no empty macro packet */
}

/* ---- events ---------------------------------------------------------------------------- */

enum ev { EV_CONTINUE, EV_ACCEPT, EV_SKIP, EV_REJECT, EV_TEMPFAIL, EV_DISCARD, EV_ERROR };

struct msgstate {
    struct result *r;
    struct hdr *hdr; /* current headers, edited by earlier milters */
    size_t nhdr;
    bool quarantined;
};

static void
add_reply(struct result *r, int k, const char *txt)
{
    size_t ol = r->replies ? strlen(r->replies) : 0, l = strlen(txt);

    r->replies = xrealloc(r->replies, ol + l + 16);
    snprintf(r->replies + ol, l + 16, "%d\t%s\n", k, txt);
}

static enum ev
ev_of(char cmd, const char *data)
{
    switch (cmd) {
    case 'c':
        return EV_CONTINUE;
    case 'a':
        return EV_ACCEPT;
    case 's':
        return EV_SKIP;
    case 'r':
        return EV_REJECT;
    case 't':
        return EV_TEMPFAIL;
    case 'd':
        return EV_DISCARD;
    case 'y':
        return data[0] == '4' ? EV_TEMPFAIL : data[0] == '5' ? EV_REJECT : EV_ERROR;
    case 'f': /* SMFIR_CONN_FAIL */
        return EV_TEMPFAIL;
    case '4': /* SMFIR_SHUTDOWN */
        return EV_TEMPFAIL;
    default:
        return EV_ERROR;
    }
}

static void
record_edit(struct msgstate *ms, int k, char op, uint32_t idx, const char *name, const char *value,
            bool leadspc)
{
    struct result *r = ms->r;
    struct edit *e;
    char *raw;

    r->ed = xrealloc(r->ed, (r->ned + 1) * sizeof(*r->ed));
    e = &r->ed[r->ned++];
    e->milter = k;
    e->op = op;
    e->idx = idx;
    e->name = xstrndup(name, strlen(name));
    e->value = xstrndup(value, strlen(value));
    if (op != 'm')
        r->nhdradd++;
    /* Apply to the header list the next milter will see. Without LEADSPC the MTA adds one
     * space after the colon. */
    raw = xmalloc(strlen(value) + 2);
    sprintf(raw, "%s%s", leadspc ? "" : " ", value);
    if (op == 'h' || op == 'i') {
        size_t at = op == 'h' || idx > ms->nhdr ? ms->nhdr : idx;
        ms->hdr = xrealloc(ms->hdr, (ms->nhdr + 1) * sizeof(*ms->hdr));
        memmove(&ms->hdr[at + 1], &ms->hdr[at], (ms->nhdr - at) * sizeof(*ms->hdr));
        ms->hdr[at].name = xstrndup(name, strlen(name));
        ms->hdr[at].value = raw;
        ms->nhdr++;
        return;
    }
    /* change: idx-th (1-based) header of that name; empty value deletes */
    for (size_t i = 0, seen = 0; i < ms->nhdr; i++) {
        if (strcasecmp(ms->hdr[i].name, name) != 0 || ++seen != idx)
            continue;
        free(ms->hdr[i].name);
        free(ms->hdr[i].value);
        if (value[0] == '\0') {
            memmove(&ms->hdr[i], &ms->hdr[i + 1], (ms->nhdr - i - 1) * sizeof(*ms->hdr));
            ms->nhdr--;
            free(raw);
        } else {
            ms->hdr[i].name = xstrndup(name, strlen(name));
            ms->hdr[i].value = raw;
        }
        return;
    }
    if (value[0] != '\0') { /* no such header: sendmail and Postfix add it */
        ms->hdr = xrealloc(ms->hdr, (ms->nhdr + 1) * sizeof(*ms->hdr));
        ms->hdr[ms->nhdr].name = xstrndup(name, strlen(name));
        ms->hdr[ms->nhdr].value = raw;
        ms->nhdr++;
    } else {
        free(raw);
    }
}

/* Reads replies until a final one; modification replies are recorded when eom is set. */
static enum ev
read_final(struct mconn *m, int k, struct msgstate *ms, bool eom)
{
    for (;;) {
        char cmd, *d;
        size_t len;
        enum ev e;

        if (!read_reply(m, &cmd, &d, &len))
            return EV_ERROR;
        switch (cmd) {
        case 'p': /* progress */
            free(d);
            continue;
        case 'h':
        case 'i':
        case 'm': {
            uint32_t idx = 0;
            size_t off = 0;
            if (!eom) {
                free(d);
                return EV_ERROR;
            }
            if (cmd != 'h') {
                if (len < 4) {
                    free(d);
                    return EV_ERROR;
                }
                memcpy(&idx, d, 4);
                idx = ntohl(idx);
                off = 4;
            }
            size_t nl = strnlen(d + off, len - off);
            if (off + nl + 1 > len) {
                free(d);
                return EV_ERROR;
            }
            const char *name = d + off, *value = d + off + nl + 1;
            record_edit(ms, k, cmd, idx, name, value, (m->proto & P_HDR_LEADSPC) != 0);
            free(d);
            continue;
        }
        case 'q':
            if (!eom) {
                free(d);
                return EV_ERROR;
            }
            ms->quarantined = true;
            add_reply(ms->r, k, "quarantine");
            free(d);
            continue;
        case '+':
        case '-':
        case '2':
        case 'b':
        case 'e':
        case 'l':
            free(d);
            if (!eom)
                return EV_ERROR;
            continue;
        default:
            break;
        }
        e = ev_of(cmd, d);
        if (cmd == 'y')
            add_reply(ms->r, k, d);
        free(d);
        return e;
    }
}

/* Sends one event to milter k (macros first) and returns its answer. */
static enum ev
event(struct mconn *m, int k, struct msgstate *ms, enum stage s, const struct ctxvals *cv, char cmd,
      const struct buf *arg, uint32_t nostep, uint32_t noreply)
{
    size_t at;

    if (m->done)
        return EV_CONTINUE;
    if (s != ST_NONE)
        send_macros(m, s, cv);
    if (nostep != 0 && (m->proto & nostep) != 0)
        return EV_CONTINUE;
    at = pkt_begin(&m->out, cmd);
    if (arg != NULL)
        buf_add(&m->out, arg->p, arg->len);
    pkt_end(&m->out, at);
    if (noreply != 0 && (m->proto & noreply) != 0) {
        if (m->out.len >= ML_CHUNK && !flush(m))
            return EV_ERROR;
        return EV_CONTINUE;
    }
    return read_final(m, k, ms, false);
}

static void
worker_close(struct worker *w, bool quit)
{
    for (int k = 0; k < w->c->nsock; k++)
        mconn_close(&w->m[k], quit);
    w->open = false;
    w->inconn = 0;
}

static bool
same_conn(const struct msg *a, const struct msg *b)
{
    return strcmp(a->ip, b->ip) == 0 && strcmp(a->helo, b->helo) == 0
           && strcmp(a->dname, b->dname) == 0 && strcmp(a->dport, b->dport) == 0
           && strcmp(a->sasl, b->sasl) == 0;
}

/* Applies one event's answer to the message; returns true when the message is over. */
static bool
settle(struct worker *w, int k, enum ev e, enum verdict *v)
{
    switch (e) {
    case EV_CONTINUE:
        return false;
    case EV_ACCEPT:
    case EV_SKIP:
        w->m[k].done = true;
        return false;
    case EV_REJECT:
        *v = V_REJECT;
        return true;
    case EV_TEMPFAIL:
        *v = V_TEMPFAIL;
        return true;
    case EV_DISCARD:
        *v = V_DISCARD;
        return true;
    case EV_ERROR:
    default:
        *v = V_ERROR;
        return true;
    }
}

/* Connection-level events for every milter: CONNECT then HELO. */
static bool
conn_open(struct worker *w, const struct msg *msg, struct msgstate *ms, enum verdict *v)
{
    struct cfg *c = w->c;
    struct ctxvals cv = {.msg = msg};
    struct buf a = {0};
    bool over = false;
    char fam = strchr(msg->ip, ':') ? '6' : '4';
    uint16_t port = htons(49152 + (uint16_t)(w->id % 1000));

    snprintf(cv.client, sizeof(cv.client), "unknown [%s]", msg->ip);
    snprintf(cv.qid, sizeof(cv.qid), "%s", "");
    for (int k = 0; k < c->nsock; k++) {
        struct mconn *m = &w->m[k];
        m->fd = sock_open(c->sock[k], c->timeout);
        m->done = false;
        if (m->fd < 0 || !optneg(m)) {
            *v = V_ERROR;
            free(a.p);
            return true;
        }
        atomic_store(&c->neg_actions[k], m->actions);
        atomic_store(&c->neg_proto[k], m->proto);
    }
    atomic_fetch_add(&c->conns, 1);
    w->open = true;
    w->connmsg = msg;
    /* SMFIC_CONNECT: hostname, family, port, address */
    buf_str(&a, "unknown");
    buf_add(&a, &fam, 1);
    buf_add(&a, &port, 2);
    buf_str(&a, msg->ip);
    for (int k = 0; k < c->nsock && !over; k++)
        over = settle(w, k,
                      event(&w->m[k], k, ms, ST_CONNECT, &cv, 'C', &a, P_NOCONNECT, P_NR_CONN), v);
    a.len = 0;
    buf_str(&a, msg->helo);
    for (int k = 0; k < c->nsock && !over; k++)
        over = settle(w, k, event(&w->m[k], k, ms, ST_HELO, &cv, 'H', &a, P_NOHELO, P_NR_HELO), v);
    free(a.p);
    if (!over && c->think_ms > 0) {
        struct timespec ts = {c->think_ms / 1000, (long)(c->think_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* "accept" at connect or HELO holds for the whole connection; keep it simple: as
     * Postfix does, such a milter sees nothing more in this session. */
    return over;
}

static void
run_message(struct worker *w, size_t n)
{
    struct cfg *c = w->c;
    const struct msg *msg = &c->msgs[n % c->nmsgs];
    struct result *r = &c->res[n];
    struct msgstate ms = {.r = r};
    struct ctxvals cv = {.msg = msg};
    struct buf a = {0};
    enum verdict v = V_ACCEPT;
    bool over = false, conn_accepted[ML_MAX_MILTERS] = {false};
    double t0 = now_us();

    if (w->open && (w->inconn >= c->per_conn || !same_conn(w->connmsg, msg)))
        worker_close(w, true);
    if (!w->open) {
        over = conn_open(w, msg, &ms, &v);
        if (over) {
            if (v != V_ERROR)
                worker_close(w, true); /* refused at connect or HELO: the session ends */
            goto out;
        }
    }
    for (int k = 0; k < c->nsock; k++)
        conn_accepted[k] = w->m[k].done;
    w->inconn++;
    snprintf(cv.client, sizeof(cv.client), "unknown [%s]", msg->ip);
    snprintf(cv.qid, sizeof(cv.qid), "%lX", ++w->qid * 100003UL + (unsigned long)w->id);

    /* MAIL: "<addr>" then ESMTP args (none) */
    {
        size_t l = strlen(msg->from);
        char *s = xmalloc(l + 3);
        snprintf(s, l + 3, "<%s>", msg->from);
        buf_str(&a, s);
        free(s);
    }
    for (int k = 0; k < c->nsock && !over; k++)
        over =
            settle(w, k, event(&w->m[k], k, &ms, ST_MAIL, &cv, 'M', &a, P_NOMAIL, P_NR_MAIL), &v);
    /* A reject or tempfail at RCPT refuses that recipient only, as in Postfix; the message
     * ends when none is left. */
    size_t refused = 0;
    enum verdict rv = V_REJECT;
    for (size_t i = 0; i < msg->nrcpt && !over; i++) {
        size_t l = strlen(msg->rcpt[i]);
        char *s = xmalloc(l + 3);
        snprintf(s, l + 3, "<%s>", msg->rcpt[i]);
        a.len = 0;
        buf_str(&a, s);
        free(s);
        cv.rcpt = msg->rcpt[i];
        for (int k = 0; k < c->nsock && !over; k++) {
            enum ev e = event(&w->m[k], k, &ms, ST_RCPT, &cv, 'R', &a, P_NORCPT, P_NR_RCPT);
            if (e == EV_REJECT || e == EV_TEMPFAIL) {
                refused++;
                rv = e == EV_REJECT ? V_REJECT : V_TEMPFAIL;
                break;
            }
            over = settle(w, k, e, &v);
        }
    }
    cv.rcpt = NULL;
    if (!over && refused == msg->nrcpt) {
        v = rv;
        over = true;
    }
    for (int k = 0; k < c->nsock && !over; k++)
        over =
            settle(w, k, event(&w->m[k], k, &ms, ST_DATA, &cv, 'T', NULL, P_NODATA, P_NR_DATA), &v);
    if (over)
        goto out;

    /* Content: milter by milter, each seeing the headers the previous ones left. */
    ms.hdr = xmalloc(msg->nhdr * sizeof(*ms.hdr) + 1);
    for (size_t i = 0; i < msg->nhdr; i++) {
        ms.hdr[i].name = xstrndup(msg->hdr[i].name, strlen(msg->hdr[i].name));
        ms.hdr[i].value = xstrndup(msg->hdr[i].value, strlen(msg->hdr[i].value));
    }
    ms.nhdr = msg->nhdr;
    for (int k = 0; k < c->nsock && !over; k++) {
        struct mconn *m = &w->m[k];
        bool lead = (m->proto & P_HDR_LEADSPC) != 0;
        enum ev e = EV_CONTINUE;

        for (size_t i = 0; i < ms.nhdr && !m->done && !over; i++) {
            const char *val = ms.hdr[i].value;
            if (!lead)
                while (*val == ' ' || *val == '\t')
                    val++;
            a.len = 0;
            buf_str(&a, ms.hdr[i].name);
            buf_str(&a, val);
            e = event(m, k, &ms, ST_NONE, &cv, 'L', &a, P_NOHDRS, P_NR_HDR);
            over = settle(w, k, e, &v);
        }
        if (!over)
            over = settle(w, k, event(m, k, &ms, ST_EOH, &cv, 'N', NULL, P_NOEOH, P_NR_EOH), &v);
        for (size_t off = 0; off < msg->bodylen && !m->done && !over; off += ML_CHUNK) {
            size_t l = msg->bodylen - off < ML_CHUNK ? msg->bodylen - off : ML_CHUNK;
            struct buf chunk = {.p = msg->body + off, .len = l};
            e = event(m, k, &ms, ST_NONE, &cv, 'B', &chunk, P_NOBODY, P_NR_BODY);
            if (e == EV_SKIP)
                break; /* SMFIR_SKIP: no more body, EOM follows */
            over = settle(w, k, e, &v);
        }
        if (!over && !m->done) {
            send_macros(m, ST_EOM, &cv);
            pkt_end(&m->out, pkt_begin(&m->out, 'E'));
            e = read_final(m, k, &ms, true);
            over = settle(w, k, e, &v);
            m->done = false;
        }
    }
    if (!over && ms.quarantined)
        v = V_QUARANTINE;
out:
    if (v == V_ERROR) {
        atomic_fetch_add(&c->errors, 1);
        worker_close(w, false);
    } else if (over && w->open) {
        /* Transaction cut short: ABORT, so the next MAIL starts clean. */
        for (int k = 0; k < c->nsock; k++) {
            pkt_end(&w->m[k].out, pkt_begin(&w->m[k].out, 'A'));
            if (!flush(&w->m[k])) {
                worker_close(w, false);
                break;
            }
        }
    }
    if (w->open)
        for (int k = 0; k < c->nsock; k++)
            w->m[k].done = conn_accepted[k];
    for (size_t i = 0; i < ms.nhdr; i++) {
        free(ms.hdr[i].name);
        free(ms.hdr[i].value);
    }
    free(ms.hdr);
    free(a.p);
    r->v = v;
    r->lat_us = now_us() - t0;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    size_t n;

    for (int k = 0; k < ML_MAX_MILTERS; k++)
        w->m[k].fd = -1;
    while ((n = atomic_fetch_add(&w->c->next, 1)) < w->c->total)
        run_message(w, n);
    if (w->open)
        worker_close(w, true);
    for (int k = 0; k < ML_MAX_MILTERS; k++)
        free(w->m[k].out.p);
    return NULL;
}

/* ---- CPU accounting -------------------------------------------------------------------- */

struct proc {
    int pid, ppid;
    double cpu; /* seconds: utime + stime + cutime + cstime */
};

static size_t
proc_scan(struct proc **out)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    struct proc *p = NULL;
    size_t n = 0;
    long hz = sysconf(_SC_CLK_TCK);

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char path[300], line[2048], *rp;
        unsigned long ut, st;
        long cut, cst;
        int ppid;
        FILE *fp;

        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        fp = fopen(path, "r");
        if (fp == NULL)
            continue;
        if (fgets(line, sizeof(line), fp) == NULL) {
            fclose(fp);
            continue;
        }
        fclose(fp);
        rp = strrchr(line, ')'); /* comm may hold spaces */
        if (rp == NULL
            || sscanf(rp + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld", &ppid,
                      &ut, &st, &cut, &cst)
                   != 5)
            continue;
        p = xrealloc(p, (n + 1) * sizeof(*p));
        p[n].pid = atoi(de->d_name);
        p[n].ppid = ppid;
        p[n].cpu = (double)(ut + st + (unsigned long)cut + (unsigned long)cst) / (double)hz;
        n++;
    }
    closedir(d);
    *out = p;
    return n;
}

/* CPU seconds of the given PIDs and all their descendants. */
static double
proc_cpu(const int *pids, int npids)
{
    struct proc *p = NULL;
    size_t n = proc_scan(&p);
    bool *in = calloc(n + 1, sizeof(bool));
    double sum = 0;
    bool grew = true;

    if (in == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < npids; j++)
            if (p[i].pid == pids[j])
                in[i] = true;
    while (grew) {
        grew = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n; j++) {
                if (in[j] && p[i].ppid == p[j].pid) {
                    in[i] = grew = true;
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (in[i])
            sum += p[i].cpu;
    free(in);
    free(p);
    return sum;
}

/* ---- main ------------------------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void
put_escaped(FILE *fp, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            fputs("\\n", fp);
        else if (*s == '\t')
            fputs("\\t", fp);
        else if (*s == '\r')
            fputs("\\r", fp);
        else if (*s == '\\')
            fputs("\\\\", fp);
        else
            fputc(*s, fp);
    }
}

static void
write_results(const struct cfg *c, const char *path)
{
    FILE *fp = fopen(path, "w");

    if (fp == NULL)
        die("%s: %s", path, strerror(errno));
    for (size_t n = 0; n < c->total; n++) {
        const struct result *r = &c->res[n];
        fprintf(fp, "M\t%zu\t%s\t%s\t%.0f\n", n, c->msgs[n % c->nmsgs].file, verdict_name[r->v],
                r->lat_us);
        for (size_t i = 0; i < r->ned; i++) {
            const struct edit *e = &r->ed[i];
            fprintf(fp, "H\t%zu\t%d\t%s\t", n, e->milter,
                    e->op == 'h'   ? "add"
                    : e->op == 'i' ? "insert"
                                   : "change");
            put_escaped(fp, e->name);
            fputc('\t', fp);
            put_escaped(fp, e->value);
            fputc('\n', fp);
        }
        if (r->replies != NULL) {
            char *save = NULL, *copy = xstrndup(r->replies, strlen(r->replies));
            for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                fprintf(fp, "R\t%zu\t%s\n", n, l);
            free(copy);
        }
    }
    fclose(fp);
}

static void
usage(void)
{
    fputs("usage: milterload [-c SESSIONS] [-n MESSAGES] [-m MSGS_PER_CONN] [-p PID]...\n"
          "                  [-o RESULTS] [-t TIMEOUT_S] [-w THINK_MS] -d CORPUS_DIR\n"
          "                  [-f MANIFEST]\n"
          "                  SOCKET [SOCKET...]\n"
          "SOCKET: unix:/path | inet:PORT@HOST | inet6:PORT@HOST; several = a chain\n",
          stderr);
    exit(2);
}

int
main(int argc, char **argv)
{
    static struct cfg c; /* zeroed; large, so not on the stack */
    const char *dir = NULL, *manifest = NULL, *out = NULL;
    int pids[64], npids = 0, opt;
    long long total = -1;
    pthread_t *th;
    struct worker *w;
    double t0, t1, cpu0 = 0, cpu1 = 0, *lat;
    struct rusage ru0, ru1;
    size_t counts[V_N] = {0}, hdradd = 0, nlat = 0;

    c.sessions = 8;
    c.per_conn = 1;
    c.timeout = 60;
    while ((opt = getopt(argc, argv, "c:n:m:p:o:t:w:d:f:")) != -1) {
        switch (opt) {
        case 'c':
            c.sessions = atoi(optarg);
            break;
        case 'n':
            total = atoll(optarg);
            break;
        case 'm':
            c.per_conn = (size_t)atoll(optarg);
            break;
        case 'p':
            if (npids == 64)
                die("too many -p");
            pids[npids++] = atoi(optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 't':
            c.timeout = atoi(optarg);
            break;
        case 'w':
            c.think_ms = atoi(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'f':
            manifest = optarg;
            break;
        default:
            usage();
        }
    }
    if (dir == NULL || optind >= argc || c.sessions < 1 || c.per_conn < 1 || c.timeout < 1
        || c.think_ms < 0)
        usage();
    for (; optind < argc; optind++) {
        if (c.nsock == ML_MAX_MILTERS)
            die("at most %d milters in a chain", ML_MAX_MILTERS);
        c.sock[c.nsock++] = argv[optind];
    }
    corpus_load(&c, dir, manifest);
    c.total = total < 0 ? c.nmsgs : (size_t)total;
    c.res = calloc(c.total + 1, sizeof(*c.res));
    th = calloc((size_t)c.sessions, sizeof(*th));
    w = calloc((size_t)c.sessions, sizeof(*w));
    if (c.res == NULL || th == NULL || w == NULL)
        die("out of memory");

    if (npids > 0)
        cpu0 = proc_cpu(pids, npids);
    getrusage(RUSAGE_SELF, &ru0);
    t0 = now_us();
    for (int i = 0; i < c.sessions; i++) {
        w[i].c = &c;
        w[i].id = i;
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            die("pthread_create failed");
    }
    for (int i = 0; i < c.sessions; i++)
        pthread_join(th[i], NULL);
    t1 = now_us();
    getrusage(RUSAGE_SELF, &ru1);
    if (npids > 0)
        cpu1 = proc_cpu(pids, npids);

    lat = xmalloc(c.total * sizeof(*lat));
    for (size_t n = 0; n < c.total; n++) {
        counts[c.res[n].v]++;
        hdradd += c.res[n].nhdradd;
        if (c.res[n].v != V_ERROR)
            lat[nlat++] = c.res[n].lat_us;
    }
    qsort(lat, nlat, sizeof(*lat), cmp_double);
    double secs = (t1 - t0) / 1e6;
    double self = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec
                           - ru0.ru_stime.tv_sec)
                  + (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec
                             - ru0.ru_stime.tv_usec)
                        / 1e6;
    printf("milters: %d\n", c.nsock);
    for (int k = 0; k < c.nsock; k++)
        printf("milter%d_negotiated: actions=0x%x protocol=0x%x\n", k,
               (unsigned)atomic_load(&c.neg_actions[k]), (unsigned)atomic_load(&c.neg_proto[k]));
    printf("sessions: %d\n", c.sessions);
    printf("messages: %zu\n", c.total);
    printf("connections: %lu\n", (unsigned long)atomic_load(&c.conns));
    printf("seconds: %.3f\n", secs);
    printf("msgs_per_s: %.1f\n", (double)c.total / secs);
    printf("p50_ms: %.2f\n", nlat ? lat[nlat / 2] / 1e3 : 0.0);
    printf("p99_ms: %.2f\n", nlat ? lat[(nlat * 99) / 100] / 1e3 : 0.0);
    for (int v = 0; v < V_N; v++)
        printf("%s: %zu\n", verdict_name[v], counts[v]);
    printf("errors: %lu\n", (unsigned long)atomic_load(&c.errors));
    printf("headers_added: %zu\n", hdradd);
    if (npids > 0) {
        printf("milter_cpu_s: %.3f\n", cpu1 - cpu0);
        printf("cpu_s_per_1000: %.3f\n", (cpu1 - cpu0) * 1000.0 / (double)c.total);
    }
    printf("client_cpu_s_per_1000: %.3f\n", self * 1000.0 / (double)c.total);
    if (out != NULL)
        write_results(&c, out);
    free(lat);
    free(w);
    free(th);
    return 0;
}
