//! switchboard's media path: a mediasoup-compatible SFU for the conference dialect, on
//! str0m (RTP mode, Direct API, ICE-lite, no SDP on the server).
//!
//! Each media worker thread owns one UDP socket and the media of the members placed on it
//! (a room's, until the room outgrows one worker and spreads; its producers' packets are then
//! piped between the workers). Its router (`router.rs`) is sans-IO: rooms, transports,
//! producers and consumers, given the time and the datagrams, queueing what it sends and
//! what it tells other workers; the worker (`worker.rs`) owns the socket and the clock,
//! writes many datagrams per system call and passes the pipes on. Signaling reaches a worker only through
//! [`Sfu`], whose queue is bounded, and it answers through the
//! [`Signaling`] the server gives it (the peers' own outboxes), so a stalled media path never
//! blocks a socket task and a slow client never blocks the media path. docs/media.md has the
//! design; `../shared/spec/sfu.md` is the contract.
#![warn(missing_docs)]

mod batch;
mod caps;
pub mod client;
mod ids;
mod metrics;
mod params;
mod router;
#[cfg(test)]
mod simulation;
mod transport;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use switchboard_core::{ErrorCode, Event, MediaRequest, PeerKey, PeerName, RawJson, RoomId};
use tokio::sync::{mpsc, Notify};

pub use metrics::MediaMetrics;

/// How the media worker answers and notifies peers: implemented by the server on its hub.
pub trait Signaling: Send + Sync + 'static {
    /// Puts `event` on `peer`'s outbox.
    fn tell(&self, peer: PeerKey, event: Event);
    /// Puts `event` on the outbox of every member of `room` but `except`.
    fn tell_room(&self, room: &RoomId, except: PeerKey, event: Event);
    /// Whether `peer` is (still) a member of `room`.
    fn is_member(&self, peer: PeerKey, room: &RoomId) -> bool;
    /// `name` published (`is_open`) or closed producer `id` (`p12`), of `kind` (`audio` or
    /// `video`), in `room`: for observers (webhooks). Must only queue.
    fn producer(&self, _room: &RoomId, _name: &PeerName, _id: &str, _kind: &str, _is_open: bool) {}
}

/// Caps on what one user or one room may hold (`limit_reached` past them).
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    /// Transports per user (mediasoup-client uses two: send and receive).
    pub transports_per_user: usize,
    /// Producers per user (camera, microphone, screen...).
    pub producers_per_user: usize,
    /// Consumers per user.
    pub consumers_per_user: usize,
    /// Producers per room.
    pub producers_per_room: usize,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            transports_per_user: 4,
            producers_per_user: 8,
            consumers_per_user: 256,
            producers_per_room: 64,
        }
    }
}

/// Where the media worker listens and what it announces.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The UDP address to bind.
    pub listen: SocketAddr,
    /// The IP put in every transport's `iceCandidates`.
    pub announce: IpAddr,
    /// Per-user and per-room caps.
    pub limits: MediaLimits,
    /// Bytes of kernel buffer asked for the UDP socket, receive and send each. The kernel
    /// grants at most `net.core.rmem_max` / `wmem_max`; what it granted is logged and in
    /// `/metrics`, with a warning when it is less.
    pub socket_buffer: usize,
    /// Media worker threads, each with its own UDP socket (at least 1). The first binds
    /// `listen`; the others take ephemeral ports on the same address, or with `ports`,
    /// worker `i` binds port `first + i` of that range (the first worker too).
    pub workers: usize,
    /// A fixed UDP port range for the workers' sockets, `(first, last)`: for firewalls and
    /// published container ports. It must hold a port per worker.
    pub ports: Option<(u16, u16)>,
    /// Members of one room its first worker takes before the room spreads over the others
    /// (each new member then goes to the worker with the fewest of the room's members, and
    /// producers' packets are piped between them).
    pub room_spread: usize,
}

/// A room's members on one worker before it spreads: a room this big (every member
/// consuming every other's media) outgrows one core's 500-odd consumers.
pub const DEFAULT_ROOM_SPREAD: usize = 100;

/// A room's consumers on its first worker past which its new members go to other workers,
/// however few they are: a meeting of 20 cameras is 400 video consumers. One core forwards a
/// camera's 250 packets/s to about 530 (docs/performance.md); this leaves it room to spare.
const SPREAD_CONSUMERS: usize = 400;

/// The consumers of each room on each worker, as the workers count them: what placement
/// reads to spread a room whose consumers outgrow its first worker.
#[derive(Debug, Default)]
pub(crate) struct RoomLoad {
    consumers: Mutex<HashMap<RoomId, Vec<usize>>>,
}

impl RoomLoad {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Vec<usize>>> {
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A consumer opened in `room` on worker `worker` of `workers`.
    pub(crate) fn opened(&self, room: &RoomId, worker: usize, workers: usize) {
        let mut counts = self.counts();
        let on = counts
            .entry(room.clone())
            .or_insert_with(|| vec![0; workers]);
        if let Some(count) = on.get_mut(worker) {
            *count += 1;
        }
    }

    /// A consumer in `room` on worker `worker` closed.
    pub(crate) fn closed(&self, room: &RoomId, worker: usize) {
        let mut counts = self.counts();
        let Some(on) = counts.get_mut(room) else {
            return;
        };
        if let Some(count) = on.get_mut(worker) {
            *count = count.saturating_sub(1);
        }
        if on.iter().all(|&n| n == 0) {
            counts.remove(room);
        }
    }

    /// The room's consumers on worker `worker`.
    fn on(&self, room: &RoomId, worker: usize) -> usize {
        self.counts()
            .get(room)
            .and_then(|on| on.get(worker).copied())
            .unwrap_or(0)
    }
}

/// Where a worker's router stands among the workers.
pub(crate) struct Seat {
    /// This worker's index, and how many there are.
    pub(crate) index: usize,
    pub(crate) count: usize,
    /// Every room's consumers per worker, shared by all of them and placement.
    pub(crate) load: Arc<RoomLoad>,
}

/// The socket buffer asked for by default: 4 MiB holds ~3,000 full-size datagrams, about
/// 0.3 s of 500 consumers' video at 20 packets/s each arriving at once. A burst past the
/// default 208 KiB (Debian's `rmem_max`) is what made the kernel drop UDP
/// (`RcvbufErrors`) under load.
pub const DEFAULT_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

impl MediaConfig {
    /// The announced IP when none is given: the listen IP, or loopback for a wildcard listen
    /// (a wildcard is no address a browser can send to). The flag says which.
    pub fn default_announce(listen: IpAddr) -> (IpAddr, bool) {
        if listen.is_unspecified() {
            (IpAddr::V4(Ipv4Addr::LOCALHOST), true)
        } else {
            (listen, false)
        }
    }
}

/// Why starting the media worker failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The UDP socket could not be bound.
    #[error("cannot bind media UDP socket {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The DTLS certificate could not be made.
    #[error("cannot generate the DTLS certificate")]
    Certificate,
    /// `ports` holds fewer ports than there are workers.
    #[error("the media port range {0}-{1} holds fewer ports than the {2} media workers")]
    Ports(u16, u16, usize),
    /// The worker thread could not start.
    #[error("cannot start the media thread: {0}")]
    Thread(std::io::Error),
}

/// A refusal of a media request, with its contract code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MediaError {
    #[error("bad parameters: {0}")]
    BadParameters(String),
    #[error("no transport {0}")]
    TransportNotFound(String),
    #[error("no producer {0}")]
    ProducerNotFound(String),
    #[error("no consumer {0}")]
    ConsumerNotFound(String),
    #[error("cannot consume: {0}")]
    CannotConsume(&'static str),
    #[error("not in a room")]
    NotInRoom,
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
}

impl MediaError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        MediaError::BadParameters(message.into())
    }

    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            MediaError::BadParameters(_) | MediaError::ConsumerNotFound(_) => {
                ErrorCode::BadParameters
            }
            MediaError::TransportNotFound(_) => ErrorCode::TransportNotFound,
            MediaError::ProducerNotFound(_) => ErrorCode::ProducerNotFound,
            MediaError::CannotConsume(_) => ErrorCode::CannotConsume,
            MediaError::NotInRoom => ErrorCode::NotInRoom,
            MediaError::LimitReached(_) => ErrorCode::LimitReached,
        }
    }
}

/// One request from one peer, with the membership it was made under.
#[derive(Debug)]
pub struct Request {
    /// Who asks.
    pub peer: PeerKey,
    /// The room the peer is in.
    pub room: RoomId,
    /// The peer's name there.
    pub name: PeerName,
    /// The peer's membership epoch (see [`Sfu::left`]).
    pub epoch: u32,
    /// Which request.
    pub request: MediaRequest,
    /// The request's `data` object, unparsed.
    pub data: RawJson,
    /// The request id to echo.
    pub rid: Option<RawJson>,
}

/// What the media worker is told.
#[derive(Debug)]
pub(crate) enum Input {
    Request(Request),
    /// A conference peer joined `room`. Its media lives on the worker told `home`, which
    /// announces the room's producers to it.
    Joined {
        peer: PeerKey,
        room: RoomId,
        epoch: u32,
        home: bool,
    },
    /// From another worker: a room's media spread over several workers.
    Pipe(router::Pipe),
    /// The peer's membership up to `epoch` ended: close what it owned.
    Left {
        peer: PeerKey,
        epoch: u32,
    },
}

/// Departures that found the queue full; the worker drains them first. Bounded by the
/// number of peers, since each peer has one entry.
#[derive(Default)]
pub(crate) struct Overflow {
    left: Mutex<HashMap<PeerKey, u32>>,
    wake: Notify,
}

impl Overflow {
    pub(crate) fn take(&self) -> HashMap<PeerKey, u32> {
        std::mem::take(&mut *self.left.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Asks the kernel for `wanted` bytes of receive and send buffer on `socket` and records what
/// it granted. Linux reports twice what it reserves for data (the other half is its own
/// bookkeeping), so a grant is "capped" when the reported size is below what was asked:
/// the sysctl, not the request, decided it.
fn size_buffers(socket: &UdpSocket, wanted: usize, metrics: &MediaMetrics) {
    let socket = socket2::SockRef::from(socket);
    // Refusals are not fatal: the default buffers still carry media, only less of a burst.
    let _ = socket.set_recv_buffer_size(wanted);
    let _ = socket.set_send_buffer_size(wanted);
    let receive = socket.recv_buffer_size().unwrap_or(0);
    let send = socket.send_buffer_size().unwrap_or(0);
    let capped = receive < wanted || send < wanted;
    metrics.receive_buffer.set(receive as i64);
    metrics.send_buffer.set(send as i64);
    metrics.buffer_capped.set(i64::from(capped));
    if capped {
        tracing::warn!(
            wanted,
            receive,
            send,
            "the kernel capped the media socket's buffers: bursts past them are dropped; \
             raise net.core.rmem_max and net.core.wmem_max (sysctl) to at least --media-socket-buffer"
        );
    } else {
        tracing::info!(receive, send, "media socket buffers");
    }
}

/// The epoch a dropped connection leaves with: later than any membership it had.
pub const GONE: u32 = u32::MAX;

/// How many requests may wait for the media worker.
const QUEUE: usize = 4096;

/// The handle signaling holds: cheap to clone; the worker stops when the last one drops.
#[derive(Clone)]
pub struct Sfu {
    workers: Arc<[WorkerHandle]>,
    placement: Arc<Mutex<Placement>>,
    load: Arc<RoomLoad>,
    capabilities: RawJson,
    metrics: MediaMetrics,
}

/// Which worker holds each member's media. A room starts on the worker with the fewest
/// members when its first member arrives, so rooms spread evenly however their ids hash, and
/// its members stay there until it holds `spread_at` of them or [`SPREAD_CONSUMERS`] of its
/// consumers; later members go to the worker with the fewest of the room's members, so one
/// big room uses every core. A room is forgotten when its last member leaves (its media
/// closes with them).
#[derive(Debug, Default)]
struct Placement {
    rooms: HashMap<RoomId, Placed>,
    /// Each member's room, the membership's epoch, and its worker.
    peers: HashMap<PeerKey, (RoomId, u32, usize)>,
    /// Members per worker.
    members: Vec<usize>,
    spread_at: usize,
}

#[derive(Debug)]
struct Placed {
    /// The worker its first members go to.
    home: usize,
    /// Its members on each worker.
    members: Vec<usize>,
}

impl Placement {
    fn new(workers: usize, spread_at: usize) -> Placement {
        Placement {
            members: vec![0; workers],
            spread_at,
            ..Placement::default()
        }
    }

    /// The room's first worker, for a room that has members.
    fn worker_of(&self, room: &RoomId) -> Option<usize> {
        self.rooms.get(room).map(|placed| placed.home)
    }

    /// The worker that holds a member's media.
    fn worker_of_peer(&self, peer: PeerKey) -> Option<usize> {
        self.peers.get(&peer).map(|&(_, _, worker)| worker)
    }

    /// `peer` is in `room` now (under `epoch`), and out of any other: returns its worker.
    /// `load` says how many consumers the room has on each worker.
    fn join(&mut self, peer: PeerKey, room: &RoomId, epoch: u32, load: &RoomLoad) -> usize {
        if let Some((current, held, worker)) = self.peers.get_mut(&peer) {
            if current == room {
                *held = epoch;
                return *worker;
            }
            self.leave(peer, u32::MAX);
        }
        let workers = self.members.len();
        let least = (0..workers)
            .min_by_key(|&worker| self.members[worker])
            .unwrap_or(0);
        let placed = self.rooms.entry(room.clone()).or_insert(Placed {
            home: least,
            members: vec![0; workers],
        });
        let crowded = placed.members[placed.home] >= self.spread_at
            || load.on(room, placed.home) >= SPREAD_CONSUMERS;
        let worker = if !crowded {
            placed.home
        } else {
            (0..workers)
                .min_by_key(|&worker| placed.members[worker])
                .unwrap_or(placed.home)
        };
        placed.members[worker] += 1;
        self.members[worker] += 1;
        self.peers.insert(peer, (room.clone(), epoch, worker));
        worker
    }

    /// `peer` left, unless it has joined again since `epoch`.
    fn leave(&mut self, peer: PeerKey, epoch: u32) {
        if self
            .peers
            .get(&peer)
            .is_none_or(|(_, held, _)| *held > epoch)
        {
            return;
        }
        let Some((room, _, worker)) = self.peers.remove(&peer) else {
            return;
        };
        self.members[worker] -= 1;
        if let Some(placed) = self.rooms.get_mut(&room) {
            placed.members[worker] -= 1;
            if placed.members.iter().all(|&n| n == 0) {
                self.rooms.remove(&room);
            }
        }
    }
}

/// How the signaling side reaches one media worker.
struct WorkerHandle {
    queue: mpsc::Sender<Input>,
    overflow: Arc<Overflow>,
    local: SocketAddr,
}

impl WorkerHandle {
    fn send(&self, input: Input, metrics: &MediaMetrics) {
        if self.queue.try_send(input).is_err() {
            metrics.queue_full.inc();
        }
    }

    fn left(&self, peer: PeerKey, epoch: u32) {
        if self.queue.try_send(Input::Left { peer, epoch }).is_err() {
            let mut left = self
                .overflow
                .left
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = left.entry(peer).or_insert(epoch);
            *entry = (*entry).max(epoch);
            drop(left);
            self.overflow.wake.notify_one();
        }
    }
}

impl Sfu {
    /// Binds the UDP socket and starts the media worker thread.
    pub fn start(config: MediaConfig, signaling: Arc<dyn Signaling>) -> Result<Sfu, StartError> {
        let metrics = MediaMetrics::default();
        let certificate = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or(StartError::Certificate)?;
        let count = config.workers.max(1);
        if let Some((first, last)) = config.ports {
            if usize::from(last.saturating_sub(first)) + 1 < count || last < first {
                return Err(StartError::Ports(first, last, count));
            }
        }
        // Every worker's socket and queue first: each worker can reach every other.
        let mut bound = Vec::with_capacity(count);
        for index in 0..count {
            // The first worker takes the configured address (the contract's port); the
            // others an ephemeral port beside it, announced in their own candidates.
            let listen = match (config.ports, index) {
                (Some((first, _)), _) => {
                    // Within the range: checked above.
                    let port = u16::try_from(usize::from(first) + index).unwrap_or(first);
                    SocketAddr::new(config.listen.ip(), port)
                }
                (None, 0) => config.listen,
                (None, _) => SocketAddr::new(config.listen.ip(), 0),
            };
            let socket = UdpSocket::bind(listen).map_err(|e| StartError::Bind(listen, e))?;
            let local = socket
                .local_addr()
                .map_err(|e| StartError::Bind(listen, e))?;
            socket
                .set_nonblocking(true)
                .map_err(|e| StartError::Bind(listen, e))?;
            size_buffers(&socket, config.socket_buffer, &metrics);
            let (queue, inbox) = mpsc::channel(QUEUE);
            bound.push((socket, local, queue, inbox));
        }
        let queues: Arc<[mpsc::Sender<Input>]> =
            bound.iter().map(|(_, _, queue, _)| queue.clone()).collect();
        let load = Arc::new(RoomLoad::default());
        let mut workers = Vec::with_capacity(count);
        for (index, (socket, local, queue, inbox)) in bound.into_iter().enumerate() {
            let overflow = Arc::new(Overflow::default());
            let announce = SocketAddr::new(config.announce, local.port());
            let seat = Seat {
                index,
                count,
                load: load.clone(),
            };
            let router = router::Router::new(
                seat,
                announce,
                certificate.clone(),
                config.limits,
                signaling.clone(),
                metrics.clone(),
                std::time::Instant::now(),
            )
            .ok_or(StartError::Certificate)?;
            let worker = worker::Worker::new(
                socket,
                inbox,
                overflow.clone(),
                router,
                queues.clone(),
                metrics.clone(),
            );
            thread::Builder::new()
                .name(format!("switchboard-media-{index}"))
                .spawn(move || worker.run())
                .map_err(StartError::Thread)?;
            workers.push(WorkerHandle {
                queue,
                overflow,
                local,
            });
        }
        metrics.workers.set(count as i64);
        let capabilities = RawJson::new(&caps::router_capabilities().to_string());
        Ok(Sfu {
            placement: Arc::new(Mutex::new(Placement::new(
                workers.len(),
                config.room_spread.max(1),
            ))),
            workers: workers.into(),
            load,
            capabilities,
            metrics,
        })
    }

    /// The worker that holds a member's media (its requests all go there); one who is no
    /// member has none, and its requests (refused: not a member) go to its room's first
    /// worker or the first.
    fn worker_for(&self, peer: PeerKey, room: &RoomId) -> &WorkerHandle {
        let placement = self.placement();
        let placed = placement
            .worker_of_peer(peer)
            .or_else(|| placement.worker_of(room))
            .unwrap_or(0);
        &self.workers[placed]
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The UDP address of each worker, the first being the configured one.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|worker| worker.local).collect()
    }

    /// The router's RTP capabilities (JSON), as `joined` and `routerRtpCapabilities` carry.
    pub fn capabilities(&self) -> &RawJson {
        &self.capabilities
    }

    /// The first worker's UDP address: the configured one (`--media-listen`).
    pub fn local_addr(&self) -> SocketAddr {
        self.workers[0].local
    }

    /// The media counters, for `/metrics`.
    pub fn metrics(&self) -> &MediaMetrics {
        &self.metrics
    }

    /// Queues a request; the worker answers on the peer's outbox. A full queue refuses it
    /// at once with `limit_reached` rather than making the socket task wait.
    pub fn request(&self, request: Request) -> Result<(), (ErrorCode, &'static str)> {
        self.worker_for(request.peer, &request.room)
            .queue
            .try_send(Input::Request(request))
            .map_err(|_| {
                self.metrics.queue_full.inc();
                (
                    ErrorCode::LimitReached,
                    "the media server is busy: try again",
                )
            })
    }

    /// Every worker hears of a join: the peer's own worker (placed now) announces the
    /// room's producers, and a worker holding the peer's media from an older membership
    /// (another room) closes it.
    pub fn joined(&self, peer: PeerKey, room: RoomId, epoch: u32) {
        let home = self.placement().join(peer, &room, epoch, &self.load);
        for (index, worker) in self.workers.iter().enumerate() {
            let input = Input::Joined {
                peer,
                room: room.clone(),
                epoch,
                home: index == home,
            };
            worker.send(input, &self.metrics);
        }
    }

    /// Every worker hears of a leave; the one holding the peer's media closes it.
    pub fn left(&self, peer: PeerKey, epoch: u32) {
        self.placement().leave(peer, epoch);
        for worker in self.workers.iter() {
            worker.left(peer, epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomId {
        RoomId::parse(name).unwrap()
    }

    #[test]
    fn rooms_go_to_the_worker_with_the_fewest_members() {
        let none = RoomLoad::default();
        let mut placement = Placement::new(2, DEFAULT_ROOM_SPREAD);
        assert_eq!(placement.join(PeerKey(1), &room("a"), 1, &none), 0);
        assert_eq!(placement.join(PeerKey(2), &room("a"), 1, &none), 0);
        assert_eq!(placement.join(PeerKey(3), &room("b"), 1, &none), 1);
        // Worker 0 has two members, worker 1 one: the next room goes to 1.
        assert_eq!(placement.join(PeerKey(4), &room("c"), 1, &none), 1);
        assert_eq!(placement.join(PeerKey(5), &room("d"), 1, &none), 0);
        assert_eq!(placement.worker_of(&room("c")), Some(1));
        assert_eq!(placement.worker_of_peer(PeerKey(4)), Some(1));
        assert_eq!(placement.worker_of(&room("nobody")), None);
    }

    #[test]
    fn a_room_past_its_spread_takes_the_workers_with_fewest_of_its_members() {
        let none = RoomLoad::default();
        let mut placement = Placement::new(3, 2);
        let joined: Vec<usize> = (1..=8)
            .map(|peer| placement.join(PeerKey(peer), &room("big"), 1, &none))
            .collect();
        // Two on its first worker, then evened out over all three.
        assert_eq!(joined, [0, 0, 1, 2, 1, 2, 0, 1]);
        assert_eq!(placement.rooms[&room("big")].members, [3, 3, 2]);
        // A small room is not spread: it stays on one (the least loaded) worker.
        assert_eq!(placement.join(PeerKey(20), &room("small"), 1, &none), 2);
        assert_eq!(placement.join(PeerKey(21), &room("small"), 1, &none), 2);
        for peer in 1..=8 {
            placement.leave(PeerKey(peer), GONE);
        }
        assert_eq!(placement.worker_of(&room("big")), None);
        assert_eq!(placement.members, [0, 0, 2]);
    }

    #[test]
    fn a_room_whose_consumers_crowd_its_worker_spreads_however_few_its_members() {
        let load = RoomLoad::default();
        let mut placement = Placement::new(2, DEFAULT_ROOM_SPREAD);
        assert_eq!(placement.join(PeerKey(1), &room("meeting"), 1, &load), 0);
        assert_eq!(placement.join(PeerKey(2), &room("meeting"), 1, &load), 0);
        for _ in 0..SPREAD_CONSUMERS {
            load.opened(&room("meeting"), 0, 2);
        }
        // Two members, but as many consumers as a worker should carry: the next goes on.
        assert_eq!(placement.join(PeerKey(3), &room("meeting"), 1, &load), 1);
        load.closed(&room("meeting"), 0);
        assert_eq!(placement.join(PeerKey(4), &room("meeting"), 1, &load), 0);
        // Counts of a room with no consumers left are forgotten.
        for _ in 0..SPREAD_CONSUMERS {
            load.closed(&room("meeting"), 0);
        }
        assert!(load.counts().is_empty());
    }

    #[test]
    fn a_room_is_forgotten_with_its_last_member_and_stale_leaves_change_nothing() {
        let none = RoomLoad::default();
        let mut placement = Placement::new(2, DEFAULT_ROOM_SPREAD);
        placement.join(PeerKey(1), &room("a"), 1, &none);
        placement.join(PeerKey(2), &room("b"), 1, &none);
        // Peer 1 moves to b: a is empty, so forgotten.
        assert_eq!(placement.join(PeerKey(1), &room("b"), 2, &none), 1);
        assert_eq!(placement.worker_of(&room("a")), None);
        assert_eq!(placement.members, vec![0, 2]);
        // A leave of the older membership does not remove the newer one.
        placement.leave(PeerKey(1), 1);
        assert_eq!(placement.members, vec![0, 2]);
        placement.leave(PeerKey(1), 2);
        placement.leave(PeerKey(2), GONE);
        assert_eq!(placement.worker_of(&room("b")), None);
        assert_eq!(placement.members, vec![0, 0]);
        assert!(placement.peers.is_empty());
    }
}
