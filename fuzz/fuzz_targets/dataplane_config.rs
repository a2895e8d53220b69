//! Arbitrary text as the dataplane daemon's configuration: an error naming the key, or a valid
//! configuration, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dataplane::daemon::DataplaneConfig::parse(text, "fuzz.toml");
    }
});
