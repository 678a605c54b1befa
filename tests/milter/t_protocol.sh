#!/bin/bash
# Protocol level, over TCP, with the project's own load client (bench/milterload) playing
# Postfix: what the daemon negotiates (no replies for HELO, headers, end of headers and
# body; no DATA or unknown commands; connect, MAIL, RCPT and end of message still
# answered), that messages on an inet: socket go through with their headers added, and
# that the listener got TCP_NODELAY (no Nagle stall behind the end-of-message replies).
. "$(dirname "$0")/lib.sh"

ML=${UM_BUILD:?UM_BUILD must point at the build tree}/bench/milterload
[ -x "$ML" ] || fail "$ML is not built (cmake --build builds it with the daemon)"

port=$((20000 + $$ % 20000))
write_conf "$T/um.conf"
sed -i "s|^socket = .*|socket = \"inet:$port@127.0.0.1\";|" "$T/um.conf"
"$UM_BIN" -c "$T/um.conf" >>"$T/log" 2>&1 &
UM_PID=$!
for _ in $(seq 1 100); do
    grep -q "listening on inet:$port@127.0.0.1" "$T/log" && break
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    sleep 0.05
done
grep -q "listening on inet:$port@127.0.0.1" "$T/log" || fail "no listening line for inet:$port"

# A small corpus: two inbound messages (port 25) and one outbound (587), several headers,
# a body over one 64 KiB chunk so body chunks stream without replies too.
mkdir -p "$T/corpus"
for i in 1 2 3; do
    {
        printf 'Received: from client.example (client.example [192.0.2.7])\r\n\tby mx.example.net with ESMTP id %s\r\n' "Q$i"
        printf 'From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test %s\r\n' "$i"
        printf 'Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\nMIME-Version: 1.0\r\n' "$i"
        printf '\r\n'
        for _ in $(seq 1 1200); do printf 'The quick brown fox jumps over the lazy dog, line of body text.\r\n'; done
    } >"$T/corpus/m$i.eml"
done
printf 'm1.eml\t192.0.2.7\tclient.example\talice@example.org\tbob@example.net\tMTA\t25\t-\n' >"$T/corpus/manifest"
printf 'm2.eml\t192.0.2.7\tclient.example\talice@example.org\tbob@example.net,carol@example.net\tMTA\t25\t-\n' >>"$T/corpus/manifest"
printf 'm3.eml\t192.0.2.9\tdesk.example\talice@example.org\tdave@example.com\tORIGINATING\t587\talice\n' >>"$T/corpus/manifest"

"$ML" -c 2 -n 9 -o "$T/res" -d "$T/corpus" "inet:$port@127.0.0.1" >"$T/ml.out" 2>"$T/ml.err" \
    || fail "milterload: $(cat "$T/ml.err")"
kv() { sed -n "s/^$1: //p" "$T/ml.out"; }
[ "$(kv messages)" = 9 ] || fail "messages: $(kv messages)"
[ "$(kv errors)" = 0 ] || fail "protocol errors: $(cat "$T/ml.out")"
[ "$(kv accept)" = 9 ] || fail "not all accepted: $(cat "$T/ml.out")"
# Inbound: Authentication-Results + trace header; outbound: the trace header.
[ "$(grep -cP '^H\t\d+\t0\tinsert\tAuthentication-Results\t' "$T/res")" = 6 ] \
    || fail "expected 6 Authentication-Results headers: $(grep '^H' "$T/res" | head)"
[ "$(grep -cP '^H\t\d+\t0\tinsert\tX-Unimilter-Mode\t *outbound$' "$T/res")" = 3 ] \
    || fail "expected 3 outbound trace headers: $(grep '^H' "$T/res" | head)"

proto=$(kv milter0_negotiated | sed -n 's/.*protocol=\(0x[0-9a-f]*\).*/\1/p')
[ -n "$proto" ] || fail "no negotiated flags reported: $(cat "$T/ml.out")"
has() { [ $((proto & $1)) != 0 ]; }
for f in 0x2000:NR_HELO 0x80:NR_HDR 0x40000:NR_EOH 0x80000:NR_BODY 0x200:NODATA \
    0x100:NOUNKNOWN 0x100000:HDR_LEADSPC; do
    has "${f%%:*}" || fail "protocol $proto lacks SMFIP_${f#*:}"
done
for f in 0x1000:NR_CONN 0x4000:NR_MAIL 0x8000:NR_RCPT 0x1:NOCONNECT 0x20:NOHDRS 0x10:NOBODY; do
    has "${f%%:*}" && fail "protocol $proto has SMFIP_${f#*:}, which would lose a verdict or data"
done
grep -q 'TCP_NODELAY' "$T/log" && fail "TCP_NODELAY not set: $(grep TCP_NODELAY "$T/log")"
[ "$(grep -c 'event=verdict' "$T/log")" = 9 ] || fail "expected 9 verdict lines"

um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC after SIGTERM, want 0"
echo "PASS t_protocol"
