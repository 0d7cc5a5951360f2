//! Static files answered by the core (`--static PREFIX=DIR`): a file and its headers, HEAD, large
//! files, what is never served (directories, traversals, symlinks out of the root, other methods)
//! and what reaches the app; `conditional` holds validators, ranges and precompressed siblings.
//! Every request goes over a raw socket, so its target reaches the server exactly as written.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use _rsgi::config::ServerConfig;
use tempfile::TempDir;

use crate::framing::noise;
use crate::support::client::{exchange, Conn, Response};
use crate::support::default_config;
use crate::support::stub::{start, Stub};

mod conditional;

const SECRET: &[u8] = b"TOP-SECRET-7f3a9c: this file sits next to the static root, never inside it\n";
const CSS: &[u8] = b"body { color: #333; }\n";
const HASHED_CSS: &[u8] = b"body { color: #444; } /* hashed */\n";
const UNKNOWN: &[u8] = b"\x00\x01\x02 some opaque bytes\n";
const JS_GZ: &[u8] = b"NOT-REALLY-GZIP: the server never decodes this file\n";
const JS_BR: &[u8] = b"NOT-REALLY-BROTLI: the server never decodes this file\n";
const BIG_SIZE: usize = 5 * 1024 * 1024;

fn png() -> Vec<u8> {
    [&b"\x89PNG\r\n\x1a\n"[..], &(0..=255u8).collect::<Vec<_>>().repeat(4)].concat()
}

fn range_data() -> Vec<u8> {
    (0..100u8).collect() // N = 100
}

fn js() -> Vec<u8> {
    b"console.log('identity bytes of app.js');\n".repeat(40)
}

/// base/secret.txt next to base/root (mounted at /static/), base/media (/media/) and base/nested
/// (/static/special/, a mount inside another mount's prefix, given after it on purpose), and a
/// server whose app is the echo stub: anything else under a mount came from the core.
struct Tree {
    base: TempDir,
    srv: Stub,
}

impl Tree {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        let w = |rel: &str, data: &[u8]| std::fs::write(b.join(rel), data).unwrap();
        let link = |target: &Path, rel: &str| std::os::unix::fs::symlink(target, b.join(rel)).unwrap();
        for dir in ["root/sub", "root/special", "media", "nested"] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        w("secret.txt", SECRET);
        w("root/site.css", CSS);
        w("root/site.0123456789ab.css", HASHED_CSS);
        w("root/logo.png", &png());
        w("root/data.zzqqxx", UNKNOWN);
        w("root/range.bin", &range_data());
        w("root/empty.txt", b"");
        w("root/a b.txt", b"space in the name\n");
        w("root/app.js", &js());
        w("root/app.js.gz", JS_GZ);
        w("root/app.js.br", JS_BR);
        w("root/.hidden", SECRET);
        w("root/sub/inner.txt", b"inner\n");
        w("root/sub/.hidden", SECRET);
        w("root/special/which.txt", b"outer mount\n");
        w("root/caf\u{e9}.txt", b"non-ascii name\n");
        link(&b.join("secret.txt"), "root/link-out.txt");
        link(b, "root/link-dir");
        link(&b.join("root/site.css"), "root/link-in.css");
        // A precompressed "sibling" that is a symlink to the secret outside the root.
        w("root/leak.js", b"leak.js identity bytes\n");
        link(&b.join("secret.txt"), "root/leak.js.gz");
        link(&b.join("secret.txt"), "root/leak.js.br");
        w("media/m.txt", b"media file\n");
        w("nested/which.txt", b"inner mount\n");
        let dir = |rel: &str| b.join(rel).to_str().unwrap().to_owned();
        let mounts = vec![
            ("/static/".into(), dir("root")),
            ("/media/".into(), dir("media")),
            ("/static/special/".into(), dir("nested")),
        ];
        let srv = start(ServerConfig { static_mounts: mounts, ..default_config() });
        Self { base, srv }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.base.path().join(rel)
    }

    /// Adds root/big.bin (5 MiB) and returns its bytes.
    fn big(&self) -> Vec<u8> {
        let data = noise(BIG_SIZE);
        std::fs::write(self.path("root/big.bin"), &data).unwrap();
        data
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target.as_bytes(), headers)
    }

    /// One request on its own connection (`Connection: close`); the body is everything after the
    /// head until the server closes.
    fn request(&self, method: &str, target: &[u8], headers: &[(&str, &str)]) -> Response {
        self.request_with_body(method, target, headers, b"")
    }

    fn request_with_body(&self, method: &str, target: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut lines: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        if !body.is_empty() {
            lines.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        let head = format!(" HTTP/1.1\r\nHost: localhost\r\n{lines}Connection: close\r\n\r\n");
        let req = [format!("{method} ").as_bytes(), target, head.as_bytes(), body].concat();
        Response::whole(&exchange(self.srv.port, &req))
    }
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

// -- serving a file --------------------------------------------------------------------------------

#[test]
fn a_file_is_served_with_its_headers() {
    let tree = Tree::new();
    for (name, body, content_type) in [
        ("site.css", CSS.to_vec(), "text/css; charset=utf-8"),
        ("logo.png", png(), "image/png"),
        ("data.zzqqxx", UNKNOWN.to_vec(), "application/octet-stream"),
    ] {
        let r = tree.get(&format!("/static/{name}"), &[]);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body, body, "{name}");
        assert_eq!(r.header("content-type"), Some(content_type));
        assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
        let etag = r.header("etag").unwrap();
        assert!(
            etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"') && !etag[1..etag.len() - 1].contains('"')
        );
        let modified = httpdate::fmt_http_date(mtime(&tree.path(&format!("root/{name}"))));
        assert_eq!(r.header("last-modified"), Some(modified.as_str()));
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), None); // no precompressed siblings
        assert_eq!(r.header("server"), Some("rsgi"));
        assert!(!r.answered_by_app());
    }
}

#[test]
fn a_hashed_name_is_immutable() {
    let tree = Tree::new();
    let r = tree.get("/static/site.0123456789ab.css", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, HASHED_CSS));
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
}

#[test]
fn query_strings_encoded_names_and_empty_files() {
    let tree = Tree::new();
    for (target, body) in [
        ("/static/site.css?v=42", CSS),
        ("/static/a%20b.txt", b"space in the name\n"),
        ("/static/sub/inner.txt", b"inner\n"),
        ("/static/caf%C3%A9.txt", b"non-ascii name\n"),
        ("/static/empty.txt", b""),
    ] {
        let r = tree.get(target, &[]);
        assert_eq!((r.status, r.body.as_slice()), (200, body), "{target}");
        assert!(!r.answered_by_app());
    }
    assert_eq!(tree.get("/static/empty.txt", &[]).header("content-length"), Some("0"));
}

#[test]
fn the_etag_is_stable_and_changes_with_the_file() {
    let tree = Tree::new();
    let path = tree.path("root/changing.txt");
    std::fs::write(&path, b"version one\n").unwrap();
    let first = tree.get("/static/changing.txt", &[]);
    let etag = first.header("etag").unwrap().to_owned();
    assert_eq!(tree.get("/static/changing.txt", &[]).header("etag"), Some(etag.as_str()));
    std::fs::write(&path, b"version two, longer\n").unwrap();
    // Lookups are remembered for a second (src/http/static_files/cache.rs); the change shows after.
    let deadline = Instant::now() + Duration::from_secs(3);
    let second = loop {
        let r = tree.get("/static/changing.txt", &[("If-None-Match", &etag)]);
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 304);
        assert!(Instant::now() < deadline, "the changed file was never served");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(second.body, b"version two, longer\n");
    assert_ne!(second.header("etag"), Some(etag.as_str()));
}

#[test]
fn max_age_setting_and_a_prefix_without_slash() {
    let tree = Tree::new();
    let root = tree.path("root").to_str().unwrap().to_owned();
    let cfg = ServerConfig { static_mounts: vec![("/assets".into(), root)], static_max_age: 3600, ..default_config() };
    let srv = start(cfg);
    let get = |target: &str| {
        Response::whole(&exchange(srv.port, &crate::support::client::get(target, "Connection: close\r\n")))
    };
    let r = get("/assets/site.css");
    assert_eq!((r.status, r.body.as_slice()), (200, CSS));
    assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    let r = get("/assets/site.0123456789ab.css");
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
    // The prefix is a directory: "/assets" itself and "/assetsx/..." belong to the app.
    assert_eq!(get("/assets").echo().get("path"), "/assets");
    assert_eq!(get("/assetsx/site.css").echo().get("path"), "/assetsx/site.css");
}

// -- HEAD and large files ----------------------------------------------------------------------------

#[test]
fn head_has_the_get_headers_and_no_body() {
    let tree = Tree::new();
    tree.big();
    for (name, size) in [("site.css", CSS.len()), ("big.bin", BIG_SIZE)] {
        let target = format!("/static/{name}");
        let get = tree.get(&target, &[]);
        let head = tree.request("HEAD", target.as_bytes(), &[]);
        assert_eq!((get.status, head.status), (200, 200));
        assert_eq!(head.body, b"", "{name}");
        assert_eq!(head.header("content-length"), Some(size.to_string().as_str()));
        let without_date = |r: &Response| {
            let mut h: Vec<_> = r.headers.iter().filter(|(k, _)| k != "date").cloned().collect();
            h.sort();
            h
        };
        assert_eq!(without_date(&head), without_date(&get), "{name}");
        assert_eq!(get.body.len(), size);
    }
}

#[test]
fn a_large_file_is_intact_whole_and_in_part() {
    let tree = Tree::new();
    let data = tree.big();
    let r = tree.get("/static/big.bin", &[("Accept-Encoding", "identity")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG_SIZE.to_string().as_str()));
    assert!(r.body == data, "the file differs");
    let (start, end) = (2_000_001, 3_500_000);
    let r = tree.get("/static/big.bin", &[("Range", &format!("bytes={start}-{end}"))]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes {start}-{end}/{BIG_SIZE}").as_str()));
    assert!(r.body == data[start..=end], "the range differs");
}

#[test]
fn a_static_answer_to_a_request_with_a_body_closes_the_connection() {
    // Found by the `http_request` fuzz target: the unread chunked body of a GET for a streamed
    // static file, then a byte that cannot start a request. hyper drained the body while the file
    // was still being written and put its 400 for the stray byte into the middle of the file.
    let tree = Tree::new();
    let file = tree.big();
    let mut conn = Conn::open(tree.srv.port);
    conn.send(b"GET /static/big.bin HTTP/1.1\r\nHost:a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n ");
    assert!(conn.wait_closed(Duration::from_secs(5)).is_some());
    let resp = Response::whole(&conn.received);
    assert!(resp.head.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", resp.head_text());
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(resp.body == file, "the body is the file, whole and alone ({} bytes)", resp.body.len());
}

// -- what is not served ------------------------------------------------------------------------------

#[test]
fn no_directory_listing_and_missing_files_are_404_from_the_core() {
    let tree = Tree::new();
    for path in ["/static/", "/static/sub/", "/static/sub", "/static/special/", "/media/"] {
        let r = tree.get(path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.answered_by_app(), "{path}");
    }
    for path in ["/static/missing.css", "/static/sub/missing.txt", "/media/nope", "/static/site.css/x"] {
        let r = tree.get(path, &[]);
        assert_eq!((r.status, r.body.as_slice()), (404, &b"404 Not Found\n"[..]), "{path}");
    }
}

#[test]
fn traversal_attempts_are_refused() {
    let tree = Tree::new();
    let targets: [&[u8]; 25] = [
        b"/static/../secret.txt",
        b"/static/sub/../../secret.txt",
        b"/static/%2e%2e/secret.txt",
        b"/static/%2E%2E%2Fsecret.txt",
        b"/static/sub/..%2f..%2fsecret.txt",
        b"/static/sub%2f..%2f..%2fsecret.txt",
        b"/static/..%5csecret.txt",
        b"/static/..\\secret.txt",
        b"/static/%252e%252e%252fsecret.txt",
        b"/static/%00.txt",
        b"/static/site.css%00.png",
        b"/static/%ff.txt",
        b"/static/.hidden",
        b"/static/%2ehidden",
        b"/static/sub/.hidden",
        b"/static/./site.css",
        b"/static//site.css",
        b"/static/link-out.txt",
        b"/static/link-dir/secret.txt",
        b"/static//etc/passwd",
        b"/static/%2fetc%2fpasswd",
        b"/static/%2Fetc/passwd",
        b"/static/special/../../secret.txt",
        b"/media/..%2fsecret.txt",
        b"http://localhost/static/../secret.txt",
    ];
    for target in targets {
        let r = tree.request("GET", target, &[]);
        let all = String::from_utf8_lossy(&r.body);
        assert!(!all.contains("TOP-SECRET") && !all.contains("root:"), "{}: {all}", target.escape_ascii());
        assert!(matches!(r.status, 400 | 404), "{}: {}", target.escape_ascii(), r.head_text());
        assert!(!r.answered_by_app(), "{} was handed to the app", target.escape_ascii());
        // answered by the core
    }
}

#[test]
fn a_symlink_inside_the_root_is_served() {
    let tree = Tree::new();
    let r = tree.get("/static/link-in.css", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, CSS));
}

#[test]
fn other_methods_are_405() {
    let tree = Tree::new();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/static/site.css", "/static/missing.css"] {
            let body: &[u8] = if matches!(method, "POST" | "PUT" | "PATCH") { b"x" } else { b"" };
            let r = tree.request_with_body(method, path.as_bytes(), &[], body);
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
            assert!(!r.answered_by_app());
        }
    }
}

// -- mounts and the app ------------------------------------------------------------------------------

#[test]
fn paths_outside_the_mounts_reach_the_app() {
    let tree = Tree::new();
    for path in ["/", "/staticx/site.css", "/static", "/Static/site.css", "/other/static/site.css"] {
        assert_eq!(tree.get(path, &[]).echo().get("path"), path);
    }
    let echo = tree.request_with_body("POST", b"/anything", &[], b"body").echo();
    assert_eq!((echo.get("method").as_str(), echo.body.as_slice()), ("POST", &b"body"[..]));
}

#[test]
fn two_mounts_and_the_longest_prefix() {
    let tree = Tree::new();
    assert_eq!(tree.get("/media/m.txt", &[]).body, b"media file\n");
    assert_eq!(tree.get("/static/site.css", &[]).body, CSS);
    // /static/special/ is its own mount (given after /static/): its directory wins.
    let r = tree.get("/static/special/which.txt", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"inner mount\n"[..]));
    // A file of one mount is not reachable through another's names.
    assert_eq!(tree.get("/media/site.css", &[]).status, 404);
}
