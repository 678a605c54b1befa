#!/usr/bin/env bash
# Real Postfix, reload under traffic: 40 messages (20 to the smtp port, 20 to submission,
# four swaks loops in parallel) while another loop sends SIGHUP to unimilter every
# 0.1-0.2 s, rewriting its config between two valid variants (log.level info/debug) and once
# to an invalid one (then restored). Asserts that every swaks exits 0, every message is
# delivered with the right mode (one X-Unimilter-Mode header) and one verdict line, nothing
# sits in Postfix's queues, Postfix logs no milter trouble, the daemon keeps its PID, logged
# the reloads and exactly one rejected configuration, and exits 0 on SIGTERM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}

WORKERS_SMTP=2
WORKERS_SUBMISSION=2
PER_WORKER=10
TOTAL=$(((WORKERS_SMTP + WORKERS_SUBMISSION) * PER_WORKER))
MIN_RELOADS=10

pf_require

UM_PID=
HUP_PID=
WORKER_PIDS=()
T0=$SECONDS
cleanup() {
    local rc=$? p
    # Only our own jobs by pid (a bare `wait` would also wait for pf_start's smtp-sink).
    for p in "${WORKER_PIDS[@]}" "$HUP_PID"; do
        pf_kill_job "$p" TERM
    done
    pf_kill_job "$UM_PID"
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-reload.XXXXXX)"

UM_LOG=$PF_DIR/um.log
OUT=$PF_DIR/out # per-message swaks transcripts and exit codes
mkdir -p "$OUT"

fail() {
    local f
    {
        echo "FAIL: $*"
        pf_um_report
        for f in "$OUT"/*.rc; do
            [[ -f "$f" ]] || continue
            if [[ "$(cat "$f")" != 0 ]]; then
                echo "----- swaks transcript ${f%.rc}.out (exit $(cat "$f"))"
                cat "${f%.rc}.out" 2>/dev/null || true
                break
            fi
        done
    } >&2
    pf_diag
    exit 1
}

# The daemon drops to nobody and creates its socket in the run directory.
chown nobody "$PF_RUN_DIR"
SOCK=$PF_RUN_DIR/unimilter.sock
CONF=$PF_DIR/um.conf
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' \
    "$UM_SRC/conf/unimilter.conf")
[[ -n "$example_mode" ]] || fail "no mode block in $UM_SRC/conf/unimilter.conf"

# write_conf LEVEL [EXTRA]: atomically replace the config (the daemon never reads half a file).
write_conf() {
    cat >"$CONF.new" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
log = { target = "stderr"; level = "$1"; };
debug = { trace_header = true; };
control_socket = "$PF_RUN_DIR/control.sock";
ratelimit = { state_file = "$PF_RUN_DIR/ratelimit.state"; };
reports = { history_file = "$PF_RUN_DIR/dmarc-history.sqlite"; };
$example_mode
${2:-}
CONF
    mv -f "$CONF.new" "$CONF"
}

write_conf info
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$CONF" >>"$UM_LOG" 2>&1 &
UM_PID=$!
for ((i = 0; i < 200; i++)); do
    if [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG"; then break; fi
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    sleep 0.05
done
[[ -S "$SOCK" ]] || fail "unimilter did not listen on $SOCK"

pf_set_milters "unix:$SOCK" "unix:$SOCK"
pf_postconf milter_command_timeout=10s
pf_start

# worker KIND N: send PER_WORKER messages one after another to the smtp or submission port;
# message "KIND-N-J" leaves OUT/KIND-N-J.rc (swaks' exit code) and .out (transcript).
worker() {
    local kind=$1 n=$2 j id rc
    for ((j = 1; j <= PER_WORKER; j++)); do
        id=$kind-$n-$j
        rc=0
        # Sender domain in .test: no SPF/DMARC record anywhere, whatever DNS CI has.
        PF_SWAKS_OUT=$OUT/$id.out "pf_send_$kind" --from "w$n@sender.unimilter.test" \
            --to bob@example.com --header "Subject: $id" >/dev/null 2>&1 || rc=$?
        echo "$rc" >"$OUT/$id.rc"
    done
}

# hupper: SIGHUP every 0.1-0.2 s until $PF_DIR/stop-hup exists; every 4th signal toggles
# log.level between info and debug first; at the 8th, an invalid config (unknown setting)
# is in place, and it is restored as soon as the daemon has logged the rejection.
hupper() {
    local i=0 level=info k
    while [[ ! -e "$PF_DIR/stop-hup" ]]; do
        i=$((i + 1))
        if ((i == 8)); then
            write_conf "$level" 'bogus_setting = 1;'
            kill -HUP "$UM_PID" || return 1
            echo "$i" >>"$PF_DIR/hups"
            for ((k = 0; k < 100; k++)); do
                grep -q 'new configuration rejected' "$UM_LOG" && break
                sleep 0.05
            done
            write_conf "$level"
        elif ((i % 4 == 0)); then
            if [[ $level == info ]]; then level=debug; else level=info; fi
            write_conf "$level"
        fi
        kill -HUP "$UM_PID" || return 1
        echo "$i" >>"$PF_DIR/hups"
        sleep "0.1$((RANDOM % 10))"
    done
}

hupper &
HUP_PID=$!
sleep 0.3 # a few reloads before the first message
for ((n = 1; n <= WORKERS_SMTP; n++)); do worker smtp "$n" & WORKER_PIDS+=($!); done
for ((n = 1; n <= WORKERS_SUBMISSION; n++)); do worker submission "$n" & WORKER_PIDS+=($!); done
for p in "${WORKER_PIDS[@]}"; do wait "$p" || true; done
WORKER_PIDS=()
sleep 0.3 # a few reloads after the last message
touch "$PF_DIR/stop-hup"
hup_rc=0
wait "$HUP_PID" || hup_rc=$?
HUP_PID=
((hup_rc == 0)) || fail "the SIGHUP loop could not signal unimilter (pid $UM_PID gone?)"
hups=$(grep -c . "$PF_DIR/hups" || true)
echo "sent $TOTAL messages with $hups SIGHUPs in $((SECONDS - T0)) s"

# Every session succeeded.
sent=0
for f in "$OUT"/*.rc; do
    [[ -f "$f" ]] || continue
    sent=$((sent + 1))
    [[ "$(cat "$f")" == 0 ]] || fail "swaks for $(basename "${f%.rc}") exited $(cat "$f")"
done
((sent == TOTAL)) || fail "only $sent of $TOTAL swaks runs finished"

# Every message delivered, once, with the mode of its port.
pf_wait_delivered "$TOTAL" 60 || fail "not every message was delivered"
sleep 0.5
got=$(pf_sink_count)
((got == TOTAL)) || fail "$got messages in the sink, want $TOTAL"
for f in $(pf_sink_files); do
    subj=$(sed -n 's/^Subject: //p' "$f" | awk 'NR == 1')
    case $subj in
    smtp-*) want=inbound ;;
    submission-*) want=outbound ;;
    *) fail "unexpected message in the sink: $f (Subject: $subj)" ;;
    esac
    hdrs=$(grep -i '^X-Unimilter-Mode:' "$f" || true)
    [[ "$hdrs" == "X-Unimilter-Mode: $want" ]] ||
        fail "$subj: delivered with X-Unimilter-Mode header(s) '$hdrs', want exactly one '$want'"
done
dups=$(for f in $(pf_sink_files); do sed -n 's/^Subject: //p' "$f" | awk 'NR == 1'; done |
    sort | uniq -d)
[[ -z "$dups" ]] || fail "delivered more than once: $dups"

# Nothing deferred, held or stuck anywhere in Postfix's queues.
for q in maildrop incoming active deferred hold corrupt; do
    n=$(find "$PF_QUEUE/$q" -type f 2>/dev/null | grep -c . || true)
    ((n == 0)) || fail "$n message(s) in Postfix's $q queue"
done

# Postfix saw no milter trouble.
MILTER_TROUBLE='milter.*(error|timeout|unavailable|fail)|milter-reject|milter_default_action'
MILTER_TROUBLE+='|warning:.*milter'
if pf_log_grep -i "$MILTER_TROUBLE" >/dev/null; then
    fail "milter trouble in the Postfix log: $(pf_log_grep -i 'milter' | tail -n 10)"
fi

# The daemon: same process, one verdict per message, reloads logged, one rejection.
kill -0 "$UM_PID" 2>/dev/null || fail "unimilter (pid $UM_PID) is gone"
n=$(grep -c 'event=verdict ' "$UM_LOG" || true)
((n == TOTAL)) || fail "$n verdict lines, want $TOTAL"
n_in=$(grep -c 'event=verdict .*mode=inbound ' "$UM_LOG" || true)
n_out=$(grep -c 'event=verdict .*mode=outbound ' "$UM_LOG" || true)
((n_in == WORKERS_SMTP * PER_WORKER && n_out == WORKERS_SUBMISSION * PER_WORKER)) ||
    fail "verdicts: $n_in inbound, $n_out outbound; want $((WORKERS_SMTP * PER_WORKER))" \
        "and $((WORKERS_SUBMISSION * PER_WORKER))"
reloads=$(grep -c 'event=reload msg="configuration .* loaded"' "$UM_LOG" || true)
rejected=$(grep -c 'event=reload msg="new configuration rejected' "$UM_LOG" || true)
((rejected == 1)) || fail "$rejected 'new configuration rejected' lines, want exactly 1"
want="the running one stays: $CONF:[0-9]*: bogus_setting: unknown setting"
grep -q "new configuration rejected, $want" "$UM_LOG" ||
    fail "the rejection does not name file:line and setting: $(grep 'rejected' "$UM_LOG")"
((reloads >= MIN_RELOADS)) ||
    fail "only $reloads reloads logged for $hups SIGHUPs (want >= $MIN_RELOADS)"
# (awk reads to the end: an early exit could SIGPIPE the writer, fatal under pipefail)
first=$(awk '/event=verdict / && !f { f = NR } END { print f }' "$UM_LOG")
last=$(awk '/event=verdict / { l = NR } END { print l }' "$UM_LOG")
during=$(sed -n "${first},${last}p" "$UM_LOG" | grep -c 'event=reload msg="configuration' || true)
((during >= MIN_RELOADS / 2)) ||
    fail "only $during reloads happened between the first and the last message"
((reloads + rejected <= hups)) ||
    fail "$reloads + $rejected reloads logged, but only $hups SIGHUPs sent"
grep -q 'level=debug\|debug:' "$UM_LOG" || fail "log.level = debug never took effect"
! grep -q 'libmilter stopped without being asked' "$UM_LOG" ||
    fail "libmilter took a SIGHUP as stop"
! grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" ||
    fail "sanitizer report in the daemon log"

# SIGTERM: exit 0.
kill -TERM "$UM_PID"
rc=0
wait "$UM_PID" || rc=$?
UM_PID=
((rc == 0)) || fail "unimilter exited $rc after SIGTERM, want 0"
# The only error or warning in its whole life is the rejected configuration.
bad=$(grep -E '\] (err|warning): ' "$UM_LOG" | grep -v 'new configuration rejected' || true)
[[ -z "$bad" ]] || fail "errors/warnings in the daemon log: $bad"
echo "PASS t_reload_traffic ($TOTAL messages, $hups SIGHUPs, $reloads reloads" \
    "($during while mail flowed) + $rejected rejected, $((SECONDS - T0)) s)"
