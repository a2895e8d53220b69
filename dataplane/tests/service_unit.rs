//! The systemd unit and the example configuration the package ships for esprit-dataplane
//! (`packaging/systemd/esprit-dataplane.service`, `packaging/etc/esprit/dataplane.toml`).

mod common;
use common::{link, End, Namespaces};
use dataplane::daemon::DataplaneConfig;
use esprit_testkit::systemd::{directive, packaging_dir, UnitDaemon};
use esprit_testkit::{require_root, require_tool, tmpdir};
use std::path::Path;
use std::time::Duration;

fn unit() -> String {
    let p = packaging_dir().join("systemd/esprit-dataplane.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_unit_grants_exactly_the_capabilities_the_daemon_declares() {
    let text = unit();
    let mut granted = directive(&text, "Service", "CapabilityBoundingSet");
    granted.sort();
    let mut declared: Vec<String> = dataplane::daemon::privileges::unit_capabilities()
        .into_iter()
        .map(|c| {
            dataplane::harden::cap_name(c)
                .expect("a named capability")
                .to_string()
        })
        .collect();
    declared.sort();
    assert_eq!(
        granted, declared,
        "esprit-dataplane.service's CapabilityBoundingSet and dataplane::daemon::privileges differ"
    );
    // Kept at run time is a subset of what the unit grants.
    for c in dataplane::daemon::privileges::RUNTIME_CAPABILITIES {
        assert!(dataplane::daemon::privileges::unit_capabilities().contains(c));
    }
    assert!(directive(&text, "Service", "AmbientCapabilities").is_empty());
    // The daemon starts as root and takes its capabilities from the bounding set: no User=,
    // and no SecureBits=noroot, which would leave root without them.
    assert!(directive(&text, "Service", "User").is_empty());
    assert!(!directive(&text, "Service", "SecureBits")
        .iter()
        .any(|b| b.starts_with("noroot")));
    assert_eq!(directive(&text, "Service", "LimitMEMLOCK"), ["infinity"]);
    assert_eq!(
        directive(&text, "Service", "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_XDP"]
    );
}

#[test]
fn the_unit_starts_the_shipped_configuration_which_loads() {
    let text = unit();
    assert_eq!(directive(&text, "Service", "Type"), ["notify"]);
    assert_eq!(
        directive(&text, "Service", "ExecStart"),
        [
            "/usr/bin/esprit-dataplane",
            "--config",
            "/etc/esprit/dataplane.toml"
        ]
    );
    // The daemon reloads on SIGHUP.
    assert_eq!(
        directive(&text, "Service", "ExecReload"),
        ["/bin/kill", "-HUP", "$MAINPID"]
    );
    let shipped = packaging_dir().join("etc/esprit/dataplane.toml");
    let cfg = DataplaneConfig::load(&shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cfg.sa_file.is_none(),
        "the shipped dataplane is keyed by esprit-ike"
    );
    // The API socket lives in the unit's RuntimeDirectory.
    let run = directive(&text, "Service", "RuntimeDirectory");
    assert_eq!(run, ["esprit"]);
    assert_eq!(cfg.api_socket.parent(), Some(Path::new("/run/esprit")));
}

#[test]
#[ignore = "needs root (a network namespace, XDP, AF_XDP) and setpriv: ./ci/test.sh runs it as root"]
fn the_daemon_starts_with_only_the_units_capabilities_notifies_and_reloads() {
    require_root();
    require_tool("setpriv", &["--version"]);
    let ns = Namespaces::new("su", &["gw"]);
    let gw = ns.name(0).to_string();
    link(
        End(&gw, "lan0", [2, 0, 0, 0, 0x1a, 1], &["10.201.1.1/24"]),
        End(&gw, "lanp", [2, 0, 0, 0, 0x1a, 2], &[]),
    );
    link(
        End(&gw, "wan0", [2, 0, 0, 0, 0x0a, 1], &["10.200.0.1/24"]),
        End(&gw, "wanp", [2, 0, 0, 0, 0x0a, 2], &[]),
    );
    let dir = tmpdir("su");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("dp.toml");
    let sock = dir.join("dp.sock");
    std::fs::write(
        &cfg,
        format!(
            "api_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n\
             [workers]\nring_size = 512\n",
            sock.display()
        ),
    )
    .unwrap();
    let d = UnitDaemon::start(
        "dp",
        &unit(),
        Some(&gw),
        env!("CARGO_BIN_EXE_esprit-dataplane"),
        &["--config".as_ref(), cfg.as_os_str()],
    );
    let ready = d.notify.wait_for("READY=1", Duration::from_secs(20));
    let caps = d.capabilities();
    let kept = d.expected(dataplane::daemon::privileges::RUNTIME_CAPABILITIES);
    // The unit's ExecReload: SIGHUP, which the daemon brackets with RELOADING=1 and READY=1.
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    let reloading = d.notify.wait_for("RELOADING=1", Duration::from_secs(10));
    let reloaded = d.notify.wait_for("READY=1", Duration::from_secs(10));
    let (stopping, status, stderr) = d.stop();
    let ready = ready.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    assert!(ready.contains("STATUS=esprit-dataplane: "), "{ready}");
    assert_eq!(
        caps, [kept; 3],
        "CapPrm, CapEff, CapBnd once set up; stderr: {stderr}"
    );
    reloading.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    reloaded.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    stopping.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}
