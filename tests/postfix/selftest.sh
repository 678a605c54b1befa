#!/usr/bin/env bash
# tests/postfix/selftest.sh - exercise tests/postfix/lib.sh without any milter.
# Not named t_*.sh on purpose: ctest does not run it. Usage: tests/postfix/selftest.sh
# Exit 0 = pass, 77 = skipped (tools missing, not under CI=true), other = failure.
# The bash -c '...' checks below get their values as "$1"... on purpose.
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"

pf_require

fails=0
ok() { printf 'ok   - %s\n' "$*"; }
not_ok() {
    printf 'FAIL - %s\n' "$*"
    fails=$((fails + 1))
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

start_ts=$SECONDS
dir=$(mktemp -d "${TMPDIR:-/tmp}/um-pf-selftest.XXXXXX")
trap 'pf_teardown' EXIT
pf_setup "$dir"
printf '# instance %s: smtp=%s submission=%s sink=%s\n' \
    "$PF_DIR" "$PF_SMTP_PORT" "$PF_SUBMISSION_PORT" "$PF_SINK_PORT"

# The instance's configuration as tests/postfix/README.md describes it: loopback only,
# relaying to the sink, our milter with tempfail as the default action.
check "postconf: loopback only, ipv4" \
    test "$(postconf -c "$PF_CONF" -h inet_interfaces inet_protocols | tr '\n' ' ')" = "127.0.0.1 ipv4 "
check "postconf: relayhost is the sink" \
    test "$(postconf -c "$PF_CONF" -h relayhost)" = "[127.0.0.1]:$PF_SINK_PORT"
check "postconf: milter_default_action = tempfail" \
    test "$(postconf -c "$PF_CONF" -h milter_default_action)" = tempfail
check "postconf -n reports no unknown parameters" \
    bash -c '! postconf -c "$1" -n 2>&1 >/dev/null | grep -q warning' _ "$PF_CONF"
check "master.cf: submission sets milter_macro_daemon_name=ORIGINATING" \
    bash -c 'postconf -c "$1" -P "$2/inet/milter_macro_daemon_name" | grep -q "= ORIGINATING$"' \
    _ "$PF_CONF" "$PF_SUBMISSION_PORT"

# A header_checks HOLD rule, set before start (no reload), to exercise pf_wait_held.
printf '/^Subject: selftest hold$/ HOLD\n' >"$PF_CONF/header_checks"
pf_postconf "header_checks=regexp:$PF_CONF/header_checks"

pf_start
check "master is running" pf_is_running
master=$(cat "$PF_DIR/master.pid")
sink=$(cat "$PF_DIR/sink.pid")

# 1. One message per inbound port, no milter.
rc=0
pf_send_smtp --from alice@example.org --to bob@example.com \
    --header "Subject: selftest via smtp" --body "hello from smtp" >/dev/null || rc=$?
check "swaks to smtp port exits 0 (got $rc)" test "$rc" -eq 0
rc=0
pf_send_submission --from carol@example.org --to dave@example.com \
    --header "Subject: selftest via submission" --body "hello from submission" >/dev/null || rc=$?
check "swaks to submission port exits 0 (got $rc)" test "$rc" -eq 0

# 2. One locally submitted message (sendmail -C, pickup, non_smtpd path).
printf 'From: root@example.org\nTo: erin@example.com\nSubject: selftest via sendmail\n\nhello\n' \
    >"$PF_DIR/local.eml"
rc=0
pf_sendmail_local root@example.org erin@example.com "$PF_DIR/local.eml" || rc=$?
check "sendmail -C exits 0 (got $rc)" test "$rc" -eq 0

check "3 messages reach the sink" pf_wait_delivered 3 20
for subj in "selftest via smtp" "selftest via submission" "selftest via sendmail"; do
    # shellcheck disable=SC2046
    check "captured message with Subject: $subj" \
        grep -qx "Subject: $subj" $(pf_sink_files)
done
# shellcheck disable=SC2046
check "captured files hold the full header (Received by our instance)" \
    grep -q "by $PF_HOSTNAME (Postfix)" $(pf_sink_files)
check "maillog written without syslog (status=sent)" pf_wait_log 'status=sent' 5
check "pf_log_grep -c counts 3 status=sent" \
    test "$(pf_log_grep -c 'status=sent \(250')" -eq 3
check "submission smtpd logs under its own syslog_name" pf_log_grep -q '/submission/smtpd\['
check "hold queue is empty" test "$(pf_held_count)" -eq 0
rc=0
pf_send_smtp --from alice@example.org --to bob@example.com \
    --header "Subject: selftest hold" >/dev/null || rc=$?
check "swaks for the held message exits 0 (got $rc)" test "$rc" -eq 0
check "pf_wait_held 1" pf_wait_held 1 10
check "postqueue -p marks it held (!)" \
    bash -c 'postqueue -c "$1" -p | grep -q "^[0-9A-F]*!"' _ "$PF_CONF"

# 3. A unix-socket milter that does not exist: milter_default_action=tempfail gives a 4xx.
pf_set_milters "unix:$PF_RUN_DIR/dead.sock" ""
rc=0
pf_send_smtp --from alice@example.org --to bob@example.com \
    --header "Subject: selftest dead milter" >/dev/null || rc=$?
check "swaks fails against a dead milter (rc=$rc, want 23/24/25)" \
    test "$rc" -ge 23 -a "$rc" -le 25
check "swaks saw a 451 4.7.1" grep -q '^<\*\* 451 4\.7\.1' "$PF_SWAKS_OUT"
check "maillog: connect to dead milter socket" \
    pf_wait_log "connect to Milter service unix:$PF_RUN_DIR/dead.sock: No such file" 5
check "maillog: milter-reject 451" pf_wait_log 'milter-reject: .* 451 4\.7\.1' 5

# 4. A socket that exists (0666, in PF_RUN_DIR 0755) but is no milter: proves smtpd, running as
#    user postfix, can connect to a caller-provided unix socket; the session then tempfails.
if command -v python3 >/dev/null 2>&1; then
    sock=$PF_RUN_DIR/fake.sock
    python3 - "$sock" >"$PF_DIR/fake.log" 2>&1 <<'EOF' &
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(8)
s.settimeout(20)
try:
    c, _ = s.accept()
    print("accepted", flush=True)
    c.close()
except socket.timeout:
    print("timeout", flush=True)
s.close()
os.unlink(path)
EOF
    fake=$!
    for _ in $(seq 50); do [[ -S "$sock" ]] && break; sleep 0.1; done
    pf_set_milters "unix:$sock" ""
    rc=0
    pf_send_smtp --from alice@example.org --to bob@example.com \
        --header "Subject: selftest fake milter" >/dev/null || rc=$?
    wait "$fake" || true
    check "smtpd connected to the caller's unix socket" grep -qx accepted "$PF_DIR/fake.log"
    check "swaks fails against a non-milter socket (rc=$rc)" test "$rc" -ge 23 -a "$rc" -le 25
    check "maillog: broken handshake with the fake milter" \
        pf_wait_log "milter unix:$sock: read error in initial handshake" 5
fi
check "still exactly 3 messages in the sink" test "$(pf_sink_count)" -eq 3

# 5. Stop: nothing of ours may remain.
pf_stop
check "no process left in the Postfix session" bash -c '! ps -o pid= -s "$1" | grep -q .' _ "$master"
check "smtp-sink exited" bash -c '! kill -0 "$1" 2>/dev/null' _ "$sink"
check "pf_stop is idempotent" pf_stop

printf '# %d failure(s), %ds\n' "$fails" $((SECONDS - start_ts))
if ((fails)); then
    PF_KEEP=1
    exit 1
fi
exit 0
