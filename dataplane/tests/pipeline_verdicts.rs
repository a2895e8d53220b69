//! Every verdict and every drop reason of the sans-IO forwarding pipeline, in memory: frames
//! built here (plaintext from the LAN, ESP from the WAN) go through [`Pipeline::process_with`]
//! with an in-memory frame pool, and each case checks where the frame goes and that exactly
//! the one drop counter it names moved (no drop uncounted, none counted twice). Root-free: no
//! sockets, no namespaces, no kernel.

use dataplane::esp::aead::{new_aead, KeyMaterial};
use dataplane::esp::encap::LookupCache;
use dataplane::esp::{Backend, DropCounters, DropReason, Suite, Verdict};
use dataplane::frame::{Frame, OwnedFrame, DEFAULT_HEADROOM};
use dataplane::sa::spd::Trap;
use dataplane::sa::{
    Direction, Lifetime, Mode, RouteAction, RouteTable, SaConfig, SaDb, Selectors,
};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::ipv6::Ipv6Repr;
use dataplane::wire::{proto, Ipv4Packet};
use dataplane::worker::fragment::FramePool;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use std::collections::BTreeSet;
use std::net::IpAddr;

const FRAME: usize = 2048;
/// Drop reasons the pipeline cannot produce, with why.
///
/// - `no_neighbour`: no longer counted; a frame without a next-hop MAC leaves as `Out::Wait`
///   (covered below).
/// - `tx_full`, `neigh_queue_full`, `neigh_failed`, `neigh_timeout`: counted by the worker
///   around the pipeline (its TX ring and its `NeighQueue`, after an `Out::Wait`), never by
///   the `Pipeline` itself.
const NOT_FROM_PIPELINE: [DropReason; 5] = [
    DropReason::NoNeighbour,
    DropReason::TxFull,
    DropReason::NeighQueueFull,
    DropReason::NeighFailed,
    DropReason::NeighTimeout,
];

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sel(prefixes: &[&str]) -> Selectors {
    Selectors::new(prefixes.iter().map(|p| p.parse().unwrap()).collect())
}

/// MAC of gateway `g`'s interface (`0x1a` LAN, `0x0a` WAN), or of the host behind it (`h`).
fn mac(g: u8, what: u8) -> [u8; 6] {
    [2, 0, 0, g, what, 0]
}
const LAN: u8 = 0x1a;
const WAN: u8 = 0x0a;
const HOST: u8 = 0x1b;

/// The SPI of the SA from gateway `from` to gateway `to`.
fn spi(from: u8, to: u8) -> u32 {
    0xa000 + u32::from(from) * 16 + u32::from(to)
}

/// The tunnel-mode SA from gateway `from` to `to`, as `me` (one of the two) holds it.
fn tunnel_sa(me: u8, from: u8, to: u8) -> SaConfig {
    let peer = if me == from { to } else { from };
    let s = spi(from, to);
    SaConfig {
        spi: s,
        direction: if me == from {
            Direction::Out
        } else {
            Direction::In
        },
        mode: Mode::Tunnel,
        suite: Suite::Aes256Gcm16,
        key: KeyMaterial::new(vec![s as u8; 36]),
        local: a(&format!("10.200.0.{me}")),
        remote: a(&format!("10.200.0.{peer}")),
        encap: None,
        esn: false,
        replay_window: 64,
        seq: 0,
        local_ts: sel(&[&format!("10.{me}.0.0/24"), &format!("fd0{me}::/64")]),
        remote_ts: sel(&[&format!("10.{peer}.0.0/24"), &format!("fd0{peer}::/64")]),
        lifetime: Lifetime::default(),
        pad_align: 4,
        owner: None,
    }
}

/// A transport-mode SA from gateway 2 to gateway 1 (held by `me`).
fn transport_sa(me: u8) -> SaConfig {
    let mut c = tunnel_sa(me, 2, 1);
    c.spi = 0xd0;
    c.mode = Mode::Transport;
    c.local_ts = Selectors::default();
    c.remote_ts = Selectors::default();
    c
}

fn side(g: u8, what: u8, onlink: &[&str], addrs: &[&str], neighbours: &[(&str, [u8; 6])]) -> Side {
    let mut n = Neighbours::new();
    for (ip, m) in neighbours {
        n.insert(a(ip), *m);
    }
    Side {
        mac: mac(g, what),
        onlink: onlink.iter().map(|p| p.parse().unwrap()).collect(),
        gateway: None,
        neighbours: n,
        mtu: 1500,
        addrs: addrs.iter().map(|x| a(x)).collect(),
    }
}

/// Gateway `me` (1 or 2) of two: LAN 10.me.0.0/24 and fd0me::/64 with one host (.2 / ::2),
/// WAN 10.200.0.me, a tunnel SA each way to the other gateway, and (at gateway 1) an inbound
/// transport-mode SA from gateway 2.
fn gateway(me: u8) -> Pipeline {
    let peer = 3 - me;
    let mut db = SaDb::new(Backend::default());
    db.insert(tunnel_sa(me, me, peer)).unwrap();
    db.insert(tunnel_sa(me, peer, me)).unwrap();
    if me == 1 {
        db.insert(transport_sa(1)).unwrap();
    }
    let (host4, host6) = (format!("10.{me}.0.2"), format!("fd0{me}::2"));
    let lan = side(
        me,
        LAN,
        &[&format!("10.{me}.0.0/24"), &format!("fd0{me}::/64")],
        &[&format!("10.{me}.0.1"), &format!("fd0{me}::1")],
        &[(&host4, mac(me, HOST)), (&host6, mac(me, HOST))],
    );
    let wan = side(
        me,
        WAN,
        &["10.200.0.0/24"],
        &[&format!("10.200.0.{me}")],
        &[(&format!("10.200.0.{peer}"), mac(peer, WAN))],
    );
    let mut p = Pipeline::new(db, lan, wan);
    p.mss_clamp = false;
    p
}

/// Frames in memory, as the worker's UMEM free list hands them out.
struct VecPool {
    free: usize,
    sent: Vec<(Port, OwnedFrame)>,
    waiting: Vec<(Port, IpAddr)>,
}

impl VecPool {
    fn new(free: usize) -> Self {
        VecPool {
            free,
            sent: vec![],
            waiting: vec![],
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

    fn wait(&mut self, _: OwnedFrame, port: Port, hop: IpAddr) {
        self.waiting.push((port, hop));
    }

    fn give_back(&mut self, _: OwnedFrame) {
        self.free += 1;
    }
}

/// An IPv4 packet from `src` to `dst` with `n` bytes of UDP-ish payload.
fn v4(src: &str, dst: &str, ttl: u8, n: usize, dont_frag: bool) -> Vec<u8> {
    v4_proto(src, dst, ttl, n, dont_frag, proto::UDP)
}

fn v4_proto(src: &str, dst: &str, ttl: u8, n: usize, dont_frag: bool, protocol: u8) -> Vec<u8> {
    let mut b = vec![0u8; 20 + n];
    Ipv4Repr {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol,
        payload_len: n,
        ttl,
        dscp: 0,
        ecn: 0,
        ident: 0x1234,
        dont_frag,
    }
    .emit(&mut b);
    for (i, x) in b[20..].iter_mut().enumerate() {
        *x = i as u8;
    }
    if protocol == proto::UDP && n >= 8 {
        // A UDP header without checksum, so nothing is "completed" on the way.
        b[24..26].copy_from_slice(&(n as u16).to_be_bytes());
        b[26..28].copy_from_slice(&[0, 0]);
    }
    b
}

fn v6(src: &str, dst: &str, hop_limit: u8, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; 40 + n];
    Ipv6Repr {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        next_header: proto::IPV6_NONXT,
        payload_len: n,
        hop_limit,
        dscp: 0,
        ecn: 0,
        flow_label: 7,
    }
    .emit(&mut b);
    for (i, x) in b[40..].iter_mut().enumerate() {
        *x = i as u8;
    }
    b
}

/// An Ethernet frame from `src` to `dst` around `ip` (any bytes), in a UMEM-sized buffer (or
/// larger, for packets past an MTU).
fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, ip: &[u8]) -> OwnedFrame {
    let mut pkt = vec![0u8; 14];
    pkt[..6].copy_from_slice(&dst);
    pkt[6..12].copy_from_slice(&src);
    pkt[12..14].copy_from_slice(&ethertype.to_be_bytes());
    pkt.extend_from_slice(ip);
    let tail = FRAME.saturating_sub(DEFAULT_HEADROOM + pkt.len()).max(64);
    OwnedFrame::from_packet(&pkt, DEFAULT_HEADROOM, tail)
}

fn ethertype(ip: &[u8]) -> u16 {
    if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    }
}

/// From gateway 1's LAN host to gateway 1.
fn from_lan(ip: &[u8]) -> OwnedFrame {
    eth(mac(1, LAN), mac(1, HOST), ethertype(ip), ip)
}

/// From gateway 2 to gateway 1's WAN.
fn from_wan(ip: &[u8]) -> OwnedFrame {
    eth(mac(1, WAN), mac(2, WAN), ethertype(ip), ip)
}

/// ESP of `inner` as gateway 2 sends it with `cfg` (an outbound SA, its selectors widened so
/// that any packet is sealed), sequence number `cfg.seq + 1`.
fn seal_with(mut cfg: SaConfig, inner: &[u8]) -> Vec<u8> {
    cfg.local_ts = Selectors::default();
    cfg.remote_ts = Selectors::default();
    let mut db = SaDb::new(Backend::default());
    db.insert(cfg).unwrap();
    let mut f = OwnedFrame::from_packet(inner, DEFAULT_HEADROOM, 256);
    assert_eq!(
        db.encrypt_one(&mut f, &mut LookupCache::default()),
        Verdict::Pass
    );
    f.data().to_vec()
}

/// ESP of `inner` from gateway 2 to gateway 1 through the tunnel, with sequence number `seq`.
fn esp_to_1(inner: &[u8], seq: u64) -> Vec<u8> {
    let mut c = tunnel_sa(2, 2, 1);
    c.seq = seq - 1;
    seal_with(c, inner)
}

/// ESP from gateway 2 to 1 with an authentic ICV whose plaintext is `inner`, `pad` (as given,
/// not necessarily 1, 2, 3, …), the pad length and `next_header`: what the SA database never
/// builds.
fn hand_sealed(inner: &[u8], pad: &[u8], next_header: u8) -> Vec<u8> {
    let cfg = tunnel_sa(2, 2, 1);
    let keymat = cfg.key.expose_secret();
    let (spi, seq, iv) = (cfg.spi.to_be_bytes(), 1u32.to_be_bytes(), [7u8; 8]);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&keymat[32..36]);
    nonce[4..].copy_from_slice(&iv);
    let mut body = inner.to_vec();
    body.extend_from_slice(pad);
    body.extend_from_slice(&[pad.len() as u8, next_header]);
    body.extend_from_slice(&[0; 16]);
    let mut aad = spi.to_vec();
    aad.extend_from_slice(&seq);
    new_aead(Backend::default(), Suite::Aes256Gcm16, &keymat[..32])
        .unwrap()
        .seal(&nonce, &aad, &mut body)
        .unwrap();
    let mut esp = [&spi[..], &seq[..], &iv[..]].concat();
    esp.extend_from_slice(&body);
    let mut pkt = v4_proto("10.200.0.2", "10.200.0.1", 64, esp.len(), false, proto::ESP);
    pkt[20..].copy_from_slice(&esp);
    pkt
}

/// Rewrites an outer IPv4 header with `f` and fixes its checksum.
fn patch_v4(mut pkt: Vec<u8>, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    f(&mut pkt);
    Ipv4Packet::new_checked(&mut pkt[..])
        .unwrap()
        .fill_checksum();
    pkt
}

/// Every drop counter of the pipeline: its own, its SA database's and every SA's.
fn drops(p: &Pipeline) -> DropCounters {
    let mut c = p.drops;
    c.merge(&p.sadb.drops);
    for sa in p.sadb.inbound() {
        c.merge(&sa.counters.drops);
    }
    for sa in p.sadb.outbound() {
        c.merge(&sa.counters.drops);
    }
    c
}

/// Runs one frame through `p` from `port` with `spares` pool frames.
fn run(p: &mut Pipeline, port: Port, f: OwnedFrame, spares: usize) -> (Out, OwnedFrame, VecPool) {
    let mut pool = VecPool::new(spares);
    let mut frames = [f];
    let mut out = [Out::Drop(DropReason::Malformed)];
    p.process_with(port, &mut frames, &mut out, &mut pool);
    let [f] = frames;
    (out[0], f, pool)
}

/// One case: prepares gateway 1 (and may send frames ahead), then returns the frame under test.
struct Case {
    name: &'static str,
    prepare: fn(&mut Pipeline) -> (Port, OwnedFrame),
    spares: usize,
    out: Out,
    counted: Option<DropReason>,
}

fn lan_ok(_: &mut Pipeline) -> (Port, OwnedFrame) {
    (
        Port::Lan,
        from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 100, true)),
    )
}

fn wan_ok(_: &mut Pipeline) -> (Port, OwnedFrame) {
    let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
    (Port::Wan, from_wan(&esp_to_1(&inner, 1)))
}

fn cases() -> Vec<Case> {
    let wait_wan = Out::Wait(Port::Wan, a("10.200.0.2"));
    vec![
        Case {
            name: "lan ipv4 into the tunnel",
            prepare: lan_ok,
            spares: 0,
            out: Out::Tx(Port::Wan),
            counted: None,
        },
        Case {
            name: "lan ipv6 into the tunnel",
            prepare: |_| (Port::Lan, from_lan(&v6("fd01::2", "fd02::2", 64, 100))),
            spares: 0,
            out: Out::Tx(Port::Wan),
            counted: None,
        },
        Case {
            name: "wan esp out of the tunnel",
            prepare: wan_ok,
            spares: 0,
            out: Out::Tx(Port::Lan),
            counted: None,
        },
        Case {
            name: "lan: not IP (ARP)",
            prepare: |_| (Port::Lan, eth(mac(1, LAN), mac(1, HOST), 0x0806, &[0; 28])),
            spares: 0,
            out: Out::Drop(DropReason::Malformed),
            counted: Some(DropReason::Malformed),
        },
        Case {
            name: "lan: truncated IPv4",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 8, true)[..12]),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::Malformed),
            counted: Some(DropReason::Malformed),
        },
        Case {
            name: "wan: not ESP (UDP to a port that is not NAT-T)",
            prepare: |_| {
                (
                    Port::Wan,
                    from_wan(&v4("10.200.0.2", "10.200.0.1", 64, 40, true)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::Malformed),
            counted: Some(DropReason::Malformed),
        },
        Case {
            name: "wan: ESP too short for IV and ICV",
            prepare: |_| {
                let pkt = v4_proto("10.200.0.2", "10.200.0.1", 64, 16, true, proto::ESP);
                (Port::Wan, from_wan(&pkt))
            },
            spares: 0,
            out: Out::Drop(DropReason::Malformed),
            counted: Some(DropReason::Malformed),
        },
        Case {
            name: "wan: unknown SPI",
            prepare: |_| {
                let mut c = tunnel_sa(2, 2, 1);
                c.spi = 0xdead;
                let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
                (Port::Wan, from_wan(&seal_with(c, &inner)))
            },
            spares: 0,
            out: Out::Drop(DropReason::UnknownSpi),
            counted: Some(DropReason::UnknownSpi),
        },
        Case {
            name: "wan: replayed",
            prepare: |p| {
                let (_, f) = wan_ok(p);
                let again = OwnedFrame::from_packet(f.data(), DEFAULT_HEADROOM, 64);
                assert_eq!(run(p, Port::Wan, f, 0).0, Out::Tx(Port::Lan));
                (Port::Wan, again)
            },
            spares: 0,
            out: Out::Drop(DropReason::Replayed),
            counted: Some(DropReason::Replayed),
        },
        Case {
            name: "wan: ICV does not verify",
            prepare: |_| {
                let mut pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
                *pkt.last_mut().unwrap() ^= 1;
                (Port::Wan, from_wan(&pkt))
            },
            spares: 0,
            out: Out::Drop(DropReason::AuthFailed),
            counted: Some(DropReason::AuthFailed),
        },
        Case {
            name: "wan: padding not 1, 2, 3, …",
            prepare: |_| {
                let inner = v4("10.2.0.2", "10.1.0.2", 64, 98, true);
                (
                    Port::Wan,
                    from_wan(&hand_sealed(&inner, &[9, 9, 9, 9], proto::IPV4)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::BadPadding),
            counted: Some(DropReason::BadPadding),
        },
        Case {
            name: "wan: inner packet outside the SA's selectors",
            prepare: |_| {
                let inner = v4("10.5.0.2", "10.1.0.2", 64, 100, true);
                (Port::Wan, from_wan(&esp_to_1(&inner, 1)))
            },
            spares: 0,
            out: Out::Drop(DropReason::SelectorMismatch),
            counted: Some(DropReason::SelectorMismatch),
        },
        Case {
            name: "lan: outbound sequence numbers exhausted",
            prepare: |p| {
                let mut c = tunnel_sa(1, 1, 2);
                c.seq = u64::from(u32::MAX);
                p.sadb.replace(c).unwrap();
                lan_ok(p)
            },
            spares: 0,
            out: Out::Drop(DropReason::SeqExhausted),
            counted: Some(DropReason::SeqExhausted),
        },
        Case {
            name: "wan: outer IPv4 fragment",
            prepare: |_| {
                let pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
                let pkt = patch_v4(pkt, |b| b[6] = 0x20);
                (Port::Wan, from_wan(&pkt))
            },
            spares: 0,
            out: Out::Drop(DropReason::Fragment),
            counted: Some(DropReason::Fragment),
        },
        Case {
            name: "lan: DF packet past the tunnel MTU (ICMP fragmentation needed)",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 1460, true)),
                )
            },
            spares: 0,
            out: Out::Tx(Port::Lan),
            counted: Some(DropReason::TooBig),
        },
        Case {
            name: "wan: CE outside, not ECN-capable inside",
            prepare: |_| {
                let pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
                let pkt = patch_v4(pkt, |b| b[1] |= 3);
                (Port::Wan, from_wan(&pkt))
            },
            spares: 0,
            out: Out::Drop(DropReason::EcnDrop),
            counted: Some(DropReason::EcnDrop),
        },
        Case {
            name: "wan: dummy packet (next header 59)",
            prepare: |_| {
                let pkt = v4_proto("10.200.0.2", "10.200.0.1", 64, 40, true, 59);
                (Port::Wan, from_wan(&seal_with(transport_sa(2), &pkt)))
            },
            spares: 0,
            out: Out::Drop(DropReason::Dummy),
            counted: Some(DropReason::Dummy),
        },
        Case {
            name: "lan: no SA and no route",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.9.0.2", 64, 100, true)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::NoPolicy),
            counted: Some(DropReason::NoPolicy),
        },
        Case {
            name: "lan: a drop route",
            prepare: |p| {
                let mut r = RouteTable::new();
                r.insert("10.9.0.0/16".parse().unwrap(), RouteAction::Drop);
                p.set_routes(r);
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.9.0.2", 64, 100, true)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::NoPolicy),
            counted: Some(DropReason::NoPolicy),
        },
        Case {
            name: "lan: a tunnel route to a peer without SA",
            prepare: |p| {
                let mut r = RouteTable::new();
                r.insert(
                    "10.9.0.0/16".parse().unwrap(),
                    RouteAction::Tunnel(a("10.200.0.7")),
                );
                p.set_routes(r);
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.9.0.2", 64, 100, true)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::NoPolicy),
            counted: Some(DropReason::NoPolicy),
        },
        Case {
            name: "lan: a bypass route (in the clear)",
            prepare: |p| {
                let mut r = RouteTable::new();
                r.insert("10.200.0.0/24".parse().unwrap(), RouteAction::Bypass);
                p.set_routes(r);
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.200.0.2", 64, 100, true)),
                )
            },
            spares: 0,
            out: Out::Tx(Port::Wan),
            counted: None,
        },
        Case {
            name: "lan: TTL 1 (ICMP time exceeded back to the host)",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 1, 100, true)),
                )
            },
            spares: 0,
            out: Out::Tx(Port::Lan),
            counted: Some(DropReason::TtlExceeded),
        },
        Case {
            name: "lan: hop limit 1 (ICMPv6 time exceeded back to the host)",
            prepare: |_| (Port::Lan, from_lan(&v6("fd01::2", "fd02::2", 1, 100))),
            spares: 0,
            out: Out::Tx(Port::Lan),
            counted: Some(DropReason::TtlExceeded),
        },
        Case {
            name: "wan: inner TTL 1 (ICMP time exceeded back through the tunnel)",
            prepare: |_| {
                let inner = v4("10.2.0.2", "10.1.0.2", 1, 100, true);
                (Port::Wan, from_wan(&esp_to_1(&inner, 1)))
            },
            spares: 0,
            out: Out::Tx(Port::Wan),
            counted: Some(DropReason::TtlExceeded),
        },
        Case {
            name: "lan: outbound SA past its hard packet limit",
            prepare: |p| {
                let mut c = tunnel_sa(1, 1, 2);
                c.lifetime.hard_packets = Some(1);
                p.sadb.replace(c).unwrap();
                let (_, f) = lan_ok(p);
                assert_eq!(run(p, Port::Lan, f, 0).0, Out::Tx(Port::Wan));
                lan_ok(p)
            },
            spares: 0,
            out: Out::Drop(DropReason::Expired),
            counted: Some(DropReason::Expired),
        },
        Case {
            name: "wan: inbound SA past its hard packet limit",
            prepare: |p| {
                let mut c = tunnel_sa(1, 2, 1);
                c.lifetime.hard_packets = Some(1);
                p.sadb.replace(c).unwrap();
                let (_, f) = wan_ok(p);
                assert_eq!(run(p, Port::Wan, f, 0).0, Out::Tx(Port::Lan));
                let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
                (Port::Wan, from_wan(&esp_to_1(&inner, 2)))
            },
            spares: 0,
            out: Out::Drop(DropReason::Expired),
            counted: Some(DropReason::Expired),
        },
        Case {
            name: "lan: a trap policy without SA (acquire)",
            prepare: |p| {
                p.sadb.set_traps(vec![Trap::new(
                    7,
                    sel(&["10.1.0.0/24"]),
                    sel(&["10.3.0.0/24"]),
                )]);
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.3.0.2", 64, 100, true)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::Acquire),
            counted: Some(DropReason::Acquire),
        },
        Case {
            name: "lan: next hop unknown on the WAN (waits)",
            prepare: |p| {
                p.wan.neighbours.remove(a("10.200.0.2"));
                lan_ok(p)
            },
            spares: 0,
            out: wait_wan,
            counted: None,
        },
        Case {
            name: "wan: next hop unknown on the LAN (waits)",
            prepare: |p| {
                p.lan.neighbours.remove(a("10.1.0.2"));
                wan_ok(p)
            },
            spares: 0,
            out: Out::Wait(Port::Lan, a("10.1.0.2")),
            counted: None,
        },
        Case {
            name: "lan: non-DF past the tunnel MTU, fragmented",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 1460, false)),
                )
            },
            spares: 1,
            out: Out::Tx(Port::Wan),
            counted: None,
        },
        Case {
            name: "lan: non-DF past the tunnel MTU, no frame for a fragment",
            prepare: |_| {
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 1460, false)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::FragNoFrame),
            counted: Some(DropReason::FragNoFrame),
        },
        Case {
            name: "lan: non-DF needing more fragments than allowed",
            prepare: |p| {
                p.wan.mtu = 120;
                (
                    Port::Lan,
                    from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 4000, false)),
                )
            },
            spares: 0,
            out: Out::Drop(DropReason::FragLimit),
            counted: Some(DropReason::FragLimit),
        },
    ]
}

#[test]
fn every_case_has_its_verdict_and_moves_exactly_its_counter() {
    for c in cases() {
        let mut p = gateway(1);
        let (port, f) = (c.prepare)(&mut p);
        let before = drops(&p);
        let (out, _, pool) = run(&mut p, port, f, c.spares);
        let after = drops(&p);
        assert_eq!(out, c.out, "{}: verdict", c.name);
        for r in DropReason::ALL {
            let moved = after.get(r) - before.get(r);
            let want = u64::from(c.counted == Some(r));
            assert_eq!(moved, want, "{}: counter {r} moved by {moved}", c.name);
        }
        assert_eq!(
            pool.free + pool.sent.len() + pool.waiting.len(),
            c.spares,
            "{}: every spare frame comes back",
            c.name
        );
    }
}

#[test]
fn every_drop_reason_is_covered_or_listed() {
    let covered: BTreeSet<&str> = cases()
        .iter()
        .filter_map(|c| c.counted.map(DropReason::name))
        .chain(NOT_FROM_PIPELINE.iter().map(|r| r.name()))
        .collect();
    let all: BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(covered, all);
}

/// The IP packet of an Ethernet frame, checking its addresses.
fn ip_of(f: &OwnedFrame, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let d = f.data();
    assert_eq!(&d[..6], &dst, "destination MAC");
    assert_eq!(&d[6..12], &src, "source MAC");
    d[14..].to_vec()
}

/// `pkt` with its TTL / hop limit lowered by `by` (and the IPv4 checksum fixed).
fn aged(pkt: &[u8], by: u8) -> Vec<u8> {
    let mut p = pkt.to_vec();
    if p[0] >> 4 == 4 {
        p[8] -= by;
        Ipv4Packet::new_checked(&mut p[..]).unwrap().fill_checksum();
    } else {
        p[7] -= by;
    }
    p
}

#[test]
fn through_the_tunnel_and_out_of_its_twin_the_packet_is_the_original() {
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    for inner in [
        v4("10.1.0.2", "10.2.0.2", 64, 333, true),
        v6("fd01::2", "fd02::2", 64, 333),
        v4("10.1.0.2", "10.2.0.2", 64, 0, false),
    ] {
        let (out, f, _) = run(&mut g1, Port::Lan, from_lan(&inner), 0);
        assert_eq!(out, Out::Tx(Port::Wan));
        let esp = ip_of(&f, mac(2, WAN), mac(1, WAN));
        assert_ne!(esp, aged(&inner, 1), "encrypted");
        let (out, f, _) = run(&mut g2, Port::Wan, f, 0);
        assert_eq!(out, Out::Tx(Port::Lan));
        assert_eq!(ip_of(&f, mac(2, HOST), mac(2, LAN)), aged(&inner, 2));
    }
    assert_eq!(g1.forwarded, [3, 0]);
    assert_eq!(g2.forwarded, [0, 3]);
    assert_eq!((drops(&g1).total(), drops(&g2).total()), (0, 0));
}

#[test]
fn a_packet_too_big_for_the_tunnel_is_fragmented_and_every_piece_opens() {
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    let inner = v4("10.1.0.2", "10.2.0.2", 64, 1460, false);
    let (out, f, pool) = run(&mut g1, Port::Lan, from_lan(&inner), 2);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(pool.sent.len(), 1);
    let mut payload = 0;
    for (port, f) in std::iter::once((Port::Wan, f)).chain(pool.sent) {
        assert_eq!(port, Port::Wan);
        let (out, g, _) = run(&mut g2, Port::Wan, f, 0);
        assert_eq!(out, Out::Tx(Port::Lan));
        let piece = ip_of(&g, mac(2, HOST), mac(2, LAN));
        assert_eq!(piece[8], 62, "TTL lowered once per gateway");
        payload += piece.len() - 20;
    }
    assert_eq!(payload, 1460);
}

#[test]
fn icmp_errors_go_back_to_the_sender_from_the_gateway() {
    let mut g1 = gateway(1);
    let (out, f, _) = run(
        &mut g1,
        Port::Lan,
        from_lan(&v4("10.1.0.2", "10.2.0.2", 1, 64, true)),
        0,
    );
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = ip_of(&f, mac(1, HOST), mac(1, LAN));
    assert_eq!((icmp[9], icmp[20]), (proto::ICMP, 11), "time exceeded");
    assert_eq!(&icmp[12..20], &[10, 1, 0, 1, 10, 1, 0, 2]);
    let (out, f, _) = run(
        &mut g1,
        Port::Lan,
        from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 1460, true)),
        0,
    );
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = ip_of(&f, mac(1, HOST), mac(1, LAN));
    assert_eq!((icmp[20], icmp[21]), (3, 4), "fragmentation needed");
    let mtu = u16::from_be_bytes([icmp[26], icmp[27]]);
    assert_eq!(usize::from(mtu), g1.sadb.outbound()[0].max_inner_len(1500));
    assert_eq!(g1.icmp_sent, 2);
}

#[test]
fn an_expired_packet_from_the_tunnel_is_answered_through_the_tunnel() {
    let (mut g1, mut g2) = (gateway(1), gateway(2));
    let inner = v4("10.2.0.2", "10.1.0.2", 1, 64, true);
    let (out, f, _) = run(&mut g1, Port::Wan, from_wan(&esp_to_1(&inner, 1)), 0);
    assert_eq!(out, Out::Tx(Port::Wan));
    let (out, f, _) = run(&mut g2, Port::Wan, f, 0);
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = ip_of(&f, mac(2, HOST), mac(2, LAN));
    assert_eq!((icmp[9], icmp[20]), (proto::ICMP, 11));
    assert_eq!(&icmp[12..20], &[10, 1, 0, 1, 10, 2, 0, 2]);
}

#[test]
fn a_bypassed_packet_leaves_in_the_clear_with_the_next_hop_mac() {
    let mut g1 = gateway(1);
    let mut r = RouteTable::new();
    r.insert("10.200.0.0/24".parse().unwrap(), RouteAction::Bypass);
    g1.set_routes(r);
    let pkt = v4("10.1.0.2", "10.200.0.2", 64, 100, true);
    let (out, f, _) = run(&mut g1, Port::Lan, from_lan(&pkt), 0);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(ip_of(&f, mac(2, WAN), mac(1, WAN)), aged(&pkt, 1));
    assert_eq!(g1.bypassed, 1);
}

#[test]
fn a_waiting_frame_is_complete_but_for_its_destination_mac() {
    let mut g1 = gateway(1);
    g1.wan.neighbours.remove(a("10.200.0.2"));
    let (out, f, _) = run(
        &mut g1,
        Port::Lan,
        from_lan(&v4("10.1.0.2", "10.2.0.2", 64, 100, true)),
        0,
    );
    assert_eq!(out, Out::Wait(Port::Wan, a("10.200.0.2")));
    let esp = ip_of(&f, [0; 6], mac(1, WAN));
    assert_eq!(esp[9], proto::ESP);
    let mut g2 = gateway(2);
    let f = eth(mac(2, WAN), mac(1, WAN), 0x0800, &esp);
    assert_eq!(run(&mut g2, Port::Wan, f, 0).0, Out::Tx(Port::Lan));
}
