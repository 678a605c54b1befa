#!/bin/sh
# tools/run.sh - install build dependencies, build unimilter, and run it in the foreground
# on conf/unimilter.conf (stop it with Ctrl-C). Run as root on Debian 12.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh build
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUM_TESTS=OFF
cmake --build build/release -j"$(nproc)"
# What the package's sysusers.d and tmpfiles.d and the unit's RuntimeDirectory= and
# StateDirectory= provide (the example configuration puts the socket where Postfix sees it).
id -u unimilter >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin unimilter
install -d -o unimilter -g unimilter -m 0755 /run/unimilter /var/spool/postfix/unimilter
install -d -o unimilter -g unimilter -m 0750 /var/lib/unimilter
# The daemon refuses a configuration that someone other than root could change, file or
# directory (README "Security"): a checkout in a user's home is one. Run a root-owned copy;
# edit conf/unimilter.conf and run this again (a SIGHUP re-reads the copy).
conf=$(mktemp --suffix=.conf /tmp/unimilter-run.XXXXXX)
install -m 0644 conf/unimilter.conf "$conf"
echo "configuration: $conf (a copy of conf/unimilter.conf)"
build/release/unimilter -n -c "$conf"
exec build/release/unimilter -c "$conf"
