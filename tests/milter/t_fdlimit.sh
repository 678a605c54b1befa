#!/bin/bash
# Running out of file descriptors (issue 12): with `ulimit -n 256` and 1000 concurrent
# sessions that each hold their connection for a while after HELO (as Postfix does while a
# slow SMTP client takes its time), the daemon must stay alive, every session must get an
# answer (accept, or a tempfail when descriptors are short) within the client's timeout, and
# afterwards it must serve normally. Twice: cold (nothing resolved yet: libunbound used to
# build its worker at the first lookup, and libevent exit()ed the process when no descriptor
# was left for it) and warm (libmilter's listener used to sleep 1, 2, 3... s on each
# EMFILE from accept(), leaving queued sessions unanswered).
. "$(dirname "$0")/lib.sh"

UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build tree}
LOAD=$UM_BUILD/bench/milterload
[ -x "$LOAD" ] || fail "$LOAD is not built"
# The client needs a descriptor per session; the daemon gets 256.
if ! ulimit -n 4096 2>/dev/null; then
    [ "${CI:-}" = "true" ] && fail "cannot raise the client's descriptor limit to 4096"
    echo "SKIP: cannot raise the descriptor limit to 4096 for the load client" >&2
    exit 77
fi

# One inbound message; a different sender domain each, so SPF asks the resolver each time
# (its server is nowhere: every lookup ends quickly as temperror, which is accepted).
mkdir "$T/corpus"
printf 'From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: fd\r\n\r\nhello\r\n' \
    >"$T/corpus/m.eml"
for i in $(seq 1 1000); do
    printf 'm.eml\t192.0.2.7\tclient.example\talice@d%d.example\tbob@example.net\tmx\t25\t-\n' "$i"
done >"$T/corpus/manifest"

REAL_BIN=$UM_BIN
cat >"$T/um-256" <<EOF
#!/bin/sh
ulimit -n 256 || exit 99
exec "$REAL_BIN" "\$@"
EOF
chmod 0755 "$T/um-256"
UM_BIN=$T/um-256
INEXTRA='spf = true; dmarc = true;' write_conf "$T/um.conf"
um_start "$T/um.conf"

# load NAME THINK_MS TIMEOUT_S: 1000 sessions at once, one message each.
load() {
    "$LOAD" -c 1000 -n 1000 -m 1 -w "$2" -t "$3" -d "$T/corpus" "unix:$T/um.sock" \
        >"$T/$1.out" 2>"$T/$1.err" || fail "$1: milterload exited with $?: $(tail -n 3 "$T/$1.err")"
    kill -0 "$UM_PID" 2>/dev/null || fail "$1: the daemon died: $(grep -v verdict "$T/log" | tail -n 5)"
    local acc tmp err
    acc=$(sed -n 's/^accept: //p' "$T/$1.out")
    tmp=$(sed -n 's/^tempfail: //p' "$T/$1.out")
    err=$(sed -n 's/^errors: //p' "$T/$1.out")
    [ "$err" = 0 ] || fail "$1: $err of 1000 sessions got no answer (accept $acc, tempfail $tmp)"
    [ $((acc + tmp)) = 1000 ] || fail "$1: accept $acc + tempfail $tmp is not 1000"
    [ "$acc" -gt 0 ] || fail "$1: nothing was accepted"
    echo "$1: accept $acc tempfail $tmp"
    mt_session "after-$1" ORIGINATING "" outbound || fail "$1: no normal service afterwards"
}

# Cold: the first lookup comes after HELO, when every descriptor may already be taken.
load cold 3000 30
grep -q 'event=resources msg="file descriptors short' "$T/log" || fail "the shortage was not logged"
# Warm: sessions hold their connections 8 s; those beyond the budget must not wait for
# them (the client gives up on a reply after 20 s).
load warm 8000 20
! grep -q "libmilter stopped without being asked" "$T/log" || fail "libmilter stopped"
um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC"
echo "PASS t_fdlimit"
