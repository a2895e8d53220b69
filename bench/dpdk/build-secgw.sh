#!/usr/bin/env bash
# Builds DPDK's ipsec-secgw example from Debian's packaged source (dpdk-doc) against the
# packaged libdpdk (pkg-config), into OUT (default target/dpdk). Used by `esprit-bench gateway`
# when a dpdk system is selected; nothing of DPDK is kept in the repository.
#
# One change is made to the copied source: ipsec-secgw asks every port for RX checksum
# offload, which the net_af_packet and net_af_xdp PMDs do not offer (it refuses to start),
# so it asks for none.
#
# Usage: bench/dpdk/build-secgw.sh [OUT]   (prints the binary's path on success)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$ROOT/target/dpdk}
"$ROOT/ci/install-deps.sh" dpdk dpdk-dev libdpdk-dev dpdk-doc librte-crypto-ipsec-mb23 \
  build-essential pkg-config >&2
SRC=""
for d in /usr/share/dpdk/examples/ipsec-secgw /usr/share/doc/dpdk/examples/ipsec-secgw; do
  [ -f "$d/ipsec-secgw.c" ] && { SRC=$d; break; }
done
[ -n "$SRC" ] || { echo "ipsec-secgw source not found (package dpdk-doc)" >&2; exit 1; }
VERSION=$(pkg-config --modversion libdpdk)
BIN=$OUT/ipsec-secgw/build/ipsec-secgw
STAMP=$OUT/ipsec-secgw/.built-from
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION $SRC" ]; then
  echo "$BIN"; exit 0
fi
rm -rf "$OUT/ipsec-secgw"
mkdir -p "$OUT"
cp -r "$SRC" "$OUT/ipsec-secgw"
C=$OUT/ipsec-secgw/ipsec-secgw.c
sed -i 's/\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0,/' "$C"
grep -q '\.offloads = 0,' "$C" || { echo "patching the RX checksum offload request failed" >&2; exit 1; }
make -C "$OUT/ipsec-secgw" -j"$(nproc)" >"$OUT/ipsec-secgw-build.log" 2>&1 || {
  tail -20 "$OUT/ipsec-secgw-build.log" >&2; exit 1; }
echo "$VERSION $SRC" >"$STAMP"
echo "$BIN"
