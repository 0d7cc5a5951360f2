//! The compressing half of `--compress`: one encoder per response (async-compression's tokio
//! writers over a `Vec`, which never waits, so every call completes at once) and the body that
//! runs another body through it as hyper asks for frames. Runs on tokio threads; no Python.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

use crate::http::body::ResponseBody;

/// The content codings rsgi produces, in the order it prefers them when a client weighs them
/// equally (see `super::choose`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Gzip,
}

impl Coding {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }
}

/// zstd's window (and with it most of its memory) is at most 2^19 = 512 KiB, and no larger than
/// the body when its length is known: a 4 KiB page does not set up zstd's 2 MiB default window,
/// and a long-lived stream (server-sent events) holds about 1 MiB for zstd, ~300 KiB for gzip
/// (whose window is always 32 KiB).
const MAX_WINDOW_LOG: u32 = 19;
/// The smallest window zstd takes.
const MIN_WINDOW_LOG: u32 = 10;

fn window_log(size: Option<u64>) -> u32 {
    match size {
        // ceil(log2(size)): the window that holds the whole body.
        Some(size) => (u64::BITS - size.saturating_sub(1).leading_zeros()).clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG),
        None => MAX_WINDOW_LOG,
    }
}

enum Codec {
    Gzip(GzipEncoder<Vec<u8>>),
    Zstd(ZstdEncoder<Vec<u8>>),
}

/// One response's compressor. Input goes in with `write`, `flush` and `finish`; what the codec has
/// let go of so far comes out with `take`.
pub struct Encoder(Codec);

impl Encoder {
    /// `level` is within the codec's range (Python checked it); `size` is the body's length when
    /// known, which bounds the window.
    pub fn new(coding: Coding, level: i32, size: Option<u64>) -> Self {
        let (out, level, window) = (Vec::new(), Level::Precise(level), window_log(size));
        Self(match coding {
            Coding::Gzip => Codec::Gzip(GzipEncoder::with_quality(out, level)),
            Coding::Zstd => {
                // Within zstd's 10..=31 (an invalid parameter would make async-compression panic).
                let params = [async_compression::zstd::CParameter::window_log(window)];
                Codec::Zstd(ZstdEncoder::with_quality_and_params(out, level, &params))
            }
        })
    }

    fn writer(&mut self) -> Pin<&mut (dyn AsyncWrite + Unpin)> {
        let writer: &mut (dyn AsyncWrite + Unpin) = match &mut self.0 {
            Codec::Gzip(e) => e,
            Codec::Zstd(e) => e,
        };
        Pin::new(writer)
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.0 {
            Codec::Gzip(e) => e.get_mut(),
            Codec::Zstd(e) => e.get_mut(),
        }
    }

    /// Compresses `data` (the codec may keep some of its output back until more comes or a flush).
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        while !data.is_empty() {
            match self.writer().poll_write(&mut cx, data) {
                Poll::Ready(Ok(n)) if n > 0 => data = data.get(n..).unwrap_or_default(),
                Poll::Ready(Err(e)) => return Err(e),
                // A `Vec` never waits; an encoder that takes nothing would loop forever.
                Poll::Ready(Ok(_)) | Poll::Pending => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            }
        }
        Ok(())
    }

    /// Makes everything written so far decodable by the client (gzip's sync flush, zstd's end of
    /// block): a streamed chunk reaches the client when the app sends it.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.writer().poll_flush(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::Error::from(io::ErrorKind::WriteZero)),
        }
    }

    /// Ends the compressed stream (its trailer: gzip's CRC and length, zstd's last block).
    pub fn finish(&mut self) -> io::Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.writer().poll_shutdown(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::Error::from(io::ErrorKind::WriteZero)),
        }
    }

    /// The compressed bytes produced since the last call.
    pub fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.output()))
    }
}

/// Compression work done per poll at most: a large body (a big file, a long chunk) is compressed
/// a slice at a time, and the connection's task lets others run between slices that produced
/// nothing, so one response does not hold a tokio thread for the whole of it.
const SLICE: usize = 64 * 1024;

/// Another body, compressed as it is sent.
pub struct Encoded {
    inner: ResponseBody,
    encoder: Encoder,
    /// Flush after each chunk of the inner body (streamed responses).
    flush_each: bool,
    /// A chunk taken from `inner` and not yet all compressed.
    pending: Bytes,
    done: bool,
}

impl Encoded {
    pub fn new(inner: ResponseBody, encoder: Encoder, flush_each: bool) -> Self {
        Self { inner, encoder, flush_each, pending: Bytes::new(), done: false }
    }

    pub fn is_end_stream(&self) -> bool {
        self.done
    }

    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if !self.pending.is_empty() {
                let slice = self.pending.split_to(self.pending.len().min(SLICE));
                let mut step = self.encoder.write(&slice);
                if step.is_ok() && self.pending.is_empty() && self.flush_each {
                    step = self.encoder.flush();
                }
                if let Err(e) = step {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                let out = self.encoder.take();
                if !out.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                if !self.pending.is_empty() {
                    // A slice went in and nothing came out yet: yield before the next one.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                // Trailers (which rsgi's bodies never carry) are dropped, as by the app's bridges.
                Poll::Ready(Some(Ok(frame))) => self.pending = frame.into_data().unwrap_or_default(),
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return match self.encoder.finish() {
                        Ok(()) => {
                            let tail = self.encoder.take();
                            Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))))
                        }
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_fit_the_body_within_bounds() {
        assert_eq!(window_log(None), 19);
        assert_eq!(window_log(Some(0)), 10);
        assert_eq!(window_log(Some(1024)), 10);
        assert_eq!(window_log(Some(1025)), 11);
        assert_eq!(window_log(Some(300 * 1024)), 19);
        assert_eq!(window_log(Some(u64::MAX)), 19);
    }

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out).map(|_| ()),
            Coding::Zstd => zstd::decode_all(data).map(|d| out = d),
        }
        .unwrap();
        out
    }

    /// Every level Python accepts (the ends and the default), with and without a known size,
    /// flushed midway as a stream is: the output decodes to the input.
    #[test]
    fn every_coding_and_level_round_trips() {
        let text = b"<p>hello, hello, hello</p>\n".repeat(100);
        for (coding, levels) in [(Coding::Gzip, [1, 6, 9]), (Coding::Zstd, [1, 3, 19])] {
            for level in levels {
                for size in [None, Some(text.len() as u64 * 2)] {
                    let mut e = Encoder::new(coding, level, size);
                    e.write(&text).unwrap();
                    e.flush().unwrap();
                    let mut out = e.take().to_vec();
                    e.write(&text).unwrap();
                    e.finish().unwrap();
                    out.extend_from_slice(&e.take());
                    assert!(out.len() < text.len() / 2, "{coding:?} {level}: {} bytes", out.len());
                    assert_eq!(decode(coding, &out), [&text[..], &text[..]].concat(), "{coding:?} {level} {size:?}");
                }
            }
        }
    }
}
