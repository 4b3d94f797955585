//! A session: its outbound queue, heartbeat and transport state. Transports (a long-polling
//! request, a WebSocket task) drain the queue; every change wakes them through one `Notify`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::EngineConfig;
use crate::handshake::{Sid, Transport};
use bytes::Bytes;
use switchboard_ws_proto::Utf8Bytes;

use crate::packet::{Data, Packet};

/// Why a session ended. The names are the reasons Engine.IO and Socket.IO report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the transport (a `close` packet, a WebSocket close, EOF).
    TransportClose,
    /// The transport failed (an I/O error, a protocol violation on the WebSocket, a bad request
    /// on polling: overlapping polls, a wrong content type, an oversized body).
    TransportError,
    /// The client did not answer a ping within `ping_timeout`.
    PingTimeout,
    /// A packet could not be decoded.
    ParseError,
    /// The server closed the session.
    ForcedClose,
    /// The outbound queue stayed full: the client does not read fast enough.
    QueueFull,
    /// The server is shutting down.
    ServerShutdown,
    /// The client sent work faster than the application finished it (too many handlers
    /// waiting).
    Overloaded,
}

impl CloseReason {
    /// The reason as the reference implementation names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::QueueFull => "outbound queue full",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::Overloaded => "too many pending requests",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`Session::send`] failed. Nothing was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The outbound queue is at `max_queued_packets` or `max_queued_bytes`.
    #[error("outbound queue full")]
    Full,
    /// The session is closed.
    #[error("session closed")]
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Polling,
    /// Polling still carries data; a WebSocket answered the probe or waits for it.
    Upgrading,
    WebSocket,
}

pub(crate) struct State {
    pub(crate) outbox: VecDeque<Frame>,
    pub(crate) queued_bytes: usize,
    pub(crate) mode: Mode,
    pub(crate) get_active: bool,
    pub(crate) post_active: bool,
    /// A `noop` is owed to the pending (or next) poll: the upgrade's probe was answered.
    pub(crate) noop: bool,
    pub(crate) next_ping: Instant,
    /// The application's deadline ([`Session::set_deadline`]).
    pub(crate) app_deadline: Option<Instant>,
    pub(crate) ping_sent: Option<Instant>,
    pub(crate) closed: Option<CloseReason>,
    /// The `close` packet went out (or will not, for a dead transport).
    pub(crate) close_sent: bool,
}

/// One Engine.IO session. `D` is what the application layer keeps per session
/// (see [`Handler::Data`](crate::Handler::Data)).
pub struct Session<D> {
    sid: Sid,
    pub(crate) state: Mutex<State>,
    pub(crate) wake: Notify,
    pub(crate) config: Arc<EngineConfig>,
    data: D,
}

impl<D> fmt::Debug for Session<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("sid", &self.sid).finish_non_exhaustive()
    }
}

/// One queued packet, already encoded: what a transport writes as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole text packet, type digit included (`4hello`, `2`, `6`): a WebSocket text frame
    /// or one segment of a polling body.
    Text(Utf8Bytes),
    /// A binary message: a WebSocket binary frame, or `b` + base64 in a polling body.
    Binary(Bytes),
    /// A text or binary frame whose WebSocket frame is encoded too, once for every session it
    /// goes to ([`Frame::prepare`]).
    Prepared(Arc<Prepared>),
}

/// A frame with its WebSocket encoding, shared by every session of a broadcast.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The frame as polling sends it.
    pub frame: Frame,
    /// The WebSocket frame.
    pub ws: switchboard_ws_proto::PreparedFrame,
}

impl Frame {
    /// A text `message` packet carrying `s` (`4` + `s`). Encode once and clone the frame to
    /// send the same message to many sessions: clones share the bytes.
    pub fn message(s: &str) -> Frame {
        let mut t = String::with_capacity(s.len() + 1);
        t.push('4');
        t.push_str(s);
        Frame::Text(t.into())
    }

    /// Encodes the WebSocket frame too, for a frame that goes to many sessions.
    pub fn prepare(self) -> Frame {
        let ws = match &self {
            Frame::Text(t) => switchboard_ws_proto::PreparedFrame::text(t),
            Frame::Binary(b) => switchboard_ws_proto::PreparedFrame::binary(b),
            Frame::Prepared(_) => return self,
        };
        Frame::Prepared(Arc::new(Prepared { frame: self, ws }))
    }

    /// The frame of any packet.
    pub fn from_packet(p: &Packet) -> Frame {
        match p {
            Packet::Message(Data::Binary(b)) => Frame::Binary(b.clone()),
            p => Frame::Text(p.encode_text().into()),
        }
    }

    /// Its size in bytes, about as polling sends it (what queue limits count).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len() + 1,
            Frame::Prepared(p) => p.frame.len(),
        }
    }
}

/// Encodes frames as one long-polling body.
pub(crate) fn encode_frames(frames: &[Frame]) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + 1).sum::<usize>());
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            out.push(crate::packet::SEPARATOR);
        }
        let f = match f {
            Frame::Prepared(p) => &p.frame,
            f => f,
        };
        match f {
            Frame::Text(t) => out.extend_from_slice(t.as_bytes()),
            Frame::Binary(b) => {
                out.push(b'b');
                let mut s = String::new();
                base64::engine::general_purpose::STANDARD.encode_string(b, &mut s);
                out.extend_from_slice(s.as_bytes());
            }
            // `prepare` never nests.
            Frame::Prepared(_) => {}
        }
    }
    out
}

impl<D> Session<D> {
    pub(crate) fn new(sid: Sid, transport: Transport, config: Arc<EngineConfig>, data: D, now: Instant) -> Self {
        let mode = match transport {
            Transport::Polling => Mode::Polling,
            Transport::WebSocket => Mode::WebSocket,
        };
        Session {
            sid,
            state: Mutex::new(State {
                outbox: VecDeque::new(),
                queued_bytes: 0,
                mode,
                get_active: false,
                post_active: false,
                noop: false,
                next_ping: now + config.timing.ping_interval,
                app_deadline: None,
                ping_sent: None,
                closed: None,
                close_sent: false,
            }),
            wake: Notify::new(),
            config,
            data,
        }
    }

    /// The session id (public: it is in every request of the session).
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// What the application keeps for this session.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The transport in use now (`Polling` until an upgrade completes).
    pub fn transport(&self) -> Transport {
        match self.state.lock().mode {
            Mode::WebSocket => Transport::WebSocket,
            _ => Transport::Polling,
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues a message. Fails without queuing when the queue is full or the session closed.
    pub fn send(&self, data: Data) -> Result<(), SendError> {
        self.send_batch(std::iter::once(data))
    }

    /// Queues several messages, all or none (a Socket.IO packet and its attachments).
    pub fn send_batch<I>(&self, data: I) -> Result<(), SendError>
    where
        I: IntoIterator<Item = Data>,
    {
        let frames: Vec<Frame> = data
            .into_iter()
            .map(|d| match d {
                Data::Text(t) => Frame::message(&t),
                Data::Binary(b) => Frame::Binary(b),
            })
            .collect();
        self.send_frames(&frames)
    }

    /// Queues encoded frames, all or none. The frames are cloned (their bytes are shared).
    pub fn send_frames(&self, frames: &[Frame]) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            let bytes: usize = frames.iter().map(Frame::len).sum();
            if st.outbox.len() + frames.len() > self.config.max_queued_packets
                || st.queued_bytes.saturating_add(bytes) > self.config.max_queued_bytes
            {
                return Err(SendError::Full);
            }
            st.queued_bytes += bytes;
            st.outbox.extend(frames.iter().cloned());
        }
        self.wake.notify_waiters();
        Ok(())
    }

    /// Closes the session: the transport sends a `close` packet if it can, and the
    /// application's `on_close` runs once with `reason`. Later calls change nothing.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
        }
        self.wake.notify_waiters();
    }

    /// Why the session ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    pub(crate) fn push_control(&self, p: Packet) {
        {
            let f = Frame::from_packet(&p);
            let mut st = self.state.lock();
            st.queued_bytes += f.len();
            st.outbox.push_back(f);
        }
        self.wake.notify_waiters();
    }

    /// Takes every queued packet.
    pub(crate) fn drain(&self, out: &mut Vec<Frame>) {
        let mut st = self.state.lock();
        out.extend(st.outbox.drain(..));
        st.queued_bytes = 0;
    }

    /// Puts packets back at the front (those a transport could not take).
    pub(crate) fn requeue_front(&self, frames: Vec<Frame>) {
        let mut st = self.state.lock();
        for f in frames.into_iter().rev() {
            st.queued_bytes += f.len();
            st.outbox.push_front(f);
        }
    }

    /// A pong arrived: the next ping is due a ping interval from now.
    /// Why the session is closed, if it is, enforcing the heartbeat deadline at the moment a
    /// request or packet arrives rather than only when the transport's timer fires: once
    /// `ping_timeout` has passed since an unanswered ping, the session is closed
    /// (`PingTimeout`) here, so a late pong or poll cannot revive it. One lock.
    pub(crate) fn closed_at(&self, now: Instant) -> Option<CloseReason> {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return st.closed;
            }
            match st.ping_sent {
                Some(sent) if now >= sent + self.config.timing.ping_timeout => {
                    st.closed = Some(CloseReason::PingTimeout);
                }
                _ => return None,
            }
        }
        self.wake.notify_waiters();
        Some(CloseReason::PingTimeout)
    }

    /// The client sent a `close` packet: the session ends without a `close` packet back, and
    /// a GET parked at that moment is answered with a `noop` (as the reference server does);
    /// a later GET finds the session gone.
    pub(crate) fn client_close(&self) {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(CloseReason::TransportClose);
            st.close_sent = true;
            st.noop = st.get_active;
        }
        self.wake.notify_waiters();
    }

    pub(crate) fn on_pong(&self, now: Instant) {
        let mut st = self.state.lock();
        st.ping_sent = None;
        st.next_ping = now + self.config.timing.ping_interval;
    }

    /// Sets (or clears) a deadline for the application: when it passes, the transport calls
    /// [`Handler::on_deadline`](crate::Handler::on_deadline) once. It costs no task or timer
    /// of its own: the session's transport task wakes for it.
    pub fn set_deadline(&self, at: Option<Instant>) {
        self.state.lock().app_deadline = at;
        self.wake.notify_waiters();
    }

    /// Runs the heartbeat: queues a ping when due, closes on a missed pong. Returns when to
    /// call again (`None` once the session is closed) and whether the application deadline
    /// has just passed.
    pub(crate) fn tick(&self, now: Instant) -> (Option<Instant>, bool) {
        let (at, ping, app_due) = {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return (None, false);
            }
            let app_due = st.app_deadline.is_some_and(|d| now >= d);
            if app_due {
                st.app_deadline = None;
            }
            let (at, ping) = match st.ping_sent {
                Some(sent) => {
                    let due = sent + self.config.timing.ping_timeout;
                    if now >= due {
                        st.closed = Some(CloseReason::PingTimeout);
                        drop(st);
                        self.wake.notify_waiters();
                        return (None, false);
                    }
                    (due, false)
                }
                None if now >= st.next_ping => {
                    st.ping_sent = Some(now);
                    (now + self.config.timing.ping_timeout, true)
                }
                None => (st.next_ping, false),
            };
            let at = match st.app_deadline {
                Some(d) if d < at => d,
                _ => at,
            };
            (at, ping, app_due)
        };
        if ping {
            self.push_control(Packet::Ping(Default::default()));
        }
        (Some(at), app_due)
    }
}
