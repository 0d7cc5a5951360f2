//! Response assembly shared by every path: the fixed error replies the core answers by itself
//! (400/413/414/431/500/503) and the headers rsgi adds (`Server`). Never touches Python.

use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, SERVER};
use http::{HeaderMap, HeaderName};
use http::{Response, StatusCode};

use super::body::ResponseBody;

pub const SERVER_NAME: HeaderValue = HeaderValue::from_static("rsgi");

/// A short plain-text reply produced by the core itself. `close` asks hyper to end the
/// connection after it, which every protocol-level error does: the rest of the stream can no
/// longer be trusted to be framed correctly.
pub fn plain(status: StatusCode, close: bool) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {}\n", status.as_u16(), reason);
    let mut resp = Response::new(ResponseBody::full(body.clone()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A complete body's length is known exactly, so it wins over what the app declared. A
/// mismatch is an app bug worth a warning; HEAD keeps the app's value (the body is dropped).
pub fn set_length(headers: &mut HeaderMap, len: usize) {
    if let Some(declared) = headers.get(CONTENT_LENGTH) {
        if declared.to_str().ok().and_then(|v| v.parse::<usize>().ok()) == Some(len) {
            return;
        }
        if len > 0 {
            log::warn!("the app's Content-Length ({declared:?}) differs from its body ({len} bytes); sending {len}");
        } else {
            return; // an empty body with a declared length: HEAD-style responses keep it
        }
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// Adds the `--header` defaults and the headers the server owns, each unless the response
/// already has it (or it is turned off): a `--header server:NAME` therefore replaces ours.
pub fn finish(resp: &mut Response<ResponseBody>, server_header: bool, defaults: &[(HeaderName, HeaderValue)]) {
    for (name, value) in defaults {
        if !resp.headers().contains_key(name) {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if server_header && !resp.headers().contains_key(SERVER) {
        resp.headers_mut().insert(SERVER, SERVER_NAME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(headers: &HeaderMap) -> Option<&str> {
        headers.get(CONTENT_LENGTH).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn length_is_added_when_missing() {
        let mut h = HeaderMap::new();
        set_length(&mut h, 13);
        assert_eq!(length(&h), Some("13"));
    }

    #[test]
    fn a_wrong_declared_length_is_corrected() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from(99));
        set_length(&mut h, 13);
        assert_eq!(length(&h), Some("13"));
    }

    #[test]
    fn an_empty_body_keeps_the_declared_length() {
        // HEAD-style: the app declares the GET length and sends nothing.
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from(42));
        set_length(&mut h, 0);
        assert_eq!(length(&h), Some("42"));
    }

    #[test]
    fn plain_replies_say_their_status_and_may_close() {
        let r = plain(StatusCode::PAYLOAD_TOO_LARGE, true);
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.headers()[CONTENT_LENGTH], "22");
        assert!(!plain(StatusCode::BAD_REQUEST, false).headers().contains_key(CONNECTION));
    }

    #[test]
    fn server_header_is_added_unless_set_or_disabled() {
        let mut r = plain(StatusCode::OK, false);
        finish(&mut r, true, &[]);
        assert_eq!(r.headers()[SERVER], "rsgi");
        let mut r = plain(StatusCode::OK, false);
        r.headers_mut().insert(SERVER, HeaderValue::from_static("app"));
        finish(&mut r, true, &[]);
        assert_eq!(r.headers()[SERVER], "app");
        let mut r = plain(StatusCode::OK, false);
        finish(&mut r, false, &[]);
        assert!(!r.headers().contains_key(SERVER));
    }

    #[test]
    fn default_headers_fill_what_the_response_lacks_and_may_name_the_server() {
        let defaults = [
            (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (SERVER, HeaderValue::from_static("edge")),
        ];
        let mut r = plain(StatusCode::OK, false);
        finish(&mut r, true, &defaults);
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8", "the response's own header wins");
        assert_eq!(r.headers()[SERVER], "edge", "--header server:NAME replaces rsgi's");
        assert_eq!(r.headers().get_all(SERVER).iter().count(), 1);
    }
}
