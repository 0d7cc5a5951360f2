//! Static files served by the core, before anything reaches Python: `--static PREFIX=DIR`
//! mounts (and `--static-django`, resolved in Python to STATIC_URL=STATIC_ROOT).
//! `resolve` maps a URL to a file safely; `file` builds the response.

pub mod cache;
pub mod file;
pub mod resolve;

use std::path::PathBuf;

use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::http::body::ResponseBody;
use crate::http::response;
use cache::AssetCache;
use file::Caching;

/// One `--static` mount: URL prefix (always ending in `/`) and the canonical directory.
#[derive(Clone, Debug)]
pub struct Mount {
    prefix: String,
    root: PathBuf,
}

/// Every mount of a worker, longest prefix first.
#[derive(Default)]
pub struct StaticFiles {
    mounts: Vec<Mount>,
    max_age: u64,
    cache: AssetCache,
}

impl StaticFiles {
    /// `mounts` are (URL prefix, directory) pairs. Fails if a directory does not exist.
    pub fn new(mounts: &[(String, String)], max_age: u64) -> std::io::Result<Self> {
        let mut out = Vec::new();
        for (prefix, dir) in mounts {
            let root = std::fs::canonicalize(dir)
                .map_err(|e| std::io::Error::new(e.kind(), format!("static directory {dir:?}: {e}")))?;
            if !root.is_dir() {
                return Err(std::io::Error::other(format!("static directory {dir:?} is not a directory")));
            }
            let mut prefix = prefix.clone();
            if !prefix.starts_with('/') {
                prefix.insert(0, '/');
            }
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            out.push(Mount { prefix, root });
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Ok(Self { mounts: out, max_age, cache: AssetCache::default() })
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// The response for a request under a mount, or None when no mount covers its path (the
    /// app gets it). Under a mount the core answers everything itself: a missing file is a 404
    /// from here, as with nginx's `location /static/`, so scanners never reach a Python thread.
    pub fn respond<B>(&self, req: &Request<B>) -> Option<Response<ResponseBody>> {
        let path = req.uri().path();
        let (mount, rel) = self.mounts.iter().find_map(|m| Some((m, path.strip_prefix(m.prefix.as_str())?)))?;
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut resp = response::plain(StatusCode::METHOD_NOT_ALLOWED, false);
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return Some(resp);
            }
        };
        let Some(asset) = self.cache.get(path, &mount.root, rel) else {
            return Some(response::plain(StatusCode::NOT_FOUND, false));
        };
        Some(file::respond(&asset, req.headers(), head, &Caching { max_age: self.max_age }))
    }
}
