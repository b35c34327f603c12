//! TLS on the one port: the handshake of each accepted connection, bounded in number and in
//! time, and the certificate it presents. The certificate sits in one slot that a reload
//! replaces whole (the files changed, or SIGHUP) or that ACME fills (`acme.rs`); connections
//! already open keep the keys they negotiated, so a reload touches no socket. What is spoken
//! after the handshake is `accept.rs`'s business: the same HTTP/1.1 service, over TLS.

use std::fs;
use std::future::pending;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{error::Elapsed, interval_at, timeout, Duration, Instant, MissedTickBehavior};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::accept::{Accepted, LINGER};
use crate::acme::Acme;
use crate::config::{CertificateFiles, Certificates, TlsConfig};
use crate::AppState;

/// Why TLS could not start, or a certificate could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    /// The key is unusable, or is not the certificate's.
    #[error("{key} is not a usable key for {cert}: {source}")]
    Key {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The ACME cache directory cannot be created.
    #[error("ACME cache {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one ALPN protocol served: HTTP/1.1 (WebSockets upgrade from it).
const HTTP_1_1: &[u8] = b"http/1.1";

/// The first byte of every TLS handshake record. A connection that starts with anything
/// else does not speak TLS (most often: plain HTTP sent to the HTTPS port).
const HANDSHAKE_RECORD: u8 = 0x16;

/// The answer to plain HTTP on the TLS port, so that a person with curl sees why.
const NOT_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 23\r\nconnection: close\r\n\r\n\
this port speaks HTTPS\n";

/// The TLS side of the listener: what handshakes present, and their bounds.
pub(crate) struct Tls {
    /// HTTP/1.1 over TLS, with the current certificate.
    server: Arc<ServerConfig>,
    /// The TLS-ALPN-01 challenge answer (`acme-tls/1`), with ACME only.
    challenge: Option<Arc<ServerConfig>>,
    /// Handshakes in progress (`max_handshakes` permits).
    handshakes: Arc<Semaphore>,
    handshake_timeout: Duration,
}

/// How a handshake ended, when it did not fail.
pub(crate) enum Handshake {
    /// A TLS connection, ready for HTTP.
    Done(TlsSocket),
    /// An ACME validator's `acme-tls/1` handshake, answered; nothing more to serve.
    Challenge,
    /// The client did not speak TLS; it was answered 400.
    NotTls,
}

/// What keeps the certificate current; started once the server's metrics exist.
pub(crate) enum Renewal {
    /// Reload the files when they change or on SIGHUP.
    Files(FileWatch),
    /// Poll the ACME state machine (orders, renewals, cache).
    Acme(Acme),
}

impl Tls {
    /// Reads the certificate files (errors here stop the server from starting) or prepares
    /// ACME, and builds the rustls configurations.
    pub(crate) fn new(config: &TlsConfig) -> Result<(Tls, Renewal), TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (resolver, challenge, renewal): (Arc<dyn ResolvesServerCert>, _, _) =
            match &config.certificates {
                Certificates::Files(files) => {
                    let slot = Arc::new(CertificateSlot::new(load(files, &provider)?));
                    let watch = FileWatch::new(files.clone(), Arc::clone(&slot), &provider);
                    (slot, None, Renewal::Files(watch))
                }
                Certificates::Acme(acme) => {
                    let acme = Acme::new(acme, Arc::clone(&provider))?;
                    let challenge = acme.challenge_config(Arc::clone(&provider));
                    (acme.resolver(), Some(challenge), Renewal::Acme(acme))
                }
            };
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        server.alpn_protocols = vec![HTTP_1_1.to_vec()];
        let tls = Tls {
            server: Arc::new(server),
            challenge,
            handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
            handshake_timeout: config.handshake_timeout,
        };
        Ok((tls, renewal))
    }

    /// A place for one more handshake, or `None` when `max_handshakes` are in progress.
    /// Taken at accept, before the connection's task exists, so a flood is refused in order.
    pub(crate) fn try_begin(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.handshakes).try_acquire_owned().ok()
    }

    /// The handshake on `io`, from its first byte to the last, within the handshake timeout.
    pub(crate) async fn handshake(&self, io: Accepted) -> Result<io::Result<Handshake>, Elapsed> {
        timeout(self.handshake_timeout, self.handshake_unbounded(io)).await
    }

    async fn handshake_unbounded(&self, mut io: Accepted) -> io::Result<Handshake> {
        match io.first_byte().await? {
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(HANDSHAKE_RECORD) => {}
            Some(_) => {
                io.write_all(NOT_TLS).await?;
                return Ok(Handshake::NotTls);
            }
        }
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        if let Some(challenge) = &self.challenge {
            if rustls_acme::is_tls_alpn_challenge(&start.client_hello()) {
                let mut answered = start.into_stream(Arc::clone(challenge)).await?;
                // The validator has read the certificate it came for: close_notify, FIN.
                answered.shutdown().await?;
                return Ok(Handshake::Challenge);
            }
        }
        let tls = start.into_stream(Arc::clone(&self.server)).await?;
        Ok(Handshake::Done(TlsSocket {
            tls: Some(Box::new(tls)),
        }))
    }
}

impl Renewal {
    /// Runs in its own task until `shutdown`.
    pub(crate) fn spawn(self, state: AppState, shutdown: CancellationToken) {
        match self {
            Renewal::Files(watch) => tokio::spawn(watch.run(state, shutdown)),
            Renewal::Acme(acme) => tokio::spawn(acme.run(state, shutdown)),
        };
    }
}

/// The certificate every handshake presents. A reload swaps the `Arc` under a write lock
/// held for one pointer store; a handshake clones it under a read lock. Nothing awaits
/// inside, so a plain std lock does, and no new dependency is needed.
#[derive(Debug)]
struct CertificateSlot {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertificateSlot {
    fn new(key: CertifiedKey) -> Self {
        CertificateSlot {
            current: RwLock::new(Arc::new(key)),
        }
    }

    fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for CertificateSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        Some(Arc::clone(&current))
    }
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn load(files: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| read_error(&files.cert, source))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|source| read_error(&files.key, source))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        key: files.key.clone(),
        cert: files.cert.clone(),
        source,
    })
}

fn read_error(path: &Path, source: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Reloads certificate files when their modification time or size changes, and on SIGHUP.
/// A file that fails to load leaves the previous certificate in use (logged and counted);
/// a key written after its certificate is picked up on the next change, as both are watched.
pub(crate) struct FileWatch {
    files: CertificateFiles,
    slot: Arc<CertificateSlot>,
    provider: Arc<CryptoProvider>,
    hangups: Hangups,
}

impl FileWatch {
    fn new(
        files: CertificateFiles,
        slot: Arc<CertificateSlot>,
        provider: &Arc<CryptoProvider>,
    ) -> Self {
        FileWatch {
            files,
            slot,
            provider: Arc::clone(provider),
            // Registered now, before the server accepts anything: a SIGHUP from then on
            // reloads, and never falls through to the default action (exit).
            hangups: Hangups::register(),
        }
    }

    async fn run(mut self, state: AppState, shutdown: CancellationToken) {
        // Blocking file system calls on the runtime: two `stat`s per interval, and two small
        // reads on a change, each microseconds on a local disk.
        let mut seen = Stamp::of(&self.files);
        let period = self.files.reload_interval;
        let mut ticks = interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let cause = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let now = Stamp::of(&self.files);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "the files changed"
                }
                () = self.hangups.recv() => {
                    seen = Stamp::of(&self.files);
                    "SIGHUP"
                }
            };
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    self.slot.replace(key);
                    state.metrics.certificate_load(true);
                    info!(cause, cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                Err(error) => {
                    state.metrics.certificate_load(false);
                    error!(cause, %error, "TLS certificate not reloaded: the previous one stays in use");
                }
            }
        }
    }
}

/// What a file watch compares: each file's modification time and size, if it exists.
#[derive(Debug, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Stamp {
    fn of(files: &CertificateFiles) -> Self {
        Stamp([&files.cert, &files.key].map(|path| {
            let metadata = fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        }))
    }
}

/// SIGHUPs, where the platform has them.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .inspect_err(
                    |error| warn!(%error, "cannot listen for SIGHUP; file changes still reload"),
                )
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// Completes on the next SIGHUP; never, where there are none.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        pending().await
    }
}

/// A connection after its handshake. Closing it sends TLS close_notify (so the client can
/// tell a complete response from a cut one), then closes TCP as `Accepted` does: FIN, and
/// the client's last bytes read and dropped.
pub(crate) struct TlsSocket {
    /// `Some` until dropped. Boxed: rustls's state is over a kilobyte, moved at every step.
    tls: Option<Box<TlsStream<Accepted>>>,
}

impl TlsSocket {
    fn tls(&mut self) -> io::Result<&mut TlsStream<Accepted>> {
        self.tls
            .as_deref_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for TlsSocket {
    fn drop(&mut self) {
        let Some(mut tls) = self.tls.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Then `tls` drops, and with it `Accepted`, which lingers.
            runtime.spawn(async move {
                let _ = timeout(LINGER, tls.shutdown()).await;
            });
        }
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tls()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().tls()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().tls()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls
            .as_deref()
            .is_some_and(TlsStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tls()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tls()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(NOT_TLS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
