//! Operations: health, readiness, metrics, the stats API, CORS, the Origin allow-list, the
//! landing page, and graceful shutdown with open sockets.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use common::{conference, metric, start, start_with};
use serde_json::json;
use switchboard_server::Config;

#[tokio::test]
async fn health_and_readiness() {
    let server = start().await;
    let health = server.get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = server.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn metrics_count_connections_frames_errors_and_handshakes() {
    let server = start().await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut bob = conference(&server, "r", "bob").await;
    alice.expect("user-joined").await;
    let _pairing = server.connect("/pairing").await;
    bob.send("{oops").await;
    bob.expect("error").await;
    alice
        .send(r#"{"type":"webrtc-offer","data":{"target":"bob","payload":{"sdp":"v=0"}}}"#)
        .await;
    bob.expect("webrtc-offer").await;

    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = response.body;
    let value =
        |series: &str| metric(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
    assert_eq!(
        value(r#"switchboard_connections{dialect="conference"}"#),
        2.0
    );
    assert_eq!(value(r#"switchboard_connections{dialect="pairing"}"#), 1.0);
    assert_eq!(
        value(r#"switchboard_connections{dialect="broadcast"}"#),
        0.0
    );
    assert_eq!(
        value(r#"switchboard_room_members{dialect="conference"}"#),
        2.0
    );
    assert_eq!(value("switchboard_rooms"), 1.0);
    // join, join, bad frame, offer.
    assert_eq!(
        value(r#"switchboard_frames_in_total{dialect="conference"}"#),
        4.0
    );
    assert!(value(r#"switchboard_frames_out_total{dialect="conference"}"#) >= 5.0);
    assert!(value(r#"switchboard_bytes_in_total{dialect="conference"}"#) > 0.0);
    assert_eq!(
        value(r#"switchboard_errors_total{dialect="conference",code="bad_json"}"#),
        1.0
    );
    assert_eq!(value("switchboard_handshake_seconds_count"), 3.0);
    assert_eq!(
        value(r#"switchboard_evictions_total{dialect="conference"}"#),
        0.0
    );
}

#[tokio::test]
async fn stats_list_every_connection_bounded_oldest_first() {
    let server = start().await;
    let _alice = conference(&server, "room-a", "alice").await;
    let mut pairing = server.connect("/pairing").await;
    let greeting = pairing.expect("connected").await;
    let _lobby = server.connect("/room-relay").await;
    let _channel = server.connect("/broadcast/news").await;

    let response = server.get("/api/stats").await;
    assert_eq!(response.status, 200);
    let stats = response.json();
    assert_eq!(stats["connectedUsers"], 4);
    let users = stats["users"].as_array().unwrap();
    assert_eq!(users.len(), 4);
    let alice = &users[0];
    assert_eq!(alice["id"], "alice");
    assert_eq!(alice["state"], "connected");
    assert_eq!(alice["targetUser"], json!(null));
    assert_eq!(alice["room"], "room-a");
    assert_eq!(alice["dialect"], "conference");
    assert_eq!(alice["ip"], "127.0.0.1");
    assert!(humantime::parse_rfc3339(alice["connectedAt"].as_str().unwrap()).is_ok());
    let user = &users[1];
    assert_eq!(user["id"], greeting["data"]["userId"]);
    assert_eq!(
        (user["state"].as_str(), user["dialect"].as_str()),
        (Some("idle"), Some("pairing"))
    );
    assert!(user.get("room").is_none(), "pairing has no rooms");
    assert_eq!(
        (users[2]["state"].as_str(), &users[2]["room"]),
        (Some("idle"), &json!(null))
    );
    assert_eq!(users[3]["channel"], "news");

    let limited = server.get("/api/stats?limit=2").await.json();
    assert_eq!(limited["connectedUsers"], 4);
    assert_eq!(limited["users"].as_array().unwrap().len(), 2);
    let capped = server.get("/api/stats?limit=100000").await.json();
    assert_eq!(capped["limit"], 1000);
    assert_eq!(server.get("/api/stats?limit=nope").await.status, 400);
}

#[tokio::test]
async fn http_routes_carry_cors_headers() {
    let server = start().await;
    let response = server
        .request("GET /api/stats HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));

    let config = Config {
        cors_origins: vec!["https://app.example".into()],
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let allowed = server
        .request("GET /api/stats HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = server
        .request("GET /api/stats HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn the_origin_allow_list_refuses_foreign_pages() {
    let config = Config {
        ws_origins: vec!["https://app.example".into()],
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let (status, _) = server
        .refused_with("/conference", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(status, 403);
    let (status, _) = server.refused("/conference").await;
    assert_eq!(status, 403, "no Origin is not an allowed Origin");
    let mut client = server
        .connect_with("/conference", &[("origin", "https://app.example")])
        .await;
    client
        .send(r#"{"type":"join-room","data":{"roomId":"r","username":"a"}}"#)
        .await;
    client.expect("joined").await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_returns() {
    let server = start().await;
    let mut alice = conference(&server, "r", "alice").await;
    let mut pairing = server.connect("/pairing").await;
    pairing.expect("connected").await;
    let mut broadcast = server.connect("/broadcast").await;
    server.stop();
    for client in [&mut alice, &mut pairing, &mut broadcast] {
        let frame = client.closed().await.expect("a close frame");
        assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (1001, "server shutting down")
        );
    }
    server.stopped().await.expect("serve returns Ok");
}

#[tokio::test]
async fn while_draining_readyz_is_503_and_new_sockets_are_refused() {
    let config = Config {
        drain_delay: Duration::from_secs(3),
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let mut alice = conference(&server, "r", "alice").await;
    server.stop();
    assert_eq!(alice.close_code().await, 1001);
    // alice's close proves the drain has begun; the listener stays open for the delay.
    let ready = server.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "draining\n"));
    let (status, _) = server.refused("/conference").await;
    assert_eq!(status, 503);
    server
        .stopped()
        .await
        .expect("serve returns Ok after the drain");
}

#[tokio::test]
async fn the_browser_face_is_served_with_types_caching_and_a_strict_csp() {
    let server = start().await;
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/client.js", "text/javascript"),
        ("/test.html", "text/html"),
        ("/test.js", "text/javascript"),
        ("/dashboard", "text/html"),
        ("/dashboard.js", "text/javascript"),
    ] {
        let response = server.get(path).await;
        assert_eq!(response.status, 200, "{path}");
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
        let csp = response.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        let etag = response.header("etag").unwrap().to_owned();
        let again = server
            .request(&format!("GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"))
            .await;
        assert_eq!(again.status, 304, "{path} revalidates");
    }
    assert_eq!(server.get("/nope.js").await.status, 404);
}

#[tokio::test]
async fn joined_carries_the_configured_ice_servers() {
    let ice_servers = vec![
        switchboard_server::IceServer::parse("stun:127.0.0.1:3478").unwrap(),
        switchboard_server::IceServer::parse("turn:127.0.0.1:3478?transport=udp|user|secret")
            .unwrap(),
    ];
    let server = start_with(Config {
        ice_servers,
        ..Config::for_tests()
    })
    .await;
    let mut client = server.connect("/conference").await;
    client
        .send(r#"{"type":"join-room","data":{"roomId":"r","username":"a"}}"#)
        .await;
    let joined = client.expect("joined").await;
    assert_eq!(
        joined["data"]["iceServers"],
        json!([
            {"urls":["stun:127.0.0.1:3478"]},
            {"urls":["turn:127.0.0.1:3478?transport=udp"],"username":"user","credential":"secret"}
        ])
    );
    // Without --ice-server (and without media), `joined` is exactly the contract's frame.
    let server = start_with(Config {
        media: false,
        ..Config::for_tests()
    })
    .await;
    let mut client = server.connect("/conference").await;
    client
        .send(r#"{"type":"join-room","data":{"roomId":"r","username":"a"}}"#)
        .await;
    assert_eq!(
        client.text().await,
        r#"{"type":"joined","data":{"roomId":"r","users":["a"]}}"#
    );
    assert!(switchboard_server::IceServer::parse("http://x").is_err());
    assert!(
        switchboard_server::IceServer::parse("turn:x:3478").is_err(),
        "TURN needs credentials"
    );
}

#[tokio::test]
async fn the_root_path_speaks_the_chosen_dialect() {
    use switchboard_server::DialectKind;
    let server = start_with(Config {
        root_dialect: DialectKind::Pairing,
        ..Config::for_tests()
    })
    .await;
    let mut client = server.connect("/").await;
    client.expect("connected").await;

    let config = Config {
        root_dialect: DialectKind::QueryRooms,
        ..Config::for_tests()
    };
    let server = start_with(config).await;
    let _first = server.connect("/?peer_id=p1&room=r").await;
    let (status, _) = server.refused("/?peer_id=p1&room=r").await;
    assert_eq!(status, 409);
    let (status, body) = server.refused("/?room=r").await;
    assert_eq!(status, 400, "{body}");
}
