//! The cluster's series in `/metrics`, per node.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchboard_core::CoreError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Counters of what crossed the bus, shared with the server's registry.
#[derive(Clone)]
pub struct ClusterMetrics {
    pub(crate) nodes: Gauge,
    pub(crate) parked: Gauge,
    pub(crate) published: Counter,
    pub(crate) received: Counter,
    dropped: Family<Reason, Counter>,
    pub(crate) overloaded: Counter,
    pub(crate) queue_depth: Gauge,
    pub(crate) redis_rtt: Histogram,
    pub(crate) resyncs: Counter,
    pub(crate) lease_failures: Counter,
    refused: Family<Reason, Counter>,
    pub(crate) tunnels: Gauge,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics {
            nodes: Gauge::default(),
            parked: Gauge::default(),
            published: Counter::default(),
            received: Counter::default(),
            dropped: Family::default(),
            overloaded: Counter::default(),
            queue_depth: Gauge::default(),
            redis_rtt: Histogram::new([0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0]),
            resyncs: Counter::default(),
            lease_failures: Counter::default(),
            refused: Family::default(),
            tunnels: Gauge::default(),
        }
    }
}

impl ClusterMetrics {
    pub(crate) fn dropped(&self, reason: &'static str) {
        self.dropped.get_or_create(&Reason { reason }).inc();
    }

    pub(crate) fn refused(&self, error: &CoreError) {
        let reason = error.code().as_str();
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    /// Adds the cluster's series to `registry` (the server's, prefixed `switchboard_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_nodes",
            "Nodes with a live lease, as of the last heartbeat",
            self.nodes.clone(),
        );
        registry.register(
            "cluster_parked_sessions",
            "Durable sessions whose node died or drained, waiting in Redis to be taken over (cluster-wide, as of the last heartbeat)",
            self.parked.clone(),
        );
        registry.register(
            "bus_published",
            "Relays and frames queued for other nodes",
            self.published.clone(),
        );
        registry.register(
            "bus_received",
            "Messages from other nodes applied",
            self.received.clone(),
        );
        registry.register(
            "bus_dropped",
            "Messages from or for other nodes dropped, by reason (bad envelopes, Redis down)",
            self.dropped.clone(),
        );
        registry.register(
            "bus_overloaded",
            "Relays and frames refused with overloaded (the queue to Redis was full)",
            self.overloaded.clone(),
        );
        registry.register(
            "bus_queue_depth",
            "Commands waiting for Redis",
            self.queue_depth.clone(),
        );
        registry.register(
            "redis_rtt_seconds",
            "Round trip of one pipelined batch to Redis",
            self.redis_rtt.clone(),
        );
        registry.register(
            "cluster_resyncs",
            "Times this node claimed its members again (a new incarnation)",
            self.resyncs.clone(),
        );
        registry.register(
            "lease_renew_failures",
            "Heartbeats that found this node declared dead",
            self.lease_failures.clone(),
        );
        registry.register(
            "cluster_claims_refused",
            "Joins the cluster refused, by error code",
            self.refused.clone(),
        );
        registry.register(
            "resume_tunnels",
            "Resumed sessions whose socket is carried between this node and another",
            self.tunnels.clone(),
        );
    }
}
