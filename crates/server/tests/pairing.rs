//! The pairing dialect (seed 001) end to end: the greeting, the ping/pong state machine,
//! relayed signals, every refusal, partners that go away, and the races between them.

// `allow-unwrap-in-tests` does not reach helpers outside test functions, here or in
// common/mod.rs (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Client, TestServer, PATIENCE};
use serde_json::{json, Value};
use tokio::time::timeout;
use uuid::Uuid;

/// The seed's example `data` for each message type, as its client sends it.
const PING: &str = r#"{"test":true}"#;
const PONG: &str = r#"{"received":true}"#;
const OFFER: &str = r#"{"type":"offer","sdp":"v=0\r\no=- 1234567890..."}"#;
const ANSWER: &str = r#"{"type":"answer","sdp":"v=0\r\no=- 1234567890..."}"#;
const CANDIDATE: &str = r#"{"candidate":"candidate:1 1 UDP 2113667326...","sdpMLineIndex":0}"#;
const DISCONNECT: &str = r#"{"reason":"user_disconnect"}"#;

/// A frame outside the pairing set: its `unknown_type` refusal proves that everything the
/// sender did before has been carried out.
const SENTINEL: &str = r#"{"type":"sentinel","to":"nobody","data":{}}"#;

/// Rounds of each race.
const ROUNDS: usize = 50;

#[tokio::test]
async fn every_user_is_greeted_first_with_a_uuid_v4() {
    let server = start().await;
    let (_a, a) = user(&server).await;
    let (_b, b) = user(&server).await;
    assert_ne!(a, b);

    let stats = server.get("/api/stats").await;
    assert_eq!(stats.status, 200);
    for id in [&a, &b] {
        let listed = listed(&server, id).await;
        assert_eq!(listed["state"], "idle", "{listed}");
        assert_eq!(listed["targetUser"], Value::Null, "{listed}");
        assert_eq!(listed["dialect"], "pairing", "{listed}");
        let connected_at = listed["connectedAt"].as_str().unwrap_or_default();
        assert!(
            humantime::parse_rfc3339(connected_at).is_ok(),
            "ISO 8601 connectedAt: {listed}"
        );
        assert_eq!(listed["ip"], "127.0.0.1", "{listed}");
    }
}

#[tokio::test]
async fn the_seeds_messages_flow_between_paired_users_untouched() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;

    a.send(&frame("ping", &b_id, PING)).await;
    assert_eq!(b.text().await, delivered("ping", &a_id, &b_id, PING));
    assert_state(&server, &a_id, "connecting", Some(&b_id)).await;
    assert_state(&server, &b_id, "idle", None).await;

    b.send(&frame("pong", &a_id, PONG)).await;
    assert_eq!(a.text().await, delivered("pong", &b_id, &a_id, PONG));
    assert_state(&server, &a_id, "connected", Some(&b_id)).await;
    assert_state(&server, &b_id, "connected", Some(&a_id)).await;

    a.send(&frame("offer", &b_id, OFFER)).await;
    assert_eq!(b.text().await, delivered("offer", &a_id, &b_id, OFFER));
    b.send(&frame("answer", &a_id, ANSWER)).await;
    assert_eq!(a.text().await, delivered("answer", &b_id, &a_id, ANSWER));
    a.send(&frame("ice-candidate", &b_id, CANDIDATE)).await;
    assert_eq!(
        b.text().await,
        delivered("ice-candidate", &a_id, &b_id, CANDIDATE)
    );
    b.send(&frame("ice-candidate", &a_id, CANDIDATE)).await;
    assert_eq!(
        a.text().await,
        delivered("ice-candidate", &b_id, &a_id, CANDIDATE)
    );
    // A client cannot speak as someone else: its `from` is replaced.
    a.send(&format!(
        r#"{{"type":"ice-candidate","from":"{b_id}","to":"{b_id}","data":{CANDIDATE}}}"#
    ))
    .await;
    assert_eq!(
        b.text().await,
        delivered("ice-candidate", &a_id, &b_id, CANDIDATE)
    );

    b.send(&frame("disconnect", &a_id, DISCONNECT)).await;
    assert_eq!(
        a.text().await,
        delivered("disconnect", &b_id, &a_id, DISCONNECT)
    );
    assert_state(&server, &a_id, "idle", None).await;
    assert_state(&server, &b_id, "idle", None).await;

    // Back to idle means no more signals between them, and a new ping is welcome.
    a.send(&frame("offer", &b_id, OFFER)).await;
    expect_error(&mut a, "invalid_state").await;
    b.send(&frame("ping", &a_id, PING)).await;
    assert_eq!(a.text().await, delivered("ping", &b_id, &a_id, PING));
}

#[tokio::test]
async fn disconnect_while_connecting_returns_both_to_idle() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;
    a.send(&frame("ping", &b_id, PING)).await;
    b.expect("ping").await;
    a.send(&frame("disconnect", &b_id, DISCONNECT)).await;
    assert_eq!(until_sentinel(&mut a).await, Vec::<String>::new());
    // b's sentinel is its own node's answer, a's disconnect may come from another node:
    // the disconnect first, then nothing else.
    assert_eq!(
        b.text().await,
        delivered("disconnect", &a_id, &b_id, DISCONNECT)
    );
    assert_eq!(until_sentinel(&mut b).await, Vec::<String>::new());
    assert_state(&server, &a_id, "idle", None).await;
    assert_state(&server, &b_id, "idle", None).await;
    // The ping was withdrawn: b's pong has nothing to answer.
    b.send(&frame("pong", &a_id, PONG)).await;
    expect_error(&mut b, "invalid_state").await;
}

#[tokio::test]
async fn refusals_follow_the_state_machine() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;
    let (mut c, c_id) = user(&server).await;
    let stranger = Uuid::new_v4().to_string();

    a.send(&frame("ping", &stranger, PING)).await;
    expect_error(&mut a, "user_not_found").await;
    a.send(&frame("offer", &stranger, OFFER)).await;
    expect_error(&mut a, "user_not_found").await;
    a.send(&frame("chat", &b_id, r#"{"text":"hi"}"#)).await;
    expect_error(&mut a, "unknown_type").await;

    // Signals need a connected pair; a pong needs a pending ping from that user.
    for kind in ["offer", "answer", "ice-candidate"] {
        a.send(&frame(kind, &b_id, OFFER)).await;
        expect_error(&mut a, "invalid_state").await;
    }
    b.send(&frame("pong", &a_id, PONG)).await;
    expect_error(&mut b, "invalid_state").await;

    a.send(&frame("ping", &b_id, PING)).await;
    assert_eq!(b.text().await, delivered("ping", &a_id, &b_id, PING));
    // Connecting is not connected.
    a.send(&frame("offer", &b_id, OFFER)).await;
    expect_error(&mut a, "invalid_state").await;
    // A pong from someone a did not ping.
    c.send(&frame("pong", &a_id, PONG)).await;
    expect_error(&mut c, "invalid_state").await;
    // a is connecting to b: it may ping b again, but nobody else, and nobody may ping a.
    a.send(&frame("ping", &b_id, PING)).await;
    assert_eq!(b.text().await, delivered("ping", &a_id, &b_id, PING));
    a.send(&frame("ping", &c_id, PING)).await;
    expect_error(&mut a, "invalid_state").await;
    c.send(&frame("ping", &a_id, PING)).await;
    expect_error(&mut c, "user_busy").await;

    b.send(&frame("pong", &a_id, PONG)).await;
    a.expect("pong").await;
    // Connected: pinging anyone is refused for a, and both are busy for c.
    a.send(&frame("ping", &c_id, PING)).await;
    expect_error(&mut a, "invalid_state").await;
    a.send(&frame("ping", &b_id, PING)).await;
    expect_error(&mut a, "invalid_state").await;
    for target in [&a_id, &b_id] {
        c.send(&frame("ping", target, PING)).await;
        expect_error(&mut c, "user_busy").await;
    }
    // Signals only between the pair.
    c.send(&frame("offer", &a_id, OFFER)).await;
    expect_error(&mut c, "invalid_state").await;
    a.send(&frame("offer", &c_id, OFFER)).await;
    expect_error(&mut a, "invalid_state").await;

    // Nothing refused was delivered, and the state is as the successes left it.
    for client in [&mut a, &mut b, &mut c] {
        client.send(SENTINEL).await;
        expect_error(client, "unknown_type").await;
    }
    assert_state(&server, &a_id, "connected", Some(&b_id)).await;
    assert_state(&server, &b_id, "connected", Some(&a_id)).await;
    assert_state(&server, &c_id, "idle", None).await;
}

#[tokio::test]
async fn a_connected_partner_that_drops_is_reported_as_peer_gone() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;
    a.send(&frame("ping", &b_id, PING)).await;
    b.expect("ping").await;
    b.send(&frame("pong", &a_id, PONG)).await;
    a.expect("pong").await;

    drop(b);
    assert_eq!(
        a.text().await,
        delivered("disconnect", &b_id, &a_id, r#"{"reason":"peer_gone"}"#)
    );
    assert_state(&server, &a_id, "idle", None).await;
    assert!(!is_listed(&server, &b_id).await);
    // Idle again: a may pair with someone else.
    let (mut c, c_id) = user(&server).await;
    a.send(&frame("ping", &c_id, PING)).await;
    assert_eq!(c.text().await, delivered("ping", &a_id, &c_id, PING));
}

#[tokio::test]
async fn a_pinged_user_that_drops_is_reported_as_peer_gone() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;
    a.send(&frame("ping", &b_id, PING)).await;
    b.expect("ping").await;

    drop(b);
    assert_eq!(
        a.text().await,
        delivered("disconnect", &b_id, &a_id, r#"{"reason":"peer_gone"}"#)
    );
    assert_state(&server, &a_id, "idle", None).await;
    let (mut c, c_id) = user(&server).await;
    a.send(&frame("ping", &c_id, PING)).await;
    assert_eq!(c.text().await, delivered("ping", &a_id, &c_id, PING));
}

/// The contract: "A's socket drops while it has a target B: B receives disconnect/peer_gone
/// and is idle again". A pinging user has its target (it is `connecting` to it).
#[tokio::test]
async fn a_pinger_that_drops_is_reported_to_its_target_as_peer_gone() {
    let server = start().await;
    let (mut a, a_id) = user(&server).await;
    let (mut b, b_id) = user(&server).await;
    // c waits on a, so c hearing that a is gone proves a's drop has been handled.
    let (mut c, c_id) = user(&server).await;
    c.send(&frame("ping", &a_id, PING)).await;
    a.expect("ping").await;
    a.send(&frame("ping", &b_id, PING)).await;
    b.expect("ping").await;
    assert_state(&server, &a_id, "connecting", Some(&b_id)).await;

    drop(a);
    let gone = r#"{"reason":"peer_gone"}"#;
    assert_eq!(c.text().await, delivered("disconnect", &a_id, &c_id, gone));
    assert_eq!(b.text().await, delivered("disconnect", &a_id, &b_id, gone));
    assert_eq!(until_sentinel(&mut b).await, Vec::<String>::new());
    assert_state(&server, &b_id, "idle", None).await;
}

#[tokio::test]
async fn two_users_pinging_each_other_at_once_pair_exactly_once() {
    let server = start().await;
    timeout(PATIENCE * 6, async {
        for round in 0..ROUNDS {
            let (mut a, a_id) = user(&server).await;
            let (mut b, b_id) = user(&server).await;
            let (ping_b, ping_a) = (frame("ping", &b_id, PING), frame("ping", &a_id, PING));
            tokio::join!(a.send(&ping_b), b.send(&ping_a));
            let (heard_a, heard_b) = tokio::join!(until_sentinel(&mut a), until_sentinel(&mut b));

            // One ping won: its sender heard nothing, the loser heard the winner's ping and
            // then its own refusal.
            let ((mut winner, winner_id), (mut loser, loser_id)) = if heard_a.is_empty() {
                assert_eq!(
                    heard_b,
                    [delivered("ping", &a_id, &b_id, PING), busy(&heard_b)],
                    "round {round}"
                );
                ((a, a_id), (b, b_id))
            } else {
                assert!(heard_b.is_empty(), "round {round}: {heard_a:?} {heard_b:?}");
                assert_eq!(
                    heard_a,
                    [delivered("ping", &b_id, &a_id, PING), busy(&heard_a)],
                    "round {round}"
                );
                ((b, b_id), (a, a_id))
            };
            assert_state(&server, &winner_id, "connecting", Some(&loser_id)).await;
            assert_state(&server, &loser_id, "idle", None).await;

            // And the pair completes normally.
            loser.send(&frame("pong", &winner_id, PONG)).await;
            assert_eq!(
                winner.text().await,
                delivered("pong", &loser_id, &winner_id, PONG)
            );
            assert_state(&server, &winner_id, "connected", Some(&loser_id)).await;
            assert_state(&server, &loser_id, "connected", Some(&winner_id)).await;
        }
    })
    .await
    .expect("every round in time");
}

#[tokio::test]
async fn a_pong_racing_the_pingers_drop_never_leaves_anyone_connected_to_nobody() {
    let server = start().await;
    timeout(PATIENCE * 6, async {
        for round in 0..ROUNDS {
            let (mut a, a_id) = user(&server).await;
            let (mut b, b_id) = user(&server).await;
            // c waits on a, so c hearing that a is gone proves a's drop has been handled.
            let (mut c, c_id) = user(&server).await;
            c.send(&frame("ping", &a_id, PING)).await;
            a.expect("ping").await;
            a.send(&frame("ping", &b_id, PING)).await;
            b.expect("ping").await;

            let pong = frame("pong", &a_id, PONG);
            if round % 2 == 0 {
                drop(a);
                b.send(&pong).await;
            } else {
                b.send(&pong).await;
                drop(a);
            }
            let gone = delivered("disconnect", &a_id, &c_id, r#"{"reason":"peer_gone"}"#);
            assert_eq!(c.text().await, gone, "round {round}");

            let mut heard = until_sentinel(&mut b).await;
            let gone = delivered("disconnect", &a_id, &b_id, r#"{"reason":"peer_gone"}"#);
            let refused = |frames: &[String]| {
                frames.last().is_some_and(|last| {
                    let error: Value = serde_json::from_str(last).unwrap_or_default();
                    error["type"] == "error" && error["data"]["code"] == "user_not_found"
                })
            };
            // An accepted pong is answered by nothing; a's drop may be decided on another
            // node and reach b after its sentinel's answer: then it is the next frame.
            if heard.is_empty() {
                heard.push(b.text().await);
            }
            // Either the pong came first (b was connected, then told a is gone), or the drop
            // did (the pong is refused; b may also be told a is gone, as a's target).
            let consistent = heard == [gone.clone()]
                || (heard.len() == 1 && refused(&heard))
                || (heard.len() == 2 && heard[0] == gone && refused(&heard));
            assert!(consistent, "round {round}: b heard {heard:?}");

            assert!(!is_listed(&server, &a_id).await, "round {round}");
            assert_state(&server, &b_id, "idle", None).await;
            assert_state(&server, &c_id, "idle", None).await;
        }
    })
    .await
    .expect("every round in time");
}

/// Connects a pairing user; its first frame must be the greeting with a UUID v4.
async fn user(server: &TestServer) -> (Client, String) {
    let mut client = server.connect("/pairing").await;
    let greeting = client.json().await;
    let id = greeting["data"]["userId"]
        .as_str()
        .unwrap_or_else(|| panic!("a greeting with a userId: {greeting}"))
        .to_owned();
    assert_eq!(
        greeting,
        json!({"type":"connected","data":{"userId":id}}),
        "the greeting comes first"
    );
    let uuid = Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{e}: {id}"));
    assert_eq!(uuid.get_version_num(), 4, "{id}");
    assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
    assert_eq!(uuid.hyphenated().to_string(), id, "canonical form");
    (client, id)
}

/// What a client sends: `{"type":T,"to":USER,"data":D}`.
fn frame(kind: &str, to: &str, data: &str) -> String {
    format!(r#"{{"type":"{kind}","to":"{to}","data":{data}}}"#)
}

/// What a client receives: `{"type":T,"from":SENDER,"to":USER,"data":D}`, D as sent.
fn delivered(kind: &str, from: &str, to: &str, data: &str) -> String {
    format!(r#"{{"type":"{kind}","from":"{from}","to":"{to}","data":{data}}}"#)
}

/// The last of `frames`, checked to be a `user_busy` refusal (its message is the server's).
fn busy(frames: &[String]) -> String {
    let last = frames.last().cloned().unwrap_or_default();
    let error: Value = serde_json::from_str(&last).unwrap_or_default();
    assert_eq!(error["data"]["code"], "user_busy", "{last}");
    assert_error_shape(&error);
    last
}

/// Sends the sentinel and returns every frame before its refusal.
async fn until_sentinel(client: &mut Client) -> Vec<String> {
    client.send(SENTINEL).await;
    let mut heard = Vec::new();
    loop {
        let text = client.text().await;
        let frame: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if frame["type"] == "error" && frame["data"]["code"] == "unknown_type" {
            return heard;
        }
        heard.push(text);
    }
}

/// The next frame must be exactly a pairing error with `code` and a message.
async fn expect_error(client: &mut Client, code: &str) {
    let frame = client.json().await;
    assert_eq!(frame["data"]["code"], code, "unexpected frame: {frame}");
    assert_error_shape(&frame);
}

/// `{"type":"error","data":{"code":C,"message":M}}` and nothing else, M not empty.
fn assert_error_shape(frame: &Value) {
    let message = frame["data"]["message"]
        .as_str()
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| panic!("an error message: {frame}"));
    let code = frame["data"]["code"].clone();
    assert_eq!(
        frame,
        &json!({"type":"error","data":{"code":code,"message":message}})
    );
}

/// `id`'s entry in `/api/stats`.
async fn listed(server: &TestServer, id: &str) -> Value {
    find(server, id)
        .await
        .unwrap_or_else(|| panic!("{id} is listed in /api/stats"))
}

async fn is_listed(server: &TestServer, id: &str) -> bool {
    find(server, id).await.is_some()
}

async fn find(server: &TestServer, id: &str) -> Option<Value> {
    let stats = server.get("/api/stats?limit=1000").await.json();
    let users = stats["users"].as_array().cloned().unwrap_or_default();
    users.into_iter().find(|user| user["id"] == id)
}

/// `id` is listed with `state` and `targetUser` (null when `target` is `None`).
async fn assert_state(server: &TestServer, id: &str, state: &str, target: Option<&str>) {
    let user = listed(server, id).await;
    assert_eq!(
        (&user["state"], &user["targetUser"]),
        (&json!(state), &json!(target)),
        "{id}: {user}"
    );
}
