//! WebSocket connections, tokio side: recognising an upgrade request, the 101 handshake
//! headers, and the pump that moves frames between the socket (tokio-tungstenite) and the
//! app bridge. Ping/pong, the idle ping timeout and the message size limit live here; no Python.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, Method, Request, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws_deflate::{self, unmask, Deflate, WsIo};
use crate::config::ServerConfig;
use crate::stop::Stop;
use tokio::sync::watch;

/// Messages the app has not taken yet; past this the pump stops reading the socket, so a
/// client can't make the server buffer without bound.
const INBOX_LIMIT: usize = 64;
/// Outgoing messages buffered before the app's `send()` waits.
pub const OUTBOX_LIMIT: usize = 16;
/// tungstenite's read buffer: its capacity is allocated for the socket's life and zero-filled
/// before each read, so it is what an idle socket holds (128 KiB by default, 8 KiB before issue
/// #21). A frame header (14 bytes at most) or a small message fits; a larger message grows it to
/// the message's length, and its reads are served from `LeanIo`'s read-ahead, not the socket.
const READ_BUFFER: usize = 512;
/// What one socket read takes at most, into a stack buffer (see `LeanIo`).
const READ_CHUNK: usize = 16 * 1024;

/// True for an HTTP/1.1 `GET` asking to switch to WebSocket (RFC 6455 §4.2.1), or an HTTP/2
/// extended CONNECT for the `websocket` protocol (RFC 8441 §4, §5).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    if req.version() == Version::HTTP_2 {
        return req.method() == Method::CONNECT
            && req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
            && h.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    }
    let has_token = |name, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
        && h.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13")
        && h.contains_key(SEC_WEBSOCKET_KEY)
}

/// The `Sec-WebSocket-Accept` value for a request's key.
pub fn accept_key(headers: &HeaderMap) -> String {
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|v| v.as_bytes()).unwrap_or_default();
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key)
}

/// What the client sent, as the app will receive it.
pub enum Incoming {
    Text(String),
    Binary(Bytes),
    /// The connection is over: the client's close code (1006 if it just went away).
    Closed {
        code: u16,
        reason: String,
    },
}

/// Runs once, on another thread than the one that armed it.
pub type Hook = Box<dyn FnOnce() + Send>;

/// One WebSocket connection shared by its pump task and the app bridge.
///
/// Nothing here allocates before it is used: both queues start empty (an idle socket holds no
/// channel blocks), which is most of why an idle websocket costs little (issue #21).
pub struct WsConn {
    state: Mutex<WsState>,
    room: Notify,
    out: Mutex<Outbox>,
    /// A message was queued for the client (or the outbox closed).
    out_ready: Notify,
}

#[derive(Default)]
struct WsState {
    inbox: VecDeque<Incoming>,
    closed: bool,
    hook: Option<Hook>,
}

/// Frames from the app to the client: up to `OUTBOX_LIMIT` queued, then senders wait in line
/// (each with the hook that tells it its message got in), in order.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Message>,
    waiting: VecDeque<(Message, Hook)>,
    /// The pump has ended: nothing is sent any more.
    closed: bool,
}

/// What became of a message given to `WsConn::send`.
pub enum Sent {
    Queued,
    /// The outbox is full: its hook runs once it is queued.
    Waiting,
    Closed,
}

impl WsConn {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), room: Notify::new(), out: Mutex::default(), out_ready: Notify::new() })
    }

    /// Queues a frame for the client. With the outbox full it waits in line and `hook()`'s hook
    /// runs when it is queued: the app's `send()` waits for that (backpressure).
    pub fn send(&self, m: Message, hook: impl FnOnce() -> Hook) -> Sent {
        let mut out = crate::sync::lock(&self.out);
        if out.closed {
            return Sent::Closed;
        }
        if out.waiting.is_empty() && out.queue.len() < OUTBOX_LIMIT {
            out.queue.push_back(m);
            drop(out);
            self.out_ready.notify_one();
            return Sent::Queued;
        }
        out.waiting.push_back((m, hook()));
        Sent::Waiting
    }

    /// Queues a frame if there is room now; dropped otherwise (the app's last word, 1000/1011).
    pub fn try_send(&self, m: Message) {
        let mut out = crate::sync::lock(&self.out);
        if !out.closed && out.waiting.is_empty() && out.queue.len() < OUTBOX_LIMIT {
            out.queue.push_back(m);
            drop(out);
            self.out_ready.notify_one();
        }
    }

    /// The next frame for the client, moving a waiting sender's frame into the room it leaves.
    fn pop_out(&self) -> Option<Message> {
        let mut out = crate::sync::lock(&self.out);
        let m = out.queue.pop_front()?;
        let hook = out.waiting.pop_front().map(|(next, hook)| {
            out.queue.push_back(next);
            hook
        });
        if out.queue.is_empty() {
            out.queue = VecDeque::new(); // an idle socket keeps no room
        }
        drop(out);
        if let Some(hook) = hook {
            hook();
        }
        Some(m)
    }

    /// Waits for the next frame for the client.
    async fn next_out(&self) -> Message {
        loop {
            let ready = self.out_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(m) = self.pop_out() {
                return m;
            }
            ready.await;
        }
    }

    /// The pump has ended: later sends fail, waiting senders are let go.
    fn close_out(&self) {
        let waiting = {
            let mut out = crate::sync::lock(&self.out);
            out.closed = true;
            out.queue = VecDeque::new();
            std::mem::take(&mut out.waiting)
        };
        for (_, hook) in waiting {
            hook();
        }
    }

    /// The next message for the app, if one is waiting.
    pub fn pop(&self) -> Option<Incoming> {
        let mut st = crate::sync::lock(&self.state);
        let m = st.inbox.pop_front();
        if st.inbox.is_empty() {
            st.inbox = VecDeque::new(); // an idle socket keeps no room
        }
        drop(st);
        if m.is_some() {
            self.room.notify_one();
        }
        m
    }

    /// Runs `hook` (once) when a message arrives. False if one is already waiting: pop it.
    pub fn on_message(&self, hook: Hook) -> bool {
        let mut st = crate::sync::lock(&self.state);
        if !st.inbox.is_empty() {
            return false;
        }
        st.hook = Some(hook);
        true
    }

    /// True once the client side is closed (a `Closed` message is, or was, in the inbox).
    pub fn is_closed(&self) -> bool {
        crate::sync::lock(&self.state).closed
    }

    fn deliver(&self, m: Incoming) {
        let hook = {
            let mut st = crate::sync::lock(&self.state);
            if st.closed {
                return;
            }
            st.closed = matches!(m, Incoming::Closed { .. });
            st.inbox.push_back(m);
            st.hook.take()
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    fn has_room(&self) -> bool {
        crate::sync::lock(&self.state).inbox.len() < INBOX_LIMIT
    }

    /// Tells the app the connection is gone without a handshake ever completing.
    pub fn abandon(&self) {
        self.deliver(Incoming::Closed { code: 1006, reason: String::new() });
    }
}

/// Runs the connection after the 101 response went out: frames in go to the app's inbox,
/// frames from the app go out, pings keep idle connections honest. With `deflate` (agreed in the
/// handshake) messages are compressed both ways (`ws_deflate`).
pub async fn pump(
    upgrade: hyper::upgrade::OnUpgrade,
    conn: Arc<WsConn>,
    cfg: &ServerConfig,
    stop: watch::Receiver<Stop>,
    deflate: Option<Deflate>,
) {
    /// Closes the outbox however the pump ends (aborted tasks included).
    struct CloseOut<'a>(&'a WsConn);
    impl Drop for CloseOut<'_> {
        fn drop(&mut self) {
            self.0.close_out();
        }
    }
    let _close = CloseOut(&conn);
    // Boxed: the task itself stays small, and this future is all a socket's pump holds.
    Box::pin(run(upgrade, &conn, cfg, stop, deflate)).await;
}

async fn run(
    upgrade: hyper::upgrade::OnUpgrade,
    conn: &WsConn,
    cfg: &ServerConfig,
    mut stop: watch::Receiver<Stop>,
    deflate: Option<Deflate>,
) {
    let io = match upgrade.await {
        Ok(io) => io,
        Err(e) => {
            log::debug!("websocket upgrade failed: {e}");
            return conn.abandon();
        }
    };
    // tungstenite's read buffer is small (see READ_BUFFER): an idle socket holds only that, and
    // tungstenite zero-fills only that before a read (at the 128 KiB default that fill dominated
    // an echo benchmark's profile).
    let config = WebSocketConfig::default()
        .max_message_size(Some(cfg.ws_max_size))
        .max_frame_size(Some(cfg.ws_max_size))
        .read_buffer_size(READ_BUFFER);
    let split = deflate.is_none().then_some(cfg.ws_max_size as u64);
    let io = WsIo::new(LeanIo::new(TokioIo::new(io), split), deflate.is_some(), cfg.ws_max_size);
    // Ready at once (it only builds the stream); not awaited, so its state is not part of this
    // future's, which every socket's task holds for its whole life.
    let Some(ws) = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never() else {
        return conn.abandon();
    };
    // Split so reading and writing proceed independently (an idle client must not stop the
    // app's messages). tungstenite still answers pings from the read side.
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + cfg.ws_ping_interval, cfg.ws_ping_interval);
    let mut last_seen = tokio::time::Instant::now();
    let (code, reason) = loop {
        let has_room = conn.has_room();
        tokio::select! {
            // Reading pauses while the app is behind (its inbox is full).
            _ = conn.room.notified(), if !has_room => {}
            read = stream.next(), if has_room => {
                last_seen = tokio::time::Instant::now();
                match read {
                    Some(Ok(Message::Text(t))) => conn.deliver(Incoming::Text(t.as_str().to_owned())),
                    Some(Ok(Message::Binary(b))) => conn.deliver(Incoming::Binary(b)),
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite queues the close reply; flushing sends it.
                        let _ = sink.flush().await;
                        break frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    }
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frames
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        log::info!("closing a websocket: {e}");
                        let _ = sink.send(Message::Close(Some(close_frame(1009, "message too big")))).await;
                        break (1009, String::new());
                    }
                    Some(Err(tokio_tungstenite::tungstenite::Error::Io(e))) if ws_deflate::close_code(&e).is_some() => {
                        let code = ws_deflate::close_code(&e).unwrap_or(1002);
                        log::info!("closing a websocket: {e}");
                        let _ = sink.send(Message::Close(Some(close_frame(code, "")))).await;
                        break (code, String::new());
                    }
                    Some(Err(e)) => {
                        log::debug!("websocket read ended: {e}");
                        break (1006, String::new());
                    }
                    None => break (1006, String::new()),
                }
            }
            out = conn.next_out() => match out {
                Message::Close(frame) => break Box::pin(closing(&mut sink, &mut stream, frame)).await,
                m => {
                    let m = deflate.as_ref().and_then(|d| d.compress(&m)).unwrap_or(m);
                    let sent = match fragments(&m) {
                        None => sink.send(m).await,
                        Some(frames) => Box::pin(send_frames(&mut sink, frames)).await,
                    };
                    if let Err(e) = sent {
                        log::debug!("websocket write failed: {e}");
                        break (1006, String::new());
                    }
                }
            },
            // The worker is stopping: tell the client we are going away (RFC 6455 1001).
            _ = async { let _ = stop.wait_for(|s| *s != Stop::Running).await; } => {
                let _ = sink.send(Message::Close(Some(close_frame(1001, "server shutting down")))).await;
                break (1001, String::new());
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > cfg.ws_ping_interval + cfg.ws_ping_timeout {
                    let _ = sink.send(Message::Close(Some(close_frame(1011, "keepalive ping timeout")))).await;
                    break (1006, String::new());
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break (1006, String::new());
                }
            }
        }
    };
    conn.deliver(Incoming::Closed { code, reason });
}

type Ws = WebSocketStream<WsIo<LeanIo<TokioIo<hyper::upgrade::Upgraded>>>>;

/// A message longer than this goes out as fragments of this size (RFC 6455 §5.4): tungstenite
/// copies each frame whole into a write buffer that keeps its capacity, so one large message
/// sent whole would stay allocated for the socket's life; this bounds what it keeps.
const FRAGMENT: usize = 16 * 1024;

/// The frames of a text or binary message longer than `FRAGMENT`; `None` for any other.
fn fragments(m: &Message) -> Option<Vec<Message>> {
    let (data, kind) = match m {
        Message::Text(t) if t.len() > FRAGMENT => (Bytes::from(t.clone()), Data::Text),
        Message::Binary(b) if b.len() > FRAGMENT => (b.clone(), Data::Binary),
        _ => return None,
    };
    let count = data.len().div_ceil(FRAGMENT);
    let frames = (0..count).map(|i| {
        let piece = data.slice(i * FRAGMENT..data.len().min((i + 1) * FRAGMENT));
        let opcode = OpCode::Data(if i == 0 { kind } else { Data::Continue });
        Message::Frame(Frame::message(piece, opcode, i + 1 == count))
    });
    Some(frames.collect())
}

/// Sends `frames`, each flushed on its own (fed together they would fill tungstenite's buffer).
/// Its own (boxed) future, so that an idle socket's pump does not carry its state.
async fn send_frames(
    sink: &mut SplitSink<Ws, Message>,
    frames: Vec<Message>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for frame in frames {
        sink.send(frame).await?;
    }
    Ok(())
}

/// The app closes: our close frame goes out, then we wait (briefly) for the client's, as RFC
/// 6455 §7.1.1 asks; the app's disconnect carries the code the client answered with (or ours).
/// Apart from the pump's loop, so that its state is allocated only by a closing socket.
async fn closing(
    sink: &mut SplitSink<Ws, Message>,
    stream: &mut SplitStream<Ws>,
    frame: Option<CloseFrame>,
) -> (u16, String) {
    let ours = frame.as_ref().map_or((1000, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
    let _ = sink.send(Message::Close(frame)).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Close(f) = m {
                return f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            }
        }
        None
    })
    .await;
    answer.ok().flatten().unwrap_or(ours)
}

/// The socket under tungstenite, read so that an idle websocket holds no read buffer: a read
/// goes into a stack buffer and what tungstenite's (small) buffer does not take waits in a
/// read-ahead allocated for it and freed once handed on. A waiting read holds nothing. Without
/// permessage-deflate it also cuts the client's long data frames into fragments (`Splitter`).
struct LeanIo<I> {
    inner: I,
    ahead: Vec<u8>,
    /// How much of `ahead` was handed on.
    at: usize,
    split: Option<Splitter>,
}

impl<I> LeanIo<I> {
    /// `split`: cut data frames up to this length (`--ws-max-size`) into fragments.
    fn new(inner: I, split: Option<u64>) -> Self {
        Self { inner, ahead: Vec::new(), at: 0, split: split.map(Splitter::new) }
    }

    /// Hands `data` to tungstenite's `buf`; what does not fit waits in `ahead`.
    fn hand_on(&mut self, data: &[u8], buf: &mut ReadBuf<'_>) {
        let n = data.len().min(buf.remaining());
        let (now, later) = data.split_at(n);
        buf.put_slice(now);
        if !later.is_empty() {
            self.ahead = later.to_vec();
            self.at = 0;
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for LeanIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.ahead.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            if this.at >= this.ahead.len() {
                this.ahead = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.split.is_none() && buf.remaining() >= READ_CHUNK {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let got = read.filled();
            let Some(split) = this.split.as_mut() else {
                this.hand_on(got, buf);
                return Poll::Ready(Ok(()));
            };
            let mut space = [MaybeUninit::<u8>::uninit(); READ_CHUNK + SPLIT_ROOM];
            let mut out = ReadBuf::uninit(&mut space);
            if got.is_empty() {
                split.end(&mut out)?; // the peer is gone: a partial header goes on for tungstenite to judge
            } else {
                split.feed(got, &mut out)?;
            }
            if out.filled().is_empty() && !got.is_empty() {
                continue; // only part of a frame header so far
            }
            this.hand_on(out.filled(), buf);
            return Poll::Ready(Ok(()));
        }
    }
}

/// A client's data frame longer than this reaches tungstenite as fragments of this size (RFC
/// 6455 §5.4): tungstenite reserves a frame's whole length in its read buffer, which keeps that
/// capacity, so one large frame would stay allocated for the socket's life.
const SPLIT: u64 = 4096;
/// Room for the fragment headers one read can add (at most 8 bytes per fragment begun, plus a
/// header held back from the previous read).
const SPLIT_ROOM: usize = 8 * (READ_CHUNK / SPLIT as usize + 2) + 14;

/// Rewrites the client's bytes so that no data frame is longer than `SPLIT`: a long one becomes
/// a fragment with its opcode and continuation fragments (the last with its FIN), unmasked and
/// sent with a zero mask (as `ws_deflate` does). Control frames, frames tungstenite will refuse
/// (unmasked, RSV bits, over `--ws-max-size`: refused at their header, as before) and short ones
/// go through unchanged. The message tungstenite assembles is the same, limits included.
struct Splitter {
    max: u64,
    head: [u8; 14],
    head_len: usize,
    state: Split,
}

#[derive(Clone, Copy)]
enum Split {
    /// A frame header comes next.
    Head,
    /// This many payload bytes go through as they are.
    Pass(u64),
    /// A long frame: payload bytes left in it and in the current fragment (0: begin one), its
    /// mask and where in it the next byte is, its FIN, and the next fragment's opcode.
    Cut { frame: u64, piece: u64, mask: [u8; 4], phase: usize, fin: bool, opcode: u8 },
}

fn put(out: &mut ReadBuf<'_>, data: &[u8]) -> io::Result<()> {
    if out.remaining() < data.len() {
        return Err(io::Error::other("websocket frame rewriting overflowed its buffer"));
    }
    out.put_slice(data);
    Ok(())
}

impl Splitter {
    fn new(max: u64) -> Self {
        Self { max, head: [0; 14], head_len: 0, state: Split::Head }
    }

    fn feed(&mut self, mut input: &[u8], out: &mut ReadBuf<'_>) -> io::Result<()> {
        while !input.is_empty() {
            match self.state {
                Split::Head => {
                    let want = match self.head.get(1) {
                        Some(&b1) if self.head_len >= 2 => header_len(b1),
                        _ => 2,
                    };
                    let take = (want - self.head_len).min(input.len());
                    let (now, rest) = input.split_at(take);
                    if let Some(slot) = self.head.get_mut(self.head_len..self.head_len + take) {
                        slot.copy_from_slice(now);
                    }
                    self.head_len += take;
                    input = rest;
                    if self.head_len < 2 || self.head_len < header_len(self.head[1]) {
                        continue;
                    }
                    self.start_frame(out)?;
                }
                Split::Pass(left) => {
                    let n = left.min(input.len() as u64) as usize;
                    let (now, rest) = input.split_at(n);
                    put(out, now)?;
                    input = rest;
                    self.state = if left == n as u64 { Split::Head } else { Split::Pass(left - n as u64) };
                }
                Split::Cut { frame, piece: 0, mask, phase, fin, opcode } => {
                    let piece = frame.min(SPLIT);
                    let last = piece == frame;
                    let first = if last && fin { 0x80 } else { 0 } | opcode;
                    match u16::try_from(piece) {
                        Ok(n) if n > 125 => {
                            let [hi, lo] = n.to_be_bytes();
                            put(out, &[first, 0x80 | 126, hi, lo, 0, 0, 0, 0])?;
                        }
                        _ => put(out, &[first, 0x80 | piece as u8, 0, 0, 0, 0])?,
                    }
                    self.state = Split::Cut { frame, piece, mask, phase, fin, opcode: 0 };
                }
                Split::Cut { frame, piece, mask, phase, fin, opcode } => {
                    let n = piece.min(input.len() as u64) as usize;
                    let (now, rest) = input.split_at(n);
                    let start = out.filled().len();
                    put(out, now)?;
                    if let Some(data) = out.filled_mut().get_mut(start..) {
                        unmask(data, mask, phase);
                    }
                    input = rest;
                    let (frame, piece) = (frame - n as u64, piece - n as u64);
                    self.state = if frame == 0 {
                        Split::Head
                    } else {
                        Split::Cut { frame, piece, mask, phase: (phase + n) % 4, fin, opcode }
                    };
                }
            }
        }
        Ok(())
    }

    /// A whole header is in `head`: pass the frame on, or begin cutting it.
    fn start_frame(&mut self, out: &mut ReadBuf<'_>) -> io::Result<()> {
        let head = self.head.get(..self.head_len).unwrap_or_default();
        self.head_len = 0;
        let (b0, b1) = (head.first().copied().unwrap_or(0), head.get(1).copied().unwrap_or(0));
        let len = match b1 & 0x7f {
            126 => head.get(2..4).and_then(|b| b.try_into().ok()).map_or(0, |b| u64::from(u16::from_be_bytes(b))),
            127 => head.get(2..10).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes),
            n => u64::from(n),
        };
        let masked = b1 & 0x80 != 0;
        let (opcode, rsv, fin) = (b0 & 0x0f, b0 & 0x70, b0 & 0x80 != 0);
        if opcode <= 2 && rsv == 0 && masked && len > SPLIT && len <= self.max {
            let mask: [u8; 4] = head.get(head.len() - 4..).and_then(|m| m.try_into().ok()).unwrap_or_default();
            self.state = Split::Cut { frame: len, piece: 0, mask, phase: 0, fin, opcode };
            return Ok(());
        }
        let head = self.head;
        put(out, head.get(..header_len(b1)).unwrap_or_default())?;
        self.state = if len == 0 { Split::Head } else { Split::Pass(len) };
        Ok(())
    }

    /// End of input: a header held back goes on as it is.
    fn end(&mut self, out: &mut ReadBuf<'_>) -> io::Result<()> {
        let head = self.head;
        put(out, head.get(..self.head_len).unwrap_or_default())?;
        self.head_len = 0;
        Ok(())
    }
}

/// A frame header's length, from its second byte.
fn header_len(b1: u8) -> usize {
    2 + match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    } + if b1 & 0x80 != 0 { 4 } else { 0 }
}

crate::http::write_through!(LeanIo);

pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ws_deflate::client_frame;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(Method::GET).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const HANDSHAKE: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn recognises_a_handshake() {
        assert!(is_upgrade(&request(&HANDSHAKE)));
        assert!(!is_upgrade(&request(&HANDSHAKE[..3])), "no key");
        assert!(!is_upgrade(&request(&[("upgrade", "h2c"), ("connection", "upgrade")])));
    }

    /// A `send()` hook maker whose hooks count how often a waiting sender was woken.
    fn counting_hook() -> (Arc<AtomicUsize>, impl Fn() -> Hook) {
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let hook = move || -> Hook {
            let woken = counter.clone();
            Box::new(move || {
                woken.fetch_add(1, Ordering::SeqCst);
            })
        };
        (woken, hook)
    }

    #[test]
    fn the_outbox_holds_sixteen_then_senders_wait_in_order() {
        let conn = WsConn::new();
        let (woken, hook) = counting_hook();
        for i in 0..OUTBOX_LIMIT {
            assert!(matches!(conn.send(Message::text(i.to_string()), &hook), Sent::Queued));
        }
        assert!(matches!(conn.send(Message::text("16"), &hook), Sent::Waiting));
        assert!(matches!(conn.send(Message::text("17"), &hook), Sent::Waiting));
        // The app's last word is dropped while others wait, as it was with a full channel.
        conn.try_send(Message::text("dropped"));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        let mut got = vec![];
        while let Some(m) = conn.pop_out() {
            got.push(m.into_text().unwrap().to_string());
        }
        assert_eq!(got, (0..18).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(woken.load(Ordering::SeqCst), 2, "each waiting sender is told once");
        assert_eq!(crate::sync::lock(&conn.out).queue.capacity(), 0, "an empty outbox holds nothing");
    }

    #[test]
    fn a_closed_outbox_refuses_and_lets_waiting_senders_go() {
        let conn = WsConn::new();
        let (woken, hook) = counting_hook();
        for _ in 0..=OUTBOX_LIMIT {
            conn.send(Message::text("x"), &hook);
        }
        conn.close_out();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(matches!(conn.send(Message::text("late"), &hook), Sent::Closed));
        assert!(conn.pop_out().is_none());
    }

    #[tokio::test]
    async fn next_out_wakes_for_a_message_sent_later() {
        let conn = WsConn::new();
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move { conn.next_out().await }
        });
        tokio::task::yield_now().await;
        let _ = conn.send(Message::text("hi"), || -> Hook { Box::new(|| {}) });
        let m = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), "hi");
    }

    #[test]
    fn an_emptied_inbox_holds_nothing() {
        let conn = WsConn::new();
        conn.deliver(Incoming::Text("a".into()));
        conn.deliver(Incoming::Text("b".into()));
        assert!(conn.pop().is_some() && conn.pop().is_some());
        assert_eq!(crate::sync::lock(&conn.state).inbox.capacity(), 0);
    }

    /// A reader that hands out `data` in reads of at most `chunk` bytes.
    struct Chunks {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this.chunk.min(buf.remaining()).min(this.data.len() - this.at);
            buf.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lean_io_keeps_only_what_a_small_read_left_and_frees_it() {
        use tokio::io::AsyncReadExt;
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut io = LeanIo::new(Chunks { data: data.clone(), at: 0, chunk: 10_000 }, None);
        let mut got = vec![];
        let mut small = [0u8; READ_BUFFER];
        loop {
            let n = io.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            if io.ahead.is_empty() {
                assert_eq!(io.ahead.capacity(), 0, "nothing kept once handed on");
            }
        }
        assert_eq!(got, data);
        assert_eq!(io.ahead.capacity(), 0);
        // A large read goes straight through.
        let mut io = LeanIo::new(Chunks { data: data.clone(), at: 0, chunk: 40_000 }, None);
        let mut big = vec![0u8; 40_000];
        assert_eq!(io.read(&mut big).await.unwrap(), 40_000);
        assert_eq!(io.ahead.capacity(), 0);
    }

    #[test]
    fn long_messages_go_out_in_fragments() {
        assert!(fragments(&Message::binary(vec![1u8; FRAGMENT])).is_none());
        assert!(fragments(&Message::Ping(Bytes::from(vec![0u8; 100]))).is_none());
        let text: String = "é".repeat(FRAGMENT); // 2 bytes each: pieces split characters, as RFC 6455 allows
        let frames = fragments(&Message::text(text.clone())).unwrap();
        assert_eq!(frames.len(), 2);
        let mut whole = vec![];
        for (i, m) in frames.into_iter().enumerate() {
            let Message::Frame(f) = m else { panic!("not a frame") };
            let want = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            assert_eq!(f.header().opcode, want);
            assert_eq!(f.header().is_final, i == 1);
            assert!(f.len() <= FRAGMENT + 14);
            whole.extend_from_slice(f.payload());
        }
        assert_eq!(whole, text.as_bytes());
    }

    /// What tungstenite reads from `wire` through LeanIo (with splitting), `chunk` bytes a read.
    async fn read_through(wire: Vec<u8>, chunk: usize, max: usize) -> Vec<Result<Message, String>> {
        let io = LeanIo::new(Chunks { data: wire, at: 0, chunk }, Some(max as u64));
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(READ_BUFFER);
        let mut ws = WebSocketStream::from_raw_socket(Duplex(io), Role::Server, Some(config)).await;
        let mut got = vec![];
        while let Some(m) = ws.next().await {
            let stop = m.is_err();
            got.push(m.map_err(|e| e.to_string()));
            if stop {
                break;
            }
        }
        got
    }

    /// A reader with writes thrown away (tungstenite answers pings).
    struct Duplex<R>(R);

    impl<R: AsyncRead + Unpin> AsyncRead for Duplex<R> {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
        }
    }

    impl<R: Unpin> tokio::io::AsyncWrite for Duplex<R> {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn long_client_frames_reach_tungstenite_in_pieces_and_whole() {
        let text = "é".repeat(5_000); // 10,000 bytes: pieces split characters
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = client_frame(0x81, b"hi");
        wire.extend(client_frame(0x81, text.as_bytes()));
        wire.extend(client_frame(0x82, &big));
        // A message the client fragmented itself, a ping between its long fragments.
        wire.extend(client_frame(0x02, &big[..5_000]));
        wire.extend(client_frame(0x89, b"ping"));
        wire.extend(client_frame(0x80, &big[5_000..14_000]));
        wire.extend(client_frame(0x82, &[]));
        let want: Vec<Result<Message, String>> = vec![
            Ok(Message::text("hi")),
            Ok(Message::text(text.clone())),
            Ok(Message::binary(big.clone())),
            Ok(Message::Ping(Bytes::from_static(b"ping"))),
            Ok(Message::binary(big[..14_000].to_vec())),
            Ok(Message::binary(Vec::new())),
            Err("WebSocket protocol error: Connection reset without closing handshake".into()),
        ];
        let brief = |got: &[Result<Message, String>]| -> Vec<String> {
            got.iter()
                .map(|m| match m {
                    Ok(m) => format!(
                        "{} {} {:x}",
                        m.is_text(),
                        m.len(),
                        m.clone().into_data().iter().map(|&b| b as u64).sum::<u64>()
                    ),
                    Err(e) => e.clone(),
                })
                .collect()
        };
        for chunk in [1, 7, 100, 4_096, 5_000, READ_CHUNK, 100_000] {
            assert_eq!(brief(&read_through(wire.clone(), chunk, 1 << 20).await), brief(&want), "reads of {chunk}");
        }
        // What tungstenite is given: no data frame longer than SPLIT.
        let mut split = Splitter::new(1 << 20);
        let mut space = vec![MaybeUninit::<u8>::uninit(); wire.len() + 4096];
        let mut out = ReadBuf::uninit(&mut space);
        split.feed(&wire, &mut out).unwrap();
        let mut rest = out.filled();
        let mut frames = 0;
        while !rest.is_empty() {
            let len = match rest[1] & 0x7f {
                126 => u16::from_be_bytes([rest[2], rest[3]]) as usize,
                127 => u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                n => n as usize,
            };
            assert!(len as u64 <= SPLIT);
            rest = &rest[header_len(rest[1]) + len..];
            frames += 1;
        }
        assert_eq!(frames, 1 + 3 + 18 + 2 + 1 + 3 + 1);
    }

    #[tokio::test]
    async fn limits_hold_through_the_splitting() {
        // Over --ws-max-size in one frame: refused at its header, as without splitting.
        let got = read_through(client_frame(0x82, &vec![0; 10_000]), 1_000, 8_000).await;
        assert!(matches!(got.last(), Some(Err(e)) if e.contains("Space limit exceeded")), "{got:?}");
        // Over it in fragments: refused when the message grows past it.
        let mut wire = client_frame(0x02, &vec![0; 6_000]);
        wire.extend(client_frame(0x80, &vec![0; 6_000]));
        let got = read_through(wire, 1_000, 8_000).await;
        assert!(matches!(got.last(), Some(Err(e)) if e.contains("Space limit exceeded")), "{got:?}");
        // Invalid UTF-8 in a long text frame is still refused.
        let got = read_through(client_frame(0x81, &vec![0xff; 9_000]), 1_000, 1 << 20).await;
        assert!(matches!(got.last(), Some(Err(_))), "{got:?}");
        // Unmasked: tungstenite refuses it as before (passed on unchanged).
        let mut unmasked = vec![0x82, 126, 0x27, 0x10];
        unmasked.extend(vec![0u8; 10_000]);
        let got = read_through(unmasked, 1_000, 1 << 20).await;
        assert!(matches!(got.last(), Some(Err(_))), "{got:?}");
    }

    #[test]
    fn accept_key_follows_rfc_6455() {
        // The example from RFC 6455 §1.3.
        assert_eq!(accept_key(&request(&HANDSHAKE).headers().clone()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
