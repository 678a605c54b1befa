#!/bin/bash
# Modes of the files the daemon and its subcommands create, under umask 022 (what a shell or
# a supervisor without UMask= gives), as README's "Security" section states them:
#   dmarc-history.sqlite and its -wal/-shm   0600 (every inbound sender's IP and domain)
#   ratelimit state file                     0600 (no temporary file left behind)
#   milter socket                            socket_mode (0660 here)
#   control socket                           control_socket_mode (default 0600)
#   keygen's key                             0600
# (report --dry-run files: 0600, asserted in tests/unit/test_report.c.)
. "$(dirname "$0")/lib.sh"
umask 022

write_conf "$T/um.conf"
sed -i 's/^socket_mode = "0666";/socket_mode = "0660";/' "$T/um.conf"
grep -q '^socket_mode = "0660";' "$T/um.conf" || fail "cannot set socket_mode in $T/um.conf"
um_start "$T/um.conf"

# mode FILE WANT: FILE exists with permission bits WANT (octal, as stat %a prints them).
mode() {
    [ -e "$1" ] || fail "$1 was not created"
    local got
    got=$(stat -c %a "$1")
    [ "$got" = "$2" ] || fail "$1: mode $got, want $2"
    echo "ok: $1 $got"
}
# The history database is opened (and its WAL files made) when the daemon starts serving.
for _ in $(seq 1 100); do
    [ -e "$T/dmarc-history.sqlite-shm" ] && break
    sleep 0.05
done
mode "$T/dmarc-history.sqlite" 600
mode "$T/dmarc-history.sqlite-wal" 600
mode "$T/dmarc-history.sqlite-shm" 600
mode "$T/um.sock" 660
mode "$T/control.sock" 600

um_stop
[ "$UM_RC" = 0 ] || fail "unimilter exited $UM_RC after SIGTERM"
mode "$T/rl.state" 600
leftover=$(ls "$T"/rl.state.* 2>/dev/null || true)
[ -z "$leftover" ] || fail "temporary state files left: $leftover"

mkdir -m 0755 "$T/keys"
"$UM_BIN" keygen -d example.org -s s1 -t ed25519 -o "$T/keys" >"$T/kg.out" 2>&1 ||
    fail "keygen: $(cat "$T/kg.out")"
mode "$T/keys/example.org.s1.pem" 600
