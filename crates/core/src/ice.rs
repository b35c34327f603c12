//! What a joiner's `iceServers` hold. Either the same bytes for everyone (the operator's
//! `--ice-server`s, encoded once), or a fresh array per join from an [`IceMinter`] the server
//! provides: TURN REST credentials are signed with a secret and expire, and the core has
//! neither crypto nor a clock, so it asks.

use std::sync::Arc;

use crate::{PeerName, RawJson, RoomId};

/// Makes the `iceServers` array for one join (the server's TURN credential minting).
///
/// Called under the hub lock, once per `joined`, so it must be quick and must not block:
/// an HMAC and a small string are fine, I/O is not.
pub trait IceMinter: Send + Sync + 'static {
    /// The JSON array of RTCIceServer objects handed to `name` on joining `room`.
    fn mint(&self, room: &RoomId, name: &PeerName) -> RawJson;
}

/// Where the hub gets each joiner's `iceServers`.
#[derive(Clone, Default)]
pub(crate) enum IceServers {
    /// None configured: `joined` has no `iceServers`.
    #[default]
    None,
    /// The same array for every joiner, shared (a reference count, no copy).
    Fixed(RawJson),
    /// A fresh array per joiner.
    Minted(Arc<dyn IceMinter>),
}

impl IceServers {
    /// The array for `name` joining `room`, if there is one.
    pub(crate) fn for_joiner(&self, room: &RoomId, name: &PeerName) -> Option<RawJson> {
        match self {
            IceServers::None => None,
            IceServers::Fixed(json) => Some(json.clone()),
            IceServers::Minted(minter) => Some(minter.mint(room, name)),
        }
    }
}
