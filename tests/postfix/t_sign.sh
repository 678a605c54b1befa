#!/usr/bin/env bash
# Real Postfix: DKIM signing end to end through the submission port (issue 4).
# unimilter (example mode rules: submission has -o milter_macro_daemon_name=ORIGINATING ->
# outbound) signs From example.org with an RSA-2048 and an Ed25519 key (RFC 8463 dual
# signing; rule from = "example.org"). Keys are made here with openssl (0600, owned by the
# user the daemon drops to); a private unbound on a free port serves the public keys (as
# tests/dkim/t_verifiers.sh does) to dkimpy, Mail::DKIM and the daemon itself.
# Sent with swaks to the submission port: plain, 8-bit UTF-8 body, long (990-octet) lines,
# a ~200 KB base64 attachment, a bare-LF message (raw, --no-data-fixup), each From
# example.org, and one From other.test (no rule). Asserted on each message AS DELIVERED
# (smtp-sink capture minus smtp-sink's own X-* and Received lines):
#   - example.org: exactly two DKIM-Signature headers, a=rsa-sha256 and a=ed25519-sha256,
#     both d=example.org; both verify with python3-dkim; the RSA one verifies with Mail::DKIM
#     too (and the Ed25519 one when Mail::DKIM is new enough to know ed25519-sha256);
#   - other.test: no DKIM-Signature; otherwise byte-identical to what was sent, except
#     Postfix's own Received header;
#   - a message to the smtp (inbound) port is not signed;
#   - a mailing-list style change (subject tag + footer) of a delivered message fails every
#     verifier for both signatures.
# The daemon logs one verdict with dkim.sigs=2 per signed message; SIGTERM exits 0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
DKIMDIR=$UM_SRC/tests/dkim
PY=${UM_PYTHON:-/usr/bin/python3} # Debian's python3, where python3-dkim lives

pf_require
skip() {
    if [[ "${CI:-}" == "true" ]]; then echo "FAIL (CI=true): $*" >&2; exit 1; fi
    echo "SKIP: $*" >&2
    exit 77
}
for t in openssl unbound unbound-checkconf perl "$PY"; do
    command -v "$t" >/dev/null 2>&1 || skip "$t not installed (apt-get install openssl unbound perl python3)"
done
"$PY" -c 'import dkim, dns.resolver' 2>/dev/null || skip "python3-dkim / python3-dnspython missing"
perl -MMail::DKIM::Verifier -MNet::DNS::Resolver -e1 2>/dev/null || skip "libmail-dkim-perl / libnet-dns-perl missing"

UM_PID=
UM_LOG=
UNBOUND_PID=
DNS_PORT=
T0=$SECONDS
cleanup() {
    local rc=$?
    pf_kill_job "$UM_PID"
    pf_kill_job "$UNBOUND_PID" TERM
    [[ -n "$DNS_PORT" ]] && rmdir "${TMPDIR:-/tmp}/unimilter-pf-ports/$DNS_PORT" 2>/dev/null
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-sign.XXXXXX)"
W=$PF_DIR/work
mkdir -p "$W"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        for f in "$W"/*.verify; do
            [[ -f "$f" ]] && { echo "----- $f"; cat "$f"; }
        done
        if [[ -f "$PF_SWAKS_OUT" ]]; then
            echo "----- last swaks transcript (last 30 lines)"
            tail -n 30 "$PF_SWAKS_OUT"
        fi
    } >&2
    pf_diag
    exit 1
}
ok() { printf 'ok: %s\n' "$*"; }

# ---- keys (the daemon drops to nobody: keys owned by nobody, 0600)
(
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/rsa.pem" 2>/dev/null
    openssl genpkey -algorithm ED25519 -out "$W/ed.pem" 2>/dev/null
) || fail "openssl genpkey failed"
chmod 0600 "$W/rsa.pem" "$W/ed.pem"
chown nobody "$W/rsa.pem" "$W/ed.pem"
# RSA: p= is the DER SubjectPublicKeyInfo; Ed25519 (RFC 8463): p= is the raw 32-byte key.
rsa_p=$(openssl pkey -in "$W/rsa.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
ed_p=$(openssl pkey -in "$W/ed.pem" -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)
[[ ${#rsa_p} -gt 300 && ${#ed_p} == 44 ]] || fail "could not derive the public keys"

# ---- DNS: unbound on a free port, static zones for the test domains
DNS_PORT=$(_pf_pick_ports 1) || fail "no free port for unbound"
txt_split() { # a TXT value as quoted strings of at most 255 octets
    local s=$1 out=""
    while [[ -n "$s" ]]; do
        out+=" \"${s:0:250}\""
        s=${s:250}
    done
    printf '%s' "$out"
}
cat >"$W/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: $DNS_PORT
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$W"
    pidfile: ""
    use-syslog: no
    logfile: "$W/unbound.log"
    verbosity: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "example.org." static
    local-zone: "other.test." static
    local-zone: "example.com." static
    local-zone: "unimilter.test." static
    local-data: 'rsa1._domainkey.example.org. 300 IN TXT $(txt_split "v=DKIM1; k=rsa; p=$rsa_p")'
    local-data: 'ed1._domainkey.example.org. 300 IN TXT "v=DKIM1; k=ed25519; p=$ed_p"'
remote-control:
    control-enable: no
EOF
unbound-checkconf "$W/unbound.conf" >/dev/null 2>&1 || fail "unbound config: $(unbound-checkconf "$W/unbound.conf" 2>&1)"
unbound -d -c "$W/unbound.conf" >/dev/null 2>&1 &
UNBOUND_PID=$!
for ((i = 0; ; i++)); do
    "$PY" - "$DNS_PORT" <<'EOF' 2>/dev/null && break
import sys, dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = ["127.0.0.1"]; r.port = int(sys.argv[1])
r.resolve("rsa1._domainkey.example.org", "TXT")
EOF
    ((i < 50)) || fail "unbound did not answer on port $DNS_PORT: $(cat "$W/unbound.log" 2>/dev/null)"
    sleep 0.2
done

# ---- the daemon
chown nobody "$PF_RUN_DIR"
SOCK=$PF_RUN_DIR/unimilter.sock
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$UM_SRC/conf/unimilter.conf")
grep -q 'daemon_name = "ORIGINATING"; mode = "outbound"' <<<"$example_mode" ||
    fail "cannot find the ORIGINATING rule in conf/unimilter.conf"
cat >"$PF_DIR/um.conf" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
control_socket = "";
log = { target = "stderr"; level = "info"; };
dns = { servers = ["127.0.0.1@$DNS_PORT"]; timeout = 2; };
$example_mode
ratelimit = { enabled = false; state_file = ""; };
reports = { history_file = ""; };
dkim_sign = {
    keys = (
        { name = "r"; domain = "example.org"; selector = "rsa1"; file = "$W/rsa.pem"; },
        { name = "e"; domain = "example.org"; selector = "ed1"; file = "$W/ed.pem"; }
    );
    rules = ( { from = "example.org"; keys = ["r", "e"]; } );
};
CONF
"$UM_BIN" -n -c "$PF_DIR/um.conf" >/dev/null 2>&1 || fail "config rejected: $("$UM_BIN" -n -c "$PF_DIR/um.conf" 2>&1)"
UM_LOG=$PF_DIR/um.log
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$PF_DIR/um.conf" >>"$UM_LOG" 2>&1 &
UM_PID=$!
for ((i = 0; ; i++)); do
    [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG" && break
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    ((i < 200)) || fail "unimilter did not listen on $SOCK"
    sleep 0.05
done

pf_set_milters "unix:$SOCK" "unix:$SOCK"
pf_postconf milter_command_timeout=10s
pf_start

# ---- messages (LF line ends in the files; swaks sends CRLF unless --no-data-fixup)
hdr() { # FROM-ADDR SUBJECT [extra header lines]
    printf 'From: Alice <%s>\nTo: Bob <bob@example.com>\nSubject: %s\nDate: %s\nMessage-ID: <%s.%s@example.org>\n%s' \
        "$1" "$2" "$(date -R)" "$2" "$$" "${3:-}"
}
{ hdr alice@example.org plain; printf '\nHello Bob,\n\nthis is a plain message.\n\n-- \nAlice\n'; } >"$W/plain.eml"
{
    hdr alice@example.org 8bit 'MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n'
    printf '\nGrüße aus Köln – naïve café, 日本語のテキスト, ελληνικά.\n\nÅ\n'
} >"$W/8bit.eml"
{
    hdr alice@example.org longlines
    "$PY" -c 'print("\n" + "\n".join(("L%d " % i) + "x" * 985 + " end" for i in range(20)))'
} >"$W/longlines.eml"
{
    hdr alice@example.org attachment 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0undary"\n'
    printf '\n--b0undary\nContent-Type: text/plain\n\nsee attachment\n--b0undary\n'
    printf 'Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n'
    printf 'Content-Disposition: attachment; filename="blob.bin"\n\n'
    head -c 150000 /dev/urandom | base64 -w 76
    printf -- '--b0undary--\n'
} >"$W/attachment.eml"
{ hdr alice@example.org barelf; printf '\nbare LF line one\nline two\n\n.dot-started line\nend\n'; } >"$W/barelf.eml"
{ hdr carol@other.test otherdomain; printf '\nno rule for other.test\n  indented  line  \n\n'; } >"$W/otherdomain.eml"
{ hdr alice@example.org inbound; printf '\nsent to the smtp (inbound) port\n'; } >"$W/inbound.eml"
# Bare LF, raw (--no-data-fixup): dot-stuffed by hand; the terminating "." has no newline
# because swaks appends one CRLF. Postfix 3.7 (smtpd_forbid_bare_newline = no) accepts bare LF.
sed 's/^\./../' "$W/barelf.eml" >"$W/barelf.raw"
printf '.' >>"$W/barelf.raw" # swaks appends CRLF: "end\n.\r\n"

send() { # PORT-FN NAME ENVFROM [swaks args]
    local fn=$1 name=$2 from=$3 rc=0
    shift 3
    "$fn" --from "$from" --to bob@example.com --data "@$W/$name.${EXT:-eml}" "$@" >/dev/null || rc=$?
    ((rc == 0)) || fail "$name: swaks exited $rc"
    cp "$PF_SWAKS_OUT" "$W/$name.swaks"
    grep -qE '^<-  250 .*queued as' "$W/$name.swaks" || fail "$name: not queued by Postfix"
    grep -qE '^<\*\* ' "$W/$name.swaks" && fail "$name: an error reply in the SMTP session"
    return 0
}
SIGNED="plain 8bit longlines attachment barelf"
n=0
for m in plain 8bit longlines attachment; do
    send pf_send_submission "$m" alice@example.org
    n=$((n + 1))
done
EXT=raw send pf_send_submission barelf alice@example.org --no-data-fixup
grep -q '^ -> bare LF line one$' "$W/barelf.swaks" || fail "barelf: swaks did not send bare LF lines"
send pf_send_submission otherdomain carol@other.test
send pf_send_smtp inbound alice@example.org
NSENT=$((n + 3))
pf_wait_delivered "$NSENT" 60 || fail "not all $NSENT messages delivered"

# delivered NAME: the captured message minus smtp-sink's own leading lines, CRLF line ends.
delivered() {
    local name=$1 f
    local captured=()
    mapfile -t captured < <(pf_sink_files)
    f=$(grep -l "^Subject: $name\$" "${captured[@]}" 2>/dev/null || true)
    [[ $(grep -c . <<<"$f") == 1 && -n "$f" ]] || fail "$name: want exactly one captured file, got: $f"
    # X-Client-Addr .. X-Rcpt-Args, then "Received: ... (smtp-sink)" and its continuation lines.
    awk 'BEGIN { st = 0 }
         st == 0 && /^X-[A-Za-z-]+: / { next }
         st == 0 && /^Received: / { st = 1; next }
         st == 1 && /^[ \t]/ { next }
         { st = 2; print }' "$f" | sed 's/\r$//; s/$/\r/' >"$W/$name.delivered"
}

for m in $SIGNED otherdomain inbound; do delivered "$m"; done

# ---- example.org via submission: two signatures, both verify
MAILDKIM_ED=yes
perl -MMail::DKIM::Algorithm::ed25519_sha256 -e1 2>/dev/null || MAILDKIM_ED=no
files=()
for m in $SIGNED; do
    f=$W/$m.delivered
    sigs=$(awk '/^\r?$/ { exit } { print }' "$f" | tr -d '\r' |
        awk '/^[^ \t]/ { if (h != "") print h; h = $0; next } { h = h $0 } END { print h }' |
        grep -i '^DKIM-Signature:' || true)
    [[ $(grep -c . <<<"$sigs") == 2 ]] || fail "$m: $(grep -c . <<<"$sigs") DKIM-Signature headers, want 2: $sigs"
    grep -qE '(^|[; \t])a=rsa-sha256;' <<<"$sigs" || fail "$m: no a=rsa-sha256 signature: $sigs"
    grep -qE '(^|[; \t])a=ed25519-sha256;' <<<"$sigs" || fail "$m: no a=ed25519-sha256 signature: $sigs"
    [[ $(grep -cE '(^|[; \t])d=example\.org;' <<<"$sigs") == 2 ]] || fail "$m: not both d=example.org: $sigs"
    files+=("$f")
done
"$PY" "$DKIMDIR/verify_dkimpy.py" 127.0.0.1 "$DNS_PORT" "${files[@]}" >"$W/dkimpy.verify" 2>&1 || true
perl "$DKIMDIR/verify_maildkim.pl" 127.0.0.1 "$DNS_PORT" "${files[@]}" >"$W/maildkim.verify" 2>&1 || true
for m in $SIGNED; do
    f=$W/$m.delivered
    for alg in rsa-sha256 ed25519-sha256; do
        grep -qE "^$f [0-9]+ $alg pass" "$W/dkimpy.verify" || fail "$m: dkimpy: $alg does not verify"
    done
    grep -qE "^$f [0-9]+ rsa-sha256 pass" "$W/maildkim.verify" || fail "$m: Mail::DKIM: rsa-sha256 does not verify"
    if [[ $MAILDKIM_ED == yes ]]; then
        grep -qE "^$f [0-9]+ ed25519-sha256 pass" "$W/maildkim.verify" || fail "$m: Mail::DKIM: ed25519-sha256 does not verify"
    fi
    ok "$m: delivered with rsa-sha256 + ed25519-sha256 (d=example.org), dkimpy: 2/2 pass, Mail::DKIM: rsa pass"
done
[[ $MAILDKIM_ED == yes ]] ||
    echo "note: Mail::DKIM $(perl -MMail::DKIM -e 'print $Mail::DKIM::VERSION') has no ed25519-sha256; only dkimpy verified Ed25519"
n=$(grep -cE 'event=verdict .*mode=outbound .*dkim\.d=example\.org dkim\.sigs=2' "$UM_LOG" || true)
((n == 5)) || fail "$n verdict lines with dkim.sigs=2, want 5"

# ---- other.test: not signed, otherwise unchanged (only Postfix's Received header added)
f=$W/otherdomain.delivered
grep -qi '^DKIM-Signature:' "$f" && fail "otherdomain: signed: $(grep -i '^DKIM-Signature:' "$f")"
awk 'BEGIN { st = 0 }
     st == 0 && /^Received: / { st = 1; next }
     st == 1 && /^[ \t]/ { next }
     { st = 2; print }' "$f" >"$W/otherdomain.cmp"
# What swaks sent after "354" up to the terminating dot (swaks appends an empty line).
awk '/^<-  354 / { on = 1; next } on && /^ -> \.$/ { exit } on && /^ -> / { print substr($0, 5) }' \
    "$W/otherdomain.swaks" | sed "s/\r\$//; s/\$/\r/" >"$W/otherdomain.sent"
[[ -s "$W/otherdomain.sent" ]] || fail "otherdomain: no DATA in the swaks transcript"
# smtp-sink ends each capture file with one extra newline: compare without trailing empty lines.
for x in cmp sent; do
    "$PY" -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[1], "wb").write(d.rstrip(b"\r\n") + b"\r\n")' \
        "$W/otherdomain.$x"
done
cmp -s "$W/otherdomain.cmp" "$W/otherdomain.sent" ||
    fail "otherdomain: delivered message differs from what was sent: $(diff "$W/otherdomain.sent" "$W/otherdomain.cmp" | cat -A | head -20)"
grep -qE 'event=verdict .*dkim\.sign="?no rule for the From domain' "$UM_LOG" ||
    fail "no verdict line saying why other.test was not signed"
ok "otherdomain: From other.test delivered unsigned and byte-identical except Postfix's Received header"

# ---- smtp port: inbound, not signed
grep -qi '^DKIM-Signature:' "$W/inbound.delivered" && fail "inbound: a message to the smtp port was signed"
grep -qE 'event=verdict .*mode=inbound' "$UM_LOG" || fail "no inbound verdict for the smtp-port message"
ok "inbound: From example.org to the smtp port delivered unsigned"

# ---- mailing-list style change: subject tag + footer breaks both signatures
for m in plain attachment; do
    sed 's/^Subject: /Subject: [list] /' "$W/$m.delivered" >"$W/ml-$m.eml"
    printf -- '-- \r\nlist footer: unsubscribe at https://lists.example.org/\r\n' >>"$W/ml-$m.eml"
done
"$PY" "$DKIMDIR/verify_dkimpy.py" 127.0.0.1 "$DNS_PORT" "$W"/ml-*.eml >"$W/ml-dkimpy.verify" 2>&1 || true
perl "$DKIMDIR/verify_maildkim.pl" 127.0.0.1 "$DNS_PORT" "$W"/ml-*.eml >"$W/ml-maildkim.verify" 2>&1 || true
seen=$(cat "$W/ml-dkimpy.verify" "$W/ml-maildkim.verify" | grep -cE ' (rsa|ed25519)-sha256 ' || true)
passed=$(cat "$W/ml-dkimpy.verify" "$W/ml-maildkim.verify" | grep -cE ' (rsa|ed25519)-sha256 pass' || true)
((seen == 8 && passed == 0)) || fail "mailing-list modified: $passed of $seen verifications passed, want 0 of 8"
ok "mailing-list modified messages: 0 of $seen verifications pass (dkimpy + Mail::DKIM)"

kill -TERM "$UM_PID"
rc=0
wait "$UM_PID" || rc=$?
UM_PID=
((rc == 0)) || fail "unimilter exited $rc after SIGTERM, want 0"
grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" && fail "sanitizer report in the daemon log"
((NSENT == $(pf_sink_count))) || fail "$(pf_sink_count) messages in the sink, want $NSENT"
echo "PASS t_sign ($NSENT messages, $((SECONDS - T0)) s)"
