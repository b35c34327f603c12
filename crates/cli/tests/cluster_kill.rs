//! A node's process killed (SIGKILL, no goodbye): the other nodes' rooms hear each of its
//! peers leave exactly once, after its lease, and its names are free again. Real binaries,
//! a real `redis-server` on a unix socket of this test's own.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// A child process stopped by its pid when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    let child = Command::new(BINARY)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
        .args(["--node-id", id, "--cluster-lease", "3s"])
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
