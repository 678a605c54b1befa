#!/bin/bash
# Outbound signing at protocol level: a From domain with an RSA and an Ed25519 key gets two
# DKIM-Signature headers; a domain without a rule gets none; inbound mail is not signed;
# a key readable by others is refused at start with file:line; check (-n) fails on it too.
. "$(dirname "$0")/lib.sh"
need openssl

mkdir -p "$T/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/keys/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$T/keys/ed.pem" 2>/dev/null
chmod 0600 "$T/keys/"*.pem
[ "$(id -u)" = 0 ] && chown nobody "$T/keys/"*.pem

sign_conf() {
    write_conf "$1" "dkim_sign = {
    keys = (
        { name = \"r\"; domain = \"example.org\"; selector = \"rsa1\"; file = \"$T/keys/rsa.pem\"; },
        { name = \"e\"; domain = \"example.org\"; selector = \"ed1\"; file = \"$T/keys/ed.pem\"; }
    );
    rules = ( { from = \"example.org\"; keys = [\"r\", \"e\"]; } );
};"
}
sign_conf "$T/um.conf"
"$UM_BIN" -n -c "$T/um.conf" >/dev/null || fail "config with keys rejected"
um_start "$T/um.conf"

# sign_session NAME DAEMON FROM WANT_SIGS
sign_session() {
    local name=$1 dname=$2 from=$3 want=$4
    {
        echo "local conn = mt.connect(\"unix:$T/um.sock\", 40, 0.1)"
        echo "mt.macro(conn, SMFIC_CONNECT, \"{daemon_name}\", \"$dname\")"
        echo 'if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo") end'
        echo 'if mt.helo(conn, "client.example") ~= nil then error("helo") end'
        echo 'if mt.mailfrom(conn, "<a@example.org>") ~= nil then error("mail") end'
        echo 'if mt.rcptto(conn, "<b@example.net>") ~= nil then error("rcpt") end'
        echo 'if mt.header(conn, "Subject", "signed?") ~= nil then error("header") end'
        echo "if mt.header(conn, \"From\", \"Alice <alice@$from>\") ~= nil then error(\"header\") end"
        echo 'if mt.header(conn, "To", "b@example.net") ~= nil then error("header") end'
        echo 'if mt.eoh(conn) ~= nil then error("eoh") end'
        echo 'if mt.bodystring(conn, "line one\r\nline two\r\n") ~= nil then error("body") end'
        echo 'if mt.eom(conn) ~= nil then error("eom") end'
        echo 'if mt.getreply(conn) ~= SMFIR_ACCEPT then error("not accepted") end'
        if [ "$want" -gt 0 ]; then
            echo 'if not mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature") then error("no DKIM-Signature inserted") end'
        else
            echo 'if mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature") then error("unexpected DKIM-Signature") end'
        fi
        echo 'mt.disconnect(conn)'
    } >"$T/$name.lua"
    miltertest -s "$T/$name.lua" >"$T/$name.out" 2>&1 || fail "$name: $(cat "$T/$name.out")"
}
sign_session out ORIGINATING example.org 2
grep -q 'event=verdict .*mode=outbound .*dkim.d=example.org dkim.sigs=2' "$T/log" || fail "no verdict with 2 signatures"
sign_session norule ORIGINATING other.test 0
grep -q 'event=verdict .*dkim.sign="no rule for the From domain"' "$T/log" || fail "unsigned domain: no reason logged"
sign_session inbound mx.example.org example.org 0
um_stop

# A key readable by its group is refused, naming the config line and the file.
chmod 0640 "$T/keys/ed.pem"
rc=0; out=$("$UM_BIN" -n -c "$T/um.conf" 2>&1) || rc=$?
[ "$rc" = 1 ] || fail "-n accepted a group-readable key"
line=$(grep -n 'name = "e"' "$T/um.conf" | cut -d: -f1)
case $out in
"unimilter: $T/um.conf:$line: dkim_sign.keys.[1]: "*"$T/keys/ed.pem"*) ;;
*) fail "unclear refusal of a group-readable key: $out" ;;
esac
! echo "$out" | grep -q "PRIVATE KEY" || fail "key material in an error message"
rc=0; "$UM_BIN" -c "$T/um.conf" >>"$T/log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "daemon started with a group-readable key"
echo "PASS t_sign"
