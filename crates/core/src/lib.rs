//! switchboard's core: rooms, peers, pairing and broadcast channels, and the rules that bind
//! them. It owns no socket and reads no clock: the server feeds it [`Command`]s and timestamps,
//! and it answers by putting [`Event`]s on each peer's bounded [`Outbox`]. Dialects turn wire
//! frames into commands and events back into frames; the core never sees a frame.
#![warn(missing_docs)]

mod cluster;
mod command;
mod error;
mod event;
mod grant;
mod hub;
mod ice;
mod id;
mod peer;

pub use cluster::{Inbound, Member, MembershipListener, NodeId, Overloaded, Seat, Uplink};
pub use command::{Command, MediaRequest, Message, SignalKind};
pub use error::{CoreError, ErrorCode};
pub use event::{
    ErrorEvent, Event, Joined, MediaEvent, Presence, RawFrame, RawJson, Retained, SharedFrames,
    Signal,
};
pub use grant::{Grant, RoomGrant};
pub use hub::{Census, Hub, Outcome, SharedHub, Stats, UserStats};
pub use ice::IceMinter;
pub use id::{DialectKind, PeerName, RoomId, MAX_ID_BYTES};
pub use peer::{Outbox, PeerKey, PeerProfile, Place, State};
