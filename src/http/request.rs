//! `RequestHead` and `RequestBody`: an owned, GIL-free copy of one request, read completely by tokio.
//! The bridges turn these into `environ` / `scope` on a Python thread; nothing here touches Python.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};

/// Where a connection came from and where it arrived (TCP or Unix socket).
#[derive(Clone, Debug)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

/// Per-connection facts copied into every request on that connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: Peer,
    pub local: Peer,
    /// "http" or "https"; the scheme the client used to reach us.
    pub scheme: &'static str,
    /// The connection's place under `--max-connections`, given back when its last holder drops
    /// it: the connection's task and, after an upgrade, the websocket's pump, because a
    /// websocket is still a connection (an open socket and its memory, issue #21); gunicorn's
    /// `worker_connections` and uvicorn's `--limit-concurrency` count websockets too. One per
    /// connection: websockets sharing an HTTP/2 connection (RFC 8441) share its place. `None`
    /// where no cap applies (unit tests).
    pub place: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// The request line and headers, owned so they can cross to the Python thread.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub conn: std::sync::Arc<ConnInfo>,
}

impl RequestHead {
    pub fn new(parts: http::request::Parts, conn: std::sync::Arc<ConnInfo>) -> Self {
        Self { method: parts.method, uri: parts.uri, version: parts.version, headers: parts.headers, conn }
    }
}

/// A request body that has been read completely before the app is called, so a slow client
/// never holds a Python thread. Small bodies stay in memory; large ones are spooled to an
/// anonymous temporary file (deleted by the OS when the last descriptor closes).
#[derive(Debug)]
pub enum RequestBody {
    Memory(Bytes),
    Spooled { file: std::fs::File, len: u64 },
}

impl RequestBody {
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::Spooled { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
