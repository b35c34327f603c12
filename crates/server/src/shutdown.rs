//! Serving until told to stop, then stopping well: tell every socket, wait a bounded time,
//! exit. Shutdown is an argument (a future), so `main` passes SIGINT/SIGTERM and tests
//! pass a token.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use switchboard_auth::Verifier;
use switchboard_cluster::Cluster;
use switchboard_core::SharedHub;

use crate::tls::{Tls, TlsError};
use crate::webhook::Webhooks;
use crate::{accept, media, router, AppState, Config};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Accepting connections failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// The media worker could not start.
    #[error(transparent)]
    Media(#[from] switchboard_sfu::StartError),
    /// A token key could not be read.
    #[error(transparent)]
    Auth(#[from] switchboard_auth::KeyError),
    /// TLS could not start (a certificate file, the ACME settings).
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Serves switchboard on `listener` until `signal` completes, then drains: `/readyz` goes
/// 503, every socket is closed with 1001, the listener closes after `drain_delay`, and
/// sockets get up to `shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let shutdown = CancellationToken::new(); // tell
    let sockets = TaskTracker::new(); // wait
    let grace = config.shutdown_grace;
    let drain_delay = config.drain_delay;
    if config.ws_origins.is_empty() {
        warn!(
            "WebSocket Origin check is off: any web page may connect (set --ws-origin to restrict)"
        );
    }
    // First, so that a bad certificate stops the start before anything else runs.
    let tls = config.tls.as_ref().map(Tls::new).transpose()?;
    let verifier = Verifier::new(config.auth, &config.auth_keys)?;
    let hub = SharedHub::default();
    let cluster = config.cluster.clone().map(|mut cluster| {
        cluster.max_room_members = config.max_room_members;
        Cluster::start(cluster, hub.clone())
    });
    let node = cluster.as_ref().map(Cluster::node);
    // Webhook delivery outlives the sockets (the last rooms' ends are sent after they close):
    // its own token, cancelled when serve returns, however it returns.
    let webhooks_stop = CancellationToken::new();
    let _webhooks_stop = webhooks_stop.clone().drop_guard();
    let webhooks = config
        .webhooks
        .as_ref()
        .map(|webhooks| Webhooks::start(webhooks, node, webhooks_stop.clone()));
    let sfu = media::start(
        &config,
        listener.local_addr()?,
        &hub,
        cluster.as_ref(),
        webhooks.clone(),
    )?;
    if let Some(webhooks) = &webhooks {
        // After the SFU's listener: media closes before the room's end is reported.
        hub.with(|hub| hub.add_listener(Arc::new(webhooks.clone())));
        if let Some(node) = node {
            webhooks.node_up(node);
        }
    }
    let state = AppState::new(
        config,
        verifier,
        hub,
        sfu,
        cluster.clone(),
        webhooks.as_ref(),
        shutdown.clone(),
        sockets.clone(),
    );
    let tls = tls.map(|(tls, renewal)| {
        renewal.spawn(state.clone(), shutdown.child_token());
        Arc::new(tls)
    });
    let is_tls = tls.is_some();
    match &cluster {
        Some(cluster) => {
            info!(addr = %listener.local_addr()?, tls = is_tls, node = %cluster.node(), "switchboard listening, clustered on redis");
        }
        None => info!(addr = %listener.local_addr()?, tls = is_tls, "switchboard listening"),
    }
    let app = router::router(state.clone());
    let draining = state.clone();
    accept::serve(listener, app, state, tls, async move {
        signal.await;
        info!("shutting down: closing sockets with 1001");
        draining.draining.store(true, Ordering::SeqCst);
        // Every room on every node hears this node's members leave now, not after a lease.
        if let Some(cluster) = &draining.cluster {
            cluster.drain().await;
        }
        draining.shutdown.cancel();
        sleep(drain_delay).await;
    })
    .await;
    sockets.close();
    if timeout(grace, sockets.wait()).await.is_err() {
        warn!(
            open = sockets.len(),
            "grace period over, dropping remaining sockets"
        );
    }
    if let Some(webhooks) = &webhooks {
        if let Some(node) = node {
            webhooks.node_leaving(node);
        }
        // Up to the grace period again, so the rooms that just ended are heard.
        webhooks.flush(grace).await;
    }
    info!("stopped");
    Ok(())
}
