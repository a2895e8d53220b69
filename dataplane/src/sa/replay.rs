//! Anti-replay window (RFC 4303 §3.4.3) with extended sequence numbers (RFC 4303 Appendix A),
//! kept as a ring of 64-bit words in the style of RFC 6479: advancing the window clears whole
//! words and never shifts the bitmap.
//!
//! Use: `check` before the ICV is verified (cheap rejection of replays), `update` only after
//! the ICV verified, so forged packets cannot move the window.

/// Largest configurable window, in packets.
pub const MAX_WINDOW: u32 = 1 << 20;

/// Why `check` refused a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Already received.
    #[error("sequence number already received")]
    Duplicate,
    /// Left of the window.
    #[error("sequence number older than the replay window")]
    TooOld,
    /// Sequence number zero is never sent (RFC 4303 §3.3.3).
    #[error("sequence number zero")]
    Zero,
}

/// Receive-side sequence state of one inbound SA. Invariant: every bit for a sequence number
/// in `(top - size, top]` tells whether it was received; bits for numbers above `top` are 0.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    size: u64,
    top: u64,
    bitmap: Box<[u64]>,
    mask: u64,
    esn: bool,
}

impl ReplayWindow {
    /// Starts loading the bitmap into the cache (it lives apart from the SA).
    #[inline]
    pub fn prefetch(&self) {
        crate::prefetch::value(&*self.bitmap);
    }

    /// A window of `size` packets (0 disables replay checking) whose highest received number so
    /// far is `top` (numbers up to `top` inside the window count as received). With `esn`, `top`
    /// is the 64-bit number and received 32-bit numbers are widened per RFC 4303 Appendix A.
    /// `size` is clamped to [`MAX_WINDOW`].
    pub fn new(size: u32, top: u64, esn: bool) -> Self {
        let size = u64::from(size.min(MAX_WINDOW));
        // One spare word so that the word holding `top` never aliases the oldest word in use.
        let words = (size.div_ceil(64) + 1).next_power_of_two().max(2);
        let mut w = ReplayWindow {
            size,
            top: if esn { top } else { top & 0xffff_ffff },
            bitmap: vec![0u64; words as usize].into_boxed_slice(),
            mask: words - 1,
            esn,
        };
        let lowest = w.top.saturating_sub(size.saturating_sub(1)).max(1);
        if size > 0 {
            for s in lowest..=w.top {
                w.set(s);
            }
        }
        w
    }

    /// Forgets every received number and sets the highest to `top` (as a new SA would start):
    /// benchmarks replay the same packets, and a restored SA restarts from a saved point.
    pub fn reset(&mut self, top: u64) {
        self.bitmap.iter_mut().for_each(|w| *w = 0);
        self.top = if self.esn { top } else { top & 0xffff_ffff };
    }

    /// Configured window size in packets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Highest sequence number received (64-bit with ESN).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Widens a received 32-bit sequence number to 64 bits (RFC 4303 Appendix A2.2); the
    /// identity without ESN.
    #[inline]
    pub fn infer(&self, seq_lo: u32) -> u64 {
        if !self.esn {
            return u64::from(seq_lo);
        }
        let w = self.size.max(1);
        let tl = self.top & 0xffff_ffff;
        let th = self.top >> 32;
        let s = u64::from(seq_lo);
        let hi = if tl >= w - 1 {
            // Window within one subspace: below its bottom means the next subspace.
            if s >= tl + 1 - w {
                th
            } else {
                th + 1
            }
        } else {
            // Window spans two subspaces: high numbers belong to the previous one.
            let bottom = (tl + (1 << 32) + 1 - w) & 0xffff_ffff;
            if s >= bottom {
                th.saturating_sub(1)
            } else {
                th
            }
        };
        (hi << 32) | s
    }

    /// Checks a (widened) sequence number without changing state.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::Zero);
        }
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        if self.bitmap[self.word(seq)] & Self::bit(seq) != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Records an authenticated sequence number. Call only after `check` passed and the ICV
    /// verified; returns the same result as `check` would now (a concurrent duplicate in the
    /// same batch is refused here).
    #[inline]
    pub fn update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if self.size == 0 {
            self.top = self.top.max(seq);
            return Ok(());
        }
        if seq > self.top {
            let old_word = self.top >> 6;
            let new_word = seq >> 6;
            let clear = (new_word - old_word).min(self.mask + 1);
            for i in 1..=clear {
                let idx = ((old_word + i) & self.mask) as usize;
                self.bitmap[idx] = 0;
            }
            self.top = seq;
        }
        self.set(seq);
        Ok(())
    }

    #[inline]
    fn word(&self, seq: u64) -> usize {
        ((seq >> 6) & self.mask) as usize
    }

    #[inline]
    fn bit(seq: u64) -> u64 {
        1u64 << (seq & 63)
    }

    #[inline]
    fn set(&mut self, seq: u64) {
        let w = self.word(seq);
        self.bitmap[w] |= Self::bit(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The obviously correct model: remember every accepted number.
    struct Model {
        size: u64,
        top: u64,
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn accept(&mut self, seq: u64) -> bool {
            let ok = seq != 0
                && (self.size == 0
                    || seq > self.top
                    || (self.top - seq < self.size && !self.seen.contains(&seq)));
            if ok {
                self.seen.insert(seq);
                self.top = self.top.max(seq);
            }
            ok
        }
    }

    fn run(size: u32, start: u64, steps: &[i64]) {
        let mut w = ReplayWindow::new(size, start, true);
        let mut m = Model {
            size: u64::from(size),
            top: start,
            seen: (start
                .saturating_sub(u64::from(size).saturating_sub(1))
                .max(1)..=start)
                .filter(|_| size > 0)
                .collect(),
        };
        for &d in steps {
            let seq = m.top.saturating_add_signed(d);
            let got = w.check(seq).is_ok() && w.update(seq).is_ok();
            assert_eq!(got, m.accept(seq), "seq {seq} top {} size {size}", m.top);
            assert_eq!(w.top(), m.top);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn matches_model_small_windows(
            size in prop_oneof![Just(0u32), Just(1), Just(32), Just(64), Just(65), 1u32..200],
            start in prop_oneof![Just(0u64), 0u64..1000, Just(u64::from(u32::MAX) - 50)],
            steps in prop::collection::vec(-300i64..300, 1..400),
        ) {
            run(size, start, &steps);
        }

        #[test]
        fn matches_model_large_windows(
            size in prop_oneof![Just(1024u32), Just(4096), Just(65536)],
            steps in prop::collection::vec(prop_oneof![-70000i64..70000, -5i64..5, Just(200_000)], 1..300),
        ) {
            run(size, 100_000, &steps);
        }

        #[test]
        fn esn_inference_recovers_the_sender_number(
            size in prop_oneof![Just(32u32), Just(1024), Just(65536)],
            top in 1u64..(1u64 << 40),
            back in 0u64..65536,
            ahead in 0u64..(1u64 << 31),
        ) {
            let w = ReplayWindow::new(size, top, true);
            // Anything inside the window or ahead of it by less than 2^32 - size is recovered.
            let back = back % u64::from(size);
            if let Some(s) = top.checked_sub(back).filter(|s| *s > 0) {
                prop_assert_eq!(w.infer(s as u32), s);
            }
            let s = top + ahead;
            prop_assert_eq!(w.infer(s as u32), s);
        }
    }

    #[test]
    fn esn_crosses_the_32_bit_boundary() {
        let mut w = ReplayWindow::new(1024, 0xffff_fff0, true);
        for s in 0xffff_fff1u64..=0x1_0000_0010 {
            let got = w.infer(s as u32);
            assert_eq!(got, s);
            w.update(got).unwrap();
        }
        // A late packet from before the boundary is widened into the previous subspace.
        assert_eq!(w.infer(0xffff_fffe), 0xffff_fffe);
        assert_eq!(w.check(0xffff_fffe), Err(ReplayError::Duplicate));
        assert_eq!(w.check(0xffff_f000), Err(ReplayError::TooOld));
        // Below the window, Appendix A guesses the next subspace; the ICV (whose AAD holds the
        // high half) then fails, which is how such a packet is refused.
        assert_eq!(w.infer(0xffff_f000), 0x1_ffff_f000);
    }

    #[test]
    fn without_esn_numbers_are_32_bit() {
        let w = ReplayWindow::new(64, 0xffff_ffff, false);
        assert_eq!(w.infer(5), 5);
        assert_eq!(w.check(5), Err(ReplayError::TooOld));
        assert_eq!(w.check(0), Err(ReplayError::Zero));
    }

    #[test]
    fn duplicate_in_flight_is_refused_at_update() {
        let mut w = ReplayWindow::new(1024, 0, false);
        assert!(w.check(7).is_ok());
        assert!(w.check(7).is_ok());
        assert!(w.update(7).is_ok());
        assert_eq!(w.update(7), Err(ReplayError::Duplicate));
    }
}
