//! Shared fixtures of the IKE fuzz targets: SK payload sealing with known keys and two PSK
//! connections that match each other.
#![allow(dead_code)]

use control::ike::algorithms::{DhGroup, EncrAlg, IntegAlg, PrfAlg};
use control::ike::crypto::mlkem::MlKem;
use control::ike::crypto::sk::SkCipher;
use control::ike::identity::Identity;
use control::ike::message::consts::payload_type;
use control::ike::message::HEADER_LEN;
use control::ike::session::proposal::IkeSuite;
use control::ike::session::{
    ts, ChildMode, ChildParams, ConnectionParams, EspProposalSpec, IkeProposalSpec,
    LocalCredential, RemoteCredential, Retransmit, TsSpec,
};
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The initiator's address.
pub const A: &str = "10.200.0.1:500";
/// The responder's address.
pub const B: &str = "10.200.0.2:500";

/// A constant address.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The SK suites the fuzz targets choose among: every cipher, AES-CBC with two of the HMACs.
pub const SUITES: [(EncrAlg, Option<IntegAlg>); 6] = [
    (EncrAlg::AesGcm16_128, None),
    (EncrAlg::AesGcm16_256, None),
    (EncrAlg::ChaCha20Poly1305, None),
    (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128)),
    (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha384_192)),
    (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
];

/// An SK cipher of suite `SUITES[n % SUITES.len()]` with fixed keys.
pub fn cipher(n: usize) -> SkCipher {
    let (encr, integ) = SUITES[n % SUITES.len()];
    let ek: Vec<u8> = (1..=encr.keymat_len() as u8).collect();
    let ak: Vec<u8> = (0..integ.map_or(0, IntegAlg::key_len) as u8).collect();
    SkCipher::with_integ(encr, integ, &ek, &ak).unwrap()
}

/// The SK cipher of a negotiated IKE suite from one direction's keys.
pub fn cipher_of(suite: IkeSuite, encr_key: &[u8], integ_key: &[u8]) -> SkCipher {
    SkCipher::with_integ(suite.encr, suite.integ, encr_key, integ_key).unwrap()
}

/// A message whose only payload is an SK payload sealing `plain` as it is (the payload chain
/// starting with type `inner_next`, then padding and the Pad Length octet, all up to the
/// caller; zeros are appended to fill a cipher block), under `sk` with the IV of `counter`.
/// None if it would exceed an IKE message.
pub fn sealed(
    header: [u8; HEADER_LEN],
    inner_next: u8,
    plain: &[u8],
    sk: &SkCipher,
    counter: [u8; 8],
) -> Option<Vec<u8>> {
    let mut plain = plain.to_vec();
    let block = sk.block_len();
    plain.resize(plain.len().div_ceil(block).max(1) * block, 0);
    let iv = sk.iv(counter);
    let total = HEADER_LEN + 4 + iv.len() + plain.len() + sk.icv_len();
    let total32 = u32::try_from(total).ok()?;
    let sk_len = u16::try_from(total - HEADER_LEN).ok()?;
    let mut out = header.to_vec();
    out[16] = payload_type::SK;
    out[24..28].copy_from_slice(&total32.to_be_bytes());
    out.push(inner_next);
    out.push(0);
    out.extend_from_slice(&sk_len.to_be_bytes());
    let ct = sk.seal(&iv, &out, &plain);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    Some(out)
}

/// The 28 octets of an IKEv2 header (next payload and length are filled in by [`sealed`]).
pub fn header(spi_i: u64, spi_r: u64, exchange: u8, flags: u8, message_id: u32) -> [u8; 28] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&spi_i.to_be_bytes());
    h[8..16].copy_from_slice(&spi_r.to_be_bytes());
    h[17] = 0x20;
    h[18] = exchange;
    h[19] = flags;
    h[20..24].copy_from_slice(&message_id.to_be_bytes());
    h
}

/// Overwrite the SPIs of a datagram that is long enough to have a header.
pub fn patch_spis(d: &mut [u8], spi_i: u64, spi_r: u64) {
    if d.len() >= HEADER_LEN {
        d[..8].copy_from_slice(&spi_i.to_be_bytes());
        d[8..16].copy_from_slice(&spi_r.to_be_bytes());
    }
}

fn prefix(s: &str) -> TsSpec {
    let (a, l) = s.split_once('/').unwrap();
    TsSpec::Fixed(ts::prefix(a.parse().unwrap(), l.parse().unwrap()))
}

/// The PSK connection of one end: the initiator at [`A`] or the responder at [`B`]. Both accept
/// AES-GCM, ChaCha20-Poly1305 (with ML-KEM-512 as an additional key exchange, RFC 9370) and
/// AES-CBC; `prefer` rotates the order of the proposals, so the
/// responder's choice (its own preference first) can be any of them.
pub fn conn_preferring(initiator: bool, prefer: usize) -> ConnectionParams {
    let mut c = conn(initiator);
    let mut ike = vec![
        c.proposals[0].clone(),
        IkeProposalSpec {
            encr: vec![EncrAlg::ChaCha20Poly1305],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha512],
            dh: vec![DhGroup::X25519],
            // ML-KEM-512 as ADDKE1: IKE_INTERMEDIATE runs when this proposal is chosen.
            addke: [
                vec![Some(MlKem::MlKem512)],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
            ],
        },
        IkeProposalSpec {
            encr: vec![EncrAlg::AesCbc128, EncrAlg::AesCbc256],
            integ: vec![IntegAlg::HmacSha256_128, IntegAlg::HmacSha512_256],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Ecp256],
            addke: Default::default(),
        },
    ];
    ike.rotate_left(prefer % 3);
    c.proposals = ike;
    let esp = &mut c.children[0].proposals;
    let mut more = vec![
        esp[0].clone(),
        EspProposalSpec {
            encr: vec![EncrAlg::ChaCha20Poly1305],
            integ: vec![],
            dh: vec![DhGroup::Ecp256],
            esn: vec![false],
            // ML-KEM-512 after the PFS group: CREATE_CHILD_SA goes on in IKE_FOLLOWUP_KE.
            addke: [
                vec![Some(MlKem::MlKem512)],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
            ],
        },
        EspProposalSpec {
            encr: vec![EncrAlg::AesCbc256],
            integ: vec![IntegAlg::HmacSha384_192],
            dh: vec![DhGroup::Ecp256],
            esn: vec![true, false],
            addke: Default::default(),
        },
    ];
    more.rotate_left(prefer % 3);
    *esp = more;
    c
}

/// The PSK connection of one end: the initiator at [`A`] or the responder at [`B`].
pub fn conn(initiator: bool) -> ConnectionParams {
    let (me, peer, me_id, peer_id, lts, rts) = if initiator {
        (A, B, "gwA", "gwB", "10.201.1.0/24", "10.201.2.0/24")
    } else {
        (B, A, "gwB", "gwA", "10.201.2.0/24", "10.201.1.0/24")
    };
    let psk = Arc::new(Zeroizing::new(b"a-long-random-fuzz-secret".to_vec()));
    ConnectionParams {
        name: "fuzz".into(),
        local_addrs: vec![addr(me).ip()],
        remote_addrs: vec![addr(peer).ip()],
        remote_port: 500,
        proposals: vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha256, PrfAlg::HmacSha384],
            dh: vec![DhGroup::X25519, DhGroup::Ecp256, DhGroup::Modp2048],
            addke: Default::default(),
        }],
        local_id: Identity::parse(me_id).unwrap(),
        remote_id: Some(Identity::parse(peer_id).unwrap()),
        local_auth: LocalCredential::Psk(psk.clone()),
        remote_auth: RemoteCredential::Psk(psk),
        children: vec![ChildParams {
            name: "net".into(),
            local_ts: vec![prefix(lts), TsSpec::Dynamic],
            remote_ts: vec![prefix(rts), TsSpec::Dynamic],
            proposals: vec![EspProposalSpec {
                encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256],
                integ: vec![],
                dh: vec![DhGroup::Ecp256],
                esn: vec![true, false],
                addke: Default::default(),
            }],
            mode: ChildMode::Tunnel,
            rekey_time: None,
            rekey_bytes: 0,
            rekey_packets: 0,
            life_bytes: 0,
            life_packets: 0,
            replay_window: 64,
        }],
        force_encap: false,
        retransmit: Retransmit::default(),
        dpd_delay: None,
        rekey_time: None,
        fragmentation: true,
    }
}
