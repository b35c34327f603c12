//! Resume across nodes: a client whose session lives on another node keeps its session
//! there, and its new socket is carried to it through Redis.
//!
//! The node the client reached asks every node for the session ([`Cluster::knock`], a
//! [`Knock`] on the control channel). The node whose session has that token hash opens its
//! end of the tunnel ([`Cluster::answer_knock`]) and hands it to the session as its socket; the
//! session answers through it (`resumed` and the replay, or [`TunnelFrame::Refused`]). From
//! then on each end publishes its side's frames to the other node's own channel, in order,
//! numbered per direction: a frame lost on the way, a full queue at either end or the other
//! node's death ends the tunnel, which to the session is a dropped socket (it parks) and to
//! the client too (it resumes again). So a tunnel loses nothing the replay does not restore.

use std::collections::HashMap;

use bytes::Bytes;
use switchboard_core::{CoreError, NodeId};
use tokio::sync::mpsc;
use tracing::debug;

use crate::envelope::{self, Knock, TunnelFrame, TunnelId, TunnelMessage};
use crate::{lock, Cluster};

/// Frames one tunnel end may hold for its socket before the tunnel is deemed broken: a
/// client this far behind resumes instead (its session keeps every frame for the replay).
const TUNNEL_CAPACITY: usize = 1024;

/// This node's open tunnel ends, by tunnel.
#[derive(Default)]
pub(crate) struct Tunnels {
    ends: HashMap<TunnelId, Entry>,
    next: u64,
}

struct Entry {
    /// The other end's node, once known (the client's end learns it from the first answer).
    peer: Option<NodeId>,
    /// The last frame number heard from the other end.
    heard: u64,
    to_end: mpsc::Sender<TunnelFrame>,
}

/// A session node's way to the sessions of this node: the server's table of resumable
/// sessions, which takes a knocking socket if it has its session.
pub trait ResumePort: Send + Sync + 'static {
    /// A node asks for a session; answer only if it is here ([`Cluster::answer_knock`]).
    fn knock(&self, knock: Knock);
}

/// One end of a tunnel: frames from the other end arrive here, frames for it go out
/// through Redis. Dropping it tells the other end it is gone (if it still listens).
pub struct TunnelEnd {
    cluster: Cluster,
    id: TunnelId,
    peer: Option<NodeId>,
    sent: u64,
    from_peer: mpsc::Receiver<TunnelFrame>,
    /// The tunnel has ended: the other end said it is gone, or a frame was lost on the way.
    ended: bool,
    /// The other end said it is gone: nothing more to tell it.
    peer_gone: bool,
}

impl std::fmt::Debug for TunnelEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelEnd")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

/// The tunnel cannot carry a frame: the queue to Redis is full, Redis is gone, or the other
/// end is not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tunnel to the session's node is broken")]
pub struct TunnelBroken;

impl TunnelEnd {
    /// The next frame from the other end; `None` once the tunnel has ended (the other end
    /// went away, a frame was lost, or this end fell too far behind).
    pub async fn recv(&mut self) -> Option<TunnelFrame> {
        if self.ended {
            return None;
        }
        let frame = self.from_peer.recv().await;
        if self.peer.is_none() {
            self.peer = lock(&self.cluster.0.tunnels)
                .ends
                .get(&self.id)
                .and_then(|entry| entry.peer);
        }
        match frame {
            Some(TunnelFrame::Gone) => {
                self.ended = true;
                self.peer_gone = true;
                None
            }
            // Broken here (a lost frame, or this end too far behind): the other end is told
            // when this one is dropped.
            None => {
                self.ended = true;
                None
            }
            frame => frame,
        }
    }

    /// Sends a frame to the other end.
    pub fn send(&mut self, frame: TunnelFrame) -> Result<(), TunnelBroken> {
        let peer = self.peer.ok_or(TunnelBroken)?;
        if self.ended {
            return Err(TunnelBroken);
        }
        self.sent += 1;
        let message = TunnelMessage {
            tunnel: self.id,
            from: self.cluster.node(),
            n: self.sent,
            frame,
        };
        let mut payload = Vec::with_capacity(64);
        envelope::tunnel(&mut payload, &message);
        let channel = self.cluster.key(b'n', &peer.to_string());
        self.cluster.publish(channel, payload).map_err(|_| {
            self.ended = true;
            TunnelBroken
        })
    }
}

impl Drop for TunnelEnd {
    fn drop(&mut self) {
        let entry = lock(&self.cluster.0.tunnels).ends.remove(&self.id);
        if entry.is_some() {
            self.cluster.0.metrics.tunnels.dec();
        }
        if self.peer_gone {
            return;
        }
        let message = TunnelMessage {
            tunnel: self.id,
            from: self.cluster.node(),
            n: 0,
            frame: TunnelFrame::Gone,
        };
        let mut payload = Vec::with_capacity(64);
        envelope::tunnel(&mut payload, &message);
        // A knock nobody answered in time may still be answered: whoever does hears this.
        let channel = match self.peer.or(entry.and_then(|e| e.peer)) {
            Some(peer) => self.cluster.key(b'n', &peer.to_string()),
            None => format!("{}:ctl", self.cluster.prefix()).into_bytes(),
        };
        let _ = self.cluster.publish(channel, payload);
    }
}

impl Cluster {
    /// Gives the cluster this node's resumable sessions, for knocks from other nodes.
    pub fn set_resume(&self, port: std::sync::Arc<dyn ResumePort>) {
        let _ = self.0.resume.set(port);
    }

    /// Asks every node for the session with token hash `hash`; the returned end hears its
    /// answer first (`Refused`, or the session's `resumed`), or nothing if no node has it.
    pub fn knock(
        &self,
        hash: [u8; 32],
        seq: u64,
        ip: std::net::IpAddr,
        subject: Option<String>,
    ) -> Result<TunnelEnd, CoreError> {
        let id = {
            let mut tunnels = lock(&self.0.tunnels);
            tunnels.next += 1;
            TunnelId {
                node: self.node(),
                id: tunnels.next,
            }
        };
        let end = self.open_end(id, None);
        let mut payload = Vec::with_capacity(160);
        envelope::knock(
            &mut payload,
            &Knock {
                tunnel: id,
                hash,
                seq,
                ip,
                subject,
            },
        );
        self.publish(format!("{}:ctl", self.prefix()).into_bytes(), payload)
            .map_err(|_| CoreError::Unavailable)?;
        Ok(end)
    }

    /// Opens this node's end of the tunnel a knock asked for: the session's side.
    pub fn answer_knock(&self, knock: &Knock) -> TunnelEnd {
        self.open_end(knock.tunnel, Some(knock.tunnel.node))
    }

    fn open_end(&self, id: TunnelId, peer: Option<NodeId>) -> TunnelEnd {
        let (to_end, from_peer) = mpsc::channel(TUNNEL_CAPACITY);
        let entry = Entry {
            peer,
            heard: 0,
            to_end,
        };
        lock(&self.0.tunnels).ends.insert(id, entry);
        self.0.metrics.tunnels.inc();
        TunnelEnd {
            cluster: self.clone(),
            id,
            peer,
            sent: 0,
            from_peer,
            ended: false,
            peer_gone: false,
        }
    }

    /// A resume message from Redis: a knock for this node's sessions, or a tunnel's frame.
    pub(crate) fn on_resume(&self, payload: &Bytes) {
        let message = match envelope::decode_resume(payload, self.0.config.max_envelope) {
            Ok(message) => message,
            Err(error) => {
                debug!(%error, "dropped a bad resume message");
                return self.0.metrics.dropped(error.label());
            }
        };
        self.0.metrics.received.inc();
        match message {
            envelope::ResumeMessage::Knock(knock) => {
                if knock.tunnel.node == self.node() {
                    return; // our own question
                }
                if let Some(port) = self.0.resume.get() {
                    port.knock(knock);
                }
            }
            envelope::ResumeMessage::Tunnel(message) => self.on_tunnel(message),
        }
    }

    fn on_tunnel(&self, message: TunnelMessage) {
        let mut tunnels = lock(&self.0.tunnels);
        let Some(entry) = tunnels.ends.get_mut(&message.tunnel) else {
            return;
        };
        match entry.peer {
            Some(peer) if peer != message.from => return,
            Some(_) => {}
            None if message.frame == TunnelFrame::Gone => return,
            None => entry.peer = Some(message.from),
        }
        let fits = message.frame == TunnelFrame::Gone || message.n == entry.heard + 1;
        entry.heard = message.n;
        // A frame lost on the way, or an end too far behind: the tunnel ends (dropping the
        // sender ends its receiver once it has read what came before).
        if !fits || entry.to_end.try_send(message.frame).is_err() {
            if let Some(entry) = tunnels.ends.get_mut(&message.tunnel) {
                let (closed, _) = mpsc::channel(1);
                entry.to_end = closed;
            }
            self.0.metrics.dropped("tunnel_broken");
        }
    }

    /// `node` is gone: every tunnel to it ends.
    pub(crate) fn tunnels_to_dead(&self, node: NodeId) {
        let mut tunnels = lock(&self.0.tunnels);
        for (id, entry) in tunnels.ends.iter_mut() {
            if entry.peer == Some(node) || id.node == node {
                let (closed, _) = mpsc::channel(1);
                entry.to_end = closed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_core::SharedHub;

    use super::*;
    use crate::{ClusterConfig, RedisUrl};

    const B: NodeId = NodeId(0xb);
    const TUNNEL: TunnelId = TunnelId { node: B, id: 7 };

    /// A node whose Redis never answers: enough for what arrives on a tunnel.
    fn cluster() -> Cluster {
        let config = ClusterConfig {
            url: RedisUrl::parse("redis+unix:///nonexistent/switchboard-tunnel-test.sock").unwrap(),
            node: NodeId(0xa),
            lease: Duration::from_secs(10),
            prefix: "sb".into(),
            capacity: 16,
            max_envelope: 1 << 16,
            max_room_members: None,
        };
        Cluster::start(config, SharedHub::default())
    }

    fn arrives(cluster: &Cluster, from: NodeId, n: u64, frame: TunnelFrame) {
        let mut payload = Vec::new();
        let message = TunnelMessage {
            tunnel: TUNNEL,
            from,
            n,
            frame,
        };
        envelope::tunnel(&mut payload, &message);
        cluster.on_resume(&Bytes::from(payload));
    }

    fn text(text: &'static str) -> TunnelFrame {
        TunnelFrame::Text(Bytes::from_static(text.as_bytes()))
    }

    fn answer(cluster: &Cluster) -> TunnelEnd {
        cluster.answer_knock(&Knock {
            tunnel: TUNNEL,
            hash: [0; 32],
            seq: 0,
            ip: "192.0.2.1".parse().unwrap(),
            subject: None,
        })
    }

    #[tokio::test]
    async fn frames_pass_in_order_and_a_lost_one_ends_the_tunnel() {
        let cluster = cluster();
        let mut end = answer(&cluster);
        arrives(&cluster, B, 1, text("one"));
        arrives(&cluster, NodeId(0xc), 2, text("a stranger's")); // not this tunnel's peer
        arrives(&cluster, B, 2, text("two"));
        arrives(&cluster, B, 4, text("four")); // three was lost on the way
        arrives(&cluster, B, 5, text("five"));
        assert_eq!(end.recv().await, Some(text("one")));
        assert_eq!(end.recv().await, Some(text("two")));
        assert_eq!(end.recv().await, None, "a gap ends the tunnel");
        assert_eq!(end.recv().await, None);
        assert_eq!(end.send(TunnelFrame::Ping), Err(TunnelBroken));
        drop(end);
        assert!(
            lock(&cluster.0.tunnels).ends.is_empty(),
            "the end is forgotten"
        );
    }

    #[tokio::test]
    async fn the_other_end_leaving_or_its_node_dying_ends_the_tunnel() {
        let cluster = cluster();
        let mut end = answer(&cluster);
        arrives(&cluster, B, 1, text("one"));
        arrives(&cluster, B, 0, TunnelFrame::Gone);
        assert_eq!(end.recv().await, Some(text("one")));
        assert_eq!(end.recv().await, None);
        drop(end);

        let mut end = answer(&cluster);
        cluster.tunnels_to_dead(B);
        arrives(&cluster, B, 1, text("too late"));
        assert_eq!(end.recv().await, None);
    }

    #[tokio::test]
    async fn an_end_that_falls_too_far_behind_is_broken() {
        let cluster = cluster();
        let mut end = answer(&cluster);
        for n in 1..=TUNNEL_CAPACITY as u64 + 1 {
            arrives(&cluster, B, n, TunnelFrame::Ping);
        }
        for _ in 0..TUNNEL_CAPACITY {
            assert_eq!(end.recv().await, Some(TunnelFrame::Ping));
        }
        assert_eq!(end.recv().await, None, "the frame past the bound broke it");
    }
}
