//! A raw HTTP/1.1 client for the tests where the exact bytes matter: sends bytes as given and reads
//! responses one by one (Content-Length, chunked or close-delimited), so one connection can carry
//! keep-alive and pipelined requests, and tells when the server closes it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::echo::Echo;
use super::stub;

/// How long any single read may wait before a test fails (or, with a deadline, gives up).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A read that found nothing before the deadline.
#[derive(Debug)]
pub struct TimedOut;

/// One connection driven by hand.
pub struct Conn {
    sock: Sock,
    /// Received and not yet parsed.
    pub buf: Vec<u8>,
    /// Everything received on this connection.
    pub received: Vec<u8>,
    /// The server closed (or reset) the connection.
    pub eof: bool,
    deadline: Option<Instant>,
}

impl Conn {
    pub fn open(port: u16) -> Self {
        Self::with(Sock::Tcp(TcpStream::connect(("127.0.0.1", port)).unwrap()))
    }

    pub fn unix(path: &Path) -> Self {
        Self::with(Sock::Unix(UnixStream::connect(path).unwrap()))
    }

    fn with(sock: Sock) -> Self {
        Self { sock, buf: Vec::new(), received: Vec::new(), eof: false, deadline: None }
    }

    /// Every read from now on gives up (`TimedOut`) once `deadline` has passed.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// False if the server had already closed the connection (it may refuse before reading all).
    pub fn send(&mut self, data: &[u8]) -> bool {
        let done = match &mut self.sock {
            Sock::Tcp(s) => s.write_all(data),
            Sock::Unix(s) => s.write_all(data),
        };
        match done {
            Ok(()) => true,
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => false,
            Err(e) => panic!("send failed: {e}"),
        }
    }

    /// Shuts down the write side: the request is complete, nothing follows (a half-close).
    pub fn shutdown_write(&mut self) {
        match &mut self.sock {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write).unwrap(),
            Sock::Unix(s) => s.shutdown(Shutdown::Write).unwrap(),
        }
    }

    /// Reads what is available into `buf`, waiting at most `wait`. Ok(false) at EOF or reset.
    fn fill_within(&mut self, wait: Duration) -> Result<bool, TimedOut> {
        if self.eof {
            return Ok(false);
        }
        let wait = match self.deadline {
            Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
            None => wait,
        };
        if wait.is_zero() {
            return Err(TimedOut);
        }
        let mut chunk = [0u8; 65536];
        let read = match &mut self.sock {
            Sock::Tcp(s) => s.set_read_timeout(Some(wait)).and_then(|()| s.read(&mut chunk)),
            Sock::Unix(s) => s.set_read_timeout(Some(wait)).and_then(|()| s.read(&mut chunk)),
        };
        match read {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(TimedOut),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn fill(&mut self) -> Result<bool, TimedOut> {
        self.fill_within(READ_TIMEOUT)
    }

    fn until(&mut self, sep: &[u8]) -> Result<Option<Vec<u8>>, TimedOut> {
        loop {
            if let Some(at) = find(&self.buf, sep) {
                let out = self.buf[..at].to_vec();
                self.buf.drain(..at + sep.len());
                return Ok(Some(out));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn exact(&mut self, n: usize) -> Result<Option<Vec<u8>>, TimedOut> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf.drain(..n).collect()))
    }

    /// The next response; None at EOF before a complete head. A body cut short by EOF gives a
    /// response with `complete` false. `head_request`: the response to a HEAD has no body.
    pub fn read_response(&mut self, head_request: bool) -> Result<Option<Response>, TimedOut> {
        let Some(head) = self.until(b"\r\n\r\n")? else { return Ok(None) };
        let mut resp = Response::head(head);
        if head_request || (100..200).contains(&resp.status) || resp.status == 204 || resp.status == 304 {
            return Ok(Some(resp));
        }
        if let Some(te) = resp.header("transfer-encoding") {
            assert!(te.eq_ignore_ascii_case("chunked"), "transfer-encoding {te}");
            loop {
                let Some(size_line) = self.until(b"\r\n")? else {
                    resp.complete = false;
                    break;
                };
                resp.framing.extend_from_slice(&size_line);
                resp.framing.extend_from_slice(b"\r\n");
                let size_text = String::from_utf8_lossy(&size_line);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
                if size == 0 {
                    let trailer = self.until(b"\r\n")?;
                    resp.complete = trailer.as_deref() == Some(b"");
                    resp.framing.extend_from_slice(b"\r\n");
                    break;
                }
                let Some(data) = self.exact(size + 2)? else {
                    resp.complete = false;
                    break;
                };
                assert_eq!(&data[size..], b"\r\n", "a chunk not followed by CRLF");
                resp.framing.extend_from_slice(&data);
                resp.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            match self.exact(len)? {
                Some(data) => resp.body = data,
                None => {
                    resp.body = std::mem::take(&mut self.buf);
                    resp.complete = false;
                }
            }
            resp.framing = resp.body.clone();
        } else {
            // Close-delimited.
            while self.fill()? {}
            resp.body = std::mem::take(&mut self.buf);
            resp.framing = resp.body.clone();
        }
        Ok(Some(resp))
    }

    /// The next `n` bytes, which must come within the read timeout.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        self.exact(n).expect("nothing more within 5 s").expect("closed before the bytes came")
    }

    /// The next response, which must come within the read timeout.
    pub fn response(&mut self) -> Response {
        let resp = self.read_response(false).expect("no response within 5 s");
        resp.unwrap_or_else(|| panic!("closed before a response; unparsed: {:?}", self.buf.escape_ascii().to_string()))
    }

    /// The response to a HEAD request (no body follows its head).
    pub fn head_response(&mut self) -> Response {
        self.read_response(true).expect("no response within 5 s").expect("closed before a response")
    }

    /// Time until the server closed the connection (EOF or reset), None if it stayed open for
    /// `within`. Bytes that arrive meanwhile stay in `buf`.
    pub fn wait_closed(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match self.fill_within(left) {
                Ok(true) => {}
                Ok(false) => return Some(start.elapsed()),
                Err(TimedOut) => return None,
            }
        }
    }

    /// The refusal every protocol error gets: `status`, then the connection closed with nothing
    /// after the response (so nothing pipelined behind the request was read or answered).
    pub fn assert_refused(&mut self, status: u16) -> Response {
        let resp = self.response();
        assert_eq!(resp.status, status, "{}", resp.head_text());
        assert!(self.wait_closed(Duration::from_secs(3)).is_some(), "the connection stayed open after an error reply");
        assert!(self.buf.is_empty(), "bytes after the error reply: {}", self.buf.escape_ascii());
        resp
    }

    /// Proves the connection is still open without waiting on a timer: a request sent on it now
    /// is answered (by the app: the echo of `/__probe`).
    pub fn assert_open(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes: {}", self.buf.escape_ascii());
        assert!(self.send(b"GET /__probe HTTP/1.1\r\nHost: probe\r\n\r\n"), "the connection was closed");
        let probe = self.read_response(false).expect("the probe got no answer").expect("the connection was closed");
        assert_eq!(probe.echo().get("path"), "/__probe");
    }
}

/// One response as read off the wire.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    /// Names as sent (hyper sends them lower-case), values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status line and header block, exactly as received.
    pub head: Vec<u8>,
    /// The body as framed on the wire (chunk sizes included).
    pub framing: Vec<u8>,
    /// False when the connection ended inside the body.
    pub complete: bool,
}

impl Response {
    fn head(head: Vec<u8>) -> Self {
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_owned();
        assert!(version.starts_with("HTTP/1."), "not a status line: {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("not a header line: {l:?}"));
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Self { version, status, headers, body: Vec::new(), head, framing: Vec::new(), complete: true }
    }

    /// A whole connection's bytes holding one response: the body is everything after the head.
    pub fn whole(data: &[u8]) -> Self {
        let at = find(data, b"\r\n\r\n").unwrap_or_else(|| panic!("no complete head: {}", data.escape_ascii()));
        let mut resp = Self::head(data[..at].to_vec());
        resp.body = data[at + 4..].to_vec();
        resp
    }

    /// The value of a header sent at most once (asserted).
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers_named(name);
        assert!(values.len() <= 1, "{name} sent {} times: {}", values.len(), self.head_text());
        values.first().copied()
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn head_text(&self) -> String {
        self.head.escape_ascii().to_string()
    }

    /// Whether the stub app produced it (else the core answered by itself).
    pub fn answered_by_app(&self) -> bool {
        self.header(stub::FROM_APP).is_some()
    }

    /// What the app saw, from the stub's echo.
    pub fn echo(&self) -> Echo {
        assert_eq!(self.header(stub::FROM_APP), Some("echo"), "not an echo: {}", self.head_text());
        Echo::parse(&self.body)
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET path` with `Host: test` and extra header lines (each ending in CRLF).
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").into_bytes()
}

/// Sends `request` on a fresh connection and reads until the server closes it.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut conn = Conn::open(port);
    conn.send(request);
    while conn.fill().expect("the server neither answered nor closed within 5 s") {}
    conn.received
}

/// The server is alive: a request on a fresh connection reaches the app, and none of the core's
/// threads has panicked.
pub fn assert_serves(port: u16) {
    let mut conn = Conn::open(port);
    conn.send(b"POST /after HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nstill here");
    let echo = conn.response().echo();
    assert_eq!((echo.get("path").as_str(), echo.body.as_slice()), ("/after", &b"still here"[..]));
    assert_eq!(stub::io_panics(), 0, "a thread of the core panicked");
}
