#!/usr/bin/env bash
# Real Postfix + real SASL (Cyrus sasldb): per-sender recipient rate limiting end to end.
#   1. action tempfail, limit N=3, key ["sasl","sender"]: alice (SMTP AUTH PLAIN on the
#      submission port) gets 2 + 1 recipients accepted; in the second message the 4th
#      recipient is refused with "451 4.7.1" at RCPT while the message still goes to the
#      accepted one; a further message is refused at RCPT (swaks exit 24). bob (another
#      login) and carol (an exempt override) are unaffected. The key is the SASL login
#      ("sasl:alice@unimilter.test"), which only Postfix's {auth_authen} can provide.
#   2. action hold (new config, SIGHUP; counts survive the reload): alice's next message is
#      accepted by Postfix (250) but lands in the hold queue (postqueue -j: queue_name
#      "hold"; maillog milter-hold); bob, now also at N, is held too; exempt carol is
#      delivered; event=ratelimit ... action=hold.
#   3. local submission through the instance's sendmail binary run as user nobody
#      (non_smtpd_milters, like PHP's mail(); cleanup has -o milter_macro_daemon_name=
#      ORIGINATING as README.md says), key ["uid","sasl","sender"]: N messages are delivered,
#      the (N+1)th is refused at end of message (event=ratelimit ... stage=eom
#      action=tempfail). Real Postfix 3.7 behaviour, asserted: cleanup logs "milter-reject:
#      END-OF-MESSAGE ... 4.7.1", sendmail has already exited 0, nothing bounces, and the
#      file stays in the maildrop queue (postqueue -j queue_name "maildrop") for pickup to
#      retry. After a reload to action hold, the next sendmail run makes pickup retry it:
#      it and the new message are both held. The sender key must be uid:<uid of nobody>
#      (from Postfix's "Received: by ... (Postfix, from userid N)"): with Postfix 3.7 it is
#      not - cleanup does not pass that header to non_smtpd_milters - so this is recorded as
#      a daemon bug, the rest of the test still runs, and the test fails at the end.
# Notices (ratelimit.notify.mail_to, submit.via "smtp", the default):
#   1. the relay is down when alice crosses the limit - it accepts the TCP connection and
#      never answers, the worst case - so the notice's first attempt hangs until
#      submit.timeout (3 s) and is logged (event=submit ... result=deferred), while alice's
#      next message is answered in under 2 s all the same (the notice waits in the submit
#      queue's thread, never in a milter thread); an smtp-sink started on the relay port
#      afterwards receives the notice at the daemon's next attempt (result=sent attempts=2);
#   2. in phase 2 the relay is the real Postfix instance's port 25 service: bob's notice
#      (he crosses in phase 2) goes through Postfix (from=<>) to the sink, with the sender,
#      count and limit in it;
#   3. in phase 3 the relay is Postfix's submission port with STARTTLS (a self-signed
#      certificate for IP 127.0.0.1, trusted through submit.ca_file) and Cyrus SASL:
#      starttls "always", user notifier, submit.password_file (0600, the daemon's user);
#      the local sender's notice arrives, Postfix logged the TLS session and
#      sasl_username=notifier@unimilter.test, and the password is nowhere in the daemon log.
# At the end every message is accounted for: delivered recipients (sink X-Rcpt-Args lines),
# held, or refused with a 4xx to the SMTP client / sendmail; nothing else in any queue.
#
# sendmail as a non-root user: Postfix's set-gid postdrop only accepts a non-default config
# directory listed in alternate_config_directories of /etc/postfix/main.cf. The script does
# not change /etc/postfix: it runs sendmail in a private mount namespace (unshare --mount) with
# a private copy of the whole directory bind-mounted over it, whose main.cf is the system one
# (if any: Debian's postfix installed unconfigured, as tools/deps.sh does, creates none) plus
# that one line.
#
# SASL: Debian's Postfix reads the Cyrus application config from $config_directory/sasl/
# (smtpd.conf) - it does not search cyrus_sasl_config_path first - so the file goes there
# (cyrus_sasl_config_path is set to the same directory for other builds). smtpd runs as
# user postfix: the sasldb file is root:postfix 0640.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/postfix/lib.sh
. "$here/lib.sh"
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}

pf_require
for t in saslpasswd2 unshare; do
    if ! command -v "$t" >/dev/null 2>&1; then
        [[ "${CI:-}" == "true" ]] && { echo "FAIL: $t missing (apt-get install sasl2-bin util-linux)" >&2; exit 1; }
        echo "SKIP: $t missing (apt-get install sasl2-bin util-linux)" >&2
        exit 77
    fi
done
if [[ ! -e /usr/lib/x86_64-linux-gnu/sasl2/libsasldb.so && -z "$(find /usr/lib* -name 'libsasldb.so*' 2>/dev/null | head -n1)" ]]; then
    [[ "${CI:-}" == "true" ]] && { echo "FAIL: Cyrus sasldb plugin missing (libsasl2-modules)" >&2; exit 1; }
    echo "SKIP: Cyrus sasldb plugin missing (apt-get install libsasl2-modules)" >&2
    exit 77
fi
unshare --mount true 2>/dev/null || {
    [[ "${CI:-}" == "true" ]] && { echo "FAIL: unshare --mount does not work here (needs CAP_SYS_ADMIN)" >&2; exit 1; }
    echo "SKIP: unshare --mount does not work here (needs CAP_SYS_ADMIN)" >&2
    exit 77
}
"$PF_POSTCONF" -a 2>/dev/null | grep -qx cyrus || { echo "FAIL: this Postfix has no Cyrus SASL" >&2; exit 1; }

N=3
UM_PID=
UM_LOG=
T0=$SECONDS
cleanup() {
    local rc=$?
    pf_kill_job "$UM_PID"
    pf_kill_job "${NOTICE_SINK_PID:-}"
    pf_kill_job "${BLACKHOLE_PID:-}"
    pf_teardown
    exit "$rc"
}
trap cleanup EXIT
pf_setup "$(mktemp -d /tmp/um-pf-rl.XXXXXX)"

fail() {
    {
        echo "FAIL: $*"
        pf_um_report
        if [[ -f "$PF_SWAKS_OUT" ]]; then
            echo "----- last swaks transcript"
            cat "$PF_SWAKS_OUT"
        fi
        echo "----- postqueue -j"
        "$PF_POSTQUEUE" -c "$PF_CONF" -j 2>&1 || true
    } >&2
    pf_diag
    exit 1
}
ok() { printf 'ok: %s\n' "$*"; }

# ---- SASL: sasldb with three users, read by smtpd (user postfix)
REALM=unimilter.test
SASLDIR=$PF_CONF/sasl
mkdir -p "$SASLDIR"
chmod 0755 "$SASLDIR"
for u in alice bob carol notifier; do
    echo "pw-$u" | saslpasswd2 -c -p -f "$SASLDIR/sasldb2" -u "$REALM" "$u" ||
        fail "saslpasswd2 failed for $u"
done
chown root:postfix "$SASLDIR/sasldb2"
chmod 0640 "$SASLDIR/sasldb2"
cat >"$SASLDIR/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $SASLDIR/sasldb2
mech_list: PLAIN LOGIN
EOF
chmod 0644 "$SASLDIR/smtpd.conf"
pf_postconf "cyrus_sasl_config_path=$SASLDIR" smtpd_sasl_type=cyrus smtpd_sasl_path=smtpd \
    "smtpd_sasl_local_domain=$REALM" smtpd_tls_auth_only=no milter_command_timeout=10s
"$PF_POSTCONF" -c "$PF_CONF" -P "$PF_SUBMISSION_PORT/inet/smtpd_sasl_auth_enable=yes"
# Local submissions (non_smtpd_milters, run by cleanup) are outbound, as README.md says.
"$PF_POSTCONF" -c "$PF_CONF" -P "cleanup/unix/milter_macro_daemon_name=ORIGINATING"

# ---- the daemon: drops to nobody; socket and state file in the run directory
chown nobody "$PF_RUN_DIR"
SOCK=$PF_RUN_DIR/unimilter.sock
STATE=$PF_RUN_DIR/rl.state
example_mode=$(awk '/^mode = \{/ { on = 1 } on { print } on && /^\};/ { exit }' "$UM_SRC/conf/unimilter.conf")
grep -q 'daemon_name = "ORIGINATING"; mode = "outbound"' <<<"$example_mode" ||
    fail "cannot find the ORIGINATING rule in conf/unimilter.conf"

# write_conf ACTION KEY-LIST
write_conf() {
    cat >"$PF_DIR/um.conf" <<CONF
socket = "unix:$SOCK";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
control_socket = "";
log = { target = "stderr"; level = "info"; };
$example_mode
ratelimit = {
    limit = $N;
    window = 3600;
    action = "$1";
    key = $2;
    state_file = "$STATE";
    overrides = ( { sender = "sasl:carol@$REALM"; exempt = true; } );
    notify = { mail_to = "ops@x.test"; };
};
submit = { relay = "smtp://127.0.0.1:$NOTICE_RELAY_PORT"; timeout = 3; $NOTICE_SUBMIT_EXTRA };
authserv_id = "mta.unimilter.test";
dns = { servers = ["127.0.0.1@$NOTICE_DNS_PORT"]; timeout = 1; };
reports = { history_file = ""; };
CONF
    "$UM_BIN" -n -c "$PF_DIR/um.conf" >/dev/null 2>&1 ||
        fail "config rejected: $("$UM_BIN" -n -c "$PF_DIR/um.conf" 2>&1)"
}

um_start() {
    UM_LOG=$PF_DIR/um.log
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -c "$PF_DIR/um.conf" >>"$UM_LOG" 2>&1 &
    UM_PID=$!
    local i
    for ((i = 0; i < 200; i++)); do
        if [[ -S "$SOCK" ]] && grep -q 'listening on' "$UM_LOG"; then return 0; fi
        kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
        sleep 0.05
    done
    fail "unimilter did not listen on $SOCK"
}

# um_reload: SIGHUP, wait until the daemon says the new configuration is loaded.
um_reload() {
    local before i new
    before=$(grep -c . "$UM_LOG" || true)
    kill -HUP "$UM_PID"
    for ((i = 0; i < 100; i++)); do
        new=$(tail -n +"$((before + 1))" "$UM_LOG")
        grep -q 'new configuration rejected' <<<"$new" && fail "reload rejected: $new"
        grep -q "configuration .*loaded" <<<"$new" && return 0
        sleep 0.05
    done
    fail "no 'configuration ... loaded' line in the daemon log 5 s after SIGHUP"
}

# ---- accounting: recipients sent, accepted (delivered or held), refused
SENT_RCPTS=0     # recipients we asked for
WANT_DELIVERED=0 # recipients that must reach the sink
WANT_HELD=0      # messages that must sit in the hold queue
REFUSED_4XX=0    # recipients refused with 4xx to the client (SMTP RCPT or sendmail/eom)
HELD_RCPTS=0

# sub USER FROM "RCPT..." WANT-SWAKS-EXIT: one message through the submission port, AUTH PLAIN.
sub() {
    local user=$1 from=$2 rcpts=$3 want=$4 rc=0 name=$5
    local to
    to=$(tr ' ' ',' <<<"$rcpts")
    pf_send_submission --auth PLAIN --auth-user "$user@$REALM" --auth-password "pw-$user" \
        --from "$from" --to "$to" --header "Subject: $name" >/dev/null || rc=$?
    ((rc == want)) || fail "$name: swaks exited $rc, want $want"
    grep -q '^<-  235 ' "$PF_SWAKS_OUT" || fail "$name: SASL authentication did not succeed"
    SENT_RCPTS=$((SENT_RCPTS + $(wc -w <<<"$rcpts")))
}

# rcpt_replies: the RCPT replies of the last swaks session, one per line ("250 ..." / "451 ...").
rcpt_replies() {
    awk '/^ -> RCPT TO:/ { getline; sub(/^<\*?\*?-? +/, ""); print }' "$PF_SWAKS_OUT"
}

NOTICE_SUBJECT='Subject: unimilter: sender over its rate limit'
sink_rcpts() { # recipients delivered so far: X-Rcpt-Args lines across captured files
    local f n=0
    for f in $(pf_sink_files); do
        grep -q "^$NOTICE_SUBJECT" "$f" && continue # the daemon's notices are not test mail
        n=$((n + $(grep -c '^X-Rcpt-Args:' "$f" || true)))
    done
    echo "$n"
}

wait_sink_rcpts() { # N [TIMEOUT]
    local want=$1 end=$((SECONDS + ${2:-30})) got
    while ((SECONDS <= end)); do
        got=$(sink_rcpts)
        ((got >= want)) && { ((got == want)) || fail "sink has $got recipients, want $want"; return 0; }
        "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true
        sleep 0.3
    done
    fail "sink has $(sink_rcpts) recipients after ${2:-30}s, want $want"
}

rl_lines() { grep -cE "event=ratelimit .*sender=\"?$1\"? .*action=\"?$2\"?( |\$)" "$UM_LOG" || true; }

# ---- notices: the relay of phase 1 is down at first (nothing listens on its port)
ports=$(_pf_pick_ports 2) || fail "no free ports for the notice relay"
{ read -r NOTICE_RELAY_PORT; read -r NOTICE_DNS_PORT; } <<<"$ports"
NOTICE_DIR=$PF_DIR/notice-sink
mkdir -p "$NOTICE_DIR"
chown nobody: "$NOTICE_DIR"
NOTICE_SINK_PID=
NOTICE_SUBMIT_EXTRA=
# The dead relay: listens, never accepts, never says a word.
/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(600)' "$NOTICE_RELAY_PORT" &
BLACKHOLE_PID=$!

# ======== 1. tempfail over SMTP
write_conf tempfail '["sasl", "sender"]'
um_start
pf_set_milters "unix:$SOCK" "unix:$SOCK"
pf_start

sub alice alice@example.org "a1@x.test a2@x.test" 0 alice-1
WANT_DELIVERED=$((WANT_DELIVERED + 2))
# 3rd recipient accepted, 4th refused at RCPT: swaks goes on with the accepted one (exit 0).
sub alice alice@example.org "a3@x.test a4@x.test" 0 alice-2
replies=$(rcpt_replies)
[[ "$(sed -n 1p <<<"$replies")" == 250* ]] || fail "alice-2: 1st RCPT not accepted: $replies"
sed -n 2p <<<"$replies" | grep -qE '^451 4\.7\.1 .*rate limit' ||
    fail "alice-2: 2nd RCPT not refused with 451 4.7.1: $replies"
ok "alice: 3rd recipient 250, 4th: $(sed -n 2p <<<"$replies")"
WANT_DELIVERED=$((WANT_DELIVERED + 1))
REFUSED_4XX=$((REFUSED_4XX + 1))
t_ms=$(date +%s%3N)
sub alice alice@example.org "a5@x.test" 24 alice-3 # every recipient refused: swaks exit 24
t_ms=$(($(date +%s%3N) - t_ms))
((t_ms < 2000)) || fail "alice-3 took $t_ms ms while the notice relay hangs: mail waited for the notice"
grep -qE 'event=submit .*result=' "$UM_LOG" && fail "the notice attempt ended before alice-3 was answered: the test proves nothing"
rcpt_replies | grep -qE '^451 4\.7\.1 ' || fail "alice-3: RCPT not refused with 451 4.7.1"
REFUSED_4XX=$((REFUSED_4XX + 1))
ok "alice: over the limit, whole message refused at RCPT (451 4.7.1)"

# The notice for alice could not be sent (relay hangs) and is queued for a retry; alice-3
# above was answered meanwhile. Now the relay comes up and gets it at the next attempt.
for ((i = 0; i < 100; i++)); do
    grep -qE 'event=submit what=ratelimit-notice to=ops@x\.test .*result=deferred attempts=1 ' "$UM_LOG" && break
    sleep 0.1
done
((i < 100)) || fail "no event=submit ... result=deferred line while the notice relay is down"
grep -qE 'event=submit .*result=sent' "$UM_LOG" && fail "a notice was sent while the relay was down"
pf_kill_job "$BLACKHOLE_PID"
BLACKHOLE_PID=
ok "alice-3 answered in $t_ms ms while the notice hung on the dead relay"
ok "notice: relay down -> $(grep -oE 'event=submit .*result=deferred.*' "$UM_LOG" | head -n1 | cut -c1-160)"
(cd / && exec "$PF_SMTP_SINK" -4 -u nobody -d "$NOTICE_DIR/%Y%m%d%H%M%S." \
    "127.0.0.1:$NOTICE_RELAY_PORT" 8 >"$PF_DIR/notice-sink.log" 2>&1 </dev/null) &
NOTICE_SINK_PID=$!
for ((i = 0; i < 150; i++)); do
    grep -qE 'event=submit what=ratelimit-notice .*result=sent attempts=2( |$)' "$UM_LOG" && break
    sleep 0.1
done
((i < 150)) || fail "the notice was not sent within 15 s of the relay coming up"
sleep 0.3
nf=$(find "$NOTICE_DIR" -type f | head -n1)
[[ -n "$nf" ]] || fail "the notice relay captured nothing"
grep -q "^$NOTICE_SUBJECT: sasl:alice@$REALM" "$nf" || fail "notice without alice's key: $(cat "$nf")"
grep -qE '^X-Rcpt-Args: <ops@x\.test>' "$nf" || grep -q 'ops@x.test' "$nf" || fail "notice not to ops@x.test: $(cat "$nf")"
grep -q '^Recipients:  4 in the last 3600 seconds (limit 3)' "$nf" || fail "notice lacks the count: $(cat "$nf")"
ok "notice: relay up -> $(grep -oE 'event=submit .*result=sent.*' "$UM_LOG" | head -n1 | cut -c1-160)"
pf_kill_job "$NOTICE_SINK_PID" TERM
NOTICE_SINK_PID=

sub bob bob@example.org "b1@x.test b2@x.test b3@x.test" 0 bob-1
[[ $(rcpt_replies | grep -c '^250') == 3 ]] || fail "bob: not all 3 recipients accepted: $(rcpt_replies)"
WANT_DELIVERED=$((WANT_DELIVERED + 3))
ok "bob: $N recipients accepted while alice is limited"
sub carol carol@example.org "c1@x.test c2@x.test c3@x.test c4@x.test c5@x.test" 0 carol-1
[[ $(rcpt_replies | grep -c '^250') == 5 ]] || fail "carol (exempt): not all 5 recipients accepted: $(rcpt_replies)"
WANT_DELIVERED=$((WANT_DELIVERED + 5))
ok "carol (exempt): 5 recipients accepted"

wait_sink_rcpts "$WANT_DELIVERED"
n=$(rl_lines "sasl:alice@$REALM" tempfail)
((n == 2)) || fail "$n event=ratelimit lines for sasl:alice@$REALM action=tempfail, want 2"
grep -E 'event=ratelimit .*sender=' "$UM_LOG" | grep -vqE "sender=\"?sasl:alice@$REALM\"? " &&
    fail "ratelimit lines for someone other than alice: $(grep 'event=ratelimit ' "$UM_LOG")"
pf_log_grep -q "milter-reject: RCPT from .*: 451 4\.7\.1 .* to=<a4@x\.test>" ||
    fail "Postfix did not log the 451 for a4@x.test"
ok "phase 1: $WANT_DELIVERED recipients delivered, $REFUSED_4XX refused with 451 4.7.1"

# ======== 2. hold: new config, SIGHUP; alice is still at $N of $N
# From here on, notices go to the real Postfix instance (port 25 service), which relays them
# to the sink.
NOTICE_RELAY_PORT=$PF_SMTP_PORT
write_conf hold '["sasl", "sender"]'
um_reload
sub alice alice@example.org "a6@x.test" 0 alice-hold
[[ "$(rcpt_replies)" == 250* ]] || fail "alice-hold: RCPT not accepted: $(rcpt_replies)"
grep -qE '^<-  250 .*queued as' "$PF_SWAKS_OUT" || fail "alice-hold: message not accepted by Postfix"
WANT_HELD=$((WANT_HELD + 1))
HELD_RCPTS=$((HELD_RCPTS + 1))
pf_wait_held "$WANT_HELD" 20 || fail "alice's over-limit message is not in the hold queue"
qid=$(grep -oE 'queued as [0-9A-Za-z]+' "$PF_SWAKS_OUT" | awk '{ print $3 }')
"$PF_POSTQUEUE" -c "$PF_CONF" -j >"$PF_DIR/queue.json" 2>&1 || true
/usr/bin/python3 - "$qid" "$PF_DIR/queue.json" <<'EOF' || fail "postqueue -j does not show $qid in hold: $(cat "$PF_DIR/queue.json")"
import json, sys
qid = sys.argv[1]
for line in open(sys.argv[2]):
    m = json.loads(line)
    if m["queue_id"] == qid:
        assert m["queue_name"] == "hold", m
        assert [r["address"] for r in m["recipients"]] == ["a6@x.test"], m
        print("ok: postqueue -j: %s queue_name=%s sender=%s" % (qid, m["queue_name"], m["sender"]))
        sys.exit(0)
sys.exit(1)
EOF
n=$(rl_lines "sasl:alice@$REALM" hold)
((n == 1)) || fail "$n event=ratelimit lines for alice with action=hold, want 1"
pf_log_grep -q "$qid: milter-hold: " || fail "Postfix did not log milter-hold for $qid"
ok "phase 2: alice's message $qid accepted (250) and held; $(pf_log_grep "$qid: milter-hold" | sed 's/.*milter-hold: //')"
sub bob bob@example.org "b4@x.test" 0 bob-hold-mode # bob is at 3 too: held as well
WANT_HELD=$((WANT_HELD + 1))
HELD_RCPTS=$((HELD_RCPTS + 1))
pf_wait_held "$WANT_HELD" 20 || fail "bob's over-limit message is not in the hold queue"
sub carol carol@example.org "c6@x.test c7@x.test" 0 carol-hold-mode # exempt: delivered
WANT_DELIVERED=$((WANT_DELIVERED + 2))
wait_sink_rcpts "$WANT_DELIVERED"
((n = $(pf_held_count), n == WANT_HELD)) || fail "$n messages held, want $WANT_HELD"
ok "phase 2: exempt carol delivered, $WANT_HELD held"
# bob crossed the limit in phase 2: his notice went through Postfix to the sink.
nf=
for ((i = 0; i < 100; i++)); do
    nf=$(grep -l "^$NOTICE_SUBJECT: sasl:bob@$REALM" $(pf_sink_files) /dev/null 2>/dev/null | head -n1 || true)
    [[ -n "$nf" ]] && break
    "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true
    sleep 0.2
done
[[ -n "$nf" ]] || fail "bob's notice did not reach the sink through Postfix"
pf_log_grep -q 'from=<>, size=.*' || fail "Postfix did not log a null-sender message (the notice)"
grep -q '^Auto-Submitted: auto-generated' "$nf" || fail "notice lacks Auto-Submitted: $(cat "$nf")"
grep -q '^From: unimilter <MAILER-DAEMON@mta.unimilter.test>' "$nf" || fail "notice From: $(grep '^From:' "$nf")"
ok "notice: bob's went through Postfix (from=<>) to the sink: $(grep "^$NOTICE_SUBJECT" "$nf")"

# ======== 3. local submission: sendmail run as nobody, key uid first
# Notices now go to the submission port: STARTTLS required (certificate checked against our
# CA file) and SMTP AUTH as notifier.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$PF_CONF/tls.key" -out "$PF_CONF/tls.crt" \
    >"$PF_DIR/openssl.log" 2>&1 || fail "openssl: $(cat "$PF_DIR/openssl.log")"
chown root:postfix "$PF_CONF/tls.key"
chmod 0640 "$PF_CONF/tls.key"
"$PF_POSTCONF" -c "$PF_CONF" -M "tlsmgr/unix=tlsmgr unix - - n 1000? 1 tlsmgr"
"$PF_POSTCONF" -c "$PF_CONF" -P "$PF_SUBMISSION_PORT/inet/smtpd_tls_security_level=may"
pf_postconf "smtpd_tls_cert_file=$PF_CONF/tls.crt" "smtpd_tls_key_file=$PF_CONF/tls.key" \
    smtpd_tls_loglevel=1
NOTICE_PW=pw-notifier
printf '%s\n' "$NOTICE_PW" >"$PF_DIR/notice.pw"
chown nobody "$PF_DIR/notice.pw" # re-read at reload, after the daemon became nobody
chmod 0600 "$PF_DIR/notice.pw"
NOTICE_RELAY_PORT=$PF_SUBMISSION_PORT
NOTICE_SUBMIT_EXTRA="starttls = \"always\"; ca_file = \"$PF_CONF/tls.crt\"; user = \"notifier@$REALM\"; password_file = \"$PF_DIR/notice.pw\";"
NOBODY_UID=$(id -u nobody)
SYS_ETC=$PF_DIR/system-etc-postfix
[[ -d /etc/postfix ]] || fail "/etc/postfix missing: is the postfix package installed?"
mkdir "$SYS_ETC"
cp -a /etc/postfix/. "$SYS_ETC/"
echo "alternate_config_directories = $PF_CONF" >>"$SYS_ETC/main.cf"
chmod 0644 "$SYS_ETC/main.cf"

# local_send NAME: one message, 1 recipient, as nobody via the instance's sendmail; sets LRC.
LOCAL_N=0
local_send() {
    local name=$1
    LOCAL_N=$((LOCAL_N + 1))
    printf 'From: www@example.org\nTo: l%d@x.test\nSubject: %s\n\nlocal message %s\n' \
        "$LOCAL_N" "$name" "$name" >"$PF_DIR/$name.eml"
    LRC=0
    # shellcheck disable=SC2016 # $1 is expanded by the inner sh
    unshare --mount -- sh -c 'mount --bind "$1" /etc/postfix && shift &&
        exec runuser -u nobody -- "$@"' sh "$SYS_ETC" \
        "$PF_SENDMAIL" -C "$PF_CONF" -i -f www@example.org -- "l$LOCAL_N@x.test" \
        <"$PF_DIR/$name.eml" >"$PF_DIR/$name.out" 2>&1 || LRC=$?
    SENT_RCPTS=$((SENT_RCPTS + 1))
}

write_conf tempfail '["uid", "sasl", "sender"]'
um_reload
for i in $(seq 1 "$N"); do
    local_send "local-$i"
    ((LRC == 0)) || fail "local-$i: sendmail exited $LRC: $(cat "$PF_DIR/local-$i.out")"
done
WANT_DELIVERED=$((WANT_DELIVERED + N))
wait_sink_rcpts "$WANT_DELIVERED"
ok "local: $N messages from uid $NOBODY_UID delivered"
local_send "local-over"
((LRC == 0)) || fail "local-over: sendmail exited $LRC (postdrop queues first; want 0): $(cat "$PF_DIR/local-over.out")"
pf_wait_log "milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 4\.7\.1 .*to=<l$LOCAL_N@x\.test>" 20 ||
    fail "Postfix did not log the milter's 4.7.1 at END-OF-MESSAGE for the local message"
line=$(grep -E 'event=ratelimit .*stage=eom action=tempfail' "$UM_LOG" | tail -n 1)
[[ -n "$line" ]] || fail "no event=ratelimit ... stage=eom action=tempfail line for the local message"
LOCAL_KEY=$(grep -oE ' sender=[^ ]+' <<<"$line" | sed 's/^ sender=//; s/"//g')
# Postfix 3.7 does not pass its own "Received: by ... (Postfix, from userid N)" header to
# non_smtpd_milters (cleanup hands the milter From, To, Subject, Message-Id, Date only), so
# the uid source has no value there; the daemon says so once and uses the next source, the
# envelope sender (README: "Rate limiting local submissions").
[[ "$LOCAL_KEY" == "sender:www@example.org" ]] ||
    fail "local mail keyed as '$LOCAL_KEY', want the fallback 'sender:www@example.org'"
n=$(grep -c 'ratelimit.key lists uid, but the MTA showed no Received header' "$UM_LOG" || true)
((n == 1)) || fail "the uid fallback warning was logged $n times, want 1"
ok "local: the (N+1)th message is limited; uid unavailable from Postfix, keyed by the envelope sender (warned once)"
# Real Postfix behaviour, non_smtpd tempfail at end of message: cleanup logs milter-reject
# 4.7.1, sendmail has already exited 0 (postdrop queued the file), no bounce is sent; the
# message stays in the maildrop queue and pickup tries it again later (its next wakeup or the
# next sendmail run).
sleep 1.5
"$PF_POSTQUEUE" -c "$PF_CONF" -j >"$PF_DIR/queue.json" 2>&1 || true
n=$(grep -c '"queue_name": "maildrop".*"address": "l4@x.test"' "$PF_DIR/queue.json" || true)
((n == 1)) || fail "the tempfailed local message is not (once) in the maildrop queue: $(cat "$PF_DIR/queue.json")"
wait_sink_rcpts "$WANT_DELIVERED" 5
pf_log_grep -q 'bounce|sender non-delivery notification' && fail "Postfix bounced something: $(pf_log_grep 'bounce|non-delivery')"
# The local sender's notice went over STARTTLS + AUTH to the submission port.
nf=
for ((i = 0; i < 100; i++)); do
    nf=$(grep -l "^$NOTICE_SUBJECT: sender:www@example.org" $(pf_sink_files) /dev/null 2>/dev/null | head -n1 || true)
    [[ -n "$nf" ]] && break
    "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true
    sleep 0.2
done
[[ -n "$nf" ]] || fail "the local sender's notice (STARTTLS + AUTH) did not reach the sink"
pf_log_grep -q "sasl_method=PLAIN, sasl_username=notifier@$REALM" ||
    pf_log_grep -q "sasl_username=notifier@$REALM" || fail "Postfix did not log notifier's SASL login"
pf_log_grep -q 'TLS connection established from [a-z]+\[127\.0\.0\.1\]' ||
    fail "Postfix logged no TLS session for the notice"
pf_log_grep -q 'submission/smtpd.*disconnect from .* ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1' ||
    fail "no submission session with EHLO, STARTTLS, AUTH, one message in the Postfix log"
grep -q "$NOTICE_PW" "$UM_LOG" && fail "the AUTH password is in the daemon log"
ok "notice: STARTTLS (always, CA-checked) + AUTH as notifier to the submission port: $(pf_log_grep 'TLS connection established from' | tail -n1 | sed 's/.*: //')"
ok "local: tempfail at end of message -> Postfix keeps it in maildrop (postqueue -j queue_name=maildrop), sendmail exit 0, no bounce"

# action hold: the next local message triggers pickup, which retries the maildrop file too;
# both are over the limit and both end up in the hold queue.
write_conf hold '["uid", "sasl", "sender"]'
um_reload
local_send "local-hold"
((LRC == 0)) || fail "local-hold: sendmail exited $LRC: $(cat "$PF_DIR/local-hold.out")"
WANT_HELD=$((WANT_HELD + 2))
HELD_RCPTS=$((HELD_RCPTS + 2))
pf_wait_held "$WANT_HELD" 90 || fail "the two local over-limit messages are not both held"
"$PF_POSTQUEUE" -c "$PF_CONF" -j >"$PF_DIR/queue.json" 2>&1 || true
for r in l4@x.test l5@x.test; do
    grep -q "\"queue_name\": \"hold\".*\"address\": \"$r\"" "$PF_DIR/queue.json" ||
        fail "$r not in the hold queue: $(cat "$PF_DIR/queue.json")"
done
n=$(grep -cE "event=ratelimit .*sender=\"?$LOCAL_KEY\"? .*stage=eom action=hold" "$UM_LOG" || true)
((n == 2)) || fail "$n event=ratelimit ... action=hold lines for $LOCAL_KEY, want 2"
ok "local: with action hold the retried and the new message are held (2 event=ratelimit ... action=hold lines)"

# ======== accounting: nothing lost, nothing extra
wait_sink_rcpts "$WANT_DELIVERED" 5
"$PF_POSTQUEUE" -c "$PF_CONF" -j >"$PF_DIR/queue.json" 2>&1 || true
nq=$(grep -c . "$PF_DIR/queue.json" || true)
nh=$(grep -c '"queue_name": "hold"' "$PF_DIR/queue.json" || true)
((nq == WANT_HELD && nh == WANT_HELD)) ||
    fail "queue holds $nq message(s), $nh in hold, want exactly $WANT_HELD held: $(cat "$PF_DIR/queue.json")"
got=$(sink_rcpts)
((SENT_RCPTS == got + HELD_RCPTS + REFUSED_4XX)) ||
    fail "accounting: sent $SENT_RCPTS recipients != delivered $got + held $HELD_RCPTS + refused $REFUSED_4XX"
ok "accounting: $SENT_RCPTS recipients = $got delivered + $HELD_RCPTS held ($WANT_HELD messages) + $REFUSED_4XX refused 4xx"

kill -TERM "$UM_PID"
rc=0
wait "$UM_PID" || rc=$?
UM_PID=
((rc == 0)) || fail "unimilter exited $rc after SIGTERM, want 0"
grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" && fail "sanitizer report in the daemon log"
echo "PASS t_ratelimit ($((SECONDS - T0)) s)"
