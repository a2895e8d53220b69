//! Where the kernel's part of the work runs, so that the gateway under test has its core and
//! the generator/sink theirs.
//!
//! A veth does its receive work on the CPU that transmitted: with an XDP program on the
//! receiving end, the peer's NAPI poll (the XDP program, the copy into an AF_XDP socket) runs
//! in the sender's softirq; without one, the packet goes through the sender's backlog queue.
//! Left alone, the generator's core would run gwA's receive path (esprit's classifier and
//! copy, or the kernel's whole forwarding path) and gwA's core would run the sink's. So, in
//! [`Placement::Split`] (and in [`Placement::Nic`], the default, except for esprit: see there):
//! - the bench's two veth ends (hA/eth0, gwB/wan0, native XDP) get threaded NAPI, pinned to
//!   the generator core and SCHED_FIFO (priority 50): the bench's receive path is part of the
//!   instrument and, like a NIC's DMA, must not wait for the generator thread's time slice;
//! - gwA's two veth ends steer their receive processing to the gateway's core with RPS, and
//!   esprit attaches its programs in generic (SKB) mode there, so its classifier and copy run
//!   in that core's softirq after the RPS step — where the kernel's forwarding and
//!   strongSwan's UDP receive run too. (Native XDP on a veth would run them in the
//!   generator's softirq; as threaded NAPI on the gateway's core, an ordinary thread starves
//!   behind the polling worker and a real-time one livelocks it under overload.)
//!
//! The machine is shared: other work (builds, tests) runs on both cores. The measuring thread,
//! the gateway's user-space threads (esprit's workers, charon's threads) all run at nice -20,
//! so that ordinary background work takes little from either side; the kernel's own
//! forwarding runs in softirq and never queued behind it anyway.

use std::collections::BTreeSet;
use topology::{Lab, Node};

/// How the kernel's work is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The bench's receive work on the generator core, the gateway's on its own core, as
    /// described above.
    Split,
    /// The bench's receive work on the generator core (as in `Split`); esprit with native
    /// XDP, whose veth receive work (its classifier and the copy into its UMEM) then runs in
    /// the generator's softirq, as a NIC's DMA would take it off the gateway's core; the
    /// kernel's forwarding and strongSwan's receive path on the gateway's core through RPS.
    Nic,
    /// The veth defaults: receive work runs on the sender's core.
    Inline,
}

fn sh(lab: &Lab, node: Node, script: &str) -> Result<(), String> {
    let out = lab
        .exec(node, &["sh", "-c", script])
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{node}: {script}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Turns threaded NAPI on for `dev` in `node` (the device must have NAPI: a veth has it while
/// an XDP program is attached).
pub fn set_threaded(lab: &Lab, node: Node, dev: &str) -> Result<(), String> {
    sh(
        lab,
        node,
        &format!("echo 1 > /sys/class/net/{dev}/threaded"),
    )
}

/// Steers `dev`'s receive processing (queue 0) to `core` with RPS.
pub fn set_rps(lab: &Lab, node: Node, dev: &str, core: usize) -> Result<(), String> {
    sh(
        lab,
        node,
        &format!(
            "echo {:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus",
            1u64 << core.min(63)
        ),
    )
}

/// Turns RPS off for `dev` (queue 0): its receive processing stays on the core that
/// transmitted to it.
pub fn clear_rps(lab: &Lab, node: Node, dev: &str) -> Result<(), String> {
    sh(
        lab,
        node,
        &format!("echo 0 > /sys/class/net/{dev}/queues/rx-0/rps_cpus"),
    )
}

/// The kernel's NAPI threads: (pid, name).
pub fn napi_threads() -> BTreeSet<(u32, String)> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
            let comm = comm.trim();
            if comm.starts_with("napi/") {
                out.insert((pid, comm.to_string()));
            }
        }
    }
    out
}

/// Pins a process or thread (every thread with `all`) to `core` with `taskset`.
pub fn pin(pid: u32, core: usize, all: bool) -> bool {
    let mut c = std::process::Command::new("taskset");
    if all {
        c.arg("-a");
    }
    c.args(["-p", "-c", &core.to_string(), &pid.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Makes a thread SCHED_FIFO at `prio` with `chrt`.
pub fn realtime(pid: u32, prio: u32) -> bool {
    std::process::Command::new("chrt")
        .args(["-f", "-p", &prio.to_string(), &pid.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Pins the NAPI threads not in `known` to `core` and makes them SCHED_FIFO 50; returns their
/// names (with what failed).
pub fn pin_new_napi(known: &BTreeSet<(u32, String)>, core: usize) -> Vec<String> {
    napi_threads()
        .into_iter()
        .filter(|t| !known.contains(t))
        .map(
            |(pid, name)| match (pin(pid, core, false), realtime(pid, 50)) {
                (true, true) => name,
                (p, r) => format!(
                    "{name} ({}{})",
                    if p { "" } else { "not pinned " },
                    if r { "" } else { "not SCHED_FIFO" }
                ),
            },
        )
        .collect()
}

/// Sets a thread's nice value with `renice` (on Linux a thread id names one thread).
pub fn renice(tid: u32, nice: i32) -> bool {
    std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The calling thread's id.
pub fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// Renices every thread of process `pid` whose name starts with `prefix` (all with ""); returns
/// how many were changed.
pub fn renice_threads(pid: u32, prefix: &str, nice: i32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim().starts_with(prefix))
        })
        .filter(|&tid| renice(tid, nice))
        .count()
}
