//! Webhooks against a real HTTP receiver started by the test (a small HTTP/1.1 server on a
//! loopback port): a room's life in order and signed, retries after 500s and while the
//! receiver is down, and the bound (oldest dropped, counted) when it does not come back.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use aws_lc_rs::hmac;
use common::receiver::{Delivery, Receiver, DELIVERY};
use common::{conference, metric, start_with, TestServer};
use serde_json::Value;
use switchboard_server::{Config, WebhookConfig};
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout};

const SECRET: &str = "s3cret";

fn config_for(receiver_url: String) -> Config {
    config(receiver_url, 1000)
}

fn config(receiver_url: String, capacity: usize) -> Config {
    let mut config = Config::for_tests();
    config.webhooks = Some(WebhookConfig {
        urls: vec![receiver_url],
        secret: Some(SECRET.as_bytes().to_vec()),
        capacity,
        timeout: Duration::from_secs(5),
    });
    config
}

/// Checks `t=..,v1=..` as docs/webhooks.md tells receivers to.
fn verify(delivery: &Delivery) {
    let header = &delivery.headers["x-switchboard-signature"];
    let (t, v1) = header.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hex_decode(v1);
    let signed = format!("{t}.{}", delivery.body);
    assert!(
        hmac::verify(&key, signed.as_bytes(), &tag).is_ok(),
        "bad signature {header} on {}",
        delivery.body
    );
    let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"not the secret");
    assert!(hmac::verify(&wrong, signed.as_bytes(), &tag).is_err());
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `(event, peer name)` of each event of `room`, in order.
fn life(events: &[Value], room: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|event| event["room"] == room)
        .map(|event| {
            (
                event["event"].as_str().unwrap().to_owned(),
                event["peer"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn full_life() -> Vec<(String, String)> {
    [
        ("room_started", ""),
        ("peer_joined", "alice"),
        ("peer_joined", "bob"),
        ("peer_left", "bob"),
        ("peer_left", "alice"),
        ("room_finished", ""),
    ]
    .iter()
    .map(|(event, name)| ((*event).to_owned(), (*name).to_owned()))
    .collect()
}

/// Alice and Bob meet in `room` and leave, Bob first (Alice sees him go).
async fn a_room_life(server: &TestServer, room: &str) {
    let mut alice = conference(server, room, "alice").await;
    let bob = conference(server, room, "bob").await;
    alice.expect("user-joined").await;
    bob.close().await;
    alice.expect("user-left").await;
    alice.close().await;
}

async fn metrics(server: &TestServer) -> String {
    server.get("/metrics").await.body
}

async fn wait_for_metric(server: &TestServer, series: &str, at_least: f64) -> f64 {
    timeout(DELIVERY, async {
        loop {
            let value = metric(&metrics(server).await, series).unwrap_or(0.0);
            if value >= at_least {
                return value;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{series} never reached {at_least}"))
}

#[tokio::test]
async fn a_room_life_arrives_in_order_and_signed() {
    let mut receiver = Receiver::start(0).await;
    let server = start_with(config(receiver.url(), 1000)).await;
    a_room_life(&server, "standup").await;
    let first = receiver.delivered().await;
    verify(&first);
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(first.headers["x-switchboard-event"], "room_started");
    let mut events = vec![first.json()];
    loop {
        let delivery = receiver.delivered().await;
        verify(&delivery);
        let event = delivery.json();
        let done = event["event"] == "room_finished";
        events.push(event);
        if done {
            break;
        }
    }
    assert_eq!(life(&events, "standup"), full_life());
    let joined = &events[1];
    assert_eq!(joined["peer"]["dialect"], "conference");
    assert!(joined["created_at"].as_u64().unwrap() > 1_600_000_000_000);
    // Ids count up in the order things happened.
    let ids: Vec<u64> = events
        .iter()
        .map(|event| event["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let text = metrics(&server).await;
    assert_eq!(
        metric(&text, "switchboard_webhook_delivered_total"),
        Some(6.0)
    );
    assert_eq!(
        metric(&text, "switchboard_webhook_dropped_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn several_rooms_each_in_order() {
    let mut receiver = Receiver::start(0).await;
    let server = start_with(config(receiver.url(), 1000)).await;
    // Interleaved lives: the events of different rooms mix, each room's stay in order.
    tokio::join!(a_room_life(&server, "north"), a_room_life(&server, "south"));
    let mut events = Vec::new();
    while events
        .iter()
        .filter(|e: &&Value| e["event"] == "room_finished")
        .count()
        < 2
    {
        events.push(receiver.delivered().await.json());
    }
    assert_eq!(life(&events, "north"), full_life());
    assert_eq!(life(&events, "south"), full_life());
}

#[tokio::test]
async fn retried_after_the_receiver_answers_500() {
    let mut receiver = Receiver::start(3).await;
    let server = start_with(config(receiver.url(), 1000)).await;
    a_room_life(&server, "flaky").await;
    let events = receiver.until("room_finished").await;
    assert_eq!(
        life(&events, "flaky"),
        full_life(),
        "each event once, in order"
    );
    let text = metrics(&server).await;
    assert!(metric(&text, "switchboard_webhook_retries_total").unwrap() >= 3.0);
    assert_eq!(
        metric(&text, "switchboard_webhook_delivered_total"),
        Some(6.0)
    );
}

#[tokio::test]
async fn retried_while_the_receiver_is_down_then_delivered() {
    // A port nobody listens on (connection refused), taken again by the receiver later.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/hooks");
    let server = start_with(config(url, 1000)).await;
    a_room_life(&server, "outage").await;
    wait_for_metric(&server, "switchboard_webhook_retries_total", 2.0).await;
    let mut receiver = Receiver::on(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), 0);
    let events = receiver.until("room_finished").await;
    assert_eq!(life(&events, "outage"), full_life());
}

#[tokio::test]
async fn a_receiver_that_never_comes_back_costs_a_bounded_queue() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let capacity = 3;
    let server = start_with(config(format!("http://127.0.0.1:{port}/hooks"), capacity)).await;
    // 5 rooms' lives: 30 events, of which the queue keeps 3 (and one is being retried).
    for room in ["r1", "r2", "r3", "r4", "r5"] {
        a_room_life(&server, room).await;
    }
    let total = 30.0;
    let dropped = wait_for_metric(
        &server,
        "switchboard_webhook_dropped_total",
        total - capacity as f64 - 1.0,
    )
    .await;
    assert!(dropped <= total - capacity as f64, "{dropped}");
    // When a receiver does appear, it hears what was kept: the newest events.
    let mut receiver = Receiver::on(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), 0);
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &Value| e["room"] == "r5" && e["event"] == "room_finished")
    {
        events.push(receiver.delivered().await.json());
    }
    assert!(events.len() <= capacity + 1, "{events:?}");
}

/// With `--redis`: each node reports itself up, and a node that drains is reported down by
/// itself and by the node that stays.
#[tokio::test]
async fn nodes_up_and_down_in_a_cluster() {
    use common::cluster::{node_config, node_with, Redis};
    let mut receiver = Receiver::start(0).await;
    let redis = Redis::new();
    let with_webhooks = |node| {
        let mut config = node_config(&redis, node, Duration::from_secs(10));
        config.webhooks = config_for(receiver.url()).webhooks;
        config
    };
    let first = node_with(with_webhooks(0xa)).await;
    let second = node_with(with_webhooks(0xb)).await;
    let mut up = Vec::new();
    while up.len() < 2 {
        let event = receiver.delivered().await.json();
        assert_eq!(event["event"], "node_up", "{event}");
        up.push(event["node"].as_str().unwrap().to_owned());
    }
    up.sort();
    assert_eq!(up, ["000000000000000a", "000000000000000b"]);

    second.stop();
    let _ = second.stopped().await;
    // Who reports it is in the id: the reporting node's, then its counter.
    let mut reporters = Vec::new();
    while reporters.len() < 2 {
        let event = receiver.delivered().await.json();
        assert_eq!(event["event"], "node_down", "{event}");
        assert_eq!(event["node"], "000000000000000b");
        let id = event["id"].as_str().unwrap();
        reporters.push(id.split_once('-').unwrap().0.to_owned());
    }
    reporters.sort();
    assert_eq!(reporters, ["000000000000000a", "000000000000000b"]);
    drop(first);
}

/// Shutdown closes every socket, and the rooms' ends still reach the receiver.
#[tokio::test]
async fn shutdown_delivers_the_last_rooms_ends() {
    let mut receiver = Receiver::start(0).await;
    let server = start_with(config_for(receiver.url())).await;
    let _alice = conference(&server, "late-night", "alice").await;
    server.stop();
    let _ = server.stopped().await;
    let events = receiver.until("room_finished").await;
    assert_eq!(
        life(&events, "late-night"),
        [
            ("room_started", ""),
            ("peer_joined", "alice"),
            ("peer_left", "alice"),
            ("room_finished", ""),
        ]
        .map(|(event, name)| (event.to_owned(), name.to_owned()))
    );
}
