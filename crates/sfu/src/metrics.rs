//! The media counters: atomics the worker bumps and `/metrics` reads.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of the media path, registered under `switchboard_media_*`.
#[derive(Clone, Default)]
pub struct MediaMetrics {
    /// Open transports.
    pub transports: Gauge,
    /// Open producers.
    pub producers: Gauge,
    /// Open consumers.
    pub consumers: Gauge,
    /// UDP datagrams received.
    pub packets_in: Counter,
    /// UDP bytes received.
    pub bytes_in: Counter,
    /// UDP datagrams sent.
    pub packets_out: Counter,
    /// UDP bytes sent.
    pub bytes_out: Counter,
    /// RTP packets written to consumers.
    pub rtp_forwarded: Counter,
    /// Datagrams dropped: unroutable, refused by their transport, or a full send buffer.
    pub dropped: Counter,
    /// NACKs received from consumers (answered from the RTX cache by str0m).
    pub nacks: Counter,
    /// PLIs and FIRs received from consumers.
    pub keyframe_requests_in: Counter,
    /// Keyframe requests (PLI) sent to producers, after throttling.
    pub keyframe_requests_out: Counter,
    /// Transports closed because they failed (ICE or DTLS gave up, or a str0m panic).
    pub transport_failures: Counter,
    /// Requests refused because the worker's queue was full.
    pub queue_full: Counter,
    /// The UDP socket's receive buffer, as the kernel reports it.
    pub receive_buffer: Gauge,
    /// The UDP socket's send buffer, as the kernel reports it.
    pub send_buffer: Gauge,
    /// 1 when the kernel granted less buffer than `--media-socket-buffer` asked for.
    pub buffer_capped: Gauge,
    /// Media worker threads (`--media-workers`).
    pub workers: Gauge,
    /// Packets piped from one worker to another (a room spread over several).
    pub piped: Counter,
    /// Piped packets or producer news dropped because the other worker's queue was full.
    pub pipe_dropped: Counter,
}

impl MediaMetrics {
    /// Registers every metric in `registry` (which carries the `switchboard` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let media = registry.sub_registry_with_prefix("media");
        media.register(
            "transports",
            "Open WebRTC transports",
            self.transports.clone(),
        );
        media.register("producers", "Open producers", self.producers.clone());
        media.register("consumers", "Open consumers", self.consumers.clone());
        media.register(
            "packets_in",
            "UDP datagrams received",
            self.packets_in.clone(),
        );
        media.register("bytes_in", "UDP bytes received", self.bytes_in.clone());
        media.register(
            "packets_out",
            "UDP datagrams sent",
            self.packets_out.clone(),
        );
        media.register("bytes_out", "UDP bytes sent", self.bytes_out.clone());
        media.register(
            "rtp_forwarded",
            "RTP packets forwarded to consumers",
            self.rtp_forwarded.clone(),
        );
        media.register(
            "dropped",
            "Datagrams dropped (unroutable, refused, or send buffer full)",
            self.dropped.clone(),
        );
        media.register("nacks", "NACKs received from consumers", self.nacks.clone());
        media.register(
            "keyframe_requests_in",
            "PLI/FIR received from consumers",
            self.keyframe_requests_in.clone(),
        );
        media.register(
            "keyframe_requests_out",
            "Keyframe requests sent to producers",
            self.keyframe_requests_out.clone(),
        );
        media.register(
            "transport_failures",
            "Transports closed because they failed",
            self.transport_failures.clone(),
        );
        media.register(
            "queue_full",
            "Media requests refused because the worker queue was full",
            self.queue_full.clone(),
        );
        media.register(
            "receive_buffer_bytes",
            "The media UDP socket's receive buffer, as the kernel reports it",
            self.receive_buffer.clone(),
        );
        media.register(
            "send_buffer_bytes",
            "The media UDP socket's send buffer, as the kernel reports it",
            self.send_buffer.clone(),
        );
        media.register(
            "buffer_capped",
            "1 when the kernel granted less socket buffer than --media-socket-buffer",
            self.buffer_capped.clone(),
        );
        media.register(
            "workers",
            "Media worker threads, each with its own UDP socket",
            self.workers.clone(),
        );
        media.register(
            "piped",
            "RTP packets piped from one media worker to another (a room spread over several)",
            self.piped.clone(),
        );
        media.register(
            "pipe_dropped",
            "Piped packets or producer news dropped because a worker's queue was full",
            self.pipe_dropped.clone(),
        );
    }
}
