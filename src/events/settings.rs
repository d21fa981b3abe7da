//! `[[events.sink]]` of the config file: where events go and how they are signed, checked once
//! at start (and by `cordon check`) into a [`Sink`]: secrets read, the signing key parsed and
//! tried, addresses parsed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::ssf::SetSigner;
use super::syslog::{Facility, Transport};

/// `[events]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// `[[events.sink]]`.
    pub sink: Vec<SinkConfig>,
}

/// One `[[events.sink]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// What metrics, logs and the store call the sink; its cursor is kept under this name.
    pub name: String,
    /// `webhook`, `syslog` or `ssf`.
    pub kind: String,
    /// webhook, ssf: where events are POSTed.
    #[serde(default)]
    pub url: String,
    /// webhook: the HMAC-SHA256 key for `X-Cordon-Signature`, or a file holding it.
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub secret_file: PathBuf,
    /// syslog: `udp://IP:PORT` or `tcp://IP:PORT`.
    #[serde(default)]
    pub address: String,
    /// syslog: the facility's name (`auth`, `authpriv`, `local0` .. `local7`, ...).
    #[serde(default)]
    pub facility: String,
    /// ssf: the SET's `iss` and `aud`.
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub audience: String,
    /// ssf: the signing key, PEM: PKCS#8 EC P-256 (ES256), or RSA, PKCS#8 or PKCS#1 (RS256).
    #[serde(default)]
    pub key_file: PathBuf,
    /// ssf: the key's id in the transmitter's JWKS (the JWS header's `kid`).
    #[serde(default)]
    pub kid: String,
    /// webhook, ssf: an `Authorization` header value the receiver wants (`Bearer ...`), or a
    /// file holding it.
    #[serde(default)]
    pub authorization: String,
    #[serde(default)]
    pub authorization_file: PathBuf,
    /// webhook, ssf: a CA bundle for the receiver's certificate; the system's roots when unset.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// One delivery: connect, send, answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// A sink, ready to deliver to.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub timeout: Duration,
    pub target: Target,
}

/// Where a sink delivers, and with what.
#[derive(Clone)]
pub enum Target {
    Webhook {
        url: String,
        secret: Vec<u8>,
        authorization: Option<String>,
        tls: Arc<rustls::ClientConfig>,
    },
    Syslog {
        transport: Transport,
        addr: SocketAddr,
        facility: Facility,
    },
    Ssf {
        url: String,
        signer: Arc<SetSigner>,
        authorization: Option<String>,
        tls: Arc<rustls::ClientConfig>,
    },
}

impl Sink {
    /// How `cordon check` describes it.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Webhook { url, .. } => format!("webhook to {url}, signed HMAC-SHA256"),
            Target::Syslog {
                transport, addr, ..
            } => format!("syslog (RFC 5424) over {} to {addr}", transport.as_str()),
            Target::Ssf { url, signer, .. } => format!(
                "Shared Signals SETs to {url}, signed {} (kid {})",
                signer.algorithm(),
                signer.kid()
            ),
        }
    }
}

/// A `[[events.sink]]` that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("events sink \"{sink}\": {problem}")]
pub struct EventsConfigError {
    pub sink: String,
    pub problem: String,
}

/// Checks every `[[events.sink]]`, reading secret and key files relative to `base`.
pub fn sinks(config: &EventsConfig, base: &Path) -> Result<Vec<Sink>, EventsConfigError> {
    let mut sinks: Vec<Sink> = Vec::with_capacity(config.sink.len());
    for c in &config.sink {
        let sink = c.check(base).map_err(|problem| EventsConfigError {
            sink: c.name.clone(),
            problem,
        })?;
        if sinks.iter().any(|s| s.name == sink.name) {
            return Err(EventsConfigError {
                sink: sink.name,
                problem: "two sinks have this name: give each its own".into(),
            });
        }
        sinks.push(sink);
    }
    Ok(sinks)
}

impl SinkConfig {
    fn check(&self, base: &Path) -> Result<Sink, String> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(name_ok) {
            return Err("name: 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be above 0".into());
        }
        let given = |key: &str| -> bool {
            match key {
                "url" => !self.url.is_empty(),
                "secret" => !self.secret.is_empty() || !self.secret_file.as_os_str().is_empty(),
                "address" => !self.address.is_empty(),
                "facility" => !self.facility.is_empty(),
                "issuer" => !self.issuer.is_empty(),
                "audience" => !self.audience.is_empty(),
                "key_file" => !self.key_file.as_os_str().is_empty(),
                "kid" => !self.kid.is_empty(),
                "authorization" => {
                    !self.authorization.is_empty()
                        || !self.authorization_file.as_os_str().is_empty()
                }
                "ca_file" => !self.ca_file.as_os_str().is_empty(),
                _ => false,
            }
        };
        let keys: &[&str] = match self.kind.as_str() {
            "webhook" => &["url", "secret", "authorization", "ca_file"],
            "syslog" => &["address", "facility"],
            "ssf" => &[
                "url",
                "issuer",
                "audience",
                "key_file",
                "kid",
                "authorization",
                "ca_file",
            ],
            other => {
                return Err(format!(
                    "kind \"{other}\": expected \"webhook\", \"syslog\" or \"ssf\""
                ))
            }
        };
        let all = [
            "url",
            "secret",
            "address",
            "facility",
            "issuer",
            "audience",
            "key_file",
            "kid",
            "authorization",
            "ca_file",
        ];
        if let Some(stray) = all.into_iter().find(|&k| given(k) && !keys.contains(&k)) {
            return Err(format!("{stray} is not a setting of a {} sink", self.kind));
        }
        let target = match self.kind.as_str() {
            "webhook" => Target::Webhook {
                url: self.http_url()?,
                secret: secret(&self.secret, &self.secret_file, "secret", base)?
                    .ok_or("a webhook sink needs secret or secret_file")?
                    .into_bytes(),
                authorization: self.authorization(base)?,
                tls: self.tls(base)?,
            },
            "syslog" => {
                let (transport, addr) = Transport::parse(&self.address).ok_or_else(|| {
                    format!(
                        "address \"{}\": expected udp://IP:PORT or tcp://IP:PORT",
                        self.address
                    )
                })?;
                let facility = match self.facility.as_str() {
                    "" => Facility::default(),
                    name => Facility::parse(name)
                        .ok_or_else(|| format!("facility \"{name}\" is not a syslog facility"))?,
                };
                Target::Syslog {
                    transport,
                    addr,
                    facility,
                }
            }
            _ => {
                for (key, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
                    if value.is_empty() {
                        return Err(format!("an ssf sink needs {key}"));
                    }
                }
                if self.key_file.as_os_str().is_empty() {
                    return Err("an ssf sink needs key_file".into());
                }
                let path = base.join(&self.key_file);
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| format!("key_file {}: {e}", path.display()))?;
                let signer = SetSigner::new(&pem, &self.kid, &self.issuer, &self.audience)
                    .map_err(|e| format!("key_file {}: {e}", path.display()))?;
                Target::Ssf {
                    url: self.http_url()?,
                    signer: Arc::new(signer),
                    authorization: self.authorization(base)?,
                    tls: self.tls(base)?,
                }
            }
        };
        Ok(Sink {
            name: self.name.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
            target,
        })
    }

    fn http_url(&self) -> Result<String, String> {
        let url = self.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 9 {
            return Err(format!(
                "url \"{}\": expected https://HOST/PATH (or http://)",
                self.url
            ));
        }
        Ok(url.to_string())
    }

    fn authorization(&self, base: &Path) -> Result<Option<String>, String> {
        let value = secret(
            &self.authorization,
            &self.authorization_file,
            "authorization",
            base,
        )?;
        if value.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
            return Err("authorization: one line".into());
        }
        Ok(value)
    }

    fn tls(&self, base: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
        let ca = (!self.ca_file.as_os_str().is_empty()).then(|| base.join(&self.ca_file));
        crate::tls::client_config(ca.as_deref())
            .map(Arc::new)
            .map_err(|e| format!("ca_file {e}"))
    }
}

/// A value given inline or in a file (trimmed); `None` when neither is given.
fn secret(inline: &str, file: &Path, key: &str, base: &Path) -> Result<Option<String>, String> {
    let value = match (inline.is_empty(), file.as_os_str().is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => inline.to_string(),
        (true, false) => {
            let path = base.join(file);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("{key}_file {}: {e}", path.display()))?
        }
        (false, false) => return Err(format!("give {key} or {key}_file, not both")),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{key} is empty"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Sink>, String> {
        let config: EventsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        sinks(&config, Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn events_sinks_of_each_kind_are_read() {
        let sinks = parse(
            "[[sink]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"https://soc.example/hook\"\nsecret = \"s3cret\"\n\
             [[sink]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"tcp://192.0.2.10:6514\"\nfacility = \"local3\"\n",
        )
        .unwrap();
        assert_eq!(sinks.len(), 2);
        assert_eq!(sinks[0].timeout, Duration::from_secs(10));
        assert!(matches!(&sinks[0].target, Target::Webhook { secret, .. } if secret == b"s3cret"));
        assert_eq!(
            sinks[1].describe(),
            "syslog (RFC 5424) over tcp to 192.0.2.10:6514"
        );
    }

    #[test]
    fn events_sinks_that_cannot_work_are_refused_with_the_reason() {
        let cases = [
            ("name = \"a\"\nkind = \"kafka\"", "kind \"kafka\""),
            ("name = \"a b\"\nkind = \"webhook\"", "name:"),
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"https://x.example/\"",
                "needs secret",
            ),
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"ftp://x\"\nsecret = \"k\"",
                "url \"ftp://x\"",
            ),
            (
                "name = \"a\"\nkind = \"webhook\"\nurl = \"https://x.example/\"\nsecret = \"k\"\naddress = \"udp://1.2.3.4:514\"",
                "address is not a setting of a webhook sink",
            ),
            (
                "name = \"a\"\nkind = \"syslog\"\naddress = \"1.2.3.4:514\"",
                "expected udp://IP:PORT",
            ),
            (
                "name = \"a\"\nkind = \"syslog\"\naddress = \"udp://1.2.3.4:514\"\nfacility = \"mail2\"",
                "facility \"mail2\"",
            ),
            (
                "name = \"a\"\nkind = \"ssf\"\nurl = \"https://r.example/push\"\nissuer = \"i\"",
                "needs audience",
            ),
            (
                "name = \"a\"\nkind = \"ssf\"\nurl = \"https://r.example/push\"\nissuer = \"i\"\naudience = \"a\"\nkey_file = \"/nonexistent/key.pem\"",
                "key_file /nonexistent/key.pem",
            ),
            (
                "name = \"a\"\nkind = \"syslog\"\naddress = \"udp://1.2.3.4:514\"\ntimeout_ms = 0",
                "timeout_ms",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(&format!("[[sink]]\n{body}\n")).err().unwrap();
            assert!(error.contains(expected), "{body}: {error}");
        }
        let twice = "[[sink]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"udp://1.2.3.4:514\"\n";
        let error = parse(&format!("{twice}{twice}")).err().unwrap();
        assert!(error.contains("two sinks have this name"), "{error}");
    }
}
