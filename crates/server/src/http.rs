//! The HTTP routes beside the sockets: liveness, readiness, metrics, the stats API and TURN
//! credentials, and the per-address request rate that guards them. `/api/stats` is served from a snapshot:
//! one build (one hub lock, one serialization) serves every caller for `stats_max_age`,
//! however many ask at once, so polling it cannot take CPU from the relay.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchboard_auth::{AuthError, Grants};
use switchboard_core::{DialectKind, PeerName};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::metrics::Limit;
use crate::{auth, AppState};

/// `/api/stats` lists this many connections unless `?limit=` asks otherwise.
const DEFAULT_STATS_LIMIT: usize = 100;
/// `/api/stats` never lists more than this many, so a call stays cheap at 100k connections.
const MAX_STATS_LIMIT: usize = 1000;

/// Counts a request against its address's HTTP rate (`--http-rate`): over it, 429.
pub(crate) async fn rate_limited(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // `accept.rs` puts the address in every request; without one (another embedding) the
    // request counts as one unknown client's.
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)).ip(), |info| info.0.ip());
    if state.requests.allow(ip, Instant::now()) {
        return next.run(request).await;
    }
    state.metrics.limit_hit(Limit::HttpRate);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        "too many requests from this address: slow down\n",
    )
        .into_response()
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if state.cluster.as_ref().is_some_and(|c| !c.ready()) {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let census = state.hub.with(|hub| hub.census());
    let body = state.metrics.render(&census);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct StatsQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: Option<String>,
    state: &'static str,
    target_user: Option<String>,
    connected_at: String,
    ip: String,
    dialect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    conn: u64,
    /// In a cluster: the node the connection is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// The latest `/api/stats` snapshot. The async lock is the single flight: while one caller
/// builds, the others wait for it and then share what it built.
#[derive(Default)]
pub(crate) struct StatsSnapshots {
    latest: Mutex<Option<Arc<Snapshot>>>,
}

/// What `/api/stats` reports, as of `built`.
struct Snapshot {
    built: Instant,
    connected: usize,
    rooms: usize,
    /// Up to [`MAX_STATS_LIMIT`] connections, oldest first, each already JSON: a request
    /// for N of them only copies text.
    users: Vec<String>,
    /// In a cluster: the nodes with a live lease, and whether one did not answer in time.
    cluster: Option<(Vec<String>, bool)>,
}

impl StatsSnapshots {
    async fn current(&self, state: &AppState) -> Arc<Snapshot> {
        let mut latest = self.latest.lock().await;
        if let Some(snapshot) = latest
            .as_ref()
            .filter(|snapshot| snapshot.built.elapsed() < state.config.stats_max_age)
        {
            return Arc::clone(snapshot);
        }
        let fresh = Arc::new(snapshot(state).await);
        state.metrics.stats_snapshot();
        *latest = Some(Arc::clone(&fresh));
        fresh
    }
}

pub(crate) async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> Response {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_STATS_LIMIT)
        .min(MAX_STATS_LIMIT);
    let snapshot = state.stats.current(&state).await;
    let listed = &snapshot.users[..limit.min(snapshot.users.len())];
    let mut body = String::with_capacity(64 + listed.iter().map(|u| u.len() + 1).sum::<usize>());
    // Writing to a String cannot fail.
    let _ = write!(
        body,
        r#"{{"connectedUsers":{},"rooms":{},"limit":{limit},"#,
        snapshot.connected, snapshot.rooms
    );
    if let Some((nodes, partial)) = &snapshot.cluster {
        // Node ids are hex digits: nothing to escape.
        let nodes: Vec<String> = nodes.iter().map(|n| format!(r#""{n}""#)).collect();
        let _ = write!(
            body,
            r#""nodes":[{}],"partial":{partial},"#,
            nodes.join(",")
        );
    }
    body.push_str(r#""users":["#);
    for (i, user) in listed.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(user);
    }
    body.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Reads the hub once (up to [`MAX_STATS_LIMIT`] connections) and encodes each connection;
/// in a cluster, asks every node for its oldest (at most 300 ms) and names each one's node.
async fn snapshot(state: &AppState) -> Snapshot {
    let (connected, rooms, users, cluster) = match &state.cluster {
        Some(cluster) => {
            let stats = cluster.stats(MAX_STATS_LIMIT).await;
            let parked = state.sessions.parked_keys();
            let here = cluster.node();
            let users = stats
                .users
                .into_iter()
                .map(|(node, user)| {
                    let resuming = node == here && parked.contains(&user.key);
                    user_body(user, Some(node.to_string()), resuming)
                })
                .collect::<Vec<_>>();
            let nodes = stats.nodes.iter().map(ToString::to_string).collect();
            (
                stats.connected,
                stats.rooms,
                users,
                Some((nodes, stats.partial)),
            )
        }
        None => {
            let stats = state.hub.with(|hub| hub.stats(MAX_STATS_LIMIT));
            let parked = state.sessions.parked_keys();
            let users = stats
                .users
                .into_iter()
                .map(|u| {
                    let resuming = parked.contains(&u.key);
                    user_body(u, None, resuming)
                })
                .collect();
            (stats.connected, stats.rooms, users, None)
        }
    };
    Snapshot {
        built: Instant::now(),
        connected,
        rooms,
        // Plain strings and numbers always serialize.
        users: users
            .iter()
            .filter_map(|user| serde_json::to_string(user).ok())
            .collect(),
        cluster,
    }
}

/// One connection for `/api/stats`; `resuming`: a parked session waiting for its socket.
fn user_body(user: switchboard_core::UserStats, node: Option<String>, resuming: bool) -> UserBody {
    let is_room_dialect = matches!(
        user.dialect,
        DialectKind::QueryRooms | DialectKind::RoomRelay | DialectKind::Conference
    );
    let room = user.room.map(|room| room.to_string());
    UserBody {
        id: user.id.map(|id| id.to_string()),
        state: if resuming {
            "resuming"
        } else {
            user.state.as_str()
        },
        target_user: user.target.map(|t| t.to_string()),
        connected_at: humantime::format_rfc3339_millis(user.connected_at).to_string(),
        ip: user.ip.to_string(),
        dialect: user.dialect.as_str(),
        channel: if user.dialect == DialectKind::Broadcast {
            room.clone()
        } else {
            None
        },
        room: is_room_dialect.then_some(room),
        conn: user.key.0,
        node,
    }
}

/// Who a `/turn/credentials` credential is for, when the request does not say.
const ANONYMOUS: &str = "anonymous";

#[derive(Deserialize)]
pub(crate) struct TurnQuery {
    /// The identity in the credential's username; a room name's rules apply.
    name: Option<String>,
}

/// `GET /turn/credentials[?name=N]`: a freshly minted TURN credential, in the REST draft's
/// shape (`username`, `password`, `ttl`, `uris`) and the browser's (`iceServers`, the same
/// array a `joined` carries). 404 when TURN is not configured: that is how the deployment
/// is, not a passing failure worth retrying (503 would invite retries). Never cached.
pub(crate) async fn turn_credentials(
    State(state): State<AppState>,
    Query(query): Query<TurnQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(turn) = &state.turn else {
        return (
            StatusCode::NOT_FOUND,
            "TURN is not configured on this server (--turn-secret, --turn-url)\n",
        )
            .into_response();
    };
    let token = auth::token(&headers, uri.query());
    let grants = match state.verifier.admit(token.as_deref()) {
        Ok(grants) => grants,
        Err(error) => return auth::refuse(&state, &error),
    };
    let identity = match turn_identity(&query, grants.as_ref()) {
        Ok(identity) => identity,
        Err(TurnRefusal::Name(error)) => {
            return (StatusCode::BAD_REQUEST, format!("bad name: {error}\n")).into_response()
        }
        Err(TurnRefusal::Auth(error)) => return auth::refuse(&state, &error),
    };
    let minted = turn.credential(identity.as_str(), SystemTime::now());
    let body = TurnBody {
        username: &minted.credential.username,
        password: &minted.credential.password,
        ttl: turn.ttl_secs(),
        uris: turn.urls(),
        ice_servers: RawValue::from_string(minted.ice_servers)
            .expect("the minter writes a JSON array"),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Why a `/turn/credentials` request gets no credential.
enum TurnRefusal {
    /// `?name=` breaks the identifier rules (400).
    Name(switchboard_core::CoreError),
    /// `?name=` is not the token's name (403).
    Auth(AuthError),
}

/// The identity a `/turn/credentials` credential is minted for: the token's name when the
/// request has a token (`?name=`, if given, must be that name), else `?name=` or
/// [`ANONYMOUS`]. With `--auth required` there is always a token (`admit` refused the request
/// otherwise), so only token holders mint credentials, each under their own identity.
fn turn_identity(query: &TurnQuery, grants: Option<&Grants>) -> Result<PeerName, TurnRefusal> {
    match (grants, query.name.as_deref()) {
        (Some(grants), Some(name)) if name != grants.join.name.as_str() => Err(TurnRefusal::Auth(
            AuthError::Forbidden("the token grants another name"),
        )),
        (Some(grants), _) => Ok(grants.join.name.clone()),
        (None, name) => PeerName::parse(name.unwrap_or(ANONYMOUS)).map_err(TurnRefusal::Name),
    }
}

#[derive(Serialize)]
struct TurnBody<'a> {
    username: &'a str,
    password: &'a str,
    /// Seconds the credential stays valid from now.
    ttl: u64,
    uris: &'a [String],
    #[serde(rename = "iceServers")]
    ice_servers: Box<RawValue>,
}
