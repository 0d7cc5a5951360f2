//! WebSocket connections, tokio side: recognising an upgrade request, the 101 handshake
//! headers, and the pump that moves frames between the socket (tokio-tungstenite) and the
//! app bridge. Ping/pong, the idle ping timeout and the message size limit live here; no Python.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, Method, Request, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws_deflate::{self, Deflate, WsIo};
use crate::config::ServerConfig;
use crate::stop::Stop;
use tokio::sync::watch;

/// Messages the app has not taken yet; past this the pump stops reading the socket, so a
/// client can't make the server buffer without bound.
const INBOX_LIMIT: usize = 64;
/// Outgoing messages buffered before the app's `send()` waits.
pub const OUTBOX_LIMIT: usize = 16;

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

/// One WebSocket connection shared by its pump task and the app bridge.
pub struct WsConn {
    state: Mutex<WsState>,
    room: Notify,
    /// Frames from the app to the client. Taken by the pump once the connection is upgraded.
    outbox: Mutex<Option<mpsc::Receiver<Message>>>,
    pub out: mpsc::Sender<Message>,
}

#[derive(Default)]
struct WsState {
    inbox: VecDeque<Incoming>,
    closed: bool,
    hook: Option<Box<dyn FnOnce() + Send>>,
}

impl WsConn {
    pub fn new() -> Arc<Self> {
        let (out, rx) = mpsc::channel(OUTBOX_LIMIT);
        Arc::new(Self { state: Mutex::default(), room: Notify::new(), outbox: Mutex::new(Some(rx)), out })
    }

    /// The next message for the app, if one is waiting.
    pub fn pop(&self) -> Option<Incoming> {
        let m = crate::sync::lock(&self.state).inbox.pop_front();
        if m.is_some() {
            self.room.notify_one();
        }
        m
    }

    /// Runs `hook` (once) when a message arrives. False if one is already waiting: pop it.
    pub fn on_message(&self, hook: Box<dyn FnOnce() + Send>) -> bool {
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
    mut stop: watch::Receiver<Stop>,
    deflate: Option<Deflate>,
) {
    let Some(mut outbox) = crate::sync::lock(&conn.outbox).take() else {
        return;
    };
    let io = match upgrade.await {
        Ok(io) => io,
        Err(e) => {
            log::debug!("websocket upgrade failed: {e}");
            return conn.abandon();
        }
    };
    // tungstenite zero-fills the free part of its read buffer before every socket read; at the
    // 128 KiB default that fill dominated an echo benchmark's profile. Bigger messages still
    // arrive through several reads.
    let config = WebSocketConfig::default()
        .max_message_size(Some(cfg.ws_max_size))
        .max_frame_size(Some(cfg.ws_max_size))
        .read_buffer_size(8 * 1024);
    let io = WsIo::new(TokioIo::new(io), deflate.is_some(), cfg.ws_max_size);
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
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
            out = outbox.recv() => match out {
                Some(Message::Close(frame)) => {
                    let ours = frame.as_ref().map_or((1000, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
                    let _ = sink.send(Message::Close(frame)).await;
                    // Wait (briefly) for the client's close frame, as RFC 6455 §7.1.1 asks; the
                    // app's disconnect carries the code the client answered with (or ours).
                    let answer = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if let Message::Close(f) = m {
                                return f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
                            }
                        }
                        None
                    })
                    .await;
                    break answer.ok().flatten().unwrap_or(ours);
                }
                Some(m) => {
                    let m = deflate.as_ref().and_then(|d| d.compress(&m)).unwrap_or(m);
                    if let Err(e) = sink.send(m).await {
                        log::debug!("websocket write failed: {e}");
                        break (1006, String::new());
                    }
                }
                // The app finished without closing: close normally.
                None => {
                    let _ = sink.send(Message::Close(Some(close_frame(1000, "")))).await;
                    break (1000, String::new());
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

pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn accept_key_follows_rfc_6455() {
        // The example from RFC 6455 §1.3.
        assert_eq!(accept_key(&request(&HANDSHAKE).headers().clone()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
