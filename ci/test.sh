#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/integration tests, and a bounded fuzz
# smoke run. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2, ping, ethtool: the AF_XDP, gateway and lab tests build namespaces and veth pairs;
# tshark checks that Wireshark decrypts esprit's ESP with the keys esp-pcap exports; nftables
# gives the lab its NAT; strongSwan (charon, swanctl, plugins) is the interop peer and the
# benchmark baseline; openssl makes the interop tests' certificates; prometheus scrapes a lab
# gateway's metrics in topology/tests/metrics_prometheus.rs; systemd gives systemd-analyze,
# which verifies the service units (control/tests/service_units.rs); dpkg-dev gives
# dpkg-shlibdeps, with which cargo-deb computes the package's dependencies (ci/package-test.sh);
# bird2 and frr are the routing daemons of the BGP lab (topology/tests/bgp.rs), and tcpdump its
# capture of clear text on the WAN; openiked is the third independent IKEv2 peer
# (topology/tests/ike_openiked.rs: iked runs with a PF_KEY stand-in compiled with the system cc,
# as this kernel has no PF_KEY; the package installs beside strongSwan, and its service cannot
# start on this kernel for the same reason).
./ci/install-deps.sh iproute2 iputils-ping ethtool procps tshark nftables strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins iperf3 openssl prometheus systemd dpkg-dev bird2 frr tcpdump openiked
# Libreswan, the second independent IKEv2 peer (topology/tests/ike_libreswan.rs), unpacked
# beside strongSwan (their Debian packages conflict).
./ci/install-libreswan.sh
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp"
done

echo "ci: cargo fmt --check"
cargo fmt --all -- --check
echo "ci: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "ci: cargo test"
cargo test --workspace --locked -- --include-ignored
echo "ci: Debian package (built from the debug binaries above, installed into a scratch root)"
./ci/package-test.sh
echo "ci: benchmark smoke (the tool runs; no figure is checked)"
cargo run --release --locked -q -p bench --bin esprit-bench -- esp --quick > target/bench-smoke.txt
tail -n 3 target/bench-smoke.txt
cargo run --release --locked -q -p bench --bin esprit-bench -- ike --quick | tail -n 7
cargo run --release --locked -q -p bench --bin esprit-bench -- offload --quick | tail -n 4
cargo run --release --locked -q -p bench --bin esprit-bench -- pipeline --quick --json target/pipeline-smoke.json | tail -n 3
# The gateway bench's quick mode on the systems that need nothing beyond the lab (about 10 s;
# strongSwan and DPDK ipsec-secgw are the full run's, see docs/benchmarks.md).
cargo run --release --locked -q -p bench --bin esprit-bench -- gateway --quick --systems esprit,esprit-nocrypto,kernel --json target/gateway-smoke.json | tail -n 5
# The route table at Internet scale, quick mode (100k IPv4 + 20k IPv6 prefixes, convergence
# through the kernel in a namespace of its own under /tmp/esprit-netns.lock; about 10 s).
cargo run --release --locked -q -p bench --bin esprit-bench -- routes --quick --json target/routes-smoke.json | tail -n 4
echo "ci: fuzz smoke"
./ci/fuzz-smoke.sh
echo "ci: all green"
