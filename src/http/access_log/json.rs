//! `--access-log-format json`: one JSON object per response, rendered on the I/O thread that
//! finished the response (no GIL, no allocation beyond the line) and written by the log's thread.
//!
//! Escaping is written here by hand rather than with serde_json: header values and targets are
//! bytes, not UTF-8, and the scheme below is byte-wise. Each byte of a value is one character of
//! the JSON string (latin-1, as WSGI's native strings): printable ASCII as itself, `"` and `\`
//! with a backslash, `\n` `\r` `\t` short, and every other byte (control bytes, DEL, any byte
//! from 0x80 up) as `\u00XX`. The line is thus pure printable ASCII, `json.loads` reads it
//! whatever the input, and `value.encode("latin-1")` gives back the exact bytes received (a
//! UTF-8 `é` arrives as `\u00c3\u00a9`).
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{header, version, Entry};
use crate::http::request::Peer;

/// The request header whose value is logged as `request_id` (as set by proxies and by Heroku,
/// Render, nginx's `$request_id` setups).
const REQUEST_ID: &str = "x-request-id";

/// The line for one response, newline included.
pub(super) fn render(e: &Entry, sent: u64, pid: u32, now: SystemTime) -> String {
    let mut s = String::with_capacity(320);
    s.push_str("{\"time\":\"");
    push_time(&mut s, now);
    s.push_str("\",\"remote_addr\":");
    match &e.remote {
        Peer::Tcp(a) => {
            let _ = write!(s, "\"{}\"", a.ip());
        }
        Peer::Unix => s.push_str("null"),
    }
    s.push_str(",\"method\":");
    push_string(&mut s, e.method.as_str().as_bytes());
    s.push_str(",\"path\":");
    push_string(&mut s, e.uri.path().as_bytes());
    s.push_str(",\"query\":");
    push_string(&mut s, e.uri.query().unwrap_or("").as_bytes());
    let _ = write!(
        s,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes\":{sent},\"duration_us\":{}",
        version(e.version),
        e.status.as_u16(),
        e.started.elapsed().as_micros()
    );
    for (key, name) in [("referer", "referer"), ("user_agent", "user-agent"), ("request_id", REQUEST_ID)] {
        let _ = write!(s, ",\"{key}\":");
        match header(&e.request_headers, name) {
            Some(v) => push_string(&mut s, v),
            None => s.push_str("null"),
        }
    }
    let _ = write!(s, ",\"pid\":{pid}}}");
    s.push('\n');
    s
}

/// Appends `bytes` as a JSON string, one character per byte (see the module's header).
fn push_string(s: &mut String, bytes: &[u8]) {
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\u{b:04x}");
            }
        }
    }
    s.push('"');
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-01T09:30:00.123456Z` (the error log's
/// `--log-format json` writes the same shape).
fn push_time(s: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the era arithmetic of Howard
/// Hinnant's `civil_from_days`: 400-year eras of 146097 days, years starting in March).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

    use super::*;

    fn string(bytes: &[u8]) -> String {
        let mut s = String::new();
        push_string(&mut s, bytes);
        s
    }

    fn at(secs: u64, micros: u64) -> String {
        let mut s = String::new();
        push_time(&mut s, UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros));
        s
    }

    #[test]
    fn every_byte_has_one_printable_ascii_spelling() {
        for b in 0..=255u8 {
            let out = string(&[b]);
            assert!(out.bytes().all(|c| (0x20..0x7f).contains(&c)), "{b:#x} -> {out}");
            let expected = match b {
                b'"' => r#""\"""#.to_owned(),
                b'\\' => r#""\\""#.to_owned(),
                b'\n' => r#""\n""#.to_owned(),
                b'\r' => r#""\r""#.to_owned(),
                b'\t' => r#""\t""#.to_owned(),
                0x20..=0x7e => format!("\"{}\"", char::from(b)),
                _ => format!("\"\\u{b:04x}\""),
            };
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn hostile_values() {
        assert_eq!(string(b"a\"b\\c\r\nd"), r#""a\"b\\c\r\nd""#);
        assert_eq!(string(b"\x00\x1b[31m\x7f"), r#""\u0000\u001b[31m\u007f""#);
        // invalid UTF-8 and UTF-8 alike: one \u00XX per byte (latin-1), never U+FFFD
        assert_eq!(string(b"caf\xc3\xa9 \xff\xfe"), r#""caf\u00c3\u00a9 \u00ff\u00fe""#);
        assert_eq!(string(b"</script>"), r#""</script>""#);
        let long = vec![b'"'; 100_000];
        assert_eq!(string(&long).len(), 200_002);
    }

    #[test]
    fn rfc3339_utc() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_767_225_599, 999_999), "2025-12-31T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_709_164_800 + 45_296, 123_456), "2024-02-29T12:34:56.123456Z");
    }

    #[test]
    fn renders_every_field() {
        let mut req = HeaderMap::new();
        req.insert("user-agent", HeaderValue::from_bytes(b"ua \"q\" \xff").unwrap());
        req.insert("x-request-id", HeaderValue::from_static("r-1"));
        let e = Entry {
            started: Instant::now(),
            remote: Peer::Tcp("[2001:db8::1]:5555".parse().unwrap()),
            method: Method::GET,
            uri: "/a%20b?x=%22&y".parse().unwrap(),
            version: Version::HTTP_2,
            request_headers: req,
            status: StatusCode::NOT_FOUND,
            response_headers: HeaderMap::new(),
        };
        let line = render(&e, 42, 7, UNIX_EPOCH + Duration::from_secs(86_400));
        let (head, tail) = line.split_once(",\"duration_us\":").unwrap();
        assert_eq!(
            head,
            r#"{"time":"1970-01-02T00:00:00.000000Z","remote_addr":"2001:db8::1","method":"GET","path":"/a%20b","query":"x=%22&y","protocol":"HTTP/2.0","status":404,"bytes":42"#
        );
        let (micros, tail) = tail.split_once(',').unwrap();
        assert!(micros.parse::<u64>().is_ok(), "{micros}");
        assert_eq!(
            tail,
            "\"referer\":null,\"user_agent\":\"ua \\\"q\\\" \\u00ff\",\"request_id\":\"r-1\",\"pid\":7}\n"
        );
    }

    #[test]
    fn unix_peers_have_no_address() {
        let e = Entry {
            started: Instant::now(),
            remote: Peer::Unix,
            method: Method::from_bytes(b"PURGE").unwrap(),
            uri: "*".parse().unwrap(),
            version: Version::HTTP_10,
            request_headers: HeaderMap::new(),
            status: StatusCode::OK,
            response_headers: HeaderMap::new(),
        };
        let line = render(&e, 0, 1, UNIX_EPOCH);
        assert!(
            line.contains(r#""remote_addr":null,"method":"PURGE","path":"*","query":"","protocol":"HTTP/1.0""#),
            "{line}"
        );
        assert!(line.ends_with("\"referer\":null,\"user_agent\":null,\"request_id\":null,\"pid\":1}\n"), "{line}");
    }
}
