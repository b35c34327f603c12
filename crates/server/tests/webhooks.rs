//! Webhooks against a real HTTP receiver started by the test (a small HTTP/1.1 server on a
//! loopback port): a room's life in order and signed, retries after 500s and while the
//! receiver is down, and the bound (oldest dropped, counted) when it does not come back.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use common::{conference, metric, start_with, TestServer};
use serde_json::Value;
use switchboard_server::{Config, WebhookConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

const SECRET: &str = "s3cret";
/// Generous: a retried event waits for backoff (at most 10 s between attempts).
const DELIVERY: Duration = Duration::from_secs(60);

/// One request the receiver got.
struct Delivery {
    headers: HashMap<String, String>,
    body: String,
    /// What the receiver answered.
    status: u16,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// The test's webhook receiver: answers 500 to its first `failures` requests, then 200.
struct Receiver {
    port: u16,
    deliveries: mpsc::Receiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(failures: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::on(listener, failures)
    }

    fn on(listener: TcpListener, failures: usize) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let (sender, deliveries) = mpsc::channel(1024);
        let failures = Arc::new(AtomicUsize::new(failures));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (sender, failures) = (sender.clone(), failures.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    // Keep-alive: one request after another on the connection.
                    while let Some((headers, body)) = read_request(&mut read).await {
                        let failing = failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        let status = if failing { 500 } else { 200 };
                        let answer = format!(
                            "HTTP/1.1 {status} {}\r\ncontent-length: 2\r\n\r\nok",
                            if failing {
                                "Internal Server Error"
                            } else {
                                "OK"
                            }
                        );
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = sender
                            .send(Delivery {
                                headers,
                                body,
                                status,
                            })
                            .await;
                    }
                });
            }
        });
        Receiver {
            port,
            deliveries,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// The next request the receiver answered with 200.
    async fn delivered(&mut self) -> Delivery {
        loop {
            let delivery = timeout(DELIVERY, self.deliveries.recv())
                .await
                .expect("a webhook in time")
                .expect("the receiver runs");
            if delivery.status == 200 {
                return delivery;
            }
        }
    }

    /// The events delivered until (and with) the first `last`.
    async fn until(&mut self, last: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.delivered().await.json();
            let done = event["event"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<(HashMap<String, String>, String)> {
    let mut request_line = String::new();
    if read.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    assert!(request_line.starts_with("POST /hooks "), "{request_line}");
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        read.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some((headers, String::from_utf8(body).ok()?))
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
