//! permessage-deflate (RFC 7692) for the WebSocket pump: the handshake's negotiation, the
//! compression of the app's messages, and (in `inflate`) the read side. tungstenite 0.30 has no
//! extension support (it fails any frame with RSV1 set), so the extension sits around it: messages
//! from the app are compressed here and sent as raw frames with RSV1 set, and compressed frames
//! from the client are inflated into plain frames before tungstenite reads them, so every frame
//! rule (fragments, control frames, UTF-8, sizes, close codes) stays tungstenite's.
//!
//! Memory: both directions run without context takeover (the response always names
//! `server_no_context_takeover` and `client_no_context_takeover`), so a message never depends on
//! the previous one and an idle socket holds no deflate state at all. The compressor is one per
//! tokio thread; a decompressor is taken from a small per-thread pool when a compressed message
//! starts and given back when it ends. A window the client limits (`server_max_window_bits`)
//! is honoured by compressing only messages no longer than the window (the others go out
//! uncompressed, which RFC 7692 allows per message): with no context takeover, no match can
//! reach further back than the message's own start.

mod inflate;

pub(crate) use inflate::unmask;

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderMap, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

pub use inflate::{close_code, WsIo};

/// Messages shorter than this go out as stored deflate blocks (5 bytes more, no compressor run):
/// deflate saves nothing on them. Every message is sent with RSV1 once the extension is agreed,
/// as browsers and the websockets library do (some clients mishandle plain ones then).
const MIN_SIZE: usize = 64;
/// zlib's level 1: the pump compresses on tokio threads, and a Channels broadcast compresses the
/// same message once per socket; the ratio on JSON is close to the default level's.
const LEVEL: u32 = 1;
/// What a sync flush ends with; RFC 7692 §7.2.1 has the sender remove it, §7.2.2 the receiver
/// put it back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The agreed parameters of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The client's `server_max_window_bits`, when it offered one (the response must repeat it).
    server_max_window_bits: Option<u8>,
}

/// The first acceptable `permessage-deflate` offer in the request, if any (RFC 7692 §5). An offer
/// with an unknown, repeated or malformed parameter is declined, and the next one is tried; with
/// none left the socket runs uncompressed (a refusal is never an error).
pub fn negotiate(headers: &HeaderMap) -> Option<Deflate> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_unquoted(v, b','))
        .find_map(accept_offer)
}

fn accept_offer(element: &str) -> Option<Deflate> {
    let mut parts = split_unquoted(element, b';');
    if !parts.next()?.trim().eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_max_window_bits = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        let index = match name {
            "server_no_context_takeover" | "client_no_context_takeover" if value.is_some() => return None,
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => {
                server_max_window_bits = Some(window_bits(value?)?);
                2
            }
            // Without a value: the client lets the server choose; with one: its own limit. The
            // inflater takes any window up to 15 bits, so the response does not name it.
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        let slot = seen.get_mut(index)?;
        if std::mem::replace(slot, true) {
            return None; // RFC 7692 §7: a repeated parameter makes the offer invalid
        }
    }
    Some(Deflate { server_max_window_bits })
}

/// 8 to 15, in decimal without a leading zero (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A parameter's value as a token or a quoted string (RFC 7692 §7: same syntax either way).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(v).filter(|v| !v.contains('"')),
    }
}

/// `s` split at `sep` outside double quotes (an unknown extension's quoted value may hold either).
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let cut = s.bytes().position(|b| {
            if b == b'"' {
                quoted = !quoted;
            }
            b == sep && !quoted
        });
        match cut {
            Some(at) => {
                rest = s.get(at + 1..);
                s.get(..at)
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

impl Deflate {
    /// The 101's `Sec-WebSocket-Extensions`.
    pub fn header_value(&self) -> HeaderValue {
        let mut v = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={bits}"));
        }
        HeaderValue::try_from(v).unwrap_or(HeaderValue::from_static("permessage-deflate"))
    }

    /// The frame that carries a text or binary `message` compressed (None for the others).
    /// Messages longer than a window the client limited go as stored blocks: they hold no
    /// back-reference at all, so any window reads them.
    pub fn compress(&self, message: &Message) -> Option<Message> {
        let (data, opcode) = match message {
            Message::Text(t) => (t.as_bytes(), Data::Text),
            Message::Binary(b) => (b.as_ref(), Data::Binary),
            _ => return None,
        };
        let over_window = self.server_max_window_bits.is_some_and(|bits| data.len() > 1usize << bits);
        let body = if data.len() < MIN_SIZE || over_window {
            stored(data)
        } else {
            match deflate(data) {
                // Incompressible data (already compressed, encrypted) grows by about 5% at level
                // 1, whose blocks use zlib's fixed codes only: then stored blocks are smaller.
                Some(mut body) if body.ends_with(&TAIL) && body.len() - TAIL.len() <= data.len() + 6 => {
                    body.truncate(body.len() - TAIL.len());
                    body
                }
                _ => stored(data),
            }
        };
        let mut frame = Frame::message(Bytes::from(body), OpCode::Data(opcode), true);
        frame.header_mut().rsv1 = true;
        Some(Message::Frame(frame))
    }
}

thread_local! {
    /// This thread's compressor, reset after every message (no context takeover).
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// `data` as stored (uncompressed) deflate blocks, ending as a sync flush ends once its last 4
/// bytes are removed: with the 3 header bits of an empty stored block (and padding), the byte
/// 0x00, whose length fields the receiver's `TAIL` supplies. (Without it, a receiver that keeps
/// its inflater between messages, as Chromium does, reads the next message as garbage.) An empty
/// message is that one byte, as RFC 7692 §7.2.3.6 has it.
fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 65535 + 1) + 1);
    for chunk in data.chunks(65535) {
        let [lo, hi] = u16::try_from(chunk.len()).unwrap_or(u16::MAX).to_le_bytes();
        out.extend_from_slice(&[0x00, lo, hi, !lo, !hi]);
        out.extend_from_slice(chunk);
    }
    out.push(0x00);
    out
}

/// `data` as raw deflate ending with a sync flush (so with `TAIL`).
fn deflate(data: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let compressor = slot.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        compressor.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(compressor.total_in()).ok()?;
            compressor.compress_vec(data.get(consumed..)?, &mut out, FlushCompress::Sync).ok()?;
            let done = usize::try_from(compressor.total_in()).ok()? == data.len() && out.len() < out.capacity();
            if done {
                return Some(out);
            }
            out.reserve(out.capacity().max(1024));
        }
    })
}

/// The 101's headers get the agreed extension, and only that: an extension the app named
/// itself would be one the core does not speak.
pub fn answer(headers: &mut HeaderMap, deflate: Option<&Deflate>) {
    headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    if let Some(d) = deflate {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, d.header_value());
    }
}

/// The mask of the test clients' frames.
#[cfg(test)]
pub(crate) const CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One masked client frame, its first byte (FIN, RSV, opcode) as given: what the inflater's and
/// the pump's tests feed in.
#[cfg(test)]
pub(crate) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&CLIENT_MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ CLIENT_MASK[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<Deflate> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(v).unwrap());
        }
        negotiate(&h)
    }

    #[test]
    fn browser_offers_are_accepted() {
        let plain = Some(Deflate { server_max_window_bits: None });
        assert_eq!(offer(&["permessage-deflate; client_max_window_bits"]), plain); // Chromium, Firefox
        assert_eq!(offer(&["permessage-deflate"]), plain);
        assert_eq!(offer(&["permessage-deflate; client_max_window_bits=12; server_no_context_takeover"]), plain);
        assert_eq!(
            offer(&["x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=\"10\""]),
            Some(Deflate { server_max_window_bits: Some(10) })
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; ",
            "permessage-deflate; client_max_window_bits=\"9",
            "deflate-frame",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
        let second =
            offer(&["permessage-deflate; server_max_window_bits=20, permessage-deflate; server_max_window_bits=9"]);
        assert_eq!(second, Some(Deflate { server_max_window_bits: Some(9) }));
        // A comma inside another extension's quoted value does not start an offer.
        assert_eq!(offer(&["foo; x=\"a, permessage-deflate\""]), None);
    }

    #[test]
    fn the_answer_names_no_context_takeover_both_ways() {
        let mut h = HeaderMap::new();
        h.insert(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("made-up-by-the-app"));
        answer(&mut h, Some(&Deflate { server_max_window_bits: Some(10) }));
        assert_eq!(
            h[SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        answer(&mut h, None);
        assert!(h.get(SEC_WEBSOCKET_EXTENSIONS).is_none());
    }

    #[test]
    fn compressed_messages_inflate_back() {
        let d = Deflate { server_max_window_bits: None };
        let text = "{\"type\": \"chat\", \"text\": \"hello\"} ".repeat(40);
        let Some(Message::Frame(frame)) = d.compress(&Message::text(text.clone())) else { panic!("not compressed") };
        assert!(frame.header().rsv1 && frame.header().is_final);
        assert!(frame.payload().len() < text.len() / 4);
        let mut data = frame.payload().to_vec();
        data.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(text.len() + 16);
        flate2::Decompress::new(false).decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync).unwrap();
        assert_eq!(out, text.as_bytes());
        // Short, incompressible, empty, or longer than the client's window: still RSV1 frames.
        for (data, window) in
            [(b"short".to_vec(), None), (vec![], None), (vec![7; 300_000], None), (vec![1; 257], Some(8))]
        {
            let d = Deflate { server_max_window_bits: window };
            let Some(Message::Frame(frame)) = d.compress(&Message::binary(data.clone())) else { panic!() };
            assert!(frame.header().rsv1);
            let mut body = frame.payload().to_vec();
            body.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(data.len() + 16);
            flate2::Decompress::new(false).decompress_vec(&body, &mut out, flate2::FlushDecompress::Sync).unwrap();
            assert_eq!(out, data);
        }
        assert!(d.compress(&Message::Ping(Bytes::new())).is_none());
        // A receiver that keeps one inflater for every message (Chromium) reads them all.
        let mut kept = flate2::Decompress::new(false);
        for data in [b"short".to_vec(), text.as_bytes().to_vec(), vec![], vec![9; 70_000], b"again".to_vec()] {
            let Some(Message::Frame(frame)) = d.compress(&Message::binary(data.clone())) else { panic!() };
            let mut body = frame.payload().to_vec();
            body.extend_from_slice(&TAIL);
            let mut out = Vec::with_capacity(data.len() + 16);
            kept.decompress_vec(&body, &mut out, flate2::FlushDecompress::Sync).unwrap();
            assert_eq!(out, data);
        }
        let mut x = 2463534242u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let Some(Message::Frame(frame)) = d.compress(&Message::binary(noise)) else { panic!() };
        assert!(frame.payload().len() <= 4096 + 6, "stored, not grown: {}", frame.payload().len());
        let small_window = Deflate { server_max_window_bits: Some(8) };
        let Some(Message::Frame(frame)) = small_window.compress(&Message::text("a".repeat(256))) else { panic!() };
        assert!(frame.payload().len() < 20, "256 bytes fit the window: deflated");
    }
}
