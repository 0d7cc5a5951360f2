//! The contract between the HTTP core and an app bridge: tokio submits a `Job` (a fully read
//! request plus a reply slot) to a `JobSink`; the app's thread or event loop answers with an
//! `AppResponse`, and learns through `Closed` when the client is done with the request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;

use super::body::ResponseBody;
use super::request::{RequestBody, RequestHead};

/// One request waiting for the app.
pub struct Job {
    pub head: RequestHead,
    pub body: RequestBody,
    pub reply: oneshot::Sender<AppResponse>,
    /// When tokio queued it; lets the bridge report queueing time.
    pub queued_at: Instant,
    /// Closed when the client no longer waits for this request.
    pub closed: Arc<Closed>,
    /// Set for a WebSocket handshake: the connection the app talks to once it accepts.
    pub ws: Option<Arc<super::websocket::WsConn>>,
}

/// What the app produced: status and headers now, the body complete or still streaming.
pub struct AppResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
}

impl AppResponse {
    pub fn new(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Self {
        Self { status, headers, body }
    }

    /// The core's own short reply for an app that failed (500) or refused (403).
    pub fn error(status: StatusCode) -> Self {
        let (parts, body) = super::response::plain(status, false).into_parts();
        Self { status: parts.status, headers: parts.headers, body }
    }
}

/// Where the HTTP core submits jobs: implemented by each bridge (a channel that Python threads
/// block on for WSGI; a queue plus an event-loop wake-up for ASGI). Never blocks, never takes
/// the GIL.
pub trait JobSink: Send + Sync {
    /// Hands a job to the app. False only when the app side is gone (the worker is stopping).
    fn submit(&self, job: Job) -> bool;

    /// The server has finished draining; no job will follow.
    fn stopped(&self) {}

    /// Whether WebSocket handshakes go to the app (ASGI) or are plain requests (WSGI).
    fn websockets(&self) -> bool {
        false
    }
}

/// The app queue as the HTTP core sees it. Queues are unbounded on purpose: the number of
/// queued jobs is already capped by `--max-connections` (one request in flight per HTTP/1
/// connection), and a bounded queue would have to block a tokio thread or drop requests.
pub type AppQueue = std::sync::Arc<dyn JobSink>;

/// WSGI's queue: Python threads block on the receiving end (see `bridge::serve_jobs`).
pub struct ThreadQueue(crossbeam_channel::Sender<Job>);

/// The receiving side, drained by the Python thread(s) of a worker.
pub type JobReceiver = crossbeam_channel::Receiver<Job>;

impl ThreadQueue {
    pub fn channel() -> (AppQueue, JobReceiver) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (std::sync::Arc::new(Self(tx)), rx)
    }
}

impl JobSink for ThreadQueue {
    fn submit(&self, job: Job) -> bool {
        self.0.send(job).is_ok()
    }
}

/// Tells an app bridge when a request is over as far as the client is concerned: its response
/// was written completely, or the connection went away first. ASGI turns it into
/// `http.disconnect`; the hook runs on a tokio thread and must not take the GIL. With
/// `--request-timeout` it also tells when the core gave up on the request and answered 504
/// (`expire`), so ASGI can cancel the app's task.
#[derive(Default)]
pub struct Closed {
    state: Mutex<ClosedState>,
    /// `--request-timeout` is on: the core may give up on the request before its response
    /// starts (`expire`), so a bridge that can stop the app registers `on_expire`.
    expiring: bool,
}

#[derive(Default)]
struct ClosedState {
    closed: bool,
    hook: Option<Box<dyn FnOnce() + Send>>,
    expired: bool,
    on_expire: Option<Box<dyn FnOnce() + Send>>,
}

impl Closed {
    /// For a request under `--request-timeout`.
    pub fn expiring() -> Self {
        Self { expiring: true, ..Self::default() }
    }

    /// Whether the core may `expire` this request (without `--request-timeout` it never does,
    /// and the bridges register nothing for it).
    pub fn may_expire(&self) -> bool {
        self.expiring
    }

    pub fn is_closed(&self) -> bool {
        crate::sync::lock(&self.state).closed
    }

    /// Runs `hook` once the request is closed. Returns false (and drops `hook`) if it already is.
    pub fn on_close(&self, hook: Box<dyn FnOnce() + Send>) -> bool {
        let mut st = crate::sync::lock(&self.state);
        if st.closed {
            return false;
        }
        st.hook = Some(hook);
        true
    }

    /// Forgets the registered hooks (the app is done with the request).
    pub fn clear_hook(&self) {
        let mut st = crate::sync::lock(&self.state);
        st.hook = None;
        st.on_expire = None;
    }

    /// The core answered 504 for this request (`--request-timeout`): whatever the app still
    /// sends is discarded.
    pub fn is_expired(&self) -> bool {
        crate::sync::lock(&self.state).expired
    }

    /// Runs `hook` if the core gives up on the request (ASGI: cancel the app's task). Returns
    /// false (and drops `hook`) if it already has, or if the request is over.
    pub fn on_expire(&self, hook: Box<dyn FnOnce() + Send>) -> bool {
        let mut st = crate::sync::lock(&self.state);
        if st.expired || st.closed {
            return false;
        }
        st.on_expire = Some(hook);
        true
    }

    /// `--request-timeout` passed before the response started: the core answers 504 itself.
    /// Called on a tokio thread, before the request's guard drops (which closes it).
    pub fn expire(&self) {
        let hook = {
            let mut st = crate::sync::lock(&self.state);
            st.expired = true;
            st.on_expire.take()
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    fn close(&self) {
        // The expiry hook is only dropped, outside the lock: the request is over.
        let (hook, _on_expire) = {
            let mut st = crate::sync::lock(&self.state);
            st.closed = true;
            (st.hook.take(), st.on_expire.take())
        };
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Marks its `Closed` when dropped: held by the request's service future, then by its response
/// body, so the drop happens when hyper is finished with the request one way or the other.
pub struct CloseOnDrop(pub Arc<Closed>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
