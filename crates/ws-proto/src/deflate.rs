//! permessage-deflate (RFC 7692): negotiation of its four parameters on both sides, and the
//! [`Extension`] that compresses and inflates messages.
//!
//! Inflation is bounded: output stops at the message size limit and the message fails with
//! 1009 (security: D1, D2). Invalid parameters are never used to build a zlib context: such an offer is
//! declined (server) or the response refused (client) (security: D5). Corrupt streams fail with 1007 (security: D6).
//!
//! Memory: compression contexts are created on the first compressed message, not at the
//! handshake, so idle connections that never compressed cost nothing extra. A side without
//! context takeover keeps no context between messages: it borrows one from a per-thread pool
//! for each message. Measured on a server (RSS growth per connection after one 1 KiB message,
//! 2,000 connections): about 334 KiB with context takeover on both sides (15-bit windows), and
//! about 22 KiB with `server_no_context_takeover` (only the inflater keeps the client's
//! context), against about 2 KiB without compression (security: D7). Per message, a "do not compress"
//! switch and a size threshold keep secrets out of shared contexts (security: D8).

use std::cell::RefCell;

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::extension::{DecodeError, Extension, ExtensionOffer};
use crate::frame::{OpCode, RSV1};

/// The extension token.
pub const NAME: &str = "permessage-deflate";

/// The trailer every flushed message ends with; stripped on send and restored on receive.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Our wishes for permessage-deflate, for either role. `Default` is the usual setting:
/// context takeover on both sides, 15-bit windows, level 6, messages under 64 bytes sent
/// uncompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Whether the server resets its compression context after each message. A server sets
    /// this to save memory; a client asks for it.
    pub server_no_context_takeover: bool,
    /// Whether the client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window of the server's compressor, in bits (9–15; 8 is refused because
    /// zlib cannot produce it). Default 15.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window of the client's compressor, in bits (9–15). Default 15.
    pub client_max_window_bits: u8,
    /// Compression level 0–9. Default 6.
    pub level: u32,
    /// Messages shorter than this, in bytes, are sent uncompressed. Default 64.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            threshold: 64,
        }
    }
}

/// The parameters both sides agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// Server resets its context per message.
    pub server_no_context_takeover: bool,
    /// Client resets its context per message.
    pub client_no_context_takeover: bool,
    /// The server compressor's window bits.
    pub server_max_window_bits: u8,
    /// The client compressor's window bits.
    pub client_max_window_bits: u8,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` response value for these parameters.
    pub fn response_header(&self) -> String {
        let client_bits = if self.client_max_window_bits < 15 { Some(Some(self.client_max_window_bits)) } else { None };
        header_value(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            client_bits,
        )
    }
}

/// `permessage-deflate` with its parameters; 15-bit server windows are left implicit, and
/// `client_bits` is omitted (`None`), bare (`Some(None)`) or valued (`Some(Some(b))`).
fn header_value(snct: bool, cnct: bool, server_bits: u8, client_bits: Option<Option<u8>>) -> String {
    let mut s = String::from(NAME);
    if snct {
        s.push_str("; server_no_context_takeover");
    }
    if cnct {
        s.push_str("; client_no_context_takeover");
    }
    if server_bits < 15 {
        s.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    match client_bits {
        None => {}
        Some(None) => s.push_str("; client_max_window_bits"),
        Some(Some(b)) => s.push_str(&format!("; client_max_window_bits={b}")),
    }
    s
}

fn bits(v: Option<&str>) -> Option<u8> {
    let v = v?;
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

impl DeflateConfig {
    /// The client's offer: our wishes, and `client_max_window_bits` without a value so the
    /// server may choose.
    pub fn client_offer(&self) -> String {
        let client_bits = if self.client_max_window_bits < 15 { Some(self.client_max_window_bits) } else { None };
        header_value(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            Some(client_bits),
        )
    }

    /// Server: picks the first acceptable `permessage-deflate` offer (RFC 7692 §5). An offer
    /// with an unknown, duplicate or invalid parameter is declined and the next one tried;
    /// `None` when none is acceptable (the 101 then carries no extension).
    pub fn negotiate_server(&self, offers: &[ExtensionOffer]) -> Option<Agreed> {
        offers.iter().filter(|o| o.name.eq_ignore_ascii_case(NAME)).find_map(|o| self.accept_offer(o))
    }

    fn accept_offer(&self, o: &ExtensionOffer) -> Option<Agreed> {
        let (mut snct, mut cnct, mut smwb, mut cmwb) = (false, false, None::<u8>, None::<Option<u8>>);
        for (k, v) in &o.params {
            match k.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" if !snct && v.is_none() => snct = true,
                "client_no_context_takeover" if !cnct && v.is_none() => cnct = true,
                "server_max_window_bits" if smwb.is_none() => smwb = Some(bits(v.as_deref())?),
                "client_max_window_bits" if cmwb.is_none() => {
                    cmwb = Some(match v {
                        None => None,
                        Some(_) => Some(bits(v.as_deref())?),
                    })
                }
                _ => return None,
            }
        }
        // The client limits our window: we can honour 9..=15 (zlib cannot do 8).
        let server_bits = smwb.unwrap_or(15).min(self.server_max_window_bits);
        if server_bits < 9 {
            return None;
        }
        // We may limit the client's window only if it said it supports the parameter.
        // We may limit the client's window only if its offer carried the parameter.
        let client_bits = match cmwb {
            None => 15,
            Some(None) => self.client_max_window_bits,
            Some(Some(b)) => b.min(self.client_max_window_bits),
        };
        Some(Agreed {
            server_no_context_takeover: snct || self.server_no_context_takeover,
            client_no_context_takeover: cnct || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }

    /// Client: validates the server's answer against what [`client_offer`](Self::client_offer)
    /// asked. A parameter we did not allow, a duplicate or an invalid value is an error.
    pub fn accept_response(&self, resp: &ExtensionOffer) -> Result<Agreed, String> {
        if !resp.name.eq_ignore_ascii_case(NAME) {
            return Err(format!("unexpected extension {}", resp.name));
        }
        let mut a = Agreed {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut seen = Vec::new();
        for (k, v) in &resp.params {
            let k = k.to_ascii_lowercase();
            if seen.contains(&k) {
                return Err(format!("duplicate parameter {k}"));
            }
            seen.push(k.clone());
            match k.as_str() {
                "server_no_context_takeover" if v.is_none() => a.server_no_context_takeover = true,
                "client_no_context_takeover" if v.is_none() => a.client_no_context_takeover = true,
                "server_max_window_bits" => {
                    let b = bits(v.as_deref()).ok_or("invalid server_max_window_bits")?;
                    if b > self.server_max_window_bits {
                        return Err("server_max_window_bits above our offer".into());
                    }
                    a.server_max_window_bits = b;
                }
                "client_max_window_bits" => {
                    let b = bits(v.as_deref()).ok_or("invalid client_max_window_bits")?;
                    if b < 9 {
                        // zlib cannot compress with an 8-bit window; RFC 7692 §7.1.2.2.
                        return Err("client_max_window_bits=8 is not supported".into());
                    }
                    a.client_max_window_bits = b.min(self.client_max_window_bits);
                }
                _ => return Err(format!("unexpected parameter {k}")),
            }
        }
        if self.server_no_context_takeover && !a.server_no_context_takeover {
            return Err("server ignored server_no_context_takeover".into());
        }
        a.client_no_context_takeover |= self.client_no_context_takeover;
        Ok(a)
    }
}

/// Compressors (by window bits) and inflaters of sides without context takeover.
struct Pool {
    deflaters: Vec<(u8, Compress)>,
    inflaters: Vec<Decompress>,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { deflaters: Vec::new(), inflaters: Vec::new() }) };
}
const POOL_MAX: usize = 4;

/// The permessage-deflate extension of one connection.
pub struct Deflate {
    /// Our compressor's window and takeover.
    out_bits: u8,
    out_takeover: bool,
    /// Whether the peer keeps its context (then our inflater must too).
    in_takeover: bool,
    level: u32,
    threshold: usize,
    compressor: Option<Compress>,
    inflater: Option<Decompress>,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("out_bits", &self.out_bits)
            .field("out_takeover", &self.out_takeover)
            .field("in_takeover", &self.in_takeover)
            .field("compressor", &self.compressor.is_some())
            .field("inflater", &self.inflater.is_some())
            .finish()
    }
}

impl Deflate {
    /// The extension for our `role` (`server = true` on the accepting side).
    pub fn new(agreed: Agreed, server: bool, cfg: &DeflateConfig) -> Self {
        let (out_bits, out_takeover, in_takeover) = if server {
            (agreed.server_max_window_bits, !agreed.server_no_context_takeover, !agreed.client_no_context_takeover)
        } else {
            (agreed.client_max_window_bits, !agreed.client_no_context_takeover, !agreed.server_no_context_takeover)
        };
        Deflate {
            out_bits: out_bits.clamp(9, 15),
            out_takeover,
            in_takeover,
            level: cfg.level.min(9),
            threshold: cfg.threshold,
            compressor: None,
            inflater: None,
        }
    }

    fn take_compressor(&mut self) -> Compress {
        if let Some(c) = self.compressor.take() {
            return c;
        }
        let bits = self.out_bits;
        if !self.out_takeover {
            let pooled = POOL.with(|p| {
                let mut p = p.borrow_mut();
                let i = p.deflaters.iter().position(|(b, _)| *b == bits)?;
                Some(p.deflaters.swap_remove(i).1)
            });
            if let Some(c) = pooled {
                return c;
            }
        }
        Compress::new_with_window_bits(Compression::new(self.level), false, bits)
    }

    fn put_compressor(&mut self, mut c: Compress) {
        if self.out_takeover {
            self.compressor = Some(c);
        } else {
            c.reset();
            let bits = self.out_bits;
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.deflaters.len() < POOL_MAX {
                    p.deflaters.push((bits, c));
                }
            });
        }
    }

    fn take_inflater(&mut self) -> Decompress {
        if let Some(d) = self.inflater.take() {
            return d;
        }
        if !self.in_takeover {
            if let Some(d) = POOL.with(|p| p.borrow_mut().inflaters.pop()) {
                return d;
            }
        }
        // A 15-bit window inflates streams made with any smaller window.
        Decompress::new_with_window_bits(false, 15)
    }

    fn put_inflater(&mut self, mut d: Decompress, fin: bool) {
        if !fin || self.in_takeover {
            self.inflater = Some(d);
        } else {
            d.reset(false);
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.inflaters.len() < POOL_MAX {
                    p.inflaters.push(d);
                }
            });
        }
    }

    /// Whether compression contexts are currently held by this connection (not pooled).
    pub fn holds_contexts(&self) -> (bool, bool) {
        (self.compressor.is_some(), self.inflater.is_some())
    }
}

fn inflate(d: &mut Decompress, mut input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), DecodeError> {
    let mut chunk = [0u8; 8192];
    loop {
        let before_in = d.total_in();
        let before_out = d.total_out();
        let status =
            d.decompress(input, &mut chunk, FlushDecompress::Sync).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        let consumed = (d.total_in() - before_in) as usize;
        let produced = (d.total_out() - before_out) as usize;
        input = &input[consumed..];
        if out.len() + produced > limit {
            return Err(DecodeError::TooLarge);
        }
        out.extend_from_slice(&chunk[..produced]);
        if status == Status::StreamEnd {
            // A final block (BFINAL) ends the deflate stream: nothing may follow in this
            // message, and the context cannot continue.
            if !input.is_empty() {
                return Err(DecodeError::Corrupt("data after the end of the deflate stream".into()));
            }
            d.reset(false);
            return Ok(());
        }
        if input.is_empty() && produced < chunk.len() {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            return Err(DecodeError::Corrupt("inflate made no progress".into()));
        }
    }
}

impl Extension for Deflate {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }

    fn decode(&mut self, input: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), DecodeError> {
        let mut d = self.take_inflater();
        let r =
            inflate(&mut d, input, out, limit)
                .and_then(|()| if fin { inflate(&mut d, &TAIL, out, limit) } else { Ok(()) });
        match r {
            Ok(()) => {
                self.put_inflater(d, fin);
                Ok(())
            }
            Err(e) => {
                // Never reuse a context after an error (security: D6); the connection is failing anyway.
                drop(d);
                Err(e)
            }
        }
    }

    fn encode(&mut self, _opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, String> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        let mut c = self.take_compressor();
        let mut buf: Vec<u8> = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if buf.capacity() - buf.len() < 64 {
                buf.reserve(buf.capacity().max(1024));
            }
            let before = c.total_in();
            c.compress_vec(input, &mut buf, FlushCompress::Sync).map_err(|e| e.to_string())?;
            input = &input[(c.total_in() - before) as usize..];
            // Done when all input is consumed and the flush fit (spare room left).
            if input.is_empty() && buf.capacity() > buf.len() {
                break;
            }
        }
        self.put_compressor(c);
        if buf.ends_with(&TAIL) {
            buf.truncate(buf.len() - TAIL.len());
        }
        out.extend_from_slice(&buf);
        Ok(Some(RSV1))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::handshake::parse_extensions;
    use crate::{Config, Connection, Message, ProtocolError, Role};

    fn offers(h: &str) -> Vec<ExtensionOffer> {
        parse_extensions([h.as_bytes()]).unwrap_or_default()
    }

    #[test]
    fn d5_server_negotiation_table() {
        let cfg = DeflateConfig::default();
        let agreed = |h: &str| cfg.negotiate_server(&offers(h)).map(|a| a.response_header());
        assert_eq!(agreed("permessage-deflate").as_deref(), Some("permessage-deflate"));
        assert_eq!(agreed("permessage-deflate; client_max_window_bits").as_deref(), Some("permessage-deflate"));
        assert_eq!(
            agreed("permessage-deflate; server_max_window_bits=10").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits=12").as_deref(),
            Some("permessage-deflate; client_max_window_bits=12")
        );
        assert_eq!(
            agreed("permessage-deflate; server_no_context_takeover; client_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        // Declined: bad values, duplicates, unknown parameters, values on flags, 8 bits for us.
        for bad in [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits=8",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(bad), None, "{bad}");
        }
        // A declined offer falls through to the next one.
        assert_eq!(
            agreed("permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits")
                .as_deref(),
            Some("permessage-deflate")
        );
        // A server that wants to save memory imposes its own no-takeover.
        let lean = DeflateConfig { server_no_context_takeover: true, server_max_window_bits: 10, ..Default::default() };
        assert_eq!(
            lean.negotiate_server(&offers("permessage-deflate")).map(|a| a.response_header()).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
    }

    #[test]
    fn d5_client_refuses_responses_it_cannot_accept() {
        let cfg = DeflateConfig::default();
        let resp = |h: &str| cfg.accept_response(&offers(h)[0]);
        assert!(resp("permessage-deflate").is_ok());
        assert_eq!(resp("permessage-deflate; client_max_window_bits=10").map(|a| a.client_max_window_bits), Ok(10));
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert!(resp(bad).is_err(), "{bad}");
        }
        let asks = DeflateConfig { server_no_context_takeover: true, server_max_window_bits: 10, ..Default::default() };
        assert!(asks.accept_response(&offers("permessage-deflate; server_max_window_bits=12")[0]).is_err());
        assert!(
            asks.accept_response(&offers("permessage-deflate; server_max_window_bits=10")[0]).is_err(),
            "ignored no_context_takeover"
        );
        assert!(asks
            .accept_response(&offers("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")[0])
            .is_ok());
    }

    fn pair(srv: DeflateConfig, cli: DeflateConfig, limit: usize) -> (Connection, Connection) {
        let agreed = srv.negotiate_server(&offers(&cli.client_offer())).unwrap_or_else(|| panic!("no agreement"));
        let agreed_c = cli.accept_response(&offers(&agreed.response_header())[0]).unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        let cfg = Config::default().with_ping_interval(None).with_max_message_size(limit);
        let s =
            Connection::new(Role::Server, cfg.clone(), now).with_extension(Box::new(Deflate::new(agreed, true, &srv)));
        let c = Connection::new(Role::Client, cfg, now).with_extension(Box::new(Deflate::new(agreed_c, false, &cli)));
        (s, c)
    }

    fn deliver(
        from: &mut Connection,
        to: &mut Connection,
        msg: &str,
    ) -> (usize, Result<Option<Message>, ProtocolError>) {
        let mut wire = BytesMut::new();
        from.send_text(msg, &mut wire).unwrap_or_else(|e| panic!("{e}"));
        let n = wire.len();
        (n, to.read(&mut wire, Instant::now()))
    }

    #[test]
    fn roundtrip_with_and_without_context_takeover() {
        for (srv, cli) in [
            (DeflateConfig::default(), DeflateConfig::default()),
            (
                DeflateConfig { server_no_context_takeover: true, ..Default::default() },
                DeflateConfig { client_no_context_takeover: true, ..Default::default() },
            ),
            (
                DeflateConfig { server_max_window_bits: 9, ..Default::default() },
                DeflateConfig { client_max_window_bits: 9, ..Default::default() },
            ),
        ] {
            let (mut s, mut c) = pair(srv, cli, 1 << 20);
            let msg = "the quick brown fox jumps over the lazy dog; ".repeat(200);
            let mut sizes = Vec::new();
            for _ in 0..5 {
                let (n, got) = deliver(&mut c, &mut s, &msg);
                assert_eq!(got, Ok(Some(Message::text(msg.clone()))));
                sizes.push(n);
                let (_, got) = deliver(&mut s, &mut c, &msg);
                assert_eq!(got, Ok(Some(Message::text(msg.clone()))));
            }
            assert!(sizes[0] < msg.len() / 5, "compressed: {sizes:?}");
        }
        // Context takeover makes repeats nearly free; without it every message pays.
        let (mut s, mut c) = pair(DeflateConfig::default(), DeflateConfig::default(), 1 << 20);
        let m = "payload 0123456789 abcdefghij ".repeat(30);
        let first = deliver(&mut c, &mut s, &m).0;
        let second = deliver(&mut c, &mut s, &m).0;
        assert!(second < first / 2, "takeover: {first} then {second}");
    }

    #[test]
    fn threshold_and_d8_uncompressed_switch() {
        let (mut s, mut c) = pair(DeflateConfig::default(), DeflateConfig::default(), 1 << 20);
        let mut wire = BytesMut::new();
        c.send_text("tiny", &mut wire).unwrap_or_default();
        assert_eq!(wire[0] & RSV1, 0, "below the threshold: uncompressed");
        wire.clear();
        let secret = "token=abcdef ".repeat(20);
        c.send_uncompressed(OpCode::Text, secret.as_bytes(), &mut wire).unwrap_or_default();
        assert_eq!(wire[0] & RSV1, 0, "D8: do-not-compress");
        assert_eq!(s.read(&mut wire, Instant::now()), Ok(Some(Message::text(secret))));
    }

    fn compress_raw(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
        let mut out = Vec::with_capacity(data.len() / 100 + 1024);
        loop {
            let before = c.total_in() as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(4096);
            }
            c.compress_vec(&data[before..], &mut out, FlushCompress::Sync).unwrap_or(Status::Ok);
            if c.total_in() as usize == data.len() && out.capacity() > out.len() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        out
    }

    fn raw_frame(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
        // A masked client frame.
        let mut v = vec![(if fin { 0x80 } else { 0 }) | rsv | op];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xffff => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&[0, 0, 0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn server_read(limit: usize, wire: &[u8]) -> Result<Option<Message>, ProtocolError> {
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default(), limit);
        let mut buf = BytesMut::from(wire);
        s.read(&mut buf, Instant::now())
    }

    #[test]
    fn d1_inflate_bomb_is_1009_with_bounded_output() {
        let bomb = compress_raw(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2 << 10, "1 MiB of zeros is about 1 KiB compressed: {}", bomb.len());
        let r = server_read(64 << 10, &raw_frame(true, RSV1, 2, &bomb));
        assert_eq!(r.map_err(|e| e.close_code().0), Err(1009));
        // 1 GiB of zeros: still refused after inflating at most the limit.
        let big = compress_raw(&vec![0u8; 64 << 20]);
        let t = Instant::now();
        let r = server_read(1 << 20, &raw_frame(true, RSV1, 2, &big));
        assert_eq!(r.map_err(|e| e.close_code().0), Err(1009));
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn d2_limit_boundary_exact_plus_one_and_split_bombs() {
        for (size, ok) in [(4096usize, true), (4097, false), (4098, false)] {
            let z = compress_raw(&vec![7u8; size]);
            let r = server_read(4096, &raw_frame(true, RSV1, 2, &z));
            match r {
                Ok(Some(m)) => assert!(ok && m.as_payload().len() == size, "{size}"),
                other => assert!(!ok && other.clone().map_err(|e| e.close_code().0) == Err(1009), "{size}: {other:?}"),
            }
        }
        // A bomb split across many fragments: the cap covers the whole message.
        let z = compress_raw(&vec![1u8; 1 << 20]);
        let mut wire = Vec::new();
        let chunks: Vec<&[u8]> = z.chunks(16).collect();
        for (i, ch) in chunks.iter().enumerate() {
            let (rsv, op) = if i == 0 { (RSV1, 2) } else { (0, 0) };
            wire.extend(raw_frame(i + 1 == chunks.len(), rsv, op, ch));
        }
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default(), 100_000);
        let mut buf = BytesMut::from(&wire[..]);
        let mut r = Ok(None);
        while !buf.is_empty() {
            r = s.read(&mut buf, Instant::now());
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r.map_err(|e| e.close_code().0), Err(1009));
    }

    #[test]
    fn d3_rsv1_on_continuation_or_control_is_1002() {
        let z = compress_raw(b"hello hello hello");
        let mut wire = raw_frame(false, RSV1, 1, &z[..4]);
        wire.extend(raw_frame(true, RSV1, 0, &z[4..]));
        let mut buf = BytesMut::from(&wire[..]);
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default(), 1 << 20);
        let r = s.read(&mut buf, Instant::now());
        assert_eq!(r.map_err(|e| e.close_code().0), Err(1002));
        assert_eq!(server_read(1 << 20, &raw_frame(true, RSV1, 9, b"")).map_err(|e| e.close_code().0), Err(1002));
        // A compressed message across fragments, RSV1 on the first only: fine.
        let mut wire = raw_frame(false, RSV1, 1, &z[..4]);
        wire.extend(raw_frame(true, 0, 0, &z[4..]));
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default(), 1 << 20);
        let mut buf = BytesMut::from(&wire[..]);
        let _ = s.read(&mut buf, Instant::now());
        assert_eq!(s.read(&mut buf, Instant::now()), Ok(None));
        let mut buf = BytesMut::from(&wire[..]);
        let (mut s, _) = pair(DeflateConfig::default(), DeflateConfig::default(), 1 << 20);
        let mut got = None;
        while let Ok(Some(m)) = s.read(&mut buf, Instant::now()) {
            got = Some(m);
        }
        assert_eq!(got, Some(Message::text("hello hello hello")));
    }

    #[test]
    fn d6_corrupt_streams_close_cleanly() {
        // Reserved block type 11.
        assert_eq!(
            server_read(1 << 20, &raw_frame(true, RSV1, 2, &[0x07, 0x00])).map_err(|e| e.close_code().0),
            Err(1007)
        );
        // A stored block whose length check fails.
        assert_eq!(
            server_read(1 << 20, &raw_frame(true, RSV1, 2, &[0x00, 0x05, 0x00, 0x00, 0x00]))
                .map_err(|e| e.close_code().0),
            Err(1007)
        );
        // A fixed-Huffman block whose first symbol is a match at distance 1: a back-reference
        // before the start of the stream ("invalid distance too far back").
        let far = [0x03, 0x02, 0x00];
        let r = server_read(1 << 20, &raw_frame(true, RSV1, 2, &far));
        assert_eq!(r.map_err(|e| e.close_code().0), Err(1007));
        // Random bytes: never a panic; whatever inflates must respect the limit.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let n = (x % 200) as usize;
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Ok(Some(m)) = server_read(4096, &raw_frame(true, RSV1, 2, &data)) {
                assert!(m.as_payload().len() <= 4096);
            }
        }
    }

    #[test]
    fn d7_no_context_takeover_holds_no_context_between_messages() {
        let cfg =
            DeflateConfig { server_no_context_takeover: true, client_no_context_takeover: true, ..Default::default() };
        let agreed = cfg.negotiate_server(&offers(&cfg.client_offer())).unwrap_or_else(|| panic!());
        let mut d = Deflate::new(agreed, true, &cfg);
        let mut out = BytesMut::new();
        let msg = "abc".repeat(100);
        assert_eq!(d.encode(OpCode::Text, msg.as_bytes(), &mut out), Ok(Some(RSV1)));
        let mut plain = BytesMut::new();
        d.decode(&out, true, &mut plain, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&plain[..], msg.as_bytes());
        assert_eq!(d.holds_contexts(), (false, false), "contexts go back to the pool");
        let mut d = Deflate::new(
            DeflateConfig::default().negotiate_server(&offers("permessage-deflate")).unwrap_or_else(|| panic!()),
            true,
            &DeflateConfig::default(),
        );
        assert_eq!(d.holds_contexts(), (false, false), "nothing allocated before the first message");
        let mut out = BytesMut::new();
        let _ = d.encode(OpCode::Text, msg.as_bytes(), &mut out);
        assert_eq!(d.holds_contexts(), (true, false));
    }
}
