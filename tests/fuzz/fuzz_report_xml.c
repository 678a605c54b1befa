/*
 * fuzz_report_xml.c - hostile aggregate reports into um_report_import_parse() (and the same
 * bytes into um_report_import_decode(), which walks MIME, gzip and zip)
 *
 * Properties. parse: the status is a documented one and an error has a message; a report has
 * at most UM_REPORT_IMPORT_MAX_RECORDS rows, no more than the input could hold, begin <= end,
 * every string non-NULL, NUL-terminated within UM_REPORT_IMPORT_FIELD_MAX bytes and free of
 * control characters, every source_ip an IP address, at most UM_REPORT_IMPORT_MAX_AUTH auth
 * results per kind, and the message total equal to the sum of the counts. decode: the XML it
 * returns is NUL-terminated and at most UM_REPORT_IMPORT_MAX_XML bytes.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report_import.h"

#define FUZZ_CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_str(const char *s)
{
    size_t n;

    FUZZ_CHECK(s != NULL);
    n = strnlen(s, UM_REPORT_IMPORT_FIELD_MAX + 1);
    FUZZ_CHECK(n <= UM_REPORT_IMPORT_FIELD_MAX);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void
check_auth(const struct um_report_import_auth *a, size_t n)
{
    FUZZ_CHECK(n <= UM_REPORT_IMPORT_MAX_AUTH && (n == 0 || a != NULL));
    for (size_t i = 0; i < n; i++) {
        check_str(a[i].domain);
        check_str(a[i].selector);
        check_str(a[i].scope);
        check_str(a[i].result);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct um_report_import_report *rep = NULL;
    struct um_error err = {0};
    unsigned char *xml = NULL;
    size_t xmllen = 0;
    enum um_status st;

    st = um_report_import_decode("fuzz", data, size, &xml, &xmllen, &err);
    if (st == UM_OK) {
        FUZZ_CHECK(xml != NULL && xmllen <= UM_REPORT_IMPORT_MAX_XML && xml[xmllen] == '\0');
        free(xml);
    } else {
        FUZZ_CHECK(xml == NULL && err.msg[0] != '\0'
                   && strnlen(err.msg, sizeof(err.msg)) < sizeof(err.msg));
        FUZZ_CHECK(st == UM_EINVAL || st == UM_ELIMIT || st == UM_ENOMEM);
    }

    memset(&err, 0, sizeof(err));
    st = um_report_import_parse("fuzz", (struct um_str){(const char *)data, size}, &rep, &err);
    if (st != UM_OK) {
        FUZZ_CHECK(rep == NULL && err.msg[0] != '\0');
        FUZZ_CHECK(st == UM_EINVAL || st == UM_ELIMIT || st == UM_ENOMEM);
        return 0;
    }
    {
        uint64_t sum = 0;

        FUZZ_CHECK(rep != NULL);
        FUZZ_CHECK(rep->nrows <= UM_REPORT_IMPORT_MAX_RECORDS && rep->nrows * 9 <= size);
        FUZZ_CHECK(rep->begin <= rep->end && rep->pct <= 100 && rep->pct >= -1);
        FUZZ_CHECK(rep->format == UM_REPORT_IMPORT_RFC7489
                   || rep->format == UM_REPORT_IMPORT_RFC9990);
        check_str(rep->org_name);
        check_str(rep->email);
        check_str(rep->report_id);
        check_str(rep->domain);
        FUZZ_CHECK(rep->org_name[0] != '\0' && rep->report_id[0] != '\0' && rep->domain[0] != '\0');
        check_str(rep->adkim);
        check_str(rep->aspf);
        check_str(rep->p);
        check_str(rep->sp);
        check_str(rep->np);
        for (size_t i = 0; i < rep->nrows; i++) {
            const struct um_report_import_row *w = &rep->rows[i];
            unsigned char a[16];

            check_str(w->source_ip);
            FUZZ_CHECK(inet_pton(AF_INET, w->source_ip, a) == 1
                       || inet_pton(AF_INET6, w->source_ip, a) == 1);
            check_str(w->disposition);
            check_str(w->dkim_eval);
            check_str(w->spf_eval);
            check_str(w->header_from);
            FUZZ_CHECK(w->header_from[0] != '\0');
            check_str(w->envelope_from);
            check_str(w->envelope_to);
            check_auth(w->dkim, w->ndkim);
            check_auth(w->spf, w->nspf);
            FUZZ_CHECK(w->count <= (uint64_t)1 << 53);
            sum += w->count;
        }
        FUZZ_CHECK(sum == rep->messages);
    }
    um_report_import_report_free(rep);
    return 0;
}
