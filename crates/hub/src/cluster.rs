//! Joining the cluster at start-up (`[cluster]`), and what the hub says about it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_cluster::{jetstream, nats, redis, streams, Cluster, ClusterConfig};

use crate::config::Config;

/// Connects to the broker when `cluster.adapter` says so; `None` for the in-memory adapter.
/// `local`: the address this process listens on (for the default node name and advertised
/// address).
pub async fn connect(cfg: &Config, local: SocketAddr) -> Result<Option<Cluster>, String> {
    let c = &cfg.cluster;
    if c.adapter != "redis" && c.adapter != "nats" {
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
    let (joined, field, url) = if c.adapter == "nats" {
        let mut n = nats_config(c).await?;
        let rec = &cfg.recovery;
        if rec.enabled {
            // Recovery across nodes: the events and sessions in JetStream.
            n = n.with_jetstream(
                jetstream::JetStreamConfig::default()
                    .with_stream(rec.nats_stream.clone(), rec.nats_stream_max_len)
                    .with_recovery(Duration::from_millis(rec.max_disconnection_ms), rec.max_events),
            );
        }
        (nats::connect(n, config).await, "cluster.nats_url", redact_urls(&c.nats_url))
    } else {
        let mut r = redis::RedisConfig::new(c.redis_url.clone())
            .with_channel_prefix(c.channel_prefix.clone())
            .with_emitter_key(c.emitter_key.clone());
        let rec = &cfg.recovery;
        if rec.enabled {
            // Recovery across nodes: the events and sessions in Redis Streams.
            r = r.with_streams(
                streams::StreamsConfig::default()
                    .with_stream(rec.redis_stream.clone(), rec.redis_stream_max_len)
                    .with_session_prefix(rec.redis_session_prefix.clone())
                    .with_recovery(Duration::from_millis(rec.max_disconnection_ms), rec.max_events),
            );
        }
        (redis::connect(r, config).await, "cluster.redis_url", redact_url(&c.redis_url))
    };
    match joined {
        Ok(cluster) => {
            // Ids made here name this node, so any node can forward to it.
            switchboard_socketio::engineio::Sid::set_local_tag(cluster.tag());
            tracing::info!(node = name, uid = %cluster.uid(), adapter = c.adapter, url, "joined the cluster");
            Ok(Some(cluster))
        }
        Err(e) => Err(format!("cannot join the cluster ({field} = {url:?}): {e}")),
    }
}

/// `[cluster]`'s NATS settings as the transport takes them (reading the NKey seed file).
async fn nats_config(c: &crate::config::ClusterCfg) -> Result<nats::NatsConfig, String> {
    let auth = if !c.nats_user.is_empty() {
        nats::NatsAuth::UserPassword { user: c.nats_user.clone(), password: c.nats_password.clone() }
    } else if !c.nats_token.is_empty() {
        nats::NatsAuth::Token(c.nats_token.clone())
    } else if !c.nats_nkey_file.is_empty() {
        let seed = tokio::fs::read_to_string(&c.nats_nkey_file)
            .await
            .map_err(|e| format!("cluster.nats_nkey_file {:?}: {e}", c.nats_nkey_file))?;
        nats::NatsAuth::Nkey(seed.trim().to_owned())
    } else if !c.nats_creds_file.is_empty() {
        nats::NatsAuth::CredsFile(c.nats_creds_file.clone().into())
    } else {
        nats::NatsAuth::None
    };
    let mut tls = nats::NatsTls::default();
    tls.required = c.nats_tls_required;
    if !c.nats_tls_ca_file.is_empty() {
        tls.ca_file = Some(c.nats_tls_ca_file.clone().into());
    }
    if !c.nats_tls_cert_file.is_empty() {
        tls.client_cert = Some((c.nats_tls_cert_file.clone().into(), c.nats_tls_key_file.clone().into()));
    }
    Ok(nats::NatsConfig::new(&c.nats_url)
        .with_subject_prefix(c.nats_subject_prefix.clone())
        .with_auth(auth)
        .with_tls(tls))
}

/// [`redact_url`] of each comma-separated URL.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',').map(|u| redact_url(u.trim())).collect::<Vec<_>>().join(",")
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
