//! Request-body collection (limits, spooling) and the response body type handed to hyper.
//! Runs on tokio threads only; the Python side fills `ResponseBody` through channels.

use std::io::{Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

use std::sync::Arc;

use super::access_log::{AccessLog, Entry};
use super::app::CloseOnDrop;
use super::compress::{Encoded, Encoder};
use super::h1_reader::ConnWatch;
use super::request::RequestBody;
use crate::config::ServerConfig;
use crate::scoreboard::metrics::Measure;

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body grew past `--max-body-size` (413).
    TooLarge,
    /// The client sent a malformed body or went away (400; usually nobody is left to read it).
    Read(hyper::Error),
    /// Spooling to a temporary file failed (500).
    Spool(std::io::Error),
    /// The client sent nothing for `--body-timeout` in the middle of its body (408).
    Timeout,
}

/// Reads the whole body. Stays in memory up to `spool_threshold` bytes, then moves to a
/// temporary file. Writes to the temp file are small and sequential on a local disk; they run
/// inline rather than through `spawn_blocking`, which would cost a thread hop per frame.
/// A client that stalls mid-body is cut off after `body_timeout` without progress, so it can't
/// hold a connection slot forever (hyper's head timer does not cover bodies).
pub async fn collect(mut body: Incoming, cfg: &ServerConfig) -> Result<RequestBody, BodyError> {
    let (max, spool_threshold) = (cfg.max_body_size, cfg.body_spool_threshold);
    let mut mem = BytesMut::new();
    let mut spool: Option<std::fs::File> = None;
    let mut total: u64 = 0;
    loop {
        let Ok(next) = tokio::time::timeout(cfg.body_timeout, body.frame()).await else {
            return Err(BodyError::Timeout);
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else { continue }; // trailers are dropped
        total += data.len() as u64;
        if total > max {
            return Err(BodyError::TooLarge);
        }
        if let Some(file) = spool.as_mut() {
            file.write_all(&data).map_err(BodyError::Spool)?;
        } else if mem.len() + data.len() > spool_threshold {
            let mut file = tempfile::tempfile().map_err(BodyError::Spool)?;
            file.write_all(&mem).and_then(|_| file.write_all(&data)).map_err(BodyError::Spool)?;
            mem.clear();
            spool = Some(file);
        } else if mem.is_empty() && body.is_end_stream() {
            // The common single-frame body: keep the buffer hyper gave us, no copy.
            return Ok(RequestBody::Memory(data));
        } else {
            mem.extend_from_slice(&data);
        }
    }
    match spool {
        Some(mut file) => {
            file.seek(SeekFrom::Start(0)).map_err(BodyError::Spool)?;
            Ok(RequestBody::Spooled { file, len: total })
        }
        None => Ok(RequestBody::Memory(mem.freeze())),
    }
}

/// One chunk of a streamed response, or the error that aborts the connection mid-body.
pub type Chunk = Result<Bytes, std::io::Error>;

/// The body of every response rsgi sends, and (optionally) the guard that tells the app's bridge
/// when hyper is done with it: written completely, or dropped because the client went away.
pub struct ResponseBody {
    kind: Kind,
    _closed: Option<CloseOnDrop>,
    /// The access-log line written when hyper drops the body, with the bytes it took.
    log: Option<Box<(Entry, Arc<AccessLog>)>>,
    /// The request's metrics, recorded when hyper drops the body.
    measure: Option<Measure>,
    /// The HTTP/1 connection's reader, told when the response is done (see `h1_reader`).
    watch: Option<Arc<ConnWatch>>,
    sent: u64,
}

enum Kind {
    /// A complete body (most responses, and every fixed error reply).
    Full(Option<Bytes>),
    /// Chunks pushed by the app's thread or event loop; bounded for backpressure.
    Stream(mpsc::Receiver<Chunk>),
    /// A file sent by tokio without Python reading it (`wsgi.file_wrapper`); `remaining` caps it.
    File { reader: ReaderStream<tokio::io::Take<tokio::fs::File>>, remaining: u64 },
    /// One of the above, compressed as it is sent (`--compress`, see `compress`).
    Encoded(Box<Encoded>),
}

impl ResponseBody {
    pub fn empty() -> Self {
        Self::from(Kind::Full(None))
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self::from(Kind::Full(if data.is_empty() { None } else { Some(data) }))
    }

    pub fn stream(rx: mpsc::Receiver<Chunk>) -> Self {
        Self::from(Kind::Stream(rx))
    }

    pub fn file(file: std::fs::File, len: u64) -> Self {
        use tokio::io::AsyncReadExt;
        let take = tokio::fs::File::from_std(file).take(len);
        Self::from(Kind::File { reader: ReaderStream::with_capacity(take, 256 * 1024), remaining: len })
    }

    /// Writes an access-log line for this response once it has been sent (or abandoned).
    pub fn logged(mut self, log: Arc<AccessLog>, entry: Entry) -> Self {
        self.log = Some(Box::new((entry, log)));
        self
    }

    /// Records the request's metrics once the body has been sent (or abandoned).
    pub fn measured(mut self, measure: Measure) -> Self {
        self.measure = Some(measure);
        self
    }

    /// Tells the connection's reader when this response is done (sent or dropped).
    pub fn answering(mut self, watch: Arc<ConnWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Keeps `guard` alive as long as hyper holds the body.
    pub fn guarded(mut self, guard: CloseOnDrop) -> Self {
        self._closed = Some(guard);
        self
    }

    /// The whole content, when it is complete in memory (`--compress` encodes it in one go).
    pub fn in_memory(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Full(data) => Some(data.as_deref().unwrap_or_default()),
            _ => None,
        }
    }

    /// Replaces the content with `data`, keeping what is attached to the body (its guard).
    pub fn set_full(&mut self, data: Bytes) {
        self.kind = Kind::Full(if data.is_empty() { None } else { Some(data) });
    }

    /// Runs the content through `encoder` as hyper sends it, keeping what is attached to the body.
    /// A streamed body is flushed after each chunk, so every chunk reaches the client when sent.
    pub fn compress_as_sent(&mut self, encoder: Encoder) {
        let flush_each = matches!(self.kind, Kind::Stream(_));
        let content = Self::from(std::mem::replace(&mut self.kind, Kind::Full(None)));
        self.kind = Kind::Encoded(Box::new(Encoded::new(content, encoder, flush_each)));
    }
}

impl From<Kind> for ResponseBody {
    fn from(kind: Kind) -> Self {
        Self { kind, _closed: None, log: None, measure: None, watch: None, sent: 0 }
    }
}

impl ResponseBody {
    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &mut self.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data))),
            Kind::File { reader, remaining } => {
                use futures_core::Stream;
                match Pin::new(reader).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        *remaining = remaining.saturating_sub(chunk.len() as u64);
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) if *remaining > 0 => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "file shorter than the response's Content-Length",
                    )))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
            Kind::Encoded(encoded) => encoded.poll_next(cx),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(m) = self.measure.take() {
            m.finish(self.sent);
        }
        if let Some(log) = self.log.take() {
            let (entry, log) = *log;
            log.record(&entry, self.sent);
        }
        if let Some(watch) = self.watch.take() {
            watch.answered();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.poll_kind(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Stream(_) => false,
            Kind::File { remaining, .. } => *remaining == 0,
            Kind::Encoded(encoded) => encoded.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Stream(_) | Kind::Encoded(_) => SizeHint::default(),
            Kind::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}
