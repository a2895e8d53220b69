//! Building, checking, describing and removing a lab, and running things inside it.

use crate::cmd::{output, run, run_json};
use crate::netns;
use crate::plan::Plan;
use serde::Serialize;
use std::ffi::OsStr;
use std::fmt;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output};

pub use crate::cmd::LabError;
pub use crate::netns::is_root;
pub use crate::spec::{LabSpec, Node};

/// Site A's prefix (IPv4).
pub const SITE_A: &str = "10.201.1.0/24";
/// Site B's prefix (IPv4).
pub const SITE_B: &str = "10.201.2.0/24";
/// Site A's prefix (IPv6).
pub const SITE_A6: &str = "fd00:201:1::/64";
/// Site B's prefix (IPv6).
pub const SITE_B6: &str = "fd00:201:2::/64";
/// Host A's addresses.
pub const HOST_A: (&str, &str) = ("10.201.1.2", "fd00:201:1::2");
/// Host B's addresses.
pub const HOST_B: (&str, &str) = ("10.201.2.2", "fd00:201:2::2");
/// The NAT's public address (what gwB sees gwA's IPv4 traffic come from, with `nat`).
pub const NAT_PUBLIC: &str = "10.200.0.254";
/// The nftables table (family `ip`) holding the NAT's masquerade, in the `nat` node.
pub const NAT_TABLE: &str = "esprit_nat";

/// How [`Lab::up_report`] got the lab to its specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpOutcome {
    /// Nothing of the lab existed; it was built.
    Built,
    /// The lab already matched its specification and was left alone (running processes and
    /// namespaces unchanged).
    Kept,
    /// Part of the lab existed but differed (the reasons); it was removed and built again.
    Rebuilt(Vec<String>),
}

impl fmt::Display for UpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpOutcome::Built => f.write_str("built"),
            UpOutcome::Kept => f.write_str("already up, unchanged"),
            UpOutcome::Rebuilt(why) => write!(f, "rebuilt ({})", why.join("; ")),
        }
    }
}

/// A lab: its specification (the namespaces live in the kernel).
#[derive(Debug, Clone)]
pub struct Lab {
    /// What it was built from.
    pub spec: LabSpec,
}

/// What the kernel has for a lab: namespaces, interfaces, addresses, MACs, routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabInfo {
    /// Lab name.
    pub name: String,
    /// A NAT sits between the gateways.
    pub nat: bool,
    /// The sites are routed to each other in the kernel.
    pub routed: bool,
    /// Queues per veth.
    pub queues: u32,
    /// MTU of the veths.
    pub mtu: u32,
    /// The nodes, from site A to site B.
    pub nodes: Vec<NodeInfo>,
}

/// One node of a [`LabInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Short name (`hA`, `gwA`, `nat`, `gwB`, `hB`).
    pub node: String,
    /// Its network namespace.
    pub namespace: String,
    /// The namespace exists.
    pub exists: bool,
    /// Its veth interfaces.
    pub interfaces: Vec<IfaceInfo>,
    /// Its static routes (`<dst> via <next hop>`).
    pub routes: Vec<String>,
}

/// One interface of a [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfaceInfo {
    /// Interface name.
    pub name: String,
    /// The other end of the veth (`node/interface`).
    pub peer: String,
    /// MAC address.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// RX queues.
    pub rx_queues: u32,
    /// TX queues.
    pub tx_queues: u32,
    /// Administratively up with its peer up (operstate UP).
    pub up: bool,
    /// Global addresses with prefix length.
    pub addresses: Vec<String>,
}

fn links_json(what: &str, ns: &str) -> Result<Vec<serde_json::Value>, LabError> {
    let v = run_json(what, &["ip", "-n", ns, "-j", "-d", "addr", "show"])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn routes_json(what: &str, ns: &str) -> Result<Vec<(String, String)>, LabError> {
    let mut routes = Vec::new();
    for fam in ["-4", "-6"] {
        let v = run_json(what, &["ip", "-n", ns, "-j", fam, "route", "show"])?;
        for r in v.as_array().into_iter().flatten() {
            if let (Some(dst), Some(gw)) = (r["dst"].as_str(), r["gateway"].as_str()) {
                routes.push((dst.to_string(), gw.to_string()));
            }
        }
    }
    Ok(routes)
}

fn iface_info(j: &serde_json::Value, peer: String) -> IfaceInfo {
    let num = |k: &str| j[k].as_u64().unwrap_or(0) as u32;
    let admin_up = j["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    IfaceInfo {
        name: j["ifname"].as_str().unwrap_or_default().to_string(),
        peer,
        mac: j["address"].as_str().unwrap_or_default().to_string(),
        mtu: num("mtu"),
        rx_queues: num("num_rx_queues"),
        tx_queues: num("num_tx_queues"),
        up: admin_up && j["operstate"] == "UP",
        addresses: j["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect(),
    }
}

impl Lab {
    /// A handle on the lab of this specification (nothing is built or checked).
    pub fn new(spec: LabSpec) -> Lab {
        Lab { spec }
    }

    /// A handle on an existing lab of this name, its specification read back from the kernel
    /// (NAT present, kernel routes between the sites, queues and MTU of gwA's LAN veth).
    pub fn find(name: &str) -> Result<Lab, LabError> {
        let mut lab = Lab::new(LabSpec {
            name: name.to_string(),
            ..LabSpec::default()
        });
        lab.spec.validate()?;
        lab.spec.nat = netns::id(&lab.ns(Node::Nat)).is_some();
        let gwa = lab.ns(Node::GwA);
        if netns::id(&gwa).is_some() {
            let what = format!("reading lab {name}");
            if let Some(l) = links_json(&what, &gwa)?
                .iter()
                .find(|l| l["ifname"] == "lan0")
            {
                let i = iface_info(l, String::new());
                lab.spec.queues = i.rx_queues.max(1);
                lab.spec.mtu = (i.mtu != 1500 && i.mtu != 0).then_some(i.mtu);
            }
            let router = if lab.spec.nat { Node::Nat } else { Node::GwA };
            if netns::id(&lab.ns(router)).is_some() {
                lab.spec.routed = routes_json(&what, &lab.ns(router))?
                    .iter()
                    .any(|(d, _)| d == SITE_B);
            }
        }
        Ok(lab)
    }

    /// The addressing plan of this lab.
    pub fn plan(&self) -> Plan {
        Plan::new(&self.spec)
    }

    /// The namespace of a node: `<lab name>-<node>`.
    pub fn ns(&self, n: Node) -> String {
        format!("{}-{}", self.spec.name, n.name())
    }

    /// Nodes of this lab, from site A to site B.
    pub fn nodes(&self) -> Vec<Node> {
        self.plan().nodes
    }

    /// An address of an interface (`family_v6` picks IPv6), from the plan.
    pub fn addr(&self, n: Node, ifname: &str, family_v6: bool) -> Option<IpAddr> {
        self.plan().iface(n, ifname).and_then(|i| {
            i.addrs
                .iter()
                .filter(|a| a.contains(':') == family_v6)
                .find_map(|a| a.split('/').next()?.parse().ok())
        })
    }

    /// gwA's WAN address (private behind the NAT, if any).
    pub fn gw_a_wan(&self) -> &'static str {
        if self.spec.nat {
            "10.200.1.1"
        } else {
            "10.200.0.1"
        }
    }

    /// gwA's IPv6 WAN address.
    pub fn gw_a_wan6(&self) -> &'static str {
        if self.spec.nat {
            "fd00:200:1::1"
        } else {
            "fd00:200::1"
        }
    }

    /// gwB's WAN address.
    pub fn gw_b_wan(&self) -> &'static str {
        "10.200.0.2"
    }

    /// gwB's IPv6 WAN address.
    pub fn gw_b_wan6(&self) -> &'static str {
        "fd00:200::2"
    }

    /// The address gwB sees gwA's IPv4 packets coming from (the NAT's, with a NAT).
    pub fn gw_a_seen_by_b(&self) -> &'static str {
        if self.spec.nat {
            NAT_PUBLIC
        } else {
            "10.200.0.1"
        }
    }

    /// Makes the lab match its specification: builds it if absent, leaves it alone if it
    /// already matches (so `up` twice gives the same lab), and otherwise removes and rebuilds
    /// it (a half-built or differently built lab). A build that fails half-way is removed.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Lab::up_report(spec).map(|(lab, _)| lab)
    }

    /// [`Lab::up`], also saying what it had to do.
    pub fn up_report(spec: &LabSpec) -> Result<(Lab, UpOutcome), LabError> {
        spec.validate()?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let lab = Lab::new(spec.clone());
        let outcome = if lab.status()?.iter().all(|(_, exists)| !exists) {
            UpOutcome::Built
        } else {
            let diffs = lab.check()?;
            if diffs.is_empty() {
                return Ok((lab, UpOutcome::Kept));
            }
            lab.down()?;
            UpOutcome::Rebuilt(diffs)
        };
        let guard = LabGuard(lab.clone());
        lab.build()?;
        std::mem::forget(guard);
        Ok((lab, outcome))
    }

    fn build(&self) -> Result<(), LabError> {
        let spec = &self.spec;
        let plan = self.plan();
        let what = |s: &str| format!("building lab {}: {s}", spec.name);
        for &n in &plan.nodes {
            let ns = self.ns(n);
            netns::add(&what(&format!("namespace {ns}")), &ns)?;
            let settings: Vec<String> = plan
                .sysctls
                .iter()
                .filter(|s| s.0 == n)
                .map(|(_, k, v)| format!("{k}={v}"))
                .collect();
            let mut args = vec!["ip", "netns", "exec", &ns, "sysctl", "-qw"];
            args.extend(settings.iter().map(String::as_str));
            run(&what(&format!("sysctls of {n}")), &args)?;
        }
        let q = spec.queues.to_string();
        let mtu = spec.effective_mtu().to_string();
        for &(a, ia, b, ib) in &plan.links {
            let (nsa, nsb) = (self.ns(a), self.ns(b));
            let (maca, macb) = (crate::plan::mac(a, ia), crate::plan::mac(b, ib));
            let end = |name, mac| {
                [
                    "name",
                    name,
                    "address",
                    mac,
                    "mtu",
                    &mtu,
                    "numtxqueues",
                    &q,
                    "numrxqueues",
                    &q,
                ]
            };
            let mut args = vec!["ip", "-n", &nsa, "link", "add"];
            args.extend(end(ia, &maca));
            args.extend(["type", "veth", "peer"]);
            args.extend(end(ib, &macb));
            args.extend(["netns", &nsb]);
            let w = what(&format!("veth {a}/{ia} — {b}/{ib}"));
            run(&w, &args)?;
            run(&w, &["ip", "-n", &nsa, "link", "set", ia, "up"])?;
            run(&w, &["ip", "-n", &nsb, "link", "set", ib, "up"])?;
        }
        for i in &plan.ifaces {
            let ns = self.ns(i.node);
            for a in &i.addrs {
                let mut args = vec!["ip", "-n", &ns, "addr", "add", a, "dev", i.name];
                if a.contains(':') {
                    args.push("nodad");
                }
                run(
                    &what(&format!("address {a} on {}/{}", i.node, i.name)),
                    &args,
                )?;
            }
        }
        for r in &plan.routes {
            let ns = self.ns(r.node);
            let fam = if r.is_v6() { "-6" } else { "-4" };
            run(
                &what(&format!("route {} via {} in {}", r.dst, r.via, r.node)),
                &["ip", "-n", &ns, fam, "route", "add", r.dst, "via", r.via],
            )?;
        }
        if spec.nat {
            let ns = self.ns(Node::Nat);
            let nft = |s: &str, cmd: &[&str]| {
                let mut args = vec!["ip", "netns", "exec", &ns, "nft"];
                args.extend_from_slice(cmd);
                run(&what(s), &args).map(|_| ())
            };
            nft("NAT table", &["add", "table", "ip", NAT_TABLE])?;
            nft(
                "NAT chain",
                &[
                    "add",
                    "chain",
                    "ip",
                    NAT_TABLE,
                    "postrouting",
                    "{ type nat hook postrouting priority srcnat ; }",
                ],
            )?;
            nft(
                "NAT masquerade",
                &[
                    "add",
                    "rule",
                    "ip",
                    NAT_TABLE,
                    "postrouting",
                    "oifname",
                    "out0",
                    "masquerade",
                ],
            )?;
            // As behind any NAT, nothing outside opens a connection to the inside, though gwB's
            // default route now points at the NAT.
            nft(
                "NAT forward chain",
                &[
                    "add",
                    "chain",
                    "ip",
                    NAT_TABLE,
                    "forward",
                    "{ type filter hook forward priority filter ; }",
                ],
            )?;
            nft(
                "NAT inbound filter",
                &[
                    "add", "rule", "ip", NAT_TABLE, "forward", "iifname", "out0", "oifname", "in0",
                    "ct", "state", "new", "drop",
                ],
            )?;
        }
        Ok(())
    }

    /// How the lab in the kernel differs from its specification (empty: it matches). Looks at
    /// namespaces, veths (MAC, MTU, queues, up), addresses, static routes, sysctls and the
    /// NAT's nftables table.
    pub fn check(&self) -> Result<Vec<String>, LabError> {
        let plan = self.plan();
        let mut diffs = Vec::new();
        for (n, exists) in self.status()? {
            let wanted = plan.nodes.contains(&n);
            if wanted && !exists {
                diffs.push(format!("namespace {} is missing", self.ns(n)));
            } else if !wanted && exists {
                diffs.push(format!("namespace {} should not exist", self.ns(n)));
            }
        }
        if !diffs.is_empty() {
            return Ok(diffs);
        }
        let what = format!("checking lab {}", self.spec.name);
        for &n in &plan.nodes {
            let ns = self.ns(n);
            let links = links_json(&what, &ns)?;
            for i in plan.ifaces_of(n) {
                let Some(j) = links.iter().find(|l| l["ifname"] == i.name) else {
                    diffs.push(format!("{n}/{} is missing", i.name));
                    continue;
                };
                let got = iface_info(j, String::new());
                let q = self.spec.queues;
                let mut want_addrs: Vec<String> = i.addrs.iter().map(|s| s.to_string()).collect();
                let mut got_addrs = got.addresses.clone();
                want_addrs.sort();
                got_addrs.sort();
                for (bad, text) in [
                    (
                        got.mac != i.mac,
                        format!("MAC {} (want {})", got.mac, i.mac),
                    ),
                    (
                        got.mtu != self.spec.effective_mtu(),
                        format!("MTU {}", got.mtu),
                    ),
                    (
                        got.rx_queues != q || got.tx_queues != q,
                        format!("{}/{} queues (want {q})", got.rx_queues, got.tx_queues),
                    ),
                    (!got.up, "not up".to_string()),
                    (
                        got_addrs != want_addrs,
                        format!("addresses {got_addrs:?} (want {want_addrs:?})"),
                    ),
                ] {
                    if bad {
                        diffs.push(format!("{n}/{}: {text}", i.name));
                    }
                }
            }
            let mut got = routes_json(&what, &ns)?;
            let mut want: Vec<(String, String)> = plan
                .routes_of(n)
                .map(|r| (r.dst.to_string(), r.via.to_string()))
                .collect();
            got.sort();
            want.sort();
            if got != want {
                let show = |v: &[(String, String)]| {
                    let v: Vec<String> = v.iter().map(|(d, g)| format!("{d} via {g}")).collect();
                    format!("[{}]", v.join(", "))
                };
                diffs.push(format!("{n}: routes {} (want {})", show(&got), show(&want)));
            }
            let sysctls: Vec<_> = plan.sysctls.iter().filter(|s| s.0 == n).collect();
            let mut args = vec!["ip", "netns", "exec", &ns, "sysctl", "-n"];
            args.extend(sysctls.iter().map(|s| s.1));
            let out = run(&what, &args)?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            for ((_, k, v), got) in sysctls.iter().zip(text.lines()) {
                if got.trim() != *v {
                    diffs.push(format!("{n}: {k} = {} (want {v})", got.trim()));
                }
            }
        }
        if self.spec.nat {
            let ns = self.ns(Node::Nat);
            let out = output(
                &what,
                &[
                    "ip", "netns", "exec", &ns, "nft", "list", "table", "ip", NAT_TABLE,
                ],
            )?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !text.contains("oifname \"out0\" masquerade") {
                diffs.push(format!(
                    "nat: nftables table {NAT_TABLE} lacks the masquerade"
                ));
            }
        }
        Ok(diffs)
    }

    /// What the kernel has for this lab's nodes: namespaces, interfaces, addresses, MACs,
    /// queues, MTUs and static routes.
    pub fn describe(&self) -> Result<LabInfo, LabError> {
        let plan = self.plan();
        let what = format!("describing lab {}", self.spec.name);
        let mut nodes = Vec::new();
        for &n in &plan.nodes {
            let ns = self.ns(n);
            let exists = netns::id(&ns).is_some();
            let (mut interfaces, mut routes) = (Vec::new(), Vec::new());
            if exists {
                for j in links_json(&what, &ns)? {
                    let name = j["ifname"].as_str().unwrap_or_default();
                    if name == "lo" {
                        continue;
                    }
                    let peer = plan
                        .iface(n, name)
                        .map(|i| format!("{}/{}", i.peer.0, i.peer.1))
                        .unwrap_or_default();
                    interfaces.push(iface_info(&j, peer));
                }
                routes = routes_json(&what, &ns)?
                    .into_iter()
                    .map(|(d, g)| format!("{d} via {g}"))
                    .collect();
            }
            nodes.push(NodeInfo {
                node: n.name().to_string(),
                namespace: ns,
                exists,
                interfaces,
                routes,
            });
        }
        Ok(LabInfo {
            name: self.spec.name.clone(),
            nat: self.spec.nat,
            routed: self.spec.routed,
            queues: self.spec.queues,
            mtu: self.spec.effective_mtu(),
            nodes,
        })
    }

    /// Stops the daemons the lab kept running (`demo --keep`, see [`crate::kept`]) and removes
    /// every namespace of the lab (the NAT's too, whatever the specification says); absent
    /// ones are fine, so this is idempotent.
    pub fn down(&self) -> Result<(), LabError> {
        crate::kept::stop_all(&self.spec.name);
        let existing = netns::list()?;
        for n in Node::ALL {
            let ns = self.ns(n);
            if existing.contains(&ns) {
                netns::del(&format!("removing lab {}", self.spec.name), &ns)?;
            }
        }
        Ok(())
    }

    /// Which of the lab's possible namespaces exist (all five nodes, the NAT included).
    pub fn status(&self) -> Result<Vec<(Node, bool)>, LabError> {
        let existing = netns::list()?;
        Ok(Node::ALL
            .into_iter()
            .map(|n| (n, existing.contains(&self.ns(n))))
            .collect())
    }

    fn require(&self, n: Node) -> Result<String, LabError> {
        let ns = self.ns(n);
        if netns::id(&ns).is_none() {
            return Err(LabError::NoNode {
                lab: self.spec.name.clone(),
                node: n.name().into(),
                hint: if n == Node::Nat { ", with --nat" } else { "" }.into(),
                ns,
            });
        }
        Ok(ns)
    }

    /// A command that runs `program` in a node's namespace (`ip netns exec <ns> <program>`);
    /// add arguments, stdio and environment as with any [`Command`].
    pub fn command<S: AsRef<OsStr>>(&self, n: Node, program: S) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec"]).arg(self.ns(n)).arg(program);
        c
    }

    /// Starts a command (`args[0]` and its arguments) in a node's namespace with inherited
    /// stdio, e.g. a dataplane daemon; the caller waits for or kills the child.
    pub fn spawn<S: AsRef<OsStr>>(&self, n: Node, args: &[S]) -> Result<Child, LabError> {
        let (c, cmd) = self.prepare(n, args)?;
        let mut c = c;
        c.spawn().map_err(|err| LabError::Spawn {
            what: format!("starting a command in {n}"),
            cmd,
            err,
        })
    }

    /// Runs a command in a node's namespace and returns its output whatever its status.
    pub fn exec<S: AsRef<OsStr>>(&self, n: Node, args: &[S]) -> Result<Output, LabError> {
        let (mut c, cmd) = self.prepare(n, args)?;
        c.output().map_err(|err| LabError::Spawn {
            what: format!("running a command in {n}"),
            cmd,
            err,
        })
    }

    fn prepare<S: AsRef<OsStr>>(&self, n: Node, args: &[S]) -> Result<(Command, String), LabError> {
        let ns = self.require(n)?;
        let Some((program, rest)) = args.split_first() else {
            return Err(LabError::Spec(format!("no command to run in {n}")));
        };
        let mut c = self.command(n, program);
        c.args(rest);
        let cmd = std::iter::once(format!("ip netns exec {ns}"))
            .chain(
                args.iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" ");
        Ok((c, cmd))
    }

    /// Moves the calling thread into a node's namespace (for in-process gateways and traffic,
    /// as the demo does).
    pub fn enter(&self, n: Node) -> std::io::Result<()> {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.ns(n)))?;
        // SAFETY: setns on a valid namespace descriptor affects only the calling thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Removes the lab when dropped, so a failing test or an early return leaves nothing behind.
pub struct LabGuard(pub Lab);

impl LabGuard {
    /// Builds the lab (as [`Lab::up`]) and guards it.
    pub fn up(spec: &LabSpec) -> Result<LabGuard, LabError> {
        Lab::up(spec).map(LabGuard)
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

impl fmt::Display for LabInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lab {}: {}{}, {} queue(s) per veth, MTU {}",
            self.name,
            if self.nat {
                "hA — gwA ══ nat ══ gwB — hB (gwA behind an nftables masquerade)"
            } else {
                "hA — gwA ════ gwB — hB"
            },
            if self.routed {
                ", sites routed in the kernel"
            } else {
                ""
            },
            self.queues,
            self.mtu
        )?;
        for n in &self.nodes {
            if !n.exists {
                writeln!(f, "  {:<4} {}  (absent)", n.node, n.namespace)?;
                continue;
            }
            writeln!(f, "  {:<4} namespace {}", n.node, n.namespace)?;
            for i in &n.interfaces {
                writeln!(
                    f,
                    "       {:<5} {}  mtu {}  q {}/{}  {}  {:<9} {}",
                    i.name,
                    i.mac,
                    i.mtu,
                    i.rx_queues,
                    i.tx_queues,
                    if i.up { "up  " } else { "DOWN" },
                    if i.peer.is_empty() {
                        String::new()
                    } else {
                        format!("↔ {}", i.peer)
                    },
                    i.addresses.join(" "),
                )?;
            }
            for r in &n.routes {
                writeln!(f, "       route {r}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "-x", "a/b", "a b", "x;rm", &"n".repeat(33)] {
            let s = LabSpec {
                name: bad.to_string(),
                ..LabSpec::default()
            };
            assert!(s.validate().is_err(), "{bad:?}");
        }
        for good in ["esprit", "esprit-t42", "a.b_c-9"] {
            let s = LabSpec {
                name: good.to_string(),
                ..LabSpec::default()
            };
            s.validate().unwrap();
        }
        let s = LabSpec {
            mtu: Some(1000),
            ..LabSpec::default()
        };
        assert!(s.validate().is_err());
        let s = LabSpec {
            queues: 0,
            ..LabSpec::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn addresses_come_from_the_plan() {
        let lab = Lab::new(LabSpec {
            nat: true,
            ..LabSpec::default()
        });
        assert_eq!(
            lab.addr(Node::GwA, "wan0", false),
            Some(lab.gw_a_wan().parse().unwrap())
        );
        assert_eq!(
            lab.addr(Node::GwA, "wan0", true),
            Some(lab.gw_a_wan6().parse().unwrap())
        );
        assert_eq!(
            lab.addr(Node::HostB, "eth0", true),
            Some(HOST_B.1.parse().unwrap())
        );
        assert_eq!(lab.addr(Node::HostB, "wan0", true), None);
        assert_eq!(lab.ns(Node::Nat), "esprit-nat");
    }

    #[test]
    fn commands_in_a_missing_lab_fail_clearly() {
        let lab = Lab::new(LabSpec {
            name: "esprit-never-built".into(),
            ..LabSpec::default()
        });
        let e = lab.exec(Node::Nat, &["true"]).unwrap_err();
        assert!(e.to_string().contains("with --nat"), "{e}");
    }
}
