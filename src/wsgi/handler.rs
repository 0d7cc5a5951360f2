//! Calls the WSGI app for one job and turns its return value into an `AppResponse`:
//! one complete body for lists and Django responses, a stream for generators, and a file sent
//! by tokio for `wsgi.file_wrapper`. Every failure is logged with its traceback; `close()` is
//! always called.

use std::io::{Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_LENGTH};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyType};
use tokio::sync::{mpsc, oneshot};

use super::environ::EnvironBuilder;
use super::file_wrapper::FileWrapper;
use super::start_response::StartResponse;
use crate::bridge::stream::{self, Progress, STREAM_BUFFER};
use crate::http::app::{AppResponse, Job};
use crate::http::body::ResponseBody;
use crate::http::response::set_length;

pub struct WsgiApp {
    app: Py<PyAny>,
    environ: EnvironBuilder,
    /// `type(iter([]))` and `type(iter(()))`: iterating these can't block, so their chunks are
    /// collected into one body. Django's `HttpResponse` iterates as a list iterator.
    list_iter: Py<PyType>,
    tuple_iter: Py<PyType>,
}

impl WsgiApp {
    pub fn new(py: Python<'_>, app: Py<PyAny>, base: Bound<'_, PyDict>, root_path: String) -> PyResult<Self> {
        let list_iter = PyList::empty(py).try_iter()?.get_type().unbind();
        let tuple_iter = PyTuple::empty(py).try_iter()?.get_type().unbind();
        Ok(Self { app, environ: EnvironBuilder::new(py, base, root_path)?, list_iter, tuple_iter })
    }

    pub fn handle(&mut self, py: Python<'_>, job: Job) {
        let Job { head, body, reply, .. } = job;
        let what = || format!("{} {}", head.method, head.uri);
        let environ = match self.environ.build(py, &head, body) {
            Ok(env) => env,
            Err(e) => return self.fail(py, &what(), e, Progress::Pending(reply)),
        };
        let sr = match Bound::new(py, StartResponse::default()) {
            Ok(sr) => sr,
            Err(e) => return self.fail(py, &what(), e, Progress::Pending(reply)),
        };
        let result = match self.app.bind(py).call1((environ, &sr)) {
            Ok(r) => r,
            Err(e) => return self.fail(py, &what(), e, Progress::Pending(reply)),
        };
        if let Err((e, progress)) = self.respond(py, &result, &sr, reply) {
            self.fail(py, &what(), e, progress);
        }
        // PEP 3333: close() must be called whatever happened, including a client that left.
        if !result.is_exact_instance_of::<PyList>() && !result.is_exact_instance_of::<PyTuple>() {
            if let Err(e) = close(&result) {
                self.log(py, &format!("Error closing the response of {}", what()), e);
            }
        }
    }

    fn respond(
        &self,
        py: Python<'_>,
        result: &Bound<'_, PyAny>,
        sr: &Bound<'_, StartResponse>,
        reply: oneshot::Sender<AppResponse>,
    ) -> Result<(), (PyErr, Progress)> {
        if let Ok(fw) = result.cast::<FileWrapper>() {
            match file_response(py, fw, sr) {
                Ok(Some(resp)) => {
                    let _ = reply.send(resp);
                    return Ok(());
                }
                Ok(None) => {} // not a regular file: iterate it like any iterable
                Err(e) => return Err((e, Progress::Pending(reply))),
            }
        }
        let Ok(iter) = result.try_iter() else {
            let err = PyTypeError::new_err("the WSGI app returned a value that is not iterable");
            return Err((err, Progress::Pending(reply)));
        };
        let eager = iter.get_type().is(self.list_iter.bind(py)) || iter.get_type().is(self.tuple_iter.bind(py));
        let mut buf = BytesMut::new();
        let mut progress = Progress::Pending(reply);
        for item in iter {
            let item = match item {
                Ok(item) => item,
                Err(e) => return Err((e, progress)),
            };
            let Ok(chunk) = item.cast::<PyBytes>() else {
                let e = PyTypeError::new_err(format!("the WSGI iterable yielded {}, not bytes", item.get_type()));
                return Err((e, progress));
            };
            let data = chunk.as_bytes();
            progress = match progress {
                Progress::Streaming(tx) => {
                    let written = std::mem::take(&mut sr.borrow_mut().written);
                    let sent = written.into_iter().all(|w| stream::push(py, &tx, w));
                    if !sent || !stream::push(py, &tx, Bytes::copy_from_slice(data)) {
                        return Ok(()); // the client went away; close() still runs
                    }
                    Progress::Streaming(tx)
                }
                Progress::Pending(reply) if eager || data.is_empty() => {
                    buf.extend_from_slice(data);
                    Progress::Pending(reply)
                }
                Progress::Pending(reply) => {
                    // The first non-empty chunk of a lazy iterable (a generator, Django's
                    // StreamingHttpResponse): PEP 3333 sends the headers now, and each chunk
                    // goes out as it is produced.
                    let (status, headers) = match sr.borrow_mut().take_head() {
                        Ok(h) => h,
                        Err(e) => return Err((e, Progress::Pending(reply))),
                    };
                    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                    if reply.send(AppResponse { status, headers, body: ResponseBody::stream(rx) }).is_err() {
                        return Ok(());
                    }
                    let mut first = std::mem::take(&mut sr.borrow_mut().written);
                    first.push(buf.split().freeze());
                    first.push(Bytes::copy_from_slice(data));
                    if !first.into_iter().filter(|b| !b.is_empty()).all(|b| stream::push(py, &tx, b)) {
                        return Ok(());
                    }
                    Progress::Streaming(tx)
                }
            };
        }
        match progress {
            Progress::Streaming(tx) => {
                let written = std::mem::take(&mut sr.borrow_mut().written);
                written.into_iter().all(|w| stream::push(py, &tx, w));
                Ok(())
            }
            Progress::Pending(reply) => {
                let mut srm = sr.borrow_mut();
                let (status, mut headers) = match srm.take_head() {
                    Ok(h) => h,
                    Err(e) => return Err((e, Progress::Pending(reply))),
                };
                let body = join(std::mem::take(&mut srm.written), buf);
                set_length(&mut headers, body.len());
                let _ = reply.send(AppResponse { status, headers, body: ResponseBody::full(body) });
                Ok(())
            }
        }
    }

    /// An app failure: logged with its traceback; a 500 if nothing was sent yet, otherwise the
    /// connection is aborted so the client can't mistake a cut-off body for a complete one.
    fn fail(&self, py: Python<'_>, what: &str, err: PyErr, progress: Progress) {
        self.log(py, &format!("Error handling request {what}"), err);
        progress.fail(py, "the app failed while streaming its response");
    }

    fn log(&self, py: Python<'_>, msg: &str, err: PyErr) {
        crate::bridge::log::app_error(py, msg, err.into_value(py).into_bound(py).into_any());
    }
}

fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = result.py();
    if let Ok(close) = result.getattr(intern!(py, "close")) {
        close.call0()?;
    }
    Ok(())
}

fn join(written: Vec<Bytes>, buf: BytesMut) -> Bytes {
    if written.is_empty() {
        return buf.freeze();
    }
    let mut all = BytesMut::new();
    written.iter().for_each(|w| all.extend_from_slice(w));
    all.extend_from_slice(&buf);
    all.freeze()
}

/// Sends a `wsgi.file_wrapper` file from tokio. Returns `None` when the object has no real
/// file descriptor of a regular file, so the caller falls back to iterating it.
fn file_response(
    py: Python<'_>,
    fw: &Bound<'_, FileWrapper>,
    sr: &Bound<'_, StartResponse>,
) -> PyResult<Option<AppResponse>> {
    let filelike = fw.borrow().filelike.clone_ref(py).into_bound(py);
    let Some(fd) = filelike.call_method0("fileno").ok().and_then(|f| f.extract::<RawFd>().ok()) else {
        return Ok(None);
    };
    let Some(offset) = filelike.call_method0("tell").ok().and_then(|t| t.extract::<u64>().ok()) else {
        return Ok(None);
    };
    // SAFETY: `fd` is open (the file object owns it); we duplicate it before taking ownership.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return Ok(None);
    }
    // SAFETY: `dup` is a new descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(dup) });
    let size = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(None),
    };
    // The duplicate shares the file position with the original; Python's buffered position
    // (`tell()`) is the one that counts.
    file.seek(SeekFrom::Start(offset)).map_err(PyErr::from)?;
    let remaining = size.saturating_sub(offset);
    let (status, mut headers) = sr.borrow_mut().take_head()?;
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let len = declared.map_or(remaining, |d| d.min(remaining));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(Some(AppResponse { status, headers, body: ResponseBody::file(file, len) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_data_comes_before_the_iterable() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"b");
        assert_eq!(join(vec![Bytes::from_static(b"a")], buf), Bytes::from_static(b"ab"));
    }
}
