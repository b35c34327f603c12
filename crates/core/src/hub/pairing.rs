//! Pairing (seed 001): users by id, and the ping/pong state machine that pairs two of them.
//! Pairing users are per node for now: a user on another node answers `user_not_found`.

use std::sync::Arc;

use super::{Hub, Outcome};
use crate::{
    CoreError, DialectKind, Event, Message, Outbox, PeerKey, PeerName, PeerProfile, Place, Signal,
    SignalKind, State,
};

impl Hub {
    pub(super) fn add_user(
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
            target_name: None,
            watchers: vec![],
        };
        let key = self.insert(profile, outbox, place);
        self.users.insert(name.clone(), key);
        self.member_count(key, 1);
        self.deliver(key, Event::Greeting { id: name });
        Ok(key)
    }

    /// Forgets a removed pairing user and tells whoever was pairing with it.
    pub(super) fn remove_user(
        &mut self,
        key: PeerKey,
        name: PeerName,
        target: Option<PeerKey>,
        watchers: Vec<PeerKey>,
    ) {
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

    pub(super) fn pair(
        &mut self,
        key: PeerKey,
        to: &str,
        message: Message,
    ) -> Result<Outcome, CoreError> {
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
        if self.cluster.is_some() {
            let signal = Signal {
                frames: Default::default(),
                from,
                origin: DialectKind::Pairing,
                addressed: true,
                message,
            };
            let to = PeerName::parse(to).map_err(|_| CoreError::UserNotFound(to.into()))?;
            return Ok(Outcome::Pair {
                to,
                signal: Arc::new(signal),
            });
        }
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
                frames: Default::default(),
                from,
                origin: DialectKind::Pairing,
                addressed: true,
                message,
            };
            self.deliver(other, Event::Signal(Arc::new(signal)));
        }
        Ok(Outcome::Done)
    }

    pub(super) fn pairing_state(&self, key: PeerKey) -> (State, Option<PeerKey>) {
        match self.peers.get(&key).map(|peer| &peer.place) {
            Some(Place::Pairing { state, target, .. }) => (*state, *target),
            _ => (State::Idle, None),
        }
    }

    pub(super) fn user_name(&self, key: PeerKey) -> Option<PeerName> {
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

    /// The cluster's verdict on a pairing message from `key`: refused (the error is the
    /// sender's), or allowed, in which case this node's copy of the sender's state follows.
    pub fn pair_decided(
        &mut self,
        key: PeerKey,
        to: &PeerName,
        kind: &SignalKind,
        verdict: Result<(), CoreError>,
    ) {
        match verdict {
            Err(error) => self.refuse(key, &error, None),
            Ok(()) => match kind {
                SignalKind::Ping => self.set_remote_target(key, State::Connecting, Some(to)),
                SignalKind::Pong => self.set_remote_target(key, State::Connected, Some(to)),
                SignalKind::Disconnect => self.set_remote_target(key, State::Idle, None),
                _ => {}
            },
        }
        // The sender's socket waits for this before it reads on.
        self.reply(key, Event::Settled);
    }

    /// A pairing message from another node's user (or this node's, through the cluster).
    pub(super) fn apply_pair(&mut self, to: &PeerName, signal: Arc<Signal>) {
        let Some(&key) = self.users.get(to) else {
            return;
        };
        match signal.message.kind {
            SignalKind::Pong => self.set_remote_target(key, State::Connected, Some(&signal.from)),
            SignalKind::Disconnect if self.remote_target(key) == Some(&signal.from) => {
                self.set_remote_target(key, State::Idle, None);
            }
            _ => {}
        }
        self.deliver(key, Event::Signal(signal));
    }

    pub(super) fn apply_partner_gone(&mut self, to: &PeerName, from: PeerName) {
        let Some(&key) = self.users.get(to) else {
            return;
        };
        self.set_remote_target(key, State::Idle, None);
        self.deliver(key, Event::PartnerGone { from });
    }

    fn remote_target(&self, key: PeerKey) -> Option<&PeerName> {
        match self.peers.get(&key).map(|peer| &peer.place) {
            Some(Place::Pairing { target_name, .. }) => target_name.as_ref(),
            _ => None,
        }
    }

    /// In a cluster the state machine lives in Redis; this copy is for `/api/stats`.
    fn set_remote_target(&mut self, key: PeerKey, new_state: State, target: Option<&PeerName>) {
        if let Some(Place::Pairing {
            state, target_name, ..
        }) = self.peers.get_mut(&key).map(|peer| &mut peer.place)
        {
            *state = new_state;
            *target_name = target.cloned();
        }
    }
}
