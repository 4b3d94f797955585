//! The cluster bus decoder (security: C5): any bytes another node or a hostile publisher puts
//! on the bus, as a node-protocol envelope (JSON or MessagePack) and as emitter traffic. Never
//! a panic; what decodes re-encodes to something that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_cluster::protocol::{EmitterMessage, Envelope};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data, 1 << 20) {
        let again = env.encode();
        assert!(Envelope::decode(&again, 1 << 24).is_ok(), "a decoded message must re-encode decodably");
    }
    let _ = EmitterMessage::decode_broadcast(data, 1 << 20);
    let _ = EmitterMessage::decode_request(data, 1 << 20);
});
