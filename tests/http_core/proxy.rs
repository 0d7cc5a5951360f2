//! Proxy headers: `Forwarded` and `X-Forwarded-*` from a trusted peer set the client address,
//! scheme, host and port the core hands the app (the stub echoes them from the job); from an
//! untrusted peer, or with `--no-proxy-headers`, they are left alone. The tests connect from
//! 127.0.0.1, which the default `--forwarded-allow-ips 127.0.0.1,::1` trusts.

use std::os::fd::AsRawFd;

use _rsgi::config::{ServerConfig, TrustedProxies};

use crate::support::client::Conn;
use crate::support::default_config;
use crate::support::echo::Echo;
use crate::support::stub::{self, start};

const XFF: &[(&str, &str)] = &[
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "public.example"),
    ("X-Forwarded-Port", "443"),
];

/// What the app is handed for `GET /environ` with these header lines, on a fresh connection.
fn seen(port: u16, headers: &[(&str, &str)]) -> Echo {
    let mut conn = Conn::open(port);
    seen_on(&mut conn, &format!("127.0.0.1:{port}"), headers)
}

fn seen_on(conn: &mut Conn, host: &str, headers: &[(&str, &str)]) -> Echo {
    let lines: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    conn.send(format!("GET /environ HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n").as_bytes());
    let resp = conn.response();
    assert_eq!(resp.status, 200);
    resp.echo()
}

fn trusting(list: &str) -> ServerConfig {
    ServerConfig { trusted_proxies: Some(TrustedProxies::parse(list).unwrap()), ..default_config() }
}

#[test]
fn without_proxy_headers_the_connection_is_what_the_app_sees() {
    let srv = start(default_config());
    let env = seen(srv.port, &[]);
    assert_eq!(env.remote_ip(), "127.0.0.1");
    assert_ne!(env.remote_port(), 0);
    assert_eq!(env.get("scheme"), "http");
    assert_eq!(env.get("host"), format!("127.0.0.1:{}", srv.port));
    assert_eq!(env.local_port(), srv.port);
}

#[test]
fn x_forwarded_headers_from_a_trusted_peer_are_applied() {
    let srv = start(default_config());
    let env = seen(srv.port, XFF);
    assert_eq!(env.remote_ip(), "203.0.113.7");
    assert_eq!(env.get("scheme"), "https");
    assert_eq!(env.get("host"), "public.example");
    assert_eq!(env.local_port(), 443);
    // The headers themselves still reach the app.
    assert_eq!(env.header1("x-forwarded-for").as_deref(), Some("203.0.113.7"));
}

#[test]
fn each_x_forwarded_header_alone() {
    let srv = start(default_config());
    let env = seen(srv.port, &[("X-Forwarded-Proto", "https")]);
    assert_eq!((env.remote_ip(), env.get("scheme")), ("127.0.0.1".into(), "https".into()));
    assert_eq!(env.get("host"), format!("127.0.0.1:{}", srv.port));
    let env = seen(srv.port, &[("X-Forwarded-Host", "only-host.example")]);
    assert_eq!((env.remote_ip(), env.get("scheme")), ("127.0.0.1".into(), "http".into()));
    assert_eq!(env.get("host"), "only-host.example");
    let env = seen(srv.port, &[("X-Forwarded-Port", "8443")]);
    assert_eq!((env.remote_ip(), env.local_port()), ("127.0.0.1".into(), 8443));
    let env = seen(srv.port, &[("X-Forwarded-For", "2001:db8::5")]);
    assert_eq!(env.remote_ip(), "2001:db8::5");
    let env = seen(srv.port, &[("X-Forwarded-For", "198.51.100.4:5555")]);
    assert_eq!((env.remote_ip(), env.remote_port()), ("198.51.100.4".into(), 5555));
}

#[test]
fn an_unparsable_forwarded_for_keeps_the_peer() {
    let srv = start(default_config());
    let env = seen(srv.port, &[("X-Forwarded-For", "not-an-address"), ("X-Forwarded-Proto", "https")]);
    assert_eq!(env.remote_ip(), "127.0.0.1");
    assert_eq!(env.get("scheme"), "https");
}

#[test]
fn rfc7239_forwarded_with_quoted_ipv6_and_port_wins_over_x_forwarded() {
    let srv = start(default_config());
    let env = seen(
        srv.port,
        &[
            ("Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=shop.example"),
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "x-forwarded.example"),
        ],
    );
    assert_eq!(env.get("remote"), "[2001:db8:cafe::17]:4711");
    assert_eq!(env.get("scheme"), "https");
    assert_eq!(env.all("host"), [b"shop.example".to_vec()]);
}

#[test]
fn forwarded_chains_and_obfuscated_nodes() {
    let srv = start(default_config());
    let env = seen(srv.port, &[("Forwarded", "for=198.51.100.9, for=192.0.2.60;proto=https")]);
    assert_eq!((env.remote_ip(), env.get("scheme")), ("192.0.2.60".into(), "https".into()));
    let env = seen(srv.port, &[("Forwarded", "for=_hidden;proto=https")]);
    assert_eq!((env.remote_ip(), env.get("scheme")), ("127.0.0.1".into(), "https".into()));
}

#[test]
fn the_client_is_the_nearest_untrusted_address_in_the_chain() {
    let srv = start(default_config());
    // 6.6.6.6 could have been written by the client itself; 1.2.3.4 was added by our proxy.
    assert_eq!(seen(srv.port, &[("X-Forwarded-For", "6.6.6.6, 1.2.3.4")]).remote_ip(), "1.2.3.4");
    // Trusted hops on the right are skipped; two header lines are one list.
    let env = seen(srv.port, &[("X-Forwarded-For", "6.6.6.6, 1.2.3.4"), ("X-Forwarded-For", "127.0.0.1")]);
    assert_eq!(env.remote_ip(), "1.2.3.4");
}

#[test]
fn the_nearest_proxy_decides_the_scheme() {
    let srv = start(default_config());
    assert_eq!(seen(srv.port, &[("X-Forwarded-Proto", "http, https")]).get("scheme"), "https");
}

#[test]
fn the_underscore_spelling_is_not_a_proxy_header() {
    let srv = start(default_config());
    assert_eq!(seen(srv.port, &[("X_Forwarded_For", "6.6.6.6")]).remote_ip(), "127.0.0.1");
}

#[test]
fn a_forwarded_host_applies_to_absolute_form_requests() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(
        b"GET http://backend.internal/environ HTTP/1.1\r\nHost: backend.internal\r\n\
          X-Forwarded-Host: public.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    let env = conn.response().echo();
    assert_eq!(env.get("scheme"), "https");
    // The target's authority, which the bridges prefer to Host, is the forwarded host too.
    assert_eq!(env.get("target"), "http://public.example/environ");
    assert_eq!(env.get("host"), "public.example");
}

#[test]
fn headers_from_an_untrusted_peer_are_ignored_and_left_to_the_app() {
    let srv = start(trusting("10.0.0.0/8"));
    let forwarded = "for=198.51.100.1;proto=https;host=f.example";
    let env = seen(srv.port, &[XFF, &[("Forwarded", forwarded)]].concat());
    assert_eq!(env.remote_ip(), "127.0.0.1");
    assert_eq!(env.get("scheme"), "http");
    assert_eq!(env.get("host"), format!("127.0.0.1:{}", srv.port));
    assert_eq!(env.local_port(), srv.port);
    assert_eq!(env.header1("x-forwarded-for").as_deref(), Some("203.0.113.7"));
    assert_eq!(env.header1("forwarded").as_deref(), Some(forwarded));
}

#[test]
fn no_proxy_headers() {
    let srv = start(ServerConfig { trusted_proxies: None, ..default_config() });
    let env = seen(srv.port, &[XFF, &[("Forwarded", "for=198.51.100.1;proto=https")]].concat());
    assert_eq!(env.remote_ip(), "127.0.0.1");
    assert_eq!(env.get("scheme"), "http");
    assert_eq!(env.get("host"), format!("127.0.0.1:{}", srv.port));
    assert_eq!(env.local_port(), srv.port);
}

#[test]
fn trusting_everyone_makes_the_leftmost_address_the_client() {
    let srv = start(trusting("*"));
    let env = seen(srv.port, &[("X-Forwarded-For", "6.6.6.6, 1.2.3.4"), ("X-Forwarded-Proto", "https")]);
    assert_eq!((env.remote_ip(), env.get("scheme")), ("6.6.6.6".into(), "https".into()));
}

#[test]
fn a_trusted_network_in_the_chain_is_skipped() {
    let srv = start(trusting("127.0.0.1, 1.2.3.0/24"));
    assert_eq!(seen(srv.port, &[("X-Forwarded-For", "6.6.6.6, 1.2.3.4")]).remote_ip(), "6.6.6.6");
}

#[test]
fn unix_socket_peers_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsgi.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (_server, _held, _release) = stub::start_on(trusting("10.0.0.0/8"), listener.as_raw_fd());
    drop(listener);
    let plain = seen_on(&mut Conn::unix(&path), "rsgi", &[]);
    assert_eq!((plain.get("remote"), plain.get("local")), ("unix".into(), "unix".into()));
    assert_eq!((plain.get("scheme"), plain.get("host")), ("http".into(), "rsgi".into()));
    let chain = [("X-Forwarded-For", "6.6.6.6, 1.2.3.4")];
    let env = seen_on(&mut Conn::unix(&path), "rsgi", &[&chain[..], &XFF[1..]].concat());
    assert_eq!(env.remote_ip(), "1.2.3.4");
    assert_eq!(env.get("scheme"), "https");
    assert_eq!(env.get("host"), "public.example");
    // No port of our own on a Unix socket: the forwarded one, reported on loopback.
    assert_eq!(env.get("local"), "127.0.0.1:443");
}
