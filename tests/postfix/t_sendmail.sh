#!/usr/bin/env bash
# Real Sendmail, end to end (issue 6 item 5): ONE INPUT_MAIL_FILTER line for unimilter in place
# of the usual three (smf-spf, opendkim, opendmarc), an MTA and an MSA listener, and the
# example config's mode rules ({daemon_name} "MSA" -> outbound, anything else -> inbound).
#
# Sendmail: Debian's sendmail-bin conflicts with postfix as a package, so it is not installed:
# `apt-get download sendmail-bin sendmail-cf sendmail-base` into the test directory (falling
# back to copies in /var/cache/apt/archives), `dpkg -x` into ROOT, and ROOT's m4 tree builds
# the .cf from sendmail/sendmail.mc.in (every path inside the test directory). Needs m4 and
# libwrap0 installed.
#
# Everything runs in a private network namespace (ip netns), which gives:
#   - its own ports: MTA listener 10.200.0.1:2025 (Name=MTA), MSA listener 10.200.0.1:2587
#     (Name=MSA, M=E), smtp-sink on 127.0.0.1:2525 (Sendmail's SMART_HOST), unbound on
#     127.0.0.1:53. The listener ports are not 25/587 on purpose: the example rules also say
#     "port 587 is outbound", and here only {daemon_name} may decide;
#   - /etc/netns/NS/hosts naming this host (Sendmail sleeps 60 s when its own name does not
#     resolve at once) and /etc/netns/NS/resolv.conf pointing at the test unbound;
#   - a client address that is not loopback (10.200.0.2, on lo), so SPF is evaluated too.
# The milter socket lives in /run/um-sm.XXXXXX (0755): Sendmail refuses a socket under a
# world-writable directory such as /tmp.
#
# Proven, on each message AS DELIVERED to smtp-sink:
#   MTA port: From pass.unimilter.example, DKIM-signed (rsa-sha256 + ed25519-sha256) by
#     python3-dkim, SPF pass from 10.200.0.2, DMARC p=reject -> delivered with exactly ONE
#     Authentication-Results, ours (mx.unimilter.test), spf=pass dkim=pass dmarc=pass, and
#     X-Unimilter-Mode: inbound;
#   MTA port: From reject.unimilter.example (p=reject), SPF fail, unsigned -> Sendmail answers
#     550 5.7.1 after DATA, and it is never delivered;
#   MSA port: From sign.unimilter.example -> delivered with two DKIM-Signature headers
#     (a=rsa-sha256, a=ed25519-sha256, d=sign.unimilter.example) that python3-dkim verifies
#     against the test DNS, X-Unimilter-Mode: outbound, and no Authentication-Results;
#   the daemon's log shows Sendmail's {daemon_name} MTA / MSA (and {daemon_port}) on connect
#   and the verdicts mode=inbound / mode=outbound.
# Needs (Debian): iproute2 unbound openssl m4 libwrap0 postfix (smtp-sink) swaks python3-dkim
# python3-dnspython python3-nacl, apt (to download sendmail-bin sendmail-cf sendmail-base),
# root. UM_KEEP=1 keeps the test directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh" # pf_um_report
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
SMT=$here/sendmail
DKIMTOOL=$here/inbound/dkimtool.py
PY=${UM_PYTHON:-/usr/bin/python3} # Debian's python3, where python3-dkim lives
SMTP_SINK=${PF_SMTP_SINK:-/usr/sbin/smtp-sink}
T0=$SECONDS

skip_or_fail() {
    if [[ "${CI:-}" == "true" ]]; then
        printf 'FAIL: t_sendmail cannot run under CI=true: %s\n' "$*" >&2
        exit 1
    fi
    printf 'SKIP: t_sendmail: %s\n' "$*" >&2
    exit 77
}
[[ $(id -u) -eq 0 ]] || skip_or_fail "must run as root (network namespace, Sendmail daemon)"
for t in ip unbound unbound-checkconf openssl m4 swaks dpkg apt-get runuser "$SMTP_SINK" "$PY"; do
    command -v "$t" >/dev/null 2>&1 ||
        skip_or_fail "$t missing (Debian: apt-get install iproute2 unbound openssl m4 swaks postfix python3-dkim python3-dnspython python3-nacl)"
done
"$PY" -c 'import dkim, dns.resolver, nacl' 2>/dev/null ||
    skip_or_fail "python3-dkim, python3-dnspython or python3-nacl missing"

NS=um-sm-$$
NS_MADE=
D=
RUN=
UM_PID=
UM_LOG=
UNBOUND_PID=
SINK_PID=
SM_PID=
MX=10.200.0.1 # the Sendmail listeners
CLIENT=10.200.0.2
MTA_PORT=2025
MSA_PORT=2587
SINK_PORT=2525
SM_HOST=mta.unimilter.example

# stop PID: SIGTERM, up to 5 s, then SIGKILL. Only processes this script started.
stop() {
    local p=$1 i
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local rc=$? p
    stop "$SM_PID"
    stop "$UM_PID"
    stop "$SINK_PID"
    stop "$UNBOUND_PID"
    if [[ -n "$NS_MADE" ]]; then
        # What is left in the namespace was started here: Sendmail's delivery children.
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        sleep 0.1
        ip netns del "$NS" 2>/dev/null || true
    fi
    rm -rf "/etc/netns/$NS"
    rmdir /etc/netns 2>/dev/null || true
    [[ -n "$RUN" ]] && rm -rf "$RUN"
    if [[ -n "$D" ]]; then
        if [[ "${UM_KEEP:-}" == 1 ]]; then echo "kept: $D" >&2; else rm -rf "$D"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

D=$(mktemp -d /tmp/um-sm.XXXXXX)
chmod 0755 "$D" # nobody (the daemon, smtp-sink) must reach its files
RUN=$(mktemp -d /run/um-sm.XXXXXX)
chmod 0755 "$RUN"
chown nobody: "$RUN"
W=$D/work
SINK=$D/sink
mkdir -p "$W" "$SINK"
chown nobody: "$SINK"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        for f in "$W/unbound.log" "$D/sendmail.out" "$D/sink.log" "$D/smtp.trace"; do
            [[ -s "$f" ]] && { echo "----- $f (last 30 lines)"; tail -n 30 "$f"; }
        done
        [[ -f "$W/swaks.last" ]] && { echo "----- last swaks transcript"; cat "$W/swaks.last"; }
        echo "----- captured: $(find "$SINK" -type f -printf '%f ' 2>/dev/null)"
        echo "----- Sendmail queue: $(find "$D/queue" -type f -printf '%f ' 2>/dev/null)"
    } >&2
    exit 1
}
ok() { printf 'ok: %s\n' "$*"; }
# nsx CMD...: run CMD in the namespace. Not for background jobs: a function run with & is a
# subshell, and its PID would not be CMD's; those use `ip netns exec` directly (it execs).
nsx() { ip netns exec "$NS" "$@"; }

# ---- Sendmail from the Debian packages, extracted (postfix stays installed)
DEBS=$D/debs
ROOT=$D/root
mkdir -p "$DEBS" "$ROOT"
chown _apt: "$DEBS" 2>/dev/null || true # apt-get download fetches as _apt where it can
if ! (cd "$DEBS" && apt-get download sendmail-bin sendmail-cf sendmail-base) >"$D/apt.out" 2>&1; then
    # Offline: the same packages already fetched into apt's cache will do.
    for p in sendmail-bin sendmail-cf sendmail-base; do
        f=$(find /var/cache/apt/archives -maxdepth 1 -name "${p}_*.deb" 2>/dev/null | sort -V | tail -n 1)
        if [[ -n "$f" ]]; then cp "$f" "$DEBS/"; fi
    done
fi
for p in sendmail-bin sendmail-cf sendmail-base; do
    compgen -G "$DEBS/${p}_*.deb" >/dev/null ||
        skip_or_fail "cannot get $p: apt-get download failed ($(tail -n 2 "$D/apt.out" | tr '\n' ' ')) and it is not in /var/cache/apt/archives (run apt-get update)"
done
for f in "$DEBS"/*.deb; do dpkg -x "$f" "$ROOT" || fail "dpkg -x $f"; done
SENDMAIL=$ROOT/usr/libexec/sendmail/sendmail
[[ -x "$SENDMAIL" && -f "$ROOT/usr/share/sendmail/cf/m4/cf.m4" ]] ||
    fail "the extracted packages have no $SENDMAIL or cf/m4/cf.m4"
missing=$(ldd "$SENDMAIL" 2>&1 | awk '/not found/ { print $1 }' | tr '\n' ' ')
[[ -z "$missing" ]] || skip_or_fail "Sendmail needs libraries that are not installed: $missing(Debian: apt-get install libwrap0)"
sm_version=$(dpkg-deb -f "$(ls "$DEBS"/sendmail-bin_*.deb)" Version)
echo "ok: Sendmail $sm_version extracted into $ROOT"

# ---- keys: the inbound sender's (python3-dkim signs with them) and the daemon's signing keys
(
    umask 077
    for k in pass-rsa sign-rsa; do
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/$k.pem" 2>/dev/null
    done
    for k in pass-ed sign-ed; do openssl genpkey -algorithm ed25519 -out "$W/$k.pem" 2>/dev/null; done
) || fail "openssl genpkey failed"
chmod 0600 "$W"/*.pem
chown nobody "$W/sign-rsa.pem" "$W/sign-ed.pem" # 0600, owned by the user the daemon runs as
txt_strings() { fold -w 250 <<<"$1" | sed 's/.*/"&"/' | tr '\n' ' ' | sed 's/ $//'; }
pubtxt() { # ALG KEYFILE
    local p
    p=$("$PY" "$DKIMTOOL" pubkey "$1" "$2") || fail "pubkey $1 $2"
    txt_strings "v=DKIM1; k=$1; p=$p"
}
sed -e "s|@DIR@|$W|g" -e "s|@PASS_RSA_TXT@|$(pubtxt rsa "$W/pass-rsa.pem")|" \
    -e "s|@PASS_ED_TXT@|$(pubtxt ed25519 "$W/pass-ed.pem")|" \
    -e "s|@SIGN_RSA_TXT@|$(pubtxt rsa "$W/sign-rsa.pem")|" \
    -e "s|@SIGN_ED_TXT@|$(pubtxt ed25519 "$W/sign-ed.pem")|" \
    "$SMT/unbound.conf.in" >"$W/unbound.conf"
unbound-checkconf "$W/unbound.conf" >"$W/checkconf.out" 2>&1 || fail "unbound.conf: $(cat "$W/checkconf.out")"

# ---- the namespace: loopback plus the two addresses; hosts and resolv.conf for it
mkdir -p "/etc/netns/$NS"
cat >"/etc/netns/$NS/hosts" <<EOF
127.0.0.1 localhost
$MX $SM_HOST mta $(hostname)
$CLIENT client.unimilter.example
EOF
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$NS/resolv.conf"
ip netns add "$NS" || skip_or_fail "ip netns add failed (no network namespaces here?)"
NS_MADE=1
ip -n "$NS" link set lo up || fail "cannot bring up lo in $NS"
ip -n "$NS" addr add "$MX/32" dev lo || fail "cannot add $MX"
ip -n "$NS" addr add "$CLIENT/32" dev lo || fail "cannot add $CLIENT"
[[ "$(nsx getent hosts "$(hostname)" | awk '{ print $1; exit }')" == "$MX" ]] ||
    fail "$(hostname) does not resolve to $MX inside $NS (/etc/netns/$NS/hosts)"

# listening ADDR PORT: a TCP listener in the namespace (no connection: no SMTP session).
listening() { [[ -n "$(nsx ss -Hltn "src $1 and sport = :$2" 2>/dev/null)" ]]; }
wait_listen() { # ADDR PORT PID WHAT
    local i
    for ((i = 0; i < 200; i++)); do
        listening "$1" "$2" && return 0
        kill -0 "$3" 2>/dev/null || fail "$4 exited at startup"
        sleep 0.05
    done
    fail "$4 does not listen on $1:$2"
}

ip netns exec "$NS" unbound -d -c "$W/unbound.conf" >"$W/unbound.out" 2>&1 &
UNBOUND_PID=$!
wait_listen 127.0.0.1 53 "$UNBOUND_PID" unbound
dns_expect() { # NAME RCODE [TEXT]
    local out
    out=$(nsx "$PY" "$DKIMTOOL" query 53 "$1" TXT 2>&1) || fail "DNS query $1: $out"
    [[ "$(head -n1 <<<"$out")" == "$2" ]] || fail "DNS $1: got '$out', want rcode $2"
    [[ -z "${3:-}" ]] || grep -qF -- "$3" <<<"$out" || fail "DNS $1: got '$out', want '$3'"
}
dns_expect _dmarc.pass.unimilter.example NOERROR "p=reject"
dns_expect ed1._domainkey.sign.unimilter.example NOERROR "k=ed25519"
dns_expect nothing.unimilter.example NXDOMAIN
ok "namespace $NS: unbound on 127.0.0.1:53 serves the test zones"

(cd / && exec ip netns exec "$NS" "$SMTP_SINK" -4 -u nobody -h sink.unimilter.test \
    -d "$SINK/%Y%m%d%H%M%S." "127.0.0.1:$SINK_PORT" 64 >"$D/sink.log" 2>&1 </dev/null) &
SINK_PID=$!
wait_listen 127.0.0.1 "$SINK_PORT" "$SINK_PID" smtp-sink

# ---- the daemon: the example mode rules, signing keys for sign.unimilter.example
SOCK=$RUN/unimilter.sock
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$UM_SRC/conf/unimilter.conf")
grep -q 'daemon_name = "MSA"; mode = "outbound"' <<<"$example_mode" ||
    fail "cannot find the MSA rule in $UM_SRC/conf/unimilter.conf"
cat >"$W/um.conf" <<CONF
socket = "unix:$SOCK";
socket_mode = "0660";
user = "nobody";
shutdown_timeout = 10;
authserv_id = "mx.unimilter.test";
log = { target = "stderr"; level = "debug"; };
control_socket = "$RUN/control.sock";
ratelimit = { state_file = "$RUN/ratelimit.state"; };
reports = { history_file = "$RUN/dmarc-history.sqlite"; };
dns = { servers = ["127.0.0.1"]; timeout = 2; };
debug = { trace_header = true; };
$example_mode
dkim_sign = {
    keys = (
        { name = "rsa"; domain = "sign.unimilter.example"; selector = "rsa1"; file = "$W/sign-rsa.pem"; },
        { name = "ed"; domain = "sign.unimilter.example"; selector = "ed1"; file = "$W/sign-ed.pem"; }
    );
    rules = ( { from = "sign.unimilter.example"; keys = ["rsa", "ed"]; } );
};
CONF
UM_LOG=$D/um.log
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
"$UM_BIN" -n -c "$W/um.conf" >"$W/um-n.out" 2>&1 || fail "unimilter -n: $(cat "$W/um-n.out")"
ip netns exec "$NS" "$UM_BIN" -c "$W/um.conf" >>"$UM_LOG" 2>&1 &
UM_PID=$!
for ((i = 0; i < 200; i++)); do
    if [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG"; then break; fi
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    sleep 0.05
done
[[ -S "$SOCK" ]] || fail "unimilter did not listen on $SOCK"

# ---- Sendmail: .mc -> .cf, then the daemon in the foreground (-bD), in the namespace
mkdir -p "$D/queue" "$D/msp-queue"
chmod 0700 "$D/queue" "$D/msp-queue"
: >"$D/aliases"
: >"$D/statistics"
printf 'hosts\tfiles\naliases\tfiles\n' >"$D/service.switch"
sed -e "s|@ROOT@|$ROOT|g" -e "s|@DIR@|$D|g" -e "s|@HOSTNAME@|$SM_HOST|g" -e "s|@ADDR@|$MX|g" \
    -e "s|@MTA_PORT@|$MTA_PORT|g" -e "s|@MSA_PORT@|$MSA_PORT|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
    -e "s|@SOCK@|$SOCK|g" "$SMT/sendmail.mc.in" >"$D/sendmail.mc"
m4 "$D/sendmail.mc" >"$D/sendmail.cf" 2>"$D/m4.err" || fail "m4: $(cat "$D/m4.err")"
[[ ! -s "$D/m4.err" ]] || fail "m4 warned: $(cat "$D/m4.err")"
[[ $(grep -c '^X' "$D/sendmail.cf") == 1 ]] || fail "want exactly one milter (X) line in sendmail.cf"
grep -q "^Xunimilter, S=unix:$SOCK, F=T, T=S:30s;R:1m\$" "$D/sendmail.cf" || fail "no unimilter X line"
grep -q '^O Milter.macros.connect=.*{daemon_name}.*{daemon_port}' "$D/sendmail.cf" ||
    fail "{daemon_name}/{daemon_port} not in Milter.macros.connect"
ip netns exec "$NS" "$SENDMAIL" -bD -C "$D/sendmail.cf" -X "$D/smtp.trace" >"$D/sendmail.out" 2>&1 </dev/null &
SM_PID=$!
wait_listen "$MX" "$MTA_PORT" "$SM_PID" "Sendmail (run it under strace -f to see why)"
wait_listen "$MX" "$MSA_PORT" "$SM_PID" Sendmail
ok "Sendmail listens on $MX:$MTA_PORT (Name=MTA) and $MX:$MSA_PORT (Name=MSA), one milter: unimilter"

# ---- messages
M=$W/msg
mkdir -p "$M"
mk() { "$PY" "$DKIMTOOL" make "$@" || fail "dkimtool make $*"; }
mk "$M/inbound.raw" --from "Alice <alice@pass.unimilter.example>" --subject sm-inbound
"$PY" "$DKIMTOOL" sign "$M/inbound.raw" "$M/inbound.eml" \
    --key "rsa:$W/pass-rsa.pem:pass.unimilter.example:r2048" \
    --key "ed25519:$W/pass-ed.pem:pass.unimilter.example:ed1" || fail "python3-dkim could not sign"
out=$(nsx "$PY" "$DKIMTOOL" verify 53 "$M/inbound.eml" 2>&1) ||
    fail "python3-dkim does not verify its own signatures against the test DNS: $out"
mk "$M/spoof.eml" --from "CEO <ceo@reject.unimilter.example>" --subject sm-spoof
mk "$M/outbound.eml" --from "Alice <alice@sign.unimilter.example>" --subject sm-outbound

# send PORT NAME ENVFROM: swaks from the client address; the transcript in $W/NAME.swaks.
send() {
    local rc=0
    nsx swaks --server "$MX" --port "$1" --local-interface "$CLIENT" --helo client.unimilter.example \
        --from "$3" --to bob@example.com --data "@$M/$2.eml" --timeout 60 >"$W/swaks.last" 2>&1 || rc=$?
    cp "$W/swaks.last" "$W/$2.swaks"
    return "$rc"
}
send "$MTA_PORT" inbound alice@pass.unimilter.example || fail "inbound: swaks exited $?"
grep -qE '^<-  250 2\.0\.0 .*accepted for delivery' "$W/inbound.swaks" || fail "inbound: not accepted by Sendmail"
rc=0
send "$MTA_PORT" spoof ceo@reject.unimilter.example || rc=$?
((rc != 0)) || fail "spoof: swaks says the message was accepted"
grep -qE '^<\*\* +550 5\.7\.1 ' "$W/spoof.swaks" || fail "spoof: no 550 5.7.1 reply from Sendmail"
reply=$(grep -E '^<\*\* +550 5\.7\.1 ' "$W/spoof.swaks" | head -n1 | sed 's/^<\*\* *//')
ok "spoof: Sendmail answered: $reply"
send "$MSA_PORT" outbound alice@sign.unimilter.example || fail "outbound: swaks exited $?"
grep -qE '^<-  250 2\.0\.0 .*accepted for delivery' "$W/outbound.swaks" || fail "outbound: not accepted by Sendmail"

# captured SUBJECT: the one complete capture file with that Subject (smtp-sink writes it once
# the transaction ends; it is complete when it ends with the message's last line).
captured() {
    local files
    files=$(grep -l -- "^Subject: $1"$'\r'"\?\$" "$SINK"/* 2>/dev/null || true)
    [[ -n "$files" ]] || return 1
    [[ $(grep -c . <<<"$files") == 1 ]] || fail "$1: captured more than once: $files"
    grep -q '^Alice' "$files" || return 1
    printf '%s\n' "$files"
}
for s in sm-inbound sm-outbound; do
    for ((i = 0; i < 300; i++)); do
        captured "$s" >/dev/null && break
        kill -0 "$SM_PID" 2>/dev/null || fail "Sendmail exited"
        sleep 0.1
    done
    captured "$s" >/dev/null || fail "$s: not delivered to smtp-sink within 30 s"
done

# delivered SUBJECT NAME: the capture minus smtp-sink's own X-* lines and Received header,
# CRLF line ends, in $W/NAME.delivered; its header fields unfolded in $W/NAME.hdrs.
delivered() {
    local f
    f=$(captured "$1") || fail "$1: not captured"
    awk 'BEGIN { st = 0 }
         st == 0 && /^X-[A-Za-z-]+: / { next }
         st == 0 && /^Received: / { st = 1; next }
         st == 1 && /^[ \t]/ { next }
         { st = 2; print }' "$f" | sed 's/\r$//; s/$/\r/' >"$W/$2.delivered"
    "$PY" "$DKIMTOOL" headers "$W/$2.delivered" >"$W/$2.hdrs" || fail "$2: cannot read the headers"
}

# ---- (1) MTA port: verified, one Authentication-Results, inbound
delivered sm-inbound inbound
H=$W/inbound.hdrs
ar=$(grep -i '^Authentication-Results:' "$H" || true)
[[ $(grep -c . <<<"$ar") == 1 ]] || fail "inbound: want exactly one Authentication-Results, got: $ar"
grep -qE '^Authentication-Results: mx\.unimilter\.test;' <<<"$ar" || fail "inbound: A-R is not ours: $ar"
for want in 'spf=pass' 'dmarc=pass' 'header.from=pass.unimilter.example'; do
    grep -qF -- "$want" <<<"$ar" || fail "inbound: A-R has no $want: $ar"
done
[[ $(grep -oE 'dkim=pass' <<<"$ar" | wc -l) == 2 ]] || fail "inbound: want dkim=pass for both signatures: $ar"
if grep -qE 'dkim=(fail|neutral|temperror|permerror|policy|none)' <<<"$ar"; then
    fail "inbound: a DKIM result other than pass: $ar"
fi
[[ $(grep -ci '^X-Unimilter-Mode:' "$H") == 1 && $(grep -i '^X-Unimilter-Mode:' "$H") == 'X-Unimilter-Mode: inbound' ]] ||
    fail "inbound: X-Unimilter-Mode is not inbound: $(grep -i '^X-Unimilter-Mode:' "$H")"
grep -qE '^Received: from client\.unimilter\.example .*by mta\.unimilter\.example \(8\.' "$H" ||
    fail "inbound: no Received header from Sendmail for 10.200.0.2: $(grep '^Received:' "$H")"
ok "MTA port: delivered with one A-R: ${ar#Authentication-Results: }; X-Unimilter-Mode: inbound"

# ---- spoof: rejected, never delivered
grep -qE 'event=verdict .*mode=inbound .*dmarc=fail.*action=reject' "$UM_LOG" ||
    fail "spoof: no inbound verdict with dmarc=fail and action=reject"
if grep -l '^Subject: sm-spoof' "$SINK"/* >/dev/null 2>&1; then fail "spoof: delivered"; fi
ok "MTA port: spoofed From reject.unimilter.example (p=reject) rejected by Sendmail, not delivered"

# ---- (2) MSA port: signed twice, both verify, outbound
delivered sm-outbound outbound
H=$W/outbound.hdrs
sigs=$(grep -i '^DKIM-Signature:' "$H" || true)
[[ $(grep -c . <<<"$sigs") == 2 ]] || fail "outbound: want two DKIM-Signature headers, got: $sigs"
grep -qE '(^|[; ])a=rsa-sha256;' <<<"$sigs" || fail "outbound: no a=rsa-sha256 signature: $sigs"
grep -qE '(^|[; ])a=ed25519-sha256;' <<<"$sigs" || fail "outbound: no a=ed25519-sha256 signature: $sigs"
[[ $(grep -cE '(^|[; ])d=sign\.unimilter\.example;' <<<"$sigs") == 2 ]] ||
    fail "outbound: not both d=sign.unimilter.example: $sigs"
out=$(nsx "$PY" "$DKIMTOOL" verify 53 "$W/outbound.delivered" 2>&1) || fail "outbound: python3-dkim: $out"
grep -qx 'd=sign.unimilter.example s=rsa1 a=rsa-sha256 pass' <<<"$out" || fail "outbound: rsa-sha256: $out"
grep -qx 'd=sign.unimilter.example s=ed1 a=ed25519-sha256 pass' <<<"$out" || fail "outbound: ed25519-sha256: $out"
[[ $(grep -ci '^X-Unimilter-Mode:' "$H") == 1 && $(grep -i '^X-Unimilter-Mode:' "$H") == 'X-Unimilter-Mode: outbound' ]] ||
    fail "outbound: X-Unimilter-Mode is not outbound: $(grep -i '^X-Unimilter-Mode:' "$H")"
grep -qi '^Authentication-Results:' "$H" && fail "outbound: an Authentication-Results on outbound mail"
ok "MSA port: delivered with rsa-sha256 + ed25519-sha256 (d=sign.unimilter.example), python3-dkim: 2/2 pass; X-Unimilter-Mode: outbound"

# ---- the daemon saw Sendmail's {daemon_name} and chose the mode from it
grep -qE "event=connect .*ip=$CLIENT .*daemon_name=MTA daemon_port=$MTA_PORT" "$UM_LOG" ||
    fail "no connect line with daemon_name=MTA daemon_port=$MTA_PORT"
grep -qE "event=connect .*ip=$CLIENT .*daemon_name=MSA daemon_port=$MSA_PORT" "$UM_LOG" ||
    fail "no connect line with daemon_name=MSA daemon_port=$MSA_PORT"
n_in=$(grep -cE 'event=verdict .*mode=inbound' "$UM_LOG" || true)
n_out=$(grep -cE 'event=verdict .*mode=outbound .*dkim\.sigs=2' "$UM_LOG" || true)
[[ $n_in == 2 && $n_out == 1 ]] || fail "verdicts: $n_in inbound (want 2), $n_out outbound with dkim.sigs=2 (want 1)"
grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" && fail "sanitizer report in the daemon log"
ok "daemon log: {daemon_name} MTA -> inbound (2 verdicts), {daemon_name} MSA -> outbound (1 verdict, 2 signatures)"

# ---- stop: Sendmail by its PID, then the daemon (SIGTERM exits 0)
stop "$SM_PID"
SM_PID=
kill -TERM "$UM_PID"
rc=0
wait "$UM_PID" || rc=$?
UM_PID=
((rc == 0)) || fail "unimilter exited $rc on SIGTERM"
echo "PASS: t_sendmail ($((SECONDS - T0)) s)"
