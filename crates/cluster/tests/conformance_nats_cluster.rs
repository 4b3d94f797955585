//! The adapter conformance suite on a NATS cluster of three servers started for this test
//! binary, each node on a different server (messages cross the routes; interest spreads
//! between servers).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::OnceLock;

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_cluster::{nats, Cluster, ClusterConfig};
use switchboard_test_support::NatsCluster;

fn nats_cluster() -> Option<&'static NatsCluster> {
    static C: OnceLock<Option<NatsCluster>> = OnceLock::new();
    C.get_or_init(|| switchboard_test_support::start_nats_cluster(3)).as_ref()
}

async fn setup() -> Option<Setup> {
    let urls = tokio::task::spawn_blocking(|| nats_cluster().map(|c| (0..3).map(|i| c.url(i)).collect::<Vec<_>>()))
        .await
        .unwrap()?;
    let prefix = format!("sbtest.c{}", rand::random::<u64>());
    let mut nodes: Vec<Cluster> = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let cfg = nats::NatsConfig::new(url).with_subject_prefix(prefix.clone());
        let c = nats::connect(cfg, ClusterConfig::default().with_node_name(format!("node{i}")))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the NATS cluster: {e}"));
        nodes.push(c);
    }
    Some(Setup::new(3, move |node, nsp| nodes[node].adapter_factory()(nsp)))
}

adapter_conformance!(setup());
