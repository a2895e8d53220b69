//! One trial: a generator sends stamped packets at a target rate (a token bucket releasing
//! batches about every [`SPACING`], at most 32 packets each) or as fast as it can (batches of
//! 32), a sink counts them and records their latency, both driven from
//! one thread so that the measuring side needs one core.
//!
//! - **Sent** = transmissions the kernel completed (copy mode: the frame was copied into an skb
//!   and handed to the veth). A veth whose peer's ring is full pushes back (the descriptor
//!   stays queued), so the generator never offers more than the path's first hop takes.
//! - **Received** = test packets of this trial that reached the sink, decrypted and checked
//!   when they arrive as ESP. Packets received during the trial window give the receive rate;
//!   those still arriving in the drain period after it (at most [`DRAIN_MAX`]) count towards
//!   the loss.
//! - **Latency** = receive time minus the send time stamped in the payload (one clock read per
//!   batch on each side), nanoseconds, into an HDR histogram.

use super::cpu::{self, CpuTicks};
use super::endpoint::Endpoint;
use super::packet::{read_stamp, stamp, ETH_LEN};
use arrayvec::ArrayVec;
use dataplane::esp::{decrypt_batch, Verdict};
use dataplane::sa::SaDb;
use dataplane::xdp::ring::XdpDesc;
use dataplane::xdp::umem::MAX_BATCH;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Packets per transmit batch (one `sendto` each; copy-mode AF_XDP sends up to 32 per call).
pub const BATCH: usize = 32;
/// Longest drain after the sending window.
pub const DRAIN_MAX: Duration = Duration::from_millis(300);
/// The drain ends early after this long without a packet (and nothing left to send).
const DRAIN_QUIET: Duration = Duration::from_millis(20);
/// Offset of the IP packet in a chunk when the generator encrypts (room for the outer headers).
const ESP_HEAD: u64 = 256;
/// Offset of the Ethernet header in a chunk for plaintext frames.
const PLAIN_HEAD: u64 = 256;
/// Rate-controlled sending releases a batch about this often (at most [`BATCH`] packets, at
/// least one): small bursts, so that latency is not dominated by a packet waiting behind its
/// own burst (32 packets at once add about 32 service times to the last one), and at most
/// 50 000 `sendto` calls a second.
pub const SPACING: f64 = 20e-6;
/// Time's worth of tokens the bucket holds at most (and never fewer than four batches): a
/// generator descheduled for a few milliseconds by the machine's other work catches up, so
/// the offered rate holds on average; a longer stall loses its tokens.
const BURST_SECS: f64 = 0.002;

/// The run's clock: nanoseconds since an origin shared by generator and sink.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What the generator sends.
pub struct Source<'a> {
    /// Ethernet header of every frame.
    pub eth: [u8; ETH_LEN],
    /// One IPv4/UDP packet per length of the size cycle, sent in turn.
    pub templates: Vec<Vec<u8>>,
    /// When set, every packet is encrypted with this database's outbound SA first (ESP
    /// towards the gateway under test).
    pub esp: Option<&'a mut SaDb>,
}

/// What the sink does with what it receives.
pub struct Sink<'a> {
    /// When set, ESP and ESP-in-UDP are decrypted with this database's inbound SAs before the
    /// stamp is read (and checked: a packet that fails is counted as an ESP error).
    pub esp: Option<&'a mut SaDb>,
}

/// How one trial runs.
#[derive(Debug, Clone, Copy)]
pub struct TrialSpec {
    /// Identifier stamped into the packets; the sink ignores every other.
    pub trial: u32,
    /// Packets per second to offer, or `None` for as fast as possible (overload).
    pub rate: Option<f64>,
    /// Length of the sending window.
    pub duration: Duration,
    /// The gateway's core, whose busy time over the window the trial records.
    pub gateway_core: Option<usize>,
    /// The thread keeping that core out of idle, whose time is not the gateway's.
    pub soaker: Option<u32>,
}

/// What one trial measured.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The offered rate asked for (`None`: overload).
    pub target: Option<f64>,
    /// Packets the kernel took from the generator.
    pub sent: u64,
    /// Test packets of this trial received in all (window and drain).
    pub received: u64,
    /// Of those, received within the sending window.
    pub received_in_window: u64,
    /// Plaintext bytes received within the window.
    pub bytes_in_window: u64,
    /// Length of the sending window, seconds.
    pub secs: f64,
    /// Latency of every received packet, nanoseconds.
    pub latency: Histogram<u64>,
    /// Packets the sink could not decrypt or verify.
    pub esp_errors: u64,
    /// Test packets of other (earlier) trials, and other traffic the program took.
    pub foreign: u64,
    /// Packets the generator failed to build (ESP refused them).
    pub gen_errors: u64,
    /// The fraction of the sending window the gateway's core was busy (see [`super::cpu`]).
    pub gateway_busy: Option<f64>,
}

impl Trial {
    fn new(target: Option<f64>) -> Trial {
        Trial {
            target,
            sent: 0,
            received: 0,
            received_in_window: 0,
            bytes_in_window: 0,
            secs: 0.0,
            latency: new_histogram(),
            esp_errors: 0,
            foreign: 0,
            gen_errors: 0,
            gateway_busy: None,
        }
    }

    /// Offered packets per second (what the kernel took from the generator).
    pub fn tx_pps(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }

    /// Received packets per second within the window.
    pub fn rx_pps(&self) -> f64 {
        self.received_in_window as f64 / self.secs.max(1e-9)
    }

    /// CPU time of the gateway's core per packet received within the window, nanoseconds.
    pub fn gateway_ns_per_packet(&self) -> Option<f64> {
        cpu::ns_per_packet(self.gateway_busy?, self.secs, self.received_in_window)
    }

    /// Fraction of the sent packets that never arrived (0 when nothing was sent).
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - (self.received.min(self.sent) as f64 / self.sent as f64)
    }
}

/// An empty latency histogram: 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Sends up to `n` packets (at most one batch): builds them in free chunks, encrypts them if
/// the source says so, queues and kicks. Returns how many the TX ring took.
fn send_batch(
    gen: &mut Endpoint,
    src: &mut Source,
    n: usize,
    trial: u32,
    seq: &mut u64,
    t_ns: u64,
) -> Result<usize, String> {
    let k = n.min(BATCH).min(gen.free.len());
    if k == 0 {
        return Ok(0);
    }
    let mut chunks = [0u64; BATCH];
    let mut lens = [0u32; BATCH];
    for (i, c) in chunks.iter_mut().take(k).enumerate() {
        *c = gen.free.pop().expect("k <= free");
        let t = &src.templates[(*seq as usize + i) % src.templates.len()];
        let buf = gen.umem.chunk_mut(*c).expect("chunk from the free list");
        let off = if src.esp.is_some() {
            ESP_HEAD as usize
        } else {
            buf[PLAIN_HEAD as usize..PLAIN_HEAD as usize + ETH_LEN].copy_from_slice(&src.eth);
            PLAIN_HEAD as usize + ETH_LEN
        };
        let ip = &mut buf[off..off + t.len()];
        ip.copy_from_slice(t);
        stamp(ip, trial, *seq + i as u64, t_ns);
        lens[i] = t.len() as u32;
    }
    *seq += k as u64;
    let mut descs: ArrayVec<XdpDesc, BATCH> = ArrayVec::new();
    match src.esp.as_deref_mut() {
        None => {
            for i in 0..k {
                descs.push(XdpDesc {
                    addr: chunks[i] + PLAIN_HEAD,
                    len: lens[i] + ETH_LEN as u32,
                    options: 0,
                });
            }
        }
        Some(db) => {
            let mut frames = ArrayVec::new();
            gen.umem
                .frames_mut((0..k).map(|i| (chunks[i] + ESP_HEAD, lens[i])), &mut frames)
                .map_err(|e| format!("{}: {e}", gen.name))?;
            let mut verdicts = [Verdict::Pass; BATCH];
            db.encrypt_batch(&mut frames, &mut verdicts[..k]);
            let mut refused = ArrayVec::<u64, BATCH>::new();
            for (i, (f, v)) in frames.iter_mut().zip(verdicts).enumerate() {
                if v == Verdict::Pass && f.push_front(ETH_LEN) {
                    f.data_mut()[..ETH_LEN].copy_from_slice(&src.eth);
                    descs.push(XdpDesc {
                        addr: chunks[i] + f.start() as u64,
                        len: f.len() as u32,
                        options: 0,
                    });
                } else {
                    refused.push(chunks[i]);
                }
            }
            drop(frames);
            gen.free.extend_from_slice(&refused);
            if !refused.is_empty() {
                return Err(format!(
                    "{}: the bench's ESP refused {} packets ({:?})",
                    gen.name,
                    refused.len(),
                    verdicts.iter().find(|v| **v != Verdict::Pass)
                ));
            }
        }
    }
    gen.transmit(&descs)
}

/// Takes one batch off the sink's RX ring, decrypts what is ESP (when the sink has SAs),
/// counts and times this trial's packets, and returns the chunks to the fill ring. Returns
/// the number of frames taken.
fn receive_batch(
    sink: &mut Endpoint,
    rx: &mut Sink,
    trial: u32,
    clock: &Clock,
    in_window: bool,
    acc: &mut Trial,
) -> Result<usize, String> {
    let mut descs = [XdpDesc::default(); MAX_BATCH];
    let n = sink.xsk.rx.consume(&mut descs) as usize;
    if n == 0 {
        return Ok(0);
    }
    let now = clock.now_ns();
    {
        let mut frames = ArrayVec::new();
        sink.umem
            .frames_mut(descs[..n].iter().map(|d| (d.addr, d.len)), &mut frames)
            .map_err(|e| format!("{}: {e}", sink.name))?;
        let mut verdicts = [Verdict::NotEsp; MAX_BATCH];
        for f in frames.iter_mut() {
            if !f.pull_front(ETH_LEN) {
                f.set_len(0);
            }
        }
        if let Some(db) = rx.esp.as_deref_mut() {
            decrypt_batch(db, &mut frames, &mut verdicts[..n]);
        }
        for (f, v) in frames.iter().zip(verdicts) {
            if !matches!(v, Verdict::Pass | Verdict::NotEsp) {
                acc.esp_errors += 1;
                continue;
            }
            match read_stamp(f.data()) {
                Some(s) if s.trial == trial => {
                    acc.received += 1;
                    if in_window {
                        acc.received_in_window += 1;
                        acc.bytes_in_window += s.ip_len as u64;
                    }
                    acc.latency
                        .saturating_record(now.saturating_sub(s.t_ns).max(1));
                }
                _ => acc.foreign += 1,
            }
        }
    }
    let mut chunks = [0u64; MAX_BATCH];
    for (c, d) in chunks.iter_mut().zip(&descs[..n]) {
        *c = sink.chunk_of(d.addr);
    }
    sink.refill(&chunks[..n]);
    Ok(n)
}

/// Drops whatever waits on an endpoint's RX ring and reclaims its completions (between trials,
/// and for the generator's own RX side, which no trial reads).
pub fn flush(ep: &mut Endpoint) {
    ep.reclaim();
    let mut descs = [XdpDesc::default(); MAX_BATCH];
    loop {
        let n = ep.xsk.rx.consume(&mut descs) as usize;
        if n == 0 {
            break;
        }
        let mut chunks = [0u64; MAX_BATCH];
        for (c, d) in chunks.iter_mut().zip(&descs[..n]) {
            *c = ep.chunk_of(d.addr);
        }
        ep.refill(&chunks[..n]);
    }
}

/// Runs one trial from `gen` to `sink`.
pub fn run_trial(
    clock: &Clock,
    gen: &mut Endpoint,
    src: &mut Source,
    sink: &mut Endpoint,
    rx: &mut Sink,
    spec: &TrialSpec,
) -> Result<Trial, String> {
    flush(gen);
    flush(sink);
    let mut t = Trial::new(spec.rate);
    let mut seq = 0u64;
    let batch = match spec.rate {
        Some(r) => ((r * SPACING).round() as usize).clamp(1, BATCH),
        None => BATCH,
    };
    let mut tokens = batch as f64;
    let ticks_start = spec
        .gateway_core
        .and_then(|c| CpuTicks::now(c, spec.soaker));
    let start = Instant::now();
    let end = start + spec.duration;
    let mut last = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        t.sent += gen.reclaim();
        let want = match spec.rate {
            Some(r) => {
                let cap = (r * BURST_SECS).max(4.0 * BATCH as f64);
                tokens = (tokens + (now - last).as_secs_f64() * r).min(cap);
                last = now;
                if tokens >= batch as f64 {
                    batch
                } else {
                    0
                }
            }
            None => BATCH,
        };
        if want > 0 {
            match send_batch(gen, src, want, spec.trial, &mut seq, clock.now_ns()) {
                Ok(k) => tokens -= k as f64,
                Err(e) if src.esp.is_some() => {
                    t.gen_errors += 1;
                    if t.gen_errors == 1 {
                        eprintln!("  {e}");
                    }
                }
                Err(e) => return Err(e),
            }
        } else {
            gen.kick()?;
        }
        while receive_batch(sink, rx, spec.trial, clock, true, &mut t)? == MAX_BATCH {}
    }
    t.secs = spec.duration.as_secs_f64();
    t.gateway_busy = match (
        spec.gateway_core
            .and_then(|c| CpuTicks::now(c, spec.soaker)),
        ticks_start,
    ) {
        (Some(b), Some(a)) => b.busy_since(&a),
        _ => None,
    };
    // Drain: let queued transmissions go and in-flight packets arrive.
    let drain_end = Instant::now() + DRAIN_MAX;
    let mut quiet_since = Instant::now();
    loop {
        t.sent += gen.reclaim();
        gen.kick()?;
        let got = receive_batch(sink, rx, spec.trial, clock, false, &mut t)?;
        let now = Instant::now();
        if got > 0 || gen.in_flight > 0 {
            quiet_since = now;
        }
        if now >= drain_end || now - quiet_since >= DRAIN_QUIET {
            break;
        }
        if got == 0 {
            std::thread::yield_now();
        }
    }
    flush(gen);
    Ok(t)
}
