//! The frame every console page shares (title, navigation, who is signed in, sign-out), its
//! error page, and the small pieces pages repeat: links that carry a device's name, times,
//! holds. maud escapes every value written into a page, so a device named
//! `<img src=x onerror=alert(1)>` shows as that text.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::Session;
use crate::api::error::ApiError;
use crate::control::{ApplyError, Hold};

/// The console's sections, for the navigation's current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Isolations,
    Devices,
    Approvals,
    Fleet,
    None,
}

const SECTIONS: [(Section, &str, &str); 4] = [
    (Section::Isolations, "/console/isolations", "Isolations"),
    (Section::Devices, "/console/devices", "Devices"),
    (Section::Approvals, "/console/approvals", "Approvals"),
    (Section::Fleet, "/console/fleet", "Fleet"),
];

/// A whole page: the frame around `body`, for a signed-in `session` (or the sign-in page).
pub fn page(title: &str, session: Option<&Session>, current: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Cordon" }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "Cordon" }
                    @if let Some(session) = session {
                        nav aria-label="Sections" {
                            ul {
                                @for (section, href, name) in SECTIONS {
                                    li {
                                        @if section == current {
                                            a href=(href) aria-current="page" { (name) }
                                        } @else {
                                            a href=(href) { (name) }
                                        }
                                    }
                                }
                            }
                        }
                        form.search role="search" method="get" action="/console/devices" {
                            label for="q" { "Find a device" }
                            input #q type="search" name="q"
                                placeholder="serial, UDID, name, Jamf id or IP";
                            button type="submit" { "Search" }
                        }
                        form.who method="post" action="/console/sign-out" {
                            span { (session.caller.name) " · " (role_name(session)) }
                            (csrf(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn role_name(session: &Session) -> String {
    format!("{:?}", session.caller.role).to_lowercase()
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// `path?key=value`, the value percent-encoded: a link that carries an alias or a name.
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

/// A device's page.
pub fn device_link(id: &str) -> String {
    link("/console/device", &[("id", id)])
}

/// Seconds since the epoch, in UTC, as people read it.
pub fn time(at: i64) -> String {
    crate::time::rfc3339(at).replace('T', " ")
}

/// A hold in one line: who, when, why, the ticket and its end.
pub fn hold(hold: &Hold) -> Markup {
    html! {
        (hold.reason)
        @if !hold.ticket.is_empty() { " · ticket " (hold.ticket) }
        " · by " (hold.by) " at " (time(hold.at))
        @match hold.expires {
            Some(end) => { " · ends " (time(end)) },
            None => { " · no end" },
        }
    }
}

/// An error shown as a page: what went wrong, and a way back.
#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ConsoleError {
        ConsoleError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ConsoleError {
        ConsoleError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ConsoleError {
        ConsoleError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::new(e.status, e.message)
    }
}

impl From<ApplyError> for ConsoleError {
    fn from(e: ApplyError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let body = html! {
            p.error role="alert" { (self.message) }
            p { a href="/console/isolations" { "Back to the isolations" } }
        };
        let markup = page(reason, None, Section::None, body);
        (self.status, Html(markup.into_string())).into_response()
    }
}

/// A page handler's answer.
pub type PageResult = Result<Html<String>, ConsoleError>;

/// A rendered page as a response.
pub fn render(markup: Markup) -> PageResult {
    Ok(Html(markup.into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A colour of the stylesheet's `:root`, as relative luminance (WCAG 2).
    fn luminance(name: &str) -> f64 {
        let css = include_str!("console.css");
        let at = css.find(&format!("--{name}: #")).expect(name) + name.len() + 5;
        let hex = &css[at..at + 6];
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    #[test]
    fn text_and_focus_colours_meet_wcag_aa_contrast() {
        // Text on its backgrounds (buttons are white on accent and danger; `bg` is white).
        for (text, on) in [
            ("ink", "bg"),
            ("ink", "band"),
            ("muted", "bg"),
            ("muted", "band"),
            ("accent", "bg"),
            ("accent", "band"),
            ("danger", "bg"),
            ("danger", "band"),
            ("ok", "band"),
            ("bg", "accent"),
            ("bg", "danger"),
            ("bg", "header"),
        ] {
            let ratio = contrast(text, on);
            assert!(ratio >= 4.5, "{text} on {on}: {ratio:.2}");
        }
        for on in ["bg", "header"] {
            let ratio = contrast("focus", on);
            assert!(ratio >= 3.0, "the focus ring on {on}: {ratio:.2}");
        }
    }

    #[test]
    fn values_are_escaped_and_links_encoded() {
        let name = "<img src=x onerror=alert(1)>";
        let markup = page(name, None, Section::None, html! { p { (name) } }).into_string();
        assert!(!markup.contains("<img"), "{markup}");
        assert!(
            markup.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{markup}"
        );
        assert_eq!(device_link("device#7"), "/console/device?id=device%237");
        assert_eq!(
            link("/console/devices", &[("q", "a b&c")]),
            "/console/devices?q=a+b%26c"
        );
    }
}
