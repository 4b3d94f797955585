//! The adapter conformance suite on the in-memory adapter (one node).

use switchboard_adapter_tests::{adapter_conformance, Setup};
use switchboard_socketio::LocalAdapter;

adapter_conformance!(async { Some(Setup::new(1, |_node, _nsp| Box::new(LocalAdapter::new()))) });
