//! Helpers for tests that build network namespaces.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;

/// True when the tests run as root (namespaces, XDP and AF_XDP need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into a network namespace.
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    // SAFETY: setns on a valid namespace descriptor affects only the calling thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Namespaces deleted on drop, so a failing test leaves nothing behind.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    /// Creates fresh namespaces named `esprit-t<tag><name>-<pid>`.
    pub fn new(tag: &str, names: &[&str]) -> Self {
        let id = std::process::id();
        let v: Vec<String> = names
            .iter()
            .map(|n| format!("esprit-t{tag}{n}-{id}"))
            .collect();
        for ns in &v {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Namespaces(v)
    }

    /// The full name of namespace `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Formats a MAC address for `ip link ... address`.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
