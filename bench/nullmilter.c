/*
 * nullmilter - a libmilter milter that sees every stage and does nothing: the benchmark floor
 *
 *   nullmilter [-q] SOCKET   (unix:/path or inet:PORT@HOST; runs in the foreground)
 *
 * DESIGN       Registers every callback (connect, helo, envfrom, envrcpt, data, header, eoh,
 *              body, eom, abort, close, unknown, negotiate) and returns SMFIS_CONTINUE from
 *              each, asking in negotiate for every step with a reply (no SMFIP_NR_*, no
 *              SMFIP_NO*), so the MTA sends it the whole message. It keeps a per-connection
 *              context (calloc'd at connect, freed at close) as any real milter does, and
 *              reads one macro per stage. What it costs per message is what libmilter
 *              itself costs: the floor any libmilter-based milter stands on.
 *              With -q it negotiates what unimilter does instead: no replies for HELO,
 *              headers, end of headers and body (SMFIP_NR_*), no DATA or unknown commands;
 *              those callbacks answer SMFIS_NOREPLY. That is the floor for the protocol
 *              unimilter speaks, which costs fewer round trips than "every step".
 * THREADS      No shared mutable state; the context hangs off smfi_setpriv().
 * SIGNALS      libmilter's: SIGTERM or SIGHUP stop it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

struct null_ctx {
    unsigned long msgs, bytes;
};

#define NCTX(ctx) ((struct null_ctx *)smfi_getpriv(ctx))
/* libmilter takes char * for strings it never writes (as milter/daemon.h's MSTR). */
#define MSTR(s)   ((char *)(uintptr_t)(s))

#define NULL_NR (SMFIP_NR_HELO | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY)

static unsigned long null_noreply; /* -q: the SMFIP_NR_* steps negotiated (per process) */

static sfsistat
null_step(unsigned long bit)
{
    return (null_noreply & bit) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
               unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx;
    (void)f2;
    (void)f3;
    *pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE);
    *pf1 = 0; /* every step, every reply */
    if (null_noreply != 0)
        *pf1 = f1 & (NULL_NR | SMFIP_NODATA | SMFIP_NOUNKNOWN);
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat
null_connect(SMFICTX *ctx, char *host, struct sockaddr *sa)
{
    struct null_ctx *nc = calloc(1, sizeof(*nc));

    (void)host;
    (void)sa;
    (void)smfi_getsymval(ctx, MSTR("{daemon_name}"));
    if (nc == NULL || smfi_setpriv(ctx, nc) != MI_SUCCESS) {
        free(nc);
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_CONTINUE;
}

static sfsistat
null_helo(SMFICTX *ctx, char *helo)
{
    (void)ctx;
    (void)helo;
    return null_step(SMFIP_NR_HELO);
}

static sfsistat
null_envfrom(SMFICTX *ctx, char **argv)
{
    (void)argv;
    (void)smfi_getsymval(ctx, MSTR("{auth_authen}"));
    return SMFIS_CONTINUE;
}

static sfsistat
null_envrcpt(SMFICTX *ctx, char **argv)
{
    (void)argv;
    (void)smfi_getsymval(ctx, MSTR("{rcpt_addr}"));
    return SMFIS_CONTINUE;
}

static sfsistat
null_data(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat
null_header(SMFICTX *ctx, char *name, char *value)
{
    struct null_ctx *nc = NCTX(ctx);

    if (nc != NULL)
        nc->bytes += strlen(name) + strlen(value);
    return null_step(SMFIP_NR_HDR);
}

static sfsistat
null_eoh(SMFICTX *ctx)
{
    (void)smfi_getsymval(ctx, MSTR("i"));
    return null_step(SMFIP_NR_EOH);
}

static sfsistat
null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct null_ctx *nc = NCTX(ctx);

    (void)chunk;
    if (nc != NULL)
        nc->bytes += len;
    return null_step(SMFIP_NR_BODY);
}

static sfsistat
null_eom(SMFICTX *ctx)
{
    struct null_ctx *nc = NCTX(ctx);

    if (nc != NULL)
        nc->msgs++;
    return SMFIS_CONTINUE;
}

static sfsistat
null_abort(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

static sfsistat
null_close(SMFICTX *ctx)
{
    free(NCTX(ctx));
    (void)smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static sfsistat
null_unknown(SMFICTX *ctx, const char *cmd)
{
    (void)ctx;
    (void)cmd;
    return SMFIS_CONTINUE;
}

static struct smfiDesc null_desc = {
    .xxfi_name = MSTR("nullmilter"),
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
    .xxfi_connect = null_connect,
    .xxfi_helo = null_helo,
    .xxfi_envfrom = null_envfrom,
    .xxfi_envrcpt = null_envrcpt,
    .xxfi_header = null_header,
    .xxfi_eoh = null_eoh,
    .xxfi_body = null_body,
    .xxfi_eom = null_eom,
    .xxfi_abort = null_abort,
    .xxfi_close = null_close,
    .xxfi_unknown = null_unknown,
    .xxfi_data = null_data,
    .xxfi_negotiate = null_negotiate,
};

int
main(int argc, char **argv)
{
    char *sock;

    if (argc == 3 && strcmp(argv[1], "-q") == 0) {
        null_noreply = NULL_NR;
        argv++;
        argc--;
    }
    if (argc != 2) {
        fputs("usage: nullmilter [-q] unix:/path | inet:PORT@HOST\n", stderr);
        return 64; /* EX_USAGE */
    }
    sock = argv[1];
    if (strncmp(sock, "unix:", 5) == 0)
        (void)unlink(sock + 5);
    if (smfi_setconn(sock) != MI_SUCCESS || smfi_register(null_desc) != MI_SUCCESS
        || smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "nullmilter: cannot listen on %s\n", sock);
        return 71; /* EX_OSERR */
    }
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}
