//! The responders' console: server-rendered pages on the HTTP listener under `/console`, for
//! isolating, releasing, approving and investigating from a browser. It holds no state of its
//! own but its sessions: every page reads what `/v1` reads, and every action sends the same
//! control-plane request, audited the same way.
//!
//! Safe by construction: no script at all (a Content-Security-Policy that allows none), every
//! value escaped by the templates, a CSRF token on every form that changes anything, requests
//! from other origins refused, and the API token typed once into the sign-in form, never
//! shown or put in a URL.

mod actions;
mod approvals;
mod devices;
mod fleet;
mod form;
mod isolations;
pub mod page;
pub mod session;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::auth::identify;
use super::AppState;
pub use fleet::BlockHistory;
use form::Posted;
use page::{page, render, ConsoleError, PageResult, Section};
use session::{Sessions, Signed};

/// The console's own state: who is signed in, and the last hour of blocks for the fleet page.
#[derive(Debug, Default)]
pub struct Console {
    pub sessions: Sessions,
    pub blocks: BlockHistory,
}

/// The console's routes, to merge into the API's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/console.css", get(stylesheet))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", axum::routing::post(sign_out))
        .route("/console/isolations", get(isolations::list))
        .route("/console/devices", get(devices::search))
        .route("/console/device", get(devices::device))
        .route("/console/approvals", get(approvals::list))
        .route("/console/fleet", get(fleet::overview))
        .merge(actions::routes())
        .layer(middleware::from_fn(guard))
}

/// What every console answer carries, and the check every change passes: a request that
/// changes something must come from the console's own pages (same origin), whatever its
/// cookie says.
async fn guard(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !same_origin(&request) {
        let refused = ConsoleError::forbidden("this form was sent from another site");
        return with_headers(refused.into_response());
    }
    with_headers(next.run(request).await)
}

/// A browser names the page a form came from in `Origin`; it must be this host: the `Host` the
/// request names (or its authority, over HTTP/2), or the `X-Forwarded-Host` of a reverse proxy
/// that passes another `Host` on. A form can set neither header, so another site cannot fake
/// them. A request without `Origin` (an old browser, a script) passes, and meets the CSRF token
/// next.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(origin) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let named = |name: header::HeaderName| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        value.and_then(|v| v.split(',').next()).map(str::trim)
    };
    let authority = request.uri().authority().map(|a| a.as_str());
    [named(header::HOST), authority, named(X_FORWARDED_HOST)]
        .into_iter()
        .flatten()
        .any(|host| host.eq_ignore_ascii_case(origin))
}

const X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");

/// No script, no frames, no third party; nothing cached, no referrer beyond this site.
/// (`no-referrer` would make browsers send `Origin: null` with the forms, which [`guard`]
/// refuses.)
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn home(signed: Result<Signed, Response>) -> Redirect {
    match signed {
        Ok(_) => Redirect::to("/console/isolations"),
        Err(_) => Redirect::to("/console/sign-in"),
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
}

async fn sign_in_page() -> PageResult {
    render(sign_in_form(None))
}

fn sign_in_form(error: Option<&str>) -> maud::Markup {
    let body = html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.card method="post" action="/console/sign-in" {
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            p.hint { "A token from the server's " code { "[[auth.admin]]" } " list. Its role \
                      (viewer, responder, admin) decides what you can do." }
            button type="submit" { "Sign in" }
        }
    };
    page("Sign in", None, Section::None, body)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(form): Posted<SignIn>,
) -> Response {
    let caller = match identify(&state.admins, form.token.trim()) {
        Ok(caller) => caller,
        Err(_) => {
            let markup = sign_in_form(Some("That token is not one of this server's."));
            return (StatusCode::UNAUTHORIZED, render(markup)).into_response();
        }
    };
    let Some(id) = state.console.sessions.open(caller) else {
        let busy = ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "too many sessions");
        return busy.into_response();
    };
    let cookie = session::set_cookie(&id, &headers);
    let mut response = Redirect::to("/console/isolations").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Posted(form): Posted<CsrfOnly>,
) -> Response {
    if !signed.session.csrf_matches(&form.csrf) {
        return actions::forged().into_response();
    }
    state.console.sessions.close(&signed.id);
    let mut response = Redirect::to("/console/sign-in").into_response();
    let cookie = session::clear_cookie(&headers);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        *request.method_mut() = Method::POST;
        for (name, value) in headers {
            let name = header::HeaderName::from_bytes(name.as_bytes()).unwrap();
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        request
    }

    #[test]
    fn a_form_must_come_from_this_host_or_the_proxy_in_front_of_it() {
        let origin = ("origin", "https://cordon.example");
        assert!(same_origin(&post(&[("host", "cordon.example"), origin])));
        assert!(
            same_origin(&post(&[("host", "127.0.0.1:9153")])),
            "no Origin"
        );
        // nginx's default passes the upstream's address as Host, and the name it was asked
        // for as X-Forwarded-Host when told to.
        let proxied = [
            ("host", "127.0.0.1:9153"),
            ("x-forwarded-host", "cordon.example"),
            origin,
        ];
        assert!(same_origin(&post(&proxied)));
        assert!(!same_origin(&post(&[("host", "127.0.0.1:9153"), origin])));
        let evil = ("origin", "https://evil.example");
        assert!(!same_origin(&post(&[("host", "cordon.example"), evil])));
        assert!(!same_origin(&post(&[
            ("host", "cordon.example"),
            ("origin", "null")
        ])));
    }
}
