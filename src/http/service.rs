//! Where a request enters: limits are checked, the body is read completely by tokio, the
//! request is queued for the app, and the app's answer becomes the hyper response.

use std::sync::Arc;
use std::time::Instant;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::access_log::{AccessLog, Entry};
use super::app::{AppQueue, CloseOnDrop, Closed, Job};
use super::body::{self, BodyError, ResponseBody};
use super::compress;
use super::h1_reader::ConnWatch;
use super::proxy;
use super::rate_limit::RateLimiter;
use super::request::{ConnInfo, RequestBody, RequestHead};
use super::request_timeout::Deadline;
use super::response;
use super::websocket::{self, WsConn};
use super::ws_deflate;
use crate::config::ServerConfig;
use crate::http::static_files::StaticFiles;
use crate::scoreboard::metrics::{Measure, Refusal};
use crate::scoreboard::Slot;
use crate::stop::Stop;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// Everything a connection's requests share.
pub struct Shared {
    pub cfg: ServerConfig,
    pub queue: AppQueue,
    /// Clients should go elsewhere: set when a stop begins, or earlier by `Server::unready`
    /// (`--drain-delay`). The health path then answers 503 and responses close their connection.
    pub leaving: Arc<AtomicBool>,
    /// The worker's stop signal (WebSocket pumps close with 1001 on a stop).
    pub stop: watch::Receiver<Stop>,
    /// Tasks the drain waits for (connections, WebSocket pumps).
    pub tasks: TaskTracker,
    pub access_log: Option<Arc<AccessLog>>,
    /// Requests of this worker between their head being accepted and their response starting
    /// (queued or in the app), for `--limit-concurrency`.
    pub in_flight: AtomicUsize,
    /// `--static` mounts, answered before anything reaches the app.
    pub statics: StaticFiles,
    /// This worker's counters for the supervisor (metrics, recycling).
    pub slot: Slot,
    /// `--limit-rate`: this worker's table of clients (each worker has its own).
    pub rate_limit: Option<Arc<RateLimiter>>,
}

/// Holds one unit of `Shared::in_flight` until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one request. Infallible: every failure becomes a response (or a closed connection).
/// With an access log, the request's facts are kept for the line written after the response.
/// `check` is the HTTP/1 connection's head check (see `h1_reader`); None for HTTP/2.
pub async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    check: Option<Arc<ConnWatch>>,
) -> Response<ResponseBody> {
    // Before anything reads the client address, scheme or Host (the access log included).
    if req.version() == Version::HTTP_2 {
        join_cookies(req.headers_mut());
    }
    let conn = match &shared.cfg.trusted_proxies {
        Some(trusted) => {
            let (mut parts, body) = req.into_parts();
            let applied = proxy::apply(trusted, &conn, &mut parts.uri, &mut parts.headers);
            req = Request::from_parts(parts, body);
            applied.map(Arc::new).unwrap_or(conn)
        }
        None => conn,
    };
    let mut measure = Measure::start(shared.slot);
    // The HTTP/1 reader holds back a client's FIN until this response is done (half-close).
    let answering = |body: ResponseBody| match &check {
        Some(watch) => body.answering(watch.clone()),
        None => body,
    };
    let Some(log) = shared.access_log.clone() else {
        let resp = serve(req, shared, conn, check.clone()).await;
        measure.status(resp.status().as_u16());
        return resp.map(|body| answering(body.measured(measure)));
    };
    let started = Instant::now();
    let (method, uri, version, request_headers) =
        (req.method().clone(), req.uri().clone(), req.version(), req.headers().clone());
    let remote = conn.remote.clone();
    let (parts, body) = serve(req, shared, conn, check.clone()).await.into_parts();
    measure.status(parts.status.as_u16());
    let body = body.measured(measure);
    let entry = Entry {
        started,
        remote,
        method,
        uri,
        version,
        request_headers,
        status: parts.status,
        response_headers: parts.headers.clone(),
    };
    Response::from_parts(parts, answering(body.logged(log, entry)))
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    check: Option<Arc<ConnWatch>>,
) -> Response<ResponseBody> {
    let cfg = &shared.cfg;
    let refused_head = check.as_ref().is_some_and(|c| c.take_request());
    if let Some(status) = refused_head.then_some(StatusCode::BAD_REQUEST).or_else(|| check_head(&req, cfg)) {
        // Counted, and logged only at DEBUG: a flood of bad requests must not become a flood of
        // log records (each one a trip to Python's logging).
        shared.slot.refused(Refusal::of(status));
        log::debug!("refused {} {}: {}", req.method(), truncate(req.uri()), status);
        return finish(response::plain(status, true), &shared);
    }
    // Answered by the core without reading the request's body: with a body (a GET may carry
    // one), the connection closes after the answer. Left to hyper, the unread body was drained
    // while the answer was still being written, and a malformed request after it made hyper
    // write its 400 into the middle of a static file (found by the `http_request` fuzz target).
    let unread_body = !req.body().is_end_stream();
    // --compress: what this request accepts, settled now (the request is consumed below).
    let compress = compress::offer(cfg.compress.as_ref(), &req);
    let core_answer = if !cfg.health_path.is_empty() && req.uri().path() == cfg.health_path {
        Some(health(&shared))
    } else if !shared.statics.is_empty() {
        shared.statics.respond(&req)
    } else {
        None
    };
    if let Some(mut resp) = core_answer {
        if let Some(offer) = &compress {
            offer.apply(&mut resp); // static files without a precompressed sibling
        }
        if unread_body {
            resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        return finish(resp, &shared);
    }
    // --limit-rate: only what would reach the app counts (the health path and static files were
    // answered above: a page's assets must not use up its allowance, nor a load balancer's
    // checks). Counted, never logged: a flood costs a hash lookup and an atomic add per request.
    if let Some(limited) = shared.rate_limit.as_ref().and_then(|l| l.check_request(&conn.remote, req.uri().path())) {
        shared.slot.refused(Refusal::RateLimited);
        let mut resp = response::plain(StatusCode::TOO_MANY_REQUESTS, unread_body);
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(limited.retry_after));
        return finish(resp, &shared);
    }
    // --limit-concurrency: past it, answer 503 at once instead of queueing without bound
    // (uvicorn's behaviour; the client may retry, and a load balancer will try another node).
    let _in_flight = InFlight(&shared.in_flight);
    if shared.in_flight.fetch_add(1, Ordering::Relaxed) >= cfg.limit_concurrency {
        shared.slot.refused(Refusal::Overload);
        warn_overload(cfg.limit_concurrency);
        return finish(response::plain(StatusCode::SERVICE_UNAVAILABLE, false), &shared);
    }
    if cfg.websockets && shared.queue.websockets() && websocket::is_upgrade(&req) {
        return upgrade(req, shared.clone(), conn, check).await;
    }
    if req.method() == Method::CONNECT {
        // An extended CONNECT (passed by `check_head`) for an app that takes no websockets.
        return finish(response::plain(StatusCode::METHOD_NOT_ALLOWED, false), &shared);
    }
    let (parts, incoming) = req.into_parts();
    let body = if incoming.is_end_stream() {
        RequestBody::Memory(Default::default())
    } else {
        match body::collect(incoming, cfg).await {
            Ok(b) => b,
            Err(BodyError::Timeout) => {
                shared.slot.refused(Refusal::BodyTimeout);
                return finish(response::plain(StatusCode::REQUEST_TIMEOUT, true), &shared);
            }
            Err(BodyError::TooLarge) => {
                shared.slot.refused(Refusal::BodyTooLarge);
                return finish(response::plain(StatusCode::PAYLOAD_TOO_LARGE, true), &shared);
            }
            Err(BodyError::Read(e)) => {
                shared.slot.refused(Refusal::Malformed);
                log::debug!("request body read failed: {e}");
                return finish(response::plain(StatusCode::BAD_REQUEST, true), &shared);
            }
            Err(BodyError::Spool(e)) => {
                log::error!("could not spool a request body to a temporary file: {e}");
                return finish(response::plain(StatusCode::INTERNAL_SERVER_ERROR, true), &shared);
            }
        }
    };
    let is_head = parts.method == Method::HEAD;
    let http1 = parts.version < Version::HTTP_2;
    let deadline = cfg.request_timeout.map(|limit| Deadline::new(limit, &parts.method, &parts.uri));
    let head = RequestHead::new(parts, conn);
    let (reply, answer) = oneshot::channel();
    let closed = Arc::new(if deadline.is_some() { Closed::expiring() } else { Closed::default() });
    // Until the response exists this future holds the guard; then its body does (below).
    let guard = CloseOnDrop(closed.clone());
    shared.slot.bytes_in(body.len());
    let job = Job { head, body, reply, queued_at: Instant::now(), closed, ws: None };
    shared.slot.job_submitted();
    if !shared.queue.submit(job) {
        return finish(response::plain(StatusCode::SERVICE_UNAVAILABLE, true), &shared);
    }
    let answered = match Deadline::wait(deadline, answer, &guard.0, shared.slot).await {
        Ok(answered) => answered,
        Err(gateway_timeout) => return finish(gateway_timeout, &shared),
    };
    let Ok(app) = answered else {
        // The app thread dropped the reply without answering: it already logged why.
        return finish(response::plain(StatusCode::INTERNAL_SERVER_ERROR, true), &shared);
    };
    let body = if is_head { ResponseBody::empty() } else { app.body };
    let mut resp = Response::new(body.guarded(guard));
    *resp.status_mut() = app.status;
    *resp.headers_mut() = app.headers;
    if let Some(offer) = &compress {
        offer.apply(&mut resp);
    }
    if http1 && shared.slot.over_share(SHED_SLACK) {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    finish(resp, &shared)
}

/// Connections over the mean of the accepting workers at which this worker answers with
/// `Connection: close`, handing the connection back to the listening socket, where a sibling
/// under its share takes the client's next one (`server::wait_for_share` keeps this worker
/// from taking it again). A keep-alive connection stays with the worker that accepted it, so
/// without this an uneven split made at a burst, or left by clients that closed on some workers
/// only, lasts as long as the connections: at 100 connections over 4 workers the busiest
/// worker's queue sets the tail latency. Only HTTP/1, where a closing response costs the client
/// one reconnect; an HTTP/2 connection carries many streams and is left alone.
const SHED_SLACK: u64 = 2;

/// A WebSocket handshake: the app decides (accept, close, or an HTTP denial response). On
/// accept the 101 goes out and a pump task carries the frames from then on.
async fn upgrade(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    check: Option<Arc<ConnWatch>>,
) -> Response<ResponseBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    // permessage-deflate, settled now and named in the 101 if the app accepts.
    let deflate = shared.cfg.ws_per_message_deflate.then(|| ws_deflate::negotiate(req.headers())).flatten();
    let h2 = req.version() == Version::HTTP_2;
    let (parts, _) = req.into_parts();
    let place = conn.place.clone();
    // --request-timeout bounds the handshake too: an app that neither accepts nor denies in time
    // gets 504 for the client and, through `abandon`, a disconnect from receive().
    let deadline = shared.cfg.request_timeout.map(|limit| Deadline::new(limit, &parts.method, &parts.uri));
    let head = RequestHead::new(parts, conn);
    let ws = WsConn::new();
    // If this future is dropped before the handshake completes, the app learns the client left.
    let abandon = AbandonOnDrop(Some(ws.clone()));
    let (reply, answer) = oneshot::channel();
    let closed = Arc::new(Closed::default());
    let body = RequestBody::Memory(Default::default());
    let job = Job { head, body, reply, queued_at: Instant::now(), closed: closed.clone(), ws: Some(ws.clone()) };
    // Closed when this future ends (answered, timed out, or the client gone): a handshake still
    // queued then is skipped by the bridge instead of starting the app for nobody.
    let _queued = CloseOnDrop(closed.clone());
    shared.slot.job_submitted();
    if !shared.queue.submit(job) {
        return finish(response::plain(StatusCode::SERVICE_UNAVAILABLE, true), &shared);
    }
    let answered = match Deadline::wait(deadline, answer, &closed, shared.slot).await {
        Ok(answered) => answered,
        Err(gateway_timeout) => return finish(gateway_timeout, &shared),
    };
    let Ok(app) = answered else {
        return finish(response::plain(StatusCode::INTERNAL_SERVER_ERROR, true), &shared);
    };
    if app.status == StatusCode::SWITCHING_PROTOCOLS {
        let mut abandon = abandon;
        abandon.0 = None; // the pump owns the connection's end now
        if let Some(check) = check {
            check.upgraded(); // its bytes are WebSocket frames from here on
        }
        let pump_shared = shared.clone();
        shared.tasks.spawn(async move {
            pump_shared.slot.websocket_opened();
            websocket::pump(on_upgrade, ws, &pump_shared.cfg, pump_shared.stop.clone(), deflate).await;
            pump_shared.slot.websocket_closed();
            drop(place); // the connection's place under --max-connections, held until now
        });
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = app.status;
        *resp.headers_mut() = app.headers;
        ws_deflate::answer(resp.headers_mut(), deflate.as_ref());
        if h2 {
            // RFC 8441 §5: a 2xx opens the stream; no accept key (hyper drops Upgrade/Connection).
            *resp.status_mut() = StatusCode::OK;
            resp.headers_mut().remove(http::header::SEC_WEBSOCKET_ACCEPT);
        }
        return finish(resp, &shared);
    }
    let mut resp = Response::new(app.body);
    *resp.status_mut() = app.status;
    *resp.headers_mut() = app.headers;
    finish(resp, &shared)
}

/// Delivers "closed" to the app's WebSocket inbox if the handshake never completed.
struct AbandonOnDrop(Option<Arc<WsConn>>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(ws) = self.0.take() {
            ws.abandon();
        }
    }
}

/// RFC 9113 §8.2.3: HTTP/2 may split `cookie` into several fields; they are joined with "; "
/// before the request reaches an app (HTTP/1 allows only one Cookie header, and apps expect one).
fn join_cookies(headers: &mut http::HeaderMap) {
    use http::header::COOKIE;
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers.get_all(COOKIE).iter().map(|v| v.as_bytes()).collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(COOKIE, v);
    }
}

/// `--health-path`: 200 while this worker accepts requests, 503 once it is draining or unready
/// (so a load balancer stops sending it traffic). Answered without the app, so it also shows the
/// core is up when every Python thread is busy.
fn health(shared: &Shared) -> Response<ResponseBody> {
    let status = if shared.leaving.load(Ordering::Relaxed) { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut resp = response::plain(status, false);
    resp.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn finish(mut resp: Response<ResponseBody>, shared: &Shared) -> Response<ResponseBody> {
    response::finish(&mut resp, shared.cfg.server_header, &shared.cfg.headers);
    if shared.leaving.load(Ordering::Relaxed) {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Limits that hyper's parser does not apply itself. hyper already answers 400 to malformed
/// framing, 431 past `max_headers`/`max_header_size`, and rejects conflicting Content-Length.
fn check_head(req: &Request<Incoming>, cfg: &ServerConfig) -> Option<StatusCode> {
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > cfg.limit_request_line {
        return Some(StatusCode::URI_TOO_LONG);
    }
    let headers = req.headers();
    if headers.len() > cfg.limit_request_fields {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if headers.iter().any(|(n, v)| n.as_str().len() + v.len() > cfg.limit_request_field_size) {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    // RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host header; two are never valid.
    // (A wrong Host is how cache-poisoning and routing confusion start.)
    let hosts = headers.get_all(HOST).iter().count();
    if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
        return Some(StatusCode::BAD_REQUEST);
    }
    // Fields that decide how the body is read: an app uses the first Content-Type, a proxy or
    // WAF in front may have used the last. (hyper refuses differing Content-Lengths and merges
    // equal ones; `h1_reader` refuses Content-Length beside Transfer-Encoding.)
    if headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
        return Some(StatusCode::BAD_REQUEST);
    }
    if let Some(len) = headers.get(CONTENT_LENGTH).and_then(parse_len) {
        if len > cfg.max_body_size {
            return Some(StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    // A body on CONNECT makes no sense for an origin server, and authority-form targets are
    // a request-smuggling vector (Hypercorn #277): refuse CONNECT outright, but for HTTP/2's
    // extended CONNECT that opens a websocket (RFC 8441, announced only with websockets on).
    if req.method() == Method::CONNECT && !(cfg.websockets && websocket::is_upgrade(req)) {
        return Some(StatusCode::METHOD_NOT_ALLOWED);
    }
    if let Some(status) = check_target(req).or_else(|| check_host(headers)) {
        return Some(status);
    }
    check_transfer_encoding(headers)
}

/// RFC 9112 §3.2: origin-form, absolute-form (with a valid authority and no userinfo), or
/// `*` for OPTIONS. Raw non-ASCII bytes are not part of any form (they must be percent-encoded).
fn check_target(req: &Request<Incoming>) -> Option<StatusCode> {
    let uri = req.uri();
    if let Some(pq) = uri.path_and_query() {
        if !pq.as_str().is_ascii() {
            return Some(StatusCode::BAD_REQUEST);
        }
    }
    if uri.path() == "*" && uri.authority().is_none() {
        return (req.method() != Method::OPTIONS).then_some(StatusCode::BAD_REQUEST);
    }
    match (uri.scheme(), uri.authority()) {
        // Authority-form ("GET host:80") is only for CONNECT, refused above.
        (None, Some(_)) => Some(StatusCode::BAD_REQUEST),
        (Some(_), Some(auth)) if !valid_authority(auth.as_str()) => Some(StatusCode::BAD_REQUEST),
        _ => None,
    }
}

/// RFC 9112 §3.2: "A server MUST respond with 400 to any request that lacks a Host header field
/// or contains more than one, or an invalid one" (checked here for its syntax).
fn check_host(headers: &http::HeaderMap) -> Option<StatusCode> {
    let host = headers.get(HOST)?;
    match host.to_str() {
        Ok(h) if h.is_empty() || valid_authority(h) => None,
        _ => Some(StatusCode::BAD_REQUEST),
    }
}

/// `host[:port]` where host is a reg-name, an IPv4 address or a bracketed IPv6 literal
/// (RFC 3986 §3.2.2): no userinfo, no path characters, no list separators.
fn valid_authority(a: &str) -> bool {
    let (host_ok, port) = match a.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) if after.is_empty() || after.starts_with(':') => {
                (v6.parse::<std::net::Ipv6Addr>().is_ok(), after.strip_prefix(':').unwrap_or(""))
            }
            _ => return false,
        },
        None => {
            let (host, port) = a.rsplit_once(':').unwrap_or((a, ""));
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=%".contains(&b);
            (!host.is_empty() && host.bytes().all(reg_name), port)
        }
    };
    host_ok && port.bytes().all(|b| b.is_ascii_digit())
}

/// hyper frames a body as chunked when the last coding is "chunked", and hands other codings
/// to the app undecoded. rsgi accepts exactly one coding, "chunked" (RFC 9112 §6.1: a server
/// that does not understand a coding answers 501; a repeated "chunked" is malformed, 400).
fn check_transfer_encoding(headers: &http::HeaderMap) -> Option<StatusCode> {
    let mut codings =
        headers.get_all(http::header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|&b| b == b','));
    let mut chunked = 0;
    for coding in codings.by_ref() {
        let coding = coding.trim_ascii();
        if coding.is_empty() {
            continue; // RFC 9110 §5.6.1.2: empty list elements are ignored
        }
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Some(StatusCode::NOT_IMPLEMENTED);
        }
        chunked += 1;
    }
    (chunked > 1).then_some(StatusCode::BAD_REQUEST)
}

fn parse_len(v: &HeaderValue) -> Option<u64> {
    v.to_str().ok()?.parse().ok()
}

/// Overload is worth a line in the log, but not one per refused request: at most one every
/// 10 s per worker (`rsgi_requests_refused_total{reason="overload"}` counts them all).
fn warn_overload(limit: usize) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if crate::sync::warn_now(&LAST) {
        log::warn!("--limit-concurrency {limit} reached: answering 503 (counted in rsgi_requests_refused_total)");
    }
}

/// At most 80 characters of a request target, for a log line. Cut on a character boundary: a
/// target refused for its raw non-ASCII bytes is exactly what gets logged.
fn truncate(uri: &http::Uri) -> String {
    let s = uri.to_string();
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or_default()),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::valid_authority;

    #[test]
    fn authorities() {
        for ok in ["a.example", "a.example:8080", "a.example:", "127.0.0.1:80", "[::1]", "[::1]:8000", "xn--d-1a.io"] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in
            ["", "a b", "a/b", "user@a.example", "a.example,b.example", "a.example:port", "[::1", "[zz]:80", "[::1]x"]
        {
            assert!(!valid_authority(bad), "{bad}");
        }
    }
}
