//! The ASGI bridge: requests reach the worker's asyncio loop through `bridge::event_loop`,
//! each becomes a scope plus a protocol object, and the app runs as a task on that loop.

pub mod http;
pub mod scope;
pub mod websocket;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::event_loop::{LoopEvent, LoopQueue};
use crate::bridge::log;
use crate::bridge::waiter::{set_result, Waiter};
use crate::http::app::Job;
use crate::scoreboard::Slot;

use scope::ScopeBuilder;

/// Sends `item` on a bounded channel from the loop thread without blocking it. If the channel
/// has room the returned awaitable is already complete; if it is full a tokio task finishes the
/// send and then wakes `waiter` through the loop queue, and the returned future (held by
/// `waiter`) is what the app awaits: backpressure. `None` when the receiver is gone.
pub(crate) fn send_or_wait<'py, T: Send + 'static>(
    py: Python<'py>,
    ctx: &AsgiContext,
    tx: &tokio::sync::mpsc::Sender<T>,
    item: T,
    waiter: &Arc<Waiter>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    use tokio::sync::mpsc::error::TrySendError;
    match tx.try_send(item) {
        Ok(()) => Ok(Some(crate::bridge::awaitable::done(py)?)),
        Err(TrySendError::Closed(_)) => Ok(None),
        Err(TrySendError::Full(item)) => {
            let fut = waiter.park(py, &ctx.create_future)?;
            let (tx, queue, woken) = (tx.clone(), ctx.queue.clone(), waiter.clone());
            ctx.runtime.spawn(async move {
                let _ = tx.send(item).await;
                queue.push(LoopEvent::Resolve(woken));
            });
            Ok(Some(fut))
        }
    }
}

/// What every request of a worker shares on the loop side.
pub struct AsgiContext {
    pub queue: Arc<LoopQueue>,
    pub runtime: tokio::runtime::Handle,
    /// `loop.create_future`
    pub create_future: Py<PyAny>,
}

/// The loop side of the hand-off: the loop calls `on_wake` when the eventfd is readable.
#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct AsgiBridge {
    ctx: Arc<AsgiContext>,
    app: Py<PyAny>,
    scopes: ScopeBuilder,
    /// `rsgi.asgi.run_http(app, scope, protocol)`: the coroutine that runs one request.
    run_http: Py<PyAny>,
    create_task: Py<PyAny>,
    /// Resolved when the server has drained.
    stopped: Py<PyAny>,
    slot: Slot,
}

impl AsgiBridge {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        py: Python<'_>,
        queue: Arc<LoopQueue>,
        runtime: tokio::runtime::Handle,
        app: Py<PyAny>,
        event_loop: &Bound<'_, PyAny>,
        run_http: Py<PyAny>,
        state: Option<Bound<'_, PyDict>>,
        stopped: Py<PyAny>,
        root_path: &str,
        slot: Slot,
    ) -> PyResult<Self> {
        let ctx = AsgiContext { queue, runtime, create_future: event_loop.getattr("create_future")?.unbind() };
        Ok(Self {
            ctx: Arc::new(ctx),
            app,
            scopes: ScopeBuilder::new(py, root_path, state)?,
            run_http,
            create_task: event_loop.getattr("create_task")?.unbind(),
            stopped,
            slot,
        })
    }

    fn start(&self, py: Python<'_>, job: Job) {
        let Job { head, body, reply, closed, ws, queued_at } = job;
        self.slot.request_done();
        self.slot.job_taken(queued_at);
        if closed.is_closed() {
            return; // the client left while the request was queued
        }
        let started = (|| -> PyResult<()> {
            let mut expiring = None;
            let (scope, proto) = match ws {
                Some(conn) => {
                    let accept = crate::http::websocket::accept_key(&head.headers);
                    let scope = self.scopes.build(py, "websocket", &head)?;
                    let proto = websocket::WebSocketProtocol::new(self.ctx.clone(), conn, reply, accept);
                    (scope, Bound::new(py, proto)?.into_any())
                }
                None => {
                    let scope = self.scopes.build(py, "http", &head)?;
                    let proto = Bound::new(py, http::HttpProtocol::new(self.ctx.clone(), body, reply, closed))?;
                    // --request-timeout: the task is cancelled if the core answers 504 first.
                    expiring = proto.get().may_expire().then(|| proto.clone());
                    (scope, proto.into_any())
                }
            };
            let coro = self.run_http.bind(py).call1((self.app.bind(py), scope, proto))?;
            let task = self.create_task.bind(py).call1((coro,))?;
            if let Some(proto) = expiring {
                proto.get().cancel_on_expiry(py, &task);
            }
            Ok(())
        })();
        if let Err(e) = started {
            // The reply slot went into the protocol object (dropped now): hyper answers 500.
            log::app_error(
                py,
                &format!("could not start the ASGI app for {} {}", head.method, head.uri),
                e.into_value(py).into_bound(py).into_any(),
            );
        }
    }
}

#[pymethods]
impl AsgiBridge {
    fn fileno(&self) -> i32 {
        self.ctx.queue.fd()
    }

    /// Called by the loop every second: a loop blocked by the app stops calling it, which is
    /// what `--timeout` detects for ASGI workers.
    fn heartbeat(&self) {
        self.slot.heartbeat("(event loop)");
    }

    /// Drains every queued event: starts new requests, wakes waiting receive()/send() calls.
    fn on_wake(&self, py: Python<'_>) {
        for event in self.ctx.queue.drain() {
            match event {
                LoopEvent::Request(job) => self.start(py, job),
                LoopEvent::Resolve(r) => r.resolve(py),
                LoopEvent::Stopped => set_result(py, self.stopped.bind(py), py.None().into_bound(py)),
            }
        }
    }
}
