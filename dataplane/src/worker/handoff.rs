//! Handoff between workers: a packet that lands on a worker that does not own its SA is copied
//! into a lock-free single-producer/single-consumer ring towards the owner. One ring per
//! ordered pair of workers; each slot holds a whole frame, so neither side ever waits for the
//! other (a full ring is a counted drop). The two sides publish their progress once per
//! batch ([`Producer::publish`], [`Consumer::release`]), not once per packet, so the ring's
//! shared indices move between the cores once per batch. The same rings carry packets
//! between the workers and the tunnel-interface thread, tagged with the interface's index.

use super::Port;
use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Largest packet a slot holds.
pub const SLOT: usize = 2048;

/// Every slot starts on its own cache line, so that the two sides never write the same line.
#[repr(C, align(64))]
struct Slot {
    len: u16,
    /// The port a packet arrived on, or (between a worker and the tunnel-interface thread)
    /// the index of its tunnel interface.
    tag: u16,
    data: [u8; SLOT],
}

/// The shared ring. Invariant: slots in `[tail, head)` (mod capacity) are written by the
/// producer and not yet read; only the producer writes `head` and the slots outside that
/// range, only the consumer writes `tail` and reads slots inside it.
struct Ring {
    slots: Box<[UnsafeCell<Slot>]>,
    mask: usize,
    head: AtomicUsize,
    tail: AtomicUsize,
}

// SAFETY: the head/tail protocol above gives each slot a single owner at a time; the atomics
// order the slot writes before the consumer's reads (release/acquire).
unsafe impl Sync for Ring {}
// SAFETY: as above; the slots are plain bytes.
unsafe impl Send for Ring {}

/// The most packets a side moves before it publishes its progress by itself, so that a
/// caller's batch larger than this still flows.
const PUBLISH_EVERY: usize = 32;

/// The sending end (owned by one worker).
pub struct Producer {
    ring: Arc<Ring>,
    head: usize,
    /// The `head` the consumer can see.
    published: usize,
    cached_tail: usize,
}

/// The receiving end (owned by one worker).
pub struct Consumer {
    ring: Arc<Ring>,
    tail: usize,
    /// The `tail` the producer can see.
    released: usize,
    cached_head: usize,
}

/// A ring of `capacity` slots (rounded up to a power of two).
pub fn channel(capacity: usize) -> (Producer, Consumer) {
    let cap = capacity.next_power_of_two().max(2);
    let slots = (0..cap)
        .map(|_| {
            UnsafeCell::new(Slot {
                len: 0,
                tag: 0,
                data: [0; SLOT],
            })
        })
        .collect();
    let ring = Arc::new(Ring {
        slots,
        mask: cap - 1,
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
    });
    (
        Producer {
            ring: ring.clone(),
            head: 0,
            published: 0,
            cached_tail: 0,
        },
        Consumer {
            ring,
            tail: 0,
            released: 0,
            cached_head: 0,
        },
    )
}

impl Producer {
    /// Copies a packet received on `port` into the ring; false if it is full or the packet is
    /// too large (the caller counts the drop). The consumer sees it after [`Self::publish`]
    /// (or by itself after a few dozen pushes).
    pub fn push(&mut self, port: Port, pkt: &[u8]) -> bool {
        self.push_tagged(port as u16, pkt)
    }

    /// [`Self::push`] with a tag of the caller's choosing instead of a port.
    pub fn push_tagged(&mut self, tag: u16, pkt: &[u8]) -> bool {
        if pkt.len() > SLOT {
            return false;
        }
        let cap = self.ring.mask + 1;
        if self.head - self.cached_tail == cap {
            self.cached_tail = self.ring.tail.load(Ordering::Acquire);
            if self.head - self.cached_tail == cap {
                return false;
            }
        }
        let cell = &self.ring.slots[self.head & self.ring.mask];
        // SAFETY: the slot at `head` is outside [tail, head): the consumer does not touch it
        // until `head` is published below.
        let slot = unsafe { &mut *cell.get() };
        slot.data[..pkt.len()].copy_from_slice(pkt);
        slot.len = pkt.len() as u16;
        slot.tag = tag;
        self.head += 1;
        if self.head - self.published >= PUBLISH_EVERY {
            self.publish();
        }
        true
    }

    /// Makes the packets pushed so far visible to the consumer (once per batch).
    #[inline]
    pub fn publish(&mut self) {
        if self.head != self.published {
            self.ring.head.store(self.head, Ordering::Release);
            self.published = self.head;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.publish();
    }
}

impl Consumer {
    /// Copies the oldest packet into `out` (which must hold `SLOT` bytes) and returns its
    /// length and the port it arrived on. Its slot returns to the producer at
    /// [`Self::release`] (or by itself after a few dozen pops).
    pub fn pop_into(&mut self, out: &mut [u8]) -> Option<(Port, usize)> {
        let (tag, len) = self.pop_tagged_into(out)?;
        let port = if tag == Port::Lan as u16 {
            Port::Lan
        } else {
            Port::Wan
        };
        Some((port, len))
    }

    /// [`Self::pop_into`] for rings whose packets carry a tag ([`Producer::push_tagged`]).
    pub fn pop_tagged_into(&mut self, out: &mut [u8]) -> Option<(u16, usize)> {
        if self.tail == self.cached_head {
            self.cached_head = self.ring.head.load(Ordering::Acquire);
            if self.tail == self.cached_head {
                return None;
            }
        }
        let cell = &self.ring.slots[self.tail & self.ring.mask];
        // SAFETY: the slot at `tail` is inside [tail, head): the producer published it (the
        // acquire load above) and will not write it until `tail` moves past it below.
        let slot = unsafe { &*cell.get() };
        let len = usize::from(slot.len).min(out.len());
        out[..len].copy_from_slice(&slot.data[..len]);
        let tag = slot.tag;
        self.tail += 1;
        if self.tail - self.released >= PUBLISH_EVERY {
            self.release();
        }
        Some((tag, len))
    }

    /// Returns the slots of the packets popped so far to the producer (once per batch).
    #[inline]
    pub fn release(&mut self) {
        if self.tail != self.released {
            self.ring.tail.store(self.tail, Ordering::Release);
            self.released = self.tail;
        }
    }

    /// True if nothing published is waiting (may be stale by the time it returns).
    pub fn is_empty(&self) -> bool {
        self.tail == self.ring.head.load(Ordering::Acquire)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.release();
    }
}

/// Wakes a worker that sleeps in `poll(2)` when another worker hands it packets: an eventfd
/// the sleeper adds to its poll set, signalled only while it sleeps (so a busy consumer costs
/// the producer nothing but a load).
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    /// A new waker.
    pub fn new() -> io::Result<Arc<Waker>> {
        // SAFETY: eventfd with flags only; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Arc::new(Waker {
            // SAFETY: a new descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            sleeping: AtomicBool::new(false),
        }))
    }

    /// The descriptor to poll for input.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Producer side, after pushing: wakes the consumer if it is (about to be) asleep. The
    /// fence orders the push before the look at the flag (pairs with `sleep_begin`).
    pub fn wake_if_sleeping(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; a full counter (EAGAIN)
            // already means "wake up".
            unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
        }
    }

    /// Consumer side, before polling: announces the sleep. Check the inboxes after this and
    /// before sleeping, so a push that raced with it is seen.
    pub fn sleep_begin(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Consumer side, after polling: clears the flag and the eventfd.
    pub fn sleep_end(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let mut v = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

/// Which worker owns an inbound SA: the gateway picks its inbound SPIs so that this names the
/// worker (`spi mod workers`).
#[inline]
pub fn owner_of_spi(spi: u32, workers: usize) -> usize {
    spi as usize % workers.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_empty() {
        let (mut p, mut c) = channel(4);
        let mut out = [0u8; SLOT];
        assert!(c.pop_into(&mut out).is_none());
        for i in 0..4u8 {
            assert!(p.push(Port::Wan, &[i; 10]));
        }
        assert!(!p.push(Port::Wan, &[9; 10]), "full");
        assert!(!p.push(Port::Lan, &[0; SLOT + 1]), "too large");
        assert!(c.pop_into(&mut out).is_none(), "not published yet");
        p.publish();
        for i in 0..4u8 {
            let (port, n) = c.pop_into(&mut out).unwrap();
            assert_eq!((port, n, out[0]), (Port::Wan, 10, i));
        }
        assert!(c.is_empty());
        assert!(!p.push(Port::Lan, &[7; 3]), "slots not released yet");
        c.release();
        assert!(p.push(Port::Lan, &[7; 3]));
        p.publish();
        assert_eq!(c.pop_into(&mut out), Some((Port::Lan, 3)));
    }

    #[test]
    fn threads_pass_every_packet_in_order() {
        let (mut p, mut c) = channel(64);
        let n = 200_000u32;
        let t = std::thread::spawn(move || {
            // Batches of odd sizes, some larger than the ring, published after each.
            let mut i = 0u32;
            let mut batch = 1;
            while i < n {
                for _ in 0..batch {
                    if i < n && p.push(Port::Lan, &i.to_le_bytes()) {
                        i += 1;
                    }
                }
                p.publish();
                batch = batch % 97 + 1;
            }
        });
        let mut out = [0u8; SLOT];
        let mut next = 0u32;
        let mut batch = 1;
        while next < n {
            for _ in 0..batch {
                if let Some((_, len)) = c.pop_into(&mut out) {
                    assert_eq!(len, 4);
                    assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), next);
                    next += 1;
                }
            }
            c.release();
            batch = batch % 89 + 1;
        }
        t.join().unwrap();
    }

    #[test]
    fn waker_wakes_only_a_sleeper() {
        let w = Waker::new().unwrap();
        let readable = |w: &Waker| {
            let mut p = libc::pollfd {
                fd: w.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        w.wake_if_sleeping();
        assert!(!readable(&w), "an awake consumer is not signalled");
        w.sleep_begin();
        w.wake_if_sleeping();
        assert!(readable(&w));
        w.sleep_end();
        assert!(!readable(&w), "cleared after the sleep");
    }

    #[test]
    fn spi_owner() {
        assert_eq!(owner_of_spi(7, 2), 1);
        assert_eq!(owner_of_spi(7, 1), 0);
        assert_eq!(owner_of_spi(7, 0), 0);
    }
}
