//! One ASGI HTTP request as the app sees it: `receive()` returns the already-read body (then
//! waits for `http.disconnect`), `send()` takes `http.response.start`, `.body` (whole or
//! streamed, with backpressure) and `.pathsend`; `complete()` applies the failure policy when
//! the app's coroutine ends. With `--request-timeout`, a task whose response had not started
//! when the core answered 504 is cancelled (`cancel_on_expiry`).

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::sync::{mpsc, oneshot};

use super::{send_or_wait, AsgiContext};
use crate::bridge::awaitable::{done, ready};
use crate::bridge::event_loop::{LoopEvent, Resolve};
use crate::bridge::log;
use crate::bridge::stream::Progress;
use crate::bridge::stream::STREAM_BUFFER;
use crate::bridge::waiter::Waiter;
use crate::http::app::{AppResponse, Closed};
use crate::http::body::{Chunk, ResponseBody};
use crate::http::request::RequestBody;
use crate::http::response::set_length;

/// Size of the `http.request` messages a spooled (large) body is delivered in.
const BODY_CHUNK: usize = 256 * 1024;

pub struct HttpState {
    closed: Arc<Closed>,
    inner: Mutex<Inner>,
    /// What `receive()` awaits once the body is delivered: the disconnect.
    receive: Waiter,
    /// What a `send()` held back by a slow client awaits.
    sent: Arc<Waiter>,
}

#[derive(Default)]
struct Inner {
    body: Option<RequestBody>,
    reply: Option<oneshot::Sender<AppResponse>>,
    start: Option<(StatusCode, HeaderMap)>,
    stream: Option<mpsc::Sender<Chunk>>,
    complete: bool,
    /// `--request-timeout`: the app's task, cancelled if the core answers 504 first.
    task: Option<Py<PyAny>>,
}

/// The client is gone (or the response was fully written): wake a pending `receive()`.
struct Disconnected(Arc<HttpState>);

impl Resolve for Disconnected {
    fn resolve(&self, py: Python<'_>) {
        self.0.receive.wake(py, || Ok(Some(disconnect_message(py))));
    }
}

/// The core answered 504 (`--request-timeout`): the app's task is cancelled, so it sees
/// `CancelledError` where it awaits; whatever it sends afterwards goes nowhere, quietly.
struct Expired(Arc<HttpState>);

impl Resolve for Expired {
    fn resolve(&self, py: Python<'_>) {
        let task = crate::sync::lock(&self.0.inner).task.take();
        if let Some(task) = task {
            if let Err(e) = task.bind(py).call_method0(intern!(py, "cancel")) {
                e.print(py);
            }
        }
    }
}

fn disconnect_message(py: Python<'_>) -> Bound<'_, PyAny> {
    let msg = PyDict::new(py);
    let _ = msg.set_item(intern!(py, "type"), intern!(py, "http.disconnect"));
    msg.into_any()
}

#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct HttpProtocol {
    state: Arc<HttpState>,
    ctx: Arc<AsgiContext>,
}

impl HttpProtocol {
    pub fn new(
        ctx: Arc<AsgiContext>,
        body: RequestBody,
        reply: oneshot::Sender<AppResponse>,
        closed: Arc<Closed>,
    ) -> Self {
        let inner = Inner { body: Some(body), reply: Some(reply), ..Default::default() };
        let state = HttpState { closed, inner: Mutex::new(inner), receive: Waiter::default(), sent: Arc::default() };
        Self { state: Arc::new(state), ctx }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.state.inner)
    }

    /// Whether the core may answer 504 for this request (`--request-timeout` is on).
    pub fn may_expire(&self) -> bool {
        self.state.closed.may_expire()
    }

    /// `--request-timeout`: `task`, the one running the app for this request, is cancelled once
    /// the core has answered 504, at once if it already has. Called right after the task is made.
    pub fn cancel_on_expiry(&self, py: Python<'_>, task: &Bound<'_, PyAny>) {
        self.lock().task = Some(task.clone().unbind());
        let (queue, state) = (self.ctx.queue.clone(), self.state.clone());
        let hook = Box::new(move || queue.push(LoopEvent::Resolve(Arc::new(Expired(state)))));
        if !self.state.closed.on_expire(hook) && self.state.closed.is_expired() {
            Expired(self.state.clone()).resolve(py);
        }
    }

    /// Queues a chunk (waiting when the client is slow). A client that left makes it a no-op,
    /// as uvicorn does: an app streaming to nobody is not an error.
    fn push<'py>(&self, py: Python<'py>, tx: &mpsc::Sender<Chunk>, data: Bytes) -> PyResult<Bound<'py, PyAny>> {
        match send_or_wait(py, &self.ctx, tx, Ok(data), &self.state.sent)? {
            Some(awaitable) => Ok(awaitable),
            None => done(py),
        }
    }

    fn next_body_message<'py>(py: Python<'py>, inner: &mut Inner) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(body) = inner.body.take() else { return Ok(None) };
        let (data, more) = match body {
            RequestBody::Memory(b) => (PyBytes::new(py, &b), false),
            RequestBody::Spooled { mut file, len } => {
                let mut buf = vec![0u8; BODY_CHUNK.min(len as usize)];
                file.read_exact(&mut buf).map_err(PyErr::from)?;
                let rest = len - buf.len() as u64;
                if rest > 0 {
                    inner.body = Some(RequestBody::Spooled { file, len: rest });
                }
                (PyBytes::new(py, &buf), rest > 0)
            }
        };
        let msg = PyDict::new(py);
        msg.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
        msg.set_item(intern!(py, "body"), data)?;
        msg.set_item(intern!(py, "more_body"), more)?;
        Ok(Some(msg))
    }
}

#[pymethods]
impl HttpProtocol {
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut inner = self.lock();
        if let Some(msg) = Self::next_body_message(py, &mut inner)? {
            return ready(py, msg.into_any());
        }
        drop(inner);
        if self.state.closed.is_closed() {
            return ready(py, disconnect_message(py));
        }
        let (queue, state) = (self.ctx.queue.clone(), self.state.clone());
        let hook = Box::new(move || queue.push(LoopEvent::Resolve(Arc::new(Disconnected(state)))));
        match self.state.receive.wait(py, &self.ctx.create_future, || self.state.closed.on_close(hook))? {
            Some(fut) => Ok(fut),
            None => ready(py, disconnect_message(py)), // already closed
        }
    }

    fn send<'py>(&self, py: Python<'py>, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let message = message.cast::<PyDict>().map_err(|_| PyTypeError::new_err("ASGI messages are dicts"))?;
        let kind: String = required(message, "type")?.extract()?;
        let mut inner = self.lock();
        match kind.as_str() {
            "http.response.start" => {
                if inner.start.is_some() || inner.reply.is_none() {
                    return Err(PyRuntimeError::new_err("http.response.start sent twice"));
                }
                let status: u16 = required(message, "status")?.extract()?;
                let status = StatusCode::from_u16(status)
                    .map_err(|_| PyValueError::new_err(format!("invalid HTTP status {status}")))?;
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => parse_headers(&h)?,
                    None => HeaderMap::new(),
                };
                inner.start = Some((status, headers));
                done(py)
            }
            "http.response.body" => {
                if inner.complete {
                    if self.state.closed.is_expired() {
                        return done(py); // the client already has its 504; not the app's error
                    }
                    return Err(PyRuntimeError::new_err("http.response.body sent after the response was complete"));
                }
                let data = match message.get_item(intern!(py, "body"))? {
                    Some(b) => Bytes::copy_from_slice(
                        b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("body must be bytes"))?.as_bytes(),
                    ),
                    None => Bytes::new(),
                };
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                if let Some(tx) = inner.stream.clone() {
                    if !more {
                        inner.stream = None; // dropping the sender ends the body
                        inner.complete = true;
                    }
                    return if data.is_empty() { done(py) } else { self.push(py, &tx, data) };
                }
                let Some((status, mut headers)) = inner.start.take() else {
                    return Err(PyRuntimeError::new_err("http.response.body sent before http.response.start"));
                };
                let Some(reply) = inner.reply.take() else {
                    return Err(PyRuntimeError::new_err("the response was already sent"));
                };
                if !more {
                    inner.complete = true;
                    set_length(&mut headers, data.len());
                    let _ = reply.send(AppResponse { status, headers, body: ResponseBody::full(data) });
                    return done(py);
                }
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                if reply.send(AppResponse { status, headers, body: ResponseBody::stream(rx) }).is_err() {
                    inner.complete = true; // the client is gone; later sends are no-ops
                    return done(py);
                }
                inner.stream = Some(tx.clone());
                if data.is_empty() {
                    done(py)
                } else {
                    self.push(py, &tx, data)
                }
            }
            "http.response.pathsend" => {
                let path: String = required(message, "path")?.extract()?;
                let Some((status, mut headers)) = inner.start.take() else {
                    return Err(PyRuntimeError::new_err("http.response.pathsend sent before http.response.start"));
                };
                let file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                inner.complete = true;
                if let Some(reply) = inner.reply.take() {
                    let _ = reply.send(AppResponse { status, headers, body: ResponseBody::file(file, len) });
                }
                done(py)
            }
            // Trailers are not advertised in `extensions`; accept and drop them.
            "http.response.trailers" => done(py),
            other => Err(PyValueError::new_err(format!("unexpected ASGI message type {other:?} for http"))),
        }
    }

    /// Called once when the app's coroutine ends, with the exception that ended it (if any).
    #[pyo3(signature = (exc = None))]
    fn complete(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        self.state.closed.clear_hook();
        self.state.sent.clear();
        self.state.receive.clear();
        let (reply, stream, complete, _task) = {
            let mut inner = self.lock();
            (inner.reply.take(), inner.stream.take(), inner.complete, inner.task.take())
        };
        let problem = match (&exc, complete) {
            (Some(_), _) => Some("Exception in ASGI application"),
            (None, false) if reply.is_some() => Some("ASGI application returned without sending a response"),
            (None, false) if stream.is_some() => Some("ASGI application returned before finishing its response body"),
            _ => None,
        };
        let Some(problem) = problem else { return };
        match exc {
            Some(e) if !is_cancelled(py, &e) => log::app_error(py, problem, e),
            Some(_) => {} // cancelled at shutdown or by --request-timeout: not the app's fault
            // It caught the cancellation of --request-timeout and returned: the 504 was sent.
            None if self.state.closed.is_expired() => {}
            None => log::error(py, problem),
        }
        let progress = match (reply, stream) {
            (Some(reply), _) => Progress::Pending(reply),
            (None, Some(tx)) => Progress::Streaming(tx),
            (None, None) => return,
        };
        progress.fail_from_loop(&self.ctx.runtime, "the ASGI app failed mid-response");
    }
}

pub(super) fn is_cancelled(py: Python<'_>, exc: &Bound<'_, PyAny>) -> bool {
    py.import("asyncio")
        .and_then(|m| m.getattr("CancelledError"))
        .map(|c| exc.is_instance(&c).unwrap_or(false))
        .unwrap_or(false)
}

pub(super) fn required<'py>(message: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    message.get_item(key)?.ok_or_else(|| PyValueError::new_err(format!("ASGI message without {key:?}")))
}

/// `[(name, value), ...]` of bytes (see `bridge::convert::response_headers`).
pub(super) fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let pairs = headers.try_iter()?.map(|item| {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        Ok((bytes_of(&name)?, bytes_of(&value)?))
    });
    crate::bridge::convert::response_headers(pairs)
}

/// Header names and values are bytes in ASGI; str is accepted too (latin-1), as peers do.
fn bytes_of(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return crate::bridge::convert::latin1_bytes(s);
    }
    Err(PyTypeError::new_err("ASGI header names and values must be bytes"))
}
