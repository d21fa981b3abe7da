//! What a Shared Signals transmitter (or anyone who can reach `/webhooks/ssf`) sends: a body
//! checked as a Security Event Token by `ssf::verify::Verifier` against one issuer's ES256 key
//! (seeds in the corpus are signed with it, so mutations reach the claims and events), the
//! events of a claims object read into a request, and a JWKS as a transmitter's key URL serves
//! it. Nothing may panic; a refusal always names an RFC 8935 error code.
//!
//! Input: 1 byte choosing what the rest is (0: a token, 1: a JWKS, 2: claims JSON), then it.
#![no_main]

use std::sync::{Arc, OnceLock};

use cordon::ssf::events::{request, signal};
use cordon::ssf::jwks::{Jwks, KeySet};
use cordon::ssf::verify::{Claims, Issuer, Verifier};
use libfuzzer_sys::fuzz_target;

/// The public half of the key the corpus's tokens are signed with.
const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench", "alg": "ES256", "use": "sig", "x": "QvK_xpJpxTOjad5mEvRLMUWR_E2pBfFbwMJ26ffga4k", "y": "S-wr1tFt4jeUQmpKVzARPeVJ2iKm-ZUiDqHXFakMbbU"}]}"#;
/// The seeds' `iat`: the clock the checks run at.
const NOW: i64 = 1_800_000_000;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let (set, _) = KeySet::parse(JWKS.as_bytes()).expect("the fuzz key parses");
        Verifier {
            issuers: vec![Issuer {
                issuer: "https://edr.fuzz".into(),
                audience: "https://cordon.fuzz/webhooks/ssf".into(),
                keys: Arc::new(Jwks::with("fuzz".into(), set)),
            }],
            max_skew: 300,
            window: 86_400,
        }
    })
}

fn read(claims: &Claims, until: i64) {
    if let Ok(found) = signal(claims) {
        let _ = request(claims, &found, until);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => match verifier().verify(rest, NOW) {
            Ok(verified) => {
                assert_eq!(verified.issuer, 0);
                read(&verified.claims, verified.remember_until);
            }
            Err(refused) => assert!(!refused.code.as_str().is_empty()),
        },
        1 => {
            if let Ok((set, _skipped)) = KeySet::parse(rest) {
                let _ = set.len();
            }
        }
        _ => {
            if let Ok(claims) = serde_json::from_slice::<Claims>(rest) {
                read(&claims, NOW);
            }
        }
    }
});
