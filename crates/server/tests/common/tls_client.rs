//! TLS for the tests: a test CA that signs leaf certificates (rcgen), and HTTPS and WSS
//! clients that trust only the roots they are given and check the server's name.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

use super::PATIENCE;

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertificateDer<'static>,
    pub pem: String,
}

/// A leaf certificate and its key, as PEM, and the certificate as the server sends it.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A new key and a certificate for `names` (DNS names or IP addresses).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client that trusts this CA only.
    pub fn client(&self) -> TlsClient {
        TlsClient::trusting(vec![self.cert.clone()])
    }
}

impl Leaf {
    /// Writes the certificate and the key, certificate first (as a renewal would).
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

/// A TLS client with its own roots, speaking HTTP/1.1 (ALPN) as browsers do.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

pub struct HttpsResponse {
    pub status: u16,
    pub body: String,
}

impl TlsClient {
    pub fn trusting(roots: Vec<CertificateDer<'static>>) -> Self {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).unwrap();
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A TLS connection to `addr`, verifying that the server is `name`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let tcp = TcpStream::connect(addr).await?;
        timeout(PATIENCE, self.connector.connect(name, tcp))
            .await
            .expect("handshake in time")
    }

    /// The leaf certificate `addr` presents now.
    pub async fn presented(&self, addr: SocketAddr, name: &str) -> CertificateDer<'static> {
        let tls = self.connect(addr, name).await.expect("handshake");
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    /// GET `path` over HTTPS. Reading to the end succeeds only if the server closes with
    /// TLS close_notify (rustls calls a bare TCP close a truncation).
    pub async fn get(&self, addr: SocketAddr, name: &str, path: &str) -> HttpsResponse {
        let mut tls = self.connect(addr, name).await.expect("handshake");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        timeout(PATIENCE, tls.read_to_end(&mut bytes))
            .await
            .expect("response in time")
            .expect("a response ended by close_notify");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        HttpsResponse {
            status,
            body: body.to_owned(),
        }
    }

    /// A WebSocket over TLS (`wss://name/path`).
    pub async fn websocket(
        &self,
        addr: SocketAddr,
        name: &str,
        path: &str,
    ) -> WebSocketStream<TlsStream<TcpStream>> {
        let tls = self.connect(addr, name).await.expect("handshake");
        let url = format!("wss://{name}:{}{path}", addr.port());
        let (ws, _) = timeout(PATIENCE, tokio_tungstenite::client_async(url, tls))
            .await
            .expect("upgrade in time")
            .expect("upgrade accepted");
        ws
    }
}
