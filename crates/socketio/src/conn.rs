//! One Engine.IO connection seen by Socket.IO: packet decoding, the connect step per
//! namespace, dispatch of events and acks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::Value;
use switchboard_engineio::{CloseReason, Data, ErrorCode, Handshake, Session};

use crate::packet::{Decoder, Packet, PacketType};
use crate::recovery::Recovery;
use crate::socket::{AckResponse, AckSender, DisconnectReason, Event, Socket};
use crate::IoInner;

/// What the first request of a connection showed.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The query string of the first request (`EIO=4&transport=…` and the client's own).
    pub query: Box<str>,
    /// The peer's address, if known.
    pub remote: Option<SocketAddr>,
}

/// Socket.IO's state per Engine.IO session.
#[derive(Debug)]
pub struct Conn {
    decoder: Mutex<Decoder>,
    sockets: Mutex<Vec<Socket>>,
    /// Namespaces connected or being connected (the cap counts both).
    pending: Mutex<usize>,
    connected_once: AtomicBool,
    /// Handlers of this connection waiting on something (see `run_now_or_spawn`).
    waiting: Arc<AtomicUsize>,
    pub(crate) info: ConnInfo,
    /// What the admission check keeps for the connection's life (released on close).
    admission: Mutex<crate::Admission>,
}

impl Conn {
    pub(crate) fn remove_socket(&self, s: &Socket) {
        let mut list = self.sockets.lock();
        let before = list.len();
        list.retain(|x| x != s);
        if list.len() < before {
            let mut n = self.pending.lock();
            *n = n.saturating_sub(1);
        }
    }

    fn socket(&self, nsp: &str) -> Option<Socket> {
        self.sockets.lock().iter().find(|s| s.ns().name() == nsp).cloned()
    }
}

/// The Engine.IO handler of a Socket.IO server.
#[derive(Clone, Debug)]
pub struct IoHandler(pub(crate) Arc<IoInner>);

/// Runs a handler up to its first pending await right here, then on its own task. Handlers
/// therefore start in packet order and their synchronous parts (an emit, an ack) happen in
/// that order too, as on Node.
///
/// `waiting` counts this connection's handlers that wait; `false` when that count is at
/// `limit` (the handler is not run, and the caller closes the connection): a client cannot
/// pile up tasks faster than its handlers finish.
pub(crate) fn run_now_or_spawn(mut fut: crate::HandlerFuture, waiting: &Arc<AtomicUsize>, limit: usize) -> bool {
    if waiting.load(Ordering::Acquire) >= limit {
        return false;
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        waiting.fetch_add(1, Ordering::AcqRel);
        let waiting = waiting.clone();
        // The spawned task polls it again at once, with a real waker.
        tokio::spawn(async move {
            fut.await;
            waiting.fetch_sub(1, Ordering::AcqRel);
        });
    }
    true
}

fn map_reason(r: CloseReason) -> DisconnectReason {
    match r {
        CloseReason::TransportClose => DisconnectReason::TransportClose,
        CloseReason::PingTimeout => DisconnectReason::PingTimeout,
        CloseReason::ParseError => DisconnectReason::ParseError,
        CloseReason::QueueFull => DisconnectReason::QueueFull,
        CloseReason::ServerShutdown => DisconnectReason::ServerShutdown,
        CloseReason::ForcedClose => DisconnectReason::ForcedClose,
        CloseReason::Overloaded => DisconnectReason::Overloaded,
        _ => DisconnectReason::TransportError,
    }
}

/// How long a recovering client waits for its old, still-open connection to be closed and its
/// session kept.
const TAKEOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn connect_error(nsp: &str, message: Value) -> Packet {
    Packet {
        kind: PacketType::ConnectError,
        nsp: nsp.to_owned(),
        id: None,
        data: Some(message),
        attachments: Vec::new(),
    }
}

impl switchboard_engineio::Handler for IoHandler {
    type Data = Conn;

    fn on_handshake(&self, hs: &Handshake<'_>) -> Result<Conn, ErrorCode> {
        let admission = match &self.0.allow_request {
            Some(check) => check(hs)?,
            None => None,
        };
        Ok(Conn {
            admission: Mutex::new(admission),
            decoder: Mutex::new(Decoder::new(self.0.config.limits.clone())),
            sockets: Mutex::new(Vec::new()),
            pending: Mutex::new(0),
            connected_once: AtomicBool::new(false),
            waiting: Arc::new(AtomicUsize::new(0)),
            info: ConnInfo { query: hs.request.uri.query().unwrap_or("").into(), remote: hs.remote },
        })
    }

    fn on_open(&self, session: &Arc<Session<Conn>>) {
        // Close a connection that never connects to a namespace (security: E15).
        session.set_deadline(Some(Instant::now() + self.0.config.connect_timeout));
    }

    fn on_deadline(&self, session: &Arc<Session<Conn>>) {
        let conn = session.data();
        if !conn.connected_once.load(Ordering::Acquire) {
            session.close(CloseReason::ForcedClose);
            return;
        }
        // The binary packet being assembled is late (security: E14).
        let mut d = conn.decoder.lock();
        if d.check_timeout(Instant::now()).is_err() {
            drop(d);
            session.close(CloseReason::ParseError);
        } else if let Some(at) = d.deadline() {
            drop(d);
            session.set_deadline(Some(at));
        }
    }

    fn on_message(&self, session: &Arc<Session<Conn>>, data: Data) {
        let now = Instant::now();
        let decoded = {
            let mut d = session.data().decoder.lock();
            match data {
                Data::Text(t) => d.text(&t, now),
                Data::Binary(b) => d.binary(b, now),
            }
        };
        match decoded {
            Ok(Some(p)) => self.on_packet(session, p),
            Ok(None) => {
                // A binary packet waits for attachments: enforce the assembly deadline.
                let deadline = session.data().decoder.lock().deadline();
                if deadline.is_some() {
                    session.set_deadline(deadline);
                }
            }
            Err(_) => session.close(CloseReason::ParseError),
        }
    }

    fn on_close(&self, session: &Arc<Session<Conn>>, reason: CloseReason) {
        let sockets = std::mem::take(&mut *session.data().sockets.lock());
        for s in sockets {
            s.on_disconnect(map_reason(reason));
        }
        // The connection is over: give back what admission held for it, now rather than
        // whenever the last reference to the session goes.
        drop(session.data().admission.lock().take());
    }
}

impl IoHandler {
    fn on_packet(&self, session: &Arc<Session<Conn>>, p: Packet) {
        let conn = session.data();
        match p.kind {
            PacketType::Connect => self.connect(session, p),
            PacketType::Disconnect => {
                if let Some(s) = conn.socket(&p.nsp) {
                    s.on_disconnect(DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(socket) = conn.socket(&p.nsp) else { return };
                let Some(Value::Array(mut args)) = p.data else { return };
                let name = match args.first() {
                    Some(Value::String(_)) => match args.remove(0) {
                        Value::String(n) => n,
                        _ => return,
                    },
                    _ => return,
                };
                let handlers = socket.ns().handlers();
                let Some(h) = handlers.events.get(&name).or(handlers.any.as_ref()).cloned() else { return };
                let ack = p.id.map(|id| AckSender::new(socket.clone(), id));
                let ev = Event::new(name, args, p.attachments, ack);
                if !run_now_or_spawn(h(socket, ev), &conn.waiting, self.0.config.max_waiting_handlers) {
                    session.close(CloseReason::Overloaded);
                }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let (Some(socket), Some(id), Some(Value::Array(args))) = (conn.socket(&p.nsp), p.id, p.data) else {
                    return;
                };
                socket.on_ack(id, AckResponse { args, binary: p.attachments });
            }
            PacketType::ConnectError => session.close(CloseReason::ParseError),
        }
    }

    fn connect(&self, session: &Arc<Session<Conn>>, p: Packet) {
        let conn = session.data();
        let nsp = p.nsp;
        let reply_error = |msg: &str| {
            let e = crate::socket::Encoded::new(&connect_error(&nsp, serde_json::json!({ "message": msg })));
            let _ = session.send_frames(&e.frames);
        };
        if conn.socket(&nsp).is_some() {
            return;
        }
        {
            let mut n = conn.pending.lock();
            if *n >= self.0.config.max_namespaces_per_connection {
                drop(n);
                reply_error("Too many namespaces");
                return;
            }
            *n += 1;
        }
        let Some(ns) = self.0.namespace(&nsp) else {
            *conn.pending.lock() -= 1;
            reply_error("Invalid namespace");
            return;
        };
        // No payload is an empty object, as the official clients and the Node server treat it.
        let auth = p.data.unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        // Connection state recovery: a client that had a session sends its `pid` and the
        // offset of the last event it got (both strings, or it is not a request).
        // Clients that left themselves out, or cannot take offsets (RecoveryConfig::
        // skip_python_clients), get none.
        let capable = ns.recovery_store().is_some_and(|s| {
            auth.get("recovery") != Some(&Value::Bool(false))
                && !(s.config.skip_python_clients && crate::recovery::is_python_engineio(&session.data().info.query))
        });
        let ask = match (capable, auth.get("pid"), auth.get("offset")) {
            (true, Some(Value::String(pid)), Some(Value::String(offset))) => Some((pid.clone(), offset.clone())),
            _ => None,
        };
        let mut socket = Socket::new(ns.clone(), session, auth);
        if ns.recovery_store().is_some() && !capable {
            socket.0.plain.store(true, Ordering::Relaxed);
        }
        let waiting = conn.waiting.clone();
        let outer = session.clone();
        let session = session.clone();
        let run = async move {
            let mut taken = None;
            let mut gap = None;
            // The client came back before this server noticed that its old connection died (no
            // FIN, say): the old socket is taken over, once the middlewares accepted the client.
            let mut takeover = None;
            if let (Some(store), Some((pid, offset))) = (ns.recovery_store(), &ask) {
                match ns.socket_with_pid(pid) {
                    Some(old) => takeover = Some(old),
                    None => match store.take_session(ns.name(), pid, offset).await {
                        Ok((kept, pos)) => taken = Some((kept, pos, pid.clone())),
                        Err(g) => gap = Some(g),
                    },
                }
            }
            // The middlewares see the session's id and data (the hub checks it is the same
            // user's, security: A3).
            if let Some(old) = &takeover {
                socket = socket.with_id(old.id());
                socket.set_data(old.data());
            } else if let Some((kept, _, _)) = &taken {
                socket = socket.with_id(kept.sid);
                socket.set_data(kept.data.clone());
            }
            let resuming = taken.is_some() || takeover.is_some();
            let skip_middleware = resuming && ns.recovery_store().is_some_and(|s| s.config.skip_middlewares);
            let middleware: &[crate::ns::MiddlewareFn] = if skip_middleware { &[] } else { &ns.handlers().middleware };
            for m in middleware {
                if let Err(e) = m(socket.clone()).await {
                    if let (Some((kept, _, pid)), Some(store)) = (taken.take(), ns.recovery_store()) {
                        // Refused: the session stays its owner's.
                        store.put_back(ns.name(), pid, kept);
                    }
                    *session.data().pending.lock() -= 1;
                    let e = crate::socket::Encoded::new(&connect_error(ns.name(), e.to_json()));
                    let _ = session.send_frames(&e.frames);
                    return;
                }
            }
            if let (Some(old), Some(store), Some((pid, offset))) = (takeover, ns.recovery_store(), &ask) {
                // Close the old connection, which keeps its session, wait until it is gone
                // (out of its rooms, session kept), then take the session.
                old.close_connection();
                let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
                while !old.0.gone.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                match store.take_session(ns.name(), pid, offset).await {
                    Ok((kept, pos)) => {
                        socket.set_data(kept.data.clone());
                        taken = Some((kept, pos, pid.clone()));
                    }
                    Err(g) => gap = Some(g),
                }
            }
            if let Some((_, _, pid)) = &taken {
                *socket.0.pid.lock() = Some(pid.clone());
                // Until the replay is out, live logged events are held (those it holds are
                // dropped, the others sent after it).
                socket.begin_replay();
            } else if capable {
                *socket.0.pid.lock() = Some(crate::recovery::new_pid());
            }
            if session.is_closed() {
                return;
            }
            // The adapter first (a cluster adapter may subscribe the socket's own channel), so
            // that anything sent to the socket once the client is connected reaches it.
            let _ = ns.adapter().socket_connected(&ns, socket.id()).await;
            socket.0.connected.store(true, Ordering::Release);
            ns.insert_socket(socket.clone());
            session.data().sockets.lock().push(socket.clone());
            if !session.data().connected_once.swap(true, Ordering::AcqRel) {
                session.set_deadline(None);
            }
            if let (Some((kept, pos, _)), Some(store)) = (&taken, ns.recovery_store()) {
                // Back in its rooms first, so that events numbered from now on reach it live;
                // those numbered before are in the log. The missed events go before the
                // CONNECT reply (the client holds them until it is connected).
                let _ = ns.adapter().add_all(&ns, socket.id(), kept.rooms.clone()).await;
                match store.collect_missed(ns.name(), pos, socket.id(), &kept.rooms).await {
                    Ok(missed) => {
                        for e in &missed.events {
                            let _ = socket.send_replayed(e);
                        }
                        socket.end_replay(missed.seen);
                        *socket.0.recovery.lock() = Recovery::Recovered { replayed: missed.events.len() };
                    }
                    Err(g) => {
                        // Trimmed meanwhile: a new session after all (its rooms were its own).
                        socket.end_replay(0);
                        *socket.0.pid.lock() = Some(crate::recovery::new_pid());
                        gap = Some(g);
                    }
                }
            }
            if let Some(g) = &gap {
                *socket.0.recovery.lock() = Recovery::Failed(g.clone());
            }
            let mut reply = serde_json::json!({ "sid": socket.id().to_string() });
            if let (Some(pid), Some(store)) = (socket.0.pid.lock().clone(), ns.recovery_store()) {
                store.set_live(&pid, socket.id());
                reply["pid"] = Value::String(pid);
            }
            // A shared backend keeps the session from now on (it survives this node).
            ns.rooms_changed(socket.id()).await;
            let ok = Packet {
                kind: PacketType::Connect,
                nsp: ns.name().to_owned(),
                id: None,
                data: Some(reply),
                attachments: Vec::new(),
            };
            // The CONNECT reply is queued before the handler runs, so it arrives first.
            if socket.send_packet(&ok).is_err() {
                return;
            }
            if let Some(g) = &gap {
                // The explicit gap signal: the client asked to recover and could not.
                let _ = socket.emit_control(crate::recovery::GAP_EVENT, g.to_json());
            }
            if session.is_closed() {
                // The session closed while we connected: undo.
                socket.on_disconnect(DisconnectReason::TransportClose);
                return;
            }
            if let Some(h) = ns.handlers().connect.clone() {
                h(socket).await;
            }
        };
        if !run_now_or_spawn(Box::pin(run), &waiting, self.0.config.max_waiting_handlers) {
            outer.close(CloseReason::Overloaded);
        }
    }
}
