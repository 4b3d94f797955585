//! Server handshake: arbitrary bytes, fed in arbitrary pieces, through the head scanner, the
//! request parser and the validator. Must never panic; the error must map to a status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_ws_proto::handshake::server::{accept_response, error_response, validate_request, OriginPolicy};
use switchboard_ws_proto::handshake::{parse_request, HeadScanner};
use switchboard_ws_proto::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else { return };
    let step = usize::from(step).max(1);
    let cfg = Config::default().with_max_header_bytes(4096).with_max_headers(16);
    let mut scanner = HeadScanner::new();
    let mut end = 0;
    let head = loop {
        end = (end + step).min(data.len());
        match scanner.scan(&data[..end], &cfg) {
            Ok(Some(n)) => break &data[..n],
            Ok(None) if end == data.len() => return,
            Ok(None) => {}
            Err(e) => {
                let _ = error_response(&e);
                return;
            }
        }
    };
    let Ok(req) = parse_request(head, &cfg) else { return };
    let policy = OriginPolicy::allow_list(["https://a.example"]);
    match validate_request(&req, &policy) {
        Ok(up) => {
            let _ = accept_response(&up, up.protocols.first().map(String::as_str), None, &Default::default());
        }
        Err(e) => {
            let _ = e.status();
        }
    }
});
