//! The systemd unit and the example configuration the package ships for esprit-dataplane
//! (`packaging/systemd/esprit-dataplane.service`, `packaging/etc/esprit/dataplane.toml`).

use dataplane::daemon::DataplaneConfig;
use esprit_testkit::systemd::{directive, packaging_dir};
use std::path::Path;

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
    // No reload in the daemon: the unit must not pretend to have one.
    assert!(directive(&text, "Service", "ExecReload").is_empty());
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
