//! The first page a responder sees: every device isolated now (holds waiting for a device
//! included), then those traced on probation or watched, a page at a time.

use std::collections::HashMap;

use axum::extract::{Query as Params, State};
use maud::{html, Markup};

use super::page::{device_link, hold, link, page, render, time, PageResult, Section};
use super::session::Signed;
use crate::api::AppState;
use crate::config::Role;
use crate::control::{DeviceInfo, Query, QueryReply};

/// Rows a page shows.
pub const PAGE: usize = 50;

pub async fn list(
    State(state): State<AppState>,
    Signed { session, .. }: Signed,
    Params(params): Params<HashMap<String, String>>,
) -> PageResult {
    let at = page_number(&params);
    let isolated = devices(&state, Query::Isolations).await?;
    let traced = devices(&state, Query::Traced).await?;
    let body = html! {
        @if session.may(Role::Responder) {
            form.inline method="get" action="/console/isolate" {
                label for="device" { "Isolate a device by serial, UDID or alias" }
                input #device name="device" required;
                button type="submit" { "Isolate…" }
            }
        }
        h2 { "Isolated now (" (isolated.len()) ")" }
        (table(&isolated, at, "isolated", |d| match &d.isolation {
            Some(h) => hold(h),
            None if d.uem_groups.is_empty() => html! { "placed in " (d.group) " by the server's config" },
            None => html! { "its UEM groups: " (d.uem_groups.join(", ")) },
        }))
        h2 { "Traced: on probation or watched (" (traced.len()) ")" }
        (table(&traced, at, "traced", |d| html! {
            @if let Some(until) = d.probation_until { "probation until " (time(until)) }
            @if let Some(w) = &d.watch { "watched: " (hold(w)) }
        }))
        (pager("/console/isolations", at, isolated.len().max(traced.len())))
    };
    render(page(
        "Isolations",
        Some(&session),
        Section::Isolations,
        body,
    ))
}

/// The page number `?page=` asks for, from 1.
pub fn page_number(params: &HashMap<String, String>) -> usize {
    params
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

async fn devices(state: &AppState, query: Query) -> Result<Vec<DeviceInfo>, super::ConsoleError> {
    match state.control.query(query).await? {
        QueryReply::Devices(list) => Ok(list),
        _ => Ok(Vec::new()),
    }
}

/// One page of devices: name (a link), status, its group, and what `why` says of it.
fn table(
    list: &[DeviceInfo],
    at: usize,
    what: &str,
    why: impl Fn(&DeviceInfo) -> Markup,
) -> Markup {
    let rows = list.iter().skip((at - 1) * PAGE).take(PAGE);
    html! {
        @if list.is_empty() {
            p.empty { "No device is " (what) "." }
        } @else {
            table {
                thead { tr { th scope="col" { "Device" } th scope="col" { "Status" }
                             th scope="col" { "Group" } th scope="col" { "Why" } } }
                tbody {
                    @for d in rows {
                        tr {
                            td { a href=(device_link(&d.id)) { (d.label) } }
                            td { (status(d)) }
                            td { (d.group) }
                            td { (why(d)) }
                        }
                    }
                }
            }
        }
    }
}

/// A device's state in a word or two.
pub fn status(d: &DeviceInfo) -> &'static str {
    if let Some(waiting) = d.status {
        waiting
    } else if d.isolated || d.isolation.is_some() {
        "isolated"
    } else if d.probation_until.is_some() {
        "on probation"
    } else if d.watch.is_some() {
        "watched"
    } else {
        "free"
    }
}

/// Previous and next links, when there is more than one page.
pub fn pager(path: &str, at: usize, total: usize) -> Markup {
    let pages = total.div_ceil(PAGE).max(1);
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if at > 1 { a href=(link(path, &[("page", &(at - 1).to_string())])) { "← Previous" } }
                span { "Page " (at) " of " (pages) }
                @if at < pages { a href=(link(path, &[("page", &(at + 1).to_string())])) { "Next →" } }
            }
        }
    }
}
