//! The responders' view of the DNS trail: a device's queries a page at a time, the whole of
//! them as NDJSON, and a summary by name with security-category hits first, read through the
//! trail's own store connection; and an admin's erasure of a device's trail, audited.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::require;
use super::body::read_reason;
use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::control::{Query, QueryReply, Request};
use crate::policy::DeviceId;
use crate::trail::{Cursor, Trail, TrailFilter, TrailRow, TrailView};

/// The most rows a page holds.
const MAX_PAGE: usize = 1_000;
/// What one read of an export brings.
const EXPORT_PAGE: usize = 5_000;
/// The most names a summary lists.
const MAX_NAMES: usize = 10_000;

type Params = QueryParams<HashMap<String, String>>;

/// The device `id` names (any alias, or `device#N`), and the trail to read it from, for a
/// caller of at least `role`.
async fn device_and_trail(
    state: &AppState,
    headers: &HeaderMap,
    id: String,
    role: Role,
) -> Result<(DeviceId, Trail), ApiError> {
    require(headers, &state.admins, role)?;
    let Some(trail) = state.trail.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the trail is off (trail.enabled = false)",
        ));
    };
    Ok((device_of(state, id).await?, trail))
}

/// DELETE /v1/devices/{id}/queries (admin; optional body {"reason": "..."}): erases what the
/// trail holds of the device, then notes it in the device's timeline (`trail_erased`). A device
/// still traced goes on being recorded.
pub async fn erase(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = require(&headers, &state.admins, Role::Admin)?;
    let (device, trail) = device_and_trail(&state, &headers, id, Role::Admin).await?;
    let reason = read_reason(&headers, body, state.body_timeout, "erased").await?;
    let queries = trail.erase(device).await.map_err(store_failed)?;
    let note = Request::TrailErased {
        device,
        queries,
        actor: caller.name,
        reason,
    };
    state.control.apply(note).await?;
    Ok(Json(
        serde_json::json!({ "device": device, "erased": queries }),
    ))
}

/// The device `id` names (any alias, or `device#N`): 404 for one no device answers to.
pub async fn device_of(state: &AppState, id: String) -> Result<DeviceId, ApiError> {
    let QueryReply::Device(info) = state.control.query(Query::Device(id)).await? else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no device",
        ));
    };
    serde_json::from_value(serde_json::Value::String(info.id))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The filter `params` ask for: `since`, `decision`, `cursor`, `limit`.
fn filter_of(device: DeviceId, params: &HashMap<String, String>) -> Result<TrailFilter, ApiError> {
    let since_ms = match params.get("since") {
        Some(text) => crate::time::parse_since_ms(text, now_ms()).ok_or_else(|| {
            ApiError::bad_request(
                "since must be seconds since the epoch, an RFC 3339 time, or an age like 30m, 6h, 7d",
            )
            .with_field("since")
        })?,
        None => 0,
    };
    let decision = match params.get("decision").map(String::as_str) {
        None => None,
        Some(d @ ("allowed" | "blocked" | "error")) => Some(d.to_string()),
        Some(_) => {
            let message = "decision must be allowed, blocked or error";
            return Err(ApiError::bad_request(message).with_field("decision"));
        }
    };
    let after_id = match params.get("cursor") {
        Some(text) => {
            let cursor = Cursor::decode(text, device)
                .map_err(|e| ApiError::bad_request(e.to_string()).with_field("cursor"))?;
            cursor.after
        }
        None => 0,
    };
    let limit = super::params::limit(params, MAX_PAGE, 100)?;
    Ok(TrailFilter {
        device,
        since_ms,
        after_id,
        decision,
        limit,
        newest_first: false,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn store_failed(e: crate::control::store::StoreError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// GET /v1/devices/{id}/queries?since=&decision=&cursor=&limit=: a page of the trail, oldest
/// first, and the cursor of the next page (null at the end).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(params): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (device, trail) = device_and_trail(&state, &headers, id, Role::Viewer).await?;
    let filter = filter_of(device, &params)?;
    let rows = trail.page(&filter).await.map_err(store_failed)?;
    let next = (rows.len() == filter.limit)
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            Cursor {
                device,
                after: last.id,
            }
            .encode()
        });
    let queries: Vec<TrailView<'_>> = rows.iter().map(TrailView::from).collect();
    Ok(Json(serde_json::json!({
        "device": device,
        "queries": queries,
        "next": next,
    })))
}

/// GET /v1/devices/{id}/queries.ndjson?since=&decision=: the whole trail (from `since`), one
/// JSON object a line, read from the store a page at a time as the client takes it.
pub async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(params): Params,
) -> Result<Response, ApiError> {
    let (device, trail) = device_and_trail(&state, &headers, id, Role::Viewer).await?;
    let mut filter = filter_of(device, &params)?;
    filter.limit = EXPORT_PAGE;
    let pages = futures_util::stream::unfold(Some(filter), move |filter| {
        let trail = trail.clone();
        async move {
            let mut filter = filter?;
            let rows = match trail.page(&filter).await {
                Ok(rows) => rows,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            if rows.is_empty() {
                return None;
            }
            let full = rows.len() == filter.limit;
            filter.after_id = rows.last().map_or(filter.after_id, |r| r.id);
            Some((Ok(ndjson(&rows)), full.then_some(filter)))
        }
    });
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    Ok((headers, Body::from_stream(pages)).into_response())
}

fn ndjson(rows: &[TrailRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 320);
    for row in rows {
        if serde_json::to_writer(&mut out, &TrailView::from(row)).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// GET /v1/devices/{id}/queries/summary?since=&limit=: each name the device asked for, with
/// counts, first and last seen; names in a security category first, then the most asked.
pub async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(params): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (device, trail) = device_and_trail(&state, &headers, id, Role::Viewer).await?;
    let filter = filter_of(device, &params)?;
    let limit = match params.get("limit") {
        Some(_) => filter.limit,
        None => MAX_NAMES,
    };
    let names = trail
        .summary(device, filter.since_ms, limit)
        .await
        .map_err(store_failed)?;
    let names: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "count": n.count,
                "blocked": n.blocked,
                "first": crate::time::rfc3339_ms(n.first_ms),
                "last": crate::time::rfc3339_ms(n.last_ms),
                "security": n.security,
                "categories": n.categories,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "device": device, "names": names }),
    ))
}

/// The newest `limit` queries of `device`, newest first; none with the trail off.
pub async fn newest(
    state: &AppState,
    device: DeviceId,
    limit: usize,
) -> Result<Vec<TrailRow>, ApiError> {
    let Some(trail) = &state.trail else {
        return Ok(Vec::new());
    };
    let filter = TrailFilter {
        device,
        since_ms: 0,
        after_id: 0,
        decision: None,
        limit,
        newest_first: true,
    };
    trail.page(&filter).await.map_err(store_failed)
}

/// The newest `limit` queries of `device` as timeline entries (`at` in seconds, `action`
/// `query_allowed`, `query_blocked` or `query_error`), to merge with its audit events.
pub async fn timeline_entries(
    state: &AppState,
    device: DeviceId,
    limit: usize,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows = newest(state, device, limit).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let view = TrailView::from(r);
            serde_json::json!({
                "at": r.at_ms.div_euclid(1000),
                "at_ms": r.at_ms,
                "device": device,
                "actor": "dns",
                "action": format!("query_{}", r.decision),
                "detail": format!("{} {} from {} over {}", r.name, view.qtype, r.source, r.transport),
                "reason": r.reason,
            })
        })
        .collect())
}
