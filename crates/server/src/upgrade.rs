//! Turning an HTTP request into a socket task. Everything that can be refused with an HTTP
//! status is refused here, before the upgrade: draining (503), a foreign Origin (403),
//! connection limits (503 / 429), a bad query-rooms identity (400) or a taken one (409), a
//! bad broadcast channel (400). What passes is registered in the hub and handed to
//! `connection::run` with a membership that removes it again on every exit path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use switchboard_core::{
    Command, CoreError, Event, Outcome, PeerKey, PeerName, PeerProfile, RoomId,
};
use switchboard_dialects::{Broadcast, Conference, Dialect, Pairing, QueryRooms, RoomRelay};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::connection::{self, Connection, Membership};
use crate::limits::{Full, Slot};
use crate::metrics::Limit;
use crate::{assets, AppState, DialectKind};

/// Read-buffer size per socket. tungstenite zero-fills all of it up front, so every idle
/// socket pays it in full: 2 KiB holds a chat, an ICE candidate or a 1 KiB relayed payload
/// in one read, and a larger frame (an SDP offer) grows the buffer as it arrives.
const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Bytes of outgoing frames collected before a write; a batch is flushed at its end anyway.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// What an upgrade request brings, whether or not it is a valid WebSocket upgrade: a plain
/// GET of `/` is a browser asking for the demo app.
pub(crate) struct Handshake {
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    addr: SocketAddr,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let ws = WebSocketUpgrade::from_request_parts(parts, state).await;
        // `serve` always provides the peer address; a missing one (another embedding) counts
        // as one unknown client for the per-IP limit.
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        Ok(Handshake {
            ws,
            addr,
            headers: parts.headers.clone(),
        })
    }
}

/// Where an upgrade leads: which dialect, with what it needs to start.
enum Target {
    /// conference or room-relay: connected, in no room until `join-room`.
    Lobby(DialectKind),
    /// query-rooms: identity and room from the URL.
    QueryRooms(HashMap<String, String>),
    /// pairing: a fresh UUID.
    Pairing,
    /// broadcast: a channel.
    Broadcast(RoomId),
}

/// `/`: the root dialect for WebSocket clients, the demo app for browsers.
pub(crate) async fn root(
    handshake: Handshake,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    State(state): State<AppState>,
) -> Response {
    if handshake.ws.is_err() {
        return assets::index(&handshake.headers);
    }
    let target = match state.config.root_dialect {
        DialectKind::QueryRooms => {
            Target::QueryRooms(query.map(|Query(query)| query).unwrap_or_default())
        }
        DialectKind::Pairing => Target::Pairing,
        DialectKind::Broadcast => Target::Broadcast(default_channel()),
        lobby => Target::Lobby(lobby),
    };
    open(handshake, state, target).await
}

/// `/conference`
pub(crate) async fn conference(handshake: Handshake, State(state): State<AppState>) -> Response {
    open(handshake, state, Target::Lobby(DialectKind::Conference)).await
}

/// `/room-relay`
pub(crate) async fn room_relay(handshake: Handshake, State(state): State<AppState>) -> Response {
    open(handshake, state, Target::Lobby(DialectKind::RoomRelay)).await
}

/// `/pairing`
pub(crate) async fn pairing(handshake: Handshake, State(state): State<AppState>) -> Response {
    open(handshake, state, Target::Pairing).await
}

/// `/ws?peer_id=ID&room=ROOM`
pub(crate) async fn query_rooms(
    handshake: Handshake,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    State(state): State<AppState>,
) -> Response {
    match query {
        Ok(Query(query)) => open(handshake, state, Target::QueryRooms(query)).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// `/broadcast`
pub(crate) async fn broadcast_default(
    handshake: Handshake,
    State(state): State<AppState>,
) -> Response {
    open(handshake, state, Target::Broadcast(default_channel())).await
}

/// `/broadcast/CHANNEL`: axum percent-decodes the segment, so the identifier rules see
/// exactly what the client meant.
pub(crate) async fn broadcast(
    handshake: Handshake,
    Path(channel): Path<String>,
    State(state): State<AppState>,
) -> Response {
    match RoomId::parse(&channel) {
        Ok(channel) => open(handshake, state, Target::Broadcast(channel)).await,
        Err(error) => bad_request(format!("channel: {error}")),
    }
}

/// Runs the checks in order (request shape, identity, admission, name), registers the peer
/// in the hub and starts its socket task. In a cluster, a query-rooms name is claimed and a
/// broadcast channel watched cluster-wide before the upgrade is answered.
async fn open(handshake: Handshake, state: AppState, target: Target) -> Response {
    let Handshake { ws, addr, headers } = handshake;
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let identity = match &target {
        Target::QueryRooms(query) => match QueryRooms::identity(
            query.get("peer_id").map(String::as_str),
            query.get("room").map(String::as_str),
        ) {
            Ok(identity) => Some(identity),
            Err(why) => return bad_request(why),
        },
        _ => None,
    };
    let slot = match admit(&state, addr, &headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let kind = match &target {
        Target::Lobby(kind) => *kind,
        Target::QueryRooms(_) => DialectKind::QueryRooms,
        Target::Pairing => DialectKind::Pairing,
        Target::Broadcast(_) => DialectKind::Broadcast,
    };
    let mut nodes = Vec::new();
    if let (Target::Broadcast(channel), Some(cluster)) = (&target, &state.cluster) {
        if !state.hub.with(|hub| hub.channel_in_use(channel)) {
            match cluster.watch_channel(channel).await {
                Ok(watching) => nodes = watching,
                Err(error) => {
                    return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
                }
            }
        }
    }
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let registered = state.hub.with(|hub| match target {
        Target::Lobby(kind) => Ok((hub.register(profile(kind, addr), outbox), None)),
        Target::QueryRooms(_) => {
            let (room, name) = identity.expect("query-rooms identity was parsed above");
            if hub.is_taken(room.as_str(), name.as_str()) {
                return Err((StatusCode::CONFLICT, CoreError::NameTaken(name)));
            }
            let key = hub.register(profile(DialectKind::QueryRooms, addr), outbox);
            let join = Command::Join {
                room,
                name,
                rid: None,
            };
            match hub.execute(key, join) {
                Ok(Outcome::Claim { room, name }) => Ok((key, Some(Pending::Claim(room, name)))),
                Ok(_) => Ok((key, None)),
                Err(error) => {
                    hub.disconnect(key);
                    Err((StatusCode::CONFLICT, error))
                }
            }
        }
        Target::Pairing => {
            let id = PeerName::parse(&uuid::Uuid::new_v4().to_string());
            // A UUID v4 collision is astronomically unlikely; the client may simply retry.
            id.and_then(|id| {
                hub.register_user(profile(DialectKind::Pairing, addr), outbox, id.clone())
                    .map(|key| (key, Some(Pending::User(id))))
            })
            .map_err(|error| (StatusCode::SERVICE_UNAVAILABLE, error))
        }
        Target::Broadcast(channel) => Ok((
            hub.subscribe(
                profile(DialectKind::Broadcast, addr),
                outbox,
                channel,
                &nodes,
            ),
            None,
        )),
    });
    let (key, claim) = match registered {
        Ok(registered) => registered,
        Err((status, error)) => return (status, error.to_string()).into_response(),
    };
    // From here on the peer leaves the hub again on every path, a vanished client included.
    let membership = Membership::new(state.hub.clone(), key);
    if let (Some(pending), Some(cluster)) = (claim, &state.cluster) {
        let verdict = match pending {
            Pending::Claim(room, name) => cluster.claim_and_wait(room, name, key).await,
            Pending::User(name) => cluster.register_user(name, key).await,
        };
        if let Err(error) = verdict {
            let status = match error {
                CoreError::NameTaken(_) => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return (status, error.to_string()).into_response();
        }
    }
    match kind {
        DialectKind::Conference => start::<Conference>(ws, state, key, inbox, membership, slot),
        DialectKind::RoomRelay => start::<RoomRelay>(ws, state, key, inbox, membership, slot),
        DialectKind::QueryRooms => start::<QueryRooms>(ws, state, key, inbox, membership, slot),
        DialectKind::Pairing => start::<Pairing>(ws, state, key, inbox, membership, slot),
        DialectKind::Broadcast => start::<Broadcast>(ws, state, key, inbox, membership, slot),
    }
}

/// What the cluster must confirm before an upgrade is answered.
enum Pending {
    /// A query-rooms name in its room.
    Claim(RoomId, PeerName),
    /// A pairing user's id.
    User(PeerName),
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
    membership: Membership,
    slot: Slot,
) -> Response {
    let requested = Instant::now();
    let tracked = state.sockets.token();
    let max = state.config.max_frame_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            state.metrics.handshake(requested.elapsed());
            let conn = Connection::<D>::new(state, key, inbox, membership, slot);
            connection::run(socket, conn, tracked)
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
