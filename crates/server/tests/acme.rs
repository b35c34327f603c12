//! ACME end to end against Debian's pebble: a real CA validates TLS-ALPN-01 on switchboard's
//! own port (pebble-challtestsrv resolves the test domain to 127.0.0.1), switchboard serves
//! the issued certificate over HTTPS and WSS, and a second start with the same cache serves
//! it again with the CA gone. `scripts/test.sh` installs pebble; a missing one fails the test.

// `allow-unwrap-in-tests` does not reach helpers outside test functions (rust-clippy#13981).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/tls_client.rs"]
mod tls_client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{metric, serve_listener, PATIENCE};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_server::{AcmeConfig, Config, TlsConfig};
use tls_client::{TestCa, TlsClient};
use tokio::net::TcpListener;
use tokio::time::{sleep, timeout, Instant};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;

/// The name the certificate is ordered for; only pebble's mock DNS knows it.
const DOMAIN: &str = "acme.switchboard.test";

/// How long an order may take: rustls-acme polls the authorization after 1 s, 2 s, ...
const ORDER_PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_certificate_from_pebble_over_tls_alpn_01_then_from_the_cache() {
    let dir = TempDir::new();
    let cache = dir.0.join("acme-cache");
    // switchboard's port is pebble's `tlsPort`, so it is bound first and handed over as is.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let pebble = Pebble::start(&dir.0, port).await;

    let acme = AcmeConfig {
        domains: vec![DOMAIN.to_owned()],
        cache: cache.clone(),
        emails: vec!["ops@switchboard.test".to_owned()],
        directory: pebble.directory(),
        directory_ca: Some(pebble.ca_file.clone()),
    };
    let config = Config {
        tls: Some(TlsConfig::acme(acme)),
        ..Config::for_tests()
    };
    let server = serve_listener(listener, config.clone());

    // Pebble's root, from its management API, is the only root the client trusts.
    let root = pebble.root().await;
    let client = TlsClient::trusting(vec![root]);
    let deadline = Instant::now() + ORDER_PATIENCE;
    while client.connect(server.addr, DOMAIN).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no certificate for {DOMAIN} in time; pebble's log:\n{}",
            pebble.log()
        );
        sleep(Duration::from_millis(200)).await;
    }
    let health = client.get(server.addr, DOMAIN, "/healthz").await;
    assert_eq!(health.status, 200);
    relay_over_wss(&client, server.addr).await;
    let metrics = client.get(server.addr, DOMAIN, "/metrics").await.body;
    let deployed = r#"switchboard_tls_certificate_loads_total{result="ok"}"#;
    assert_eq!(metric(&metrics, deployed), Some(1.0), "{metrics}");
    server.stopped().await.unwrap();

    // The CA goes away; a new start finds the certificate in the cache and orders nothing.
    drop(pebble);
    let cached = std::fs::read_dir(&cache).unwrap().count();
    assert!(cached >= 2, "an account and a certificate in the cache");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let again = serve_listener(listener, config);
    let deadline = Instant::now() + PATIENCE;
    while client.connect(again.addr, DOMAIN).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the cached certificate was not served"
        );
        sleep(Duration::from_millis(50)).await;
    }
    relay_over_wss(&client, again.addr).await;
    let metrics = client.get(again.addr, DOMAIN, "/metrics").await.body;
    let failed = r#"switchboard_tls_certificate_loads_total{result="error"}"#;
    assert_eq!(
        metric(&metrics, failed),
        None,
        "no order was tried: {metrics}"
    );
}

#[tokio::test]
async fn a_directory_ca_without_a_certificate_stops_the_start() {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("ca.pem"), "not a certificate").unwrap();
    let mut acme = AcmeConfig::new(vec![DOMAIN.to_owned()], dir.0.join("cache"));
    acme.directory_ca = Some(dir.0.join("ca.pem"));
    let config = Config {
        tls: Some(TlsConfig::acme(acme)),
        ..Config::for_tests()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = timeout(
        PATIENCE,
        switchboard_server::serve(listener, config, std::future::pending()),
    )
    .await
    .expect("a start that fails at once");
    let error = started.unwrap_err().to_string();
    assert!(error.contains("ca.pem"), "{error}");
}

async fn relay_over_wss(client: &TlsClient, addr: SocketAddr) {
    let mut u1 = client.websocket(addr, DOMAIN, "/room-relay").await;
    let mut u2 = client.websocket(addr, DOMAIN, "/room-relay").await;
    for (ws, name) in [(&mut u1, "u1"), (&mut u2, "u2")] {
        let join = json!({"type":"join-room","roomId":"acme","sender":name});
        ws.send(Message::text(join.to_string())).await.unwrap();
        let joined = next_text(ws).await;
        assert!(joined.contains("join-success"), "{joined}");
    }
    assert!(next_text(&mut u1).await.contains("user-joined"));
    let chat = r#"{"type":"chat","roomId":"acme","sender":"u1","message":"issued by pebble"}"#;
    u1.send(Message::text(chat)).await.unwrap();
    assert!(next_text(&mut u2).await.contains("issued by pebble"));
}

async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = timeout(PATIENCE, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return text.as_str().to_owned();
        }
    }
}

/// pebble and pebble-challtestsrv on free loopback ports, killed (by pid) when dropped.
struct Pebble {
    pebble: Running,
    _dns: Running,
    listen: SocketAddr,
    management: SocketAddr,
    ca: TestCa,
    ca_file: PathBuf,
}

impl Pebble {
    async fn start(dir: &Path, tls_port: u16) -> Self {
        let [listen, management, dns, dns_management, http] = free_ports().await;
        let dns_server = format!("127.0.0.1:{dns}");
        let dns = Running::spawn(
            dir,
            "challtestsrv",
            Command::new("pebble-challtestsrv").args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &dns_server,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management}"),
            ]),
        );

        // Pebble's own HTTPS listener needs a certificate: Debian ships none (pebble's
        // test certificates are left out of the package), so the test makes one.
        let ca = TestCa::new("pebble listener test CA");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
        let (cert, key, ca_file) = (
            dir.join("pebble-cert.pem"),
            dir.join("pebble-key.pem"),
            dir.join("pebble-ca.pem"),
        );
        leaf.write(&cert, &key);
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let pebble = Running::spawn(
            dir,
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(&config_file)
                .args(["-dnsserver", &dns_server])
                // Validate at once, and never reject a good nonce (pebble does 5 % by
                // default, to test clients' retries; rustls-acme would back off instead).
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0"),
        );
        let pebble = Pebble {
            pebble,
            _dns: dns,
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            ca,
            ca_file,
        };
        // Up when the management API answers, and the mock DNS when its port is open.
        let deadline = Instant::now() + PATIENCE;
        let client = pebble.ca.client();
        while client
            .connect(pebble.management, "127.0.0.1")
            .await
            .is_err()
            || tokio::net::TcpStream::connect(("127.0.0.1", dns_management))
                .await
                .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                pebble.log()
            );
            sleep(Duration::from_millis(50)).await;
        }
        pebble
    }

    fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The root of the certificates pebble issues (a new one at every pebble start).
    async fn root(&self) -> CertificateDer<'static> {
        let response = self
            .ca
            .client()
            .get(self.management, "127.0.0.1", "/roots/0")
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        CertificateDer::from_pem_slice(response.body.as_bytes()).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.pebble.log).unwrap_or_default()
    }
}

/// A child process, its output in a log file; killed by its pid when dropped, panic or not.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(dir: &Path, name: &str, command: &mut Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (apt-get install pebble): {e}"));
        Running { child, log }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports free on loopback now (bound, read, released; pebble binds them a moment later).
async fn free_ports<const N: usize>() -> [u16; N] {
    let mut listeners = Vec::new();
    for _ in 0..N {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-acme-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
