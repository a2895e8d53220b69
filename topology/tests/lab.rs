//! The lab builds, forwards, stays put when asked twice, repairs itself, masquerades behind
//! the NAT and goes away cleanly; the `esprit-lab` binary does the same from the command line.
//! Needs root: ignored by a plain `cargo test`, run by `./ci/test.sh` (as root). Every test
//! has its own lab name (with the process id), so they run in parallel.

use esprit_testkit::require_root;
use std::process::Command;
use topology::lab::{HOST_A, HOST_B, NAT_PUBLIC};
use topology::netns;
use topology::{Lab, LabGuard, LabSpec, Node, UpOutcome};

fn spec(tag: &str) -> LabSpec {
    LabSpec {
        name: format!("esprit-t{tag}{}", std::process::id()),
        ..LabSpec::default()
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pings and returns ping's output, failing the test unless every echo came back.
fn ping(lab: &Lab, from: Node, to: &str) -> String {
    let out = lab
        .exec(from, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to])
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "ping {from} -> {to}:\n{t}");
    t
}

fn ping_fails(lab: &Lab, from: Node, to: &str) {
    let out = lab.exec(from, &["ping", "-c", "1", "-W", "1", to]).unwrap();
    assert!(!out.status.success(), "ping {from} -> {to} should fail");
}

/// Namespaces of this lab still listed by `ip netns list`.
fn leftovers(name: &str) -> Vec<String> {
    let prefix = format!("{name}-");
    netns::list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Runs nft in a node, failing the test on error.
fn nft(lab: &Lab, n: Node, args: &[&str]) -> String {
    let mut full = vec!["nft"];
    full.extend_from_slice(args);
    let out = lab.exec(n, &full).unwrap();
    assert!(out.status.success(), "nft {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The packet count of a named nftables counter in table `inet t`.
fn counter(lab: &Lab, n: Node, name: &str) -> u64 {
    let t = nft(lab, n, &["list", "counter", "inet", "t", name]);
    t.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {t}"))
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn a_routed_lab_forwards_both_families_through_both_gateways() {
    require_root();
    let s = LabSpec {
        queues: 2,
        routed: true,
        mtu: Some(1400),
        ..spec("rt")
    };
    let lab = LabGuard::up(&s).unwrap();
    // Two routers on the way: replies arrive with TTL (hop limit) 64 - 2.
    assert!(ping(&lab, Node::HostA, HOST_B.0).contains("ttl=62"));
    assert!(ping(&lab, Node::HostA, HOST_B.1).contains("ttl=62"));
    ping(&lab, Node::HostB, HOST_A.0);
    ping(&lab, Node::HostB, HOST_A.1);
    // A full-size packet passes at the configured MTU, a bigger one does not leave the host.
    let out = lab
        .exec(
            Node::HostA,
            &[
                "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1372", HOST_B.0,
            ],
        )
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = lab
        .exec(
            Node::HostA,
            &[
                "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1373", HOST_B.0,
            ],
        )
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    // The description matches the plan: MACs, queues, MTU, addresses, peers.
    let info = lab.describe().unwrap();
    let plan = lab.plan();
    assert_eq!(info.nodes.len(), 4);
    for n in &info.nodes {
        assert!(n.exists, "{n:?}");
        let node = Node::parse(&n.node).unwrap();
        assert_eq!(n.interfaces.len(), plan.ifaces_of(node).count(), "{n:?}");
        for i in &n.interfaces {
            let p = plan.iface(node, &i.name).unwrap();
            assert_eq!(i.mac, p.mac);
            assert_eq!((i.rx_queues, i.tx_queues, i.mtu), (2, 2, 1400));
            assert!(i.up, "{i:?}");
            assert_eq!(i.peer, format!("{}/{}", p.peer.0, p.peer.1));
            assert_eq!(i.addresses.len(), 2, "{i:?}");
        }
    }
    let name = s.name.clone();
    drop(lab);
    assert!(leftovers(&name).is_empty(), "{:?}", leftovers(&name));
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn without_esprit_the_default_routes_carry_site_traffic_in_clear() {
    require_root();
    let lab = LabGuard::up(&spec("un")).unwrap();
    // Neighbours reach each other: hosts their gateway, gateways each other, both families.
    ping(&lab, Node::HostA, "10.201.1.1");
    ping(&lab, Node::HostA, "fd00:201:1::1");
    ping(&lab, Node::HostB, "fd00:201:2::1");
    ping(&lab, Node::GwA, lab.gw_b_wan());
    ping(&lab, Node::GwA, lab.gw_b_wan6());
    // No route names the other site, but the gateways' default routes (every real gateway has
    // one) carry it: this is the world esprit must fail closed in.
    ping(&lab, Node::HostA, HOST_B.0);
    ping(&lab, Node::HostA, HOST_B.1);
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn up_twice_keeps_the_lab_and_a_damaged_lab_is_rebuilt() {
    require_root();
    let s = spec("id");
    let (lab, outcome) = Lab::up_report(&s).unwrap();
    let _guard = LabGuard(lab.clone());
    assert_eq!(outcome, UpOutcome::Built);
    assert!(lab.check().unwrap().is_empty());
    let ids: Vec<_> = lab.nodes().iter().map(|&n| netns::id(&lab.ns(n))).collect();
    assert!(ids.iter().all(Option::is_some));
    // A process in the lab survives a second `up`, which changes nothing.
    let mut sleeper = lab.command(Node::GwA, "sleep").arg("30").spawn().unwrap();
    let (_, outcome) = Lab::up_report(&s).unwrap();
    assert_eq!(outcome, UpOutcome::Kept);
    let again: Vec<_> = lab.nodes().iter().map(|&n| netns::id(&lab.ns(n))).collect();
    assert_eq!(ids, again, "the namespaces were not recreated");
    assert!(sleeper.try_wait().unwrap().is_none(), "still running");
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // A lost veth pair: found, and repaired by `up`.
    let out = lab.exec(Node::GwB, &["ip", "link", "del", "wan0"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let diffs = lab.check().unwrap();
    assert!(
        diffs.iter().any(|d| d.contains("gwA/wan0 is missing")),
        "{diffs:?}"
    );
    let (_, outcome) = Lab::up_report(&s).unwrap();
    assert!(matches!(outcome, UpOutcome::Rebuilt(_)), "{outcome:?}");
    assert!(lab.check().unwrap().is_empty());
    ping(&lab, Node::GwA, lab.gw_b_wan());

    // A lost namespace, and a changed sysctl.
    netns::del("test", &lab.ns(Node::HostB)).unwrap();
    let (_, outcome) = Lab::up_report(&s).unwrap();
    match outcome {
        UpOutcome::Rebuilt(why) => assert!(why[0].contains("-hB is missing"), "{why:?}"),
        o => panic!("{o:?}"),
    }
    let out = lab
        .exec(Node::GwA, &["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        .unwrap();
    assert!(out.status.success());
    assert!(lab.check().unwrap()[0].contains("ip_forward = 0"));
    Lab::up(&s).unwrap();
    ping(&lab, Node::HostB, "10.201.2.1");

    // Asking for something else rebuilds too.
    let other = LabSpec {
        queues: 3,
        ..s.clone()
    };
    let (l3, outcome) = Lab::up_report(&other).unwrap();
    assert!(matches!(outcome, UpOutcome::Rebuilt(_)), "{outcome:?}");
    assert!(l3.check().unwrap().is_empty());
    assert!(
        !lab.check().unwrap().is_empty(),
        "no longer the 1-queue lab"
    );

    // Down twice is fine and leaves nothing.
    lab.down().unwrap();
    lab.down().unwrap();
    assert!(lab.status().unwrap().iter().all(|(_, up)| !up));
    assert!(leftovers(&s.name).is_empty(), "{:?}", leftovers(&s.name));
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn the_nat_masquerades_site_a_and_routes_ipv6() {
    require_root();
    if Command::new("nft").arg("--version").output().is_err() {
        panic!("nft is missing: ci/install-deps.sh installs nftables");
    }
    let s = LabSpec {
        nat: true,
        routed: true,
        ..spec("nat")
    };
    let lab = LabGuard::up(&s).unwrap();
    assert_eq!(lab.nodes().len(), 5);
    // Counters in gwB: what arrives from the NAT's public address, and anything from site A's
    // private IPv4 space (which must never show up beyond the NAT).
    nft(&lab, Node::GwB, &["add", "table", "inet", "t"]);
    for c in ["to_gw", "via_gw", "private", "v6_site_a"] {
        nft(&lab, Node::GwB, &["add", "counter", "inet", "t", c]);
    }
    for (chain, hook) in [("c_in", "input"), ("c_fwd", "forward")] {
        let def = format!("{{ type filter hook {hook} priority 0 ; }}");
        nft(&lab, Node::GwB, &["add", "chain", "inet", "t", chain, &def]);
    }
    for rule in [
        vec![
            "c_in",
            "ip",
            "saddr",
            NAT_PUBLIC,
            "icmp",
            "type",
            "echo-request",
        ],
        vec![
            "c_fwd",
            "ip",
            "saddr",
            NAT_PUBLIC,
            "icmp",
            "type",
            "echo-request",
        ],
        vec!["c_in", "ip", "saddr", "{ 10.200.1.0/24, 10.201.1.0/24 }"],
        vec!["c_fwd", "ip", "saddr", "{ 10.200.1.0/24, 10.201.1.0/24 }"],
        vec![
            "c_fwd",
            "ip6",
            "saddr",
            HOST_A.1,
            "icmpv6",
            "type",
            "echo-request",
        ],
    ]
    .into_iter()
    .zip(["to_gw", "via_gw", "private", "private", "v6_site_a"])
    {
        let (mut r, c) = rule;
        let mut args = vec!["add", "rule", "inet", "t"];
        args.append(&mut r);
        args.extend(["counter", "name", c]);
        nft(&lab, Node::GwB, &args);
    }
    // gwA to gwB, and hA to hB: both arrive from the NAT's address.
    ping(&lab, Node::GwA, lab.gw_b_wan());
    ping(&lab, Node::HostA, HOST_B.0);
    assert_eq!(counter(&lab, Node::GwB, "to_gw"), 2);
    assert_eq!(counter(&lab, Node::GwB, "via_gw"), 2);
    assert_eq!(counter(&lab, Node::GwB, "private"), 0);
    // IPv6 is routed through the NAT node untranslated.
    ping(&lab, Node::GwA, lab.gw_b_wan6());
    ping(&lab, Node::HostA, HOST_B.1);
    assert_eq!(counter(&lab, Node::GwB, "v6_site_a"), 2);
    // Nobody behind the NAT can be reached from outside over IPv4.
    ping_fails(&lab, Node::GwB, lab.gw_a_wan());
    ping_fails(&lab, Node::HostB, HOST_A.0);
    assert_eq!(lab.gw_a_seen_by_b(), NAT_PUBLIC);
}

fn lab_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_esprit-lab"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn the_command_line_builds_describes_runs_in_and_removes_a_lab() {
    require_root();
    let name = spec("cli").name;
    let _guard = LabGuard(Lab::new(LabSpec {
        name: name.clone(),
        ..LabSpec::default()
    }));
    let up = lab_bin(&["up", "--name", &name, "--nat", "--queues", "2", "--json"]);
    assert!(up.status.success(), "{}", text(&up));
    let j: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(j["nat"], true);
    assert_eq!(j["queues"], 2);
    let nodes = j["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["hA", "gwA", "nat", "gwB", "hB"]);
    let gwa = &nodes[1];
    assert_eq!(gwa["namespace"], format!("{name}-gwA"));
    let wan = gwa["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "wan0")
        .unwrap();
    assert_eq!(wan["addresses"][0], "10.200.1.1/24");
    assert_eq!(wan["peer"], "nat/in0");
    assert_eq!(wan["mac"], "02:e5:00:00:02:02");

    // Human output, and a second `up` that changes nothing.
    let again = lab_bin(&["up", "--name", &name, "--nat", "--queues", "2"]);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert!(
        t.contains("unchanged") && t.contains("10.200.0.254/24"),
        "{t}"
    );

    // exec passes the exit code through.
    let ok = lab_bin(&[
        "exec",
        "--name",
        &name,
        "hA",
        "--",
        "ping",
        "-c1",
        "-W2",
        "10.201.1.1",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let seven = lab_bin(&["exec", "--name", &name, "gwB", "--", "sh", "-c", "exit 7"]);
    assert_eq!(seven.status.code(), Some(7));
    let bad = lab_bin(&["exec", "--name", &name, "gwC", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));

    let st = lab_bin(&["status", "--name", &name, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(j["nat"], true, "status reads the lab back");
    assert_eq!(j["queues"], 2);
    assert!(j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["exists"] == true));

    for _ in 0..2 {
        let down = lab_bin(&["down", "--name", &name]);
        assert!(down.status.success(), "{}", text(&down));
    }
    assert!(leftovers(&name).is_empty(), "{:?}", leftovers(&name));
    let st = lab_bin(&["status", "--name", &name]);
    assert!(text(&st).contains("is down"), "{}", text(&st));
    let gone = lab_bin(&["exec", "--name", &name, "hA", "--", "true"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone).contains("is the lab up"), "{}", text(&gone));
    let bad = lab_bin(&["up", "--name", "no/slash"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("lab name"), "{}", text(&bad));
}
