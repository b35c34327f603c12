//! The command line: every setting is a flag with an environment variable, and the flag wins.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use switchboard_server::{
    AuthKey, AuthMode, ClusterConfig, Config, DialectKind, IceServer, MediaLimits, NodeId,
    RedisUrl, TurnConfig, TurnSecret,
};

/// One WebRTC signaling server for five protocols, on one port.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
pub(crate) struct Args {
    /// Without a subcommand, switchboard serves.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Address to listen on: HOST:PORT, :PORT or PORT [default: 0.0.0.0:8080, or PORT from env]
    #[arg(long, env = "SIGNALING_ADDR")]
    listen: Option<String>,

    /// Port alone (the seeds' convention); --listen and SIGNALING_ADDR win over it
    #[arg(long, env = "PORT", hide = true)]
    port: Option<u16>,

    /// The dialect `/` speaks to WebSocket clients
    #[arg(long, env = "SWITCHBOARD_ROOT_DIALECT", value_enum, default_value_t = Root::Conference)]
    root_dialect: Root,

    /// Largest frame accepted, in bytes; larger closes the socket with 1009
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = Config::default().max_frame_bytes)]
    max_frame_bytes: usize,

    /// Events queued per socket before its peer is evicted as too slow (close 1008)
    #[arg(long, env = "SWITCHBOARD_OUTBOX_CAPACITY", default_value_t = Config::default().outbox_capacity)]
    outbox_capacity: usize,

    /// Sustained frames per second per connection; faster frames get `rate_limited`
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_RATE", default_value_t = Config::default().max_message_rate)]
    max_message_rate: u32,

    /// Frames a connection may send at once above the sustained rate
    #[arg(long, env = "SWITCHBOARD_MESSAGE_BURST", default_value_t = Config::default().message_burst)]
    message_burst: u32,

    /// Rate-limited frames within one second after which the socket is closed (1008)
    #[arg(long, env = "SWITCHBOARD_RATE_STRIKES", default_value_t = Config::default().rate_strikes)]
    rate_strikes: u32,

    /// Open WebSockets in total; more are refused with HTTP 503
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = Config::default().max_connections)]
    max_connections: usize,

    /// Open TCP connections per client IP, counted from accept (HTTP and WebSocket); more are
    /// answered 429 and closed
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", default_value_t = Config::default().max_connections_per_ip)]
    max_connections_per_ip: usize,

    /// Close a connection whose request headers have not all arrived within this long
    #[arg(long, env = "SWITCHBOARD_HEADER_READ_TIMEOUT", value_parser = duration, default_value = "5s")]
    header_read_timeout: Duration,

    /// WebSocket upgrades per second per client IP; faster ones get HTTP 429
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE", default_value_t = Config::default().handshake_rate)]
    handshake_rate: u32,

    /// Upgrades one client IP may make at once above --handshake-rate
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_BURST", default_value_t = Config::default().handshake_burst)]
    handshake_burst: u32,

    /// HTTP requests per second per client IP on the API, metrics and web app; faster get 429
    #[arg(long, env = "SWITCHBOARD_HTTP_RATE", default_value_t = Config::default().http_rate)]
    http_rate: u32,

    /// HTTP requests one client IP may make at once above --http-rate
    #[arg(long, env = "SWITCHBOARD_HTTP_BURST", default_value_t = Config::default().http_burst)]
    http_burst: u32,

    /// Close a conference or room-relay socket that has not joined a room within this long (1008)
    #[arg(long, env = "SWITCHBOARD_JOIN_TIMEOUT", value_parser = duration, default_value = "30s")]
    join_timeout: Duration,

    /// Serve /api/stats from a snapshot at most this old, built once for every caller
    #[arg(long, env = "SWITCHBOARD_STATS_MAX_AGE", value_parser = duration, default_value = "1s")]
    stats_max_age: Duration,

    /// How often the server pings each socket
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", value_parser = duration, default_value = "30s")]
    ping_interval: Duration,

    /// Close a socket that sent nothing (not even a pong) for this long
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", value_parser = duration, default_value = "75s")]
    idle_timeout: Duration,

    /// Evict a peer whose socket write takes longer than this
    #[arg(long, env = "SWITCHBOARD_WRITE_TIMEOUT", value_parser = duration, default_value = "10s")]
    write_timeout: Duration,

    /// On shutdown, keep /readyz at 503 and refuse new sockets this long before closing the listener
    #[arg(long, env = "SWITCHBOARD_DRAIN_DELAY", value_parser = duration, default_value = "0s")]
    drain_delay: Duration,

    /// On shutdown, how long to wait for sockets to close
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE", value_parser = duration, default_value = "10s")]
    shutdown_grace: Duration,

    /// How long a resumable session (`/conference?resume=1`) whose socket dropped stays in
    /// its room waiting for the client (at most 5 min)
    #[arg(long, env = "SWITCHBOARD_RESUME_WINDOW", value_parser = duration, default_value = "30s")]
    resume_window: Duration,

    /// Frames a resumable session keeps for a replay; past it while parked, the session ends
    #[arg(long, env = "SWITCHBOARD_RESUME_BUFFER", default_value_t = Config::default().resume_buffer_frames)]
    resume_buffer: usize,

    /// Bytes those frames may take, whichever bound comes first
    #[arg(long, env = "SWITCHBOARD_RESUME_BUFFER_BYTES", default_value_t = Config::default().resume_buffer_bytes)]
    resume_buffer_bytes: usize,

    /// Sessions parked at once [default: 10 % of --max-connections]
    #[arg(long, env = "SWITCHBOARD_MAX_PARKED")]
    max_parked: Option<usize>,

    /// Allowed CORS origin for the HTTP API (repeatable); none means any
    #[arg(
        long = "cors-origin",
        env = "SWITCHBOARD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,

    /// Allowed WebSocket Origin (repeatable); none means any page may connect
    #[arg(
        long = "ws-origin",
        env = "SWITCHBOARD_WS_ORIGINS",
        value_delimiter = ','
    )]
    ws_origins: Vec<String>,

    /// STUN/TURN server for clients, as URL or URL|USERNAME|CREDENTIAL (repeatable)
    #[arg(long = "ice-server", env = "SWITCHBOARD_ICE_SERVERS", value_delimiter = ',', value_parser = IceServer::parse)]
    ice_servers: Vec<IceServer>,

    /// Secret shared with the TURN server (coturn's static-auth-secret): every `joined` then
    /// carries a TURN credential minted with it, and GET /turn/credentials mints one
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true, value_parser = TurnSecret::new, conflicts_with = "turn_secret_file")]
    turn_secret: Option<TurnSecret>,

    /// File holding the TURN secret (surrounding whitespace is trimmed); keeps it out of `ps`
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET_FILE")]
    turn_secret_file: Option<PathBuf>,

    /// The TURN server's turn: or turns: URL, handed out with each credential (repeatable)
    #[arg(long = "turn-url", env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',', value_parser = TurnConfig::parse_url)]
    turn_urls: Vec<String>,

    /// How long a minted TURN credential stays valid
    #[arg(long, env = "SWITCHBOARD_TURN_TTL", value_parser = duration, default_value = "1h")]
    turn_ttl: Duration,

    /// Turn the SFU (media over UDP) off; media requests then answer media_disabled
    #[arg(long, env = "SWITCHBOARD_NO_MEDIA")]
    no_media: bool,

    /// UDP address for media [default: the listen address, same port number]
    #[arg(long, env = "SWITCHBOARD_MEDIA_LISTEN", value_parser = parse_listen)]
    media_listen: Option<SocketAddr>,

    /// IP announced to browsers in iceCandidates (set it behind NAT) [default: the media
    /// listen IP, or 127.0.0.1 when that is 0.0.0.0]
    #[arg(long, env = "SWITCHBOARD_MEDIA_ANNOUNCE")]
    media_announce: Option<IpAddr>,

    /// Media transports one user may hold
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_TRANSPORTS_PER_USER", default_value_t = MediaLimits::default().transports_per_user)]
    media_max_transports_per_user: usize,

    /// Producers (published tracks) one user may hold
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_PRODUCERS_PER_USER", default_value_t = MediaLimits::default().producers_per_user)]
    media_max_producers_per_user: usize,

    /// Consumers (received tracks) one user may hold
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_CONSUMERS_PER_USER", default_value_t = MediaLimits::default().consumers_per_user)]
    media_max_consumers_per_user: usize,

    /// Producers one room may hold
    #[arg(long, env = "SWITCHBOARD_MEDIA_MAX_PRODUCERS_PER_ROOM", default_value_t = MediaLimits::default().producers_per_room)]
    media_max_producers_per_room: usize,

    /// Join a cluster on this Redis: redis://[:PASSWORD@]HOST:PORT[/DB] or
    /// redis+unix:///PATH (docs/scaling.md); without it, one node and no Redis
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    redis: Option<String>,

    /// This node's id in the cluster, 16 hex digits [default: random at start]
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    node_id: Option<String>,

    /// How long a silent node is trusted before its peers are declared gone (at least 3s)
    #[arg(long, env = "SWITCHBOARD_CLUSTER_LEASE", value_parser = duration, default_value = "10s")]
    cluster_lease: Duration,

    /// Prefix of every Redis key and channel, so clusters can share a Redis
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "sb")]
    redis_prefix: String,

    /// Relays and frames that may wait for Redis; past it senders get `overloaded`
    #[arg(long, env = "SWITCHBOARD_BUS_CAPACITY", default_value_t = 8192)]
    bus_capacity: usize,

    /// The most members one room may have (across the cluster); more joins get `room_full`
    /// [default: no cap]
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_MEMBERS")]
    max_room_members: Option<usize>,

    /// Whether sockets need an access token (docs/security.md): off, optional (checked when
    /// given), required (also an admin token for /api/stats, /dashboard, /metrics)
    #[arg(long, env = "SWITCHBOARD_AUTH", value_enum, default_value_t = Auth::Off)]
    auth: Auth,

    /// An HS256 key as KID=SECRET (repeatable, for rotation); prefer --auth-secret-file,
    /// which keeps the secret out of the process list
    #[arg(
        long = "auth-secret",
        env = "SWITCHBOARD_AUTH_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    auth_secrets: Vec<String>,

    /// An HS256 key as KID=PATH of a file holding the secret (repeatable)
    #[arg(
        long = "auth-secret-file",
        env = "SWITCHBOARD_AUTH_SECRET_FILES",
        value_delimiter = ','
    )]
    auth_secret_files: Vec<String>,

    /// An EdDSA (Ed25519) or ES256 (P-256) public key as KID=PEM_PATH (repeatable)
    #[arg(
        long = "auth-public-key",
        env = "SWITCHBOARD_AUTH_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    auth_public_keys: Vec<String>,

    /// Log format
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub(crate) log_format: LogFormat,
}

/// What else the binary can do besides serving.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Load a signaling server on this machine and report throughput, latency and memory
    Bench(switchboard_loadtest::BenchArgs),
    Token(crate::token::TokenArgs),
}

/// The dialects `/` can speak.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Root {
    Conference,
    QueryRooms,
    Pairing,
    RoomRelay,
    Broadcast,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Auth {
    Off,
    Optional,
    Required,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Args {
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let listen = match (&self.listen, self.port) {
            (Some(listen), _) => parse_listen(listen)?,
            (None, Some(port)) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            (None, None) => Config::default().listen,
        };
        let root_dialect = match self.root_dialect {
            Root::Conference => DialectKind::Conference,
            Root::QueryRooms => DialectKind::QueryRooms,
            Root::Pairing => DialectKind::Pairing,
            Root::RoomRelay => DialectKind::RoomRelay,
            Root::Broadcast => DialectKind::Broadcast,
        };
        if self.outbox_capacity == 0 {
            bail!("--outbox-capacity must be at least 1");
        }
        if self.ping_interval.is_zero() {
            bail!("--ping-interval must be more than 0");
        }
        if self.header_read_timeout.is_zero() {
            bail!("--header-read-timeout must be more than 0");
        }
        let cluster = self.cluster(max_frame_envelope(self.max_frame_bytes))?;
        if self.resume_window > Duration::from_secs(300) {
            bail!("--resume-window must be at most 5 min");
        }
        if self.resume_buffer == 0 || self.resume_buffer_bytes == 0 {
            bail!("--resume-buffer and --resume-buffer-bytes must be at least 1");
        }
        if self.max_room_members == Some(0) {
            bail!("--max-room-members must be at least 1");
        }
        let turn = self.turn()?;
        Ok(Config {
            turn,
            cluster,
            max_room_members: self.max_room_members,
            resume_window: self.resume_window,
            resume_buffer_frames: self.resume_buffer,
            resume_buffer_bytes: self.resume_buffer_bytes,
            max_parked: self.max_parked.unwrap_or(self.max_connections / 10),
            auth: match self.auth {
                Auth::Off => AuthMode::Off,
                Auth::Optional => AuthMode::Optional,
                Auth::Required => AuthMode::Required,
            },
            auth_keys: self.auth_keys()?,
            listen,
            root_dialect,
            max_frame_bytes: self.max_frame_bytes,
            outbox_capacity: self.outbox_capacity,
            max_message_rate: self.max_message_rate,
            message_burst: self.message_burst,
            rate_strikes: self.rate_strikes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout,
            handshake_rate: self.handshake_rate,
            handshake_burst: self.handshake_burst,
            http_rate: self.http_rate,
            http_burst: self.http_burst,
            join_timeout: self.join_timeout,
            stats_max_age: self.stats_max_age,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            drain_delay: self.drain_delay,
            shutdown_grace: self.shutdown_grace,
            cors_origins: self.cors_origins.clone(),
            ws_origins: self.ws_origins.clone(),
            ice_servers: self.ice_servers.clone(),
            media: !self.no_media,
            media_listen: self.media_listen,
            media_announce: self.media_announce,
            media_limits: MediaLimits {
                transports_per_user: self.media_max_transports_per_user,
                producers_per_user: self.media_max_producers_per_user,
                consumers_per_user: self.media_max_consumers_per_user,
                producers_per_room: self.media_max_producers_per_room,
            },
        })
    }
}

impl Args {
    /// Every token key, each as `KID=...`.
    fn auth_keys(&self) -> anyhow::Result<Vec<AuthKey>> {
        let mut keys = Vec::new();
        for (flag, values) in [
            ("--auth-secret", &self.auth_secrets),
            ("--auth-secret-file", &self.auth_secret_files),
            ("--auth-public-key", &self.auth_public_keys),
        ] {
            for value in values {
                let Some((kid, rest)) = value.split_once('=').filter(|(kid, _)| !kid.is_empty())
                else {
                    bail!("{flag} takes KID=VALUE");
                };
                let path = std::path::Path::new(rest);
                keys.push(match flag {
                    "--auth-secret" => AuthKey::secret(kid, rest),
                    "--auth-secret-file" => AuthKey::secret(
                        kid,
                        crate::token::read_secret(path).with_context(|| flag.to_owned())?,
                    ),
                    _ => AuthKey::public_key_pem(
                        kid,
                        std::fs::read(path)
                            .with_context(|| format!("{flag}: reading {}", path.display()))?,
                    ),
                });
            }
        }
        Ok(keys)
    }

    fn turn(&self) -> anyhow::Result<Option<TurnConfig>> {
        let secret = match (&self.turn_secret, &self.turn_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --turn-secret-file {}", path.display()))?;
                TurnSecret::new(text.trim())
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("--turn-secret-file {}", path.display()))?
            }
            (None, None) if self.turn_urls.is_empty() => return Ok(None),
            (None, None) => bail!("--turn-url needs --turn-secret or --turn-secret-file"),
        };
        if self.turn_urls.is_empty() {
            bail!("--turn-secret needs at least one --turn-url");
        }
        if self.turn_ttl < Duration::from_secs(1) {
            bail!("--turn-ttl must be at least 1s (credentials expire on whole seconds)");
        }
        Ok(Some(TurnConfig {
            secret,
            urls: self.turn_urls.clone(),
            ttl: self.turn_ttl,
        }))
    }

    fn cluster(&self, max_envelope: usize) -> anyhow::Result<Option<ClusterConfig>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        let url = RedisUrl::parse(url).context("--redis")?;
        if self.cluster_lease < Duration::from_secs(3) {
            bail!("--cluster-lease must be at least 3s");
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            bail!("--redis-prefix must be a non-empty word");
        }
        if self.bus_capacity == 0 {
            bail!("--bus-capacity must be at least 1");
        }
        let node = match &self.node_id {
            Some(id) => NodeId::parse(id).context("--node-id must be 1 to 16 hex digits")?,
            None => NodeId(switchboard_server::random_node_id()),
        };
        Ok(Some(ClusterConfig {
            url,
            node,
            lease: self.cluster_lease,
            prefix: self.redis_prefix.clone(),
            capacity: self.bus_capacity,
            max_envelope,
            max_room_members: None,
        }))
    }
}

/// The largest envelope another node may send: a frame at the size limit, and its framing.
fn max_frame_envelope(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_mul(2).saturating_add(4096)
}

/// `HOST:PORT`, `:PORT` (all interfaces, as Go servers write it) or a bare `PORT`.
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in {text:?}"))?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("bad listen address {text:?} (want HOST:PORT, :PORT or PORT)"))
}

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Args::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
            .unwrap()
            .config()
            .unwrap()
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen(":9000").unwrap(),
            "0.0.0.0:9000".parse().unwrap()
        );
        assert_eq!(
            parse_listen("9001").unwrap(),
            "0.0.0.0:9001".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:9002").unwrap(),
            "127.0.0.1:9002".parse().unwrap()
        );
        assert!(parse_listen("localhost:9003").unwrap().ip().is_loopback());
        assert!(parse_listen("no port").is_err());
    }

    #[test]
    fn flags_set_the_config() {
        let config = config(&[
            "--listen",
            "127.0.0.1:1",
            "--idle-timeout",
            "2s",
            "--ws-origin",
            "https://a,https://b",
        ]);
        assert_eq!(config.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(config.idle_timeout, Duration::from_secs(2));
        assert_eq!(config.ws_origins, ["https://a", "https://b"]);
        assert_eq!(config.root_dialect, DialectKind::Conference);
    }

    #[test]
    fn media_flags() {
        let defaults = config(&[]);
        assert!(defaults.media);
        assert_eq!(
            (defaults.media_listen, defaults.media_announce),
            (None, None)
        );
        let config = config(&[
            "--no-media",
            "--media-listen",
            ":9999",
            "--media-announce",
            "203.0.113.7",
            "--media-max-consumers-per-user",
            "3",
        ]);
        assert!(!config.media);
        assert_eq!(config.media_listen, Some("0.0.0.0:9999".parse().unwrap()));
        assert_eq!(config.media_announce, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(config.media_limits.consumers_per_user, 3);
        assert_eq!(config.media_limits.transports_per_user, 4);
    }

    #[test]
    fn hygiene_flags() {
        let defaults = config(&[]);
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(5));
        assert_eq!(defaults.join_timeout, Duration::from_secs(30));
        assert_eq!(defaults.stats_max_age, Duration::from_secs(1));
        let config = config(&[
            "--header-read-timeout",
            "2s",
            "--handshake-rate",
            "7",
            "--handshake-burst",
            "8",
            "--http-rate",
            "9",
            "--http-burst",
            "10",
            "--join-timeout",
            "3s",
            "--stats-max-age",
            "250ms",
        ]);
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!((config.handshake_rate, config.handshake_burst), (7, 8));
        assert_eq!((config.http_rate, config.http_burst), (9, 10));
        assert_eq!(config.join_timeout, Duration::from_secs(3));
        assert_eq!(config.stats_max_age, Duration::from_millis(250));
        let zero = Args::try_parse_from(["switchboard", "--header-read-timeout", "0s"])
            .unwrap()
            .config();
        assert!(zero.is_err());
    }

    #[test]
    fn turn_flags() {
        assert!(config(&[]).turn.is_none());
        let turn = config(&[
            "--turn-secret",
            "s3cret",
            "--turn-url",
            "turn:127.0.0.1:3478?transport=udp",
            "--turn-url",
            "turns:turn.example.com:5349",
            "--turn-ttl",
            "10m",
        ])
        .turn
        .unwrap();
        assert_eq!(turn.ttl, Duration::from_secs(600));
        assert_eq!(turn.urls.len(), 2);
        assert_eq!(
            turn.secret.password("1:a"),
            TurnSecret::new("s3cret").unwrap().password("1:a")
        );
        assert_eq!(TurnConfig::DEFAULT_TTL, Duration::from_secs(3600));
        let default_ttl = config(&["--turn-secret", "s", "--turn-url", "turn:x"]);
        assert_eq!(default_ttl.turn.unwrap().ttl, TurnConfig::DEFAULT_TTL);

        let file = std::env::temp_dir().join(format!("switchboard-turn-{}", std::process::id()));
        std::fs::write(&file, "  s3cret\n").unwrap();
        let from_file = config(&[
            "--turn-secret-file",
            file.to_str().unwrap(),
            "--turn-url",
            "turn:x",
        ]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            from_file.turn.unwrap().secret.password("1:a"),
            TurnSecret::new("s3cret").unwrap().password("1:a"),
            "the file's secret, trimmed"
        );

        let refused = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
                .map_err(|e| e.to_string())
                .and_then(|args| args.config().map_err(|e| e.to_string()))
                .is_err()
        };
        assert!(refused(&["--turn-secret", "s"]), "a secret without a URL");
        assert!(refused(&["--turn-url", "turn:x"]), "a URL without a secret");
        assert!(refused(&["--turn-secret", "s", "--turn-url", "stun:x"]));
        assert!(refused(&["--turn-secret", "", "--turn-url", "turn:x"]));
        assert!(refused(&[
            "--turn-secret",
            "s",
            "--turn-url",
            "turn:x",
            "--turn-ttl",
            "0s"
        ]));
        assert!(refused(&[
            "--turn-secret",
            "s",
            "--turn-secret-file",
            "f",
            "--turn-url",
            "turn:x"
        ]));
    }

    #[test]
    fn the_flag_wins_over_port() {
        assert_eq!(
            config(&["--port", "7000"]).listen,
            "0.0.0.0:7000".parse().unwrap()
        );
        assert_eq!(
            config(&["--port", "7000", "--listen", ":7001"]).listen,
            "0.0.0.0:7001".parse().unwrap()
        );
    }
}
