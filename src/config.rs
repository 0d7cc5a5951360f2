//! `ServerConfig`: the frozen, GIL-free copy of the settings the Rust core uses. A leaf: every
//! layer reads it, it reads none of them.
//!
//! Python is the single source of every setting, default and normalisation (defaults < config
//! file < `RSGI_*` environment < flags, in `rsgi.config`). It hands the core one frozen,
//! normalised view, `rsgi.config.CoreConfig` (what `rsgi --check-config` prints as "core"), and
//! this struct takes it attribute by attribute, once per worker. Nothing here has a default of
//! its own, so the two languages cannot drift; Rust tests build their configs from Python's
//! defaults too (`tests/support`).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Settings used by the HTTP core and the bridges, named as `CoreConfig`'s attributes.
#[derive(Clone, Debug, FromPyObject)]
pub struct ServerConfig {
    /// tokio worker threads per process (they never run Python).
    pub runtime_threads: usize,
    /// Idle time allowed between requests on a kept-alive connection, and for a request head to arrive.
    #[pyo3(from_py_with = seconds)]
    pub keepalive: Duration,
    /// Longest pause allowed between two reads of a request body (408 after it).
    #[pyo3(from_py_with = seconds)]
    pub body_timeout: Duration,
    /// Longest a write to a client may stall before the connection is closed; None: no limit.
    #[pyo3(from_py_with = optional_seconds)]
    pub send_timeout: Option<Duration>,
    /// `--request-timeout`: how long a request may wait for its response to start, from its
    /// hand-over to the app (queue wait included); 504 from the core after it. None: no limit.
    #[pyo3(from_py_with = optional_seconds)]
    pub request_timeout: Option<Duration>,
    /// How long a stopping worker waits for in-flight requests before closing connections.
    #[pyo3(from_py_with = seconds)]
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
    /// `--header NAME:VALUE` (uvicorn's): added to every response that lacks that header.
    #[pyo3(from_py_with = header_list)]
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `--ws none` turns this off: upgrade requests then reach the app as plain HTTP requests.
    pub websockets: bool,
    /// Largest WebSocket message (and frame) accepted; bigger ones close the socket with 1009.
    pub ws_max_size: usize,
    /// Idle WebSocket connections are pinged this often...
    #[pyo3(from_py_with = seconds)]
    pub ws_ping_interval: Duration,
    /// ...and closed when nothing came back for this long after a ping.
    #[pyo3(from_py_with = seconds)]
    pub ws_ping_timeout: Duration,
    /// permessage-deflate (RFC 7692) is agreed when a client offers it (`--ws-per-message-deflate`).
    pub ws_per_message_deflate: bool,
    /// Access log: "-" (stdout) or a file; None when off.
    pub access_log: Option<String>,
    /// gunicorn-style `access_log_format` (Python fills in the default).
    pub access_log_format: String,
    /// Concurrent requests per worker past which new ones get 503 (usize::MAX: no limit).
    #[pyo3(from_py_with = unlimited_if_none)]
    pub limit_concurrency: usize,
    /// Mount point of the app (`SCRIPT_NAME` / ASGI `root_path`), without a trailing `/`.
    pub root_path: String,
    /// `--static` mounts: (URL prefix, directory).
    pub static_mounts: Vec<(String, String)>,
    /// `Cache-Control: max-age` for static files without a content hash in their name.
    pub static_max_age: u64,
    /// Proxies whose forwarding headers are believed; None with `--no-proxy-headers`.
    #[pyo3(from_py_with = trusted_proxies)]
    pub trusted_proxies: Option<TrustedProxies>,
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
    /// `--proxy-protocol`: every connection starts with a PROXY header; None when off.
    pub proxy_protocol: Option<ProxyProtocolSettings>,
    /// `--limit-rate`: requests per client address, 429 past them; None when off.
    pub limit_rate: Option<RateLimitSettings>,
    /// `--compress`: gzip and zstd for the responses that allow it; None when off.
    pub compress: Option<CompressSettings>,
}

/// The protocols a worker speaks (`--http`): `"1"`, `"2"` or `"auto"` in the core view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersions {
    Http1,
    Http2,
    Auto,
}

impl<'a, 'py> FromPyObject<'a, 'py> for HttpVersions {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>()?.as_str() {
            "1" => Ok(Self::Http1),
            "2" => Ok(Self::Http2),
            "auto" => Ok(Self::Auto),
            other => Err(PyValueError::new_err(format!("http: {other:?} is not \"1\", \"2\" or \"auto\""))),
        }
    }
}

/// `--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs` (0 none, 1 optional, 2 required —
/// the values of Python's `ssl.CERT_*`, as gunicorn and uvicorn take them).
#[derive(Clone, Debug, FromPyObject)]
pub struct TlsSettings {
    pub certfile: String,
    pub keyfile: String,
    pub ca_certs: String,
    pub cert_reqs: u8,
}

/// `--proxy-protocol` (which header versions) and `--proxy-allow-from` (who may send one; Python
/// fills in `--forwarded-allow-ips` when it is not given).
#[derive(Clone, Debug, FromPyObject)]
pub struct ProxyProtocolSettings {
    pub versions: ProxyVersions,
    #[pyo3(from_py_with = allow_list)]
    pub allow: TrustedProxies,
}

/// `--limit-rate N/s|N/m`, `--limit-burst`, `--limit-rate-path`, `--limit-rate-keys` (see
/// `http::rate_limit`). Python settles the defaults: a burst of 0 is already N, N is at least 1.
#[derive(Clone, Debug, FromPyObject)]
pub struct RateLimitSettings {
    /// Requests a client may make per `period`, sustained.
    pub requests: u64,
    /// One second (`N/s`) or one minute (`N/m`).
    #[pyo3(from_py_with = seconds)]
    pub period: Duration,
    /// Requests a client with a full bucket may make at once.
    pub burst: u64,
    /// Only requests for paths under these prefixes count; empty: every request for the app.
    pub paths: Vec<String>,
    /// Client addresses one worker tracks at most (the table's memory bound).
    pub max_keys: usize,
}

/// `--compress` and its companions (see `http::compress`). Python checked the levels against each
/// codec's range and lower-cased the types.
#[derive(Clone, Debug, FromPyObject)]
pub struct CompressSettings {
    /// Responses whose length is known and below this are sent as they are.
    pub min_size: u64,
    /// Content types that are compressed: `type/subtype`, `type/*`, `type/*+suffix`, `*/*`.
    pub types: Vec<String>,
    /// Each codec's level; None: that codec is not offered.
    pub gzip: Option<i32>,
    pub zstd: Option<i32>,
    /// Paths under these prefixes (percent-decoded) are never compressed (BREACH).
    pub exclude_paths: Vec<String>,
}

/// The PROXY protocol versions taken: `"auto"` (both), `"v1"` or `"v2"` in the core view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVersions {
    Both,
    V1,
    V2,
}

impl<'a, 'py> FromPyObject<'a, 'py> for ProxyVersions {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>()?.as_str() {
            "auto" => Ok(Self::Both),
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            other => Err(PyValueError::new_err(format!("proxy_protocol: {other:?} is not \"auto\", \"v1\" or \"v2\""))),
        }
    }
}

/// `--forwarded-allow-ips`: the peers whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    any: bool,
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Comma-separated addresses or networks (`10.0.0.0/8`), or `*` for every peer.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                out.any = true;
            } else if let Ok(net) = item.parse::<IpNet>() {
                out.nets.push(net);
            } else if let Ok(ip) = item.parse::<IpAddr>() {
                out.nets.push(IpNet::from(ip));
            } else {
                return Err(format!("forwarded-allow-ips: {item:?} is not an address or network"));
            }
        }
        Ok(out)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical(); // an IPv4-mapped IPv6 peer is its IPv4 address
        self.any || self.nets.iter().any(|n| n.contains(&ip))
    }
}

fn seconds(ob: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let s: f64 = ob.extract()?;
    Duration::try_from_secs_f64(s).map_err(|_| PyValueError::new_err(format!("{s} is not a duration in seconds")))
}

fn optional_seconds(ob: &Bound<'_, PyAny>) -> PyResult<Option<Duration>> {
    if ob.is_none() {
        return Ok(None);
    }
    seconds(ob).map(Some)
}

fn header_list(ob: &Bound<'_, PyAny>) -> PyResult<Vec<(http::HeaderName, http::HeaderValue)>> {
    let pairs: Vec<(String, String)> = ob.extract()?;
    pairs
        .into_iter()
        .map(|(name, value)| {
            let bad = |what: &str| PyValueError::new_err(format!("header {name:?}: not a valid {what}"));
            let name_ok = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("name"))?;
            Ok((name_ok, http::HeaderValue::from_str(&value).map_err(|_| bad("value"))?))
        })
        .collect()
}

fn unlimited_if_none(ob: &Bound<'_, PyAny>) -> PyResult<usize> {
    Ok(ob.extract::<Option<usize>>()?.unwrap_or(usize::MAX))
}

fn allow_list(ob: &Bound<'_, PyAny>) -> PyResult<TrustedProxies> {
    TrustedProxies::parse(&ob.extract::<String>()?).map_err(PyValueError::new_err)
}

fn trusted_proxies(ob: &Bound<'_, PyAny>) -> PyResult<Option<TrustedProxies>> {
    ob.extract::<Option<String>>()?.map(|list| TrustedProxies::parse(&list).map_err(PyValueError::new_err)).transpose()
}
