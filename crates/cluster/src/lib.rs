//! The seam between switchboard nodes. A [`Bus`] carries [`Envelope`]s (events for peers on
//! other nodes) and never waits: a full queue is an error ([`BusFull`]) for the caller to
//! report, never a stall. One node needs no bus: [`LocalBus`], the default, sends nothing. A
//! Redis bus for multi-node operation (planned) plugs in here without touching the core or
//! the dialects; the server holds the bus but routes nothing through it yet.
#![warn(missing_docs)]

use switchboard_core::{PeerName, RoomId};

/// Identifies one switchboard process in a cluster, so a node can drop its own echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub u64);

/// What one node tells the others.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// A peer joined a room on the sending node.
    Joined {
        /// The sending node.
        node: NodeId,
        /// The room.
        room: RoomId,
        /// The peer.
        name: PeerName,
    },
    /// A peer left a room on the sending node.
    Left {
        /// The sending node.
        node: NodeId,
        /// The room.
        room: RoomId,
        /// The peer.
        name: PeerName,
    },
}

/// The bus queue is full: the caller refuses the request instead of waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cluster bus is full")]
pub struct BusFull;

/// Carries events to peers on other nodes.
pub trait Bus: Send + Sync + 'static {
    /// Queues `envelope` for the other nodes without waiting.
    fn publish(&self, envelope: Envelope) -> Result<(), BusFull>;

    /// A short name for logs and metrics (`local`, `redis`).
    fn name(&self) -> &'static str;
}

/// The single-node bus: there is nobody else to tell.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn publish(&self, _envelope: Envelope) -> Result<(), BusFull> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
