//! The checks a Security Event Token (RFC 8417) passes before anything it says is believed: a
//! compact JWS signed RS256 or ES256 by a key of its issuer's JWKS, typed as a SET if typed at
//! all, from a configured issuer, for this receiver's audience, issued neither in the future nor
//! longer ago than the replay window, with a `jti` and events. Each refusal carries the error
//! code of RFC 8935 section 2.3 that the receiver answers with.
//!
//! The replay check itself is the writer's (`control::Request::Once`): only it can check and
//! record a `jti` atomically, for every node.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::jwks::{Jwks, KeyError};

/// RFC 8935's error codes (the "Security Event Token Error Codes" registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
    AuthenticationFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::InvalidIssuer => "invalid_issuer",
            ErrorCode::InvalidAudience => "invalid_audience",
            ErrorCode::AuthenticationFailed => "authentication_failed",
        }
    }
}

/// A token refused: the code, and a description for the transmitter's logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", .code.as_str())]
pub struct Refused {
    pub code: ErrorCode,
    pub description: String,
    /// The configured issuer the token came from, once known (for the metric's label).
    pub issuer: Option<usize>,
}

fn refused(code: ErrorCode, description: impl Into<String>) -> Refused {
    Refused {
        code,
        description: description.into(),
        issuer: None,
    }
}

/// One transmitter, as the checks need it.
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    pub keys: Arc<Jwks>,
}

/// The claims of a SET that Cordon reads. Unknown claims are allowed.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub aud: Option<Audience>,
    /// Seconds since the epoch (a NumericDate: a fraction is dropped).
    #[serde(deserialize_with = "numeric_date")]
    pub iat: i64,
    #[serde(default, deserialize_with = "optional_date")]
    pub exp: Option<i64>,
    pub jti: String,
    /// Event type URI -> its payload.
    pub events: BTreeMap<String, serde_json::Value>,
    /// The subject (RFC 9493), at the top level as SSF 1.0 has it.
    #[serde(default)]
    pub sub_id: Option<serde_json::Value>,
    #[serde(default)]
    pub txn: Option<String>,
}

/// A NumericDate (RFC 7519): a JSON number of seconds, whole or not.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a NumericDate")))
}

fn optional_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    numeric_date(d).map(Some)
}

/// `aud`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Which configured issuer.
    pub issuer: usize,
    pub claims: Claims,
    /// Until when (seconds since the epoch) its `jti` must be remembered: after that, a replay
    /// is refused by its `iat` alone.
    pub remember_until: i64,
}

/// The checks, for every configured issuer.
pub struct Verifier {
    pub issuers: Vec<Issuer>,
    /// Seconds a token's `iat` may be ahead of our clock (and its `exp` behind it).
    pub max_skew: i64,
    /// Seconds a token's `iat` may be behind our clock.
    pub window: i64,
}

/// The longest `jti` accepted: a key the store keeps.
const MAX_JTI: usize = 256;

impl Verifier {
    /// Checks `token` (the request body) at `now` (seconds since the epoch).
    pub fn verify(&self, token: &[u8], now: i64) -> Result<Verified, Refused> {
        let invalid = |d: String| refused(ErrorCode::InvalidRequest, d);
        let token = std::str::from_utf8(token)
            .map_err(|_| invalid("the body is not a compact JWS: not text".into()))?
            .trim();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(invalid(
                "the body is not a compact JWS (three base64url parts joined by dots)".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("the JWS header does not parse: {e}")))?;
        if let Some(typ) = header.typ.as_deref() {
            let typ = typ.to_ascii_lowercase();
            if typ.strip_prefix("application/").unwrap_or(&typ) != "secevent+jwt" {
                return Err(invalid(format!(
                    "the JWS is typed \"{typ}\", not a Security Event Token (secevent+jwt)"
                )));
            }
        }
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid(format!(
                "alg {:?} is not accepted (RS256, ES256)",
                header.alg
            )));
        }
        // The issuer picks the keys: read it before the signature is checked, believe it only
        // after.
        let claimed = unverified_issuer(parts[1]).map_err(invalid)?;
        let at = self
            .issuers
            .iter()
            .position(|i| i.issuer == claimed)
            .ok_or_else(|| {
                refused(
                    ErrorCode::InvalidIssuer,
                    format!("issuer \"{claimed}\" is not configured"),
                )
            })?;
        let with_issuer = |mut r: Refused| {
            r.issuer = Some(at);
            r
        };
        let issuer = &self.issuers[at];
        let keys = issuer.keys.current();
        let key = keys.find(header.kid.as_deref(), header.alg).map_err(|e| {
            if matches!(e, KeyError::UnknownKid(_)) {
                issuer.keys.want_refresh();
            }
            with_issuer(refused(ErrorCode::InvalidKey, e.to_string()))
        })?;
        let mut validation = Validation::new(header.alg);
        // Time and audience are checked below, with RFC 8935's codes; a SET need not expire.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| {
                let code = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        ErrorCode::AuthenticationFailed
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                    | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                    | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey => ErrorCode::InvalidKey,
                    _ => ErrorCode::InvalidRequest,
                };
                with_issuer(refused(code, format!("the signature does not verify: {e}")))
            })?;
        let claims: Claims = serde_json::from_value(data.claims)
            .map_err(|e| with_issuer(invalid(format!("the SET's claims: {e}"))))?;
        self.check(claims, at, now).map_err(with_issuer)
    }

    /// The checks of the authenticated claims.
    fn check(&self, claims: Claims, at: usize, now: i64) -> Result<Verified, Refused> {
        let issuer = &self.issuers[at];
        let invalid = |d: String| refused(ErrorCode::InvalidRequest, d);
        if claims.iss != issuer.issuer {
            return Err(refused(
                ErrorCode::InvalidIssuer,
                format!("issuer \"{}\" is not configured", claims.iss),
            ));
        }
        match &claims.aud {
            Some(aud) if aud.contains(&issuer.audience) => {}
            Some(_) => {
                return Err(refused(
                    ErrorCode::InvalidAudience,
                    format!("aud does not name this receiver ({})", issuer.audience),
                ))
            }
            None => {
                return Err(refused(
                    ErrorCode::InvalidAudience,
                    format!("the SET has no aud; this receiver is {}", issuer.audience),
                ))
            }
        }
        if claims.iat > now.saturating_add(self.max_skew) {
            return Err(invalid(format!(
                "iat {} is {} s in the future (at most {} s of clock skew)",
                claims.iat,
                claims.iat - now,
                self.max_skew
            )));
        }
        if claims.iat < now.saturating_sub(self.window) {
            return Err(invalid(format!(
                "the SET has expired: iat {} is {} s old (at most {} s)",
                claims.iat,
                now - claims.iat,
                self.window
            )));
        }
        if let Some(exp) = claims.exp {
            if exp < now.saturating_sub(self.max_skew) {
                return Err(invalid(format!("the SET has expired: exp {exp}")));
            }
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI {
            return Err(invalid(format!("jti must be 1 to {MAX_JTI} characters")));
        }
        if claims.events.is_empty() {
            return Err(invalid("the SET holds no events".into()));
        }
        Ok(Verified {
            issuer: at,
            remember_until: claims.iat.saturating_add(self.window),
            claims,
        })
    }
}

/// The `iss` of a JWS payload, unverified.
fn unverified_issuer(payload: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| format!("the JWS payload is not base64url: {e}"))?;
    let iss: Iss = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the JWS payload is not a JSON object of claims: {e}"))?;
    iss.iss
        .filter(|i| !i.is_empty())
        .ok_or_else(|| "the SET has no iss".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        let keys = Arc::new(Jwks::with("test".into(), Default::default()));
        Verifier {
            issuers: vec![Issuer {
                issuer: "https://idp.example.com/tenant-7/".into(),
                audience: "https://cordon.example.com/webhooks/ssf".into(),
                keys,
            }],
            max_skew: 300,
            window: 86_400,
        }
    }

    fn b64(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token with this header and payload and a signature of no key.
    fn token(header: serde_json::Value, payload: serde_json::Value) -> Vec<u8> {
        format!("{}.{}.c2ln", b64(header), b64(payload)).into_bytes()
    }

    fn payload() -> serde_json::Value {
        let text = include_str!("../../tests/fixtures/ssf/device-compliance-change.payload.json");
        serde_json::from_str(text).unwrap()
    }

    fn code(result: Result<Verified, Refused>) -> (&'static str, String) {
        let e = result.expect_err("refused");
        (e.code.as_str(), e.description)
    }

    #[test]
    fn what_is_not_a_set_is_an_invalid_request() {
        let v = verifier();
        let es = serde_json::json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "k"});
        for body in [
            &b"not a jwt"[..],
            &b"a.b"[..],
            &b"a..c"[..],
            &b"\xff.\xfe.\xfd"[..],
            &b"e30.e30.e30"[..],
        ] {
            assert_eq!(code(v.verify(body, 0)).0, "invalid_request", "{body:?}");
        }
        let none = token(serde_json::json!({"alg": "none"}), payload());
        assert_eq!(code(v.verify(&none, 0)).0, "invalid_request");
        let hs = token(serde_json::json!({"alg": "HS256"}), payload());
        let (c, d) = code(v.verify(&hs, 0));
        assert_eq!(c, "invalid_request");
        assert!(d.contains("HS256"), "{d}");
        let id_token = token(serde_json::json!({"alg": "ES256", "typ": "JWT"}), payload());
        let (c, d) = code(v.verify(&id_token, 0));
        assert_eq!(c, "invalid_request");
        assert!(d.contains("secevent+jwt"), "{d}");
        let no_iss = token(es.clone(), serde_json::json!({"jti": "x"}));
        assert_eq!(code(v.verify(&no_iss, 0)).1, "the SET has no iss");
        let mut stranger = payload();
        stranger["iss"] = "https://evil.example/".into();
        let (c, _) = code(v.verify(&token(es.clone(), stranger), 0));
        assert_eq!(c, "invalid_issuer");
        // A known issuer whose keys do not hold the kid.
        let e = v.verify(&token(es, payload()), 0).err().unwrap();
        assert_eq!((e.code, e.issuer), (ErrorCode::InvalidKey, Some(0)));
    }

    #[test]
    fn the_claims_checks_use_rfc_8935_codes() {
        let v = verifier();
        let claims = |edit: &dyn Fn(&mut serde_json::Value)| -> Claims {
            let mut p = payload();
            edit(&mut p);
            serde_json::from_value(p).unwrap()
        };
        let iat = 1_763_712_100;
        let ok = v.check(claims(&|_| {}), 0, iat + 10).unwrap();
        assert_eq!(ok.remember_until, iat + 86_400);
        assert_eq!(ok.claims.jti, "5d0b6f2c9e8a4b7d");
        let many = claims(&|p| {
            p["aud"] = serde_json::json!(["other", "https://cordon.example.com/webhooks/ssf"])
        });
        assert!(v.check(many, 0, iat).is_ok());
        type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
        let cases: [(Edit, i64, &str); 6] = [
            (
                &|p| p["aud"] = "https://other.example/".into(),
                iat,
                "invalid_audience",
            ),
            (
                &|p| _ = p.as_object_mut().unwrap().remove("aud"),
                iat,
                "invalid_audience",
            ),
            (&|_| {}, iat - 301, "invalid_request"),
            (&|_| {}, iat + 86_401, "invalid_request"),
            (&|p| p["exp"] = (iat - 400).into(), iat, "invalid_request"),
            (
                &|p| p["events"] = serde_json::json!({}),
                iat,
                "invalid_request",
            ),
        ];
        for (edit, now, expected) in cases {
            let result = v.check(claims(edit), 0, now);
            assert_eq!(code(result).0, expected);
        }
        // A future iat within the skew is accepted.
        assert!(v.check(claims(&|_| {}), 0, iat - 300).is_ok());
        let long = claims(&|p| p["jti"] = "j".repeat(MAX_JTI + 1).into());
        assert_eq!(code(v.check(long, 0, iat)).0, "invalid_request");
        // A NumericDate may have a fraction; a date as text is no date.
        let fraction = claims(&|p| p["iat"] = serde_json::json!(1_763_712_100.5));
        assert_eq!(fraction.iat, iat);
        let mut text = payload();
        text["iat"] = "1763712100".into();
        assert!(serde_json::from_value::<Claims>(text).is_err());
    }
}
