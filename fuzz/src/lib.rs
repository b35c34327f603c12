//! The fuzz targets' shared body: [`check`] decodes one input with one decoder and checks
//! what is cheap to check (`check.rs`, which the regression replay in
//! `crates/dialects/tests/fuzz_regressions.rs` includes as well).

mod check;

pub use check::{check, Target};
