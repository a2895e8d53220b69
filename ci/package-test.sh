#!/usr/bin/env bash
# The Debian package test: builds the `esprit` package from the debug binaries the test suite
# has built (packaging/build-deb.sh --debug: same files, layout and metadata as a release
# package, only the binaries are unoptimised), installs it with dpkg into a fresh root with
# an empty dpkg database, and checks what landed there: the four binaries run, the units and
# the example configurations (conffiles, mode 0600) are in place, and the installed esprit-ike
# accepts the installed configuration (`esprit-ike --check`). Then removes it and checks that
# the conffiles stay until a purge. Needs root (dpkg --root); bounded: no release build
# (`ci/package-test.sh --release` checks the release package the same way).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package test: $*" >&2; exit 1; }

case "${1:-}" in
  "") deb=$(./packaging/build-deb.sh --debug) ;;
  --release) deb=$(./packaging/build-deb.sh) ;;   # the release package, by hand: builds for minutes
  *) fail "usage: ci/package-test.sh [--release]" ;;
esac
[ -f "$deb" ] || fail "no package built"
echo "package test: $deb"

root=$(mktemp -d /tmp/esprit-deb-root.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"

[ "$(dpkg-deb -f "$deb" Package)" = esprit ] || fail "package name is not esprit"
# The fresh root has no libc6 package in its database (the package's only dependency):
# --force-depends; nothing else is forced.
dpkg --root="$root" --force-depends -i "$deb" >/dev/null
[ "$(dpkg-query --root="$root" -W -f '${Status}' esprit)" = "install ok installed" ] || fail "not installed"

for b in esprit-dataplane esprit-ike espctl esp-pcap; do
  [ -x "$root/usr/bin/$b" ] || fail "/usr/bin/$b missing"
  "$root/usr/bin/$b" --version >/dev/null || fail "$b --version failed"
done
for u in esprit-dataplane esprit-ike; do
  [ -f "$root/usr/lib/systemd/system/$u.service" ] || fail "$u.service missing"
  cmp -s "$root/usr/lib/systemd/system/$u.service" "packaging/systemd/$u.service" \
    || fail "$u.service differs from packaging/systemd"
done
for c in dataplane.toml esprit-ike.toml; do
  f="$root/etc/esprit/$c"
  [ "$(stat -c '%a %U' "$f")" = "600 root" ] || fail "/etc/esprit/$c is not 0600 root"
  grep -qx "/etc/esprit/$c" "$root/var/lib/dpkg/info/esprit.conffiles" || fail "$c is not a conffile"
done
[ -f "$root/usr/share/doc/esprit/operations.md" ] || fail "docs missing"
[ -f "$root/usr/share/doc/esprit/copyright" ] || fail "copyright missing"

out=$("$root/usr/bin/esprit-ike" --check --config "$root/etc/esprit/esprit-ike.toml")
echo "package test: installed esprit-ike --check: $out"
case "$out" in *": ok, "*) ;; *) fail "esprit-ike --check: $out" ;; esac

dpkg --root="$root" -r esprit >/dev/null
[ ! -e "$root/usr/bin/esprit-ike" ] || fail "binaries left after remove"
[ -f "$root/etc/esprit/esprit-ike.toml" ] || fail "a removed package must keep its conffiles"
dpkg --root="$root" -P esprit >/dev/null
[ ! -e "$root/etc/esprit/esprit-ike.toml" ] || fail "conffiles left after purge"
echo "package test: ok"
