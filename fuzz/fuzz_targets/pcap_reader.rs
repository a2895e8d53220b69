//! Arbitrary bytes as a capture file (pcap or pcapng): the reader refuses or reads records,
//! never panics and never allocates beyond its record limit.
#![no_main]

use dataplane::pcap::{Reader, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = Reader::new(data) {
        let mut rec = Record::default();
        let mut n = 0;
        while let Ok(true) = r.next_into(&mut rec) {
            assert!(rec.data.len() <= dataplane::pcap::MAX_RECORD as usize);
            n += 1;
            if n > 100_000 {
                break;
            }
        }
    }
});
