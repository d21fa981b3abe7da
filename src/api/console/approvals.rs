//! The approvals queue: isolations of critical devices that wait for a second admin, with
//! Approve and Refuse for admins.

use axum::extract::State;
use maud::html;

use super::page::{device_link, hold, link, page, render, time, PageResult, Section};
use super::session::Signed;
use crate::api::AppState;
use crate::config::Role;
use crate::control::{Query, QueryReply};

pub async fn list(State(state): State<AppState>, Signed { session, .. }: Signed) -> PageResult {
    let pending = match state.control.query(Query::Approvals).await? {
        QueryReply::Approvals(list) => list,
        _ => Vec::new(),
    };
    let admin = session.may(Role::Admin);
    let body = html! {
        p { "Isolating a device marked critical needs a second admin. A request lapses after an hour." }
        @if pending.is_empty() {
            p.empty { "No approval is waiting." }
        } @else {
            table {
                thead { tr { th scope="col" { "Approval" } th scope="col" { "Device" }
                             th scope="col" { "Asked" } th scope="col" { "Lapses (UTC)" }
                             @if admin { th scope="col" { "Decide" } } } }
                tbody {
                    @for a in &pending {
                        @let id = a.id.to_string();
                        tr {
                            td { (a.id) }
                            td { a href=(device_link(&a.device)) { (a.label) } }
                            td { (hold(&a.hold)) }
                            td { (time(a.lapses)) }
                            @if admin {
                                td { div.buttons {
                                    a.button href=(link("/console/approve", &[("id", &id)])) { "Approve…" }
                                    a.button href=(link("/console/refuse", &[("id", &id)])) { "Refuse…" }
                                } }
                            }
                        }
                    }
                }
            }
        }
    };
    render(page("Approvals", Some(&session), Section::Approvals, body))
}
