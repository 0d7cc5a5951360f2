//! `--proxy-protocol`: the PROXY header (HAProxy's v1 text line or v2 binary block) a load
//! balancer writes before anything else on a connection. Read in the connection's own task, before
//! TLS and HTTP; its client address replaces the socket peer. Never touches Python.
//!
//! Parsing is `proxy-header` (crates.io): it decodes both versions from a buffer, says whether
//! more bytes are needed or the header is invalid, and how many bytes the header took, has no
//! dependencies, and takes v1, v2 or both (gunicorn's `--proxy-protocol v1|v2|auto`). `ppp` was
//! the other candidate; it tells "incomplete" from "invalid" less directly and brings `thiserror`.
//! Every input is safe to feed it: the tests below run it over truncations and corruptions of
//! valid headers and random bytes.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use proxy_header::{ParseConfig, Protocol, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::detect::Rewind;
use super::request::{ConnInfo, Peer};
use crate::config::{ProxyProtocolSettings, ProxyVersions};

/// A v1 header is one line of at most 107 bytes (CRLF included); v2 is 16 bytes and a length.
const V1_START: &[u8] = b"PROXY ";
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";
/// The longest v2 header: the 16 fixed bytes and a 16-bit length.
const V2_MAX: usize = 16 + u16::MAX as usize;
/// Enough for any v1 header and a v2 header with the TLVs HAProxy adds (SSL, unique id, ALPN).
const FIRST_READ: usize = 512;

/// Why a connection was closed before HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The socket peer is not in the allow list (`--proxy-allow-from`, else
    /// `--forwarded-allow-ips`); nothing was read.
    Untrusted,
    /// The first bytes are not a PROXY header of an allowed version (a client speaking HTTP or TLS
    /// straight away, a v1 line that is too long, a bad address, a v2 block with bad fields).
    Malformed,
    /// Part of a header, then the peer closed, or nothing more within the timeout.
    Truncated,
    /// Nothing at all before the peer closed or the timeout (a TCP health check, an idle port
    /// probe): not counted as a refusal.
    Silent,
}

impl Refused {
    /// Counted in `rsgi_requests_refused_total{reason="proxy_protocol"}`: every refusal but a
    /// connection that never said anything.
    pub fn counts(&self) -> bool {
        *self != Refused::Silent
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Untrusted => "a PROXY protocol header is not accepted from this peer",
            Refused::Malformed => "no valid PROXY protocol header",
            Refused::Truncated => "the PROXY protocol header was cut short",
            Refused::Silent => "nothing was sent",
        })
    }
}

/// Reads the PROXY header from `io` within `timeout` and returns the connection with the bytes
/// that followed the header put back in front of it (they are the TLS or HTTP start, read in the
/// same `read` as the header), and `info` with the client address. `LOCAL` (v2), `UNKNOWN` (v1)
/// and addresses that are not IP keep the socket peer. No input makes this wait longer than
/// `timeout` or buffer more than one v2 header.
pub async fn accept<I: AsyncRead + Unpin>(
    mut io: I,
    mut info: ConnInfo,
    settings: &ProxyProtocolSettings,
    timeout: Duration,
) -> Result<(Rewind<I>, ConnInfo), Refused> {
    if !super::proxy::trusts(&settings.allow, &info.remote) {
        return Err(Refused::Untrusted);
    }
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let read = async {
        loop {
            match parse(&buf, settings.versions) {
                Parse::Done(client, len) => return Ok((client, len)),
                Parse::Invalid => return Err(Refused::Malformed),
                Parse::More => {}
            }
            if buf.len() >= V2_MAX {
                return Err(Refused::Malformed); // unreachable: a v2 length is at most this
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(if buf.is_empty() { Refused::Silent } else { Refused::Truncated }),
                Ok(_) => {}
            }
        }
    };
    let (client, len) = match tokio::time::timeout(timeout, read).await {
        Ok(done) => done?,
        Err(_) => return Err(if buf.is_empty() { Refused::Silent } else { Refused::Truncated }),
    };
    if let Some(client) = client {
        info.remote = Peer::Tcp(client);
    }
    let rest = buf.split_off(len.min(buf.len())).freeze();
    Ok((Rewind::replaying(rest, io), info))
}

enum Parse {
    /// A whole header: the client it names (None: keep the socket peer) and its length in bytes.
    Done(Option<SocketAddr>, usize),
    Invalid,
    More,
}

fn parse(buf: &[u8], versions: ProxyVersions) -> Parse {
    let (v1, v2) = match versions {
        ProxyVersions::Both => (true, true),
        ProxyVersions::V1 => (true, false),
        ProxyVersions::V2 => (false, true),
    };
    // The crate waits for 15 or 16 bytes before it looks at them; a client that sends a short
    // HTTP request line and waits is told apart here, on its first byte that cannot start a header.
    let starts = |sig: &[u8]| buf.iter().zip(sig).all(|(a, b)| a == b);
    if !((v1 && starts(V1_START)) || (v2 && starts(V2_SIGNATURE))) {
        return Parse::Invalid;
    }
    let config = ParseConfig { include_tlvs: false, allow_v1: v1, allow_v2: v2 };
    match ProxyHeader::parse(buf, config) {
        // The crate enforces 107 bytes only while a line is incomplete; an `UNKNOWN` line that
        // arrived whole in one read could be longer.
        Ok((_, len)) if buf.starts_with(V1_START) && len > V1_MAX => Parse::Invalid,
        Ok((header, len)) => match header.proxied_address() {
            None => Parse::Done(None, len),
            Some(addr) if addr.protocol == Protocol::Stream => Parse::Done(Some(addr.source), len),
            // A TCP connection cannot carry a proxied UDP flow.
            Some(_) => Parse::Invalid,
        },
        Err(proxy_header::Error::BufferTooShort) => Parse::More,
        Err(_) => Parse::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrustedProxies;
    use tokio::io::AsyncWriteExt;

    fn settings(versions: ProxyVersions, allow: &str) -> ProxyProtocolSettings {
        ProxyProtocolSettings { versions, allow: TrustedProxies::parse(allow).unwrap() }
    }

    fn conn(peer: &str) -> ConnInfo {
        ConnInfo {
            remote: Peer::Tcp(peer.parse().unwrap()),
            local: Peer::Tcp("127.0.0.1:8000".parse().unwrap()),
            scheme: "http",
            place: None,
        }
    }

    /// A v2 header built by hand (not by the crate under test): PROXY or LOCAL, TCP over IPv4.
    fn v2_tcp4(command: u8, src: [u8; 4], sport: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend([0x20 | command, 0x11]);
        out.extend(u16::try_from(12 + tlvs.len()).unwrap().to_be_bytes());
        out.extend(src);
        out.extend([10, 0, 0, 1]);
        out.extend(sport.to_be_bytes());
        out.extend(443u16.to_be_bytes());
        out.extend(tlvs);
        out
    }

    async fn run(input: Vec<u8>, versions: ProxyVersions) -> Result<(String, Vec<u8>), Refused> {
        let (mut client, server) = tokio::io::duplex(1 << 17);
        client.write_all(&input).await.unwrap();
        drop(client);
        let (mut io, info) =
            accept(server, conn("127.0.0.1:5000"), &settings(versions, "127.0.0.1"), Duration::from_secs(1)).await?;
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        let remote = match info.remote {
            Peer::Tcp(a) => a.to_string(),
            Peer::Unix => "unix".into(),
        };
        Ok((remote, rest))
    }

    #[tokio::test]
    async fn v1_and_v2_set_the_client_and_keep_what_follows() {
        let got = run(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n".to_vec(), ProxyVersions::Both);
        assert_eq!(got.await, Ok(("203.0.113.7:56324".into(), b"GET / HTTP/1.1\r\n".to_vec())));
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n\x16\x03\x01".to_vec();
        assert_eq!(run(line, ProxyVersions::V1).await, Ok(("[2001:db8::7]:4711".into(), b"\x16\x03\x01".to_vec())));
        let mut v2 = v2_tcp4(1, [198, 51, 100, 9], 40000, &[0x04, 0, 3, 0, 0, 0]);
        v2.extend(b"PRI * HTTP/2.0");
        assert_eq!(run(v2, ProxyVersions::V2).await, Ok(("198.51.100.9:40000".into(), b"PRI * HTTP/2.0".to_vec())));
    }

    #[tokio::test]
    async fn local_and_unknown_keep_the_socket_peer() {
        let local = v2_tcp4(0, [198, 51, 100, 9], 40000, &[]);
        assert_eq!(run(local, ProxyVersions::Both).await, Ok(("127.0.0.1:5000".into(), vec![])));
        let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX".to_vec();
        assert_eq!(run(unknown, ProxyVersions::Both).await, Ok(("127.0.0.1:5000".into(), b"X".to_vec())));
    }

    #[tokio::test]
    async fn refusals() {
        let cases: &[(&[u8], ProxyVersions, Refused)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ProxyVersions::Both, Refused::Malformed),
            (b"PUT", ProxyVersions::Both, Refused::Malformed),
            (b"\x16\x03\x01\x02\x00\x01", ProxyVersions::Both, Refused::Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyVersions::V2, Refused::Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyVersions::Both, Refused::Truncated),
            (b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", ProxyVersions::Both, Refused::Malformed),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n", ProxyVersions::Both, Refused::Malformed),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyVersions::Both, Refused::Malformed),
            (b"PROXY TCP4 1.2.3.4", ProxyVersions::Both, Refused::Truncated),
            (b"\r\n\r\n\x00\r\nQU", ProxyVersions::Both, Refused::Truncated),
            (b"", ProxyVersions::Both, Refused::Silent),
        ];
        for (input, versions, want) in cases {
            assert_eq!(run(input.to_vec(), *versions).await.err(), Some(*want), "{}", input.escape_ascii());
        }
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(120));
        assert_eq!(run(long.into_bytes(), ProxyVersions::Both).await.unwrap_err(), Refused::Malformed);
        let v2 = v2_tcp4(1, [1, 2, 3, 4], 1, &[]);
        assert_eq!(run(v2.clone(), ProxyVersions::V1).await.unwrap_err(), Refused::Malformed);
        let mut udp = v2.clone();
        udp[13] = 0x12;
        assert_eq!(run(udp, ProxyVersions::Both).await.unwrap_err(), Refused::Malformed);
        let mut v3 = v2.clone();
        v3[12] = 0x31;
        assert_eq!(run(v3, ProxyVersions::Both).await.unwrap_err(), Refused::Malformed);
        let mut short_len = v2;
        short_len[15] = 4; // a length too short for two IPv4 addresses and ports
        assert_eq!(run(short_len, ProxyVersions::Both).await.unwrap_err(), Refused::Malformed);
    }

    #[tokio::test]
    async fn an_untrusted_peer_is_refused_before_anything_is_read() {
        let (_client, server) = tokio::io::duplex(64);
        let s = settings(ProxyVersions::Both, "10.0.0.0/8");
        let got = accept(server, conn("192.0.2.1:5000"), &s, Duration::from_secs(5)).await;
        assert_eq!(got.err(), Some(Refused::Untrusted));
        let unix = ConnInfo { remote: Peer::Unix, local: Peer::Unix, scheme: "http", place: None };
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n").await.unwrap();
        let (_, info) = accept(server, unix, &s, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(info.remote, Peer::Tcp(a) if a.to_string() == "1.2.3.4:1"), "a Unix peer is trusted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_that_never_completes_is_timed_out() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PROXY TCP4 ").await.unwrap();
        let s = settings(ProxyVersions::Both, "*");
        let got = accept(server, conn("127.0.0.1:1"), &s, Duration::from_secs(5)).await;
        assert_eq!(got.err(), Some(Refused::Truncated));
        let (_client, server) = tokio::io::duplex(64);
        let got = accept(server, conn("127.0.0.1:1"), &s, Duration::from_secs(5)).await;
        assert_eq!(got.err(), Some(Refused::Silent));
    }

    /// Every prefix of valid headers, each with every byte replaced by a few values, and a run of
    /// pseudo-random buffers: the parser answers each without panicking.
    #[test]
    fn no_input_panics_the_parser() {
        let mut samples = vec![
            b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_tcp4(1, [1, 2, 3, 4], 5, &[0x01, 0, 2, b'h', b'2']),
        ];
        let mut v2_6 = V2_SIGNATURE.to_vec();
        v2_6.extend([0x21, 0x21, 0, 36]);
        v2_6.extend([7; 36]);
        samples.push(v2_6);
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend([0x21, 0x31, 0, 216]);
        unix.extend([0; 216]);
        samples.push(unix);
        for sample in &samples {
            for end in 0..=sample.len() {
                for at in 0..end {
                    for byte in [0u8, 0x0a, 0x0d, 0x20, 0xff, b'9', b':'] {
                        let mut b = sample[..end].to_vec();
                        b[at] = byte;
                        for v in [ProxyVersions::Both, ProxyVersions::V1, ProxyVersions::V2] {
                            let _ = parse(&b, v);
                        }
                    }
                }
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut b = if x & 1 == 0 { V2_SIGNATURE.to_vec() } else { V1_START.to_vec() };
            for _ in 0..(x % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let _ = parse(&b, ProxyVersions::Both);
        }
    }
}
