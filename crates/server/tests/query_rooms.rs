//! The query-rooms dialect (seed 000) end to end: identity from the URL, refusals before the
//! upgrade, presence, addressed and room-wide relay, and typed errors.

// `allow-unwrap-in-tests` does not reach helpers outside test functions, here or in
// common/mod.rs (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Client, TestServer};
use serde_json::{json, Value};

/// The seed's example message, sent by `peer1` to `peer2`.
const SEED_OFFER: &str = r#"{"type":"offer","from":"peer1","to":"peer2","payload":{"sdp":"mock-sdp","timestamp":1234567890}}"#;

#[tokio::test]
async fn bad_identities_are_refused_with_400_before_the_upgrade() {
    let server = start().await;
    let long = "x".repeat(129);
    for (path, field) in [
        ("/ws?room=test-room".to_owned(), "peer_id"),
        ("/ws?peer_id=peer1".to_owned(), "room"),
        ("/ws".to_owned(), "peer_id"),
        ("/ws?peer_id=&room=test-room".to_owned(), "peer_id"),
        ("/ws?peer_id=peer1&room=".to_owned(), "room"),
        (format!("/ws?peer_id={long}&room=test-room"), "peer_id"),
        (format!("/ws?peer_id=peer1&room={long}"), "room"),
        ("/ws?peer_id=a%07b&room=test-room".to_owned(), "peer_id"),
        ("/ws?peer_id=peer1&room=a%0Ab".to_owned(), "room"),
    ] {
        let (status, body) = server.refused(&path).await;
        assert_eq!(status, 400, "for {path}: {body}");
        assert!(
            body.contains(field),
            "the body of {path} names {field}: {body}"
        );
    }

    // 128 bytes is still an identifier, and nobody was left behind by the refusals.
    let max = "y".repeat(128);
    let mut first = peer(&server, "test-room", "peer1").await;
    let _longest = peer(&server, "test-room", &max).await;
    assert_eq!(
        first.json().await,
        json!({"type":"peer_joined","from":max,"payload":{"peer_id":max,"room":"test-room"}})
    );
}

#[tokio::test]
async fn a_taken_peer_id_is_refused_with_409_and_disturbs_nobody() {
    let server = start().await;
    let mut alice = peer(&server, "r", "alice").await;
    let mut bob = peer(&server, "r", "bob").await;
    alice.expect("peer_joined").await;

    let (status, body) = server.refused("/ws?peer_id=alice&room=r").await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.is_empty());

    // The refused attempt joined nothing and left nothing: the next frames are the sentinels.
    alice
        .send(r#"{"type":"sentinel","to":"bob","payload":1}"#)
        .await;
    assert_eq!(
        bob.text().await,
        r#"{"type":"sentinel","from":"alice","to":"bob","payload":1}"#
    );
    bob.send(r#"{"type":"sentinel","to":"alice","payload":2}"#)
        .await;
    assert_eq!(
        alice.text().await,
        r#"{"type":"sentinel","from":"bob","to":"alice","payload":2}"#
    );

    // The same peer_id is free in another room.
    let _elsewhere = peer(&server, "other", "alice").await;

    // Once alice is gone (bob has seen her leave), her peer_id is free again.
    drop(alice);
    bob.expect("peer_left").await;
    let _again = server.connect_once_free("/ws?peer_id=alice&room=r").await;
    assert_eq!(bob.expect("peer_joined").await["from"], "alice");
}

#[tokio::test]
async fn joins_and_leaves_are_announced_with_the_contract_payload() {
    let server = start().await;
    let mut peer1 = peer(&server, "test-room", "peer1").await;
    let peer2 = peer(&server, "test-room", "peer2").await;
    assert_eq!(
        peer1.text().await,
        r#"{"type":"peer_joined","from":"peer2","payload":{"peer_id":"peer2","room":"test-room"}}"#
    );
    // Another room hears nothing of it.
    let mut outsider = peer(&server, "elsewhere", "peer3").await;

    peer2.close().await;
    assert_eq!(
        peer1.text().await,
        r#"{"type":"peer_left","from":"peer2","payload":{"peer_id":"peer2","room":"test-room"}}"#
    );
    let _neighbour = peer(&server, "elsewhere", "peer4").await;
    assert_eq!(
        outsider.json().await,
        json!({"type":"peer_joined","from":"peer4","payload":{"peer_id":"peer4","room":"elsewhere"}})
    );
}

#[tokio::test]
async fn the_seeds_offer_reaches_its_addressee_with_the_server_stamped_from() {
    let server = start().await;
    let mut peer1 = peer(&server, "test-room", "peer1").await;
    let mut peer2 = peer(&server, "test-room", "peer2").await;
    let mut peer3 = peer(&server, "test-room", "peer3").await;
    peer1.expect("peer_joined").await;
    peer1.expect("peer_joined").await;
    peer2.expect("peer_joined").await;

    peer1.send(SEED_OFFER).await;
    assert_eq!(peer2.text().await, SEED_OFFER);

    // peer3 claims to be peer1: the server says who really sent it.
    peer3.send(SEED_OFFER).await;
    assert_eq!(
        peer2.text().await,
        SEED_OFFER.replace(r#""from":"peer1""#, r#""from":"peer3""#)
    );
    // Without any `from`, the same.
    peer3
        .send(r#"{"type":"answer","to":"peer2","payload":{"sdp":"mock-answer"}}"#)
        .await;
    assert_eq!(
        peer2.text().await,
        r#"{"type":"answer","from":"peer3","to":"peer2","payload":{"sdp":"mock-answer"}}"#
    );

    // Addressed frames went to peer2 only: peer3's and peer1's next frames are sentinels.
    peer2.send(r#"{"type":"sentinel","payload":"after"}"#).await;
    for client in [&mut peer1, &mut peer3] {
        assert_eq!(
            client.text().await,
            r#"{"type":"sentinel","from":"peer2","payload":"after"}"#
        );
    }
}

#[tokio::test]
async fn a_frame_without_to_reaches_every_other_peer() {
    let server = start().await;
    let mut peer1 = peer(&server, "r", "peer1").await;
    let mut peer2 = peer(&server, "r", "peer2").await;
    let mut peer3 = peer(&server, "r", "peer3").await;
    let mut outsider = peer(&server, "s", "peer1").await;
    peer1.expect("peer_joined").await;
    peer1.expect("peer_joined").await;
    peer2.expect("peer_joined").await;

    let candidate = r#"{"candidate":"candidate:1 1 UDP 2113667326 127.0.0.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
    peer1
        .send(&format!(
            r#"{{"type":"ice_candidate","from":"peer9","payload":{candidate}}}"#
        ))
        .await;
    let expected = format!(r#"{{"type":"ice_candidate","from":"peer1","payload":{candidate}}}"#);
    for client in [&mut peer2, &mut peer3] {
        assert_eq!(client.text().await, expected);
    }
    // App-defined types relay too, payload byte for byte.
    let payload = r#"{"move": [1, 2.50, "\u00e9"], "n": null}"#;
    peer2
        .send(&format!(r#"{{"type":"game-move","payload":{payload}}}"#))
        .await;
    let expected = format!(r#"{{"type":"game-move","from":"peer2","payload":{payload}}}"#);
    for client in [&mut peer1, &mut peer3] {
        assert_eq!(client.text().await, expected);
    }

    // Nothing came back to the senders, and nothing crossed into room `s`.
    peer3.send(r#"{"type":"sentinel"}"#).await;
    for client in [&mut peer1, &mut peer2] {
        assert_eq!(
            client.text().await,
            r#"{"type":"sentinel","from":"peer3","payload":null}"#
        );
    }
    let _neighbour = peer(&server, "s", "peer2").await;
    assert_eq!(outsider.expect("peer_joined").await["from"], "peer2");
}

#[tokio::test]
async fn a_frame_without_payload_relays_payload_null() {
    let server = start().await;
    let mut peer1 = peer(&server, "r", "peer1").await;
    let mut peer2 = peer(&server, "r", "peer2").await;
    peer1.expect("peer_joined").await;

    peer1.send(r#"{"type":"hello","to":"peer2"}"#).await;
    assert_eq!(
        peer2.text().await,
        r#"{"type":"hello","from":"peer1","to":"peer2","payload":null}"#
    );
    peer2.send(r#"{"type":"offer"}"#).await;
    assert_eq!(
        peer1.text().await,
        r#"{"type":"offer","from":"peer2","payload":null}"#
    );
    // An explicit null stays null.
    peer2
        .send(r#"{"type":"bye","to":"peer1","payload":null}"#)
        .await;
    assert_eq!(
        peer1.text().await,
        r#"{"type":"bye","from":"peer2","to":"peer1","payload":null}"#
    );
}

#[tokio::test]
async fn reserved_types_and_unknown_peers_are_refused_with_typed_errors() {
    let server = start().await;
    let mut peer1 = peer(&server, "r", "peer1").await;
    let mut peer2 = peer(&server, "r", "peer2").await;
    peer1.expect("peer_joined").await;

    for kind in ["peer_joined", "peer_left", "error"] {
        peer1
            .send_json(json!({"type":kind,"to":"peer2","payload":{"peer_id":"peer1","room":"r"}}))
            .await;
        expect_error(&mut peer1, "reserved_type").await;
        peer1
            .send_json(json!({"type":kind,"payload":{"peer_id":"x","room":"r"}}))
            .await;
        expect_error(&mut peer1, "reserved_type").await;
    }
    peer1
        .send(r#"{"type":"offer","to":"nobody","payload":{"sdp":"mock-sdp"}}"#)
        .await;
    expect_error(&mut peer1, "peer_not_found").await;
    // A peer of another room is nobody here.
    let _other = peer(&server, "s", "peer3").await;
    peer1
        .send(r#"{"type":"offer","to":"peer3","payload":{}}"#)
        .await;
    expect_error(&mut peer1, "peer_not_found").await;

    // None of it reached peer2, and peer1 is still served.
    peer1
        .send(r#"{"type":"offer","to":"peer2","payload":{"sdp":"ok"}}"#)
        .await;
    assert_eq!(
        peer2.text().await,
        r#"{"type":"offer","from":"peer1","to":"peer2","payload":{"sdp":"ok"}}"#
    );
}

#[tokio::test]
async fn malformed_frames_get_error_codes_and_the_socket_stays_open() {
    let server = start().await;
    let mut peer1 = peer(&server, "r", "peer1").await;
    let mut peer2 = peer(&server, "r", "peer2").await;
    peer1.expect("peer_joined").await;

    for (frame, code) in [
        ("{not json", "bad_json"),
        (r#"{"to":"peer2","payload":{}}"#, "missing_type"),
        (r#"{"type":7}"#, "bad_field"),
        (r#"{"type":"offer","to":3}"#, "bad_field"),
        ("[1,2]", "bad_field"),
    ] {
        peer1.send(frame).await;
        let frame_error = peer1.json().await;
        assert_eq!(frame_error["payload"]["code"], code, "for {frame}");
        assert_error_shape(&frame_error);
    }
    peer1.send_binary(vec![1, 2, 3]).await;
    expect_error(&mut peer1, "binary_unsupported").await;

    peer1.send(r#"{"type":"offer","to":"peer2"}"#).await;
    assert_eq!(peer2.expect("offer").await["from"], "peer1");
}

#[tokio::test]
async fn a_dropped_socket_is_announced_exactly_once() {
    let server = start().await;
    let mut peer1 = peer(&server, "r", "peer1").await;
    let peer2 = peer(&server, "r", "peer2").await;
    let mut peer3 = peer(&server, "r", "peer3").await;
    peer1.expect("peer_joined").await;
    peer1.expect("peer_joined").await;
    drop(peer2); // no close handshake: the TCP connection just goes away

    // peer3 hearing of the drop proves the server has handled it; what it sends next is
    // ordered after everything the drop caused.
    let left = r#"{"type":"peer_left","from":"peer2","payload":{"peer_id":"peer2","room":"r"}}"#;
    assert_eq!(peer3.text().await, left);
    peer3.send(r#"{"type":"sentinel"}"#).await;
    assert_eq!(peer1.text().await, left);
    assert_eq!(
        peer1.text().await,
        r#"{"type":"sentinel","from":"peer3","payload":null}"#
    );
    peer1.send(r#"{"type":"sentinel"}"#).await;
    assert_eq!(
        peer3.text().await,
        r#"{"type":"sentinel","from":"peer1","payload":null}"#
    );

    // The name is free again at once.
    let _again = peer(&server, "r", "peer2").await;
    assert_eq!(peer1.expect("peer_joined").await["from"], "peer2");
}

/// Joins `room` on the query-rooms dialect as `id` (both already URL-safe).
async fn peer(server: &TestServer, room: &str, id: &str) -> Client {
    server
        .connect(&format!("/ws?peer_id={id}&room={room}"))
        .await
}

/// The next frame must be exactly a query-rooms error with `code` and a message.
async fn expect_error(client: &mut Client, code: &str) {
    let frame = client.json().await;
    assert_eq!(frame["payload"]["code"], code, "unexpected frame: {frame}");
    assert_error_shape(&frame);
}

/// `{"type":"error","payload":{"code":C,"message":M}}` and nothing else, M not empty.
fn assert_error_shape(frame: &Value) {
    let message = frame["payload"]["message"]
        .as_str()
        .filter(|message| !message.is_empty())
        .unwrap_or_else(|| panic!("an error message: {frame}"));
    let code = frame["payload"]["code"].clone();
    assert_eq!(
        frame,
        &json!({"type":"error","payload":{"code":code,"message":message}})
    );
}
