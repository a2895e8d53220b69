#!/usr/bin/env bash
# Unpacks Debian's Libreswan into /opt/esprit-libreswan (or $ESPRIT_LIBRESWAN_ROOT), beside
# strongSwan: the two Debian packages conflict (libreswan conflicts with strongswan-libcharon),
# and the lab runs pluto from its own directory anyway (topology/src/libreswan.rs). Its
# libraries are installed as packages. Idempotent: nothing is fetched when pluto is there.
set -euo pipefail

root="${ESPRIT_LIBRESWAN_ROOT:-/opt/esprit-libreswan}"
if [ -x "$root/usr/libexec/ipsec/pluto" ]; then
  exit 0
fi
cd "$(dirname "$0")/.."
./ci/install-deps.sh libnss3 libnss3-tools libnspr4 libcurl3-nss libevent-core-2.1-7 \
  libevent-pthreads-2.1-7 libldns3 libunbound8 libcap-ng0 libaudit1 libldap-2.5-0 dns-root-data
tmp="$(mktemp -d)"
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -qq libreswan); then
  apt-get update -qq
  (cd "$tmp" && apt-get download -qq libreswan)
fi
mkdir -p "$root"
dpkg-deb -x "$tmp"/libreswan_*.deb "$root"
test -x "$root/usr/libexec/ipsec/pluto"
echo "ci: Libreswan unpacked into $root"
