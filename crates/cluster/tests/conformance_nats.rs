//! The adapter conformance suite on NATS: three nodes on the NATS server at 127.0.0.1:4222,
//! each scenario on its own subject prefix.

#![allow(clippy::unwrap_used)]

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_cluster::{nats, Cluster, ClusterConfig};

async fn setup() -> Option<Setup> {
    if !switchboard_test_support::service_available("NATS", "127.0.0.1:4222") {
        return None;
    }
    let prefix = format!("sbtest.c{}", rand::random::<u64>());
    let mut nodes: Vec<Cluster> = Vec::new();
    for i in 0..3 {
        let cfg = nats::NatsConfig::new("nats://127.0.0.1:4222").with_subject_prefix(prefix.clone());
        let c = nats::connect(cfg, ClusterConfig::default().with_node_name(format!("node{i}"))).await.unwrap();
        nodes.push(c);
    }
    Some(Setup::new(3, move |node, nsp| nodes[node].adapter_factory()(nsp)))
}

adapter_conformance!(setup());
