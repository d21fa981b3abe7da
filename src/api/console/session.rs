//! Who is using the console. Signing in with an API token opens a session: it is kept here, in
//! this node's memory, and named by a random id in an HttpOnly, SameSite=Strict cookie, so the
//! token itself never reaches a URL, a page or the browser's storage. Each session has its own
//! CSRF token, which every form carries back and every change checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use dashmap::DashMap;

use super::super::auth::{constant_time_eq, Caller};
use super::super::AppState;
use crate::config::Role;

/// The session cookie's name.
pub const COOKIE: &str = "cordon_console";
/// How long a session lasts from its sign-in: a working shift.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions held; past it, expired ones go first, then sign-in is refused.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in responder.
#[derive(Debug)]
pub struct Session {
    pub caller: Caller,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), presented.as_bytes())
    }

    /// Whether its role reaches `role`.
    pub fn may(&self, role: Role) -> bool {
        self.caller.role >= role
    }
}

/// The open sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: DashMap<String, Arc<Session>>,
}

impl Sessions {
    /// Opens a session for `caller`; its id, for the cookie. `None` when too many are open.
    pub fn open(&self, caller: Caller) -> Option<String> {
        if self.open.len() >= MAX_SESSIONS {
            let now = Instant::now();
            self.open.retain(|_, s| s.expires > now);
            if self.open.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let id = random_text();
        let session = Session {
            caller,
            csrf: random_text(),
            expires: Instant::now() + LIFETIME,
        };
        self.open.insert(id.clone(), Arc::new(session));
        Some(id)
    }

    /// The session `id` names, unless it expired (then it goes).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.open.get(id)?.clone();
        if session.expires <= Instant::now() {
            self.open.remove(id);
            return None;
        }
        Some(session)
    }

    pub fn close(&self, id: &str) {
        self.open.remove(id);
    }
}

/// 32 random bytes, base64url: a session id or a CSRF token.
fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session cookie's value in the request, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the browser reached us over HTTPS: through a proxy that terminates TLS and says so
/// (`X-Forwarded-Proto` or `Forwarded: proto=https`). The cookie is then marked Secure.
fn over_https(headers: &HeaderMap) -> bool {
    let said = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    said("x-forwarded-proto").is_some_and(|p| p.trim() == "https")
        || said("forwarded").is_some_and(|f| f.contains("proto=https"))
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str, headers: &HeaderMap) -> HeaderValue {
    cookie_header(id, LIFETIME.as_secs(), headers)
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(headers: &HeaderMap) -> HeaderValue {
    cookie_header("", 0, headers)
}

fn cookie_header(value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let secure = if over_https(headers) { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).expect("a cookie of base64url text")
}

/// A request from a signed-in session; any other goes to the sign-in page.
pub struct Signed {
    pub session: Arc<Session>,
    /// The session's id, for signing out.
    pub id: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let found = cookie(&parts.headers)
            .and_then(|id| Some((state.console.sessions.get(id)?, id.to_string())));
        match found {
            Some((session, id)) => Ok(Signed { session, id }),
            None => Err(Redirect::to("/console/sign-in").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            role,
            name: "ana".into(),
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let sessions = Sessions::default();
        let id = sessions.open(caller(Role::Responder)).unwrap();
        let mut headers = HeaderMap::new();
        let value = format!("theme=dark; {COOKIE}={id}; other=1");
        headers.insert(header::COOKIE, value.parse().unwrap());
        let found = sessions.get(cookie(&headers).unwrap()).unwrap();
        assert!(found.may(Role::Responder) && !found.may(Role::Admin));
        assert!(found.csrf_matches(&found.csrf.clone()));
        assert!(!found.csrf_matches("forged"));
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get("made-up").is_none());
    }

    #[test]
    fn ids_and_csrf_tokens_are_long_and_never_repeat() {
        let sessions = Sessions::default();
        let a = sessions.open(caller(Role::Viewer)).unwrap();
        let b = sessions.open(caller(Role::Viewer)).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(
            sessions.get(&a).unwrap().csrf,
            sessions.get(&b).unwrap().csrf
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_https() {
        let plain = set_cookie("abc", &HeaderMap::new());
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Max-Age=28800") && !plain.contains("Secure"));
        let mut proxied = HeaderMap::new();
        proxied.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(set_cookie("abc", &proxied)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        assert!(clear_cookie(&proxied)
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
    }
}
