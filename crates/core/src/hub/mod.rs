//! The hub: who is connected, who is in which room, channel or pairing, and the rules for
//! joining, leaving and relaying. No I/O: every effect is an [`Event`] put on an outbox with
//! `try_send`, under the one lock of [`SharedHub`], so each peer sees changes in the order
//! they happened. A peer whose outbox is full is evicted, never waited for.
//!
//! One rule set per file: `rooms.rs` (conference, room-relay, query-rooms), `pairing.rs`
//! (seed 001's state machine), `channels.rs` (broadcast). Every public operation here is a
//! way in that settles before it returns: peers found slow while it ran are evicted, and
//! whoever must hear of that is told.
//!
//! In a cluster the hub also decides what leaves the node: a room member is
//! [`Member::Local`] (an outbox) or [`Member::Remote`] (a node, reached through the
//! [`Uplink`]), and what other nodes say arrives through [`Hub::remote`].

mod channels;
mod pairing;
mod rooms;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::mpsc::error::TrySendError;

use crate::cluster::{Inbound, Member, MembershipListener, NodeId, Uplink};
use crate::ice::{IceMinter, IceServers};
use crate::peer::Peer;
use crate::{
    Command, CoreError, ErrorEvent, Event, Outbox, PeerKey, PeerName, PeerProfile, Place, RawJson,
    RoomId, State,
};

use channels::Channel;
use rooms::Room;

/// The hub behind one short `std` lock. `with` takes a closure that cannot `.await`, so the
/// lock is never held across a suspension point.
#[derive(Clone, Default)]
pub struct SharedHub(Arc<Mutex<Hub>>);

impl SharedHub {
    /// Runs `f` with the hub locked. A panic in another holder does not poison the hub for
    /// everyone: the hub's invariants are restored by each operation before it returns.
    pub fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        let mut guard: MutexGuard<'_, Hub> = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

/// The state of every connection on this node, and its view of the rooms they are in.
#[derive(Default)]
pub struct Hub {
    /// Every connection, oldest first.
    peers: BTreeMap<PeerKey, Peer>,
    rooms: HashMap<RoomId, Room>,
    channels: HashMap<RoomId, Channel>,
    /// Pairing users by id.
    users: HashMap<PeerName, PeerKey>,
    next_key: u64,
    /// Peers found slow (`true`) or gone (`false`) during the current operation, removed
    /// before it returns.
    slow: Vec<(PeerKey, bool)>,
    connections: [usize; 5],
    members: [usize; 5],
    evictions: u64,
    /// What every joiner's `iceServers` hold: the operator's `--ice-server`s, shared and
    /// never re-encoded, or a fresh array per join (TURN credentials).
    ice_servers: IceServers,
    /// The SFU's router capabilities, handed to every joiner when media is on.
    media: Option<RawJson>,
    /// Set when this node is part of a cluster.
    cluster: Option<Clustered>,
    /// Follows local peers' room memberships (the SFU).
    listener: Option<Arc<dyn MembershipListener>>,
    /// The most members a room may have (`--max-room-members`); `None`: no cap.
    max_room_members: Option<usize>,
    /// While an [`Inbound::Retained`] is applied: the local durable members it was kept for,
    /// and its place in each one's inbox.
    retained: Vec<(PeerKey, u64)>,
}

struct Clustered {
    node: NodeId,
    uplink: Arc<dyn Uplink>,
}

/// What became of a command.
#[derive(Debug)]
pub enum Outcome {
    /// Carried out; whoever had to hear of it has.
    Done,
    /// A join that the cluster must confirm first: the caller claims the name in the shared
    /// state, then calls [`Hub::claim_failed`] if that was refused. The `joined` reply comes
    /// when the cluster's echo of the join reaches [`Hub::remote`].
    Claim {
        /// The room.
        room: RoomId,
        /// The name claimed in it.
        name: PeerName,
    },
    /// Carried out here; the cluster confirms it to the peer with [`Event::Settled`], which
    /// its socket waits for before it reads on (a leave, in a cluster).
    Waiting,
    /// A pairing message the cluster's shared state machine must decide: the caller hands
    /// it to the cluster, which tells the hub the verdict ([`Hub::pair_decided`]).
    Pair {
        /// The addressed user id.
        to: PeerName,
        /// The message, stamped with its sender.
        signal: Arc<crate::Signal>,
    },
}

/// Counts for metrics, cheap to take (no iteration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Open connections per dialect, indexed by [`crate::DialectKind::index`].
    pub connections: [usize; 5],
    /// Connections that are in a room, channel or pairing, per dialect.
    pub members: [usize; 5],
    /// Rooms with at least one member known to this node.
    pub rooms: usize,
    /// Broadcast channels with at least one subscriber on this node.
    pub channels: usize,
    /// Peers evicted for falling behind, since start.
    pub evictions: u64,
}

/// The `/api/stats` listing: a bounded page of connections, oldest first.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Every connection, listed or not.
    pub connected: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// The listed connections.
    pub users: Vec<UserStats>,
}

/// One connection in [`Stats`].
#[derive(Debug, Clone)]
pub struct UserStats {
    /// The connection's key (its number on this node).
    pub key: PeerKey,
    /// The peer's name or user id, once it has one.
    pub id: Option<PeerName>,
    /// The connection's dialect.
    pub dialect: crate::DialectKind,
    /// `idle` / `connecting` / `connected`.
    pub state: State,
    /// pairing: the user this one is connecting or connected to.
    pub target: Option<PeerName>,
    /// The room (room dialects) or channel (broadcast).
    pub room: Option<RoomId>,
    /// When the connection was accepted.
    pub connected_at: SystemTime,
    /// The client's address.
    pub ip: IpAddr,
}

impl Hub {
    /// Sets the ICE servers (a JSON array of RTCIceServer objects) every `Joined` carries.
    pub fn set_ice_servers(&mut self, ice_servers: Option<RawJson>) {
        self.ice_servers = ice_servers.map_or(IceServers::None, IceServers::Fixed);
    }

    /// Has `minter` make each joiner's ICE servers, once per `Joined`, in place of any set
    /// with [`Hub::set_ice_servers`] (the minter includes those it wants to hand out).
    pub fn set_ice_minter(&mut self, minter: Arc<dyn IceMinter>) {
        self.ice_servers = IceServers::Minted(minter);
    }

    /// Caps the members of every room (`None`: no cap). A join past it is refused with
    /// [`CoreError::RoomFull`]; in a cluster the cluster enforces it too, over all nodes.
    pub fn set_max_room_members(&mut self, max: Option<usize>) {
        self.max_room_members = max;
    }

    /// Sets the router capabilities every `joined` carries (`None`: media is off).
    pub fn set_media_capabilities(&mut self, capabilities: Option<RawJson>) {
        self.media = capabilities;
    }

    /// Makes this hub one node of a cluster: joins are confirmed by the cluster and members
    /// on other nodes are reached through `uplink`.
    pub fn set_cluster(&mut self, node: NodeId, uplink: Arc<dyn Uplink>) {
        self.cluster = Some(Clustered { node, uplink });
    }

    /// Whether joins go through a cluster.
    pub fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Has `listener` follow every local peer's room memberships, after any listener
    /// already added.
    pub fn add_listener(&mut self, listener: Arc<dyn MembershipListener>) {
        self.listener = Some(match self.listener.take() {
            None => listener,
            Some(first) => Arc::new(crate::cluster::Listeners(vec![first, listener])),
        });
    }

    /// Registers a connection that has no place yet (room dialects before joining).
    pub fn register(&mut self, profile: PeerProfile, outbox: Outbox) -> PeerKey {
        self.insert(profile, outbox, Place::Lobby)
    }

    /// Registers a pairing user under `name` and greets it with its id.
    pub fn register_user(
        &mut self,
        profile: PeerProfile,
        outbox: Outbox,
        name: PeerName,
    ) -> Result<PeerKey, CoreError> {
        let result = self.add_user(profile, outbox, name);
        self.settle();
        result
    }

    /// Registers a broadcast subscriber of `channel`. In a cluster, `nodes` are the other
    /// nodes known to have subscribers of it.
    pub fn subscribe(
        &mut self,
        profile: PeerProfile,
        outbox: Outbox,
        channel: RoomId,
        nodes: &[NodeId],
    ) -> PeerKey {
        self.add_subscriber(profile, outbox, channel, nodes)
    }

    /// The room `key` is in, its name there and its membership epoch, if it is in one.
    pub fn membership(&self, key: PeerKey) -> Option<(RoomId, PeerName, u32)> {
        let peer = self.peers.get(&key)?;
        match &peer.place {
            Place::Room { room, name } => Some((room.clone(), name.clone(), peer.epoch)),
            _ => None,
        }
    }

    /// Tells every local member of `room` but `except` about `event`.
    pub fn tell_room(&mut self, room: &RoomId, except: PeerKey, event: &Event) {
        if let Some(room) = self.rooms.get(room) {
            for member in room.members.values() {
                if let Member::Local(key) = member.at {
                    if key != except {
                        offer(&self.peers, key, event.clone(), &mut self.slow);
                    }
                }
            }
        }
        self.settle();
    }

    /// Carries out one command from `key`. A refusal is returned, not sent: the caller
    /// decides how to tell the peer (usually [`Hub::refuse`]).
    pub fn execute(&mut self, key: PeerKey, command: Command<'_>) -> Result<Outcome, CoreError> {
        let result = match command {
            Command::Join { room, name, rid } => self.join(key, room, name, rid),
            Command::Leave { room, rid: _ } => self.leave_named(key, room.as_deref()),
            Command::Send {
                to,
                room,
                echo,
                message,
                rid: _,
            } => self.send(key, to.as_deref(), room.as_deref(), echo, message),
            Command::Pair { to, message } => self.pair(key, &to, message),
            Command::Broadcast(frame) => self.broadcast(key, frame),
            // The server hands these to the media worker; the core has no media.
            Command::Media { .. } => Err(CoreError::Unsupported("media".into())),
        };
        self.settle();
        result
    }

    /// Tells `key` that its request was refused, echoing `rid`.
    pub fn refuse(&mut self, key: PeerKey, error: &CoreError, rid: Option<RawJson>) {
        let message = Arc::from(error.to_string());
        self.reply(
            key,
            Event::Error(Box::new(ErrorEvent {
                code: error.code(),
                message,
                rid,
            })),
        );
    }

    /// Puts `event` on `key`'s own outbox, in order with everything else it is told.
    pub fn reply(&mut self, key: PeerKey, event: Event) {
        self.deliver(key, event);
        self.settle();
    }

    /// The cluster refused (or could not confirm) the join `key` claimed: it stays out of
    /// the room and hears `error`.
    pub fn claim_failed(
        &mut self,
        key: PeerKey,
        room: &RoomId,
        error: &CoreError,
        rid: Option<RawJson>,
    ) {
        self.abandon_join(key, room);
        self.refuse(key, error, rid);
    }

    /// Whether `key` waits for the cluster to confirm its join.
    pub fn awaits_join(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|peer| peer.joining.is_some())
    }

    /// A join still waiting for the cluster has waited too long: the peer stays out of the
    /// room and hears `unavailable`. False if the join was not waiting any more.
    pub fn give_up_join(&mut self, key: PeerKey) -> bool {
        let Some((room, _)) = self.peers.get(&key).and_then(|peer| peer.joining.clone()) else {
            return false;
        };
        self.claim_failed(key, &room, &CoreError::Unavailable, None);
        true
    }

    /// Applies news from the cluster.
    pub fn remote(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Roster {
                room,
                rseq,
                media,
                seats,
            } => self.apply_roster(room, rseq, media, seats),
            Inbound::MediaHome { room, node } => self.move_media(&room, node),
            Inbound::Resync {
                room,
                rseq,
                media,
                seats,
            } => self.resync(&room, rseq, media, seats),
            Inbound::Joined { room, rseq, seat } => self.apply_joined(&room, rseq, seat),
            Inbound::Moved { room, rseq, seat } => self.apply_moved(&room, rseq, seat),
            Inbound::Retained { inboxes, inner } => {
                self.retained = self.local_receivers(&inner, &inboxes);
                self.remote(*inner);
                self.retained.clear();
            }
            Inbound::Left { room, rseq, name } => self.apply_left(&room, rseq, &name),
            Inbound::Relay { room, to, signal } => self.apply_relay(&room, to.as_ref(), &signal),
            Inbound::Frame { channel, frame } => self.apply_frame(&channel, &frame),
            Inbound::ChannelNode { channel, node, on } => self.channel_node(&channel, node, on),
            Inbound::NodeDown { node } => {
                self.node_down(node);
                if let Some(listener) = &self.listener {
                    listener.node_down(node);
                }
            }
            Inbound::Pair { to, signal } => self.apply_pair(&to, signal),
            Inbound::PairVerdict {
                key,
                to,
                kind,
                verdict,
            } => self.pair_decided(key, &to, &kind, verdict),
            Inbound::PartnerGone { to, from } => self.apply_partner_gone(&to, from),
        }
        self.settle();
    }

    /// Whether this node still has an interest in `room`: members, joins in flight, or the
    /// room's media.
    pub fn room_in_use(&self, room: &RoomId) -> bool {
        let me = self.cluster.as_ref().map(|c| c.node);
        self.rooms.get(room).is_some_and(|r| r.in_use(me))
    }

    /// The node `room`'s media lives on, in a cluster (`None` on one node).
    pub fn media_home(&self, room: &RoomId) -> Option<NodeId> {
        self.rooms.get(room)?.media_home()
    }

    /// Whether `name` is a member of `room` connected to `node` (another node).
    pub fn is_remote_member(&self, room: &RoomId, name: &PeerName, node: NodeId) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.has_remote(name, node))
    }

    /// This node's id, in a cluster.
    pub fn node(&self) -> Option<NodeId> {
        self.cluster.as_ref().map(|c| c.node)
    }

    /// Whether this node still has subscribers of `channel`.
    pub fn channel_in_use(&self, channel: &RoomId) -> bool {
        self.channels.contains_key(channel)
    }

    /// The local members of every room, to claim again after the cluster lost them (a new
    /// Redis, or this node declared dead while cut off).
    /// In each room's join order.
    pub fn local_seats(&self) -> Vec<(RoomId, PeerName, PeerKey)> {
        let mut seats = Vec::new();
        for (room_id, room) in &self.rooms {
            for (name, member) in &room.members {
                if let Member::Local(key) = member.at {
                    seats.push((member.seq(), room_id.clone(), name.clone(), key));
                }
            }
        }
        seats.sort_by_key(|seat| seat.0);
        seats.into_iter().map(|(_, r, n, k)| (r, n, k)).collect()
    }

    /// Whether `key` still waits for its claim of `name` in `room` (a claim whose peer gave
    /// up or went away must not be made: its leave may already have been carried out).
    pub fn claim_pending(&self, key: PeerKey, room: &RoomId, name: &PeerName) -> bool {
        self.is_joining(key, room, name)
    }

    /// The id of pairing user `key`.
    pub fn user_id(&self, key: PeerKey) -> Option<PeerName> {
        self.user_name(key)
    }

    /// The pairing users connected to this node, to register again after the cluster lost
    /// them.
    pub fn local_users(&self) -> Vec<(PeerName, PeerKey)> {
        self.users
            .iter()
            .map(|(name, &key)| (name.clone(), key))
            .collect()
    }

    /// The rooms this node follows.
    pub fn followed_rooms(&self) -> Vec<RoomId> {
        self.rooms.keys().cloned().collect()
    }

    /// The channels this node has subscribers of.
    pub fn local_channels(&self) -> Vec<RoomId> {
        self.channels.keys().cloned().collect()
    }

    /// Removes a connection entirely, telling whoever needs to know. Idempotent: the
    /// connection task calls it on every exit path, after an eviction may already have.
    pub fn disconnect(&mut self, key: PeerKey) {
        self.remove(key);
        self.settle();
    }

    /// A bounded page of connections, oldest first, for `/api/stats`.
    pub fn stats(&self, limit: usize) -> Stats {
        let users = self
            .peers
            .iter()
            .take(limit)
            .map(|(&key, peer)| {
                let (id, state, target, room) = match &peer.place {
                    Place::Lobby => (None, State::Idle, None, None),
                    Place::Room { room, name } => (
                        Some(name.clone()),
                        State::Connected,
                        None,
                        Some(room.clone()),
                    ),
                    Place::Pairing {
                        name,
                        state,
                        target,
                        target_name,
                        ..
                    } => {
                        let target = target_name
                            .clone()
                            .or_else(|| target.and_then(|t| self.user_name(t)));
                        (Some(name.clone()), *state, target, None)
                    }
                    Place::Channel(channel) => {
                        (None, State::Connected, None, Some(channel.clone()))
                    }
                };
                UserStats {
                    key,
                    id,
                    dialect: peer.profile.dialect,
                    state,
                    target,
                    room,
                    connected_at: peer.profile.connected_at,
                    ip: peer.profile.ip,
                }
            })
            .collect();
        Stats {
            connected: self.peers.len(),
            rooms: self.census_rooms(),
            users,
        }
    }

    /// Counts for metrics.
    pub fn census(&self) -> Census {
        Census {
            connections: self.connections,
            members: self.members,
            rooms: self.census_rooms(),
            channels: self.channels.len(),
            evictions: self.evictions,
        }
    }

    /// Whether `name` is taken in `room` on this node (checked before an upgrade, to answer
    /// HTTP 409 at once; in a cluster the claim decides for the others).
    pub fn is_taken(&self, room: &str, name: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|room| room.members.contains_key(name))
    }

    fn census_rooms(&self) -> usize {
        self.rooms.values().filter(|room| room.is_live()).count()
    }

    fn insert(&mut self, profile: PeerProfile, outbox: Outbox, place: Place) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        self.connections[profile.dialect.index()] += 1;
        self.peers.insert(
            key,
            Peer {
                outbox,
                profile,
                place,
                epoch: 0,
                joining: None,
                joining_rid: None,
                taking_over: false,
            },
        );
        key
    }

    fn remove(&mut self, key: PeerKey) {
        self.leave(key);
        if let Some((room, _)) = self.peers.get(&key).and_then(|peer| peer.joining.clone()) {
            self.abandon_join(key, &room);
        }
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.connections[peer.profile.dialect.index()] -= 1;
        if let Some(listener) = &self.listener {
            listener.left(key, peer.profile.dialect, u32::MAX);
        }
        match peer.place {
            Place::Lobby | Place::Room { .. } => {}
            Place::Pairing {
                name,
                target,
                watchers,
                ..
            } => {
                self.members[peer.profile.dialect.index()] -= 1;
                match &self.cluster {
                    // The cluster's state machine tells whoever was pairing with it.
                    Some(cluster) => {
                        self.users.remove(&name);
                        cluster.uplink.user_left(&name);
                    }
                    None => self.remove_user(key, name, target, watchers),
                }
            }
            Place::Channel(channel) => {
                self.members[peer.profile.dialect.index()] -= 1;
                self.remove_subscriber(key, &channel);
            }
        }
    }

    fn member_count(&mut self, key: PeerKey, delta: isize) {
        if let Some(peer) = self.peers.get(&key) {
            let count = &mut self.members[peer.profile.dialect.index()];
            *count = count.saturating_add_signed(delta);
        }
    }

    fn deliver(&mut self, key: PeerKey, event: Event) {
        offer(&self.peers, key, event, &mut self.slow);
    }

    /// Evicts every peer found slow, and any found slow while telling others about that.
    fn settle(&mut self) {
        while let Some((key, is_full)) = self.slow.pop() {
            if self.peers.contains_key(&key) {
                self.evictions += u64::from(is_full);
                self.remove(key);
            }
        }
    }
}

/// Offers `event` to `key`'s outbox. A full outbox marks the peer slow; a closed one (its
/// task has ended and will disconnect it) marks it gone. Either way it is removed.
fn offer(
    peers: &BTreeMap<PeerKey, Peer>,
    key: PeerKey,
    event: Event,
    slow: &mut Vec<(PeerKey, bool)>,
) {
    if let Some(peer) = peers.get(&key) {
        match peer.outbox.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => slow.push((key, true)),
            Err(TrySendError::Closed(_)) => slow.push((key, false)),
        }
    }
}
