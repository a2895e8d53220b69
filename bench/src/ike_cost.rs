//! `esprit-bench ike-cost`: what one datagram costs the IKE endpoint with 1 and with 10,000
//! IKE SAs, to show that the cost does not grow with the number of IKE SAs.
//!
//! A responder [`Endpoint`] holds N half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH withheld,
//! each with its expiry timer), made by a real initiator over memory. Then, per datagram, the
//! work the daemon's loop does: `handle_datagram`, `handle_timeout` and `poll_timeout`, for
//! three kinds of datagram: junk (malformed), an unknown SPI, and a retransmitted IKE_SA_INIT
//! of a live half-open IKE SA (answered from the cache). The median over rounds is reported.

use crate::ike::{connection, AuthKind, Suite};
use control::ike::algorithms::DhGroup;
use control::ike::message::consts::exchange;
use control::ike::message::Header;
use control::ike::rng::SystemRandom;
use control::ike::session::{Endpoint, EndpointSettings, HalfOpenLimits};
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `esprit-bench ike-cost`.
#[derive(clap::Args, Debug)]
pub struct IkeCostArgs {
    /// Numbers of IKE SAs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 10_000])]
    pub sas: Vec<usize>,
    /// Datagrams per kind per round.
    #[arg(long, default_value_t = 100_000)]
    pub datagrams: usize,
    /// Rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// A responder with `n` half-open IKE SAs, and one IKE_SA_INIT request it answered.
pub(crate) fn responder(n: usize) -> Result<(Endpoint, Vec<u8>, SocketAddr, SocketAddr), String> {
    let suite = Suite {
        auth: AuthKind::Psk,
        dh: DhGroup::X25519,
    };
    let ci = connection(suite, None, true)?;
    let mut cr = connection(suite, None, false)?;
    cr.remote_addrs.clear();
    let settings = EndpointSettings {
        cookie_threshold: usize::MAX,
        half_open_limits: HalfOpenLimits {
            total: usize::MAX,
            per_source: usize::MAX,
        },
        half_open_timeout: Duration::from_secs(300),
        ..EndpointSettings::default()
    };
    let mut r = Endpoint::new(vec![Arc::new(cr)], settings, Box::new(SystemRandom::new()));
    let local = SocketAddr::new(*ci.local_addrs.first().ok_or("no local address")?, 500);
    let mut i = Endpoint::new(
        vec![Arc::new(ci)],
        EndpointSettings::default(),
        Box::new(SystemRandom::new()),
    );
    let now = Instant::now();
    let mut kept = None;
    for _ in 0..n {
        i.initiate(now, "bench", None, local)
            .map_err(|e| e.to_string())?;
        while let Some(t) = i.poll_transmit() {
            let h = Header::parse(&t.data).map_err(|e| e.to_string())?;
            if h.exchange == exchange::IKE_SA_INIT {
                r.handle_datagram(now, t.remote, t.local, &t.data);
                kept.get_or_insert((t.data, t.local, t.remote));
            }
        }
        while r.poll_transmit().is_some() {}
        while r.poll_event().is_some() {}
        while i.poll_event().is_some() {}
    }
    if r.half_open() != n {
        return Err(format!("{} half-open IKE SAs, not {n}", r.half_open()));
    }
    let (req, from, to) = kept.ok_or("no IKE_SA_INIT request")?;
    Ok((r, req, from, to))
}

/// Nanoseconds per datagram, of `rounds` rounds of `count` datagrams: the median.
fn cost(
    r: &mut Endpoint,
    data: &[u8],
    from: SocketAddr,
    to: SocketAddr,
    count: usize,
    rounds: usize,
) -> f64 {
    let mut per = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        for _ in 0..count {
            let now = Instant::now();
            r.handle_datagram(now, to, from, black_box(data));
            r.handle_timeout(now);
            black_box(r.poll_timeout());
            while r.poll_transmit().is_some() {}
            while r.poll_event().is_some() {}
        }
        per.push(t.elapsed().as_nanos() as f64 / count.max(1) as f64);
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

/// `esprit-bench ike-cost`: measures and prints a table.
pub fn run(a: IkeCostArgs) -> Result<(), String> {
    println!("esprit-bench ike-cost");
    println!("  per datagram: handle_datagram + handle_timeout + poll_timeout, median of {} rounds of {} datagrams", a.rounds, a.datagrams);
    println!(
        "  {:>8}  {:>12}  {:>12}  {:>16}",
        "IKE SAs", "junk ns", "unknown SPI ns", "retransmit ns"
    );
    for &n in &a.sas {
        let (mut r, req, from, to) = responder(n.max(1))?;
        let junk = [0x55u8; 64];
        let mut unknown = req.clone();
        unknown[8..16].copy_from_slice(&[0xa5; 8]);
        unknown[20..24].copy_from_slice(&1u32.to_be_bytes());
        let c_junk = cost(&mut r, &junk, from, to, a.datagrams, a.rounds);
        let c_unknown = cost(&mut r, &unknown, from, to, a.datagrams, a.rounds);
        let c_retx = cost(&mut r, &req, from, to, a.datagrams, a.rounds);
        if r.half_open() != n.max(1) {
            return Err("the half-open IKE SAs changed during the measurement".into());
        }
        println!(
            "  {:>8}  {:>12.0}  {:>12.0}  {:>16.0}",
            n.max(1),
            c_junk,
            c_unknown,
            c_retx
        );
    }
    Ok(())
}
