//! `esprit-bench routes`: the route table with a full Internet table (1M IPv4, 200k IPv6
//! prefixes by default) — build time, memory, lookup cost against the hash-per-length table
//! esprit had before ([`crate::route_hash`]), the cost of publishing a copy to the workers and of
//! a withdrawal; convergence through the kernel (routes installed with `ip -batch` in a
//! namespace, followed by the dataplane's own route follower: [`crate::routes_kernel`]); and
//! the worker pipeline's forwarding cost with the full table against an (almost) empty one.
//!
//! Prefix lengths are distributed like a real BGP table: IPv4 mostly /24, many /16–/23, few
//! shorter and a handful longer than /24; IPv6 mostly /48, many /32–/44, inside a pool of /32
//! allocations as registries hand them out.

use crate::pipeline::{copier, heap_bytes, lan_frame, lan_host, peer, sa, sides, Arena, Rig, Rng};
use crate::route_hash::HashPerLength;
use crate::stats::median;
use dataplane::esp::Backend;
use dataplane::sa::{Direction, Prefix, RouteAction, RouteTable, SaDb, Selectors};
use dataplane::worker::{Pipeline, Port};
use dataplane::xdp::umem::MAX_BATCH;
use serde::Serialize;
use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `esprit-bench routes`.
#[derive(Debug, Clone, clap::Args)]
pub struct RoutesArgs {
    /// IPv4 prefixes.
    #[arg(long, default_value_t = 1_000_000)]
    pub v4: usize,
    /// IPv6 prefixes.
    #[arg(long, default_value_t = 200_000)]
    pub v6: usize,
    /// Rounds of the lookup and forwarding measurements (median taken).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Milliseconds per forwarding measurement per round.
    #[arg(long, default_value_t = 200)]
    pub ms: u64,
    /// Routes withdrawn in the withdrawal measurements.
    #[arg(long, default_value_t = 10_000)]
    pub withdraw: usize,
    /// Skip the convergence through the kernel (it needs root; it takes
    /// /tmp/esprit-netns.lock itself, so do not run this under `flock` of that file).
    #[arg(long)]
    pub no_kernel: bool,
    /// A smoke run (100k IPv4, 20k IPv6, 2k withdrawn, one short round): rough figures.
    #[arg(long)]
    pub quick: bool,
    /// Write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
}

/// Weights (per 10,000) of IPv4 prefix lengths.
const V4_LENS: &[(u8, u32)] = &[
    (8, 2),
    (9, 3),
    (10, 5),
    (11, 8),
    (12, 15),
    (13, 20),
    (14, 22),
    (15, 25),
    (16, 200),
    (17, 150),
    (18, 200),
    (19, 350),
    (20, 450),
    (21, 500),
    (22, 1100),
    (23, 900),
    (24, 6000),
    (25, 10),
    (26, 8),
    (27, 6),
    (28, 8),
    (29, 6),
    (30, 4),
    (31, 1),
    (32, 7),
];

/// Weights (per 1,000) of IPv6 prefix lengths.
const V6_LENS: &[(u8, u32)] = &[
    (20, 4),
    (24, 4),
    (28, 6),
    (29, 30),
    (32, 140),
    (33, 8),
    (34, 8),
    (35, 8),
    (36, 30),
    (37, 8),
    (38, 8),
    (40, 60),
    (42, 20),
    (44, 80),
    (45, 20),
    (46, 30),
    (47, 20),
    (48, 500),
    (56, 8),
    (64, 8),
];

fn pick_len(r: &mut Rng, table: &[(u8, u32)]) -> u8 {
    let total: u32 = table.iter().map(|t| t.1).sum();
    let mut x = (r.next() % u64::from(total)) as u32;
    for &(l, w) in table {
        if x < w {
            return l;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// `n` distinct IPv4 prefixes distributed like a BGP table (unicast space, no 10/8, 127/8).
pub fn internet_v4(n: usize, seed: u64) -> Vec<Prefix> {
    let mut r = Rng(0x5eed_0004 ^ seed);
    let mut seen = HashSet::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let len = pick_len(&mut r, V4_LENS);
        let first = 1 + (r.next() % 223) as u32;
        if first == 10 || first == 127 {
            continue;
        }
        let a = (first << 24) | (r.next() as u32 & 0x00ff_ffff);
        let p = Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len).expect("length <= 32");
        if seen.insert(p) {
            v.push(p);
        }
    }
    v
}

/// `n` distinct IPv6 prefixes distributed like a BGP table: those longer than /32 inside a
/// pool of `n / 5` /32 allocations in 2001::/16–2c0f::/16.
pub fn internet_v6(n: usize, seed: u64) -> Vec<Prefix> {
    let mut r = Rng(0x5eed_0006 ^ seed);
    let pool: Vec<u128> = (0..(n / 5).max(1))
        .map(|_| {
            let top = 0x2001 + (r.next() % (0x2c0f - 0x2001)) as u128;
            (top << 112) | (u128::from(r.next() as u16) << 96)
        })
        .collect();
    let mut seen = HashSet::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let len = pick_len(&mut r, V6_LENS);
        let rand = (u128::from(r.next()) << 64) | u128::from(r.next());
        let a = if len > 32 {
            pool[(r.next() % pool.len() as u64) as usize] | (rand >> 32)
        } else {
            (0x2001u128 << 112) + (rand >> 20)
        };
        let p = Prefix::new(IpAddr::V6(Ipv6Addr::from(a)), len).expect("length <= 128");
        if seen.insert(p) {
            v.push(p);
        }
    }
    v
}

/// Destinations: nine in ten inside a random prefix of `prefixes` (traffic goes to announced
/// space), the rest anywhere in the family's space.
pub fn destinations(prefixes: &[Prefix], n: usize, seed: u64) -> Vec<IpAddr> {
    let mut r = Rng(0xde57 ^ seed);
    (0..n)
        .map(|k| {
            let rand = (u128::from(r.next()) << 64) | u128::from(r.next());
            let p = prefixes[(r.next() % prefixes.len() as u64) as usize];
            match p.addr() {
                IpAddr::V4(a) => {
                    let host = u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
                    let x = rand as u32;
                    IpAddr::V4(
                        if k % 10 == 9 {
                            x
                        } else {
                            u32::from(a) | (x & host)
                        }
                        .into(),
                    )
                }
                IpAddr::V6(a) => {
                    let host = u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
                    let x = if k % 10 == 9 {
                        (0x2u128 << 124) | (rand >> 4)
                    } else {
                        u128::from(a) | (rand & host)
                    };
                    IpAddr::V6(x.into())
                }
            }
        })
        .collect()
}

/// Tunnel peers the routes point at.
const PEERS: usize = 4;

/// The action of route `k`: one of the peers, one route in sixteen an equal-cost pair.
fn action_of(t: &mut RouteTable, k: usize) -> RouteAction {
    let a = IpAddr::V4(peer(k % PEERS));
    if k % 16 == 15 {
        let b = IpAddr::V4(peer((k + 1) % PEERS));
        t.multipath(&[a, b]).expect("two peers")
    } else {
        RouteAction::Tunnel(a)
    }
}

/// Figures of the table itself.
#[derive(Debug, Clone, Serialize)]
pub struct TableFigures {
    /// IPv4 and IPv6 prefixes.
    pub v4: usize,
    /// IPv6 prefixes.
    pub v6: usize,
    /// Build time (every prefix inserted one by one), ms: esprit, hash per length.
    pub build_ms: [f64; 2],
    /// Heap bytes the table holds (by capacity), MB: esprit, hash per length.
    pub memory_mb: [f64; 2],
    /// Heap growth while building, MB (allocator's figure): esprit, hash per length.
    pub heap_mb: [f64; 2],
    /// Trie nodes below the roots: IPv4 groups, IPv6 nodes.
    pub trie_nodes: [usize; 2],
    /// Lookup ns, random destinations over the whole table (1M of them): IPv4 esprit, IPv4
    /// hash, IPv6 esprit, IPv6 hash.
    pub lookup_random_ns: [f64; 4],
    /// Lookup ns, 256 destinations looked up again and again (cache-hot), same order.
    pub lookup_hot_ns: [f64; 4],
    /// Copying the whole table (what publishing a new table to the workers by copy costs), ms.
    pub clone_ms: f64,
    /// Withdrawing `withdraw` prefixes then announcing them again, µs per change: esprit, hash.
    pub change_us: [f64; 2],
    /// Prefixes withdrawn and announced again.
    pub withdraw: usize,
}

fn lookup_ns<T>(dests: &[IpAddr], rounds: usize, lookup: impl Fn(IpAddr) -> Option<T>) -> f64 {
    let mut v = Vec::new();
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        let mut hits = 0usize;
        for &d in dests {
            hits += usize::from(lookup(black_box(d)).is_some());
        }
        black_box(hits);
        v.push(t0.elapsed().as_secs_f64() * 1e9 / dests.len() as f64);
    }
    median(&v)
}

fn hot(dests: &[IpAddr], n: usize) -> Vec<IpAddr> {
    dests.iter().copied().take(256).cycle().take(n).collect()
}

/// The full table (v4 and v6 prefixes, the actions of [`action_of`]) and its build time.
pub fn build(v4: &[Prefix], v6: &[Prefix]) -> (RouteTable, Duration) {
    let t0 = Instant::now();
    let mut t = RouteTable::new();
    for (k, &p) in v4.iter().chain(v6).enumerate() {
        let a = action_of(&mut t, k);
        t.insert(p, a);
    }
    (t, t0.elapsed())
}

/// Measures the table: build, memory, lookups, copy, withdrawals.
pub fn table(a: &RoutesArgs, v4: &[Prefix], v6: &[Prefix]) -> TableFigures {
    let h0 = heap_bytes();
    let (t, new_build) = build(v4, v6);
    let new_heap = heap_bytes().saturating_sub(h0);
    let h1 = heap_bytes();
    let t0 = Instant::now();
    let mut old = HashPerLength::default();
    {
        let mut scratch = RouteTable::new();
        for (k, &p) in v4.iter().chain(v6).enumerate() {
            old.insert(p, action_of(&mut scratch, k));
        }
    }
    let old_build = t0.elapsed();
    let old_heap = heap_bytes().saturating_sub(h1);
    let n = if a.quick { 200_000 } else { 1_000_000 };
    let d4 = destinations(v4, n, 4);
    let d6 = destinations(v6, n, 6);
    for d in d4.iter().chain(&d6).step_by(97) {
        assert_eq!(
            t.lookup(*d),
            old.lookup(*d),
            "the two tables disagree on {d}"
        );
    }
    let r = a.rounds;
    let lookup_random_ns = [
        lookup_ns(&d4, r, |d| t.lookup(d)),
        lookup_ns(&d4, r, |d| old.lookup(d)),
        lookup_ns(&d6, r, |d| t.lookup(d)),
        lookup_ns(&d6, r, |d| old.lookup(d)),
    ];
    let (h4, h6) = (hot(&d4, n), hot(&d6, n));
    let lookup_hot_ns = [
        lookup_ns(&h4, r, |d| t.lookup(d)),
        lookup_ns(&h4, r, |d| old.lookup(d)),
        lookup_ns(&h6, r, |d| t.lookup(d)),
        lookup_ns(&h6, r, |d| old.lookup(d)),
    ];
    let t0 = Instant::now();
    let copy = black_box(t.clone());
    let clone_ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(copy);
    let withdraw: Vec<(usize, Prefix)> = v4
        .iter()
        .chain(v6)
        .copied()
        .enumerate()
        .step_by(((v4.len() + v6.len()) / a.withdraw.max(1)).max(1))
        .take(a.withdraw)
        .collect();
    let mut t = t;
    let t0 = Instant::now();
    for &(_, p) in &withdraw {
        t.remove(p);
    }
    for &(k, p) in &withdraw {
        let act = action_of(&mut t, k);
        t.insert(p, act);
    }
    let new_change = t0.elapsed();
    let t0 = Instant::now();
    let mut scratch = RouteTable::new();
    for &(_, p) in &withdraw {
        old.remove(p);
    }
    for &(k, p) in &withdraw {
        old.insert(p, action_of(&mut scratch, k));
    }
    let old_change = t0.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (2 * withdraw.len()).max(1) as f64;
    let mb = |b: usize| b as f64 / 1e6;
    let nodes = t.trie_nodes();
    TableFigures {
        v4: v4.len(),
        v6: v6.len(),
        build_ms: [new_build.as_secs_f64() * 1e3, old_build.as_secs_f64() * 1e3],
        memory_mb: [mb(t.memory_bytes()), mb(old.memory_bytes())],
        heap_mb: [mb(new_heap as usize), mb(old_heap as usize)],
        trie_nodes: [nodes.0, nodes.1],
        lookup_random_ns,
        lookup_hot_ns,
        clone_ms,
        change_us: [per(new_change), per(old_change)],
        withdraw: withdraw.len(),
    }
}

/// Forwarding figures: the worker pipeline's LAN→WAN cost with the full table and with four
/// covering routes only.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardFigures {
    /// IPv4 packet bytes.
    pub size: usize,
    /// ns per packet with the four /2 routes only.
    pub empty_ns: f64,
    /// ns per packet with the full table (and the four /2s).
    pub full_ns: f64,
    /// full_ns / empty_ns.
    pub ratio: f64,
    /// Share of the packets sent (encrypted) in the full-table run.
    pub sent: f64,
}

/// A pipeline with `PEERS` route-based tunnels (0.0.0.0/0 SAs) and route table `routes`.
fn route_gateway(routes: Arc<RouteTable>) -> Result<Pipeline, String> {
    let any: Prefix = "0.0.0.0/0".parse().expect("literal prefix");
    let mut db = SaDb::new(Backend::default());
    for i in 0..PEERS {
        let mut s = sa(i, Direction::Out, false);
        s.local_ts = Selectors::new(vec![any]);
        s.remote_ts = Selectors::new(vec![any]);
        db.insert(s).map_err(|e| e.to_string())?;
    }
    let (lan, wan) = sides();
    let mut p = Pipeline::new(db, lan, wan);
    p.set_routes(routes);
    Ok(p)
}

/// The four /2 routes that cover IPv4, one per peer.
fn quarters(t: &mut RouteTable) {
    for q in 0..4u32 {
        let p = Prefix::new(IpAddr::V4(Ipv4Addr::from(q << 30)), 2).expect("valid prefix");
        t.insert(p, RouteAction::Tunnel(IpAddr::V4(peer(q as usize))));
    }
}

/// ns per packet of LAN→WAN through `p` over the frames of `arena`, run for about `dur`;
/// and the share of the packets sent.
fn forward_ns(p: &mut Pipeline, rig: &mut Rig, arena: &Arena, dur: Duration) -> (f64, f64) {
    let n = arena.len();
    let (mut packets, mut sent, t0) = (0u64, 0u64, Instant::now());
    while t0.elapsed() < dur {
        for base in (0..n).step_by(MAX_BATCH) {
            let end = (base + MAX_BATCH).min(n);
            packets += rig.batch(p, Port::Lan, copier(arena, base..end), |_| true) as u64;
            sent += rig.complete() as u64;
        }
    }
    (
        t0.elapsed().as_secs_f64() * 1e9 / packets.max(1) as f64,
        sent as f64 / packets.max(1) as f64,
    )
}

/// Measures forwarding with `full` against four covering routes, interleaved round by round.
pub fn forwarding(
    a: &RoutesArgs,
    full: RouteTable,
    v4: &[Prefix],
) -> Result<Vec<ForwardFigures>, String> {
    let mut full = full;
    quarters(&mut full);
    let mut empty = RouteTable::new();
    quarters(&mut empty);
    let mut pe = route_gateway(Arc::new(empty))?;
    let mut pf = route_gateway(Arc::new(full))?;
    let cycle = if a.quick { 4096 } else { 32768 };
    let dests = destinations(v4, cycle, 44);
    let dur = Duration::from_millis(if a.quick { 20 } else { a.ms.max(1) });
    let mut rig = Rig::new()?;
    let mut out = Vec::new();
    for size in [64usize, 1420] {
        let mut arena = Arena::default();
        for (k, d) in dests.iter().enumerate() {
            let IpAddr::V4(d) = *d else { continue };
            arena.push(&lan_frame(lan_host(k as u32), d, size, k as u16));
        }
        let (mut e, mut f, mut sent) = (Vec::new(), Vec::new(), 1.0f64);
        for round in 0..a.rounds.max(1) {
            let order: [bool; 2] = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for is_full in order {
                if is_full {
                    let (ns, s) = forward_ns(&mut pf, &mut rig, &arena, dur);
                    f.push(ns);
                    sent = sent.min(s);
                } else {
                    e.push(forward_ns(&mut pe, &mut rig, &arena, dur).0);
                }
            }
        }
        let (empty_ns, full_ns) = (median(&e), median(&f));
        out.push(ForwardFigures {
            size,
            empty_ns,
            full_ns,
            ratio: full_ns / empty_ns,
            sent,
        });
    }
    Ok(out)
}

/// Everything one run measures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The table itself.
    pub table: TableFigures,
    /// Through the kernel (absent with `--no-kernel` or when it could not run).
    pub convergence: Option<crate::routes_kernel::Convergence>,
    /// Forwarding through the worker pipeline, per packet size.
    pub forwarding: Vec<ForwardFigures>,
}

fn row(name: &str, new: f64, old: f64, unit: &str) {
    println!(
        "  {name:<34} {new:>12.1} {old:>14.1}  {unit:<6} {:>7.2}x",
        old / new
    );
}

/// Runs `esprit-bench routes`.
pub fn run(a: RoutesArgs) -> Result<(), String> {
    let mut a = a;
    if a.quick {
        a.v4 = a.v4.min(100_000);
        a.v6 = a.v6.min(20_000);
        a.withdraw = a.withdraw.min(2_000);
        a.rounds = 1;
    }
    println!(
        "route table with {} IPv4 + {} IPv6 prefixes (BGP-like lengths), {} route-based peers",
        a.v4, a.v6, PEERS
    );
    let v4 = internet_v4(a.v4, 1);
    let v6 = internet_v6(a.v6, 1);
    let t = table(&a, &v4, &v6);
    println!(
        "  {:<34} {:>12} {:>14}  {:<6} {:>8}",
        "", "esprit", "hash/length", "", "ratio"
    );
    row("build", t.build_ms[0], t.build_ms[1], "ms");
    row("memory (capacity)", t.memory_mb[0], t.memory_mb[1], "MB");
    row("heap growth", t.heap_mb[0], t.heap_mb[1], "MB");
    row(
        "lookup IPv4, random",
        t.lookup_random_ns[0],
        t.lookup_random_ns[1],
        "ns",
    );
    row(
        "lookup IPv4, cache-hot",
        t.lookup_hot_ns[0],
        t.lookup_hot_ns[1],
        "ns",
    );
    row(
        "lookup IPv6, random",
        t.lookup_random_ns[2],
        t.lookup_random_ns[3],
        "ns",
    );
    row(
        "lookup IPv6, cache-hot",
        t.lookup_hot_ns[2],
        t.lookup_hot_ns[3],
        "ns",
    );
    row(
        &format!("withdraw+announce {} routes", t.withdraw),
        t.change_us[0],
        t.change_us[1],
        "µs/rt",
    );
    println!(
        "  copy of the whole table (publish by copy): {:.1} ms; trie nodes: {} IPv4 groups, {} IPv6 nodes",
        t.clone_ms, t.trie_nodes[0], t.trie_nodes[1]
    );
    let convergence = if a.no_kernel {
        None
    } else {
        match crate::routes_kernel::measure(&v4, &v6, a.withdraw) {
            Ok(c) => {
                c.print();
                Some(c)
            }
            Err(e) => {
                println!("  convergence through the kernel: not measured ({e})");
                None
            }
        }
    };
    let (full, _) = build(&v4, &v6);
    let forwarding = forwarding(&a, full, &v4)?;
    println!("  forwarding LAN->WAN through the worker pipeline (one core), full table vs four /2 routes:");
    for f in &forwarding {
        println!(
            "    {:>5} B: {:>7.1} ns/packet full, {:>7.1} ns empty, ratio {:.3} ({:.0}% sent)",
            f.size,
            f.full_ns,
            f.empty_ns,
            f.ratio,
            f.sent * 100.0
        );
    }
    let report = Report {
        table: t,
        convergence,
        forwarding,
    };
    if let Some(path) = &a.json {
        let j = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, j).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
