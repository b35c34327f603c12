//! What the hub needs from other nodes, and what they tell it. The hub decides who hears
//! what: members on this node get events on their outboxes, members on other nodes are
//! reached through an [`Uplink`] (the cluster crate's Redis bus). Nothing here does I/O; an
//! `Uplink` only queues, and inbound news arrives as [`Inbound`] values for [`crate::Hub::remote`].

use std::fmt;
use std::sync::Arc;

use crate::{CoreError, DialectKind, PeerKey, PeerName, RawFrame, RoomId, Signal, SignalKind};

/// One switchboard process in a cluster. Random at start unless the operator names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl NodeId {
    /// Parses the 16-hex-digit form [`NodeId`] displays as.
    pub fn parse(text: &str) -> Option<NodeId> {
        if text.is_empty() || text.len() > 16 {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(NodeId)
    }
}

/// Where a room member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// On this node: its outbox.
    Local(PeerKey),
    /// On another node.
    Remote(NodeId),
    /// On this node, leaving: its name stays taken until the cluster confirms the leave,
    /// but it hears nothing more. The key is told [`crate::Event::Settled`] then.
    Leaving(PeerKey),
}

/// A room member as the cluster's shared state records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seat {
    /// The member's name in the room.
    pub name: PeerName,
    /// The node it is connected to.
    pub node: NodeId,
    /// Its key on that node.
    pub key: PeerKey,
    /// Its place in the room's membership order (the room's sequence number at its join).
    pub seq: u64,
    /// Whether its session is durable (a resumable session: it outlives its node, and what
    /// other nodes relay to it is kept in Redis until its node has written it).
    pub durable: bool,
}

/// The queue to other nodes is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// How the hub reaches other nodes. Every method only queues and never waits; the
/// membership ones (`leave`, `unwatch`) are never dropped, the deliveries fail with
/// [`Overloaded`] when the queue is full.
pub trait Uplink: Send + Sync + 'static {
    /// A relay for the members of `room` on other nodes: all of them (`to` is `None`) or
    /// the one named, on the node given. `retain`: a durable member on another node is
    /// among the receivers, so the cluster keeps the relay for it until its node has it.
    fn relay(
        &self,
        room: &RoomId,
        to: Option<(NodeId, &PeerName)>,
        signal: &Signal,
        retain: bool,
    ) -> Result<(), Overloaded>;

    /// A broadcast frame for `channel`'s subscribers on other nodes.
    fn frame(&self, channel: &RoomId, frame: &RawFrame) -> Result<(), Overloaded>;

    /// A local member left `room` (or dropped): release its name cluster-wide.
    fn leave(&self, room: &RoomId, name: &PeerName, key: PeerKey);

    /// This node may have no local interest left in `room` (members or joins in flight):
    /// the cluster checks again and stops listening to it if so.
    fn room_unused(&self, room: &RoomId);

    /// This node may have no subscriber left on `channel`.
    fn channel_unused(&self, channel: &RoomId);

    /// A pairing user on this node went away: the cluster frees whoever was pairing with it.
    fn user_left(&self, name: &PeerName);
}

/// News from other nodes (and the cluster's echo of this node's own membership changes),
/// decoded by the cluster crate and applied by [`crate::Hub::remote`].
#[derive(Debug)]
pub enum Inbound {
    /// The room's members when this node's join went through: the base the room's later
    /// `Joined`/`Left` apply to. Ignored when the room is already followed.
    Roster {
        /// The room.
        room: RoomId,
        /// The room's sequence number this roster is as of.
        rseq: u64,
        /// The node the room's media (SFU) lives on.
        media: Option<NodeId>,
        /// Every member, the joiner included.
        seats: Vec<Seat>,
    },
    /// The room's members as of `rseq`, for a node that may have missed changes (its
    /// subscription to Redis broke): the differences are told as joins and leaves.
    Resync {
        /// The room.
        room: RoomId,
        /// The room's sequence number this roster is as of.
        rseq: u64,
        /// The node the room's media lives on.
        media: Option<NodeId>,
        /// Every member.
        seats: Vec<Seat>,
    },
    /// Someone joined a room (on any node, this one included).
    Joined {
        /// The room.
        room: RoomId,
        /// The room's sequence number of this change.
        rseq: u64,
        /// Who joined, where.
        seat: Seat,
    },
    /// Someone left a room, dropped, or was removed with its dead node.
    Left {
        /// The room.
        room: RoomId,
        /// The room's sequence number of this change.
        rseq: u64,
        /// Who left.
        name: PeerName,
    },
    /// A relay from a member on another node.
    Relay {
        /// The room.
        room: RoomId,
        /// The addressed member, or `None` for everyone on this node.
        to: Option<PeerName>,
        /// The message, stamped with its sender by the sender's node.
        signal: Arc<Signal>,
    },
    /// A broadcast frame from another node.
    Frame {
        /// The channel.
        channel: RoomId,
        /// The frame, bytes untouched.
        frame: RawFrame,
    },
    /// Another node gained (`on`) or lost its first/last subscriber of `channel`.
    ChannelNode {
        /// The channel.
        channel: RoomId,
        /// The node.
        node: NodeId,
        /// Whether it now has subscribers.
        on: bool,
    },
    /// A pairing message for a user on this node, already allowed by the cluster's state
    /// machine.
    Pair {
        /// The addressed user.
        to: PeerName,
        /// The message, stamped with its sender.
        signal: Arc<Signal>,
    },
    /// The cluster's state machine decided a pairing message from a user on this node.
    PairVerdict {
        /// The sender, on this node.
        key: PeerKey,
        /// The addressed user.
        to: PeerName,
        /// What the sender said.
        kind: SignalKind,
        /// Allowed, or why not.
        verdict: Result<(), CoreError>,
    },
    /// The user a pairing user on this node was pairing with went away.
    PartnerGone {
        /// The user on this node.
        to: PeerName,
        /// The user that went away.
        from: PeerName,
    },
    /// The room's media moved to `node` (its media node died).
    MediaHome {
        /// The room.
        room: RoomId,
        /// The new media node.
        node: NodeId,
    },
    /// A durable member's session was taken over by another node (its own node died, or
    /// did not answer): the member is now at `seat`, with nothing said to the room.
    Moved {
        /// The room.
        room: RoomId,
        /// The room's sequence number of this change.
        rseq: u64,
        /// Where the member is now.
        seat: Seat,
    },
    /// A relay or membership change (`inner`) that the cluster also kept in the inboxes of
    /// the durable members named, at the places given.
    Retained {
        /// Each durable receiver and the event's place in its inbox.
        inboxes: Vec<(PeerName, u64)>,
        /// The relay, join or leave.
        inner: Box<Inbound>,
    },
    /// A node was declared dead or drained: it has no channel subscribers any more (its room
    /// members leave through `Left`, in each room's order; durable members wait for their
    /// sessions to be taken over).
    NodeDown {
        /// The node.
        node: NodeId,
    },
}

/// Follows local peers' room memberships (the SFU does: media belongs to a membership).
/// Called under the hub's lock: implementations only queue.
pub trait MembershipListener: Send + Sync + 'static {
    /// `key` is now in `room`, under membership `epoch`.
    fn joined(&self, key: PeerKey, dialect: DialectKind, room: &RoomId, epoch: u32);
    /// `key`'s memberships up to `epoch` ended (`u32::MAX`: the peer is gone).
    fn left(&self, key: PeerKey, dialect: DialectKind, epoch: u32);
    /// A member on another node joined `room`, whose media lives on this node.
    fn remote_joined(&self, _room: &RoomId, _seat: &Seat) {}
    /// A member on another node, `node`, left `room` (or its node died).
    fn remote_left(&self, _room: &RoomId, _name: &PeerName, _node: NodeId) {}
    /// `room`'s media moved from `old` to another node: what `old` held is gone.
    fn media_moved(&self, _room: &RoomId, _old: Option<NodeId>) {}
    /// A local peer is now `name` in `room` (right after [`MembershipListener::joined`]):
    /// for observers that report members by name (webhooks).
    fn member_joined(&self, _room: &RoomId, _name: &PeerName, _dialect: DialectKind) {}
    /// A local peer that was `name` in `room` left it (or dropped).
    fn member_left(&self, _room: &RoomId, _name: &PeerName, _dialect: DialectKind) {}
    /// Another node was declared dead or drained.
    fn node_down(&self, _node: NodeId) {}
}

/// Several listeners, told in the order they were added (the SFU, then webhooks).
pub(crate) struct Listeners(pub(crate) Vec<Arc<dyn MembershipListener>>);

impl MembershipListener for Listeners {
    fn joined(&self, key: PeerKey, dialect: DialectKind, room: &RoomId, epoch: u32) {
        self.0
            .iter()
            .for_each(|l| l.joined(key, dialect, room, epoch));
    }
    fn left(&self, key: PeerKey, dialect: DialectKind, epoch: u32) {
        self.0.iter().for_each(|l| l.left(key, dialect, epoch));
    }
    fn remote_joined(&self, room: &RoomId, seat: &Seat) {
        self.0.iter().for_each(|l| l.remote_joined(room, seat));
    }
    fn remote_left(&self, room: &RoomId, name: &PeerName, node: NodeId) {
        self.0.iter().for_each(|l| l.remote_left(room, name, node));
    }
    fn media_moved(&self, room: &RoomId, old: Option<NodeId>) {
        self.0.iter().for_each(|l| l.media_moved(room, old));
    }
    fn member_joined(&self, room: &RoomId, name: &PeerName, dialect: DialectKind) {
        self.0
            .iter()
            .for_each(|l| l.member_joined(room, name, dialect));
    }
    fn member_left(&self, room: &RoomId, name: &PeerName, dialect: DialectKind) {
        self.0
            .iter()
            .for_each(|l| l.member_left(room, name, dialect));
    }
    fn node_down(&self, node: NodeId) {
        self.0.iter().for_each(|l| l.node_down(node));
    }
}
