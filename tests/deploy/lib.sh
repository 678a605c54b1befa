# shellcheck shell=bash disable=SC2016
# tests/deploy/lib.sh - sourced by the deployment tests (tests/deploy/t_*.sh).
#
# A fresh Debian 12 root from the Debian archive (mmdebstrap), the package built from this
# tree installed into it, booted under systemd with systemd-nspawn, commands run inside with
# nsenter. Functions:
#   dp_require                    root and the tools below, else exit 77 (exit 1 under CI=true)
#   dp_phase NAME                 start a timed phase; the previous one's time is printed
#   dp_build_deb                  dpkg-buildpackage on a copy of the tree -> $DP_DEB
#   dp_root PKGS...               the cached root tarball with these packages -> $DP_TAR
#   dp_boot                       extract $DP_TAR, boot it; $DP_PID is its systemd (a
#                                 function dp_preboot, if the test defines one, runs first,
#                                 with the root extracted in $DP_ROOT)
#   ct CMD...                     run CMD inside the container (clean environment, as root)
#   ct_sh SCRIPT                  run a bash script inside (set -euxo pipefail), log to $DP_LOG
#   dp_wait CMD...                CMD succeeds within 15 s
#   dp_readme NAME                the README block marked <!-- deploy:NAME -->, de-indented
#   dp_fail MSG                   print MSG, the journal's tail, exit 1
#   dp_teardown                   (trap) stop the container by PID, remove the temp root
# Environment: DP_KEEP=1 keeps the work directory; DP_PREBUILT_DEB=FILE skips the package
# build and DP_TODO="name ..." sets checks aside (both only for working on the tests
# themselves, never under CI=true); DP_CACHE, DP_MIRROR.
# The root tarball is cached in $DP_CACHE (default /var/cache/unimilter-deploy), keyed by the
# suite and the package list, outside the clone, so a fresh clone reuses it. It is not
# refreshed when the archive moves on: delete it to test against newer packages.
DP_SUITE=bookworm
DP_MIRROR=${DP_MIRROR:-http://deb.debian.org/debian}
DP_CACHE=${DP_CACHE:-/var/cache/unimilter-deploy}
DP_HOST=mx.example.org
UM_SRC=${UM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DP_WORK=
DP_NSPAWN=
DP_PID=
DP_LOG=
DP_PHASE=
DP_PHASE_T0=
DP_T0=$(date +%s)

dp_skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: $* (CI=true: a deployment test that cannot run is a failure)" >&2
        exit 1
    fi
    echo "SKIP: $*" >&2
    exit 77
}

dp_require() {
    local t
    [[ "$(id -u)" == 0 ]] || dp_skip "needs root (mmdebstrap, systemd-nspawn)"
    for t in mmdebstrap systemd-nspawn nsenter dpkg-buildpackage dh lintian unshare git; do
        command -v "$t" >/dev/null 2>&1 ||
            dp_skip "$t missing (apt-get install mmdebstrap systemd-container debhelper lintian util-linux git)"
    done
    DP_WORK=$(mktemp -d /var/tmp/um-deploy.XXXXXX)
    DP_LOG=$DP_WORK/run.log
    : >"$DP_LOG"
}

dp_phase() {
    local now
    now=$(date +%s)
    [[ -n "$DP_PHASE" ]] && printf 'time: %-28s %4ss\n' "$DP_PHASE" "$((now - DP_PHASE_T0))"
    DP_PHASE=$1
    DP_PHASE_T0=$now
    [[ -n "$1" ]] && echo "== $1" && echo "== $1" >>"$DP_LOG"
    return 0
}

dp_fail() {
    echo "FAIL: $*" >&2
    if [[ -n "$DP_PID" ]] && kill -0 "$DP_PID" 2>/dev/null; then
        echo "--- container journal (last 60 lines):" >&2
        ct journalctl -b --no-pager -n 60 >&2 2>/dev/null || true
    fi
    if [[ -s "$DP_LOG" ]]; then
        echo "--- last commands run inside ($DP_LOG):" >&2
        tail -n 40 "$DP_LOG" >&2
    fi
    exit 1
}

# A copy of the tree (tracked and new files, no build/ output): dpkg-buildpackage writes into
# the parent directory, which must not be the clone's.
dp_build_deb() {
    local src=$DP_WORK/pkg/unimilter
    if [[ -n "${DP_PREBUILT_DEB:-}" ]]; then # developers iterating on the test itself
        [[ "${CI:-}" != "true" ]] || dp_fail "DP_PREBUILT_DEB is not allowed under CI=true"
        DP_DEB=$DP_PREBUILT_DEB
        echo "using $DP_DEB (DP_PREBUILT_DEB)"
        return 0
    fi
    mkdir -p "$src"
    (cd "$UM_SRC" && git ls-files -co --exclude-standard -z | grep -zv '^build/' |
        xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$src"
    (cd "$src" && dpkg-buildpackage -us -uc -b -j2) >"$DP_WORK/pkg/build.log" 2>&1 || {
        tail -n 40 "$DP_WORK/pkg/build.log" >&2
        dp_fail "dpkg-buildpackage failed (log above)"
    }
    DP_DEB=$(ls "$DP_WORK"/pkg/unimilter_*_amd64.deb)
    [[ -f "$DP_DEB" ]] || dp_fail "no unimilter_*_amd64.deb built"
    echo "built $(basename "$DP_DEB")"
}

# The runtime libraries the package needs, from its Depends (versions stripped), so the
# cached root already holds them and installing the .deb needs no network.
dp_deb_depends() {
    dpkg-deb -f "$DP_DEB" Depends | tr ',' '\n' | sed -e 's/([^)]*)//g' -e 's/|.*//' -e 's/ //g' |
        grep -v '^$'
}

# dp_root PKGS...: a tarball of a minimal bookworm with systemd and PKGS. Postfix's debconf
# questions are answered as an operator of an Internet site would; the root's hostname is
# $DP_HOST (mmdebstrap runs in its own UTS namespace so Postfix's postinst sees that name).
dp_root() {
    local list key tmp
    list=$(printf '%s\n' systemd systemd-sysv dbus "$@" | sort -u | tr '\n' ',')
    list=${list%,}
    # The key: suite, packages, host name and this recipe's version (bump it when the
    # mmdebstrap command below changes).
    key=$(printf '%s %s %s r2' "$DP_SUITE" "$list" "$DP_HOST" | sha256sum | cut -c1-16)
    DP_TAR=$DP_CACHE/$DP_SUITE-$key.tar
    if [[ -s "$DP_TAR" ]]; then
        echo "cached root $DP_TAR"
        return 0
    fi
    mkdir -p "$DP_CACHE"
    tmp=$DP_CACHE/.new-$key.tar # mmdebstrap picks the output format from the name
    unshare --uts sh -c 'hostname "$1"; shift; exec "$@"' sh "$DP_HOST" \
        mmdebstrap --variant=apt --include="$list" \
        --essential-hook='echo '"$DP_HOST"' >"$1/etc/hostname"' \
        --essential-hook='printf "%s\n" "postfix postfix/main_mailer_type select Internet Site" "postfix postfix/mailname string '"$DP_HOST"'" | chroot "$1" debconf-set-selections' \
        "$DP_SUITE" "$tmp" "$DP_MIRROR" >"$DP_WORK/mmdebstrap.log" 2>&1 || {
        tail -n 30 "$DP_WORK/mmdebstrap.log" >&2
        rm -rf "$tmp"
        dp_fail "mmdebstrap could not build the root (log above)"
    }
    mv "$tmp" "$DP_TAR"
    echo "built root $DP_TAR ($(du -h "$DP_TAR" | cut -f1))"
}

# Boot the root: its own network namespace (loopback only: the container's Postfix listens
# on port 25 without meeting the host's), its own resolv.conf (the container's DNS server).
dp_boot() {
    local i p state
    DP_ROOT=$DP_WORK/root
    mkdir "$DP_ROOT"
    tar -xf "$DP_TAR" -C "$DP_ROOT"
    echo "nameserver 127.0.0.1" >"$DP_ROOT/etc/resolv.conf"
    if declare -F dp_preboot >/dev/null; then dp_preboot; fi
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --register=no --keep-unit --quiet \
        --private-network --resolv-conf=off --timezone=off --hostname="$DP_HOST" \
        -D "$DP_ROOT" -b >"$DP_WORK/console.log" 2>&1 </dev/null &
    DP_NSPAWN=$!
    # The container's PID 1 is the nspawn process's child once that child runs systemd
    # (before, the child is nspawn's own intermediate process).
    DP_PID=
    for ((i = 0; i < 150; i++)); do
        for p in $(pgrep -P "$DP_NSPAWN" 2>/dev/null || true); do
            [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == systemd ]] && DP_PID=$p
        done
        [[ -n "$DP_PID" ]] && break
        kill -0 "$DP_NSPAWN" 2>/dev/null || break
        sleep 0.2
    done
    [[ -n "$DP_PID" ]] || { cat "$DP_WORK/console.log" >&2; dp_fail "systemd-nspawn did not start the container's systemd"; }
    for ((i = 0; i < 120; i++)); do
        state=$(ct systemctl is-system-running 2>/dev/null) || true
        case $state in
        running | degraded) break ;;
        esac
        sleep 0.5
    done
    case $state in
    running | degraded) echo "booted: systemd $(ct systemctl --version | head -n1 | cut -d' ' -f2), state $state" ;;
    *) cat "$DP_WORK/console.log" >&2; dp_fail "the container did not finish booting (state: ${state:-none})" ;;
    esac
}

# dp_todo NAME: NAME is in $DP_TODO, a list of checks a developer has set aside while the
# feature they need is being built elsewhere; refused under CI=true.
dp_todo() {
    [[ " ${DP_TODO:-} " == *" $1 "* ]] || return 1
    [[ "${CI:-}" != "true" ]] || dp_fail "DP_TODO ($DP_TODO) is not allowed under CI=true"
    return 0
}

ct() {
    nsenter -t "$DP_PID" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# dp_wait CMD...: CMD succeeds within 15 s.
dp_wait() {
    local i
    for ((i = 0; i < 60; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}

ct_sh() {
    echo "+++ $1" >>"$DP_LOG"
    ct bash -euxo pipefail -c "$1" >>"$DP_LOG" 2>&1
}

# dp_wait_mail USER N: USER's mailbox in the container holds at least N messages (30 s).
dp_wait_mail() {
    local i n=0
    for ((i = 0; i < 60; i++)); do
        n=$(ct sh -c "grep -c '^From ' /var/mail/$1 2>/dev/null || true")
        ((${n:-0} >= $2)) && return 0
        sleep 0.5
    done
    dp_fail "/var/mail/$1 has ${n:-0} messages, want $2"
}

# dp_last_mail USER: the last message in USER's mailbox, on stdout.
dp_last_mail() {
    ct python3 -c 'import mailbox, sys
mb = mailbox.mbox("/var/mail/" + sys.argv[1])
sys.stdout.buffer.write(mb.get_bytes(list(mb.keys())[-1]))' "$1"
}

# dp_inbound_checks WHAT NMAIL: the inbound checks both MTAs must pass on port 25, from the
# remote good sender ($REMOTE_GOOD, the caller's swaks wrapper): bob's mailbox then holds
# NMAIL messages, the last with exactly one Authentication-Results (spf=pass, dmarc=pass,
# our authserv-id $DP_HOST), and a p=reject spoof is refused 550. WHAT names the daemon in
# the ok: lines.
dp_inbound_checks() {
    local what=$1 nmail=$2 n ar rc=0
    swaks --server "$SERVER_IP:25" --local-interface "$REMOTE_GOOD" --helo mail.good.unimilter.example \
        --from news@good.unimilter.example --to "bob@$DP_HOST" --h-Subject "inbound 1" ||
        dp_fail "mail from a good sender on port 25 was not accepted: $(tail -n 5 "$DP_WORK/swaks.out")"
    dp_wait_mail bob "$nmail"
    dp_last_mail bob >"$DP_WORK/in1.eml"
    n=$(grep -c '^Authentication-Results:' "$DP_WORK/in1.eml" || true)
    ((n == 1)) || dp_fail "$n Authentication-Results headers on inbound mail, want 1: $(cat "$DP_WORK/in1.eml")"
    ar=$(sed -n '/^Authentication-Results:/,/^[^ \t]/p' "$DP_WORK/in1.eml" | sed '$d' | tr -d '\n')
    grep -q "spf=pass" <<<"$ar" || dp_fail "inbound A-R lacks spf=pass: $ar"
    grep -q "dmarc=pass" <<<"$ar" || dp_fail "inbound A-R lacks dmarc=pass: $ar"
    grep -q "^Authentication-Results: $DP_HOST;" <<<"$ar" || dp_fail "inbound A-R's authserv-id is not $DP_HOST: $ar"
    echo "ok: $what: one Authentication-Results: $ar"

    swaks --server "$SERVER_IP:25" --local-interface "$REMOTE_GOOD" --helo mail.good.unimilter.example \
        --from ceo@bank.unimilter.example --to "bob@$DP_HOST" --h-From ceo@bank.unimilter.example \
        --h-Subject "spoof" || rc=$?
    grep -q '<\*\* *550 5.7.1 DMARC policy of bank.unimilter.example rejects' "$DP_WORK/swaks.out" ||
        dp_fail "the p=reject spoof was not refused with 550 (swaks rc $rc): $(tail -n 6 "$DP_WORK/swaks.out")"
    echo "ok: $what: a p=reject spoof is refused: $(grep -m1 '<\*\* *550' "$DP_WORK/swaks.out" | sed 's/^ *<\*\* *//')"
}

# dp_verify_signed NMAIL FILE: bob's mailbox holds NMAIL messages; the last one is copied to
# FILE and python3-dkim in the container verifies both its signatures (RSA and Ed25519);
# the verdict line is left in $DP_WORK/verify.out.
dp_verify_signed() {
    dp_wait_mail bob "$1"
    dp_last_mail bob >"$2"
    ct_sh "cat >/root/verify.py <<'EOF'
import dkim, sys
msg = open(sys.argv[1], 'rb').read()
d = dkim.DKIM(msg)
n = sum(1 for h in msg.split(b'\n\n', 1)[0].split(b'\n') if h.lower().startswith(b'dkim-signature:'))
ok = [d.verify(idx=i) for i in range(n)]
print('signatures', n, 'verified', ok)
sys.exit(0 if n == 2 and all(ok) else 1)
EOF"
    cp "$2" "$DP_ROOT/root/out1.eml"
    ct python3 /root/verify.py /root/out1.eml >"$DP_WORK/verify.out" 2>&1 ||
        dp_fail "python3-dkim does not verify both signatures: $(cat "$DP_WORK/verify.out"); message: $(head -c 3000 "$2")"
}

# dp_publish_keys: runs the README's keygen block in the container and publishes the two TXT
# records it printed (NAME. IN TXT ( "..." "..." )) as unbound local-data, then restarts unbound.
dp_publish_keys() {
    local inc="$DP_ROOT/etc/unbound/unbound.conf.d/unimilter-keys.conf.inc"
    ct_sh "{
$(dp_readme dkim-keygen)
} >/root/keygen.out" || dp_fail "the README's keygen lines failed"
    awk '/IN TXT \(/ { on = 1; name = $1; txt = "" }
        on { line = $0; sub(/^.*IN TXT \(/, "", line); sub(/\).*$/, "", line); txt = txt " " line }
        on && /\)/ { on = 0; gsub(/^[ \t]+|[ \t]+$/, "", txt); gsub(/"[ \t]+"/, "\" \"", txt)
                     printf("    local-data: '\''%s TXT %s'\''\n", name, txt) }' "$DP_ROOT/root/keygen.out" >"$inc"
    cat "$inc" >>"$DP_LOG"
    (($(grep -c local-data "$inc") == 2)) ||
        dp_fail "keygen did not print two TXT records: $(cat "$DP_ROOT/root/keygen.out")"
    ct_sh "unbound-checkconf
systemctl restart unbound" || dp_fail "could not publish the DKIM records keygen printed"
}

# The README's code blocks the test runs, marked <!-- deploy:NAME --> on the line before
# the block (4-space indented). Printed without the indentation.
dp_readme() {
    local block
    block=$(awk -v tag="<!-- deploy:$1 -->" '
        $0 == tag { on = 1; next }
        on && /^$/ && !started { next }
        on && /^    / { started = 1; print substr($0, 5); next }
        on && started { exit }
        on && !started { exit }' "$UM_SRC/README.md")
    [[ -n "$block" ]] || dp_fail "README.md has no block marked <!-- deploy:$1 -->"
    printf '%s\n' "$block"
}

dp_teardown() {
    local i
    set +e
    if [[ -n "$DP_NSPAWN" ]] && kill -0 "$DP_NSPAWN" 2>/dev/null; then
        kill -TERM "$DP_NSPAWN"
        for ((i = 0; i < 150; i++)); do
            kill -0 "$DP_NSPAWN" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$DP_NSPAWN" 2>/dev/null && kill -KILL "$DP_NSPAWN"
        wait "$DP_NSPAWN" 2>/dev/null
    fi
    dp_phase ""
    echo "time: total $(($(date +%s) - DP_T0))s"
    if [[ -n "$DP_WORK" && -d "$DP_WORK" ]]; then
        if [[ -n "${DP_KEEP:-}" ]]; then
            echo "kept $DP_WORK (DP_KEEP set)"
        else
            rm -rf --one-file-system "$DP_WORK"
        fi
    fi
}
