//! Fuzz target `conference`: see `fuzz/src/check.rs` for what it decodes and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{check, Target};

fuzz_target!(|data: &[u8]| {
    check(Target::Conference, data);
});
