//! `switchboard healthcheck [URL]`: one plain-HTTP GET, for container health checks on images
//! without curl. Exit 0 on a 200 answer, an error (exit 1) on anything else.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

/// The whole check's bound on each step (connect, write, read).
const TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `url` (`http://HOST[:PORT][/PATH]`) and succeeds on HTTP 200.
pub(crate) fn check(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url:?}: healthcheck speaks plain http:// only");
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let socket = address
        .to_socket_addrs()
        .with_context(|| format!("resolving {address}"))?
        .next()
        .with_context(|| format!("{address} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, TIMEOUT)
        .with_context(|| format!("connecting to {socket}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: switchboard-healthcheck\r\n\r\n"
    )?;
    // The status line is all we need; a few hundred bytes hold it.
    let mut head = [0; 256];
    let n = stream.read(&mut head).context("reading the answer")?;
    let answer = String::from_utf8_lossy(&head[..n]);
    let status = answer.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        println!("{url}: {status}");
        Ok(())
    } else {
        bail!("{url}: {status:?}")
    }
}
