//! Session resume (`/conference?resume=1`) end to end: sockets cut at the TCP level (an
//! abort, no close frame) come back and miss nothing, in either direction; sessions that
//! cannot come back end with exactly one leave; tokens are single-use; a takeover closes the
//! old socket with 4001.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use common::{conference, start_with, Client, TestServer, PATIENCE};
use serde_json::{json, Value};
use switchboard_server::Config;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::MaybeTlsStream;

/// A resumable client: its socket, its current token and the last frame it processed.
struct Session {
    client: Client,
    token: String,
    last: u64,
}

impl Session {
    /// Opens `/conference?resume=1` and reads `session`.
    async fn open(server: &TestServer) -> Session {
        let mut client = abortable(server).await;
        let session = client.expect("session").await;
        assert!(session.get("seq").is_none(), "session is unnumbered");
        let token = session["data"]["token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 22, "128 bits, base64url: {token}");
        Session {
            client,
            token,
            last: 0,
        }
    }

    async fn join(server: &TestServer, room: &str, name: &str) -> Session {
        let mut session = Session::open(server).await;
        session
            .client
            .send_json(json!({"type":"join-room","data":{"roomId":room,"username":name}}))
            .await;
        let joined = session.frame().await;
        assert_eq!(joined["type"], "joined");
        session
    }

    /// The next numbered frame, which must be the one after the last.
    async fn frame(&mut self) -> Value {
        let frame = self.client.json().await;
        let seq = frame["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {frame}"));
        assert_eq!(seq, self.last + 1, "frames in order, none twice: {frame}");
        self.last = seq;
        frame
    }

    /// Cuts the socket at the TCP level: a reset, no close frame.
    fn cut(self) -> (String, u64) {
        drop(self.client);
        (self.token, self.last)
    }

    /// Resumes on a new socket; returns it and `resumed`'s data.
    async fn resume(server: &TestServer, token: &str, last: u64) -> (Session, Value) {
        let mut client = abortable(server).await;
        client.expect("session").await;
        client
            .send_json(json!({"type":"resume","data":{"token":token,"seq":last}}))
            .await;
        let resumed = client.expect("resumed").await;
        assert!(resumed.get("seq").is_none(), "resumed is unnumbered");
        assert_eq!(resumed["data"]["next"], last + 1);
        let token = resumed["data"]["token"].as_str().unwrap().to_owned();
        let session = Session {
            client,
            token,
            last,
        };
        (session, resumed["data"].clone())
    }
}

/// A socket whose drop resets the TCP connection (SO_LINGER 0): the server sees no close
/// frame, as when a phone changes networks.
async fn abortable(server: &TestServer) -> Client {
    abortable_with(server, "").await
}

/// `abortable`, with `query` (`&name=value…`) added to the URL.
async fn abortable_with(server: &TestServer, query: &str) -> Client {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    // Deprecated because a non-zero linger blocks the dropping thread; zero resets at once.
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    let url = format!("ws://{}/conference?resume=1{query}", server.addr);
    let (ws, _) = timeout(
        PATIENCE,
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade accepted");
    Client { ws }
}

/// Tries a resume that must fail: `resume_failed` (unnumbered), then a new `session`.
async fn resume_fails(server: &TestServer, token: &str, last: u64) -> Session {
    let mut client = abortable(server).await;
    client.expect("session").await;
    client
        .send_json(json!({"type":"resume","data":{"token":token,"seq":last}}))
        .await;
    let error = client.expect("error").await;
    assert_eq!(error["data"]["code"], "resume_failed", "{error}");
    assert!(error.get("seq").is_none());
    let session = client.expect("session").await;
    let token = session["data"]["token"].as_str().unwrap().to_owned();
    Session {
        client,
        token,
        last: 0,
    }
}

fn config() -> Config {
    Config {
        resume_window: Duration::from_secs(20),
        ..Config::for_tests()
    }
}

fn chat(text: &str) -> Value {
    json!({"type":"chat-message","data":{"text":text}})
}

/// Reads `client`'s frames up to and including the chat `marker`; returns them.
async fn until_chat(client: &mut Client, marker: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = client.json().await;
        let done = frame["type"] == "chat-message" && frame["data"]["text"] == marker;
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

fn texts(frames: &[Value], from: &str) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "chat-message" && f["data"]["from"] == from)
        .map(|f| f["data"]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_cut_socket_resumes_and_misses_nothing_either_way() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");

    let mut seen = Vec::new();
    for n in 1..=3 {
        bob.send_json(chat(&format!("b{n}"))).await;
    }
    for _ in 1..=3 {
        seen.push(alice.frame().await);
    }
    // Alice sends two numbered frames and is cut before any answer: the server may have
    // read none, one or both.
    for n in 1..=2u64 {
        let mut frame = chat(&format!("a{n}"));
        frame["seq"] = json!(n);
        alice.client.send_json(frame).await;
    }
    let (token, last) = alice.cut();
    // Bob keeps talking while alice is away.
    for n in 4..=10 {
        bob.send_json(chat(&format!("b{n}"))).await;
    }
    // Wait until the server has parked her: bob's echoes prove the chats were relayed.
    let before = until_chat(&mut bob, "b10").await;

    let (mut alice, resumed) = Session::resume(&server, &token, last).await;
    assert_eq!(resumed["roomId"], "r");
    let received = resumed["received"].as_u64().unwrap();
    assert!(received <= 2, "{resumed}");
    assert_ne!(resumed["token"], token.as_str(), "the token rotates");
    // Resend what the server did not get, and once more the last one it did (dropped as a
    // resend), then a marker.
    for n in received.max(1)..=2 {
        let mut frame = chat(&format!("a{n}"));
        frame["seq"] = json!(n);
        alice.client.send_json(frame).await;
    }
    alice.client.send_json(chat("a-done")).await;
    bob.send_json(chat("b-done")).await;

    loop {
        let frame = alice.frame().await;
        let done = frame["data"]["text"] == "b-done";
        seen.push(frame);
        if done {
            break;
        }
    }
    let wanted: Vec<String> = (1..=10)
        .map(|n| format!("b{n}"))
        .chain(["b-done".to_owned()])
        .collect();
    assert_eq!(texts(&seen, "bob"), wanted, "every frame once, in order");
    assert!(
        seen.iter().all(|f| f["type"] == "chat-message"),
        "nothing but chat: {seen:?}"
    );

    let after = until_chat(&mut bob, "a-done").await;
    let bob_saw: Vec<Value> = before.into_iter().chain(after).collect();
    assert!(
        bob_saw.iter().all(|f| f["type"] == "chat-message"),
        "bob saw no leave and no join: {bob_saw:?}"
    );
    assert_eq!(texts(&bob_saw, "alice"), ["a1", "a2", "a-done"]);

    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        common::metric(&metrics, r#"switchboard_resumes_total{result="resumed"}"#),
        Some(1.0)
    );
    assert!(common::metric(&metrics, "switchboard_replayed_frames_total").unwrap() >= 7.0);
    assert_eq!(
        common::metric(&metrics, "switchboard_parked_sessions"),
        Some(0.0)
    );
}

#[tokio::test]
async fn sockets_that_do_not_opt_in_get_todays_bytes() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    alice.client.send_json(chat("hi")).await;
    let text = bob.text().await;
    assert!(
        text.starts_with(
            r#"{"type":"chat-message","data":{"from":"alice","text":"hi","timestamp":"#
        ) && text.ends_with(r#""}}"#),
        "{text}"
    );
    let mine = alice.frame().await;
    assert_eq!(mine["data"]["text"], "hi");
    // An ack is the resume layer's; a plain socket does not know it.
    bob.send_json(json!({"type":"ack","data":{"seq":1}})).await;
    assert_eq!(bob.expect("error").await["data"]["code"], "unknown_type");
}

/// A room-wide frame is encoded once and shared by the room's plain sockets; each
/// resumable socket numbers its own copy.
#[tokio::test]
async fn a_shared_room_wide_frame_is_numbered_per_resumable_socket() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut carol = Session::join(&server, "r", "carol").await;
    let mut bob = conference(&server, "r", "bob").await;
    let mut dave = conference(&server, "r", "dave").await;
    dave.send_json(chat("to all")).await;
    let mut seen = Vec::new();
    for session in [&mut alice, &mut carol] {
        let mut frames = until_chat(&mut session.client, "to all").await;
        let read = frames.len() as u64;
        let mut chat = frames.pop().unwrap();
        let seq = chat.as_object_mut().unwrap().remove("seq").unwrap();
        assert_eq!(seq.as_u64(), Some(session.last + read), "numbered in order");
        seen.push(chat);
    }
    for client in [&mut bob, &mut dave] {
        let chat = until_chat(client, "to all").await.pop().unwrap();
        assert!(
            chat.get("seq").is_none(),
            "plain sockets are unnumbered: {chat}"
        );
        seen.push(chat);
    }
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");
}

#[tokio::test]
async fn the_window_ends_a_parked_session_with_one_leave() {
    let server = start_with(Config {
        resume_window: Duration::from_millis(300),
        ..Config::for_tests()
    })
    .await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    let (token, last) = alice.cut();
    assert_eq!(
        bob.json().await,
        json!({"type":"user-left","data":{"user":"alice"}})
    );
    bob.send_json(chat("marker")).await;
    assert_eq!(bob.expect("chat-message").await["data"]["text"], "marker");
    resume_fails(&server, &token, last).await;
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        common::metric(
            &metrics,
            r#"switchboard_parked_ended_total{reason="expired"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_buffer_overflow_ends_a_parked_session_with_one_leave() {
    let server = start_with(Config {
        resume_buffer_frames: 4,
        ..config()
    })
    .await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    let (token, last) = alice.cut();
    for n in 1..=10 {
        bob.send_json(chat(&format!("b{n}"))).await;
    }
    until_chat(&mut bob, "b10").await;
    bob.send_json(chat("marker")).await;
    let mut frames = until_chat(&mut bob, "marker").await;
    if !frames.iter().any(|f| f["type"] == "user-left") {
        // The leave may come after the echoes; a second marker fences it.
        bob.send_json(chat("marker2")).await;
        frames.extend(until_chat(&mut bob, "marker2").await);
    }
    let leaves: Vec<&Value> = frames.iter().filter(|f| f["type"] == "user-left").collect();
    assert_eq!(
        leaves,
        [&json!({"type":"user-left","data":{"user":"alice"}})]
    );
    resume_fails(&server, &token, last).await;
}

#[tokio::test]
async fn stale_positions_unknown_and_reused_tokens_fail() {
    let server = start_with(Config {
        resume_buffer_frames: 2,
        ..config()
    })
    .await;
    // Unknown token: the socket carries on as a fresh session and can join.
    let mut fresh = resume_fails(&server, "AAAAAAAAAAAAAAAAAAAAAA", 0).await;
    fresh
        .client
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"carol"}}))
        .await;
    assert_eq!(fresh.frame().await["type"], "joined");

    // Reused token: the first token no longer opens the session once it has resumed.
    let alice = Session::join(&server, "r", "alice").await;
    assert_eq!(fresh.frame().await["type"], "user-joined");
    let first = alice.token.clone();
    let (token, last) = alice.cut();
    let (alice, _) = Session::resume(&server, &token, last).await;
    let (token, last) = alice.cut();
    resume_fails(&server, &first, last).await;

    // A position the client never got (past what was sent): the session ends, once.
    let (alice, _) = Session::resume(&server, &token, last).await;
    let (token, last) = alice.cut();
    let mut again = resume_fails(&server, &token, last + 5).await;
    assert_eq!(
        fresh.frame().await["data"],
        json!({"user":"alice"}),
        "the room hears the leave"
    );
    // Alice's name is free again: the fresh socket rejoins under it.
    again
        .client
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}))
        .await;
    assert_eq!(again.frame().await["type"], "joined");
    assert_eq!(fresh.frame().await["type"], "user-joined");

    // A position older than the buffer (2 frames, none acknowledged).
    for n in 1..=4 {
        fresh.client.send_json(chat(&format!("c{n}"))).await;
    }
    for _ in 1..=4 {
        again.frame().await;
        fresh.frame().await;
    }
    let (token, _) = again.cut();
    resume_fails(&server, &token, 1).await;
    assert_eq!(fresh.frame().await["type"], "user-left");
}

#[tokio::test]
async fn acknowledged_frames_are_not_replayed() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    for n in 1..=3 {
        bob.send_json(chat(&format!("b{n}"))).await;
        alice.frame().await;
    }
    alice
        .client
        .send_json(json!({"type":"ack","data":{"seq":alice.last}}))
        .await;
    // The ack has no reply: the next frame is the next chat.
    bob.send_json(chat("b4")).await;
    assert_eq!(alice.frame().await["data"]["text"], "b4");
    let acked = alice.last - 1;
    let (token, _) = alice.cut();
    // The buffer starts after the ack: a position before it is too old.
    resume_fails(&server, &token, acked - 1).await;
    let _ = bob;
}

#[tokio::test]
async fn a_takeover_closes_the_half_open_socket_with_4001() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    // The old socket stays open (half-open: its client has given up on it).
    let (mut resumed, _) = Session::resume(&server, &alice.token, alice.last).await;
    assert_eq!(alice.client.close_code().await, 4001);
    bob.send_json(chat("after")).await;
    assert_eq!(resumed.frame().await["data"]["text"], "after");
    assert_eq!(bob.expect("chat-message").await["data"]["text"], "after");
}

#[tokio::test]
async fn a_close_frame_ends_the_session_at_once() {
    let server = start_with(config()).await;
    let mut alice = Session::join(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.frame().await;
    let token = alice.token.clone();
    alice
        .client
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        bob.json().await,
        json!({"type":"user-left","data":{"user":"alice"}})
    );
    resume_fails(&server, &token, 1).await;
}

#[tokio::test]
async fn failed_resumes_are_rate_limited_per_address() {
    let server = start_with(config()).await;
    let mut client = abortable(&server).await;
    client.expect("session").await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        client
            .send_json(json!({"type":"resume","data":{"token":"nope","seq":0}}))
            .await;
        codes.push(client.expect("error").await["data"]["code"].clone());
        client.expect("session").await;
    }
    assert_eq!(codes[..10], vec![json!("resume_failed"); 10][..]);
    assert_eq!(codes[10..], [json!("rate_limited"), json!("rate_limited")]);
}

#[tokio::test]
async fn a_parked_session_counts_and_the_cap_holds() {
    let server = start_with(Config {
        max_parked: 1,
        ..config()
    })
    .await;
    let mut watcher = conference(&server, "r", "watcher").await;
    let alice = Session::join(&server, "r", "alice").await;
    let bob = Session::join(&server, "r", "bob").await;
    assert_eq!(watcher.expect("user-joined").await["data"]["user"], "alice");
    assert_eq!(watcher.expect("user-joined").await["data"]["user"], "bob");
    alice.cut();
    wait_for_metric(&server, "switchboard_parked_sessions", 1.0).await;
    let stats = server.get("/api/stats").await.json();
    let states: Vec<(&str, &str)> = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["state"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("alice", "resuming")), "{stats}");
    assert!(states.contains(&("bob", "connected")), "{stats}");
    bob.cut();
    // No place left: bob's session ends as without resume.
    assert_eq!(
        watcher.json().await,
        json!({"type":"user-left","data":{"user":"bob"}})
    );
    assert_eq!(
        common::metric(
            &server.get("/metrics").await.body,
            "switchboard_parked_sessions"
        ),
        Some(1.0)
    );
}

async fn wait_for_metric(server: &TestServer, series: &str, value: f64) {
    timeout(PATIENCE, async {
        loop {
            let metrics = server.get("/metrics").await.body;
            if common::metric(&metrics, series) == Some(value) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{series} never reached {value}"));
}

/// With `--redis`, a session lives on its node: it resumes there, with what members on other
/// nodes sent meanwhile; another node does not know it yet (docs/protocol.md, "Resume").
/// Two nodes on a Redis of their own, with this resume window.
async fn two_nodes(redis: &common::cluster::Redis, window: Duration) -> (TestServer, TestServer) {
    let lease = Duration::from_secs(10);
    let node = |id| {
        let mut config = common::cluster::node_config(redis, id, lease);
        config.resume_window = window;
        common::cluster::node_with(config)
    };
    (node(0xa).await, node(0xb).await)
}

/// The next numbered frame, exactly as sent, and parsed.
async fn raw_frame(session: &mut Session) -> (String, Value) {
    let text = session.client.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        frame["seq"],
        session.last + 1,
        "in order, none twice: {text}"
    );
    session.last += 1;
    (text, frame)
}

#[tokio::test]
async fn in_a_cluster_a_session_resumes_on_another_node_and_misses_nothing() {
    let redis = common::cluster::Redis::new();
    let (a, b) = two_nodes(&redis, Duration::from_secs(20)).await;
    let mut alice = Session::join(&a, "r", "alice").await;
    let mut bob = conference(&b, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");
    bob.send_json(chat("first")).await;
    let (first, frame) = raw_frame(&mut alice).await;
    assert_eq!(frame["data"]["text"], "first");

    // Cut on node A; the client says it processed only up to the frame before "first", so
    // that one comes again and must come byte for byte.
    let (token, _) = alice.cut();
    let last = 2;
    for n in 1..=5 {
        bob.send_json(chat(&format!("away {n}"))).await;
    }
    until_chat(&mut bob, "away 5").await;

    // Back through node B, which does not have the session: it is carried to node A.
    let (mut alice, resumed) = Session::resume(&b, &token, last).await;
    assert_eq!(resumed["roomId"], "r");
    assert_ne!(resumed["token"], token.as_str(), "the token rotates");
    let (again, _) = raw_frame(&mut alice).await;
    assert_eq!(again, first, "the replay is byte-identical");
    for n in 1..=5 {
        let (_, frame) = raw_frame(&mut alice).await;
        assert_eq!(frame["data"]["text"], format!("away {n}"), "{frame}");
    }
    // Live traffic both ways through the tunnel, numbered on.
    bob.send_json(chat("live")).await;
    let (_, frame) = raw_frame(&mut alice).await;
    assert_eq!(frame["data"]["text"], "live");
    let mut numbered = chat("from alice");
    numbered["seq"] = json!(1);
    alice.client.send_json(numbered.clone()).await;
    alice.client.send_json(numbered).await; // a resend: dropped by the session
    alice.client.send_json(chat("from alice, unnumbered")).await;
    let heard = until_chat(&mut bob, "from alice, unnumbered").await;
    assert_eq!(
        texts(&heard, "alice"),
        ["from alice", "from alice, unnumbered"]
    );
    for text in ["from alice", "from alice, unnumbered"] {
        let (_, frame) = raw_frame(&mut alice).await;
        assert_eq!(frame["data"]["text"], text, "alice hears her own chats");
    }

    // Cut again (on node B this time) and come home to node A: still the same session.
    let (token, last) = alice.cut();
    bob.send_json(chat("while cut on B")).await;
    until_chat(&mut bob, "while cut on B").await;
    let (mut alice, _) = Session::resume(&a, &token, last).await;
    assert_eq!(alice.frame().await["data"]["text"], "while cut on B");
    // The token rotated: the old one opens nothing, on either node.
    resume_fails(&b, &token, last).await;
    resume_fails(&a, &token, last).await;

    bob.send_json(chat("marker")).await;
    let frames = until_chat(&mut bob, "marker").await;
    assert_eq!(alice.frame().await["data"]["text"], "marker");
    assert!(
        frames.iter().all(|f| f["type"] == "chat-message"),
        "bob heard no leave and no join: {frames:?}"
    );
    let metrics = b.get("/metrics").await;
    assert_eq!(
        common::metric(
            &metrics.body,
            r#"switchboard_resumes_total{result="carried"}"#
        ),
        Some(1.0),
        "{}",
        metrics.body
    );
}

/// Waits (within the patience) until `node`'s heartbeats report `parked` durable sessions
/// waiting in Redis for a takeover.
async fn until_parked(node: &TestServer, parked: u64) {
    let series = "switchboard_cluster_parked_sessions";
    let reported = timeout(PATIENCE * 2, async {
        loop {
            let metrics = node.get("/metrics").await;
            if common::metric(&metrics.body, series) == Some(parked as f64) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(reported.is_ok(), "{series} never reached {parked}");
}

#[tokio::test]
async fn in_a_cluster_a_drained_node_s_session_is_taken_over_on_another_and_misses_nothing() {
    let redis = common::cluster::Redis::new();
    let (a, b) = two_nodes(&redis, Duration::from_secs(20)).await;
    let mut alice = Session::join(&a, "r", "alice").await;
    let mut bob = conference(&b, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");
    bob.send_json(chat("before")).await;
    assert_eq!(alice.frame().await["data"]["text"], "before");

    // Node A shuts down: its socket hears 1012 (resume elsewhere), its durable session is
    // parked in Redis (the room hears no leave), and what bob says meanwhile is kept for it.
    a.stopped().await.unwrap();
    assert_eq!(alice.client.close_code().await, 1012);
    let token = alice.token.clone();
    for n in 1..=3 {
        bob.send_json(chat(&format!("gap {n}"))).await;
    }
    until_chat(&mut bob, "gap 3").await;
    until_parked(&b, 1).await;

    // Back on node B, from the frame before "before": that one is replayed from Redis,
    // then what was kept, numbered on; bob hears no leave and no join.
    let (mut alice, resumed) = Session::resume(&b, &token, 2).await;
    assert_eq!(resumed["roomId"], "r");
    assert_eq!(alice.frame().await["data"]["text"], "before");
    for n in 1..=3 {
        assert_eq!(alice.frame().await["data"]["text"], format!("gap {n}"));
    }
    alice.client.send_json(chat("on b")).await;
    assert_eq!(alice.frame().await["data"]["text"], "on b");
    let heard = until_chat(&mut bob, "on b").await;
    assert!(
        heard.iter().all(|f| f["type"] == "chat-message"),
        "bob heard no leave and no join: {heard:?}"
    );
    let metrics = b.get("/metrics").await;
    assert_eq!(
        common::metric(
            &metrics.body,
            r#"switchboard_resumes_total{result="taken_over"}"#
        ),
        Some(1.0),
        "{}",
        metrics.body
    );
    until_parked(&b, 0).await;
    // The session is B's own now: a cut there resumes there.
    let (token, last) = alice.cut();
    bob.send_json(chat("after")).await;
    until_chat(&mut bob, "after").await;
    let (mut alice, _) = Session::resume(&b, &token, last).await;
    assert_eq!(alice.frame().await["data"]["text"], "after");
}

#[tokio::test]
async fn in_a_cluster_a_token_no_node_knows_fails_and_a_takeover_crosses_nodes() {
    let redis = common::cluster::Redis::new();
    let (a, b) = two_nodes(&redis, Duration::from_secs(20)).await;
    resume_fails(&b, "AAAAAAAAAAAAAAAAAAAAAA", 0).await;

    // A half-open socket on node A is taken over from node B: it hears 4001.
    let mut alice = Session::join(&a, "r", "alice").await;
    let mut bob = conference(&b, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");
    let token = alice.token.clone();
    let last = alice.last;
    let mut old = alice.client;
    let (alice, _) = Session::resume(&b, &token, last).await;
    let frame = old.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4001);

    // A position the session's buffer does not cover: the session ends (bob hears alice
    // leave once) and the socket on node B carries on as a fresh session there.
    let (token, _) = alice.cut();
    let mut fresh = resume_fails(&b, &token, 99).await;
    let left = bob.expect("user-left").await;
    assert_eq!(left["data"], json!({"user":"alice"}));
    fresh
        .client
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}))
        .await;
    assert_eq!(fresh.frame().await["type"], "joined");
    assert_eq!(bob.expect("user-joined").await["data"]["user"], "alice");
}

#[tokio::test]
async fn in_a_cluster_a_carried_session_nobody_resumes_ends_with_one_leave() {
    let redis = common::cluster::Redis::new();
    let (a, b) = two_nodes(&redis, Duration::from_secs(3)).await;
    let mut alice = Session::join(&a, "r", "alice").await;
    let mut bob = conference(&b, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");
    let (token, last) = alice.cut();
    let (alice, _) = Session::resume(&b, &token, last).await;
    // Cut on node B: node A's session parks again, and its window runs out.
    let (token, last) = alice.cut();
    let left = bob.expect("user-left").await;
    assert_eq!(left["data"], json!({"user":"alice"}));
    resume_fails(&b, &token, last).await;
    bob.send_json(chat("marker")).await;
    let frames = until_chat(&mut bob, "marker").await;
    assert!(
        frames.iter().all(|f| f["type"] == "chat-message"),
        "one leave only: {frames:?}"
    );
}

/// The key `--auth` checks tokens with in the subject tests.
const AUTH_SECRET: &str = "resume secret";

/// `&access_token=…` for `subject`, granting room `r`.
fn access(subject: &str) -> String {
    use switchboard_auth::{mint, Scope, SigningKey};
    let signer = SigningKey::secret("k1", AUTH_SECRET.as_bytes()).unwrap();
    let scope = Scope {
        room: Some("r".into()),
        ..Scope::default()
    };
    let token = mint(&signer, subject, scope, Duration::from_secs(600)).unwrap();
    format!("&access_token={token}")
}

/// With tokens required: alice's session on `home` is resumed on `elsewhere` under a fresh
/// token for the same subject; under mallory's token it is not, even with the session
/// token, and the room (bob, on `elsewhere`) hears alice leave once. One server may be both.
async fn only_the_same_subject_takes_a_session_over(home: &TestServer, elsewhere: &TestServer) {
    let mut bob = abortable_with(elsewhere, &access("bob")).await;
    bob.expect("session").await;
    bob.send_json(json!({"type":"join-room","data":{"roomId":"r","username":"bob"}}))
        .await;
    bob.expect("joined").await;

    let mut alice = abortable_with(home, &access("alice")).await;
    let session = alice.expect("session").await;
    let mut token = session["data"]["token"].as_str().unwrap().to_owned();
    alice
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}))
        .await;
    alice.expect("joined").await;
    bob.expect("user-joined").await;

    // A fresh access token for the same subject resumes: the client refreshed it.
    drop(alice);
    let mut again = abortable_with(elsewhere, &access("alice")).await;
    again.expect("session").await;
    again
        .send_json(json!({"type":"resume","data":{"token":token,"seq":1}}))
        .await;
    let resumed = again.expect("resumed").await;
    token = resumed["data"]["token"].as_str().unwrap().to_owned();

    // Someone else's access token does not: the session ends, the room hears alice leave.
    drop(again);
    let mut mallory = abortable_with(elsewhere, &access("mallory")).await;
    mallory.expect("session").await;
    mallory
        .send_json(json!({"type":"resume","data":{"token":token,"seq":1}}))
        .await;
    let error = mallory.expect("error").await;
    assert_eq!(error["data"]["code"], "resume_failed", "{error}");
    let left = bob.expect("user-left").await;
    assert_eq!(left["data"], json!({"user":"alice"}));
}

#[tokio::test]
async fn with_tokens_only_the_same_subject_takes_a_session_over() {
    use switchboard_server::{AuthKey, AuthMode};
    let server = start_with(Config {
        auth: AuthMode::Required,
        auth_keys: vec![AuthKey::secret("k1", AUTH_SECRET)],
        ..config()
    })
    .await;
    only_the_same_subject_takes_a_session_over(&server, &server).await;
}

#[tokio::test]
async fn in_a_cluster_with_tokens_only_the_same_subject_takes_a_session_over_from_another_node() {
    use switchboard_server::{AuthKey, AuthMode};
    let redis = common::cluster::Redis::new();
    let node = |id| {
        let mut config = common::cluster::node_config(&redis, id, Duration::from_secs(10));
        config.resume_window = Duration::from_secs(20);
        config.auth = AuthMode::Required;
        config.auth_keys = vec![AuthKey::secret("k1", AUTH_SECRET)];
        common::cluster::node_with(config)
    };
    let (a, b) = (node(0xa).await, node(0xb).await);
    only_the_same_subject_takes_a_session_over(&a, &b).await;
}

#[tokio::test]
async fn in_a_cluster_a_carried_socket_is_dropped_when_redis_goes_and_the_session_waits_at_home() {
    let mut redis = common::cluster::Redis::new();
    // Node A pings often (its pings are what keeps a tunnel alive); node B gives up on a
    // silent tunnel after a second. Sockets on A keep a long idle timeout: this test does
    // not read bob's socket all the time, so his client does not answer every ping.
    let node = |id, idle| {
        let mut config = common::cluster::node_config(&redis, id, Duration::from_secs(10));
        config.resume_window = Duration::from_secs(20);
        config.ping_interval = Duration::from_millis(200);
        config.idle_timeout = idle;
        common::cluster::node_with(config)
    };
    let a = node(0xa, Duration::from_secs(60)).await;
    let b = node(0xb, Duration::from_secs(1)).await;
    // Alice's session and bob on node A; alice's socket carried through node B.
    let mut alice = Session::join(&a, "r", "alice").await;
    let mut bob = conference(&a, "r", "bob").await;
    assert_eq!(alice.frame().await["type"], "user-joined");
    let (token, last) = alice.cut();
    let (mut alice, _) = Session::resume(&b, &token, last).await;
    bob.send_json(chat("one")).await;
    assert_eq!(alice.frame().await["data"]["text"], "one");

    // Redis goes away: the tunnel carries nothing more, and node B drops the client's socket
    // (no close frame: the client resumes) once the session's pings stop coming.
    redis.stop();
    let (token, last) = (alice.token.clone(), alice.last);
    assert!(alice.client.closed().await.is_none(), "dropped, not closed");
    // Bob, on the session's node, goes on talking; the session keeps it for alice.
    bob.send_json(chat("two")).await;
    bob.send_json(chat("three")).await;
    until_chat(&mut bob, "three").await;

    // Resuming at home needs no Redis.
    let (mut alice, _) = Session::resume(&a, &token, last).await;
    assert_eq!(alice.frame().await["data"]["text"], "two");
    assert_eq!(alice.frame().await["data"]["text"], "three");
    bob.send_json(chat("marker")).await;
    let frames = until_chat(&mut bob, "marker").await;
    assert!(
        frames.iter().all(|f| f["type"] == "chat-message"),
        "bob heard no leave: {frames:?}"
    );
    assert_eq!(alice.frame().await["data"]["text"], "marker");
}

#[tokio::test]
async fn in_a_cluster_a_close_frame_through_another_node_ends_the_session_at_once() {
    let redis = common::cluster::Redis::new();
    let (a, b) = two_nodes(&redis, Duration::from_secs(20)).await;
    let mut bob = conference(&a, "r", "bob").await;
    for (code, name) in [(None, "alice"), (Some(1000), "carol")] {
        let session = Session::join(&a, "r", name).await;
        assert_eq!(bob.expect("user-joined").await["data"]["user"], name);
        let (token, last) = session.cut();
        let (session, _) = Session::resume(&b, &token, last).await;
        let mut client = session.client;
        let frame = code.map(|code: u16| CloseFrame {
            code: CloseCode::from(code),
            reason: "bye".into(),
        });
        client.ws.close(frame).await.unwrap();
        let left = bob.expect("user-left").await;
        assert_eq!(left["data"], json!({ "user": name }), "{code:?}");
    }
}
