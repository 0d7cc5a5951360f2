//! `Ready`: an awaitable that completes at once with a value. `receive()` and `send()` return it
//! when no waiting is needed (the body is already buffered, the chunk fit in the channel), so
//! the common path costs no asyncio Future and no trip through the event loop.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

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

/// An awaitable that is already complete with `None`.
pub fn done(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    ready(py, py.None().into_bound(py))
}
