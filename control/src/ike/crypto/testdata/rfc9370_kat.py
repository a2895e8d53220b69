#!/usr/bin/env python3
"""Writes rfc9370_kat.txt: known answers of the RFC 9370 key update and the RFC 9242 IntAuth
chain, computed with Python's hmac and hashlib alone (independent of esprit and aws-lc) from
fixed inputs: PRF HMAC-SHA-384, AES-256-GCM (36 octets of key and salt per direction, no
integrity keys), two additional key exchanges with secrets SK(1) and SK(2).

Per round n: SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr), then
{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}(n) = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr).
IntAuth_i(n) = prf(SK_pi(n-1), IntAuth_i(n-1) | A | P) over the initiator's IKE_INTERMEDIATE
request n carrying one KE payload (group 36, the data below), with A the IKE header and the
Encrypted payload header with lengths as if unencrypted, P the KE payload.

A child SA with two additional key exchanges (RFC 9370 §2.2.4), AES-256-GCM both ways:
KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | SK(2)), 2 x 36 octets, under SK_d(0) above.
An IKE SA rekey with the same secrets and nonces: SKEYSEED = prf(SK_d(0), SK(0) | Ni | Nr |
SK(1) | SK(2)), the new SA's SK_d = the first 48 octets of prf+(SKEYSEED, Ni | Nr | SPIi' |
SPIr') with new SPIs 0x2122232425262728 and 0x3132333435363738.
"""
import hashlib
import hmac
import struct


def prf(key, data):
    return hmac.new(key, data, hashlib.sha384).digest()


def prf_plus(key, seed, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = prf(key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:length]


ni = bytes([0x11]) * 32
nr = bytes([0x22]) * 32
spi_i = 0x0102030405060708
spi_r = 0x1112131415161718
sk_d0 = bytes(range(48))
sk_pi0 = bytes([0x66]) * 48
secrets = [bytes([0x33]) * 32, bytes([0x44]) * 32]
lens = [48, 0, 0, 36, 36, 48, 48]
names = ["sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"]


def intermediate_octets(message_id, ke_data):
    ke = struct.pack(">BBHHH", 0, 0, 8 + len(ke_data), 36, 0) + ke_data
    sk_hdr = struct.pack(">BBH", 34, 0, 4 + len(ke))
    hdr = struct.pack(">QQBBBBII", spi_i, spi_r, 46, 0x20, 43, 0x08, message_id, 28 + len(sk_hdr) + len(ke))
    return hdr + sk_hdr + ke


with open("rfc9370_kat.txt", "w") as out:
    sk_d, sk_pi, int_auth_i = sk_d0, sk_pi0, b""
    for n, s in enumerate(secrets, start=1):
        octets = intermediate_octets(n, bytes([0x50 + n]) * 16)
        int_auth_i = prf(sk_pi, int_auth_i + octets)
        skeyseed = prf(sk_d, s + ni + nr)
        keymat = prf_plus(skeyseed, ni + nr + struct.pack(">QQ", spi_i, spi_r), sum(lens))
        off = 0
        keys = {}
        for name, ln in zip(names, lens):
            keys[name] = keymat[off:off + ln]
            off += ln
        out.write(f"round{n}.skeyseed = {skeyseed.hex()}\n")
        for name in names:
            if keys[name]:
                out.write(f"round{n}.{name} = {keys[name].hex()}\n")
        out.write(f"round{n}.int_auth_i = {int_auth_i.hex()}\n")
        sk_d, sk_pi = keys["sk_d"], keys["sk_pi"]
    child_sk0 = bytes([0x77]) * 32
    child_ni = bytes([0x88]) * 32
    child_nr = bytes([0x99]) * 32
    keymat = prf_plus(sk_d0, child_sk0 + child_ni + child_nr + secrets[0] + secrets[1], 72)
    out.write(f"child.keymat = {keymat.hex()}\n")
    seed = prf(sk_d0, child_sk0 + child_ni + child_nr + secrets[0] + secrets[1])
    new_spis = struct.pack(">QQ", 0x2122232425262728, 0x3132333435363738)
    out.write(f"rekey.sk_d = {prf_plus(seed, child_ni + child_nr + new_spis, 48).hex()}\n")
