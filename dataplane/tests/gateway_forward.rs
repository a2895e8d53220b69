//! Two esprit gateways (one worker each, AF_XDP on native-mode veth) carry ping between two
//! sites over ESP, IPv4 and IPv6, and the SA counters show it; TCP from hosts that leave
//! their checksums to the NIC, and UDP datagrams larger than the tunnel MTU, arrive intact.
//! Needs root: ignored by a plain `cargo test`, run by `./ci/test.sh`.
//!
//! hA (10.201.1.2) — [lan0 gwA wan0] (10.200.0.1) ==== (10.200.0.2) [wan0 gwB lan0] — hB (10.201.2.2)

mod common;
use common::{enter, sha256, two_sites, udp_datagram, Namespaces};
use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::{Backend, DropReason, Suite};
use dataplane::sa::{Direction, Mode, Prefix, SaConfig, SaDb, Selectors};
use dataplane::worker::xsk::{PollMode, Worker, WorkerConfig};
use dataplane::worker::{Neighbours, Pipeline, Side};
use dataplane::xdp::program::{Classifier, ClassifierSpec, Role};
use dataplane::xdp::socket::BindMode;
use dataplane::xdp::sys::action;
use dataplane::xdp::umem::UmemConfig;
use esprit_testkit::require_root;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HA: [u8; 6] = [0x02, 0, 0, 0, 0x1a, 0x02];
const GWA_LAN: [u8; 6] = [0x02, 0, 0, 0, 0x1a, 0x01];
const GWA_WAN: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const GWB_WAN: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const GWB_LAN: [u8; 6] = [0x02, 0, 0, 0, 0x2b, 0x01];
const HB: [u8; 6] = [0x02, 0, 0, 0, 0x2b, 0x02];

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(spi: u32, dir: Direction, local: &str, remote: &str, lts: &[&str], rts: &[&str]) -> SaConfig {
    SaConfig {
        spi,
        direction: dir,
        mode: Mode::Tunnel,
        suite: Suite::Aes256Gcm16,
        key: KeyMaterial::new((0..36u8).map(|i| i ^ (spi as u8)).collect()),
        integ_key: None,
        local: a(local),
        remote: a(remote),
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::new(lts.iter().map(|s| p(s)).collect()),
        remote_ts: Selectors::new(rts.iter().map(|s| p(s)).collect()),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

struct Gw {
    ns: String,
    wan_ip: (&'static str, &'static str),
    lan_ip: (&'static str, &'static str),
    peer_wan: (&'static str, &'static str),
    sas: Vec<SaConfig>,
    lan: Side,
    wan: Side,
}

/// Runs one gateway's worker in its namespace until `stop`; returns its pipeline.
fn run_gateway(
    g: Gw,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<Pipeline> {
    std::thread::spawn(move || {
        enter(&g.ns);
        let mut db = SaDb::new(Backend::default());
        for s in g.sas {
            db.insert(s).unwrap();
        }
        let pipeline = Pipeline::new(db, g.lan, g.wan);
        let cfg = WorkerConfig {
            lan: "lan0".into(),
            wan: "wan0".into(),
            queue: 0,
            ring_size: 512,
            umem: UmemConfig {
                frames: 2048,
                ..Default::default()
            },
            poll: PollMode::Adaptive,
            mode: BindMode::Copy,
        };
        let mut w = Worker::new(cfg, pipeline).expect("worker");
        let wan_cls = Classifier::load(
            &ClassifierSpec {
                role: Role::Wan,
                local_v4: vec![g.wan_ip.0.parse().unwrap()],
                local_v6: vec![g.wan_ip.1.parse().unwrap()],
                nat_t_ports: vec![4500],
                no_socket_action: action::PASS,
            },
            1,
        )
        .unwrap();
        let lan_cls = Classifier::load(
            &ClassifierSpec {
                role: Role::Lan,
                local_v4: vec![g.lan_ip.0.parse().unwrap(), g.wan_ip.0.parse().unwrap()],
                local_v6: vec![g.lan_ip.1.parse().unwrap(), g.wan_ip.1.parse().unwrap()],
                nat_t_ports: vec![],
                no_socket_action: action::PASS,
            },
            1,
        )
        .unwrap();
        wan_cls.register_socket(0, w.wan_fd()).unwrap();
        lan_cls.register_socket(0, w.lan_fd()).unwrap();
        let _wl = wan_cls.attach("wan0", false).unwrap();
        let _ll = lan_cls.attach("lan0", false).unwrap();
        let _ = g.peer_wan;
        ready.send(()).unwrap();
        w.run(&stop).unwrap();
        w.pipeline
    })
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
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Both gateways running, each in its own thread, between the two sites.
struct Sites {
    ns: Namespaces,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Pipeline>>,
}

impl Sites {
    /// Stops the gateways; returns their pipelines (gwA, gwB) and the namespaces.
    fn stop(self) -> (Pipeline, Pipeline, Namespaces) {
        self.stop.store(true, Ordering::Relaxed);
        let mut t = self.threads.into_iter();
        let pa = t.next().unwrap().join().unwrap();
        let pb = t.next().unwrap().join().unwrap();
        (pa, pb, self.ns)
    }
}

/// hA — gwA ==== gwB — hB with 1500-byte MTUs everywhere; the hosts keep their default
/// offloads (checksums left to the NIC).
fn start_sites(tag: &str) -> Sites {
    let ns = two_sites(tag);
    let (gwa, gwb) = (ns.name(1), ns.name(2));
    let a_ts = ["10.201.1.0/24", "fd00:201:1::/64"];
    let b_ts = ["10.201.2.0/24", "fd00:201:2::/64"];
    let side = |mac, onlink: &[&str], neigh: &[(&str, [u8; 6])], addrs: &[&str]| {
        let mut n = Neighbours::new();
        for (ipa, m) in neigh {
            n.insert(a(ipa), *m);
        }
        Side {
            mac,
            onlink: onlink.iter().map(|s| p(s)).collect(),
            gateway: None,
            routes: Vec::new(),
            neighbours: n,
            mtu: 1500,
            addrs: addrs.iter().map(|s| a(s)).collect(),
        }
    };
    let gw_a = Gw {
        ns: gwa.to_string(),
        wan_ip: ("10.200.0.1", "fd00:200::1"),
        lan_ip: ("10.201.1.1", "fd00:201:1::1"),
        peer_wan: ("10.200.0.2", "fd00:200::2"),
        sas: vec![
            sa(
                0xa001,
                Direction::Out,
                "10.200.0.1",
                "10.200.0.2",
                &a_ts,
                &b_ts,
            ),
            sa(
                0xb001,
                Direction::In,
                "10.200.0.1",
                "10.200.0.2",
                &a_ts,
                &b_ts,
            ),
        ],
        lan: side(
            GWA_LAN,
            &a_ts,
            &[("10.201.1.2", HA), ("fd00:201:1::2", HA)],
            &["10.201.1.1", "fd00:201:1::1"],
        ),
        wan: side(GWA_WAN, &["10.200.0.0/24"], &[("10.200.0.2", GWB_WAN)], &[]),
    };
    let gw_b = Gw {
        ns: gwb.to_string(),
        wan_ip: ("10.200.0.2", "fd00:200::2"),
        lan_ip: ("10.201.2.1", "fd00:201:2::1"),
        peer_wan: ("10.200.0.1", "fd00:200::1"),
        sas: vec![
            sa(
                0xb001,
                Direction::Out,
                "10.200.0.2",
                "10.200.0.1",
                &b_ts,
                &a_ts,
            ),
            sa(
                0xa001,
                Direction::In,
                "10.200.0.2",
                "10.200.0.1",
                &b_ts,
                &a_ts,
            ),
        ],
        lan: side(
            GWB_LAN,
            &b_ts,
            &[("10.201.2.2", HB), ("fd00:201:2::2", HB)],
            &["10.201.2.1", "fd00:201:2::1"],
        ),
        wan: side(GWB_WAN, &["10.200.0.0/24"], &[("10.200.0.1", GWA_WAN)], &[]),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (rtx, rrx) = std::sync::mpsc::channel();
    let ta = run_gateway(gw_a, stop.clone(), rtx.clone());
    let tb = run_gateway(gw_b, stop.clone(), rtx);
    rrx.recv().unwrap();
    rrx.recv().unwrap();
    Sites {
        ns,
        stop,
        threads: vec![ta, tb],
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn ping_crosses_two_gateways_over_esp() {
    require_root();
    assert!(
        Command::new("ping").arg("-V").output().is_ok(),
        "ping is missing: ci/install-deps.sh installs iputils-ping"
    );
    let sites = start_sites("fw");
    let ha = sites.ns.name(0).to_string();
    let v4 = ping(&ha, "10.201.2.2");
    let v6 = ping(&ha, "fd00:201:2::2");
    let (pa, pb, ns) = sites.stop();
    assert!(v4.0, "IPv4 ping across the tunnel:\n{}", v4.1);
    assert!(v6.0, "IPv6 ping across the tunnel:\n{}", v6.1);
    for (name, pl) in [("gwA", &pa), ("gwB", &pb)] {
        let out = &pl.sadb.outbound()[0].counters;
        let inb = &pl.sadb.inbound().next().unwrap().counters;
        assert!(out.packets >= 10, "{name} encrypted {out:?}");
        assert!(inb.packets >= 10, "{name} decrypted {inb:?}");
        assert_eq!(inb.drops.total(), 0, "{name} inbound drops {inb:?}");
        assert_eq!(pl.drops.get(DropReason::NoNeighbour), 0, "{name}");
    }
    drop(ns);
}

/// Sends `len` bytes over TCP from hA to hB; returns the SHA-256 of what was sent and of what
/// arrived.
fn tcp_transfer(ha: &str, hb: &str, len: usize) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
        .collect();
    let sent = sha256(&data);
    let (tx, rx) = std::sync::mpsc::channel();
    let hb = hb.to_string();
    let server = std::thread::spawn(move || {
        enter(&hb);
        let l = TcpListener::bind("10.201.2.2:5001").unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = vec![];
        s.read_to_end(&mut got).expect("receive");
        sha256(&got)
    });
    rx.recv().unwrap();
    let ha = ha.to_string();
    let client = std::thread::spawn(move || {
        enter(&ha);
        let mut s =
            TcpStream::connect_timeout(&"10.201.2.2:5001".parse().unwrap(), Duration::from_secs(5))
                .expect("connect through the tunnel");
        s.write_all(&data).unwrap();
    });
    client.join().unwrap();
    (sent, server.join().unwrap())
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn offloaded_checksums_and_oversized_packets_cross_the_tunnel() {
    require_root();
    let sites = start_sites("fo");
    let (ha, hb) = (sites.ns.name(0).to_string(), sites.ns.name(3).to_string());
    // TCP with the hosts' checksum offload on: every segment reaches the gateway with a
    // partial checksum.
    let (tcp_sent, tcp_got) = tcp_transfer(&ha, &hb, 2 << 20);
    // A 3,000-byte datagram without DF: hA sends two 1500-byte fragments and a small one;
    // the big ones exceed the tunnel MTU (1438) and are fragmented again inside the tunnel.
    // (Before the DF ping below: its ICMP error lowers hA's path MTU.)
    let (udp_sent, udp_got) = udp_datagram(&ha, &hb, 3000);
    let df = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ha,
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
    let df = String::from_utf8_lossy(&df.stdout).to_string() + &String::from_utf8_lossy(&df.stderr);
    let (pa, pb, ns) = sites.stop();
    assert_eq!(tcp_sent, tcp_got, "SHA-256 of the TCP transfer");
    assert!(
        pa.checksums_completed > 0,
        "gwA completed the SYN's and data's checksums"
    );
    assert!(
        pb.checksums_completed > 0,
        "gwB completed the ACKs' checksums"
    );
    assert_eq!(
        udp_got.as_deref(),
        Some(&udp_sent[..]),
        "the 3,000-byte datagram arrives whole (gwA fragmented {}, drops {:?})",
        pa.fragmented,
        pa.drops
    );
    assert!(pa.fragmented >= 2, "both 1500-byte fragments were cut");
    assert!(pa.fragments >= 4);
    assert!(
        df.contains("mtu = 1438"),
        "a DF packet too big for the tunnel gets fragmentation needed:\n{df}"
    );
    for (name, pl) in [("gwA", &pa), ("gwB", &pb)] {
        let inb = &pl.sadb.inbound().next().unwrap().counters;
        assert_eq!(inb.drops.total(), 0, "{name} inbound drops {inb:?}");
        assert_eq!(pl.drops.get(DropReason::FragNoFrame), 0, "{name}");
    }
    drop(ns);
}
