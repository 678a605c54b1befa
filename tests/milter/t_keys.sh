#!/bin/bash
# `unimilter keygen` and `unimilter check-keys` against a real DNS server: keys are made by
# keygen (RSA and Ed25519, mode 0600, never overwritten, TXT record and config snippet
# printed), a throwaway unbound on 127.0.0.1:<free port> publishes some of them (right,
# wrong key, wrong type, revoked, missing, a SERVFAIL zone), and check-keys must give the
# right verdict per key and exit 1; with only good keys, exit 0. A key file with mode 0644 is
# refused naming the file. A DNS server that never answers is a DNS ERROR within the
# configured timeout (the hard deadline in lib/dns), not a hang and not "not published".
. "$(dirname "$0")/lib.sh"
need unbound
need python3

K=$T/keys
mkdir -m 0700 "$K"
write_conf "$T/base.conf"

# keygen SELECTOR [args...] : writes $T/kg.SELECTOR.out, fails the test on error.
keygen() {
    local sel=$1; shift
    "$UM_BIN" keygen -d example.com -s "$sel" -o "$K" -c "$T/base.conf" "$@" >"$T/kg.$sel.out" 2>&1 \
        || fail "keygen $sel: $(cat "$T/kg.$sel.out")"
}
# record SELECTOR : the zone record keygen printed, on one line, as unbound local-data.
record() {
    awk '/^[^ ]*\._domainkey\..* IN TXT \(/ {on = 1} on {print} on && /\)$/ {exit}' "$T/kg.$1.out" \
        | tr '\n\t' '  ' | tr -s ' ' \
        | sed -e 's/( *//' -e 's/ *) *$//'
}

keygen rsa1
keygen ed1 -t ed25519
keygen wrong1
keygen rsa2 -b 1024
keygen wt1
keygen rev1
keygen missing1 -t ed25519
keygen perm1 -t ed25519

for f in "$K"/*.pem; do
    [ "$(stat -c %a "$f")" = 600 ] || fail "$f has mode $(stat -c %a "$f"), want 600"
    if [ "$(id -u)" = 0 ]; then
        [ "$(stat -c %U "$f")" = nobody ] || fail "$f owned by $(stat -c %U "$f"), want the run user nobody"
    fi
done
grep -q "^wrote $K/example.com.rsa1.pem (rsa, 2048 bits, mode 0600)$" "$T/kg.rsa1.out" || fail "rsa1 output: $(cat "$T/kg.rsa1.out")"
grep -q "^wrote $K/example.com.rsa2.pem (rsa, 1024 bits, mode 0600)$" "$T/kg.rsa2.out" || fail "rsa2 (-b 1024) output"
record rsa1 | grep -Eq '^rsa1\._domainkey\.example\.com\. IN TXT "v=DKIM1; k=rsa; p=MII[A-Za-z0-9+/]+" "[A-Za-z0-9+/=]+"$' \
    || fail "rsa1 record: $(record rsa1)"
record ed1 | grep -Eq '^ed1\._domainkey\.example\.com\. IN TXT "v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}="$' \
    || fail "ed1 record: $(record ed1)"
grep -q "{ name = \"example.com-ed1\"; domain = \"example.com\"; selector = \"ed1\";" "$T/kg.ed1.out" \
    || fail "ed1: no config snippet"
grep -q "file = \"$K/example.com.ed1.pem\"; }," "$T/kg.ed1.out" || fail "ed1: snippet lacks the file"

# Never overwrite; clear errors for bad arguments.
sum=$(sha256sum <"$K/example.com.rsa1.pem")
rc=0; out=$("$UM_BIN" keygen -d example.com -s rsa1 -o "$K" -c "$T/base.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "example.com.rsa1.pem: File exists (refusing to overwrite)" \
    || fail "keygen over an existing key: rc=$rc $out"
[ "$(sha256sum <"$K/example.com.rsa1.pem")" = "$sum" ] || fail "existing key file changed"
rc=0; out=$("$UM_BIN" keygen -d example.com -s x -t dsa -o "$K" 2>&1) || rc=$?
[ "$rc" = 64 ] && echo "$out" | grep -q "rsa or ed25519" || fail "-t dsa: rc=$rc $out"
rc=0; out=$("$UM_BIN" keygen -d example.com -s x -b 512 -o "$K" 2>&1) || rc=$?
[ "$rc" = 64 ] && echo "$out" | grep -q "from 1024 to 8192" || fail "-b 512: rc=$rc $out"
rc=0; out=$("$UM_BIN" keygen -d example.com -s x -o "$T/nonexistent" 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "is not a directory" || fail "-o missing dir: rc=$rc $out"
rc=0; out=$("$UM_BIN" keygen -d example.com -s x 2>&1) || rc=$?
[ "$rc" = 64 ] && echo "$out" | grep -q "usage: unimilter keygen" || fail "no -o: rc=$rc $out"
[ ! -e "$K/example.com.x.pem" ] || fail "a failed keygen left a file"

chmod 0644 "$K/example.com.perm1.pem"

# A throwaway DNS server on a free port.
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    cat <<CONF
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
    local-zone: "example.com." static
    local-data: '$(record rsa1)'
    local-data: '$(record ed1)'
    local-data: '$(record rsa2 | sed 's/^rsa2\./wrong1./')'
    local-data: '$(record ed1 | sed 's/^ed1\./wt1./')'
    local-data: 'rev1._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p="'
    local-data: '$(record perm1)'
stub-zone:
    name: "dead.example"
    stub-addr: 127.0.0.1@9
remote-control:
    control-enable: no
CONF
} >"$T/unbound.conf"
unbound-checkconf "$T/unbound.conf" >/dev/null 2>&1 || fail "unbound.conf: $(cat "$T/unbound.conf")"
unbound -d -c "$T/unbound.conf" >"$T/unbound.out" 2>&1 &
UNBOUND_PID=$!
trap 'kill "$UNBOUND_PID" 2>/dev/null; [ -n "${SILENT_PID:-}" ] && kill "$SILENT_PID" 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 100); do
    grep -q "start of service" "$T/unbound.log" 2>/dev/null && break
    kill -0 "$UNBOUND_PID" 2>/dev/null || fail "unbound exited: $(cat "$T/unbound.out" "$T/unbound.log" 2>/dev/null)"
    sleep 0.05
done
grep -q "start of service" "$T/unbound.log" || fail "unbound did not start"

# keys_conf FILE DNS_SERVER TIMEOUT KEY... ; KEY = name:selector:domain
keys_conf() {
    local f=$1 server=$2 timeout=$3; shift 3
    local keys="" sep=""
    for k in "$@"; do
        IFS=: read -r name sel dom <<<"$k"
        local file=$K/example.com.$sel.pem
        keys="$keys$sep{ name = \"$name\"; domain = \"$dom\"; selector = \"$sel\"; file = \"$file\"; }"
        sep=", "
    done
    write_conf "$f" "dns = { servers = [\"$server\"]; timeout = $timeout; };
dkim_sign = { keys = ( $keys ); };"
}

keys_conf "$T/all.conf" "127.0.0.1@$PORT" 5 good-rsa:rsa1:example.com good-ed:ed1:example.com \
    wrong:wrong1:example.com wrongtype:wt1:example.com revoked:rev1:example.com \
    missing:missing1:example.com perms:perm1:example.com dead:rsa1:dead.example
rc=0; out=$("$UM_BIN" check-keys -c "$T/all.conf" 2>&1) || rc=$?
echo "$out" >"$T/check-all.out"
[ "$rc" = 1 ] || fail "check-keys with bad keys exited $rc, want 1: $out"
want_line() { echo "$out" | grep -Eqx "$1" || fail "check-keys: no line matching /$1/ in:
$out"; }
want_line 'good-rsa rsa1\._domainkey\.example\.com match'
want_line 'good-ed ed1\._domainkey\.example\.com match'
want_line 'wrong wrong1\._domainkey\.example\.com MISMATCH( \(.*\))?'
want_line 'wrongtype wt1\._domainkey\.example\.com WRONG_TYPE( \(.*\))?'
want_line 'revoked rev1\._domainkey\.example\.com REVOKED( \(.*\))?'
want_line 'missing missing1\._domainkey\.example\.com NOT PUBLISHED'
want_line "perms perm1\\._domainkey\\.example\\.com KEY ERROR \\(dkim key \"perms\": $K/example\\.com\\.perm1\\.pem is readable by group/others \\(mode 0644; chmod 600\\)\\)"
want_line 'dead rsa1\._domainkey\.dead\.example DNS ERROR \(.*\)'
[ "$(echo "$out" | wc -l)" = 8 ] || fail "check-keys printed other lines: $out"

keys_conf "$T/good.conf" "127.0.0.1@$PORT" 5 good-rsa:rsa1:example.com good-ed:ed1:example.com
rc=0; out=$("$UM_BIN" check-keys -c "$T/good.conf" 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "check-keys with good keys exited $rc: $out"
[ "$(echo "$out" | grep -c ' match$')" = 2 ] || fail "good keys: $out"

# A server that takes the query and never answers: DNS ERROR within about the timeout.
SPORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1]))); time.sleep(60)' "$SPORT" &
SILENT_PID=$!
sleep 0.2
keys_conf "$T/silent.conf" "127.0.0.1@$SPORT" 1 good-rsa:rsa1:example.com
start=$(date +%s%N)
rc=0; out=$("$UM_BIN" check-keys -c "$T/silent.conf" 2>&1) || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" = 1 ] || fail "check-keys against a silent server exited $rc: $out"
echo "$out" | grep -Eqx 'good-rsa rsa1\._domainkey\.example\.com DNS ERROR \(timed out after 1 s\)' \
    || fail "silent server: $out"
[ "$ms" -lt 3000 ] || fail "check-keys took $ms ms with dns.timeout = 1"

# Bad server string in the config: a clear error naming it.
printf 'user = "nobody";\ndns = { servers = ["not-an-ip"]; };\n' >"$T/badns.conf"
rc=0; out=$("$UM_BIN" check-keys -c "$T/badns.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] && echo "$out" | grep -q "not-an-ip" || fail "bad dns server: rc=$rc $out"
echo "PASS t_keys"
