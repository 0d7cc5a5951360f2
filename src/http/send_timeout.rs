//! `--send-timeout`: a connection whose client stops reading is closed once a write has been
//! stalled that long (nginx's `send_timeout`). Without it, a client that never reads — an HTTP/1
//! reader of a large response, an HTTP/2 client flooding PINGs or SETTINGS while ignoring the
//! replies, a websocket that never drains — holds its connection slot and its buffered response
//! for ever: hyper has no send timeout, and its keep-alive closes by writing a GOAWAY, which
//! itself never completes. Wraps the accepted socket, under TLS, so every byte counts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct SendTimeout<I> {
    inner: I,
    limit: Option<Duration>,
    /// Armed when a write returns Pending, disarmed when one makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> SendTimeout<I> {
    pub fn new(inner: I, limit: Option<Duration>) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Passes a write's result through, and turns a stall longer than the limit into an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let Some(limit) = self.limit else { return res };
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendTimeout<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendTimeout<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        this.watch(cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_limit_and_a_moving_one_never() {
        // A 64-byte pipe nobody reads: the second write stalls.
        let (client, _server) = tokio::io::duplex(64);
        let mut io = SendTimeout::new(client, Some(Duration::from_secs(60)));
        io.write_all(&[0; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));

        let (client, mut server) = tokio::io::duplex(64);
        let mut io = SendTimeout::new(client, Some(Duration::from_secs(60)));
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            // Reads slowly but steadily: 50 s between reads, under the limit each time.
            loop {
                tokio::time::sleep(Duration::from_secs(50)).await;
                let mut buf = [0; 64];
                match tokio::io::AsyncReadExt::read(&mut server, &mut buf).await {
                    Ok(0) | Err(_) => return sink.len(),
                    Ok(n) => sink.extend_from_slice(&buf[..n]),
                }
            }
        });
        io.write_all(&[1; 640]).await.unwrap();
        drop(io);
        assert_eq!(reader.await.unwrap(), 640);
    }
}
