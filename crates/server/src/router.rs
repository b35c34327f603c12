//! The routes: one WebSocket path per dialect, `/` for the root dialect, and the HTTP API.
//! The stats API, `/metrics` and the dashboard are admin routes (`auth::admin_only`).
//! The HTTP API and the web app count against the per-address request rate; upgrades count
//! against the handshake rate instead (`upgrade.rs`).

use axum::http::HeaderValue;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{assets, auth, http, upgrade, AppState};

pub(crate) fn router(state: AppState) -> Router {
    let cors = if state.config.cors_origins.is_empty() {
        CorsLayer::new().allow_origin(AllowOrigin::any())
    } else {
        let origins = state
            .config
            .cors_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok());
        CorsLayer::new().allow_origin(AllowOrigin::list(origins))
    };
    // With `--auth required`, these need a token with the admin grant.
    let admin = Router::new()
        .route("/metrics", get(http::metrics))
        .route("/api/stats", get(http::stats))
        .route("/dashboard", get(assets::dashboard))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::admin_only,
        ));
    let api = Router::new()
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .merge(admin)
        .route("/turn/credentials", get(http::turn_credentials))
        .layer(cors);
    let pages = api
        .merge(assets::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::rate_limited,
        ));
    Router::new()
        .route("/", get(upgrade::root))
        .route("/conference", get(upgrade::conference))
        .route("/room-relay", get(upgrade::room_relay))
        .route("/ws", get(upgrade::query_rooms))
        .route("/pairing", get(upgrade::pairing))
        .route("/broadcast", get(upgrade::broadcast_default))
        .route("/broadcast/{channel}", get(upgrade::broadcast))
        .merge(pages)
        .with_state(state)
}
