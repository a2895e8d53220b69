//! RX queues against the queues the dataplane serves, per interface; worker pinning.
//!
//! Why queues: the NIC spreads received packets over its RX queues (RSS) and the classifier
//! redirects each to the AF_XDP socket of its queue. A queue without a socket (more RX queues
//! than workers) gets the fail verdict: with `fail_mode = "closed"` the flows the NIC hashes
//! there are dropped, with `"open"` they bypass esprit. Why pinning: an unpinned worker is
//! moved between CPUs by the scheduler, losing its caches and its locality to the queue's
//! IRQ and the NIC's NUMA node; a worker pinned by the configuration that runs elsewhere
//! means the pinning failed (a CPU outside the daemon's cpuset).

use super::check::{Check, Status};
use super::host::format_cpulist;
use esprit_api::{InterfaceRuntime, WorkerRuntime};

/// The interface's RX queues against the queues served.
pub fn queues(i: &InterfaceRuntime) -> Check {
    let c = |s, d: String| Check::iface("queues", &i.name, s, d);
    let served = i.served_queues;
    let Some(rx) = i.rx_queues else {
        return c(
            Status::NotApplicable,
            format!(
                "the driver does not report its channels (ETHTOOL_GCHANNELS); {served} queue(s) served"
            ),
        );
    };
    let kind = if i.combined_channels {
        "combined"
    } else {
        "rx"
    };
    if rx == served {
        c(
            Status::Ok,
            format!("{rx} RX queue(s), all served by a worker"),
        )
    } else if rx > served {
        c(
            Status::Fail,
            format!(
                "{rx} RX queues but {served} served: packets the NIC steers to queues {served}..{} have no AF_XDP socket and get the fail verdict (dropped when fail closed)",
                rx - 1
            ),
        )
        .fix(format!(
            "ethtool -L {} {kind} {served} (or set workers.count = {rx})",
            i.name
        ))
    } else {
        c(
            Status::Fail,
            format!("{rx} RX queue(s) but {served} served: queues were removed since start-up"),
        )
        .fix(format!(
            "ethtool -L {} {kind} {served}, or set workers.count = {rx} and restart esprit-dataplane",
            i.name
        ))
    }
}

/// Whether worker `w` runs where the configuration pinned it.
pub fn pinning(w: &WorkerRuntime, others: &[WorkerRuntime]) -> Check {
    let c = |s, d: String| Check::worker("pinning", w.queue, s, d);
    let Some(cpu) = w.pinned_cpu else {
        return c(
            Status::Warn,
            format!(
                "worker {} is not pinned: it may run on CPUs {}",
                w.queue,
                format_cpulist(&w.affinity)
            ),
        )
        .fix("set workers.cores (one CPU per worker, on the NIC's NUMA node) in the dataplane configuration");
    };
    if w.tid.is_none() {
        return c(Status::Warn, format!("worker {} has not started", w.queue));
    }
    if w.affinity != [cpu] {
        return c(
            Status::Fail,
            format!(
                "worker {} is configured on CPU {cpu} but may run on CPUs {}: pinning failed",
                w.queue,
                format_cpulist(&w.affinity)
            ),
        )
        .fix(format!(
            "give esprit-dataplane CPU {cpu} (systemd CPUAffinity=, cgroup cpuset) or pick one it has in workers.cores"
        ));
    }
    let shared: Vec<String> = others
        .iter()
        .filter(|o| o.queue != w.queue && o.pinned_cpu == Some(cpu))
        .map(|o| o.queue.to_string())
        .collect();
    if !shared.is_empty() {
        return c(
            Status::Warn,
            format!(
                "worker {} shares CPU {cpu} with worker(s) {}",
                w.queue,
                shared.join(", ")
            ),
        )
        .fix("give each worker its own CPU in workers.cores");
    }
    c(
        Status::Ok,
        format!("worker {} pinned to CPU {cpu}", w.queue),
    )
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{self, worker};
    use super::*;

    fn iface(rx: Option<u32>, served: u32, combined: bool) -> InterfaceRuntime {
        InterfaceRuntime {
            rx_queues: rx,
            combined_channels: combined,
            ..fixtures::iface("lan0", Some("native"), &vec!["copy"; served as usize])
        }
    }

    #[test]
    fn queue_counts() {
        assert_eq!(queues(&iface(Some(2), 2, true)).status, Status::Ok);
        let more = queues(&iface(Some(8), 2, true));
        assert_eq!(more.status, Status::Fail);
        assert_eq!(
            more.fix.as_deref(),
            Some("ethtool -L lan0 combined 2 (or set workers.count = 8)")
        );
        let veth = queues(&iface(Some(2), 1, false));
        assert!(veth.fix.unwrap().starts_with("ethtool -L lan0 rx 1"));
        assert_eq!(queues(&iface(Some(1), 2, true)).status, Status::Fail);
        assert_eq!(queues(&iface(None, 1, false)).status, Status::NotApplicable);
    }

    #[test]
    fn pinnings() {
        let ws = [
            worker(0, Some(2), &[2]),
            worker(1, Some(2), &[2]),
            worker(2, None, &[0, 1, 2, 3]),
            worker(3, Some(5), &[0, 1, 2, 3]),
        ];
        assert_eq!(pinning(&ws[0], &ws[..1]).status, Status::Ok);
        assert_eq!(pinning(&ws[0], &ws).status, Status::Warn);
        let unpinned = pinning(&ws[2], &ws);
        assert_eq!(unpinned.status, Status::Warn);
        assert!(unpinned.detail.contains("0-3"), "{}", unpinned.detail);
        assert!(unpinned.fix.unwrap().contains("workers.cores"));
        let failed = pinning(&ws[3], &ws);
        assert_eq!(failed.status, Status::Fail);
        assert!(failed.fix.unwrap().contains("CPU 5"));
    }
}
