//! Every wire view on arbitrary bytes: constructors must refuse or succeed, and accessors on a
//! checked view must never panic.
#![no_main]

use dataplane::wire::esp::parse_trailer;
use dataplane::wire::{EspPacket, EthernetFrame, Ipv4Packet, Ipv6Packet, UdpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (
            e.dst(),
            e.src(),
            e.vlan_tci(),
            e.ethertype(),
            e.payload().len(),
        );
    }
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (p.src(), p.dst(), p.ttl(), p.protocol(), p.dscp(), p.ecn());
        let _ = (p.verify_checksum(), p.is_fragment(), p.payload().len());
    }
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (
            p.src(),
            p.dst(),
            p.hop_limit(),
            p.flow_label(),
            p.payload().len(),
        );
        let _ = p.upper_layer();
        let _ = p.esp_transport_point();
    }
    if let Ok(u) = UdpPacket::new_checked(data) {
        let _ = (u.src_port(), u.dst_port(), u.payload().len());
    }
    if let Ok(e) = EspPacket::new_checked(data) {
        let _ = (e.spi(), e.seq(), e.payload().len());
    }
    let _ = parse_trailer(data);
});
