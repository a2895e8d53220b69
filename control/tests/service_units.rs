//! The systemd units and the example configuration the package ships
//! (`packaging/systemd`, `packaging/etc/esprit`).

use esprit_testkit::systemd::{directive, packaging_dir, verify, UnitDaemon};
use esprit_testkit::{require_root, require_tool, tmpdir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn unit(name: &str) -> PathBuf {
    packaging_dir().join("systemd").join(name)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn esprit_ike_unit_grants_exactly_the_capabilities_the_daemon_declares() {
    let text = read(&unit("esprit-ike.service"));
    let mut granted = directive(&text, "Service", "CapabilityBoundingSet");
    granted.sort();
    let mut declared: Vec<String> = control::daemon::privileges::unit_capabilities()
        .into_iter()
        .map(|c| {
            esprit_harden::cap_name(c)
                .expect("a named capability")
                .to_string()
        })
        .collect();
    declared.sort();
    assert_eq!(
        granted, declared,
        "esprit-ike.service's CapabilityBoundingSet and control::daemon::privileges differ"
    );
    assert!(
        directive(&text, "Service", "AmbientCapabilities").is_empty(),
        "esprit-ike starts as root: no ambient capabilities"
    );
    assert_eq!(directive(&text, "Service", "LimitMEMLOCK"), ["infinity"]);
    // The daemon starts as root and takes its capabilities from the bounding set: no User=,
    // and no SecureBits=noroot, which would leave root without them.
    assert!(directive(&text, "Service", "User").is_empty());
    assert!(!directive(&text, "Service", "SecureBits")
        .iter()
        .any(|b| b.starts_with("noroot")));
}

#[test]
fn esprit_ike_unit_waits_for_the_dataplane_and_reloads_with_espctl() {
    let text = read(&unit("esprit-ike.service"));
    assert_eq!(directive(&text, "Service", "Type"), ["notify"]);
    assert!(directive(&text, "Unit", "After").contains(&"esprit-dataplane.service".into()));
    assert!(directive(&text, "Unit", "Wants").contains(&"esprit-dataplane.service".into()));
    assert_eq!(
        directive(&text, "Service", "ExecReload"),
        ["/usr/bin/espctl", "reload"]
    );
    assert_eq!(directive(&text, "Service", "Restart"), ["on-abnormal"]);
}

/// A copy of the shipped esprit-ike.toml, mode 0600 as the package installs it (git keeps
/// only 0644), with `edit` applied.
fn example_copy(tag: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = esprit_testkit::tmpdir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("esprit-ike.toml");
    std::fs::write(
        &p,
        edit(&read(&packaging_dir().join("etc/esprit/esprit-ike.toml"))),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
        .args(["--check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_shipped_configuration_and_its_example_pass_the_check() {
    let shipped = example_copy("ike-example", str::to_string);
    let (ok, said) = check(&shipped);
    assert!(ok && said.contains("ok, 0 connections"), "{said}");
    // The commented-out example connection, uncommented, is a valid configuration too.
    let uncommented = example_copy("ike-example-on", |text| {
        let start = text.find("# [connections.").expect("an example connection");
        let (head, example) = text.split_at(start);
        let body: Vec<&str> = example
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .collect();
        format!("{head}{}\n", body.join("\n"))
    });
    let (ok, said) = check(&uncommented);
    assert!(ok && said.contains("ok, 1 connections"), "{said}");
    for p in [shipped, uncommented] {
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}

#[test]
#[ignore = "needs systemd-analyze (Debian's systemd): ./ci/test.sh installs it and runs it"]
fn both_units_pass_systemd_analyze_verify() {
    esprit_testkit::require_tool("systemd-analyze", &["--version"]);
    let units = [unit("esprit-dataplane.service"), unit("esprit-ike.service")];
    if let Err(e) = verify(&units) {
        panic!("{e}");
    }
}

#[test]
#[ignore = "needs systemd-analyze (Debian's systemd): ./ci/test.sh installs it and runs it"]
fn a_broken_unit_fails_verification() {
    esprit_testkit::require_tool("systemd-analyze", &["--version"]);
    let good = read(&unit("esprit-ike.service"));
    let dir = esprit_testkit::tmpdir("broken-units");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let breakages = [
        ("Restart=on-abnormal", "Restart=sometimes"),
        ("ProtectHome=yes", "ProtectHomme=yes"),
        (
            "ExecReload=/usr/bin/espctl reload",
            "ExecReload=espctl reload",
        ),
        ("[Service]", "[Servce]"),
    ];
    for (i, (from, to)) in breakages.iter().enumerate() {
        assert!(good.contains(from), "{from}");
        let p = dir.join(format!("esprit-broken{i}.service"));
        std::fs::write(&p, good.replacen(from, to, 1)).unwrap();
        let r = verify(std::slice::from_ref(&p));
        assert!(r.is_err(), "{to}: verification passed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("esprit-t{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let st = Command::new("ip").args(&args).status().expect("run ip");
            assert!(st.success(), "ip {args:?}");
        }
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
#[ignore = "needs root (a network namespace) and setpriv: ./ci/test.sh runs it as root"]
fn esprit_ike_starts_with_only_the_units_capabilities_notifies_and_reloads() {
    require_root();
    require_tool("setpriv", &["--version"]);
    let ns = Netns::new("si");
    let dir = tmpdir("si");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("esprit-ike.toml");
    let sock = dir.join("ike.sock");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nsocket = \"{}\"\ndataplane_socket = \"{}\"\n",
            sock.display(),
            dir.join("dp.sock").display()
        ),
    )
    .unwrap();
    let text = read(&unit("esprit-ike.service"));
    let d = UnitDaemon::start(
        "ike",
        &text,
        Some(&ns.0),
        env!("CARGO_BIN_EXE_esprit-ike"),
        &["--config".as_ref(), cfg.as_os_str()],
    );
    let ready = d.notify.wait_for("READY=1", Duration::from_secs(20));
    let caps = d.capabilities();
    let kept = d.expected(control::daemon::privileges::RUNTIME_CAPABILITIES);
    // The unit's ExecReload: espctl reload, which the daemon brackets with RELOADING=1 and
    // READY=1.
    let reload = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--ike-socket")
        .arg(&sock)
        .arg("reload")
        .output()
        .unwrap();
    let reloading = d.notify.wait_for("RELOADING=1", Duration::from_secs(10));
    let reloaded = d.notify.wait_for("READY=1", Duration::from_secs(10));
    let (stopping, status, stderr) = d.stop();
    ready.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    assert_eq!(
        caps, [kept; 3],
        "CapPrm, CapEff, CapBnd once set up; stderr: {stderr}"
    );
    assert!(
        reload.status.success(),
        "espctl reload: {}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let reloading = reloading.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    reloaded.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    stopping.unwrap_or_else(|e| panic!("{e}; stderr: {stderr}"));
    assert!(status.success(), "{status}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}
