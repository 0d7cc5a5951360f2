//! HTTP/1.1 wire oracles, written from RFC 9112 and kept deliberately strict:
//!
//! - [`walk`] reads a client's byte stream as a sequence of requests and their bodies. It
//!   accepts a subset of what hyper + rsgi accept: whenever it accepts a request, the server
//!   must frame it the same way. It stops at the first request it is unsure about (anything
//!   ambiguous or invalid), so a difference in leniency never looks like a bug.
//! - [`response_head`] and [`chunked_body`] read the server's answers.
//!
//! Requests use httparse, the parser hyper itself uses for heads, with its default settings
//! (hyper's server defaults); bodies are framed by code written here.

use std::fmt;

/// One request as the strict reader sees it.
#[derive(Debug, Clone)]
pub struct Walked {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub uri: http::Uri,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub body: Vec<u8>,
}

/// The requests of a stream, in order.
#[derive(Debug, Default)]
pub struct Walk {
    pub requests: Vec<Walked>,
    /// The whole stream was read: after the last request only empty lines (CR/LF) remain.
    /// When false the reader stopped at a request it could not vouch for.
    pub complete: bool,
}

/// Reads `input` as pipelined requests.
pub fn walk(input: &[u8]) -> Walk {
    let mut out = Walk::default();
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        if rest.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            out.complete = true;
            return out;
        }
        match one_request(rest) {
            Some((req, used)) => {
                out.requests.push(req);
                pos += used;
            }
            None => return out,
        }
    }
}

fn one_request(buf: &[u8]) -> Option<(Walked, usize)> {
    let mut headers = vec![httparse::EMPTY_HEADER; 512];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let method = req.method?.as_bytes().to_vec();
    let target = req.path?.as_bytes().to_vec();
    let version = req.version?;
    let uri = http::Uri::try_from(target.as_slice()).ok()?;
    let mut te = Vec::new();
    let mut cl = Vec::new();
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl.push(h.value);
        }
    }
    let body_buf = &buf[head_len..];
    let (body, used) = if !te.is_empty() {
        // RFC 9112 §6.1: no Transfer-Encoding in HTTP/1.0; with Content-Length as well the
        // message is suspect (a server may reject it or ignore Content-Length): not vouched for.
        if version == 0 || !cl.is_empty() || !only_chunked(&te) {
            return None;
        }
        chunked_body(body_buf).ok()?
    } else if !cl.is_empty() {
        let len = usize::try_from(same_length(&cl)?).ok()?;
        (body_buf.get(..len)?.to_vec(), len)
    } else {
        (Vec::new(), 0) // RFC 9112 §6.3: a request without either has no body
    };
    Some((Walked { method, target, uri, version, body }, head_len + used))
}

/// Exactly one transfer coding, `chunked`, over every Transfer-Encoding line.
fn only_chunked(values: &[&[u8]]) -> bool {
    let mut codings = values.iter().flat_map(|v| v.split(|&b| b == b',')).map(trim_ows).filter(|c| !c.is_empty());
    matches!((codings.next(), codings.next()), (Some(c), None) if c.eq_ignore_ascii_case(b"chunked"))
}

/// Every Content-Length line is the same plain decimal number (no lists, no signs).
fn same_length(values: &[&[u8]]) -> Option<u64> {
    let mut found = None;
    for v in values {
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Why a chunked body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The bytes end before the body does.
    Incomplete,
    /// Not RFC 9112 §7.1 chunked coding (as strictly read here).
    Invalid(&'static str),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Incomplete => f.write_str("incomplete"),
            ChunkError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Decodes a chunked body at the start of `buf`: the data and the number of bytes it took
/// (through the CRLF that ends the trailer section).
///
/// chunk = 1*16HEXDIG [ chunk-ext ] CRLF data CRLF; chunk-ext = *( BWS ";" ext ), where the
/// extension text is visible ASCII, SP or HTAB; trailer lines are `token ":" value` without
/// bare CR or LF.
pub fn chunked_body(buf: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
    use ChunkError::{Incomplete, Invalid};
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = find_crlf(buf, pos)?;
        let line = &buf[pos..line_end];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(Invalid("chunk size missing"));
        }
        if digits > 16 {
            return Err(Invalid("chunk size too long"));
        }
        let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).expect("hex"), 16)
            .map_err(|_| Invalid("chunk size overflow"))?;
        // BWS is only allowed before ';' (a space after the size with no extension is not).
        let ext = &line[digits..];
        let ext = &ext[leading_ows(ext)..];
        if ext.len() != line.len() - digits || !ext.is_empty() {
            let valid = ext.first() == Some(&b';') && ext.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
            if !valid {
                return Err(Invalid("chunk extension"));
            }
        }
        pos = line_end + 2;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).map_err(|_| Invalid("chunk size overflow"))?;
        let end = pos.checked_add(size).ok_or(Invalid("chunk size overflow"))?;
        let data = buf.get(pos..end).ok_or(Incomplete)?;
        body.extend_from_slice(data);
        match buf.get(end..end + 2) {
            Some(b"\r\n") => {}
            Some(_) => return Err(Invalid("chunk data not followed by CRLF")),
            None if buf.len() == end || buf[end..] == *b"\r" => return Err(Incomplete),
            None => return Err(Invalid("chunk data not followed by CRLF")),
        }
        pos = end + 2;
    }
    // trailer-section CRLF
    loop {
        let line_end = find_crlf(buf, pos)?;
        let line = &buf[pos..line_end];
        pos = line_end + 2;
        if line.is_empty() {
            return Ok((body, pos));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(Invalid("trailer without colon"))?;
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if colon == 0 || !line[..colon].iter().all(token) {
            return Err(Invalid("trailer name"));
        }
        if !line[colon + 1..].iter().all(|&b| b == b'\t' || b >= b' ' && b != 0x7f) {
            return Err(Invalid("trailer value"));
        }
    }
}

fn leading_ows(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| b == b' ' || b == b'\t').count()
}

/// The index of the next CRLF at or after `from`. A bare CR or LF before it is invalid.
fn find_crlf(buf: &[u8], from: usize) -> Result<usize, ChunkError> {
    let mut i = from;
    while i < buf.len() {
        match buf[i] {
            b'\r' => {
                return match buf.get(i + 1) {
                    Some(b'\n') => Ok(i),
                    Some(_) => Err(ChunkError::Invalid("bare CR")),
                    None => Err(ChunkError::Incomplete),
                }
            }
            b'\n' => return Err(ChunkError::Invalid("bare LF")),
            _ => i += 1,
        }
    }
    Err(ChunkError::Incomplete)
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Bytes the head took, through the empty line.
    pub len: usize,
}

impl ResponseHead {
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    pub fn content_length(&self) -> Result<Option<u64>, String> {
        let values: Vec<_> = self.values("content-length").collect();
        match values.as_slice() {
            [] => Ok(None),
            [v] => same_length(&[v]).map(Some).ok_or_else(|| format!("invalid Content-Length {:?}", show(v))),
            _ => Err("more than one Content-Length".into()),
        }
    }

    pub fn is_chunked(&self) -> bool {
        self.values("transfer-encoding").any(|v| v.eq_ignore_ascii_case(b"chunked"))
    }

    /// The connection option `close` is present.
    pub fn closes(&self) -> bool {
        self.values("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim_ows(t).eq_ignore_ascii_case(b"close"))
    }
}

/// Parses one complete response head at the start of `buf`.
pub fn response_head(buf: &[u8]) -> Result<ResponseHead, String> {
    let mut headers = vec![httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(ResponseHead {
            version: resp.version.expect("complete"),
            status: resp.code.expect("complete"),
            headers: resp.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
            len,
        }),
        Ok(httparse::Status::Partial) => Err(format!("truncated response head: {:?}", show(buf))),
        Err(e) => Err(format!("unparsable response head ({e}): {:?}", show(buf))),
    }
}

/// Bytes for an assertion message: printable, and cut at 300 bytes.
pub fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(300)];
    let mut s = String::from_utf8_lossy(cut).escape_debug().to_string();
    if b.len() > 300 {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_are_split_by_their_framing() {
        let input = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                      POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                      2;e=1\r\nhe\r\n3\r\nllo\r\n0\r\nT: v\r\n\r\n\
                      GET /c HTTP/1.0\r\n\r\n\r\n";
        let w = walk(input);
        assert!(w.complete);
        let got: Vec<_> = w.requests.iter().map(|r| (r.target.clone(), r.body.clone())).collect();
        assert_eq!(
            got,
            vec![(b"/a".to_vec(), b"abc".to_vec()), (b"/b".to_vec(), b"hello".to_vec()), (b"/c".to_vec(), vec![])]
        );
        assert_eq!(w.requests[2].version, 0);
    }

    #[test]
    fn anything_ambiguous_stops_the_walk() {
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            let w = walk(bad);
            assert!(w.requests.is_empty() && !w.complete, "{}", show(bad));
        }
    }

    #[test]
    fn chunked_extensions_allow_bws_before_the_semicolon_only() {
        assert_eq!(chunked_body(b"1 ;x\r\na\r\n0\r\n\r\n"), Ok((b"a".to_vec(), 14)));
        assert!(matches!(chunked_body(b"1 \r\na\r\n0\r\n\r\n"), Err(ChunkError::Invalid(_))));
        assert_eq!(chunked_body(b"1\r\na\r\n0\r\n"), Err(ChunkError::Incomplete));
    }

    #[test]
    fn response_heads() {
        let r =
            response_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, Close\r\n\r\nhi").unwrap();
        assert_eq!((r.version, r.status, r.len), (1, 200, 69));
        assert_eq!(r.content_length(), Ok(Some(2)));
        assert!(r.closes());
        assert!(response_head(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
