//! Awaitables that complete at once: `Ready` (with a value) and `Done` (with `None`).
//! `receive()` and `send()` return them when no waiting is needed (the body is already
//! buffered, the chunk fit in the channel), so the common path costs no asyncio Future and no
//! trip through the event loop.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

#[pyclass(module = "rsgi._rsgi")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub fn new(value: Py<PyAny>) -> Self {
        Self { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The first step finishes the await: StopIteration carries the result.
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    fn send(&mut self, py: Python<'_>, _value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }

    #[pyo3(signature = (*_args))]
    fn throw(&mut self, _args: Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        Err(pyo3::exceptions::PyRuntimeError::new_err("cannot throw into a completed awaitable"))
    }

    fn close(&mut self) {
        self.value = None;
    }
}

/// An awaitable that is already complete with `value`.
pub fn ready<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, Ready::new(value.unbind()))?.into_any())
}

/// Complete with `None`, and stateless, so one instance serves every `send()`. Its `__next__`
/// ends the iteration without raising: a C iterator returning NULL with no exception set means
/// "finished, result None" to `await`, which saves the StopIteration object `Ready` must raise
/// to carry a value (measured on websocket echo, where every message makes one `send()`).
#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self) -> Option<Py<PyAny>> {
        None
    }

    fn send(&self, _value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyStopIteration::new_err(()))
    }

    #[pyo3(signature = (*_args))]
    fn throw(&self, _args: Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        Err(pyo3::exceptions::PyRuntimeError::new_err("cannot throw into a completed awaitable"))
    }

    fn close(&self) {}
}

/// An awaitable that is already complete with `None`.
pub fn done(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static DONE: PyOnceLock<Py<Done>> = PyOnceLock::new();
    let done = DONE.get_or_try_init(py, || Py::new(py, Done))?;
    Ok(done.bind(py).clone().into_any())
}
