//! Unit-suffix parsing (`5k`, `1.5m`, `100kbps`, `0.25s`...): any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpkali_fuzz::units;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for parse in [units::parse_count, units::parse_size, units::parse_bandwidth, units::parse_time] {
            if let Ok(v) = parse(text) {
                assert!(v.is_finite(), "{text:?} parsed to {v}");
                let _ = units::fmt_g(v);
            }
        }
    }
});
