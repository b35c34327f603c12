//! The bench against two switchboard nodes of one cluster on a real Redis (Debian's
//! `redis-server`, started per test on a unix socket): split URLs (`A,B`, `--peer-url`),
//! several `--server-pid` processes, and the refusals of the new flags. Tiny bounded runs
//! that check the tool's correctness only; no assertion here is about speed.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use switchboard_loadtest::{execute, BenchArgs, Outcome, Report};
use switchboard_server::{ClusterConfig, Config, NodeId, RedisUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

/// How long a node may take to register with Redis.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A redis-server of our own, stopped (by its pid) when dropped.
struct Redis {
    dir: PathBuf,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-bench-cluster-{}-{:x}",
            std::process::id(),
            switchboard_server::random_node_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(socket.exists(), "redis-server did not start");
        Redis { dir, child }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `PUBLISH` commands Redis has carried out so far (INFO commandstats).
    fn publishes(&self) -> u64 {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.dir.join("redis.sock"))
            .args(["info", "commandstats"])
            .output()
            .expect("redis-cli runs");
        let stats = String::from_utf8_lossy(&out.stdout);
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_publish:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One node of the cluster, in this process; stops when dropped.
struct Node {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Node {
    async fn start(redis: &Redis, id: u64) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::for_tests();
        config.media = false;
        config.cluster = Some(ClusterConfig {
            url: RedisUrl::parse(&redis.url()).unwrap(),
            node: NodeId(id),
            lease: Duration::from_secs(10),
            prefix: "sb".into(),
            capacity: 8192,
            max_envelope: 1 << 20,
            max_room_members: None,
        });
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        tokio::spawn(switchboard_server::serve(listener, config, signal));
        let node = Node { addr, stop };
        timeout(READY_WITHIN, async {
            while !node.is_ready().await {
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the node registers with Redis");
        node
    }

    /// Whether `/readyz` answers 200 (the node has registered with Redis).
    async fn is_ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return false;
        };
        let request = "GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response.starts_with("HTTP/1.1 200")
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Node {
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

/// After the drain, every frame sent was received, and nothing failed.
fn assert_drained(report: &Report) {
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert_eq!(report.received, report.expected, "{}", report.summary());
    assert!(
        report.sent > 0 && report.operations > 0,
        "{}",
        report.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_split_over_two_nodes_crosses_redis_and_drains() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, 1).await, Node::start(&redis, 2).await);
    let me = std::process::id();
    // Both nodes run in this process; Redis is its own.
    let line = format!(
        "relay --url {},{} --pairs 3 --window 2 --duration 1s --warmup 200ms --size 256 \
         --server-pid {me},{}",
        a.url(),
        b.url(),
        redis.pid()
    );
    let published = redis.publishes();
    let outcome = bench(&line).await;
    let [report] = &outcome.reports[..] else {
        panic!("one run, one report")
    };
    assert_eq!(report.url, format!("{},{}", a.url(), b.url()));
    assert_eq!(report.connections, 6);
    assert_drained(report);
    // Every pair is split, so every relayed frame went from one node to the other through
    // Redis (joins and leaves publish too).
    assert!(
        redis.publishes() - published >= report.sent,
        "{} publishes for {} frames",
        redis.publishes() - published,
        report.sent
    );
    let names: Vec<&str> = report.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(report.processes[1].name, "redis-server");
    assert_eq!(report.processes[1].pid, redis.pid());
    for process in &report.processes {
        assert!(process.rss_bytes > 0 && process.cpu_cores >= 0.0);
        assert!(process.cpu_us_per_op.is_some(), "{process:?}");
    }
    let total: f64 = report.processes.iter().map(|p| p.cpu_cores).sum();
    let server = report.server.unwrap();
    assert!((server.cpu_cores - total).abs() < 1e-9);
    let json = serde_json::to_value(report).unwrap();
    assert_eq!(json["processes"][1]["name"], "redis-server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_url_is_the_second_node_of_a_single_run() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, 1).await, Node::start(&redis, 2).await);
    let line = format!(
        "relay --url {} --peer-url {} --dialect conference --pairs 2 --duration 500ms \
         --warmup 0s",
        a.url(),
        b.url()
    );
    let outcome = bench(&line).await;
    let report = &outcome.reports[0];
    assert_eq!(report.url, format!("{},{}", a.url(), b.url()));
    assert_drained(report);
    // One server: no per-process lines.
    assert!(report.processes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_alternates_between_two_nodes() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, 1).await, Node::start(&redis, 2).await);
    for dialect in ["query-rooms", "conference"] {
        let line = format!(
            "storm --url {},{} --dialect {dialect} --clients 20 --concurrency 4",
            a.url(),
            b.url()
        );
        let outcome = bench(&line).await;
        let report = &outcome.reports[0];
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.connections, 20);
        assert_eq!(report.latency_us.unwrap().count, 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_takes_a_split_url_with_its_own_processes() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, 1).await, Node::start(&redis, 2).await);
    let me = std::process::id();
    let split = format!("{},{}", a.url(), b.url());
    let line = format!(
        "compare relay --url {} --url {split} --server-pid {me} --server-pid {me},{} \
         --rounds 1 --pairs 1 --duration 300ms --warmup 0s",
        a.url(),
        redis.pid()
    );
    let outcome = bench(&line).await;
    let [one, two] = &outcome.reports[..] else {
        panic!("one round of two URLs")
    };
    assert!(one.processes.is_empty());
    assert_eq!(two.url, split);
    assert_drained(one);
    assert_drained(two);
    let [comparison] = &outcome.comparisons[..] else {
        panic!("one scenario, one comparison")
    };
    assert_eq!(comparison.results[1].url, split);
    assert_eq!(comparison.results[1].processes.len(), 2);
    assert!(comparison.results[1].rate_ratio.is_some());
    assert!(comparison.summary().contains("redis-server"));
}

#[tokio::test]
async fn the_new_flags_are_refused_when_they_make_no_sense() {
    let redis = Redis::start();
    for line in [
        // a run over three nodes, or a split that is not loopback
        "relay --url ws://127.0.0.1:9,ws://127.0.0.1:10,ws://127.0.0.1:11",
        "relay --url ws://127.0.0.1:9,ws://10.0.0.1:10",
        // --peer-url: a single run of one --url only
        "relay --url ws://127.0.0.1:9,ws://127.0.0.1:10 --peer-url ws://127.0.0.1:11",
        "compare relay --url ws://127.0.0.1:9 --url ws://127.0.0.1:10 --peer-url ws://127.0.0.1:11",
        "relay --url ws://127.0.0.1:9 --peer-url ws://10.0.0.1:10",
        // media runs on one node; kill needs two
        "media --url ws://127.0.0.1:9,ws://127.0.0.1:10",
        "kill --url ws://127.0.0.1:9 --victim-pid 1",
        "kill --url ws://127.0.0.1:9,ws://127.0.0.1:10 --victim-pid 1 --peers 0",
        "kill --url ws://127.0.0.1:9,ws://127.0.0.1:10 --victim-pid 1 --wait 2h",
        // one --server-pid list per URL under compare, at most four PIDs in one
        "compare relay --url ws://127.0.0.1:9 --url ws://127.0.0.1:10 --server-pid 1",
    ] {
        assert!(execute(&args(line)).await.is_err(), "{line}");
    }
    let five = "relay --url ws://127.0.0.1:9 --server-pid 1,2,3,4,5";
    let words = std::iter::once("bench").chain(five.split_whitespace());
    assert!(Cli::try_parse_from(words).is_err());
    // kill kills nothing but a process named switchboard, and says so before connecting.
    let line = format!(
        "kill --url ws://127.0.0.1:9,ws://127.0.0.1:10 --victim-pid {}",
        redis.pid()
    );
    let error = execute(&args(&line)).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("not switchboard"),
        "{error:#}"
    );
    let mut redis = redis;
    assert!(
        redis.child.try_wait().unwrap().is_none(),
        "redis still runs"
    );
}
