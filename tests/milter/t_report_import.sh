#!/bin/bash
# unimilter report-import / report-summary from the command line: the database named by
# reports.history_file (or --db), an .eml on stdin, a directory of samples (the malformed
# OpenDMARC one refused with its error, exit 1, the others stored), re-import skipped,
# hostile XML refused, summary output and its "new" column across runs.
set -euo pipefail
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
CONF_DIR=$UM_SRC/../shared/conformance
if [ ! -d "$CONF_DIR/dmarc-opendmarc" ]; then
    [ "${CI:-}" = "true" ] && { echo "FAIL: no $CONF_DIR" >&2; exit 1; }
    echo "SKIP: no $CONF_DIR" >&2
    exit 77
fi
T=$(mktemp -d /tmp/um-import.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'socket = "unix:%s/um.sock";\nreports = { history_file = "%s/h.db"; };\n' "$T" "$T" >"$T/um.conf"

# A report by mail on stdin: base64 gzip attachment.
{
    printf 'From: noreply@test.example\nTo: dmarc@example.com\nSubject: Report Domain: example.com\n'
    printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n\n--XX\n'
    printf 'Content-Type: text/plain\n\nreport attached\n--XX\n'
    printf 'Content-Type: application/gzip; name="r.xml.gz"\nContent-Transfer-Encoding: base64\n\n'
    base64 -w 76 "$CONF_DIR/dmarc-mail-dmarc/fixtures/test_dmarc.xml.gz"
    printf -- '--XX--\n'
} >"$T/r.eml"
out=$("$UM_BIN" report-import -c "$T/um.conf" --now 1700000000 <"$T/r.eml") || fail "stdin eml: $out"
[ "$out" = "imported stdin: org=Test Sender report_id=1234567890 domain=example.com records=1 messages=1
imported=1 skipped=0 failed=0" ] || fail "stdin eml output: $out"

# A directory: three good OpenDMARC samples, the malformed one refused (exit 1).
mkdir "$T/in"
cp "$CONF_DIR"/dmarc-opendmarc/testfiles/*.xml "$CONF_DIR"/dmarc-mail-dmarc/fixtures/test_dmarc.xml.zip "$T/in/"
rc=0
"$UM_BIN" report-import --db "$T/h.db" "$T/in" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "directory import exited $rc, want 1"
grep -qx "imported $T/in/163.com!example.com!1337270400!1337356799.20120518163.xml: org=163.com report_id=aggr_report_example.com_20120518_163.com domain=example.com records=50 messages=92" "$T/out" || fail "163.com: $(cat "$T/out")"
grep -q "records=754 messages=183934" "$T/out" || fail "good.com: $(cat "$T/out")"
grep -q "records=254 messages=21679" "$T/out" || fail "yeah.net: $(cat "$T/out")"
grep -qx "skipped $T/in/test_dmarc.xml.zip: already imported (org=Test Sender report_id=1234567890)" "$T/out" || fail "zip dup: $(cat "$T/out")"
tail -n1 "$T/out" | grep -qx "imported=3 skipped=1 failed=1" || fail "totals: $(tail -n1 "$T/out")"
[ "$(cat "$T/err")" = "unimilter: report-import: $T/in/bad.com!example.com!1337140800!1337227200.xml: malformed XML at line 6: error parsing attribute name" ] || fail "bad.com error: $(cat "$T/err")"

# Again: every one a duplicate, nothing added.
before=$(sqlite3 "$T/h.db" "SELECT count(*) FROM received_rows")
[ "$before" = 1059 ] || fail "rows stored: $before, want 1059"
rm "$T/in/bad.com"*
"$UM_BIN" report-import --db "$T/h.db" "$T/in" | tail -n1 | grep -qx "imported=0 skipped=4 failed=0" || fail "re-import not a no-op"
[ "$(sqlite3 "$T/h.db" "SELECT count(*) FROM received_rows")" = 1059 ] || fail "re-import added rows"

# Hostile: an external entity is refused and nothing is stored.
printf '<?xml version="1.0"?>\n<!DOCTYPE feedback [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<feedback>&x;</feedback>\n' >"$T/xxe.xml"
rc=0; err=$("$UM_BIN" report-import --db "$T/h.db" "$T/xxe.xml" 2>&1 >/dev/null) || rc=$?
[ "$rc" = 1 ] && [ "$err" = "unimilter: report-import: $T/xxe.xml: refused: the XML has a DOCTYPE (DTDs and entity declarations are not allowed in a report)" ] || fail "xxe: rc=$rc $err"

# Summary: the first run shows every source as new, the second none.
"$UM_BIN" report-summary -c "$T/um.conf" --domain em.example.com >"$T/s1"
[ "$(cat "$T/s1")" = "domain em.example.com: 1 report(s), 2012-05-17 to 2012-05-18, 2 message(s), 1 source(s), 1 new
             pass      fail
  spf           2         0
  dkim          2         0
  dmarc         2         0
  source                                   messages  spf-pass dkim-pass dmarc-pass  new
  199.7.202.29                                    2         2         2          2  new" ] || fail "summary: $(cat "$T/s1")"
"$UM_BIN" report-summary --db "$T/h.db" >"$T/s2"
head -n1 "$T/s2" | grep -qx "domain em.example.com: 1 report(s), 2012-05-17 to 2012-05-18, 2 message(s), 1 source(s), 0 new" || fail "second summary: $(head -n1 "$T/s2")"
grep -q "^domain example.com: 4 report(s), 2012-05-17 to 2021-01-02, 79230 message(s), 803 source(s), 803 new$" "$T/s2" || fail "example.com: $(grep '^domain' "$T/s2")"
"$UM_BIN" report-summary --db "$T/h.db" --domain example.com | head -n1 | grep -q ", 0 new$" || fail "third summary still has new sources"
rc=0; "$UM_BIN" report-summary --db "$T/h.db" --since 2012-13-01 2>/dev/null || rc=$?
[ "$rc" = 64 ] || fail "bad --since exited $rc, want 64"
echo "ok"
