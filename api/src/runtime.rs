//! The result of the `runtime` request: what the dataplane runs with, as the kernel and the
//! daemon's threads report it (XDP attach mode, AF_XDP bind mode, queues, worker pinning).
//! `espctl doctor` combines it with what it reads from the host.

use serde::{Deserialize, Serialize};

/// What the dataplane runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// `esprit-dataplane`.
    pub daemon: String,
    /// The XDP mode the configuration asks for: `native` or `generic`.
    pub xdp_requested: String,
    /// The AF_XDP bind mode the configuration asks for: `copy` or `zerocopy`.
    pub mode_requested: String,
    /// `adaptive` or `busy`.
    pub poll: String,
    /// The LAN and the WAN interface, in this order.
    pub interfaces: Vec<InterfaceRuntime>,
    /// One per worker, in queue order.
    pub workers: Vec<WorkerRuntime>,
}

/// One interface the dataplane serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRuntime {
    /// `lan` or `wan`.
    pub role: String,
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// The XDP attachment the kernel reports now (`RTM_GETLINK`, `IFLA_XDP_ATTACHED`):
    /// `native`, `generic`, `offload`, `multi` or `none`; absent when the kernel could not
    /// be asked (see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_attached: Option<String>,
    /// The id of the attached program, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_prog_id: Option<u32>,
    /// The RX queues the interface has (`ETHTOOL_GCHANNELS`: rx plus combined); absent when
    /// the driver does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_queues: Option<u32>,
    /// Whether the driver counts its queues as `combined` channels (most NICs) rather than
    /// `rx` ones (veth): decides the `ethtool -L` a fix names.
    #[serde(default)]
    pub combined_channels: bool,
    /// The queues the dataplane serves (one AF_XDP socket each): 0..served.
    pub served_queues: u32,
    /// The AF_XDP bind mode of each served queue's socket as the kernel reports it
    /// (`XDP_OPTIONS`): `zerocopy` or `copy`, in queue order.
    pub bind_modes: Vec<String>,
    /// What could not be read from the kernel, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One worker thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRuntime {
    /// The queue it serves on both interfaces.
    pub queue: u32,
    /// The CPU the configuration pins it to (`workers.cores`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_cpu: Option<u32>,
    /// The thread's id (absent until the thread runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    /// The CPUs the thread may run on now (`sched_getaffinity`).
    pub affinity: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_of_docs_api_md_roundtrips() {
        let line = r#"{"daemon": "esprit-dataplane", "xdp_requested": "native", "mode_requested": "copy", "poll": "adaptive",
 "interfaces": [
   {"role": "lan", "name": "lan0", "ifindex": 2, "xdp_attached": "native", "xdp_prog_id": 41,
    "rx_queues": 1, "combined_channels": false, "served_queues": 1, "bind_modes": ["copy"]},
   {"role": "wan", "name": "wan0", "ifindex": 3, "xdp_attached": "native", "xdp_prog_id": 40,
    "rx_queues": 1, "combined_channels": false, "served_queues": 1, "bind_modes": ["copy"]}],
 "workers": [{"queue": 0, "pinned_cpu": 1, "tid": 4242, "affinity": [1]}]}"#;
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
            .unwrap();
        assert!(docs.contains(line), "docs/api.md shows this example");
        let r: Runtime = serde_json::from_str(line).unwrap();
        assert_eq!(r.workers[0].pinned_cpu, Some(1));
        let again: serde_json::Value = serde_json::to_value(&r).unwrap();
        let original: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(again, original);
        let unpinned: WorkerRuntime =
            serde_json::from_str(r#"{"queue": 1, "affinity": [0, 1]}"#).unwrap();
        assert_eq!((unpinned.pinned_cpu, unpinned.tid), (None, None));
    }
}
