//! Broadcast channels (seed 004): every frame to every other subscriber, bytes untouched.
//! In a cluster a frame goes to other nodes only when one of them has subscribers.

use std::collections::HashSet;
use std::sync::Arc;

use super::{offer, Hub, Outcome};
use crate::cluster::NodeId;
use crate::{CoreError, Event, Outbox, PeerKey, PeerProfile, Place, RawFrame, RoomId};

/// One channel as this node knows it.
#[derive(Default)]
pub(super) struct Channel {
    /// Subscribers on this node, in order of subscription.
    local: Vec<PeerKey>,
    /// Other nodes with subscribers.
    nodes: HashSet<NodeId>,
}

impl Hub {
    pub(super) fn add_subscriber(
        &mut self,
        profile: PeerProfile,
        outbox: Outbox,
        channel: RoomId,
        nodes: &[NodeId],
    ) -> PeerKey {
        let key = self.insert(profile, outbox, Place::Channel(channel.clone()));
        let entry = self.channels.entry(channel).or_default();
        entry.local.push(key);
        entry.nodes.extend(nodes.iter().copied());
        self.member_count(key, 1);
        key
    }

    pub(super) fn remove_subscriber(&mut self, key: PeerKey, channel: &RoomId) {
        let Some(subscribers) = self.channels.get_mut(channel) else {
            return;
        };
        subscribers.local.retain(|&k| k != key);
        if subscribers.local.is_empty() {
            self.channels.remove(channel);
            if let Some(cluster) = &self.cluster {
                cluster.uplink.channel_unused(channel);
            }
        }
    }

    pub(super) fn broadcast(
        &mut self,
        key: PeerKey,
        frame: RawFrame,
    ) -> Result<Outcome, CoreError> {
        let Some(Place::Channel(channel)) = self.peers.get(&key).map(|peer| &peer.place) else {
            return Err(CoreError::UnknownPeer);
        };
        let Some(subscribers) = self.channels.get(channel) else {
            return Ok(Outcome::Done);
        };
        let frame = Arc::new(frame);
        for &subscriber in &subscribers.local {
            if subscriber != key {
                offer(
                    &self.peers,
                    subscriber,
                    Event::Frame(frame.clone()),
                    &mut self.slow,
                );
            }
        }
        if let (Some(cluster), false) = (&self.cluster, subscribers.nodes.is_empty()) {
            cluster
                .uplink
                .frame(channel, &frame)
                .map_err(|_| CoreError::Overloaded)?;
        }
        Ok(Outcome::Done)
    }

    /// A frame from another node, for this node's subscribers.
    pub(super) fn apply_frame(&mut self, channel: &RoomId, frame: &RawFrame) {
        let Some(subscribers) = self.channels.get(channel) else {
            return;
        };
        let frame = Arc::new(frame.clone());
        for &subscriber in &subscribers.local {
            offer(
                &self.peers,
                subscriber,
                Event::Frame(frame.clone()),
                &mut self.slow,
            );
        }
    }

    pub(super) fn channel_node(&mut self, channel: &RoomId, node: NodeId, on: bool) {
        if self.cluster.as_ref().is_some_and(|c| c.node == node) {
            return;
        }
        if let Some(subscribers) = self.channels.get_mut(channel) {
            if on {
                subscribers.nodes.insert(node);
            } else {
                subscribers.nodes.remove(&node);
            }
        }
    }

    pub(super) fn node_down(&mut self, node: NodeId) {
        for subscribers in self.channels.values_mut() {
            subscribers.nodes.remove(&node);
        }
    }
}
