//! The scale-out lab (`esprit-lab scaleout`), with BIRD and with FRR: two esprit gateways at
//! site A (gwA1, gwA2) behind a site router (rA), each with its own WAN path and route-based
//! tunnel to gwB, eBGP with BFD (100 ms × 3) everywhere. Checked: rA learns site B's prefixes as
//! ECMP routes through both gateways and its L4 hash puts flows on each, which then carry ESP;
//! when gwA1's esprit-ike and esprit-dataplane are SIGKILLed mid-stream every flow gets through
//! again, what is lost is bounded by the BFD detection time plus a convergence allowance
//! (counted in datagrams, not timed), and then gwA2 alone carries every datagram; when gwA1's
//! esprit starts again both gateways carry flows again; nothing but ESP, IKE, ARP and ICMPv6 ND
//! is seen on any WAN during the whole run. Root only; run under
//! `flock /tmp/esprit-netns.lock`.

use esprit_testkit::{require_root, require_tool};
use std::path::PathBuf;
use std::time::Duration;
use topology::bgp::BFD;
use topology::routingd::RoutingDaemon;
use topology::scaleout::{run, EspPackets, ScaleoutOptions};

/// Time on top of BFD's detection for the routing daemons to withdraw the routes, the kernels
/// to replace their ECMP routes and the dataplanes to follow them (generous: the machine is
/// shared).
const CONVERGENCE: Duration = Duration::from_millis(1500);
/// The window the lab reads the ESP counters over (`SPREAD_WINDOW` in the lab).
const WINDOW: Duration = Duration::from_millis(1500);

#[test]
#[ignore = "needs root, bird2 and tcpdump: ./ci/test.sh runs it as root"]
fn bird_spreads_flows_over_two_gateways_and_survives_losing_one() {
    require_tool("bird", &["--version"]);
    scales_out(RoutingDaemon::Bird, "b");
}

#[test]
#[ignore = "needs root, frr and tcpdump: ./ci/test.sh runs it as root"]
fn frr_spreads_flows_over_two_gateways_and_survives_losing_one() {
    require_tool("/usr/lib/frr/zebra", &["--version"]);
    scales_out(RoutingDaemon::Frr, "f");
}

/// Both gateways carried the flows hA → hB rA hashed to them: at least half of what those
/// flows sent over the window, each, besides BFD and BGP.
fn both_carry(o: &ScaleoutOptions, flows: [usize; 2], esp: [EspPackets; 2], when: &str) {
    let per_flow = (WINDOW.as_micros() / o.interval.as_micros()) as u64 / u64::from(o.flows);
    for g in 0..2 {
        assert!(
            flows[g] > 0,
            "{when}: rA hashes no flow to gateway {g}: {flows:?}"
        );
        let want = flows[g] as u64 * per_flow / 2;
        assert!(
            esp[g].sent >= want,
            "{when}: gateway {g} sent {} ESP packets for {} flow(s), at least {want} expected: {esp:?}",
            esp[g].sent,
            flows[g]
        );
    }
}

fn scales_out(daemon: RoutingDaemon, tag: &str) {
    require_root();
    require_tool("tcpdump", &["--version"]);
    let o = ScaleoutOptions {
        name: format!("esprit-so{tag}{}", std::process::id()),
        daemon,
        extra_prefixes: 20,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_esprit-lab")),
        ..ScaleoutOptions::default()
    };
    let r = run(&o, |m| eprintln!("{m}")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    assert_eq!(r.gateways, 2);
    let announced = 1 + o.extra_prefixes;
    assert_eq!(r.prefixes_announced, announced);
    assert!(
        r.prefixes_learned >= announced && r.prefixes_learned_gw_b >= announced,
        "ECMP routes: rA {}, gwB {} of {announced}",
        r.prefixes_learned,
        r.prefixes_learned_gw_b
    );
    both_carry(
        &o,
        r.flows_per_gateway,
        r.esp_before_kill,
        "before the kill",
    );

    // Each stream sends one datagram per interval whatever the flow: what either loses while a
    // dead gateway is undetected is at most (detection + convergence) / interval.
    let per_stream = ((BFD.detect() + CONVERGENCE).as_micros() / o.interval.as_micros()) as usize;
    assert!(
        r.kill_forward.recovered && r.kill_reverse.recovered,
        "a flow never came back after the kill: {:?} {:?}",
        r.kill_forward,
        r.kill_reverse
    );
    assert!(
        r.kill_lost_packets <= 2 * per_stream,
        "{} datagrams lost at the kill, at most {} expected: {:?} {:?}",
        r.kill_lost_packets,
        2 * per_stream,
        r.kill_forward,
        r.kill_reverse
    );
    assert_eq!(
        r.survivor_forward.lost + r.survivor_reverse.lost,
        0,
        "after the failover: {:?} {:?}",
        r.survivor_forward,
        r.survivor_reverse
    );
    assert!(
        r.survivor_esp.sent >= r.survivor_forward.sent as u64
            && r.survivor_esp.received >= r.survivor_reverse.sent as u64,
        "gwA2 did not carry every datagram after the failover: {:?}, sent {} / {}",
        r.survivor_esp,
        r.survivor_forward.sent,
        r.survivor_reverse.sent
    );

    both_carry(
        &o,
        r.flows_per_gateway_after_rejoin,
        r.esp_after_rejoin,
        "after the rejoin",
    );
    let rejoin_bound = 2 * (CONVERGENCE.as_micros() / o.interval.as_micros()) as usize;
    assert!(
        r.rejoin_forward.recovered && r.rejoin_reverse.recovered,
        "a flow never came back after the rejoin: {:?} {:?}",
        r.rejoin_forward,
        r.rejoin_reverse
    );
    assert!(
        r.rejoin_lost_packets <= rejoin_bound,
        "{} datagrams lost at the rejoin, at most {rejoin_bound} expected",
        r.rejoin_lost_packets
    );
    assert_eq!(
        r.cleartext_packets, 0,
        "clear text on a WAN: {:?}",
        r.cleartext_samples
    );
}
