//! Shared fixtures of the ESP fuzz targets.
#![allow(dead_code)]

use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::{Backend, Suite};
use dataplane::sa::{Direction, Mode, SaConfig, SaDb, Selectors, UdpEncap};
use dataplane::wire::{ipv4, ipv6};

/// SPIs of the inbound SAs: tunnel v4, tunnel v6, transport v4, transport v6, NAT-T, ESN (all
/// AES-GCM), then tunnel v4 with AES-128-CBC/HMAC-SHA-256, AES-256-CBC/HMAC-SHA-512 with ESN,
/// and ChaCha20-Poly1305.
pub const SPIS: [u32; 9] = [
    0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108,
];

/// The SA configuration behind `SPIS[i]`, as the sender sees it (direction out).
pub fn config(i: usize) -> SaConfig {
    let v6 = i % 2 == 1 && i < 4;
    let (a, b) = if v6 {
        ("2001:db8::1", "2001:db8::2")
    } else {
        ("10.200.0.1", "10.200.0.2")
    };
    let suite = match i {
        6 => Suite::Aes128CbcSha256,
        7 => Suite::Aes256CbcSha512,
        8 => Suite::ChaCha20Poly1305,
        _ if i % 3 == 0 => Suite::Aes256Gcm16,
        _ => Suite::Aes128Gcm16,
    };
    let esn = i == 5 || i == 7;
    SaConfig {
        spi: SPIS[i],
        direction: Direction::Out,
        mode: if (2..4).contains(&i) {
            Mode::Transport
        } else {
            Mode::Tunnel
        },
        suite,
        key: KeyMaterial::new(vec![i as u8 + 1; suite.keymat_len()]),
        integ_key: (!suite.is_aead())
            .then(|| KeyMaterial::new(vec![i as u8 + 0x41; suite.integ_key_len()])),
        local: a.parse().unwrap(),
        remote: b.parse().unwrap(),
        encap: (i == 4).then(UdpEncap::default),
        esn,
        replay_window: 64,
        seq: if esn { 0xffff_fff0 } else { 0 },
        local_ts: Selectors::default(),
        remote_ts: Selectors::default(),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// The receiving side of `config(i)`.
pub fn inbound(i: usize) -> SaConfig {
    let mut c = config(i);
    c.direction = Direction::In;
    std::mem::swap(&mut c.local, &mut c.remote);
    c
}

/// A database with every inbound SA.
pub fn inbound_db() -> SaDb {
    let mut db = SaDb::new(Backend::Ring);
    for i in 0..SPIS.len() {
        db.insert(inbound(i)).unwrap();
    }
    db
}

/// A database with the outbound SA `i`.
pub fn outbound_db(i: usize) -> SaDb {
    let mut db = SaDb::new(Backend::Ring);
    db.insert(config(i)).unwrap();
    db
}

/// Overwrites where an ESP header would sit after an option-less IPv4/IPv6 header (and UDP)
/// with one of the known SPIs, chosen by `sel`, and the destination with the SA's.
pub fn splice_spi(pkt: &mut [u8], sel: u8) {
    let i = usize::from(sel) % SPIS.len();
    let c = inbound(i);
    let at = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= ipv4::MIN_HEADER_LEN => {
            if let std::net::IpAddr::V4(d) = c.local {
                pkt[16..20].copy_from_slice(&d.octets());
            }
            ipv4::MIN_HEADER_LEN
        }
        Some(6) if pkt.len() >= ipv6::HEADER_LEN => {
            if let std::net::IpAddr::V6(d) = c.local {
                pkt[24..40].copy_from_slice(&d.octets());
            }
            ipv6::HEADER_LEN
        }
        _ => return,
    };
    let at = if sel & 0x80 != 0 { at + 8 } else { at };
    if pkt.len() >= at + 4 {
        pkt[at..at + 4].copy_from_slice(&SPIS[i].to_be_bytes());
    }
}
