//! Everything the server can be told, with the defaults a fresh `switchboard` runs with.
//! Each limit says why it has its value; the README's configuration table lists them all.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use switchboard_auth::{AuthKey, AuthMode};
use switchboard_core::DialectKind;
pub use switchboard_sfu::MediaLimits;

use crate::turn::TurnConfig;

/// The server's settings. `Config::default()` is what `switchboard` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (HTTP and WebSocket share the port).
    pub listen: SocketAddr,
    /// The dialect that `/` speaks to WebSocket clients.
    pub root_dialect: DialectKind,
    /// Largest accepted frame or message, in bytes. Larger closes the socket with 1009.
    /// 64 KiB holds any SDP a browser makes (a 4-track offer is ~10 KiB) with room to spare.
    pub max_frame_bytes: usize,
    /// Events queued for one socket before its peer counts as too slow and is evicted
    /// (close 1008). 512 is several seconds of a busy mesh room's ICE and chat traffic,
    /// and more than a load test keeps in flight per connection.
    pub outbox_capacity: usize,
    /// Sustained frames per second one connection may send. 10,000 is above anything a load
    /// test drives on one connection (relay ~1,500 msg/s, addressed fanout to 49 peers
    /// ~4,500), and far below a flooding client (hundreds of thousands per second).
    pub max_message_rate: u32,
    /// Frames a connection may send at once above the sustained rate (the bucket size).
    pub message_burst: u32,
    /// Frames refused for rate within one second after which the socket is closed (1008).
    pub rate_strikes: u32,
    /// Open WebSockets in total; more are refused with HTTP 503.
    /// 100,000 is what one 2-core box holds at a few KiB each, with headroom.
    pub max_connections: usize,
    /// Open TCP connections per client IP, counted from accept (HTTP requests, half-sent
    /// requests and WebSockets alike); more are answered 429 and closed at once. 4096 lets a
    /// NAT'd office or a load test over a few loopback addresses through, stops one host
    /// hoarding descriptors.
    pub max_connections_per_ip: usize,
    /// How long a client may take to send a request's headers, from accept or from the end
    /// of the previous response; then the connection is closed. 5 s is ample for any real
    /// client on a slow link and frees a slow-headers attacker's descriptors quickly.
    pub header_read_timeout: Duration,
    /// New WebSocket upgrades per second per client IP (a token bucket); faster ones get
    /// HTTP 429. 1000/s is far above any one host's real reconnects and keeps one address
    /// from spending the server's CPU on handshakes.
    pub handshake_rate: u32,
    /// Upgrades one IP may make at once above the sustained rate (the bucket size). 4096,
    /// the per-IP connection cap: a host may open all it is allowed at once.
    pub handshake_burst: u32,
    /// HTTP requests per second per client IP on the non-WebSocket routes (the API, metrics,
    /// the web app); faster ones get HTTP 429. 100/s covers a browser loading the app, a
    /// dashboard and a scraper many times over.
    pub http_rate: u32,
    /// HTTP requests one IP may make at once above the sustained rate (the bucket size).
    pub http_burst: u32,
    /// A conference or room-relay socket that has not joined a room this long after its
    /// upgrade is closed with 1008. 30 s is ten times what a page needs to ask for a room.
    pub join_timeout: Duration,
    /// How old the `/api/stats` snapshot may be before a request rebuilds it. One build
    /// serves every caller in that time, however many there are.
    pub stats_max_age: Duration,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed as dead.
    pub idle_timeout: Duration,
    /// How long one write to a socket may take before its peer counts as stalled.
    pub write_timeout: Duration,
    /// On SIGINT/SIGTERM, how long `/readyz` reports 503 and new sockets are refused
    /// before the listener closes (lets load balancers notice). 0 by default.
    pub drain_delay: Duration,
    /// How long shutdown waits for sockets to finish after telling them to go away.
    pub shutdown_grace: Duration,
    /// Origins allowed by CORS on the HTTP routes; empty means any (`*`).
    pub cors_origins: Vec<String>,
    /// Origins allowed to open WebSockets; empty means any (as the seeds do).
    pub ws_origins: Vec<String>,
    /// STUN/TURN servers handed to conference clients in `joined` (`iceServers`).
    pub ice_servers: Vec<IceServer>,
    /// TURN REST credentials (`--turn-secret`, `--turn-url`, `--turn-ttl`): with it, every
    /// `joined` carries a freshly minted credential after the `ice_servers`, and
    /// `GET /turn/credentials` mints one on request. `None`: neither.
    pub turn: Option<TurnConfig>,
    /// Whether the SFU (seed 003's media path) runs. On by default.
    pub media: bool,
    /// The media UDP address; by default the listener's address and port number.
    pub media_listen: Option<SocketAddr>,
    /// The IP put in `iceCandidates`; by default the media listen IP, or 127.0.0.1 when
    /// that is a wildcard (with a warning: deployments behind NAT must set it).
    pub media_announce: Option<IpAddr>,
    /// Per-user and per-room caps on transports, producers and consumers.
    pub media_limits: MediaLimits,
    /// Kernel buffer asked for the media UDP socket, receive and send each
    /// (`--media-socket-buffer`).
    pub media_socket_buffer: usize,
    /// Media worker threads, each with its own UDP socket (`--media-workers`); a room's
    /// media lives on one of them.
    pub media_workers: usize,
    /// A fixed UDP port range for the media workers' sockets, `(first, last)`
    /// (`--media-ports`): worker `i` binds `first + i` on the media listen IP. `None`: the
    /// first worker binds the media port, the others ephemeral ports.
    pub media_ports: Option<(u16, u16)>,
    /// Members of one room its first media worker takes before the room spreads over the
    /// others (`--media-room-spread`).
    pub media_room_spread: usize,
    /// Several nodes on one Redis (`--redis`); `None`: a single node, no Redis.
    pub cluster: Option<switchboard_cluster::ClusterConfig>,
    /// The most members one room may have, across the cluster; a join past it gets
    /// `room_full`. `None` (the default): no cap, as the seeds have none; a deployment sets
    /// it to what its clients can handle (a mesh call of more than a dozen rarely works).
    pub max_room_members: Option<usize>,
    /// Whether sockets need a token (`--auth`). Off by default: the seed clients have none.
    pub auth: AuthMode,
    /// The keys tokens are checked with (`--auth-secret`, `--auth-public-key`).
    pub auth_keys: Vec<AuthKey>,
    /// HTTPS and WSS on the listen port (`--tls-cert`/`--tls-key` or `--acme-domain`);
    /// `None`: plain HTTP and WS.
    pub tls: Option<TlsConfig>,
    /// Webhook receivers (`--webhook`) and how events reach them; `None`: no webhooks.
    pub webhooks: Option<crate::WebhookConfig>,
    /// How long a resumable session (`/conference?resume=1`) whose socket dropped stays in
    /// its room waiting for the client to come back; then the room hears it leave. 30 s
    /// covers a network change or a proxy reconnect (spreed's window too), and is short
    /// enough that a peer who is really gone does not linger as a frozen tile.
    pub resume_window: Duration,
    /// Frames a resumable session keeps for a replay: sent and not acknowledged, or queued
    /// while parked. Past it while parked, the session ends. 512 is the outbox's default:
    /// several seconds of a busy room.
    pub resume_buffer_frames: usize,
    /// Bytes those frames may take (the frame bound's twin, whichever comes first). 1 MiB
    /// holds dozens of SDP offers; with `max_parked` it bounds parked memory.
    pub resume_buffer_bytes: usize,
    /// Sessions parked at once; a drop past it ends its session as without resume. 10 % of
    /// `max_connections`: a mass disconnect (a proxy restart) parks many at once.
    pub max_parked: usize,
}

/// TLS on the one port: where certificates come from, and the bounds on handshakes.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate files, or certificates from an ACME CA. One or the other, never both.
    pub certificates: Certificates,
    /// TLS handshakes in progress at once; a connection accepted while this many are under
    /// way is closed at once (and counted). A handshake costs 0.3-0.45 ms of server CPU
    /// (docs/performance.md), so 2 cores compute ~5,000 a second; 1024 in flight at a 100 ms
    /// round trip is ~10,000 a second, so real clients meet the CPU's limit before this one.
    /// It binds when places are held by clients that stall: queueing behind them would only
    /// make new clients wait for the handshake timeout, so they are refused and retry.
    pub max_handshakes: usize,
    /// How long a client may take from the TCP accept to a finished handshake; then the
    /// connection is closed (and counted). 10 s covers a slow mobile link many times over
    /// and frees the slot of a client that never sends its ClientHello.
    pub handshake_timeout: Duration,
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificates {
    /// PEM files, reloaded when they change and on SIGHUP.
    Files(CertificateFiles),
    /// An ACME CA over TLS-ALPN-01 on the listen port.
    Acme(AcmeConfig),
}

/// A certificate chain and its private key in PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are checked; a change reloads them. 5 s picks
    /// up a renewal at once for any human purpose, and costs two `stat` calls.
    pub reload_interval: Duration,
}

/// Certificates from an ACME CA (Let's Encrypt by default), answered over TLS-ALPN-01 on the
/// listen port, which must therefore be reachable on 443 from the CA.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The names the certificate covers (`--acme-domain`, repeatable).
    pub domains: Vec<String>,
    /// Where the account key and the certificate are kept between runs (`--acme-cache`).
    pub cache: PathBuf,
    /// Contact addresses given to the CA (`--acme-email`), without `mailto:`.
    pub emails: Vec<String>,
    /// The CA's directory URL (`--acme-directory`).
    pub directory: String,
    /// PEM roots to trust for the directory's own HTTPS instead of the Web PKI roots
    /// (`--acme-directory-ca`; a test CA such as pebble).
    pub directory_ca: Option<PathBuf>,
}

/// Let's Encrypt's production directory, the default `--acme-directory`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl TlsConfig {
    /// TLS from certificate files, with the default bounds and reload interval.
    pub fn files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig::with(Certificates::Files(CertificateFiles {
            cert: cert.into(),
            key: key.into(),
            reload_interval: Duration::from_secs(5),
        }))
    }

    /// TLS with certificates from an ACME CA, with the default bounds.
    pub fn acme(acme: AcmeConfig) -> Self {
        TlsConfig::with(Certificates::Acme(acme))
    }

    fn with(certificates: Certificates) -> Self {
        TlsConfig {
            certificates,
            max_handshakes: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl AcmeConfig {
    /// Let's Encrypt production for `domains`, cached in `cache`, with no contact address.
    pub fn new(domains: Vec<String>, cache: impl Into<PathBuf>) -> Self {
        AcmeConfig {
            domains,
            cache: cache.into(),
            emails: Vec::new(),
            directory: LETS_ENCRYPT_DIRECTORY.to_owned(),
            directory_ca: None,
        }
    }
}

/// One STUN or TURN server, as a browser's `RTCIceServer` wants it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// Parses `URL` or `URL|USERNAME|CREDENTIAL` (the `--ice-server` syntax).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, '|');
        let url = parts.next().unwrap_or_default().trim();
        let known = ["stun:", "stuns:", "turn:", "turns:"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) || url.len() <= 5 {
            return Err(format!(
                "{url:?} is not a stun:, stuns:, turn: or turns: URL"
            ));
        }
        let username = parts.next().map(str::to_owned);
        let credential = parts.next().map(str::to_owned);
        if url.starts_with("turn") && (username.is_none() || credential.is_none()) {
            return Err(format!(
                "{url:?}: a TURN server needs URL|USERNAME|CREDENTIAL"
            ));
        }
        Ok(IceServer {
            urls: vec![url.to_owned()],
            username,
            credential,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)),
            root_dialect: DialectKind::Conference,
            max_frame_bytes: 64 * 1024,
            outbox_capacity: 512,
            max_message_rate: 10_000,
            message_burst: 10_000,
            rate_strikes: 200,
            max_connections: 100_000,
            max_connections_per_ip: 4096,
            header_read_timeout: Duration::from_secs(5),
            handshake_rate: 1000,
            handshake_burst: 4096,
            http_rate: 100,
            http_burst: 200,
            join_timeout: Duration::from_secs(30),
            stats_max_age: Duration::from_secs(1),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            cors_origins: Vec::new(),
            ws_origins: Vec::new(),
            ice_servers: Vec::new(),
            turn: None,
            media: true,
            media_listen: None,
            media_announce: None,
            media_limits: MediaLimits::default(),
            media_socket_buffer: switchboard_sfu::DEFAULT_SOCKET_BUFFER,
            media_workers: std::thread::available_parallelism().map_or(1, usize::from),
            media_ports: None,
            media_room_spread: switchboard_sfu::DEFAULT_ROOM_SPREAD,
            cluster: None,
            max_room_members: None,
            auth: AuthMode::Off,
            auth_keys: Vec::new(),
            tls: None,
            webhooks: None,
            resume_window: Duration::from_secs(30),
            resume_buffer_frames: 512,
            resume_buffer_bytes: 1024 * 1024,
            max_parked: 10_000,
        }
    }
}

impl Config {
    /// Defaults for tests: loopback, and the same limits as production, except that
    /// `/api/stats` is never served from a snapshot: tests read it as the server's state right
    /// after a change (tests/hygiene.rs sets the age to test the snapshot itself).
    pub fn for_tests() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            stats_max_age: Duration::ZERO,
            ..Config::default()
        }
    }
}
