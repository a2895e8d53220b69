//! Arbitrary bytes through the IKE message codec: as a datagram without keys, as one with an SK
//! cipher of fixed keys (the first byte picks the suite: AES-GCM, ChaCha20-Poly1305 or AES-CBC
//! with HMAC-SHA2) (outer payloads, then an SK payload whose ICV fails), and sealed under
//! that cipher so the inner payload chain and the padding are what the fuzzer controls. Every
//! message that decodes must encode and decode again to the same header fields and payloads.
#![no_main]

use control::ike::message::{decode, encode_encrypted, encode_plain, Header, Message};
use libfuzzer_sys::fuzz_target;

#[path = "ike_support.rs"]
mod support;

/// The header without the fields the encoder fills in.
fn fields(h: &Header) -> Header {
    Header {
        next_payload: 0,
        length: 0,
        ..*h
    }
}

fn same(a: &Message, b: &Message) {
    assert_eq!(fields(&a.header), fields(&b.header));
    assert_eq!(a.payloads, b.payloads);
}

fuzz_target!(|data: &[u8]| {
    let n = usize::from(data.first().copied().unwrap_or(0));
    let sk = &support::cipher(n);
    let other_sk = support::cipher(n + 1);

    // No keys: a plain message (an SK payload is NoKeys).
    if let Ok(m) = decode(data, None) {
        assert!(!m.encrypted);
        let again = decode(&encode_plain(&m.header, &m.payloads), None)
            .expect("an encoded plain message decodes");
        same(&m, &again);
        assert!(!again.encrypted);
    }

    // With keys: outer payloads, then the SK payload's ICV check.
    if let Ok(m) = decode(data, Some(sk)) {
        if !m.encrypted {
            let again = decode(&encode_plain(&m.header, &m.payloads), Some(sk))
                .expect("an encoded plain message decodes");
            same(&m, &again);
        }
    }

    // Sealed: the fuzzer's bytes are the SK payload's plaintext (chain, padding, Pad Length).
    let Some((&inner_next, plain)) = data.split_first() else {
        return;
    };
    let h = support::header(0x0102_0304_0506_0708, 0x1112_1314_1516_1718, 35, 0x08, 1);
    let Some(wire) = support::sealed(h, inner_next, plain, sk, [7; 8]) else {
        return;
    };
    if let Ok(m) = decode(&wire, Some(sk)) {
        assert!(m.encrypted);
        let re = encode_encrypted(&m.header, &m.payloads, sk, [9; 8]);
        let again = decode(&re, Some(sk)).expect("an encoded encrypted message decodes");
        same(&m, &again);
        assert!(again.encrypted);
        // A cipher of another suite and other keys must not open it.
        assert!(decode(&re, Some(&other_sk)).is_err());
    }
});
