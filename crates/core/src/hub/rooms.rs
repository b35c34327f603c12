//! Rooms (conference, room-relay and query-rooms share them): joining, leaving and relaying.
//!
//! On one node a join is carried out at once. In a cluster a join is a claim the cluster
//! confirms: the peer waits ([`Outcome::Claim`]) until the cluster's ordered stream of the
//! room's changes ([`Inbound::Roster`], `Joined`, `Left`, numbered by the room's sequence
//! `rseq`) reaches this node, so that every node applies every room's joins and leaves in one
//! order, its own included.

use std::collections::HashMap;
use std::sync::Arc;

use super::{offer, Hub, Outcome};
use crate::cluster::{Inbound, Member, NodeId, Seat};
use crate::{
    CoreError, ErrorEvent, Event, Joined, Message, PeerKey, PeerName, Place, Presence, RawJson,
    Retained, RoomId, Signal,
};

/// One room as this node knows it.
#[derive(Default)]
pub(super) struct Room {
    pub(super) members: HashMap<PeerName, RoomSeat>,
    /// Join order on a single node.
    next_seq: u64,
    sync: Sync,
    /// Local joins the cluster has not confirmed yet.
    pending: usize,
    /// In a cluster: the node the room's media lives on.
    media: Option<NodeId>,
}

#[derive(Clone, Copy)]
pub(super) struct RoomSeat {
    pub(super) at: Member,
    /// Join order, for rosters.
    seq: u64,
    /// A durable member: relays to it from this node are kept for it in the cluster.
    durable: bool,
}

impl RoomSeat {
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }
}

/// How far this node follows a room's changes.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Sync {
    /// A single node: the hub itself is the room's order.
    #[default]
    Single,
    /// A local join is in flight and the room's roster has not arrived: changes are ignored.
    Waiting,
    /// Following the cluster's changes; the last one applied.
    Live(u64),
}

impl Room {
    /// Whether this node must keep following the room: it has members here (leaving ones
    /// included, until the cluster confirms it) or joins in flight.
    /// The room's media node follows it while anyone is in it.
    pub(super) fn in_use(&self, me: Option<NodeId>) -> bool {
        self.pending > 0
            || self
                .members
                .values()
                .any(|seat| !matches!(seat.at, Member::Remote(_)))
            || (me.is_some() && self.media == me && !self.members.is_empty())
    }

    pub(super) fn media_home(&self) -> Option<NodeId> {
        self.media
    }

    pub(super) fn has_remote(&self, name: &PeerName, node: NodeId) -> bool {
        self.members
            .get(name)
            .is_some_and(|seat| seat.at == Member::Remote(node))
    }

    /// Whether the room has a roster this node follows (not a join still waiting for one).
    pub(super) fn is_live(&self) -> bool {
        self.sync != Sync::Waiting && !self.members.is_empty()
    }

    fn waiting() -> Room {
        Room {
            sync: Sync::Waiting,
            ..Room::default()
        }
    }

    /// Takes change `rseq` if it is the next one this node should apply.
    fn advance(&mut self, rseq: u64) -> bool {
        match self.sync {
            Sync::Live(applied) if rseq > applied => {
                self.sync = Sync::Live(rseq);
                true
            }
            _ => false,
        }
    }

    fn local_keys(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.members.values().filter_map(|seat| match seat.at {
            Member::Local(key) => Some(key),
            _ => None,
        })
    }
}

impl Hub {
    /// Joins `room` as `name`, leaving the current room first. Joining the room one is
    /// already in, under the same name, only repeats the reply.
    pub(super) fn join(
        &mut self,
        key: PeerKey,
        room_id: RoomId,
        name: PeerName,
        rid: Option<RawJson>,
    ) -> Result<Outcome, CoreError> {
        let peer = self.peers.get(&key).ok_or(CoreError::UnknownPeer)?;
        if peer.joining.is_some() {
            return Err(CoreError::InvalidState("a join is in progress"));
        }
        if let Some(grant) = &peer.profile.grant {
            grant.check_join(&room_id, &name)?;
        }
        let rejoin = matches!(&peer.place, Place::Room { room, name: current }
            if *room == room_id && *current == name);
        if rejoin {
            self.reply_joined(key, room_id, name, rid);
            return Ok(Outcome::Done);
        }
        if self
            .rooms
            .get(&room_id)
            .is_some_and(|room| room.members.contains_key(&name))
        {
            return Err(CoreError::NameTaken(name));
        }
        if let Some(max) = self.max_room_members {
            let room = self.rooms.get(&room_id);
            if room.is_some_and(|room| room.members.len() + room.pending >= max) {
                return Err(CoreError::RoomFull(room_id));
            }
        }
        self.leave(key);
        if self.cluster.is_some() {
            self.rooms
                .entry(room_id.clone())
                .or_insert_with(Room::waiting)
                .pending += 1;
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.joining = Some((room_id.clone(), name.clone()));
                peer.joining_rid = rid;
            }
            return Ok(Outcome::Claim {
                room: room_id,
                name,
            });
        }
        let room = self.rooms.entry(room_id.clone()).or_default();
        let seq = room.next_seq;
        room.next_seq += 1;
        self.seat_local(key, &room_id, name, seq, rid);
        Ok(Outcome::Done)
    }

    /// Leaves the current room. On one node the others hear of it at once; in a cluster
    /// when the cluster confirms it, in the room's order. A no-op outside a room.
    pub(super) fn leave(&mut self, key: PeerKey) {
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
        let (dialect, epoch) = (peer.profile.dialect, peer.epoch);
        self.member_count(key, -1);
        if let Some(listener) = &self.listener {
            listener.left(key, dialect, epoch);
            listener.member_left(&room_id, &name, dialect);
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if let Some(cluster) = &self.cluster {
            if let Some(seat) = room.members.get_mut(&name) {
                if seat.at == Member::Local(key) {
                    seat.at = Member::Leaving(key);
                }
            }
            cluster.uplink.leave(&room_id, &name, key);
            return;
        }
        room.members.remove(&name);
        self.tell_left(&room_id, name);
    }

    pub(super) fn leave_named(
        &mut self,
        key: PeerKey,
        room: Option<&str>,
    ) -> Result<Outcome, CoreError> {
        let peer = self.peers.get(&key).ok_or(CoreError::UnknownPeer)?;
        match (&peer.place, room) {
            (Place::Room { room: current, .. }, Some(named)) if current.as_str() != named => {
                Err(CoreError::NotInRoom)
            }
            (Place::Room { .. }, _) => {
                self.leave(key);
                if self.cluster.is_some() {
                    // The peer reads on once the cluster has the leave (`Settled`).
                    return Ok(Outcome::Waiting);
                }
                Ok(Outcome::Done)
            }
            _ => Err(CoreError::NotInRoom),
        }
    }

    pub(super) fn send(
        &mut self,
        key: PeerKey,
        to: Option<&str>,
        room: Option<&str>,
        echo: bool,
        message: Message,
    ) -> Result<Outcome, CoreError> {
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
        let signal = Arc::new(Signal {
            frames: Default::default(),
            from: name.clone(),
            origin: peer.profile.dialect,
            addressed: to.is_some(),
            message,
        });
        if let Some(to) = to {
            let seat = room
                .members
                .get(to)
                .ok_or_else(|| CoreError::PeerNotFound(to.into()))?;
            return match seat.at {
                Member::Local(target) => {
                    offer(&self.peers, target, Event::Signal(signal), &mut self.slow);
                    Ok(Outcome::Done)
                }
                Member::Remote(node) => {
                    let (to, _) = room.members.get_key_value(to).ok_or(CoreError::NotInRoom)?;
                    self.uplink_relay(room_id, Some((node, to)), &signal, seat.durable)
                }
                Member::Leaving(_) => Err(CoreError::PeerNotFound(to.into())),
            };
        }
        let (mut remote, mut retain) = (false, false);
        for seat in room.members.values() {
            match seat.at {
                Member::Local(member) if member != key || echo => {
                    offer(
                        &self.peers,
                        member,
                        Event::Signal(signal.clone()),
                        &mut self.slow,
                    );
                }
                Member::Remote(_) => {
                    remote = true;
                    retain |= seat.durable;
                }
                _ => {}
            }
        }
        if remote {
            return self.uplink_relay(room_id, None, &signal, retain);
        }
        Ok(Outcome::Done)
    }

    fn uplink_relay(
        &self,
        room: &RoomId,
        to: Option<(crate::NodeId, &PeerName)>,
        signal: &Signal,
        retain: bool,
    ) -> Result<Outcome, CoreError> {
        let cluster = self.cluster.as_ref().ok_or(CoreError::NotInRoom)?;
        cluster
            .uplink
            .relay(room, to, signal, retain)
            .map(|()| Outcome::Done)
            .map_err(|_| CoreError::Overloaded)
    }

    /// A join in flight ended without the cluster's confirmation reaching this node (the
    /// claim was refused, or the peer went away). Its name is released in case the claim
    /// went through after all.
    pub(super) fn abandon_join(&mut self, key: PeerKey, room_id: &RoomId) {
        let Some((room, name)) = self.peers.get_mut(&key).and_then(|peer| {
            peer.joining_rid = None;
            peer.joining.take()
        }) else {
            return;
        };
        debug_assert_eq!(&room, room_id);
        if let Some(cluster) = &self.cluster {
            cluster.uplink.leave(&room, &name, key);
        }
        if let Some(entry) = self.rooms.get_mut(&room) {
            entry.pending = entry.pending.saturating_sub(1);
        }
        self.drop_if_unused(&room);
    }

    /// The cluster's roster as of this node's first join into a room it did not follow.
    pub(super) fn apply_roster(
        &mut self,
        room_id: RoomId,
        rseq: u64,
        media: Option<NodeId>,
        mut seats: Vec<Seat>,
    ) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.sync != Sync::Waiting {
            return;
        }
        room.sync = Sync::Live(rseq);
        room.media = media;
        seats.sort_by_key(|seat| seat.seq);
        let Some(me) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        let mut joiners = Vec::new();
        for seat in seats {
            let at = if seat.node != me {
                Member::Remote(seat.node)
            } else if self.is_joining(seat.key, &room_id, &seat.name) {
                joiners.push(seat);
                continue;
            } else {
                Member::Leaving(seat.key)
            };
            if let Some(room) = self.rooms.get_mut(&room_id) {
                let (seq, durable) = (seat.seq, seat.durable);
                room.members
                    .insert(seat.name, RoomSeat { at, seq, durable });
            }
        }
        for seat in joiners {
            self.confirm_join(&room_id, seat);
        }
    }

    /// The start of every seat the cluster orders into a room (a join, a move): news out of
    /// the room's order is dropped, and our own pending join is confirmed. Returns this
    /// node's id and the seat when the caller still has it to place.
    fn seat_news(&mut self, room_id: &RoomId, rseq: u64, seat: Seat) -> Option<(NodeId, Seat)> {
        let room = self.rooms.get_mut(room_id)?;
        if !room.advance(rseq) {
            return None;
        }
        let me = self.cluster.as_ref()?.node;
        if seat.node == me && self.is_joining(seat.key, room_id, &seat.name) {
            self.confirm_join(room_id, seat);
            return None;
        }
        Some((me, seat))
    }

    /// Someone joined, on this node or another, as the cluster orders it.
    pub(super) fn apply_joined(&mut self, room_id: &RoomId, rseq: u64, seat: Seat) {
        let Some((me, seat)) = self.seat_news(room_id, rseq, seat) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if let Some(current) = room.members.get_mut(&seat.name) {
            if seat.node == me && current.at == Member::Local(seat.key) {
                // This node claimed its own member again (Redis lost it): nothing changed.
                current.seq = seat.seq;
                return;
            }
        }
        let at = if seat.node == me {
            // A join whose peer went away or moved on before it was confirmed: its leave is
            // on its way; the room sees both, in order, like every other node's rooms do.
            Member::Leaving(seat.key)
        } else {
            Member::Remote(seat.node)
        };
        let (seq, durable) = (seat.seq, seat.durable);
        let known = room
            .members
            .insert(seat.name.clone(), RoomSeat { at, seq, durable });
        if let Some(RoomSeat {
            at: Member::Local(lost),
            ..
        }) = known
        {
            // This node was declared dead and another node's peer took the name meanwhile:
            // the peer here lost it, hears so, and is closed.
            let message = format!("name {} was taken while this server was cut off", seat.name);
            self.deliver(
                lost,
                Event::Error(Box::new(ErrorEvent {
                    code: crate::ErrorCode::NameTaken,
                    message: Arc::from(message),
                    rid: None,
                })),
            );
            self.slow.push((lost, false));
        }
        if known.is_none() {
            self.tell_joined(room_id, &seat.name, None);
        }
        let hosted = self
            .rooms
            .get(room_id)
            .is_some_and(|room| room.media == Some(me));
        if let (true, false, Some(listener)) = (hosted, seat.node == me, &self.listener) {
            listener.remote_joined(room_id, &seat);
        }
    }

    /// Someone left, dropped or was removed with its node, as the cluster orders it.
    pub(super) fn apply_left(&mut self, room_id: &RoomId, rseq: u64, name: &PeerName) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !room.advance(rseq) {
            return;
        }
        let Some(seat) = room.members.remove(name) else {
            return;
        };
        if let (Member::Remote(node), Some(listener)) = (seat.at, &self.listener) {
            listener.remote_left(room_id, name, node);
        }
        if let Member::Leaving(key) = seat.at {
            offer(&self.peers, key, Event::Settled, &mut self.slow);
        }
        if let Member::Local(_) = seat.at {
            // The cluster removed a member this node still has: this node was declared dead
            // while cut off. The member stays (its peers here saw nothing happen), and the
            // node claims it again when it registers anew; elsewhere it is seen to leave and
            // join again, or, if its name was taken meanwhile, its socket is closed then.
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.members.insert(name.clone(), seat);
            }
            return;
        }
        self.tell_left(room_id, name.clone());
    }

    /// A relay from a member on another node, for the members here.
    pub(super) fn apply_relay(
        &mut self,
        room_id: &RoomId,
        to: Option<&PeerName>,
        signal: &Arc<Signal>,
    ) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        // Only a member this node has heard join may speak: its join comes first.
        if !matches!(
            room.members.get(&signal.from).map(|s| s.at),
            Some(Member::Remote(_))
        ) {
            return;
        }
        let event = Event::Signal(signal.clone());
        match to {
            Some(to) => {
                if let Some(Member::Local(key)) = room.members.get(to).map(|s| s.at) {
                    let event = retained_for(&self.retained, key, &event);
                    offer(&self.peers, key, event, &mut self.slow);
                }
            }
            None => {
                for key in room.local_keys() {
                    let event = retained_for(&self.retained, key, &event);
                    offer(&self.peers, key, event, &mut self.slow);
                }
            }
        }
    }

    /// Drops the view of a room this node no longer has anyone in, and tells the cluster
    /// to stop following it.
    pub(super) fn drop_if_unused(&mut self, room_id: &RoomId) {
        let me = self.cluster.as_ref().map(|c| c.node);
        if self.rooms.get(room_id).is_some_and(|room| !room.in_use(me)) {
            self.rooms.remove(room_id);
            if let Some(cluster) = &self.cluster {
                cluster.uplink.room_unused(room_id);
            }
        }
    }

    /// Catches up with the room as of `rseq` after this node may have missed changes: remote
    /// members who left meanwhile leave, newcomers join, each told once.
    pub(super) fn resync(
        &mut self,
        room_id: &RoomId,
        rseq: u64,
        media: Option<NodeId>,
        seats: Vec<Seat>,
    ) {
        let Some(me) = self.cluster.as_ref().map(|c| c.node) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !matches!(room.sync, Sync::Live(applied) if applied <= rseq) {
            return;
        }
        room.sync = Sync::Live(rseq);
        room.media = media.or(room.media);
        let now: HashMap<&PeerName, &Seat> = seats.iter().map(|s| (&s.name, s)).collect();
        let gone: Vec<(PeerName, Member)> = room
            .members
            .iter()
            .filter(|(name, seat)| !matches!(seat.at, Member::Local(_)) && !now.contains_key(name))
            .map(|(name, seat)| (name.clone(), seat.at))
            .collect();
        let mut new: Vec<&Seat> = seats
            .iter()
            .filter(|s| s.node != me && !room.members.contains_key(&s.name))
            .collect();
        new.sort_by_key(|s| s.seq);
        for (name, at) in gone {
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.members.remove(&name);
            }
            if let (Member::Remote(node), Some(listener)) = (at, &self.listener) {
                listener.remote_left(room_id, &name, node);
            }
            self.tell_left(room_id, name);
        }
        for seat in new {
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.members.insert(
                    seat.name.clone(),
                    RoomSeat {
                        at: Member::Remote(seat.node),
                        seq: seat.seq,
                        durable: seat.durable,
                    },
                );
            }
            self.tell_joined(room_id, &seat.name, None);
        }
        // Durable members whose sessions another node took over meanwhile: moved, unheard.
        for seat in &seats {
            if seat.node == me {
                continue;
            }
            if let Some(known) = self
                .rooms
                .get_mut(room_id)
                .and_then(|room| room.members.get_mut(&seat.name))
            {
                if matches!(known.at, Member::Remote(node) if node != seat.node) {
                    known.at = Member::Remote(seat.node);
                    known.durable = seat.durable;
                }
            }
        }
    }

    /// The room's media moved (its media node died): members here hear its producers close.
    pub(super) fn move_media(&mut self, room_id: &RoomId, node: NodeId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let old = room.media.replace(node);
        if old != Some(node) {
            if let Some(listener) = &self.listener {
                listener.media_moved(room_id, old);
            }
        }
        self.drop_if_unused(room_id);
    }

    /// Takes over the seat of durable member `name` in `room` for local peer `key`, whose
    /// session this node now holds (its own node died, or did not answer). Like a join the
    /// cluster confirms ([`Inbound::Moved`] or the room's roster), but nobody hears of it.
    pub fn take_seat(
        &mut self,
        key: PeerKey,
        room_id: &RoomId,
        name: &PeerName,
    ) -> Result<(), CoreError> {
        let peer = self.peers.get_mut(&key).ok_or(CoreError::UnknownPeer)?;
        if peer.joining.is_some() || !matches!(peer.place, Place::Lobby) {
            return Err(CoreError::InvalidState("a takeover needs a fresh socket"));
        }
        peer.joining = Some((room_id.clone(), name.clone()));
        peer.taking_over = true;
        self.rooms
            .entry(room_id.clone())
            .or_insert_with(Room::waiting)
            .pending += 1;
        Ok(())
    }

    /// A takeover that did not happen: the peer stays out of the room, and nobody hears.
    pub fn drop_takeover(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.taking_over = false;
        if let Some((room, _)) = peer.joining.clone() {
            self.abandon_join(key, &room);
        }
        self.settle();
    }

    /// A durable member moved to another node (its session was taken over there), or to
    /// this one: its seat follows, and nobody is told.
    pub(super) fn apply_moved(&mut self, room_id: &RoomId, rseq: u64, seat: Seat) {
        let Some((me, seat)) = self.seat_news(room_id, rseq, seat) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let at = if seat.node == me {
            Member::Leaving(seat.key)
        } else {
            Member::Remote(seat.node)
        };
        let moved = RoomSeat {
            at,
            seq: seat.seq,
            durable: true,
        };
        let hosted = room.media == Some(me);
        match room.members.insert(seat.name.clone(), moved).map(|s| s.at) {
            // Taken from this node (it did not answer in time): the peer here goes quietly;
            // its leave finds the seat no longer its own.
            Some(Member::Local(lost)) => self.slow.push((lost, false)),
            Some(Member::Remote(old)) if old != seat.node && hosted => {
                // Media lived with the old node's session: the room's media node forgets it.
                if let Some(listener) = &self.listener {
                    listener.remote_left(room_id, &seat.name, old);
                    if seat.node != me {
                        listener.remote_joined(room_id, &seat);
                    }
                }
            }
            _ => {}
        }
    }

    /// The local members among `inboxes` (durable members an event was kept for), by key.
    pub(super) fn local_receivers(
        &self,
        inner: &Inbound,
        inboxes: &[(PeerName, u64)],
    ) -> Vec<(PeerKey, u64)> {
        let room = match inner {
            Inbound::Relay { room, .. }
            | Inbound::Joined { room, .. }
            | Inbound::Left { room, .. } => room,
            _ => return Vec::new(),
        };
        let Some(room) = self.rooms.get(room) else {
            return Vec::new();
        };
        inboxes
            .iter()
            .filter_map(|(name, inbox)| match room.members.get(name)?.at {
                Member::Local(key) => Some((key, *inbox)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn is_joining(&self, key: PeerKey, room: &RoomId, name: &PeerName) -> bool {
        self.peers
            .get(&key)
            .and_then(|peer| peer.joining.as_ref())
            .is_some_and(|(r, n)| r == room && n == name)
    }

    /// A claimed join came through: the peer is in. A takeover of a durable member's seat
    /// is told to nobody: the room never saw the member go.
    fn confirm_join(&mut self, room_id: &RoomId, seat: Seat) {
        let key = seat.key;
        let Some((rid, taking_over)) = self.peers.get_mut(&key).map(|peer| {
            peer.joining = None;
            let taking_over = std::mem::take(&mut peer.taking_over);
            (peer.joining_rid.take(), taking_over)
        }) else {
            return;
        };
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.pending = room.pending.saturating_sub(1);
        }
        if taking_over {
            // Its membership goes on: observers of joins (webhooks) heard it join once.
            self.seat(key, room_id, &seat.name, seat.seq, true);
            offer(&self.peers, key, Event::Settled, &mut self.slow);
            return;
        }
        let Seat {
            name, seq, durable, ..
        } = seat;
        if self.seat(key, room_id, &name, seq, durable) {
            if let (Some(listener), Some(peer)) = (&self.listener, self.peers.get(&key)) {
                listener.member_joined(room_id, &name, peer.profile.dialect);
            }
            self.tell_joined(room_id, &name, Some(key));
            self.reply_joined(key, room_id.clone(), name, rid);
        }
    }

    /// Seats a local peer in a room it is now a member of, tells the others and replies.
    fn seat_local(
        &mut self,
        key: PeerKey,
        room_id: &RoomId,
        name: PeerName,
        seq: u64,
        rid: Option<RawJson>,
    ) {
        if self.seat(key, room_id, &name, seq, false) {
            if let (Some(listener), Some(peer)) = (&self.listener, self.peers.get(&key)) {
                listener.member_joined(room_id, &name, peer.profile.dialect);
            }
            self.tell_joined(room_id, &name, Some(key));
            self.reply_joined(key, room_id.clone(), name, rid);
        }
    }

    /// Makes a local peer a member of a room (the SFU follows it), telling nobody; false if
    /// it is gone.
    fn seat(
        &mut self,
        key: PeerKey,
        room_id: &RoomId,
        name: &PeerName,
        seq: u64,
        durable: bool,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        peer.place = Place::Room {
            room: room_id.clone(),
            name: name.clone(),
        };
        peer.epoch += 1;
        let (dialect, epoch) = (peer.profile.dialect, peer.epoch);
        self.member_count(key, 1);
        if let Some(listener) = &self.listener {
            listener.joined(key, dialect, room_id, epoch);
        }
        if let Some(room) = self.rooms.get_mut(room_id) {
            let at = Member::Local(key);
            room.members
                .insert(name.clone(), RoomSeat { at, seq, durable });
        }
        true
    }

    fn tell_joined(&mut self, room_id: &RoomId, name: &PeerName, except: Option<PeerKey>) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        // One `Presence` for the whole room: each member's event shares it.
        let joined = Event::PeerJoined(Arc::new(Presence {
            room: room_id.clone(),
            name: name.clone(),
        }));
        for key in room.local_keys() {
            if Some(key) != except {
                let event = retained_for(&self.retained, key, &joined);
                offer(&self.peers, key, event, &mut self.slow);
            }
        }
    }

    fn tell_left(&mut self, room_id: &RoomId, name: PeerName) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        if room.members.is_empty() && room.pending == 0 {
            self.rooms.remove(room_id);
            if let Some(cluster) = &self.cluster {
                cluster.uplink.room_unused(room_id);
            }
            return;
        }
        let left = Event::PeerLeft(Arc::new(Presence {
            room: room_id.clone(),
            name,
        }));
        for key in room.local_keys() {
            let event = retained_for(&self.retained, key, &left);
            offer(&self.peers, key, event, &mut self.slow);
        }
        self.drop_if_unused(room_id);
    }

    fn reply_joined(&mut self, key: PeerKey, room: RoomId, name: PeerName, rid: Option<RawJson>) {
        let members = self.roster(&room);
        let ice_servers = self.ice_servers.for_joiner(&room, &name);
        self.deliver(
            key,
            Event::Joined(Box::new(Joined {
                room,
                name,
                members,
                rid,
                ice_servers,
                media: self.media.clone(),
            })),
        );
    }

    fn roster(&self, room: &RoomId) -> Arc<[PeerName]> {
        let Some(room) = self.rooms.get(room) else {
            return Arc::from([]);
        };
        let mut members: Vec<(&PeerName, u64)> = room
            .members
            .iter()
            .map(|(name, seat)| (name, seat.seq))
            .collect();
        members.sort_unstable_by_key(|&(_, seq)| seq);
        members.into_iter().map(|(name, _)| name.clone()).collect()
    }
}

/// `event` for local member `key`: wrapped with its place in the member's inbox if the
/// cluster kept it for that (durable) member.
fn retained_for(retained: &[(PeerKey, u64)], key: PeerKey, event: &Event) -> Event {
    match retained.iter().find(|(k, _)| *k == key) {
        Some(&(_, inbox)) => Event::Retained(Box::new(Retained {
            inbox,
            event: event.clone(),
        })),
        None => event.clone(),
    }
}
