//! `ServerConfig`: the frozen, GIL-free copy of the settings the Rust core needs.
//! Extracted once from the Python `rsgi.config.Config` object when a worker starts; never re-read.

use std::time::Duration;

use pyo3::prelude::*;

use crate::http::conn::HttpVersions;
use crate::http::proxy::Trusted;
use crate::tls::TlsSettings;

/// Settings used by the HTTP core and the bridges. Python's `Config` is the single source of truth
/// (defaults, env, config file, flags); this struct only mirrors the fields Rust reads.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// tokio worker threads per process (they never run Python).
    pub runtime_threads: usize,
    /// Idle time allowed between requests on a kept-alive connection, and for a request head to arrive.
    pub keepalive: Duration,
    /// Longest pause allowed between two reads of a request body (408 after it).
    pub body_timeout: Duration,
    /// How long a stopping worker waits for in-flight requests before closing connections.
    pub graceful_timeout: Duration,
    /// Largest request body accepted (413 above it, checked before the app runs).
    pub max_body_size: u64,
    /// Bodies larger than this are spooled to an anonymous temporary file instead of memory.
    pub body_spool_threshold: usize,
    /// Longest request target (path + query) accepted; 414 above it.
    pub limit_request_line: usize,
    /// Most header fields in one request; 431 above it.
    pub limit_request_fields: usize,
    /// Longest single header field (name + value); 431 above it.
    pub limit_request_field_size: usize,
    /// Concurrent connections per worker; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Send `Server: rsgi` when the app did not set a Server header.
    pub server_header: bool,
    /// Send a `Date` header (hyper's cached one).
    pub date_header: bool,
    /// `--ws none` turns this off: upgrade requests then reach the app as plain HTTP requests.
    pub websockets: bool,
    /// Largest WebSocket message (and frame) accepted; bigger ones close the socket with 1009.
    pub ws_max_size: usize,
    /// Idle WebSocket connections are pinged this often...
    pub ws_ping_interval: Duration,
    /// ...and closed when nothing came back for this long after a ping.
    pub ws_ping_timeout: Duration,
    /// Access log: "-" (stdout) or a file; None when off.
    pub access_log: Option<String>,
    /// gunicorn-style `access_log_format`.
    pub access_log_format: String,
    /// Concurrent requests per worker past which new ones get 503 (usize::MAX: no limit).
    pub limit_concurrency: usize,
    /// Mount point of the app (`SCRIPT_NAME` / ASGI `root_path`).
    pub root_path: String,
    /// `--static` mounts: (URL prefix, directory).
    pub static_mounts: Vec<(String, String)>,
    /// `Cache-Control: max-age` for static files without a content hash in their name.
    pub static_max_age: u64,
    /// Proxies whose forwarding headers are believed; None with `--no-proxy-headers`.
    pub proxy: Option<Trusted>,
    /// `--health-path`: answered by the core (200, or 503 while draining); empty: off.
    pub health_path: String,
    /// `--http`: the protocols spoken on cleartext connections (TLS uses ALPN).
    pub http: HttpVersions,
    /// HTTP/2 streams a client may have open on one connection.
    pub h2_max_concurrent_streams: u32,
    /// TLS on every listener when `--certfile` is given.
    pub tls: Option<TlsSettings>,
    /// With both interfaces: path prefixes (ending in `/`) that go to the ASGI app.
    pub asgi_paths: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            runtime_threads: 1,
            keepalive: Duration::from_secs(5),
            body_timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(30),
            max_body_size: 50 * 1024 * 1024,
            body_spool_threshold: 1024 * 1024,
            limit_request_line: 8190,
            limit_request_fields: 100,
            limit_request_field_size: 8190,
            max_connections: 10_000,
            server_header: true,
            date_header: true,
            websockets: true,
            ws_max_size: 16 * 1024 * 1024,
            ws_ping_interval: Duration::from_secs(20),
            ws_ping_timeout: Duration::from_secs(20),
            root_path: String::new(),
            static_mounts: Vec::new(),
            static_max_age: 60,
            proxy: None,
            health_path: String::new(),
            http: HttpVersions::Auto,
            h2_max_concurrent_streams: 100,
            tls: None,
            asgi_paths: Vec::new(),
            limit_concurrency: usize::MAX,
            access_log: None,
            access_log_format: crate::http::access_log::DEFAULT_FORMAT.to_owned(),
        }
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

impl<'a, 'py> FromPyObject<'a, 'py> for ServerConfig {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let get = |name: &str| ob.getattr(name);
        Ok(Self {
            runtime_threads: get("runtime_threads")?.extract::<usize>()?.max(1),
            keepalive: secs(get("keepalive")?.extract()?),
            body_timeout: secs(get("body_timeout")?.extract()?),
            graceful_timeout: secs(get("graceful_timeout")?.extract()?),
            max_body_size: get("max_body_size")?.extract()?,
            body_spool_threshold: get("body_spool_threshold")?.extract()?,
            limit_request_line: get("limit_request_line")?.extract()?,
            limit_request_fields: get("limit_request_fields")?.extract()?,
            limit_request_field_size: get("limit_request_field_size")?.extract()?,
            max_connections: get("max_connections")?.extract::<usize>()?.max(1),
            server_header: get("server_header")?.extract()?,
            date_header: get("date_header")?.extract()?,
            websockets: get("ws")?.extract::<String>()? != "none",
            ws_max_size: get("ws_max_size")?.extract()?,
            ws_ping_interval: secs(get("ws_ping_interval")?.extract::<f64>()?.max(0.001)),
            ws_ping_timeout: secs(get("ws_ping_timeout")?.extract()?),
            access_log: get("access_log_target")?.call0()?.extract()?,
            access_log_format: {
                let f: String = get("access_log_format")?.extract()?;
                if f.is_empty() {
                    crate::http::access_log::DEFAULT_FORMAT.to_owned()
                } else {
                    f
                }
            },
            limit_concurrency: match get("limit_concurrency")?.extract::<usize>()? {
                0 => usize::MAX,
                n => n,
            },
            root_path: get("root_path")?.extract::<String>()?.trim_end_matches('/').to_owned(),
            static_mounts: get("static_mounts")?.call0()?.extract()?,
            static_max_age: get("static_max_age")?.extract()?,
            proxy: if get("proxy_headers")?.extract()? {
                let list: String = get("forwarded_allow_ips")?.extract()?;
                Some(Trusted::parse(&list).map_err(pyo3::exceptions::PyValueError::new_err)?)
            } else {
                None
            },
            health_path: get("health_path")?.extract()?,
            http: match get("http")?.extract::<String>()?.as_str() {
                "1" | "h11" | "httptools" => HttpVersions::Http1,
                "2" => HttpVersions::Http2,
                _ => HttpVersions::Auto,
            },
            h2_max_concurrent_streams: get("h2_max_concurrent_streams")?.extract()?,
            asgi_paths: get("asgi_path")?
                .extract::<Vec<String>>()?
                .into_iter()
                .map(|p| if p.ends_with('/') { p } else { format!("{p}/") })
                .collect(),
            tls: match get("certfile")?.extract::<String>()? {
                certfile if certfile.is_empty() => None,
                certfile => Some(TlsSettings {
                    certfile,
                    keyfile: get("keyfile")?.extract()?,
                    ca_certs: get("ca_certs")?.extract()?,
                    cert_reqs: get("cert_reqs")?.extract()?,
                }),
            },
        })
    }
}
