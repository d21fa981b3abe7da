//! Shared Signals, an adapter at the edge: Security Event Tokens (RFC 8417) pushed to
//! `POST /webhooks/ssf` (RFC 8935) by CAEP transmitters become the control plane's neutral
//! requests. `config.rs` is `[ssf]`, `jwks.rs` each transmitter's keys, `verify.rs` the checks
//! of a token, `events.rs` what its events mean (`ssf:<issuer>:not-compliant`), `webhook.rs`
//! the receiver that ties them to the control plane and counts.

pub mod config;
pub mod events;
pub mod jwks;
pub mod verify;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{SsfConfig, SsfConfigError};
pub use webhook::{Answer, Receiver};

use crate::control::{Clock, Control};
use crate::metrics::Metrics;

/// The receiver for `config`: JWKS files read now (a file that cannot be read, or holds no
/// usable key, stops the start), JWKS URLs fetched now and then on their timers (a transmitter
/// that is down does not: its tokens are refused `invalid_key` until a fetch succeeds).
pub async fn start(
    config: &SsfConfig,
    resolve: impl Fn(&Path) -> PathBuf,
    control: Control,
    metrics: &Metrics,
    clock: Arc<dyn Clock>,
) -> Result<Receiver, String> {
    let mut issuers = Vec::new();
    for i in &config.issuers {
        let keys = if i.jwks_url.is_empty() {
            Arc::new(jwks::Jwks::load_file(&resolve(&i.jwks_file))?)
        } else {
            let keys = Arc::new(jwks::Jwks::with(i.jwks_url.clone(), Default::default()));
            let fetcher = jwks::Fetcher::new(&i.jwks_url, i.timeout());
            jwks::start_refresh(keys.clone(), fetcher, i.refresh()).await;
            keys
        };
        issuers.push(verify::Issuer {
            issuer: i.issuer.clone(),
            audience: i.audience.clone(),
            keys,
        });
    }
    let verifier = verify::Verifier {
        issuers,
        max_skew: config.max_skew(),
        window: config.replay_window(),
    };
    Ok(Receiver::new(verifier, control, metrics, clock))
}
