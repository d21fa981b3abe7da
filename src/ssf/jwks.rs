//! A transmitter's signing keys (RFC 7517 JWK Set), by `kid`: read from a file at start, or
//! fetched from a URL at start, on a timer and when a token names a key not held yet (a
//! rotation), with the blocking `ureq` client the lists and the Jamf adapter use. A fetch that
//! fails, or brings no usable key, keeps the keys in force.
//!
//! Only signature keys Cordon can verify are kept: RSA of 2048 bits or more (RS256) and EC on
//! P-256 (ES256). Any other key in the set (encryption keys, other curves, other types) is
//! skipped with a warning, never an error for the rest.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The largest JWKS accepted, in bytes.
const MAX_JWKS: u64 = 1 << 20;

/// However often tokens name unknown keys, the URL is fetched at most this often for them.
const MIN_REFETCH: Duration = Duration::from_secs(60);

/// After a failed fetch, the next is tried this soon (or at the refresh interval, if sooner).
const RETRY: Duration = Duration::from_secs(60);

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The usable keys of one JWK Set.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why no key verifies a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no key with kid \"{0}\" in the issuer's JWKS")]
    UnknownKid(String),
    #[error("key \"{kid}\" is for {key:?}, the token is signed {token:?}")]
    WrongAlgorithm {
        kid: String,
        key: Algorithm,
        token: Algorithm,
    },
    #[error("the token names no kid, and the issuer's JWKS holds {0} {1:?} keys (one is needed)")]
    NoKid(usize, Algorithm),
}

/// A JWK as read: only what the two key types need.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The usable keys of a JWKS document, and why each other key was skipped. A document that
    /// is not a JWKS, or holds no usable key, is an error.
    pub fn parse(bytes: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let raw: RawSet =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set: {e}"))?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (at, value) in raw.keys.into_iter().enumerate() {
            let parsed = serde_json::from_value::<RawKey>(value)
                .map_err(|e| e.to_string())
                .and_then(|raw| key(&raw));
            match parsed {
                Ok(k) => set.keys.push(k),
                Err(why) => skipped.push(format!("key {at}: {why}")),
            }
        }
        if set.keys.is_empty() {
            let why = if skipped.is_empty() {
                "no keys".to_string()
            } else {
                skipped.join("; ")
            };
            return Err(format!("no usable signature key (RS256, ES256): {why}"));
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that verifies a token signed `alg` naming `kid`. Without a kid, the one key for
    /// `alg`, if there is exactly one.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, KeyError> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| KeyError::UnknownKid(kid.to_string()))?;
                if key.alg != alg {
                    return Err(KeyError::WrongAlgorithm {
                        kid: kid.to_string(),
                        key: key.alg,
                        token: alg,
                    });
                }
                Ok(key)
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.alg == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(KeyError::NoKid(
                        self.keys.iter().filter(|k| k.alg == alg).count(),
                        alg,
                    )),
                }
            }
        }
    }
}

fn decode(field: &str, value: &Option<String>) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("no \"{field}\""))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("\"{field}\" is not base64url: {e}"))
}

/// One usable key, or why not.
fn key(raw: &RawKey) -> Result<Key, String> {
    if raw.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err(format!(
            "\"use\": \"{}\" is not a signature key",
            raw.usage.as_deref().unwrap_or_default()
        ));
    }
    let (alg, key) = match raw.kty.as_str() {
        "RSA" => {
            let n = decode("n", &raw.n)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(format!("an RSA key of {bits} bits (2048 or more needed)"));
            }
            let e = decode("e", &raw.e)?;
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            if raw.crv.as_deref() != Some("P-256") {
                return Err(format!(
                    "an EC key on {} (only P-256 is verified)",
                    raw.crv.as_deref().unwrap_or("no curve")
                ));
            }
            let (x, y) = (decode("x", &raw.x)?, decode("y", &raw.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 key's x and y are 32 bytes each".to_string());
            }
            let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
            let key = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
            (Algorithm::ES256, key)
        }
        other => return Err(format!("key type \"{other}\" (RSA and EC are verified)")),
    };
    let named = match alg {
        Algorithm::RS256 => "RS256",
        _ => "ES256",
    };
    if let Some(stated) = raw.alg.as_deref().filter(|a| *a != named) {
        return Err(format!(
            "\"alg\": \"{stated}\" (a {} key is verified as {named})",
            raw.kty
        ));
    }
    Ok(Key {
        kid: raw.kid.clone(),
        alg,
        key,
    })
}

/// The keys in force for one transmitter, replaced whole by a good fetch.
pub struct Jwks {
    /// Where the keys come from, for messages: the file or the URL.
    pub source: String,
    keys: ArcSwap<KeySet>,
    /// Set when a token named a key not held: the refresh task fetches soon.
    wanted: tokio::sync::Notify,
}

impl Jwks {
    /// The keys of a JWKS file.
    pub fn load_file(path: &Path) -> Result<Jwks, String> {
        let source = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("{source}: {e}"))?;
        let (set, skipped) = KeySet::parse(&bytes).map_err(|e| format!("{source}: {e}"))?;
        for why in skipped {
            tracing::warn!("{source}: skipped {why}");
        }
        Ok(Jwks::with(source, set))
    }

    pub fn with(source: String, set: KeySet) -> Jwks {
        Jwks {
            source,
            keys: ArcSwap::from_pointee(set),
            wanted: tokio::sync::Notify::new(),
        }
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    pub fn replace(&self, set: KeySet) {
        self.keys.store(Arc::new(set));
    }

    /// A token named a key not held: ask the refresh task (if any) to fetch.
    pub fn want_refresh(&self) {
        self.wanted.notify_one();
    }
}

/// Fetches one JWKS URL.
pub struct Fetcher {
    url: String,
    agent: ureq::Agent,
}

impl Fetcher {
    pub fn new(url: &str, timeout: Duration) -> Fetcher {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .user_agent(concat!("cordon/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            url: url.to_string(),
            agent,
        }
    }

    /// One fetch (blocking): the usable keys, or why none.
    pub fn fetch(&self) -> Result<KeySet, String> {
        let url = &self.url;
        let response = self
            .agent
            .get(url)
            .set("Accept", "application/jwk-set+json, application/json")
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(status, _) => format!("{url}: HTTP {status}"),
                ureq::Error::Transport(t) => format!("{url}: {t}"),
            })?;
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_JWKS + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{url}: {e}"))?;
        if bytes.len() as u64 > MAX_JWKS {
            return Err(format!("{url}: larger than {MAX_JWKS} bytes"));
        }
        let (set, skipped) = KeySet::parse(&bytes).map_err(|e| format!("{url}: {e}"))?;
        for why in skipped {
            tracing::warn!("{url}: skipped {why}");
        }
        Ok(set)
    }
}

/// Fetches `fetcher`'s URL into `jwks` now (waiting for it) and then in the background every
/// `every`, and soon after a token names an unknown key; a failure keeps the keys in force and
/// is tried again within a minute. The task ends when `jwks` is dropped everywhere else.
pub async fn start_refresh(jwks: Arc<Jwks>, fetcher: Fetcher, every: Duration) {
    let fetcher = Arc::new(fetcher);
    let mut ok = refresh(&jwks, &fetcher).await;
    let weak = Arc::downgrade(&jwks);
    drop(jwks);
    tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            let wait = if ok { every } else { every.min(RETRY) };
            let Some(jwks) = weak.upgrade() else { return };
            let wanted = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = jwks.wanted.notified() => true,
            };
            if wanted {
                // A burst of unknown kids costs one fetch a minute at most.
                let since = last.elapsed();
                if since < MIN_REFETCH {
                    tokio::time::sleep(MIN_REFETCH - since).await;
                }
            }
            ok = refresh(&jwks, &fetcher).await;
            last = Instant::now();
        }
    });
}

/// One fetch on the blocking pool; true if the keys were replaced.
async fn refresh(jwks: &Arc<Jwks>, fetcher: &Arc<Fetcher>) -> bool {
    let f = fetcher.clone();
    let fetched = tokio::task::spawn_blocking(move || f.fetch())
        .await
        .unwrap_or_else(|e| Err(format!("the fetch stopped: {e}")));
    match fetched {
        Ok(set) => {
            tracing::info!("ssf: {} keys from {}", set.len(), jwks.source);
            jwks.replace(set);
            true
        }
        Err(e) => {
            let held = jwks.current().len();
            tracing::warn!("ssf: JWKS fetch failed, the {held} keys in force stay: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EC P-256 public key (x, y) and a 2048-bit RSA modulus, base64url: shapes only; these
    /// unit tests verify no signature (tests/it/ssf.rs signs with real keys).
    fn ec(kid: &str) -> serde_json::Value {
        let coordinate = URL_SAFE_NO_PAD.encode([7u8; 32]);
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": coordinate, "y": coordinate})
    }

    fn rsa(kid: &str, bytes: usize) -> serde_json::Value {
        let mut n = vec![0xc5u8; bytes];
        n[0] = 0xd1;
        serde_json::json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
    }

    fn set(keys: Vec<serde_json::Value>) -> Result<(KeySet, Vec<String>), String> {
        KeySet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn keys_are_found_by_kid_and_algorithm() {
        let (keys, skipped) = set(vec![ec("e1"), rsa("r1", 256)]).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys.find(Some("e1"), Algorithm::ES256).unwrap().alg,
            Algorithm::ES256
        );
        assert_eq!(
            keys.find(Some("r1"), Algorithm::RS256).unwrap().alg,
            Algorithm::RS256
        );
        assert_eq!(
            keys.find(Some("nope"), Algorithm::RS256).err(),
            Some(KeyError::UnknownKid("nope".into()))
        );
        assert!(matches!(
            keys.find(Some("e1"), Algorithm::RS256),
            Err(KeyError::WrongAlgorithm { .. })
        ));
        // Without a kid: the one key of the token's algorithm.
        assert!(keys.find(None, Algorithm::ES256).is_ok());
        let (two, _) = set(vec![ec("a"), ec("b")]).unwrap();
        assert_eq!(
            two.find(None, Algorithm::ES256).err(),
            Some(KeyError::NoKid(2, Algorithm::ES256))
        );
    }

    #[test]
    fn unusable_keys_are_skipped_and_a_set_without_any_is_refused() {
        let mut enc = ec("enc");
        enc["use"] = "enc".into();
        let mut p384 = ec("p384");
        p384["crv"] = "P-384".into();
        let mut hs = ec("hs");
        hs["alg"] = "HS256".into();
        let okp = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
        let (keys, skipped) =
            set(vec![enc, p384, rsa("small", 128), okp, hs, rsa("ok", 384)]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(skipped[2].contains("1024 bits"), "{skipped:?}");
        assert!(set(vec![rsa("small", 128)]).is_err());
        assert!(set(vec![]).is_err());
        assert!(KeySet::parse(b"<html>").is_err());
        assert!(KeySet::parse(br#"{"keys": "no"}"#).is_err());
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_keys_in_force() {
        use std::io::Write;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        // A JWKS server that answers once, then 500.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let body = serde_json::json!({ "keys": [ec("k")] }).to_string();
                let answer = if count.fetch_add(1, SeqCst) == 0 {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let jwks = Arc::new(Jwks::with("test".into(), KeySet::default()));
        let fetcher = Fetcher::new(&format!("http://{addr}/jwks"), Duration::from_secs(2));
        start_refresh(jwks.clone(), fetcher, Duration::from_millis(50)).await;
        assert_eq!(jwks.current().len(), 1, "fetched at start");
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.load(SeqCst) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served.load(SeqCst) >= 3, "fetched again on the timer");
        assert_eq!(jwks.current().len(), 1, "the keys in force stay");
    }

    #[test]
    fn a_jwks_file_that_is_missing_or_holds_no_key_fails_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let missing = Jwks::load_file(&path).err().unwrap();
        assert!(missing.contains("jwks.json"), "{missing}");
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        assert!(Jwks::load_file(&path).is_err());
        std::fs::write(&path, serde_json::json!({"keys": [ec("k")]}).to_string()).unwrap();
        assert_eq!(Jwks::load_file(&path).unwrap().current().len(), 1);
    }
}
