//! The control thread's part in next hops: follows the kernel's neighbour table through
//! RTNLGRP_NEIGH notifications (with a periodic dump as a safety net), gives workers each
//! change at once, asks the kernel to resolve next hops workers wait for, and keeps the ones
//! workers use resolved by "using" them in the kernel (RTM_NEWNEIGH with NTF_USE), since the
//! kernel never sees the frames esprit sends.

use super::follower::SideRoutes;
use crate::daemon::router::Router;
use crate::kernel::neigh::{dump, NeighEntry, NeighMonitor, NeighUser};
use crate::worker::handoff::Waker;
use crate::worker::xsk::WorkerUpdate;
use crate::worker::{NeighRequest, Neighbours, Port, Side};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often used next hops are "used" in the kernel: well inside the shortest reachable time
/// (`base_reachable_time_ms` / 2) and the garbage collector's `gc_stale_time`.
const REFRESH: Duration = Duration::from_secs(1);
/// A next hop counts as used for this long after a worker last reported it.
const USED_FOR: Duration = Duration::from_secs(5);
/// How often the whole table is dumped again, in case a notification was lost.
const RESYNC: Duration = Duration::from_secs(5);
/// The same without notifications (the subscription failed): polling.
const RESYNC_POLLING: Duration = Duration::from_millis(500);

/// One side's next hops as the control thread sees them.
struct SideNeighbours {
    port: Port,
    ifindex: u32,
    /// Where its next hops are (on-link prefixes, gateway).
    side: Side,
    /// Configured neighbours: always present, never refreshed.
    statics: Vec<(IpAddr, [u8; 6])>,
    /// The kernel's usable entries.
    kernel: Neighbours,
    /// Next hops workers used, and when they last said so.
    used: HashMap<IpAddr, Instant>,
    /// The workers' copy is out of date.
    dirty: bool,
}

impl SideNeighbours {
    fn table(&self) -> Neighbours {
        let mut t = self.kernel.clone();
        for (ip, mac) in &self.statics {
            t.insert(*ip, *mac);
        }
        t
    }

    fn knows(&self, ip: IpAddr) -> bool {
        self.kernel.get(ip).is_some() || self.statics.iter().any(|(s, _)| *s == ip)
    }

    /// Applies one kernel report; true if the kernel gave up on the entry (FAILED).
    fn apply(&mut self, e: &NeighEntry) -> bool {
        match e.mac.filter(|_| e.usable()) {
            Some(mac) => {
                if self.kernel.get(e.ip) != Some(mac) {
                    self.kernel.insert(e.ip, mac);
                    self.dirty = true;
                }
            }
            None => {
                if self.kernel.remove(e.ip) {
                    self.dirty = true;
                }
            }
        }
        e.failed()
    }

    fn replace(&mut self, fresh: Neighbours) {
        let same = fresh.len() == self.kernel.len()
            && fresh
                .iter()
                .all(|(ip, mac)| self.kernel.get(ip) == Some(mac));
        if !same {
            self.kernel = fresh;
            self.dirty = true;
        }
    }
}

/// Keeps the workers' next hops resolved and current; driven by the control loop.
pub(crate) struct NeighKeeper {
    sides: [SideNeighbours; 2],
    monitor: Option<NeighMonitor>,
    user: Option<NeighUser>,
    /// Workers signal it when they ask for a resolution.
    waker: Arc<Waker>,
    next_resync: Instant,
    next_refresh: Instant,
}

impl NeighKeeper {
    /// Starts following the kernel's table for both sides (`(side, its static neighbours,
    /// ifindex)`, LAN first); `waker` is what workers signal after a request.
    pub(crate) fn new(
        lan: (&Side, &[(IpAddr, [u8; 6])], u32),
        wan: (&Side, &[(IpAddr, [u8; 6])], u32),
        waker: Arc<Waker>,
    ) -> Self {
        let make =
            |port, (side, statics, ifindex): (&Side, &[(IpAddr, [u8; 6])], u32)| SideNeighbours {
                port,
                ifindex,
                side: side.clone(),
                statics: statics.to_vec(),
                kernel: dump(ifindex).unwrap_or_default(),
                used: HashMap::new(),
                // The workers' tables date from before the subscription: send this one.
                dirty: true,
            };
        let monitor = NeighMonitor::open()
            .map_err(|e| tracing::warn!("no neighbour notifications ({e}); polling"))
            .ok();
        let user = NeighUser::open()
            .map_err(|e| tracing::warn!("cannot refresh neighbours: {e}"))
            .ok();
        let now = Instant::now();
        NeighKeeper {
            sides: [make(Port::Lan, lan), make(Port::Wan, wan)],
            monitor,
            user,
            waker,
            next_resync: now + RESYNC,
            next_refresh: now + REFRESH,
        }
    }

    /// Sleeps until a notification arrives, a worker signals a request, or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) {
        let mut fds = [
            libc::pollfd {
                fd: self.waker.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.monitor.as_ref().map_or(-1, |m| m.raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        self.waker.sleep_begin();
        // SAFETY: two valid pollfd entries for the duration of the call (a negative fd is
        // ignored).
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as i32) };
        self.waker.sleep_end();
    }

    fn side(&mut self, port: Port) -> &mut SideNeighbours {
        &mut self.sides[port as usize]
    }

    /// Takes the kernel's routes through one side's interface (from the route follower) and
    /// gives the workers the next hops they make, if they changed.
    pub(crate) fn set_side_routes(&mut self, port: Port, fresh: SideRoutes, router: &Router) {
        let s = self.side(port);
        let before = s.side.routes.clone();
        s.side.set_routes(fresh);
        if s.side.routes != before {
            let routes = s.side.routes.clone();
            tracing::info!(
                "{} routes changed: {} through the interface",
                if port == Port::Lan { "LAN" } else { "WAN" },
                routes.len()
            );
            router.broadcast(|| WorkerUpdate::KernelRoutes(port, routes.clone()));
        }
    }

    /// Handles a worker's request.
    pub(crate) fn request(&mut self, r: NeighRequest, now: Instant) {
        match r {
            NeighRequest::Resolve(port, dst) => {
                let s = self.side(port);
                let hop = s.side.next_hop(dst);
                s.used.insert(hop, now);
                if s.knows(hop) {
                    // The kernel has it: the worker's copy is behind (a lost update).
                    s.dirty = true;
                    return;
                }
                // No throttle: a worker asks once per next hop, when its first frame starts
                // waiting, and asking about an entry being resolved costs the kernel nothing.
                let ifindex = s.ifindex;
                if let Some(u) = &mut self.user {
                    let _ = u.use_entry(ifindex, hop);
                }
            }
            NeighRequest::Used(port, hop) => {
                self.side(port).used.insert(hop, now);
            }
        }
    }

    /// Reads notifications, dumps when due (or when notifications were lost), refreshes used
    /// entries when due, and sends workers what changed.
    pub(crate) fn tick(&mut self, router: &Router, now: Instant) {
        let mut failed: Vec<(Port, IpAddr)> = Vec::new();
        let mut resync = now >= self.next_resync;
        if let Some(m) = &mut self.monitor {
            let sides = &mut self.sides;
            let r = m.read(|e| {
                if let Some(s) = sides.iter_mut().find(|s| s.ifindex == e.ifindex) {
                    if s.apply(&e) {
                        failed.push((s.port, e.ip));
                    }
                }
            });
            if r.is_err() {
                // ENOBUFS: notifications were lost.
                resync = true;
            }
        }
        if resync {
            for s in &mut self.sides {
                if let Ok(t) = dump(s.ifindex) {
                    s.replace(t);
                }
                // A periodic full copy also repairs a worker that missed an update.
                s.dirty = true;
            }
            self.next_resync = now
                + if self.monitor.is_some() {
                    RESYNC
                } else {
                    RESYNC_POLLING
                };
        }
        if now >= self.next_refresh {
            self.refresh(now);
            self.next_refresh = now + REFRESH;
        }
        for s in &mut self.sides {
            if s.dirty {
                s.dirty = false;
                let t = s.table();
                let port = s.port;
                router.broadcast(|| WorkerUpdate::Neighbours(port, t.clone()));
            }
        }
        for (port, ip) in failed {
            router.broadcast(|| WorkerUpdate::NeighFailed(port, ip));
        }
    }

    /// "Uses" every next hop workers used lately, as the kernel's own transmit path would.
    fn refresh(&mut self, now: Instant) {
        if let Some(u) = &mut self.user {
            u.drain();
        }
        for s in &mut self.sides {
            s.used.retain(|_, t| now - *t < USED_FOR);
            for hop in s.used.keys() {
                if s.statics.iter().any(|(ip, _)| ip == hop) {
                    continue;
                }
                if let Some(u) = &mut self.user {
                    let _ = u.use_entry(s.ifindex, *hop);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn side() -> SideNeighbours {
        SideNeighbours {
            port: Port::Lan,
            ifindex: 3,
            side: Side::default(),
            statics: vec![(IpAddr::from([10, 0, 0, 9]), [2, 0, 0, 0, 0, 9])],
            kernel: Neighbours::new(),
            used: HashMap::new(),
            dirty: false,
        }
    }

    fn entry(state: u16, mac: Option<[u8; 6]>, deleted: bool) -> NeighEntry {
        NeighEntry {
            ifindex: 3,
            ip: IpAddr::from([10, 0, 0, 2]),
            mac,
            state,
            deleted,
        }
    }

    #[test]
    fn transitional_states_keep_the_mac_failure_and_deletion_remove_it() {
        let mut s = side();
        let ip = IpAddr::from([10, 0, 0, 2]);
        assert!(!s.apply(&entry(0x01, None, false)), "INCOMPLETE");
        assert!(!s.dirty && s.kernel.get(ip).is_none());
        s.apply(&entry(0x02, Some(MAC), false));
        assert!(s.dirty && s.kernel.get(ip) == Some(MAC));
        // STALE, DELAY, PROBE, REACHABLE again: nothing changes for the workers.
        for state in [0x04, 0x08, 0x10, 0x02] {
            s.dirty = false;
            s.apply(&entry(state, Some(MAC), false));
            assert!(!s.dirty, "state {state:#x}");
            assert_eq!(s.table().get(ip), Some(MAC));
        }
        // FAILED is reported (waiting frames drop) and removes the MAC.
        assert!(s.apply(&entry(0x20, Some(MAC), false)));
        assert!(s.dirty && s.table().get(ip).is_none());
        s.apply(&entry(0x04, Some(MAC), false));
        s.dirty = false;
        assert!(!s.apply(&entry(0x04, Some(MAC), true)), "deleted");
        assert!(s.dirty && s.kernel.get(ip).is_none());
        // Static neighbours stay whatever the kernel says.
        assert_eq!(
            s.table().get(IpAddr::from([10, 0, 0, 9])),
            Some([2, 0, 0, 0, 0, 9])
        );
        assert!(s.knows(IpAddr::from([10, 0, 0, 9])));
    }

    #[test]
    fn a_dump_replaces_the_view_only_when_it_differs() {
        let mut s = side();
        let ip = IpAddr::from([10, 0, 0, 2]);
        let mut t = Neighbours::new();
        t.insert(ip, MAC);
        s.replace(t.clone());
        assert!(s.dirty);
        s.dirty = false;
        s.replace(t);
        assert!(!s.dirty);
        s.replace(Neighbours::new());
        assert!(s.dirty && s.kernel.is_empty());
    }
}
