//! The ESP benchmark: the full ESP path against bare AES-GCM on the same buffers and sizes,
//! batches of 32, one core, interleaved so that the ratio is measured under the same conditions.
//!
//! - **ESP encrypt** is [`SaDb::encrypt_batch`]: inner header parse, outbound SA lookup by
//!   traffic selectors, sequence number, padding and trailer, AES-GCM seal, outer IPv4 header.
//! - **ESP decrypt** is [`decrypt_batch`]: outer header checks (IPv4 checksum), SPI lookup,
//!   anti-replay check and update (window 1024, ESN), AES-GCM open, trailer and padding checks,
//!   inner header parse and traffic-selector check, ECN.
//! - **Bare AEAD** (the AEAD suites) is [`Aead::seal`] / [`Aead::open`] in place over the same
//!   plaintext lengths (plus the 16-byte tag), with the RFC 4106 nonce (salt || 8-byte counter)
//!   and the 12-byte ESN AAD built per packet.
//! - **Bare cipher + MAC** (the CBC suites) is [`CbcHmac::encrypt`] then [`CbcHmac::sign`]
//!   (or [`CbcHmac::verify`] then [`CbcHmac::decrypt`]) in place over the plaintext rounded up
//!   to whole AES blocks, a 16-byte IV taken from a counter, and the MAC over the 8-byte ESP
//!   header, IV, ciphertext and the ESN high half, as ESP computes it. ESP spends one more AES
//!   block per packet on top of this to derive its IV.
//!
//! Each loop first copies every packet of the batch into its frame with
//! [`OwnedFrame::refill`] (what a receive path does when a NIC or a ring hands it a packet, and
//! what in-place processing needs to start again from the same input); the copy is measured
//! alone too ([`Fixture::copy_cycle`]) so its share can be read off.
//!
//! Main case: tunnel mode, IPv4-in-IPv4, AES-GCM with a 16-byte ICV, ESN on; every other suite
//! the same way. The size is the
//! plaintext IP packet (an IPv4/UDP packet of exactly that length), and Gbit/s count plaintext
//! bytes.

use crate::stats::{max, median, min};
use dataplane::crypto::aead::{new_aead, Aead, AeadKey, KeyMaterial};
use dataplane::crypto::cbc::CbcHmac;
use dataplane::crypto::suite::BLOCK_LEN;
use dataplane::esp::{decrypt_batch, Backend, Suite, Verdict};
use dataplane::frame::OwnedFrame;
use dataplane::sa::{Direction, Mode, SaConfig, SaDb, Selectors};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Frames per batch.
pub const BATCH: usize = 32;
/// Headroom left in front of each packet (room for the outer headers).
const HEADROOM: usize = 128;
/// Bytes per frame buffer and per input slot (a UMEM-like 2 KiB chunk).
const SLOT: usize = 2048;
/// SPI of the benchmark SAs.
const SPI: u32 = 0x1000_0001;
/// Local address of the inbound SA (the outer destination of the ESP packets).
const IN_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The IMIX pattern: 7 × 64, 4 × 576, 1 × 1500 bytes, interleaved as traffic would be.
pub const IMIX_PATTERN: [usize; 12] = [64, 576, 64, 64, 1500, 64, 576, 64, 576, 64, 64, 576];

/// A packet size: a fixed length, or the IMIX mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Every packet this long (plaintext IP packet bytes, 28..=1500).
    Fixed(usize),
    /// 7:4:1 of 64, 576 and 1500 bytes ([`IMIX_PATTERN`]).
    Imix,
}

impl Size {
    /// The sizes the benchmark runs by default.
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

    /// Label for tables and JSON ("64", "imix").
    pub fn label(&self) -> String {
        match self {
            Size::Fixed(n) => n.to_string(),
            Size::Imix => "imix".into(),
        }
    }

    /// The packet lengths of one measurement cycle, in order: one batch for a fixed size,
    /// three batches (96 packets, eight times the 12-packet pattern) for IMIX, so that every
    /// cycle holds exactly 7:4:1.
    pub fn cycle_lengths(&self) -> Vec<usize> {
        match self {
            Size::Fixed(n) => vec![*n; BATCH],
            Size::Imix => IMIX_PATTERN
                .iter()
                .copied()
                .cycle()
                .take(3 * BATCH)
                .collect(),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "imix" | "IMIX" => Ok(Size::Imix),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|n| (28..=1500).contains(n))
                .map(Size::Fixed)
                .ok_or_else(|| {
                    format!("{n:?} is not a packet size in 28..=1500 bytes or \"imix\"")
                }),
        }
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
    /// Both operations.
    pub const ALL: [Op; 2] = [Op::Encrypt, Op::Decrypt];

    /// Label for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
        }
    }
}

/// An IPv4/UDP packet of exactly `len` bytes (at least 28) from 10.1.0.1 to 10.2.0.x, where x
/// varies with `i` so that consecutive packets belong to different flows.
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

/// The benchmark SA: tunnel mode between 192.0.2.1 and 192.0.2.2 for 10.1/16 <-> 10.2/16,
/// ESN, replay window 1024, no lifetime limits.
fn sa(suite: Suite, dir: Direction) -> SaConfig {
    let (local, remote, lts, rts) = match dir {
        Direction::Out => ("192.0.2.1", "192.0.2.2", "10.1.0.0/16", "10.2.0.0/16"),
        Direction::In => ("192.0.2.2", "192.0.2.1", "10.2.0.0/16", "10.1.0.0/16"),
    };
    SaConfig {
        spi: SPI,
        direction: dir,
        mode: Mode::Tunnel,
        suite,
        key: KeyMaterial::new((0..suite.keymat_len() as u8).collect()),
        integ_key: (!suite.is_aead())
            .then(|| KeyMaterial::new((0..suite.integ_key_len() as u8).rev().collect())),
        local: local.parse().expect("literal address"),
        remote: remote.parse().expect("literal address"),
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::new(vec![lts.parse().expect("literal prefix")]),
        remote_ts: Selectors::new(vec![rts.parse().expect("literal prefix")]),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// Outer IPv4 header, ESP header and IV, and ICV: what an ESP packet of `suite` adds around
/// the ESP payload (inner packet, padding, trailer) in tunnel mode over IPv4 without UDP.
fn esp_overhead(suite: Suite) -> usize {
    20 + 8 + suite.iv_len() + suite.icv_len()
}

/// How long the bare AEAD's buffers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AeadLen {
    /// The plaintext packet's length: the definition (ESP / AES-GCM over the same
    /// packet), which charges ESP for its trailer and padding.
    #[default]
    Plain,
    /// The ESP payload's length (packet, padding and trailer): isolates the engine's own
    /// overhead from the extra AES-GCM work that ESP's framing asks for.
    Esp,
}

/// Knobs of a measurement beyond (backend, suite, size, op).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Outbound ESP padding alignment, 4 or 16 (the SA default).
    pub pad_align: u8,
    /// Length basis of the bare AEAD buffers.
    pub aead_len: AeadLen,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pad_align: 16,
            aead_len: AeadLen::Plain,
        }
    }
}

/// The RFC 4106 nonce: salt || 8-byte IV.
fn nonce(salt: &[u8; 4], iv: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv.to_be_bytes());
    n
}

/// The ESN AAD of RFC 4106 §5: SPI || seq high || seq low.
fn aad(seq: u64) -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&SPI.to_be_bytes());
    a[4..].copy_from_slice(&seq.to_be_bytes());
    a
}

/// The bare primitives the ESP path is compared with: the suite's AEAD, or AES-CBC + HMAC,
/// with the SA's keys.
// The AEAD key inline, as the SA holds it (decision 0020).
#[allow(clippy::large_enum_variant)]
enum Bare {
    Aead(AeadKey, [u8; 4]),
    Cbc(Box<CbcHmac>),
}

impl Bare {
    fn new(backend: Backend, cfg: &SaConfig) -> Result<Bare, String> {
        let suite = cfg.suite;
        let k = cfg.key.expose_secret();
        let n = suite.key_len();
        let fail = |e: dataplane::crypto::AeadError| format!("{} {suite}: {e}", backend.name());
        match (suite.integ(), &cfg.integ_key) {
            (Some(integ), Some(ik)) => Ok(Bare::Cbc(Box::new(
                CbcHmac::new(backend, integ, &k[..n], ik.expose_secret()).map_err(fail)?,
            ))),
            _ => {
                let mut salt = [0u8; 4];
                salt.copy_from_slice(&k[n..n + 4]);
                Ok(Bare::Aead(
                    new_aead(backend, suite, &k[..n]).map_err(fail)?,
                    salt,
                ))
            }
        }
    }

    /// Length of a bare buffer for `len` bytes of plaintext: whole blocks for CBC, then the tag.
    fn buffer_len(&self, len: usize) -> usize {
        match self {
            Bare::Aead(..) => len + 16,
            Bare::Cbc(c) => len.div_ceil(BLOCK_LEN) * BLOCK_LEN + c.icv_len(),
        }
    }

    /// Seals (`open` false) or opens `buf` as packet `seq`.
    #[inline]
    fn apply(&self, open: bool, seq: u64, buf: &mut [u8]) -> bool {
        match self {
            Bare::Aead(a, salt) => {
                let n = nonce(salt, seq);
                if open {
                    a.open(&n, &aad(seq), buf).is_ok()
                } else {
                    a.seal(&n, &aad(seq), buf).is_ok()
                }
            }
            Bare::Cbc(c) => {
                let a = aad(seq);
                let (hdr, hi) = ([&a[..4], &a[8..]].concat(), &a[4..8]);
                let mut iv = [0u8; BLOCK_LEN];
                iv[8..].copy_from_slice(&seq.to_be_bytes());
                let Some(split) = buf.len().checked_sub(c.icv_len()) else {
                    return false;
                };
                let (data, icv) = buf.split_at_mut(split);
                if open {
                    c.verify(&[&hdr, &iv, data, hi], icv).is_ok() && c.decrypt(iv, data).is_ok()
                } else {
                    let ok = c.encrypt(iv, data).is_ok();
                    c.sign(&[&hdr, &iv, data, hi], icv);
                    ok
                }
            }
        }
    }
}

/// Everything one (backend, suite, size, op) measurement needs, prepared once: the SA
/// database, the bare AEAD (or cipher and MAC) with the same keys, the input packets and 32
/// frames.
pub struct Fixture {
    op: Op,
    db: SaDb,
    bare: Bare,
    /// Inputs of the ESP loop: plaintext packets (encrypt) or ESP packets (decrypt).
    esp_inputs: Arena,
    /// Inputs of the bare AEAD loop: plaintext || room for the tag (seal), or ciphertext ||
    /// tag (open).
    aead_inputs: Arena,
    frames: Vec<OwnedFrame>,
    verdicts: [Verdict; BATCH],
    cycle_bytes: u64,
    /// Nonce counter of the bare AEAD seal loop.
    counter: u64,
}

impl Fixture {
    /// Builds the SAs, the packets and the frames. Decrypt fixtures hold ESP packets with
    /// sequence numbers 1..=n from the matching outbound SA, and AES-GCM ciphertexts of the
    /// same plaintexts for the bare loop.
    pub fn new(backend: Backend, suite: Suite, size: Size, op: Op) -> Result<Self, String> {
        Fixture::with(backend, suite, size, op, &Options::default())
    }

    /// Like [`new`](Self::new) with non-default [`Options`].
    pub fn with(
        backend: Backend,
        suite: Suite,
        size: Size,
        op: Op,
        opts: &Options,
    ) -> Result<Self, String> {
        let plain: Vec<Vec<u8>> = size
            .cycle_lengths()
            .iter()
            .enumerate()
            .map(|(i, &n)| udp_packet(n, i))
            .collect();
        let cycle_bytes = plain.iter().map(|p| p.len() as u64).sum();
        let sa = |dir| {
            let mut c = sa(suite, dir);
            c.pad_align = opts.pad_align;
            c
        };
        let bare = Bare::new(backend, &sa(Direction::Out))?;
        // The ESP packets of the plaintexts, sequence numbers 1..=n: the decrypt loop's input,
        // and where the ESP payload lengths come from.
        let mut tx = SaDb::new(backend);
        tx.insert(sa(Direction::Out)).map_err(|e| e.to_string())?;
        let mut esp = Vec::with_capacity(plain.len());
        for chunk in plain.chunks(BATCH) {
            let mut f: Vec<OwnedFrame> = chunk
                .iter()
                .map(|p| OwnedFrame::from_packet(p, HEADROOM, SLOT - HEADROOM - p.len()))
                .collect();
            let mut v = [Verdict::Pass; BATCH];
            tx.encrypt_batch(&mut f, &mut v);
            if let Some(bad) = v.iter().find(|v| **v != Verdict::Pass) {
                return Err(format!("preparing ESP packets: {bad:?}"));
            }
            esp.extend(f.iter().map(|f| f.data().to_vec()));
        }
        // Bare buffers: the plaintext (or the ESP payload length: plaintext, padding and
        // trailer; whole blocks for CBC), then room for the tag.
        let aead_plain: Vec<Vec<u8>> = plain
            .iter()
            .zip(&esp)
            .map(|(p, e)| {
                let len = match opts.aead_len {
                    AeadLen::Plain => p.len(),
                    AeadLen::Esp => e.len() - esp_overhead(suite),
                };
                let mut v = p.clone();
                v.resize(bare.buffer_len(len), 0);
                v
            })
            .collect();
        let mut db = SaDb::new(backend);
        let (esp_inputs, aead_inputs) = match op {
            Op::Encrypt => {
                db.insert(sa(Direction::Out)).map_err(|e| e.to_string())?;
                (plain, aead_plain)
            }
            Op::Decrypt => {
                db.insert(sa(Direction::In)).map_err(|e| e.to_string())?;
                let mut sealed = aead_plain;
                for (i, v) in sealed.iter_mut().enumerate() {
                    if !bare.apply(false, i as u64 + 1, v) {
                        return Err("preparing ciphertexts failed".into());
                    }
                }
                (esp, sealed)
            }
        };
        Ok(Fixture {
            op,
            db,
            bare,
            esp_inputs: Arena::new(&esp_inputs)?,
            aead_inputs: Arena::new(&aead_inputs)?,
            frames: (0..BATCH)
                .map(|_| OwnedFrame::from_packet(&[], 0, SLOT))
                .collect(),
            verdicts: [Verdict::Pass; BATCH],
            cycle_bytes,
            counter: 0,
        })
    }

    /// Plaintext bytes per cycle.
    pub fn cycle_bytes(&self) -> u64 {
        self.cycle_bytes
    }

    /// Packets per cycle (32, or 96 for IMIX).
    pub fn cycle_packets(&self) -> usize {
        self.esp_inputs.len()
    }

    /// One cycle through the full ESP path, a batch of 32 at a time. Returns false if any
    /// packet was dropped (a bug in the fixture or the engine).
    #[inline]
    pub fn esp_cycle(&mut self) -> bool {
        if self.op == Op::Decrypt {
            // The same packets (sequence numbers 1..=n) come round again: the window starts
            // afresh, as for a new SA (clearing 32 words per cycle, charged to ESP).
            match self.db.inbound_mut(SPI, IpAddr::V4(IN_LOCAL)) {
                Some(sa) => sa.replay.reset(0),
                None => return false,
            }
        }
        let mut ok = true;
        for base in (0..self.esp_inputs.len()).step_by(BATCH) {
            for (i, f) in self.frames.iter_mut().enumerate() {
                f.refill(self.esp_inputs.get(base + i), HEADROOM);
            }
            match self.op {
                Op::Encrypt => self.db.encrypt_batch(&mut self.frames, &mut self.verdicts),
                Op::Decrypt => decrypt_batch(&mut self.db, &mut self.frames, &mut self.verdicts),
            }
            ok &= self.verdicts.iter().all(|v| *v == Verdict::Pass);
        }
        ok
    }

    /// One cycle through the bare AEAD (or cipher and MAC), a batch of 32 at a time, in place,
    /// nonce and AAD (or IV and MAC input) built per packet. Returns false if any seal or open
    /// failed.
    #[inline]
    pub fn aead_cycle(&mut self) -> bool {
        let mut ok = true;
        for base in (0..self.aead_inputs.len()).step_by(BATCH) {
            for (i, f) in self.frames.iter_mut().enumerate() {
                f.refill(self.aead_inputs.get(base + i), HEADROOM);
                ok &= match self.op {
                    Op::Encrypt => {
                        self.counter += 1;
                        self.bare.apply(false, self.counter, f.data_mut())
                    }
                    Op::Decrypt => self.bare.apply(true, (base + i) as u64 + 1, f.data_mut()),
                };
            }
        }
        ok
    }

    /// One cycle of refills alone: the copy both loops start with (ESP inputs).
    #[inline]
    pub fn copy_cycle(&mut self) -> bool {
        for base in (0..self.esp_inputs.len()).step_by(BATCH) {
            for (i, f) in self.frames.iter_mut().enumerate() {
                f.refill(self.esp_inputs.get(base + i), HEADROOM);
            }
            std::hint::black_box(&mut self.frames);
        }
        true
    }
}

/// Input packets laid out alike for both loops: slot `i` at the 64-byte-aligned offset
/// `i * 2048 + 128`, so the copies into the frames cost the same on both sides.
struct Arena {
    buf: Vec<u8>,
    base: usize,
    lens: Vec<usize>,
}

impl Arena {
    fn new(pkts: &[Vec<u8>]) -> Result<Self, String> {
        let mut buf = vec![0u8; pkts.len() * SLOT + 64];
        let base = (64 - (buf.as_ptr() as usize % 64)) % 64;
        for (i, p) in pkts.iter().enumerate() {
            if HEADROOM + p.len() > SLOT {
                return Err(format!("packet {i} ({} bytes) exceeds a slot", p.len()));
            }
            let at = base + i * SLOT + HEADROOM;
            buf[at..at + p.len()].copy_from_slice(p);
        }
        Ok(Arena {
            buf,
            base,
            lens: pkts.iter().map(|p| p.len()).collect(),
        })
    }

    fn len(&self) -> usize {
        self.lens.len()
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        let at = self.base + i * SLOT + HEADROOM;
        &self.buf[at..at + self.lens[i]]
    }
}

/// A measured rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Gbit/s of plaintext.
    pub gbps: f64,
    /// Million packets per second.
    pub mpps: f64,
}

impl Rate {
    /// The rate of `cycles` cycles of `bytes` and `packets` each in `secs` seconds.
    pub fn of(cycles: u64, bytes: u64, packets: u64, secs: f64) -> Rate {
        if secs <= 0.0 {
            return Rate::default();
        }
        Rate {
            gbps: (cycles * bytes) as f64 * 8.0 / secs / 1e9,
            mpps: (cycles * packets) as f64 / secs / 1e6,
        }
    }
}

/// Runs `cycle` repeatedly for about `dur` (after a short warm-up) and returns its rate.
/// Fails if a cycle reports a dropped packet.
pub fn measure(
    dur: Duration,
    bytes: u64,
    packets: usize,
    mut cycle: impl FnMut() -> bool,
) -> Result<Rate, String> {
    for _ in 0..4 {
        if !cycle() {
            return Err("a benchmark packet was dropped".into());
        }
    }
    let start = Instant::now();
    let mut cycles = 0u64;
    loop {
        let mut ok = true;
        for _ in 0..8 {
            ok &= cycle();
        }
        if !ok {
            return Err("a benchmark packet was dropped".into());
        }
        cycles += 8;
        if start.elapsed() >= dur {
            break;
        }
    }
    Ok(Rate::of(
        cycles,
        bytes,
        packets as u64,
        start.elapsed().as_secs_f64(),
    ))
}

/// Which loops to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sides {
    /// ESP, bare AEAD and the copy, interleaved (the normal run).
    All,
    /// The ESP loop alone (for profiling; ratios are then 0).
    EspOnly,
    /// The bare AEAD loop alone (for profiling; ratios are then 0).
    AeadOnly,
}

/// Per-round results of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Full ESP path, one entry per round.
    pub esp: Vec<Rate>,
    /// Bare AEAD, one entry per round.
    pub aead: Vec<Rate>,
    /// Refill alone, one entry per round.
    pub copy: Vec<Rate>,
}

/// Median, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (all zero for an empty series).
    pub fn of(v: &[f64]) -> Spread {
        Spread {
            median: median(v),
            min: min(v),
            max: max(v),
        }
    }
}

impl Samples {
    /// ESP / AEAD of each round (rounds where either side is missing or zero count as 0).
    pub fn ratios(&self) -> Vec<f64> {
        self.esp
            .iter()
            .zip(&self.aead)
            .map(|(e, a)| if a.gbps > 0.0 { e.gbps / a.gbps } else { 0.0 })
            .collect()
    }

    /// ESP Gbit/s over the rounds.
    pub fn esp_gbps(&self) -> Spread {
        Spread::of(&self.esp.iter().map(|r| r.gbps).collect::<Vec<_>>())
    }

    /// ESP Mpps over the rounds.
    pub fn esp_mpps(&self) -> Spread {
        Spread::of(&self.esp.iter().map(|r| r.mpps).collect::<Vec<_>>())
    }

    /// Bare AEAD Gbit/s over the rounds.
    pub fn aead_gbps(&self) -> Spread {
        Spread::of(&self.aead.iter().map(|r| r.gbps).collect::<Vec<_>>())
    }

    /// Bare AEAD Mpps over the rounds.
    pub fn aead_mpps(&self) -> Spread {
        Spread::of(&self.aead.iter().map(|r| r.mpps).collect::<Vec<_>>())
    }

    /// Refill-alone Gbit/s over the rounds.
    pub fn copy_gbps(&self) -> Spread {
        Spread::of(&self.copy.iter().map(|r| r.gbps).collect::<Vec<_>>())
    }

    /// The per-round ratios ESP / AEAD: median is the figure the goals are read against.
    pub fn ratio(&self) -> Spread {
        Spread::of(&self.ratios())
    }
}

/// How long and how to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rounds per configuration.
    pub rounds: usize,
    /// Time per loop per round.
    pub dur: Duration,
    /// Which loops run.
    pub sides: Sides,
    /// SA and AEAD knobs.
    pub options: Options,
}

/// Measures one configuration (suite, size, op) for each of `backends`, interleaved: in every
/// round each backend measures ESP and bare AEAD back to back, the order of the backends and of
/// the two loops reversing from one round to the next (A B C D, D C B A, …), then the copy
/// alone. Returns one [`Samples`] per backend, in the order given; sample `r` of every series
/// comes from round `r`, so per-round ratios compare figures taken moments apart.
pub fn run_group(
    backends: &[Backend],
    suite: Suite,
    size: Size,
    op: Op,
    plan: &Plan,
) -> Result<Vec<Samples>, String> {
    let Plan {
        rounds,
        dur,
        sides,
        ref options,
    } = *plan;
    let ctx =
        |b: Backend| move |e: String| format!("{} {suite} {size} {}: {e}", b.name(), op.label());
    let mut fixtures = backends
        .iter()
        .map(|&b| Fixture::with(b, suite, size, op, options).map_err(ctx(b)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = vec![Samples::default(); backends.len()];
    for r in 0..rounds {
        let forward = r % 2 == 0;
        let order: Vec<usize> = if forward {
            (0..backends.len()).collect()
        } else {
            (0..backends.len()).rev().collect()
        };
        for j in order {
            let f = &mut fixtures[j];
            let s = &mut out[j];
            let (bytes, packets) = (f.cycle_bytes(), f.cycle_packets());
            let (e, a) = match sides {
                Sides::EspOnly => (
                    measure(dur, bytes, packets, || f.esp_cycle()),
                    Ok(Rate::default()),
                ),
                Sides::AeadOnly => (
                    Ok(Rate::default()),
                    measure(dur, bytes, packets, || f.aead_cycle()),
                ),
                Sides::All if forward => {
                    let e = measure(dur, bytes, packets, || f.esp_cycle());
                    (e, measure(dur, bytes, packets, || f.aead_cycle()))
                }
                Sides::All => {
                    let a = measure(dur, bytes, packets, || f.aead_cycle());
                    (measure(dur, bytes, packets, || f.esp_cycle()), a)
                }
            };
            s.esp.push(e.map_err(ctx(backends[j]))?);
            s.aead.push(a.map_err(ctx(backends[j]))?);
            if sides == Sides::All {
                let c = measure(dur / 2, bytes, packets, || f.copy_cycle());
                s.copy.push(c.map_err(ctx(backends[j]))?);
            }
        }
    }
    Ok(out)
}

/// How backend `b` compares with backend `a` on the same configuration, round by round.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Versus {
    /// Per-round `b` / `a` of the bare AEAD Gbit/s.
    pub aead: Spread,
    /// Per-round `b` / `a` of the full ESP path Gbit/s.
    pub esp: Spread,
}

impl Versus {
    /// Compares two series measured in the same rounds (see [`run_group`]).
    pub fn of(a: &Samples, b: &Samples) -> Versus {
        let per_round = |x: &[Rate], y: &[Rate]| -> Vec<f64> {
            x.iter()
                .zip(y)
                .map(|(x, y)| if x.gbps > 0.0 { y.gbps / x.gbps } else { 0.0 })
                .collect()
        };
        Versus {
            aead: Spread::of(&per_round(&a.aead, &b.aead)),
            esp: Spread::of(&per_round(&a.esp, &b.esp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imix_cycle_is_exactly_7_4_1() {
        let l = Size::Imix.cycle_lengths();
        assert_eq!(l.len(), 3 * BATCH);
        let count = |n| l.iter().filter(|&&x| x == n).count();
        assert_eq!((count(64), count(576), count(1500)), (56, 32, 8));
        // Byte-weighted: the mean packet is (7*64 + 4*576 + 1500) / 12 bytes.
        let mean = l.iter().sum::<usize>() as f64 / l.len() as f64;
        assert!((mean - (7.0 * 64.0 + 4.0 * 576.0 + 1500.0) / 12.0).abs() < 1e-9);
        assert_eq!(Size::Fixed(1420).cycle_lengths(), vec![1420; BATCH]);
    }

    #[test]
    fn sizes_parse_and_label() {
        assert_eq!("64".parse::<Size>(), Ok(Size::Fixed(64)));
        assert_eq!(" imix".parse::<Size>(), Ok(Size::Imix));
        assert!("1501".parse::<Size>().is_err());
        assert!("abc".parse::<Size>().unwrap_err().contains("abc"));
        assert_eq!(Size::Imix.to_string(), "imix");
        assert_eq!(Size::Fixed(1420).label(), "1420");
    }

    #[test]
    fn rates_and_ratios() {
        // 1000 cycles of 32 packets of 1000 bytes in one second: 0.256 Gbit/s, 0.032 Mpps.
        let r = Rate::of(1000, 32_000, 32, 1.0);
        assert!((r.gbps - 0.256).abs() < 1e-12 && (r.mpps - 0.032).abs() < 1e-12);
        assert_eq!(Rate::of(1, 1, 1, 0.0), Rate::default());
        let rate = |gbps| Rate { gbps, mpps: 0.0 };
        let s = Samples {
            esp: vec![rate(9.0), rate(4.0), rate(8.0)],
            aead: vec![rate(10.0), rate(8.0), rate(0.0)],
            copy: vec![],
        };
        // Pairwise per round, not median over median: 0.9, 0.5 and 0 (no AEAD figure).
        assert_eq!(s.ratios(), vec![0.9, 0.5, 0.0]);
        let r = s.ratio();
        assert_eq!((r.median, r.min, r.max), (0.5, 0.0, 0.9));
        assert_eq!(s.esp_gbps().median, 8.0);
        assert_eq!(s.copy_gbps(), Spread::default());
    }

    #[test]
    fn packets_have_the_asked_length() {
        for n in [28, 64, 1500] {
            let p = udp_packet(n, 3);
            assert_eq!(p.len(), n);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), n);
        }
    }

    #[test]
    fn fixtures_pass_every_packet_both_backends_every_suite() {
        for backend in Backend::ALL {
            for suite in Suite::ALL {
                for op in Op::ALL {
                    for size in [Size::Fixed(64), Size::Imix] {
                        let mut f = Fixture::new(backend, suite, size, op).unwrap();
                        for _ in 0..3 {
                            assert!(f.esp_cycle(), "{backend:?} {suite} {op:?} {size}");
                            assert!(f.aead_cycle(), "{backend:?} {suite} {op:?} {size}");
                            assert!(f.copy_cycle());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn cbc_bare_buffers_are_whole_blocks_and_their_tags_are_checked() {
        let f = Fixture::new(
            Backend::AwsLc,
            Suite::Aes256CbcSha384,
            Size::Fixed(100),
            Op::Decrypt,
        )
        .unwrap();
        // 100 bytes round up to 112, then the 24-byte ICV.
        let mut buf = f.aead_inputs.get(0).to_vec();
        assert_eq!(buf.len(), 112 + 24);
        assert!(f.bare.apply(true, 1, &mut buf.clone()));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(!f.bare.apply(true, 1, &mut buf), "a bad ICV fails");
    }

    #[test]
    fn run_group_collects_one_sample_per_round_and_backend() {
        let all = run_group(
            &Backend::ALL,
            Suite::Aes128Gcm16,
            Size::Fixed(64),
            Op::Decrypt,
            &Plan {
                rounds: 3,
                dur: Duration::from_millis(1),
                sides: Sides::All,
                options: Options::default(),
            },
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        for s in &all {
            assert_eq!((s.esp.len(), s.aead.len(), s.copy.len()), (3, 3, 3));
            assert!(s.ratios().iter().all(|r| *r > 0.0));
        }
        let v = Versus::of(&all[0], &all[1]);
        assert!(v.aead.median > 0.0 && v.esp.median > 0.0);
    }

    #[test]
    fn options_change_padding_and_aead_length() {
        for op in Op::ALL {
            for pad_align in [4, 16] {
                let opts = Options {
                    pad_align,
                    aead_len: AeadLen::Esp,
                };
                let mut f = Fixture::with(
                    Backend::Ring,
                    Suite::Aes128Gcm16,
                    Size::Fixed(64),
                    op,
                    &opts,
                )
                .unwrap();
                // 64 + 2 bytes of trailer, padded to 68 or 80; then the tag.
                let want = if pad_align == 4 { 68 } else { 80 } + 16;
                assert_eq!(f.aead_inputs.get(0).len(), want, "{op:?} {pad_align}");
                assert!(f.esp_cycle() && f.aead_cycle(), "{op:?} {pad_align}");
            }
        }
    }

    #[test]
    fn versus_is_per_round() {
        let rate = |gbps| Rate { gbps, mpps: 0.0 };
        let a = Samples {
            esp: vec![rate(10.0), rate(20.0)],
            aead: vec![rate(10.0), rate(40.0)],
            copy: vec![],
        };
        let b = Samples {
            esp: vec![rate(12.0), rate(20.0)],
            aead: vec![rate(5.0), rate(40.0)],
            copy: vec![],
        };
        let v = Versus::of(&a, &b);
        assert_eq!((v.esp.min, v.esp.max), (1.0, 1.2));
        assert_eq!((v.aead.min, v.aead.max, v.aead.median), (0.5, 1.0, 0.75));
    }
}
