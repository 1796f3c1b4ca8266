//! The admin web page: one HTML shell, a stylesheet and a few ES modules,
//! compiled into the binary (`include_str!`), served from `/` on the admin
//! listener. No build step, no CDN, no web fonts: the relay's machine may
//! have no internet, and the page must load at once on loopback.
//!
//! The page signs in with the admin token ([`super::session`]) and then
//! calls the same JSON API as the CLI. It builds its DOM with
//! `textContent` only, so domain names, remote servers' replies and
//! headers are shown as text; the Content-Security-Policy below forbids
//! inline and foreign script as a second lock.

use super::AdminState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// Scripts and styles only from the relay itself, nothing inline, no
/// frames, forms and fetches only to the relay.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every file of the page: name under `/assets/`, content type, text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("assets/api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("assets/dom.js")),
    ("domains.js", "text/javascript; charset=utf-8", include_str!("assets/domains.js")),
    ("customer.js", "text/javascript; charset=utf-8", include_str!("assets/customer.js")),
    ("messages.js", "text/javascript; charset=utf-8", include_str!("assets/messages.js")),
    ("events.js", "text/javascript; charset=utf-8", include_str!("assets/events.js")),
    ("suppressions.js", "text/javascript; charset=utf-8", include_str!("assets/suppressions.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

const INDEX: &str = include_str!("assets/index.html");

/// `/` and `/assets/{name}`, open: the page holds no data and no secret.
pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX) }))
        .route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, text)) => page(kind, text),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// A file of the page with the security headers. `no-cache`: the browser
/// asks again each time (cheap on loopback), so a new binary's page is
/// never mixed with an old one's scripts.
fn page(kind: &'static str, text: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    (headers, text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page is plain text compiled in: no inline script or style, no
    /// handler attributes, nothing fetched from elsewhere.
    #[test]
    fn assets_stay_inside_the_policy() {
        let lower = INDEX.to_ascii_lowercase();
        assert!(!lower.contains("<script>") && !lower.contains("style="), "inline code in index.html");
        let handler = lower.split(" on").skip(1).any(|rest| {
            let name = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name > 0 && rest.as_bytes().get(name) == Some(&b'=')
        });
        assert!(!handler, "an on…= handler attribute in index.html");
        for (name, _, text) in ASSETS.iter().map(|a| (a.0, a.1, a.2)).chain([("index.html", "", INDEX)]) {
            assert!(!text.contains("http://") && !text.contains("https://") || name == "favicon.svg", "{name} refers to another site");
            assert!(!text.contains("innerHTML") && !text.contains("outerHTML") && !text.contains("insertAdjacentHTML"), "{name} writes HTML from strings");
            assert!(!text.contains("eval(") && !text.contains("new Function"), "{name} evaluates strings");
        }
    }
}
