//! Arbitrary datagrams into IKE endpoints with one PSK connection; nothing may panic. The first
//! byte chooses what happens (bits 0-1 the scenario):
//!
//! 0. the input is an IKE_SA_INIT request from the peer's address, then, with its SPIs set to
//!    those of whatever IKE SA the responder has, a second datagram;
//! 1. a genuine IKE_SA_INIT request (from a seeded initiator) makes a half-open SA, then the
//!    input goes to it;
//! 2. a genuine IKE_SA_INIT and IKE_AUTH make an established SA with its child, then the input
//!    goes to it;
//! 3. the initiator's side: the input is the IKE_SA_INIT response, or (after genuine ones) the
//!    IKE_AUTH response.
//!
//! "The input goes to the SA" either as it is with the SPIs patched (bit 2), or as the inner
//! payload chain of an SK payload sealed with the SA's real keys, so the fuzzer reaches the
//! exchanges' payload handling: bits 3-4 pick the exchange (IKE_AUTH, CREATE_CHILD_SA,
//! INFORMATIONAL, and IKE_INTERMEDIATE or, on an established SA, IKE_FOLLOWUP_KE), bit 5 the next message ID, bit 6 the Response flag, bit 7 sends it twice.
//! Afterwards both endpoints exchange what they have to say and their timers run. The input's
//! length modulo 3 picks the suites the endpoints prefer (AES-GCM, ChaCha20-Poly1305 or
//! AES-CBC with HMAC-SHA2), so the SK payloads of every cipher are fuzzed; with
//! ChaCha20-Poly1305 an ML-KEM-512 additional key exchange runs in IKE_INTERMEDIATE first (its
//! keys come from aws-lc's own randomness, so those runs are not bit-for-bit repeatable).
#![no_main]

use control::ike::message::consts::{exchange, flags};
use control::ike::rng::SeededRandom;
use control::ike::session::{Endpoint, EndpointSettings};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "ike_support.rs"]
mod support;

use support::{addr, A, B};

fn endpoint(initiator: bool, prefer: usize) -> Endpoint {
    let mut e = Endpoint::new(
        vec![Arc::new(support::conn_preferring(initiator, prefer))],
        EndpointSettings::default(),
        Box::new(SeededRandom::new(if initiator { 1 } else { 2 })),
    );
    e.set_unix_time(1_800_000_000);
    e
}

/// Hand `from`'s datagrams to `to`; whether there were any.
fn deliver(from: &mut Endpoint, to: &mut Endpoint, now: Instant) -> bool {
    let mut any = false;
    while let Some(t) = from.poll_transmit() {
        any = true;
        to.handle_datagram(now, t.remote, t.local, &t.data);
    }
    any
}

fn drain_events(e: &mut Endpoint) {
    while e.poll_event().is_some() {}
}

/// What the first byte asks for the datagram to an SA.
struct Shape {
    plain: bool,
    exchange: control::ike::message::ExchangeType,
    next_id: bool,
    response: bool,
    twice: bool,
}

/// Send `input` to the first IKE SA of `to` (from `peer` to `local`), shaped as asked and
/// sealed with the peer's key of that SA (SK_er if `to` initiated it, else SK_ei).
fn to_sa(
    to: &mut Endpoint,
    input: &[u8],
    shape: &Shape,
    first_id: u32,
    we_initiated: bool,
    now: Instant,
    (local, peer): (SocketAddr, SocketAddr),
) {
    let Some(sa) = to.sas().next() else {
        return;
    };
    let (spi_i, spi_r) = sa.spis();
    let wire = if shape.plain {
        let mut d = input.to_vec();
        support::patch_spis(&mut d, spi_i, spi_r);
        d
    } else {
        let Some(keys) = sa.keys() else {
            return;
        };
        let Some((&inner_next, plain)) = input.split_first() else {
            return;
        };
        let Some(suite) = sa.suite() else {
            return;
        };
        let sk = if we_initiated {
            support::cipher_of(suite, &keys.sk_er, &keys.sk_ar)
        } else {
            support::cipher_of(suite, &keys.sk_ei, &keys.sk_ai)
        };
        let mut f = if we_initiated { 0 } else { flags::INITIATOR };
        if shape.response {
            f |= flags::RESPONSE;
        }
        let id = first_id + u32::from(shape.next_id);
        let h = support::header(spi_i, spi_r, shape.exchange.0, f, id);
        let mut iv = [0u8; 8];
        iv[4..].copy_from_slice(&id.to_be_bytes());
        // Counter values of the fuzzer's messages stay clear of the real ones.
        iv[0] = 0x80;
        let Some(w) = support::sealed(h, inner_next, plain, &sk, iv) else {
            return;
        };
        w
    };
    to.handle_datagram(now, local, peer, &wire);
    if shape.twice {
        to.handle_datagram(now, local, peer, &wire);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let (a, b) = (addr(A), addr(B));
    let mut init = endpoint(true, data.len());
    let mut resp = endpoint(false, data.len());
    let shape = Shape {
        plain: sel & 0x04 != 0,
        exchange: [
            exchange::IKE_AUTH,
            exchange::CREATE_CHILD_SA,
            exchange::INFORMATIONAL,
            // IKE_INTERMEDIATE before IKE_AUTH, IKE_FOLLOWUP_KE once established.
            if sel & 3 == 2 {
                exchange::IKE_FOLLOWUP_KE
            } else {
                exchange::IKE_INTERMEDIATE
            },
        ][usize::from(sel >> 3) & 3],
        next_id: sel & 0x20 != 0,
        response: sel & 0x40 != 0,
        twice: sel & 0x80 != 0,
    };
    match sel & 3 {
        0 => {
            resp.handle_datagram(now, b, a, input);
            let plain = Shape {
                plain: true,
                ..shape
            };
            to_sa(&mut resp, input, &plain, 0, false, now, (b, a));
        }
        1 | 2 => {
            init.initiate(now, "fuzz", None, a).unwrap();
            deliver(&mut init, &mut resp, now);
            let mut first_id = 1;
            if sel & 3 == 2 {
                // IKE_SA_INIT, any IKE_INTERMEDIATE exchanges, IKE_AUTH.
                for _ in 0..8 {
                    if !(deliver(&mut resp, &mut init, now) | deliver(&mut init, &mut resp, now)) {
                        break;
                    }
                }
                let rounds = resp
                    .sas()
                    .next()
                    .and_then(|s| s.suite())
                    .map_or(0, |s| s.rounds().len());
                first_id = 2 + rounds as u32;
            }
            to_sa(&mut resp, input, &shape, first_id, false, now, (b, a));
        }
        _ => {
            init.initiate(now, "fuzz", None, a).unwrap();
            if shape.plain {
                let spi_i = init.sas().next().map_or(0, |s| s.local_spi());
                let mut d = input.to_vec();
                if d.len() >= 8 {
                    d[..8].copy_from_slice(&spi_i.to_be_bytes());
                }
                init.poll_transmit();
                init.handle_datagram(now, a, b, &d);
            } else {
                deliver(&mut init, &mut resp, now);
                deliver(&mut resp, &mut init, now);
                // The initiator's IKE_AUTH request stays unanswered; the input answers it.
                while init.poll_transmit().is_some() {}
                let answer = Shape {
                    response: !shape.response,
                    ..shape
                };
                to_sa(&mut init, input, &answer, 1, true, now, (a, b));
            }
        }
    }
    // Let the two talk about it for a while, then run their timers.
    for _ in 0..8 {
        let moved = deliver(&mut resp, &mut init, now) | deliver(&mut init, &mut resp, now);
        if !moved {
            break;
        }
    }
    for later in [5u64, 40, 400] {
        let t = now + Duration::from_secs(later);
        init.handle_timeout(t);
        resp.handle_timeout(t);
        while init.poll_transmit().is_some() {}
        while resp.poll_transmit().is_some() {}
    }
    drain_events(&mut init);
    drain_events(&mut resp);
});
