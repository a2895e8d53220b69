//! The dataplane reaches its peer the way the kernel would: behind the lab's NAT, gwA has no
//! `gateway` in its configuration and sends through its kernel default route. When that route
//! is changed to a router that does not answer, the tunnel's traffic stops; when it is
//! restored, traffic flows again, with nothing restarted. Needs root.

use esprit_testkit::require_root;
use std::process::Command;
use std::time::{Duration, Instant};
use topology::demo::{configs, Gateways};
use topology::{LabGuard, LabSpec, Node};

fn ping_ok(lab: &topology::Lab, dst: &str) -> bool {
    lab.exec(Node::HostA, &["ping", "-n", "-c", "1", "-W", "1", dst])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn gw_a_route(lab: &topology::Lab, via: &str) {
    let st = Command::new("ip")
        .args([
            "-n",
            &lab.ns(Node::GwA),
            "route",
            "replace",
            "default",
            "via",
            via,
        ])
        .status()
        .unwrap();
    assert!(st.success(), "ip route replace default via {via}");
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn the_wan_next_hop_follows_the_kernels_default_route() {
    require_root();
    let lab = LabGuard::up(&LabSpec {
        name: format!("esprit-kr{}", std::process::id()),
        nat: true,
        ..LabSpec::default()
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("esprit-kr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = configs(&dir, &lab).unwrap();
    assert_eq!(a.wan.gateway, None, "the lab configures no gateway");
    let gws = Gateways::start(&lab, a, b, |m| eprintln!("{m}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping_ok(&lab, "10.201.2.2") {
        assert!(
            Instant::now() < deadline,
            "no traffic through the kernel's default route"
        );
    }
    assert!(ping_ok(&lab, "fd00:201:2::2"), "IPv6 inside the tunnel");

    // The default route now points at a router that does not exist: the tunnel goes dark.
    gw_a_route(&lab, "10.200.1.99");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ping_ok(&lab, "10.201.2.2") {
        assert!(
            Instant::now() < deadline,
            "traffic still crosses: the route change was not followed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Restored: traffic flows again without a restart.
    gw_a_route(&lab, "10.200.1.254");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping_ok(&lab, "10.201.2.2") {
        assert!(
            Instant::now() < deadline,
            "no traffic after the route came back"
        );
    }
    for r in gws.stop() {
        r.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
