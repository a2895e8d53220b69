//! Why the endpoint or an IKE SA dropped or ignored a datagram: one reason per datagram, counted
//! per IKE SA and in total, and a token bucket that keeps a flood of drops from flooding the log.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Why a datagram was dropped or ignored. Every datagram the endpoint does not act on raises
/// exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The datagram does not decode (header, payload chain, padding, unknown version).
    Malformed,
    /// No IKE SA has the SPI it names.
    UnknownSpi,
    /// The SK or SKF payload's ICV did not verify.
    Integrity,
    /// The SK or SKF payload's ICV verified but its padding did not (a Pad Length beyond the
    /// plaintext, or an AES-CBC ciphertext that is not whole blocks): only a peer holding the
    /// keys can send one. Counted and dropped like any bad message, with no notify of its own,
    /// so it offers no padding oracle.
    BadPadding,
    /// A request whose message ID is outside the window, or a response to no request of ours.
    MessageId,
    /// A fragment that was not negotiated, not wanted, out of range, or does not reassemble.
    Fragment,
    /// An exchange or payloads the IKE SA's state does not allow (an unencrypted message on an
    /// established SA, a message of the wrong direction, an exchange the state forbids).
    Unexpected,
    /// A retransmitted request, answered from the cache of the last response.
    Retransmit,
    /// A message for an IKE SA that is being removed.
    DeadSa,
    /// An IKE_SA_INIT request refused because the half-open IKE SAs reached their total limit.
    HalfOpenLimit,
    /// An IKE_SA_INIT request refused because its source address has as many half-open IKE SAs
    /// as one source may have.
    HalfOpenLimitSource,
    /// An IKE_SA_INIT request whose COOKIE is not one we made (or made with a secret retired
    /// too long ago).
    InvalidCookie,
    /// An IKE_SA_INIT request that no connection matched.
    NoConnection,
    /// An IKE_SA_INIT request refused with an error notify (no proposal, wrong KE group).
    InitRefused,
}

impl DropReason {
    /// Every reason, in the order reports show them.
    pub const ALL: [DropReason; 14] = [
        DropReason::Malformed,
        DropReason::UnknownSpi,
        DropReason::Integrity,
        DropReason::BadPadding,
        DropReason::MessageId,
        DropReason::Fragment,
        DropReason::Unexpected,
        DropReason::Retransmit,
        DropReason::DeadSa,
        DropReason::HalfOpenLimit,
        DropReason::HalfOpenLimitSource,
        DropReason::InvalidCookie,
        DropReason::NoConnection,
        DropReason::InitRefused,
    ];

    /// The name in `espctl ike stats`, `espctl ike list` and the logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::Integrity => "integrity",
            DropReason::BadPadding => "bad_padding",
            DropReason::MessageId => "message_id",
            DropReason::Fragment => "fragment",
            DropReason::Unexpected => "unexpected",
            DropReason::Retransmit => "retransmit",
            DropReason::DeadSa => "dead_sa",
            DropReason::HalfOpenLimit => "half_open_limit",
            DropReason::HalfOpenLimitSource => "half_open_limit_source",
            DropReason::InvalidCookie => "invalid_cookie",
            DropReason::NoConnection => "no_connection",
            DropReason::InitRefused => "init_refused",
        }
    }

    /// The reason for a message that does not decode: an ICV that does not verify is an
    /// integrity failure, bad padding under a good ICV a padding drop, a fragment where none is
    /// expected a fragment drop, the rest malformed.
    pub fn of_decode(e: &crate::ike::message::DecodeError) -> DropReason {
        use crate::ike::message::DecodeError as E;
        match e {
            E::Integrity => DropReason::Integrity,
            E::BadPadding => DropReason::BadPadding,
            E::Fragment => DropReason::Fragment,
            _ => DropReason::Malformed,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    /// Count one datagram dropped for `r`.
    pub fn add(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }

    /// The count for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

/// A token bucket per kind of log line: the first `burst` lines of a kind pass, then one more
/// each `interval`; the lines held back are counted and reported with the next one that passes
/// ("N more suppressed"). At most [`MAX_KINDS`] kinds are tracked (idle ones are forgotten
/// first); lines of kinds beyond are held back and only counted ([`LogThrottle::untracked`]).
pub struct LogThrottle<K> {
    burst: u32,
    interval: Duration,
    kinds: HashMap<K, Bucket>,
    untracked: u64,
}

/// Kinds of log lines a [`LogThrottle`] tracks at most.
pub const MAX_KINDS: usize = 256;

struct Bucket {
    tokens: u32,
    refilled: Instant,
    suppressed: u64,
}

impl<K: std::hash::Hash + Eq> LogThrottle<K> {
    /// At most `burst` lines at once, then one per `interval`, for each kind.
    pub fn new(burst: u32, interval: Duration) -> Self {
        LogThrottle {
            burst: burst.max(1),
            interval: interval.max(Duration::from_millis(1)),
            kinds: HashMap::new(),
            untracked: 0,
        }
    }

    /// Lines held back because their kind could not be tracked.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Whether a line of `kind` may be written at `now`: `Some(n)` with the number of lines of
    /// that kind held back since the last one written, or `None` to hold this one back.
    pub fn admit(&mut self, kind: K, now: Instant) -> Option<u64> {
        let burst = self.burst;
        if self.kinds.len() >= MAX_KINDS && !self.kinds.contains_key(&kind) {
            // Forget the kinds whose bucket refilled and that hold nothing back.
            let full = self.interval * burst;
            self.kinds.retain(|_, b| {
                b.suppressed > 0 || now.saturating_duration_since(b.refilled) < full
            });
            if self.kinds.len() >= MAX_KINDS {
                self.untracked += 1;
                return None;
            }
        }
        let b = self.kinds.entry(kind).or_insert(Bucket {
            tokens: burst,
            refilled: now,
            suppressed: 0,
        });
        let elapsed = now.saturating_duration_since(b.refilled);
        let earned = elapsed.as_nanos() / self.interval.as_nanos();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(earned).min(burst);
            b.refilled = now;
        }
        if b.tokens == 0 {
            b.suppressed += 1;
            return None;
        }
        b.tokens -= 1;
        Some(std::mem::take(&mut b.suppressed))
    }

    /// Take the counts of lines held back that no later line reported, for a periodic
    /// summary: (kind, count) for each kind with a nonzero count.
    pub fn take_suppressed(&mut self) -> Vec<(&K, u64)> {
        self.kinds
            .iter_mut()
            .filter(|(_, b)| b.suppressed > 0)
            .map(|(k, b)| (k, std::mem::take(&mut b.suppressed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_counters_add_up() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        let mut c = DropCounters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                c.add(*r);
            }
        }
        assert_eq!(c.get(DropReason::Malformed), 1);
        assert_eq!(c.get(DropReason::InitRefused), 14);
        assert_eq!(c.total(), (1..=14).sum::<u64>());
    }

    #[test]
    fn throttle_passes_a_burst_then_one_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(3, Duration::from_secs(10));
        let passed: Vec<Option<u64>> = (0..10).map(|_| t.admit("a", t0)).collect();
        assert_eq!(&passed[..3], &[Some(0), Some(0), Some(0)]);
        assert!(passed[3..].iter().all(Option::is_none));
        // Another kind has its own bucket.
        assert_eq!(t.admit("b", t0), Some(0));
        assert_eq!(t.admit("a", t0 + Duration::from_secs(5)), None);
        // One interval later one line passes and reports the 8 held back.
        assert_eq!(t.admit("a", t0 + Duration::from_secs(10)), Some(8));
        assert_eq!(t.admit("a", t0 + Duration::from_secs(11)), None);
        let s = t.take_suppressed();
        assert_eq!(s, vec![(&"a", 1)]);
        assert!(t.take_suppressed().is_empty());
    }

    #[test]
    fn throttle_tracks_a_bounded_number_of_kinds() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(1, Duration::from_secs(1));
        for k in 0..MAX_KINDS {
            assert_eq!(t.admit(k, t0), Some(0));
        }
        // Full of busy kinds: a new kind is held back and counted.
        assert_eq!(t.admit(MAX_KINDS, t0), None);
        assert_eq!(t.untracked(), 1);
        // Once the others are idle they are forgotten and the new kind is tracked.
        assert_eq!(t.admit(MAX_KINDS, t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(t.kinds.len(), 1);
    }
}
