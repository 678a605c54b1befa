#!/usr/bin/env bash
# Files the daemon reads or runs as root are checked like keys (lib/fileperm.h): `unimilter -n`
# refuses a world-writable configuration, one in a group-writable directory, one owned by an
# unprivileged user, a world-writable @include, a notify command others may write, a key in a
# group-writable directory; each with a message naming the file and the problem. A good
# configuration (root-owned 0644 in a root-owned 0755 directory under /tmp) is accepted.
# Ownership cases need root (CI runs as root).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/milter/lib.sh
. "$here/lib.sh"

if [ "$(id -u)" != 0 ]; then
    [ "${CI:-}" = "true" ] && fail "t_config_perms needs root under CI=true"
    echo "SKIP: t_config_perms needs root (chown)" >&2
    exit 77
fi

E=$T/etc # the configuration directory: root-owned 0755, as /etc/unimilter
mkdir -m 0755 "$E"

# refuse NAME CONF WANT: `unimilter -n -c CONF` exits 1 and prints WANT (a fixed string).
refuse() {
    local name=$1 conf=$2 want=$3 out rc=0
    out=$(ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -n -c "$conf" 2>&1) || rc=$?
    [ "$rc" = 1 ] || fail "$name: unimilter -n exited $rc, want 1: $out"
    grep -qF -- "$want" <<<"$out" || fail "$name: got '$out', want '$want'"
    echo "ok: $name: $out"
}
accept() {
    local name=$1 conf=$2 out rc=0
    out=$(ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$UM_BIN" -n -c "$conf" 2>&1) || rc=$?
    [ "$rc" = 0 ] || fail "$name: unimilter -n exited $rc, want 0: $out"
    echo "ok: $name: $out"
}

write_conf "$E/good.conf"
chmod 0644 "$E/good.conf"
accept "good (0644 root, dirs root 0755, /tmp sticky)" "$E/good.conf"

cp "$E/good.conf" "$E/world.conf"
chmod 0666 "$E/world.conf"
refuse "world-writable config" "$E/world.conf" "$E/world.conf is writable by group/others (mode 0666)"

cp "$E/good.conf" "$E/group.conf"
chmod 0664 "$E/group.conf"
refuse "group-writable config" "$E/group.conf" "$E/group.conf is writable by group/others (mode 0664)"

cp "$E/good.conf" "$E/nobody.conf"
chown nobody "$E/nobody.conf"
refuse "config owned by nobody" "$E/nobody.conf" \
    "$E/nobody.conf is owned by uid $(id -u nobody), not root"
# Not even the user the daemon runs as (user = "nobody" in this config): that user could
# otherwise choose, at the next start as root, whom to become and what to run.

mkdir -m 0775 "$T/gw"
cp "$E/good.conf" "$T/gw/in-group-writable-dir.conf"
refuse "config in a group-writable directory" "$T/gw/in-group-writable-dir.conf" \
    "directory $T/gw is writable by group/others (mode 0775, no sticky bit)"

mkdir -m 0755 "$T/nd"
chown nobody "$T/nd"
cp "$E/good.conf" "$T/nd/in-nobodys-dir.conf"
refuse "config in a directory owned by nobody" "$T/nd/in-nobodys-dir.conf" \
    "directory $T/nd is owned by uid $(id -u nobody), not root"

# A link to a good file is followed; its target is what is checked.
ln -s "$E/world.conf" "$E/link.conf"
refuse "symlink to a world-writable config" "$E/link.conf" "is writable by group/others (mode 0666)"

# @include: the included file gets the same check.
printf 'authserv_id = "mx.example.net";\n' >"$E/inc.conf"
chmod 0646 "$E/inc.conf"
write_conf "$E/with-include.conf" '@include "inc.conf"'
refuse "world-writable @include" "$E/with-include.conf" "$E/inc.conf is writable by group/others (mode 0646)"
chmod 0644 "$E/inc.conf"
accept "good @include" "$E/with-include.conf"

# Programs we run: ratelimit.notify.command.
printf '#!/bin/sh\nexit 0\n' >"$E/notify.sh"
chmod 0777 "$E/notify.sh"
RLEXTRA="notify = { command = \"$E/notify.sh\"; };" write_conf "$E/notify.conf"
refuse "world-writable notify command" "$E/notify.conf" \
    "ratelimit.notify.command: $E/notify.sh is writable by group/others (mode 0777)"
chmod 0755 "$E/notify.sh"
accept "notify command 0755" "$E/notify.conf"

# Keys: the directory on the way is checked too.
mkdir -m 0770 "$E/keys"
"$UM_BIN" keygen -d example.org -s s1 -t ed25519 -o "$E/keys" >/dev/null 2>&1 ||
    fail "keygen failed"
key=$(ls "$E"/keys/*.pem 2>/dev/null | head -n1)
[ -n "$key" ] || key=$(ls "$E"/keys/* | head -n1)
write_conf "$E/keys.conf" "dkim_sign = { keys = ( { name = \"k\"; domain = \"example.org\"; selector = \"s1\"; file = \"$key\"; } ); rules = ( { from = \"*\"; keys = [\"k\"]; } ); };"
refuse "key in a group-writable directory" "$E/keys.conf" \
    "directory $E/keys is writable by group/others (mode 0770, no sticky bit)"
chmod 0750 "$E/keys"
accept "key in a 0750 directory" "$E/keys.conf"
