//! Engine.IO long-polling payload decoder and query checks: never panic, and whatever decodes
//! re-encodes to a payload that decodes to the same packets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_engineio::{decode_payload, encode_payload, Query};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        let _ = Query::parse(q, data.len() % 2 == 0);
    }
    if let Ok(packets) = decode_payload(&Bytes::copy_from_slice(data)) {
        let again = encode_payload(&packets);
        assert_eq!(decode_payload(&Bytes::from(again)).ok(), Some(packets));
    }
});
