//! A multibit trie for longest-prefix match with fixed strides per level, in the manner of
//! DIR-24-8 (DPDK's `rte_lpm`): every slot of a node holds either the next hop of the longest
//! prefix covering it, with that prefix's length, or a reference to a node one level down.
//! With strides 24 and 8 it is DIR-24-8 for IPv4 (one lookup in a 2^24-slot root, a second
//! in a 256-slot group for the few prefixes longer than /24); IPv6 uses a 2^16 root, two 8-bit
//! levels for its prefixes of /32 and shorter (the longer ones are found by hash, see
//! [`super::route`]).
//!
//! Keys are left-aligned in a `u128` (an IPv4 address is shifted up by 96 bits). The trie does
//! not remember its prefixes: the caller ([`super::route::RouteTable`]) keeps them, tells
//! [`Trie::remove`] which prefix covers a removed one, and so the trie stays a pure index.

/// Slot flag: the rest of the slot is the index of a node one level down.
const CHILD: u32 = 1 << 31;
/// Where a leaf slot keeps the length of the prefix it holds (8 bits: 0..=128).
const DEPTH_SHIFT: u32 = 23;
/// The next-hop id of a leaf slot (0: no route).
pub(crate) const NH_MASK: u32 = (1 << DEPTH_SHIFT) - 1;

/// A leaf slot: next hop `nh` (0: none) of a prefix of length `depth`.
#[inline]
pub(crate) fn leaf(depth: u8, nh: u32) -> u32 {
    (u32::from(depth) << DEPTH_SHIFT) | (nh & NH_MASK)
}

#[inline]
fn depth(slot: u32) -> u8 {
    ((slot >> DEPTH_SHIFT) & 0xff) as u8
}

/// `s` bits of `key` from bit `b` (0 = most significant).
#[inline]
fn bits(key: u128, b: u32, s: u32) -> usize {
    ((key << b) >> (128 - s)) as usize
}

/// The nodes of one level, all of `1 << stride` slots, with a free list.
#[derive(Debug, Default)]
struct Level {
    slots: Vec<u32>,
    free: Vec<u32>,
}

impl Clone for Level {
    /// A copy on huge pages where large (the copy the workers get of a 64 MiB IPv4 root
    /// would otherwise fault in 16,384 small pages: most of the copy's cost).
    fn clone(&self) -> Self {
        let mut slots = Vec::with_capacity(self.slots.len());
        super::huge::advise(&slots);
        slots.extend_from_slice(&self.slots);
        Level {
            slots,
            free: self.free.clone(),
        }
    }
}

/// The trie of one address family.
#[derive(Debug, Clone)]
pub(crate) struct Trie {
    strides: &'static [u8],
    /// `levels[0]` holds the root, allocated with the first prefix.
    levels: Vec<Level>,
}

/// IPv4: DIR-24-8.
pub(crate) const V4_STRIDES: &[u8] = &[24, 8];
/// IPv6 prefixes of /32 and shorter: 16, 8, 8.
pub(crate) const V6_STRIDES: &[u8] = &[16, 8, 8];

impl Trie {
    /// An empty trie over `strides` (summing to the key width).
    pub(crate) fn new(strides: &'static [u8]) -> Self {
        Trie {
            strides,
            levels: strides.iter().map(|_| Level::default()).collect(),
        }
    }

    fn stride(&self, lvl: usize) -> u32 {
        u32::from(self.strides[lvl])
    }

    /// A new node at `lvl` whose slots all hold `fill`.
    fn alloc(&mut self, lvl: usize, fill: u32) -> u32 {
        let n = 1usize << self.stride(lvl);
        let l = &mut self.levels[lvl];
        match l.free.pop() {
            Some(i) => {
                let base = (i as usize) << self.strides[lvl];
                l.slots[base..base + n].fill(fill);
                i
            }
            None => {
                let i = (l.slots.len() >> self.strides[lvl]) as u32;
                l.slots.resize(l.slots.len() + n, fill);
                i
            }
        }
    }

    fn ensure_root(&mut self) {
        if self.levels[0].slots.is_empty() {
            self.levels[0].slots = vec![0; 1 << self.stride(0)];
            // The IPv4 root is 64 MiB: with 4 KiB pages nearly every lookup would miss the TLB.
            super::huge::advise(&self.levels[0].slots);
        }
    }

    /// Walks to the node holding prefixes of length `len` along `key`, creating nodes on the
    /// way; returns the path of (level, node) from the root and the slot range there.
    fn descend(&mut self, key: u128, len: u8) -> (Vec<(usize, u32)>, std::ops::Range<usize>) {
        self.ensure_root();
        let mut path = Vec::new();
        let (mut lvl, mut node, mut b) = (0usize, 0u32, 0u32);
        loop {
            let s = self.stride(lvl);
            path.push((lvl, node));
            let base = (node as usize) << s;
            let idx = bits(key, b, s);
            if u32::from(len) <= b + s {
                let span = 1usize << (b + s - u32::from(len));
                let start = base + (idx & !(span - 1));
                return (path, start..start + span);
            }
            let e = self.levels[lvl].slots[base + idx];
            node = if e & CHILD != 0 {
                e & !CHILD
            } else {
                let c = self.alloc(lvl + 1, e);
                self.levels[lvl].slots[base + idx] = CHILD | c;
                c
            };
            lvl += 1;
            b += s;
        }
    }

    /// Sets the prefix `key/len` to next hop `nh` (replacing it if present).
    pub(crate) fn insert(&mut self, key: u128, len: u8, nh: u32) {
        let (path, range) = self.descend(key, len);
        let lvl = path.last().map_or(0, |p| p.0);
        for i in range {
            self.fill(lvl, i, len, leaf(len, nh));
        }
    }

    /// Writes `value` (a leaf of length `len`) into slot `i` of `lvl` and every slot below it
    /// that holds a prefix no longer than `len`.
    fn fill(&mut self, lvl: usize, i: usize, len: u8, value: u32) {
        let e = self.levels[lvl].slots[i];
        if e & CHILD != 0 {
            let s = self.strides[lvl + 1];
            let base = ((e & !CHILD) as usize) << s;
            for j in base..base + (1 << s) {
                self.fill(lvl + 1, j, len, value);
            }
        } else if depth(e) <= len {
            self.levels[lvl].slots[i] = value;
        }
    }

    /// Removes the prefix `key/len`: the slots it holds get `cover` (the leaf of the longest
    /// remaining prefix covering it, or 0). Nodes left uniform are folded into their parent.
    pub(crate) fn remove(&mut self, key: u128, len: u8, cover: u32) {
        if self.levels[0].slots.is_empty() {
            return;
        }
        let (path, range) = self.descend(key, len);
        let lvl = path.last().map_or(0, |p| p.0);
        for i in range {
            self.unfill(lvl, i, len, cover);
        }
        // Fold the path's nodes bottom-up while they are uniform.
        for w in path.windows(2).rev() {
            let ((plvl, pnode), (clvl, cnode)) = (w[0], w[1]);
            let Some(v) = self.uniform(clvl, cnode) else {
                break;
            };
            let ps = self.stride(plvl);
            let idx = bits(
                key,
                self.strides[..plvl].iter().map(|&s| u32::from(s)).sum(),
                ps,
            );
            self.levels[plvl].slots[((pnode as usize) << ps) + idx] = v;
            self.levels[clvl].free.push(cnode);
        }
    }

    /// Replaces the leaves of length `len` at slot `i` of `lvl` and below by `cover`.
    fn unfill(&mut self, lvl: usize, i: usize, len: u8, cover: u32) {
        let e = self.levels[lvl].slots[i];
        if e & CHILD != 0 {
            let c = e & !CHILD;
            let s = self.strides[lvl + 1];
            let base = (c as usize) << s;
            for j in base..base + (1 << s) {
                self.unfill(lvl + 1, j, len, cover);
            }
            if let Some(v) = self.uniform(lvl + 1, c) {
                self.levels[lvl].slots[i] = v;
                self.levels[lvl + 1].free.push(c);
            }
        } else if depth(e) == len {
            self.levels[lvl].slots[i] = cover;
        }
    }

    /// The value of every slot of node `node` at `lvl` if they are all the same leaf.
    fn uniform(&self, lvl: usize, node: u32) -> Option<u32> {
        let s = self.strides[lvl];
        let base = (node as usize) << s;
        let slots = &self.levels[lvl].slots[base..base + (1 << s)];
        let v = slots[0];
        (v & CHILD == 0 && slots.iter().all(|&x| x == v)).then_some(v)
    }

    /// The leaf slot of the longest prefix containing `key` (0: none).
    #[inline]
    pub(crate) fn lookup(&self, key: u128) -> u32 {
        let (mut lvl, mut node, mut b) = (0usize, 0usize, 0u32);
        loop {
            let s = self.stride(lvl);
            let Some(&e) = self.levels[lvl].slots.get((node << s) + bits(key, b, s)) else {
                return 0;
            };
            if e & CHILD == 0 {
                return e;
            }
            node = (e & !CHILD) as usize;
            lvl += 1;
            b += s;
        }
    }

    /// [`Trie::lookup`] for DIR-24-8 (strides 24 and 8) and an IPv4 address.
    #[inline]
    pub(crate) fn lookup_24_8(&self, a: u32) -> u32 {
        debug_assert_eq!(self.strides, V4_STRIDES);
        let Some(&e) = self.levels[0].slots.get((a >> 8) as usize) else {
            return 0;
        };
        if e & CHILD == 0 {
            return e;
        }
        let i = (((e & !CHILD) as usize) << 8) | (a & 0xff) as usize;
        self.levels[1].slots.get(i).copied().unwrap_or(0)
    }

    /// Bytes of slots allocated (free nodes included).
    pub(crate) fn memory(&self) -> usize {
        self.levels
            .iter()
            .map(|l| l.slots.capacity() * 4 + l.free.capacity() * 4)
            .sum()
    }

    /// Nodes in use below the root.
    pub(crate) fn nodes(&self) -> usize {
        self.levels
            .iter()
            .enumerate()
            .skip(1)
            .map(|(lvl, l)| (l.slots.len() >> self.strides[lvl]) - l.free.len())
            .sum()
    }
}
