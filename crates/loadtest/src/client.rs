//! One bench client on the wire: where it may connect (loopback only), how it opens a socket
//! from a chosen loopback source address, and the frames it writes and reads in each dialect.
//! It writes frames by hand, as a browser's JavaScript would, and parses only the timestamp
//! it put in the payload; the scenarios decide what to send and when.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use switchboard_auth::{Scope, SigningKey};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An open client socket.
pub(crate) type Ws = WebSocketStream<Stream>;

/// A client's byte stream: plain TCP for `ws://`, TLS over TCP for `wss://`. One match per
/// read or write is all a plain run pays for TLS being possible.
pub(crate) enum Stream {
    Plain(TcpStream),
    // Boxed: a client TLS session is ~1 KiB of state next to a TcpStream's few words.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a `wss://` client trusts: the certificates in one PEM file (`--tls-ca`), and
/// nothing else (no system roots: the server is on this machine, its certificate too).
#[derive(Clone)]
pub struct TlsTrust(TlsConnector);

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTrust")
    }
}

impl TlsTrust {
    /// Trusts every certificate in the PEM file at `path` as a root (a CA, or the server's
    /// own self-signed certificate).
    pub fn from_pem_file(path: &Path) -> anyhow::Result<TlsTrust> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("reading {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: unusable certificate", path.display()))?;
        }
        if roots.is_empty() {
            bail!("{}: no certificate in the file", path.display());
        }
        // The provider named, not the process default: the workspace builds aws-lc-rs only.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsTrust(TlsConnector::from(Arc::new(config))))
    }
}

/// Tokens for `--auth-secret KID=SECRET`: each client gets its own, minted as it connects
/// and granting exactly its room and name (and SFU publish and subscribe), as an
/// application server would hand out per user. It rides in `?access_token=`, as a browser's
/// does.
#[derive(Clone)]
pub struct Tokens(Arc<SigningKey>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens")
    }
}

/// How long a bench token lives: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

impl Tokens {
    /// Parses `KID=SECRET`, the server's `--auth-secret` form.
    pub fn from_arg(arg: &str) -> anyhow::Result<Tokens> {
        let (kid, secret) = arg
            .split_once('=')
            .filter(|(kid, secret)| !kid.is_empty() && !secret.is_empty())
            .context("--auth-secret wants KID=SECRET")?;
        let key = SigningKey::secret(kid, secret.as_bytes())?;
        Ok(Tokens(Arc::new(key)))
    }

    /// A token for `name` in `room`.
    fn mint(&self, room: &str, name: &str) -> anyhow::Result<String> {
        let scope = Scope {
            room: Some(room.to_owned()),
            publish: true,
            subscribe: true,
            ..Scope::default()
        };
        switchboard_auth::mint(&self.0, name, scope, TOKEN_TTL).context("minting a token")
    }
}

/// How long one connect, upgrade and join may take before the client counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server under load: a `ws://` or `wss://` URL whose host is on this machine's
/// loopback, or two such URLs, `A,B`: two nodes of one cluster that the run's clients take
/// turns at.
#[derive(Debug, Clone)]
pub struct Target {
    url: String,
    addr: SocketAddr,
    authority: String,
    base_path: String,
    /// For `wss://`: the trust and the name the certificate must carry.
    tls: Option<(TlsTrust, ServerName<'static>)>,
    /// The second node of a split run: odd-numbered clients connect to it.
    peer: Option<Box<Target>>,
    /// Each client's token, when the run sends them.
    tokens: Option<Tokens>,
}

impl Target {
    /// Parses `url` and refuses anything but `ws://` or `wss://` to 127.0.0.0/8,
    /// `localhost` or `[::1]`: the bench is a load generator, and load goes nowhere but this
    /// machine. `wss://` needs `trust` (`--tls-ca`); the certificate must name the host as
    /// written (`localhost`, or the IP). `A,B` is a run split over two nodes: client `i`
    /// connects to A when `i` is even and to B when it is odd, so the two members of a
    /// relay pair (and of a storm's room of two) are on different nodes.
    pub fn parse(url: &str, trust: Option<&TlsTrust>) -> anyhow::Result<Target> {
        let nodes: Vec<&str> = url.split(',').collect();
        match nodes[..] {
            [one] => Target::parse_node(one, trust),
            [first, second] => Ok(Target {
                url: url.to_owned(),
                peer: Some(Box::new(Target::parse_node(second, trust)?)),
                ..Target::parse_node(first, trust)?
            }),
            _ => bail!("bad url {url:?}: one URL, or two nodes as A,B"),
        }
    }

    fn parse_node(url: &str, trust: Option<&TlsTrust>) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad url {url:?}"))?;
        let (secure, default_port) = match uri.scheme_str() {
            Some("ws") => (false, 80),
            Some("wss") => (true, 443),
            _ => bail!("bad url {url:?}: want ws://HOST:PORT or wss://HOST:PORT"),
        };
        let host = uri
            .host()
            .with_context(|| format!("bad url {url:?}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other.parse::<IpAddr>().map_err(|_| {
                anyhow::anyhow!("refusing {url:?}: the bench only loads loopback addresses (127.0.0.0/8, localhost, ::1), by IP")
            })?,
        };
        if !ip.is_loopback() {
            bail!(
                "refusing {url:?}: the bench only loads loopback addresses (127.0.0.0/8, localhost, ::1)"
            );
        }
        let tls = if secure {
            let trust = trust.with_context(|| {
                format!("{url:?} is wss://: give the CA or certificate to trust with --tls-ca")
            })?;
            let name = match host {
                "localhost" => ServerName::try_from("localhost")?,
                _ => ServerName::IpAddress(ip.into()),
            };
            Some((trust.clone(), name))
        } else {
            None
        };
        let addr = SocketAddr::new(ip, uri.port_u16().unwrap_or(default_port));
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority: addr.to_string(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
            tls,
            peer: None,
            tokens: None,
        })
    }

    /// The same target, with every client (on either node) sending its own token.
    pub fn with_tokens(mut self, tokens: Option<Tokens>) -> Target {
        self.peer = self
            .peer
            .map(|peer| Box::new(peer.with_tokens(tokens.clone())));
        self.tokens = tokens;
        self
    }

    /// Whether the run is split over two nodes.
    pub fn is_split(&self) -> bool {
        self.peer.is_some()
    }

    /// The node client number `index` connects to: the second node of a split run for odd
    /// indices, otherwise this one.
    pub(crate) fn node(&self, index: usize) -> &Target {
        match &self.peer {
            Some(peer) if index % 2 == 1 => peer,
            _ => self,
        }
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The loopback source address for client number `index`, spreading clients over
    /// 127.0.0.1 to 127.0.0.`sources` so no single source runs out of ephemeral ports.
    /// `None` (let the kernel choose) for an IPv6 target.
    pub(crate) fn source(&self, index: usize, sources: u8) -> Option<Ipv4Addr> {
        if !self.addr.is_ipv4() || sources <= 1 {
            return None;
        }
        let host = index % usize::from(sources);
        // `sources` is at most 254 (checked by the CLI), so 1 + host fits in a u8.
        let last = u8::try_from(host + 1).unwrap_or(1);
        Some(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Opens one client: TCP from `source`, the upgrade, and the dialect's join, all within
    /// [`CONNECT_TIMEOUT`].
    pub(crate) async fn open(
        &self,
        dialect: Dialect,
        source: Option<Ipv4Addr>,
        room: &str,
        name: &str,
    ) -> anyhow::Result<Ws> {
        timeout(CONNECT_TIMEOUT, self.open_now(dialect, source, room, name))
            .await
            .with_context(|| format!("no join within {CONNECT_TIMEOUT:?}"))?
    }

    async fn open_now(
        &self,
        dialect: Dialect,
        source: Option<Ipv4Addr>,
        room: &str,
        name: &str,
    ) -> anyhow::Result<Ws> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }?;
        if let Some(source) = source {
            socket
                .bind(SocketAddr::from((source, 0)))
                .with_context(|| format!("binding source address {source}"))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (stream, scheme) = match &self.tls {
            None => (Stream::Plain(stream), "ws"),
            Some((trust, name)) => {
                let tls = trust
                    .0
                    .connect(name.clone(), stream)
                    .await
                    .context("TLS handshake")?;
                (Stream::Tls(Box::new(tls)), "wss")
            }
        };
        let mut url = format!(
            "{scheme}://{}{}{}",
            self.authority,
            self.base_path,
            dialect.path(room, name)
        );
        if let Some(tokens) = &self.tokens {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("access_token=");
            url.push_str(&tokens.mint(room, name)?);
        }
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .context("websocket upgrade")?;
        dialect.join(&mut ws, room, name).await?;
        Ok(ws)
    }
}

/// The dialects the bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// `/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too.
    QueryRooms,
    /// `/conference`: `join-room`, then `webrtc-offer` to a `target`.
    Conference,
    /// `/conference?resume=1`: conference with session resume, so every frame is numbered
    /// and kept for a replay; relay acks every 32 frames, as the JS client does.
    ConferenceResume,
}

impl Dialect {
    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::QueryRooms => "query-rooms",
            Dialect::Conference => "conference",
            Dialect::ConferenceResume => "conference-resume",
        }
    }

    /// Whether the dialect can send one frame to the whole room that comes back as a relayed
    /// payload. Conference's room-wide message is a chat, whose body is text, not a payload.
    pub(crate) fn has_room_wide(self) -> bool {
        self == Dialect::QueryRooms
    }

    fn path(self, room: &str, name: &str) -> String {
        match self {
            Dialect::QueryRooms => format!("/ws?peer_id={name}&room={room}"),
            Dialect::Conference => "/conference".to_owned(),
            Dialect::ConferenceResume => "/conference?resume=1".to_owned(),
        }
    }

    /// query-rooms joins with the URL; conference sends `join-room` and waits for `joined`.
    async fn join(self, ws: &mut Ws, room: &str, name: &str) -> anyhow::Result<()> {
        if self == Dialect::QueryRooms {
            return Ok(());
        }
        let join =
            format!(r#"{{"type":"join-room","data":{{"roomId":"{room}","username":"{name}"}}}}"#);
        ws.send(Message::text(join)).await?;
        while let Some(frame) = ws.next().await {
            if let Message::Text(text) = frame? {
                if text.starts_with(r#"{"type":"joined""#) {
                    return Ok(());
                }
                if is_error(&text) {
                    bail!("join refused: {}", text.as_str());
                }
            }
        }
        bail!("socket closed before joined")
    }

    /// Writes a frame for one peer, `to`, carrying `stamp` in a payload of `size` bytes.
    pub(crate) fn addressed(self, out: &mut String, to: &str, stamp: Stamp, size: usize) {
        out.clear();
        match self {
            Dialect::QueryRooms => {
                out.push_str(r#"{"type":"offer","to":""#);
                out.push_str(to);
                out.push_str(r#"","payload":"#);
                stamp.write(out, size);
                out.push('}');
            }
            Dialect::Conference | Dialect::ConferenceResume => {
                out.push_str(r#"{"type":"webrtc-offer","data":{"target":""#);
                out.push_str(to);
                out.push_str(r#"","payload":"#);
                stamp.write(out, size);
                out.push_str("}}");
            }
        }
    }

    /// Writes a frame for everyone else in the room (query-rooms only; see `has_room_wide`).
    pub(crate) fn room_wide(self, out: &mut String, stamp: Stamp, size: usize) {
        out.clear();
        out.push_str(r#"{"type":"offer","payload":"#);
        stamp.write(out, size);
        out.push('}');
    }
}

/// Acknowledges a resumable socket's frames as the JS client does: every 32 frames.
pub(crate) struct Acks {
    every: Option<u32>,
    unacked: u32,
}

impl Acks {
    pub(crate) fn new(dialect: Dialect) -> Acks {
        let every = (dialect == Dialect::ConferenceResume).then_some(32);
        Acks { every, unacked: 0 }
    }

    /// Counts a received frame; returns the ack to send when one is due.
    pub(crate) fn count(&mut self, text: &str) -> Option<String> {
        let every = self.every?;
        self.unacked += 1;
        if self.unacked < every {
            return None;
        }
        self.unacked = 0;
        let (_, tail) = text.rsplit_once(r#","seq":"#)?;
        let (seq, _) = leading_u64(tail)?;
        Some(format!(r#"{{"type":"ack","data":{{"seq":{seq}}}}}"#))
    }
}

/// What a bench payload carries: when it was sent and, for fanout, which round it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Nanoseconds since [`epoch`] when the frame was written.
    pub(crate) sent_ns: u64,
    /// The sender's round (fanout); 0 elsewhere.
    pub(crate) round: u64,
}

/// Where a payload starts; nothing the servers write before the payload contains it.
const STAMP_PREFIX: &str = r#"{"t":"#;
const ROUND_KEY: &str = r#","r":"#;

impl Stamp {
    /// A stamp for now.
    pub(crate) fn now(round: u64) -> Stamp {
        Stamp {
            sent_ns: now_ns(),
            round,
        }
    }

    /// Writes `{"t":T,"r":R,"p":"xxx…"}`, padded to `size` bytes (or just the stamp if
    /// `size` is smaller).
    fn write(self, out: &mut String, size: usize) {
        let start = out.len();
        out.push_str(STAMP_PREFIX);
        push_u64(out, self.sent_ns);
        out.push_str(ROUND_KEY);
        push_u64(out, self.round);
        out.push_str(r#","p":""#);
        let used = out.len() - start + 2;
        out.extend(std::iter::repeat_n('x', size.saturating_sub(used)));
        out.push_str("\"}");
    }

    /// Finds the stamp in a relayed frame, whatever the dialect's envelope around it.
    pub(crate) fn find(text: &str) -> Option<Stamp> {
        let at = text.find(STAMP_PREFIX)?;
        let rest = text.get(at + STAMP_PREFIX.len()..)?;
        let (sent_ns, rest) = leading_u64(rest)?;
        let rest = rest.strip_prefix(ROUND_KEY)?;
        let (round, _) = leading_u64(rest)?;
        Some(Stamp { sent_ns, round })
    }
}

/// Whether a server frame is an error frame (both dialects start them the same way).
pub(crate) fn is_error(text: &str) -> bool {
    text.starts_with(r#"{"type":"error""#)
}

/// The common clock of this bench process: every stamp and every receive time is measured
/// from here, so one-way latency is one subtraction with no clock skew.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`]. u64 nanoseconds last 584 years.
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn push_u64(out: &mut String, value: u64) {
    use std::fmt::Write;
    let _ = write!(out, "{value}");
}

fn leading_u64(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = text.split_at_checked(digits)?;
    Some((number.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "ws://127.0.0.1:8080",
            "ws://127.9.9.9:1/",
            "ws://localhost:9000",
            "ws://[::1]:9000",
        ] {
            assert!(Target::parse(ok, None).is_ok(), "{ok}");
        }
        for refused in [
            "ws://10.0.0.1:8080",
            "ws://192.168.1.2:80",
            "ws://8.8.8.8:80",
            "ws://example.com:80",
            "ws://[2001:db8::1]:80",
            "http://127.0.0.1:80",
        ] {
            assert!(Target::parse(refused, None).is_err(), "{refused}");
        }
    }

    #[test]
    fn wss_targets_are_loopback_only_and_need_trust() {
        let dir = std::env::temp_dir().join(format!("sb-bench-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(&pem, cert.cert.pem()).unwrap();
        let trust = TlsTrust::from_pem_file(&pem).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for ok in [
            "wss://127.0.0.1:8443",
            "wss://localhost:9000/",
            "wss://[::1]:1",
        ] {
            let target = Target::parse(ok, Some(&trust)).unwrap();
            assert!(target.tls.is_some(), "{ok}");
        }
        assert_eq!(
            Target::parse("wss://127.0.0.1", Some(&trust))
                .unwrap()
                .addr
                .port(),
            443
        );
        assert!(Target::parse("ws://127.0.0.1:1", Some(&trust))
            .unwrap()
            .tls
            .is_none());
        // Without --tls-ca a wss URL is refused before any connection.
        assert!(Target::parse("wss://127.0.0.1:443", None).is_err());
        for refused in [
            "wss://10.0.0.1:443",
            "wss://example.com:443",
            "wss://[2001:db8::1]:443",
            "https://127.0.0.1:443",
        ] {
            assert!(Target::parse(refused, Some(&trust)).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_split_target_alternates_between_its_nodes() {
        let split = Target::parse("ws://127.0.0.1:8081,ws://127.0.0.1:8082/x", None).unwrap();
        assert!(split.is_split());
        assert_eq!(split.url(), "ws://127.0.0.1:8081,ws://127.0.0.1:8082/x");
        assert_eq!(split.node(0).addr.port(), 8081);
        assert_eq!(split.node(1).addr.port(), 8082);
        assert_eq!(split.node(1).base_path, "/x");
        assert_eq!(split.node(2).addr.port(), 8081);
        let one = Target::parse("ws://127.0.0.1:8081", None).unwrap();
        assert!(!one.is_split());
        assert_eq!(one.node(1).addr.port(), 8081);
        for refused in [
            "ws://127.0.0.1:1,ws://10.0.0.1:2",
            "ws://127.0.0.1:1,ws://127.0.0.1:2,ws://127.0.0.1:3",
            "ws://127.0.0.1:1,",
        ] {
            assert!(Target::parse(refused, None).is_err(), "{refused}");
        }
    }

    #[test]
    fn sources_spread_over_loopback() {
        let target = Target::parse("ws://127.0.0.1:8080", None).unwrap();
        assert_eq!(target.source(0, 3), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(target.source(4, 3), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(target.source(5, 1), None);
        let v6 = Target::parse("ws://[::1]:8080", None).unwrap();
        assert_eq!(v6.source(5, 4), None);
    }

    #[test]
    fn stamps_round_trip_at_the_requested_size() {
        let stamp = Stamp {
            sent_ns: 123_456_789,
            round: 7,
        };
        let mut out = String::new();
        Dialect::QueryRooms.addressed(&mut out, "b", stamp, 1024);
        let _: serde_json::Value = serde_json::from_str(&out).unwrap();
        let at = out.find(r#""payload":"#).unwrap() + r#""payload":"#.len();
        let payload = &out[at..out.len() - 1];
        assert_eq!(payload.len(), 1024);
        let relayed = format!(r#"{{"type":"offer","from":"a","to":"b","payload":{payload}}}"#);
        assert_eq!(Stamp::find(&relayed), Some(stamp));
        Dialect::Conference.addressed(&mut out, "b", stamp, 10);
        assert_eq!(Stamp::find(&out), Some(stamp));
        assert_eq!(Stamp::find(r#"{"type":"peer_joined"}"#), None);
    }
}
