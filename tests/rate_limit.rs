//! `--limit-rate` end to end over real sockets, against the real HTTP core with the stub app
//! (`support::stub`, whose responses carry a mark the core's own never do): the burst then 429 with
//! `Retry-After` (never reaching the app), the refill, independent clients told apart by trusted
//! `X-Forwarded-For` from 127.0.0.1 (and not by an untrusted one), IPv6 per /64, the path scope
//! (percent-decoded), what never counts (the health path, static files), the table's bound under
//! spoofed-address floods (over sockets, and 200k addresses against the limiter itself), and no
//! panic on odd input. The metric and a real client through a WSGI worker: tests/test_rate_limit.py.

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use _rsgi::config::{RateLimitSettings, ServerConfig};
use _rsgi::http::rate_limit::{Client, RateLimiter};
use pyo3::prelude::*;

use support::client::{assert_serves, get, Conn, Response};
use support::stub::{self, start};

/// The core view of `rsgi APP` with these settings, as Python builds it (the `N/s` parsing and
/// the burst's default are Python's). `limit_rate_path`, a list, is given one prefix.
fn config(flags: &[(&str, &str)]) -> ServerConfig {
    support::config_from(|dict| {
        flags.iter().try_for_each(|(k, v)| match *k {
            "limit_rate_path" => dict.set_item(*k, vec![*v]),
            _ => dict.set_item(*k, *v),
        })
    })
}

/// `GET path` on `conn` (kept alive), as the client `client` behind the trusted proxy 127.0.0.1.
fn ask(conn: &mut Conn, path: &str, client: &str) -> Response {
    conn.send(&get(path, &format!("X-Forwarded-For: {client}\r\n")));
    conn.response()
}

fn assert_limited(resp: &Response) -> u64 {
    assert_eq!(resp.status, 429, "{}", resp.head_text());
    assert!(!resp.answered_by_app(), "a refused request reached the app");
    assert_eq!(resp.body, b"429 Too Many Requests\n");
    let wait: u64 = resp.header("retry-after").expect("no Retry-After").parse().unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    wait
}

fn assert_passed(resp: &Response) {
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    assert!(resp.answered_by_app());
}

#[test]
fn the_burst_passes_then_429_with_retry_after_on_an_open_connection() {
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "3")]));
    let mut conn = Conn::open(srv.port);
    for _ in 0..3 {
        assert_passed(&ask(&mut conn, "/a", "203.0.113.1"));
    }
    // One request a minute: the next one is due in (just under) 60 s, rounded up.
    assert_eq!(assert_limited(&ask(&mut conn, "/a", "203.0.113.1")), 60);
    assert_eq!(assert_limited(&ask(&mut conn, "/a", "203.0.113.1")), 60);
    // A refusal without a body keeps the connection: the client may wait and retry on it.
    conn.assert_open();
    assert_eq!(stub::io_panics(), 0);
}

#[test]
fn a_refused_request_with_a_body_closes_its_connection() {
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "1")]));
    let mut conn = Conn::open(srv.port);
    assert_passed(&ask(&mut conn, "/a", "203.0.113.2"));
    conn.send(b"POST /a HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 203.0.113.2\r\nContent-Length: 5\r\n\r\nhello");
    let resp = conn.response();
    assert_limited(&resp);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(conn.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn the_bucket_refills_at_the_rate() {
    // 20/s with no burst beyond one: one request every 50 ms.
    let srv = start(config(&[("limit_rate", "20/s"), ("limit_burst", "1")]));
    let mut conn = Conn::open(srv.port);
    assert_passed(&ask(&mut conn, "/", "203.0.113.3"));
    assert_eq!(assert_limited(&ask(&mut conn, "/", "203.0.113.3")), 1);
    std::thread::sleep(Duration::from_millis(60));
    assert_passed(&ask(&mut conn, "/", "203.0.113.3"));
    assert_limited(&ask(&mut conn, "/", "203.0.113.3"));
    // The default burst is N: twenty at once after a full refill (one second).
    let srv = start(config(&[("limit_rate", "20/s")]));
    let mut conn = Conn::open(srv.port);
    for _ in 0..20 {
        assert_passed(&ask(&mut conn, "/", "203.0.113.3"));
    }
    assert_limited(&ask(&mut conn, "/", "203.0.113.3"));
}

#[test]
fn client_addresses_are_limited_independently() {
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "2")]));
    let mut conn = Conn::open(srv.port);
    for _ in 0..2 {
        assert_passed(&ask(&mut conn, "/", "198.51.100.1"));
    }
    assert_limited(&ask(&mut conn, "/", "198.51.100.1"));
    // Another client on the same connection (the proxy's), and on its own.
    assert_passed(&ask(&mut conn, "/", "198.51.100.2"));
    let mut other = Conn::open(srv.port);
    assert_passed(&ask(&mut other, "/", "198.51.100.2"));
    assert_limited(&ask(&mut other, "/", "198.51.100.2"));
    assert_limited(&ask(&mut conn, "/", "198.51.100.1"));
    // The proxy itself (no X-Forwarded-For) is one more client.
    conn.send(&get("/", ""));
    assert_passed(&conn.response());
}

#[test]
fn an_untrusted_peer_cannot_pick_its_address() {
    // 127.0.0.1 is not a trusted proxy here: its X-Forwarded-For is the app's business, and the
    // limit applies to 127.0.0.1 whatever it claims.
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "2"), ("forwarded_allow_ips", "10.0.0.0/8")]));
    let mut conn = Conn::open(srv.port);
    assert_passed(&ask(&mut conn, "/", "192.0.2.1"));
    assert_passed(&ask(&mut conn, "/", "192.0.2.2"));
    assert_limited(&ask(&mut conn, "/", "192.0.2.3"));
}

#[test]
fn ipv6_clients_are_limited_per_64() {
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "2")]));
    let mut conn = Conn::open(srv.port);
    assert_passed(&ask(&mut conn, "/", "2001:db8:1:2::1"));
    assert_passed(&ask(&mut conn, "/", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:443"));
    // Any other address of the same /64 is the same client.
    assert_limited(&ask(&mut conn, "/", "2001:db8:1:2:abcd::7"));
    // The next /64 is another.
    assert_passed(&ask(&mut conn, "/", "2001:db8:1:3::1"));
    // An IPv4-mapped address is its IPv4 address.
    assert_passed(&ask(&mut conn, "/", "192.0.2.7"));
    assert_passed(&ask(&mut conn, "/", "::ffff:192.0.2.7"));
    assert_limited(&ask(&mut conn, "/", "192.0.2.7"));
}

#[test]
fn only_the_listed_prefixes_count() {
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "2"), ("limit_rate_path", "/api/")]));
    let mut conn = Conn::open(srv.port);
    assert_passed(&ask(&mut conn, "/api/users", "192.0.2.10"));
    // Percent-encoding does not get around it: the app would route this to /api/ too.
    assert_passed(&ask(&mut conn, "/%61pi/users", "192.0.2.10"));
    assert_limited(&ask(&mut conn, "/api/", "192.0.2.10"));
    for _ in 0..10 {
        assert_passed(&ask(&mut conn, "/pages/", "192.0.2.10"));
        assert_passed(&ask(&mut conn, "/api", "192.0.2.10"));
    }
    assert_limited(&ask(&mut conn, "/api/users?page=2", "192.0.2.10"));
}

#[test]
fn the_health_path_and_static_files_never_count() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.css"), "body{}").unwrap();
    let cfg = ServerConfig {
        static_mounts: vec![("/static".into(), dir.path().to_str().unwrap().into())],
        ..config(&[("limit_rate", "1/m"), ("limit_burst", "1"), ("health_path", "/-/health")])
    };
    let srv = start(cfg);
    let mut conn = Conn::open(srv.port);
    for _ in 0..5 {
        let health = ask(&mut conn, "/-/health", "192.0.2.20");
        assert_eq!((health.status, health.answered_by_app()), (200, false));
        let file = ask(&mut conn, "/static/app.css", "192.0.2.20");
        assert_eq!((file.status, file.body.as_slice()), (200, &b"body{}"[..]));
        // A missing file under a mount is the core's 404, not the app's: not counted either.
        assert_eq!(ask(&mut conn, "/static/missing.css", "192.0.2.20").status, 404);
    }
    assert_passed(&ask(&mut conn, "/page", "192.0.2.20"));
    assert_limited(&ask(&mut conn, "/page", "192.0.2.20"));
}

#[test]
fn a_spoofed_address_flood_stays_within_the_cap() {
    // Behind a proxy trusted to say anything: every request claims a new address. Pipelined, 500
    // to a write; each is a new client, so every one passes, and the table never outgrows its cap.
    let cap = 1000;
    let srv = start(config(&[("limit_rate", "1/m"), ("limit_burst", "1"), ("limit_rate_keys", "1000")]));
    let mut conn = Conn::open(srv.port);
    let mut n = 0u32;
    for _ in 0..20 {
        let mut batch = Vec::new();
        for _ in 0..500 {
            n += 1;
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n);
            batch.extend(get("/", &format!("X-Forwarded-For: {ip}\r\n")));
        }
        conn.send(&batch);
        for _ in 0..500 {
            assert_passed(&conn.response());
        }
        assert!(srv.server.rate_limited_clients() <= cap, "{} clients tracked", srv.server.rate_limited_clients());
    }
    assert!(srv.server.rate_limited_clients() > 0);
    // A flood never gets a real client refused: at worst it is forgotten, with a fresh bucket.
    assert_passed(&ask(&mut conn, "/", "192.0.2.30"));
    assert_limited(&ask(&mut conn, "/", "192.0.2.30"));
}

#[test]
fn the_limiter_holds_200k_spoofed_addresses_to_its_cap() {
    let cap = 100_000;
    // One a second, ten at once: a client that used its burst is limited for nine seconds, while
    // each spoofed address's bucket is full again a second after its one request.
    let settings =
        RateLimitSettings { requests: 1, period: Duration::from_secs(1), burst: 10, paths: Vec::new(), max_keys: cap };
    let limiter = RateLimiter::new(&settings);
    let t0 = Instant::now();
    // A client that used its whole burst: the flood must not make the table forget it.
    let heavy = Client::from_ip("198.51.100.1".parse().unwrap());
    for _ in 0..10 {
        limiter.check(heavy, t0).unwrap();
    }
    for i in 0..200_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        assert_eq!(limiter.check(Client::from_ip(ip.into()), t0 + Duration::from_micros(i.into())), Ok(()));
        if i % 997 == 0 {
            assert!(limiter.tracked() <= cap, "{} clients tracked", limiter.tracked());
        }
    }
    assert!(limiter.tracked() <= cap && limiter.tracked() > cap / 2, "{}", limiter.tracked());
    assert!(limiter.check(heavy, t0 + Duration::from_millis(500)).is_err(), "the flood reset a limited client");
    // IPv6: 200k addresses of one /64 are one client; of 200k /64s, at most the cap.
    let limiter = RateLimiter::new(&settings);
    for i in 0..200_000u128 {
        let one_net = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | i);
        let _ = limiter.check(Client::from_ip(one_net.into()), t0);
    }
    assert_eq!(limiter.tracked(), 1);
    for i in 1..=200_000u128 {
        let many_nets = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (i << 64));
        assert_eq!(limiter.check(Client::from_ip(many_nets.into()), t0), Ok(()));
    }
    assert!(limiter.tracked() <= cap);
    // Once their buckets are full again, the next requests sweep them away.
    let later = t0 + Duration::from_secs(30);
    assert!(limiter.tracked() > 1000);
    for i in 0..1000u32 {
        let _ = limiter.check(Client::V4(i), later);
    }
    assert!(limiter.tracked() <= 1000, "{} clients tracked after the flood", limiter.tracked());
}

#[test]
fn no_input_panics() {
    let srv = start(config(&[("limit_rate", "5/s"), ("limit_rate_path", "/a/")]));
    let odd = [
        "",
        "unknown",
        "_hidden",
        "::",
        "0.0.0.0",
        "255.255.255.255",
        "[::1]:99999",
        "[",
        "]",
        "1.2.3.4:0",
        "1.2.3.4, 5.6.7.8, , ,",
        "::ffff:0:0",
        "fe80::1%eth0",
        "2001:db8::1:2:3:4:5:6:7",
        "999.1.1.1",
    ];
    for client in odd {
        let mut conn = Conn::open(srv.port);
        for path in ["/a/", "/%", "/%a", "/%zz", "/%61/", "/a/%00", "/a/%ff%fe", "/a/?x=%", "*"] {
            conn.send(&get(path, &format!("X-Forwarded-For: {client}\r\nForwarded: for=\"{client}\"\r\n")));
            let resp = conn.response();
            assert!([200, 400, 429].contains(&resp.status), "{client} {path}: {}", resp.head_text());
            if resp.header("connection") == Some("close") {
                conn = Conn::open(srv.port);
            }
        }
    }
    // A huge burst and rate, and the slowest rate with a burst of one.
    for flags in [
        [("limit_rate", "18446744073709551615/s"), ("limit_burst", "18446744073709551615")],
        [("limit_rate", "1/m"), ("limit_burst", "1")],
    ] {
        let srv = start(config(&flags));
        let mut conn = Conn::open(srv.port);
        let first = ask(&mut conn, "/", "192.0.2.40");
        assert_passed(&first);
        assert_serves(srv.port);
    }
    assert_serves(srv.port);
}
