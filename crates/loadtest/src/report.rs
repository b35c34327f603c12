//! What a run found and how it is shown: the [`Report`] of one run (also its JSON object),
//! the human summary, the ratios of a comparison, and the SVG latency chart. Nothing here
//! touches a socket; the scenarios fill the reports in.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in nanoseconds from 1 ns to this (60 s), at 3 significant digits.
const HIGHEST_NS: u64 = 60_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// Latency shards: clients record into `index % SHARDS`, so two worker threads rarely meet
/// on one lock, and the whole record stays a few MiB whatever the client count.
const SHARDS: usize = 32;

/// One run of one scenario against one URL. Serialized, it is the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `"run"` (a comparison's object says `"compare"`).
    pub kind: &'static str,
    /// `relay`, `fanout-room`, `fanout-addressed`, `idle`, `storm`, `media` or `kill`.
    pub scenario: &'static str,
    /// The server's URL.
    pub url: String,
    /// The dialect spoken.
    pub dialect: &'static str,
    /// The round of a comparison (1-based); absent for a single run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// The parameters of the run.
    pub params: Params,
    /// Client sockets opened (and joined).
    pub connections: u64,
    /// Frames the clients sent (media: RTP packets the publisher wrote in the window).
    pub sent: u64,
    /// Deliveries the sent frames should make (relay: one per frame; fanout room-wide: one
    /// per other peer; media: one per consumer).
    pub expected: u64,
    /// Stamped frames the clients received (media: packets of the window the consumers
    /// received). After a clean drain, `received == expected`.
    pub received: u64,
    /// Error frames, refused or failed connections, and sockets closed by the server.
    pub errors: u64,
    /// The first error seen, for a human to start from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Length of the measured window, seconds.
    pub measured_s: f64,
    /// Operations completed in the window: round trips (relay), deliveries (fanout), joins
    /// (storm), packets received by consumers (media) or leave notices (kill); 0 for idle.
    pub operations: u64,
    /// `operations / measured_s`.
    pub rate: f64,
    /// What `rate` counts: `round_trips/s`, `deliveries/s`, `joins/s`, `packets/s`, or
    /// `none`.
    pub rate_unit: &'static str,
    /// One-way latency (relay, fanout) or time to joined (storm), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Percentiles>,
    /// The server's memory and CPU, when `--server-pid` was given: all its processes
    /// together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    /// Each server process on its own, in `--server-pid` order, when more than one was given
    /// (the nodes of a cluster and their Redis).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessUsage>,
    /// Connections the kernel dropped because a listen queue was full during the run
    /// (machine-wide counter; storm only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_overflows: Option<u64>,
    /// Server CPU per forwarded packet, microseconds: `server.cpu_cores × 1e6 / rate`
    /// (media, with `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_packet: Option<f64>,
    /// Consumers of one stream at `params.packet_rate` that one server core would feed at
    /// that cost: `1e6 / (cpu_us_per_packet × packet_rate)` (media, with `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers_per_core: Option<f64>,
    /// Share of the measured window the bench's media thread spent writing and polling
    /// rather than waiting (media). Near 1, the bench, not the server, set the pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_busy: Option<f64>,
    /// Each of the server's media worker threads' CPU over the window, cores, in the order
    /// they started (media, with `--server-pid`): how evenly the workers share the load.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media_workers: Vec<f64>,
    /// The full latency distribution, for the chart and for merging.
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// The knobs a run was given; only those that apply to its scenario are present.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Params {
    /// Relay pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<u64>,
    /// Fanout room size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<u64>,
    /// Idle connections, or storm clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<u64>,
    /// Media consumers, of all rooms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u64>,
    /// Media rooms, each with one publisher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<u64>,
    /// Packets per second of the media stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_rate: Option<u64>,
    /// Messages (relay) or rounds (fanout) in flight per sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// Fanout with a fixed count: rounds each peer sent (the whole run is measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// Payload bytes (media: RTP payload bytes of the window's packets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Warm-up before the measured window, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// The measured window (relay, fanout, media) or hold time (idle), seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Connections opened at once.
    pub concurrency: u64,
    /// Loopback source addresses used.
    pub sources: u64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// What `/proc/PID` said about the server.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerUsage {
    /// Resident memory before the clients connected, bytes.
    pub rss_before: u64,
    /// Resident memory with every client connected, bytes (idle: at the end of the hold).
    pub rss_loaded: u64,
    /// `(rss_loaded - rss_before) / connections`, bytes.
    pub bytes_per_connection: f64,
    /// CPU cores the server used on average during the measured window (idle: the hold).
    pub cpu_cores: f64,
}

/// What one server process did during the measured window (storm: the storm).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    /// Its PID.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`): `switchboard`, `redis-server`, ...
    pub name: String,
    /// Resident memory at the end of the window, bytes.
    pub rss_bytes: u64,
    /// CPU cores it used on average during the window.
    pub cpu_cores: f64,
    /// Its CPU time per operation (round trip, delivery, join), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_op: Option<f64>,
}

/// One scenario compared across URLs: medians over the rounds, and ratios to the first URL
/// (each the median of the per-round ratios).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Always `"compare"`.
    pub kind: &'static str,
    /// The scenario compared.
    pub scenario: &'static str,
    /// Rounds run (each URL once per round, in order).
    pub rounds: u32,
    /// The URL every ratio is relative to (the first given).
    pub floor: String,
    /// One line per URL, the floor first.
    pub results: Vec<Compared>,
}

/// One URL's medians and its ratios to the floor.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    /// The URL.
    pub url: String,
    /// What `rate` counts.
    pub rate_unit: &'static str,
    /// Median rate over the rounds.
    pub rate: f64,
    /// Median over the rounds of `rate / floor's rate` in the same round (higher is better).
    pub rate_ratio: Option<f64>,
    /// Median p99 latency over the rounds, microseconds.
    pub p99_us: Option<f64>,
    /// Median over the rounds of `p99 / floor's p99` (lower is better).
    pub p99_ratio: Option<f64>,
    /// Median server bytes per connection, when measured.
    pub bytes_per_connection: Option<f64>,
    /// Median over the rounds of `bytes per connection / floor's` (lower is better).
    pub memory_ratio: Option<f64>,
    /// Median server CPU cores during the window, when measured.
    pub cpu_cores: Option<f64>,
    /// Median server CPU time per operation (round trip, delivery, join), microseconds:
    /// the server's own cost, which the rate hides when the bench client is the bottleneck.
    pub cpu_us_per_op: Option<f64>,
    /// Median over the rounds of `cpu per operation / floor's` (lower is better).
    pub cpu_ratio: Option<f64>,
    /// Errors over all rounds.
    pub errors: u64,
    /// Listen-queue overflows over all rounds (storm).
    pub listen_overflows: Option<u64>,
    /// Each server process's medians, when the URL had more than one `--server-pid`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessUsage>,
}

/// Latency samples from many clients, in shards so recording rarely contends.
pub(crate) struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    /// Records `nanos` from client `client`; values past the highest trackable are clamped.
    pub(crate) fn record(&self, client: usize, nanos: u64) {
        if let Some(shard) = self.shards.get(client % SHARDS) {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.saturating_record(nanos.max(1));
        }
    }

    /// Every shard merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*shard);
        }
        all
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid: 1 <= 60 s, 3 digits")
}

impl Percentiles {
    /// Percentiles of a nanosecond histogram, in microseconds; `None` when it is empty.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Percentiles {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
        })
    }
}

impl Report {
    /// The human summary: a few lines per run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{} {} ({})", self.scenario, self.url, self.dialect);
        if let Some(round) = self.round {
            let _ = write!(out, " round {round}");
        }
        let _ = writeln!(out, "  {}", self.params.describe());
        if self.rate_unit != "none" {
            let _ = writeln!(
                out,
                "  {} {}  ({} in {:.1} s)",
                thousands(self.rate),
                self.rate_unit.replace('_', " "),
                thousands(self.operations as f64),
                self.measured_s
            );
        }
        if let Some(latency) = &self.latency_us {
            let what = if self.scenario == "storm" {
                "time to joined"
            } else {
                "one-way latency"
            };
            let _ = writeln!(
                out,
                "  {what}  p50 {}  p90 {}  p99 {}  max {}  (n={})",
                micros(latency.p50),
                micros(latency.p90),
                micros(latency.p99),
                micros(latency.max),
                thousands(latency.count as f64)
            );
        }
        let _ = writeln!(
            out,
            "  connections {}  sent {}  received {}/{}  errors {}",
            thousands(self.connections as f64),
            thousands(self.sent as f64),
            thousands(self.received as f64),
            thousands(self.expected as f64),
            self.errors
        );
        if let Some(server) = &self.server {
            // CPU per operation (a round trip, a delivery, a join) is the server's own cost,
            // which a throughput figure partly hides when the client shares the cores.
            let per_op = cpu_per_op(self)
                .map(|us| format!("  ({us:.2} µs per {})", self.operation()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  server  rss {:.1} MiB -> {:.1} MiB  {:.0} B/connection  cpu {:.2} cores{per_op}",
                server.rss_before as f64 / 1048576.0,
                server.rss_loaded as f64 / 1048576.0,
                server.bytes_per_connection,
                server.cpu_cores
            );
        }
        for process in &self.processes {
            let _ = writeln!(out, "    {}", process.describe());
        }
        if let (Some(us), Some(per_core)) = (self.cpu_us_per_packet, self.consumers_per_core) {
            let _ = writeln!(
                out,
                "  server cpu {us:.2} µs per forwarded packet: {} consumers per core at {} packets/s",
                thousands(per_core),
                self.params.packet_rate.unwrap_or_default()
            );
        }
        if self.media_workers.len() > 1 {
            let total: f64 = self.media_workers.iter().sum();
            let each: Vec<String> = self
                .media_workers
                .iter()
                .map(|cores| format!("{cores:.2} ({:.0} %)", cores * 100.0 / total.max(1e-9)))
                .collect();
            let _ = writeln!(out, "  media workers cpu {} cores", each.join(" + "));
        }
        if let Some(busy) = self.client_busy {
            let _ = writeln!(
                out,
                "  bench media thread busy {:.0} % of the window (near 100 %: the bench set the pace)",
                busy * 100.0
            );
        }
        if let Some(overflows) = self.listen_overflows {
            let _ = writeln!(out, "  listen queue overflows {overflows}");
        }
        if let Some(error) = &self.first_error {
            let _ = writeln!(out, "  first error: {error}");
        }
        out
    }
}

impl ProcessUsage {
    fn describe(&self) -> String {
        let per_op = self
            .cpu_us_per_op
            .map_or(String::new(), |us| format!("  {us:.2} µs/op"));
        format!(
            "pid {} {:<14} rss {:.1} MiB  cpu {:.2} cores{per_op}",
            self.pid,
            self.name,
            self.rss_bytes as f64 / 1048576.0,
            self.cpu_cores
        )
    }
}

impl Params {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        };
        add("pairs", self.pairs.map(|v| v.to_string()));
        add("peers", self.peers.map(|v| v.to_string()));
        add("clients", self.clients.map(|v| v.to_string()));
        add("consumers", self.consumers.map(|v| v.to_string()));
        add("rate", self.packet_rate.map(|v| format!("{v}/s")));
        add("window", self.window.map(|v| v.to_string()));
        add("messages", self.messages.map(|v| v.to_string()));
        add("size", self.size.map(|v| v.to_string()));
        add("warmup", self.warmup_s.map(|v| format!("{v}s")));
        add("duration", self.duration_s.map(|v| format!("{v}s")));
        add("concurrency", Some(self.concurrency.to_string()));
        add("sources", Some(self.sources.to_string()));
        parts.join(" ")
    }
}

impl Comparison {
    /// Medians per URL over `runs` (all of one scenario, URLs in `urls` order), and ratios.
    pub(crate) fn of(
        scenario: &'static str,
        rounds: u32,
        urls: &[String],
        runs: &[&Report],
    ) -> Comparison {
        let results: Vec<Compared> = urls
            .iter()
            .map(|url| {
                let mine: Vec<&&Report> = runs.iter().filter(|r| &r.url == url).collect();
                let rate_unit = mine.first().map_or("none", |r| r.rate_unit);
                let overflows: Vec<u64> = mine.iter().filter_map(|r| r.listen_overflows).collect();
                Compared {
                    url: url.clone(),
                    rate_unit,
                    rate: median(mine.iter().map(|r| r.rate)).unwrap_or(0.0),
                    rate_ratio: None,
                    p99_us: median(mine.iter().filter_map(|r| r.latency_us.map(|l| l.p99))),
                    p99_ratio: None,
                    bytes_per_connection: median(
                        mine.iter()
                            .filter_map(|r| r.server.map(|s| s.bytes_per_connection)),
                    ),
                    memory_ratio: None,
                    cpu_cores: median(mine.iter().filter_map(|r| r.server.map(|s| s.cpu_cores))),
                    cpu_us_per_op: median(mine.iter().filter_map(|r| cpu_per_op(r))),
                    cpu_ratio: None,
                    errors: mine.iter().map(|r| r.errors).sum(),
                    listen_overflows: (!overflows.is_empty()).then(|| overflows.iter().sum()),
                    processes: process_medians(&mine),
                }
            })
            .collect();
        // Each ratio is the median of per-round ratios: the two runs of one round ran
        // back to back, so a slow spell on a shared machine touches both sides of a ratio.
        let floor_url = urls.first();
        let ratio = |url: &str, figure: fn(&Report) -> Option<f64>| {
            let per_round = runs.iter().filter(|r| r.url == url).filter_map(|mine| {
                let floor = runs
                    .iter()
                    .find(|r| Some(&r.url) == floor_url && r.round == mine.round)?;
                match (figure(mine), figure(floor)) {
                    (Some(mine), Some(floor)) if floor > 0.0 => Some(mine / floor),
                    _ => None,
                }
            });
            median(per_round)
        };
        let results = results
            .into_iter()
            .map(|mut line| {
                line.rate_ratio = ratio(&line.url, |r| Some(r.rate));
                line.p99_ratio = ratio(&line.url, |r| r.latency_us.map(|l| l.p99));
                line.memory_ratio = ratio(&line.url, |r| r.server.map(|s| s.bytes_per_connection));
                line.cpu_ratio = ratio(&line.url, cpu_per_op);
                line
            })
            .collect();
        Comparison {
            kind: "compare",
            scenario,
            rounds,
            floor: urls.first().cloned().unwrap_or_default(),
            results,
        }
    }

    /// The human table.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "compare {} ({} rounds; medians, and medians of per-round ratios to {})",
            self.scenario, self.rounds, self.floor
        );
        let unit = self
            .results
            .first()
            .map_or("rate", |r| r.rate_unit)
            .replace("none", "rate");
        let rate = |line: &Compared| match line.rate_unit {
            "none" => "-".to_owned(),
            _ => thousands(line.rate),
        };
        let _ = writeln!(
            out,
            "  {:<26} {:>16} {:>6} {:>11} {:>6} {:>9} {:>6} {:>5} {:>9} {:>6} {:>7}",
            "url",
            unit,
            "ratio",
            "p99",
            "ratio",
            "B/conn",
            "ratio",
            "cpu",
            "cpu µs/op",
            "ratio",
            "errors"
        );
        let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.3}"));
        for line in &self.results {
            let _ = writeln!(
                out,
                "  {:<26} {:>16} {:>6} {:>11} {:>6} {:>9} {:>6} {:>5} {:>9} {:>6} {:>7}{}",
                line.url,
                rate(line),
                ratio(line.rate_ratio),
                line.p99_us.map_or("-".to_owned(), micros),
                ratio(line.p99_ratio),
                line.bytes_per_connection
                    .map_or("-".to_owned(), |b| format!("{b:.0}")),
                ratio(line.memory_ratio),
                line.cpu_cores.map_or("-".to_owned(), |c| format!("{c:.2}")),
                line.cpu_us_per_op
                    .map_or("-".to_owned(), |c| format!("{c:.2}")),
                ratio(line.cpu_ratio),
                line.errors,
                line.listen_overflows
                    .map_or(String::new(), |o| format!("  overflows {o}")),
            );
            for process in &line.processes {
                let _ = writeln!(out, "      {}", process.describe());
            }
        }
        out
    }
}

/// Per-process medians over one URL's runs, matched by position in `--server-pid` (the
/// same processes in every round).
fn process_medians(runs: &[&&Report]) -> Vec<ProcessUsage> {
    let count = runs.iter().map(|r| r.processes.len()).max().unwrap_or(0);
    (0..count)
        .filter_map(|index| {
            let mine: Vec<&ProcessUsage> =
                runs.iter().filter_map(|r| r.processes.get(index)).collect();
            let first = mine.first()?;
            Some(ProcessUsage {
                pid: first.pid,
                name: first.name.clone(),
                rss_bytes: median(mine.iter().map(|p| p.rss_bytes as f64)).unwrap_or(0.0) as u64,
                cpu_cores: median(mine.iter().map(|p| p.cpu_cores)).unwrap_or(0.0),
                cpu_us_per_op: median(mine.iter().filter_map(|p| p.cpu_us_per_op)),
            })
        })
        .collect()
}

/// Writes an SVG chart of the latency distributions of `reports` (one line each, labelled
/// by scenario and URL): latency against percentile, with the tail stretched out so p99 and
/// p99.9 are readable.
pub fn plot(path: &Path, reports: &[Report]) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let curves: Vec<(String, Vec<(f64, f64)>)> = reports
        .iter()
        .filter_map(|report| {
            let histogram = report.histogram.as_ref().filter(|h| !h.is_empty())?;
            let label = match report.round {
                Some(round) => format!("{} {} (round {round})", report.scenario, report.url),
                None => format!("{} {}", report.scenario, report.url),
            };
            Some((label, tail_curve(histogram)))
        })
        .collect();
    anyhow::ensure!(!curves.is_empty(), "no latency samples to plot");
    let top_ms = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "switchboard bench: latency by percentile",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..TAIL_NINES, 0.0..top_ms.max(0.001))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(6)
            .x_label_formatter(&|nines| percentile_label(*nines))
            .draw()?;
        for (index, (label, points)) in curves.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("writing {}", path.display()))
}

/// The x axis shows "nines": 0 is p0, 1 is p90, 2 is p99, 3 is p99.9, 4 is p99.99.
const TAIL_NINES: f64 = 4.0;

fn tail_curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let steps = 400;
    (0..=steps)
        .map(|step| {
            let nines = TAIL_NINES * f64::from(step) / f64::from(steps);
            let quantile = 1.0 - 10f64.powf(-nines);
            let ms = histogram.value_at_quantile(quantile) as f64 / 1e6;
            (nines, ms)
        })
        .collect()
}

fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    if percent < 99.0 {
        format!("p{percent:.0}")
    } else {
        let text = format!("{percent:.2}");
        format!("p{}", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Server CPU microseconds per operation in one run, when both are known.
impl Report {
    /// What one operation of `rate` is, from its unit (`deliveries/s`: a delivery).
    fn operation(&self) -> &'static str {
        match self.rate_unit {
            "round_trips/s" => "round trip",
            "deliveries/s" => "delivery",
            "joins/s" => "join",
            "packets/s" => "packet",
            _ => "operation",
        }
    }
}

fn cpu_per_op(report: &Report) -> Option<f64> {
    let server = report.server?;
    (report.rate > 0.0).then(|| server.cpu_cores * 1e6 / report.rate)
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values.get(middle).copied()
    } else {
        Some((values.get(middle - 1)? + values.get(middle)?) / 2.0)
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Microseconds as `850 µs` or `1.23 ms`.
fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(1234.0), "1.23 ms");
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(percentile_label(2.0), "p99");
        assert_eq!(percentile_label(3.0), "p99.9");
        assert_eq!(percentile_label(1.0), "p90");
    }

    #[test]
    fn recorder_merges_shards() {
        let recorder = Recorder::new();
        for client in 0..100 {
            recorder.record(client, 1000 * (client as u64 + 1));
        }
        let merged = recorder.merged();
        assert_eq!(merged.len(), 100);
        let p = Percentiles::of(&merged).unwrap();
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
    }
}
