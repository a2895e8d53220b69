//! Arbitrary Ethernet frames through a worker's whole forwarding pipeline, from the LAN and
//! from the WAN, including authentic ESP built from the fuzzer's bytes: every frame ends
//! forwarded or as a counted drop, never a panic.
#![no_main]

use dataplane::frame::OwnedFrame;
use dataplane::sa::SaDb;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fn side(mac: u8, onlink: &[&str], addrs: &[&str]) -> Side {
    let mut n = Neighbours::new();
    for a in ["10.200.0.2", "10.200.0.1", "2001:db8::1", "2001:db8::2", "10.201.1.2", "10.201.2.2"] {
        n.insert(a.parse().unwrap(), [2, 0, 0, 0, 0, mac]);
    }
    Side {
        mac: [2, 0, 0, 0, 1, mac],
        onlink: onlink.iter().map(|p| p.parse().unwrap()).collect(),
        gateway: Some("10.200.0.254".parse().unwrap()),
        neighbours: n,
        mtu: 1500,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let mut db: SaDb = support::inbound_db();
    for i in 0..support::SPIS.len() {
        let _ = db.insert(support::config(i));
    }
    let mut p = Pipeline::new(
        db,
        side(1, &["10.201.1.0/24"], &["10.201.1.1", "fd00::1"]),
        side(2, &["10.200.0.0/24", "2001:db8::/64"], &["10.200.0.1", "2001:db8::1"]),
    );
    p.mss_clamp = sel & 1 != 0;
    let port = if sel & 2 != 0 { Port::Lan } else { Port::Wan };
    let mut frames = [OwnedFrame::from_packet(frame, 128, 64)];
    let mut out = [Out::Drop(dataplane::esp::DropReason::Malformed)];
    p.process(port, &mut frames, &mut out);
    if let Out::Tx(_) = out[0] {
        // Whatever leaves is an Ethernet frame carrying IP.
        let d = frames[0].data();
        assert!(d.len() >= 14 + 20);
    }
});
