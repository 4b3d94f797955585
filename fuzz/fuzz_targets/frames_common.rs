//! Shared driver of the frame fuzz targets: the first bytes choose the read size and when
//! timers fire (and, by its top bit, whether permessage-deflate is on: then compressed
//! messages and corrupt deflate streams are exercised too); the rest is the wire input.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard_ws_proto::deflate::{Deflate, DeflateConfig};
use switchboard_ws_proto::handshake::parse_extensions;
use switchboard_ws_proto::{Config, Connection, Message, ReadyState, Role};

pub fn run(role: Role, data: &[u8]) {
    let [step, tick, rest @ ..] = data else { return };
    let step = usize::from(*step).max(1);
    let cfg = Config::default()
        .with_max_frame_size(4096)
        .with_max_message_size(8192)
        .with_max_fragments(32)
        .with_ping_interval(Some(Duration::from_secs(1)));
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = Connection::new(role, cfg, t0);
    if tick & 0x80 != 0 {
        let dc = DeflateConfig::default();
        let offer = parse_extensions([dc.client_offer().as_bytes()]).unwrap_or_default();
        if let Some(agreed) = dc.negotiate_server(&offer) {
            c = c.with_extension(Box::new(Deflate::new(agreed, role == Role::Server, &dc)));
        }
    }
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let mut saw_close = false;
    for (i, chunk) in rest.chunks(step).enumerate() {
        buf.extend_from_slice(chunk);
        loop {
            match c.read(&mut buf, now) {
                Ok(Some(m)) => {
                    assert!(!saw_close, "a message after the peer's Close");
                    if let Message::Text(t) = &m {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    }
                    if let Message::Close(_) = m {
                        saw_close = true;
                    }
                    assert!(m.as_payload().len() <= 8192);
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.close_code();
                    break;
                }
            }
        }
        if i % usize::from(*tick & 0x7f).max(1) == 0 {
            now += Duration::from_millis(700);
            let _ = c.handle_timeout(now);
        }
        out.clear();
        c.poll_transmit(&mut out);
        // Owed output is a few control frames at most: pong, ping, close.
        assert!(out.len() <= 3 * (14 + 125));
        if c.ready_state() == ReadyState::Closed {
            assert!(c.send_text("x", &mut out).is_err());
        }
    }
}
