//! The `esprit-dataplane` daemon end to end: two daemons keyed by SA files carry ping (IPv4,
//! IPv6) and a TCP transfer checked by SHA-256 between two sites; SIGTERM prints and writes
//! counters; the gateway fails closed: with default routes and forwarding on, neither SIGKILL
//! nor SIGTERM lets site traffic leave the WAN in clear text (the XDP programs stay and drop),
//! a restart replaces the programs and carries traffic again, fail_mode = "open" detaches on
//! exit, and `--detach` removes the programs; the same tunnel rekeyed through the API to
//! AES-256-CBC/HMAC-SHA-512 one way and ChaCha20-Poly1305 the other carries ping and TCP. Needs
//! root.

mod common;
use common::{enter, two_sites, two_sites_q, udp_datagram, write_secret};
use dataplane::api::proto::EventLine;
use dataplane::api::{ApiError, Client, Request};
use esprit_testkit::{require_root, tmpdir};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY_AB: &str = "0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324";
const KEY_BA: &str = "0xa1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4";

/// One gateway's view of the tunnel: its addresses, its SPIs and keys, its selectors.
struct Tunnel<'a> {
    local: &'a str,
    remote: &'a str,
    out: (&'a str, &'a str),
    inb: (&'a str, &'a str),
    lts: &'a str,
    rts: &'a str,
}

fn sa_file(t: &Tunnel) -> String {
    let one = |(spi, key): (&str, &str), dir: &str| {
        format!(
            "[[sa]]\nspi = \"{spi}\"\ndirection = \"{dir}\"\nsuite = \"aes256gcm16\"\nkey = \"{key}\"\nlocal = \"{}\"\nremote = \"{}\"\nesn = true\nlocal_ts = {}\nremote_ts = {}\nsoft_packets = 200\n\n",
            t.local, t.remote, t.lts, t.rts
        )
    };
    one(t.out, "out") + &one(t.inb, "in")
}

struct Daemon {
    child: Child,
    ns: String,
}

fn start(ns: &str, dir: &Path, name: &str) -> Daemon {
    let cfg = dir.join(format!("{name}.toml"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_esprit-dataplane")])
        .arg("--config")
        .arg(&cfg)
        .arg("--json")
        .arg(dir.join(format!("{name}.json")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esprit-dataplane");
    let mut d = Daemon {
        child,
        ns: ns.to_string(),
    };
    // Ready once the API answers: the classifiers are attached first, the API opens after the
    // sockets are registered.
    let sock = dir.join(format!("{name}.sock"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(std::os::unix::net::UnixStream::connect(&sock).is_ok()
        && xdp_attached(ns, "wan0")
        && xdp_attached(ns, "lan0"))
    {
        if let Some(st) = d.child.try_wait().unwrap() {
            let mut err = String::new();
            d.child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("daemon in {ns} exited with {st}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "daemon in {ns} did not attach XDP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn signal(d: &Daemon, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn ping(ns: &str, dst: &str) -> (bool, String) {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "5", "-i", "0.2", "-W", "2", dst,
        ])
        .output()
        .expect("ping");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// The capability mask a locked-down daemon keeps besides what it needs: CAP_IPC_LOCK when it
/// cannot raise RLIMIT_MEMLOCK to unlimited (no CAP_SYS_RESOURCE here, as in some containers).
fn memlock_extra() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) }, 0);
    let eff = u64::from_str_radix(&status_field(std::process::id(), "CapEff"), 16).unwrap();
    if rl.rlim_max == libc::RLIM_INFINITY || eff & (1 << 24) != 0 {
        0
    } else {
        1 << 14
    }
}

fn write_configs(dir: &Path) {
    write_configs_n(dir, 1)
}

fn write_configs_n(dir: &Path, workers: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = |name: &str| {
        format!(
            "sa_file = \"{name}-sa.toml\"\napi_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\nring_size = 512\ncount = {workers}\n",
            dir.join(format!("{name}.sock")).display()
        )
    };
    std::fs::write(dir.join("gwA.toml"), cfg("gwA")).unwrap();
    std::fs::write(dir.join("gwB.toml"), cfg("gwB")).unwrap();
    write_sa_files(dir, ("0xa0000001", KEY_AB), ("0xb0000001", KEY_BA));
}

/// One gateway's configuration (one worker) with `extra` appended (routes, tunnels).
fn gateway_config(dir: &Path, name: &str, extra: &str) -> String {
    format!(
        "sa_file = \"{name}-sa.toml\"\napi_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\nring_size = 512\n{extra}",
        dir.join(format!("{name}.sock")).display()
    )
}

/// Both gateways' SA files for one tunnel: gwA sends with `ab` (SPI, key) and receives with
/// `ba`, gwB the other way round.
/// Site A's prefixes, as an SA file writes selectors.
const A_TS: &str = r#"["10.201.1.0/24", "fd00:201:1::/64"]"#;
/// Site B's prefixes.
const B_TS: &str = r#"["10.201.2.0/24", "fd00:201:2::/64"]"#;

fn write_sa_files(dir: &Path, ab: (&str, &str), ba: (&str, &str)) {
    let (a_ts, b_ts) = (A_TS, B_TS);
    write_secret(
        &dir.join("gwA-sa.toml"),
        &sa_file(&Tunnel {
            local: "10.200.0.1",
            remote: "10.200.0.2",
            out: ab,
            inb: ba,
            lts: a_ts,
            rts: b_ts,
        }),
    );
    write_secret(
        &dir.join("gwB-sa.toml"),
        &sa_file(&Tunnel {
            local: "10.200.0.2",
            remote: "10.200.0.1",
            out: ba,
            inb: ab,
            lts: b_ts,
            rts: a_ts,
        }),
    );
}

/// Sends `len` bytes over TCP from hA to hB; returns (sent digest, received digest, bytes).
fn tcp_transfer(ha: &str, hb: &str, len: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let hb = hb.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        enter(&hb);
        let l = TcpListener::bind("10.201.2.2:5001").unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    ctx.update(&buf[..n]);
                    total += n;
                }
                Err(e) => panic!("receive: {e} after {total} bytes"),
            }
        }
        (ctx.finish().as_ref().to_vec(), total)
    });
    rx.recv().unwrap();
    let ha = ha.to_string();
    let client = std::thread::spawn(move || {
        enter(&ha);
        let mut s =
            TcpStream::connect_timeout(&"10.201.2.2:5001".parse().unwrap(), Duration::from_secs(5))
                .unwrap();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut block = vec![0u8; 65536];
        let mut sent = 0usize;
        let mut x = 0x9e3779b9u32;
        while sent < len {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let n = block.len().min(len - sent);
            s.write_all(&block[..n]).unwrap();
            ctx.update(&block[..n]);
            sent += n;
        }
        ctx.finish().as_ref().to_vec()
    });
    let sent = client.join().unwrap();
    let (got, n) = server.join().unwrap();
    (sent, got, n)
}

/// Collects events from the daemon's API until two arrive or the daemon closes the stream.
fn subscribe(sock: &Path) -> std::thread::JoinHandle<Vec<EventLine>> {
    let c = Client::connect(sock).expect("connect to the API");
    std::thread::spawn(move || c.events().unwrap().take(2).map(|e| e.unwrap()).collect())
}

/// Every request of the API against a running daemon, including the refusals.
fn exercise_api(sock: &Path) {
    let mut c = Client::connect(sock).unwrap();
    let hello = c.call(Request::Hello).unwrap();
    assert_eq!(hello["version"], 1);
    let list = c.call(Request::SaList).unwrap();
    let sas = list.as_array().unwrap();
    assert_eq!(sas.len(), 2);
    assert!(
        !list.to_string().contains(&KEY_AB[2..12]),
        "keys never leave the daemon"
    );
    assert!(sas.iter().all(|s| s["packets"].as_u64().unwrap() > 100));
    let stats = c.call(Request::Stats).unwrap();
    assert!(stats["lan_to_wan"].as_u64().unwrap() > 100, "{stats}");
    let new_sa: Box<esprit_api::SaSpec> = serde_json::from_value(serde_json::json!({
        "spi": "0xc0000001", "direction": "in", "suite": "aes128gcm16",
        "key": "000102030405060708090a0b0c0d0e0f10111213",
        "local": "10.200.0.1", "remote": "10.200.0.9"
    }))
    .unwrap();
    c.call(Request::SaAdd { sa: new_sa.clone() }).unwrap();
    match c.call(Request::SaAdd { sa: new_sa.clone() }) {
        Err(ApiError::Refused { code, .. }) => assert_eq!(code, "exists"),
        other => panic!("duplicate add: {other:?}"),
    }
    c.call(Request::SaUpdate { sa: new_sa }).unwrap();
    assert_eq!(
        c.call(Request::SaList).unwrap().as_array().unwrap().len(),
        3
    );
    let del = Request::SaDelete {
        spi: esprit_api::Spi(0xc000_0001),
        direction: esprit_api::Direction::In,
        address: None,
    };
    assert_eq!(c.call(del.clone()).unwrap()["removed"], 1);
    match c.call(del) {
        Err(ApiError::Refused { code, .. }) => assert_eq!(code, "not_found"),
        other => panic!("second delete: {other:?}"),
    }
    let bad = serde_json::json!({"op": "sa.add", "sa": {"spi": 1, "direction": "sideways"}});
    match c.call_json(bad.as_object().unwrap().clone()) {
        Err(ApiError::Refused { code, message }) => {
            assert_eq!(code, "invalid_sa");
            assert!(
                message.contains("sa.direction") || message.contains("missing"),
                "{message}"
            );
        }
        other => panic!("invalid add: {other:?}"),
    }
    // Raw lines: a wrong version and garbage get clear refusals, and the connection survives.
    let mut raw = std::os::unix::net::UnixStream::connect(sock).unwrap();
    raw.write_all(b"{\"version\":9,\"id\":1,\"op\":\"hello\"}\nthis is not json\n{\"version\":1,\"id\":3,\"op\":\"hello\"}\n").unwrap();
    let mut r = std::io::BufReader::new(raw);
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut r, &mut l).unwrap();
        lines.push(serde_json::from_str::<serde_json::Value>(&l).unwrap());
    }
    assert_eq!(lines[0]["error"]["code"], "unsupported_version");
    assert_eq!(lines[1]["error"]["code"], "bad_request");
    assert_eq!(lines[2]["ok"], true);
    // The socket is for root only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Two sites and both gateways' daemons started with the default configuration and SA files
/// (as root): the namespaces, the configuration directory, gwA's and gwB's daemons.
fn two_gateways(tag: &str) -> (common::Namespaces, std::path::PathBuf, Daemon, Daemon) {
    require_root();
    let ns = two_sites(tag);
    let dir = tmpdir(tag);
    write_configs(&dir);
    let a = start(ns.name(1), &dir, "gwA");
    let b = start(ns.name(2), &dir, "gwB");
    (ns, dir, a, b)
}

/// Replaces, through the API, the tunnel's two SAs on gateway `me` ("A" or "B"): A to B with
/// AES-256-CBC and HMAC-SHA-512-256, B to A with ChaCha20-Poly1305, both with ESN.
fn rekey_to_cbc_and_chacha(sock: &Path, me: &str) {
    let (local, remote, lts, rts) = if me == "A" {
        ("10.200.0.1", "10.200.0.2", A_TS, B_TS)
    } else {
        ("10.200.0.2", "10.200.0.1", B_TS, A_TS)
    };
    let ts = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    let sa = |spi: &str, from_a: bool| {
        let dir = if from_a == (me == "A") { "out" } else { "in" };
        let mut v = serde_json::json!({
            "spi": spi, "direction": dir, "local": local, "remote": remote, "esn": true,
            "local_ts": ts(lts), "remote_ts": ts(rts)
        });
        if from_a {
            v["suite"] = "aes256cbc-sha512".into();
            v["key"] = KEY_AB[2..66].into();
            v["integ_key"] = "5c".repeat(64).into();
        } else {
            v["suite"] = "chacha20poly1305".into();
            v["key"] = KEY_BA.into();
        }
        Box::new(serde_json::from_value::<esprit_api::SaSpec>(v).unwrap())
    };
    let mut c = Client::connect(sock).unwrap();
    for (spi, from_a) in [("0xa0000001", true), ("0xb0000001", false)] {
        c.call(Request::SaUpdate {
            sa: sa(spi, from_a),
        })
        .unwrap_or_else(|e| panic!("gw{me} {spi}: {e:?}"));
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn two_daemons_carry_the_cbc_and_chacha_suites() {
    let (ns, dir, a, b) = two_gateways("ds");
    let (ha, hb) = (ns.name(0), ns.name(3));
    rekey_to_cbc_and_chacha(&dir.join("gwA.sock"), "A");
    rekey_to_cbc_and_chacha(&dir.join("gwB.sock"), "B");
    let v4 = ping(ha, "10.201.2.2");
    let v6 = ping(ha, "fd00:201:2::2");
    let (sent, got, n) = tcp_transfer(ha, hb, 4 << 20);
    let list = Client::connect(&dir.join("gwA.sock"))
        .unwrap()
        .call(Request::SaList)
        .unwrap();
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        assert!(d.child.wait().unwrap().success());
    }
    assert!(v4.0 && v6.0, "ping crosses: {v4:?} {v6:?}\n{list:#}");
    assert_eq!((n, sent), (4 << 20, got), "TCP arrives intact: {list:#}");
    let sas = list.as_array().unwrap();
    let mut suites: Vec<&str> = sas.iter().map(|s| s["suite"].as_str().unwrap()).collect();
    suites.sort();
    assert_eq!(suites, ["aes256cbc-sha512", "chacha20poly1305"], "{list:#}");
    for s in sas {
        assert!(s["packets"].as_u64().unwrap() > 100, "{s}");
        assert_eq!(s["drops"], serde_json::json!({}), "no drop at all: {s}");
    }
    assert!(
        !list.to_string().contains("5c5c5c"),
        "keys never leave the daemon"
    );
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn two_daemons_carry_ping_and_tcp() {
    require_root();
    let ns = two_sites("dm");
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    // Full 1500-byte MTUs: the gateways clamp TCP's MSS to the tunnel MTU. The hosts keep
    // their default offloads: their TCP checksums reach the gateway partial (pseudo-header
    // only) and the gateway completes them.
    let dir = tmpdir("dm");
    write_configs(&dir);
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    let events = subscribe(&dir.join("gwA.sock"));
    let v4 = ping(ha, "10.201.2.2");
    let v6 = ping(ha, "fd00:201:2::2");
    let (sent, got, n) = tcp_transfer(ha, hb, 20 << 20);
    // A 3,000-byte datagram without DF leaves hA as 1500-byte fragments that gwA fragments
    // again to fit the tunnel (before the DF pings below lower hA's path MTU).
    let (udp_sent, udp_got) = udp_datagram(ha, hb, 3000);
    // A DF packet larger than the tunnel MTU gets "fragmentation needed" with the tunnel MTU
    // (1500 - 20 outer - 16 ESP/IV - 16 ICV, to 16-byte blocks, - 2 trailer = 1438), and an
    // IPv6 one "packet too big".
    let big4 = Command::new("ip")
        .args([
            "netns",
            "exec",
            ha,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            "10.201.2.2",
        ])
        .output()
        .unwrap();
    let big4 =
        String::from_utf8_lossy(&big4.stdout).to_string() + &String::from_utf8_lossy(&big4.stderr);
    let big6 = Command::new("ip")
        .args([
            "netns",
            "exec",
            ha,
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "-s",
            "1452",
            "fd00:201:2::2",
        ])
        .output()
        .unwrap();
    let big6 =
        String::from_utf8_lossy(&big6.stdout).to_string() + &String::from_utf8_lossy(&big6.stderr);
    let pmtu6 = Command::new("ip")
        .args(["-n", ha, "-6", "route", "get", "fd00:201:2::2"])
        .output()
        .unwrap();
    let pmtu6 = String::from_utf8_lossy(&pmtu6.stdout).to_string();
    exercise_api(&dir.join("gwA.sock"));
    // Least privilege: once set up, only CAP_NET_ADMIN (12) is left, for the neighbour
    // requests (CAP_IPC_LOCK only where RLIMIT_MEMLOCK cannot be raised), in the bounding set
    // too, and no_new_privs is set; traffic flowed all the same.
    for d in [&a, &b] {
        let pid = d.child.id();
        let kept = format!("{:016x}", (1 << 12) | memlock_extra());
        for k in ["CapPrm", "CapEff", "CapBnd"] {
            assert_eq!(status_field(pid, k), kept, "{k} of {}", d.ns);
        }
        for k in ["CapInh", "CapAmb"] {
            assert_eq!(status_field(pid, k), "0000000000000000", "{k} of {}", d.ns);
        }
        assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    }
    for d in [&a, &b] {
        signal(d, "-TERM");
    }
    // The event stream ends when the daemon exits, so this cannot hang.
    let events = events.join().unwrap();
    let mut outputs = Vec::new();
    for d in [a, b] {
        let mut d = d;
        let st = d.child.wait().unwrap();
        let mut out = String::new();
        d.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        d.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(st.success(), "daemon in {} exited with {st}: {err}", d.ns);
        assert!(
            xdp_attached(&d.ns, "wan0") && xdp_attached(&d.ns, "lan0"),
            "fail closed: XDP stays attached after SIGTERM"
        );
        outputs.push(out);
    }
    assert!(v4.0, "IPv4 ping:\n{}", v4.1);
    assert!(v6.0, "IPv6 ping:\n{}", v6.1);
    assert_eq!(n, 20 << 20, "all bytes arrive");
    assert!(
        big4.contains("mtu = 1438"),
        "ICMP fragmentation needed with the tunnel MTU:\n{big4}"
    );
    assert!(
        pmtu6.contains("mtu 1438"),
        "ICMPv6 packet too big sets the path MTU:\n{big6}\n{pmtu6}"
    );
    assert_eq!(sent, got, "SHA-256 of the transfer matches");
    assert_eq!(
        udp_got.as_deref(),
        Some(&udp_sent[..]),
        "the 3,000-byte non-DF datagram arrives whole"
    );
    for name in ["gwA", "gwB"] {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let sas = j["sas"].as_array().unwrap();
        assert_eq!(sas.len(), 2);
        assert!(
            j["checksums_completed"].as_u64().unwrap() >= 1,
            "{name} completed the hosts' offloaded TCP checksums: {j}"
        );
        if name == "gwA" {
            assert!(
                j["mss_clamped"].as_u64().unwrap() >= 1,
                "the SYN was clamped: {j}"
            );
            assert!(
                j["icmp_sent"].as_u64().unwrap() >= 2,
                "two ICMP errors: {j}"
            );
            assert!(
                j["fragmented"].as_u64().unwrap() >= 2,
                "the datagram's big fragments were fragmented again: {j}"
            );
        }
        for sa in sas {
            // The SA carrying the 20 MiB (hA → hB: SPI 0xa0000001) sees at least one packet per
            // 1500 bytes; the other carries the ACKs, as few as the receiver's GRO makes them.
            let least = if sa["spi"] == "0xa0000001" {
                (20 << 20) / 1500
            } else {
                100
            };
            assert!(sa["packets"].as_u64().unwrap() > least, "{name}: {sa}");
            assert!(
                sa["drops"]
                    .as_object()
                    .unwrap()
                    .get("auth_failed")
                    .is_none(),
                "{name}: {sa}"
            );
        }
    }
    assert!(
        outputs[0].contains("0xa0000001 out"),
        "human report:\n{}",
        outputs[0]
    );
    let mut ev: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.event.clone(), e.direction.clone()))
        .collect();
    ev.sort();
    assert_eq!(
        ev,
        vec![
            ("soft_expire".to_string(), "in".to_string()),
            ("soft_expire".to_string(), "out".to_string())
        ],
        "soft_packets = 200 fires once per SA during the transfer"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

/// What an AF_PACKET capture on one interface saw: site-to-site packets in clear text
/// (IPv4 or IPv6 between 10.201.1.0/24 / fd00:201:1::/64 and 10.201.2.0/24 / fd00:201:2::/64,
/// either way) and ESP packets.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    clear: u32,
    esp: u32,
}

fn classify(frame: &[u8], seen: &mut Seen) {
    if frame.len() < 14 {
        return;
    }
    let site = |a: &[u8], v6: bool| -> Option<u8> {
        match (v6, a) {
            (false, [10, 201, s @ (1 | 2), _]) => Some(*s),
            (true, [0xfd, 0, 2, 1, 0, s @ (1 | 2), ..]) => Some(*s),
            _ => None,
        }
    };
    let l3 = &frame[14..];
    let (proto, src, dst) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if l3.len() >= 20 => (l3[9], site(&l3[12..16], false), site(&l3[16..20], false)),
        0x86dd if l3.len() >= 40 => (l3[6], site(&l3[8..24], true), site(&l3[24..40], true)),
        _ => return,
    };
    if proto == 50 {
        seen.esp += 1;
    }
    if matches!((src, dst), (Some(a), Some(b)) if a != b) {
        seen.clear += 1;
    }
}

/// Captures every frame sent or received on `dev` in `ns` until `stop` is set.
fn capture(
    ns: &str,
    dev: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        enter(&ns);
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is new and owned by nothing else.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let ifindex = dataplane::xdp::sys::ifindex(&dev).unwrap();
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: `tv` is a valid timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        tx.send(()).unwrap();
        let mut seen = Seen::default();
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n > 0 {
                classify(&buf[..n as usize], &mut seen);
            }
        }
        seen
    });
    rx.recv().expect("capture started");
    h
}

/// Pings `dst` from `ns` for about 3 s while capturing on gwA's WAN; returns (replies, seen,
/// ping's output).
fn ping_and_capture(ns: &str, dst: &str, wan_ns: &str) -> (u32, Seen, String) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cap = capture(wan_ns, "wan0", stop.clone());
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "15", "-i", "0.2", "-W", "1", dst,
        ])
        .output()
        .expect("ping");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = cap.join().unwrap();
    let replies = text
        .split(" received")
        .next()
        .and_then(|t| t.rsplit(", ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (replies, seen, text)
}

fn wait_exit(d: &mut Daemon) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "daemon in {} did not exit", d.ns);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn the_gateway_fails_closed_on_sigkill_and_sigterm_and_a_restart_recovers() {
    require_root();
    let ns = two_sites("fc");
    // two_sites gives the gateways default routes (via each other's WAN) and forwarding, so
    // the kernel would carry site traffic in clear text if it ever saw it.
    let (ha, gwa, gwb) = (ns.name(0), ns.name(1), ns.name(2));
    let dir = tmpdir("fc");
    write_configs(&dir);
    let mut a = start(gwa, &dir, "gwA");
    let mut b = start(gwb, &dir, "gwB");
    let (replies, seen, text) = ping_and_capture(ha, "10.201.2.2", gwa);
    assert!(replies >= 10, "the tunnel carries ping: {text}");
    assert_eq!(seen.clear, 0, "no clear text while forwarding: {seen:?}");

    signal(&a, "-KILL");
    wait_exit(&mut a);
    let (replies, seen, _) = ping_and_capture(ha, "10.201.2.2", gwa);
    assert_eq!(seen.clear, 0, "SIGKILL: no clear text on the WAN: {seen:?}");
    assert_eq!(replies, 0, "SIGKILL: nothing crosses: {seen:?}");
    assert!(
        xdp_attached(gwa, "lan0") && xdp_attached(gwa, "wan0"),
        "the classifiers outlive a SIGKILL"
    );

    // Manual keys restart their sequence numbers, which gwB's replay window refuses: gwB
    // restarts too (and replaces its own programs).
    signal(&b, "-TERM");
    assert!(wait_exit(&mut b).success());
    let _b = start(gwb, &dir, "gwB");
    let mut a = start(gwa, &dir, "gwA");
    let (replies, seen, text) = ping_and_capture(ha, "10.201.2.2", gwa);
    assert!(
        replies >= 10,
        "after a restart the tunnel carries ping again: {text}"
    );
    assert_eq!(seen.clear, 0, "{seen:?}");

    signal(&a, "-TERM");
    assert!(wait_exit(&mut a).success());
    assert!(
        xdp_attached(gwa, "lan0") && xdp_attached(gwa, "wan0"),
        "fail closed: SIGTERM leaves the classifiers"
    );
    let (replies, seen, _) = ping_and_capture(ha, "10.201.2.2", gwa);
    assert_eq!(seen.clear, 0, "SIGTERM: no clear text on the WAN: {seen:?}");
    assert_eq!(replies, 0, "SIGTERM: nothing crosses");

    // Decommissioning: --detach removes them, and the kernel forwards by its routes again.
    let out = Command::new("ip")
        .args(["netns", "exec", gwa, env!("CARGO_BIN_EXE_esprit-dataplane")])
        .arg("--detach")
        .arg("--config")
        .arg(dir.join("gwA.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "--detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!xdp_attached(gwa, "lan0") && !xdp_attached(gwa, "wan0"));
    let (_, seen, _) = ping_and_capture(ha, "10.201.2.2", gwa);
    assert!(
        seen.clear > 0,
        "without esprit the default route leaks: the capture would have seen it: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn fail_mode_open_keeps_cap_net_admin_and_detaches_on_exit() {
    require_root();
    let ns = two_sites("fo");
    let gwa = ns.name(1).to_string();
    let dir = tmpdir("fo");
    write_configs(&dir);
    let cfg = dir.join("gwA.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("fail_mode = \"open\"\napi_group = \"nogroup\"\n{text}"),
    )
    .unwrap();
    let mut a = start(&gwa, &dir, "gwA");
    // CAP_NET_ADMIN (12) for the neighbour requests and, here, for detaching on exit.
    let pid = a.child.id();
    let kept = format!("{:016x}", (1 << 12) | memlock_extra());
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(status_field(pid, k), kept, "{k}");
    }
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // api_group: the socket is born 0660 and the group's, so an unprivileged esprit-ike in it
    // can connect.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let md = std::fs::metadata(dir.join("gwA.sock")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o660);
        assert_eq!(md.gid(), 65534, "nogroup");
    }
    signal(&a, "-TERM");
    assert!(wait_exit(&mut a).success());
    assert!(
        !xdp_attached(&gwa, "wan0") && !xdp_attached(&gwa, "lan0"),
        "fail open: SIGTERM detaches the classifiers"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

#[test]
fn an_sa_file_others_can_read_is_refused() {
    let dir = tmpdir("mode");
    write_configs(&dir);
    let sa = dir.join("gwA-sa.toml");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sa, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
        .arg("--config")
        .arg(dir.join("gwA.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} holds secrets but is accessible by group or others (mode 0644): run `chmod 600 {}`",
            sa.display(),
            sa.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let dir = tmpdir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(
        &p,
        "[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\npoll = \"lazy\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_esprit-dataplane"))
        .arg("--config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6: workers.poll: expected \"adaptive\" or \"busy\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn two_workers_share_the_tunnel_through_handoff() {
    require_root();
    let ns = two_sites_q("d2", 2);
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    let dir = tmpdir("d2");
    write_configs_n(&dir, 2);
    // Each CPU transmits on its own queue (XPS), so senders pinned to each CPU reach both
    // workers whatever the flow hashes say.
    let xps = Command::new("ip")
        .args(["netns", "exec", ha, "sh", "-c"])
        .arg("echo 1 > /sys/class/net/eth0/queues/tx-0/xps_cpus && echo 2 > /sys/class/net/eth0/queues/tx-1/xps_cpus")
        .status()
        .unwrap();
    assert!(xps.success(), "XPS on hA's eth0");
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    // Senders pinned to each CPU use each TX queue, so packets reach both workers; the SAs
    // (SPIs 0xa0000001 and 0xb0000001: odd) live on worker 1, so worker 0 hands its packets over.
    let mut pings = Vec::new();
    // Several ping processes: each is its own flow, so the queue choice cannot land them all on
    // the owning worker.
    for cpu in ["0", "1", "0", "1"] {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ha,
                "taskset",
                "-c",
                cpu,
                "ping",
                "-c",
                "5",
                "-i",
                "0.2",
                "-W",
                "2",
                "10.201.2.2",
            ])
            .output()
            .unwrap();
        pings.push((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let (sent, got, n) = tcp_transfer(ha, hb, 8 << 20);
    // Fragmented again inside the tunnel by whichever worker owns (or is handed) it.
    let (udp_sent, udp_got) = udp_datagram(ha, hb, 3000);
    let stats: Vec<serde_json::Value> = ["gwA", "gwB"]
        .iter()
        .map(|g| {
            Client::connect(&dir.join(format!("{g}.sock")))
                .unwrap()
                .call(Request::Stats)
                .unwrap()
        })
        .collect();
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        assert!(d.child.wait().unwrap().success());
    }
    for (ok, _) in &pings {
        assert!(ok, "ping from each CPU crosses:\n{pings:#?}\n{stats:#?}");
    }
    assert_eq!((n, sent), (8 << 20, got), "TCP arrives intact");
    assert_eq!(
        udp_got.as_deref(),
        Some(&udp_sent[..]),
        "the 3,000-byte non-DF datagram arrives whole: {stats:?}"
    );
    let fragmented: u64 = stats
        .iter()
        .map(|s| s["fragmented"].as_u64().unwrap())
        .sum();
    assert!(fragmented >= 2, "{stats:?}");
    let handed: u64 = stats
        .iter()
        .map(|s| s["handoff_sent"].as_u64().unwrap())
        .sum();
    let received: u64 = stats
        .iter()
        .map(|s| s["handoff_received"].as_u64().unwrap())
        .sum();
    assert!(
        handed > 0,
        "traffic on the non-owning worker is handed off: {stats:?}"
    );
    assert_eq!(
        handed, received,
        "every handed-off packet is processed: {stats:?}"
    );
    for s in &stats {
        assert_eq!(s["workers"], 2, "{s}");
        // A full ring is a counted drop by design; it stays rare.
        let (sent, dropped) = (
            s["handoff_sent"].as_u64().unwrap(),
            s["handoff_dropped"].as_u64().unwrap(),
        );
        assert!(
            dropped * 100 <= sent.max(1),
            "handoff drops stay under 1%: {s}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn route_based_tunnel_bypass_and_drop() {
    require_root();
    let ns = two_sites("rb");
    let (ha, gwa, gwb, _hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    // Bypassed traffic comes back through the kernels: gwB routes the site behind gwA, and gwA
    // forwards the replies it receives in the clear.
    common::ip(&[
        "-n",
        gwb,
        "route",
        "add",
        "10.201.1.0/24",
        "via",
        "10.200.0.1",
    ]);
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            gwa,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let dir = tmpdir("rb");
    std::fs::create_dir_all(&dir).unwrap();
    // SAs without selectors: they carry whatever the routes send them.
    let any = "[]";
    let sa_a = sa_file(&Tunnel {
        local: "10.200.0.1",
        remote: "10.200.0.2",
        out: ("0xa0000003", KEY_AB),
        inb: ("0xb0000003", KEY_BA),
        lts: any,
        rts: any,
    });
    let sa_b = sa_file(&Tunnel {
        local: "10.200.0.2",
        remote: "10.200.0.1",
        out: ("0xb0000003", KEY_BA),
        inb: ("0xa0000003", KEY_AB),
        lts: any,
        rts: any,
    });
    write_secret(&dir.join("gwA-sa.toml"), &sa_a);
    write_secret(&dir.join("gwB-sa.toml"), &sa_b);
    let cfg = |name: &str, extra: &str| gateway_config(&dir, name, extra);
    std::fs::write(
        dir.join("gwA.toml"),
        cfg("gwA", "[[route]]\nprefix = \"10.201.2.0/24\"\ntunnel = \"10.200.0.2\"\n[[route]]\nprefix = \"fd00:201:2::/64\"\ntunnel = \"10.200.0.2\"\n[[route]]\nprefix = \"10.200.0.2/32\"\naction = \"bypass\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("gwB.toml"),
        cfg("gwB", "[[route]]\nprefix = \"10.201.1.0/24\"\ntunnel = \"10.200.0.1\"\n[[route]]\nprefix = \"fd00:201:1::/64\"\ntunnel = \"10.200.0.1\"\n"),
    )
    .unwrap();
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    let v4 = ping(ha, "10.201.2.2");
    let v6 = ping(ha, "fd00:201:2::2");
    let bypass = ping(ha, "10.200.0.2");
    let unrouted = ping(ha, "10.201.9.9");
    let mut c = Client::connect(&dir.join("gwA.sock")).unwrap();
    let routes = c.call(Request::RouteList).unwrap();
    let stats = c.call(Request::Stats).unwrap();
    c.call(Request::RouteDelete {
        prefix: "10.200.0.2/32".into(),
    })
    .unwrap();
    let after = ping(ha, "10.200.0.2");
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        assert!(d.child.wait().unwrap().success());
    }
    assert!(v4.0, "route-based tunnel, IPv4:\n{}\n{stats}", v4.1);
    assert!(v6.0, "route-based tunnel, IPv6:\n{}\n{stats}", v6.1);
    assert!(bypass.0, "bypass route:\n{}\n{stats}", bypass.1);
    assert!(!unrouted.0, "no route, no policy: dropped");
    assert!(!after.0, "the bypass route is gone: dropped");
    assert_eq!(routes.as_array().unwrap().len(), 3, "{routes}");
    assert!(stats["bypassed"].as_u64().unwrap() >= 5, "{stats}");
    assert!(
        stats["sadb_drops"]["no_policy"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    let out_sa = stats["sas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["direction"] == "out")
        .unwrap()
        .clone();
    assert!(out_sa["packets"].as_u64().unwrap() >= 10, "{out_sa}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

/// Sends a raw IPv4 packet (header included) from the calling thread's namespace.
fn send_raw_ipv4(pkt: &[u8], dst: std::net::Ipv4Addr) {
    // SAFETY: a raw socket; checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `pkt` and `sa` are live for the call; the socket is closed right after.
    let r = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr() as *const libc::c_void,
            pkt.len(),
            0,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    assert_eq!(r as usize, pkt.len(), "sendto: {err}");
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn replayed_and_unknown_spi_packets_are_dropped_and_counted_live() {
    require_root();
    let ns = two_sites("rp");
    let (ha, gwa, gwb, _) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    let dir = tmpdir("rp");
    write_configs(&dir);
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    let p = ping(ha, "10.201.2.2");
    // Forge what an attacker on the WAN could: a copy of gwA's first ESP packet (sequence 1,
    // which gwB has seen), and the same packet under an SPI gwB does not know. The keys are
    // gwA's own, so only the replay window and the SPI lookup can stop them.
    let sas = dataplane::sa::file::load(&dir.join("gwA-sa.toml")).unwrap();
    let mut db = dataplane::sa::SaDb::new(dataplane::esp::Backend::default());
    db.insert(
        sas.into_iter()
            .find(|s| s.direction == dataplane::sa::Direction::Out)
            .unwrap(),
    )
    .unwrap();
    let inner = {
        let mut b = vec![0u8; 28];
        dataplane::wire::ipv4::Ipv4Repr {
            src: "10.201.1.2".parse().unwrap(),
            dst: "10.201.2.2".parse().unwrap(),
            protocol: 17,
            payload_len: 8,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut b);
        b
    };
    let mut frames = vec![dataplane::frame::OwnedFrame::from_packet(&inner, 128, 64)];
    let mut v = [dataplane::esp::Verdict::Pass];
    db.encrypt_batch(&mut frames, &mut v);
    assert_eq!(v[0], dataplane::esp::Verdict::Pass);
    let replayed = frames[0].data().to_vec();
    let mut unknown = replayed.clone();
    unknown[20..24].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    let gwa_ns = gwa.to_string();
    std::thread::spawn(move || {
        enter(&gwa_ns);
        for _ in 0..3 {
            send_raw_ipv4(&replayed, "10.200.0.2".parse().unwrap());
            send_raw_ipv4(&unknown, "10.200.0.2".parse().unwrap());
        }
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stats = Client::connect(&dir.join("gwB.sock"))
        .unwrap()
        .call(Request::Stats)
        .unwrap();
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        let _ = d.child.wait();
    }
    assert!(p.0, "{}", p.1);
    let inbound = stats["sas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["direction"] == "in")
        .unwrap()
        .clone();
    assert_eq!(inbound["drops"]["replayed"], 3, "{inbound}");
    assert_eq!(stats["sadb_drops"]["unknown_spi"], 3, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn trap_policy_raises_acquire_events() {
    require_root();
    let ns = two_sites("tp");
    let (ha, gwa, gwb, _) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    let dir = tmpdir("tp");
    write_configs(&dir);
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    let events = subscribe(&dir.join("gwA.sock"));
    let mut c = Client::connect(&dir.join("gwA.sock")).unwrap();
    c.call(Request::PolicyAdd {
        policy: 7,
        local_ts: vec!["10.201.1.0/24".into()],
        remote_ts: vec!["10.201.9.0/24".into()],
    })
    .unwrap();
    assert_eq!(
        c.call(Request::PolicyList)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let lost = ping(ha, "10.201.9.9");
    let stats = c.call(Request::Stats).unwrap();
    c.call(Request::PolicyDelete { policy: 7 }).unwrap();
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        let _ = d.child.wait();
    }
    let events = events.join().unwrap();
    assert!(!lost.0, "no SA yet: the packets are dropped");
    let acquire = events
        .iter()
        .find(|e| e.event == "acquire")
        .expect("an acquire event");
    assert_eq!(acquire.policy, Some(7));
    assert_eq!(
        (acquire.local.as_str(), acquire.remote.as_str()),
        ("10.201.1.2", "10.201.9.9")
    );
    assert_eq!(
        events.iter().filter(|e| e.event == "acquire").count(),
        1,
        "rate-limited: {events:?}"
    );
    assert!(
        stats["sadb_drops"]["acquire"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
}

/// The SAs a daemon has, as "spi/direction" strings.
fn sa_ids(sock: &Path) -> Vec<String> {
    let mut c = Client::connect(sock).unwrap();
    let v = c.call(Request::SaList).unwrap();
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["spi"].as_str().unwrap(),
                s["direction"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    ids
}

fn routes(sock: &Path) -> Vec<String> {
    let mut c = Client::connect(sock).unwrap();
    let v = c.call(Request::RouteList).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn sighup_reloads_the_sa_file_and_routes_and_refuses_a_bad_file() {
    require_root();
    let ns = two_sites("hup");
    let (ha, gwa, gwb) = (ns.name(0), ns.name(1), ns.name(2));
    let dir = tmpdir("hup");
    write_configs(&dir);
    let mut a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    let (sa, sb) = (dir.join("gwA.sock"), dir.join("gwB.sock"));
    let (ok, out) = ping(ha, "10.201.2.2");
    assert!(ok, "{out}");
    assert_eq!(sa_ids(&sa), ["0xa0000001/out", "0xb0000001/in"]);

    // A manual rekey: new SPIs and keys in both SA files, then SIGHUP to both daemons.
    write_sa_files(&dir, ("0xa0000002", KEY_BA), ("0xb0000002", KEY_AB));
    // A route, and a setting that takes a restart, in gwA's file.
    let cfg_a = std::fs::read_to_string(dir.join("gwA.toml")).unwrap();
    std::fs::write(
        dir.join("gwA.toml"),
        cfg_a.replace("ring_size = 512", "ring_size = 1024")
            + "\n[[route]]\nprefix = \"192.0.2.0/24\"\naction = \"drop\"\n",
    )
    .unwrap();
    signal(&a, "-HUP");
    signal(&b, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sa_ids(&sa) != ["0xa0000002/out", "0xb0000002/in"]
        || sa_ids(&sb) != ["0xa0000002/in", "0xb0000002/out"]
    {
        assert!(
            Instant::now() < deadline,
            "{:?} {:?}",
            sa_ids(&sa),
            sa_ids(&sb)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(routes(&sa).contains(&"192.0.2.0/24".to_string()));
    let (ok, out) = ping(ha, "10.201.2.2");
    assert!(ok, "traffic over the reloaded SAs: {out}");

    // A file that does not load: nothing changes.
    std::fs::write(dir.join("gwA.toml"), "sa_file = 7\n").unwrap();
    signal(&a, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sa_ids(&sa), ["0xa0000002/out", "0xb0000002/in"]);
    let (ok, out) = ping(ha, "10.201.2.2");
    assert!(ok, "{out}");

    // The log says what was reloaded, what takes a restart and what was refused.
    signal(&a, "-TERM");
    let st = wait_exit(&mut a);
    assert!(st.success(), "{st}");
    let mut err = String::new();
    a.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("configuration reloaded: SAs 2 added, 2 removed, 0 replaced; routes 1 set"),
        "{err}"
    );
    assert!(
        err.contains("ring_size changed; restart esprit-dataplane"),
        "{err}"
    );
    assert!(err.contains("reload refused"), "{err}");
}

/// Waits (up to 5 s) until `dev` in `ns` shows `want` in `ip link` (a carrier state).
fn wait_link(ns: &str, dev: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns, "link", "show", dev])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if s.contains(want) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn tunnel_interfaces_carry_the_gateways_own_traffic_and_follow_kernel_routes() {
    require_root();
    let ns = two_sites("ti");
    let (ha, gwa, gwb, _hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    let dir = tmpdir("ti");
    std::fs::create_dir_all(&dir).unwrap();
    // Route-based children as peers negotiate them: any to any. The tunnel interfaces make
    // their peers route-based, so these SAs claim no traffic by their selectors.
    let any = r#"["0.0.0.0/0", "::/0"]"#;
    let sa = |local, remote, out, inb| Tunnel {
        local,
        remote,
        out,
        inb,
        lts: any,
        rts: any,
    };
    let (ab, ba) = (("0xa0000009", KEY_AB), ("0xb0000009", KEY_BA));
    write_secret(
        &dir.join("gwA-sa.toml"),
        &sa_file(&sa("10.200.0.1", "10.200.0.2", ab, ba)),
    );
    write_secret(
        &dir.join("gwB-sa.toml"),
        &sa_file(&sa("10.200.0.2", "10.200.0.1", ba, ab)),
    );
    let cfg = |name: &str, extra: &str| gateway_config(&dir, name, extra);
    std::fs::write(
        dir.join("gwA.toml"),
        cfg("gwA", "[[tunnel]]\nname = \"esp-b\"\npeer = \"10.200.0.2\"\naddresses = [\"169.254.30.1/30\", \"fd00:a9fe::1/64\"]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("gwB.toml"),
        cfg("gwB", "[[tunnel]]\nname = \"esp-a\"\npeer = \"10.200.0.1\"\naddresses = [\"169.254.30.2/30\", \"fd00:a9fe::2/64\"]\n"),
    )
    .unwrap();
    let a = start(gwa, &dir, "gwA");
    let b = start(gwb, &dir, "gwB");
    // The SAs came from the files: both carriers go on.
    let link_a = wait_link(gwa, "esp-b", "LOWER_UP");
    let link_b = wait_link(gwb, "esp-a", "LOWER_UP");
    // The gateways' own stacks talk through the tunnel interfaces.
    let own_v4 = ping(gwa, "169.254.30.2");
    let own_v6 = ping(gwa, "fd00:a9fe::2");
    // Transit traffic has no route yet: the any-to-any SAs do not claim it.
    let before = ping(ha, "10.201.2.2");
    // Kernel routes through the tunnel interfaces (as a routing daemon would install them)
    // send transit traffic into the tunnel, inside the dataplane.
    common::ip(&["-n", gwa, "route", "add", "10.201.2.0/24", "dev", "esp-b"]);
    common::ip(&["-n", gwb, "route", "add", "10.201.1.0/24", "dev", "esp-a"]);
    common::ip(&["-n", gwa, "route", "add", "fd00:201:2::/64", "dev", "esp-b"]);
    common::ip(&["-n", gwb, "route", "add", "fd00:201:1::/64", "dev", "esp-a"]);
    std::thread::sleep(Duration::from_millis(300));
    let routed_v4 = ping(ha, "10.201.2.2");
    let routed_v6 = ping(ha, "fd00:201:2::2");
    let mut c = Client::connect(&dir.join("gwA.sock")).unwrap();
    let routes = c.call(Request::RouteList).unwrap();
    // Withdrawn: the traffic stops.
    common::ip(&["-n", gwa, "route", "del", "10.201.2.0/24", "dev", "esp-b"]);
    std::thread::sleep(Duration::from_millis(300));
    let withdrawn = ping(ha, "10.201.2.2");
    // Set down, the interface loses its IPv4 routes in the kernel without a route
    // notification: the link's tells the dataplane, which stops at once (its full resync is
    // seconds away). Up again with the route back, the traffic flows again.
    common::ip(&["-n", gwa, "route", "add", "10.201.2.0/24", "dev", "esp-b"]);
    std::thread::sleep(Duration::from_millis(300));
    let rerouted = ping(ha, "10.201.2.2");
    common::ip(&["-n", gwa, "link", "set", "esp-b", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    let set_down = ping(ha, "10.201.2.2");
    common::ip(&["-n", gwa, "link", "set", "esp-b", "up"]);
    common::ip(&["-n", gwa, "route", "add", "10.201.2.0/24", "dev", "esp-b"]);
    std::thread::sleep(Duration::from_millis(300));
    let set_up = ping(ha, "10.201.2.2");
    let stats = c.call(Request::Stats).unwrap();
    drop(c);
    // A dataplane that dies takes its interface and the routes through it along (a routing
    // daemon sees the link go and withdraws what it learned over it); restarted, it makes
    // the interface again, addressed, its carrier on with the SAs.
    let mut a = a;
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = wait_link(gwa, "esp-b", "does not exist");
    // With the interface gone, the tunnel's far end is unreachable: the gateway's own packets
    // to it (a routing daemon's BGP) do not follow gwA's default route out in clear text.
    let far_end = Command::new("ip")
        .args(["-n", gwa, "route", "get", "169.254.30.2"])
        .output()
        .unwrap();
    let far_end6 = Command::new("ip")
        .args(["-n", gwa, "-6", "route", "get", "fd00:a9fe::2"])
        .output()
        .unwrap();
    let v6_routes = Command::new("ip")
        .args(["-n", gwa, "-6", "route", "show", "fd00:201:2::/64"])
        .output()
        .unwrap();
    let a = start(gwa, &dir, "gwA");
    let relinked = wait_link(gwa, "esp-b", "LOWER_UP");
    let readdressed = Command::new("ip")
        .args(["-n", gwa, "addr", "show", "dev", "esp-b"])
        .output()
        .unwrap();
    for d in [a, b] {
        signal(&d, "-TERM");
        let mut d = d;
        assert!(d.child.wait().unwrap().success());
    }
    // The interfaces live as long as the dataplane.
    let gone = wait_link(gwa, "esp-b", "does not exist");
    let _ = std::fs::remove_dir_all(&dir);
    drop(ns);
    assert!(link_a.contains("LOWER_UP"), "{link_a}");
    assert!(link_b.contains("LOWER_UP"), "{link_b}");
    assert!(
        own_v4.0,
        "gateway to gateway over esp-b, IPv4:\n{}\n{stats}",
        own_v4.1
    );
    assert!(
        own_v6.0,
        "gateway to gateway over esp-b, IPv6:\n{}\n{stats}",
        own_v6.1
    );
    assert!(!before.0, "no route yet: {}", before.1);
    assert!(
        routed_v4.0,
        "kernel route into the tunnel, IPv4:\n{}\n{stats}",
        routed_v4.1
    );
    assert!(
        routed_v6.0,
        "kernel route into the tunnel, IPv6:\n{}\n{stats}",
        routed_v6.1
    );
    assert!(!withdrawn.0, "route withdrawn: {}", withdrawn.1);
    assert!(rerouted.0, "route added again: {}\n{stats}", rerouted.1);
    assert!(!set_down.0, "esp-b set down: {}", set_down.1);
    assert!(set_up.0, "esp-b up, route back: {}\n{stats}", set_up.1);
    let kernel: Vec<&serde_json::Value> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "kernel")
        .collect();
    assert!(
        kernel
            .iter()
            .any(|r| r["prefix"] == "10.201.2.0/24" && r["tunnel"] == "10.200.0.2"),
        "{routes}"
    );
    assert!(
        stats["sadb_drops"]["no_policy"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    assert!(gone.contains("does not exist"), "{gone}");
    assert!(killed.contains("does not exist"), "{killed}");
    assert!(!far_end.status.success(), "{far_end:?}");
    assert!(!far_end6.status.success(), "{far_end6:?}");
    assert!(
        v6_routes.stdout.is_empty(),
        "routes through esp-b went with it"
    );
    assert!(relinked.contains("LOWER_UP"), "{relinked}");
    assert!(
        String::from_utf8_lossy(&readdressed.stdout).contains("169.254.30.1/30"),
        "{readdressed:?}"
    );
}
