//! Post-quantum hybrid key exchange esprit↔esprit: ML-KEM as additional key exchanges (RFC
//! 9370) in IKE_INTERMEDIATE (RFC 9242), fragmented when large, the fallback to a classical
//! proposal and the failure without one, and the responder's INVALID_SYNTAX for a KE payload
//! of the wrong method or length.

use super::*;
use crate::ike::crypto::mlkem::MlKem;
use crate::ike::crypto::sk::SkCipher;
use crate::ike::message::consts::{exchange, flags, payload_type};
use crate::ike::message::{self, Header, Message, Payload};

/// The IKE proposals of strongSwan-style strings, for the few keywords these tests use (the
/// configuration's parser lives outside `ike`, which must not depend on it).
fn proposals(list: &[&str]) -> Vec<IkeProposalSpec> {
    list.iter()
        .map(|s| {
            let mut p = IkeProposalSpec {
                encr: vec![],
                integ: vec![],
                prf: vec![],
                dh: vec![],
                addke: Default::default(),
            };
            for w in s.split('-') {
                match w {
                    "aes128gcm16" => p.encr.push(EncrAlg::AesGcm16_128),
                    "aes256gcm16" => p.encr.push(EncrAlg::AesGcm16_256),
                    "prfsha256" => p.prf.push(PrfAlg::HmacSha256),
                    "prfsha384" => p.prf.push(PrfAlg::HmacSha384),
                    "x25519" => p.dh.push(DhGroup::X25519),
                    "ecp384" => p.dh.push(DhGroup::Ecp384),
                    _ => {
                        let (n, m) = w.split_once('_').unwrap();
                        let n: usize = n.strip_prefix("ke").unwrap().parse().unwrap();
                        let m = (m != "none").then(|| MlKem::from_name(m).unwrap());
                        p.addke[n - 1].push(m);
                    }
                }
            }
            p
        })
        .collect()
}

fn pair(a: &[&str], b: &[&str]) -> Pair {
    let (mut ca, mut cb) = (conn_a(), conn_b());
    ca.proposals = proposals(a);
    cb.proposals = proposals(b);
    Pair::new(ca, cb)
}

/// Exchange type and message ID of each IKE message on a wire (fragments counted once), and
/// how many datagrams were fragments.
fn exchanges(wire: &[Vec<u8>]) -> (Vec<(u8, u32)>, usize) {
    let mut out: Vec<(u8, u32)> = Vec::new();
    let mut frags = 0;
    for d in wire {
        let h = Header::parse(d).unwrap();
        if h.next_payload == payload_type::SKF {
            frags += 1;
        }
        let e = (h.exchange.0, h.message_id);
        if out.last() != Some(&e) {
            out.push(e);
        }
    }
    (out, frags)
}

fn assert_same_ike_keys(p: &Pair) {
    let (ka, kb) = (
        p.a.sas().next().unwrap().keys().unwrap(),
        p.b.sas().next().unwrap().keys().unwrap(),
    );
    assert_eq!(*ka.sk_d, *kb.sk_d);
    assert_eq!(*ka.sk_pi, *kb.sk_pi);
    assert_eq!(*ka.sk_er, *kb.sk_er);
}

#[test]
fn x25519_with_mlkem768_end_to_end() {
    let s = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    let mut p = pair(&[s], &[s]);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    assert_eq!(count(&p.ev_b, is_ike_up), 1);
    let suite = p.a.sas().next().unwrap().suite().unwrap();
    assert_eq!(suite.name(), s);
    assert_eq!(suite.addke[0], Some(MlKem::MlKem768));
    assert_eq!(p.b.sas().next().unwrap().suite(), Some(suite));
    assert_same_ike_keys(&p);
    assert_crossed(child_ups(&p.ev_a)[0], child_ups(&p.ev_b)[0]);
    // IKE_SA_INIT (0), one IKE_INTERMEDIATE (1), IKE_AUTH (2).
    let (ab, _) = exchanges(&p.wire_ab);
    let (ba, _) = exchanges(&p.wire_ba);
    let want = vec![(34, 0), (43, 1), (35, 2)];
    assert_eq!(ab, want);
    assert_eq!(ba, want);
    // Both IKE_SA_INIT messages announce IKE_INTERMEDIATE.
    for d in [&p.wire_ab[0], &p.wire_ba[0]] {
        let m = message::decode(d, None).unwrap();
        assert!(m.notify(nt::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some());
    }
    // The SA carries on after setup: a child rekey and an IKE rekey, which runs ML-KEM-768
    // again in IKE_FOLLOWUP_KE.
    let inbound = child_ups(&p.ev_a)[0].inbound_spi;
    assert!(p.a.rekey_child(p.now, inbound));
    p.pump();
    assert_crossed(child_ups(&p.ev_a)[1], child_ups(&p.ev_b)[1]);
    let spi = p.a.sas().next().unwrap().local_spi();
    assert!(p.a.rekey_ike(p.now, spi));
    p.pump();
    assert_eq!((p.a.sas().count(), p.b.sas().count()), (1, 1));
    let rekeyed = p.a.sas().next().unwrap().suite().unwrap();
    assert_eq!(rekeyed.name(), s);
    assert_same_ike_keys(&p);
}

#[test]
fn ike_rekeys_with_mlkem_in_ike_followup_ke() {
    for s in [
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768",
        "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024-ke2_mlkem512",
    ] {
        let mut p = pair(&[s], &[s]);
        p.up();
        for from_b in [false, true, false] {
            let before = (p.wire_ab.len(), p.wire_ba.len());
            let old = (p.a.sas().next().unwrap().spis(), child_ups(&p.ev_a).len());
            let started = if from_b {
                let spi = p.b.sas().next().unwrap().local_spi();
                p.b.rekey_ike(p.now, spi)
            } else {
                let spi = p.a.sas().next().unwrap().local_spi();
                p.a.rekey_ike(p.now, spi)
            };
            assert!(started);
            p.pump();
            assert_eq!((p.a.sas().count(), p.b.sas().count()), (1, 1), "{s}");
            let (na, nb) = (p.a.sas().next().unwrap(), p.b.sas().next().unwrap());
            assert_ne!(na.spis(), old.0);
            assert_eq!(na.spis(), nb.spis());
            assert_eq!(na.suite().unwrap().name(), s);
            assert_eq!(na.children().len(), 1, "the child moved to the new SA");
            assert_same_ike_keys(&p);
            // One IKE_FOLLOWUP_KE request and response per round.
            let (ab, _) = exchanges(&p.wire_ab[before.0..]);
            let (ba, _) = exchanges(&p.wire_ba[before.1..]);
            let rounds = s.matches("_mlkem").count();
            let followups = |ex: &[(u8, u32)]| ex.iter().filter(|(e, _)| *e == 44).count();
            assert_eq!(
                (followups(&ab), followups(&ba)),
                (rounds, rounds),
                "{ab:?} {ba:?}"
            );
            assert_eq!(child_ups(&p.ev_a).len(), old.1, "no child was made");
        }
        // The child still rekeys under the thrice rekeyed SA.
        let spi = p.a.sas().next().unwrap().children()[0].inbound_spi;
        assert!(p.a.rekey_child(p.now, spi));
        p.pump();
        let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
        assert_crossed(ca[ca.len() - 1], cb[cb.len() - 1]);
    }
}

#[test]
fn ike_rekey_falls_back_to_a_classical_peer() {
    let pq = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    let classical = "aes256gcm16-prfsha384-x25519";
    let mut p = pair(&[pq, classical], &[classical]);
    p.up();
    let spi = p.a.sas().next().unwrap().local_spi();
    assert!(p.a.rekey_ike(p.now, spi));
    p.pump();
    assert_eq!(p.a.sas().next().unwrap().suite().unwrap().name(), classical);
    assert_same_ike_keys(&p);
}

#[test]
fn ecp384_with_two_mlkem_rounds_fragmented() {
    let s = "aes256gcm16-prfsha384-ecp384-ke1_mlkem1024-ke2_mlkem512";
    let mut p = pair(&[s], &[s]);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", down_reason(&p.ev_a));
    assert_eq!(count(&p.ev_b, is_ike_up), 1, "{:?}", down_reason(&p.ev_b));
    let suite = p.b.sas().next().unwrap().suite().unwrap();
    assert_eq!(
        suite.rounds(),
        vec![(1, MlKem::MlKem1024), (2, MlKem::MlKem512)]
    );
    assert_same_ike_keys(&p);
    assert_crossed(child_ups(&p.ev_a)[0], child_ups(&p.ev_b)[0]);
    let (ab, frags_ab) = exchanges(&p.wire_ab);
    let (ba, frags_ba) = exchanges(&p.wire_ba);
    let want = vec![(34, 0), (43, 1), (43, 2), (35, 3)];
    assert_eq!((ab, ba), (want.clone(), want));
    // The 1568-octet ML-KEM-1024 key and ciphertext do not fit 1236 octets: RFC 7383 fragments.
    assert!(frags_ab >= 2 && frags_ba >= 2, "{frags_ab} {frags_ba}");
    assert!(p
        .wire_ab
        .iter()
        .chain(&p.wire_ba)
        .all(|d| d.len() <= crate::ike::session::ike_sa::FRAGMENT_SIZE));
}

#[test]
fn unfragmented_mlkem1024_when_fragmentation_is_off() {
    let s = "aes128gcm16-prfsha256-x25519-ke1_mlkem1024";
    let (mut ca, mut cb) = (conn_a(), conn_b());
    ca.proposals = proposals(&[s]);
    cb.proposals = proposals(&[s]);
    cb.fragmentation = false;
    let mut p = Pair::new(ca, cb);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", down_reason(&p.ev_a));
    let (_, frags) = exchanges(&p.wire_ab);
    assert_eq!(frags, 0);
    assert!(p.wire_ab[1].len() > 1568);
}

#[test]
fn classical_peer_and_fallback() {
    let pq = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    let classical = "aes256gcm16-prfsha384-x25519";
    // Our list ends with a classical proposal: the classical-only peer picks it.
    let mut p = pair(&[pq, classical], &[classical]);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    let suite = p.a.sas().next().unwrap().suite().unwrap();
    assert_eq!(suite.name(), classical);
    let (ab, _) = exchanges(&p.wire_ab);
    assert_eq!(ab, vec![(34, 0), (35, 1)], "no IKE_INTERMEDIATE");
    // `ke1_none` makes the additional exchange optional in one proposal.
    let mut p = pair(&[&format!("{pq}-ke1_none")], &[classical]);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1);
    // And a PQ peer still takes the PQ proposal first.
    let mut p = pair(&[pq, classical], &[pq, classical]);
    p.up();
    assert_eq!(p.b.sas().next().unwrap().suite().unwrap().name(), pq);
}

#[test]
fn classical_peer_without_fallback_fails_with_a_reason() {
    let pq = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    let classical = "aes256gcm16-prfsha384-x25519";
    let mut p = pair(&[pq], &[classical]);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 0);
    let r = down_reason(&p.ev_a).expect("the initiator gives up");
    assert!(
        r.contains("NO_PROPOSAL_CHOSEN") && r.contains("additional key exchange"),
        "{r}"
    );
    // A responder that requires ML-KEM refuses a classical initiator.
    let mut p = pair(&[classical], &[pq]);
    p.up();
    let r = down_reason(&p.ev_a).expect("refused");
    assert!(r.contains("NO_PROPOSAL_CHOSEN"), "{r}");
}

/// A run with ADDKE1 = ML-KEM-512 where A's IKE_INTERMEDIATE request is lost, then a request
/// forged under A's keys carrying `ke` reaches B. Returns B's answer decrypted, and the pair.
fn forged_intermediate(ke: Payload) -> (Message, Pair) {
    let s = "aes128gcm16-prfsha256-x25519-ke1_mlkem512";
    let mut p = pair(&[s], &[s]);
    p.drop_ab = vec![1];
    p.up();
    let sa = p.a.sas().next().unwrap();
    let (spi_i, spi_r) = sa.spis();
    let suite = sa.suite().unwrap();
    let k = sa.keys().unwrap();
    let out = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai).unwrap();
    let inn = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_er, &k.sk_ar).unwrap();
    let h = Header::new(
        spi_i,
        spi_r,
        exchange::IKE_INTERMEDIATE,
        flags::INITIATOR,
        1,
    );
    let d = message::encode_encrypted(&h, &[ke], &out, 77u64.to_be_bytes());
    let before = p.wire_ba.len();
    p.b.handle_datagram(p.now, addr(B), addr(A), &d);
    let reply = p.b.poll_transmit().expect("B answers");
    assert_eq!(p.wire_ba.len(), before);
    let m = message::decode(&reply.data, Some(&inn)).unwrap();
    p.pump();
    (m, p)
}

#[test]
fn ke_payload_of_another_method_is_invalid_syntax() {
    let (m, p) = forged_intermediate(Payload::Ke {
        group: MlKem::MlKem1024.transform_id(),
        data: vec![0; MlKem::MlKem1024.encapsulation_key_len()],
    });
    assert_eq!(m.header.exchange, exchange::IKE_INTERMEDIATE);
    assert!(m.notify(nt::INVALID_SYNTAX).is_some(), "{m:?}");
    let r = down_reason(&p.ev_b).expect("B gives up the IKE SA");
    assert!(r.contains("INVALID_SYNTAX") && r.contains("37"), "{r}");
    // A classical group in IKE_INTERMEDIATE is not the negotiated method either.
    let (m, _) = forged_intermediate(Payload::Ke {
        group: 31,
        data: vec![9; 32],
    });
    assert!(m.notify(nt::INVALID_SYNTAX).is_some());
}

#[test]
fn mlkem_key_of_the_wrong_length_is_invalid_syntax() {
    let m512 = MlKem::MlKem512;
    for len in [
        m512.encapsulation_key_len() - 1,
        m512.encapsulation_key_len() + 1,
        0,
    ] {
        let (m, p) = forged_intermediate(Payload::Ke {
            group: m512.transform_id(),
            data: vec![1; len],
        });
        assert!(m.notify(nt::INVALID_SYNTAX).is_some(), "{len}");
        let r = down_reason(&p.ev_b).expect("B gives up the IKE SA");
        assert!(r.contains(&format!("{len} octets")), "{r}");
    }
    // The right length with coefficients above q fails FIPS 203's modulus check.
    let (m, p) = forged_intermediate(Payload::Ke {
        group: m512.transform_id(),
        data: vec![0xff; m512.encapsulation_key_len()],
    });
    assert!(m.notify(nt::INVALID_SYNTAX).is_some());
    assert!(down_reason(&p.ev_b).unwrap().contains("modulus"));
}

#[test]
fn ike_auth_before_the_additional_exchange_is_refused() {
    let s = "aes128gcm16-prfsha256-x25519-ke1_mlkem512";
    let mut p = pair(&[s], &[s]);
    p.drop_ab = vec![1];
    p.up();
    let sa = p.a.sas().next().unwrap();
    let (spi_i, spi_r) = sa.spis();
    let suite = sa.suite().unwrap();
    let k = sa.keys().unwrap();
    let out = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai).unwrap();
    let h = Header::new(spi_i, spi_r, exchange::IKE_AUTH, flags::INITIATOR, 1);
    let d = message::encode_encrypted(
        &h,
        &[Payload::IdI {
            id_type: 2,
            data: b"gwA".to_vec(),
        }],
        &out,
        5u64.to_be_bytes(),
    );
    p.b.handle_datagram(p.now, addr(B), addr(A), &d);
    p.pump();
    let r = down_reason(&p.ev_b).expect("B gives up");
    assert!(r.contains("before additional key exchange 1"), "{r}");
    assert_eq!(count(&p.ev_b, is_ike_up), 0);
}

#[test]
fn responder_choosing_addke_without_announcing_intermediate_is_refused() {
    let s = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    let mut p = pair(&[s], &[s]);
    p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    let req = p.a.poll_transmit().unwrap();
    p.b.handle_datagram(p.now, req.remote, req.local, &req.data);
    let resp = p.b.poll_transmit().unwrap();
    let m = message::decode(&resp.data, None).unwrap();
    assert!(m.notify(nt::INTERMEDIATE_EXCHANGE_SUPPORTED).is_some());
    let stripped: Vec<Payload> = m
        .payloads
        .iter()
        .filter(
            |x| !matches!(x, Payload::Notify(n) if n.ntype == nt::INTERMEDIATE_EXCHANGE_SUPPORTED),
        )
        .cloned()
        .collect();
    let forged = message::encode_plain(&m.header, &stripped);
    p.a.handle_datagram(p.now, resp.remote, resp.local, &forged);
    p.pump();
    let r = down_reason(&p.ev_a).expect("A gives up");
    assert!(r.contains("INTERMEDIATE_EXCHANGE_SUPPORTED"), "{r}");
    assert_eq!(count(&p.ev_a, is_ike_up), 0);
}

/// The RFC 9370 key update and the RFC 9242 IntAuth chain against values computed with
/// Python's hmac and hashlib from the same fixed inputs (`crypto/testdata/rfc9370_kat.py`).
#[test]
fn rfc9370_key_updates_and_int_auth_known_answers() {
    use crate::ike::crypto::{auth, keys};
    let kat: std::collections::HashMap<&str, Vec<u8>> =
        include_str!("../../crypto/testdata/rfc9370_kat.txt")
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| {
                let b = (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                    .collect();
                (k, b)
            })
            .collect();
    let (ni, nr) = ([0x11u8; 32], [0x22u8; 32]);
    let (spi_i, spi_r) = (0x0102030405060708u64, 0x1112131415161718u64);
    let mut sk_d: Vec<u8> = (0..48).collect();
    let mut sk_pi = vec![0x66u8; 48];
    let mut int_auth_i = Vec::new();
    for (n, secret) in [(1u32, [0x33u8; 32]), (2, [0x44u8; 32])] {
        let h = Header::new(
            spi_i,
            spi_r,
            exchange::IKE_INTERMEDIATE,
            flags::INITIATOR,
            n,
        );
        let ke = [Payload::Ke {
            group: 36,
            data: vec![0x50 + n as u8; 16],
        }];
        let (first, inner) = message::inner_octets(&ke);
        let octets = message::intauth_octets(&h, first, &inner);
        int_auth_i = auth::int_auth_step(PrfAlg::HmacSha384, &sk_pi, &int_auth_i, &octets);
        assert_eq!(
            int_auth_i,
            kat[format!("round{n}.int_auth_i").as_str()],
            "{n}"
        );
        let k = keys::derive_intermediate_ike_keys(
            PrfAlg::HmacSha384,
            (EncrAlg::AesGcm16_256, None),
            &sk_d,
            &secret,
            &ni,
            &nr,
            spi_i,
            spi_r,
        )
        .unwrap();
        for (name, got) in [
            ("sk_d", &k.sk_d),
            ("sk_ei", &k.sk_ei),
            ("sk_er", &k.sk_er),
            ("sk_pi", &k.sk_pi),
            ("sk_pr", &k.sk_pr),
        ] {
            assert_eq!(
                **got,
                kat[format!("round{n}.{name}").as_str()],
                "{n} {name}"
            );
        }
        assert!(k.sk_ai.is_empty() && k.sk_ar.is_empty());
        sk_d = k.sk_d.to_vec();
        sk_pi = k.sk_pi.to_vec();
    }
    // A child's KEYMAT with two additional key exchanges, under SK_d(0).
    let sk_d0: Vec<u8> = (0..48).collect();
    let c = keys::derive_child_keys_addke(
        PrfAlg::HmacSha384,
        &sk_d0,
        Some(&[0x77; 32]),
        &[0x88; 32],
        &[0x99; 32],
        &[&[0x33; 32], &[0x44; 32]],
        EncrAlg::AesGcm16_256,
        None,
    )
    .unwrap();
    assert_eq!([&c.encr_i[..], &c.encr_r[..]].concat(), kat["child.keymat"]);
    // An IKE SA rekey with the same secrets.
    let r = keys::derive_rekeyed_ike_keys_addke(
        PrfAlg::HmacSha384,
        &sk_d0,
        PrfAlg::HmacSha384,
        (EncrAlg::AesGcm16_256, None),
        &[0x77; 32],
        &[0x88; 32],
        &[0x99; 32],
        &[&[0x33; 32], &[0x44; 32]],
        0x2122232425262728,
        0x3132333435363738,
    )
    .unwrap();
    assert_eq!(*r.sk_d, kat["rekey.sk_d"]);
}

/// What IntAuth covers of a received IKE_INTERMEDIATE message is the same whether it came
/// whole or in fragments, and equals what the sender computed from its payloads.
#[test]
fn int_auth_octets_of_whole_and_fragmented_messages_agree() {
    use crate::ike::message::fragment::{self, FragmentLimits, Reassembly};
    let sk = SkCipher::with_integ(EncrAlg::AesGcm16_128, None, &[7; 20], &[]).unwrap();
    let h = Header::new(1, 2, exchange::IKE_INTERMEDIATE, flags::INITIATOR, 1);
    let p = [Payload::Ke {
        group: 37,
        data: vec![3; 1568],
    }];
    let (first, inner) = message::inner_octets(&p);
    let whole =
        message::decode(&message::encode_encrypted(&h, &p, &sk, [0; 8]), Some(&sk)).unwrap();
    assert_eq!(whole.sk_inner, Some((first, inner.clone())));
    let mut iv = 0;
    let frags = fragment::encode_fragments(&h, &p, &sk, &mut iv, 600);
    assert!(frags.len() >= 3);
    let mut r = Reassembly::new(FragmentLimits::default());
    let mut got = None;
    for f in &frags {
        got = r.add(f, &sk).unwrap();
    }
    let got = got.expect("reassembled");
    assert_eq!(got.sk_inner, Some((first, inner.clone())));
    let a = message::intauth_octets(&got.header, first, &inner);
    let b = message::intauth_octets(&h, first, &inner);
    assert_eq!(a, b);
    // Lengths as if unencrypted: 28 + 4 + the inner payloads.
    assert_eq!(a.len(), 28 + 4 + inner.len());
    assert_eq!(
        u32::from_be_bytes(a[24..28].try_into().unwrap()) as usize,
        a.len()
    );
    assert_eq!(a[16], payload_type::SK);
    // Other exchanges keep no copy.
    let h2 = Header::new(1, 2, exchange::IKE_AUTH, flags::INITIATOR, 1);
    let m = message::decode(&message::encode_encrypted(&h2, &p, &sk, [1; 8]), Some(&sk)).unwrap();
    assert_eq!(m.sk_inner, None);
}

#[test]
fn lost_intermediate_messages_are_retransmitted_and_answered_from_the_cache() {
    let s = "aes256gcm16-prfsha384-x25519-ke1_mlkem768";
    // The response is lost: B has switched keys already, answers the retransmission from its
    // cache (under the old keys, which A still has) and does not run the round twice.
    let mut p = pair(&[s], &[s]);
    p.drop_ba = vec![1];
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 0);
    p.tick();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", down_reason(&p.ev_a));
    assert_eq!(count(&p.ev_b, is_ike_up), 1);
    assert_same_ike_keys(&p);
    // The request came in two fragments and was repeated as it was.
    assert_eq!(p.wire_ab[1..3], p.wire_ab[3..5]);
    assert_eq!(exchanges(&p.wire_ab).1, 4);
    // The request is lost (both fragments of an ML-KEM-1024 key).
    let s = "aes256gcm16-prfsha384-x25519-ke1_mlkem1024";
    let mut p = pair(&[s], &[s]);
    p.drop_ab = vec![1, 2];
    p.up();
    p.tick();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", down_reason(&p.ev_a));
    assert_same_ike_keys(&p);
}

#[test]
fn invalid_ke_payload_retry_keeps_the_additional_exchange() {
    let (mut ca, mut cb) = (conn_a(), conn_b());
    ca.proposals = proposals(&["aes256gcm16-prfsha384-ecp384-x25519-ke1_mlkem768"]);
    cb.proposals = proposals(&["aes256gcm16-prfsha384-x25519-ke1_mlkem768"]);
    let mut p = Pair::new(ca, cb);
    p.up();
    assert_eq!(count(&p.ev_a, is_ike_up), 1, "{:?}", down_reason(&p.ev_a));
    let suite = p.a.sas().next().unwrap().suite().unwrap();
    assert_eq!(suite.name(), "aes256gcm16-prfsha384-x25519-ke1_mlkem768");
    let (ab, _) = exchanges(&p.wire_ab);
    assert_eq!(ab, vec![(34, 0), (43, 1), (35, 2)]);
    let inits = p.wire_ab.iter().filter(|d| d[18] == 34).count();
    assert_eq!(
        inits, 2,
        "the first IKE_SA_INIT was answered INVALID_KE_PAYLOAD"
    );
}

/// The child proposals of both ends: `esp` as ESP proposal strings (`aes256gcm16`, `x25519`,
/// `keN_mlkemX` keywords only).
fn with_esp(c: &mut ConnectionParams, esp: &[&str]) {
    c.children[0].proposals = esp
        .iter()
        .map(|s| {
            let mut p = EspProposalSpec {
                encr: vec![],
                integ: vec![],
                dh: vec![],
                addke: Default::default(),
                esn: vec![false],
            };
            for w in s.split('-') {
                match w {
                    "aes256gcm16" => p.encr.push(EncrAlg::AesGcm16_256),
                    "x25519" => p.dh.push(DhGroup::X25519),
                    "ecp384" => p.dh.push(DhGroup::Ecp384),
                    _ => {
                        let (n, m) = w.split_once('_').unwrap();
                        let n: usize = n.strip_prefix("ke").unwrap().parse().unwrap();
                        let m = (m != "none").then(|| MlKem::from_name(m).unwrap());
                        p.addke[n - 1].push(m);
                    }
                }
            }
            p
        })
        .collect();
}

fn esp_pair(a: &[&str], b: &[&str]) -> Pair {
    let (mut ca, mut cb) = (conn_a(), conn_b());
    with_esp(&mut ca, a);
    with_esp(&mut cb, b);
    Pair::new(ca, cb)
}

#[test]
fn child_rekeys_with_mlkem_in_ike_followup_ke() {
    for esp in [
        "aes256gcm16-x25519-ke1_mlkem768",
        "aes256gcm16-ecp384-ke1_mlkem1024-ke2_mlkem512",
    ] {
        let mut p = esp_pair(&[esp], &[esp]);
        p.up();
        // The first child comes with IKE_AUTH, which has no key exchange.
        assert_eq!(child_ups(&p.ev_a)[0].suite.addke, [None; 7]);
        let before = p.wire_ab.len();
        for from_b in [false, true] {
            let n = child_ups(&p.ev_a).len();
            let spi = if from_b {
                child_ups(&p.ev_b)[n - 1].inbound_spi
            } else {
                child_ups(&p.ev_a)[n - 1].inbound_spi
            };
            let started = if from_b {
                p.b.rekey_child(p.now, spi)
            } else {
                p.a.rekey_child(p.now, spi)
            };
            assert!(started);
            p.pump();
            let (ca, cb) = (child_ups(&p.ev_a), child_ups(&p.ev_b));
            assert_eq!(
                (ca.len(), cb.len()),
                (n + 1, n + 1),
                "{esp} from_b={from_b}"
            );
            assert_crossed(ca[n], cb[n]);
            let rounds = ca[n].suite.rounds();
            assert_eq!(rounds.len(), esp.matches("_mlkem").count(), "{esp}");
            assert_eq!(p.a.sas().next().unwrap().children().len(), 1);
            assert_eq!(p.b.sas().next().unwrap().children().len(), 1);
        }
        let (ex, _) = exchanges(&p.wire_ab[before..]);
        assert!(ex.iter().any(|(e, _)| *e == 44), "{ex:?}");
        // A new child of the same configuration as well.
        p.a.initiate(p.now, "site-b", Some("net"), addr(A)).unwrap();
        p.pump();
        assert_eq!(p.a.sas().next().unwrap().children().len(), 2, "{esp}");
    }
}

#[test]
fn child_with_mlkem_falls_back_to_a_classical_peer() {
    let pq = "aes256gcm16-x25519-ke1_mlkem768";
    let classical = "aes256gcm16-x25519";
    let mut p = esp_pair(&[pq, classical], &[classical]);
    p.up();
    let spi = child_ups(&p.ev_a)[0].inbound_spi;
    assert!(p.a.rekey_child(p.now, spi));
    p.pump();
    let ca = child_ups(&p.ev_a);
    assert_eq!(ca.len(), 2);
    assert_eq!(ca[1].suite.addke, [None; 7]);
    assert_eq!(ca[1].suite.dh, Some(DhGroup::X25519));
    // Without the classical proposal the rekey is refused and the old child stays.
    let mut p = esp_pair(&[pq], &[classical]);
    p.up();
    let spi = child_ups(&p.ev_a)[0].inbound_spi;
    assert!(p.a.rekey_child(p.now, spi));
    p.pump();
    assert_eq!(child_ups(&p.ev_a).len(), 1);
    assert!(p
        .ev_a
        .iter()
        .any(|e| matches!(e, IkeEvent::ChildFailed { reason, .. } if reason.contains("NO_PROPOSAL_CHOSEN"))));
    assert_eq!(p.a.sas().next().unwrap().children().len(), 1);
}

#[test]
fn followup_with_an_unknown_link_is_state_not_found() {
    let esp = "aes256gcm16-x25519-ke1_mlkem768";
    let mut p = esp_pair(&[esp], &[esp]);
    p.up();
    let sa = p.a.sas().next().unwrap();
    let (spi_i, spi_r) = sa.spis();
    let suite = sa.suite().unwrap();
    let k = sa.keys().unwrap();
    let out = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_ei, &k.sk_ai).unwrap();
    let inn = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_er, &k.sk_ar).unwrap();
    let h = Header::new(spi_i, spi_r, exchange::IKE_FOLLOWUP_KE, flags::INITIATOR, 2);
    let p_ = [
        Payload::Ke {
            group: 36,
            data: vec![0; MlKem::MlKem768.encapsulation_key_len()],
        },
        Payload::Notify(crate::ike::message::Notify::new(
            nt::ADDITIONAL_KEY_EXCHANGE,
            vec![1, 2, 3, 4],
        )),
    ];
    let d = message::encode_encrypted(&h, &p_, &out, 99u64.to_be_bytes());
    p.b.handle_datagram(p.now, addr(B), addr(A), &d);
    let reply = p.b.poll_transmit().expect("B answers");
    let m = message::decode(&reply.data, Some(&inn)).unwrap();
    assert_eq!(m.header.exchange, exchange::IKE_FOLLOWUP_KE);
    assert!(m.notify(nt::STATE_NOT_FOUND).is_some(), "{m:?}");
    assert_eq!(p.b.sas().next().unwrap().state(), State::Established);
}

/// A ciphertext altered in flight (re-sealed under the right keys, so only ML-KEM sees the
/// change) decapsulates to an unrelated secret (implicit rejection): the two ends derive
/// different keys and nothing after it authenticates.
#[test]
fn tampered_mlkem_ciphertext_fails_the_exchange() {
    use crate::ike::session::DropReason;
    let s = "aes128gcm16-prfsha256-x25519-ke1_mlkem512";
    let mut p = pair(&[s], &[s]);
    p.a.initiate(p.now, "site-b", None, addr(A)).unwrap();
    let init = p.a.poll_transmit().unwrap();
    p.b.handle_datagram(p.now, init.remote, init.local, &init.data);
    let resp = p.b.poll_transmit().unwrap();
    p.a.handle_datagram(p.now, resp.remote, resp.local, &resp.data);
    let inter = p.a.poll_transmit().expect("A's IKE_INTERMEDIATE");
    // B's keys of IKE_SA_INIT, which protect its IKE_INTERMEDIATE response.
    let sa = p.b.sas().next().unwrap();
    let b_spi = sa.local_spi();
    let suite = sa.suite().unwrap();
    let k = sa.keys().unwrap();
    let seal = SkCipher::with_integ(suite.encr, suite.integ, &k.sk_er, &k.sk_ar).unwrap();
    p.b.handle_datagram(p.now, inter.remote, inter.local, &inter.data);
    let answer = p.b.poll_transmit().expect("B's IKE_INTERMEDIATE response");
    let m = message::decode(&answer.data, Some(&seal)).unwrap();
    let mut payloads = m.payloads.clone();
    let Payload::Ke { data, .. } = &mut payloads[0] else {
        panic!("{payloads:?}")
    };
    data[100] ^= 0x40;
    let forged = message::encode_encrypted(&m.header, &payloads, &seal, 1234u64.to_be_bytes());
    p.a.handle_datagram(p.now, answer.remote, answer.local, &forged);
    p.pump();
    assert_eq!(
        p.b.sa_drops(b_spi).get(DropReason::Integrity),
        1,
        "B cannot read A's IKE_AUTH"
    );
    for _ in 0..8 {
        p.tick();
    }
    assert_eq!(count(&p.ev_a, is_ike_up) + count(&p.ev_b, is_ike_up), 0);
    let r = down_reason(&p.ev_a).expect("A gives up");
    assert!(r.contains("did not answer"), "{r}");
}
