//! Serving until told to stop, then stopping well: tell every socket, wait a bounded time,
//! exit. Shutdown is an argument (a future), so `main` passes SIGINT/SIGTERM and tests
//! pass a token.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use tokio::net::TcpListener;
use tokio::sync::Notify;
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
    serve_with(listener, config, signal, || {}).await
}

/// [`serve`], calling `ready` once every part has started (TLS from its files, the token
/// keys, the cluster client, the webhooks, the SFU's sockets) and just before the first
/// connection is accepted: when a service manager should hear that the server is up. A part
/// that fails to start returns the error instead, and `ready` is never called.
pub async fn serve_with(
    listener: TcpListener,
    config: Config,
    signal: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(),
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
    ready();
    accept::serve(listener, app, state, tls, async move {
        signal.await;
        info!("shutting down: closing sockets with 1001");
        draining.draining.store(true, Ordering::SeqCst);
        // Every room on every node hears this node's members leave now, not after a lease.
        if let Some(cluster) = &draining.cluster {
            cluster.drain().await;
        }
        draining.going_away.tell();
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

/// Tells every socket task that the server is shutting down.
///
/// A socket task polls its wait for this on every wake-up (every frame in, every event out),
/// so the wait must cost nothing there. `CancellationToken::cancelled()` takes two locks
/// shared by all sockets on each poll (the token's node, to ask whether it is cancelled,
/// and its waiter list, to refresh the waker); a [`GoingAway::wait`] reads one atomic and
/// compares one waker, and takes the shared lock only when it registers, once per socket.
#[derive(Clone, Default)]
pub(crate) struct GoingAway(Arc<Notice>);

#[derive(Default)]
struct Notice {
    is_told: AtomicBool,
    notify: Notify,
}

impl GoingAway {
    /// Wakes every waiting socket task; later waits complete at once.
    pub(crate) fn tell(&self) {
        self.0.is_told.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Completes once [`GoingAway::tell`] has been called. Pin it once and poll it for the
    /// socket's whole life: a fresh wait per turn of a loop would register again each time.
    pub(crate) async fn wait(&self) {
        let notice = &self.0;
        // Made before the first check of the flag: a `tell` after this point completes it
        // even if the flag was read just before the store.
        let mut notified = pin!(notice.notify.notified());
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            if notice.is_told.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            // The same task as last time: its waker is already in the list.
            if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            match notified.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(()),
                Poll::Pending => {
                    registered = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::task::Context;

    use super::*;

    #[tokio::test]
    async fn a_wait_completes_when_told_and_after() {
        let going_away = GoingAway::default();
        let mut early = Box::pin(going_away.wait());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(early.as_mut().poll(&mut cx).is_pending());
        assert!(early.as_mut().poll(&mut cx).is_pending());
        going_away.tell();
        assert!(early.as_mut().poll(&mut cx).is_ready());
        going_away.wait().await; // a wait begun after the news completes at once
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken() {
        let going_away = GoingAway::default();
        let waiting = tokio::spawn({
            let going_away = going_away.clone();
            async move { going_away.wait().await }
        });
        tokio::task::yield_now().await;
        going_away.tell();
        waiting.await.expect("the waiting task ends");
    }
}
