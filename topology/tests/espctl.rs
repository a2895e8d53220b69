//! `espctl` against a real `esprit-dataplane` (run in-process inside a network namespace with
//! its own veth interfaces). Needs root (ignored otherwise). It lives here, not in `control`,
//! because `control` does not depend on the dataplane.

use esprit_testkit::require_root;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The `espctl` binary, built if needed (a test crate only gets its own package's binaries).
fn espctl_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| esprit_testkit::workspace_bin("control", "espctl"))
        .clone()
}

fn espctl(sock: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(espctl_bin())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn espctl_lists_adds_deletes_and_reports() {
    require_root();
    let ns = Ns(format!("esprit-tctl-{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).output();
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "-n", &ns.0, "link", "add", "name", "lan0", "type", "veth", "peer", "name", "lan1",
    ]);
    ip(&[
        "-n", &ns.0, "link", "add", "name", "wan0", "type", "veth", "peer", "name", "wan1",
    ]);
    for d in ["lan0", "lan1", "wan0", "wan1"] {
        ip(&["-n", &ns.0, "link", "set", d, "up"]);
    }
    ip(&["-n", &ns.0, "addr", "add", "10.200.0.1/24", "dev", "wan0"]);
    ip(&["-n", &ns.0, "addr", "add", "10.201.1.1/24", "dev", "lan0"]);
    let dir = std::env::temp_dir().join(format!("esprit-tctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("dp.sock");
    let sa = dir.join("sa.toml");
    std::fs::write(
        &sa,
        "[[sa]]\nspi = \"0x1001\"\ndirection = \"out\"\nsuite = \"aes128gcm16\"\nkey = \"000102030405060708090a0b0c0d0e0f10111213\"\nlocal = \"10.200.0.1\"\nremote = \"10.200.0.2\"\n\n[[sa]]\nspi = 4098\ndirection = \"in\"\nsuite = \"aes256gcm16\"\nkey = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223\"\nlocal = \"10.200.0.1\"\nremote = \"10.200.0.2\"\n",
    )
    .unwrap();
    let cfg = dataplane::daemon::DataplaneConfig::parse(
        &format!(
            "api_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\nring_size = 256\n",
            sock.display()
        ),
        "test.toml",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, name) = (stop.clone(), ns.0.clone());
    let daemon = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
        // SAFETY: setns on a valid namespace descriptor affects only this thread.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        dataplane::daemon::run::run(&cfg, s2, |_| {}).unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "API socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (ok, out, err) = espctl(&sock, &["sa", "add", sa.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out, _) = espctl(&sock, &["sa", "list"]);
    assert!(ok);
    assert!(
        out.contains("0x00001001") && out.contains("0x00001002"),
        "{out}"
    );
    assert!(
        out.contains("10.200.0.1 -> 10.200.0.2") && out.contains("aes256gcm16"),
        "{out}"
    );
    let (ok, out, _) = espctl(&sock, &["sa", "list", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(!out.contains("000102030405"), "keys never leave the daemon");
    let (ok, _, err) = espctl(&sock, &["sa", "add", sa.to_str().unwrap()]);
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = espctl(&sock, &["sa", "add", "--replace", sa.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = espctl(&sock, &["sa", "delete", "0x1002", "--direction", "in"]);
    assert!(ok && out.contains("removed 1"), "{out}{err}");
    let (ok, _, err) = espctl(&sock, &["sa", "delete", "0x1002", "--direction", "in"]);
    assert!(!ok && err.contains("not_found"), "{err}");
    let (ok, out, err) = espctl(
        &sock,
        &["route", "add", "10.202.0.0/16", "--tunnel", "10.200.0.2"],
    );
    assert!(ok && out.contains("10.202.0.0/16"), "{out}{err}");
    let (ok, _, _) = espctl(&sock, &["route", "add", "0.0.0.0/0", "--bypass"]);
    assert!(ok);
    let (ok, out, _) = espctl(&sock, &["route", "list"]);
    assert!(
        ok && out.contains("tunnel") && out.contains("bypass") && out.contains("10.200.0.2"),
        "{out}"
    );
    let (ok, _, err) = espctl(&sock, &["route", "add", "10.1.1.1/24", "--drop"]);
    assert!(
        !ok && err.contains("10.1.1.0/24"),
        "host bits are refused with a hint: {err}"
    );
    let (ok, _, _) = espctl(&sock, &["route", "delete", "0.0.0.0/0"]);
    assert!(ok);
    let (ok, _, err) = espctl(&sock, &["route", "delete", "0.0.0.0/0"]);
    assert!(!ok && err.contains("not_found"), "{err}");
    let (ok, _, err) = espctl(
        &sock,
        &[
            "policy",
            "add",
            "9",
            "--local-ts",
            "10.201.1.0/24",
            "--remote-ts",
            "10.201.9.0/24,10.201.8.0/24",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = espctl(&sock, &["policy", "list"]);
    assert!(ok && out.contains("10.201.8.0/24"), "{out}");
    let (ok, _, _) = espctl(&sock, &["policy", "delete", "9"]);
    assert!(ok);
    let (ok, out, _) = espctl(&sock, &["stats"]);
    assert!(ok && out.contains("forwarded: lan->wan 0"), "{out}");
    let (ok, out, _) = espctl(&sock, &["stats", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sas"].as_array().unwrap().len(), 1);

    stop.store(true, Ordering::Relaxed);
    daemon.join().unwrap();
    let (ok, _, err) = espctl(&sock, &["stats"]);
    assert!(
        !ok && err.contains("dataplane API at"),
        "a stopped daemon is a clear error: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
