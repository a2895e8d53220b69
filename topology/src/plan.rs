//! The lab as data: which namespaces, veth pairs, addresses, routes and sysctls a [`LabSpec`]
//! asks for. Building executes a plan; checking compares one with what the kernel has.
//!
//! ```text
//! without --nat
//!  hA eth0 ──── lan0 gwA wan0 ════════════════════ wan0 gwB lan0 ──── eth0 hB
//!  10.201.1.2   10.201.1.1  10.200.0.1            10.200.0.2  10.201.2.1   10.201.2.2
//!  fd00:201:1::2 fd00:201:1::1 fd00:200::1        fd00:200::2 fd00:201:2::1 fd00:201:2::2
//!
//! with --nat (gwA behind an nftables masquerade; IPv6 routed through the same namespace)
//!  gwA wan0 ══════ in0 nat out0 ══════ wan0 gwB
//!  10.200.1.1      10.200.1.254  10.200.0.254      10.200.0.2
//!  fd00:200:1::1   fd00:200:1::254 fd00:200::254   fd00:200::2
//! ```

use crate::spec::{LabSpec, Node};

/// One end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// The namespace it lives in.
    pub node: Node,
    /// Interface name (at most 15 characters).
    pub name: &'static str,
    /// The other end.
    pub peer: (Node, &'static str),
    /// Its (fixed) MAC address.
    pub mac: String,
    /// Addresses with prefix length, IPv4 first.
    pub addrs: Vec<&'static str>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where it is installed.
    pub node: Node,
    /// Destination prefix, or `default`.
    pub dst: &'static str,
    /// Next hop.
    pub via: &'static str,
}

impl Route {
    /// True for an IPv6 route.
    pub fn is_v6(&self) -> bool {
        self.via.contains(':')
    }
}

/// Everything a lab consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Namespaces, from site A to site B.
    pub nodes: Vec<Node>,
    /// Veth pairs: the first end of each pair is created, the second is its peer.
    pub links: Vec<(Node, &'static str, Node, &'static str)>,
    /// Every interface (both ends of every pair).
    pub ifaces: Vec<Iface>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// Sysctls per node, set before any interface exists.
    pub sysctls: Vec<(Node, &'static str, &'static str)>,
}

/// The fixed MAC of an interface: `02:e5:00:00:<node>:<interface>`, locally administered, the
/// same in every lab (MACs only need to be unique on a segment, and segments are per lab).
pub fn mac(node: Node, ifname: &str) -> String {
    let n = match node {
        Node::HostA => 1,
        Node::GwA => 2,
        Node::Nat => 3,
        Node::GwB => 4,
        Node::HostB => 5,
        Node::RouterA => 6,
        Node::GwA1 => 7,
        Node::GwA2 => 8,
        Node::Inet => 9,
    };
    let i = match ifname {
        "eth0" => 0,
        "lan0" | "in0" => 1,
        "wan0" | "out0" => 2,
        "gw1" | "a1" => 3,
        "gw2" | "a2" => 4,
        "b" => 5,
        _ => 0xff,
    };
    format!("02:e5:00:00:{n:02x}:{i:02x}")
}

/// The sysctls every namespace gets: no duplicate address detection, so IPv6 addresses (link
/// local ones included) are usable as soon as they are configured.
const NO_DAD: [&str; 2] = [
    "net.ipv6.conf.all.accept_dad",
    "net.ipv6.conf.default.accept_dad",
];

/// What a router (gateway or NAT) gets on top.
const ROUTER: [(&str, &str); 4] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

impl Plan {
    /// The plan for a specification.
    pub fn new(spec: &LabSpec) -> Plan {
        use Node::*;
        let mut nodes = vec![HostA, GwA, GwB, HostB];
        if spec.nat {
            nodes.insert(2, Nat);
        }
        let mut links = vec![(HostA, "eth0", GwA, "lan0"), (GwB, "lan0", HostB, "eth0")];
        let mut addrs: Vec<(Node, &'static str, Vec<&'static str>)> = vec![
            (HostA, "eth0", vec!["10.201.1.2/24", "fd00:201:1::2/64"]),
            (GwA, "lan0", vec!["10.201.1.1/24", "fd00:201:1::1/64"]),
            (GwB, "lan0", vec!["10.201.2.1/24", "fd00:201:2::1/64"]),
            (HostB, "eth0", vec!["10.201.2.2/24", "fd00:201:2::2/64"]),
        ];
        let mut routes = Vec::new();
        let mut route = |node, dst, via| routes.push(Route { node, dst, via });
        // Hosts send the other site, and everything else, to their gateway.
        for (h, other4, other6, gw4, gw6) in [
            (
                HostA,
                "10.201.2.0/24",
                "fd00:201:2::/64",
                "10.201.1.1",
                "fd00:201:1::1",
            ),
            (
                HostB,
                "10.201.1.0/24",
                "fd00:201:1::/64",
                "10.201.2.1",
                "fd00:201:2::1",
            ),
        ] {
            route(h, "default", gw4);
            route(h, "default", gw6);
            route(h, other4, gw4);
            route(h, other6, gw6);
        }
        if spec.nat {
            links.push((GwA, "wan0", Nat, "in0"));
            links.push((Nat, "out0", GwB, "wan0"));
            addrs.push((GwA, "wan0", vec!["10.200.1.1/24", "fd00:200:1::1/64"]));
            addrs.push((Nat, "in0", vec!["10.200.1.254/24", "fd00:200:1::254/64"]));
            addrs.push((Nat, "out0", vec!["10.200.0.254/24", "fd00:200::254/64"]));
            addrs.push((GwB, "wan0", vec!["10.200.0.2/24", "fd00:200::2/64"]));
            // gwA reaches the Internet (gwB) through the NAT; IPv6 is routed, not translated,
            // so gwB knows where gwA's IPv6 WAN prefix is.
            route(GwA, "default", "10.200.1.254");
            route(GwA, "default", "fd00:200:1::254");
            route(GwB, "fd00:200:1::/64", "fd00:200::254");
            // Like any real gateway, gwB has a default route (towards the NAT, its Internet).
            route(GwB, "default", "10.200.0.254");
            route(GwB, "default", "fd00:200::254");
            if spec.routed {
                route(Nat, "10.201.1.0/24", "10.200.1.1");
                route(Nat, "fd00:201:1::/64", "fd00:200:1::1");
                route(Nat, "10.201.2.0/24", "10.200.0.2");
                route(Nat, "fd00:201:2::/64", "fd00:200::2");
                // IPv4 needs nothing on gwB: replies go to the NAT's public address, on-link.
                route(GwB, "fd00:201:1::/64", "fd00:200::254");
            }
        } else {
            links.push((GwA, "wan0", GwB, "wan0"));
            addrs.push((GwA, "wan0", vec!["10.200.0.1/24", "fd00:200::1/64"]));
            addrs.push((GwB, "wan0", vec!["10.200.0.2/24", "fd00:200::2/64"]));
            // Like any real gateway, each has a default route: the Internet is the other's WAN.
            // Without esprit, site traffic would follow it in clear text (fail closed is what
            // keeps it off the WAN when no dataplane runs).
            route(GwA, "default", "10.200.0.2");
            route(GwA, "default", "fd00:200::2");
            route(GwB, "default", "10.200.0.1");
            route(GwB, "default", "fd00:200::1");
            if spec.routed {
                route(GwA, "10.201.2.0/24", "10.200.0.2");
                route(GwA, "fd00:201:2::/64", "fd00:200::2");
                route(GwB, "10.201.1.0/24", "10.200.0.1");
                route(GwB, "fd00:201:1::/64", "fd00:200::1");
            }
        }
        let peer_of = |n: Node, i: &str| -> (Node, &'static str) {
            links
                .iter()
                .find_map(|&(a, ia, b, ib)| {
                    if a == n && ia == i {
                        Some((b, ib))
                    } else if b == n && ib == i {
                        Some((a, ia))
                    } else {
                        None
                    }
                })
                .expect("every addressed interface is on a link")
        };
        // Interfaces in node order, LAN side first.
        let mut ifaces: Vec<Iface> = addrs
            .into_iter()
            .map(|(node, name, addrs)| Iface {
                node,
                name,
                peer: peer_of(node, name),
                mac: mac(node, name),
                addrs,
            })
            .collect();
        let order = |i: &Iface| {
            let n = nodes.iter().position(|&x| x == i.node).unwrap_or(0);
            let side = match (i.node, i.name) {
                (GwB, "wan0") | (Nat, "in0") => 0,
                (GwB, _) | (Nat, _) => 1,
                (_, "wan0") => 1,
                _ => 0,
            };
            (n, side)
        };
        ifaces.sort_by_key(order);
        let mut sysctls = Vec::new();
        for &n in &nodes {
            for k in NO_DAD {
                sysctls.push((n, k, "0"));
            }
            if matches!(n, GwA | GwB | Nat) {
                for (k, v) in ROUTER {
                    sysctls.push((n, k, v));
                }
            }
        }
        Plan {
            nodes,
            links,
            ifaces,
            routes,
            sysctls,
        }
    }

    /// The interfaces of a node.
    pub fn ifaces_of(&self, n: Node) -> impl Iterator<Item = &Iface> {
        self.ifaces.iter().filter(move |i| i.node == n)
    }

    /// An interface by node and name.
    pub fn iface(&self, n: Node, name: &str) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.node == n && i.name == name)
    }

    /// The routes of a node.
    pub fn routes_of(&self, n: Node) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.node == n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nat: bool, routed: bool) -> LabSpec {
        LabSpec {
            nat,
            routed,
            ..LabSpec::default()
        }
    }

    #[test]
    fn every_interface_has_a_short_name_a_unique_mac_and_both_families() {
        for nat in [false, true] {
            for routed in [false, true] {
                let p = Plan::new(&spec(nat, routed));
                assert_eq!(p.ifaces.len(), p.links.len() * 2);
                let mut macs: Vec<&str> = p.ifaces.iter().map(|i| i.mac.as_str()).collect();
                macs.sort();
                macs.dedup();
                assert_eq!(macs.len(), p.ifaces.len());
                for i in &p.ifaces {
                    assert!(i.name.len() <= 15);
                    assert!(!i.mac.ends_with("ff"), "{i:?}");
                    assert!(i.addrs.iter().any(|a| !a.contains(':')), "{i:?}");
                    assert!(i.addrs.iter().any(|a| a.contains(':')), "{i:?}");
                    let back = p.iface(i.peer.0, i.peer.1).unwrap();
                    assert_eq!(back.peer, (i.node, i.name));
                }
            }
        }
    }

    #[test]
    fn gateways_route_the_other_site_only_when_asked() {
        let p = Plan::new(&spec(false, false));
        assert!(!p.routes_of(Node::GwA).any(|r| r.dst == "10.201.2.0/24"));
        // Gateways have default routes, as real ones do.
        for (n, via) in [(Node::GwA, "10.200.0.2"), (Node::GwB, "10.200.0.1")] {
            assert!(p.routes_of(n).any(|r| r.dst == "default" && r.via == via));
        }
        let p = Plan::new(&spec(false, true));
        assert!(p
            .routes_of(Node::GwA)
            .any(|r| r.dst == "10.201.2.0/24" && r.via == "10.200.0.2"));
        let p = Plan::new(&spec(true, false));
        assert!(p.nodes.contains(&Node::Nat));
        assert!(p.routes_of(Node::Nat).next().is_none());
        assert!(p
            .routes_of(Node::GwA)
            .any(|r| r.dst == "default" && r.via == "10.200.1.254"));
        // Site A's private IPv4 is never routed towards from gwB.
        for routed in [false, true] {
            let p = Plan::new(&spec(true, routed));
            assert!(!p.routes_of(Node::GwB).any(|r| r.dst == "10.201.1.0/24"));
        }
    }

    #[test]
    fn routers_forward_and_nobody_waits_for_dad() {
        let p = Plan::new(&spec(true, false));
        for n in [Node::GwA, Node::Nat, Node::GwB] {
            assert!(p.sysctls.contains(&(n, "net.ipv4.ip_forward", "1")));
        }
        assert!(!p
            .sysctls
            .contains(&(Node::HostA, "net.ipv4.ip_forward", "1")));
        for n in &p.nodes {
            assert!(p
                .sysctls
                .contains(&(*n, "net.ipv6.conf.default.accept_dad", "0")));
        }
    }
}
