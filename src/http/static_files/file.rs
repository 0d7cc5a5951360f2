//! One static file's response: validators (`ETag`, `Last-Modified`) and 304s, `Range` (206,
//! 416), precompressed `.br`/`.gz` siblings, `Content-Type`, `Cache-Control`. No Python.

use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_range_header::RangeUnsatisfiableError;

use super::cache::{Asset, Variant};
use crate::http::body::ResponseBody;
use crate::http::response;

/// How a file may be cached.
pub struct Caching {
    /// `Cache-Control: max-age` for files without a content hash in their name.
    pub max_age: u64,
}

/// Builds the response for `asset` (resolved and checked to be inside its root). `head` drops
/// the body but keeps every header.
pub fn respond(asset: &Asset, req: &HeaderMap, head: bool, caching: &Caching) -> Response<ResponseBody> {
    let Some((identity, siblings)) = asset.variants.split_first() else {
        // `Asset`s are built with their identity variant first; an empty one is a bug, not a panic.
        return response::plain(StatusCode::NOT_FOUND, false);
    };
    let path = identity.path.as_path();
    // Ranges always refer to the identity bytes, so a Range request is never served compressed.
    let variant = if req.contains_key(RANGE) { None } else { pick_encoding(siblings, req.get(ACCEPT_ENCODING)) }
        .unwrap_or(identity);

    let mut headers = HeaderMap::new();
    let etag = etag(&variant.meta, variant.encoding);
    let modified = variant.meta.modified().ok();
    headers.insert(ETAG, etag.clone());
    if let Some(m) = modified {
        headers.insert(LAST_MODIFIED, http_date(m));
    }
    headers.insert(CACHE_CONTROL, cache_control(path, caching));
    if !siblings.is_empty() {
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    if not_modified(req, &etag, modified) {
        return build(StatusCode::NOT_MODIFIED, headers, ResponseBody::empty());
    }

    headers.insert(CONTENT_TYPE, content_type(path));
    if let Some(enc) = variant.encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
    }
    let len = variant.meta.len();
    let (status, start, count) = match range(req, &etag, modified, len) {
        Ranged::Full => (StatusCode::OK, 0, len),
        Ranged::Part(start, end) => {
            let v = format!("bytes {start}-{end}/{len}");
            headers.insert(CONTENT_RANGE, ascii(v));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Ranged::Unsatisfiable => {
            let v = format!("bytes */{len}");
            headers.insert(CONTENT_RANGE, ascii(v));
            headers.remove(CONTENT_TYPE);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            return build(StatusCode::RANGE_NOT_SATISFIABLE, headers, ResponseBody::empty());
        }
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(count));
    if head {
        return build(status, headers, ResponseBody::empty());
    }
    if let Some(data) = &variant.data {
        return build(status, headers, ResponseBody::full(data.slice(start as usize..(start + count) as usize)));
    }
    match open_body(&variant.path, start, count) {
        Ok(body) => build(status, headers, body),
        Err(e) => {
            log::error!("could not read static file {}: {e}", variant.path.display());
            crate::http::response::plain(StatusCode::INTERNAL_SERVER_ERROR, false)
        }
    }
}

fn build(status: StatusCode, headers: HeaderMap, body: ResponseBody) -> Response<ResponseBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn open_body(path: &Path, start: u64, count: u64) -> std::io::Result<ResponseBody> {
    let mut file = File::open(path)?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    Ok(ResponseBody::file(file, count))
}

/// Precompressed siblings that exist next to `path`, best first. Each is held to the same rule
/// as the file itself: after following symlinks it must still be inside `root`.
pub(super) fn encodings_for(root: &Path, path: &Path) -> Vec<(&'static str, PathBuf, Metadata)> {
    let mut out = Vec::new();
    for (enc, ext) in [("br", "br"), ("gzip", "gz")] {
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(ext);
        let Ok(sibling) = PathBuf::from(name).canonicalize() else { continue };
        if !sibling.starts_with(root) {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(&sibling) {
            if meta.is_file() {
                out.push((enc, sibling, meta));
            }
        }
    }
    out
}

/// The sibling with the highest q-value the client gives it (`br` first on a tie).
fn pick_encoding<'a>(siblings: &'a [Variant], accept: Option<&HeaderValue>) -> Option<&'a Variant> {
    let accept = accept?.to_str().ok()?;
    let mut best: Option<(f32, &Variant)> = None;
    for sibling in siblings {
        let q = quality(accept, sibling.encoding.unwrap_or("identity"));
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, sibling));
        }
    }
    best.map(|(_, v)| v)
}

/// RFC 9110 §12.5.3: the q-value of `coding` in an Accept-Encoding list; a coding that is not
/// named gets the q of `*` if present, else 0.
fn quality(accept: &str, coding: &str) -> f32 {
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
            })
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0.0)
}

/// A strong validator from size and modification time (nanoseconds), per encoding.
fn etag(meta: &Metadata, encoding: Option<&str>) -> HeaderValue {
    let nanos = meta.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let v = match encoding {
        Some(enc) => format!("\"{nanos:x}-{:x}-{enc}\"", meta.len()),
        None => format!("\"{nanos:x}-{:x}\"", meta.len()),
    };
    ascii(v)
}

fn http_date(t: SystemTime) -> HeaderValue {
    ascii(httpdate::fmt_http_date(t))
}

/// RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since.
fn not_modified(req: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = req.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return etag_list_matches(inm, etag.to_str().unwrap_or(""));
    }
    let (Some(ims), Some(modified)) = (req.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()), modified) else {
        return false;
    };
    match httpdate::parse_http_date(ims) {
        // HTTP dates have whole seconds: compare at that precision.
        Ok(since) => secs(modified) <= secs(since),
        Err(_) => false,
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Weak comparison (If-None-Match): `W/` prefixes are ignored; `*` matches any.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

enum Ranged {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// One satisfiable range gets a 206. A malformed header or several ranges are answered with the
/// whole file (RFC 9110 lets a server ignore Range; multipart/byteranges is not worth its weight
/// for static assets). An If-Range that does not match the current file also means the whole file.
fn range(req: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>, len: u64) -> Ranged {
    let Some(value) = req.get(RANGE).and_then(|v| v.to_str().ok()) else { return Ranged::Full };
    if let Some(if_range) = req.get(IF_RANGE).and_then(|v| v.to_str().ok()) {
        let fresh = if if_range.starts_with('"') {
            if_range == etag.to_str().unwrap_or("")
        } else {
            matches!((httpdate::parse_http_date(if_range), modified), (Ok(d), Some(m)) if secs(d) == secs(m))
        };
        if !fresh {
            return Ranged::Full;
        }
    }
    let parsed = match http_range_header::parse_range_header(value) {
        Ok(p) => p,
        Err(_) => return Ranged::Full,
    };
    match parsed.validate(len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Ranged::Part(*one.start(), *one.end()),
            _ => Ranged::Full,
        },
        Err(RangeUnsatisfiableError::Unsatisfiable) => Ranged::Unsatisfiable,
        Err(_) => Ranged::Full,
    }
}

/// Django's ManifestStaticFilesStorage names files `name.<12 hex digits>.ext`: such a name
/// never changes content, so it may be cached for a year (whitenoise does the same).
fn cache_control(path: &Path, caching: &Caching) -> HeaderValue {
    if is_hashed(path.file_name().and_then(|n| n.to_str()).unwrap_or("")) {
        return HeaderValue::from_static("public, max-age=31536000, immutable");
    }
    ascii(format!("public, max-age={}", caching.max_age))
}

/// A header value from text this module formats itself: digits, ASCII letters, punctuation and
/// HTTP dates, never a control byte, so `from_str` cannot fail; the empty value only satisfies
/// the type.
fn ascii(v: String) -> HeaderValue {
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn is_hashed(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(_ext), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next()) else { return false };
    !stem.is_empty() && hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml" | "svg+xml");
    let v =
        if text && mime.get_param("charset").is_none() { format!("{mime}; charset=utf-8") } else { mime.to_string() };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_hashed("site.0123456789ab.css"));
        assert!(is_hashed("jquery.min.abcdef012345.js"));
        assert!(!is_hashed("site.css"));
        assert!(!is_hashed("site.0123456789AB.css"));
        assert!(!is_hashed(".0123456789ab.css"));
        assert!(!is_hashed("site.0123456789a.css"));
    }

    #[test]
    fn accept_encoding_qualities() {
        assert_eq!(quality("gzip, deflate, br", "br"), 1.0);
        assert_eq!(quality("br;q=0.5", "br"), 0.5);
        assert_eq!(quality("br;q=0, gzip", "br"), 0.0);
        assert_eq!(quality("*", "gzip"), 1.0);
        assert_eq!(quality("br;q=0, *", "br"), 0.0);
        assert_eq!(quality("br;q=0, *", "gzip"), 1.0);
        assert_eq!(quality("identity", "gzip"), 0.0);
    }

    #[test]
    fn etag_lists() {
        assert!(etag_list_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_list_matches("W/\"b\"", "\"b\""));
        assert!(etag_list_matches("*", "\"b\""));
        assert!(!etag_list_matches("\"c\"", "\"b\""));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("a.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("a.unknownext")), "application/octet-stream");
    }
}
