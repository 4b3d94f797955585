//! The adapter conformance suite on Redis: three nodes on the Redis at 127.0.0.1:6379, each
//! scenario on its own channel prefix.

#![allow(clippy::unwrap_used)]

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_cluster::{redis, Cluster, ClusterConfig};

async fn setup() -> Option<Setup> {
    if !switchboard_test_support::service_available("Redis", "127.0.0.1:6379") {
        return None;
    }
    let prefix = format!("sbtest-{}", rand::random::<u64>());
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..3 {
        let cfg = redis::RedisConfig::new("redis://127.0.0.1:6379")
            .with_channel_prefix(prefix.clone())
            .with_emitter_key(prefix.clone());
        let c = redis::connect(cfg, ClusterConfig::default().with_node_name(format!("node{i}"))).await.unwrap();
        nodes.push(c);
    }
    Some(Setup::new(3, move |node, nsp| nodes[node].adapter_factory()(nsp)))
}

adapter_conformance!(setup());
