//! Turning an HTTP request into a socket task. Everything that can be refused with an HTTP
//! status is refused here, before the upgrade: draining (503), a foreign Origin (403),
//! connection limits (503 / 429), a bad query-rooms identity (400) or a taken one (409), a
//! bad broadcast channel (400). What passes is registered in the hub and handed to
//! `connection::run` with a membership that removes it again on every exit path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use switchboard_core::{CoreError, Event, PeerKey, PeerName, PeerProfile, RoomId};
use switchboard_dialects::{Broadcast, Conference, Dialect, Pairing, QueryRooms, RoomRelay};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::connection::{self, Connection, Membership};
use crate::http::landing;
use crate::limits::{Full, Slot};
use crate::metrics::Limit;
use crate::{AppState, DialectKind};

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

/// Read-buffer size per socket. Small, because most signaling frames are small and idle
/// sockets should cost little; larger frames grow the buffer as needed.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes of outgoing frames collected before a write; a batch is flushed at its end anyway.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// `/`: the root dialect for WebSocket clients, a landing page for browsers.
pub(crate) async fn root(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    State(state): State<AppState>,
) -> Response {
    let Ok(ws) = ws else {
        return landing(&state).into_response();
    };
    match state.config.root_dialect {
        DialectKind::Conference => lobby::<Conference>(ws, addr, &headers, state),
        DialectKind::RoomRelay => lobby::<RoomRelay>(ws, addr, &headers, state),
        DialectKind::Pairing => pairing_upgrade(ws, addr, &headers, state),
        DialectKind::Broadcast => broadcast_upgrade(ws, addr, &headers, state, default_channel()),
        DialectKind::QueryRooms => {
            let query = query.map(|Query(query)| query).unwrap_or_default();
            query_rooms_upgrade(ws, addr, &headers, state, query)
        }
    }
}

/// `/conference`
pub(crate) async fn conference(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    match ws {
        Ok(ws) => lobby::<Conference>(ws, addr, &headers, state),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/room-relay`
pub(crate) async fn room_relay(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    match ws {
        Ok(ws) => lobby::<RoomRelay>(ws, addr, &headers, state),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/pairing`
pub(crate) async fn pairing(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    match ws {
        Ok(ws) => pairing_upgrade(ws, addr, &headers, state),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/ws?peer_id=ID&room=ROOM`
pub(crate) async fn query_rooms(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    State(state): State<AppState>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return rejection.into_response(),
    };
    match ws {
        Ok(ws) => query_rooms_upgrade(ws, addr, &headers, state, query),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/broadcast`
pub(crate) async fn broadcast_default(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Response {
    match ws {
        Ok(ws) => broadcast_upgrade(ws, addr, &headers, state, default_channel()),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/broadcast/CHANNEL`: axum percent-decodes the segment, so the identifier rules see
/// exactly what the client meant.
pub(crate) async fn broadcast(
    ws: Upgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(channel): Path<String>,
    State(state): State<AppState>,
) -> Response {
    let channel = match RoomId::parse(&channel) {
        Ok(channel) => channel,
        Err(error) => return bad_request(format!("channel: {error}")),
    };
    match ws {
        Ok(ws) => broadcast_upgrade(ws, addr, &headers, state, channel),
        Err(rejection) => rejection.into_response(),
    }
}

fn lobby<D: Dialect>(
    ws: WebSocketUpgrade,
    addr: SocketAddr,
    headers: &HeaderMap,
    state: AppState,
) -> Response {
    let slot = match admit(&state, addr, headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let key = state
        .hub
        .with(|hub| hub.register(profile(D::KIND, addr), outbox));
    start::<D>(ws, state, key, inbox, slot)
}

fn query_rooms_upgrade(
    ws: WebSocketUpgrade,
    addr: SocketAddr,
    headers: &HeaderMap,
    state: AppState,
    query: HashMap<String, String>,
) -> Response {
    let identity = QueryRooms::identity(
        query.get("peer_id").map(String::as_str),
        query.get("room").map(String::as_str),
    );
    let (room, name) = match identity {
        Ok(identity) => identity,
        Err(why) => return bad_request(why),
    };
    let slot = match admit(&state, addr, headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let joined = state.hub.with(|hub| {
        if hub.is_taken(room.as_str(), name.as_str()) {
            return Err(CoreError::NameTaken(name.clone()));
        }
        let key = hub.register(profile(DialectKind::QueryRooms, addr), outbox);
        match hub.join(key, room, name, None) {
            Ok(()) => Ok(key),
            Err(error) => {
                hub.disconnect(key);
                Err(error)
            }
        }
    });
    match joined {
        Ok(key) => start::<QueryRooms>(ws, state, key, inbox, slot),
        Err(error) => (StatusCode::CONFLICT, error.to_string()).into_response(),
    }
}

fn pairing_upgrade(
    ws: WebSocketUpgrade,
    addr: SocketAddr,
    headers: &HeaderMap,
    state: AppState,
) -> Response {
    let slot = match admit(&state, addr, headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let id = uuid::Uuid::new_v4().to_string();
    let registered = PeerName::parse(&id).and_then(|name| {
        state
            .hub
            .with(|hub| hub.register_user(profile(DialectKind::Pairing, addr), outbox, name))
    });
    match registered {
        Ok(key) => start::<Pairing>(ws, state, key, inbox, slot),
        // A UUID v4 collision: astronomically unlikely, and the client may simply retry.
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

fn broadcast_upgrade(
    ws: WebSocketUpgrade,
    addr: SocketAddr,
    headers: &HeaderMap,
    state: AppState,
    channel: RoomId,
) -> Response {
    let slot = match admit(&state, addr, headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let key = state
        .hub
        .with(|hub| hub.subscribe(profile(DialectKind::Broadcast, addr), outbox, channel));
    start::<Broadcast>(ws, state, key, inbox, slot)
}

/// Why an upgrade was refused before it happened.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The checks every upgrade passes: not draining, an allowed Origin, a free slot.
fn admit(state: &AppState, addr: SocketAddr, headers: &HeaderMap) -> Result<Slot, Refused> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        ));
    }
    if !state.config.ws_origins.is_empty() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        if !origin.is_some_and(|origin| state.config.ws_origins.iter().any(|o| o == origin)) {
            state.metrics.limit_hit(Limit::Origin);
            return Err(Refused(StatusCode::FORBIDDEN, "origin not allowed"));
        }
    }
    state.limits.acquire(addr.ip()).map_err(|full| {
        let (limit, refused) = match full {
            Full::Total => (
                Limit::Connections,
                Refused(StatusCode::SERVICE_UNAVAILABLE, "server is full"),
            ),
            Full::PerIp => (
                Limit::ConnectionsPerIp,
                Refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ),
            ),
        };
        state.metrics.limit_hit(limit);
        debug!(ip = %addr.ip(), why = refused.1, "connection refused");
        refused
    })
}

/// Upgrades and spawns the socket task. The membership is created before the upgrade, so
/// if the client goes away mid-handshake its drop still removes the peer from the hub.
fn start<D: Dialect>(
    ws: WebSocketUpgrade,
    state: AppState,
    key: PeerKey,
    inbox: mpsc::Receiver<Event>,
    slot: Slot,
) -> Response {
    let requested = Instant::now();
    let membership = Membership::new(state.hub.clone(), key);
    let tracked = state.sockets.token();
    let max = state.config.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            state.metrics.handshake(requested.elapsed());
            let conn = Connection::<D>::new(state, key, inbox, membership, slot);
            connection::run(socket, conn).await;
        })
}

fn profile(dialect: DialectKind, addr: SocketAddr) -> PeerProfile {
    PeerProfile {
        dialect,
        ip: addr.ip(),
        connected_at: SystemTime::now(),
    }
}

fn default_channel() -> RoomId {
    RoomId::parse("default").expect("\"default\" is a valid identifier")
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}
