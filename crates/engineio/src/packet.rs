//! Engine.IO v4 packets and long-polling payloads.

use base64::Engine;
use bytes::Bytes;
use switchboard_ws_proto::Utf8Bytes;

/// The data of a `message` packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// Text.
    Text(Utf8Bytes),
    /// Binary (a binary WebSocket frame, or `b` + base64 in a polling payload).
    Binary(Bytes),
}

/// An Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, with its JSON (`sid`, `upgrades`, `pingInterval`, `pingTimeout`,
    /// `maxPayload`).
    Open(Utf8Bytes),
    /// `1`: the transport is closed.
    Close,
    /// `2`: ping; the payload is empty, or `probe` during an upgrade.
    Ping(Utf8Bytes),
    /// `3`: pong, echoing the ping's payload.
    Pong(Utf8Bytes),
    /// `4`: a message.
    Message(Data),
    /// `5`: upgrade (the client switches to the probed transport).
    Upgrade,
    /// `6`: noop (sent to a pending poll during an upgrade).
    Noop,
}

/// Why input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty packet or payload.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type 0–6.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A packet type that carries no data had some (`1x`, `5x`, `6x`).
    #[error("unexpected data after packet type {0}")]
    UnexpectedData(char),
    /// The payload is not valid UTF-8 (polling bodies are text).
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    /// `b` + something that is not base64.
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,
}

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

impl Packet {
    /// The type digit.
    pub fn type_char(&self) -> char {
        match self {
            Packet::Open(_) => '0',
            Packet::Close => '1',
            Packet::Ping(_) => '2',
            Packet::Pong(_) => '3',
            Packet::Message(_) => '4',
            Packet::Upgrade => '5',
            Packet::Noop => '6',
        }
    }

    /// Decodes a text packet: a WebSocket text frame, or one segment of a polling payload
    /// that does not start with `b`.
    pub fn decode_text(s: Utf8Bytes) -> Result<Packet, DecodeError> {
        let first = *s.as_bytes().first().ok_or(DecodeError::Empty)?;
        let rest = || Utf8Bytes::try_from(s.clone().into_bytes().slice(1..)).unwrap_or_default();
        let no_data = |p: Packet| if s.len() == 1 { Ok(p) } else { Err(DecodeError::UnexpectedData(first as char)) };
        match first {
            b'0' => Ok(Packet::Open(rest())),
            b'1' => no_data(Packet::Close),
            b'2' => Ok(Packet::Ping(rest())),
            b'3' => Ok(Packet::Pong(rest())),
            b'4' => Ok(Packet::Message(Data::Text(rest()))),
            b'5' => no_data(Packet::Upgrade),
            b'6' => no_data(Packet::Noop),
            c => Err(DecodeError::UnknownType(c as char)),
        }
    }

    /// Decodes a binary WebSocket frame: always a message, with no type prefix.
    pub fn decode_binary(b: Bytes) -> Packet {
        Packet::Message(Data::Binary(b))
    }

    /// Encodes for a WebSocket frame: `Ok(text)` for a text frame, `Err(bytes)` for a binary
    /// frame (a binary message, sent raw).
    pub fn encode_ws(&self) -> Result<String, Bytes> {
        match self {
            Packet::Message(Data::Binary(b)) => Err(b.clone()),
            p => Ok(p.encode_text()),
        }
    }

    /// Encodes as text, binary data as `b` + base64 (the polling form).
    pub fn encode_text(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }

    fn encode_into(&self, out: &mut String) {
        match self {
            Packet::Message(Data::Binary(b)) => {
                out.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
            }
            Packet::Open(t) | Packet::Ping(t) | Packet::Pong(t) | Packet::Message(Data::Text(t)) => {
                out.push(self.type_char());
                out.push_str(t);
            }
            p => out.push(p.type_char()),
        }
    }
}

/// Decodes a long-polling body: packets separated by `\x1e`; a segment starting with `b` is a
/// binary message in base64. One pass over the input; every segment must be a valid packet.
pub fn decode_payload(body: &Bytes) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = Utf8Bytes::try_from(body.clone()).map_err(|_| DecodeError::InvalidUtf8)?;
    let bytes = text.clone().into_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate().chain(std::iter::once((bytes.len(), &SEPARATOR))) {
        if c != SEPARATOR {
            continue;
        }
        let seg = bytes.slice(start..i);
        start = i + 1;
        if seg.first() == Some(&b'b') {
            let data =
                base64::engine::general_purpose::STANDARD.decode(&seg[1..]).map_err(|_| DecodeError::InvalidBase64)?;
            out.push(Packet::Message(Data::Binary(Bytes::from(data))));
        } else {
            // A slice of valid UTF-8 cut at ASCII separators is valid UTF-8.
            let seg = Utf8Bytes::try_from(seg).map_err(|_| DecodeError::InvalidUtf8)?;
            out.push(Packet::decode_text(seg)?);
        }
    }
    Ok(out)
}

/// Encodes packets as one long-polling body.
pub fn encode_payload(packets: &[Packet]) -> String {
    let mut s = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            s.push(SEPARATOR as char);
        }
        p.encode_into(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s)
    }

    #[test]
    fn spec_examples_roundtrip() {
        let packets =
            vec![Packet::Message(Data::Text(t("hello"))), Packet::Ping(t("")), Packet::Message(Data::Text(t("world")))];
        assert_eq!(encode_payload(&packets), "4hello\x1e2\x1e4world");
        assert_eq!(decode_payload(&Bytes::from_static(b"4hello\x1e2\x1e4world")), Ok(packets));
        let bin = vec![
            Packet::Message(Data::Text(t("hello"))),
            Packet::Message(Data::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
        ];
        assert_eq!(encode_payload(&bin), "4hello\x1ebAQIDBA==");
        assert_eq!(decode_payload(&Bytes::from_static(b"4hello\x1ebAQIDBA==")), Ok(bin));
        assert_eq!(Packet::decode_text(t("2probe")), Ok(Packet::Ping(t("probe"))));
        assert_eq!(Packet::Pong(t("probe")).encode_text(), "3probe");
        assert_eq!(Packet::decode_text(t("6")), Ok(Packet::Noop));
        assert_eq!(Packet::Message(Data::Binary(Bytes::from_static(b"x"))).encode_ws(), Err(Bytes::from_static(b"x")));
        assert_eq!(Packet::Message(Data::Text(t("é"))).encode_ws(), Ok("4é".into()));
        assert_eq!(decode_payload(&Bytes::from_static("4é\x1e4€".as_bytes())).map(|v| v.len()), Ok(2));
    }

    #[test]
    fn e5_malformed_payloads_are_errors() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", DecodeError::Empty),
            (b"abc", DecodeError::UnknownType('a')),
            (b"99999991:", DecodeError::UnknownType('9')),
            (b"4ok\x1e\x1e4x", DecodeError::Empty),
            (b"4ok\x1e", DecodeError::Empty),
            (b"7", DecodeError::UnknownType('7')),
            (b"1x", DecodeError::UnexpectedData('1')),
            (b"5upgrade", DecodeError::UnexpectedData('5')),
            (b"4\xff\xfe", DecodeError::InvalidUtf8),
            (b"b!!!", DecodeError::InvalidBase64),
        ];
        for (body, err) in cases {
            assert_eq!(decode_payload(&Bytes::copy_from_slice(body)).err().as_ref(), Some(err), "{body:?}");
        }
    }

    #[test]
    fn e5_large_hostile_payload_is_linear() {
        let mut body = Vec::new();
        for _ in 0..200_000 {
            body.extend_from_slice(b"4x\x1e");
        }
        body.extend_from_slice(b"4end");
        let t0 = std::time::Instant::now();
        assert_eq!(decode_payload(&Bytes::from(body)).map(|v| v.len()), Ok(200_001));
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        // A digit run that would overflow a length prefix is just an unknown type here.
        let digits = "9".repeat(100_000);
        assert!(decode_payload(&Bytes::from(digits)).is_err());
    }
}
