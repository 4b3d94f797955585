//! Frame and message reader, server role: arbitrary bytes (in arbitrary pieces) and timer
//! events through `Connection`, with small limits so they are reached. Must never panic, and
//! must keep its promises: nothing after the Close, bounded owed output.
#![no_main]

#[path = "frames_common.rs"]
mod frames_common;

use libfuzzer_sys::fuzz_target;
use switchboard_ws_proto::Role;

fuzz_target!(|data: &[u8]| frames_common::run(Role::Server, data));
