//! `wsgi.file_wrapper`: lets an app (Django's `FileResponse`) hand a file to the server, which
//! then sends it from tokio without Python reading it. Still a valid iterable for middleware.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "rsgi._rsgi")]
pub struct FileWrapper {
    #[pyo3(get)]
    pub filelike: Py<PyAny>,
    #[pyo3(get)]
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self { filelike, blksize: blksize.max(1) }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The fallback when the core cannot send the file itself (no real fd, or a middleware
    /// re-wrapped the iterable): read it block by block like any WSGI iterable.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let data = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        let data = data.cast_into::<PyBytes>()?;
        Ok(if data.as_bytes().is_empty() { None } else { Some(data) })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
