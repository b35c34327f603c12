//! Protocol hygiene (issue #12) on a real server over real sockets: identifiers that are not
//! UTF-8 (400), text frames that are not UTF-8 (1007), an oversized frame (1009, then the
//! connection ends at once), slow headers (per-IP count from accept, header read timeout),
//! `/api/stats` from a shared snapshot, the per-address HTTP and handshake rates (429), and
//! the join timeout (1008); and the WebSocket layer (issue #16): frames however the bytes are
//! cut, pings and closes answered, bytes that are not frames (1002), upgrades that are not
//! RFC 6455 (426, 400, 405). No test passes or fails on a duration: where "promptly" matters,
//! the test orders two server events instead.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{conference, connect_from, get_from, metric, start, start_with, tcp_from, PATIENCE};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use switchboard_server::{Config, DialectKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn identifiers_that_are_not_utf8_after_percent_decoding_get_400() {
    let server = start().await;
    for path in [
        "/ws?peer_id=ab%FF%FEcd&room=r",
        "/ws?peer_id=alice&room=%C3%28",
        "/ws?%FF=x&peer_id=alice&room=r",
        "/broadcast/ab%FF%FEcd",
    ] {
        let (status, body) = server.refused(path).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    // Percent-encoded UTF-8 is fine, and means what it encodes.
    let _alice = server.connect("/ws?peer_id=al%C3%A9&room=r").await;
    let stats = server.get("/api/stats").await.json();
    assert_eq!(stats["users"][0]["id"], "al\u{e9}", "{stats}");

    // The root path speaking query-rooms reads the same identifiers the same way.
    let server = start_with(Config {
        root_dialect: DialectKind::QueryRooms,
        ..Config::for_tests()
    })
    .await;
    let (status, body) = server.refused("/?peer_id=ab%FF%FEcd&room=r").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let server = start().await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.expect("user-joined").await;
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    bob.ws.send(Message::Frame(invalid)).await.unwrap();
    let close = bob
        .closed()
        .await
        .expect("a close frame, not a dropped connection");
    assert_eq!(u16::from(close.code), 1007, "{close:?}");
    assert_eq!(alice.expect("user-left").await["data"]["user"], "bob");
}

#[tokio::test]
async fn an_oversized_frame_gets_1009_and_the_connection_ends_at_once() {
    // The sentinel is a conference socket that never joins: the server closes it at its
    // join timeout. The old behaviour held the oversized socket's connection open for 2 s
    // after the close frame, past the sentinel's close; now its end comes first.
    let server = start_with(Config {
        max_frame_bytes: 1024,
        join_timeout: Duration::from_millis(1500),
        ..Config::for_tests()
    })
    .await;
    let mut sentinel = server.connect("/conference").await;
    let mut tcp = upgraded(&server, "/broadcast").await;
    tcp.write_all(&masked_frame(0x1, &[b'x'; 4000]))
        .await
        .unwrap();
    // Nothing more from the client: not its close frame, not its FIN.
    let mut bytes = Vec::new();
    timeout(PATIENCE, tcp.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .expect("a clean end of stream, not a reset");
    assert_eq!(
        server_frames(&bytes),
        [(0x8, close_payload(1009, "frame too large"))],
        "exactly one close frame, then the end"
    );
    assert!(
        sentinel.ws.next().now_or_never().is_none(),
        "the connection ended only after a later server event (the sentinel's join timeout)"
    );
    assert_eq!(sentinel.close_code().await, 1008);
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="frame_size"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn slow_headers_count_against_the_address_and_are_cut_off() {
    const CAP: usize = 8;
    const EXTRA: usize = 100;
    let server = start_with(Config {
        max_connections_per_ip: CAP,
        header_read_timeout: Duration::from_secs(2),
        ..Config::for_tests()
    })
    .await;
    // One address opens far more half-sent requests than its cap.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(partial_request(&server).await);
    }
    let mut refused = 0;
    for _ in 0..EXTRA {
        let mut tcp = partial_request(&server).await;
        let mut bytes = Vec::new();
        timeout(PATIENCE, tcp.read_to_end(&mut bytes))
            .await
            .expect("a connection over the cap is closed")
            .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
        refused += 1;
    }
    // The half-sent requests fill the address's cap: a real client from it is refused too...
    let (status, _) = server.refused("/conference").await;
    assert_eq!(status, 429);
    // ...while a client from another address is served as usual.
    let mut neighbour = connect_from(&server, NEIGHBOUR, "/conference").await;
    neighbour
        .send_json(json!({"type":"join-room","data":{"roomId":"r","username":"n"}}))
        .await;
    neighbour.expect("joined").await;
    // The server closes every half-sent request when its headers are overdue.
    for mut tcp in held {
        let mut bytes = Vec::new();
        timeout(PATIENCE, tcp.read_to_end(&mut bytes))
            .await
            .expect("the server closes a request whose headers never came")
            .unwrap();
    }
    let metrics = get_from(&server, NEIGHBOUR, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="header_timeout"}"#
        ),
        Some(CAP as f64),
        "each held request was closed by the header timeout"
    );
    assert!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="connections_per_ip"}"#
        ) >= Some((refused + 1) as f64)
    );
    // The descriptors came back: the address may connect again.
    let mut again = server.connect("/pairing").await;
    again.expect("connected").await;
}

#[tokio::test]
async fn stats_come_from_one_snapshot_however_many_ask() {
    let server = start_with(Config {
        stats_max_age: Duration::from_secs(3600),
        ..Config::for_tests()
    })
    .await;
    let _alice = conference(&server, "r", "alice").await;
    let callers: Vec<_> = (0..40)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                tcp.write_all(b"GET /api/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut bytes = Vec::new();
                tcp.read_to_end(&mut bytes).await.unwrap();
                String::from_utf8(bytes).unwrap()
            })
        })
        .collect();
    for caller in callers {
        let response = timeout(PATIENCE, caller).await.unwrap().unwrap();
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        assert!(response.contains(r#""connectedUsers":1"#), "{response}");
    }
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(&metrics, "switchboard_stats_snapshots_total"),
        Some(1.0),
        "forty concurrent callers, one build"
    );
    // A later change is not seen until the snapshot is stale.
    let _bob = conference(&server, "r", "bob").await;
    let stats = server.get("/api/stats").await.json();
    assert_eq!(
        stats["connectedUsers"], 1,
        "served from the snapshot: {stats}"
    );

    // At the default age (1 s) a snapshot is rebuilt once it is stale.
    let server = start_with(Config {
        stats_max_age: Config::default().stats_max_age,
        ..Config::for_tests()
    })
    .await;
    assert_eq!(server.get("/api/stats").await.json()["connectedUsers"], 0);
    let _carol = conference(&server, "r", "carol").await;
    let mut seen = 0;
    for _ in 0..100 {
        seen = server.get("/api/stats").await.json()["connectedUsers"]
            .as_u64()
            .unwrap();
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 1, "the snapshot was never rebuilt");
}

#[tokio::test]
async fn http_routes_are_rate_limited_per_address() {
    let server = start_with(Config {
        http_rate: 0, // the bucket never refills: the count is exact
        http_burst: 5,
        ..Config::for_tests()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").await.status, 200);
    }
    let limited = server.get("/api/stats").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(server.get("/healthz").await.status, 429);
    // Upgrades are not HTTP API requests: they have their own rate.
    let mut pairing = server.connect("/pairing").await;
    pairing.expect("connected").await;
    // Another address has its own bucket.
    let metrics = get_from(&server, NEIGHBOUR, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metric(
            &metrics.body,
            r#"switchboard_limit_hits_total{limit="http_rate"}"#
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn upgrades_are_rate_limited_per_address() {
    let server = start_with(Config {
        handshake_rate: 0, // the bucket never refills: the count is exact
        handshake_burst: 3,
        ..Config::for_tests()
    })
    .await;
    let _a = server.connect("/pairing").await;
    let _b = server.connect("/conference").await;
    let _c = server.connect("/broadcast").await;
    let (status, body) = server.refused("/pairing").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("handshakes"), "{body}");
    // Another address upgrades as usual; plain HTTP from the limited one still works.
    let mut neighbour = connect_from(&server, NEIGHBOUR, "/pairing").await;
    neighbour.expect("connected").await;
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="handshake_rate"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_room_socket_that_never_joins_is_closed_with_1008() {
    let server = start_with(Config {
        join_timeout: Duration::from_millis(500),
        ..Config::for_tests()
    })
    .await;
    // Opened first, so their join deadlines pass before the idle sockets' do.
    let mut member = conference(&server, "r", "member").await;
    let mut pairing = server.connect("/pairing").await;
    pairing.expect("connected").await;
    let mut idle_conference = server.connect("/conference").await;
    let mut idle_relay = server.connect("/room-relay").await;
    for idle in [&mut idle_conference, &mut idle_relay] {
        let close = idle.closed().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1008, "{close:?}");
        assert_eq!(close.reason.as_str(), "join timeout: no room joined");
    }
    // The member joined in time and stays; pairing has no rooms and no join timeout.
    member
        .send_json(json!({"type":"chat-message","data":{"text":"still here"}}))
        .await;
    assert_eq!(
        member.expect("chat-message").await["data"]["text"],
        "still here"
    );
    pairing.send(r#"{"type":"ping","to":"nobody"}"#).await;
    assert_eq!(
        pairing.expect("error").await["data"]["code"],
        "user_not_found"
    );
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            r#"switchboard_limit_hits_total{limit="join_timeout"}"#
        ),
        Some(2.0)
    );
}

/// A raw TCP connection from 127.0.0.1 that has sent a request line and one header, and
/// then nothing: a slow-headers client.
async fn partial_request(server: &common::TestServer) -> TcpStream {
    let mut tcp = tcp_from(server, HOME).await;
    tcp.write_all(b"GET /ws?peer_id=x&room=r HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    tcp
}

/// A raw TCP connection upgraded to a WebSocket at `path`, with the 101 response read.
async fn upgraded(server: &common::TestServer, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        timeout(PATIENCE, tcp.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    tcp
}

/// A client frame: FIN set, `opcode`, masked as RFC 6455 requires of clients.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The server's frames in a raw byte stream (unmasked, as servers send them).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            len => (usize::from(len), 2),
        };
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    assert!(bytes.is_empty(), "a truncated frame: {bytes:?}");
    frames
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// The next frame the server sends on a raw connection (servers do not mask).
async fn server_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    timeout(PATIENCE, tcp.read_exact(&mut head))
        .await
        .expect("a frame from the server")
        .unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0; 2];
            tcp.read_exact(&mut len).await.unwrap();
            usize::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0; 8];
            tcp.read_exact(&mut len).await.unwrap();
            usize::try_from(u64::from_be_bytes(len)).unwrap()
        }
        len => usize::from(len),
    };
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// A client frame without FIN: the first fragment of a message, or a middle one.
fn fragment(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked_frame(opcode, payload);
    frame[0] &= 0x7f;
    frame
}

#[tokio::test]
async fn frames_are_read_however_the_bytes_arrive() {
    let server = start().await;
    let mut bob = server.connect("/ws?peer_id=bob&room=r").await;
    let mut alice = upgraded(&server, "/ws?peer_id=alice&room=r").await;
    assert_eq!(bob.json().await["type"], "peer_joined");
    let offer = |n: usize| {
        let sdp = format!("{n}:{}", "v=0 ".repeat(300));
        json!({"type":"offer","to":"bob","payload":{"sdp": sdp}})
    };
    let heard = |value: serde_json::Value, n: usize| {
        assert_eq!(value["from"], "alice", "{value}");
        assert!(
            value["payload"]["sdp"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{n}:v=0 ")),
            "{value}"
        );
    };
    // One frame, a byte per write.
    for byte in masked_frame(0x1, offer(1).to_string().as_bytes()) {
        alice.write_all(&[byte]).await.unwrap();
        alice.flush().await.unwrap();
    }
    heard(bob.json().await, 1);
    // Three frames in one write.
    let three: Vec<u8> = (2..5)
        .flat_map(|n| masked_frame(0x1, offer(n).to_string().as_bytes()))
        .collect();
    alice.write_all(&three).await.unwrap();
    for n in 2..5 {
        heard(bob.json().await, n);
    }
    // A message in three fragments, with a ping between them: the ping is answered with its
    // own payload, and the message arrives whole.
    let text = offer(5).to_string();
    let (first, rest) = text.as_bytes().split_at(100);
    let (middle, last) = rest.split_at(500);
    let mut bytes = fragment(0x1, first);
    bytes.extend(masked_frame(0x9, b"are you there"));
    bytes.extend(fragment(0x0, middle));
    alice.write_all(&bytes).await.unwrap();
    assert_eq!(
        server_frame(&mut alice).await,
        (0x8A, b"are you there".to_vec())
    );
    alice.write_all(&masked_frame(0x0, last)).await.unwrap();
    heard(bob.json().await, 5);
    // A close is answered with the client's code, and the connection ends.
    alice
        .write_all(&masked_frame(0x8, &close_payload(1000, "bye")))
        .await
        .unwrap();
    assert_eq!(
        server_frame(&mut alice).await,
        (0x88, 1000u16.to_be_bytes().to_vec())
    );
    let mut after = Vec::new();
    timeout(PATIENCE, alice.read_to_end(&mut after))
        .await
        .expect("the server ends the connection")
        .unwrap();
    assert_eq!(after, b"");
    assert_eq!(bob.json().await["type"], "peer_left");
}

#[tokio::test]
async fn bytes_that_are_not_websocket_frames_close_with_1002() {
    let server = start().await;
    let mut unmasked = masked_frame(0x1, b"{}");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    let mut reserved_bit = masked_frame(0x1, b"{}");
    reserved_bit[0] |= 0x40;
    let cases = [
        ("an unmasked frame", unmasked),
        ("a reserved bit", reserved_bit),
        ("a reserved opcode", masked_frame(0x3, b"{}")),
        ("a fragmented ping", fragment(0x9, b"x")),
        ("a ping of 126 bytes", masked_frame(0x9, &[b'x'; 126])),
        ("a continuation of nothing", masked_frame(0x0, b"{}")),
        (
            "a close code never sent",
            masked_frame(0x8, &close_payload(1005, "")),
        ),
    ];
    for (case, bytes) in cases {
        let mut tcp = upgraded(&server, "/broadcast").await;
        tcp.write_all(&bytes).await.unwrap();
        let (head, payload) = server_frame(&mut tcp).await;
        assert_eq!(head, 0x88, "{case}");
        assert_eq!(payload, close_payload(1002, "protocol error"), "{case}");
    }
}

#[tokio::test]
async fn upgrades_that_are_not_rfc_6455_are_refused_with_the_reason() {
    let server = start().await;
    let request = |method: &str, version: &str, key: &str| {
        format!(
            "{method} /conference HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
             Connection: close, Upgrade\r\nSec-WebSocket-Version: {version}\r\n{key}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    // Another version: 426, naming the one this server speaks (RFC 6455 4.4).
    let refused = server.request(&request("GET", "8", key)).await;
    assert_eq!(refused.status, 426, "{}", refused.body);
    assert_eq!(refused.header("sec-websocket-version"), Some("13"));
    // No key, or not a GET.
    assert_eq!(server.request(&request("GET", "13", "")).await.status, 400);
    assert_eq!(
        server.request(&request("POST", "13", key)).await.status,
        405
    );
}
