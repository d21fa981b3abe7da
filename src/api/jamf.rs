//! POST /webhooks/jamf: Jamf Pro's webhooks, acknowledged only once what they say is durable and
//! in force.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::auth::require_webhook;
use super::body::json_bytes;
use super::error::ApiError;
use super::AppState;
use crate::control::Request;
use crate::jamf::events::{self, Event};

pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let count = |event: &str, result: &str| {
        state
            .metrics
            .webhook_events
            .with_label_values(&["jamf", event, result])
            .inc()
    };
    let checked =
        require_webhook(&headers, &state.webhook_tokens).and_then(|_| json_bytes(&headers, body));
    let bytes = checked.inspect_err(|e| count("unknown", result_label(e.status)))?;
    let envelope = events::parse(&bytes).map_err(|e| {
        count("unknown", "bad_request");
        let mut err = ApiError::bad_request(e.to_string());
        err.field = e.field().map(str::to_string);
        err
    })?;
    let event = events::known_event(&envelope.name).unwrap_or("other");
    if envelope.test || matches!(envelope.event, Event::Other) {
        count(event, if envelope.test { "test" } else { "ignored" });
        let result = if envelope.test {
            "test event acknowledged, not applied"
        } else {
            "event acknowledged, nothing to do"
        };
        return Ok(Json(serde_json::json!({ "result": result })));
    }
    let outcome = state
        .control
        .apply(Request::Jamf(envelope))
        .await
        .map_err(|e| {
            count(event, "error");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?;
    count(event, "applied");
    match &state.jamf {
        Some(sync) => {
            if let Some((kind, group)) = outcome.reconcile {
                sync.reconcile_group_soon(kind, group);
            }
            for id in &outcome.lookups {
                sync.look_up_soon(*id);
            }
        }
        None if outcome.reconcile.is_some() => {
            tracing::warn!("a group event without member ids needs the Jamf Pro API to re-read the group, and [jamf] url is not set")
        }
        None => {}
    }
    Ok(Json(serde_json::json!({
        "result": if outcome.changes > 0 { "applied" } else { "unchanged" },
        "changes": outcome.changes,
        "version": outcome.version,
        "reconcile": outcome.reconcile.is_some(),
    })))
}

fn result_label(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "bad_request",
    }
}
