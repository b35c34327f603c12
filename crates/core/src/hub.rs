//! The hub: who is connected, who is in which room, channel or pairing, and the rules for
//! joining, leaving and relaying. No I/O: every effect is an [`Event`] put on an outbox with
//! `try_send`, under the one lock of [`SharedHub`], so each peer sees changes in the order
//! they happened. A peer whose outbox is full is evicted, never waited for.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::mpsc::error::TrySendError;

use crate::peer::Peer;
use crate::{
    Command, CoreError, DialectKind, Event, Joined, Message, Outbox, PeerKey, PeerName,
    PeerProfile, Place, RawFrame, RawJson, RoomId, Signal, SignalKind, State,
};

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

/// The state of every connection on this node.
#[derive(Default)]
pub struct Hub {
    /// Every connection, oldest first.
    peers: BTreeMap<PeerKey, Peer>,
    rooms: HashMap<RoomId, Room>,
    channels: HashMap<RoomId, Vec<PeerKey>>,
    /// Pairing users by id.
    users: HashMap<PeerName, PeerKey>,
    next_key: u64,
    /// Peers found slow (`true`) or gone (`false`) during the current operation, removed
    /// before it returns.
    slow: Vec<(PeerKey, bool)>,
    connections: [usize; 5],
    members: [usize; 5],
    evictions: u64,
    /// Handed to every joiner (the operator's `--ice-server`s), shared, never re-encoded.
    ice_servers: Option<RawJson>,
    /// The SFU's router capabilities, handed to every joiner when media is on.
    media: Option<RawJson>,
}

#[derive(Default)]
struct Room {
    members: HashMap<PeerName, Member>,
    next_seq: u64,
}

#[derive(Clone, Copy)]
struct Member {
    key: PeerKey,
    /// Join order, for rosters.
    seq: u64,
}

/// Counts for metrics, cheap to take (no iteration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Open connections per dialect, indexed by [`DialectKind::index`].
    pub connections: [usize; 5],
    /// Connections that are in a room, channel or pairing, per dialect.
    pub members: [usize; 5],
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Broadcast channels with at least one subscriber.
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
    pub dialect: DialectKind,
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
        self.ice_servers = ice_servers;
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
        if self.users.contains_key(&name) {
            return Err(CoreError::NameTaken(name));
        }
        let place = Place::Pairing {
            name: name.clone(),
            state: State::Idle,
            target: None,
            watchers: vec![],
        };
        let key = self.insert(profile, outbox, place);
        self.users.insert(name.clone(), key);
        self.member_count(key, 1);
        self.deliver(key, Event::Greeting { id: name });
        self.settle();
        Ok(key)
    }

    /// Registers a broadcast subscriber of `channel`.
    pub fn subscribe(&mut self, profile: PeerProfile, outbox: Outbox, channel: RoomId) -> PeerKey {
        let key = self.insert(profile, outbox, Place::Channel(channel.clone()));
        self.channels.entry(channel).or_default().push(key);
        self.member_count(key, 1);
        key
    }

    /// Sets the router capabilities every `joined` carries (`None`: media is off).
    pub fn set_media_capabilities(&mut self, capabilities: Option<RawJson>) {
        self.media = capabilities;
    }

    /// The room `key` is in and its name there, if it is in one.
    pub fn membership(&self, key: PeerKey) -> Option<(RoomId, PeerName)> {
        match &self.peers.get(&key)?.place {
            Place::Room { room, name } => Some((room.clone(), name.clone())),
            _ => None,
        }
    }

    /// Tells every member of `room` but `except` about `event`.
    pub fn tell_room(&mut self, room: &RoomId, except: PeerKey, event: &Event) {
        let Some(room) = self.rooms.get(room) else {
            return;
        };
        for member in room.members.values() {
            if member.key != except {
                offer(&self.peers, member.key, event.clone(), &mut self.slow);
            }
        }
        self.settle();
    }

    /// Carries out one command from `key`. A refusal is returned, not sent: the caller
    /// decides how to tell the peer (usually [`Hub::refuse`]).
    pub fn execute(&mut self, key: PeerKey, command: Command<'_>) -> Result<(), CoreError> {
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
            Event::Error {
                code: error.code(),
                message,
                rid,
            },
        );
    }

    /// Puts `event` on `key`'s own outbox, in order with everything else it is told.
    pub fn reply(&mut self, key: PeerKey, event: Event) {
        self.deliver(key, event);
        self.settle();
    }

    /// Joins `room` as `name`, leaving the current room first. Joining the room one is
    /// already in, under the same name, only repeats the reply.
    pub fn join(
        &mut self,
        key: PeerKey,
        room_id: RoomId,
        name: PeerName,
        rid: Option<RawJson>,
    ) -> Result<(), CoreError> {
        let place = &self.peers.get(&key).ok_or(CoreError::UnknownPeer)?.place;
        let rejoin = matches!(place, Place::Room { room, name: current }
            if *room == room_id && *current == name);
        if !rejoin {
            if let Some(member) = self
                .rooms
                .get(&room_id)
                .and_then(|room| room.members.get(&name))
            {
                if member.key != key {
                    return Err(CoreError::NameTaken(name));
                }
            }
            self.leave(key);
            let room = self.rooms.entry(room_id.clone()).or_default();
            let others: Vec<PeerKey> = room.members.values().map(|m| m.key).collect();
            let seq = room.next_seq;
            room.next_seq += 1;
            room.members.insert(name.clone(), Member { key, seq });
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.place = Place::Room {
                    room: room_id.clone(),
                    name: name.clone(),
                };
            }
            self.member_count(key, 1);
            let joined = Event::PeerJoined {
                room: room_id.clone(),
                name: name.clone(),
            };
            for other in others {
                self.deliver(other, joined.clone());
            }
        }
        let members = self.roster(&room_id);
        self.deliver(
            key,
            Event::Joined(Box::new(Joined {
                room: room_id,
                name,
                members,
                rid,
                ice_servers: self.ice_servers.clone(),
                media: self.media.clone(),
            })),
        );
        Ok(())
    }

    /// Leaves the current room, telling the others once. A no-op outside a room.
    pub fn leave(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !matches!(peer.place, Place::Room { .. }) {
            return;
        }
        let Place::Room {
            room: room_id,
            name,
        } = std::mem::replace(&mut peer.place, Place::Lobby)
        else {
            return;
        };
        self.member_count(key, -1);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.members.remove(&name);
        if room.members.is_empty() {
            self.rooms.remove(&room_id);
            return;
        }
        let others: Vec<PeerKey> = room.members.values().map(|m| m.key).collect();
        let left = Event::PeerLeft {
            room: room_id,
            name,
        };
        for other in others {
            self.deliver(other, left.clone());
        }
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
                        ..
                    } => {
                        let target = target.and_then(|t| self.user_name(t));
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
            rooms: self.rooms.len(),
            users,
        }
    }

    /// Counts for metrics.
    pub fn census(&self) -> Census {
        Census {
            connections: self.connections,
            members: self.members,
            rooms: self.rooms.len(),
            channels: self.channels.len(),
            evictions: self.evictions,
        }
    }

    /// Whether `name` is taken in `room` (checked before an upgrade, to answer HTTP 409).
    pub fn is_taken(&self, room: &str, name: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|room| room.members.contains_key(name))
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
            },
        );
        key
    }

    fn remove(&mut self, key: PeerKey) {
        self.leave(key);
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.connections[peer.profile.dialect.index()] -= 1;
        match peer.place {
            Place::Lobby | Place::Room { .. } => {}
            Place::Pairing {
                name,
                target,
                watchers,
                ..
            } => {
                self.members[peer.profile.dialect.index()] -= 1;
                self.users.remove(&name);
                if let Some(target) = target {
                    self.unwatch(target, key);
                    // The user this one was pinging hears that it went away, unless it is
                    // busy with someone else (one whose target was this user is a watcher,
                    // told below).
                    if !watchers.contains(&target) && self.pairing_state(target).0 == State::Idle {
                        self.deliver(target, Event::PartnerGone { from: name.clone() });
                    }
                }
                // Everyone whose target was this user is told once and is idle again.
                for watcher in watchers {
                    self.set_target(watcher, State::Idle, None);
                    self.deliver(watcher, Event::PartnerGone { from: name.clone() });
                }
            }
            Place::Channel(channel) => {
                self.members[peer.profile.dialect.index()] -= 1;
                if let Some(subscribers) = self.channels.get_mut(&channel) {
                    subscribers.retain(|&k| k != key);
                    if subscribers.is_empty() {
                        self.channels.remove(&channel);
                    }
                }
            }
        }
    }

    fn leave_named(&mut self, key: PeerKey, room: Option<&str>) -> Result<(), CoreError> {
        let peer = self.peers.get(&key).ok_or(CoreError::UnknownPeer)?;
        match (&peer.place, room) {
            (Place::Room { room: current, .. }, Some(named)) if current.as_str() != named => {
                Err(CoreError::NotInRoom)
            }
            (Place::Room { .. }, _) => {
                self.leave(key);
                Ok(())
            }
            _ => Err(CoreError::NotInRoom),
        }
    }

    fn send(
        &mut self,
        key: PeerKey,
        to: Option<&str>,
        room: Option<&str>,
        echo: bool,
        message: Message,
    ) -> Result<(), CoreError> {
        let peer = self.peers.get(&key).ok_or(CoreError::UnknownPeer)?;
        let Place::Room {
            room: room_id,
            name,
        } = &peer.place
        else {
            return Err(CoreError::NotInRoom);
        };
        if room.is_some_and(|named| named != room_id.as_str()) {
            return Err(CoreError::NotInRoom);
        }
        let room = self.rooms.get(room_id).ok_or(CoreError::NotInRoom)?;
        let origin = peer.profile.dialect;
        let addressed = to.is_some();
        let signal = Arc::new(Signal {
            from: name.clone(),
            origin,
            addressed,
            message,
        });
        match to {
            Some(to) => {
                let member = room
                    .members
                    .get(to)
                    .ok_or_else(|| CoreError::PeerNotFound(to.into()))?;
                let target = member.key;
                self.deliver(target, Event::Signal(signal));
            }
            None => {
                let mut slow = std::mem::take(&mut self.slow);
                for member in room.members.values() {
                    if member.key != key || echo {
                        offer(
                            &self.peers,
                            member.key,
                            Event::Signal(signal.clone()),
                            &mut slow,
                        );
                    }
                }
                self.slow = slow;
            }
        }
        Ok(())
    }

    fn pair(&mut self, key: PeerKey, to: &str, message: Message) -> Result<(), CoreError> {
        let Some(Place::Pairing {
            name,
            state,
            target,
            ..
        }) = self.peers.get(&key).map(|peer| &peer.place)
        else {
            return Err(CoreError::UnknownPeer);
        };
        let (from, state, target) = (name.clone(), *state, *target);
        let other = *self
            .users
            .get(to)
            .ok_or_else(|| CoreError::UserNotFound(to.into()))?;
        let (other_state, other_target) = self.pairing_state(other);
        if other == key {
            return Err(CoreError::InvalidState("a user cannot pair with itself"));
        }
        let deliver = match message.kind {
            SignalKind::Ping => {
                let pinging_other = state == State::Connecting && target == Some(other);
                if state != State::Idle && !pinging_other {
                    return Err(CoreError::InvalidState("only an idle user can ping"));
                }
                if other_state != State::Idle {
                    return Err(CoreError::UserBusy(self.user_name(other).unwrap_or(from)));
                }
                self.set_target(key, State::Connecting, Some(other));
                true
            }
            SignalKind::Pong => {
                let (other_state, other_target) = (other_state, other_target);
                if other_state != State::Connecting || other_target != Some(key) {
                    return Err(CoreError::InvalidState("no pending ping from that user"));
                }
                if state != State::Idle {
                    return Err(CoreError::InvalidState(
                        "only an idle user can accept a ping",
                    ));
                }
                self.set_target(key, State::Connected, Some(other));
                self.set_target(other, State::Connected, Some(key));
                true
            }
            SignalKind::Offer | SignalKind::Answer | SignalKind::IceCandidate => {
                let paired = state == State::Connected
                    && target == Some(other)
                    && other_state == State::Connected
                    && other_target == Some(key);
                if !paired {
                    return Err(CoreError::InvalidState("not connected to that user"));
                }
                true
            }
            SignalKind::Disconnect => {
                if target != Some(other) {
                    return Err(CoreError::InvalidState(
                        "not connecting or connected to that user",
                    ));
                }
                self.set_target(key, State::Idle, None);
                // The other side hears of it if it was pairing with this user or is idle
                // (a pending ping withdrawn); a user busy with someone else must not
                // receive someone else's disconnect.
                if other_target == Some(key) {
                    self.set_target(other, State::Idle, None);
                }
                other_target == Some(key) || other_state == State::Idle
            }
            SignalKind::Chat | SignalKind::Other(_) => {
                return Err(CoreError::InvalidState("not a pairing message"));
            }
        };
        if deliver {
            let signal = Signal {
                from,
                origin: DialectKind::Pairing,
                addressed: true,
                message,
            };
            self.deliver(other, Event::Signal(Arc::new(signal)));
        }
        Ok(())
    }

    fn broadcast(&mut self, key: PeerKey, frame: RawFrame) -> Result<(), CoreError> {
        let Some(Place::Channel(channel)) = self.peers.get(&key).map(|peer| &peer.place) else {
            return Err(CoreError::UnknownPeer);
        };
        let Some(subscribers) = self.channels.get(channel) else {
            return Ok(());
        };
        let mut slow = std::mem::take(&mut self.slow);
        for &subscriber in subscribers {
            if subscriber != key {
                offer(
                    &self.peers,
                    subscriber,
                    Event::Frame(frame.clone()),
                    &mut slow,
                );
            }
        }
        self.slow = slow;
        Ok(())
    }

    fn pairing_state(&self, key: PeerKey) -> (State, Option<PeerKey>) {
        match self.peers.get(&key).map(|peer| &peer.place) {
            Some(Place::Pairing { state, target, .. }) => (*state, *target),
            _ => (State::Idle, None),
        }
    }

    fn user_name(&self, key: PeerKey) -> Option<PeerName> {
        match &self.peers.get(&key)?.place {
            Place::Pairing { name, .. } => Some(name.clone()),
            _ => None,
        }
    }

    /// Moves a pairing user to `state` with `target`, keeping the watcher lists true.
    fn set_target(&mut self, key: PeerKey, new_state: State, new_target: Option<PeerKey>) {
        let Some(Place::Pairing { state, target, .. }) =
            self.peers.get_mut(&key).map(|peer| &mut peer.place)
        else {
            return;
        };
        *state = new_state;
        let old = std::mem::replace(target, new_target);
        if old == new_target {
            return;
        }
        if let Some(old) = old {
            self.unwatch(old, key);
        }
        if let Some(Place::Pairing { watchers, .. }) = new_target
            .and_then(|t| self.peers.get_mut(&t))
            .map(|peer| &mut peer.place)
        {
            watchers.push(key);
        }
    }

    fn unwatch(&mut self, target: PeerKey, watcher: PeerKey) {
        if let Some(Place::Pairing { watchers, .. }) =
            self.peers.get_mut(&target).map(|peer| &mut peer.place)
        {
            watchers.retain(|&w| w != watcher);
        }
    }

    fn roster(&self, room: &RoomId) -> Arc<[PeerName]> {
        let Some(room) = self.rooms.get(room) else {
            return Arc::from([]);
        };
        let mut members: Vec<(&PeerName, u64)> = room
            .members
            .iter()
            .map(|(name, member)| (name, member.seq))
            .collect();
        members.sort_unstable_by_key(|&(_, seq)| seq);
        members.into_iter().map(|(name, _)| name.clone()).collect()
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::sync::mpsc;

    use super::*;

    fn profile(dialect: DialectKind) -> PeerProfile {
        PeerProfile {
            dialect,
            ip: Ipv4Addr::LOCALHOST.into(),
            connected_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn name(text: &str) -> PeerName {
        PeerName::parse(text).unwrap()
    }

    fn room(text: &str) -> RoomId {
        RoomId::parse(text).unwrap()
    }

    struct Client {
        key: PeerKey,
        rx: mpsc::Receiver<Event>,
    }

    impl Client {
        fn events(&mut self) -> Vec<Event> {
            std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
        }
    }

    fn connect(hub: &mut Hub, dialect: DialectKind, capacity: usize) -> Client {
        let (tx, rx) = mpsc::channel(capacity);
        Client {
            key: hub.register(profile(dialect), tx),
            rx,
        }
    }

    fn joined(hub: &mut Hub, who: &str, room_id: &str) -> Client {
        let mut client = connect(hub, DialectKind::Conference, 16);
        hub.join(client.key, room(room_id), name(who), None)
            .unwrap();
        client.events();
        client
    }

    fn user(hub: &mut Hub, id: &str) -> Client {
        let (tx, rx) = mpsc::channel(16);
        let key = hub
            .register_user(profile(DialectKind::Pairing), tx, name(id))
            .unwrap();
        let mut client = Client { key, rx };
        client.events();
        client
    }

    fn pair(hub: &mut Hub, from: &Client, to: &str, kind: SignalKind) -> Result<(), CoreError> {
        let message = Message::new(kind, None);
        hub.execute(
            from.key,
            Command::Pair {
                to: to.into(),
                message,
            },
        )
    }

    #[test]
    fn join_announces_once_and_replies_with_the_roster() {
        let mut hub = Hub::default();
        let mut alice = joined(&mut hub, "alice", "x");
        let mut bob = connect(&mut hub, DialectKind::Conference, 16);
        hub.join(bob.key, room("x"), name("bob"), None).unwrap();
        let events = alice.events();
        assert!(matches!(&events[..], [Event::PeerJoined { name, .. }] if name.as_str() == "bob"));
        let events = bob.events();
        let [Event::Joined(joined)] = &events[..] else {
            panic!("{events:?}")
        };
        let members = &joined.members;
        assert_eq!(
            members.iter().map(PeerName::as_str).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
    }

    #[test]
    fn a_taken_name_is_refused_and_freed_when_its_owner_leaves() {
        let mut hub = Hub::default();
        let alice = joined(&mut hub, "alice", "x");
        let other = connect(&mut hub, DialectKind::RoomRelay, 16);
        let taken = hub.join(other.key, room("x"), name("alice"), None);
        assert_eq!(taken, Err(CoreError::NameTaken(name("alice"))));
        hub.disconnect(alice.key);
        assert!(hub.join(other.key, room("x"), name("alice"), None).is_ok());
    }

    #[test]
    fn leaving_tells_each_member_once_and_empty_rooms_vanish() {
        let mut hub = Hub::default();
        let mut alice = joined(&mut hub, "alice", "x");
        let bob = joined(&mut hub, "bob", "x");
        alice.events();
        hub.disconnect(bob.key);
        hub.disconnect(bob.key);
        let events = alice.events();
        assert!(matches!(&events[..], [Event::PeerLeft { name, .. }] if name.as_str() == "bob"));
        hub.disconnect(alice.key);
        assert_eq!(hub.census().rooms, 0);
    }

    #[test]
    fn addressed_and_room_wide_sends_reach_the_right_peers() {
        let mut hub = Hub::default();
        let alice = joined(&mut hub, "alice", "x");
        let mut bob = joined(&mut hub, "bob", "x");
        let mut carol = joined(&mut hub, "carol", "x");
        bob.events();
        let send = |to: Option<&'static str>, echo| Command::Send {
            to: to.map(Into::into),
            room: None,
            echo,
            message: Message::new(SignalKind::Offer, Some(RawJson::new("{}"))),
            rid: None,
        };
        hub.execute(alice.key, send(Some("bob"), false)).unwrap();
        assert_eq!(bob.events().len(), 1);
        assert!(carol.events().is_empty());
        let missing = hub.execute(alice.key, send(Some("dave"), false));
        assert_eq!(missing, Err(CoreError::PeerNotFound("dave".into())));
        hub.execute(alice.key, send(None, false)).unwrap();
        let events = carol.events();
        let [Event::Signal(signal)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(signal.from.as_str(), "alice");
        assert!(!signal.addressed);
    }

    #[test]
    fn a_full_outbox_evicts_its_peer_and_tells_the_room_once() {
        let mut hub = Hub::default();
        let mut fast = joined(&mut hub, "fast", "x");
        let mut slow = connect(&mut hub, DialectKind::Conference, 2);
        hub.join(slow.key, room("x"), name("slow"), None).unwrap();
        let sender = joined(&mut hub, "sender", "x");
        let offer = || Command::Send {
            to: None,
            room: None,
            echo: false,
            message: Message::new(SignalKind::Offer, None),
            rid: None,
        };
        for _ in 0..4 {
            hub.execute(sender.key, offer()).unwrap();
            fast.events();
        }
        assert_eq!(hub.census().evictions, 1);
        assert_eq!(hub.census().connections[DialectKind::Conference.index()], 2);
        hub.execute(sender.key, offer()).unwrap();
        let events = fast.events();
        assert_eq!(events.len(), 1, "no second peer_left, no stall: {events:?}");
        // The evicted peer's outbox is closed: its connection task will see the end.
        let drained = slow.events();
        assert!(!drained.is_empty());
        assert!(slow.rx.is_closed());
    }

    #[test]
    fn pairing_follows_the_state_machine() {
        let mut hub = Hub::default();
        let mut a = user(&mut hub, "a");
        let mut b = user(&mut hub, "b");
        let c = user(&mut hub, "c");
        assert_eq!(
            pair(&mut hub, &a, "b", SignalKind::Offer),
            Err(CoreError::InvalidState("not connected to that user"))
        );
        assert_eq!(
            pair(&mut hub, &a, "zz", SignalKind::Ping),
            Err(CoreError::UserNotFound("zz".into()))
        );
        pair(&mut hub, &a, "b", SignalKind::Ping).unwrap();
        // b pinging a back at once: a is busy connecting.
        assert_eq!(
            pair(&mut hub, &b, "a", SignalKind::Ping),
            Err(CoreError::UserBusy(name("a")))
        );
        assert_eq!(
            pair(&mut hub, &c, "a", SignalKind::Pong),
            Err(CoreError::InvalidState("no pending ping from that user"))
        );
        pair(&mut hub, &b, "a", SignalKind::Pong).unwrap();
        pair(&mut hub, &a, "b", SignalKind::Offer).unwrap();
        assert_eq!(
            pair(&mut hub, &c, "a", SignalKind::Ping),
            Err(CoreError::UserBusy(name("a")))
        );
        assert_eq!(b.events().len(), 2);
        assert_eq!(a.events().len(), 1);
        pair(&mut hub, &a, "b", SignalKind::Disconnect).unwrap();
        assert_eq!(hub.pairing_state(a.key), (State::Idle, None));
        assert_eq!(hub.pairing_state(b.key), (State::Idle, None));
    }

    #[test]
    fn a_dropped_pairing_user_frees_everyone_waiting_on_it() {
        let mut hub = Hub::default();
        let mut a = user(&mut hub, "a");
        let b = user(&mut hub, "b");
        let mut c = user(&mut hub, "c");
        pair(&mut hub, &a, "b", SignalKind::Ping).unwrap();
        pair(&mut hub, &c, "b", SignalKind::Ping).unwrap();
        hub.disconnect(b.key);
        for client in [&mut a, &mut c] {
            let events = client.events();
            assert!(
                matches!(&events[..], [Event::PartnerGone { from }] if from.as_str() == "b"),
                "{events:?}"
            );
            assert_eq!(hub.pairing_state(client.key), (State::Idle, None));
        }
    }

    #[test]
    fn stats_list_oldest_first_and_count_everyone() {
        let mut hub = Hub::default();
        for i in 0..5 {
            joined(&mut hub, &format!("p{i}"), "x");
        }
        let stats = hub.stats(2);
        assert_eq!(stats.connected, 5);
        let ids: Vec<_> = stats.users.iter().map(|u| u.id.clone().unwrap()).collect();
        assert_eq!(ids, [name("p0"), name("p1")]);
    }
}
