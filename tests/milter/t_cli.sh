#!/bin/bash
# Command line: -n checks (exit 0/1 with file:line errors), -V, -p overrides the socket,
# a stale unix socket is replaced, socket mode applies, root is dropped for good.
. "$(dirname "$0")/lib.sh"

out=$("$UM_BIN" -V)
for lib in unimilter libmilter libconfig libopendkim libspf2 libopendmarc libunbound openssl; do
    echo "$out" | grep -q "^$lib " || fail "-V does not name $lib: $out"
done

write_conf "$T/ok.conf"
out=$("$UM_BIN" -n -c "$T/ok.conf") || fail "-n rejected a valid config: $out"
[ "$out" = "unimilter: $T/ok.conf: configuration OK" ] || fail "-n output: $out"

printf 'socket = "unix:%s/x.sock";\nlog = {\n  level = "loud";\n};\n' "$T" >"$T/bad.conf"
rc=0; out=$("$UM_BIN" -n -c "$T/bad.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "-n on a bad config exited $rc, want 1"
[ "$out" = "unimilter: $T/bad.conf:3: log.level: expected err, warning, info or debug, not \"loud\"" ] || fail "-n message: $out"

printf 'user = "no-such-user-xyz";\n' >"$T/nouser.conf"
rc=0; out=$("$UM_BIN" -n -c "$T/nouser.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] && [ "$out" = "unimilter: $T/nouser.conf:1: user: no such user \"no-such-user-xyz\"" ] || fail "unknown user: rc=$rc $out"

rc=0; out=$("$UM_BIN" -n -c "$T/ok.conf" -p "tcp:25" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "-n with a bad -p exited $rc"

# A stale socket file (left by a killed process) is replaced.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$T/um.sock"
[ -S "$T/um.sock" ] || fail "could not create a stale socket"
# A regular file where the socket should be is refused, not deleted.
touch "$T/notasocket"
rc=0; "$UM_BIN" -c "$T/ok.conf" -p "unix:$T/notasocket" >>"$T/log" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ -f "$T/notasocket" ] || fail "a regular file in the socket's place was not refused"
grep -q "exists and is not a socket" "$T/log" || fail "no clear message for a non-socket file"

# -p overrides the configured socket.
um_start "$T/ok.conf" -p "unix:$T/other.sock"
[ -S "$T/other.sock" ] || fail "-p socket not created"
SOCK=$T/other.sock mt_session override ORIGINATING "" outbound || fail "session on -p socket: $(cat "$T/override.out")"
mode=$(stat -c %a "$T/other.sock")
[ "$mode" = 666 ] || fail "socket mode $mode, want 666"
if [ "$(id -u)" = 0 ]; then
    uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/"$UM_PID"/status)
    want=$(id -u nobody)
    [ "$uids" = "$want $want $want $want" ] || fail "uids after the drop: $uids, want all $want"
    gids=$(awk '/^Groups:/ {print $2}' /proc/"$UM_PID"/status)
    [ -z "$gids" ] || [ "$gids" = "$(id -g nobody)" ] || fail "supplementary groups kept: $gids"
    [ "$(stat -c %U "$T/other.sock")" = nobody ] || fail "socket not owned by the run user"
fi
um_stop
[ "$UM_RC" = 0 ] || fail "exit $UM_RC"
[ ! -e "$T/other.sock" ] || fail "socket left behind after a clean stop"

# The stale socket is replaced at start.
um_start "$T/ok.conf"
mt_session stale ORIGINATING "" outbound || fail "after replacing a stale socket: $(cat "$T/stale.out")"
um_stop
# unimilter report: the identity comes from the config (reports.org_name, reports.email).
rc=0; out=$("$UM_BIN" report -c "$T/ok.conf" 2>&1) || rc=$?
[ "$rc" = 64 ] && echo "$out" | grep -q "set reports.org_name and reports.email in $T/ok.conf" \
    || fail "report without an identity: rc=$rc $out"
write_conf "$T/rep.conf" 'reports = { history_file = "'"$T"'/h.sqlite"; org_name = "Example"; email = "dmarc@example.org"; };'
sed -i '/^reports = { history_file = "[^"]*dmarc-history.sqlite"; };$/d' "$T/rep.conf"
mkdir -p "$T/out"
out=$("$UM_BIN" report -c "$T/rep.conf" --db "$T/empty.sqlite" --dry-run "$T/out" 2>&1) \
    || fail "report on an empty history: $out"
echo "$out" | grep -q '^periods=0 sent=0 written=0 pending=0' || fail "report on an empty history: $out"
echo "PASS t_cli"
