#!/usr/bin/env bash
# Real Postfix + real DNS: the inbound checks (SPF, DKIM verify, DMARC, Authentication-Results,
# forged A-R removal, DMARC enforcement) end to end, with the example config's mode rules
# (the smtp port is inbound).
#
# DNS: a throwaway unbound on 127.0.0.1:<free port> serves the zones in
# inbound/unbound.conf.in (everything under example., with SPF, DMARC and DKIM key records; the
# keys, RSA-2048 and Ed25519, are made here with openssl). The daemon gets
# dns = { servers = ["127.0.0.1@PORT"]; }. Messages are built and DKIM-signed by
# inbound/dkimtool.py (python3-dkim, an independent signer) and checked to verify against
# that DNS before they are sent. The domains are under example. (RFC 2606), not test.:
# libunbound, which the daemon resolves with, answers test. itself (a built-in RFC 6761 local
# zone, NXDOMAIN) and never asks the configured server.
#
# Client address: the messages come from 127.0.0.1, which the daemon treats as local, so
# Postfix is told the real client with XCLIENT (smtpd_authorized_xclient_hosts =
# 127.0.0.0/8, swaks --xclient-addr); Postfix hands the XCLIENT address to the milter, as the
# daemon's debug "event=connect ip=..." lines show (asserted).
#
# Cases (each with its own envelope sender, so its verdict line can be found):
#   1  legit-dual      SPF pass, DKIM rsa-sha256 + ed25519-sha256 by the From domain,
#                      p=reject -> delivered, one A-R (ours), spf/dkim x2/dmarc=pass
#   1b legit-dkim-only client outside SPF (spf=fail), DKIM ed25519 only -> dmarc=pass
#                      through DKIM alone, delivered
#   2  spoof-reject    p=reject, SPF fail, unsigned -> 550 5.7.1 after DATA naming the domain
#   3  spoof-quarantine p=quarantine, SPF softfail, unsigned -> hold queue, not delivered
#   4  forged-ar       legitimate, carrying two A-R headers claiming mx.unimilter.test and
#                      one from other.example -> exactly one of ours (fresh), other kept
#   4b forged-many     legitimate, 500 junk A-R headers claiming mx.unimilter.test, then (last)
#                      a forged "dkim=pass ... dmarc=pass header.from=bank.example" one -> all
#                      501 removed (no cap), exactly one A-R left: ours
#   5  servfail        SERVFAIL for _dmarc.<From domain> -> dmarc=temperror, delivered
#   6  strict          From sub.strict (adkim=s aspf=s p=reject), SPF + DKIM pass for the
#                      parent only -> not aligned -> 550
#   6b relaxed         the same with a relaxed policy -> aligned, delivered
#   7  two-from        two From header fields -> 550 (bad_from_action reject)
#   8  spoof-none      p=none, SPF softfail, unsigned -> delivered with dmarc=fail
#   9  after a reload with quarantine_action tag, temperror_action tempfail and
#      bad_from_action tempfail: p=quarantine -> delivered with X-Unimilter-Quarantine;
#      servfail and two From -> 451 4.7.1 after DATA
# For each: the daemon's verdict line (event=verdict ... spf= dkim= dmarc= action=).
# Header placement: Postfix shows the milter its own Received header first, and a header
# inserted at index 0 lands ABOVE it; the A-R must be at the top or right below Postfix's
# Received, the same for every message (the run says which: "placement: top").
# Needs (Debian): postfix swaks unbound openssl python3-dkim python3-dnspython python3-nacl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
IB=$here/inbound
PY=${UM_PYTHON:-/usr/bin/python3} # Debian's python3, where python3-dkim lives

pf_require

skip_or_fail() {
    if [[ "${CI:-}" == "true" ]]; then
        printf 'FAIL: t_inbound cannot run under CI=true: %s\n' "$*" >&2
        exit 1
    fi
    printf 'SKIP: t_inbound: %s\n' "$*" >&2
    exit 77
}
for t in unbound unbound-checkconf openssl "$PY"; do
    command -v "$t" >/dev/null 2>&1 ||
        skip_or_fail "$t missing (Debian: apt-get install unbound openssl python3-dkim python3-dnspython python3-nacl)"
done
"$PY" -c 'import dkim, dns.resolver, nacl' 2>/dev/null ||
    skip_or_fail "python3-dkim, python3-dnspython or python3-nacl missing"

UM_PID=
UM_LOG=
UNBOUND_PID=
DNS_PORT=
T0=$SECONDS
cleanup() {
    local rc=$?
    pf_kill_job "$UM_PID"
    pf_kill_job "$UNBOUND_PID" TERM
    if [[ -n "$DNS_PORT" ]]; then rmdir "${TMPDIR:-/tmp}/unimilter-pf-ports/$DNS_PORT" 2>/dev/null || true; fi
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-inbound.XXXXXX)"
W=$PF_DIR/ib
mkdir -p "$W"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        if [[ -f "$W/unbound.log" ]]; then
            echo "----- unbound log (last 15 lines)"
            tail -n 15 "$W/unbound.log"
        fi
        if [[ -f "$PF_SWAKS_OUT" ]]; then
            echo "----- last swaks transcript"
            cat "$PF_SWAKS_OUT"
        fi
    } >&2
    pf_diag
    exit 1
}

# ---- DNS: keys, zones, unbound
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/rsa.pem" 2>/dev/null ||
    fail "openssl: cannot make an RSA key"
openssl genpkey -algorithm ed25519 -out "$W/ed.pem" 2>/dev/null || fail "openssl: cannot make an Ed25519 key"
rsa_p=$("$PY" "$IB/dkimtool.py" pubkey rsa "$W/rsa.pem") || fail "pubkey rsa"
ed_p=$("$PY" "$IB/dkimtool.py" pubkey ed25519 "$W/ed.pem") || fail "pubkey ed25519"
# txt_strings TEXT: TEXT as quoted character-strings of at most 250 bytes each.
txt_strings() { fold -w 250 <<<"$1" | sed 's/.*/"&"/' | tr '\n' ' ' | sed 's/ $//'; }
rsa_txt=$(txt_strings "v=DKIM1; k=rsa; p=$rsa_p")
ed_txt=$(txt_strings "v=DKIM1; k=ed25519; p=$ed_p")

DNS_PORT=$(_pf_pick_ports 1) || fail "no free port for the DNS server"
"$PY" - "$DNS_PORT" <<'EOF' || fail "UDP port $DNS_PORT is taken"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
sed -e "s|@PORT@|$DNS_PORT|g" -e "s|@DIR@|$W|g" -e "s|@RSA_TXT@|$rsa_txt|g" \
    -e "s|@ED_TXT@|$ed_txt|g" "$IB/unbound.conf.in" >"$W/unbound.conf"
# (It warns that the stub's loopback address will never be queried: that is the point.)
unbound-checkconf "$W/unbound.conf" >"$W/checkconf.out" 2>&1 ||
    fail "unbound.conf: $(cat "$W/checkconf.out")"
unbound -d -c "$W/unbound.conf" >"$W/unbound.out" 2>&1 &
UNBOUND_PID=$!
for ((i = 0; i < 100; i++)); do
    grep -q "start of service" "$W/unbound.log" 2>/dev/null && break
    kill -0 "$UNBOUND_PID" 2>/dev/null ||
        fail "unbound exited: $(cat "$W/unbound.out" "$W/unbound.log" 2>/dev/null)"
    sleep 0.05
done
grep -q "start of service" "$W/unbound.log" || fail "unbound did not start"

# dns_expect NAME TYPE RCODE [TEXT]: the server answers as the zones say.
dns_expect() {
    local out
    out=$("$PY" "$IB/dkimtool.py" query "$DNS_PORT" "$1" "$2" 2>&1) || fail "DNS query $1 $2: $out"
    [[ "$(head -n1 <<<"$out")" == "$3" ]] || fail "DNS $1 $2: got '$out', want rcode $3"
    if [[ -n "${4:-}" ]]; then
        grep -qF -- "$4" <<<"$out" || fail "DNS $1 $2: got '$out', want '$4'"
    fi
}
dns_expect pass.unimilter.example TXT NOERROR "v=spf1 ip4:192.0.2.0/24 -all"
dns_expect _dmarc.strict.unimilter.example TXT NOERROR "adkim=s; aspf=s"
dns_expect r2048._domainkey.pass.unimilter.example TXT NOERROR "p=$rsa_p"
dns_expect ed1._domainkey.pass.unimilter.example TXT NOERROR "k=ed25519; p=$ed_p"
dns_expect _dmarc.servfail.unimilter.example TXT SERVFAIL
dns_expect _dmarc.sub.strict.unimilter.example TXT NXDOMAIN
dns_expect _dmarc.example TXT NXDOMAIN
echo "ok: unbound on 127.0.0.1:$DNS_PORT serves the test zones (SERVFAIL for _dmarc.servfail)"

# ---- messages (built and signed by python3-dkim; the signed ones must verify here first)
mk() { "$PY" "$IB/dkimtool.py" make "$@" || fail "dkimtool make $*"; }
sign() { "$PY" "$IB/dkimtool.py" sign "$@" || fail "dkimtool sign $*"; }
RSA_PASS=rsa:$W/rsa.pem:pass.unimilter.example:r2048
ED_PASS=ed25519:$W/ed.pem:pass.unimilter.example:ed1
M=$W/msg
mkdir -p "$M"
mk "$M/legit-dual.raw" --from "Alice <alice@pass.unimilter.example>" --subject legit-dual
sign "$M/legit-dual.raw" "$M/legit-dual.eml" --key "$RSA_PASS" --key "$ED_PASS"
mk "$M/legit-dkim-only.raw" --from "Alice <alice@pass.unimilter.example>" --subject legit-dkim-only
sign "$M/legit-dkim-only.raw" "$M/legit-dkim-only.eml" --key "$ED_PASS"
# An independent signer besides python3-dkim: Mail::DKIM (libmail-dkim-perl).
mk "$M/legit-maildkim.raw" --from "Alice <alice@pass.unimilter.example>" --subject legit-maildkim
perl "$IB/maildkim_sign.pl" "$W/rsa.pem" pass.unimilter.example r2048 "$M/legit-maildkim.raw" \
    "$M/legit-maildkim.eml" || fail "Mail::DKIM could not sign"
mk "$M/spoof-reject.eml" --from "CEO <ceo@reject.unimilter.example>" --subject spoof-reject
mk "$M/spoof-quarantine.eml" --from "CEO <ceo@quarantine.unimilter.example>" --subject spoof-quarantine
mk "$M/tag-quarantine.eml" --from "CEO <ceo@quarantine.unimilter.example>" --subject tag-quarantine
mk "$M/forged-ar.raw" --from "Alice <alice@pass.unimilter.example>" --subject forged-ar \
    --top "Authentication-Results: mx.unimilter.test; dkim=pass header.d=pass.unimilter.example header.s=forged1" \
    --top "Authentication-Results: other.example; spf=pass smtp.mailfrom=pass.unimilter.example" \
    --header "Authentication-Results: (upstream said so) MX.Unimilter.TEST; dkim=pass header.d=pass.unimilter.example header.s=forged2"
sign "$M/forged-ar.raw" "$M/forged-ar.eml" --key "$RSA_PASS"
junk=()
for ((i = 1; i <= 500; i++)); do
    junk+=(--top "Authentication-Results: mx.unimilter.test; none (junk-$i)")
done
mk "$M/forged-many.raw" --from "Alice <alice@pass.unimilter.example>" --subject forged-many \
    "${junk[@]}" \
    --header "Authentication-Results: mx.unimilter.test; dkim=pass header.d=bank.example header.s=forged-last; dmarc=pass header.from=bank.example"
sign "$M/forged-many.raw" "$M/forged-many.eml" --key "$RSA_PASS"
mk "$M/servfail.raw" --from "Alice <alice@servfail.unimilter.example>" --subject servfail
sign "$M/servfail.raw" "$M/servfail.eml" --key "rsa:$W/rsa.pem:servfail.unimilter.example:r2048"
mk "$M/strict.raw" --from "CEO <ceo@sub.strict.unimilter.example>" --subject strict
sign "$M/strict.raw" "$M/strict.eml" --key "rsa:$W/rsa.pem:strict.unimilter.example:r2048"
mk "$M/relaxed.raw" --from "CEO <ceo@sub.relaxed.unimilter.example>" --subject relaxed
sign "$M/relaxed.raw" "$M/relaxed.eml" --key "rsa:$W/rsa.pem:relaxed.unimilter.example:r2048"
mk "$M/two-from.eml" --from "Alice <alice@pass.unimilter.example>" --from "Mallory <m@reject.unimilter.example>" \
    --subject two-from
mk "$M/spoof-none.eml" --from "CEO <ceo@none.unimilter.example>" --subject spoof-none
for f in legit-dual:2 legit-dkim-only:1 forged-ar:1 forged-many:1 servfail:1 strict:1 relaxed:1; do
    out=$("$PY" "$IB/dkimtool.py" verify "$DNS_PORT" "$M/${f%:*}.eml" 2>&1) ||
        fail "${f%:*}: python3-dkim does not verify its own signature against our DNS: $out"
    [[ $(grep -c ' pass$' <<<"$out") == "${f#*:}" ]] || fail "${f%:*}: want ${f#*:} signature(s): $out"
done
echo "ok: the signed messages verify with python3-dkim against 127.0.0.1:$DNS_PORT"

# ---- the daemon: example mode rules, our DNS, inbound defaults spelled out
chown nobody "$PF_RUN_DIR"
SOCK=$PF_RUN_DIR/unimilter.sock
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$UM_SRC/conf/unimilter.conf")
grep -q 'daemon_name = "ORIGINATING"; mode = "outbound"' <<<"$example_mode" ||
    fail "cannot find the mode block in $UM_SRC/conf/unimilter.conf"
cat >"$W/um.conf" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
authserv_id = "mx.unimilter.test";
log = { target = "stderr"; level = "debug"; };
control_socket = "$PF_RUN_DIR/control.sock";
ratelimit = { state_file = "$PF_RUN_DIR/ratelimit.state"; };
reports = { history_file = "$PF_RUN_DIR/dmarc-history.sqlite"; };
dns = { servers = ["127.0.0.1@$DNS_PORT"]; timeout = 2; };
inbound = {
    spf = true;
    dmarc = true;
    enforce = true;
    reject_action = "reject";
    quarantine_action = "hold";
    bad_from_action = "reject";
    temperror_action = "accept";
};
$example_mode
CONF
UM_LOG=$W/um.log
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -n -c "$W/um.conf" >"$W/um-n.out" 2>&1 || fail "unimilter -n: $(cat "$W/um-n.out")"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$W/um.conf" >>"$UM_LOG" 2>&1 &
UM_PID=$!
for ((i = 0; i < 200; i++)); do
    if [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG"; then break; fi
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    sleep 0.05
done
[[ -S "$SOCK" ]] || fail "unimilter did not listen on $SOCK"

# ---- Postfix: the milter on smtpd; XCLIENT from loopback; the XCLIENT addresses may relay
pf_set_milters "unix:$SOCK" ""
pf_postconf milter_command_timeout=30s smtpd_authorized_xclient_hosts=127.0.0.0/8 \
    "mynetworks=127.0.0.0/8 192.0.2.0/24 203.0.113.0/24"
pf_start

GOOD_IP=192.0.2.10 # inside every domain's ip4:192.0.2.0/24
BAD_IP=203.0.113.7 # outside
RCPT=bob@example.com
# send CASE IP ENVFROM: the message $M/CASE.eml through the smtp port as client IP.
# Sets RC (swaks' exit code: 0 ok, 26 refused after DATA) and keeps the transcript.
send() {
    local name=$1 ip=$2 envfrom=$3
    RC=0
    pf_send_smtp --from "$envfrom" --to "$RCPT" --data "$M/$name.eml" \
        --helo mail.sender.test --xclient-addr "$ip" --xclient-helo mail.sender.test \
        >/dev/null || RC=$?
    cp "$PF_SWAKS_OUT" "$W/$name.swaks"
    grep -q '^ *-> XCLIENT .*ADDR='"$ip" "$W/$name.swaks" ||
        fail "$name: swaks sent no XCLIENT ADDR=$ip: $(cat "$W/$name.swaks")"
    grep -q '^ *<- *2[0-9][0-9] ' <(sed -n '/XCLIENT/,$p' "$W/$name.swaks") ||
        fail "$name: Postfix refused XCLIENT: $(cat "$W/$name.swaks")"
}

# verdict CASE ENVFROM: exactly one verdict line with this envelope sender -> $VERDICT.
verdict() {
    local name=$1 envfrom=$2 n i
    for ((i = 0; i < 50; i++)); do # the line is written when the milter answers end of data
        n=$(grep 'event=verdict' "$UM_LOG" | grep -cF "$envfrom" || true)
        ((n >= 1)) && break
        sleep 0.1
    done
    ((n == 1)) || fail "$name: $n verdict lines for $envfrom, want 1: $(grep -F "$envfrom" "$UM_LOG")"
    VERDICT=$(grep 'event=verdict' "$UM_LOG" | grep -F "$envfrom")
}
# field KEY: the value of KEY= in $VERDICT, without quotes ("" when absent).
field() {
    grep -oE "(^| )$1=(\"([^\"\\\\]|\\\\.)*\"|[^ ]*)" <<<"$VERDICT" | head -n1 |
        sed -e "s/^ *$1=//" -e 's/^"//' -e 's/"$//' || true
}
# expect CASE KEY=REGEX...: each field of the verdict line matches ^REGEX$.
expect() {
    local name=$1 kv k re v
    shift
    for kv in "$@"; do
        k=${kv%%=*} re=${kv#*=}
        v=$(field "$k")
        [[ "$v" =~ ^($re)$ ]] ||
            fail "$name: verdict $k='$v', want /$re/; line: $VERDICT"
    done
}

# has_subject NAME FILE: FILE's header has "Subject: NAME" (CRLF or LF).
has_subject() {
    awk -v s="Subject: $1" '/^\r?$/ { exit } { sub(/\r$/, "") } $0 == s { found = 1; exit }
        END { exit !found }' "$2"
}
# delivered CASE: the sink file with Subject CASE -> $FILE; its header fields, unfolded and
# without smtp-sink's own preamble, -> $W/CASE.hdrs (first line = first relayed header).
delivered() {
    local name=$1 f i
    FILE=
    for ((i = 0; i < 100 && ${#FILE} == 0; i++)); do
        for f in $(pf_sink_files); do
            if has_subject "$name" "$f"; then FILE=$f; break; fi
        done
        [[ -n "$FILE" ]] || { "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true; sleep 0.2; }
    done
    [[ -n "$FILE" ]] || fail "$name: not delivered"
    "$PY" "$IB/dkimtool.py" headers "$FILE" |
        awk 'skip == 0 && /^Received: .*\(smtp-sink\)/ { skip = 1; next } skip' >"$W/$name.hdrs"
    [[ -s "$W/$name.hdrs" ]] || fail "$name: cannot find the relayed headers in $FILE"
}
# ours CASE: our A-R header value(s) ("mx.unimilter.test; ...") in $W/CASE.hdrs -> $AR;
# exactly one must be there.
ours() {
    local name=$1 n
    n=$(grep -ciE '^Authentication-Results: (\([^)]*\) )?"?mx\.unimilter\.test"?( |;)' "$W/$name.hdrs" || true)
    ((n == 1)) || fail "$name: $n Authentication-Results headers claim mx.unimilter.test, want 1:
$(grep -i '^Authentication-Results:' "$W/$name.hdrs")"
    AR=$(grep -iE '^Authentication-Results: (\([^)]*\) )?"?mx\.unimilter\.test"?( |;)' "$W/$name.hdrs" |
        sed 's/^Authentication-Results: //')
    [[ "$AR" == "mx.unimilter.test;"* ]] || fail "$name: our A-R does not start with 'mx.unimilter.test;': $AR"
}
# ar_has CASE REGEX...: some method result ("; "-separated) of $AR matches each REGEX.
ar_has() {
    local name=$1 re
    shift
    for re in "$@"; do
        tr ';' '\n' <<<"${AR#*;}" | sed 's/^ *//' | grep -qE -- "$re" ||
            fail "$name: no result matching /$re/ in our A-R: $AR"
    done
}

# --- 1. legitimate, dual-signed
send legit-dual "$GOOD_IP" c1@pass.unimilter.example
((RC == 0)) || fail "legit-dual: swaks exited $RC"
grep -q "event=connect .*ip=\"\\?$GOOD_IP\"\\?" "$UM_LOG" ||
    fail "the milter did not see the XCLIENT address $GOOD_IP: $(grep 'event=connect' "$UM_LOG")"
verdict legit-dual c1@pass.unimilter.example
expect legit-dual mode=inbound ip="$GOOD_IP" spf=pass dkim='pass.*' dmarc=pass action=accept
delivered legit-dual
ours legit-dual
ar_has legit-dual '^spf=pass .*smtp\.mailfrom=(c1@)?pass\.unimilter\.example( |$)' \
    '^dkim=pass .*header\.d=pass\.unimilter\.example .*header\.s=r2048( |$)' \
    '^dkim=pass .*header\.s=r2048 .*header\.a=rsa-sha256( |$)|^dkim=pass .*header\.a=rsa-sha256 .*header\.s=r2048( |$)' \
    '^dkim=pass .*header\.d=pass\.unimilter\.example .*header\.s=ed1( |$)' \
    '^dkim=pass .*header\.s=ed1 .*header\.a=ed25519-sha256( |$)|^dkim=pass .*header\.a=ed25519-sha256 .*header\.s=ed1( |$)' \
    '^dmarc=pass .*header\.from=pass\.unimilter\.example( |$)'
# Where Postfix puts a header the milter inserts at index 0: record it, then hold it.
first=$(sed -n 1p "$W/legit-dual.hdrs")
second=$(sed -n 2p "$W/legit-dual.hdrs")
if [[ "$first" == "Authentication-Results: mx.unimilter.test;"* ]]; then
    PLACEMENT=top
elif [[ "$first" == "Received: from mail.sender.test"*"(Postfix)"* &&
    "$second" == "Authentication-Results: mx.unimilter.test;"* ]]; then
    PLACEMENT=after-received
else
    fail "legit-dual: our A-R is neither the first header nor right after Postfix's Received:
$(head -n 4 "$W/legit-dual.hdrs")"
fi
echo "ok: legit-dual: delivered, $AR (placement: $PLACEMENT)"
# check_placement CASE: the same placement for every delivered message.
check_placement() {
    local name=$1 line
    if [[ "$PLACEMENT" == top ]]; then line=$(sed -n 1p "$W/$name.hdrs"); else line=$(sed -n 2p "$W/$name.hdrs"); fi
    [[ "$line" == "Authentication-Results: mx.unimilter.test;"* ]] ||
        fail "$name: our A-R is not where it was for legit-dual ($PLACEMENT): $(head -n 4 "$W/$name.hdrs")"
}

# --- 1b. DKIM alone carries DMARC (client outside SPF)
send legit-dkim-only "$BAD_IP" c1b@pass.unimilter.example
((RC == 0)) || fail "legit-dkim-only: swaks exited $RC"
verdict legit-dkim-only c1b@pass.unimilter.example
expect legit-dkim-only ip="$BAD_IP" spf=fail dkim='pass.*' dmarc=pass action=accept
delivered legit-dkim-only
ours legit-dkim-only
check_placement legit-dkim-only
ar_has legit-dkim-only '^spf=fail .*smtp\.mailfrom=(c1b@)?pass\.unimilter\.example( |$)' \
    '^dkim=pass .*header\.d=pass\.unimilter\.example .*header\.s=ed1( |$)' \
    '^dkim=pass .*header\.a=ed25519-sha256( |$)|^dkim=pass .*header\.a=ed25519-sha256 ' \
    '^dmarc=pass .*header\.from=pass\.unimilter\.example( |$)'
echo "ok: legit-dkim-only: delivered, $AR"

# --- 1c. a Mail::DKIM signature verifies here and carries DMARC
send legit-maildkim "$BAD_IP" c1c@pass.unimilter.example
((RC == 0)) || fail "legit-maildkim: swaks exited $RC"
verdict legit-maildkim c1c@pass.unimilter.example
expect legit-maildkim ip="$BAD_IP" spf=fail dkim='pass.*' dmarc=pass action=accept
delivered legit-maildkim
ours legit-maildkim
ar_has legit-maildkim '^dkim=pass .*header\.d=pass\.unimilter\.example .*header\.s=r2048( |$)' \
    '^dmarc=pass .*header\.from=pass\.unimilter\.example( |$)'
echo "ok: legit-maildkim: Mail::DKIM's signature verified, $AR"

# --- 2. spoofed p=reject
send spoof-reject "$BAD_IP" c2@reject.unimilter.example
((RC == 26)) || fail "spoof-reject: swaks exited $RC, want 26 (refused after DATA)"
line=$(sed -n '/^ *-> \.$/,$p' "$W/spoof-reject.swaks" | grep -m1 -E '^ *<\*\* ' || true)
[[ "$line" =~ \<\*\*\ 550\ 5\.7\.1\  ]] || fail "spoof-reject: want 550 5.7.1 after DATA, got: $line"
grep -qi 'reject\.unimilter\.example' <<<"$line" || fail "spoof-reject: the reply does not name the domain: $line"
reply_want='550 5.7.1 DMARC policy of reject.unimilter.example rejects this message (not authenticated)'
[[ "${line#*<\*\* }" == "$reply_want" ]] || fail "spoof-reject: reply '${line#*<\*\* }', want '$reply_want'"
verdict spoof-reject c2@reject.unimilter.example
expect spoof-reject spf=fail dkim=none dmarc=fail action=reject why='dmarc p=reject'
echo "ok: spoof-reject: ${line#*<\*\* }"

# --- 3. spoofed p=quarantine
send spoof-quarantine "$BAD_IP" c3@quarantine.unimilter.example
((RC == 0)) || fail "spoof-quarantine: swaks exited $RC, want 0 (accepted into hold)"
verdict spoof-quarantine c3@quarantine.unimilter.example
expect spoof-quarantine spf=softfail dkim=none dmarc=fail action=hold why='dmarc p=quarantine'
pf_wait_held 1 20 || fail "spoof-quarantine: nothing in the hold queue"
held=$("$PF_POSTQUEUE" -c "$PF_CONF" -j)
grep -q '"queue_name": *"hold".*"sender": *"c3@quarantine\.unimilter\.example"' <<<"$held" ||
    fail "spoof-quarantine: not in the hold queue: $held"
echo "ok: spoof-quarantine: held ($(grep -o '"queue_id": *"[^"]*"' <<<"$held" | head -n1))"

# --- 4. forged Authentication-Results
send forged-ar "$GOOD_IP" c4@pass.unimilter.example
((RC == 0)) || fail "forged-ar: swaks exited $RC"
verdict forged-ar c4@pass.unimilter.example
expect forged-ar spf=pass dkim='pass.*' dmarc=pass ar.removed=2 action=accept
delivered forged-ar
ours forged-ar
check_placement forged-ar
! grep -qiE 'forged1|forged2' "$W/forged-ar.hdrs" ||
    fail "forged-ar: a forged A-R survived: $(grep -iE 'forged1|forged2' "$W/forged-ar.hdrs")"
n=$(grep -c '^Authentication-Results: other\.example; spf=pass smtp\.mailfrom=pass\.unimilter\.example$' \
    "$W/forged-ar.hdrs" || true)
((n == 1)) || fail "forged-ar: other.example's A-R: $n, want 1: $(grep -i '^Authentication-Results' "$W/forged-ar.hdrs")"
ar_has forged-ar '^spf=pass ' '^dkim=pass .*header\.s=r2048( |$)' '^dmarc=pass '
echo "ok: forged-ar: both forged mx.unimilter.test A-R gone, other.example kept, ours fresh"

# --- 4b. forged Authentication-Results far beyond any cap, the dangerous one last
send forged-many "$GOOD_IP" c4b@pass.unimilter.example
((RC == 0)) || fail "forged-many: swaks exited $RC"
verdict forged-many c4b@pass.unimilter.example
delivered forged-many
n=$(grep -ci '^Authentication-Results:' "$W/forged-many.hdrs" || true)
((n == 1)) || fail "forged-many: $n Authentication-Results headers delivered, want 1 (ours); forged ones left: $(grep -iE 'bank\.example|junk-' "$W/forged-many.hdrs" | tail -n 2)"
expect forged-many spf=pass dkim='pass.*' dmarc=pass ar.removed=501 action=accept
ours forged-many
check_placement forged-many
! grep -qiE 'bank\.example|forged-last|junk-' "$W/forged-many.hdrs" ||
    fail "forged-many: a forged A-R survived: $(grep -iE 'bank\.example|forged-last|junk-' "$W/forged-many.hdrs" | head -n 3)"
ar_has forged-many '^dkim=pass .*header\.d=pass\.unimilter\.example' '^dmarc=pass .*header\.from=pass\.unimilter\.example'
echo "ok: forged-many: all 501 forged mx.unimilter.test A-R gone (the bank.example one last), ours alone"

# --- 5. SERVFAIL on _dmarc
send servfail "$GOOD_IP" c5@servfail.unimilter.example
((RC == 0)) || fail "servfail: swaks exited $RC, want 0 (temperror_action accept)"
verdict servfail c5@servfail.unimilter.example
expect servfail spf=pass dkim='pass.*' dmarc=temperror action=accept
delivered servfail
ours servfail
check_placement servfail
ar_has servfail '^spf=pass ' '^dkim=pass .*header\.d=servfail\.unimilter\.example' \
    '^dmarc=temperror( |$)'
echo "ok: servfail: delivered, $AR"

# --- 6. strict alignment: SPF and DKIM pass for the parent only
send strict "$GOOD_IP" c6@strict.unimilter.example
((RC == 26)) || fail "strict: swaks exited $RC, want 26 (adkim=s aspf=s: not aligned, p=reject)"
line=$(sed -n '/^ *-> \.$/,$p' "$W/strict.swaks" | grep -m1 -E '^ *<\*\* ' || true)
[[ "$line" =~ \<\*\*\ 550\ 5\.7\.1\  ]] || fail "strict: want 550 5.7.1 after DATA, got: $line"
grep -qi 'strict\.unimilter\.example' <<<"$line" || fail "strict: the reply does not name the domain: $line"
verdict strict c6@strict.unimilter.example
expect strict spf=pass dkim='pass.*' dmarc=fail action=reject
echo "ok: strict: ${line#*<\*\* }"

# --- 6b. the same, relaxed: aligned through the organizational domain
send relaxed "$GOOD_IP" c6b@relaxed.unimilter.example
((RC == 0)) || fail "relaxed: swaks exited $RC"
verdict relaxed c6b@relaxed.unimilter.example
expect relaxed spf=pass dkim='pass.*' dmarc=pass action=accept
delivered relaxed
ours relaxed
ar_has relaxed '^dmarc=pass .*header\.from=sub\.relaxed\.unimilter\.example( |$)'
echo "ok: relaxed: delivered, $AR"

# --- 7. two From header fields
send two-from "$GOOD_IP" c7@pass.unimilter.example
((RC == 26)) || fail "two-from: swaks exited $RC, want 26"
line=$(sed -n '/^ *-> \.$/,$p' "$W/two-from.swaks" | grep -m1 -E '^ *<\*\* ' || true)
[[ "$line" =~ \<\*\*\ 550\ 5\.7\.1\  ]] || fail "two-from: want 550 5.7.1 after DATA, got: $line"
reply_want='550 5.7.1 Message must have exactly one From header with one address (RFC 5322 3.6)'
[[ "${line#*<\*\* }" == "$reply_want" ]] || fail "two-from: reply '${line#*<\*\* }', want '$reply_want'"
verdict two-from c7@pass.unimilter.example
expect two-from from.header=several action=reject why='several From'
echo "ok: two-from: ${line#*<\*\* }"

# --- 8. spoofed p=none: monitor only
send spoof-none "$BAD_IP" c8@none.unimilter.example
((RC == 0)) || fail "spoof-none: swaks exited $RC"
verdict spoof-none c8@none.unimilter.example
expect spoof-none spf=softfail dkim=none dmarc=fail action=accept
delivered spoof-none
ours spoof-none
ar_has spoof-none '^spf=softfail .*smtp\.mailfrom=(c8@)?none\.unimilter\.example( |$)' \
    '^dmarc=fail .*header\.from=none\.unimilter\.example( |$)'
echo "ok: spoof-none: delivered, $AR"

# ---- 9. the other actions (SIGHUP with new settings): quarantine_action tag,
# temperror_action tempfail, bad_from_action tempfail; each reply and header as lib/policy.c
# writes it, through the one funnel (milter/verdict.c).
sed -e 's/quarantine_action = "hold";/quarantine_action = "tag";/' \
    -e 's/bad_from_action = "reject";/bad_from_action = "tempfail";/' \
    -e 's/temperror_action = "accept";/temperror_action = "tempfail";/' "$W/um.conf" >"$W/um2.conf"
mv "$W/um2.conf" "$W/um.conf"
before=$(grep -c . "$UM_LOG" || true)
kill -HUP "$UM_PID"
for ((i = 0; i < 100; i++)); do
    new=$(tail -n +"$((before + 1))" "$UM_LOG")
    grep -q 'new configuration rejected' <<<"$new" && fail "reload rejected: $new"
    grep -q "configuration .*loaded" <<<"$new" && break
    sleep 0.05
done
grep -q "configuration .*loaded" <<<"$new" || fail "no 'configuration ... loaded' line 5 s after SIGHUP"

send tag-quarantine "$BAD_IP" c9@quarantine.unimilter.example
((RC == 0)) || fail "tag-quarantine: swaks exited $RC, want 0 (tagged, delivered)"
verdict tag-quarantine c9@quarantine.unimilter.example
expect tag-quarantine dmarc=fail action=tag why='dmarc p=quarantine'
delivered tag-quarantine
grep -qx 'X-Unimilter-Quarantine: DMARC policy of quarantine\.unimilter\.example' "$W/tag-quarantine.hdrs" ||
    fail "tag-quarantine: no X-Unimilter-Quarantine header naming the domain: $(cat "$W/tag-quarantine.hdrs")"
echo "ok: tag-quarantine: delivered with X-Unimilter-Quarantine"

reply_want='451 4.7.1 Cannot authenticate this message now, try again later'
send servfail "$GOOD_IP" c9b@servfail.unimilter.example
((RC != 0)) || fail "servfail (temperror_action tempfail): accepted, want 451 after DATA"
line=$(sed -n '/^ *-> \.$/,$p' "$W/servfail.swaks" | grep -m1 -E '^ *<\*\* ' || true)
[[ "${line#*<\*\* }" == "$reply_want" ]] || fail "servfail: reply '${line#*<\*\* }', want '$reply_want'"
verdict servfail c9b@servfail.unimilter.example
expect servfail dmarc=temperror action=tempfail why='dmarc temperror'
echo "ok: servfail (temperror_action tempfail): ${line#*<\*\* }"

send two-from "$GOOD_IP" c9c@pass.unimilter.example
((RC != 0)) || fail "two-from (bad_from_action tempfail): accepted, want 451 after DATA"
line=$(sed -n '/^ *-> \.$/,$p' "$W/two-from.swaks" | grep -m1 -E '^ *<\*\* ' || true)
[[ "${line#*<\*\* }" == "$reply_want" ]] || fail "two-from: reply '${line#*<\*\* }', want '$reply_want'"
verdict two-from c9c@pass.unimilter.example
expect two-from from.header=several action=tempfail why='several From'
echo "ok: two-from (bad_from_action tempfail): ${line#*<\*\* }"

# ---- nothing else delivered or held; a clean stop
want=(legit-dual legit-dkim-only legit-maildkim forged-ar forged-many servfail relaxed spoof-none
    tag-quarantine)
sleep 0.5
n=$(pf_sink_count)
# shellcheck disable=SC2046 # file names made by smtp-sink: no spaces
((n == ${#want[@]})) || fail "$n messages in the sink, want ${#want[@]}: $(grep -h '^Subject:' $(pf_sink_files))"
for s in spoof-reject spoof-quarantine strict two-from; do
    for f in $(pf_sink_files); do
        ! has_subject "$s" "$f" || fail "$s was delivered: $f"
    done
done
[[ "$(pf_held_count)" == 1 ]] || fail "$(pf_held_count) messages held, want 1"
kill -TERM "$UM_PID"
rc=0
wait "$UM_PID" || rc=$?
UM_PID=
((rc == 0)) || fail "unimilter exited $rc after SIGTERM, want 0"
! grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" || fail "sanitizer report in the daemon log"
bad=$(grep -E '\] (err|warning): ' "$UM_LOG" || true)
[[ -z "$bad" ]] || fail "errors/warnings in the daemon log: $bad"
# Every DMARC evaluation was recorded for reports (the writer drained at SIGTERM).
hist=$(/usr/bin/python3 - "$PF_RUN_DIR/dmarc-history.sqlite" <<'PYQ'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT header_from, dmarc_result, disposition FROM evaluations").fetchall()
print(len(rows))
for r in rows:
    print(" ".join(r))
PYQ
) || fail "cannot read the DMARC history"
grep -q '^reject\.unimilter\.example fail reject$' <<<"$hist" || fail "history lacks the rejected evaluation: $hist"
grep -q '^quarantine\.unimilter\.example fail quarantine$' <<<"$hist" || fail "history lacks the held evaluation: $hist"
grep -q '^pass\.unimilter\.example pass none$' <<<"$hist" || fail "history lacks a passing evaluation: $hist"
echo "ok: $(head -n1 <<<"$hist") DMARC evaluations recorded in the history"

# Mail in, report out: `unimilter report` a day later mails the RFC 9990 aggregate report for
# pass.unimilter.example (its record asks rua=mailto:dmarc-rua@pass.unimilter.example) over
# SMTP (submit.relay, the default submit.via) to the real Postfix's port 25 service; the
# capture is parsed back and validated with xmllint. The daemon is stopped by now, so Postfix
# runs without the milter for this (else milter_default_action would tempfail it).
pf_set_milters "" ""
sed "s|^reports = .*|reports = { history_file = \"$PF_RUN_DIR/dmarc-history.sqlite\"; org_name = \"Unimilter Test\"; email = \"dmarc-reports@mx.unimilter.example\"; }; submit = { relay = \"smtp://127.0.0.1:$PF_SMTP_PORT\"; };|" \
    "$W/um.conf" >"$W/report.conf"
before=$(pf_sink_count)
out=$(ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" report -c "$W/report.conf" --now $(($(date +%s) + 90000)) 2>&1) ||
    fail "unimilter report: $out"
grep -q 'sent=[1-9]' <<<"$out" || fail "unimilter report sent nothing: $out"
for _ in $(seq 1 100); do
    "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true
    (($(pf_sink_count) > before)) && break
    sleep 0.2
done
rfile=
for f in $(pf_sink_files); do grep -q 'dmarc-rua@pass.unimilter.example' "$f" && rfile=$f; done
[[ -n "$rfile" ]] || fail "no report mail for dmarc-rua@pass.unimilter.example in the capture"
rqid=$(pf_log_grep 'from=<dmarc-reports@mx\.unimilter\.example>' | head -n1 | sed -E 's/.*: ([0-9A-F]+): from=.*/\1/')
[[ -n "$rqid" ]] || fail "no message from reports.email (dmarc-reports@mx.unimilter.example) in the Postfix log"
pf_log_grep -q "/smtpd\[[0-9]+\]: $rqid: client=[^ ]*\[127\.0\.0\.1\]" ||
    fail "the report ($rqid) did not come in over SMTP: $(pf_log_grep "$rqid")"
"$PY" - "$rfile" "$W/report.xml" <<'PYR' || fail "cannot take the report out of the captured mail"
import email, gzip, sys
raw = open(sys.argv[1], "rb").read()
raw = raw[raw.index(b"\nReceived:") + 1:] if b"\nReceived:" in raw else raw
msg = email.message_from_bytes(raw)
parts = [p for p in msg.walk() if p.get_filename()]
assert len(parts) == 1, "want one attachment"
name = parts[0].get_filename()
assert name.startswith("mx.unimilter.example!pass.unimilter.example!") and name.endswith(".xml.gz"), name
open(sys.argv[2], "wb").write(gzip.decompress(parts[0].get_payload(decode=True)))
PYR
xsd=$UM_SRC/../shared/conformance/dmarc-mail-dmarc/share/rua-schema.xsd
[[ -r "$xsd" ]] || xsd=/work/shared/conformance/dmarc-mail-dmarc/share/rua-schema.xsd
sed 's|targetNamespace="urn:ietf:params:xml:ns:dmarc-2.0"|xmlns="urn:ietf:params:xml:ns:dmarc-2.0" elementFormDefault="qualified" &|' \
    "$xsd" >"$W/rua-schema.xsd"
xmllint --noout --schema "$W/rua-schema.xsd" "$W/report.xml" >"$W/xmllint.out" 2>&1 ||
    fail "the report does not validate with xmllint: $(cat "$W/xmllint.out")"
grep -q '<source_ip>192.0.2.10</source_ip>' "$W/report.xml" || fail "the report lacks the SPF-passing source: $(cat "$W/report.xml")"
grep -q '<header_from>pass.unimilter.example</header_from>' "$W/report.xml" || fail "the report lacks header_from"
echo "ok: report mailed over SMTP to Postfix (from reports.email), parsed back, valid per xmllint (RFC 9990 XSD)"
echo "PASS t_inbound (placement: $PLACEMENT; $((SECONDS - T0)) s)"
