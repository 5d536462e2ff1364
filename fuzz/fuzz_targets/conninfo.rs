//! Connection-string parsing must never panic, whatever the bytes, and must be deterministic.
//! Seeds: `fuzz/corpus/conninfo/` (one file per syntax feature or error).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = pgferry::conn::parse(s);
        if let Err(e) = &parsed {
            // Rendering the error must not panic either.
            let _ = e.to_string();
        }
        assert_eq!(
            parsed,
            pgferry::conn::parse(s),
            "parse is not deterministic"
        );
    }
});
