//! TURN REST credentials against a real TURN server: Debian's coturn (`turnserver`, started
//! per test on a free loopback port with `use-auth-secret`, no config file, stopped by its pid),
//! and coturn's own client, `turnutils_uclient`, which allocates a relay with a credential and
//! sends a few messages through it to `turnutils_peer` (a UDP echo server). A credential counts
//! as accepted only when every message comes back through the relay, and as refused only when
//! the client says the allocation could not be made: any other outcome fails the test.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{node_config, node_with, Redis};
use common::{start_with, TestServer, PATIENCE};
use serde_json::{json, Value};
use switchboard_server::{Config, IceServer, TurnConfig, TurnCredential, TurnSecret};

const SECRET: &str = "a secret only switchboard and coturn know";
const REALM: &str = "switchboard.test";
/// Messages `turnutils_uclient` sends through the relay; all must come back.
const MESSAGES: u32 = 3;

#[tokio::test]
async fn joined_carries_a_credential_that_coturn_accepts() {
    let coturn = Coturn::start(SECRET);
    let peer = EchoPeer::start();
    let stun = IceServer::parse(&format!("stun:127.0.0.1:{}", coturn.port)).unwrap();
    let server = start_with(Config {
        ice_servers: vec![stun],
        ..turn_config(&coturn, SECRET, Duration::from_secs(3600))
    })
    .await;

    let before = unix_now();
    let (_alice, joined) = join(&server, "r", "ali:ce é").await;
    let after = unix_now();
    let ice = joined["data"]["iceServers"].as_array().unwrap().clone();
    assert_eq!(ice.len(), 2, "{ice:?}");
    assert_eq!(
        ice[0],
        json!({"urls": [format!("stun:127.0.0.1:{}", coturn.port)]})
    );
    assert_eq!(ice[1]["urls"], json!([coturn.url()]));
    let (username, password) = credential(&ice[1]);
    // The name, percent-encoded: no `:` but the one after the expiry.
    let (expires, identity) = username.split_once(':').unwrap();
    assert_eq!(identity, "ali%3Ace%20%C3%A9");
    let expires: u64 = expires.parse().unwrap();
    assert!(
        (before + 3600..=after + 3600).contains(&expires),
        "{expires}"
    );

    coturn.allocates(&peer, &username, &password).await;

    // Each join gets its own.
    let (_bob, joined) = join(&server, "r", "bob").await;
    let (username, password) = credential(&joined["data"]["iceServers"][1]);
    assert!(username.ends_with(":bob"), "{username}");
    coturn.allocates(&peer, &username, &password).await;
}

#[tokio::test]
async fn expired_and_wrong_secret_credentials_are_refused() {
    let coturn = Coturn::start(SECRET);
    let peer = EchoPeer::start();
    let secret = TurnSecret::new(SECRET).unwrap();
    let now = unix_now();

    // The control: the same minting, valid and unexpired, is accepted.
    let fresh = TurnCredential::mint(&secret, "alice", now + 600);
    coturn
        .allocates(&peer, &fresh.username, &fresh.password)
        .await;

    let expired = TurnCredential::mint(&secret, "alice", now - 60);
    coturn
        .refuses(&peer, &expired.username, &expired.password)
        .await;
    let other = TurnSecret::new("some other secret").unwrap();
    let forged = TurnCredential::mint(&other, "alice", now + 600);
    coturn
        .refuses(&peer, &forged.username, &forged.password)
        .await;
}

#[tokio::test]
async fn the_http_route_mints_credentials_coturn_accepts() {
    let coturn = Coturn::start(SECRET);
    let peer = EchoPeer::start();
    let server = start_with(turn_config(&coturn, SECRET, Duration::from_secs(600))).await;

    let before = unix_now();
    let response = server.get("/turn/credentials?name=carol").await;
    let after = unix_now();
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let body = response.json();
    let username = body["username"].as_str().unwrap();
    let password = body["password"].as_str().unwrap();
    assert_eq!(body["ttl"], 600);
    assert_eq!(body["uris"], json!([coturn.url()]));
    assert_eq!(
        body["iceServers"],
        json!([{"urls": [coturn.url()], "username": username, "credential": password}])
    );
    let (expires, identity) = username.split_once(':').unwrap();
    assert_eq!(identity, "carol");
    let expires: u64 = expires.parse().unwrap();
    assert!((before + 600..=after + 600).contains(&expires), "{expires}");
    coturn.allocates(&peer, username, password).await;

    let anonymous = server.get("/turn/credentials").await.json();
    assert!(
        anonymous["username"]
            .as_str()
            .unwrap()
            .ends_with(":anonymous"),
        "{anonymous}"
    );
    assert_eq!(server.get("/turn/credentials?name=").await.status, 400);

    let plain = start_with(Config::for_tests()).await;
    assert_eq!(plain.get("/turn/credentials").await.status, 404);
}

/// `joined` is made by the hub of the node the peer is on, so in a cluster it carries that
/// node's minted credential; the password is checked with the secret (the minting itself is
/// checked against coturn above and against OpenSSL in the unit tests).
#[tokio::test]
async fn in_a_cluster_each_node_mints_for_its_own_joiners() {
    let redis = Redis::new();
    let turn = TurnConfig {
        secret: TurnSecret::new(SECRET).unwrap(),
        urls: vec!["turn:127.0.0.1:3478?transport=udp".to_owned()],
        ttl: Duration::from_secs(3600),
    };
    let lease = Duration::from_secs(10);
    let a = node_with(Config {
        turn: Some(turn.clone()),
        ..node_config(&redis, 0xa, lease)
    })
    .await;
    let b = node_with(Config {
        turn: Some(turn.clone()),
        ..node_config(&redis, 0xb, lease)
    })
    .await;
    let (_alice, _) = join(&a, "shared", "alice").await;
    let (_bob, joined) = join(&b, "shared", "bob").await;
    assert_eq!(joined["data"]["users"], json!(["alice", "bob"]));
    let (username, password) = credential(&joined["data"]["iceServers"][0]);
    assert!(username.ends_with(":bob"), "{username}");
    assert_eq!(password, turn.secret.password(&username));
}

fn turn_config(coturn: &Coturn, secret: &str, ttl: Duration) -> Config {
    Config {
        turn: Some(TurnConfig {
            secret: TurnSecret::new(secret).unwrap(),
            urls: vec![coturn.url()],
            ttl,
        }),
        ..Config::for_tests()
    }
}

async fn join(server: &TestServer, room: &str, name: &str) -> (common::Client, Value) {
    let mut client = server.connect("/conference").await;
    client
        .send_json(json!({"type":"join-room","data":{"roomId":room,"username":name}}))
        .await;
    let joined = client.expect("joined").await;
    (client, joined)
}

/// The username and credential of one `iceServers` entry.
fn credential(entry: &Value) -> (String, String) {
    let username = entry["username"]
        .as_str()
        .unwrap_or_else(|| panic!("{entry}"));
    let password = entry["credential"]
        .as_str()
        .unwrap_or_else(|| panic!("{entry}"));
    (username.to_owned(), password.to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A free UDP port on 127.0.0.1 (the OS picks it; the caller binds it right after).
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-{what}-{}-{:x}",
        std::process::id(),
        switchboard_server::random_node_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A coturn of this test's own: UDP and TCP on one loopback port, relaying on loopback, TURN
/// REST credentials only, no TLS, no admin CLI, its pid file and database in a scratch
/// folder. Killed by its pid when dropped.
struct Coturn {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        let mut last_log = String::new();
        // The port is free when picked; if another process takes it first, try another.
        for _ in 0..3 {
            let dir = scratch_dir("coturn");
            let port = free_udp_port();
            let log = std::fs::File::create(dir.join("turnserver.log")).unwrap();
            let child = Command::new("turnserver")
                .arg("-n") // no configuration file: only these flags
                .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
                .arg(format!("--listening-port={port}"))
                .arg("--use-auth-secret")
                .arg(format!("--static-auth-secret={secret}"))
                .arg(format!("--realm={REALM}"))
                // The echo peer is on loopback, which coturn refuses to relay to by default.
                .arg("--allow-loopback-peers")
                .args(["--no-cli", "--no-tls", "--no-dtls"])
                .args(["--log-file=stdout", "--simple-log"])
                .arg(format!(
                    "--pidfile={}",
                    dir.join("turnserver.pid").display()
                ))
                .arg(format!("--db={}", dir.join("turndb").display()))
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .expect("turnserver is installed (scripts/test.sh installs coturn)");
            let mut coturn = Coturn { port, child, dir };
            if coturn.answers_stun() {
                return coturn;
            }
            last_log = coturn.log();
            coturn.kill();
        }
        panic!("turnserver did not start:\n{last_log}");
    }

    fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    /// Waits until coturn answers a STUN Binding request on its UDP port; false if it exited
    /// or stayed silent.
    fn answers_stun(&mut self) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // Binding request: type 0x0001, no attributes, the magic cookie, a transaction id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"switchboard!");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let _ = socket.send_to(&request, ("127.0.0.1", self.port));
            let mut reply = [0u8; 512];
            if let Ok((n, _)) = socket.recv_from(&mut reply) {
                // A Binding success response (0x0101) to our transaction.
                if n >= 20 && reply[..2] == [0x01, 0x01] && reply[8..20] == request[8..20] {
                    return true;
                }
            }
        }
        false
    }

    /// The credential allocates a relay, and every message comes back through it.
    async fn allocates(&self, peer: &EchoPeer, username: &str, password: &str) {
        let (success, output) = self.uclient(peer, username, password).await;
        let echoed = format!("tot_recv_msgs={MESSAGES}");
        assert!(
            success && output.contains(&echoed) && !output.contains("Cannot complete Allocation"),
            "{username} was not accepted:\n{output}\n{}",
            self.log()
        );
    }

    /// coturn refuses the credential: no allocation, and the client fails.
    async fn refuses(&self, peer: &EchoPeer, username: &str, password: &str) {
        let (success, output) = self.uclient(peer, username, password).await;
        assert!(
            !success && output.contains("Cannot complete Allocation"),
            "{username} was not refused:\n{output}"
        );
    }

    /// Runs `turnutils_uclient` with one client (`-m 1`), no RTCP allocation (`-c`: one relay
    /// per credential), `MESSAGES` messages to the echo peer; returns whether it exited 0 and
    /// what it printed.
    async fn uclient(&self, peer: &EchoPeer, username: &str, password: &str) -> (bool, String) {
        let mut command = Command::new("turnutils_uclient");
        command
            .args(["-c", "-m", "1", "-n", &MESSAGES.to_string()])
            .args(["-p", &self.port.to_string()])
            .args(["-u", username, "-w", password])
            .args(["-e", "127.0.0.1", "-r", &peer.port.to_string()])
            .arg("127.0.0.1");
        tokio::task::spawn_blocking(move || run_bounded(command))
            .await
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("turnserver.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `turnutils_peer`: a UDP echo server on loopback, the far end of the relay. Killed by its pid
/// when dropped.
struct EchoPeer {
    port: u16,
    child: Child,
}

impl EchoPeer {
    fn start() -> EchoPeer {
        for _ in 0..3 {
            let port = free_udp_port();
            let child = Command::new("turnutils_peer")
                .args(["-L", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("turnutils_peer is installed (coturn ships it)");
            let mut peer = EchoPeer { port, child };
            if peer.echoes() {
                return peer;
            }
            let _ = peer.child.kill();
            let _ = peer.child.wait();
        }
        panic!("turnutils_peer did not start");
    }

    fn echoes(&mut self) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let _ = socket.send_to(b"ping", ("127.0.0.1", self.port));
            let mut reply = [0u8; 16];
            if matches!(socket.recv_from(&mut reply), Ok((4, _))) && &reply[..4] == b"ping" {
                return true;
            }
        }
        false
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, killing it (and failing the test) if it takes longer than a
/// generous bound. Returns whether it exited 0, and its stdout and stderr.
fn run_bounded(mut command: Command) -> (bool, String) {
    let dir = scratch_dir("uclient");
    let out = dir.join("out");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = command
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("turnutils_uclient is installed (coturn ships it)");
    let deadline = Instant::now() + PATIENCE * 6;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "turnutils_uclient did not finish:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status.success(), output)
}
