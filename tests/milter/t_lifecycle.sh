#!/bin/bash
# Lifecycle: SIGHUP and SIGUSR1 reload without cutting sessions (a connection keeps the
# snapshot it started with); a bad new config is refused and the old one keeps serving;
# a burst of SIGHUPs under traffic fails no session; SIGTERM lets a message in flight
# finish, refuses new work, and exits 0. Issue 12: an idle daemon stops within 2 s (not at
# libmilter's next 5-second look) and leaves no socket file behind, also when its start
# fails after the sockets were made; a stream of SIGHUPs cannot postpone the rate-limit
# snapshot.
. "$(dirname "$0")/lib.sh"

# A session that connects, waits $2 seconds, starts a message, waits $3 seconds after the
# headers, ends the message and expects mode $4.
slow_session() {
    local name=$1 wait=$2 mid=$3 expect=$4
    cat >"$T/$name.lua" <<LUA
local conn = mt.connect("unix:$T/um.sock", 40, 0.1)
if conn == nil then error("connect failed") end
mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "ORIGINATING")
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect not continued") end
mt.sleep($wait)
if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mail failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail not continued") end
if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("rcpt failed") end
if mt.header(conn, "From", "alice@example.org") ~= nil then error("header failed") end
if mt.eoh(conn) ~= nil then error("eoh failed") end
mt.sleep($mid)
if mt.bodystring(conn, "hello\r\n") ~= nil then error("body failed") end
if mt.eom(conn) ~= nil then error("eom failed") end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Unimilter-Mode", " $expect") then error("want mode $expect") end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error("eom not accepted") end
mt.disconnect(conn)
LUA
    miltertest -s "$T/$name.lua" >"$T/$name.out" 2>&1
}

write_conf "$T/um.conf"
um_start "$T/um.conf"

# 1. A connection open across a reload keeps its snapshot; new connections get the new one.
n=$(grep -c 'event=connect' "$T/log" || true)
slow_session pinned 1.5 0 outbound &
pinned=$!
wait_log 'event=connect' $((n + 1))  # the session is open before the reloads
write_conf "$T/um.conf" 'mode2 = 1;'  # first: a bad config (unknown setting)
um_reload HUP
line=$(grep -n '^mode2' "$T/um.conf" | cut -d: -f1)
grep -q "event=reload msg=\"new configuration rejected, the running one stays: $T/um.conf:$line: mode2: unknown setting\"" "$T/log" \
    || fail "bad reload not reported with file:line"
mt_session after_bad ORIGINATING "" outbound || fail "old config stopped serving after a bad reload"
sed -e 's/daemon_name = "ORIGINATING"; mode = "outbound"/daemon_name = "ORIGINATING"; mode = "inbound"/' \
    -e '/^mode2/d' "$T/um.conf" >"$T/um2.conf"
mv "$T/um2.conf" "$T/um.conf"
um_reload USR1
grep -q 'event=reload msg="configuration .* loaded"' "$T/log" || fail "SIGUSR1 did not reload"
mt_session after_good ORIGINATING "" inbound || fail "new connection did not get the new config"
wait "$pinned" || fail "session open across the reload failed: $(cat "$T/pinned.out")"

# 2. A burst of SIGHUPs while sessions run: none fails, the daemon stays up.
pids=
for i in $(seq 1 6); do mt_session burst$i ORIGINATING "" inbound 0.3 & pids="$pids $!"; done
for i in $(seq 1 20); do kill -HUP "$UM_PID"; sleep 0.05; done
for j in $pids; do wait "$j" || fail "a session failed during the SIGHUP burst"; done
kill -0 "$UM_PID" || fail "the daemon died during the SIGHUP burst"
n=$(grep -c 'event=reload msg="configuration' "$T/log")
[ "$n" -ge 15 ] || fail "only $n of 20 SIGHUPs reloaded"
! grep -q "libmilter stopped without being asked" "$T/log" || fail "libmilter took a SIGHUP as stop"

# 2b. log.target is applied at reload (unimilter.conf(5): only socket, user/group, control
# socket, ratelimit.backend and dns need a restart): switched to syslog, nothing more reaches
# stderr - not the reload line, not a message's verdict; switched back, the lines return.
cp "$T/um.conf" "$T/um.conf.stderr"
sed -i 's/target = "stderr"/target = "syslog"/' "$T/um.conf"
grep -q 'target = "syslog"' "$T/um.conf" || fail "could not switch the test config to syslog"
lines=$(wc -l <"$T/log")
verdicts=$(grep -c 'event=verdict' "$T/log" || true)
kill -HUP "$UM_PID"
sleep 1
mt_session to_syslog ORIGINATING "" inbound || fail "a session failed after the switch to syslog"
sleep 0.3
new=$(tail -n +"$((lines + 1))" "$T/log")
[ -z "$new" ] || fail "log.target = syslog after a reload, yet stderr still got: $new"
cp "$T/um.conf.stderr" "$T/um.conf"
loaded=$(grep -c 'event=reload msg="configuration .* loaded"' "$T/log" || true)
kill -HUP "$UM_PID"
wait_log 'event=reload msg="configuration .* loaded"' $((loaded + 1))
mt_session back_to_stderr ORIGINATING "" inbound || fail "a session failed after the switch back"
wait_log 'event=verdict' $((verdicts + 1))
echo "ok: log.target switched to syslog and back by reloads"

# 3. SIGTERM: the message in flight finishes; a new connection is turned away; exit 0.
n=$(grep -c 'event=verdict' "$T/log" || true)
c=$(grep -c 'event=connect' "$T/log" || true)
slow_session draining 0 2 inbound &
inflight=$!
wait_log 'event=connect' $((c + 1))
sleep 0.3  # its MAIL FROM follows at once; the body comes 2 s later
kill -TERM "$UM_PID"
sleep 0.2
cat >"$T/late.lua" <<LUA
local conn = mt.connect("unix:$T/um.sock", 1, 0.1)
if conn == nil then return end -- listener already closed: also a refusal
if mt.conninfo(conn, "late.example", "192.0.2.8") ~= nil then return end
if mt.getreply(conn) ~= SMFIR_TEMPFAIL then error("new connection accepted while draining") end
LUA
miltertest -s "$T/late.lua" >"$T/late.out" 2>&1 || fail "while draining: $(cat "$T/late.out")"
wait "$inflight" || fail "the message in flight at SIGTERM failed: $(cat "$T/draining.out")"
UM_RC=0; wait "$UM_PID" || UM_RC=$?
UM_PID=
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC after SIGTERM"
grep -q 'stopping: waiting up to 10 s for 1 message(s) in flight' "$T/log" || fail "drain not logged"
[ ! -e "$T/um.sock" ] || fail "the milter socket stayed behind after exit"
[ ! -e "$T/control.sock" ] || fail "the control socket stayed behind after exit"

# 4. An idle daemon stops promptly: well within libmilter's 5-second poll.
: >"$T/log"
um_start "$T/um.conf"
t0=$(date +%s%N)
um_stop
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$UM_RC" = 0 ] || fail "idle stop: exit status $UM_RC"
[ "$ms" -lt 2000 ] || fail "an idle daemon took $ms ms to stop (bound 2000)"
echo "idle stop: $ms ms"
[ ! -e "$T/um.sock" ] && [ ! -e "$T/control.sock" ] || fail "idle stop left a socket file"

# 5. A start that fails after the milter socket was made (the control socket cannot be
# bound) removes it again.
write_conf "$T/bad.conf"
sed -i "s|^control_socket = .*|control_socket = \"$T/missing/control.sock\";|" "$T/bad.conf"
: >"$T/log"
rc=0; "$UM_BIN" -c "$T/bad.conf" >>"$T/log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "started with a control socket in a missing directory"
[ ! -e "$T/um.sock" ] || fail "a failed start left its milter socket behind"
# Run as root and dropping to nobody, sockets in a directory nobody cannot write stay
# behind at exit: that is said at start, with the fix.
if [ "$(id -u)" = 0 ]; then
    mkdir -m 0755 "$T/rootdir"
    sed -e "s|$T/um.sock|$T/rootdir/um.sock|" -e "s|$T/control.sock|$T/rootdir/control.sock|" \
        "$T/um.conf" >"$T/rootdir.conf"
    : >"$T/log"
    um_start "$T/rootdir.conf"
    um_stop
    grep -q "event=startup msg=\"socket $T/rootdir/um.sock: user nobody cannot write its directory $T/rootdir" "$T/log" \
        || fail "no warning that the socket file will stay behind"
    grep -q "event=shutdown msg=\"socket $T/rootdir/um.sock stays behind" "$T/log" \
        || fail "the socket left behind was not reported at exit"
fi

# 6. The rate-limit snapshot is written on schedule (every 10 s here) while SIGHUPs keep
# arriving: a stream of signals used to keep the main loop from ever reaching it.
RLEXTRA='snapshot_interval = 10; limit = 100;' write_conf "$T/um.conf"
rm -f "$T/rl.state"
: >"$T/log"
um_start "$T/um.conf"
rl_session snap1 snapuser snap@example.org "r1@x.test r2@x.test r3@x.test" ccca
t0=$(date +%s)
( while kill -HUP "$UM_PID" 2>/dev/null; do :; done ) &
burst=$!
found=
while [ $(($(date +%s) - t0)) -lt 16 ]; do
    if [ -f "$T/rl.state" ] && grep -q snapuser "$T/rl.state"; then found=1; break; fi
    sleep 0.2
done
kill "$burst" 2>/dev/null || true
wait "$burst" 2>/dev/null || true
[ -n "$found" ] || fail "no snapshot with the counted sender within 16 s during a SIGHUP stream"
echo "snapshot after $(($(date +%s) - t0)) s of SIGHUPs"
kill -0 "$UM_PID" || fail "the daemon died during the SIGHUP stream"
um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC after the SIGHUP stream"
echo "PASS t_lifecycle"
