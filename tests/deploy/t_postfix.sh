#!/usr/bin/env bash
# tests/deploy/t_postfix.sh - the package on a fresh Debian 12 with stock Postfix, under systemd.
#
# Builds unimilter_*_amd64.deb from this tree (dpkg-buildpackage on a copy), a Debian 12 root
# from the archive (mmdebstrap, cached in /var/cache/unimilter-deploy) with the stock postfix
# package, boots it with systemd-nspawn -b (own network namespace: loopback only) and, inside,
# follows the README's blocks marked <!-- deploy:NAME --> as written: package install, the
# Postfix quick start (Debian's master.cf untouched but for what they add), DKIM keys. Checks:
#   - install: unimilter.service enabled and running, report timer enabled, the socket where
#     the chrooted smtpd and cleanup find it (unix:unimilter/unimilter.sock)
#   - port 25 from a remote address: one Authentication-Results (spf, dkim, dmarc);
#     a p=reject spoof is refused 550
#   - port 587 with SASL: signed (python3-dkim verifies both signatures), rate limited
#     (451 over the limit; with action = "hold" the message is held in postqueue -p)
#   - a web site's user through /usr/sbin/sendmail: counted and limited
#   - the rate-limit notice reaches a local mailbox
#   - reload with a broken configuration keeps the old one serving (journal names file:line),
#     restart keeps the counts, stop drains and exits 0
#   - unimilter-report.service sends a DMARC report that arrives
#   - the journal holds no warning but those listed in expected_warnings below
#   - an upgrade keeps the edited conffile, counts and history; remove stops the daemon and
#     keeps conffile and state; purge removes them
# Test zones: a DNS server in the container (Debian's unbound) serves example.org (ours) and
# *.unimilter.example (remote senders); remote clients are extra addresses on lo.
# Label "deploy". Needs root, mmdebstrap, systemd-container, debhelper, network to the
# Debian archive the first time (the root is cached). Exit 77 = skipped (1 under CI=true).
set -Eeuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/deploy/lib.sh
. "$here/lib.sh"
trap 'dp_fail "$0:$LINENO: command failed: $BASH_COMMAND"' ERR
dp_require
trap dp_teardown EXIT

REMOTE_GOOD=198.51.100.7 # a sender whose domain's SPF allows it
SERVER_IP=192.0.2.25     # the container's "public" address
# A user's mail client somewhere on the net. Not loopback: unimilter takes a client that is
# "localhost [127.0.0.1]" for Postfix's local submission (non_smtpd_milters), decided once
# at end of message.
USER_IP=203.0.113.5

# ---- 1. the package --------------------------------------------------------------------------
dp_phase "build .deb"
dp_build_deb
if [[ -z "${DP_PREBUILT_DEB:-}" ]]; then
    lintian --fail-on error \
        "${DP_DEB%.deb}.changes" >"$DP_WORK/lintian.out" 2>&1 ||
        dp_fail "lintian reports errors: $(cat "$DP_WORK/lintian.out")"
    echo "ok: lintian: no errors ($(grep -c '^W:' "$DP_WORK/lintian.out" || true) warnings)"
fi

# ---- 2. the root -----------------------------------------------------------------------------
dp_phase "root (mmdebstrap or cache)"
# shellcheck disable=SC2046
dp_root postfix unbound dns-root-data swaks sasl2-bin libsasl2-modules python3-dkim \
    python3-dnspython python3-nacl iproute2 procps $(dp_deb_depends)

dp_phase "boot"
dp_boot

# ---- 3. install, as the README says ----------------------------------------------------------
dp_phase "install package"
cp "$DP_DEB" "$DP_ROOT/root/"
ct_sh "cd /root
$(dp_readme deb-install)" || dp_fail "installing the package as README.md says failed"
ct systemctl is-enabled unimilter.service >/dev/null || dp_fail "unimilter.service not enabled on install"
ct systemctl is-active unimilter.service >/dev/null || dp_fail "unimilter.service not running after install"
ct systemctl is-enabled unimilter-report.timer >/dev/null || dp_fail "unimilter-report.timer not enabled"
ct test -S /var/spool/postfix/unimilter/unimilter.sock || dp_fail "no socket in /var/spool/postfix/unimilter right after install (Type=notify: dpkg's start waits for READY=1)"
ct id unimilter >/dev/null || dp_fail "no unimilter user after install"
echo "ok: installed; unimilter.service enabled and running, report timer enabled, socket in the Postfix spool"

# ---- 4. Postfix quick start as written -------------------------------------------------------
dp_phase "postfix quick start"
ct_sh "$(dp_readme postfix)" || dp_fail "the README's Postfix quick start failed"
ct_sh "$(dp_readme postfix-submission)" || dp_fail "the README's submission lines failed"
ct test -S /var/spool/postfix/unimilter/unimilter.sock || dp_fail "no socket after the Postfix quick start's restart"
[[ "$(ct stat -c %G /var/spool/postfix/unimilter/unimilter.sock)" == postfix ]] ||
    dp_fail "the socket's group is not postfix after the quick start"
ct grep -qE '^smtp +inet +n +- +y' /etc/postfix/master.cf || dp_fail "Debian's master.cf no longer runs smtpd chrooted"
ct grep -qE '^cleanup +unix +n +- +y' /etc/postfix/master.cf || dp_fail "Debian's master.cf no longer runs cleanup chrooted"
echo "ok: quick start applied; smtpd and cleanup chrooted as Debian ships them"

# ---- 5. test fixtures: DNS zones, addresses, mailboxes, a SASL user --------------------------
dp_phase "fixtures"
# The container's root is a directory here: files are written into it directly.
cat >"$DP_ROOT/etc/unbound/unbound.conf.d/unimilter-test.conf" <<EOF
server:
    # Everything under these answers from here (NXDOMAIN when not listed): no lookup may
    # wait for the root servers this network cannot reach (DMARC's tree walk asks the TLDs).
    local-zone: "example." static
    local-zone: "org." static
    local-data: 'good.unimilter.example. TXT "v=spf1 ip4:$REMOTE_GOOD -all"'
    local-data: '_dmarc.good.unimilter.example. TXT "v=DMARC1; p=reject; rua=mailto:dmarc@$DP_HOST"'
    local-data: 'mail.good.unimilter.example. A $REMOTE_GOOD'
    local-data: 'bank.unimilter.example. TXT "v=spf1 ip4:192.0.2.99 -all"'
    local-data: '_dmarc.bank.unimilter.example. TXT "v=DMARC1; p=reject"'
    local-zone: "100.51.198.in-addr.arpa." static
    local-data-ptr: "$REMOTE_GOOD mail.good.unimilter.example"
    local-data: '$DP_HOST. A $SERVER_IP'
    local-data: 'good.unimilter.example._report._dmarc.$DP_HOST. TXT "v=DMARC1"'
    include: /etc/unbound/unbound.conf.d/unimilter-keys.conf.inc
EOF
: >"$DP_ROOT/etc/unbound/unbound.conf.d/unimilter-keys.conf.inc"
ct_sh "
ip addr add $REMOTE_GOOD/32 dev lo
ip addr add 192.0.2.99/32 dev lo
ip addr add $SERVER_IP/32 dev lo
ip addr add $USER_IP/32 dev lo
unbound-checkconf
systemctl restart unbound
for u in bob ops dmarc www; do useradd -m \$u; done
# SASL for the submission service: Cyrus sasldb; smtpd is chrooted in /var/spool/postfix, so
# the database is read there (/etc/sasldb2 inside the chroot).
echo 'pw-alice' | saslpasswd2 -c -p -u $DP_HOST alice
install -d /var/spool/postfix/etc
cp /etc/sasldb2 /var/spool/postfix/etc/sasldb2
chown root:postfix /etc/sasldb2 /var/spool/postfix/etc/sasldb2
chmod 0640 /etc/sasldb2 /var/spool/postfix/etc/sasldb2
printf '%s\n' 'pwcheck_method: auxprop' 'auxprop_plugin: sasldb' 'mech_list: PLAIN LOGIN' \
    'sasldb_path: /etc/sasldb2' >/etc/postfix/sasl/smtpd.conf
postconf -e smtpd_sasl_local_domain=$DP_HOST
systemctl reload postfix
host_ok=\$(python3 -c 'import dns.resolver; print(dns.resolver.resolve(\"good.unimilter.example\", \"TXT\")[0])')
test \"\$host_ok\" = '\"v=spf1 ip4:$REMOTE_GOOD -all\"'
" || dp_fail "test fixtures (DNS zones, users, SASL) could not be set up"
echo "ok: DNS zones served by the container's unbound, SASL user alice, mailboxes"

# swaks inside the container; SWAKS_OUT holds the last transcript.
swaks() {
    local rc=0
    ct swaks --timeout 60 "$@" >"$DP_WORK/swaks.out" 2>&1 || rc=$?
    cat "$DP_WORK/swaks.out" >>"$DP_LOG"
    return $rc
}
# um_ready: right after systemctl start/restart/dpkg -i returns, with no wait: Type=notify
# makes systemd wait for the daemon's READY=1, sent once both sockets listen, so the milter
# socket must exist and the control socket answer at once (Type=simple raced here).
um_ready() {
    ct test -S /var/spool/postfix/unimilter/unimilter.sock ||
        dp_fail "no milter socket right after systemctl returned (Type=notify not honoured?)"
    ct unimilter stats >/dev/null 2>&1 ||
        dp_fail "unimilter does not answer on its control socket right after systemctl returned: $(ct unimilter stats 2>&1)"
}

# ---- 6. inbound on port 25 -------------------------------------------------------------------
dp_phase "inbound (port 25)"
dp_inbound_checks "port 25" 1

# ---- 7. DKIM signing on 587 ------------------------------------------------------------------
dp_phase "DKIM keys and signing (587)"
dp_publish_keys
ct_sh "stat -c '%U %a %n' /etc/unimilter/keys/*.pem" >>"$DP_LOG" 2>&1 || dp_fail "keygen made no key files"
[[ "$(ct stat -c %U /etc/unimilter/keys/example.org.s2026.pem)" == unimilter ]] ||
    dp_fail "keygen run as root did not give the key to the unimilter user"
ct_sh "$(dp_readme dkim-config)" || dp_fail "the README's dkim_sign lines (check-keys, reload) failed"

submit() { # submit USER N-RCPTS SUBJECT [swaks args...]: mail from USER@example.org on 587 with AUTH
    local user=$1 n=$2 subj=$3 to="" i
    shift 3
    for ((i = 1; i <= n; i++)); do to+="${to:+,}bob+$i@$DP_HOST"; done
    swaks --server "$SERVER_IP:587" --local-interface "$USER_IP" --auth PLAIN --auth-user "$user@$DP_HOST" --auth-password "pw-$user" \
        --from "$user@example.org" --to "$to" --h-From "$user@example.org" --h-Subject "$subj" "$@"
}
submit alice 1 "signed 1" || dp_fail "submission on 587 failed: $(tail -n 6 "$DP_WORK/swaks.out")"
dp_verify_signed 2 "$DP_WORK/out1.eml"
echo "ok: 587 with SASL: signed; python3-dkim: $(cat "$DP_WORK/verify.out")"

# ---- 8. rate limit: tempfail, notice, hold, local sendmail -----------------------------------
dp_phase "rate limit"
ct_sh "sed -i -e 's|^    limit = 100;|    limit = 3;|' \
    -e 's|^        mail_to = \"\";|        mail_to = \"ops@$DP_HOST\";|' /etc/unimilter/unimilter.conf
unimilter -n -c /etc/unimilter/unimilter.conf
systemctl reload unimilter
sleep 1" || dp_fail "could not set limit = 3 and the notice address"
# alice has 1 recipient in the window already: 2 more fit, the third is refused (451).
submit alice 3 "over the limit" || true
grep -q '<\*\* *451 4.7.1' "$DP_WORK/swaks.out" ||
    dp_fail "the recipient over the limit did not get 451 4.7.1: $(tail -n 12 "$DP_WORK/swaks.out")"
echo "ok: over the limit: $(grep -m1 '<\*\* *451' "$DP_WORK/swaks.out" | sed 's/^ *<\*\* *//')"
if dp_todo notice; then
    echo "NOT CHECKED: the notice reaches a mailbox (DP_TODO has 'notice')"
else
    dp_wait_mail ops 1
    dp_last_mail ops >"$DP_WORK/notice.eml"
    grep -q "alice@$DP_HOST" "$DP_WORK/notice.eml" || dp_fail "the notice does not name the sender: $(cat "$DP_WORK/notice.eml")"
    echo "ok: the rate-limit notice reached ops's mailbox ($(grep -m1 '^Subject:' "$DP_WORK/notice.eml"))"
fi

# restart keeps the counts; stats shows alice at the limit before and after
before=$(ct unimilter stats | grep "sasl:alice@$DP_HOST" || true)
[[ -n "$before" ]] || dp_fail "unimilter stats does not list sasl:alice@$DP_HOST: $(ct unimilter stats 2>&1)"
ct systemctl restart unimilter
um_ready
after=$(ct unimilter stats | grep "sasl:alice@$DP_HOST" || true)
[[ -n "$after" && "$(awk '{print $1}' <<<"$after")" == "$(awk '{print $1}' <<<"$before")" ]] ||
    dp_fail "systemctl restart lost the counts: before '$before', after '$after'"
submit alice 1 "still over" || true
grep -q '<\*\* *451 4.7.1' "$DP_WORK/swaks.out" || dp_fail "after restart alice is no longer limited"
echo "ok: systemctl restart keeps the counts ($after)"

# hold: over the limit the message is accepted into the hold queue
ct_sh "sed -i 's|^    action = \"tempfail\";|    action = \"hold\";|' /etc/unimilter/unimilter.conf
systemctl reload unimilter
sleep 1"
submit alice 1 "held" || dp_fail "with action hold the message should be accepted: $(tail -n 6 "$DP_WORK/swaks.out")"
qid=$(grep -oE 'queued as [0-9A-F]+' "$DP_WORK/swaks.out" | awk '{print $3}')
sleep 1
ct postqueue -p | grep -qE "^$qid!" || dp_fail "message $qid not held: $(ct postqueue -p)"
echo "ok: action hold: $qid is in postqueue -p as held (!)"

# a web site's user through /usr/sbin/sendmail (non_smtpd_milters, cleanup ORIGINATING):
# limited at end of message, the mail waits in Postfix's queue; with hold it is held.
ct_sh "sed -i 's|^    action = \"hold\";|    action = \"tempfail\";|' /etc/unimilter/unimilter.conf
systemctl reload unimilter
sleep 1
for i in 1 2 3 4; do
    printf 'From: www@$DP_HOST\nTo: bob@$DP_HOST\nSubject: web \$i\n\nform mail \$i\n' |
        runuser -u www -- /usr/sbin/sendmail -t
done"
ok=0
for ((i = 0; i < 40; i++)); do
    n=$(ct journalctl -u unimilter --no-pager -o cat | grep -c "event=ratelimit.*sender:www@$DP_HOST" || true)
    ((n >= 1)) && ok=1 && break
    sleep 0.5
done
((ok)) || dp_fail "the web site's 4th message was not limited: $(ct journalctl -u unimilter --no-pager -o cat | tail -n 8)"
got=$(ct unimilter stats | grep "sender:www@$DP_HOST" || true)
[[ -n "$got" ]] || dp_fail "stats does not count sender:www@$DP_HOST"
echo "ok: /usr/sbin/sendmail from user www: counted ($got) and limited"

# ---- 9. reload with a broken config, stop ----------------------------------------------------
dp_phase "reload, stop"
ct cp /etc/unimilter/unimilter.conf /root/good.conf
ct_sh "sed -i 's|^shutdown_timeout = 30;|shutdown_timeout = thirty;|' /etc/unimilter/unimilter.conf"
rc=0
ct systemctl reload unimilter >>"$DP_LOG" 2>&1 || rc=$?
sleep 1
ct journalctl -u unimilter --no-pager -o cat | grep -q '/etc/unimilter/unimilter.conf:[0-9]*:' ||
    dp_fail "the broken configuration was not logged with file:line"
ct systemctl is-active unimilter >/dev/null || dp_fail "the daemon died on a broken configuration"
if dp_todo reload-rc; then
    echo "NOT CHECKED: systemctl reload fails on a broken configuration (DP_TODO has 'reload-rc'; exit $rc)"
else
    ((rc != 0)) || dp_fail "systemctl reload reported success for a broken configuration"
fi
swaks --server "$SERVER_IP:25" --local-interface "$REMOTE_GOOD" --helo mail.good.unimilter.example \
    --from news@good.unimilter.example --to "bob@$DP_HOST" --h-Subject "after bad reload" ||
    dp_fail "mail not accepted after a broken reload"
echo "ok: reload with a broken configuration (systemctl reload exit $rc) logged with file:line; the old one serves"
ct cp /root/good.conf /etc/unimilter/unimilter.conf
ct systemctl reload unimilter

ct systemctl stop unimilter
res=$(ct systemctl show -p Result -p ExecMainStatus unimilter | tr '\n' ' ')
[[ "$res" == *"Result=success"* && "$res" == *"ExecMainStatus=0"* ]] || dp_fail "stop did not exit 0: $res"
echo "ok: systemctl stop: $res"
ct systemctl start unimilter
um_ready

# ---- 10. DMARC report ------------------------------------------------------------------------
dp_phase "DMARC report"
# Reports cover finished UTC days: age today's evaluations by one day.
ct_sh "sed -i -e 's|^    org_name = \"\";|    org_name = \"Example Org\";|' \
    -e 's|^    email = \"\";|    email = \"dmarc-noreply@$DP_HOST\";|' /etc/unimilter/unimilter.conf
systemctl reload unimilter
python3 - <<'EOF'
import sqlite3
db = sqlite3.connect('/var/lib/unimilter/dmarc-history.sqlite')
n = db.execute('UPDATE evaluations SET ts = ts - 86400').rowcount
db.commit()
print('aged', n, 'evaluations')
assert n >= 1
EOF
timeout 300 systemctl start unimilter-report.service
journalctl -u unimilter-report.service --no-pager -o cat | tail -n 5" ||
    dp_fail "unimilter-report.service failed: $(ct journalctl -u unimilter-report.service --no-pager -o cat | tail -n 10)"
if dp_todo report; then
    echo "NOT CHECKED: the report arrives (DP_TODO has 'report'): $(ct journalctl -u unimilter-report.service --no-pager -o cat | grep -m1 'event=report')"
else
dp_wait_mail dmarc 1
dp_last_mail dmarc >"$DP_WORK/report.eml"
grep -qi '^Subject: Report Domain: good.unimilter.example' "$DP_WORK/report.eml" ||
    dp_fail "the report mail does not look like a DMARC report: $(head -n 30 "$DP_WORK/report.eml")"
echo "ok: unimilter-report.service: $(grep -m1 -i '^Subject:' "$DP_WORK/report.eml")"
fi

# ---- 11. upgrade (reinstall), remove, purge --------------------------------------------------
dp_phase "upgrade, remove, purge"
ct cp /etc/unimilter/unimilter.conf /root/edited.conf
before=$(ct unimilter stats | grep "sasl:alice@$DP_HOST" || true)
ct dpkg -i "/root/$(basename "$DP_DEB")" >>"$DP_LOG" 2>&1 || dp_fail "reinstalling the package failed"
ct cmp -s /root/edited.conf /etc/unimilter/unimilter.conf || dp_fail "reinstalling changed the edited conffile"
ct systemctl is-active unimilter >/dev/null || dp_fail "unimilter not running after the upgrade"
um_ready
after=$(ct unimilter stats | grep "sasl:alice@$DP_HOST" || true)
[[ -n "$after" && "$(awk '{print $1}' <<<"$after")" == "$(awk '{print $1}' <<<"$before")" ]] ||
    dp_fail "the upgrade lost the counts: before '$before', after '$after'"
ct test -s /var/lib/unimilter/dmarc-history.sqlite || dp_fail "the upgrade lost the DMARC history"
echo "ok: upgrade (dpkg -i over the installed package) keeps the edited conffile, the counts and the history"
ct apt-get -y -q remove unimilter >>"$DP_LOG" 2>&1 || dp_fail "apt-get remove failed"
ct pgrep -x unimilter >/dev/null && dp_fail "the daemon still runs after remove"
ct test -f /etc/unimilter/unimilter.conf || dp_fail "remove deleted the conffile"
ct test -d /var/lib/unimilter || dp_fail "remove deleted the state"
ct apt-get -y -q purge unimilter >>"$DP_LOG" 2>&1 || dp_fail "apt-get purge failed"
ct test ! -e /var/lib/unimilter -a ! -e /etc/unimilter/unimilter.conf -a ! -e /var/spool/postfix/unimilter ||
    dp_fail "purge left state, conffile or the socket directory"
echo "ok: remove stops the daemon and keeps conffile and state; purge removes them (keys with content stay)"
# ---- 12. the journal -------------------------------------------------------------------------
dp_phase "journal"
# Expected warnings, each with its reason:
expected_warnings=(
    # the container: dbus-daemon may not raise its descriptor limit (no CAP_SYS_RESOURCE)
    'dbus-daemon\[[0-9]+\]: .*Failed to set fd limit to 65536: Operation not permitted'
    # the fixture: saslpasswd2 -c looks for the user it is about to create
    'saslpasswd2\[[0-9]+\]: error deleting entry from sasldb: BDB0073 DB_NOTFOUND'
    # the test's senders over their limit (alice on 587, www through sendmail)
    'unimilter\[[0-9]+\]: sess=[0-9a-f]+ event=ratelimit-notice sender=(sasl:alice|sender:www)@'
    # the test's broken configuration: systemctl reload fails, as it should
    'systemd\[1\]: Reload failed for unimilter.service'
    # the container: systemd 252 under nspawn on this cgroup v1 host sometimes cannot write
    # cgroup.kill of a stopping unit and falls back to signalling its processes ("ignoring");
    # that the daemon really stopped is checked above (stop result, pgrep after remove)
    'systemd\[1\]: [a-z0-9@.-]+\.service: Failed to kill control group /system\.slice/[a-z0-9@.-]+\.service, ignoring: Input/output error'
)
ct journalctl -b -p warning --no-pager -o short >"$DP_WORK/warnings.txt" || true
unexpected=$(grep -vE "$(IFS='|'; echo "${expected_warnings[*]}")" "$DP_WORK/warnings.txt" | grep -v '^-- ' || true)
[[ -z "$unexpected" ]] || dp_fail "unexpected warnings in the journal:"$'\n'"$unexpected"
echo "ok: the journal holds only expected warnings ($(grep -vc '^-- ' "$DP_WORK/warnings.txt" || true) lines)"

echo "PASS: deployment on Debian 12 with stock Postfix"
