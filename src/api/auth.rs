//! Who is calling: admin API bearer tokens with roles (viewer < responder < admin), and webhook
//! senders (a bearer token, or HTTP Basic with a token as the password).

use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{AdminToken, Role};

/// An authenticated API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// For the audit log: the token's `name`, or `token#N`.
    pub name: String,
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()
}

/// The caller behind the request's bearer token, if it has at least the `needed` role.
pub fn require(
    headers: &HeaderMap,
    tokens: &[AdminToken],
    needed: Role,
) -> Result<Caller, ApiError> {
    let token = presented(headers)
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            )
        })?;
    let caller = identify(tokens, token)?;
    if caller.role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this needs the {needed:?} role; the token has {:?}",
                caller.role
            )
            .to_lowercase(),
        ));
    }
    Ok(caller)
}

/// The caller an API token names (the bearer's, or one typed into the console's sign-in).
pub fn identify(tokens: &[AdminToken], token: &str) -> Result<Caller, ApiError> {
    let found = find(tokens.iter().map(|t| t.token.as_str()), token);
    let (i, t) = found
        .map(|i| (i, &tokens[i]))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
    Ok(Caller {
        role: t.role,
        name: t.name.clone().unwrap_or_else(|| format!("token#{}", i + 1)),
    })
}

/// Checks a webhook sender: `Authorization: Bearer <token>` or Basic with `<token>` as the
/// password (Jamf Pro's "Basic" authentication), against the configured webhook tokens.
pub fn require_webhook(headers: &HeaderMap, tokens: &[String]) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no webhook tokens are configured (auth.webhook_tokens)",
        ));
    }
    let value = presented(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization header"))?;
    let secret = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().to_string()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        basic_password(basic.trim())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "malformed Basic credentials"))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization must be Bearer or Basic",
        ));
    };
    find(tokens.iter().map(String::as_str), &secret)
        .map(|_| ())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
}

/// The password of `user:password` in base64.
fn basic_password(encoded: &str) -> Option<String> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// The index of the token equal to `presented`. Every token is compared, in constant time, so
/// timing tells nothing of which nearly matched.
fn find<'a>(tokens: impl Iterator<Item = &'a str>, presented: &str) -> Option<usize> {
    let mut found = None;
    for (i, t) in tokens.enumerate() {
        if constant_time_eq(t.as_bytes(), presented.as_bytes()) {
            found = Some(i);
        }
    }
    found
}

/// Compares without an early exit; only the length leaks.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn roles_are_ordered_and_checked() {
        let tokens = vec![
            AdminToken {
                token: "v".into(),
                role: Role::Viewer,
                name: None,
            },
            AdminToken {
                token: "a".into(),
                role: Role::Admin,
                name: Some("ana".into()),
            },
        ];
        let caller = require(&headers("Bearer a"), &tokens, Role::Admin).unwrap();
        assert_eq!(
            caller,
            Caller {
                role: Role::Admin,
                name: "ana".into()
            }
        );
        assert_eq!(
            require(&headers("Bearer v"), &tokens, Role::Viewer)
                .unwrap()
                .name,
            "token#1"
        );
        assert_eq!(
            require(&headers("Bearer v"), &tokens, Role::Admin)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            require(&headers("Bearer x"), &tokens, Role::Viewer)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            require(&HeaderMap::new(), &tokens, Role::Viewer)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn webhooks_take_bearer_or_basic() {
        let tokens = vec!["old".to_string(), "new".to_string()];
        assert!(require_webhook(&headers("Bearer new"), &tokens).is_ok());
        // "jamf:old" in base64
        assert!(require_webhook(&headers("Basic amFtZjpvbGQ="), &tokens).is_ok());
        assert!(require_webhook(&headers("Bearer nope"), &tokens).is_err());
        assert!(require_webhook(&headers("Basic !!"), &tokens).is_err());
        assert!(require_webhook(&headers("Bearer new"), &[]).is_err());
    }
}
