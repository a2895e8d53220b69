//! A route-based esprit against a route-based strongSwan, carrying BGP: esprit's tunnel
//! interface on gwA (`[[tunnel]]`), strongSwan's kernel-libipsec `ipsec0` on gwB with an
//! address of the tunnel's link and no routes of its own (`install_routes = no`), children
//! `0.0.0.0/0 === 0.0.0.0/0` on both sides, and BIRD on both gateways peering over the tunnel
//! with BFD. Each side learns the other's prefixes through the tunnel, traffic between the
//! sites follows them (ping, a TCP transfer checked by SHA-256), and when the IKE SA goes the
//! routes go with it.

use esprit_testkit::{require, require_root};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use topology::ike::{write_configs, DataplaneThread, IkeDaemon, IkeSite};
use topology::routingd::{BfdTimers, Peering, RoutingDaemon, RoutingInstance, TunnelSession};
use topology::strongswan::{ensure_installed, Charon, CharonSpec};
use topology::{Lab, LabGuard, LabSpec, Node};

const WAIT: Duration = Duration::from_secs(30);
/// The tunnel's link: esprit .1, strongSwan .2.
const LINK: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 50, 1),
    Ipv4Addr::new(169, 254, 50, 2),
];
/// Extra prefixes each site announces besides its LAN.
const EXTRA: usize = 50;

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn peering(a: bool, interface: &str) -> Peering {
    let (i, base) = if a { (0, 230u32) } else { (1, 231) };
    Peering {
        hostname: if a { "gwA" } else { "gwB" }.into(),
        router_id: LINK[i],
        local_as: [65101, 65102][i],
        remote_as: [65101, 65102][1 - i],
        sessions: vec![TunnelSession {
            interface: interface.into(),
            local: LINK[i],
            neighbor: LINK[1 - i],
            remote_as: None,
        }],
        site: Some(if a { "10.201.1.0/24" } else { "10.201.2.0/24" }.into()),
        lan: "lan0".into(),
        extra: (0..EXTRA as u32)
            .map(|k| {
                format!(
                    "{}/24",
                    Ipv4Addr::from((10 << 24) | (base << 16) | (k << 8))
                )
            })
            .collect(),
        transit: false,
        bfd: BfdTimers {
            interval_ms: 200,
            multiplier: 3,
        },
        keepalive_secs: 1,
        hold_secs: 3,
    }
}

/// Kernel routes through `dev` in `node` (BGP's, not the link's own).
fn routes_via(lab: &Lab, node: Node, dev: &str) -> usize {
    let out = lab
        .exec(
            node,
            &["ip", "-4", "route", "show", "dev", dev, "proto", "bird"],
        )
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn wait_routes(lab: &Lab, node: Node, dev: &str, want: usize, log: impl Fn() -> String) {
    let start = Instant::now();
    while routes_via(lab, node, dev) < want {
        assert!(
            start.elapsed() < WAIT,
            "{node}: {} of {want} routes via {dev}\n{}",
            routes_via(lab, node, dev),
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root, strongSwan and BIRD: ./ci/test.sh runs it as root"]
fn route_based_esprit_and_strongswan_carry_bgp_and_traffic() {
    require_root();
    require(ensure_installed(), "strongSwan");
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-bs{}", std::process::id()),
        ..LabSpec::default()
    })
    .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!("esprit-bs-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    // strongSwan: any-to-any child, ESP through ipsec0, routes left to BIRD.
    let mut spec = CharonSpec::lab_gw_b(&lab);
    spec.local_ts = vec!["0.0.0.0/0".into()];
    spec.remote_ts = vec!["0.0.0.0/0".into()];
    spec.install_routes = false;
    let charon = Charon::start(&lab, Node::GwB, &dir.0.join("gwB"), &spec).unwrap();
    let ip = |node: Node, args: &[&str]| {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        let out = lab.exec(node, &all).unwrap();
        assert!(
            out.status.success(),
            "{all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(
        Node::GwB,
        &["addr", "add", "169.254.50.2/30", "dev", "ipsec0"],
    );
    // esprit: the same, with a tunnel interface for gwB.
    let site = IkeSite {
        proposals: spec.proposals.clone(),
        esp_proposals: spec.esp_proposals.clone(),
        start_action: "start".into(),
        // strongSwan with kernel-libipsec always sends ESP in UDP.
        encap: true,
        route_based: true,
        dataplane_extra: format!(
            "[[tunnel]]\nname = \"esp-ss\"\npeer = \"{}\"\naddresses = [\"169.254.50.1/30\"]\n",
            lab.gw_b_wan()
        ),
        ..IkeSite::default()
    };
    let (ike_cfg, dp_cfg) = write_configs(&lab, Node::GwA, &dir.0, &site).unwrap();
    let dp = DataplaneThread::start(&lab, Node::GwA, dp_cfg).unwrap();
    let ike = IkeDaemon::start(&lab, Node::GwA, &ike_cfg).unwrap();
    ike.wait_child(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n--- charon ---\n{}", charon.log()));
    let ss = charon.wait_established(WAIT).unwrap();
    assert!(
        ss.installed_child("net").is_some(),
        "strongSwan installed the child"
    );
    // BIRD on both gateways, over esp-ss and ipsec0.
    let bird_a = RoutingInstance::start(
        &lab,
        Node::GwA,
        RoutingDaemon::Bird,
        &dir.0,
        &peering(true, "esp-ss"),
    )
    .unwrap();
    let bird_b = RoutingInstance::start(
        &lab,
        Node::GwB,
        RoutingDaemon::Bird,
        &dir.0,
        &peering(false, "ipsec0"),
    )
    .unwrap();
    let logs = || {
        let routes = lab
            .exec(Node::GwB, &["ip", "route", "show", "table", "all"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "--- gwA bird ---\n{}\n--- gwB bird ---\n{}\n--- gwB routes ---\n{routes}\n--- charon ---\n{}",
            bird_a.cmd("show protocols all").unwrap_or_default(),
            bird_b.cmd("show protocols all").unwrap_or_default(),
            charon.log()
        )
    };
    wait_routes(&lab, Node::GwA, "esp-ss", 1 + EXTRA, logs);
    wait_routes(&lab, Node::GwB, "ipsec0", 1 + EXTRA, logs);
    // The dataplane follows the learned routes into its table.
    let dp_routes = dataplane::api::Client::connect(&dir.0.join("gwA-dp.sock"))
        .and_then(|mut c| c.call(dataplane::api::Request::RouteList))
        .unwrap();
    let learned = dp_routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "kernel" && r["tunnel"] == lab.gw_b_wan())
        .count();
    assert!(learned > EXTRA, "dataplane routes: {dp_routes}");
    // Traffic between the sites follows them, both ways.
    for (node, dst, text) in topology::demo::ping_across(&lab).unwrap() {
        assert!(
            topology::demo::loss(&text) <= 20.0,
            "{node} -> {dst}:\n{text}\n{}",
            logs()
        );
    }
    let (n, ok, _) = topology::demo::tcp_transfer(&lab, 4 << 20).unwrap();
    assert_eq!(n, 4 << 20);
    assert!(ok, "SHA-256 of the TCP stream differs");
    // Without the tunnel, BFD and BGP take the routes away on both sides.
    ike.call(&control::daemon::control::ControlRequest::Terminate {
        conn: "site".into(),
    })
    .unwrap();
    ike.wait_empty(WAIT).unwrap();
    let start = Instant::now();
    while routes_via(&lab, Node::GwA, "esp-ss") + routes_via(&lab, Node::GwB, "ipsec0") > 0 {
        assert!(
            start.elapsed() < WAIT,
            "routes stayed after the tunnel went:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(bird_a);
    drop(bird_b);
    ike.stop().unwrap();
    dp.stop().unwrap();
    charon.stop();
}
