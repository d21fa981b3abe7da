//! Request bodies: JSON only, bounded in size and in time, with errors that say what is wrong.
//! Handlers take the body unread (`axum::body::Body`) and read it here only once the caller is
//! authenticated: an unauthenticated request never costs the server its body.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest body any endpoint takes.
pub const MAX_BODY: usize = 1 << 20;

/// Refuses a body not declared JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let shown = if content_type.is_empty() {
        "none"
    } else {
        content_type
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Content-Type must be application/json (got {shown})"),
    ))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body is larger than {MAX_BODY} bytes"),
    )
}

/// The body's bytes, if it arrives whole within [`MAX_BODY`] and `timeout`. A declared length
/// over the limit is refused before anything is read.
pub async fn read(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )
        .timed_out()),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.to_string().contains("length limit") => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
    }
}

/// The body's bytes, if it is declared JSON and arrives whole within [`MAX_BODY`] and `timeout`.
pub async fn json_bytes(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    require_json(headers)?;
    read(headers, body, timeout).await
}

/// JSON bytes as `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_string);
        let mut err = ApiError::bad_request(format!("invalid JSON body: {e}"));
        err.field = field;
        err
    })
}

/// The body as `T`.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
) -> Result<T, ApiError> {
    parse(&json_bytes(headers, body, timeout).await?)
}

/// The optional body of a release, an unwatch or an erasure, `{"reason": "..."}`: its reason,
/// or `otherwise` when it gives none.
pub async fn read_reason(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
    otherwise: &str,
) -> Result<String, ApiError> {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Reason {
        #[serde(default)]
        reason: String,
    }
    let bytes = read(headers, body, timeout).await?;
    let body: Reason = if bytes.is_empty() {
        Reason::default()
    } else {
        require_json(headers)?;
        parse(&bytes)?
    };
    Ok(match body.reason.is_empty() {
        true => otherwise.to_string(),
        false => body.reason,
    })
}
