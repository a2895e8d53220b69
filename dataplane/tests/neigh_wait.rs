//! The pipeline's verdict for a frame whose next hop has no link-layer address yet: it waits
//! (for the worker's neighbour queue) with a complete Ethernet header whose destination is still
//! zero, instead of being dropped; once the address is known the same frame goes out at once.

use dataplane::esp::Backend;
use dataplane::frame::OwnedFrame;
use dataplane::sa::{Prefix, RouteAction, SaDb};
use dataplane::worker::{Out, Pipeline, Port, Side};
use std::net::IpAddr;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0x1a, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];

fn prefix(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

/// An Ethernet frame from the LAN host carrying an ICMP echo request to `dst`.
fn lan_frame(dst: [u8; 4]) -> OwnedFrame {
    let mut ip = vec![
        0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 1, 0, 0, 10, 201, 1, 2, dst[0], dst[1], dst[2], dst[3],
    ];
    ip.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    let sum = !ip[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |a, b| {
            let s = a + b;
            (s & 0xffff) + (s >> 16)
        }) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = LAN_MAC.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0x1a, 2, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    OwnedFrame::from_packet(&f, 128, 64)
}

#[test]
fn a_frame_to_an_unresolved_next_hop_waits_with_its_header_built() {
    let lan = Side {
        mac: LAN_MAC,
        onlink: vec![prefix("10.201.1.0/24")],
        mtu: 1500,
        ..Default::default()
    };
    let wan = Side {
        mac: WAN_MAC,
        onlink: vec![prefix("10.200.0.0/24")],
        gateway: Some("10.200.0.254".parse().unwrap()),
        mtu: 1500,
        ..Default::default()
    };
    let mut p = Pipeline::new(SaDb::new(Backend::default()), lan, wan);
    let mut routes = dataplane::sa::RouteTable::new();
    routes.insert(prefix("0.0.0.0/0"), RouteAction::Bypass);
    p.set_routes(std::sync::Arc::new(routes));
    let hop: IpAddr = "10.200.0.254".parse().unwrap();

    let mut frames = [lan_frame([192, 0, 2, 7])];
    let mut out = [Out::Drop(dataplane::esp::DropReason::Malformed)];
    p.process(Port::Lan, &mut frames, &mut out);
    assert_eq!(out[0], Out::Wait(Port::Wan, hop));
    assert_eq!(p.drops.total(), 0, "waiting is not a drop");
    let d = frames[0].data();
    assert_eq!(&d[0..6], &[0; 6], "destination to be filled in");
    assert_eq!(&d[6..12], &WAN_MAC);
    assert_eq!(&d[12..14], &[0x08, 0x00]);
    assert_eq!(d[14 + 8], 63, "the TTL was decremented once");

    p.wan.neighbours.insert(hop, PEER_MAC);
    let mut frames = [lan_frame([192, 0, 2, 7])];
    p.process(Port::Lan, &mut frames, &mut out);
    assert_eq!(out[0], Out::Tx(Port::Wan));
    assert_eq!(&frames[0].data()[0..6], &PEER_MAC);
    let mut used = Vec::new();
    p.wan.neighbours.take_used(|ip| used.push(ip));
    assert_eq!(used, vec![hop], "the next hop is marked used");
}
