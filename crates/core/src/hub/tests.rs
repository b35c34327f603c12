//! The hub's rules, on one node, in memory.

use std::net::Ipv4Addr;

use tokio::sync::mpsc;

use super::*;
use crate::{DialectKind, Grant, Message, RoomGrant, SignalKind};

fn profile(dialect: DialectKind) -> PeerProfile {
    PeerProfile {
        dialect,
        ip: Ipv4Addr::LOCALHOST.into(),
        connected_at: SystemTime::UNIX_EPOCH,
        grant: None,
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
    assert!(matches!(&events[..], [Event::PeerJoined(joined)] if joined.name.as_str() == "bob"));
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
fn presence_news_is_made_once_per_room_not_once_per_member() {
    let mut hub = Hub::default();
    let mut alice = joined(&mut hub, "alice", "x");
    let mut bob = joined(&mut hub, "bob", "x");
    alice.events();
    let carol = joined(&mut hub, "carol", "x");
    let (told_alice, told_bob) = (alice.events(), bob.events());
    let ([Event::PeerJoined(a)], [Event::PeerJoined(b)]) = (&told_alice[..], &told_bob[..]) else {
        panic!("{told_alice:?} {told_bob:?}")
    };
    assert!(Arc::ptr_eq(a, b));
    hub.disconnect(carol.key);
    let (told_alice, told_bob) = (alice.events(), bob.events());
    let ([Event::PeerLeft(a)], [Event::PeerLeft(b)]) = (&told_alice[..], &told_bob[..]) else {
        panic!("{told_alice:?} {told_bob:?}")
    };
    assert!(Arc::ptr_eq(a, b));
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
    assert!(matches!(&events[..], [Event::PeerLeft(left)] if left.name.as_str() == "bob"));
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

mod cluster {
    //! The hub as one node of a cluster, with the cluster's news given by hand.

    use std::sync::Mutex;

    use super::*;
    use crate::{Inbound, NodeId, Overloaded, RawFrame, Seat, Signal, Uplink};

    const ME: NodeId = NodeId(1);
    const OTHER: NodeId = NodeId(2);

    /// What the hub asked of the cluster.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl Uplink for Recorder {
        fn relay(
            &self,
            room: &RoomId,
            to: Option<(NodeId, &PeerName)>,
            signal: &Signal,
            retain: bool,
        ) -> Result<(), Overloaded> {
            let to = to.map_or("*".to_owned(), |(node, name)| format!("{name}@{}", node.0));
            let kept = if retain { " (kept)" } else { "" };
            let line = format!("relay {room:?} {} -> {to}{kept}", signal.from);
            self.0.lock().unwrap().push(line);
            Ok(())
        }
        fn frame(&self, channel: &RoomId, _frame: &RawFrame) -> Result<(), Overloaded> {
            self.0.lock().unwrap().push(format!("frame {channel:?}"));
            Ok(())
        }
        fn leave(&self, room: &RoomId, name: &PeerName, _key: PeerKey) {
            self.0
                .lock()
                .unwrap()
                .push(format!("leave {room:?} {name}"));
        }
        fn room_unused(&self, room: &RoomId) {
            self.0.lock().unwrap().push(format!("unused {room:?}"));
        }
        fn channel_unused(&self, _channel: &RoomId) {}
        fn user_left(&self, _name: &PeerName) {}
    }

    fn node() -> (Hub, Arc<Recorder>) {
        let mut hub = Hub::default();
        let recorder = Arc::new(Recorder::default());
        hub.set_cluster(ME, recorder.clone());
        (hub, recorder)
    }

    fn seat(who: &str, node: NodeId, key: PeerKey, seq: u64) -> Seat {
        Seat {
            name: name(who),
            node,
            key,
            seq,
            durable: false,
        }
    }

    fn claim(hub: &mut Hub, who: &str, room_id: &str) -> Client {
        let mut client = connect(hub, DialectKind::Conference, 16);
        let join = Command::Join {
            room: room(room_id),
            name: name(who),
            rid: None,
        };
        assert!(matches!(
            hub.execute(client.key, join),
            Ok(Outcome::Claim { .. })
        ));
        assert!(client.events().is_empty(), "no reply before the cluster's");
        client
    }

    #[test]
    fn a_join_waits_for_the_roster_then_follows_the_rooms_order() {
        let (mut hub, _) = node();
        let mut alice = claim(&mut hub, "alice", "r");
        // Changes from before this node's roster are ignored while it waits.
        hub.remote(Inbound::Joined {
            room: room("r"),
            rseq: 4,
            seat: seat("old", OTHER, PeerKey(9), 4),
        });
        hub.remote(Inbound::Roster {
            room: room("r"),
            rseq: 5,
            media: Some(OTHER),
            seats: vec![
                seat("alice", ME, alice.key, 5),
                seat("bob", OTHER, PeerKey(7), 3),
            ],
        });
        let events = alice.events();
        let [Event::Joined(joined)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(&*joined.members, [name("bob"), name("alice")]);
        assert_eq!(hub.media_home(&room("r")), Some(OTHER));
        // The echo of alice's own join, and anything as old, changes nothing.
        hub.remote(Inbound::Joined {
            room: room("r"),
            rseq: 5,
            seat: seat("alice", ME, alice.key, 5),
        });
        hub.remote(Inbound::Left {
            room: room("r"),
            rseq: 3,
            name: name("bob"),
        });
        assert!(alice.events().is_empty());
        // Newer changes are told, once.
        hub.remote(Inbound::Left {
            room: room("r"),
            rseq: 6,
            name: name("bob"),
        });
        let events = alice.events();
        assert!(matches!(&events[..], [Event::PeerLeft(left)] if left.name.as_str() == "bob"));
    }

    #[test]
    fn only_remote_members_cost_a_publish() {
        let (mut hub, recorder) = node();
        let alice = claim(&mut hub, "alice", "r");
        let mut carol = claim(&mut hub, "carol", "r");
        hub.remote(Inbound::Roster {
            room: room("r"),
            rseq: 1,
            media: Some(ME),
            seats: vec![seat("alice", ME, alice.key, 1)],
        });
        hub.remote(Inbound::Joined {
            room: room("r"),
            rseq: 2,
            seat: seat("carol", ME, carol.key, 2),
        });
        carol.events();
        let send = |to: Option<&'static str>| Command::Send {
            to: to.map(Into::into),
            room: None,
            echo: false,
            message: Message::new(SignalKind::Offer, None),
            rid: None,
        };
        hub.execute(alice.key, send(None)).unwrap();
        assert_eq!(carol.events().len(), 1);
        assert!(
            recorder.take().is_empty(),
            "an all-local room touches no Redis"
        );
        hub.remote(Inbound::Joined {
            room: room("r"),
            rseq: 3,
            seat: seat("bob", OTHER, PeerKey(7), 3),
        });
        hub.execute(alice.key, send(None)).unwrap();
        hub.execute(alice.key, send(Some("bob"))).unwrap();
        assert_eq!(
            recorder.take(),
            ["relay \"r\" alice -> *", "relay \"r\" alice -> bob@2"]
        );
    }

    #[test]
    fn a_leave_keeps_the_name_until_the_cluster_confirms_it() {
        let (mut hub, recorder) = node();
        let mut alice = claim(&mut hub, "alice", "r");
        hub.remote(Inbound::Roster {
            room: room("r"),
            rseq: 1,
            media: None,
            seats: vec![
                seat("alice", ME, alice.key, 1),
                seat("bob", OTHER, PeerKey(7), 0),
            ],
        });
        alice.events();
        let leave = Command::Leave {
            room: None,
            rid: None,
        };
        assert!(matches!(
            hub.execute(alice.key, leave),
            Ok(Outcome::Waiting)
        ));
        assert_eq!(recorder.take(), ["leave \"r\" alice"]);
        assert!(hub.is_taken("r", "alice"));
        hub.remote(Inbound::Left {
            room: room("r"),
            rseq: 2,
            name: name("alice"),
        });
        assert!(!hub.is_taken("r", "alice"));
        assert!(matches!(&alice.events()[..], [Event::Settled]));
        // Nobody of this node is left in the room: it stops following it.
        assert_eq!(recorder.take(), ["unused \"r\""]);
    }

    #[test]
    fn relays_from_members_not_yet_heard_to_join_are_dropped() {
        let (mut hub, _) = node();
        let mut alice = claim(&mut hub, "alice", "r");
        hub.remote(Inbound::Roster {
            room: room("r"),
            rseq: 1,
            media: None,
            seats: vec![seat("alice", ME, alice.key, 1)],
        });
        alice.events();
        let signal = |from: &str| {
            Arc::new(Signal {
                frames: Default::default(),
                from: name(from),
                origin: DialectKind::Conference,
                addressed: false,
                message: Message::new(SignalKind::Chat, None),
            })
        };
        hub.remote(Inbound::Relay {
            room: room("r"),
            to: None,
            signal: signal("stranger"),
        });
        assert!(alice.events().is_empty());
        hub.remote(Inbound::Joined {
            room: room("r"),
            rseq: 2,
            seat: seat("bob", OTHER, PeerKey(3), 2),
        });
        hub.remote(Inbound::Relay {
            room: room("r"),
            to: None,
            signal: signal("bob"),
        });
        let events = alice.events();
        assert!(matches!(
            &events[..],
            [Event::PeerJoined(_), Event::Signal(_)]
        ));
    }

    #[test]
    fn a_resync_tells_only_the_differences() {
        let (mut hub, _) = node();
        let mut alice = claim(&mut hub, "alice", "r");
        hub.remote(Inbound::Roster {
            room: room("r"),
            rseq: 10,
            media: None,
            seats: vec![
                seat("alice", ME, alice.key, 1),
                seat("ghost", OTHER, PeerKey(3), 2),
                seat("stays", OTHER, PeerKey(4), 3),
            ],
        });
        alice.events();
        hub.remote(Inbound::Resync {
            room: room("r"),
            rseq: 20,
            media: None,
            seats: vec![
                seat("alice", ME, alice.key, 1),
                seat("stays", OTHER, PeerKey(4), 3),
                seat("new", OTHER, PeerKey(5), 15),
            ],
        });
        let told: Vec<String> = alice
            .events()
            .iter()
            .map(|event| match event {
                Event::PeerJoined(joined) => format!("+{}", joined.name),
                Event::PeerLeft(left) => format!("-{}", left.name),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(told, ["-ghost", "+new"]);
    }
}

#[test]
fn a_grant_limits_joins_to_its_rooms_and_its_name() {
    let mut hub = Hub::default();
    let (tx, mut rx) = mpsc::channel(16);
    let grant = Grant {
        room: Some(RoomGrant::parse("team-*")),
        name: name("alice"),
    };
    let mut granted = profile(DialectKind::Conference);
    granted.grant = Some(Arc::new(grant));
    let key = hub.register(granted, tx);
    let join = |hub: &mut Hub, r: &str, n: &str| {
        hub.execute(
            key,
            Command::Join {
                room: room(r),
                name: name(n),
                rid: None,
            },
        )
    };
    assert!(matches!(
        join(&mut hub, "lobby", "alice"),
        Err(CoreError::Forbidden(_))
    ));
    assert!(matches!(
        join(&mut hub, "team-a", "mallory"),
        Err(CoreError::Forbidden(_))
    ));
    assert!(rx.try_recv().is_err(), "a refused join tells nobody");
    assert_eq!(hub.stats(10).rooms, 0, "and makes no room");
    assert!(join(&mut hub, "team-a", "alice").is_ok());
    assert!(matches!(rx.try_recv(), Ok(Event::Joined(_))));
}

#[test]
fn a_full_room_refuses_the_next_join_and_takes_one_after_a_leave() {
    let mut hub = Hub::default();
    hub.set_max_room_members(Some(2));
    let alice = joined(&mut hub, "alice", "x");
    let _bob = joined(&mut hub, "bob", "x");
    let carol = connect(&mut hub, DialectKind::Conference, 16);
    let full = hub.join(carol.key, room("x"), name("carol"), None);
    assert_eq!(full.err(), Some(CoreError::RoomFull(room("x"))));
    assert!(
        hub.join(carol.key, room("y"), name("carol"), None).is_ok(),
        "the cap is per room"
    );
    hub.disconnect(alice.key);
    assert!(hub.join(carol.key, room("x"), name("carol"), None).is_ok());
}

/// Stands in for the server's TURN minting: the array names who it was made for.
struct NamingMinter;

impl crate::IceMinter for NamingMinter {
    fn mint(&self, room: &RoomId, name: &PeerName) -> RawJson {
        RawJson::new(&format!(
            r#"[{{"for":"{}/{}"}}]"#,
            room.as_str(),
            name.as_str()
        ))
    }
}

#[test]
fn each_joined_carries_ice_servers_minted_for_the_joiner() {
    let mut hub = Hub::default();
    hub.set_ice_servers(Some(RawJson::new(r#"[{"urls":["stun:x"]}]"#)));
    let mut alice = connect(&mut hub, DialectKind::Conference, 16);
    hub.join(alice.key, room("x"), name("alice"), None).unwrap();
    let events = alice.events();
    let [Event::Joined(fixed)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        fixed.ice_servers.as_ref().map(RawJson::as_str),
        Some(r#"[{"urls":["stun:x"]}]"#)
    );

    hub.set_ice_minter(Arc::new(NamingMinter));
    let mut bob = connect(&mut hub, DialectKind::Conference, 16);
    hub.join(bob.key, room("x"), name("bob"), None).unwrap();
    let bobs = bob.events();
    hub.join(alice.key, room("y"), name("alice"), None).unwrap();
    let alices = alice.events();
    for (events, want) in [
        (bobs, r#"[{"for":"x/bob"}]"#),
        (alices, r#"[{"for":"y/alice"}]"#),
    ] {
        let [.., Event::Joined(joined)] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(joined.ice_servers.as_ref().map(RawJson::as_str), Some(want));
    }
}
