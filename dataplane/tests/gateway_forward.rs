//! Two esprit gateways (one worker each, AF_XDP on native-mode veth) carry ping between two
//! sites over ESP, IPv4 and IPv6, and the SA counters show it. Needs root; skipped otherwise.
//!
//! hA (10.201.1.2) — [lan0 gwA wan0] (10.200.0.1) ==== (10.200.0.2) [wan0 gwB lan0] — hB (10.201.2.2)

mod common;
use common::{enter, ip, is_root, link, End, Namespaces};
use dataplane::esp::aead::KeyMaterial;
use dataplane::esp::{Backend, DropReason, Suite};
use dataplane::sa::{Direction, Mode, Prefix, SaConfig, SaDb, Selectors};
use dataplane::worker::xsk::{PollMode, Worker, WorkerConfig};
use dataplane::worker::{Neighbours, Pipeline, Side};
use dataplane::xdp::program::{Classifier, ClassifierSpec, Role};
use dataplane::xdp::socket::BindMode;
use dataplane::xdp::sys::action;
use dataplane::xdp::umem::UmemConfig;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

#[test]
fn ping_crosses_two_gateways_over_esp() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    assert!(
        Command::new("ping").arg("-V").output().is_ok(),
        "ping is missing: ci/install-deps.sh installs iputils-ping"
    );
    let ns = Namespaces::new("fw", &["hA", "gwA", "gwB", "hB"]);
    let (ha, gwa, gwb, hb) = (ns.name(0), ns.name(1), ns.name(2), ns.name(3));
    link(
        End(ha, "eth0", HA, &["10.201.1.2/24", "fd00:201:1::2/64"]),
        End(gwa, "lan0", GWA_LAN, &["10.201.1.1/24", "fd00:201:1::1/64"]),
    );
    link(
        End(gwa, "wan0", GWA_WAN, &["10.200.0.1/24", "fd00:200::1/64"]),
        End(gwb, "wan0", GWB_WAN, &["10.200.0.2/24", "fd00:200::2/64"]),
    );
    link(
        End(gwb, "lan0", GWB_LAN, &["10.201.2.1/24", "fd00:201:2::1/64"]),
        End(hb, "eth0", HB, &["10.201.2.2/24", "fd00:201:2::2/64"]),
    );
    ip(&["-n", ha, "route", "add", "default", "via", "10.201.1.1"]);
    ip(&[
        "-n",
        ha,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:201:1::1",
    ]);
    ip(&["-n", hb, "route", "add", "default", "via", "10.201.2.1"]);
    ip(&[
        "-n",
        hb,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:201:2::1",
    ]);

    let a_ts = ["10.201.1.0/24", "fd00:201:1::/64"];
    let b_ts = ["10.201.2.0/24", "fd00:201:2::/64"];
    let side = |mac, onlink: &[&str], neigh: &[(&str, [u8; 6])]| {
        let mut n = Neighbours::new();
        for (ipa, m) in neigh {
            n.insert(a(ipa), *m);
        }
        Side {
            mac,
            onlink: onlink.iter().map(|s| p(s)).collect(),
            gateway: None,
            neighbours: n,
            mtu: 1500,
            addrs: vec![],
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
        lan: side(GWA_LAN, &a_ts, &[("10.201.1.2", HA), ("fd00:201:1::2", HA)]),
        wan: side(GWA_WAN, &["10.200.0.0/24"], &[("10.200.0.2", GWB_WAN)]),
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
        lan: side(GWB_LAN, &b_ts, &[("10.201.2.2", HB), ("fd00:201:2::2", HB)]),
        wan: side(GWB_WAN, &["10.200.0.0/24"], &[("10.200.0.1", GWA_WAN)]),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (rtx, rrx) = std::sync::mpsc::channel();
    let ta = run_gateway(gw_a, stop.clone(), rtx.clone());
    let tb = run_gateway(gw_b, stop.clone(), rtx);
    rrx.recv().unwrap();
    rrx.recv().unwrap();

    let v4 = ping(ha, "10.201.2.2");
    let v6 = ping(ha, "fd00:201:2::2");
    stop.store(true, Ordering::Relaxed);
    let pa = ta.join().unwrap();
    let pb = tb.join().unwrap();
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
