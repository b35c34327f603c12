//! Parsed identifiers. A `RoomId` or `PeerName` that exists has passed the contract's rules
//! (1 to 128 bytes of UTF-8, no control characters), so nothing downstream checks again.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::CoreError;

/// The longest identifier the contract allows, in bytes.
pub const MAX_ID_BYTES: usize = 128;

fn parse_id(text: &str) -> Result<Arc<str>, CoreError> {
    if text.is_empty() {
        return Err(CoreError::BadId("must not be empty"));
    }
    if text.len() > MAX_ID_BYTES {
        return Err(CoreError::BadId("must be at most 128 bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(CoreError::BadId("must not contain control characters"));
    }
    Ok(Arc::from(text))
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `text` against the identifier rules of the contract.
            pub fn parse(text: &str) -> Result<Self, CoreError> {
                parse_id(text).map(Self)
            }

            /// The identifier as written on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

identifier! {
    /// A room of the room dialects, or a broadcast channel.
    RoomId
}

identifier! {
    /// A peer's identity: a username, a `peer_id`, or a pairing user's UUID.
    PeerName
}

/// The wire protocols switchboard speaks. The core uses it to know which rules apply to a
/// peer (rooms, pairing or channels) and to count connections per dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialectKind {
    /// Seed 000: rooms joined by URL, at `/ws`.
    QueryRooms,
    /// Seed 001: ping/pong pairing, at `/pairing`.
    Pairing,
    /// Seed 002: join-room with room-wide relay, at `/room-relay`.
    RoomRelay,
    /// Seed 003: the conference protocol, at `/conference`.
    Conference,
    /// Seed 004: plain broadcast, at `/broadcast`.
    Broadcast,
}

impl DialectKind {
    /// Every dialect, in a fixed order (the index of each is [`DialectKind::index`]).
    pub const ALL: [DialectKind; 5] = [
        DialectKind::QueryRooms,
        DialectKind::Pairing,
        DialectKind::RoomRelay,
        DialectKind::Conference,
        DialectKind::Broadcast,
    ];

    /// The dialect's name in paths, metrics labels and `/api/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            DialectKind::QueryRooms => "query-rooms",
            DialectKind::Pairing => "pairing",
            DialectKind::RoomRelay => "room-relay",
            DialectKind::Conference => "conference",
            DialectKind::Broadcast => "broadcast",
        }
    }

    /// Position in [`DialectKind::ALL`], for per-dialect arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses a dialect name as written by [`DialectKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for DialectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_contract() {
        assert!(PeerName::parse("alice").is_ok());
        assert!(PeerName::parse("Лена 李").is_ok());
        assert!(PeerName::parse(&"x".repeat(128)).is_ok());
        assert!(PeerName::parse(&"x".repeat(129)).is_err());
        assert!(PeerName::parse("").is_err());
        assert!(RoomId::parse("a\nb").is_err());
        assert!(RoomId::parse("a\u{7f}b").is_err());
        // 43 three-byte characters are 129 bytes: the limit counts bytes, not characters.
        assert!(RoomId::parse(&"李".repeat(43)).is_err());
    }

    #[test]
    fn dialect_names_round_trip() {
        for kind in DialectKind::ALL {
            assert_eq!(DialectKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(DialectKind::ALL[kind.index()], kind);
        }
    }
}
