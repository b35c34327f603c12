//! What systemd sees of the binary: readiness and reload notices on `$NOTIFY_SOCKET`
//! (`Type=notify`), SIGHUP reloading the log level from the config file without stopping the
//! server, and the packaged unit passing `systemd-analyze verify`.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, healthy, Process, BINARY};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/switchboard.service"
);
/// Generous: a debug build under a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("switchboard-systemd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The next notice on the socket (bounded wait).
fn notice(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buffer = [0; 4096];
    let n = socket.recv(&mut buffer).expect("a notice in time");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("{what} never happened");
}

#[test]
fn ready_reload_and_stop_are_notified_and_sighup_reloads_the_log_level() {
    let dir = scratch("notify");
    let notify_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let port = free_port();
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\nno-media = true\nlog-level = \"info\"\n"),
    )
    .unwrap();
    let log = dir.join("log");
    let child = Command::new(BINARY)
        .args(["--config", config.to_str().unwrap()])
        .env_clear()
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Process(child);
    assert!(notice(&socket).starts_with("READY=1"));
    wait_for("/healthz", || healthy(port));

    // Reload: the new log level applies at once, and the server goes on serving.
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\nno-media = true\nlog-level = \"debug\"\n"),
    )
    .unwrap();
    signal(&server.0, "HUP");
    assert!(notice(&socket).starts_with("RELOADING=1"));
    assert!(notice(&socket).starts_with("READY=1"));
    let logged = || std::fs::read_to_string(&log).unwrap();
    wait_for("the reload's log line", || {
        logged().contains("SIGHUP: log level set")
    });
    assert!(logged().contains("debug"), "{}", logged());
    assert!(healthy(port), "SIGHUP stopped the server");

    // A broken file on reload is reported and changes nothing.
    std::fs::write(&config, "bogus = 1\n").unwrap();
    signal(&server.0, "HUP");
    assert!(notice(&socket).starts_with("RELOADING=1"));
    assert!(notice(&socket).starts_with("READY=1"));
    wait_for("the error's log line", || {
        logged().contains("nothing reloaded")
    });
    assert!(healthy(port));

    signal(&server.0, "TERM");
    assert!(notice(&socket).starts_with("STOPPING=1"));
    let mut server = server;
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_whose_media_cannot_start_never_says_ready() {
    let dir = scratch("not-ready");
    let notify_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    // The SFU's UDP port is taken, so the start fails after the TCP listener is bound.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let media = taken.local_addr().unwrap().to_string();
    let child = Command::new(BINARY)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--media-listen", &media, "--media-workers", "1"])
        .env_clear()
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("media UDP socket"), "{error}");
    socket.set_nonblocking(true).unwrap();
    let mut buffer = [0; 4096];
    let heard = socket
        .recv(&mut buffer)
        .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    assert!(heard.is_err(), "systemd was told {heard:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_without_tls_or_config_does_not_stop_the_server() {
    let port = free_port();
    let child = Command::new(BINARY)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Process(child);
    wait_for("/healthz", || healthy(port));
    for _ in 0..3 {
        signal(&server.0, "HUP");
    }
    sleep(Duration::from_millis(300));
    assert!(server.0.try_wait().unwrap().is_none(), "SIGHUP killed it");
    assert!(healthy(port));
}

/// `systemd-analyze verify` on the unit, its `ExecStart` (and `ExecStartPre`) pointed at this
/// build's binary, as verify wants executables that exist.
#[test]
fn the_unit_verifies() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/switchboard"), "{unit}");
    let dir = scratch("verify");
    let copy = dir.join("switchboard.service");
    std::fs::write(&copy, unit.replace("/usr/bin/switchboard", BINARY)).unwrap();
    let output = Command::new("systemd-analyze")
        // The man page is the .deb's to install (scripts/test-deb.sh verifies with it).
        .args(["verify", "--man=no", copy.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian: systemd) is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Lines about other units on this machine are not ours to judge.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("switchboard.service"))
        .collect();
    assert!(output.status.success() && ours.is_empty(), "{stderr}");
    for setting in [
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=1048576",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "#AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
