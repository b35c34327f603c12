//! The router in simulated time: str0m clients play the browsers, a `Vec` plays the network,
//! and the clock moves only when a test moves it. ICE, DTLS, SRTP, RTCP and the router's
//! own timers all run as they do over sockets, so what is tested here is the media path
//! itself, deterministically, including what takes seconds or minutes of real time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard_core::{Event, MediaRequest, PeerKey, PeerName, RawJson, RoomId};

use crate::client::MediaClient;
use crate::router::{Router, HOUSEKEEPING, SEND_WINDOW};
use crate::{Input, MediaLimits, MediaMetrics, Request, Signaling};

/// The first worker's address; worker `i` is at port 40000 + i.
const SERVER_PORT: u16 = 40_000;
const SSRC: u32 = 0x2222_0001;

/// One thing the router told a peer: (peer, kind, data, rid). An error's kind is
/// `error:<code>`.
type Told = (PeerKey, String, Value, Option<String>);

/// What the router told each peer, in order, and who is in which room.
#[derive(Default)]
struct Recorder {
    told: Mutex<Vec<Told>>,
    members: Mutex<HashMap<PeerKey, RoomId>>,
}

impl Recorder {
    fn record(&self, peer: PeerKey, event: &Event) {
        let (kind, data, rid) = match event {
            Event::Media(media) => (
                media.kind.to_owned(),
                serde_json::from_str(media.data.as_str()).unwrap(),
                media.rid.as_ref(),
            ),
            Event::Error(error) => (
                format!("error:{}", error.code.as_str()),
                Value::Null,
                error.rid.as_ref(),
            ),
            other => panic!("the router sent {other:?}"),
        };
        let rid = rid.map(|rid| rid.as_str().to_owned());
        self.told.lock().unwrap().push((peer, kind, data, rid));
    }

    /// The notices of `kind` told to `peer` so far.
    fn notices(&self, peer: PeerKey, kind: &str) -> Vec<Value> {
        let told = self.told.lock().unwrap();
        told.iter()
            .filter(|(p, k, _, _)| *p == peer && k == kind)
            .map(|(_, _, data, _)| data.clone())
            .collect()
    }
}

impl Signaling for Recorder {
    fn tell(&self, peer: PeerKey, event: Event) {
        self.record(peer, &event);
    }

    fn tell_room(&self, room: &RoomId, except: PeerKey, event: Event) {
        let members: Vec<PeerKey> = self
            .members
            .lock()
            .unwrap()
            .iter()
            .filter(|(peer, in_room)| **peer != except && *in_room == room)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in members {
            self.record(peer, &event);
        }
    }

    fn is_member(&self, peer: PeerKey, room: &RoomId) -> bool {
        self.members.lock().unwrap().get(&peer) == Some(room)
    }
}

/// Alice publishing VP8 to Bob, connected: the start of most tests.
struct Call {
    alice: PeerKey,
    publisher: usize,
    producer: String,
    bob: PeerKey,
    bob_client: usize,
    consumer: String,
}

impl Call {
    fn new(sim: &mut Sim) -> Call {
        let alice = sim.join(1, "room");
        let (publisher, producer) = sim.publisher(alice);
        let bob = sim.join(2, "room");
        let (bob_client, consumer) = sim.consumer(bob, &producer);
        sim.connected();
        Call {
            alice,
            publisher,
            producer,
            bob,
            bob_client,
            consumer,
        }
    }
}

/// The routers (one per worker, as many as the test asks for), their clients and the clock.
struct Sim {
    routers: Vec<Router>,
    /// The worker each peer's media is on.
    homes: HashMap<PeerKey, usize>,
    /// Packets piped from one router to another.
    piped_packets: u64,
    metrics: MediaMetrics,
    signaling: Arc<Recorder>,
    now: Instant,
    next_housekeeping: Instant,
    /// Clients by their (made-up) local address.
    clients: Vec<MediaClient>,
    rid: u64,
    epochs: HashMap<PeerKey, u32>,
}

fn server(worker: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], SERVER_PORT + worker as u16))
}

impl Sim {
    fn new() -> Sim {
        Sim::with_workers(1)
    }

    /// `workers` routers, sharing a certificate and a room load as a server's workers do.
    fn with_workers(workers: usize) -> Sim {
        let certificate = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .unwrap();
        let metrics = MediaMetrics::default();
        let signaling = Arc::new(Recorder::default());
        let now = Instant::now();
        let load = Arc::new(crate::RoomLoad::default());
        let routers = (0..workers)
            .map(|index| {
                let seat = crate::Seat {
                    index,
                    count: workers,
                    load: load.clone(),
                };
                Router::new(
                    seat,
                    server(index),
                    certificate.clone(),
                    MediaLimits::default(),
                    signaling.clone(),
                    metrics.clone(),
                    now,
                )
                .unwrap()
            })
            .collect();
        Sim {
            routers,
            homes: HashMap::new(),
            piped_packets: 0,
            metrics,
            signaling,
            now,
            next_housekeeping: now + HOUSEKEEPING,
            clients: Vec::new(),
            rid: 0,
            epochs: HashMap::new(),
        }
    }

    fn join(&mut self, peer: u64, room: &str) -> PeerKey {
        self.join_on(peer, room, 0)
    }

    /// `peer` joins `room`, its media on worker `home`; every worker hears of it.
    fn join_on(&mut self, peer: u64, room: &str, home: usize) -> PeerKey {
        let peer = PeerKey(peer);
        let room = RoomId::parse(room).unwrap();
        let epoch = self.epochs.entry(peer).or_default();
        *epoch += 1;
        let epoch = *epoch;
        self.signaling
            .members
            .lock()
            .unwrap()
            .insert(peer, room.clone());
        self.homes.insert(peer, home);
        for (index, router) in self.routers.iter_mut().enumerate() {
            let joined = Input::Joined {
                peer,
                room: room.clone(),
                epoch,
                home: index == home,
            };
            router.input(self.now, joined);
        }
        self.pass_on();
        peer
    }

    /// `peer` leaves (its socket closed); every worker hears of it.
    fn leave(&mut self, peer: PeerKey) {
        self.signaling.members.lock().unwrap().remove(&peer);
        for router in &mut self.routers {
            router.input(
                self.now,
                Input::Left {
                    peer,
                    epoch: crate::GONE,
                },
            );
        }
        self.pass_on();
    }

    /// Hands what each router told the others to them, as the workers' drivers do after
    /// every call; whether there was anything.
    fn pass_on(&mut self) -> bool {
        let mut any = false;
        for _ in 0..100 {
            let mut passed = Vec::new();
            for router in &mut self.routers {
                passed.append(&mut router.piped);
            }
            if passed.is_empty() {
                return any;
            }
            any = true;
            for (to, pipe) in passed {
                self.piped_packets += u64::from(matches!(pipe, crate::router::Pipe::Packet { .. }));
                self.routers[to].input(self.now, Input::Pipe(pipe));
            }
        }
        panic!("the workers never stopped telling each other things");
    }

    /// Sends a request as `peer` (in its current membership); returns the reply's kind and
    /// data.
    fn request(&mut self, peer: PeerKey, request: MediaRequest, data: Value) -> (String, Value) {
        let epoch = self.epochs[&peer];
        self.request_in(peer, epoch, request, data)
    }

    fn request_in(
        &mut self,
        peer: PeerKey,
        epoch: u32,
        request: MediaRequest,
        data: Value,
    ) -> (String, Value) {
        self.rid += 1;
        let rid = self.rid.to_string();
        let room = self.signaling.members.lock().unwrap()[&peer].clone();
        let home = self.homes[&peer];
        self.routers[home].input(
            self.now,
            Input::Request(Request {
                peer,
                room,
                name: PeerName::parse(&format!("user{}", peer.0)).unwrap(),
                epoch,
                request,
                data: RawJson::new(&data.to_string()),
                rid: Some(RawJson::new(&rid)),
            }),
        );
        self.pass_on();
        let told = self.signaling.told.lock().unwrap();
        let (_, kind, data, _) = told
            .iter()
            .rev()
            .find(|(p, _, _, r)| *p == peer && r.as_deref() == Some(rid.as_str()))
            .expect("the router answers every request at once");
        (kind.clone(), data.clone())
    }

    /// Creates and connects a transport; returns its id and the index of its client.
    fn transport(&mut self, peer: PeerKey, direction: &str) -> (String, usize) {
        let (kind, created) = self.request(
            peer,
            MediaRequest::CreateTransport,
            json!({"direction": direction}),
        );
        assert_eq!(kind, "webRtcTransportCreated");
        let local = SocketAddr::from(([127, 0, 0, 1], 50_000 + self.clients.len() as u16));
        let mut client = MediaClient::detached(&created, local, self.now).unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let (kind, _) = self.request(
            peer,
            MediaRequest::ConnectTransport,
            json!({"transportId": id, "dtlsParameters": client.dtls_parameters()}),
        );
        assert_eq!(kind, "transportConnected");
        self.clients.push(client);
        (id, self.clients.len() - 1)
    }

    /// A publisher of one VP8 stream: its client's index and its producer's id.
    fn publisher(&mut self, peer: PeerKey) -> (usize, String) {
        self.publisher_of(peer, MediaClient::publish_video)
    }

    /// A publisher of one video stream, declared by `declare` (VP8 or H.264).
    fn publisher_of(
        &mut self,
        peer: PeerKey,
        declare: fn(&mut MediaClient, &str, u32, u32) -> Value,
    ) -> (usize, String) {
        let (transport, client) = self.transport(peer, "send");
        let rtp = declare(&mut self.clients[client], "0", SSRC, SSRC + 1);
        let (kind, produced) = self.request(
            peer,
            MediaRequest::Produce,
            json!({"transportId": transport, "kind": "video", "rtpParameters": rtp, "appData": {}}),
        );
        assert_eq!(kind, "produced");
        (client, produced["id"].as_str().unwrap().to_owned())
    }

    /// A consumer of `producer`: its client's index and its consumer's id.
    fn consumer(&mut self, peer: PeerKey, producer: &str) -> (usize, String) {
        let (client, consumed) = self.consume(peer, producer, MediaClient::capabilities());
        assert_eq!(consumed.0, "consumed");
        (client, consumed.1["id"].as_str().unwrap().to_owned())
    }

    /// Asks to consume `producer` with these capabilities; returns the client and the reply.
    fn consume(
        &mut self,
        peer: PeerKey,
        producer: &str,
        capabilities: Value,
    ) -> (usize, (String, Value)) {
        let (transport, client) = self.transport(peer, "recv");
        let reply = self.request(
            peer,
            MediaRequest::Consume,
            json!({"transportId": transport, "producerId": producer,
                   "rtpCapabilities": capabilities}),
        );
        if reply.0 == "consumed" {
            self.clients[client].expect(&reply.1).unwrap();
        }
        (client, reply)
    }

    /// Moves the clock on by `duration` in steps of `tick`, carrying every datagram both
    /// ways and running every timer on the way.
    fn run(&mut self, duration: Duration, tick: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += tick;
            self.carry();
        }
    }

    fn carry(&mut self) {
        let now = self.now;
        for router in &mut self.routers {
            if now >= self.next_housekeeping {
                router.housekeeping(now);
            }
            router.timeouts(now);
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
        }
        for client in &mut self.clients {
            client.advance(now);
        }
        // Until the network is quiet: each delivery may answer with more.
        for _ in 0..100 {
            let mut quiet = !self.pass_on();
            for (worker, router) in self.routers.iter_mut().enumerate() {
                for datagram in std::mem::take(&mut router.outgoing) {
                    quiet = false;
                    if let Some(client) = self
                        .clients
                        .iter_mut()
                        .find(|c| c.local_addr() == datagram.to)
                    {
                        client.receive(now, server(worker), &datagram.contents);
                    }
                }
            }
            for client in &mut self.clients {
                let local = client.local_addr();
                let sent = std::mem::take(&mut client.outgoing);
                quiet &= sent.is_empty();
                for (worker, router) in self.routers.iter_mut().enumerate() {
                    let to_it = sent
                        .iter()
                        .filter(|(to, _)| *to == server(worker))
                        .map(|(_, datagram)| (local, datagram.as_slice()));
                    router.datagrams(now, to_it);
                }
            }
            if quiet {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    /// Writes `count` packets from the publisher at 50 packets/s, from sequence number
    /// `first`.
    fn publish(&mut self, client: usize, first: u64, count: u64) {
        for seq in first..first + count {
            let now = self.now;
            self.clients[client].write_at(now, SSRC, seq, (seq * 1800) as u32, &[0x90; 200], true);
            self.run(Duration::from_millis(20), Duration::from_millis(5));
        }
    }

    /// Writes `frames` video frames of `per_frame` packets each at 30 frames/s, a frame's
    /// packets in one burst as a camera sends them.
    fn publish_frames(&mut self, client: usize, frames: u64, per_frame: u64) {
        for frame in 0..frames {
            let now = self.now;
            for packet in 0..per_frame {
                let seq = frame * per_frame + packet;
                let timestamp = (frame * 3000) as u32;
                let last = packet + 1 == per_frame;
                self.clients[client].write_at(now, SSRC, seq, timestamp, &[0x90; 1100], last);
            }
            self.run(Duration::from_millis(33), Duration::from_millis(11));
        }
    }

    fn connected(&mut self) {
        self.run(Duration::from_millis(500), Duration::from_millis(5));
        assert!(self.clients.iter().all(MediaClient::is_connected));
    }
}

#[test]
fn each_consumer_gets_every_packet_under_its_own_consecutive_numbers() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let (publisher, producer) = sim.publisher(alice);
    let bob = sim.join(2, "room");
    let (bob_client, _) = sim.consumer(bob, &producer);
    let carol = sim.join(3, "room");
    let (carol_client, _) = sim.consumer(carol, &producer);
    sim.connected();
    // Past 2^16: the consumers still start low (SRTP rollover 0) and count on.
    sim.publish(publisher, 65_530, 50);
    for client in [bob_client, carol_client] {
        let seen = &sim.clients[client].sequence_numbers;
        assert_eq!(seen.len(), 50, "every packet arrives once");
        assert!(seen[0] < 0x8000);
        assert!(seen.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }
    assert_eq!(sim.clients[bob_client].payload_types, [96]);
    assert_ne!(
        sim.clients[bob_client].sequence_numbers[0], sim.clients[carol_client].sequence_numbers[0],
        "each consumer has its own numbering"
    );
    assert_eq!(sim.metrics.rtp_forwarded.get(), 100);
}

#[test]
fn keyframe_requests_wait_out_the_half_second_throttle() {
    let mut sim = Sim::new();
    let Call {
        publisher,
        bob,
        consumer,
        ..
    } = Call::new(&mut sim);
    sim.run(Duration::from_secs(2), Duration::from_millis(10));
    let before = sim.clients[publisher].keyframe_requests;
    // Three resumes within 20 ms, each asking for a keyframe.
    for _ in 0..3 {
        let (kind, _) = sim.request(
            bob,
            MediaRequest::ResumeConsumer,
            json!({"consumerId": consumer}),
        );
        assert_eq!(kind, "consumerResumed");
        sim.run(Duration::from_millis(10), Duration::from_millis(5));
    }
    sim.run(Duration::from_millis(200), Duration::from_millis(5));
    assert_eq!(sim.clients[publisher].keyframe_requests, before + 1);
    // The two that came inside the window are sent as one when it ends.
    sim.run(Duration::from_millis(400), Duration::from_millis(5));
    assert_eq!(sim.clients[publisher].keyframe_requests, before + 2);
    sim.run(Duration::from_secs(2), Duration::from_millis(10));
    assert_eq!(sim.clients[publisher].keyframe_requests, before + 2);
}

#[test]
fn pausing_a_producer_holds_its_packets_and_resuming_leaves_no_gap() {
    let mut sim = Sim::new();
    let Call {
        alice,
        publisher,
        producer,
        bob,
        bob_client,
        consumer,
    } = Call::new(&mut sim);
    sim.publish(publisher, 1000, 10);
    let (kind, _) = sim.request(
        alice,
        MediaRequest::PauseProducer,
        json!({"producerId": producer}),
    );
    assert_eq!(kind, "producerPaused");
    let paused = sim.signaling.notices(bob, "consumer-paused");
    assert_eq!(
        paused,
        [json!({"consumerId": consumer, "producerId": producer})]
    );
    sim.publish(publisher, 1010, 10);
    assert_eq!(sim.clients[bob_client].sequence_numbers.len(), 10);
    let (kind, _) = sim.request(
        alice,
        MediaRequest::ResumeProducer,
        json!({"producerId": producer}),
    );
    assert_eq!(kind, "producerResumed");
    assert_eq!(sim.signaling.notices(bob, "consumer-resumed").len(), 1);
    sim.publish(publisher, 1020, 10);
    let seen = &sim.clients[bob_client].sequence_numbers;
    assert_eq!(seen.len(), 20);
    assert!(
        seen.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "no gap for the receiver to ask to be repaired: {seen:?}"
    );
}

#[test]
fn a_transport_that_never_completes_dtls_fails_after_thirty_seconds() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let (kind, created) = sim.request(
        alice,
        MediaRequest::CreateTransport,
        json!({"direction": "recv"}),
    );
    assert_eq!(kind, "webRtcTransportCreated");
    // The client connects the transport in signaling, but no datagram ever arrives.
    let local = SocketAddr::from(([127, 0, 0, 1], 50_999));
    let mut silent = MediaClient::detached(&created, local, sim.now).unwrap();
    let (kind, _) = sim.request(
        alice,
        MediaRequest::ConnectTransport,
        json!({"transportId": created["id"], "dtlsParameters": silent.dtls_parameters()}),
    );
    assert_eq!(kind, "transportConnected");
    sim.run(Duration::from_secs(29), Duration::from_millis(100));
    assert_eq!(sim.metrics.transports.get(), 1);
    assert_eq!(sim.metrics.transport_failures.get(), 0);
    sim.run(Duration::from_secs(2), Duration::from_millis(100));
    assert_eq!(sim.metrics.transports.get(), 0);
    assert_eq!(sim.metrics.transport_failures.get(), 1);
}

#[test]
fn a_request_from_an_older_membership_is_refused_and_a_new_one_starts_clean() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let (_, producer) = sim.publisher(alice);
    assert_eq!(sim.metrics.producers.get(), 1);
    // Alice leaves and joins again: her media from before is closed, and a request sent
    // in the old membership is refused.
    sim.join(1, "room");
    let (kind, _) = sim.request(
        alice,
        MediaRequest::CreateTransport,
        json!({"direction": "recv"}),
    );
    assert_eq!(kind, "webRtcTransportCreated");
    assert_eq!(sim.metrics.producers.get(), 0);
    let (kind, _) = sim.request_in(
        alice,
        1,
        MediaRequest::CloseProducer,
        json!({"producerId": producer}),
    );
    assert_eq!(kind, "error:not_in_room");
}

#[test]
fn a_frame_leaves_together_at_the_end_of_the_send_window() {
    let mut sim = Sim::new();
    let Call {
        publisher,
        bob_client,
        ..
    } = Call::new(&mut sim);
    for frame in 0..5u64 {
        let now = sim.now;
        for packet in 0..4 {
            let seq = frame * 4 + packet;
            sim.clients[publisher].write_at(now, SSRC, seq, 0, &[0x90; 200], packet == 3);
        }
        // The clock has not moved: the frame waits in the router's send window...
        sim.carry();
        assert_eq!(sim.clients[bob_client].packets, frame * 4);
        // ...and leaves, whole, when the window ends.
        sim.run(SEND_WINDOW, SEND_WINDOW);
        assert_eq!(sim.clients[bob_client].packets, frame * 4 + 4);
        sim.run(Duration::from_millis(30), Duration::from_millis(10));
    }
}

#[test]
fn an_h264_producer_reaches_h264_consumers_and_a_vp8_only_one_is_refused() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let (publisher, producer) = sim.publisher_of(alice, MediaClient::publish_h264);
    let bob = sim.join(2, "room");
    let (bob_client, (kind, consumed)) = sim.consume(bob, &producer, MediaClient::capabilities());
    assert_eq!(kind, "consumed");
    let codec = &consumed["rtpParameters"]["codecs"][0];
    assert_eq!(codec["mimeType"], "video/H264");
    assert_eq!(codec["payloadType"], 108);
    assert_eq!(codec["parameters"]["packetization-mode"], 1);
    let carol = sim.join(3, "room");
    let vp8_only = json!({"codecs": [
        {"kind": "video", "mimeType": "video/VP8", "clockRate": 90000, "preferredPayloadType": 96}
    ]});
    let (_, (kind, _)) = sim.consume(carol, &producer, vp8_only);
    assert_eq!(kind, "error:cannot_consume");
    sim.connected();
    sim.publish(publisher, 0, 20);
    let bob = &sim.clients[bob_client];
    assert_eq!(bob.sequence_numbers.len(), 20);
    assert!(bob
        .sequence_numbers
        .windows(2)
        .all(|w| w[1] == w[0].wrapping_add(1)));
    assert_eq!(
        bob.payload_types,
        [108],
        "H.264 at the router's payload type"
    );
}

/// Fifty consumers of bursts of 8 packets (a frame, as `bench media` sends): each gets every
/// packet, in order. It is also the fixed workload for counting the router's instructions per
/// forwarded packet under callgrind, which repeats exactly where wall-clock benches on a
/// shared machine do not: `valgrind --tool=callgrind <test binary> fifty_consumers`, with
/// `SWITCHBOARD_COST_FRAMES` set to two counts, then the inclusive cost of
/// `Router::datagrams` and `Router::timeouts` (docs/performance.md, "Batched sends, the send
/// window and a sans-IO router").
#[test]
fn fifty_consumers_get_every_packet_of_every_frame() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let (publisher, producer) = sim.publisher(alice);
    let consumers = 50;
    let clients: Vec<usize> = (0..consumers)
        .map(|peer| {
            let peer = sim.join(100 + peer, "room");
            sim.consumer(peer, &producer).0
        })
        .collect();
    sim.connected();
    // Under callgrind, run it with two counts: the difference is the cost of the packets
    // alone, without the set-up (ICE, DTLS) that both runs share.
    let frames = std::env::var("SWITCHBOARD_COST_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25);
    sim.publish_frames(publisher, frames, 8);
    assert_eq!(sim.metrics.rtp_forwarded.get(), frames * 8 * consumers);
    for client in clients {
        let seen = &sim.clients[client].sequence_numbers;
        assert_eq!(seen.len() as u64, frames * 8);
        assert!(seen.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }
}

/// A publisher of VP8 simulcast, sending frames on the layers a test turns on, each frame a
/// keyframe when the server asked for one since the last (as a browser answers a PLI).
struct SimulcastPublisher {
    client: usize,
    producer: String,
    ssrcs: Vec<u32>,
    next_seq: Vec<u64>,
    frame: u64,
    requests_seen: u64,
}

/// A packet's tag: its layer, and whether it starts a keyframe.
const KEYFRAME_TAG: u8 = 0x10;

impl Sim {
    fn simulcast_publisher(&mut self, peer: PeerKey, layers: u32) -> SimulcastPublisher {
        let (transport, client) = self.transport(peer, "send");
        let ssrcs: Vec<u32> = (0..layers).map(|layer| 0x3333_0000 + layer).collect();
        let rtp = self.clients[client].publish_simulcast("0", &ssrcs);
        let (kind, produced) = self.request(
            peer,
            MediaRequest::Produce,
            json!({"transportId": transport, "kind": "video", "rtpParameters": rtp, "appData": {}}),
        );
        assert_eq!(kind, "produced");
        assert_eq!(produced["type"], "simulcast");
        SimulcastPublisher {
            client,
            producer: produced["id"].as_str().unwrap().to_owned(),
            next_seq: vec![0; ssrcs.len()],
            ssrcs,
            frame: 0,
            requests_seen: 0,
        }
    }

    /// `frames` frames at 30 a second on each layer in `on`: two VP8 packets per layer, the
    /// last payload byte the layer (with [`KEYFRAME_TAG`] on a keyframe's first packet).
    /// Each layer has its own timestamp base, as a browser's do.
    fn simulcast_frames(&mut self, publisher: &mut SimulcastPublisher, frames: u64, on: &[usize]) {
        for _ in 0..frames {
            let now = self.now;
            let requests = self.clients[publisher.client].keyframe_requests;
            let keyframe = publisher.frame == 0 || requests > publisher.requests_seen;
            publisher.requests_seen = requests;
            for &layer in on {
                let timestamp =
                    (layer as u32 * 1_000_000).wrapping_add(publisher.frame as u32 * 3000);
                let tag = layer as u8;
                let first = [
                    0x10,
                    u8::from(!keyframe),
                    0x9d,
                    tag | if keyframe { KEYFRAME_TAG } else { 0 },
                ];
                let rest = [0x00, 0x00, tag];
                for (packet, payload) in [&first[..], &rest[..]].into_iter().enumerate() {
                    let seq = publisher.next_seq[layer];
                    publisher.next_seq[layer] += 1;
                    self.clients[publisher.client].write_at(
                        now,
                        publisher.ssrcs[layer],
                        seq,
                        timestamp,
                        payload,
                        packet == 1,
                    );
                }
            }
            publisher.frame += 1;
            self.run(Duration::from_millis(33), Duration::from_millis(11));
        }
    }

    /// Consumes `producer` with `preferredLayers` (when given); returns its client and id.
    fn layered_consumer(
        &mut self,
        peer: PeerKey,
        producer: &str,
        preferred: Option<u8>,
    ) -> (usize, String) {
        let (transport, client) = self.transport(peer, "recv");
        let mut request = json!({"transportId": transport, "producerId": producer,
                                 "rtpCapabilities": MediaClient::capabilities()});
        if let Some(layer) = preferred {
            request["preferredLayers"] = json!({"spatialLayer": layer});
        }
        let (kind, consumed) = self.request(peer, MediaRequest::Consume, request);
        assert_eq!(kind, "consumed");
        assert_eq!(consumed["type"], "simulcast");
        self.clients[client].expect(&consumed).unwrap();
        (client, consumed["id"].as_str().unwrap().to_owned())
    }
}

/// Alice (on worker 0) publishing simulcast to Bob, connected.
struct LayeredCall {
    publisher: SimulcastPublisher,
    bob: PeerKey,
    bob_client: usize,
    bob_consumer: String,
}

impl LayeredCall {
    /// `layers` layers; Bob's media on worker `bob_home`, preferring `preferred`.
    fn new(sim: &mut Sim, layers: u32, bob_home: usize, preferred: Option<u8>) -> LayeredCall {
        let alice = sim.join_on(1, "room", 0);
        let publisher = sim.simulcast_publisher(alice, layers);
        let bob = sim.join_on(2, "room", bob_home);
        let (bob_client, bob_consumer) = sim.layered_consumer(bob, &publisher.producer, preferred);
        sim.connected();
        LayeredCall {
            publisher,
            bob,
            bob_client,
            bob_consumer,
        }
    }
}

/// The layers a client received, in order, each once per run of packets from it.
fn layer_runs(tags: &[u8]) -> Vec<u8> {
    let mut runs: Vec<u8> = tags.iter().map(|tag| tag & 0x0f).collect();
    runs.dedup();
    runs
}

/// Whether sequence numbers step by exactly one, and timestamps never go back.
fn seamless(client: &MediaClient) -> bool {
    let seqs = client
        .sequence_numbers
        .windows(2)
        .all(|w| w[1] == w[0].wrapping_add(1));
    let times = client
        .timestamps
        .windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) < 0x8000_0000);
    seqs && times
}

#[test]
fn simulcast_consumers_get_their_preferred_layer_and_move_at_a_keyframe() {
    let mut sim = Sim::new();
    let alice = sim.join(1, "room");
    let mut publisher = sim.simulcast_publisher(alice, 3);
    let bob = sim.join(2, "room");
    let (bob_client, _) = sim.layered_consumer(bob, &publisher.producer, None);
    let carol = sim.join(3, "room");
    let (carol_client, carol_consumer) = sim.layered_consumer(carol, &publisher.producer, Some(0));
    sim.connected();
    sim.simulcast_frames(&mut publisher, 30, &[0, 1, 2]);
    // Each gets one layer only, from a keyframe on.
    assert_eq!(layer_runs(&sim.clients[bob_client].tags), [2]);
    assert_eq!(layer_runs(&sim.clients[carol_client].tags), [0]);
    for client in [bob_client, carol_client] {
        let tags = &sim.clients[client].tags;
        assert!(tags.len() >= 40, "{}", tags.len());
        assert_ne!(
            tags[0] & KEYFRAME_TAG,
            0,
            "the first packet starts a keyframe"
        );
    }
    assert_eq!(
        sim.signaling.notices(carol, "consumer-layers-changed"),
        [json!({"consumerId": carol_consumer, "spatialLayer": 0})]
    );

    // Carol asks for the top layer: she moves at its next keyframe, with no gap.
    let (kind, set) = sim.request(
        carol,
        MediaRequest::SetPreferredLayers,
        json!({"consumerId": carol_consumer, "spatialLayer": 7}),
    );
    assert_eq!(kind, "preferredLayersSet");
    assert_eq!(set["spatialLayer"], 2, "clamped to the top layer");
    let before = sim.clients[carol_client].tags.len();
    sim.simulcast_frames(&mut publisher, 30, &[0, 1, 2]);
    let carol_client = &sim.clients[carol_client];
    assert_eq!(layer_runs(&carol_client.tags), [0, 2]);
    let moved = carol_client
        .tags
        .iter()
        .position(|tag| tag & 0x0f == 2)
        .unwrap();
    assert!(moved >= before);
    assert_ne!(
        carol_client.tags[moved] & KEYFRAME_TAG,
        0,
        "moved at a keyframe"
    );
    assert!(
        seamless(carol_client),
        "{:?}",
        carol_client.sequence_numbers
    );
    assert!(seamless(&sim.clients[bob_client]));
    assert_eq!(
        sim.signaling
            .notices(carol, "consumer-layers-changed")
            .last(),
        Some(&json!({"consumerId": carol_consumer, "spatialLayer": 2}))
    );
}

#[test]
fn a_layer_that_stops_moves_its_consumers_down_and_back_when_it_returns() {
    let mut sim = Sim::new();
    let LayeredCall {
        mut publisher,
        bob,
        bob_client,
        bob_consumer,
    } = LayeredCall::new(&mut sim, 3, 0, None);
    sim.simulcast_frames(&mut publisher, 20, &[0, 1, 2]);
    // The browser drops its top layer (too little bandwidth or CPU) for three seconds.
    sim.simulcast_frames(&mut publisher, 90, &[0, 1]);
    sim.simulcast_frames(&mut publisher, 60, &[0, 1, 2]);
    let bob_client = &sim.clients[bob_client];
    assert_eq!(layer_runs(&bob_client.tags), [2, 1, 2]);
    assert!(seamless(bob_client));
    let changes: Vec<Value> = sim
        .signaling
        .notices(bob, "consumer-layers-changed")
        .into_iter()
        .map(|notice| notice["spatialLayer"].clone())
        .collect();
    assert_eq!(
        changes,
        [json!(2), json!(1), json!(2)],
        "for {bob_consumer}"
    );
}

#[test]
fn a_consumer_losing_packets_moves_down_and_tries_the_layer_above_later() {
    let mut sim = Sim::new();
    let LayeredCall {
        mut publisher,
        bob_client,
        ..
    } = LayeredCall::new(&mut sim, 2, 0, None);
    sim.simulcast_frames(&mut publisher, 30, &[0, 1]);
    // A third of what reaches Bob is lost: within a few receiver reports he is moved down.
    sim.clients[bob_client].drop_every = Some(3);
    sim.simulcast_frames(&mut publisher, 150, &[0, 1]);
    let layers = layer_runs(&sim.clients[bob_client].tags);
    assert_eq!(layers, [1, 0], "moved down to the lower layer");
    // The link heals: after the back-off, he gets the top layer again.
    sim.clients[bob_client].drop_every = None;
    sim.simulcast_frames(&mut publisher, 400, &[0, 1]);
    let layers = layer_runs(&sim.clients[bob_client].tags);
    assert_eq!(layers, [1, 0, 1]);
}

#[test]
fn a_room_over_two_workers_pipes_each_packet_once_and_stops_when_nobody_there_wants_it() {
    let mut sim = Sim::with_workers(2);
    let alice = sim.join_on(1, "room", 0);
    let (publisher, producer) = sim.publisher(alice);
    // Bob's media is on the producer's worker, Carol's and Dan's on the other: they hear of
    // the producer from their own worker and consume its mirror there.
    let bob = sim.join_on(2, "room", 0);
    let carol = sim.join_on(3, "room", 1);
    let dan = sim.join_on(4, "room", 1);
    for peer in [bob, carol, dan] {
        assert_eq!(
            sim.signaling.notices(peer, "new-producer"),
            [json!({"producerId": producer, "user": "user1", "kind": "video"})],
            "announced once, by the peer's own worker"
        );
    }
    let (watchers, consumers): (Vec<usize>, Vec<String>) = [bob, carol, dan]
        .into_iter()
        .map(|peer| sim.consumer(peer, &producer))
        .unzip();
    assert_eq!(sim.clients[watchers[1]].server_addr(), server(1));
    sim.connected();
    sim.publish(publisher, 1000, 50);
    for &client in &watchers {
        let seen = &sim.clients[client].sequence_numbers;
        assert_eq!(seen.len(), 50, "every packet, on either worker");
        assert!(seen.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    }
    assert_eq!(
        sim.piped_packets, 50,
        "once each, for both watchers over there"
    );

    // Keyframe requests from over there reach the publisher.
    sim.run(Duration::from_secs(1), Duration::from_millis(10));
    let before = sim.clients[publisher].keyframe_requests;
    let (kind, _) = sim.request(
        carol,
        MediaRequest::ResumeConsumer,
        json!({"consumerId": consumers[1]}),
    );
    assert_eq!(kind, "consumerResumed");
    sim.run(Duration::from_millis(100), Duration::from_millis(10));
    assert_eq!(sim.clients[publisher].keyframe_requests, before + 1);

    // When both leave, nothing more crosses; Bob still gets everything.
    sim.leave(carol);
    sim.publish(publisher, 1050, 10);
    assert_eq!(sim.piped_packets, 60, "Dan still wants it");
    sim.leave(dan);
    sim.publish(publisher, 1060, 10);
    assert_eq!(sim.piped_packets, 60);
    assert_eq!(sim.clients[watchers[0]].sequence_numbers.len(), 70);
    // The producer's close reaches the mirror, which goes from the other worker too.
    let (kind, _) = sim.request(
        alice,
        MediaRequest::CloseProducer,
        json!({"producerId": producer}),
    );
    assert_eq!(kind, "producerClosed");
    let eve = sim.join_on(5, "room", 1);
    assert!(sim.signaling.notices(eve, "new-producer").is_empty());
}

#[test]
fn a_simulcast_consumer_on_another_worker_gets_its_layer_and_moves() {
    let mut sim = Sim::with_workers(2);
    let LayeredCall {
        mut publisher,
        bob,
        bob_client,
        bob_consumer,
    } = LayeredCall::new(&mut sim, 3, 1, Some(0));
    sim.simulcast_frames(&mut publisher, 30, &[0, 1, 2]);
    assert_eq!(layer_runs(&sim.clients[bob_client].tags), [0]);
    let (kind, _) = sim.request(
        bob,
        MediaRequest::SetPreferredLayers,
        json!({"consumerId": bob_consumer, "spatialLayer": 2}),
    );
    assert_eq!(kind, "preferredLayersSet");
    // His worker asks the publisher's for a keyframe, and he moves at it.
    sim.simulcast_frames(&mut publisher, 30, &[0, 1, 2]);
    let bob_client = &sim.clients[bob_client];
    assert_eq!(layer_runs(&bob_client.tags), [0, 2]);
    assert!(seamless(bob_client));
    // Every layer's every packet crosses (60 frames, 2 packets a layer): his worker chooses.
    assert_eq!(sim.piped_packets, 60 * 2 * 3);
}
