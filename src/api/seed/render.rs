//! The seed's bodies, byte for byte: what Go's `json.Encoder` writes for a
//! `map[string]...` (keys sorted, `<`, `>`, `&`, U+2028 and U+2029
//! escaped, a trailing newline), and the seed's error statuses and
//! messages, rendered from an [`ApiError`] whose true code still travels in
//! `X-Dcache-Error`.

use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::wire::Code;

/// `value` encoded as Go's `json.NewEncoder(w).Encode(value)` would encode
/// the equivalent map: serde_json's map is ordered by key like Go's, and
/// the characters Go escapes for HTML safety only ever occur inside
/// strings, so escaping them in the output is exact.
pub fn go_json(value: &Value) -> Vec<u8> {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out.into_bytes()
}

/// A seed-route answer: `status` and a Go-encoded JSON body.
pub fn respond(status: StatusCode, value: Value) -> Response {
    let mut resp = (status, go_json(&value)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The seed's status and message for an error. `failure` is the route's
/// own 500 message ("failed to set value"), used where the seed answered
/// 500: a write whose outcome is unknown. Errors the seed never had (size
/// caps, membership checks) keep dcache's status and message.
pub fn seed_parts(err: &ApiError, failure: &str) -> (StatusCode, String) {
    let s = |code: u16| StatusCode::from_u16(code).expect("valid status");
    match err.code {
        Code::NotLeader | Code::NoLeader | Code::Unavailable => {
            (s(503), "leader not available".into())
        }
        Code::LeaderUnreachable | Code::ForwardOutcomeUnknown => {
            (s(502), "failed to contact leader".into())
        }
        Code::Timeout | Code::OutcomeUnknown | Code::Internal => (s(500), failure.into()),
        Code::KeyNotFound => (s(404), "key not found".into()),
        Code::Conflict | Code::NotFound | Code::MemberUnreachable => {
            (err.status(), format!("{failure}: {}", err.message))
        }
        _ => (err.status(), err.message.clone()),
    }
}

/// Render `err` as the seed would, with the true code in the header.
pub fn render(err: ApiError, failure: &str) -> Response {
    let (status, message) = seed_parts(&err, failure);
    let mut resp = err.respond_with(status, go_json(&serde_json::json!({ "error": message })));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_go() {
        let v = json!({ "value": "a<b>&c\u{2028}", "key": "k\n\"" });
        assert_eq!(
            String::from_utf8(go_json(&v)).unwrap(),
            "{\"key\":\"k\\n\\\"\",\"value\":\"a\\u003cb\\u003e\\u0026c\\u2028\"}\n"
        );
    }

    #[test]
    fn seed_statuses_keep_the_true_code() {
        let e = ApiError::new(Code::Timeout, "request timed out");
        assert_eq!(
            seed_parts(&e, "failed to set value"),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to set value".into()
            )
        );
        let r = render(e, "failed to set value");
        assert_eq!(
            r.headers()[crate::wire::header::ERROR],
            Code::Timeout.as_str()
        );
        let e = ApiError::new(Code::NoLeader, "x");
        assert_eq!(seed_parts(&e, "f").0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
