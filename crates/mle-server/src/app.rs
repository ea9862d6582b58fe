//! The HTTP app: `/healthz`, the V2 health checks and the console's files without a token,
//! every other route behind
//! the access check (token → principal → the route's permission, audited), `/metrics`,
//! `/openapi.json`, and a Google-envelope 404 for unknown routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mle_api::{ApiStatus, ErrorEnvelope};

use crate::audit::Entry;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{access, console, openapi, routes, tokens};

/// What the access check needs: the server admin's token and the state (store, audit log).
#[derive(Clone)]
struct Gate {
    admin: Arc<String>,
    state: Arc<AppState>,
}

/// The access check of every route but the health checks: the bearer token names a
/// principal (401 if none), the route's need (`access::need`) must be granted (403 in the
/// envelope if not, before any handler runs), and mutating and denied requests go into the
/// audit log. The handlers find the principal in the request's extensions.
async fn authorize(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let need = access::need(&method, &path);
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let audit = |principal: &str, status: u16| {
        g.state.audit.record(&Entry {
            principal,
            project: need.project(),
            method: method.as_str(),
            resource: &path,
            status,
        })
    };
    let found = match given {
        Some(t) => tokens::principal(&g.state.db, &g.admin, &t).await,
        None => Ok(None),
    };
    let principal = match found {
        Ok(Some(p)) => p,
        Ok(None) => {
            audit("anonymous", 401);
            return ApiError::Status(
                ApiStatus::Unauthenticated,
                "missing or invalid bearer token".into(),
            )
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !principal.allowed(&need) {
        audit(principal.name(), 403);
        let why = match &need {
            access::Need::Permission {
                project,
                permission,
            } => format!(
                "token '{}' does not hold {} in project '{project}'",
                principal.name(),
                permission.name()
            ),
            _ => "only the server admin's token may do this".to_string(),
        };
        return ApiError::Status(ApiStatus::PermissionDenied, why).into_response();
    }
    let mutating = access::mutating(&method, &path);
    let name = principal.name().to_string();
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    if mutating {
        audit(&name, resp.status().as_u16());
    }
    resp
}

/// Client errors that axum itself answers in plain text (a path or query that does not
/// decode, a method the route lacks) get the Google envelope like every other error, with
/// their own status code.
async fn envelope_rejections(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let kind = match status.as_u16() {
        401 => ApiStatus::Unauthenticated,
        403 => ApiStatus::PermissionDenied,
        404 => ApiStatus::NotFound,
        409 => ApiStatus::AlreadyExists,
        413 | 429 => ApiStatus::ResourceExhausted,
        _ => ApiStatus::InvalidArgument,
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_string()
    } else {
        text
    };
    let mut envelope = ErrorEnvelope::new(kind, message);
    envelope.error.code = status.as_u16();
    let mut out = (status, Json(envelope)).into_response();
    // The rejection's own headers stay (a 405's `Allow`), but not its body's.
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn count_requests(req: Request, next: Next) -> Response {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

/// `/metrics` in the Prometheus text exposition format.
async fn metrics(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut out = String::from("# HELP mle_jobs Jobs by state.\n# TYPE mle_jobs gauge\n");
    for (state, n) in s.db.count_by_state().await? {
        out += &format!("mle_jobs{{state=\"{state}\"}} {n}\n");
    }
    out += &format!(
        "# HELP mle_slots_total Replica slots of this server.\n# TYPE mle_slots_total gauge\nmle_slots_total {}\n",
        s.cfg.slots
    );
    out += &format!(
        "# HELP mle_http_requests_total HTTP requests received.\n# TYPE mle_http_requests_total counter\nmle_http_requests_total {}\n",
        REQUESTS.load(Ordering::Relaxed)
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}

/// The whole HTTP app.
pub fn app(state: Arc<AppState>, token: String) -> Router {
    let api = routes::router()
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::spec()) }),
        )
        .with_state(state.clone())
        .route_layer(middleware::from_fn_with_state(
            Gate {
                admin: Arc::new(token),
                state,
            },
            authorize,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(routes::predict::health_router())
        .merge(console::router())
        .merge(api)
        .fallback(|| async { ApiError::Status(ApiStatus::NotFound, "no such route".into()) })
        .layer(middleware::from_fn(envelope_rejections))
        .layer(middleware::from_fn(count_requests))
}
