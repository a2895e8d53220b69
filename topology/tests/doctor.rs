//! `espctl doctor` against a real `esprit-dataplane` in a lab gateway: the real `espctl
//! doctor --json`, run in the gateway's namespace, reports native XDP and copy-mode AF_XDP
//! on both veths, the queues served, the unpinned worker (WARN, exit 0), and, once the LAN
//! classifier is detached behind the dataplane's back, a FAIL with its fix (exit 1); then,
//! with generic XDP and a pinned worker, the FAIL of GRO left on.

use esprit_testkit::require_root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use topology::ike::{write_configs, DataplaneThread, IkeSite};
use topology::{Lab, LabGuard, LabSpec, Node};

/// `espctl --socket SOCK doctor --json` in gateway A's namespace: exit status and checks.
fn doctor(lab: &Lab, espctl: &Path, sock: &Path) -> (i32, Vec<Value>) {
    let out = lab
        .command(Node::GwA, espctl)
        .arg("--socket")
        .arg(sock)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        v["checks"].as_array().unwrap().clone(),
    )
}

fn find<'a>(checks: &'a [Value], name: &str, subject: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| {
            c["name"] == name
                && (c["interface"] == subject
                    || c["worker"].as_u64().map(|w| w.to_string()).as_deref() == Some(subject))
        })
        .unwrap_or_else(|| panic!("no {name} check for {subject}: {checks:#?}"))
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn doctor_reports_a_lab_gateway_and_a_detached_classifier() {
    require_root();
    let espctl = esprit_testkit::workspace_bin("control", "espctl");
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-dr{}", std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-dr-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let (_, mut cfg) = write_configs(&lab, Node::GwA, &dir.0, &IkeSite::default()).unwrap();
    assert!(cfg.cores.is_empty(), "the lab's worker is not pinned");
    let sock = cfg.api_socket.clone();

    // No dataplane yet: a clear error, exit 1, nothing on stdout.
    let out = lab
        .command(Node::GwA, &espctl)
        .arg("--socket")
        .arg(&sock)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty() && err.contains("is esprit-dataplane running"),
        "{err}"
    );

    let dp = DataplaneThread::start(&lab, Node::GwA, cfg.clone()).unwrap();
    let (code, checks) = doctor(&lab, &espctl, &sock);
    for iface in ["lan0", "wan0"] {
        let x = find(&checks, "xdp_mode", iface);
        assert_eq!(x["status"], "OK", "{x}");
        assert!(x["detail"].as_str().unwrap().contains("native"), "{x}");
        let b = find(&checks, "xsk_bind", iface);
        assert_eq!(b["status"], "OK", "{b}");
        assert!(
            b["detail"].as_str().unwrap().starts_with("copy on 1 queue"),
            "{b}"
        );
        let q = find(&checks, "queues", iface);
        assert_eq!(q["status"], "OK", "{q}");
        assert!(
            q["detail"].as_str().unwrap().starts_with("1 RX queue"),
            "{q}"
        );
        // A veth has no device: no NUMA node, no IRQ.
        assert_eq!(find(&checks, "numa", iface)["status"], "n/a");
        assert_eq!(find(&checks, "irq_affinity", iface)["status"], "n/a");
        assert_ne!(find(&checks, "offload_lro", iface)["status"], "FAIL");
    }
    let pin = find(&checks, "pinning", "0");
    assert_eq!(pin["status"], "WARN", "{pin}");
    assert!(
        pin["fix"].as_str().unwrap().contains("workers.cores"),
        "{pin}"
    );
    assert!(checks.iter().all(|c| c["status"] != "FAIL"), "{checks:#?}");
    assert_eq!(code, 0, "no FAIL: exit 0");
    let out = lab
        .command(Node::GwA, &espctl)
        .arg("--socket")
        .arg(&sock)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("OK    xdp_mode             wan0       native (driver) XDP")
            && text.contains("WARN  pinning              worker 0")
            && text.contains("      fix: set workers.cores"),
        "{text}"
    );

    // The LAN classifier detached by hand: the kernel says so, the doctor fails and says what
    // to do.
    let out = lab
        .exec(
            Node::GwA,
            &["ip", "link", "set", "dev", "lan0", "xdpdrv", "off"],
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, checks) = doctor(&lab, &espctl, &sock);
    let x = find(&checks, "xdp_mode", "lan0");
    assert_eq!(x["status"], "FAIL", "{x}");
    assert!(
        x["fix"]
            .as_str()
            .unwrap()
            .contains("restart esprit-dataplane"),
        "{x}"
    );
    assert_eq!(find(&checks, "xdp_mode", "wan0")["status"], "OK");
    assert_eq!(code, 1, "a FAIL: exit 1");
    dp.stop().unwrap();

    // Generic XDP with GRO on: GRO-merged packets would exceed an AF_XDP frame. The
    // native program the dataplane left (fail closed) goes first, as `--detach` would.
    let run = |args: &[&str]| {
        let out = lab.exec(Node::GwA, args).unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    run(&["ip", "link", "set", "dev", "wan0", "xdpdrv", "off"]);
    run(&["ethtool", "-K", "lan0", "gro", "on"]);
    cfg.generic_xdp = true;
    cfg.cores = vec![0];
    let dp = DataplaneThread::start(&lab, Node::GwA, cfg).unwrap();
    let (code, checks) = doctor(&lab, &espctl, &sock);
    let x = find(&checks, "xdp_mode", "lan0");
    assert_eq!(x["status"], "WARN", "generic XDP is slower: {x}");
    let g = find(&checks, "offload_gro_generic", "lan0");
    assert_eq!(g["status"], "FAIL", "{g}");
    assert_eq!(g["fix"], "ethtool -K lan0 gro off", "{g}");
    assert_eq!(code, 1);
    let pin = find(&checks, "pinning", "0");
    assert_eq!(
        pin["status"], "OK",
        "pinned to CPU 0 and running there: {pin}"
    );
    run(&["ethtool", "-K", "lan0", "gro", "off"]);
    let (_, checks) = doctor(&lab, &espctl, &sock);
    assert_eq!(
        find(&checks, "offload_gro_generic", "lan0")["status"],
        "OK",
        "{checks:#?}"
    );
    dp.stop().unwrap();
}
