//! `esprit-lab bgp`: two sites joined by two route-based esprit tunnels over two WAN paths,
//! with eBGP and BFD over each tunnel (BIRD 2 or FRR), ECMP across the tunnels, and a
//! failover measured when one WAN path is cut.
//!
//! ```text
//!                      10.200.1.1 (A1) ┐         ┌ (B1) 10.200.0.2
//! hA — lan0 [gwA] wan0 10.200.1.2 (A2) ┴ in0 [inet] out0 ┴ (B2) 10.200.0.3 wan0 [gwB] lan0 — hB
//!        esp-t1 169.254.21.1/30 ══ tunnel 1 (A1 ↔ B1) ══ 169.254.21.2/30 esp-t1
//!        esp-t2 169.254.22.1/30 ══ tunnel 2 (A2 ↔ B2) ══ 169.254.22.2/30 esp-t2
//! ```
//!
//! The lab is the `--nat` lab with its NAT namespace turned into a plain router (the
//! "internet": no masquerade) and a second WAN address on each gateway. Each gateway runs
//! esprit-dataplane with two `[[tunnel]]` interfaces (one per peer address), esprit-ike with
//! two connections (one per WAN address pair) whose children are `0.0.0.0/0 === 0.0.0.0/0`,
//! and the routing daemon with one eBGP session per tunnel. Site A announces 10.201.1.0/24 and
//! `extra` /24s of 10.210.0.0/16…, site B 10.201.2.0/24 and as many of 10.220.0.0/16…. Path 1
//! is cut in the router (an nftables drop of A1 ↔ B1, the gateways untouched) while hB streams
//! UDP to hA; BFD finds the tunnel dead, BGP withdraws its routes, the kernel's ECMP routes
//! keep the other tunnel, and the dataplane follows them. A tcpdump in the router counts every
//! packet on the WAN that is not ESP, IKE, ARP or ICMPv6 ND for the whole run.

use crate::capture::{Cleartext, WanCapture};
use crate::ike::{list, psk_auth, write_private, DaemonProcess, IkeSite};
use crate::lab::{Lab, LabSpec, Node, HOST_A, HOST_B, SITE_A, SITE_B};
use crate::routingd::{BfdTimers, Peering, RoutingDaemon, RoutingInstance, TunnelSession};
use crate::stream::{Loss, Stream};
use serde::Serialize;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// gwA's WAN addresses (A1: the lab's own, A2: added).
pub const WAN_A: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 200, 1, 1), Ipv4Addr::new(10, 200, 1, 2)];
/// gwB's WAN addresses (B1: the lab's own, B2: added).
pub const WAN_B: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 200, 0, 2), Ipv4Addr::new(10, 200, 0, 3)];
/// The tunnel interfaces (the same names on both gateways): tunnel `i` runs over WAN path `i`.
pub const TUNNELS: [&str; 2] = ["esp-t1", "esp-t2"];
/// The tunnels' link networks (/30): gwA has `.1`, gwB `.2`.
pub const TUNNEL_NETS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 21, 0),
    Ipv4Addr::new(169, 254, 22, 0),
];
/// The tunnel interfaces' MTU.
pub const TUNNEL_MTU: u32 = 1400;
/// Site A's AS and site B's.
pub const AS: [u32; 2] = [65001, 65002];
/// The nftables table (family `ip`) in the router that cuts WAN path 1.
pub const CUT_TABLE: &str = "esprit_cut";
/// The BFD timers of every session.
pub const BFD: BfdTimers = BfdTimers {
    interval_ms: 100,
    multiplier: 3,
};
/// BGP keepalive and hold times, seconds (the fallback when BFD is not there).
pub const BGP_TIMERS: (u32, u32) = (1, 3);
/// The UDP port hA receives the failover stream on.
const STREAM_PORT: u16 = 5400;
/// How long the IKE SAs, the BGP sessions and the routes may take to come up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(45);

/// What to run.
#[derive(Debug, Clone)]
pub struct BgpOptions {
    /// Lab name (namespace prefix).
    pub name: String,
    /// BIRD or FRR.
    pub daemon: RoutingDaemon,
    /// Extra /24s each site announces besides its own prefix.
    pub extra_prefixes: usize,
    /// Bytes of the TCP transfer hA → hB.
    pub tcp_bytes: usize,
    /// Interval of the failover stream hB → hA.
    pub interval: Duration,
    /// Flows (source ports) of the stream.
    pub flows: u16,
    /// How long the stream runs after path 1 is cut.
    pub cut_for: Duration,
    /// Leave the lab and its daemons running (`esprit-lab down --name NAME` stops them).
    pub keep: bool,
    /// The `esprit-lab` executable that runs esprit-ike and esprit-dataplane.
    pub exe: PathBuf,
}

impl Default for BgpOptions {
    fn default() -> Self {
        BgpOptions {
            name: "esprit-bgp".into(),
            daemon: RoutingDaemon::Bird,
            extra_prefixes: 300,
            tcp_bytes: 32 << 20,
            interval: Duration::from_millis(5),
            flows: 8,
            cut_for: Duration::from_secs(4),
            keep: false,
            exe: PathBuf::from("esprit-lab"),
        }
    }
}

/// What the lab measured. The first seven fields are the documented JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BgpReport {
    /// Kernel routes on gwA through its tunnel interfaces (learned from site B).
    pub prefixes_learned_a: usize,
    /// Kernel routes on gwB through its tunnel interfaces.
    pub prefixes_learned_b: usize,
    /// The TCP transfer hA → hB arrived whole (SHA-256 equal).
    pub tcp_sha256_ok: bool,
    /// The longest outage of any flow of the stream hB → hA when path 1 was cut, ms.
    pub failover_ms: f64,
    /// Datagrams of that stream lost.
    pub failover_lost_packets: usize,
    /// Packets on the WAN that were not ESP, IKE/NAT-T, ARP or ICMPv6 ND, over the whole run.
    pub cleartext_packets: usize,
    /// The routing daemon.
    pub daemon: RoutingDaemon,
    /// Prefixes each site announces.
    pub prefixes_announced: usize,
    /// Of the learned routes, how many are ECMP over both tunnels (gwA, gwB).
    pub ecmp_routes: [usize; 2],
    /// The routing daemons' own route counts (gwA, gwB).
    pub daemon_route_count: [String; 2],
    /// The failover stream in full.
    pub failover: Loss,
    /// While cut, gwB's route to site A used only tunnel 2.
    pub withdrawn_while_cut: bool,
    /// A stream after path 1 was restored and both sessions were up again.
    pub after_restore: Loss,
    /// Both tunnels carried site A's route on gwB again after the restore.
    pub ecmp_restored: bool,
    /// Bytes that arrived over TCP.
    pub tcp_bytes: u64,
    /// The BFD timers.
    pub bfd: BfdTimers,
    /// The first clear-text packets, if any.
    pub cleartext_samples: Vec<String>,
    /// What `--keep` left running: (node, program, pid).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<(String, String, u32)>,
}

/// The side of a gateway: its index in [`WAN_A`]/[`AS`]-style pairs, its peer's WAN addresses.
fn side(node: Node) -> (usize, [Ipv4Addr; 2], [Ipv4Addr; 2]) {
    if node == Node::GwA {
        (0, WAN_A, WAN_B)
    } else {
        (1, WAN_B, WAN_A)
    }
}

/// A gateway's address on tunnel `t` (gwA `.1`, gwB `.2`).
pub fn tunnel_addr(node: Node, t: usize) -> Ipv4Addr {
    let host = if node == Node::GwA { 1 } else { 2 };
    Ipv4Addr::from(u32::from(TUNNEL_NETS[t]) + host)
}

/// The extra prefixes a gateway's site announces: /24s of 10.210.0.0/15 (site A) or
/// 10.220.0.0/15 (site B).
pub fn extra_prefixes(node: Node, n: usize) -> Vec<String> {
    let base = if node == Node::GwA { 210u32 } else { 220 };
    (0..n as u32)
        .map(|i| {
            let a = Ipv4Addr::from((10 << 24) | (base << 16) | (i << 8));
            format!("{a}/24")
        })
        .collect()
}

/// The routing daemon's configuration for a gateway.
pub fn peering(node: Node, extra: usize) -> Peering {
    let (i, wan, _) = side(node);
    Peering {
        hostname: node.to_string(),
        router_id: wan[0],
        local_as: AS[i],
        remote_as: AS[1 - i],
        sessions: (0..TUNNELS.len())
            .map(|t| TunnelSession {
                interface: TUNNELS[t].into(),
                local: tunnel_addr(node, t),
                neighbor: tunnel_addr(if i == 0 { Node::GwB } else { Node::GwA }, t),
                remote_as: None,
            })
            .collect(),
        site: Some(if i == 0 { SITE_A } else { SITE_B }.into()),
        lan: "lan0".into(),
        extra: extra_prefixes(node, extra),
        transit: false,
        bfd: BFD,
        keepalive_secs: BGP_TIMERS.0,
        hold_secs: BGP_TIMERS.1,
    }
}

/// esprit-dataplane's `[[tunnel]]` tables and `[routing]` for a gateway.
pub fn dataplane_tunnels(node: Node) -> String {
    let (_, _, peer) = side(node);
    let mut s = String::new();
    for (t, name) in TUNNELS.iter().enumerate() {
        s.push_str(&format!(
            "[[tunnel]]\nname = \"{name}\"\npeer = \"{}\"\naddresses = [\"{}/30\"]\nmtu = {TUNNEL_MTU}\n\n",
            peer[t],
            tunnel_addr(node, t)
        ));
    }
    s.push_str("[routing]\nmax_routes = 100000\n");
    s
}

/// esprit-ike's configuration for a gateway: one connection per WAN address pair, each with
/// one route-based child (`0.0.0.0/0 === 0.0.0.0/0`); gwA initiates.
pub fn ike_toml(node: Node, dp_socket: &Path, socket: &Path) -> String {
    let (i, wan, peer) = side(node);
    let (me, other) = if i == 0 {
        ("gwA", "gwB")
    } else {
        ("gwB", "gwA")
    };
    let site = IkeSite::default();
    let start = if i == 0 { "start" } else { "none" };
    let mut s = format!(
        "[daemon]\ndataplane_socket = \"{}\"\nsocket = \"{}\"\nretransmit_timeout = \"1s\"\n\n",
        dp_socket.display(),
        socket.display()
    );
    let mut secrets = String::new();
    for p in 0..2 {
        let c = format!("path{}", p + 1);
        // An identity per path: a peer's INITIAL_CONTACT replaces every IKE SA with the same
        // identity (RFC 7296 2.4), so with one identity for both, setting up the second tunnel
        // would tear down the first.
        let (local, remote, secret) = psk_auth(&format!("{me}-{c}"), &format!("{other}-{c}"));
        secrets.push_str(&secret);
        s.push_str(&format!(
            "[connections.{c}]\nlocal_addrs = [\"{}\"]\nremote_addrs = [\"{}\"]\nproposals = {}\n\
             local = {local}\nremote = {remote}\nstart_action = \"{start}\"\n\n\
             [connections.{c}.children.routed]\nlocal_ts = [\"0.0.0.0/0\"]\nremote_ts = [\"0.0.0.0/0\"]\n\
             esp_proposals = {}\n\n",
            wan[p],
            peer[p],
            list(&site.proposals),
            list(&site.esp_proposals),
        ));
    }
    s.push_str(&secrets);
    s
}

pub(crate) fn ip(lab: &Lab, node: Node, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    let out = lab.exec(node, &full).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{node}: `{}` failed: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nft(lab: &Lab, args: &[&str]) -> Result<(), String> {
    let mut full = vec!["nft"];
    full.extend_from_slice(args);
    let out = lab.exec(Node::Nat, &full).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "router: `{}` failed: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Builds the lab: the `--nat` lab, its NAT turned into a plain router, a second WAN address
/// on each gateway.
pub fn build(name: &str) -> Result<Lab, String> {
    let spec = LabSpec {
        name: name.into(),
        nat: true,
        ..LabSpec::default()
    };
    let lab = Lab::new(spec.clone());
    lab.down().map_err(|e| e.to_string())?;
    let lab = Lab::up(&spec).map_err(|e| e.to_string())?;
    nft(&lab, &["delete", "table", "ip", crate::lab::NAT_TABLE])?;
    for (node, a) in [(Node::GwA, WAN_A[1]), (Node::GwB, WAN_B[1])] {
        ip(
            &lab,
            node,
            &["addr", "add", &format!("{a}/24"), "dev", "wan0"],
        )?;
    }
    Ok(lab)
}

/// Cuts WAN path 1 (A1 ↔ B1) in the router, both ways, silently (no ICMP error).
pub fn cut_path1(lab: &Lab) -> Result<(), String> {
    nft(lab, &["add", "table", "ip", CUT_TABLE])?;
    nft(
        lab,
        &[
            "add",
            "chain",
            "ip",
            CUT_TABLE,
            "forward",
            "{ type filter hook forward priority filter - 10 ; }",
        ],
    )?;
    for (s, d) in [(WAN_A[0], WAN_B[0]), (WAN_B[0], WAN_A[0])] {
        let (s, d) = (s.to_string(), d.to_string());
        nft(
            lab,
            &[
                "add", "rule", "ip", CUT_TABLE, "forward", "ip", "saddr", &s, "ip", "daddr", &d,
                "drop",
            ],
        )?;
    }
    Ok(())
}

/// Restores WAN path 1.
pub fn restore_path1(lab: &Lab) -> Result<(), String> {
    nft(lab, &["delete", "table", "ip", CUT_TABLE])
}

/// The tunnel interfaces a kernel route (as `ip -j route` gives it) goes through.
fn route_tunnels(r: &Value) -> Vec<&str> {
    let devs: Vec<&str> = match r["nexthops"].as_array() {
        Some(hops) => hops.iter().filter_map(|h| h["dev"].as_str()).collect(),
        None => r["dev"].as_str().into_iter().collect(),
    };
    devs.into_iter().filter(|d| TUNNELS.contains(d)).collect()
}

/// A gateway's IPv4 kernel routes through its tunnel interfaces, the interfaces' own link
/// routes left out: (destination, tunnels).
pub fn tunnel_routes(lab: &Lab, node: Node) -> Result<Vec<(String, Vec<String>)>, String> {
    let text = ip(lab, node, &["-j", "-4", "route", "show"])?;
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("{node}: ip -j route: {e}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"] != "kernel")
        .filter_map(|r| {
            let t = route_tunnels(r);
            let dst = r["dst"].as_str()?;
            (!t.is_empty()).then(|| (dst.to_string(), t.into_iter().map(String::from).collect()))
        })
        .collect())
}

/// Polls `check` every 100 ms until it gives a value or `timeout` passes.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            return Err(format!("{what}: not after {timeout:?} {last}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn established_children(ike: &DaemonProcess) -> Result<usize, String> {
    Ok(ike
        .list()?
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["state"] == "established" && s["children"].as_array().is_some_and(|c| !c.is_empty())
        })
        .count())
}

/// The other site's prefix on gwB (site A's) goes through these tunnels.
fn site_a_tunnels_on_b(lab: &Lab) -> Result<Vec<String>, String> {
    Ok(tunnel_routes(lab, Node::GwB)?
        .into_iter()
        .find(|(d, _)| d == SITE_A)
        .map(|(_, t)| t)
        .unwrap_or_default())
}

/// Everything running on the gateways.
struct Gateways {
    esprit: Vec<(Node, &'static str, DaemonProcess)>,
    routing: Vec<(Node, RoutingInstance)>,
}

impl Gateways {
    fn routing(&self, n: Node) -> Option<&RoutingInstance> {
        self.routing.iter().find(|(m, _)| *m == n).map(|(_, r)| r)
    }

    /// Leaves everything running and records it in the lab's state directory.
    fn keep(self, lab: &str) -> Result<Vec<(String, String, u32)>, String> {
        let mut kept = Vec::new();
        for (node, what, p) in self.esprit {
            if let Some(pid) = p.detach() {
                kept.push((node.to_string(), what.to_string(), pid));
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

fn start_gateways(
    o: &BgpOptions,
    lab: &Lab,
    dir: &Path,
    say: &mut impl FnMut(&str),
) -> Result<Gateways, String> {
    let mut g = Gateways {
        esprit: Vec::new(),
        routing: Vec::new(),
    };
    say("starting esprit-dataplane on gwA and gwB, two tunnel interfaces each (esp-t1, esp-t2)");
    for node in [Node::GwA, Node::GwB] {
        let sock = dir.join(format!("{node}-dp.sock"));
        let path = dir.join(format!("{node}-dp.toml"));
        let text = crate::ike::dataplane_toml(&sock, lab.spec.queues, &dataplane_tunnels(node));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dp = DaemonProcess::dataplane(lab, node, &o.exe, &path)?;
        g.esprit.push((node, "esprit-dataplane", dp));
    }
    say("starting esprit-ike: two connections per gateway (A1↔B1, A2↔B2), children 0.0.0.0/0 === 0.0.0.0/0");
    for node in [Node::GwB, Node::GwA] {
        let path = dir.join(format!("{node}-ike.toml"));
        let text = ike_toml(
            node,
            &dir.join(format!("{node}-dp.sock")),
            &dir.join(format!("{node}-ike.sock")),
        );
        write_private(&path, &text)?;
        let ike = DaemonProcess::ike(lab, node, &o.exe, &path)?;
        g.esprit.push((node, "esprit-ike", ike));
    }
    for (node, _, ike) in g.esprit.iter().filter(|e| e.1 == "esprit-ike") {
        wait_for(
            &format!("{node}: both IKE SAs with their child"),
            SETUP_TIMEOUT,
            || Ok((established_children(ike)? >= 2).then_some(())),
        )?;
    }
    say(&format!(
        "  both tunnels keyed; starting {} on gwA and gwB",
        o.daemon
    ));
    for node in [Node::GwA, Node::GwB] {
        let r = RoutingInstance::start(lab, node, o.daemon, dir, &peering(node, o.extra_prefixes))?;
        g.routing.push((node, r));
    }
    Ok(g)
}

/// Waits until both sessions of both gateways are up and each has learned the other's
/// prefixes into its kernel (over both tunnels).
fn wait_converged(
    g: &Gateways,
    lab: &Lab,
    announced: usize,
    timeout: Duration,
) -> Result<(), String> {
    for node in [Node::GwA, Node::GwB] {
        let r = g.routing(node).ok_or("no routing daemon")?;
        wait_for(
            &format!("{node}: both BGP sessions established"),
            timeout,
            || Ok((r.sessions_established()? >= TUNNELS.len()).then_some(())),
        )?;
        wait_for(
            &format!("{node}: {announced} ECMP routes in the kernel"),
            timeout,
            || {
                let routes = tunnel_routes(lab, node)?;
                let ecmp = routes
                    .iter()
                    .filter(|(_, t)| t.len() >= TUNNELS.len())
                    .count();
                Ok((ecmp >= announced).then_some(()))
            },
        )?;
    }
    Ok(())
}

fn stream(lab: &Lab, o: &BgpOptions) -> Result<Stream, String> {
    let src: IpAddr = HOST_B.0.parse().map_err(|e| format!("{e}"))?;
    let dst: IpAddr = HOST_A.0.parse().map_err(|e| format!("{e}"))?;
    Stream::start(
        lab,
        (Node::HostB, src),
        (Node::HostA, SocketAddr::new(dst, STREAM_PORT)),
        o.interval,
        o.flows,
    )
}

/// Runs the BGP lab; `say` receives progress lines. The lab is removed at the end unless
/// `keep`.
pub fn run(o: &BgpOptions, mut say: impl FnMut(&str)) -> Result<BgpReport, String> {
    crate::kept::cloexec_inherited();
    crate::kept::stop_all(&o.name);
    say(&format!(
        "building the lab {}: hA — gwA ═ inet ═ gwB — hB, two WAN addresses per gateway",
        o.name
    ));
    let lab = build(&o.name)?;
    let dir = crate::kept::run_dir(&o.name, o.keep)?;
    let result = run_in(o, &lab, &dir, &mut say);
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
        lab.down().map_err(|e| e.to_string())?;
    }
    // With `keep`, a failed run leaves the lab and the daemons' logs in `dir` to look at.
    result.map_err(|e| {
        if o.keep {
            format!("{e} (logs in {})", dir.display())
        } else {
            e
        }
    })
}

fn run_in(
    o: &BgpOptions,
    lab: &Lab,
    dir: &Path,
    say: &mut impl FnMut(&str),
) -> Result<BgpReport, String> {
    say("capturing on the WAN (router namespace): anything not ESP, IKE, ARP or ICMPv6 ND is clear text");
    let capture = WanCapture::start(lab, Node::Nat, &dir.join("wan-cleartext.pcap"))?;
    let g = start_gateways(o, lab, dir, say)?;
    let announced = 1 + o.extra_prefixes;
    wait_converged(&g, lab, announced, SETUP_TIMEOUT)?;
    let learned = [
        tunnel_routes(lab, Node::GwA)?,
        tunnel_routes(lab, Node::GwB)?,
    ];
    let ecmp = learned
        .clone()
        .map(|r| r.iter().filter(|(_, t)| t.len() >= 2).count());
    let counts = [Node::GwA, Node::GwB].map(|n| {
        g.routing(n)
            .map(|r| r.route_count().unwrap_or_else(|e| e))
            .unwrap_or_default()
    });
    say(&format!(
        "  routes through the tunnels: gwA {} ({} ECMP), gwB {} ({} ECMP); {} says:",
        learned[0].len(),
        ecmp[0],
        learned[1].len(),
        ecmp[1],
        o.daemon
    ));
    for (n, c) in ["gwA", "gwB"].iter().zip(&counts) {
        for l in c.lines().filter(|l| !l.trim().is_empty()) {
            say(&format!("    {n}: {l}"));
        }
    }
    say(&format!(
        "TCP transfer of {} MiB hA -> hB, SHA-256 checked",
        o.tcp_bytes >> 20
    ));
    let (tcp_bytes, same, _) =
        crate::demo::tcp_transfer(lab, o.tcp_bytes).map_err(|e| e.to_string())?;
    let tcp_ok = same && tcp_bytes == o.tcp_bytes as u64;
    say(&format!(
        "  {tcp_bytes} bytes, SHA-256 {}",
        if tcp_ok { "ok" } else { "MISMATCH" }
    ));

    say(&format!(
        "failover: UDP hB -> hA every {:?} over {} flows; cutting WAN path 1 (A1 {} ↔ B1 {}) in the router",
        o.interval, o.flows, WAN_A[0], WAN_B[0]
    ));
    let s = stream(lab, o)?;
    std::thread::sleep(Duration::from_secs(1));
    cut_path1(lab)?;
    std::thread::sleep(o.cut_for);
    let withdrawn = site_a_tunnels_on_b(lab)? == vec![TUNNELS[1].to_string()];
    let failover = s.finish()?;
    say(&format!(
        "  {} of {} datagrams lost ({} flow(s) hit), longest outage {:.0} ms, recovered: {}; gwB's route to {SITE_A} {} tunnel 1",
        failover.lost,
        failover.sent,
        failover.flows_hit,
        failover.outage_ms,
        failover.recovered,
        if withdrawn { "left" } else { "did NOT leave" }
    ));
    say("restoring WAN path 1; waiting for both sessions and the ECMP routes");
    restore_path1(lab)?;
    let restored = wait_converged(&g, lab, announced, SETUP_TIMEOUT);
    let ecmp_restored = restored.is_ok() && site_a_tunnels_on_b(lab)?.len() == 2;
    if let Err(e) = &restored {
        say(&format!("  not restored: {e}"));
    }
    let s = stream(lab, o)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = s.finish()?;
    say(&format!(
        "  after the restore: {} of {} datagrams lost",
        after.lost, after.sent
    ));
    let kept = if o.keep { g.keep(&o.name)? } else { Vec::new() };
    let clear: Cleartext = capture.finish()?;
    say(&format!(
        "clear text on the WAN over the whole run: {} packet(s)",
        clear.packets
    ));
    for l in &clear.samples {
        say(&format!("  {l}"));
    }
    Ok(BgpReport {
        prefixes_learned_a: learned[0].len(),
        prefixes_learned_b: learned[1].len(),
        tcp_sha256_ok: tcp_ok,
        failover_ms: failover.outage_ms,
        failover_lost_packets: failover.lost,
        cleartext_packets: clear.packets,
        daemon: o.daemon,
        prefixes_announced: announced,
        ecmp_routes: ecmp,
        daemon_route_count: counts,
        failover,
        withdrawn_while_cut: withdrawn,
        after_restore: after,
        ecmp_restored,
        tcp_bytes,
        bfd: BFD,
        cleartext_samples: clear.samples,
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_is_mirrored() {
        assert_eq!(tunnel_addr(Node::GwA, 0), Ipv4Addr::new(169, 254, 21, 1));
        assert_eq!(tunnel_addr(Node::GwB, 1), Ipv4Addr::new(169, 254, 22, 2));
        let a = peering(Node::GwA, 3);
        assert_eq!(a.sessions[1].neighbor, Ipv4Addr::new(169, 254, 22, 2));
        assert_eq!((a.local_as, a.remote_as), (65001, 65002));
        assert_eq!(a.extra, ["10.210.0.0/24", "10.210.1.0/24", "10.210.2.0/24"]);
        assert_eq!(extra_prefixes(Node::GwB, 300)[299], "10.221.43.0/24");
        let t = dataplane_tunnels(Node::GwB);
        assert!(
            t.contains(
                "name = \"esp-t1\"\npeer = \"10.200.1.1\"\naddresses = [\"169.254.21.2/30\"]"
            ),
            "{t}"
        );
    }

    #[test]
    fn ike_has_a_routed_child_per_path() {
        let t = ike_toml(Node::GwA, Path::new("/r/dp.sock"), Path::new("/r/ike.sock"));
        assert!(
            t.contains("local_addrs = [\"10.200.1.2\"]\nremote_addrs = [\"10.200.0.3\"]"),
            "{t}"
        );
        assert_eq!(
            t.matches("local_ts = [\"0.0.0.0/0\"]\nremote_ts = [\"0.0.0.0/0\"]")
                .count(),
            2
        );
        assert_eq!(t.matches("start_action = \"start\"").count(), 2);
        let dir = std::env::temp_dir().join(format!("esprit-bgp-ike-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ike.toml");
        write_private(&path, &t).unwrap();
        let cfg = control::config::Config::load(&path);
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(cfg.connections.len(), 2);
    }

    #[test]
    fn routes_through_tunnels_are_recognised() {
        let multi: Value = serde_json::json!({"dst": "10.201.2.0/24", "nexthops": [
            {"gateway": "169.254.21.2", "dev": "esp-t1"}, {"gateway": "169.254.22.2", "dev": "esp-t2"}]});
        assert_eq!(route_tunnels(&multi), ["esp-t1", "esp-t2"]);
        let single: Value = serde_json::json!({"dst": "10.201.2.0/24", "dev": "esp-t2"});
        assert_eq!(route_tunnels(&single), ["esp-t2"]);
        let lan: Value = serde_json::json!({"dst": "10.201.1.0/24", "dev": "lan0"});
        assert!(route_tunnels(&lan).is_empty());
    }
}
