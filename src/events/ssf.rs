//! The Shared Signals transmitter: an isolation placed or released becomes a Security Event
//! Token (RFC 8417) with a CAEP `device-compliance-change` event, signed ES256 or RS256 and
//! pushed to the receiver (RFC 8935). Other events are not compliance changes: this sink passes
//! them by.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::event::Event;

/// The CAEP event type a SET carries.
pub const DEVICE_COMPLIANCE_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";

/// Signs SETs as one issuer for one audience.
pub struct SetSigner {
    key: EncodingKey,
    alg: Algorithm,
    kid: String,
    issuer: String,
    audience: String,
}

impl SetSigner {
    /// The signer for the PEM key `pem`: PKCS#8 EC P-256 (ES256), or RSA in PKCS#8 or PKCS#1
    /// (RS256). The key is tried once here, so that a key ring cannot use fails at start.
    pub fn new(pem: &str, kid: &str, issuer: &str, audience: &str) -> Result<SetSigner, String> {
        let (label, der) = pem_block(pem).ok_or("not a PEM file")?;
        let (alg, key) = match label.as_str() {
            "RSA PRIVATE KEY" => (Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
            "PRIVATE KEY" => match pkcs8(&der).ok_or("not a PKCS#8 private key")? {
                (Pkcs8::Ec, _) => (Algorithm::ES256, EncodingKey::from_ec_der(&der)),
                (Pkcs8::Rsa, inner) => (Algorithm::RS256, EncodingKey::from_rsa_der(inner)),
            },
            "EC PRIVATE KEY" => {
                return Err("an SEC1 EC key: convert it to PKCS#8 \
                            (openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8)"
                    .into())
            }
            other => return Err(format!("a PEM \"{other}\", not a private key")),
        };
        let signer = SetSigner {
            key,
            alg,
            kid: kid.to_string(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        };
        signer
            .sign(&json!({"try": true}))
            .map_err(|e| format!("cannot sign {alg:?} with it ({e}); ES256 needs a P-256 key"))?;
        Ok(signer)
    }

    pub fn algorithm(&self) -> &'static str {
        match self.alg {
            Algorithm::ES256 => "ES256",
            _ => "RS256",
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn sign(&self, claims: &serde_json::Value) -> Result<String, jsonwebtoken::errors::Error> {
        let header = Header {
            alg: self.alg,
            typ: Some("secevent+jwt".into()),
            kid: (!self.kid.is_empty()).then(|| self.kid.clone()),
            ..Header::default()
        };
        jsonwebtoken::encode(&header, claims, &self.key)
    }

    /// The signed SET for `event`, issued at `now`; `None` for an event that is no compliance
    /// change. The `jti` is the event's id, the same on every try, so that a receiver can tell
    /// a retry from a new event; `iat` is the time of this try.
    pub fn set(&self, event: &Event, now: i64) -> Option<Result<String, String>> {
        let (current, previous) = match event.kind {
            // The device's state, not the hold: an MDM isolation counts, and a hold on a device
            // its MDM group isolates already changes nothing a receiver should hear.
            "device_isolated" => ("not-compliant", "compliant"),
            "device_released" => ("compliant", "not-compliant"),
            _ => return None,
        };
        let device = event.device.as_ref()?;
        let initiating = match event.actor.as_str() {
            "expiry" => "system",
            "tripwire" => "policy",
            _ => "admin",
        };
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "jti": format!("cordon-event-{}", event.id),
            "sub_id": {
                "format": "complex",
                "device": {"format": "opaque", "id": device.best_name()},
            },
            "events": {
                DEVICE_COMPLIANCE_CHANGE: {
                    "current_status": current,
                    "previous_status": previous,
                    "initiating_entity": initiating,
                    "reason_admin": {"en": event.reason},
                    "event_timestamp": event.at,
                }
            }
        });
        Some(self.sign(&claims).map_err(|e| e.to_string()))
    }
}

/// The first PEM block's label and DER bytes.
fn pem_block(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label, der))
}

/// What a PKCS#8 key holds.
enum Pkcs8 {
    Ec,
    Rsa,
}

/// rsaEncryption (1.2.840.113549.1.1.1) and id-ecPublicKey (1.2.840.10045.2.1).
const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// A PKCS#8 `PrivateKeyInfo`'s algorithm, and the private key it wraps (for RSA, the PKCS#1
/// key ring reads).
fn pkcs8(der: &[u8]) -> Option<(Pkcs8, &[u8])> {
    let (tag, info, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _version, rest) = tlv(info)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, algorithm, rest) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = tlv(algorithm)?;
    if tag != 0x06 {
        return None;
    }
    let (tag, key, _) = tlv(rest)?;
    if tag != 0x04 {
        return None;
    }
    match oid {
        RSA_OID => Some((Pkcs8::Rsa, key)),
        EC_OID => Some((Pkcs8::Ec, key)),
        _ => None,
    }
}

/// One DER tag-length-value: the tag, the value, and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, after) = rest.split_at(len);
    Some((tag, value, after))
}

#[cfg(test)]
mod tests {
    use super::super::event::tests::row;
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> serde_json::Value {
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.set_audience(&["https://receiver.example/"]);
        validation.set_issuer(&["https://cordon.example/"]);
        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn events_sets_are_signed_es256_with_a_caep_compliance_change() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer = SetSigner::new(
            &pair.serialize_pem(),
            "k1",
            "https://cordon.example/",
            "https://receiver.example/",
        )
        .unwrap();
        assert_eq!(signer.algorithm(), "ES256");
        let point = pair.public_key_raw();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key =
            DecodingKey::from_ec_components(&b64.encode(&point[1..33]), &b64.encode(&point[33..]))
                .unwrap();
        let placed = Event::of(&row(42, "isolation_entered")).unwrap();
        let token = signer.set(&placed, 1_764_464_600).unwrap().unwrap();
        let claims = verify(&token, &key, Algorithm::ES256);
        assert_eq!(claims["jti"], "cordon-event-42");
        assert_eq!(claims["iat"], 1_764_464_600);
        assert_eq!(claims["sub_id"]["format"], "complex");
        assert_eq!(claims["sub_id"]["device"]["id"], "C02ZK1ABMD6T");
        let event = &claims["events"][DEVICE_COMPLIANCE_CHANGE];
        assert_eq!(event["current_status"], "not-compliant");
        assert_eq!(event["previous_status"], "compliant");
        assert_eq!(event["reason_admin"]["en"], "EDR: reverse shell");
        let released = Event::of(&row(43, "isolation_left")).unwrap();
        let token = signer.set(&released, 1).unwrap().unwrap();
        let claims = verify(&token, &key, Algorithm::ES256);
        assert_eq!(
            claims["events"][DEVICE_COMPLIANCE_CHANGE]["current_status"],
            "compliant"
        );
        let other = Event::of(&row(44, "isolation_requested")).unwrap();
        assert!(signer.set(&other, 1).is_none());
        // A hold is not the device's state: its `device_isolated` says that.
        let hold = Event::of(&row(45, "isolated")).unwrap();
        assert!(signer.set(&hold, 1).is_none());
    }

    fn openssl(args: &[&str]) -> bool {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn events_sets_are_signed_rs256_with_an_rsa_key_in_either_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let (pkcs8, pkcs1, public) = (path("k8.pem"), path("k1.pem"), path("pub.pem"));
        let made = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &pkcs8,
        ]) && openssl(&["rsa", "-in", &pkcs8, "-traditional", "-out", &pkcs1])
            && openssl(&["rsa", "-in", &pkcs8, "-pubout", "-out", &public]);
        assert!(made, "openssl makes an RSA key");
        let public = std::fs::read_to_string(&public).unwrap();
        let (_, spki) = pem_block(&public).unwrap();
        // SubjectPublicKeyInfo: the algorithm, then the PKCS#1 key in a BIT STRING.
        let (_, info, _) = tlv(&spki).unwrap();
        let (_, _, rest) = tlv(info).unwrap();
        let (_, bits, _) = tlv(rest).unwrap();
        let key = DecodingKey::from_rsa_der(&bits[1..]);
        for file in [&pkcs8, &pkcs1] {
            let pem = std::fs::read_to_string(file).unwrap();
            let signer = SetSigner::new(
                &pem,
                "k1",
                "https://cordon.example/",
                "https://receiver.example/",
            )
            .unwrap();
            assert_eq!(signer.algorithm(), "RS256");
            let placed = Event::of(&row(42, "isolation_entered")).unwrap();
            let token = signer.set(&placed, 5).unwrap().unwrap();
            let claims = verify(&token, &key, Algorithm::RS256);
            assert_eq!(claims["jti"], "cordon-event-42");
        }
    }

    #[test]
    fn events_keys_that_cannot_sign_are_refused() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cases = [
            ("not a key".to_string(), "not a PEM file"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
                "a PEM \"CERTIFICATE\"",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n".to_string(),
                "convert it to PKCS#8",
            ),
            (p384.serialize_pem(), "ES256 needs a P-256 key"),
        ];
        for (pem, expected) in cases {
            let error = SetSigner::new(&pem, "k", "i", "a").err().unwrap();
            assert!(error.contains(expected), "{error}");
        }
    }
}
