//! The lab builds, rebuilds and goes away cleanly, with and without the NAT, and the demo runs
//! end to end. Needs root; skipped otherwise.

use topology::demo::{run, DemoOptions};
use topology::lab::is_root;
use topology::{Lab, LabSpec, Node};

fn spec(tag: &str, nat: bool) -> LabSpec {
    LabSpec {
        name: format!("esprit-t{tag}{}", std::process::id()),
        queues: 2,
        nat,
    }
}

#[test]
fn up_is_idempotent_and_down_removes_everything() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let s = spec("lu", false);
    let lab = Lab::up(&s).unwrap();
    let lab2 = Lab::up(&s).unwrap();
    assert!(lab2
        .status()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n != Node::Nat)
        .all(|(_, up)| *up));
    // The gateways reach each other over the WAN, the hosts their gateway.
    let out = lab
        .exec(Node::GwA, &["ping", "-c", "1", "-W", "2", "10.200.0.2"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = lab
        .exec(
            Node::HostA,
            &["ping", "-c", "1", "-W", "2", "fd00:201:1::1"],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lab.down().unwrap();
    lab.down().unwrap();
    assert!(lab.status().unwrap().iter().all(|(_, up)| !up));
}

#[test]
fn the_nat_masquerades_gw_a() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("nft is missing: ci/install-deps.sh installs nftables");
    }
    let lab = Lab::up(&spec("ln", true)).unwrap();
    // A counter in gwB shows gwA's packets arriving from the NAT's address.
    let gwb = lab.ns(Node::GwB);
    for args in [
        vec!["nft", "add", "table", "ip", "t"],
        vec![
            "nft",
            "add",
            "chain",
            "ip",
            "t",
            "in",
            "{ type filter hook input priority 0 ; }",
        ],
        vec![
            "nft",
            "add",
            "rule",
            "ip",
            "t",
            "in",
            "ip",
            "saddr",
            "10.200.0.254",
            "icmp",
            "type",
            "echo-request",
            "counter",
        ],
    ] {
        let mut full = vec!["netns", "exec", gwb.as_str()];
        full.extend(args);
        assert!(std::process::Command::new("ip")
            .args(&full)
            .status()
            .unwrap()
            .success());
    }
    let out = lab
        .exec(Node::GwA, &["ping", "-c", "2", "-W", "2", "10.200.0.2"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let list = lab
        .exec(Node::GwB, &["nft", "list", "table", "ip", "t"])
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("packets 2"), "{text}");
    lab.down().unwrap();
}

#[test]
fn the_demo_runs_end_to_end() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let o = DemoOptions {
        name: format!("esprit-tdemo{}", std::process::id()),
        bytes: 8 << 20,
        workers: 1,
        keep: false,
    };
    let r = run(&o, |m| eprintln!("{m}")).unwrap();
    assert_eq!(r.ping_loss_pct, 0.0, "{r:?}");
    assert_eq!(r.ping6_loss_pct, 0.0, "{r:?}");
    assert_eq!(r.tcp_bytes, 8 << 20);
    assert!(r.tcp_sha256_ok);
    assert!(r.gbps > 0.0);
    assert_eq!(r.gw_a.sas.len(), 2);
    let j = serde_json::to_value(&r).unwrap();
    for k in ["ping_loss_pct", "tcp_bytes", "tcp_sha256_ok", "gbps"] {
        assert!(j.get(k).is_some(), "{k}");
    }
    let lab = Lab {
        spec: LabSpec {
            name: o.name.clone(),
            ..Default::default()
        },
    };
    assert!(
        lab.status().unwrap().iter().all(|(_, up)| !up),
        "the demo removes its lab"
    );
}
