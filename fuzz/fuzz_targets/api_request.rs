//! Arbitrary lines as control API requests: parsing and SA conversion refuse or succeed, never
//! panic, and never echo key material in errors.
#![no_main]

use dataplane::api::convert::sa_config;
use dataplane::api::proto::{Envelope, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(env) = serde_json::from_str::<Envelope>(text) {
        if let Request::SaAdd { sa } | Request::SaUpdate { sa } = env.request {
            let _ = sa_config(&sa).map_err(|e| e.to_string());
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = esprit_api::SaSpec::from_json(&v).map_err(|e| e.to_string());
    }
});
