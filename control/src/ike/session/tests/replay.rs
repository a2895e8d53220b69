//! Replays: many IKE SAs timing out at the same instant give the same transmits and events in
//! the same order on every run, and a fixed scenario puts the same octets on the wire as the
//! code it was recorded with (the guard of refactors that must not change behaviour).

use super::*;
use aws_lc_rs::digest;

/// Everything one run produced, in order: (side, local, remote, datagram) and (side, event).
#[derive(Debug, Default, PartialEq, Eq)]
struct Trace {
    transmits: Vec<(char, SocketAddr, SocketAddr, Vec<u8>)>,
    events: Vec<(char, String)>,
}

impl Trace {
    fn drain(&mut self, side: char, e: &mut Endpoint) {
        while let Some(t) = e.poll_transmit() {
            self.transmits.push((side, t.local, t.remote, t.data));
        }
        while let Some(ev) = e.poll_event() {
            self.events.push((side, format!("{ev:?}")));
        }
    }
}

/// A opens `n` IKE SAs to B at one instant; B answers IKE_SA_INIT but every IKE_AUTH is lost,
/// so all of A's retransmissions, all of A's give-ups and all of B's half-open expiries fall
/// on the same instants.
fn many_sas_time_out_together(n: usize, start: Instant) -> Trace {
    let settings = EndpointSettings {
        cookie_threshold: 10 * n,
        half_open_limits: HalfOpenLimits {
            total: 10 * n,
            per_source: 10 * n,
        },
        ..EndpointSettings::default()
    };
    let mut p = Pair::with(conn_a(), conn_b(), settings);
    p.now = start;
    let mut tr = Trace::default();
    for _ in 0..n {
        p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    }
    // Deliver IKE_SA_INIT both ways; drop everything after (IKE_AUTH and its retransmits).
    let mut inits = Vec::new();
    while let Some(t) = p.a.poll_transmit() {
        tr.transmits.push(('a', t.local, t.remote, t.data.clone()));
        inits.push(t);
    }
    for t in inits {
        p.b.handle_datagram(p.now, t.remote, t.local, &t.data);
    }
    let mut answers = Vec::new();
    while let Some(t) = p.b.poll_transmit() {
        tr.transmits.push(('b', t.local, t.remote, t.data.clone()));
        answers.push(t);
    }
    for t in answers {
        p.a.handle_datagram(p.now, t.remote, t.local, &t.data);
    }
    tr.drain('a', &mut p.a);
    tr.drain('b', &mut p.b);
    assert_eq!(p.b.half_open(), n);
    let mut instants = 0;
    while p.a.sas().count() + p.b.sas().count() > 0 {
        let next = [p.a.poll_timeout(), p.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("a timer while SAs remain");
        p.now = next;
        p.a.handle_timeout(p.now);
        p.b.handle_timeout(p.now);
        tr.drain('a', &mut p.a);
        tr.drain('b', &mut p.b);
        instants += 1;
        assert!(instants < 100, "the SAs did not time out");
    }
    tr
}

#[test]
fn two_hundred_sas_timing_out_at_once_replay_identically() {
    let start = Instant::now();
    let one = many_sas_time_out_together(200, start);
    let two = many_sas_time_out_together(200, start);
    let downs = |t: &Trace, side: char| {
        t.events
            .iter()
            .filter(|(s, e)| *s == side && e.starts_with("IkeDown"))
            .count()
    };
    assert_eq!(downs(&one, 'a'), 200);
    assert_eq!(downs(&one, 'b'), 200);
    assert!(one.transmits.len() > 3 * 200, "retransmissions happened");
    assert_eq!(one.transmits.len(), two.transmits.len());
    assert_eq!(one.events.len(), two.events.len());
    assert!(one == two, "the two runs differ");
}

/// A and B seeded with `seed` bring up `n` IKE SAs at one instant, A checking liveness every
/// 10 s; then B vanishes. All of A's liveness checks start at the same instant, are
/// retransmitted at the same instants and give up at the same instant. Returns the trace and
/// how many of A's `IkeDown` events each timer instant produced.
fn many_dead_peers(n: usize, start: Instant, seed: u64) -> (Trace, Vec<usize>) {
    let mut conn = conn_a();
    conn.dpd_delay = Some(Duration::from_secs(10));
    let settings = EndpointSettings {
        cookie_threshold: 10 * n,
        half_open_limits: HalfOpenLimits {
            total: 10 * n,
            per_source: 10 * n,
        },
        ..EndpointSettings::default()
    };
    let mut a = Endpoint::new(
        vec![Arc::new(conn)],
        EndpointSettings::default(),
        Box::new(SeededRandom::new(seed)),
    );
    let mut b = Endpoint::new(
        vec![Arc::new(conn_b())],
        settings,
        Box::new(SeededRandom::new(seed ^ 0x5eed)),
    );
    a.set_unix_time(1_800_000_000);
    b.set_unix_time(1_800_000_000);
    let mut tr = Trace::default();
    for _ in 0..n {
        a.initiate(start, "site-b", None, addr(A)).unwrap();
    }
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            moved = true;
            b.handle_datagram(start, t.remote, t.local, &t.data);
            tr.transmits.push(('a', t.local, t.remote, t.data));
        }
        while let Some(t) = b.poll_transmit() {
            moved = true;
            a.handle_datagram(start, t.remote, t.local, &t.data);
            tr.transmits.push(('b', t.local, t.remote, t.data));
        }
        for (side, e) in [('a', &mut a), ('b', &mut b)] {
            while let Some(ev) = e.poll_event() {
                tr.events.push((side, format!("{ev:?}")));
            }
        }
        if !moved {
            break;
        }
    }
    let ups = |tr: &Trace, side: char| {
        tr.events
            .iter()
            .filter(|(s, e)| *s == side && e.starts_with("IkeUp"))
            .count()
    };
    assert_eq!((ups(&tr, 'a'), ups(&tr, 'b')), (n, n));
    // B is gone: nothing reaches it any more, and its timers never run.
    let mut now = start;
    let mut downs_per_instant = Vec::new();
    while a.sas().count() > 0 {
        let next = a.poll_timeout().expect("a timer while SAs remain");
        assert!(next >= now, "timers do not go back in time");
        now = next;
        a.handle_timeout(now);
        let before = tr.events.len();
        tr.drain('a', &mut a);
        downs_per_instant.push(
            tr.events[before..]
                .iter()
                .filter(|(_, e)| e.starts_with("IkeDown"))
                .count(),
        );
        assert!(downs_per_instant.len() < 100, "the SAs did not time out");
    }
    (tr, downs_per_instant)
}

#[test]
fn two_hundred_dead_peers_detected_at_once_replay_identically() {
    let start = Instant::now();
    let (one, downs) = many_dead_peers(200, start, 7);
    let (two, downs_two) = many_dead_peers(200, start, 7);
    assert_eq!(
        downs.iter().filter(|&&d| d > 0).collect::<Vec<_>>(),
        vec![&200],
        "every SA gives up at the same instant: {downs:?}"
    );
    assert_eq!(downs, downs_two);
    let reasons: Vec<&String> = one
        .events
        .iter()
        .filter(|(s, e)| *s == 'a' && e.starts_with("IkeDown"))
        .map(|(_, e)| e)
        .collect();
    assert!(
        reasons.iter().all(|e| e.contains("liveness")),
        "{reasons:?}"
    );
    assert_eq!(one.transmits.len(), two.transmits.len());
    assert_eq!(one.events.len(), two.events.len());
    assert!(one == two, "the two runs differ");
    // The seed is the only source of variation: another one changes the octets, not the shape.
    let (other, downs_other) = many_dead_peers(200, start, 8);
    assert_eq!(downs_other, downs);
    assert_eq!(other.transmits.len(), one.transmits.len());
    assert!(
        other.transmits != one.transmits,
        "the seed reaches the wire"
    );
}

/// A SHA-256 over every datagram of a scenario: IKE_SA_INIT, IKE_AUTH, a child with PFS, child
/// rekeys from both sides, an IKE rekey, a liveness check, a child delete, an IKE delete.
fn scenario_digest() -> String {
    let mut a = conn_a();
    let mut b = conn_b();
    a.dpd_delay = Some(Duration::from_secs(10));
    let mut second_a = child("10.201.11.0/24", "10.201.12.0/24", vec![DhGroup::Ecp256]);
    second_a.name = "pfs".into();
    let mut second_b = child("10.201.12.0/24", "10.201.11.0/24", vec![DhGroup::Ecp256]);
    second_b.name = "pfs".into();
    a.children.push(second_a);
    b.children.push(second_b);
    let mut p = Pair::new(a, b);
    p.up();
    p.a.initiate(p.now, "site-b", Some("pfs"), addr(A)).unwrap();
    p.pump();
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    let (first_a, pfs_b) = (ca[0].inbound_spi, cb[1].inbound_spi);
    assert!(p.a.rekey_child(p.now, first_a));
    assert!(p.b.rekey_child(p.now, pfs_b));
    p.pump();
    let spi_b = p.b.sas().next().unwrap().local_spi();
    assert!(p.b.rekey_ike(p.now, spi_b));
    p.pump();
    p.tick();
    let newest = child_ups(&p.ev_a).last().unwrap().inbound_spi;
    assert!(p.a.delete_child(p.now, newest));
    p.pump();
    assert_eq!(p.a.terminate(p.now, "site-b"), 1);
    p.pump();
    assert_eq!((p.a.sas().count(), p.b.sas().count()), (0, 0));
    let mut ctx = digest::Context::new(&digest::SHA256);
    for d in p.wire_ab.iter().chain(p.wire_ba.iter()) {
        ctx.update(&(d.len() as u32).to_be_bytes());
        ctx.update(d);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Recorded with the code before the IKE SA was split by exchange (issue 11).
const SCENARIO_DIGEST: &str = "eee8b989a12cc1f026476fb674e1d918f21f91e1b205d157c42509a29d8ac691";

#[test]
fn a_fixed_scenario_puts_the_recorded_octets_on_the_wire() {
    assert_eq!(scenario_digest(), SCENARIO_DIGEST);
}
