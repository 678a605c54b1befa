#!/bin/bash
# Rate limiting at protocol level: sliding-window limit per SASL login / sender, refusal
# per recipient (451), one notice per episode through the configured command, recipients
# of an aborted transaction given back, overrides and exemptions, local submission decided
# at end of message, monitor-only, hold, reject, counts kept across reload and restart.
. "$(dirname "$0")/lib.sh"

cat >"$T/notify.sh" <<'SH'
#!/bin/sh
env | grep '^UM_' | sort >>"$(dirname "$0")/notices"
echo --- >>"$(dirname "$0")/notices"
SH
chmod 0755 "$T/notify.sh"

RLEXTRA="limit = 3; notify = { command = \"$T/notify.sh\"; };
    overrides = ( { sender = \"sasl:carol\"; limit = 5; }, { sender = \"@lists.example.org\"; exempt = true; } );" \
    write_conf "$T/um.conf"
um_start "$T/um.conf"

# alice: 2 + 1 accepted, then refused; the notice fires once for the episode.
rl_session a1 alice alice@example.org "r1@x.test r2@x.test" cca
rl_session a2 alice alice@example.org "r3@x.test r4@x.test r5@x.test" ctta
rl_session a3 alice alice@example.org "r6@x.test" ta
# The command runs asynchronously (the milter never waits for it): give it a moment.
for _ in $(seq 1 100); do grep -q '^---$' "$T/notices" 2>/dev/null && break; sleep 0.05; done
sleep 0.2
n=$(grep -c '^---$' "$T/notices" 2>/dev/null || true)
[ "$n" = 1 ] || fail "notice command ran $n times for one episode, want 1"
grep -qx 'UM_SENDER=sasl:alice' "$T/notices" || fail "notice lacks the sender: $(cat "$T/notices")"
grep -qx 'UM_LIMIT=3' "$T/notices" || fail "notice lacks the limit"
grep -qx 'UM_WINDOW=3600' "$T/notices" || fail "notice lacks the window"
grep -qx 'UM_CLIENT_IP=192.0.2.7' "$T/notices" || fail "notice lacks the client IP"
grep -q '^UM_RCPTS=<r3@x.test> <r4@x.test>' "$T/notices" || fail "notice lacks the first recipients"
[ "$(grep -c 'event=ratelimit .*sender=sasl:alice .*limit=3 window=3600 .*stage=rcpt action=tempfail' "$T/log")" = 3 ] \
    || fail "want 3 ratelimit log lines for alice"

# Without SASL the envelope sender is the key, case-insensitively.
rl_session b1 "" Bob@Example.ORG "r1@x.test r2@x.test r3@x.test r4@x.test" cccta
grep -q 'event=ratelimit .*sender=sender:bob@example.org' "$T/log" || fail "sender key not used"

# An aborted transaction gives its recipients back.
rl_session d1 dave dave@example.org "r1@x.test r2@x.test r3@x.test" ccc abort
rl_session d2 dave dave@example.org "r1@x.test r2@x.test r3@x.test" ccca

# Overrides: carol may have 5; a list domain is exempt.
rl_session c1 carol carol@example.org "1@x.test 2@x.test 3@x.test 4@x.test 5@x.test 6@x.test" cccccta
rl_session l1 "" news@lists.example.org "1@x.test 2@x.test 3@x.test 4@x.test 5@x.test 6@x.test 7@x.test" ccccccca

# Local submission (Postfix non_smtpd_milters: "localhost" [127.0.0.1]) is decided at
# end of message, for all recipients at once.
rl_session loc1 "" www-data@example.org "1@x.test 2@x.test" cca local
rl_session loc2 "" www-data@example.org "3@x.test 4@x.test" cct local
grep -q 'event=ratelimit .*sender=sender:www-data@example.org .*stage=eom action=tempfail' "$T/log" \
    || fail "local submission not limited at end of message"

# A reload keeps counts: alice is still at 3 of 3; raising her limit to 4 gives one more.
RLEXTRA="limit = 3; overrides = ( { sender = \"sasl:alice\"; limit = 4; } );" write_conf "$T/um.conf"
um_reload
rl_session a4 alice alice@example.org "r7@x.test r8@x.test" cta

# State survives a restart (written at SIGTERM, read at start).
um_stop
[ "$UM_RC" = 0 ] || fail "exit $UM_RC"
grep -q 'counts saved to' "$T/log" || fail "counts not saved at shutdown"
um_start "$T/um.conf"
grep -q 'loaded counts of [1-9][0-9]* sender(s)' "$T/log" || fail "counts not loaded at start"
rl_session a5 alice alice@example.org "r9@x.test" ta

# hold: accepted, then held; reject: refused, logged as reject; monitor: nothing refused.
um_stop
RLEXTRA="limit = 1; action = \"hold\"; state_file = \"\";" write_conf "$T/um.conf"
sed -i "s|state_file = \"$T/rl.state\"; ||" "$T/um.conf"
um_start "$T/um.conf"
rl_session h1 erin erin@example.org "1@x.test 2@x.test" cca hold
grep -q 'event=ratelimit .*sender=sasl:erin .*action=hold' "$T/log" || fail "hold not logged"
grep -q 'event=verdict .*rl.sender=sasl:erin .*action=hold' "$T/log" || fail "hold verdict not logged"
um_stop
RLEXTRA="limit = 1; action = \"reject\";" write_conf "$T/um.conf"
sed -i "s|state_file = \"$T/rl.state\"; ||" "$T/um.conf"
um_start "$T/um.conf"
rl_session j1 frank frank@example.org "1@x.test 2@x.test" cta
grep -q 'event=ratelimit .*sender=sasl:frank .*action=reject' "$T/log" || fail "reject not logged"
um_stop
RLEXTRA="limit = 1; monitor_only = true;" write_conf "$T/um.conf"
sed -i "s|state_file = \"$T/rl.state\"; ||" "$T/um.conf"
um_start "$T/um.conf"
rl_session m1 gina gina@example.org "1@x.test 2@x.test 3@x.test" ccca
grep -q 'event=ratelimit .*sender=sasl:gina .*action=monitor' "$T/log" || fail "monitor-only not logged"
um_stop
[ "$UM_RC" = 0 ] || fail "exit $UM_RC"
echo "PASS t_ratelimit"
