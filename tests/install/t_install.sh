#!/usr/bin/env bash
# Install layout: `cmake --install BUILD --prefix /usr --component C` with DESTDIR puts every
# file where man/CMakeLists.snippet.txt says, and nothing else; each component alone, then
# all of them at once. Modes: the daemon 0755, everything else 0644. Installed copies are
# byte-identical to their sources (the generated man page to the build's).
# Label "install". Env: UM_BUILD (a built tree), UM_SRC, UM_CMAKE (cmake).
# Passes only once the snippet is pasted into CMakeLists.txt (components daemon, doc,
# systemd, selinux).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/lib.sh
. "$here/lib.sh"
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build directory}
UM_CMAKE=${UM_CMAKE:-cmake}
trap 'echo "FAIL: $0:$LINENO: command failed: $BASH_COMMAND" >&2' ERR
inst_need cmake "$UM_CMAKE"

work=$(mktemp -d /tmp/um-install.XXXXXX)
trap 'rm -rf "$work"' EXIT

# component -> "PATH MODE SOURCE" lines (SOURCE relative to UM_SRC, or @build/... for UM_BUILD)
declare -A want
want[daemon]="/usr/sbin/unimilter 755 -
/etc/unimilter/unimilter.conf 644 conf/unimilter.conf"
want[doc]="/usr/share/man/man5/unimilter.conf.5 644 @build/man/unimilter.conf.5
/usr/share/man/man8/unimilter.8 644 man/unimilter.8
/usr/share/doc/unimilter/README.systemd.md 644 systemd/README.md"
want[systemd]="/usr/lib/systemd/system/unimilter.service 644 systemd/unimilter.service
/usr/lib/systemd/system/unimilter-report.service 644 systemd/unimilter-report.service
/usr/lib/systemd/system/unimilter-report.timer 644 systemd/unimilter-report.timer
/usr/lib/sysusers.d/unimilter.conf 644 systemd/unimilter.sysusers
/usr/lib/tmpfiles.d/unimilter.conf 644 systemd/unimilter.tmpfiles"
want[selinux]="/usr/share/selinux/packages/unimilter/unimilter.te 644 selinux/unimilter.te
/usr/share/selinux/packages/unimilter/unimilter.if 644 selinux/unimilter.if
/usr/share/selinux/packages/unimilter/unimilter.fc 644 selinux/unimilter.fc
/usr/share/selinux/packages/unimilter/Makefile 644 selinux/Makefile
/usr/share/selinux/packages/unimilter/README.md 644 selinux/README.md"

# check DESTDIR LINES: exactly these files, with these modes and contents.
check() {
    local dest=$1 lines=$2 path mode src got
    got=$(cd "$dest" && find . -type f -o -type l | sed 's/^\.//' | sort)
    diff <(cut -d' ' -f1 <<<"$lines" | sort) <(printf '%s\n' "$got") >"$work/diff" \
        || inst_fail "installed files differ from the expected list (< expected, > installed):"$'\n'"$(cat "$work/diff")"
    while read -r path mode src; do
        [[ "$(stat -c %a "$dest$path")" == "$mode" ]] \
            || inst_fail "$path: mode $(stat -c %a "$dest$path"), want $mode"
        case "$src" in
        -) ;;
        @build/*) cmp -s "$dest$path" "$UM_BUILD/${src#@build/}" || inst_fail "$path differs from $UM_BUILD/${src#@build/}" ;;
        *) cmp -s "$dest$path" "$UM_SRC/$src" || inst_fail "$path differs from $src" ;;
        esac
    done <<<"$lines"
}

# check_keys_dir DESTDIR COMPONENT: the daemon component creates /etc/unimilter/keys, 0750
# (systemd-tmpfiles later gives it group unimilter); the others do not.
check_keys_dir() {
    local k=$1/etc/unimilter/keys
    if [[ "$2" == daemon || "$2" == all ]]; then
        [[ -d "$k" ]] || inst_fail "$2: no directory /etc/unimilter/keys (README: unimilter keygen -o /etc/unimilter/keys)"
        [[ "$(stat -c %a "$k")" == 750 ]] || inst_fail "/etc/unimilter/keys: mode $(stat -c %a "$k"), want 750"
    else
        [[ ! -e "$k" ]] || inst_fail "component $2 created /etc/unimilter/keys"
    fi
}

all=
for c in daemon doc systemd selinux; do
    dest=$work/$c
    if ! DESTDIR=$dest "$UM_CMAKE" --install "$UM_BUILD" --prefix /usr --component "$c" >"$work/log" 2>&1; then
        cat "$work/log" >&2
        inst_fail "cmake --install --component $c failed"
    fi
    [[ -d "$dest" ]] || inst_fail "component $c installed nothing (is man/CMakeLists.snippet.txt pasted?)"
    check "$dest" "${want[$c]}"
    check_keys_dir "$dest" "$c"
    echo "ok: component $c: $(cut -d' ' -f1 <<<"${want[$c]}" | tr '\n' ' ')"
    all+=${want[$c]}$'\n'
done
all=${all%$'\n'}

dest=$work/all
DESTDIR=$dest "$UM_CMAKE" --install "$UM_BUILD" --prefix /usr >"$work/log" 2>&1 \
    || { cat "$work/log" >&2; inst_fail "cmake --install (all components) failed"; }
check "$dest" "$all"
check_keys_dir "$dest" all
"$dest/usr/sbin/unimilter" -V >/dev/null || inst_fail "the installed daemon does not run (-V)"
# The README's first step after installing: a key into the installed keys directory.
out=$("$dest/usr/sbin/unimilter" keygen -c "$dest/etc/unimilter/unimilter.conf" -d example.org \
    -s s2026 -t ed25519 -o "$dest/etc/unimilter/keys" 2>&1) \
    || inst_fail "unimilter keygen -o <installed>/etc/unimilter/keys failed: $out"
ls "$dest/etc/unimilter/keys/"* >/dev/null 2>&1 || inst_fail "keygen wrote nothing into the keys directory: $out"
echo "ok: unimilter keygen -o /etc/unimilter/keys works right after install"
echo "ok: all components together: $(wc -l <<<"$all") files, DESTDIR honoured"
echo "PASS: install layout"
