//! What the packages ship, checked against the binary: the man page (current, every flag),
//! shell completions, `--version` with the git revision, `healthcheck`, and the Dockerfile's
//! runtime stage using only flags and subcommands the binary accepts.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every long flag `--help` lists (but --help and --version).
fn flags() -> Vec<String> {
    let help = stdout(&run(&["--help"]));
    let flags: Vec<String> = help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|flag| !flag.is_empty() && !["help", "version"].contains(flag))
        .map(str::to_owned)
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    flags
}

#[test]
fn the_man_page_is_current_and_lists_every_flag() {
    let page = std::fs::read_to_string(format!("{ROOT}/packaging/switchboard.1")).unwrap();
    assert!(
        page == stdout(&run(&["man"])),
        "packaging/switchboard.1 is out of date: regenerate it with\n  \
         cargo run -- man > packaging/switchboard.1"
    );
    for flag in flags() {
        let roff = format!("\\fB\\-\\-{}\\fR", flag.replace('-', "\\-"));
        assert!(page.contains(&roff), "the man page lacks --{flag}");
    }
    assert!(page.contains("/etc/switchboard/switchboard.toml"));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        for word in ["max-room-members", "check-config", "webhook-secret"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert!(!run(&["completions", "cmd.exe"]).status.success());
}

#[test]
fn version_names_the_git_revision() {
    let version = stdout(&run(&["--version"]));
    let revision = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8(output.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        version.trim(),
        format!("switchboard {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}

struct Server(Child);

impl Drop for Server {
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

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

#[test]
fn healthcheck_asks_readyz() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/readyz");
    assert!(
        !run(&["healthcheck", &url]).status.success(),
        "nothing listens yet"
    );
    let _server = Server(
        Command::new(BINARY)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "the server did not start");
        sleep(Duration::from_millis(50));
    }
    let output = run(&["healthcheck", &url]);
    assert!(output.status.success(), "{output:?}");
    let missing = format!("http://127.0.0.1:{port}/no-such-page");
    assert!(!run(&["healthcheck", &missing]).status.success());
    assert!(!run(&["healthcheck", "https://127.0.0.1/readyz"])
        .status
        .success());
}
