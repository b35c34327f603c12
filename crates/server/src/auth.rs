//! Tokens at the HTTP edge: where a request carries one, and how a refusal is answered.
//! What a token means is `switchboard-auth`'s business; this module only finds it
//! (`Authorization: Bearer`, or `?access_token=` since browsers cannot set headers on a
//! WebSocket), answers 401 or 403, counts it, and gates the admin routes. A token is never
//! logged: refusals carry only the reason.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchboard_auth::AuthError;
use tracing::debug;

use crate::AppState;

/// The token a request carries: the `Authorization: Bearer` header, else the `access_token`
/// query parameter.
pub(crate) fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if let Some(bearer) = bearer {
        return Some(bearer.to_owned());
    }
    // A JWT is base64url and dots: it needs no percent-decoding, and one that does is bad.
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .map(str::to_owned)
}

/// The answer to a refused token: 401 (with `WWW-Authenticate`) for a missing or bad one,
/// 403 for a good one that does not reach this far. Counted by reason.
pub(crate) fn refuse(state: &AppState, error: &AuthError) -> Response {
    state.metrics.auth_refused(error.label());
    debug!(reason = %error, "token refused");
    if error.is_unauthenticated() {
        let mut response = (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"switchboard\""),
        );
        response
    } else {
        (StatusCode::FORBIDDEN, error.to_string()).into_response()
    }
}

/// The stats API, the dashboard and `/metrics`: with `--auth required`, only for a token
/// with the `admin` grant.
pub(crate) async fn admin_only(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let token = token(request.headers(), request.uri().query());
    match state.verifier.admit_admin(token.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(error) => refuse(&state, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(token(&headers, None), None);
        assert_eq!(
            token(&headers, Some("room=a&access_token=q.q.q")).as_deref(),
            Some("q.q.q")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer h.h.h"),
        );
        assert_eq!(
            token(&headers, Some("access_token=q.q.q")).as_deref(),
            Some("h.h.h")
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token(&headers, None), None);
    }
}
