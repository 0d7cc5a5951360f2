//! `--http auto` on a cleartext connection: HTTP/2 with prior knowledge starts with a fixed
//! 24-byte preface, anything else is HTTP/1. The bytes read to decide are replayed to hyper.
//!
//! Hand-written rather than hyper-util's `auto::Builder`: that builder does not expose
//! HTTP/1's `max_header_size` (our 431 limit) and cannot tell us which protocol a connection
//! speaks, which the drain needs (HTTP/2 gets a GOAWAY; HTTP/1 must not be closed under a
//! request that is already on its way). hyper-util's replaying reader is private.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads just enough of `io` to know its protocol: `Ok((true, io))` for HTTP/2. Gives up
/// (an error) if the client sends nothing within `timeout` or closes first.
pub async fn is_h2<I: AsyncRead + Unpin>(mut io: I, timeout: Duration) -> std::io::Result<(bool, Rewind<I>)> {
    // Whatever is read beyond the preface is replayed too, so reading more than needed is harmless.
    let mut buf = Vec::with_capacity(PREFACE.len());
    let read = async {
        while buf.len() < PREFACE.len() {
            if io.read_buf(&mut buf).await? == 0 || !PREFACE.starts_with(&buf) {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| std::io::ErrorKind::TimedOut)??;
    let h2 = buf.starts_with(PREFACE);
    Ok((h2, Rewind { prefix: Bytes::from(buf), inner: io }))
}

/// An IO that first yields `prefix`, then reads from `inner`; writes go straight through.
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    pub fn new(inner: I) -> Self {
        Self { prefix: Bytes::new(), inner }
    }

    /// Yields `prefix` (bytes already read past something the caller consumed) before `inner`.
    pub fn replaying(prefix: Bytes, inner: I) -> Self {
        Self { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

super::write_through!(Rewind);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect(input: &'static [u8]) -> (bool, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        drop(client);
        let (h2, mut io) = is_h2(server, Duration::from_secs(1)).await.unwrap();
        let mut replay = Vec::new();
        io.read_to_end(&mut replay).await.unwrap();
        (h2, replay)
    }

    #[tokio::test]
    async fn preface_means_h2_and_everything_is_replayed() {
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let input: &'static [u8] = Box::leak(input.into_boxed_slice());
        assert_eq!(detect(input).await, (true, input.to_vec()));
    }

    #[tokio::test]
    async fn http1_is_replayed_untouched() {
        for input in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"PRIVATE / HTTP/1.1\r\n\r\n", b"P", b""] {
            assert_eq!(detect(input).await, (false, input.to_vec()));
        }
    }
}
