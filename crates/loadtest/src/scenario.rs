//! The signaling scenarios and the machinery every scenario shares: open every client
//! (bounded concurrency, spread over loopback sources), fix the measured window, let the
//! clients run, drain what is in flight, close, and fill in a [`Report`]. The media scenario,
//! which streams RTP rather than frames, is in `media.rs` below this module, and kill, which
//! ends a node rather than loading it, in `kill.rs`.
//!
//! Accounting rule, which makes "sent = received" checkable: a client bumps `expected` for
//! what it is about to send *before* it bumps `received` for what made it send, so
//! `received == expected` holds only when nothing is in flight. Nobody sends once the
//! measured window has ended, so the drain ends as soon as the last frame lands.

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::client::{self, now_ns, Dialect, Stamp, Target, Ws};
use crate::probe::{self, Probe, ProcessReading, Sample};
use crate::progress::Progress;
use crate::report::{Params, Percentiles, ProcessUsage, Recorder, Report, ServerUsage};
use crate::{Common, FanoutArgs, FanoutMode, IdleArgs, Load, RelayArgs, Scenario, StormArgs};

mod kill;
mod media;

/// How long in-flight frames may take to land after the window ends; what is still
/// missing then counts as lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the drain checks the counters.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How long closing the sockets may take before they are dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle: time after the last connect before the hold starts, so the server settles.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// Fanout: how far ahead of a peer's completed rounds another's round may be before it
/// counts as a protocol error rather than buffered (bounds the per-peer round ring).
const MAX_ROUND_LEAD: u64 = 4 * crate::MAX_WINDOW;
/// A hard bound on the setup of one run, whatever the client count.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Counters shared by every client of one run, and shown by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    phase: Mutex<&'static str>,
    opened: AtomicU64,
    sent: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
    operations: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn error(&self, what: impl Display) {
        self.errors.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn in_flight(&self) -> u64 {
        self.expected
            .load(Relaxed)
            .saturating_sub(self.received.load(Relaxed))
    }

    /// One line for the progress display.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: opened {} · sent {} · received {} · errors {}",
            self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            self.opened.load(Relaxed),
            self.sent.load(Relaxed),
            self.received.load(Relaxed),
            self.errors.load(Relaxed)
        )
    }
}

/// The measured window, in nanoseconds since the bench epoch: warm-up before `start`,
/// nothing sent from `end` on.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn from_now(warmup: Duration, duration: Duration) -> Window {
        let now = now_ns();
        let start = now.saturating_add(nanos(warmup));
        Window {
            start,
            end: start.saturating_add(nanos(duration)),
        }
    }

    fn is_open(&self, now: u64) -> bool {
        now < self.end
    }

    fn is_measured(&self, now: u64) -> bool {
        (self.start..self.end).contains(&now)
    }

    fn instant(ns: u64) -> tokio::time::Instant {
        let at = client::epoch() + Duration::from_nanos(ns);
        tokio::time::Instant::from_std(at)
    }
}

/// What the clients of a timed run (relay, fanout) share.
struct Run {
    counters: Arc<Counters>,
    window: Window,
    latency: Recorder,
    stop: CancellationToken,
    dialect: Dialect,
    size: usize,
    /// Fanout with a fixed count: the rounds each peer sends (`None`: until the window ends).
    rounds: Option<u64>,
}

/// Everything a scenario needs to know about where it runs.
struct Bench<'a> {
    target: &'a Target,
    common: &'a Common,
    probe: Option<Probe>,
    counters: Arc<Counters>,
    round: Option<u32>,
    nonce: String,
    _progress: Progress,
}

/// Runs `scenario` once against `target` (whose processes are `pids`, none to read no
/// `/proc`); fanout with `--mode both` gives two reports.
pub(crate) async fn run(
    scenario: &Scenario,
    target: &Target,
    pids: &[u32],
    round: Option<u32>,
) -> anyhow::Result<Vec<Report>> {
    let modes: Vec<Option<FanoutMode>> = match scenario {
        Scenario::Fanout(args) if args.mode == FanoutMode::Both => {
            vec![Some(FanoutMode::RoomWide), Some(FanoutMode::Addressed)]
        }
        Scenario::Fanout(args) => vec![Some(args.mode)],
        _ => vec![None],
    };
    let mut reports = Vec::new();
    for mode in modes {
        let common = scenario.common();
        let probe = (!pids.is_empty()).then(|| Probe::new(pids)).transpose()?;
        let counters = Arc::new(Counters::default());
        let name = match (scenario, mode) {
            (Scenario::Relay(_), _) => "relay",
            (Scenario::Fanout(_), Some(FanoutMode::Addressed)) => "fanout-addressed",
            (Scenario::Fanout(_), _) => "fanout-room",
            (Scenario::Idle(_), _) => "idle",
            (Scenario::Storm(_), _) => "storm",
            (Scenario::Media(_), _) => "media",
            (Scenario::Kill(_), _) => "kill",
        };
        let bench = Bench {
            target,
            common,
            probe,
            counters: counters.clone(),
            round,
            nonce: nonce(),
            _progress: Progress::start(format!("{name} {}", target.url()), counters),
        };
        let report = match scenario {
            Scenario::Relay(args) => relay(&bench, args).await,
            Scenario::Fanout(args) => {
                let addressed = mode == Some(FanoutMode::Addressed);
                fanout(&bench, args, addressed).await
            }
            Scenario::Idle(args) => idle(&bench, args).await,
            Scenario::Storm(args) => storm(&bench, args).await,
            Scenario::Media(args) => media::media(&bench, args).await,
            Scenario::Kill(args) => kill::kill(&bench, args).await,
        };
        let mut report = report.with_context(|| format!("{name} against {}", target.url()))?;
        for process in &mut report.processes {
            process.cpu_us_per_op =
                (report.rate > 0.0).then(|| process.cpu_cores * 1e6 / report.rate);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Relay: P pairs, closed loop A→B→A, W in flight per pair.
async fn relay(bench: &Bench<'_>, args: &RelayArgs) -> anyhow::Result<Report> {
    let joins: Vec<(String, String)> = (0..args.pairs)
        .flat_map(|pair| {
            let room = format!("relay-{}-{pair}", bench.nonce);
            [(room.clone(), "a".to_owned()), (room, "b".to_owned())]
        })
        .collect();
    let before = bench.probe.and_then(|p| p.sample());
    let sockets = bench.open_all(joins, None).await?;
    let run = bench.run(&args.load);
    let mut clients = JoinSet::new();
    for (index, ws) in sockets.into_iter().enumerate() {
        let initiator = index % 2 == 0;
        let peer = if initiator { "b" } else { "a" };
        let window = if initiator { args.load.window } else { 0 };
        clients.spawn(relay_client(ws, run.clone(), index, peer, window));
    }
    let usage = bench.measure(&run, &mut clients, before).await;
    let mut report = bench.report("relay", Some((&run, &args.load)), usage);
    report.rate_unit = "round_trips/s";
    report.params.pairs = Some(args.pairs);
    report.params.window = Some(args.load.window);
    Ok(report)
}

/// One side of a relay pair. The initiator (window > 0) starts `window` messages and counts
/// a round trip for each that comes back; both sides answer every message while the window
/// is open.
async fn relay_client(mut ws: Ws, run: Arc<Run>, index: usize, peer: &'static str, window: u64) {
    let counters = &run.counters;
    let is_initiator = window > 0;
    let mut out = String::with_capacity(run.size + 96);
    let mut acks = client::Acks::new(run.dialect);
    for _ in 0..window {
        if !run.window.is_open(now_ns()) {
            break;
        }
        counters.expected.fetch_add(1, Relaxed);
        run.dialect
            .addressed(&mut out, peer, Stamp::now(0), run.size);
        if let Err(error) = send(&mut ws, &out, &run).await {
            counters.error(format_args!("send: {error}"));
            return;
        }
    }
    loop {
        let text = match next_text(&mut ws, &run).await {
            Some(text) => text,
            None => break,
        };
        let now = now_ns();
        let Some(stamp) = Stamp::find(&text) else {
            if client::is_error(&text) {
                counters.error(text.as_str());
            }
            continue;
        };
        let reply = run.window.is_open(now);
        if reply {
            counters.expected.fetch_add(1, Relaxed);
        }
        counters.received.fetch_add(1, Relaxed);
        if run.window.is_measured(now) {
            run.latency.record(index, now.saturating_sub(stamp.sent_ns));
            if is_initiator {
                counters.operations.fetch_add(1, Relaxed);
            }
        }
        if let Some(ack) = acks.count(&text) {
            if let Err(error) = send(&mut ws, &ack, &run).await {
                counters.error(format_args!("send: {error}"));
                break;
            }
        }
        if reply {
            run.dialect
                .addressed(&mut out, peer, Stamp::now(0), run.size);
            if let Err(error) = send(&mut ws, &out, &run).await {
                counters.error(format_args!("send: {error}"));
                break;
            }
        }
    }
    close(ws, &run.stop).await;
}

/// Fanout: one room of K peers; each round, every peer sends to every other.
async fn fanout(bench: &Bench<'_>, args: &FanoutArgs, addressed: bool) -> anyhow::Result<Report> {
    let room = format!("fanout-{}", bench.nonce);
    let names: Arc<[String]> = (0..args.peers).map(|i| format!("p{i}")).collect();
    let joins = names
        .iter()
        .map(|name| (room.clone(), name.clone()))
        .collect();
    let before = bench.probe.and_then(|p| p.sample());
    let sockets = bench.open_all(joins, None).await?;
    let (run, from) = match args.messages {
        Some(rounds) => {
            let from = bench.probe.and_then(|p| p.sample());
            (bench.run_counted(&args.load, rounds), from)
        }
        None => (bench.run(&args.load), None),
    };
    let mut clients = JoinSet::new();
    for (index, ws) in sockets.into_iter().enumerate() {
        let peer = FanoutPeer {
            index,
            names: names.clone(),
            addressed,
            window: args.load.window,
        };
        clients.spawn(fanout_client(ws, run.clone(), peer));
    }
    let name = if addressed {
        "fanout-addressed"
    } else {
        "fanout-room"
    };
    let mut report = match args.messages {
        Some(rounds) => {
            // Every peer's every round reaches every other peer once.
            let total = rounds * args.peers * (args.peers - 1);
            let (usage, measured) = bench
                .measure_count(&run, &mut clients, before, from, total)
                .await;
            let mut report = bench.report(name, Some((&run, &args.load)), usage);
            report.measured_s = measured.as_secs_f64();
            report.rate = report.operations as f64 / report.measured_s.max(1e-9);
            report.params.messages = Some(rounds);
            report.params.warmup_s = None;
            report.params.duration_s = None;
            report
        }
        None => {
            let usage = bench.measure(&run, &mut clients, before).await;
            bench.report(name, Some((&run, &args.load)), usage)
        }
    };
    report.rate_unit = "deliveries/s";
    report.params.peers = Some(args.peers);
    report.params.window = Some(args.load.window);
    Ok(report)
}

/// Who one fanout client is.
#[derive(Clone)]
struct FanoutPeer {
    index: usize,
    names: Arc<[String]>,
    addressed: bool,
    window: u64,
}

/// A fanout peer. It sends round `r` once every other peer's round `r - window` has
/// arrived, so no peer runs more than `window` rounds ahead of the slowest and every queue
/// in between stays bounded (a closed loop: the offered load follows the server's pace).
/// Each sender's frames arrive in order, so counting arrivals per round is enough.
///
/// Reading and writing are separate tasks: a round is up to `peers - 1` frames, and a
/// client that stopped reading while it wrote them could stall a server that is itself
/// blocked writing to that client.
async fn fanout_client(ws: Ws, run: Arc<Run>, peer: FanoutPeer) {
    let counters = &run.counters;
    let others = peer.names.len().saturating_sub(1);
    let per_round = u64::try_from(others).unwrap_or(u64::MAX);
    let (sink, mut stream) = ws.split();
    // Rounds below `complete` have arrived from every other peer; `arrived[i]` counts the
    // arrivals of round `complete + i`. The writer may send every round below `allowed`.
    let mut complete: u64 = 0;
    let mut arrived: VecDeque<usize> = VecDeque::new();
    let mut allowed = if run.window.is_open(now_ns()) {
        run.rounds
            .map_or(peer.window, |rounds| peer.window.min(rounds))
    } else {
        0
    };
    counters.expected.fetch_add(allowed * per_round, Relaxed);
    let (allow, allowance) = watch::channel(allowed);
    let writer = tokio::spawn(fanout_writer(sink, run.clone(), peer.clone(), allowance));
    while let Some(text) = next_text(&mut stream, &run).await {
        let now = now_ns();
        let Some(stamp) = Stamp::find(&text) else {
            if client::is_error(&text) {
                counters.error(text.as_str());
            }
            continue;
        };
        let lead = stamp
            .round
            .checked_sub(complete)
            .filter(|&lead| lead < MAX_ROUND_LEAD);
        let Some(slot) = lead.and_then(|lead| usize::try_from(lead).ok()) else {
            counters.error(format_args!("round {} out of order", stamp.round));
            continue;
        };
        if arrived.len() <= slot {
            arrived.resize(slot + 1, 0);
        }
        if let Some(count) = arrived.get_mut(slot) {
            *count += 1;
        }
        while arrived.front().is_some_and(|&count| count >= others) {
            arrived.pop_front();
            complete += 1;
        }
        let next = complete + peer.window;
        let next = run.rounds.map_or(next, |rounds| next.min(rounds));
        if run.window.is_open(now) && next > allowed {
            counters
                .expected
                .fetch_add((next - allowed) * per_round, Relaxed);
            allowed = next;
            allow.send_replace(allowed);
        }
        counters.received.fetch_add(1, Relaxed);
        if run.window.is_measured(now) {
            run.latency
                .record(peer.index, now.saturating_sub(stamp.sent_ns));
            counters.operations.fetch_add(1, Relaxed);
        }
    }
    drop(allow); // the writer ends once it has sent what was allowed
    if let Ok(sink) = writer.await {
        if let Ok(ws) = sink.reunite(stream) {
            close(ws, &run.stop).await;
        }
    }
}

/// Sends every round the reader allows, until the run stops or the reader is gone.
async fn fanout_writer(
    mut sink: SplitSink<Ws, Message>,
    run: Arc<Run>,
    peer: FanoutPeer,
    mut allowance: watch::Receiver<u64>,
) -> SplitSink<Ws, Message> {
    let mut out = String::with_capacity(run.size + 96);
    let mut next_round = 0;
    loop {
        let allowed = *allowance.borrow_and_update();
        while next_round < allowed {
            if let Err(error) = send_round(&mut sink, &mut out, &run, &peer, next_round).await {
                run.counters.error(format_args!("send: {error}"));
                return sink;
            }
            next_round += 1;
        }
        tokio::select! {
            biased;
            _ = run.stop.cancelled() => break,
            changed = allowance.changed() => if changed.is_err() { break },
        }
    }
    sink
}

/// Sends one fanout round: one room-wide frame, or one frame to each other peer.
async fn send_round(
    sink: &mut SplitSink<Ws, Message>,
    out: &mut String,
    run: &Run,
    peer: &FanoutPeer,
    round: u64,
) -> anyhow::Result<()> {
    let receivers = peer
        .names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != peer.index);
    if peer.addressed {
        for (_, name) in receivers {
            run.dialect
                .addressed(out, name, Stamp::now(round), run.size);
            sink.feed(Message::text(out.as_str())).await?;
            run.counters.sent.fetch_add(1, Relaxed);
        }
    } else {
        run.dialect.room_wide(out, Stamp::now(round), run.size);
        sink.feed(Message::text(out.as_str())).await?;
        run.counters.sent.fetch_add(1, Relaxed);
    }
    sink.flush().await?;
    Ok(())
}

/// Idle: N connections, each in its own room, held open; the server's memory and CPU.
async fn idle(bench: &Bench<'_>, args: &IdleArgs) -> anyhow::Result<Report> {
    let joins = (0..args.connections)
        .map(|i| (format!("idle-{}-{i}", bench.nonce), "p".to_owned()))
        .collect();
    let before = bench.probe.and_then(|p| p.sample());
    let sockets = bench.open_all_lenient(joins, None).await?;
    let stop = CancellationToken::new();
    let mut holders = JoinSet::new();
    for ws in sockets.into_iter().flatten() {
        holders.spawn(hold(ws, bench.counters.clone(), stop.clone()));
    }
    bench.counters.set_phase("holding");
    sleep(IDLE_SETTLE).await;
    let held_from = bench.probe.and_then(|p| p.sample());
    sleep(args.hold).await;
    let held_to = bench.probe.and_then(|p| p.sample());
    bench.counters.set_phase("closing");
    stop.cancel();
    join_all(&mut holders).await;
    let usage = usage(
        before,
        held_from,
        held_to,
        bench.counters.opened.load(Relaxed),
    );
    let mut report = bench.report("idle", None, usage);
    report.params.clients = Some(args.connections);
    report.params.duration_s = Some(args.hold.as_secs_f64());
    report.measured_s = args.hold.as_secs_f64();
    Ok(report)
}

/// Keeps one idle socket open, reading so that pings are answered, until `stop`.
async fn hold(mut ws: Ws, counters: Arc<Counters>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    counters.error("server closed an idle socket");
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
}

/// Storm: C clients connecting and joining rooms of two, `--concurrency` at a time.
async fn storm(bench: &Bench<'_>, args: &StormArgs) -> anyhow::Result<Report> {
    let joins = (0..args.clients)
        .map(|i| (format!("storm-{}-{}", bench.nonce, i / 2), format!("p{i}")))
        .collect();
    let latency = Recorder::new();
    let overflows_before = probe::listen_overflows();
    let before = bench.probe.and_then(|p| p.sample());
    let started = Instant::now();
    let sockets = bench.open_all_lenient(joins, Some(&latency)).await?;
    let elapsed = started.elapsed();
    let after = bench.probe.and_then(|p| p.sample());
    let overflows = overflows_before
        .zip(probe::listen_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    bench.counters.set_phase("closing");
    let stop = CancellationToken::new();
    let mut closers = JoinSet::new();
    for ws in sockets.into_iter().flatten() {
        let stop = stop.clone();
        closers.spawn(async move { close(ws, &stop).await });
    }
    stop.cancel();
    join_all(&mut closers).await;
    let usage = usage(before, before, after, bench.counters.opened.load(Relaxed));
    let mut report = bench.report("storm", None, usage);
    let joins = bench.counters.opened.load(Relaxed);
    let histogram = latency.merged();
    report.operations = joins;
    report.measured_s = elapsed.as_secs_f64();
    report.rate = joins as f64 / elapsed.as_secs_f64().max(1e-9);
    report.rate_unit = "joins/s";
    report.latency_us = Percentiles::of(&histogram);
    report.histogram = Some(histogram);
    report.listen_overflows = overflows;
    report.params.clients = Some(args.clients);
    Ok(report)
}

impl Bench<'_> {
    /// Opens every client; fails the run if any fails (a relay missing a peer is no relay).
    async fn open_all(
        &self,
        joins: Vec<(String, String)>,
        latency: Option<&Recorder>,
    ) -> anyhow::Result<Vec<Ws>> {
        let total = joins.len();
        let sockets = self.open_all_lenient(joins, latency).await?;
        let opened: Vec<Ws> = sockets.into_iter().flatten().collect();
        if opened.len() < total {
            bail!(
                "{} of {total} clients could not connect and join; first error: {}",
                total - opened.len(),
                self.counters.first_error().unwrap_or_default()
            );
        }
        Ok(opened)
    }

    /// Opens every client, `--concurrency` at a time, client `i` from source address
    /// `i % --sources`; a failure is counted and leaves `None` in its place. With `latency`,
    /// records each client's time from starting to connect to being joined.
    async fn open_all_lenient(
        &self,
        joins: Vec<(String, String)>,
        latency: Option<&Recorder>,
    ) -> anyhow::Result<Vec<Option<Ws>>> {
        self.counters.set_phase("connecting");
        let total = joins.len();
        let gate = Arc::new(Semaphore::new(self.common.concurrency));
        let mut tasks = JoinSet::new();
        let mut sockets: Vec<Option<Ws>> = (0..total).map(|_| None).collect();
        let mut times: Vec<(usize, u64)> = Vec::new();
        let setup = async {
            for (index, (room, name)) in joins.into_iter().enumerate() {
                // The permit is taken before spawning, so at most `concurrency` tasks exist.
                let permit = gate.clone().acquire_owned().await?;
                let target = self.target.node(index).clone();
                let source = target.source(index, self.common.sources);
                let dialect = self.common.dialect;
                tasks.spawn(async move {
                    let started = Instant::now();
                    let opened = target.open(dialect, source, &room, &name).await;
                    drop(permit);
                    (index, opened, started.elapsed())
                });
                while let Some(done) = tasks.try_join_next() {
                    self.collect(done, &mut sockets, &mut times);
                }
            }
            while let Some(done) = tasks.join_next().await {
                self.collect(done, &mut sockets, &mut times);
            }
            anyhow::Ok(())
        };
        timeout(SETUP_TIMEOUT, setup)
            .await
            .with_context(|| format!("opening {total} clients took over {SETUP_TIMEOUT:?}"))??;
        if let Some(latency) = latency {
            for (index, nanos) in times {
                latency.record(index, nanos);
            }
        }
        Ok(sockets)
    }

    fn collect(
        &self,
        done: Result<(usize, anyhow::Result<Ws>, Duration), tokio::task::JoinError>,
        sockets: &mut [Option<Ws>],
        times: &mut Vec<(usize, u64)>,
    ) {
        match done {
            Ok((index, Ok(ws), took)) => {
                self.counters.opened.fetch_add(1, Relaxed);
                times.push((index, nanos(took)));
                if let Some(slot) = sockets.get_mut(index) {
                    *slot = Some(ws);
                }
            }
            Ok((_, Err(error), _)) => self.counters.error(format_args!("{error:#}")),
            Err(error) => self.counters.error(format_args!("client task: {error}")),
        }
    }

    /// The shared state of a timed run whose warm-up starts now.
    fn run(&self, load: &Load) -> Arc<Run> {
        self.counters.set_phase("warming up");
        Arc::new(Run {
            counters: self.counters.clone(),
            window: Window::from_now(load.warmup, load.duration),
            latency: Recorder::new(),
            stop: CancellationToken::new(),
            dialect: self.common.dialect,
            size: load.size,
            rounds: None,
        })
    }

    /// A run of a fixed count of rounds per sender: open from now until every round is
    /// sent, all of it measured (no warm-up; `measure_count` ends it).
    fn run_counted(&self, load: &Load, rounds: u64) -> Arc<Run> {
        self.counters.set_phase("measuring");
        let start = now_ns();
        Arc::new(Run {
            counters: self.counters.clone(),
            window: Window {
                start,
                end: u64::MAX,
            },
            latency: Recorder::new(),
            stop: CancellationToken::new(),
            dialect: self.common.dialect,
            size: load.size,
            rounds: Some(rounds),
        })
    }

    /// Waits until every delivery of a counted run has arrived (or none has for the drain
    /// timeout: the rest count as lost), sampling the server at the start (`from`, taken
    /// before the first send) and once the last delivery is in; then stops and closes every
    /// client. Returns the usage and the time measured.
    async fn measure_count(
        &self,
        run: &Run,
        clients: &mut JoinSet<()>,
        before: Option<Sample>,
        from: Option<Sample>,
        total: u64,
    ) -> (Option<Usage>, Duration) {
        let started = Instant::now();
        let mut progress = (0, started);
        loop {
            let received = self.counters.received.load(Relaxed);
            if received >= total {
                break;
            }
            if received > progress.0 {
                progress = (received, Instant::now());
            } else if progress.1.elapsed() >= DRAIN_TIMEOUT {
                let lost = total - received;
                self.counters
                    .error(format_args!("{lost} deliveries never arrived"));
                self.counters.errors.fetch_add(lost - 1, Relaxed);
                break;
            }
            sleep(DRAIN_POLL).await;
        }
        let measured = started.elapsed();
        let to = self.probe.and_then(|p| p.sample());
        self.counters.set_phase("closing");
        run.stop.cancel();
        join_all(clients).await;
        let usage = usage(before, from, to, self.counters.opened.load(Relaxed));
        (usage, measured)
    }

    /// Waits out warm-up and window (sampling the server at both ends), drains what is in
    /// flight, then stops and closes every client.
    async fn measure(
        &self,
        run: &Run,
        clients: &mut JoinSet<()>,
        before: Option<Sample>,
    ) -> Option<Usage> {
        sleep_until(Window::instant(run.window.start)).await;
        self.counters.set_phase("measuring");
        let from = self.probe.and_then(|p| p.sample());
        sleep_until(Window::instant(run.window.end)).await;
        let to = self.probe.and_then(|p| p.sample());
        self.counters.set_phase("draining");
        let drained = timeout(DRAIN_TIMEOUT, async {
            while self.counters.in_flight() > 0 {
                sleep(DRAIN_POLL).await;
            }
        })
        .await;
        let lost = self.counters.in_flight();
        if drained.is_err() && lost > 0 {
            // Every lost delivery is an error; the message says how many at once.
            self.counters
                .error(format_args!("{lost} deliveries never arrived"));
            self.counters.errors.fetch_add(lost - 1, Relaxed);
        }
        self.counters.set_phase("closing");
        run.stop.cancel();
        join_all(clients).await;
        usage(before, from, to, self.counters.opened.load(Relaxed))
    }

    /// The report fields every scenario fills the same way.
    fn report(
        &self,
        scenario: &'static str,
        timed: Option<(&Run, &Load)>,
        usage: Option<Usage>,
    ) -> Report {
        let counters = &self.counters;
        let run = timed.map(|(run, _)| run);
        let load = timed.map(|(_, load)| load);
        let histogram = run.map(|run| run.latency.merged());
        let measured_s = run.map_or(0.0, |run| {
            Duration::from_nanos(run.window.end - run.window.start).as_secs_f64()
        });
        let operations = counters.operations.load(Relaxed);
        let (server, processes) = match usage {
            Some(usage) => (Some(usage.server), usage.processes),
            None => (None, Vec::new()),
        };
        Report {
            kind: "run",
            scenario,
            url: self.target.url().to_owned(),
            dialect: self.common.dialect.as_str(),
            round: self.round,
            params: Params {
                size: load.map(|load| load.size as u64),
                warmup_s: load.map(|load| load.warmup.as_secs_f64()),
                duration_s: load.map(|load| load.duration.as_secs_f64()),
                concurrency: self.common.concurrency as u64,
                sources: u64::from(self.common.sources),
                ..Params::default()
            },
            connections: counters.opened.load(Relaxed),
            sent: counters.sent.load(Relaxed),
            expected: counters.expected.load(Relaxed),
            received: counters.received.load(Relaxed),
            errors: counters.errors.load(Relaxed),
            first_error: counters.first_error(),
            measured_s,
            operations,
            rate: if measured_s > 0.0 {
                operations as f64 / measured_s
            } else {
                0.0
            },
            rate_unit: "none",
            latency_us: histogram.as_ref().and_then(Percentiles::of),
            server,
            processes,
            listen_overflows: None,
            cpu_us_per_packet: None,
            consumers_per_core: None,
            client_busy: None,
            media_workers: Vec::new(),
            histogram,
        }
    }
}

/// Sends one text frame and counts it.
async fn send(ws: &mut Ws, text: &str, run: &Run) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await?;
    run.counters.sent.fetch_add(1, Relaxed);
    Ok(())
}

/// The next text frame, or `None` when the run stops or the socket ends (an error unless
/// the run was stopping).
async fn next_text<S>(ws: &mut S, run: &Run) -> Option<Utf8Bytes>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let frame = tokio::select! {
            biased;
            _ = run.stop.cancelled() => return None,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => return Some(text),
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                run.counters.error("the server closed a client's socket");
                return None;
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for `stop`, then closes the socket politely (bounded).
async fn close(mut ws: Ws, stop: &CancellationToken) {
    stop.cancelled().await;
    let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
}

async fn join_all(tasks: &mut JoinSet<()>) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if timeout(CLOSE_TIMEOUT, all).await.is_err() {
        tasks.abort_all();
    }
}

/// What `/proc` said about the server's processes over one run.
struct Usage {
    /// All of them together.
    server: ServerUsage,
    /// Each one, when there is more than one.
    processes: Vec<ProcessUsage>,
}

/// Server memory and CPU from three samples: before connecting, and both ends of the window.
fn usage(
    before: Option<Sample>,
    from: Option<Sample>,
    to: Option<Sample>,
    connections: u64,
) -> Option<Usage> {
    let (before, from, to) = (before?, from?, to?);
    let grown = to.rss_bytes.saturating_sub(before.rss_bytes);
    let each = to.each_since(&from);
    let processes = if each.len() > 1 {
        each.into_iter()
            .map(|p: ProcessReading| ProcessUsage {
                pid: p.pid,
                name: p.name,
                rss_bytes: p.rss_bytes,
                cpu_cores: p.cpu_cores,
                cpu_us_per_op: None, // filled in by `run` once the rate is known
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Usage {
        server: ServerUsage {
            rss_before: before.rss_bytes,
            rss_loaded: to.rss_bytes,
            bytes_per_connection: grown as f64 / connections.max(1) as f64,
            cpu_cores: to.cores_since(&from),
        },
        processes,
    })
}

/// A tag that keeps this run's rooms apart from any earlier run's still closing.
fn nonce() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), RUNS.fetch_add(1, Relaxed))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
