//! esprit encrypts and esprit decrypts, in every mode, and every kind of bad packet is dropped
//! under its reason. (Interop with an independent implementation is in `scapy_interop.rs`.)

use dataplane::crypto::aead::KeyMaterial;
use dataplane::esp::{
    decap::decap, encrypt_batch, Backend, DropCounters, DropReason, Suite, Verdict,
};
use dataplane::frame::{OwnedFrame, DEFAULT_HEADROOM};
use dataplane::sa::{Direction, Mode, SaConfig, SaDb, Selectors, UdpEncap};
use dataplane::wire::ipv4::Ipv4Repr;
use dataplane::wire::ipv6::Ipv6Repr;
use dataplane::wire::{proto, Ipv4Packet, Ipv6Packet};
use std::net::IpAddr;

/// The verdict of a packet dropped for `r` (drops compare by reason).
fn dropped(r: DropReason) -> Verdict {
    Verdict::Drop(DropCounters::default().count(r))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(dir: Direction, mode: Mode, suite: Suite, local: &str, remote: &str) -> SaConfig {
    let key: Vec<u8> = (0..suite.keymat_len() as u8)
        .map(|i| i.wrapping_mul(37))
        .collect();
    SaConfig {
        spi: 0x1234_5678,
        direction: dir,
        mode,
        suite,
        key: KeyMaterial::new(key),
        integ_key: None,
        local: ip(local),
        remote: ip(remote),
        encap: None,
        esn: false,
        replay_window: 64,
        seq: 0,
        local_ts: Selectors::default(),
        remote_ts: Selectors::default(),
        lifetime: Default::default(),
        pad_align: 16,
        owner: None,
    }
}

/// A pair of databases: `tx` encrypts from A to B, `rx` decrypts at B.
fn pair(mut out: SaConfig, backend_rx: Backend) -> (SaDb, SaDb) {
    let mut tx = SaDb::new(Backend::Ring);
    let mut rx = SaDb::new(backend_rx);
    let mut inb = out.clone();
    inb.direction = Direction::In;
    std::mem::swap(&mut inb.local, &mut inb.remote);
    std::mem::swap(&mut inb.local_ts, &mut inb.remote_ts);
    if let Some(e) = inb.encap.as_mut() {
        *e = UdpEncap {
            src_port: e.src_port,
            dst_port: e.dst_port,
        };
    }
    out.direction = Direction::Out;
    tx.insert(out).unwrap();
    rx.insert(inb).unwrap();
    (tx, rx)
}

fn v4_packet(src: &str, dst: &str, payload: &[u8], ecn: u8) -> Vec<u8> {
    let mut b = vec![0u8; 20 + payload.len()];
    Ipv4Repr {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol: proto::UDP,
        payload_len: payload.len(),
        ttl: 61,
        dscp: 10,
        ecn,
        ident: 99,
        dont_frag: true,
    }
    .emit(&mut b);
    b[20..].copy_from_slice(payload);
    b
}

fn v6_packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40 + payload.len()];
    Ipv6Repr {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        next_header: proto::UDP,
        payload_len: payload.len(),
        hop_limit: 61,
        dscp: 10,
        ecn: 1,
        flow_label: 7,
    }
    .emit(&mut b);
    b[40..].copy_from_slice(payload);
    b
}

fn roundtrip(cfg: SaConfig, packet: &[u8]) -> Vec<u8> {
    for backend in Backend::ALL {
        let (mut tx, mut rx) = pair(cfg.clone(), backend);
        let mut frames = vec![OwnedFrame::from_packet(packet, DEFAULT_HEADROOM, 64)];
        let mut verdicts = [Verdict::Pass];
        tx.encrypt_batch(&mut frames, &mut verdicts);
        assert_eq!(verdicts[0], Verdict::Pass, "encrypt");
        let wire = frames[0].data().to_vec();
        assert_ne!(wire, packet);
        let out = decap(&mut rx, &mut frames[0]).expect("decrypt");
        assert_eq!(out.seq, cfg.seq + 1);
        assert_eq!(frames[0].data(), packet, "{backend:?} round trip");
        if backend == Backend::AwsLc {
            return wire;
        }
    }
    unreachable!()
}

#[test]
fn tunnel_all_four_families_and_both_suites() {
    for suite in Suite::ALL {
        for (outer_l, outer_r) in [("10.200.0.1", "10.200.0.2"), ("2001:db8::1", "2001:db8::2")] {
            for inner in [
                v4_packet("10.201.1.2", "10.201.2.2", b"hello", 2),
                v6_packet("fd00:1::2", "fd00:2::2", b"hello six"),
            ] {
                for len in [0usize, 1, 2, 3, 100] {
                    let mut pkt = inner.clone();
                    pkt.extend(std::iter::repeat_n(0xab, len));
                    if pkt[0] >> 4 == 4 {
                        let n = pkt.len() as u16;
                        let mut p = Ipv4Packet::new_checked(&mut pkt[..]).unwrap();
                        p.set_total_len(n);
                    } else {
                        let n = pkt.len() as u16 - 40;
                        Ipv6Packet::new_checked(&mut pkt[..])
                            .unwrap()
                            .set_payload_len(n);
                    }
                    let cfg = sa(Direction::Out, Mode::Tunnel, suite, outer_l, outer_r);
                    let wire = roundtrip(cfg, &pkt);
                    let outer_proto = if outer_l.contains(':') {
                        wire[6]
                    } else {
                        wire[9]
                    };
                    assert_eq!(outer_proto, proto::ESP);
                }
            }
        }
    }
}

#[test]
fn outer_header_copies_dscp_and_ecn() {
    let cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    let wire = roundtrip(cfg, &v4_packet("10.201.1.2", "10.201.2.2", b"x", 1));
    let outer = Ipv4Packet::new_checked(&wire[..]).unwrap();
    assert_eq!((outer.dscp(), outer.ecn(), outer.ttl()), (10, 1, 64));
    assert!(outer.verify_checksum());
}

#[test]
fn transport_and_nat_t() {
    for (l, r, pkt) in [
        (
            "10.201.1.2",
            "10.201.2.2",
            v4_packet("10.201.1.2", "10.201.2.2", b"transport", 0),
        ),
        (
            "fd00:1::2",
            "fd00:2::2",
            v6_packet("fd00:1::2", "fd00:2::2", b"transport six"),
        ),
    ] {
        for encap in [None, Some(UdpEncap::default())] {
            let mut cfg = sa(Direction::Out, Mode::Transport, Suite::Aes256Gcm16, l, r);
            cfg.encap = encap;
            let wire = roundtrip(cfg, &pkt);
            let v6 = l.contains(':');
            let (nh, hl) = if v6 { (wire[6], 40) } else { (wire[9], 20) };
            match encap {
                None => assert_eq!(nh, proto::ESP),
                Some(_) => {
                    assert_eq!(nh, proto::UDP);
                    assert_eq!(&wire[hl..hl + 4], &[0x11, 0x94, 0x11, 0x94]);
                    if v6 {
                        assert_ne!(&wire[hl + 6..hl + 8], &[0, 0], "IPv6 UDP needs a checksum");
                    } else {
                        assert_eq!(&wire[hl + 6..hl + 8], &[0, 0], "RFC 3948: zero over IPv4");
                    }
                }
            }
        }
    }
}

#[test]
fn nat_t_tunnel_and_ike_and_keepalive_classification() {
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.encap = Some(UdpEncap::default());
    roundtrip(
        cfg.clone(),
        &v4_packet("10.201.1.2", "10.201.2.2", b"natt", 0),
    );
    let (_, mut rx) = pair(cfg, Backend::Ring);
    let mut udp = |payload: &[u8]| {
        let mut d = vec![0x11, 0x94, 0x11, 0x94, 0, 8 + payload.len() as u8, 0, 0];
        d.extend_from_slice(payload);
        let mut p = v4_packet("10.200.0.1", "10.200.0.2", &d, 0);
        p[9] = proto::UDP;
        Ipv4Packet::new_checked(&mut p[..]).unwrap().fill_checksum();
        let mut f = OwnedFrame::from_packet(&p, 64, 0);
        decap(&mut rx, &mut f).unwrap_err()
    };
    assert_eq!(udp(&[0xff]), Verdict::Keepalive);
    assert_eq!(udp(&[0, 0, 0, 0, 1, 2, 3, 4]), Verdict::Ike);
}

#[test]
fn esn_crosses_the_boundary() {
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.esn = true;
    cfg.seq = u64::from(u32::MAX) - 2;
    let (mut tx, mut rx) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"esn", 0);
    for expect in u64::from(u32::MAX) - 1..u64::from(u32::MAX) + 4 {
        let mut f = vec![OwnedFrame::from_packet(&pkt, 128, 64)];
        let mut v = [Verdict::Pass];
        tx.encrypt_batch(&mut f, &mut v);
        assert_eq!(v[0], Verdict::Pass);
        // Only the low half is on the wire.
        assert_eq!(&f[0].data()[24..28], &(expect as u32).to_be_bytes());
        assert_eq!(decap(&mut rx, &mut f[0]).unwrap().seq, expect);
    }
}

#[test]
fn outbound_never_wraps() {
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.seq = u64::from(u32::MAX) - 1;
    let (mut tx, _) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"last", 0);
    let mut f: Vec<_> = (0..3)
        .map(|_| OwnedFrame::from_packet(&pkt, 128, 64))
        .collect();
    let mut v = [Verdict::Pass; 3];
    tx.encrypt_batch(&mut f, &mut v);
    assert_eq!(
        v,
        [
            Verdict::Pass,
            dropped(DropReason::SeqExhausted),
            dropped(DropReason::SeqExhausted)
        ]
    );
    let o = &tx.outbound()[0];
    assert!(o.is_exhausted());
    assert_eq!(o.seq(), u64::from(u32::MAX));
    assert_eq!(o.counters.drops.get(DropReason::SeqExhausted), 2);
}

#[test]
fn bad_packets_are_dropped_and_counted() {
    let cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    let (mut tx, mut rx) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"payload", 0);
    let mut f: Vec<_> = (0..3)
        .map(|_| OwnedFrame::from_packet(&pkt, 128, 64))
        .collect();
    let mut v = [Verdict::Pass; 3];
    tx.encrypt_batch(&mut f, &mut v);
    let wires: Vec<Vec<u8>> = f.iter().map(|f| f.data().to_vec()).collect();
    let try_rx = |rx: &mut SaDb, w: &[u8]| {
        let mut fr = OwnedFrame::from_packet(w, 64, 0);
        decap(rx, &mut fr).map(|_| ())
    };
    let mut tampered = wires[0].clone();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    assert_eq!(
        try_rx(&mut rx, &tampered),
        Err(dropped(DropReason::AuthFailed))
    );
    assert_eq!(
        try_rx(&mut rx, &wires[0]),
        Ok(()),
        "a forged copy must not burn the number"
    );
    assert_eq!(
        try_rx(&mut rx, &wires[0]),
        Err(dropped(DropReason::Replayed))
    );
    let mut unknown = wires[1].clone();
    unknown[20] ^= 0xff;
    assert_eq!(
        try_rx(&mut rx, &unknown),
        Err(dropped(DropReason::UnknownSpi))
    );
    for cut in [0, 1, 20, 27, 28, 40, wires[2].len() - 1] {
        let r = try_rx(&mut rx, &wires[2][..cut]);
        assert!(r == Err(dropped(DropReason::Malformed)), "cut {cut}: {r:?}");
    }
    assert_eq!(try_rx(&mut rx, &wires[2]), Ok(()));
    let sa = rx.inbound().next().unwrap();
    assert_eq!(sa.counters.packets, 2);
    assert_eq!(sa.counters.drops.get(DropReason::AuthFailed), 1);
    assert_eq!(sa.counters.drops.get(DropReason::Replayed), 1);
    assert_eq!(rx.drops.get(DropReason::UnknownSpi), 1);
    assert_eq!(rx.drops.get(DropReason::Malformed), 7);
}

#[test]
fn selectors_are_enforced_both_ways() {
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.local_ts = Selectors::new(vec!["10.201.1.0/24".parse().unwrap()]);
    cfg.remote_ts = Selectors::new(vec!["10.201.2.0/24".parse().unwrap()]);
    let (mut tx, mut rx) = pair(cfg.clone(), Backend::Ring);
    let mut f = vec![OwnedFrame::from_packet(
        &v4_packet("10.9.9.9", "10.201.2.2", b"x", 0),
        128,
        64,
    )];
    let mut v = [Verdict::Pass];
    tx.encrypt_batch(&mut f, &mut v);
    assert_eq!(v[0], dropped(DropReason::NoPolicy));
    // A sender with wider selectors gets past its own policy but not past ours.
    let mut wide = cfg;
    wide.local_ts = Selectors::default();
    let (mut tx2, _) = pair(wide, Backend::Ring);
    let mut f = vec![OwnedFrame::from_packet(
        &v4_packet("10.9.9.9", "10.201.2.2", b"x", 0),
        128,
        64,
    )];
    tx2.encrypt_batch(&mut f, &mut v);
    assert_eq!(v[0], Verdict::Pass);
    assert_eq!(
        decap(&mut rx, &mut f[0]),
        Err(dropped(DropReason::SelectorMismatch))
    );
}

#[test]
fn ecn_ce_on_not_ect_inner_is_dropped() {
    let cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    let (mut tx, mut rx) = pair(cfg, Backend::Ring);
    for (inner, expect) in [(0u8, None), (2, Some(3))] {
        let mut f = vec![OwnedFrame::from_packet(
            &v4_packet("10.201.1.2", "10.201.2.2", b"x", inner),
            128,
            64,
        )];
        let mut v = [Verdict::Pass];
        tx.encrypt_batch(&mut f, &mut v);
        // A congested router on the path marks the outer header CE.
        let mut p = Ipv4Packet::new_checked(f[0].data_mut()).unwrap();
        p.set_ecn(3);
        let r = decap(&mut rx, &mut f[0]);
        match expect {
            None => assert_eq!(r, Err(dropped(DropReason::EcnDrop))),
            Some(e) => {
                r.unwrap();
                let p = Ipv4Packet::new_checked(f[0].data()).unwrap();
                assert_eq!(p.ecn(), e);
                assert!(p.verify_checksum());
            }
        }
    }
}

#[test]
fn batch_encrypt_with_one_sa() {
    let cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    let (mut tx, mut rx) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", &[7; 1000], 0);
    let mut frames: Vec<_> = (0..64)
        .map(|_| OwnedFrame::from_packet(&pkt, 128, 64))
        .collect();
    let mut v = vec![Verdict::Pass; 64];
    encrypt_batch(tx.outbound_mut(0).unwrap(), &mut frames, &mut v);
    assert!(v.iter().all(|v| *v == Verdict::Pass));
    dataplane::esp::decrypt_batch(&mut rx, &mut frames, &mut v);
    assert!(v.iter().all(|v| *v == Verdict::Pass));
    assert!(frames.iter().all(|f| f.data() == &pkt[..]));
}

#[test]
fn lifetimes_raise_events_and_hard_limits_stop_the_sa() {
    use dataplane::sa::{Lifetime, SaEventKind};
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.lifetime = Lifetime {
        soft_packets: Some(2),
        hard_packets: Some(4),
        ..Default::default()
    };
    let (mut tx, mut rx) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"life", 0);
    let mut kinds = Vec::new();
    let mut results = Vec::new();
    for _ in 0..6 {
        let mut f = vec![OwnedFrame::from_packet(&pkt, 128, 64)];
        let mut v = [Verdict::Pass];
        tx.encrypt_batch(&mut f, &mut v);
        results.push(v[0]);
        kinds.extend(tx.take_events().map(|e| (e.kind, e.direction)));
        if v[0] == Verdict::Pass {
            decap(&mut rx, &mut f[0]).unwrap();
            kinds.extend(rx.take_events().map(|e| (e.kind, e.direction)));
        }
    }
    assert_eq!(&results[..4], &[Verdict::Pass; 4]);
    assert_eq!(&results[4..], &[dropped(DropReason::Expired); 2]);
    assert_eq!(
        kinds,
        vec![
            (SaEventKind::SoftExpire, Direction::Out),
            (SaEventKind::SoftExpire, Direction::In),
            (SaEventKind::HardExpire, Direction::Out),
            (SaEventKind::HardExpire, Direction::In),
        ]
    );
    assert!(tx.outbound()[0].is_expired());
}

#[test]
fn sequence_exhaustion_is_reported_once() {
    let mut cfg = sa(
        Direction::Out,
        Mode::Tunnel,
        Suite::Aes128Gcm16,
        "10.200.0.1",
        "10.200.0.2",
    );
    cfg.seq = u64::from(u32::MAX);
    let (mut tx, _) = pair(cfg, Backend::Ring);
    let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"x", 0);
    let mut f: Vec<_> = (0..3)
        .map(|_| OwnedFrame::from_packet(&pkt, 128, 64))
        .collect();
    let mut v = [Verdict::Pass; 3];
    tx.encrypt_batch(&mut f, &mut v);
    let ev: Vec<_> = tx.take_events().collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, dataplane::sa::SaEventKind::SeqExhausted);
    assert_eq!(ev[0].spi, 0x1234_5678);
}
