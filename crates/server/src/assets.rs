//! The browser face: the demo app, the JS client, the protocol tester and the dashboard,
//! compiled into the binary (no web server, no build step: the one third-party script,
//! `web/vendor/mediasoup-client.js`, is checked in already bundled). Each asset is served with
//! its content type, an ETag for revalidation, and a strict Content-Security-Policy: scripts,
//! styles and connections only from this origin, nothing inline.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Pages may load scripts and styles from this origin only, open WebSockets to it, and show
/// camera and remote media; no inline code, no framing, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_str!("../../../web/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("../../../web/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_str!("../../../web/style.css"),
    },
    Asset {
        name: "client.js",
        content_type: JS,
        body: include_str!("../../../web/client.js"),
    },
    Asset {
        name: "sfu.js",
        content_type: JS,
        body: include_str!("../../../web/sfu.js"),
    },
    // mediasoup-client, for the demo's SFU mode; `web/vendor/build.sh` says how it is made.
    // Served at `/vendor/mediasoup-client.js`: a name with a slash is a path like any other.
    Asset {
        name: "vendor/mediasoup-client.js",
        content_type: JS,
        body: include_str!("../../../web/vendor/mediasoup-client.js"),
    },
    Asset {
        name: "test.html",
        content_type: HTML,
        body: include_str!("../../../web/test.html"),
    },
    Asset {
        name: "test.js",
        content_type: JS,
        body: include_str!("../../../web/test.js"),
    },
    Asset {
        name: "dashboard.html",
        content_type: HTML,
        body: include_str!("../../../web/dashboard.html"),
    },
    Asset {
        name: "dashboard.js",
        content_type: JS,
        body: include_str!("../../../web/dashboard.js"),
    },
];

/// A route per asset. The demo's own `index.html` is served at `/`, by the root handler, and
/// the dashboard at `/dashboard` ([`dashboard`]), among the admin routes.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .filter(|asset| !matches!(asset.name, "index.html" | "dashboard.html"))
        .fold(Router::new(), |router, asset| {
            let name = asset.name;
            router.route(
                &format!("/{name}"),
                get(move |headers: HeaderMap| async move { serve(name, &headers) }),
            )
        })
}

/// `/dashboard` (rather than `/dashboard.html`: it is a page people type).
pub(crate) async fn dashboard(headers: HeaderMap) -> Response {
    serve("dashboard.html", &headers)
}

/// The demo app, for a plain browser GET of `/`.
pub(crate) fn index(headers: &HeaderMap) -> Response {
    serve("index.html", headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let etag = &etags()[index];
    let fresh = request.get(header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Revalidate every time: the files change with the binary, and the ETag makes it cheap.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// One strong ETag per asset, from its content, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                asset.body.hash(&mut hasher);
                format!("\"{:016x}\"", hasher.finish())
            })
            .collect()
    })
}
