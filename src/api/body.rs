//! Request bodies: JSON only, bounded in size, with errors that say what is wrong.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest body any endpoint takes.
pub const MAX_BODY: usize = 1 << 20;

/// The body's bytes, if it is declared JSON and arrived whole within [`MAX_BODY`].
pub fn json_bytes(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let shown = if content_type.is_empty() {
            "none"
        } else {
            content_type
        };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json (got {shown})"),
        ));
    }
    body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body is larger than {MAX_BODY} bytes")
        } else {
            format!("cannot read the body: {e}")
        };
        ApiError::new(status, message)
    })
}

/// The body as `T`.
pub fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = json_bytes(headers, body)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_string);
        let mut err = ApiError::bad_request(format!("invalid JSON body: {e}"));
        err.field = field;
        err
    })
}
