//! Authentic ESP packets whose decrypted payload is arbitrary: the fuzzer's bytes become the
//! plaintext (trailer and inner packet included) sealed with the SA's real key, so everything
//! after the ICV check — trailer and padding checks, inner header parsing, selectors, ECN,
//! transport-mode header restoration — sees hostile input.
#![no_main]

use dataplane::crypto::EspKey;
use dataplane::esp::decap::decap;
use dataplane::frame::OwnedFrame;
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::ipv6::Ipv6Repr;
use dataplane::wire::proto;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, plain)) = data.split_first() else {
        return;
    };
    let i = usize::from(sel) % support::SPIS.len();
    let c = support::config(i);
    if plain.len() > 9000 {
        return;
    }
    let seq: u64 = if c.esn {
        0x1_0000_0002
    } else {
        1 + u64::from(sel >> 4)
    };
    // CBC encrypts whole blocks only.
    let plain = &plain[..plain.len() / c.suite.block_len() * c.suite.block_len()];
    let udp = usize::from(c.encap.is_some()) * 8;
    let ip_len = if c.local.is_ipv6() { 40 } else { 20 };
    let body = 8 + c.suite.iv_len();
    let esp_len = body + plain.len() + c.suite.icv_len();
    let mut pkt = vec![0u8; ip_len + udp + esp_len];
    let protocol = if udp != 0 { proto::UDP } else { proto::ESP };
    match (c.local, c.remote) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src: s,
            dst: d,
            protocol,
            payload_len: udp + esp_len,
            ttl: 64,
            dscp: 0,
            ecn: sel & 3,
            ident: 0,
            dont_frag: false,
        }
        .emit(&mut pkt),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src: s,
            dst: d,
            next_header: protocol,
            payload_len: udp + esp_len,
            hop_limit: 64,
            dscp: 0,
            ecn: sel & 3,
            flow_label: 0,
        }
        .emit(&mut pkt),
        _ => return,
    }
    if udp != 0 {
        let l = (8 + esp_len) as u16;
        pkt[ip_len..ip_len + 8].copy_from_slice(&[
            0x11,
            0x94,
            0x11,
            0x94,
            (l >> 8) as u8,
            l as u8,
            0,
            0,
        ]);
    }
    let esp = ip_len + udp;
    pkt[esp..esp + 4].copy_from_slice(&c.spi.to_be_bytes());
    pkt[esp + 4..esp + 8].copy_from_slice(&(seq as u32).to_be_bytes());
    pkt[esp + body..esp + body + plain.len()].copy_from_slice(plain);
    let key = c.key.expose_secret();
    let k = c.suite.key_len();
    let mut salt = [0u8; 4];
    salt[..c.suite.salt_len()].copy_from_slice(&key[k..]);
    let integ = c.integ_key.as_ref().map(|k| k.expose_secret());
    let sealer = EspKey::new(dataplane::esp::Backend::Ring, c.suite, &key[..k], integ).unwrap();
    sealer.seal(&salt, &mut pkt[esp..], seq, c.esn).unwrap();
    let mut db = support::inbound_db();
    let mut f = OwnedFrame::from_packet(&pkt, 64, 0);
    if decap(&mut db, &mut f).is_ok() {
        // Whatever passed must be a well-formed IP packet.
        let d = f.data();
        assert!(dataplane::esp::encap::inner_info(d).is_ok());
    }
});
