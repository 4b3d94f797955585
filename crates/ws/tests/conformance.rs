//! In-repo conformance suite: scripted raw frames against our server and our client, by
//! category (framing, ping/pong, reserved bits, opcodes, fragmentation, UTF-8, close handling,
//! limits). Each case states what must come back and which close code ends it; the server
//! must then close TCP first. Rows of the security table (docs/security.md) are named in the case names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use switchboard_ws::{Acceptor, ClientBuilder, Config};

/// One scripted exchange.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    /// Frames (opcode, payload) expected back before the Close.
    expect: Vec<(u8, Vec<u8>)>,
    /// The close code the peer under test must send; `None`: the script closes with 1000 and
    /// expects the echo.
    close: Option<u16>,
}

fn case(name: &'static str, input: Vec<u8>, expect: Vec<(u8, Vec<u8>)>, close: Option<u16>) -> Case {
    Case { name, input, expect, close }
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn server_cases() -> Vec<Case> {
    let big = vec![b'x'; 65536];
    let t = |s: &[u8]| (1u8, s.to_vec());
    let b = |s: &[u8]| (2u8, s.to_vec());
    vec![
        // Framing.
        case("framing: text 0 B", cf(true, 1, b""), vec![t(b"")], None),
        case("framing: text 125 B", cf(true, 1, &[b'a'; 125]), vec![t(&[b'a'; 125])], None),
        case("framing: text 126 B", cf(true, 1, &[b'a'; 126]), vec![t(&[b'a'; 126])], None),
        case("framing: binary 65535 B", cf(true, 2, &big[..65535]), vec![b(&big[..65535])], None),
        case("framing: binary 65536 B", cf(true, 2, &big), vec![b(&big)], None),
        case(
            "framing: many frames in one write",
            cat(&[cf(true, 1, b"a"), cf(true, 2, b"b"), cf(true, 1, b"c")]),
            vec![t(b"a"), b(b"b"), t(b"c")],
            None,
        ),
        case("F1 framing: unmasked client frame", frame(true, 0, 1, b"x", false), vec![], Some(1002)),
        // Ping/pong.
        case("ping: echoed payload", cf(true, 9, b"hello"), vec![(10, b"hello".to_vec())], None),
        case("ping: 125 B payload", cf(true, 9, &[7; 125]), vec![(10, vec![7; 125])], None),
        case("F6 ping: 126 B payload", cf(true, 9, &[7; 126]), vec![], Some(1002)),
        case("ping: unsolicited pong ignored", cf(true, 10, b"x"), vec![], None),
        case("F7 ping: fragmented ping", cf(false, 9, b"x"), vec![], Some(1002)),
        // Reserved bits.
        case("F4 rsv: RSV1", frame(true, 0x40, 1, b"x", true), vec![], Some(1002)),
        case("F4 rsv: RSV2", frame(true, 0x20, 1, b"x", true), vec![], Some(1002)),
        case("F4 rsv: RSV3", frame(true, 0x10, 2, b"x", true), vec![], Some(1002)),
        case("F4 rsv: RSV1 on ping", frame(true, 0x40, 9, b"", true), vec![], Some(1002)),
        case(
            "F4 rsv: after a valid message",
            cat(&[cf(true, 1, b"ok"), frame(true, 0x70, 1, b"x", true)]),
            vec![t(b"ok")],
            Some(1002),
        ),
        // Opcodes.
        case("F5 opcode 3", cf(true, 3, b""), vec![], Some(1002)),
        case("F5 opcode 7", cf(true, 7, b"x"), vec![], Some(1002)),
        case("F5 opcode 0xB", cf(true, 0xB, b""), vec![], Some(1002)),
        case("F5 opcode 0xF with a ping after", cat(&[cf(true, 0xF, b""), cf(true, 9, b"p")]), vec![], Some(1002)),
        // Fragmentation.
        case(
            "frag: text in 3 fragments",
            cat(&[cf(false, 1, b"ab"), cf(false, 0, b"cd"), cf(true, 0, b"ef")]),
            vec![t(b"abcdef")],
            None,
        ),
        case(
            "frag: binary with empty fragments",
            cat(&[cf(false, 2, b""), cf(false, 0, b"x"), cf(true, 0, b"")]),
            vec![b(b"x")],
            None,
        ),
        case(
            "F9 frag: ping between fragments",
            cat(&[cf(false, 1, b"ab"), cf(true, 9, b"p"), cf(true, 0, b"cd")]),
            vec![(10, b"p".to_vec()), t(b"abcd")],
            None,
        ),
        case("F8 frag: continuation without start", cf(true, 0, b"x"), vec![], Some(1002)),
        case("F8 frag: new text inside a message", cat(&[cf(false, 1, b"a"), cf(true, 1, b"b")]), vec![], Some(1002)),
        case(
            "F8 frag: new binary inside a message",
            cat(&[cf(false, 2, b"a"), cf(false, 2, b"b")]),
            vec![],
            Some(1002),
        ),
        // UTF-8.
        case("utf8: valid multi-byte", cf(true, 1, "κόσμε 🎉".as_bytes()), vec![t("κόσμε 🎉".as_bytes())], None),
        case(
            "utf8: code point split across fragments",
            cat(&[
                cf(false, 1, &"🎉".as_bytes()[..1]),
                cf(false, 0, &"🎉".as_bytes()[1..3]),
                cf(true, 0, &"🎉".as_bytes()[3..]),
            ]),
            vec![t("🎉".as_bytes())],
            None,
        ),
        case(
            "F16 utf8: invalid single frame",
            cf(true, 1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
            vec![],
            Some(1007),
        ),
        case("F16 utf8: overlong", cf(true, 1, b"\xc0\xaf"), vec![], Some(1007)),
        case("F16 utf8: above U+10FFFF", cf(true, 1, b"\xf4\x90\x80\x80"), vec![], Some(1007)),
        case(
            "F16 utf8: invalid across fragments",
            cat(&[cf(false, 1, b"ok\xed"), cf(true, 0, b"\xa0\x80")]),
            vec![],
            Some(1007),
        ),
        case(
            "F16 utf8: truncated at message end",
            cat(&[cf(false, 1, b"ok"), cf(true, 0, b"\xe2\x82")]),
            vec![],
            Some(1007),
        ),
        case("F16 utf8: fail fast in first fragment", cf(false, 1, b"\xff"), vec![], Some(1007)),
        // Close.
        case("F17 close: 1-byte payload", cf(true, 8, &[3]), vec![], Some(1002)),
        case("F17 close: code 999", cf(true, 8, &close_payload(999, b"")), vec![], Some(1002)),
        case("F17 close: code 1004", cf(true, 8, &close_payload(1004, b"")), vec![], Some(1002)),
        case("F17 close: code 1005", cf(true, 8, &close_payload(1005, b"")), vec![], Some(1002)),
        case("F17 close: code 1006", cf(true, 8, &close_payload(1006, b"")), vec![], Some(1002)),
        case("F17 close: code 1015", cf(true, 8, &close_payload(1015, b"")), vec![], Some(1002)),
        case("F17 close: code 1016", cf(true, 8, &close_payload(1016, b"")), vec![], Some(1002)),
        case("F17 close: code 2999", cf(true, 8, &close_payload(2999, b"")), vec![], Some(1002)),
        case("F17 close: code 5000", cf(true, 8, &close_payload(5000, b"")), vec![], Some(1002)),
        case("F17 close: invalid UTF-8 reason", cf(true, 8, &close_payload(1000, b"\xff")), vec![], Some(1007)),
        case("F17 close: 1001 echoed", cf(true, 8, &close_payload(1001, b"going")), vec![], Some(1001)),
        case("F17 close: 3000 echoed", cf(true, 8, &close_payload(3000, b"")), vec![], Some(3000)),
        case("F17 close: 4999 echoed", cf(true, 8, &close_payload(4999, b"")), vec![], Some(4999)),
        case(
            "F18 close: data after close ignored",
            cat(&[cf(true, 8, &close_payload(1000, b"")), cf(true, 1, b"late")]),
            vec![],
            Some(1000),
        ),
        case("F17 close: 126-byte close", cf(true, 8, &[0; 126]), vec![], Some(1002)),
    ]
}

async fn run_server_case(addr: std::net::SocketAddr, c: &Case) {
    let mut raw = Raw::open(addr).await;
    raw.send(&c.input).await;
    if c.close.is_none() {
        raw.send(&cf(true, 8, &close_payload(1000, b""))).await;
    }
    let frames = raw.frames_until_close().await;
    let (last, data) = frames.split_last().unwrap_or_else(|| panic!("{}: no reply at all", c.name));
    let got: Vec<(u8, Vec<u8>)> = data.iter().map(|f| (f.opcode, f.payload.clone())).collect();
    assert_eq!(got, c.expect, "{}: frames before the close", c.name);
    assert!(frames.iter().all(|f| !f.masked), "{}: server frames must be unmasked", c.name);
    assert_eq!(last.opcode, 8, "{}: expected a Close, got {last:?}", c.name);
    assert_eq!(last.close_code(), Some(c.close.unwrap_or(1000)), "{}", c.name);
    assert!(raw.sees_eof(Duration::from_secs(3)).await, "{}: the server must close TCP first", c.name);
}

#[tokio::test]
async fn server_conformance() {
    let addr = echo_server(Acceptor::new()).await;
    for c in server_cases() {
        run_server_case(addr, &c).await;
    }
}

#[tokio::test]
async fn server_limits() {
    let cfg = Config::default().with_max_message_size(1024).with_max_frame_size(512).with_max_fragments(16);
    let addr = echo_server(Acceptor::new().config(cfg)).await;
    let frag = |n: usize, size: usize| {
        let mut v = cf(false, 2, &vec![0; size]);
        for _ in 1..n {
            v.extend(cf(false, 0, &vec![0; size]));
        }
        v
    };
    let cases = vec![
        case("F12 limits: frame over max_frame_size", cf(true, 2, &[0; 513]), vec![], Some(1009)),
        case("F12 limits: frame at max_frame_size", cf(true, 2, &[0; 512]), vec![(2, vec![0; 512])], None),
        case("F13 limits: message over max_message_size", frag(3, 400), vec![], Some(1009)),
        case(
            "F13 limits: message at max_message_size",
            cat(&[cf(false, 2, &[1; 512]), cf(true, 0, &[1; 512])]),
            vec![(2, vec![1; 1024])],
            None,
        ),
        case("F14 limits: too many fragments", frag(20, 1), vec![], Some(1008)),
        case("F15 limits: empty fragments count", frag(20, 0), vec![], Some(1008)),
    ];
    for c in cases {
        run_server_case(addr, &c).await;
    }
    // F12: only the header is sent; the 1009 arrives without the payload.
    let mut raw = Raw::open(addr).await;
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&(1u64 << 40).to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    raw.send(&h).await;
    let f = raw.read_frame(Duration::from_secs(3)).await.unwrap();
    assert_eq!(f.close_code(), Some(1009));
}

/// Client cases: the raw server sends `input`; our echo client must answer with `expect` and
/// then a Close with `close` (or, for `None`, the server closes with 1000 and expects the echo).
fn client_cases() -> Vec<Case> {
    vec![
        case("client framing: text echo", sf(true, 1, b"hello"), vec![(1, b"hello".to_vec())], None),
        case("client framing: 65536 B binary", sf(true, 2, &[9; 65536]), vec![(2, vec![9; 65536])], None),
        case("client ping: pong", sf(true, 9, b"pp"), vec![(10, b"pp".to_vec())], None),
        case(
            "client frag: reassembled",
            cat(&[sf(false, 1, b"a"), sf(true, 9, b""), sf(true, 0, b"b")]),
            vec![(10, vec![]), (1, b"ab".to_vec())],
            None,
        ),
        case("F2 client: masked server frame", frame(true, 0, 1, b"x", true), vec![], Some(1002)),
        case("F4 client: RSV1 without extension (D4)", frame(true, 0x40, 1, b"x", false), vec![], Some(1002)),
        case("F5 client: reserved opcode", sf(true, 5, b""), vec![], Some(1002)),
        case("F16 client: invalid UTF-8", sf(true, 1, b"\xff"), vec![], Some(1007)),
        case("F17 client: invalid close code", sf(true, 8, &close_payload(1005, b"")), vec![], Some(1002)),
        case("F17 client: 4000 echoed", sf(true, 8, &close_payload(4000, b"x")), vec![], Some(4000)),
        case("F6 client: long ping", sf(true, 9, &[0; 126]), vec![], Some(1002)),
    ]
}

#[tokio::test]
async fn client_conformance() {
    for c in client_cases() {
        let (addr, server) = raw_server("").await;
        let ws = ClientBuilder::new(format!("ws://{addr}/")).connect().await.unwrap();
        let client = tokio::spawn(run_echo_client(ws));
        let mut raw = server.await.unwrap();
        raw.send(&c.input).await;
        if c.close.is_none() {
            raw.send(&sf(true, 8, &close_payload(1000, b""))).await;
        }
        let frames = raw.frames_until_close().await;
        let (last, data) = frames.split_last().unwrap_or_else(|| panic!("{}: no reply", c.name));
        let got: Vec<(u8, Vec<u8>)> = data.iter().map(|f| (f.opcode, f.payload.clone())).collect();
        assert_eq!(got, c.expect, "{}", c.name);
        assert!(frames.iter().all(|f| f.masked), "{}: client frames must be masked", c.name);
        assert_eq!(last.close_code(), Some(c.close.unwrap_or(1000)), "{}", c.name);
        // The server closes TCP; the client must then finish on its own.
        drop(raw);
        let (_, err) = tokio::time::timeout(Duration::from_secs(5), client).await.unwrap().unwrap();
        if c.close.is_none() || matches!(c.close, Some(1000 | 4000)) {
            assert_eq!(err, None, "{}: clean close expected", c.name);
        } else {
            assert!(err.is_some(), "{}: the client must report the protocol error", c.name);
        }
    }
}
