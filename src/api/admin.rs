//! Admin endpoints: reload, status, explain.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

use super::auth::require;
use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::control::ReloadReport;
use crate::explain::{explain as trace, Trace};

/// POST /v1/reload: rebuild from the policy files; a broken file keeps the old snapshot.
pub async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ReloadReport>, (StatusCode, Json<serde_json::Value>)> {
    require(&headers, &state.admins, Role::Admin)
        .map_err(|e| (e.status, Json(serde_json::json!({ "error": e.message }))))?;
    match state.control.reload().await {
        Ok(report) => Ok(Json(report)),
        Err(errors) => {
            let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
            let body = serde_json::json!({
                "error": format!("policies rejected, the previous snapshot stays in force: {first}"),
                "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            });
            Err((StatusCode::UNPROCESSABLE_ENTITY, Json(body)))
        }
    }
}

/// GET /v1/status: the snapshot in force and the last reload's outcome.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&headers, &state.admins, Role::Viewer)?;
    let snapshot = state.published.get();
    let reload = state.control.status();
    let replica = state.control.replica();
    Ok(Json(serde_json::json!({
        "snapshot_version": snapshot.version,
        "groups": snapshot.groups.iter().map(|g| &g.name).collect::<Vec<_>>(),
        "listed_domains": snapshot.categories.len(),
        "last_reload": reload,
        "store": {
            "shared": replica.is_shared(),
            "leader": replica.is_leader(),
            "position": replica.position(),
        },
    })))
}

/// GET /v1/explain?client=&device=&name=&type=
pub async fn explain(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Trace>, ApiError> {
    require(&headers, &state.admins, Role::Viewer)?;
    let name = params
        .get("name")
        .ok_or_else(|| ApiError::bad_request("name is required").with_field("name"))?;
    let client: IpAddr = match params.get("client") {
        Some(c) => c.parse().map_err(|_| {
            ApiError::bad_request(format!("client \"{c}\" is not an IP address"))
                .with_field("client")
        })?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let qtype = params.get("type").map_or("A", String::as_str);
    let snapshot = state.published.get();
    let device = params
        .get("device")
        .map(String::as_str)
        .filter(|d| !d.is_empty());
    trace(&snapshot, client, device, name, qtype)
        .map(Json)
        .map_err(|e| {
            let status = if matches!(e, crate::explain::ExplainError::Device(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(status, e.to_string())
        })
}
