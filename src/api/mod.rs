//! The HTTP API (axum): health, metrics, webhooks and the admin endpoints. Handlers check who
//! asks and what they sent, read snapshots, and send commands to the control plane (or hand a
//! vendor's webhook to its adapter); they never change state themselves.

pub mod admin;
pub mod auth;
pub mod body;
pub mod console;
pub mod devices;
pub mod error;
pub mod health;
pub mod jamf;
pub mod params;
pub mod ssf;
pub mod trail;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::config::AdminToken;
use crate::control::Control;
use crate::dns::handler::Handler;
use crate::jamf::webhook::Webhooks;
use crate::metrics::Metrics;
use crate::policy::Published;

/// What every HTTP handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    /// The snapshot in force, for status and explain.
    pub published: Arc<Published>,
    /// The query path, for its cache's size at a scrape.
    pub handler: Arc<Handler>,
    pub metrics: Arc<Metrics>,
    /// Set once the first snapshot is published and every listener is open.
    pub ready: Arc<AtomicBool>,
    pub admins: Arc<Vec<AdminToken>>,
    pub webhook_tokens: Arc<Vec<String>>,
    /// Jamf Pro's webhooks, and its API when configured.
    pub jamf: Webhooks,
    /// Shared Signals' receiver, when `[ssf]` names an issuer.
    pub ssf: Option<Arc<crate::ssf::Receiver>>,
    /// How long a request body may take to arrive (`limits.http_body_timeout_ms`).
    pub body_timeout: Duration,
    /// The DNS trail, for reading; `None` with `trail.enabled = false`.
    pub trail: Option<crate::trail::Trail>,
    /// The responders' console: its sessions and its last hour of blocks.
    pub console: Arc<console::Console>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/webhooks/jamf", post(jamf::webhook))
        .route("/webhooks/ssf", post(ssf::webhook))
        .route("/v1/reload", post(admin::reload))
        .route("/v1/status", get(admin::status))
        .route("/v1/explain", get(admin::explain))
        .route("/v1/reconcile", post(devices::reconcile))
        .route("/v1/isolations", get(devices::isolations))
        .route("/v1/traced", get(devices::traced))
        .route("/v1/devices", get(devices::search))
        .route("/v1/approvals", get(devices::approvals))
        .route(
            "/v1/approvals/{id}",
            post(devices::approve).delete(devices::refuse),
        )
        .route("/v1/devices/{id}", get(devices::get))
        .route("/v1/devices/{id}/timeline", get(devices::timeline))
        .route(
            "/v1/devices/{id}/queries",
            get(trail::page).delete(trail::erase),
        )
        .route("/v1/devices/{id}/queries.ndjson", get(trail::export))
        .route("/v1/devices/{id}/queries/summary", get(trail::summary))
        .route("/v1/devices/{id}/groups", put(devices::set_groups))
        .route("/v1/devices/{id}/critical", put(devices::set_critical))
        .route(
            "/v1/devices/{id}/isolation",
            post(devices::isolate).delete(devices::release),
        )
        .route(
            "/v1/devices/{id}/watch",
            put(devices::watch).delete(devices::unwatch),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn(error::json_errors));
    Router::new()
        .merge(api)
        .merge(console::router())
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

/// Counts every answer by status code, so that refused requests show on a dashboard.
async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state
        .metrics
        .http_responses
        .with_label_values(&[response.status().as_str()])
        .inc();
    if response.extensions().get::<error::BodyTimedOut>().is_some() {
        state
            .metrics
            .connections_timed_out
            .with_label_values(&["http", "body"])
            .inc();
    }
    response
}
