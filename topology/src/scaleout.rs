//! `esprit-lab scaleout`: two esprit gateways at one site, each with its own WAN path and its
//! own route-based tunnel to the remote site, both announcing the remote prefixes to the site
//! router over eBGP (with BFD), which spreads flows across them (ECMP, L4 hash) and moves them
//! to the survivor when one gateway's esprit is killed.
//!
//! ```text
//!                        ┌ gw1 10.201.11.1 ── lan0 [gwA1] wan0 10.200.1.1 ── a1 ┐
//! hA eth0 ── lan0 [rA]  ─┤                  esp-t1 169.254.31.1/30             [inet] b ── wan0 [gwB] lan0 ── hB
//! 10.201.1.2  10.201.1.1 └ gw2 10.201.12.1 ── lan0 [gwA2] wan0 10.200.2.1 ── a2 ┘  10.200.0.2  10.201.2.1  10.201.2.2
//!                                           esp-t2 169.254.32.1/30       esp-t1 169.254.31.2/30, esp-t2 169.254.32.2/30
//! ```
//!
//! rA (AS 65010) originates site A's prefixes and peers with gwA1 and gwA2 (AS 65001) over
//! their LAN links; each gateway peers with gwB (AS 65002) over its tunnel and passes routes
//! on both ways. rA installs site B's prefixes as ECMP routes over both gateways
//! (`fib_multipath_hash_policy=1`: addresses, protocol and ports), gwB site A's over both
//! tunnels (the dataplane hashes each flow onto one). A UDP stream each way over many flows
//! runs while gwA1's esprit-ike and esprit-dataplane are SIGKILLed, and again while they are
//! started again; a tcpdump in `inet` counts every packet on the WANs that is not ESP, IKE,
//! ARP or ICMPv6 ND.
//!
//! Site B has one gateway with a tunnel to each of site A's: what is under test is how one
//! site grows past one box, and a second gateway at site B would be the same design mirrored
//! at twice the namespaces and daemons on a small machine.

use crate::bgp::{extra_prefixes, ip, wait_for, BFD, BGP_TIMERS};
use crate::capture::{Cleartext, WanCapture};
use crate::ike::{dataplane_toml, list, psk_auth, write_private, DaemonProcess, IkeSite};
use crate::lab::{Lab, LabSpec, Node, HOST_A, HOST_B, SITE_A, SITE_B};
use crate::routingd::{BfdTimers, Peering, RoutingDaemon, RoutingInstance, TunnelSession};
use crate::stream::{Loss, Stream, SRC_PORT_BASE};
use serde::Serialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Site A's gateways.
pub const GATEWAYS: [Node; 2] = [Node::GwA1, Node::GwA2];
/// The site router's interfaces towards gwA1 and gwA2.
pub const ROUTER_PORTS: [&str; 2] = ["gw1", "gw2"];
/// The networks between the site router (`.1`) and each gateway's `lan0` (`.2`).
pub const LAN_NETS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 201, 11, 0), Ipv4Addr::new(10, 201, 12, 0)];
/// gwA1's and gwA2's WAN addresses.
pub const WAN_A: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 200, 1, 1), Ipv4Addr::new(10, 200, 2, 1)];
/// The router's addresses towards gwA1 and gwA2 (their default routes).
pub const INET_A: [Ipv4Addr; 2] = [
    Ipv4Addr::new(10, 200, 1, 254),
    Ipv4Addr::new(10, 200, 2, 254),
];
/// The router's interfaces towards gwA1 and gwA2.
pub const INET_PORTS: [&str; 2] = ["a1", "a2"];
/// gwB's WAN address.
pub const WAN_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The router's address towards gwB.
pub const INET_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 254);
/// The tunnel interfaces: tunnel `i` joins gateway `i` of site A and gwB, with this name on
/// both.
pub const TUNNELS: [&str; 2] = ["esp-t1", "esp-t2"];
/// The tunnels' link networks (/30): site A's gateway has `.1`, gwB `.2`.
pub const TUNNEL_NETS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 31, 0),
    Ipv4Addr::new(169, 254, 32, 0),
];
/// Unreachable on every gateway: the tunnels' link networks are inside it, so a packet of the
/// gateway's own for a tunnel whose interface is gone is refused instead of routed to the WAN.
pub const TUNNEL_LINKS: &str = "169.254.0.0/16";
/// The tunnel interfaces' MTU.
pub const TUNNEL_MTU: u32 = 1400;
/// The site router's AS.
pub const AS_ROUTER: u32 = 65010;
/// The AS of site A's gateways (one AS for both: the site router sees equal paths).
pub const AS_A: u32 = 65001;
/// Site B's AS.
pub const AS_B: u32 = 65002;
/// The UDP port hB receives the stream from site A on (hA receives the other one on the next).
const STREAM_PORT: u16 = 5500;
/// How long the IKE SAs, the BGP sessions and the routes may take to come up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the counters are read over to see which gateways carry traffic.
const SPREAD_WINDOW: Duration = Duration::from_millis(1500);

/// What to run.
#[derive(Debug, Clone)]
pub struct ScaleoutOptions {
    /// Lab name (namespace prefix).
    pub name: String,
    /// BIRD or FRR.
    pub daemon: RoutingDaemon,
    /// Extra /24s each site announces besides its own prefix.
    pub extra_prefixes: usize,
    /// Interval of each stream (one each way).
    pub interval: Duration,
    /// Flows (source ports) of each stream.
    pub flows: u16,
    /// How long the stream runs after the kill.
    pub kill_for: Duration,
    /// Leave the lab and its daemons running (`esprit-lab down --name NAME` stops them).
    pub keep: bool,
    /// The `esprit-lab` executable that runs esprit-ike and esprit-dataplane.
    pub exe: PathBuf,
}

impl Default for ScaleoutOptions {
    fn default() -> Self {
        ScaleoutOptions {
            name: "esprit-scaleout".into(),
            daemon: RoutingDaemon::Bird,
            extra_prefixes: 50,
            interval: Duration::from_millis(2),
            flows: 16,
            kill_for: Duration::from_secs(3),
            keep: false,
            exe: PathBuf::from("esprit-lab"),
        }
    }
}

/// ESP packets a gateway's dataplane counted over a window: (sent, received), from the
/// packet counters of its outbound and inbound SAs (`stats` on its API socket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EspPackets {
    /// Through its outbound SAs (site A → site B).
    pub sent: u64,
    /// Through its inbound SAs (site B → site A).
    pub received: u64,
}

/// What the lab measured. The first eight fields are the documented JSON.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleoutReport {
    /// The routing daemon.
    pub daemon: RoutingDaemon,
    /// Gateways at site A.
    pub gateways: usize,
    /// Of the flows hA → hB, how many the site router's ECMP route sends through gwA1 and
    /// gwA2 (`ip route get … ipproto udp sport … dport …` on rA), before the kill.
    pub flows_per_gateway: [usize; 2],
    /// Datagrams of both streams lost from the SIGKILL of gwA1's esprit to the end of the
    /// stream.
    pub kill_lost_packets: usize,
    /// The longest outage of any flow of either stream after the kill, ms: how long until all
    /// traffic was on the survivor.
    pub kill_failover_ms: f64,
    /// Datagrams of both streams lost while gwA1's esprit started again and rejoined.
    pub rejoin_lost_packets: usize,
    /// Packets on the WANs that were not ESP, IKE/NAT-T, ARP or ICMPv6 ND, over the whole run.
    pub cleartext_packets: usize,
    /// Site B's prefixes in the site router's kernel as ECMP routes through both gateways.
    pub prefixes_learned: usize,
    /// Site A's prefixes in gwB's kernel as ECMP routes over both tunnels.
    pub prefixes_learned_gw_b: usize,
    /// Prefixes each site announces.
    pub prefixes_announced: usize,
    /// Flows per stream.
    pub flows: u16,
    /// ESP packets per gateway while both ran, before the kill.
    pub esp_before_kill: [EspPackets; 2],
    /// The stream hA → hB across the kill.
    pub kill_forward: Loss,
    /// The stream hB → hA across the kill.
    pub kill_reverse: Loss,
    /// From the SIGKILL until neither rA's route to site B nor gwB's to site A used gwA1, ms.
    pub kill_routes_moved_ms: f64,
    /// A stream hA → hB once failed over.
    pub survivor_forward: Loss,
    /// A stream hB → hA at the same time.
    pub survivor_reverse: Loss,
    /// ESP packets of gwA2 during those streams (it carried every datagram of them).
    pub survivor_esp: EspPackets,
    /// The stream hA → hB across the rejoin.
    pub rejoin_forward: Loss,
    /// The stream hB → hA across the rejoin.
    pub rejoin_reverse: Loss,
    /// From starting gwA1's esprit again until both ECMP routes used it again, ms.
    pub rejoin_ms: f64,
    /// Flows hA → hB through gwA1 and gwA2 after the rejoin.
    pub flows_per_gateway_after_rejoin: [usize; 2],
    /// ESP packets per gateway after the rejoin.
    pub esp_after_rejoin: [EspPackets; 2],
    /// Each site A gateway's dataplane drops at the end (`forwarding_drops` and `sadb_drops`
    /// of `stats`; gwA1's since its restart).
    pub drops_at_end: [Value; 2],
    /// The BFD timers.
    pub bfd: BfdTimers,
    /// The first clear-text packets, if any.
    pub cleartext_samples: Vec<String>,
    /// What `--keep` left running: (node, program, pid).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<(String, String, u32)>,
}

/// Address `host` of a /24 or /30 network.
fn host(net: Ipv4Addr, host: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net) + host)
}

/// The index of one of site A's gateways.
fn index(gw: Node) -> Result<usize, String> {
    GATEWAYS
        .iter()
        .position(|&g| g == gw)
        .ok_or_else(|| format!("{gw} is not one of site A's gateways (gwA1, gwA2)"))
}

/// The routing daemon's configuration for a node of the lab: rA, gwA1, gwA2 or gwB.
pub fn peering(node: Node, extra: usize) -> Result<Peering, String> {
    let session = |interface: &str, local, neighbor, remote_as| TunnelSession {
        interface: interface.into(),
        local,
        neighbor,
        remote_as,
    };
    let base = |hostname: Node, router_id, local_as, remote_as| Peering {
        hostname: hostname.to_string(),
        router_id,
        local_as,
        remote_as,
        sessions: Vec::new(),
        site: None,
        lan: "lan0".into(),
        extra: Vec::new(),
        transit: false,
        bfd: BFD,
        keepalive_secs: BGP_TIMERS.0,
        hold_secs: BGP_TIMERS.1,
    };
    Ok(match node {
        Node::RouterA => Peering {
            sessions: (0..2)
                .map(|i| {
                    let (me, gw) = (host(LAN_NETS[i], 1), host(LAN_NETS[i], 2));
                    session(ROUTER_PORTS[i], me, gw, None)
                })
                .collect(),
            site: Some(SITE_A.into()),
            extra: extra_prefixes(Node::GwA, extra),
            ..base(node, host(LAN_NETS[0], 1), AS_ROUTER, AS_A)
        },
        Node::GwB => Peering {
            sessions: (0..2)
                .map(|t| {
                    let (me, gw) = (host(TUNNEL_NETS[t], 2), host(TUNNEL_NETS[t], 1));
                    session(TUNNELS[t], me, gw, None)
                })
                .collect(),
            site: Some(SITE_B.into()),
            extra: extra_prefixes(Node::GwB, extra),
            ..base(node, WAN_B, AS_B, AS_A)
        },
        gw => {
            let i = index(gw)?;
            Peering {
                sessions: vec![
                    session(
                        "lan0",
                        host(LAN_NETS[i], 2),
                        host(LAN_NETS[i], 1),
                        Some(AS_ROUTER),
                    ),
                    session(
                        TUNNELS[i],
                        host(TUNNEL_NETS[i], 1),
                        host(TUNNEL_NETS[i], 2),
                        None,
                    ),
                ],
                transit: true,
                ..base(gw, WAN_A[i], AS_A, AS_B)
            }
        }
    })
}

/// esprit-dataplane's `[[tunnel]]` tables and `[routing]` for a gateway: one tunnel on each
/// of site A's, two on gwB.
pub fn dataplane_tunnels(node: Node) -> Result<String, String> {
    let tunnel = |t: usize, peer: Ipv4Addr, me: u32| {
        format!(
            "[[tunnel]]\nname = \"{}\"\npeer = \"{peer}\"\naddresses = [\"{}/30\"]\nmtu = {TUNNEL_MTU}\n\n",
            TUNNELS[t],
            host(TUNNEL_NETS[t], me)
        )
    };
    let mut s = if node == Node::GwB {
        (0..2).map(|t| tunnel(t, WAN_A[t], 2)).collect()
    } else {
        let i = index(node)?;
        tunnel(i, WAN_B, 1)
    };
    s.push_str("[routing]\nmax_routes = 100000\n");
    Ok(s)
}

/// esprit-ike's configuration for a gateway: on gwA1 and gwA2 one connection to gwB, which
/// they initiate; on gwB one per site A gateway. Every child is route-based
/// (`0.0.0.0/0 === 0.0.0.0/0`); each gateway has an identity of its own.
pub fn ike_toml(node: Node, dp_socket: &Path, socket: &Path) -> Result<String, String> {
    let site = IkeSite::default();
    let mut s = format!(
        "[daemon]\ndataplane_socket = \"{}\"\nsocket = \"{}\"\nretransmit_timeout = \"1s\"\n\n",
        dp_socket.display(),
        socket.display()
    );
    // (connection, local address, remote address, local id, remote id, start action)
    let conns: Vec<(String, Ipv4Addr, Ipv4Addr, String, String, &str)> = if node == Node::GwB {
        GATEWAYS
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let c = format!("to-{g}");
                (c, WAN_B, WAN_A[i], "gwB".into(), g.to_string(), "none")
            })
            .collect()
    } else {
        let i = index(node)?;
        vec![(
            "to-gwB".into(),
            WAN_A[i],
            WAN_B,
            node.to_string(),
            "gwB".into(),
            "start",
        )]
    };
    let mut secrets = String::new();
    for (c, me, peer, lid, rid, start) in conns {
        let (local, remote, secret) = psk_auth(&lid, &rid);
        secrets.push_str(&secret);
        s.push_str(&format!(
            "[connections.{c}]\nlocal_addrs = [\"{me}\"]\nremote_addrs = [\"{peer}\"]\nproposals = {}\n\
             local = {local}\nremote = {remote}\nstart_action = \"{start}\"\n\n\
             [connections.{c}.children.routed]\nlocal_ts = [\"0.0.0.0/0\"]\nremote_ts = [\"0.0.0.0/0\"]\n\
             esp_proposals = {}\n\n",
            list(&site.proposals),
            list(&site.esp_proposals),
        ));
    }
    s.push_str(&secrets);
    Ok(s)
}

/// The veths: (node, interface, node, interface, addresses of the first, of the second).
type Link = (Node, &'static str, Node, &'static str, String, String);

fn links() -> Vec<Link> {
    let mut l: Vec<Link> = vec![(
        Node::HostA,
        "eth0",
        Node::RouterA,
        "lan0",
        format!("{}/24", HOST_A.0),
        "10.201.1.1/24".into(),
    )];
    for i in 0..2 {
        l.push((
            Node::RouterA,
            ROUTER_PORTS[i],
            GATEWAYS[i],
            "lan0",
            format!("{}/24", host(LAN_NETS[i], 1)),
            format!("{}/24", host(LAN_NETS[i], 2)),
        ));
        l.push((
            GATEWAYS[i],
            "wan0",
            Node::Inet,
            INET_PORTS[i],
            format!("{}/24", WAN_A[i]),
            format!("{}/24", INET_A[i]),
        ));
    }
    l.push((
        Node::Inet,
        "b",
        Node::GwB,
        "wan0",
        format!("{INET_B}/24"),
        format!("{WAN_B}/24"),
    ));
    l.push((
        Node::GwB,
        "lan0",
        Node::HostB,
        "eth0",
        "10.201.2.1/24".into(),
        format!("{}/24", HOST_B.0),
    ));
    l
}

/// The namespaces, from site A to site B.
pub const NODES: [Node; 7] = [
    Node::HostA,
    Node::RouterA,
    Node::GwA1,
    Node::GwA2,
    Node::Inet,
    Node::GwB,
    Node::HostB,
];

/// Builds the lab (removing any lab of the same name first): namespaces, veths, addresses,
/// default routes, forwarding, and L4 multipath hashing on the site router. No route between
/// the sites: BGP brings those.
pub fn build(name: &str) -> Result<Lab, String> {
    let lab = Lab::new(LabSpec {
        name: name.into(),
        ..LabSpec::default()
    });
    lab.spec.validate().map_err(|e| e.to_string())?;
    lab.down().map_err(|e| e.to_string())?;
    let built = build_in(&lab);
    if built.is_err() {
        let _ = lab.down();
    }
    built.map(|()| lab)
}

fn build_in(lab: &Lab) -> Result<(), String> {
    let what = format!("building lab {}", lab.spec.name);
    let run = |args: &[&str]| {
        crate::cmd::run(&what, args)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for n in NODES {
        crate::netns::add(&what, &lab.ns(n)).map_err(|e| e.to_string())?;
        let mut sysctls = vec![
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ];
        if !matches!(n, Node::HostA | Node::HostB) {
            sysctls.extend([
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ]);
        }
        if n == Node::RouterA {
            sysctls.push("net.ipv4.fib_multipath_hash_policy=1");
        }
        let ns = lab.ns(n);
        let mut args = vec!["ip", "netns", "exec", &ns, "sysctl", "-qw"];
        args.extend(sysctls);
        run(&args)?;
    }
    for (a, ia, b, ib, addr_a, addr_b) in links() {
        let (nsa, nsb) = (lab.ns(a), lab.ns(b));
        let (maca, macb) = (crate::plan::mac(a, ia), crate::plan::mac(b, ib));
        run(&[
            "ip", "-n", &nsa, "link", "add", "name", ia, "address", &maca, "type", "veth", "peer",
            "name", ib, "address", &macb, "netns", &nsb,
        ])?;
        for (ns, i, addr) in [(&nsa, ia, &addr_a), (&nsb, ib, &addr_b)] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", i])?;
            run(&["ip", "-n", ns, "link", "set", "dev", i, "up"])?;
        }
    }
    let gw_default = [
        (Node::HostA, "10.201.1.1".to_string()),
        (Node::HostB, "10.201.2.1".to_string()),
        (Node::GwA1, INET_A[0].to_string()),
        (Node::GwA2, INET_A[1].to_string()),
        (Node::GwB, INET_B.to_string()),
    ];
    for (n, via) in gw_default {
        run(&[
            "ip",
            "-n",
            &lab.ns(n),
            "route",
            "add",
            "default",
            "via",
            &via,
        ])?;
    }
    // Once a tunnel interface is gone (its dataplane dead), the gateway's own packets to the
    // tunnel's far end (BGP, BFD) would take the default route to the WAN in clear text: FRR
    // does not bind its sessions to the interface, and its BGP FIN did, before this route.
    for n in [Node::GwA1, Node::GwA2, Node::GwB] {
        run(&[
            "ip",
            "-n",
            &lab.ns(n),
            "route",
            "add",
            "unreachable",
            TUNNEL_LINKS,
        ])?;
    }
    Ok(())
}

/// The interfaces of `node`'s IPv4 kernel route to `dst` (a prefix as `ip route` prints it),
/// empty when it has none.
pub fn route_devs(lab: &Lab, node: Node, dst: &str) -> Result<Vec<String>, String> {
    let text = ip(lab, node, &["-j", "-4", "route", "show"])?;
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("{node}: ip -j route: {e}"))?;
    let Some(r) = v.as_array().into_iter().flatten().find(|r| r["dst"] == dst) else {
        return Ok(Vec::new());
    };
    let mut devs: Vec<String> = match r["nexthops"].as_array() {
        Some(hops) => hops
            .iter()
            .filter_map(|h| h["dev"].as_str().map(String::from))
            .collect(),
        None => r["dev"].as_str().map(String::from).into_iter().collect(),
    };
    devs.sort();
    Ok(devs)
}

/// How many of `node`'s IPv4 kernel routes among `prefixes` go through exactly `devs`.
fn routes_through(
    lab: &Lab,
    node: Node,
    prefixes: &[String],
    devs: &[&str],
) -> Result<usize, String> {
    let text = ip(lab, node, &["-j", "-4", "route", "show"])?;
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("{node}: ip -j route: {e}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["dst"]
                .as_str()
                .is_some_and(|d| prefixes.iter().any(|p| p == d))
        })
        .filter(|r| {
            let mut got: Vec<&str> = match r["nexthops"].as_array() {
                Some(h) => h.iter().filter_map(|h| h["dev"].as_str()).collect(),
                None => r["dev"].as_str().into_iter().collect(),
            };
            got.sort_unstable();
            got == devs
        })
        .count())
}

/// Which gateway (0: gwA1, 1: gwA2) the site router's ECMP route sends flow `flow` of the
/// stream hA → hB through, as the kernel's multipath hash picks it.
fn gateway_of_flow(lab: &Lab, flow: u16) -> Result<Option<usize>, String> {
    let sport = (SRC_PORT_BASE + flow).to_string();
    let dport = STREAM_PORT.to_string();
    let text = ip(
        lab,
        Node::RouterA,
        &[
            "-j", "route", "get", HOST_B.0, "from", HOST_A.0, "iif", "lan0", "ipproto", "udp",
            "sport", &sport, "dport", &dport,
        ],
    )?;
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("ip route get: {e}"))?;
    let dev = v[0]["dev"].as_str().unwrap_or_default();
    Ok(ROUTER_PORTS.iter().position(|p| *p == dev))
}

fn flows_per_gateway(lab: &Lab, flows: u16) -> Result<[usize; 2], String> {
    let mut n = [0; 2];
    for f in 0..flows {
        if let Some(g) = gateway_of_flow(lab, f)? {
            n[g] += 1;
        }
    }
    Ok(n)
}

/// `stats` of the dataplane answering on `socket` (null if it does not).
fn stats(socket: &Path) -> Value {
    dataplane::api::Client::connect(socket)
        .and_then(|mut c| c.call(dataplane::api::Request::Stats))
        .unwrap_or_default()
}

/// The ESP packet counters of the dataplane answering on `socket` (zero if it does not).
fn esp_packets(socket: &Path) -> EspPackets {
    let v = stats(socket);
    let mut n = EspPackets::default();
    for sa in v["sas"].as_array().into_iter().flatten() {
        let p = sa["packets"].as_u64().unwrap_or(0);
        if sa["direction"] == "out" {
            n.sent += p;
        } else {
            n.received += p;
        }
    }
    n
}

fn delta(after: EspPackets, before: EspPackets) -> EspPackets {
    EspPackets {
        sent: after.sent.saturating_sub(before.sent),
        received: after.received.saturating_sub(before.received),
    }
}

/// esprit on one gateway: its dataplane and esprit-ike, and their files.
struct Esprit {
    node: Node,
    dp_conf: PathBuf,
    ike_conf: PathBuf,
    dp: Option<DaemonProcess>,
    ike: Option<DaemonProcess>,
}

impl Esprit {
    fn configure(node: Node, dir: &Path, workers: u32) -> Result<Esprit, String> {
        let dp_sock = dir.join(format!("{node}-dp.sock"));
        let dp_conf = dir.join(format!("{node}-dp.toml"));
        let text = dataplane_toml(&dp_sock, workers, &dataplane_tunnels(node)?);
        std::fs::write(&dp_conf, text).map_err(|e| format!("{}: {e}", dp_conf.display()))?;
        let ike_conf = dir.join(format!("{node}-ike.toml"));
        let text = ike_toml(node, &dp_sock, &dir.join(format!("{node}-ike.sock")))?;
        write_private(&ike_conf, &text)?;
        Ok(Esprit {
            node,
            dp_conf,
            ike_conf,
            dp: None,
            ike: None,
        })
    }

    fn start_dataplane(&mut self, lab: &Lab, exe: &Path) -> Result<(), String> {
        self.dp = Some(DaemonProcess::dataplane(
            lab,
            self.node,
            exe,
            &self.dp_conf,
        )?);
        Ok(())
    }

    fn start_ike(&mut self, lab: &Lab, exe: &Path) -> Result<(), String> {
        self.ike = Some(DaemonProcess::ike(lab, self.node, exe, &self.ike_conf)?);
        Ok(())
    }

    fn dp_socket(&self) -> PathBuf {
        self.dp_conf
            .with_file_name(format!("{}-dp.sock", self.node))
    }

    fn esp(&self) -> EspPackets {
        esp_packets(&self.dp_socket())
    }

    /// Waits until esprit-ike has `n` established IKE SAs with a child each.
    fn wait_children(&self, n: usize) -> Result<(), String> {
        let ike = self.ike.as_ref().ok_or("esprit-ike is not running")?;
        wait_for(
            &format!("{}: {n} IKE SA(s) with their child", self.node),
            SETUP_TIMEOUT,
            || {
                let up = ike
                    .list()?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| {
                        s["state"] == "established"
                            && s["children"].as_array().is_some_and(|c| !c.is_empty())
                    })
                    .count();
                Ok((up >= n).then_some(()))
            },
        )
    }

    /// SIGKILL both, as a crash.
    fn kill(&mut self) {
        for p in [self.ike.as_mut(), self.dp.as_mut()].into_iter().flatten() {
            p.kill();
        }
        self.ike = None;
        self.dp = None;
    }
}

/// Everything running in the lab.
struct Running {
    esprit: Vec<Esprit>,
    routing: Vec<(Node, RoutingInstance)>,
}

impl Running {
    fn esprit(&mut self, n: Node) -> Result<&mut Esprit, String> {
        self.esprit
            .iter_mut()
            .find(|e| e.node == n)
            .ok_or_else(|| format!("no esprit on {n}"))
    }

    fn esp(&self, n: Node) -> EspPackets {
        self.esprit
            .iter()
            .find(|e| e.node == n)
            .map(Esprit::esp)
            .unwrap_or_default()
    }

    /// Leaves everything running and records it in the lab's state directory.
    fn keep(self, lab: &str) -> Result<Vec<(String, String, u32)>, String> {
        let mut kept = Vec::new();
        for e in self.esprit {
            for (what, p) in [("esprit-dataplane", e.dp), ("esprit-ike", e.ike)] {
                if let Some(pid) = p.and_then(DaemonProcess::detach) {
                    kept.push((e.node.to_string(), what.to_string(), pid));
                }
            }
        }
        for (node, r) in self.routing {
            for (pid, what) in r.detach() {
                kept.push((node.to_string(), what.to_string(), pid));
            }
        }
        for (node, what, pid) in &kept {
            crate::kept::record(lab, *pid, &format!("{node} {what}"))?;
        }
        Ok(kept)
    }
}

fn start(
    o: &ScaleoutOptions,
    lab: &Lab,
    dir: &Path,
    say: &mut impl FnMut(&str),
) -> Result<Running, String> {
    let mut r = Running {
        esprit: Vec::new(),
        routing: Vec::new(),
    };
    say("starting esprit-dataplane on gwA1, gwA2 (one tunnel interface each) and gwB (two)");
    for node in [Node::GwA1, Node::GwA2, Node::GwB] {
        let mut e = Esprit::configure(node, dir, lab.spec.queues)?;
        e.start_dataplane(lab, &o.exe)?;
        r.esprit.push(e);
    }
    say("starting esprit-ike: gwA1 and gwA2 each initiate one IKE SA to gwB, children 0.0.0.0/0 === 0.0.0.0/0");
    for node in [Node::GwB, Node::GwA1, Node::GwA2] {
        r.esprit(node)?.start_ike(lab, &o.exe)?;
    }
    for node in [Node::GwA1, Node::GwA2] {
        r.esprit(node)?.wait_children(1)?;
    }
    r.esprit(Node::GwB)?.wait_children(2)?;
    say(&format!(
        "  both tunnels keyed; starting {} on rA, gwA1, gwA2 and gwB",
        o.daemon
    ));
    for node in [Node::RouterA, Node::GwA1, Node::GwA2, Node::GwB] {
        let p = peering(node, o.extra_prefixes)?;
        let inst = RoutingInstance::start(lab, node, o.daemon, dir, &p)?;
        r.routing.push((node, inst));
    }
    Ok(r)
}

/// Which of site A's gateways the routes use: rA's to site B (through `gw1`/`gw2`) and gwB's
/// to site A (over `esp-t1`/`esp-t2`).
fn gateways_in_use(lab: &Lab) -> Result<([bool; 2], [bool; 2]), String> {
    let ra = route_devs(lab, Node::RouterA, SITE_B)?;
    let b = route_devs(lab, Node::GwB, SITE_A)?;
    Ok((
        ROUTER_PORTS.map(|p| ra.iter().any(|d| d == p)),
        TUNNELS.map(|t| b.iter().any(|d| d == t)),
    ))
}

/// Waits until every BGP session is up and both rA's and gwB's routes to the other site use
/// both of site A's gateways.
fn wait_converged(r: &Running, lab: &Lab, timeout: Duration) -> Result<(), String> {
    for (node, inst) in &r.routing {
        wait_for(
            &format!("{node}: both BGP sessions established"),
            timeout,
            || Ok((inst.sessions_established()? >= 2).then_some(())),
        )?;
    }
    wait_for(
        "rA's route to site B through both gateways and gwB's to site A over both tunnels",
        timeout,
        || Ok((gateways_in_use(lab)? == ([true; 2], [true; 2])).then_some(())),
    )
}

/// A stream each way: hA → hB (spread by rA) and hB → hA (spread by gwB).
fn streams(lab: &Lab, o: &ScaleoutOptions) -> Result<[Stream; 2], String> {
    let a: IpAddr = HOST_A.0.parse().map_err(|e| format!("{e}"))?;
    let b: IpAddr = HOST_B.0.parse().map_err(|e| format!("{e}"))?;
    let fwd = Stream::start(
        lab,
        (Node::HostA, a),
        (Node::HostB, SocketAddr::new(b, STREAM_PORT)),
        o.interval,
        o.flows,
    )?;
    let rev = Stream::start(
        lab,
        (Node::HostB, b),
        (Node::HostA, SocketAddr::new(a, STREAM_PORT + 1)),
        o.interval,
        o.flows,
    )?;
    Ok([fwd, rev])
}

/// Stops both streams at the same moment and returns what each lost.
fn finish([fwd, rev]: [Stream; 2]) -> Result<(Loss, Loss), String> {
    std::thread::scope(|sc| {
        let rev = sc.spawn(|| rev.finish());
        let fwd = fwd.finish()?;
        let rev = rev.join().map_err(|_| "the stream hB -> hA panicked")??;
        Ok((fwd, rev))
    })
}

/// Runs the scale-out lab; `say` receives progress lines. The lab is removed at the end unless
/// `keep`.
pub fn run(o: &ScaleoutOptions, mut say: impl FnMut(&str)) -> Result<ScaleoutReport, String> {
    crate::kept::cloexec_inherited();
    crate::kept::stop_all(&o.name);
    say(&format!(
        "building the lab {}: hA — rA ⟨gwA1, gwA2⟩ ═ inet ═ gwB — hB",
        o.name
    ));
    let lab = build(&o.name)?;
    let dir = crate::kept::run_dir(&o.name, o.keep)?;
    let result = run_in(o, &lab, &dir, &mut say);
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
        lab.down().map_err(|e| e.to_string())?;
    }
    result.map_err(|e| {
        if o.keep {
            format!("{e} (logs in {})", dir.display())
        } else {
            e
        }
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run_in(
    o: &ScaleoutOptions,
    lab: &Lab,
    dir: &Path,
    say: &mut impl FnMut(&str),
) -> Result<ScaleoutReport, String> {
    say("capturing on every WAN (in inet): anything not ESP, IKE, ARP or ICMPv6 ND is clear text");
    let capture = WanCapture::start(lab, Node::Inet, &dir.join("wan-cleartext.pcap"))?;
    let mut r = start(o, lab, dir, say)?;
    wait_converged(&r, lab, SETUP_TIMEOUT)?;
    let site_b: Vec<String> = std::iter::once(SITE_B.to_string())
        .chain(extra_prefixes(Node::GwB, o.extra_prefixes))
        .collect();
    let site_a: Vec<String> = std::iter::once(SITE_A.to_string())
        .chain(extra_prefixes(Node::GwA, o.extra_prefixes))
        .collect();
    let announced = site_b.len();
    wait_for(
        &format!("{announced} ECMP routes on rA and on gwB"),
        SETUP_TIMEOUT,
        || {
            let ra = routes_through(lab, Node::RouterA, &site_b, &ROUTER_PORTS)?;
            let b = routes_through(lab, Node::GwB, &site_a, &TUNNELS)?;
            Ok((ra >= announced && b >= announced).then_some(()))
        },
    )?;
    let learned = routes_through(lab, Node::RouterA, &site_b, &ROUTER_PORTS)?;
    let learned_b = routes_through(lab, Node::GwB, &site_a, &TUNNELS)?;
    say(&format!(
        "  converged: rA has {learned} of site B's {announced} prefixes as ECMP routes through gwA1 and gwA2, \
         gwB {learned_b} of site A's over both tunnels"
    ));

    let flows = flows_per_gateway(lab, o.flows)?;
    say(&format!(
        "streams hA -> hB and hB -> hA, one datagram every {:?} each over {} flows; rA hashes {} flow(s) to gwA1, {} to gwA2",
        o.interval, o.flows, flows[0], flows[1]
    ));
    let s = streams(lab, o)?;
    let before = GATEWAYS.map(|g| r.esp(g));
    std::thread::sleep(SPREAD_WINDOW);
    let esp_before_kill = [0, 1].map(|i| delta(r.esp(GATEWAYS[i]), before[i]));
    say(&format!(
        "  ESP packets over {SPREAD_WINDOW:?}: gwA1 {} sent / {} received, gwA2 {} / {}",
        esp_before_kill[0].sent,
        esp_before_kill[0].received,
        esp_before_kill[1].sent,
        esp_before_kill[1].received
    ));
    say("SIGKILL of gwA1's esprit-ike and esprit-dataplane");
    let killed = Instant::now();
    r.esprit(Node::GwA1)?.kill();
    let moved = wait_for("the routes to leave gwA1", SETUP_TIMEOUT, || {
        let (ra, b) = gateways_in_use(lab)?;
        Ok((ra == [false, true] && b == [false, true]).then(|| killed.elapsed()))
    })?;
    if let Some(rest) = o.kill_for.checked_sub(killed.elapsed()) {
        std::thread::sleep(rest);
    }
    let (kill_fwd, kill_rev) = finish(s)?;
    let kill_lost = kill_fwd.lost + kill_rev.lost;
    let kill_ms = kill_fwd.outage_ms.max(kill_rev.outage_ms);
    say(&format!(
        "  lost {} of {} (hA -> hB) and {} of {} (hB -> hA); longest outage {kill_ms:.0} ms; routes off gwA1 after {:.0} ms; recovered: {}",
        kill_fwd.lost,
        kill_fwd.sent,
        kill_rev.lost,
        kill_rev.sent,
        ms(moved),
        kill_fwd.recovered && kill_rev.recovered
    ));

    let before = r.esp(Node::GwA2);
    let s = streams(lab, o)?;
    std::thread::sleep(Duration::from_secs(1));
    let (sv_fwd, sv_rev) = finish(s)?;
    let survivor_esp = delta(r.esp(Node::GwA2), before);
    say(&format!(
        "  on the survivor alone: lost {} of {} (hA -> hB) and {} of {} (hB -> hA); gwA2 sent {} and received {} ESP packets",
        sv_fwd.lost,
        sv_fwd.sent,
        sv_rev.lost,
        sv_rev.sent,
        survivor_esp.sent,
        survivor_esp.received
    ));

    say("starting gwA1's esprit-dataplane and esprit-ike again, streams running");
    let s = streams(lab, o)?;
    std::thread::sleep(Duration::from_millis(500));
    let restarted = Instant::now();
    {
        let e = r.esprit(Node::GwA1)?;
        e.start_dataplane(lab, &o.exe)?;
        e.start_ike(lab, &o.exe)?;
        e.wait_children(1)?;
    }
    wait_converged(&r, lab, SETUP_TIMEOUT)?;
    let rejoin = restarted.elapsed();
    // The dataplanes follow the kernel's routes within tens of milliseconds.
    std::thread::sleep(Duration::from_millis(300));
    let before = GATEWAYS.map(|g| r.esp(g));
    std::thread::sleep(SPREAD_WINDOW);
    let esp_after_rejoin = [0, 1].map(|i| delta(r.esp(GATEWAYS[i]), before[i]));
    let (rj_fwd, rj_rev) = finish(s)?;
    let flows_after = flows_per_gateway(lab, o.flows)?;
    let drops_at_end = GATEWAYS.map(|g| {
        let v = r
            .esprit
            .iter()
            .find(|e| e.node == g)
            .map(|e| stats(&e.dp_socket()))
            .unwrap_or_default();
        serde_json::json!({"forwarding": v["forwarding_drops"], "sadb": v["sadb_drops"]})
    });
    say(&format!(
        "  rejoined after {:.0} ms; lost {} of {} (hA -> hB) and {} of {} (hB -> hA); rA hashes {} flow(s) to gwA1, {} to gwA2; \
         ESP packets over {SPREAD_WINDOW:?}: gwA1 {} / {}, gwA2 {} / {}",
        ms(rejoin),
        rj_fwd.lost,
        rj_fwd.sent,
        rj_rev.lost,
        rj_rev.sent,
        flows_after[0],
        flows_after[1],
        esp_after_rejoin[0].sent,
        esp_after_rejoin[0].received,
        esp_after_rejoin[1].sent,
        esp_after_rejoin[1].received
    ));
    let kept = if o.keep { r.keep(&o.name)? } else { Vec::new() };
    let clear: Cleartext = capture.finish()?;
    say(&format!(
        "clear text on the WANs over the whole run: {} packet(s)",
        clear.packets
    ));
    for l in &clear.samples {
        say(&format!("  {l}"));
    }
    Ok(ScaleoutReport {
        daemon: o.daemon,
        gateways: GATEWAYS.len(),
        flows_per_gateway: flows,
        kill_lost_packets: kill_lost,
        kill_failover_ms: kill_ms,
        rejoin_lost_packets: rj_fwd.lost + rj_rev.lost,
        cleartext_packets: clear.packets,
        prefixes_learned: learned,
        prefixes_learned_gw_b: learned_b,
        prefixes_announced: announced,
        flows: o.flows,
        esp_before_kill,
        kill_forward: kill_fwd,
        kill_reverse: kill_rev,
        kill_routes_moved_ms: ms(moved),
        survivor_forward: sv_fwd,
        survivor_reverse: sv_rev,
        survivor_esp,
        rejoin_forward: rj_fwd,
        rejoin_reverse: rj_rev,
        rejoin_ms: ms(rejoin),
        flows_per_gateway_after_rejoin: flows_after,
        esp_after_rejoin,
        drops_at_end,
        bfd: BFD,
        cleartext_samples: clear.samples,
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_router_peers_with_both_gateways_and_they_pass_routes_on() {
        let ra = peering(Node::RouterA, 2).unwrap();
        assert_eq!((ra.local_as, ra.remote_as), (AS_ROUTER, AS_A));
        assert_eq!(ra.sessions[1].interface, "gw2");
        assert_eq!(ra.sessions[1].neighbor, Ipv4Addr::new(10, 201, 12, 2));
        assert_eq!(ra.announced(), 3);
        assert!(!ra.transit);
        let g = peering(Node::GwA2, 2).unwrap();
        assert!(g.transit && g.site.is_none() && g.extra.is_empty());
        assert_eq!(g.sessions[0].peer_as(&g), AS_ROUTER);
        assert_eq!(g.sessions[1].peer_as(&g), AS_B);
        assert_eq!(g.sessions[1].neighbor, Ipv4Addr::new(169, 254, 32, 2));
        let b = peering(Node::GwB, 0).unwrap();
        assert_eq!(b.sessions[0].neighbor, Ipv4Addr::new(169, 254, 31, 1));
        assert!(peering(Node::HostA, 0).is_err());
        let c = crate::routingd::bird_conf(&g, Path::new("/x/bird.log"));
        assert!(
            c.contains("export where proto = \"announced\" || source = RTS_BGP;"),
            "{c}"
        );
        assert!(c.contains("neighbor 10.201.12.1 as 65010;"), "{c}");
        assert!(!c.contains(" via \"lan0\";"), "{c}");
        let f = crate::routingd::frr_conf(&g, Path::new("/x/frr.log"));
        assert!(f.contains(" neighbor 10.201.12.1 remote-as 65010\n"), "{f}");
        assert!(
            f.contains(" neighbor 169.254.32.2 remote-as 65002\n"),
            "{f}"
        );
        assert!(!f.contains("  network "), "{f}");
    }

    #[test]
    fn each_site_a_gateway_has_one_tunnel_and_gw_b_one_per_gateway() {
        let t = dataplane_tunnels(Node::GwA2).unwrap();
        assert_eq!(t.matches("[[tunnel]]").count(), 1);
        assert!(
            t.contains(
                "name = \"esp-t2\"\npeer = \"10.200.0.2\"\naddresses = [\"169.254.32.1/30\"]"
            ),
            "{t}"
        );
        let t = dataplane_tunnels(Node::GwB).unwrap();
        assert_eq!(t.matches("[[tunnel]]").count(), 2);
        assert!(
            t.contains("peer = \"10.200.1.1\"\naddresses = [\"169.254.31.2/30\"]"),
            "{t}"
        );
        let dir = std::env::temp_dir().join(format!("esprit-scaleout-ike-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (node, conns, start) in [(Node::GwA1, 1, 1), (Node::GwB, 2, 0)] {
            let t = ike_toml(node, Path::new("/r/dp.sock"), Path::new("/r/ike.sock")).unwrap();
            assert_eq!(t.matches("start_action = \"start\"").count(), start, "{t}");
            let path = dir.join(format!("{node}.toml"));
            write_private(&path, &t).unwrap();
            let cfg = control::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{t}"));
            assert_eq!(cfg.connections.len(), conns);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_link_joins_two_nodes_of_the_lab() {
        let l = links();
        assert_eq!(l.len(), 7);
        for (a, ia, b, ib, _, _) in &l {
            assert!(NODES.contains(a) && NODES.contains(b));
            assert!(ia.len() <= 15 && ib.len() <= 15);
        }
        let mut macs: Vec<String> = l
            .iter()
            .flat_map(|(a, ia, b, ib, _, _)| [crate::plan::mac(*a, ia), crate::plan::mac(*b, ib)])
            .collect();
        macs.sort();
        macs.dedup();
        assert_eq!(macs.len(), 2 * l.len());
        assert!(!macs.iter().any(|m| m.ends_with("ff")));
    }
}
