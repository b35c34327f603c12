//! What the binary's tests share: the binary, a child process stopped when dropped, a free
//! loopback port, and `/healthz` polled with a generous bound (a debug build on a loaded
//! machine), never a performance assertion.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The `switchboard` binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// A child process, killed and reaped by its pid when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Whether a server on `port` answers `/healthz` with 200.
pub fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// Whether the server on `port` became healthy within 30 s.
pub fn becomes_healthy(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if healthy(port) {
            return true;
        }
        sleep(Duration::from_millis(50));
    }
    false
}

/// Waits until the server on `port` is healthy; panics if it never is.
pub fn wait_ready(port: u16) {
    assert!(
        becomes_healthy(port),
        "switchboard did not become ready on port {port}"
    );
}
