//! The one way an ASGI call waits for tokio: an asyncio future parked in a `Waiter`, resolved on
//! the loop thread when tokio pushes a `Resolve` through the loop queue. Used by `receive()`
//! (HTTP: for the disconnect; WebSocket: for the next message) and by a `send()` held back by
//! backpressure, for both protocols. Everything here runs on the loop thread with the GIL held.

use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;

use super::event_loop::Resolve;

/// At most one pending future. Empty while nothing waits, and again once the future is resolved
/// or the app is done (`clear`).
#[derive(Default)]
pub struct Waiter(Mutex<Option<Py<PyAny>>>);

impl Waiter {
    /// A new future from `create_future` (`loop.create_future`), parked until `wake`.
    pub fn park<'py>(&self, py: Python<'py>, create_future: &Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let fut = create_future.bind(py).call0()?;
        *crate::sync::lock(&self.0) = Some(fut.clone().unbind());
        Ok(fut)
    }

    /// What a `receive()` with nothing to return awaits: the future already parked (a second
    /// caller waits on the same one), or a new one that `arm` asks tokio to wake. `arm` returns
    /// false when the event happened in the meantime (the recheck that closes the race between
    /// "nothing yet" and registering): then nothing is parked and `None` says "look again now".
    pub fn wait<'py>(
        &self,
        py: Python<'py>,
        create_future: &Py<PyAny>,
        arm: impl FnOnce() -> bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Some(fut) = crate::sync::lock(&self.0).as_ref() {
            return Ok(Some(fut.bind(py).clone()));
        }
        let fut = self.park(py, create_future)?;
        if arm() {
            return Ok(Some(fut));
        }
        self.clear();
        Ok(None)
    }

    /// Resolves the parked future with what `value` returns. `None` from `value` (nothing to
    /// deliver after all) leaves the future parked.
    pub fn wake<'py>(&self, py: Python<'py>, value: impl FnOnce() -> PyResult<Option<Bound<'py, PyAny>>>) {
        let mut slot = crate::sync::lock(&self.0);
        if slot.is_none() {
            return;
        }
        match value() {
            Ok(Some(v)) => {
                if let Some(fut) = slot.take() {
                    drop(slot);
                    set_result(py, fut.bind(py), v);
                }
            }
            Ok(None) => {}
            Err(e) => e.print(py),
        }
    }

    /// The app is done: nothing will await the future any more.
    pub fn clear(&self) {
        *crate::sync::lock(&self.0) = None;
    }
}

/// A `send()` waiter resolves with `None` once tokio has queued the item.
impl Resolve for Waiter {
    fn resolve(&self, py: Python<'_>) {
        self.wake(py, || Ok(Some(py.None().into_bound(py))));
    }
}

/// Resolves an asyncio future unless the app already cancelled it.
pub fn set_result(py: Python<'_>, fut: &Bound<'_, PyAny>, value: Bound<'_, PyAny>) {
    let pending = fut.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).map(|done| !done);
    if let Ok(true) = pending {
        if let Err(e) = fut.call_method1(intern!(py, "set_result"), (value,)) {
            e.print(py);
        }
    }
}
