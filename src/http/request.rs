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
