//! One codec per wire protocol. A dialect turns a client's frame into a core [`Command`] and
//! a core [`Event`] into a frame for its client. Pure: no I/O, no locks, no clock. Any input
//! gives `Ok` or a typed [`WireError`], never a panic. The wire contract for each dialect is
//! docs/dialects.md; each file ends with tests for its messages.
#![warn(missing_docs)]

mod broadcast;
mod conference;
mod error;
mod frame;
mod pairing;
mod query_rooms;
pub mod resume;
mod room_relay;

use bytes::Bytes;
use switchboard_core::{Command, DialectKind, Event};

pub use broadcast::Broadcast;
pub use conference::Conference;
pub use error::WireError;
pub use pairing::Pairing;
pub use query_rooms::QueryRooms;
pub use room_relay::RoomRelay;

/// One wire protocol: its frames become core commands, and core events become its frames.
pub trait Dialect: Send + Sync + 'static {
    /// Which dialect this is (paths, metrics labels, stats).
    const KIND: DialectKind;

    /// Per-connection codec state: what the connection has learnt from its own events
    /// (its name, its room), used to shape later frames.
    type Session: Default + Send + 'static;

    /// Decodes one text frame.
    fn decode<'a>(session: &mut Self::Session, text: &'a str) -> Result<Command<'a>, WireError>;

    /// Decodes one binary frame. JSON dialects refuse them.
    fn decode_binary(
        _session: &mut Self::Session,
        _bytes: Bytes,
    ) -> Result<Command<'static>, WireError> {
        Err(WireError::binary_unsupported())
    }

    /// Encodes `event` for this connection. Text is written to `out` (cleared first), and
    /// the return value says what to send. A signal's frame is [`Outbound::TextForAll`]
    /// exactly when no receiver's session shapes it: callers share such frames among the
    /// signal's receivers without encoding it again.
    fn encode(session: &mut Self::Session, event: &Event, out: &mut String) -> Outbound;
}

/// What [`Dialect::encode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Nothing: this dialect cannot express the event, or does not send it.
    Skip,
    /// A text frame, written into the caller's buffer.
    Text,
    /// A text frame, written into the caller's buffer, that depends on the event alone and
    /// not on this connection's session (a room-wide message): every receiver in this
    /// dialect gets the same bytes, so the caller may make it once and share it
    /// ([`switchboard_core::Signal::frames`]).
    TextForAll,
    /// A shared text frame (broadcast): the same buffer goes to every receiver.
    SharedText(Bytes),
    /// A shared binary frame (broadcast).
    Binary(Bytes),
}
