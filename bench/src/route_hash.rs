//! The route table esprit had until decision 0025, kept as the reference `esprit-bench routes`
//! measures against: one hash map per prefix length, the lengths in use probed from the
//! longest down (decision 0006). Only what the measurement needs: insert, remove, lookup.

use dataplane::sa::{Prefix, RouteAction};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// One hash map per prefix length, per family.
#[derive(Debug, Clone, Default)]
pub struct HashPerLength {
    v4: FxHashMap<(u8, u32), RouteAction>,
    v4_lens: Vec<u8>,
    v6: FxHashMap<(u8, u128), RouteAction>,
    v6_lens: Vec<u8>,
}

fn insert_len(lens: &mut Vec<u8>, len: u8) {
    if !lens.contains(&len) {
        lens.push(len);
        lens.sort_unstable_by(|a, b| b.cmp(a));
    }
}

impl HashPerLength {
    /// Adds or replaces the route for `prefix`.
    pub fn insert(&mut self, prefix: Prefix, action: RouteAction) {
        match prefix.addr() {
            IpAddr::V4(a) => {
                self.v4.insert((prefix.len(), u32::from(a)), action);
                insert_len(&mut self.v4_lens, prefix.len());
            }
            IpAddr::V6(a) => {
                self.v6.insert((prefix.len(), u128::from(a)), action);
                insert_len(&mut self.v6_lens, prefix.len());
            }
        }
    }

    /// Removes the route for `prefix`; true if there was one.
    pub fn remove(&mut self, prefix: Prefix) -> bool {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.remove(&(prefix.len(), u32::from(a))).is_some(),
            IpAddr::V6(a) => self.v6.remove(&(prefix.len(), u128::from(a))).is_some(),
        }
    }

    /// Heap bytes of the hash maps (by capacity).
    pub fn memory_bytes(&self) -> usize {
        self.v4.capacity() * (std::mem::size_of::<((u8, u32), RouteAction)>() + 1)
            + self.v6.capacity() * (std::mem::size_of::<((u8, u128), RouteAction)>() + 1)
    }

    /// The action of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<RouteAction> {
        match dst {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4_lens.iter().find_map(|&l| {
                    let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                    self.v4.get(&(l, a & m)).copied()
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6_lens.iter().find_map(|&l| {
                    let m = if l == 0 { 0 } else { u128::MAX << (128 - l) };
                    self.v6.get(&(l, a & m)).copied()
                })
            }
        }
    }
}
