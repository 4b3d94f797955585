//! Client handshake: arbitrary response bytes through the scanner, parser and validator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_ws_proto::handshake::client::ClientRequest;
use switchboard_ws_proto::handshake::{parse_response, HeadScanner};
use switchboard_ws_proto::Config;

fuzz_target!(|data: &[u8]| {
    let cfg = Config::default();
    let Ok(req) = ClientRequest::new("example.com", "/").and_then(|r| r.protocol("chat")) else { return };
    let mut scanner = HeadScanner::new();
    let Ok(Some(n)) = scanner.scan(data, &cfg) else { return };
    let Ok(resp) = parse_response(&data[..n], &cfg) else { return };
    let _ = req.validate_response(&resp);
});
