//! What checksum completion and inner fragmentation cost on the LAN→WAN path: ns per packet of
//! the whole pipeline (L2 strip, TTL, SA lookup, checksum check, MSS clamp, ESP, next hop) on
//! one core, for packets with correct checksums with the check on and off, for packets with
//! partial (offloaded) checksums, and for non-DF packets the tunnel has to fragment. Variants
//! are interleaved round by round; the median of the rounds is reported.

use crate::stats::median;
use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::{Backend, DropReason, Suite};
use dataplane::frame::{Frame, OwnedFrame, DEFAULT_HEADROOM};
use dataplane::sa::{Direction, Mode, SaConfig, SaDb, Selectors};
use dataplane::wire::checksum::{finish, fold, pseudo_header_sum, sum};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use dataplane::worker::fragment::FramePool;
use dataplane::worker::offload;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use serde::Serialize;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Frames per batch (as the worker's).
pub const BATCH: usize = 32;
const FRAME: usize = 2048;

/// Options of `esprit-bench offload`.
#[derive(Debug, Clone, clap::Args)]
pub struct OffloadArgs {
    /// TCP segment sizes (IP total length), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,512,1420")]
    pub sizes: Vec<usize>,
    /// Rounds; each measures every variant once.
    #[arg(long, default_value_t = 9)]
    pub rounds: usize,
    /// Milliseconds per variant per round.
    #[arg(long, default_value_t = 100)]
    pub ms: u64,
    /// A short smoke run (3 rounds of 5 ms): figures are rough.
    #[arg(long)]
    pub quick: bool,
    /// Write the rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

/// One measured variant.
#[derive(Debug, Clone, Serialize)]
pub struct OffloadRow {
    /// What was measured.
    pub what: String,
    /// IP total length of the packets fed in.
    pub size: usize,
    /// Median ns per packet fed in.
    pub ns_per_packet: f64,
    /// Every round's figure.
    pub rounds: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Correct checksums, the check switched off (the pipeline before completion existed).
    CorrectNoCheck,
    /// Correct checksums, the check on (what every packet pays).
    CorrectChecked,
    /// Partial checksums, completed.
    Partial,
    /// `offload::complete` alone on a correct checksum.
    CheckOnly,
    /// `offload::complete` alone on a partial checksum (the full sum).
    CompleteOnly,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::CorrectNoCheck,
        Variant::CorrectChecked,
        Variant::Partial,
        Variant::CheckOnly,
        Variant::CompleteOnly,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::CorrectNoCheck => "pipeline+ESP, correct checksum, check off",
            Variant::CorrectChecked => "pipeline+ESP, correct checksum, check on",
            Variant::Partial => "pipeline+ESP, partial checksum, completed",
            Variant::CheckOnly => "check alone, correct checksum",
            Variant::CompleteOnly => "completion alone, partial checksum",
        }
    }
}

fn sa(dir: Direction, local: &str, remote: &str) -> SaConfig {
    SaConfig {
        spi: 0xbe7c,
        direction: dir,
        mode: Mode::Tunnel,
        suite: Suite::Aes128Gcm16,
        key: KeyMaterial::new((0..20u8).collect()),
        integ_key: None,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::default(),
        remote_ts: Selectors::default(),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// A gateway's pipeline with one outbound tunnel SA and a WAN of `mtu` bytes.
pub fn pipeline(mtu: usize) -> Pipeline {
    let mut db = SaDb::new(Backend::default());
    db.insert(sa(Direction::Out, "10.200.0.1", "10.200.0.2"))
        .expect("SA");
    let mut wan_n = Neighbours::new();
    wan_n.insert("10.200.0.2".parse().unwrap(), [2, 0, 0, 0, 0x0a, 2]);
    let lan = Side {
        mac: [2, 0, 0, 0, 0x1a, 1],
        mtu: 1500,
        ..Default::default()
    };
    let wan = Side {
        mac: [2, 0, 0, 0, 0x0a, 1],
        onlink: vec!["10.200.0.0/24".parse().unwrap()],
        neighbours: wan_n,
        mtu,
        ..Default::default()
    };
    Pipeline::new(db, lan, wan)
}

/// An Ethernet frame holding a TCP ACK segment of IP total length `len` (at least 40), with a
/// correct checksum, or the partial one an offloading host sends; `df` sets don't-fragment.
pub fn tcp_frame(len: usize, partial: bool, df: bool) -> Vec<u8> {
    let len = len.max(40);
    let mut ip = vec![0u8; len];
    Ipv4Repr {
        src: "10.1.0.2".parse().unwrap(),
        dst: "10.2.0.2".parse().unwrap(),
        protocol: proto::TCP,
        payload_len: len - 20,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: df,
    }
    .emit(&mut ip);
    let t = &mut ip[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x10;
    for (i, b) in t[20..].iter_mut().enumerate() {
        *b = (i * 31) as u8;
    }
    let s = pseudo_header_sum(&[10, 1, 0, 2], &[10, 2, 0, 2], proto::TCP, len - 20);
    let c = if partial {
        fold(s)
    } else {
        finish(sum(s, &ip[20..]))
    };
    ip[36..38].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0x1a, 1, 2, 0, 0, 0, 0x1a, 2, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f
}

/// Frames recycled between batches, so measuring allocates nothing.
pub struct RecyclingPool {
    free: Vec<OwnedFrame>,
    sent: Vec<OwnedFrame>,
}

impl RecyclingPool {
    /// A pool of `n` frames.
    pub fn new(n: usize) -> Self {
        RecyclingPool {
            free: (0..n)
                .map(|_| Frame::new(vec![0u8; FRAME], DEFAULT_HEADROOM, FRAME).unwrap())
                .collect(),
            sent: Vec::with_capacity(n),
        }
    }

    /// Frames sent since the last call, returned to the pool; their number.
    pub fn recycle(&mut self) -> usize {
        let n = self.sent.len();
        for f in self.sent.drain(..) {
            let mut f = f;
            f.set_window(DEFAULT_HEADROOM, FRAME);
            self.free.push(f);
        }
        n
    }
}

impl FramePool<Vec<u8>> for RecyclingPool {
    fn take(&mut self) -> Option<OwnedFrame> {
        self.free.pop()
    }

    fn send(&mut self, f: OwnedFrame, _: Port) {
        self.sent.push(f);
    }

    fn wait(&mut self, f: OwnedFrame, _: Port, _: std::net::IpAddr) {
        // The bench's next hops are resolved; a waiting frame would be a bug, recycled.
        self.give_back(f);
    }

    fn give_back(&mut self, mut f: OwnedFrame) {
        f.set_window(DEFAULT_HEADROOM, FRAME);
        self.free.push(f);
    }
}

/// Runs batches of `packet` through `p` for `dur`; returns ns per packet fed in and the
/// number of frames that left (fragments included) per packet.
fn run_pipeline(p: &mut Pipeline, packet: &[u8], dur: Duration) -> (f64, f64) {
    let mut frames: Vec<OwnedFrame> = (0..BATCH)
        .map(|_| {
            OwnedFrame::from_packet(
                packet,
                DEFAULT_HEADROOM,
                FRAME - DEFAULT_HEADROOM - packet.len(),
            )
        })
        .collect();
    let mut out = [Out::Drop(DropReason::Malformed); BATCH];
    let mut pool = RecyclingPool::new(4 * BATCH);
    let (mut packets, mut frames_out) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        for _ in 0..16 {
            for f in frames.iter_mut() {
                f.refill(packet, DEFAULT_HEADROOM);
            }
            p.process_with(Port::Lan, &mut frames, &mut out, &mut pool);
            frames_out += out.iter().filter(|o| matches!(o, Out::Tx(_))).count() as u64;
            frames_out += pool.recycle() as u64;
            packets += BATCH as u64;
        }
        if start.elapsed() >= dur {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (
        secs * 1e9 / packets as f64,
        frames_out as f64 / packets as f64,
    )
}

/// Calls `offload::complete` on copies of `packet` (the IP packet) for `dur`; ns per call.
fn run_complete(packet: &[u8], dur: Duration) -> f64 {
    let mut buf = packet.to_vec();
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < dur {
        for _ in 0..256 {
            // Restore the original field (a partial one is completed by the call).
            buf[36..38].copy_from_slice(&packet[36..38]);
            black_box(offload::complete(black_box(&mut buf)));
            n += 1;
        }
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// Measures every variant at every size, and fragmentation of 1500-byte non-DF packets.
pub fn measure(a: &OffloadArgs) -> Vec<OffloadRow> {
    let (rounds, dur) = if a.quick {
        (3, Duration::from_millis(5))
    } else {
        (a.rounds.max(1), Duration::from_millis(a.ms.max(1)))
    };
    let mut rows = Vec::new();
    for &size in &a.sizes {
        let size = size.clamp(40, 1438);
        let correct = tcp_frame(size, false, true);
        let partial = tcp_frame(size, true, true);
        let mut res: Vec<Vec<f64>> = vec![vec![]; Variant::ALL.len()];
        for r in 0..rounds {
            let mut order = Variant::ALL.to_vec();
            if r % 2 == 1 {
                order.reverse();
            }
            for v in order {
                let ns = match v {
                    Variant::CorrectNoCheck | Variant::CorrectChecked | Variant::Partial => {
                        let mut p = pipeline(1500);
                        p.complete_checksums = v != Variant::CorrectNoCheck;
                        let pkt = if v == Variant::Partial {
                            &partial
                        } else {
                            &correct
                        };
                        run_pipeline(&mut p, pkt, dur).0
                    }
                    Variant::CheckOnly => run_complete(&correct[14..], dur),
                    Variant::CompleteOnly => run_complete(&partial[14..], dur),
                };
                let i = Variant::ALL.iter().position(|x| *x == v).unwrap();
                res[i].push(ns);
            }
        }
        for (v, r) in Variant::ALL.iter().zip(res) {
            rows.push(OffloadRow {
                what: v.label().into(),
                size,
                ns_per_packet: median(&r),
                rounds: r,
            });
        }
    }
    // Inner fragmentation: 1500-byte non-DF packets through a 1438-byte tunnel (two ESP
    // packets each), against the largest packet that fits.
    let mut frag = vec![vec![]; 2];
    for _ in 0..rounds {
        for (i, size) in [1500, 1438].into_iter().enumerate() {
            let mut p = pipeline(1500);
            let pkt = tcp_frame(size, false, false);
            frag[i].push(run_pipeline(&mut p, &pkt, dur).0);
        }
    }
    for ((label, size), r) in [
        ("pipeline+ESP, non-DF packet fragmented in two", 1500),
        ("pipeline+ESP, non-DF packet that fits the tunnel", 1438),
    ]
    .into_iter()
    .zip(frag)
    {
        rows.push(OffloadRow {
            what: label.into(),
            size,
            ns_per_packet: median(&r),
            rounds: r,
        });
    }
    rows
}

/// Runs `esprit-bench offload` and prints the table.
pub fn run(a: OffloadArgs) -> Result<(), String> {
    let rows = measure(&a);
    println!(
        "LAN->WAN, one core, batches of {BATCH}, AES-128-GCM tunnel; ns per packet fed in (median, min of rounds)"
    );
    println!(
        "{:<58} {:>6} {:>10} {:>10}",
        "variant", "bytes", "median", "min"
    );
    for r in &rows {
        println!(
            "{:<58} {:>6} {:>10.1} {:>10.1}",
            r.what,
            r.size,
            r.ns_per_packet,
            crate::stats::min(&r.rounds)
        );
    }
    if let Some(path) = &a.json {
        let j = serde_json::to_vec_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, j).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_forward_and_fragment() {
        let mut p = pipeline(1500);
        let (_, per) = run_pipeline(&mut p, &tcp_frame(512, true, true), Duration::ZERO);
        assert_eq!(per, 1.0);
        assert_eq!(
            p.checksums_completed,
            16 * BATCH as u64,
            "one round of 16 batches"
        );
        let mut p = pipeline(1500);
        let (_, per) = run_pipeline(&mut p, &tcp_frame(1500, false, false), Duration::ZERO);
        assert_eq!(per, 2.0, "every 1500-byte packet leaves as two fragments");
        assert_eq!(p.fragmented, 16 * BATCH as u64);
        assert!(offload::complete(&mut tcp_frame(64, true, true)[14..]));
        assert!(!offload::complete(&mut tcp_frame(64, false, true)[14..]));
    }
}
