//! Per-round measurements, their summary per (system, direction, size) with ratios taken round
//! by round, and the table, Markdown and JSON forms of it.

use super::packet::FrameSize;
use super::systems::{Dir, System};
use crate::stats::{max, median, min};
use serde::{Deserialize, Serialize};

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// One (system, direction, size) measured in one round.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// System.
    pub system: System,
    /// Direction.
    pub dir: Dir,
    /// Packet size.
    pub size: FrameSize,
    /// Round (0-based).
    pub round: usize,
    /// Receive rate under overload, packets/s.
    pub max_rx_pps: f64,
    /// What the generator offered under overload, packets/s.
    pub max_tx_pps: f64,
    /// Highest offered rate with at most 0.5% loss, packets/s (0 if no rate passed).
    pub rfc_pps: f64,
    /// Loss at that rate.
    pub rfc_loss: f64,
    /// The gateway lost nothing at the highest rate the generator could offer: the 0.5%-loss
    /// rate is a lower bound.
    pub generator_limited: bool,
    /// Latency at that rate.
    pub latency: Option<Latency>,
    /// Trials run (overload included).
    pub trials: usize,
    /// Packets the sink could not decrypt or verify, over all trials.
    pub esp_errors: u64,
    /// CPU time of the gateway's core per packet at the 0.5%-loss rate, nanoseconds.
    pub gateway_ns_per_packet: Option<f64>,
}

/// Median and range of a per-round figure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// Median over the rounds.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of these values (`None` when empty).
    pub fn of(v: &[f64]) -> Option<Spread> {
        (!v.is_empty()).then(|| Spread {
            median: median(v),
            min: min(v),
            max: max(v),
        })
    }

    /// Scaled by `k`.
    fn scale(self, k: f64) -> Spread {
        Spread {
            median: self.median * k,
            min: self.min * k,
            max: self.max * k,
        }
    }
}

/// The summary of one (system, direction, size) over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// System key ("esprit").
    pub system: String,
    /// System label.
    pub label: String,
    /// "encrypt" (LAN to WAN) or "decrypt" (WAN to LAN).
    pub dir: String,
    /// Plaintext packet size, or "imix".
    pub size: serde_json::Value,
    /// Receive rate under overload, Mpps.
    pub max_rx_mpps: Spread,
    /// The same in Gbit/s of plaintext.
    pub max_rx_gbps: Spread,
    /// What the generator offered under overload, Mpps (median).
    pub offered_mpps: f64,
    /// Highest rate with at most 0.5% loss, Mpps.
    pub rfc_mpps: Spread,
    /// The same in Gbit/s of plaintext.
    pub rfc_gbps: Spread,
    /// Latency at that rate, microseconds: the median over the rounds of each percentile.
    pub latency_us: Option<Latency>,
    /// esprit: per-round ratio of the 0.5%-loss rate to esprit's no-crypto forwarding
    /// (LAN to WAN of the same size, also for WAN to LAN: the mirror-image AF_XDP path).
    pub vs_nocrypto: Option<Spread>,
    /// The same ratio on the overload receive rates.
    pub vs_nocrypto_max_rx: Option<Spread>,
    /// esprit: per-round ratio of the 0.5%-loss rate to strongSwan's, same direction and size.
    pub vs_strongswan: Option<Spread>,
    /// The same ratio on the overload receive rates.
    pub vs_strongswan_max_rx: Option<Spread>,
    /// esprit ESP: per-round ratio of the 0.5%-loss rate to DPDK ipsec-secgw's, the better of
    /// its two PMDs in that round, same direction and size.
    pub vs_dpdk: Option<Spread>,
    /// The same ratio on the overload receive rates.
    pub vs_dpdk_max_rx: Option<Spread>,
    /// Per-round ratio of the 0.5%-loss rate to the kernel's forwarding, same direction and
    /// size.
    pub vs_kernel: Option<Spread>,
    /// CPU time the gateway's core spent per forwarded packet at the 0.5%-loss rate,
    /// nanoseconds (busy time of that core from `/proc/stat` over the trial's window divided
    /// by the packets received in it).
    pub gateway_ns_per_packet: Option<Spread>,
    /// What that cost implies one core at 100 % could forward, Mpps (1000 / ns per packet).
    pub gateway_core_mpps: Option<Spread>,
    /// Rounds measured.
    pub rounds: usize,
    /// Rounds in which no rate passed.
    pub rounds_without_pass: usize,
    /// Rounds in which the 0.5%-loss rate was the generator's limit, not the gateway's.
    pub rounds_generator_limited: usize,
    /// Packets the sink could not decrypt or verify.
    pub esp_errors: u64,
}

fn size_json(s: FrameSize) -> serde_json::Value {
    match s {
        FrameSize::Fixed(n) => serde_json::json!(n),
        FrameSize::Imix => serde_json::json!("imix"),
    }
}

/// Per-round ratios `a / b`, pairing rounds; rounds where `b` is zero are left out.
fn ratios(
    all: &[Measurement],
    a: (System, Dir, FrameSize),
    b: (System, Dir, FrameSize),
    f: fn(&Measurement) -> f64,
) -> Option<Spread> {
    let find = |(s, d, z): (System, Dir, FrameSize), round: usize| {
        all.iter()
            .find(|m| m.system == s && m.dir == d && m.size == z && m.round == round)
    };
    let v: Vec<f64> = all
        .iter()
        .filter(|m| (m.system, m.dir, m.size) == a)
        .filter_map(|m| {
            let other = find(b, m.round)?;
            (f(other) > 0.0).then(|| f(m) / f(other))
        })
        .collect();
    Spread::of(&v)
}

/// Per-round ratios `a / best of bs`: in each round, `a` against the best of the `bs` measured
/// that round (rounds where none of them reached more than zero are left out).
fn ratios_best(
    all: &[Measurement],
    a: (System, Dir, FrameSize),
    bs: &[(System, Dir, FrameSize)],
    f: fn(&Measurement) -> f64,
) -> Option<Spread> {
    let v: Vec<f64> = all
        .iter()
        .filter(|m| (m.system, m.dir, m.size) == a)
        .filter_map(|m| {
            let best = all
                .iter()
                .filter(|o| o.round == m.round && bs.contains(&(o.system, o.dir, o.size)))
                .map(f)
                .fold(0.0, f64::max);
            (best > 0.0).then(|| f(m) / best)
        })
        .collect();
    Spread::of(&v)
}

/// Summarises the measurements, in the order of `systems` × `sizes` × directions.
pub fn rows(all: &[Measurement], systems: &[System], sizes: &[FrameSize]) -> Vec<Row> {
    let mut out = Vec::new();
    for &system in systems {
        for &dir in system.dirs() {
            for &size in sizes {
                let ms: Vec<&Measurement> = all
                    .iter()
                    .filter(|m| m.system == system && m.dir == dir && m.size == size)
                    .collect();
                if ms.is_empty() {
                    continue;
                }
                let col =
                    |f: fn(&Measurement) -> f64| -> Vec<f64> { ms.iter().map(|m| f(m)).collect() };
                let gbit = size.mean_bytes() * 8.0 / 1e9;
                let max_rx = Spread::of(&col(|m| m.max_rx_pps)).expect("non-empty");
                let rfc = Spread::of(&col(|m| m.rfc_pps)).expect("non-empty");
                let lats: Vec<Latency> = ms.iter().filter_map(|m| m.latency).collect();
                let lat_col =
                    |f: fn(&Latency) -> f64| median(&lats.iter().map(f).collect::<Vec<_>>());
                let latency = (!lats.is_empty()).then(|| Latency {
                    p50: lat_col(|l| l.p50),
                    p90: lat_col(|l| l.p90),
                    p99: lat_col(|l| l.p99),
                    p999: lat_col(|l| l.p999),
                    max: lat_col(|l| l.max),
                });
                let me = (system, dir, size);
                let esprit = matches!(system, System::Esprit | System::EspritEsp);
                let nocrypto = (System::EspritBypass, Dir::Encrypt, size);
                let sswan = (System::StrongSwan, dir, size);
                let dpdk = System::DPDK.map(|d| (d, dir, size));
                let plain_esp = system == System::EspritEsp;
                let ns: Vec<f64> = ms.iter().filter_map(|m| m.gateway_ns_per_packet).collect();
                let ns = Spread::of(&ns);
                let rfc_f: fn(&Measurement) -> f64 = |m| m.rfc_pps;
                let max_f: fn(&Measurement) -> f64 = |m| m.max_rx_pps;
                out.push(Row {
                    system: system.key().into(),
                    label: system.label().into(),
                    dir: dir.key().into(),
                    size: size_json(size),
                    max_rx_mpps: max_rx.scale(1e-6),
                    max_rx_gbps: max_rx.scale(gbit),
                    offered_mpps: median(&col(|m| m.max_tx_pps)) * 1e-6,
                    rfc_mpps: rfc.scale(1e-6),
                    rfc_gbps: rfc.scale(gbit),
                    latency_us: latency,
                    vs_nocrypto: esprit.then(|| ratios(all, me, nocrypto, rfc_f)).flatten(),
                    vs_nocrypto_max_rx: esprit.then(|| ratios(all, me, nocrypto, max_f)).flatten(),
                    vs_strongswan: esprit.then(|| ratios(all, me, sswan, rfc_f)).flatten(),
                    vs_strongswan_max_rx: esprit.then(|| ratios(all, me, sswan, max_f)).flatten(),
                    vs_dpdk: plain_esp
                        .then(|| ratios_best(all, me, &dpdk, rfc_f))
                        .flatten(),
                    vs_dpdk_max_rx: plain_esp
                        .then(|| ratios_best(all, me, &dpdk, max_f))
                        .flatten(),
                    gateway_ns_per_packet: ns,
                    gateway_core_mpps: ns.filter(|n| n.min > 0.0).map(|n| Spread {
                        median: 1e3 / n.median,
                        min: 1e3 / n.max,
                        max: 1e3 / n.min,
                    }),
                    vs_kernel: (system != System::Kernel)
                        .then(|| ratios(all, me, (System::Kernel, dir, size), rfc_f))
                        .flatten(),
                    rounds: ms.len(),
                    rounds_without_pass: ms.iter().filter(|m| m.rfc_pps == 0.0).count(),
                    rounds_generator_limited: ms.iter().filter(|m| m.generator_limited).count(),
                    esp_errors: ms.iter().map(|m| m.esp_errors).sum(),
                });
            }
        }
    }
    out
}

/// The goals against DPDK and the kernel, one line per esprit ESP row: throughput × DPDK
/// (goal ≥ 1.0, then 1.5), the gateway core's ns per packet against the better DPDK PMD's
/// (goal: not more) and, at 1420 B, against the kernel's forwarding (goal ≤ 0.5 of it).
pub fn cost_goals(rows: &[Row]) -> Vec<String> {
    let ns = |r: &Row| r.gateway_ns_per_packet.map(|n| n.median);
    let same = |r: &Row, key: &str| {
        rows.iter()
            .filter(|o| o.system == key && o.dir == r.dir && o.size == r.size)
            .find_map(ns)
    };
    rows.iter()
        .filter(|r| r.system == System::EspritEsp.key())
        .map(|r| {
            let dpdk = System::DPDK
                .iter()
                .filter_map(|d| same(r, d.key()))
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))));
            let cell = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x:.0}"));
            let kernel = if r.size == serde_json::json!(1420) {
                format!(
                    ", kernel forwarding {} ns/pkt (goal <= 0.5 x)",
                    cell(same(r, System::Kernel.key()))
                )
            } else {
                String::new()
            };
            format!(
                "goals, esprit ESP {} {:>4}: {} x DPDK (goal >= 1.0, then 1.5); gwA core {} ns/pkt, DPDK's best PMD {} (goal: not more){kernel}",
                dir_label(&r.dir),
                size_label(&r.size),
                r.vs_dpdk
                    .map(|x| format!("{:.2} ({:.2}-{:.2})", x.median, x.min, x.max))
                    .unwrap_or_else(|| "n/a".into()),
                cell(ns(r)),
                cell(dpdk),
            )
        })
        .collect()
}

fn size_label(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn dir_label(key: &str) -> &'static str {
    if key == "encrypt" {
        Dir::Encrypt.label()
    } else {
        Dir::Decrypt.label()
    }
}

fn range(s: &Spread, prec: usize) -> String {
    format!("{:.p$}-{:.p$}", s.min, s.max, p = prec)
}

fn ratio_cell(r: &Option<Spread>) -> String {
    match r {
        Some(r) => format!("{:.2} ({:.2}-{:.2})", r.median, r.min, r.max),
        None => "-".into(),
    }
}

fn lat_cells(l: &Option<Latency>) -> [String; 5] {
    match l {
        Some(l) => [l.p50, l.p90, l.p99, l.p999, l.max].map(|v| format!("{v:.0}")),
        None => std::array::from_fn(|_| "-".to_string()),
    }
}

/// The table header (columns as in [`line`]).
pub fn header() -> String {
    format!(
        "{:<20} {:<7} {:>4} | {:>6} {:>11} {:>6} | {:>6} {:>11} {:>6} | {:>5} {:>5} {:>5} {:>6} {:>6} | {:>6} {:>9} | {:>19} {:>19} {:>19}",
        "system",
        "dir",
        "size",
        "maxrx",
        "Mpps range",
        "Gbps",
        "<=0.5%",
        "Mpps range",
        "Gbps",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "ns/pkt",
        "core Mpps",
        "x no-crypto",
        "x strongSwan",
        "x DPDK"
    )
}

/// The gateway core's cost cells: ns per packet and the implied Mpps of one core (medians).
fn cost_cells(r: &Row) -> [String; 2] {
    match (r.gateway_ns_per_packet, r.gateway_core_mpps) {
        (Some(n), Some(c)) => [format!("{:.0}", n.median), format!("{:.2}", c.median)],
        _ => ["-".into(), "-".into()],
    }
}

/// One line of the table: Mpps and Gbit/s under overload and at 0.5% loss (median, range),
/// latency percentiles in µs at the 0.5%-loss rate, the gateway core's cost, ratios.
pub fn line(r: &Row) -> String {
    let [p50, p90, p99, p999, pmax] = lat_cells(&r.latency_us);
    let [ns, core] = cost_cells(r);
    format!(
        "{:<20} {:<7} {:>4} | {:>6.3} {:>11} {:>6.2} | {:>6.3} {:>11} {:>6.2} | {:>5} {:>5} {:>5} {:>6} {:>6} | {:>6} {:>9} | {:>19} {:>19} {:>19}",
        r.label,
        dir_label(&r.dir),
        size_label(&r.size),
        r.max_rx_mpps.median,
        range(&r.max_rx_mpps, 3),
        r.max_rx_gbps.median,
        r.rfc_mpps.median,
        range(&r.rfc_mpps, 3),
        r.rfc_gbps.median,
        p50,
        p90,
        p99,
        p999,
        pmax,
        ns,
        core,
        ratio_cell(&r.vs_nocrypto),
        ratio_cell(&r.vs_strongswan),
        ratio_cell(&r.vs_dpdk),
    )
}

/// The rows as a Markdown table (for `docs/benchmarks.md`).
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | direction | size | max rx Mpps (min–max) | Gbit/s | ≤0.5% loss Mpps (min–max) | Gbit/s | p50 µs | p90 | p99 | p99.9 | max | gwA core ns/pkt (min–max) | core Mpps | × no-crypto (min–max) | × strongSwan (min–max) | × DPDK (min–max) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let [p50, p90, p99, p999, pmax] = lat_cells(&r.latency_us);
        let ratio = |x: &Option<Spread>| match x {
            Some(x) => format!("**{:.2}** ({:.2}–{:.2})", x.median, x.min, x.max),
            None => "".into(),
        };
        let (ns, core) = match (r.gateway_ns_per_packet, r.gateway_core_mpps) {
            (Some(n), Some(c)) => (
                format!("{:.0} ({:.0}–{:.0})", n.median, n.min, n.max),
                format!("{:.2}", c.median),
            ),
            _ => (String::new(), String::new()),
        };
        s += &format!(
            "| {} | {} | {} | {:.3} ({:.3}–{:.3}) | {:.2} | {:.3} ({:.3}–{:.3}) | {:.2} | {p50} | {p90} | {p99} | {p999} | {pmax} | {ns} | {core} | {} | {} | {} |\n",
            r.label,
            dir_label(&r.dir),
            size_label(&r.size),
            r.max_rx_mpps.median,
            r.max_rx_mpps.min,
            r.max_rx_mpps.max,
            r.max_rx_gbps.median,
            r.rfc_mpps.median,
            r.rfc_mpps.min,
            r.rfc_mpps.max,
            r.rfc_gbps.median,
            ratio(&r.vs_nocrypto),
            ratio(&r.vs_strongswan),
            ratio(&r.vs_dpdk),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(system: System, dir: Dir, round: usize, rfc: f64) -> Measurement {
        Measurement {
            system,
            dir,
            size: FrameSize::Fixed(1420),
            round,
            max_rx_pps: rfc * 1.1,
            max_tx_pps: rfc * 2.0,
            rfc_pps: rfc,
            rfc_loss: 0.0,
            generator_limited: false,
            latency: Some(Latency {
                p50: 10.0,
                p90: 20.0,
                p99: 30.0,
                p999: 40.0,
                max: 50.0 + round as f64,
            }),
            trials: 7,
            esp_errors: 0,
            gateway_ns_per_packet: Some(1000.0 + round as f64 * 1000.0),
        }
    }

    #[test]
    fn ratios_pair_rounds() {
        let all = vec![
            m(System::Esprit, Dir::Encrypt, 0, 80.0),
            m(System::EspritBypass, Dir::Encrypt, 0, 100.0),
            m(System::StrongSwan, Dir::Encrypt, 0, 8.0),
            m(System::Esprit, Dir::Encrypt, 1, 90.0),
            m(System::EspritBypass, Dir::Encrypt, 1, 90.0),
            m(System::StrongSwan, Dir::Encrypt, 1, 0.0),
            m(System::Esprit, Dir::Decrypt, 0, 70.0),
        ];
        let sizes = [FrameSize::Fixed(1420)];
        let r = rows(
            &all,
            &[System::Esprit, System::EspritBypass, System::StrongSwan],
            &sizes,
        );
        assert_eq!(r.len(), 4);
        let enc = &r[0];
        assert_eq!(
            (enc.system.as_str(), enc.dir.as_str()),
            ("esprit", "encrypt")
        );
        let nc = enc.vs_nocrypto.unwrap();
        assert_eq!((nc.min, nc.max), (0.8, 1.0));
        assert_eq!(nc.median, 0.9);
        // strongSwan passed nothing in round 1: that round has no ratio.
        let ss = enc.vs_strongswan.unwrap();
        assert_eq!((ss.median, ss.min, ss.max), (10.0, 10.0, 10.0));
        assert_eq!(enc.latency_us.unwrap().max, 50.5);
        assert!((enc.rfc_gbps.median - 85.0 * 1420.0 * 8.0 / 1e9).abs() < 1e-12);
        // Decrypt is compared with the no-crypto LAN to WAN figure of the same round.
        let dec = &r[1];
        assert_eq!(dec.dir, "decrypt");
        assert_eq!(dec.vs_nocrypto.unwrap().median, 0.7);
        assert!(dec.vs_strongswan.is_none());
        assert!(
            r[2].vs_nocrypto.is_none(),
            "baselines get no ratio to themselves"
        );
        assert_eq!(
            line(enc).len(),
            header().len(),
            "{}\n{}",
            line(enc),
            header()
        );
        assert_eq!(markdown(&r).lines().count(), 2 + r.len());
        let ns = enc.gateway_ns_per_packet.unwrap();
        assert_eq!((ns.median, ns.min, ns.max), (1500.0, 1000.0, 2000.0));
        let core = enc.gateway_core_mpps.unwrap();
        assert_eq!((core.min, core.max), (0.5, 1.0));
    }

    #[test]
    fn dpdk_ratio_takes_the_better_pmd_per_round() {
        let all = vec![
            m(System::EspritEsp, Dir::Encrypt, 0, 60.0),
            m(System::DpdkAfXdp, Dir::Encrypt, 0, 20.0),
            m(System::DpdkAfPacket, Dir::Encrypt, 0, 30.0),
            m(System::EspritEsp, Dir::Encrypt, 1, 80.0),
            m(System::DpdkAfXdp, Dir::Encrypt, 1, 40.0),
            m(System::DpdkAfPacket, Dir::Encrypt, 1, 10.0),
            m(System::Esprit, Dir::Encrypt, 0, 60.0),
        ];
        let r = rows(
            &all,
            &[
                System::Esprit,
                System::EspritEsp,
                System::DpdkAfXdp,
                System::DpdkAfPacket,
            ],
            &[FrameSize::Fixed(1420)],
        );
        assert!(
            r[0].vs_dpdk.is_none(),
            "ESP-in-UDP is not compared with DPDK"
        );
        let d = r[1].vs_dpdk.unwrap();
        assert_eq!((d.min, d.max), (2.0, 2.0));
        assert!(r[2].vs_dpdk.is_none());
        let goals = cost_goals(&r);
        assert_eq!(goals.len(), 1);
        assert!(goals[0].contains("2.00 (2.00-2.00) x DPDK"), "{}", goals[0]);
        assert!(
            goals[0].contains("ns/pkt, DPDK's best PMD 1500"),
            "{}",
            goals[0]
        );
    }
}
