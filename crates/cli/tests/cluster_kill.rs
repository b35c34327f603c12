//! A node's process killed (SIGKILL, no goodbye): the other nodes' rooms hear each of its
//! peers leave exactly once, after its lease, and its names are free again. Real binaries,
//! a real `redis-server` on a unix socket of this test's own.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

use common::{free_port, Process, BINARY};

fn redis(dir: &Path) -> Process {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("redis.sock");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        sleep(Duration::from_millis(25));
    }
    assert!(socket.exists(), "redis-server did not start");
    Process(child)
}

fn node(dir: &Path, port: u16, id: &str) -> Process {
    node_with(dir, port, id, &[])
}

fn node_with(dir: &Path, port: u16, id: &str, extra: &[&str]) -> Process {
    let child = Command::new(BINARY)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
        .args(["--node-id", id, "--cluster-lease", "3s"])
        .args(extra)
        .arg("--redis")
        .arg(format!("redis+unix://{}", dir.join("redis.sock").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200") {
                return node;
            }
        }
        sleep(Duration::from_millis(50));
    }
    panic!("node {id} did not become ready");
}

fn join(port: u16, room: &str, name: &str) -> (WebSocket<TcpStream>, serde_like::Frame) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Generous: the lease (3 s) plus the reaper's scan must fit, on a busy machine too.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/conference"), stream).unwrap();
    ws.send(Message::text(format!(
        r#"{{"type":"join-room","data":{{"roomId":"{room}","username":"{name}"}}}}"#
    )))
    .unwrap();
    let joined = next(&mut ws);
    (ws, joined)
}

fn next(ws: &mut WebSocket<TcpStream>) -> serde_like::Frame {
    loop {
        match ws.read().expect("a frame before the read timeout") {
            Message::Text(text) => return serde_like::Frame(text.to_string()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A pairing user on `port`, with the id it was greeted with.
fn pairing_user(port: u16) -> (WebSocket<TcpStream>, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/pairing"), stream).unwrap();
    let greeting = next(&mut ws).0;
    let id = greeting
        .split(r#""userId":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (ws, id)
}

/// Frames compared as text: the conference dialect's encoding is deterministic.
mod serde_like {
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Frame(pub(crate) String);
}

fn frame(text: &str) -> serde_like::Frame {
    serde_like::Frame(text.to_owned())
}

#[test]
fn a_killed_node_s_peers_leave_once_and_free_their_names() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchboard-kill-{}", std::process::id()));
    let _redis = redis(&dir);
    let (port_a, port_b) = (free_port(), free_port());
    let _a = node(&dir, port_a, "a1");
    let mut b = node(&dir, port_b, "b2");

    let (mut alice, _) = join(port_a, "r", "alice");
    let (_bob, joined) = join(port_b, "r", "bob");
    assert!(
        joined.0.contains(r#""users":["alice","bob"]"#),
        "{joined:?}"
    );
    let (_carol, _) = join(port_b, "r", "carol");
    assert_eq!(
        next(&mut alice),
        frame(r#"{"type":"user-joined","data":{"user":"bob"}}"#)
    );
    assert_eq!(
        next(&mut alice),
        frame(r#"{"type":"user-joined","data":{"user":"carol"}}"#)
    );

    // A pairing across the nodes: x on A pinged y on B, which answered.
    let (mut x, x_id) = pairing_user(port_a);
    let (mut y, y_id) = pairing_user(port_b);
    x.send(Message::text(format!(
        r#"{{"type":"ping","to":"{y_id}","data":{{}}}}"#
    )))
    .unwrap();
    assert!(next(&mut y).0.contains(r#""type":"ping""#));
    y.send(Message::text(format!(
        r#"{{"type":"pong","to":"{x_id}","data":{{}}}}"#
    )))
    .unwrap();
    assert!(next(&mut x).0.contains(r#""type":"pong""#));

    b.0.kill().unwrap(); // SIGKILL: no drain, no goodbye
    b.0.wait().unwrap();

    // x hears its partner go, once.
    assert_eq!(
        next(&mut x),
        frame(&format!(
            r#"{{"type":"disconnect","from":"{y_id}","to":"{x_id}","data":{{"reason":"peer_gone"}}}}"#
        ))
    );

    let mut left = [next(&mut alice), next(&mut alice)];
    left.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        left,
        [
            frame(r#"{"type":"user-left","data":{"user":"bob"}}"#),
            frame(r#"{"type":"user-left","data":{"user":"carol"}}"#),
        ]
    );
    // The dead node's names are free, and nobody is told of a leave twice: the next thing
    // alice hears is the newcomer.
    let (_again, joined) = join(port_a, "r", "bob");
    assert!(
        joined.0.contains(r#""users":["alice","bob"]"#),
        "{joined:?}"
    );
    assert_eq!(
        next(&mut alice),
        frame(r#"{"type":"user-joined","data":{"user":"bob"}}"#)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resumable conference socket on `port` and its `session` token.
fn resumable(port: u16) -> (WebSocket<TcpStream>, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://127.0.0.1:{port}/conference?resume=1"), stream).unwrap();
    let session = json(&mut ws);
    assert_eq!(session["type"], "session", "{session}");
    let token = session["data"]["token"].as_str().unwrap().to_owned();
    (ws, token)
}

fn json(ws: &mut WebSocket<TcpStream>) -> serde_json::Value {
    serde_json::from_str(&next(ws).0).unwrap()
}

fn send(ws: &mut WebSocket<TcpStream>, value: &serde_json::Value) {
    ws.send(Message::text(value.to_string())).unwrap();
}

fn chat(text: &str) -> serde_json::Value {
    serde_json::json!({"type":"chat-message","data":{"text":text}})
}

/// Resumes `token` from `seq` on `port`: the socket, after `resumed`, and the new token.
fn resume(port: u16, token: &str, seq: u64) -> (WebSocket<TcpStream>, serde_json::Value) {
    let (mut ws, _) = resumable(port);
    send(
        &mut ws,
        &serde_json::json!({"type":"resume","data":{"token":token,"seq":seq}}),
    );
    let answer = json(&mut ws);
    (ws, answer)
}

/// The next numbered frame, which must be `seq`.
fn numbered(ws: &mut WebSocket<TcpStream>, seq: u64) -> serde_json::Value {
    let frame = json(ws);
    assert_eq!(frame["seq"], seq, "in order, none twice: {frame}");
    frame
}

#[test]
fn resumable_sessions_and_killed_nodes() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchboard-kill-resume-{}", std::process::id()));
    let _redis = redis(&dir);
    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let mut a = node(&dir, port_a, "a1");
    let mut b = node(&dir, port_b, "b2");

    // Alice's session lives on A; bob is on A too.
    let (mut alice, token) = resumable(port_a);
    send(
        &mut alice,
        &serde_json::json!({"type":"join-room","data":{"roomId":"r","username":"alice"}}),
    );
    assert_eq!(numbered(&mut alice, 1)["type"], "joined");
    let (mut bob, _) = join(port_a, "r", "bob");
    assert_eq!(numbered(&mut alice, 2)["type"], "user-joined");

    // Her socket drops; she comes back through B, which carries her to A.
    drop(alice);
    let (mut alice, resumed) = resume(port_b, &token, 2);
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    let token = resumed["data"]["token"].as_str().unwrap().to_owned();
    send(&mut bob, &chat("before the kill"));
    assert!(next(&mut bob).0.contains("before the kill"));
    assert_eq!(numbered(&mut alice, 3)["data"]["text"], "before the kill");

    // The node that carries her socket is killed: her session lives on, on A, and what bob
    // says meanwhile waits for her there.
    b.0.kill().unwrap(); // SIGKILL: no drain, no goodbye
    b.0.wait().unwrap();
    for n in 1..=3 {
        send(&mut bob, &chat(&format!("after {n}")));
        assert!(next(&mut bob).0.contains(&format!("after {n}")));
    }
    drop(alice);
    let (mut alice, resumed) = resume(port_a, &token, 3);
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["next"], 4);
    for n in 1..=3 {
        assert_eq!(
            numbered(&mut alice, 3 + n)["data"]["text"],
            format!("after {n}")
        );
    }
    let token = resumed["data"]["token"].as_str().unwrap().to_owned();
    send(&mut alice, &chat("back"));
    assert!(next(&mut bob).0.contains("back"), "bob heard no leave");
    assert_eq!(numbered(&mut alice, 7)["data"]["text"], "back");

    // The session's own node is killed: a durable session outlives it. The room hears bob
    // (not resumable) leave once and nothing of alice, and what dave says meanwhile is kept
    // for her in Redis: she takes her session over on C and misses nothing.
    let _c = node(&dir, port_c, "c3");
    let (mut dave, _) = join(port_c, "r", "dave");
    assert_eq!(numbered(&mut alice, 8)["type"], "user-joined");
    send(&mut dave, &chat("d1"));
    assert!(next(&mut dave).0.contains("d1"));
    assert_eq!(numbered(&mut alice, 9)["data"]["text"], "d1");
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    drop((alice, bob));
    // Said while A's lease still runs (its death not yet known), then after.
    send(&mut dave, &chat("d2"));
    assert!(next(&mut dave).0.contains("d2"));
    assert_eq!(
        next(&mut dave),
        frame(r#"{"type":"user-left","data":{"user":"bob"}}"#)
    );
    send(&mut dave, &chat("d3"));
    assert!(next(&mut dave).0.contains("d3"));
    // Her client processed frame 8 only: 9 is replayed, then what was kept for her (bob
    // left with A).
    let (mut alice, resumed) = resume(port_c, &token, 8);
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["next"], 9);
    assert_eq!(resumed["data"]["roomId"], "r");
    assert_eq!(numbered(&mut alice, 9)["data"]["text"], "d1");
    assert_eq!(numbered(&mut alice, 10)["data"]["text"], "d2");
    let left = numbered(&mut alice, 11);
    assert_eq!(
        (&left["type"], &left["data"]["user"]),
        (&"user-left".into(), &"bob".into())
    );
    assert_eq!(numbered(&mut alice, 12)["data"]["text"], "d3");
    let token = resumed["data"]["token"].as_str().unwrap().to_owned();
    send(&mut alice, &chat("taken over"));
    let heard = next(&mut dave);
    assert!(
        heard.0.contains("taken over"),
        "no leave, no join: {heard:?}"
    );
    assert_eq!(numbered(&mut alice, 13)["data"]["text"], "taken over");

    // A durable session nobody takes over ends with its window (2 s here): the room hears
    // it leave once, and its token opens nothing any more.
    let port_d = free_port();
    let mut d = node_with(&dir, port_d, "d4", &["--resume-window", "2s"]);
    let (mut erin, erin_token) = resumable(port_d);
    send(
        &mut erin,
        &serde_json::json!({"type":"join-room","data":{"roomId":"r","username":"erin"}}),
    );
    assert_eq!(numbered(&mut erin, 1)["type"], "joined");
    assert_eq!(
        next(&mut dave),
        frame(r#"{"type":"user-joined","data":{"user":"erin"}}"#)
    );
    assert_eq!(numbered(&mut alice, 14)["type"], "user-joined");
    d.0.kill().unwrap();
    d.0.wait().unwrap();
    drop(erin);
    assert_eq!(
        next(&mut dave),
        frame(r#"{"type":"user-left","data":{"user":"erin"}}"#)
    );
    assert_eq!(numbered(&mut alice, 15)["type"], "user-left");
    send(&mut alice, &chat("last"));
    assert!(next(&mut dave).0.contains("last"), "erin left once");
    let (_, failed) = resume(port_c, &erin_token, 1);
    assert_eq!(failed["data"]["code"], "resume_failed", "{failed}");
    // Alice's session is C's now: its token works there as on any node.
    drop(alice);
    let (mut alice, resumed) = resume(port_c, &token, 16);
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    send(&mut dave, &chat("still here"));
    assert!(next(&mut dave).0.contains("still here"));
    assert_eq!(numbered(&mut alice, 17)["data"]["text"], "still here");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` (`STOP`, `CONT`) to `node`'s process.
fn signal(node: &Process, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(node.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_session_whose_node_hangs_is_taken_over_and_the_hung_node_lets_go() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchboard-kill-hang-{}", std::process::id()));
    let _redis = redis(&dir);
    let (port_a, port_c) = (free_port(), free_port());
    let a = node(&dir, port_a, "a1");
    let _c = node(&dir, port_c, "c3");
    let (mut alice, token) = resumable(port_a);
    send(
        &mut alice,
        &serde_json::json!({"type":"join-room","data":{"roomId":"h","username":"alice"}}),
    );
    assert_eq!(numbered(&mut alice, 1)["type"], "joined");
    let (mut dave, _) = join(port_c, "h", "dave");
    assert_eq!(numbered(&mut alice, 2)["type"], "user-joined");

    // A hangs (SIGSTOP): its lease still runs, but it answers nobody. The resume on C asks
    // for it, hears nothing, and takes the session over anyway (A is fenced out of it).
    signal(&a, "STOP");
    drop(alice);
    send(&mut dave, &chat("while A hangs"));
    assert!(next(&mut dave).0.contains("while A hangs"));
    let (mut alice, resumed) = resume(port_c, &token, 2);
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["roomId"], "h");
    assert_eq!(numbered(&mut alice, 3)["data"]["text"], "while A hangs");

    // A wakes up: its old hold on the session ends without a word to the room (its leave
    // and its claims find the seat someone else's), and the session carries on on C.
    signal(&a, "CONT");
    sleep(Duration::from_secs(4)); // A's lease: it is reaped or heartbeats again by then
    send(&mut alice, &chat("after A woke"));
    let heard = next(&mut dave);
    assert!(heard.0.contains("after A woke"), "no leave: {heard:?}");
    assert_eq!(numbered(&mut alice, 4)["data"]["text"], "after A woke");
    send(&mut dave, &chat("dave"));
    assert!(next(&mut dave).0.contains("dave"));
    assert_eq!(numbered(&mut alice, 5)["data"]["text"], "dave");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dead_node_s_session_that_overflowed_or_is_resumed_from_nowhere_ends_once() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchboard-kill-bounds-{}", std::process::id()));
    let _redis = redis(&dir);
    let (port_a, port_c) = (free_port(), free_port());
    // Four frames kept at most, in the replay buffer and in the inbox alike.
    let mut a = node_with(&dir, port_a, "a1", &["--resume-buffer", "4"]);
    let _c = node(&dir, port_c, "c3");
    let open = |name: &str| {
        let (mut ws, token) = resumable(port_a);
        send(
            &mut ws,
            &serde_json::json!({"type":"join-room","data":{"roomId":"b","username":name}}),
        );
        assert_eq!(numbered(&mut ws, 1)["type"], "joined");
        (ws, token)
    };
    let (alice, alice_token) = open("alice");
    let (mut erin, erin_token) = open("erin");
    let (mut dave, _) = join(port_c, "b", "dave");
    assert_eq!(numbered(&mut erin, 2)["type"], "user-joined");
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    drop((alice, erin));

    // More than four frames for them while they are parked: their inboxes overflow, and a
    // resume then fails; each leaves the room once (with the resume, or with the window).
    for n in 1..=5 {
        send(&mut dave, &chat(&format!("{n}")));
        assert!(next(&mut dave).0.contains(&format!("\"{n}\"")));
    }
    let (_, failed) = resume(port_c, &alice_token, 1);
    assert_eq!(failed["data"]["code"], "resume_failed", "{failed}");
    // A position the session never reached is refused the same way.
    let (_, failed) = resume(port_c, &erin_token, 99);
    assert_eq!(failed["data"]["code"], "resume_failed", "{failed}");
    let mut left = [next(&mut dave), next(&mut dave)];
    left.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        left,
        [
            frame(r#"{"type":"user-left","data":{"user":"alice"}}"#),
            frame(r#"{"type":"user-left","data":{"user":"erin"}}"#),
        ]
    );
    send(&mut dave, &chat("alone"));
    assert!(next(&mut dave).0.contains("alone"), "each left once");
    let _ = std::fs::remove_dir_all(&dir);
}
