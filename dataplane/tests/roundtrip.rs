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
        integ_key: (!suite.is_aead()).then(|| {
            KeyMaterial::new((0..suite.integ_key_len() as u8).map(|i| i ^ 0x5c).collect())
        }),
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

/// The outbound tunnel-mode SA from gateway A (10.200.0.1) to B (10.200.0.2).
fn a_to_b(suite: Suite) -> SaConfig {
    sa(
        Direction::Out,
        Mode::Tunnel,
        suite,
        "10.200.0.1",
        "10.200.0.2",
    )
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
fn tunnel_all_four_families_and_every_suite() {
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
    let cfg = a_to_b(Suite::Aes128Gcm16);
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
        for (encap, suite) in [None, Some(UdpEncap::default())]
            .into_iter()
            .flat_map(|e| Suite::ALL.map(|s| (e, s)))
        {
            let mut cfg = sa(Direction::Out, Mode::Transport, suite, l, r);
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
fn transport_mode_drops_an_ipv4_header_with_a_bad_checksum() {
    // Transport mode rewrites the header and computes its checksum afresh: a wrong one would
    // leave corrected, so the packet is dropped instead (found by the esp_roundtrip fuzzer).
    let cfg = sa(
        Direction::Out,
        Mode::Transport,
        Suite::Aes128Gcm16,
        "10.201.1.2",
        "10.201.2.2",
    );
    let mut bad = v4_packet("10.201.1.2", "10.201.2.2", b"transport", 0);
    bad[10] ^= 0x5a;
    let (mut tx, _) = pair(cfg.clone(), Backend::Ring);
    let mut frames = vec![OwnedFrame::from_packet(&bad, DEFAULT_HEADROOM, 64)];
    let mut verdicts = [Verdict::Pass];
    tx.encrypt_batch(&mut frames, &mut verdicts);
    assert_eq!(verdicts[0], dropped(DropReason::Malformed));
    bad[10] ^= 0x5a;
    roundtrip(cfg, &bad);
}

#[test]
fn nat_t_tunnel_and_ike_and_keepalive_classification() {
    let mut cfg = a_to_b(Suite::Aes128Gcm16);
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
    for suite in Suite::ALL {
        let mut cfg = a_to_b(suite);
        cfg.esn = true;
        cfg.seq = u64::from(u32::MAX) - 2;
        let (mut tx, mut rx) = pair(cfg, Backend::AwsLc);
        let pkt = v4_packet("10.201.1.2", "10.201.2.2", b"esn", 0);
        let mut sent = Vec::new();
        for expect in u64::from(u32::MAX) - 1..u64::from(u32::MAX) + 4 {
            let mut f = vec![OwnedFrame::from_packet(&pkt, 128, 64)];
            let mut v = [Verdict::Pass];
            tx.encrypt_batch(&mut f, &mut v);
            assert_eq!(v[0], Verdict::Pass);
            // Only the low half is on the wire.
            assert_eq!(&f[0].data()[24..28], &(expect as u32).to_be_bytes());
            sent.push(f[0].data().to_vec());
            assert_eq!(decap(&mut rx, &mut f[0]).unwrap().seq, expect, "{suite}");
        }
        // Every one of them again: replays, whichever side of the boundary.
        for w in &sent {
            let mut f = OwnedFrame::from_packet(w, 64, 0);
            assert_eq!(
                decap(&mut rx, &mut f),
                Err(dropped(DropReason::Replayed)),
                "{suite}"
            );
        }
    }
}

#[test]
fn outbound_never_wraps() {
    let mut cfg = a_to_b(Suite::Aes128Gcm16);
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
    for suite in Suite::ALL {
        bad_packets(suite);
    }
}

fn bad_packets(suite: Suite) {
    let cfg = a_to_b(suite);
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
    let mut cfg = a_to_b(Suite::Aes128Gcm16);
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
    let cfg = a_to_b(Suite::Aes128Gcm16);
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
    let cfg = a_to_b(Suite::Aes128Gcm16);
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
    let mut cfg = a_to_b(Suite::Aes128Gcm16);
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
    let mut cfg = a_to_b(Suite::Aes128Gcm16);
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

/// An ESP packet from 10.200.0.1 to 10.200.0.2 whose encrypted part is `plain` (payload,
/// padding and trailer as given, however wrong), sealed with `cfg`'s keys: the ICV is valid.
fn forge(cfg: &SaConfig, seq: u64, plain: &[u8]) -> Vec<u8> {
    let suite = cfg.suite;
    let k = cfg.key.expose_secret();
    let mut salt = [0u8; 4];
    salt[..suite.salt_len()].copy_from_slice(&k[suite.key_len()..]);
    let key = dataplane::crypto::EspKey::new(
        Backend::Ring,
        suite,
        &k[..suite.key_len()],
        cfg.integ_key.as_ref().map(|k| k.expose_secret()),
    )
    .unwrap();
    let mut esp = cfg.spi.to_be_bytes().to_vec();
    esp.extend_from_slice(&(seq as u32).to_be_bytes());
    esp.extend(std::iter::repeat_n(0, suite.iv_len()));
    esp.extend_from_slice(plain);
    esp.extend(std::iter::repeat_n(0, suite.icv_len()));
    key.seal(&salt, &mut esp, seq, cfg.esn).unwrap();
    let mut p = v4_packet("10.200.0.1", "10.200.0.2", &esp, 0);
    p[9] = proto::ESP;
    Ipv4Packet::new_checked(&mut p[..]).unwrap().fill_checksum();
    p
}

#[test]
fn bad_padding_behind_a_valid_icv_is_counted_not_an_oracle() {
    let inner = v4_packet("10.201.1.2", "10.201.2.2", b"0123456789", 0);
    assert_eq!(inner.len(), 30);
    for suite in Suite::ALL {
        let cfg = a_to_b(suite);
        let (_, mut rx) = pair(cfg.clone(), Backend::AwsLc);
        // 30 + 2 padding + 2 trailer + 12 more padding = 46: pad 14 to 48.
        let mut good = inner.clone();
        good.extend(1..=16u8);
        good.extend([16, proto::IPV4]);
        let mut bad = inner.clone();
        bad.extend(1..=16u8);
        bad[30 + 9] = 0x42;
        bad.extend([16, proto::IPV4]);
        assert_eq!(good.len() % 16, 0);
        let mut f = OwnedFrame::from_packet(&forge(&cfg, 1, &bad), 64, 0);
        assert_eq!(
            decap(&mut rx, &mut f),
            Err(dropped(DropReason::BadPadding)),
            "{suite}"
        );
        let mut f = OwnedFrame::from_packet(&forge(&cfg, 2, &good), 64, 0);
        decap(&mut rx, &mut f).unwrap();
        assert_eq!(f.data(), &inner[..], "{suite}");
        // A pad length beyond the payload: the trailer does not fit.
        let mut long = inner.clone();
        long.extend([0; 16]);
        long.extend([200, proto::IPV4]);
        let mut f = OwnedFrame::from_packet(&forge(&cfg, 3, &long), 64, 0);
        assert!(decap(&mut rx, &mut f).is_err(), "{suite}");
        let sa = rx.inbound().next().unwrap();
        assert_eq!(sa.counters.drops.get(DropReason::BadPadding), 1, "{suite}");
        assert_eq!(sa.counters.drops.get(DropReason::AuthFailed), 0, "{suite}");
        assert_eq!(sa.counters.packets, 1);
    }
}

/// `wire` (an IPv4 ESP packet) without the `n` bytes in front of its ICV, lengths fixed.
fn cut_before_icv(wire: &[u8], icv: usize, n: usize) -> Vec<u8> {
    let mut w = wire.to_vec();
    let at = w.len() - icv - n;
    w.drain(at..at + n);
    let len = w.len() as u16;
    w[2..4].copy_from_slice(&len.to_be_bytes());
    Ipv4Packet::new_checked(&mut w[..]).unwrap().fill_checksum();
    w
}

#[test]
fn cbc_ciphertext_of_the_wrong_length_is_malformed() {
    for suite in Suite::ALL.into_iter().filter(|s| !s.is_aead()) {
        let cfg = a_to_b(suite);
        let (mut tx, mut rx) = pair(cfg, Backend::Ring);
        let mut f = vec![OwnedFrame::from_packet(
            &v4_packet("10.201.1.2", "10.201.2.2", b"cbc", 0),
            128,
            64,
        )];
        tx.encrypt_batch(&mut f, &mut [Verdict::Pass]);
        let wire = f[0].data().to_vec();
        let icv = suite.icv_len();
        let ct_len = wire.len() - 20 - 8 - 16 - icv;
        // Ciphertext lengths off by 1..15 bytes from whole blocks, or no ciphertext block at
        // all: malformed, before any MAC is computed. One whole block fewer has the right
        // shape, so the ICV decides.
        for (cut, reason) in [
            (1usize, DropReason::Malformed),
            (7, DropReason::Malformed),
            (15, DropReason::Malformed),
            (ct_len, DropReason::Malformed),
            (16, DropReason::AuthFailed),
        ] {
            let w = cut_before_icv(&wire, icv, cut);
            let mut fr = OwnedFrame::from_packet(&w, 64, 0);
            assert_eq!(
                decap(&mut rx, &mut fr),
                Err(dropped(reason)),
                "{suite} minus {cut}"
            );
        }
        let sa = rx.inbound().next().unwrap();
        assert_eq!(sa.counters.drops.get(DropReason::Malformed), 4, "{suite}");
        assert_eq!(sa.counters.drops.get(DropReason::AuthFailed), 1, "{suite}");
    }
}

#[test]
fn tunnel_mtu_follows_the_suite() {
    for (suite, want) in [
        (Suite::Aes128Gcm16, 1438),
        (Suite::ChaCha20Poly1305, 1438),
        (Suite::Aes128CbcSha256, 1438),
        (Suite::Aes256CbcSha384, 1422),
        (Suite::Aes256CbcSha512, 1422),
    ] {
        let (mut tx, mut rx) = pair(a_to_b(suite), Backend::Ring);
        let max = tx.outbound()[0].max_inner_len(1500);
        assert_eq!(max, want, "{suite}");
        for (len, fits) in [(max, true), (max + 1, false)] {
            let pkt = v4_packet("10.201.1.2", "10.201.2.2", &vec![0x33; len - 20], 0);
            let mut f = vec![OwnedFrame::from_packet(&pkt, 128, 128)];
            tx.encrypt_batch(&mut f, &mut [Verdict::Pass]);
            assert_eq!(f[0].data().len() <= 1500, fits, "{suite} {len}");
            decap(&mut rx, &mut f[0]).unwrap();
            assert_eq!(f[0].data(), &pkt[..]);
        }
    }
}
