//! The push receiver (RFC 8935) end to end but for HTTP: verify the SET, read its events, send
//! the request they mean to the control plane (which refuses a `jti` it has seen), and count
//! every outcome in `cordon_ssf_events_total{issuer,result}`, whose label values are bound here
//! once: each configured issuer, and `unknown` for tokens no issuer was found for.
//!
//! There is no bearer token: the SET's signature is the authentication.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::IntCounter;

use crate::control::{ApplyError, Clock, Control};
use crate::metrics::Metrics;

use super::events::{self, Signal};
use super::verify::{ErrorCode, Refused, Verifier};

/// Every `result` label value.
pub const RESULTS: [&str; 13] = [
    "applied",
    "unchanged",
    "ignored",
    "replayed",
    "invalid_request",
    "invalid_key",
    "invalid_issuer",
    "invalid_audience",
    "authentication_failed",
    "unsupported_media_type",
    "too_large",
    "timeout",
    "unavailable",
];

/// The label value of tokens whose issuer is not known.
pub const UNKNOWN: &str = "unknown";

/// What the receiver answers.
#[derive(Debug)]
pub enum Answer {
    /// 202: durable and in force (or nothing to do).
    Accepted(serde_json::Value),
    /// 400 with RFC 8935's error.
    Refused { err: ErrorCode, description: String },
    /// 503: the store could not commit; nothing changed, the transmitter may retry.
    Unavailable(String),
}

/// The receiver of Security Event Tokens.
pub struct Receiver {
    verifier: Verifier,
    control: Control,
    clock: Arc<dyn Clock>,
    /// Issuer (or [`UNKNOWN`]) -> one counter per [`RESULTS`] entry.
    counters: HashMap<String, Vec<IntCounter>>,
}

impl Receiver {
    pub fn new(
        verifier: Verifier,
        control: Control,
        metrics: &Metrics,
        clock: Arc<dyn Clock>,
    ) -> Receiver {
        let names = verifier
            .issuers
            .iter()
            .map(|i| i.issuer.clone())
            .chain([UNKNOWN.to_string()]);
        let counters = names
            .map(|issuer| {
                let each = RESULTS
                    .iter()
                    .map(|r| metrics.ssf_events.with_label_values(&[issuer.as_str(), *r]))
                    .collect();
                (issuer, each)
            })
            .collect();
        Receiver {
            verifier,
            control,
            clock,
            counters,
        }
    }

    /// Counts one delivery; `issuer` None: not known.
    pub fn count(&self, issuer: Option<&str>, result: &str) {
        let counters = issuer
            .and_then(|i| self.counters.get(i))
            .or_else(|| self.counters.get(UNKNOWN));
        let at = RESULTS.iter().position(|r| *r == result);
        if let (Some(counters), Some(at)) = (counters, at) {
            counters[at].inc();
        }
    }

    /// Applies one SET (the request body); the answer comes once what it says is durable and
    /// in force.
    pub async fn receive(&self, body: &[u8]) -> Answer {
        let now = self.clock.now();
        let verified = match self.verifier.verify(body, now) {
            Ok(v) => v,
            Err(refusal) => {
                let issuer = refusal.issuer.map(|i| self.issuer_name(i));
                self.count(issuer, refusal.code.as_str());
                return refused(refusal);
            }
        };
        let issuer = self.issuer_name(verified.issuer);
        let claims = &verified.claims;
        let signal = match events::signal(claims) {
            Ok(s) => s,
            Err(e) => {
                self.count(Some(issuer), ErrorCode::InvalidRequest.as_str());
                return Answer::Refused {
                    err: ErrorCode::InvalidRequest,
                    description: e.0,
                };
            }
        };
        let request = events::request(claims, &signal, verified.remember_until);
        match self.control.apply(request).await {
            Ok(outcome) => {
                let result = match (&signal, outcome.changes) {
                    (Signal::Other, _) => "ignored",
                    (_, 0) => "unchanged",
                    _ => "applied",
                };
                self.count(Some(issuer), result);
                Answer::Accepted(serde_json::json!({
                    "result": result,
                    "changes": outcome.changes,
                    "version": outcome.version,
                }))
            }
            Err(ApplyError::Seen) => {
                self.count(Some(issuer), "replayed");
                Answer::Refused {
                    err: ErrorCode::InvalidRequest,
                    description: format!("jti \"{}\" was already received", claims.jti),
                }
            }
            Err(e) => {
                self.count(Some(issuer), "unavailable");
                Answer::Unavailable(e.to_string())
            }
        }
    }

    fn issuer_name(&self, at: usize) -> &str {
        &self.verifier.issuers[at].issuer
    }
}

fn refused(r: Refused) -> Answer {
    Answer::Refused {
        err: r.code,
        description: r.description,
    }
}
