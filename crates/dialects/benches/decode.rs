//! Micro-benchmarks of the relay hot path, through the public API only: decoding a 1 KiB
//! offer, encoding the relayed event for its receiver, and the whole path (decode, the
//! hub's relay, encode), for query-rooms and conference. The events come from a real `Hub`,
//! so the benchmark follows the core's types as they change. Run with
//! `cargo bench -p switchboard-dialects --bench decode`; timing is never a test here.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchboard_core::{Command, Event, Hub, PeerKey, PeerName, PeerProfile, RoomId};
use switchboard_dialects::{Conference, Dialect, QueryRooms};
use tokio::sync::mpsc;

/// Payload bytes, as in the relay figures of docs/performance.md.
const PAYLOAD_BYTES: usize = 1024;

/// Two peers, alice and bob, in one room of a real hub, with their codec sessions set up
/// by the hub's own `Joined` events.
struct Room<D: Dialect> {
    hub: Hub,
    alice: PeerKey,
    alice_session: D::Session,
    bob_inbox: mpsc::Receiver<Event>,
    bob_session: D::Session,
}

impl<D: Dialect> Room<D> {
    fn new() -> Self {
        let mut hub = Hub::default();
        let (alice, mut alice_inbox, alice_session) = join::<D>(&mut hub, "alice");
        let (_bob, bob_inbox, bob_session) = join::<D>(&mut hub, "bob");
        while alice_inbox.try_recv().is_ok() {} // bob's arrival
        Room {
            hub,
            alice,
            alice_session,
            bob_inbox,
            bob_session,
        }
    }

    /// Alice's frame decoded, relayed by the hub, and the event bob's socket would get.
    fn relay(&mut self, frame: &str) -> Event {
        let command = D::decode(&mut self.alice_session, frame).expect("a valid offer");
        self.hub
            .execute(self.alice, command)
            .expect("bob is in the room");
        self.bob_inbox.try_recv().expect("the hub delivered to bob")
    }
}

fn join<D: Dialect>(hub: &mut Hub, name: &str) -> (PeerKey, mpsc::Receiver<Event>, D::Session) {
    let (outbox, mut inbox) = mpsc::channel(16);
    let profile = PeerProfile {
        dialect: D::KIND,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        connected_at: SystemTime::UNIX_EPOCH,
        grant: None,
    };
    let key = hub.register(profile, outbox);
    let room = RoomId::parse("bench").unwrap();
    let join = Command::Join {
        room,
        name: PeerName::parse(name).unwrap(),
        rid: None,
    };
    hub.execute(key, join).unwrap();
    let mut session = D::Session::default();
    let joined = inbox.try_recv().expect("the hub answers a join");
    D::encode(&mut session, &joined, &mut String::new());
    (key, inbox, session)
}

/// `{"sdp":"v=0…xxx"}`, PAYLOAD_BYTES long.
fn payload() -> String {
    let sdp = "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n";
    let pad = PAYLOAD_BYTES - sdp.len() - r#"{"sdp":""}"#.len();
    format!(r#"{{"sdp":"{sdp}{}"}}"#, "a".repeat(pad))
}

fn bench_dialect<D: Dialect>(c: &mut Criterion, name: &str, frame: &str) {
    let mut room = Room::<D>::new();
    let event = room.relay(frame);
    let mut out = String::with_capacity(2 * frame.len());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let command = D::decode(&mut room.alice_session, black_box(frame));
            black_box(command.is_ok())
        })
    });
    group.bench_function("encode", |b| {
        b.iter(|| {
            D::encode(&mut room.bob_session, black_box(&event), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("decode+relay+encode", |b| {
        b.iter(|| {
            let event = room.relay(black_box(frame));
            D::encode(&mut room.bob_session, &event, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn offers(c: &mut Criterion) {
    let payload = payload();
    let query_rooms = format!(r#"{{"type":"offer","to":"bob","payload":{payload}}}"#);
    let conference =
        format!(r#"{{"type":"webrtc-offer","data":{{"target":"bob","payload":{payload}}}}}"#);
    bench_dialect::<QueryRooms>(c, "query-rooms offer 1KiB", &query_rooms);
    bench_dialect::<Conference>(c, "conference webrtc-offer 1KiB", &conference);
}

criterion_group!(benches, offers);
criterion_main!(benches);
