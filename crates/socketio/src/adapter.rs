//! The [`Adapter`]: where room membership lives and through which every broadcast goes.
//!
//! The trait is async and fallible so that cluster adapters (Redis, NATS) can implement it:
//! a broadcast reaches the local sockets and the other nodes; room queries and acks are
//! requests with timeouts. [`LocalAdapter`] is the in-memory one.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use switchboard_engineio::Sid;

use crate::socket::{AckResponse, Encoded};
use crate::Namespace;

/// A room name. Every socket is also in the room named by its id (without it being stored).
pub type Room = Arc<str>;

/// A boxed future returned by adapter methods.
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// Why an adapter operation failed (a remote node or the broker did not answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The broker or a node did not answer in time.
    #[error("adapter request timed out")]
    Timeout,
    /// The broker failed.
    #[error("adapter error: {0}")]
    Broker(String),
}

/// Who a broadcast or a query is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Sockets in any of these rooms; all sockets of the namespace when empty.
    pub rooms: Vec<Room>,
    /// Minus sockets in any of these rooms (a socket id names that socket).
    pub except: Vec<Room>,
    /// Only this node's sockets.
    pub local: bool,
    /// Drop the packet for sockets whose outbound queue is full instead of disconnecting
    /// them.
    pub volatile: bool,
}

/// The answers to a broadcast with acknowledgement.
#[derive(Debug, Default)]
pub struct BroadcastAcks {
    /// Answers, by socket.
    pub responses: Vec<(Sid, AckResponse)>,
    /// Sockets that did not answer before the timeout (or were gone).
    pub missing: Vec<Sid>,
}

/// Room membership and broadcast for one namespace.
pub trait Adapter: Send + Sync + 'static {
    /// Adds `sid` to `rooms`.
    fn add_all<'a>(&'a self, ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()>;
    /// Removes `sid` from `rooms`.
    fn del<'a>(&'a self, ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()>;
    /// Removes `sid` from every room (on disconnect).
    fn del_all<'a>(&'a self, ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()>;
    /// The rooms `sid` is in (its own id room included).
    fn socket_rooms<'a>(&'a self, ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, Vec<Room>>;
    /// Every room with at least one member.
    fn rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Vec<Room>>;
    /// The sockets `opts` selects.
    fn sockets<'a>(&'a self, ns: &'a Namespace, opts: &'a BroadcastOptions) -> AdapterFuture<'a, Vec<Sid>>;
    /// Sends an encoded packet to the sockets `opts` selects; returns how many of this node's
    /// sockets it was queued for.
    fn broadcast<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: Arc<Encoded>,
        opts: &'a BroadcastOptions,
    ) -> AdapterFuture<'a, usize>;
    /// Sends an encoded packet (whose ack id is `packet.ack_id`) and gathers the answers that
    /// come within `timeout`.
    fn broadcast_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: Arc<Encoded>,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastAcks>;
}

/// The in-memory adapter: rooms of this process only.
#[derive(Debug, Default)]
pub struct LocalAdapter {
    rooms: RwLock<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    members: HashMap<Room, HashSet<Sid>>,
    of: HashMap<Sid, Vec<Room>>,
}

impl LocalAdapter {
    /// An empty adapter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sockets `opts` selects, on this node (no await: usable by cluster adapters for
    /// their local part).
    pub fn select(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Sid> {
        let rooms = self.rooms.read();
        let mut excluded: HashSet<Sid> = HashSet::new();
        for r in &opts.except {
            if let Some(m) = rooms.members.get(r) {
                excluded.extend(m.iter().copied());
            }
            if let Some(sid) = Sid::parse(r) {
                excluded.insert(sid);
            }
        }
        if opts.rooms.is_empty() {
            return ns.socket_ids().into_iter().filter(|s| !excluded.contains(s)).collect();
        }
        // One room's members are distinct already; several rooms need a dedup set.
        let dedup = opts.rooms.len() > 1;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut take = |s: Sid, out: &mut Vec<Sid>| {
            if !excluded.contains(&s) && (!dedup || seen.insert(s)) {
                out.push(s);
            }
        };
        for r in &opts.rooms {
            match rooms.members.get(r) {
                Some(m) => m.iter().for_each(|s| take(*s, &mut out)),
                // A socket id names that socket (its own room is not stored).
                None => {
                    if let Some(sid) = Sid::parse(r).filter(|s| ns.has_socket(*s)) {
                        take(sid, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Delivers to this node's selected sockets; returns how many it was queued for.
    pub fn deliver(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize {
        let sids = self.select(ns, opts);
        let mut n = 0;
        ns.for_each_socket(&sids, |s| {
            if matches!(s.send_encoded(packet, opts.volatile), Ok(true)) {
                n += 1;
            }
        });
        n
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> AdapterFuture<'a, T> {
    Box::pin(std::future::ready(Ok(v)))
}

impl Adapter for LocalAdapter {
    fn add_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        let mut g = self.rooms.write();
        for r in rooms {
            if g.members.entry(r.clone()).or_default().insert(sid) {
                g.of.entry(sid).or_default().push(r);
            }
        }
        ready(())
    }

    fn del<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        let mut g = self.rooms.write();
        for r in rooms {
            if let Some(m) = g.members.get_mut(&r) {
                m.remove(&sid);
                if m.is_empty() {
                    g.members.remove(&r);
                }
            }
            if let Some(list) = g.of.get_mut(&sid) {
                list.retain(|x| x != &r);
                if list.is_empty() {
                    g.of.remove(&sid);
                }
            }
        }
        ready(())
    }

    fn del_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()> {
        let mut g = self.rooms.write();
        if let Some(list) = g.of.remove(&sid) {
            for r in list {
                if let Some(m) = g.members.get_mut(&r) {
                    m.remove(&sid);
                    if m.is_empty() {
                        g.members.remove(&r);
                    }
                }
            }
        }
        ready(())
    }

    fn socket_rooms<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, Vec<Room>> {
        let mut out: Vec<Room> = vec![Arc::from(sid.to_string())];
        if let Some(list) = self.rooms.read().of.get(&sid) {
            out.extend(list.iter().cloned());
        }
        ready(out)
    }

    fn rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Vec<Room>> {
        let mut out: Vec<Room> = self.rooms.read().members.keys().cloned().collect();
        out.extend(ns.socket_ids().into_iter().map(|s| Arc::from(s.to_string())));
        ready(out)
    }

    fn sockets<'a>(&'a self, ns: &'a Namespace, opts: &'a BroadcastOptions) -> AdapterFuture<'a, Vec<Sid>> {
        ready(self.select(ns, opts))
    }

    fn broadcast<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: Arc<Encoded>,
        opts: &'a BroadcastOptions,
    ) -> AdapterFuture<'a, usize> {
        ready(self.deliver(ns, &packet, opts))
    }

    fn broadcast_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: Arc<Encoded>,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastAcks> {
        let targets: Vec<_> = self.select(ns, opts).into_iter().filter_map(|sid| ns.get_socket(sid)).collect();
        Box::pin(async move {
            let waits: Vec<_> = targets
                .into_iter()
                .map(|s| {
                    let w = s.send_encoded_with_ack(&packet, opts.volatile);
                    (s.id(), w)
                })
                .collect();
            let deadline = tokio::time::Instant::now() + timeout;
            let mut acks = BroadcastAcks::default();
            for (sid, w) in waits {
                match w {
                    Some(w) => match tokio::time::timeout_at(deadline, w.wait()).await {
                        Ok(Ok(r)) => acks.responses.push((sid, r)),
                        _ => acks.missing.push(sid),
                    },
                    None => acks.missing.push(sid),
                }
            }
            Ok(acks)
        })
    }
}
