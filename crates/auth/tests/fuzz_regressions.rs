//! Replays what the `token` fuzz target has crashed on (`fuzz/regressions/token/*`) and its
//! seeds (`fuzz/seeds-token/*`) through exactly the target's checks (`fuzz/src/token.rs`,
//! included here), under plain `cargo test`. The good seeds pass and the bad ones do not, so
//! the target reaches past the signature.
#![allow(clippy::unwrap_used)]

use std::fs;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/token.rs"]
mod check;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::inputs;

#[test]
fn every_saved_crash_input_passes_the_token_checks() {
    for input in inputs("regressions/token") {
        eprintln!("replaying {}", input.display());
        let _ = check::check_token(&fs::read(&input).unwrap());
    }
}

#[test]
fn every_seed_passes_the_checks() {
    let seeds = inputs("seeds-token");
    assert!(seeds.len() >= 9, "the seed corpus is there: {seeds:?}");
    for seed in seeds {
        let passed = check::check_token(&fs::read(&seed).unwrap());
        let name = seed.file_stem().unwrap().to_str().unwrap();
        let good = matches!(name, "full" | "prefix" | "admin");
        assert_eq!(passed, good, "{name}");
    }
}
