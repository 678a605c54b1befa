#!/bin/bash
# DNS recovery after a blackhole and a SERVFAIL episode (issue 12). The daemon forwards to a
# real unbound on 127.0.0.1 that answers pass.example itself, sends blackhole.example to an
# authoritative server that takes queries and never answers, and servfail.example to one it
# may not ask (SERVFAIL at once). Under load from senders in those two zones, the forwarder
# itself is slow to answer (it retries the dead server for longer than dns.timeout), so to
# libunbound it looks like a forwarder that times out; libunbound then marked it unusable
# and, with the default infra-host-ttl, answered SERVFAIL for every name, without asking,
# for up to 15 minutes: every SPF/DKIM/DMARC lookup was temperror although the forwarder
# answered those names at once. After the episode, mail from pass.example must get its SPF
# pass again within a bound (30 s; the forwarder's entry comes back after infra-host-ttl).
. "$(dirname "$0")/lib.sh"

UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build tree}
LOAD=$UM_BUILD/bench/milterload
[ -x "$LOAD" ] || fail "$LOAD is not built"
need unbound
need python3

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
BPORT=$(free_port)
# The blackhole: takes every query, answers none.
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
while True: s.recvfrom(4096)' "$BPORT" &
BH_PID=$!
cat >"$T/unbound.conf" <<CONF
server:
    interface: 127.0.0.1
    port: $PORT
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$T"
    pidfile: ""
    use-syslog: no
    logfile: "$T/unbound.log"
    verbosity: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "pass.example." redirect
    local-data: 'pass.example. IN TXT "v=spf1 ip4:192.0.2.0/24 -all"'
stub-zone:
    name: "blackhole.example."
    stub-addr: 127.0.0.1@$BPORT
stub-zone:
    name: "servfail.example."
    stub-addr: 127.0.0.1@9
remote-control:
    control-enable: no
CONF
unbound-checkconf "$T/unbound.conf" >/dev/null 2>&1 || fail "unbound.conf: $(unbound-checkconf "$T/unbound.conf" 2>&1)"
unbound -d -c "$T/unbound.conf" >"$T/unbound.out" 2>&1 &
UNBOUND_PID=$!
trap 'kill "$UNBOUND_PID" "$BH_PID" 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 100); do
    grep -q "start of service" "$T/unbound.log" 2>/dev/null && break
    kill -0 "$UNBOUND_PID" 2>/dev/null || fail "unbound exited: $(cat "$T/unbound.out" "$T/unbound.log" 2>/dev/null)"
    sleep 0.05
done
grep -q "start of service" "$T/unbound.log" || fail "unbound did not start"

mkdir "$T/corpus"
printf 'From: a@%s\r\nTo: bob@example.net\r\nSubject: dns\r\n\r\nhello\r\n' pass.example >"$T/corpus/m.eml"
# The episode: 300 messages from distinct names in the blackholed zone, then 100 in the
# SERVFAIL zone (the order matters: a quick SERVFAIL from the forwarder in between counts as
# an answer and resets libunbound's view of it).
{
    for i in $(seq 1 300); do
        printf 'm.eml\t192.0.2.7\tclient.example\ta@x%d.blackhole.example\tbob@example.net\tmx\t25\t-\n' "$i"
    done
    for i in $(seq 1 100); do
        printf 'm.eml\t192.0.2.7\tclient.example\ta@x%d.servfail.example\tbob@example.net\tmx\t25\t-\n' "$i"
    done
} >"$T/corpus/episode"

INEXTRA='spf = true; dmarc = false;' write_conf "$T/um.conf" "dns = { servers = [\"127.0.0.1@$PORT\"]; timeout = 2; };"
um_start "$T/um.conf"

# pass_now N: one message from a@rN.pass.example (a new name each time: no cache has it;
# the forwarder answers every name under pass.example with the same SPF record); true when
# its verdict says spf=pass.
pass_now() {
    printf 'm.eml\t192.0.2.7\tclient.example\ta@r%s.pass.example\tbob@example.net\tmx\t25\t-\n' \
        "$1" >"$T/corpus/good"
    "$LOAD" -c 1 -n 1 -t 10 -d "$T/corpus" -f "$T/corpus/good" "unix:$T/um.sock" >/dev/null 2>&1 \
        || fail "milterload failed"
    wait_log "event=verdict.*from=<a@r$1.pass.example>" 1
    grep "event=verdict.*from=<a@r$1.pass.example>" "$T/log" | grep -q ' spf=pass '
}
pass_now 0 || fail "before the episode: no spf=pass: $(grep 'from=<a@r0.pass.example>' "$T/log")"

"$LOAD" -c 100 -n 400 -m 1 -t 30 -d "$T/corpus" -f "$T/corpus/episode" "unix:$T/um.sock" \
    >"$T/episode.out" 2>&1 || fail "episode: milterload: $(tail -n 3 "$T/episode.out")"
grep -q '^errors: 0$' "$T/episode.out" || fail "episode: sessions failed: $(cat "$T/episode.out")"

t0=$(date +%s)
n=1
while ! pass_now $n; do
    [ $(($(date +%s) - t0)) -lt 30 ] || fail "no spf=pass under pass.example 30 s after the episode: $(grep "from=<a@r$n.pass.example>" "$T/log")"
    n=$((n + 1))
    sleep 1
done
echo "resolving again $(($(date +%s) - t0)) s after the episode"
um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC"
echo "PASS t_dnsrecover"
