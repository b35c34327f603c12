//! Replays what the `token` fuzz target has crashed on (`fuzz/regressions/token/*`) and its
//! seeds (`fuzz/seeds-token/*`) through exactly the target's checks (`fuzz/src/token.rs`,
//! included here), under plain `cargo test`. The good seeds pass and the bad ones do not, so
//! the target reaches past the signature.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/token.rs"]
mod check;

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

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
