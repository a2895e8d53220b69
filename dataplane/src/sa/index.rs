//! An index over a list of policies by their remote (destination) selectors, so that "the
//! first policy whose selectors carry this packet" costs a few hash probes instead of a scan
//! of every policy: one probe per distinct prefix length among the remote selectors, plus
//! the policies whose remote selectors match everything.
//!
//! The index only narrows the candidates: the caller checks each one (local selectors, mode,
//! route-based peers) and the index returns the lowest position that passes, which is what the
//! first-match scan it replaces returns.

use crate::sa::Selectors;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// A prefix as a hash key: the network address (IPv4 in the low 32 bits), its length, and
/// its family.
type Key = (u128, u8, bool);

/// Positions of a list of policies, by remote selector prefix.
#[derive(Debug, Clone, Default)]
pub struct SelectorIndex {
    /// Positions (ascending) of the policies with a remote prefix equal to the key.
    by_prefix: FxHashMap<Key, Vec<u32>>,
    /// Prefix lengths in use, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    /// Positions (ascending) of the policies whose remote selectors match every address.
    any: Vec<u32>,
}

fn key(addr: IpAddr, len: u8) -> Key {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u128::from(u32::from(a) & m), len, false)
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(a) & m, len, true)
        }
    }
}

impl SelectorIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the policy at `pos`, which must be above every position added before (policies
    /// are appended).
    pub fn push(&mut self, pos: usize, remote: &Selectors) {
        let pos = pos as u32;
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
            let v = self.by_prefix.entry(key(p.addr(), p.len())).or_default();
            if v.last() != Some(&pos) {
                v.push(pos);
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
        self.by_prefix.retain(|_, v| {
            fix(v);
            !v.is_empty()
        });
    }

    /// The lowest position among the policies whose remote selectors contain `dst` and that
    /// pass `ok`.
    #[inline]
    pub fn first(&self, dst: IpAddr, mut ok: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut best: Option<u32> = None;
        let mut scan = |v: &[u32], best: &mut Option<u32>| {
            for &p in v {
                if best.is_some_and(|b| p >= b) {
                    break;
                }
                if ok(p as usize) {
                    *best = Some(p);
                    break;
                }
            }
        };
        let lens = if dst.is_ipv4() {
            &self.v4_lens
        } else {
            &self.v6_lens
        };
        for &l in lens {
            if let Some(v) = self.by_prefix.get(&key(dst, l)) {
                scan(v, &mut best);
            }
        }
        scan(&self.any, &mut best);
        best.map(|p| p as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa::Prefix;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_first_match_scan(
            policies in prop::collection::vec(
                (prop::collection::vec((any::<u32>(), 0u8..=32), 0..3), any::<bool>()), 0..40),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            probes in prop::collection::vec(any::<u32>(), 1..60),
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
            }
        }
    }
}
