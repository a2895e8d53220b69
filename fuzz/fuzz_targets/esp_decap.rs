//! Arbitrary packets into the inbound ESP path of a database holding SAs of every kind. The
//! first byte picks a SPI to splice in, so the fuzzer reaches the SA lookup, the replay check
//! and the AEAD, not only the outer parsers.
#![no_main]

use dataplane::esp::decap::decap;
use dataplane::frame::OwnedFrame;
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let mut db = support::inbound_db();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut pkt = rest.to_vec();
    support::splice_spi(&mut pkt, sel);
    let mut f = OwnedFrame::from_packet(&pkt, 64, 0);
    let _ = decap(&mut db, &mut f);
    let mut again = OwnedFrame::from_packet(&pkt, 64, 0);
    let _ = decap(&mut db, &mut again);
});
