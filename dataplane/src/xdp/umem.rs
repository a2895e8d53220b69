//! The UMEM: one anonymous memory area cut into equal chunks that the kernel and the dataplane
//! pass back and forth through the rings. Sockets on the LAN and WAN interfaces of one queue
//! share it, so forwarding never copies a packet.

use crate::frame::Frame;
use arrayvec::ArrayVec;
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// Largest batch of frames handed out at once (VPP's vector size).
pub const MAX_BATCH: usize = 64;

/// Most spare chunks [`Spares`] hands out during one batch.
pub const MAX_SPARES: usize = 256;

/// The shape of a UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmemConfig {
    /// Number of chunks.
    pub frames: u32,
    /// Chunk size: a power of two from 2048 to the page size.
    pub frame_size: u32,
    /// Bytes the kernel leaves free in front of each received packet (room for ESP's outer
    /// headers).
    pub headroom: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frames: 4096,
            frame_size: 2048,
            headroom: crate::frame::DEFAULT_HEADROOM as u32,
        }
    }
}

/// A page-aligned memory area registered (later) with an AF_XDP socket. Invariant: `ptr` points
/// to `len = frames * frame_size` bytes mapped read-write for the lifetime of the value.
pub struct Umem {
    ptr: NonNull<u8>,
    len: usize,
    cfg: UmemConfig,
    in_batch: Vec<u64>,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the ownership with it (the kernel's accesses are synchronised through the rings).
unsafe impl Send for Umem {}

impl Umem {
    /// Maps the area (populated, so the first packets do not fault).
    pub fn new(cfg: UmemConfig) -> io::Result<Self> {
        if !cfg.frame_size.is_power_of_two() || !(2048..=4096).contains(&cfg.frame_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame_size must be 2048 or 4096",
            ));
        }
        if cfg.headroom + 256 >= cfg.frame_size || cfg.frames == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "headroom too large for the frame size, or no frames",
            ));
        }
        let len = cfg.frames as usize * cfg.frame_size as usize;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked
        // against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Umem {
            ptr: NonNull::new(p as *mut u8).expect("mmap never returns null on success"),
            len,
            cfg,
            in_batch: vec![0; (cfg.frames as usize).div_ceil(64)],
        })
    }

    /// Its shape.
    pub fn config(&self) -> UmemConfig {
        self.cfg
    }

    /// Start address of the area (for `XDP_UMEM_REG`).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the area.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the area is empty (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// UMEM offset of chunk `i`.
    pub fn chunk_addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.cfg.frame_size)
    }

    /// Offset of the chunk that holds UMEM offset `addr`.
    #[inline]
    pub fn chunk_base(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.cfg.frame_size) - 1)
    }

    /// The whole chunk holding `addr`, or `None` if `addr` is outside the area.
    pub fn chunk_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let base = self.chunk_base(addr) as usize;
        if base >= self.len {
            return None;
        }
        // SAFETY: `base + frame_size <= len` (base is chunk-aligned and below len, and len is a
        // multiple of frame_size); `&mut self` guarantees no other reference into the area.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().add(base),
                self.cfg.frame_size as usize,
            )
        })
    }

    /// Frames for a batch of at most [`MAX_BATCH`] packets at `(addr, len)` (UMEM offset of the
    /// packet start and its length, as RX descriptors give them). Fails if a descriptor is out
    /// of range, two descriptors share a chunk (so the frames never alias), or the batch is too
    /// large. Allocates nothing. The returned [`BatchArea`] reaches the rest of the area while
    /// the frames live (for frames the batch needs beyond its own).
    pub fn frames_mut<'a>(
        &'a mut self,
        descs: impl Iterator<Item = (u64, u32)>,
        out: &mut ArrayVec<Frame<&'a mut [u8]>, MAX_BATCH>,
    ) -> io::Result<BatchArea<'a>> {
        out.clear();
        let fs = u64::from(self.cfg.frame_size);
        let mut ranges = [(0u64, 0usize, 0usize); MAX_BATCH];
        let mut n = 0;
        let mut result = Ok(());
        for (addr, len) in descs {
            let base = addr & !(fs - 1);
            let idx = base / fs;
            let start = (addr - base) as usize;
            let end = start + len as usize;
            let problem = if n == MAX_BATCH {
                Some("batch larger than MAX_BATCH")
            } else if base as usize >= self.len || end > fs as usize {
                Some("descriptor outside the UMEM")
            } else if self.in_batch[(idx / 64) as usize] & (1u64 << (idx % 64)) != 0 {
                Some("two descriptors in one chunk")
            } else {
                None
            };
            if let Some(m) = problem {
                result = Err(io::Error::new(io::ErrorKind::InvalidData, m));
                break;
            }
            self.in_batch[(idx / 64) as usize] |= 1u64 << (idx % 64);
            ranges[n] = (base, start, end);
            n += 1;
        }
        for &(base, _, _) in &ranges[..n] {
            let idx = base / fs;
            self.in_batch[(idx / 64) as usize] &= !(1u64 << (idx % 64));
        }
        result?;
        let mut area = BatchArea {
            ptr: self.ptr,
            len: self.len,
            frame_size: fs,
            headroom: self.cfg.headroom as usize,
            batch: ArrayVec::new(),
            _area: PhantomData,
        };
        for &(base, start, end) in &ranges[..n] {
            area.batch.push(base);
            // SAFETY: every chunk in `ranges` lies inside the area (checked above) and appears
            // once (the bitmap check), so the slices are disjoint; they borrow `self` mutably
            // for 'a, so nothing else can touch the area meanwhile.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(base as usize), fs as usize)
            };
            out.push(Frame::new(chunk, start, end).expect("range checked"));
        }
        Ok(area)
    }
}

/// The part of a UMEM outside one batch, while the batch's frames borrow the area.
pub struct BatchArea<'a> {
    ptr: NonNull<u8>,
    len: usize,
    frame_size: u64,
    headroom: usize,
    /// Chunks of the batch's frames (never handed out again while the frames may live).
    batch: ArrayVec<u64, MAX_BATCH>,
    _area: PhantomData<&'a mut [u8]>,
}

impl<'a> BatchArea<'a> {
    /// An area without chunks: its spares are always exhausted.
    pub fn empty() -> Self {
        BatchArea {
            ptr: NonNull::dangling(),
            len: 0,
            frame_size: 2048,
            headroom: 0,
            batch: ArrayVec::new(),
            _area: PhantomData,
        }
    }

    /// Spare frames from the chunks on `free` (the worker's list of chunks that neither the
    /// kernel nor a frame holds).
    pub fn spares(self, free: &mut Vec<u64>) -> Spares<'a, '_> {
        Spares {
            area: self,
            free,
            taken: ArrayVec::new(),
        }
    }
}

/// Frames taken from a free list during a batch (for the extra fragments of a packet the
/// pipeline splits). Every chunk handed out is checked to be inside the area, not part of the
/// batch and not handed out already, so frames never alias, even if the free list were wrong.
pub struct Spares<'a, 'f> {
    area: BatchArea<'a>,
    free: &'f mut Vec<u64>,
    taken: ArrayVec<u64, MAX_SPARES>,
}

impl<'a> Spares<'a, '_> {
    /// How far down the free list [`Spares::take`] looks past chunks it may not hand out (the
    /// batch's own chunks, freed during the batch, sit at its end).
    const LOOK: usize = MAX_BATCH + 8;

    /// A free chunk as a frame whose window spans the chunk after the headroom, with the
    /// chunk's UMEM offset; `None` when none is free (or [`MAX_SPARES`] are out).
    pub fn take(&mut self) -> Option<(u64, Frame<&'a mut [u8]>)> {
        if self.taken.is_full() {
            return None;
        }
        let a = &self.area;
        let usable = |c: u64| {
            c % a.frame_size == 0
                && c + a.frame_size <= a.len as u64
                && !a.batch.contains(&c)
                && !self.taken.contains(&c)
        };
        let n = self.free.len();
        let i = (n.saturating_sub(Self::LOOK)..n)
            .rev()
            .find(|&i| usable(self.free[i]))?;
        let base = self.free.swap_remove(i);
        self.taken.push(base);
        let fs = self.area.frame_size as usize;
        // SAFETY: `base..base + fs` lies inside the mapping (checked above) and belongs to no
        // other live slice: not to a frame of the batch (`batch`), not to an earlier spare
        // (`taken`; a spare leaves `taken` only when its frame is given back by value), and not
        // to the kernel (it came from the worker's free list, which only holds chunks taken
        // back from the completion ring or never lent). The slice borrows the area for 'a,
        // like the batch's frames.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(self.area.ptr.as_ptr().add(base as usize), fs)
        };
        let f = Frame::new(chunk, self.area.headroom.min(fs), fs)?;
        Some((base, f))
    }

    /// UMEM offset of the chunk holding spare frame `f`.
    pub fn base_of(&self, f: &Frame<&'a mut [u8]>) -> u64 {
        let buf = (f.data().as_ptr() as usize).wrapping_sub(f.start());
        buf.wrapping_sub(self.area.ptr.as_ptr() as usize) as u64
    }

    /// Puts an unused spare frame back on the free list.
    pub fn give_back(&mut self, f: Frame<&'a mut [u8]>) {
        let base = self.base_of(&f);
        if let Some(i) = self.taken.iter().position(|&c| c == base) {
            self.taken.swap_remove(i);
            self.free.push(base);
        }
    }

    /// The size of a chunk.
    pub fn frame_size(&self) -> u64 {
        self.area.frame_size
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; sockets that registered it hold
        // their own kernel reference to the pages.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_never_alias() {
        let mut u = Umem::new(UmemConfig {
            frames: 8,
            frame_size: 2048,
            headroom: 128,
        })
        .unwrap();
        let mut out = ArrayVec::new();
        u.frames_mut([(128u64, 60u32), (2048 + 128, 1500)].into_iter(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].len(), 1500);
        assert_eq!(out[0].headroom(), 128);
        drop(out);
        for bad in [
            vec![(128u64, 60u32), (300, 10)],
            vec![(8 * 2048u64, 60u32)],
            vec![(2000u64, 100u32)],
        ] {
            let mut out = ArrayVec::new();
            assert!(u.frames_mut(bad.into_iter(), &mut out).is_err());
        }
        // The aliasing bitmap is clean after a refused batch.
        let mut out = ArrayVec::new();
        u.frames_mut([(128u64, 60u32)].into_iter(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn spares_skip_the_batch_and_never_repeat() {
        let mut u = Umem::new(UmemConfig {
            frames: 4,
            frame_size: 2048,
            headroom: 128,
        })
        .unwrap();
        let mut out = ArrayVec::new();
        let area = u
            .frames_mut([(2048u64 + 128, 60u32)].into_iter(), &mut out)
            .unwrap();
        // A broken free list: a batch chunk, a duplicate, a chunk outside the area.
        let mut free = vec![0u64, 3 * 2048, 3 * 2048, 4 * 2048, 2048];
        let mut sp = area.spares(&mut free);
        let (a, fa) = sp.take().unwrap();
        let (b, fb) = sp.take().unwrap();
        assert_eq!((a, b), (3 * 2048, 0));
        assert!(
            sp.take().is_none(),
            "the rest is the batch, a repeat or outside"
        );
        assert_eq!((fa.headroom(), fa.len()), (128, 2048 - 128));
        assert_eq!(sp.base_of(&fb), 0);
        sp.give_back(fb);
        assert_eq!(
            sp.take().unwrap().0,
            0,
            "a given-back chunk can be taken again"
        );
        assert_eq!(fa.len() + out[0].len(), 2048 - 128 + 60);
    }
}
