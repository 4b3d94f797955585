//! The seam between the node protocol and a broker: a [`Transport`] publishes bytes to a
//! namespace's channels and hands what it receives to the node as [`Incoming`] messages.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A boxed future of a transport call.
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// Why the bus failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Could not connect to the broker (bad URL, refused, authentication).
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    /// A publish, subscribe or query failed (the broker is down or answered an error).
    #[error("broker operation failed: {0}")]
    Broker(String),
    /// A message of ours is above the size cap other nodes apply.
    #[error("message of {0} bytes is above the cluster's max_message_bytes")]
    TooLarge(usize),
}

/// Where a message goes within a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every node of the namespace.
    Main,
    /// One node (its response channel), by uid.
    Node(&'a str),
    /// The nodes with members of this room (a transport without room channels uses `Main`).
    Room(&'a str),
}

/// What a transport received.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// A node-protocol message on one of a namespace's channels.
    Node {
        /// The namespace the channel belongs to.
        nsp: String,
        /// The message as received.
        payload: Bytes,
    },
    /// A broadcast from an emitter (the classic `@socket.io/redis-emitter` channels).
    EmitterBroadcast {
        /// The namespace the channel belongs to.
        nsp: String,
        /// The room the channel names, if any.
        room: Option<String>,
        /// The message as received.
        payload: Bytes,
    },
    /// A request from an emitter (join, leave, disconnect, server-side emit).
    EmitterRequest {
        /// The namespace the channel belongs to.
        nsp: String,
        /// The message as received.
        payload: Bytes,
    },
    /// An entry of the shared event log ([`SharedLog`]), in the log's order: a node-protocol
    /// message in a Redis stream entry's fields. `position` is its offset and key; `None` for
    /// this node's own message that could not be logged (the broker failed): it is delivered to
    /// this node's sockets without an offset (security: C3).
    Logged {
        /// The namespace.
        nsp: String,
        /// The node that logged it.
        uid: String,
        /// The message type (decimal).
        kind: String,
        /// The message's `data` (see [`crate::protocol::encode_stream_data`]).
        data: String,
        /// Its offset and key in the log.
        position: Option<(String, u64)>,
    },
    /// The transport lost this many messages: its receive buffer overflowed, the broker's
    /// client dropped them (a slow consumer), or a gap in another node's sequence numbers
    /// showed them missing (a partition or an outage).
    Lost(u64),
    /// The connection to the broker was re-established (subscriptions restored).
    Reconnected,
    /// The connection to the broker was lost.
    Disconnected(String),
}

/// A log shared by the nodes (Redis Streams): connection state recovery across nodes. The
/// node's broadcasts without acks go into it (instead of the bus), and every node delivers what
/// it reads from it, in its order, so that offsets are the cluster's.
pub trait SharedLog: switchboard_socketio::RecoveryBackend {
    /// The node's uid (called once, before any append).
    fn attach(&self, uid: &str);
    /// Appends a node-protocol message (a broadcast, possibly with a count request). Fails at
    /// once when the log's queue is full.
    fn append_message(&self, nsp: &str, msg: &crate::protocol::Message) -> Result<(), BusError>;
}

/// [`RecoveryBackend::append`](switchboard_socketio::RecoveryBackend::append) for a shared
/// log: the event as a node-protocol broadcast.
pub(crate) fn append_broadcast(
    log: &dyn SharedLog,
    nsp: &str,
    packet: switchboard_socketio::BroadcastPacket,
    opts: &switchboard_socketio::BroadcastOptions,
) -> Result<(), switchboard_socketio::AdapterError> {
    let msg = crate::protocol::Message::Broadcast {
        packet,
        sel: crate::protocol::Selector { opts: opts.clone(), timeout_ms: None },
        request_id: None,
        count_request: None,
    };
    log.append_message(nsp, &msg).map_err(|e| switchboard_socketio::AdapterError::Bus(e.to_string()))
}

/// A broker seen from the node protocol. One transport serves every namespace of a process.
pub trait Transport: Send + Sync + 'static {
    /// Starts receiving namespace `nsp`'s channels: the main one, node `uid`'s response one,
    /// and the emitter channels.
    fn add_namespace<'a>(&'a self, nsp: &'a str, uid: &'a str) -> BusFuture<'a, ()>;
    /// Publishes a message.
    fn publish<'a>(&'a self, nsp: &'a str, to: Target<'a>, payload: Bytes) -> BusFuture<'a, ()>;
    /// Starts receiving a room's channel (its first local member joined).
    fn subscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()>;
    /// Stops receiving a room's channel (its last local member left).
    fn unsubscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()>;
    /// How many nodes receive namespace `nsp`'s main channel, this one included. Asked only
    /// when [`counts_subscribers`](Self::counts_subscribers) says the broker can tell.
    fn server_count<'a>(&'a self, nsp: &'a str) -> BusFuture<'a, usize>;
    /// Whether the broker counts a channel's subscribers ([`server_count`](Self::server_count)).
    /// When it cannot (NATS), the node counts the nodes that heartbeat on the namespace, and a
    /// node that dies without saying goodbye is counted until its heartbeat timeout.
    fn counts_subscribers(&self) -> bool {
        true
    }
    /// The shared event log, when connection state recovery across nodes is set up.
    fn shared_log(&self) -> Option<std::sync::Arc<dyn SharedLog>> {
        None
    }
    /// Whether room broadcasts go to room channels (else everything goes to `Main`).
    fn has_room_channels(&self) -> bool {
        false
    }
}

/// What a transport's receiving task hands to the node's bounded queue. A message that does not
/// fit is lost, never waited for (the receiver must keep reading the broker); the losses are
/// counted and reported as [`Incoming::Lost`] as soon as the queue has room, so no count
/// vanishes while the queue is full.
pub(crate) struct Forwarder {
    tx: mpsc::Sender<Incoming>,
    unreported: u64,
}

impl Forwarder {
    pub(crate) fn new(tx: mpsc::Sender<Incoming>) -> Self {
        Forwarder { tx, unreported: 0 }
    }

    /// Counts `n` messages lost before they reached this task.
    pub(crate) fn lost(&mut self, n: u64) {
        self.unreported = self.unreported.saturating_add(n);
    }

    /// Passes `inc` on, or counts it lost.
    pub(crate) fn forward(&mut self, inc: Incoming) {
        self.report();
        if self.tx.try_send(inc).is_err() {
            self.lost(1);
        }
    }

    /// Waits for `next` (the broker's next message); while losses are unreported, tries to
    /// report them every 100 ms meanwhile.
    pub(crate) async fn wait<T>(&mut self, next: impl Future<Output = T>) -> T {
        tokio::pin!(next);
        loop {
            if self.unreported == 0 {
                return next.await;
            }
            tokio::select! {
                v = &mut next => return v,
                () = tokio::time::sleep(Duration::from_millis(100)) => self.report(),
            }
        }
    }

    fn report(&mut self) {
        if self.unreported > 0 && self.tx.try_send(Incoming::Lost(self.unreported)).is_ok() {
            self.unreported = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn losses_over_a_full_queue_are_reported_once_there_is_room() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut f = Forwarder::new(tx);
        for _ in 0..5 {
            f.forward(Incoming::Reconnected);
        }
        f.lost(10);
        // Two fit; three were lost, plus ten before: reported when the queue has room.
        assert_eq!(rx.recv().await, Some(Incoming::Reconnected));
        assert_eq!(rx.recv().await, Some(Incoming::Reconnected));
        let waited = f.wait(tokio::time::sleep(Duration::from_millis(250))).await;
        assert_eq!(waited, ());
        assert_eq!(rx.recv().await, Some(Incoming::Lost(13)));
        f.forward(Incoming::Reconnected);
        assert_eq!(rx.recv().await, Some(Incoming::Reconnected));
        assert!(rx.try_recv().is_err(), "reported once");
    }
}
