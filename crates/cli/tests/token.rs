//! `switchboard token` and `--auth` end to end through the binary: tokens it mints (from a
//! secret file, and from an Ed25519 key) open the server, its grants hold, and no token ever
//! reaches the log, at trace level, in either log format.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, Process, BINARY};

/// A directory removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mint(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "switchboard token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    token
}

/// An HTTP GET with optional headers: the status code.
fn get(port: u16, path: &str, headers: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn serve(port: u16, log: &Path, format: &str, auth: &[&str]) -> Process {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(BINARY)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
        .args(["--log-format", format, "--auth", "required"])
        .args(auth)
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let server = Process(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_ready(port) != 200 {
        assert!(Instant::now() < deadline, "switchboard did not start");
        sleep(Duration::from_millis(50));
    }
    server
}

fn get_ready(port: u16) -> u16 {
    if TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0;
    }
    get(port, "/healthz", "")
}

fn join(port: u16, token: &str, room: &str, name: &str) -> String {
    let url = format!("ws://127.0.0.1:{port}/conference?access_token={token}");
    let (mut socket, _) = tungstenite::connect(url).unwrap();
    let join =
        format!(r#"{{"type":"join-room","data":{{"roomId":"{room}","username":"{name}"}}}}"#);
    socket.send(tungstenite::Message::text(join)).unwrap();
    let answer = socket.read().unwrap().into_text().unwrap().to_string();
    let _ = socket.close(None);
    answer
}

#[test]
fn minted_tokens_open_the_server_and_never_reach_the_log() {
    let scratch = Scratch::new("token");
    let secret = scratch.write("secret", "s3cret shared with the app server\n");
    let secret = secret.to_str().unwrap();
    let user = mint(&[
        "--secret-file",
        secret,
        "--kid",
        "k1",
        "--room",
        "r",
        "--name",
        "alice",
        "--ttl",
        "10m",
    ]);
    let admin = mint(&[
        "--secret-file",
        secret,
        "--kid",
        "k1",
        "--sub",
        "ops",
        "--admin",
    ]);
    let other_secret = scratch.write("other", "not the server's secret");
    let forged = mint(&[
        "--secret-file",
        other_secret.to_str().unwrap(),
        "--kid",
        "k1",
        "--room",
        "r",
        "--name",
        "alice",
    ]);

    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = scratch.write("ed.key", &ed.serialize_pem());
    let public = scratch.write("ed.pub", &ed.public_key_pem());
    let from_key = mint(&[
        "--key-file",
        private.to_str().unwrap(),
        "--kid",
        "ed",
        "--room",
        "r",
        "--name",
        "bob",
    ]);

    for format in ["pretty", "json"] {
        let port = free_port();
        let log = scratch.0.join(format!("{format}.log"));
        let server = serve(
            port,
            &log,
            format,
            &[
                "--auth-secret-file",
                &format!("k1={secret}"),
                "--auth-public-key",
                &format!("ed={}", public.display()),
            ],
        );
        assert!(join(port, &user, "r", "alice").contains(r#""type":"joined""#));
        assert!(join(port, &from_key, "r", "bob").contains(r#""type":"joined""#));
        let refused = join(port, &user, "r", "mallory");
        assert!(refused.contains(r#""code":"forbidden""#), "{refused}");
        let url = format!("ws://127.0.0.1:{port}/conference?access_token={forged}");
        match tungstenite::connect(url) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("a forged token upgraded: {:?}", other.map(|_| ())),
        }
        assert_eq!(
            get(
                port,
                "/api/stats",
                &format!("Authorization: Bearer {user}\r\n")
            ),
            403
        );
        assert_eq!(
            get(
                port,
                "/api/stats",
                &format!("Authorization: Bearer {admin}\r\n")
            ),
            200
        );
        assert_eq!(
            get(port, &format!("/metrics?access_token={admin}"), ""),
            200
        );
        drop(server);

        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.len() > 1000,
            "trace logging produced little:\n{logged}"
        );
        for token in [&user, &admin, &forged, &from_key] {
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                !logged.contains(signature),
                "{format} log holds a token:\n{logged}"
            );
        }
    }
}

#[test]
fn bad_key_flags_stop_the_server_with_a_clear_message() {
    let scratch = Scratch::new("badkey");
    let junk = scratch.write("junk.pem", "not a key");
    for (args, expected) in [
        (vec!["--auth", "required"], "needs at least one"),
        (
            vec!["--auth", "optional", "--auth-secret", "nokid"],
            "--auth-secret takes KID=VALUE",
        ),
        (
            vec![
                "--auth",
                "optional",
                "--auth-public-key",
                &format!("k={}", junk.display()),
            ],
            "not an Ed25519 or P-256 public key",
        ),
        (
            vec!["--max-room-members", "0"],
            "--max-room-members must be at least 1",
        ),
    ] {
        let output = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", "--no-media"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
