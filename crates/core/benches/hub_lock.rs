//! How long one operation holds the hub's lock: `SharedHub::with(|hub| hub.execute(..))`,
//! timed around the lock alone, for the operations a busy node repeats (a relay to one
//! addressed peer, a room-wide relay to 50, a join into a room of one, a leave from a room of
//! two). Everything a socket task does outside the lock (decoding the frame, building the
//! command, reading its outbox) is left out of the timing, so the figure is the serial part
//! of each operation: one hub can do at most `1 / hold time` of them per second however many
//! cores the box has (docs/performance.md, "Hub lock").
//!
//! Run with `cargo bench -p switchboard-core --bench hub_lock`; timing is never a test here.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard_core::{
    Command, DialectKind, Event, Message, PeerKey, PeerName, PeerProfile, RawJson, RoomId,
    SharedHub, SignalKind,
};
use tokio::sync::mpsc;

/// Operations timed back to back before the outboxes are emptied (untimed); each outbox
/// holds a whole batch, so no peer is ever found slow and evicted.
const BATCH: usize = 256;
/// Payload bytes of a relayed message, as in the relay figures of docs/performance.md.
const PAYLOAD_BYTES: usize = 1024;
/// Recipients of the room-wide relay.
const FANOUT: usize = 50;

/// One registered connection and the receiving end of its outbox.
struct Client {
    key: PeerKey,
    inbox: mpsc::Receiver<Event>,
}

impl Client {
    fn connect(hub: &SharedHub) -> Client {
        let (outbox, inbox) = mpsc::channel(2 * BATCH);
        let profile = PeerProfile {
            dialect: DialectKind::QueryRooms,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connected_at: SystemTime::UNIX_EPOCH,
            grant: None,
        };
        let key = hub.with(|hub| hub.register(profile, outbox));
        Client { key, inbox }
    }

    fn join(hub: &SharedHub, room: &str, name: &str) -> Client {
        let mut client = Client::connect(hub);
        hub.with(|hub| hub.execute(client.key, join(room, name)))
            .expect("a fresh name joins");
        client.drain();
        client
    }

    fn drain(&mut self) {
        while self.inbox.try_recv().is_ok() {}
    }
}

fn join(room: &str, name: &str) -> Command<'static> {
    Command::Join {
        room: RoomId::parse(room).unwrap(),
        name: PeerName::parse(name).unwrap(),
        rid: None,
    }
}

fn leave() -> Command<'static> {
    Command::Leave {
        room: None,
        rid: None,
    }
}

fn offer(to: Option<&'static str>, payload: &RawJson) -> Command<'static> {
    Command::Send {
        to: to.map(Into::into),
        room: None,
        echo: false,
        message: Message::new(SignalKind::Offer, Some(payload.clone())),
        rid: None,
    }
}

/// `{"sdp":"xxx…"}`, PAYLOAD_BYTES long, copied once as a dialect would.
fn payload() -> RawJson {
    let pad = PAYLOAD_BYTES - r#"{"sdp":""}"#.len();
    RawJson::new(&format!(r#"{{"sdp":"{}"}}"#, "x".repeat(pad)))
}

/// Times `iters` operations, `BATCH` at a time: `prepare` builds a batch's commands (who
/// sends what) untimed, each is executed under the lock and timed, then `after` runs
/// untimed (emptying outboxes, undoing joins).
fn timed(
    hub: &SharedHub,
    iters: u64,
    mut prepare: impl FnMut(usize) -> Vec<(PeerKey, Command<'static>)>,
    mut after: impl FnMut(&SharedHub),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = usize::try_from(left).unwrap_or(BATCH).min(BATCH);
        let commands = prepare(batch);
        let started = Instant::now();
        for (key, command) in commands {
            let outcome = hub.with(|hub| hub.execute(key, command));
            black_box(outcome).expect("every benchmarked command succeeds");
        }
        total += started.elapsed();
        after(hub);
        left -= batch as u64;
    }
    total
}

fn hub_lock(c: &mut Criterion) {
    let payload = payload();
    let mut group = c.benchmark_group("hub lock hold");

    group.bench_function("lock alone (empty closure)", |b| {
        let hub = SharedHub::default();
        b.iter(|| hub.with(|hub| black_box(hub).census().rooms))
    });

    group.bench_function("relay 1 KiB to one addressed peer", |b| {
        let hub = SharedHub::default();
        let alice = Client::join(&hub, "pair", "alice");
        let mut bob = Client::join(&hub, "pair", "bob");
        b.iter_custom(|iters| {
            timed(
                &hub,
                iters,
                |n| {
                    (0..n)
                        .map(|_| (alice.key, offer(Some("bob"), &payload)))
                        .collect()
                },
                |_| bob.drain(),
            )
        })
    });

    group.bench_function("relay 1 KiB room-wide to 50", |b| {
        let hub = SharedHub::default();
        let sender = Client::join(&hub, "wide", "sender");
        let mut others: Vec<Client> = (0..FANOUT)
            .map(|i| Client::join(&hub, "wide", &format!("p{i}")))
            .collect();
        b.iter_custom(|iters| {
            timed(
                &hub,
                iters,
                |n| {
                    (0..n)
                        .map(|_| (sender.key, offer(None, &payload)))
                        .collect()
                },
                |_| others.iter_mut().for_each(Client::drain),
            )
        })
    });

    // Joins and leaves: BATCH rooms, each with a resident; BATCH joiners, one per room. The
    // join is timed and its leave is not, and the other way round.
    let rooms: Vec<String> = (0..BATCH).map(|i| format!("room{i}")).collect();
    group.bench_function("join a room of one", |b| {
        let hub = SharedHub::default();
        let (mut residents, mut joiners) = residents_and_joiners(&hub, &rooms);
        let keys: Vec<PeerKey> = joiners.iter().map(|joiner| joiner.key).collect();
        b.iter_custom(|iters| {
            timed(
                &hub,
                iters,
                |n| {
                    keys[..n]
                        .iter()
                        .zip(&rooms)
                        .map(|(&key, room)| (key, join(room, "joiner")))
                        .collect()
                },
                |hub| {
                    for joiner in &mut joiners {
                        let _ = hub.with(|hub| hub.execute(joiner.key, leave()));
                        joiner.drain();
                    }
                    residents.iter_mut().for_each(Client::drain);
                },
            )
        })
    });

    group.bench_function("leave a room of two", |b| {
        let hub = SharedHub::default();
        let (mut residents, mut joiners) = residents_and_joiners(&hub, &rooms);
        b.iter_custom(|iters| {
            timed(
                &hub,
                iters,
                |n| {
                    for (joiner, room) in joiners[..n].iter_mut().zip(&rooms) {
                        hub.with(|hub| hub.execute(joiner.key, join(room, "joiner")))
                            .expect("the joiner's name is free");
                        joiner.drain();
                    }
                    joiners[..n].iter().map(|j| (j.key, leave())).collect()
                },
                |_| residents.iter_mut().for_each(Client::drain),
            )
        })
    });
    group.finish();
}

/// A resident in each of `rooms`, and as many joiners connected but in no room.
fn residents_and_joiners(hub: &SharedHub, rooms: &[String]) -> (Vec<Client>, Vec<Client>) {
    let residents = rooms
        .iter()
        .map(|room| Client::join(hub, room, "resident"))
        .collect();
    let joiners = rooms.iter().map(|_| Client::connect(hub)).collect();
    (residents, joiners)
}

criterion_group!(benches, hub_lock);
criterion_main!(benches);
