//! The web console: its files (`crates/mle-server/console/`, plain ES modules and a vendored
//! uPlot) embedded in the binary and served at `/console/` without a token (they hold no
//! data; every call they make goes through the API's access check), with a strict
//! Content-Security-Policy: scripts, styles and connections from this origin only, no inline
//! script or style, no framing. `/` redirects to `/console/`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The console's files: path below `/console/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
    ("js/main.js", JS, include_bytes!("../console/js/main.js")),
    ("js/api.js", JS, include_bytes!("../console/js/api.js")),
    ("js/dom.js", JS, include_bytes!("../console/js/dom.js")),
    ("js/jobs.js", JS, include_bytes!("../console/js/jobs.js")),
    ("js/job.js", JS, include_bytes!("../console/js/job.js")),
    (
        "js/trials.js",
        JS,
        include_bytes!("../console/js/trials.js"),
    ),
    ("js/logs.js", JS, include_bytes!("../console/js/logs.js")),
    (
        "js/charts.js",
        JS,
        include_bytes!("../console/js/charts.js"),
    ),
    (
        "js/parallel.js",
        JS,
        include_bytes!("../console/js/parallel.js"),
    ),
    (
        "js/models.js",
        JS,
        include_bytes!("../console/js/models.js"),
    ),
    (
        "vendor/uPlot.esm.js",
        JS,
        include_bytes!("../console/vendor/uPlot.esm.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.min.css"),
    ),
    (
        "vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.LICENSE"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The policy every console response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|h: HeaderMap| async move { file("index.html", &h) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { file(&p, &h) }),
        )
}

/// A strong validator of a file's bytes.
fn etag(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!(
        "\"{}\"",
        d[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// One file, or a 404; `304` when the client holds this version (`If-None-Match`).
fn file(path: &str, req: &HeaderMap) -> Response {
    let mut resp = match FILES.iter().find(|(p, _, _)| *p == path) {
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
        Some((_, kind, bytes)) => {
            let tag = etag(bytes);
            let fresh = req
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
            let mut r = if fresh {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                ([(header::CONTENT_TYPE, *kind)], *bytes).into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&tag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidated on every load, so a new server's console is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_console_imports_is_embedded() {
        // Each `import ... from './x.js'` of an embedded module names an embedded file.
        for (path, _, bytes) in FILES.iter().filter(|(p, _, _)| p.ends_with(".js")) {
            let text = std::str::from_utf8(bytes).unwrap();
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    FILES.iter().any(|(p, _, _)| *p == target),
                    "{path} imports {spec}, which is not embedded"
                );
            }
        }
        // The page's own references.
        let index = std::str::from_utf8(FILES[0].2).unwrap();
        for r in ["js/main.js", "console.css", "vendor/uPlot.min.css"] {
            assert!(index.contains(r) && FILES.iter().any(|(p, _, _)| *p == r));
        }
        assert!(!index.contains("<script>"), "no inline script");
    }

    #[test]
    fn files_are_answered_with_the_policy_and_unknown_ones_are_404() {
        let r = file("js/main.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let tag = r.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(
            file("js/main.js", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        for bad in ["../Cargo.toml", "js/../../src/lib.rs", "nope.js", ""] {
            assert_eq!(
                file(bad, &HeaderMap::new()).status(),
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
    }
}
