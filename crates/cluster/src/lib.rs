//! # switchboard-cluster
//!
//! One logical Socket.IO server across processes and machines. The node protocol (Socket.IO's
//! cluster-adapter message model, types 1–13) is written once here, in [`protocol`] and
//! [`Cluster`]; each broker is a small [`Transport`] under it: [`redis`] (wire-compatible with
//! Node's `@socket.io/redis-adapter`) and [`nats`]. The socketio crate knows only
//! its [`Adapter`](switchboard_socketio::Adapter) trait; [`Cluster::adapter_factory`] plugs a
//! node into a server.
//!
//! ```no_run
//! use switchboard_cluster::{redis, ClusterConfig};
//! use switchboard_socketio::SocketIo;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = redis::connect(redis::RedisConfig::new("redis://127.0.0.1:6379"), ClusterConfig::default()).await?;
//! let io = SocketIo::builder().adapter(cluster.adapter_factory()).build();
//! // Reaches every socket of the main namespace, on every node.
//! io.emit("hello", &"world").await?;
//! # Ok(()) }
//! ```
//!
//! ## Delivery semantics
//! At most once, like the Node adapters: what is published while the broker is unreachable is
//! lost for other nodes (this node's sockets still get it, and the caller gets
//! [`AdapterError::Bus`](switchboard_socketio::AdapterError::Bus)). Requests that need answers
//! (fetch sockets, broadcast with acks, server-side emit with acks) count the other nodes with
//! the broker (`PUBSUB SHARDNUMSUB` on Redis; on NATS, which cannot count, the nodes that
//! heartbeat), finish when all answered, when the ones that did not are gone (on Redis the
//! count falls at once when a node dies; heartbeat timeouts and `ADAPTER_CLOSE` remove it from
//! the registry), or at the timeout, naming the missing nodes. What a node lost is counted
//! ([`BusStats::lost`], [`Cluster::last_loss`]), never hidden.
//!
//! ## Limits
//! Every bus message above [`ClusterConfig::max_message_bytes`] is dropped undecoded; the
//! transport's receive queue and each request's answer queue are bounded, and what overflows is
//! counted ([`BusStats`]), never buffered without bound.

pub mod jetstream;
mod msgpack;
pub mod nats;
mod node;
pub mod protocol;
pub mod redis;
pub mod streams;
pub mod transport;

pub use node::{BusStats, Cluster, ClusterAdapter, ClusterConfig, PeerInfo};

/// The 32-bit tag of a node uid (its first 8 hex digits): what a node puts in the ids it makes
/// (`Sid::set_local_tag`), so that any node can tell who owns a session.
pub fn tag_of(uid: &str) -> u32 {
    uid.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0)
}
pub use transport::{BusError, Incoming, SharedLog, Target, Transport};
