//! `[[feed]]` of the config file: the zone, its primary, the TSIG key and the category it feeds,
//! checked once at start (and by `cordon check`) into a [`Feed`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use serde::Deserialize;

use crate::policy::{CategoryId, Taxonomy};

/// One `[[feed]]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// What metrics and logs call the feed; the zone's name when left out.
    #[serde(default)]
    pub name: String,
    /// `IP:PORT` (or `IP`, port 53) of the primary: transfers go there, NOTIFYs come from there.
    pub primary: String,
    pub zone: String,
    /// A category name from categories.toml.
    pub category: String,
    /// How often the primary is asked for changes; the zone's SOA refresh when left out.
    #[serde(default)]
    pub refresh_s: Option<u64>,
    /// The whole of one transfer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub tsig: Option<TsigConfig>,
}

fn default_timeout_ms() -> u64 {
    120_000
}

/// `[feed.tsig]`: the key transfers are signed with (RFC 8945).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigConfig {
    pub name: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The key, base64, as `tsig-keygen` and `keymgr` print it.
    #[serde(default)]
    pub secret: String,
    /// A file holding the base64 key instead (relative to the config file).
    #[serde(default)]
    pub secret_file: PathBuf,
}

fn default_algorithm() -> String {
    "hmac-sha256".into()
}

const ALGORITHMS: &[&str] = &["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// A feed, ready to follow.
#[derive(Clone)]
pub struct Feed {
    pub name: String,
    pub primary: SocketAddr,
    pub zone: Name,
    pub category: CategoryId,
    pub tsig: Option<TSigner>,
    pub refresh: Option<Duration>,
    pub timeout: Duration,
}

/// A `[[feed]]` that cannot be followed, and why.
#[derive(Debug, thiserror::Error)]
#[error("feed \"{feed}\": {problem}")]
pub struct FeedConfigError {
    pub feed: String,
    pub problem: String,
}

/// Checks every `[[feed]]` against the categories of `taxonomy` (and reads key files relative
/// to `base`).
pub fn feeds(
    configs: &[FeedConfig],
    base: &Path,
    taxonomy: &Taxonomy,
) -> Result<Vec<Feed>, FeedConfigError> {
    let mut feeds: Vec<Feed> = Vec::with_capacity(configs.len());
    for config in configs {
        let feed = config.check(base, taxonomy)?;
        if feeds.iter().any(|f| f.name == feed.name) {
            return Err(config.error("two feeds have this name: give each its own `name`".into()));
        }
        feeds.push(feed);
    }
    Ok(feeds)
}

impl FeedConfig {
    fn error(&self, problem: String) -> FeedConfigError {
        let feed = match self.name.is_empty() {
            true => self.zone.clone(),
            false => self.name.clone(),
        };
        FeedConfigError { feed, problem }
    }

    fn check(&self, base: &Path, taxonomy: &Taxonomy) -> Result<Feed, FeedConfigError> {
        let primary = primary_addr(&self.primary)
            .ok_or_else(|| self.error(format!("primary \"{}\" is not IP:PORT", self.primary)))?;
        let zone = Name::from_ascii(self.zone.trim_end_matches('.'))
            .ok()
            .filter(|z| z.iter().count() > 0)
            .ok_or_else(|| self.error(format!("zone \"{}\" is not a domain name", self.zone)))?;
        let category = taxonomy.id(&self.category).ok_or_else(|| {
            self.error(format!(
                "category \"{}\" is not in categories.toml",
                self.category
            ))
        })?;
        if self.timeout_ms == 0 {
            return Err(self.error("timeout_ms must be above 0".into()));
        }
        if self.refresh_s == Some(0) {
            return Err(self.error("refresh_s must be above 0".into()));
        }
        let tsig = match &self.tsig {
            Some(t) => Some(t.signer(base).map_err(|p| self.error(p))?),
            None => None,
        };
        let mut zone = zone.to_lowercase();
        zone.set_fqdn(true);
        Ok(Feed {
            name: match self.name.is_empty() {
                true => zone.to_ascii().trim_end_matches('.').to_string(),
                false => self.name.clone(),
            },
            primary,
            zone,
            category,
            tsig,
            refresh: self.refresh_s.map(Duration::from_secs),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

impl TsigConfig {
    fn signer(&self, base: &Path) -> Result<TSigner, String> {
        let algorithm = self.algorithm.to_ascii_lowercase();
        if !ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(format!(
                "tsig.algorithm \"{}\": expected one of {}",
                self.algorithm,
                ALGORITHMS.join(", ")
            ));
        }
        let text = match (
            self.secret.is_empty(),
            self.secret_file.as_os_str().is_empty(),
        ) {
            (false, true) => self.secret.clone(),
            (true, false) => {
                let path = base.join(&self.secret_file);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("tsig.secret_file {}: {e}", path.display()))?
            }
            _ => return Err("tsig: give secret or secret_file (one of them)".into()),
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("tsig secret is not base64: {e}"))?;
        if key.is_empty() {
            return Err("tsig secret is empty".into());
        }
        let name = Name::from_ascii(&self.name)
            .map_err(|e| format!("tsig.name \"{}\": {e}", self.name))?;
        let algorithm =
            TsigAlgorithm::from_name(Name::from_ascii(&algorithm).map_err(|e| e.to_string())?);
        // The fudge BIND and Knot use: five minutes of clock difference either way.
        TSigner::new(key, algorithm, name, 300).map_err(|e| format!("tsig: {e}"))
    }
}

/// `IP:PORT`, or `IP` alone for port 53.
fn primary_addr(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taxonomy() -> Taxonomy {
        let mut t = Taxonomy::new();
        t.insert(CategoryId::new(0).unwrap(), "malware");
        t
    }

    fn config(text: &str) -> FeedConfig {
        toml::from_str(text).unwrap()
    }

    fn problem(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        match feeds(&[config(text)], dir.path(), &taxonomy()) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str =
        "primary = \"127.0.0.1:5300\"\nzone = \"rpz.test\"\ncategory = \"malware\"\n";

    #[test]
    fn a_feed_is_named_after_its_zone_and_its_primary_defaults_to_port_53() {
        let dir = tempfile::tempdir().unwrap();
        let text = "primary = \"192.0.2.1\"\nzone = \"RPZ.Test.\"\ncategory = \"malware\"\n";
        let f = &feeds(&[config(text)], dir.path(), &taxonomy()).unwrap()[0];
        assert_eq!(f.name, "rpz.test");
        assert_eq!(f.primary, "192.0.2.1:53".parse().unwrap());
        assert_eq!(f.zone.to_ascii(), "rpz.test.");
        assert!(f.tsig.is_none());
    }

    #[test]
    fn a_tsig_key_is_read_inline_or_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "c2VjcmV0LWtleS1ieXRlcw==\n").unwrap();
        let text = format!("{BASE}[tsig]\nname = \"xfr\"\nsecret_file = \"key\"\n");
        let f = &feeds(&[config(&text)], dir.path(), &taxonomy()).unwrap()[0];
        let key = f.tsig.as_ref().unwrap();
        assert_eq!(key.key(), b"secret-key-bytes");
        assert_eq!(key.signer_name().to_ascii(), "xfr.");
        let inline = format!("{BASE}[tsig]\nname = \"xfr\"\nsecret = \"c2VjcmV0\"\n");
        assert_eq!(problem(&inline), "ok");
    }

    #[test]
    fn a_broken_feed_says_what_is_wrong() {
        let cases = [
            (
                "primary = \"nowhere\"\nzone = \"z\"\ncategory = \"malware\"\n",
                "primary \"nowhere\" is not IP:PORT",
            ),
            (
                "primary = \"127.0.0.1\"\nzone = \"z\"\ncategory = \"ads\"\n",
                "category \"ads\" is not in categories.toml",
            ),
            (
                "primary = \"127.0.0.1\"\nzone = \".\"\ncategory = \"malware\"\n",
                "zone \".\" is not a domain name",
            ),
        ];
        for (text, expected) in cases {
            assert!(problem(text).contains(expected), "{}", problem(text));
        }
        let tsig = |rest: &str| problem(&format!("{BASE}[tsig]\nname = \"k\"\n{rest}"));
        assert!(tsig("").contains("give secret or secret_file"));
        assert!(tsig("secret = \"!!\"").contains("not base64"));
        assert!(tsig("secret = \"c2VjcmV0\"\nalgorithm = \"hmac-md5\"").contains("expected one of"));
        assert!(tsig("secret_file = \"missing\"").contains("tsig.secret_file"));
        let dir = tempfile::tempdir().unwrap();
        let two = [config(BASE), config(BASE)];
        let e = feeds(&two, dir.path(), &taxonomy()).err().unwrap();
        assert!(e.to_string().contains("two feeds have this name"), "{e}");
    }
}
