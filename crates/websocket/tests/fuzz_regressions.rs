//! Replays what the `websocket` fuzz target has crashed on (`fuzz/regressions/websocket/*`)
//! and its seeds (`fuzz/seeds-websocket/*`) through exactly the target's checks
//! (`fuzz/src/websocket.rs`, included here), under plain `cargo test`. Every seed but
//! `too-big` must also be read to its end, so the target starts from real conversations.
#![allow(clippy::unwrap_used)]

use std::fs;

use switchboard_websocket::Error;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/websocket.rs"]
mod check;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::inputs;

#[test]
fn every_saved_crash_input_passes_the_websocket_checks() {
    for input in inputs("regressions/websocket") {
        eprintln!("replaying {}", input.display());
        check::check_websocket(&fs::read(&input).unwrap());
    }
}

#[test]
fn every_seed_is_read_to_its_end() {
    let seeds = inputs("seeds-websocket");
    assert!(seeds.len() >= 6, "the seed corpus is there: {seeds:?}");
    for seed in seeds {
        let outcome = check::check_websocket(&fs::read(&seed).unwrap());
        let name = seed.file_stem().unwrap().to_str().unwrap();
        if name == "too-big" {
            let too_big = Error::TooBig {
                size: check::LIMIT as u64 + 1,
                max: check::LIMIT,
            };
            assert_eq!(outcome.refused, Some(too_big), "{name}");
        } else {
            assert_eq!(outcome.refused, None, "{name}");
            assert_eq!(outcome.left, 0, "{name}: read to its end");
            assert!(outcome.messages > 0, "{name}");
        }
    }
}
