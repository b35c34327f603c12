//! switchboard's server: axum routes, one task per WebSocket, the HTTP API, metrics and
//! shutdown. It owns the sockets and the clock; the rules live in `switchboard-core` and the
//! wire formats in `switchboard-dialects`. The transport learns only what the hub reports: a join the cluster must confirm.
#![warn(missing_docs)]

mod accept;
mod acme;
mod assets;
mod auth;
mod config;
mod connection;
mod http;
mod limits;
mod media;
mod metrics;
mod resume;
mod router;
mod shutdown;
mod tls;
mod turn;
mod upgrade;
mod webhook;
mod ws;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use switchboard_auth::Verifier;
use switchboard_cluster::Cluster;
use switchboard_core::{RawJson, SharedHub};
use switchboard_sfu::Sfu;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    AcmeConfig, AuthKey, AuthMode, CertificateFiles, Certificates, Config, IceServer, MediaLimits,
    TlsConfig, LETS_ENCRYPT_DIRECTORY,
};
pub use shutdown::{serve, serve_with, ServeError};
pub use switchboard_cluster::{rand_u64 as random_node_id, ClusterConfig, RedisUrl};
pub use switchboard_core::{DialectKind, NodeId};
pub use tls::TlsError;
pub use turn::{TurnConfig, TurnCredential, TurnSecret};
pub use webhook::{WebhookConfig, SIGNATURE_HEADER};

use crate::http::StatsSnapshots;
use crate::limits::{AddressRate, ConnectionLimits};
use crate::metrics::Metrics;
use crate::shutdown::GoingAway;
use crate::turn::TurnMinter;

/// Everything a request handler or socket task needs, cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// Checks tokens (`--auth`).
    pub(crate) verifier: Verifier,
    pub(crate) hub: SharedHub,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Arc<ConnectionLimits>,
    /// WebSocket upgrades per client address (`--handshake-rate`).
    pub(crate) handshakes: AddressRate,
    /// HTTP requests per client address on the non-WebSocket routes (`--http-rate`).
    pub(crate) requests: AddressRate,
    /// `/api/stats`, built at most once per `stats_max_age` for every caller.
    pub(crate) stats: StatsSnapshots,
    /// Cancelled on shutdown: the server's own tasks (certificate renewal, ...) end.
    pub(crate) shutdown: CancellationToken,
    /// Told on shutdown, with the token: every socket task says "going away" and ends.
    pub(crate) going_away: GoingAway,
    /// Upgraded sockets, which axum does not track (axum#3003), so shutdown can wait.
    pub(crate) sockets: TaskTracker,
    /// Set on shutdown: `/readyz` answers 503 and new sockets are refused.
    pub(crate) draining: AtomicBool,
    /// This node's part of a cluster, with `--redis`.
    pub(crate) cluster: Option<Cluster>,
    /// The media worker, unless media is off.
    pub(crate) sfu: Option<Sfu>,
    /// Mints TURN credentials (`--turn-secret`); the hub holds the same one for `joined`.
    pub(crate) turn: Option<Arc<TurnMinter>>,
    /// Resumable sessions, by token hash (`?resume=1`).
    pub(crate) sessions: Arc<resume::Sessions>,
}

impl AppState {
    // One argument per part the server is built of, each started by `serve` in order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        verifier: Verifier,
        hub: SharedHub,
        sfu: Option<Sfu>,
        cluster: Option<Cluster>,
        webhooks: Option<&webhook::Webhooks>,
        shutdown: CancellationToken,
        sockets: TaskTracker,
    ) -> Self {
        let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let mut metrics = Metrics::new();
        if let Some(sfu) = &sfu {
            metrics.register_media(sfu.metrics());
            hub.with(|hub| hub.set_media_capabilities(Some(sfu.capabilities().clone())));
        }
        if let Some(cluster) = &cluster {
            metrics.register_cluster(cluster.metrics());
        }
        if let Some(webhooks) = &webhooks {
            metrics.register_webhooks(webhooks.metrics());
        }
        hub.with(|hub| hub.set_max_room_members(config.max_room_members));
        let turn = config
            .turn
            .as_ref()
            .map(|turn| Arc::new(TurnMinter::new(turn, &config.ice_servers)));
        if let Some(minter) = &turn {
            let (urls, ttl_secs) = (minter.urls(), minter.ttl_secs());
            tracing::info!(
                ?urls,
                ttl_secs,
                "minting TURN credentials (the secret is not logged)"
            );
            // Each `joined` gets the fixed servers and a credential of its own.
            let minter = minter.clone();
            hub.with(|hub| hub.set_ice_minter(minter));
        } else if !config.ice_servers.is_empty() {
            // Encoded once; every `joined` carries these bytes as they are.
            let json = serde_json::to_string(&config.ice_servers).ok();
            hub.with(|hub| hub.set_ice_servers(json.as_deref().map(RawJson::new)));
        }
        let state = AppState(Arc::new(Inner {
            handshakes: AddressRate::new(config.handshake_rate, config.handshake_burst),
            requests: AddressRate::new(config.http_rate, config.http_burst),
            stats: StatsSnapshots::default(),
            sessions: Arc::new(resume::Sessions::new(config.max_parked)),
            config,
            verifier,
            hub,
            metrics,
            limits,
            shutdown,
            going_away: GoingAway::default(),
            sockets,
            draining: AtomicBool::new(false),
            cluster,
            sfu,
            turn,
        }));
        if let Some(cluster) = &state.cluster {
            cluster.set_resume(Arc::new(resume::Port(Arc::downgrade(&state.0))));
        }
        state
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
