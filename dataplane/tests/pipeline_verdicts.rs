//! Every verdict and every drop reason of the sans-IO forwarding pipeline, in memory: frames
//! built here (plaintext from the LAN, ESP from the WAN) go through [`Pipeline::process_with`]
//! with an in-memory frame pool, and each case checks where the frame goes and that exactly
//! the one drop counter it names moved (no drop uncounted, none counted twice). Root-free: no
//! sockets, no namespaces, no kernel.

use dataplane::crypto::aead::{new_aead, Aead, KeyMaterial};
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
use dataplane::worker::pipeline::TunnelPort;
use dataplane::worker::{Neighbours, Out, Pipeline, Port, Side};
use std::collections::BTreeSet;
use std::net::IpAddr;

const FRAME: usize = 2048;
/// Drop reasons the pipeline cannot produce, with why.
///
/// - `no_neighbour`: no longer counted; a frame without a next-hop MAC leaves as `Out::Wait`
///   (covered below).
/// - `tx_full`, `neigh_queue_full`, `neigh_failed`, `neigh_timeout`, `host_queue_full`:
///   counted by the worker around the pipeline (its TX ring, its `NeighQueue` after an
///   `Out::Wait`, its ring to the tunnel interfaces after an `Out::Host`), never by the
///   `Pipeline` itself.
const NOT_FROM_PIPELINE: [DropReason; 6] = [
    DropReason::NoNeighbour,
    DropReason::TxFull,
    DropReason::NeighQueueFull,
    DropReason::NeighFailed,
    DropReason::NeighTimeout,
    DropReason::HostQueueFull,
];

fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sel(prefixes: &[&str]) -> Selectors {
    Selectors::new(prefixes.iter().map(|p| p.parse().unwrap()).collect())
}

/// MAC of gateway `g`'s interface (`LAN`, `WAN`) or of the host behind it (`HOST`).
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
        integ_key: None,
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
        routes: Vec::new(),
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
fn run(
    p: &mut Pipeline,
    (port, f): (Port, OwnedFrame),
    spares: usize,
) -> (Out, OwnedFrame, VecPool) {
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
    prepare: Prepare,
    spares: usize,
    out: Out,
    counted: Option<DropReason>,
}

impl Case {
    fn spares(mut self, n: usize) -> Case {
        self.spares = n;
        self
    }
}

type Prepare = fn(&mut Pipeline) -> (Port, OwnedFrame);

/// A frame dropped for `r`, counted once.
fn drop(name: &'static str, r: DropReason, prepare: Prepare) -> Case {
    Case {
        name,
        prepare,
        spares: 0,
        out: Out::Drop(r),
        counted: Some(r),
    }
}

/// A frame that leaves (or waits) without any drop counted.
fn pass(name: &'static str, out: Out, prepare: Prepare) -> Case {
    Case {
        name,
        prepare,
        spares: 0,
        out,
        counted: None,
    }
}

/// A frame counted as dropped for `r` and answered by an ICMP error that leaves as `out`.
fn icmp(name: &'static str, out: Out, r: DropReason, prepare: Prepare) -> Case {
    Case {
        name,
        prepare,
        spares: 0,
        out,
        counted: Some(r),
    }
}

/// A frame for gateway 1's LAN port, from its host.
fn lan(ip: &[u8]) -> (Port, OwnedFrame) {
    (Port::Lan, from_lan(ip))
}

/// A frame for gateway 1's WAN port, from gateway 2.
fn wan(ip: &[u8]) -> (Port, OwnedFrame) {
    (Port::Wan, from_wan(ip))
}

/// From gateway 1's LAN host to `dst`.
fn lan4(dst: &str, ttl: u8, n: usize, dont_frag: bool) -> (Port, OwnedFrame) {
    lan(&v4("10.1.0.2", dst, ttl, n, dont_frag))
}

/// Gateway 2 to gateway 1 in transport mode, with TTL `ttl`.
fn transport(ttl: u8) -> Vec<u8> {
    let pkt = v4("10.200.0.2", "10.200.0.1", ttl, 100, true);
    seal_with(transport_sa(2), &pkt)
}

fn route(p: &mut Pipeline, prefix: &str, action: RouteAction) {
    let mut r = RouteTable::new();
    r.insert(prefix.parse().unwrap(), action);
    p.set_routes(std::sync::Arc::new(r));
}

fn lan_ok(_: &mut Pipeline) -> (Port, OwnedFrame) {
    lan4("10.2.0.2", 64, 100, true)
}

fn wan_ok(_: &mut Pipeline) -> (Port, OwnedFrame) {
    let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
    wan(&esp_to_1(&inner, 1))
}

fn cases() -> Vec<Case> {
    use DropReason as R;
    const TX_WAN: Out = Out::Tx(Port::Wan);
    const TX_LAN: Out = Out::Tx(Port::Lan);
    let wait_wan = Out::Wait(Port::Wan, a("10.200.0.2"));
    vec![
        pass("lan ipv4 into the tunnel", TX_WAN, lan_ok),
        pass("lan ipv6 into the tunnel", TX_WAN, |_| {
            lan(&v6("fd01::2", "fd02::2", 64, 100))
        }),
        pass("wan esp out of the tunnel", TX_LAN, wan_ok),
        drop("lan: not IP (ARP)", R::Malformed, |_| {
            (Port::Lan, eth(mac(1, LAN), mac(1, HOST), 0x0806, &[0; 28]))
        }),
        drop("lan: truncated IPv4", R::Malformed, |_| {
            lan(&v4("10.1.0.2", "10.2.0.2", 64, 8, true)[..12])
        }),
        drop("wan: UDP, not to a NAT-T port", R::Malformed, |_| {
            wan(&v4("10.200.0.2", "10.200.0.1", 64, 40, true))
        }),
        drop("wan: ESP too short for IV and ICV", R::Malformed, |_| {
            let pkt = v4_proto("10.200.0.2", "10.200.0.1", 64, 16, true, proto::ESP);
            wan(&pkt)
        }),
        drop("wan: unknown SPI", R::UnknownSpi, |_| {
            let mut c = tunnel_sa(2, 2, 1);
            c.spi = 0xdead;
            let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
            wan(&seal_with(c, &inner))
        }),
        drop("wan: replayed", R::Replayed, |p| {
            let (_, f) = wan_ok(p);
            let again = OwnedFrame::from_packet(f.data(), DEFAULT_HEADROOM, 64);
            assert_eq!(run(p, (Port::Wan, f), 0).0, TX_LAN);
            (Port::Wan, again)
        }),
        drop("wan: ICV does not verify", R::AuthFailed, |_| {
            let mut pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
            *pkt.last_mut().unwrap() ^= 1;
            wan(&pkt)
        }),
        drop("wan: padding not 1, 2, 3, …", R::BadPadding, |_| {
            let inner = v4("10.2.0.2", "10.1.0.2", 64, 98, true);
            wan(&hand_sealed(&inner, &[9, 9, 9, 9], proto::IPV4))
        }),
        drop(
            "wan: inner outside the selectors",
            R::SelectorMismatch,
            |_| {
                let inner = v4("10.5.0.2", "10.1.0.2", 64, 100, true);
                wan(&esp_to_1(&inner, 1))
            },
        ),
        drop("lan: sequence numbers exhausted", R::SeqExhausted, |p| {
            let mut c = tunnel_sa(1, 1, 2);
            c.seq = u64::from(u32::MAX);
            p.sadb.replace(c).unwrap();
            lan_ok(p)
        }),
        drop("wan: outer IPv4 fragment", R::Fragment, |_| {
            let pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
            let pkt = patch_v4(pkt, |b| b[6] = 0x20);
            wan(&pkt)
        }),
        icmp("lan: DF past the tunnel MTU", TX_LAN, R::TooBig, |_| {
            lan4("10.2.0.2", 64, 1460, true)
        }),
        drop("wan: CE outside, not-ECT inside", R::EcnDrop, |_| {
            let pkt = esp_to_1(&v4("10.2.0.2", "10.1.0.2", 64, 100, true), 1);
            let pkt = patch_v4(pkt, |b| b[1] |= 3);
            wan(&pkt)
        }),
        drop("wan: dummy packet (next header 59)", R::Dummy, |_| {
            let pkt = v4_proto("10.200.0.2", "10.200.0.1", 64, 40, true, 59);
            wan(&seal_with(transport_sa(2), &pkt))
        }),
        drop("lan: no SA and no route", R::NoPolicy, |_| {
            lan4("10.9.0.2", 64, 100, true)
        }),
        drop("lan: a drop route", R::NoPolicy, |p| {
            route(p, "10.9.0.0/16", RouteAction::Drop);
            lan4("10.9.0.2", 64, 100, true)
        }),
        drop("lan: tunnel route, no SA", R::NoPolicy, |p| {
            route(p, "10.9.0.0/16", RouteAction::Tunnel(a("10.200.0.7")));
            lan4("10.9.0.2", 64, 100, true)
        }),
        pass("lan: bypass route", TX_WAN, |p| {
            route(p, "10.200.0.0/24", RouteAction::Bypass);
            lan4("10.200.0.2", 64, 100, true)
        }),
        icmp("lan: TTL 1", TX_LAN, R::TtlExceeded, |_| {
            lan4("10.2.0.2", 1, 100, true)
        }),
        icmp("lan: hop limit 1", TX_LAN, R::TtlExceeded, |_| {
            lan(&v6("fd01::2", "fd02::2", 1, 100))
        }),
        icmp("wan: TTL 1, ICMP back in", TX_WAN, R::TtlExceeded, |_| {
            let inner = v4("10.2.0.2", "10.1.0.2", 1, 100, true);
            wan(&esp_to_1(&inner, 1))
        }),
        drop("wan: TTL 1, no SA back", R::TtlExceeded, |_| {
            wan(&transport(1))
        }),
        drop("wan: TTL 1, bypass back", R::TtlExceeded, |p| {
            route(p, "10.200.0.0/24", RouteAction::Bypass);
            wan(&transport(1))
        }),
        drop("lan: SA hard limit", R::Expired, |p| {
            let mut c = tunnel_sa(1, 1, 2);
            c.lifetime.hard_packets = Some(1);
            p.sadb.replace(c).unwrap();
            let (_, f) = lan_ok(p);
            assert_eq!(run(p, (Port::Lan, f), 0).0, TX_WAN);
            lan_ok(p)
        }),
        drop("wan: SA hard limit", R::Expired, |p| {
            let mut c = tunnel_sa(1, 2, 1);
            c.lifetime.hard_packets = Some(1);
            p.sadb.replace(c).unwrap();
            let (_, f) = wan_ok(p);
            assert_eq!(run(p, (Port::Wan, f), 0).0, TX_LAN);
            let inner = v4("10.2.0.2", "10.1.0.2", 64, 100, true);
            wan(&esp_to_1(&inner, 2))
        }),
        drop("lan: a trap policy without SA (acquire)", R::Acquire, |p| {
            p.sadb.set_traps(vec![Trap::new(
                7,
                sel(&["10.1.0.0/24"]),
                sel(&["10.3.0.0/24"]),
            )]);
            lan4("10.3.0.2", 64, 100, true)
        }),
        pass("lan: WAN next hop unknown", wait_wan, |p| {
            p.wan.neighbours.remove(a("10.200.0.2"));
            lan_ok(p)
        }),
        pass(
            "wan: LAN next hop unknown",
            Out::Wait(Port::Lan, a("10.1.0.2")),
            |p| {
                p.lan.neighbours.remove(a("10.1.0.2"));
                wan_ok(p)
            },
        ),
        pass("lan: non-DF, fragmented", TX_WAN, |_| {
            lan4("10.2.0.2", 64, 1460, false)
        })
        .spares(1),
        drop("lan: non-DF, no spare frame", R::FragNoFrame, |_| {
            lan4("10.2.0.2", 64, 1460, false)
        }),
        drop("lan: non-DF, too many pieces", R::FragLimit, |p| {
            p.wan.mtu = 120;
            lan4("10.2.0.2", 64, 4000, false)
        }),
    ]
}

#[test]
fn every_case_has_its_verdict_and_moves_exactly_its_counter() {
    for c in cases() {
        let mut p = gateway(1);
        let (port, f) = (c.prepare)(&mut p);
        let before = drops(&p);
        let (out, _, pool) = run(&mut p, (port, f), c.spares);
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
        let (out, f, _) = run(&mut g1, lan(&inner), 0);
        assert_eq!(out, Out::Tx(Port::Wan));
        let esp = ip_of(&f, mac(2, WAN), mac(1, WAN));
        assert_ne!(esp, aged(&inner, 1), "encrypted");
        let (out, f, _) = run(&mut g2, (Port::Wan, f), 0);
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
    let (out, f, pool) = run(&mut g1, lan(&inner), 2);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(pool.sent.len(), 1);
    let mut payload = 0;
    for (port, f) in std::iter::once((Port::Wan, f)).chain(pool.sent) {
        assert_eq!(port, Port::Wan);
        let (out, g, _) = run(&mut g2, (Port::Wan, f), 0);
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
    let (out, f, _) = run(&mut g1, lan4("10.2.0.2", 1, 64, true), 0);
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = ip_of(&f, mac(1, HOST), mac(1, LAN));
    assert_eq!((icmp[9], icmp[20]), (proto::ICMP, 11), "time exceeded");
    assert_eq!(&icmp[12..20], &[10, 1, 0, 1, 10, 1, 0, 2]);
    let (out, f, _) = run(&mut g1, lan4("10.2.0.2", 64, 1460, true), 0);
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
    let (out, f, _) = run(&mut g1, wan(&esp_to_1(&inner, 1)), 0);
    assert_eq!(out, Out::Tx(Port::Wan));
    let (out, f, _) = run(&mut g2, (Port::Wan, f), 0);
    assert_eq!(out, Out::Tx(Port::Lan));
    let icmp = ip_of(&f, mac(2, HOST), mac(2, LAN));
    assert_eq!((icmp[9], icmp[20]), (proto::ICMP, 11));
    assert_eq!(&icmp[12..20], &[10, 1, 0, 1, 10, 2, 0, 2]);
}

#[test]
fn a_bypassed_packet_leaves_in_the_clear_with_the_next_hop_mac() {
    let mut g1 = gateway(1);
    route(&mut g1, "10.200.0.0/24", RouteAction::Bypass);
    let pkt = v4("10.1.0.2", "10.200.0.2", 64, 100, true);
    let (out, f, _) = run(&mut g1, lan(&pkt), 0);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(ip_of(&f, mac(2, WAN), mac(1, WAN)), aged(&pkt, 1));
    assert_eq!(g1.bypassed, 1);
}

#[test]
fn a_waiting_frame_is_complete_but_for_its_destination_mac() {
    let mut g1 = gateway(1);
    g1.wan.neighbours.remove(a("10.200.0.2"));
    let (out, f, _) = run(&mut g1, lan4("10.2.0.2", 64, 100, true), 0);
    assert_eq!(out, Out::Wait(Port::Wan, a("10.200.0.2")));
    let esp = ip_of(&f, [0; 6], mac(1, WAN));
    assert_eq!(esp[9], proto::ESP);
    let mut g2 = gateway(2);
    let f = eth(mac(2, WAN), mac(1, WAN), 0x0800, &esp);
    assert_eq!(run(&mut g2, (Port::Wan, f), 0).0, Out::Tx(Port::Lan));
}

/// A valid frame of kind `k` for gateway 1: LAN IPv4, LAN IPv6, WAN ESP over IPv4, WAN ESP in
/// transport mode, with its inner TTL / hop limit `ttl`.
fn base(k: u8, ttl: u8, len: usize) -> (Port, Vec<u8>) {
    let f = match k % 4 {
        0 => from_lan(&v4("10.1.0.2", "10.2.0.2", ttl, len, len % 2 == 0)),
        1 => from_lan(&v6("fd01::2", "fd02::2", ttl, len)),
        2 => from_wan(&esp_to_1(&v4("10.2.0.2", "10.1.0.2", ttl, len, true), 1)),
        _ => {
            let pkt = v4("10.200.0.2", "10.200.0.1", ttl, len, true);
            from_wan(&seal_with(transport_sa(2), &pkt))
        }
    };
    let port = if k % 4 < 2 { Port::Lan } else { Port::Wan };
    (port, f.data().to_vec())
}

proptest::proptest! {
    /// Frames with arbitrary bytes changed, or cut short: whatever the verdict, a
    /// dropped frame moved exactly its own counter by one, a frame that leaves moved at most
    /// one (the original answered by an ICMP error), and every spare frame comes back.
    #[test]
    fn every_drop_is_counted_exactly_once(
        k in 0u8..4,
        ttl in 0u8..4,
        len in 0usize..1500,
        edits in proptest::collection::vec((0usize..1600, proptest::num::u8::ANY), 0..4),
        cut in proptest::option::of(0usize..1600),
        spares in 0usize..3,
    ) {
        let mut p = gateway(1);
        let (port, mut bytes) = base(k, ttl, len);
        for (at, x) in edits {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.min(bytes.len()));
        }
        let before = drops(&p);
        let f = OwnedFrame::from_packet(&bytes, DEFAULT_HEADROOM, 256);
        let (out, _, pool) = run(&mut p, (port, f), spares);
        let after = drops(&p);
        let moved: Vec<(DropReason, u64)> = DropReason::ALL
            .iter()
            .map(|&r| (r, after.get(r) - before.get(r)))
            .filter(|&(_, n)| n != 0)
            .collect();
        match out {
            Out::Drop(r) => proptest::prop_assert_eq!(moved, vec![(r, 1)]),
            Out::Tx(_) | Out::Wait(..) | Out::Host(_) => proptest::prop_assert!(
                moved.len() <= 1 && moved.iter().all(|&(_, n)| n == 1),
                "{:?} moved {:?}", out, moved
            ),
        }
        proptest::prop_assert_eq!(pool.free + pool.sent.len() + pool.waiting.len(), spares);
    }
}

/// Gateway `me` of two joined by a route-based tunnel: any-to-any SAs, a tunnel interface for
/// the peer with address 169.254.30.`me`.
fn route_based(me: u8) -> Pipeline {
    let peer = 3 - me;
    let any = sel(&["0.0.0.0/0", "::/0"]);
    let mut db = SaDb::new(Backend::default());
    for mut c in [tunnel_sa(me, me, peer), tunnel_sa(me, peer, me)] {
        c.local_ts = any.clone();
        c.remote_ts = any.clone();
        db.insert(c).unwrap();
    }
    let mut p = gateway(me);
    p.sadb = db;
    let mut t = RouteTable::new();
    t.pin_peer(a(&format!("10.200.0.{peer}")));
    p.set_routes(std::sync::Arc::new(t));
    p.tunnels = vec![TunnelPort {
        peer: a(&format!("10.200.0.{peer}")),
        addrs: vec![a(&format!("169.254.30.{me}"))],
    }];
    p
}

/// Runs bare IP packets the stack wrote into tunnel interface `tunnel` through `p`.
fn from_stack(p: &mut Pipeline, tunnel: u16, ip: &[u8]) -> (Out, OwnedFrame) {
    let mut frames = [OwnedFrame::from_packet(ip, DEFAULT_HEADROOM, 256)];
    let mut out = [Out::Drop(DropReason::Malformed)];
    p.process_host(tunnel, &mut frames, &mut out, &mut VecPool::new(0));
    let [f] = frames;
    (out[0], f)
}

#[test]
fn the_gateways_own_traffic_crosses_tunnel_interfaces_and_transit_needs_a_route() {
    let (mut g1, mut g2) = (route_based(1), route_based(2));
    // The stack at gateway 1 pings gateway 2's tunnel address: sealed with the peer's SA
    // whatever the destination, and handed to gateway 2's stack, not its LAN.
    let ping = v4("169.254.30.1", "169.254.30.2", 64, 56, true);
    let (out, f) = from_stack(&mut g1, 0, &ping);
    assert_eq!(out, Out::Tx(Port::Wan));
    let (out, f, _) = run(&mut g2, (Port::Wan, f), 0);
    assert_eq!(out, Out::Host(0));
    assert_eq!(f.data(), &ping[..], "the stack gets the packet as sent");
    // IPv6 link-local (BGP over link-local, OSPFv3) goes to the stack too.
    let ll = v6("fe80::1", "fe80::2", 64, 40);
    let (out, f) = from_stack(&mut g1, 0, &ll);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(run(&mut g2, (Port::Wan, f), 0).0, Out::Host(0));
    assert_eq!((g1.from_host, g2.to_host), (2, 2));
    // Transit traffic: the any-to-any SA claims nothing without a route...
    let transit = v4("10.1.0.2", "10.2.0.2", 64, 100, true);
    let before = drops(&g1).get(DropReason::NoPolicy);
    assert_eq!(
        run(&mut g1, lan(&transit), 0).0,
        Out::Drop(DropReason::NoPolicy)
    );
    assert_eq!(drops(&g1).get(DropReason::NoPolicy), before + 1);
    // ...and takes the tunnel with one, out of the far gateway's LAN.
    let mut t = RouteTable::new();
    t.pin_peer(a("10.200.0.2"));
    t.insert(
        "10.2.0.0/24".parse().unwrap(),
        RouteAction::Tunnel(a("10.200.0.2")),
    );
    g1.set_routes(std::sync::Arc::new(t));
    let (out, f, _) = run(&mut g1, lan(&transit), 0);
    assert_eq!(out, Out::Tx(Port::Wan));
    assert_eq!(run(&mut g2, (Port::Wan, f), 0).0, Out::Tx(Port::Lan));
    // Without the peer's SA the stack's packets are dropped and counted.
    let out_spi = spi(1, 2);
    assert_eq!(g1.sadb.remove(out_spi, Direction::Out, None), 1);
    assert_eq!(
        from_stack(&mut g1, 0, &ping).0,
        Out::Drop(DropReason::NoPolicy)
    );
    // An index past the interfaces is malformed, never a panic.
    assert_eq!(
        from_stack(&mut g1, 9, &ping).0,
        Out::Drop(DropReason::Malformed)
    );
}

#[test]
fn equal_cost_tunnels_share_flows_and_a_dead_member_s_flows_move() {
    let mut g1 = gateway(1);
    // A second peer, 10.200.0.3, with its own SA pair and MAC.
    g1.sadb.insert(tunnel_sa(1, 1, 3)).unwrap();
    g1.sadb.insert(tunnel_sa(1, 3, 1)).unwrap();
    g1.wan.neighbours.insert(a("10.200.0.3"), mac(3, WAN));
    let peers = [a("10.200.0.2"), a("10.200.0.3")];
    let mut t = RouteTable::new();
    t.insert_multipath("10.9.0.0/16".parse().unwrap(), &peers);
    g1.set_routes(std::sync::Arc::new(t));
    // 64 flows (UDP source ports); each flow's packets all take one tunnel.
    let flow = |port: u16| {
        let mut p = v4("10.1.0.2", "10.9.1.1", 64, 100, true);
        p[20..22].copy_from_slice(&port.to_be_bytes());
        p
    };
    let tunnel_of = |g: &mut Pipeline, port: u16| {
        let (out, f, _) = run(g, lan(&flow(port)), 0);
        assert_eq!(out, Out::Tx(Port::Wan));
        f.data()[0..6].to_vec()
    };
    let mut first = Vec::new();
    for port in 0..64 {
        first.push(tunnel_of(&mut g1, 1000 + port));
    }
    for port in 0..64 {
        assert_eq!(
            tunnel_of(&mut g1, 1000 + port),
            first[port as usize],
            "flow {port} stays"
        );
    }
    let to_3 = first.iter().filter(|m| m[..] == mac(3, WAN)).count();
    assert!(
        (8..=56).contains(&to_3),
        "flows spread over both tunnels: {to_3} of 64 to .3"
    );
    // The tunnel to .3 loses its SA: its flows move to .2, the others stay.
    assert_eq!(g1.sadb.remove(spi(1, 3), Direction::Out, None), 1);
    for port in 0..64 {
        assert_eq!(tunnel_of(&mut g1, 1000 + port), mac(2, WAN).to_vec());
    }
}
