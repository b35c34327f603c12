//! The broadcast dialect (seed 004) end to end: every frame, text or binary, reaches every
//! other client of the same channel byte for byte and in order, and nothing else happens.

// `allow-unwrap-in-tests` does not reach helpers outside test functions, here or in
// common/mod.rs (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;

use common::{start, Client};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Frames in the ordering test.
const FRAMES: usize = 200;

#[tokio::test]
async fn frames_reach_every_other_client_byte_for_byte_and_in_order() {
    let server = start().await;
    let mut sender = server.connect("/broadcast").await;
    let mut receivers = [
        server.connect("/broadcast").await,
        server.connect("/broadcast").await,
    ];

    let frames: Vec<Message> = (0..FRAMES).map(numbered).collect();
    for frame in &frames {
        send(&mut sender, frame).await;
    }
    for receiver in &mut receivers {
        for (n, frame) in frames.iter().enumerate() {
            assert_eq!(&receiver.next().await, frame, "frame {n}");
        }
    }

    // The sender got nothing back: its next frame is one sent after all of its own.
    let [first, second] = &mut receivers;
    first.send("sentinel").await;
    assert_eq!(sender.next().await, Message::text("sentinel"));
    assert_eq!(second.next().await, Message::text("sentinel"));
}

#[tokio::test]
async fn channels_are_separate() {
    let server = start().await;
    let mut default_a = server.connect("/broadcast").await;
    let mut default_b = server.connect("/broadcast").await;
    let mut one_a = server.connect("/broadcast/one").await;
    let mut one_b = server.connect("/broadcast/one").await;
    let mut two = server.connect("/broadcast/two").await;
    let mut two_witness = server.connect("/broadcast/two").await;

    default_a.send(r#"{"type":"offer","sdp":"default"}"#).await;
    default_a.send_binary(vec![0, 1, 2]).await;
    one_a.send(r#"{"type":"offer","sdp":"one"}"#).await;
    // Each channel's subscriber receiving it proves the server has fanned it out.
    assert_eq!(
        default_b.next().await,
        Message::text(r#"{"type":"offer","sdp":"default"}"#)
    );
    assert_eq!(default_b.next().await, Message::binary(vec![0, 1, 2]));
    assert_eq!(
        one_b.next().await,
        Message::text(r#"{"type":"offer","sdp":"one"}"#)
    );

    // So anything misdelivered would already sit before these sentinels.
    two_witness.send("two").await;
    assert_eq!(two.next().await, Message::text("two"));
    one_b.send("one").await;
    assert_eq!(one_a.next().await, Message::text("one"));
    default_b.send("default").await;
    assert_eq!(default_a.next().await, Message::text("default"));
}

#[tokio::test]
async fn bad_channel_names_are_refused_with_400_before_the_upgrade() {
    let server = start().await;
    let long = "x".repeat(129);
    let wide = "%E6%9D%8E".repeat(43); // 43 three-byte characters: 129 bytes
    for path in [
        "/broadcast/%07x".to_owned(),
        "/broadcast/a%0Ab".to_owned(),
        "/broadcast/%7F".to_owned(),
        format!("/broadcast/{long}"),
        format!("/broadcast/{wide}"),
    ] {
        let (status, body) = server.refused(&path).await;
        assert_eq!(status, 400, "for {path}: {body}");
    }

    // 128 bytes is still a channel name.
    let max = "y".repeat(128);
    let mut a = server.connect(&format!("/broadcast/{max}")).await;
    let mut b = server.connect(&format!("/broadcast/{max}")).await;
    a.send("longest").await;
    assert_eq!(b.next().await, Message::text("longest"));
}

#[tokio::test]
async fn percent_encoded_channel_names_are_decoded() {
    let server = start().await;
    // Both spell the channel `a b`.
    let mut a = server.connect("/broadcast/a%20b").await;
    let mut b = server.connect("/broadcast/%61%20b").await;
    let mut room = server.connect("/broadcast/%E6%88%BF%E9%97%B4").await;
    let mut same_room = server.connect("/broadcast/%E6%88%BF%E9%97%B4").await;

    a.send("to a b").await;
    assert_eq!(b.next().await, Message::text("to a b"));
    b.send_binary(vec![42]).await;
    assert_eq!(a.next().await, Message::binary(vec![42]));
    room.send("房间").await;
    assert_eq!(same_room.next().await, Message::text("房间"));
}

#[tokio::test]
async fn malformed_json_is_relayed_as_is_without_an_error() {
    let server = start().await;
    let mut a = server.connect("/broadcast/raw").await;
    let mut b = server.connect("/broadcast/raw").await;
    for text in [
        r#"{"type":"offer","sdp":"not even checked"#,
        "not json at all",
        r#"{"no":"type"}"#,
        "[1,2,3]",
        r#"{"type":"error","code":"bad_json"}"#,
        "",
    ] {
        a.send(text).await;
        assert_eq!(b.next().await, Message::text(text));
    }
    // No error came back to the sender: its next frame is b's.
    b.send("sentinel").await;
    assert_eq!(a.next().await, Message::text("sentinel"));
}

/// Frame `n` of the ordering test: text and binary mixed, some of it not JSON, some empty.
fn numbered(n: usize) -> Message {
    match n % 5 {
        0 => Message::text(format!(
            r#"{{"type":"ice-candidate","n":{n},"candidate":"é\r\n"}}"#
        )),
        1 => Message::binary(format!("binary {n}").into_bytes()),
        2 => Message::text(format!("frame {n}: {{ not json")),
        3 => Message::binary(vec![
            0,
            0xff,
            u8::try_from(n % 256).expect("n % 256 fits a byte"),
            0x80,
        ]),
        _ if n % 25 == 4 => Message::text(""),
        _ => Message::text(format!("{n}")),
    }
}

async fn send(client: &mut Client, frame: &Message) {
    client.ws.send(frame.clone()).await.expect("send a frame");
}
