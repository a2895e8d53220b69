#!/usr/bin/env python3
"""Generates the scapy interop fixtures of esprit's ESP engine (see regen.sh).

scapy is the independent implementation: it encrypts packets that esprit must decrypt
(phase "inputs"), and decrypts the packets esprit encrypted (phase "verify"). The fixtures are
committed, so `cargo test` needs no Python.

Per case, under dataplane/tests/data/scapy/<case>/:
  sa-in.toml        esprit's inbound SA for scapy's packets
  sa-out.toml       esprit's outbound SA (esprit encrypts plain.pcap with it)
  plain.pcap        the plaintext packets (input of `esp-pcap encrypt`)
  scapy-esp.pcap    scapy's encryption of plain.pcap, plus injected bad packets
  expect-plain.pcap what `esp-pcap decrypt` must write for scapy-esp.pcap
  expect.json       the counters that decrypt must report
  esprit-esp.pcap   esprit's encryption of plain.pcap (written by regen.sh, phase 2)
  scapy-verdict.json scapy's check of esprit-esp.pcap (phase "verify")
"""
import json
import os
import random
import struct
import sys

from scapy.all import IP, IPv6, UDP, ICMP, TCP, Ether, ARP, Raw, raw, wrpcap, rdpcap, PcapWriter
from scapy.layers.inet6 import ICMPv6EchoRequest
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.utils import PcapReader

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "scapy")

LINKTYPES = {"ether": 1, "raw": 101, "ipv4": 228, "ipv6": 229}

CASES = [
    # name, mode, outer, inner, suite key bytes, natt, esn start, linktype
    dict(name="tunnel-4in4", mode="tunnel", outer=4, inner=4, keylen=16, natt=False, esn=None, link="raw"),
    dict(name="tunnel-6in4", mode="tunnel", outer=4, inner=6, keylen=32, natt=False, esn=None, link="ether"),
    dict(name="tunnel-4in6", mode="tunnel", outer=6, inner=4, keylen=16, natt=False, esn=None, link="ether", pad4=True),
    dict(name="tunnel-6in6", mode="tunnel", outer=6, inner=6, keylen=32, natt=False, esn=None, link="raw"),
    dict(name="transport-4", mode="transport", outer=4, inner=4, keylen=16, natt=False, esn=None, link="ether", pad4=True),
    dict(name="transport-6", mode="transport", outer=6, inner=6, keylen=32, natt=False, esn=None, link="ipv6"),
    dict(name="natt-tunnel-4in4", mode="tunnel", outer=4, inner=4, keylen=16, natt=True, esn=None, link="ether"),
    dict(name="natt-tunnel-6in6", mode="tunnel", outer=6, inner=6, keylen=16, natt=True, esn=None, link="raw", pad4=True),
    dict(name="natt-transport-4", mode="transport", outer=4, inner=4, keylen=32, natt=True, esn=None, link="ipv4"),
    dict(name="esn-4in4-aes256", mode="tunnel", outer=4, inner=4, keylen=32, natt=False, esn=0xFFFFFFF8, link="raw"),
    dict(name="esn-natt-6in4-aes128", mode="tunnel", outer=4, inner=6, keylen=16, natt=True, esn=0x1FFFFFFFA, link="ether"),
    # The CBC + HMAC-SHA2 and ChaCha20-Poly1305 suites (keylen: the cipher key without salt).
    dict(name="cbc128-sha256-tunnel-4in4", suite="aes128cbc-sha256", mode="tunnel", outer=4, inner=4, keylen=16, natt=False, esn=None, link="raw"),
    dict(name="cbc256-sha256-transport-6", suite="aes256cbc-sha256", mode="transport", outer=6, inner=6, keylen=32, natt=False, esn=None, link="ether"),
    dict(name="cbc256-sha384-natt-6in4", suite="aes256cbc-sha384", mode="tunnel", outer=4, inner=6, keylen=32, natt=True, esn=None, link="ether"),
    dict(name="cbc256-sha512-esn-4in6", suite="aes256cbc-sha512", mode="tunnel", outer=6, inner=4, keylen=32, natt=False, esn=0xFFFFFFF9, link="raw"),
    dict(name="chacha-tunnel-6in6", suite="chacha20poly1305", mode="tunnel", outer=6, inner=6, keylen=32, natt=False, esn=None, link="raw", pad4=True),
    dict(name="chacha-esn-natt-4in4", suite="chacha20poly1305", mode="tunnel", outer=4, inner=4, keylen=32, natt=True, esn=0x1FFFFFFFA, link="ether"),
]

# esprit's suite name -> scapy's (crypt_algo, auth_algo, salt bytes at the end of the key,
# HMAC key length).
SUITES = {
    "gcm": ("AES-GCM", "NULL", 4, 0),
    "aes128cbc-sha256": ("AES-CBC", "SHA2-256-128", 0, 32),
    "aes256cbc-sha256": ("AES-CBC", "SHA2-256-128", 0, 32),
    "aes256cbc-sha384": ("AES-CBC", "SHA2-384-192", 0, 48),
    "aes256cbc-sha512": ("AES-CBC", "SHA2-512-256", 0, 64),
    "chacha20poly1305": ("CHACHA20-POLY1305", "NULL", 4, 0),
}


def suite_of(case):
    return case.get("suite", f'aes{case["keylen"] * 8}gcm16')


def algos(case):
    return SUITES[case.get("suite", "gcm")]


def keys(case, rnd):
    """(encryption key material, HMAC key or None) of one direction, drawn from `rnd`."""
    _, _, salt, integ = algos(case)
    key = bytes(rnd.randrange(256) for _ in range(case["keylen"] + salt))
    ikey = bytes(rnd.randrange(256) for _ in range(integ)) if integ else None
    return key, ikey


def case_keys(case, rnd):
    """The inbound and outbound keys and SPIs of a case, in a fixed order of draws (for the
    AES-GCM cases the order their committed fixtures were made with)."""
    key, key_out = keys(case, rnd), keys(case, rnd)
    spi_in = rnd.randrange(0x1000, 0xFFFFFFFF)
    spi_out = rnd.randrange(0x1000, 0xFFFFFFFF)
    return key, key_out, spi_in, spi_out

ADDR = {
    4: dict(gw_a="10.200.0.1", gw_b="10.200.0.2", h_a="10.201.1.2", h_b="10.201.2.2", net_a="10.201.1.0/24", net_b="10.201.2.0/24"),
    6: dict(gw_a="fd00:200::1", gw_b="fd00:200::2", h_a="fd00:201:1::2", h_b="fd00:201:2::2", net_a="fd00:201:1::/64", net_b="fd00:201:2::/64"),
}
MAC_A = "02:00:00:00:0a:01"
MAC_B = "02:00:00:00:0a:02"


def ip_layer(version, src, dst):
    return IP(src=src, dst=dst, ttl=63) if version == 4 else IPv6(src=src, dst=dst, hlim=63)


def plaintexts(case, rnd):
    """Inner packets: ICMP/UDP/TCP with payload lengths that cover every padding length."""
    if case["mode"] == "tunnel":
        a = ADDR[case["inner"]]
        src, dst = a["h_a"], a["h_b"]
    else:
        a = ADDR[case["outer"]]
        src, dst = a["gw_a"], a["gw_b"]
    pkts = []
    v = case["inner"]
    for i, n in enumerate([0, 1, 2, 3, 17, 100, 511, 1300]):
        payload = bytes(rnd.randrange(256) for _ in range(n))
        if i % 3 == 0:
            l4 = ICMP(id=7, seq=i) if v == 4 else ICMPv6EchoRequest(id=7, seq=i)
        elif i % 3 == 1:
            l4 = UDP(sport=5000 + i, dport=53)
        else:
            l4 = TCP(sport=40000 + i, dport=443, flags="PA", seq=1000 * i)
        p = ip_layer(v, src, dst) / l4 / Raw(payload)
        pkts.append(p.__class__(raw(p)))
    return pkts


def sa_toml(case, spi, keypair, direction):
    key, ikey = keypair
    a = ADDR[case["outer"]]
    inner = ADDR[case["inner"]]
    # esprit is gateway B: scapy (gateway A) sends to it; esprit's outbound goes the same way
    # (A -> B) so that scapy can play B when it decrypts. Selectors follow the packets.
    if direction == "in":
        local, remote = a["gw_b"], a["gw_a"]
        lts, rts = inner["net_b"], inner["net_a"]
    else:
        local, remote = a["gw_a"], a["gw_b"]
        lts, rts = inner["net_a"], inner["net_b"]
    if case["mode"] == "transport":
        lts = rts = None
    lines = [
        "[[sa]]",
        f'spi = "0x{spi:08x}"',
        f'direction = "{direction}"',
        f'mode = "{case["mode"]}"',
        f'suite = "{suite_of(case)}"',
        f'key = "{key.hex()}"',
        f'local = "{local}"',
        f'remote = "{remote}"',
    ]
    if ikey is not None:
        lines.append(f'integ_key = "{ikey.hex()}"')
    if case["natt"]:
        lines.append('encap = "udp"')
    if case["esn"] is not None:
        lines.append("esn = true")
        lines.append(f"seq = {case['esn'] - 1}")
    lines.append("replay_window = 64")
    if case.get("pad4"):
        lines.append("pad_align = 4")
    if lts:
        lines.append(f'local_ts = ["{lts}"]')
        lines.append(f'remote_ts = ["{rts}"]')
    return "\n".join(lines) + "\n"


def scapy_sa(case, spi, keypair):
    key, ikey = keypair
    crypt, auth, _, _ = algos(case)
    a = ADDR[case["outer"]]
    tunnel = None
    if case["mode"] == "tunnel":
        tunnel = IP(src=a["gw_a"], dst=a["gw_b"]) if case["outer"] == 4 else IPv6(src=a["gw_a"], dst=a["gw_b"])
    natt = UDP(sport=4500, dport=4500) if case["natt"] else None
    return SecurityAssociation(ESP, spi=spi, crypt_algo=crypt, crypt_key=key, auth_algo=auth,
                               auth_key=ikey, tunnel_header=tunnel, nat_t_header=natt,
                               esn_en=case["esn"] is not None)


def seq_of(case, i):
    start = case["esn"] if case["esn"] is not None else 1
    return start + i


def encrypt(sa, case, pkt, seq):
    # scapy reads `seq_num or self.seq_num`: a low half of 0 (at the 2^32 boundary) would fall
    # back to the SA's counter, so set the counter as well.
    sa.seq_num = seq & 0xFFFFFFFF
    return sa.encrypt(pkt, seq_num=seq & 0xFFFFFFFF, esn_en=case["esn"] is not None, esn=seq >> 32)


def frame(case, ip_pkt):
    """Wraps an IP packet for the case's link type."""
    if case["link"] == "ether":
        return Ether(src=MAC_A, dst=MAC_B) / ip_pkt
    return ip_pkt


def write(path, case, pkts):
    w = PcapWriter(path, linktype=LINKTYPES[case["link"]], sync=True)
    for i, p in enumerate(pkts):
        p = p.__class__(raw(p))
        p.time = 1700000000 + i / 1000
        w.write(p)
    w.close()


def inputs():
    cases_out = []
    for idx, case in enumerate(CASES):
        rnd = random.Random(1000 + idx)
        d = os.path.join(OUT, case["name"])
        os.makedirs(d, exist_ok=True)
        key, key_out, spi_in, spi_out = case_keys(case, rnd)
        with open(os.path.join(d, "sa-in.toml"), "w") as f:
            f.write(sa_toml(case, spi_in, key, "in"))
        with open(os.path.join(d, "sa-out.toml"), "w") as f:
            f.write(sa_toml(case, spi_out, key_out, "out"))
        plain = plaintexts(case, rnd)
        write(os.path.join(d, "plain.pcap"), case, [frame(case, p) for p in plain])

        sa = scapy_sa(case, spi_in, key)
        esp = [encrypt(sa, case, p, seq_of(case, i)) for i, p in enumerate(plain)]
        stream = [frame(case, e) for e in esp]
        expect = [frame(case, p) for p in plain]
        # Bad packets: a corrupted ICV (on a fresh sequence number, so the replay check lets it
        # through to the ICV), a replay, an unknown SPI.
        forged = encrypt(sa, case, plain[2], seq_of(case, len(plain) + 1))
        bad_icv = bytearray(raw(forged))
        bad_icv[-1] ^= 0x40
        stream.append(frame(case, forged.__class__(bytes(bad_icv))))
        stream.append(frame(case, esp[1]))
        other = scapy_sa(case, spi_in ^ 0x5A5A5A5A, key)
        stream.append(frame(case, encrypt(other, case, plain[0], seq_of(case, 20))))
        # A packet after the bad ones still passes (the forgery did not move the window).
        late = encrypt(sa, case, plain[3], seq_of(case, len(plain) + 2))
        stream.append(frame(case, late))
        expect.append(frame(case, plain[3]))
        skipped = {}
        if case["natt"]:
            a = ADDR[case["outer"]]
            ike = ip_layer(case["outer"], a["gw_a"], a["gw_b"]) / UDP(sport=4500, dport=4500) / Raw(b"\x00\x00\x00\x00" + b"\x11" * 28)
            ka = ip_layer(case["outer"], a["gw_a"], a["gw_b"]) / UDP(sport=4500, dport=4500) / Raw(b"\xff")
            stream.insert(1, frame(case, ike))
            stream.insert(4, frame(case, ka))
            skipped = {"ike": 1, "nat_keepalive": 1}
        if case["link"] == "ether":
            stream.insert(2, Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.200.0.1", pdst="10.200.0.2"))
            skipped["non_ip"] = 1
        write(os.path.join(d, "scapy-esp.pcap"), case, stream)
        # esprit keeps the ESP frame's MAC addresses: the same as the plaintext frames here.
        write(os.path.join(d, "expect-plain.pcap"), case, expect)
        exp = dict(written=len(expect), auth_failed=1, replayed=1, unknown_spi=1, skipped=skipped)
        with open(os.path.join(d, "expect.json"), "w") as f:
            json.dump(exp, f, indent=1, sort_keys=True)
        cases_out.append(dict(case, spi_in=spi_in, spi_out=spi_out))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump([c["name"] for c in CASES], f, indent=1)


def verify():
    """Decrypts esprit's output with scapy and checks it against the plaintext."""
    failures = 0
    for idx, case in enumerate(CASES):
        rnd = random.Random(1000 + idx)
        d = os.path.join(OUT, case["name"])
        key, key_out, spi_in, spi_out = case_keys(case, rnd)
        sa = scapy_sa(case, spi_out, key_out)
        plain = [raw(p) for p in rdpcap(os.path.join(d, "plain.pcap"))]
        esp = list(rdpcap(os.path.join(d, "esprit-esp.pcap")))
        ok = len(esp) == len(plain)
        details = []
        for i, (p, e) in enumerate(zip(plain, esp)):
            ip_pkt = e.payload if case["link"] == "ether" else e
            if case["link"] != "ether":
                ip_pkt = (IP if raw(e)[0] >> 4 == 4 else IPv6)(raw(e))
            seq = seq_of(case, i)
            wire_seq = ip_pkt[ESP].seq if ESP in ip_pkt else None
            if ESP not in ip_pkt and case["natt"]:
                # scapy dissects UDP/4500 as NAT-T ESP only in some versions: re-dissect.
                udp = ip_pkt[UDP]
                esp_layer = ESP(raw(udp.payload))
                wire_seq = esp_layer.seq
            try:
                dec = sa.decrypt(ip_pkt, esn_en=case["esn"] is not None, esn=seq >> 32)
            except Exception as e:  # scapy raises on a bad ICV
                ok = False
                details.append(f"packet {i}: scapy refuses it: {e!r}")
                continue
            want = p[14:] if case["link"] == "ether" else p
            if case["link"] == "ether" and raw(e)[:12] != p[:12]:
                ok = False
                details.append(f"packet {i}: MAC addresses changed")
            if raw(dec) != want:
                ok = False
                details.append(f"packet {i}: scapy decrypts to something else")
            if wire_seq != (seq & 0xFFFFFFFF):
                ok = False
                details.append(f"packet {i}: sequence {wire_seq}, expected {seq & 0xFFFFFFFF}")
        verdict = dict(case=case["name"], packets=len(esp), ok=ok, details=details,
                       scapy="2.8.0")
        with open(os.path.join(d, "scapy-verdict.json"), "w") as f:
            json.dump(verdict, f, indent=1, sort_keys=True)
        print(f"{case['name']}: {'ok' if ok else 'FAIL'} ({len(esp)} packets) {' '.join(details)}")
        failures += 0 if ok else 1
    return failures


if __name__ == "__main__":
    if sys.argv[1:] == ["inputs"]:
        inputs()
    elif sys.argv[1:] == ["verify"]:
        sys.exit(1 if verify() else 0)
    else:
        sys.exit("usage: gen.py inputs|verify")
