//! An open-addressing hash index from small keys to positions, whose slot for a key can be
//! prefetched before it is read.
//!
//! The SA tables use it where a batch of packets looks up keys in tables far larger than the
//! cache: the worker first asks the CPU to load every packet's slot ([`FlatIndex::prefetch`]),
//! then reads them, so the cache misses of a batch overlap instead of coming one after
//! another. A general-purpose map cannot do this because it does not say where a key's slot is.
//!
//! Linear probing over a power-of-two array of (key, value) slots, kept at most half full, so a
//! lookup reads one or two neighbouring slots; removal shifts the following slots back
//! (no tombstones), so lookups never slow down after many removals.

use std::net::IpAddr;

/// A key the index can hash. Invariant: equal keys hash equally.
pub trait FlatKey: Copy + Eq {
    /// A 64-bit hash of the key whose high bits are well mixed.
    fn flat_hash(&self) -> u64;
}

/// Mixes `x` so that its high bits depend on every input bit (a multiplicative hash).
#[inline]
fn mix(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

impl FlatKey for u32 {
    #[inline]
    fn flat_hash(&self) -> u64 {
        mix(u64::from(*self)).wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

/// A prefix as a key: network address (IPv4 in the low 32 bits), length and family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    /// The network address, host bits zero.
    pub addr: u128,
    /// The prefix length.
    pub len: u8,
    /// True for IPv6.
    pub v6: bool,
}

impl PrefixKey {
    /// The key of the prefix of length `len` that contains `addr`.
    #[inline]
    pub fn of(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                PrefixKey {
                    addr: u128::from(u32::from(a) & m),
                    len,
                    v6: false,
                }
            }
            IpAddr::V6(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                PrefixKey {
                    addr: u128::from(a) & m,
                    len,
                    v6: true,
                }
            }
        }
    }
}

impl FlatKey for PrefixKey {
    #[inline]
    fn flat_hash(&self) -> u64 {
        let folded = (self.addr as u64) ^ ((self.addr >> 64) as u64).rotate_left(17);
        mix(folded ^ (u64::from(self.len) << 56) ^ (u64::from(self.v6) << 63))
            .wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

/// Marks an empty slot (no stored value may equal it).
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot<K> {
    key: K,
    val: u32,
}

/// The index. Values are below `u32::MAX`.
#[derive(Debug, Clone)]
pub struct FlatIndex<K: FlatKey> {
    slots: Vec<Slot<K>>,
    /// `slots.len() - 1`; the length is a power of two.
    mask: usize,
    /// Right shift that turns a hash into a slot number.
    shift: u32,
    len: usize,
    /// The key stored in empty slots (never compared: emptiness is `val == EMPTY`).
    filler: K,
}

impl<K: FlatKey> FlatIndex<K> {
    /// An empty index; `filler` is any key, used to fill empty slots.
    pub fn new(filler: K) -> Self {
        Self::with_slots(filler, 16)
    }

    fn with_slots(filler: K, n: usize) -> Self {
        debug_assert!(n.is_power_of_two());
        let slots = vec![
            Slot {
                key: filler,
                val: EMPTY,
            };
            n
        ];
        crate::sa::huge::advise(&slots);
        FlatIndex {
            slots,
            mask: n - 1,
            shift: 64 - n.trailing_zeros(),
            len: 0,
            filler,
        }
    }

    #[inline]
    fn home(&self, k: &K) -> usize {
        (k.flat_hash() >> self.shift) as usize & self.mask
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts loading the cache line of `k`'s home slot, where its lookup begins.
    #[inline]
    pub fn prefetch(&self, k: &K) {
        let p = self.slots.as_ptr().wrapping_add(self.home(k));
        crate::prefetch::line(p as *const u8);
    }

    /// The value stored for `k`.
    #[inline]
    pub fn get(&self, k: &K) -> Option<u32> {
        let mut i = self.home(k);
        loop {
            let s = &self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == *k {
                return Some(s.val);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `val` (below `u32::MAX`) for `k`; returns the value it replaces.
    pub fn insert(&mut self, k: K, val: u32) -> Option<u32> {
        assert!(val != EMPTY, "FlatIndex values must be below u32::MAX");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut i = self.home(&k);
        loop {
            let s = &mut self.slots[i];
            if s.val == EMPTY {
                *s = Slot { key: k, val };
                self.len += 1;
                return None;
            }
            if s.key == k {
                return Some(std::mem::replace(&mut s.val, val));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `k`; returns its value.
    pub fn remove(&mut self, k: &K) -> Option<u32> {
        let mut i = self.home(k);
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == *k {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let old = self.slots[i].val;
        // Backward-shift deletion: move later members of the probe run into the hole when
        // their home slot is not between the hole and their own slot.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s.val == EMPTY {
                break;
            }
            let home = self.home(&s.key);
            let dist_hole = hole.wrapping_sub(home) & self.mask;
            let dist_j = j.wrapping_sub(home) & self.mask;
            if dist_hole <= dist_j {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = Slot {
            key: self.filler,
            val: EMPTY,
        };
        self.len -= 1;
        Some(old)
    }

    /// Every (key, value), in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (K, u32)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.val != EMPTY)
            .map(|s| (s.key, s.val))
    }

    /// Rewrites every value with `f`; keys whose new value is `None` are removed.
    pub fn retain_map(&mut self, mut f: impl FnMut(K, u32) -> Option<u32>) {
        let entries: Vec<(K, u32)> = self.iter().collect();
        let mut fresh = Self::with_slots(self.filler, self.slots.len());
        for (k, v) in entries {
            if let Some(v) = f(k, v) {
                fresh.insert(k, v);
            }
        }
        *self = fresh;
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        *self = Self::new(self.filler);
    }

    fn grow(&mut self) {
        let mut bigger = Self::with_slots(self.filler, self.slots.len() * 2);
        for (k, v) in self.iter() {
            bigger.insert(k, v);
        }
        *self = bigger;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A small key space, so that inserts, replacements and removals collide often.
        prop_oneof![
            (0u32..64, 0u32..1000).prop_map(|(k, v)| Op::Insert(k, v)),
            (0u32..64).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(op(), 0..400)) {
            let mut ix = FlatIndex::new(0u32);
            let mut model = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(ix.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(ix.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(ix.len(), model.len());
            }
            for k in 0u32..64 {
                prop_assert_eq!(ix.get(&k), model.get(&k).copied());
            }
            let mut all: Vec<(u32, u32)> = ix.iter().collect();
            all.sort_unstable();
            let mut want: Vec<(u32, u32)> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }

    #[test]
    fn holds_a_million_keys_at_most_half_full() {
        let mut ix = FlatIndex::new(0u32);
        for k in 0..1_000_000u32 {
            ix.insert(k.wrapping_mul(2_654_435_761), k);
        }
        assert_eq!(ix.len(), 1_000_000);
        assert!(ix.slots.len() >= 2_000_000);
        for k in (0..1_000_000u32).step_by(997) {
            assert_eq!(ix.get(&k.wrapping_mul(2_654_435_761)), Some(k));
        }
    }

    #[test]
    fn prefix_keys_of_the_same_prefix_are_equal() {
        let a = PrefixKey::of("10.1.2.3".parse().unwrap(), 24);
        let b = PrefixKey::of("10.1.2.200".parse().unwrap(), 24);
        assert_eq!(a, b);
        assert_eq!(a.flat_hash(), b.flat_hash());
        assert_ne!(a, PrefixKey::of("10.1.2.3".parse().unwrap(), 25));
        assert_ne!(
            PrefixKey::of("::".parse().unwrap(), 0),
            PrefixKey::of("0.0.0.0".parse().unwrap(), 0)
        );
    }

    #[test]
    fn retain_map_renumbers_and_drops() {
        let mut ix = FlatIndex::new(0u32);
        for k in 0..100u32 {
            ix.insert(k, k);
        }
        ix.retain_map(|_, v| (v % 2 == 0).then_some(v / 2));
        assert_eq!(ix.len(), 50);
        assert_eq!(ix.get(&10), Some(5));
        assert_eq!(ix.get(&11), None);
    }
}
