#!/usr/bin/env bash
# tests/deploy/t_sendmail.sh - the package on a fresh Debian 12 with stock Sendmail, under systemd.
#
# Like t_postfix.sh (same lib.sh), with Debian's sendmail package instead of postfix: builds
# the .deb from this tree, a Debian 12 root (mmdebstrap, cached), boots it with
# systemd-nspawn -b and follows the README's blocks as written: package install, the
# Sendmail quick start (unimilter.conf lines, then the sendmail.mc changes on Debian's own
# sendmail.mc), DKIM keys. Checks:
#   - the MTA daemon (port 25, from a remote address) verifies: one Authentication-Results;
#     a p=reject spoof is refused 550
#   - the MSA daemon (port 587, SMTP AUTH) signs: python3-dkim verifies both signatures
#   - the journal holds no unimilter warning and no Sendmail complaint about the filter
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
USER_IP=203.0.113.5      # a user's mail client somewhere on the net

# ---- 1. the package --------------------------------------------------------------------------
dp_phase "build .deb"
dp_build_deb

# ---- 2. the root -----------------------------------------------------------------------------
dp_phase "root (mmdebstrap or cache)"
# shellcheck disable=SC2046
dp_root sendmail make unbound dns-root-data swaks sasl2-bin libsasl2-modules python3-dkim \
    python3-dnspython python3-nacl iproute2 procps $(dp_deb_depends)

# Before boot: the host's name in /etc/hosts (as Debian's installer writes it; Sendmail
# looks its own name up at start and waits a minute when it cannot) and the test zones in
# unbound, so no lookup at boot waits for root servers this network cannot reach.
dp_preboot() {
    echo "$SERVER_IP $DP_HOST mx" >>"$DP_ROOT/etc/hosts"
    cat >"$DP_ROOT/etc/unbound/unbound.conf.d/unimilter-test.conf" <<EOF
server:
    local-zone: "example." static
    local-zone: "org." static
    local-data: 'good.unimilter.example. TXT "v=spf1 ip4:$REMOTE_GOOD -all"'
    local-data: '_dmarc.good.unimilter.example. TXT "v=DMARC1; p=reject"'
    local-data: 'mail.good.unimilter.example. A $REMOTE_GOOD'
    # Sendmail refuses a sender whose domain has no MX or A record (553 5.1.8)
    local-data: 'good.unimilter.example. MX 10 mail.good.unimilter.example.'
    local-data: 'bank.unimilter.example. MX 10 mail.good.unimilter.example.'
    local-data: 'example.org. MX 10 $DP_HOST.'
    local-data: 'bank.unimilter.example. TXT "v=spf1 ip4:192.0.2.99 -all"'
    local-data: '_dmarc.bank.unimilter.example. TXT "v=DMARC1; p=reject"'
    local-zone: "100.51.198.in-addr.arpa." static
    local-data-ptr: "$REMOTE_GOOD mail.good.unimilter.example"
    local-zone: "25.2.0.192.in-addr.arpa." static
    local-data-ptr: "$SERVER_IP $DP_HOST"
    local-data: '$DP_HOST. A $SERVER_IP'
    include: /etc/unbound/unbound.conf.d/unimilter-keys.conf.inc
EOF
    : >"$DP_ROOT/etc/unbound/unbound.conf.d/unimilter-keys.conf.inc"
}

dp_phase "boot"
dp_boot
ct_sh "ip addr add $REMOTE_GOOD/32 dev lo
ip addr add 192.0.2.99/32 dev lo
ip addr add $SERVER_IP/32 dev lo
ip addr add $USER_IP/32 dev lo
for u in bob; do useradd -m \$u; done" || dp_fail "could not add the test addresses and users"
ct systemctl is-active sendmail >/dev/null || dp_fail "Debian's sendmail is not running after boot"
ct grep -q 'Name=MTA-v4, Port=smtp, Addr=127.0.0.1' /etc/mail/sendmail.mc ||
    dp_fail "Debian's sendmail.mc no longer has the MTA-v4 line the README changes"

# ---- 3. install, as the README says ----------------------------------------------------------
dp_phase "install package"
cp "$DP_DEB" "$DP_ROOT/root/"
ct_sh "cd /root
$(dp_readme deb-install)" || dp_fail "installing the package as README.md says failed"
ct systemctl is-active unimilter.service >/dev/null || dp_fail "unimilter.service not running after install"

# ---- 4. Sendmail quick start as written ------------------------------------------------------
dp_phase "sendmail quick start"
ct_sh "$(dp_readme sendmail)" || dp_fail "the README's Sendmail lines (unimilter.conf) failed"
# Type=notify: restart returned, so the socket is there now.
ct test -S /run/unimilter/unimilter.sock || dp_fail "no socket /run/unimilter/unimilter.sock after the restart"
[[ "$(ct stat -c %G /run/unimilter/unimilter.sock)" == smmsp ]] ||
    dp_fail "the socket's group is not smmsp after the quick start"
ct_sh "$(dp_readme sendmail-mc)" || dp_fail "the README's sendmail.mc lines failed"
for l in 'Name=MTA, Port=smtp' 'Name=MSA, Port=submission, M=Ea'; do
    (($(ct grep -c "$l" /etc/mail/sendmail.mc) == 1)) || dp_fail "sendmail.mc does not have '$l' once"
done
(($(ct grep -c 'Name=M[TS][AP]-v4' /etc/mail/sendmail.mc || true) == 0)) || dp_fail "sendmail.mc still has a -v4 daemon"
ct grep -q '^Xunimilter, S=unix:/run/unimilter/unimilter.sock' /etc/mail/sendmail.cf ||
    dp_fail "sendmail.cf has no filter line: $(ct grep -n '^X\|^O InputMailFilters' /etc/mail/sendmail.cf)"
ct systemctl is-active sendmail >/dev/null || dp_fail "sendmail is not running after the quick start"
echo "ok: Sendmail quick start applied to Debian's sendmail.mc: $(ct grep -c '^Xunimilter' /etc/mail/sendmail.cf) filter line"

# ---- 5. fixtures: SASL for the MSA (M=a requires AUTH) ---------------------------------------
dp_phase "fixtures (SASL)"
ct_sh "echo 'pw-alice' | saslpasswd2 -c -p -u $DP_HOST alice
chown root:root /etc/sasldb2
chmod 0600 /etc/sasldb2
for d in /etc/sasl2 /usr/lib/sasl2 /etc/mail/sasl; do
    mkdir -p \$d
    printf '%s\n' 'pwcheck_method: auxprop' 'auxprop_plugin: sasldb' 'mech_list: PLAIN LOGIN' >\$d/Sendmail.conf
done
sed -i '/^MAILER_DEFINITIONS/i define(\`confAUTH_MECHANISMS'\"'\"', \`PLAIN LOGIN'\"'\"')dnl\nTRUST_AUTH_MECH(\`PLAIN LOGIN'\"'\"')dnl' /etc/mail/sendmail.mc
make -C /etc/mail
systemctl restart sendmail" || dp_fail "could not set up SASL for Sendmail"

swaks() {
    local rc=0
    ct swaks --timeout 60 "$@" >"$DP_WORK/swaks.out" 2>&1 || rc=$?
    cat "$DP_WORK/swaks.out" >>"$DP_LOG"
    return $rc
}

# ---- 6. the MTA daemon verifies --------------------------------------------------------------
dp_phase "inbound (MTA, port 25)"
dp_inbound_checks "MTA daemon" 1

# ---- 7. the MSA daemon signs -----------------------------------------------------------------
dp_phase "DKIM keys and signing (MSA, 587)"
dp_publish_keys
ct_sh "$(dp_readme dkim-config)" || dp_fail "the README's dkim_sign lines (check-keys, reload) failed"

swaks --server "$SERVER_IP:587" --local-interface "$USER_IP" --auth PLAIN \
    --auth-user "alice@$DP_HOST" --auth-password pw-alice \
    --from alice@example.org --to "bob@$DP_HOST" --h-From alice@example.org --h-Subject "signed 1" ||
    dp_fail "submission on 587 failed: $(tail -n 8 "$DP_WORK/swaks.out")"
dp_verify_signed 2 "$DP_WORK/out1.eml"
grep -q '^Authentication-Results:' "$DP_WORK/out1.eml" &&
    dp_fail "mail on the MSA daemon got an Authentication-Results (verified, not signed only)"
echo "ok: MSA daemon (587, AUTH): signed; python3-dkim: $(cat "$DP_WORK/verify.out")"

# ---- 8. the journal --------------------------------------------------------------------------
dp_phase "journal"
ct journalctl -b -u unimilter -p warning --no-pager -o short >"$DP_WORK/warnings.txt" || true
unexpected=$(grep -v '^-- ' "$DP_WORK/warnings.txt" || true)
[[ -z "$unexpected" ]] || dp_fail "unimilter logged warnings:"$'\n'"$unexpected"
echo "ok: unimilter logged no warning"
# Sendmail logs trouble with the filter as "Milter (unimilter): ..." (timeouts, errors)
milter=$(ct journalctl -b --no-pager -o short | grep -E 'Milter \(unimilter\): .*(error|timeout|to error state|unsafe)' || true)
[[ -z "$milter" ]] || dp_fail "Sendmail logged trouble with the filter:"$'\n'"$milter"
echo "ok: Sendmail logged no trouble with the filter"

echo "PASS: deployment on Debian 12 with stock Sendmail"
