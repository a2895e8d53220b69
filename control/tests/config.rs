//! The configuration through the public API: a file on disk with PSK and certificate
//! connections, loaded the way esprit-ike loads it.

use control::config::{AuthMethod, Config, ConfigError, RemoteAddr, StartAction, TsAddr, TsConfig};
use control::ike::identity::Identity;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("esprit-config-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const FILE: &str = r#"[daemon]
socket = "run/ike.sock"
log_level = "debug"

[connections.site-b]
local_addrs = ["10.200.0.1"]
remote_addrs = ["10.200.0.2"]
proposals = ["aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp384"]
local = { auth = "psk", id = "gwA" }
remote = { auth = "psk", id = "gwB" }
start_action = "start"
dpd_delay = "10s"

[connections.site-b.children.net]
local_ts = ["10.201.1.0/24"]
remote_ts = ["10.201.2.0/24[tcp/443]"]

[connections.roadside]
remote_addrs = "%any"
local = { auth = "pubkey", id = "CN=gwA", certs = ["pki/gwA.pem"], key = "pki/gwA.key" }
remote = { auth = "pubkey", cacerts = ["pki/ca.pem"] }

[connections.roadside.children.any]
remote_ts = "dynamic"

[[secrets.ike]]
ids = ["gwA", "gwB"]
secret = "0sc2VjcmV0IGtleQ=="
"#;

#[test]
fn a_file_on_disk_loads() {
    let dir = temp_dir("load");
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    for f in ["pki/gwA.pem", "pki/gwA.key", "pki/ca.pem"] {
        std::fs::write(dir.join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
    }
    let path = dir.join("esprit-ike.toml");
    std::fs::write(&path, FILE).unwrap();

    let c = Config::load(&path).unwrap();
    assert_eq!(c.daemon.socket, dir.join("run/ike.sock"));
    assert_eq!(c.connections.len(), 2);

    let site = c.connection("site-b").unwrap();
    assert_eq!(site.start_action, StartAction::Start);
    assert_eq!(site.dpd_delay, Some(Duration::from_secs(10)));
    assert_eq!(site.initiate_to(), Some("10.200.0.2".parse().unwrap()));
    let net = site.child("net").unwrap();
    assert_eq!(
        net.remote_ts,
        vec![TsConfig {
            addr: TsAddr::Prefix("10.201.2.0".parse().unwrap(), 24),
            protocol: 6,
            ports: (443, 443),
        }]
    );
    let gw_a = Identity::parse("gwA").unwrap();
    let gw_b = Identity::parse("gwB").unwrap();
    assert_eq!(c.psk_for(&gw_a, &gw_b), Some(&b"secret key"[..]));

    let road = c.connection("roadside").unwrap();
    assert_eq!(road.remote_addrs, vec![RemoteAddr::Any]);
    assert_eq!(road.local.auth, AuthMethod::Pubkey);
    assert_eq!(road.local.certs, vec![dir.join("pki/gwA.pem")]);
    assert_eq!(road.local.key, Some(dir.join("pki/gwA.key")));
    assert_eq!(road.remote.cacerts, vec![dir.join("pki/ca.pem")]);
    assert_eq!(road.remote.id, None);

    // The same text parsed from elsewhere looks for its files there, and says which is missing.
    let e: ConfigError =
        Config::parse(FILE, Path::new("/nonexistent/esprit-ike.toml")).unwrap_err();
    assert_eq!(
        e.key.as_deref(),
        Some("connections.roadside.local.certs[0]")
    );
    assert_eq!(e.line, Some(20));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/esprit-ike.toml:20: "),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
