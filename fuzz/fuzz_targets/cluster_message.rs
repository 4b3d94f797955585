//! The cluster bus decoder (security: C5): any bytes another node or a hostile publisher puts
//! on the bus, as a node-protocol envelope (JSON or MessagePack), as emitter traffic, and as a
//! recovery log entry (a Redis stream entry's or a JetStream message's `data`, JSON or base64
//! MessagePack, and the stream entry ID). Never a panic; what decodes re-encodes to something
//! that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_cluster::protocol::{decode_stream_entry, encode_stream_data, EmitterMessage, Envelope};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data, 1 << 20) {
        let again = env.encode();
        assert!(Envelope::decode(&again, 1 << 24).is_ok(), "a decoded message must re-encode decodably");
    }
    let _ = EmitterMessage::decode_broadcast(data, 1 << 20);
    let _ = EmitterMessage::decode_request(data, 1 << 20);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = switchboard_cluster::streams::entry_key(text);
        let (kind, rest) = match text.strip_prefix('4') {
            Some(rest) => ("4", rest),
            None => ("3", text),
        };
        if let Ok(env) = decode_stream_entry("uid", "/", kind, rest, 1 << 20) {
            let again = encode_stream_data("/", &env.msg);
            assert!(
                decode_stream_entry("uid", "/", kind, &again, 1 << 24).is_ok(),
                "a decoded log entry must re-encode decodably"
            );
        }
    }
});
