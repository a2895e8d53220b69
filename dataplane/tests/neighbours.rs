//! Next hops the daemon has to resolve itself: two `esprit-dataplane` daemons between two
//! hosts whose neighbour entries (on gateways and hosts) are flushed, so the first packet in
//! each direction has to wait for ARP / neighbour discovery; and a steady ping while the
//! gateways' neighbour timers are short and their entries are deleted now and then, during
//! which nothing may be lost; and frames for a host that never answers, which are bounded and
//! dropped. Needs root; run under `flock /tmp/esprit-netns.lock`.

mod common;
use common::{two_sites, write_secret};
use dataplane::api::{Client, Request};
use esprit_testkit::{require_root, tmpdir};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY_AB: &str = "0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324";
const KEY_BA: &str = "0xa1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

fn start(ns: &str, dir: &Path, name: &str) -> Daemon {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_esprit-dataplane")])
        .arg("--config")
        .arg(dir.join(format!("{name}.toml")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esprit-dataplane");
    let mut d = Daemon(child);
    // Ready once the API answers: the classifiers are attached (failing closed) before the
    // sockets are registered, the API opens after.
    let sock = dir.join(format!("{name}.sock"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(std::os::unix::net::UnixStream::connect(&sock).is_ok()
        && xdp_attached(ns, "wan0")
        && xdp_attached(ns, "lan0"))
    {
        if let Some(st) = d.0.try_wait().unwrap() {
            let mut err = String::new();
            d.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("daemon in {ns} exited with {st}: {err}");
        }
        assert!(Instant::now() < deadline, "daemon in {ns} did not attach");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn write_configs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let a_ts = r#"["10.201.1.0/24", "fd00:201:1::/64"]"#;
    let b_ts = r#"["10.201.2.0/24", "fd00:201:2::/64"]"#;
    let sa = |spi: &str, dir: &str, key: &str, local: &str, remote: &str, l: &str, r: &str| {
        format!(
            "[[sa]]\nspi = \"{spi}\"\ndirection = \"{dir}\"\nsuite = \"aes256gcm16\"\nkey = \"{key}\"\nlocal = \"{local}\"\nremote = \"{remote}\"\nlocal_ts = {l}\nremote_ts = {r}\n\n"
        )
    };
    let (a, b) = ("10.200.0.1", "10.200.0.2");
    write_secret(
        &dir.join("gwA-sa.toml"),
        &(sa("0xa0000001", "out", KEY_AB, a, b, a_ts, b_ts)
            + &sa("0xb0000001", "in", KEY_BA, a, b, a_ts, b_ts)),
    );
    write_secret(
        &dir.join("gwB-sa.toml"),
        &(sa("0xb0000001", "out", KEY_BA, b, a, b_ts, a_ts)
            + &sa("0xa0000001", "in", KEY_AB, b, a, b_ts, a_ts)),
    );
    for name in ["gwA", "gwB"] {
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!(
                "sa_file = \"{name}-sa.toml\"\napi_socket = \"{}\"\n[lan]\ninterface = \"lan0\"\n[wan]\ninterface = \"wan0\"\n[workers]\nring_size = 512\n",
                dir.join(format!("{name}.sock")).display()
            ),
        )
        .unwrap();
    }
}

/// Deletes every (non-permanent) neighbour entry in `ns`, both families.
fn flush(ns: &str) {
    for fam in ["-4", "-6"] {
        let st = Command::new("ip")
            .args(["-n", ns, fam, "neigh", "flush", "all"])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// `ping ARGS dst` in `ns`: (success, output).
fn ping(ns: &str, args: &[&str], dst: &str) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ping"])
        .args(args)
        .arg(dst)
        .output()
        .expect("ping");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn stats(sock: &Path) -> serde_json::Value {
    Client::connect(sock).unwrap().call(Request::Stats).unwrap()
}

fn drops(s: &serde_json::Value, reason: &str) -> u64 {
    s["forwarding_drops"][reason].as_u64().unwrap_or(0)
}

fn sysctl(ns: &str, kv: &str) {
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", kv])
        .status()
        .unwrap();
    assert!(st.success(), "sysctl {kv}");
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn the_first_packet_waits_for_its_next_hop() {
    require_root();
    let ns = two_sites("nq");
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    let dir = tmpdir("nq");
    write_configs(&dir);
    // Each ping is the first packet through freshly started daemons after every neighbour table
    // was emptied: the hosts resolve their gateway, the gateways their WAN peer and the LAN
    // host the packet is for. The far gateway has never sent to that host, so the request
    // has to wait there for its next hop; the reply may find entries the request created.
    for (from, to, far) in [
        (ha, "10.201.2.2", "gwB"),
        (hb, "10.201.1.2", "gwA"),
        (ha, "fd00:201:2::2", "gwB"),
        (hb, "fd00:201:1::2", "gwA"),
    ] {
        let a = start(gwa, &dir, "gwA");
        let b = start(gwb, &dir, "gwB");
        for n in [ha, gwa, gwb, hb] {
            flush(n);
        }
        // The daemons learn of the deletions from the kernel's notifications.
        std::thread::sleep(Duration::from_millis(200));
        let (ok, out) = ping(from, &["-c", "1", "-W", "3"], to);
        let (sa, sb) = (stats(&dir.join("gwA.sock")), stats(&dir.join("gwB.sock")));
        // For the record (--nocapture): how long the first exchange took.
        eprintln!(
            "{to}: {}",
            out.lines().find(|l| l.contains("time=")).unwrap_or("-")
        );
        assert!(
            ok,
            "first ping to {to} answered:\n{out}\ngwA {sa}\ngwB {sb}"
        );
        let f = if far == "gwA" { &sa } else { &sb };
        assert!(
            f["neigh_queued"].as_u64().unwrap() >= 1,
            "{far} waited: {f}"
        );
        for s in [&sa, &sb] {
            assert_eq!(s["neigh_queued"], s["neigh_released"], "{s}");
            for r in [
                "no_neighbour",
                "neigh_failed",
                "neigh_timeout",
                "neigh_queue_full",
            ] {
                assert_eq!(drops(s, r), 0, "{r}: {s}");
            }
        }
        drop((a, b));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn frames_for_a_host_that_never_answers_are_bounded_and_dropped() {
    require_root();
    let ns = two_sites("nf");
    let (ha, gwa, gwb) = (ns.name(0), ns.name(1), ns.name(2));
    let dir = tmpdir("nf");
    write_configs(&dir);
    let _a = start(gwa, &dir, "gwA");
    let _b = start(gwb, &dir, "gwB");
    // 50 pings in half a second to an address on gwB's LAN where nobody answers: gwB keeps
    // the first PER_HOP waiting, drops the rest as the queue is full, and drops the waiting
    // ones when the kernel gives up (FAILED after 3 solicitations a second apart).
    let sent = 50;
    let (ok, out) = ping(
        ha,
        &["-c", &sent.to_string(), "-i", "0.01", "-W", "1"],
        "10.201.2.99",
    );
    assert!(!ok, "nobody answers:\n{out}");
    let per_hop = dataplane::worker::neigh_queue::PER_HOP as u64;
    let deadline = Instant::now() + Duration::from_secs(8);
    let s = loop {
        let s = stats(&dir.join("gwB.sock"));
        if drops(&s, "neigh_failed") + drops(&s, "neigh_timeout") >= per_hop
            || Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // What gwA forwarded, as gwB's inbound SA counted it.
    let arrived = s["sas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sa| sa["direction"] == "in")
        .and_then(|sa| sa["packets"].as_u64())
        .unwrap();
    let sa = stats(&dir.join("gwA.sock"));
    assert_eq!(arrived, sent, "gwA forwards every ping: {sa}");
    assert_eq!(s["neigh_queued"].as_u64().unwrap(), per_hop, "{s}");
    assert_eq!(s["neigh_released"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(drops(&s, "neigh_queue_full"), sent - per_hop, "{s}");
    assert_eq!(
        drops(&s, "neigh_failed"),
        per_hop,
        "the kernel said FAILED: {s}"
    );
    assert_eq!(drops(&s, "neigh_timeout"), 0, "{s}");
    // gwB still forwards to the host that is there.
    let (ok, out) = ping(ha, &["-c", "1", "-W", "3"], "10.201.2.2");
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn short_neighbour_timers_lose_nothing() {
    require_root();
    let ns = two_sites("nt");
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    // Entries go from REACHABLE to STALE within a second, a STALE entry is probed a second
    // after use, and unused STALE entries may be collected after a second.
    for gw in [gwa, gwb] {
        for dev in ["lan0", "wan0"] {
            for fam in ["ipv4", "ipv6"] {
                sysctl(
                    gw,
                    &format!("net.{fam}.neigh.{dev}.base_reachable_time_ms=500"),
                );
                sysctl(gw, &format!("net.{fam}.neigh.{dev}.gc_stale_time=1"));
                sysctl(
                    gw,
                    &format!("net.{fam}.neigh.{dev}.delay_first_probe_time=1"),
                );
            }
        }
    }
    let dir = tmpdir("nt");
    write_configs(&dir);
    let _a = start(gwa, &dir, "gwA");
    let _b = start(gwb, &dir, "gwB");
    for n in [ha, gwa, gwb, hb] {
        flush(n);
    }
    std::thread::sleep(Duration::from_millis(200));
    // 30 s of pings in both families, while the gateways' entries age and get re-validated;
    // in the first 12 s they also disappear every 4 s (as when the garbage collector takes
    // them), in the last 15 s nothing disturbs them.
    let v4 = {
        let ha = ha.to_string();
        std::thread::spawn(move || ping(&ha, &["-c", "150", "-i", "0.2", "-W", "3"], "10.201.2.2"))
    };
    let v6 = {
        let hb = hb.to_string();
        std::thread::spawn(move || {
            ping(&hb, &["-c", "150", "-i", "0.2", "-W", "3"], "fd00:201:1::2")
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(4));
        for gw in [gwa, gwb] {
            flush(gw);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let queued = |s: &serde_json::Value| s["neigh_queued"].as_u64().unwrap();
    let before = [
        queued(&stats(&dir.join("gwA.sock"))),
        queued(&stats(&dir.join("gwB.sock"))),
    ];
    let (v4, v6) = (v4.join().unwrap(), v6.join().unwrap());
    let (sa, sb) = (stats(&dir.join("gwA.sock")), stats(&dir.join("gwB.sock")));
    // The kernel confirmed every next hop in use lately although it sent nothing to them:
    // esprit's refresh made it re-validate the STALE entries (without it, the last
    // confirmation would date from the last flush, 15 s ago or more).
    for (gw, dev, hop) in [
        (gwa, "lan0", "10.201.1.2"),
        (gwa, "lan0", "fd00:201:1::2"),
        (gwa, "wan0", "10.200.0.2"),
        (gwb, "lan0", "10.201.2.2"),
        (gwb, "lan0", "fd00:201:2::2"),
        (gwb, "wan0", "10.200.0.1"),
    ] {
        let (state, confirmed) = confirmed_ago(gw, dev, hop);
        assert!(
            confirmed <= 6,
            "{gw} {hop}: {state}, confirmed {confirmed} s ago"
        );
    }
    for (what, (ok, out)) in [("IPv4", &v4), ("IPv6", &v6)] {
        assert!(
            *ok && out.contains(" 0% packet loss"),
            "{what}: no ping lost:\n{out}\ngwA {sa}\ngwB {sb}"
        );
    }
    for (s, before) in [(&sa, before[0]), (&sb, before[1])] {
        for r in [
            "no_neighbour",
            "neigh_failed",
            "neigh_timeout",
            "neigh_queue_full",
        ] {
            assert_eq!(drops(s, r), 0, "{r}: {s}");
        }
        assert_eq!(
            queued(s),
            before,
            "undisturbed, the next hops stayed resolved (nothing waited): {s}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The state of `hop`'s entry on `dev` in `ns`, and how many seconds ago the kernel last
/// confirmed it (`ip -s neigh`: `used U/C/P`).
fn confirmed_ago(ns: &str, dev: &str, hop: &str) -> (String, u64) {
    let out = Command::new("ip")
        .args(["-s", "-n", ns, "neigh", "show", hop, "dev", dev])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let confirmed = line
        .split("used ")
        .nth(1)
        .and_then(|u| u.split('/').nth(1))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no entry for {hop} on {dev} in {ns}: {line:?}"));
    (line, confirmed)
}
