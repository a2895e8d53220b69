//! NUMA locality: the NIC's node against the nodes of the worker CPUs.
//!
//! Why: the NIC writes packets (and, in zero-copy, the UMEM) into memory through its PCIe
//! root, which belongs to one NUMA node; a worker on another node reads every packet across
//! the interconnect, and its UMEM (allocated by that worker) is remote to the NIC.

use super::check::{Check, Status};
use super::host::{format_cpulist, Roots};
use esprit_api::WorkerRuntime;

/// The NUMA locality of `iface` and the pinned workers.
pub fn numa(iface: &str, workers: &[WorkerRuntime], roots: &Roots) -> Check {
    let c = |s, d: String| Check::iface("numa", iface, s, d);
    let node = match roots.iface_numa_node(iface) {
        None => {
            return c(
                Status::NotApplicable,
                "no device NUMA node (virtual interface)".into(),
            )
        }
        Some(n) if n < 0 => {
            return c(
                Status::NotApplicable,
                "the platform reports no NUMA node for the device (single node)".into(),
            )
        }
        Some(n) => n as u32,
    };
    let nodes = roots.numa_nodes();
    if nodes.len() <= 1 {
        return c(
            Status::NotApplicable,
            format!("one NUMA node only (the device is on node {node})"),
        );
    }
    let pinned: Vec<(u32, u32)> = workers
        .iter()
        .filter_map(|w| w.pinned_cpu.map(|cpu| (w.queue, cpu)))
        .collect();
    if pinned.is_empty() {
        return c(
            Status::NotApplicable,
            format!("the device is on node {node}; no worker is pinned (see pinning)"),
        );
    }
    let local = nodes.get(&node).cloned().unwrap_or_default();
    let remote: Vec<String> = pinned
        .iter()
        .filter(|(_, cpu)| !local.contains(cpu))
        .map(|(q, cpu)| {
            let on = nodes
                .iter()
                .find(|(_, cpus)| cpus.contains(cpu))
                .map(|(n, _)| format!("node {n}"))
                .unwrap_or_else(|| "no known node".into());
            format!("worker {q} on CPU {cpu} ({on})")
        })
        .collect();
    if remote.is_empty() {
        c(
            Status::Ok,
            format!("the device and every pinned worker are on node {node}"),
        )
    } else {
        c(
            Status::Warn,
            format!("the device is on node {node}, but {}", remote.join(", ")),
        )
        .fix(format!(
            "pin the workers to CPUs of node {node} ({}) in workers.cores",
            format_cpulist(&local)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn worker(queue: u32, cpu: Option<u32>) -> WorkerRuntime {
        fixtures::worker(queue, cpu, &Vec::from_iter(cpu))
    }

    fn tree(name: &str, nodes: &[(&str, &str)], ifaces: &[(&str, Option<&str>)]) -> Roots {
        let roots = fixtures::roots(name);
        let dir = roots.sys.clone();
        for (n, cpus) in nodes {
            let d = dir.join("devices/system/node").join(n);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cpulist"), format!("{cpus}\n")).unwrap();
        }
        for (i, node) in ifaces {
            let d = dir.join("class/net").join(i);
            std::fs::create_dir_all(&d).unwrap();
            if let Some(n) = node {
                std::fs::create_dir_all(d.join("device")).unwrap();
                std::fs::write(d.join("device/numa_node"), format!("{n}\n")).unwrap();
            }
        }
        roots
    }

    #[test]
    fn locality() {
        let r = tree(
            "numa2",
            &[("node0", "0-3"), ("node1", "4-7")],
            &[("nic1", Some("1")), ("veth0", None), ("nic9", Some("-1"))],
        );
        let ok = numa("nic1", &[worker(0, Some(4)), worker(1, Some(5))], &r);
        assert_eq!(ok.status, Status::Ok, "{}", ok.detail);
        let remote = numa("nic1", &[worker(0, Some(4)), worker(1, Some(1))], &r);
        assert_eq!(remote.status, Status::Warn);
        assert!(
            remote.detail.contains("worker 1 on CPU 1 (node 0)"),
            "{}",
            remote.detail
        );
        assert_eq!(
            remote.fix.as_deref(),
            Some("pin the workers to CPUs of node 1 (4-7) in workers.cores")
        );
        assert_eq!(
            numa("veth0", &[worker(0, Some(0))], &r).status,
            Status::NotApplicable
        );
        assert_eq!(
            numa("nic9", &[worker(0, Some(0))], &r).status,
            Status::NotApplicable
        );
        assert_eq!(
            numa("nic1", &[worker(0, None)], &r).status,
            Status::NotApplicable
        );
        let _ = std::fs::remove_dir_all(&r.sys);
        let one = tree("numa1", &[("node0", "0-7")], &[("nic0", Some("0"))]);
        assert_eq!(
            numa("nic0", &[worker(0, Some(1))], &one).status,
            Status::NotApplicable
        );
        let _ = std::fs::remove_dir_all(&one.sys);
    }
}
