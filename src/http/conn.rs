//! One accepted connection: hyper's HTTP/1.1 server (keep-alive, pipelining, chunked bodies,
//! `Expect: 100-continue`) or HTTP/2 server, with our limits and timeouts, and its graceful close.

use std::convert::Infallible;
use std::sync::Arc;

use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::detect::{self, Rewind};
use super::h1_reader::{self, ConnWatch};
use super::proxy_protocol;
use super::request::ConnInfo;
use super::send_timeout::SendTimeout;
use super::service::{self, Shared};
use crate::config::{HttpVersions, ServerConfig};
use crate::scoreboard::metrics::Refusal;
use crate::stop::Stop;

/// Largest request head (request line + all header fields) hyper will buffer; 431 beyond it.
/// Per-field and field-count limits are separate settings checked in `service`. It is above
/// hyper's own 64 KiB request-target cap, so an over-long target gets 414 (from hyper or from
/// `--limit-request-line`) rather than 431.
pub const MAX_HEAD_SIZE: usize = 96 * 1024;

/// The HTTP/1 connection settings, built once per worker.
pub fn http1_builder(cfg: &ServerConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        // Not hyper's `half_close`: it stops reading mid-request, so a client that resets its
        // connection goes unnoticed. `h1_reader` answers half-closed requests instead.
        .half_close(false)
        // hyper runs one timer from the moment a connection waits for a request head until the
        // head is complete; it is both the keep-alive idle timeout and the slowloris guard.
        .header_read_timeout(cfg.keepalive)
        .max_headers(cfg.limit_request_fields)
        .max_header_size(MAX_HEAD_SIZE)
        .auto_date_header(cfg.date_header);
    b
}

/// HTTP/2 settings. The header-list cap matches HTTP/1's head cap; idle connections are pinged
/// so a dead peer does not hold a connection slot forever.
pub fn http2_builder(cfg: &ServerConfig) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(MAX_HEAD_SIZE as u32)
        .keep_alive_interval(Some(cfg.keepalive.max(Duration::from_secs(1)) * 4))
        .keep_alive_timeout(cfg.keepalive.max(Duration::from_secs(1)) * 4)
        .auto_date_header(cfg.date_header);
    if cfg.websockets {
        // RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL, so browsers open websockets on the same
        // connection (an extended CONNECT stream, see `websocket::is_upgrade`).
        b.enable_connect_protocol();
    }
    b
}

/// Both protocols' settings and the TLS acceptor, built once per worker.
pub struct Builders {
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
    pub tls: Option<TlsAcceptor>,
}

impl Builders {
    /// Fails when the TLS files cannot be loaded.
    pub fn new(cfg: &ServerConfig) -> std::io::Result<Self> {
        let tls = cfg.tls.as_ref().map(|t| crate::tls::acceptor(t, cfg.http)).transpose()?;
        Ok(Self { h1: http1_builder(cfg), h2: http2_builder(cfg), tls })
    }
}

/// Serves one accepted connection: reads its PROXY header (`--proxy-protocol`), picks the
/// protocol (`--http`, or the preface for `auto`), then runs hyper's HTTP/1 or HTTP/2 server on it.
pub async fn serve<I>(io: I, info: ConnInfo, shared: Arc<Shared>, builders: Arc<Builders>, stop: watch::Receiver<Stop>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Here, in the connection's task, so a slow or silent peer never holds up the accept loop;
    // the keep-alive timeout bounds it as it bounds a request head. Without the setting the
    // stream is wrapped all the same (an empty replay), so there is one connection type either way.
    let (io, info) = match &shared.cfg.proxy_protocol {
        None => (Rewind::new(io), info),
        Some(settings) => match proxy_protocol::accept(io, info, settings, shared.cfg.keepalive).await {
            Ok(accepted) => accepted,
            Err(why) if why.counts() => {
                shared.slot.refused(Refusal::ProxyProtocol);
                return log::debug!("refused a connection before HTTP: {why}");
            }
            Err(why) => return log::debug!("closed a connection before its PROXY protocol header: {why}"),
        },
    };
    let io = SendTimeout::new(io, shared.cfg.send_timeout);
    if let Some(tls) = &builders.tls {
        let io = match tokio::time::timeout(shared.cfg.keepalive, tls.accept(io)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return log::debug!("TLS handshake failed: {e}"),
            Err(_) => return log::debug!("TLS handshake timed out"),
        };
        // ALPN decides; a client that offers none gets what `--http` names (HTTP/1.1 for auto).
        let h2 = match io.get_ref().1.alpn_protocol() {
            Some(p) => p == b"h2",
            None => shared.cfg.http == HttpVersions::Http2,
        };
        let info = ConnInfo { scheme: "https", ..info };
        return if h2 {
            serve_h2(io, info, shared, builders, stop).await
        } else {
            serve_h1(io, info, shared, builders, stop).await
        };
    }
    match shared.cfg.http {
        HttpVersions::Http1 => serve_h1(io, info, shared, builders, stop).await,
        HttpVersions::Http2 => serve_h2(io, info, shared, builders, stop).await,
        HttpVersions::Auto => match detect::is_h2(io, shared.cfg.keepalive).await {
            Ok((true, io)) => serve_h2(io, info, shared, builders, stop).await,
            Ok((false, io)) => serve_h1(io, info, shared, builders, stop).await,
            Err(e) => log::debug!("connection closed before its protocol was known: {e}"),
        },
    }
}

fn service(
    shared: Arc<Shared>,
    info: ConnInfo,
    check: Option<Arc<ConnWatch>>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<super::body::ResponseBody>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<hyper::Response<super::body::ResponseBody>, Infallible>> + Send,
> + Clone {
    let info = Arc::new(info);
    service_fn(move |req| {
        let shared = shared.clone();
        let info = info.clone();
        let check = check.clone();
        async move { Ok::<_, Infallible>(service::handle(req, shared, info, check).await) }
    })
}

/// HTTP/1: serves until the client closes, an error ends it, or the worker stops.
///
/// On a graceful stop the connection is not cut: hyper's `graceful_shutdown` would close a
/// connection whose request is still unread in the socket (a client that sent just before the
/// stop would see its request dropped). Instead every further response carries
/// `Connection: close` (see `service::finish`), and an idle connection ends at the keep-alive
/// timeout; the grace period caps both. A fast stop closes at once.
pub async fn serve_h1<I>(
    io: I,
    info: ConnInfo,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    stop: watch::Receiver<Stop>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, check) = h1_reader::watch(io);
    let svc = service(shared.clone(), info, Some(check));
    let conn = builders.h1.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(conn);
    drive(conn, shared, stop).await;
}

/// HTTP/2: as HTTP/1, except that a graceful stop sends GOAWAY at once — it names the last
/// stream the server will answer, so a client knows exactly which requests to retry elsewhere.
pub async fn serve_h2<I>(
    io: I,
    info: ConnInfo,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    stop: watch::Receiver<Stop>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service(shared.clone(), info, None);
    let conn = builders.h2.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    drive(conn, shared, stop).await;
}

/// What `drive` needs from hyper's two connection types.
trait Connection: std::future::Future<Output = Result<(), hyper::Error>> {
    /// A graceful stop began: tell the client, if the protocol has a way to.
    fn goaway(self: std::pin::Pin<&mut Self>);
}

impl<I, S> Connection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Nothing: HTTP/1 has no GOAWAY, and hyper's `graceful_shutdown` could drop a request that
    /// is already on its way (see `serve_h1`); responses say `Connection: close` instead.
    fn goaway(self: std::pin::Pin<&mut Self>) {}
}

impl<I, S, B> Connection for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn goaway(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn drive<C: Connection>(mut conn: std::pin::Pin<&mut C>, shared: Arc<Shared>, mut stop: watch::Receiver<Stop>) {
    let how = tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                // hyper answered a request head it could not parse (400, 414 or 431) itself.
                if e.is_parse_too_large() {
                    shared.slot.refused(Refusal::HeadTooLarge);
                } else if e.is_parse() {
                    shared.slot.refused(Refusal::Malformed);
                }
                log::debug!("connection ended with an error: {e}");
            }
            return;
        }
        how = stop.wait_for(|s| *s != Stop::Running) => how.map(|s| *s).unwrap_or(Stop::Fast),
    };
    if how == Stop::Fast {
        return;
    }
    conn.as_mut().goaway();
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
