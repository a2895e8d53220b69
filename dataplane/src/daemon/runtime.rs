//! What the daemon runs with, for the API's `runtime` request: the interfaces (the XDP
//! attachment and RX queues, asked of the kernel at each request; the AF_XDP bind mode of
//! each socket, asked once the sockets are bound) and the workers (queue, pinning, and the
//! thread's affinity, read at each request).

use crate::kernel;
use crate::xdp::socket::BindMode;
use esprit_api::{InterfaceRuntime, Runtime, WorkerRuntime};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// One interface as set up at start-up.
#[derive(Debug)]
pub struct InterfaceSetup {
    /// `lan` or `wan`.
    pub role: &'static str,
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Each served queue's socket's bind mode, as the kernel reported it after binding.
    pub bind_modes: Vec<io::Result<BindMode>>,
}

/// One worker: its queue, the CPU it is pinned to, and its thread id once it runs.
#[derive(Debug)]
pub struct WorkerSetup {
    /// The queue it serves.
    pub queue: u32,
    /// `workers.cores[queue]`, if configured.
    pub pinned_cpu: Option<u32>,
    tid: AtomicU32,
}

impl WorkerSetup {
    /// A worker of `queue`, pinned to `pinned_cpu` if any.
    pub fn new(queue: u32, pinned_cpu: Option<u32>) -> Self {
        WorkerSetup {
            queue,
            pinned_cpu,
            tid: AtomicU32::new(0),
        }
    }

    /// Records the calling thread as this worker's (called by the worker thread).
    pub fn record_current_thread(&self) {
        // SAFETY: gettid(2) takes no argument and cannot fail.
        let tid = unsafe { libc::gettid() };
        self.tid.store(tid as u32, Ordering::Relaxed);
    }
}

/// What the daemon runs with.
#[derive(Debug)]
pub struct RuntimeSetup {
    /// `native` or `generic`.
    pub xdp_requested: &'static str,
    /// `copy` or `zerocopy`.
    pub mode_requested: &'static str,
    /// `adaptive` or `busy`.
    pub poll: &'static str,
    /// LAN, then WAN.
    pub interfaces: Vec<InterfaceSetup>,
    /// In queue order.
    pub workers: Vec<WorkerSetup>,
}

/// The name of a bind mode on the wire.
pub fn bind_mode_name(m: BindMode) -> &'static str {
    match m {
        BindMode::Copy => "copy",
        BindMode::ZeroCopy => "zerocopy",
    }
}

impl RuntimeSetup {
    /// The report, with the kernel's current XDP attachments and queue counts and the workers'
    /// current affinities (asked in the calling thread's network namespace: the daemon's).
    pub fn report(&self) -> Runtime {
        Runtime {
            daemon: "esprit-dataplane".into(),
            xdp_requested: self.xdp_requested.into(),
            mode_requested: self.mode_requested.into(),
            poll: self.poll.into(),
            interfaces: self.interfaces.iter().map(interface).collect(),
            workers: self
                .workers
                .iter()
                .map(|w| {
                    let tid = w.tid.load(Ordering::Relaxed);
                    WorkerRuntime {
                        queue: w.queue,
                        pinned_cpu: w.pinned_cpu,
                        tid: (tid != 0).then_some(tid),
                        affinity: if tid == 0 {
                            Vec::new()
                        } else {
                            affinity(tid).unwrap_or_default()
                        },
                    }
                })
                .collect(),
        }
    }
}

fn interface(i: &InterfaceSetup) -> InterfaceRuntime {
    let mut errors = Vec::new();
    let (xdp_attached, xdp_prog_id) = match crate::xdp::sys::xdp_attached(i.ifindex) {
        Ok((m, p)) => (Some(m.name().to_string()), p),
        Err(e) => {
            errors.push(format!("XDP attachment: {e}"));
            (None, None)
        }
    };
    let (rx_queues, combined_channels) = match kernel::iface::rx_queues(&i.name) {
        Ok((n, c)) => (Some(n), c),
        Err(e) => {
            errors.push(e.to_string());
            (None, false)
        }
    };
    let bind_modes = i
        .bind_modes
        .iter()
        .map(|m| match m {
            Ok(m) => bind_mode_name(*m).to_string(),
            Err(e) => format!("unknown ({e})"),
        })
        .collect();
    InterfaceRuntime {
        role: i.role.into(),
        name: i.name.clone(),
        ifindex: i.ifindex,
        xdp_attached,
        xdp_prog_id,
        rx_queues,
        combined_channels,
        served_queues: i.bind_modes.len() as u32,
        bind_modes,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The CPUs thread `tid` of this process may run on.
fn affinity(tid: u32) -> io::Result<Vec<u32>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r = unsafe {
        libc::sched_getaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads bit `c` of `set`, with `c` below the set's size in bits.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c as u32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_reports_its_thread_and_affinity() {
        let s = RuntimeSetup {
            xdp_requested: "native",
            mode_requested: "copy",
            poll: "adaptive",
            interfaces: vec![],
            workers: vec![WorkerSetup::new(0, None), WorkerSetup::new(1, Some(0))],
        };
        s.workers[0].record_current_thread();
        let r = s.report();
        assert!(r.workers[0].tid.is_some() && !r.workers[0].affinity.is_empty());
        assert_eq!((r.workers[1].tid, r.workers[1].pinned_cpu), (None, Some(0)));
        assert!(r.workers[1].affinity.is_empty());
    }
}
