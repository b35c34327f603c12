//! Accepting TCP connections and serving HTTP/1.1 on them. Each connection counts against
//! its client address from the moment it is accepted (a half-sent request holds a descriptor
//! as surely as a WebSocket does), must deliver each request's headers within the header read
//! timeout (hyper's own, which `axum::serve` cannot set), and ends gracefully: a FIN after the
//! last byte written, then whatever the client still sends is read and dropped for a moment,
//! so that closing with unread input does not make the kernel reset the connection and
//! destroy a close frame on its way. With TLS, each connection's task runs its handshake
//! first (`tls.rs`: bounded in number and time, so a slow client never stalls accepting) and
//! then serves the same HTTP/1.1 over it. What is served is the router's business.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Duration};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace, warn};

use crate::limits::AddressSlot;
use crate::metrics::Limit;
use crate::tls::{Handshake, Tls, TlsSocket};
use crate::AppState;

/// How long a closing connection waits for the client to close its side, reading and
/// dropping what it still sends. A client that has our FIN normally closes at once; one that
/// keeps sending (the rest of an oversized frame) is cut off after this.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Connections refused at accept (over the per-IP cap) that are still being told so with a
/// 429. Past this many, a refused connection is closed without an answer: telling an
/// attacker why must not cost more descriptors than the cap saves.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// After an accept error that is ours (most likely out of descriptors), wait this long
/// before accepting again, so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The answer to a connection over its address's cap.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 39\r\nconnection: close\r\n\r\n\
too many connections from this address\n";

/// Accepts and serves connections until `signal` completes, then stops accepting, asks every
/// HTTP connection to finish its request in flight, and waits for them. Upgraded sockets are
/// not waited for here: they left hyper at the upgrade (`shutdown.rs` waits for them).
/// With `tls`, every connection is a TLS one.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    tls: Option<Arc<Tls>>,
    signal: impl Future<Output = ()>,
) {
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut signal = pin!(signal);
    loop {
        let (tcp, addr) = tokio::select! {
            biased;
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        // Signaling frames are small and latency-bound: never let Nagle hold one back.
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let slot = match state.limits.acquire_address(addr.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                state.metrics.limit_hit(Limit::ConnectionsPerIp);
                debug!(ip = %addr.ip(), "connection refused: too many from this address");
                refuse(tcp, &refusals);
                continue;
            }
        };
        let io = Accepted {
            tcp: Some(tcp),
            slot: Some(slot),
            has_ended: false,
        };
        let Some(tls) = &tls else {
            connections.spawn(connection(
                Wire::Plain(io),
                addr,
                app.clone(),
                state.clone(),
                stop.clone(),
            ));
            continue;
        };
        let Some(handshake) = tls.try_begin() else {
            state.metrics.limit_hit(Limit::TlsHandshakes);
            debug!(ip = %addr.ip(), "connection closed: too many TLS handshakes in progress");
            continue; // dropping `io` closes it
        };
        connections.spawn(secure_connection(
            io,
            Arc::clone(tls),
            handshake,
            addr,
            app.clone(),
            state.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// Runs the TLS handshake on one connection, holding its place among the handshakes in
/// progress until it ends, then serves HTTP/1.1 over TLS.
async fn secure_connection(
    io: Accepted,
    tls: Arc<Tls>,
    place: OwnedSemaphorePermit,
    addr: SocketAddr,
    app: Router,
    state: AppState,
    stop: CancellationToken,
) {
    let handshake = tokio::select! {
        handshake = tls.handshake(io) => handshake,
        // Shutting down: a handshake in progress is abandoned, not waited for.
        () = stop.cancelled() => return,
    };
    drop(place);
    let ip = addr.ip();
    match handshake {
        Ok(Ok(Handshake::Done(socket))) => {
            connection(Wire::Tls(socket), addr, app, state, stop).await
        }
        Ok(Ok(Handshake::Challenge)) => debug!(%ip, "answered an ACME TLS-ALPN-01 challenge"),
        Ok(Ok(Handshake::NotTls)) => debug!(%ip, "not TLS on the TLS port: answered 400"),
        Ok(Err(error)) => debug!(%ip, %error, "TLS handshake failed"),
        Err(_) => {
            state.metrics.limit_hit(Limit::TlsHandshakeTimeout);
            debug!(%ip, "TLS handshake not finished in time: closed");
        }
    }
}

/// Serves HTTP/1.1 on one connection until it closes, upgrades, or is told to stop.
async fn connection(
    io: Wire,
    addr: SocketAddr,
    app: Router,
    state: AppState,
    stop: CancellationToken,
) {
    let service = WithPeer {
        router: TowerToHyperService::new(app),
        addr,
    };
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout);
    let mut conn = pin!(http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades());
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop.cancelled() => {
            // Finish the request in flight, if any; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    match served {
        Ok(()) => {}
        Err(error) if error.is_timeout() => {
            state.metrics.limit_hit(Limit::HeaderTimeout);
            debug!(ip = %addr.ip(), "request headers not received in time: closed");
        }
        Err(error) => trace!(%error, "connection ended"),
    }
}

/// The router, with the client's address in every request (as `ConnectInfo`).
#[derive(Clone)]
struct WithPeer {
    router: TowerToHyperService<Router>,
    addr: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for WithPeer {
    type Response = Response;
    type Error = Infallible;
    type Future = TowerToHyperServiceFuture<Router, Request<Incoming>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.addr));
        self.router.call(request)
    }
}

/// Answers a connection over its address's cap with a 429 and closes it, or, when too many
/// refusals are in flight already, just closes it.
fn refuse(mut tcp: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        if timeout(LINGER, tcp.write_all(TOO_MANY_CONNECTIONS))
            .await
            .is_ok_and(|written| written.is_ok())
        {
            close_gracefully(tcp, None).await;
        }
    });
}

async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    // A client that gave up before we accepted it is its own business.
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    warn!(%error, "accept failed; retrying shortly");
    sleep(ACCEPT_BACKOFF).await;
}

/// One accepted TCP connection: holds its address's slot for as long as it is open
/// (through an upgrade too, as the upgraded socket owns it), and closes gracefully.
pub(crate) struct Accepted {
    /// `Some` until dropped.
    tcp: Option<TcpStream>,
    slot: Option<AddressSlot>,
    /// The client closed its side (a read returned end of stream): nothing is left unread.
    has_ended: bool,
}

impl Accepted {
    /// The first byte the client sends, left unread; `None` if it closed without one.
    pub(crate) async fn first_byte(&mut self) -> io::Result<Option<u8>> {
        let mut first = [0; 1];
        let peeked = self.tcp()?.peek(&mut first).await?;
        Ok((peeked > 0).then_some(first[0]))
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else {
            return;
        };
        if self.has_ended {
            return; // a plain close sends our FIN; nothing unread, so no reset
        }
        let slot = self.slot.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(close_gracefully(tcp, slot));
        }
    }
}

/// Sends our FIN after everything written, then reads and drops the client's input until it
/// closes too (bounded by [`LINGER`]). The slot is held until then: the descriptor is too.
async fn close_gracefully(mut tcp: TcpStream, _slot: Option<AddressSlot>) {
    let _ = timeout(LINGER, async {
        let _ = tcp.shutdown().await;
        let mut sink = [0; 4096];
        while matches!(tcp.read(&mut sink).await, Ok(read) if read > 0) {}
    })
    .await;
}

/// A served connection, plain or TLS: what hyper reads requests from, and what a WebSocket
/// takes over at the upgrade (`ws.rs`).
pub(crate) enum Wire {
    Plain(Accepted),
    Tls(TlsSocket),
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Wire::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Wire::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Wire::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Wire::Plain(io) => io.is_write_vectored(),
            Wire::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(io) => Pin::new(io).poll_flush(cx),
            Wire::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Wire::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let had_room = buf.remaining() > 0;
        let before = buf.filled().len();
        let polled = Pin::new(this.tcp()?).poll_read(cx, buf);
        if had_room && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            this.has_ended = true;
        }
        polled
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().tcp()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().tcp()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
