//! One accepted connection: hyper's HTTP/1.1 server (keep-alive, pipelining, chunked bodies,
//! `Expect: 100-continue`) with our limits and timeouts, and its graceful close.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use super::request::ConnInfo;
use super::service::{self, Shared};
use crate::config::ServerConfig;
use crate::server::listener::Stream;
use crate::server::shutdown::Stop;

/// Largest request head (request line + all header fields) hyper will buffer; 431 beyond it.
/// Per-field and field-count limits are separate settings checked in `service`. It is above
/// hyper's own 64 KiB request-target cap, so an over-long target gets 414 (from hyper or from
/// `--limit-request-line`) rather than 431.
const MAX_HEAD_SIZE: usize = 96 * 1024;

/// The HTTP/1 connection settings, built once per worker.
pub fn http1_builder(cfg: &ServerConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        // hyper runs one timer from the moment a connection waits for a request head until the
        // head is complete; it is both the keep-alive idle timeout and the slowloris guard.
        .header_read_timeout(cfg.keepalive)
        .max_headers(cfg.limit_request_fields)
        .max_header_size(MAX_HEAD_SIZE)
        .auto_date_header(cfg.date_header);
    b
}

/// Serves one connection until the client closes it, an error ends it, or the worker stops.
///
/// On a graceful stop the connection is not cut: hyper's `graceful_shutdown` would close a
/// connection whose request is still unread in the socket (a client that sent just before the
/// stop would see its request dropped). Instead every further response carries
/// `Connection: close` (see `service::finish`), and an idle connection ends at the keep-alive
/// timeout; the grace period caps both. A fast stop closes at once.
pub async fn serve(
    stream: Stream,
    info: ConnInfo,
    shared: Arc<Shared>,
    builder: Arc<http1::Builder>,
    mut stop: watch::Receiver<Stop>,
) {
    let info = Arc::new(info);
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| {
        let shared = svc_shared.clone();
        let info = info.clone();
        async move { Ok::<_, Infallible>(service::handle(req, shared, info).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades();
    tokio::pin!(conn);
    let how = tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                log::debug!("connection ended with an error: {e}");
            }
            return;
        }
        how = stop.wait_for(|s| *s != Stop::Running) => how.map(|s| *s).unwrap_or(Stop::Fast),
    };
    if how == Stop::Fast {
        return;
    }
    // Graceful: wait for the connection, up to the grace period, unless a fast stop follows.
    let grace = how.grace(shared.cfg.graceful_timeout);
    tokio::select! {
        res = tokio::time::timeout(grace, conn) => {
            if res.is_err() {
                log::warn!("closing a connection still busy after the graceful timeout ({grace:?})");
            }
        }
        _ = stop.wait_for(|s| *s == Stop::Fast) => {}
    }
}
