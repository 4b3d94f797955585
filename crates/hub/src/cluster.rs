//! Joining the cluster at start-up (`[cluster]`), and what the hub says about it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_cluster::{redis, Cluster, ClusterConfig};

use crate::config::Config;

/// Connects to the broker when `cluster.adapter` says so; `None` for the in-memory adapter.
/// `local`: the address this process listens on (for the default node name and advertised
/// address).
pub async fn connect(cfg: &Config, local: SocketAddr) -> Result<Option<Cluster>, String> {
    let c = &cfg.cluster;
    if c.adapter != "redis" {
        return Ok(None);
    }
    let name = if c.node_name.is_empty() {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        let host = if host.is_empty() { "localhost".to_owned() } else { host };
        format!("{host}:{}:{}", local.port(), std::process::id())
    } else {
        c.node_name.clone()
    };
    let advertise = if c.advertise.is_empty() { format!("http://{local}") } else { c.advertise.clone() };
    let config = ClusterConfig::default()
        .with_node_name(name.clone())
        .with_node_info(json!({ "advertise": advertise }))
        .with_heartbeat(Duration::from_millis(c.heartbeat_interval_ms), Duration::from_millis(c.heartbeat_timeout_ms))
        .with_request_timeout(Duration::from_millis(c.request_timeout_ms))
        .with_max_message_bytes(c.max_message_bytes)
        .with_socket_channels(c.socket_channels);
    let r = redis::RedisConfig::new(c.redis_url.clone())
        .with_channel_prefix(c.channel_prefix.clone())
        .with_emitter_key(c.emitter_key.clone());
    match redis::connect(r, config).await {
        Ok(cluster) => {
            // Ids made here name this node, so any node can forward to it.
            switchboard_socketio::engineio::Sid::set_local_tag(cluster.tag());
            tracing::info!(node = name, uid = %cluster.uid(), url = redact_url(&c.redis_url), "joined the cluster on Redis");
            Ok(Some(cluster))
        }
        Err(e) => Err(format!("cannot join the cluster (cluster.redis_url = {:?}): {e}", redact_url(&c.redis_url))),
    }
}

/// A URL without its password (`redis://user:secret@host` → `redis://user:<redacted>@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        None => url.to_owned(),
    }
}
