//! The access log, written from Rust without taking the GIL: gunicorn's `access_log_format`
//! atoms, one line per finished response (after the last byte was handed to the socket, so
//! `%(b)s` and `%(D)s` are real), written by a background thread in batches.

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
    parts: Vec<Part>,
    tx: mpsc::Sender<Msg>,
}

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
    /// `target` is "-" for stdout or a file path (appended to).
    pub fn open(target: &str, format: &str) -> std::io::Result<Self> {
        let out = Sink::open(target)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new().name("rsgi-access-log".into()).spawn(move || write_lines(rx, out))?;
        Ok(Self { parts: parse(format), tx })
    }

    /// Formats and queues one line; `sent` is the number of body bytes written.
    pub fn record(&self, e: &Entry, sent: u64) {
        let line = render(&self.parts, e, sent);
        let _ = self.tx.send(Msg::Line(line));
    }

    /// Reopens the file by its path once the lines queued before this call are written.
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }
}

/// Writes lines as they come, flushing whenever the queue runs dry (one write per burst).
fn write_lines(rx: mpsc::Receiver<Msg>, out: Sink) {
    let mut out = std::io::BufWriter::new(out);
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

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

fn render(parts: &[Part], e: &Entry, sent: u64) -> String {
    let mut s = String::with_capacity(160);
    let elapsed = e.started.elapsed();
    for part in parts {
        match part {
            Part::Text(t) => s.push_str(t),
            Part::RequestHeader(h) => s.push_str(header(&e.request_headers, h)),
            Part::ResponseHeader(h) => s.push_str(header(&e.response_headers, h)),
            Part::Atom(c) => {
                let _ = match c {
                    'h' => match &e.remote {
                        Peer::Tcp(a) => write!(s, "{}", a.ip()),
                        Peer::Unix => write!(s, "-"),
                    },
                    'l' | 'u' => write!(s, "-"),
                    't' => write!(s, "[{}]", local_time()),
                    'r' => write!(s, "{} {} {}", e.method, e.uri, version(e.version)),
                    'm' => write!(s, "{}", e.method),
                    'U' => write!(s, "{}", e.uri.path()),
                    'q' => write!(s, "{}", e.uri.query().unwrap_or("")),
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
                    'f' => write!(s, "{}", header(&e.request_headers, "referer")),
                    'a' => write!(s, "{}", header(&e.request_headers, "user-agent")),
                    'T' => write!(s, "{}", elapsed.as_secs()),
                    'M' => write!(s, "{}", elapsed.as_millis()),
                    'D' => write!(s, "{}", elapsed.as_micros()),
                    'L' => write!(s, "{:.6}", elapsed.as_secs_f64()),
                    'p' => write!(s, "<{}>", std::process::id()),
                    other => write!(s, "%({other})s"),
                };
            }
        }
    }
    s.push('\n');
    s
}

fn version(v: Version) -> &'static str {
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
        let line = render(&parts, &entry(), 42);
        assert_eq!(line, "10.1.2.3 \"POST /p?q=1 HTTP/1.1\" 201 42 \"-\" \"curl/8\" abc text/plain\n");
    }

    #[test]
    fn empty_bodies_and_unknown_atoms() {
        let parts = parse("%(b)s %(B)s %(zz)s %(m)s%(U)s?%(q)s");
        assert_eq!(render(&parts, &entry(), 0), "- 0 %(zz)s POST/p?q=1\n");
    }
}
