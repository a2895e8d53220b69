//! The forwarding pipeline, sans-IO: packets from checksum-offloading LAN hosts leave the
//! tunnel with complete checksums, and IPv4 packets without DF that exceed the tunnel MTU are
//! fragmented before encryption (each fragment its own ESP packet) and reassemble, after
//! decryption, to the original; DF packets still get ICMP fragmentation needed.

use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::decap::decap;
use dataplane::esp::{Backend, DropReason, Suite};
use dataplane::frame::{Frame, OwnedFrame, DEFAULT_HEADROOM};
use dataplane::sa::{Direction, Mode, RouteAction, RouteTable, SaConfig, SaDb, Selectors};
use dataplane::wire::checksum::{finish, fold, pseudo_header_sum, sum};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::ipv6::Ipv6Repr;
use dataplane::wire::{proto, Ipv4Packet, Ipv6Packet};
use dataplane::worker::fragment::FramePool;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use std::net::IpAddr;

const FRAME: usize = 2048;
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0x1a, 2];

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(dir: Direction, mode: Mode, local: &str, remote: &str) -> SaConfig {
    SaConfig {
        spi: 0xc0de,
        direction: dir,
        mode,
        suite: Suite::Aes256Gcm16,
        key: KeyMaterial::new((0..36u8).collect()),
        integ_key: None,
        local: a(local),
        remote: a(remote),
        encap: None,
        esn: true,
        replay_window: 1024,
        seq: 0,
        local_ts: Selectors::default(),
        remote_ts: Selectors::default(),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// Gateway A's pipeline (LAN 10.1.0.0/24 and fd01::/64, WAN MTU `mtu`) and gateway B's SA
/// database to decrypt what A sends.
fn gateways(mode: Mode, mtu: usize) -> (Pipeline, SaDb) {
    let mut tx = SaDb::new(Backend::default());
    tx.insert(sa(Direction::Out, mode, "10.200.0.1", "10.200.0.2"))
        .unwrap();
    let mut rx = SaDb::new(Backend::default());
    rx.insert(sa(Direction::In, mode, "10.200.0.2", "10.200.0.1"))
        .unwrap();
    let mut wan_n = Neighbours::new();
    wan_n.insert(a("10.200.0.2"), PEER_MAC);
    let mut lan_n = Neighbours::new();
    lan_n.insert(a("10.1.0.2"), HOST_MAC);
    lan_n.insert(a("fd01::2"), HOST_MAC);
    let lan = Side {
        mac: [2, 0, 0, 0, 0x1a, 1],
        onlink: vec!["10.1.0.0/24".parse().unwrap(), "fd01::/64".parse().unwrap()],
        gateway: None,
        routes: Vec::new(),
        neighbours: lan_n,
        mtu: 1500,
        addrs: vec![a("10.1.0.1"), a("fd01::1")],
    };
    let wan = Side {
        mac: [2, 0, 0, 0, 0x0a, 1],
        onlink: vec!["10.200.0.0/24".parse().unwrap()],
        gateway: None,
        routes: Vec::new(),
        neighbours: wan_n,
        mtu,
        addrs: vec![a("10.200.0.1")],
    };
    (Pipeline::new(tx, lan, wan), rx)
}

/// Frames in memory, as the worker's UMEM free list hands them out.
struct VecPool {
    free: usize,
    sent: Vec<(Port, OwnedFrame)>,
    given_back: usize,
}

impl VecPool {
    fn new(free: usize) -> Self {
        VecPool {
            free,
            sent: vec![],
            given_back: 0,
        }
    }
}

impl FramePool<Vec<u8>> for VecPool {
    fn take(&mut self) -> Option<OwnedFrame> {
        if self.free == 0 {
            return None;
        }
        self.free -= 1;
        Frame::new(vec![0u8; FRAME], DEFAULT_HEADROOM, FRAME)
    }

    fn send(&mut self, f: OwnedFrame, port: Port) {
        self.sent.push((port, f));
    }

    fn wait(&mut self, _: OwnedFrame, _: Port, hop: std::net::IpAddr) {
        panic!("the test's next hops are resolved, yet a fragment waits for {hop}");
    }

    fn give_back(&mut self, _: OwnedFrame) {
        self.free += 1;
        self.given_back += 1;
    }
}

/// An Ethernet frame from the LAN host around `ip`, in a UMEM-sized buffer (or larger, for
/// packets past a LAN MTU).
fn lan_frame(ip: &[u8]) -> OwnedFrame {
    let mut pkt = vec![0u8; 14];
    pkt[..6].copy_from_slice(&[2, 0, 0, 0, 0x1a, 1]);
    pkt[6..12].copy_from_slice(&HOST_MAC);
    let et: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    pkt[12..14].copy_from_slice(&et.to_be_bytes());
    pkt.extend_from_slice(ip);
    let tail = FRAME.saturating_sub(DEFAULT_HEADROOM + pkt.len()).max(64);
    OwnedFrame::from_packet(&pkt, DEFAULT_HEADROOM, tail)
}

/// Runs one LAN frame through A; returns its verdict, the frame and the pool's extra frames.
fn through(p: &mut Pipeline, ip: &[u8], pool: &mut VecPool) -> (Out, OwnedFrame) {
    let mut frames = [lan_frame(ip)];
    let mut out = [Out::Drop(DropReason::Malformed)];
    p.process_with(Port::Lan, &mut frames, &mut out, pool);
    let [f] = frames;
    (out[0], f)
}

/// Decrypts an Ethernet+ESP frame at B; returns the inner packet.
fn open(rx: &mut SaDb, f: &OwnedFrame) -> Vec<u8> {
    assert_eq!(&f.data()[..6], &PEER_MAC, "to the peer gateway");
    let mut g = OwnedFrame::from_packet(&f.data()[14..], DEFAULT_HEADROOM, 64);
    decap(rx, &mut g).expect("decrypts at the peer");
    g.data().to_vec()
}

/// An IPv4 packet; the L4 header is filled in by the caller.
fn v4(protocol: u8, l4: &[u8], dont_frag: bool, ident: u16) -> Vec<u8> {
    let mut b = vec![0u8; 20 + l4.len()];
    Ipv4Repr {
        src: "10.1.0.2".parse().unwrap(),
        dst: "10.2.0.2".parse().unwrap(),
        protocol,
        payload_len: l4.len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident,
        dont_frag,
    }
    .emit(&mut b);
    b[20..].copy_from_slice(l4);
    b
}

fn v6(protocol: u8, l4: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40 + l4.len()];
    Ipv6Repr {
        src: "fd01::2".parse().unwrap(),
        dst: "fd02::2".parse().unwrap(),
        next_header: protocol,
        payload_len: l4.len(),
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        flow_label: 7,
    }
    .emit(&mut b);
    b[40..].copy_from_slice(l4);
    b
}

/// (L4 offset, pseudo-header sum) of an IP packet without extension headers.
fn pseudo(pkt: &[u8]) -> (usize, u32) {
    if pkt[0] >> 4 == 4 {
        let p = Ipv4Packet::new_checked(pkt).unwrap();
        let (l4, n) = (p.header_len(), p.total_len() - p.header_len());
        (
            l4,
            pseudo_header_sum(&pkt[12..16], &pkt[16..20], p.protocol(), n),
        )
    } else {
        let p = Ipv6Packet::new_checked(pkt).unwrap();
        (
            40,
            pseudo_header_sum(&pkt[8..24], &pkt[24..40], p.next_header(), p.payload_len()),
        )
    }
}

fn checksum_ok(pkt: &[u8]) -> bool {
    let (l4, s) = pseudo(pkt);
    finish(sum(s, &pkt[l4..])) == 0
}

/// Puts what a checksum-offloading sender leaves in the field: the pseudo-header sum.
fn partial(mut pkt: Vec<u8>, at: usize) -> Vec<u8> {
    let (l4, s) = pseudo(&pkt);
    pkt[l4 + at..l4 + at + 2].copy_from_slice(&fold(s).to_be_bytes());
    pkt
}

fn tcp_syn(payload: usize) -> Vec<u8> {
    let mut t = vec![0u8; 24 + payload];
    t[0..2].copy_from_slice(&43210u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = 6 << 4;
    t[13] = 0x02;
    t[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    for (i, x) in t[24..].iter_mut().enumerate() {
        *x = i as u8 ^ 0x5a;
    }
    t
}

fn udp(payload: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload];
    u[0..2].copy_from_slice(&5353u16.to_be_bytes());
    u[2..4].copy_from_slice(&9999u16.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    for (i, x) in u[8..].iter_mut().enumerate() {
        *x = (i * 7) as u8;
    }
    u
}

/// Transport header length of a test packet (TCP with the MSS option, UDP, ICMPv6 echo).
fn header_len(pkt: &[u8]) -> usize {
    let protocol = if pkt[0] >> 4 == 4 { pkt[9] } else { pkt[6] };
    match protocol {
        proto::TCP => 24,
        _ => 8,
    }
}

#[test]
fn partial_checksums_leave_the_tunnel_complete() {
    let (mut gw, mut rx) = gateways(Mode::Tunnel, 1500);
    let cases = [
        partial(v4(proto::TCP, &tcp_syn(0), true, 1), 16),
        partial(v4(proto::TCP, &tcp_syn(101), true, 2), 16),
        partial(v4(proto::UDP, &udp(33), true, 3), 6),
        partial(v6(proto::TCP, &tcp_syn(0)), 16),
        partial(v6(proto::UDP, &udp(1001)), 6),
        partial(v6(proto::ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1, 9]), 2),
    ];
    for (i, pkt) in cases.iter().enumerate() {
        assert!(!checksum_ok(pkt), "case {i} starts partial");
        let (out, f) = through(&mut gw, pkt, &mut VecPool::new(0));
        assert_eq!(out, Out::Tx(Port::Wan), "case {i}");
        let inner = open(&mut rx, &f);
        assert!(checksum_ok(&inner), "case {i}: checksum completed");
        // Past the transport header (the SYNs' MSS option is clamped), nothing changed.
        let (l4, _) = pseudo(pkt);
        let skip = l4 + header_len(pkt);
        assert_eq!(inner.len(), pkt.len(), "case {i}");
        assert_eq!(inner[skip..], pkt[skip..], "case {i}: payload");
    }
    assert_eq!(gw.checksums_completed, cases.len() as u64);
    // The SYNs were clamped after completion, and the incremental update kept them valid.
    assert_eq!(gw.mss_clamped, 3);

    // Complete checksums pass untouched (and are not counted).
    let mut ok = v4(proto::UDP, &udp(40), true, 9);
    let (l4, s) = pseudo(&ok);
    let c = finish(sum(s, &ok[l4..]));
    ok[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    let (_, f) = through(&mut gw, &ok, &mut VecPool::new(0));
    let inner = open(&mut rx, &f);
    assert_eq!(inner[20..], ok[20..]);
    assert_eq!(gw.checksums_completed, cases.len() as u64);
}

#[test]
fn transport_mode_completes_checksums_too() {
    let (mut gw, mut rx) = gateways(Mode::Transport, 1500);
    let mut pkt = partial(v4(proto::UDP, &udp(77), true, 1), 6);
    pkt[12..16].copy_from_slice(&[10, 200, 0, 1]);
    pkt[16..20].copy_from_slice(&[10, 200, 0, 2]);
    let mut h = Ipv4Packet::new_checked(&mut pkt[..]).unwrap();
    h.fill_checksum();
    let pkt = partial(pkt, 6);
    let (out, f) = through(&mut gw, &pkt, &mut VecPool::new(0));
    assert_eq!(out, Out::Tx(Port::Wan));
    assert!(checksum_ok(&open(&mut rx, &f)));
    assert_eq!(gw.checksums_completed, 1);
}

/// Splits `pieces` by IP identification and checks each group reassembles to the datagram
/// `whole` (payload after the 20-byte header).
fn assert_reassembles(pieces: &[Vec<u8>], whole: &[u8]) {
    let mut v: Vec<(usize, Vec<u8>, bool)> = pieces
        .iter()
        .map(|p| {
            let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), u16::from_be_bytes([whole[4], whole[5]]));
            (ip.frag_offset(), ip.payload().to_vec(), ip.more_frags())
        })
        .collect();
    v.sort_by_key(|x| x.0);
    let mut data = vec![];
    for (off, d, _) in &v {
        assert_eq!(*off, data.len());
        data.extend_from_slice(d);
    }
    assert!(!v.last().unwrap().2, "the last piece has MF clear");
    assert_eq!(data, whole[20..]);
}

#[test]
fn non_df_ipv4_is_fragmented_inside_the_tunnel() {
    let (mut gw, mut rx) = gateways(Mode::Tunnel, 1500);
    let max = gw.sadb.outbound()[0].max_inner_len(1500);
    // A 3,000-byte UDP datagram from a checksum-offloading host: completed, then cut.
    let whole = partial(v4(proto::UDP, &udp(2972), false, 0x4242), 6);
    let mut pool = VecPool::new(8);
    let (out, f) = through(&mut gw, &whole, &mut pool);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(
        pool.sent.len(),
        2,
        "3,000 bytes in a {max}-byte tunnel: three pieces"
    );
    assert!(pool
        .sent
        .iter()
        .all(|(p, f)| *p == Port::Wan && f.len() <= 1514));
    let mut pieces = vec![open(&mut rx, &f)];
    for (_, g) in &pool.sent {
        pieces.push(open(&mut rx, g));
    }
    assert!(pieces.iter().all(|p| p.len() <= max));
    let mut expect = whole.clone();
    // What the pieces carry: TTL decremented, checksum completed.
    expect[8] -= 1;
    let (l4, s) = pseudo(&expect);
    expect[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
    let c = finish(sum(s, &expect[l4..]));
    expect[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    assert_reassembles(&pieces, &expect);
    assert_eq!((gw.fragmented, gw.fragments), (1, 3));
    assert_eq!(gw.forwarded[0], 3);
    assert_eq!(gw.drops.total(), 0);
}

#[test]
fn fragments_that_do_not_fit_are_fragmented_again() {
    let (mut gw, mut rx) = gateways(Mode::Tunnel, 1500);
    // The host sent its 3,000-byte datagram as 1500-byte fragments (1480 + 1480 + 40 bytes).
    let mut whole = v4(proto::UDP, &udp(2972), false, 0x77);
    whole[8] -= 1;
    let mut ip = Ipv4Packet::new_checked(&mut whole[..]).unwrap();
    ip.fill_checksum();
    let mut pieces = vec![];
    for (off, len, mf) in [
        (0usize, 1480usize, true),
        (1480, 1480, true),
        (2960, 20, false),
    ] {
        let mut frag = whole[..20].to_vec();
        frag.extend_from_slice(&whole[20 + off..20 + off + len]);
        frag[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        let w = (off / 8) as u16 | if mf { 0x2000 } else { 0 };
        frag[6..8].copy_from_slice(&w.to_be_bytes());
        frag[8] += 1;
        Ipv4Packet::new_checked(&mut frag[..])
            .unwrap()
            .fill_checksum();
        let mut pool = VecPool::new(4);
        let (out, f) = through(&mut gw, &frag, &mut pool);
        assert_eq!(out, Out::Tx(Port::Wan));
        pieces.push(open(&mut rx, &f));
        for (_, g) in &pool.sent {
            pieces.push(open(&mut rx, g));
        }
    }
    assert_eq!(
        pieces.len(),
        5,
        "two fragments split in two, the small one as it is"
    );
    assert_reassembles(&pieces, &whole);
    assert_eq!((gw.fragmented, gw.fragments), (2, 4));
}

#[test]
fn without_frames_the_packet_is_dropped_whole() {
    let (mut gw, _) = gateways(Mode::Tunnel, 1500);
    let whole = v4(proto::UDP, &udp(4000), false, 1);
    // Three pieces: the packet's own frame and two more, of which the pool has one.
    let mut pool = VecPool::new(1);
    let (out, _) = through(&mut gw, &whole, &mut pool);
    assert_eq!(out, Out::Drop(DropReason::FragNoFrame));
    assert_eq!(
        pool.free, 1,
        "the frame taken for the second piece is given back"
    );
    assert_eq!(pool.given_back, 1);
    assert!(pool.sent.is_empty());
    assert_eq!(gw.drops.get(DropReason::FragNoFrame), 1);
    // `process` has no pool at all.
    let mut frames = [lan_frame(&whole)];
    let mut out = [Out::Tx(Port::Lan)];
    gw.process(Port::Lan, &mut frames, &mut out);
    assert_eq!(out[0], Out::Drop(DropReason::FragNoFrame));
}

#[test]
fn df_and_ipv6_still_get_too_big_errors() {
    let (mut gw, _) = gateways(Mode::Tunnel, 1500);
    let max = gw.sadb.outbound()[0].max_inner_len(1500);
    let df = v4(proto::UDP, &udp(1472), true, 1);
    let (out, f) = through(&mut gw, &df, &mut VecPool::new(8));
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = &f.data()[14..];
    assert_eq!(
        (icmp[9], icmp[20], icmp[21]),
        (proto::ICMP, 3, 4),
        "frag needed"
    );
    assert_eq!(usize::from(u16::from_be_bytes([icmp[26], icmp[27]])), max);

    let big6 = v6(proto::UDP, &udp(1452));
    let (out, f) = through(&mut gw, &big6, &mut VecPool::new(8));
    assert_eq!(out, Out::Tx(Port::Lan));
    assert_eq!(f.data()[14 + 40], 2, "packet too big");
    assert_eq!(gw.fragmented, 0);
    assert_eq!(gw.icmp_sent, 2);
}

#[test]
fn bypass_routes_fragment_to_the_wan_mtu_and_answer_df() {
    let (g, _) = gateways(Mode::Tunnel, 1500);
    let (lan, mut wan) = (g.lan.clone(), g.wan.clone());
    wan.neighbours.insert(a("10.2.0.2"), PEER_MAC);
    let mut gw = Pipeline::new(SaDb::new(Backend::default()), lan, wan);
    let mut routes = RouteTable::new();
    routes.insert("10.2.0.0/16".parse().unwrap(), RouteAction::Bypass);
    gw.set_routes(std::sync::Arc::new(routes));
    // A 1500-byte packet fits the WAN as it is; 1,600 bytes without DF leave as two fragments.
    let fits = v4(proto::UDP, &udp(1472), false, 5);
    let (out, _) = through(&mut gw, &fits, &mut VecPool::new(4));
    assert_eq!(out, Out::Tx(Port::Wan));
    let mut whole = v4(proto::UDP, &udp(1572), false, 6);
    let mut pool = VecPool::new(4);
    let (out, f) = through(&mut gw, &whole, &mut pool);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(pool.sent.len(), 1);
    let pieces = vec![
        f.data()[14..].to_vec(),
        pool.sent[0].1.data()[14..].to_vec(),
    ];
    assert!(pieces.iter().all(|p| p.len() <= 1500));
    whole[8] -= 1;
    Ipv4Packet::new_checked(&mut whole[..])
        .unwrap()
        .fill_checksum();
    assert_reassembles(&pieces, &whole);
    assert_eq!(gw.bypassed, 3);
    // With DF: fragmentation needed with the WAN's MTU.
    let df = v4(proto::UDP, &udp(1572), true, 7);
    let (out, f) = through(&mut gw, &df, &mut VecPool::new(4));
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = &f.data()[14..];
    assert_eq!((icmp[20], icmp[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1500);
}

#[test]
fn transport_mode_does_not_fragment() {
    let (mut gw, _) = gateways(Mode::Transport, 1500);
    let mut pkt = v4(proto::UDP, &udp(1600), false, 1);
    pkt[12..16].copy_from_slice(&[10, 200, 0, 1]);
    pkt[16..20].copy_from_slice(&[10, 200, 0, 2]);
    Ipv4Packet::new_checked(&mut pkt[..])
        .unwrap()
        .fill_checksum();
    let mut pool = VecPool::new(8);
    let (out, _) = through(&mut gw, &pkt, &mut pool);
    assert_eq!(out, Out::Drop(DropReason::TooBig));
    assert_eq!(pool.free, 8);
}

proptest::proptest! {
    /// Oversized non-DF IPv4 with arbitrary options and payload: a counted drop or pieces
    /// that decrypt and reassemble to the packet; never a panic.
    #[test]
    fn arbitrary_oversized_packets_fragment_or_drop(
        ihl in 5usize..=15,
        options in proptest::collection::vec(proptest::num::u8::ANY, 40),
        payload_len in 1400usize..1900,
        flags_offset in proptest::num::u16::ANY,
        protocol in proptest::num::u8::ANY,
        frames in 0usize..4,
    ) {
        let (mut gw, mut rx) = gateways(Mode::Tunnel, 1500);
        let hl = ihl * 4;
        let mut pkt = v4(protocol, &vec![0x5a; payload_len], false, 0x1234);
        pkt.splice(20..20, options[..hl - 20].iter().copied());
        pkt[0] = 0x40 | ihl as u8;
        let total = pkt.len() as u16;
        pkt[2..4].copy_from_slice(&total.to_be_bytes());
        pkt[6..8].copy_from_slice(&(flags_offset & 0xbfff).to_be_bytes());
        Ipv4Packet::new_checked(&mut pkt[..]).unwrap().fill_checksum();
        let mut pool = VecPool::new(frames);
        let (out, f) = through(&mut gw, &pkt, &mut pool);
        match out {
            Out::Tx(Port::Wan) => {
                let mut pieces = vec![open(&mut rx, &f)];
                for (_, g) in &pool.sent {
                    pieces.push(open(&mut rx, g));
                }
                let mut data = vec![];
                let base = usize::from(flags_offset & 0x1fff) * 8;
                pieces.sort_by_key(|p| Ipv4Packet::new_checked(&p[..]).unwrap().frag_offset());
                for p in &pieces {
                    let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
                    proptest::prop_assert!(ip.verify_checksum());
                    proptest::prop_assert_eq!(ip.frag_offset(), base + data.len());
                    data.extend_from_slice(ip.payload());
                }
                proptest::prop_assert_eq!(&data[..], &pkt[hl..]);
            }
            Out::Drop(r) => {
                proptest::prop_assert!(pool.sent.is_empty());
                proptest::prop_assert_eq!(pool.free, frames, "{:?}: frames given back", r);
            }
            Out::Tx(Port::Lan) => proptest::prop_assert!(false, "no ICMP for non-DF"),
            Out::Wait(_, hop) => proptest::prop_assert!(false, "{hop} is resolved"),
            Out::Host(t) => proptest::prop_assert!(false, "no tunnel interface {t}"),
        }
    }
}
