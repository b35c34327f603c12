//! What a verified token lets a peer do in the core: which rooms it may join and under which
//! name. The server verifies tokens (signatures, expiry, audience) and checks the grants that
//! gate a route or a media request itself; the hub checks the two that decide a join, because
//! only the hub sees every join, whichever dialect or node it comes from.

use crate::{CoreError, PeerName, RoomId};

/// The room rule of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrant {
    /// Exactly this room.
    Exact(String),
    /// Any room whose id starts with this (the token said `prefix*`; `*` alone is every room).
    Prefix(String),
}

impl RoomGrant {
    /// Reads the token's `room` claim: `room1`, `team-*` or `*`.
    pub fn parse(text: &str) -> RoomGrant {
        match text.strip_suffix('*') {
            Some(prefix) => RoomGrant::Prefix(prefix.to_owned()),
            None => RoomGrant::Exact(text.to_owned()),
        }
    }

    /// Whether `room` is covered.
    pub fn allows(&self, room: &str) -> bool {
        match self {
            RoomGrant::Exact(exact) => exact == room,
            RoomGrant::Prefix(prefix) => room.starts_with(prefix.as_str()),
        }
    }
}

/// A peer's grants, as far as the hub checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The rooms the peer may join; `None`: none.
    pub room: Option<RoomGrant>,
    /// The only name the peer may take: the token's identity.
    pub name: PeerName,
}

impl Grant {
    /// Whether joining `room` as `name` is allowed; the refusal says which rule failed.
    pub fn check_join(&self, room: &RoomId, name: &PeerName) -> Result<(), CoreError> {
        if !self
            .room
            .as_ref()
            .is_some_and(|rule| rule.allows(room.as_str()))
        {
            return Err(CoreError::Forbidden("the token does not grant this room"));
        }
        if *name != self.name {
            return Err(CoreError::Forbidden("the token grants another name"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_rules_match_exactly_or_by_prefix() {
        assert!(RoomGrant::parse("room1").allows("room1"));
        assert!(!RoomGrant::parse("room1").allows("room10"));
        assert!(RoomGrant::parse("team-*").allows("team-a"));
        assert!(RoomGrant::parse("team-*").allows("team-"));
        assert!(!RoomGrant::parse("team-*").allows("teams"));
        assert!(RoomGrant::parse("*").allows("anything"));
    }

    #[test]
    fn a_join_needs_the_room_and_the_name() {
        let grant = Grant {
            room: Some(RoomGrant::parse("room1")),
            name: PeerName::parse("alice").unwrap(),
        };
        let room1 = RoomId::parse("room1").unwrap();
        let room2 = RoomId::parse("room2").unwrap();
        let alice = PeerName::parse("alice").unwrap();
        let bob = PeerName::parse("bob").unwrap();
        assert!(grant.check_join(&room1, &alice).is_ok());
        assert!(matches!(
            grant.check_join(&room2, &alice),
            Err(CoreError::Forbidden(_))
        ));
        assert!(matches!(
            grant.check_join(&room1, &bob),
            Err(CoreError::Forbidden(_))
        ));
        let roomless = Grant {
            room: None,
            ..grant
        };
        assert!(roomless.check_join(&room1, &alice).is_err());
    }
}
