//! The adapter conformance suite on a Redis Cluster of three masters started for this test
//! binary (sharded pub/sub: each channel lives on the shard that owns its slot).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::OnceLock;

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_cluster::{redis, Cluster, ClusterConfig};
use switchboard_test_support::RedisCluster;

fn redis_cluster() -> Option<&'static RedisCluster> {
    static C: OnceLock<Option<RedisCluster>> = OnceLock::new();
    C.get_or_init(|| switchboard_test_support::start_redis_cluster(3)).as_ref()
}

async fn setup() -> Option<Setup> {
    let url = tokio::task::spawn_blocking(|| redis_cluster().map(RedisCluster::url)).await.unwrap()?;
    let prefix = format!("sbtest-{}", rand::random::<u64>());
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..3 {
        let cfg =
            redis::RedisConfig::new(url.clone()).with_channel_prefix(prefix.clone()).with_emitter_key(prefix.clone());
        // A freshly made cluster may still be agreeing on its slots: retry a few times.
        let mut last = None;
        for _ in 0..20 {
            match redis::connect(cfg.clone(), ClusterConfig::default().with_node_name(format!("node{i}"))).await {
                Ok(c) => {
                    last = Some(Ok(c));
                    break;
                }
                Err(e) => {
                    last = Some(Err(e));
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
        }
        nodes.push(last.unwrap().unwrap_or_else(|e| panic!("cannot connect to the Redis Cluster: {e}")));
    }
    Some(Setup::new(3, move |node, nsp| nodes[node].adapter_factory()(nsp)))
}

adapter_conformance!(setup());
