//! esprit-ike under an IKE_SA_INIT flood, end to end on loopback (no namespaces, but root: the
//! daemons lock their memory with `mlockall`): a flood client in this test (real initiators
//! from the control library, over UDP) sends IKE_SA_INIT requests from eight source addresses
//! (127.0.0.10-17), answers every COOKIE demand and never sends IKE_AUTH. During the flood the
//! responder's half-open IKE SAs (as `espctl ike stats` shows them) stay within its limits,
//! its memory (VmRSS) stays bounded, its log stays short, and a legitimate peer (a second
//! esprit-ike) still establishes.

use control::config::Config;
use control::daemon::params::connection_params;
use control::ike::message::consts::exchange;
use control::ike::message::Header;
use control::ike::rng::SeededRandom;
use control::ike::session::{Endpoint, EndpointSettings};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Flood sources, and the limits the responder is configured with.
const SOURCES: u8 = 8;
const PER_SOURCE: u64 = 3;
const TOTAL: u64 = 50;

#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    name: &str,
    me: &str,
    remote_addrs: &str,
    port: u16,
    start: &str,
    lid: &str,
    rid: &str,
    daemon_extra: &str,
) -> PathBuf {
    let text = format!(
        r#"[daemon]
dataplane_socket = "{dir}/{name}-dp.sock"
socket = "{dir}/{name}-ike.sock"
port = {port}
port_nat_t = {natt}
retransmit_timeout = "1s"
{daemon_extra}

[connections.site]
local_addrs = ["{me}"]
remote_addrs = {remote_addrs}
remote_port = {port}
proposals = ["aes128gcm16-prfsha256-x25519"]
local = {{ auth = "psk", id = "{lid}" }}
remote = {{ auth = "psk", id = "{rid}" }}
start_action = "{start}"

[connections.site.children.net]
local_ts = ["10.{a}.0.0/16"]
remote_ts = ["10.{b}.0.0/16"]
esp_proposals = ["aes256gcm16"]

[[secrets.ike]]
ids = ["gwA", "gwB"]
secret = "loopback-flood-test-secret"
"#,
        dir = dir.display(),
        natt = port + 4000,
        a = if lid == "gwA" { 1 } else { 2 },
        b = if lid == "gwA" { 2 } else { 1 },
    );
    let p = dir.join(format!("{name}.toml"));
    // Holds a PSK: esprit-ike refuses it unless only its owner can read it.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    p
}

fn espctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--ike-socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start(cfg: &Path, log: &Path) -> Daemon {
    let err = std::fs::File::create(log).unwrap();
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_esprit-ike"))
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}

fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The flood: one initiator endpoint per source address, each over its own UDP socket.
/// Returns how many datagrams it sent.
fn flood(cfg: &Path, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let config = Config::load(cfg).unwrap();
    let params = connection_params(&config).unwrap();
    let mut atk: Vec<(UdpSocket, SocketAddr, Endpoint, u64)> = (0..SOURCES)
        .map(|i| {
            let ip: IpAddr = format!("127.0.0.{}", 10 + i).parse().unwrap();
            let sock = UdpSocket::bind((ip, 0)).unwrap();
            sock.set_nonblocking(true).unwrap();
            let local = sock.local_addr().unwrap();
            (
                sock,
                local,
                Endpoint::new(
                    vec![],
                    EndpointSettings::default(),
                    Box::new(SeededRandom::new(0)),
                ),
                0,
            )
        })
        .collect();
    let fresh = |local: SocketAddr, seed: u64| {
        let mut c = (*params[0]).clone();
        c.local_addrs = vec![local.ip()];
        Endpoint::new(
            vec![Arc::new(c)],
            EndpointSettings::default(),
            Box::new(SeededRandom::new(seed)),
        )
    };
    let mut seed = 1;
    for (_, local, e, _) in &mut atk {
        seed += 1;
        *e = fresh(*local, seed);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let now = Instant::now();
        for (sock, local, e, started) in &mut atk {
            // A fresh initiator now and then, so the flood client's own memory stays small.
            if *started >= 200 {
                seed += 1;
                *e = fresh(*local, seed);
                *started = 0;
            }
            for _ in 0..4 {
                e.initiate(now, "site", None, *local).unwrap();
                *started += 1;
            }
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                e.handle_datagram(now, *local, from, &buf[..n]);
            }
            while let Some(t) = e.poll_transmit() {
                let init =
                    Header::parse(&t.data).is_ok_and(|h| h.exchange == exchange::IKE_SA_INIT);
                if init && sock.send_to(&t.data, t.remote).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            while e.poll_event().is_some() {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
#[ignore = "needs root (esprit-ike locks its memory with mlockall): ./ci/test.sh runs it as root"]
fn half_open_limits_memory_and_a_legitimate_peer_under_a_cookie_answering_flood() {
    esprit_testkit::require_root();
    let dir =
        TempDir(std::env::temp_dir().join(format!("esprit-ike-flood-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    // 10000-14999 and its NAT-T port 14000-18999: apart from esprit_ike.rs's 20000-28999.
    let port = 10_000 + (std::process::id() % 5_000) as u16;
    let limits = format!(
        "cookie_threshold = 2\nhalf_open_limit = {TOTAL}\nhalf_open_limit_per_source = {PER_SOURCE}\nhalf_open_timeout = \"2s\""
    );
    // The responder answers anyone: that is what a flood can reach.
    let cb = config(
        &dir.0,
        "gwB",
        "127.0.0.2",
        r#"["%any"]"#,
        port,
        "none",
        "gwB",
        "gwA",
        &limits,
    );
    let ca = config(
        &dir.0,
        "gwA",
        "127.0.0.1",
        r#"["127.0.0.2"]"#,
        port,
        "start",
        "gwA",
        "gwB",
        "",
    );
    // The flood's initiators: the legitimate peer's connection, from other addresses.
    let cf = config(
        &dir.0,
        "flood",
        "127.0.0.1",
        r#"["127.0.0.2"]"#,
        port,
        "none",
        "gwA",
        "gwB",
        "",
    );
    let (la, lb) = (dir.0.join("a.log"), dir.0.join("b.log"));
    let (sa, sb) = (dir.0.join("gwA-ike.sock"), dir.0.join("gwB-ike.sock"));
    let b = start(&cb, &lb);
    let t0 = Instant::now();
    while !sb.exists() {
        assert!(t0.elapsed() < Duration::from_secs(5), "gwB did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss_before = vm_rss_kib(b.0.id());

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || flood(&cf, stop, sent))
    };
    // Let the flood fill the half-open slots, then start the legitimate peer.
    let stats = |s: &Path| espctl_json(s, &["ike", "stats"]);
    let mut max_half_open = 0;
    let mut max_rss = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        max_half_open = max_half_open.max(stats(&sb)["half_open"].as_u64().unwrap());
        max_rss = max_rss.max(vm_rss_kib(b.0.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let _a = start(&ca, &la);
    let mut established = false;
    while t0.elapsed() < Duration::from_secs(12) {
        max_half_open = max_half_open.max(stats(&sb)["half_open"].as_u64().unwrap());
        max_rss = max_rss.max(vm_rss_kib(b.0.id()));
        if !established && sa.exists() {
            let l = espctl_json(&sa, &["ike", "list", "--json"]);
            established = l.as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["state"] == "established"
                        && s["children"].as_array().is_some_and(|c| c.len() == 1)
                })
            });
        }
        if established && t0.elapsed() > Duration::from_secs(6) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let s = stats(&sb);
    let log_b = std::fs::read_to_string(&lb).unwrap();
    let sent = sent.load(Ordering::Relaxed);
    let report = format!(
        "sent {sent} IKE_SA_INIT datagrams; max half-open {max_half_open}; VmRSS {rss_before} -> max {max_rss} KiB\nstats: {s:#}\n--- gwB log\n{log_b}\n--- gwA log\n{}",
        std::fs::read_to_string(&la).unwrap_or_default()
    );
    eprintln!("{report}");
    assert!(
        established,
        "the legitimate peer did not establish\n{report}"
    );
    assert!(sent > 1000, "the flood was too weak to tell\n{report}");
    assert!(
        max_half_open <= u64::from(SOURCES) * PER_SOURCE + 1,
        "half-open IKE SAs over the limits\n{report}"
    );
    let dropped = &s["dropped"];
    assert!(s["cookies_sent"].as_u64().unwrap() > 0, "{report}");
    assert!(
        dropped["half_open_limit_source"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(s["half_open_expired"].as_u64().unwrap() > 0, "{report}");
    assert!(max_rss < rss_before + 32 * 1024, "memory grew\n{report}");
    // Thousands of refusals and expiries, a short log.
    let refused = log_b.matches("refused IKE_SA_INIT").count();
    let expired = log_b.matches("half-open IKE SA timed out").count();
    assert!(
        refused <= 10 && expired <= 10,
        "the log is not rate-limited\n{report}"
    );
    // A forged request outside the window at the live IKE SA: counted for it, shown by
    // `espctl ike list` in JSON and in the table.
    let list = espctl_json(&sb, &["ike", "list", "--json"]);
    let live = list
        .as_array()
        .and_then(|a| a.iter().find(|s| s["state"] == "established"))
        .expect("the established IKE SA on gwB")
        .clone();
    let spi = |k: &str| u64::from_str_radix(live[k].as_str().unwrap(), 16).unwrap();
    let forged = control::ike::message::encode_plain(
        &Header::new(
            spi("spi_i"),
            spi("spi_r"),
            exchange::INFORMATIONAL,
            control::ike::message::consts::flags::INITIATOR,
            1000,
        ),
        &[],
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&forged, ("127.0.0.2", port)).unwrap();
    let t1 = Instant::now();
    loop {
        let list = espctl_json(&sb, &["ike", "list", "--json"]);
        let n = list
            .as_array()
            .and_then(|a| a.iter().find(|s| s["spi_r"] == live["spi_r"]))
            .map(|s| s["dropped"]["message_id"].as_u64().unwrap());
        if n == Some(1) {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(3),
            "not counted: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_espctl"))
        .arg("--ike-socket")
        .arg(&sb)
        .args(["ike", "list"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("  dropped: message_id 1\n"), "{table}");
    drop(b);
}
