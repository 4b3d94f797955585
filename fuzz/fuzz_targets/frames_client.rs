//! Frame and message reader, client role (see frames_server).
#![no_main]

#[path = "frames_common.rs"]
mod frames_common;

use libfuzzer_sys::fuzz_target;
use switchboard_ws_proto::Role;

fuzz_target!(|data: &[u8]| frames_common::run(Role::Client, data));
