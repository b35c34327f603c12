//! The media worker: one thread, one UDP socket, every transport, producer and consumer.
//! Signaling reaches it through the bounded queue; datagrams through the socket; each `Rtc`'s
//! deadline through the timer set. Nothing here blocks: a datagram that cannot be sent is
//! dropped and counted.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::config::DtlsCert;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Rtc};
use switchboard_core::{
    ErrorEvent, Event, MediaEvent, MediaRequest, PeerKey, PeerName, RawJson, RoomId,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::caps;
use crate::params::{self, Direction, Kind};
use crate::transport::{Happening, Received, Transport};
use crate::{Input, MediaError, MediaLimits, MediaMetrics, Overflow, Request, Signaling};

/// At most one keyframe request per producer in this interval; the rest wait for its end.
const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);
/// A connected transport must reach DTLS within this time, or it has failed.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// Housekeeping: throttled keyframe requests, connect deadlines.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Datagrams handled per wake-up before timers and the queue get a turn.
const DATAGRAM_BATCH: usize = 64;
/// Source addresses remembered per transport (one per ICE candidate the client tries).
const ADDRS_PER_TRANSPORT: usize = 8;

struct Producer {
    owner: PeerKey,
    name: PeerName,
    room: RoomId,
    transport: u64,
    kind: Kind,
    mid: Mid,
    ssrc: Ssrc,
    consumers: Vec<u64>,
    last_keyframe_request: Option<Instant>,
    keyframe_wanted: bool,
    /// Its owner paused it (`pause-producer`): nothing of it is forwarded.
    paused: bool,
}

struct Consumer {
    owner: PeerKey,
    producer: u64,
    transport: u64,
    mid: Mid,
    ssrc: Ssrc,
    rebase: Option<Rebase>,
    /// The sequence number its next packet gets (one past the highest sent so far).
    next_seq: u64,
    /// Paused by its owner (`pause-consumer`): nothing is forwarded to it.
    paused: bool,
    /// Forwarding resumes after a pause: the next packet continues the consumer's sequence
    /// numbers where they stopped, so the receiver sees no gap to ask to be repaired.
    resync: bool,
    nacks: u64,
    keyframe_requests: u64,
}

/// One consumer's view of its producer's sequence numbers and timestamps: its own stream
/// starts at a random point below 2^15 whatever the producer's count is, so a consumer that
/// joins after the producer's sequence numbers wrapped still starts at SRTP rollover 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rebase {
    seq_in: u64,
    seq_out: u64,
    ts_in: u32,
    ts_out: u32,
}

impl Rebase {
    pub(crate) fn new(seq_in: u64, ts_in: u32, random: u32) -> Rebase {
        Rebase {
            seq_in,
            seq_out: u64::from(random & 0x7fff),
            ts_in,
            ts_out: random.rotate_left(16),
        }
    }

    /// The same timestamps, with the producer's sequence number `seq_in` becoming the
    /// consumer's `seq_out`: forwarding after a pause, the packets not forwarded leave no gap.
    /// Timestamps keep their mapping, as the producer's clock ran on.
    pub(crate) fn resumed(&self, seq_in: u64, seq_out: u64) -> Rebase {
        Rebase {
            seq_in,
            seq_out,
            ..*self
        }
    }

    /// The consumer's sequence number and timestamp for a producer packet, or `None` for a
    /// packet older than the consumer's first.
    pub(crate) fn map(&self, seq: u64, ts: u32) -> Option<(u64, u32)> {
        let offset = seq.checked_sub(self.seq_in)?;
        Some((
            self.seq_out + offset,
            self.ts_out.wrapping_add(ts.wrapping_sub(self.ts_in)),
        ))
    }
}

/// What one peer holds, under the membership (room, epoch) it holds it in.
struct PeerMedia {
    room: RoomId,
    name: PeerName,
    epoch: u32,
    transports: Vec<u64>,
    producers: Vec<u64>,
    consumers: Vec<u64>,
}

pub(crate) struct Worker {
    socket: Option<std::net::UdpSocket>,
    announce: SocketAddr,
    candidate_priority: u32,
    certificate: DtlsCert,
    fingerprint: (String, String),
    limits: MediaLimits,
    inbox: mpsc::Receiver<Input>,
    overflow: Arc<Overflow>,
    signaling: Arc<dyn Signaling>,
    metrics: MediaMetrics,
    transports: HashMap<u64, Transport>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    producers: HashMap<u64, Producer>,
    consumers: HashMap<u64, Consumer>,
    /// Producers of each room, in creation order.
    rooms: HashMap<RoomId, Vec<u64>>,
    peers: HashMap<PeerKey, PeerMedia>,
    timers: BTreeSet<(Instant, u64)>,
    happenings: VecDeque<Happening>,
    next_id: u64,
    /// Ids go up by the number of workers, each worker starting at its own index, so an id
    /// names one object whichever worker made it.
    id_step: u64,
}

type Reply = Result<(&'static str, Value), MediaError>;

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        announce: SocketAddr,
        certificate: DtlsCert,
        limits: MediaLimits,
        inbox: mpsc::Receiver<Input>,
        overflow: Arc<Overflow>,
        signaling: Arc<dyn Signaling>,
        metrics: MediaMetrics,
        (first_id, id_step): (u64, u64),
    ) -> Option<Worker> {
        // Every transport shares one certificate (as a mediasoup worker does), so its
        // fingerprint is computed once.
        let mut probe = Rtc::builder()
            .set_dtls_cert(certificate.clone())
            .build(Instant::now());
        let fingerprint = probe.direct_api().local_dtls_fingerprint().to_string();
        let (algorithm, value) = fingerprint.split_once(' ')?;
        let candidate_priority = Candidate::host(announce, "udp").ok()?.prio();
        Some(Worker {
            socket: Some(socket),
            announce,
            candidate_priority,
            certificate,
            fingerprint: (algorithm.to_owned(), value.to_owned()),
            limits,
            inbox,
            overflow,
            signaling,
            metrics,
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            rooms: HashMap::new(),
            peers: HashMap::new(),
            timers: BTreeSet::new(),
            happenings: VecDeque::new(),
            next_id: first_id,
            id_step,
        })
    }

    /// The thread's body: a current-thread runtime for the socket and the timers.
    pub(crate) fn run(self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build();
        match runtime {
            Ok(runtime) => runtime.block_on(self.serve()),
            Err(error) => tracing::error!(%error, "media worker cannot start its runtime"),
        }
    }

    async fn serve(mut self) {
        let Some(socket) = self.socket.take().and_then(|s| UdpSocket::from_std(s).ok()) else {
            tracing::error!("media worker cannot register its socket");
            return;
        };
        let mut buffer = vec![0u8; 2048];
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        let overflow = self.overflow.clone();
        loop {
            let next = self
                .timers
                .first()
                .map_or_else(|| Instant::now() + HOUSEKEEPING, |&(at, _)| at);
            tokio::select! {
                biased;
                input = self.inbox.recv() => match input {
                    Some(input) => self.input(&socket, input),
                    None => break,
                },
                () = overflow.wake.notified() => {}
                received = socket.recv_from(&mut buffer) => {
                    if let Ok((len, source)) = received {
                        self.datagram(&socket, Instant::now(), source, &buffer[..len]);
                        for _ in 1..DATAGRAM_BATCH {
                            match socket.try_recv_from(&mut buffer) {
                                Ok((len, source)) => {
                                    self.datagram(&socket, Instant::now(), source, &buffer[..len]);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
                _ = housekeeping.tick() => self.housekeeping(&socket, Instant::now()),
            }
            for (peer, epoch) in overflow.take() {
                self.left(&socket, peer, epoch);
            }
            self.timeouts(&socket, Instant::now());
            self.reap(&socket);
        }
        let all: Vec<u64> = self.transports.keys().copied().collect();
        for id in all {
            self.close_transport(&socket, id);
        }
    }

    fn input(&mut self, socket: &UdpSocket, input: Input) {
        match input {
            Input::Request(request) => self.request(socket, request),
            Input::Joined { peer, room, epoch } => self.joined(peer, room, epoch, socket),
            Input::Left { peer, epoch } => self.left(socket, peer, epoch),
        }
    }

    // ---- membership ----

    /// The peer's media entry for this membership: a newer membership first closes what the
    /// older one held; a request from an older one is refused.
    fn member(
        &mut self,
        socket: &UdpSocket,
        peer: PeerKey,
        room: &RoomId,
        name: &PeerName,
        epoch: u32,
    ) -> Result<(), MediaError> {
        if !self.signaling.is_member(peer, room) {
            return Err(MediaError::NotInRoom);
        }
        match self.peers.get(&peer) {
            Some(media) if media.epoch > epoch => return Err(MediaError::NotInRoom),
            Some(media) if media.epoch == epoch && media.room == *room => return Ok(()),
            Some(_) => self.close_everything(socket, peer),
            None => {}
        }
        self.peers.insert(
            peer,
            PeerMedia {
                room: room.clone(),
                name: name.clone(),
                epoch,
                transports: Vec::new(),
                producers: Vec::new(),
                consumers: Vec::new(),
            },
        );
        Ok(())
    }

    fn joined(&mut self, peer: PeerKey, room: RoomId, epoch: u32, socket: &UdpSocket) {
        if self.peers.get(&peer).is_some_and(|m| m.epoch < epoch) {
            self.close_everything(socket, peer);
            self.peers.remove(&peer);
        }
        if !self.signaling.is_member(peer, &room) {
            return;
        }
        for id in self.rooms.get(&room).into_iter().flatten() {
            if let Some(producer) = self.producers.get(id) {
                if producer.owner != peer {
                    self.signaling
                        .tell(peer, notice("new-producer", new_producer(*id, producer)));
                }
            }
        }
    }

    fn left(&mut self, socket: &UdpSocket, peer: PeerKey, epoch: u32) {
        if self.peers.get(&peer).is_some_and(|m| m.epoch <= epoch) {
            self.close_everything(socket, peer);
            self.peers.remove(&peer);
        }
    }

    // ---- requests ----

    fn request(&mut self, socket: &UdpSocket, request: Request) {
        let Request {
            peer,
            room,
            name,
            epoch,
            request: kind,
            data,
            rid,
        } = request;
        let reply = match self.member(socket, peer, &room, &name, epoch) {
            Err(error) => Err(error),
            Ok(()) => {
                let data = data.as_str();
                match kind {
                    MediaRequest::RouterCapabilities => Ok((
                        "routerRtpCapabilities",
                        json!({"rtpCapabilities": caps::router_capabilities()}),
                    )),
                    MediaRequest::CreateTransport => self.create_transport(socket, peer, data),
                    MediaRequest::ConnectTransport => self.connect_transport(socket, peer, data),
                    MediaRequest::Produce => self.produce(socket, peer, data),
                    MediaRequest::Consume => self.consume(socket, peer, data),
                    MediaRequest::PauseProducer => self.pause_producer(socket, peer, data, true),
                    MediaRequest::ResumeProducer => self.pause_producer(socket, peer, data, false),
                    MediaRequest::PauseConsumer => self.pause_consumer(socket, peer, data, true),
                    MediaRequest::ResumeConsumer => self.pause_consumer(socket, peer, data, false),
                    MediaRequest::CloseProducer => self.close_producer_request(socket, peer, data),
                }
            }
        };
        let event = match reply {
            Ok((kind, data)) => media_event(kind, &data, rid),
            Err(error) => Event::Error(Box::new(ErrorEvent {
                code: error.code(),
                message: Arc::from(error.to_string()),
                rid,
            })),
        };
        self.signaling.tell(peer, event);
    }

    fn media(&mut self, peer: PeerKey) -> Result<&mut PeerMedia, MediaError> {
        self.peers.get_mut(&peer).ok_or(MediaError::NotInRoom)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += self.id_step;
        id
    }

    /// The peer's own transport named `id` on the wire (`t<n>`).
    fn owned_transport(&self, peer: PeerKey, id: &str) -> Result<u64, MediaError> {
        parse_id(id, 't')
            .filter(|n| self.transports.get(n).is_some_and(|t| t.owner == peer))
            .ok_or_else(|| MediaError::TransportNotFound(id.to_owned()))
    }

    /// The peer's own producer named `id` on the wire (`p<n>`).
    fn owned_producer(&self, peer: PeerKey, id: &str) -> Result<u64, MediaError> {
        parse_id(id, 'p')
            .filter(|n| self.producers.get(n).is_some_and(|p| p.owner == peer))
            .ok_or_else(|| MediaError::ProducerNotFound(id.to_owned()))
    }

    fn create_transport(&mut self, socket: &UdpSocket, peer: PeerKey, data: &str) -> Reply {
        let request: params::CreateTransport = params::parse(data)?;
        let cap = self.limits.transports_per_user;
        if self.media(peer)?.transports.len() >= cap {
            return Err(MediaError::LimitReached("transports per user"));
        }
        let id = self.next_id();
        let transport = Transport::new(
            id,
            peer,
            request.direction,
            &self.certificate,
            self.announce,
            Instant::now(),
        );
        let ice = json!({
            "usernameFragment": transport.local.ufrag,
            "password": transport.local.pass,
            "iceLite": true,
        });
        self.by_ufrag.insert(transport.local.ufrag.clone(), id);
        self.transports.insert(id, transport);
        self.media(peer)?.transports.push(id);
        self.metrics.transports.inc();
        self.drain(socket, id);
        let address = self.announce.ip().to_string();
        Ok((
            "webRtcTransportCreated",
            json!({
                "id": format!("t{id}"),
                "direction": request.direction,
                "iceParameters": ice,
                "iceCandidates": [{
                    "foundation": "udpcandidate",
                    "priority": self.candidate_priority,
                    "ip": address,
                    "address": address,
                    "protocol": "udp",
                    "port": self.announce.port(),
                    "type": "host",
                }],
                "dtlsParameters": {
                    "role": "auto",
                    "fingerprints": [{"algorithm": self.fingerprint.0, "value": self.fingerprint.1}],
                },
            }),
        ))
    }

    fn connect_transport(&mut self, socket: &UdpSocket, peer: PeerKey, data: &str) -> Reply {
        let request: params::ConnectTransport = params::parse(data)?;
        let id = self.owned_transport(peer, &request.transport_id)?;
        let fingerprint = request.dtls_parameters.fingerprint()?;
        let active = request.dtls_parameters.we_are_client();
        let transport = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| MediaError::TransportNotFound(request.transport_id.clone()))?;
        if !transport.connect(fingerprint, active) {
            return Err(MediaError::bad("the transport is already connected"));
        }
        transport.connect_by = Some(Instant::now() + CONNECT_WITHIN);
        self.drain(socket, id);
        Ok((
            "transportConnected",
            json!({"transportId": request.transport_id}),
        ))
    }

    fn produce(&mut self, socket: &UdpSocket, peer: PeerKey, data: &str) -> Reply {
        let request: params::Produce = params::parse(data)?;
        let stream = request.stream()?;
        let id = self.owned_transport(peer, &request.transport_id)?;
        let media = self.media(peer)?;
        let (room, name) = (media.room.clone(), media.name.clone());
        if media.producers.len() >= self.limits.producers_per_user {
            return Err(MediaError::LimitReached("producers per user"));
        }
        if self.rooms.get(&room).map_or(0, Vec::len) >= self.limits.producers_per_room {
            return Err(MediaError::LimitReached("producers per room"));
        }
        let announce = self.announce;
        let producer_id = self.next_id();
        let transport = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| MediaError::TransportNotFound(request.transport_id.clone()))?;
        if transport.direction != Direction::Send {
            return Err(MediaError::bad("produce needs a send transport"));
        }
        let mid = Mid::from(stream.mid.as_str());
        if transport.mids.contains(&mid) {
            return Err(MediaError::bad("rtpParameters.mid is already in use"));
        }
        let ssrc = Ssrc::from(stream.ssrc);
        if transport.producers.iter().any(|(s, _)| *s == ssrc) {
            return Err(MediaError::bad("the SSRC is already in use"));
        }
        let mut replay = Vec::new();
        if transport.is_built() {
            if !transport.has_payload_type(stream.payload_type) {
                return Err(MediaError::bad(
                    "payload type differs from this transport's first producer's",
                ));
            }
        } else {
            let extensions = &request.rtp_parameters.header_extensions;
            replay = transport.build_send(
                |config| caps::send_config(config, request.kind, &stream, extensions),
                announce,
                Instant::now(),
            );
        }
        let rtx = stream.rtx_ssrc.map(Ssrc::from);
        if !transport.declare(mid, request.kind.media_kind(), ssrc, rtx, true) {
            return Err(MediaError::bad("the transport refused the stream"));
        }
        transport.producers.push((ssrc, producer_id));
        for (source, datagram) in replay {
            self.datagram(socket, Instant::now(), source, &datagram);
        }
        self.drain(socket, id);
        let producer = Producer {
            owner: peer,
            name,
            room: room.clone(),
            transport: id,
            kind: request.kind,
            mid,
            ssrc,
            consumers: Vec::new(),
            last_keyframe_request: None,
            keyframe_wanted: false,
            paused: false,
        };
        let announcement = notice("new-producer", new_producer(producer_id, &producer));
        self.producers.insert(producer_id, producer);
        self.rooms
            .entry(room.clone())
            .or_default()
            .push(producer_id);
        self.media(peer)?.producers.push(producer_id);
        self.metrics.producers.inc();
        self.signaling.tell_room(&room, peer, announcement);
        if let Some(producer) = self.producers.get(&producer_id) {
            let id = format!("p{producer_id}");
            let kind = request.kind.as_str();
            self.signaling
                .producer(&room, &producer.name, &id, kind, true);
        }
        Ok((
            "produced",
            json!({"id": format!("p{producer_id}"), "kind": request.kind}),
        ))
    }

    fn consume(&mut self, socket: &UdpSocket, peer: PeerKey, data: &str) -> Reply {
        let request: params::Consume = params::parse(data)?;
        let id = self.owned_transport(peer, &request.transport_id)?;
        let media = self.media(peer)?;
        let room = media.room.clone();
        let consumer_count = media.consumers.len();
        let producer_id = parse_id(&request.producer_id, 'p')
            .filter(|n| self.producers.get(n).is_some_and(|p| p.room == room))
            .ok_or_else(|| MediaError::ProducerNotFound(request.producer_id.clone()))?;
        let kind = self.producers[&producer_id].kind;
        let producer_paused = self.producers[&producer_id].paused;
        if !caps::can_consume(kind, &request.rtp_capabilities.codecs) {
            return Err(MediaError::CannotConsume(match kind {
                Kind::Audio => "the capabilities lack audio/opus 48000/2",
                Kind::Video => "the capabilities lack video/VP8",
            }));
        }
        if consumer_count >= self.limits.consumers_per_user {
            return Err(MediaError::LimitReached("consumers per user"));
        }
        let consumer_id = self.next_id();
        let transport = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| MediaError::TransportNotFound(request.transport_id.clone()))?;
        if transport.direction != Direction::Recv {
            return Err(MediaError::bad("consume needs a receive transport"));
        }
        let mid = transport.next_mid();
        let ssrc = transport.new_ssrc();
        let rtx = match kind {
            Kind::Video => transport.new_ssrc(),
            Kind::Audio => None,
        };
        let Some(ssrc) = ssrc else {
            return Err(MediaError::bad("the transport has failed"));
        };
        if !transport.declare(mid, kind.media_kind(), ssrc, rtx, false) {
            return Err(MediaError::bad("the transport refused the stream"));
        }
        let connected = transport.connected;
        transport.consumers.push((mid, consumer_id));
        self.drain(socket, id);
        self.consumers.insert(
            consumer_id,
            Consumer {
                owner: peer,
                producer: producer_id,
                transport: id,
                mid,
                ssrc,
                rebase: None,
                next_seq: 0,
                paused: false,
                resync: false,
                nacks: 0,
                keyframe_requests: 0,
            },
        );
        if let Some(producer) = self.producers.get_mut(&producer_id) {
            producer.consumers.push(consumer_id);
        }
        self.media(peer)?.consumers.push(consumer_id);
        self.metrics.consumers.inc();
        if connected {
            self.request_keyframe(socket, producer_id, Instant::now());
        }
        let parameters = caps::consumer_parameters(kind, &mid, *ssrc, rtx.map(|rtx| *rtx));
        Ok((
            "consumed",
            json!({
                "id": format!("c{consumer_id}"),
                "producerId": request.producer_id,
                "producerPaused": producer_paused,
                "kind": kind,
                "rtpParameters": parameters,
            }),
        ))
    }

    /// `pause-consumer` (`paused`) or `resume-consumer`. Consumers start active; resuming
    /// one asks for a keyframe, so its picture starts now.
    fn pause_consumer(
        &mut self,
        socket: &UdpSocket,
        peer: PeerKey,
        data: &str,
        paused: bool,
    ) -> Reply {
        let request: params::OfConsumer = params::parse(data)?;
        let consumer = parse_id(&request.consumer_id, 'c')
            .and_then(|n| self.consumers.get_mut(&n))
            .filter(|c| c.owner == peer)
            .ok_or_else(|| MediaError::ConsumerNotFound(request.consumer_id.clone()))?;
        consumer.resync |= consumer.paused && !paused;
        consumer.paused = paused;
        let producer = consumer.producer;
        if !paused {
            self.request_keyframe(socket, producer, Instant::now());
        }
        let reply = if paused {
            "consumerPaused"
        } else {
            "consumerResumed"
        };
        Ok((reply, json!({"consumerId": request.consumer_id})))
    }

    /// `pause-producer` (`paused`) or `resume-producer`, by the producer's owner: its
    /// consumers are told (`consumer-paused`, `consumer-resumed`), and a resumed video
    /// producer is asked for a keyframe.
    fn pause_producer(
        &mut self,
        socket: &UdpSocket,
        peer: PeerKey,
        data: &str,
        paused: bool,
    ) -> Reply {
        let request: params::OfProducer = params::parse(data)?;
        let id = self.owned_producer(peer, &request.producer_id)?;
        let (reply, notice_kind) = if paused {
            ("producerPaused", "consumer-paused")
        } else {
            ("producerResumed", "consumer-resumed")
        };
        let answer = Ok((reply, json!({"producerId": request.producer_id})));
        let Some(producer) = self.producers.get_mut(&id).filter(|p| p.paused != paused) else {
            return answer; // already so: nothing changes, nobody is told
        };
        producer.paused = paused;
        for consumer_id in producer.consumers.clone() {
            let Some(consumer) = self.consumers.get_mut(&consumer_id) else {
                continue;
            };
            consumer.resync |= !paused;
            self.signaling.tell(
                consumer.owner,
                notice(
                    notice_kind,
                    json!({"consumerId": format!("c{consumer_id}"), "producerId": request.producer_id}),
                ),
            );
        }
        if !paused {
            self.request_keyframe(socket, id, Instant::now());
        }
        answer
    }

    fn close_producer_request(&mut self, socket: &UdpSocket, peer: PeerKey, data: &str) -> Reply {
        let request: params::OfProducer = params::parse(data)?;
        let id = self.owned_producer(peer, &request.producer_id)?;
        self.close_producer(socket, id);
        Ok(("producerClosed", json!({"producerId": request.producer_id})))
    }

    // ---- closing ----

    fn close_everything(&mut self, socket: &UdpSocket, peer: PeerKey) {
        let Some(media) = self.peers.get_mut(&peer) else {
            return;
        };
        let transports = std::mem::take(&mut media.transports);
        for id in transports {
            self.close_transport(socket, id);
        }
    }

    fn close_producer(&mut self, socket: &UdpSocket, id: u64) {
        let Some(producer) = self.producers.remove(&id) else {
            return;
        };
        self.metrics.producers.dec();
        self.signaling.producer(
            &producer.room,
            &producer.name,
            &format!("p{id}"),
            producer.kind.as_str(),
            false,
        );
        if let Some(list) = self.rooms.get_mut(&producer.room) {
            list.retain(|p| *p != id);
            if list.is_empty() {
                self.rooms.remove(&producer.room);
            }
        }
        if let Some(media) = self.peers.get_mut(&producer.owner) {
            media.producers.retain(|p| *p != id);
        }
        if let Some(transport) = self.transports.get_mut(&producer.transport) {
            transport.producers.retain(|(_, p)| *p != id);
            transport.remove(producer.mid);
            self.drain(socket, producer.transport);
        }
        for consumer_id in producer.consumers {
            if let Some(owner) = self.close_consumer(socket, consumer_id) {
                self.signaling.tell(
                    owner,
                    notice(
                        "producer-closed",
                        json!({"producerId": format!("p{id}"), "consumerId": format!("c{consumer_id}")}),
                    ),
                );
            }
        }
    }

    /// Closes a consumer; returns its owner.
    fn close_consumer(&mut self, socket: &UdpSocket, id: u64) -> Option<PeerKey> {
        let consumer = self.consumers.remove(&id)?;
        self.metrics.consumers.dec();
        if let Some(producer) = self.producers.get_mut(&consumer.producer) {
            producer.consumers.retain(|c| *c != id);
        }
        if let Some(media) = self.peers.get_mut(&consumer.owner) {
            media.consumers.retain(|c| *c != id);
        }
        if let Some(transport) = self.transports.get_mut(&consumer.transport) {
            transport.consumers.retain(|(_, c)| *c != id);
            transport.remove(consumer.mid);
            self.drain(socket, consumer.transport);
        }
        Some(consumer.owner)
    }

    fn close_transport(&mut self, socket: &UdpSocket, id: u64) {
        let Some(transport) = self.transports.get(&id) else {
            return;
        };
        let producers: Vec<u64> = transport.producers.iter().map(|&(_, p)| p).collect();
        let consumers: Vec<u64> = transport.consumers.iter().map(|&(_, c)| c).collect();
        for producer in producers {
            self.close_producer(socket, producer);
        }
        for consumer in consumers {
            self.close_consumer(socket, consumer);
        }
        let Some(mut transport) = self.transports.remove(&id) else {
            return;
        };
        self.metrics.transports.dec();
        transport.close();
        let mut ignored = VecDeque::new();
        transport.drain(socket, &self.metrics, &mut ignored);
        self.by_ufrag.remove(&transport.local.ufrag);
        for addr in &transport.addrs {
            if self.by_addr.get(addr) == Some(&id) {
                self.by_addr.remove(addr);
            }
        }
        if let Some(deadline) = transport.deadline {
            self.timers.remove(&(deadline, id));
        }
        if let Some(media) = self.peers.get_mut(&transport.owner) {
            media.transports.retain(|t| *t != id);
        }
    }

    /// Closes everything the owner of a failed transport holds (the contract: a failed
    /// transport ends that user's media; its client starts over).
    fn reap(&mut self, socket: &UdpSocket) {
        let failed: Vec<(u64, PeerKey)> = self
            .transports
            .values()
            .filter(|t| t.failed)
            .map(|t| (t.id, t.owner))
            .collect();
        for (id, owner) in failed {
            self.metrics.transport_failures.inc();
            tracing::debug!(
                transport = id,
                "media transport failed; closing the user's media"
            );
            self.close_everything(socket, owner);
            self.close_transport(socket, id); // in case its owner's entry is already gone
        }
    }

    // ---- the media path ----

    fn datagram(&mut self, socket: &UdpSocket, now: Instant, source: SocketAddr, data: &[u8]) {
        self.metrics.packets_in.inc();
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let stun = stun_usernames(data);
        let id = match &stun {
            Some((local, _)) => self.by_ufrag.get(local),
            None => self.by_addr.get(&source),
        };
        let Some(&id) = id else {
            self.metrics.dropped.inc();
            return;
        };
        let Some(transport) = self.transports.get_mut(&id) else {
            self.metrics.dropped.inc();
            return;
        };
        let received = transport.receive(
            now,
            source,
            self.announce,
            data,
            stun.as_ref().map(|(_, r)| r.as_str()),
        );
        match received {
            Received::Accepted => {
                if stun.is_some()
                    && !transport.addrs.contains(&source)
                    && transport.addrs.len() < ADDRS_PER_TRANSPORT
                {
                    transport.addrs.push(source);
                    self.by_addr.insert(source, id);
                }
                self.drain(socket, id);
            }
            Received::Buffered => {}
            Received::Refused => {
                self.metrics.dropped.inc();
            }
        }
    }

    /// Drains one transport, reschedules its timer, and handles what it said.
    fn drain(&mut self, socket: &UdpSocket, id: u64) {
        let Some(transport) = self.transports.get_mut(&id) else {
            return;
        };
        let deadline = transport.drain(socket, &self.metrics, &mut self.happenings);
        reschedule(&mut self.timers, transport, deadline);
        while let Some(happening) = self.happenings.pop_front() {
            self.happen(socket, happening);
        }
    }

    fn happen(&mut self, socket: &UdpSocket, happening: Happening) {
        match happening {
            Happening::Rtp(transport, packet) => self.forward(socket, transport, &packet),
            Happening::Connected(id) => {
                let Some(transport) = self.transports.get_mut(&id) else {
                    return;
                };
                transport.connected = true;
                transport.connect_by = None;
                let producers: Vec<u64> = transport
                    .consumers
                    .iter()
                    .filter_map(|(_, c)| self.consumers.get(c).map(|c| c.producer))
                    .collect();
                for producer in producers {
                    self.request_keyframe(socket, producer, Instant::now());
                }
            }
            Happening::KeyframeRequest(id, mid) => {
                self.metrics.keyframe_requests_in.inc();
                let consumer = self
                    .consumer_at(id, mid)
                    .and_then(|c| self.consumers.get(&c));
                if let Some(producer) = consumer.map(|c| c.producer) {
                    self.request_keyframe(socket, producer, Instant::now());
                }
            }
            Happening::Egress(id, mid, nacks, keyframe_requests) => {
                let consumer = self.consumer_at(id, mid);
                if let Some(consumer) = consumer.and_then(|c| self.consumers.get_mut(&c)) {
                    let new_nacks = nacks.saturating_sub(consumer.nacks);
                    consumer.nacks = consumer.nacks.max(nacks);
                    consumer.keyframe_requests = consumer.keyframe_requests.max(keyframe_requests);
                    self.metrics.nacks.inc_by(new_nacks);
                }
            }
        }
    }

    /// The consumer on `transport` with `mid`, by id.
    fn consumer_at(&self, transport: u64, mid: Mid) -> Option<u64> {
        let transport = self.transports.get(&transport)?;
        let &(_, id) = transport.consumers.iter().find(|(m, _)| *m == mid)?;
        Some(id)
    }

    /// Writes a producer's packet to each of its connected consumers: the router's payload
    /// type, the consumer's own sequence numbers and timestamps, and only the header
    /// extensions that describe the media (mid, rid and transport-cc belong to each hop).
    fn forward(&mut self, socket: &UdpSocket, from: u64, packet: &RtpPacket) {
        let Some(transport) = self.transports.get(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some(&(_, producer_id)) = transport.producers.iter().find(|(s, _)| *s == ssrc) else {
            return;
        };
        let Some(producer) = self.producers.get(&producer_id) else {
            return;
        };
        if producer.paused {
            return;
        }
        let kind = producer.kind;
        let pt = Pt::from(caps::router_codec(kind).payload_type());
        let header = &packet.header;
        let extensions = ExtensionValues {
            audio_level: header.ext_vals.audio_level,
            voice_activity: header.ext_vals.voice_activity,
            video_orientation: header.ext_vals.video_orientation,
            ..ExtensionValues::default()
        };
        let seq = *packet.seq_no;
        let mut starting = false;
        for &consumer_id in &producer.consumers {
            let Some(consumer) = self.consumers.get_mut(&consumer_id) else {
                continue;
            };
            if consumer.paused {
                continue;
            }
            let Some(transport) = self.transports.get_mut(&consumer.transport) else {
                continue;
            };
            if !transport.connected {
                continue;
            }
            let rebase = match consumer.rebase {
                Some(rebase) if consumer.resync => rebase.resumed(seq, consumer.next_seq),
                Some(rebase) => rebase,
                None => {
                    starting = true;
                    Rebase::new(seq, header.timestamp, *Ssrc::new())
                }
            };
            consumer.rebase = Some(rebase);
            consumer.resync = false;
            let Some((out_seq, out_ts)) = rebase.map(seq, header.timestamp) else {
                continue;
            };
            consumer.next_seq = consumer.next_seq.max(out_seq + 1);
            let write = RtpWrite::new(
                pt,
                SeqNo::from(out_seq),
                out_ts,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(header.marker)
            .ext_vals(extensions.clone())
            .nackable(kind == Kind::Video);
            let consumer_ssrc = consumer.ssrc;
            let written = transport.guard(|rtc| {
                rtc.direct_api()
                    .stream_tx(&consumer_ssrc)
                    .map(|stream| stream.write_rtp(write))
                    .is_some()
            });
            if written == Some(true) {
                self.metrics.rtp_forwarded.inc();
            }
            let deadline = transport.drain(socket, &self.metrics, &mut self.happenings);
            reschedule(&mut self.timers, transport, deadline);
        }
        // A consumer's first packet is rarely a keyframe: ask for one so its picture starts.
        if starting {
            self.request_keyframe(socket, producer_id, Instant::now());
        }
        // Consumers' events (keyframe requests, stats) are handled after the fan-out.
        while let Some(happening) = self.happenings.pop_front() {
            self.happen(socket, happening);
        }
    }

    /// Asks a video producer for a keyframe, at most once per throttle interval; a request
    /// inside the interval is remembered and sent when it ends.
    fn request_keyframe(&mut self, socket: &UdpSocket, id: u64, now: Instant) {
        let Some(producer) = self.producers.get_mut(&id) else {
            return;
        };
        if producer.kind != Kind::Video {
            return;
        }
        if producer
            .last_keyframe_request
            .is_some_and(|at| now.duration_since(at) < KEYFRAME_THROTTLE)
        {
            producer.keyframe_wanted = true;
            return;
        }
        producer.last_keyframe_request = Some(now);
        producer.keyframe_wanted = false;
        let (transport_id, ssrc) = (producer.transport, producer.ssrc);
        let Some(transport) = self.transports.get_mut(&transport_id) else {
            return;
        };
        let sent = transport.guard(|rtc| {
            rtc.direct_api()
                .stream_rx(&ssrc)
                .map(|stream| stream.request_keyframe(KeyframeRequestKind::Pli))
                .is_some()
        });
        if sent == Some(true) {
            self.metrics.keyframe_requests_out.inc();
        }
        self.drain(socket, transport_id);
    }

    fn timeouts(&mut self, socket: &UdpSocket, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(transport) = self.transports.get_mut(&id) {
                transport.deadline = None;
                transport.timeout(now);
                self.drain(socket, id);
            }
        }
    }

    fn housekeeping(&mut self, socket: &UdpSocket, now: Instant) {
        let wanted: Vec<u64> = self
            .producers
            .iter()
            .filter(|(_, p)| p.keyframe_wanted)
            .map(|(&id, _)| id)
            .collect();
        for id in wanted {
            self.request_keyframe(socket, id, now);
        }
        for transport in self.transports.values_mut() {
            if transport.connect_by.is_some_and(|by| by <= now) && !transport.connected {
                tracing::debug!(
                    transport = transport.id,
                    "media transport did not connect in time"
                );
                transport.failed = true;
            }
        }
    }
}

/// Keeps the timer set in step with a transport's deadline. A deadline already past is
/// moved a millisecond ahead, so a transport cannot spin the loop.
fn reschedule(
    timers: &mut BTreeSet<(Instant, u64)>,
    transport: &mut Transport,
    next: Option<Instant>,
) {
    let next = next.map(|at| at.max(Instant::now() + Duration::from_millis(1)));
    if transport.deadline == next {
        return;
    }
    if let Some(old) = transport.deadline {
        timers.remove(&(old, transport.id));
    }
    if let Some(at) = next {
        timers.insert((at, transport.id));
    }
    transport.deadline = next;
}

fn notice(kind: &'static str, data: Value) -> Event {
    media_event(kind, &data, None)
}

/// A media reply or notice, its `data` encoded once for every receiver.
fn media_event(kind: &'static str, data: &Value, rid: Option<RawJson>) -> Event {
    Event::Media(Box::new(MediaEvent {
        kind,
        data: RawJson::new(&data.to_string()),
        rid,
    }))
}

fn new_producer(id: u64, producer: &Producer) -> Value {
    json!({
        "producerId": format!("p{id}"),
        "user": producer.name.as_str(),
        "kind": producer.kind,
    })
}

/// `t12` → 12, for the prefix given.
fn parse_id(text: &str, prefix: char) -> Option<u64> {
    text.strip_prefix(prefix)?.parse().ok()
}

/// The (local, remote) ufrags of a STUN binding request, or `None` for anything else. The
/// cheap header check keeps the STUN parser off the RTP path.
fn stun_usernames(data: &[u8]) -> Option<(String, String)> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    if data.len() < 20 || data[0] > 1 || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    let message = str0m::ice::StunMessage::parse(data).ok()?;
    if !message.is_binding_request() {
        return None;
    }
    let (local, remote) = message.split_username()?;
    Some((local.to_owned(), remote.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rebasing_starts_low_and_keeps_the_spacing() {
        // A producer past 2^16 packets: the consumer still starts below 2^15 (rollover 0).
        let rebase = Rebase::new(70_000, 4_000_000_000, 0xdead_beef);
        let (first, ts) = rebase.map(70_000, 4_000_000_000).unwrap();
        assert!(first < 0x8000);
        let (later, later_ts) = rebase
            .map(70_010, 4_000_000_000u32.wrapping_add(900_000))
            .unwrap();
        assert_eq!(later - first, 10);
        assert_eq!(later_ts.wrapping_sub(ts), 900_000);
        assert_eq!(rebase.map(69_999, 0), None);
    }

    #[test]
    fn ids_need_their_prefix() {
        assert_eq!(parse_id("t12", 't'), Some(12));
        assert_eq!(parse_id("p12", 't'), None);
        assert_eq!(parse_id("t", 't'), None);
        assert_eq!(parse_id("t-1", 't'), None);
    }

    #[test]
    fn only_binding_requests_are_read_as_stun() {
        assert_eq!(stun_usernames(&[0x80; 100]), None); // RTP
        assert_eq!(stun_usernames(&[0x16; 100]), None); // DTLS
        let mut fake = vec![0u8; 20];
        fake[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(stun_usernames(&fake), None); // a cookie, but no binding request
    }
}
