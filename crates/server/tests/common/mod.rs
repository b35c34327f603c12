//! Test harness: the real server on an ephemeral loopback port, real WebSocket clients, and
//! a tiny HTTP/1.1 client. Every wait has a generous bound so a broken server fails the
//! test instead of hanging it; no bound is a performance assertion.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod cluster;
pub mod receiver;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any single expected thing may take before the test calls the server broken.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), switchboard_server::ServeError>>,
    /// In a two-node run: every node's address, taken in turn by each new client.
    nodes: Vec<SocketAddr>,
    turn: std::sync::atomic::AtomicUsize,
    /// In a two-node run: the other node and the Redis they share, kept alive.
    _cluster: Option<Box<(cluster::Redis, TestServer)>>,
}

/// The server for a black-box test: one server, or, with `SWITCHBOARD_TEST_NODES=2` in the
/// environment, two cluster nodes on a Redis of this test's own, whose clients alternate
/// between the nodes (the HTTP API is asked on the first). The same tests must pass both
/// ways: that is the cluster's promise (docs/scaling.md).
pub async fn start() -> TestServer {
    if std::env::var("SWITCHBOARD_TEST_NODES").as_deref() == Ok("2") {
        return two_nodes().await;
    }
    start_with(Config::for_tests()).await
}

async fn two_nodes() -> TestServer {
    let redis = cluster::Redis::new();
    let lease = Duration::from_secs(10);
    let mut config = cluster::node_config(&redis, 0xa, lease);
    config.media = Config::for_tests().media;
    let mut first = cluster::node_with(config).await;
    let mut config = cluster::node_config(&redis, 0xb, lease);
    config.media = Config::for_tests().media;
    let second = cluster::node_with(config).await;
    first.nodes = vec![first.addr, second.addr];
    first._cluster = Some(Box::new((redis, second)));
    first
}

pub async fn start_with(config: Config) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    serve_listener(listener, config)
}

/// The server on a listener the test bound itself (when it must know the port first).
pub fn serve_listener(listener: TcpListener, config: Config) -> TestServer {
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let stop = CancellationToken::new();
    let signal = stop.clone().cancelled_owned();
    let task = tokio::spawn(switchboard_server::serve(listener, config, signal));
    TestServer {
        addr,
        stop,
        task,
        nodes: vec![addr],
        turn: std::sync::atomic::AtomicUsize::new(0),
        _cluster: None,
    }
}

impl TestServer {
    /// A WebSocket URL on the next node in turn (the only one, on a single server).
    pub fn url(&self, path: &str) -> String {
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("ws://{}{}", self.nodes[turn % self.nodes.len()], path)
    }

    /// Opens a WebSocket to `path`, panicking if the upgrade is refused.
    pub async fn connect(&self, path: &str) -> Client {
        let (ws, _) = timeout(PATIENCE, tokio_tungstenite::connect_async(self.url(path)))
            .await
            .expect("upgrade in time")
            .unwrap_or_else(|e| panic!("upgrade to {path} failed: {e}"));
        Client { ws }
    }

    /// `connect`, for a name its last holder just gave up (a query-rooms `peer_id`). On one
    /// server the name is free once the room has heard the leave; across nodes the room may
    /// hear it from the leaver's node a moment before the leave is decided in Redis, where
    /// names are claimed: until then the upgrade is refused with 409, and only with 409.
    pub async fn connect_once_free(&self, path: &str) -> Client {
        timeout(PATIENCE, async {
            loop {
                match tokio_tungstenite::connect_async(self.url(path)).await {
                    Ok((ws, _)) => return Client { ws },
                    Err(tungstenite::Error::Http(response)) if response.status() == 409 => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(error) => panic!("upgrade to {path} failed: {error}"),
                }
            }
        })
        .await
        .expect("the name is freed")
    }

    /// Tries an upgrade that should be refused; returns the HTTP status and body.
    pub async fn refused(&self, path: &str) -> (u16, String) {
        self.refused_with(path, &[]).await
    }

    pub async fn refused_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use tungstenite::client::IntoClientRequest;
        let mut request = self.url(path).into_client_request().expect("valid request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("answer in time")
        {
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                (response.status().as_u16(), body.unwrap_or_default())
            }
            Err(other) => panic!("expected an HTTP refusal, got {other}"),
            Ok(_) => panic!("expected {path} to be refused, but it upgraded"),
        }
    }

    /// Opens a WebSocket with extra request headers (e.g. Origin).
    pub async fn connect_with(&self, path: &str, headers: &[(&str, &str)]) -> Client {
        use tungstenite::client::IntoClientRequest;
        let mut request = self.url(path).into_client_request().expect("valid request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("upgrade in time")
            .expect("upgrade accepted");
        Client { ws }
    }

    /// GET over plain HTTP/1.1; returns status, lower-cased headers and body.
    pub async fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    pub async fn request(&self, raw: &str) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream
            .write_all(raw.as_bytes())
            .await
            .expect("write request");
        let mut bytes = Vec::new();
        timeout(PATIENCE, stream.read_to_end(&mut bytes))
            .await
            .expect("response in time")
            .expect("read");
        Response::parse(&bytes)
    }

    /// Asks the server to shut down and waits for `serve` to return.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub async fn stopped(self) -> Result<(), switchboard_server::ServeError> {
        self.stop.cancel();
        timeout(PATIENCE * 3, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(bytes: &[u8]) -> Response {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a complete HTTP response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a frame");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send(&value.to_string()).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send a frame");
    }

    /// The next data frame, skipping pings and pongs.
    pub async fn next(&mut self) -> Message {
        loop {
            let frame = timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the socket is open")
                .expect("a valid frame");
            if !matches!(frame, Message::Ping(_) | Message::Pong(_)) {
                return frame;
            }
        }
    }

    /// The next frame's text, exactly as sent.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn json(&mut self) -> Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The next frame as JSON, which must have `type` = `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let value = self.json().await;
        assert_eq!(value["type"], kind, "unexpected frame: {value}");
        value
    }

    /// Reads until the server closes; returns the close frame (if one came).
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match timeout(PATIENCE, self.ws.next())
                .await
                .expect("close in time")
            {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads until the server closes, returning its close code.
    pub async fn close_code(&mut self) -> u16 {
        let frame = self.closed().await.expect("a close frame");
        u16::from(frame.code)
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Joins `room` on the conference dialect as `name`, returning the client after `joined`.
pub async fn conference(server: &TestServer, room: &str, name: &str) -> Client {
    let mut client = server.connect("/conference").await;
    client
        .send_json(serde_json::json!({"type":"join-room","data":{"roomId":room,"username":name}}))
        .await;
    client.expect("joined").await;
    client
}

/// A line of the Prometheus text with `name{labels}` as its prefix: its value.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// A conference `joined` frame without its `routerRtpCapabilities` (which must be there, as
/// media is on in tests), for comparing the rest exactly. media.rs checks the capabilities.
pub fn without_media(mut joined: Value) -> Value {
    let data = joined["data"].as_object_mut().expect("joined has data");
    let capabilities = data.remove("routerRtpCapabilities");
    assert!(
        capabilities.is_some_and(|c| c["codecs"].is_array()),
        "joined lacks routerRtpCapabilities"
    );
    joined
}

/// A TCP connection to the server from a chosen loopback source address (127.0.0.2 and up
/// are loopback on Linux), for limits that are kept per client address.
pub async fn tcp_from(server: &TestServer, source: std::net::IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind a loopback source address");
    timeout(PATIENCE, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Opens a WebSocket to `path` from `source`, panicking if the upgrade is refused.
pub async fn connect_from(server: &TestServer, source: std::net::IpAddr, path: &str) -> Client {
    let stream = tcp_from(server, source).await;
    let (ws, _) = timeout(
        PATIENCE,
        tokio_tungstenite::client_async(server.url(path), MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade in time")
    .unwrap_or_else(|e| panic!("upgrade to {path} from {source} failed: {e}"));
    Client { ws }
}

/// GET over plain HTTP/1.1 from `source`.
pub async fn get_from(server: &TestServer, source: std::net::IpAddr, path: &str) -> Response {
    let mut stream = tcp_from(server, source).await;
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream
        .write_all(raw.as_bytes())
        .await
        .expect("write request");
    let mut bytes = Vec::new();
    timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("response in time")
        .expect("read");
    Response::parse(&bytes)
}
