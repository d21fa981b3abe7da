//! Signed device tokens: an HMAC over the device's alias, so that a token names one device and cannot be guessed or forged without the secret.
//!
//! A managed Mac sends its token in the DoH path (`/dns-query/{token}`) or as the first label of
//! the DoT/DoQ server name (`{token}.dns.example.com`), so a token must be one DNS label (at most
//! 63 characters) and URL-path safe. DNS and SNI fold case, so it is lowercase only:
//! `c` + a form digit + base32 (RFC 4648 alphabet, lowercase, no padding) of a payload.
//!
//! | form | payload | signed message | length |
//! | --- | --- | --- | --- |
//! | `c1` | alias bytes (0..=28) ‖ tag | `"cordon-token-v1\0"` ‖ alias | 18..=63 |
//! | `c2` | `alias_digest(alias)` (16) ‖ tag | `"cordon-token-v1-hashed\0"` ‖ digest | 44 |
//!
//! - The alias is trimmed and ASCII-lowercased first, as the store keeps alias values, so
//!   `C02ABC123XYZ` and `c02abc123xyz` get the same token.
//! - The tag is HMAC-SHA256(secret, signed message) truncated to its first 10 bytes (80 bits):
//!   plenty against online guessing, where every try is a DNS query.
//! - `c1` embeds the alias itself: 2 + ceil((28 + 10) × 8 / 5) = 63, so 28 bytes is the most a
//!   label can carry. Serial numbers fit; a Mac's 36-character hardware UUID does not, so longer
//!   aliases take form `c2`, which embeds the first 16 bytes of SHA-256(alias) instead. Its
//!   verifier only learns that digest ([`TokenClaim::Hashed`]): the caller finds the device whose
//!   alias has that [`alias_digest`].
//! - The two forms sign under different prefixes, so a tag made for one form never verifies as
//!   the other.
//! - Base32 decoding accepts either case but only the canonical encoding (unused trailing bits
//!   zero), so one claim has exactly one token, up to case.
//!
//! A token is not confidential: a `c1` token shows its alias to anyone who decodes it. What it
//! gives is authenticity: only the holder of the secret can make one.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of HMAC-SHA256 kept in a token.
const TAG_LEN: usize = 10;
/// Bytes of SHA-256 kept for a hashed alias.
const DIGEST_LEN: usize = 16;
/// The longest alias a `c1` token embeds: with the tag it encodes to 61 characters.
pub const MAX_INLINE_ALIAS: usize = 28;
/// One DNS label.
const MAX_TOKEN_LEN: usize = 63;
/// Shorter secrets are too easy to guess offline from a single token.
const MIN_SECRET_LEN: usize = 16;

/// Who a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenClaim {
    /// The alias value itself (trimmed and lowercased), from a `c1` token.
    Alias(String),
    /// [`alias_digest`] of an alias too long to embed, from a `c2` token.
    Hashed([u8; DIGEST_LEN]),
}

/// Why a key could not be made or a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no token secret is set: set auth.token_secret to sign device tokens")]
    NoSecret,
    #[error("the token secret is {len} bytes long; it must be at least {MIN_SECRET_LEN}")]
    WeakSecret { len: usize },
    #[error("not a signed device token")]
    Malformed,
    #[error("the token's signature does not match: it was altered or signed with another secret")]
    BadSignature,
}

/// The two token forms; the digit after `c` in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `c1`: the alias itself.
    Inline,
    /// `c2`: the digest of a long alias.
    Hashed,
}

impl Form {
    fn prefix(self) -> &'static str {
        match self {
            Form::Inline => "c1",
            Form::Hashed => "c2",
        }
    }

    fn from_prefix(prefix: &[u8]) -> Option<Form> {
        match prefix {
            [b'c' | b'C', b'1'] => Some(Form::Inline),
            [b'c' | b'C', b'2'] => Some(Form::Hashed),
            _ => None,
        }
    }

    /// Prefixed to the signed bytes, so that a tag is bound to its form and to this scheme.
    fn domain(self) -> &'static [u8] {
        match self {
            Form::Inline => b"cordon-token-v1\0",
            Form::Hashed => b"cordon-token-v1-hashed\0",
        }
    }

    /// Whether a decoded payload (body and tag) has a length this form produces.
    fn fits(self, payload_len: usize) -> bool {
        match self {
            Form::Inline => (TAG_LEN..=TAG_LEN + MAX_INLINE_ALIAS).contains(&payload_len),
            Form::Hashed => payload_len == DIGEST_LEN + TAG_LEN,
        }
    }

    fn claim(self, body: &[u8]) -> Result<TokenClaim, TokenError> {
        match self {
            Form::Inline => String::from_utf8(body.to_vec())
                .map(TokenClaim::Alias)
                .map_err(|_| TokenError::Malformed),
            Form::Hashed => body
                .try_into()
                .map(TokenClaim::Hashed)
                .map_err(|_| TokenError::Malformed),
        }
    }
}

/// The key that signs and verifies device tokens, made from `auth.token_secret`.
#[derive(Clone)]
pub struct TokenKey {
    /// HMAC already keyed with the secret; cloned for every token so the key is hashed once.
    mac: HmacSha256,
}

impl fmt::Debug for TokenKey {
    // The keyed state would let anyone who reads a log sign tokens: print nothing of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key from the configured secret, which must have at least 16 bytes.
    pub fn new(secret: &str) -> Result<TokenKey, TokenError> {
        if secret.trim().is_empty() {
            return Err(TokenError::NoSecret);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret { len: secret.len() });
        }
        // HMAC takes keys of any length, so this never fails.
        let mac =
            HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| TokenError::NoSecret)?;
        Ok(TokenKey { mac })
    }

    /// The token for the device known by `alias` (trimmed and lowercased first).
    pub fn sign(&self, alias: &str) -> String {
        let alias = normalize(alias);
        let (form, body) = if alias.len() <= MAX_INLINE_ALIAS {
            (Form::Inline, alias.into_bytes())
        } else {
            (Form::Hashed, digest(&alias).to_vec())
        };
        let mut payload = body;
        payload.extend_from_slice(&self.tag(form, &payload));

        let mut token = String::with_capacity(MAX_TOKEN_LEN);
        token.push_str(form.prefix());
        base32_encode(&payload, &mut token);
        token
    }

    /// Who `token` names, if this key signed it. Case does not matter; no input panics.
    pub fn verify(&self, token: &str) -> Result<TokenClaim, TokenError> {
        let (form, payload) = decode(token).ok_or(TokenError::Malformed)?;
        let (body, tag) = payload.split_at(payload.len() - TAG_LEN);
        self.keyed(form, body)
            .verify_truncated_left(tag) // constant-time comparison
            .map_err(|_| TokenError::BadSignature)?;
        form.claim(body)
    }

    /// Whether `token` has the shape of a signed token: a cheap pre-check that needs no key.
    ///
    /// The length rules keep device aliases out: a 10–12 character serial such as `C1MX…` is too
    /// short and a UDID has dashes, so only a real token (or junk) looks signed.
    pub fn looks_signed(token: &str) -> bool {
        decode(token).is_some()
    }

    /// The HMAC state after the form's domain and `body`.
    fn keyed(&self, form: Form, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(form.domain());
        mac.update(body);
        mac
    }

    fn tag(&self, form: Form, body: &[u8]) -> [u8; TAG_LEN] {
        let full = self.keyed(form, body).finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// The 16-byte digest used by [`TokenClaim::Hashed`] for an alias value.
///
/// The alias is trimmed and lowercased first, like every alias value Cordon stores.
pub fn alias_digest(alias: &str) -> [u8; DIGEST_LEN] {
    digest(&normalize(alias))
}

fn digest(normalized: &str) -> [u8; DIGEST_LEN] {
    let full = Sha256::digest(normalized.as_bytes());
    let mut out = [0; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// Alias values are stored trimmed and ASCII-lowercased; sign and hash the same text.
fn normalize(alias: &str) -> String {
    alias.trim().to_ascii_lowercase()
}

/// The form and payload of a well-shaped token, or None.
fn decode(token: &str) -> Option<(Form, Vec<u8>)> {
    let bytes = token.as_bytes();
    // Checked before decoding, so junk of any size costs nothing.
    if bytes.len() > MAX_TOKEN_LEN || bytes.len() < 2 {
        return None;
    }
    let (prefix, encoded) = bytes.split_at(2);
    let form = Form::from_prefix(prefix)?;
    let payload = base32_decode(encoded)?;
    form.fits(payload.len()).then_some((form, payload))
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lowercase, without padding.
fn base32_encode(bytes: &[u8], out: &mut String) {
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[(acc >> bits) as usize & 31]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[(acc << (5 - bits)) as usize & 31]));
    }
}

/// Decodes unpadded base32 in either case; None unless `text` is the canonical encoding.
fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &symbol in text {
        acc = (acc << 5) | base32_value(symbol)?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Five or more bits left over means a symbol that carries no byte; set leftover bits mean a
    // second spelling of the same bytes. An encoder produces neither.
    (bits < 5 && acc == 0).then_some(out)
}

fn base32_value(symbol: u8) -> Option<u32> {
    match symbol.to_ascii_lowercase() {
        c @ b'a'..=b'z' => Some(u32::from(c - b'a')),
        c @ b'2'..=b'7' => Some(u32::from(c - b'2') + 26),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-some-length";
    const SERIAL: &str = "C02ABC123XYZ";
    const UDID: &str = "8F3C2E4A-1B2C-4D5E-9F60-A1B2C3D4E5F6";

    fn key() -> TokenKey {
        TokenKey::new(SECRET).unwrap()
    }

    fn is_label(token: &str) -> bool {
        !token.is_empty()
            && token.len() <= MAX_TOKEN_LEN
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }

    /// A small deterministic generator, so junk tests need no crate and fail reproducibly.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn serial_round_trips_as_alias() {
        let token = key().sign(SERIAL);
        assert!(token.starts_with("c1"), "{token}");
        assert_eq!(
            key().verify(&token),
            Ok(TokenClaim::Alias("c02abc123xyz".into()))
        );
    }

    #[test]
    fn udid_round_trips_as_digest() {
        let token = key().sign(UDID);
        assert!(token.starts_with("c2"), "{token}");
        assert_eq!(token.len(), 44);
        assert_eq!(
            key().verify(&token),
            Ok(TokenClaim::Hashed(alias_digest(UDID)))
        );
        assert_eq!(alias_digest(UDID), alias_digest(&UDID.to_lowercase()));
    }

    #[test]
    fn alias_is_trimmed_and_lowercased_before_signing() {
        assert_eq!(key().sign(" C02ABC123XYZ\n"), key().sign("c02abc123xyz"));
    }

    #[test]
    fn longest_inline_alias_fills_one_label() {
        let alias = "x".repeat(MAX_INLINE_ALIAS);
        let token = key().sign(&alias);
        assert_eq!(token.len(), MAX_TOKEN_LEN);
        assert_eq!(key().verify(&token), Ok(TokenClaim::Alias(alias)));

        let longer = "x".repeat(MAX_INLINE_ALIAS + 1);
        assert!(key().sign(&longer).starts_with("c2"));
    }

    #[test]
    fn tokens_are_single_lowercase_labels() {
        let mut rng = XorShift(7);
        for len in 0..=80 {
            let alias: String = (0..len)
                .map(|_| char::from(b' ' + rng.below(95) as u8))
                .collect();
            let token = key().sign(&alias);
            assert!(is_label(&token), "{alias:?} -> {token}");
            assert!(TokenKey::looks_signed(&token), "{token}");
            assert!(key().verify(&token).is_ok(), "{alias:?} -> {token}");
        }
    }

    #[test]
    fn any_changed_character_fails() {
        for alias in [SERIAL, UDID] {
            let token = key().sign(alias);
            for at in 2..token.len() {
                let mut bytes = token.clone().into_bytes();
                bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
                let altered = String::from_utf8(bytes).unwrap();
                let result = key().verify(&altered);
                if at + 1 < token.len() {
                    assert_eq!(result, Err(TokenError::BadSignature), "{altered}");
                } else {
                    // The last symbol may also carry padding bits, which make it non-canonical.
                    assert!(result.is_err(), "{altered}");
                }
            }
        }
    }

    #[test]
    fn form_digit_cannot_be_swapped() {
        let token = key().sign(SERIAL);
        let swapped = format!("c2{}", &token[2..]);
        assert_eq!(key().verify(&swapped), Err(TokenError::Malformed));
    }

    #[test]
    fn another_secret_fails() {
        let other = TokenKey::new("another-secret-of-some-length").unwrap();
        for alias in [SERIAL, UDID] {
            assert_eq!(
                other.verify(&key().sign(alias)),
                Err(TokenError::BadSignature)
            );
        }
    }

    #[test]
    fn verify_ignores_case() {
        for alias in [SERIAL, UDID] {
            let token = key().sign(alias);
            assert_eq!(
                key().verify(&token.to_uppercase()),
                key().verify(&token),
                "{token}"
            );
        }
    }

    #[test]
    fn non_canonical_encoding_is_malformed() {
        // 'b' sets the single padding bit of a 63-character c1 token's last symbol.
        let token = key().sign(&"x".repeat(MAX_INLINE_ALIAS));
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = ALPHABET[base32_value(bytes[last]).unwrap() as usize | 1];
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(key().verify(&altered), Err(TokenError::Malformed));
    }

    #[test]
    fn weak_or_missing_secret_is_refused() {
        assert_eq!(TokenKey::new("").unwrap_err(), TokenError::NoSecret);
        assert_eq!(TokenKey::new("   ").unwrap_err(), TokenError::NoSecret);
        assert_eq!(
            TokenKey::new("change-me-too").unwrap_err(),
            TokenError::WeakSecret { len: 13 }
        );
        assert!(TokenKey::new("sixteen-bytes-ok").is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", key());
        assert_eq!(shown, "TokenKey { .. }");
    }

    #[test]
    fn aliases_do_not_look_signed() {
        for alias in [SERIAL, "C1MXK2Y3Z4AB", "c1", "c2", UDID, "12345", ""] {
            assert!(!TokenKey::looks_signed(alias), "{alias}");
        }
    }

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        let vectors: [(&[u8], &str); 6] = [
            (b"f", "my"),
            (b"fo", "mzxq"),
            (b"foo", "mzxw6"),
            (b"foob", "mzxw6yq"),
            (b"fooba", "mzxw6ytb"),
            (b"foobar", "mzxw6ytboi"),
        ];
        for (bytes, text) in vectors {
            let mut encoded = String::new();
            base32_encode(bytes, &mut encoded);
            assert_eq!(encoded, text);
            assert_eq!(base32_decode(text.as_bytes()).as_deref(), Some(bytes));
        }
        assert_eq!(base32_decode(b"m"), None);
        assert_eq!(base32_decode(b"mz"), None, "trailing bits set");
    }

    #[test]
    fn junk_never_panics_and_never_verifies() {
        let symbols: Vec<char> = "abcdefghijklmnopqrstuvwxyz234567ABCZ0189-._~/%é\u{0}\u{ff}"
            .chars()
            .collect();
        let mut rng = XorShift(0x5eed);
        for _ in 0..20_000 {
            let prefix = ["", "c1", "c2", "C1", "c3"][rng.below(5)];
            let len = rng.below(90);
            let body: String = (0..len)
                .map(|_| symbols[rng.below(symbols.len())])
                .collect();
            let token = format!("{prefix}{body}");
            let _ = TokenKey::looks_signed(&token);
            assert!(key().verify(&token).is_err(), "{token}");
        }
    }
}
