//! The room dialects share rooms: each pair of query-rooms, room-relay and conference peers in
//! one room see each other come and go and signal each other, each in its own dialect (the
//! contract's mapping table). Also `/api/stats` over connections of every dialect.

// `allow-unwrap-in-tests` does not reach helpers outside test functions, here or in
// common/mod.rs (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;

use common::{conference, start, without_media, Client, TestServer};
use serde_json::{json, Value};

const OFFER: &str = r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n","x":1.50,"u":"\u00e9"}"#;
const ANSWER: &str = r#"{"type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}"#;
const CANDIDATE: &str = r#"{"candidate":"candidate:1 1 UDP 2113667326 127.0.0.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}"#;

#[tokio::test]
async fn query_rooms_and_room_relay_share_a_room() {
    let server = start().await;
    let mut q = query(&server, "x", "qq").await;
    let (mut r, joined) = relay(&server, "x", "rr").await;
    assert_eq!(joined["users"], json!(["qq"]));
    assert_eq!(q.json().await, peer_joined("rr", "x"));

    // query-rooms → room-relay: `{"type":T,"sender":FROM,"data":BODY}` (+ `target`).
    q.send(&format!(
        r#"{{"type":"offer","to":"rr","payload":{OFFER}}}"#
    ))
    .await;
    expect_relayed(
        &mut r,
        json!({"type":"offer","sender":"qq","data":value(OFFER),"target":"rr"}),
        OFFER,
    )
    .await;
    q.send(&format!(
        r#"{{"type":"ice_candidate","payload":{CANDIDATE}}}"#
    ))
    .await;
    expect_relayed(
        &mut r,
        json!({"type":"ice-candidate","sender":"qq","data":value(CANDIDATE)}),
        CANDIDATE,
    )
    .await;
    q.send(&format!(
        r#"{{"type":"answer","to":"rr","payload":{ANSWER}}}"#
    ))
    .await;
    expect_relayed(
        &mut r,
        json!({"type":"answer","sender":"qq","data":value(ANSWER),"target":"rr"}),
        ANSWER,
    )
    .await;

    // room-relay → query-rooms: `{"type":T,"from":FROM,"to":PEER?,"payload":BODY}`.
    r.send(&format!(
        r#"{{"type":"offer","roomId":"x","sender":"rr","target":"qq","data":{OFFER}}}"#
    ))
    .await;
    expect_relayed(
        &mut q,
        json!({"type":"offer","from":"rr","to":"qq","payload":value(OFFER)}),
        OFFER,
    )
    .await;
    r.send(&format!(
        r#"{{"type":"answer","roomId":"x","sender":"rr","data":{ANSWER}}}"#
    ))
    .await;
    expect_relayed(
        &mut q,
        json!({"type":"answer","from":"rr","payload":value(ANSWER)}),
        ANSWER,
    )
    .await;
    r.send(&format!(
        r#"{{"type":"ice-candidate","roomId":"x","sender":"rr","target":"qq","data":{CANDIDATE}}}"#
    ))
    .await;
    expect_relayed(
        &mut q,
        json!({"type":"ice_candidate","from":"rr","to":"qq","payload":value(CANDIDATE)}),
        CANDIDATE,
    )
    .await;

    // Chat: `payload.text` ⇄ `message`.
    q.send(r#"{"type":"chat","payload":{"text":"hi from qq"}}"#)
        .await;
    assert_eq!(
        r.json().await,
        json!({"type":"chat","sender":"qq","message":"hi from qq"})
    );
    r.send(r#"{"type":"chat","roomId":"x","sender":"rr","message":"聊天内容"}"#)
        .await;
    expect_query_chat(&mut q, "rr", "聊天内容").await;

    // App-defined types relay under their own name, the body as `data` / `payload`.
    q.send(r#"{"type":"game-move","payload":{"x":1,"y":[2.50]}}"#)
        .await;
    expect_relayed(
        &mut r,
        json!({"type":"game-move","sender":"qq","data":{"x":1,"y":[2.5]}}),
        r#"{"x":1,"y":[2.50]}"#,
    )
    .await;
    q.send(r#"{"type":"game-move","to":"rr","payload":{"x":2}}"#)
        .await;
    assert_eq!(
        r.json().await,
        json!({"type":"game-move","sender":"qq","data":{"x":2},"target":"rr"})
    );
    r.send(r#"{"type":"game-move","roomId":"x","data":{"y":2}}"#)
        .await;
    assert_eq!(
        q.json().await,
        json!({"type":"game-move","from":"rr","payload":{"y":2}})
    );
    r.send(r#"{"type":"game-move","target":"qq","data":{"y":3}}"#)
        .await;
    assert_eq!(
        q.json().await,
        json!({"type":"game-move","from":"rr","to":"qq","payload":{"y":3}})
    );

    // Leaving and coming back, each in its own dialect.
    r.send(r#"{"type":"leave-room","roomId":"x","sender":"rr"}"#)
        .await;
    assert_eq!(q.json().await, peer_left("rr", "x"));
    r.send(r#"{"type":"join-room","roomId":"x","sender":"rr"}"#)
        .await;
    assert_eq!(
        r.json().await,
        json!({"type":"join-success","roomId":"x","userId":"rr","users":["qq"]})
    );
    assert_eq!(q.json().await, peer_joined("rr", "x"));
    drop(q);
    assert_eq!(r.json().await, json!({"type":"user-left","userId":"qq"}));
    let _q = server.connect_once_free("/ws?peer_id=qq&room=x").await;
    assert_eq!(r.json().await, json!({"type":"user-joined","userId":"qq"}));
}

#[tokio::test]
async fn query_rooms_and_conference_share_a_room() {
    let server = start().await;
    let mut c = conference(&server, "x", "cc").await;
    let mut q = query(&server, "x", "qq").await;
    assert_eq!(
        c.json().await,
        json!({"type":"user-joined","data":{"user":"qq"}})
    );

    // query-rooms → conference: addressed, or room-wide with `target` = the receiver.
    q.send(&format!(
        r#"{{"type":"offer","to":"cc","payload":{OFFER}}}"#
    ))
    .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-offer","data":{"from":"qq","target":"cc","payload":value(OFFER)}}),
        OFFER,
    )
    .await;
    q.send(&format!(
        r#"{{"type":"ice_candidate","payload":{CANDIDATE}}}"#
    ))
    .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-ice-candidate","data":{"from":"qq","target":"cc","payload":value(CANDIDATE)}}),
        CANDIDATE,
    )
    .await;
    q.send(&format!(r#"{{"type":"answer","payload":{ANSWER}}}"#))
        .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-answer","data":{"from":"qq","target":"cc","payload":value(ANSWER)}}),
        ANSWER,
    )
    .await;

    // conference → query-rooms.
    for (sent, received, payload) in [
        ("webrtc-offer", "offer", OFFER),
        ("webrtc-answer", "answer", ANSWER),
        ("webrtc-ice-candidate", "ice_candidate", CANDIDATE),
    ] {
        c.send(&format!(
            r#"{{"type":"{sent}","data":{{"target":"qq","payload":{payload}}}}}"#
        ))
        .await;
        expect_relayed(
            &mut q,
            json!({"type":received,"from":"cc","to":"qq","payload":value(payload)}),
            payload,
        )
        .await;
    }

    // Chat: `payload.text` ⇄ `chat-message` `text`.
    q.send(r#"{"type":"chat","payload":{"text":"hi from qq"}}"#)
        .await;
    expect_conference_chat(&mut c, "qq", "hi from qq").await;
    c.send_json(json!({"type":"chat-message","data":{"text":"hi from cc"}}))
        .await;
    expect_conference_chat(&mut c, "cc", "hi from cc").await; // the sender's own copy
    expect_query_chat(&mut q, "cc", "hi from cc").await;

    // App-defined types: conference ignores them, and the sender is not told.
    q.send(r#"{"type":"game-move","payload":{"x":1}}"#).await;
    q.send(r#"{"type":"game-move","to":"cc","payload":{"x":2}}"#)
        .await;
    q.send(r#"{"type":"offer","to":"cc","payload":{"sentinel":true}}"#)
        .await;
    assert_eq!(
        c.json().await,
        json!({"type":"webrtc-offer","data":{"from":"qq","target":"cc","payload":{"sentinel":true}}})
    );
    q.send(r#"{"type":"offer","to":"nobody","payload":{}}"#)
        .await;
    assert_eq!(q.expect("error").await["payload"]["code"], "peer_not_found");

    // Leaving and coming back, each in its own dialect.
    c.send_json(json!({"type":"leave-room","data":{"roomId":"x"}}))
        .await;
    assert_eq!(q.json().await, peer_left("cc", "x"));
    c.send_json(json!({"type":"join-room","data":{"roomId":"x","username":"cc"}}))
        .await;
    let joined = c.expect("joined").await;
    assert_eq!(
        without_media(joined),
        json!({"type":"joined","data":{"roomId":"x","users":["qq","cc"]}})
    );
    assert_eq!(q.json().await, peer_joined("cc", "x"));
    drop(q);
    assert_eq!(
        c.json().await,
        json!({"type":"user-left","data":{"user":"qq"}})
    );
}

#[tokio::test]
async fn room_relay_and_conference_share_a_room() {
    let server = start().await;
    let mut c = conference(&server, "x", "cc").await;
    let (mut r, joined) = relay(&server, "x", "rr").await;
    assert_eq!(joined["users"], json!(["cc"]));
    assert_eq!(
        c.json().await,
        json!({"type":"user-joined","data":{"user":"rr"}})
    );

    // room-relay → conference: addressed, or room-wide with `target` = the receiver.
    r.send(&format!(
        r#"{{"type":"offer","roomId":"x","sender":"rr","target":"cc","data":{OFFER}}}"#
    ))
    .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-offer","data":{"from":"rr","target":"cc","payload":value(OFFER)}}),
        OFFER,
    )
    .await;
    r.send(&format!(
        r#"{{"type":"ice-candidate","roomId":"x","sender":"mallory","data":{CANDIDATE}}}"#
    ))
    .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-ice-candidate","data":{"from":"rr","target":"cc","payload":value(CANDIDATE)}}),
        CANDIDATE,
    )
    .await;
    r.send(&format!(
        r#"{{"type":"answer","roomId":"x","data":{ANSWER}}}"#
    ))
    .await;
    expect_relayed(
        &mut c,
        json!({"type":"webrtc-answer","data":{"from":"rr","target":"cc","payload":value(ANSWER)}}),
        ANSWER,
    )
    .await;

    // conference → room-relay: `{"type":T,"sender":FROM,"data":BODY,"target":SELF}`.
    for (sent, received, payload) in [
        ("webrtc-offer", "offer", OFFER),
        ("webrtc-answer", "answer", ANSWER),
        ("webrtc-ice-candidate", "ice-candidate", CANDIDATE),
    ] {
        c.send(&format!(
            r#"{{"type":"{sent}","data":{{"target":"rr","payload":{payload}}}}}"#
        ))
        .await;
        expect_relayed(
            &mut r,
            json!({"type":received,"sender":"cc","data":value(payload),"target":"rr"}),
            payload,
        )
        .await;
    }

    // Chat: `message` ⇄ `chat-message` `text`.
    r.send(r#"{"type":"chat","roomId":"x","sender":"rr","message":"聊天内容"}"#)
        .await;
    expect_conference_chat(&mut c, "rr", "聊天内容").await;
    c.send_json(json!({"type":"chat-message","data":{"text":"hi from cc","timestamp":"2025-09-09T13:00:00.000Z"}}))
        .await;
    expect_conference_chat(&mut c, "cc", "hi from cc").await; // the sender's own copy
    assert_eq!(
        r.json().await,
        json!({"type":"chat","sender":"cc","message":"hi from cc"})
    );

    // App-defined types: conference ignores them, and the sender is not told.
    r.send(r#"{"type":"game-move","roomId":"x","data":{"x":1}}"#)
        .await;
    r.send(r#"{"type":"game-move","target":"cc","data":{"x":2}}"#)
        .await;
    r.send(r#"{"type":"offer","target":"cc","data":{"sentinel":true}}"#)
        .await;
    assert_eq!(
        c.json().await,
        json!({"type":"webrtc-offer","data":{"from":"rr","target":"cc","payload":{"sentinel":true}}})
    );
    r.send(r#"{"type":"offer","target":"nobody","data":{}}"#)
        .await;
    assert_eq!(r.expect("error").await["code"], "peer_not_found");

    // Leaving and coming back, each in its own dialect.
    c.send_json(json!({"type":"leave-room","data":{"roomId":"x"}}))
        .await;
    assert_eq!(r.json().await, json!({"type":"user-left","userId":"cc"}));
    c.send_json(json!({"type":"join-room","data":{"roomId":"x","username":"cc"}}))
        .await;
    assert_eq!(
        without_media(c.json().await),
        json!({"type":"joined","data":{"roomId":"x","users":["rr","cc"]}})
    );
    assert_eq!(r.json().await, json!({"type":"user-joined","userId":"cc"}));
    r.send(r#"{"type":"leave-room","roomId":"x"}"#).await;
    assert_eq!(
        c.json().await,
        json!({"type":"user-left","data":{"user":"rr"}})
    );
    r.send(r#"{"type":"join-room","roomId":"x","sender":"rr"}"#)
        .await;
    assert_eq!(
        c.json().await,
        json!({"type":"user-joined","data":{"user":"rr"}})
    );
    drop(c);
    assert_eq!(r.expect("join-success").await["users"], json!(["cc"]));
    assert_eq!(r.json().await, json!({"type":"user-left","userId":"cc"}));
}

#[tokio::test]
async fn identities_are_unique_across_dialects() {
    let server = start().await;
    let _alice = conference(&server, "x", "alice").await;
    let _bob = query(&server, "x", "bob").await;
    let (_carol, _) = relay(&server, "x", "carol").await;

    // query-rooms is refused before the upgrade.
    for taken in ["alice", "bob", "carol"] {
        let (status, body) = server.refused(&format!("/ws?peer_id={taken}&room=x")).await;
        assert_eq!(status, 409, "{taken}: {body}");
    }
    // conference and room-relay get `name_taken` in their own error shapes.
    let mut late_conference = server.connect("/conference").await;
    let mut late_relay = server.connect("/room-relay").await;
    for taken in ["alice", "bob", "carol"] {
        late_conference
            .send_json(json!({"type":"join-room","data":{"roomId":"x","username":taken}}))
            .await;
        let error = late_conference.expect("error").await;
        assert_eq!(error["data"]["code"], "name_taken", "{taken}: {error}");
        late_relay
            .send_json(json!({"type":"join-room","roomId":"x","sender":taken}))
            .await;
        let error = late_relay.expect("error").await;
        assert_eq!(error["code"], "name_taken", "{taken}: {error}");
    }
    // The same names are free in another room.
    let _elsewhere = query(&server, "y", "alice").await;
    late_conference
        .send_json(json!({"type":"join-room","data":{"roomId":"y","username":"bob"}}))
        .await;
    assert_eq!(
        late_conference.expect("joined").await["data"]["users"],
        json!(["alice", "bob"])
    );
    late_relay
        .send_json(json!({"type":"join-room","roomId":"y","sender":"carol"}))
        .await;
    assert_eq!(
        late_relay.expect("join-success").await["users"],
        json!(["alice", "bob"])
    );
}

#[tokio::test]
async fn stats_list_connections_of_every_dialect() {
    let server = start().await;
    let _c1 = conference(&server, "s1", "c1").await;
    let _conference_lobby = server.connect("/conference").await;
    let _q1 = query(&server, "s1", "q1").await;
    let (_r1, _) = relay(&server, "s2", "r1").await;
    let _relay_lobby = server.connect("/room-relay").await;
    let mut pairing = server.connect("/pairing").await;
    let user_id = pairing.expect("connected").await["data"]["userId"]
        .as_str()
        .unwrap()
        .to_owned();
    let _broadcast = server.connect("/broadcast/ch").await;

    let response = server.get("/api/stats").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let stats = response.json();
    assert_eq!(stats["connectedUsers"], 7, "{stats}");
    let users = stats["users"].as_array().unwrap();
    // Oldest connection first; room dialects say which room (null before joining).
    let expected = [
        (
            "conference",
            json!("c1"),
            Some("connected"),
            Some(json!("s1")),
        ),
        ("conference", Value::Null, Some("idle"), Some(Value::Null)),
        (
            "query-rooms",
            json!("q1"),
            Some("connected"),
            Some(json!("s1")),
        ),
        (
            "room-relay",
            json!("r1"),
            Some("connected"),
            Some(json!("s2")),
        ),
        ("room-relay", Value::Null, Some("idle"), Some(Value::Null)),
        ("pairing", json!(user_id), Some("idle"), None),
        // A broadcast channel is not a room: the contract leaves its state open.
        ("broadcast", Value::Null, None, None),
    ];
    assert_eq!(users.len(), expected.len(), "{stats}");
    for (user, (dialect, id, state, room)) in users.iter().zip(expected) {
        assert_eq!(user["dialect"], dialect, "{user}");
        if let Some(state) = state {
            assert_eq!(user["state"], state, "{user}");
        }
        assert_eq!(user["targetUser"], Value::Null, "{user}");
        assert!(user.get("ip").is_some_and(Value::is_string), "{user}");
        let connected_at = user["connectedAt"].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(connected_at).is_ok(), "{user}");
        if id != Value::Null {
            assert_eq!(user["id"], id, "{user}");
        }
        if let Some(room) = room {
            assert_eq!(user["room"], room, "{user}");
        }
    }

    // A bounded listing still counts everyone; the oldest come first.
    let limited = server.get("/api/stats?limit=2").await.json();
    assert_eq!(limited["connectedUsers"], 7, "{limited}");
    let listed: Vec<&Value> = limited["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| &user["dialect"])
        .collect();
    assert_eq!(listed, [&json!("conference"), &json!("conference")]);

    // CORS headers for a browser on another origin.
    let response = server
        .request(
            "GET /api/stats HTTP/1.1\r\nHost: test\r\nOrigin: http://example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(response.status, 200);
    assert!(
        response.header("access-control-allow-origin").is_some(),
        "{:?}",
        response.headers
    );
}

/// Joins `room` on the query-rooms dialect as `id` (both already URL-safe).
async fn query(server: &TestServer, room: &str, id: &str) -> Client {
    server
        .connect(&format!("/ws?peer_id={id}&room={room}"))
        .await
}

/// Joins `room` on the room-relay dialect as `name`; returns the client and its
/// `join-success`.
async fn relay(server: &TestServer, room: &str, name: &str) -> (Client, Value) {
    let mut client = server.connect("/room-relay").await;
    client
        .send_json(json!({"type":"join-room","roomId":room,"sender":name}))
        .await;
    let joined = client.expect("join-success").await;
    assert_eq!(
        (&joined["roomId"], &joined["userId"]),
        (&json!(room), &json!(name))
    );
    (client, joined)
}

fn peer_joined(id: &str, room: &str) -> Value {
    json!({"type":"peer_joined","from":id,"payload":{"peer_id":id,"room":room}})
}

fn peer_left(id: &str, room: &str) -> Value {
    json!({"type":"peer_left","from":id,"payload":{"peer_id":id,"room":room}})
}

fn value(raw: &str) -> Value {
    serde_json::from_str(raw).expect("a JSON fixture")
}

/// The next frame must be JSON-equal to `expected`, with `raw` in it byte for byte.
async fn expect_relayed(client: &mut Client, expected: Value, raw: &str) {
    let text = client.text().await;
    let frame: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(frame, expected, "{text}");
    assert!(text.contains(raw), "{raw} byte for byte in {text}");
}

/// The next frame must be a query-rooms chat from `from` with `payload.text` = `text`
/// (and at most a timestamp beside it), room-wide.
async fn expect_query_chat(client: &mut Client, from: &str, text: &str) {
    let frame = client.json().await;
    let payload = frame["payload"].clone();
    assert_eq!(
        frame,
        json!({"type":"chat","from":from,"payload":payload}),
        "{frame}"
    );
    assert_eq!(payload["text"], text, "{frame}");
    let keys = payload
        .as_object()
        .map(|body| body.keys().cloned().collect::<Vec<_>>());
    assert!(
        keys.is_some_and(|keys| keys.iter().all(|key| key == "text" || key == "timestamp")),
        "{frame}"
    );
}

/// The next frame must be a conference `chat-message` from `from` with `text` and an
/// ISO 8601 timestamp.
async fn expect_conference_chat(client: &mut Client, from: &str, text: &str) {
    let chat = client.expect("chat-message").await;
    let stamp = chat["data"]["timestamp"].as_str().unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(stamp).is_ok(),
        "ISO 8601 timestamp: {chat}"
    );
    assert_eq!(
        chat,
        json!({"type":"chat-message","data":{"from":from,"text":text,"timestamp":stamp}})
    );
}
