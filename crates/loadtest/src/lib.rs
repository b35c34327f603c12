//! `switchboard bench`: a load generator for signaling servers on this machine. Four
//! signaling scenarios (relay, fanout, idle, storm) speak a dialect as a real client would,
//! with the sender's timestamp in every payload so one-way latency is exact; a fifth, media,
//! streams one video stream through the SFU to many consumers and measures what each
//! forwarded packet costs the server; a sixth, kill, times how long a cluster takes to tell a
//! room that one of its nodes died. A URL may be two nodes of a cluster (`A,B`), whose clients
//! alternate between them, and a server may be several processes (`--server-pid A,B,REDIS`).
//! `compare` runs one scenario against several URLs in interleaved rounds and prints ratios
//! to the first.
//!
//! Every run is bounded in clients and time (the `MAX_*` consts below) and talks only to the
//! loopback URL it is given. The scenarios live in `scenario.rs` (media in
//! `scenario/media.rs`, kill in `scenario/kill.rs`), the wire in `client.rs`, the figures and their presentation in
//! `report.rs`, the server's `/proc` readings in `probe.rs`.
#![warn(missing_docs)]

mod client;
mod probe;
mod progress;
mod report;
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context};

pub use client::{Dialect, Target, TlsTrust, Tokens};
pub use report::{
    plot, Compared, Comparison, Params, Percentiles, ProcessUsage, Report, ServerUsage,
};

/// Client sockets one run may open (idle connections, storm clients, relay pairs × 2).
/// The bench process needs one descriptor each; 20,000 is the hard `ulimit -n` here.
pub const MAX_CLIENTS: u64 = 20_000;
/// Peers in one fanout room: each frame is copied to every other, so the cost is quadratic.
pub const MAX_FANOUT_PEERS: u64 = 500;
/// Messages (relay) or rounds (fanout) in flight per sender.
pub const MAX_WINDOW: u64 = 64;
/// Rounds per peer of a fanout with a fixed count (`--messages`): 100,000 rounds of a room
/// of 50 is 245 M deliveries, minutes at the rates seen here.
pub const MAX_FANOUT_MESSAGES: u64 = 100_000;
/// Payload bytes; switchboard refuses frames over 64 KiB.
pub const MAX_SIZE: usize = 60 * 1024;
/// Longest warm-up, measured window or idle hold.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Connections opened at once.
pub const MAX_CONCURRENCY: usize = 5_000;
/// Rounds of a comparison.
pub const MAX_ROUNDS: u32 = 20;
/// URLs in one comparison.
pub const MAX_URLS: usize = 8;
/// Consumers in one media run. Each is a WebSocket, a UDP socket and a str0m client that
/// the bench's one media thread polls, so past a thousand the bench rather than the server
/// sets the pace (and the bench needs two descriptors per consumer).
pub const MAX_MEDIA_CONSUMERS: u64 = 1_000;
/// Packets per second of the one media stream: forty times a 720p camera's ~250. The server
/// writes each to every consumer, so the load is consumers × rate.
pub const MAX_MEDIA_RATE: u32 = 10_000;
/// Smallest media payload: a VP8 descriptor and header, and room to make warm-up packets one
/// byte shorter than the window's (which is how the media scenario tells them apart).
pub const MIN_MEDIA_SIZE: usize = 16;
/// Largest media payload: browsers keep RTP packets near 1,200 bytes so that headers, SRTP
/// and UDP still fit a 1,500-byte MTU; str0m's receive buffers are 2,048 bytes.
pub const MAX_MEDIA_SIZE: usize = 1_200;
/// Processes one `--server-pid` list may name: two nodes of a split run and their Redis,
/// and one to spare. Each is read twice per run, at both ends of the window.
pub const MAX_SERVER_PIDS: usize = 4;
/// Longest wait for the last leave notice after `bench kill` kills a node: leases are at
/// least 3 s and default to 10 s, so a minute is several leases.
pub const MAX_KILL_WAIT: Duration = Duration::from_secs(60);
/// Pause between the runs of a comparison, so closed sockets leave the server first.
const PAUSE_BETWEEN_RUNS: Duration = Duration::from_secs(2);

/// `switchboard bench`: load a signaling server on this machine and report what it did.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The scenario to run, or `compare`.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// A single run, or a comparison.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// One scenario against one URL.
    #[command(flatten)]
    Run(Scenario),
    /// One scenario against several URLs (`--url` repeated), in interleaved rounds (A B, then
    /// B A, ...), with medians and ratios to the first URL (the floor)
    Compare(CompareArgs),
}

/// The scenarios.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// P pairs, one room each, closed loop A→B→A with W messages in flight per pair: round
    /// trips/s and one-way latency
    Relay(RelayArgs),
    /// One room of K peers, each sending to all (room-wide) and to each (addressed), W
    /// rounds in flight: deliveries/s and latency
    Fanout(FanoutArgs),
    /// N connections held open: the server's memory per connection and idle CPU
    /// (with --server-pid)
    Idle(IdleArgs),
    /// C clients connecting and joining, `--concurrency` at a time: joins/s and
    /// time-to-joined
    Storm(StormArgs),
    /// One publisher streams one VP8 video stream through the SFU to N consumers, each its
    /// own conference user: packets forwarded/s and server CPU per forwarded packet (with
    /// --server-pid)
    #[command(mut_arg("dialect", |arg| arg.default_value("conference")))]
    Media(MediaArgs),
    /// Two nodes of a cluster (`--url SURVIVOR,VICTIM`): a watcher on the first, `--peers`
    /// members of its room on the second; SIGKILL the second (`--victim-pid`) and time
    /// every leave notice the watcher gets, to the last
    #[command(mut_arg("dialect", |arg| arg.default_value("conference")))]
    Kill(KillArgs),
}

/// `bench compare`: the scenario's own flags, plus rounds.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Rounds; each runs every URL once, in the order given, every other round in reverse
    #[arg(long, global = true, default_value_t = 3)]
    pub rounds: u32,
    /// The scenario to compare.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Flags every scenario takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8,
    /// localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i
    /// connects to A when i is even, to B when odd (a relay pair's first member on A, its
    /// second on B)
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// A second node for a single run: `--url A --peer-url B` is `--url A,B`
    #[arg(long = "peer-url", value_name = "URL")]
    pub peer_url: Option<String>,
    /// PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked
    /// against; the certificate must name the URL's host (localhost or the IP)
    #[arg(long = "tls-ca", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// An HS256 key as KID=SECRET, the server's `--auth-secret`: every client then sends its
    /// own token (`?access_token=`), granting its room and name, minted as it connects. A
    /// server without auth ignores it, so `compare` can set an `--auth required` server
    /// beside an open one with the same clients
    #[arg(long = "auth-secret", value_name = "KID=SECRET")]
    pub auth_secret: Option<String>,
    /// The dialect the clients speak (the floor speaks only query-rooms)
    #[arg(long, value_enum, default_value_t = Dialect::QueryRooms)]
    pub dialect: Dialect,
    /// Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
    /// The server's PID, to read its memory and CPU from /proc. PID,PID,... names several
    /// processes of one server (the nodes of a split run and Redis), each reported on its
    /// own and summed. A single run takes them all as one server; under `compare`, give
    /// one --server-pid per URL, in the same order
    #[arg(long = "server-pid", value_name = "PID[,PID...]", value_parser = ServerPids::parse)]
    pub server_pids: Vec<ServerPids>,
    /// Connections opened at once (the measured knob for storm)
    #[arg(long, default_value_t = 500)]
    pub concurrency: usize,
    /// Print one JSON object per run (and per comparison) instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Write an SVG chart of the latency distributions to FILE
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// Flags of the timed scenarios (relay, fanout).
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// Payload bytes per message (at least the ~50-byte timestamp)
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages (relay) or rounds (fanout) in flight per sender
    #[arg(long, default_value_t = 1)]
    pub window: u64,
    /// The measured window
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Load before the measured window starts, not counted
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub warmup: Duration,
}

/// `bench relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// Timing and payload.
    #[command(flatten)]
    pub load: Load,
    /// Pairs, one room each
    #[arg(long, default_value_t = 100)]
    pub pairs: u64,
}

/// `bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// Timing and payload. Each peer's unread backlog can reach 2 × window × (peers - 1)
    /// frames: keep it under the server's outbox (switchboard: 512) or peers get evicted.
    #[command(flatten)]
    pub load: Load,
    /// Peers in the room
    #[arg(long, default_value_t = 50)]
    pub peers: u64,
    /// Room-wide frames, addressed frames (one per other peer), or one run of each
    #[arg(long, value_enum, default_value_t = FanoutMode::Both)]
    pub mode: FanoutMode,
    /// Rounds each peer sends, then stops: the whole run is measured, from the first send to
    /// the last delivery, and --warmup and --duration are ignored (default: timed)
    #[arg(long)]
    pub messages: Option<u64>,
}

/// How fanout peers address their frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FanoutMode {
    /// One frame to the whole room per round.
    RoomWide,
    /// One frame to each other peer per round.
    Addressed,
    /// A room-wide run, then an addressed run.
    Both,
}

/// `bench idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// Connections to hold, each in its own room
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// How long to hold them once all are open
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub hold: Duration,
}

/// `bench storm`.
#[derive(Debug, Clone, clap::Args)]
pub struct StormArgs {
    /// Flags every scenario takes.
    #[command(flatten)]
    pub common: Common,
    /// Clients, joining rooms of two
    #[arg(long, default_value_t = 1000)]
    pub clients: u64,
}

/// `bench media`.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// Flags every scenario takes (`--dialect` must stay `conference`: the SFU's signaling).
    #[command(flatten)]
    pub common: Common,
    /// Consumers of the stream, each its own user with its own WebSocket, receive transport
    /// and UDP socket
    #[arg(long, default_value_t = 50)]
    pub consumers: u64,
    /// Rooms, each with a publisher of its own; consumer `i` watches room `i mod R`. The
    /// server places rooms on its media workers (`--media-workers`), so several rooms load
    /// several workers
    #[arg(long, default_value_t = 1)]
    pub rooms: u64,
    /// Packets per second each publisher writes (250 × 1,100 bytes is a ~2.2 Mbps 720p camera)
    #[arg(long, default_value_t = 250)]
    pub rate: u32,
    /// RTP payload bytes per packet
    #[arg(long, default_value_t = 1100)]
    pub size: usize,
    /// The measured window
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Streaming before the measured window starts, not counted
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub warmup: Duration,
}

/// `bench kill`.
#[derive(Debug, Clone, clap::Args)]
pub struct KillArgs {
    /// Flags every scenario takes: `--url` is the survivor and the victim, `A,B` (or
    /// `--url A --peer-url B`).
    #[command(flatten)]
    pub common: Common,
    /// The victim node's PID, sent SIGKILL once the room is set up; it must be a process
    /// named `switchboard`
    #[arg(long)]
    pub victim_pid: u32,
    /// Members of the watcher's room on the victim node
    #[arg(long, default_value_t = 4)]
    pub peers: u64,
    /// How long to wait for the last leave notice after the kill
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub wait: Duration,
}

/// The processes of one server, from one `--server-pid PID[,PID...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPids(pub Vec<u32>);

impl ServerPids {
    fn parse(text: &str) -> Result<ServerPids, String> {
        let pids = text
            .split(',')
            .map(|pid| pid.trim().parse::<u32>())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| format!("{text:?} is not PID or PID,PID,..."))?;
        if pids.len() > MAX_SERVER_PIDS {
            return Err(format!("at most {MAX_SERVER_PIDS} PIDs per server"));
        }
        Ok(ServerPids(pids))
    }
}

/// Everything one `bench` invocation measured, in the order it ran.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One report per run (a fanout with `--mode both` makes two per URL and round).
    pub reports: Vec<Report>,
    /// One comparison per scenario (`compare` only).
    pub comparisons: Vec<Comparison>,
}

impl Scenario {
    /// The flags every scenario takes.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Relay(args) => &args.common,
            Scenario::Fanout(args) => &args.common,
            Scenario::Idle(args) => &args.common,
            Scenario::Storm(args) => &args.common,
            Scenario::Media(args) => &args.common,
            Scenario::Kill(args) => &args.common,
        }
    }

    /// Refuses out-of-bounds or contradictory flags before anything connects.
    fn check(&self) -> anyhow::Result<()> {
        let common = self.common();
        ensure!(
            (1..=MAX_CONCURRENCY).contains(&common.concurrency),
            "--concurrency must be 1 to {MAX_CONCURRENCY}"
        );
        let load = match self {
            Scenario::Relay(args) => {
                ensure!(
                    (1..=MAX_CLIENTS / 2).contains(&args.pairs),
                    "--pairs must be 1 to {}",
                    MAX_CLIENTS / 2
                );
                Some(&args.load)
            }
            Scenario::Fanout(args) => {
                ensure!(
                    (2..=MAX_FANOUT_PEERS).contains(&args.peers),
                    "--peers must be 2 to {MAX_FANOUT_PEERS}"
                );
                if let Some(messages) = args.messages {
                    ensure!(
                        (1..=MAX_FANOUT_MESSAGES).contains(&messages),
                        "--messages must be 1 to {MAX_FANOUT_MESSAGES}"
                    );
                }
                if args.mode != FanoutMode::Addressed && !common.dialect.has_room_wide() {
                    bail!(
                        "{} has no room-wide relayed payload: use --mode addressed",
                        common.dialect.as_str()
                    );
                }
                Some(&args.load)
            }
            Scenario::Idle(args) => {
                ensure!(
                    (1..=MAX_CLIENTS).contains(&args.connections),
                    "--connections must be 1 to {MAX_CLIENTS}"
                );
                ensure!(
                    args.hold <= MAX_DURATION,
                    "--hold must be at most {MAX_DURATION:?}"
                );
                None
            }
            Scenario::Storm(args) => {
                ensure!(
                    (1..=MAX_CLIENTS).contains(&args.clients),
                    "--clients must be 1 to {MAX_CLIENTS}"
                );
                None
            }
            Scenario::Media(args) => {
                args.check()?;
                None
            }
            Scenario::Kill(args) => {
                ensure!(
                    (1..=MAX_FANOUT_PEERS).contains(&args.peers),
                    "--peers must be 1 to {MAX_FANOUT_PEERS}"
                );
                ensure!(
                    !args.wait.is_zero() && args.wait <= MAX_KILL_WAIT,
                    "--wait must be more than 0 and at most {MAX_KILL_WAIT:?}"
                );
                ensure!(
                    common.plot.is_none(),
                    "kill times a handful of notices: there is nothing to --plot"
                );
                None
            }
        };
        if let Some(load) = load {
            ensure!(load.size <= MAX_SIZE, "--size must be at most {MAX_SIZE}");
            ensure!(
                (1..=MAX_WINDOW).contains(&load.window),
                "--window must be 1 to {MAX_WINDOW}"
            );
            ensure!(
                !load.duration.is_zero() && load.duration <= MAX_DURATION,
                "--duration must be more than 0 and at most {MAX_DURATION:?}"
            );
            ensure!(
                load.warmup <= MAX_DURATION,
                "--warmup must be at most {MAX_DURATION:?}"
            );
        }
        Ok(())
    }
}

impl MediaArgs {
    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.common.dialect == Dialect::Conference,
            "media signals in the conference dialect (the SFU's): drop --dialect"
        );
        ensure!(
            self.common.plot.is_none(),
            "media measures no latency: there is nothing to --plot"
        );
        ensure!(
            (1..=MAX_MEDIA_CONSUMERS).contains(&self.consumers),
            "--consumers must be 1 to {MAX_MEDIA_CONSUMERS}"
        );
        ensure!(
            (1..=self.consumers).contains(&self.rooms),
            "--rooms must be 1 to --consumers (every room needs a consumer)"
        );
        ensure!(
            (1..=MAX_MEDIA_RATE).contains(&self.rate),
            "--rate must be 1 to {MAX_MEDIA_RATE} packets/s"
        );
        ensure!(
            (MIN_MEDIA_SIZE..=MAX_MEDIA_SIZE).contains(&self.size),
            "--size must be {MIN_MEDIA_SIZE} to {MAX_MEDIA_SIZE} bytes"
        );
        ensure!(
            !self.duration.is_zero() && self.duration <= MAX_DURATION,
            "--duration must be more than 0 and at most {MAX_DURATION:?}"
        );
        ensure!(
            self.warmup <= MAX_DURATION,
            "--warmup must be at most {MAX_DURATION:?}"
        );
        Ok(())
    }
}

impl BenchArgs {
    /// The scenario run, alone or compared.
    pub fn scenario(&self) -> &Scenario {
        match &self.command {
            BenchCommand::Run(scenario) => scenario,
            BenchCommand::Compare(compare) => &compare.scenario,
        }
    }
}

/// Runs `args` on a runtime of its own and prints the summaries (or JSON lines) to stdout,
/// progress to stderr, and the chart to `--plot`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the bench runtime")?;
    let outcome = runtime.block_on(execute(&args))?;
    let common = args.scenario().common();
    for report in &outcome.reports {
        if common.json {
            println!("{}", serde_json::to_string(report)?);
        } else {
            println!("{}", report.summary());
        }
    }
    for comparison in &outcome.comparisons {
        if common.json {
            println!("{}", serde_json::to_string(comparison)?);
        } else {
            println!("{}", comparison.summary());
        }
    }
    if let Some(path) = &common.plot {
        // Under `compare`, chart the last round: every URL once, measured side by side.
        let last = outcome.reports.iter().filter_map(|r| r.round).max();
        let charted: Vec<Report> = outcome
            .reports
            .iter()
            .filter(|r| r.round == last && r.histogram.is_some())
            .cloned()
            .collect();
        plot(path, &charted)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `args` and returns what was measured, printing nothing to stdout. Checks every flag
/// and URL (loopback only) before the first connection.
pub async fn execute(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let scenario = args.scenario();
    scenario.check()?;
    let common = scenario.common();
    let trust = common
        .tls_ca
        .as_deref()
        .map(TlsTrust::from_pem_file)
        .transpose()?;
    let tokens = common
        .auth_secret
        .as_deref()
        .map(Tokens::from_arg)
        .transpose()?;
    let mut targets = common
        .urls
        .iter()
        .map(|url| Ok(Target::parse(url, trust.as_ref())?.with_tokens(tokens.clone())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(peer) = &common.peer_url {
        let ([first], BenchCommand::Run(_)) = (&targets[..], &args.command) else {
            bail!("--peer-url goes with one --url in a single run; under compare write A,B");
        };
        ensure!(
            !first.is_split(),
            "--url is already split as A,B: drop --peer-url"
        );
        targets = vec![
            Target::parse(&format!("{},{peer}", first.url()), trust.as_ref())?.with_tokens(tokens),
        ];
    }
    match scenario {
        Scenario::Media(_) => ensure!(
            targets.iter().all(|t| !t.is_split()),
            "media runs on one node: a split --url A,B is for the signaling scenarios"
        ),
        Scenario::Kill(_) => ensure!(
            targets.iter().all(Target::is_split),
            "kill needs two nodes: --url SURVIVOR,VICTIM or --peer-url VICTIM"
        ),
        _ => {}
    }
    let mut outcome = Outcome::default();
    match &args.command {
        BenchCommand::Run(scenario) => {
            ensure!(
                targets.len() == 1,
                "one --url per run; `bench compare` takes several"
            );
            // A single run's server is every process named, however the PIDs were grouped.
            let pids: Vec<u32> = common
                .server_pids
                .iter()
                .flat_map(|pids| pids.0.iter().copied())
                .collect();
            for target in &targets {
                outcome
                    .reports
                    .extend(scenario::run(scenario, target, &pids, None).await?);
            }
        }
        BenchCommand::Compare(compare) => {
            ensure!(
                (2..=MAX_URLS).contains(&targets.len()),
                "compare takes 2 to {MAX_URLS} --url"
            );
            ensure!(
                (1..=MAX_ROUNDS).contains(&compare.rounds),
                "--rounds must be 1 to {MAX_ROUNDS}"
            );
            ensure!(
                common.server_pids.is_empty() || common.server_pids.len() == targets.len(),
                "give one --server-pid per --url, in the same order, or none"
            );
            for round in 1..=compare.rounds {
                // Every other round runs the URLs in reverse (A B, B A, A B, ...): a URL that
                // always ran second would inherit whatever the first left behind (a busier
                // kernel, colder caches, the load generator's own state).
                let mut order: Vec<usize> = (0..targets.len()).collect();
                if round % 2 == 0 {
                    order.reverse();
                }
                for index in order {
                    let target = &targets[index];
                    let pids = common.server_pids.get(index).map_or(&[][..], |p| &p.0[..]);
                    let reports = scenario::run(scenario, target, pids, Some(round)).await?;
                    for report in &reports {
                        eprint!("[{round}/{}] {}", compare.rounds, report.summary());
                    }
                    outcome.reports.extend(reports);
                    tokio::time::sleep(PAUSE_BETWEEN_RUNS).await;
                }
            }
            let mut names: Vec<&'static str> = outcome.reports.iter().map(|r| r.scenario).collect();
            names.dedup();
            names.sort_unstable();
            names.dedup();
            for name in names {
                let runs: Vec<&Report> = outcome
                    .reports
                    .iter()
                    .filter(|r| r.scenario == name)
                    .collect();
                outcome
                    .comparisons
                    .push(Comparison::of(name, compare.rounds, &common.urls, &runs));
            }
        }
    }
    Ok(outcome)
}

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}
