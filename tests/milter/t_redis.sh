#!/bin/bash
# Shared rate limit: two unimilter processes on one real redis-server share one count; with
# Redis killed, ratelimit.redis.on_error decides (local: counted in memory, tempfail: 451),
# the outage is logged once, and after a restart the shared count is used again.
. "$(dirname "$0")/lib.sh"
need redis-server

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis_start() {
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" \
        --daemonize no >"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.05
    done
    fail "redis-server did not start"
}
REDIS_PID=
trap 'kill "$REDIS_PID" 2>/dev/null; [ -n "${PID_B:-}" ] && kill -KILL "$PID_B" 2>/dev/null; cleanup' EXIT
redis_start

RLEXTRA="limit = 3; backend = \"redis\"; redis = { port = $port; timeout_ms = 200; on_error = \"local\"; };" \
    write_conf "$T/a.conf"
sed -e "s|$T/um.sock|$T/b.sock|; s|$T/control.sock|$T/controlb.sock|" "$T/a.conf" >"$T/b.conf"
um_start "$T/a.conf"
"$UM_BIN" -c "$T/b.conf" >>"$T/log" 2>&1 &
PID_B=$!
for _ in $(seq 1 100); do [ -S "$T/b.sock" ] && break; sleep 0.05; done
[ -S "$T/b.sock" ] || fail "second daemon did not start"
grep -q 'counting in Redis at 127.0.0.1' "$T/log" || fail "redis backend not announced"

# 2 recipients through A, then 2 through B: the 4th is over the shared limit of 3.
rl_session a1 alice alice@example.org "1@x.test 2@x.test" cca
SOCK=$T/b.sock rl_session b1 alice alice@example.org "3@x.test 4@x.test" cta
# Both daemons see the same count through the control socket.
"$UM_BIN" stats -c "$T/a.conf" | grep -q '^ *3 .*sasl:alice' || fail "stats on A: $("$UM_BIN" stats -c "$T/a.conf")"
"$UM_BIN" stats -c "$T/b.conf" | grep -q '^ *3 .*sasl:alice' || fail "stats on B do not show the shared count"
# Aborted recipients are given back in Redis too.
rl_session d1 dave dave@example.org "1@x.test 2@x.test 3@x.test" ccc abort
SOCK=$T/b.sock rl_session d2 dave dave@example.org "1@x.test 2@x.test 3@x.test" ccca

# Redis killed: on_error local counts in this process's memory; the outage is logged once.
kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=
rl_session e1 erin erin@example.org "1@x.test 2@x.test 3@x.test 4@x.test" cccta
rl_session e2 erin erin@example.org "5@x.test" ta
n=$(grep -c 'redis unavailable .*counting locally' "$T/log" || true)
[ "$n" -ge 1 ] && [ "$n" -le 2 ] || fail "outage logged $n times, want once per daemon that saw it"

# on_error tempfail: recipients get 451 while Redis is down (the MTA retries; nothing lost).
RLEXTRA="limit = 3; backend = \"redis\"; redis = { port = $port; timeout_ms = 200; on_error = \"tempfail\"; };" \
    write_conf "$T/a.conf"
um_reload
rl_session f1 frank frank@example.org "1@x.test" ta

# Redis back: the shared count is used again (a fresh server: frank starts from zero).
redis_start
sleep 6 # the client retries a dead server with a backoff of up to 5 s
rl_session f2 frank frank@example.org "1@x.test 2@x.test 3@x.test 4@x.test" cccta
redis-cli -p "$port" --scan --pattern 'um:rl:*' | grep -q . || fail "no keys in Redis after it came back"
kill -TERM "$PID_B"; wait "$PID_B" || fail "daemon B exit status $?"; PID_B=
um_stop
[ "$UM_RC" = 0 ] || fail "exit $UM_RC"
echo "PASS t_redis"
