//! A webhook receiver for tests: a small HTTP/1.1 server on a loopback port that records every
//! request and answers 500 to its first `failures` requests, then 200.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Generous: a retried event waits for backoff (at most 10 s between attempts).
pub const DELIVERY: Duration = Duration::from_secs(60);

/// One request the receiver got.
pub struct Delivery {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// The receiver: answers 500 to its first `failures` requests, then 200.
pub struct Receiver {
    pub port: u16,
    deliveries: mpsc::Receiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(failures: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::on(listener, failures)
    }

    pub fn on(listener: TcpListener, failures: usize) -> Receiver {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// The next request the receiver answered with 200.
    pub async fn delivered(&mut self) -> Delivery {
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
    pub async fn until(&mut self, last: &str) -> Vec<Value> {
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
