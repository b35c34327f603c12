//! The room-relay dialect (seed 002) end to end: joining, one room per connection, verbatim
//! forwarding with the server's `sender`, targets, and typed errors.

// `allow-unwrap-in-tests` does not reach helpers outside test functions, here or in
// common/mod.rs (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Client, TestServer};
use serde_json::{json, Value};

/// A server type: its `reserved_type` refusal proves that everything the sender did before
/// has been carried out.
const SENTINEL: &str = r#"{"type":"user-left","userId":"sentinel"}"#;

#[tokio::test]
async fn joining_lists_the_others_and_tells_them() {
    let server = start().await;
    // The seed's own placeholders are valid identifiers.
    let mut first = server.connect("/room-relay").await;
    first
        .send(r#"{"type":"join-room","roomId":"房间ID","sender":"用户ID"}"#)
        .await;
    assert_eq!(
        first.json().await,
        json!({"type":"join-success","roomId":"房间ID","userId":"用户ID","users":[]})
    );

    let mut second = server.connect("/room-relay").await;
    second
        .send(r#"{"type":"join-room","roomId":"房间ID","sender":"u2"}"#)
        .await;
    assert_eq!(
        second.json().await,
        json!({"type":"join-success","roomId":"房间ID","userId":"u2","users":["用户ID"]})
    );
    assert_eq!(
        first.text().await,
        r#"{"type":"user-joined","userId":"u2"}"#
    );

    let mut third = server.connect("/room-relay").await;
    third
        .send(r#"{"type":"join-room","roomId":"房间ID","sender":"u3"}"#)
        .await;
    let joined = third.expect("join-success").await;
    assert_eq!(
        sorted(&joined["users"]),
        ["u2", "用户ID"],
        "the others, not u3: {joined}"
    );
    assert_eq!(
        joined,
        json!({"type":"join-success","roomId":"房间ID","userId":"u3","users":joined["users"]})
    );
    for client in [&mut first, &mut second] {
        assert_eq!(
            client.text().await,
            r#"{"type":"user-joined","userId":"u3"}"#
        );
    }
}

#[tokio::test]
async fn joining_another_room_leaves_the_first() {
    let server = start().await;
    let mut u1 = member(&server, "r1", "u1").await;
    let mut u2 = member(&server, "r1", "u2").await;
    let mut u3 = member(&server, "r2", "u3").await;
    u1.expect("user-joined").await;

    u2.send(r#"{"type":"join-room","roomId":"r2","sender":"u2"}"#)
        .await;
    assert_eq!(
        u2.json().await,
        json!({"type":"join-success","roomId":"r2","userId":"u2","users":["u3"]})
    );
    assert_eq!(u1.text().await, r#"{"type":"user-left","userId":"u2"}"#);
    assert_eq!(u3.text().await, r#"{"type":"user-joined","userId":"u2"}"#);

    // u2 now speaks in r2 only, and may not name r1 any more.
    u2.send(r#"{"type":"chat","roomId":"r2","sender":"u2","message":"hi r2"}"#)
        .await;
    assert_eq!(
        u3.json().await,
        json!({"type":"chat","sender":"u2","roomId":"r2","message":"hi r2"})
    );
    u2.send(r#"{"type":"chat","roomId":"r1","sender":"u2","message":"hi r1"}"#)
        .await;
    expect_error(&mut u2, "not_in_room").await;
    assert_eq!(until_sentinel(&mut u1).await, Vec::<Value>::new());
    // u2's name is free in r1, and u1's signals reach whoever is there now.
    let mut again = member(&server, "r1", "u2").await;
    assert_eq!(u1.text().await, r#"{"type":"user-joined","userId":"u2"}"#);
    u1.send(r#"{"type":"offer","roomId":"r1","data":{}}"#).await;
    assert_eq!(
        again.json().await,
        json!({"type":"offer","sender":"u1","roomId":"r1","data":{}})
    );
}

#[tokio::test]
async fn the_seeds_frames_are_forwarded_verbatim_with_the_server_sender() {
    let server = start().await;
    let mut u1 = member(&server, "房间ID", "u1").await;
    let mut u2 = member(&server, "房间ID", "u2").await;
    let mut u3 = member(&server, "房间ID", "u3").await;
    u1.expect("user-joined").await;
    u1.expect("user-joined").await;
    u2.expect("user-joined").await;

    let data = r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n","x":1.50,"u":"\u00e9"}"#;
    for kind in ["offer", "answer", "ice-candidate"] {
        // u1 claims to be u2: the server says who really sent it.
        let sent = format!(r#"{{"type":"{kind}","roomId":"房间ID","sender":"u2","data":{data}}}"#);
        u1.send(&sent).await;
        for client in [&mut u2, &mut u3] {
            let text = client.text().await;
            assert!(text.contains(data), "data byte for byte: {text}");
            let mut expected: Value = serde_json::from_str(&sent).unwrap();
            expected["sender"] = json!("u1");
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        }
    }
    u2.send(r#"{"type":"chat","roomId":"房间ID","sender":"用户ID","message":"聊天内容"}"#)
        .await;
    for client in [&mut u1, &mut u3] {
        assert_eq!(
            client.json().await,
            json!({"type":"chat","roomId":"房间ID","sender":"u2","message":"聊天内容"})
        );
    }
    // No sender at all: the server adds it. App-defined types and fields go through as well.
    u3.send(r#"{"type":"whiteboard-stroke","points":[[0,0],[1,2.5]],"color":"red"}"#)
        .await;
    for client in [&mut u1, &mut u2] {
        assert_eq!(
            client.json().await,
            json!({"type":"whiteboard-stroke","sender":"u3","points":[[0,0],[1,2.5]],"color":"red"})
        );
    }

    // Nothing came back to any sender.
    for client in [&mut u1, &mut u2, &mut u3] {
        assert_eq!(until_sentinel(client).await, Vec::<Value>::new());
    }

    // The seed's leave-room: the others are told who really left.
    u3.send(r#"{"type":"leave-room","roomId":"房间ID","sender":"u1"}"#)
        .await;
    for client in [&mut u1, &mut u2] {
        assert_eq!(client.text().await, r#"{"type":"user-left","userId":"u3"}"#);
    }
    // u3 is out: its next signal is refused, and only u1 and u2 remain.
    u3.send(r#"{"type":"offer","roomId":"房间ID","data":{}}"#)
        .await;
    expect_error(&mut u3, "not_in_room").await;
}

#[tokio::test]
async fn a_target_gets_the_frame_alone() {
    let server = start().await;
    let mut u1 = member(&server, "r", "u1").await;
    let mut u2 = member(&server, "r", "u2").await;
    let mut u3 = member(&server, "r", "u3").await;
    u1.expect("user-joined").await;
    u1.expect("user-joined").await;
    u2.expect("user-joined").await;

    u1.send(r#"{"type":"offer","roomId":"r","sender":"u1","target":"u3","data":{"sdp":"v=0"}}"#)
        .await;
    assert_eq!(
        u3.json().await,
        json!({"type":"offer","sender":"u1","roomId":"r","target":"u3","data":{"sdp":"v=0"}})
    );
    u3.send(r#"{"type":"answer","target":"u1","data":{"sdp":"v=1"}}"#)
        .await;
    assert_eq!(
        u1.json().await,
        json!({"type":"answer","sender":"u3","target":"u1","data":{"sdp":"v=1"}})
    );
    // u2 heard none of it: its next frame is a room-wide chat sent afterwards.
    u1.send(r#"{"type":"chat","message":"everyone"}"#).await;
    assert_eq!(
        u2.json().await,
        json!({"type":"chat","sender":"u1","message":"everyone"})
    );
    assert_eq!(
        u3.json().await,
        json!({"type":"chat","sender":"u1","message":"everyone"})
    );
}

#[tokio::test]
async fn refusals_are_typed_errors_and_the_socket_stays_open() {
    let server = start().await;
    let mut u1 = member(&server, "r", "u1").await;
    let mut other = server.connect("/room-relay").await;

    // Before joining, nothing but join-room is served.
    for frame in [
        r#"{"type":"offer","roomId":"r","sender":"x","data":{}}"#,
        r#"{"type":"chat","roomId":"r","message":"hi"}"#,
        r#"{"type":"offer","target":"u1","data":{}}"#,
        r#"{"type":"leave-room","roomId":"r","sender":"x"}"#,
    ] {
        other.send(frame).await;
        expect_error(&mut other, "not_in_room").await;
    }
    other
        .send(r#"{"type":"join-room","roomId":"r","sender":"u1"}"#)
        .await;
    expect_error(&mut other, "name_taken").await;
    other
        .send(r#"{"type":"join-room","roomId":"r","sender":""}"#)
        .await;
    expect_error(&mut other, "bad_id").await;
    other
        .send(r#"{"type":"join-room","roomId":"r","sender":"u2"}"#)
        .await;
    other.expect("join-success").await;
    assert_eq!(u1.text().await, r#"{"type":"user-joined","userId":"u2"}"#);

    let _elsewhere = member(&server, "s", "u3").await;
    for (frame, code) in [
        (r#"{"type":"offer","roomId":"s","data":{}}"#, "not_in_room"),
        (
            r#"{"type":"leave-room","roomId":"s","sender":"u2"}"#,
            "not_in_room",
        ),
        (
            r#"{"type":"offer","target":"nobody","data":{}}"#,
            "peer_not_found",
        ),
        (
            r#"{"type":"offer","target":"u3","data":{}}"#,
            "peer_not_found",
        ),
        (
            r#"{"type":"join-success","roomId":"r","userId":"u2","users":[]}"#,
            "reserved_type",
        ),
        (r#"{"type":"user-joined","userId":"u9"}"#, "reserved_type"),
        (r#"{"type":"user-left","userId":"u1"}"#, "reserved_type"),
        (
            r#"{"type":"error","code":"x","message":"y"}"#,
            "reserved_type",
        ),
        ("{not json", "bad_json"),
        (r#"{"roomId":"r","data":{}}"#, "missing_type"),
        (r#"{"type":["offer"]}"#, "bad_field"),
        (r#"{"type":"offer","target":5,"data":{}}"#, "bad_field"),
    ] {
        other.send(frame).await;
        let error = other.json().await;
        assert_eq!(error["code"], code, "for {frame}: {error}");
        assert_error_shape(&error);
    }
    other.send_binary(vec![1, 2, 3]).await;
    expect_error(&mut other, "binary_unsupported").await;

    // None of it reached u1, and other is still served.
    other
        .send(r#"{"type":"offer","roomId":"r","data":{"sdp":"ok"}}"#)
        .await;
    assert_eq!(
        u1.json().await,
        json!({"type":"offer","sender":"u2","roomId":"r","data":{"sdp":"ok"}})
    );
}

#[tokio::test]
async fn a_dropped_socket_is_announced_exactly_once() {
    let server = start().await;
    let mut u1 = member(&server, "r", "u1").await;
    let u2 = member(&server, "r", "u2").await;
    let mut u3 = member(&server, "r", "u3").await;
    u1.expect("user-joined").await;
    u1.expect("user-joined").await;
    drop(u2); // no close handshake: the TCP connection just goes away

    // u3 hearing of the drop proves the server has handled it; what it sends next is
    // ordered after everything the drop caused.
    let left = r#"{"type":"user-left","userId":"u2"}"#;
    assert_eq!(u3.text().await, left);
    u3.send(r#"{"type":"chat","message":"sentinel"}"#).await;
    assert_eq!(u1.text().await, left);
    assert_eq!(
        u1.json().await,
        json!({"type":"chat","sender":"u3","message":"sentinel"})
    );
    u1.send(r#"{"type":"chat","message":"sentinel"}"#).await;
    assert_eq!(
        u3.json().await,
        json!({"type":"chat","sender":"u1","message":"sentinel"})
    );

    // Empty rooms leave nothing behind: once both have left (each one's refused offer
    // proves its leave was carried out), a newcomer sees no old members.
    u1.send(r#"{"type":"leave-room","roomId":"r"}"#).await;
    u1.send(r#"{"type":"offer","data":{}}"#).await;
    expect_error(&mut u1, "not_in_room").await;
    assert_eq!(u3.text().await, r#"{"type":"user-left","userId":"u1"}"#);
    u3.send(r#"{"type":"leave-room"}"#).await;
    u3.send(r#"{"type":"offer","data":{}}"#).await;
    expect_error(&mut u3, "not_in_room").await;
    let mut again = server.connect("/room-relay").await;
    again
        .send(r#"{"type":"join-room","roomId":"r","sender":"u1"}"#)
        .await;
    assert_eq!(
        again.json().await,
        json!({"type":"join-success","roomId":"r","userId":"u1","users":[]})
    );
}

/// Joins `room` on the room-relay dialect as `name`, returning the client after its
/// `join-success`.
async fn member(server: &TestServer, room: &str, name: &str) -> Client {
    let mut client = server.connect("/room-relay").await;
    client
        .send_json(json!({"type":"join-room","roomId":room,"sender":name}))
        .await;
    let joined = client.expect("join-success").await;
    assert_eq!(
        (&joined["roomId"], &joined["userId"]),
        (&json!(room), &json!(name))
    );
    client
}

/// Sends the sentinel and returns every frame before its refusal.
async fn until_sentinel(client: &mut Client) -> Vec<Value> {
    client.send(SENTINEL).await;
    let mut heard = Vec::new();
    loop {
        let frame = client.json().await;
        if frame["type"] == "error" && frame["code"] == "reserved_type" {
            return heard;
        }
        heard.push(frame);
    }
}

/// The next frame must be exactly a room-relay error with `code` and a message.
async fn expect_error(client: &mut Client, code: &str) {
    let frame = client.json().await;
    assert_eq!(frame["code"], code, "unexpected frame: {frame}");
    assert_error_shape(&frame);
}

/// `{"type":"error","code":C,"message":M}` and nothing else, M not empty.
fn assert_error_shape(frame: &Value) {
    let message = frame["message"]
        .as_str()
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| panic!("an error message: {frame}"));
    let code = frame["code"].clone();
    assert_eq!(
        frame,
        &json!({"type":"error","code":code,"message":message})
    );
}

fn sorted(users: &Value) -> Vec<String> {
    let mut users: Vec<String> = users
        .as_array()
        .unwrap_or_else(|| panic!("a list of users: {users}"))
        .iter()
        .map(|user| user.as_str().unwrap_or_default().to_owned())
        .collect();
    users.sort();
    users
}
