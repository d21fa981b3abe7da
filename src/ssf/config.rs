//! `[ssf]`: the Shared Signals transmitters Cordon accepts Security Event Tokens from, each with
//! the audience its tokens must name and where its signing keys are (a JWKS file, or a URL
//! fetched again on a timer), and the time rules every token is checked by.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[ssf]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsfConfig {
    /// How far in the future a token's `iat` may be (the transmitter's clock ahead of ours), and
    /// how far in the past its `exp`.
    pub max_skew_s: u64,
    /// How old a token's `iat` may be: older tokens are refused as expired, and every accepted
    /// token's `jti` is remembered for this long after its `iat`, so that no replay gets through.
    pub replay_window_s: u64,
    /// `[[ssf.issuer]]`.
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

impl Default for SsfConfig {
    fn default() -> Self {
        SsfConfig {
            max_skew_s: 300,
            replay_window_s: 86_400,
            issuers: Vec::new(),
        }
    }
}

/// `[[ssf.issuer]]`: one transmitter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` of its tokens, exactly.
    pub issuer: String,
    /// What its tokens' `aud` must name: this receiver (usually the push endpoint's URL).
    pub audience: String,
    /// A JWKS file, read at start.
    #[serde(default)]
    pub jwks_file: PathBuf,
    /// Or a JWKS URL, fetched at start and every `jwks_refresh_s`.
    #[serde(default)]
    pub jwks_url: String,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_s: u64,
    /// Timeout of one JWKS fetch.
    #[serde(default = "default_timeout")]
    pub jwks_timeout_ms: u64,
}

fn default_refresh() -> u64 {
    3600
}

fn default_timeout() -> u64 {
    10_000
}

/// An `[ssf]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsfConfigError {
    #[error("ssf.issuer: an issuer needs `issuer` and `audience`")]
    Missing,
    #[error("ssf.issuer \"{0}\" is listed twice")]
    Twice(String),
    #[error("ssf.issuer \"{0}\": give one of jwks_file and jwks_url")]
    Keys(String),
    #[error("ssf.issuer \"{0}\": jwks_url must start with https:// (http:// only for a loopback address)")]
    Scheme(String),
    #[error("{0} must be above 0")]
    Zero(&'static str),
    #[error("ssf.replay_window_s must be at least ssf.max_skew_s")]
    Window,
}

impl SsfConfig {
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    pub fn validate(&self) -> Result<(), SsfConfigError> {
        if self.replay_window_s == 0 {
            return Err(SsfConfigError::Zero("ssf.replay_window_s"));
        }
        if self.replay_window_s < self.max_skew_s {
            return Err(SsfConfigError::Window);
        }
        let mut seen = std::collections::BTreeSet::new();
        for i in &self.issuers {
            if i.issuer.is_empty() || i.audience.is_empty() {
                return Err(SsfConfigError::Missing);
            }
            if !seen.insert(i.issuer.as_str()) {
                return Err(SsfConfigError::Twice(i.issuer.clone()));
            }
            let file = !i.jwks_file.as_os_str().is_empty();
            let url = !i.jwks_url.is_empty();
            if file == url {
                return Err(SsfConfigError::Keys(i.issuer.clone()));
            }
            if url {
                let in_clear = i.jwks_url.strip_prefix("http://");
                if !(i.jwks_url.starts_with("https://")
                    || in_clear.is_some_and(crate::tls::loopback_authority))
                {
                    return Err(SsfConfigError::Scheme(i.issuer.clone()));
                }
                if i.jwks_refresh_s == 0 {
                    return Err(SsfConfigError::Zero("ssf.issuer.jwks_refresh_s"));
                }
                if i.jwks_timeout_ms == 0 {
                    return Err(SsfConfigError::Zero("ssf.issuer.jwks_timeout_ms"));
                }
            }
        }
        Ok(())
    }

    pub fn max_skew(&self) -> i64 {
        i64::try_from(self.max_skew_s).unwrap_or(i64::MAX / 4)
    }

    pub fn replay_window(&self) -> i64 {
        i64::try_from(self.replay_window_s).unwrap_or(i64::MAX / 4)
    }
}

impl IssuerConfig {
    pub fn refresh(&self) -> Duration {
        Duration::from_secs(self.jwks_refresh_s)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.jwks_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(file: &str, url: &str) -> IssuerConfig {
        IssuerConfig {
            issuer: "https://idp.example.com/".into(),
            audience: "https://cordon.example.com/webhooks/ssf".into(),
            jwks_file: file.into(),
            jwks_url: url.into(),
            jwks_refresh_s: 3600,
            jwks_timeout_ms: 1000,
        }
    }

    fn with(issuers: Vec<IssuerConfig>) -> SsfConfig {
        SsfConfig {
            issuers,
            ..SsfConfig::default()
        }
    }

    #[test]
    fn an_issuer_needs_exactly_one_key_source_and_a_safe_url() {
        assert_eq!(with(vec![issuer("k.json", "")]).validate(), Ok(()));
        let url = issuer("", "https://idp.example.com/jwks");
        assert_eq!(with(vec![url]).validate(), Ok(()));
        let local = issuer("", "http://127.0.0.1:8080/jwks");
        assert_eq!(with(vec![local]).validate(), Ok(()));
        for bad in [
            issuer("", ""),
            issuer("k.json", "https://idp.example.com/jwks"),
        ] {
            assert!(matches!(
                with(vec![bad]).validate(),
                Err(SsfConfigError::Keys(_))
            ));
        }
        for url in ["http://idp.example.com/jwks", "http://127.0.0.1@evil/jwks"] {
            let bad = with(vec![issuer("", url)]).validate();
            assert!(matches!(bad, Err(SsfConfigError::Scheme(_))), "{url}");
        }
        let twice = with(vec![issuer("a", ""), issuer("b", "")]).validate();
        assert!(matches!(twice, Err(SsfConfigError::Twice(_))));
    }

    #[test]
    fn the_defaults_and_the_window_rule() {
        let c: SsfConfig = toml::from_str("").unwrap();
        assert_eq!((c.max_skew_s, c.replay_window_s), (300, 86_400));
        assert!(!c.enabled());
        let c = SsfConfig {
            max_skew_s: 600,
            replay_window_s: 60,
            issuers: Vec::new(),
        };
        assert_eq!(c.validate(), Err(SsfConfigError::Window));
        let text = "[[issuer]]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://i/jwks\"\n";
        let c: SsfConfig = toml::from_str(text).unwrap();
        assert_eq!(c.issuers[0].jwks_refresh_s, 3600);
        assert!(c.enabled());
    }
}
