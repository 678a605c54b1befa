#!/bin/bash
# Control socket: `unimilter stats` and `unimilter reset` against a running daemon; the
# counts come from real outbound messages (miltertest, SASL login macro). Also: socket
# owner and mode, untrusted key bytes escaped and resettable in that form, bounded requests,
# a stuck client does not block others for long, clear errors when the daemon is down, an
# unprivileged user other than the daemon's refused with "permission denied" (the control
# socket is 0600 and the daemon's by default, not the milter socket's 0666),
# ratelimit disabled, a non-socket file in the socket's place refused.
. "$(dirname "$0")/lib.sh"

CTL=$T/control.sock

# send_msg NAME AUTH "RCPT..." : one outbound message, all recipients accepted.
send_msg() {
    local name=$1 auth=$2 rcpts=$3
    {
        echo "local conn = mt.connect(\"unix:$T/um.sock\", 40, 0.1)"
        echo 'if conn == nil then error("connect failed") end'
        echo 'mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "ORIGINATING")'
        echo 'if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo") end'
        echo 'if mt.helo(conn, "client.example") ~= nil then error("helo") end'
        echo "mt.macro(conn, SMFIC_MAIL, \"{auth_authen}\", \"$auth\")"
        echo 'if mt.mailfrom(conn, "<a@example.org>") ~= nil then error("mail") end'
        echo 'if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail refused") end'
        for r in $rcpts; do
            echo "if mt.rcptto(conn, \"<$r>\") ~= nil then error(\"rcpt\") end"
            echo "if mt.getreply(conn) ~= SMFIR_CONTINUE then error(\"rcpt $r refused\") end"
        done
        echo 'if mt.header(conn, "From", "a@example.org") ~= nil then error("header") end'
        echo 'if mt.eoh(conn) ~= nil then error("eoh") end'
        echo 'if mt.bodystring(conn, "hi\r\n") ~= nil then error("body") end'
        echo 'if mt.eom(conn) ~= nil then error("eom") end'
        echo 'if mt.getreply(conn) ~= SMFIR_ACCEPT then error("eom: want accept") end'
        echo 'mt.disconnect(conn)'
    } >"$T/$name.lua"
    miltertest -s "$T/$name.lua" >"$T/$name.out" 2>&1 || fail "$name: $(cat "$T/$name.out")"
}

# ctl_raw BYTES : one raw request on the control socket, prints the response.
ctl_raw() {
    python3 - "$CTL" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode("latin-1"))
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode("latin-1"))
PY
}

RLEXTRA="limit = 10;" write_conf "$T/um.conf"
um_start "$T/um.conf"
[ -S "$CTL" ] || fail "control socket $CTL not created"
[ "$(stat -c %a "$CTL")" = 600 ] || fail "control socket mode $(stat -c %a "$CTL"), want control_socket_mode's default 600 (the milter socket is 666)"
if [ "$(id -u)" = 0 ]; then
    [ "$(stat -c %U "$CTL")" = nobody ] || fail "control socket owned by $(stat -c %U "$CTL"), want nobody"
    # Another unprivileged user (daemon, uid 1) is refused, and told why.
    chmod 0644 "$T/um.conf"
    rc=0; out=$(runuser -u daemon -- "$UM_BIN" stats -c "$T/um.conf" 2>&1) || rc=$?
    [ "$rc" = 1 ] || fail "stats as user daemon exited $rc, want 1: $out"
    echo "$out" | grep -qx "unimilter: stats: permission denied on $CTL (control_socket_mode/control_socket_group)" \
        || fail "stats as user daemon: $out"
    rc=0; out=$(runuser -u daemon -- "$UM_BIN" reset -c "$T/um.conf" sasl:alice 2>&1) || rc=$?
    [ "$rc" = 1 ] && echo "$out" | grep -q "permission denied on $CTL" || fail "reset as user daemon: rc=$rc $out"
    echo "ok: user daemon refused: $out"
fi
grep -q "control socket $CTL ready" "$T/log" || fail "no startup line for the control socket"

# Nothing counted yet.
rc=0; out=$("$UM_BIN" stats -c "$T/um.conf" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "stats exited $rc: $out"
echo "$out" | head -1 | grep -qx 'window=3600 limit=10 tracked=0 max=100000' || fail "stats header: $out"
echo "$out" | sed -n 2p | grep -Eq '^ *COUNT +LIMIT +REFUSED +SENDER$' || fail "stats table header: $out"
[ "$(echo "$out" | wc -l)" = 2 ] || fail "stats lists senders before any mail: $out"

rc=0; out=$("$UM_BIN" reset -c "$T/um.conf" sasl:nobody 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "reset of an unknown sender exited $rc, want 1: $out"
echo "$out" | grep -q "no such sender" || fail "reset message: $out"

# Real traffic: alice sends 2 messages to 3 recipients each, bob one to 1.
send_msg m1 alice "r1@x.test r2@x.test r3@x.test"
send_msg m2 alice "r4@x.test r5@x.test r6@x.test"
send_msg m3 bob "r7@x.test"
# A login with bytes that must not reach a terminal raw: UTF-8 e-acute and a quote.
send_msg m4 'm\195\169l\34x' "r8@x.test r9@x.test"
out=$("$UM_BIN" stats -c "$T/um.conf") || fail "stats after mail: $out"
echo "$out" | head -1 | grep -qx 'window=3600 limit=10 tracked=3 max=100000' || fail "stats header after mail: $out"
echo "$out" | sed -n 3p | grep -Eqx ' +6 +10 +0  sasl:alice' || fail "alice not first with 6 of 10: $out"
echo "$out" | grep -Eqx ' +1 +10 +0  sasl:bob' || fail "bob not listed with 1: $out"
esc=$(echo "$out" | sed -n 's/^ *2 *10 *0  \(sasl:.*\)$/\1/p')
[ "$esc" = 'sasl:m\xc3\xa9l\x22x' ] || fail "odd key not escaped as \\xHH: '$esc' in: $out"
out=$("$UM_BIN" stats -c "$T/um.conf" -n 1) || fail "stats -n 1: $out"
[ "$(echo "$out" | wc -l)" = 3 ] || fail "stats -n 1 listed more than one sender: $out"

# Reset alice: gone from stats, logged; bob untouched. The escaped key resets too.
out=$("$UM_BIN" reset -c "$T/um.conf" sasl:alice) || fail "reset sasl:alice failed: $out"
[ "$out" = "reset sasl:alice" ] || fail "reset output: $out"
grep -q 'event=control action=reset sender=sasl:alice result=reset' "$T/log" || fail "reset not logged"
out=$("$UM_BIN" stats -c "$T/um.conf")
echo "$out" | grep -q 'sasl:alice' && fail "alice still listed after reset: $out"
echo "$out" | grep -Eqx ' +1 +10 +0  sasl:bob' || fail "bob lost by alice's reset: $out"
"$UM_BIN" reset -c "$T/um.conf" "$esc" >/dev/null || fail "reset of the escaped key failed"
"$UM_BIN" stats -c "$T/um.conf" | grep -q 'sasl:m' && fail "escaped key still listed after reset"
# The count starts again from zero.
send_msg m5 alice "r1@x.test"
"$UM_BIN" stats -c "$T/um.conf" | grep -Eqx ' +1 +10 +0  sasl:alice' || fail "alice not counted afresh"

# Protocol bounds.
out=$(ctl_raw "$(head -c 2000 /dev/zero | tr '\0' a)")
[ "$out" = "err request longer than 1100 bytes" ] || fail "oversized request: $out"
out=$(ctl_raw $'frobnicate\n')
case $out in "err unknown request"*) ;; *) fail "unknown request: $out" ;; esac
out=$(ctl_raw $'stats 0\n')
case $out in "err stats: count"*) ;; *) fail "stats 0: $out" ;; esac
out=$(ctl_raw $'reset sasl:\\xzz\n')
case $out in "err reset: bad sender key"*) ;; *) fail "bad escape: $out" ;; esac
rc=0; out=$("$UM_BIN" stats -c "$T/um.conf" -n 5000 2>&1) || rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q "1 to 1000" || fail "stats -n 5000: rc=$rc $out"

# A client that connects and says nothing holds the thread for about 2 s, not forever.
python3 -c "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(6)" "$CTL" &
stuck=$!
sleep 0.3
start=$(date +%s%N)
"$UM_BIN" stats -c "$T/um.conf" >/dev/null || fail "stats behind a stuck client failed"
ms=$((($(date +%s%N) - start) / 1000000))
kill "$stuck" 2>/dev/null || true
wait "$stuck" 2>/dev/null || true
[ "$ms" -lt 3500 ] || fail "stats waited $ms ms behind a stuck client"

um_stop
[ "$UM_RC" = 0 ] || fail "daemon exit $UM_RC"
[ ! -e "$CTL" ] || fail "control socket left behind after a clean stop"

# Daemon down: a clear message, exit 1.
rc=0; out=$("$UM_BIN" stats -c "$T/um.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "stats without a daemon exited $rc, want 1"
echo "$out" | grep -q "cannot connect to $CTL: .*is unimilter running?" || fail "stats message without a daemon: $out"
rc=0; out=$("$UM_BIN" reset -c "$T/um.conf" sasl:alice 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "is unimilter running?" || fail "reset without a daemon: rc=$rc $out"

# Rate limiting turned off: the daemon says so.
RLEXTRA="enabled = false;" write_conf "$T/off.conf"
um_start "$T/off.conf"
rc=0; out=$("$UM_BIN" stats -c "$T/off.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "ratelimit is disabled" || fail "stats with ratelimit off: rc=$rc $out"
um_stop

# A regular file where the control socket should be is refused, not deleted.
touch "$CTL"
rc=0; "$UM_BIN" -c "$T/um.conf" >>"$T/log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ -f "$CTL" ] || fail "a regular file in the control socket's place was not refused"
grep -q "control socket $CTL exists and is not a socket" "$T/log" || fail "no clear message for a non-socket control path"
rm -f "$CTL"

# control_socket = "" disables it; stats says so.
write_conf "$T/nocontrol.conf"
sed -i 's|^control_socket = .*|control_socket = "";|' "$T/nocontrol.conf"
rc=0; out=$("$UM_BIN" stats -c "$T/nocontrol.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "control_socket is disabled" || fail "stats with no control socket: rc=$rc $out"
echo "PASS t_control"
