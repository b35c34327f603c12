//! Every limit, enforced on a real server: frame size, message rate, connections per IP and
//! in total, idle timeout, and slow-consumer eviction that leaves fast peers unaffected.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use common::{conference, metric, start_with, Client, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use switchboard_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn chat(text: &str) -> String {
    json!({"type":"chat-message","data":{"text":text}}).to_string()
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_others_are_unaffected() {
    let server = start_with(Config {
        max_frame_bytes: 1024,
        ..Config::for_tests()
    })
    .await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.expect("user-joined").await;
    bob.send(&chat(&"x".repeat(2000))).await;
    assert_eq!(bob.close_code().await, 1009);
    assert_eq!(alice.expect("user-left").await["data"]["user"], "bob");
    // A frame just under the limit is fine.
    alice.send(&chat(&"y".repeat(900))).await;
    assert_eq!(
        alice.expect("chat-message").await["data"]["text"]
            .as_str()
            .unwrap()
            .len(),
        900
    );
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="frame_size"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn flooding_gets_rate_limited_then_closed_with_1008() {
    let config = Config {
        max_message_rate: 1,
        message_burst: 2,
        rate_strikes: 3,
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let mut flooder = conference(&server, "r", "flooder").await;
    for i in 0..50 {
        // The server may close mid-flood; later sends may fail, which is the point.
        let _ =
            futures_util::SinkExt::send(&mut flooder.ws, Message::text(chat(&i.to_string()))).await;
    }
    let mut limited = 0;
    let close = loop {
        match flooder.ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == "error" {
                    assert_eq!(frame["data"]["code"], "rate_limited");
                    limited += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(limited >= 1, "over the rate a frame earns rate_limited");
    assert_eq!(close, Some(1008));
}

#[tokio::test]
async fn connections_are_limited_per_ip_and_in_total() {
    let server = start_with(Config {
        max_connections_per_ip: 2,
        ..Config::for_tests()
    })
    .await;
    let first = server.connect("/conference").await;
    let _second = server.connect("/conference").await;
    let (status, body) = server.refused("/conference").await;
    assert_eq!(status, 429, "{body}");
    first.close().await;
    wait_for_free_slot(&server, "/conference").await;

    let server = start_with(Config {
        max_connections: 2,
        ..Config::for_tests()
    })
    .await;
    let _a = server.connect("/pairing").await;
    let _b = server.connect("/broadcast").await;
    let (status, _) = server.refused("/ws?peer_id=p&room=r").await;
    assert_eq!(status, 503);
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="connections"}"#
        ),
        Some(1.0)
    );
}

/// A closed socket frees its slot once the server has noticed; poll, bounded.
async fn wait_for_free_slot(server: &TestServer, path: &str) {
    for _ in 0..100 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(server.url(path)).await {
            drop(Client { ws });
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the slot of a closed connection was never freed");
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_idle_timeout() {
    let config = Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    // A raw client that completes the handshake and then neither reads nor writes: it
    // answers no pings, like a peer whose network vanished.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent
        .write_all(
            b"GET /pairing HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    // A client that keeps reading answers every ping and stays.
    let mut lively = server.connect("/pairing").await;
    lively.expect("connected").await;
    let (done, mut finished) = tokio::sync::oneshot::channel::<()>();
    let lively_task = tokio::spawn(async move {
        // Read (and so answer pings) until the silent socket has been dealt with.
        loop {
            tokio::select! {
                _ = &mut finished => return lively,
                frame = lively.ws.next() => assert!(matches!(frame, Some(Ok(Message::Ping(_)))), "{frame:?}"),
            }
        }
    });
    let mut bytes = Vec::new();
    tokio::time::timeout(common::PATIENCE, silent.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let close = last_close_frame(&bytes).expect("the server sent a close frame");
    assert_eq!(close, (1001, "idle timeout".to_owned()));
    done.send(()).unwrap();
    let mut lively = lively_task.await.unwrap();
    lively.send(r#"{"type":"ping","to":"nobody"}"#).await;
    assert_eq!(
        lively.expect("error").await["data"]["code"],
        "user_not_found"
    );
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="idle_timeout"}"#
        ),
        Some(1.0)
    );
}

/// Finds the close frame in a raw server-to-client byte stream (after the HTTP response).
fn last_close_frame(bytes: &[u8]) -> Option<(u16, String)> {
    let start = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut rest = &bytes[start..];
    let mut close = None;
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let len = usize::from(rest[1] & 0x7f); // server frames here are short and unmasked
        let payload = rest.get(2..2 + len)?;
        if opcode == 0x8 && len >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            close = Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        rest = &rest[2 + len..];
    }
    close
}

#[tokio::test]
async fn a_slow_consumer_is_evicted_while_a_fast_peer_gets_everything() {
    let config = Config {
        outbox_capacity: 16,
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let mut slow = conference(&server, "r", "slow").await;
    let mut fast = conference(&server, "r", "fast").await;
    let mut sender = conference(&server, "r", "sender").await;
    slow.expect("user-joined").await;
    slow.expect("user-joined").await;
    fast.expect("user-joined").await;

    // `fast` reads everything in its own task, counting chats until it sees `slow` leave.
    let fast_task = tokio::spawn(async move {
        let mut chats = Vec::new();
        loop {
            let frame = fast.json().await;
            match frame["type"].as_str() {
                Some("chat-message") => {
                    chats.push(frame["data"]["text"].as_str().unwrap().to_owned())
                }
                Some("user-left") => {
                    assert_eq!(frame["data"]["user"], "slow");
                    return (fast, chats);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    // `sender` sends 16 KiB chats (room-wide, echoed) and reads its own echoes, until it
    // sees `slow` evicted. `slow` reads nothing: its TCP buffers fill, then its outbox.
    let body = "z".repeat(16 * 1024);
    let mut sent = 0;
    let mut echoed = 0;
    'outer: for i in 0..4000 {
        sender.send(&chat(&format!("{i}:{body}"))).await;
        sent += 1;
        while echoed < sent {
            let frame = sender.json().await;
            match frame["type"].as_str() {
                Some("chat-message") => echoed += 1,
                Some("user-left") => break 'outer,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let (_fast, chats) = fast_task.await.unwrap();
    // Every chat sent before the eviction reached the fast peer, in order.
    assert!(
        chats.len() >= 16,
        "the slow peer was evicted only after its outbox filled"
    );
    for (i, text) in chats.iter().enumerate() {
        assert!(text.starts_with(&format!("{i}:")), "chat {i} out of order");
    }
    // The slow peer, reading at last, finds its socket closed with 1008.
    assert_eq!(slow.close_code().await, 1008);
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_evictions_total{dialect="conference"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_flood_of_malformed_and_oversized_frames_leaves_everyone_else_served() {
    let server = start_with(Config {
        max_frame_bytes: 8 * 1024,
        ..Config::for_tests()
    })
    .await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.expect("user-joined").await;
    let attacker = tokio::spawn({
        let url = server.url("/conference");
        async move {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut attacker = Client { ws };
            for i in 0..500 {
                let junk = match i % 5 {
                    0 => "{".to_owned(),
                    1 => "[]".to_owned(),
                    2 => r#"{"type":7}"#.to_owned(),
                    3 => r#"{"type":"webrtc-offer","data":{"target":["x"]}}"#.to_owned(),
                    _ => "\u{0}\u{1}garbage".to_owned(),
                };
                attacker.send(&junk).await;
            }
            // And then one frame far over the limit.
            attacker.send(&"x".repeat(100 * 1024)).await;
            attacker.close_code().await
        }
    });
    for i in 0..200 {
        alice
            .send(
                &json!({"type":"webrtc-offer","data":{"target":"bob","payload":{"n":i}}})
                    .to_string(),
            )
            .await;
        assert_eq!(bob.expect("webrtc-offer").await["data"]["payload"]["n"], i);
    }
    assert_eq!(attacker.await.unwrap(), 1009);
}
