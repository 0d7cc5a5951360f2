//! A short-lived memory of static lookups: resolving a URL to a file costs a few dozen system
//! calls (the canonical path of the file and of its `.br`/`.gz` siblings, their metadata, the
//! read), so each result is kept for `TTL` and small files keep their bytes. A changed or new
//! file is seen within `TTL`, like nginx's `open_file_cache_valid`.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::file::encodings_for;
use super::resolve::resolve;

/// How long a lookup is trusted.
pub const TTL: Duration = Duration::from_secs(1);
/// Files up to this size are kept in memory (served without touching the disk)...
const KEEP_BYTES: u64 = 1024 * 1024;
/// ...while the cache holds at most this much file content; past it, it starts over.
const BUDGET: usize = 64 * 1024 * 1024;
/// And at most this many entries (404s are never cached, so scanners cannot fill it).
const MAX_ENTRIES: usize = 4096;

/// One way to send a file: the file itself (`encoding` None) or a precompressed sibling.
pub struct Variant {
    pub path: PathBuf,
    pub meta: Metadata,
    pub encoding: Option<&'static str>,
    /// The whole content, for small files.
    pub data: Option<Bytes>,
}

/// A resolved file with every variant of it; `variants[0]` is the identity file.
pub struct Asset {
    pub variants: Vec<Variant>,
}

impl Asset {
    /// Resolves `rest` (the URL path after the mount prefix) under `root`; None if there is no
    /// such regular file inside the root.
    fn load(root: &Path, rest: &str) -> Option<Asset> {
        let path = resolve(root, rest)?;
        let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
        let mut variants = vec![Variant { data: read_small(&path, &meta), path: path.clone(), meta, encoding: None }];
        for (encoding, path, meta) in encodings_for(root, &path) {
            variants.push(Variant { data: read_small(&path, &meta), path, meta, encoding: Some(encoding) });
        }
        Some(Asset { variants })
    }

    fn bytes(&self) -> usize {
        self.variants.iter().map(|v| v.data.as_ref().map_or(0, Bytes::len)).sum()
    }
}

/// A page-cached small file reads in microseconds (nginx reads small files the same way); a
/// hop to tokio's blocking pool would cost more.
fn read_small(path: &Path, meta: &Metadata) -> Option<Bytes> {
    if meta.len() > KEEP_BYTES {
        return None;
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path).ok()?.take(meta.len()).read_to_end(&mut buf).ok()?;
    // A file that changed size between the stat and the read is streamed from disk instead.
    (buf.len() as u64 == meta.len()).then(|| Bytes::from(buf))
}

#[derive(Default)]
pub struct AssetCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Instant, Arc<Asset>)>,
    bytes: usize,
}

impl AssetCache {
    /// The asset for URL `path` (`rest` is its part after the mount prefix), from memory when
    /// looked up less than `TTL` ago.
    pub fn get(&self, path: &str, root: &Path, rest: &str) -> Option<Arc<Asset>> {
        if let Some((at, asset)) = crate::sync::lock(&self.inner).map.get(path) {
            if at.elapsed() < TTL {
                return Some(asset.clone());
            }
        }
        let asset = Arc::new(Asset::load(root, rest)?);
        let mut entries = crate::sync::lock(&self.inner);
        let size = asset.bytes();
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + size > BUDGET {
            entries.map.clear();
            entries.bytes = 0;
        }
        if let Some((_, old)) = entries.map.insert(path.to_owned(), (Instant::now(), asset.clone())) {
            entries.bytes -= old.bytes();
        }
        entries.bytes += size;
        Some(asset)
    }
}
