//! The `switchboard` binary itself: the seeds' `PORT` convention, `--help` listing every
//! limit, and SIGTERM closing sockets with 1001 and exiting 0.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, wait_ready, Process, BINARY};

#[test]
fn help_lists_every_limit() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--root-dialect",
        "--max-frame-bytes",
        "--outbox-capacity",
        "--max-message-rate",
        "--message-burst",
        "--rate-strikes",
        "--max-connections",
        "--max-connections-per-ip",
        "--header-read-timeout",
        "--handshake-rate",
        "--handshake-burst",
        "--http-rate",
        "--http-burst",
        "--join-timeout",
        "--stats-max-age",
        "--ping-interval",
        "--idle-timeout",
        "--write-timeout",
        "--drain-delay",
        "--shutdown-grace",
        "--cors-origin",
        "--ws-origin",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn port_from_env_then_sigterm_closes_sockets_and_exits_zero() {
    let port = free_port();
    let child = Command::new(BINARY)
        .env("PORT", port.to_string())
        .env_remove("SIGNALING_ADDR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Process(child);
    wait_ready(port);

    let (mut socket, _) =
        tungstenite::connect(format!("ws://127.0.0.1:{port}/conference")).unwrap();
    socket
        .send(tungstenite::Message::text(
            r#"{"type":"join-room","data":{"roomId":"r","username":"a"}}"#,
        ))
        .unwrap();
    let joined = socket.read().unwrap();
    assert!(joined.to_text().unwrap().starts_with(r#"{"type":"joined""#));

    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let close = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(error) => panic!("expected a close frame, got {error}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    let _ = socket.close(None);
    let _ = socket.flush();

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "switchboard did not exit after SIGTERM"
        );
        sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
}
