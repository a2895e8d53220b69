//! Helpers shared by esprit's tests (a dev-dependency only): prerequisite checks, temporary
//! paths, fixtures.
//!
//! Tests that need root, a peer or an external tool are marked
//! `#[ignore = "<reason>: ./ci/test.sh runs it as root"]`, so a plain `cargo test` lists them
//! as ignored with the reason. When they do run (`./ci/test.sh`, or
//! `cargo test -- --include-ignored`), a missing prerequisite fails the test with a clear
//! message through the `require_*` helpers here: nothing is skipped silently.

pub mod systemd;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::Command;

/// True when the process runs as root (effective uid 0): namespaces, XDP and AF_XDP need it.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Panics unless the process runs as root.
#[track_caller]
pub fn require_root() {
    assert!(is_root(), "needs root: run ./ci/test.sh as root");
}

/// Returns the value of a prerequisite check, or panics saying which prerequisite is missing
/// (`what`) and why.
#[track_caller]
pub fn require<T, E: Display>(check: Result<T, E>, what: &str) -> T {
    match check {
        Ok(v) => v,
        Err(e) => panic!("needs {what}: {e} (./ci/install-deps.sh installs it; run ./ci/test.sh)"),
    }
}

/// Panics unless `program ARGS` can be started (a tool the test drives, e.g. tshark).
#[track_caller]
pub fn require_tool(program: &str, args: &[&str]) {
    require(
        Command::new(program).args(args).output().map(|_| ()),
        program,
    );
}

/// True when measurements are asked for (`ESPRIT_MEASURE=1`); otherwise says how to ask.
///
/// Measurements are not correctness tests: they run only on request, never in CI.
pub fn measure_enabled(name: &str) -> bool {
    let on = std::env::var("ESPRIT_MEASURE").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("{name}: a measurement; set ESPRIT_MEASURE=1 to run it");
    }
    on
}

/// A capability set of a process (`CapEff`, `CapPrm`, `CapBnd`, … of /proc/PID/status) as a
/// bit mask; 0 when it cannot be read.
pub fn capabilities_of(pid: u32, set: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(&format!("{set}:")))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The binary `bin` of workspace package `package`, built first if needed (a test crate only
/// gets its own package's binaries), next to the calling test's executable.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .status()
        .expect("cargo build");
    assert!(st.success(), "building {bin}");
    let exe = std::env::current_exe().expect("the test's executable");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join(bin)
}

/// A per-process path in the system's temporary directory: `esprit-test-<tag>-<pid>`.
pub fn tmpdir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("esprit-test-{tag}-{}", std::process::id()))
}

/// An SA as the dataplane API lists it (`sa.list`, `stats`), with zero counters: SPI
/// `0x<spi>`, tunnel mode, AES-128-GCM, 10.200.0.1 ↔ 10.200.0.2; `owner` as given.
pub fn sa_info(spi: u32, direction: &str, owner: Option<String>) -> esprit_api::SaInfo {
    esprit_api::SaInfo {
        label: format!("{direction} 0x{spi:08x}"),
        spi: format!("0x{spi:08x}"),
        direction: direction.into(),
        mode: "tunnel".into(),
        suite: "aes128gcm16".into(),
        local: "10.200.0.1".into(),
        remote: "10.200.0.2".into(),
        encap: None,
        esn: false,
        seq: 0,
        replay_window: 0,
        packets: 0,
        bytes: 0,
        drops: Default::default(),
        expired: false,
        owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_passes_values_through() {
        assert_eq!(require(Ok::<_, String>(7), "seven"), 7);
    }

    #[test]
    #[should_panic(expected = "needs thing: gone")]
    fn require_names_what_is_missing() {
        require(Err::<(), _>("gone"), "thing");
    }

    #[test]
    #[should_panic(expected = "needs esprit-no-such-tool")]
    fn a_missing_tool_fails() {
        require_tool("esprit-no-such-tool", &[]);
    }

    #[test]
    fn tmpdir_is_per_tag_and_process() {
        let p = tmpdir("x");
        assert!(p.ends_with(format!("esprit-test-x-{}", std::process::id())));
        assert_ne!(p, tmpdir("y"));
    }
}
