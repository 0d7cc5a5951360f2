//! The reader of an HTTP/1 connection: it follows the bytes hyper reads, for two jobs hyper's
//! own settings cannot do.
//!
//! **Half-closed requests are answered.** A client may send its request and shut down its write
//! side (`shutdown(SHUT_WR)`, `nc -N`, health checkers, HTTP/1.0 tools); RFC 9112 §9.6 lets the
//! server answer before it closes. hyper either drops such a request (it reads the FIN as the
//! client leaving) or, with `half_close`, stops reading mid-request altogether, so a client that
//! resets its connection is no longer noticed until a write fails. Instead, this reader holds
//! back a FIN that arrives after a complete request until that request's response is done; a
//! reset is passed on at once. (A FIN cannot tell a half-close from a full close: an app waiting
//! in `receive()` learns of a client that closed with a FIN when its response is written.)
//!
//! **Ambiguous heads are refused.** What hyper's parser accepts and rsgi refuses (RFC 9112 allows
//! a server either answer; nginx and gunicorn 27 refuse both):
//!
//! - a **bare LF** ending a line of a head (§2.2). `Host: a\nX: 1\r\n` is two fields to hyper,
//!   one field to a proxy in front that splits lines only on CRLF: request-smuggling material.
//! - **`Content-Length` together with `Transfer-Encoding`** (§6.1). hyper reads the body as
//!   chunked and drops the length; a proxy in front may have framed the body by the length.
//!
//! Hand-written because hyper has no hook for either: its parser (httparse) treats LF alone as
//! a line end, and it removes `Content-Length` before the request reaches a service, so neither
//! is visible in the parsed request. [`Watched`] wraps the connection's reader. It copies and
//! changes nothing: it follows the message framing of the bytes hyper reads (each head, then
//! `Content-Length` bytes or the chunks and trailers) and, for the first head it refuses, notes
//! that head's number in the connection's [`ConnWatch`]. The service counts the requests hyper
//! hands it, so the request with that number is answered 400 and the connection closed, while
//! the requests pipelined before it are served normally. Framing the reader cannot follow (an
//! invalid length, a head past hyper's size limit, an upgraded connection) ends the watching:
//! hyper refuses those requests itself, or the connection has left HTTP.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes kept of each head line: enough for `Content-Length` and `Transfer-Encoding` values and
/// chunk-size lines. A longer line of those kinds ends the watching (hyper decides then).
const LINE_KEEP: usize = 256;

/// Shared by a connection's reader and its service.
#[derive(Debug)]
pub struct ConnWatch {
    /// Number (from 0) of the first refused head; `u64::MAX` while none is.
    first_refused: AtomicU64,
    /// Requests the service has taken so far on this connection.
    taken: AtomicU64,
    /// Set once the connection is upgraded (a WebSocket): its bytes are not HTTP any more.
    upgraded: AtomicBool,
    /// Requests read completely (head and body), and responses finished (sent or abandoned).
    read: AtomicU64,
    answered: AtomicU64,
    /// The reader holding back a FIN, to wake when the last response is done.
    eof_waiter: Mutex<Option<Waker>>,
}

impl ConnWatch {
    fn new() -> Self {
        Self {
            first_refused: AtomicU64::new(u64::MAX),
            taken: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            read: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            eof_waiter: Mutex::new(None),
        }
    }

    /// A response is done with (its body sent, or dropped because the connection ended).
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::AcqRel);
        if let Some(w) = crate::sync::lock(&self.eof_waiter).take() {
            w.wake();
        }
    }

    /// A request read completely is still waiting for its response.
    fn owes_response(&self) -> bool {
        self.answered.load(Ordering::Acquire) < self.read.load(Ordering::Acquire)
    }

    /// Called by the service once per request, in order: must this one be refused (400, close)?
    /// The reader has seen a head before hyper can parse it, so its verdict is already here.
    pub fn take_request(&self) -> bool {
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        n >= self.first_refused.load(Ordering::Acquire)
    }

    /// The connection switched protocols: stop reading its bytes as HTTP.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
}

/// Wraps `io` for an HTTP/1 connection; the check goes to the connection's service.
pub fn watch<I>(io: I) -> (Watched<I>, Arc<ConnWatch>) {
    let check = Arc::new(ConnWatch::new());
    (Watched { inner: io, framing: Framing::default(), check: check.clone(), eof_held: false }, check)
}

/// A connection's reader that follows HTTP/1 framing (see the module docs). Writes pass through.
pub struct Watched<I> {
    inner: I,
    framing: Framing,
    check: Arc<ConnWatch>,
    /// The client's FIN has been read and is held back until the owed response is done.
    eof_held: bool,
}

impl<I> Watched<I> {
    /// With a FIN in hand: Pending while a response is owed (woken when it is done), else the EOF.
    fn poll_eof(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.check.owes_response() {
            *crate::sync::lock(&self.check.eof_waiter) = Some(cx.waker().clone());
            // Checked again after registering: the response may have finished in between.
            if self.check.owes_response() {
                self.eof_held = true;
                return Poll::Pending;
            }
        }
        self.eof_held = false;
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.eof_held {
            return this.poll_eof(cx);
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.framing.state == State::Off {
            return res;
        }
        if this.check.upgraded.load(Ordering::Relaxed) {
            this.framing.state = State::Off;
            return res;
        }
        let new = buf.filled().get(before..).unwrap_or_default();
        if matches!(res, Poll::Ready(Ok(()))) && new.is_empty() && buf.remaining() > 0 {
            // A FIN. Between messages it may be a half-close after a request still being
            // answered; inside one it is a client gone mid-request, passed on to hyper.
            return if this.framing.may_half_close() { this.poll_eof(cx) } else { res };
        }
        let (refused, messages) = this.framing.feed(new);
        if let Some(head) = refused {
            this.check.first_refused.store(head, Ordering::Release);
        }
        this.check.read.store(messages, Ordering::Release);
        res
    }
}

super::write_through!(Watched);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Reading a head's lines (or the empty lines a client may send before one).
    #[default]
    Head,
    /// `Content-Length` body bytes still to come.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data bytes still to come, then the line end after them.
    ChunkData(u64),
    ChunkDataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    /// Not following any more.
    Off,
}

/// The framing follower. Line-oriented states look at each line (keeping the first `LINE_KEEP`
/// bytes of one split across reads); body states skip bytes without looking at them.
#[derive(Debug, Default)]
struct Framing {
    state: State,
    /// Heads completed so far on this connection, and messages (heads with their bodies).
    heads: u64,
    messages: u64,
    line: Vec<u8>,
    line_len: usize,
    /// The last byte of the current line's previous piece (a CR split from its LF by a read).
    last: u8,
    /// The head so far: its size, whether a line has started it, and what it declared.
    head_len: usize,
    started: bool,
    bare_lf: bool,
    content_length: Option<u64>,
    /// `Some(last coding is chunked)` once a Transfer-Encoding field is seen.
    chunked: Option<bool>,
    /// A Content-Length or Transfer-Encoding value this reader could not read.
    unreadable: bool,
    /// The head has an Upgrade field; `upgrade_asked`: the last complete head had one.
    upgrade: bool,
    upgrade_asked: bool,
}

/// The largest head hyper accepts (`conn::MAX_HEAD_SIZE`); past it hyper answers 431 itself.
const HEAD_LIMIT: usize = super::conn::MAX_HEAD_SIZE;

impl Framing {
    /// A FIN now may be a half-close: no message is partly read, and the last one did not ask
    /// for an upgrade (a WebSocket client that sends a FIN has left: it can't send frames).
    fn may_half_close(&self) -> bool {
        self.state == State::Head && !self.started && self.line_len == 0 && !self.upgrade_asked
    }

    /// Follows `data`; returns the number of a head that must be refused (the first time one is)
    /// and how many messages have been read completely.
    fn feed(&mut self, data: &[u8]) -> (Option<u64>, u64) {
        let refused = self.follow(data);
        (refused, self.messages)
    }

    fn follow(&mut self, mut data: &[u8]) -> Option<u64> {
        while !data.is_empty() {
            match self.state {
                State::Off => return None,
                State::Body(left) => {
                    self.state = match skip(&mut data, left) {
                        0 => {
                            self.messages += 1;
                            State::Head
                        }
                        left => State::Body(left),
                    }
                }
                State::ChunkData(left) => {
                    self.state = match skip(&mut data, left) {
                        0 => State::ChunkDataEnd,
                        left => State::ChunkData(left),
                    }
                }
                State::Head | State::ChunkSize | State::ChunkDataEnd | State::Trailers => {
                    let (part, rest, ends) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => match data.split_at_checked(i + 1) {
                            Some((part, rest)) => (part, rest, true),
                            None => (data, &[][..], false),
                        },
                        None => (data, &[][..], false),
                    };
                    data = rest;
                    // A line that lies whole inside this read (nearly every line) is looked at
                    // where it is; only one split across reads is kept, up to `LINE_KEEP` bytes.
                    let whole = ends && self.line_len == 0;
                    if !whole {
                        let keep = LINE_KEEP.saturating_sub(self.line.len()).min(part.len());
                        self.line.extend_from_slice(part.get(..keep).unwrap_or_default());
                    }
                    self.line_len += part.len();
                    // The byte before this piece's last one (before the LF, when the line ends).
                    let before_last = part.len().checked_sub(2).and_then(|i| part.get(i)).copied();
                    let crlf = before_last.unwrap_or(self.last) == b'\r';
                    self.last = part.last().copied().unwrap_or(self.last);
                    if self.state == State::Head {
                        self.head_len += part.len();
                        if self.head_len > HEAD_LIMIT {
                            self.state = State::Off;
                            return None;
                        }
                    }
                    if ends {
                        let refused = if whole {
                            self.line_done(part, crlf)
                        } else {
                            let line = std::mem::take(&mut self.line);
                            let refused = self.line_done(&line, crlf);
                            self.line = line;
                            refused
                        };
                        self.line.clear();
                        self.line_len = 0;
                        self.last = 0;
                        if refused.is_some() {
                            self.state = State::Off;
                            return refused;
                        }
                    }
                }
            }
        }
        None
    }

    /// A complete line (ending in LF), or its first `LINE_KEEP` bytes.
    /// `crlf`: the line ended in CRLF, not in a bare LF.
    fn line_done(&mut self, line: &[u8], crlf: bool) -> Option<u64> {
        let kept_whole = self.line_len == line.len();
        let ending = if crlf { 2 } else { 1 };
        let text = if kept_whole { line.get(..line.len().saturating_sub(ending)).unwrap_or_default() } else { line };
        let empty = self.line_len == ending;
        match self.state {
            State::Head if empty && !self.started => {} // empty lines before a request line are skipped
            State::Head if empty => return self.head_done(crlf),
            State::Head => {
                self.bare_lf |= !crlf;
                if self.started {
                    self.field(text, kept_whole);
                }
                self.started = true;
            }
            State::ChunkSize => {
                let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let size = std::str::from_utf8(text.get(..digits).unwrap_or_default())
                    .ok()
                    .and_then(|d| u64::from_str_radix(d, 16).ok());
                self.state = match size {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off, // hyper refuses the body
                };
            }
            State::ChunkDataEnd => self.state = if empty { State::ChunkSize } else { State::Off },
            State::Trailers if empty => {
                self.messages += 1;
                self.state = State::Head;
            }
            State::Trailers | State::Body(_) | State::ChunkData(_) | State::Off => {}
        }
        None
    }

    /// One header field line of a head: note what decides how the body is framed.
    fn field(&mut self, line: &[u8], kept_whole: bool) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return };
        let Some((name, value)) = line.split_at_checked(colon) else { return };
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
            self.unreadable |= !kept_whole || len.is_none();
            self.content_length = self.content_length.or(len);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.unreadable |= !kept_whole;
            let last = value.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii).find(|c| !c.is_empty());
            if let Some(last) = last {
                self.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        }
    }

    /// The empty line that ends a head: judge the head, then follow its body.
    fn head_done(&mut self, crlf: bool) -> Option<u64> {
        let number = self.heads;
        self.heads += 1;
        let refused = self.bare_lf || !crlf || (self.content_length.is_some() && self.chunked.is_some());
        // After a refused head the connection closes; hyper answers 400 itself to a length or
        // coding this reader could not read. Either way there is nothing more to follow.
        self.state = if refused || self.unreadable {
            State::Off
        } else {
            match (self.chunked, self.content_length) {
                (Some(true), _) => State::ChunkSize,
                (Some(false), _) => State::Off, // not chunked last: hyper refuses it
                (None, Some(n)) if n > 0 => State::Body(n),
                (None, _) => {
                    self.messages += 1;
                    State::Head
                }
            }
        };
        let next = self.state;
        *self = Self {
            state: next,
            heads: self.heads,
            messages: self.messages,
            upgrade_asked: self.upgrade,
            ..Self::default()
        };
        refused.then_some(number)
    }
}

/// Skips up to `left` bytes of `data`; returns how many are still to come.
fn skip(data: &mut &[u8], left: u64) -> u64 {
    let n = left.min(data.len() as u64);
    *data = data.get(n as usize..).unwrap_or_default();
    left - n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of every size; returns the refused head's number, if any.
    fn verdict(stream: &[u8]) -> Option<u64> {
        let whole = Framing::default().follow(stream);
        for size in 1..stream.len().min(64) {
            let mut f = Framing::default();
            let found = stream.chunks(size).find_map(|piece| f.follow(piece));
            assert_eq!(found, whole, "pieces of {size}");
        }
        whole
    }

    #[test]
    fn clean_streams_pass() {
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(verdict(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        // Bodies are skipped, whatever they contain.
        assert_eq!(verdict(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\na\nb\ncGET / HTTP/1.1\r\n\r\n"), None);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\na\nb\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(verdict(&[&chunked[..], b"GET / HTTP/1.1\r\n\r\n"].concat()), None);
    }

    #[test]
    fn bare_lf_in_a_head_is_refused() {
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n"), Some(0));
        assert_eq!(verdict(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), Some(0));
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), Some(0));
        // The second of two pipelined requests; a bare LF inside the first one's body is data.
        let stream = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\nGET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n";
        assert_eq!(verdict(stream), Some(1));
    }

    #[test]
    fn length_with_transfer_encoding_is_refused() {
        assert_eq!(verdict(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(0));
        assert_eq!(verdict(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n"), Some(0));
    }

    #[test]
    fn messages_are_counted_when_complete() {
        let mut f = Framing::default();
        assert_eq!(f.feed(b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"), (None, 1));
        assert!(!f.may_half_close());
        assert_eq!(f.feed(b"c"), (None, 2));
        assert!(f.may_half_close());
        assert_eq!(f.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"), (None, 2));
        assert_eq!(f.feed(b"\r\n"), (None, 3));
        assert_eq!(f.feed(b"GET"), (None, 3));
        assert!(!f.may_half_close());
        assert_eq!(f.feed(b" /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), (None, 4));
        assert!(!f.may_half_close());
    }

    #[test]
    fn long_lines_are_judged_by_their_ending() {
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\nHost: a\r\n\r\n", "a".repeat(LINE_KEEP * 4));
        assert_eq!(verdict(long.as_bytes()), None);
        let bare = format!("GET / HTTP/1.1\r\nX: {}\nHost: a\r\n\r\n", "a".repeat(LINE_KEEP * 4));
        assert_eq!(verdict(bare.as_bytes()), Some(0));
    }

    #[test]
    fn unreadable_framing_stops_watching() {
        let mut f = Framing::default();
        assert_eq!(f.follow(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), None);
        assert_eq!(f.state, State::Off);
        assert_eq!(f.follow(b"GET / HTTP/1.1\nX: 1\r\n\r\n"), None);
    }
}
