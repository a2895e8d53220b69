//! `esprit-bench metrics`: what one scrape of the dataplane's metrics costs with many child
//! SAs. A worker's SA database holds N tunnels (an inbound and an outbound SA each, tagged by
//! esprit-ike with their connection and child). Per scrape: the worker's snapshot of its SAs
//! (`sa_infos`, what the worker does between two batches when asked; the worker forwards
//! nothing meanwhile) and the OpenMetrics text built from it on the control thread. Median of
//! the rounds, and the size of the text. Then esprit-ike's scrape with N IKE SAs.

use crate::pipeline::sa;
use dataplane::api::convert::sa_infos;
use dataplane::daemon::metrics::exposition;
use dataplane::esp::Backend;
use dataplane::sa::{Direction, SaDb};
use esprit_api::owner::owner_tag;
use esprit_metrics::ServerStats;
use std::time::Instant;

/// Arguments of `esprit-bench metrics`.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Numbers of child SAs (tunnels: two dataplane SAs each), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000usize, 100_000])]
    pub children: Vec<usize>,
    /// Numbers of IKE SAs for esprit-ike's scrape (half-open, made by a real initiator),
    /// comma-separated; empty to skip.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000usize, 10_000])]
    pub ike_sas: Vec<usize>,
    /// Scrapes measured per size.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// One size's figures.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeCost {
    /// Child SAs.
    pub children: usize,
    /// Microseconds of the worker's snapshot (median).
    pub snapshot_us: f64,
    /// Microseconds to build the text (median).
    pub render_us: f64,
    /// Octets of text.
    pub bytes: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures one size.
pub fn measure(children: usize, rounds: usize) -> Result<ScrapeCost, String> {
    let mut db = SaDb::new(Backend::default());
    for i in 0..children {
        for dir in [Direction::Out, Direction::In] {
            let mut c = sa(i, dir, false);
            c.owner = Some(owner_tag("5f3a9c1e", &format!("branch-{i}"), "net"));
            db.insert(c).map_err(|e| e.to_string())?;
        }
    }
    let (mut snap, mut render, mut bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let mut sas = sa_infos(&db);
        snap.push(t.elapsed().as_secs_f64() * 1e6);
        // Counters as a busy gateway has them (ten and more digits), for a realistic size.
        for (i, s) in sas.iter_mut().enumerate() {
            s.bytes = 12_345_678_901 + i as u64;
            s.packets = 9_876_543 + i as u64;
        }
        let mut worker = dataplane::daemon::router::merge(vec![]);
        worker.workers = 1;
        worker.sas = sas;
        let t = Instant::now();
        let text = exposition(vec![worker], ServerStats::default(), None, None);
        render.push(t.elapsed().as_secs_f64() * 1e6);
        bytes = std::hint::black_box(text).len();
    }
    Ok(ScrapeCost {
        children,
        snapshot_us: median(snap),
        render_us: median(render),
        bytes,
    })
}

/// Microseconds of one esprit-ike scrape (copying the IKE SAs out of the endpoint and writing
/// the text; the IKE loop does nothing else meanwhile) with `n` IKE SAs (median), and the
/// size of the text.
pub fn measure_ike(n: usize, rounds: usize) -> Result<(f64, usize), String> {
    let (ep, ..) = crate::ike_cost::responder(n.max(1))?;
    let (mut us, mut bytes) = (Vec::new(), 0);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        let text = control::daemon::metrics::IkeMetrics::of(&ep, Instant::now()).exposition();
        us.push(t.elapsed().as_secs_f64() * 1e6);
        bytes = std::hint::black_box(text).len();
    }
    Ok((median(us), bytes))
}

/// `esprit-bench metrics`: measures and prints a table.
pub fn run(a: MetricsArgs) -> Result<(), String> {
    println!(
        "esprit-bench metrics: one scrape of esprit-dataplane's metrics, median of {} rounds",
        a.rounds
    );
    println!(
        "  {:>9}  {:>13}  {:>12}  {:>11}  {:>11}  {:>10}",
        "children", "snapshot µs", "render µs", "total µs", "bytes", "bytes/child"
    );
    for &n in &a.children {
        let c = measure(n, a.rounds)?;
        println!(
            "  {:>9}  {:>13.0}  {:>12.0}  {:>11.0}  {:>11}  {:>10}",
            c.children,
            c.snapshot_us,
            c.render_us,
            c.snapshot_us + c.render_us,
            c.bytes,
            c.bytes / c.children.max(1)
        );
    }
    if !a.ike_sas.is_empty() {
        println!("esprit-bench metrics: one scrape of esprit-ike's metrics (half-open IKE SAs), median of {} rounds", a.rounds);
        println!("  {:>9}  {:>12}  {:>11}", "IKE SAs", "scrape µs", "bytes");
        for &n in &a.ike_sas {
            let (us, bytes) = measure_ike(n, a.rounds)?;
            println!("  {n:>9}  {us:>12.0}  {bytes:>11}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_scrape_has_every_tunnel() {
        let c = measure(10, 1).unwrap();
        assert_eq!(c.children, 10);
        assert!(c.bytes > 10 * 4 * 100, "{c:?}");
        let (_, bytes) = measure_ike(3, 1).unwrap();
        assert!(bytes > 1000, "{bytes}");
    }
}
