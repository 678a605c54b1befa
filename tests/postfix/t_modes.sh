#!/usr/bin/env bash
# Real Postfix: the example config's mode rules work out of the box with Postfix's
# conventions. Proven from each DELIVERED message's X-Unimilter-Mode header (trace_header)
# and from the daemon's verdict log line for that queue id:
#   1. example rules: smtp port -> inbound; submission (-o milter_macro_daemon_name=
#      ORIGINATING) -> outbound; local sendmail (non_smtpd_milters, run by cleanup) ->
#      inbound with the default milter_macro_daemon_name ($myhostname);
#   2. -o milter_macro_daemon_name=ORIGINATING on the pickup service changes nothing (pickup
#      does not talk to milters); on the cleanup service it makes local mail outbound, while
#      smtp stays inbound (smtpd runs smtpd_milters itself, cleanup does not re-run them);
#   3. a rule on {daemon_port} alone (no daemon_name rule) makes the submission port
#      outbound: Postfix sends {daemon_port} because the daemon asks for it with
#      smfi_setsymlist (it is not in Postfix's default milter_connect_macros).
# Every message has exactly one X-Unimilter-Mode header and one verdict line; SIGTERM exits 0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}

pf_require

UM_PID=
UM_LOG=
T0=$SECONDS
cleanup() {
    local rc=$?
    pf_kill_job "$UM_PID"
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-modes.XXXXXX)"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        if [[ -f "$PF_SWAKS_OUT" ]]; then
            echo "----- last swaks transcript"
            cat "$PF_SWAKS_OUT"
        fi
    } >&2
    pf_diag
    exit 1
}

# The daemon drops to nobody and (re)creates its socket in the run directory.
chown nobody "$PF_RUN_DIR"
SOCK=$PF_RUN_DIR/unimilter.sock
EXAMPLE=$UM_SRC/conf/unimilter.conf

# write_conf FILE MODE-BLOCK: a config on the private socket with stderr logs and the trace
# header; MODE-BLOCK is the whole `mode = {...};` text.
write_conf() {
    cat >"$1" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
log = { target = "stderr"; level = "info"; };
debug = { trace_header = true; };
control_socket = "$PF_RUN_DIR/control.sock";
ratelimit = { state_file = "$PF_RUN_DIR/ratelimit.state"; };
reports = { history_file = "$PF_RUN_DIR/dmarc-history.sqlite"; };
$2
CONF
}

# The example's mode block, verbatim: from "mode = {" to the first "};" at column 0.
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$EXAMPLE")
grep -q 'daemon_name = "ORIGINATING"; mode = "outbound"' <<<"$example_mode" ||
    fail "cannot find the ORIGINATING rule in the mode block of $EXAMPLE"

# um_start CONF LOG: foreground daemon in the background, wait until it listens.
um_start() {
    UM_LOG=$2
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$1" >>"$UM_LOG" 2>&1 &
    UM_PID=$!
    local i
    for ((i = 0; i < 200; i++)); do
        if [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG"; then return 0; fi
        kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
        sleep 0.05
    done
    fail "unimilter did not listen on $SOCK"
}

# um_stop: SIGTERM must make it exit 0.
um_stop() {
    local rc=0
    kill -TERM "$UM_PID"
    wait "$UM_PID" || rc=$?
    UM_PID=
    ((rc == 0)) || fail "unimilter exited $rc after SIGTERM, want 0"
}

# Message files handed to the sink so far; new_delivery waits for the next one.
SEEN=0
DELIVERED=
new_delivery() {
    local want=$((SEEN + 1))
    pf_wait_delivered "$want" 30 || fail "message $want was not delivered"
    DELIVERED=$(pf_sink_files | sed -n "${want}p")
    SEEN=$want
}

# check_mode NAME WANT: the message just delivered carries exactly one X-Unimilter-Mode
# header, with value WANT, and the daemon logged one verdict line for its queue id with
# mode=WANT. The Postfix queue id comes from the topmost Postfix Received header.
check_mode() {
    local name=$1 want=$2 f=$DELIVERED hdrs qid n
    grep -q "^Subject: $name\$" "$f" || fail "$name: the delivered file is another message: $f"
    hdrs=$(grep -i '^X-Unimilter-Mode:' "$f" || true)
    n=$(grep -c . <<<"$hdrs" || true)
    ((n == 1)) || fail "$name: $n X-Unimilter-Mode headers in the delivered message, want 1: $hdrs"
    [[ "$hdrs" == "X-Unimilter-Mode: $want" ]] ||
        fail "$name: delivered with '$hdrs', want 'X-Unimilter-Mode: $want'"
    # "by mta.unimilter.test (Postfix) with ESMTP id 4Xyz..." or "(Postfix, from userid 0) id".
    qid=$(awk '/^$/ { exit } { print }' "$f" | tr '\n\t' '  ' | tr -s ' ' |
        grep -oE 'by [^ ]+ \(Postfix[^)]*\)( with [A-Z]+)? id [0-9A-Za-z]+' |
        awk 'NR == 1 { print $NF }') || qid=""
    [[ -n "$qid" ]] || fail "$name: no Postfix queue id in the delivered message"
    n=$(grep -c "event=verdict .*qid=\"\\?$qid\"\\? " "$UM_LOG" || true)
    ((n == 1)) || fail "$name: $n verdict lines for queue id $qid, want 1"
    grep -q "event=verdict .*qid=\"\\?$qid\"\\? .*mode=\"\\?$want\"\\? " "$UM_LOG" ||
        fail "$name: verdict line for $qid has the wrong mode: $(grep "qid=\"\\?$qid" "$UM_LOG")"
    printf 'ok: %-28s X-Unimilter-Mode: %-8s (queue id %s)\n' "$name" "$want" "$qid"
}

# Senders in .test (RFC 2606): no SPF/DMARC record anywhere, whatever DNS CI has.
FROM=alice@sender.unimilter.test
RCPT=bob@example.com
send_smtp() {
    pf_send_smtp --from "$FROM" --to "$RCPT" --header "Subject: $1" >/dev/null ||
        fail "$1: swaks to the smtp port exited $?"
}
send_submission() {
    pf_send_submission --from "$FROM" --to "$RCPT" --header "Subject: $1" >/dev/null ||
        fail "$1: swaks to the submission port exited $?"
}
send_local() {
    printf 'From: %s\nTo: %s\nSubject: %s\n\nlocal %s\n' "$FROM" "$RCPT" "$1" "$1" >"$PF_DIR/$1.eml"
    pf_sendmail_local "$FROM" "$RCPT" "$PF_DIR/$1.eml" || fail "$1: sendmail exited $?"
}

# Set or clear "-o milter_macro_daemon_name=ORIGINATING" on one master.cf service.
master_o() {
    local svc=$1 on=$2
    "$PF_POSTCONF" -c "$PF_CONF" -P -X "$svc/unix/milter_macro_daemon_name" 2>/dev/null || true
    if [[ "$on" == on ]]; then
        "$PF_POSTCONF" -c "$PF_CONF" -P "$svc/unix/milter_macro_daemon_name=ORIGINATING"
        grep -qx "$svc/unix/milter_macro_daemon_name = ORIGINATING" \
            <<<"$("$PF_POSTCONF" -c "$PF_CONF" -P)" ||
            fail "could not set -o milter_macro_daemon_name=ORIGINATING on $svc in master.cf"
    fi
    pf_reload
}

# ---- 1. the example's rules, Postfix's default conventions
write_conf "$PF_DIR/um.conf" "$example_mode"
um_start "$PF_DIR/um.conf" "$PF_DIR/um.log"
pf_set_milters "unix:$SOCK" "unix:$SOCK"
pf_postconf milter_command_timeout=10s
pf_start

send_smtp smtp-example
new_delivery
check_mode smtp-example inbound
send_submission submission-example
new_delivery
check_mode submission-example outbound
send_local local-default
new_delivery
check_mode local-default inbound

# ---- 2. where does milter_macro_daemon_name for non_smtpd_milters come from?
master_o pickup on
send_local local-pickup-o
new_delivery
check_mode local-pickup-o inbound # pickup's setting is not what cleanup sends
master_o pickup off
master_o cleanup on
send_local local-cleanup-o
new_delivery
check_mode local-cleanup-o outbound
send_smtp smtp-with-cleanup-o
new_delivery
check_mode smtp-with-cleanup-o inbound
send_submission submission-with-cleanup-o
new_delivery
check_mode submission-with-cleanup-o outbound
master_o cleanup off
um_stop

# ---- 3. a port rule alone: {daemon_port} reaches the milter
port_mode="mode = {
    default = \"inbound\";
    rules = ( { daemon_port = $PF_SUBMISSION_PORT; mode = \"outbound\"; } );
};"
write_conf "$PF_DIR/um-port.conf" "$port_mode"
sed -i 's/level = "info"/level = "debug"/' "$PF_DIR/um-port.conf" # connect lines show the macros
um_start "$PF_DIR/um-port.conf" "$PF_DIR/um-port.log"
send_submission submission-port
new_delivery
check_mode submission-port outbound
send_smtp smtp-port
new_delivery
check_mode smtp-port inbound
grep -q "event=connect .*daemon_port=\"\\?$PF_SUBMISSION_PORT\"\\?\( \|\$\)" "$UM_LOG" ||
    fail "no connect line with daemon_port=$PF_SUBMISSION_PORT: $(grep 'event=connect' "$UM_LOG")"
grep -q "event=connect .*daemon_port=\"\\?$PF_SMTP_PORT\"\\?\( \|\$\)" "$UM_LOG" ||
    fail "no connect line with daemon_port=$PF_SMTP_PORT: $(grep 'event=connect' "$UM_LOG")"
! grep -q 'sent no {daemon_port} macro' "$UM_LOG" ||
    fail "the daemon says Postfix sent no {daemon_port}: $(grep 'daemon_port' "$UM_LOG")"
um_stop

# The daemons logged no error or warning (their logs after SIGTERM are complete).
bad=$(grep -hE '\] (err|warning): ' "$PF_DIR/um.log" "$PF_DIR/um-port.log" || true)
[[ -z "$bad" ]] || fail "errors/warnings in the daemon logs: $bad"

# Nothing left behind in Postfix's queues, no milter trouble in its log.
q=$("$PF_POSTQUEUE" -c "$PF_CONF" -p 2>&1 || true)
grep -q 'Mail queue is empty' <<<"$q" || fail "queue not empty: $q"
MILTER_TROUBLE='milter.*(error|timeout|unavailable|fail)|milter-reject|milter_default_action'
MILTER_TROUBLE+='|warning:.*milter'
if pf_log_grep -i "$MILTER_TROUBLE" >/dev/null; then
    fail "milter trouble in the Postfix log: $(pf_log_grep -i 'milter' | tail -n 5)"
fi
((SEEN == $(pf_sink_count))) || fail "$(pf_sink_count) messages in the sink, want $SEEN"
echo "PASS t_modes ($SEEN messages, $((SECONDS - T0)) s)"
