//! POST /webhooks/jamf: Jamf Pro's webhooks, checked for their token and content type here and
//! handed to the Jamf adapter, which answers once what they say is durable and in force.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::auth::require_webhook;
use super::body::json_bytes;
use super::error::ApiError;
use super::AppState;
use crate::jamf::webhook::WebhookError;

pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The token is checked from the headers before a byte of the body is read.
    let checked = match require_webhook(&headers, &state.webhook_tokens) {
        Ok(()) => json_bytes(&headers, body, state.body_timeout).await,
        Err(e) => Err(e),
    };
    let bytes = checked.inspect_err(|e| state.jamf.count("unknown", result_label(e.status)))?;
    match state.jamf.receive(&bytes).await {
        Ok(answer) => Ok(Json(answer)),
        Err(WebhookError::Parse(e)) => {
            let mut err = ApiError::bad_request(e.to_string());
            err.field = e.field().map(str::to_string);
            Err(err)
        }
        Err(WebhookError::Apply(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

fn result_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "bad_request",
    }
}
