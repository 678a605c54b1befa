#!/bin/sh
# t_verifiers.sh - our signatures verify with three independent verifiers
#
# Keys are generated with lib/keygen (um_keygen), the corpus (tests/dkim/corpus plus a ~1 MB
# base64 attachment and a 300-header message made here) is signed by lib/dkim_sign
# (um_signfile) with RSA-2048 only, Ed25519 only, and both (RFC 8463 dual signing, keys chosen
# by lib/keyrule from the From domain), each in relaxed/relaxed; RSA only and Ed25519 only
# again in simple/simple, and both again in simple/relaxed and relaxed/simple (the latter
# without the leading space, -l), with body chunks of 65536, 7, 3, 1000 and 5 bytes. A local
# unbound serves the public keys; dkimpy, Mail::DKIM and opendkim-testmsg query it. Asserts,
# per verifier and algorithm: verified == signed; a mailing-list style change (subject tag +
# footer) fails for every verifier; a From domain without a rule is passed through unsigned
# and byte-identical.
#
# DNS: as root (and when unshare(1) works) the script re-runs itself in private network and
# mount namespaces, binds unbound to 127.0.0.1:53 and bind-mounts a resolv.conf pointing there,
# because opendkim-testmsg can only use the system resolver. Otherwise unbound listens on
# 127.0.0.1:$UM_DKIM_DNS_PORT (default 5353), dkimpy and Mail::DKIM are pointed at it, and
# opendkim-testmsg is not run (a failure under CI=true).
#
# Env: UM_SIGNFILE, UM_KEYGEN (built tools), UM_SRC (source root), CI.
# Exit: 0 pass, 1 fail, 77 skip (a tool is missing; under CI=true that is a failure).
set -u

fail_or_skip() {
    if [ "${CI:-}" = "true" ]; then
        echo "FAIL (CI=true): $*"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${UM_SRC:-$(cd "$HERE/../.." && pwd)}
SIGNFILE=${UM_SIGNFILE:-}
KEYGEN=${UM_KEYGEN:-}
[ -x "$SIGNFILE" ] || fail_or_skip "UM_SIGNFILE (um_signfile) not built"
[ -x "$KEYGEN" ] || fail_or_skip "UM_KEYGEN (um_keygen) not built"
PY=${UM_PYTHON:-/usr/bin/python3} # Debian's python3, where python3-dkim lives (not a pyenv shim)
[ -x "$PY" ] || PY=python3
for t in unbound "$PY" perl; do
    command -v "$t" >/dev/null 2>&1 || fail_or_skip "$t not installed"
done
"$PY" -c 'import dkim, dns.resolver' 2>/dev/null || fail_or_skip "python3-dkim / python3-dnspython missing"
perl -MMail::DKIM::Verifier -MNet::DNS::Resolver -e1 2>/dev/null || fail_or_skip "libmail-dkim-perl / libnet-dns-perl missing"

# Into private namespaces, once, when we can.
if [ -z "${UM_DKIM_NS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 \
    && unshare --net --mount true 2>/dev/null; then
    UM_DKIM_NS=1 exec unshare --net --mount "$0" "$@"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/um-dkim.XXXXXX") || exit 1
UNBOUND_PID=
cleanup() {
    [ -n "$UNBOUND_PID" ] && kill "$UNBOUND_PID" 2>/dev/null
    if [ -n "${UM_DKIM_KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

OPENDKIM=no
if [ -n "${UM_DKIM_NS:-}" ]; then
    ip link set lo up || exit 1
    PORT=53
    # Without an /etc/resolv.conf (or with a dangling link) glibc's resolver already asks
    # 127.0.0.1; a fresh machine need not have one, so only an existing file is covered.
    if [ -e /etc/resolv.conf ]; then
        echo "nameserver 127.0.0.1" >"$TMP/resolv.conf"
        mount --bind "$TMP/resolv.conf" /etc/resolv.conf || exit 1
    fi
    if command -v opendkim-testmsg >/dev/null 2>&1; then
        OPENDKIM=yes
    else
        OPENDKIM=missing
    fi
else
    PORT=${UM_DKIM_DNS_PORT:-5353}
fi

umask 077
cd "$TMP" || exit 1
mkdir keys corpus signed || exit 1

# Keys (mode 0600, owned by us: what um_dkim_sign_key_load accepts).
"$KEYGEN" rsa 2048 example.com rsa2048 keys/rsa.pem >keys/rsa.zone || exit 1
"$KEYGEN" ed25519 0 example.com ed25519 keys/ed.pem >keys/ed.zone || exit 1
zone_to_local_data() { # "n. IN TXT ( "a"\n\t"b" )" -> local-data: 'n. IN TXT "a" "b"'
    tr '\n\t' '  ' <"$1" | sed -e 's/( *//' -e 's/ *) *$//' -e "s/^/    local-data: '/" -e "s/\$/'/"
}
{
    cat <<EOF
server:
    interface: 127.0.0.1
    port: $PORT
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$TMP"
    pidfile: ""
    use-syslog: no
    logfile: "$TMP/unbound.log"
    verbosity: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "example.com." static
EOF
    zone_to_local_data keys/rsa.zone
    echo
    zone_to_local_data keys/ed.zone
    echo
    echo "remote-control:"
    echo "    control-enable: no"
} >unbound.conf
unbound-checkconf unbound.conf >/dev/null || { cat unbound.conf; exit 1; }
unbound -d -c unbound.conf &
UNBOUND_PID=$!
i=0
until "$PY" - "$PORT" <<'EOF' 2>/dev/null
import sys, dns.resolver
r = dns.resolver.Resolver(configure=False); r.nameservers = ["127.0.0.1"]; r.port = int(sys.argv[1])
r.resolve("ed25519._domainkey.example.com", "TXT")
EOF
do
    i=$((i + 1))
    [ $i -gt 50 ] && { echo "FAIL: unbound did not answer"; cat unbound.log; exit 1; }
    sleep 0.2
done

# Corpus: the committed files plus two generated ones.
cp "$HERE"/corpus/*.eml corpus/ || exit 1
"$PY" - <<'EOF' || exit 1
import base64, os
h = ("From: Alice Example <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n"
     "Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n")
data = base64.encodebytes(os.urandom(768 * 1024)).replace(b"\n", b"\r\n")
with open("corpus/40-attachment-1mb.eml", "wb") as f:
    f.write((h + "Subject: 1 MB attachment\r\nMIME-Version: 1.0\r\n"
             'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--zz\r\n'
             "Content-Type: text/plain\r\n\r\nsee attachment\r\n--zz\r\n"
             "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
             'Content-Disposition: attachment; filename="blob.bin"\r\n\r\n').encode())
    f.write(data)
    f.write(b"--zz--\r\n")
with open("corpus/41-300-headers.eml", "wb") as f:
    hs = "".join("Received: from hop%03d.example.net by hop%03d.example.net; "
                 "Mon, 24 Nov 2025 10:00:%02d +0000\r\n" % (i, i + 1, i % 60) for i in range(290))
    hs += "".join("X-Trace-%d: %s\r\n" % (i, "v" * (i * 7 % 120)) for i in range(10))
    f.write((hs + h + "Subject: 300 headers\r\nMessage-ID: <m41@example.com>\r\n\r\nmany headers\r\n").encode())
EOF

# Sign. Rules: example.com and its subdomains -> both keys; other.test has no rule.
KEYS="-k rsa:keys/rsa.pem:example.com:rsa2048 -k ed:keys/ed.pem:example.com:ed25519"
RULES="-r example.com=rsa,ed -r *.example.com=rsa,ed"
nsigned=0
for m in corpus/*.eml; do
    b=$(basename "$m" .eml)
    case "$b" in 30-*) continue ;; esac
    "$SIGNFILE" -k rsa:keys/rsa.pem:example.com:rsa2048 "$m" >"signed/$b.rsa.eml" || exit 1
    "$SIGNFILE" -k ed:keys/ed.pem:example.com:ed25519 -n 7 "$m" >"signed/$b.ed.eml" || exit 1
    # shellcheck disable=SC2086
    "$SIGNFILE" $KEYS $RULES -n 1000 "$m" >"signed/$b.dual.eml" || exit 1
    "$SIGNFILE" -c simple/simple -k rsa:keys/rsa.pem:example.com:rsa2048 "$m" >"signed/$b.rsa-ss.eml" || exit 1
    "$SIGNFILE" -c simple/simple -k ed:keys/ed.pem:example.com:ed25519 -n 3 "$m" >"signed/$b.ed-ss.eml" || exit 1
    # shellcheck disable=SC2086
    "$SIGNFILE" -c simple/relaxed $KEYS $RULES -n 5 "$m" >"signed/$b.dual-sr.eml" || exit 1
    # shellcheck disable=SC2086
    "$SIGNFILE" -c relaxed/simple -l $KEYS $RULES "$m" >"signed/$b.dual-rs.eml" || exit 1
    nsigned=$((nsigned + 1))
done
echo "corpus: $nsigned messages, each signed rsa / ed25519 / dual (relaxed), rsa / ed25519 (simple), dual (simple/relaxed, relaxed/simple)"

# SMTP ends DATA with CRLF "." (RFC 5321 4.1.1.4), so a message file without a final line end
# (14-no-final-newline) reaches a verifier with one; give it one here too. (Mail::DKIM hashes
# a simple body without it as is, where RFC 6376 3.4.3 adds the CRLF.)
for f in signed/*.eml; do
    [ -n "$(tail -c 1 "$f")" ] && printf '\r\n' >>"$f"
done

# Unsigned domain: passes through untouched.
# shellcheck disable=SC2086
"$SIGNFILE" $KEYS $RULES corpus/30-unsigned-domain.eml >unsigned.eml 2>unsigned.err || exit 1
status=0
if ! grep -q '^unsigned: no rule matches other.test' unsigned.err || grep -qi '^DKIM-Signature' unsigned.eml \
    || ! cmp -s unsigned.eml corpus/30-unsigned-domain.eml; then
    echo "FAIL: other.test message was signed or altered ($(cat unsigned.err))"
    status=1
else
    echo "ok: other.test not signed ($(cat unsigned.err))"
fi

# Mailing-list changes on dual-signed messages.
for b in 01-plain 06-utf8-body 12-multipart 13-list-headers; do
    sed -e 's/^Subject: /Subject: [list] /' "signed/$b.dual.eml" >"signed/ml-$b.eml"
    printf -- '-- \r\nlist footer: unsubscribe at https://lists.example.com/\r\n' >>"signed/ml-$b.eml"
done

"$PY" "$HERE/verify_dkimpy.py" 127.0.0.1 "$PORT" signed/*.eml >dkimpy.out 2>dkimpy.err
perl "$HERE/verify_maildkim.pl" 127.0.0.1 "$PORT" signed/*.eml >maildkim.out 2>maildkim.err
: >opendkim.out
if [ "$OPENDKIM" = yes ]; then
    for f in signed/*.eml; do
        case "$f" in *.dual*.eml | */ml-*) ;; *)
            if opendkim-testmsg <"$f" >/dev/null 2>"$f.odk.err"; then r=pass; else r=fail; fi
            alg=rsa-sha256
            case "$f" in *.ed.eml | *.ed-*.eml) alg=ed25519-sha256 ;; esac
            echo "$f 0 $alg $r $(tr '\n' ' ' <"$f.odk.err")" >>opendkim.out
            ;;
        esac
    done
    for f in signed/ml-*.eml; do # both signatures broken: the message must not verify
        if opendkim-testmsg <"$f" >/dev/null 2>/dev/null; then r=pass; else r=fail; fi
        echo "$f 0 any $r" >>opendkim.out
    done
fi

# Mail::DKIM before 1.20230630 cannot verify Ed25519 (RFC 8463 support came later).
MAILDKIM_ED=yes
perl -MMail::DKIM::Algorithm::ed25519_sha256 -e1 2>/dev/null || MAILDKIM_ED=no

# count FILE ALG KIND: signatures of ALG (rsa-sha256|ed25519-sha256) in non-ml files, KIND pass|all
count() {
    awk -v alg="$2" -v kind="$3" '$1 !~ /\/ml-/ && $3 == alg && (kind == "all" || $4 == kind) { n++ } END { print n + 0 }' "$1"
}
want_rsa=$((nsigned * 5)) # .rsa .dual .rsa-ss .dual-sr .dual-rs
want_ed=$((nsigned * 5))  # .ed .dual .ed-ss .dual-sr .dual-rs
check() { # verifier alg got want
    if [ "$3" = "$4" ]; then
        echo "ok: $1 $2 verified $3 / signed $4"
    else
        echo "FAIL: $1 $2 verified $3 / signed $4"
        status=1
    fi
}
check dkimpy rsa-sha256 "$(count dkimpy.out rsa-sha256 pass)" $want_rsa
check dkimpy ed25519-sha256 "$(count dkimpy.out ed25519-sha256 pass)" $want_ed
check Mail::DKIM rsa-sha256 "$(count maildkim.out rsa-sha256 pass)" $want_rsa
if [ "$MAILDKIM_ED" = yes ]; then
    check Mail::DKIM ed25519-sha256 "$(count maildkim.out ed25519-sha256 pass)" $want_ed
else
    echo "note: Mail::DKIM $(perl -MMail::DKIM -e 'print $Mail::DKIM::VERSION') has no Ed25519:" \
        "$(count maildkim.out ed25519-sha256 all) ed25519 signatures seen, not counted"
fi
case "$OPENDKIM" in
yes)
    check opendkim-testmsg rsa-sha256 "$(count opendkim.out rsa-sha256 pass)" $((nsigned * 2))
    check opendkim-testmsg ed25519-sha256 "$(count opendkim.out ed25519-sha256 pass)" $((nsigned * 2))
    ;;
*)
    if [ "${CI:-}" = "true" ]; then
        echo "FAIL: opendkim-testmsg not run ($OPENDKIM; needs root and unshare for a DNS server on port 53)"
        status=1
    else
        echo "note: opendkim-testmsg not run (needs root + unshare to serve DNS on 127.0.0.1:53)"
    fi
    ;;
esac

# Mailing-list changes: nothing may pass.
mlpass=$(cat dkimpy.out maildkim.out opendkim.out | awk '$1 ~ /\/ml-/ && $4 == "pass"' | wc -l)
mlseen=$(cat dkimpy.out maildkim.out opendkim.out | awk '$1 ~ /\/ml-/' | wc -l)
if [ "$mlpass" -ne 0 ] || [ "$mlseen" -eq 0 ]; then
    echo "FAIL: mailing-list modified messages: $mlpass of $mlseen verifications passed"
    cat dkimpy.out maildkim.out opendkim.out | awk '$1 ~ /\/ml-/ && $4 == "pass"'
    status=1
else
    echo "ok: mailing-list modified messages: 0 of $mlseen verifications passed"
fi

if [ $status -ne 0 ]; then
    echo "--- failures"
    awk '$1 !~ /\/ml-/ && $4 != "pass" { print "dkimpy:", $0 }' dkimpy.out | head -20
    awk -v ed="$MAILDKIM_ED" '$1 !~ /\/ml-/ && $4 != "pass" && (ed == "yes" || $3 != "ed25519-sha256") { print "Mail::DKIM:", $0 }' maildkim.out | head -20
    awk '$1 !~ /\/ml-/ && $4 != "pass" { print "opendkim-testmsg:", $0 }' opendkim.out | head -20
    head -20 dkimpy.err maildkim.err
fi
exit $status
