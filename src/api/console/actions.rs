//! The console's changes, each in two steps: a confirmation page (GET) that says what will
//! happen and asks why, then the form's POST, which checks the session's CSRF token and role and
//! sends the very request `/v1` sends, so that the audit record is the same.

use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::form::Posted;
use super::page::{device_link, hold, page, render, time, ConsoleError, Section};
use super::session::{Session, Signed};
use crate::api::AppState;
use crate::config::Role;
use crate::control::{ApplyError, Query, QueryReply, Request};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/isolate", get(confirm_isolate).post(isolate))
        .route("/console/release", get(confirm_release).post(release))
        .route("/console/watch", get(confirm_watch).post(watch))
        .route("/console/unwatch", get(confirm_unwatch).post(unwatch))
        .route("/console/approve", get(confirm_approve).post(approve))
        .route("/console/refuse", get(confirm_refuse).post(refuse))
}

/// What a confirmation page is asked about.
#[derive(Deserialize)]
pub struct Target {
    #[serde(default)]
    device: String,
    #[serde(default)]
    id: String,
}

/// Every action form's fields; each action reads those it has.
#[derive(Deserialize)]
pub struct Action {
    /// Missing is as forged as wrong.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    approval: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
    /// Seconds until the hold ends; empty for no end.
    #[serde(default)]
    expires_in: String,
}

/// A form that did not come from this session's pages.
pub fn forged() -> ConsoleError {
    ConsoleError::forbidden("This form is not from your session: reload the page and try again.")
}

/// The session may do what needs `role`, and the form is its own.
fn allowed(session: &Session, role: Role, csrf: Option<&str>) -> Result<(), ConsoleError> {
    if csrf.is_some_and(|c| !session.csrf_matches(c)) {
        return Err(forged());
    }
    if !session.may(role) {
        let role = format!("{role:?}").to_lowercase();
        return Err(ConsoleError::forbidden(format!(
            "This needs the {role} role."
        )));
    }
    Ok(())
}

/// How long a hold may be set for from the console; the API takes any length up to a year.
const ENDS: [(&str, &str); 6] = [
    ("", "No end: until released"),
    ("3600", "1 hour"),
    ("14400", "4 hours"),
    ("86400", "24 hours"),
    ("259200", "3 days"),
    ("604800", "7 days"),
];

fn ends_in(text: &str) -> Result<Option<u64>, ConsoleError> {
    match text.trim() {
        "" => Ok(None),
        t => match ENDS.iter().find(|(s, _)| *s == t) {
            Some(_) => Ok(t.parse().ok()),
            None => Err(ConsoleError::bad_request("choose an end from the list")),
        },
    }
}

fn reason_of(text: &str) -> Result<String, ConsoleError> {
    let reason = text.trim();
    if reason.is_empty() || reason.len() > 1024 {
        return Err(ConsoleError::bad_request(
            "say why, in 1 to 1024 characters",
        ));
    }
    Ok(reason.to_string())
}

/// The device's name for a confirmation page, or the alias a hold would wait for.
async fn label(state: &AppState, device: &str) -> Option<String> {
    match state.control.query(Query::Device(device.into())).await {
        Ok(QueryReply::Device(info)) => Some(info.label),
        _ => None,
    }
}

/// A confirmation page: what will happen, the fields to fill, Confirm and Cancel.
fn confirm(session: &Session, title: &str, action: &str, about: Markup, fields: Markup) -> Markup {
    let body = html! {
        form.card method="post" action=(action) {
            (about)
            (super::page::csrf(session))
            (fields)
            div.buttons {
                button.danger type="submit" { "Confirm: " (title) }
                a href="/console/isolations" { "Cancel" }
            }
        }
    };
    page(title, Some(session), Section::None, body)
}

fn why_fields(with_ticket: bool, with_end: bool, required: bool) -> Markup {
    html! {
        label for="reason" { "Reason" @if !required { " (optional)" } }
        textarea #reason name="reason" rows="3" maxlength="1024" required[required] {}
        @if with_ticket {
            label for="ticket" { "Ticket (optional)" }
            input #ticket name="ticket" maxlength="128";
        }
        @if with_end {
            label for="expires_in" { "Ends" }
            select #expires_in name="expires_in" {
                @for (value, text) in ENDS { option value=(value) { (text) } }
            }
        }
    }
}

fn device_field(device: &str) -> Markup {
    html! { input type="hidden" name="device" value=(device); }
}

async fn about_device(state: &AppState, device: &str, what: &str) -> Result<Markup, ConsoleError> {
    if device.trim().is_empty() {
        return Err(ConsoleError::bad_request("name a device"));
    }
    let known = label(state, device).await;
    Ok(html! {
        @match known {
            Some(label) => p { (what) " " strong { (label) } " (" (device) ")." },
            None => p { "No device answers to " strong { (device) } " yet: the hold waits for \
                         the first device that reports it, and applies from its first query." },
        }
    })
}

/// The changes a responder makes to a device, each a confirmation page and its POST.
#[derive(Debug, Clone, Copy)]
enum DeviceAction {
    Isolate,
    Release,
    Watch,
    Unwatch,
}

impl DeviceAction {
    fn title(self) -> &'static str {
        match self {
            DeviceAction::Isolate => "Isolate",
            DeviceAction::Release => "Release",
            DeviceAction::Watch => "Watch",
            DeviceAction::Unwatch => "Stop watching",
        }
    }

    fn path(self) -> &'static str {
        match self {
            DeviceAction::Isolate => "/console/isolate",
            DeviceAction::Release => "/console/release",
            DeviceAction::Watch => "/console/watch",
            DeviceAction::Unwatch => "/console/unwatch",
        }
    }

    /// What confirming does, in a sentence.
    fn effect(self) -> &'static str {
        match self {
            DeviceAction::Isolate => "From its next query, it resolves only its allow-list.",
            DeviceAction::Release => {
                "Its full access comes back from its next query; its policy's probation, if \
                 any, starts."
            }
            DeviceAction::Watch => "Its queries go to the DNS trail; its answers do not change.",
            DeviceAction::Unwatch => "Its queries stop going to the trail, unless isolated.",
        }
    }

    /// A hold or a watch: a reason (required), a ticket and an end. Else an optional reason.
    fn places(self) -> bool {
        matches!(self, DeviceAction::Isolate | DeviceAction::Watch)
    }

    /// The control-plane request, as `/v1` makes it.
    fn request(self, form: &Action, actor: String) -> Result<Request, ConsoleError> {
        let device = form.device.trim().to_string();
        if !self.places() {
            return Ok(match self {
                DeviceAction::Unwatch => Request::Unwatch {
                    device,
                    actor,
                    reason: optional_reason(&form.reason, "no longer watched")?,
                },
                _ => Request::Release {
                    device,
                    actor,
                    reason: optional_reason(&form.reason, "released by a responder")?,
                },
            });
        }
        let (reason, expires_in) = (reason_of(&form.reason)?, ends_in(&form.expires_in)?);
        let ticket = form.ticket.trim().chars().take(128).collect();
        Ok(match self {
            DeviceAction::Watch => Request::Watch {
                device,
                reason,
                ticket,
                expires_in,
                actor,
            },
            _ => Request::Isolate {
                device,
                reason,
                ticket,
                expires_in,
                actor,
            },
        })
    }
}

/// GET: what `action` will do to the device `?device=` names, and the fields to say why.
async fn confirm_device(
    state: &AppState,
    session: &Session,
    target: &Target,
    action: DeviceAction,
) -> Result<Response, ConsoleError> {
    allowed(session, Role::Responder, None)?;
    let about = about_device(state, &target.device, action.title()).await?;
    let about = html! { (about) p { (action.effect()) } };
    let places = action.places();
    let fields = html! { (device_field(&target.device)) (why_fields(places, places, places)) };
    let markup = confirm(session, action.title(), action.path(), about, fields);
    Ok(render(markup).into_response())
}

/// POST: the confirmed change, then the device's page (or the approvals' word for a critical
/// device, or the isolations for a hold that waits for its device).
async fn apply_device(
    state: &AppState,
    session: &Session,
    form: &Action,
    action: DeviceAction,
) -> Result<Response, ConsoleError> {
    allowed(session, Role::Responder, Some(&form.csrf))?;
    let request = action.request(form, session.caller.name.clone())?;
    match state.control.apply(request).await {
        Err(ApplyError::NeedsApproval(approval)) => {
            let body = html! {
                p role="status" { "This device is marked critical: approval " strong { (approval) }
                    " is waiting for a second admin. It is not isolated until then." }
                p { a href="/console/approvals" { "Go to the approvals" } }
            };
            let markup = page("Approval requested", Some(session), Section::None, body);
            Ok((StatusCode::ACCEPTED, render(markup)).into_response())
        }
        Err(e) => Err(e.into()),
        Ok(_) => match label(state, form.device.trim()).await {
            Some(_) => Ok(Redirect::to(&device_link(form.device.trim())).into_response()),
            None => Ok(Redirect::to("/console/isolations").into_response()),
        },
    }
}

fn optional_reason(text: &str, otherwise: &str) -> Result<String, ConsoleError> {
    match text.trim() {
        "" => Ok(otherwise.to_string()),
        t => reason_of(t),
    }
}

/// The GET and POST handlers of one device action.
macro_rules! device_action {
    ($confirm:ident, $apply:ident, $action:expr) => {
        async fn $confirm(
            State(state): State<AppState>,
            Signed { session, .. }: Signed,
            Params(target): Params<Target>,
        ) -> Result<Response, ConsoleError> {
            confirm_device(&state, &session, &target, $action).await
        }

        async fn $apply(
            State(state): State<AppState>,
            Signed { session, .. }: Signed,
            Posted(form): Posted<Action>,
        ) -> Result<Response, ConsoleError> {
            apply_device(&state, &session, &form, $action).await
        }
    };
}

device_action!(confirm_isolate, isolate, DeviceAction::Isolate);
device_action!(confirm_release, release, DeviceAction::Release);
device_action!(confirm_watch, watch, DeviceAction::Watch);
device_action!(confirm_unwatch, unwatch, DeviceAction::Unwatch);

/// The pending approval `id` names, for its confirmation page.
async fn pending(state: &AppState, id: &str) -> Result<crate::control::ApprovalInfo, ConsoleError> {
    let list = match state.control.query(Query::Approvals).await? {
        QueryReply::Approvals(list) => list,
        _ => Vec::new(),
    };
    list.into_iter()
        .find(|a| a.id.to_string() == id.trim())
        .ok_or_else(|| {
            ConsoleError::new(
                StatusCode::NOT_FOUND,
                format!("No approval {id} is pending."),
            )
        })
}

fn approval_about(a: &crate::control::ApprovalInfo, what: &str) -> Markup {
    html! {
        p { (what) " the isolation of " a href=(device_link(&a.device)) { (a.label) } "?" }
        p { "Asked: " (hold(&a.hold)) ". Lapses at " (time(a.lapses)) "." }
        input type="hidden" name="approval" value=(a.id);
    }
}

async fn confirm_approve(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Params(target): Params<Target>,
) -> Result<Response, ConsoleError> {
    allowed(&session, Role::Admin, None)?;
    let a = pending(&state, &target.id).await?;
    let about = html! { (approval_about(&a, "Approve")) p { "The device is isolated at once." } };
    let markup = confirm(&session, "Approve", "/console/approve", about, html! {});
    Ok(render(markup).into_response())
}

fn approval_number(text: &str) -> Result<u64, ConsoleError> {
    text.trim()
        .parse()
        .map_err(|_| ConsoleError::new(StatusCode::NOT_FOUND, format!("unknown approval {text}")))
}

async fn approve(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Posted(form): Posted<Action>,
) -> Result<Response, ConsoleError> {
    allowed(&session, Role::Admin, Some(&form.csrf))?;
    let request = Request::Approve {
        approval: approval_number(&form.approval)?,
        actor: session.caller.name.clone(),
    };
    let outcome = state.control.apply(request).await?;
    match outcome.device {
        Some(device) => Ok(Redirect::to(&device_link(&device.to_string())).into_response()),
        None => Ok(Redirect::to("/console/approvals").into_response()),
    }
}

async fn confirm_refuse(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Params(target): Params<Target>,
) -> Result<Response, ConsoleError> {
    allowed(&session, Role::Admin, None)?;
    let a = pending(&state, &target.id).await?;
    let about = html! { (approval_about(&a, "Refuse")) p { "The device is not isolated." } };
    let markup = confirm(
        &session,
        "Refuse",
        "/console/refuse",
        about,
        why_fields(false, false, false),
    );
    Ok(render(markup).into_response())
}

async fn refuse(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Posted(form): Posted<Action>,
) -> Result<Response, ConsoleError> {
    allowed(&session, Role::Admin, Some(&form.csrf))?;
    let request = Request::Refuse {
        approval: approval_number(&form.approval)?,
        actor: session.caller.name.clone(),
        reason: optional_reason(&form.reason, "refused by an admin")?,
    };
    state.control.apply(request).await?;
    Ok(Redirect::to("/console/approvals").into_response())
}
