//! Finding a device and reading it: the search (serial, UDID, name, Jamf id or IP address,
//! server-side, so it works at a million devices), and the device page: its names, groups and
//! why, bindings, the buttons its role allows, "explain this name", and its timeline beside its
//! DNS trail.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use maud::{html, Markup};

use super::isolations::status;
use super::page::{device_link, hold, link, page, render, time, ConsoleError, PageResult, Section};
use super::session::{Session, Signed};
use crate::api::devices::MAX_SEARCH;
use crate::api::AppState;
use crate::config::Role;
use crate::control::{AuditEvent, DeviceInfo, Query, QueryReply};
use crate::explain::{explain_device, Trace};
use crate::identity::resolve;
use crate::policy::DeviceId;
use crate::trail::{TrailRow, TrailView};

/// Events and queries the device page shows of each.
const HISTORY: usize = 50;

/// GET /console/devices?q=
pub async fn search(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Params(params): Params<HashMap<String, String>>,
) -> PageResult {
    let q = params.get("q").map(|q| q.trim()).unwrap_or_default();
    if q.len() > 256 {
        return Err(ConsoleError::bad_request(
            "a search is at most 256 characters",
        ));
    }
    let found = match q {
        "" => Vec::new(),
        q => match state
            .control
            .query(Query::Search(q.into(), MAX_SEARCH))
            .await?
        {
            QueryReply::Devices(list) => list,
            _ => Vec::new(),
        },
    };
    let body = html! {
        form.card role="search" method="get" action="/console/devices" {
            label for="find" { "Serial, UDID, name, Jamf id or IP address" }
            input #find type="search" name="q" value=(q) required;
            button type="submit" { "Search" }
        }
        @if !q.is_empty() {
            h2 { (found.len()) " found" @if found.len() == MAX_SEARCH { " (the first " (MAX_SEARCH) ")" } }
            @if found.is_empty() {
                p.empty { "No device answers to " q { (q) } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Status" }
                                 th scope="col" { "Group" } th scope="col" { "Aliases" }
                                 th scope="col" { "Addresses" } } }
                    tbody {
                        @for d in &found {
                            tr {
                                td { a href=(device_link(&d.id)) { (d.label) } }
                                td { (status(d)) }
                                td { (d.group) }
                                td { (d.aliases.join(", ")) }
                                td { (d.bindings.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    };
    render(page("Devices", Some(&session), Section::Devices, body))
}

/// GET /console/device?id=&name=&type=
pub async fn device(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Params(params): Params<HashMap<String, String>>,
) -> PageResult {
    let text = params.get("id").map(String::as_str).unwrap_or_default();
    let info = match state.control.query(Query::Device(text.into())).await {
        Ok(QueryReply::Device(info)) => *info,
        _ => return Err(unknown(text)),
    };
    let id: DeviceId = serde_json::from_value(serde_json::Value::String(info.id.clone()))
        .map_err(|_| unknown(text))?;
    let events = match state
        .control
        .query(Query::Timeline(info.id.clone(), HISTORY))
        .await?
    {
        QueryReply::Timeline(events) => events,
        _ => Vec::new(),
    };
    let queries = crate::api::trail::newest(&state, id, HISTORY).await?;
    let client = info
        .bindings
        .first()
        .and_then(|b| b.parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let snapshot = state.published.get();
    let why = resolve(&snapshot, client, true, [Some(id), None])
        .source
        .describe();
    let asked = params
        .get("name")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty());
    let qtype = params.get("type").map_or("A", String::as_str);
    let explained = asked.map(|name| explain_device(&snapshot, client, id, name, qtype));
    let body = html! {
        (actions(&session, &info))
        div.columns {
            section aria-labelledby="about" {
                h2 #about { "Device" }
                (facts(&info, why))
            }
            section aria-labelledby="explain" {
                h2 #explain { "Explain a name" }
                (explain_form(&info.id, asked.unwrap_or_default(), qtype))
                @match &explained {
                    Some(Ok(trace)) => (verdict(trace)),
                    Some(Err(e)) => p.error role="alert" { (e.to_string()) },
                    None => {},
                }
            }
        }
        div.columns {
            section aria-labelledby="timeline" {
                h2 #timeline { "Timeline" }
                (timeline(&events))
            }
            section aria-labelledby="trail" {
                h2 #trail { "DNS trail" }
                (trail(&queries, state.trail.is_some(), info.traced))
            }
        }
    };
    render(page(&info.label, Some(&session), Section::Devices, body))
}

fn unknown(text: &str) -> ConsoleError {
    ConsoleError::new(
        StatusCode::NOT_FOUND,
        format!("No device answers to \"{text}\"."),
    )
}

/// The buttons the role allows, each to its confirmation page.
fn actions(session: &Session, d: &DeviceInfo) -> Markup {
    let button = |path: &str, text: &str| {
        html! { a.button href=(link(path, &[("device", d.id.as_str())])) { (text) } }
    };
    html! {
        @if session.may(Role::Responder) {
            nav.actions aria-label="Actions" {
                @if d.isolation.is_some() {
                    (button("/console/release", "Release…"))
                } @else {
                    (button("/console/isolate", "Isolate…"))
                }
                @if d.watch.is_some() {
                    (button("/console/unwatch", "Stop watching…"))
                } @else {
                    (button("/console/watch", "Watch…"))
                }
            }
        }
    }
}

fn facts(d: &DeviceInfo, why: &str) -> Markup {
    html! {
        dl {
            dt { "Status" } dd { (status(d)) @if d.critical { " · critical: isolating it needs a second admin" } }
            @if let Some(h) = &d.isolation { dt { "Isolation" } dd { (hold(h)) } }
            @if let Some(until) = d.probation_until { dt { "Probation" } dd { "until " (time(until)) } }
            @if let Some(w) = &d.watch { dt { "Watch" } dd { (hold(w)) } }
            dt { "Device group" } dd { (d.group) " (policy " (d.policy) "), by " (why) }
            dt { "UEM groups" } dd { (list_or_none(&d.uem_groups)) }
            dt { "Aliases" } dd { (list_or_none(&d.aliases)) }
            dt { "Addresses" } dd { (list_or_none(&d.bindings)) }
            dt { "Id" } dd { (d.id) }
            dt { "DNS trail" } dd { @if d.traced { "recording its queries" } @else { "not recording" } }
        }
    }
}

fn list_or_none(items: &[String]) -> Markup {
    html! {
        @if items.is_empty() { "none" } @else {
            ul.plain { @for item in items { li { (item) } } }
        }
    }
}

fn explain_form(id: &str, name: &str, qtype: &str) -> Markup {
    html! {
        form.inline method="get" action="/console/device" {
            input type="hidden" name="id" value=(id);
            label for="name" { "Name" }
            input #name name="name" value=(name) placeholder="www.example.com" required;
            label for="type" { "Type" }
            input #type name="type" value=(qtype) size="6";
            button type="submit" { "Explain" }
        }
    }
}

fn verdict(trace: &Trace) -> Markup {
    let class = if trace.decision == "block" {
        "verdict blocked"
    } else {
        "verdict allowed"
    };
    html! {
        div class=(class) role="status" {
            p { strong { (trace.name) " " (trace.qtype) ": " (trace.decision) } }
            p { (trace.reason) }
            p { "Group " (trace.group) " (" (trace.group_source.describe()) "), policy " (trace.policy) }
            p { "Categories: " @if trace.categories.is_empty() { "none" } @else { (trace.categories.join(", ")) } }
            p { "Answer: " (trace.response) " · snapshot " (trace.snapshot_version) }
        }
    }
}

fn timeline(events: &[AuditEvent]) -> Markup {
    html! {
        @if events.is_empty() { p.empty { "Nothing recorded yet." } } @else {
            table {
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "What" }
                             th scope="col" { "Who" } th scope="col" { "Why" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (time(e.at)) }
                            td { (e.action) @if !e.detail.is_empty() { " · " (e.detail) } }
                            td { (e.actor) }
                            td { (e.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn trail(rows: &[TrailRow], on: bool, traced: bool) -> Markup {
    html! {
        @if !on { p.empty { "The trail is off on this server (trail.enabled = false)." } }
        @else if rows.is_empty() {
            p.empty { @if traced { "No query recorded yet." } @else { "No query recorded: the trail records isolated, probation and watched devices." } }
        } @else {
            table {
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Name" }
                             th scope="col" { "Type" } th scope="col" { "Decision" }
                             th scope="col" { "Why" } } }
                tbody {
                    @for r in rows {
                        @let view = TrailView::from(r);
                        tr class=(r.decision) {
                            td { (view.at.replace('T', " ")) }
                            td { (r.name) }
                            td { (view.qtype) }
                            td { (r.decision) @if r.security { " · security" } }
                            td { (r.reason) }
                        }
                    }
                }
            }
        }
    }
}
