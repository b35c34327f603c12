//! Prometheus metrics, one registry per server (tests run several servers in one process).
//! Hot-path counters are resolved once per connection ([`DialectMetrics`]), so counting a
//! frame is one atomic add; counts the hub already keeps are read at scrape time.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use switchboard_core::{Census, DialectKind, ErrorCode};

type Label = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Limits whose hits are counted, by their `limit` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    FrameSize,
    Rate,
    RateClose,
    Connections,
    ConnectionsPerIp,
    IdleTimeout,
    Origin,
    WriteTimeout,
    HeaderTimeout,
    HandshakeRate,
    HttpRate,
    JoinTimeout,
    /// A TCP connection arrived while `max_tls_handshakes` were in progress: closed at once.
    TlsHandshakes,
    /// A TLS handshake did not finish within `tls_handshake_timeout`: closed.
    TlsHandshakeTimeout,
}

impl Limit {
    fn as_str(self) -> &'static str {
        match self {
            Limit::FrameSize => "frame_size",
            Limit::Rate => "rate",
            Limit::RateClose => "rate_close",
            Limit::Connections => "connections",
            Limit::ConnectionsPerIp => "connections_per_ip",
            Limit::IdleTimeout => "idle_timeout",
            Limit::Origin => "origin",
            Limit::WriteTimeout => "write_timeout",
            Limit::HeaderTimeout => "header_timeout",
            Limit::HandshakeRate => "handshake_rate",
            Limit::HttpRate => "http_rate",
            Limit::JoinTimeout => "join_timeout",
            Limit::TlsHandshakes => "tls_handshakes",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
        }
    }
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    connections: Family<Label, Gauge>,
    members: Family<Label, Gauge>,
    rooms: Gauge,
    channels: Gauge,
    frames_in: Family<Label, Counter>,
    frames_out: Family<Label, Counter>,
    bytes_in: Family<Label, Counter>,
    bytes_out: Family<Label, Counter>,
    errors: Family<Labels2, Counter>,
    evictions: Family<Label, Counter>,
    limit_hits: Family<Label, Counter>,
    auth_refused: Family<Label, Counter>,
    certificate_loads: Family<Label, Counter>,
    handshake: Histogram,
    stats_snapshots: Counter,
    /// Resumable sessions whose socket dropped, waiting for it to come back.
    parked: Gauge,
    /// Resume attempts, by result.
    resumes: Family<Label, Counter>,
    /// Frames sent again on a resume.
    replayed: Counter,
    /// Parked sessions that ended without a resume, by reason.
    parked_ended: Family<Label, Counter>,
    /// Scrapes are rare; one at a time keeps gauge updates and encoding consistent.
    scrape: Mutex<()>,
}

/// One dialect's hot-path counters, cloned into each connection.
#[derive(Clone)]
pub(crate) struct DialectMetrics {
    pub(crate) frames_in: Counter<u64, AtomicU64>,
    pub(crate) frames_out: Counter<u64, AtomicU64>,
    pub(crate) bytes_in: Counter<u64, AtomicU64>,
    pub(crate) bytes_out: Counter<u64, AtomicU64>,
}

impl Metrics {
    /// Adds the SFU's counters (`switchboard_media_*`).
    pub(crate) fn register_media(&mut self, media: &switchboard_sfu::MediaMetrics) {
        media.register(&mut self.registry);
    }

    /// Adds the cluster's counters (`switchboard_cluster_*`, `switchboard_bus_*`).
    pub(crate) fn register_cluster(&mut self, cluster: &switchboard_cluster::ClusterMetrics) {
        cluster.register(&mut self.registry);
    }

    /// Adds the webhook delivery counters (`switchboard_webhook_*`).
    pub(crate) fn register_webhooks(&mut self, webhooks: &crate::webhook::WebhookMetrics) {
        webhooks.register(&mut self.registry);
    }

    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let metrics = Metrics {
            connections: Family::default(),
            members: Family::default(),
            rooms: Gauge::default(),
            channels: Gauge::default(),
            frames_in: Family::default(),
            frames_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            errors: Family::default(),
            evictions: Family::default(),
            limit_hits: Family::default(),
            auth_refused: Family::default(),
            certificate_loads: Family::default(),
            // 100 µs to ~3.3 s.
            handshake: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            stats_snapshots: Counter::default(),
            parked: Gauge::default(),
            resumes: Family::default(),
            replayed: Counter::default(),
            parked_ended: Family::default(),
            registry: Registry::default(),
            scrape: Mutex::new(()),
        };
        registry.register(
            "connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        registry.register(
            "room_members",
            "Connections in a room, pairing or channel",
            metrics.members.clone(),
        );
        registry.register(
            "rooms",
            "Rooms with at least one member",
            metrics.rooms.clone(),
        );
        registry.register(
            "broadcast_channels",
            "Broadcast channels with at least one subscriber",
            metrics.channels.clone(),
        );
        registry.register(
            "frames_in",
            "Frames received from clients",
            metrics.frames_in.clone(),
        );
        registry.register(
            "frames_out",
            "Frames sent to clients",
            metrics.frames_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes received in frames",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes sent in frames (relayed and own)",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "errors",
            "Refused frames and requests, by code (sent as error frames where the dialect has them)",
            metrics.errors.clone(),
        );
        registry.register(
            "evictions",
            "Connections closed for falling behind (outbox full or write stalled)",
            metrics.evictions.clone(),
        );
        registry.register(
            "limit_hits",
            "Requests or frames refused by a limit",
            metrics.limit_hits.clone(),
        );
        registry.register(
            "auth_refused",
            "Requests refused for their token: missing, expired, invalid, or forbidden (valid but not for this)",
            metrics.auth_refused.clone(),
        );
        registry.register(
            "tls_certificate_loads",
            "TLS certificates loaded (files read at start, on change or SIGHUP; ACME deployments), by result",
            metrics.certificate_loads.clone(),
        );
        registry.register(
            "handshake_seconds",
            "Time from the upgrade request to the socket task starting",
            metrics.handshake.clone(),
        );
        registry.register(
            "stats_snapshots",
            "Snapshots built for /api/stats (one serves every caller while it is fresh)",
            metrics.stats_snapshots.clone(),
        );
        registry.register(
            "parked_sessions",
            "Resumable sessions whose socket dropped, kept for --resume-window",
            metrics.parked.clone(),
        );
        registry.register(
            "resumes",
            "Resume attempts, by result (resumed, unknown, stale, rate_limited; carried: to its session on another node)",
            metrics.resumes.clone(),
        );
        registry.register(
            "replayed_frames",
            "Frames sent again on a resume",
            metrics.replayed.clone(),
        );
        registry.register(
            "parked_ended",
            "Parked sessions that ended without a resume, by reason (expired, overflow, evicted, shutdown)",
            metrics.parked_ended.clone(),
        );
        for result in ["resumed", "unknown", "stale", "rate_limited"] {
            let _ = metrics.resumes.get_or_create(&[("result", result)]);
        }
        for reason in ["expired", "overflow", "evicted", "shutdown"] {
            let _ = metrics.parked_ended.get_or_create(&[("reason", reason)]);
        }
        for kind in DialectKind::ALL {
            let label = dialect(kind);
            for family in [&metrics.connections, &metrics.members] {
                let _ = family.get_or_create(&label);
            }
            let _ = metrics.for_dialect(kind);
            let _ = metrics.evictions.get_or_create(&label);
        }
        for reason in ["missing", "expired", "invalid", "forbidden"] {
            let _ = metrics.auth_refused.get_or_create(&[("reason", reason)]);
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    pub(crate) fn for_dialect(&self, kind: DialectKind) -> DialectMetrics {
        let label = dialect(kind);
        DialectMetrics {
            frames_in: self.frames_in.get_or_create(&label).clone(),
            frames_out: self.frames_out.get_or_create(&label).clone(),
            bytes_in: self.bytes_in.get_or_create(&label).clone(),
            bytes_out: self.bytes_out.get_or_create(&label).clone(),
        }
    }

    pub(crate) fn error(&self, kind: DialectKind, code: ErrorCode) {
        self.errors
            .get_or_create(&[("dialect", kind.as_str()), ("code", code.as_str())])
            .inc();
    }

    pub(crate) fn eviction(&self, kind: DialectKind) {
        self.evictions.get_or_create(&dialect(kind)).inc();
    }

    pub(crate) fn limit_hit(&self, limit: Limit) {
        self.limit_hits
            .get_or_create(&[("limit", limit.as_str())])
            .inc();
    }

    pub(crate) fn auth_refused(&self, reason: &'static str) {
        self.auth_refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a certificate load: `is_ok` false means the old certificate stays in use.
    pub(crate) fn certificate_load(&self, is_ok: bool) {
        let result = if is_ok { "ok" } else { "error" };
        self.certificate_loads
            .get_or_create(&[("result", result)])
            .inc();
    }

    pub(crate) fn stats_snapshot(&self) {
        self.stats_snapshots.inc();
    }

    /// The parked-sessions gauge, which each parked session moves itself.
    pub(crate) fn parked_gauge(&self) -> Gauge {
        self.parked.clone()
    }

    pub(crate) fn resume(&self, result: &'static str) {
        self.resumes.get_or_create(&[("result", result)]).inc();
    }

    pub(crate) fn replayed(&self, frames: u64) {
        self.replayed.inc_by(frames);
    }

    pub(crate) fn parked_ended(&self, reason: &'static str) {
        self.parked_ended.get_or_create(&[("reason", reason)]).inc();
    }

    pub(crate) fn handshake(&self, took: Duration) {
        self.handshake.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition, with the hub's counts as of now.
    pub(crate) fn render(&self, census: &Census) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for kind in DialectKind::ALL {
            let label = dialect(kind);
            let index = kind.index();
            self.connections
                .get_or_create(&label)
                .set(gauge_value(census.connections[index]));
            self.members
                .get_or_create(&label)
                .set(gauge_value(census.members[index]));
        }
        self.rooms.set(gauge_value(census.rooms));
        self.channels.set(gauge_value(census.channels));
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn dialect(kind: DialectKind) -> Label {
    [("dialect", kind.as_str())]
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
