//! Named network namespaces (`ip netns`): listing, creating, removing.

use crate::cmd::{run, LabError};
use std::os::unix::fs::MetadataExt;

/// The names of every named network namespace (`ip netns list`).
pub fn list() -> Result<Vec<String>, LabError> {
    let out = run("listing network namespaces", &["ip", "netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// Creates a namespace and brings its loopback up.
pub fn add(what: &str, ns: &str) -> Result<(), LabError> {
    run(what, &["ip", "netns", "add", ns])?;
    run(what, &["ip", "-n", ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Removes a namespace (its interfaces, and their veth peers, go with it).
pub fn del(what: &str, ns: &str) -> Result<(), LabError> {
    run(what, &["ip", "netns", "del", ns]).map(|_| ())
}

/// Identity of a namespace (the inode of its `/run/netns` entry), if it exists: two calls return
/// the same value exactly when the namespace was not recreated in between.
pub fn id(ns: &str) -> Option<u64> {
    std::fs::metadata(format!("/run/netns/{ns}"))
        .or_else(|_| std::fs::metadata(format!("/var/run/netns/{ns}")))
        .ok()
        .map(|m| m.ino())
}

/// True when running as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
