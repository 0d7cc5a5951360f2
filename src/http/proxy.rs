//! Proxy headers: when the peer is a trusted proxy (`--forwarded-allow-ips`), the client
//! address, scheme, host and port it reports (RFC 7239 `Forwarded`, else `X-Forwarded-*`)
//! replace the connection's own. From anyone else they are left to the app, never trusted.

use std::net::{IpAddr, SocketAddr};

use crate::config::TrustedProxies;
use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Uri};

use super::request::{ConnInfo, Peer};

/// A Unix-socket peer is a process on this machine (the usual nginx → socket setup), so it is
/// trusted like loopback.
pub(super) fn trusts(trusted: &TrustedProxies, peer: &Peer) -> bool {
    match peer {
        Peer::Tcp(a) => trusted.contains(a.ip()),
        Peer::Unix => true,
    }
}

/// What a trusted proxy said about the original request.
#[derive(Default, Debug, PartialEq)]
struct Forwarded {
    /// Client addresses, nearest proxy last.
    chain: Vec<String>,
    proto: Option<String>,
    host: Option<String>,
    port: Option<u16>,
}

/// The connection facts for one request: `conn` itself, or a copy corrected by the proxy's
/// headers. A forwarded host replaces the request's `Host` header, and the target's authority
/// when it has one (HTTP/2's `:authority`, HTTP/1 absolute-form), which the bridges prefer.
pub fn apply(trusted: &TrustedProxies, conn: &ConnInfo, uri: &mut Uri, headers: &mut HeaderMap) -> Option<ConnInfo> {
    if !trusts(trusted, &conn.remote) {
        return None;
    }
    let fwd = read(headers)?;
    let mut out = conn.clone();
    // The client is the nearest address in the chain that is not itself a trusted proxy (the
    // ones further left could have been written by anyone); all trusted: the leftmost.
    let addrs: Vec<SocketAddr> = fwd.chain.iter().filter_map(|a| parse_node(a)).collect();
    if let Some(client) = addrs.iter().rev().find(|a| !trusted.contains(a.ip())).or(addrs.first()) {
        out.remote = Peer::Tcp(*client);
    }
    match fwd.proto.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("https" | "wss") => out.scheme = "https",
        Some("http" | "ws") => out.scheme = "http",
        _ => {}
    }
    if let Some(host) = fwd.host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        if uri.authority().is_some() {
            let mut parts = std::mem::take(uri).into_parts();
            let original = parts.authority.clone();
            parts.authority = host.to_str().ok().and_then(|h| h.parse::<Authority>().ok()).or(original);
            *uri = Uri::from_parts(parts).unwrap_or_default();
        }
        headers.insert(HOST, host);
    }
    if let Some(port) = fwd.port {
        // Behind a proxy on a Unix socket there is no local port of our own: the forwarded one
        // is the only one the app can know (SERVER_PORT), reported on loopback.
        let ip = match out.local {
            Peer::Tcp(a) => a.ip(),
            Peer::Unix => IpAddr::from([127, 0, 0, 1]),
        };
        out.local = Peer::Tcp(SocketAddr::new(ip, port));
    }
    Some(out)
}

/// `Forwarded` when present (the standard), otherwise the `X-Forwarded-*` family.
fn read(headers: &HeaderMap) -> Option<Forwarded> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        return Some(parse_forwarded(&forwarded.join(",")));
    }
    let list = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let fwd = Forwarded {
        chain: list("x-forwarded-for"),
        // With several proxies each may append: the last value is the nearest (trusted) one's.
        proto: list("x-forwarded-proto").pop(),
        host: list("x-forwarded-host").pop(),
        port: list("x-forwarded-port").pop().and_then(|p| p.parse().ok()),
    };
    (fwd != Forwarded::default()).then_some(fwd)
}

/// RFC 7239: `for=192.0.2.60;proto=https;host=example.com, for="[2001:db8::1]:4711"`.
/// Parameters of the last element (the nearest proxy) win for proto and host.
fn parse_forwarded(value: &str) -> Forwarded {
    let mut out = Forwarded::default();
    for element in value.split(',') {
        for pair in element.split(';') {
            let Some((key, val)) = pair.split_once('=') else { continue };
            let val = val.trim().trim_matches('"').to_owned();
            match key.trim().to_ascii_lowercase().as_str() {
                "for" => out.chain.push(val),
                "proto" => out.proto = Some(val),
                "host" => out.host = Some(val),
                _ => {}
            }
        }
    }
    out
}

/// A node (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`) as an address; port 0 when not given.
/// Obfuscated identifiers (`_hidden`, `unknown`) are not addresses.
fn parse_node(node: &str) -> Option<SocketAddr> {
    if let Ok(a) = node.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = node.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(remote: &str) -> ConnInfo {
        ConnInfo {
            remote: Peer::Tcp(remote.parse().unwrap()),
            local: Peer::Tcp("127.0.0.1:8000".parse().unwrap()),
            scheme: "http",
            place: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn remote(c: &ConnInfo) -> String {
        match c.remote {
            Peer::Tcp(a) => a.to_string(),
            Peer::Unix => "unix".into(),
        }
    }

    #[test]
    fn untrusted_peers_change_nothing() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let mut h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        assert!(apply(&t, &conn("10.0.0.9:5000"), &mut Uri::default(), &mut h).is_none());
    }

    #[test]
    fn x_forwarded_family_from_a_trusted_proxy() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let mut h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "example.com"),
            ("x-forwarded-port", "443"),
            ("host", "backend"),
        ]);
        let c = apply(&t, &conn("127.0.0.1:5000"), &mut Uri::default(), &mut h).unwrap();
        // 10.0.0.2 is a trusted proxy; 1.2.3.4 is the nearest untrusted hop; 6.6.6.6 is spoofable.
        assert_eq!(remote(&c), "1.2.3.4:0");
        assert_eq!(c.scheme, "https");
        assert_eq!(h.get(HOST).unwrap(), "example.com");
        assert!(matches!(c.local, Peer::Tcp(a) if a.port() == 443));
    }

    #[test]
    fn forwarded_header_wins_and_handles_ipv6_and_quotes() {
        let t = TrustedProxies::parse("*").unwrap();
        let mut h = headers(&[
            ("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=shop.example"),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let c = apply(&t, &conn("10.1.1.1:5000"), &mut Uri::default(), &mut h).unwrap();
        assert_eq!(remote(&c), "[2001:db8:cafe::17]:4711");
        assert_eq!(c.scheme, "https");
        assert_eq!(h.get(HOST).unwrap(), "shop.example");
    }

    #[test]
    fn a_forwarded_host_replaces_the_authority_of_an_absolute_target() {
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        let mut h = headers(&[("x-forwarded-host", "public.example")]);
        let mut uri: Uri = "http://backend.internal/a?b=1".parse().unwrap();
        apply(&t, &conn("127.0.0.1:5000"), &mut uri, &mut h).unwrap();
        assert_eq!(uri.to_string(), "http://public.example/a?b=1");
        assert_eq!(h.get(HOST).unwrap(), "public.example");
    }

    #[test]
    fn obfuscated_nodes_keep_the_peer() {
        let t = TrustedProxies::parse("*").unwrap();
        let mut h = headers(&[("forwarded", "for=_hidden;proto=http")]);
        let c = apply(&t, &conn("10.1.1.1:5000"), &mut Uri::default(), &mut h).unwrap();
        assert_eq!(remote(&c), "10.1.1.1:5000");
    }

    #[test]
    fn bad_lists_are_errors() {
        assert!(TrustedProxies::parse("127.0.0.1, nonsense").is_err());
        assert!(!TrustedProxies::parse("").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(TrustedProxies::parse("127.0.0.1").unwrap().contains("::ffff:127.0.0.1".parse().unwrap()));
    }
}
