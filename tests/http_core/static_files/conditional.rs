//! Conditional and partial requests for static files: `ETag`/`Last-Modified` and 304s, `Range`
//! (206, 416, `If-Range`), and the precompressed `.br`/`.gz` siblings chosen by `Accept-Encoding`.

use std::time::Duration;

use super::{js, mtime, range_data, Tree, CSS, JS_BR, JS_GZ};

// -- conditional requests ----------------------------------------------------------------------------

fn validators(tree: &Tree) -> (String, String) {
    let r = tree.get("/static/site.css", &[]);
    assert_eq!(r.status, 200);
    (r.header("etag").unwrap().to_owned(), r.header("last-modified").unwrap().to_owned())
}

#[test]
fn an_if_none_match_hit_is_304_without_a_body() {
    let tree = Tree::new();
    let (etag, last_modified) = validators(&tree);
    for value in [
        etag.clone(),
        format!("\"nope\", {etag}, \"other\""),
        format!("W/{etag}"),
        format!("\"nope\",W/{etag}"),
        "*".into(),
    ] {
        let r = tree.get("/static/site.css", &[("If-None-Match", &value)]);
        assert_eq!(r.status, 304, "{value}");
        assert_eq!(r.body, b"", "{value}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(last_modified.as_str()));
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    }
    // HEAD too; no body on the wire, and a length (if any) of nothing or of the file.
    let css_len = CSS.len().to_string();
    for method in ["GET", "HEAD"] {
        let r = tree.request(method, b"/static/site.css", &[("If-None-Match", &etag)]);
        assert_eq!((r.status, r.body.as_slice()), (304, &b""[..]), "{method}");
        let length = r.header("content-length").unwrap_or("0");
        assert!(length == "0" || length == css_len, "{method}: {}", r.head_text());
    }
}

#[test]
fn an_if_none_match_miss_is_200() {
    let tree = Tree::new();
    let (etag, _) = validators(&tree);
    let cut = format!("{}\"", &etag[..etag.len() - 2]);
    for value in ["\"nope\"", "W/\"nope\", \"other\"", cut.as_str()] {
        let r = tree.get("/static/site.css", &[("If-None-Match", value)]);
        assert_eq!((r.status, r.body.as_slice()), (200, CSS), "{value}");
    }
}

#[test]
fn if_modified_since() {
    let tree = Tree::new();
    let (_, last_modified) = validators(&tree);
    let mtime = mtime(&tree.path("root/site.css"));
    let day = Duration::from_secs(86400);
    for (since, status) in [
        (last_modified, 304),
        (httpdate::fmt_http_date(mtime + day), 304),
        (httpdate::fmt_http_date(mtime - Duration::from_secs(1)), 200),
        (httpdate::fmt_http_date(mtime - day), 200),
        ("not a date".into(), 200),
    ] {
        let r = tree.get("/static/site.css", &[("If-Modified-Since", &since)]);
        assert_eq!(r.status, status, "{since}");
        assert_eq!(r.body, if status == 304 { &b""[..] } else { CSS }, "{since}");
    }
}

#[test]
fn if_none_match_wins_over_if_modified_since() {
    let tree = Tree::new();
    let (etag, last_modified) = validators(&tree);
    let long_ago = httpdate::fmt_http_date(mtime(&tree.path("root/site.css")) - Duration::from_secs(86400));
    // A miss on the ETag is a 200 even though If-Modified-Since alone would give a 304...
    let r = tree.get("/static/site.css", &[("If-None-Match", "\"nope\""), ("If-Modified-Since", &last_modified)]);
    assert_eq!((r.status, r.body.as_slice()), (200, CSS));
    // ...and a hit is a 304 even though If-Modified-Since alone would give a 200.
    let r = tree.get("/static/site.css", &[("If-None-Match", &etag), ("If-Modified-Since", &long_ago)]);
    assert_eq!(r.status, 304);
}

// -- ranges ----------------------------------------------------------------------------------------

#[test]
fn a_single_range_is_206() {
    let tree = Tree::new();
    let data = range_data();
    for (header, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=-5", 95, 99),
        ("bytes=10-", 10, 99),
        ("bytes=99-99", 99, 99),
        ("bytes=90-500", 90, 99),
        ("bytes=-500", 0, 99),
        ("bytes=0-0", 0, 0),
    ] {
        let r = tree.get("/static/range.bin", &[("Range", header)]);
        assert_eq!(r.status, 206, "{header}");
        assert_eq!(r.header("content-range"), Some(format!("bytes {start}-{end}/100").as_str()), "{header}");
        assert_eq!(r.header("content-length"), Some((end - start + 1).to_string().as_str()), "{header}");
        assert_eq!(r.body, data[start..=end], "{header}");
    }
}

#[test]
fn a_range_beyond_the_end_is_416() {
    let tree = Tree::new();
    for header in ["bytes=100-", "bytes=200-300", "bytes=-0"] {
        let r = tree.get("/static/range.bin", &[("Range", header)]);
        assert_eq!(r.status, 416, "{header}");
        assert_eq!(r.header("content-range"), Some("bytes */100"));
        assert_eq!(r.body, b"");
    }
    let r = tree.request("HEAD", b"/static/range.bin", &[("Range", "bytes=100-")]);
    assert_eq!((r.status, r.header("content-range"), r.body.as_slice()), (416, Some("bytes */100"), &b""[..]));
}

#[test]
fn malformed_or_multiple_ranges_get_the_whole_file() {
    let tree = Tree::new();
    for header in ["bytes=abc", "bytes=", "items=0-5", "bytes=5-2", "bytes=0-1, 5-6", "0-9"] {
        let r = tree.get("/static/range.bin", &[("Range", header)]);
        assert_eq!((r.status, r.body.clone()), (200, range_data()), "{header}");
        assert_eq!(r.header("content-range"), None);
    }
}

#[test]
fn if_range() {
    let tree = Tree::new();
    let first = tree.get("/static/range.bin", &[]);
    let (etag, last_modified) = (first.header("etag").unwrap(), first.header("last-modified").unwrap());
    for validator in [etag, last_modified] {
        let r = tree.get("/static/range.bin", &[("Range", "bytes=0-9"), ("If-Range", validator)]);
        assert_eq!((r.status, r.body.as_slice()), (206, &range_data()[..10]), "{validator}");
    }
    for stale in ["\"0-0\"", "Thu, 01 Jan 2004 00:00:00 GMT"] {
        let r = tree.get("/static/range.bin", &[("Range", "bytes=0-9"), ("If-Range", stale)]);
        assert_eq!((r.status, r.body.clone()), (200, range_data()), "{stale}");
        assert_eq!(r.header("content-range"), None);
    }
}

// -- precompressed siblings --------------------------------------------------------------------------

#[test]
fn the_precompressed_sibling_is_chosen_by_accept_encoding() {
    let tree = Tree::new();
    for (accept, encoding, body) in [
        ("br, gzip", Some("br"), JS_BR.to_vec()),
        ("gzip, deflate, br", Some("br"), JS_BR.to_vec()),
        ("gzip", Some("gzip"), JS_GZ.to_vec()),
        ("br;q=0, gzip", Some("gzip"), JS_GZ.to_vec()),
        ("*", Some("br"), JS_BR.to_vec()),
        ("br;q=0, *", Some("gzip"), JS_GZ.to_vec()), // `*` does not override an explicit refusal
        ("identity", None, js()),
        ("br;q=0, gzip;q=0", None, js()),
        ("deflate", None, js()),
    ] {
        let r = tree.get("/static/app.js", &[("Accept-Encoding", accept)]);
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), encoding, "{accept}");
        assert_eq!(r.body, body, "{accept}");
        assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    }
    // Without Accept-Encoding: identity, and still Vary.
    let r = tree.get("/static/app.js", &[]);
    assert_eq!((r.status, r.header("content-encoding"), r.body.clone()), (200, None, js()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}

#[test]
fn precompressed_variants_have_distinct_etags() {
    let tree = Tree::new();
    let tag = |enc: &str| tree.get("/static/app.js", &[("Accept-Encoding", enc)]).header("etag").unwrap().to_owned();
    let (br, gzip, identity) = (tag("br"), tag("gzip"), tag("identity"));
    assert!(br != gzip && gzip != identity && br != identity, "{br} {gzip} {identity}");
    // The identity ETag does not validate the gzip variant.
    let r = tree.get("/static/app.js", &[("Accept-Encoding", "gzip"), ("If-None-Match", &identity)]);
    assert_eq!((r.status, r.body.as_slice()), (200, JS_GZ));
    let r = tree.get("/static/app.js", &[("Accept-Encoding", "gzip"), ("If-None-Match", &gzip)]);
    assert_eq!(r.status, 304);
}

#[test]
fn a_sibling_symlinked_out_of_the_root_is_not_served() {
    let tree = Tree::new();
    for accept in ["gzip", "br"] {
        let r = tree.get("/static/leak.js", &[("Accept-Encoding", accept)]);
        assert!(!String::from_utf8_lossy(&r.body).contains("TOP-SECRET"));
        assert_eq!((r.status, r.header("content-encoding")), (200, None));
        assert_eq!(r.body, b"leak.js identity bytes\n");
    }
}

#[test]
fn a_range_request_gets_identity_bytes() {
    let tree = Tree::new();
    let r = tree.get("/static/app.js", &[("Accept-Encoding", "br, gzip"), ("Range", "bytes=0-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("content-range"), Some(format!("bytes 0-19/{}", js().len()).as_str()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, js()[..20]);
}
