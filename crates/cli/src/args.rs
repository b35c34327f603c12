//! The command line: every setting is a flag with an environment variable, and the flag wins.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use switchboard_server::{
    AcmeConfig, AuthKey, AuthMode, CertificateFiles, Certificates, ClusterConfig, Config,
    DialectKind, IceServer, MediaLimits, NodeId, RedisUrl, TlsConfig, TurnConfig, TurnSecret,
    WebhookConfig, LETS_ENCRYPT_DIRECTORY,
};

/// `0.1.0 (abc1234)`: the package version and the git revision built (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SWITCHBOARD_GIT_REV"),
    ")"
);

/// One WebRTC signaling server for five protocols, on one port.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version = VERSION, about, long_about = None)]
pub(crate) struct Args {
    /// Without a subcommand, switchboard serves.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Read settings from this TOML file, whose keys are these flags' long names
    /// (packaging/switchboard.toml); a flag or an environment variable wins over the file
    #[arg(
        id = "config",
        long = "config",
        env = "SWITCHBOARD_CONFIG",
        global = true
    )]
    pub(crate) config_file: Option<PathBuf>,

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

    /// Bytes of kernel buffer asked for the media UDP socket, receive and send each (the
    /// kernel caps it at net.core.rmem_max/wmem_max; a warning and /metrics say so)
    #[arg(long, env = "SWITCHBOARD_MEDIA_SOCKET_BUFFER", default_value_t = Config::default().media_socket_buffer)]
    media_socket_buffer: usize,

    /// Media worker threads, each forwarding on its own UDP socket: the first on the media
    /// port, the others on ephemeral ports beside it. A room's media lives on one worker
    /// until it outgrows --media-room-spread (default: the number of cores)
    #[arg(long, env = "SWITCHBOARD_MEDIA_WORKERS", value_name = "N", value_parser = media_workers)]
    media_workers: Option<usize>,

    /// A fixed UDP port range for the media workers, FIRST-LAST: worker i binds FIRST+i (for
    /// firewalls and published container ports). It caps the workers at one per port
    /// [default: the first worker on the media port, the others on ephemeral ports]
    #[arg(long, env = "SWITCHBOARD_MEDIA_PORTS", value_name = "FIRST-LAST", value_parser = media_ports)]
    media_ports: Option<(u16, u16)>,

    /// Members of one room its media worker takes before the room spreads over the other
    /// workers (it spreads sooner once it has 400 consumers there), each later member going
    /// to the worker with the fewest of the room's members and producers' packets piped
    /// between them (docs/media.md)
    #[arg(long, env = "SWITCHBOARD_MEDIA_ROOM_SPREAD", value_name = "N", default_value_t = Config::default().media_room_spread, value_parser = room_spread)]
    media_room_spread: usize,

    /// Join a cluster on this Redis: redis://[:PASSWORD@]HOST:PORT[/DB] or
    /// redis+unix:///PATH (docs/scaling.md); without it, one node and no Redis
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    redis: Option<String>,

    /// This node's id in the cluster, 1 to 16 hex digits [default: random at start]
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
    /// Serve HTTPS and WSS with this PEM certificate chain (with --tls-key); reloaded when
    /// the file changes and on SIGHUP
    #[arg(long, env = "SWITCHBOARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert
    #[arg(long, env = "SWITCHBOARD_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes
    #[arg(long, env = "SWITCHBOARD_TLS_RELOAD_INTERVAL", value_parser = duration, default_value = "5s")]
    tls_reload_interval: Duration,

    /// TLS handshakes in progress at once; connections beyond are closed at accept
    #[arg(long, env = "SWITCHBOARD_MAX_TLS_HANDSHAKES", default_value_t = 1024)]
    max_tls_handshakes: usize,

    /// Close a connection whose TLS handshake has not finished this long after accept
    #[arg(long, env = "SWITCHBOARD_TLS_HANDSHAKE_TIMEOUT", value_parser = duration, default_value = "10s")]
    tls_handshake_timeout: Duration,

    /// Get a certificate for this name from an ACME CA, over TLS-ALPN-01 on the listen port
    /// (repeatable; needs --acme-cache; not with --tls-cert)
    #[arg(
        long = "acme-domain",
        env = "SWITCHBOARD_ACME_DOMAINS",
        value_delimiter = ','
    )]
    acme_domains: Vec<String>,

    /// Directory keeping the ACME account key and certificates between runs
    #[arg(long, env = "SWITCHBOARD_ACME_CACHE")]
    acme_cache: Option<PathBuf>,

    /// Contact address given to the ACME CA (repeatable)
    #[arg(
        long = "acme-email",
        env = "SWITCHBOARD_ACME_EMAILS",
        value_delimiter = ','
    )]
    acme_emails: Vec<String>,

    /// The ACME CA's directory URL
    #[arg(long, env = "SWITCHBOARD_ACME_DIRECTORY", default_value = LETS_ENCRYPT_DIRECTORY)]
    acme_directory: String,

    /// Trust these PEM roots (instead of the Web PKI's) for the ACME directory's HTTPS, e.g. a
    /// test CA
    #[arg(long, env = "SWITCHBOARD_ACME_DIRECTORY_CA")]
    acme_directory_ca: Option<PathBuf>,

    /// POST room, peer, producer and node events as signed JSON to this http:// URL
    /// (repeatable; docs/webhooks.md)
    #[arg(long = "webhook", env = "SWITCHBOARD_WEBHOOKS", value_delimiter = ',', value_parser = WebhookConfig::parse_url)]
    webhooks: Vec<String>,

    /// Signs each webhook request (X-Switchboard-Signature, HMAC-SHA256); prefer
    /// --webhook-secret-file, which keeps it out of the process list
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with = "webhook_secret_file"
    )]
    webhook_secret: Option<String>,

    /// File holding the webhook secret (surrounding whitespace is trimmed)
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,

    /// Webhook events kept per receiver while it is slow or down; past it the oldest are
    /// dropped (counted in switchboard_webhook_dropped_total)
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_CAPACITY", default_value_t = WebhookConfig::DEFAULT_CAPACITY)]
    webhook_capacity: usize,

    /// How long one webhook delivery attempt may take before it is retried
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_TIMEOUT", value_parser = duration, default_value = "10s")]
    webhook_timeout: Duration,

    /// What to log, as a tracing filter (`info`, `debug`, `switchboard_server=debug,info`);
    /// RUST_LOG wins when set. Re-read from the config file on SIGHUP (systemctl reload)
    #[arg(long, env = "SWITCHBOARD_LOG_LEVEL", default_value = "info", value_parser = log_filter)]
    pub(crate) log_level: String,

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
    /// Check the configuration (flags, environment, --config file) and print the effective
    /// settings, secrets redacted; exits non-zero on any error
    CheckConfig,
    /// Print an example config file: every setting, commented out with its default
    ExampleConfig,
    /// Print a shell completion script: `switchboard completions bash > /etc/bash_completion.d/switchboard`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as packaging/switchboard.1 holds it
    #[command(hide = true)]
    Man,
    /// Exit 0 if URL answers HTTP 200 within 5 s, else 1: a container health check that needs
    /// no curl (plain http:// only)
    Healthcheck {
        /// What to ask
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
}

/// The command line with the config file's settings merged in, flag > environment > file >
/// default.
pub(crate) struct Loaded {
    /// The settings.
    pub(crate) args: Args,
    /// What clap parsed, for `check-config` to print.
    pub(crate) matches: clap::ArgMatches,
    /// The ids of the settings that came from the file.
    pub(crate) from_file: Vec<String>,
    /// Where in the file each of those settings is, for errors.
    pub(crate) places: Vec<(String, String)>,
}

impl Args {
    /// Parses `argv` (a `clap::Error` for `--help` and bad flags); with `--config`, parses
    /// again with the file's settings put before the command line's. The file's values become
    /// flags, so they meet the same parsers; they are added only for settings that no flag or
    /// environment variable gave, which is the precedence.
    pub(crate) fn load(argv: Vec<OsString>) -> anyhow::Result<Loaded> {
        let command = Args::command();
        let given = command.clone().try_get_matches_from(&argv)?;
        let args = Args::from_arg_matches(&given)?;
        let uses_file = matches!(args.command, None | Some(Command::CheckConfig));
        let Some(path) = args.config_file.clone().filter(|_| uses_file) else {
            return Ok(Loaded {
                args,
                matches: given,
                from_file: Vec::new(),
                places: Vec::new(),
            });
        };
        let file = crate::file::arguments(&path, &command, &given)?;
        let mut merged = argv;
        let rest = merged.split_off(1.min(merged.len()));
        merged.extend(file.flags);
        merged.extend(rest);
        // What is left to fail here is settings in conflict (`--turn-secret` with
        // `--turn-secret-file`): clap's first line, and the file's lines behind them.
        let matches = command.try_get_matches_from(merged).map_err(|error| {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.trim_start_matches("error: ");
            crate::file::locate(
                anyhow::anyhow!("{}: {message}", path.display()),
                &file.places,
            )
        })?;
        Ok(Loaded {
            args: Args::from_arg_matches(&matches)?,
            matches,
            from_file: file.ids,
            places: file.places,
        })
    }
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
        let media_workers = match (self.media_ports, self.media_workers) {
            (Some((first, last)), Some(workers)) if usize::from(last - first) + 1 < workers => {
                bail!(
                    "--media-ports {first}-{last} holds fewer ports than --media-workers {workers}"
                )
            }
            (_, Some(workers)) => workers,
            // One worker per core, at most one per port of the range.
            (Some((first, last)), None) => Config::default()
                .media_workers
                .min(usize::from(last - first) + 1),
            (None, None) => Config::default().media_workers,
        };
        let turn = self.turn()?;
        let tls = self.tls()?;
        let webhooks = self.webhooks()?;
        Ok(Config {
            webhooks,
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
            tls,
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
            media_socket_buffer: self.media_socket_buffer,
            media_workers,
            media_ports: self.media_ports,
            media_room_spread: self.media_room_spread,
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

    fn webhooks(&self) -> anyhow::Result<Option<WebhookConfig>> {
        let secret = match (&self.webhook_secret, &self.webhook_secret_file) {
            (Some(secret), _) => Some(secret.clone().into_bytes()),
            (None, Some(path)) => {
                Some(crate::token::read_secret(path).context("--webhook-secret-file")?)
            }
            (None, None) => None,
        };
        if self.webhooks.is_empty() {
            if secret.is_some() {
                bail!("--webhook-secret needs at least one --webhook");
            }
            return Ok(None);
        }
        if secret.as_ref().is_some_and(Vec::is_empty) {
            bail!("--webhook-secret must not be empty");
        }
        if self.webhook_capacity == 0 || self.webhook_timeout.is_zero() {
            bail!("--webhook-capacity and --webhook-timeout must be more than 0");
        }
        Ok(Some(WebhookConfig {
            urls: self.webhooks.clone(),
            secret,
            capacity: self.webhook_capacity,
            timeout: self.webhook_timeout,
        }))
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

impl Args {
    fn tls(&self) -> anyhow::Result<Option<TlsConfig>> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: self.tls_reload_interval,
            }),
            (None, None) => None,
            (Some(_), None) => bail!("--tls-cert needs --tls-key"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
        };
        let acme = self.acme()?;
        let certificates = match (files, acme) {
            (Some(_), Some(_)) => bail!(
                "--tls-cert/--tls-key and --acme-domain are mutually exclusive: \
                 certificates come from files or from ACME, not both"
            ),
            (Some(files), None) => Certificates::Files(files),
            (None, Some(acme)) => Certificates::Acme(acme),
            (None, None) => return Ok(None),
        };
        if self.max_tls_handshakes == 0 {
            bail!("--max-tls-handshakes must be at least 1");
        }
        if self.tls_handshake_timeout.is_zero() || self.tls_reload_interval.is_zero() {
            bail!("--tls-handshake-timeout and --tls-reload-interval must be more than 0");
        }
        Ok(Some(TlsConfig {
            certificates,
            max_handshakes: self.max_tls_handshakes,
            handshake_timeout: self.tls_handshake_timeout,
        }))
    }

    fn acme(&self) -> anyhow::Result<Option<AcmeConfig>> {
        if self.acme_domains.is_empty() {
            if self.acme_cache.is_some()
                || !self.acme_emails.is_empty()
                || self.acme_directory_ca.is_some()
            {
                bail!("--acme-cache, --acme-email and --acme-directory-ca need --acme-domain");
            }
            return Ok(None);
        }
        let Some(cache) = &self.acme_cache else {
            bail!("--acme-domain needs --acme-cache DIR (where the account and certificates are kept)");
        };
        if let Some(domain) = self.acme_domains.iter().find(|domain| {
            domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '/')
        }) {
            bail!("--acme-domain {domain:?} is not a domain name");
        }
        Ok(Some(AcmeConfig {
            domains: self.acme_domains.clone(),
            cache: cache.clone(),
            emails: self.acme_emails.clone(),
            directory: self.acme_directory.clone(),
            directory_ca: self.acme_directory_ca.clone(),
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

fn log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|error| error.to_string())
}

/// `--media-ports`: `FIRST-LAST`, 1 ≤ FIRST ≤ LAST.
fn media_ports(text: &str) -> Result<(u16, u16), String> {
    let range = text.split_once('-').and_then(|(first, last)| {
        let (first, last) = (
            first.trim().parse::<u16>().ok()?,
            last.trim().parse::<u16>().ok()?,
        );
        (first >= 1 && first <= last).then_some((first, last))
    });
    range.ok_or_else(|| "want a UDP port range FIRST-LAST, e.g. 40000-40015".to_owned())
}

/// `--media-workers`: 1 to 256 threads.
fn media_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count @ 1..=256) => Ok(count),
        _ => Err("want a number of worker threads from 1 to 256".to_owned()),
    }
}

fn room_spread(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count @ 1..) => Ok(count),
        _ => Err("want a number of members, at least 1".to_owned()),
    }
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
    fn media_ports_are_a_range_with_a_port_per_worker() {
        let ranged = config(&["--media-ports", "40000-40002"]);
        assert_eq!(ranged.media_ports, Some((40000, 40002)));
        assert_eq!(
            ranged.media_workers,
            Config::default().media_workers.min(3),
            "one worker per core, at most one per port"
        );
        let pinned = config(&["--media-ports", "40000-40003", "--media-workers", "2"]);
        assert_eq!(
            (pinned.media_workers, pinned.media_ports),
            (2, Some((40000, 40003)))
        );
        let parse = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
                .map_err(|e| e.to_string())
                .and_then(|args| args.config().map_err(|e| e.to_string()))
        };
        let too_few = parse(&["--media-ports", "40000-40000", "--media-workers", "2"]);
        assert!(too_few.unwrap_err().contains("fewer ports"));
        for bad in ["40000", "40002-40000", "0-3", "a-b", "40000-70000"] {
            assert!(parse(&["--media-ports", bad]).is_err(), "{bad}");
        }
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
    fn tls_flags() {
        assert!(config(&[]).tls.is_none());
        let tls = config(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .tls
            .unwrap();
        assert_eq!(tls.max_handshakes, 1024);
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        let Certificates::Files(files) = tls.certificates else {
            panic!("files expected");
        };
        assert_eq!(files.cert, PathBuf::from("c.pem"));
        assert_eq!(files.reload_interval, Duration::from_secs(5));

        let tls = config(&[
            "--acme-domain",
            "a.example",
            "--acme-domain",
            "b.example",
            "--acme-cache",
            "/var/cache/sb",
            "--acme-email",
            "ops@example.org",
        ])
        .tls
        .unwrap();
        let Certificates::Acme(acme) = tls.certificates else {
            panic!("acme expected");
        };
        assert_eq!(acme.domains, ["a.example", "b.example"]);
        assert_eq!(acme.directory, LETS_ENCRYPT_DIRECTORY);
        assert_eq!(acme.emails, ["ops@example.org"]);

        let refused = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
                .unwrap()
                .config()
                .unwrap_err()
                .to_string()
        };
        let both = refused(&[
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--acme-domain",
            "a.example",
            "--acme-cache",
            "d",
        ]);
        assert!(both.contains("mutually exclusive"), "{both}");
        assert!(refused(&["--acme-domain", "a.example"]).contains("--acme-cache"));
        assert!(refused(&["--tls-cert", "c"]).contains("--tls-key"));
        assert!(refused(&["--acme-cache", "d"]).contains("--acme-domain"));
    }

    #[test]
    fn webhook_flags() {
        assert!(config(&[]).webhooks.is_none());
        let webhooks = config(&[
            "--webhook",
            "http://127.0.0.1:9000/a",
            "--webhook",
            "http://hooks.internal/b",
            "--webhook-secret",
            "s3cret",
        ])
        .webhooks
        .unwrap();
        assert_eq!(webhooks.urls.len(), 2);
        assert_eq!(webhooks.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(webhooks.capacity, WebhookConfig::DEFAULT_CAPACITY);
        assert_eq!(webhooks.timeout, WebhookConfig::DEFAULT_TIMEOUT);

        let file = std::env::temp_dir().join(format!("switchboard-hook-{}", std::process::id()));
        std::fs::write(&file, "from-file\n").unwrap();
        let from_file = config(&[
            "--webhook",
            "http://127.0.0.1:9000/a",
            "--webhook-secret-file",
            file.to_str().unwrap(),
        ]);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            from_file.webhooks.unwrap().secret.as_deref(),
            Some(&b"from-file"[..])
        );

        let refused = |args: &[&str]| {
            Args::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
                .map_err(|e| e.to_string())
                .and_then(|args| args.config().map_err(|e| e.to_string()))
                .is_err()
        };
        assert!(
            refused(&["--webhook-secret", "s"]),
            "a secret without a URL"
        );
        assert!(refused(&["--webhook", "https://hooks.example/"]));
        assert!(refused(&["--webhook", "hooks.example"]));
        assert!(refused(&[
            "--webhook",
            "http://h/",
            "--webhook-capacity",
            "0"
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
