//! The connection state machine: frames in, messages out, owed replies and timers as outputs.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{ProtocolError, SendError};
use crate::extension::{DecodeError, Extension};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::utf8::{self, Partial, Utf8Bytes};

/// Which end of the connection we are. It decides masking: clients mask every frame they send
/// and servers none, and each side fails the connection (1002) when the other gets it wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection.
    Server,
    /// We opened the connection.
    Client,
}

/// The state of the connection, in the vocabulary of the browser `WebSocket.readyState`
/// (the I/O layer adds `Connecting` for the handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// The opening handshake is under way. A [`Connection`] starts after the handshake, so it
    /// never reports this; the I/O layer does while it connects.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// A Close frame was sent or received; the closing handshake is under way.
    Closing,
    /// The closing handshake is complete, or the connection failed: flush what is buffered and
    /// end the TCP connection (see [`Connection::should_close_transport`]).
    Closed,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    data: BytesMut,
    /// Frames received so far, empty ones included.
    frames: usize,
    /// Payload bytes received so far, as sent (before decompression).
    received: usize,
    /// Bytes of `data` known to be valid UTF-8 (always on a character boundary).
    utf8_checked: usize,
    /// Whether the extension transforms this message.
    transformed: bool,
    /// When the message must be complete.
    deadline: Option<Instant>,
}

/// A sans-IO WebSocket connection (after the handshake), for either role.
///
/// Inputs: [`read`](Self::read) with the bytes received, [`handle_timeout`](Self::handle_timeout)
/// when [`poll_timeout`](Self::poll_timeout) is reached, and the send calls
/// ([`send`](Self::send), [`ping`](Self::ping), [`close`](Self::close)). Outputs: messages
/// from `read`, and bytes to write, which the send calls and [`poll_transmit`](Self::poll_transmit)
/// append to a buffer the caller owns. Replies the protocol owes (pong, the Close echo) are
/// only ever produced by `poll_transmit`, never written from inside `read`.
///
/// ```
/// use std::time::Instant;
/// use bytes::BytesMut;
/// use switchboard_ws_proto::{Config, Connection, Message, Role};
///
/// let now = Instant::now();
/// let mut client = Connection::new(Role::Client, Config::default(), now);
/// let mut server = Connection::new(Role::Server, Config::default(), now);
/// let mut wire = BytesMut::new();
/// client.send_text("hello", &mut wire).unwrap();
/// assert_eq!(server.read(&mut wire, now).unwrap(), Some(Message::text("hello")));
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    /// Shared by every connection of an acceptor: limits cost one pointer per connection.
    config: Arc<Config>,
    ext: Option<Box<dyn Extension>>,
    /// Boxed: fragmented messages are rare, and idle connections should stay small.
    assembly: Option<Box<Assembly>>,
    /// The latest ping payload not yet answered (pongs are coalesced, RFC 6455 §5.5.3).
    pending_pong: Option<Bytes>,
    /// A keepalive ping to send.
    pending_ping: Option<Bytes>,
    /// A Close frame queued but not yet written (inner `None`: empty Close payload).
    pending_close: Option<Option<CloseFrame>>,
    close_sent: bool,
    close_received: bool,
    failed: bool,
    /// Set when the close timeout expired: drop the transport now.
    aborted: bool,
    close_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    ping_seq: u64,
    /// Bytes of the text frame at the front of the read buffer (after the UTF-8 carried over
    /// from earlier fragments) already validated while the frame is incomplete.
    peek_checked: usize,
}

impl Connection {
    /// A connection in the open state, as after a successful handshake. `now` starts the
    /// keepalive timer. Pass an `Arc<Config>` to share one configuration among connections.
    pub fn new(role: Role, config: impl Into<Arc<Config>>, now: Instant) -> Self {
        let config = config.into();
        let next_ping = config.ping_interval.map(|d| now + d);
        Connection {
            role,
            config,
            ext: None,
            assembly: None,
            pending_pong: None,
            pending_ping: None,
            pending_close: None,
            close_sent: false,
            close_received: false,
            failed: false,
            aborted: false,
            close_deadline: None,
            next_ping,
            pong_deadline: None,
            ping_seq: 0,
            peek_checked: 0,
        }
    }

    /// Plugs in a negotiated extension (builder style).
    #[must_use]
    pub fn with_extension(mut self, ext: Box<dyn Extension>) -> Self {
        self.ext = Some(ext);
        self
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The ready state.
    pub fn ready_state(&self) -> ReadyState {
        if self.aborted || (self.failed && self.close_sent) || (self.close_sent && self.close_received) {
            ReadyState::Closed
        } else if self.close_sent || self.close_received || self.pending_close.is_some() || self.failed {
            ReadyState::Closing
        } else {
            ReadyState::Open
        }
    }

    /// Whether the I/O layer should now flush and close the transport.
    ///
    /// True once closed, except for a client after a clean closing handshake: the RFC has the
    /// server close TCP first (§7.1.1), so a client waits for EOF until the close timeout
    /// (reported through [`handle_timeout`](Self::handle_timeout)).
    pub fn should_close_transport(&self) -> bool {
        self.ready_state() == ReadyState::Closed && (self.role == Role::Server || self.failed || self.aborted)
    }

    /// Whether a fragmented message is being received.
    pub fn is_receiving_fragments(&self) -> bool {
        self.assembly.is_some()
    }

    // ---------------------------------------------------------------- reading

    /// Consumes complete frames from the front of `buf` and returns the next message.
    ///
    /// `Ok(None)` means more bytes are needed: partial frames stay in `buf` untouched, and no
    /// space is reserved for a declared length. Call again after each read until it returns
    /// `Ok(None)`. On a protocol violation the matching Close frame is queued (write it with
    /// [`poll_transmit`](Self::poll_transmit)) and the error is returned; afterwards, and after
    /// the peer's Close, input is discarded.
    pub fn read(&mut self, buf: &mut BytesMut, now: Instant) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.close_received || self.failed || self.aborted {
                buf.clear();
                return Ok(None);
            }
            let (hdr, hlen) = match FrameHeader::parse(buf) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.fail(e)),
            };
            let len = match self.check_header(&hdr) {
                Ok(len) => len,
                Err(e) => return Err(self.fail(e)),
            };
            if buf.len() - hlen < len {
                // Fail fast on text that can never become valid UTF-8, before the rest of
                // the frame arrives (RFC 6455 §8.1).
                if let Err(e) = self.check_partial_frame_utf8(&hdr, &buf[hlen..]) {
                    return Err(self.fail(e));
                }
                return Ok(None);
            }
            // What `check_partial_frame_utf8` already validated of this frame is not
            // validated again.
            let prechecked = std::mem::take(&mut self.peek_checked);
            buf.advance(hlen);
            let mut payload = buf.split_to(len);
            if let Some(key) = hdr.mask {
                apply_mask(&mut payload, key, 0);
            }
            match self.on_frame(hdr, payload, prechecked, now) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Validates the UTF-8 of an incomplete, uncompressed text frame as far as it has
    /// arrived (`avail`: its payload so far, still masked), continuing from the bytes a
    /// fragmented message carried over and from what earlier calls checked.
    fn check_partial_frame_utf8(&mut self, h: &FrameHeader, avail: &[u8]) -> Result<(), ProtocolError> {
        let carried: &[u8] = match (h.opcode, &self.assembly) {
            (OpCode::Text, None) if h.rsv == 0 => &[],
            (OpCode::Continuation, Some(a)) if a.text && !a.transformed => &a.data[a.utf8_checked..],
            _ => return Ok(()),
        };
        let total = carried.len() + avail.len();
        // Unmasked through a small stack buffer, window by window: no allocation per read. A
        // window may end inside a character; the next one starts again at its first byte.
        let mut window = [0u8; 512];
        while self.peek_checked < total {
            let start = self.peek_checked;
            let end = total.min(start + window.len());
            for (slot, j) in window.iter_mut().zip(start..end) {
                *slot = match j.checked_sub(carried.len()) {
                    None => carried[j],
                    Some(i) => avail[i] ^ h.mask.map_or(0, |k| k[i % 4]),
                };
            }
            match utf8::validate_partial(&window[..end - start]) {
                Partial::ValidUpTo(n) => self.peek_checked += n,
                Partial::Invalid => return Err(ProtocolError::InvalidUtf8),
            }
            // Only an incomplete character (at most 3 bytes) is left: wait for more input.
            if end == total || self.peek_checked == start {
                break;
            }
        }
        Ok(())
    }

    /// Header rules that depend on the connection; returns the payload length as `usize`.
    fn check_header(&self, h: &FrameHeader) -> Result<usize, ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let allowed = match h.opcode {
            OpCode::Text | OpCode::Binary => self.ext.as_ref().map_or(0, |e| e.rsv_bits()),
            _ => 0,
        };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        let limit = self.config.max_frame_size;
        let len = usize::try_from(h.payload_len)
            .ok()
            .filter(|&l| l <= limit)
            .ok_or(ProtocolError::FrameTooLarge { size: h.payload_len, limit })?;
        match (h.opcode, &self.assembly) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (OpCode::Continuation, Some(a)) => {
                let frames = a.frames.saturating_add(1);
                let bytes = a.received.saturating_add(len);
                let earned = bytes.checked_div(self.config.min_fragment_average).unwrap_or(0);
                if frames > self.config.max_fragments.saturating_add(earned) {
                    return Err(ProtocolError::TooManyFragments { frames, bytes });
                }
                if !a.transformed && a.data.len().saturating_add(len) > self.config.max_message_size {
                    return Err(ProtocolError::MessageTooLarge { limit: self.config.max_message_size });
                }
            }
            (OpCode::Text | OpCode::Binary, None) if h.rsv == 0 && len > self.config.max_message_size => {
                return Err(ProtocolError::MessageTooLarge { limit: self.config.max_message_size });
            }
            _ => {}
        }
        Ok(len)
    }

    /// `prechecked`: bytes of this frame's text (after the UTF-8 a fragmented message carried
    /// over) already known valid, ending on a character boundary.
    fn on_frame(
        &mut self,
        h: FrameHeader,
        payload: BytesMut,
        prechecked: usize,
        now: Instant,
    ) -> Result<Option<Message>, ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                let p = payload.freeze();
                if !self.close_sent && self.pending_close.is_none() {
                    self.pending_pong = Some(p.clone());
                }
                Ok(Some(Message::Ping(p)))
            }
            OpCode::Pong => {
                self.pong_deadline = None;
                Ok(Some(Message::Pong(payload.freeze())))
            }
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload.freeze())?;
                self.close_received = true;
                self.assembly = None;
                self.pending_ping = None;
                if !self.close_sent && self.pending_close.is_none() {
                    // Echo the status code (§5.5.1); an empty Close is answered with an empty one.
                    let echo = frame.as_ref().map(|f| CloseFrame { code: f.code, reason: Utf8Bytes::new() });
                    self.pending_close = Some(echo);
                }
                if self.close_sent {
                    self.close_deadline = Some(now + self.config.close_timeout);
                }
                Ok(Some(Message::Close(frame)))
            }
            OpCode::Text | OpCode::Binary => {
                let text = h.opcode == OpCode::Text;
                let transformed = h.rsv != 0;
                if h.fin && !transformed {
                    return Ok(Some(finish(text, payload, prechecked)?));
                }
                let mut a = Box::new(Assembly {
                    text,
                    data: BytesMut::new(),
                    frames: 1,
                    received: payload.len(),
                    utf8_checked: 0,
                    transformed,
                    deadline: self.config.message_timeout.map(|d| now + d),
                });
                if transformed {
                    self.decode_into(&mut a, &payload, h.fin)?;
                } else {
                    a.data = payload;
                    a.utf8_checked = prechecked;
                    check_partial_utf8(&mut a)?;
                }
                if h.fin {
                    return Ok(Some(finish_assembly(*a)?));
                }
                self.assembly = Some(a);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(mut a) = self.assembly.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                a.frames += 1;
                a.received = a.received.saturating_add(payload.len());
                if a.transformed {
                    self.decode_into(&mut a, &payload, h.fin)?;
                } else {
                    a.data.extend_from_slice(&payload);
                    a.utf8_checked += prechecked;
                    check_partial_utf8(&mut a)?;
                }
                if h.fin {
                    return Ok(Some(finish_assembly(*a)?));
                }
                self.assembly = Some(a);
                Ok(None)
            }
        }
    }

    fn decode_into(&mut self, a: &mut Assembly, input: &[u8], fin: bool) -> Result<(), ProtocolError> {
        let limit = self.config.max_message_size;
        let ext = self.ext.as_mut().ok_or(ProtocolError::ReservedBits(crate::frame::RSV1))?;
        ext.decode(input, fin, &mut a.data, limit).map_err(|e| match e {
            DecodeError::TooLarge => ProtocolError::MessageTooLarge { limit },
            DecodeError::Corrupt(s) => ProtocolError::Extension(s),
        })?;
        check_partial_utf8(a)
    }

    /// Records a protocol failure: queue a Close with the error's code unless one was sent.
    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.failed = true;
        self.peek_checked = 0;
        self.assembly = None;
        self.pending_pong = None;
        self.pending_ping = None;
        if !self.close_sent {
            self.pending_close =
                Some(Some(CloseFrame { code: e.close_code(), reason: Utf8Bytes::from_static(e.close_reason()) }));
        }
        e
    }

    // ---------------------------------------------------------------- timers

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.aborted {
            return None;
        }
        let mut t = self.close_deadline;
        let mut take = |d: Option<Instant>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |x| x.min(d)));
            }
        };
        if self.ready_state() == ReadyState::Open {
            take(self.next_ping);
            take(self.pong_deadline);
            take(self.assembly.as_ref().and_then(|a| a.deadline));
        }
        t
    }

    /// Handles the timers due at `now`: queues keepalive pings, fails a fragmented message or
    /// a keepalive that timed out (the error is returned and its Close queued), and gives up
    /// on a closing handshake the peer does not finish ([`should_close_transport`] turns true).
    ///
    /// [`should_close_transport`]: Self::should_close_transport
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if self.close_deadline.is_some_and(|d| d <= now) {
            self.aborted = true;
            self.close_deadline = None;
            return Ok(());
        }
        if self.ready_state() != ReadyState::Open {
            return Ok(());
        }
        if self.assembly.as_ref().and_then(|a| a.deadline).is_some_and(|d| d <= now) {
            let e = self.fail(ProtocolError::MessageTimeout);
            self.close_deadline = Some(now + self.config.close_timeout);
            return Err(e);
        }
        if self.pong_deadline.is_some_and(|d| d <= now) {
            let e = self.fail(ProtocolError::PingTimeout);
            // The peer is presumed dead: do not wait for its Close.
            self.aborted = true;
            return Err(e);
        }
        if let (Some(next), Some(interval)) = (self.next_ping, self.config.ping_interval) {
            if next <= now {
                self.next_ping = Some(now + interval);
                // One keepalive ping outstanding at a time: its pong (or the timeout) decides.
                if self.pong_deadline.is_none() {
                    self.ping_seq += 1;
                    self.pending_ping = Some(Bytes::copy_from_slice(&self.ping_seq.to_be_bytes()));
                    self.pong_deadline = Some(now + self.config.pong_timeout);
                }
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- writing

    /// Appends the frames the protocol owes (a pong, a keepalive ping, a Close) to `out`.
    /// Returns whether anything was written. Call it after `read`, after `handle_timeout` and
    /// before waiting for I/O.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        let mut wrote = false;
        if self.close_sent {
            return false;
        }
        if let Some(p) = self.pending_pong.take() {
            self.write_frame(out, true, 0, OpCode::Pong, &p);
            wrote = true;
        }
        if let Some(p) = self.pending_ping.take() {
            self.write_frame(out, true, 0, OpCode::Ping, &p);
            wrote = true;
        }
        if let Some(close) = self.pending_close.take() {
            let mut payload = BytesMut::new();
            if let Some(f) = &close {
                payload.reserve(f.payload_len());
                f.encode_payload(&mut payload);
            }
            self.write_frame(out, true, 0, OpCode::Close, &payload);
            self.close_sent = true;
            wrote = true;
        }
        wrote
    }

    /// Whether frames are waiting for [`poll_transmit`](Self::poll_transmit).
    pub fn wants_transmit(&self) -> bool {
        !self.close_sent && (self.pending_pong.is_some() || self.pending_ping.is_some() || self.pending_close.is_some())
    }

    fn ensure_open(&self) -> Result<(), SendError> {
        if self.close_sent || self.pending_close.is_some() || self.failed || self.aborted {
            Err(SendError::Closed)
        } else {
            Ok(())
        }
    }

    /// Encodes a text message into `out`.
    pub fn send_text(&mut self, text: &str, out: &mut BytesMut) -> Result<(), SendError> {
        self.send(OpCode::Text, text.as_bytes(), out)
    }

    /// Encodes a binary message into `out`.
    pub fn send_binary(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.send(OpCode::Binary, data, out)
    }

    /// Encodes a data message (`opcode` Text or Binary) into `out` as one frame, through the
    /// extension when one is negotiated. The caller guarantees Text payloads are UTF-8 (the
    /// typed API takes `&str`).
    pub fn send(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.ensure_open()?;
        let opcode = data_opcode(opcode);
        if let Some(ext) = self.ext.as_mut() {
            let mut enc = BytesMut::new();
            if let Some(rsv) = ext.encode(opcode, payload, &mut enc).map_err(SendError::Extension)? {
                self.write_frame(out, true, rsv, opcode, &enc);
                return Ok(());
            }
        }
        self.write_frame(out, true, 0, opcode, payload);
        Ok(())
    }

    /// Whether a [`PreparedFrame`](crate::PreparedFrame) may be written as is: the connection is
    /// open, it is a server and no extension is negotiated. `Ok(false)`: encode the payload
    /// with [`send`](Self::send) instead.
    pub fn prepared_ok(&self) -> Result<bool, SendError> {
        self.ensure_open()?;
        Ok(self.role == Role::Server && self.ext.is_none())
    }

    /// The header of an unmasked data frame carrying `len` bytes sent as they are, so the
    /// caller can write the payload from its own buffer (a vectored write, no copy; the same
    /// `Bytes` can go to many connections). `None` when the frame cannot be sent that way
    /// (a client masks its frames; a negotiated extension may transform the payload): use
    /// [`send`](Self::send) then.
    pub fn data_frame_header(
        &mut self,
        opcode: OpCode,
        len: usize,
    ) -> Result<Option<([u8; MAX_HEADER_LEN], usize)>, SendError> {
        self.ensure_open()?;
        if self.role == Role::Client || self.ext.is_some() {
            return Ok(None);
        }
        let h = FrameHeader { fin: true, rsv: 0, opcode: data_opcode(opcode), mask: None, payload_len: len as u64 };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        Ok(Some((hb, n)))
    }

    /// Like [`send`](Self::send) but never transformed by the extension: the "do not
    /// compress" switch for a message that mixes a secret with attacker-chosen data
    /// (compression oracles, security: D8).
    pub fn send_uncompressed(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.send_fragmented(opcode, &[payload], out)
    }

    /// Encodes a data message split into the given fragments (one frame each; empty fragments
    /// are sent as empty frames). Not transformed by extensions.
    pub fn send_fragmented(
        &mut self,
        opcode: OpCode,
        fragments: &[&[u8]],
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.ensure_open()?;
        let opcode = data_opcode(opcode);
        let last = fragments.len().saturating_sub(1);
        if fragments.is_empty() {
            self.write_frame(out, true, 0, opcode, &[]);
        }
        for (i, f) in fragments.iter().enumerate() {
            let op = if i == 0 { opcode } else { OpCode::Continuation };
            self.write_frame(out, i == last, 0, op, f);
        }
        Ok(())
    }

    /// Encodes a ping with `payload` (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.control(OpCode::Ping, payload, out)
    }

    /// Encodes an unsolicited pong (a heartbeat some peers use).
    pub fn pong(&mut self, payload: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.control(OpCode::Pong, payload, out)
    }

    fn control(&mut self, op: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<(), SendError> {
        self.ensure_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.write_frame(out, true, 0, op, payload);
        Ok(())
    }

    /// Starts the closing handshake: queues our Close (`None` sends an empty one) and starts
    /// the close timeout. The frame is written by the next [`poll_transmit`](Self::poll_transmit).
    /// Build the frame with [`CloseFrame::new`], which validates code and reason.
    pub fn close(&mut self, frame: Option<CloseFrame>, now: Instant) -> Result<(), SendError> {
        if self.close_sent || self.pending_close.is_some() {
            return Err(SendError::Closed);
        }
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(SendError::InvalidCloseCode(f.code.0));
            }
        }
        self.pending_close = Some(frame);
        self.assembly = None;
        self.close_deadline = Some(now + self.config.close_timeout);
        Ok(())
    }

    /// Convenience for [`close`](Self::close) with a code and reason.
    pub fn close_with(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), SendError> {
        let f = CloseFrame::new(code, reason)?;
        self.close(Some(f), now)
    }

    /// Appends one frame (header, then the payload, masked for a client with a fresh key from
    /// the thread's CSPRNG).
    fn write_frame(&self, out: &mut BytesMut, fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) {
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let h = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        out.reserve(n + payload.len());
        out.extend_from_slice(&hb[..n]);
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
    }
}

/// Text stays text; anything else is sent as binary.
fn data_opcode(op: OpCode) -> OpCode {
    match op {
        OpCode::Text => OpCode::Text,
        _ => OpCode::Binary,
    }
}

fn check_partial_utf8(a: &mut Assembly) -> Result<(), ProtocolError> {
    if !a.text {
        return Ok(());
    }
    match utf8::validate_partial(&a.data[a.utf8_checked..]) {
        Partial::ValidUpTo(n) => {
            a.utf8_checked += n;
            Ok(())
        }
        Partial::Invalid => Err(ProtocolError::InvalidUtf8),
    }
}

fn finish_assembly(a: Assembly) -> Result<Message, ProtocolError> {
    if a.text && a.utf8_checked != a.data.len() {
        // A character cut off by the end of the message.
        return Err(ProtocolError::InvalidUtf8);
    }
    if a.text {
        return Ok(Message::Text(Utf8Bytes::from_validated(a.data.freeze())));
    }
    Ok(Message::Binary(a.data.freeze()))
}

fn finish(text: bool, payload: BytesMut, prechecked: usize) -> Result<Message, ProtocolError> {
    let b = payload.freeze();
    if text {
        if !utf8::is_valid(b.get(prechecked..).unwrap_or(&b)) {
            return Err(ProtocolError::InvalidUtf8);
        }
        return Ok(Message::Text(Utf8Bytes::from_validated(b)));
    }
    Ok(Message::Binary(b))
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
