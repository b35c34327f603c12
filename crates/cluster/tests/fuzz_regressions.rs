//! Replays what the `envelope` fuzz target has crashed on (`fuzz/regressions/envelope/*`)
//! and its seeds (`fuzz/seeds-envelope/*`) through exactly the target's checks
//! (`fuzz/src/envelope.rs`, included here), under plain `cargo test`. Every seed must also
//! decode: the seeds are real envelopes of every kind, as the nodes and scripts write them.
#![allow(clippy::unwrap_used)]

use std::fs;

use bytes::Bytes;
use switchboard_cluster::envelope;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/envelope.rs"]
mod check;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::inputs;

#[test]
fn every_saved_crash_input_passes_the_envelope_checks() {
    for input in inputs("regressions/envelope") {
        eprintln!("replaying {}", input.display());
        check::check_envelope(&fs::read(&input).unwrap());
    }
}

#[test]
fn every_seed_decodes_and_passes_the_checks() {
    let seeds = inputs("seeds-envelope");
    assert!(seeds.len() >= 15, "the seed corpus is there: {seeds:?}");
    for seed in seeds {
        let data = fs::read(&seed).unwrap();
        check::check_envelope(&data);
        let bytes = Bytes::from(data);
        let decodes = if envelope::is_stats(&bytes) {
            envelope::decode_stats(&bytes, 1 << 20).is_ok()
        } else if envelope::is_resume(&bytes) {
            envelope::decode_resume(&bytes, 1 << 20).is_ok()
        } else if envelope::is_media(&bytes) {
            envelope::decode_media(&bytes, 1 << 20).is_ok()
        } else {
            envelope::decode(&bytes, 1 << 20).is_ok()
        };
        assert!(decodes, "{} decodes", seed.display());
    }
}
