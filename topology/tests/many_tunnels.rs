//! One esprit gateway (gwB: esprit-ike + esprit-dataplane) holds 1,000 site-to-site tunnels
//! against a simulator of 1,000 sites in gwA (esprit's own IKE initiator, one WAN address and
//! one /27 per site): every IKE SA and child comes up on both sides, every child is rekeyed by
//! its timer on schedule, gwB is left with exactly one child per tunnel (in esprit-ike and in
//! the dataplane), and pings from a few sites cross their tunnels to hB and back, before and
//! after the rekeys. Correctness only: the figures are `esprit-lab many`'s and
//! docs/benchmarks.md's. `ESPRIT_MANY_TUNNELS` lowers the number of tunnels.

use esprit_testkit::require_root;
use std::path::PathBuf;
use topology::many::{run, ManyOptions, MAX_TUNNELS};

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn one_gateway_holds_a_thousand_tunnels_that_rekey_on_schedule() {
    require_root();
    let tunnels = match std::env::var("ESPRIT_MANY_TUNNELS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TUNNELS).contains(n))
            .unwrap_or_else(|| panic!("ESPRIT_MANY_TUNNELS={v}: expected 1–{MAX_TUNNELS}")),
        Err(_) => 1000,
    };
    let o = ManyOptions {
        name: format!("esprit-mt{}", std::process::id()),
        tunnels,
        probes: 4,
        simulator: PathBuf::from(env!("CARGO_BIN_EXE_esprit-lab")),
        ..ManyOptions::default()
    };
    let r = run(&o, |m| eprintln!("{m}")).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", r.render());
    let problems = r.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(r.gw_b_ike_sas, tunnels);
    assert_eq!(r.gw_b_children_after_rekey, tunnels);
    assert_eq!(r.dataplane_sas, 2 * tunnels);
    assert!(r.rekeys >= tunnels);
}
