//! The SFU end to end without a browser: str0m client transports play the browsers (full
//! ICE, DTLS client), over the real server's WebSocket and UDP socket on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::cluster::{node_config, node_with, Redis};
use common::receiver::Receiver;
use common::{conference, metric, start, start_with, Client, TestServer, PATIENCE};
use serde_json::{json, Value};
use switchboard_server::Config;
use switchboard_sfu::client::MediaClient;

/// Frames a peer may hear while it waits for a reply: other members' comings and goings.
const NOTICES: [&str; 6] = [
    "user-joined",
    "user-left",
    "new-producer",
    "producer-closed",
    "consumer-paused",
    "consumer-resumed",
];

/// Sends a request with a rid and returns the reply's `data` (skipping notices). Panics on
/// an error or a reply of another type.
async fn call(client: &mut Client, kind: &str, data: Value, reply: &str) -> Value {
    let answer = ask(client, kind, data).await;
    assert_eq!(answer["type"], reply, "{kind}: {answer}");
    answer["data"].clone()
}

/// Sends a request with a rid and returns the whole reply (skipping notices), whose rid
/// must echo ours.
async fn ask(client: &mut Client, kind: &str, data: Value) -> Value {
    client
        .send_json(json!({"type": kind, "data": data, "rid": 42}))
        .await;
    loop {
        let frame = client.json().await;
        if NOTICES.contains(&frame["type"].as_str().unwrap_or_default()) {
            continue;
        }
        assert_eq!(frame["rid"], 42, "{frame}");
        return frame;
    }
}

/// The next frame of type `kind`, skipping other notices.
async fn notice(client: &mut Client, kind: &str) -> Value {
    loop {
        let frame = client.json().await;
        if frame["type"] == kind {
            return frame["data"].clone();
        }
        assert!(
            NOTICES.contains(&frame["type"].as_str().unwrap_or_default()),
            "{frame}"
        );
    }
}

/// Creates and connects a transport; returns its id and the client playing the browser.
async fn transport(client: &mut Client, direction: &str) -> (String, MediaClient) {
    let created = call(
        client,
        "create-transport",
        json!({"direction": direction}),
        "webRtcTransportCreated",
    )
    .await;
    assert_eq!(created["iceParameters"]["iceLite"], true);
    assert_eq!(created["dtlsParameters"]["role"], "auto");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut media = MediaClient::new(&created).unwrap();
    let connected = call(
        client,
        "connect-transport",
        json!({"transportId": id, "dtlsParameters": media.dtls_parameters()}),
        "transportConnected",
    )
    .await;
    assert_eq!(connected["transportId"], id.as_str());
    (id, media)
}

struct Publisher {
    ws: Client,
    media: MediaClient,
    producer: String,
    seq: u64,
}

const SSRC: u32 = 0x1111_0001;

async fn publisher(server: &TestServer, room: &str, first_seq: u64) -> Publisher {
    publish(conference(server, room, "publisher").await, first_seq).await
}

/// Produces video on a new send transport, its streams declared by `declare`; returns the
/// client and the `produced` reply.
async fn produce_video(
    ws: &mut Client,
    declare: impl FnOnce(&mut MediaClient) -> Value,
) -> (MediaClient, Value) {
    let (id, mut media) = transport(ws, "send").await;
    let rtp = declare(&mut media);
    let produced = call(
        ws,
        "produce",
        json!({"transportId": id, "kind": "video", "rtpParameters": rtp, "appData": {}}),
        "produced",
    )
    .await;
    (media, produced)
}

/// Publishes a video track from a member already in its room.
async fn publish(mut ws: Client, first_seq: u64) -> Publisher {
    let (media, produced) =
        produce_video(&mut ws, |media| media.publish_video("0", SSRC, SSRC + 1)).await;
    assert_eq!(produced["kind"], "video");
    Publisher {
        ws,
        media,
        producer: produced["id"].as_str().unwrap().to_owned(),
        seq: first_seq,
    }
}

struct Subscriber {
    ws: Client,
    media: MediaClient,
    consumer: String,
}

/// Joins, hears of the publisher's producer, and consumes it.
async fn subscriber(server: &TestServer, room: &str, name: &str) -> Subscriber {
    let mut ws = conference(server, room, name).await;
    let announced = notice(&mut ws, "new-producer").await;
    assert_eq!(announced["user"], "publisher");
    assert_eq!(announced["kind"], "video");
    let (id, mut media) = transport(&mut ws, "recv").await;
    let consumed = call(
        &mut ws,
        "consume",
        json!({"transportId": id, "producerId": announced["producerId"],
               "rtpCapabilities": MediaClient::capabilities()}),
        "consumed",
    )
    .await;
    assert_eq!(consumed["producerId"], announced["producerId"]);
    assert_eq!(consumed["producerPaused"], false);
    assert_eq!(consumed["rtpParameters"]["codecs"][0]["payloadType"], 96);
    media.expect(&consumed).unwrap();
    let consumer = consumed["id"].as_str().unwrap().to_owned();
    let resumed = call(
        &mut ws,
        "resume-consumer",
        json!({"consumerId": consumer}),
        "consumerResumed",
    )
    .await;
    assert_eq!(resumed["consumerId"], consumer.as_str());
    Subscriber {
        ws,
        media,
        consumer,
    }
}

/// Streams packets from the publisher (one per millisecond) while polling everyone, until
/// each subscriber has `more` packets beyond what it had, or `limit` passes. Returns whether
/// they all got them.
fn stream(publisher: &mut Publisher, subscribers: &mut [&mut MediaClient], more: u64) -> bool {
    let targets: Vec<u64> = subscribers.iter().map(|s| s.packets + more).collect();
    let end = Instant::now() + PATIENCE;
    tokio::task::block_in_place(|| {
        while Instant::now() < end {
            write_one(publisher, subscribers);
            if subscribers
                .iter()
                .zip(&targets)
                .all(|(s, &t)| s.packets >= t)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    })
}

/// Writes the publisher's next packet (one video frame of one packet), then polls it and
/// `clients`.
fn write_one(publisher: &mut Publisher, clients: &mut [&mut MediaClient]) {
    let payload = [0x10, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
    let seq = publisher.seq;
    publisher.seq += 1;
    let timestamp = (seq as u32).wrapping_mul(3000);
    publisher.media.write(SSRC, seq, timestamp, &payload, true);
    publisher.media.poll();
    for client in clients.iter_mut() {
        client.poll();
    }
}

async fn media_metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get("/metrics").await.body;
    metric(&text, &format!("switchboard_media_{name}")).unwrap_or(-1.0)
}

/// Waits (bounded) for a media gauge to reach `value`.
async fn gauge_reaches(server: &TestServer, name: &str, value: f64) {
    let end = Instant::now() + PATIENCE;
    loop {
        let now = media_metric(server, name).await;
        if now == value {
            return;
        }
        assert!(
            Instant::now() < end,
            "{name} stayed at {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_reaches_two_consumers() {
    let server = start().await;
    let mut publisher = publisher(&server, "media", 1000).await;
    let mut first = subscriber(&server, "media", "first").await;
    let mut second = subscriber(&server, "media", "second").await;
    assert!(
        stream(
            &mut publisher,
            &mut [&mut first.media, &mut second.media],
            200
        ),
        "consumers got {} and {} packets",
        first.media.packets,
        second.media.packets
    );
    assert!(publisher.media.is_connected());
    // A keyframe is asked for when a consumer starts: the publisher hears of it.
    let end = Instant::now() + PATIENCE;
    while publisher.media.keyframe_requests == 0 && Instant::now() < end {
        assert!(stream(&mut publisher, &mut [&mut first.media], 10));
    }
    assert!(publisher.media.keyframe_requests >= 1);
    assert!(media_metric(&server, "keyframe_requests_out_total").await >= 1.0);
    for subscriber in [&first, &second] {
        let seqs = &subscriber.media.sequence_numbers;
        let steps = seqs
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(
            steps * 10 >= seqs.len() * 9,
            "sequence numbers not consecutive: {seqs:?}"
        );
    }
    assert_eq!(media_metric(&server, "producers").await, 1.0);
    assert_eq!(media_metric(&server, "consumers").await, 2.0);
    assert_eq!(media_metric(&server, "transports").await, 3.0);
    assert!(media_metric(&server, "rtp_forwarded_total").await >= 400.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_consumer_after_the_sequence_wraps_still_decrypts() {
    let server = start().await;
    // The producer's sequence numbers wrap after 536 packets: by the time the late consumer
    // arrives the server has seen rollover 1. Without per-consumer rebasing the late
    // consumer would be written rollover-1 SRTP and could not authenticate one packet.
    let mut publisher = publisher(&server, "wrap", 65_000).await;
    let mut early = subscriber(&server, "wrap", "early").await;
    assert!(stream(&mut publisher, &mut [&mut early.media], 1_000));
    assert!(publisher.seq > 65_536 + 400, "{}", publisher.seq);
    let mut late = subscriber(&server, "wrap", "late").await;
    assert!(
        stream(
            &mut publisher,
            &mut [&mut early.media, &mut late.media],
            200
        ),
        "the late consumer got {} packets",
        late.media.packets
    );
    let first = late.media.sequence_numbers[0];
    assert!(first < 0x8000 + 100, "the late consumer starts at {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_bad_requests_harm_no_one() {
    let server = start().await;
    let mut publisher = publisher(&server, "rough", 1).await;
    let mut subscriber = subscriber(&server, "rough", "watcher").await;
    assert!(stream(&mut publisher, &mut [&mut subscriber.media], 50));

    // Garbage at the media port: random bytes, fake RTP, a STUN request for nobody.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = subscriber.media.local_addr(); // any address of ours; the server's is below
    let created = call(
        &mut subscriber.ws,
        "create-transport",
        json!({"direction": "recv"}),
        "webRtcTransportCreated",
    )
    .await;
    let server_udp = format!(
        "{}:{}",
        created["iceCandidates"][0]["address"].as_str().unwrap(),
        created["iceCandidates"][0]["port"]
    );
    let mut junk = 0x1234_5678u32;
    for n in 0..500u32 {
        junk ^= junk << 13;
        junk ^= junk >> 17;
        junk ^= junk << 5;
        let mut datagram = junk.to_be_bytes().repeat(1 + (n % 40) as usize);
        match n % 3 {
            0 => datagram[0] = 0x80, // looks like RTP
            1 => {
                // looks like a STUN binding request
                datagram.splice(0..0, [0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]);
            }
            _ => {}
        }
        udp.send_to(&datagram, &server_udp).unwrap();
    }
    assert_ne!(port, udp.local_addr().unwrap());

    // Malformed and wrong requests: each a typed error with the rid, nothing else changes.
    let cases = [
        ("produce", json!({"transportId": "t1"}), "bad_parameters"),
        (
            "produce",
            json!({"transportId": 7, "kind": "video", "rtpParameters": {}}),
            "bad_parameters",
        ),
        (
            "create-transport",
            json!({"direction": "sideways"}),
            "bad_parameters",
        ),
        (
            "connect-transport",
            json!({"transportId": "t999", "dtlsParameters": {"fingerprints": []}}),
            "transport_not_found",
        ),
        (
            "consume",
            json!({"transportId": "t999", "producerId": publisher.producer, "rtpCapabilities": {}}),
            "transport_not_found",
        ),
        (
            "resume-consumer",
            json!({"consumerId": "c999"}),
            "bad_parameters",
        ),
        (
            "close-producer",
            json!({"producerId": publisher.producer}),
            "producer_not_found",
        ),
        (
            "close-producer",
            json!({"producerId": "p999"}),
            "producer_not_found",
        ),
    ];
    for (kind, data, code) in cases {
        let answer = ask(&mut subscriber.ws, kind, data.clone()).await;
        assert_eq!(answer["type"], "error", "{kind} {data}: {answer}");
        assert_eq!(answer["data"]["code"], code, "{kind} {data}: {answer}");
    }
    let recv = created["id"].as_str().unwrap();
    for (producer, capabilities, code) in [
        ("p999", MediaClient::capabilities(), "producer_not_found"),
        (
            publisher.producer.as_str(),
            json!({"codecs": [{"mimeType": "video/H264", "clockRate": 90000}]}),
            "cannot_consume",
        ),
    ] {
        let answer = ask(
            &mut subscriber.ws,
            "consume",
            json!({"transportId": recv, "producerId": producer, "rtpCapabilities": capabilities}),
        )
        .await;
        assert_eq!(answer["data"]["code"], code, "{answer}");
    }
    // A transport of someone else's is not found either.
    let answer = ask(
        &mut publisher.ws,
        "connect-transport",
        json!({"transportId": recv, "dtlsParameters": subscriber.media.dtls_parameters()}),
    )
    .await;
    assert_eq!(answer["data"]["code"], "transport_not_found");

    // The stream goes on.
    assert!(stream(&mut publisher, &mut [&mut subscriber.media], 100));
    assert!(media_metric(&server, "dropped_total").await >= 100.0);
    assert_eq!(media_metric(&server, "producers").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_dropping_close_everything() {
    let server = start().await;
    let mut publisher = publisher(&server, "bye", 1).await;
    let mut first = subscriber(&server, "bye", "first").await;
    let mut second = subscriber(&server, "bye", "second").await;
    assert!(stream(
        &mut publisher,
        &mut [&mut first.media, &mut second.media],
        20
    ));

    // The publisher leaves: each consumer hears which of its consumers closed.
    publisher.ws.send(r#"{"type":"leave-room"}"#).await;
    for subscriber in [&mut first, &mut second] {
        let closed = notice(&mut subscriber.ws, "producer-closed").await;
        assert_eq!(closed["producerId"], publisher.producer.as_str());
        assert_eq!(closed["consumerId"], subscriber.consumer.as_str());
    }
    gauge_reaches(&server, "producers", 0.0).await;
    gauge_reaches(&server, "consumers", 0.0).await;
    gauge_reaches(&server, "transports", 2.0).await;

    // Dropped sockets take their transports with them.
    first.ws.close().await;
    drop(second.ws);
    gauge_reaches(&server, "transports", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_producer_tells_its_consumers() {
    let server = start().await;
    let mut publisher = publisher(&server, "close", 1).await;
    let mut watcher = subscriber(&server, "close", "watcher").await;
    let closed = call(
        &mut publisher.ws,
        "close-producer",
        json!({"producerId": publisher.producer}),
        "producerClosed",
    )
    .await;
    assert_eq!(closed["producerId"], publisher.producer.as_str());
    let heard = notice(&mut watcher.ws, "producer-closed").await;
    assert_eq!(heard["consumerId"], watcher.consumer.as_str());
    gauge_reaches(&server, "consumers", 0.0).await;
}

/// Sends `count` packets from the publisher, one per millisecond, polling it and `clients`.
fn send(publisher: &mut Publisher, clients: &mut [&mut MediaClient], count: u64) {
    send_every(publisher, clients, count, Duration::from_millis(1));
}

/// Sends `count` packets from the publisher, one per `interval`, polling it and `clients`.
fn send_every(
    publisher: &mut Publisher,
    clients: &mut [&mut MediaClient],
    count: u64,
    interval: Duration,
) {
    tokio::task::block_in_place(|| {
        for _ in 0..count {
            write_one(publisher, clients);
            std::thread::sleep(interval);
        }
    });
}

/// Polls `clients` for a while, so that packets already on their way have arrived.
fn settle(clients: &mut [&mut MediaClient]) {
    tokio::task::block_in_place(|| {
        let end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < end {
            for client in clients.iter_mut() {
                client.poll();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// The largest step between the distinct sequence numbers a client received, in order: 1
/// when the stream has no gap. (Consumers' numbers start below 2^15: a test's few hundred
/// packets do not wrap.)
fn largest_step(client: &MediaClient) -> u16 {
    let mut received = client.sequence_numbers.clone();
    received.sort_unstable();
    received.dedup();
    received
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_stops_forwarding_and_resuming_continues_without_a_gap() {
    let server = start().await;
    let mut publisher = publisher(&server, "pause", 1).await;
    let mut steady = subscriber(&server, "pause", "steady").await;
    let mut pausing = subscriber(&server, "pause", "pausing").await;
    assert!(stream(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        20
    ));
    // What is checked for gaps starts now: packets the publisher wrote while the consumers
    // were still connecting reach them in one burst, and a loss in it is a loss, not a pause.
    settle(&mut [&mut steady.media, &mut pausing.media]);
    steady.media.sequence_numbers.clear();
    pausing.media.sequence_numbers.clear();
    assert!(stream(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        20
    ));

    // A consumer paused by its owner gets nothing more; the other consumer is untouched.
    let paused = call(
        &mut pausing.ws,
        "pause-consumer",
        json!({"consumerId": pausing.consumer}),
        "consumerPaused",
    )
    .await;
    assert_eq!(paused["consumerId"], pausing.consumer.as_str());
    settle(&mut [&mut steady.media, &mut pausing.media]);
    let held = pausing.media.packets;
    assert!(stream(&mut publisher, &mut [&mut steady.media], 30));
    send(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        30,
    );
    settle(&mut [&mut steady.media, &mut pausing.media]);
    assert_eq!(pausing.media.packets, held, "a paused consumer got packets");

    // Resumed, its sequence numbers go on where they stopped: no gap to repair.
    call(
        &mut pausing.ws,
        "resume-consumer",
        json!({"consumerId": pausing.consumer}),
        "consumerResumed",
    )
    .await;
    assert!(stream(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        20
    ));
    assert_eq!(
        largest_step(&pausing.media),
        1,
        "{:?}",
        pausing.media.sequence_numbers
    );

    // Only the producer's owner may pause it.
    let refused = ask(
        &mut steady.ws,
        "pause-producer",
        json!({"producerId": publisher.producer}),
    )
    .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "producer_not_found", "{refused}");

    // A paused producer reaches no one, and each consumer's owner is told, both ways.
    let paused = call(
        &mut publisher.ws,
        "pause-producer",
        json!({"producerId": publisher.producer}),
        "producerPaused",
    )
    .await;
    assert_eq!(paused["producerId"], publisher.producer.as_str());
    for subscriber in [&mut steady, &mut pausing] {
        let heard = notice(&mut subscriber.ws, "consumer-paused").await;
        assert_eq!(heard["consumerId"], subscriber.consumer.as_str());
        assert_eq!(heard["producerId"], publisher.producer.as_str());
    }
    settle(&mut [&mut steady.media, &mut pausing.media]);
    let held = (steady.media.packets, pausing.media.packets);
    send(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        50,
    );
    settle(&mut [&mut steady.media, &mut pausing.media]);
    assert_eq!((steady.media.packets, pausing.media.packets), held);

    let keyframes = publisher.media.keyframe_requests;
    call(
        &mut publisher.ws,
        "resume-producer",
        json!({"producerId": publisher.producer}),
        "producerResumed",
    )
    .await;
    for subscriber in [&mut steady, &mut pausing] {
        let heard = notice(&mut subscriber.ws, "consumer-resumed").await;
        assert_eq!(heard["consumerId"], subscriber.consumer.as_str());
    }
    assert!(stream(
        &mut publisher,
        &mut [&mut steady.media, &mut pausing.media],
        20
    ));
    assert_eq!(
        largest_step(&steady.media),
        1,
        "{:?}",
        steady.media.sequence_numbers
    );
    assert_eq!(
        largest_step(&pausing.media),
        1,
        "{:?}",
        pausing.media.sequence_numbers
    );
    // The publisher is asked for a keyframe (at once, or when the 500 ms throttle since the
    // last request ends), so the pictures start again.
    let end = Instant::now() + PATIENCE;
    while publisher.media.keyframe_requests == keyframes && Instant::now() < end {
        send(&mut publisher, &mut [], 10);
    }
    assert!(publisher.media.keyframe_requests > keyframes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_losing_one_packet_in_twenty_gets_every_one_repaired() {
    let server = start().await;
    let mut publisher = publisher(&server, "lossy", 1).await;
    let mut lossy = subscriber(&server, "lossy", "lossy").await;
    assert!(stream(&mut publisher, &mut [&mut lossy.media], 10));
    // 250 packets a second, a video stream's rate: a receiver (str0m's, here) asks for a lost
    // packet only while it is among the last 100 it has seen, so at 1,000 a second a repair
    // often comes too late. First a steady second: the packets written while the consumer
    // was connecting come out in a burst, which would push the first losses out of that
    // window as well.
    send_every(
        &mut publisher,
        &mut [&mut lossy.media],
        300,
        Duration::from_millis(4),
    );
    lossy.media.sequence_numbers.clear();
    lossy.media.drop_every = Some(20);
    send_every(
        &mut publisher,
        &mut [&mut lossy.media],
        600,
        Duration::from_millis(4),
    );
    lossy.media.drop_every = None;
    let dropped = lossy.media.dropped;
    assert!(dropped >= 25, "only {dropped} datagrams dropped");
    // Repairs take a NACK and a resend: the last ones may still be on their way.
    let end = Instant::now() + PATIENCE;
    let (received, missing) = loop {
        let mut received = lossy.media.sequence_numbers.clone();
        received.sort_unstable();
        received.dedup();
        // Consumers' sequence numbers start below 2^15: 600 packets do not wrap.
        let (first, last) = (received[0], received[received.len() - 1]);
        let missing: Vec<u16> = (first..=last)
            .filter(|seq| received.binary_search(seq).is_err())
            .collect();
        if missing.is_empty() || Instant::now() > end {
            break (received, missing);
        }
        settle(&mut [&mut lossy.media]);
    };
    assert!(
        missing.is_empty(),
        "{dropped} dropped, never repaired: {missing:?}"
    );
    assert!(received.len() >= 590, "{} of 600 packets", received.len());
    let nacks = media_metric(&server, "nacks_total").await;
    assert!(nacks >= 1.0, "repaired without a NACK? {nacks}");
}

/// The UDP port a transport's candidate names: its media worker's socket.
async fn candidate_port(client: &mut Client) -> u64 {
    let created = call(
        client,
        "create-transport",
        json!({"direction": "recv"}),
        "webRtcTransportCreated",
    )
    .await;
    created["iceCandidates"][0]["port"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_spread_over_the_media_workers_and_each_forwards() {
    let server = start_with(Config {
        media_workers: 3,
        ..Config::for_tests()
    })
    .await;
    assert_eq!(media_metric(&server, "workers").await, 3.0);
    // Six rooms of two: each room's transports all on one worker's port, and the rooms
    // dealt to the workers evenly (each new room to the worker with the fewest members).
    let mut rooms: Vec<(String, u64)> = Vec::new();
    let mut members = Vec::new();
    for n in 0..6 {
        let room = format!("spread-{n}");
        let mut first = conference(&server, &room, "a").await;
        let mut second = conference(&server, &room, "b").await;
        let port = candidate_port(&mut first).await;
        assert_eq!(candidate_port(&mut second).await, port, "{room}");
        rooms.push((room, port));
        members.extend([first, second]);
    }
    let mut ports: Vec<u64> = rooms.iter().map(|(_, port)| *port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{rooms:?}");
    for port in &ports {
        let on_it = rooms.iter().filter(|(_, p)| p == port).count();
        assert_eq!(on_it, 2, "two rooms per worker: {rooms:?}");
    }

    // A publisher and a watcher in a room of each worker, all streaming at once.
    let mut calls = Vec::new();
    for port in &ports {
        let (room, _) = rooms.iter().find(|(_, p)| p == port).unwrap();
        let publisher = publisher(&server, room, 1).await;
        let watcher = subscriber(&server, room, "watcher").await;
        assert_eq!(
            watcher.media.server_addr().port(),
            u16::try_from(*port).unwrap()
        );
        calls.push((publisher, watcher));
    }
    for (publisher, watcher) in &mut calls {
        assert!(stream(publisher, &mut [&mut watcher.media], 30));
    }

    // A publisher that joins a room on another worker leaves its old room's media behind:
    // the old room's worker closes it, and its watcher is told.
    let (mut publisher, mut watcher) = calls.remove(0);
    let (elsewhere, _) = rooms.iter().find(|(_, p)| *p != ports[0]).unwrap();
    publisher
        .ws
        .send_json(json!({"type": "join-room", "data": {"roomId": elsewhere, "username": "mover"}}))
        .await;
    let closed = notice(&mut watcher.ws, "producer-closed").await;
    assert_eq!(closed["producerId"], publisher.producer.as_str());
}

/// Three consecutive UDP ports free on loopback just now.
fn free_udp_range() -> u16 {
    for attempt in 0..200u32 {
        let offset = (std::process::id() + attempt * 97) % 40_000;
        let first = u16::try_from(20_000 + offset).unwrap();
        let bound: Vec<_> = (first..first + 3)
            .map_while(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).ok())
            .collect();
        if bound.len() == 3 {
            return first;
        }
    }
    panic!("no three free consecutive UDP ports on loopback");
}

#[tokio::test]
async fn with_a_port_range_each_worker_takes_its_own_port_of_it() {
    let first = free_udp_range();
    let server = start_with(Config {
        media_workers: 3,
        media_ports: Some((first, first + 2)),
        ..Config::for_tests()
    })
    .await;
    let mut ports = Vec::new();
    let mut members = Vec::new();
    for n in 0..3 {
        let mut member = conference(&server, &format!("ranged-{n}"), "a").await;
        ports.push(candidate_port(&mut member).await);
        members.push(member);
    }
    ports.sort_unstable();
    let range: Vec<u64> = (u64::from(first)..=u64::from(first) + 2).collect();
    assert_eq!(
        ports, range,
        "one room per worker, each on its port of the range"
    );
}

#[tokio::test]
async fn joined_carries_the_router_capabilities_and_requests_need_a_room() {
    let server = start().await;
    let mut lobby = server.connect("/conference").await;
    let answer = ask(&mut lobby, "create-transport", json!({"direction": "send"})).await;
    assert_eq!(answer["data"]["code"], "not_in_room");

    let mut client = server.connect("/conference").await;
    client
        .send(r#"{"type":"join-room","data":{"roomId":"caps","username":"a"}}"#)
        .await;
    let joined = client.expect("joined").await;
    let caps = &joined["data"]["routerRtpCapabilities"];
    assert_eq!(caps["codecs"][0]["mimeType"], "audio/opus");
    let asked = call(
        &mut client,
        "get-router-rtp-capabilities",
        json!({}),
        "routerRtpCapabilities",
    )
    .await;
    assert_eq!(&asked["rtpCapabilities"], caps);
}

#[tokio::test]
async fn each_user_has_a_transport_cap() {
    let server = start().await;
    let mut client = conference(&server, "cap", "greedy").await;
    for _ in 0..4 {
        call(
            &mut client,
            "create-transport",
            json!({"direction": "recv"}),
            "webRtcTransportCreated",
        )
        .await;
    }
    let answer = ask(
        &mut client,
        "create-transport",
        json!({"direction": "recv"}),
    )
    .await;
    assert_eq!(answer["data"]["code"], "limit_reached", "{answer}");
}

#[tokio::test]
async fn without_media_requests_say_so() {
    let server = start_with(Config {
        media: false,
        ..Config::for_tests()
    })
    .await;
    let mut client = server.connect("/conference").await;
    client
        .send(r#"{"type":"join-room","data":{"roomId":"off","username":"a"}}"#)
        .await;
    let joined = client.expect("joined").await;
    assert!(joined["data"].get("routerRtpCapabilities").is_none());
    let answer = ask(
        &mut client,
        "create-transport",
        json!({"direction": "send"}),
    )
    .await;
    assert_eq!(answer["data"]["code"], "media_disabled");
}

/// A media-on node of a cluster on `redis`.
async fn media_node(redis: &Redis, id: u64) -> TestServer {
    let mut config = node_config(redis, id, Duration::from_secs(10));
    config.media = true;
    node_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_rooms_media_lives_on_one_node() {
    let redis = Redis::new();
    let a = media_node(&redis, 0x31).await;
    let b = media_node(&redis, 0x32).await;
    // The room's first member pins its media to node A.
    let mut anchor = conference(&a, "pinned", "anchor").await;
    // A publisher and a subscriber on node B use A's SFU through the cluster.
    let mut publisher = publisher(&b, "pinned", 1000).await;
    let mut remote = subscriber(&b, "pinned", "remote").await;
    let mut local = subscriber(&a, "pinned", "local").await;
    assert!(
        stream(
            &mut publisher,
            &mut [&mut remote.media, &mut local.media],
            200
        ),
        "consumers got {} and {} packets",
        remote.media.packets,
        local.media.packets
    );
    assert_eq!(media_metric(&a, "transports").await, 3.0);
    assert_eq!(media_metric(&a, "producers").await, 1.0);
    assert_eq!(media_metric(&b, "transports").await, 0.0);
    assert_eq!(
        anchor.expect("user-joined").await["data"]["user"],
        "publisher"
    );
    // Node A goes away: the room's members on B hear its producers close, and the room's
    // media moves to B, where publishing works again.
    a.stop();
    let closed = notice(&mut remote.ws, "producer-closed").await;
    assert_eq!(closed["producerId"], publisher.producer.as_str());
    let mut again = publish(publisher.ws, 5000).await;
    let announced = notice(&mut remote.ws, "new-producer").await;
    assert_eq!(announced["producerId"], again.producer.as_str());
    let (id, mut media) = transport(&mut remote.ws, "recv").await;
    let consumed = call(
        &mut remote.ws,
        "consume",
        json!({"transportId": id, "producerId": again.producer,
               "rtpCapabilities": MediaClient::capabilities()}),
        "consumed",
    )
    .await;
    media.expect(&consumed).unwrap();
    call(
        &mut remote.ws,
        "resume-consumer",
        json!({"consumerId": consumed["id"]}),
        "consumerResumed",
    )
    .await;
    assert!(stream(&mut again, &mut [&mut media], 100));
    assert_eq!(media_metric(&b, "producers").await, 1.0);
}

/// Webhooks hear producers published and closed (by the media worker, docs/webhooks.md).
#[tokio::test]
async fn webhooks_hear_producers_published_and_closed() {
    let mut receiver = Receiver::start(0).await;
    let mut config = Config::for_tests();
    config.webhooks = Some(switchboard_server::WebhookConfig {
        urls: vec![receiver.url()],
        secret: None,
        capacity: 100,
        timeout: Duration::from_secs(5),
    });
    let server = start_with(config).await;
    let publisher = publisher(&server, "studio", 1).await;
    let published = loop {
        let event = receiver.delivered().await.json();
        if event["event"] == "producer_published" {
            break event;
        }
    };
    assert_eq!(published["room"], "studio");
    assert_eq!(published["producer"]["id"], publisher.producer.as_str());
    assert_eq!(published["producer"]["kind"], "video");
    assert_eq!(published["producer"]["peer"], "publisher");
    // Leaving closes the producer.
    publisher.ws.close().await;
    let closed = loop {
        let event = receiver.delivered().await.json();
        if event["event"] == "producer_closed" {
            break event;
        }
    };
    assert_eq!(closed["producer"]["id"], publisher.producer.as_str());
}

/// A sysctl's value, e.g. `net/core/rmem_max`.
fn sysctl(name: &str) -> usize {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_media_socket_gets_the_buffer_it_asks_for_or_says_the_kernel_capped_it() {
    let small = 64 * 1024;
    let server = start_with(Config {
        media_socket_buffer: small,
        ..Config::for_tests()
    })
    .await;
    for buffer in ["receive_buffer_bytes", "send_buffer_bytes"] {
        let granted = media_metric(&server, buffer).await;
        assert!(granted >= small as f64, "{buffer}: {granted}");
    }
    assert_eq!(media_metric(&server, "buffer_capped").await, 0.0);

    // Past the sysctls the kernel grants less, and the server says so.
    let most = sysctl("net/core/rmem_max").max(sysctl("net/core/wmem_max"));
    let big = most.saturating_mul(4).min(i32::MAX as usize);
    assert!(
        big > 2 * most,
        "rmem_max/wmem_max ({most}) too large to ask past"
    );
    let server = start_with(Config {
        media_socket_buffer: big,
        ..Config::for_tests()
    })
    .await;
    assert_eq!(media_metric(&server, "buffer_capped").await, 1.0);
    let granted = media_metric(&server, "receive_buffer_bytes").await;
    assert!(
        granted < big as f64 && granted >= small as f64,
        "receive buffer {granted} of {big} asked"
    );
}

/// A VP8 simulcast publisher over real UDP: two layers, each frame a keyframe when the
/// server asked for one since the last. The last payload byte is the packet's layer.
struct SimulcastPublisher {
    ws: Client,
    media: MediaClient,
    producer: String,
    frame: u64,
    requests_seen: u64,
}

const LAYER_SSRCS: [u32; 2] = [0x5555_0001, 0x5555_0002];

impl SimulcastPublisher {
    /// One frame on both layers, then polls it and `clients`.
    fn frame(&mut self, clients: &mut [&mut MediaClient]) {
        let keyframe = self.frame == 0 || self.media.keyframe_requests > self.requests_seen;
        self.requests_seen = self.media.keyframe_requests;
        for (layer, &ssrc) in LAYER_SSRCS.iter().enumerate() {
            let timestamp = (layer as u32 * 7_000_000).wrapping_add(self.frame as u32 * 3000);
            let payload = [0x10, u8::from(!keyframe), 0x9d, 0x01, 0x2a, layer as u8];
            self.media
                .write(ssrc, self.frame, timestamp, &payload, true);
        }
        self.frame += 1;
        self.media.poll();
        for client in clients.iter_mut() {
            client.poll();
        }
    }

    /// Frames every 5 ms until `done` says so (bounded by PATIENCE); whether it did.
    fn until(
        &mut self,
        clients: &mut [&mut MediaClient],
        done: impl Fn(&[&mut MediaClient]) -> bool,
    ) -> bool {
        let end = Instant::now() + PATIENCE;
        tokio::task::block_in_place(|| {
            while Instant::now() < end {
                self.frame(clients);
                if done(clients) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        })
    }
}

/// The layer the next `consumer-layers-changed` names, which must be about `consumer`.
async fn layer_changed(ws: &mut Client, consumer: &str) -> Value {
    let changed = notice(ws, "consumer-layers-changed").await;
    assert_eq!(changed["consumerId"], consumer);
    changed["spatialLayer"].clone()
}

/// The layer of each packet received since the `from`-th.
fn layers_since(client: &MediaClient, from: usize) -> Vec<u8> {
    let mut layers = client.tags[from..].to_vec();
    layers.dedup();
    layers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_reach_each_consumer_as_it_prefers() {
    layers_as_preferred(&start().await, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layers_reach_consumers_on_another_worker_as_they_prefer() {
    layers_as_preferred(&spread_server().await, true).await;
}

/// A server with two media workers whose rooms spread past one member on the first.
async fn spread_server() -> TestServer {
    start_with(Config {
        media_workers: 2,
        media_room_spread: 1,
        ..Config::for_tests()
    })
    .await
}

/// A two-layer publisher and two viewers, one preferring the low layer: each gets its layer,
/// then the low one moves up. With `spread`, the room is past its spread and the low viewer's
/// media is on the other worker, its layers piped there.
async fn layers_as_preferred(server: &TestServer, spread: bool) {
    let mut ws = conference(server, "layers", "publisher").await;
    let (media, produced) =
        produce_video(&mut ws, |media| media.publish_simulcast("0", &LAYER_SSRCS)).await;
    assert_eq!(produced["type"], "simulcast");
    let mut publisher = SimulcastPublisher {
        ws,
        media,
        producer: produced["id"].as_str().unwrap().to_owned(),
        frame: 0,
        requests_seen: 0,
    };
    // Two viewers: one wants the low layer, one takes the default (the top).
    let mut viewers = Vec::new();
    for (name, preferred) in [("low", Some(0)), ("high", None)] {
        let mut ws = conference(server, "layers", name).await;
        let (id, mut media) = transport(&mut ws, "recv").await;
        let mut request = json!({"transportId": id, "producerId": publisher.producer,
                                 "rtpCapabilities": MediaClient::capabilities()});
        if let Some(layer) = preferred {
            request["preferredLayers"] = json!({"spatialLayer": layer});
        }
        let consumed = call(&mut ws, "consume", request, "consumed").await;
        assert_eq!(consumed["type"], "simulcast");
        assert_eq!(consumed["layers"], 2);
        assert_eq!(
            consumed["preferredLayers"]["spatialLayer"],
            preferred.unwrap_or(1)
        );
        media.expect(&consumed).unwrap();
        viewers.push((ws, media, consumed["id"].as_str().unwrap().to_owned()));
    }
    let [(mut low_ws, mut low, low_consumer), (_high_ws, mut high, _)]: [_; 2] =
        viewers.try_into().ok().unwrap();
    let other_worker = low.server_addr() != publisher.media.server_addr();
    assert_eq!(other_worker, spread, "the low viewer's worker");
    assert!(
        publisher.until(&mut [&mut low, &mut high], |c| c
            .iter()
            .all(|c| c.packets >= 50)),
        "both viewers receive"
    );
    assert_eq!(layers_since(&low, 0), [0]);
    assert_eq!(layers_since(&high, 0), [1]);
    assert_eq!(layer_changed(&mut low_ws, &low_consumer).await, 0);

    // The low viewer asks for the top layer and moves to it, without a gap.
    let set = call(
        &mut low_ws,
        "set-preferred-layers",
        json!({"consumerId": low_consumer, "spatialLayer": 1}),
        "preferredLayersSet",
    )
    .await;
    assert_eq!(set["spatialLayer"], 1);
    let asked_at = low.tags.len();
    assert!(
        publisher.until(&mut [&mut low, &mut high], |c| c[0].tags.last() == Some(&1)
            && c[0].tags.len() > asked_at + 20),
        "the low viewer moves up"
    );
    assert_eq!(layers_since(&low, asked_at), [0, 1]);
    assert_eq!(largest_step(&low), 1, "no gap across the move");
    assert_eq!(layer_changed(&mut low_ws, &low_consumer).await, 1);
    // An unknown consumer is refused, with a typed error (as pause-consumer's).
    let refused = ask(
        &mut low_ws,
        "set-preferred-layers",
        json!({"consumerId": "c999", "spatialLayer": 0}),
    )
    .await;
    assert_eq!(refused["data"]["code"], "bad_parameters");
    assert_eq!(refused["data"]["message"], "no consumer c999");
    drop(publisher.ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_past_its_spread_uses_every_worker_and_pipes_its_producers() {
    let server = spread_server().await;
    let mut publisher = publisher(&server, "big", 1).await;
    let publisher_port = publisher.media.server_addr().port();
    // Past one member on its first worker, members alternate: two watchers on each worker,
    // each hearing of the producer (announced by its own worker) and consuming it there.
    let mut watchers = Vec::new();
    for n in 0..4 {
        watchers.push(subscriber(&server, "big", &format!("watcher{n}")).await);
    }
    let ports: Vec<u16> = watchers
        .iter()
        .map(|w| w.media.server_addr().port())
        .collect();
    let elsewhere = ports.iter().filter(|&&p| p != publisher_port).count();
    assert_eq!(elsewhere, 2, "two watchers on the other worker: {ports:?}");
    let mut clients: Vec<&mut MediaClient> = watchers.iter_mut().map(|w| &mut w.media).collect();
    assert!(
        stream(&mut publisher, &mut clients, 30),
        "every watcher, on either worker, receives"
    );
    // Each packet crosses once, however many watchers it has over there.
    assert!(media_metric(&server, "piped_total").await >= 30.0);
    assert_eq!(media_metric(&server, "pipe_dropped_total").await, 0.0);
    for watcher in &watchers {
        assert_eq!(largest_step(&watcher.media), 1, "no gap");
    }

    // The watchers over there leave: the pipe stops, the others still receive.
    watchers.retain(|w| w.media.server_addr().port() == publisher_port);
    gauge_reaches(&server, "consumers", 2.0).await;
    let piped = media_metric(&server, "piped_total").await;
    let mut clients: Vec<&mut MediaClient> = watchers.iter_mut().map(|w| &mut w.media).collect();
    assert!(stream(&mut publisher, &mut clients, 30));
    assert_eq!(
        media_metric(&server, "piped_total").await,
        piped,
        "nothing piped to nobody"
    );
    // A late watcher goes to the emptied worker, and the pipe starts again.
    let late = subscriber(&server, "big", "late").await;
    assert_ne!(late.media.server_addr().port(), publisher_port);
    watchers.push(late);
    let mut clients: Vec<&mut MediaClient> = watchers.iter_mut().map(|w| &mut w.media).collect();
    assert!(stream(&mut publisher, &mut clients, 30));
    assert!(media_metric(&server, "piped_total").await >= piped + 30.0);

    // Pausing and closing reach the consumers on the other worker too.
    let pause = ("pause-producer", "producerPaused");
    every_watcher_hears(&mut publisher, pause, &mut watchers, "consumer-paused").await;
    let close = ("close-producer", "producerClosed");
    every_watcher_hears(&mut publisher, close, &mut watchers, "producer-closed").await;
    gauge_reaches(&server, "consumers", 0.0).await;
    gauge_reaches(&server, "producers", 0.0).await;
}

/// The publisher's `(request, reply)` about its producer; then each watcher hears `heard`
/// about its own consumer.
async fn every_watcher_hears(
    publisher: &mut Publisher,
    (request, reply): (&str, &str),
    watchers: &mut [Subscriber],
    heard: &str,
) {
    let producer = json!({"producerId": publisher.producer});
    call(&mut publisher.ws, request, producer, reply).await;
    for watcher in watchers {
        let news = notice(&mut watcher.ws, heard).await;
        assert_eq!(news["consumerId"], watcher.consumer.as_str());
    }
}
