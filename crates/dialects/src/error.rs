//! The error a frame earns: a stable code, a human message, and the request id to echo.

use std::borrow::Cow;

use switchboard_core::{CoreError, ErrorCode, RawJson};

/// Why a frame was refused, in the shape every dialect can put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// The stable machine code.
    pub code: ErrorCode,
    /// A human-readable reason.
    pub message: Cow<'static, str>,
    /// The frame's request id, when it had one that could be read.
    pub rid: Option<RawJson>,
}

impl WireError {
    /// An error with `code` and `message` and no request id.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        WireError {
            code,
            message: message.into(),
            rid: None,
        }
    }

    /// The same error, echoing `rid`.
    pub fn with_rid(mut self, rid: Option<RawJson>) -> Self {
        self.rid = rid;
        self
    }

    pub(crate) fn bad_field(field: &str, expected: &str) -> Self {
        WireError::new(
            ErrorCode::BadField,
            format!("field {field} must be {expected}"),
        )
    }

    pub(crate) fn unknown_type(kind: &str) -> Self {
        let kind: String = kind.chars().take(64).collect();
        WireError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {kind:?}"),
        )
    }

    pub(crate) fn binary_unsupported() -> Self {
        WireError::new(
            ErrorCode::BinaryUnsupported,
            "this dialect takes JSON text frames only",
        )
    }
}

impl From<CoreError> for WireError {
    fn from(error: CoreError) -> Self {
        WireError::new(error.code(), error.to_string())
    }
}
