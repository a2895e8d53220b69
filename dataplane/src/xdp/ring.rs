//! The four single-producer/single-consumer rings an AF_XDP socket shares with the kernel
//! (fill, completion, RX, TX), mapped from the socket.
//!
//! The producer index is written by one side and the consumer index by the other; each side
//! caches the other's index and re-reads it (with acquire ordering) only when the cache says
//! the ring is full or empty.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// An RX/TX descriptor: a packet at UMEM offset `addr`, `len` bytes long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpDesc {
    /// UMEM offset of the first byte of the packet.
    pub addr: u64,
    /// Packet length.
    pub len: u32,
    /// Options (unused).
    pub options: u32,
}

/// Offsets of one ring inside its mapping (`struct xdp_ring_offset`).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub(crate) struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

/// `XDP_RING_NEED_WAKEUP`.
const NEED_WAKEUP: u32 = 1;

/// A mapped ring of `T` entries. Invariant: the mapping holds the producer, consumer and flags
/// words and `size` entries at the offsets the kernel reported, for the value's lifetime.
pub struct Ring<T> {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    size: u32,
    /// Our copy of the index we own (producer for fill/TX, consumer for RX/completion).
    local: u32,
    /// Last seen value of the index the other side owns.
    cached: u32,
}

// SAFETY: the ring is owned by one thread at a time; the kernel side is synchronised through
// the atomic producer/consumer words.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries from the socket at page offset `pgoff`. `producer` says
    /// which side we are: `we_produce` for fill and TX, not for RX and completion.
    pub(crate) fn map(
        fd: &OwnedFd,
        off: &RingOffset,
        size: u32,
        pgoff: u64,
        we_produce: bool,
    ) -> io::Result<Self> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: maps the ring the kernel created for this socket (after the setsockopt that
        // sized it); the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p as *mut u8;
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this very mapping and lie inside it.
        let (producer, consumer, flags, desc) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.flags as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut T,
            )
        };
        let mut r = Ring {
            map: base,
            map_len,
            producer,
            consumer,
            flags,
            desc,
            mask: size - 1,
            size,
            local: 0,
            cached: 0,
        };
        // Start from wherever the kernel's indices are (zero on a fresh socket).
        let (p, c) = (
            r.producer().load(Ordering::Acquire),
            r.consumer().load(Ordering::Acquire),
        );
        (r.local, r.cached) = if we_produce { (p, c) } else { (c, p) };
        Ok(r)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (type invariant); the kernel writes it atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    /// True if the kernel asked to be woken up (need-wakeup mode).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & NEED_WAKEUP != 0
    }

    /// Ring size in entries.
    pub fn size(&self) -> u32 {
        self.size
    }

    // ---- producer side (fill, TX) ----

    /// Free slots the producer may fill now; re-reads the kernel's consumer index only when
    /// the cached one shows fewer than `want` free.
    pub fn free(&mut self, want: u32) -> u32 {
        let f = self.size - self.local.wrapping_sub(self.cached);
        if f >= want {
            return f;
        }
        self.cached = self.consumer().load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(self.cached)
    }

    /// Writes up to `items.len()` entries and publishes them; returns how many were written.
    pub fn produce(&mut self, items: &[T]) -> u32 {
        let n = self.free(items.len() as u32).min(items.len() as u32);
        if n == 0 {
            return 0;
        }
        for (i, item) in items.iter().take(n as usize).enumerate() {
            let slot = (self.local.wrapping_add(i as u32) & self.mask) as usize;
            // SAFETY: `slot < size`, inside the descriptor array; the slot is free (between
            // the consumer and producer indices from the kernel's view), so the kernel does
            // not read it until we publish the producer index below.
            unsafe { self.desc.add(slot).write_volatile(*item) };
        }
        self.local = self.local.wrapping_add(n);
        self.producer().store(self.local, Ordering::Release);
        n
    }

    /// Entries produced that the kernel has not consumed yet (TX: still to be sent).
    pub fn pending(&self) -> u32 {
        self.local
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    // ---- consumer side (RX, completion) ----

    /// Entries available to consume now.
    pub fn available(&mut self) -> u32 {
        let avail = self.cached.wrapping_sub(self.local);
        if avail > 0 {
            return avail;
        }
        self.cached = self.producer().load(Ordering::Acquire);
        self.cached.wrapping_sub(self.local)
    }

    /// Reads up to `out.len()` entries and releases their slots; returns how many.
    pub fn consume(&mut self, out: &mut [T]) -> u32 {
        let n = self.available().min(out.len() as u32);
        for (i, o) in out.iter_mut().take(n as usize).enumerate() {
            let slot = (self.local.wrapping_add(i as u32) & self.mask) as usize;
            // SAFETY: `slot < size`; the kernel published this entry (acquire load of the
            // producer index above) and will not reuse it until we release it below.
            *o = unsafe { self.desc.add(slot).read_volatile() };
        }
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
        n
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.map_len);
        }
    }
}
