#!/bin/bash
# Protocol level: the daemon picks inbound/outbound/skip from {daemon_name}/{daemon_port}
# as the example rules say, and warns once when a macro a rule needs never arrives.
. "$(dirname "$0")/lib.sh"

write_conf "$T/um.conf"
um_start "$T/um.conf"

mt_session postfix_submission ORIGINATING 587 outbound || fail "Postfix submission: $(cat "$T/postfix_submission.out")"
mt_session postfix_smtp mx.example.org 25 inbound || fail "Postfix smtp: $(cat "$T/postfix_smtp.out")"
mt_session sendmail_msa MSA "" outbound || fail "Sendmail MSA: $(cat "$T/sendmail_msa.out")"
mt_session sendmail_mta MTA "" inbound || fail "Sendmail MTA: $(cat "$T/sendmail_mta.out")"
mt_session port465 Daemon0 465 outbound || fail "port 465: $(cat "$T/port465.out")"
mt_session skip skipme 25 accept-at-mail || fail "skip: $(cat "$T/skip.out")"
# No macros at all: inbound by default; the missing {daemon_port} is warned about once.
mt_session nomacro1 "" "" inbound || fail "no macros: $(cat "$T/nomacro1.out")"
mt_session nomacro2 "" "" inbound || fail "no macros (2): $(cat "$T/nomacro2.out")"

# One verdict line per message, with the mode; skip logs its own verdict.
[ "$(grep -c 'event=verdict .*mode=outbound' "$T/log")" = 3 ] || fail "expected 3 outbound verdict lines"
[ "$(grep -c 'event=verdict .*mode=inbound' "$T/log")" = 4 ] || fail "expected 4 inbound verdict lines"
grep -q 'event=verdict .*mode=skip .*action=accept' "$T/log" || fail "no skip verdict line"
n=$(grep -c 'the MTA sent no {daemon_port} macro' "$T/log" || true)
[ "$n" = 1 ] || fail "missing-macro warning logged $n times, want exactly 1"
grep -q 'milter_connect_macros' "$T/log" || fail "warning does not name the Postfix setting"
grep -q "confMILTER_MACROS_CONNECT" "$T/log" || fail "warning does not name the Sendmail setting"
n=$(grep -c 'the MTA sent no {daemon_name} macro' "$T/log" || true)
[ "$n" = 1 ] || fail "missing {daemon_name} warning logged $n times, want exactly 1"

um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC after SIGTERM, want 0"
echo "PASS t_modes"
