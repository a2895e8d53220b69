#!/usr/bin/env bash
# Regenerates the scapy interop fixtures: scapy writes inputs, esprit encrypts, scapy checks.
# Needs Python 3 and PyPI (a venv under target/); `cargo test` itself needs neither.
set -euo pipefail
top="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="$top/target/scapy-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$top/dataplane/tests/scapy/requirements.txt"
cd "$top"
cargo build -q -p dataplane --bin esp-pcap
"$venv/bin/python" dataplane/tests/scapy/gen.py inputs
data=dataplane/tests/data/scapy
for case in $("$venv/bin/python" -c "import json; print(' '.join(json.load(open('$data/cases.json'))))"); do
  target/debug/esp-pcap encrypt --sa "$data/$case/sa-out.toml" "$data/$case/plain.pcap" "$data/$case/esprit-esp.pcap" >/dev/null
done
"$venv/bin/python" dataplane/tests/scapy/gen.py verify
