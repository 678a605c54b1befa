#!/bin/sh
# tools/deps.sh build|test - install the Debian 12 packages unimilter needs.
#   build: what compiling the daemon needs
#   test:  that plus everything the test suite drives (Postfix, miltertest, verifiers, DNS)
set -eu
what=${1:-build}
BUILD="build-essential cmake pkg-config libmilter-dev libspf2-dev libopendkim-dev
 libopendmarc-dev libconfig-dev libunbound-dev libevent-dev libssl-dev publicsuffix
 libhiredis-dev libsqlite3-dev libpq-dev libxml2-dev zlib1g-dev libcurl4-openssl-dev"
TEST="libcmocka-dev miltertest postfix swaks python3 python3-dkim python3-dnspython python3-nacl
 libmail-dkim-perl libnet-dns-perl opendkim-tools unbound util-linux iproute2 procps
 clang clang-format libclang-rt-14-dev sasl2-bin libsasl2-modules redis-server libhiredis-dev
 openssl m4 libwrap0 systemd man-db groff-base selinux-policy-dev selinux-policy-default
 semodule-utils policycoreutils setools checkpolicy libxml2-utils postgresql
 debhelper dpkg-dev fakeroot lintian mmdebstrap systemd-container git"
case $what in
build) pkgs=$BUILD ;;
test) pkgs="$BUILD $TEST" ;;
*) echo "usage: $0 build|test" >&2; exit 64 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "$0: run as root (it installs packages with apt-get)" >&2
    exit 1
fi
missing=
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test peer here: install it unconfigured and never start the system one.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
