//! The endpoint under attack: floods of IKE_SA_INIT requests that answer COOKIEs, from several
//! source addresses, against the half-open limits; expiry; COOKIE secret rotation; a counter
//! for every kind of hostile datagram aimed at a live IKE SA; timers that fire in a
//! deterministic order; rate-limited drop logs.

use super::*;
use crate::ike::message::consts::{exchange, flags};
use crate::ike::message::{encode_plain, Header, Payload};
use crate::ike::session::drops::DropReason;
use crate::ike::session::CookiePolicy;
use crate::ike::session::LogLine;
use std::collections::HashMap;
use std::net::IpAddr;
use tracing::Level;

/// B answering anyone (no remote address), so attackers from any address reach IKE_SA_INIT.
fn conn_b_any() -> ConnectionParams {
    let mut c = conn_b();
    c.remote_addrs.clear();
    c
}

fn settings(cookie: usize, total: usize, per_source: usize) -> EndpointSettings {
    EndpointSettings {
        cookie_threshold: cookie,
        half_open_limits: HalfOpenLimits { total, per_source },
        ..EndpointSettings::default()
    }
}

/// Attackers: real initiators at 10.66.0.x that answer COOKIEs but never send IKE_AUTH.
struct Flood {
    atk: Vec<(SocketAddr, Endpoint)>,
}

impl Flood {
    fn new(sources: u8) -> Flood {
        let atk = (1..=sources)
            .map(|i| {
                let me: SocketAddr = format!("10.66.0.{i}:500").parse().unwrap();
                let mut c = conn_a();
                c.local_addrs = vec![me.ip()];
                let e = Endpoint::new(
                    vec![Arc::new(c)],
                    EndpointSettings::default(),
                    Box::new(SeededRandom::new(100 + u64::from(i))),
                );
                (me, e)
            })
            .collect();
        Flood { atk }
    }

    /// Every attacker starts `n` IKE SAs; the IKE_SA_INIT exchanges (COOKIE round trips
    /// included) run to the end, the IKE_AUTH requests are withheld.
    fn round(&mut self, b: &mut Endpoint, now: Instant, n: usize) {
        for (me, e) in &mut self.atk {
            for _ in 0..n {
                e.initiate(now, "site-b", None, *me).unwrap();
            }
            for _ in 0..10 {
                let mut moved = false;
                while let Some(t) = e.poll_transmit() {
                    let h = Header::parse(&t.data).unwrap();
                    if h.exchange == exchange::IKE_SA_INIT {
                        moved = true;
                        b.handle_datagram(now, t.remote, t.local, &t.data);
                    }
                }
                while let Some(t) = b.poll_transmit() {
                    if t.remote == *me {
                        e.handle_datagram(now, t.remote, t.local, &t.data);
                    }
                }
                if !moved {
                    break;
                }
            }
            while e.poll_event().is_some() {}
        }
    }
}

fn half_open_per_source(b: &Endpoint) -> HashMap<IpAddr, usize> {
    let mut m = HashMap::new();
    for s in b.sas() {
        if s.state() == State::AuthPending && s.role() == Role::Responder {
            *m.entry(s.addrs().1.ip()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn half_open_limits_total_and_per_source_hold_against_a_flood_that_answers_cookies() {
    let mut b = Endpoint::new(
        vec![Arc::new(conn_b_any())],
        settings(4, 10, 3),
        Box::new(SeededRandom::new(2)),
    );
    let now = Instant::now();
    let mut flood = Flood::new(6);
    for _ in 0..5 {
        flood.round(&mut b, now, 4);
    }
    assert_eq!(b.half_open(), 10, "the total limit");
    assert_eq!(b.sas().count(), 10);
    assert!(half_open_per_source(&b).values().all(|n| *n <= 3));
    let s = b.stats();
    assert!(s.cookies_sent > 0, "cookies past the threshold");
    assert!(s.drops.get(DropReason::HalfOpenLimitSource) > 0);
    assert!(s.drops.get(DropReason::HalfOpenLimit) > 0);
    assert_eq!(s.drops.get(DropReason::InvalidCookie), 0);
}

#[test]
fn a_legitimate_initiator_completes_during_the_flood_and_expiry_frees_the_slots() {
    let mut p = Pair::with(conn_a(), conn_b_any(), settings(4, 100, 3));
    let mut flood = Flood::new(8);
    for _ in 0..3 {
        flood.round(&mut p.b, p.now, 5);
    }
    assert_eq!(p.b.half_open(), 24, "8 sources, 3 each");
    assert!(half_open_per_source(&p.b).values().all(|n| *n == 3));
    // A real peer, past the cookie threshold: it answers the COOKIE and completes.
    let spi = p.up();
    assert_eq!(p.a.sa(spi).unwrap().state(), State::Established);
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(child_ups(&p.ev_a).len(), 1);
    assert_eq!(p.b.half_open(), 24);
    // The flood goes on: still 3 per source.
    flood.round(&mut p.b, p.now, 5);
    assert_eq!(p.b.half_open(), 24);
    // Half-open IKE SAs expire in bounded time and free their slots; the established one stays.
    let deadline = p.now + Duration::from_secs(30);
    assert!(p.b.poll_timeout().is_some_and(|t| t <= deadline));
    p.now = deadline;
    p.b.handle_timeout(p.now);
    assert_eq!(p.b.half_open(), 0);
    assert_eq!(p.b.stats().half_open_expired, 24);
    assert_eq!(p.b.sas().count(), 1);
    flood.round(&mut p.b, p.now, 1);
    assert_eq!(p.b.half_open(), 8, "the slots are free again");
}

/// IKE_SA_INIT from A with the cookie B demanded, withheld so it can be delivered later.
fn cookie_retry(p: &mut Pair) -> Vec<u8> {
    p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    let first = p.a.poll_transmit().unwrap();
    p.b.handle_datagram(p.now, addr(B), addr(A), &first.data);
    let demand = p.b.poll_transmit().unwrap();
    p.a.handle_datagram(p.now, addr(A), addr(B), &demand.data);
    p.a.poll_transmit().unwrap().data
}

#[test]
fn cookies_of_the_previous_secret_pass_for_the_grace_period_older_ones_never() {
    let policy = CookiePolicy {
        lifetime: Duration::from_secs(300),
        max_uses: 1000,
        grace: Duration::from_secs(60),
    };
    let sb = EndpointSettings {
        cookie_threshold: 0,
        cookie_policy: policy,
        ..EndpointSettings::default()
    };
    // Made just before a rotation, returned 30 s after it: accepted.
    let mut p = Pair::with(conn_a(), conn_b(), sb);
    let retry = cookie_retry(&mut p);
    let t = p.now + Duration::from_secs(330);
    p.b.handle_datagram(t, addr(B), addr(A), &retry);
    assert_eq!(p.b.stats().cookie_rotations, 1);
    assert_eq!(p.b.half_open(), 1);
    assert_eq!(p.b.stats().drops.total(), 0);
    // Returned after the grace period: refused, with a new demand.
    let mut p = Pair::with(conn_a(), conn_b(), sb);
    let retry = cookie_retry(&mut p);
    p.b.handle_datagram(p.now + Duration::from_secs(361), addr(B), addr(A), &retry);
    assert_eq!(p.b.half_open(), 0);
    assert_eq!(p.b.stats().drops.get(DropReason::InvalidCookie), 1);
    // Two rotations later (the secret before the previous one): refused at once.
    let mut p = Pair::with(conn_a(), conn_b_any(), sb);
    let retry = cookie_retry(&mut p);
    let mut other = Flood::new(1);
    other.round(&mut p.b, p.now + Duration::from_secs(300), 1);
    other.round(&mut p.b, p.now + Duration::from_secs(600), 1);
    assert_eq!(p.b.stats().cookie_rotations, 2);
    p.b.handle_datagram(p.now + Duration::from_secs(601), addr(B), addr(A), &retry);
    assert_eq!(p.b.stats().drops.get(DropReason::InvalidCookie), 1);
    assert!(p.b.sas().all(|s| s.addrs().1 != addr(A)));
}

#[test]
fn the_secret_is_replaced_after_max_uses() {
    let sb = EndpointSettings {
        cookie_threshold: 0,
        cookie_policy: CookiePolicy {
            max_uses: 4,
            ..CookiePolicy::default()
        },
        ..EndpointSettings::default()
    };
    let mut b = Endpoint::new(
        vec![Arc::new(conn_b_any())],
        sb,
        Box::new(SeededRandom::new(2)),
    );
    let mut flood = Flood::new(3);
    flood.round(&mut b, Instant::now(), 3);
    // 9 demands and 9 checks: rotations after the 4th and the 8th demand.
    assert_eq!(b.stats().cookies_sent, 9);
    assert_eq!(b.stats().cookie_rotations, 2);
}

fn with_header(raw: &[u8], f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut d = raw.to_vec();
    f(&mut d);
    d
}

#[test]
fn every_hostile_datagram_at_a_live_ike_sa_raises_exactly_one_counter() {
    let mut p = Pair::new(conn_a(), conn_b());
    let spi_a = p.up();
    let spi_b = p.b.sas().next().unwrap().local_spi();
    let auth = p.wire_ab[1].clone();
    let h = Header::parse(&auth).unwrap();
    assert_eq!(h.exchange, exchange::IKE_AUTH);
    let id = |d: &mut [u8], id: u32| d[20..24].copy_from_slice(&id.to_be_bytes());
    let plain = encode_plain(
        &Header::new(
            h.spi_i,
            h.spi_r,
            exchange::INFORMATIONAL,
            flags::INITIATOR,
            2,
        ),
        &[],
    );
    // An SKF payload numbered 0 of 2 (out of range).
    let mut skf = vec![0u8, 0, 0, 2];
    skf.extend_from_slice(&[0u8; 40]);
    let frag = encode_plain(
        &Header::new(
            h.spi_i,
            h.spi_r,
            exchange::INFORMATIONAL,
            flags::INITIATOR,
            2,
        ),
        &[Payload::Other {
            ptype: 53,
            critical: false,
            data: skf,
        }],
    );
    let cases: Vec<(&str, Vec<u8>, DropReason, bool)> = vec![
        ("junk", vec![7u8; 10], DropReason::Malformed, false),
        (
            "unknown SPI",
            with_header(&auth, |d| d[8..16].copy_from_slice(&[9u8; 8])),
            DropReason::UnknownSpi,
            false,
        ),
        (
            "bad ICV",
            with_header(&auth, |d| id(d, 2)),
            DropReason::Integrity,
            true,
        ),
        (
            "message ID ahead of the window",
            with_header(&auth, |d| id(d, 7)),
            DropReason::MessageId,
            true,
        ),
        (
            "replayed request",
            auth.clone(),
            DropReason::Retransmit,
            true,
        ),
        (
            "response to nothing",
            with_header(&auth, |d| {
                d[19] = flags::INITIATOR | flags::RESPONSE;
                id(d, 3)
            }),
            DropReason::MessageId,
            true,
        ),
        ("unencrypted request", plain, DropReason::Unexpected, true),
        ("fragment out of range", frag, DropReason::Fragment, true),
        (
            "truncated",
            with_header(&auth, |d| id(d, 2))[..auth.len() - 20].to_vec(),
            DropReason::Malformed,
            false,
        ),
        (
            "wrong direction",
            with_header(&auth, |d| d[19] = 0),
            DropReason::UnknownSpi,
            false,
        ),
    ];
    for (what, data, reason, on_sa) in cases {
        let before = p.b.stats().drops;
        let sa_before = p.b.sa_drops(spi_b);
        p.b.handle_datagram(p.now, addr(B), addr(A), &data);
        let after = p.b.stats().drops;
        assert_eq!(after.total(), before.total() + 1, "{what}");
        assert_eq!(after.get(reason), before.get(reason) + 1, "{what}");
        let sa_after = p.b.sa_drops(spi_b);
        assert_eq!(
            sa_after.total(),
            sa_before.total() + u64::from(on_sa),
            "{what}"
        );
        if on_sa {
            assert_eq!(sa_after.get(reason), sa_before.get(reason) + 1, "{what}");
        }
    }
    // The IKE SA survived all of it and still works.
    while p.b.poll_transmit().is_some() {}
    assert!(p
        .a
        .rekey_child(p.now, p.a.sa(spi_a).unwrap().children()[0].inbound_spi));
    p.pump();
    assert_eq!(p.b.sa(spi_b).unwrap().state(), State::Established);
    assert_eq!(p.b.sa(spi_b).unwrap().children().len(), 1);
}

#[test]
fn same_instant_timers_fire_in_creation_order() {
    let mut b = Endpoint::new(
        vec![Arc::new(conn_b_any())],
        settings(1000, 1000, 1000),
        Box::new(SeededRandom::new(2)),
    );
    let now = Instant::now();
    let mut flood = Flood::new(40);
    flood.round(&mut b, now, 1);
    assert_eq!(b.half_open(), 40);
    // The order B answered in is the order it created the IKE SAs.
    let created: Vec<u64> = {
        let mut v: Vec<(u64, Instant)> = b.sas().map(|s| (s.local_spi(), s.times().0)).collect();
        assert!(v.iter().all(|(_, t)| *t == now));
        // Source addresses 10.66.0.1..40 initiated in that order.
        v.sort_by_key(|(spi, _)| b.sa(*spi).unwrap().addrs().1.ip());
        v.into_iter().map(|(s, _)| s).collect()
    };
    while b.poll_event().is_some() {}
    b.handle_timeout(now + Duration::from_secs(30));
    let down: Vec<u64> = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            IkeEvent::IkeDown { ike_sa, .. } => Some(ike_sa),
            _ => None,
        })
        .collect();
    assert_eq!(down, created);
}

#[test]
fn drop_logs_are_rate_limited_with_a_summary() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    while p.b.poll_event().is_some() {}
    for _ in 0..1000 {
        p.b.handle_datagram(p.now, addr(B), addr(A), &[1u8; 40]);
    }
    let logs: Vec<LogLine> = std::iter::from_fn(|| p.b.poll_event())
        .filter_map(|e| match e {
            IkeEvent::Log(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 5, "{logs:?}");
    // Drops are debug lines with the sender and the reason as fields.
    assert!(logs.iter().all(|l| l.level == Level::DEBUG
        && l.reason == Some("malformed")
        && l.remote == Some(addr(A))
        && l.message
            .starts_with(&format!("dropped a datagram from {}", addr(A)))));
    assert_eq!(p.b.stats().drops.get(DropReason::Malformed), 1000);
    assert_eq!(p.b.stats().logs_suppressed, 995);
    // Ten seconds later the timer writes one summary line.
    let t = p.b.poll_timeout().unwrap();
    assert!(t <= p.now + Duration::from_secs(10));
    p.b.handle_timeout(p.now + Duration::from_secs(10));
    let logs: Vec<LogLine> = std::iter::from_fn(|| p.b.poll_event())
        .filter_map(|e| match e {
            IkeEvent::Log(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        vec![LogLine {
            reason: Some("malformed"),
            ..LogLine::new(
                Level::WARN,
                "dropped datagrams: 995 more malformed suppressed in the last 10s"
            )
        }]
    );
}
