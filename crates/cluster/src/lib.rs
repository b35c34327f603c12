//! switchboard across nodes, on Redis. The hub decides who must hear what; this crate
//! carries what leaves the node ([`Cluster`] is the hub's [`Uplink`]) and brings back what
//! other nodes say, decoded as untrusted input and applied with [`Hub::remote`].
//!
//! Three tasks per node, each with its own Redis connection:
//! - the **writer** sends every command in order, pipelined: membership scripts (claims,
//!   leaves, channel interest), relays and frames (`PUBLISH`), heartbeats and reaping;
//! - the **subscriber** listens to this node's channel, the control channel, and the channel
//!   of every room and broadcast channel it has members in;
//! - the **clock** asks for a heartbeat every lease/5 and for a reap every second.
//!
//! Every queue is bounded: relays and frames fail with `overloaded` past `capacity`;
//! membership operations (at most a few per local peer) are never dropped.
//!
//! [`Hub::remote`]: switchboard_core::Hub::remote
#![warn(missing_docs)]

mod durable;
pub mod envelope;
mod metrics;
mod resp;
mod scripts;
mod tunnel;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use switchboard_core::{
    CoreError, ErrorEvent, Event, Inbound, NodeId, Overloaded, PeerKey, PeerName, RawFrame,
    RawJson, RoomId, SharedHub, Signal, SignalKind, Stats, Uplink, UserStats,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, info, warn};

pub use durable::{Commit, Committed, Found, Lookup, TakenOver, Takeover, TakeoverError};
pub use metrics::ClusterMetrics;
pub use resp::{RedisUrl, RespError};
pub use tunnel::{ResumePort, TunnelBroken, TunnelEnd};

use resp::{Conn, Value};
use scripts::Script;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where Redis is.
    pub url: RedisUrl,
    /// This node.
    pub node: NodeId,
    /// How long a silent node is trusted.
    pub lease: Duration,
    /// Key and channel prefix.
    pub prefix: String,
    /// Relays and frames that may wait for Redis; past it senders get `overloaded`.
    pub capacity: usize,
    /// The largest envelope accepted from Redis.
    pub max_envelope: usize,
    /// The most members a room may have across the cluster (the server's
    /// `--max-room-members`, checked in Redis at every claim); `None`: no cap.
    pub max_room_members: Option<usize>,
}

/// How long one pipelined batch may wait for Redis before the connection is deemed lost.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Commands sent in one pipelined batch at most.
const BATCH: usize = 256;
/// How often dead nodes are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// A handle on this node's part of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    config: ClusterConfig,
    hub: SharedHub,
    /// Commands for the writer, in order.
    queue: Mutex<VecDeque<Op>>,
    wake: Notify,
    /// Subscription changes for the subscriber, in order.
    subs: Mutex<VecDeque<SubOp>>,
    subs_wake: Notify,
    /// This node's incarnation, 0 before it first registered.
    inc: AtomicU64,
    /// Whether the writer's connection is up and registered.
    up: AtomicBool,
    /// Set once this node has drained: it never registers again.
    drained: AtomicBool,
    /// When the last heartbeat was confirmed (for `/readyz`).
    last_ok: Mutex<Option<Instant>>,
    metrics: ClusterMetrics,
    /// Stats questions this node asked, waiting for answers.
    asked: Mutex<HashMap<u64, mpsc::Sender<(NodeId, Stats)>>>,
    next_question: AtomicU64,
    /// Where forwarded media requests go: this node's SFU, when it is a room's media node.
    media: std::sync::OnceLock<Arc<dyn MediaPort>>,
    /// Producers announced in rooms whose media lives on another node, so their members can
    /// hear them close if that node dies.
    remote_producers: Mutex<HashMap<RoomId, Vec<String>>>,
    /// Where knocks for this node's resumable sessions go.
    resume: std::sync::OnceLock<Arc<dyn ResumePort>>,
    /// Resumed sessions' sockets carried between this node and others.
    tunnels: Mutex<tunnel::Tunnels>,
}

/// This node's SFU as the cluster reaches it: requests forwarded from members on other
/// nodes, whose room's media lives here.
pub trait MediaPort: Send + Sync + 'static {
    /// Carries out a forwarded request; the SFU answers through the cluster.
    fn request(&self, request: envelope::ForwardedRequest);
}

/// `/api/stats` across the cluster.
#[derive(Debug)]
pub struct ClusterStats {
    /// Every answering node's connections, this node's included.
    pub connected: usize,
    /// Rooms with members, cluster-wide.
    pub rooms: usize,
    /// The oldest connections of every answering node, oldest first, cut at the limit.
    pub users: Vec<(NodeId, UserStats)>,
    /// Nodes with a live lease, this one included.
    pub nodes: Vec<NodeId>,
    /// Whether some live node did not answer in time.
    pub partial: bool,
}

/// How long a stats question waits for the other nodes.
const STATS_WAIT: Duration = Duration::from_millis(300);

/// One command for the writer.
enum Op {
    Publish {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    Claim(Claim),
    Leave {
        room: RoomId,
        name: PeerName,
        key: PeerKey,
    },
    ChannelOn {
        channel: RoomId,
        reply: oneshot::Sender<Result<Vec<NodeId>, CoreError>>,
    },
    ChannelOff {
        channel: RoomId,
    },
    UserOn {
        name: PeerName,
        key: PeerKey,
        reply: Option<oneshot::Sender<Result<(), CoreError>>>,
    },
    UserOff {
        name: PeerName,
    },
    Pair(Box<PairOp>),
    Live {
        reply: oneshot::Sender<(Vec<NodeId>, usize)>,
    },
    Resync {
        room: RoomId,
    },
    Heartbeat,
    Reap,
    Drain {
        reply: oneshot::Sender<()>,
    },
    /// A relay kept for durable receivers on other nodes (`durable.rs`).
    Relay {
        room: RoomId,
        to: Option<PeerName>,
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    Session(Box<durable::OpenOp>),
    Commit(Box<durable::CommitOp>),
    End {
        session: u64,
        key: PeerKey,
    },
    Lookup {
        hash: String,
        reply: oneshot::Sender<Lookup>,
    },
    Takeover(Box<durable::TakeoverOp>),
}

struct PairOp {
    key: PeerKey,
    to: PeerName,
    kind: SignalKind,
    envelope: Vec<u8>,
}

struct Claim {
    room: RoomId,
    name: PeerName,
    key: PeerKey,
    rid: Option<RawJson>,
    /// The claimant's durable session, if it has one.
    session: Option<u64>,
    /// A member claimed again after the cluster lost it: its peer is seated already.
    again: bool,
    reply: Option<oneshot::Sender<Result<(), CoreError>>>,
}

/// One subscription change for the subscriber.
enum SubOp {
    /// Listen to `channel`, then (once Redis confirms) hand `then` to the writer.
    Subscribe { channel: Vec<u8>, then: Option<Op> },
    /// Stop listening to a room's channel if the hub has no interest in it any more.
    RoomUnused(RoomId),
    /// Stop listening to a broadcast channel if the hub has no subscriber of it any more.
    ChannelUnused(RoomId),
}

impl Cluster {
    /// Joins the cluster: starts the writer, subscriber and clock tasks on the current
    /// runtime and makes the hub a cluster node. The first connection to Redis is made in
    /// the background; until it is up, joins answer `unavailable`.
    pub fn start(config: ClusterConfig, hub: SharedHub) -> Cluster {
        let cluster = Cluster(Arc::new(Inner {
            config,
            hub: hub.clone(),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            subs: Mutex::new(VecDeque::new()),
            subs_wake: Notify::new(),
            inc: AtomicU64::new(0),
            up: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            last_ok: Mutex::new(None),
            metrics: ClusterMetrics::default(),
            asked: Mutex::new(HashMap::new()),
            next_question: AtomicU64::new(1),
            media: std::sync::OnceLock::new(),
            remote_producers: Mutex::new(HashMap::new()),
            resume: std::sync::OnceLock::new(),
            tunnels: Mutex::new(tunnel::Tunnels::default()),
        }));
        let node = cluster.0.config.node;
        hub.with(|hub| hub.set_cluster(node, Arc::new(cluster.clone())));
        tokio::spawn(cluster.clone().writer());
        tokio::spawn(cluster.clone().subscriber());
        tokio::spawn(cluster.clone().clock());
        info!(%node, "cluster node starting");
        cluster
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.0.config.node
    }

    /// The cluster's counters, for `/metrics`.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.0.metrics
    }

    /// Whether this node may take traffic: it has confirmed its lease within one lease.
    pub fn ready(&self) -> bool {
        lock(&self.0.last_ok).is_some_and(|at| at.elapsed() < self.0.config.lease)
    }

    /// Claims `name` in `room` for local peer `key`, whose join the hub put on hold (with
    /// its durable `session`, if it has one). The hub hears the verdict: the cluster's echo
    /// of the join (the `joined` reply), or [`switchboard_core::Hub::claim_failed`].
    pub fn claim(
        &self,
        room: RoomId,
        name: PeerName,
        key: PeerKey,
        rid: Option<RawJson>,
        session: Option<u64>,
    ) {
        self.submit_claim(Claim {
            room,
            name,
            key,
            rid,
            session,
            again: false,
            reply: None,
        });
    }

    /// Like [`Cluster::claim`], and waits for Redis's verdict (query-rooms answers 409
    /// before its upgrade).
    pub async fn claim_and_wait(
        &self,
        room: RoomId,
        name: PeerName,
        key: PeerKey,
    ) -> Result<(), CoreError> {
        let (reply, verdict) = oneshot::channel();
        self.submit_claim(Claim {
            room,
            name,
            key,
            rid: None,
            session: None,
            again: false,
            reply: Some(reply),
        });
        verdict.await.unwrap_or(Err(CoreError::Unavailable))
    }

    /// Starts listening to broadcast `channel` and announces this node's interest in it;
    /// returns the other nodes that have subscribers of it.
    pub async fn watch_channel(&self, channel: &RoomId) -> Result<Vec<NodeId>, CoreError> {
        if !self.0.up.load(Ordering::SeqCst) {
            return Err(CoreError::Unavailable);
        }
        let (reply, nodes) = oneshot::channel();
        let on = Op::ChannelOn {
            channel: channel.clone(),
            reply,
        };
        self.subscribe(self.key(b'b', channel.as_str()), Some(on));
        let nodes = match timeout(REDIS_TIMEOUT * 2, nodes).await {
            Ok(Ok(result)) => result?,
            _ => return Err(CoreError::Unavailable),
        };
        // The other nodes with subscribers learn of this one from the channel, and publish
        // their frames only once they have: a question to each, asked after that news on the
        // same channels, is answered after it. So once the upgrade is answered, every frame
        // sent to the channel reaches it, from any node. A node that does not answer within
        // the stats wait (dying, its lease not yet expired) does not hold the upgrade longer.
        let me = self.node();
        let others: HashSet<NodeId> = nodes.iter().copied().filter(|&n| n != me).collect();
        if !others.is_empty() {
            self.ask(others, 0, |_, _| {}).await;
        }
        Ok(nodes)
    }

    /// Registers pairing user `name` (this node's peer `key`) cluster-wide, before its
    /// upgrade is answered, so that any node may address it once it knows its id.
    pub async fn register_user(&self, name: PeerName, key: PeerKey) -> Result<(), CoreError> {
        if !self.0.up.load(Ordering::SeqCst) {
            return Err(CoreError::Unavailable);
        }
        let (reply, verdict) = oneshot::channel();
        self.push(Op::UserOn {
            name,
            key,
            reply: Some(reply),
        });
        match timeout(REDIS_TIMEOUT * 2, verdict).await {
            Ok(Ok(result)) => result,
            _ => Err(CoreError::Unavailable),
        }
    }

    /// Hands a pairing message to the cluster's state machine; the hub hears the verdict
    /// ([`switchboard_core::Hub::pair_decided`]) and the addressed user the message.
    pub fn pair(&self, key: PeerKey, to: PeerName, signal: &Signal) {
        if !self.0.up.load(Ordering::SeqCst) {
            let kind = signal.message.kind.clone();
            self.0.hub.with(|hub| {
                hub.pair_decided(key, &to, &kind, Err(CoreError::Unavailable));
            });
            return;
        }
        let mut envelope = Vec::with_capacity(128);
        envelope::pair(&mut envelope, self.node(), &to, signal);
        let kind = signal.message.kind.clone();
        let op = Op::Pair(Box::new(PairOp {
            key,
            to: to.clone(),
            kind: kind.clone(),
            envelope,
        }));
        // Bounded like a relay: past `--bus-capacity` the sender hears `overloaded`.
        if self.queue_bounded(op).is_err() {
            self.0.hub.with(|hub| {
                hub.pair_decided(key, &to, &kind, Err(CoreError::Overloaded));
            });
        }
    }

    /// Gives the cluster this node's SFU, for requests forwarded from other nodes.
    pub fn set_media(&self, port: Arc<dyn MediaPort>) {
        let _ = self.0.media.set(port);
    }

    /// Sends a member's media request to its room's media node.
    pub fn forward_media(
        &self,
        media_node: NodeId,
        request: &envelope::ForwardedRequest,
    ) -> Result<(), CoreError> {
        let mut payload = Vec::with_capacity(256 + request.data.as_str().len());
        envelope::media_request(&mut payload, request);
        self.publish(self.key(b'n', &media_node.to_string()), payload)
            .map_err(|_| CoreError::Overloaded)
    }

    /// The media node answers or notifies one member on another node.
    pub fn media_to_peer(&self, node: NodeId, key: PeerKey, room: &RoomId, event: &Event) {
        let mut payload = Vec::with_capacity(256);
        let to = envelope::MediaTarget::Peer(key);
        envelope::media_event(&mut payload, self.node(), room, &to, event);
        if self
            .publish(self.key(b'n', &node.to_string()), payload)
            .is_err()
        {
            self.0.metrics.dropped("media_overloaded");
        }
    }

    /// The media node notifies every member of `room` on the other nodes but `except`.
    pub fn media_to_room(&self, room: &RoomId, except: (NodeId, PeerKey), event: &Event) {
        let mut payload = Vec::with_capacity(256);
        let to = envelope::MediaTarget::Room { except };
        envelope::media_event(&mut payload, self.node(), room, &to, event);
        if self
            .publish(self.key(b'r', room.as_str()), payload)
            .is_err()
        {
            self.0.metrics.dropped("media_overloaded");
        }
    }

    /// `/api/stats` for the whole cluster: asks every node with a live lease for its oldest
    /// `limit` connections and merges what arrives within 300 ms; a node that does not answer
    /// makes the result `partial`. Without Redis, this node's own figures, `partial`.
    pub async fn stats(&self, limit: usize) -> ClusterStats {
        let own = self.0.hub.with(|hub| hub.stats(limit));
        let me = self.node();
        let mut result = ClusterStats {
            connected: own.connected,
            rooms: own.rooms,
            users: own.users.into_iter().map(|user| (me, user)).collect(),
            nodes: vec![me],
            partial: true,
        };
        let (reply, live) = oneshot::channel();
        if !self.0.up.load(Ordering::SeqCst) {
            return result;
        }
        self.push(Op::Live { reply });
        let Ok(Ok((nodes, rooms))) = timeout(STATS_WAIT, live).await else {
            return result;
        };
        result.rooms = rooms;
        let others: HashSet<NodeId> = nodes.iter().copied().filter(|&n| n != me).collect();
        result.nodes = nodes;
        let users = &mut result.users;
        let mut connected = 0;
        let answered = self
            .ask(others, limit, |node, stats| {
                connected += stats.connected;
                users.extend(stats.users.into_iter().map(|u| (node, u)));
            })
            .await;
        result.connected += connected;
        result.partial = !answered;
        result
            .users
            .sort_by_key(|(node, user)| (user.connected_at, *node, user.key));
        result.users.truncate(limit);
        result
    }

    /// Asks `others` for their oldest `limit` connections (on `P:ctl`) and hands each answer
    /// that arrives within the stats wait to `answer`; whether every one of them answered.
    async fn ask(
        &self,
        others: HashSet<NodeId>,
        limit: usize,
        mut answer: impl FnMut(NodeId, Stats),
    ) -> bool {
        let id = self.0.next_question.fetch_add(1, Ordering::Relaxed);
        let (answers, mut replies) = mpsc::channel(others.len().max(1));
        lock(&self.0.asked).insert(id, answers);
        let mut question = Vec::new();
        envelope::stats_request(&mut question, id, self.node(), limit);
        self.push(Op::Publish {
            channel: format!("{}:ctl", self.prefix()).into_bytes(),
            payload: question,
        });
        let mut waiting = others;
        let deadline = Instant::now() + STATS_WAIT;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some((node, stats))) => {
                    if waiting.remove(&node) {
                        answer(node, stats);
                    }
                }
                _ => break,
            }
        }
        lock(&self.0.asked).remove(&id);
        waiting.is_empty()
    }

    /// Removes this node from the cluster at once (shutdown): every room hears its members
    /// leave now, not after the lease.
    pub async fn drain(&self) {
        self.0.drained.store(true, Ordering::SeqCst);
        let (reply, done) = oneshot::channel();
        self.push(Op::Drain { reply });
        let _ = timeout(REDIS_TIMEOUT, done).await;
    }

    fn submit_claim(&self, claim: Claim) {
        if !self.0.up.load(Ordering::SeqCst) {
            return self.refuse_claim(claim, CoreError::Unavailable);
        }
        let channel = self.key(b'r', claim.room.as_str());
        self.subscribe(channel, Some(Op::Claim(claim)));
    }

    fn refuse_claim(&self, claim: Claim, error: CoreError) {
        self.0.metrics.refused(&error);
        if !claim.again {
            self.0
                .hub
                .with(|hub| hub.claim_failed(claim.key, &claim.room, &error, claim.rid));
        }
        if let Some(reply) = claim.reply {
            let _ = reply.send(Err(error));
        }
    }

    /// `P:r:ROOM`, `P:b:CH` or `P:n:NODE`.
    fn key(&self, kind: u8, name: &str) -> Vec<u8> {
        let prefix = &self.0.config.prefix;
        let mut key = Vec::with_capacity(prefix.len() + 3 + name.len());
        key.extend_from_slice(prefix.as_bytes());
        key.extend_from_slice(&[b':', kind, b':']);
        key.extend_from_slice(name.as_bytes());
        key
    }

    fn push(&self, op: Op) {
        lock(&self.0.queue).push_back(op);
        self.0.wake.notify_one();
    }

    fn subscribe(&self, channel: Vec<u8>, then: Option<Op>) {
        self.push_sub(SubOp::Subscribe { channel, then });
    }

    fn push_sub(&self, op: SubOp) {
        lock(&self.0.subs).push_back(op);
        self.0.subs_wake.notify_one();
    }

    /// Queues a publish unless the queue is full.
    fn publish(&self, channel: Vec<u8>, payload: Vec<u8>) -> Result<(), Overloaded> {
        self.queue_bounded(Op::Publish { channel, payload })
    }

    /// Queues a delivery (a publish, or a relay kept for durable receivers) unless the
    /// queue is full.
    fn queue_bounded(&self, op: Op) -> Result<(), Overloaded> {
        let mut queue = lock(&self.0.queue);
        if queue.len() >= self.0.config.capacity || !self.0.up.load(Ordering::Relaxed) {
            drop(queue);
            self.0.metrics.overloaded.inc();
            return Err(Overloaded);
        }
        queue.push_back(op);
        drop(queue);
        self.0.metrics.published.inc();
        self.0.wake.notify_one();
        Ok(())
    }

    fn inc(&self) -> String {
        self.0.inc.load(Ordering::SeqCst).to_string()
    }

    fn prefix(&self) -> &str {
        &self.0.config.prefix
    }

    /// The writer: connects, registers, then sends queued commands in pipelined batches,
    /// reconnecting with backoff and jitter whenever Redis is lost.
    async fn writer(self) {
        let mut backoff = Backoff::default();
        loop {
            let mut conn = match self.connect_and_register().await {
                Ok(conn) => conn,
                Err(error) => {
                    self.down(&error);
                    self.fail_queued();
                    sleep(backoff.next()).await;
                    continue;
                }
            };
            backoff = Backoff::default();
            if let Err(error) = self.pump(&mut conn).await {
                self.down(&error);
            }
        }
    }

    async fn connect_and_register(&self) -> Result<Conn, RespError> {
        let mut conn = timeout(REDIS_TIMEOUT, Conn::open(&self.0.config.url))
            .await
            .map_err(|_| RespError::Io(std::io::ErrorKind::TimedOut.into()))??;
        if !self.0.drained.load(Ordering::SeqCst) {
            self.register(&mut conn).await?;
        }
        Ok(conn)
    }

    /// Registers a new incarnation and claims again every local member and channel: after
    /// a restart of Redis or a declared death this node's members are not in Redis.
    async fn register(&self, conn: &mut Conn) -> Result<(), RespError> {
        let node = self.node().to_string();
        let lease = self.0.config.lease.as_millis().to_string();
        let boot = format!("{:016x}", rand_u64());
        let args: [&[u8]; 4] = [
            self.prefix().as_bytes(),
            node.as_bytes(),
            lease.as_bytes(),
            boot.as_bytes(),
        ];
        let reply = timeout(REDIS_TIMEOUT, async {
            load_scripts(conn).await?;
            eval(conn, Script::Register, &args).await
        })
        .await
        .map_err(|_| RespError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let inc = match &reply {
            Value::Array(Some(items)) => items.first().and_then(Value::as_int),
            _ => None,
        }
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(RespError::Protocol("register reply"))?;
        self.0.inc.store(inc, Ordering::SeqCst);
        *lock(&self.0.last_ok) = Some(Instant::now());
        self.0.up.store(true, Ordering::SeqCst);
        info!(node = %self.node(), inc, "registered with redis");
        // A new incarnation: whatever this node has must be in Redis again (nothing, the
        // first time; everything, after Redis lost its data or declared this node dead).
        self.claim_again();
        Ok(())
    }

    /// Claims every local member and channel again, ahead of anything queued.
    fn claim_again(&self) {
        let (seats, channels, users) = self
            .0
            .hub
            .with(|hub| (hub.local_seats(), hub.local_channels(), hub.local_users()));
        self.0.metrics.resyncs.inc();
        let mut queue = lock(&self.0.queue);
        for channel in channels {
            let (reply, _) = oneshot::channel();
            queue.push_front(Op::ChannelOn { channel, reply });
        }
        for (name, key) in users {
            queue.push_front(Op::UserOn {
                name,
                key,
                reply: None,
            });
        }
        // Pushed to the front one by one: last first, so they run in join order.
        for (room, name, key) in seats.into_iter().rev() {
            queue.push_front(Op::Claim(Claim {
                room,
                name,
                key,
                rid: None,
                session: None,
                again: true,
                reply: None,
            }));
        }
        drop(queue);
        self.0.wake.notify_one();
    }

    fn down(&self, error: &RespError) {
        if self.0.up.swap(false, Ordering::SeqCst) {
            warn!(%error, "lost redis; reconnecting");
        } else {
            debug!(%error, "redis still unreachable");
        }
    }

    /// While Redis is down: what needs an answer gets `unavailable`, relays are dropped,
    /// and membership changes wait for Redis to come back.
    fn fail_queued(&self) {
        let queued: Vec<Op> = lock(&self.0.queue).drain(..).collect();
        let mut keep = VecDeque::new();
        for op in queued {
            match op {
                Op::Claim(claim) => self.refuse_claim(claim, CoreError::Unavailable),
                Op::ChannelOn { reply, .. } => {
                    let _ = reply.send(Err(CoreError::Unavailable));
                }
                Op::Drain { reply } => {
                    let _ = reply.send(());
                }
                Op::Publish { .. } | Op::Relay { .. } => self.0.metrics.dropped("redis_down"),
                Op::Commit(op) => {
                    if let Some(reply) = op.reply {
                        let _ = reply.send(Committed::Unavailable);
                    }
                }
                Op::Lookup { reply, .. } => {
                    let _ = reply.send(Lookup::Unavailable);
                }
                Op::Takeover(op) => {
                    let _ = op.reply.send(Err(TakeoverError::Unavailable));
                }
                Op::UserOn { reply, .. } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(CoreError::Unavailable));
                    }
                }
                Op::Pair(pair) => self.0.hub.with(|hub| {
                    hub.pair_decided(pair.key, &pair.to, &pair.kind, Err(CoreError::Unavailable));
                }),
                Op::Heartbeat | Op::Reap | Op::Live { .. } | Op::Resync { .. } => {}
                op @ (Op::Leave { .. }
                | Op::ChannelOff { .. }
                | Op::UserOff { .. }
                | Op::Session(_)
                | Op::End { .. }) => {
                    keep.push_back(op);
                }
            }
        }
        let mut queue = lock(&self.0.queue);
        keep.extend(queue.drain(..));
        *queue = keep;
    }

    async fn pump(&self, conn: &mut Conn) -> Result<(), RespError> {
        loop {
            let batch: Vec<Op> = {
                let mut queue = lock(&self.0.queue);
                let n = queue.len().min(BATCH);
                queue.drain(..n).collect()
            };
            let batch = self.still_wanted(batch);
            if batch.is_empty() {
                self.0.wake.notified().await;
                continue;
            }
            self.0
                .metrics
                .queue_depth
                .set(lock(&self.0.queue).len() as i64);
            let mut out = Vec::new();
            for op in &batch {
                self.encode(op, &mut out);
            }
            let started = Instant::now();
            let replies = timeout(REDIS_TIMEOUT, async {
                conn.write(&out).await?;
                let mut replies = Vec::with_capacity(batch.len());
                for _ in 0..batch.len() {
                    replies.push(conn.read().await?);
                }
                Ok::<_, RespError>(replies)
            })
            .await;
            let replies = match replies {
                Ok(Ok(replies)) => replies,
                Ok(Err(error)) => {
                    self.requeue(batch);
                    return Err(error);
                }
                Err(_) => {
                    self.requeue(batch);
                    return Err(RespError::Io(std::io::ErrorKind::TimedOut.into()));
                }
            };
            self.0
                .metrics
                .redis_rtt
                .observe(started.elapsed().as_secs_f64());
            let mut fenced = false;
            let mut unknown_script = Vec::new();
            for (op, reply) in batch.into_iter().zip(replies) {
                // Redis lost its scripts (SCRIPT FLUSH): the command was not run; send it
                // again once they are loaded again.
                if matches!(&reply, Value::Error(e) if e.starts_with("NOSCRIPT")) {
                    unknown_script.push(op);
                    continue;
                }
                fenced |= self.answer(op, reply);
            }
            if !unknown_script.is_empty() {
                {
                    let mut queue = lock(&self.0.queue);
                    for op in unknown_script.into_iter().rev() {
                        queue.push_front(op);
                    }
                }
                load_scripts(conn).await?;
            }
            // A drained node stays out: its members leave as their sockets close.
            if fenced && !self.0.drained.load(Ordering::SeqCst) {
                warn!(node = %self.node(), "this node was declared dead; registering again");
                self.register(conn).await?;
            }
        }
    }

    /// Drops the claims whose peers stopped waiting (gave up, or went away): made late,
    /// after their leave, they would leave a ghost.
    fn still_wanted(&self, batch: Vec<Op>) -> Vec<Op> {
        let hub = &self.0.hub;
        batch
            .into_iter()
            .filter_map(|op| match op {
                Op::Claim(claim)
                    if !claim.again
                        && !hub.with(|h| h.claim_pending(claim.key, &claim.room, &claim.name)) =>
                {
                    if let Some(reply) = claim.reply {
                        let _ = reply.send(Err(CoreError::Unavailable));
                    }
                    None
                }
                op => Some(op),
            })
            .collect()
    }

    /// Puts back a batch that Redis may not have carried out; `fail_queued` then sorts out
    /// what waits and what is refused.
    fn requeue(&self, batch: Vec<Op>) {
        let mut queue = lock(&self.0.queue);
        for op in batch.into_iter().rev() {
            queue.push_front(op);
        }
        drop(queue);
        self.fail_queued();
    }

    fn encode(&self, op: &Op, out: &mut Vec<u8>) {
        let p = self.prefix().as_bytes();
        let node = self.node().to_string();
        let inc = self.inc();
        match op {
            Op::Publish { channel, payload } => resp::encode(out, &[b"PUBLISH", channel, payload]),
            Op::Claim(claim) => {
                let key = claim.key.0.to_string();
                // A member claimed again after Redis lost it was counted once already: the
                // cap applies to newcomers only.
                let cap = match self.0.config.max_room_members {
                    Some(max) if !claim.again => max.to_string(),
                    _ => "0".to_owned(),
                };
                let session = claim.session.map(|s| s.to_string()).unwrap_or_default();
                eval_into(
                    out,
                    Script::Join,
                    &[
                        p,
                        claim.room.as_str().as_bytes(),
                        claim.name.as_str().as_bytes(),
                        node.as_bytes(),
                        inc.as_bytes(),
                        key.as_bytes(),
                        cap.as_bytes(),
                        session.as_bytes(),
                    ],
                );
            }
            Op::Leave { room, name, key } => {
                let key = key.0.to_string();
                eval_into(
                    out,
                    Script::Leave,
                    &[
                        p,
                        room.as_str().as_bytes(),
                        name.as_str().as_bytes(),
                        node.as_bytes(),
                        key.as_bytes(),
                    ],
                );
            }
            Op::ChannelOn { channel, .. } => eval_into(
                out,
                Script::ChannelOn,
                &[
                    p,
                    channel.as_str().as_bytes(),
                    node.as_bytes(),
                    inc.as_bytes(),
                ],
            ),
            Op::ChannelOff { channel } => eval_into(
                out,
                Script::ChannelOff,
                &[p, channel.as_str().as_bytes(), node.as_bytes()],
            ),
            Op::Heartbeat => {
                let lease = self.0.config.lease.as_millis().to_string();
                let conns = self.0.hub.with(|hub| hub.stats(0).connected).to_string();
                eval_into(
                    out,
                    Script::Heartbeat,
                    &[
                        p,
                        node.as_bytes(),
                        inc.as_bytes(),
                        lease.as_bytes(),
                        conns.as_bytes(),
                    ],
                );
            }
            Op::UserOn { name, key, .. } => {
                let key = key.0.to_string();
                eval_into(
                    out,
                    Script::UserOn,
                    &[
                        p,
                        name.as_str().as_bytes(),
                        node.as_bytes(),
                        inc.as_bytes(),
                        key.as_bytes(),
                    ],
                );
            }
            Op::UserOff { name } => {
                eval_into(out, Script::UserOff, &[p, name.as_str().as_bytes()]);
            }
            Op::Pair(pair) => {
                let kind: &[u8] = match pair.kind {
                    SignalKind::Ping => b"ping",
                    SignalKind::Pong => b"pong",
                    SignalKind::Disconnect => b"disconnect",
                    SignalKind::Offer | SignalKind::Answer | SignalKind::IceCandidate => b"signal",
                    SignalKind::Chat | SignalKind::Other(_) => b"other",
                };
                // The pairing user's id is the hub's name for it; the script needs the
                // sender's id, which the envelope carries too.
                let from = self.0.hub.with(|hub| hub.user_id(pair.key));
                let from = from.as_ref().map_or("", PeerName::as_str);
                let key = pair.key.0.to_string();
                eval_into(
                    out,
                    Script::Pair,
                    &[
                        p,
                        from.as_bytes(),
                        pair.to.as_str().as_bytes(),
                        kind,
                        &pair.envelope,
                        node.as_bytes(),
                        key.as_bytes(),
                    ],
                );
            }
            Op::Reap => eval_into(out, Script::Reap, &[p]),
            Op::Live { .. } => eval_into(out, Script::Live, &[p]),
            Op::Resync { room } => eval_into(
                out,
                Script::Resync,
                &[p, room.as_str().as_bytes(), node.as_bytes()],
            ),
            Op::Drain { .. } => eval_into(out, Script::Drain, &[p, node.as_bytes()]),
            Op::Relay { .. }
            | Op::Session(_)
            | Op::Commit(_)
            | Op::End { .. }
            | Op::Lookup { .. }
            | Op::Takeover(_) => self.encode_durable(op, out),
        }
    }

    /// Handles one reply; true if it says this node was fenced.
    fn answer(&self, op: Op, value: Value) -> bool {
        let text = value.as_bytes().map(<[u8]>::to_vec);
        let is = |word: &[u8]| text.as_deref() == Some(word);
        if let Value::Error(error) = &value {
            warn!(%error, "redis refused a cluster command");
        }
        match op {
            Op::Publish { .. } | Op::Relay { .. } | Op::Session(_) | Op::End { .. } => {}
            op @ (Op::Commit(_) | Op::Lookup { .. } | Op::Takeover(_)) => {
                return self.answer_durable(op, &value);
            }
            Op::Claim(claim) => {
                // `MINE`: this member held the name already (claimed again).
                if is(b"OK") || is(b"MINE") {
                    if let Some(reply) = claim.reply {
                        let _ = reply.send(Ok(()));
                    }
                } else if is(b"TAKEN") {
                    if claim.again {
                        // Someone took the name while this node was cut off: this peer
                        // lost it, and its socket closes.
                        warn!(room = %claim.room, name = %claim.name, "name lost to another node");
                        let error = CoreError::NameTaken(claim.name.clone());
                        self.0.hub.with(|hub| {
                            hub.refuse(claim.key, &error, None);
                            hub.disconnect(claim.key);
                        });
                    } else {
                        let error = CoreError::NameTaken(claim.name.clone());
                        self.refuse_claim(claim, error);
                    }
                } else if is(b"FULL") {
                    let error = CoreError::RoomFull(claim.room.clone());
                    self.refuse_claim(claim, error);
                } else if is(b"FENCED") {
                    self.push(Op::Claim(claim));
                    return true;
                } else {
                    self.refuse_claim(claim, CoreError::Unavailable);
                }
            }
            Op::UserOn { name, key, reply } => {
                if is(b"FENCED") {
                    self.push(Op::UserOn { name, key, reply });
                    return true;
                }
                let verdict = if is(b"OK") {
                    Ok(())
                } else if is(b"TAKEN") {
                    Err(CoreError::NameTaken(name))
                } else {
                    Err(CoreError::Unavailable)
                };
                if let Some(reply) = reply {
                    let _ = reply.send(verdict);
                }
            }
            // The verdict comes through the subscription, after whatever reached the sender
            // before it; only a script that did not run is answered here.
            Op::Pair(pair) => {
                if matches!(value, Value::Error(_)) {
                    self.0.hub.with(|hub| {
                        hub.pair_decided(
                            pair.key,
                            &pair.to,
                            &pair.kind,
                            Err(CoreError::Unavailable),
                        );
                    });
                }
            }
            Op::Live { reply } => {
                let live = match &value {
                    Value::Array(Some(items)) => {
                        let nodes = match items.first() {
                            Some(Value::Array(Some(nodes))) => nodes
                                .iter()
                                .filter_map(|v| std::str::from_utf8(v.as_bytes()?).ok())
                                .filter_map(NodeId::parse)
                                .collect(),
                            _ => Vec::new(),
                        };
                        let rooms = items.get(1).and_then(Value::as_int).unwrap_or(0);
                        (nodes, usize::try_from(rooms).unwrap_or(0))
                    }
                    _ => (Vec::new(), 0),
                };
                let _ = reply.send(live);
            }
            Op::UserOff { .. }
            | Op::Resync { .. }
            | Op::Leave { .. }
            | Op::ChannelOff { .. }
            | Op::Reap
            | Op::Drain { .. } => {
                if let Op::Drain { reply } = op {
                    let _ = reply.send(());
                }
            }
            Op::ChannelOn { channel, reply } => {
                if is(b"FENCED") {
                    self.push(Op::ChannelOn { channel, reply });
                    return true;
                }
                let nodes = match &value {
                    Value::Array(Some(items)) => items
                        .iter()
                        .filter_map(|v| std::str::from_utf8(v.as_bytes()?).ok())
                        .filter_map(NodeId::parse)
                        .filter(|&n| n != self.node())
                        .collect(),
                    _ => Vec::new(),
                };
                let _ = reply.send(Ok(nodes));
            }
            Op::Heartbeat => {
                if is(b"FENCED") {
                    self.0.metrics.lease_failures.inc();
                    return true;
                }
                if let Value::Array(Some(items)) = &value {
                    if let Some(n) = items.get(1).and_then(Value::as_int) {
                        self.0.metrics.nodes.set(n);
                    }
                    if let Some(n) = items.get(2).and_then(Value::as_int) {
                        self.0.metrics.parked.set(n);
                    }
                }
                *lock(&self.0.last_ok) = Some(Instant::now());
            }
        }
        false
    }

    /// Asks for heartbeats (every lease/5) and reaps (every second).
    async fn clock(self) {
        let beat = self.0.config.lease / 5;
        let mut next_beat = Instant::now() + beat;
        loop {
            sleep(REAP_EVERY.min(beat)).await;
            if !self.0.up.load(Ordering::SeqCst) || self.0.drained.load(Ordering::SeqCst) {
                continue;
            }
            if Instant::now() >= next_beat {
                next_beat = Instant::now() + beat;
                self.push(Op::Heartbeat);
            }
            self.push(Op::Reap);
        }
    }

    /// The subscriber: listens to this node's channels and applies what arrives.
    async fn subscriber(self) {
        let mut backoff = Backoff::default();
        let mut pending: VecDeque<(Vec<u8>, Option<Op>)> = VecDeque::new();
        let mut connected_before = false;
        loop {
            let mut conn = match timeout(REDIS_TIMEOUT, Conn::open(&self.0.config.url)).await {
                Ok(Ok(conn)) => conn,
                _ => {
                    sleep(backoff.next()).await;
                    continue;
                }
            };
            backoff = Backoff::default();
            if connected_before {
                // Changes published while the subscription was down are lost: once every
                // node has had a lease to register again (a Redis that lost its data knows
                // their members again by then), catch up with each room's roster.
                let cluster = self.clone();
                tokio::spawn(async move {
                    sleep(cluster.0.config.lease).await;
                    let rooms = cluster.0.hub.with(|hub| hub.followed_rooms());
                    cluster.0.metrics.resyncs.inc();
                    for room in rooms {
                        cluster.push(Op::Resync { room });
                    }
                });
            }
            connected_before = true;
            let mut subscribed = HashSet::new();
            if let Err(error) = self.listen(&mut conn, &mut subscribed, &mut pending).await {
                debug!(%error, "redis subscription lost");
            }
        }
    }

    async fn listen(
        &self,
        conn: &mut Conn,
        subscribed: &mut HashSet<Vec<u8>>,
        pending: &mut VecDeque<(Vec<u8>, Option<Op>)>,
    ) -> Result<(), RespError> {
        // Everything this node listens to: its own channel, the control channel, and the
        // channels of what it has members in; then whatever was waiting for an answer.
        let mut channels = vec![
            self.key(b'n', &self.node().to_string()),
            format!("{}:ctl", self.prefix()).into_bytes(),
        ];
        let (rooms, chans) = self.0.hub.with(|hub| {
            let rooms: Vec<RoomId> = hub.local_seats().into_iter().map(|s| s.0).collect();
            (rooms, hub.local_channels())
        });
        channels.extend(rooms.iter().map(|r| self.key(b'r', r.as_str())));
        channels.extend(chans.iter().map(|c| self.key(b'b', c.as_str())));
        let retry: Vec<(Vec<u8>, Option<Op>)> = pending.drain(..).collect();
        for channel in channels {
            self.send_subscribe(conn, &channel, b"SUBSCRIBE").await?;
            pending.push_back((channel, None));
        }
        for (channel, then) in retry {
            self.send_subscribe(conn, &channel, b"SUBSCRIBE").await?;
            pending.push_back((channel, then));
        }
        loop {
            tokio::select! {
                value = conn.read() => self.on_push(value?, subscribed, pending),
                () = self.0.subs_wake.notified() => {}
            }
            loop {
                let Some(op) = lock(&self.0.subs).pop_front() else {
                    break;
                };
                match op {
                    SubOp::Subscribe { channel, then } => {
                        if subscribed.contains(&channel) {
                            if let Some(then) = then {
                                self.push(then);
                            }
                        } else {
                            self.send_subscribe(conn, &channel, b"SUBSCRIBE").await?;
                            pending.push_back((channel, then));
                        }
                    }
                    SubOp::RoomUnused(room) => {
                        if !self.0.hub.with(|hub| hub.room_in_use(&room)) {
                            let channel = self.key(b'r', room.as_str());
                            if subscribed.remove(&channel) {
                                self.send_subscribe(conn, &channel, b"UNSUBSCRIBE").await?;
                            }
                        }
                    }
                    SubOp::ChannelUnused(name) => {
                        if !self.0.hub.with(|hub| hub.channel_in_use(&name)) {
                            let channel = self.key(b'b', name.as_str());
                            self.push(Op::ChannelOff { channel: name });
                            if subscribed.remove(&channel) {
                                self.send_subscribe(conn, &channel, b"UNSUBSCRIBE").await?;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn send_subscribe(
        &self,
        conn: &mut Conn,
        channel: &[u8],
        verb: &[u8],
    ) -> Result<(), RespError> {
        let mut out = Vec::new();
        resp::encode(&mut out, &[verb, channel]);
        conn.write(&out).await
    }

    fn on_push(
        &self,
        value: Value,
        subscribed: &mut HashSet<Vec<u8>>,
        pending: &mut VecDeque<(Vec<u8>, Option<Op>)>,
    ) {
        let Value::Array(Some(items)) = value else {
            self.0.metrics.dropped("resp");
            return;
        };
        let kind = items.first().and_then(Value::as_bytes);
        match (kind, items.get(1), items.get(2)) {
            (Some(b"message"), Some(_), Some(Value::Bulk(Some(payload)))) => {
                self.on_message(payload);
            }
            (Some(b"subscribe"), Some(channel), _) => {
                let Some(channel) = channel.as_bytes() else {
                    return;
                };
                subscribed.insert(channel.to_vec());
                // Redis answers subscriptions in order; unsubscribes are not in `pending`.
                if let Some(at) = pending.iter().position(|(c, _)| c == channel) {
                    if let Some((_, Some(then))) = pending.remove(at) {
                        self.push(then);
                    }
                }
            }
            (Some(b"unsubscribe"), _, _) => {}
            _ => self.0.metrics.dropped("resp"),
        }
    }

    fn on_message(&self, payload: &Bytes) {
        if envelope::is_stats(payload) {
            return self.on_stats(payload);
        }
        if envelope::is_media(payload) {
            return self.on_media(payload);
        }
        if envelope::is_resume(payload) {
            return self.on_resume(payload);
        }
        match envelope::decode(payload, self.0.config.max_envelope) {
            Ok(decoded) => {
                if decoded.origin == Some(self.node()) {
                    return;
                }
                self.0.metrics.received.inc();
                if let Inbound::MediaHome { room, .. } = &decoded.inbound {
                    self.media_moved(room);
                }
                if let Inbound::NodeDown { node } = &decoded.inbound {
                    self.tunnels_to_dead(*node);
                }
                self.0.hub.with(|hub| hub.remote(decoded.inbound));
            }
            Err(error) => {
                debug!(%error, "dropped a bad cluster message");
                self.0.metrics.dropped(error.label());
            }
        }
    }
}

impl Cluster {
    fn on_media(&self, payload: &Bytes) {
        let (origin, message) = match envelope::decode_media(payload, self.0.config.max_envelope) {
            Ok(decoded) => decoded,
            Err(error) => {
                debug!(%error, "dropped a bad media message");
                return self.0.metrics.dropped(error.label());
            }
        };
        if origin == Some(self.node()) {
            return;
        }
        self.0.metrics.received.inc();
        match message {
            envelope::MediaMessage::Request(request) => match self.0.media.get() {
                Some(port) => port.request(*request),
                None => {
                    let error = Event::Error(Box::new(ErrorEvent {
                        code: switchboard_core::ErrorCode::MediaDisabled,
                        message: Arc::from("media is off on this room's media node"),
                        rid: request.rid.clone(),
                    }));
                    self.media_to_peer(request.node, request.key, &request.room, &error);
                }
            },
            envelope::MediaMessage::Event { room, to, event } => {
                self.track_producers(&room, &event);
                let me = self.node();
                self.0.hub.with(|hub| match to {
                    envelope::MediaTarget::Peer(key) => hub.reply(key, event),
                    envelope::MediaTarget::Room { except } => {
                        let except = if except.0 == me {
                            except.1
                        } else {
                            PeerKey(u64::MAX)
                        };
                        hub.tell_room(&room, except, &event);
                    }
                });
            }
        }
    }

    /// Remembers the producers another node's SFU announced in `room`.
    fn track_producers(&self, room: &RoomId, event: &Event) {
        let Event::Media(media) = event else {
            return;
        };
        let id = |data: &RawJson| {
            serde_json::from_str::<serde_json::Value>(data.as_str())
                .ok()
                .and_then(|v| v.get("producerId")?.as_str().map(str::to_owned))
        };
        let mut producers = lock(&self.0.remote_producers);
        match media.kind {
            "new-producer" => {
                if let Some(id) = id(&media.data) {
                    let list = producers.entry(room.clone()).or_default();
                    if !list.contains(&id) && list.len() < 1024 {
                        list.push(id);
                    }
                }
            }
            "producer-closed" => {
                if let (Some(id), Some(list)) = (id(&media.data), producers.get_mut(room)) {
                    list.retain(|p| *p != id);
                }
            }
            _ => {}
        }
    }

    /// `room`'s media node died: its members here hear every producer it had close, and
    /// may publish again on the room's new media node.
    fn media_moved(&self, room: &RoomId) {
        let Some(producers) = lock(&self.0.remote_producers).remove(room) else {
            return;
        };
        self.0.hub.with(|hub| {
            for id in producers {
                let event = Event::Media(Box::new(switchboard_core::MediaEvent {
                    kind: "producer-closed",
                    data: RawJson::new(&serde_json::json!({ "producerId": id }).to_string()),
                    rid: None,
                }));
                hub.tell_room(room, PeerKey(u64::MAX), &event);
            }
        });
    }

    fn on_stats(&self, payload: &Bytes) {
        match envelope::decode_stats(payload, self.0.config.max_envelope) {
            Ok(envelope::StatsMessage::Request {
                id,
                reply_to,
                limit,
            }) => {
                if reply_to == self.node() {
                    return;
                }
                let stats = self.0.hub.with(|hub| hub.stats(limit));
                let mut answer = Vec::new();
                envelope::stats_reply(&mut answer, id, self.node(), &stats);
                // An answer nobody can wait for is not worth a full queue: dropped if so.
                let _ = self.publish(self.key(b'n', &reply_to.to_string()), answer);
            }
            Ok(envelope::StatsMessage::Reply { id, node, stats }) => {
                if let Some(answers) = lock(&self.0.asked).get(&id) {
                    let _ = answers.try_send((node, stats));
                }
            }
            Err(error) => {
                debug!(%error, "dropped a bad stats message");
                self.0.metrics.dropped(error.label());
            }
        }
    }
}

impl Uplink for Cluster {
    fn relay(
        &self,
        room: &RoomId,
        to: Option<(NodeId, &PeerName)>,
        signal: &Signal,
        retain: bool,
    ) -> Result<(), Overloaded> {
        let mut payload = Vec::with_capacity(128);
        envelope::relay(&mut payload, self.node(), room, to.map(|(_, n)| n), signal);
        let channel = match to {
            Some((node, _)) => self.key(b'n', &node.to_string()),
            None => self.key(b'r', room.as_str()),
        };
        if !retain {
            return self.publish(channel, payload);
        }
        let relay = Op::Relay {
            room: room.clone(),
            to: to.map(|(_, name)| name.clone()),
            channel,
            payload,
        };
        self.queue_bounded(relay)
    }

    fn frame(&self, channel: &RoomId, frame: &RawFrame) -> Result<(), Overloaded> {
        let mut payload = Vec::with_capacity(64);
        envelope::frame(&mut payload, self.node(), channel, frame);
        self.publish(self.key(b'b', channel.as_str()), payload)
    }

    fn leave(&self, room: &RoomId, name: &PeerName, key: PeerKey) {
        self.push(Op::Leave {
            room: room.clone(),
            name: name.clone(),
            key,
        });
    }

    fn room_unused(&self, room: &RoomId) {
        self.push_sub(SubOp::RoomUnused(room.clone()));
    }

    fn channel_unused(&self, channel: &RoomId) {
        self.push_sub(SubOp::ChannelUnused(channel.clone()));
    }

    fn user_left(&self, name: &PeerName) {
        self.push(Op::UserOff { name: name.clone() });
    }
}

async fn eval(conn: &mut Conn, script: Script, args: &[&[u8]]) -> Result<Value, RespError> {
    let mut out = Vec::new();
    eval_into(&mut out, script, args);
    conn.write(&out).await?;
    match conn.read().await? {
        Value::Error(error) => Err(RespError::Refused(error)),
        value => Ok(value),
    }
}

/// `EVALSHA` once Redis has the script (every registration loads them all), else `EVAL`:
/// Redis would hash the whole text of every `EVAL` again.
fn eval_into(out: &mut Vec<u8>, script: Script, args: &[&[u8]]) {
    let sha = script.sha();
    let mut all: Vec<&[u8]> = match &sha {
        Some(sha) => vec![b"EVALSHA", sha.as_bytes(), b"0"],
        None => vec![b"EVAL", script.source().as_bytes(), b"0"],
    };
    all.extend_from_slice(args);
    resp::encode(out, &all);
}

/// Loads every script into Redis and remembers their SHA-1s.
async fn load_scripts(conn: &mut Conn) -> Result<(), RespError> {
    let mut out = Vec::new();
    for script in Script::ALL {
        resp::encode(&mut out, &[b"SCRIPT", b"LOAD", script.source().as_bytes()]);
    }
    conn.write(&out).await?;
    for script in Script::ALL {
        match conn.read().await? {
            Value::Error(error) => return Err(RespError::Refused(error)),
            value => {
                let sha = value
                    .as_bytes()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .ok_or(RespError::Protocol("SCRIPT LOAD reply"))?;
                script.set_sha(sha.to_owned());
            }
        }
    }
    Ok(())
}

/// Reconnect delays: 100 ms doubling to 5 s, each with up to half again of jitter.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = 100u64 << self.0.min(6);
        self.0 += 1;
        let base = base.min(5_000);
        Duration::from_millis(base + rand_u64() % (base / 2 + 1))
    }
}

/// A random number from the standard library's per-process random hasher keys.
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
