//! Listening sockets inherited from the supervisor (TCP or Unix), turned into tokio listeners,
//! and the accepted-stream type the HTTP layer serves. Never touches Python.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::http::request::Peer;

/// A listening socket bound by the supervisor before the workers were forked.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Adopts a listening fd. The fd is duplicated first, so Python keeps ownership of the
    /// original (the supervisor closes it; the worker's `socket` object stays valid).
    /// Must be called inside the tokio runtime.
    pub fn from_fd(fd: RawFd) -> std::io::Result<Self> {
        // SAFETY: `fd` is a valid open socket owned by the Python caller for the duration of
        // this call; `dup` gives us an independent descriptor that `OwnedFd` will close.
        let dup = unsafe { libc::dup(fd) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `dup` is a fresh descriptor we exclusively own.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let sock = socket2::Socket::from(owned);
        sock.set_nonblocking(true)?;
        let is_tcp = sock.local_addr()?.as_socket().is_some();
        if is_tcp {
            Ok(Listener::Tcp(TcpListener::from_std(std::net::TcpListener::from(sock))?))
        } else {
            Ok(Listener::Unix(UnixListener::from_std(std::os::unix::net::UnixListener::from(sock))?))
        }
    }

    /// Accepts one connection and returns it with the peer and local addresses.
    pub async fn accept(&self) -> std::io::Result<(Stream, Peer, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, remote) = l.accept().await?;
                // Responses are written in one go by hyper; Nagle would only add latency.
                let _ = s.set_nodelay(true);
                let local = s.local_addr().map(Peer::Tcp).unwrap_or(Peer::Unix);
                Ok((Stream::Tcp(s), Peer::Tcp(remote), local))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), Peer::Unix, Peer::Unix))
            }
        }
    }
}

/// An accepted connection of either family, as one type hyper can serve.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
        }
    };
}

// Hand-written (instead of `tokio_util::either::Either`) so the type reads as what it is; the
// macro above only forwards each call to the inner stream.
impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
