//! What one esprit core forwards with 1 to 1,000,000 tunnels: the worker's whole per-packet
//! path over in-memory rings, no kernel in the loop.
//!
//! A [`Rig`] stands in for the AF_XDP sockets of a worker: a real [`Umem`] (the daemon's), a
//! free list of its chunks, an "RX ring" that copies each input Ethernet frame into a free
//! chunk behind the headroom (what the NIC and the XDP redirect hand the worker), then the
//! worker's own steps: [`Umem::frames_mut`], [`Pipeline::process_with`] with a [`UmemPool`],
//! TX descriptors per port, and the chunks of sent and dropped frames back on the free list (the
//! kernel completes every transmission at once).
//!
//! Each tunnel is one SA pair and one site prefix (a /28 in 10.0.0.0/8; the LAN is
//! 172.16.0.0/12), policy-based, with a route for the site prefix to the tunnel's peer so the
//! route table holds one route per tunnel as a route-based setup would. Traffic is spread over
//! the tunnels uniformly or skewed (Zipf, s = 1: a few heavy tunnels, a long tail). Decrypt
//! input is ESP made by each tunnel's twin (the peer's outbound SA, same key and SPI). The
//! bare AES-GCM baseline is [`crate::esp::Fixture::aead_cycle`] on the same sizes, measured
//! interleaved round by round.

use crate::esp::{Fixture, Op as EspOp, Size};
use crate::stats::median;
use arrayvec::ArrayVec;
use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::encap::encrypt_batch;
use dataplane::esp::{Backend, DropReason, Suite, Verdict};
use dataplane::frame::OwnedFrame;
use dataplane::sa::{
    Direction, Mode, OutboundSa, Prefix, RouteAction, RouteTable, SaConfig, SaDb, Selectors,
};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::proto;
use dataplane::worker::handoff;
use dataplane::worker::pool::UmemPool;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use dataplane::xdp::ring::XdpDesc;
use dataplane::xdp::umem::{Umem, UmemConfig, MAX_BATCH};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// UMEM chunk size.
const CHUNK: usize = 2048;
/// Headroom the "kernel" leaves in front of each received frame (the daemon's default).
const HEADROOM: usize = dataplane::frame::DEFAULT_HEADROOM;
/// Chunks in a rig's UMEM.
const CHUNKS: u32 = 1024;
/// LAN hosts that talk to the sites.
const LAN_HOSTS: u32 = 16;
/// Hosts per site (a /28 less network and broadcast).
const SITE_HOSTS: u32 = 14;
/// Our WAN address.
const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The WAN's default gateway.
const WAN_GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// WAN MTU: room for IMIX's 1500-byte packets plus ESP (a jumbo-capable WAN link).
pub const WAN_MTU: usize = 1600;
/// MACs.
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0x1a, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 0xfe];

/// Largest tunnel count (site prefixes are /28s of 10.0.0.0/8: 2^20 of them).
pub const MAX_TUNNELS: usize = 1 << 20;

/// Options of `esprit-bench pipeline`.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Tunnel counts, comma-separated (at most 1,048,576).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,1000,10000,100000,1000000"
    )]
    pub tunnels: Vec<usize>,
    /// Packet sizes (IP packet bytes, or "imix"), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,512,1420,imix")]
    pub sizes: Vec<Size>,
    /// Operations: encrypt, decrypt, mix (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "encrypt,decrypt,mix")]
    pub ops: Vec<Op>,
    /// Traffic spreads: uniform, skewed (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "uniform,skewed")]
    pub spreads: Vec<Spread>,
    /// Rounds; each measures the pipeline and bare AES-GCM once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Milliseconds per measurement per round.
    #[arg(long, default_value_t = 100)]
    pub ms: u64,
    /// Packets per input cycle (the distinct packets fed round and round).
    #[arg(long, default_value_t = 32768)]
    pub cycle: usize,
    /// Batches are warmed (SAs looked up and keys prefetched first) from this many SAs; a
    /// huge value turns warming off, to measure what it gains.
    #[arg(long)]
    pub warm_min_sas: Option<usize>,
    /// Skip the two-worker handoff rows.
    #[arg(long)]
    pub no_handoff: bool,
    /// A smoke run of a few seconds (1 and 1,000 tunnels, 2 rounds of 10 ms): rough figures.
    #[arg(long)]
    pub quick: bool,
    /// Write `{"rows": [...]}` to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Draw the rows as an SVG plot (Mpps by tunnel count, per size, encrypt and decrypt).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Measure nothing: draw `--svg` from the rows of an earlier `--json` FILE.
    #[arg(long, value_name = "FILE", requires = "svg")]
    pub replot: Option<std::path::PathBuf>,
    /// The plot's subtitle (the run's date, machine and commit).
    #[arg(long, default_value = "")]
    pub subtitle: String,
}

/// What the pipeline does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// LAN→WAN: plaintext in, ESP out.
    Encrypt,
    /// WAN→LAN: ESP in, plaintext out.
    Decrypt,
    /// Batches of each, alternating.
    Mix,
}

impl Op {
    /// Label for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
            Op::Mix => "mix",
        }
    }
}

impl std::str::FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "encrypt" => Ok(Op::Encrypt),
            "decrypt" => Ok(Op::Decrypt),
            "mix" => Ok(Op::Mix),
            o => Err(format!("{o:?}: expected encrypt, decrypt or mix")),
        }
    }
}

/// How the traffic spreads over the tunnels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Every tunnel equally likely.
    Uniform,
    /// Zipf with s = 1: tunnel k (from 1) carries a share proportional to 1/k.
    Skewed,
}

impl Spread {
    /// Label for tables and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Spread::Uniform => "uniform",
            Spread::Skewed => "skewed",
        }
    }
}

impl std::str::FromStr for Spread {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "uniform" => Ok(Spread::Uniform),
            "skewed" | "zipf" => Ok(Spread::Skewed),
            o => Err(format!("{o:?}: expected uniform or skewed")),
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Tunnels (SA pairs) installed.
    pub tunnels: usize,
    /// IP packet bytes (64, 512, 1420) or "imix".
    pub size: serde_json::Value,
    /// "encrypt", "decrypt" or "mix".
    pub op: &'static str,
    /// "uniform" or "skewed".
    pub spread: &'static str,
    /// Million packets per second (all workers).
    pub mpps: f64,
    /// Gbit/s of plaintext IP bytes.
    pub gbps: f64,
    /// ns per packet on one core (per worker for the handoff rows).
    pub ns_per_packet: f64,
    /// TSC cycles per packet on one core.
    pub cycles_per_packet: f64,
    /// Per-core packet rate over bare AES-GCM's on the same sizes (median of the rounds'
    /// ratios).
    pub aead_ratio: f64,
    /// Heap bytes per tunnel of the worker's tables (SAs, routes, policy), from the allocator.
    pub bytes_per_tunnel: f64,
    /// Workers (handoff rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Share of the packets that arrive on the worker not owning their SA (handoff rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_fraction: Option<f64>,
    /// Packets dropped because the handoff ring was full, over the packets processed (handoff
    /// rows; not counted in `mpps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_dropped: Option<f64>,
    /// Every round's Mpps.
    pub rounds: Vec<f64>,
}

/// The TSC, for cycles per packet.
#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Heap bytes in use (glibc's mallinfo2: arena and mmapped chunks).
pub fn heap_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        0
    }
}

/// xorshift64*: the same traffic in every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The site prefix of tunnel `i`.
pub fn site(i: usize) -> Ipv4Addr {
    Ipv4Addr::from((10u32 << 24) | ((i as u32) << 4))
}

/// The peer (remote WAN address) of tunnel `i`: 100.64.0.0/10.
pub fn peer(i: usize) -> Ipv4Addr {
    Ipv4Addr::from((100u32 << 24 | 64 << 16) + i as u32)
}

/// A LAN host.
pub fn lan_host(k: u32) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 0, 1 + (k % LAN_HOSTS) as u8)
}

/// Inbound SPI of tunnel `i` (`spi % workers` names the owning worker, as the daemon picks).
pub fn spi_in(i: usize) -> u32 {
    0x1000_0000 + i as u32
}

/// Outbound SPI of tunnel `i`.
pub fn spi_out(i: usize) -> u32 {
    0x2000_0000 + i as u32
}

fn key(i: usize, dir: u8) -> KeyMaterial {
    let mut k: Vec<u8> = (0..20u8).map(|b| b.wrapping_mul(17) ^ dir).collect();
    k[..4].copy_from_slice(&(i as u32).to_be_bytes());
    KeyMaterial::new(k)
}

/// The SA of tunnel `i` in direction `dir`, on our side (`twin = false`) or the peer's.
pub fn sa(i: usize, dir: Direction, twin: bool) -> SaConfig {
    let lan: Prefix = "172.16.0.0/12".parse().expect("literal prefix");
    let site = Prefix::new(site(i).into(), 28).expect("valid prefix");
    // Our outbound SA and the peer's inbound one carry LAN→site traffic.
    let lan_to_site = (dir == Direction::Out) != twin;
    let (spi, k) = if lan_to_site {
        (spi_out(i), key(i, 0x5a))
    } else {
        (spi_in(i), key(i, 0xa5))
    };
    let (ours, theirs): (IpAddr, IpAddr) = (WAN_ADDR.into(), peer(i).into());
    let (local, remote, lts, rts) = match (dir, twin) {
        (Direction::Out, false) => (ours, theirs, lan, site),
        (Direction::In, false) => (ours, theirs, lan, site),
        (Direction::Out, true) => (theirs, ours, site, lan),
        (Direction::In, true) => (theirs, ours, site, lan),
    };
    SaConfig {
        spi,
        direction: dir,
        mode: Mode::Tunnel,
        suite: Suite::Aes128Gcm16,
        key: k,
        integ_key: None,
        local,
        remote,
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::new(vec![lts]),
        remote_ts: Selectors::new(vec![rts]),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// A worker's pipeline holding the tunnels `i < n` with `i % workers == me` (both SAs, and
/// a route for each site prefix), its LAN hosts and WAN gateway resolved.
pub fn gateway(n: usize, workers: usize, me: usize) -> Result<Pipeline, String> {
    let mut db = SaDb::new(Backend::default());
    let mut routes = RouteTable::new();
    for i in (0..n).filter(|i| i % workers == me) {
        db.insert(sa(i, Direction::Out, false))
            .map_err(|e| e.to_string())?;
        db.insert(sa(i, Direction::In, false))
            .map_err(|e| e.to_string())?;
        routes.insert(
            Prefix::new(site(i).into(), 28).expect("valid prefix"),
            RouteAction::Drop,
        );
    }
    let (lan, wan) = sides();
    let mut p = Pipeline::new(db, lan, wan);
    p.set_routes(std::sync::Arc::new(routes));
    Ok(p)
}

/// The LAN and WAN sides of a bench gateway: LAN hosts and the WAN gateway resolved.
pub fn sides() -> (Side, Side) {
    let mut lan_n = Neighbours::new();
    for k in 0..LAN_HOSTS {
        lan_n.insert(lan_host(k).into(), [2, 0, 0, 1, 0, k as u8]);
    }
    let mut wan_n = Neighbours::new();
    wan_n.insert(WAN_GW.into(), GW_MAC);
    let lan = Side {
        mac: LAN_MAC,
        onlink: vec!["172.16.0.0/12".parse().expect("literal prefix")],
        neighbours: lan_n,
        mtu: 1500,
        addrs: vec![IpAddr::V4(Ipv4Addr::new(172, 16, 255, 254))],
        ..Default::default()
    };
    let wan = Side {
        mac: WAN_MAC,
        onlink: vec!["192.0.2.0/24".parse().expect("literal prefix")],
        gateway: Some(WAN_GW.into()),
        neighbours: wan_n,
        mtu: WAN_MTU,
        addrs: vec![WAN_ADDR.into()],
        ..Default::default()
    };
    (lan, wan)
}

/// A LAN host's Ethernet frame carrying an IPv4/UDP packet of `len` bytes to `dst`.
pub fn lan_frame(src: Ipv4Addr, dst: Ipv4Addr, len: usize, ident: u16) -> Vec<u8> {
    ethernet(LAN_MAC, [2, 0, 0, 1, 0, 1], &udp(src, dst, len, ident))
}

/// An IPv4/UDP packet of `len` bytes (at least 28) from `src` to `dst`, DF set.
fn udp(src: Ipv4Addr, dst: Ipv4Addr, len: usize, ident: u16) -> Vec<u8> {
    let len = len.max(28);
    let mut p = vec![0u8; len];
    Ipv4Repr {
        src,
        dst,
        protocol: proto::UDP,
        payload_len: len - 20,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident,
        dont_frag: true,
    }
    .emit(&mut p);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (j, b) in p[28..].iter_mut().enumerate() {
        *b = (j * 7 + ident as usize) as u8;
    }
    p
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    f
}

/// Packets stored back to back.
#[derive(Default)]
pub struct Arena {
    bytes: Vec<u8>,
    at: Vec<(u32, u32)>,
}

impl Arena {
    /// Appends a packet.
    pub fn push(&mut self, p: &[u8]) {
        self.at.push((self.bytes.len() as u32, p.len() as u32));
        self.bytes.extend_from_slice(p);
    }

    /// Packet `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let (o, l) = self.at[i];
        &self.bytes[o as usize..(o + l) as usize]
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// The tunnel of each packet of a cycle of `len` packets over `n` tunnels.
pub fn tunnel_sequence(n: usize, spread: Spread, len: usize, seed: u64) -> Vec<u32> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    match spread {
        Spread::Uniform => (0..len).map(|_| (r.next() % n as u64) as u32).collect(),
        Spread::Skewed => {
            let mut cdf = Vec::with_capacity(n);
            let mut acc = 0.0;
            for k in 1..=n {
                acc += 1.0 / k as f64;
                cdf.push(acc);
            }
            (0..len)
                .map(|_| {
                    let x = r.unit() * acc;
                    cdf.partition_point(|&c| c < x).min(n - 1) as u32
                })
                .collect()
        }
    }
}

/// The input of one (tunnels, spread, size): LAN frames, and the WAN frames (ESP by the
/// twins) of the same plaintexts, with plaintext lengths.
pub struct Traffic {
    /// Plaintext Ethernet frames from LAN hosts to the sites.
    pub lan: Arena,
    /// ESP Ethernet frames from the peers, decrypting to site→LAN packets.
    pub wan: Arena,
    /// Tunnel of each packet.
    pub tunnels: Vec<u32>,
    /// Distinct tunnels of the cycle (their replay windows restart every cycle).
    pub distinct: Vec<u32>,
    /// Plaintext IP bytes per cycle.
    pub bytes: u64,
}

/// Builds a cycle's traffic over `seq` (the tunnel of each packet); `with_wan` makes the ESP
/// packets too (sequence numbers 1.. per tunnel, in cycle order).
pub fn traffic(seq: &[u32], size: Size, with_wan: bool) -> Result<Traffic, String> {
    let lens: Vec<usize> = match size {
        Size::Fixed(n) => vec![n; seq.len()],
        Size::Imix => crate::esp::IMIX_PATTERN
            .iter()
            .copied()
            .cycle()
            .take(seq.len())
            .collect(),
    };
    let mut t = Traffic {
        lan: Arena::default(),
        wan: Arena::default(),
        tunnels: seq.to_vec(),
        distinct: Vec::new(),
        bytes: lens.iter().map(|&l| l as u64).sum(),
    };
    let mut twins: rustc_hash::FxHashMap<u32, OutboundSa> = Default::default();
    for (k, (&i, &len)) in seq.iter().zip(&lens).enumerate() {
        let host = u32::from(site(i as usize)) + 1 + (k as u32 / LAN_HOSTS) % SITE_HOSTS;
        let lan = lan_host(k as u32);
        let ip = udp(lan, host.into(), len, k as u16);
        t.lan.push(&ethernet(LAN_MAC, [2, 0, 0, 1, 0, 1], &ip));
        if !with_wan {
            continue;
        }
        let back = udp(host.into(), lan, len, k as u16);
        let twin = match twins.entry(i) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                t.distinct.push(i);
                v.insert(OutboundSa::new(
                    sa(i as usize, Direction::Out, true),
                    Backend::default(),
                )?)
            }
        };
        let mut f = [OwnedFrame::from_packet(&back, HEADROOM, 256)];
        let mut v = [Verdict::Pass];
        encrypt_batch(twin, &mut f, &mut v);
        if v[0] != Verdict::Pass {
            return Err(format!("twin of tunnel {i}: {:?}", v[0]));
        }
        t.wan.push(&ethernet(WAN_MAC, GW_MAC, f[0].data()));
    }
    Ok(t)
}

/// A worker's AF_XDP side over memory: its UMEM, free list and TX rings.
pub struct Rig {
    umem: Umem,
    free: Vec<u64>,
    /// Descriptors queued for transmission since the last [`Rig::complete`], per port.
    pub tx: [Vec<XdpDesc>; 2],
    /// Frames dropped (or left waiting) by the pipeline.
    pub dropped: u64,
}

impl Rig {
    /// A UMEM of 1024 chunks of 2 KiB, all free.
    pub fn new() -> Result<Rig, String> {
        let umem = Umem::new(UmemConfig {
            frames: CHUNKS,
            frame_size: CHUNK as u32,
            headroom: HEADROOM as u32,
        })
        .map_err(|e| e.to_string())?;
        Ok(Rig {
            free: (0..CHUNKS).map(|i| umem.chunk_addr(i)).collect(),
            umem,
            tx: [Vec::with_capacity(4096), Vec::with_capacity(4096)],
            dropped: 0,
        })
    }

    /// Receives up to a batch on `port`: `fill` writes each frame into a free chunk behind the
    /// headroom and returns its length (`None`: no more), as the NIC does; frames `keep`
    /// refuses (handed to another worker) give their chunk back at once. The rest run
    /// through the pipeline; frames to send are queued on `tx`. Returns the frames processed.
    pub fn batch(
        &mut self,
        p: &mut Pipeline,
        port: Port,
        mut fill: impl FnMut(&mut [u8]) -> Option<usize>,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut descs: ArrayVec<(u64, u32), MAX_BATCH> = ArrayVec::new();
        while !descs.is_full() {
            let Some(&base) = self.free.last() else { break };
            let Some(chunk) = self.umem.chunk_mut(base) else {
                break;
            };
            let Some(len) = fill(&mut chunk[HEADROOM..]) else {
                break;
            };
            if !keep(&chunk[HEADROOM..HEADROOM + len]) {
                continue;
            }
            self.free.pop();
            descs.push((base + HEADROOM as u64, len as u32));
        }
        let n = descs.len();
        if n == 0 {
            return 0;
        }
        let Rig { umem, free, tx, .. } = self;
        let mut fr = ArrayVec::new();
        let Ok(area) = umem.frames_mut(descs.iter().copied(), &mut fr) else {
            free.extend(descs.iter().map(|d| d.0 - HEADROOM as u64));
            return 0;
        };
        let mut outs = [Out::Drop(DropReason::Malformed); MAX_BATCH];
        let mut pool = UmemPool::new(area.spares(free));
        p.process_with(port, &mut fr, &mut outs[..n], &mut pool);
        let mask = !(pool.frame_size() - 1);
        let (extra, waits) = pool.into_parts();
        for (i, f) in fr.iter().enumerate() {
            let base = descs[i].0 & mask;
            let d = XdpDesc {
                addr: base + f.start() as u64,
                len: f.len() as u32,
                options: 0,
            };
            match outs[i] {
                Out::Tx(to) => tx[to as usize].push(d),
                Out::Drop(_) | Out::Wait(..) | Out::Host(_) => {
                    free.push(base);
                    self.dropped += 1;
                }
            }
        }
        for (to, d) in extra {
            tx[to as usize].push(d);
        }
        for (_, _, d) in waits {
            free.push(d.addr & mask);
            self.dropped += 1;
        }
        n
    }

    /// The bytes of a queued transmission.
    pub fn frame(&mut self, d: &XdpDesc) -> &[u8] {
        let off = (d.addr % CHUNK as u64) as usize;
        let chunk = self
            .umem
            .chunk_mut(d.addr)
            .expect("queued frames are in the UMEM");
        &chunk[off..off + d.len as usize]
    }

    /// The "kernel" sends everything queued and completes it: the chunks return to the free
    /// list. Returns the frames sent.
    pub fn complete(&mut self) -> usize {
        let mut n = 0;
        for q in self.tx.iter_mut() {
            n += q.len();
            self.free
                .extend(q.drain(..).map(|d| d.addr & !(CHUNK as u64 - 1)));
        }
        n
    }
}

/// A `fill` for [`Rig::batch`] that copies the packets `range` of `a`.
pub fn copier(
    a: &Arena,
    range: std::ops::Range<usize>,
) -> impl FnMut(&mut [u8]) -> Option<usize> + '_ {
    let mut range = range;
    move |chunk| {
        let f = a.get(range.next()?);
        chunk[..f.len()].copy_from_slice(f);
        Some(f.len())
    }
}

/// One configuration's fixture: the gateway, its rig, the traffic.
struct Run<'t> {
    p: &'t mut Pipeline,
    rig: &'t mut Rig,
    t: &'t Traffic,
}

impl Run<'_> {
    /// Restarts the replay windows of the cycle's tunnels (outside the timed part).
    fn rewind(&mut self) {
        for &i in &self.t.distinct {
            if let Some(sa) = self.p.sadb.inbound_mut(spi_in(i as usize), WAN_ADDR.into()) {
                sa.replay.reset(0);
            }
        }
    }

    /// Runs whole cycles for about `dur`: (packets, TSC cycles, ns) of the timed part, and
    /// frames that left.
    fn measure(&mut self, op: Op, dur: Duration) -> (u64, u64, f64, u64) {
        let n = self.t.lan.len();
        let (mut packets, mut cycles, mut ns, mut sent) = (0u64, 0u64, 0f64, 0u64);
        loop {
            if op != Op::Encrypt {
                self.rewind();
            }
            let (t0, c0) = (Instant::now(), tsc());
            for base in (0..n).step_by(MAX_BATCH) {
                let end = (base + MAX_BATCH).min(n);
                let (lan, wan) = (&self.t.lan, &self.t.wan);
                if op != Op::Decrypt {
                    let fill = copier(lan, base..end);
                    packets += self.rig.batch(self.p, Port::Lan, fill, |_| true) as u64;
                }
                if op != Op::Encrypt {
                    let fill = copier(wan, base..end);
                    packets += self.rig.batch(self.p, Port::Wan, fill, |_| true) as u64;
                }
                sent += self.rig.complete() as u64;
            }
            cycles += tsc().wrapping_sub(c0);
            ns += t0.elapsed().as_secs_f64() * 1e9;
            if ns >= dur.as_secs_f64() * 1e9 {
                break;
            }
        }
        (packets, cycles, ns, sent)
    }
}

/// The bare AES-GCM baseline for a size: ns per packet of encrypt and decrypt, run for `dur`.
struct Baseline {
    enc: Fixture,
    dec: Fixture,
}

impl Baseline {
    fn new(size: Size) -> Result<Self, String> {
        let b = Backend::default();
        Ok(Baseline {
            enc: Fixture::new(b, Suite::Aes128Gcm16, size, EspOp::Encrypt)?,
            dec: Fixture::new(b, Suite::Aes128Gcm16, size, EspOp::Decrypt)?,
        })
    }

    fn ns_per_packet(&mut self, op: Op, dur: Duration) -> f64 {
        let one = |f: &mut Fixture| {
            let (mut n, t0) = (0u64, Instant::now());
            while t0.elapsed() < dur {
                f.aead_cycle();
                n += f.cycle_packets() as u64;
            }
            t0.elapsed().as_secs_f64() * 1e9 / n as f64
        };
        match op {
            Op::Encrypt => one(&mut self.enc),
            Op::Decrypt => one(&mut self.dec),
            Op::Mix => (one(&mut self.enc) + one(&mut self.dec)) / 2.0,
        }
    }
}

fn size_value(s: Size) -> serde_json::Value {
    match s {
        Size::Fixed(n) => serde_json::Value::from(n),
        Size::Imix => serde_json::Value::from("imix"),
    }
}

/// Measures every (tunnels, spread, size, op), then the handoff rows; `say` gets progress.
pub fn measure(a: &PipelineArgs, say: &mut dyn FnMut(&str)) -> Result<Vec<Row>, String> {
    let (rounds, dur, cycle) = if a.quick {
        (2, Duration::from_millis(10), 2048)
    } else {
        (
            a.rounds.max(1),
            Duration::from_millis(a.ms.max(1)),
            a.cycle.max(MAX_BATCH),
        )
    };
    let tunnel_counts: Vec<usize> = if a.quick {
        vec![1, 1000]
    } else {
        a.tunnels.clone()
    };
    let mut rows = Vec::new();
    let mut baselines: Vec<(Size, Baseline)> = Vec::new();
    for &s in &a.sizes {
        baselines.push((s, Baseline::new(s)?));
    }
    let mut rig = Rig::new()?;
    for &n in &tunnel_counts {
        if n == 0 || n > MAX_TUNNELS {
            return Err(format!("{n} tunnels: expected 1..={MAX_TUNNELS}"));
        }
        let before = heap_bytes();
        let t0 = Instant::now();
        let mut p = gateway(n, 1, 0)?;
        if let Some(w) = a.warm_min_sas {
            p.warm_min_sas = w;
        }
        let bytes_per_tunnel = heap_bytes().saturating_sub(before) as f64 / n as f64;
        say(&format!(
            "{n} tunnels: tables built in {:.1} s, {:.0} bytes per tunnel",
            t0.elapsed().as_secs_f64(),
            bytes_per_tunnel
        ));
        for &spread in &a.spreads {
            let seq = tunnel_sequence(n, spread, cycle, n as u64);
            for (size, base) in baselines.iter_mut() {
                let with_wan = a.ops.iter().any(|o| *o != Op::Encrypt);
                let t = traffic(&seq, *size, with_wan)?;
                for &op in &a.ops {
                    let mut mpps = Vec::new();
                    let mut ratios = Vec::new();
                    let (mut ns_all, mut cyc_all, mut pk_all) = (0.0, 0u64, 0u64);
                    for _ in 0..rounds {
                        let mut run = Run {
                            p: &mut p,
                            rig: &mut rig,
                            t: &t,
                        };
                        let (pk, cyc, ns, _) = run.measure(op, dur);
                        let aead_ns = base.ns_per_packet(op, dur);
                        let per = ns / pk as f64;
                        mpps.push(1e3 / per);
                        ratios.push(aead_ns / per);
                        ns_all += ns;
                        cyc_all += cyc;
                        pk_all += pk;
                    }
                    if rig.dropped > 0 {
                        return Err(format!(
                            "{n} tunnels {} {size} {}: {} frames dropped",
                            spread.label(),
                            op.label(),
                            rig.dropped
                        ));
                    }
                    let m = median(&mpps);
                    let per_packet_bytes = t.bytes as f64 / t.lan.len() as f64;
                    let row = Row {
                        tunnels: n,
                        size: size_value(*size),
                        op: op.label(),
                        spread: spread.label(),
                        mpps: m,
                        gbps: m * 1e6 * per_packet_bytes * 8.0 / 1e9,
                        ns_per_packet: 1e3 / m,
                        cycles_per_packet: cyc_all as f64 / pk_all as f64,
                        aead_ratio: median(&ratios),
                        bytes_per_tunnel,
                        workers: None,
                        handoff_fraction: None,
                        handoff_dropped: None,
                        rounds: mpps,
                    };
                    let _ = ns_all;
                    say(&line(&row));
                    rows.push(row);
                }
            }
        }
    }
    if !a.no_handoff {
        for (size, base) in baselines.iter_mut() {
            for op in [Op::Encrypt, Op::Decrypt] {
                for fraction in [0.0, 0.5, 1.0] {
                    let mut mpps = Vec::new();
                    let mut ratios = Vec::new();
                    let (mut all, mut dropped) = (0u64, 0u64);
                    for _ in 0..rounds {
                        let (pk, lost, secs) = handoff_run(*size, op, fraction, dur, cycle)?;
                        all += pk;
                        dropped += lost;
                        let aead_ns = base.ns_per_packet(op, dur);
                        let m = pk as f64 / secs / 1e6;
                        mpps.push(m);
                        ratios.push(aead_ns / (2e3 / m));
                    }
                    let m = median(&mpps);
                    let per_packet_bytes = match size {
                        Size::Fixed(n) => *n as f64,
                        Size::Imix => {
                            let p = crate::esp::IMIX_PATTERN;
                            p.iter().sum::<usize>() as f64 / p.len() as f64
                        }
                    };
                    let row = Row {
                        tunnels: 2,
                        size: size_value(*size),
                        op: op.label(),
                        spread: Spread::Uniform.label(),
                        mpps: m,
                        gbps: m * 1e6 * per_packet_bytes * 8.0 / 1e9,
                        ns_per_packet: 2e3 / m,
                        cycles_per_packet: f64::NAN,
                        aead_ratio: median(&ratios),
                        bytes_per_tunnel: f64::NAN,
                        workers: Some(2),
                        handoff_fraction: Some(fraction),
                        handoff_dropped: Some(dropped as f64 / all.max(1) as f64),
                        rounds: mpps,
                    };
                    say(&line(&row));
                    rows.push(row);
                }
            }
        }
    }
    Ok(rows)
}

/// Two workers on two threads, one tunnel each (tunnel 0 on worker 0, 1 on worker 1); each
/// receives its own traffic, of which `fraction` belongs to the other's tunnel and is handed
/// over its SPSC ring. Returns the packets both processed, those dropped because a ring was
/// full, and the seconds it took.
fn handoff_run(
    size: Size,
    op: Op,
    fraction: f64,
    dur: Duration,
    cycle: usize,
) -> Result<(u64, u64, f64), String> {
    let (p01, c01) = handoff::channel(1024);
    let (p10, c10) = handoff::channel(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (me, out, inbox) in [(0usize, p01, c10), (1, p10, c01)] {
        let mut r = Rng(7 + me as u64);
        let seq: Vec<u32> = (0..cycle)
            .map(|_| {
                let other = r.unit() < fraction;
                (me as u32) ^ u32::from(other)
            })
            .collect();
        let t = traffic(&seq, size, op == Op::Decrypt)?;
        let mut p = gateway(2, 2, me)?;
        let mut policies = dataplane::sa::spd::Policies::default();
        for i in 0..2 {
            policies.add(&sa(i, Direction::Out, false), i);
        }
        let stop = stop.clone();
        let done = done.clone();
        let lost = lost.clone();
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut rig = Rig::new()?;
            let (mut out, mut inbox) = (out, inbox);
            let port = if op == Op::Encrypt {
                Port::Lan
            } else {
                Port::Wan
            };
            let input = if op == Op::Encrypt { &t.lan } else { &t.wan };
            let (mut count, mut dropped) = (0u64, 0u64);
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                if k == 0 && op == Op::Decrypt {
                    for i in 0..2 {
                        if let Some(sa) = p.sadb.inbound_mut(spi_in(i), WAN_ADDR.into()) {
                            sa.replay.reset(0);
                        }
                    }
                }
                let end = (k + MAX_BATCH).min(input.len());
                let mut full = 0u64;
                count += rig.batch(&mut p, port, copier(input, k..end), |f| {
                    let owner = steer(&policies, port, f);
                    if owner == me {
                        return true;
                    }
                    full += u64::from(!out.push(port, f));
                    false
                }) as u64;
                out.publish();
                dropped += full;
                k = if end == input.len() { 0 } else { end };
                // The other worker's packets, copied out of the ring into our chunks.
                count += rig.batch(
                    &mut p,
                    port,
                    |chunk| inbox.pop_into(chunk).map(|(_, len)| len),
                    |_| true,
                ) as u64;
                inbox.release();
                rig.complete();
            }
            done.fetch_add(count, Ordering::Relaxed);
            lost.fetch_add(dropped, Ordering::Relaxed);
            Ok(())
        }));
    }
    let t0 = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "worker panicked".to_string())??;
    }
    Ok((
        done.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    ))
}

/// Which worker owns a frame's SA: by SPI on the WAN, by the policy table on the LAN.
fn steer(policies: &dataplane::sa::spd::Policies, port: Port, frame: &[u8]) -> usize {
    let owner = match port {
        Port::Wan => dataplane::wire::peek::esp_spi(frame).map(|spi| handoff::owner_of_spi(spi, 2)),
        Port::Lan => {
            dataplane::wire::peek::ip_addrs(frame).and_then(|(s, d)| policies.owner_of(s, d))
        }
    };
    owner.unwrap_or(0)
}

fn line(r: &Row) -> String {
    let extra = match (r.workers, r.handoff_fraction) {
        (Some(w), Some(f)) => format!(
            "  {w} workers, {:.0}% handed off, ring-full refusals {:.2} per forwarded packet",
            f * 100.0,
            r.handoff_dropped.unwrap_or(0.0)
        ),
        _ => String::new(),
    };
    format!(
        "{:>8} {:>5} {:<8} {:<8} {:>7.3} Mpps {:>7.2} Gbit/s {:>7.1} ns {:>7} cyc  aead x{:.2}  {:>6} B/tunnel{extra}",
        r.tunnels,
        r.size.to_string().trim_matches('"'),
        r.op,
        r.spread,
        r.mpps,
        r.gbps,
        r.ns_per_packet,
        figure(r.cycles_per_packet),
        r.aead_ratio,
        figure(r.bytes_per_tunnel),
    )
}

/// A whole-number figure for the table, or "–" where the row has none (the handoff rows'
/// cycles and bytes per tunnel).
fn figure(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "–".to_string()
    }
}

/// Runs `esprit-bench pipeline`: prints a line per row, writes the JSON if asked.
pub fn run(a: PipelineArgs) -> Result<(), String> {
    let rows: Vec<serde_json::Value> = match &a.replot {
        Some(from) => {
            let text =
                std::fs::read_to_string(from).map_err(|e| format!("{}: {e}", from.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", from.display()))?;
            v["rows"]
                .as_array()
                .cloned()
                .ok_or_else(|| format!("{}: no \"rows\" array", from.display()))?
        }
        None => {
            println!(
                "worker pipeline over memory, one core per worker, batches of {MAX_BATCH}, AES-128-GCM tunnels"
            );
            let rows = measure(&a, &mut |s| println!("{s}"))?;
            if let Some(path) = &a.json {
                let j = serde_json::to_vec_pretty(&serde_json::json!({ "rows": rows }))
                    .map_err(|e| e.to_string())?;
                std::fs::write(path, j).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            rows.iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
    };
    if let Some(path) = &a.svg {
        std::fs::write(path, crate::pipeline_svg::plot(&rows, &a.subtitle))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
