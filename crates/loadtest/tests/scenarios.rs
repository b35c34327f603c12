//! The bench against the real switchboard server on 127.0.0.1:0, with tiny bounded runs.
//! These check the tool's correctness only: counts add up after the drain, percentiles are
//! ordered, the JSON has its documented fields, and non-loopback URLs are refused. No
//! assertion here is about speed; the figures live in docs/performance.md.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use clap::Parser;
use serde_json::Value;
use switchboard_loadtest::{execute, plot, BenchArgs, BenchCommand, Outcome, Percentiles, Report};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A switchboard server for one test; stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let config = switchboard_server::Config::for_tests();
        tokio::spawn(switchboard_server::serve(listener, config, signal));
        Server { addr, stop }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// A server with TLS on its port, presenting a self-signed certificate for 127.0.0.1
    /// from files in `dir`; returns it and the certificate's PEM file (the `--tls-ca`).
    async fn start_tls(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
        Server::start_tls_with(dir, switchboard_server::Config::for_tests()).await
    }

    /// [`Server::start_tls`] with `config`'s other settings.
    async fn start_tls_with(
        dir: &std::path::Path,
        config: switchboard_server::Config,
    ) -> (Server, std::path::PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let signed = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(&cert, signed.cert.pem()).unwrap();
        std::fs::write(&key, signed.signing_key.serialize_pem()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let config = switchboard_server::Config {
            tls: Some(switchboard_server::TlsConfig::files(&cert, &key)),
            ..config
        };
        tokio::spawn(switchboard_server::serve(listener, config, signal));
        (Server { addr, stop }, cert)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn args(line: &str) -> BenchArgs {
    let words = std::iter::once("bench").chain(line.split_whitespace());
    Cli::try_parse_from(words).unwrap().bench
}

async fn bench(line: &str) -> Outcome {
    execute(&args(line)).await.unwrap()
}

fn assert_ordered(latency: &Percentiles) {
    assert!(latency.count > 0);
    assert!(latency.p50 <= latency.p90, "{latency:?}");
    assert!(latency.p90 <= latency.p99, "{latency:?}");
    assert!(latency.p99 <= latency.p999, "{latency:?}");
    assert!(latency.p999 <= latency.max, "{latency:?}");
}

/// After the drain, every frame sent was received, and nothing failed.
fn assert_drained(report: &Report) {
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert_eq!(report.received, report.expected, "{}", report.summary());
    assert!(report.sent > 0);
    assert!(report.operations > 0);
    assert_ordered(report.latency_us.as_ref().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sent_equals_received_after_drain() {
    let server = Server::start().await;
    let line = format!(
        "relay --url {} --pairs 2 --window 2 --duration 1s --warmup 200ms --size 256",
        server.url()
    );
    let outcome = bench(&line).await;
    let [report] = &outcome.reports[..] else {
        panic!("one run, one report")
    };
    assert_eq!(report.scenario, "relay");
    assert_eq!(report.connections, 4);
    assert_drained(report);
    assert_eq!(report.sent, report.received);
    assert_eq!(report.rate_unit, "round_trips/s");
    // Both directions of a round trip are measured, so there are at least twice as many
    // latency samples as round trips counted at the initiators.
    assert!(report.latency_us.unwrap().count >= report.operations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_speaks_conference() {
    let server = Server::start().await;
    let line = format!(
        "relay --url {}/ --dialect conference --pairs 2 --duration 1s --warmup 0s",
        server.url()
    );
    let outcome = bench(&line).await;
    let report = &outcome.reports[0];
    assert_eq!(report.dialect, "conference");
    assert_drained(report);
    assert_eq!(report.sent, report.received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_deliveries_add_up_in_both_modes() {
    let server = Server::start().await;
    let peers = 4;
    let line = format!(
        "fanout --url {} --peers {peers} --window 2 --duration 1s --warmup 100ms --size 100",
        server.url()
    );
    let outcome = bench(&line).await;
    let [room, addressed] = &outcome.reports[..] else {
        panic!("--mode both runs room-wide, then addressed")
    };
    assert_eq!(room.scenario, "fanout-room");
    assert_eq!(addressed.scenario, "fanout-addressed");
    for report in [room, addressed] {
        assert_eq!(report.connections, peers);
        assert_drained(report);
        assert_eq!(report.rate_unit, "deliveries/s");
    }
    // A room-wide frame reaches every other peer; an addressed frame reaches one.
    assert_eq!(room.expected, room.sent * (peers - 1));
    assert_eq!(addressed.expected, addressed.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reads_the_server_from_proc() {
    let server = Server::start().await;
    // The server runs in this process, so this process is the one to read.
    let line = format!(
        "idle --url {} --connections 50 --hold 300ms --sources 3 --server-pid {}",
        server.url(),
        std::process::id()
    );
    let outcome = bench(&line).await;
    let report = &outcome.reports[0];
    assert_eq!(report.connections, 50);
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    let usage = report.server.unwrap();
    assert!(usage.rss_before > 0 && usage.rss_loaded > 0);
    assert!(usage.cpu_cores >= 0.0);
    assert_eq!(report.rate_unit, "none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_storm_over_wss() {
    let dir = std::env::temp_dir().join(format!("sb-bench-wss-{}", std::process::id()));
    let (server, ca) = Server::start_tls(&dir).await;
    let wss = format!("wss://{}", server.addr);
    let line = format!(
        "relay --url {wss} --tls-ca {} --pairs 2 --window 2 --duration 500ms --warmup 100ms",
        ca.display()
    );
    let outcome = bench(&line).await;
    assert_eq!(outcome.reports[0].url, wss);
    assert_drained(&outcome.reports[0]);
    let line = format!(
        "storm --url {wss} --tls-ca {} --clients 20 --concurrency 4",
        ca.display()
    );
    let outcome = bench(&line).await;
    let report = &outcome.reports[0];
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert_eq!(report.operations, 20);
    // Without the CA, the bench refuses the URL before connecting.
    assert!(execute(&args(&format!("storm --url {wss} --clients 1")))
        .await
        .is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_sends_its_own_token_to_a_server_that_requires_one() {
    use switchboard_server::{AuthKey, AuthMode};
    let dir = std::env::temp_dir().join(format!("sb-bench-auth-{}", std::process::id()));
    let config = switchboard_server::Config {
        auth: AuthMode::Required,
        auth_keys: vec![AuthKey::secret("k1", "bench-secret")],
        ..switchboard_server::Config::for_tests()
    };
    let (server, ca) = Server::start_tls_with(&dir, config).await;
    let wss = format!("wss://{} --tls-ca {}", server.addr, ca.display());
    for dialect in ["query-rooms", "conference"] {
        let line = format!(
            "relay --url {wss} --auth-secret k1=bench-secret --dialect {dialect} --pairs 2 --window 2 --duration 300ms --warmup 100ms"
        );
        assert_drained(&bench(&line).await.reports[0]);
        let line = format!(
            "storm --url {wss} --auth-secret k1=bench-secret --dialect {dialect} --clients 20 --concurrency 4"
        );
        let report = &bench(&line).await.reports[0];
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.operations, 20);
    }
    // Without a token, or with one signed by another secret, the upgrade is refused (401).
    for auth in ["", "--auth-secret k1=another-secret"] {
        let line = format!("storm --url {wss} {auth} --clients 4 --concurrency 4");
        let report = &bench(&line).await.reports[0];
        assert_eq!(report.operations, 0, "{auth:?}");
        assert_eq!(report.errors, 4, "{auth:?}");
        let error = report.first_error.as_deref().unwrap();
        assert!(error.contains("401"), "{auth:?}: {error}");
    }
    // A malformed flag is refused before any connection.
    for bad in ["k1", "=s", "k1="] {
        let line = format!("storm --url {wss} --auth-secret {bad} --clients 1");
        assert!(execute(&args(&line)).await.is_err(), "{bad}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_times_every_join() {
    let server = Server::start().await;
    for dialect in ["query-rooms", "conference"] {
        let line = format!(
            "storm --url {} --dialect {dialect} --clients 40 --concurrency 8",
            server.url()
        );
        let outcome = bench(&line).await;
        let report = &outcome.reports[0];
        assert_eq!(report.connections, 40);
        assert_eq!(report.operations, 40);
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        let latency = report.latency_us.unwrap();
        assert_eq!(latency.count, 40);
        assert_ordered(&latency);
        assert!(report.listen_overflows.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_has_the_documented_fields() {
    let server = Server::start().await;
    let line = format!(
        "relay --url {} --pairs 1 --duration 300ms --warmup 0s --json",
        server.url()
    );
    let outcome = bench(&line).await;
    let json: Value = serde_json::to_value(&outcome.reports[0]).unwrap();
    for field in [
        "kind",
        "scenario",
        "url",
        "dialect",
        "params",
        "connections",
        "sent",
        "expected",
        "received",
        "errors",
        "measured_s",
        "operations",
        "rate",
        "rate_unit",
        "latency_us",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert_eq!(json["kind"], "run");
    for field in ["count", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][field].is_number(), "latency_us.{field}");
    }
    for field in [
        "pairs",
        "window",
        "size",
        "warmup_s",
        "duration_s",
        "concurrency",
        "sources",
    ] {
        assert!(json["params"][field].is_number(), "params.{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_interleaves_rounds_and_gives_ratios() {
    let (a, b) = (Server::start().await, Server::start().await);
    let line = format!(
        "compare relay --url {} --url {} --rounds 2 --pairs 1 --duration 300ms --warmup 0s",
        a.url(),
        b.url()
    );
    let outcome = bench(&line).await;
    let order: Vec<(Option<u32>, &str)> = outcome
        .reports
        .iter()
        .map(|r| (r.round, r.url.as_str()))
        .collect();
    // Every other round in reverse, so that no URL always runs second.
    let (a_url, b_url) = (a.url(), b.url());
    assert_eq!(
        order,
        [
            (Some(1), a_url.as_str()),
            (Some(1), b_url.as_str()),
            (Some(2), b_url.as_str()),
            (Some(2), a_url.as_str())
        ]
    );
    let [comparison] = &outcome.comparisons[..] else {
        panic!("one scenario, one comparison")
    };
    assert_eq!(comparison.floor, a.url());
    assert_eq!(comparison.results.len(), 2);
    assert_eq!(comparison.results[0].rate_ratio, Some(1.0));
    assert!(comparison.results[1].rate_ratio.is_some());
    let json: Value = serde_json::to_value(comparison).unwrap();
    assert_eq!(json["kind"], "compare");
    assert!(json["results"][1]["p99_ratio"].is_number());

    let chart = std::env::temp_dir().join(format!("bench-{}.svg", std::process::id()));
    plot(&chart, &outcome.reports).unwrap();
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_file(&chart).unwrap();
    assert!(svg.contains("<svg") && svg.contains("percentile"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_counts_add_up_and_give_the_cost_per_packet() {
    let server = Server::start().await;
    let consumers = 3;
    // The server runs in this process, so this process is the one to read.
    let line = format!(
        "media --url {} --consumers {consumers} --rate 200 --duration 1s --warmup 300ms \
         --server-pid {}",
        server.url(),
        std::process::id()
    );
    let outcome = bench(&line).await;
    let [report] = &outcome.reports[..] else {
        panic!("one run, one report")
    };
    assert_eq!(report.scenario, "media");
    assert_eq!(report.dialect, "conference");
    assert_eq!(report.connections, consumers + 1);
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    // The window's packets are those due in it, however punctual the writer was.
    assert_eq!(report.sent, 200);
    assert_eq!(report.expected, report.sent * consumers);
    assert!(report.received > 0, "{}", report.summary());
    assert!(report.received <= report.expected, "{}", report.summary());
    assert_eq!(report.operations, report.received);
    assert!(report.rate > 0.0);
    assert_eq!(report.rate_unit, "packets/s");
    assert!(report.latency_us.is_none());
    let busy = report.client_busy.unwrap();
    assert!((0.0..=1.0).contains(&busy), "{busy}");
    let summary = report.summary();
    assert!(summary.contains("per forwarded packet"), "{summary}");

    let json: Value = serde_json::to_value(report).unwrap();
    for field in [
        "sent",
        "expected",
        "received",
        "rate",
        "rate_unit",
        "server",
        "cpu_us_per_packet",
        "consumers_per_core",
        "client_busy",
        // Every media worker thread of this process (other tests' servers' too).
        "media_workers",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    assert!(json["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    assert!(json["consumers_per_core"].as_f64().unwrap() > 0.0);
    for field in ["consumers", "packet_rate", "size", "warmup_s", "duration_s"] {
        assert!(json["params"][field].is_number(), "params.{field}");
    }
    assert_eq!(json["params"]["packet_rate"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_over_several_rooms_deals_the_consumers_to_them() {
    let server = Server::start().await;
    let line = format!(
        "media --url {} --rooms 2 --consumers 4 --rate 200 --duration 1s --warmup 300ms",
        server.url()
    );
    let outcome = bench(&line).await;
    let report = &outcome.reports[0];
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    // Two publishers and four consumers; each publisher's window is 200 packets, and each
    // consumer expects its own room's.
    assert_eq!(report.connections, 6);
    assert_eq!(report.sent, 400);
    assert_eq!(report.expected, 800);
    assert!(report.received > 0, "{}", report.summary());
    assert!(report.received <= report.expected, "{}", report.summary());
    assert_eq!(report.params.rooms, Some(2));
    // A room with no consumer is refused before anything connects.
    let line = format!("media --url {} --rooms 5 --consumers 4", server.url());
    assert!(execute(&args(&line)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_compares_like_any_scenario() {
    let (a, b) = (Server::start().await, Server::start().await);
    let line = format!(
        "compare media --url {} --url {} --rounds 1 --consumers 2 --duration 300ms --warmup 0s",
        a.url(),
        b.url()
    );
    let outcome = bench(&line).await;
    assert_eq!(outcome.reports.len(), 2);
    for report in &outcome.reports {
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert!(report.received <= report.expected);
    }
    let [comparison] = &outcome.comparisons[..] else {
        panic!("one scenario, one comparison")
    };
    assert_eq!(comparison.scenario, "media");
    assert_eq!(comparison.results[0].rate_unit, "packets/s");
}

#[tokio::test]
async fn non_loopback_urls_are_refused_before_connecting() {
    for url in [
        "ws://10.1.2.3:8080",
        "ws://192.168.0.1:80",
        "ws://example.com:80",
        "ws://[2001:db8::1]:80",
    ] {
        let error = execute(&args(&format!("relay --url {url}")))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("loopback"),
            "{url}: {error:#}"
        );
    }
    // Under compare too, even when the first URL is fine.
    let line = "compare relay --url ws://127.0.0.1:9 --url ws://10.0.0.1:9";
    assert!(execute(&args(line)).await.is_err());
}

#[test]
fn the_cli_takes_compare_as_written_in_the_docs() {
    let parsed = args("compare relay --url ws://127.0.0.1:9000 --url ws://127.0.0.1:8080 --rounds 3 --pairs 1000 --window 8");
    let BenchCommand::Compare(compare) = &parsed.command else {
        panic!("compare parses as compare")
    };
    assert_eq!(compare.rounds, 3);
    assert_eq!(parsed.scenario().common().urls.len(), 2);
    // media speaks conference unless told otherwise.
    let media = args("media --url ws://127.0.0.1:9 --consumers 200");
    assert_eq!(media.scenario().common().dialect.as_str(), "conference");
    // Out-of-bounds flags are refused before anything runs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for line in [
        "relay --url ws://127.0.0.1:9 --pairs 0",
        "relay --url ws://127.0.0.1:9 --pairs 1000000",
        "relay --url ws://127.0.0.1:9 --window 1000",
        "relay --url ws://127.0.0.1:9 --duration 2h",
        "idle --url ws://127.0.0.1:9 --connections 1000000",
        "fanout --url ws://127.0.0.1:9 --dialect conference",
        "relay --url ws://127.0.0.1:9 --url ws://127.0.0.1:10",
        "media --url ws://127.0.0.1:9 --consumers 0",
        "media --url ws://127.0.0.1:9 --consumers 1001",
        "media --url ws://127.0.0.1:9 --rate 0",
        "media --url ws://127.0.0.1:9 --rate 10001",
        "media --url ws://127.0.0.1:9 --size 8",
        "media --url ws://127.0.0.1:9 --size 1500",
        "media --url ws://127.0.0.1:9 --duration 0s",
        "media --url ws://127.0.0.1:9 --dialect query-rooms",
        "media --url ws://127.0.0.1:9 --plot chart.svg",
        "media --url ws://10.0.0.1:9",
    ] {
        assert!(runtime.block_on(execute(&args(line))).is_err(), "{line}");
    }
}
