//! The hub's rules, on one node, in memory.

use std::net::Ipv4Addr;

use tokio::sync::mpsc;

use super::*;
use crate::{DialectKind, Message, SignalKind};

fn profile(dialect: DialectKind) -> PeerProfile {
    PeerProfile {
        dialect,
        ip: Ipv4Addr::LOCALHOST.into(),
        connected_at: SystemTime::UNIX_EPOCH,
    }
}

fn name(text: &str) -> PeerName {
    PeerName::parse(text).unwrap()
}

fn room(text: &str) -> RoomId {
    RoomId::parse(text).unwrap()
}

struct Client {
    key: PeerKey,
    rx: mpsc::Receiver<Event>,
}

impl Client {
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }
}

fn connect(hub: &mut Hub, dialect: DialectKind, capacity: usize) -> Client {
    let (tx, rx) = mpsc::channel(capacity);
    Client {
        key: hub.register(profile(dialect), tx),
        rx,
    }
}

fn joined(hub: &mut Hub, who: &str, room_id: &str) -> Client {
    let mut client = connect(hub, DialectKind::Conference, 16);
    hub.join(client.key, room(room_id), name(who), None)
        .unwrap();
    client.events();
    client
}

fn user(hub: &mut Hub, id: &str) -> Client {
    let (tx, rx) = mpsc::channel(16);
    let key = hub
        .register_user(profile(DialectKind::Pairing), tx, name(id))
        .unwrap();
    let mut client = Client { key, rx };
    client.events();
    client
}

fn pair(hub: &mut Hub, from: &Client, to: &str, kind: SignalKind) -> Result<(), CoreError> {
    let message = Message::new(kind, None);
    hub.execute(
        from.key,
        Command::Pair {
            to: to.into(),
            message,
        },
    )
    .map(|_| ())
}

#[test]
fn join_announces_once_and_replies_with_the_roster() {
    let mut hub = Hub::default();
    let mut alice = joined(&mut hub, "alice", "x");
    let mut bob = connect(&mut hub, DialectKind::Conference, 16);
    hub.join(bob.key, room("x"), name("bob"), None).unwrap();
    let events = alice.events();
    assert!(matches!(&events[..], [Event::PeerJoined { name, .. }] if name.as_str() == "bob"));
    let events = bob.events();
    let [Event::Joined(joined)] = &events[..] else {
        panic!("{events:?}")
    };
    let members = &joined.members;
    assert_eq!(
        members.iter().map(PeerName::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
}

#[test]
fn a_taken_name_is_refused_and_freed_when_its_owner_leaves() {
    let mut hub = Hub::default();
    let alice = joined(&mut hub, "alice", "x");
    let other = connect(&mut hub, DialectKind::RoomRelay, 16);
    let taken = hub
        .join(other.key, room("x"), name("alice"), None)
        .map(|_| ());
    assert_eq!(taken, Err(CoreError::NameTaken(name("alice"))));
    hub.disconnect(alice.key);
    assert!(hub.join(other.key, room("x"), name("alice"), None).is_ok());
}

#[test]
fn leaving_tells_each_member_once_and_empty_rooms_vanish() {
    let mut hub = Hub::default();
    let mut alice = joined(&mut hub, "alice", "x");
    let bob = joined(&mut hub, "bob", "x");
    alice.events();
    hub.disconnect(bob.key);
    hub.disconnect(bob.key);
    let events = alice.events();
    assert!(matches!(&events[..], [Event::PeerLeft { name, .. }] if name.as_str() == "bob"));
    hub.disconnect(alice.key);
    assert_eq!(hub.census().rooms, 0);
}

#[test]
fn addressed_and_room_wide_sends_reach_the_right_peers() {
    let mut hub = Hub::default();
    let alice = joined(&mut hub, "alice", "x");
    let mut bob = joined(&mut hub, "bob", "x");
    let mut carol = joined(&mut hub, "carol", "x");
    bob.events();
    let send = |to: Option<&'static str>, echo| Command::Send {
        to: to.map(Into::into),
        room: None,
        echo,
        message: Message::new(SignalKind::Offer, Some(RawJson::new("{}"))),
        rid: None,
    };
    hub.execute(alice.key, send(Some("bob"), false)).unwrap();
    assert_eq!(bob.events().len(), 1);
    assert!(carol.events().is_empty());
    let missing = hub
        .execute(alice.key, send(Some("dave"), false))
        .map(|_| ());
    assert_eq!(missing, Err(CoreError::PeerNotFound("dave".into())));
    hub.execute(alice.key, send(None, false)).unwrap();
    let events = carol.events();
    let [Event::Signal(signal)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(signal.from.as_str(), "alice");
    assert!(!signal.addressed);
}

#[test]
fn a_full_outbox_evicts_its_peer_and_tells_the_room_once() {
    let mut hub = Hub::default();
    let mut fast = joined(&mut hub, "fast", "x");
    let mut slow = connect(&mut hub, DialectKind::Conference, 2);
    hub.join(slow.key, room("x"), name("slow"), None).unwrap();
    let sender = joined(&mut hub, "sender", "x");
    let offer = || Command::Send {
        to: None,
        room: None,
        echo: false,
        message: Message::new(SignalKind::Offer, None),
        rid: None,
    };
    for _ in 0..4 {
        hub.execute(sender.key, offer()).unwrap();
        fast.events();
    }
    assert_eq!(hub.census().evictions, 1);
    assert_eq!(hub.census().connections[DialectKind::Conference.index()], 2);
    hub.execute(sender.key, offer()).unwrap();
    let events = fast.events();
    assert_eq!(events.len(), 1, "no second peer_left, no stall: {events:?}");
    // The evicted peer's outbox is closed: its connection task will see the end.
    let drained = slow.events();
    assert!(!drained.is_empty());
    assert!(slow.rx.is_closed());
}

#[test]
fn pairing_follows_the_state_machine() {
    let mut hub = Hub::default();
    let mut a = user(&mut hub, "a");
    let mut b = user(&mut hub, "b");
    let c = user(&mut hub, "c");
    assert_eq!(
        pair(&mut hub, &a, "b", SignalKind::Offer),
        Err(CoreError::InvalidState("not connected to that user"))
    );
    assert_eq!(
        pair(&mut hub, &a, "zz", SignalKind::Ping),
        Err(CoreError::UserNotFound("zz".into()))
    );
    pair(&mut hub, &a, "b", SignalKind::Ping).unwrap();
    // b pinging a back at once: a is busy connecting.
    assert_eq!(
        pair(&mut hub, &b, "a", SignalKind::Ping),
        Err(CoreError::UserBusy(name("a")))
    );
    assert_eq!(
        pair(&mut hub, &c, "a", SignalKind::Pong),
        Err(CoreError::InvalidState("no pending ping from that user"))
    );
    pair(&mut hub, &b, "a", SignalKind::Pong).unwrap();
    pair(&mut hub, &a, "b", SignalKind::Offer).unwrap();
    assert_eq!(
        pair(&mut hub, &c, "a", SignalKind::Ping),
        Err(CoreError::UserBusy(name("a")))
    );
    assert_eq!(b.events().len(), 2);
    assert_eq!(a.events().len(), 1);
    pair(&mut hub, &a, "b", SignalKind::Disconnect).unwrap();
    assert_eq!(hub.pairing_state(a.key), (State::Idle, None));
    assert_eq!(hub.pairing_state(b.key), (State::Idle, None));
}

#[test]
fn a_dropped_pairing_user_frees_everyone_waiting_on_it() {
    let mut hub = Hub::default();
    let mut a = user(&mut hub, "a");
    let b = user(&mut hub, "b");
    let mut c = user(&mut hub, "c");
    pair(&mut hub, &a, "b", SignalKind::Ping).unwrap();
    pair(&mut hub, &c, "b", SignalKind::Ping).unwrap();
    hub.disconnect(b.key);
    for client in [&mut a, &mut c] {
        let events = client.events();
        assert!(
            matches!(&events[..], [Event::PartnerGone { from }] if from.as_str() == "b"),
            "{events:?}"
        );
        assert_eq!(hub.pairing_state(client.key), (State::Idle, None));
    }
}

#[test]
fn stats_list_oldest_first_and_count_everyone() {
    let mut hub = Hub::default();
    for i in 0..5 {
        joined(&mut hub, &format!("p{i}"), "x");
    }
    let stats = hub.stats(2);
    assert_eq!(stats.connected, 5);
    let ids: Vec<_> = stats.users.iter().map(|u| u.id.clone().unwrap()).collect();
    assert_eq!(ids, [name("p0"), name("p1")]);
}
