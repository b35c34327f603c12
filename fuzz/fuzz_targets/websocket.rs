//! Fuzz target `websocket`: see `fuzz/src/websocket.rs` for what it decodes and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::check_websocket;

fuzz_target!(|data: &[u8]| {
    let _ = check_websocket(data);
});
