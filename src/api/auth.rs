//! Bearer tokens and roles: viewer < responder < admin.

use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{AdminToken, Role};

/// The role the request's bearer token carries, if it is at least `needed`.
pub fn require(headers: &HeaderMap, tokens: &[AdminToken], needed: Role) -> Result<Role, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            )
        })?;
    // Every configured token is compared, in constant time, so timing tells nothing.
    let mut found = None;
    for t in tokens {
        if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) {
            found = Some(t.role);
        }
    }
    let role = found.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
    if role < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this needs the {needed:?} role; the token has {role:?}").to_lowercase(),
        ));
    }
    Ok(role)
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

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn roles_are_ordered_and_checked() {
        let tokens = vec![
            AdminToken {
                token: "v".into(),
                role: Role::Viewer,
            },
            AdminToken {
                token: "a".into(),
                role: Role::Admin,
            },
        ];
        assert_eq!(
            require(&headers("a"), &tokens, Role::Admin).unwrap(),
            Role::Admin
        );
        assert_eq!(
            require(&headers("v"), &tokens, Role::Admin)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            require(&headers("x"), &tokens, Role::Viewer)
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
}
