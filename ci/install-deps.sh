#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo and the C compiler. Idempotent: packages and
# tools already present are not fetched again.
set -euo pipefail

need_apt=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ci: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp"
done

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "ci: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
