//! Several nodes on one real Redis (Debian's `redis-server`, started per test on a unix
//! socket in a temporary directory, so tests never share one): the single server's
//! behaviour must hold with clients spread over the nodes.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use common::cluster::{node, node_config, node_with, until_ready, Redis};
use common::{metric, TestServer, PATIENCE};
use serde_json::json;
use switchboard_server::NodeId;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

async fn join_conference(
    server: &TestServer,
    room: &str,
    name: &str,
) -> (common::Client, serde_json::Value) {
    let mut client = server.connect("/conference").await;
    client
        .send_json(json!({"type":"join-room","data":{"roomId":room,"username":name}}))
        .await;
    let joined = client.expect("joined").await;
    (client, joined)
}

#[tokio::test]
async fn a_conference_spans_two_nodes() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 0xa).await, node(&redis, 0xb).await);
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut bob, joined) = join_conference(&b, "r", "bob").await;
    assert_eq!(joined["data"]["users"], json!(["alice", "bob"]));
    assert_eq!(
        alice.json().await,
        json!({"type":"user-joined","data":{"user":"bob"}})
    );
    let (mut carol, joined) = join_conference(&a, "r", "carol").await;
    assert_eq!(joined["data"]["users"], json!(["alice", "bob", "carol"]));
    for peer in [&mut alice, &mut bob] {
        assert_eq!(
            peer.json().await,
            json!({"type":"user-joined","data":{"user":"carol"}})
        );
    }
    // Addressed relays both ways, payload bytes untouched.
    let payload = r#"{"type":"offer","sdp":"v=0\r\n","x":1.50,"u":"\u00e9"}"#;
    alice
        .send(&format!(
            r#"{{"type":"webrtc-offer","data":{{"target":"bob","payload":{payload}}}}}"#
        ))
        .await;
    assert_eq!(
        bob.text().await,
        format!(
            r#"{{"type":"webrtc-offer","data":{{"from":"alice","target":"bob","payload":{payload}}}}}"#
        )
    );
    bob.send(r#"{"type":"webrtc-answer","data":{"target":"carol","payload":{"sdp":"a"}}}"#)
        .await;
    assert_eq!(
        carol.text().await,
        r#"{"type":"webrtc-answer","data":{"from":"bob","target":"carol","payload":{"sdp":"a"}}}"#
    );
    // Room-wide: one sender's frames arrive in order on the other node.
    for i in 0..50 {
        bob.send_json(
            json!({"type":"chat-message","data":{"text":format!("m{i}"),"timestamp":"t"}}),
        )
        .await;
    }
    // (Conference chat also comes back to its sender.)
    for peer in [&mut alice, &mut carol, &mut bob] {
        for i in 0..50 {
            let chat = peer.expect("chat-message").await;
            assert_eq!(chat["data"]["text"], format!("m{i}"));
            assert_eq!(chat["data"]["from"], "bob");
        }
    }
    // An unknown name is refused on the sender's node.
    alice
        .send(r#"{"type":"webrtc-offer","data":{"target":"dave","payload":{}}}"#)
        .await;
    assert_eq!(
        alice.expect("error").await["data"]["code"],
        "peer_not_found"
    );
    // Leaving is heard once, on every node.
    drop(carol);
    let left = json!({"type":"user-left","data":{"user":"carol"}});
    assert_eq!(alice.json().await, left);
    assert_eq!(bob.json().await, left);
    bob.send_json(json!({"type":"chat-message","data":{"text":"sentinel","timestamp":"t"}}))
        .await;
    assert_eq!(
        alice.expect("chat-message").await["data"]["text"],
        "sentinel"
    );
    assert_eq!(bob.expect("chat-message").await["data"]["text"], "sentinel");
}

#[tokio::test]
async fn names_are_unique_across_nodes() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 1).await, node(&redis, 2).await);
    let (_alice, _) = join_conference(&a, "r", "alice").await;
    let mut other = b.connect("/conference").await;
    other
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}))
        .await;
    assert_eq!(other.expect("error").await["data"]["code"], "name_taken");
    // query-rooms answers 409 before the upgrade, also for a name held on another node.
    let (status, _) = b.refused("/ws?peer_id=alice&room=r").await;
    assert_eq!(status, 409);
    // A race: the same name claimed on both nodes at once, many times: one wins each time.
    for round in 0..20 {
        let room = format!("race{round}");
        let (mut x, mut y) = (
            a.connect("/conference").await,
            b.connect("/conference").await,
        );
        let join = json!({"type":"join-room","data":{"roomId":room,"username":"same"}});
        let (sx, sy) = tokio::join!(x.send_json(join.clone()), y.send_json(join));
        let _ = (sx, sy);
        let (fx, fy) = tokio::join!(x.json(), y.json());
        let kinds = [fx["type"].as_str().unwrap(), fy["type"].as_str().unwrap()];
        assert!(
            kinds == ["joined", "error"] || kinds == ["error", "joined"],
            "round {round}: {fx} / {fy}"
        );
    }
}

#[tokio::test]
async fn dialects_meet_across_nodes() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 3).await, node(&redis, 4).await);
    // query-rooms joins at the upgrade and says nothing of it (seed 000).
    let mut q = a.connect("/ws?peer_id=qr&room=mixed").await;
    let mut relay = b.connect("/room-relay").await;
    relay
        .send(r#"{"type":"join-room","roomId":"mixed","sender":"rr"}"#)
        .await;
    let success = relay.expect("join-success").await;
    assert_eq!(success["users"], json!(["qr"]));
    assert_eq!(
        q.json().await,
        json!({"type":"peer_joined","from":"rr","payload":{"peer_id":"rr","room":"mixed"}})
    );
    q.send(r#"{"type":"offer","to":"rr","payload":{"sdp":"x"}}"#)
        .await;
    let offer = relay.json().await;
    assert_eq!(offer["type"], "offer", "{offer}");
    assert_eq!(offer["sender"], "qr");
    relay
        .send(r#"{"type":"answer","roomId":"mixed","sender":"rr","sdp":"y","extra":[1,2]}"#)
        .await;
    let answer = q.json().await;
    assert_eq!(answer["type"], "answer", "{answer}");
    assert_eq!(answer["from"], "rr");
}

#[tokio::test]
async fn broadcast_frames_cross_nodes_untouched() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 5).await, node(&redis, 6).await);
    let mut x = a.connect("/broadcast/news").await;
    let mut y = b.connect("/broadcast/news").await;
    let mut z = b.connect("/broadcast/news").await;
    let bytes = vec![0u8, 159, 146, 150, 255, 10];
    x.send_binary(bytes.clone()).await;
    for peer in [&mut y, &mut z] {
        assert_eq!(peer.next().await, Message::Binary(bytes.clone().into()));
    }
    y.send("text from b").await;
    assert_eq!(x.text().await, "text from b");
    assert_eq!(z.text().await, "text from b");
    // Another channel's frames stay on it.
    let mut other = a.connect("/broadcast/other").await;
    let mut other_b = b.connect("/broadcast/other").await;
    other.send("elsewhere").await;
    assert_eq!(other_b.text().await, "elsewhere");
    y.send("sentinel").await;
    assert_eq!(x.text().await, "sentinel", "x is not on channel other");
}

#[tokio::test]
async fn a_draining_node_tells_every_room_at_once() {
    let redis = Redis::new();
    // A lease far longer than the test's patience: only the drain can explain the leave.
    let lease = Duration::from_secs(60);
    let a = node_with(node_config(&redis, 7, lease)).await;
    let b = node_with(node_config(&redis, 8, lease)).await;
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut bob, _) = join_conference(&b, "r", "bob").await;
    alice.expect("user-joined").await;
    b.stop();
    assert_eq!(bob.close_code().await, 1001);
    assert_eq!(
        alice.json().await,
        json!({"type":"user-left","data":{"user":"bob"}})
    );
    // The name is free again, cluster-wide.
    let (_again, joined) = join_conference(&a, "r", "bob").await;
    assert_eq!(joined["data"]["users"], json!(["alice", "bob"]));
}

#[tokio::test]
async fn without_redis_joins_are_unavailable_and_local_peers_keep_talking() {
    let mut redis = Redis::new();
    let lease = Duration::from_secs(3);
    let a = node_with(node_config(&redis, 9, lease)).await;
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut bob, _) = join_conference(&a, "r", "bob").await;
    alice.expect("user-joined").await;
    redis.stop();
    // Peers of one node keep talking: an all-local room needs no Redis.
    alice
        .send(r#"{"type":"webrtc-offer","data":{"target":"bob","payload":{"n":1}}}"#)
        .await;
    assert_eq!(
        bob.expect("webrtc-offer").await["data"]["payload"],
        json!({"n":1})
    );
    // A join needs Redis: a typed error, not a hang.
    let mut carol = a.connect("/conference").await;
    carol
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"carol"}}))
        .await;
    assert_eq!(carol.expect("error").await["data"]["code"], "unavailable");
    // After a lease without Redis the load balancer is told to route away.
    until_ready(&a, 503).await;
    // Redis comes back empty: the node registers again and claims its members again.
    let dir = redis.dir.clone();
    let redis = Redis::start(dir);
    until_ready(&a, 200).await;
    let b = node(&redis, 10).await;
    // Generous: the node's reconnect backoff (up to 7.5 s) comes first on a busy machine.
    let joined = timeout(PATIENCE * 3, async {
        for attempt in 0.. {
            let name = format!("dave{attempt}");
            let (_dave, joined) = join_conference(&b, "r", &name).await;
            if joined["data"]["users"] == json!(["alice", "bob", name]) {
                return joined;
            }
            eprintln!("not yet: {joined}");
            sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    })
    .await
    .expect("the room's members are claimed again after Redis lost them");
    assert_eq!(joined["type"], "joined");
}

#[tokio::test]
async fn a_bad_bus_message_is_dropped_and_counted() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 11).await, node(&redis, 12).await);
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut bob, _) = join_conference(&b, "r", "bob").await;
    alice.expect("user-joined").await;
    for garbage in ["SB1M9999:", "not ours", "SB1L1:r1:x1:alice", "SB1J0:"] {
        redis.cli(&["PUBLISH", "sb:r:r", garbage]);
    }
    redis.cli(&["PUBLISH", &format!("sb:n:{}", NodeId(11)), "SB1Z"]);
    bob.send_json(json!({"type":"chat-message","data":{"text":"after","timestamp":"t"}}))
        .await;
    assert_eq!(alice.expect("chat-message").await["data"]["text"], "after");
    let metrics = a.get("/metrics").await.body;
    let dropped: f64 = ["magic", "field", "kind", "id"]
        .iter()
        .filter_map(|reason| {
            metric(
                &metrics,
                &format!("switchboard_bus_dropped_total{{reason=\"{reason}\"}}"),
            )
        })
        .sum();
    assert_eq!(dropped, 5.0, "{metrics}");
}

async fn pairing_user(server: &TestServer) -> (common::Client, String) {
    let mut client = server.connect("/pairing").await;
    let greeting = client.expect("connected").await;
    let id = greeting["data"]["userId"].as_str().unwrap().to_owned();
    (client, id)
}

fn pair_frame(kind: &str, to: &str, data: &str) -> String {
    format!(r#"{{"type":"{kind}","to":"{to}","data":{data}}}"#)
}

fn paired(kind: &str, from: &str, to: &str, data: &str) -> String {
    format!(r#"{{"type":"{kind}","from":"{from}","to":"{to}","data":{data}}}"#)
}

#[tokio::test]
async fn pairing_spans_nodes() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 13).await, node(&redis, 14).await);
    let (mut x, x_id) = pairing_user(&a).await;
    let (mut y, y_id) = pairing_user(&b).await;
    let (mut z, z_id) = pairing_user(&a).await;
    // The state machine is one, cluster-wide.
    x.send(&pair_frame("offer", &y_id, "{}")).await;
    assert_eq!(x.expect("error").await["data"]["code"], "invalid_state");
    x.send(&pair_frame("ping", &y_id, r#"{"n":1}"#)).await;
    assert_eq!(y.text().await, paired("ping", &x_id, &y_id, r#"{"n":1}"#));
    z.send(&pair_frame("ping", &x_id, "{}")).await;
    assert_eq!(z.expect("error").await["data"]["code"], "user_busy");
    y.send(&pair_frame("pong", &x_id, "{}")).await;
    assert_eq!(x.text().await, paired("pong", &y_id, &x_id, "{}"));
    let sdp = r#"{"type":"offer","sdp":"v=0\r\n"}"#;
    x.send(&pair_frame("offer", &y_id, sdp)).await;
    assert_eq!(y.text().await, paired("offer", &x_id, &y_id, sdp));
    y.send(&pair_frame("answer", &x_id, sdp)).await;
    assert_eq!(x.text().await, paired("answer", &y_id, &x_id, sdp));
    // Stats on each node show its own user connected to the other node's.
    let stats = a.get("/api/stats").await.json();
    let listed = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == x_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (listed["state"].clone(), listed["targetUser"].clone()),
        (json!("connected"), json!(y_id))
    );
    // A user that drops frees its partner on the other node, which hears of it once.
    drop(y);
    let gone = x.json().await;
    assert_eq!(gone["type"], "disconnect", "{gone}");
    assert_eq!(gone["from"], y_id.as_str());
    x.send(&pair_frame("ping", &z_id, "{}")).await;
    assert_eq!(z.text().await, paired("ping", &x_id, &z_id, "{}"));
    // An unknown id anywhere in the cluster.
    x.send(&pair_frame(
        "ping",
        "00000000-0000-4000-8000-000000000000",
        "{}",
    ))
    .await;
    assert_eq!(x.expect("error").await["data"]["code"], "user_not_found");
}

#[tokio::test]
async fn stats_span_the_cluster_and_say_when_a_node_is_silent() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 15).await, node(&redis, 16).await);
    let (_alice, _) = join_conference(&a, "r1", "alice").await;
    let (_bob, _) = join_conference(&b, "r2", "bob").await;
    let (_carol, _) = join_conference(&a, "r1", "carol").await;
    let stats = b.get("/api/stats").await.json();
    assert_eq!(stats["connectedUsers"], 3, "{stats}");
    assert_eq!(stats["rooms"], 2, "{stats}");
    assert_eq!(stats["partial"], false, "{stats}");
    let listed: Vec<(String, String)> = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (na, nb) = (NodeId(15).to_string(), NodeId(16).to_string());
    assert_eq!(
        listed,
        [
            ("alice".into(), na.clone()),
            ("bob".into(), nb),
            ("carol".into(), na)
        ],
        "oldest first, each with its node"
    );
    // Each node's /metrics has the cluster's series: both nodes seen, messages both ways.
    timeout(PATIENCE, async {
        while metric(&a.get("/metrics").await.body, "switchboard_cluster_nodes") != Some(2.0) {
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("node A counts two live nodes at a heartbeat");
    let metrics = b.get("/metrics").await.body;
    assert!(metric(&metrics, "switchboard_bus_received_total").unwrap_or(0.0) >= 1.0);
    assert!(
        metrics.contains("switchboard_redis_rtt_seconds_count"),
        "{metrics}"
    );
    let limited = b.get("/api/stats?limit=1").await.json();
    assert_eq!(limited["users"].as_array().unwrap().len(), 1);
    assert_eq!(limited["connectedUsers"], 3);
    // A node with a live lease that never answers (a stalled process): the answer comes
    // anyway, marked partial.
    redis.cli(&["ZADD", "sb:nodes", "99999999999999", "00000000deadbeef"]);
    let stats = a.get("/api/stats").await.json();
    assert_eq!(stats["partial"], true, "{stats}");
    assert_eq!(stats["connectedUsers"], 3, "{stats}");
}

#[tokio::test]
async fn after_redis_loses_its_data_every_view_converges_without_ghosts_or_repeats() {
    let mut redis = Redis::new();
    let lease = Duration::from_secs(3);
    let a = node_with(node_config(&redis, 0x41, lease)).await;
    let b = node_with(node_config(&redis, 0x42, lease)).await;
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut dave, _) = join_conference(&b, "r", "dave").await;
    let (bob, _) = join_conference(&b, "r", "bob").await;
    assert_eq!(alice.expect("user-joined").await["data"]["user"], "dave");
    assert_eq!(alice.expect("user-joined").await["data"]["user"], "bob");
    assert_eq!(dave.expect("user-joined").await["data"]["user"], "bob");
    redis.stop();
    // Bob leaves while nobody can tell the cluster.
    drop(bob);
    let dir = redis.dir.clone();
    let _redis = Redis::start(dir);
    until_ready(&a, 200).await;
    until_ready(&b, 200).await;
    // Within a lease of the return every view matches reality: bob left, once, everywhere;
    // alice and dave, who never left, are not announced again.
    let left = json!({"type":"user-left","data":{"user":"bob"}});
    assert_eq!(alice.json().await, left);
    assert_eq!(dave.json().await, left);
    dave.send_json(json!({"type":"chat-message","data":{"text":"after","timestamp":"t"}}))
        .await;
    assert_eq!(alice.expect("chat-message").await["data"]["text"], "after");
    alice
        .send_json(json!({"type":"chat-message","data":{"text":"back","timestamp":"t"}}))
        .await;
    assert_eq!(dave.expect("chat-message").await["data"]["text"], "after");
    assert_eq!(dave.expect("chat-message").await["data"]["text"], "back");
    // And the names are Redis's again: bob's is free, alice's is taken.
    // (Members claimed again are listed in the order their nodes claimed them.)
    let (_bob_again, joined) = join_conference(&a, "r", "bob").await;
    let mut users: Vec<&str> = joined["data"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(users.pop(), Some("bob"));
    users.sort_unstable();
    assert_eq!(users, ["alice", "dave"]);
    let mut imposter = b.connect("/conference").await;
    imposter
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}))
        .await;
    assert_eq!(imposter.expect("error").await["data"]["code"], "name_taken");
}

#[tokio::test]
async fn a_node_declared_dead_comes_back_fenced() {
    let redis = Redis::new();
    // Heartbeats every 2 s: time for the others to reap node A and reuse a name first.
    let a = node(&redis, 0x51).await;
    let b = node(&redis, 0x52).await;
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    let (mut erin, _) = join_conference(&a, "r", "erin").await;
    let (mut bob, _) = join_conference(&b, "r", "bob").await;
    assert_eq!(alice.expect("user-joined").await["data"]["user"], "erin");
    assert_eq!(alice.expect("user-joined").await["data"]["user"], "bob");
    erin.expect("user-joined").await;
    // Node A's lease runs out as if it had been cut off: the others reap it.
    redis.cli(&["ZADD", "sb:nodes", "0", &NodeId(0x51).to_string()]);
    let mut left = [bob.json().await, bob.json().await];
    left.sort_by_key(|frame| frame["data"]["user"].as_str().map(str::to_owned));
    assert_eq!(
        left,
        [
            json!({"type":"user-left","data":{"user":"alice"}}),
            json!({"type":"user-left","data":{"user":"erin"}}),
        ]
    );
    // While A does not know yet, its name "alice" is taken on B.
    let (mut usurper, joined) = join_conference(&b, "r", "alice").await;
    assert_eq!(joined["data"]["users"], json!(["bob", "alice"]));
    assert_eq!(
        bob.json().await,
        json!({"type":"user-joined","data":{"user":"alice"}})
    );
    // A finds itself fenced at its next heartbeat and claims its members again: erin is
    // back; the old alice lost her name and is closed, and removes nobody.
    assert_eq!(
        bob.json().await,
        json!({"type":"user-joined","data":{"user":"erin"}})
    );
    assert_eq!(alice.expect("error").await["data"]["code"], "name_taken");
    alice.closed().await;
    usurper
        .send_json(json!({"type":"chat-message","data":{"text":"still here","timestamp":"t"}}))
        .await;
    let chat = bob.expect("chat-message").await;
    assert_eq!(chat["data"]["from"], "alice");
    assert_eq!(
        erin.expect("chat-message").await["data"]["text"],
        "still here"
    );
    let stats = b.get("/api/stats").await.json();
    assert_eq!(stats["connectedUsers"], 3, "{stats}");
}

#[tokio::test]
async fn scripts_flushed_from_redis_are_loaded_again() {
    let redis = Redis::new();
    let (a, b) = (node(&redis, 0x61).await, node(&redis, 0x62).await);
    let (mut alice, _) = join_conference(&a, "r", "alice").await;
    redis.cli(&["SCRIPT", "FLUSH"]);
    // The next claim finds its script gone; it is loaded again and the claim goes through.
    let (bob, joined) = join_conference(&b, "r", "bob").await;
    assert_eq!(joined["data"]["users"], json!(["alice", "bob"]));
    assert_eq!(
        alice.json().await,
        json!({"type":"user-joined","data":{"user":"bob"}})
    );
    // And nothing was left behind: an empty room leaves no key in Redis.
    drop(alice);
    drop(bob);
    timeout(PATIENCE, async {
        while !redis.cli(&["KEYS", "sb:r*"]).trim().is_empty() {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the room's keys (members, change number, the rooms set) are gone");
}

#[tokio::test]
async fn the_member_cap_holds_across_nodes_under_racing_joins() {
    let redis = Redis::new();
    let lease = Duration::from_secs(10);
    let capped = |id| {
        let mut config = node_config(&redis, id, lease);
        config.max_room_members = Some(3);
        config
    };
    let (a, b) = (node_with(capped(1)).await, node_with(capped(2)).await);
    for round in 0..5 {
        let room = format!("capped{round}");
        let (_first, _) = join_conference(&a, &room, "first").await;
        let (_second, _) = join_conference(&b, &room, "second").await;
        // Four join at once, two on each node, for the one seat left.
        let mut racers = Vec::new();
        for (i, server) in [&a, &b, &a, &b].into_iter().enumerate() {
            racers.push((server.connect("/conference").await, format!("racer{i}")));
        }
        let sends = racers.iter_mut().map(|(client, name)| {
            client.send_json(json!({"type":"join-room","data":{"roomId":room,"username":name}}))
        });
        futures_util::future::join_all(sends).await;
        let answers =
            futures_util::future::join_all(racers.iter_mut().map(|(client, _)| client.json()))
                .await;
        let joined = answers.iter().filter(|a| a["type"] == "joined").count();
        let full = answers
            .iter()
            .filter(|a| a["data"]["code"] == "room_full")
            .count();
        assert_eq!((joined, full), (1, 3), "round {round}: {answers:?}");
        // query-rooms hears it before the upgrade, on either node.
        let (status, body) = b.refused(&format!("/ws?peer_id=late&room={room}")).await;
        assert_eq!((status, body), (409, format!("room {room} is full")));
    }
}
