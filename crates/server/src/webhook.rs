//! Webhooks (`--webhook URL`): what happens to rooms, peers, producers and nodes, POSTed as
//! signed JSON to each receiver, in order, retried until delivered.
//!
//! The hub tells [`Webhooks`] of each change under its lock, so recording one must never wait:
//! it is a push onto a bounded queue per receiver, behind a lock of its own held for that
//! push only. A queue that is full drops its *oldest* event (counted): a receiver that is
//! down for long loses the distant past, not the present, and never grows memory. One task
//! per receiver sends the queue's events one at a time, oldest first, retrying a failure
//! (connection refused, timeout, 5xx, 408, 429) with capped exponential backoff until it is
//! delivered; that is what keeps each room's events in order. Other 4xx answers are final
//! (the receiver refused that event): counted as failed, and the next one goes.
//!
//! Receivers are plain `http://` URLs (a local relay or sidecar; TLS to the receiver is not
//! built in). Events are per node: in a cluster each node reports its own members, so a
//! room's `room_started`/`room_finished` mean its first/last member *on that node*.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use switchboard_core::{DialectKind, MembershipListener, NodeId, PeerKey, PeerName, RoomId};

/// Where events go and how.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The receivers, each an `http://HOST[:PORT]/PATH` URL; each gets every event.
    pub urls: Vec<String>,
    /// Signs each request (`X-Switchboard-Signature`); `None`: requests are unsigned.
    pub secret: Option<Vec<u8>>,
    /// Events waiting per receiver; past it the oldest is dropped (and counted).
    pub capacity: usize,
    /// How long one delivery attempt may take (connect, send, answer) before it is retried.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Events kept per receiver by default: 10,000 is hours of a busy node's room life at a
    /// few hundred bytes each (a few MiB), and minutes of a load test's churn.
    pub const DEFAULT_CAPACITY: usize = 10_000;
    /// One attempt's bound by default: ample for a receiver that answers before doing work.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Checks a receiver URL: `http://` with a host.
    pub fn parse_url(text: &str) -> Result<String, String> {
        let uri: Uri = text
            .parse()
            .map_err(|error| format!("{text:?} is not a URL: {error}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http"), Some(host)) if !host.is_empty() => Ok(text.to_owned()),
            (Some("https"), _) => Err(format!(
                "{text:?}: https receivers are not supported; point --webhook at a local \
                 http:// relay (docs/webhooks.md)"
            )),
            _ => Err(format!("{text:?} is not an http://HOST/PATH URL")),
        }
    }
}

/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts: a receiver back from an outage hears within this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A receiver's answer body is read (and discarded) up to this size, so the connection can
/// be reused; a bigger one is cut off.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The header carrying `t=UNIX_SECONDS,v1=HEX(HMAC-SHA256(secret, "t.body"))`.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// The webhook side of a server: records events (from the hub, the SFU and the server) and
/// owns one delivery task per receiver. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Webhooks(Arc<Shared>);

struct Shared {
    receivers: Vec<Arc<Receiver>>,
    /// Local members per room, to tell a room's first join and last leave.
    rooms: Mutex<HashMap<RoomId, usize>>,
    /// Numbers events in the order they happened, for the receivers' deduplication.
    next_id: AtomicU64,
    node: Option<NodeId>,
    metrics: WebhookMetrics,
}

/// One receiver's queue.
struct Receiver {
    url: Uri,
    /// `WebhookConfig::capacity`.
    capacity: usize,
    queue: Mutex<VecDeque<Arc<Record>>>,
    ready: Notify,
    /// An event is being delivered (taken off the queue, not yet done).
    busy: std::sync::atomic::AtomicBool,
}

/// Delivery counters, shown on `/metrics` as `switchboard_webhook_*`.
#[derive(Clone, Default)]
pub(crate) struct WebhookMetrics {
    delivered: Counter,
    retried: Counter,
    failed: Counter,
    dropped: Counter,
}

impl WebhookMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_delivered",
            "Webhook events a receiver accepted (2xx)",
            self.delivered.clone(),
        );
        registry.register(
            "webhook_retries",
            "Webhook delivery attempts that failed and were retried (connection, timeout, 5xx)",
            self.retried.clone(),
        );
        registry.register(
            "webhook_failed",
            "Webhook events a receiver refused for good (4xx other than 408 and 429)",
            self.failed.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Webhook events dropped, oldest first, because a receiver's queue was full",
            self.dropped.clone(),
        );
    }
}

/// One event, as it is sent.
#[derive(Debug, Serialize)]
struct Record {
    /// Unique per node and event (`NODE-SEQ`, or `SEQ` outside a cluster): receivers may see
    /// an event twice (an answer lost after it was handled) and deduplicate on it.
    id: String,
    /// What happened: `room_started`, `peer_joined`, ... (docs/webhooks.md).
    event: &'static str,
    /// When, in milliseconds since the Unix epoch.
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<PeerRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    producer: Option<ProducerRecord>,
}

#[derive(Debug, Serialize)]
struct PeerRecord {
    name: String,
    dialect: &'static str,
}

#[derive(Debug, Serialize)]
struct ProducerRecord {
    id: String,
    kind: String,
    peer: String,
}

impl Webhooks {
    /// Starts one delivery task per receiver; they stop at `shutdown`, which the server
    /// cancels after [`Webhooks::flush`].
    pub(crate) fn start(
        config: &WebhookConfig,
        node: Option<NodeId>,
        shutdown: CancellationToken,
    ) -> Webhooks {
        let receivers: Vec<Arc<Receiver>> = config
            .urls
            .iter()
            .filter_map(|url| url.parse().ok())
            .map(|url| {
                Arc::new(Receiver {
                    url,
                    capacity: config.capacity.max(1),
                    queue: Mutex::new(VecDeque::new()),
                    ready: Notify::new(),
                    busy: false.into(),
                })
            })
            .collect();
        if config.secret.is_none() {
            warn!("webhooks are unsigned: set --webhook-secret so receivers can check them");
        }
        let webhooks = Webhooks(Arc::new(Shared {
            receivers,
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            node,
            metrics: WebhookMetrics::default(),
        }));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let key = config
            .secret
            .as_ref()
            .map(|secret| hmac::Key::new(hmac::HMAC_SHA256, secret));
        for receiver in &webhooks.0.receivers {
            info!(url = %receiver.url, "sending webhooks");
            let delivery = Delivery {
                receiver: receiver.clone(),
                client: client.clone(),
                key: key.clone(),
                timeout: config.timeout,
                metrics: webhooks.0.metrics.clone(),
            };
            tokio::spawn(delivery.run(shutdown.clone()));
        }
        webhooks
    }

    pub(crate) fn metrics(&self) -> &WebhookMetrics {
        &self.0.metrics
    }

    /// This node joined its cluster.
    pub(crate) fn node_up(&self, node: NodeId) {
        self.record("node_up", None, None, None, Some(node));
    }

    /// This node is leaving its cluster (shutdown).
    pub(crate) fn node_leaving(&self, node: NodeId) {
        self.record("node_down", None, None, None, Some(node));
    }

    /// A producer was published or closed (from the SFU).
    pub(crate) fn producer(
        &self,
        room: &RoomId,
        name: &PeerName,
        id: &str,
        kind: &str,
        is_open: bool,
    ) {
        let producer = ProducerRecord {
            id: id.to_owned(),
            kind: kind.to_owned(),
            peer: name.as_str().to_owned(),
        };
        let event = if is_open {
            "producer_published"
        } else {
            "producer_closed"
        };
        self.record(event, Some(room), None, Some(producer), None);
    }

    /// Waits (at most `limit`) until every receiver has its queue delivered: on shutdown, so
    /// the last rooms' ends are heard.
    pub(crate) async fn flush(&self, limit: Duration) {
        let drained = async {
            loop {
                let idle = self.0.receivers.iter().all(|receiver| {
                    lock(&receiver.queue).is_empty() && !receiver.busy.load(Ordering::SeqCst)
                });
                if idle {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(limit, drained).await.is_err() {
            warn!("webhooks still undelivered at shutdown are lost");
        }
    }

    /// Queues an event for every receiver. Never waits: each queue's lock is held for one
    /// push, and a full queue loses its oldest event.
    fn record(
        &self,
        event: &'static str,
        room: Option<&RoomId>,
        peer: Option<PeerRecord>,
        producer: Option<ProducerRecord>,
        about: Option<NodeId>,
    ) {
        let shared = &self.0;
        let seq = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let record = Arc::new(Record {
            id: match shared.node {
                Some(node) => format!("{node}-{seq}"),
                None => seq.to_string(),
            },
            event,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
            node: about.or(shared.node).map(|node| node.to_string()),
            room: room.map(|room| room.as_str().to_owned()),
            peer,
            producer,
        });
        for receiver in &shared.receivers {
            receiver.push(record.clone(), &shared.metrics);
        }
    }
}

impl Receiver {
    /// Queues `record`, dropping (and counting) the oldest event when the queue is full.
    fn push(&self, record: Arc<Record>, metrics: &WebhookMetrics) {
        let mut queue = lock(&self.queue);
        if queue.len() >= self.capacity {
            queue.pop_front();
            metrics.dropped.inc();
        }
        queue.push_back(record);
        drop(queue);
        self.ready.notify_one();
    }
}

impl MembershipListener for Webhooks {
    fn joined(&self, _key: PeerKey, _dialect: DialectKind, _room: &RoomId, _epoch: u32) {}

    fn left(&self, _key: PeerKey, _dialect: DialectKind, _epoch: u32) {}

    fn member_joined(&self, room: &RoomId, name: &PeerName, dialect: DialectKind) {
        let first = {
            let mut rooms = lock(&self.0.rooms);
            let members = rooms.entry(room.clone()).or_default();
            *members += 1;
            *members == 1
        };
        if first {
            self.record("room_started", Some(room), None, None, None);
        }
        let peer = PeerRecord {
            name: name.as_str().to_owned(),
            dialect: dialect.as_str(),
        };
        self.record("peer_joined", Some(room), Some(peer), None, None);
    }

    fn member_left(&self, room: &RoomId, name: &PeerName, dialect: DialectKind) {
        let peer = PeerRecord {
            name: name.as_str().to_owned(),
            dialect: dialect.as_str(),
        };
        self.record("peer_left", Some(room), Some(peer), None, None);
        let last = {
            let mut rooms = lock(&self.0.rooms);
            match rooms.get_mut(room) {
                Some(members) if *members > 1 => {
                    *members -= 1;
                    false
                }
                Some(_) => rooms.remove(room).is_some(),
                None => false,
            }
        };
        if last {
            self.record("room_finished", Some(room), None, None, None);
        }
    }

    fn node_down(&self, node: NodeId) {
        self.record("node_down", None, None, None, Some(node));
    }
}

/// One receiver's delivery task.
struct Delivery {
    receiver: Arc<Receiver>,
    client: Client<HttpConnector, Full<Bytes>>,
    key: Option<hmac::Key>,
    timeout: Duration,
    metrics: WebhookMetrics,
}

impl Delivery {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            let next = lock(&self.receiver.queue).pop_front();
            let Some(record) = next else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.receiver.ready.notified() => continue,
                }
            };
            self.receiver.busy.store(true, Ordering::SeqCst);
            let body = Bytes::from(serde_json::to_vec(&*record).unwrap_or_default());
            let mut backoff = FIRST_BACKOFF;
            loop {
                match self.attempt(&body, record.event).await {
                    Outcome::Delivered => {
                        self.metrics.delivered.inc();
                        break;
                    }
                    Outcome::Refused(status) => {
                        warn!(url = %self.receiver.url, status, event = record.event, id = %record.id, "webhook refused; not retried");
                        self.metrics.failed.inc();
                        break;
                    }
                    Outcome::Retry(why) => {
                        tracing::debug!(url = %self.receiver.url, %why, ?backoff, "webhook failed; retrying");
                        self.metrics.retried.inc();
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                self.receiver.busy.store(false, Ordering::SeqCst);
                                return;
                            }
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            self.receiver.busy.store(false, Ordering::SeqCst);
        }
    }

    /// One POST of `body`, signed now.
    async fn attempt(&self, body: &Bytes, event: &'static str) -> Outcome {
        let mut request = hyper::Request::post(self.receiver.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-switchboard-event", event);
        if let Some(key) = &self.key {
            request = request.header(SIGNATURE_HEADER, sign(key, body, unix_seconds()));
        }
        let Ok(request) = request.body(Full::new(body.clone())) else {
            return Outcome::Refused(0);
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Read the answer (bounded) so the connection can carry the next event.
            let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::Retry("timed out".to_owned()),
            Ok(Err(error)) => Outcome::Retry(error),
            Ok(Ok(status)) if status.is_success() => Outcome::Delivered,
            Ok(Ok(status))
                if status.is_server_error()
                    || status == hyper::StatusCode::REQUEST_TIMEOUT
                    || status == hyper::StatusCode::TOO_MANY_REQUESTS =>
            {
                Outcome::Retry(format!("status {status}"))
            }
            Ok(Ok(status)) => Outcome::Refused(status.as_u16()),
        }
    }
}

enum Outcome {
    Delivered,
    Retry(String),
    Refused(u16),
}

/// `t=SECONDS,v1=HEX`: HMAC-SHA256 over `SECONDS.BODY` (docs/webhooks.md shows the check).
pub(crate) fn sign(key: &hmac::Key, body: &[u8], seconds: u64) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(seconds.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={seconds},v1={hex}")
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature of a known body, as `openssl dgst -sha256 -hmac` computes it:
    /// `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret`.
    #[test]
    fn signature_matches_openssl() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        let signed = sign(&key, br#"{"a":1}"#, 1_700_000_000);
        assert_eq!(
            signed,
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn only_http_receivers() {
        assert!(WebhookConfig::parse_url("http://127.0.0.1:9000/hooks").is_ok());
        assert!(WebhookConfig::parse_url("http://hooks.internal/").is_ok());
        assert!(WebhookConfig::parse_url("https://hooks.example/").is_err());
        assert!(WebhookConfig::parse_url("127.0.0.1:9000").is_err());
        assert!(WebhookConfig::parse_url("not a url").is_err());
    }
}
