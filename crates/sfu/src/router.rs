//! The media router, without I/O: rooms, transports, producers, consumers, the rewriting
//! of each forwarded packet and the keyframe policy. It never reads a clock or touches a
//! socket: each call is given the time, datagrams come in as byte slices, and what it sends
//! waits in [`Router::outgoing`] for the driver (`worker.rs`) to write. So the whole media
//! path runs in tests in simulated time, with str0m clients on the other side of a `Vec`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::config::DtlsCert;
use str0m::media::{KeyframeRequestKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Rtc};
use switchboard_core::{
    ErrorEvent, Event, MediaEvent, MediaRequest, PeerKey, PeerName, RawJson, RoomId,
};

use crate::caps;
use crate::ids::{ConsumerId, IdMap, Ids, ProducerId, TransportId};
use crate::params::{self, Direction, Encodings, Kind};
use crate::transport::{Egress, Happening, Received, Transport};
use crate::{Input, MediaError, MediaLimits, MediaMetrics, Request, RoomLoad, Seat, Signaling};

/// At most one keyframe request per producer in this interval; the rest wait for its end.
const KEYFRAME_THROTTLE: Duration = Duration::from_millis(500);
/// A connected transport must reach DTLS within this time, or it has failed.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// Packets forwarded to a consumer within this window leave together, in one pass over its
/// transport when it ends. A video frame's packets arrive as a burst, so str0m's per-pass
/// work (its clock, ICE, DTLS and RTCP polling) is paid about once per frame rather than
/// once per packet. The price is at most this much added latency.
pub(crate) const SEND_WINDOW: Duration = Duration::from_millis(1);
/// How often [`Router::housekeeping`] wants to run: throttled keyframe requests, connect
/// deadlines.
pub(crate) const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Source addresses remembered per transport (one per ICE candidate the client tries).
const ADDRS_PER_TRANSPORT: usize = 8;
/// A simulcast layer with no packet for this long is taken to be off (the browser stops
/// sending a layer its bandwidth or CPU cannot carry): its consumers move to another.
const LAYER_IDLE: Duration = Duration::from_secs(2);
/// A consumer whose receiver reports more loss than this moves down a simulcast layer...
const LOSS_TOO_HIGH: f32 = 0.10;
/// ...and tries the next layer up again after this long.
const LOSS_BACKOFF: Duration = Duration::from_secs(10);

/// A datagram for the driver to send.
#[derive(Debug)]
pub(crate) struct Datagram {
    pub(crate) to: SocketAddr,
    pub(crate) contents: Vec<u8>,
}

/// What one worker tells another about a room whose members' media is on both (a room too
/// big for one worker is spread, `Placement`): a producer's owner's worker tells every other
/// of it, pipes its packets to those with consumers of it, and is asked for its keyframes.
#[derive(Debug, Clone)]
pub(crate) enum Pipe {
    /// A producer opened on worker `origin`.
    Opened {
        origin: usize,
        id: ProducerId,
        owner: PeerKey,
        name: PeerName,
        room: RoomId,
        kind: Kind,
        codec: caps::RouterCodec,
        layers: usize,
        paused: bool,
    },
    /// It closed.
    Closed(ProducerId),
    /// Its owner paused or resumed it.
    Paused(ProducerId, bool),
    /// Worker `from` has consumers of it (`true`) or no more (`false`).
    Wanted {
        id: ProducerId,
        from: usize,
        wanted: bool,
    },
    /// A consumer on another worker asks for a keyframe.
    Keyframe(ProducerId),
    /// One of its packets, from `layer`.
    Packet {
        id: ProducerId,
        layer: usize,
        packet: Piped,
    },
}

/// What a consumer is written from: a producer's packet, here or piped from another worker.
#[derive(Debug, Clone)]
pub(crate) struct Piped {
    seq: u64,
    timestamp: u32,
    marker: bool,
    arrived: Instant,
    extensions: ExtensionValues,
    payload: Arc<[u8]>,
}

impl Piped {
    fn of(packet: &RtpPacket) -> Piped {
        let header = &packet.header;
        Piped {
            seq: *packet.seq_no,
            timestamp: header.timestamp,
            marker: header.marker,
            arrived: packet.timestamp,
            // Only the extensions that describe the media: mid, rid and transport-cc
            // belong to each hop.
            extensions: ExtensionValues {
                audio_level: header.ext_vals.audio_level,
                voice_activity: header.ext_vals.voice_activity,
                video_orientation: header.ext_vals.video_orientation,
                ..ExtensionValues::default()
            },
            payload: packet.payload.clone(),
        }
    }
}

/// Where a producer's packets come from.
enum Origin {
    /// Its owner's send transport on this worker, and its mid there; `pipes` are the
    /// workers that have consumers of it.
    Local {
        transport: TransportId,
        mid: Mid,
        pipes: Vec<usize>,
    },
    /// Piped from the worker that holds it.
    Remote(usize),
}

struct Producer {
    owner: PeerKey,
    name: PeerName,
    room: RoomId,
    origin: Origin,
    kind: Kind,
    codec: caps::RouterCodec,
    /// Its one stream, or its simulcast layers, lowest first.
    layers: Vec<Layer>,
    consumers: Vec<ConsumerId>,
    last_keyframe_request: Option<Instant>,
    keyframe_wanted: bool,
    /// Its owner paused it (`pause-producer`): nothing of it is forwarded.
    paused: bool,
}

/// One stream of a producer: its only one, or one simulcast layer.
struct Layer {
    /// The rid that names a simulcast layer.
    rid: Option<Rid>,
    /// Known from `produce` for a single stream; learnt from its first packet for a layer.
    ssrc: Option<Ssrc>,
    /// When its last packet arrived.
    last_packet: Option<Instant>,
}

struct Consumer {
    owner: PeerKey,
    /// Its producer's room (counted in `RoomLoad`).
    room: RoomId,
    producer: ProducerId,
    transport: TransportId,
    mid: Mid,
    ssrc: Ssrc,
    rebase: Option<Rebase>,
    /// The producer layer forwarded to it: always 0 for a single stream; for simulcast,
    /// none until a keyframe of its target layer arrives.
    layer: Option<usize>,
    /// The layer it should get; it moves there at that layer's next keyframe.
    target: usize,
    /// The layer its owner asked for (`preferredLayers`; `usize::MAX`, the top, by default).
    preferred: usize,
    /// The highest layer its receiver's loss allows, and since when.
    ceiling: usize,
    ceiling_since: Instant,
    /// The last timestamp it was sent, and when: a new layer's timestamps carry on from it.
    last_timestamp: u32,
    last_sent: Instant,
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

    /// A move to another simulcast layer, at its packet `seq_in` with timestamp `ts_in`: the
    /// consumer's sequence numbers carry on at `seq_out` and its timestamps at `ts_out`.
    pub(crate) fn switched(seq_in: u64, seq_out: u64, ts_in: u32, ts_out: u32) -> Rebase {
        Rebase {
            seq_in,
            seq_out,
            ts_in,
            ts_out,
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
    transports: Vec<TransportId>,
    producers: Vec<ProducerId>,
    consumers: Vec<ConsumerId>,
}

pub(crate) struct Router {
    /// This worker's index, and how many there are.
    worker: usize,
    workers: usize,
    /// Every room's consumers per worker: this one counts its own.
    load: Arc<RoomLoad>,
    announce: SocketAddr,
    candidate_priority: u32,
    certificate: DtlsCert,
    fingerprint: (String, String),
    limits: MediaLimits,
    signaling: Arc<dyn Signaling>,
    metrics: MediaMetrics,
    transports: IdMap<TransportId, Transport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<SocketAddr, TransportId>,
    producers: IdMap<ProducerId, Producer>,
    consumers: IdMap<ConsumerId, Consumer>,
    /// Producers of each room, in creation order.
    rooms: HashMap<RoomId, Vec<ProducerId>>,
    peers: HashMap<PeerKey, PeerMedia>,
    timers: BTreeSet<(Instant, TransportId)>,
    happenings: VecDeque<Happening>,
    /// Consumer transports written to in this send window, and when the window ends.
    written: Vec<TransportId>,
    send_at: Option<Instant>,
    ids: Ids,
    /// The time of the call being handled, as its caller gave it.
    now: Instant,
    /// Datagrams to send, in order. The driver empties it after every call; one call adds at
    /// most what one event fans out to (bounded by the per-room and per-user limits).
    pub(crate) outgoing: Vec<Datagram>,
    /// What to tell other workers, by index: emptied by the driver as `outgoing` is.
    pub(crate) piped: Vec<(usize, Pipe)>,
}

type Reply = Result<(&'static str, Value), MediaError>;

impl Router {
    /// The router of the worker at `seat` (its ids are that worker's, `Ids`), announcing
    /// `announce` in its candidates. `None` when the certificate's fingerprint cannot be read.
    pub(crate) fn new(
        seat: Seat,
        announce: SocketAddr,
        certificate: DtlsCert,
        limits: MediaLimits,
        signaling: Arc<dyn Signaling>,
        metrics: MediaMetrics,
        now: Instant,
    ) -> Option<Router> {
        // Every transport shares one certificate (as a mediasoup worker does), so its
        // fingerprint is computed once.
        let mut probe = Rtc::builder().set_dtls_cert(certificate.clone()).build(now);
        let fingerprint = probe.direct_api().local_dtls_fingerprint().to_string();
        let (algorithm, value) = fingerprint.split_once(' ')?;
        let candidate_priority = Candidate::host(announce, "udp").ok()?.prio();
        let Seat {
            index: worker,
            count: workers,
            load,
        } = seat;
        Some(Router {
            worker,
            workers,
            load,
            announce,
            candidate_priority,
            certificate,
            fingerprint: (algorithm.to_owned(), value.to_owned()),
            limits,
            signaling,
            metrics,
            transports: IdMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            producers: IdMap::default(),
            consumers: IdMap::default(),
            rooms: HashMap::new(),
            peers: HashMap::new(),
            timers: BTreeSet::new(),
            happenings: VecDeque::new(),
            written: Vec::new(),
            send_at: None,
            ids: Ids::new(worker as u64, workers as u64),
            now,
            outgoing: Vec::new(),
            piped: Vec::new(),
        })
    }

    /// When the router next wants [`Router::timeouts`] called, if it waits for anything.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        let transport = self.timers.first().map(|&(at, _)| at);
        match (transport, self.send_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes every transport (the worker is stopping); their DTLS close goes out.
    pub(crate) fn close_all(&mut self, now: Instant) {
        self.now = now;
        let all: Vec<TransportId> = self.transports.keys().copied().collect();
        for id in all {
            self.close_transport(id);
        }
    }

    /// A signaling input: a request, or a membership change.
    pub(crate) fn input(&mut self, now: Instant, input: Input) {
        self.now = now;
        match input {
            Input::Request(request) => self.request(request),
            Input::Joined {
                peer,
                room,
                epoch,
                home,
            } => self.joined(peer, room, epoch, home),
            Input::Pipe(pipe) => self.pipe(pipe),
            Input::Left { peer, epoch } => self.left(peer, epoch),
        }
    }

    // ---- other workers ----

    /// Queues news of a producer here for every other worker.
    fn tell_other_workers(&mut self, pipe: Pipe) {
        for other in (0..self.workers).filter(|&w| w != self.worker) {
            self.piped.push((other, pipe.clone()));
        }
    }

    fn pipe(&mut self, pipe: Pipe) {
        match pipe {
            Pipe::Opened {
                origin,
                id,
                owner,
                name,
                room,
                kind,
                codec,
                layers,
                paused,
            } => {
                let mirror = Producer {
                    owner,
                    name,
                    room: room.clone(),
                    origin: Origin::Remote(origin),
                    kind,
                    codec,
                    layers: (0..layers)
                        .map(|_| Layer {
                            rid: None,
                            ssrc: None,
                            last_packet: None,
                        })
                        .collect(),
                    consumers: Vec::new(),
                    last_keyframe_request: None,
                    keyframe_wanted: false,
                    paused,
                };
                self.producers.insert(id, mirror);
                self.rooms.entry(room).or_default().push(id);
            }
            Pipe::Closed(id) => self.close_producer(id),
            Pipe::Paused(id, paused) => self.producer_paused(id, paused),
            Pipe::Wanted { id, from, wanted } => {
                if let Some(Producer {
                    origin: Origin::Local { pipes, .. },
                    ..
                }) = self.producers.get_mut(&id)
                {
                    pipes.retain(|&w| w != from);
                    if wanted {
                        pipes.push(from);
                    }
                }
            }
            Pipe::Keyframe(id) => self.request_keyframe(id),
            Pipe::Packet { id, layer, packet } => self.fan_out(id, layer, &packet),
        }
    }

    // ---- membership ----

    /// The peer's media entry for this membership: a newer membership first closes what the
    /// older one held; a request from an older one is refused.
    fn member(
        &mut self,
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
            Some(_) => self.close_everything(peer),
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

    fn joined(&mut self, peer: PeerKey, room: RoomId, epoch: u32, home: bool) {
        if self.peers.get(&peer).is_some_and(|m| m.epoch < epoch) {
            self.close_everything(peer);
            self.peers.remove(&peer);
        }
        // Its own worker announces every producer of the room, piped ones too.
        if !home || !self.signaling.is_member(peer, &room) {
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

    fn left(&mut self, peer: PeerKey, epoch: u32) {
        if self.peers.get(&peer).is_some_and(|m| m.epoch <= epoch) {
            self.close_everything(peer);
            self.peers.remove(&peer);
        }
    }

    // ---- requests ----

    fn request(&mut self, request: Request) {
        let Request {
            peer,
            room,
            name,
            epoch,
            request: kind,
            data,
            rid,
        } = request;
        let reply = match self.member(peer, &room, &name, epoch) {
            Err(error) => Err(error),
            Ok(()) => {
                let data = data.as_str();
                match kind {
                    MediaRequest::RouterCapabilities => Ok((
                        "routerRtpCapabilities",
                        json!({"rtpCapabilities": caps::router_capabilities()}),
                    )),
                    MediaRequest::CreateTransport => self.create_transport(peer, data),
                    MediaRequest::ConnectTransport => self.connect_transport(peer, data),
                    MediaRequest::Produce => self.produce(peer, data),
                    MediaRequest::Consume => self.consume(peer, data),
                    MediaRequest::PauseProducer => self.pause_producer(peer, data, true),
                    MediaRequest::ResumeProducer => self.pause_producer(peer, data, false),
                    MediaRequest::PauseConsumer => self.pause_consumer(peer, data, true),
                    MediaRequest::ResumeConsumer => self.pause_consumer(peer, data, false),
                    MediaRequest::CloseProducer => self.close_producer_request(peer, data),
                    MediaRequest::SetPreferredLayers => self.set_preferred_layers(peer, data),
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

    /// The peer's own transport named `id` on the wire (`t<n>`).
    fn owned_transport(&self, peer: PeerKey, id: &str) -> Result<TransportId, MediaError> {
        TransportId::parse(id)
            .filter(|n| self.transports.get(n).is_some_and(|t| t.owner == peer))
            .ok_or_else(|| MediaError::TransportNotFound(id.to_owned()))
    }

    /// Transport `id` (written `wire` in the request), which must carry media `direction`.
    fn transport_for(
        &mut self,
        id: TransportId,
        wire: &str,
        direction: Direction,
    ) -> Result<&mut Transport, MediaError> {
        let transport = self
            .transports
            .get_mut(&id)
            .ok_or_else(|| MediaError::TransportNotFound(wire.to_owned()))?;
        if transport.direction != direction {
            return Err(MediaError::bad(match direction {
                Direction::Send => "produce needs a send transport",
                Direction::Recv => "consume needs a receive transport",
            }));
        }
        Ok(transport)
    }

    /// The peer's own producer named `id` on the wire (`p<n>`).
    fn owned_producer(&self, peer: PeerKey, id: &str) -> Result<ProducerId, MediaError> {
        ProducerId::parse(id)
            .filter(|n| self.producers.get(n).is_some_and(|p| p.owner == peer))
            .ok_or_else(|| MediaError::ProducerNotFound(id.to_owned()))
    }

    fn create_transport(&mut self, peer: PeerKey, data: &str) -> Reply {
        let request: params::CreateTransport = params::parse(data)?;
        let cap = self.limits.transports_per_user;
        if self.media(peer)?.transports.len() >= cap {
            return Err(MediaError::LimitReached("transports per user"));
        }
        let id = self.ids.take();
        let transport = Transport::new(
            id,
            peer,
            request.direction,
            &self.certificate,
            self.announce,
            self.now,
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
        self.drain(id);
        let address = self.announce.ip().to_string();
        Ok((
            "webRtcTransportCreated",
            json!({
                "id": id.to_string(),
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

    fn connect_transport(&mut self, peer: PeerKey, data: &str) -> Reply {
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
        transport.connect_by = Some(self.now + CONNECT_WITHIN);
        self.drain(id);
        Ok((
            "transportConnected",
            json!({"transportId": request.transport_id}),
        ))
    }

    fn produce(&mut self, peer: PeerKey, data: &str) -> Reply {
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
        let (announce, now) = (self.announce, self.now);
        let producer_id = self.ids.take();
        let transport = self.transport_for(id, &request.transport_id, Direction::Send)?;
        let mid = Mid::from(stream.mid.as_str());
        if transport.mids.contains(&mid) {
            return Err(MediaError::bad("rtpParameters.mid is already in use"));
        }
        if let Encodings::Single { ssrc, .. } = stream.encodings {
            if transport.producers.iter().any(|(s, _, _)| **s == ssrc) {
                return Err(MediaError::bad("the SSRC is already in use"));
            }
        }
        let mut replay = Vec::new();
        let extensions = &request.rtp_parameters.header_extensions;
        match &transport.extensions {
            Some(map) => {
                if !transport.has_payload_type(stream.payload_type) {
                    return Err(MediaError::bad(
                        "payload type differs from this transport's first producer's",
                    ));
                }
                if !caps::extensions_fit(map, extensions) {
                    return Err(MediaError::bad(
                        "header extension IDs differ from this transport's first producer's",
                    ));
                }
            }
            None => {
                let map = caps::send_extensions(extensions);
                replay = transport.build_send(
                    |config| caps::send_config(config, &stream, &map),
                    announce,
                    now,
                );
                transport.extensions = Some(map);
            }
        }
        let layers = match &stream.encodings {
            &Encodings::Single { ssrc, rtx_ssrc } => {
                let (ssrc, rtx) = (Ssrc::from(ssrc), rtx_ssrc.map(Ssrc::from));
                if !transport.declare(mid, request.kind.media_kind(), ssrc, rtx, true) {
                    return Err(MediaError::bad("the transport refused the stream"));
                }
                transport.producers.push((ssrc, producer_id, 0));
                vec![Layer {
                    rid: None,
                    ssrc: Some(ssrc),
                    last_packet: None,
                }]
            }
            Encodings::Simulcast(rids) => {
                if !transport.declare_simulcast(mid, rids) {
                    return Err(MediaError::bad("the transport refused the stream"));
                }
                transport.simulcast.push((mid, producer_id));
                rids.iter()
                    .map(|rid| Layer {
                        rid: Some(Rid::from(rid.as_str())),
                        ssrc: None,
                        last_packet: None,
                    })
                    .collect()
            }
        };
        for (source, datagram) in replay {
            self.datagram(source, &datagram);
        }
        self.drain(id);
        let layer_count = layers.len();
        let producer = Producer {
            owner: peer,
            name: name.clone(),
            room: room.clone(),
            origin: Origin::Local {
                transport: id,
                mid,
                pipes: Vec::new(),
            },
            kind: request.kind,
            codec: stream.codec,
            layers,
            consumers: Vec::new(),
            last_keyframe_request: None,
            keyframe_wanted: false,
            paused: false,
        };
        let announcement = notice("new-producer", new_producer(producer_id, &producer));
        self.tell_other_workers(Pipe::Opened {
            origin: self.worker,
            id: producer_id,
            owner: peer,
            name,
            room: room.clone(),
            kind: request.kind,
            codec: stream.codec,
            layers: layer_count,
            paused: false,
        });
        self.producers.insert(producer_id, producer);
        self.rooms
            .entry(room.clone())
            .or_default()
            .push(producer_id);
        self.media(peer)?.producers.push(producer_id);
        self.metrics.producers.inc();
        self.signaling.tell_room(&room, peer, announcement);
        if let Some(producer) = self.producers.get(&producer_id) {
            let id = producer_id.to_string();
            let kind = request.kind.as_str();
            self.signaling
                .producer(&room, &producer.name, &id, kind, true);
        }
        let shape = match stream.encodings {
            Encodings::Single { .. } => "simple",
            Encodings::Simulcast(_) => "simulcast",
        };
        Ok((
            "produced",
            json!({"id": producer_id.to_string(), "kind": request.kind, "type": shape}),
        ))
    }

    fn consume(&mut self, peer: PeerKey, data: &str) -> Reply {
        let request: params::Consume = params::parse(data)?;
        let id = self.owned_transport(peer, &request.transport_id)?;
        let media = self.media(peer)?;
        let room = media.room.clone();
        let consumer_count = media.consumers.len();
        let producer_id = ProducerId::parse(&request.producer_id)
            .filter(|n| self.producers.get(n).is_some_and(|p| p.room == room))
            .ok_or_else(|| MediaError::ProducerNotFound(request.producer_id.clone()))?;
        let producer = &self.producers[&producer_id];
        let (kind, codec, producer_paused) = (producer.kind, producer.codec, producer.paused);
        let layers = producer.layers.len();
        let preferred = request
            .preferred_layers
            .map_or(usize::MAX, |p| usize::from(p.spatial_layer));
        if !caps::can_consume(codec, &request.rtp_capabilities.codecs) {
            return Err(MediaError::CannotConsume(match codec {
                caps::RouterCodec::Opus => "the capabilities lack audio/opus 48000/2",
                caps::RouterCodec::Vp8 => "the capabilities lack video/VP8",
                caps::RouterCodec::H264 => {
                    "the capabilities lack video/H264 in packetization mode 1, baseline profile"
                }
            }));
        }
        if consumer_count >= self.limits.consumers_per_user {
            return Err(MediaError::LimitReached("consumers per user"));
        }
        let consumer_id = self.ids.take();
        let transport = self.transport_for(id, &request.transport_id, Direction::Recv)?;
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
        self.drain(id);
        self.consumers.insert(
            consumer_id,
            Consumer {
                owner: peer,
                room: room.clone(),
                producer: producer_id,
                transport: id,
                mid,
                ssrc,
                rebase: None,
                layer: (layers == 1).then_some(0),
                target: 0,
                preferred,
                ceiling: usize::MAX,
                ceiling_since: self.now,
                last_timestamp: 0,
                last_sent: self.now,
                next_seq: 0,
                paused: false,
                resync: false,
                nacks: 0,
                keyframe_requests: 0,
            },
        );
        // Its first layer: asked for with the keyframe every new consumer asks for.
        if let Some(target) = self.pick_layer(consumer_id) {
            if let Some(consumer) = self.consumers.get_mut(&consumer_id) {
                consumer.target = target;
            }
        }
        if let Some(producer) = self.producers.get_mut(&producer_id) {
            producer.consumers.push(consumer_id);
            if let (Origin::Remote(origin), 1) = (&producer.origin, producer.consumers.len()) {
                let wanted = Pipe::Wanted {
                    id: producer_id,
                    from: self.worker,
                    wanted: true,
                };
                self.piped.push((*origin, wanted));
            }
        }
        self.media(peer)?.consumers.push(consumer_id);
        self.metrics.consumers.inc();
        self.load.opened(&room, self.worker, self.workers);
        if connected {
            self.request_keyframe(producer_id);
        }
        let parameters = caps::consumer_parameters(codec, &mid, *ssrc, rtx.map(|rtx| *rtx));
        Ok((
            "consumed",
            json!({
                "id": consumer_id.to_string(),
                "producerId": request.producer_id,
                "producerPaused": producer_paused,
                "kind": kind,
                "rtpParameters": parameters,
                "type": if layers > 1 { "simulcast" } else { "simple" },
                "layers": layers,
                "preferredLayers": {"spatialLayer": preferred.min(layers - 1)},
            }),
        ))
    }

    /// `set-preferred-layers`: the simulcast layer a consumer's owner would rather have. It
    /// gets the highest active layer at or below it (and below what its loss allows), from
    /// that layer's next keyframe. A single-stream consumer takes it and stays as it is.
    fn set_preferred_layers(&mut self, peer: PeerKey, data: &str) -> Reply {
        let request: params::SetPreferredLayers = params::parse(data)?;
        let id = ConsumerId::parse(&request.consumer_id)
            .filter(|n| self.consumers.get(n).is_some_and(|c| c.owner == peer))
            .ok_or_else(|| MediaError::ConsumerNotFound(request.consumer_id.clone()))?;
        let consumer = self
            .consumers
            .get_mut(&id)
            .ok_or_else(|| MediaError::ConsumerNotFound(request.consumer_id.clone()))?;
        consumer.preferred = usize::from(request.spatial_layer);
        let top = self
            .producers
            .get(&consumer.producer)
            .map_or(0, |p| p.layers.len() - 1);
        self.retarget(id);
        Ok((
            "preferredLayersSet",
            json!({"consumerId": request.consumer_id,
                   "spatialLayer": usize::from(request.spatial_layer).min(top)}),
        ))
    }

    /// The layer a consumer should get: the highest active layer at or below both its
    /// preferred layer and its loss ceiling, else the lowest active one; with none active
    /// yet, the preferred one. `None` for an unknown consumer.
    fn pick_layer(&self, id: ConsumerId) -> Option<usize> {
        let consumer = self.consumers.get(&id)?;
        let layers = &self.producers.get(&consumer.producer)?.layers;
        let limit = consumer.preferred.min(consumer.ceiling);
        let active = |layer: &Layer| {
            layer
                .last_packet
                .is_some_and(|at| self.now.duration_since(at) < LAYER_IDLE)
        };
        let target = (0..layers.len())
            .rev()
            .find(|&i| i <= limit && active(&layers[i]))
            .or_else(|| layers.iter().position(active))
            .unwrap_or_else(|| limit.min(layers.len() - 1));
        Some(target)
    }

    /// Moves a consumer's target to the layer it should get now; a new target is asked for a
    /// keyframe, where the consumer will move to it.
    fn retarget(&mut self, id: ConsumerId) {
        let Some(target) = self.pick_layer(id) else {
            return;
        };
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return;
        };
        let producer_id = consumer.producer;
        if consumer.target == target {
            return;
        }
        consumer.target = target;
        if consumer.layer != Some(target) {
            self.request_keyframe(producer_id);
        }
    }

    /// `pause-consumer` (`paused`) or `resume-consumer`. Consumers start active; resuming
    /// one asks for a keyframe, so its picture starts now.
    fn pause_consumer(&mut self, peer: PeerKey, data: &str, paused: bool) -> Reply {
        let request: params::OfConsumer = params::parse(data)?;
        let consumer = ConsumerId::parse(&request.consumer_id)
            .and_then(|n| self.consumers.get_mut(&n))
            .filter(|c| c.owner == peer)
            .ok_or_else(|| MediaError::ConsumerNotFound(request.consumer_id.clone()))?;
        consumer.resync |= consumer.paused && !paused;
        consumer.paused = paused;
        let producer = consumer.producer;
        if !paused {
            self.request_keyframe(producer);
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
    fn pause_producer(&mut self, peer: PeerKey, data: &str, paused: bool) -> Reply {
        let request: params::OfProducer = params::parse(data)?;
        let id = self.owned_producer(peer, &request.producer_id)?;
        let reply = if paused {
            "producerPaused"
        } else {
            "producerResumed"
        };
        let answer = Ok((reply, json!({"producerId": request.producer_id})));
        if self.producers.get(&id).is_none_or(|p| p.paused == paused) {
            return answer; // already so: nothing changes, nobody is told
        }
        self.tell_other_workers(Pipe::Paused(id, paused));
        self.producer_paused(id, paused);
        answer
    }

    /// Tells a paused or resumed producer's consumers here (`consumer-paused`,
    /// `consumer-resumed`); a resumed video producer is asked for a keyframe.
    fn producer_paused(&mut self, id: ProducerId, paused: bool) {
        let notice_kind = if paused {
            "consumer-paused"
        } else {
            "consumer-resumed"
        };
        let Some(producer) = self.producers.get_mut(&id) else {
            return;
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
                    json!({"consumerId": consumer_id.to_string(), "producerId": id.to_string()}),
                ),
            );
        }
        if !paused {
            self.request_keyframe(id);
        }
    }

    fn close_producer_request(&mut self, peer: PeerKey, data: &str) -> Reply {
        let request: params::OfProducer = params::parse(data)?;
        let id = self.owned_producer(peer, &request.producer_id)?;
        self.close_producer(id);
        Ok(("producerClosed", json!({"producerId": request.producer_id})))
    }

    // ---- closing ----

    fn close_everything(&mut self, peer: PeerKey) {
        let Some(media) = self.peers.get_mut(&peer) else {
            return;
        };
        let transports = std::mem::take(&mut media.transports);
        for id in transports {
            self.close_transport(id);
        }
    }

    fn close_producer(&mut self, id: ProducerId) {
        let Some(producer) = self.producers.remove(&id) else {
            return;
        };
        if let Origin::Local { transport, mid, .. } = producer.origin {
            self.metrics.producers.dec();
            self.signaling.producer(
                &producer.room,
                &producer.name,
                &id.to_string(),
                producer.kind.as_str(),
                false,
            );
            self.tell_other_workers(Pipe::Closed(id));
            if let Some(send) = self.transports.get_mut(&transport) {
                send.producers.retain(|(_, p, _)| *p != id);
                send.simulcast.retain(|(_, p)| *p != id);
                send.remove(mid);
                self.drain(transport);
            }
        }
        if let Some(list) = self.rooms.get_mut(&producer.room) {
            list.retain(|p| *p != id);
            if list.is_empty() {
                self.rooms.remove(&producer.room);
            }
        }
        if let Some(media) = self.peers.get_mut(&producer.owner) {
            media.producers.retain(|p| *p != id);
        }
        for consumer_id in producer.consumers {
            if let Some(owner) = self.close_consumer(consumer_id) {
                self.signaling.tell(
                    owner,
                    notice(
                        "producer-closed",
                        json!({"producerId": id.to_string(), "consumerId": consumer_id.to_string()}),
                    ),
                );
            }
        }
    }

    /// Closes a consumer; returns its owner.
    fn close_consumer(&mut self, id: ConsumerId) -> Option<PeerKey> {
        let consumer = self.consumers.remove(&id)?;
        self.metrics.consumers.dec();
        self.load.closed(&consumer.room, self.worker);
        if let Some(producer) = self.producers.get_mut(&consumer.producer) {
            producer.consumers.retain(|c| *c != id);
            // A piped producer's worker stops piping to a worker with none of its consumers.
            if let (Origin::Remote(origin), true) =
                (&producer.origin, producer.consumers.is_empty())
            {
                let unwanted = Pipe::Wanted {
                    id: consumer.producer,
                    from: self.worker,
                    wanted: false,
                };
                self.piped.push((*origin, unwanted));
            }
        }
        if let Some(media) = self.peers.get_mut(&consumer.owner) {
            media.consumers.retain(|c| *c != id);
        }
        if let Some(transport) = self.transports.get_mut(&consumer.transport) {
            transport.consumers.retain(|(_, c)| *c != id);
            transport.remove(consumer.mid);
            self.drain(consumer.transport);
        }
        Some(consumer.owner)
    }

    fn close_transport(&mut self, id: TransportId) {
        let Some(transport) = self.transports.get(&id) else {
            return;
        };
        let mut producers: Vec<ProducerId> =
            transport.producers.iter().map(|&(_, p, _)| p).collect();
        producers.extend(transport.simulcast.iter().map(|&(_, p)| p));
        let consumers: Vec<ConsumerId> = transport.consumers.iter().map(|&(_, c)| c).collect();
        for producer in producers {
            self.close_producer(producer);
        }
        for consumer in consumers {
            self.close_consumer(consumer);
        }
        let Some(mut transport) = self.transports.remove(&id) else {
            return;
        };
        self.metrics.transports.dec();
        transport.close();
        let mut ignored = VecDeque::new();
        transport.drain(&mut self.outgoing, &mut ignored);
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
    fn reap(&mut self) {
        let failed: Vec<(TransportId, PeerKey)> = self
            .transports
            .values()
            .filter(|t| t.failed)
            .map(|t| (t.id, t.owner))
            .collect();
        for (id, owner) in failed {
            self.metrics.transport_failures.inc();
            tracing::debug!(
                transport = %id,
                "media transport failed; closing the user's media"
            );
            self.close_everything(owner);
            self.close_transport(id); // in case its owner's entry is already gone
        }
    }

    // ---- the media path ----

    /// Datagrams that arrived together, each with its source.
    // Never inlined: a profiler (callgrind's --toggle-collect) can then count the router's
    // work apart from its caller's.
    #[inline(never)]
    pub(crate) fn datagrams<'a>(
        &mut self,
        now: Instant,
        batch: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        self.now = now;
        for (source, data) in batch {
            self.datagram(source, data);
        }
    }

    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let now = self.now;
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
                self.drain(id);
            }
            Received::Buffered => {}
            Received::Refused => {
                self.metrics.dropped.inc();
            }
        }
    }

    /// Sends what was written to consumers in the send window that ends now: one pass over
    /// each transport written to (str0m queues a written packet until its clock moves).
    fn send_written(&mut self) {
        self.send_at = None;
        while let Some(id) = self.written.pop() {
            if let Some(transport) = self.transports.get_mut(&id) {
                transport.written = false;
                transport.timeout(self.now);
                self.drain(id);
            }
        }
    }

    /// Drains one transport, reschedules its timer, and handles what it said.
    fn drain(&mut self, id: TransportId) {
        let Some(transport) = self.transports.get_mut(&id) else {
            return;
        };
        let deadline = transport.drain(&mut self.outgoing, &mut self.happenings);
        reschedule(&mut self.timers, transport, deadline, self.now);
        while let Some(happening) = self.happenings.pop_front() {
            self.happen(happening);
        }
    }

    fn happen(&mut self, happening: Happening) {
        match happening {
            Happening::Rtp(transport, packet) => self.forward(transport, &packet),
            Happening::Connected(id) => {
                let Some(transport) = self.transports.get_mut(&id) else {
                    return;
                };
                transport.connected = true;
                transport.connect_by = None;
                let producers: Vec<ProducerId> = transport
                    .consumers
                    .iter()
                    .filter_map(|(_, c)| self.consumers.get(c).map(|c| c.producer))
                    .collect();
                for producer in producers {
                    self.request_keyframe(producer);
                }
            }
            Happening::KeyframeRequest(id, mid) => {
                self.metrics.keyframe_requests_in.inc();
                let consumer = self
                    .consumer_at(id, mid)
                    .and_then(|c| self.consumers.get(&c));
                if let Some(producer) = consumer.map(|c| c.producer) {
                    self.request_keyframe(producer);
                }
            }
            Happening::Egress(id, mid, egress) => {
                let Some(consumer_id) = self.consumer_at(id, mid) else {
                    return;
                };
                let Some(consumer) = self.consumers.get_mut(&consumer_id) else {
                    return;
                };
                let Egress {
                    nacks,
                    keyframe_requests,
                    loss,
                } = egress;
                let new_nacks = nacks.saturating_sub(consumer.nacks);
                consumer.nacks = consumer.nacks.max(nacks);
                consumer.keyframe_requests = consumer.keyframe_requests.max(keyframe_requests);
                self.metrics.nacks.inc_by(new_nacks);
                // A receiver losing too much of a simulcast layer moves down one, for now.
                if let Some(layer @ 1..) = consumer.layer {
                    if loss.is_some_and(|loss| loss > LOSS_TOO_HIGH) && consumer.ceiling >= layer {
                        consumer.ceiling = layer - 1;
                        consumer.ceiling_since = self.now;
                        self.retarget(consumer_id);
                    }
                }
            }
        }
    }

    /// The consumer on `transport` with `mid`, by id.
    fn consumer_at(&self, transport: TransportId, mid: Mid) -> Option<ConsumerId> {
        let transport = self.transports.get(&transport)?;
        let &(_, id) = transport.consumers.iter().find(|(m, _)| *m == mid)?;
        Some(id)
    }

    /// A producer's packet from its transport: piped to the workers with consumers of it,
    /// and written to its consumers here.
    fn forward(&mut self, from: TransportId, packet: &RtpPacket) {
        let Some(transport) = self.transports.get(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let known = transport
            .producers
            .iter()
            .find(|(s, _, _)| *s == ssrc)
            .map(|&(_, producer, layer)| (producer, layer));
        let Some((producer_id, layer)) = known.or_else(|| self.learn_layer(from, ssrc)) else {
            return;
        };
        let packet = Piped::of(packet);
        if let Some(producer) = self.producers.get(&producer_id) {
            if let (Origin::Local { pipes, .. }, false) = (&producer.origin, producer.paused) {
                for &worker in pipes {
                    let piped = Pipe::Packet {
                        id: producer_id,
                        layer,
                        packet: packet.clone(),
                    };
                    self.piped.push((worker, piped));
                }
            }
        }
        self.fan_out(producer_id, layer, &packet);
    }

    /// Writes a packet of a producer's `layer` to each of its connected consumers here: the
    /// router's payload type, the consumer's own sequence numbers and timestamps, and only
    /// the header extensions that describe the media. A simulcast layer's packet goes to the
    /// consumers on that layer, and starts a consumer on it if it is that consumer's target
    /// and a keyframe begins here.
    fn fan_out(&mut self, producer_id: ProducerId, layer: usize, packet: &Piped) {
        let now = self.now;
        let Some(producer) = self.producers.get_mut(&producer_id) else {
            return;
        };
        if let Some(stream) = producer.layers.get_mut(layer) {
            stream.last_packet = Some(now);
        }
        if producer.paused {
            return;
        }
        let (kind, codec) = (producer.kind, producer.codec);
        let simulcast = producer.layers.len() > 1;
        let pt = Pt::from(codec.payload_type());
        let seq = packet.seq;
        let mut starting = false;
        let mut keyframe = None;
        let mut moved = Vec::new();
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
            if consumer.layer != Some(layer) {
                if consumer.target != layer
                    || !*keyframe.get_or_insert_with(|| codec.starts_keyframe(&packet.payload))
                {
                    continue;
                }
                // Onto this layer, at its keyframe: sequence numbers and timestamps carry on
                // from the last packet sent, as if the stream had never changed.
                if consumer.rebase.is_some() {
                    let elapsed = now.saturating_duration_since(consumer.last_sent);
                    let ticks = elapsed.as_micros() * u128::from(codec.clock_rate()) / 1_000_000;
                    let ticks = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
                    consumer.rebase = Some(Rebase::switched(
                        seq,
                        consumer.next_seq,
                        packet.timestamp,
                        consumer.last_timestamp.wrapping_add(ticks),
                    ));
                    consumer.resync = false;
                }
                consumer.layer = Some(layer);
                moved.push((consumer.owner, consumer_id));
            }
            let rebase = match consumer.rebase {
                Some(rebase) if consumer.resync => rebase.resumed(seq, consumer.next_seq),
                Some(rebase) => rebase,
                None => {
                    // A simulcast consumer starts on a keyframe; any other asks for one.
                    starting |= !simulcast;
                    Rebase::new(seq, packet.timestamp, *Ssrc::new())
                }
            };
            consumer.rebase = Some(rebase);
            consumer.resync = false;
            let Some((out_seq, out_ts)) = rebase.map(seq, packet.timestamp) else {
                continue;
            };
            consumer.next_seq = consumer.next_seq.max(out_seq + 1);
            consumer.last_timestamp = out_ts;
            consumer.last_sent = now;
            let write = RtpWrite::new(
                pt,
                SeqNo::from(out_seq),
                out_ts,
                packet.arrived,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(packet.extensions.clone())
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
                if !transport.written {
                    transport.written = true;
                    self.written.push(consumer.transport);
                    self.send_at.get_or_insert(self.now + SEND_WINDOW);
                }
            }
        }
        for (owner, consumer_id) in moved {
            self.signaling.tell(
                owner,
                notice(
                    "consumer-layers-changed",
                    json!({"consumerId": consumer_id.to_string(), "spatialLayer": layer}),
                ),
            );
        }
        // A consumer's first packet is rarely a keyframe: ask for one so its picture starts.
        if starting {
            self.request_keyframe(producer_id);
        }
        // Consumers' events (keyframe requests, stats) are handled after the fan-out.
        while let Some(happening) = self.happenings.pop_front() {
            self.happen(happening);
        }
    }

    /// A simulcast layer's SSRC, from its first packet: str0m found the stream by the rid the
    /// packet named, among the rids the producer declared. A layer whose SSRC changes (the
    /// browser restarted its encoder) keeps only the newest.
    fn learn_layer(&mut self, from: TransportId, ssrc: Ssrc) -> Option<(ProducerId, usize)> {
        let transport = self.transports.get_mut(&from)?;
        if transport.simulcast.is_empty() {
            return None;
        }
        let (mid, rid) = transport
            .guard(|rtc| {
                let mut api = rtc.direct_api();
                let stream = api.stream_rx(&ssrc)?;
                Some((stream.mid(), stream.rid()?))
            })
            .flatten()?;
        let &(_, producer_id) = transport.simulcast.iter().find(|(m, _)| *m == mid)?;
        let producer = self.producers.get_mut(&producer_id)?;
        let index = producer.layers.iter().position(|l| l.rid == Some(rid))?;
        if let Some(old) = producer.layers[index].ssrc.replace(ssrc) {
            transport.producers.retain(|(s, _, _)| *s != old);
        }
        transport.producers.push((ssrc, producer_id, index));
        Some((producer_id, index))
    }

    /// Asks a video producer for a keyframe, at most once per throttle interval; a request
    /// inside the interval is remembered and sent when it ends.
    fn request_keyframe(&mut self, id: ProducerId) {
        let now = self.now;
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
        let transport_id = match producer.origin {
            Origin::Local { transport, .. } => transport,
            Origin::Remote(origin) => {
                self.piped.push((origin, Pipe::Keyframe(id)));
                return;
            }
        };
        // Every layer of a simulcast producer: its consumers may be on any, or moving.
        let ssrcs: Vec<Ssrc> = producer.layers.iter().filter_map(|l| l.ssrc).collect();
        let Some(transport) = self.transports.get_mut(&transport_id) else {
            return;
        };
        for ssrc in ssrcs {
            let sent = transport.guard(|rtc| {
                rtc.direct_api()
                    .stream_rx(&ssrc)
                    .map(|stream| stream.request_keyframe(KeyframeRequestKind::Pli))
                    .is_some()
            });
            if sent == Some(true) {
                self.metrics.keyframe_requests_out.inc();
            }
        }
        self.drain(transport_id);
    }

    /// Drives every transport whose deadline has come.
    #[inline(never)] // as `datagram`
    pub(crate) fn timeouts(&mut self, now: Instant) {
        self.now = now;
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(transport) = self.transports.get_mut(&id) {
                transport.deadline = None;
                transport.timeout(now);
                self.drain(id);
            }
        }
        if self.send_at.is_some_and(|at| at <= now) {
            self.send_written();
        }
    }

    /// Every [`HOUSEKEEPING`]: keyframe requests that waited out their throttle, transports
    /// that did not connect in time, and the media of failed transports' owners.
    #[inline(never)] // as `datagram`
    pub(crate) fn housekeeping(&mut self, now: Instant) {
        self.now = now;
        let wanted: Vec<ProducerId> = self
            .producers
            .iter()
            .filter(|(_, p)| p.keyframe_wanted)
            .map(|(&id, _)| id)
            .collect();
        for id in wanted {
            self.request_keyframe(id);
        }
        // Simulcast consumers: a loss ceiling that has waited long enough lets the next
        // layer up be tried, and each is moved off layers that went idle or onto ones that
        // came back.
        let simulcast: Vec<ConsumerId> = self
            .producers
            .values()
            .filter(|p| p.layers.len() > 1)
            .flat_map(|p| p.consumers.iter().copied())
            .collect();
        for id in simulcast {
            if let Some(consumer) = self.consumers.get_mut(&id) {
                if consumer.ceiling != usize::MAX
                    && now.duration_since(consumer.ceiling_since) >= LOSS_BACKOFF
                {
                    consumer.ceiling += 1;
                    if consumer.ceiling >= params::MAX_LAYERS {
                        consumer.ceiling = usize::MAX;
                    }
                    consumer.ceiling_since = now;
                }
            }
            self.retarget(id);
        }
        for transport in self.transports.values_mut() {
            if transport.connect_by.is_some_and(|by| by <= now) && !transport.connected {
                tracing::debug!(
                    transport = %transport.id,
                    "media transport did not connect in time"
                );
                transport.failed = true;
            }
        }
        self.reap();
    }
}

/// Keeps the timer set in step with a transport's deadline. A deadline already past is
/// moved a millisecond ahead, so a transport cannot spin the loop.
fn reschedule(
    timers: &mut BTreeSet<(Instant, TransportId)>,
    transport: &mut Transport,
    next: Option<Instant>,
    now: Instant,
) {
    let next = next.map(|at| at.max(now + Duration::from_millis(1)));
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

fn new_producer(id: ProducerId, producer: &Producer) -> Value {
    json!({
        "producerId": id.to_string(),
        "user": producer.name.as_str(),
        "kind": producer.kind,
    })
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
    fn only_binding_requests_are_read_as_stun() {
        assert_eq!(stun_usernames(&[0x80; 100]), None); // RTP
        assert_eq!(stun_usernames(&[0x16; 100]), None); // DTLS
        let mut fake = vec![0u8; 20];
        fake[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(stun_usernames(&fake), None); // a cookie, but no binding request
    }
}
