//! Deterministic runs of two endpoints over memory: every exchange, loss, retransmission,
//! cookies, INVALID_KE_PAYLOAD, each failure notify and garbage input.

use super::*;
use crate::ike::algorithms::{DhGroup, EncrAlg, PrfAlg};
use crate::ike::identity::Identity;
use crate::ike::message::consts::notify as nt;
use crate::ike::rng::{RandomSource, SeededRandom};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const A: &str = "10.200.0.1:500";
const B: &str = "10.200.0.2:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn child(local: &str, remote: &str, dh: Vec<DhGroup>) -> ChildParams {
    let parse = |s: &str| {
        let (a, l) = s.split_once('/').unwrap();
        TsSpec::Fixed(ts::prefix(a.parse().unwrap(), l.parse().unwrap()))
    };
    ChildParams {
        name: "net".into(),
        local_ts: vec![parse(local)],
        remote_ts: vec![parse(remote)],
        proposals: vec![EspProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256],
            integ: vec![],
            dh,
            esn: vec![false],
            addke: Default::default(),
        }],
        mode: ChildMode::Tunnel,
        rekey_time: None,
        rekey_bytes: 0,
        rekey_packets: 0,
        life_bytes: 0,
        life_packets: 0,
        replay_window: 1024,
    }
}

fn psk(s: &str) -> Arc<Zeroizing<Vec<u8>>> {
    Arc::new(Zeroizing::new(s.as_bytes().to_vec()))
}

fn conn(name: &str, me: &str, peer: &str, local_ts: &str, remote_ts: &str) -> ConnectionParams {
    let me_id = if me == A { "gwA" } else { "gwB" };
    let peer_id = if peer == A { "gwA" } else { "gwB" };
    ConnectionParams {
        name: name.into(),
        local_addrs: vec![addr(me).ip()],
        remote_addrs: vec![addr(peer).ip()],
        remote_port: 500,
        proposals: vec![IkeProposalSpec {
            encr: vec![EncrAlg::AesGcm16_128],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::X25519, DhGroup::Ecp256],
            addke: Default::default(),
        }],
        local_id: Identity::parse(me_id).unwrap(),
        remote_id: Some(Identity::parse(peer_id).unwrap()),
        local_auth: LocalCredential::Psk(psk("a-long-random-test-secret")),
        remote_auth: RemoteCredential::Psk(psk("a-long-random-test-secret")),
        children: vec![child(local_ts, remote_ts, vec![])],
        force_encap: false,
        retransmit: Retransmit::default(),
        dpd_delay: None,
        rekey_time: None,
        fragmentation: true,
    }
}

pub(crate) fn conn_a() -> ConnectionParams {
    conn("site-b", A, B, "10.201.1.0/24", "10.201.2.0/24")
}

pub(crate) fn conn_b() -> ConnectionParams {
    conn("site-a", B, A, "10.201.2.0/24", "10.201.1.0/24")
}

/// Two endpoints joined by a lossy wire under a fake clock.
pub(crate) struct Pair {
    pub(crate) a: Endpoint,
    pub(crate) b: Endpoint,
    pub(crate) now: Instant,
    ev_a: Vec<IkeEvent>,
    ev_b: Vec<IkeEvent>,
    /// Datagrams delivered so far, per direction.
    sent_ab: usize,
    sent_ba: usize,
    /// Drop the datagram with this index (per direction) once.
    drop_ab: Vec<usize>,
    drop_ba: Vec<usize>,
    /// Copies of what was delivered.
    wire_ab: Vec<Vec<u8>>,
    wire_ba: Vec<Vec<u8>>,
}

impl Pair {
    pub(crate) fn new(a: ConnectionParams, b: ConnectionParams) -> Pair {
        Self::with(a, b, EndpointSettings::default())
    }

    fn with(a: ConnectionParams, b: ConnectionParams, sb: EndpointSettings) -> Pair {
        Self::with_conns(vec![a], b, sb)
    }

    /// A pair whose gwA has several connections.
    fn with_conns(a: Vec<ConnectionParams>, b: ConnectionParams, sb: EndpointSettings) -> Pair {
        let mut ea = Endpoint::new(
            a.into_iter().map(Arc::new).collect(),
            EndpointSettings::default(),
            Box::new(SeededRandom::new(1)),
        );
        let mut eb = Endpoint::new(vec![Arc::new(b)], sb, Box::new(SeededRandom::new(2)));
        ea.set_unix_time(1_800_000_000);
        eb.set_unix_time(1_800_000_000);
        Pair {
            a: ea,
            b: eb,
            now: Instant::now(),
            ev_a: vec![],
            ev_b: vec![],
            sent_ab: 0,
            sent_ba: 0,
            drop_ab: vec![],
            drop_ba: vec![],
            wire_ab: vec![],
            wire_ba: vec![],
        }
    }

    /// Deliver datagrams both ways until the wire is quiet.
    fn pump(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                let i = self.sent_ab;
                self.sent_ab += 1;
                if self.drop_ab.contains(&i) {
                    continue;
                }
                self.wire_ab.push(t.data.clone());
                self.b.handle_datagram(self.now, t.remote, t.local, &t.data);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                let i = self.sent_ba;
                self.sent_ba += 1;
                if self.drop_ba.contains(&i) {
                    continue;
                }
                self.wire_ba.push(t.data.clone());
                self.a.handle_datagram(self.now, t.remote, t.local, &t.data);
            }
            while let Some(e) = self.a.poll_event() {
                self.ev_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.ev_b.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the exchange did not settle");
    }

    /// Advance the clock to the next timer of either side and run it.
    fn tick(&mut self) {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next {
            self.now = self.now.max(t);
        }
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.pump();
    }

    pub(crate) fn up(&mut self) -> u64 {
        let spi = self.a.initiate(self.now, "site-b", None, addr(A)).unwrap();
        self.pump();
        spi
    }
}

fn child_ups(ev: &[IkeEvent]) -> Vec<&ChildSaInstall> {
    ev.iter()
        .filter_map(|e| match e {
            IkeEvent::ChildUp(c) => Some(&**c),
            _ => None,
        })
        .collect()
}

fn count<F: Fn(&IkeEvent) -> bool>(ev: &[IkeEvent], f: F) -> usize {
    ev.iter().filter(|e| f(e)).count()
}

fn is_ike_up(e: &IkeEvent) -> bool {
    matches!(e, IkeEvent::IkeUp { .. })
}

fn down_reason(ev: &[IkeEvent]) -> Option<String> {
    ev.iter().find_map(|e| match e {
        IkeEvent::IkeDown { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

fn assert_crossed(a: &ChildSaInstall, b: &ChildSaInstall) {
    assert_eq!(a.inbound_spi, b.outbound_spi);
    assert_eq!(a.outbound_spi, b.inbound_spi);
    assert_eq!(*a.inbound_key, *b.outbound_key);
    assert_eq!(*a.outbound_key, *b.inbound_key);
    assert_ne!(*a.inbound_key, *a.outbound_key);
    assert_eq!(a.local_ts, b.remote_ts);
    assert_eq!(a.remote_ts, b.local_ts);
    assert_eq!(a.suite, b.suite);
}

#[test]
fn psk_x25519_with_first_child() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(count(&p.ev_b, is_ike_up), 1);
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_crossed(ca[0], cb[0]);
    assert_eq!(ca[0].suite.encr, EncrAlg::AesGcm16_128);
    assert_eq!(ca[0].inbound_key.len(), 20);
    assert!(!ca[0].encap);
    assert_eq!(ts::display(&ca[0].local_ts[0]), "10.201.1.0/24");
    let sa = p.a.sas().next().unwrap();
    assert_eq!(sa.suite().unwrap().dh, DhGroup::X25519);
    assert_eq!(sa.state(), State::Established);
    // Four datagrams: IKE_SA_INIT and IKE_AUTH, each way once.
    assert_eq!((p.wire_ab.len(), p.wire_ba.len()), (2, 2));
}

#[test]
fn deterministic_given_seeds() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    let mut q = Pair::new(conn_a(), conn_b());
    q.now = p.now;
    q.up();
    assert_eq!(p.wire_ab, q.wire_ab);
    assert_eq!(p.wire_ba, q.wire_ba);
}

#[test]
fn lost_auth_response_is_answered_from_cache() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.drop_ba = vec![1];
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 0);
    assert_eq!(count(&p.ev_b, is_ike_up), 1);
    p.tick(); // A retransmits IKE_AUTH; B resends its cached answer.
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(
        child_ups(&p.ev_b).len(),
        1,
        "the retransmitted request must not be processed twice"
    );
    assert_eq!(
        p.wire_ab[1], p.wire_ab[2],
        "a retransmission repeats the same octets"
    );
    assert_crossed(child_ups(&p.ev_a)[0], child_ups(&p.ev_b)[0]);
}

#[test]
fn lost_sa_init_request_is_retransmitted() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.drop_ab = vec![0];
    p.up();
    assert!(p.wire_ab.is_empty());
    p.tick();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
}

#[test]
fn retransmissions_exhausted() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.drop_ab = (0..100).collect();
    p.up();
    let start = p.now;
    for _ in 0..10 {
        p.tick();
    }
    let r = down_reason(&p.ev_a).expect("initiator gives up");
    assert!(r.contains("retransmissions exhausted"), "{r}");
    // 4 s × (1 + 1.8 + … + 1.8^5) ≈ 4 × 2.8^… : about 150 s with strongSwan's schedule.
    let spent = p.now - start;
    assert!(
        spent > Duration::from_secs(100) && spent < Duration::from_secs(200),
        "{spent:?}"
    );
    assert_eq!(p.sent_ab, 6, "one transmission and five retransmissions");
    assert_eq!(p.a.stats().retransmissions, 5);
    assert_eq!(p.a.sas().count(), 0);
}

#[test]
fn cookie_when_half_open_threshold_reached() {
    let mut p = Pair::with(
        conn_a(),
        conn_b(),
        EndpointSettings {
            cookie_threshold: 0,
            ..EndpointSettings::default()
        },
    );
    p.up();
    assert_eq!(p.b.stats().cookies_sent, 1);
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(child_ups(&p.ev_a).len(), 1);
    // A forged cookie is refused and counted.
    let mut q = Pair::with(
        conn_a(),
        conn_b(),
        EndpointSettings {
            cookie_threshold: 0,
            ..EndpointSettings::default()
        },
    );
    q.a.initiate(q.now, "site-b", None, addr(A)).unwrap();
    let first = q.a.poll_transmit().unwrap();
    q.b.handle_datagram(q.now, addr(B), addr(A), &first.data);
    let cookie_reply = q.b.poll_transmit().unwrap();
    let m = crate::ike::message::decode(&cookie_reply.data, None).unwrap();
    let mut c = m.notify(nt::COOKIE).unwrap().data.clone();
    c[3] ^= 1;
    let orig = crate::ike::message::decode(&first.data, None).unwrap();
    let mut payloads = vec![crate::ike::message::Payload::Notify(
        crate::ike::message::Notify::new(nt::COOKIE, c),
    )];
    payloads.extend(orig.payloads);
    let forged = crate::ike::message::encode_plain(&orig.header, &payloads);
    q.b.handle_datagram(q.now, addr(B), addr(A), &forged);
    assert_eq!(q.b.stats().drops.get(DropReason::InvalidCookie), 1);
    assert_eq!(q.b.sas().count(), 0);
}

#[test]
fn invalid_ke_payload_retry() {
    let a = conn_a();
    let mut b = conn_b();
    b.proposals[0].dh = vec![DhGroup::Ecp256];
    let mut p = Pair::new(a, b);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(
        p.a.sas().next().unwrap().suite().unwrap().dh,
        DhGroup::Ecp256
    );
    // IKE_SA_INIT twice (x25519 refused, then ECP-256), IKE_AUTH once.
    assert_eq!(p.wire_ab.len(), 3);
    let refusal = crate::ike::message::decode(&p.wire_ba[0], None).unwrap();
    assert_eq!(
        refusal.notify(nt::INVALID_KE_PAYLOAD).unwrap().data,
        vec![0, 19]
    );
}

#[test]
fn no_proposal_chosen() {
    let a = conn_a();
    let mut b = conn_b();
    b.proposals[0].prf = vec![PrfAlg::HmacSha512];
    let mut p = Pair::new(a, b);
    p.up();
    let r = down_reason(&p.ev_a).unwrap();
    assert!(r.contains("NO_PROPOSAL_CHOSEN"), "{r}");
    assert_eq!(p.b.sas().count(), 0);
}

#[test]
fn wrong_psk_is_authentication_failed() {
    let a = conn_a();
    let mut b = conn_b();
    b.remote_auth = RemoteCredential::Psk(psk("another-secret"));
    let mut p = Pair::new(a, b);
    p.up();
    let ra = down_reason(&p.ev_a).unwrap();
    assert!(ra.contains("AUTHENTICATION_FAILED"), "{ra}");
    assert!(down_reason(&p.ev_b).unwrap().contains("authentication"));
    assert!(child_ups(&p.ev_a).is_empty() && child_ups(&p.ev_b).is_empty());
    assert_eq!((p.a.sas().count(), p.b.sas().count()), (0, 0));
}

#[test]
fn responder_authentication_checked_by_initiator() {
    let mut a = conn_a();
    a.remote_auth = RemoteCredential::Psk(psk("another-secret"));
    let b = conn_b();
    let mut p = Pair::new(a, b);
    p.up();
    let ra = down_reason(&p.ev_a).unwrap();
    assert!(ra.contains("authentication of the peer failed"), "{ra}");
}

#[test]
fn wrong_identity_refused() {
    let a = conn_a();
    let mut b = conn_b();
    b.remote_id = Some(Identity::parse("someone-else").unwrap());
    let mut p = Pair::new(a, b);
    p.up();
    assert!(down_reason(&p.ev_a)
        .unwrap()
        .contains("AUTHENTICATION_FAILED"));
}

#[test]
fn ts_unacceptable_keeps_the_ike_sa() {
    let a = conn("site-b", A, B, "10.9.1.0/24", "10.9.2.0/24");
    let mut p = Pair::new(a, conn_b());
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert!(child_ups(&p.ev_a).is_empty());
    let failed = p.ev_a.iter().find_map(|e| match e {
        IkeEvent::ChildFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(failed.unwrap().contains("TS_UNACCEPTABLE"));
    assert_eq!(p.a.sas().next().unwrap().state(), State::Established);
}

#[test]
fn responder_narrows_traffic_selectors() {
    let a = conn("site-b", A, B, "10.201.0.0/16", "10.201.0.0/16");
    let mut p = Pair::new(a, conn_b());
    p.up();
    let ca = child_ups(&p.ev_a)[0];
    assert_eq!(ts::display(&ca.local_ts[0]), "10.201.1.0/24");
    assert_eq!(ts::display(&ca.remote_ts[0]), "10.201.2.0/24");
    assert_crossed(ca, child_ups(&p.ev_b)[0]);
}

#[test]
fn esp_no_proposal_chosen_keeps_the_ike_sa() {
    let a = conn_a();
    let mut b = conn_b();
    b.children[0].proposals[0].encr = vec![EncrAlg::AesGcm16_256];
    let mut aa = a.clone();
    aa.children[0].proposals[0].encr = vec![EncrAlg::AesGcm16_128];
    let mut p = Pair::new(aa, b);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert!(p.ev_a.iter().any(|e| matches!(e, IkeEvent::ChildFailed { reason, .. } if reason.contains("NO_PROPOSAL_CHOSEN"))));
}

#[test]
fn create_child_with_pfs_rekey_and_delete() {
    let mut a = conn_a();
    let mut b = conn_b();
    let mut second_a = child("10.201.11.0/24", "10.201.12.0/24", vec![DhGroup::Ecp256]);
    second_a.name = "pfs".into();
    let mut second_b = child("10.201.12.0/24", "10.201.11.0/24", vec![DhGroup::Ecp256]);
    second_b.name = "pfs".into();
    a.children.push(second_a);
    b.children.push(second_b);
    let mut p = Pair::new(a, b);
    let spi = p.up();
    p.a.initiate(p.now, "site-b", Some("pfs"), addr(A)).unwrap();
    p.pump();
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    assert_eq!((ca.len(), cb.len()), (2, 2));
    assert_eq!(ca[1].suite.dh, Some(DhGroup::Ecp256));
    assert_crossed(ca[1], cb[1]);
    assert_eq!(p.a.sa(spi).unwrap().children().len(), 2);
    // Rekey the first child from the responder's side: new pair installed, old one deleted.
    let old_b = cb[0].inbound_spi;
    let old_a = ca[0].inbound_spi;
    assert!(p.b.rekey_child(p.now, old_b));
    p.pump();
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    assert_eq!((ca.len(), cb.len()), (3, 3));
    assert_crossed(ca[2], cb[2]);
    assert_eq!(cb[2].replaces, Some(old_b));
    assert_eq!(ca[2].replaces, Some(old_a));
    let downs = |ev: &[IkeEvent]| -> Vec<u32> {
        ev.iter()
            .filter_map(|e| match e {
                IkeEvent::ChildDown { inbound_spi, .. } => Some(*inbound_spi),
                _ => None,
            })
            .collect()
    };
    assert_eq!(downs(&p.ev_a), vec![old_a]);
    assert_eq!(downs(&p.ev_b), vec![old_b]);
    assert_eq!(p.a.sa(spi).unwrap().children().len(), 2);
    // Delete one child from A.
    let pfs_a = ca[1].inbound_spi;
    let pfs_b = cb[1].inbound_spi;
    assert!(p.a.delete_child(p.now, pfs_a));
    p.pump();
    assert_eq!(downs(&p.ev_a), vec![old_a, pfs_a]);
    assert_eq!(downs(&p.ev_b), vec![old_b, pfs_b]);
    assert_eq!(p.b.sas().next().unwrap().children().len(), 1);
}

#[test]
fn a_replaced_childs_inbound_spi_stays_reserved_while_it_drains() {
    let mut p = Pair::new(conn_a(), conn_b());
    let spi = p.up();
    let (old_a, old_b) = (
        child_ups(&p.ev_a)[0].inbound_spi,
        child_ups(&p.ev_b)[0].inbound_spi,
    );
    assert_eq!(p.a.sa_of_child(old_a), Some(spi));
    assert!(p.a.rekey_child(p.now, old_a));
    p.pump();
    let (new_a, new_b) = (
        child_ups(&p.ev_a)[1].inbound_spi,
        child_ups(&p.ev_b)[1].inbound_spi,
    );
    assert_eq!(p.a.sa_of_child(new_a), Some(spi));
    assert_eq!(p.a.sa_of_child(old_a), None, "the old child is gone");
    // Both daemons keep the old inbound SA installed while it drains, then remove it by SPI:
    // no new child may take the SPI meanwhile.
    for (ep, old, new) in [(&p.a, old_a, new_a), (&p.b, old_b, new_b)] {
        assert!(ep.inbound_spi_reserved(old));
        assert!(ep.inbound_spi_reserved(new));
    }
    p.now += SPI_REUSE_HOLD - Duration::from_millis(1);
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    assert!(p.a.inbound_spi_reserved(old_a) && p.b.inbound_spi_reserved(old_b));
    // Once the hold is over, the next call into the endpoint frees it.
    p.now += Duration::from_millis(1);
    assert!(p.a.rekey_child(p.now, new_a));
    p.pump();
    assert!(!p.a.inbound_spi_reserved(old_a) && !p.b.inbound_spi_reserved(old_b));
    assert!(
        p.a.inbound_spi_reserved(new_a),
        "the child replaced now is held"
    );
}

#[test]
fn delete_from_either_side_removes_everything() {
    for from_b in [false, true] {
        let mut p = Pair::new(conn_a(), conn_b());
        p.up();
        if from_b {
            assert_eq!(p.b.terminate(p.now, "site-a"), 1);
        } else {
            assert_eq!(p.a.terminate(p.now, "site-b"), 1);
        }
        p.pump();
        for ev in [&p.ev_a, &p.ev_b] {
            assert_eq!(count(ev, |e| matches!(e, IkeEvent::ChildDown { .. })), 1);
            assert_eq!(count(ev, |e| matches!(e, IkeEvent::IkeDown { .. })), 1);
        }
        assert_eq!((p.a.sas().count(), p.b.sas().count()), (0, 0));
    }
}

#[test]
fn liveness_checks_and_dead_peer() {
    let mut a = conn_a();
    a.dpd_delay = Some(Duration::from_secs(10));
    let mut p = Pair::new(a, conn_b());
    p.up();
    let before = p.wire_ab.len();
    p.tick();
    assert_eq!(
        p.wire_ab.len(),
        before + 1,
        "an empty INFORMATIONAL after dpd_delay"
    );
    assert_eq!(p.wire_ba.len(), 3, "answered");
    assert!(down_reason(&p.ev_a).is_none());
    // Now the peer vanishes.
    p.drop_ab = (0..1000).collect();
    for _ in 0..12 {
        p.tick();
    }
    let r = down_reason(&p.ev_a).expect("dead peer detected");
    assert!(r.contains("liveness"), "{r}");
    assert_eq!(
        count(&p.ev_a, |e| matches!(e, IkeEvent::ChildDown { .. })),
        1
    );
}

#[test]
fn forced_encapsulation_moves_to_4500() {
    let mut a = conn_a();
    a.force_encap = true;
    let mut p = Pair::new(a, conn_b());
    p.up();
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    assert!(ca[0].encap && cb[0].encap);
    assert_eq!(ca[0].local.port(), 4500);
    assert_eq!(ca[0].remote.port(), 4500);
    assert_eq!(cb[0].local.port(), 4500);
    assert_eq!(p.b.sas().next().unwrap().nat(), (false, true));
}

#[test]
fn garbage_is_dropped_and_counted() {
    let mut p = Pair::new(conn_a(), conn_b());
    let spi = p.up();
    let mut rng = SeededRandom::new(9);
    for len in [0usize, 1, 27, 28, 29, 100, 600] {
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk);
        p.b.handle_datagram(p.now, addr(B), addr(A), &junk);
        p.a.handle_datagram(p.now, addr(A), addr(B), &junk);
    }
    // A valid header for the established SA with a corrupted SK payload.
    let mut bad = p.wire_ab[1].clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    p.b.handle_datagram(p.now, addr(B), addr(A), &bad);
    p.pump();
    assert!(p.b.stats().drops.get(DropReason::Malformed) > 0);
    assert_eq!(p.a.sa(spi).unwrap().state(), State::Established);
    assert_eq!(p.b.sas().count(), 1);
}

#[test]
fn unsupported_critical_payload_in_sa_init() {
    use crate::ike::message::{decode, encode_plain, Payload};
    let mut p = Pair::new(conn_a(), conn_b());
    p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    let first = p.a.poll_transmit().unwrap();
    let m = decode(&first.data, None).unwrap();
    let mut payloads = m.payloads.clone();
    payloads.push(Payload::Other {
        ptype: 199,
        critical: true,
        data: vec![1],
    });
    let wire = encode_plain(&m.header, &payloads);
    p.b.handle_datagram(p.now, addr(B), addr(A), &wire);
    let answer = decode(&p.b.poll_transmit().unwrap().data, None).unwrap();
    assert_eq!(
        answer
            .notify(nt::UNSUPPORTED_CRITICAL_PAYLOAD)
            .unwrap()
            .data,
        vec![199]
    );
    assert_eq!(p.b.sas().count(), 0);
}

#[test]
fn half_open_sa_expires() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.drop_ab = vec![1, 2, 3, 4, 5, 6, 7];
    p.up();
    assert_eq!(p.b.sas().count(), 1);
    p.now += Duration::from_secs(31);
    p.b.handle_timeout(p.now);
    assert_eq!(p.b.sas().count(), 0);
}

#[test]
fn ike_rekey_from_either_side_keeps_the_children() {
    for from_b in [false, true] {
        let mut p = Pair::new(conn_a(), conn_b());
        let old_a = p.up();
        let old_b = p.b.sas().next().unwrap().local_spi();
        let children = (
            child_ups(&p.ev_a)[0].inbound_spi,
            child_ups(&p.ev_b)[0].inbound_spi,
        );
        let started = if from_b {
            p.b.rekey_ike(p.now, old_b)
        } else {
            p.a.rekey_ike(p.now, old_a)
        };
        assert!(started);
        p.pump();
        assert_eq!(
            (p.a.sas().count(), p.b.sas().count()),
            (1, 1),
            "the old IKE SA is deleted on both sides"
        );
        let (na, nb) = (p.a.sas().next().unwrap(), p.b.sas().next().unwrap());
        assert_ne!(na.local_spi(), old_a);
        assert_ne!(nb.local_spi(), old_b);
        assert_eq!(na.spis(), nb.spis());
        assert_eq!(na.children()[0].inbound_spi, children.0);
        assert_eq!(nb.children()[0].inbound_spi, children.1);
        assert_eq!(na.state(), State::Established);
        // The new SA carries on: a child rekey and a delete over it work.
        assert_eq!(
            count(&p.ev_a, |e| matches!(e, IkeEvent::ChildDown { .. })),
            0
        );
        assert_eq!(count(&p.ev_a, |e| matches!(e, IkeEvent::IkeDown { .. })), 0);
        assert!(p.a.rekey_child(p.now, children.0));
        p.pump();
        assert_crossed(child_ups(&p.ev_a)[1], child_ups(&p.ev_b)[1]);
        assert_eq!(p.a.terminate(p.now, "site-b"), 1);
        p.pump();
        assert_eq!((p.a.sas().count(), p.b.sas().count()), (0, 0));
    }
}

#[test]
fn fifty_child_rekeys_and_five_ike_rekeys_from_each_side_leave_one_pair() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    for round in 0..100 {
        let (a_side, ep_child) = if round % 2 == 0 {
            (true, &mut p.a)
        } else {
            (false, &mut p.b)
        };
        let _ = a_side;
        let spi = ep_child.sas().next().unwrap().children()[0].inbound_spi;
        assert!(ep_child.rekey_child(p.now, spi));
        p.pump();
        if round % 10 == 9 {
            let ep = if round % 20 == 9 { &mut p.a } else { &mut p.b };
            let spi = ep.sas().next().unwrap().local_spi();
            assert!(ep.rekey_ike(p.now, spi));
            p.pump();
        }
        for ep in [&p.a, &p.b] {
            assert_eq!(ep.sas().count(), 1, "round {round}");
            assert_eq!(
                ep.sas().next().unwrap().children().len(),
                1,
                "round {round}"
            );
        }
    }
    let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
    assert_eq!((ca.len(), cb.len()), (101, 101));
    assert_crossed(ca[100], cb[100]);
    let ups_minus_downs = |ev: &[IkeEvent]| {
        count(ev, |e| matches!(e, IkeEvent::ChildUp(_)))
            - count(ev, |e| matches!(e, IkeEvent::ChildDown { .. }))
    };
    assert_eq!((ups_minus_downs(&p.ev_a), ups_minus_downs(&p.ev_b)), (1, 1));
    assert_eq!(
        count(&p.ev_a, |e| matches!(e, IkeEvent::IkeRekeyed { .. })),
        10
    );
}

#[test]
fn ike_rekey_on_schedule_and_nat_keepalives() {
    let mut a = conn_a();
    a.rekey_time = Some(Duration::from_secs(3600));
    a.force_encap = true;
    let mut p = Pair::new(a, conn_b());
    let old = p.up();
    for _ in 0..4 {
        p.tick();
    }
    // Keepalives (0xff) every 20 s from the side that sees itself behind a NAT.
    assert!(p.wire_ab.iter().any(|d| d == &[0xff]));
    let start = p.now;
    while p.a.sa(old).is_some() {
        p.tick();
        assert!(p.now - start < Duration::from_secs(4000));
    }
    assert_eq!(p.a.sas().count(), 1);
    assert_eq!(
        count(&p.ev_a, |e| matches!(e, IkeEvent::IkeRekeyed { .. })),
        1
    );
}

#[test]
fn simultaneous_child_rekeys_leave_exactly_one_pair() {
    for seed in 0..8u64 {
        let mut p = Pair::new(conn_a(), conn_b());
        p.up();
        // Different seeds give different nonces, so either side's pair may be the redundant one.
        for _ in 0..seed {
            let spi = p.a.sas().next().unwrap().children()[0].inbound_spi;
            p.a.rekey_child(p.now, spi);
            p.pump();
        }
        let a_spi = p.a.sas().next().unwrap().children()[0].inbound_spi;
        let b_spi = p.b.sas().next().unwrap().children()[0].inbound_spi;
        // Both requests leave before either answer arrives.
        assert!(p.a.rekey_child(p.now, a_spi));
        assert!(p.b.rekey_child(p.now, b_spi));
        p.pump();
        let (sa, sb) = (p.a.sas().next().unwrap(), p.b.sas().next().unwrap());
        assert_eq!(sa.children().len(), 1, "seed {seed}: {:?}", sa.children());
        assert_eq!(sb.children().len(), 1, "seed {seed}: {:?}", sb.children());
        assert_eq!(sa.children()[0].inbound_spi, sb.children()[0].outbound_spi);
        assert_eq!(sa.children()[0].outbound_spi, sb.children()[0].inbound_spi);
        assert_ne!(sa.children()[0].inbound_spi, a_spi);
        let redundant = |ev: &[IkeEvent]| {
            count(
                ev,
                |e| matches!(e, IkeEvent::Log(m) if m.message.contains("rekey collision") && m.spi_in.is_some()),
            )
        };
        assert_eq!(
            redundant(&p.ev_a) + redundant(&p.ev_b),
            1,
            "seed {seed}: exactly one side deletes the pair it made"
        );
        // The surviving pair's keys match on both sides.
        let find = |ev: &[IkeEvent], spi: u32| {
            child_ups(ev)
                .into_iter()
                .find(|c| c.inbound_spi == spi)
                .map(|c| (c.inbound_key.to_vec(), c.outbound_key.to_vec()))
                .unwrap()
        };
        let (ai, ao) = find(&p.ev_a, sa.children()[0].inbound_spi);
        let (bi, bo) = find(&p.ev_b, sb.children()[0].inbound_spi);
        assert_eq!((ai, ao), (bo, bi));
    }
}

#[test]
fn initial_contact_from_a_restarted_peer_removes_the_stale_ike_sa_silently() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    let old_b = child_ups(&p.ev_b)[0].inbound_spi;
    let old_ike_b = p.b.sas().next().unwrap().local_spi();
    // gwA restarts: a new endpoint without state initiates again, with INITIAL_CONTACT.
    p.a = Endpoint::new(
        vec![Arc::new(conn_a())],
        EndpointSettings::default(),
        Box::new(SeededRandom::new(3)),
    );
    p.a.set_unix_time(1_800_000_000);
    p.ev_a.clear();
    p.ev_b.clear();
    let (ab, ba) = (p.wire_ab.len(), p.wire_ba.len());
    p.up();
    // No Delete: the exchanges are IKE_SA_INIT and IKE_AUTH only, both ways.
    assert_eq!((p.wire_ab.len() - ab, p.wire_ba.len() - ba), (2, 2));
    assert_eq!(p.b.sas().count(), 1, "gwB keeps only the new IKE SA");
    assert_ne!(p.b.sas().next().unwrap().local_spi(), old_ike_b);
    let new_b = child_ups(&p.ev_b)[0].inbound_spi;
    // The new child comes up before the old one goes, so the daemon installs before removing.
    let up = p
        .ev_b
        .iter()
        .position(|e| matches!(e, IkeEvent::ChildUp(c) if c.inbound_spi == new_b))
        .unwrap();
    let down = p
        .ev_b
        .iter()
        .position(|e| matches!(e, IkeEvent::ChildDown { inbound_spi, peer_lost: true, .. } if *inbound_spi == old_b))
        .expect("the stale child is removed");
    assert!(up < down, "{:?}", (up, down));
    assert_eq!(
        down_reason(&p.ev_b).as_deref(),
        Some(super::endpoint::REPLACED_BY_INITIAL_CONTACT)
    );
    // The tunnel still works: a rekey from gwB over the new IKE SA.
    assert!(p.b.rekey_child(p.now, new_b));
    p.pump();
    assert_eq!(p.a.sas().next().unwrap().children().len(), 1);
}

#[test]
fn a_second_ike_sa_without_initial_contact_leaves_the_first() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    // gwA did not restart: its second IKE SA must not claim to be the only one.
    p.up();
    assert_eq!((p.a.sas().count(), p.b.sas().count()), (2, 2));
    assert_eq!(count(&p.ev_b, |e| matches!(e, IkeEvent::IkeDown { .. })), 0);
}

#[test]
fn a_second_connection_between_the_same_identities_sends_no_initial_contact() {
    // Two connections (two tunnels over two paths, say) between the same identities: the
    // second IKE SA is not the only one between them, so it must not say so (RFC 7296 §2.4),
    // or the peer would delete the first.
    let mut second = conn_a();
    second.name = "site-b-2".into();
    let mut p = Pair::with_conns(
        vec![conn_a(), second],
        conn_b(),
        EndpointSettings::default(),
    );
    p.up();
    p.a.initiate(p.now, "site-b-2", None, addr(A)).unwrap();
    p.pump();
    assert_eq!((p.a.sas().count(), p.b.sas().count()), (2, 2));
    assert_eq!(count(&p.ev_b, |e| matches!(e, IkeEvent::IkeDown { .. })), 0);
}

mod attack;
pub(crate) mod certs;
mod pq;
mod replay;

/// Every event of a negotiation, a child rekey and an IKE SA rekey, debug-formatted, and
/// every log line the core wrote, hold none of the child keys either side derived (the keys
/// travel to the daemon in `ChildUp`, whose `Debug` leaves them out).
#[test]
fn events_and_log_lines_never_show_key_bytes() {
    let mut p = Pair::new(conn_a(), conn_b());
    p.up();
    let spi = p.a.sas().next().unwrap().children()[0].inbound_spi;
    p.a.rekey_child(p.now, spi);
    p.pump();
    let ike = p.a.sas().next().unwrap().local_spi();
    p.a.rekey_ike(p.now, ike);
    p.pump();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for e in p.ev_a.iter().chain(&p.ev_b) {
        if let IkeEvent::ChildUp(c) = e {
            keys.push(c.inbound_key.to_vec());
            keys.push(c.outbound_key.to_vec());
        }
    }
    assert!(keys.len() >= 8, "{}", keys.len());
    let forms: Vec<String> = keys
        .iter()
        .flat_map(|k| {
            let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
            let list = format!("{:?}", &k[..6]);
            let list = list.trim_end_matches(']').to_string();
            [hex[..16].to_string(), hex[..16].to_uppercase(), list]
        })
        .collect();
    for e in p.ev_a.iter().chain(&p.ev_b) {
        let dbg = format!("{e:?} {e:#?}");
        let msg = match e {
            IkeEvent::Log(l) => l.message.clone(),
            _ => String::new(),
        };
        for f in &forms {
            assert!(!dbg.contains(f.as_str()), "{f} in {dbg}");
            assert!(!msg.contains(f.as_str()), "{f} in {msg}");
        }
    }
}

/// esprit against esprit with each IKE suite and each ESP suite: IKE_SA_INIT, IKE_AUTH with the
/// first child, a child rekey and an IKE rekey over the negotiated SK cipher, then a delete.
/// Both ends agree on the suite and on every key, and the key lengths are the suite's.
#[test]
fn every_ike_and_esp_suite_end_to_end() {
    use crate::ike::algorithms::IntegAlg as I;
    let ike_suites = [
        (
            EncrAlg::AesCbc128,
            Some(I::HmacSha256_128),
            PrfAlg::HmacSha256,
            DhGroup::X25519,
        ),
        (
            EncrAlg::AesCbc256,
            Some(I::HmacSha256_128),
            PrfAlg::HmacSha256,
            DhGroup::Modp2048,
        ),
        (
            EncrAlg::AesCbc256,
            Some(I::HmacSha384_192),
            PrfAlg::HmacSha384,
            DhGroup::Ecp384,
        ),
        (
            EncrAlg::AesCbc256,
            Some(I::HmacSha512_256),
            PrfAlg::HmacSha512,
            DhGroup::Ecp256,
        ),
        (
            EncrAlg::AesCbc128,
            Some(I::HmacSha512_256),
            PrfAlg::HmacSha256,
            DhGroup::X25519,
        ),
        (
            EncrAlg::ChaCha20Poly1305,
            None,
            PrfAlg::HmacSha256,
            DhGroup::X25519,
        ),
        (
            EncrAlg::ChaCha20Poly1305,
            None,
            PrfAlg::HmacSha512,
            DhGroup::Ecp256,
        ),
        (
            EncrAlg::AesGcm16_256,
            None,
            PrfAlg::HmacSha384,
            DhGroup::Ecp384,
        ),
        (
            EncrAlg::AesCbc256,
            Some(I::HmacSha512_256),
            PrfAlg::HmacSha512,
            DhGroup::Ecp521,
        ),
        (
            EncrAlg::ChaCha20Poly1305,
            None,
            PrfAlg::HmacSha384,
            DhGroup::Modp3072,
        ),
        (
            EncrAlg::AesGcm16_128,
            None,
            PrfAlg::HmacSha256,
            DhGroup::Modp4096,
        ),
    ];
    let esp_suites = [
        (EncrAlg::AesCbc128, Some(I::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(I::HmacSha256_128)),
        (EncrAlg::AesCbc256, Some(I::HmacSha384_192)),
        (EncrAlg::AesCbc256, Some(I::HmacSha512_256)),
        (EncrAlg::ChaCha20Poly1305, None),
        (EncrAlg::AesGcm16_128, None),
        (EncrAlg::AesGcm16_256, None),
    ];
    for (i, (encr, integ, prf, dh)) in ike_suites.into_iter().enumerate() {
        // Every ESP suite once, spread over the IKE suites.
        let (esp_encr, esp_integ) = esp_suites[i % esp_suites.len()];
        let set = |c: &mut ConnectionParams| {
            c.proposals = vec![IkeProposalSpec {
                encr: vec![encr],
                integ: integ.into_iter().collect(),
                prf: vec![prf],
                dh: vec![dh],
                addke: Default::default(),
            }];
            c.children[0].proposals[0].encr = vec![esp_encr];
            c.children[0].proposals[0].integ = esp_integ.into_iter().collect();
        };
        let (mut a, mut b) = (conn_a(), conn_b());
        set(&mut a);
        set(&mut b);
        let mut p = Pair::new(a, b);
        let old_a = p.up();
        let want = crate::ike::session::proposal::IkeSuite {
            encr,
            integ,
            prf,
            dh,
            addke: Default::default(),
        };
        assert_eq!(p.a.sas().next().unwrap().suite(), Some(want));
        assert_eq!(p.b.sas().next().unwrap().suite(), Some(want));
        let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
        assert_eq!((ca.len(), cb.len()), (1, 1), "{}", want.name());
        assert_crossed(ca[0], cb[0]);
        assert_eq!((ca[0].suite.encr, ca[0].suite.integ), (esp_encr, esp_integ));
        assert!(ca[0].suite.dataplane_name().is_some());
        assert_eq!(ca[0].inbound_key.len(), esp_encr.keymat_len());
        let integ_len = esp_integ.map_or(0, I::key_len);
        assert_eq!(ca[0].inbound_integ_key.len(), integ_len);
        assert_eq!(*ca[0].inbound_integ_key, *cb[0].outbound_integ_key);
        assert_eq!(*ca[0].outbound_integ_key, *cb[0].inbound_integ_key);
        if integ_len > 0 {
            assert_ne!(*ca[0].inbound_integ_key, *ca[0].outbound_integ_key);
        }
        let child_a = ca[0].inbound_spi;
        assert!(p.a.rekey_child(p.now, child_a));
        p.pump();
        assert_crossed(child_ups(&p.ev_a)[1], child_ups(&p.ev_b)[1]);
        let old_b = p.b.sas().next().unwrap().local_spi();
        assert!(p.b.rekey_ike(p.now, old_b));
        p.pump();
        let na = p.a.sas().next().unwrap();
        assert_ne!(na.local_spi(), old_a);
        assert_eq!(na.suite(), Some(want));
        assert_eq!(na.state(), State::Established);
        assert_eq!(p.a.terminate(p.now, "site-b"), 1);
        p.pump();
        assert_eq!(
            (p.a.sas().count(), p.b.sas().count()),
            (0, 0),
            "{}",
            want.name()
        );
        assert_eq!(p.a.stats().drops.get(DropReason::Integrity), 0);
        assert_eq!(p.b.stats().drops.get(DropReason::Integrity), 0);
    }
}

/// A spec that mixes an AEAD with AES-CBC is offered as two proposals (RFC 7296 §3.3: no
/// integrity transform next to an AEAD); a responder that only takes AES-CBC picks the second.
#[test]
fn mixed_aead_and_cbc_spec_is_split_and_either_half_is_chosen() {
    use crate::ike::algorithms::IntegAlg as I;
    let mut a = conn_a();
    a.proposals = vec![IkeProposalSpec {
        encr: vec![EncrAlg::ChaCha20Poly1305, EncrAlg::AesCbc256],
        integ: vec![I::HmacSha384_192],
        prf: vec![PrfAlg::HmacSha384],
        dh: vec![DhGroup::X25519],
        addke: Default::default(),
    }];
    a.children[0].proposals[0].encr = vec![EncrAlg::AesGcm16_128, EncrAlg::AesCbc256];
    a.children[0].proposals[0].integ = vec![I::HmacSha512_256];
    let mut b = conn_b();
    b.proposals = vec![IkeProposalSpec {
        encr: vec![EncrAlg::AesCbc256],
        integ: vec![I::HmacSha256_128, I::HmacSha384_192],
        prf: vec![PrfAlg::HmacSha384],
        dh: vec![DhGroup::X25519],
        addke: Default::default(),
    }];
    b.children[0].proposals[0].encr = vec![EncrAlg::AesCbc256];
    b.children[0].proposals[0].integ = vec![I::HmacSha512_256];
    let mut p = Pair::new(a, b);
    p.up();
    let s = p.a.sas().next().unwrap().suite().unwrap();
    assert_eq!(
        (s.encr, s.integ),
        (EncrAlg::AesCbc256, Some(I::HmacSha384_192))
    );
    let c = child_ups(&p.ev_a)[0];
    assert_eq!(c.suite.dataplane_name(), Some("aes256cbc-sha512"));
}

/// An SK payload whose ICV is good but whose padding is not (made here with the initiator's
/// keys, as only a key holder could) is dropped and counted as `bad_padding` by the responder:
/// no answer, no notify, the IKE SA stays up. Forged ICVs stay `integrity` drops.
#[test]
fn bad_padding_under_a_good_icv_is_a_counted_drop_without_an_answer() {
    use crate::ike::algorithms::IntegAlg as I;
    use crate::ike::crypto::sk::SkCipher;
    use crate::ike::message::consts::{exchange, flags, payload_type as pt};
    use crate::ike::message::{Header, HEADER_LEN};
    let cbc = |c: &mut ConnectionParams| {
        c.proposals[0].encr = vec![EncrAlg::AesCbc256];
        c.proposals[0].integ = vec![I::HmacSha256_128];
    };
    let (mut a, mut b) = (conn_a(), conn_b());
    cbc(&mut a);
    cbc(&mut b);
    let mut p = Pair::new(a, b);
    let spi = p.up();
    let sa = p.a.sa(spi).unwrap();
    let k = sa.keys().unwrap();
    let sk = SkCipher::with_integ(
        EncrAlg::AesCbc256,
        Some(I::HmacSha256_128),
        &k.sk_ei,
        &k.sk_ai,
    )
    .unwrap();
    let (spi_i, spi_r) = sa.spis();
    let datagram = |pad_len: u8, icv_ok: bool| {
        let mut h = Header::new(spi_i, spi_r, exchange::INFORMATIONAL, flags::INITIATOR, 2);
        // One block: 15 octets of content or padding, then the Pad Length.
        let mut plain = vec![0u8; 15];
        plain.push(pad_len);
        let iv = sk.iv([0, 0, 0, 0, 0, 0, 1, 0]);
        let sk_len = 4 + iv.len() + plain.len() + sk.icv_len();
        h.next_payload = pt::SK;
        h.length = (HEADER_LEN + sk_len) as u32;
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(&[pt::NONE, 0]);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        let sealed = sk.seal(&iv, &out, &plain);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        if !icv_ok {
            *out.last_mut().unwrap() ^= 1;
        }
        out
    };
    let sent_before = p.sent_ba;
    p.b.handle_datagram(p.now, addr(B), addr(A), &datagram(200, true));
    p.b.handle_datagram(p.now, addr(B), addr(A), &datagram(200, false));
    p.pump();
    let drops = p.b.stats().drops;
    assert_eq!(drops.get(DropReason::BadPadding), 1);
    assert_eq!(drops.get(DropReason::Integrity), 1);
    assert_eq!(p.sent_ba, sent_before, "no answer to either");
    assert_eq!(p.b.sas().next().unwrap().state(), State::Established);
    // The same message with a Pad Length that fits is an ordinary empty INFORMATIONAL.
    p.b.handle_datagram(p.now, addr(B), addr(A), &datagram(15, true));
    p.pump();
    assert_eq!(p.sent_ba, sent_before + 1, "answered");
}

/// An SA payload without proposals (RFC 7296 §3.3 asks for one or more) under a good ICV, as
/// OpenIKED 7.2 sends in IKE_AUTH when none of its child proposals is usable: the responder
/// answers INVALID_SYNTAX (§3.10.1) instead of dropping it unanswered, and creates no IKE SA
/// from an IKE_AUTH request it cannot read (§2.21.2). On an established IKE SA, the same
/// payload in an INFORMATIONAL request is answered the same way and the IKE SA stays.
#[test]
fn sa_payload_without_proposals_is_invalid_syntax() {
    use crate::ike::algorithms::IntegAlg as I;
    use crate::ike::crypto::sk::SkCipher;
    use crate::ike::message::consts::{exchange, flags, payload_type as pt};
    use crate::ike::message::{decode, Header, Payload, HEADER_LEN};
    let cbc = |c: &mut ConnectionParams| {
        c.proposals[0].encr = vec![EncrAlg::AesCbc256];
        c.proposals[0].integ = vec![I::HmacSha256_128];
    };
    let (mut a, mut b) = (conn_a(), conn_b());
    cbc(&mut a);
    cbc(&mut b);
    // (the SA's SPIs, the initiator's SK_e/SK_a, the responder's) → a request with an empty
    // SA payload as its only payload.
    let request = |spis: (u64, u64),
                   exch: crate::ike::message::consts::ExchangeType,
                   id: u32,
                   sk: &SkCipher| {
        let mut h = Header::new(spis.0, spis.1, exch, flags::INITIATOR, id);
        // The SA payload's generic header alone (length 4), padding to one block.
        let mut plain = vec![pt::NONE, 0, 0, 4];
        plain.extend_from_slice(&[0u8; 11]);
        plain.push(11);
        let iv = sk.iv([0, 0, 0, 0, 0, 0, 2, 0]);
        let sk_len = 4 + iv.len() + plain.len() + sk.icv_len();
        h.next_payload = pt::SK;
        h.length = (HEADER_LEN + sk_len) as u32;
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(&[pt::SA, 0]);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        let sealed = sk.seal(&iv, &out, &plain);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        out
    };
    let invalid_syntax = |raw: &[u8], sk: &SkCipher| {
        let m = decode(raw, Some(sk)).unwrap();
        m.payloads
            .iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.ntype == nt::INVALID_SYNTAX))
    };
    let ciphers = |k: &crate::ike::crypto::keys::IkeKeys| {
        (
            SkCipher::with_integ(
                EncrAlg::AesCbc256,
                Some(I::HmacSha256_128),
                &k.sk_ei,
                &k.sk_ai,
            )
            .unwrap(),
            SkCipher::with_integ(
                EncrAlg::AesCbc256,
                Some(I::HmacSha256_128),
                &k.sk_er,
                &k.sk_ar,
            )
            .unwrap(),
        )
    };

    // IKE_AUTH: gwA's own request is lost, the forged one takes its place.
    let mut p = Pair::new(a.clone(), b.clone());
    p.drop_ab = vec![1];
    let spi = p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    p.pump();
    let sa = p.a.sa(spi).unwrap();
    let (ski, skr) = ciphers(sa.keys().unwrap());
    let spis = sa.spis();
    assert_eq!(p.b.sas().count(), 1, "gwB waits for IKE_AUTH");
    p.b.handle_datagram(
        p.now,
        addr(B),
        addr(A),
        &request(spis, exchange::IKE_AUTH, 1, &ski),
    );
    let answer = p.b.poll_transmit().expect("an answer");
    assert!(invalid_syntax(&answer.data, &skr));
    assert_eq!(p.b.stats().drops.get(DropReason::Malformed), 1);
    assert_eq!(
        p.b.sas().count(),
        0,
        "no IKE SA from an unreadable IKE_AUTH"
    );

    // The same IKE_AUTH in fragments (RFC 7383): reassembled, it is answered the same way.
    let mut p = Pair::new(a.clone(), b.clone());
    p.drop_ab = vec![1];
    let spi = p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    p.pump();
    let sa = p.a.sa(spi).unwrap();
    let (ski, skr) = ciphers(sa.keys().unwrap());
    let spis = sa.spis();
    let h = Header::new(spis.0, spis.1, exchange::IKE_AUTH, flags::INITIATOR, 1);
    let padding = Payload::Notify(crate::ike::message::Notify::new(
        nt::INITIAL_CONTACT,
        Vec::new(),
    ));
    let fragments = crate::ike::message::fragment::encode_fragments(
        &h,
        &[Payload::Sa(Vec::new()), padding],
        &ski,
        &mut 1000,
        HEADER_LEN + 40,
    );
    assert!(fragments.len() > 1, "{} fragment(s)", fragments.len());
    for f in &fragments {
        p.b.handle_datagram(p.now, addr(B), addr(A), f);
    }
    let answer = p.b.poll_transmit().expect("an answer");
    assert!(invalid_syntax(&answer.data, &skr));
    assert_eq!(p.b.stats().drops.get(DropReason::Malformed), 1);
    assert_eq!(
        p.b.sas().count(),
        0,
        "no IKE SA from an unreadable IKE_AUTH"
    );

    // INFORMATIONAL on an established IKE SA.
    let mut p = Pair::new(a, b);
    let spi = p.up();
    let sa = p.a.sa(spi).unwrap();
    let (ski, skr) = ciphers(sa.keys().unwrap());
    let spis = sa.spis();
    p.b.handle_datagram(
        p.now,
        addr(B),
        addr(A),
        &request(spis, exchange::INFORMATIONAL, 2, &ski),
    );
    let answer = p.b.poll_transmit().expect("an answer");
    assert!(invalid_syntax(&answer.data, &skr));
    assert_eq!(p.b.sas().next().unwrap().state(), State::Established);
}
