//! The HTTP sinks: the webhook (the event's JSON, signed with HMAC-SHA256) and the Shared
//! Signals push (a signed SET). One POST per event on the blocking pool (`ureq`, as the Jamf
//! client and the list fetcher), with the sink's timeout and no redirects followed.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::event::Event;
use super::ssf::SetSigner;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver has it (a 2xx).
    Delivered,
    /// The receiver refused it for good: sending it again cannot change its answer.
    Rejected(String),
    /// Not this sink's kind of event.
    Skipped,
    /// It may not have arrived: try again later.
    Failed(String),
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`: the `X-Cordon-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// An HTTP sink's client.
pub struct Poster {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
}

impl Poster {
    pub fn new(
        url: String,
        authorization: Option<String>,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Poster {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .user_agent(concat!("cordon/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Poster {
            agent,
            url,
            authorization,
        }
    }

    /// The webhook: the event's JSON, its signature and its idempotency key. Any answer but a
    /// 2xx is tried again.
    pub async fn webhook(&self, event: &Event, secret: &[u8]) -> Delivery {
        let body = event.json();
        let headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-Cordon-Signature", signature(secret, &body)),
            ("Idempotency-Key", event.id.to_string()),
        ];
        match self.post(headers, body).await {
            Ok((status, _)) if (200..300).contains(&status) => Delivery::Delivered,
            Ok((status, text)) => Delivery::Failed(format!("HTTP {status}: {}", brief(&text))),
            Err(e) => Delivery::Failed(e),
        }
    }

    /// The SET push (RFC 8935): 202 (any 2xx) delivers. A 400 `invalid_request` says this SET
    /// will never be taken (malformed, or a `jti` the receiver has already had, when an answer
    /// to an earlier try was lost); other refusals (keys, issuer, audience, access) are the
    /// receiver's or the config's to fix, and are tried again.
    pub async fn set(&self, event: &Event, signer: &SetSigner, now: i64) -> Delivery {
        let token = match signer.set(event, now) {
            None => return Delivery::Skipped,
            Some(Ok(token)) => token,
            Some(Err(e)) => return Delivery::Failed(format!("cannot sign the SET: {e}")),
        };
        let headers = vec![
            ("Content-Type", "application/secevent+jwt".to_string()),
            ("Accept", "application/json".to_string()),
        ];
        match self.post(headers, token.into_bytes()).await {
            Ok((status, _)) if (200..300).contains(&status) => Delivery::Delivered,
            Ok((400, text)) => {
                let err = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("err").and_then(|e| e.as_str()).map(str::to_string));
                let why = format!("HTTP 400: {}", brief(&text));
                match err.as_deref() {
                    Some("invalid_request") => Delivery::Rejected(why),
                    _ => Delivery::Failed(why),
                }
            }
            Ok((status, text)) => Delivery::Failed(format!("HTTP {status}: {}", brief(&text))),
            Err(e) => Delivery::Failed(e),
        }
    }

    /// One POST; the status and body of any answer, or why there was none.
    async fn post(
        &self,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, String), String> {
        let mut request = self.agent.post(&self.url);
        for (name, value) in &headers {
            request = request.set(name, value);
        }
        if let Some(auth) = &self.authorization {
            request = request.set("Authorization", auth);
        }
        let sent = tokio::task::spawn_blocking(move || match request.send_bytes(&body) {
            Ok(response) => Ok((response.status(), read_body(response))),
            Err(ureq::Error::Status(status, response)) => Ok((status, read_body(response))),
            Err(ureq::Error::Transport(t)) => Err(t.to_string()),
        });
        sent.await.map_err(|e| e.to_string())?
    }
}

/// The start of an answer's body: enough for a log line.
fn read_body(response: ureq::Response) -> String {
    use std::io::Read;
    let mut text = String::new();
    let _ = response.into_reader().take(4096).read_to_string(&mut text);
    text
}

fn brief(text: &str) -> String {
    let line: String = text.chars().take(200).collect();
    line.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_webhook_signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
