//! Arbitrary IP packets through encrypt then decrypt with every SA kind: whatever encrypts must
//! decrypt to the same bytes (trimmed to the IP length), and nothing may panic.
#![no_main]

use dataplane::esp::decap::decap;
use dataplane::esp::Verdict;
use dataplane::frame::OwnedFrame;
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let i = usize::from(sel) % support::SPIS.len();
    let mut tx = support::outbound_db(i);
    let mut rx = support::inbound_db();
    let mut frames = [OwnedFrame::from_packet(pkt, 128, 64)];
    let mut v = [Verdict::Pass];
    tx.encrypt_batch(&mut frames, &mut v);
    if v[0] != Verdict::Pass {
        return;
    }
    let info_len = dataplane::esp::encap::inner_info(pkt)
        .map(|i| i.len)
        .unwrap();
    let r = decap(&mut rx, &mut frames[0]);
    match r {
        Ok(_) => assert_eq!(frames[0].data(), &pkt[..info_len]),
        // Transport mode carries whatever header chain the packet had; the receiver may refuse
        // what the sender accepted (for instance an IPv6 chain it cannot walk), but only as a
        // counted drop.
        Err(Verdict::Drop(_)) => {}
        Err(other) => panic!("unexpected verdict {other:?}"),
    }
});
