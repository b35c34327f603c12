//! Turning an HTTP request into a socket task. Everything that can be refused with an HTTP
//! status is refused here, before the upgrade: draining (503), a foreign Origin (403), the
//! handshake rate (429), the connection limit (503), a bad query-rooms identity (400, also
//! for a query that is not UTF-8 once percent-decoded) or a taken one (409), a bad broadcast
//! channel (400). The per-IP connection cap is not here: it counts from accept (`accept.rs`). What passes is registered in the hub and handed to
//! `connection::run` with a membership that removes it again on every exit path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use switchboard_auth::{AuthError, Grants};
use switchboard_core::{
    Command, CoreError, ErrorCode, Event, Outcome, PeerKey, PeerName, PeerProfile, RoomId,
};
use switchboard_dialects::{Broadcast, Conference, Dialect, Pairing, QueryRooms, RoomRelay};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::connection::{self, Connection, Membership};
use crate::limits::Slot;
use crate::metrics::Limit;
use crate::resume::{Handoff, Link};
use crate::ws::{NotUpgrade, Upgrade};
use crate::{assets, auth, AppState, DialectKind};

/// What an upgrade request brings, whether or not it is a valid WebSocket upgrade: a plain
/// GET of `/` is a browser asking for the demo app.
pub(crate) struct Handshake {
    ws: Result<Upgrade, NotUpgrade>,
    addr: SocketAddr,
    headers: HeaderMap,
    /// The token the request carries, if any (never logged).
    token: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let ws = Upgrade::from_parts(parts);
        // `serve` always provides the peer address; a missing one (another embedding) counts
        // as one unknown client for the per-IP limit.
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        Ok(Handshake {
            ws,
            addr,
            token: auth::token(&parts.headers, parts.uri.query()),
            headers: parts.headers.clone(),
        })
    }
}

/// Where an upgrade leads: which dialect, with what it needs to start.
enum Target {
    /// conference or room-relay: connected, in no room until `join-room`.
    Lobby(DialectKind),
    /// conference with `resume=1`: like a lobby, and the socket's session can resume.
    Resumable,
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
    RawQuery(query): RawQuery,
    State(state): State<AppState>,
) -> Response {
    if handshake.ws.is_err() {
        return assets::index(&handshake.headers);
    }
    let target = match state.config.root_dialect {
        DialectKind::QueryRooms => match parameters(query.as_deref()) {
            Some(parameters) => Target::QueryRooms(parameters),
            None => return not_utf8(),
        },
        DialectKind::Pairing => Target::Pairing,
        DialectKind::Broadcast => Target::Broadcast(default_channel()),
        DialectKind::Conference if wants_resume(query.as_deref()) => Target::Resumable,
        lobby => Target::Lobby(lobby),
    };
    open(handshake, state, target).await
}

/// `/conference`, and `/conference?resume=1` for a resumable session.
pub(crate) async fn conference(
    handshake: Handshake,
    RawQuery(query): RawQuery,
    State(state): State<AppState>,
) -> Response {
    let target = if wants_resume(query.as_deref()) {
        Target::Resumable
    } else {
        Target::Lobby(DialectKind::Conference)
    };
    open(handshake, state, target).await
}

/// Whether the query opts in to resume (`resume=1`).
fn wants_resume(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "resume=1")
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
    RawQuery(query): RawQuery,
    State(state): State<AppState>,
) -> Response {
    match parameters(query.as_deref()) {
        Some(parameters) => open(handshake, state, Target::QueryRooms(parameters)).await,
        None => not_utf8(),
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
/// exactly what the client meant (and refuses one that is not UTF-8 then, with 400).
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
    let Handshake {
        ws,
        addr,
        headers,
        token,
    } = handshake;
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
    let kind = match &target {
        Target::Lobby(kind) => *kind,
        Target::Resumable => DialectKind::Conference,
        Target::QueryRooms(_) => DialectKind::QueryRooms,
        Target::Pairing => DialectKind::Pairing,
        Target::Broadcast(_) => DialectKind::Broadcast,
    };
    // Admission first: the handshake rate bounds the signature checks a client can ask for.
    let slot = match admit(&state, addr, &headers) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let grants = match authorize(&state, token.as_deref(), kind, &target, identity.as_ref()) {
        Ok(grants) => grants.map(Arc::new),
        Err(error) => return auth::refuse(&state, &error),
    };
    let grant = grants.as_ref().map(|grants| grants.join.clone());
    let profile = |dialect| PeerProfile {
        dialect,
        ip: addr.ip(),
        connected_at: SystemTime::now(),
        grant: grant.clone(),
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
    let target_resumable = matches!(target, Target::Resumable);
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let registered = state.hub.with(|hub| match target {
        Target::Lobby(kind) => Ok((hub.register(profile(kind), outbox), None)),
        Target::Resumable => Ok((hub.register(profile(DialectKind::Conference), outbox), None)),
        Target::QueryRooms(_) => {
            let (room, name) = identity.expect("query-rooms identity was parsed above");
            if hub.is_taken(room.as_str(), name.as_str()) {
                return Err((StatusCode::CONFLICT, CoreError::NameTaken(name)));
            }
            let key = hub.register(profile(DialectKind::QueryRooms), outbox);
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
                    Err((refusal_status(&error), error))
                }
            }
        }
        Target::Pairing => {
            let id = PeerName::parse(&uuid::Uuid::new_v4().to_string());
            // A UUID v4 collision is astronomically unlikely; the client may simply retry.
            id.and_then(|id| {
                hub.register_user(profile(DialectKind::Pairing), outbox, id.clone())
                    .map(|key| (key, Some(Pending::User(id))))
            })
            .map_err(|error| (StatusCode::SERVICE_UNAVAILABLE, error))
        }
        Target::Broadcast(channel) => Ok((
            hub.subscribe(profile(DialectKind::Broadcast), outbox, channel, &nodes),
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
            return (refusal_status(&error), error.to_string()).into_response();
        }
    }
    let opening = if target_resumable {
        Opening::Session
    } else {
        Opening::Plain
    };
    let admitted = Admitted {
        key,
        inbox,
        membership,
        slot,
        grants,
        ip: addr.ip(),
        opening,
    };
    match kind {
        DialectKind::Conference => start::<Conference>(ws, state, admitted),
        DialectKind::RoomRelay => start::<RoomRelay>(ws, state, admitted),
        DialectKind::QueryRooms => start::<QueryRooms>(ws, state, admitted),
        DialectKind::Pairing => start::<Pairing>(ws, state, admitted),
        DialectKind::Broadcast => start::<Broadcast>(ws, state, admitted),
    }
}

/// What the cluster must confirm before an upgrade is answered.
enum Pending {
    /// A query-rooms name in its room.
    Claim(RoomId, PeerName),
    /// A pairing user's id.
    User(PeerName),
}

/// The HTTP status for a query-rooms join refused before the upgrade: the room's state
/// (a name taken, the room full) is a conflict; anything else is the cluster's trouble.
fn refusal_status(error: &CoreError) -> StatusCode {
    match error {
        CoreError::NameTaken(_) | CoreError::RoomFull(_) => StatusCode::CONFLICT,
        CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What an admitted socket starts with.
pub(crate) struct Admitted {
    pub(crate) key: PeerKey,
    pub(crate) inbox: mpsc::Receiver<Event>,
    pub(crate) membership: Membership,
    pub(crate) slot: Slot,
    /// What its token grants; `None`: no limits.
    pub(crate) grants: Option<Arc<Grants>>,
    /// The client's address.
    pub(crate) ip: IpAddr,
    /// What the socket writes first.
    pub(crate) opening: Opening,
}

/// What a socket writes before anything else.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opening {
    /// Nothing: not resumable.
    Plain,
    /// `session`: a fresh resumable session.
    Session,
    /// This error (a failed resume, unnumbered), then `session`.
    Failed(ErrorCode, &'static str),
}

/// Carries a socket whose resume its session refused on as a fresh resumable session (the
/// refused session has ended): it hears `resume_failed`, then a new `session`. A socket
/// carried from another node goes back there instead: that node starts the fresh session,
/// with the rights the client's token has there.
pub(crate) fn restart(state: AppState, handoff: Box<Handoff>, why: &'static str) {
    if handoff.remote.is_some() {
        return crate::resume::refuse_carried(*handoff);
    }
    let Handoff {
        ws,
        slot,
        tracked,
        ip,
        grants,
        ..
    } = *handoff;
    let profile = PeerProfile {
        dialect: DialectKind::Conference,
        ip,
        connected_at: SystemTime::now(),
        grant: grants.as_ref().map(|grants| grants.join.clone()),
    };
    let (outbox, inbox) = mpsc::channel(state.config.outbox_capacity);
    let key = state.hub.with(|hub| hub.register(profile, outbox));
    let admitted = Admitted {
        key,
        inbox,
        membership: Membership::new(state.hub.clone(), key),
        slot,
        grants,
        ip,
        opening: Opening::Failed(ErrorCode::ResumeFailed, why),
    };
    let conn = Connection::<Conference>::new(state, admitted);
    tokio::spawn(connection::run(ws, conn, tracked));
}

/// The token's verdict on this upgrade: missing or bad (401), or good but not for this
/// dialect, query-rooms room and name, channel or pairing (403). A conference or room-relay
/// join is checked later, by the hub, when the room is known.
fn authorize(
    state: &AppState,
    token: Option<&str>,
    kind: DialectKind,
    target: &Target,
    identity: Option<&(RoomId, PeerName)>,
) -> Result<Option<Grants>, AuthError> {
    let Some(grants) = state.verifier.admit(token)? else {
        return Ok(None);
    };
    grants.check_dialect(kind)?;
    match target {
        Target::QueryRooms(_) => {
            if let Some((room, name)) = identity {
                grants
                    .join
                    .check_join(room, name)
                    .map_err(|error| match error {
                        CoreError::Forbidden(why) => AuthError::Forbidden(why),
                        _ => AuthError::Forbidden("the token does not grant this room"),
                    })?;
            }
        }
        Target::Pairing => grants.check_pair()?,
        Target::Broadcast(channel) => grants.check_channel(channel)?,
        Target::Lobby(_) | Target::Resumable => {}
    }
    Ok(Some(grants))
}

/// Why an upgrade was refused before it happened.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The checks every upgrade passes: not draining, an allowed Origin, the address's
/// handshake rate, a free place among the server's sockets.
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
    if !state.handshakes.allow(addr.ip(), Instant::now()) {
        state.metrics.limit_hit(Limit::HandshakeRate);
        debug!(ip = %addr.ip(), "upgrade refused: handshake rate");
        return Err(Refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too many handshakes from this address: slow down",
        ));
    }
    state.limits.acquire().map_err(|_| {
        state.metrics.limit_hit(Limit::Connections);
        debug!(ip = %addr.ip(), "upgrade refused: server is full");
        Refused(StatusCode::SERVICE_UNAVAILABLE, "server is full")
    })
}

/// Upgrades and spawns the socket task. The membership is created before the upgrade, so
/// if the client goes away mid-handshake its drop still removes the peer from the hub.
fn start<D: Dialect>(ws: Upgrade, state: AppState, admitted: Admitted) -> Response {
    let requested = Instant::now();
    let tracked = state.sockets.token();
    let max = state.config.max_frame_bytes;
    ws.on_upgrade(max, move |socket| {
        state.metrics.handshake(requested.elapsed());
        let conn = Connection::<D>::new(state, admitted);
        connection::run(Link::Local(socket), conn, tracked)
    })
}

fn default_channel() -> RoomId {
    RoomId::parse("default").expect("\"default\" is a valid identifier")
}

/// The query string's parameters, percent-decoded as a form (`+` is a space; a repeated name
/// keeps its last value); `None` if a name or value is not UTF-8 once decoded. Identifiers
/// are read from here, so such a query is refused with 400 ([`not_utf8`]) rather than
/// mangled into U+FFFD and let in.
fn parameters(query: Option<&str>) -> Option<HashMap<String, String>> {
    let mut parameters = HashMap::new();
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        parameters.insert(form_decode(name)?, form_decode(value)?);
    }
    Some(parameters)
}

fn not_utf8() -> Response {
    bad_request("the query string is not UTF-8 after percent-decoding".to_owned())
}

/// Percent-decodes one form-encoded name or value; `None` if the bytes are not UTF-8. A `%`
/// not followed by two hex digits stays as it is (as browsers and serde_urlencoded do).
fn form_decode(text: &str) -> Option<String> {
    let mut bytes = text.bytes();
    let mut decoded = Vec::with_capacity(text.len());
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let mut ahead = bytes.clone();
                match (ahead.next().and_then(hex), ahead.next().and_then(hex)) {
                    (Some(high), Some(low)) => {
                        decoded.push(high << 4 | low);
                        bytes = ahead;
                    }
                    _ => decoded.push(b'%'),
                }
            }
            _ => decoded.push(byte),
        }
    }
    String::from_utf8(decoded).ok()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn bad_request(why: String) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_decode_strictly() {
        let decoded = parameters(Some("peer_id=al%C3%A9+x&room=r%2F1&flag&&room=r2")).unwrap();
        assert_eq!(decoded["peer_id"], "al\u{e9} x");
        assert_eq!(
            decoded["room"], "r2",
            "a repeated name keeps its last value"
        );
        assert_eq!(decoded["flag"], "");
        assert_eq!(form_decode("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode("%4").as_deref(), Some("%4"));
        assert_eq!(form_decode("%zz").as_deref(), Some("%zz"));
        assert!(parameters(Some("peer_id=ab%FF%FEcd&room=r")).is_none());
        assert!(parameters(Some("peer_id=a&room=%C3%28")).is_none());
        assert!(parameters(Some("%FF=x")).is_none());
        assert!(parameters(None).unwrap().is_empty());
    }
}
