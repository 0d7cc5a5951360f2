//! The access log, written from Rust without taking the GIL: gunicorn's `access_log_format`
//! atoms, or one JSON object (`json`), per finished response (after the last byte was handed to
//! the socket, so `%(b)s` and `%(D)s` are real), written by a background thread in batches.
//! Every value that came from a client or the app is escaped, so no byte of it can start a new
//! line or forge a field (log injection, PEERS.md §5); the format's own text is written as given.

mod json;

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::mpsc;
use std::time::Instant;

use http::{HeaderMap, Method, StatusCode, Uri, Version};

use super::request::Peer;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// A one-letter atom (`h`, `r`, `s`, ...).
    Atom(char),
    /// `%({name}i)s`: a request header.
    RequestHeader(String),
    /// `%({name}o)s`: a response header.
    ResponseHeader(String),
}

/// Everything a line may use, captured when the response starts.
pub struct Entry {
    pub started: Instant,
    pub remote: Peer,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub request_headers: HeaderMap,
    pub status: StatusCode,
    pub response_headers: HeaderMap,
}

pub struct AccessLog {
    format: Format,
    /// This worker's pid (the log is opened after the fork), for `%(p)s` and JSON's `pid`.
    pid: u32,
    tx: mpsc::Sender<Msg>,
}

enum Format {
    Text(Vec<Part>),
    Json,
}

/// Lines are written in batches of at most this many bytes (a long line alone): up to
/// `PIPE_BUF`, a write to a pipe is atomic, so workers sharing one stdout never interleave
/// inside a line; to a file (`O_APPEND`) every write is atomic anyway.
const BATCH: usize = 4096;

enum Msg {
    Line(String),
    /// SIGUSR1: close the file and open the path again (after logrotate moved it).
    Reopen,
}

/// Where lines go: stdout, or a file that can be reopened by path.
enum Sink {
    Stdout(std::io::Stdout),
    File(String, std::fs::File),
}

impl Sink {
    fn open(target: &str) -> std::io::Result<Self> {
        if target == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        Ok(Sink::File(target.to_owned(), open_append(target)?))
    }
}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::File(_, f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(_, f) => f.flush(),
        }
    }
}

fn open_append(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl AccessLog {
    /// `target` is "-" for stdout or a file path (appended to); `format` is gunicorn's atoms, or
    /// `json` for one JSON object per line.
    pub fn open(target: &str, format: &str) -> std::io::Result<Self> {
        let out = Sink::open(target)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new().name("rsgi-access-log".into()).spawn(move || write_lines(rx, out))?;
        // Python settles the spelling (config/core.py): exactly "json" selects JSON.
        let format = if format == "json" { Format::Json } else { Format::Text(parse(format)) };
        Ok(Self { format, pid: std::process::id(), tx })
    }

    /// Formats and queues one line; `sent` is the number of body bytes written.
    pub fn record(&self, e: &Entry, sent: u64) {
        let line = match &self.format {
            Format::Text(parts) => render(parts, e, sent, self.pid),
            Format::Json => json::render(e, sent, self.pid, std::time::SystemTime::now()),
        };
        let _ = self.tx.send(Msg::Line(line));
    }

    /// Reopens the file by its path once the lines queued before this call are written.
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }
}

/// Writes lines as they come, flushing whenever the queue runs dry (one write per burst).
fn write_lines(rx: mpsc::Receiver<Msg>, out: Sink) {
    let mut out = std::io::BufWriter::with_capacity(BATCH, out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    if let Sink::File(path, file) = out.get_mut() {
                        match open_append(path) {
                            Ok(f) => *file = f,
                            Err(e) => log::error!("could not reopen the access log {path:?}: {e}"),
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

fn parse(format: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some((before, after)) = rest.split_once("%(") {
        text.push_str(before);
        let Some((name, tail)) = after.split_once(")s") else {
            // an unclosed "%(": the rest is text
            text.push_str("%(");
            rest = after;
            break;
        };
        let part = if let Some(h) = name.strip_prefix('{').and_then(|n| n.strip_suffix("}i")) {
            Some(Part::RequestHeader(h.to_ascii_lowercase()))
        } else if let Some(h) = name.strip_prefix('{').and_then(|n| n.strip_suffix("}o")) {
            Some(Part::ResponseHeader(h.to_ascii_lowercase()))
        } else {
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(Part::Atom(c)),
                _ => None,
            }
        };
        match part {
            Some(p) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(p);
            }
            None => {
                // unknown atom: kept literally
                text.push_str("%(");
                text.push_str(name);
                text.push_str(")s");
            }
        }
        rest = tail;
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// A header's value as raw bytes (not necessarily UTF-8: obs-text is allowed on the wire).
fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    h.get(name).map(http::HeaderValue::as_bytes)
}

/// Appends `bytes` escaped as nginx's `escape=default` does: `"`, `\`, control characters
/// (C0 and DEL) and every byte >= 0x80 become `\xHH`, so a value can neither end the line (CR,
/// LF), nor close a quoted field, nor carry terminal escapes, and the original bytes can be read
/// back. hyper already refuses CR, LF and NUL in header values; this does not rely on it.
fn push_escaped(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if needs_escape(b) {
            let _ = write!(s, "\\x{b:02X}");
        } else {
            s.push(char::from(b));
        }
    }
}

fn needs_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b)
}

/// Appends a value's `Display` (a URI, a method), escaped only if it has to be: the common case
/// costs one scan and no allocation.
fn push_display(s: &mut String, v: &dyn std::fmt::Display) {
    let start = s.len();
    let _ = write!(s, "{v}");
    if s.as_bytes().get(start..).is_some_and(|t| t.iter().any(|&b| needs_escape(b))) {
        let raw = s.split_off(start);
        push_escaped(s, raw.as_bytes());
    }
}

/// A header for a text line: escaped, or "-" when absent (as gunicorn writes it).
fn push_header(s: &mut String, h: &HeaderMap, name: &str) {
    match header(h, name) {
        Some(v) => push_escaped(s, v),
        None => s.push('-'),
    }
}

fn render(parts: &[Part], e: &Entry, sent: u64, pid: u32) -> String {
    let mut s = String::with_capacity(160);
    let elapsed = e.started.elapsed();
    for part in parts {
        match part {
            Part::Text(t) => s.push_str(t),
            Part::RequestHeader(h) => push_header(&mut s, &e.request_headers, h),
            Part::ResponseHeader(h) => push_header(&mut s, &e.response_headers, h),
            Part::Atom(c) => {
                let _ = match c {
                    'h' => match &e.remote {
                        Peer::Tcp(a) => write!(s, "{}", a.ip()),
                        Peer::Unix => write!(s, "-"),
                    },
                    'l' | 'u' => write!(s, "-"),
                    't' => write!(s, "[{}]", local_time()),
                    'r' => {
                        push_display(&mut s, &e.method);
                        s.push(' ');
                        push_display(&mut s, &e.uri);
                        write!(s, " {}", version(e.version))
                    }
                    'm' => {
                        push_display(&mut s, &e.method);
                        Ok(())
                    }
                    'U' => {
                        push_escaped(&mut s, e.uri.path().as_bytes());
                        Ok(())
                    }
                    'q' => {
                        push_escaped(&mut s, e.uri.query().unwrap_or("").as_bytes());
                        Ok(())
                    }
                    'H' => write!(s, "{}", version(e.version)),
                    's' => write!(s, "{}", e.status.as_u16()),
                    'b' => {
                        if sent == 0 {
                            write!(s, "-")
                        } else {
                            write!(s, "{sent}")
                        }
                    }
                    'B' => write!(s, "{sent}"),
                    'f' => {
                        push_header(&mut s, &e.request_headers, "referer");
                        Ok(())
                    }
                    'a' => {
                        push_header(&mut s, &e.request_headers, "user-agent");
                        Ok(())
                    }
                    'T' => write!(s, "{}", elapsed.as_secs()),
                    'M' => write!(s, "{}", elapsed.as_millis()),
                    'D' => write!(s, "{}", elapsed.as_micros()),
                    'L' => write!(s, "{:.6}", elapsed.as_secs_f64()),
                    'p' => write!(s, "<{pid}>"),
                    other => write!(s, "%({other})s"),
                };
            }
        }
    }
    s.push('\n');
    s
}

pub(super) fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `10/Oct/2000:13:55:36 +0000` in local time, as gunicorn and Apache write it.
fn local_time() -> String {
    // SAFETY: time() and localtime_r() with valid pointers; `tm` is fully written by the call.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let off = tm.tm_gmtoff / 60;
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} {}{:02}{:02}",
        tm.tm_mday,
        MONTHS.get(tm.tm_mon as usize).unwrap_or(&"???"),
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut req = HeaderMap::new();
        req.insert("user-agent", "curl/8".parse().unwrap());
        req.insert("x-request-id", "abc".parse().unwrap());
        let mut resp = HeaderMap::new();
        resp.insert("content-type", "text/plain".parse().unwrap());
        Entry {
            started: Instant::now(),
            remote: Peer::Tcp("10.1.2.3:5555".parse().unwrap()),
            method: Method::POST,
            uri: "/p?q=1".parse().unwrap(),
            version: Version::HTTP_11,
            request_headers: req,
            status: StatusCode::CREATED,
            response_headers: resp,
        }
    }

    #[test]
    fn renders_gunicorn_atoms() {
        let parts = parse(r#"%(h)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}i)s %({Content-Type}o)s"#);
        let line = render(&parts, &entry(), 42, 7);
        assert_eq!(line, "10.1.2.3 \"POST /p?q=1 HTTP/1.1\" 201 42 \"-\" \"curl/8\" abc text/plain\n");
    }

    #[test]
    fn empty_bodies_and_unknown_atoms() {
        let parts = parse("%(b)s %(B)s %(zz)s %(m)s%(U)s?%(q)s");
        assert_eq!(render(&parts, &entry(), 0, 7), "- 0 %(zz)s POST/p?q=1\n");
    }

    #[test]
    fn text_values_are_escaped_as_nginx_does() {
        let mut s = String::new();
        push_escaped(&mut s, b"a\"b\\c\r\nd\x1b[31m\x00\x7f\xc3\xa9\xff\tz ~");
        assert_eq!(s, r"a\x22b\x5Cc\x0D\x0Ad\x1B[31m\x00\x7F\xC3\xA9\xFF\x09z ~");
    }

    #[test]
    fn hostile_headers_stay_on_one_line() {
        let mut e = entry();
        // obs-text and quotes pass hyper's checks; a CR or LF never does, but the app's response
        // headers and future parsers are not trusted with the log's framing either.
        e.request_headers.insert("user-agent", http::HeaderValue::from_bytes(b"x\" \xff\"y").unwrap());
        e.request_headers.insert("referer", http::HeaderValue::from_bytes(b"\\\t").unwrap());
        let parts = parse(r#""%(a)s" "%(f)s" %(p)s"#);
        assert_eq!(render(&parts, &e, 0, 7), "\"x\\x22 \\xFF\\x22y\" \"\\x5C\\x09\" <7>\n");
    }
}
