/*
 * version.c - library version report for `unimilter -V`
 *
 * Design note: this is the one place that includes every third-party header for its
 * version macros only; no other library call is made here except the version queries.
 */
#define _DEFAULT_SOURCE /* u_char and friends in dkim.h and spf.h */
#include "version.h"

#include <libconfig.h>
#include <opendkim/dkim.h>
#include <openssl/crypto.h>
#include <netinet/in.h> /* spf.h needs struct in_addr */
#include <spf2/spf.h>
#include <unbound.h>

void
um_version_print(FILE *fp)
{
    unsigned long dk = dkim_libversion();

    fprintf(fp, "unimilter %s\n", UM_VERSION);
    fprintf(fp, "libconfig %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR,
            LIBCONFIG_VER_REVISION);
    fprintf(fp, "libopendkim %lu.%lu.%lu\n", (dk >> 24) & 0xff, (dk >> 16) & 0xff,
            (dk >> 8) & 0xff);
    fprintf(fp, "libspf2 %d.%d.%d (build headers)\n", SPF_LIB_VERSION_MAJOR, SPF_LIB_VERSION_MINOR,
            SPF_LIB_VERSION_PATCH);
    fprintf(fp, "libopendmarc 1.4 (no version call; Debian 12 ships 1.4.2)\n");
    fprintf(fp, "libunbound %s\n", ub_version());
    fprintf(fp, "openssl %s\n", OpenSSL_version(OPENSSL_VERSION));
}
