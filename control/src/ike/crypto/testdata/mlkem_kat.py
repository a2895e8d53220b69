#!/usr/bin/env python3
"""Writes mlkem_kat.txt: ML-KEM (FIPS 203) known answers made by kyber-py, a pure-Python
implementation independent of aws-lc, from fixed seeds (`pip install kyber-py==1.2.0`).

Per parameter set: the key pair from (d, z) (ML-KEM.KeyGen_internal), a ciphertext and shared
secret from m (ML-KEM.Encaps_internal), and the implicit-rejection secret that Decaps returns
for the ciphertext with its first octet flipped. The Rust tests (mlkem.rs) check that aws-lc
accepts the keys and decapsulates to the same secrets.
"""
import hashlib
from kyber_py.ml_kem import ML_KEM_512, ML_KEM_768, ML_KEM_1024


def seed(label):
    return hashlib.sha256(label.encode()).digest()


with open("mlkem_kat.txt", "w") as out:
    for name, kem in (("512", ML_KEM_512), ("768", ML_KEM_768), ("1024", ML_KEM_1024)):
        d, z, m = (seed(f"esprit ml-kem-{name} {x}") for x in "dzm")
        ek, dk = kem._keygen_internal(d, z)
        ss, ct = kem._encaps_internal(ek, m)
        bad = bytes([ct[0] ^ 1]) + ct[1:]
        rejected = kem.decaps(dk, bad)
        assert kem.decaps(dk, ct) == ss and rejected != ss
        for k, v in (("ek", ek), ("dk", dk), ("ct", ct), ("ss", ss), ("rejected_ss", rejected)):
            out.write(f"mlkem{name}.{k} = {v.hex()}\n")
