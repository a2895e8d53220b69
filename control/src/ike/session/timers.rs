//! The endpoint's timers: one deadline per IKE SA in an ordered set, so the earliest is found,
//! set and cleared in O(log n) whatever the number of IKE SAs. Deadlines at the same instant
//! fire in the order their IKE SAs were created (a sequence number, not a hash order).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Deadlines of IKE SAs, keyed by their local SPI.
#[derive(Default)]
pub struct Timers {
    /// (deadline, creation sequence, SPI), earliest first.
    queue: BTreeSet<(Instant, u64, u64)>,
    /// SPI -> (its creation sequence, its deadline if any).
    by_spi: HashMap<u64, (u64, Option<Instant>)>,
    next_seq: u64,
}

impl Timers {
    /// Register an IKE SA (no deadline yet). Registering again keeps its sequence number.
    pub fn register(&mut self, spi: u64) {
        if !self.by_spi.contains_key(&spi) {
            self.by_spi.insert(spi, (self.next_seq, None));
            self.next_seq += 1;
        }
    }

    /// Forget an IKE SA and its deadline.
    pub fn remove(&mut self, spi: u64) {
        if let Some((seq, Some(at))) = self.by_spi.remove(&spi) {
            self.queue.remove(&(at, seq, spi));
        }
    }

    /// Set (or clear, with `None`) the deadline of a registered IKE SA.
    pub fn set(&mut self, spi: u64, at: Option<Instant>) {
        let Some((seq, old)) = self.by_spi.get_mut(&spi) else {
            return;
        };
        if *old == at {
            return;
        }
        if let Some(o) = *old {
            self.queue.remove(&(o, *seq, spi));
        }
        if let Some(a) = at {
            self.queue.insert((a, *seq, spi));
        }
        *old = at;
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _, _)| *at)
    }

    /// The SPIs whose deadline is at or before `now`, earliest first, same instants in creation
    /// order. Their deadlines stay set until [`Timers::set`] changes them.
    pub fn due(&self, now: Instant) -> Vec<u64> {
        self.queue
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .map(|(_, _, spi)| *spi)
            .collect()
    }

    /// How many IKE SAs are registered.
    pub fn len(&self) -> usize {
        self.by_spi.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_spi.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_and_same_instant_in_creation_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        // SPIs whose numeric and hash orders differ from the creation order.
        for spi in [900, 5, 77, 3] {
            t.register(spi);
        }
        t.set(900, Some(t0 + Duration::from_secs(2)));
        t.set(5, Some(t0 + Duration::from_secs(2)));
        t.set(77, Some(t0 + Duration::from_secs(1)));
        t.set(3, Some(t0 + Duration::from_secs(2)));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.due(t0), Vec::<u64>::new());
        assert_eq!(t.due(t0 + Duration::from_secs(2)), vec![77, 900, 5, 3]);
        // Moving and clearing deadlines.
        t.set(77, None);
        t.set(900, Some(t0 + Duration::from_secs(9)));
        assert_eq!(t.due(t0 + Duration::from_secs(2)), vec![5, 3]);
        t.remove(5);
        t.register(3);
        assert_eq!(t.due(t0 + Duration::from_secs(9)), vec![3, 900]);
        assert_eq!(t.len(), 3);
        t.set(12345, Some(t0));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
    }
}
