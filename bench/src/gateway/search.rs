//! RFC 2544-style throughput: the maximum receive rate under overload, then the highest offered
//! rate with at most [`LOSS_LIMIT`] loss, by a binary search with a bounded number of trials.
//!
//! Every trial with at most 0.5% loss counts, the overload trial included (a gateway that
//! pushes back on the generator without losing anything has passed at the rate the generator
//! could offer); the result is the highest rate actually offered by such a trial. The search
//! only moves up from a rate that passed *and* was offered in full: a generator that could not
//! keep up cannot tell what a higher rate would do. A result limited by the generator is
//! flagged.

use super::traffic::Trial;

/// Most loss a passing trial may show (0.5%).
pub const LOSS_LIMIT: f64 = 0.005;
/// A trial passes only if the generator offered at least this fraction of the rate asked for
/// (otherwise the rate was not really tried).
pub const OFFERED_MIN: f64 = 0.97;

/// Whether a trial passes: something was sent and at most 0.5% of it was lost.
pub fn passes(t: &Trial) -> bool {
    t.sent > 0 && t.loss() <= LOSS_LIMIT
}

/// Whether the generator offered (nearly) the rate asked for; always false under overload,
/// where it offered all it could.
pub fn offered_in_full(t: &Trial) -> bool {
    t.target.is_some_and(|r| t.tx_pps() >= OFFERED_MIN * r)
}

/// The outcome of a search.
#[derive(Debug, Clone)]
pub struct Search {
    /// The overload trial (as fast as the generator can).
    pub overload: Trial,
    /// The passing trial with the highest offered rate, if any passed.
    pub best: Option<Trial>,
    /// Every rate tried and whether it passed, in order.
    pub steps: Vec<(f64, bool)>,
    /// The rate-controlled trials, in order.
    pub steps_trials: Vec<Trial>,
}

impl Search {
    /// The trial whose latency is reported: the passing rate-controlled trial with the highest
    /// offered rate (queues under overload say nothing about the gateway's latency), or the
    /// overload trial if it alone passed.
    pub fn latency_trial(&self) -> Option<&Trial> {
        self.steps_trials
            .iter()
            .filter(|t| passes(t))
            .max_by(|a, b| a.tx_pps().total_cmp(&b.tx_pps()))
            .or(self.best.as_ref())
    }

    /// True if the best rate is what the generator could offer rather than what the gateway
    /// could take (the overload trial passed, or the best trial fell short of its target).
    pub fn generator_limited(&self) -> bool {
        self.best.as_ref().is_some_and(|b| !offered_in_full(b))
    }
}

/// The next rate to try between the highest passing `lo` and the lowest failing `hi`: the
/// middle, or the geometric mean while they are more than 4× apart (a gateway that collapses
/// under overload, as strongSwan does, receives almost nothing there, so the search starts
/// orders of magnitude below the bound and halving would need many steps to climb).
pub fn next_rate(lo: f64, hi: f64) -> f64 {
    if lo > 0.0 && hi > 4.0 * lo {
        (lo * hi).sqrt()
    } else {
        (lo + hi) / 2.0
    }
}

/// Runs the overload trial, then up to `steps` rate-controlled trials: the first at the
/// overload's receive rate, then splitting the interval between the highest passing and the
/// lowest failing rate ([`next_rate`], starting from 0 and the overload's offered rate). Stops
/// early once the interval is under 1% of the upper bound.
pub fn search(
    steps: usize,
    mut trial: impl FnMut(Option<f64>) -> Result<Trial, String>,
) -> Result<Search, String> {
    let overload = trial(None)?;
    let mut hi = overload.tx_pps().max(1.0);
    let mut lo = 0.0f64;
    let mut best: Option<Trial> = passes(&overload).then(|| overload.clone());
    let mut tried = Vec::new();
    let mut trials = Vec::new();
    let mut rate = overload.rx_pps().min(hi);
    for _ in 0..steps {
        if rate < 1.0 {
            break;
        }
        let t = trial(Some(rate))?;
        let ok = passes(&t);
        tried.push((rate, ok));
        if ok && best.as_ref().is_none_or(|b| t.tx_pps() > b.tx_pps()) {
            best = Some(t.clone());
        }
        if ok && offered_in_full(&t) {
            lo = rate;
        } else {
            hi = rate;
        }
        trials.push(t);
        if hi - lo < 0.01 * hi {
            break;
        }
        rate = next_rate(lo, hi);
    }
    Ok(Search {
        overload,
        best,
        steps: tried,
        steps_trials: trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::traffic::new_histogram;

    /// A device that forwards at most `cap` packets/s and a generator that offers at most
    /// `gen` packets/s.
    fn model(cap: f64, gen: f64) -> impl FnMut(Option<f64>) -> Result<Trial, String> {
        move |rate| {
            let offered = rate.unwrap_or(f64::MAX).min(gen);
            let got = offered.min(cap);
            Ok(Trial {
                target: rate,
                sent: offered as u64,
                received: got as u64,
                received_in_window: got as u64,
                bytes_in_window: 0,
                secs: 1.0,
                latency: new_histogram(),
                esp_errors: 0,
                foreign: 0,
                gen_errors: 0,
                gateway_busy: None,
            })
        }
    }

    #[test]
    fn finds_the_capacity_when_the_device_is_the_bottleneck() {
        let s = search(8, model(300_000.0, 500_000.0)).unwrap();
        assert_eq!(s.overload.rx_pps(), 300_000.0);
        // The first probe is the overload receive rate, which passes exactly.
        assert_eq!(s.steps[0], (300_000.0, true));
        assert!(!s.generator_limited());
        let best = s.best.unwrap().target.unwrap();
        assert!((297_000.0..=300_000.0).contains(&best), "{best}");
        assert!(s.steps.len() <= 8);
    }

    #[test]
    fn a_lossless_overload_is_a_generator_limited_pass() {
        // The device takes everything the generator can offer.
        let s = search(4, model(1e6, 400_000.0)).unwrap();
        assert!(s.generator_limited());
        assert_eq!(s.best.as_ref().unwrap().tx_pps(), 400_000.0);
        // Latency comes from the fastest passing rate-controlled trial, not the overload.
        assert!(s.latency_trial().unwrap().target.is_some());
    }

    #[test]
    fn loss_just_over_the_limit_fails() {
        // Capacity 0.4% under the overload receive rate would pass; 1% under fails.
        let mut calls = 0;
        let s = search(6, |rate| {
            calls += 1;
            let mut t = model(1e6, 1e6)(rate)?;
            if rate.is_none_or(|r| r > 600_000.0) {
                t.received = (t.sent as f64 * 0.99) as u64;
            }
            Ok(t)
        })
        .unwrap();
        assert!(calls <= 7);
        let best = s.best.unwrap().target.unwrap();
        assert!(best <= 600_000.0 && best > 550_000.0, "{best}");
    }

    #[test]
    fn a_rate_not_offered_in_full_passes_but_is_not_climbed_from() {
        let mut t = model(1e6, 1e6)(Some(1000.0)).unwrap();
        assert!(passes(&t) && offered_in_full(&t));
        t.sent = 900;
        t.received = 900;
        assert!(passes(&t));
        assert!(!offered_in_full(&t), "offered 90% of the rate");
        t.target = None;
        assert!(!offered_in_full(&t));
        t.received = 890;
        assert!(!passes(&t), "1.1% loss");
    }

    #[test]
    fn a_collapse_under_overload_is_climbed_out_of_geometrically() {
        // 1 000 packets/s get through under overload; 20 000/s would pass.
        let mut calls = 0;
        let s = search(4, |rate| {
            calls += 1;
            let mut t = model(20_000.0, 900_000.0)(rate)?;
            if rate.is_none() {
                t.received = 1000;
                t.received_in_window = 1000;
            }
            Ok(t)
        })
        .unwrap();
        assert_eq!(calls, 5);
        // 1 000 passes, then sqrt(1e3 * 9e5) = 30 000 fails, sqrt(1e3 * 3e4) = 5 477 passes,
        // sqrt(5 477 * 3e4) = 12 819 passes.
        let best = s.best.unwrap().tx_pps();
        assert!((12_000.0..=20_000.0).contains(&best), "{best}");
        assert_eq!(next_rate(100.0, 300.0), 200.0);
        assert_eq!(next_rate(0.0, 300.0), 150.0);
    }

    #[test]
    fn nothing_passes_when_everything_is_lost() {
        let s = search(5, model(0.0, 1000.0)).unwrap();
        assert!(s.best.is_none());
        assert!(
            s.steps.is_empty(),
            "overload received nothing: no rate to try"
        );
    }
}
