//! The pgoutput decoder on arbitrary bytes, inside and outside a streamed transaction and for
//! both ends of the protocol version range: it must never panic, and whatever it accepts must
//! survive a re-encode unchanged (decode ∘ encode ∘ decode = decode).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgferry::replication::pgoutput::{decode, encode, Bytes, DecodeContext};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    for proto_version in [1, 4] {
        for in_stream in [false, true] {
            let ctx = DecodeContext {
                proto_version,
                in_stream,
            };
            if let Ok(message) = decode(&bytes, &ctx) {
                let again = Bytes::from(encode::message(&message));
                assert_eq!(decode(&again, &ctx).as_ref(), Ok(&message));
            }
        }
    }
});
