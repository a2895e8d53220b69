//! The BGP lab (`esprit-lab bgp`), with BIRD and with FRR: two sites joined by two route-based esprit tunnels
//! over two WAN paths, eBGP and BFD (100 ms × 3) over each. Each side learns the other's
//! prefixes (its own and 300 extra /24s) into kernel ECMP routes over both tunnels, a TCP
//! transfer arrives whole, and when WAN path 1 is cut in the router the stream hB → hA moves to
//! tunnel 2: what is lost is bounded by the BFD detection time plus a convergence allowance
//! (counted in datagrams, not timed), every flow gets through again, and traffic flows over
//! both tunnels again once the path is restored. Nothing but ESP, IKE, ARP and ICMPv6 ND is
//! seen on the WAN during the whole run. Root only; run under `flock /tmp/esprit-netns.lock`.

use esprit_testkit::{require_root, require_tool};
use std::path::PathBuf;
use std::time::Duration;
use topology::bgp::{run, BgpOptions, BFD};
use topology::routingd::RoutingDaemon;

/// Time on top of BFD's detection for the routing daemon to withdraw the routes, the kernel to replace its
/// ECMP route and the dataplane to follow it (generous: the machine is shared).
const CONVERGENCE: Duration = Duration::from_millis(1500);

#[test]
#[ignore = "needs root, bird2 and tcpdump: ./ci/test.sh runs it as root"]
fn bgp_over_two_tunnels_fails_over_within_the_bfd_timers() {
    require_tool("bird", &["--version"]);
    fails_over(RoutingDaemon::Bird, "b");
}

#[test]
#[ignore = "needs root, frr and tcpdump: ./ci/test.sh runs it as root"]
fn frr_over_two_tunnels_fails_over_within_the_bfd_timers() {
    require_tool("/usr/lib/frr/zebra", &["--version"]);
    fails_over(RoutingDaemon::Frr, "f");
}

fn fails_over(daemon: RoutingDaemon, tag: &str) {
    require_root();
    require_tool("tcpdump", &["--version"]);
    let o = BgpOptions {
        name: format!("esprit-bgp{tag}{}", std::process::id()),
        daemon,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_esprit-lab")),
        tcp_bytes: 8 << 20,
        ..BgpOptions::default()
    };
    let r = run(&o, |m| eprintln!("{m}")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    let announced = 1 + o.extra_prefixes;
    assert!(
        r.prefixes_learned_a >= announced,
        "gwA learned {}",
        r.prefixes_learned_a
    );
    assert!(
        r.prefixes_learned_b >= announced,
        "gwB learned {}",
        r.prefixes_learned_b
    );
    assert!(
        r.ecmp_routes.iter().all(|&n| n >= announced),
        "{:?}",
        r.ecmp_routes
    );
    assert!(
        r.tcp_sha256_ok,
        "TCP transfer: {} bytes, digest mismatch",
        r.tcp_bytes
    );
    // The stream sends one datagram per interval whatever the flow: everything sent while the
    // path was dead and undetected is at most (detection + convergence) / interval.
    let bound = ((BFD.detect() + CONVERGENCE).as_micros() / o.interval.as_micros()) as usize;
    assert!(
        r.failover.recovered,
        "a flow never came back: {:?}",
        r.failover
    );
    assert!(
        r.failover_lost_packets <= bound,
        "{} datagrams lost, at most {bound} expected: {:?}",
        r.failover_lost_packets,
        r.failover
    );
    assert!(
        r.withdrawn_while_cut,
        "gwB kept routing site A through tunnel 1 while it was cut"
    );
    assert!(
        r.ecmp_restored,
        "site A's route did not use both tunnels again"
    );
    assert_eq!(r.after_restore.lost, 0, "{:?}", r.after_restore);
    assert_eq!(
        r.cleartext_packets, 0,
        "clear text on the WAN: {:?}",
        r.cleartext_samples
    );
}
