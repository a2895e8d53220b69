//! The workers' side of the tunnel interfaces: the rings between each worker and the
//! tunnel-interface thread, and which workers hold an SA towards each interface's peer (so the
//! thread knows where to send what the gateway's stack writes, and whether the interface's
//! carrier is on).

use super::handoff;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A worker's link to the tunnel-interface thread: rings each way, tagged with the interface's
/// index in [`super::Pipeline::tunnels`].
pub struct HostLink {
    /// Packets the gateway's own stack sent into a tunnel interface.
    pub from_host: handoff::Consumer,
    /// Decrypted packets for the gateway's own stack.
    pub to_host: handoff::Producer,
    /// Wakes the tunnel-interface thread after packets were queued for it.
    pub waker: Arc<handoff::Waker>,
    /// Where the worker says which tunnel peers it holds an outbound SA for.
    pub status: Arc<TunnelStatus>,
}

/// Which workers hold an outbound SA towards each tunnel interface's peer: one word per
/// interface, bit `w` for worker `w` (workers past 63 share bit 63).
#[derive(Debug, Default)]
pub struct TunnelStatus {
    words: Vec<AtomicU64>,
}

impl TunnelStatus {
    /// The status of `tunnels` interfaces, none with an SA yet.
    pub fn new(tunnels: usize) -> Arc<Self> {
        Arc::new(TunnelStatus {
            words: (0..tunnels).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Records whether `worker` holds an outbound SA for tunnel `tunnel`'s peer.
    pub fn set(&self, tunnel: usize, worker: usize, has: bool) {
        let Some(w) = self.words.get(tunnel) else {
            return;
        };
        let bit = 1u64 << worker.min(63);
        if has {
            w.fetch_or(bit, Ordering::Release);
        } else {
            w.fetch_and(!bit, Ordering::Release);
        }
    }

    /// The worker holding the SA for tunnel `tunnel`'s peer (the lowest, if several do while
    /// an SA moves), or `None` while there is none.
    pub fn owner(&self, tunnel: usize) -> Option<usize> {
        let w = self.words.get(tunnel)?.load(Ordering::Acquire);
        (w != 0).then(|| w.trailing_zeros() as usize)
    }

    /// Number of tunnel interfaces.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_the_workers_reports() {
        let s = TunnelStatus::new(2);
        assert_eq!(s.owner(0), None);
        s.set(0, 3, true);
        s.set(0, 1, true);
        assert_eq!(s.owner(0), Some(1));
        s.set(0, 1, false);
        assert_eq!(s.owner(0), Some(3));
        assert_eq!(s.owner(1), None);
        assert_eq!(s.owner(7), None);
        s.set(7, 0, true);
        assert_eq!(s.len(), 2);
    }
}
