//! The AF_XDP worker's [`FramePool`]: spare UMEM chunks from its free list for the extra
//! fragments of packets the pipeline splits, and the transmissions they become.

use super::fragment::FramePool;
use super::Port;
use crate::frame::Frame;
use crate::xdp::ring::XdpDesc;
use crate::xdp::umem::{Spares, MAX_SPARES};
use arrayvec::ArrayVec;
use std::net::IpAddr;

/// Spare frames during one batch, and the frames to transmit after it.
pub struct UmemPool<'a, 'f> {
    spares: Spares<'a, 'f>,
    sends: ArrayVec<(Port, XdpDesc), MAX_SPARES>,
    waits: ArrayVec<(Port, IpAddr, XdpDesc), MAX_SPARES>,
}

impl<'a, 'f> UmemPool<'a, 'f> {
    /// A pool over `spares`.
    pub fn new(spares: Spares<'a, 'f>) -> Self {
        UmemPool {
            spares,
            sends: ArrayVec::new(),
            waits: ArrayVec::new(),
        }
    }

    /// The chunk size.
    pub fn frame_size(&self) -> u64 {
        self.spares.frame_size()
    }

    /// The frames to transmit, in the order the pipeline sent them, and the frames that wait
    /// for a next hop (port, next hop, frame); ends the pool's hold on the free list.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        ArrayVec<(Port, XdpDesc), MAX_SPARES>,
        ArrayVec<(Port, IpAddr, XdpDesc), MAX_SPARES>,
    ) {
        (self.sends, self.waits)
    }

    fn desc(&self, f: &Frame<&mut [u8]>) -> XdpDesc {
        XdpDesc {
            addr: self.spares.base_of(f) + f.start() as u64,
            len: f.len() as u32,
            options: 0,
        }
    }
}

impl<'a> FramePool<&'a mut [u8]> for UmemPool<'a, '_> {
    fn take(&mut self) -> Option<Frame<&'a mut [u8]>> {
        self.spares.take().map(|(_, f)| f)
    }

    fn send(&mut self, f: Frame<&'a mut [u8]>, port: Port) {
        let d = self.desc(&f);
        // At most MAX_SPARES frames are taken, so every one sent fits.
        if self.sends.try_push((port, d)).is_err() {
            self.spares.give_back(f);
        }
    }

    fn wait(&mut self, f: Frame<&'a mut [u8]>, port: Port, hop: IpAddr) {
        let d = self.desc(&f);
        if self.waits.try_push((port, hop, d)).is_err() {
            self.spares.give_back(f);
        }
    }

    fn give_back(&mut self, f: Frame<&'a mut [u8]>) {
        self.spares.give_back(f);
    }
}
