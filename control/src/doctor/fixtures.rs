//! Test inputs shared by the checks' tests: an interface and a worker as the dataplane
//! reports them, and an empty fixture tree for the sysfs and procfs roots.

use super::host::Roots;
use esprit_api::{InterfaceRuntime, WorkerRuntime};

/// A served interface with native XDP, one served queue per bind mode and as many RX queues.
pub fn iface(name: &str, attached: Option<&str>, modes: &[&str]) -> InterfaceRuntime {
    InterfaceRuntime {
        role: "wan".into(),
        name: name.into(),
        ifindex: 3,
        xdp_attached: attached.map(str::to_string),
        xdp_prog_id: Some(7),
        rx_queues: Some(modes.len() as u32),
        combined_channels: true,
        served_queues: modes.len() as u32,
        bind_modes: modes.iter().map(|m| m.to_string()).collect(),
        error: None,
    }
}

/// A running worker of `queue`, pinned to `pinned` if any, allowed on `affinity`.
pub fn worker(queue: u32, pinned: Option<u32>, affinity: &[u32]) -> WorkerRuntime {
    WorkerRuntime {
        queue,
        pinned_cpu: pinned,
        tid: Some(100 + queue),
        affinity: affinity.to_vec(),
    }
}

/// A fresh, empty directory serving as both roots; `name` keeps tests apart.
pub fn roots(name: &str) -> Roots {
    let dir = std::env::temp_dir().join(format!("esprit-doctor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Roots {
        sys: dir.clone(),
        proc: dir,
    }
}
