#!/bin/bash
# The benchmark, end to end and small, as a correctness test (it asserts no times): a fresh
# corpus from bench/gencorpus.py (SPF include chains, ~all/-all, DMARC none/quarantine/
# reject strict and relaxed, RSA and Ed25519 keys; signed, tampered, spoofed, forwarded,
# mailing-list and unaligned ESP mail, each with its expected results), served by a private
# unbound, through bench/milterload into this build of unimilter. Every inbound message must
# get the expected spf, dkim and dmarc result, every outbound one exactly one signature of the
# right algorithm that dkimpy verifies; the null milters must run too. Peers (opendkim,
# opendmarc, rspamd) are not part of this test.
set -euo pipefail
UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build tree}
UM_SRC=${UM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}

skip() {
    if [ "${CI:-}" = "true" ]; then echo "FAIL: $*" >&2; exit 1; fi
    echo "SKIP: $*" >&2
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (private network namespace, DNS on port 53)"
for t in unbound unshare ip openssl /usr/bin/python3; do
    command -v "$t" >/dev/null || skip "$t is not installed (tools/deps.sh test)"
done
/usr/bin/python3 -c 'import dkim, nacl, dns.resolver' 2>/dev/null || skip "python3-dkim/nacl/dnspython missing"

T=$(mktemp -d /tmp/um-bench.XXXXXX)
trap 'if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "kept $T" >&2; fi' EXIT
fail() {
    echo "FAIL: $*" >&2
    tail -n 20 "$T/compare.err" >&2 || true
    exit 1
}

N=40
"$UM_SRC/bench/compare" --unimilter "$UM_BIN" --milterload "$UM_BUILD/bench/milterload" \
    --nullmilter "$UM_BUILD/bench/nullmilter" --work "$T" --rounds 1 --sessions 4 \
    --inbound $N --outbound $N \
    --only unimilter-in,unimilter-rsa,unimilter-ed,null-in,null-q-in,null-out \
    >"$T/table" 2>"$T/compare.err" || fail "bench/compare exited with $?"

row() { grep "^| $1 |" "$T/table" || fail "no row for $1: $(cat "$T/table")"; }
for s in unimilter-in unimilter-rsa unimilter-ed; do
    r=$(row "$s")
    case $r in *"| $N / $N | 0 |") ;; *) fail "$s: not every result right: $r; wrong ones: $(head -n 5 "$T/wrong-$s.txt")" ;; esac
done
for s in null-in null-q-in null-out; do
    r=$(row "$s")
    case $r in *"not measured"*) fail "$s: $r" ;; *"| 0 |") ;; *) fail "$s: errors: $r" ;; esac
done
echo "PASS t_compare"
