//! Tests of the configuration: the reference example, defaults, every error's place, and the
//! value syntaxes (durations, sizes, traffic selectors, proposals, secrets).

use super::*;
use crate::ike::algorithms::{DhGroup, EncrAlg, PrfAlg};
use proptest::prelude::*;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const EXAMPLE: &str = r#"[connections.site-b]
local_addrs = ["10.200.0.1"]
remote_addrs = ["10.200.0.2"]
proposals = ["aes128gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-ecp384"]
local = { auth = "psk", id = "gwA" }
remote = { auth = "psk", id = "gwB" }
start_action = "start"
dpd_delay = "10s"
rekey_time = "4h"
[connections.site-b.children.net]
local_ts = ["10.201.1.0/24"]
remote_ts = ["10.201.2.0/24"]
esp_proposals = ["aes128gcm16", "aes256gcm16-x25519"]
rekey_time = "1h"
[[secrets.ike]]
ids = ["gwA", "gwB"]
secret = "correct horse battery staple"
"#;

/// The tail every PSK connection in these tests shares.
const PSK_SECRET: &str = "[[secrets.ike]]\nsecret = \"s3cret\"\n";

fn origin() -> PathBuf {
    PathBuf::from("esprit-ike.toml")
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, &origin())
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected the configuration to load, got: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts an error's line, key and that its message contains `needle`.
fn assert_err(text: &str, line: usize, key: &str, needle: &str) {
    let e = err(text);
    assert_eq!(e.file, "esprit-ike.toml", "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert!(e.message.contains(needle), "'{needle}' not in: {e}");
}

/// A connection `c` with PSK on both sides, `extra` lines in the connection, and a child `net`
/// with `child` lines. The connection's extra lines start on line 5, the child's on line
/// 6 + lines(extra).
fn conn(extra: &str, child: &str) -> String {
    format!(
        "[connections.c]\nremote_addrs = [\"192.0.2.2\"]\nlocal = {{ auth = \"psk\", id = \"a\" }}\n\
         remote = {{ auth = \"psk\", id = \"b\" }}\n{extra}[connections.c.children.net]\n{child}{PSK_SECRET}"
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn id(s: &str) -> Identity {
    Identity::parse(s).unwrap()
}

fn ts(s: &str) -> TsConfig {
    TsConfig::parse(s).unwrap()
}

/// A fresh directory for files the tests need.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "esprit-config-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn example_parses_to_exactly_the_expected_structs() {
    let c = ok(EXAMPLE);
    let expected = Config {
        daemon: DaemonSettings::default(),
        connections: vec![Connection {
            name: "site-b".into(),
            local_addrs: vec![ip("10.200.0.1")],
            remote_addrs: vec![RemoteAddr::Ip(ip("10.200.0.2"))],
            local_port: 500,
            remote_port: 500,
            proposals: vec![
                IkeProposal {
                    encr: vec![EncrAlg::AesGcm16_128],
                    integ: vec![],
                    prf: vec![PrfAlg::HmacSha256],
                    dh: vec![DhGroup::X25519],
                    addke: Default::default(),
                },
                IkeProposal {
                    encr: vec![EncrAlg::AesGcm16_256],
                    integ: vec![],
                    prf: vec![PrfAlg::HmacSha384],
                    dh: vec![DhGroup::Ecp384],
                    addke: Default::default(),
                },
            ],
            local: LocalAuth {
                id: Some(Identity::Fqdn("gwA".into())),
                auth: AuthMethod::Psk,
                certs: vec![],
                key: None,
            },
            remote: RemoteAuth {
                id: Some(Identity::Fqdn("gwB".into())),
                auth: AuthMethod::Psk,
                cacerts: vec![],
            },
            start_action: StartAction::Start,
            dpd_delay: Some(Duration::from_secs(10)),
            dpd_action: DpdAction::Clear,
            rekey_time: Some(Duration::from_secs(4 * 3600)),
            reauth_time: None,
            over_time: Duration::from_secs(1440),
            rand_time: Duration::from_secs(1440),
            encap: false,
            fragmentation: true,
            keyingtries: 1,
            children: vec![Child {
                name: "net".into(),
                local_ts: vec![TsConfig {
                    addr: TsAddr::Prefix(ip("10.201.1.0"), 24),
                    protocol: 0,
                    ports: (0, 65535),
                }],
                remote_ts: vec![TsConfig {
                    addr: TsAddr::Prefix(ip("10.201.2.0"), 24),
                    protocol: 0,
                    ports: (0, 65535),
                }],
                esp_proposals: vec![
                    EspProposal {
                        encr: vec![EncrAlg::AesGcm16_128],
                        integ: vec![],
                        dh: vec![],
                        esn: vec![false],
                        addke: Default::default(),
                    },
                    EspProposal {
                        encr: vec![EncrAlg::AesGcm16_256],
                        integ: vec![],
                        dh: vec![DhGroup::X25519],
                        esn: vec![false],
                        addke: Default::default(),
                    },
                ],
                mode: Mode::Tunnel,
                rekey_time: Some(Duration::from_secs(3600)),
                life_time: Some(Duration::from_secs(3960)),
                rand_time: Duration::from_secs(360),
                rekey_bytes: 0,
                life_bytes: 0,
                rand_bytes: 0,
                rekey_packets: 0,
                life_packets: 0,
                rand_packets: 0,
                start_action: None,
                dpd_action: None,
                close_action: CloseAction::None,
                replay_window: 1024,
            }],
        }],
        secrets: Secrets {
            ike: vec![IkeSecret::new(
                vec![id("gwA"), id("gwB")],
                b"correct horse battery staple".to_vec(),
            )],
        },
        metrics: None,
    };
    assert_eq!(c, expected);
    let conn = c.connection("site-b").unwrap();
    assert!(c.connection("site-c").is_none());
    let child = conn.child("net").unwrap();
    assert!(conn.child("other").is_none());
    assert_eq!(conn.start_action_of(child), StartAction::Start);
    assert_eq!(conn.dpd_action_of(child), DpdAction::Clear);
    assert_eq!(conn.initiate_to(), Some(ip("10.200.0.2")));
    assert_eq!(
        c.psk_for(&id("gwA"), &id("gwB")),
        Some(&b"correct horse battery staple"[..])
    );
}

#[test]
fn the_reference_example_in_the_docs_parses() {
    let doc = include_str!("../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("a toml block in the docs") + 8;
    let len = doc[start..].find("```").unwrap();
    let c = ok(&doc[start..start + len]);
    assert!(!c.connections.is_empty());
}

#[test]
fn defaults() {
    let c = ok(&conn("", ""));
    assert_eq!(c.daemon, DaemonSettings::default());
    assert_eq!(
        c.daemon.dataplane_socket,
        PathBuf::from("/run/esprit/dataplane.sock")
    );
    assert_eq!(c.daemon.socket, PathBuf::from("/run/esprit/ike.sock"));
    assert_eq!((c.daemon.port, c.daemon.port_nat_t), (500, 4500));
    assert_eq!(c.daemon.retransmit_timeout, Duration::from_secs(4));
    assert_eq!(c.daemon.retransmit_base, 1.8);
    assert_eq!(c.daemon.retransmit_tries, 5);
    assert_eq!(c.daemon.cookie_threshold, 10);
    assert_eq!(c.daemon.half_open_timeout, Duration::from_secs(30));
    assert_eq!(c.daemon.log_level, LogLevel::Info);
    let conn = &c.connections[0];
    assert!(conn.local_addrs.is_empty());
    assert_eq!(conn.local.id, Some(id("a")));
    assert_eq!(conn.proposals, vec![IkeProposal::defaults()]);
    assert_eq!(conn.start_action, StartAction::None);
    assert_eq!(conn.dpd_delay, None);
    assert_eq!(conn.rekey_time, Some(Duration::from_secs(14400)));
    assert_eq!(conn.reauth_time, None);
    assert_eq!(conn.over_time, Duration::from_secs(1440));
    assert_eq!(conn.rand_time, Duration::from_secs(1440));
    assert!(!conn.encap);
    assert!(conn.fragmentation);
    assert_eq!(conn.keyingtries, 1);
    let child = &conn.children[0];
    assert_eq!(child.local_ts, vec![TsConfig::dynamic()]);
    assert_eq!(child.remote_ts, vec![TsConfig::dynamic()]);
    assert_eq!(child.esp_proposals, vec![EspProposal::defaults()]);
    assert_eq!(child.mode, Mode::Tunnel);
    assert_eq!(child.rekey_time, Some(Duration::from_secs(3600)));
    assert_eq!(child.life_time, Some(Duration::from_secs(3960)));
    assert_eq!(child.rand_time, Duration::from_secs(360));
    assert_eq!(child.replay_window, DEFAULT_REPLAY_WINDOW);

    // Without remote_addrs the peer may be anyone; the local id defaults to the first local
    // address.
    let c = ok(&format!(
        "[connections.r]\nlocal_addrs = \"fd00::1, 10.0.0.1\"\nlocal = {{ auth = \"psk\" }}\n\
         remote = {{ auth = \"psk\" }}\n{PSK_SECRET}"
    ));
    let r = &c.connections[0];
    assert_eq!(r.remote_addrs, vec![RemoteAddr::Any]);
    assert_eq!(r.local_addrs, vec![ip("fd00::1"), ip("10.0.0.1")]);
    assert_eq!(r.local.id, Some(id("fd00::1")));
    assert_eq!(r.remote.id, None);
    assert_eq!(r.initiate_to(), None);
    assert!(r.children.is_empty());

    // An empty file is an empty configuration.
    let empty = ok("");
    assert!(empty.connections.is_empty() && empty.secrets.ike.is_empty());
}

#[test]
fn every_key_is_read() {
    let text = format!(
        r#"[daemon]
dataplane_socket = "dp.sock"
socket = "/tmp/ike.sock"
port = 1500
port_nat_t = 14500
retransmit_timeout = "1.5s"
retransmit_base = 2
retransmit_tries = 3
cookie_threshold = 0
half_open_timeout = 60
orphan_timeout = "90s"
half_open_limit = 200
half_open_limit_per_source = 2
cookie_secret_lifetime = "2m"
log_level = "debug"
log_format = "json"
user = "esprit"

[connections.c]
local_addrs = ["%any"]
remote_addrs = ["192.0.2.2", "%any"]
local_port = 4501
remote_port = 4502
proposals = "aes256gcm128-aes128gcm-sha384-prfsha512-curve25519-modp2048, default"
local = {{ auth = "psk", id = "@gw.example" }}
remote = {{ auth = "psk", id = "%any" }}
start_action = "trap"
dpd_delay = "30"
dpd_action = "restart"
rekey_time = "0"
reauth_time = "1d"
over_time = "1h"
rand_time = "5m"
encap = "yes"
fragmentation = false
keyingtries = "%forever"

[connections.c.children.web]
local_ts = "10.0.0.0/8[tcp/443], dynamic"
remote_ts = ["fd00::/64[udp/1000-2000]", "0.0.0.0/0[icmp/8]"]
esp_proposals = ["aes256gcm16-ecp256-esn-noesn"]
mode = "transport"
rekey_time = 600
life_time = "15m"
rand_time = "1m"
rekey_bytes = "1G"
life_bytes = "2G"
rand_bytes = 1000
rekey_packets = "500K"
rand_packets = 0
start_action = "none"
dpd_action = "trap"
close_action = "start"
replay_window = 0x100
{PSK_SECRET}"#
    );
    let c = ok(&text);
    let d = &c.daemon;
    assert_eq!(d.dataplane_socket, PathBuf::from("./dp.sock"));
    assert_eq!(d.socket, PathBuf::from("/tmp/ike.sock"));
    assert_eq!((d.port, d.port_nat_t), (1500, 14500));
    assert_eq!(d.retransmit_timeout, Duration::from_millis(1500));
    assert_eq!(d.retransmit_base, 2.0);
    assert_eq!(d.retransmit_tries, 3);
    assert_eq!(d.cookie_threshold, 0);
    assert_eq!(d.half_open_timeout, Duration::from_secs(60));
    assert_eq!(d.orphan_timeout, Duration::from_secs(90));
    assert_eq!((d.half_open_limit, d.half_open_limit_per_source), (200, 2));
    assert_eq!(d.cookie_secret_lifetime, Duration::from_secs(120));
    assert_eq!(d.log_level, LogLevel::Debug);
    assert_eq!(d.log_format, esprit_log::Format::Json);
    assert_eq!(d.user.as_deref(), Some("esprit"));
    let k = &c.connections[0];
    assert!(k.local_addrs.is_empty());
    assert_eq!(
        k.remote_addrs,
        vec![RemoteAddr::Ip(ip("192.0.2.2")), RemoteAddr::Any]
    );
    assert_eq!((k.local_port, k.remote_port), (4501, 4502));
    assert_eq!(
        k.proposals,
        vec![
            IkeProposal {
                encr: vec![EncrAlg::AesGcm16_256, EncrAlg::AesGcm16_128],
                integ: vec![],
                prf: vec![PrfAlg::HmacSha384, PrfAlg::HmacSha512],
                dh: vec![DhGroup::X25519, DhGroup::Modp2048],
                addke: Default::default(),
            },
            IkeProposal::defaults()
        ]
    );
    assert_eq!(k.local.id, Some(Identity::Fqdn("gw.example".into())));
    assert_eq!(k.remote.id, None);
    assert_eq!(k.start_action, StartAction::Trap);
    assert_eq!(k.dpd_delay, Some(Duration::from_secs(30)));
    assert_eq!(k.dpd_action, DpdAction::Restart);
    assert_eq!(k.rekey_time, None);
    assert_eq!(k.reauth_time, Some(Duration::from_secs(86400)));
    assert_eq!(k.over_time, Duration::from_secs(3600));
    assert_eq!(k.rand_time, Duration::from_secs(300));
    assert!(k.encap);
    assert!(!k.fragmentation);
    assert_eq!(k.keyingtries, 0);
    let w = &k.children[0];
    assert_eq!(w.local_ts, vec![ts("10.0.0.0/8[tcp/443]"), ts("dynamic")]);
    assert_eq!(w.local_ts[0].protocol, 6);
    assert_eq!(w.local_ts[0].ports, (443, 443));
    assert_eq!(w.remote_ts[0].ports, (1000, 2000));
    assert_eq!(w.remote_ts[1].ports, (8 << 8, (8 << 8) | 0xff));
    assert_eq!(
        w.esp_proposals,
        vec![EspProposal {
            encr: vec![EncrAlg::AesGcm16_256],
            integ: vec![],
            dh: vec![DhGroup::Ecp256],
            esn: vec![true, false],
            addke: Default::default(),
        }]
    );
    assert_eq!(w.mode, Mode::Transport);
    assert_eq!(w.rekey_time, Some(Duration::from_secs(600)));
    assert_eq!(w.life_time, Some(Duration::from_secs(900)));
    assert_eq!(w.rand_time, Duration::from_secs(60));
    assert_eq!(
        (w.rekey_bytes, w.life_bytes, w.rand_bytes),
        (1 << 30, 2 << 30, 1000)
    );
    assert_eq!(
        (w.rekey_packets, w.life_packets, w.rand_packets),
        (500 << 10, 563_200, 0)
    );
    assert_eq!(w.start_action, Some(StartAction::None));
    assert_eq!(k.start_action_of(w), StartAction::None);
    assert_eq!(w.dpd_action, Some(DpdAction::Trap));
    assert_eq!(k.dpd_action_of(w), DpdAction::Trap);
    assert_eq!(w.close_action, CloseAction::Start);
    assert_eq!(w.replay_window, 256);
}

#[test]
fn connections_keep_file_order() {
    let text = format!(
        "[connections.zeta]\nlocal = {{ auth = \"psk\" }}\nremote = {{ auth = \"psk\" }}\n\
         [connections.alpha]\nlocal = {{ auth = \"psk\" }}\nremote = {{ auth = \"psk\" }}\n\
         [connections.alpha.children.z]\n[connections.alpha.children.a]\n{PSK_SECRET}"
    );
    let c = ok(&text);
    let names: Vec<&str> = c.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    let children: Vec<&str> = c.connections[1]
        .children
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(children, ["z", "a"]);
}

#[test]
fn the_documented_error_reads_as_documented() {
    let text = EXAMPLE.replace(
        "aes256gcm16-prfsha384-ecp384\"]",
        "aes256gcm16-prfsha384-ecp999\"]",
    );
    let text = text.replacen("[connections.site-b]\n", "[connections.site-b]\n\n\n", 1);
    assert_eq!(
        err(&text).to_string(),
        "esprit-ike.toml:6: connections.site-b.proposals[1]: unknown key exchange 'ecp999' \
         (expected one of x25519, ecp256, ecp384, ecp521, modp2048, modp3072, modp4096)"
    );
}

#[test]
fn unknown_keys_are_errors_that_list_the_known_ones() {
    assert_err(
        "[deamon]\n",
        1,
        "deamon",
        "expected one of daemon, connections, secrets",
    );
    assert_err(
        "[daemon]\nport = 500\nprot = 1\n",
        3,
        "daemon.prot",
        "unknown key 'prot' (expected one of dataplane_socket, socket, port",
    );
    assert_err(
        &conn("mobike = false\n", ""),
        5,
        "connections.c.mobike",
        "expected one of local_addrs, remote_addrs",
    );
    assert_err(
        &conn("", "local_ts = [\"dynamic\"]\nipcomp = true\n"),
        7,
        "connections.c.children.net.ipcomp",
        "expected one of local_ts, remote_ts, esp_proposals",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\", ids = \"a\" }\n",
        2,
        "connections.c.local.ids",
        "expected one of auth, id, certs, key",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\nremote = { auth = \"psk\", certs = [] }\n",
        3,
        "connections.c.remote.certs",
        "expected one of auth, id, cacerts",
    );
    assert_err(
        "[secrets]\n[[secrets.ike]]\nsecret = \"x\"\n[[secrets.eap]]\nsecret = \"x\"\n",
        4,
        "secrets.eap",
        "expected one of ike",
    );
    assert_err(
        "[[secrets.ike]]\nid = \"a\"\nsecret = \"x\"\n",
        2,
        "secrets.ike[0].id",
        "expected one of ids, secret",
    );
    assert_err(
        &conn("esp_proposals = [\"aes128gcm16\"]\n", ""),
        5,
        "connections.c.esp_proposals",
        "belongs in a child",
    );
    assert_err(
        &conn("", "updown = \"/usr/lib/ipsec/_updown\"\n"),
        6,
        "connections.c.children.net.updown",
        "not supported",
    );
}

#[test]
fn duplicates_are_errors() {
    let text = format!(
        "[connections.a]\nlocal = {{ auth = \"psk\" }}\nremote = {{ auth = \"psk\" }}\n\
         [connections.b]\nlocal = {{ auth = \"psk\" }}\nremote = {{ auth = \"psk\" }}\n\
         [connections.a]\n{PSK_SECRET}"
    );
    assert_err(&text, 7, "connections.a", "duplicate connection name 'a'");
    let text = format!(
        "[connections.a]\nlocal = {{ auth = \"psk\" }}\nremote = {{ auth = \"psk\" }}\n\
         [connections.a.children.net]\n[connections.a.children.other]\n\
         [connections.a.children.net]\n{PSK_SECRET}"
    );
    assert_err(
        &text,
        6,
        "connections.a.children.net",
        "duplicate child name 'net' in connection 'a'",
    );
    assert_err(
        &conn("dpd_delay = \"1s\"\ndpd_delay = \"2s\"\n", ""),
        6,
        "connections.c.dpd_delay",
        "duplicate key 'dpd_delay'",
    );
}

#[test]
fn syntax_and_type_errors_name_the_line() {
    let e = err("[connections.c]\nlocal = { auth = \"psk\" \n");
    assert_eq!(e.line, Some(2), "{e}");
    assert_err(
        "[daemon]\nport = \"500\"\n",
        2,
        "daemon.port",
        "expected an integer in 1..=65535, got a string",
    );
    assert_err("[daemon]\nport = 0\n", 2, "daemon.port", "1..=65535, got 0");
    assert_err(
        "daemon = 5\n",
        1,
        "daemon",
        "expected a table, got an integer",
    );
    assert_err("connections = []\n", 1, "connections", "expected a table");
    assert_err(
        "[connections.c]\nlocal = \"psk\"\n",
        2,
        "connections.c.local",
        "expected a table, got a string",
    );
    assert_err(
        &conn("encap = 1\n", ""),
        5,
        "connections.c.encap",
        "expected true or false",
    );
    assert_err(
        &conn("local_addrs = [1]\n", ""),
        5,
        "connections.c.local_addrs[0]",
        "expected a string (address), got an integer",
    );
    assert_err(
        "[connections.\"a b\"]\n",
        1,
        "connections.a b",
        "without spaces",
    );
}

#[test]
fn daemon_errors() {
    assert_err(
        "[daemon]\nport = 4500\n",
        2,
        "daemon.port",
        "must differ from port_nat_t",
    );
    assert_err(
        "[daemon]\nport_nat_t = 500\n",
        2,
        "daemon.port_nat_t",
        "must differ from port",
    );
    assert_err(
        "[daemon]\nretransmit_timeout = \"0s\"\n",
        2,
        "daemon.retransmit_timeout",
        "at least 0.1s",
    );
    assert_err(
        "[daemon]\nretransmit_base = 0.5\n",
        2,
        "daemon.retransmit_base",
        "1.0..=10.0",
    );
    assert_err(
        "[daemon]\nretransmit_base = nan\n",
        2,
        "daemon.retransmit_base",
        "1.0..=10.0",
    );
    assert_err(
        "[daemon]\nretransmit_tries = -1\n",
        2,
        "daemon.retransmit_tries",
        "0..=100",
    );
    assert_err(
        "[daemon]\nhalf_open_timeout = 0\n",
        2,
        "daemon.half_open_timeout",
        "greater than zero",
    );
    assert_err(
        "[daemon]\norphan_timeout = 0\n",
        2,
        "daemon.orphan_timeout",
        "greater than zero",
    );
    assert_err(
        "[daemon]\nhalf_open_timeout = \"10m\"\n",
        2,
        "daemon.half_open_timeout",
        "at most 300s",
    );
    assert_err(
        "[daemon]\nhalf_open_limit = 0\n",
        2,
        "daemon.half_open_limit",
        "1..=1000000",
    );
    assert_err(
        "[daemon]\nhalf_open_limit_per_source = 0\n",
        2,
        "daemon.half_open_limit_per_source",
        "1..=1000000",
    );
    assert_err(
        "[daemon]\ncookie_secret_lifetime = \"2h\"\n",
        2,
        "daemon.cookie_secret_lifetime",
        "1s to 3600s",
    );
    assert_err(
        "[daemon]\nlog_level = \"loud\"\n",
        2,
        "daemon.log_level",
        "unknown log level 'loud' (expected one of error, warn, info, debug, trace)",
    );
    assert_err(
        "[daemon]\nlog_format = \"xml\"\n",
        2,
        "daemon.log_format",
        "unknown log format 'xml' (expected text or json)",
    );
    assert_err("[daemon]\nsocket = \"\"\n", 2, "daemon.socket", "empty");
    assert_err(
        "[daemon]\nuser = \"es prit\"\n",
        2,
        "daemon.user",
        "expected a user name",
    );
}

#[test]
fn connection_errors() {
    assert_err(
        &conn("local_addrs = [\"10.0.0.1\", \"gw.example\"]\n", ""),
        5,
        "connections.c.local_addrs[1]",
        "expected an IP address",
    );
    assert_err(
        &conn("local_addrs = [\"10.0.0.1\", \"%any\"]\n", ""),
        5,
        "connections.c.local_addrs[1]",
        "\"%any\" alone",
    );
    assert_err(
        "[connections.c]\nremote_addrs = \"10.0.0.1, 10.0.0.300\"\n",
        2,
        "connections.c.remote_addrs[1]",
        "expected an IP address or \"%any\", got '10.0.0.300'",
    );
    assert_err(
        "[connections.c]\nremote_addrs = []\n",
        2,
        "connections.c.remote_addrs",
        "at least one address",
    );
    assert_err(
        &conn("remote_port = 70000\n", ""),
        5,
        "connections.c.remote_port",
        "1..=65535",
    );
    assert_err(
        &conn("proposals = []\n", ""),
        5,
        "connections.c.proposals",
        "at least one proposal",
    );
    assert_err(
        &conn("proposals = [\"aes128gcm16-x25519\"]\n", ""),
        5,
        "connections.c.proposals[0]",
        "IKE proposal 'aes128gcm16-x25519' has no PRF (add one of prfsha256, prfsha384, prfsha512)",
    );
    assert_err(
        &conn("proposals = [\"aes128gcm16-prfsha256\"]\n", ""),
        5,
        "connections.c.proposals[0]",
        "has no key exchange method",
    );
    assert_err(
        &conn("proposals = [\"prfsha256-x25519\"]\n", ""),
        5,
        "connections.c.proposals[0]",
        "has no encryption algorithm",
    );
    assert_err(
        &conn("proposals = [\"aes192-sha256-modp2048\"]\n", ""),
        5,
        "connections.c.proposals[0]",
        "unsupported encryption algorithm 'aes192'",
    );
    assert_err(
        &conn("start_action = \"go\"\n", ""),
        5,
        "connections.c.start_action",
        "unknown start action 'go' (expected one of none, start, trap)",
    );
    assert_err(
        &conn("dpd_action = \"none\"\n", ""),
        5,
        "connections.c.dpd_action",
        "expected one of clear, restart, trap",
    );
    assert_err(
        &conn("dpd_delay = \"10x\"\n", ""),
        5,
        "connections.c.dpd_delay",
        "expected a duration such as",
    );
    assert_err(
        &conn("rekey_time = -1\n", ""),
        5,
        "connections.c.rekey_time",
        "expected 0..=4294967295 seconds, got -1",
    );
    assert_err(
        &conn("rekey_time = \"1h\"\nrand_time = \"2h\"\n", ""),
        6,
        "connections.c.rand_time",
        "must be less than the rekey/reauth time",
    );
    assert_err(
        &conn("keyingtries = \"forever\"\n", ""),
        5,
        "connections.c.keyingtries",
        "expected an integer",
    );
    assert_err(
        &conn("fragmentation = \"maybe\"\n", ""),
        5,
        "connections.c.fragmentation",
        "expected true or false",
    );
    // Initiating to %any is impossible: said at the start_action that asks for it.
    assert_err(
        "[connections.c]\nremote_addrs = \"%any\"\nlocal = { auth = \"psk\" }\n\
         remote = { auth = \"psk\" }\nstart_action = \"start\"\n[[secrets.ike]]\nsecret = \"x\"\n",
        5,
        "connections.c.start_action",
        "needs a peer address in remote_addrs",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\nremote = { auth = \"psk\" }\n\
         [connections.c.children.n]\nstart_action = \"trap\"\n[[secrets.ike]]\nsecret = \"x\"\n",
        5,
        "connections.c.children.n.start_action",
        "start_action 'trap' needs a peer address",
    );
}

#[test]
fn auth_errors() {
    assert_err(
        "[connections.c]\nremote = { auth = \"psk\" }\n",
        1,
        "connections.c.local",
        "missing",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\n",
        1,
        "connections.c.remote",
        "missing",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"eap-mschapv2\" }\n",
        2,
        "connections.c.local.auth",
        "EAP and XAuth are not supported",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"ecdsa\" }\n",
        2,
        "connections.c.local.auth",
        "write auth = \"pubkey\"",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\", id = \"CN=x, XX=y\" }\n",
        2,
        "connections.c.local.id",
        "bad distinguished name",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\", id = \"%any\" }\n",
        2,
        "connections.c.local.id",
        "cannot be %any",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"pubkey\", key = \"k.pem\" }\n",
        2,
        "connections.c.local.certs",
        "pubkey authentication needs certs",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\", certs = [\"a.pem\"] }\n",
        2,
        "connections.c.local.certs",
        "applies only to auth = \"pubkey\"",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\nremote = { id = \"b\" }\n",
        3,
        "connections.c.remote.cacerts",
        "needs cacerts",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\n\
         remote = { auth = \"psk\", cacerts = [\"ca.pem\"] }\n",
        3,
        "connections.c.remote.cacerts",
        "applies only to auth = \"pubkey\"",
    );
    // Files that are not there are named with the key that names them.
    assert_err(
        "[connections.c]\n\
         local = { auth = \"pubkey\", certs = [\"/nonexistent/esprit/a.pem\"], key = \"k.pem\" }\n",
        2,
        "connections.c.local.certs[0]",
        "cannot read /nonexistent/esprit/a.pem",
    );
}

#[test]
fn psk_connections_need_a_secret() {
    let text = "[connections.c]\nlocal = { auth = \"psk\", id = \"a\" }\n\
                remote = { auth = \"psk\", id = \"b\" }\n[[secrets.ike]]\nids = [\"x\", \"y\"]\nsecret = \"s\"\n";
    let e = err(text);
    assert_eq!(e.line, Some(2), "{e}");
    assert_eq!(e.key.as_deref(), Some("connections.c.local.auth"));
    assert!(e.message.contains("connection 'c'"), "{e}");
    assert!(e.message.contains("ids = [\"a\", \"b\"]"), "{e}");
    assert!(!e.to_string().contains("\"s\""));
    // No secrets at all.
    assert_err(
        "[connections.c]\nlocal = { auth = \"pubkey\", certs = [], key = \"\" }\n",
        2,
        "connections.c.local.certs",
        "at least one certificate",
    );
    assert_err(
        "[connections.c]\nlocal = { auth = \"psk\" }\nremote = { auth = \"psk\" }\n",
        2,
        "connections.c.local.auth",
        "no [[secrets.ike]] entry",
    );
    // One id matching is enough; so is an entry without ids; an unknown peer (%any) may be
    // any of the listed ids.
    ok(&text.replace("\"x\", \"y\"", "\"b\""));
    ok(&text.replace("ids = [\"x\", \"y\"]\n", ""));
    ok(&text.replace("id = \"b\"", "id = \"%any\""));
}

#[test]
fn child_errors() {
    assert_err(
        &conn("", "local_ts = [\"10.0.0.1/24\"]\n"),
        6,
        "connections.c.children.net.local_ts[0]",
        "has host bits set (did you mean 10.0.0.0/24?)",
    );
    assert_err(
        &conn("", "remote_ts = \"10.0.0.0/8, 10.0.0.0/33\"\n"),
        6,
        "connections.c.children.net.remote_ts[1]",
        "prefix length in '10.0.0.0/33' must be 0..=32",
    );
    assert_err(
        &conn("", "remote_ts = []\n"),
        6,
        "connections.c.children.net.remote_ts",
        "at least one traffic selector",
    );
    assert_err(
        &conn(
            "",
            "esp_proposals = [\"aes128gcm16\", \"aes128gcm16-sha256\"]\n",
        ),
        6,
        "connections.c.children.net.esp_proposals[1]",
        "names an integrity algorithm but only AEAD ciphers",
    );
    assert_err(
        &conn("", "esp_proposals = [\"aes128gcm16-prfsha256\"]\n"),
        6,
        "connections.c.children.net.esp_proposals[0]",
        "ESP proposals have no PRF",
    );
    assert_err(
        &conn("", "mode = \"beet\"\n"),
        6,
        "connections.c.children.net.mode",
        "unsupported mode 'beet' (expected tunnel or transport)",
    );
    assert_err(
        &conn("", "rekey_time = \"1h\"\nlife_time = \"30m\"\n"),
        7,
        "connections.c.children.net.life_time",
        "life_time (1800s) must be greater than rekey_time (3600s)",
    );
    assert_err(
        &conn("", "rand_time = \"2h\"\n"),
        6,
        "connections.c.children.net.rand_time",
        "must be less than rekey_time",
    );
    assert_err(
        &conn("", "rekey_bytes = \"1G\"\nlife_bytes = \"500M\"\n"),
        7,
        "connections.c.children.net.life_bytes",
        "must be greater than rekey_bytes",
    );
    assert_err(
        &conn("", "rekey_packets = 100\nrand_packets = 100\n"),
        7,
        "connections.c.children.net.rand_packets",
        "must be less than rekey_packets",
    );
    assert_err(
        &conn("", "rekey_bytes = \"1T\"\n"),
        6,
        "connections.c.children.net.rekey_bytes",
        "K, M or G suffix",
    );
    assert_err(
        &conn("", "rekey_bytes = -5\n"),
        6,
        "connections.c.children.net.rekey_bytes",
        "non-negative",
    );
    assert_err(
        &conn("", "close_action = \"explode\"\n"),
        6,
        "connections.c.children.net.close_action",
        "expected one of none, trap, start",
    );
    assert_err(
        &conn("", "replay_window = 2000000\n"),
        6,
        "connections.c.children.net.replay_window",
        "0..=1048576",
    );
    assert_err(
        &conn(
            "",
            "esp_proposals = \"aes128gcm16-esn\"\nreplay_window = 0\n",
        ),
        7,
        "connections.c.children.net.replay_window",
        "esn needs a replay window",
    );
}

#[test]
fn secrets() {
    let c = ok("[[secrets.ike]]\nsecret = \"0x00ff10\"\n[[secrets.ike]]\nids = \"C=CH, O=esprit, CN=gw\"\nsecret = \"0sAAEC/w==\"\n[[secrets.ike]]\nids = [\"%any\"]\nsecret = \"plain\"\n");
    assert_eq!(c.secrets.ike[0].secret(), &[0x00, 0xff, 0x10]);
    assert!(c.secrets.ike[0].ids.is_empty());
    assert_eq!(c.secrets.ike[1].secret(), &[0, 1, 2, 0xff]);
    assert_eq!(c.secrets.ike[1].ids, vec![id("C=CH, O=esprit, CN=gw")]);
    assert_eq!(c.secrets.ike[2].secret(), b"plain");
    assert!(c.secrets.ike[2].ids.is_empty());

    for (bad, needle) in [
        ("0xabc", "hex"),
        ("0xzz", "hex"),
        ("0s@@@@", "base64"),
        ("0sA", "base64"),
        ("", "empty"),
        ("0x", "hex"),
    ] {
        let text = format!("[[secrets.ike]]\nsecret = \"{bad}\"\n");
        let e = err(&text);
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("secrets.ike[0].secret"), "{e}");
        assert!(e.message.contains(needle), "{e}");
        if bad.len() > 2 {
            assert!(!e.to_string().contains(bad), "the secret leaked: {e}");
        }
    }
    assert_err(
        "[[secrets.ike]]\nids = [\"a\"]\n",
        1,
        "secrets.ike[0].secret",
        "missing",
    );
    assert_err(
        "[[secrets.ike]]\nids = [\"a\", \"%any\"]\nsecret = \"x\"\n",
        2,
        "secrets.ike[0].ids[1]",
        "%any cannot be mixed",
    );
    assert_err(
        "[[secrets.ike]]\nsecret = 1234\n",
        2,
        "secrets.ike[0].secret",
        "expected a string",
    );
}

#[test]
fn secrets_are_never_shown() {
    let c = ok(EXAMPLE);
    let debug = format!("{c:?}");
    assert!(!debug.contains("correct horse"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let s = IkeSecret::new(vec![], b"hunter2".to_vec());
    assert!(!format!("{s:?}").contains("hunter2"));
    // A syntax error on the secret's line does not repeat it.
    let e = err("[[secrets.ike]]\nsecret = \"hunter2\" trailing\n");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn psk_best_match() {
    let s = Secrets {
        ike: vec![
            IkeSecret::new(vec![], b"any".to_vec()),
            IkeSecret::new(vec![id("a")], b"a".to_vec()),
            IkeSecret::new(vec![id("a"), id("b")], b"ab".to_vec()),
            IkeSecret::new(vec![id("c")], b"c".to_vec()),
            IkeSecret::new(vec![id("c")], b"c2".to_vec()),
        ],
    };
    assert_eq!(s.psk_for(&id("a"), &id("b")), Some(&b"ab"[..]));
    assert_eq!(s.psk_for(&id("b"), &id("a")), Some(&b"ab"[..]));
    assert_eq!(s.psk_for(&id("a"), &id("x")), Some(&b"a"[..]));
    assert_eq!(s.psk_for(&id("x"), &id("c")), Some(&b"c"[..]));
    assert_eq!(s.psk_for(&id("x"), &id("y")), Some(&b"any"[..]));
    assert_eq!(s.psk_for(&id("A"), &id("B")), Some(&b"ab"[..]));
    let only_named = Secrets {
        ike: vec![IkeSecret::new(vec![id("a")], b"a".to_vec())],
    };
    assert_eq!(only_named.psk_for(&id("x"), &id("y")), None);
    assert_eq!(Secrets::default().psk_for(&id("a"), &id("b")), None);
}

#[test]
fn pubkey_files_are_found_next_to_the_config() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    for f in ["certs/a.pem", "certs/inter.pem", "a.key", "ca.pem"] {
        std::fs::write(dir.join(f), "-----BEGIN X-----\n").unwrap();
    }
    let text = "[connections.pk]\nremote_addrs = [\"192.0.2.1\"]\n\
        local = { auth = \"pubkey\", id = \"CN=gwA\", certs = [\"certs/a.pem\", \"certs/inter.pem\"], key = \"a.key\" }\n\
        remote = { auth = \"pubkey\", id = \"CN=gwB\", cacerts = [\"ca.pem\"] }\n";
    let path = dir.join("esprit-ike.toml");
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap();
    let k = &c.connections[0];
    assert_eq!(
        k.local.certs,
        vec![dir.join("certs/a.pem"), dir.join("certs/inter.pem")]
    );
    assert_eq!(k.local.key, Some(dir.join("a.key")));
    assert_eq!(k.local.auth, AuthMethod::Pubkey);
    assert_eq!(k.local.id, Some(id("CN=gwA")));
    assert_eq!(k.remote.cacerts, vec![dir.join("ca.pem")]);
    assert!(c.secrets.ike.is_empty());

    // A missing file is named by its key and resolved path.
    let text = text.replace("ca.pem", "missing-ca.pem");
    std::fs::write(&path, &text).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(e.key.as_deref(), Some("connections.pk.remote.cacerts[0]"));
    assert!(e
        .message
        .contains(&dir.join("missing-ca.pem").display().to_string()));
    // A directory is not a file.
    let text = text.replace("missing-ca.pem", "certs");
    std::fs::write(&path, &text).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(e.message.contains("is a directory"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_errors() {
    let e = Config::load(Path::new("/nonexistent/esprit-ike.toml")).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e
        .to_string()
        .starts_with("/nonexistent/esprit-ike.toml: cannot read"));
    let dir = temp_dir();
    let path = dir.join("bin.toml");
    std::fs::write(&path, [0x66, 0xff, 0xfe]).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(e.message.contains("not UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations() {
    for (s, secs, nanos) in [
        ("10s", 10, 0),
        ("5m", 300, 0),
        ("4h", 14400, 0),
        ("1d", 86400, 0),
        ("3600", 3600, 0),
        ("0", 0, 0),
        (" 7 s ", 7, 0),
        ("1.5s", 1, 500_000_000),
        (".25", 0, 250_000_000),
        ("0.5m", 30, 0),
        ("4294967295", 4_294_967_295, 0),
    ] {
        assert_eq!(parse_duration(s), Ok(Duration::new(secs, nanos)), "{s}");
    }
    for s in [
        "",
        "s",
        "-1",
        "1e3",
        "10 x",
        "1w",
        "1.",
        "1..5",
        "1.2.3",
        "10ss",
        "4294967296",
        "49711d",
        "99999999999999999999999999999999999999999999",
        "1.0000000001",
    ] {
        assert!(parse_duration(s).is_err(), "{s}");
    }
    let c = ok(&conn("dpd_delay = 2.5\nrekey_time = 0\n", ""));
    assert_eq!(
        c.connections[0].dpd_delay,
        Some(Duration::from_millis(2500))
    );
    assert_eq!(c.connections[0].rekey_time, None);
    // Nothing to rekey or reauthenticate: no over_time.
    assert_eq!(c.connections[0].over_time, Duration::ZERO);
    // Default random times stay below what they are subtracted from.
    let c = ok(&conn(
        "rekey_time = \"1h\"\nover_time = \"2h\"\n",
        "rekey_time = \"10m\"\nlife_time = \"1h\"\nrekey_bytes = 100\nlife_bytes = 300\n",
    ));
    let k = &c.connections[0];
    assert_eq!(
        (k.over_time, k.rand_time),
        (Duration::from_secs(7200), Duration::from_secs(360))
    );
    let ch = &k.children[0];
    assert_eq!(ch.rand_time, Duration::from_secs(60));
    assert_eq!(ch.rand_bytes, 10);
    // A child that never rekeys and has no life_time never expires.
    let c = ok(&conn("", "rekey_time = \"0\"\n"));
    let ch = &c.connections[0].children[0];
    assert_eq!(
        (ch.rekey_time, ch.life_time, ch.rand_time),
        (None, None, Duration::ZERO)
    );
}

#[test]
fn sizes() {
    for (s, n) in [
        ("0", 0),
        ("1000", 1000),
        ("1K", 1024),
        ("1k", 1024),
        ("500M", 500 << 20),
        ("1G", 1 << 30),
        ("16 G", 16 << 30),
        ("17179869183G", 17_179_869_183u64 << 30),
    ] {
        assert_eq!(parse_size(s), Ok(n), "{s}");
    }
    for s in [
        "",
        "G",
        "1T",
        "-1",
        "1.5G",
        "17179869184G",
        "99999999999999999999",
    ] {
        assert!(parse_size(s).is_err(), "{s}");
    }
    let c = ok(&conn("", "rekey_bytes = \"1G\"\nrekey_packets = 1000\n"));
    let ch = &c.connections[0].children[0];
    assert_eq!(
        (ch.rekey_bytes, ch.life_bytes, ch.rand_bytes),
        (1 << 30, (1 << 30) + (1 << 30) / 10, (1 << 30) / 10)
    );
    assert_eq!(
        (ch.rekey_packets, ch.life_packets, ch.rand_packets),
        (1000, 1100, 100)
    );
}

#[test]
fn traffic_selectors() {
    let any = (0, 65535);
    let cases: &[(&str, TsAddr, u8, (u16, u16))] = &[
        (
            "10.201.1.0/24",
            TsAddr::Prefix(ip("10.201.1.0"), 24),
            0,
            any,
        ),
        ("10.0.0.1", TsAddr::Prefix(ip("10.0.0.1"), 32), 0, any),
        ("fd00::/64", TsAddr::Prefix(ip("fd00::"), 64), 0, any),
        ("fd00::1", TsAddr::Prefix(ip("fd00::1"), 128), 0, any),
        ("0.0.0.0/0", TsAddr::Prefix(ip("0.0.0.0"), 0), 0, any),
        ("::/0", TsAddr::Prefix(ip("::"), 0), 0, any),
        ("dynamic", TsAddr::Dynamic, 0, any),
        (
            "10.0.0.0/8[tcp/443]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            6,
            (443, 443),
        ),
        (
            "10.0.0.0/8[udp]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            17,
            any,
        ),
        ("dynamic[icmp]", TsAddr::Dynamic, 1, any),
        ("[udp]", TsAddr::Dynamic, 17, any),
        (
            "10.0.0.0/8[17/53]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            17,
            (53, 53),
        ),
        (
            "10.0.0.0/8[tcp/1000-2000]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            6,
            (1000, 2000),
        ),
        (
            "10.0.0.0/8[tcp/%any]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            6,
            any,
        ),
        (
            "10.0.0.0/8[icmp/8]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            1,
            (0x800, 0x8ff),
        ),
        (
            "10.0.0.0/8[icmp/0]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            1,
            (0, 0xff),
        ),
        (
            "10.0.0.0/8[icmp/769]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            1,
            (769, 769),
        ),
        (
            "fd00::/16[ipv6-icmp/135]",
            TsAddr::Prefix(ip("fd00::"), 16),
            58,
            (0x8700, 0x87ff),
        ),
        (
            "fd00::/16[sctp/9]",
            TsAddr::Prefix(ip("fd00::"), 16),
            132,
            (9, 9),
        ),
        (
            "10.0.0.0/8[gre]",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            47,
            any,
        ),
        (
            " 10.0.0.0 / 8 [ TCP / 22 ] ",
            TsAddr::Prefix(ip("10.0.0.0"), 8),
            6,
            (22, 22),
        ),
    ];
    for (s, addr, protocol, ports) in cases {
        let t = TsConfig::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            t,
            TsConfig {
                addr: *addr,
                protocol: *protocol,
                ports: *ports
            },
            "{s}"
        );
        // Display gives strongSwan syntax that reads back the same.
        assert_eq!(ts(&t.to_string()), t, "{s} -> {t}");
    }
    assert_eq!(ts("10.0.0.0/8[tcp/443]").to_string(), "10.0.0.0/8[tcp/443]");
    assert_eq!(ts("[17/53]").to_string(), "dynamic[udp/53]");
    assert_eq!(ts("fd00::/64").to_string(), "fd00::/64");

    for (s, needle) in [
        ("10.0.0.1/24", "host bits"),
        ("10.0.0.0/33", "0..=32"),
        ("fd00::/129", "0..=128"),
        ("10.0.0.0/x", "0..=32"),
        ("gw.example", "expected an address"),
        ("10.0.0.1-10.0.0.9", "ranges are not supported"),
        ("%any", "0.0.0.0/0"),
        ("10.0.0.0/8[tcp", "[protocol/port]"),
        ("10.0.0.0/8[tcp]]", "[protocol/port]"),
        ("10.0.0.0/8[foo]", "unknown protocol 'foo'"),
        ("10.0.0.0/8[256]", "unknown protocol"),
        ("10.0.0.0/8[/443]", "needs a protocol"),
        ("10.0.0.0/8[gre/1]", "has no ports"),
        ("10.0.0.0/8[tcp/2000-1000]", "empty"),
        ("10.0.0.0/8[tcp/70000]", "0..=65535"),
        ("10.0.0.0/8[tcp/https]", "port number"),
        ("10.0.0.0/8[tcp/0]", "port 0"),
        ("10.0.0.0/8[tcp/opaque]", "OPAQUE"),
    ] {
        let e = TsConfig::parse(s).unwrap_err();
        assert!(e.contains(needle), "{s}: {e}");
    }
}

#[test]
fn ts_ranges() {
    assert_eq!(
        ts("10.201.1.0/24").range(),
        Some((ip("10.201.1.0"), ip("10.201.1.255")))
    );
    assert_eq!(
        ts("0.0.0.0/0").range(),
        Some((ip("0.0.0.0"), ip("255.255.255.255")))
    );
    assert_eq!(
        ts("10.0.0.1").range(),
        Some((ip("10.0.0.1"), ip("10.0.0.1")))
    );
    assert_eq!(
        ts("fd00::/64").range(),
        Some((ip("fd00::"), ip("fd00::ffff:ffff:ffff:ffff")))
    );
    assert_eq!(
        ts("::/0").range(),
        Some((ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
    );
    assert_eq!(TsConfig::dynamic().range(), None);
}

#[test]
fn proposals_and_aliases() {
    let ike = |s: &str| IkeProposal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let esp = |s: &str| EspProposal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let p = ike("aes128gcm16-prfsha256-x25519");
    assert_eq!(p.to_string(), "aes128gcm16-prfsha256-x25519");
    assert_eq!(ike("aes128gcm128-sha256-curve25519"), p);
    assert_eq!(ike("aes128gcm-prfsha256-x25519"), p);
    assert_eq!(ike("AES128GCM16-PRFSHA256-X25519"), p);
    assert_eq!(
        ike("aes256gcm128-aes128gcm16-sha2_512-sha384-prfsha384-modp2048-ecp256-ecp256"),
        IkeProposal {
            encr: vec![EncrAlg::AesGcm16_256, EncrAlg::AesGcm16_128],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha512, PrfAlg::HmacSha384],
            dh: vec![DhGroup::Modp2048, DhGroup::Ecp256],
            addke: Default::default(),
        }
    );
    assert_eq!(ike("default"), IkeProposal::defaults());
    assert_eq!(
        IkeProposal::defaults().to_string(),
        "aes128gcm16-aes256gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-modp2048"
    );
    for s in [
        "aes128gcm16-prfsha256-x25519",
        "aes256gcm16-prfsha512-ecp384-modp2048",
    ] {
        assert_eq!(ike(s).to_string(), s);
        assert_eq!(ike(&ike(s).to_string()), ike(s));
    }

    assert_eq!(
        esp("aes128gcm16"),
        EspProposal {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            dh: vec![],
            esn: vec![false],
            addke: Default::default(),
        }
    );
    assert_eq!(esp("aes256gcm16-x25519").dh, vec![DhGroup::X25519]);
    assert_eq!(esp("aes256gcm16-esn").esn, vec![true]);
    assert_eq!(esp("aes256gcm16-noesn").esn, vec![false]);
    assert_eq!(esp("aes256gcm16-esn-noesn").esn, vec![true, false]);
    assert_eq!(esp("aes256gcm16-noesn-esn").esn, vec![false, true]);
    assert_eq!(esp("default"), EspProposal::defaults());
    for s in [
        "aes128gcm16",
        "aes256gcm16-x25519",
        "aes128gcm16-aes256gcm16-ecp256-esn",
        "aes128gcm16-esn-noesn",
    ] {
        assert_eq!(esp(s).to_string(), s);
    }

    for (s, needle) in [
        ("", "empty proposal"),
        ("aes128gcm16--x25519", "empty algorithm name"),
        (
            "aes128gcm16-prfsha256-ecp999",
            "unknown key exchange 'ecp999' (expected one of x25519, ecp256, ecp384, ecp521, \
             modp2048, modp3072, modp4096)",
        ),
        (
            "aes128gcm16-prfsha256-modp6144",
            "unsupported key exchange 'modp6144'",
        ),
        (
            "aes128gcm16-prfsha256-x25519-ke1_x448",
            "unsupported additional key exchange 'ke1_x448'",
        ),
        (
            "aes128gcm16-prfsha1-x25519",
            "unsupported PRF 'prfsha1' (expected one of prfsha256, prfsha384, prfsha512)",
        ),
        ("aes128gcm16-sha1-x25519", "integrity algorithm 'sha1'"),
        ("aes128gcm8-prfsha256-x25519", "16-octet ICV"),
        ("aes192gcm16-prfsha256-x25519", "128- or 256-bit key"),
        (
            "aes128-prfsha256-x25519",
            "has AES-CBC (aes128) but no integrity algorithm",
        ),
        (
            "aes192-sha256-x25519",
            "unsupported encryption algorithm 'aes192'",
        ),
        (
            "3des-prfsha256-x25519",
            "unsupported encryption algorithm '3des'",
        ),
        (
            "chacha20-prfsha256-x25519",
            "unsupported encryption algorithm 'chacha20'",
        ),
        ("aes128gcm16-prfsha256-x25519-esn", "only to ESP"),
        ("aes128gcm16-default", "must stand alone"),
        (
            "aes128gcm16-prfsha256-x25519-foo",
            "unknown algorithm 'foo'",
        ),
    ] {
        let e = IkeProposal::parse(s).unwrap_err();
        assert!(e.contains(needle), "{s}: {e}");
    }
    for (s, needle) in [
        ("x25519", "has no encryption algorithm"),
        ("esn", "has no encryption algorithm"),
        (
            "aes128gcm16-sha256",
            "names an integrity algorithm but only AEAD ciphers",
        ),
        ("aes128gcm16-prfsha256", "ESP proposals have no PRF"),
        ("aes128", "has AES-CBC (aes128) but no integrity algorithm"),
        ("aes128-sha512", "pairs aes128 only with sha256"),
        ("aes256-md5", "unsupported integrity algorithm 'md5'"),
        ("aes128gcm16-ecp224", "unsupported key exchange 'ecp224'"),
        ("aes128gcm16-bar", "unknown algorithm 'bar'"),
    ] {
        let e = EspProposal::parse(s).unwrap_err();
        assert!(e.contains(needle), "{s}: {e}");
    }
}

#[test]
fn secret_encodings() {
    assert_eq!(decode_secret("abc").unwrap().as_slice(), b"abc");
    assert_eq!(decode_secret("0x0A0b").unwrap().as_slice(), &[10, 11]);
    assert_eq!(decode_secret("0X0A0b").unwrap().as_slice(), &[10, 11]);
    assert_eq!(decode_secret("0sTWFu").unwrap().as_slice(), b"Man");
    assert_eq!(decode_secret("0sTWE=").unwrap().as_slice(), b"Ma");
    assert_eq!(decode_secret("0sTWE").unwrap().as_slice(), b"Ma");
    assert_eq!(decode_secret("0sTQ==").unwrap().as_slice(), b"M");
    assert!(decode_secret("0sTQ===").is_err());
    assert!(decode_secret("0s").is_err());
    assert!(decode_secret("0x0").is_err());
    assert!(decode_secret("").is_err());
}

/// Pieces the structured proptest assembles configurations from.
fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9%./:\\[\\]-]{0,24}",
        Just("aes128gcm16-prfsha256-x25519".to_string()),
        Just("10.0.0.0/8[tcp/443]".to_string()),
        Just("0x".to_string()),
        Just("4h".to_string()),
    ]
}

proptest! {
    #[test]
    fn no_text_panics_the_parser(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn no_toml_like_text_panics_the_parser(text in "[\\[\\]a-z_.=\" \n0-9{},%-]{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn no_value_panics_the_parser(
        key in prop::sample::select(vec![
            "local_addrs", "remote_addrs", "proposals", "start_action", "dpd_delay",
            "rekey_time", "local_ts", "remote_ts", "esp_proposals", "secret", "ids",
            "\"gwA\"", "\"psk\"", "\"10s\"", "\"1h\"",
        ]),
        value in value_strategy(),
        as_list in any::<bool>(),
    ) {
        let quoted = format!("{value:?}");
        let replacement = if as_list { format!("[{quoted}, {quoted}]") } else { quoted };
        let text = EXAMPLE
            .lines()
            .map(|line| {
                if line.starts_with(&format!("{key} =")) {
                    format!("{key} = {replacement}")
                } else {
                    line.replace(key, &replacement)
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let _ = parse(&text);
    }

    #[test]
    fn no_string_panics_the_value_parsers(s in any::<String>()) {
        let _ = TsConfig::parse(&s);
        let _ = IkeProposal::parse(&s);
        let _ = EspProposal::parse(&s);
        let _ = parse_duration(&s);
        let _ = parse_size(&s);
        let _ = decode_secret(&s);
    }

    #[test]
    fn ts_display_round_trips(
        v4 in any::<u32>(),
        len in 0u8..=32,
        protocol in prop::sample::select(vec![0u8, 1, 6, 17, 58, 132]),
        lo in any::<u16>(),
        span in any::<u16>(),
    ) {
        let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        let net = std::net::Ipv4Addr::from(v4 & !host);
        let hi = lo.saturating_add(span);
        let ports = match protocol {
            0 => ANY_PORTS,
            1 | 58 => (lo, hi),
            _ => (lo.max(1), hi.max(1)),
        };
        let t = TsConfig { addr: TsAddr::Prefix(IpAddr::V4(net), len), protocol, ports };
        prop_assert_eq!(TsConfig::parse(&t.to_string()), Ok(t));
    }

    #[test]
    fn durations_read_back(secs in 0u64..=u64::from(u32::MAX)) {
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(Duration::from_secs(secs)));
        if secs % 60 == 0 {
            prop_assert_eq!(parse_duration(&format!("{}m", secs / 60)), Ok(Duration::from_secs(secs)));
        }
    }
}

#[test]
fn metrics_listen_is_off_by_default_and_checked_at_load() {
    assert_eq!(ok(&conn("", "")).metrics, None);
    let c = ok("[metrics]\nlisten = \"127.0.0.1:9662\"\n");
    assert_eq!(c.metrics, Some("127.0.0.1:9662".parse().unwrap()));
    assert_err(
        "[metrics]\nlisten = \"localhost\"\n",
        2,
        "metrics.listen",
        "expected an address and port",
    );
    assert_err(
        "[metrics]\nlisten = 9662\n",
        2,
        "metrics.listen",
        "address and port",
    );
    assert_err("[metrics]\nport = 1\n", 2, "metrics.port", "unknown key");
}

#[test]
fn every_listed_keyword_parses_where_it_is_allowed() {
    use super::proposal_keywords;
    let algs = proposal_keywords();
    for kind in [
        "encryption",
        "integrity",
        "prf",
        "key-exchange",
        "additional-key-exchange",
        "esn",
    ] {
        assert!(algs.iter().any(|a| a.kind == kind), "no {kind}");
    }
    for a in &algs {
        for kw in &a.keywords {
            let (ike, esp) = match a.kind {
                "encryption" if a.name == "aes128" || a.name == "aes256" => (
                    format!("{kw}-sha256-prfsha256-x25519"),
                    format!("{kw}-sha256"),
                ),
                "encryption" => (format!("{kw}-prfsha256-x25519"), kw.to_string()),
                "integrity" => (
                    format!("aes256-{kw}-prfsha256-x25519"),
                    format!("aes256-{kw}"),
                ),
                "prf" => (format!("aes128gcm16-{kw}-x25519"), String::new()),
                "key-exchange" => (
                    format!("aes128gcm16-prfsha256-{kw}"),
                    format!("aes128gcm16-{kw}"),
                ),
                "additional-key-exchange" => (
                    format!("aes128gcm16-prfsha256-x25519-{kw}"),
                    format!("aes128gcm16-x25519-{kw}"),
                ),
                _ => (String::new(), format!("aes128gcm16-{kw}")),
            };
            assert_eq!(IkeProposal::parse(&ike).is_ok(), a.ike, "IKE {ike}");
            assert_eq!(EspProposal::parse(&esp).is_ok(), a.esp, "ESP {esp}");
        }
    }
}

#[test]
fn cbc_and_chacha_proposals() {
    use crate::ike::algorithms::IntegAlg as I;
    let ike = |s: &str| IkeProposal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let esp = |s: &str| EspProposal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    // strongSwan's reading: the integrity keyword is also the PRF when none is written.
    assert_eq!(
        ike("aes256-sha256-modp2048"),
        IkeProposal {
            encr: vec![EncrAlg::AesCbc256],
            integ: vec![I::HmacSha256_128],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Modp2048],
            addke: Default::default(),
        }
    );
    // An explicit PRF is the PRF; the integrity keywords stay integrity only.
    assert_eq!(
        ike("aes128-aes256cbc-sha512-sha2_384-prfsha256-ecp521-x25519"),
        IkeProposal {
            encr: vec![EncrAlg::AesCbc128, EncrAlg::AesCbc256],
            integ: vec![I::HmacSha512_256, I::HmacSha384_192],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Ecp521, DhGroup::X25519],
            addke: Default::default(),
        }
    );
    // AEAD and AES-CBC in one proposal: the integrity keyword serves both.
    assert_eq!(
        ike("chacha20poly1305-aes256-sha384-modp3072"),
        IkeProposal {
            encr: vec![EncrAlg::ChaCha20Poly1305, EncrAlg::AesCbc256],
            integ: vec![I::HmacSha384_192],
            prf: vec![PrfAlg::HmacSha384],
            dh: vec![DhGroup::Modp3072],
            addke: Default::default(),
        }
    );
    assert_eq!(
        ike("chacha20poly1305-prfsha256-modp4096").integ,
        Vec::<I>::new()
    );
    for s in [
        "aes256-sha256-prfsha256-modp2048",
        "chacha20poly1305-prfsha512-ecp521",
        "aes128-aes256-sha256-sha512-prfsha384-x25519-modp3072",
    ] {
        assert_eq!(ike(s).to_string(), s);
        assert_eq!(ike(&ike(s).to_string()), ike(s));
    }
    assert_eq!(ike("aes-sha256-x25519").encr, vec![EncrAlg::AesCbc128]);

    assert_eq!(
        esp("aes256-sha512-sha256-esn"),
        EspProposal {
            encr: vec![EncrAlg::AesCbc256],
            integ: vec![I::HmacSha512_256, I::HmacSha256_128],
            dh: vec![],
            esn: vec![true],
            addke: Default::default(),
        }
    );
    assert_eq!(
        esp("aes128-aes256-sha256").encr,
        vec![EncrAlg::AesCbc128, EncrAlg::AesCbc256]
    );
    assert_eq!(
        esp("chacha20poly1305-ecp521"),
        EspProposal {
            encr: vec![EncrAlg::ChaCha20Poly1305],
            integ: vec![],
            dh: vec![DhGroup::Ecp521],
            esn: vec![false],
            addke: Default::default(),
        }
    );
    for s in [
        "aes256-sha384",
        "chacha20poly1305",
        "aes128-sha256-modp3072-esn",
    ] {
        assert_eq!(esp(s).to_string(), s);
    }
}

#[test]
fn additional_key_exchange_keywords() {
    use crate::ike::crypto::mlkem::MlKem;
    let ike = |s: &str| IkeProposal::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let p = ike("aes256gcm16-prfsha384-x25519-ke1_mlkem768");
    assert_eq!(p.dh, vec![DhGroup::X25519]);
    assert_eq!(p.addke[0], vec![Some(MlKem::MlKem768)]);
    assert!(p.addke[1..].iter().all(Vec::is_empty));
    assert_eq!(p.to_string(), "aes256gcm16-prfsha384-x25519-ke1_mlkem768");
    let q = ike("aes256gcm16-prfsha384-ecp384-ke2_mlkem1024-ke1_mlkem512-ke1_none");
    assert_eq!(q.addke[0], vec![Some(MlKem::MlKem512), None]);
    assert_eq!(q.addke[1], vec![Some(MlKem::MlKem1024)]);
    assert_eq!(
        q.to_string(),
        "aes256gcm16-prfsha384-ecp384-ke1_mlkem512-ke1_none-ke2_mlkem1024"
    );
    assert_eq!(ike(&q.to_string()), q);
    assert_eq!(ike("AES256GCM16-PRFSHA384-X25519-KE1_MLKEM768"), p);
    for (bad, want) in [
        ("aes256gcm16-prfsha384-mlkem768", "additional key exchange"),
        (
            "aes256gcm16-prfsha384-x25519-ke8_mlkem768",
            "unsupported additional key exchange",
        ),
        (
            "aes256gcm16-prfsha384-x25519-ke1_ecp256",
            "unsupported additional key exchange",
        ),
        (
            "aes256gcm16-prfsha384-ke1_mlkem768",
            "no key exchange method",
        ),
    ] {
        let e = IkeProposal::parse(bad).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
    let esp = EspProposal::parse("aes256gcm16-x25519-ke1_mlkem768-esn").unwrap();
    assert_eq!(esp.addke[0], vec![Some(MlKem::MlKem768)]);
    assert_eq!(esp.to_string(), "aes256gcm16-x25519-ke1_mlkem768-esn");
    let e = EspProposal::parse("aes256gcm16-ke1_mlkem768").unwrap_err();
    assert!(e.contains("no key exchange method (PFS)"), "{e}");
    let listed = proposal_keywords();
    let k = listed
        .iter()
        .find(|k| k.name == "mlkem1024")
        .expect("list-algs shows ML-KEM");
    assert_eq!(k.iana_id, 37);
    assert!(k.keywords.contains(&"ke1_mlkem1024") && k.keywords.contains(&"ke7_mlkem1024"));
    assert!(k.ike && k.esp);
}
