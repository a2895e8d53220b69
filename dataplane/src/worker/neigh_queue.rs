//! Frames waiting for their next hop's link-layer address, as the kernel's `unres_qlen` queue:
//! a few frames per next hop, a bounded total per worker (so UMEM frames cannot run out), FIFO
//! per next hop, released as soon as the address is known, dropped when resolution fails or
//! takes too long.
//!
//! Sans-IO: the queue holds descriptors of UMEM frames (the frame itself stays where the
//! pipeline built it, complete except for the destination MAC); the worker writes the MAC and
//! transmits what the queue releases, and frees what it drops. Time is the caller's
//! millisecond clock. Nothing here allocates after [`NeighQueue::new`].

use super::Port;
use std::net::IpAddr;

/// Frames one next hop may have waiting (the kernel's `unres_qlen_bytes` default holds about
/// 100 full-size frames; 32 covers a TCP initial window and a burst of pings).
pub const PER_HOP: usize = 32;
/// Frames one worker may have waiting in all (at most 1/16 of its UMEM, see [`NeighQueue::for_frames`]).
pub const TOTAL: usize = 256;
/// How long a frame waits before it is dropped (the kernel gives up after 3 solicitations one
/// second apart and reports FAILED, which normally drops the frames first).
pub const TIMEOUT_MS: u64 = 5_000;

/// One frame in the queue: where it lives in the UMEM and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The port it leaves by.
    pub port: Port,
    /// Its next hop.
    pub hop: IpAddr,
    /// The UMEM chunk holding it.
    pub base: u64,
    /// Offset of its Ethernet header in the chunk.
    pub offset: u32,
    /// Its length, Ethernet header included.
    pub len: u32,
    /// When it was queued, in milliseconds of the caller's clock.
    pub since_ms: u64,
}

/// Why [`NeighQueue::push`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The next hop already has [`NeighQueue::per_hop`] frames waiting.
    Hop,
    /// The worker already has [`NeighQueue::capacity`] frames waiting.
    Total,
}

/// The frames of one worker that wait for next hops.
#[derive(Debug)]
pub struct NeighQueue {
    /// In arrival order, so each next hop's frames are in order too.
    slots: Vec<Held>,
    per_hop: usize,
    total: usize,
    timeout_ms: u64,
    /// Frames accepted.
    pub held: u64,
    /// Frames released to their next hop.
    pub released: u64,
}

impl NeighQueue {
    /// A queue of at most `per_hop` frames per next hop, `total` in all, each waiting at most
    /// `timeout_ms`.
    pub fn new(per_hop: usize, total: usize, timeout_ms: u64) -> Self {
        NeighQueue {
            slots: Vec::with_capacity(total),
            per_hop: per_hop.min(total),
            total,
            timeout_ms,
            held: 0,
            released: 0,
        }
    }

    /// The default bounds for a worker with `frames` UMEM frames: [`PER_HOP`], and [`TOTAL`]
    /// but never more than 1/16 of the frames (the rest keep the rings fed).
    pub fn for_frames(frames: u32) -> Self {
        let total = TOTAL.min(frames as usize / 16).max(1);
        Self::new(PER_HOP, total, TIMEOUT_MS)
    }

    /// Most frames per next hop.
    pub fn per_hop(&self) -> usize {
        self.per_hop
    }

    /// Most frames in all.
    pub fn capacity(&self) -> usize {
        self.total
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Frames waiting for `hop` on `port`.
    pub fn waiting(&self, port: Port, hop: IpAddr) -> usize {
        self.slots
            .iter()
            .filter(|h| h.port == port && h.hop == hop)
            .count()
    }

    /// Queues a frame. `Ok(true)` when it is the first frame waiting for its next hop (the time
    /// to ask for resolution); the frame comes back with the reason when a bound is reached.
    pub fn push(&mut self, h: Held) -> Result<bool, (Held, Full)> {
        if self.slots.len() >= self.total {
            return Err((h, Full::Total));
        }
        let n = self.waiting(h.port, h.hop);
        if n >= self.per_hop {
            return Err((h, Full::Hop));
        }
        self.slots.push(h);
        self.held += 1;
        Ok(n == 0)
    }

    /// Releases, in arrival order, the frames leaving by `port` whose next hop `mac_of` now
    /// knows: `send` gets each with its MAC.
    pub fn release(
        &mut self,
        port: Port,
        mac_of: impl Fn(IpAddr) -> Option<[u8; 6]>,
        mut send: impl FnMut(Held, [u8; 6]),
    ) {
        let mut n = 0;
        self.slots.retain(|h| {
            if h.port != port {
                return true;
            }
            match mac_of(h.hop) {
                Some(mac) => {
                    send(*h, mac);
                    n += 1;
                    false
                }
                None => true,
            }
        });
        self.released += n;
    }

    /// Removes the frames waiting for `hop` on `port` (its resolution failed): `drop` gets
    /// each.
    pub fn fail(&mut self, port: Port, hop: IpAddr, mut drop: impl FnMut(Held)) {
        self.slots.retain(|h| {
            let gone = h.port == port && h.hop == hop;
            if gone {
                drop(*h);
            }
            !gone
        });
    }

    /// Removes the frames that have waited `timeout_ms` or longer at `now_ms`: `drop` gets
    /// each.
    pub fn expire(&mut self, now_ms: u64, mut drop: impl FnMut(Held)) {
        let timeout = self.timeout_ms;
        // The oldest frame is first: nothing to do in the common case.
        if self
            .slots
            .first()
            .is_none_or(|h| now_ms.saturating_sub(h.since_ms) < timeout)
        {
            return;
        }
        self.slots.retain(|h| {
            let old = now_ms.saturating_sub(h.since_ms) >= timeout;
            if old {
                drop(*h);
            }
            !old
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn held(port: Port, hop: IpAddr, base: u64, since_ms: u64) -> Held {
        Held {
            port,
            hop,
            base,
            offset: 256,
            len: 98,
            since_ms,
        }
    }

    #[test]
    fn bounded_per_hop_and_in_total() {
        let mut q = NeighQueue::new(3, 5, 1000);
        assert_eq!(q.push(held(Port::Lan, A, 0, 0)), Ok(true));
        assert_eq!(q.push(held(Port::Lan, A, 1, 0)), Ok(false));
        assert_eq!(q.push(held(Port::Lan, A, 2, 0)), Ok(false));
        let h = held(Port::Lan, A, 3, 0);
        assert_eq!(q.push(h), Err((h, Full::Hop)));
        // The same address on the other port is another next hop.
        assert_eq!(q.push(held(Port::Wan, A, 4, 0)), Ok(true));
        assert_eq!(q.push(held(Port::Lan, B, 5, 0)), Ok(true));
        let h = held(Port::Lan, B, 6, 0);
        assert_eq!(q.push(h), Err((h, Full::Total)));
        assert_eq!(q.len(), 5);
        assert_eq!(q.held, 5);
        assert_eq!(q.waiting(Port::Lan, A), 3);
    }

    #[test]
    fn releases_in_order_only_what_resolved_on_that_port() {
        let mut q = NeighQueue::new(8, 16, 1000);
        for (i, hop) in [A, B, A, B, A].into_iter().enumerate() {
            q.push(held(Port::Lan, hop, i as u64, 0)).unwrap();
        }
        q.push(held(Port::Wan, A, 9, 0)).unwrap();
        let mut sent = Vec::new();
        q.release(
            Port::Lan,
            |ip| (ip == A).then_some(MAC),
            |h, mac| sent.push((h.base, mac)),
        );
        assert_eq!(sent, vec![(0, MAC), (2, MAC), (4, MAC)]);
        assert_eq!(q.released, 3);
        assert_eq!(q.len(), 3, "B on the LAN and A on the WAN still wait");
        let mut none = Vec::new();
        q.release(Port::Lan, |_| None, |h, _| none.push(h));
        assert!(none.is_empty());
        let mut rest = Vec::new();
        q.release(Port::Lan, |_| Some(MAC), |h, _| rest.push(h.base));
        assert_eq!(rest, vec![1, 3]);
        assert_eq!(q.waiting(Port::Wan, A), 1);
    }

    #[test]
    fn failure_drops_that_hop_only() {
        let mut q = NeighQueue::new(8, 16, 1000);
        q.push(held(Port::Lan, A, 0, 0)).unwrap();
        q.push(held(Port::Lan, B, 1, 0)).unwrap();
        q.push(held(Port::Lan, A, 2, 0)).unwrap();
        let mut dropped = Vec::new();
        q.fail(Port::Lan, A, |h| dropped.push(h.base));
        assert_eq!(dropped, vec![0, 2]);
        assert_eq!(q.len(), 1);
        // Room again: the next frame for A is the first one again.
        assert_eq!(q.push(held(Port::Lan, A, 3, 0)), Ok(true));
    }

    #[test]
    fn frames_time_out() {
        let mut q = NeighQueue::new(8, 16, 1000);
        q.push(held(Port::Lan, A, 0, 100)).unwrap();
        q.push(held(Port::Lan, A, 1, 600)).unwrap();
        let mut dropped = Vec::new();
        q.expire(1099, |h| dropped.push(h.base));
        assert!(dropped.is_empty());
        q.expire(1100, |h| dropped.push(h.base));
        assert_eq!(dropped, vec![0]);
        q.expire(5000, |h| dropped.push(h.base));
        assert_eq!(dropped, vec![0, 1]);
        assert!(q.is_empty());
        assert_eq!(q.released, 0);
    }

    #[test]
    fn never_grows_past_its_capacity() {
        let mut q = NeighQueue::for_frames(1024);
        assert_eq!(q.capacity(), 64);
        let cap = q.slots.capacity();
        for i in 0..1000u64 {
            let hop = IpAddr::from([10, 0, (i / 256) as u8, i as u8]);
            let _ = q.push(held(Port::Lan, hop, i, 0));
        }
        assert_eq!(q.len(), 64);
        assert_eq!(q.slots.capacity(), cap, "no reallocation");
        assert_eq!(NeighQueue::for_frames(8192).capacity(), TOTAL);
        assert_eq!(NeighQueue::for_frames(8192).per_hop(), PER_HOP);
    }
}
