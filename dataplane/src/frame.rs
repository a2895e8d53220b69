//! A packet in a frame buffer with headroom and tailroom.
//!
//! The dataplane processes packets in place: encapsulation grows a packet at the front (outer
//! headers) and at the back (ESP trailer and ICV), decapsulation shrinks it. A [`Frame`] is a
//! window `start..end` into a larger buffer, like a DPDK mbuf or a UMEM chunk with headroom.

/// Default headroom left in front of a received packet: room for an outer IPv6 header, UDP,
/// the ESP header and IV (40 + 8 + 16 = 64), rounded up to a cache line, plus Ethernet.
pub const DEFAULT_HEADROOM: usize = 128;

/// A packet occupying `buf[start..end]`. Invariant: `start <= end <= buf.len()`.
#[derive(Debug, Clone)]
pub struct Frame<B> {
    buf: B,
    start: usize,
    end: usize,
}

/// A frame that owns its buffer (tests, tools and benchmarks; the AF_XDP path borrows UMEM).
pub type OwnedFrame = Frame<Vec<u8>>;

impl<B: AsRef<[u8]> + AsMut<[u8]>> Frame<B> {
    /// Wraps `buf` with the packet at `start..end`. Returns `None` if the range is invalid.
    pub fn new(buf: B, start: usize, end: usize) -> Option<Self> {
        (start <= end && end <= buf.as_ref().len()).then_some(Frame { buf, start, end })
    }

    /// The packet bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[self.start..self.end]
    }

    /// The packet bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[self.start..self.end]
    }

    /// Packet length.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True if the packet is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free bytes in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.as_ref().len() - self.end
    }

    /// Offset of the packet in the buffer.
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// The whole buffer and the packet's offset in it, for in-place moves across the edge.
    #[inline]
    pub(crate) fn raw_mut(&mut self) -> (&mut [u8], usize, usize) {
        (self.buf.as_mut(), self.start, self.end)
    }

    /// Moves the packet window. Callers keep `start <= end <= buf.len()`.
    #[inline]
    pub(crate) fn set_range(&mut self, start: usize, end: usize) {
        debug_assert!(start <= end && end <= self.buf.as_ref().len());
        self.start = start;
        self.end = end;
    }

    /// Sets the packet window to `buf[start..end]`; false (and no change) if it is not inside
    /// the buffer.
    #[inline]
    pub fn set_window(&mut self, start: usize, end: usize) -> bool {
        if start > end || end > self.buf.as_ref().len() {
            return false;
        }
        self.start = start;
        self.end = end;
        true
    }

    /// Grows the packet by `n` bytes at the front. Returns false (and changes nothing) if the
    /// headroom is too small.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }

    /// Removes `n` bytes from the front. Returns false if the packet is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.start += n;
        true
    }

    /// Sets the packet length, growing into the tailroom or shrinking. Returns false if the
    /// buffer is too small.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.buf.as_ref().len() {
            return false;
        }
        self.end = self.start + len;
        true
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

impl OwnedFrame {
    /// Copies `packet` into a new buffer with `headroom` bytes in front and `tailroom` after.
    pub fn from_packet(packet: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + packet.len() + tailroom];
        buf[headroom..headroom + packet.len()].copy_from_slice(packet);
        Frame {
            buf,
            start: headroom,
            end: headroom + packet.len(),
        }
    }

    /// Replaces the packet with `packet`, keeping the buffer; used to refill benchmark frames
    /// without allocating. Returns false if it does not fit after `headroom`.
    pub fn refill(&mut self, packet: &[u8], headroom: usize) -> bool {
        let end = headroom + packet.len();
        if end > self.buf.len() {
            return false;
        }
        self.buf[headroom..end].copy_from_slice(packet);
        self.start = headroom;
        self.end = end;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_and_bounds() {
        let mut f = OwnedFrame::from_packet(b"abcd", 4, 2);
        assert_eq!((f.headroom(), f.tailroom()), (4, 2));
        assert!(f.push_front(4));
        assert!(!f.push_front(1));
        assert!(f.pull_front(4));
        assert_eq!(f.data(), b"abcd");
        assert!(f.set_len(6));
        assert!(!f.set_len(7));
        assert!(!f.pull_front(7));
        assert!(Frame::new(vec![0u8; 4], 3, 2).is_none());
        assert!(Frame::new(vec![0u8; 4], 1, 5).is_none());
    }
}
