//! Request checks and the handshake: query parameters, error codes, session ids, the `open`
//! packet.

use std::time::Duration;

use base64::Engine;

/// The protocol's error codes, sent as `400 {"code":N,"message":"…"}` (403 for `Forbidden`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: the `transport` parameter is missing or unknown.
    TransportUnknown,
    /// 1: no session has this `sid`.
    SessionIdUnknown,
    /// 2: a handshake (no `sid`) that is not a GET.
    BadHandshakeMethod,
    /// 3: anything else malformed (duplicate parameters, a bad body, overlapping polls).
    BadRequest,
    /// 4: refused by policy (Origin, authentication).
    Forbidden,
    /// 5: `EIO` is missing or not 4.
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::TransportUnknown => 0,
            ErrorCode::SessionIdUnknown => 1,
            ErrorCode::BadHandshakeMethod => 2,
            ErrorCode::BadRequest => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::UnsupportedProtocolVersion => 5,
        }
    }

    /// The message the reference server sends.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::TransportUnknown => "Transport unknown",
            ErrorCode::SessionIdUnknown => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The HTTP status: 403 for `Forbidden`, 400 otherwise.
    pub fn status(self) -> u16 {
        if self == ErrorCode::Forbidden {
            403
        } else {
            400
        }
    }

    /// The JSON body.
    pub fn body(self) -> String {
        format!("{{\"code\":{},\"message\":\"{}\"}}", self.code(), self.message())
    }
}

/// A transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

/// A session (or socket) id: the 32-bit tag of the node that made it, then 128 bits from the
/// thread's CSPRNG (security: E8), shown as 27 base64url characters. The tag lets any node of
/// a cluster tell which node owns a session (long-polling without sticky sessions); it is 0
/// on a single node.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; 20]);

/// The tag this process puts in the ids it makes ([`Sid::set_local_tag`]).
static LOCAL_TAG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Sid {
    /// The length of the textual form.
    pub const TEXT_LEN: usize = 27;

    /// A fresh id: this node's tag and 128 random bits.
    pub fn generate() -> Self {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&LOCAL_TAG.load(std::sync::atomic::Ordering::Relaxed).to_be_bytes());
        let r: [u8; 16] = rand::random();
        b[4..].copy_from_slice(&r);
        Sid(b)
    }

    /// Sets the node tag every id made from now on carries (a cluster node calls it once at
    /// start-up).
    pub fn set_local_tag(tag: u32) {
        LOCAL_TAG.store(tag, std::sync::atomic::Ordering::Relaxed);
    }

    /// The tag this process puts in its ids.
    pub fn local_tag() -> u32 {
        LOCAL_TAG.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tag of the node that made this id.
    pub fn tag(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Parses the textual form; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Sid> {
        if s.len() != Self::TEXT_LEN {
            return None;
        }
        let v = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Sid(v.try_into().ok()?))
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({self})")
    }
}

/// The checked query of an Engine.IO request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The transport asked for.
    pub transport: Transport,
    /// The session, absent on a handshake.
    pub sid: Option<Sid>,
}

impl Query {
    /// Checks `EIO=4`, `transport` and `sid` (security: E2). `is_get` tells whether the request is a
    /// GET: a handshake must be. A `sid` that is not even well-formed is
    /// [`ErrorCode::SessionIdUnknown`]; whether a well-formed one exists is for the server's
    /// session table to say (the same code).
    pub fn parse(query: &str, is_get: bool) -> Result<Query, ErrorCode> {
        let (mut eio, mut transport, mut sid) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "EIO" => &mut eio,
                "transport" => &mut transport,
                "sid" => &mut sid,
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return Err(ErrorCode::BadRequest);
            }
        }
        if eio != Some("4") {
            return Err(ErrorCode::UnsupportedProtocolVersion);
        }
        let transport = match transport {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::WebSocket,
            _ => return Err(ErrorCode::TransportUnknown),
        };
        let sid = match sid {
            None => {
                if !is_get {
                    return Err(ErrorCode::BadHandshakeMethod);
                }
                None
            }
            Some(s) => Some(Sid::parse(s).ok_or(ErrorCode::SessionIdUnknown)?),
        };
        Ok(Query { transport, sid })
    }
}

/// Heartbeat and size settings announced in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Interval between server pings. Default 25 s.
    pub ping_interval: Duration,
    /// How long the client may take to answer a ping. Default 20 s.
    pub ping_timeout: Duration,
    /// Largest payload (polling body or message) in bytes. Default 1,000,000.
    pub max_payload: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { ping_interval: Duration::from_secs(25), ping_timeout: Duration::from_secs(20), max_payload: 1_000_000 }
    }
}

/// The JSON of the `open` packet. `upgrades` lists `websocket` for a polling handshake.
pub fn open_json(sid: Sid, transport: Transport, t: &Timing) -> String {
    let upgrades = if transport == Transport::Polling { "[\"websocket\"]" } else { "[]" };
    format!(
        "{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
        t.ping_interval.as_millis(),
        t.ping_timeout.as_millis(),
        t.max_payload
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2_query_table() {
        let sid = Sid::generate().to_string();
        let ok = |q: &str, get: bool| Query::parse(q, get);
        assert_eq!(
            ok("EIO=4&transport=polling&t=N8hyd6w", true),
            Ok(Query { transport: Transport::Polling, sid: None })
        );
        assert_eq!(
            ok(&format!("EIO=4&transport=websocket&sid={sid}"), true).map(|q| q.transport),
            Ok(Transport::WebSocket)
        );
        let cases: &[(&str, bool, ErrorCode)] = &[
            ("transport=polling", true, ErrorCode::UnsupportedProtocolVersion),
            ("EIO=abc&transport=polling", true, ErrorCode::UnsupportedProtocolVersion),
            ("EIO=3&transport=polling", true, ErrorCode::UnsupportedProtocolVersion),
            ("EIO=4&transport=abc", true, ErrorCode::TransportUnknown),
            ("EIO=4&transport=__proto__", true, ErrorCode::TransportUnknown),
            ("EIO=4&transport=constructor", true, ErrorCode::TransportUnknown),
            ("EIO=4", true, ErrorCode::TransportUnknown),
            ("EIO=4&transport=polling", false, ErrorCode::BadHandshakeMethod),
            ("EIO=4&transport=polling&sid=unknown", true, ErrorCode::SessionIdUnknown),
            ("EIO=4&transport=polling&sid=__proto__", false, ErrorCode::SessionIdUnknown),
            ("EIO=4&EIO=4&transport=polling", true, ErrorCode::BadRequest),
            ("EIO=4&transport=polling&transport=websocket", true, ErrorCode::BadRequest),
        ];
        for (q, get, code) in cases {
            assert_eq!(ok(q, *get), Err(*code), "{q}");
        }
        assert_eq!(ErrorCode::TransportUnknown.body(), r#"{"code":0,"message":"Transport unknown"}"#);
        assert_eq!(
            ErrorCode::UnsupportedProtocolVersion.body(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#
        );
        assert_eq!(ErrorCode::Forbidden.status(), 403);
        assert_eq!(ErrorCode::BadRequest.status(), 400);
    }

    #[test]
    fn e8_session_ids_are_128_bit_and_unique() {
        let n = 100_000;
        let ids: std::collections::HashSet<String> = (0..n).map(|_| Sid::generate().to_string()).collect();
        assert_eq!(ids.len(), n);
        for s in ids.iter().take(100) {
            assert_eq!(s.len(), 27);
            assert_eq!(Sid::parse(s).map(|p| p.to_string()).as_deref(), Some(s.as_str()));
        }
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("!!!!!!!!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn ids_carry_the_node_tag_beside_128_random_bits() {
        let a = Sid::generate();
        assert_eq!(a.tag(), Sid::local_tag());
        let tagged = {
            let mut b = [0u8; 20];
            b[..4].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
            Sid(b)
        };
        let back = Sid::parse(&tagged.to_string()).unwrap();
        assert_eq!(back.tag(), 0xdead_beef);
        // The random part differs between ids of one node.
        let ids: std::collections::HashSet<[u8; 16]> =
            (0..1000).map(|_| Sid::generate().0[4..].try_into().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn open_packet_json() {
        let sid = Sid::generate();
        let j = open_json(sid, Transport::Polling, &Timing::default());
        assert_eq!(j, format!("{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}}"));
    }
}
