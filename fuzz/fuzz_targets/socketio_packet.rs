//! Socket.IO decoder: a sequence of text and binary messages (split at 0xff bytes; a leading
//! 0x00 marks a binary one) through the server-side `Decoder`. Never panics; decoded packets
//! re-encode to text that decodes to the same header; their arguments, read with their
//! attachments into typed values and a `Value` ([`from_payload`]), and written back with
//! [`to_payload`], keep every attachment exactly once.
#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_socketio::{from_payload, to_payload, Decoder, Limits, Packet};

/// Every placeholder object in `v`, with its index.
fn placeholders<'a>(v: &'a Value, out: &mut Vec<(&'a Value, u64)>) {
    match v {
        Value::Object(o) if o.get("_placeholder") == Some(&Value::Bool(true)) => {
            if let Some(n) = o.get("num").and_then(Value::as_u64) {
                out.push((v, n));
            }
        }
        Value::Object(o) => o.values().for_each(|x| placeholders(x, out)),
        Value::Array(a) => a.iter().for_each(|x| placeholders(x, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(Limits::default());
    let now = Instant::now();
    for msg in data.split(|&b| b == 0xff) {
        let r = match msg.split_first() {
            Some((0, bin)) => d.binary(Bytes::copy_from_slice(bin), now),
            _ => match std::str::from_utf8(msg) {
                Ok(s) => d.text(s, now),
                Err(_) => continue,
            },
        };
        match r {
            Ok(Some(p)) => {
                let text = p.encode();
                let (again, n) = Packet::decode_header(&text, &Limits::default()).unwrap_or_else(|e| panic!("{e}: {text}"));
                assert_eq!((&again.kind, &again.nsp, &again.id, &again.data), (&p.kind, &p.nsp, &p.id, &p.data));
                assert_eq!(n, p.attachments.len());
                if let Some(data) = &p.data {
                    let raw: Value = from_payload(data, &p.attachments).unwrap_or_else(|e| panic!("{e}: {text}"));
                    assert_eq!(&raw, data);
                    // Each placeholder read as bytes is exactly its attachment.
                    let mut found = Vec::new();
                    placeholders(data, &mut found);
                    for (ph, n) in found {
                        let b: Bytes = from_payload(ph, &p.attachments).unwrap_or_else(|e| panic!("{e}: {text}"));
                        let v: Vec<u8> = from_payload(ph, &p.attachments).unwrap_or_else(|e| panic!("{e}: {text}"));
                        assert_eq!(&b[..], &p.attachments[n as usize][..]);
                        assert_eq!(&v[..], &b[..]);
                    }
                    // A Value holds no byte strings: written back unchanged, no attachments.
                    let (again, bins) = to_payload(&raw).unwrap_or_else(|e| panic!("{e}: {text}"));
                    assert_eq!(&again, data);
                    assert!(bins.is_empty());
                }
            }
            Ok(None) => {}
            Err(_) => d = Decoder::new(Limits::default()),
        }
    }
});
