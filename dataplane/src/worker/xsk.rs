//! The AF_XDP poll loop of one worker: a UMEM shared by the LAN and WAN sockets of one queue,
//! batches of up to 64 frames through the [`Pipeline`], zero copies between receive and
//! transmit, and no allocation, lock or system call per packet (copy-mode TX needs one
//! `sendto` per batch).

use super::handoff;
use super::host::HostLink;
use super::neigh::NeighRequest;
use super::neigh_queue::{Held, NeighQueue};
use super::pool::UmemPool;
use super::{Out, Pipeline, Port};
use crate::api::convert::{drops_map, sa_infos, socket_stats};
use crate::esp::DropReason;
use crate::frame::Frame;
use crate::sa::spd::Policies;
use crate::sa::{Direction, SaConfig, SaDbError, SaEvent};
use crate::xdp::ring::XdpDesc;
use crate::xdp::socket::{BindMode, SocketConfig, XskSocket};
use crate::xdp::umem::{BatchArea, Umem, UmemConfig, MAX_BATCH};
use arrayvec::ArrayVec;
use esprit_api::Snapshot;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

/// How a worker waits for packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// Spin on the rings: lowest latency, one core at 100%. For dedicated cores.
    Busy,
    /// Spin while there is traffic, sleep in `poll(2)` after an idle spell. The default: a
    /// 2-core machine running a lab is not starved.
    Adaptive,
}

/// What a worker binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Protected interface.
    pub lan: String,
    /// Unprotected interface.
    pub wan: String,
    /// Queue index on both interfaces.
    pub queue: u32,
    /// Entries per ring.
    pub ring_size: u32,
    /// UMEM shape.
    pub umem: UmemConfig,
    /// Waiting strategy.
    pub poll: PollMode,
    /// Copy or zero-copy.
    pub mode: BindMode,
}

/// A change or question the control side sends to a worker; handled between batches.
pub enum WorkerUpdate {
    /// New next-hop table for one side; frames waiting for next hops it resolves leave.
    Neighbours(Port, super::Neighbours),
    /// The kernel could not resolve this next hop on this side: frames waiting for it are
    /// dropped.
    NeighFailed(Port, IpAddr),
    /// Install an SA (or replace the one with the same SPI, direction and addresses); the
    /// result goes back on the channel.
    AddSa {
        /// The SA.
        sa: Box<SaConfig>,
        /// Replace an existing one instead of refusing a duplicate.
        replace: bool,
        /// Where the outcome goes.
        reply: SyncSender<Result<(), SaDbError>>,
    },
    /// Remove SAs; the number removed goes back.
    DeleteSa {
        /// SPI.
        spi: u32,
        /// Direction.
        direction: Direction,
        /// Local (in) or remote (out) address, to narrow the match.
        address: Option<IpAddr>,
        /// Where the count goes.
        reply: SyncSender<usize>,
    },
    /// Report counters.
    Snapshot(SyncSender<Snapshot>),
    /// Add the policy of an outbound SA owned by `owner` (every worker keeps all policies).
    AddPolicy {
        /// The SA (only its selectors and addresses are kept).
        sa: Box<SaConfig>,
        /// The owning worker.
        owner: usize,
    },
    /// Replace the route table (shared by every worker).
    Routes(Arc<crate::sa::RouteTable>),
    /// Replace the kernel's routes through one side's interface (its next hops beyond the link).
    KernelRoutes(Port, Vec<(crate::sa::Prefix, Option<IpAddr>)>),
    /// Replace the trap policies.
    Traps(Vec<crate::sa::spd::Trap>),
    /// Remove the policies of outbound SAs with this SPI (and remote address, if given).
    RemovePolicy {
        /// SPI.
        spi: u32,
        /// Remote address.
        remote: Option<IpAddr>,
    },
}

/// How a worker relates to the others when there are several: its id, the handoff rings to and
/// from every other worker, and the policy table that says which worker owns an outbound SA.
pub struct Shard {
    /// This worker's index (= its queue).
    pub id: usize,
    /// Number of workers.
    pub workers: usize,
    /// Rings towards each worker (`None` at our own index).
    pub out: Vec<Option<handoff::Producer>>,
    /// Rings from the other workers.
    pub inbox: Vec<handoff::Consumer>,
    /// Outbound policies and their owners.
    pub policies: Policies,
    /// Every worker's waker (index = worker); ours wakes us when others hand us packets.
    pub wakers: Vec<Arc<handoff::Waker>>,
}

/// Handoff counters of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandoffStats {
    /// Packets passed to the worker owning their SA.
    pub sent: u64,
    /// Packets received from other workers.
    pub received: u64,
    /// Packets dropped because a handoff ring was full.
    pub dropped: u64,
}

/// Idle loops before an adaptive worker sleeps in `poll(2)`.
const IDLE_SPINS: u32 = 256;
/// Longest sleep, so a stop request is noticed promptly.
const POLL_TIMEOUT_MS: i32 = 20;
/// Most TX kicks per side per round (see `poll_once`).
const MAX_KICKS: u32 = 8;
/// How often a worker reports the next hops it used (the control thread keeps their kernel
/// entries resolved).
const USED_REPORT_MS: u64 = 1000;

/// One worker: its sockets, UMEM, free frames and pipeline.
pub struct Worker {
    umem: Umem,
    wan: XskSocket,
    lan: XskSocket,
    free: Vec<u64>,
    /// The forwarding state.
    pub pipeline: Pipeline,
    cfg: WorkerConfig,
    idle: u32,
    updates: Option<Receiver<WorkerUpdate>>,
    missing: Option<SyncSender<NeighRequest>>,
    /// Frames waiting for their next hop's link-layer address.
    neigh: NeighQueue,
    /// The worker's clock: milliseconds since `epoch`, read once per round.
    epoch: Instant,
    now_ms: u64,
    next_used_report_ms: u64,
    /// Wakes the control thread after a batch asked it to resolve a next hop.
    control_waker: Option<Arc<handoff::Waker>>,
    /// A resolution request went out during the last round.
    asked_control: bool,
    events: Option<SyncSender<SaEvent>>,
    events_lost: u64,
    shard: Option<Shard>,
    /// Wakes this worker from poll(2): the router signals it after queueing an update, and
    /// (in a group) other workers after handing it packets.
    waker: Option<Arc<handoff::Waker>>,
    /// Handoff counters.
    pub handoff: HandoffStats,
    /// The link to the tunnel interfaces, if there are any.
    host: Option<HostLink>,
}

impl Worker {
    /// Creates the UMEM and both sockets (the LAN socket shares the WAN socket's UMEM) and
    /// hands each fill ring a quarter of the frames.
    pub fn new(cfg: WorkerConfig, pipeline: Pipeline) -> io::Result<Self> {
        let umem = Umem::new(cfg.umem)?;
        let sock = |iface: &str| SocketConfig {
            iface: iface.to_string(),
            queue: cfg.queue,
            ring_size: cfg.ring_size,
            mode: cfg.mode,
            need_wakeup: cfg.poll == PollMode::Adaptive,
        };
        let wan = XskSocket::new(&umem, &sock(&cfg.wan), None)?;
        let lan = XskSocket::new(&umem, &sock(&cfg.lan), Some(&wan))?;
        let neigh = NeighQueue::for_frames(cfg.umem.frames);
        let free: Vec<u64> = (0..cfg.umem.frames)
            .rev()
            .map(|i| umem.chunk_addr(i))
            .collect();
        let mut w = Worker {
            umem,
            wan,
            lan,
            free,
            pipeline,
            cfg,
            idle: 0,
            updates: None,
            missing: None,
            neigh,
            epoch: Instant::now(),
            now_ms: 0,
            next_used_report_ms: USED_REPORT_MS,
            control_waker: None,
            asked_control: false,
            events: None,
            events_lost: 0,
            shard: None,
            waker: None,
            handoff: HandoffStats::default(),
            host: None,
        };
        w.refill();
        Ok(w)
    }

    /// The WAN socket's descriptor, for the WAN classifier's XSKMAP.
    pub fn wan_fd(&self) -> i32 {
        self.wan.raw_fd()
    }

    /// The LAN socket's descriptor, for the LAN classifier's XSKMAP.
    pub fn lan_fd(&self) -> i32 {
        self.lan.raw_fd()
    }

    /// The kernel's bind mode of the LAN socket and of the WAN socket (`XDP_OPTIONS`).
    pub fn bind_modes(&self) -> (io::Result<BindMode>, io::Result<BindMode>) {
        (self.lan.bind_mode(), self.wan.bind_mode())
    }

    /// Frames currently owned by the worker (not lent to the kernel).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Connects the worker to its control thread: `updates` brings new tables, `missing`
    /// reports next hops whose link-layer address is unknown (so the kernel can be asked to
    /// resolve them) and next hops in use (so the kernel keeps them resolved). Both are
    /// non-blocking on the worker's side.
    pub fn connect(
        &mut self,
        updates: Receiver<WorkerUpdate>,
        missing: SyncSender<NeighRequest>,
        events: SyncSender<SaEvent>,
    ) {
        self.updates = Some(updates);
        self.missing = Some(missing);
        self.events = Some(events);
    }

    /// This worker's waker: the router signals it after queueing an update (and, in a group,
    /// other workers after handing it packets), so a worker asleep in poll(2) wakes at once.
    pub fn set_waker(&mut self, waker: Arc<handoff::Waker>) {
        self.waker = Some(waker);
    }

    /// The control thread's waker: signalled (once per round, not per packet) after frames
    /// started waiting for a next hop, so resolution starts at once.
    pub fn set_control_waker(&mut self, waker: Arc<handoff::Waker>) {
        self.control_waker = Some(waker);
    }

    /// Links the worker to the tunnel-interface thread.
    pub fn set_host(&mut self, link: HostLink) {
        self.host = Some(link);
        self.report_tunnels();
    }

    /// Tells the tunnel-interface thread which tunnel peers this worker holds an outbound SA
    /// for (after every SA change).
    fn report_tunnels(&self) {
        let Some(h) = &self.host else { return };
        let me = self.cfg.queue as usize;
        for (i, t) in self.pipeline.tunnels.iter().enumerate() {
            h.status
                .set(i, me, self.pipeline.sadb.outbound_to(t.peer).is_some());
        }
    }

    /// Joins a group of workers: from now on packets whose SA another worker owns are handed
    /// to it, and packets handed to this worker are processed here.
    pub fn set_shard(&mut self, shard: Shard) {
        self.shard = Some(shard);
    }

    /// The worker's state for the API.
    pub fn snapshot(&self) -> Snapshot {
        let db = &self.pipeline.sadb;
        Snapshot {
            sas: sa_infos(db),
            sadb_drops: drops_map(&db.drops),
            forwarding_drops: drops_map(&self.pipeline.drops),
            lan_to_wan: self.pipeline.forwarded[0],
            wan_to_lan: self.pipeline.forwarded[1],
            icmp_sent: self.pipeline.icmp_sent,
            mss_clamped: self.pipeline.mss_clamped,
            handoff_sent: self.handoff.sent,
            handoff_received: self.handoff.received,
            handoff_dropped: self.handoff.dropped,
            workers: 1,
            bypassed: self.pipeline.bypassed,
            checksums_completed: self.pipeline.checksums_completed,
            fragmented: self.pipeline.fragmented,
            fragments: self.pipeline.fragments,
            lan_socket: socket_stats(self.lan.statistics().unwrap_or_default()),
            wan_socket: socket_stats(self.wan.statistics().unwrap_or_default()),
            events_lost: self.events_lost,
            neigh_queued: self.neigh.held,
            neigh_released: self.neigh.released,
        }
    }

    fn forward_events(&mut self) {
        if !self.pipeline.sadb.has_events() {
            return;
        }
        let tx = self.events.as_ref();
        for e in self.pipeline.sadb.take_events() {
            if tx.is_none_or(|t| t.try_send(e).is_err()) {
                self.events_lost += 1;
            }
        }
    }

    fn apply_updates(&mut self) {
        // Taken out while the updates apply (some need the whole worker), put back after.
        let Some(rx) = self.updates.take() else {
            return;
        };
        loop {
            match rx.try_recv() {
                Ok(WorkerUpdate::Neighbours(port, n)) => {
                    let side = match port {
                        Port::Lan => &mut self.pipeline.lan,
                        Port::Wan => &mut self.pipeline.wan,
                    };
                    n.inherit_used(&side.neighbours);
                    side.neighbours = n;
                    self.release_waiting(port);
                }
                Ok(WorkerUpdate::NeighFailed(port, hop)) => {
                    let (free, drops) = (&mut self.free, &mut self.pipeline.drops);
                    self.neigh.fail(port, hop, |h| {
                        free.push(h.base);
                        drops.add(DropReason::NeighFailed);
                    });
                }
                Ok(WorkerUpdate::AddSa { sa, replace, reply }) => {
                    let r = if replace {
                        self.pipeline.sadb.replace(*sa)
                    } else {
                        self.pipeline.sadb.insert(*sa)
                    };
                    self.report_tunnels();
                    let _ = reply.try_send(r);
                }
                Ok(WorkerUpdate::DeleteSa {
                    spi,
                    direction,
                    address,
                    reply,
                }) => {
                    let n = self.pipeline.sadb.remove(spi, direction, address);
                    self.report_tunnels();
                    let _ = reply.try_send(n);
                }
                Ok(WorkerUpdate::Snapshot(reply)) => {
                    let _ = reply.try_send(self.snapshot());
                }
                Ok(WorkerUpdate::AddPolicy { sa, owner }) => {
                    if let Some(sh) = &mut self.shard {
                        sh.policies.add(&sa, owner);
                    }
                }
                Ok(WorkerUpdate::Traps(t)) => self.pipeline.sadb.set_traps(t),
                Ok(WorkerUpdate::KernelRoutes(port, routes)) => match port {
                    Port::Lan => self.pipeline.lan.routes = routes,
                    Port::Wan => self.pipeline.wan.routes = routes,
                },
                Ok(WorkerUpdate::Routes(r)) => {
                    if let Some(sh) = &mut self.shard {
                        sh.policies.set_route_peers(r.peers());
                    }
                    self.pipeline.set_routes(r);
                }
                Ok(WorkerUpdate::RemovePolicy { spi, remote }) => {
                    if let Some(sh) = &mut self.shard {
                        sh.policies.remove(spi, remote);
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.updates = Some(rx);
                    return;
                }
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Sends the frames waiting for next hops of `port` that its table now resolves.
    fn release_waiting(&mut self, port: Port) {
        let Worker {
            umem,
            wan,
            lan,
            free,
            pipeline,
            neigh,
            ..
        } = self;
        if neigh.is_empty() {
            return;
        }
        let (table, sock) = match port {
            Port::Lan => (&pipeline.lan.neighbours, lan),
            Port::Wan => (&pipeline.wan.neighbours, wan),
        };
        let (drops, forwarded) = (&mut pipeline.drops, &mut pipeline.forwarded);
        neigh.release(
            port,
            |ip| table.lookup(ip),
            |h, mac| {
                let off = h.offset as usize;
                let written = umem
                    .chunk_mut(h.base)
                    .and_then(|c| c.get_mut(off..off + 6))
                    .map(|d| d.copy_from_slice(&mac))
                    .is_some();
                let d = XdpDesc {
                    addr: h.base + u64::from(h.offset),
                    len: h.len,
                    options: 0,
                };
                if !written {
                    free.push(h.base);
                    drops.add(DropReason::Malformed);
                } else if sock.tx.produce(&[d]) == 1 {
                    forwarded[(port == Port::Lan) as usize] += 1;
                } else {
                    free.push(h.base);
                    drops.add(DropReason::TxFull);
                }
            },
        );
    }

    /// Drops waiting frames that are too old, and every [`USED_REPORT_MS`] tells the control
    /// thread which next hops were used.
    fn neighbour_chores(&mut self) {
        if !self.neigh.is_empty() {
            let (free, drops) = (&mut self.free, &mut self.pipeline.drops);
            self.neigh.expire(self.now_ms, |h| {
                free.push(h.base);
                drops.add(DropReason::NeighTimeout);
            });
        }
        if self.now_ms < self.next_used_report_ms {
            return;
        }
        self.next_used_report_ms = self.now_ms + USED_REPORT_MS;
        let Some(tx) = &self.missing else { return };
        for (port, side) in [
            (Port::Lan, &self.pipeline.lan),
            (Port::Wan, &self.pipeline.wan),
        ] {
            side.neighbours.take_used(|ip| {
                let _ = tx.try_send(NeighRequest::Used(port, ip));
            });
        }
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.now_ms = self.epoch.elapsed().as_millis() as u64;
            self.apply_updates();
            self.forward_events();
            self.neighbour_chores();
            let n = self.poll_once()?;
            if std::mem::take(&mut self.asked_control) {
                if let Some(w) = &self.control_waker {
                    w.wake_if_sleeping();
                }
            }
            if n > 0 {
                self.idle = 0;
                continue;
            }
            self.idle = self.idle.saturating_add(1);
            if self.cfg.poll == PollMode::Adaptive && self.idle > IDLE_SPINS {
                self.sleep()?;
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }

    fn sleep(&self) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.wan.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.lan.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Updates from the router, and in a group other workers' handoffs, wake us too.
        let inbox = self
            .shard
            .as_ref()
            .filter(|s| s.workers > 1)
            .map(|s| &s.inbox);
        let waker = self.waker.as_ref().or_else(|| {
            self.shard
                .as_ref()
                .filter(|s| s.workers > 1)
                .map(|s| &s.wakers[s.id])
        });
        if let Some(w) = waker {
            w.sleep_begin();
            let host_waiting = self.host.as_ref().is_some_and(|h| !h.from_host.is_empty());
            if host_waiting || inbox.is_some_and(|i| i.iter().any(|c| !c.is_empty())) {
                w.sleep_end();
                return Ok(());
            }
            fds[2].fd = w.raw_fd();
        }
        // SAFETY: three valid pollfd entries (a negative fd is ignored by poll).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, POLL_TIMEOUT_MS) };
        if let Some(w) = waker {
            w.sleep_end();
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// One round: reclaim completed TX frames, refill the fill rings, process one batch from
    /// each side, push transmissions. Returns the number of frames received.
    pub fn poll_once(&mut self) -> io::Result<usize> {
        self.reclaim();
        self.refill();
        let a = self.rx_batch(Port::Lan)?;
        let b = self.rx_batch(Port::Wan)?;
        let c = self.drain_inbox() + self.drain_host();
        for s in [&self.wan, &self.lan] {
            // A copy-mode kick sends at most 32 frames (the kernel's TX budget) while a round
            // queues up to 64 per side: kick until the ring drains (a few times at most, and
            // only while the kernel makes progress: zero-copy kicks complete asynchronously),
            // so frames do not wait a round in the TX ring and starve the fill rings.
            let mut kicks = 0;
            while s.tx.pending() > 0 && kicks < MAX_KICKS {
                let before = s.tx.pending();
                s.kick_tx()?;
                kicks += 1;
                if s.tx.pending() >= before {
                    break;
                }
            }
        }
        Ok(a + b + c)
    }

    fn reclaim(&mut self) {
        let mut done = [0u64; MAX_BATCH];
        // Completions carry the address that was sent (chunk + offset); the free list holds
        // chunk starts.
        let mask = !(u64::from(self.umem.config().frame_size) - 1);
        for s in [&mut self.wan, &mut self.lan] {
            loop {
                let n = s.comp.consume(&mut done) as usize;
                self.free.extend(done[..n].iter().map(|a| a & mask));
                if n < MAX_BATCH {
                    break;
                }
            }
        }
    }

    fn refill(&mut self) {
        // Keep the fill rings nearly full: an empty fill ring drops packets in the kernel
        // (rx_fill_ring_empty) while the worker is descheduled.
        let target = self.cfg.ring_size - self.cfg.ring_size / 8;
        for s in [&mut self.wan, &mut self.lan] {
            let queued = s.fill.size() - s.fill.free(s.fill.size());
            if queued >= target {
                continue;
            }
            let want = ((target - queued) as usize).min(self.free.len());
            let from = self.free.len() - want;
            let n = s.fill.produce(&self.free[from..]) as usize;
            // The ring took the first `n` of the offered frames; the rest stay free.
            self.free.drain(from..from + n);
        }
    }

    fn rx_batch(&mut self, port: Port) -> io::Result<usize> {
        let Worker {
            umem,
            wan,
            lan,
            free,
            pipeline,
            shard,
            handoff,
            neigh,
            missing,
            now_ms,
            asked_control,
            host,
            ..
        } = self;
        let mut waiting = Waiting {
            queue: neigh,
            requests: missing.as_ref(),
            now_ms: *now_ms,
            asked: asked_control,
            host: host.as_mut(),
        };
        let rx = match port {
            Port::Lan => &mut *lan,
            Port::Wan => &mut *wan,
        };
        let mut descs = [XdpDesc::default(); MAX_BATCH];
        let n = rx.rx.consume(&mut descs) as usize;
        if n == 0 {
            return Ok(0);
        }
        let fs = u64::from(umem.config().frame_size);
        let mut frames = ArrayVec::new();
        let Ok(area) = umem.frames_mut(descs[..n].iter().map(|d| (d.addr, d.len)), &mut frames)
        else {
            // A descriptor the kernel should never produce: give the chunks back, count, go on.
            for d in &descs[..n] {
                free.push(d.addr & !(fs - 1));
            }
            pipeline.drops.add(DropReason::Malformed);
            return Ok(n);
        };
        let mut bases: ArrayVec<u64, MAX_BATCH> =
            descs[..n].iter().map(|d| d.addr & !(fs - 1)).collect();
        if let Some(sh) = shard.as_mut().filter(|sh| sh.workers > 1) {
            // Packets whose SA another worker owns go to it; the rest stay in the batch.
            let mut kept = ArrayVec::new();
            let mut kept_bases = ArrayVec::new();
            let mut woken = 0u64;
            for (f, base) in frames.into_iter().zip(bases) {
                let owner = steer(sh, &pipeline.routes, port, f.data());
                if owner == sh.id {
                    kept.push(f);
                    kept_bases.push(base);
                    continue;
                }
                let pushed = sh.out[owner]
                    .as_mut()
                    .is_some_and(|p| p.push(port, f.data()));
                if pushed {
                    handoff.sent += 1;
                    woken |= 1u64 << (owner % 64);
                } else {
                    handoff.dropped += 1;
                }
                free.push(base);
            }
            frames = kept;
            bases = kept_bases;
            for out in sh.out.iter_mut().flatten() {
                out.publish();
            }
            for (w, waker) in sh.wakers.iter().enumerate() {
                if woken & (1u64 << (w % 64)) != 0 {
                    waker.wake_if_sleeping();
                }
            }
        }
        process_and_send(
            From::Port(port),
            &mut frames,
            &bases,
            area,
            pipeline,
            lan,
            wan,
            free,
            &mut waiting,
        );
        Ok(n)
    }

    /// Processes packets other workers handed over, in frames of our own UMEM.
    fn drain_inbox(&mut self) -> usize {
        let Worker {
            umem,
            wan,
            lan,
            free,
            pipeline,
            shard,
            handoff,
            neigh,
            missing,
            now_ms,
            asked_control,
            host,
            ..
        } = self;
        let mut waiting = Waiting {
            queue: neigh,
            requests: missing.as_ref(),
            now_ms: *now_ms,
            asked: asked_control,
            host: host.as_mut(),
        };
        let Some(sh) = shard.as_mut().filter(|sh| sh.workers > 1) else {
            return 0;
        };
        let mut total = 0;
        for inbox in sh.inbox.iter_mut() {
            if inbox.is_empty() {
                continue;
            }
            let Some((addrs, frames, area)) = take_spares(umem, free) else {
                break;
            };
            // One batch per port the packets came from.
            let mut got: [ArrayVec<Frame<&mut [u8]>, MAX_BATCH>; 2] =
                [ArrayVec::new(), ArrayVec::new()];
            let mut got_bases: [ArrayVec<u64, MAX_BATCH>; 2] = [ArrayVec::new(), ArrayVec::new()];
            let mut unused: ArrayVec<u64, MAX_BATCH> = ArrayVec::new();
            for (mut f, base) in frames.into_iter().zip(addrs) {
                match inbox.pop_into(f.data_mut()) {
                    Some((port, len)) => {
                        f.set_len(len);
                        got[port as usize].push(f);
                        got_bases[port as usize].push(base);
                        handoff.received += 1;
                        total += 1;
                    }
                    None => unused.push(base),
                }
            }
            inbox.release();
            free.extend_from_slice(&unused);
            // Spare frames come from one port's batch at a time; the LAN's need them.
            let mut area = Some(area);
            for port in [Port::Lan, Port::Wan] {
                let i = port as usize;
                if !got[i].is_empty() {
                    let a = area.take().unwrap_or_else(BatchArea::empty);
                    let (fr, bs) = (&mut got[i], &got_bases[i]);
                    let from = From::Port(port);
                    process_and_send(from, fr, bs, a, pipeline, lan, wan, free, &mut waiting);
                }
            }
        }
        total
    }
}

impl Worker {
    /// Encrypts what the gateway's own stack sent into tunnel interfaces, in frames of our
    /// own UMEM (one batch per run of packets for one interface).
    fn drain_host(&mut self) -> usize {
        if self.host.as_ref().is_none_or(|h| h.from_host.is_empty()) {
            return 0;
        }
        let Worker {
            umem,
            wan,
            lan,
            free,
            pipeline,
            neigh,
            missing,
            now_ms,
            asked_control,
            host,
            ..
        } = self;
        let Some(link) = host.as_mut() else {
            return 0;
        };
        let Some((addrs, frames, area)) = take_spares(umem, free) else {
            return 0;
        };
        let mut got: ArrayVec<(u16, Frame<&mut [u8]>, u64), MAX_BATCH> = ArrayVec::new();
        for (mut f, base) in frames.into_iter().zip(addrs) {
            match link.from_host.pop_tagged_into(f.data_mut()) {
                Some((tag, len)) => {
                    f.set_len(len);
                    got.push((tag, f, base));
                }
                None => free.push(base),
            }
        }
        link.from_host.release();
        let total = got.len();
        let mut waiting = Waiting {
            queue: neigh,
            requests: missing.as_ref(),
            now_ms: *now_ms,
            asked: asked_control,
            host: host.as_mut(),
        };
        let mut area = Some(area);
        let mut rest = got.into_iter().peekable();
        while let Some((tag, f, base)) = rest.next() {
            let mut run: ArrayVec<Frame<&mut [u8]>, MAX_BATCH> = ArrayVec::new();
            let mut bases: ArrayVec<u64, MAX_BATCH> = ArrayVec::new();
            run.push(f);
            bases.push(base);
            while let Some((_, f, base)) = rest.next_if(|(t, _, _)| *t == tag) {
                run.push(f);
                bases.push(base);
            }
            let a = area.take().unwrap_or_else(BatchArea::empty);
            let from = From::Tunnel(tag);
            process_and_send(
                from,
                &mut run,
                &bases,
                a,
                pipeline,
                lan,
                wan,
                free,
                &mut waiting,
            );
        }
        total
    }
}

/// Takes up to a batch of free frames and opens them for whole packets (after the headroom),
/// for packets that arrive by ring rather than by socket; `None`, with nothing taken, when no
/// frame is free.
#[allow(clippy::type_complexity)]
fn take_spares<'a>(
    umem: &'a mut Umem,
    free: &mut Vec<u64>,
) -> Option<(
    ArrayVec<u64, MAX_BATCH>,
    ArrayVec<Frame<&'a mut [u8]>, MAX_BATCH>,
    BatchArea<'a>,
)> {
    let take = free.len().min(MAX_BATCH);
    if take == 0 {
        return None;
    }
    let fs = umem.config().frame_size as usize;
    let headroom = umem.config().headroom as usize;
    let addrs: ArrayVec<u64, MAX_BATCH> = free.drain(free.len() - take..).collect();
    let mut frames = ArrayVec::new();
    let spans = addrs
        .iter()
        .map(|&a| (a + headroom as u64, (fs - headroom) as u32));
    match umem.frames_mut(spans, &mut frames) {
        Ok(area) => Some((addrs, frames, area)),
        Err(_) => {
            free.extend_from_slice(&addrs);
            None
        }
    }
}

/// Where a batch comes from.
#[derive(Clone, Copy)]
enum From {
    /// Received on a port (or handed over by a worker that received it there).
    Port(Port),
    /// Sent by the gateway's own stack into the tunnel interface with this index.
    Tunnel(u16),
}

/// Which worker owns the SA of a frame received on `port` (ours when it cannot tell: the
/// pipeline then counts the drop).
fn steer(sh: &Shard, routes: &crate::sa::RouteTable, port: Port, frame: &[u8]) -> usize {
    let owner = match port {
        Port::Wan => {
            crate::wire::peek::esp_spi(frame).map(|spi| handoff::owner_of_spi(spi, sh.workers))
        }
        Port::Lan => crate::wire::peek::ip_addrs(frame).and_then(|(s, d)| {
            sh.policies.owner_of(s, d).or_else(|| {
                // The member of an equal-cost group the pipeline will pick: the same hash,
                // and peers with a policy standing for peers with an SA.
                let action = routes.lookup(d)?;
                let hash = match action {
                    crate::sa::RouteAction::Ecmp(_) => crate::wire::peek::flow_hash(frame),
                    _ => 0,
                };
                let peer = routes.pick(action, hash, |p| sh.policies.owner_of_peer(p).is_some())?;
                sh.policies.owner_of_peer(peer)
            })
        }),
    };
    owner.filter(|&o| o < sh.workers).unwrap_or(sh.id)
}

/// Where frames that wait for a next hop go while a batch is processed.
struct Waiting<'a> {
    queue: &'a mut NeighQueue,
    /// The control thread, asked to resolve a next hop when its first frame waits.
    requests: Option<&'a SyncSender<NeighRequest>>,
    now_ms: u64,
    /// Set when a request was sent (the worker then wakes the control thread).
    asked: &'a mut bool,
    /// Where packets for the gateway's own stack go.
    host: Option<&'a mut HostLink>,
}

/// Runs a batch through the pipeline and queues the results for transmission (ICMP errors go
/// back out of the LAN, everything else out of the other port, extra fragments after the
/// batch) or, for unresolved next hops, in the neighbour queue; dropped frames return to the
/// free list.
#[allow(clippy::too_many_arguments)]
fn process_and_send<'a>(
    from: From,
    frames: &mut [Frame<&'a mut [u8]>],
    bases: &[u64],
    area: BatchArea<'a>,
    pipeline: &mut Pipeline,
    lan: &mut XskSocket,
    wan: &mut XskSocket,
    free: &mut Vec<u64>,
    waiting: &mut Waiting,
) {
    let n = frames.len();
    if n == 0 {
        return;
    }
    let mut outs = [Out::Drop(DropReason::Malformed); MAX_BATCH];
    let mut pool = UmemPool::new(area.spares(free));
    match from {
        From::Port(port) => pipeline.process_with(port, frames, &mut outs[..n], &mut pool),
        From::Tunnel(t) => pipeline.process_host(t, frames, &mut outs[..n], &mut pool),
    }
    let mask = !(pool.frame_size() - 1);
    let (extra, extra_waits) = pool.into_parts();
    // (descriptor, chunk) per port, so frames the TX ring cannot take go back to the free list.
    let mut to_lan: ArrayVec<XdpDesc, MAX_BATCH> = ArrayVec::new();
    let mut to_wan: ArrayVec<XdpDesc, MAX_BATCH> = ArrayVec::new();
    let mut lan_bases: ArrayVec<u64, MAX_BATCH> = ArrayVec::new();
    let mut wan_bases: ArrayVec<u64, MAX_BATCH> = ArrayVec::new();
    let mut to_host = 0;
    for (i, f) in frames.iter().enumerate() {
        let d = XdpDesc {
            addr: bases[i] + f.start() as u64,
            len: f.len() as u32,
            options: 0,
        };
        match outs[i] {
            Out::Tx(Port::Lan) => {
                to_lan.push(d);
                lan_bases.push(bases[i]);
            }
            Out::Tx(Port::Wan) => {
                to_wan.push(d);
                wan_bases.push(bases[i]);
            }
            Out::Drop(_) => free.push(bases[i]),
            Out::Host(t) => {
                let pushed = waiting
                    .host
                    .as_deref_mut()
                    .is_some_and(|h| h.to_host.push_tagged(t, f.data()));
                if pushed {
                    to_host += 1;
                } else {
                    pipeline.drops.add(DropReason::HostQueueFull);
                }
                free.push(bases[i]);
            }
            Out::Wait(out, hop) => {
                let h = Held {
                    port: out,
                    hop,
                    base: bases[i],
                    offset: f.start() as u32,
                    len: f.len() as u32,
                    since_ms: waiting.now_ms,
                };
                hold(h, waiting, pipeline, free);
            }
        }
    }
    if to_host > 0 {
        if let Some(h) = waiting.host.as_deref_mut() {
            h.to_host.publish();
            h.waker.wake_if_sleeping();
        }
    }
    for (sock, tx, tx_bases) in [
        (&mut *lan, &to_lan, &lan_bases),
        (&mut *wan, &to_wan, &wan_bases),
    ] {
        if tx.is_empty() {
            continue;
        }
        let sent = sock.tx.produce(tx) as usize;
        for &base in &tx_bases[sent..] {
            free.push(base);
            pipeline.drops.add(DropReason::TxFull);
        }
    }
    if !extra.is_empty() {
        send_extra(&extra, mask, pipeline, lan, wan, free);
    }
    for &(out, hop, d) in &extra_waits {
        let h = Held {
            port: out,
            hop,
            base: d.addr & mask,
            offset: (d.addr & !mask) as u32,
            len: d.len,
            since_ms: waiting.now_ms,
        };
        hold(h, waiting, pipeline, free);
    }
}

/// Puts a frame that waits for its next hop in the neighbour queue (asking the control thread
/// to resolve the hop when it is the first to wait for it), or drops it as `neigh_queue_full`.
fn hold(h: Held, waiting: &mut Waiting, pipeline: &mut Pipeline, free: &mut Vec<u64>) {
    let (out, hop, base) = (h.port, h.hop, h.base);
    match waiting.queue.push(h) {
        Ok(first) => {
            if let (true, Some(tx)) = (first, waiting.requests) {
                *waiting.asked |= tx.try_send(NeighRequest::Resolve(out, hop)).is_ok();
            }
        }
        Err(_) => {
            free.push(base);
            pipeline.drops.add(DropReason::NeighQueueFull);
        }
    }
}

/// Queues the frames the pipeline added to a batch (fragments) on their TX rings; what a ring
/// cannot take returns to the free list as `tx_full`.
fn send_extra(
    extra: &[(Port, XdpDesc)],
    mask: u64,
    pipeline: &mut Pipeline,
    lan: &mut XskSocket,
    wan: &mut XskSocket,
    free: &mut Vec<u64>,
) {
    for (sock, port) in [(lan, Port::Lan), (wan, Port::Wan)] {
        for chunk in extra.chunks(MAX_BATCH) {
            let tx: ArrayVec<XdpDesc, MAX_BATCH> = chunk
                .iter()
                .filter(|(p, _)| *p == port)
                .map(|(_, d)| *d)
                .collect();
            let sent = sock.tx.produce(&tx) as usize;
            for d in &tx[sent..] {
                free.push(d.addr & mask);
                pipeline.drops.add(DropReason::TxFull);
            }
        }
    }
}
