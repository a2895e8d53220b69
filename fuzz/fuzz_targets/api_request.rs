//! Arbitrary lines as control API requests: parsing and SA conversion refuse or succeed, never
//! panic, and never echo key material in errors.
#![no_main]

use dataplane::api::proto::{parse_spi, sa_from_json, Envelope, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(env) = serde_json::from_str::<Envelope>(text) {
        match env.request {
            Request::SaAdd { sa } | Request::SaUpdate { sa } => {
                let _ = sa_from_json(&sa);
            }
            Request::SaDelete { spi, .. } => {
                let _ = parse_spi(&spi);
            }
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = sa_from_json(&v);
    }
});
