//! Access tokens (issue #12, `spec/auth.md`) on a real server over real sockets: 401 for a
//! missing or bad token, 403 for a good one that does not reach this far, `forbidden` for a
//! join or media request outside its grants, the admin routes, and the member cap.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::time::Duration;

use common::{metric, start_with, TestServer};
use serde_json::json;
use switchboard_auth::{mint, mint_until, unix_now, Scope, SigningKey};
use switchboard_server::{AuthKey, AuthMode, Config};

const SECRET: &str = "correct horse battery staple";

fn signer() -> SigningKey {
    SigningKey::secret("k1", SECRET.as_bytes()).unwrap()
}

fn token(subject: &str, scope: Scope) -> String {
    mint(&signer(), subject, scope, Duration::from_secs(600)).unwrap()
}

fn room_token(room: &str, name: &str) -> String {
    token(
        name,
        Scope {
            room: Some(room.into()),
            ..Scope::default()
        },
    )
}

async fn server(mode: AuthMode) -> TestServer {
    start_with(Config {
        auth: mode,
        auth_keys: vec![
            AuthKey::secret("k0", "the retired key"),
            AuthKey::secret("k1", SECRET),
        ],
        ..Config::for_tests()
    })
    .await
}

async fn join(client: &mut common::Client, room: &str, name: &str) -> serde_json::Value {
    client
        .send_json(json!({"type":"join-room","data":{"roomId":room,"username":name},"rid":1}))
        .await;
    client.json().await
}

#[tokio::test]
async fn required_refuses_upgrades_without_a_valid_token() {
    let server = server(AuthMode::Required).await;
    let expired = mint_until(&signer(), "alice", Scope::default(), unix_now() - 120).unwrap();
    let forged = mint(
        &SigningKey::secret("k1", b"a guess").unwrap(),
        "alice",
        Scope::default(),
        Duration::from_secs(600),
    )
    .unwrap();
    for (path, why) in [
        ("/conference".to_owned(), "a token is required"),
        ("/conference?access_token=not.a.jwt".to_owned(), "not valid"),
        (format!("/conference?access_token={expired}"), "expired"),
        (
            format!("/conference?access_token={forged}"),
            "bad signature",
        ),
        ("/pairing".to_owned(), "a token is required"),
        ("/broadcast/news".to_owned(), "a token is required"),
        ("/ws?peer_id=alice&room=r".to_owned(), "a token is required"),
    ] {
        let (status, body) = server.refused(&path).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains(why), "{path}: {body}");
    }
    let response = server
        .request(
            "GET /conference HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"switchboard\"")
    );
    let metrics = server
        .get(&format!(
            "/metrics?access_token={}",
            token(
                "ops",
                Scope {
                    admin: true,
                    ..Scope::default()
                }
            )
        ))
        .await
        .body;
    assert_eq!(
        metric(
            &metrics,
            "switchboard_auth_refused_total{reason=\"expired\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "switchboard_auth_refused_total{reason=\"missing\"}"
        )
        .unwrap()
            >= 4.0
    );
    assert_eq!(
        metric(
            &metrics,
            "switchboard_auth_refused_total{reason=\"invalid\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_join_must_be_to_a_granted_room_under_the_tokens_name() {
    let server = server(AuthMode::Required).await;
    let alice = room_token("team-*", "alice");
    // The token may come as a query parameter or as a Bearer header.
    let mut by_query = server
        .connect(&format!("/conference?access_token={alice}"))
        .await;
    let refused = join(&mut by_query, "lobby", "alice").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    assert_eq!(refused["rid"], 1);
    let refused = join(&mut by_query, "team-a", "bob").await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let joined = join(&mut by_query, "team-a", "alice").await;
    assert_eq!(joined["type"], "joined", "{joined}");

    let bob = room_token("team-a", "bob");
    let mut by_header = server
        .connect_with(
            "/room-relay",
            &[("authorization", &format!("Bearer {bob}"))],
        )
        .await;
    by_header
        .send_json(json!({"type":"join-room","roomId":"team-b","sender":"bob"}))
        .await;
    let refused = by_header.json().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    by_header
        .send_json(json!({"type":"join-room","roomId":"team-a","sender":"bob"}))
        .await;
    let joined = by_header.json().await;
    assert_eq!(joined["type"], "join-success", "{joined}");
    // Alice hears Bob, a room-relay peer, join her conference room.
    let heard = by_query.expect("user-joined").await;
    assert_eq!(heard["data"]["user"], "bob", "{heard}");
}

#[tokio::test]
async fn grants_gate_dialects_channels_pairing_and_query_rooms_with_403() {
    let server = server(AuthMode::Required).await;
    let conference_only = token(
        "alice",
        Scope {
            room: Some("r".into()),
            dialects: Some(vec!["conference".into()]),
            ..Scope::default()
        },
    );
    let (status, body) = server
        .refused(&format!("/room-relay?access_token={conference_only}"))
        .await;
    assert_eq!(
        (status, body.as_str()),
        (403, "forbidden: the token does not grant this dialect")
    );
    let _fine = server
        .connect(&format!("/conference?access_token={conference_only}"))
        .await;

    let alice = room_token("r", "alice");
    for path in [
        format!("/ws?peer_id=alice&room=elsewhere&access_token={alice}"),
        format!("/ws?peer_id=mallory&room=r&access_token={alice}"),
        format!("/pairing?access_token={alice}"),
        format!("/broadcast/news?access_token={alice}"),
    ] {
        let (status, body) = server.refused(&path).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let _alice = server
        .connect(&format!("/ws?peer_id=alice&room=r&access_token={alice}"))
        .await;
    let stats = server
        .get(&format!(
            "/api/stats?access_token={}",
            token(
                "ops",
                Scope {
                    admin: true,
                    ..Scope::default()
                }
            )
        ))
        .await
        .json();
    let query_rooms: Vec<_> = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|user| user["dialect"] == "query-rooms")
        .collect();
    assert_eq!(query_rooms.len(), 1, "{stats}");
    assert_eq!(query_rooms[0]["id"], "alice", "{stats}");

    let reader = token(
        "reader",
        Scope {
            channel: Some("news*".into()),
            pair: true,
            ..Scope::default()
        },
    );
    let _news = server
        .connect(&format!("/broadcast/news-eu?access_token={reader}"))
        .await;
    let mut pairing = server
        .connect(&format!("/pairing?access_token={reader}"))
        .await;
    let hello = pairing.json().await;
    assert_eq!(hello["type"], "connected", "{hello}");
    let (status, _) = server
        .refused(&format!("/broadcast/sports?access_token={reader}"))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn media_requests_need_publish_and_subscribe() {
    let server = server(AuthMode::Required).await;
    let viewer = room_token("r", "viewer");
    let mut client = server
        .connect(&format!("/conference?access_token={viewer}"))
        .await;
    assert_eq!(join(&mut client, "r", "viewer").await["type"], "joined");
    for (kind, rid) in [("produce", 2), ("consume", 3)] {
        client
            .send_json(json!({"type":kind,"data":{"transportId":"t1"},"rid":rid}))
            .await;
        let refused = client.json().await;
        assert_eq!(refused["data"]["code"], "forbidden", "{kind}: {refused}");
        assert_eq!(refused["rid"], rid);
    }
    // The media path itself is open: creating a transport needs no grant.
    client
        .send_json(json!({"type":"get-router-rtp-capabilities","rid":4}))
        .await;
    let capabilities = client.json().await;
    assert_ne!(capabilities["type"], "error", "{capabilities}");

    let publisher = token(
        "presenter",
        Scope {
            room: Some("r".into()),
            publish: true,
            subscribe: true,
            ..Scope::default()
        },
    );
    let mut client = server
        .connect(&format!("/conference?access_token={publisher}"))
        .await;
    assert_eq!(join(&mut client, "r", "presenter").await["type"], "joined");
    for (kind, rid) in [("produce", 2), ("consume", 3)] {
        client
            .send_json(json!({"type":kind,"data":{"transportId":"t1"},"rid":rid}))
            .await;
        let answer = client.json().await;
        // Past the grant, the SFU judges the request itself.
        assert_eq!(answer["data"]["code"], "bad_parameters", "{kind}: {answer}");
    }
}

#[tokio::test]
async fn admin_routes_need_an_admin_token_only_when_tokens_are_required() {
    let server = server(AuthMode::Required).await;
    let admin = token(
        "ops",
        Scope {
            admin: true,
            ..Scope::default()
        },
    );
    let user = room_token("r", "alice");
    for path in ["/api/stats", "/metrics", "/dashboard"] {
        assert_eq!(server.get(path).await.status, 401, "{path}");
        let sep = if path.contains('?') { '&' } else { '?' };
        let forbidden = server.get(&format!("{path}{sep}access_token={user}")).await;
        assert_eq!(forbidden.status, 403, "{path}");
        let allowed = server
            .request(&format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.body);
    }
    // The rest of the site stays public: health checks and the web app.
    for path in ["/healthz", "/readyz", "/client.js"] {
        assert_eq!(server.get(path).await.status, 200, "{path}");
    }

    let optional = server_optional().await;
    assert_eq!(optional.get("/api/stats").await.status, 200);
}

async fn server_optional() -> TestServer {
    server(AuthMode::Optional).await
}

#[tokio::test]
async fn optional_admits_without_a_token_and_holds_a_given_one_to_its_grants() {
    let server = server_optional().await;
    let mut anyone = server.connect("/conference").await;
    assert_eq!(join(&mut anyone, "r", "whoever").await["type"], "joined");
    let (status, _) = server.refused("/conference?access_token=junk").await;
    assert_eq!(status, 401, "a token that is given must be valid");
    let alice = room_token("r", "alice");
    let mut alice = server
        .connect(&format!("/conference?access_token={alice}"))
        .await;
    assert_eq!(
        join(&mut alice, "r", "someone-else").await["data"]["code"],
        "forbidden"
    );
    // With auth off, tokens are not even read.
    let off = start_with(Config::for_tests()).await;
    let _any = off.connect("/conference?access_token=junk").await;
}

#[tokio::test]
async fn a_room_takes_at_most_max_room_members() {
    let server = start_with(Config {
        max_room_members: Some(2),
        ..Config::for_tests()
    })
    .await;
    let _alice = common::conference(&server, "r", "alice").await;
    let _bob = server.connect("/ws?peer_id=bob&room=r").await;
    let mut carol = server.connect("/conference").await;
    let full = join(&mut carol, "r", "carol").await;
    assert_eq!(full["data"]["code"], "room_full", "{full}");
    let (status, body) = server.refused("/ws?peer_id=dave&room=r").await;
    assert_eq!((status, body.as_str()), (409, "room r is full"));
    assert_eq!(join(&mut carol, "r2", "carol").await["type"], "joined");
}

#[tokio::test]
async fn turn_credentials_follow_the_token() {
    let turn = switchboard_server::TurnConfig {
        secret: switchboard_server::TurnSecret::new("turn secret").unwrap(),
        urls: vec!["turn:127.0.0.1:3478".into()],
        ttl: Duration::from_secs(3600),
    };
    let server = start_with(Config {
        auth: AuthMode::Required,
        auth_keys: vec![AuthKey::secret("k1", SECRET)],
        turn: Some(turn),
        ..Config::for_tests()
    })
    .await;
    assert_eq!(server.get("/turn/credentials").await.status, 401);
    let alice = room_token("r", "alice");
    let minted = server
        .get(&format!("/turn/credentials?access_token={alice}"))
        .await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    let username = minted.json()["username"].as_str().unwrap().to_owned();
    assert!(username.ends_with(":alice"), "{username}");
    let other = server
        .get(&format!("/turn/credentials?name=bob&access_token={alice}"))
        .await;
    assert_eq!(other.status, 403, "a token mints for its own name only");
    // And the credential in `joined` is minted for the token's name too.
    let mut client = server
        .connect(&format!("/conference?access_token={alice}"))
        .await;
    let joined = join(&mut client, "r", "alice").await;
    let servers = joined["data"]["iceServers"].as_array().unwrap();
    assert!(
        servers.iter().any(|s| s["username"]
            .as_str()
            .is_some_and(|u| u.ends_with(":alice"))),
        "{joined}"
    );
}
