//! Socket.IO decoder: a sequence of text and binary messages (split at 0xff bytes; a leading
//! 0x00 marks a binary one) through the server-side `Decoder`. Never panics; decoded packets
//! re-encode to text that decodes to the same header.
#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_socketio::{Decoder, Limits, Packet};

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
                assert_eq!((again.kind, again.nsp, again.id, again.data), (p.kind, p.nsp, p.id, p.data));
                assert_eq!(n, p.attachments.len());
            }
            Ok(None) => {}
            Err(_) => d = Decoder::new(Limits::default()),
        }
    }
});
