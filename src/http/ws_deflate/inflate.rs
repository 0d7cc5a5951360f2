//! permessage-deflate's read side: the socket as tungstenite reads it. Frames pass through as
//! they came, except the frames of a compressed message (RSV1 on its first frame): their payload
//! is unmasked and inflated (with the 0x00 0x00 0xff 0xff tail put back, RFC 7692 §7.2.2), and
//! handed on as plain frames of at most `CHUNK` bytes with a zero mask. Anything this layer does
//! not expect (RSV1 on a continuation or control frame, an unmasked frame, a new message inside
//! another, a header tungstenite would refuse) ends the rewriting: from there the bytes go through
//! untouched, so tungstenite sees the fault and fails the connection as it would without deflate.
//!
//! Bounds: at most about `CHUNK` inflated bytes wait here at a time (tungstenite's
//! `--ws-max-size` check then sees every chunk), a message's compressed bytes count against
//! `--ws-max-size` too, and idle, this holds two empty buffers and no decompressor.

use std::cell::RefCell;
use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::TAIL;

/// Inflated bytes per frame handed to tungstenite, and about the most waiting here.
const CHUNK: usize = 16 * 1024;
/// Socket bytes read at a time.
const READ_SIZE: usize = 8 * 1024;
/// Decompressors kept per tokio thread between messages.
const POOL: usize = 4;

/// Why this layer failed the connection; the pump closes with `close_code`.
#[derive(Debug)]
enum InflateError {
    /// A message's compressed bytes passed `--ws-max-size`.
    TooBig,
    /// Not a valid deflate stream.
    Corrupt,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooBig => "compressed message over --ws-max-size",
            Self::Corrupt => "invalid permessage-deflate data",
        })
    }
}

impl std::error::Error for InflateError {}

fn fail(e: InflateError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The close code for a read error this layer raised (1009: too big, 1002: bad data), if it was one.
pub fn close_code(e: &io::Error) -> Option<u16> {
    match e.get_ref()?.downcast_ref::<InflateError>()? {
        InflateError::TooBig => Some(1009),
        InflateError::Corrupt => Some(1002),
    }
}

/// A WebSocket's byte stream: `inner` itself, or with permessage-deflate, rewritten on reading.
pub struct WsIo<I> {
    inner: I,
    inflate: Option<Box<Inflate>>,
}

impl<I> WsIo<I> {
    /// `deflate`: the extension was agreed; `max_size` is `--ws-max-size`.
    pub fn new(inner: I, deflate: bool, max_size: usize) -> Self {
        Self { inner, inflate: deflate.then(|| Box::new(Inflate::new(max_size))) }
    }
}

struct Inflate {
    /// Socket bytes not looked at yet.
    raw: BytesMut,
    /// Bytes for tungstenite, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    state: State,
    message: Msg,
    /// Unmasked compressed bytes the decompressor has not taken yet.
    input: BytesMut,
    decoder: Option<Decompress>,
    max_size: usize,
    eof: bool,
}

#[derive(Clone, Copy)]
enum State {
    /// A frame header comes next.
    Header,
    /// This many payload bytes go through as they are.
    Copy(u64),
    /// A compressed message's frame: payload bytes left, its mask, where in the mask the next
    /// byte is, and whether it ends the message.
    Inflate { left: u64, mask: [u8; 4], phase: usize, fin: bool },
    /// Gave up rewriting: everything goes through.
    Raw,
}

#[derive(Clone, Copy)]
enum Msg {
    None,
    /// An uncompressed fragmented message is under way.
    Plain,
    Compressed {
        /// Text or binary, for the first frame handed on.
        opcode: u8,
        /// A frame of it was handed on (the rest are continuations).
        opened: bool,
        /// Compressed payload bytes so far.
        size: usize,
        /// The tail was appended after the last frame's payload.
        tail: bool,
        /// The deflate stream ended (a final block): what follows is ignored.
        ended: bool,
    },
}

impl Inflate {
    fn new(max_size: usize) -> Self {
        Self {
            raw: BytesMut::new(),
            out: Vec::new(),
            sent: 0,
            state: State::Header,
            message: Msg::None,
            input: BytesMut::new(),
            decoder: None,
            max_size,
            eof: false,
        }
    }

    fn waiting(&self) -> usize {
        self.out.len().saturating_sub(self.sent)
    }

    /// Moves what `raw` holds into `out`, until `out` holds about `CHUNK` or more input is needed.
    fn process(&mut self) -> io::Result<()> {
        while self.waiting() < CHUNK {
            let progress = match self.state {
                State::Raw => {
                    self.out.extend_from_slice(&self.raw);
                    self.raw.clear();
                    false
                }
                State::Copy(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.raw.len());
                    let chunk = self.raw.split_to(n);
                    self.out.extend_from_slice(&chunk);
                    let left = left - n as u64;
                    self.state = if left == 0 { State::Header } else { State::Copy(left) };
                    n > 0 || left == 0
                }
                State::Header => self.header()?,
                State::Inflate { .. } => self.inflate()?,
            };
            if !progress {
                break;
            }
        }
        Ok(())
    }

    /// Reads one frame header, if all of it is there. True when it moved on.
    fn header(&mut self) -> io::Result<bool> {
        let mut cursor = Cursor::new(self.raw.as_ref());
        let (hdr, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(false),
            Err(_) => return Ok(self.give_up()),
        };
        let head_len = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        if hdr.rsv2 || hdr.rsv3 {
            return Ok(self.give_up());
        }
        let fin = hdr.is_final;
        match (hdr.opcode, self.message, hdr.rsv1, hdr.mask) {
            (OpCode::Control(_), _, false, _) => self.copy_header(head_len, len),
            (OpCode::Data(Data::Continue), Msg::Plain, false, _) => {
                if fin {
                    self.message = Msg::None;
                }
                self.copy_header(head_len, len);
            }
            (OpCode::Data(Data::Text | Data::Binary), Msg::None, false, _) => {
                if !fin {
                    self.message = Msg::Plain;
                }
                self.copy_header(head_len, len);
            }
            (OpCode::Data(d @ (Data::Text | Data::Binary)), Msg::None, true, Some(mask)) => {
                let opcode = if matches!(d, Data::Text) { 0x1 } else { 0x2 };
                self.message = Msg::Compressed { opcode, opened: false, size: 0, tail: false, ended: false };
                self.decoder = Some(take_decoder());
                self.start_compressed(head_len, len, mask, fin)?;
            }
            (OpCode::Data(Data::Continue), Msg::Compressed { .. }, false, Some(mask)) => {
                self.start_compressed(head_len, len, mask, fin)?;
            }
            _ => return Ok(self.give_up()),
        }
        Ok(true)
    }

    fn copy_header(&mut self, head_len: usize, len: u64) {
        let head = self.raw.split_to(head_len);
        self.out.extend_from_slice(&head);
        self.state = State::Copy(len);
    }

    fn start_compressed(&mut self, head_len: usize, len: u64, mask: [u8; 4], fin: bool) -> io::Result<()> {
        if let Msg::Compressed { size, .. } = &mut self.message {
            *size = usize::try_from(len).ok().and_then(|len| size.checked_add(len)).unwrap_or(usize::MAX);
            if *size > self.max_size {
                return Err(fail(InflateError::TooBig));
            }
        }
        self.raw.advance(head_len);
        self.state = State::Inflate { left: len, mask, phase: 0, fin };
        Ok(())
    }

    /// From here on the bytes go through untouched; tungstenite will fail the connection. A
    /// compressed message it has seen nothing of yet is opened first, so that a new message in
    /// its middle is the fault tungstenite sees.
    fn give_up(&mut self) -> bool {
        if let Msg::Compressed { opcode, opened: false, .. } = self.message {
            self.frame(opcode, false);
        }
        self.state = State::Raw;
        true
    }

    /// Takes payload bytes of a compressed frame and inflates what it can. True when it moved on.
    fn inflate(&mut self) -> io::Result<bool> {
        let State::Inflate { left, mask, phase, fin } = self.state else {
            return Ok(false);
        };
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(self.raw.len());
        let mut taken = self.raw.split_to(n);
        unmask(&mut taken, mask, phase);
        if self.input.is_empty() {
            self.input = taken;
        } else {
            self.input.extend_from_slice(&taken);
        }
        let left = left - n as u64;
        self.state = State::Inflate { left, mask, phase: (phase + n) % 4, fin };
        let last = left == 0 && fin;
        if let (true, Msg::Compressed { tail, .. }) = (last, &mut self.message) {
            if !*tail {
                *tail = true;
                self.input.extend_from_slice(&TAIL);
            }
        }
        let (moved, done) = self.decode(last)?;
        if done {
            self.message = Msg::None;
            self.input = BytesMut::new();
            give_back(self.decoder.take());
            self.state = State::Header;
        } else if left == 0 && !fin {
            // The rest of `input` waits for the next frame of the message.
            self.state = State::Header;
            return Ok(true);
        }
        Ok(n > 0 || moved || done)
    }

    /// One round of the decompressor into a new frame. Returns (moved on, message complete).
    fn decode(&mut self, last: bool) -> io::Result<(bool, bool)> {
        let Msg::Compressed { opcode, opened, ended, .. } = self.message else {
            return Ok((false, false));
        };
        if self.input.is_empty() && !last {
            return Ok((false, false));
        }
        // Room for the longest header this writes, then the payload.
        let start = self.out.len();
        self.out.resize(start + 8 + CHUNK, 0);
        let (consumed, produced, status) = match (&mut self.decoder, ended) {
            (Some(d), false) => {
                let (before_in, before_out) = (d.total_in(), d.total_out());
                let room = self.out.get_mut(start + 8..).unwrap_or_default();
                let Ok(status) = d.decompress(&self.input, room, FlushDecompress::Sync) else {
                    self.out.truncate(start);
                    return Err(fail(InflateError::Corrupt));
                };
                let consumed = usize::try_from(d.total_in() - before_in).unwrap_or(usize::MAX);
                (consumed, usize::try_from(d.total_out() - before_out).unwrap_or(usize::MAX).min(CHUNK), status)
            }
            _ => (self.input.len(), 0, Status::StreamEnd),
        };
        self.input.advance(consumed.min(self.input.len()));
        if status == Status::StreamEnd {
            // The client ended its deflate stream with a final block: the tail put back after it,
            // and anything else, is not part of it.
            self.input.clear();
            if let Msg::Compressed { ended, .. } = &mut self.message {
                *ended = true;
            }
        }
        let done = last && self.input.is_empty() && produced < CHUNK;
        if last && consumed == 0 && produced == 0 && !self.input.is_empty() {
            self.out.truncate(start);
            return Err(fail(InflateError::Corrupt)); // stuck on bytes that lead nowhere
        }
        if produced > 0 || done {
            self.seal(start, if opened { 0 } else { opcode }, done, produced);
            if let Msg::Compressed { opened, .. } = &mut self.message {
                *opened = true;
            }
        } else {
            self.out.truncate(start);
        }
        Ok((consumed > 0 || produced > 0, done))
    }

    /// An empty frame.
    fn frame(&mut self, opcode: u8, fin: bool) {
        let start = self.out.len();
        self.out.resize(start + 8, 0);
        self.seal(start, opcode, fin, 0);
    }

    /// Turns `out[start..]`, 8 bytes of room and then `len` payload bytes, into a frame: a header
    /// with a zero mask, and the payload moved up against it when the header is shorter. `len` is
    /// at most `CHUNK`, so the 16-bit length form is the longest needed.
    fn seal(&mut self, start: usize, opcode: u8, fin: bool, len: usize) {
        let first = opcode | if fin { 0x80 } else { 0 };
        let (head, head_len): ([u8; 8], usize) = match u16::try_from(len) {
            Ok(n) if n < 126 => ([first, 0x80 | n as u8, 0, 0, 0, 0, 0, 0], 6),
            Ok(n) => {
                let [hi, lo] = n.to_be_bytes();
                ([first, 0x80 | 126, hi, lo, 0, 0, 0, 0], 8)
            }
            Err(_) => ([first, 0x80, 0, 0, 0, 0, 0, 0], 6), // never: len <= CHUNK
        };
        let payload = start + 8..start + 8 + len;
        if head_len < 8 && self.out.get(payload.clone()).is_some() {
            self.out.copy_within(payload, start + head_len);
        }
        self.out.truncate(start + head_len + len);
        if let Some(slot) = self.out.get_mut(start..start + head_len) {
            slot.copy_from_slice(head.get(..head_len).unwrap_or_default());
        }
    }
}

/// Unmasks `data`, whose first byte is at `phase` in the 4-byte mask (also the pump's re-framing,
/// `http::websocket`).
pub(crate) fn unmask(data: &mut [u8], mask: [u8; 4], phase: usize) {
    let mask: [u8; 4] = std::array::from_fn(|k| mask.get((phase + k) % 4).copied().unwrap_or(0));
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes(c.try_into().unwrap_or_default()) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WsIo<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inf) = this.inflate.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if inf.waiting() > 0 {
                let n = inf.waiting().min(buf.remaining());
                if let Some(bytes) = inf.out.get(inf.sent..inf.sent + n) {
                    buf.put_slice(bytes);
                }
                inf.sent += n;
                if inf.sent == inf.out.len() {
                    // Handed on completely: an idle socket keeps no buffer.
                    inf.out = Vec::new();
                    inf.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            inf.process()?;
            if inf.waiting() > 0 {
                continue;
            }
            if inf.eof {
                return Poll::Ready(Ok(()));
            }
            inf.raw.reserve(READ_SIZE);
            let read = match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut inf.raw) {
                Poll::Pending => {
                    if inf.raw.is_empty() {
                        inf.raw = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(r) => r?,
            };
            if read == 0 {
                // The peer is gone: a partial frame goes on as it is, for tungstenite to judge.
                inf.eof = true;
                inf.out.extend_from_slice(&inf.raw);
                inf.raw.clear();
            }
        }
    }
}

crate::http::write_through!(WsIo);

thread_local! {
    static DECODERS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

fn take_decoder() -> Decompress {
    DECODERS.with(|pool| pool.try_borrow_mut().ok().and_then(|mut p| p.pop())).unwrap_or_else(|| Decompress::new(false))
}

fn give_back(decoder: Option<Decompress>) {
    let Some(mut d) = decoder else { return };
    d.reset(false);
    DECODERS.with(|pool| {
        if let Ok(mut p) = pool.try_borrow_mut() {
            if p.len() < POOL {
                p.push(d);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::{Error, Message};
    use tokio_tungstenite::WebSocketStream;

    use crate::http::ws_deflate::{client_frame as frame, CLIENT_MASK as MASK};

    /// What a client sends: raw deflate, sync-flushed, without the tail.
    fn compress(data: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, flate2::FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    /// The messages (or the error) tungstenite reads from `wire` through the inflating layer.
    async fn read(wire: Vec<u8>, max_size: usize) -> Vec<Result<Message, Error>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&wire).await.unwrap();
        client.shutdown().await.unwrap();
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max_size))
            .max_frame_size(Some(max_size));
        let io = WsIo::new(server, true, max_size);
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let mut got = Vec::new();
        while let Some(m) = ws.next().await {
            let stop = m.is_err();
            got.push(m);
            if stop {
                break;
            }
        }
        drop(client);
        got
    }

    fn text(t: &str) -> Message {
        Message::text(t.to_owned())
    }

    #[tokio::test]
    async fn fragmented_compressed_messages_with_a_ping_between() {
        let original = "{\"event\": \"tick\", \"value\": 12345} ".repeat(300);
        let body = compress(original.as_bytes());
        let (one, two) = body.split_at(body.len() / 2);
        let mut wire = frame(0x40 | 0x1, one); // text, RSV1, not final
        wire.extend(frame(0x89, b"hi")); // ping between the fragments
        wire.extend(frame(0x80, two)); // final continuation
        wire.extend(frame(0x82, b"plain bytes")); // an uncompressed message after it
        wire.extend(frame(0xC2, &compress(b""))); // an empty compressed one
        wire.extend(frame(0x88, &1000u16.to_be_bytes()));
        let got = read(wire, 1 << 20).await;
        let got: Vec<Message> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got[0], Message::Ping("hi".into()));
        assert_eq!(got[1], text(&original));
        assert_eq!(got[2], Message::binary(&b"plain bytes"[..]));
        assert_eq!(got[3], Message::binary(&b""[..]));
        assert!(matches!(got[4], Message::Close(_)));
    }

    #[tokio::test]
    async fn a_large_message_inflates_in_chunks_within_the_limit() {
        let original: String = (0..200_000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
        let wire = frame(0xC1, &compress(original.as_bytes()));
        let got = read(wire, 1 << 20).await;
        assert_eq!(got[0].as_ref().unwrap(), &text(&original));
    }

    #[tokio::test]
    async fn a_deflate_bomb_stops_at_the_message_limit() {
        let wire = frame(0xC2, &compress(&vec![0u8; 8 << 20])); // 8 MiB of zeros, ~8 KiB on the wire
        let got = read(wire, 1 << 20).await;
        assert!(matches!(got.last(), Some(Err(Error::Capacity(_)))), "{got:?}");
    }

    #[tokio::test]
    async fn compressed_bytes_count_against_the_limit() {
        let wire = frame(0xC2, &vec![0u8; 5000]);
        let got = read(wire, 4096).await;
        let Some(Err(Error::Io(e))) = got.last() else { panic!("{got:?}") };
        assert_eq!(close_code(e), Some(1009));
    }

    #[tokio::test]
    async fn corrupt_data_fails_with_1002() {
        let wire = frame(0xC1, &[0xff, 0xff, 0xff, 0xff, 0x00]);
        let got = read(wire, 1 << 20).await;
        let Some(Err(Error::Io(e))) = got.last() else { panic!("{got:?}") };
        assert_eq!(close_code(e), Some(1002));
    }

    #[tokio::test]
    async fn misplaced_rsv1_reaches_tungstenite_as_it_came() {
        let body = compress(b"hello hello hello hello");
        // RSV1 on a continuation, on a control frame, and on a new message inside an uncompressed one.
        for wire in [
            [frame(0x41, &body[..4]), frame(0xC0, &body[4..])].concat(),
            frame(0xC9, b"ping"),
            [frame(0x01, b"a"), frame(0xC1, &body)].concat(),
        ] {
            let got = read(wire, 1 << 20).await;
            assert!(matches!(got.last(), Some(Err(Error::Protocol(_)))), "{got:?}");
        }
        // A new message inside a compressed one that produced nothing yet.
        let wire = [frame(0x41, &[]), frame(0x81, b"x")].concat();
        let got = read(wire, 1 << 20).await;
        assert!(matches!(got.last(), Some(Err(Error::Protocol(_)))), "{got:?}");
    }

    #[test]
    fn unmask_at_any_phase() {
        let data: Vec<u8> = (0..23).collect();
        for phase in 0..4 {
            let mut masked: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ MASK[(i + phase) % 4]).collect();
            unmask(&mut masked, MASK, phase);
            assert_eq!(masked, data);
        }
    }
}
