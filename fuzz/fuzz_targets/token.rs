//! Fuzz target `token`: see `fuzz/src/token.rs` for what it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::check_token;

fuzz_target!(|data: &[u8]| {
    let _ = check_token(data);
});
