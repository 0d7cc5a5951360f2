//! One ASGI WebSocket connection as the app sees it: `websocket.connect`, then the client's
//! messages and finally `websocket.disconnect`; `send()` accepts (with subprotocol and
//! headers), denies (close before accept, or an HTTP denial response), sends and closes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::http::{parse_headers, required};
use super::AsgiContext;
use crate::bridge::awaitable::{done, ready};
use crate::bridge::event_loop::{LoopEvent, Resolve};
use crate::bridge::log;
use crate::bridge::waiter::Waiter;
use crate::http::app::AppResponse;
use crate::http::body::ResponseBody;
use crate::http::response::set_length;
use crate::http::websocket::{close_frame, Incoming, Sent, WsConn};

pub struct WsState {
    conn: Arc<WsConn>,
    inner: Mutex<Inner>,
    /// What `receive()` awaits while no message is queued.
    receive: Waiter,
    /// What a `send()` held back by a slow client awaits.
    sent: Arc<Waiter>,
}

#[derive(Default)]
struct Inner {
    connect_sent: bool,
    /// The handshake reply slot, until the app accepts or denies.
    reply: Option<oneshot::Sender<AppResponse>>,
    /// `Sec-WebSocket-Accept` for the handshake.
    accept: String,
    accepted: bool,
    closed: bool,
    /// Denial response under construction (websocket.http.response.start seen), with its body
    /// so far. Boxed: every socket carries this field, few ever use it.
    denial: Option<Box<(StatusCode, HeaderMap, bytes::BytesMut)>>,
}

/// A message arrived (or the client left): hand it to the waiting `receive()`.
struct MessageReady(Arc<WsState>);

impl Resolve for MessageReady {
    fn resolve(&self, py: Python<'_>) {
        let conn = &self.0.conn;
        self.0.receive.wake(py, || conn.pop().map(|m| message_dict(py, m).map(Bound::into_any)).transpose());
    }
}

fn message_dict(py: Python<'_>, m: Incoming) -> PyResult<Bound<'_, PyDict>> {
    let msg = PyDict::new(py);
    match m {
        Incoming::Text(t) => {
            msg.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            msg.set_item(intern!(py, "text"), PyString::new(py, &t))?;
        }
        Incoming::Binary(b) => {
            msg.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            msg.set_item(intern!(py, "bytes"), PyBytes::new(py, &b))?;
        }
        Incoming::Closed { code, reason } => {
            msg.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
            msg.set_item(intern!(py, "code"), code)?;
            msg.set_item(intern!(py, "reason"), reason)?;
        }
    }
    Ok(msg)
}

#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct WebSocketProtocol {
    state: Arc<WsState>,
    ctx: Arc<AsgiContext>,
}

impl WebSocketProtocol {
    pub fn new(ctx: Arc<AsgiContext>, conn: Arc<WsConn>, reply: oneshot::Sender<AppResponse>, accept: String) -> Self {
        let inner = Inner { reply: Some(reply), accept, ..Default::default() };
        let state = WsState { conn, inner: Mutex::new(inner), receive: Waiter::default(), sent: Arc::default() };
        Self { state: Arc::new(state), ctx }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.state.inner)
    }

    /// Queues a frame for the client (waiting when it reads slowly). Unlike HTTP, sending on a
    /// closed websocket is an error the app must see (ASGI spec: an `OSError`).
    fn out<'py>(&self, py: Python<'py>, m: Message) -> PyResult<Bound<'py, PyAny>> {
        let hook = || -> crate::http::websocket::Hook {
            let (queue, sent) = (self.ctx.queue.clone(), self.state.sent.clone());
            Box::new(move || queue.push(LoopEvent::Resolve(sent)))
        };
        match self.state.conn.send(m, hook) {
            Sent::Queued => done(py),
            // The hook's wake-up is handled on this (the loop's) thread, after this returns.
            Sent::Waiting => self.state.sent.park(py, &self.ctx.create_future),
            Sent::Closed => Err(PyOSError::new_err("the websocket is closed")),
        }
    }

    fn reply(inner: &mut Inner, response: AppResponse) {
        if let Some(reply) = inner.reply.take() {
            let _ = reply.send(response);
        }
    }
}

#[pymethods]
impl WebSocketProtocol {
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut inner = self.lock();
        if !inner.connect_sent {
            inner.connect_sent = true;
            let msg = PyDict::new(py);
            msg.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return ready(py, msg.into_any());
        }
        if let Some(m) = self.state.conn.pop() {
            return ready(py, message_dict(py, m)?.into_any());
        }
        drop(inner);
        let (queue, state) = (self.ctx.queue.clone(), self.state.clone());
        let hook = Box::new(move || queue.push(LoopEvent::Resolve(Arc::new(MessageReady(state)))));
        if let Some(fut) = self.state.receive.wait(py, &self.ctx.create_future, || self.state.conn.on_message(hook))? {
            return Ok(fut);
        }
        // A message arrived in between: deliver it now.
        match self.state.conn.pop() {
            Some(m) => ready(py, message_dict(py, m)?.into_any()),
            None => Err(PyRuntimeError::new_err("websocket message vanished")),
        }
    }

    fn send<'py>(&self, py: Python<'py>, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let message = message.cast::<PyDict>().map_err(|_| PyTypeError::new_err("ASGI messages are dicts"))?;
        let kind: String = required(message, "type")?.extract()?;
        let mut inner = self.lock();
        match kind.as_str() {
            "websocket.accept" => {
                if inner.accepted || inner.reply.is_none() {
                    return Err(PyRuntimeError::new_err("websocket.accept sent twice or after a close"));
                }
                let mut headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => parse_headers(&h)?,
                    None => HeaderMap::new(),
                };
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                let accept = HeaderValue::from_str(&inner.accept).map_err(|e| PyValueError::new_err(e.to_string()))?;
                headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
                if let Some(sp) = message.get_item(intern!(py, "subprotocol"))?.filter(|s| !s.is_none()) {
                    let sp: String = sp.extract()?;
                    let value = HeaderValue::from_str(&sp).map_err(|_| PyValueError::new_err("invalid subprotocol"))?;
                    headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
                }
                inner.accepted = true;
                inner.accept = String::new(); // not needed again, for the socket's whole life
                Self::reply(
                    &mut inner,
                    AppResponse::new(StatusCode::SWITCHING_PROTOCOLS, headers, ResponseBody::empty()),
                );
                done(py)
            }
            "websocket.send" => {
                if !inner.accepted {
                    return Err(PyRuntimeError::new_err("websocket.send before websocket.accept"));
                }
                if inner.closed || self.state.conn.is_closed() {
                    return Err(PyOSError::new_err("the websocket is closed"));
                }
                let text = message.get_item(intern!(py, "text"))?.filter(|t| !t.is_none());
                let bytes = message.get_item(intern!(py, "bytes"))?.filter(|b| !b.is_none());
                let m = match (text, bytes) {
                    (Some(t), _) => Message::text(t.extract::<String>()?),
                    (None, Some(b)) => {
                        let b = b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("bytes must be bytes"))?;
                        Message::binary(Bytes::copy_from_slice(b.as_bytes()))
                    }
                    (None, None) => return Err(PyValueError::new_err("websocket.send needs text or bytes")),
                };
                self.out(py, m)
            }
            "websocket.close" => {
                let code: u16 = match message.get_item(intern!(py, "code"))? {
                    Some(c) if !c.is_none() => c.extract()?,
                    _ => 1000,
                };
                let reason: String = match message.get_item(intern!(py, "reason"))? {
                    Some(r) if !r.is_none() => r.extract()?,
                    _ => String::new(),
                };
                if !inner.accepted {
                    // Closing before accepting denies the handshake: 403, as the spec says.
                    inner.closed = true;
                    Self::reply(&mut inner, AppResponse::error(StatusCode::FORBIDDEN));
                    return done(py);
                }
                if inner.closed {
                    return done(py);
                }
                inner.closed = true;
                let m = Message::Close(Some(close_frame(code, &reason)));
                match self.out(py, m) {
                    Err(_) => done(py), // already gone: closing twice is fine
                    ok => ok,
                }
            }
            // The websocket denial-response extension: an HTTP response instead of the handshake.
            "websocket.http.response.start" => {
                if inner.accepted || inner.reply.is_none() {
                    return Err(PyRuntimeError::new_err("denial response after accept"));
                }
                let status: u16 = required(message, "status")?.extract()?;
                let status = StatusCode::from_u16(status).map_err(|_| PyValueError::new_err("invalid status"))?;
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => parse_headers(&h)?,
                    None => HeaderMap::new(),
                };
                inner.denial = Some(Box::new((status, headers, bytes::BytesMut::new())));
                done(py)
            }
            "websocket.http.response.body" => {
                let Some(denial) = inner.denial.as_mut() else {
                    return Err(PyRuntimeError::new_err("websocket.http.response.body before its start"));
                };
                if let Some(b) = message.get_item(intern!(py, "body"))? {
                    denial.2.extend_from_slice(b.cast::<PyBytes>()?.as_bytes());
                }
                let more = message.get_item(intern!(py, "more_body"))?.map_or(Ok(false), |m| m.is_truthy())?;
                if more {
                    return done(py); // denial bodies are small: collected, then sent whole
                }
                let Some(denial) = inner.denial.take() else {
                    return Err(PyRuntimeError::new_err(
                        "websocket.http.response.body before websocket.http.response.start",
                    ));
                };
                let (status, mut headers, body) = *denial;
                let data = body.freeze();
                set_length(&mut headers, data.len());
                inner.closed = true;
                Self::reply(&mut inner, AppResponse::new(status, headers, ResponseBody::full(data)));
                done(py)
            }
            other => Err(PyValueError::new_err(format!("unexpected ASGI message type {other:?} for websocket"))),
        }
    }

    /// Called once when the app's coroutine ends (with its exception, if any).
    #[pyo3(signature = (exc = None))]
    fn complete(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) {
        self.state.sent.clear();
        self.state.receive.clear();
        let (accepted, closed, reply) = {
            let mut inner = self.lock();
            (inner.accepted, inner.closed, inner.reply.take())
        };
        let failed = exc.as_ref().is_some_and(|e| !super::http::is_cancelled(py, e));
        if let Some(e) = exc.filter(|_| failed) {
            log::app_error(py, "Exception in ASGI websocket application", e);
        }
        if let Some(reply) = reply {
            // Never accepted: 500 if it failed, else 403 (the app chose not to accept).
            let status = if failed { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::FORBIDDEN };
            let _ = reply.send(AppResponse::error(status));
        } else if accepted && !closed {
            // 1011: the server hit an unexpected condition; 1000 if the app just returned.
            let code = if failed { 1011 } else { 1000 };
            self.state.conn.try_send(Message::Close(Some(close_frame(code, ""))));
        }
    }
}
