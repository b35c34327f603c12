//! What the core refuses, and the stable machine codes the dialects put on the wire.

use std::fmt;

use crate::{PeerName, RoomId};

/// A rule of the contract that a command broke. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// An identifier broke the identifier rules; the text says which one.
    #[error("identifier {0}")]
    BadId(&'static str),
    /// Another peer in the room already has this name.
    #[error("name {0} is already taken in this room")]
    NameTaken(PeerName),
    /// The addressed peer is not in the sender's room (or, pairing aside, nowhere).
    #[error("no peer named {0} in this room")]
    PeerNotFound(String),
    /// The command needs a joined room, or named a room the peer is not in.
    #[error("join a room first")]
    NotInRoom,
    /// A pairing user addressed a user id that is not connected.
    #[error("no user with id {0}")]
    UserNotFound(String),
    /// A pairing target is already connecting or connected to someone else.
    #[error("user {0} is busy")]
    UserBusy(PeerName),
    /// A pairing command that the sender's state does not allow; the text says why.
    #[error("{0}")]
    InvalidState(&'static str),
    /// A client tried to send one of the server's own message types.
    #[error("type {0} is reserved for the server")]
    ReservedType(String),
    /// The request belongs to a capability this server does not offer.
    #[error("{0} is not supported by this server")]
    Unsupported(String),
    /// The peer is no longer registered (it was evicted or has left).
    #[error("peer is gone")]
    UnknownPeer,
    /// The queue to other nodes is full: the request was not carried out; try again.
    #[error("the cluster is overloaded: try again")]
    Overloaded,
    /// The request needs the cluster's shared state (Redis), which cannot be reached.
    #[error("the cluster is unavailable: try again")]
    Unavailable,
    /// The peer's token does not allow this; the text says which grant is missing.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The room already has the most members a room may have (`--max-room-members`).
    #[error("room {0} is full")]
    RoomFull(RoomId),
}

impl CoreError {
    /// The stable code a dialect sends for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadId(_) => ErrorCode::BadId,
            CoreError::NameTaken(_) => ErrorCode::NameTaken,
            CoreError::PeerNotFound(_) => ErrorCode::PeerNotFound,
            CoreError::NotInRoom => ErrorCode::NotInRoom,
            CoreError::UserNotFound(_) => ErrorCode::UserNotFound,
            CoreError::UserBusy(_) => ErrorCode::UserBusy,
            CoreError::InvalidState(_) | CoreError::UnknownPeer => ErrorCode::InvalidState,
            CoreError::ReservedType(_) => ErrorCode::ReservedType,
            CoreError::Unsupported(_) => ErrorCode::Unsupported,
            CoreError::Overloaded => ErrorCode::Overloaded,
            CoreError::Unavailable => ErrorCode::Unavailable,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::RoomFull(_) => ErrorCode::RoomFull,
        }
    }
}

/// Stable machine codes, part of the public contract (docs/protocol.md): add, never rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame is not valid JSON.
    BadJson,
    /// The frame is a JSON object without a string `type`.
    MissingType,
    /// A field has the wrong type or shape, or a required one is missing.
    BadField,
    /// The `type` is not one this dialect knows.
    UnknownType,
    /// A binary frame arrived on a JSON dialect.
    BinaryUnsupported,
    /// The connection sends faster than the configured message rate.
    RateLimited,
    /// An identifier broke the identifier rules.
    BadId,
    /// The name is taken in that room.
    NameTaken,
    /// The command needs a joined room.
    NotInRoom,
    /// The addressed peer is not in the room.
    PeerNotFound,
    /// The type belongs to the server.
    ReservedType,
    /// The pairing state does not allow this command.
    InvalidState,
    /// The pairing target is busy with someone else.
    UserBusy,
    /// No pairing user has that id.
    UserNotFound,
    /// The server does not offer this capability.
    Unsupported,
    /// media: a request's parameters are missing or of the wrong shape.
    BadParameters,
    /// media: no transport with that id belongs to this peer.
    TransportNotFound,
    /// media: no producer with that id in this room (or, to close, of this peer).
    ProducerNotFound,
    /// media: the consumer's capabilities cannot receive the producer's codec.
    CannotConsume,
    /// media: a per-user or per-room cap on transports, producers or consumers.
    LimitReached,
    /// media: the server was started without media.
    MediaDisabled,
    /// cluster: the queue to other nodes is full; nothing was done.
    Overloaded,
    /// cluster: the shared state (Redis) cannot be reached; nothing was done.
    Unavailable,
    /// The peer's token does not grant this room, name or media request.
    Forbidden,
    /// The room has reached `--max-room-members`.
    RoomFull,
    /// conference: a session could not be resumed (unknown or expired token, a position
    /// older than the replay buffer, a buffer that overflowed while parked); the socket
    /// carries on as a fresh session.
    ResumeFailed,
}

impl ErrorCode {
    /// Every code, for metrics that list each one.
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::BadJson,
        ErrorCode::MissingType,
        ErrorCode::BadField,
        ErrorCode::UnknownType,
        ErrorCode::BinaryUnsupported,
        ErrorCode::RateLimited,
        ErrorCode::BadId,
        ErrorCode::NameTaken,
        ErrorCode::NotInRoom,
        ErrorCode::PeerNotFound,
        ErrorCode::ReservedType,
        ErrorCode::InvalidState,
        ErrorCode::UserBusy,
        ErrorCode::UserNotFound,
        ErrorCode::Unsupported,
        ErrorCode::BadParameters,
        ErrorCode::TransportNotFound,
        ErrorCode::ProducerNotFound,
        ErrorCode::CannotConsume,
        ErrorCode::LimitReached,
        ErrorCode::MediaDisabled,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::Forbidden,
        ErrorCode::RoomFull,
        ErrorCode::ResumeFailed,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::MissingType => "missing_type",
            ErrorCode::BadField => "bad_field",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadId => "bad_id",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::PeerNotFound => "peer_not_found",
            ErrorCode::ReservedType => "reserved_type",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::UserBusy => "user_busy",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::BadParameters => "bad_parameters",
            ErrorCode::TransportNotFound => "transport_not_found",
            ErrorCode::ProducerNotFound => "producer_not_found",
            ErrorCode::CannotConsume => "cannot_consume",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::MediaDisabled => "media_disabled",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ResumeFailed => "resume_failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
