//! The server's socket: hyper with a timer, so that a client that never finishes its headers
//! is dropped after `Limits::header_timeout`; a cap on open connections (the ones over it are
//! closed at once, before any work or auth); a timeout on each request; and the open-files
//! soft limit raised to the hard limit at start-up, so the cap is reached before the process
//! runs out of descriptors.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mle_api::{ApiStatus, ErrorEnvelope};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::tls;

/// Raises the soft limit of open files to the hard limit; returns the new soft limit.
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
    }
    getrlimit(Resource::RLIMIT_NOFILE).ok().map(|(s, _)| s)
}

/// Wraps `app` so that a request that takes longer than `limit` is answered 408.
pub fn with_request_timeout(app: Router, limit: std::time::Duration) -> Router {
    app.layer(middleware::from_fn(
        move |req: Request, next: Next| async move {
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => {
                    let mut e = ErrorEnvelope::new(
                        ApiStatus::InvalidArgument,
                        format!("the request took longer than {} s", limit.as_secs_f64()),
                    );
                    e.error.code = 408;
                    (axum::http::StatusCode::REQUEST_TIMEOUT, axum::Json(e)).into_response()
                }
            }
        },
    ))
}

/// Serves one connection: HTTP/1.1 or HTTP/2 with the header-read timeout.
async fn http<IO>(io: IO, app: Router, header_timeout: std::time::Duration)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    b.http2().timer(TokioTimer::new());
    let _ = b.serve_connection(TokioIo::new(io), service).await;
}

/// Serves `app` on `listener` forever under `limits`, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = with_request_timeout(app, limits.request_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait and go on.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return http(stream, app, header_timeout).await;
            };
            // The handshake (and the first byte) within the header timeout too.
            let first = tokio::time::timeout(header_timeout, tls::speaks_plain_http(&stream));
            match first.await {
                Ok(true) => return tls::refuse_plain_http(stream).await,
                Ok(false) => {}
                Err(_) => return,
            }
            if let Ok(Ok(s)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                http(s, app, header_timeout).await;
            }
        });
    }
}
