//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// A packet type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 0: connect to a namespace (client), or its success (server).
    Connect,
    /// 1: leave a namespace.
    Disconnect,
    /// 2: an event.
    Event,
    /// 3: an acknowledgement.
    Ack,
    /// 4: connection to a namespace refused (server).
    ConnectError,
    /// 5: an event with binary attachments.
    BinaryEvent,
    /// 6: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    /// Whether packets of this type carry binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// A Socket.IO packet. For binary types, `data` holds `{"_placeholder":true,"num":N}` objects
/// where the attachments go, and `attachments` the bytes, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace, `/` for the main one.
    pub nsp: String,
    /// The acknowledgement id.
    pub id: Option<u64>,
    /// The JSON payload.
    pub data: Option<Value>,
    /// Binary attachments (binary types only).
    pub attachments: Vec<Bytes>,
}

/// Event names a client may not emit: they would collide with lifecycle hooks (security: E12).
pub const RESERVED_EVENTS: [&str; 7] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener", "error"];

/// Whether `name` is reserved (security: E12).
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

/// Caps applied while decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most attachments per binary packet. Default 10 (as socket.io) (security: E14).
    pub max_attachments: usize,
    /// Most bytes of attachments per packet. Default 1 MB (socket.io's `maxHttpBufferSize`)
    /// (security: E14).
    pub max_attachment_bytes: usize,
    /// Longest time between a binary packet's header and its last attachment. Default 10 s
    /// (security: E14).
    pub assembly_timeout: Duration,
    /// Longest namespace name, in bytes. Default 256.
    pub max_namespace_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: 10,
            max_attachment_bytes: 1_000_000,
            assembly_timeout: Duration::from_secs(10),
            max_namespace_len: 256,
        }
    }
}

impl Limits {
    /// Sets [`max_attachments`](Self::max_attachments).
    pub fn with_max_attachments(mut self, n: usize) -> Self {
        self.max_attachments = n;
        self
    }

    /// Sets [`max_attachment_bytes`](Self::max_attachment_bytes).
    pub fn with_max_attachment_bytes(mut self, n: usize) -> Self {
        self.max_attachment_bytes = n;
        self
    }

    /// Sets [`assembly_timeout`](Self::assembly_timeout).
    pub fn with_assembly_timeout(mut self, d: Duration) -> Self {
        self.assembly_timeout = d;
        self
    }

    /// Sets [`max_namespace_len`](Self::max_namespace_len).
    pub fn with_max_namespace_len(mut self, n: usize) -> Self {
        self.max_namespace_len = n;
        self
    }
}

/// Why a packet is invalid. The server closes the connection (a parse-error disconnect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Empty input.
    #[error("empty packet")]
    Empty,
    /// Not a packet type 0–6.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is missing, malformed, zero or above the cap (security: E14).
    #[error("invalid attachment count")]
    BadAttachmentCount,
    /// The namespace is malformed or too long.
    #[error("invalid namespace")]
    BadNamespace,
    /// The ack id overflows.
    #[error("invalid ack id")]
    BadAckId,
    /// The payload is not JSON (or nests too deeply) (security: E17).
    #[error("invalid JSON payload")]
    BadJson,
    /// The payload has the wrong shape for the packet type (security: E10, E11).
    #[error("invalid payload for this packet type")]
    BadPayload,
    /// A client emitted a reserved event name (security: E12).
    #[error("reserved event name")]
    ReservedEvent,
    /// A placeholder that does not name exactly one received attachment (security: E13).
    #[error("invalid attachment placeholder")]
    BadPlaceholder,
    /// Attachments exceed `max_attachment_bytes` (security: E14).
    #[error("attachments too large")]
    AttachmentsTooLarge,
    /// A binary message arrived with no binary packet waiting for it, or a text packet
    /// arrived while attachments were expected.
    #[error("unexpected attachment or missing attachment")]
    UnexpectedAttachment,
    /// The attachments did not all arrive within `assembly_timeout` (security: E14).
    #[error("binary packet not completed in time")]
    AssemblyTimeout,
}

impl Packet {
    /// A client's CONNECT to `nsp`, with its `auth` object (none: an empty payload).
    pub fn connect(nsp: &str, auth: Option<Value>) -> Packet {
        Packet { kind: PacketType::Connect, nsp: nsp.to_owned(), id: None, data: auth, attachments: Vec::new() }
    }

    /// A DISCONNECT from `nsp`.
    pub fn disconnect(nsp: &str) -> Packet {
        Packet { kind: PacketType::Disconnect, nsp: nsp.to_owned(), id: None, data: None, attachments: Vec::new() }
    }

    /// The acknowledgement `id` on `nsp` with these arguments.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>) -> Packet {
        Packet {
            kind: PacketType::Ack,
            nsp: nsp.to_owned(),
            id: Some(id),
            data: Some(Value::Array(args)),
            attachments: Vec::new(),
        }
    }

    /// The event name and its arguments, for event packets (`None` for other types).
    pub fn event_parts(&self) -> Option<(&str, &[Value])> {
        if !matches!(self.kind, PacketType::Event | PacketType::BinaryEvent) {
            return None;
        }
        match self.data.as_ref()? {
            Value::Array(a) => match a.split_first()? {
                (Value::String(name), args) => Some((name, args)),
                _ => None,
            },
            _ => None,
        }
    }

    /// An event on `nsp`: `["name", args…]`.
    pub fn event(nsp: &str, name: &str, args: Vec<Value>, id: Option<u64>) -> Packet {
        let mut a = Vec::with_capacity(args.len() + 1);
        a.push(Value::String(name.to_owned()));
        a.extend(args);
        Packet {
            kind: PacketType::Event,
            nsp: nsp.to_owned(),
            id,
            data: Some(Value::Array(a)),
            attachments: Vec::new(),
        }
    }

    /// Encodes the text part. Attachments (for binary types) follow as binary messages.
    pub fn encode(&self) -> String {
        encode_parts(self.kind, &self.nsp, self.id, self.data.as_ref(), self.attachments.len())
    }

    /// Decodes a text packet. For binary types the result still waits for its attachments:
    /// its `attachments` is empty and the count expected is returned beside it.
    pub fn decode_header(s: &str, limits: &Limits) -> Result<(Packet, usize), DecodeError> {
        let b = s.as_bytes();
        let kind = PacketType::from_byte(*b.first().ok_or(DecodeError::Empty)?).ok_or(DecodeError::UnknownType)?;
        let mut i = 1;
        let mut expected = 0usize;
        if kind.is_binary() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                expected = expected
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(usize::from(b[i] - b'0')))
                    .filter(|&n| n <= limits.max_attachments)
                    .ok_or(DecodeError::BadAttachmentCount)?;
                i += 1;
            }
            if i == start || b.get(i) != Some(&b'-') || expected == 0 {
                return Err(DecodeError::BadAttachmentCount);
            }
            i += 1;
        }
        let mut nsp = String::from("/");
        if b.get(i) == Some(&b'/') {
            let end = b[i..].iter().position(|&c| c == b',').map_or(b.len(), |p| i + p);
            let name = &s[i..end];
            if name.len() > limits.max_namespace_len {
                return Err(DecodeError::BadNamespace);
            }
            nsp = name.to_owned();
            i = (end + 1).min(b.len());
        }
        let mut id = None;
        let start = i;
        let mut n: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(b[i] - b'0'))).ok_or(DecodeError::BadAckId)?;
            i += 1;
        }
        if i > start {
            id = Some(n);
        }
        let data = if i < b.len() {
            Some(serde_json::from_str::<Value>(&s[i..]).map_err(|_| DecodeError::BadJson)?)
        } else {
            None
        };
        let p = Packet { kind, nsp, id, data, attachments: Vec::new() };
        p.check_shape()?;
        Ok((p, expected))
    }

    /// The payload rules of each type (security: E10, E11, E12).
    fn check_shape(&self) -> Result<(), DecodeError> {
        match (self.kind, &self.data) {
            (PacketType::Connect, None | Some(Value::Object(_))) => Ok(()),
            (PacketType::Disconnect, None) => Ok(()),
            (PacketType::ConnectError, Some(Value::Object(_))) => Ok(()),
            (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(a))) => match a.first() {
                Some(Value::String(name)) if is_reserved_event(name) => Err(DecodeError::ReservedEvent),
                Some(Value::String(_)) => Ok(()),
                _ => Err(DecodeError::BadPayload),
            },
            (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) if self.id.is_some() => Ok(()),
            _ => Err(DecodeError::BadPayload),
        }
    }

    /// Checks the placeholders against the attachments: each `{"_placeholder":true,"num":N}`
    /// names a distinct received attachment, every attachment is named, and text packets have
    /// none (security: E13).
    fn check_placeholders(&self) -> Result<(), DecodeError> {
        let mut seen = HashSet::new();
        if let Some(d) = &self.data {
            walk(d, &mut |num| {
                let n = num
                    .as_u64()
                    .filter(|&n| (n as usize) < self.attachments.len())
                    .ok_or(DecodeError::BadPlaceholder)?;
                if !seen.insert(n) {
                    return Err(DecodeError::BadPlaceholder);
                }
                Ok(())
            })?;
        }
        if seen.len() != self.attachments.len() {
            return Err(DecodeError::BadPlaceholder);
        }
        Ok(())
    }
}

/// Calls `f` with the `num` of every placeholder object in `v` (serde_json's depth limit
/// bounds the recursion).
fn walk(v: &Value, f: &mut impl FnMut(&Value) -> Result<(), DecodeError>) -> Result<(), DecodeError> {
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| walk(x, f)),
        Value::Object(o) => {
            if let Some(p) = o.get("_placeholder") {
                if p != &Value::Bool(true) || o.len() != 2 {
                    return Err(DecodeError::BadPlaceholder);
                }
                return f(o.get("num").ok_or(DecodeError::BadPlaceholder)?);
            }
            o.values().try_for_each(|x| walk(x, f))
        }
        _ => Ok(()),
    }
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
    deadline: Instant,
}

/// Turns the messages of one connection (text and binary, in order) into packets.
///
/// By default it decodes what a server receives: `CONNECT_ERROR` (which only servers send)
/// is refused. [`Decoder::client_side`] decodes what a client receives.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    pending: Option<Box<Pending>>,
    client_side: bool,
}

impl Decoder {
    /// A server-side decoder with these caps.
    pub fn new(limits: Limits) -> Self {
        Decoder { limits, pending: None, client_side: false }
    }

    /// A client-side decoder (accepts `CONNECT_ERROR`).
    pub fn client_side(limits: Limits) -> Self {
        Decoder { limits, pending: None, client_side: true }
    }

    /// Handles a text message. `Ok(None)`: a binary packet now waits for its attachments.
    pub fn text(&mut self, s: &str, now: Instant) -> Result<Option<Packet>, DecodeError> {
        if self.pending.is_some() {
            self.pending = None;
            return Err(DecodeError::UnexpectedAttachment);
        }
        let (packet, expected) = Packet::decode_header(s, &self.limits)?;
        if packet.kind == PacketType::ConnectError && !self.client_side {
            return Err(DecodeError::BadPayload);
        }
        if expected == 0 {
            packet.check_placeholders()?;
            return Ok(Some(packet));
        }
        self.pending =
            Some(Box::new(Pending { packet, expected, bytes: 0, deadline: now + self.limits.assembly_timeout }));
        Ok(None)
    }

    /// Handles a binary message: the next attachment of the pending binary packet.
    pub fn binary(&mut self, b: Bytes, now: Instant) -> Result<Option<Packet>, DecodeError> {
        let mut p = self.pending.take().ok_or(DecodeError::UnexpectedAttachment)?;
        if now >= p.deadline {
            return Err(DecodeError::AssemblyTimeout);
        }
        p.bytes = p.bytes.saturating_add(b.len());
        if p.bytes > self.limits.max_attachment_bytes {
            return Err(DecodeError::AttachmentsTooLarge);
        }
        p.packet.attachments.push(b);
        if p.packet.attachments.len() < p.expected {
            self.pending = Some(p);
            return Ok(None);
        }
        p.packet.check_placeholders()?;
        let p = *p;
        Ok(Some(p.packet))
    }

    /// When the pending binary packet must be complete (the server closes the connection
    /// with [`DecodeError::AssemblyTimeout`] then).
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// Checks the assembly deadline.
    pub fn check_timeout(&mut self, now: Instant) -> Result<(), DecodeError> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.pending = None;
            return Err(DecodeError::AssemblyTimeout);
        }
        Ok(())
    }
}

/// The text form of a packet from its parts (what [`Packet::encode`] writes), so that a
/// broadcast can be encoded without building a [`Packet`].
pub(crate) fn encode_parts(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    data: Option<&Value>,
    attachments: usize,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(16);
    s.push(kind.digit());
    if kind.is_binary() {
        let _ = write!(s, "{attachments}-");
    }
    if nsp != "/" {
        s.push_str(nsp);
        s.push(',');
    }
    if let Some(id) = id {
        let _ = write!(s, "{id}");
    }
    if let Some(d) = data {
        s.push_str(&d.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dec(s: &str) -> Result<Packet, DecodeError> {
        let mut d = Decoder::default();
        d.text(s, Instant::now()).and_then(|p| p.ok_or(DecodeError::Empty))
    }

    #[test]
    fn spec_examples_roundtrip() {
        let cases: Vec<(&str, Packet)> = vec![
            ("0", Packet { kind: PacketType::Connect, nsp: "/".into(), id: None, data: None, attachments: vec![] }),
            (
                "0/admin,{\"token\":\"123\"}",
                Packet {
                    kind: PacketType::Connect,
                    nsp: "/admin".into(),
                    id: None,
                    data: Some(json!({"token":"123"})),
                    attachments: vec![],
                },
            ),
            (
                "1/admin,",
                Packet {
                    kind: PacketType::Disconnect,
                    nsp: "/admin".into(),
                    id: None,
                    data: None,
                    attachments: vec![],
                },
            ),
            ("0", Packet::connect("/", None)),
            ("0/admin,{\"token\":\"t\"}", Packet::connect("/admin", Some(json!({"token": "t"})))),
            ("1/admin,", Packet::disconnect("/admin")),
            ("3/admin,7[1]", Packet::ack("/admin", 7, vec![json!(1)])),
            ("2[\"foo\"]", Packet::event("/", "foo", vec![], None)),
            ("2/admin,[\"bar\"]", Packet::event("/admin", "bar", vec![], None)),
            ("212[\"foo\"]", Packet::event("/", "foo", vec![], Some(12))),
            (
                "3/admin,13[\"bar\"]",
                Packet {
                    kind: PacketType::Ack,
                    nsp: "/admin".into(),
                    id: Some(13),
                    data: Some(json!(["bar"])),
                    attachments: vec![],
                },
            ),
            (
                "4{\"message\":\"Not authorized\"}",
                Packet {
                    kind: PacketType::ConnectError,
                    nsp: "/".into(),
                    id: None,
                    data: Some(json!({"message":"Not authorized"})),
                    attachments: vec![],
                },
            ),
        ];
        for (wire, p) in cases {
            let mut d = Decoder::client_side(Limits::default());
            let got = d.text(wire, Instant::now()).ok().flatten();
            assert_eq!(got.as_ref(), Some(&p), "{wire}");
            assert_eq!(p.encode(), wire, "{wire}");
        }
        // "1/admin" without the comma decodes too.
        assert_eq!(dec("1/admin").map(|p| p.nsp), Ok("/admin".into()));
    }

    #[test]
    fn binary_packets_assemble_with_attachments() {
        let mut d = Decoder::default();
        let now = Instant::now();
        assert_eq!(
            d.text("52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", now),
            Ok(None)
        );
        assert_eq!(d.binary(Bytes::from_static(&[1, 2]), now), Ok(None));
        let p = d.binary(Bytes::from_static(&[3, 4]), now).unwrap_or_else(|e| panic!("{e}"));
        let p = p.unwrap_or_else(|| panic!("complete"));
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(p.attachments, vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]);
        assert_eq!(
            p.encode(),
            "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"
        );
        let mut d = Decoder::default();
        assert_eq!(d.text("61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]", now), Ok(None));
        assert_eq!(
            d.binary(Bytes::from_static(&[1, 2, 3, 4]), now).map(|p| p.map(|p| (p.kind, p.id))),
            Ok(Some((PacketType::BinaryAck, Some(15))))
        );
    }

    #[test]
    fn e10_invalid_packets() {
        // The Socket.IO part of the table's inputs (`4abc` is Engine.IO message + "abc").
        for bad in [
            "abc",
            "9",
            "2{}",
            "2abc[\"a\"]",
            "2/admin,\"x",
            "0\"notobject\"",
            "0[1]",
            "1[\"x\"]",
            "3[\"x\"]",
            "2[\"a\"] trailing",
            "",
            "4{\"message\":\"from a client\"}",
        ] {
            assert!(dec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn e11_event_name_type_confusion() {
        for bad in ["2[{\"toString\":\"x\"}]", "2[true]", "2[null]", "2[]", "2[1]", "2[[\"a\"]]"] {
            assert_eq!(dec(bad).err(), Some(DecodeError::BadPayload), "{bad}");
        }
    }

    #[test]
    fn e12_reserved_event_names() {
        for name in RESERVED_EVENTS {
            assert_eq!(dec(&format!("2[\"{name}\"]")).err(), Some(DecodeError::ReservedEvent), "{name}");
        }
        assert!(dec("2[\"connected\"]").is_ok());
    }

    #[test]
    fn e13_placeholder_abuse() {
        let now = Instant::now();
        for bad in [
            "51-[\"e\",{\"_placeholder\":true,\"num\":\"splice\"}]",
            "51-[\"e\",{\"_placeholder\":true,\"num\":-1}]",
            "51-[\"e\",{\"_placeholder\":true,\"num\":99}]",
            "51-[\"e\",{\"_placeholder\":true,\"num\":0.5}]",
            "52-[\"e\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
            "51-[\"e\",{\"_placeholder\":\"yes\",\"num\":0}]",
            "51-[\"e\"]",
        ] {
            let mut d = Decoder::default();
            let mut r = d.text(bad, now);
            while let Ok(None) = r {
                r = d.binary(Bytes::from_static(b"x"), now);
            }
            assert_eq!(r.err(), Some(DecodeError::BadPlaceholder), "{bad}");
        }
        // A placeholder in a packet without binary.
        assert_eq!(dec("2[\"e\",{\"_placeholder\":true,\"num\":0}]").err(), Some(DecodeError::BadPlaceholder));
    }

    #[test]
    fn e14_attachment_caps() {
        let now = Instant::now();
        for bad in [
            "59999999-[\"e\"]",
            "511-[\"e\"]",
            "50-[\"e\"]",
            "5-[\"e\"]",
            "5[\"e\"]",
            "599999999999999999999999-[\"e\"]",
        ] {
            assert_eq!(Decoder::default().text(bad, now).err(), Some(DecodeError::BadAttachmentCount), "{bad}");
        }
        // 10 declared, then too many bytes.
        let mut d = Decoder::new(Limits { max_attachment_bytes: 100, ..Limits::default() });
        let header = format!(
            "510-[\"e\"{}]",
            (0..10).map(|i| format!(",{{\"_placeholder\":true,\"num\":{i}}}")).collect::<String>()
        );
        assert_eq!(d.text(&header, now), Ok(None));
        assert_eq!(d.binary(Bytes::from(vec![0; 60]), now), Ok(None));
        assert_eq!(d.binary(Bytes::from(vec![0; 60]), now), Err(DecodeError::AttachmentsTooLarge));
        // Assembly time.
        let mut d = Decoder::default();
        assert_eq!(d.text("51-[\"e\",{\"_placeholder\":true,\"num\":0}]", now), Ok(None));
        assert_eq!(d.deadline(), Some(now + Duration::from_secs(10)));
        assert_eq!(d.check_timeout(now + Duration::from_secs(10)), Err(DecodeError::AssemblyTimeout));
        // Text while waiting for attachments, and an attachment nobody waits for.
        let mut d = Decoder::default();
        assert_eq!(d.text("51-[\"e\",{\"_placeholder\":true,\"num\":0}]", now), Ok(None));
        assert_eq!(d.text("2[\"x\"]", now), Err(DecodeError::UnexpectedAttachment));
        assert_eq!(Decoder::default().binary(Bytes::from_static(b"x"), now), Err(DecodeError::UnexpectedAttachment));
    }

    #[test]
    fn e17_json_bombs() {
        let deep = format!("2[\"e\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(dec(&deep).err(), Some(DecodeError::BadJson));
        let big_number = format!("2[\"e\",{}]", "9".repeat(1_000_000));
        let t0 = Instant::now();
        let _ = dec(&big_number);
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(dec("2[\"e\",{\"a\":1,\"a\":2}]").is_ok(), "duplicate keys: last wins, no crash");
        assert_eq!(dec("2999999999999999999999[\"e\"]").err(), Some(DecodeError::BadAckId));
    }

    #[test]
    fn numbers_survive_a_decode_encode_round_trip() {
        // serde_json's fast float parsing can be one ULP off for long digit strings; with
        // `float_roundtrip` a relayed number is the correctly rounded value (found by fuzzing).
        let long = format!("3[{}]", "8".repeat(75));
        let mut d = Decoder::default();
        let p = d.text(&format!("30{}", &long[1..]), Instant::now()).unwrap().unwrap();
        let again = Packet::decode_header(&p.encode(), &Limits::default()).unwrap().0;
        assert_eq!(again.data, p.data);
        for n in ["0.1", "1e308", "-2.2250738585072014e-308", "123456789012345678901234567890", "5e-324"] {
            let p = d.text(&format!("30[{n}]"), Instant::now()).unwrap().unwrap();
            let again = Packet::decode_header(&p.encode(), &Limits::default()).unwrap().0;
            assert_eq!(again.data, p.data, "{n}");
        }
    }
}
