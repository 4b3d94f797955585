//! The node protocol: Socket.IO's cluster-adapter message model (`{uid, nsp, type, data}`,
//! types 1–13), written once for every transport.
//!
//! On the wire a message is JSON text, except that a message whose data carries binary is the
//! whole envelope in MessagePack (notepack-compatible: binary as `bin`, ArrayBuffers as ext
//! type 0 accepted, `undefined` as `null`, dates as ISO strings). Receivers tell the two apart
//! by the first byte (`{`). Inside this crate binary travels as it does in the socketio crate:
//! JSON with placeholders (`{"_placeholder":true,"num":N}`) plus a list of attachments.
//!
//! Decoding is total: a message that is too large, not JSON or MessagePack, or not shaped as
//! the protocol says is a [`DecodeError`], never a panic (security: C5).

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchboard_socketio::{BroadcastOptions, BroadcastPacket, Room, SocketInfo};

/// Message types of the cluster-adapter protocol.
pub mod kind {
    /// A node started: everyone answers with a heartbeat.
    pub const INITIAL_HEARTBEAT: u8 = 1;
    /// A node is alive.
    pub const HEARTBEAT: u8 = 2;
    /// A broadcast (with `requestId`: with acknowledgements).
    pub const BROADCAST: u8 = 3;
    /// Selected sockets join rooms.
    pub const SOCKETS_JOIN: u8 = 4;
    /// Selected sockets leave rooms.
    pub const SOCKETS_LEAVE: u8 = 5;
    /// Selected sockets are disconnected.
    pub const DISCONNECT_SOCKETS: u8 = 6;
    /// A request for the selected sockets.
    pub const FETCH_SOCKETS: u8 = 7;
    /// The answer to [`FETCH_SOCKETS`].
    pub const FETCH_SOCKETS_RESPONSE: u8 = 8;
    /// A server-to-server event.
    pub const SERVER_SIDE_EMIT: u8 = 9;
    /// The answer to [`SERVER_SIDE_EMIT`].
    pub const SERVER_SIDE_EMIT_RESPONSE: u8 = 10;
    /// How many sockets a node sent a broadcast with acks to.
    pub const BROADCAST_CLIENT_COUNT: u8 = 11;
    /// One socket's acknowledgement of a broadcast.
    pub const BROADCAST_ACK: u8 = 12;
    /// A node is leaving.
    pub const ADAPTER_CLOSE: u8 = 13;
}

/// Why a bus message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the configured cap.
    #[error("message of {size} bytes exceeds the cap of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Neither JSON nor MessagePack.
    #[error("undecodable message: {0}")]
    Syntax(String),
    /// Decodable, but not a protocol message.
    #[error("malformed message: {0}")]
    Shape(&'static str),
}

/// Options that travel with a broadcast besides the selectors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    /// The typed selection.
    pub opts: BroadcastOptions,
    /// `flags.timeout` in milliseconds (broadcasts with acks).
    pub timeout_ms: Option<u64>,
}

/// A decoded protocol message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// Type 1.
    InitialHeartbeat,
    /// Type 2, with what Switchboard nodes say of themselves (Node nodes send nothing).
    Heartbeat(Option<Value>),
    /// Type 3.
    Broadcast {
        /// The event.
        packet: BroadcastPacket,
        /// Who for.
        sel: Selector,
        /// Present for a broadcast with acks.
        request_id: Option<String>,
        /// Switchboard's extension (Node ignores it): answer how many sockets it reached,
        /// with a BROADCAST_CLIENT_COUNT for this request id.
        count_request: Option<String>,
    },
    /// Type 4.
    SocketsJoin {
        /// Who.
        sel: Selector,
        /// Which rooms.
        rooms: Vec<Room>,
    },
    /// Type 5.
    SocketsLeave {
        /// Who.
        sel: Selector,
        /// Which rooms.
        rooms: Vec<Room>,
    },
    /// Type 6.
    DisconnectSockets {
        /// Who.
        sel: Selector,
        /// Their whole connection.
        close: bool,
    },
    /// Type 7.
    FetchSockets {
        /// Who.
        sel: Selector,
        /// The request.
        request_id: String,
    },
    /// Type 8.
    FetchSocketsResponse {
        /// The request.
        request_id: String,
        /// The sockets.
        sockets: Vec<SocketInfo>,
    },
    /// Type 9: `[event, arg…]`.
    ServerSideEmit {
        /// The event and its arguments.
        packet: Vec<Value>,
        /// Present when the sender waits for answers.
        request_id: Option<String>,
    },
    /// Type 10.
    ServerSideEmitResponse {
        /// The request.
        request_id: String,
        /// The answer.
        packet: Value,
    },
    /// Type 11.
    BroadcastClientCount {
        /// The request.
        request_id: String,
        /// How many sockets.
        count: usize,
    },
    /// Type 12.
    BroadcastAck {
        /// The request.
        request_id: String,
        /// The acknowledgement's arguments (Node nodes send the first only).
        args: Vec<Value>,
        /// Their attachments.
        binary: Vec<Bytes>,
        /// The socket, when a Switchboard node sent it.
        sid: Option<String>,
    },
    /// Type 13.
    AdapterClose,
}

/// A message with its sender and namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The sending node's uid (`emitter` for emitters; empty when absent).
    pub uid: String,
    /// The namespace (authoritative).
    pub nsp: String,
    /// The message.
    pub msg: Message,
}

impl Message {
    /// Its type number.
    pub fn kind(&self) -> u8 {
        match self {
            Message::InitialHeartbeat => kind::INITIAL_HEARTBEAT,
            Message::Heartbeat(_) => kind::HEARTBEAT,
            Message::Broadcast { .. } => kind::BROADCAST,
            Message::SocketsJoin { .. } => kind::SOCKETS_JOIN,
            Message::SocketsLeave { .. } => kind::SOCKETS_LEAVE,
            Message::DisconnectSockets { .. } => kind::DISCONNECT_SOCKETS,
            Message::FetchSockets { .. } => kind::FETCH_SOCKETS,
            Message::FetchSocketsResponse { .. } => kind::FETCH_SOCKETS_RESPONSE,
            Message::ServerSideEmit { .. } => kind::SERVER_SIDE_EMIT,
            Message::ServerSideEmitResponse { .. } => kind::SERVER_SIDE_EMIT_RESPONSE,
            Message::BroadcastClientCount { .. } => kind::BROADCAST_CLIENT_COUNT,
            Message::BroadcastAck { .. } => kind::BROADCAST_ACK,
            Message::AdapterClose => kind::ADAPTER_CLOSE,
        }
    }

    /// Whether it answers a request (it goes to the requester's response channel).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Message::FetchSocketsResponse { .. }
                | Message::ServerSideEmitResponse { .. }
                | Message::BroadcastClientCount { .. }
                | Message::BroadcastAck { .. }
        )
    }
}

fn opts_json(sel: &Selector) -> Value {
    let o = &sel.opts;
    let except: Vec<Value> = o
        .except_rooms
        .iter()
        .map(|r| Value::String(r.to_string()))
        .chain(o.except_sids.iter().map(|s| Value::String(s.to_string())))
        .collect();
    let mut flags = Map::new();
    if o.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if let Some(t) = sel.timeout_ms {
        flags.insert("timeout".into(), json!(t));
    }
    json!({
        "rooms": o.rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        "except": except,
        "flags": flags,
    })
}

/// A room name from JSON: a string, or a number (Node's rooms may be numbers, #418).
fn room_of(v: &Value) -> Option<Room> {
    match v {
        Value::String(s) => Some(Room::from(s.as_str())),
        Value::Number(n) => Some(Room::from(n.to_string())),
        _ => None,
    }
}

fn rooms_of(v: Option<&Value>) -> Vec<Room> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(room_of).collect()).unwrap_or_default()
}

fn selector_of(v: Option<&Value>) -> Selector {
    let Some(v) = v else { return Selector::default() };
    let mut opts = BroadcastOptions { rooms: rooms_of(v.get("rooms")), ..Default::default() };
    opts.except_names(rooms_of(v.get("except")));
    let flags = v.get("flags");
    opts.volatile = flags.and_then(|f| f.get("volatile")).and_then(Value::as_bool).unwrap_or(false);
    let timeout_ms = flags.and_then(|f| f.get("timeout")).and_then(Value::as_u64);
    Selector { opts, timeout_ms }
}

fn req_id(data: &Value) -> Result<String, DecodeError> {
    match data.get("requestId") {
        Some(Value::String(s)) if s.len() <= 64 => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(DecodeError::Shape("requestId")),
    }
}

fn opt_req_id(data: &Value) -> Option<String> {
    req_id(data).ok()
}

/// The event packet of a BROADCAST (`{type: 2|5, data: [ev, …], nsp?}`).
fn packet_of(v: Option<&Value>, binary: Vec<Bytes>) -> Result<BroadcastPacket, DecodeError> {
    let p = v.ok_or(DecodeError::Shape("packet"))?;
    match p.get("type").and_then(Value::as_u64) {
        // EVENT, or BINARY_EVENT as Socket.IO 2 emitters sent (treated alike).
        Some(2 | 5) => {}
        _ => return Err(DecodeError::Shape("packet type")),
    }
    let data = p.get("data").cloned().ok_or(DecodeError::Shape("packet data"))?;
    match data.as_array().and_then(|a| a.first()) {
        Some(Value::String(_)) => Ok(BroadcastPacket { data, binary }),
        _ => Err(DecodeError::Shape("event name")),
    }
}

/// Encodes a message from node `uid` on namespace `nsp` for the wire (what [`Envelope::encode`]
/// writes), without owning it: the publisher keeps its packet for its own delivery.
pub fn encode_message(uid: &str, nsp: &str, msg: &Message) -> Bytes {
    let (data, binary) = message_data(nsp, msg);
    let mut env = json!({ "uid": uid, "nsp": nsp, "type": msg.kind() });
    if let Some(d) = data {
        env["data"] = d;
    }
    if binary.is_empty() {
        Bytes::from(env.to_string())
    } else {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &crate::msgpack::from_json(&env, binary));
        Bytes::from(out)
    }
}

/// A message's `data` field as a Redis stream entry carries it (Node's
/// `@socket.io/redis-streams-adapter`): JSON text, or, with binary, base64 of its MessagePack.
pub fn encode_stream_data(nsp: &str, msg: &Message) -> String {
    use base64::Engine as _;
    let (data, binary) = message_data(nsp, msg);
    let data = data.unwrap_or(Value::Null);
    if binary.is_empty() {
        data.to_string()
    } else {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &crate::msgpack::from_json(&data, binary));
        base64::engine::general_purpose::STANDARD.encode(out)
    }
}

/// Decodes a Redis stream entry's fields (see [`encode_stream_data`]), refusing a `data` above
/// `max` bytes.
pub fn decode_stream_entry(uid: &str, nsp: &str, kind: &str, data: &str, max: usize) -> Result<Envelope, DecodeError> {
    use base64::Engine as _;
    if data.len() > max {
        return Err(DecodeError::TooLarge { size: data.len(), max });
    }
    let t: u8 = kind.parse().map_err(|_| DecodeError::Shape("type"))?;
    let (data, binary) = if data.starts_with('{') {
        let v: Value = serde_json::from_str(data).map_err(|e| DecodeError::Syntax(e.to_string()))?;
        (v, Vec::new())
    } else {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| DecodeError::Syntax(format!("base64: {e}")))?;
        crate::msgpack::to_json(&raw)?
    };
    Envelope::from_json(json!({ "uid": uid, "nsp": nsp, "type": t, "data": data }), binary)
}

/// A message's `data` field and its attachments.
fn message_data<'m>(nsp: &str, msg: &'m Message) -> (Option<Value>, &'m [Bytes]) {
    match msg {
        Message::InitialHeartbeat | Message::AdapterClose => (None, &[]),
        Message::Heartbeat(info) => (info.clone(), &[]),
        Message::Broadcast { packet, sel, request_id, count_request } => {
            let mut d = json!({
                "packet": { "type": 2, "data": packet.data, "nsp": nsp },
                "opts": opts_json(sel),
            });
            if let Some(id) = request_id {
                d["requestId"] = json!(id);
            }
            if let Some(id) = count_request {
                d["countRequestId"] = json!(id);
            }
            (Some(d), &packet.binary)
        }
        Message::SocketsJoin { sel, rooms } | Message::SocketsLeave { sel, rooms } => {
            let rooms: Vec<&str> = rooms.iter().map(|r| &**r).collect();
            (Some(json!({ "opts": opts_json(sel), "rooms": rooms })), &[])
        }
        Message::DisconnectSockets { sel, close } => (Some(json!({ "opts": opts_json(sel), "close": close })), &[]),
        Message::FetchSockets { sel, request_id } => {
            (Some(json!({ "opts": opts_json(sel), "requestId": request_id })), &[])
        }
        Message::FetchSocketsResponse { request_id, sockets } => {
            (Some(json!({ "requestId": request_id, "sockets": sockets })), &[])
        }
        Message::ServerSideEmit { packet, request_id } => {
            let mut d = json!({ "packet": packet });
            if let Some(id) = request_id {
                d["requestId"] = json!(id);
            }
            (Some(d), &[])
        }
        Message::ServerSideEmitResponse { request_id, packet } => {
            (Some(json!({ "requestId": request_id, "packet": packet })), &[])
        }
        Message::BroadcastClientCount { request_id, count } => {
            (Some(json!({ "requestId": request_id, "clientCount": count })), &[])
        }
        Message::BroadcastAck { request_id, args, binary, sid } => {
            // Node reads `packet` (the first argument); Switchboard nodes read all of them.
            let mut d = json!({
                "requestId": request_id,
                "packet": args.first().cloned().unwrap_or(Value::Null),
                "args": args,
            });
            if let Some(sid) = sid {
                d["sid"] = json!(sid);
            }
            (Some(d), binary)
        }
    }
}

impl Envelope {
    /// Encodes for the wire: JSON, or MessagePack when binary is present.
    pub fn encode(&self) -> Bytes {
        encode_message(&self.uid, &self.nsp, &self.msg)
    }

    /// Decodes a message from the wire, refusing anything above `max` bytes.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Envelope, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { size: bytes.len(), max });
        }
        let (env, binary) = if bytes.first() == Some(&b'{') {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError::Syntax(e.to_string()))?;
            (v, Vec::new())
        } else {
            crate::msgpack::to_json(bytes)?
        };
        Self::from_json(env, binary)
    }

    fn from_json(env: Value, binary: Vec<Bytes>) -> Result<Envelope, DecodeError> {
        let uid = match env.get("uid") {
            Some(Value::String(s)) if s.len() <= 64 => s.clone(),
            None | Some(Value::Null) => String::new(),
            _ => return Err(DecodeError::Shape("uid")),
        };
        let nsp = match env.get("nsp") {
            Some(Value::String(s)) => s.clone(),
            None => "/".to_owned(),
            _ => return Err(DecodeError::Shape("nsp")),
        };
        let t = env.get("type").and_then(Value::as_u64).ok_or(DecodeError::Shape("type"))?;
        let null = Value::Null;
        let data = env.get("data").unwrap_or(&null);
        let msg = match u8::try_from(t).unwrap_or(0) {
            kind::INITIAL_HEARTBEAT => Message::InitialHeartbeat,
            kind::HEARTBEAT => Message::Heartbeat(if data.is_null() { None } else { Some(data.clone()) }),
            kind::BROADCAST => Message::Broadcast {
                packet: packet_of(data.get("packet"), binary)?,
                sel: selector_of(data.get("opts")),
                request_id: opt_req_id(data),
                count_request: data
                    .get("countRequestId")
                    .and_then(Value::as_str)
                    .filter(|s| s.len() <= 64)
                    .map(str::to_owned),
            },
            kind::SOCKETS_JOIN => {
                Message::SocketsJoin { sel: selector_of(data.get("opts")), rooms: rooms_of(data.get("rooms")) }
            }
            kind::SOCKETS_LEAVE => {
                Message::SocketsLeave { sel: selector_of(data.get("opts")), rooms: rooms_of(data.get("rooms")) }
            }
            kind::DISCONNECT_SOCKETS => Message::DisconnectSockets {
                sel: selector_of(data.get("opts")),
                close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            kind::FETCH_SOCKETS => {
                Message::FetchSockets { sel: selector_of(data.get("opts")), request_id: req_id(data)? }
            }
            kind::FETCH_SOCKETS_RESPONSE => {
                let sockets = data
                    .get("sockets")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|s| serde_json::from_value(s.clone()).ok()).collect())
                    .unwrap_or_default();
                Message::FetchSocketsResponse { request_id: req_id(data)?, sockets }
            }
            kind::SERVER_SIDE_EMIT => {
                let packet =
                    data.get("packet").and_then(Value::as_array).cloned().ok_or(DecodeError::Shape("packet"))?;
                Message::ServerSideEmit { packet, request_id: opt_req_id(data) }
            }
            kind::SERVER_SIDE_EMIT_RESPONSE => Message::ServerSideEmitResponse {
                request_id: req_id(data)?,
                packet: data.get("packet").cloned().unwrap_or(Value::Null),
            },
            kind::BROADCAST_CLIENT_COUNT => Message::BroadcastClientCount {
                request_id: req_id(data)?,
                count: data
                    .get("clientCount")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(DecodeError::Shape("clientCount"))?,
            },
            kind::BROADCAST_ACK => {
                let args = match data.get("args") {
                    Some(Value::Array(a)) => a.clone(),
                    _ => vec![data.get("packet").cloned().unwrap_or(Value::Null)],
                };
                Message::BroadcastAck {
                    request_id: req_id(data)?,
                    args,
                    binary,
                    sid: data.get("sid").and_then(Value::as_str).map(str::to_owned),
                }
            }
            kind::ADAPTER_CLOSE => Message::AdapterClose,
            _ => return Err(DecodeError::Shape("unknown type")),
        };
        Ok(Envelope { uid, nsp, msg })
    }
}

/// What `@socket.io/redis-emitter` (and the classic Redis adapter) publish, on the classic
/// channels.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EmitterMessage {
    /// A broadcast: msgpack `[uid, packet, opts]`.
    Broadcast {
        /// The namespace the packet names (`/` when absent).
        nsp: String,
        /// The event.
        packet: BroadcastPacket,
        /// Who for.
        sel: Selector,
    },
    /// A request (JSON on `{key}-request#{N}#`): join (2), leave (3), disconnect (4), server
    /// side emit (6, fire and forget), as the node-protocol message it amounts to.
    Request(Message),
}

impl EmitterMessage {
    /// Decodes a broadcast from a classic broadcast channel.
    pub fn decode_broadcast(bytes: &[u8], max: usize) -> Result<EmitterMessage, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { size: bytes.len(), max });
        }
        let (v, binary) = crate::msgpack::to_json(bytes)?;
        let arr = v.as_array().ok_or(DecodeError::Shape("not [uid, packet, opts]"))?;
        let packet = arr.get(1).ok_or(DecodeError::Shape("packet"))?;
        let nsp = packet.get("nsp").and_then(Value::as_str).unwrap_or("/").to_owned();
        Ok(EmitterMessage::Broadcast { nsp, packet: packet_of(Some(packet), binary)?, sel: selector_of(arr.get(2)) })
    }

    /// Decodes a request from the classic request channel.
    pub fn decode_request(bytes: &[u8], max: usize) -> Result<EmitterMessage, DecodeError> {
        if bytes.len() > max {
            return Err(DecodeError::TooLarge { size: bytes.len(), max });
        }
        let v: Value = if bytes.first() == Some(&b'{') {
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Syntax(e.to_string()))?
        } else {
            crate::msgpack::to_json(bytes)?.0
        };
        let msg = match v.get("type").and_then(Value::as_u64) {
            Some(2) => Message::SocketsJoin { sel: selector_of(v.get("opts")), rooms: rooms_of(v.get("rooms")) },
            Some(3) => Message::SocketsLeave { sel: selector_of(v.get("opts")), rooms: rooms_of(v.get("rooms")) },
            Some(4) => Message::DisconnectSockets {
                sel: selector_of(v.get("opts")),
                close: v.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            Some(6) => {
                let packet = v.get("data").and_then(Value::as_array).cloned().ok_or(DecodeError::Shape("data"))?;
                Message::ServerSideEmit { packet, request_id: None }
            }
            _ => return Err(DecodeError::Shape("unsupported request type")),
        };
        Ok(EmitterMessage::Request(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(msg: Message) -> Envelope {
        Envelope { uid: "0123456789abcdef".into(), nsp: "/chat".into(), msg }
    }

    #[test]
    fn json_roundtrip_of_every_type() {
        let mut opts = BroadcastOptions { rooms: vec![Room::from("r")], volatile: true, ..Default::default() };
        opts.except_names(["x".to_owned(), switchboard_socketio::engineio::Sid::generate().to_string()]);
        let sel = Selector { opts, timeout_ms: Some(1500) };
        let packet = BroadcastPacket::event("ev", vec![json!(1), json!({"a": "b"})], vec![])
            .unwrap_or_else(|_| BroadcastPacket { data: json!(["ev"]), binary: vec![] });
        let msgs = vec![
            Message::InitialHeartbeat,
            Message::Heartbeat(Some(json!({"name": "n1"}))),
            Message::Broadcast { packet: packet.clone(), sel: sel.clone(), request_id: None, count_request: None },
            Message::Broadcast {
                packet,
                sel: sel.clone(),
                request_id: Some("abc".into()),
                count_request: Some("c".into()),
            },
            Message::SocketsJoin { sel: sel.clone(), rooms: vec![Room::from("a")] },
            Message::SocketsLeave { sel: sel.clone(), rooms: vec![Room::from("a")] },
            Message::DisconnectSockets { sel: sel.clone(), close: true },
            Message::FetchSockets { sel, request_id: "r1".into() },
            Message::FetchSocketsResponse {
                request_id: "r1".into(),
                sockets: vec![SocketInfo {
                    id: "s".into(),
                    handshake: json!({}),
                    rooms: vec!["s".into()],
                    data: json!(1),
                    node: None,
                }],
            },
            Message::ServerSideEmit { packet: vec![json!("e"), json!(2)], request_id: Some("r2".into()) },
            Message::ServerSideEmitResponse { request_id: "r2".into(), packet: json!("ok") },
            Message::BroadcastClientCount { request_id: "r3".into(), count: 7 },
            Message::BroadcastAck {
                request_id: "r3".into(),
                args: vec![json!(1), json!(2)],
                binary: vec![],
                sid: None,
            },
            Message::AdapterClose,
        ];
        for m in msgs {
            let e = env(m);
            let wire = e.encode();
            assert_eq!(wire[0], b'{', "JSON without binary");
            assert_eq!(Envelope::decode(&wire, 1 << 20), Ok(e));
        }
    }

    #[test]
    fn binary_makes_the_whole_envelope_msgpack() {
        let bin = Bytes::from_static(&[0, 1, 2, 255]);
        let packet = BroadcastPacket::event("file", vec![json!({"n": 1}), json!(null)], vec![bin.clone()])
            .unwrap_or_else(|_| BroadcastPacket { data: json!(["file"]), binary: vec![] });
        let e = env(Message::Broadcast { packet, sel: Selector::default(), request_id: None, count_request: None });
        let wire = e.encode();
        assert_ne!(wire[0], b'{');
        let back = Envelope::decode(&wire, 1 << 20).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(back, e);
    }

    #[test]
    fn a_node_sharded_adapter_broadcast_is_understood() {
        // As Node's sharded adapter sends it: no nsp in the packet, flags empty.
        let wire = br#"{"uid":"aaaabbbbccccdddd","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["hi",1,"two"]},"opts":{"rooms":["r1",5],"except":["r2"],"flags":{}}}}"#;
        let e = Envelope::decode(wire, 1 << 20).unwrap_or_else(|err| panic!("{err}"));
        let Message::Broadcast { packet, sel, request_id, .. } = e.msg else { panic!("not a broadcast") };
        assert_eq!(packet.data, json!(["hi", 1, "two"]));
        assert_eq!(sel.opts.rooms, vec![Room::from("r1"), Room::from("5")]);
        assert_eq!(sel.opts.except_rooms, vec![Room::from("r2")]);
        assert_eq!(request_id, None);
    }

    #[test]
    fn garbage_truncated_and_huge_messages_are_errors() {
        assert!(Envelope::decode(&[0u8; 100], 1 << 20).is_err());
        assert!(matches!(Envelope::decode(b"{\"uid\":", 1 << 20), Err(DecodeError::Syntax(_))));
        assert!(matches!(Envelope::decode(b"{}", 1 << 20), Err(DecodeError::Shape("type"))));
        assert!(matches!(Envelope::decode(br#"{"type":99}"#, 1 << 20), Err(DecodeError::Shape(_))));
        assert!(matches!(
            Envelope::decode(br#"{"type":3,"data":{"packet":{"type":2,"data":[1]}}}"#, 1 << 20),
            Err(DecodeError::Shape("event name"))
        ));
        let big = vec![b' '; 2048];
        assert_eq!(Envelope::decode(&big, 1024), Err(DecodeError::TooLarge { size: 2048, max: 1024 }));
        // Truncated msgpack: a map that promises more than it has.
        assert!(Envelope::decode(&[0x85, 0xa3, b'u', b'i', b'd'], 1 << 20).is_err());
        // Deep nesting does not overflow the stack.
        let deep = vec![0x91u8; 100_000];
        assert!(Envelope::decode(&deep, 1 << 20).is_err());
    }

    #[test]
    fn emitter_messages_are_understood() {
        // ["emitter", {type:2, data:["ev", 1], nsp:"/"}, {rooms:["r"], flags:{}, except:[]}]
        let v = rmpv::Value::Array(vec![
            "emitter".into(),
            rmpv::Value::Map(vec![
                ("type".into(), 2.into()),
                ("data".into(), rmpv::Value::Array(vec!["ev".into(), 1.into(), rmpv::Value::Binary(vec![9, 9])])),
                ("nsp".into(), "/".into()),
            ]),
            rmpv::Value::Map(vec![
                ("rooms".into(), rmpv::Value::Array(vec!["r".into()])),
                ("flags".into(), rmpv::Value::Map(vec![])),
                ("except".into(), rmpv::Value::Array(vec![])),
            ]),
        ]);
        let mut wire = Vec::new();
        rmpv::encode::write_value(&mut wire, &v).unwrap_or_default();
        let m = EmitterMessage::decode_broadcast(&wire, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        let EmitterMessage::Broadcast { nsp, packet, sel } = m else { panic!("not a broadcast") };
        assert_eq!(nsp, "/");
        assert_eq!(packet.data, json!(["ev", 1, {"_placeholder": true, "num": 0}]));
        assert_eq!(packet.binary, vec![Bytes::from_static(&[9, 9])]);
        assert_eq!(sel.opts.rooms, vec![Room::from("r")]);
        let join =
            EmitterMessage::decode_request(br#"{"type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}"#, 1024);
        assert!(matches!(join, Ok(EmitterMessage::Request(Message::SocketsJoin { .. }))));
        let sse = EmitterMessage::decode_request(br#"{"uid":"emitter","type":6,"data":["hello",1]}"#, 1024);
        assert!(matches!(sse, Ok(EmitterMessage::Request(Message::ServerSideEmit { request_id: None, .. }))));
    }
}
