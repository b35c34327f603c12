//! TLS on the one port, with certificates from files: HTTPS and WSS with a test CA, reloads
//! (file changes, SIGHUP) that reach new handshakes and leave open sockets alone, bad files
//! that keep the old certificate, and the handshake bounds (timeout, concurrency) that keep
//! silent clients from holding the port. ACME has its own file (acme.rs).

// `allow-unwrap-in-tests` does not reach helpers outside test functions (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/tls_client.rs"]
mod tls_client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{metric, start_with, TestServer, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_server::{CertificateFiles, Certificates, Config, TlsConfig};
use tls_client::{TestCa, TlsClient};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const NAME: &str = "localhost";

/// A TLS server on loopback with a certificate for `localhost` from `ca`, in files of its own.
struct TlsServer {
    server: TestServer,
    ca: TestCa,
    client: TlsClient,
    cert: PathBuf,
    key: PathBuf,
    _dir: TempDir,
}

impl TlsServer {
    async fn start(adjust: impl FnOnce(&mut TlsConfig)) -> Self {
        let dir = TempDir::new();
        let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        let ca = TestCa::new("switchboard test CA");
        ca.leaf(&[NAME]).write(&cert, &key);
        let mut tls = TlsConfig::files(&cert, &key);
        adjust(&mut tls);
        let config = Config {
            tls: Some(tls),
            ..Config::for_tests()
        };
        let server = start_with(config).await;
        TlsServer {
            client: ca.client(),
            server,
            ca,
            cert,
            key,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    async fn websocket(&self, path: &str) -> Ws {
        Ws(self.client.websocket(self.addr(), NAME, path).await)
    }

    async fn metrics(&self) -> String {
        let response = self.client.get(self.addr(), NAME, "/metrics").await;
        assert_eq!(response.status, 200);
        response.body
    }

    /// Waits until `/metrics` shows `series` above `above`.
    async fn metric_above(&self, series: &str, above: f64) -> f64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = metric(&self.metrics().await, series).unwrap_or(0.0);
            if value > above {
                return value;
            }
            assert!(Instant::now() < deadline, "{series} stayed at {value}");
            sleep(Duration::from_millis(50)).await;
        }
    }
}

fn reload_every(interval: Duration) -> impl FnOnce(&mut TlsConfig) {
    move |tls| {
        if let Certificates::Files(CertificateFiles {
            reload_interval, ..
        }) = &mut tls.certificates
        {
            *reload_interval = interval;
        }
    }
}

const LOAD_ERRORS: &str = r#"switchboard_tls_certificate_loads_total{result="error"}"#;
const LOADS_OK: &str = r#"switchboard_tls_certificate_loads_total{result="ok"}"#;

#[tokio::test]
async fn https_and_wss_on_the_one_port() {
    let server = TlsServer::start(|_| {}).await;
    let health = server.client.get(server.addr(), NAME, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);

    let mut u1 = server.websocket("/room-relay").await;
    u1.join("r", "u1").await;
    let mut u2 = server.websocket("/room-relay").await;
    u2.join("r", "u2").await;
    assert_eq!(u1.json().await, json!({"type":"user-joined","userId":"u2"}));
    u1.send(r#"{"type":"chat","roomId":"r","sender":"u1","message":"over tls"}"#)
        .await;
    assert_eq!(
        u2.json().await,
        json!({"type":"chat","sender":"u1","roomId":"r","message":"over tls"})
    );

    // A client that does not trust our CA is refused by its own verifier: the server really
    // presents the certificate for `localhost` from the files.
    let stranger = TestCa::new("another CA").client();
    assert!(stranger.connect(server.addr(), NAME).await.is_err());
}

#[tokio::test]
async fn changed_files_reach_new_handshakes_and_open_sockets_stay() {
    let server = TlsServer::start(reload_every(Duration::from_millis(50))).await;
    let first = server.client.presented(server.addr(), NAME).await;
    let mut u1 = server.websocket("/room-relay").await;
    u1.join("r", "u1").await;

    let renewed = server.ca.leaf(&[NAME]);
    assert_ne!(renewed.der, first);
    renewed.write(&server.cert, &server.key);
    let deadline = Instant::now() + PATIENCE;
    while server.client.presented(server.addr(), NAME).await != renewed.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.metric_above(LOADS_OK, 0.0).await >= 1.0,
        "the reload is counted"
    );

    // The socket opened under the first certificate still relays, both ways.
    let mut u2 = server.websocket("/room-relay").await;
    u2.join("r", "u2").await;
    assert_eq!(u1.json().await, json!({"type":"user-joined","userId":"u2"}));
    u1.send(r#"{"type":"chat","roomId":"r","sender":"u1","message":"still here"}"#)
        .await;
    assert_eq!(u2.json().await["message"], "still here");
    u2.send(r#"{"type":"chat","roomId":"r","sender":"u2","message":"hello"}"#)
        .await;
    assert_eq!(u1.json().await["message"], "hello");

    // A bad certificate file: the error is counted, and the renewed certificate stays.
    let errors = metric(&server.metrics().await, LOAD_ERRORS).unwrap_or(0.0);
    std::fs::write(&server.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let errors = server.metric_above(LOAD_ERRORS, errors).await;
    assert_eq!(
        server.client.presented(server.addr(), NAME).await,
        renewed.der
    );

    // A good certificate with somebody else's key: refused the same way.
    let other = server.ca.leaf(&[NAME]);
    std::fs::write(&server.cert, &other.cert_pem).unwrap();
    server.metric_above(LOAD_ERRORS, errors).await;
    assert_eq!(
        server.client.presented(server.addr(), NAME).await,
        renewed.der
    );
    u1.send(r#"{"type":"chat","roomId":"r","sender":"u1","message":"after all that"}"#)
        .await;
    assert_eq!(u2.json().await["message"], "after all that");
}

#[tokio::test]
async fn sighup_reloads() {
    // Files are not polled within this test: only the signal can bring the new certificate.
    let server = TlsServer::start(reload_every(Duration::from_secs(3600))).await;
    let first = server.client.presented(server.addr(), NAME).await;
    let renewed = server.ca.leaf(&[NAME]);
    renewed.write(&server.cert, &server.key);
    assert_eq!(server.client.presented(server.addr(), NAME).await, first);

    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + PATIENCE;
    while server.client.presented(server.addr(), NAME).await != renewed.der {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let server = TlsServer::start(|tls| tls.handshake_timeout = Duration::from_millis(500)).await;
    // Connected, and never a ClientHello.
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    // Meanwhile everyone else is served.
    let health = server.client.get(server.addr(), NAME, "/healthz").await;
    assert_eq!(health.status, 200);
    let mut ws = server.websocket("/room-relay").await;
    ws.join("r", "u1").await;

    assert_closed(&mut silent).await;
    let series = r#"switchboard_limit_hits_total{limit="tls_handshake_timeout"}"#;
    assert!(server.metric_above(series, 0.0).await >= 1.0);
}

#[tokio::test]
async fn handshakes_past_the_limit_are_refused_at_accept() {
    let server = TlsServer::start(|tls| tls.max_handshakes = 1).await;
    // The one place: taken by a client that says nothing (the timeout is 10 s).
    let silent = TcpStream::connect(server.addr()).await.unwrap();
    // Accepted after it, so refused.
    let mut refused = TcpStream::connect(server.addr()).await.unwrap();
    assert_closed(&mut refused).await;

    // Once the silent client leaves, its place is free again.
    drop(silent);
    let deadline = Instant::now() + PATIENCE;
    let metrics = loop {
        if let Ok(mut tls) = server.client.connect(server.addr(), NAME).await {
            let response = get_on(&mut tls, "/metrics").await;
            break response;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        sleep(Duration::from_millis(20)).await;
    };
    let series = r#"switchboard_limit_hits_total{limit="tls_handshakes"}"#;
    assert!(metric(&metrics, series).unwrap_or(0.0) >= 1.0, "{metrics}");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_to_use_https() {
    let server = TlsServer::start(|_| {}).await;
    let response = server.server.get("/healthz").await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "this port speaks HTTPS\n");
    // A plain WebSocket upgrade fails the same way, and TLS clients are still served.
    let (status, _) = server.server.refused("/room-relay").await;
    assert_eq!(status, 400);
    let health = server.client.get(server.addr(), NAME, "/healthz").await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn bad_files_stop_the_start() {
    let dir = TempDir::new();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        tls: Some(TlsConfig::files(&cert, &key)),
        ..Config::for_tests()
    };
    let missing = timeout(
        PATIENCE,
        switchboard_server::serve(listener, config.clone(), std::future::pending()),
    )
    .await
    .expect("a start that fails at once");
    let error = missing.unwrap_err().to_string();
    assert!(error.contains("cert.pem"), "{error}");

    let ca = TestCa::new("switchboard test CA");
    std::fs::write(&cert, ca.leaf(&[NAME]).cert_pem).unwrap();
    std::fs::write(&key, ca.leaf(&[NAME]).key_pem).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mismatched = timeout(
        PATIENCE,
        switchboard_server::serve(listener, config, std::future::pending()),
    )
    .await
    .expect("a start that fails at once");
    let error = mismatched.unwrap_err().to_string();
    assert!(error.contains("key.pem"), "{error}");
}

/// The server closes `tcp` (end of stream or a reset) without sending anything readable
/// as a response.
async fn assert_closed(tcp: &mut TcpStream) {
    let mut buf = [0; 64];
    match timeout(PATIENCE, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected a close, got {n} bytes"),
        Err(_) => panic!("the connection was not closed"),
    }
}

/// A GET on an open TLS connection; the body.
async fn get_on(tls: &mut TlsStream<TcpStream>, path: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    timeout(PATIENCE, tls.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A room-relay WebSocket over TLS.
struct Ws(WebSocketStream<TlsStream<TcpStream>>);

impl Ws {
    async fn send(&mut self, text: &str) {
        self.0.send(Message::text(text)).await.unwrap();
    }

    async fn json(&mut self) -> Value {
        loop {
            let frame = timeout(PATIENCE, self.0.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("a frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    }

    async fn join(&mut self, room: &str, name: &str) {
        self.send(&json!({"type":"join-room","roomId":room,"sender":name}).to_string())
            .await;
        let joined = self.json().await;
        assert_eq!(joined["type"], "join-success", "{joined}");
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("switchboard-tls-{}", uuid_like()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
