//! The HTTP API (axum): health, metrics and the admin endpoints. Handlers only read snapshots
//! and send commands to the control plane; they never change state themselves.

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::config::AdminToken;
use crate::control::Control;
use crate::dns::handler::Handler;
use crate::metrics::Metrics;

/// What every HTTP handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub handler: Arc<Handler>,
    pub metrics: Arc<Metrics>,
    /// Set once the first snapshot is published and every listener is open.
    pub ready: Arc<AtomicBool>,
    pub admins: Arc<Vec<AdminToken>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/reload", post(admin::reload))
        .route("/v1/status", get(admin::status))
        .route("/v1/explain", get(admin::explain))
        .fallback(error::not_found)
        .with_state(state)
}
