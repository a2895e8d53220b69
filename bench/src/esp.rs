//! The ESP benchmark: the full ESP path (`SaDb::encrypt_batch` — inner header parse, SA lookup
//! by selectors, sequence number, trailer, AES-GCM seal, outer headers — and `decrypt_batch` —
//! outer checks, SPI lookup, replay check and update, AES-GCM open, trailer and padding,
//! selectors) against bare AES-GCM seal/open on the same buffers and sizes, batches of 32, one
//! core, interleaved so the ratio is measured under the same conditions.
//!
//! Both loops copy each packet into its frame before processing it (what a NIC's DMA or a copy
//! from a ring would do), so the harness costs the same on both sides; the copy is part of both
//! figures and cancels out of the comparison as far as it can.

use dataplane::esp::aead::{new_aead, Aead, KeyMaterial};
use dataplane::esp::{decrypt_batch, Backend, Suite, Verdict};
use dataplane::frame::OwnedFrame;
use dataplane::sa::{Direction, Mode, SaConfig, SaDb, Selectors};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Frames per batch.
pub const BATCH: usize = 32;
/// Headroom left in front of each packet.
const HEADROOM: usize = 128;

/// A packet size: a fixed length, or the IMIX mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Every packet this long (plaintext IP packet bytes).
    Fixed(usize),
    /// 7:4:1 of 64, 576 and 1500 bytes.
    Imix,
}

impl Size {
    /// The sizes the issue asks for.
    pub const ALL: [Size; 8] = [
        Size::Fixed(64),
        Size::Fixed(128),
        Size::Fixed(256),
        Size::Fixed(512),
        Size::Fixed(1024),
        Size::Fixed(1420),
        Size::Fixed(1500),
        Size::Imix,
    ];

    /// Label for tables and JSON.
    pub fn label(&self) -> String {
        match self {
            Size::Fixed(n) => n.to_string(),
            Size::Imix => "imix".into(),
        }
    }

    /// The packet lengths of one batch, in order (IMIX interleaves its 7:4:1 pattern).
    pub fn batch_lengths(&self) -> [usize; BATCH] {
        let mut out = [0usize; BATCH];
        const PATTERN: [usize; 12] = [64, 576, 64, 64, 1500, 64, 576, 64, 576, 64, 64, 576];
        for (i, o) in out.iter_mut().enumerate() {
            *o = match self {
                Size::Fixed(n) => *n,
                Size::Imix => PATTERN[i % PATTERN.len()],
            };
        }
        out
    }
}

/// An IPv4/UDP packet of exactly `len` bytes (at least 28) from 10.1.0.x to 10.2.0.x.
pub fn udp_packet(len: usize, i: usize) -> Vec<u8> {
    let len = len.max(28);
    let mut p = vec![0u8; len];
    Ipv4Repr {
        src: Ipv4Addr::new(10, 1, 0, 1),
        dst: Ipv4Addr::new(10, 2, 0, (i % 200) as u8 + 1),
        protocol: proto::UDP,
        payload_len: len - 20,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: i as u16,
        dont_frag: true,
    }
    .emit(&mut p);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (j, b) in p[28..].iter_mut().enumerate() {
        *b = (j * 7 + i) as u8;
    }
    p
}

fn sa(suite: Suite, dir: Direction) -> SaConfig {
    let (local, remote) = match dir {
        Direction::Out => ("192.0.2.1", "192.0.2.2"),
        Direction::In => ("192.0.2.2", "192.0.2.1"),
    };
    let (lts, rts) = match dir {
        Direction::Out => ("10.1.0.0/16", "10.2.0.0/16"),
        Direction::In => ("10.2.0.0/16", "10.1.0.0/16"),
    };
    SaConfig {
        spi: 0x1000_0001,
        direction: dir,
        mode: Mode::Tunnel,
        suite,
        key: KeyMaterial::new((0..suite.keymat_len() as u8).collect()),
        local: local.parse().expect("address"),
        remote: remote.parse().expect("address"),
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::new(vec![lts.parse().expect("prefix")]),
        remote_ts: Selectors::new(vec![rts.parse().expect("prefix")]),
        lifetime: Default::default(),
    }
}

/// What one loop measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Seal / encapsulate.
    Encrypt,
    /// Open / decapsulate.
    Decrypt,
}

impl Op {
    /// Label.
    pub fn label(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
        }
    }
}

/// Everything one (backend, suite, size, op) measurement needs, prepared once.
pub struct Fixture {
    op: Op,
    db: SaDb,
    aead: Box<dyn Aead>,
    salt: [u8; 4],
    /// Inputs of the ESP loop: plaintext packets (encrypt) or ESP packets (decrypt).
    esp_inputs: Arena,
    /// Inputs of the bare AEAD loop: plaintext (seal) or ciphertext || tag (open).
    aead_inputs: Arena,
    frames: Vec<OwnedFrame>,
    verdicts: [Verdict; BATCH],
    plain_bytes: u64,
}

impl Fixture {
    /// Builds the SAs, the packets and the frames.
    pub fn new(backend: Backend, suite: Suite, size: Size, op: Op) -> Self {
        let lens = size.batch_lengths();
        let plain: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| udp_packet(n, i))
            .collect();
        let plain_bytes = plain.iter().map(|p| p.len() as u64).sum();
        let keymat = sa(suite, Direction::Out).key;
        let k = keymat.expose_secret();
        let aead = new_aead(backend, suite, &k[..suite.key_len()]).expect("key length");
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&k[suite.key_len()..]);
        let mut db = SaDb::new(backend);
        let frames: Vec<OwnedFrame> = (0..BATCH)
            .map(|_| OwnedFrame::from_packet(&[], 0, 2048 + HEADROOM))
            .collect();
        let (esp_inputs, aead_inputs): (Vec<Vec<u8>>, Vec<Vec<u8>>) = match op {
            Op::Encrypt => {
                db.insert(sa(suite, Direction::Out)).expect("SA");
                let aead_in = plain.iter().map(|p| {
                    let mut v = p.clone();
                    v.extend_from_slice(&[0; 16]);
                    v
                });
                (plain.clone(), aead_in.collect())
            }
            Op::Decrypt => {
                // ESP packets with sequence numbers 1..=32 from the matching outbound SA.
                let mut tx = SaDb::new(backend);
                tx.insert(sa(suite, Direction::Out)).expect("SA");
                let mut f: Vec<OwnedFrame> = plain
                    .iter()
                    .map(|p| OwnedFrame::from_packet(p, HEADROOM, 64))
                    .collect();
                let mut v = [Verdict::Pass; BATCH];
                tx.encrypt_batch(&mut f, &mut v);
                assert!(v.iter().all(|v| *v == Verdict::Pass));
                db.insert(sa(suite, Direction::In)).expect("SA");
                let aead_in = plain.iter().enumerate().map(|(i, p)| {
                    let mut v = p.clone();
                    v.extend_from_slice(&[0; 16]);
                    aead.seal(
                        &nonce(&salt, i as u64 + 1),
                        &[1, 2, 3, 4, 5, 6, 7, 8],
                        &mut v,
                    )
                    .expect("seal");
                    v
                });
                (
                    f.iter().map(|f| f.data().to_vec()).collect(),
                    aead_in.collect(),
                )
            }
        };
        Fixture {
            op,
            db,
            aead,
            salt,
            esp_inputs: Arena::new(&esp_inputs),
            aead_inputs: Arena::new(&aead_inputs),
            frames,
            verdicts: [Verdict::Pass; BATCH],
            plain_bytes,
        }
    }

    /// Plaintext bytes per batch.
    pub fn batch_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// One batch through the full ESP path. Returns false if any packet was dropped (a bug).
    #[inline]
    pub fn esp_batch(&mut self) -> bool {
        for (i, f) in self.frames.iter_mut().enumerate() {
            f.refill(self.esp_inputs.get(i), HEADROOM);
        }
        match self.op {
            Op::Encrypt => self.db.encrypt_batch(&mut self.frames, &mut self.verdicts),
            Op::Decrypt => {
                // The same 32 packets come round again: start the window afresh (16 words
                // cleared per batch, charged to the ESP side).
                if let Some(sa) = self
                    .db
                    .inbound_mut(0x1000_0001, "192.0.2.2".parse().expect("address"))
                {
                    sa.replay.reset(0);
                }
                decrypt_batch(&mut self.db, &mut self.frames, &mut self.verdicts)
            }
        }
        self.verdicts.iter().all(|v| *v == Verdict::Pass)
    }

    /// One batch through bare AES-GCM, in place, nonce built per packet.
    #[inline]
    pub fn aead_batch(&mut self, counter: &mut u64) -> bool {
        let mut ok = true;
        for (i, f) in self.frames.iter_mut().enumerate() {
            f.refill(self.aead_inputs.get(i), HEADROOM);
            let n = match self.op {
                Op::Encrypt => {
                    *counter += 1;
                    nonce(&self.salt, *counter)
                }
                Op::Decrypt => nonce(&self.salt, i as u64 + 1),
            };
            let aad = [1u8, 2, 3, 4, 5, 6, 7, 8];
            ok &= match self.op {
                Op::Encrypt => self.aead.seal(&n, &aad, f.data_mut()).is_ok(),
                Op::Decrypt => self.aead.open(&n, &aad, f.data_mut()).is_ok(),
            };
        }
        ok
    }
}

/// Input packets laid out identically for both loops: slot `i` at a 64-byte-aligned offset
/// `i * 2048 + 128`, so the copy into the frames costs the same on both sides.
struct Arena {
    buf: Vec<u8>,
    base: usize,
    lens: Vec<usize>,
}

impl Arena {
    fn new(pkts: &[Vec<u8>]) -> Self {
        let mut buf = vec![0u8; pkts.len() * 2048 + 64];
        let base = (64 - (buf.as_ptr() as usize % 64)) % 64;
        for (i, p) in pkts.iter().enumerate() {
            let at = base + i * 2048 + HEADROOM;
            buf[at..at + p.len()].copy_from_slice(p);
        }
        Arena {
            buf,
            base,
            lens: pkts.iter().map(|p| p.len()).collect(),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let at = self.base + i * 2048 + HEADROOM;
        &self.buf[at..at + self.lens[i]]
    }
}

fn nonce(salt: &[u8; 4], iv: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv.to_be_bytes());
    n
}

/// Runs `batch` repeatedly for about `dur` and returns plaintext Gbit/s and Mpps.
pub fn measure(dur: Duration, bytes_per_batch: u64, mut batch: impl FnMut() -> bool) -> (f64, f64) {
    // Warm up caches and the branch predictor.
    for _ in 0..8 {
        assert!(batch(), "a benchmark packet was dropped");
    }
    let start = Instant::now();
    let mut batches = 0u64;
    loop {
        for _ in 0..16 {
            assert!(batch(), "a benchmark packet was dropped");
        }
        batches += 16;
        if start.elapsed() >= dur {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let gbps = (batches * bytes_per_batch) as f64 * 8.0 / secs / 1e9;
    let mpps = (batches * BATCH as u64) as f64 / secs / 1e6;
    (gbps, mpps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imix_is_7_4_1() {
        let l = Size::Imix.batch_lengths();
        let pattern = &l[..12];
        assert_eq!(pattern.iter().filter(|&&n| n == 64).count(), 7);
        assert_eq!(pattern.iter().filter(|&&n| n == 576).count(), 4);
        assert_eq!(pattern.iter().filter(|&&n| n == 1500).count(), 1);
        assert_eq!(Size::Fixed(1420).batch_lengths(), [1420; BATCH]);
    }

    #[test]
    fn packets_have_the_asked_length_and_fixtures_pass() {
        for n in [64, 1500] {
            assert_eq!(udp_packet(n, 3).len(), n);
        }
        for backend in Backend::ALL {
            for op in [Op::Encrypt, Op::Decrypt] {
                let mut f = Fixture::new(backend, Suite::Aes256Gcm16, Size::Imix, op);
                let mut c = 0;
                for _ in 0..3 {
                    assert!(f.esp_batch(), "{backend:?} {op:?}");
                    assert!(f.aead_batch(&mut c), "{backend:?} {op:?}");
                }
            }
        }
    }
}
