//! The adapter conformance suite on a Redis Cluster of three masters started for this test
//! binary (sharded pub/sub: each channel lives on the shard that owns its slot).

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_cluster::{redis, Cluster, ClusterConfig};
use switchboard_test_support::RedisCluster;

fn redis_cluster() -> Option<&'static RedisCluster> {
    static C: OnceLock<Option<RedisCluster>> = OnceLock::new();
    C.get_or_init(|| switchboard_test_support::start_redis_cluster(3)).as_ref()
}

async fn setup() -> Option<Setup> {
    let url = tokio::task::spawn_blocking(|| redis_cluster().map(RedisCluster::url)).await.ok()??;
    let prefix = format!("sbtest-{}", rand::random::<u64>());
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..3 {
        let cfg =
            redis::RedisConfig::new(url.clone()).with_channel_prefix(prefix.clone()).with_emitter_key(prefix.clone());
        let c = redis::connect(cfg, ClusterConfig::default().with_node_name(format!("node{i}"))).await.unwrap();
        nodes.push(c);
    }
    Some(Setup::new(3, move |node, nsp| nodes[node].adapter_factory()(nsp)))
}

adapter_conformance!(setup());
