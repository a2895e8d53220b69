//! An index over a table of policies by their remote (destination) selectors, so that "the
//! first-installed policy whose selectors carry this packet" costs a few hash probes instead
//! of a scan of every policy: one probe per distinct prefix length among the remote selectors,
//! plus the policies whose remote selectors match everything.
//!
//! The policies live in slots of a table that fills a removed policy's slot with the last one
//! (`Vec::swap_remove`), so that removing one costs the same with a million as with ten: the
//! index holds slots, and the order in which policies were installed comes from the caller (an
//! installation sequence number per slot). Adding, removing and moving a policy touch only the
//! entries of its own remote prefixes.
//!
//! The index only narrows the candidates: the caller checks each one (local selectors, mode,
//! route-based peers) and the index returns the earliest-installed one that passes, which is
//! what a first-match scan over the policies in installation order returns.

use crate::sa::flat::{FlatIndex, PrefixKey};
use crate::sa::Selectors;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Set in a `by_prefix` value when more policies than the first share its prefix.
const MORE: u32 = 1 << 31;

/// Slots of a table of policies, by remote selector prefix, each prefix's in installation
/// order.
#[derive(Debug, Clone)]
pub struct SelectorIndex {
    /// The slot of the earliest-installed policy with a remote prefix equal to the key, with
    /// [`MORE`] set when others share it. Prefetchable, for batches (see [`Self::prefetch`]).
    by_prefix: FlatIndex<PrefixKey>,
    /// The further slots (in installation order) of the prefixes flagged [`MORE`]: two
    /// policies with the same remote prefix, as while a child is rekeyed.
    more: FxHashMap<PrefixKey, Vec<u32>>,
    /// Prefix lengths in use, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    /// Slots (in installation order) of the policies whose remote selectors match every
    /// address.
    any: Vec<u32>,
}

impl Default for SelectorIndex {
    fn default() -> Self {
        SelectorIndex {
            by_prefix: FlatIndex::new(PrefixKey::of(IpAddr::from([0u8; 4]), 0)),
            more: FxHashMap::default(),
            v4_lens: Vec::new(),
            v6_lens: Vec::new(),
            any: Vec::new(),
        }
    }
}

impl SelectorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the policy in `slot` (below 2^31), installed after every policy added before.
    pub fn push(&mut self, slot: usize, remote: &Selectors) {
        let pos = slot as u32;
        assert!(pos < MORE, "more than 2^31 policies");
        if remote.is_any() {
            self.any.push(pos);
            return;
        }
        for p in remote.prefixes() {
            let lens = if p.addr().is_ipv4() {
                &mut self.v4_lens
            } else {
                &mut self.v6_lens
            };
            if !lens.contains(&p.len()) {
                lens.push(p.len());
            }
            let k = PrefixKey::of(p.addr(), p.len());
            match self.by_prefix.get(&k) {
                None => {
                    self.by_prefix.insert(k, pos);
                }
                Some(v) if v & !MORE == pos => {}
                Some(v) => {
                    let rest = self.more.entry(k).or_default();
                    if !rest.contains(&pos) {
                        rest.push(pos);
                    }
                    self.by_prefix.insert(k, v | MORE);
                }
            }
        }
    }

    /// Forgets every policy.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Forgets the policy in `slot`, whose remote selectors are `remote`. The cost is that of
    /// its own prefixes (and of the other policies sharing them), whatever the table's size.
    pub fn remove(&mut self, slot: usize, remote: &Selectors) {
        let pos = slot as u32;
        if remote.is_any() {
            if let Some(i) = self.any.iter().position(|&p| p == pos) {
                self.any.remove(i);
            }
            return;
        }
        for p in remote.prefixes() {
            let k = PrefixKey::of(p.addr(), p.len());
            let Some(v) = self.by_prefix.get(&k) else {
                continue;
            };
            let rest = if v & MORE != 0 {
                self.more.get_mut(&k)
            } else {
                None
            };
            if v & !MORE == pos {
                match rest {
                    Some(rest) if !rest.is_empty() => {
                        let next = rest.remove(0);
                        let flag = if rest.is_empty() {
                            self.more.remove(&k);
                            0
                        } else {
                            MORE
                        };
                        self.by_prefix.insert(k, next | flag);
                    }
                    _ => {
                        self.more.remove(&k);
                        self.by_prefix.remove(&k);
                    }
                }
            } else if let Some(rest) = rest {
                if let Some(i) = rest.iter().position(|&q| q == pos) {
                    rest.remove(i);
                }
                if rest.is_empty() {
                    self.more.remove(&k);
                    self.by_prefix.insert(k, v & !MORE);
                }
            }
        }
    }

    /// The policy in slot `from`, whose remote selectors are `remote`, now lives in slot `to`
    /// (which no policy of the index holds): as `Vec::swap_remove` moves the last policy into
    /// the slot of a removed one. Its place in the installation order does not change.
    pub fn moved(&mut self, from: usize, to: usize, remote: &Selectors) {
        let (from, to) = (from as u32, to as u32);
        if remote.is_any() {
            if let Some(p) = self.any.iter_mut().find(|p| **p == from) {
                *p = to;
            }
            return;
        }
        for p in remote.prefixes() {
            let k = PrefixKey::of(p.addr(), p.len());
            let Some(v) = self.by_prefix.get(&k) else {
                continue;
            };
            if v & !MORE == from {
                self.by_prefix.insert(k, to | (v & MORE));
            } else if v & MORE != 0 {
                if let Some(q) = self
                    .more
                    .get_mut(&k)
                    .and_then(|r| r.iter_mut().find(|q| **q == from))
                {
                    *q = to;
                }
            }
        }
    }

    fn lens(&self, dst: IpAddr) -> &[u8] {
        if dst.is_ipv4() {
            &self.v4_lens
        } else {
            &self.v6_lens
        }
    }

    /// Starts loading the index slots a lookup of `dst` reads (one per prefix length in
    /// use): the first stage of a batch's lookups.
    #[inline]
    pub fn prefetch(&self, dst: IpAddr) {
        for &l in self.lens(dst) {
            self.by_prefix.prefetch(&PrefixKey::of(dst, l));
        }
    }

    /// The earliest-installed policy (by `order`, a slot's installation sequence number) whose
    /// remote selectors contain `dst`, before any other check: the policy a lookup of `dst`
    /// will most likely settle on. `order` is read only when several prefixes match.
    #[inline]
    pub fn candidate(&self, dst: IpAddr, order: impl Fn(usize) -> u64) -> Option<usize> {
        let mut best: Option<u32> = None;
        let hits = self
            .lens(dst)
            .iter()
            .filter_map(|&l| self.by_prefix.get(&PrefixKey::of(dst, l)))
            .map(|v| v & !MORE)
            .chain(self.any.first().copied());
        for p in hits {
            best = match best {
                Some(b) if order(b as usize) <= order(p as usize) => Some(b),
                _ => Some(p),
            };
        }
        best.map(|p| p as usize)
    }

    /// The earliest-installed policy (by `order`, a slot's installation sequence number) among
    /// those whose remote selectors contain `dst` and that pass `ok`. `order` is read only
    /// when a policy passed and another prefix's policies are still to be looked at.
    #[inline]
    pub fn first(
        &self,
        dst: IpAddr,
        order: impl Fn(usize) -> u64,
        mut ok: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        /// Lowers `best` to the first slot of `v` (installation order) that passes `ok`.
        #[inline(always)]
        fn scan(
            v: impl Iterator<Item = u32>,
            best: &mut Option<(u32, u64)>,
            order: &impl Fn(usize) -> u64,
            ok: &mut impl FnMut(usize) -> bool,
        ) {
            for p in v {
                let o = best.map(|_| order(p as usize));
                if let (Some((_, b)), Some(o)) = (*best, o) {
                    if o >= b {
                        break;
                    }
                }
                if ok(p as usize) {
                    *best = Some((p, o.unwrap_or_else(|| order(p as usize))));
                    break;
                }
            }
        }
        let mut best: Option<(u32, u64)> = None;
        for &l in self.lens(dst) {
            let k = PrefixKey::of(dst, l);
            if let Some(v) = self.by_prefix.get(&k) {
                let rest = if v & MORE != 0 {
                    self.more.get(&k).map_or(&[][..], |r| &r[..])
                } else {
                    &[]
                };
                let all = std::iter::once(v & !MORE).chain(rest.iter().copied());
                scan(all, &mut best, &order, &mut ok);
            }
        }
        scan(self.any.iter().copied(), &mut best, &order, &mut ok);
        best.map(|(p, _)| p as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::Prefix;
    use proptest::prelude::*;

    /// Addresses drawn often from a handful of networks, so that policies share prefixes.
    fn address() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), (0u32..4).prop_map(|x| x << 24)]
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Install a policy: remote prefixes, and whether it passes the caller's checks.
        Push(Vec<(u32, u8)>, bool),
        /// Remove the policy in this slot (of those present), moving the last one into it.
        Remove(prop::sample::Index),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (prop::collection::vec((address(), 0u8..=32), 0..3), any::<bool>())
                .prop_map(|(ps, ok)| Op::Push(ps, ok)),
            2 => any::<prop::sample::Index>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Policies installed and removed in any order, their slots reused as a table with
        /// `swap_remove` reuses them: the index answers what a first-match scan over the
        /// policies in installation order answers.
        #[test]
        fn matches_a_first_match_scan_in_installation_order(
            ops in prop::collection::vec(op(), 0..60),
            probes in prop::collection::vec(address(), 1..40),
        ) {
            // Slots: (installation sequence, remote selectors, passes).
            let mut slots: Vec<(u64, Selectors, bool)> = Vec::new();
            let mut ix = SelectorIndex::new();
            let mut seq = 0u64;
            let check = |slots: &[(u64, Selectors, bool)], ix: &SelectorIndex|
                -> Result<(), TestCaseError> {
                let mut by_order: Vec<usize> = (0..slots.len()).collect();
                by_order.sort_by_key(|&i| slots[i].0);
                for &x in &probes {
                    let ip = IpAddr::from(x.to_be_bytes());
                    let want = by_order
                        .iter()
                        .copied()
                        .find(|&i| slots[i].2 && slots[i].1.matches(ip));
                    let order = |i: usize| slots[i].0;
                    prop_assert_eq!(ix.first(ip, order, |i| slots[i].2), want);
                    // The candidate is never installed after the answer: prefetching it is
                    // never wasted when the answer is the first matching policy.
                    if let Some(w) = want {
                        let c = ix.candidate(ip, order);
                        prop_assert!(c.is_some_and(|c| slots[c].0 <= slots[w].0));
                    }
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Push(ps, ok) => {
                        let ps = ps
                            .into_iter()
                            .map(|(a, l)| Prefix::new(IpAddr::from(a.to_be_bytes()), l).unwrap())
                            .collect();
                        let sel = Selectors::new(ps);
                        ix.push(slots.len(), &sel);
                        slots.push((seq, sel, ok));
                        seq += 1;
                    }
                    Op::Remove(i) if !slots.is_empty() => {
                        let i = i.index(slots.len());
                        let last = slots.len() - 1;
                        ix.remove(i, &slots[i].1);
                        if i != last {
                            ix.moved(last, i, &slots[last].1);
                        }
                        slots.swap_remove(i);
                    }
                    Op::Remove(_) => {}
                }
                check(&slots, &ix)?;
            }
        }
    }
}
