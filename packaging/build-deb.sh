#!/usr/bin/env bash
# Builds the `esprit` Debian package (cargo-deb; metadata in packaging/Cargo.toml).
#
#   packaging/build-deb.sh            release binaries -> target/debian/esprit_<version>-1_<arch>.deb
#                                     (stripped; their debug symbols in esprit-dbgsym_….ddeb)
#   packaging/build-deb.sh --debug    the debug binaries a `cargo test` has already built, stripped,
#                                     versioned <version>-0+debug -> target/debian-debug/: for the
#                                     package test (ci/package-test.sh), not for installing on a
#                                     gateway
#
# Prints the path of the package. Installs cargo-deb (a pinned version, from crates.io) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  echo "packaging: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked >&2
fi

version=$(cargo pkgid --locked -p esprit-package | sed 's/.*[#@]//')

if [ "${1:-}" = "--debug" ]; then
  cargo build --locked -p dataplane -p control --bins >&2
  out=target/debian-debug
  mkdir -p "$out"
  rm -f "$out"/*.deb
  # cargo-deb warns that the dev profile is meant for tests only, which is what this is.
  cargo deb -p esprit-package --no-build --locked --profile dev --fast \
    --deb-version "$version-0+debug" -o "$out/" 2>&1 >/dev/null \
    | grep -v -e 'dev profile is not supported' -e 'To enable debug symbols' >&2 || true
  ls -t "$out"/esprit_"$version"-0+debug_*.deb | head -n 1
else
  cargo build --release --locked -p dataplane -p control --bins >&2
  mkdir -p target/debian
  rm -f target/debian/esprit_*.deb target/debian/esprit-dbgsym_*.ddeb
  # Stripped; the debug symbols go to a separate esprit-dbgsym .ddeb beside it.
  cargo deb -p esprit-package --no-build --locked --dbgsym -o target/debian/ >/dev/null
  ls -t target/debian/esprit_"$version"-1_*.deb | head -n 1
fi
