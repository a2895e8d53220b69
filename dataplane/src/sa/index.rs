//! An index over a list of policies by their remote (destination) selectors, so that "the
//! first policy whose selectors carry this packet" costs a few hash probes instead of a scan
//! of every policy: one probe per distinct prefix length among the remote selectors, plus
//! the policies whose remote selectors match everything.
//!
//! The index only narrows the candidates: the caller checks each one (local selectors, mode,
//! route-based peers) and the index returns the lowest position that passes, which is what the
//! first-match scan it replaces returns.

use crate::sa::flat::{FlatIndex, PrefixKey};
use crate::sa::Selectors;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Set in a `by_prefix` value when more policies than the first share its prefix.
const MORE: u32 = 1 << 31;

/// Positions of a list of policies, by remote selector prefix.
#[derive(Debug, Clone)]
pub struct SelectorIndex {
    /// The lowest position of the policies with a remote prefix equal to the key, with
    /// [`MORE`] set when others share it. Prefetchable, for batches (see [`Self::prefetch`]).
    by_prefix: FlatIndex<PrefixKey>,
    /// The further positions (ascending) of the prefixes flagged [`MORE`]: two policies with
    /// the same remote prefix, as while a child is rekeyed.
    more: FxHashMap<PrefixKey, Vec<u32>>,
    /// Prefix lengths in use, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    /// Positions (ascending) of the policies whose remote selectors match every address.
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

    /// Adds the policy at `pos` (below 2^31), which must be above every position added before
    /// (policies are appended).
    pub fn push(&mut self, pos: usize, remote: &Selectors) {
        let pos = pos as u32;
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
                    if rest.last() != Some(&pos) {
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

    /// Drops the positions in `removed` (ascending) and renumbers the others as a
    /// `Vec::retain` over the policies does.
    pub fn remove(&mut self, removed: &[u32]) {
        if removed.is_empty() {
            return;
        }
        let fix = |v: &mut Vec<u32>| {
            v.retain(|p| removed.binary_search(p).is_err());
            for p in v.iter_mut() {
                *p -= removed.partition_point(|r| r < p) as u32;
            }
        };
        fix(&mut self.any);
        let mut more = std::mem::take(&mut self.more);
        self.by_prefix.retain_map(|k, v| {
            let mut all = vec![v & !MORE];
            if v & MORE != 0 {
                all.extend(more.remove(&k).unwrap_or_default());
            }
            fix(&mut all);
            let (&first, rest) = all.split_first()?;
            if rest.is_empty() {
                Some(first)
            } else {
                more.insert(k, rest.to_vec());
                Some(first | MORE)
            }
        });
        self.more = more;
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

    /// The lowest position whose remote selectors contain `dst`, before any other check:
    /// the policy a lookup of `dst` will most likely settle on.
    #[inline]
    pub fn candidate(&self, dst: IpAddr) -> Option<usize> {
        let best = self
            .lens(dst)
            .iter()
            .filter_map(|&l| self.by_prefix.get(&PrefixKey::of(dst, l)))
            .map(|v| v & !MORE)
            .chain(self.any.first().copied())
            .min();
        best.map(|p| p as usize)
    }

    /// The lowest position among the policies whose remote selectors contain `dst` and that
    /// pass `ok`.
    #[inline]
    pub fn first(&self, dst: IpAddr, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        /// Lowers `best` to the first position of `v` (ascending) that passes `ok`.
        #[inline(always)]
        fn scan(
            v: impl Iterator<Item = u32>,
            best: &mut Option<u32>,
            ok: &mut impl FnMut(usize) -> bool,
        ) {
            for p in v {
                if best.is_some_and(|b| p >= b) {
                    break;
                }
                if ok(p as usize) {
                    *best = Some(p);
                    break;
                }
            }
        }
        let mut best: Option<u32> = None;
        for &l in self.lens(dst) {
            let k = PrefixKey::of(dst, l);
            if let Some(v) = self.by_prefix.get(&k) {
                let rest = if v & MORE != 0 {
                    self.more.get(&k).map_or(&[][..], |r| &r[..])
                } else {
                    &[]
                };
                let all = std::iter::once(v & !MORE).chain(rest.iter().copied());
                scan(all, &mut best, &mut ok);
            }
        }
        scan(self.any.iter().copied(), &mut best, &mut ok);
        best.map(|p| p as usize)
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

    proptest! {
        #[test]
        fn matches_a_first_match_scan(
            policies in prop::collection::vec(
                (prop::collection::vec((address(), 0u8..=32), 0..3), any::<bool>()), 0..40),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            probes in prop::collection::vec(address(), 1..60),
        ) {
            let mut list: Vec<(Selectors, bool)> = policies
                .into_iter()
                .map(|(ps, ok)| {
                    let ps = ps
                        .into_iter()
                        .map(|(a, l)| Prefix::new(IpAddr::from(a.to_be_bytes()), l).unwrap())
                        .collect();
                    (Selectors::new(ps), ok)
                })
                .collect();
            let mut ix = SelectorIndex::new();
            for (i, (s, _)) in list.iter().enumerate() {
                ix.push(i, s);
            }
            if !list.is_empty() {
                let mut gone: Vec<u32> =
                    removed.iter().map(|r| r.index(list.len()) as u32).collect();
                gone.sort_unstable();
                gone.dedup();
                ix.remove(&gone);
                let mut i = 0;
                list.retain(|_| {
                    i += 1;
                    gone.binary_search(&(i - 1)).is_err()
                });
            }
            for x in probes {
                let ip = IpAddr::from(x.to_be_bytes());
                let want = list.iter().position(|(s, ok)| *ok && s.matches(ip));
                prop_assert_eq!(ix.first(ip, |p| list[p].1), want);
                // The candidate is never above the answer: prefetching it is never wasted
                // when the answer is the lowest matching policy.
                if let Some(w) = want {
                    prop_assert!(ix.candidate(ip).is_some_and(|c| c <= w));
                }
            }
        }
    }
}
