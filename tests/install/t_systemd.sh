#!/usr/bin/env bash
# systemd files: systemd/unimilter.service passes `systemd-analyze verify` (commands and
# man pages resolved inside a scratch root, so nothing is installed on this host and no
# running systemd is needed), its `systemd-analyze security --offline` exposure is printed
# and must stay at or below UM_MAX_EXPOSURE (default 2.0), and the sysusers.d and
# tmpfiles.d files create the user and directories in a scratch root.
# Label "systemd". Env: UM_BIN (the built daemon), UM_BUILD (holds man/unimilter.conf.5),
# UM_SRC.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/lib.sh
. "$here/lib.sh"
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build directory}
UM_BIN=${UM_BIN:-$UM_BUILD/unimilter}
UM_MAX_EXPOSURE=${UM_MAX_EXPOSURE:-2.0}
trap 'echo "FAIL: $0:$LINENO: command failed: $BASH_COMMAND" >&2' ERR

inst_need "systemd" systemd-analyze systemd-sysusers systemd-tmpfiles
inst_need "man-db" man
inst_need_file "procps" /bin/kill
unit=$UM_SRC/systemd/unimilter.service
[[ -x "$UM_BIN" ]] || inst_fail "$UM_BIN is not an executable (build first)"
[[ -s "$UM_BUILD/man/unimilter.conf.5" ]] || inst_fail "$UM_BUILD/man/unimilter.conf.5 missing (build first)"

work=$(mktemp -d /tmp/um-systemd.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- scratch root: the host's units (sysinit.target, ...), the commands the unit runs -------
root=$work/root
mkdir -p "$root/usr/lib/systemd" "$root/usr/sbin" "$root/usr/bin" "$root/etc/unimilter" \
    "$root/usr/share/man/man5" "$root/usr/share/man/man8"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
units=/usr/lib/systemd/system
[[ -d "$units" ]] || units=/lib/systemd/system
cp -a "$units" "$root/usr/lib/systemd/"
cp /bin/kill "$root/usr/bin/kill" # procps; `command -v kill` is the builtin
install -m 0755 "$UM_BIN" "$root/usr/sbin/unimilter"
cp "$UM_SRC/conf/unimilter.conf" "$root/etc/unimilter/"
cp "$UM_BUILD/man/unimilter.conf.5" "$root/usr/share/man/man5/"
cp "$UM_SRC/man/unimilter.8" "$root/usr/share/man/man8/"
cp "$unit" "$root/usr/lib/systemd/system/unimilter.service"

# --- verify --------------------------------------------------------------------------------
# MANPATH: Documentation=man:... is checked with man(1), against the pages in the root.
if ! out=$(MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" unimilter.service 2>&1); then
    inst_fail "systemd-analyze verify failed:"$'\n'"$out"
fi
[[ -z "$out" ]] || inst_fail "systemd-analyze verify warns:"$'\n'"$out"
echo "ok: systemd-analyze verify unimilter.service (root $root)"
# The daily report job: its service and timer verify too.
cp "$UM_SRC/systemd/unimilter-report.service" "$UM_SRC/systemd/unimilter-report.timer" \
    "$root/usr/lib/systemd/system/"
if ! out=$(MANPATH=$root/usr/share/man systemd-analyze verify --root="$root" \
    unimilter-report.service unimilter-report.timer 2>&1); then
    inst_fail "systemd-analyze verify of the report units failed:"$'\n'"$out"
fi
[[ -z "$out" ]] || inst_fail "systemd-analyze verify warns about the report units:"$'\n'"$out"
echo "ok: systemd-analyze verify unimilter-report.service unimilter-report.timer"

# The unit keeps the promises main.c relies on.
grep -qx 'ExecStartPre=/usr/sbin/unimilter -n -c /etc/unimilter/unimilter.conf' "$unit" \
    || inst_fail "ExecStartPre does not check the configuration with -n"
# systemctl reload runs the ExecReload= lines in order and stops at the first failure: the
# check (-n) first, so a bad file fails the reload visibly; then the SIGHUP.
reload=$(grep '^ExecReload=' "$unit")
[[ "$reload" == 'ExecReload=/usr/sbin/unimilter -n -c /etc/unimilter/unimilter.conf
ExecReload=/bin/kill -HUP $MAINPID' ]] \
    || inst_fail "ExecReload= must be the -n check, then kill -HUP \$MAINPID; the unit has:"$'\n'"$reload"
# The check line, run as written against a broken copy of the config: it fails, naming file:line.
cp "$UM_SRC/conf/unimilter.conf" "$work/bad.conf"
echo 'no_such_setting = 1;' >>"$work/bad.conf"
check_cmd=$(sed -n 's/^ExecReload=\(.* -n -c \)\/etc\/unimilter\/unimilter.conf$/\1/p' "$unit" | head -n1)
check_cmd=${check_cmd/\/usr\/sbin\/unimilter/$UM_BIN}
rc=0; out=$($check_cmd "$work/bad.conf" 2>&1) || rc=$?
((rc != 0)) || inst_fail "the ExecReload check accepted a broken config: $out"
grep -q "$work/bad.conf:$(wc -l <"$work/bad.conf"): no_such_setting" <<<"$out" \
    || inst_fail "the ExecReload check does not name file:line: $out"
echo "ok: ExecReload= checks first (a broken config fails with: $out), then SIGHUP"
# Type=notify: the daemon says READY=1 itself once both sockets listen (lib/sdnotify.c), so
# `systemctl start` returns only then; only the main process may notify (not notify commands).
grep -qx 'Type=notify' "$unit" || inst_fail "the unit is not Type=notify (systemd would call it started before it listens)"
grep -qx 'NotifyAccess=main' "$unit" || inst_fail "the unit lacks NotifyAccess=main"
grep -qa 'NOTIFY_SOCKET' "$UM_BIN" || inst_fail "$UM_BIN does not read NOTIFY_SOCKET: Type=notify would time out"
grep -qE '^RestrictAddressFamilies=.*AF_UNIX' "$unit" || inst_fail "RestrictAddressFamilies= must allow AF_UNIX (the notify socket)"
echo "ok: Type=notify, NotifyAccess=main, the binary speaks NOTIFY_SOCKET"
grep -qx 'RuntimeDirectory=unimilter' "$unit" || inst_fail "no RuntimeDirectory=unimilter (socket dir)"
grep -qx 'StateDirectory=unimilter' "$unit" || inst_fail "no StateDirectory=unimilter (ratelimit.state_file)"
drain=$(sed -nE 's/^shutdown_timeout = ([0-9]+);/\1/p' "$UM_SRC/conf/unimilter.conf")
stop=$(sed -nE 's/^TimeoutStopSec=([0-9]+)$/\1/p' "$unit")
[[ -n "$drain" && -n "$stop" ]] && ((stop > drain)) \
    || inst_fail "TimeoutStopSec=$stop must exceed the default shutdown_timeout $drain"
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    PrivateDevices=yes 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
    SystemCallFilter=@system-service CapabilityBoundingSet= MemoryDenyWriteExecute=yes; do
    grep -qxF "$d" "$unit" || inst_fail "unit lacks $d"
done
echo "ok: ExecStartPre -n, ExecReload SIGHUP, TimeoutStopSec=$stop > shutdown_timeout $drain, hardening set"

# --- security exposure ---------------------------------------------------------------------
sec=$(systemd-analyze security --offline=yes --root="$root" --no-pager unimilter.service 2>&1) \
    || inst_fail "systemd-analyze security failed:"$'\n'"$sec"
score=$(sed -nE 's/.*Overall exposure level for unimilter\.service: ([0-9]+\.[0-9]+).*/\1/p' <<<"$sec")
[[ -n "$score" ]] || inst_fail "no exposure level in:"$'\n'"$sec"
grep -E '^✗' <<<"$sec" | sed -E 's/ {2,}/  /g; s/^/    /' || true
echo "exposure: systemd-analyze security --offline=yes unimilter.service: $score (lower is better; max $UM_MAX_EXPOSURE)"
awk -v s="$score" -v m="$UM_MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' \
    || inst_fail "exposure $score is above $UM_MAX_EXPOSURE: a hardening setting was lost"

# --- sysusers.d / tmpfiles.d in a scratch root ---------------------------------------------
ur=$work/users
mkdir -p "$ur/etc"
grep -v '^unimilter:' /etc/passwd >"$ur/etc/passwd" || true
grep -v '^unimilter:' /etc/group >"$ur/etc/group" || true
: >"$ur/etc/shadow"
: >"$ur/etc/gshadow"
out=$(systemd-sysusers --root="$ur" "$UM_SRC/systemd/unimilter.sysusers" 2>&1) \
    || inst_fail "systemd-sysusers failed: $out"
grep -qE '^unimilter:x:[0-9]+:[0-9]+:unimilter milter:/nonexistent:/usr/sbin/nologin$' "$ur/etc/passwd" \
    || inst_fail "sysusers did not create the unimilter user: $(grep unimilter "$ur/etc/passwd" || echo none)"
grep -q '^unimilter:' "$ur/etc/group" || inst_fail "sysusers did not create the unimilter group"
out=$(systemd-tmpfiles --root="$ur" --create "$UM_SRC/systemd/unimilter.tmpfiles" 2>&1) \
    || inst_fail "systemd-tmpfiles failed: $out"
uid=$(awk -F: '$1 == "unimilter" { print $3 }' "$ur/etc/passwd")
gid=$(awk -F: '$1 == "unimilter" { print $3 }' "$ur/etc/group")
check_dir() { # PATH MODE UID GID
    local got
    got=$(stat -c '%a %u %g' "$ur$1" 2>/dev/null) || inst_fail "tmpfiles did not create $1"
    [[ "$got" == "$2 $3 $4" ]] || inst_fail "$1: got mode/uid/gid $got, want $2 $3 $4"
}
check_dir /run/unimilter 755 "$uid" "$gid"
check_dir /var/lib/unimilter 750 "$uid" "$gid"
check_dir /etc/unimilter/keys 750 0 "$gid"
echo "ok: sysusers.d creates unimilter ($uid:$gid); tmpfiles.d creates /run/unimilter, /var/lib/unimilter, /etc/unimilter/keys"
echo "PASS: systemd files"
