//! Helpers shared by the integration tests of several crates.

#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

/// The `interop/` folder: the real peers' manifests and scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Whether a peer is installed (`program args…` succeeds in `interop/`). When it is not: with
/// `SWITCHBOARD_REQUIRE_PEERS=1` (as in CI) this panics, failing the test; otherwise it prints
/// why the test skips.
pub fn peer_available(name: &str, program: &str, args: &[&str]) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let why = format!(
            "{name} is not installed (bash .ci/run installs it: pip install -r interop/requirements.txt; npm ci --prefix interop; apt-get install chromium nginx)"
        );
        if std::env::var("SWITCHBOARD_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}
