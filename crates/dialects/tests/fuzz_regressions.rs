//! Replays every input the fuzzer has ever crashed on (`fuzz/regressions/TARGET/*`, kept by
//! `scripts/fuzz.sh`) through exactly what the fuzz target runs (`fuzz/src/check.rs`, included
//! here), so a fixed crash stays fixed under plain `cargo test`, on stable, without cargo-fuzz.
//! The seed corpus (`fuzz/seeds/`) is replayed too: it shows each target decoding real frames,
//! and that the checks hold on them.

use std::fs;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/check.rs"]
mod check;

use check::{check, Target};

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::{fuzz_dir, inputs};

#[test]
fn every_saved_crash_input_passes_its_target() {
    let regressions = fuzz_dir().join("regressions");
    let mut replayed = 0;
    for target in Target::ALL {
        for input in inputs(&format!("regressions/{}", target.name())) {
            let data = fs::read(&input).expect("a readable regression input");
            // A panic here names the input that brought it back.
            eprintln!("replaying {}", input.display());
            check(target, &data);
            replayed += 1;
        }
    }
    // Every directory under regressions/ must be a target's, or its inputs would never run.
    // `envelope` (the cluster's bus) is replayed by crates/cluster/tests/fuzz_regressions.rs,
    // `token` (access tokens) by crates/auth/tests/fuzz_regressions.rs, `websocket` (the
    // framing) by crates/websocket/tests/fuzz_regressions.rs.
    for entry in fs::read_dir(&regressions).expect("fuzz/regressions exists") {
        let name = entry.expect("a readable entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            name.starts_with('.')
                || name == "envelope"
                || name == "token"
                || name == "websocket"
                || Target::ALL.iter().any(|t| t.name() == name),
            "fuzz/regressions/{name} is not a fuzz target"
        );
    }
    eprintln!("{replayed} regression inputs replayed");
}

#[test]
fn the_seed_corpus_passes_every_target_and_really_decodes() {
    let seeds = inputs("seeds");
    assert!(
        seeds.len() >= 20,
        "the seed corpus is missing: {}",
        seeds.len()
    );
    for target in Target::ALL {
        let mut total = check::Outcome::default();
        for seed in &seeds {
            let outcome = check(target, &fs::read(seed).expect("a readable seed"));
            total.decoded += outcome.decoded;
            total.refused += outcome.refused;
            total.encoded += outcome.encoded;
        }
        // The docs' examples are the dialects' own frames: each target must decode some
        // and encode what they lead to, or the checks above would be checking nothing.
        assert!(
            total.decoded > 0 && total.encoded > 0,
            "{}: {total:?}",
            target.name()
        );
    }
}

#[test]
fn a_join_is_decoded_and_its_events_encoded() {
    let join = br#"{"type":"join-room","data":{"roomId":"r","username":"alice"},"rid":1}"#;
    let outcome = check(Target::Conference, join);
    assert_eq!((outcome.decoded, outcome.refused), (1, 1), "{outcome:?}"); // + the binary read
    assert!(
        outcome.encoded >= 3,
        "joined, user-joined, user-left: {outcome:?}"
    );
    let refused = check(Target::Conference, b"{\"type\":7}");
    assert_eq!(refused.decoded, 0);
    assert!(refused.refused >= 1 && refused.encoded >= 1, "{refused:?}");
}
