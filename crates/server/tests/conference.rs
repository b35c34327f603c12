//! The conference dialect end to end: three clients on a real server.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use common::{conference, start, without_media, PATIENCE};
use serde_json::json;
use tokio::time::timeout;

#[tokio::test]
async fn three_clients_join_chat_and_signal() {
    let server = start().await;
    let mut alice = server.connect("/conference").await;
    alice
        .send(r#"{"type":"join-room","data":{"roomId":"room1","username":"alice"},"rid":1}"#)
        .await;
    // The router's capabilities come last in `data`; their contents are media.rs's to check.
    let joined = alice.text().await;
    let (head, tail) = joined.split_once(r#","routerRtpCapabilities":{"#).unwrap();
    assert_eq!(
        head,
        r#"{"type":"joined","data":{"roomId":"room1","users":["alice"]"#
    );
    assert!(tail.ends_with(r#"}},"rid":1}"#), "{tail}");

    let mut bob = conference(&server, "room1", "bob").await;
    assert_eq!(
        alice.json().await,
        json!({"type":"user-joined","data":{"user":"bob"}})
    );
    let mut carol = server.connect("/").await; // `/` speaks conference by default
    carol
        .send_json(json!({"type":"join-room","data":{"roomId":"room1","username":"carol"}}))
        .await;
    assert_eq!(
        without_media(carol.json().await),
        json!({"type":"joined","data":{"roomId":"room1","users":["alice","bob","carol"]}})
    );
    for peer in [&mut alice, &mut bob] {
        assert_eq!(
            peer.json().await,
            json!({"type":"user-joined","data":{"user":"carol"}})
        );
    }

    // Chat: every member, the sender included, with the server's `from` and a timestamp.
    bob.send_json(json!({"type":"chat-message","data":{"from":"mallory","text":"hello"}}))
        .await;
    for peer in [&mut alice, &mut bob, &mut carol] {
        let chat = peer.expect("chat-message").await;
        assert_eq!(chat["data"]["from"], "bob");
        assert_eq!(chat["data"]["text"], "hello");
        let stamp = chat["data"]["timestamp"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(stamp).is_ok(),
            "ISO 8601 timestamp: {stamp}"
        );
    }
    alice.send_json(json!({"type":"chat-message","data":{"text":"t","timestamp":"2025-09-09T13:00:00.000Z"}})).await;
    for peer in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(
            peer.expect("chat-message").await["data"]["timestamp"],
            "2025-09-09T13:00:00.000Z"
        );
    }

    // Offer, answer and ICE reach only the target, payload byte for byte.
    let payload = r#"{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n","x":1.50,"u":"\u00e9"}"#;
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
    bob.send(r#"{"type":"webrtc-answer","data":{"target":"alice","payload":{"type":"answer","sdp":"v=0"}}}"#).await;
    assert_eq!(
        alice.text().await,
        r#"{"type":"webrtc-answer","data":{"from":"bob","target":"alice","payload":{"type":"answer","sdp":"v=0"}}}"#
    );
    let candidate = r#"{"candidate":"candidate:1 1 UDP 2113667326 127.0.0.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
    carol
        .send(&format!(
            r#"{{"type":"webrtc-ice-candidate","data":{{"target":"alice","payload":{candidate}}}}}"#
        ))
        .await;
    assert_eq!(
        alice.text().await,
        format!(
            r#"{{"type":"webrtc-ice-candidate","data":{{"from":"carol","target":"alice","payload":{candidate}}}}}"#
        )
    );

    // leave-room tells the others once; a sentinel proves nothing else was queued.
    carol
        .send_json(json!({"type":"leave-room","data":{"roomId":"room1","username":"carol"}}))
        .await;
    // carol's next request is refused only once her leave has been carried out.
    carol
        .send_json(json!({"type":"chat-message","data":{"text":"still here?"}}))
        .await;
    assert_eq!(carol.expect("error").await["data"]["code"], "not_in_room");
    bob.send_json(json!({"type":"chat-message","data":{"text":"sentinel"}}))
        .await;
    for peer in [&mut alice, &mut bob] {
        assert_eq!(
            peer.json().await,
            json!({"type":"user-left","data":{"user":"carol"}})
        );
        assert_eq!(
            peer.expect("chat-message").await["data"]["text"],
            "sentinel"
        );
    }
}

#[tokio::test]
async fn a_dropped_socket_is_announced_exactly_once() {
    let server = start().await;
    let mut alice = conference(&server, "r", "alice").await;
    let bob = conference(&server, "r", "bob").await;
    let mut carol = conference(&server, "r", "carol").await;
    alice.expect("user-joined").await;
    alice.expect("user-joined").await;
    drop(bob); // no close handshake: the TCP connection just goes away
    carol
        .send_json(json!({"type":"chat-message","data":{"text":"sentinel"}}))
        .await;
    // Bob's departure and carol's sentinel are two senders' news: on one server the
    // departure comes first, across cluster nodes either may (docs/scaling.md). Either way
    // alice hears each exactly once, and nothing else.
    let (mut left, mut sentinels) = (0, 0);
    while left == 0 || sentinels == 0 {
        let frame = alice.json().await;
        if frame == json!({"type":"user-left","data":{"user":"bob"}}) {
            left += 1;
        } else {
            assert_eq!(frame["data"]["text"], "sentinel", "{frame}");
            sentinels += 1;
        }
    }
    carol
        .send_json(json!({"type":"chat-message","data":{"text":"last"}}))
        .await;
    assert_eq!(alice.expect("chat-message").await["data"]["text"], "last");
    assert_eq!((left, sentinels), (1, 1));
}

#[tokio::test]
async fn refusals_come_back_as_typed_errors_and_the_socket_stays_open() {
    let server = start().await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut other = server.connect("/conference").await;

    other
        .send(r#"{"type":"webrtc-offer","data":{"target":"alice","payload":{}},"rid":"a"}"#)
        .await;
    assert_eq!(
        other.json().await,
        json!({"type":"error","data":{"message":"join a room first","code":"not_in_room"},"rid":"a"})
    );
    other
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"alice"},"rid":2}))
        .await;
    let error = other.expect("error").await;
    assert_eq!(
        (error["data"]["code"].as_str(), &error["rid"]),
        (Some("name_taken"), &json!(2))
    );
    other
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"x\u{0007}"}}))
        .await;
    assert_eq!(other.expect("error").await["data"]["code"], "bad_id");
    other
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"bob"}}))
        .await;
    other.expect("joined").await;
    alice.expect("user-joined").await;

    for (frame, code) in [
        ("{not json", "bad_json"),
        (r#"{"data":{}}"#, "missing_type"),
        (r#"{"type":"chat-message","data":{"text":5}}"#, "bad_field"),
        (r#"{"type":"teleport","data":{}}"#, "unknown_type"),
        (
            r#"{"type":"webrtc-offer","data":{"target":"nobody","payload":{}}}"#,
            "peer_not_found",
        ),
        (
            r#"{"type":"create-transport","data":{"direction":"up"}}"#,
            "bad_parameters",
        ),
        (
            r#"{"type":"connect-transport","data":{}}"#,
            "bad_parameters",
        ),
        (r#"{"type":"produce","data":5}"#, "bad_field"),
        (
            r#"{"type":"consume","data":{"transportId":"t9","producerId":"p9","rtpCapabilities":{}}}"#,
            "transport_not_found",
        ),
    ] {
        other.send(frame).await;
        let error = other.expect("error").await;
        assert_eq!(error["data"]["code"], code, "for {frame}");
        assert!(error["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    other.send_binary(vec![1, 2, 3]).await;
    assert_eq!(
        other.expect("error").await["data"]["code"],
        "binary_unsupported"
    );

    // Still connected and still served.
    other
        .send_json(json!({"type":"webrtc-offer","data":{"target":"alice","payload":{"sdp":"ok"}}}))
        .await;
    assert_eq!(
        alice.expect("webrtc-offer").await["data"]["payload"]["sdp"],
        "ok"
    );
}

#[tokio::test]
async fn rejoining_moves_rooms_and_empty_rooms_vanish() {
    let server = start().await;
    let mut alice = conference(&server, "one", "alice").await;
    let mut bob = conference(&server, "one", "bob").await;
    alice.expect("user-joined").await;
    bob.send_json(json!({"type":"join-room","data":{"roomId":"two","username":"bob"}}))
        .await;
    assert_eq!(
        without_media(bob.json().await),
        json!({"type":"joined","data":{"roomId":"two","users":["bob"]}})
    );
    assert_eq!(
        alice.json().await,
        json!({"type":"user-left","data":{"user":"bob"}})
    );
    alice.close().await;
    bob.close().await;
    // The rooms vanish (at once on one server; across nodes, once the leaves are in Redis).
    timeout(PATIENCE, async {
        while server.get("/api/stats").await.json()["rooms"] != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("empty rooms vanish");
    // A newcomer may take any old name at once.
    let mut again = server.connect("/conference").await;
    again
        .send_json(json!({"type":"join-room","data":{"roomId":"one","username":"alice"}}))
        .await;
    let joined = again.expect("joined").await;
    assert_eq!(joined["data"]["users"], json!(["alice"]));
}
