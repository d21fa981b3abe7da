//! API errors as INTERFACE.md shapes them: a status and `{"error": "...", "field": "..."}`.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    /// A request body that did not arrive in time (counted as a timeout).
    pub timed_out: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            timed_out: false,
        }
    }

    pub fn timed_out(mut self) -> Self {
        self.timed_out = true;
        self
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.timed_out {
            response.extensions_mut().insert(BodyTimedOut);
        }
        response
    }
}

/// Marks an answer to a body that did not arrive in time.
#[derive(Clone, Copy)]
pub struct BodyTimedOut;

/// Marks an error status whose plain body is the interface (`/readyz`'s `starting`).
#[derive(Clone, Copy)]
pub struct PlainBody;

/// Makes every error answer the interface's JSON error, whoever produced it: a handler, the
/// router or an extractor (a path that is not UTF-8, say). hyper's own answers to requests it
/// cannot parse are rewritten on the connection (`conn::http`).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error())
        || is_json
        || response.extensions().get::<PlainBody>().is_some()
    {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    ApiError::new(status, message).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}
