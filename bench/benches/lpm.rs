//! Longest-prefix match for route-based tunnels (decisions 0006 and 0025): esprit's table
//! (DIR-24-8 since 0025; one hash map per prefix length before) against a binary trie and a
//! minimal DIR-24-8 table, both written here as references, on site-to-site route sets of 100,
//! 1 000 and 10 000 IPv4 prefixes over /16, /20, /24 and /28 plus a default route. Each
//! iteration looks up the same 4 096 destinations (about 90% covered by a site prefix, the rest
//! by the default). The full-table figures are `esprit-bench routes`'.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::sa::route::{RouteAction, RouteTable};
use dataplane::sa::Prefix;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

/// xorshift64*, so the route sets and destinations are the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn routes(n: usize) -> Vec<(u32, u8, u16)> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let mut out: Vec<(u32, u8, u16)> = vec![(0, 0, 0)];
    let lens = [16u8, 20, 24, 28];
    while out.len() <= n {
        let len = lens[(r.next() % 4) as usize];
        let addr = (10u32 << 24 | (r.next() as u32 & 0x00ff_ffff)) & (u32::MAX << (32 - len));
        if !out.iter().any(|(a, l, _)| *a == addr && *l == len) {
            out.push((addr, len, out.len() as u16));
        }
    }
    out
}

fn destinations(routes: &[(u32, u8, u16)]) -> Vec<u32> {
    let mut r = Rng(42);
    (0..4096)
        .map(|i| {
            if i % 10 == 9 {
                0xc000_0000 | (r.next() as u32 & 0xffff)
            } else {
                let (a, l, _) = routes[1 + (r.next() as usize) % (routes.len() - 1)];
                a | (r.next() as u32 & !(u32::MAX << (32 - l)))
            }
        })
        .collect()
}

/// A binary trie, one node per bit.
#[derive(Default)]
struct Trie {
    nodes: Vec<([u32; 2], Option<u16>)>,
}

impl Trie {
    fn new(routes: &[(u32, u8, u16)]) -> Trie {
        let mut t = Trie {
            nodes: vec![([0, 0], None)],
        };
        for &(a, l, v) in routes {
            let mut n = 0usize;
            for i in 0..l {
                let b = ((a >> (31 - i)) & 1) as usize;
                if t.nodes[n].0[b] == 0 {
                    t.nodes.push(([0, 0], None));
                    let id = (t.nodes.len() - 1) as u32;
                    t.nodes[n].0[b] = id;
                }
                n = t.nodes[n].0[b] as usize;
            }
            t.nodes[n].1 = Some(v);
        }
        t
    }

    fn lookup(&self, a: u32) -> Option<u16> {
        let mut n = 0usize;
        let mut best = self.nodes[0].1;
        for i in 0..32 {
            let next = self.nodes[n].0[((a >> (31 - i)) & 1) as usize];
            if next == 0 {
                break;
            }
            n = next as usize;
            if let Some(v) = self.nodes[n].1 {
                best = Some(v);
            }
        }
        best
    }
}

/// DIR-24-8: 2^24 first-level entries (value, or an index into 256-entry second-level blocks).
struct Dir248 {
    tbl24: Vec<u32>,
    tbl8: Vec<u32>,
}

const NONE: u32 = u32::MAX;
const EXT: u32 = 1 << 31;

impl Dir248 {
    fn new(routes: &[(u32, u8, u16)]) -> Dir248 {
        let mut sorted = routes.to_vec();
        sorted.sort_by_key(|r| r.1);
        let mut d = Dir248 {
            tbl24: vec![NONE; 1 << 24],
            tbl8: Vec::new(),
        };
        for (a, l, v) in sorted {
            let v = u32::from(v);
            if l <= 24 {
                let start = (a >> 8) as usize;
                for e in &mut d.tbl24[start..start + (1usize << (24 - l))] {
                    if *e & EXT != 0 && *e != NONE {
                        let b = (*e & !EXT) as usize * 256;
                        d.tbl8[b..b + 256].iter_mut().for_each(|x| *x = v);
                    } else {
                        *e = v;
                    }
                }
            } else {
                let i = (a >> 8) as usize;
                if d.tbl24[i] == NONE || d.tbl24[i] & EXT == 0 {
                    let fill = d.tbl24[i];
                    let block = (d.tbl8.len() / 256) as u32;
                    d.tbl8.extend(std::iter::repeat_n(fill, 256));
                    d.tbl24[i] = EXT | block;
                }
                let b = (d.tbl24[i] & !EXT) as usize * 256 + (a & 0xff) as usize;
                for e in &mut d.tbl8[b..b + (1usize << (32 - l))] {
                    *e = v;
                }
            }
        }
        d
    }

    fn lookup(&self, a: u32) -> Option<u16> {
        let e = self.tbl24[(a >> 8) as usize];
        let v = if e != NONE && e & EXT != 0 {
            self.tbl8[(e & !EXT) as usize * 256 + (a & 0xff) as usize]
        } else {
            e
        };
        (v != NONE).then_some(v as u16)
    }
}

fn lpm(c: &mut Criterion) {
    for n in [100usize, 1_000, 10_000] {
        let rs = routes(n);
        let dst = destinations(&rs);
        let mut table = RouteTable::new();
        for &(a, l, v) in &rs {
            let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | u32::from(v)));
            table.insert(
                Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l).expect("prefix"),
                RouteAction::Tunnel(peer),
            );
        }
        let trie = Trie::new(&rs);
        let dir = Dir248::new(&rs);
        // The three agree on every destination before anything is timed.
        for &d in &dst {
            let ours = match table.lookup(IpAddr::V4(Ipv4Addr::from(d))) {
                Some(RouteAction::Tunnel(IpAddr::V4(p))) => Some((u32::from(p) & 0xffff) as u16),
                _ => None,
            };
            assert_eq!(ours, trie.lookup(d));
            assert_eq!(ours, dir.lookup(d));
        }
        let addrs: Vec<IpAddr> = dst.iter().map(|d| IpAddr::V4(Ipv4Addr::from(*d))).collect();
        let mut g = c.benchmark_group(format!("lpm-{n}"));
        g.throughput(Throughput::Elements(dst.len() as u64));
        g.bench_function(BenchmarkId::new("esprit-hash-per-length", n), |b| {
            b.iter(|| {
                addrs
                    .iter()
                    .filter(|a| table.lookup(black_box(**a)).is_some())
                    .count()
            })
        });
        g.bench_function(BenchmarkId::new("binary-trie", n), |b| {
            b.iter(|| {
                dst.iter()
                    .filter(|a| trie.lookup(black_box(**a)).is_some())
                    .count()
            })
        });
        g.bench_function(BenchmarkId::new("dir-24-8", n), |b| {
            b.iter(|| {
                dst.iter()
                    .filter(|a| dir.lookup(black_box(**a)).is_some())
                    .count()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, lpm);
criterion_main!(benches);
