//! The XDP classifiers, run by the kernel on crafted frames with BPF_PROG_TEST_RUN. Needs root
//! (CAP_BPF): ignored by a plain `cargo test`, run by `./ci/test.sh` (as root).

use dataplane::wire::ethernet::{EtherType, EthernetRepr};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::ipv6::Ipv6Repr;
use dataplane::wire::proto;
use dataplane::xdp::program::{Classifier, ClassifierSpec, Role};
use dataplane::xdp::sys::action;
use esprit_testkit::require_root;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Stands for "would redirect": the verdict the program returns when no socket is bound.
const WOULD_REDIRECT: u32 = action::TX;

fn classifier(role: Role) -> Classifier {
    let spec = ClassifierSpec {
        role,
        local_v4: vec![
            "10.200.0.2".parse().unwrap(),
            "192.168.255.1".parse().unwrap(),
        ],
        local_v6: vec![
            "fd00:200::2".parse().unwrap(),
            "2001:db8::ffff".parse().unwrap(),
        ],
        nat_t_ports: vec![4500, 14500],
        no_socket_action: WOULD_REDIRECT,
    };
    Classifier::load(&spec, 4).unwrap_or_else(|e| {
        require_root();
        panic!("{e}")
    })
}

fn eth(ethertype: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let r = EthernetRepr {
        dst: [2, 0, 0, 0, 0, 2],
        src: [2, 0, 0, 0, 0, 1],
        vlan_tci: vlan,
        ethertype: EtherType(ethertype),
    };
    let mut f = vec![0u8; r.header_len()];
    r.emit(&mut f);
    f.extend_from_slice(payload);
    f
}

fn v4(dst: &str, protocol: u8, payload: &[u8], frag: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    Ipv4Repr {
        src: Ipv4Addr::new(10, 200, 0, 1),
        dst: dst.parse().unwrap(),
        protocol,
        payload_len: payload.len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
    }
    .emit(&mut p);
    if frag {
        p[6] = 0x20; // MF
    }
    p.extend_from_slice(payload);
    p
}

fn v6(dst: &str, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    Ipv6Repr {
        src: "fd00:200::1".parse::<Ipv6Addr>().unwrap(),
        dst: dst.parse().unwrap(),
        next_header,
        payload_len: payload.len(),
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        flow_label: 0,
    }
    .emit(&mut p);
    p.extend_from_slice(payload);
    p
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0x11, 0x94];
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

const ESP: &[u8] = &[
    0x8c, 0x77, 0x27, 0x4a, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
];

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn wan_redirects_only_esp_for_the_gateway() {
    let c = classifier(Role::Wan);
    let ike = {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&[0x11; 24]);
        p
    };
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "esp v4",
            eth(0x0800, None, &v4("10.200.0.2", proto::ESP, ESP, false)),
            WOULD_REDIRECT,
        ),
        (
            "esp v4 second address",
            eth(0x0800, None, &v4("192.168.255.1", proto::ESP, ESP, false)),
            WOULD_REDIRECT,
        ),
        (
            "esp v4 vlan",
            eth(0x0800, Some(7), &v4("10.200.0.2", proto::ESP, ESP, false)),
            WOULD_REDIRECT,
        ),
        (
            "esp-in-udp v4",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(4500, ESP), false),
            ),
            WOULD_REDIRECT,
        ),
        (
            "esp-in-udp other nat-t port",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(14500, ESP), false),
            ),
            WOULD_REDIRECT,
        ),
        (
            "ike on 4500 (zero marker)",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(4500, &ike), false),
            ),
            action::PASS,
        ),
        (
            "ike on 500",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(500, &ike[4..]), false),
            ),
            action::PASS,
        ),
        (
            "nat keepalive",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(4500, &[0xff]), false),
            ),
            action::PASS,
        ),
        (
            "esp for someone else",
            eth(0x0800, None, &v4("10.200.0.3", proto::ESP, ESP, false)),
            action::PASS,
        ),
        (
            "icmp to the gateway",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::ICMP, &[8, 0, 0, 0], false),
            ),
            action::PASS,
        ),
        (
            "esp fragment",
            eth(0x0800, None, &v4("10.200.0.2", proto::ESP, ESP, true)),
            action::PASS,
        ),
        ("arp", eth(0x0806, None, &[0; 28]), action::PASS),
        (
            "truncated ipv4",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::ESP, ESP, false)[..19],
            ),
            action::PASS,
        ),
        (
            "truncated udp",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::UDP, &udp(4500, ESP), false)[..30],
            ),
            action::PASS,
        ),
        (
            "esp v6",
            eth(0x86dd, None, &v6("fd00:200::2", proto::ESP, ESP)),
            WOULD_REDIRECT,
        ),
        (
            "esp v6 second address",
            eth(0x86dd, None, &v6("2001:db8::ffff", proto::ESP, ESP)),
            WOULD_REDIRECT,
        ),
        (
            "esp-in-udp v6",
            eth(
                0x86dd,
                None,
                &v6("fd00:200::2", proto::UDP, &udp(4500, ESP)),
            ),
            WOULD_REDIRECT,
        ),
        (
            "ike v6 on 4500",
            eth(
                0x86dd,
                None,
                &v6("fd00:200::2", proto::UDP, &udp(4500, &ike)),
            ),
            action::PASS,
        ),
        (
            "esp v6 for someone else",
            eth(0x86dd, None, &v6("fd00:200::3", proto::ESP, ESP)),
            action::PASS,
        ),
        (
            "icmpv6 neighbour solicitation",
            eth(
                0x86dd,
                None,
                &v6("ff02::1:ff00:2", proto::ICMPV6, &[135, 0, 0, 0]),
            ),
            action::PASS,
        ),
    ];
    for (name, frame, want) in cases {
        assert_eq!(c.test_run(&frame).unwrap(), want, "{name}");
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn lan_redirects_transit_traffic_only() {
    let c = classifier(Role::Lan);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "transit v4",
            eth(0x0800, None, &v4("10.201.2.2", proto::TCP, &[0; 20], false)),
            WOULD_REDIRECT,
        ),
        (
            "transit v4 vlan",
            eth(
                0x0800,
                Some(3),
                &v4("10.201.2.2", proto::UDP, &[0; 8], false),
            ),
            WOULD_REDIRECT,
        ),
        (
            "to the gateway v4",
            eth(
                0x0800,
                None,
                &v4("10.200.0.2", proto::ICMP, &[8, 0, 0, 0], false),
            ),
            action::PASS,
        ),
        (
            "broadcast",
            eth(
                0x0800,
                None,
                &v4("255.255.255.255", proto::UDP, &[0; 8], false),
            ),
            action::PASS,
        ),
        (
            "multicast v4",
            eth(0x0800, None, &v4("224.0.0.5", proto::UDP, &[0; 8], false)),
            action::PASS,
        ),
        ("arp", eth(0x0806, None, &[0; 28]), action::PASS),
        (
            "transit v6",
            eth(0x86dd, None, &v6("fd00:201:2::2", proto::TCP, &[0; 20])),
            WOULD_REDIRECT,
        ),
        (
            "to the gateway v6",
            eth(
                0x86dd,
                None,
                &v6("fd00:200::2", proto::ICMPV6, &[128, 0, 0, 0]),
            ),
            action::PASS,
        ),
        (
            "link-local v6",
            eth(0x86dd, None, &v6("fe80::1", proto::ICMPV6, &[128, 0, 0, 0])),
            action::PASS,
        ),
        (
            "multicast v6 (ND)",
            eth(
                0x86dd,
                None,
                &v6("ff02::1:ff00:1", proto::ICMPV6, &[135, 0, 0, 0]),
            ),
            action::PASS,
        ),
        (
            "fec0 is not link-local",
            eth(0x86dd, None, &v6("fec0::1", proto::UDP, &[0; 8])),
            WOULD_REDIRECT,
        ),
        (
            "truncated v6",
            eth(0x86dd, None, &v6("fd00:201:2::2", proto::TCP, &[])[..39]),
            action::PASS,
        ),
    ];
    for (name, frame, want) in cases {
        assert_eq!(c.test_run(&frame).unwrap(), want, "{name}");
    }
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn attaching_to_a_missing_interface_is_a_clear_error() {
    let c = classifier(Role::Wan);
    let e = c
        .attach("esprit-nope0", false)
        .err()
        .expect("no such interface");
    assert!(e.to_string().contains("esprit-nope0"), "{e}");
}

#[test]
#[ignore = "needs root: ./ci/test.sh runs it as root"]
fn every_shape_of_spec_passes_the_verifier() {
    require_root();
    let v4: Vec<Ipv4Addr> = vec!["10.200.0.2".parse().unwrap()];
    let v6: Vec<Ipv6Addr> = vec!["fd00:200::2".parse().unwrap()];
    for role in [Role::Wan, Role::Lan] {
        for (a4, a6) in [(true, false), (false, true), (true, true), (false, false)] {
            for ports in [vec![], vec![4500]] {
                let spec = ClassifierSpec {
                    role,
                    local_v4: if a4 { v4.clone() } else { vec![] },
                    local_v6: if a6 { v6.clone() } else { vec![] },
                    nat_t_ports: ports.clone(),
                    no_socket_action: action::PASS,
                };
                let r = Classifier::load(&spec, 2);
                if role == Role::Wan && !a4 && !a6 {
                    assert!(r.is_err(), "a WAN classifier without addresses is refused");
                } else if let Err(e) = r {
                    panic!("{role:?} v4={a4} v6={a6} ports={ports:?}: {e}");
                }
            }
        }
    }
}
