//! State-machine tests, named after the rows of the security table (docs/security.md) they cover.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::extension::DecodeError;
use crate::frame::{RSV1, RSV2, RSV3};

const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

/// A raw frame; masked with `KEY` when `masked`.
fn frame(fin: bool, rsv: u8, op: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut v = vec![(if fin { 0x80 } else { 0 }) | rsv | op];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n <= 0xFFFF => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        v.extend_from_slice(&KEY);
        let start = v.len();
        v.extend_from_slice(payload);
        crate::mask::apply_mask(&mut v[start..], KEY, 0);
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// A client frame (masked), as a server receives it.
fn cf(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, op, payload, true)
}

fn server() -> Connection {
    Connection::new(Role::Server, Config::default().with_ping_interval(None), Instant::now())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default().with_ping_interval(None), Instant::now())
}

/// Feeds `bytes` and collects every message until an error or the input runs dry.
fn feed(c: &mut Connection, bytes: &[u8]) -> (Vec<Message>, Option<ProtocolError>) {
    let mut buf = BytesMut::from(bytes);
    let mut msgs = Vec::new();
    loop {
        match c.read(&mut buf, Instant::now()) {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => return (msgs, None),
            Err(e) => return (msgs, Some(e)),
        }
    }
}

/// The close code in the Close frame the connection queued, if any.
fn queued_close_code(c: &mut Connection) -> Option<u16> {
    let mut out = BytesMut::new();
    c.poll_transmit(&mut out);
    let mut out = out.freeze();
    // Walk the unmasked (server) or masked (client) frames and return the Close's code.
    while out.len() >= 2 {
        let (h, n) = FrameHeader::parse(&out).ok().flatten()?;
        let mut p = out.slice(n..n + h.payload_len as usize).to_vec();
        if let Some(k) = h.mask {
            crate::mask::apply_mask(&mut p, k, 0);
        }
        if h.opcode == OpCode::Close {
            return (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
        }
        out = out.slice(n + h.payload_len as usize..);
    }
    None
}

fn expect_fail(c: &mut Connection, bytes: &[u8], code: u16) {
    let (_, err) = feed(c, bytes);
    let err = err.unwrap_or_else(|| panic!("expected an error for {bytes:?}"));
    assert_eq!(err.close_code().0, code, "{err}");
    assert_eq!(queued_close_code(c), Some(code));
    assert!(c.should_close_transport() || c.ready_state() != ReadyState::Open);
}

#[test]
fn roundtrip_client_to_server_all_sizes() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let mut c = client();
        let mut s = server();
        let mut wire = BytesMut::new();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        c.send_binary(&data, &mut wire).unwrap();
        let text = "é".repeat(len / 2);
        c.send_text(&text, &mut wire).unwrap();
        let (msgs, err) = feed(&mut s, &wire);
        assert!(err.is_none());
        assert_eq!(msgs, vec![Message::Binary(data.into()), Message::text(text)]);
    }
}

#[test]
fn server_frames_are_unmasked_client_frames_masked() {
    let mut s = server();
    let mut out = BytesMut::new();
    s.send_text("hi", &mut out).unwrap();
    assert_eq!(&out[..], &[0x81, 0x02, b'h', b'i']);
    let mut c = client();
    let mut out = BytesMut::new();
    c.send_text("hi", &mut out).unwrap();
    assert_eq!(out[1], 0x80 | 2);
}

#[test]
fn f1_unmasked_client_frame_is_1002() {
    expect_fail(&mut server(), &frame(true, 0, 1, b"hi", false), 1002);
}

#[test]
fn f2_masked_server_frame_is_1002_on_client() {
    expect_fail(&mut client(), &frame(true, 0, 1, b"hi", true), 1002);
}

#[test]
fn f3_mask_keys_are_fresh_and_unbiased() {
    let mut c = client();
    let n = 1_000_000u32;
    let mut keys = std::collections::HashSet::with_capacity(n as usize);
    let mut ones = [0u32; 32];
    let mut out = BytesMut::with_capacity(16);
    for _ in 0..n {
        out.clear();
        c.send_binary(&[], &mut out).unwrap();
        let k = u32::from_be_bytes([out[2], out[3], out[4], out[5]]);
        keys.insert(k);
        for (b, o) in ones.iter_mut().enumerate() {
            *o += (k >> b) & 1;
        }
    }
    // Birthday bound for 10^6 draws from 2^32: about 116 repeats expected.
    let repeats = n as usize - keys.len();
    assert!(repeats < 400, "{repeats} repeated keys");
    for (b, o) in ones.iter().enumerate() {
        let f = *o as f64 / n as f64;
        assert!((0.49..0.51).contains(&f), "bit {b} set in {f:.4} of keys");
    }
}

#[test]
fn f4_rsv_bits_without_extension_are_1002() {
    for rsv in [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3] {
        expect_fail(&mut server(), &frame(true, rsv, 1, b"x", true), 1002);
        expect_fail(&mut client(), &frame(true, rsv, 2, b"x", false), 1002);
        // And on control frames.
        expect_fail(&mut server(), &frame(true, rsv, 9, b"", true), 1002);
    }
}

#[test]
fn f5_reserved_opcodes_are_1002_and_later_pings_get_no_pong() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut s = server();
        let mut input = frame(true, 0, op, b"", true);
        input.extend(cf(true, 9, b"late"));
        let (msgs, err) = feed(&mut s, &input);
        assert!(msgs.is_empty());
        assert_eq!(err.map(|e| e.close_code().0), Some(1002));
        let mut out = BytesMut::new();
        s.poll_transmit(&mut out);
        assert_eq!(out[0], 0x88, "only a Close goes out, no pong");
        let (msgs, err) = feed(&mut s, &cf(true, 9, b"later"));
        assert!(msgs.is_empty() && err.is_none());
        assert!(!s.wants_transmit());
    }
}

#[test]
fn f6_f7_control_frame_rules() {
    for op in [8u8, 9, 10] {
        expect_fail(&mut server(), &cf(true, op, &[b'x'; 126]), 1002);
    }
    expect_fail(&mut server(), &cf(false, 9, b""), 1002);
    expect_fail(&mut server(), &cf(false, 10, b""), 1002);
    expect_fail(&mut server(), &cf(false, 8, b""), 1002);
}

#[test]
fn f8_fragmentation_state_errors() {
    expect_fail(&mut server(), &cf(true, 0, b"x"), 1002);
    expect_fail(&mut server(), &cf(false, 0, b"x"), 1002);
    let mut both = cf(false, 1, b"a");
    both.extend(cf(true, 1, b"b"));
    expect_fail(&mut server(), &both, 1002);
    let mut both = cf(false, 2, b"a");
    both.extend(cf(false, 2, b"b"));
    expect_fail(&mut server(), &both, 1002);
}

#[test]
fn f9_control_frames_between_fragments() {
    let mut s = server();
    let mut input = cf(false, 1, b"frag1 ");
    input.extend(cf(true, 9, b"ping!"));
    input.extend(cf(false, 0, b"frag2 "));
    input.extend(cf(true, 10, b"unsolicited"));
    input.extend(cf(true, 0, b"frag3"));
    // Everything but the last 3 bytes: the ping and pong surface, the message stays open.
    let mut buf = BytesMut::from(&input[..input.len() - 3]);
    let mut msgs = Vec::new();
    while let Some(m) = s.read(&mut buf, Instant::now()).unwrap() {
        msgs.push(m);
    }
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0], Message::Ping(Bytes::from_static(b"ping!")));
    let mut out = BytesMut::new();
    assert!(s.poll_transmit(&mut out), "pong is owed before the message completes");
    assert_eq!(&out[..], &[0x8A, 5, b'p', b'i', b'n', b'g', b'!']);
    buf.extend_from_slice(&input[input.len() - 3..]);
    assert_eq!(s.read(&mut buf, Instant::now()), Ok(Some(Message::text("frag1 frag2 frag3"))));
}

#[test]
fn f10_length_overflow_fails_before_allocating() {
    let mut v = vec![0x82, 0x80 | 127];
    v.extend_from_slice(&(1u64 << 63).to_be_bytes());
    v.extend_from_slice(&KEY);
    expect_fail(&mut server(), &v, 1002);
    let mut v = vec![0x82, 0x80 | 127];
    v.extend_from_slice(&(1u64 << 53).to_be_bytes());
    v.extend_from_slice(&KEY);
    expect_fail(&mut server(), &v, 1009);
}

#[test]
fn f11_declared_length_is_never_preallocated() {
    let cfg = Config::default().with_ping_interval(None);
    let mut s = Connection::new(Role::Server, cfg.clone(), Instant::now());
    let mut v = vec![0x82, 0x80 | 127];
    v.extend_from_slice(&((cfg.max_frame_size - 1) as u64).to_be_bytes());
    v.extend_from_slice(&KEY);
    v.push(0x55);
    let mut buf = BytesMut::from(&v[..]);
    let cap = buf.capacity();
    assert_eq!(s.read(&mut buf, Instant::now()), Ok(None));
    assert_eq!(buf.capacity(), cap, "read() reserved memory for the declared length");
    assert_eq!(buf.len(), v.len(), "partial frame left untouched");
}

#[test]
fn f12_oversized_frame_is_1009_from_the_header_alone() {
    let cfg = Config::default().with_ping_interval(None).with_max_frame_size(1000);
    let mut s = Connection::new(Role::Server, cfg, Instant::now());
    let mut v = vec![0x82, 0x80 | 126];
    v.extend_from_slice(&1001u16.to_be_bytes());
    v.extend_from_slice(&KEY);
    expect_fail(&mut s, &v, 1009);
    // Exactly at the limit passes.
    let cfg = Config::default().with_ping_interval(None).with_max_frame_size(1000);
    let mut s = Connection::new(Role::Server, cfg, Instant::now());
    let (m, e) = feed(&mut s, &cf(true, 2, &[0; 1000]));
    assert!(e.is_none() && m.len() == 1);
}

#[test]
fn f13_reassembled_message_over_the_cap_is_1009() {
    let cfg = Config::default().with_ping_interval(None).with_max_message_size(1000);
    let mut s = Connection::new(Role::Server, cfg, Instant::now());
    let mut input = Vec::new();
    for _ in 0..3 {
        input.extend(cf(false, if input.is_empty() { 2 } else { 0 }, &[0; 300]));
    }
    // 900 so far; the next 200-byte fragment crosses 1000.
    input.extend(cf(false, 0, &[0; 200]));
    let (_, err) = feed(&mut s, &input);
    assert_eq!(err, Some(ProtocolError::MessageTooLarge { limit: 1000 }));
    assert_eq!(queued_close_code(&mut s), Some(1009));
    // Exactly at the cap passes.
    let cfg = Config::default().with_ping_interval(None).with_max_message_size(1000);
    let mut s = Connection::new(Role::Server, cfg, Instant::now());
    let mut input = cf(false, 2, &[1; 500]);
    input.extend(cf(true, 0, &[1; 500]));
    let (m, e) = feed(&mut s, &input);
    assert!(e.is_none());
    assert_eq!(m[0].as_payload().len(), 1000);
}

#[test]
fn f14_f15_fragment_floods_are_1008() {
    // 100 frames free, then one more per 10 bytes received.
    let cfg = Config::default().with_ping_interval(None).with_max_fragments(100).with_min_fragment_average(10);
    // One-byte fragments: frame n is allowed while n <= 100 + n / 10, so frame 112 is refused.
    let mut s = Connection::new(Role::Server, cfg.clone(), Instant::now());
    let mut input = cf(false, 2, b"x");
    for _ in 0..200 {
        input.extend(cf(false, 0, b"x"));
    }
    let (_, err) = feed(&mut s, &input);
    assert_eq!(err, Some(ProtocolError::TooManyFragments { frames: 112, bytes: 112 }));
    assert_eq!(queued_close_code(&mut s), Some(1008));
    // Empty continuations count too, and earn nothing.
    let mut s = Connection::new(Role::Server, cfg.clone(), Instant::now());
    let mut input = cf(false, 1, b"");
    for _ in 0..200 {
        input.extend(cf(false, 0, b""));
    }
    let (_, err) = feed(&mut s, &input);
    assert_eq!(err, Some(ProtocolError::TooManyFragments { frames: 101, bytes: 0 }));
    assert_eq!(queued_close_code(&mut s), Some(1008));
    // Fragments of 10 bytes pay for themselves: 1,000 of them pass.
    let mut s = Connection::new(Role::Server, cfg.clone(), Instant::now());
    let mut input = cf(false, 2, &[7; 10]);
    for i in 1..1000 {
        input.extend(cf(i == 999, 0, &[7; 10]));
    }
    let (m, err) = feed(&mut s, &input);
    assert_eq!(err, None);
    assert_eq!(m[0].as_payload().len(), 10_000);
    // min_fragment_average 0: max_fragments is a plain cap.
    let mut s = Connection::new(Role::Server, cfg.with_min_fragment_average(0), Instant::now());
    let (_, err) = feed(&mut s, &input);
    assert_eq!(err, Some(ProtocolError::TooManyFragments { frames: 101, bytes: 1010 }));
}

#[test]
fn f14_fragments_of_a_legal_message_are_accepted_at_the_defaults() {
    // Autobahn 9.3.1 / 9.4.1: 4 MiB in 65,536 fragments of 64 B, with the default limits.
    let payload: Vec<u8> = (0..4usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    for (op, size) in [(1u8, 64usize), (2, 64), (1, 4096), (2, 1 << 20)] {
        let mut s = Connection::new(Role::Server, Config::default().with_ping_interval(None), Instant::now());
        let mut input = Vec::with_capacity(payload.len() + payload.len() / size * 8);
        for (i, chunk) in payload.chunks(size).enumerate() {
            let fin = (i + 1) * size >= payload.len();
            input.extend(cf(fin, if i == 0 { op } else { 0 }, chunk));
        }
        let (m, e) = feed(&mut s, &input);
        assert!(e.is_none(), "{size} B fragments: {e:?}");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].as_payload(), &payload[..]);
    }
    // A flood of one-byte fragments is stopped after about a thousand frames: frame n is
    // allowed while n <= 1024 + n / 16, so frame 1093 is refused.
    let mut s = Connection::new(Role::Server, Config::default().with_ping_interval(None), Instant::now());
    let mut input = cf(false, 2, b"x");
    for _ in 0..300_000 {
        input.extend(cf(false, 0, b"x"));
    }
    let (_, err) = feed(&mut s, &input);
    assert_eq!(err, Some(ProtocolError::TooManyFragments { frames: 1093, bytes: 1093 }));
}

#[test]
fn f15_message_assembly_timeout_is_1008() {
    let t0 = Instant::now();
    let cfg = Config::default().with_ping_interval(None).with_message_timeout(Some(Duration::from_secs(5)));
    let mut s = Connection::new(Role::Server, cfg, t0);
    let mut buf = BytesMut::from(&cf(false, 2, b"start")[..]);
    assert_eq!(s.read(&mut buf, t0), Ok(None));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(s.handle_timeout(t0 + Duration::from_secs(4)), Ok(()));
    assert_eq!(s.handle_timeout(t0 + Duration::from_secs(5)), Err(ProtocolError::MessageTimeout));
    assert_eq!(queued_close_code(&mut s), Some(1008));
}

#[test]
fn f16_invalid_utf8_single_and_across_fragments() {
    // Single frame.
    expect_fail(&mut server(), &cf(true, 1, b"\xce\xba\xed\xa0\x80"), 1007);
    // Fail fast: the first (non-final) fragment already holds an invalid byte.
    let mut s = server();
    let (_, err) = feed(&mut s, &cf(false, 1, b"ok \xff"));
    assert_eq!(err, Some(ProtocolError::InvalidUtf8));
    // A valid character split across fragments is fine.
    let euro = "€".as_bytes();
    let mut input = cf(false, 1, &euro[..1]);
    input.extend(cf(false, 0, &euro[1..2]));
    input.extend(cf(true, 0, &euro[2..]));
    let (m, e) = feed(&mut server(), &input);
    assert!(e.is_none());
    assert_eq!(m, vec![Message::text("€")]);
    // Invalid bytes split across fragments: caught at the fragment that completes them.
    let mut input = cf(false, 1, b"\xed");
    input.extend(cf(false, 0, b"\xa0\x80"));
    expect_fail(&mut server(), &input, 1007);
    // Truncated at the end of the message.
    let mut input = cf(false, 1, b"a");
    input.extend(cf(true, 0, &euro[..2]));
    expect_fail(&mut server(), &input, 1007);
}

#[test]
fn f17_close_frames_validated_and_echoed() {
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
        let mut s = server();
        let (m, e) = feed(&mut s, &cf(true, 8, &code.to_be_bytes()));
        assert!(e.is_none(), "{code}");
        assert!(matches!(&m[..], [Message::Close(Some(f))] if f.code.0 == code));
        assert_eq!(queued_close_code(&mut s), Some(code), "echo {code}");
        assert_eq!(s.ready_state(), ReadyState::Closed);
        assert!(s.should_close_transport(), "server closes TCP first");
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        expect_fail(&mut server(), &cf(true, 8, &code.to_be_bytes()), 1002);
    }
    expect_fail(&mut server(), &cf(true, 8, &[0x03]), 1002);
    expect_fail(&mut server(), &cf(true, 8, b"\x03\xe8\xff\xfe"), 1007);
    // An empty Close is answered with an empty Close.
    let mut s = server();
    let (m, _) = feed(&mut s, &cf(true, 8, b""));
    assert_eq!(m, vec![Message::Close(None)]);
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    assert_eq!(&out[..], &[0x88, 0x00]);
}

#[test]
fn f18_closing_handshake_data_after_close_and_timeout() {
    let t0 = Instant::now();
    let cfg = Config::default().with_ping_interval(None).with_close_timeout(Duration::from_secs(2));
    // We close; the peer sends data, then never answers.
    let mut s = Connection::new(Role::Server, cfg.clone(), t0);
    s.close_with(CloseCode::NORMAL, "bye", t0).unwrap();
    assert_eq!(s.ready_state(), ReadyState::Closing);
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    assert_eq!(&out[..4], &[0x88, 5, 0x03, 0xe8]);
    assert_eq!(s.send_text("late", &mut out), Err(SendError::Closed), "nothing after Close");
    assert_eq!(s.ping(b"", &mut out), Err(SendError::Closed));
    // Data frames after our Close are still parsed until the peer's Close.
    let (m, e) = feed(&mut s, &cf(true, 1, b"in flight"));
    assert!(e.is_none() && m.len() == 1);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    s.handle_timeout(t0 + Duration::from_secs(2)).unwrap();
    assert!(s.should_close_transport());
    // Peer answers: handshake complete; anything after its Close is ignored.
    let mut s = Connection::new(Role::Server, cfg.clone(), t0);
    s.close_with(CloseCode::NORMAL, "", t0).unwrap();
    s.poll_transmit(&mut BytesMut::new());
    let mut input = cf(true, 8, &1000u16.to_be_bytes());
    input.extend(cf(true, 1, b"after close"));
    let (m, e) = feed(&mut s, &input);
    assert!(e.is_none());
    assert_eq!(m.len(), 1, "data after Close ignored");
    assert!(s.should_close_transport());
    // Client: after a clean handshake it waits for the server to close TCP, then gives up.
    let mut c = Connection::new(Role::Client, cfg, t0);
    c.close_with(CloseCode::NORMAL, "", t0).unwrap();
    c.poll_transmit(&mut BytesMut::new());
    let (m, _) = feed(&mut c, &frame(true, 0, 8, &1000u16.to_be_bytes(), false));
    assert_eq!(m.len(), 1);
    assert_eq!(c.ready_state(), ReadyState::Closed);
    assert!(!c.should_close_transport(), "client waits for the server's TCP close");
    let deadline = c.poll_timeout().unwrap();
    c.handle_timeout(deadline).unwrap();
    assert!(c.should_close_transport());
}

#[test]
fn f19_ping_flood_coalesces_to_latest_pong() {
    let mut s = server();
    let mut input = Vec::new();
    for i in 0..10_000u32 {
        let mut p = vec![0u8; 121];
        p.extend_from_slice(&i.to_be_bytes());
        input.extend(cf(true, 9, &p));
    }
    let (m, e) = feed(&mut s, &input);
    assert!(e.is_none());
    assert_eq!(m.len(), 10_000);
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    assert_eq!(out.len(), 2 + 125, "exactly one pong is owed");
    assert_eq!(&out[out.len() - 4..], &9999u32.to_be_bytes());
}

#[test]
fn f20_control_payload_caps_on_send() {
    let mut c = client();
    let mut out = BytesMut::new();
    assert_eq!(c.ping(&[0; 126], &mut out), Err(SendError::ControlPayloadTooLong(126)));
    assert!(out.is_empty());
    assert!(c.ping(&[0; 125], &mut out).is_ok());
    assert_eq!(
        c.close(Some(CloseFrame { code: CloseCode(1005), reason: Utf8Bytes::new() }), Instant::now()),
        Err(SendError::InvalidCloseCode(1005))
    );
}

#[test]
fn heartbeat_pings_then_fails_with_1011() {
    let t0 = Instant::now();
    let cfg =
        Config::default().with_ping_interval(Some(Duration::from_secs(10))).with_pong_timeout(Duration::from_secs(5));
    let mut c = Connection::new(Role::Client, cfg, t0);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.handle_timeout(t0 + Duration::from_secs(10)).unwrap();
    let mut out = BytesMut::new();
    assert!(c.poll_transmit(&mut out));
    assert_eq!(out[0], 0x89, "a keepalive ping");
    // A pong clears the deadline.
    feed(&mut c, &frame(true, 0, 0xA, b"x", false));
    c.handle_timeout(t0 + Duration::from_secs(16)).unwrap();
    // Next ping at 20 s, then silence.
    c.handle_timeout(t0 + Duration::from_secs(20)).unwrap();
    c.poll_transmit(&mut BytesMut::new());
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(25)));
    assert_eq!(c.handle_timeout(t0 + Duration::from_secs(25)), Err(ProtocolError::PingTimeout));
    assert_eq!(queued_close_code(&mut c), Some(1011));
    assert!(c.should_close_transport());
}

/// A toy extension for the seam: RSV1 marks a message whose bytes are reversed.
#[derive(Debug)]
struct Reverse;

impl Extension for Reverse {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode(&mut self, input: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), DecodeError> {
        if out.len() + input.len() > limit {
            return Err(DecodeError::TooLarge);
        }
        out.extend_from_slice(input);
        if fin {
            out.reverse();
        }
        Ok(())
    }
    fn encode(&mut self, _op: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, String> {
        if payload.len() < 3 {
            return Ok(None);
        }
        out.extend(payload.iter().rev());
        Ok(Some(RSV1))
    }
}

#[test]
fn extension_seam_owns_rsv1_on_first_data_frame_only() {
    let mk = || {
        Connection::new(Role::Server, Config::default().with_ping_interval(None), Instant::now())
            .with_extension(Box::new(Reverse))
    };
    let (m, e) = feed(&mut mk(), &frame(true, RSV1, 1, b"olleh", true));
    assert!(e.is_none());
    assert_eq!(m, vec![Message::text("hello")]);
    // Across fragments: RSV1 on the first only.
    let mut input = frame(false, RSV1, 2, b"cb", true);
    input.extend(frame(true, 0, 0, b"a", true));
    let (m, _) = feed(&mut mk(), &input);
    assert_eq!(m, vec![Message::binary(&b"abc"[..])]);
    // D3: RSV1 on a continuation or a control frame is 1002.
    let mut input = frame(false, RSV1, 2, b"cb", true);
    input.extend(frame(true, RSV1, 0, b"a", true));
    expect_fail(&mut mk(), &input, 1002);
    expect_fail(&mut mk(), &frame(true, RSV1, 9, b"", true), 1002);
    // RSV2 is not the extension's.
    expect_fail(&mut mk(), &frame(true, RSV2, 1, b"x", true), 1002);
    // Size limit enforced while decoding.
    let mut s = Connection::new(
        Role::Server,
        Config::default().with_ping_interval(None).with_max_message_size(4),
        Instant::now(),
    )
    .with_extension(Box::new(Reverse));
    expect_fail(&mut s, &frame(true, RSV1, 2, b"12345", true), 1009);
    // Outgoing: transformed with RSV1 when the extension says so, plain otherwise.
    let mut c = Connection::new(Role::Client, Config::default(), Instant::now()).with_extension(Box::new(Reverse));
    let mut out = BytesMut::new();
    c.send_text("abcd", &mut out).unwrap();
    assert_eq!(out[0], 0x80 | RSV1 | 1);
    let mut s = mk();
    let (m, _) = feed(&mut s, &out);
    assert_eq!(m, vec![Message::text("abcd")]);
    out.clear();
    c.send_text("ab", &mut out).unwrap();
    assert_eq!(out[0], 0x81);
}

#[test]
fn d4_rsv1_without_negotiated_extension_on_the_client_too() {
    expect_fail(&mut client(), &frame(true, RSV1, 1, b"x", false), 1002);
}

#[test]
fn partial_input_byte_by_byte_gives_same_messages() {
    let mut input = cf(true, 1, &"a".repeat(300).into_bytes());
    input.extend(cf(false, 2, b"12"));
    input.extend(cf(true, 9, b"p"));
    input.extend(cf(true, 0, b"34"));
    let mut s = server();
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for b in &input {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = s.read(&mut buf, Instant::now()).unwrap() {
            msgs.push(m);
        }
    }
    assert_eq!(
        msgs,
        vec![Message::text("a".repeat(300)), Message::Ping(Bytes::from_static(b"p")), Message::binary(&b"1234"[..])]
    );
}

#[test]
fn fragmented_send_roundtrip() {
    let mut c = client();
    let mut out = BytesMut::new();
    c.send_fragmented(OpCode::Text, &[b"he", b"", b"llo"], &mut out).unwrap();
    let (m, e) = feed(&mut server(), &out);
    assert!(e.is_none());
    assert_eq!(m, vec![Message::text("hello")]);
}

#[test]
fn prepared_frames_equal_what_send_writes() {
    for len in [0usize, 1, 125, 126, 65535, 65536, 70_000] {
        let text = "é".repeat(len / 2) + &"a".repeat(len % 2);
        let bin: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut c = server();
        let mut out = BytesMut::new();
        c.send(OpCode::Text, text.as_bytes(), &mut out).unwrap();
        let p = crate::PreparedFrame::text(&text);
        assert_eq!(p.frame_bytes().as_ref(), &out[..], "text {len}");
        assert_eq!(p.to_message(), Message::text(text.clone()));
        let mut out = BytesMut::new();
        c.send(OpCode::Binary, &bin, &mut out).unwrap();
        assert_eq!(crate::PreparedFrame::binary(&bin).frame_bytes().as_ref(), &out[..], "binary {len}");
        assert_eq!(c.prepared_ok(), Ok(true));
    }
    // A client must mask: not as is.
    assert_eq!(client().prepared_ok(), Ok(false));
    let mut c = server();
    c.close(None, Instant::now()).unwrap();
    assert!(c.prepared_ok().is_err());
}

#[test]
fn f16_invalid_utf8_fails_before_the_frame_is_complete() {
    // Autobahn 6.4.3/6.4.4: one text frame arrives in chops; the second chop holds a sequence
    // above U+10FFFF. The connection fails then, not when the frame completes.
    let payload: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
    let wire = cf(true, 1, payload);
    let hlen = wire.len() - payload.len();
    let mut s = server();
    let mut buf = BytesMut::from(&wire[..hlen + 11]);
    assert_eq!(s.read(&mut buf, Instant::now()), Ok(None));
    buf.extend_from_slice(&wire[hlen + 11..hlen + 15]);
    assert_eq!(s.read(&mut buf, Instant::now()), Err(ProtocolError::InvalidUtf8));
    assert_eq!(queued_close_code(&mut s), Some(1007));
    // Split inside a valid character, a byte at a time: no false alarm, message intact.
    let text = "κόσμε €𝄞 ok".repeat(3);
    let wire = cf(true, 1, text.as_bytes());
    let mut s = server();
    let mut buf = BytesMut::new();
    let mut got = None;
    for b in &wire {
        buf.extend_from_slice(&[*b]);
        if let Some(m) = s.read(&mut buf, Instant::now()).unwrap() {
            got = Some(m);
        }
    }
    assert_eq!(got, Some(Message::text(text.clone())));
    // A continuation carries over a character cut between fragments, then turns invalid in
    // its incomplete second frame.
    let mut s = server();
    let mut wire = cf(false, 1, b"a\xe2\x82");
    let cont = cf(true, 0, b"\xac\xff\xffmore");
    let chl = cont.len() - 7;
    wire.extend_from_slice(&cont[..chl + 2]);
    let (m, e) = feed(&mut s, &wire);
    assert!(m.is_empty());
    assert_eq!(e, Some(ProtocolError::InvalidUtf8));
}
