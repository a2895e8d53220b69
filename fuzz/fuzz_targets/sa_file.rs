//! Arbitrary text as an SA file: an error or a valid list, never a panic, and no error message
//! may contain the key material.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dataplane::sa::file::parse(text, "fuzz.toml");
    }
});
