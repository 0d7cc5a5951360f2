//! `--compress`: gzip or zstd for the responses a client accepts them for, chosen by its
//! `Accept-Encoding` q-values; which responses may be compressed (status, type, size, what the app
//! already said) and how their headers change. The codecs run on tokio threads (`encoder`), never
//! under the GIL; nothing here touches Python.

pub mod encoder;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;

use crate::config::CompressSettings;
use crate::http::body::ResponseBody;
pub use encoder::{Coding, Encoded, Encoder};

/// Complete bodies up to this size are compressed in one go when the response is built, and sent
/// with their new `Content-Length` (or as they were, when compressing did not make them smaller).
/// Larger ones are compressed as they are sent, a slice at a time, without a length.
const IN_MEMORY: usize = 256 * 1024;

/// What a request allows, settled before its response exists: the coding to use (None: the
/// client takes none of those offered, but an eligible response still gets `Vary`).
pub struct Offer<'a> {
    settings: &'a CompressSettings,
    coding: Option<(Coding, i32)>,
}

/// None when compression is off, for HEAD (nothing to compress) and under `--compress-exclude-path`.
pub fn offer<'a, B>(settings: Option<&'a CompressSettings>, req: &Request<B>) -> Option<Offer<'a>> {
    let settings = settings?;
    if req.method() == Method::HEAD || excluded(&settings.exclude_paths, req.uri().path()) {
        return None;
    }
    Some(Offer { settings, coding: choose(req.headers(), settings) })
}

impl Offer<'_> {
    /// Compresses `resp` if it may be, adding `Vary: Accept-Encoding` to every response that could
    /// have been (so a shared cache keeps one copy per coding).
    pub fn apply(&self, resp: &mut Response<ResponseBody>) {
        let exact = resp.body().size_hint().exact();
        if !eligible(self.settings, resp.status(), resp.headers(), exact) {
            return;
        }
        add_vary(resp.headers_mut());
        let Some((coding, level)) = self.coding else { return };
        if let Some(data) = resp.body().in_memory().filter(|d| d.len() <= IN_MEMORY) {
            let Some(compressed) = compress_whole(coding, level, data) else { return };
            let len = compressed.len();
            resp.body_mut().set_full(compressed);
            compressed_headers(resp.headers_mut(), coding);
            resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
            return;
        }
        let size = exact.or_else(|| declared_length(resp.headers()));
        resp.body_mut().compress_as_sent(Encoder::new(coding, level, size));
        compressed_headers(resp.headers_mut(), coding);
    }
}

/// The whole body compressed, or None when that is not smaller (data already compressed but
/// labelled as text) or the codec failed: the response then goes out as it was.
fn compress_whole(coding: Coding, level: i32, data: &[u8]) -> Option<Bytes> {
    let mut encoder = Encoder::new(coding, level, Some(data.len() as u64));
    if let Err(e) = encoder.write(data).and_then(|()| encoder.finish()) {
        log::debug!("{} compression failed, sending the body as it is: {e}", coding.token());
        return None;
    }
    let out = encoder.take();
    (out.len() < data.len()).then_some(out)
}

/// The headers of a compressed response: its coding; no length (hyper frames it, or the caller
/// sets the new one); no byte ranges (they would refer to the compressed bytes, which are not
/// stable); and a weak `ETag`, since the bytes are no longer the ones a strong validator names,
/// while `If-None-Match` (weak comparison) still matches it, as with nginx and Django's GZipMiddleware.
fn compressed_headers(headers: &mut HeaderMap, coding: Coding) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    if let Some(etag) = headers.get(ETAG).filter(|v| v.as_bytes().starts_with(b"\"")) {
        if let Ok(weak) = HeaderValue::from_bytes(&[&b"W/"[..], etag.as_bytes()].concat()) {
            headers.insert(ETAG, weak);
        }
    }
}

/// Whether a response may be compressed at all, whatever the client accepts.
fn eligible(settings: &CompressSettings, status: StatusCode, headers: &HeaderMap, exact: Option<u64>) -> bool {
    // 1xx and 204/304 have no body; a 206 is a range of the identity bytes.
    if status.is_informational()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED)
    {
        return false;
    }
    // Already encoded (by the app, GZipMiddleware, or a precompressed static sibling): never twice.
    if headers.contains_key(CONTENT_ENCODING) || headers.contains_key(CONTENT_RANGE) {
        return false;
    }
    if no_transform(headers) {
        return false;
    }
    if let Some(len) = exact.or_else(|| declared_length(headers)) {
        if len == 0 || len < settings.min_size {
            return false;
        }
    }
    headers.get(CONTENT_TYPE).is_some_and(|t| type_matches(&settings.types, t.as_bytes()))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// RFC 9111 §5.2.2.6: `Cache-Control: no-transform` forbids changing the content, coding included.
/// Also how an app opts one response out (`patch_cache_control(response, no_transform=True)`).
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|d| {
            let name = d.split(|&b| b == b'=').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"no-transform")
        })
    })
}

/// `--compress-types` patterns, lower-case: `type/subtype`, `type/*`, `type/*+suffix` (any
/// subtype ending so), `*/*`. Parameters (`; charset=utf-8`) are not compared.
fn type_matches(patterns: &[String], content_type: &[u8]) -> bool {
    let essence = content_type.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    let Ok(essence) = std::str::from_utf8(essence) else { return false };
    let essence = essence.to_ascii_lowercase();
    let Some((ty, sub)) = essence.split_once('/') else { return false };
    patterns.iter().any(|p| {
        let Some((pty, psub)) = p.split_once('/') else { return false };
        let sub_ok = match psub.strip_prefix('*') {
            Some(suffix) => sub.ends_with(suffix),
            None => psub == sub,
        };
        (pty == "*" || pty == ty) && sub_ok
    })
}

/// `--compress-exclude-path`: compared after percent-decoding, as the app routes the path
/// (`/%61ccount/` is `/account/`), so an attacker cannot get an excluded page compressed by
/// spelling its URL differently.
fn excluded(prefixes: &[String], path: &str) -> bool {
    prefixes.iter().any(|prefix| {
        let mut decoded = percent_encoding::percent_decode_str(path);
        prefix.bytes().all(|b| decoded.next() == Some(b))
    })
}

/// Adds `Accept-Encoding` to `Vary`, merged with what the app listed (one field, its names kept);
/// left alone when already there or `*`.
fn add_vary(headers: &mut HeaderMap) {
    let mut names: Vec<u8> = Vec::new();
    for value in headers.get_all(VARY) {
        for name in value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|n| !n.is_empty()) {
            if name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding") {
                return;
            }
            names.extend_from_slice(name);
            names.extend_from_slice(b", ");
        }
    }
    names.extend_from_slice(b"Accept-Encoding");
    if let Ok(v) = HeaderValue::from_bytes(&names) {
        headers.insert(VARY, v);
    }
}

/// RFC 9110 §12.5.3: the offered coding with the highest q-value in `Accept-Encoding` (a coding
/// not named takes the q of `*`; q=0 refuses it), zstd before gzip on a tie. None without the
/// header: a client that says nothing gets identity, as from nginx and Django.
fn choose(headers: &HeaderMap, settings: &CompressSettings) -> Option<(Coding, i32)> {
    let (mut named, mut star) = ([None::<f32>; 2], None::<f32>);
    let mut seen = false;
    for value in headers.get_all(ACCEPT_ENCODING) {
        seen = true;
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let Some(q) = weight(parts) else { continue }; // a malformed weight: the item is ignored
            let slot = match name.to_ascii_lowercase().as_str() {
                "zstd" => named.get_mut(0),
                "gzip" | "x-gzip" => named.get_mut(1),
                "*" => Some(&mut star),
                _ => None,
            };
            if let Some(slot) = slot {
                slot.get_or_insert(q); // the first mention counts
            }
        }
    }
    if !seen {
        return None;
    }
    let offered = [(Coding::Zstd, settings.zstd), (Coding::Gzip, settings.gzip)];
    let mut best: Option<(f32, Coding, i32)> = None;
    for ((coding, level), q) in offered.into_iter().zip(named) {
        let (Some(level), Some(q)) = (level, q.or(star)) else { continue };
        if q > 0.0 && best.is_none_or(|(b, _, _)| q > b) {
            best = Some((q, coding, level));
        }
    }
    best.map(|(_, coding, level)| (coding, level))
}

/// The `q` parameter of one Accept-Encoding item (1 without one); None when it is not a number
/// from 0 to 1.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<f32> {
    for param in params {
        let Some((name, value)) = param.split_once('=') else { continue };
        if name.trim().eq_ignore_ascii_case("q") {
            let q: f32 = value.trim().parse().ok()?;
            return (0.0..=1.0).contains(&q).then_some(q);
        }
    }
    Some(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CompressSettings {
        CompressSettings {
            min_size: 1024,
            types: vec!["text/*".into(), "application/json".into(), "application/*+xml".into()],
            gzip: Some(6),
            zstd: Some(3),
            exclude_paths: vec!["/account/".into()],
        }
    }

    fn pick(accept: &[&str], s: &CompressSettings) -> Option<&'static str> {
        let mut h = HeaderMap::new();
        for a in accept {
            h.append(ACCEPT_ENCODING, HeaderValue::from_str(a).unwrap());
        }
        choose(&h, s).map(|(c, _)| c.token())
    }

    #[test]
    fn q_values_decide_and_ties_prefer_zstd_then_br() {
        let s = settings();
        assert_eq!(pick(&["gzip, deflate, br, zstd"], &s), Some("zstd"));
        assert_eq!(pick(&["gzip, deflate, br"], &s), Some("gzip")); // br is not offered
        assert_eq!(pick(&["gzip"], &s), Some("gzip"));
        assert_eq!(pick(&["x-gzip"], &s), Some("gzip"));
        assert_eq!(pick(&["GZIP;Q=0.5, br;q=0.4"], &s), Some("gzip"));
        assert_eq!(pick(&["gzip;q=1.0, zstd;q=0.9"], &s), Some("gzip"));
        assert_eq!(pick(&["zstd;q=0, br;q=0, gzip;q=0.1"], &s), Some("gzip"));
        assert_eq!(pick(&["*"], &s), Some("zstd"));
        assert_eq!(pick(&["zstd;q=0, *;q=0.5"], &s), Some("gzip"));
        assert_eq!(pick(&["gzip;q=0.5", "zstd;q=0.6"], &s), Some("zstd")); // two fields are one list
        assert_eq!(pick(&["br"], &s), None);
        assert_eq!(pick(&["gzip;q=0, gzip"], &s), None); // the first mention counts
        assert_eq!(pick(&["*;q=0"], &s), None);
        assert_eq!(pick(&["identity"], &s), None);
        assert_eq!(pick(&[""], &s), None);
        assert_eq!(pick(&[], &s), None);
        assert_eq!(pick(&["gzip;q=2", "br;q=x", "zstd;q=-1"], &s), None); // malformed weights
        let only_gzip = CompressSettings { zstd: None, ..settings() };
        assert_eq!(pick(&["zstd, br, gzip;q=0.1"], &only_gzip), Some("gzip"));
        assert_eq!(pick(&["zstd, br"], &only_gzip), None);
    }

    #[test]
    fn types_match_by_essence_and_pattern() {
        let s = settings();
        for yes in ["text/html; charset=utf-8", "TEXT/CSS", "application/json", "application/atom+xml", " text/x "] {
            assert!(type_matches(&s.types, yes.as_bytes()), "{yes}");
        }
        for no in ["image/png", "application/jsonx", "application/xml", "text", "", "application/octet-stream"] {
            assert!(!type_matches(&s.types, no.as_bytes()), "{no}");
        }
        assert!(type_matches(&["*/*".into()], b"image/png"));
        assert!(!type_matches(&s.types, b"text/\xff"));
    }

    #[test]
    fn vary_is_merged_once() {
        let mut h = HeaderMap::new();
        add_vary(&mut h);
        assert_eq!(h[VARY], "Accept-Encoding");
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static("Cookie"));
        h.append(VARY, HeaderValue::from_static("Accept-Language, "));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().collect::<Vec<_>>(), ["Cookie, Accept-Language, Accept-Encoding"]);
        for kept in ["accept-encoding", "Cookie, ACCEPT-ENCODING", "*"] {
            let mut h = HeaderMap::new();
            h.insert(VARY, HeaderValue::from_static(kept));
            add_vary(&mut h);
            assert_eq!(h[VARY], kept);
        }
    }

    #[test]
    fn no_transform_and_excluded_paths() {
        let cc = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_static(v));
            no_transform(&h)
        };
        assert!(cc("no-transform"));
        assert!(cc("private, No-Transform"));
        assert!(!cc("no-store, max-age=0"));
        let paths = settings().exclude_paths;
        assert!(excluded(&paths, "/account/"));
        assert!(excluded(&paths, "/%61ccount/login"));
        assert!(!excluded(&paths, "/accounts"));
        assert!(!excluded(&paths, "/"));
    }
}
