//! Header value grammars: extension offers and token lists must parse in linear time and
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_ws_proto::handshake::{parse_extensions, parse_token_list};
use switchboard_ws_proto::handshake::server::normalize_origin;

fuzz_target!(|data: &[u8]| {
    let _ = parse_extensions([data]);
    let _ = parse_token_list([data]);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = normalize_origin(s);
    }
});
