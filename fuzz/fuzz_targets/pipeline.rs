//! Arbitrary Ethernet frames through a worker's whole forwarding pipeline, from the LAN and
//! from the WAN, including authentic ESP built from the fuzzer's bytes: every frame ends
//! forwarded or as a counted drop, never a panic. Packets the pipeline fragments take up to
//! three spare frames, all of which come back (sent or given back).
#![no_main]

use dataplane::frame::{Frame, OwnedFrame};
use dataplane::sa::SaDb;
use dataplane::worker::fragment::FramePool;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fn side(mac: u8, onlink: &[&str], addrs: &[&str]) -> Side {
    let mut n = Neighbours::new();
    for a in [
        "10.200.0.2",
        "10.200.0.1",
        "2001:db8::1",
        "2001:db8::2",
        "10.201.1.2",
        "10.201.2.2",
    ] {
        n.insert(a.parse().unwrap(), [2, 0, 0, 0, 0, mac]);
    }
    Side {
        mac: [2, 0, 0, 0, 1, mac],
        onlink: onlink.iter().map(|p| p.parse().unwrap()).collect(),
        gateway: Some("10.200.0.254".parse().unwrap()),
        routes: Vec::new(),
        neighbours: n,
        mtu: 1500,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

/// Up to `free` frames of 2 KiB; counts what comes back.
struct Pool {
    free: usize,
    back: usize,
}

impl FramePool<Vec<u8>> for Pool {
    fn take(&mut self) -> Option<OwnedFrame> {
        if self.free == 0 {
            return None;
        }
        self.free -= 1;
        Frame::new(vec![0u8; 2048], 128, 2048)
    }

    fn send(&mut self, f: OwnedFrame, _: Port) {
        assert!(f.len() >= 14 + 20 && f.len() <= 14 + 1500);
        self.back += 1;
    }

    fn wait(&mut self, f: OwnedFrame, _: Port, _: std::net::IpAddr) {
        assert!(f.len() >= 14 + 20 && f.len() <= 14 + 1500);
        self.back += 1;
    }

    fn give_back(&mut self, _: OwnedFrame) {
        self.back += 1;
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
        side(
            2,
            &["10.200.0.0/24", "2001:db8::/64"],
            &["10.200.0.1", "2001:db8::1"],
        ),
    );
    p.mss_clamp = sel & 1 != 0;
    let port = if sel & 2 != 0 { Port::Lan } else { Port::Wan };
    let mut frames = [OwnedFrame::from_packet(frame, 128, 64)];
    let mut out = [Out::Drop(dataplane::esp::DropReason::Malformed)];
    let spares = usize::from((sel >> 2) & 3);
    let mut pool = Pool {
        free: spares,
        back: 0,
    };
    p.process_with(port, &mut frames, &mut out, &mut pool);
    assert_eq!(
        pool.free + pool.back,
        spares,
        "every spare frame comes back"
    );
    if let Out::Tx(_) = out[0] {
        // Whatever leaves is an Ethernet frame carrying IP.
        let d = frames[0].data();
        assert!(d.len() >= 14 + 20);
    }
});
