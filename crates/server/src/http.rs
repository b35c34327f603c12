//! The HTTP routes beside the sockets: liveness, readiness, metrics and the stats API.

use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchboard_core::DialectKind;

use crate::AppState;

/// `/api/stats` lists this many connections unless `?limit=` asks otherwise.
const DEFAULT_STATS_LIMIT: usize = 100;
/// `/api/stats` never lists more than this many, so a call stays cheap at 100k connections.
const MAX_STATS_LIMIT: usize = 1000;

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
struct StatsBody {
    connected_users: usize,
    rooms: usize,
    limit: usize,
    users: Vec<UserBody>,
    /// In a cluster: the nodes with a live lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<String>>,
    /// In a cluster: whether some node did not answer in time (its users are missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    partial: Option<bool>,
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

pub(crate) async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsQuery>,
) -> Json<impl Serialize> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_STATS_LIMIT)
        .min(MAX_STATS_LIMIT);
    let (connected, rooms, users, nodes, partial) = match &state.cluster {
        Some(cluster) => {
            let stats = cluster.stats(limit).await;
            let nodes = stats.nodes.iter().map(ToString::to_string).collect();
            let users = stats
                .users
                .into_iter()
                .map(|(node, user)| user_body(user, Some(node.to_string())))
                .collect();
            (
                stats.connected,
                stats.rooms,
                users,
                Some(nodes),
                Some(stats.partial),
            )
        }
        None => {
            let stats = state.hub.with(|hub| hub.stats(limit));
            let users = stats
                .users
                .into_iter()
                .map(|u| user_body(u, None))
                .collect();
            (stats.connected, stats.rooms, users, None, None)
        }
    };
    Json(StatsBody {
        connected_users: connected,
        rooms,
        limit,
        users,
        nodes,
        partial,
    })
}

fn user_body(user: switchboard_core::UserStats, node: Option<String>) -> UserBody {
    let is_room_dialect = matches!(
        user.dialect,
        DialectKind::QueryRooms | DialectKind::RoomRelay | DialectKind::Conference
    );
    let room = user.room.map(|room| room.to_string());
    UserBody {
        id: user.id.map(|id| id.to_string()),
        state: user.state.as_str(),
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
