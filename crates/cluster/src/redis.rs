//! The Redis transport: the channels and envelope of Node's `@socket.io/redis-adapter` sharded
//! adapter (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7 or Redis Cluster), plus the classic channels that
//! `@socket.io/redis-emitter` publishes on.
//!
//! Channels, with `{p}` the channel prefix and `{N}` the namespace:
//!
//! | channel | kind | carries |
//! |---|---|---|
//! | `{p}#{N}#` | shard | every node's messages for the namespace |
//! | `{p}#{N}#{uid}#` | shard | answers to node `uid`'s requests |
//! | `{p}#{N}#{room}#` | shard | broadcasts to one room without acks, for the nodes with members |
//! | `{e}#{N}#`, `{e}#{N}#{room}#` | classic (pattern) | emitter broadcasts |
//! | `{e}-request#{N}#` | classic | emitter requests (join, leave, disconnect, server-side emit) |
//!
//! `{e}` is the emitter key (default `socket.io`, like `{p}`). The client is `fred`: it
//! reconnects with backoff and restores every subscription; a publish while the connection is
//! down fails at once (it is not queued), so a broadcast during an outage reaches this node's
//! sockets and reports the bus error. The receive buffer is bounded
//! ([`RedisConfig::receive_buffer`]); what overflows it is counted as lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message as RedisMessage;
use fred::types::MessageKind;
use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::transport::{BusError, BusFuture, Forwarder, Incoming, Target, Transport};

/// Where and how to reach Redis.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]` for one Redis, `redis-cluster://host:port?node=host2:port2`
    /// for a Redis Cluster (`rediss://` for TLS).
    pub url: String,
    /// The sharded channels' prefix (Node's `channelPrefix`). Default `socket.io`.
    pub channel_prefix: String,
    /// The classic channels' key that emitters publish on (Node's emitter `key`). Default
    /// `socket.io`; empty: emitters are not listened to.
    pub emitter_key: String,
    /// How long a publish or query may take. Default 2 s.
    pub command_timeout: Duration,
    /// How many received messages may wait for the node to take them; more are lost (and
    /// counted). Default 16,384.
    pub receive_buffer: usize,
    /// Largest reconnection delay (the backoff starts at 100 ms). Default 5 s.
    pub max_reconnect_delay: Duration,
    /// The shared event log and sessions in Redis Streams, for connection state recovery
    /// across nodes ([`crate::streams`]). Default: none.
    pub streams: Option<crate::streams::StreamsConfig>,
}

impl RedisConfig {
    /// The defaults, with this URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            channel_prefix: "socket.io".into(),
            emitter_key: "socket.io".into(),
            command_timeout: Duration::from_secs(2),
            receive_buffer: 16_384,
            max_reconnect_delay: Duration::from_secs(5),
            streams: None,
        }
    }

    /// Sets [`streams`](Self::streams): recovery across nodes.
    pub fn with_streams(mut self, s: crate::streams::StreamsConfig) -> Self {
        self.streams = Some(s);
        self
    }

    /// Sets [`channel_prefix`](Self::channel_prefix).
    pub fn with_channel_prefix(mut self, p: impl Into<String>) -> Self {
        self.channel_prefix = p.into();
        self
    }

    /// Sets [`emitter_key`](Self::emitter_key).
    pub fn with_emitter_key(mut self, k: impl Into<String>) -> Self {
        self.emitter_key = k.into();
        self
    }
}

/// Connects to Redis (see [`RedisConfig`]) and starts a cluster node on it.
pub async fn connect(redis: RedisConfig, config: crate::ClusterConfig) -> Result<crate::Cluster, BusError> {
    let (tx, rx) = mpsc::channel(redis.receive_buffer.max(64));
    let t = RedisTransport::connect(redis, tx).await?;
    Ok(crate::Cluster::start(Arc::new(t), rx, config))
}

#[derive(Clone, Debug)]
enum Route {
    Node(String),
    EmitterRequest(String),
}

/// The Redis transport.
pub struct RedisTransport {
    config: RedisConfig,
    publisher: Client,
    subscriber: SubscriberClient,
    /// Exact shard and classic channels → what they carry.
    routes: Arc<RwLock<HashMap<String, Route>>>,
    /// Emitter pattern prefixes (`{e}#{N}#`) → namespace.
    emitter_prefixes: Arc<RwLock<Vec<(String, String)>>>,
    opts: Options,
    log: Option<Arc<crate::streams::RedisLog>>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport").field("config", &self.config).finish_non_exhaustive()
    }
}

fn broker(e: Error) -> BusError {
    BusError::Broker(e.to_string())
}

/// Escapes Redis glob characters so a namespace name cannot widen a pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisTransport {
    /// Connects (both connections up, or an error) and starts delivering what arrives to
    /// `incoming`.
    pub async fn connect(config: RedisConfig, incoming: mpsc::Sender<Incoming>) -> Result<RedisTransport, BusError> {
        let cfg = Config::from_url(&config.url).map_err(|e| BusError::Connect(e.to_string()))?;
        let max_delay = u32::try_from(config.max_reconnect_delay.as_millis()).unwrap_or(u32::MAX);
        let mut builder = Builder::from_config(cfg);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, max_delay.max(100), 2))
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|p| {
                p.broadcast_channel_capacity = config.receive_buffer.max(64);
            });
        let publisher = builder.build().map_err(|e| BusError::Connect(e.to_string()))?;
        let subscriber = builder.build_subscriber_client().map_err(|e| BusError::Connect(e.to_string()))?;
        publisher.init().await.map_err(|e| BusError::Connect(e.to_string()))?;
        subscriber.init().await.map_err(|e| BusError::Connect(e.to_string()))?;
        let _resubscribe = subscriber.manage_subscriptions();
        let log = match &config.streams {
            Some(sc) => Some(crate::streams::RedisLog::start(&builder, sc.clone(), incoming.clone()).await?),
            None => None,
        };
        let t = RedisTransport {
            log,
            opts: Options { fail_fast: true, timeout: Some(config.command_timeout), ..Default::default() },
            config,
            publisher,
            subscriber,
            routes: Arc::new(RwLock::new(HashMap::new())),
            emitter_prefixes: Arc::new(RwLock::new(Vec::new())),
        };
        t.spawn_receiver(incoming);
        Ok(t)
    }

    fn spawn_receiver(&self, incoming: mpsc::Sender<Incoming>) {
        let mut rx = self.subscriber.message_rx();
        let routes = self.routes.clone();
        let prefixes = self.emitter_prefixes.clone();
        let tx = incoming.clone();
        tokio::spawn(async move {
            let mut out = Forwarder::new(tx);
            loop {
                let m = match out.wait(rx.recv()).await {
                    Ok(m) => m,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        out.lost(n);
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if let Some(inc) = route(m, &routes, &prefixes) {
                    out.forward(inc);
                }
            }
        });
        let mut reconnects = self.subscriber.reconnect_rx();
        let tx = incoming.clone();
        let sub = self.subscriber.clone();
        let routes = self.routes.clone();
        let prefixes = self.emitter_prefixes.clone();
        let limit = self.config.command_timeout;
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                // Every channel we want, whether or not its first subscription succeeded (a
                // room created while Redis was down is subscribed here).
                let (shard, classic): (Vec<String>, Vec<String>) = {
                    let r = routes.read();
                    let shard = r.iter().filter(|(_, v)| matches!(v, Route::Node(_))).map(|(k, _)| k.clone()).collect();
                    let classic = r
                        .iter()
                        .filter(|(_, v)| matches!(v, Route::EmitterRequest(_)))
                        .map(|(k, _)| k.clone())
                        .collect();
                    (shard, classic)
                };
                let patterns: Vec<String> =
                    prefixes.read().iter().map(|(p, _)| format!("{}*", glob_escape(p))).collect();
                for ch in shard {
                    let _ = tokio::time::timeout(limit, sub.ssubscribe(ch)).await;
                }
                for ch in classic {
                    let _ = tokio::time::timeout(limit, sub.subscribe(ch)).await;
                }
                for p in patterns {
                    let _ = tokio::time::timeout(limit, sub.psubscribe(p)).await;
                }
                let _ = tx.send(Incoming::Reconnected).await;
            }
        });
        let mut errors = self.subscriber.error_rx();
        tokio::spawn(async move {
            while let Ok((e, _)) = errors.recv().await {
                let _ = incoming.send(Incoming::Disconnected(e.to_string())).await;
            }
        });
    }

    fn main_channel(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.config.channel_prefix)
    }

    async fn timed<T>(&self, f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, BusError> {
        match tokio::time::timeout(self.config.command_timeout, f).await {
            Ok(r) => r.map_err(broker),
            Err(_) => Err(BusError::Broker("timed out".into())),
        }
    }
}

fn route(
    m: RedisMessage,
    routes: &RwLock<HashMap<String, Route>>,
    prefixes: &RwLock<Vec<(String, String)>>,
) -> Option<Incoming> {
    // The payload's bytes as the client read them (no copy).
    let payload = match m.value {
        Value::Bytes(b) => b,
        Value::String(s) => s.into_inner(),
        other => Bytes::from(other.as_string()?),
    };
    let channel: &str = &m.channel;
    match m.kind {
        MessageKind::SMessage => match routes.read().get(channel) {
            Some(Route::Node(nsp)) => Some(Incoming::Node { nsp: nsp.clone(), payload }),
            _ => None,
        },
        MessageKind::Message => match routes.read().get(channel) {
            Some(Route::EmitterRequest(nsp)) => Some(Incoming::EmitterRequest { nsp: nsp.clone(), payload }),
            _ => None,
        },
        MessageKind::PMessage => {
            let p = prefixes.read();
            let (prefix, nsp) =
                p.iter().filter(|(pre, _)| channel.starts_with(pre.as_str())).max_by_key(|(pre, _)| pre.len())?;
            let rest = &channel[prefix.len()..];
            let room = match rest.strip_suffix('#') {
                Some(r) if !r.is_empty() => Some(r.to_owned()),
                _ if rest.is_empty() => None,
                // Another namespace whose name extends this one's.
                _ => return None,
            };
            Some(Incoming::EmitterBroadcast { nsp: nsp.clone(), room, payload })
        }
    }
}

impl Transport for RedisTransport {
    fn add_namespace<'a>(&'a self, nsp: &'a str, uid: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let main = self.main_channel(nsp);
            let own = format!("{main}{uid}#");
            {
                let mut r = self.routes.write();
                r.insert(main.clone(), Route::Node(nsp.to_owned()));
                r.insert(own.clone(), Route::Node(nsp.to_owned()));
            }
            self.timed(self.subscriber.ssubscribe(main)).await?;
            self.timed(self.subscriber.ssubscribe(own)).await?;
            let key = &self.config.emitter_key;
            if !key.is_empty() {
                let request = format!("{key}-request#{nsp}#");
                let prefix = format!("{key}#{nsp}#");
                self.routes.write().insert(request.clone(), Route::EmitterRequest(nsp.to_owned()));
                self.emitter_prefixes.write().push((prefix.clone(), nsp.to_owned()));
                self.timed(self.subscriber.subscribe(request)).await?;
                self.timed(self.subscriber.psubscribe(format!("{}*", glob_escape(&prefix)))).await?;
            }
            Ok(())
        })
    }

    fn publish<'a>(&'a self, nsp: &'a str, to: Target<'a>, payload: Bytes) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let main = self.main_channel(nsp);
            let channel = match to {
                Target::Main => main,
                Target::Node(uid) | Target::Room(uid) => format!("{main}{uid}#"),
            };
            let _: i64 = self.publisher.with_options(&self.opts).spublish(channel, payload).await.map_err(broker)?;
            Ok(())
        })
    }

    fn subscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let ch = format!("{}{room}#", self.main_channel(nsp));
            self.routes.write().insert(ch.clone(), Route::Node(nsp.to_owned()));
            self.timed(self.subscriber.ssubscribe(ch)).await
        })
    }

    fn unsubscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let ch = format!("{}{room}#", self.main_channel(nsp));
            self.routes.write().remove(&ch);
            self.timed(self.subscriber.sunsubscribe(ch)).await
        })
    }

    fn server_count<'a>(&'a self, nsp: &'a str) -> BusFuture<'a, usize> {
        Box::pin(async move {
            // [channel, count]; in a Redis Cluster the command goes to the shard that owns the
            // channel, where all its subscribers are.
            let v: Vec<Value> = self
                .publisher
                .with_options(&self.opts)
                .pubsub_shardnumsub(self.main_channel(nsp))
                .await
                .map_err(broker)?;
            let n = v.get(1).and_then(|c| c.as_i64()).unwrap_or(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn has_room_channels(&self) -> bool {
        true
    }

    fn shared_log(&self) -> Option<Arc<dyn crate::transport::SharedLog>> {
        self.log.clone().map(|l| l as Arc<dyn crate::transport::SharedLog>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_namespaces_are_escaped() {
        assert_eq!(glob_escape("/a*b?[c]\\"), "/a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("/chat"), "/chat");
    }
}
