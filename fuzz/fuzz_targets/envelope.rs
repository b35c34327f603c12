//! Fuzz target `envelope`: see `fuzz/src/envelope.rs` for what it decodes and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::check_envelope;

fuzz_target!(|data: &[u8]| {
    check_envelope(data);
});
