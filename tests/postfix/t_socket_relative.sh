#!/usr/bin/env bash
# Real Postfix, NOT chrooted (as Fedora and RHEL ship it): the README's relative milter path
# `unix:unimilter/unimilter.sock` reaches a socket in $queue_directory/unimilter/, because
# Postfix daemons chdir to the queue directory. The deployment test (tests/deploy/) proves
# the same for Debian's chrooted smtpd and cleanup; together they cover both layouts with one
# set of README lines. Checked for smtpd (smtp and submission) and cleanup (local sendmail):
# each message is delivered with exactly one X-Unimilter-Mode header of the right mode, and
# Postfix logs no milter trouble.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}

pf_require

UM_PID=
UM_LOG=
cleanup() {
    local rc=$?
    pf_kill_job "$UM_PID"
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-rel.XXXXXX)"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        [[ -f "$PF_SWAKS_OUT" ]] && { echo "----- last swaks transcript"; cat "$PF_SWAKS_OUT"; }
    } >&2
    pf_diag
    exit 1
}

# This instance really runs nothing chrooted (else the test would prove nothing new).
if awk '!/^#/ && NF >= 8 && $5 == "y"' "$PF_CONF/master.cf" | grep -q .; then
    fail "the rig's master.cf has chrooted services: $(awk '!/^#/ && NF >= 8 && $5 == "y"' "$PF_CONF/master.cf")"
fi

# The socket where the README puts it, relative to this instance's queue directory.
install -d -o nobody -m 0755 "$PF_QUEUE/unimilter"
SOCK=$PF_QUEUE/unimilter/unimilter.sock
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$UM_SRC/conf/unimilter.conf")
cat >"$PF_DIR/um.conf" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
log = { target = "stderr"; level = "info"; };
debug = { trace_header = true; };
control_socket = "";
ratelimit = { state_file = ""; };
reports = { history_file = ""; };
$example_mode
CONF
UM_LOG=$PF_DIR/um.log
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$PF_DIR/um.conf" >>"$UM_LOG" 2>&1 &
UM_PID=$!
for ((i = 0; i < 200; i++)); do
    [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG" && break
    kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
    sleep 0.05
done
[[ -S "$SOCK" ]] || fail "unimilter did not listen on $SOCK"

# main.cf exactly as README.md's Postfix quick start writes it: relative paths.
pf_set_milters "unix:unimilter/unimilter.sock" "unix:unimilter/unimilter.sock"
"$PF_POSTCONF" -c "$PF_CONF" -P "cleanup/unix/milter_macro_daemon_name=ORIGINATING"
pf_postconf milter_command_timeout=10s milter_default_action=tempfail
pf_start

FROM=alice@sender.unimilter.test
RCPT=bob@example.com
pf_send_smtp --from "$FROM" --to "$RCPT" --header "Subject: rel-smtp" >/dev/null || fail "smtp: swaks exited $?"
pf_send_submission --from "$FROM" --to "$RCPT" --header "Subject: rel-submission" >/dev/null ||
    fail "submission: swaks exited $?"
printf 'From: %s\nTo: %s\nSubject: rel-local\n\nlocal\n' "$FROM" "$RCPT" >"$PF_DIR/local.eml"
pf_sendmail_local "$FROM" "$RCPT" "$PF_DIR/local.eml" || fail "sendmail exited $?"
pf_wait_delivered 3 30 || fail "not all 3 messages were delivered"

for pair in rel-smtp:inbound rel-submission:outbound rel-local:outbound; do
    subj=${pair%%:*} want=${pair#*:}
    # shellcheck disable=SC2046 # pf_sink_files prints plain paths, one per line
    f=$(grep -l "^Subject: $subj\$" $(pf_sink_files)) || fail "$subj: not delivered"
    modes=$(grep -i '^X-Unimilter-Mode:' "$f" || true)
    [[ "$modes" == "X-Unimilter-Mode: $want" ]] || fail "$subj: '$modes', want one 'X-Unimilter-Mode: $want'"
    echo "ok: $subj through unix:unimilter/unimilter.sock: X-Unimilter-Mode: $want"
done
if pf_log_grep -i 'milter.*(error|timeout|unavailable|fail|No such file)|warning:.*milter' >/dev/null; then
    fail "milter trouble in the Postfix log: $(pf_log_grep -i 'milter' | tail -n 5)"
fi
echo "PASS t_socket_relative: a non-chrooted Postfix (smtpd and cleanup) reaches \$queue_directory/unimilter/unimilter.sock by the relative path"
