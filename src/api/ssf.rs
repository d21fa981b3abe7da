//! POST /webhooks/ssf: Security Event Tokens pushed by Shared Signals transmitters (RFC 8935),
//! checked for their content type and size here and handed to the SSF adapter. There is no
//! bearer token: the SET's signature is the authentication, checked by the adapter.
//!
//! Answers: 202 once what the SET says is durable and in force; 400 with RFC 8935's
//! `{"err": ..., "description": ...}` for a SET refused; 413, 415 and 408 in the same shape (err
//! `invalid_request`) for a body too large, not `application/secevent+jwt`, or too slow; 503
//! (`{"error": ...}`, as every other endpoint) when the store cannot commit: nothing changed and
//! the transmitter may retry.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::body;
use super::error::{ApiError, BodyTimedOut};
use super::AppState;
use crate::ssf::Answer;

/// The media type of a SET (RFC 8417 section 2.3).
const SECEVENT: &str = "application/secevent+jwt";

pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(receiver) = state.ssf.clone() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no Shared Signals issuer is configured ([[ssf.issuer]])",
        )
        .into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(SECEVENT) {
        receiver.count(None, "unsupported_media_type");
        let shown = if content_type.is_empty() {
            "none"
        } else {
            content_type
        };
        return rfc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            &format!("Content-Type must be {SECEVENT} (got {shown})"),
        );
    }
    let bytes = match body::read(&headers, body, state.body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let result = match e.status {
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                StatusCode::REQUEST_TIMEOUT => "timeout",
                _ => "invalid_request",
            };
            receiver.count(None, result);
            let mut response = rfc_error(e.status, "invalid_request", &e.message);
            if e.timed_out {
                response.extensions_mut().insert(BodyTimedOut);
            }
            return response;
        }
    };
    match receiver.receive(&bytes).await {
        Answer::Accepted(answer) => (StatusCode::ACCEPTED, Json(answer)).into_response(),
        Answer::Refused { err, description } => {
            rfc_error(StatusCode::BAD_REQUEST, err.as_str(), &description)
        }
        Answer::Unavailable(message) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}

/// RFC 8935's error body.
fn rfc_error(status: StatusCode, err: &str, description: &str) -> Response {
    let body = serde_json::json!({ "err": err, "description": description });
    (status, Json(body)).into_response()
}
