//! A connected peer as the core sees it: where it is, and the bounded queue to its socket.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::{DialectKind, Event, Grant, PeerName, RoomId};

/// Events waiting for one socket. Bounded: a peer that cannot keep up is evicted, never
/// buffered without limit (the capacity is the server's `--outbox-capacity`).
pub type Outbox = mpsc::Sender<Event>;

/// A connection's handle in the hub. Keys grow with every connection, so ordering by key is
/// ordering by age (what `/api/stats` lists first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// Facts about a connection that the core keeps for the stats API. Supplied by the server:
/// the core reads no clock and sees no socket.
#[derive(Debug, Clone)]
pub struct PeerProfile {
    /// The wire protocol the connection speaks.
    pub dialect: DialectKind,
    /// The client's address.
    pub ip: IpAddr,
    /// When the connection was accepted.
    pub connected_at: SystemTime,
    /// What the connection's token grants; `None`: no token, no restriction (`--auth off`,
    /// or `optional` without a token).
    pub grant: Option<Arc<Grant>>,
}

/// Where a peer is.
#[derive(Debug, Clone)]
pub enum Place {
    /// Connected, in no room yet (room dialects before `join-room`).
    Lobby,
    /// A member of a room under `name`.
    Room {
        /// The room.
        room: RoomId,
        /// The peer's name in it.
        name: PeerName,
    },
    /// A pairing user.
    Pairing {
        /// The user's id.
        name: PeerName,
        /// Where the user is in the pairing state machine.
        state: State,
        /// The user this one is connecting or connected to.
        target: Option<PeerKey>,
        /// In a cluster, that user's id (it may be on another node).
        target_name: Option<PeerName>,
        /// The users whose target is this one, so a drop can tell each of them.
        watchers: Vec<PeerKey>,
    },
    /// A subscriber of a broadcast channel.
    Channel(RoomId),
}

/// The pairing state machine's states (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not pairing with anyone (also: a room peer before joining).
    Idle,
    /// Sent a ping, waiting for the pong.
    Connecting,
    /// Paired (also: a room peer in a room, a broadcast subscriber).
    Connected,
}

impl State {
    /// The state as `/api/stats` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Connected => "connected",
        }
    }
}

/// A registered connection.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The only sender to this connection's outbox: dropping it (eviction) ends the socket.
    pub(crate) outbox: Outbox,
    pub(crate) profile: PeerProfile,
    pub(crate) place: Place,
    /// Counts this peer's room memberships, so media made in one membership can be told
    /// from the next (the SFU closes what an ended membership held).
    pub(crate) epoch: u32,
    /// A join the cluster is confirming: the room and name it claimed.
    pub(crate) joining: Option<(RoomId, PeerName)>,
    /// That join's request id, echoed on its `joined`.
    pub(crate) joining_rid: Option<crate::RawJson>,
    /// The join in flight takes over a durable member's seat from another node: it is
    /// confirmed without a word to the room, and with no `joined` reply.
    pub(crate) taking_over: bool,
}
