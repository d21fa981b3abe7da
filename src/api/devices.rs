//! The responders' API: look a device up, read its timeline, isolate and release it, set its
//! UEM groups (for MDMs other than Jamf), approve isolations of critical devices.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;

use super::auth::require;
use super::body::{json, read_reason};
use super::error::ApiError;
use super::AppState;
use crate::config::Role;
use crate::control::{ApplyError, Outcome, Query, QueryReply, Request};

type Reply = Result<Json<serde_json::Value>, ApiError>;

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let status = match e {
            ApplyError::UnknownDevice(_) | ApplyError::UnknownApproval(_) => StatusCode::NOT_FOUND,
            ApplyError::NeedsApproval(_) => StatusCode::CONFLICT,
            ApplyError::SameApprover => StatusCode::FORBIDDEN,
            ApplyError::Seen => StatusCode::CONFLICT,
            ApplyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // Nothing was applied and a retry may well succeed.
            ApplyError::Store(_) | ApplyError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

fn outcome(o: Outcome) -> Reply {
    Ok(Json(serde_json::to_value(o).unwrap_or_default()))
}

async fn ask(state: &AppState, query: Query) -> Result<serde_json::Value, ApiError> {
    let reply = state.control.query(query).await?;
    let value = match reply {
        QueryReply::Device(d) => serde_json::to_value(d),
        QueryReply::Devices(list) => serde_json::to_value(list),
        QueryReply::Timeline(events) => serde_json::to_value(events),
        QueryReply::Groups(keys) => serde_json::to_value(keys),
        QueryReply::Approvals(list) => serde_json::to_value(list),
    };
    value.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// GET /v1/devices/{id}
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    Ok(Json(ask(&state, Query::Device(id)).await?))
}

/// GET /v1/devices/{id}/timeline?limit=
pub async fn timeline(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    let limit = match params.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| {
            ApiError::bad_request("limit must be a whole number").with_field("limit")
        })?,
        None => 100,
    }
    .min(10_000);
    let with_queries = match params.get("with").map(String::as_str) {
        None => false,
        Some("queries") => true,
        Some(_) => {
            let message = "with must be \"queries\" (the DNS trail beside the events)";
            return Err(ApiError::bad_request(message).with_field("with"));
        }
    };
    let events = ask(&state, Query::Timeline(id.clone(), limit)).await?;
    if !with_queries {
        return Ok(Json(events));
    }
    let device = super::trail::device_of(&state, id).await?;
    let mut merged = super::trail::timeline_entries(&state, device, limit).await?;
    if let serde_json::Value::Array(events) = events {
        merged.extend(events);
    }
    // Newest first, as the events come. Events have whole seconds: within one, the queries
    // come first, as the queries of a device traced since that second's isolation.
    merged.sort_by_key(|e| std::cmp::Reverse(e["at"].as_i64().unwrap_or(0)));
    merged.truncate(limit);
    Ok(Json(serde_json::Value::Array(merged)))
}

/// GET /v1/isolations
pub async fn isolations(State(state): State<AppState>, headers: HeaderMap) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    Ok(Json(ask(&state, Query::Isolations).await?))
}

/// GET /v1/traced: devices traced though not isolated (probation, a responder's watch).
pub async fn traced(State(state): State<AppState>, headers: HeaderMap) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    Ok(Json(ask(&state, Query::Traced).await?))
}

/// The most devices a search lists.
pub const MAX_SEARCH: usize = 200;

/// GET /v1/devices?q=&limit=: the device an alias, id or bound address names, then those whose
/// name holds `q`.
pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    let text = params
        .get("q")
        .filter(|q| !q.trim().is_empty() && q.len() <= 256)
        .ok_or_else(|| ApiError::bad_request("q must be 1 to 256 characters").with_field("q"))?;
    let limit = super::params::limit(&params, MAX_SEARCH, 50)?;
    Ok(Json(ask(&state, Query::Search(text.clone(), limit)).await?))
}

/// GET /v1/approvals: isolations of critical devices waiting for a second admin.
pub async fn approvals(State(state): State<AppState>, headers: HeaderMap) -> Reply {
    require(&headers, &state.admins, Role::Viewer)?;
    Ok(Json(ask(&state, Query::Approvals).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Isolation {
    reason: String,
    #[serde(default)]
    ticket: String,
    /// Seconds until the hold ends by itself ("contain for 24 h unless extended").
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Isolation {
    /// The body of an isolation or a watch, checked: a reason, an end within a year if any.
    async fn read(headers: &HeaderMap, body: Body, state: &AppState) -> Result<Self, ApiError> {
        let body: Isolation = json(headers, body, state.body_timeout).await?;
        if body.reason.trim().is_empty() {
            return Err(ApiError::bad_request("reason must say why").with_field("reason"));
        }
        if body
            .expires_in
            .is_some_and(|s| s == 0 || s > MAX_EXPIRES_IN)
        {
            let message = format!(
                "expires_in must be 1 to {MAX_EXPIRES_IN} seconds (leave it out for no end)"
            );
            return Err(ApiError::bad_request(&message).with_field("expires_in"));
        }
        Ok(body)
    }
}

/// The longest time-boxed hold: a year. Longer is a hold without end, said so.
const MAX_EXPIRES_IN: u64 = 366 * 86_400;

/// POST /v1/devices/{id}/isolation {"reason": "...", "ticket": "...", "expires_in": seconds}:
/// 200 with the outcome; 202 when no device answers to `id` yet and the hold waits for one.
pub async fn isolate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let caller = require(&headers, &state.admins, Role::Responder)?;
    let body = Isolation::read(&headers, body, &state).await?;
    let request = Request::Isolate {
        device: id,
        reason: body.reason,
        ticket: body.ticket,
        expires_in: body.expires_in,
        actor: caller.name,
    };
    match state.control.apply(request).await {
        Err(ApplyError::NeedsApproval(approval)) => {
            let mut err = ApiError::from(ApplyError::NeedsApproval(approval));
            err.field = Some(format!("approval:{approval}"));
            Err(err)
        }
        other => {
            let done = other?;
            let status = match &done.waiting {
                Some(key) => {
                    // The MDM may know the serial already: its record brings the device in, and
                    // with it the hold.
                    let serial = match key.split_once(':') {
                        Some(("serial", serial)) => Some(serial),
                        Some(_) => None,
                        None => Some(key.as_str()),
                    };
                    if let (Some(sync), Some(serial)) = (state.jamf.sync(), serial) {
                        sync.look_up_serial_soon(serial.to_string());
                    }
                    StatusCode::ACCEPTED
                }
                None => StatusCode::OK,
            };
            Ok((status, outcome(done)?))
        }
    }
}

/// DELETE /v1/devices/{id}/isolation (optional body {"reason": "..."})
pub async fn release(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Responder)?;
    let reason = read_reason(
        &headers,
        body,
        state.body_timeout,
        "released by a responder",
    )
    .await?;
    outcome(
        state
            .control
            .apply(Request::Release {
                device: id,
                actor: caller.name,
                reason,
            })
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Groups {
    groups: Vec<String>,
}

/// PUT /v1/devices/{id}/groups {"groups": ["mdm:group-1", ...]}
pub async fn set_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Admin)?;
    let body: Groups = json(&headers, body, state.body_timeout).await?;
    if let Some(bad) = body
        .groups
        .iter()
        .find(|g| g.trim().is_empty() || g.len() > 256)
    {
        return Err(
            ApiError::bad_request(format!("group \"{bad}\" must be 1 to 256 characters"))
                .with_field("groups"),
        );
    }
    outcome(
        state
            .control
            .apply(Request::SetGroups {
                device: id,
                groups: body.groups,
                actor: caller.name,
            })
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    critical: bool,
}

/// PUT /v1/devices/{id}/critical {"critical": true}
pub async fn set_critical(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Admin)?;
    let body: Critical = json(&headers, body, state.body_timeout).await?;
    outcome(
        state
            .control
            .apply(Request::SetCritical {
                device: id,
                critical: body.critical,
                actor: caller.name,
            })
            .await?,
    )
}

/// POST /v1/approvals/{id}: a second admin approves a pending isolation.
pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Admin)?;
    let id = approval_id(&id)?;
    outcome(
        state
            .control
            .apply(Request::Approve {
                approval: id,
                actor: caller.name,
            })
            .await?,
    )
}

/// DELETE /v1/approvals/{id} (optional body {"reason": "..."}): an admin turns a pending
/// isolation down.
pub async fn refuse(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Admin)?;
    let approval = approval_id(&id)?;
    let reason = read_reason(&headers, body, state.body_timeout, "refused by an admin").await?;
    let request = Request::Refuse {
        approval,
        actor: caller.name,
        reason,
    };
    outcome(state.control.apply(request).await?)
}

/// An approval's number, or 404 for text that names none.
fn approval_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("unknown approval {id}")))
}

/// POST /v1/reconcile: reconcile every mapped Jamf group now.
pub async fn reconcile(State(state): State<AppState>, headers: HeaderMap) -> Reply {
    require(&headers, &state.admins, Role::Admin)?;
    let sync = state.jamf.sync().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "the Jamf Pro API is not configured ([jamf] url)",
        )
    })?;
    let report = sync
        .reconcile_all()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    if report.groups == 0 && !report.errors.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("Jamf Pro API: {}", report.errors.join("; ")),
        ));
    }
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// PUT /v1/devices/{id}/watch {"reason": "...", "ticket": "...", "expires_in": seconds}: the
/// device's queries go to the trail, though it is not isolated, until DELETE or the end.
pub async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Responder)?;
    let body = Isolation::read(&headers, body, &state).await?;
    let request = Request::Watch {
        device: id,
        reason: body.reason,
        ticket: body.ticket,
        expires_in: body.expires_in,
        actor: caller.name,
    };
    outcome(state.control.apply(request).await?)
}

/// DELETE /v1/devices/{id}/watch (optional body {"reason": "..."})
pub async fn unwatch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let caller = require(&headers, &state.admins, Role::Responder)?;
    let reason = read_reason(&headers, body, state.body_timeout, "no longer watched").await?;
    let request = Request::Unwatch {
        device: id,
        actor: caller.name,
        reason,
    };
    outcome(state.control.apply(request).await?)
}
