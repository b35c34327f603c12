//! The inputs the crates' regression tests replay: every `fuzz_regressions.rs` (in dialects,
//! cluster, auth and websocket) includes this file by path, so the fuzz targets' seeds and saved
//! crashes are found the same way everywhere. Not part of the fuzz crate itself.

use std::fs;
use std::path::{Path, PathBuf};

/// `fuzz/`, from the including crate (`crates/NAME`).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files in `fuzz/DIR`, sorted; none if it does not exist. Dotfiles (`.gitkeep`) are not
/// inputs.
pub fn inputs(dir: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(fuzz_dir().join(dir)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
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
