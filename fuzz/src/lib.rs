//! The fuzz targets' shared bodies (`check_envelope` for the cluster's bus, `check_token` for
//! access tokens, `check_websocket` for a client's WebSocket frames): [`check`] decodes one
//! input with one decoder and checks what is cheap to check (`check.rs`, which the regression
//! replay in `crates/dialects/tests/fuzz_regressions.rs` includes as well).

mod check;
mod envelope;
mod token;
mod websocket;

pub use check::{check, Target};
pub use envelope::check_envelope;
pub use token::check_token;
pub use websocket::{check_websocket, Outcome, LIMIT};
