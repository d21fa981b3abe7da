//! The fleet at a glance: devices per group, blocks by category over the last hour, and the
//! health of what feeds Cordon (webhooks, Shared Signals) and what it feeds on (upstreams),
//! read from the metrics `/metrics` exports. The last hour of blocks comes from a sample of the
//! block counters taken once a minute ([`BlockHistory`]), off the query path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use maud::{html, Markup};
use prometheus::core::Collector;

use super::page::{page, render, PageResult, Section};
use super::session::Signed;
use crate::api::AppState;
use crate::metrics::Metrics;

/// How often the block counters are sampled, and how far back the page looks.
const EVERY: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(3600);

/// Blocks by category, summed over groups, as sampled once a minute for the last hour.
#[derive(Debug, Default)]
pub struct BlockHistory {
    samples: Mutex<VecDeque<(Instant, BTreeMap<String, f64>)>>,
}

impl BlockHistory {
    /// Samples the block counters every minute, until the task is dropped.
    pub async fn run(console: Arc<super::Console>, metrics: Arc<Metrics>) {
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            console.blocks.sample(&metrics);
        }
    }

    fn sample(&self, metrics: &Metrics) {
        let now = Instant::now();
        let totals = blocks_now(metrics);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW + EVERY)
        {
            samples.pop_front();
        }
        samples.push_back((now, totals));
    }

    /// Blocks by category since the oldest sample of the last hour (most first), and how many
    /// minutes that covers.
    fn last_hour(&self, metrics: &Metrics) -> (Vec<(String, u64)>, u64) {
        let now = blocks_now(metrics);
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let since = samples
            .iter()
            .find(|(at, _)| at.elapsed() <= WINDOW + EVERY / 2);
        let minutes = since.map_or(0, |(at, _)| at.elapsed().as_secs() / 60);
        let mut counts: Vec<(String, u64)> = now
            .into_iter()
            .map(|(category, total)| {
                let before = since.and_then(|(_, s)| s.get(&category)).copied();
                (category, (total - before.unwrap_or(0.0)).max(0.0) as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (counts, minutes)
    }
}

fn blocks_now(metrics: &Metrics) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for (labels, value) in series(&metrics.dns_blocked) {
        let category = label(&labels, "category");
        *totals.entry(category).or_insert(0.0) += value;
    }
    totals
}

/// Every series of a counter or gauge family: its labels and its value.
fn series(collector: &impl Collector) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for family in collector.collect() {
        let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
        for m in family.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            let value = if counter {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            };
            out.push((labels, value));
        }
    }
    out
}

fn label(labels: &[(String, String)], name: &str) -> String {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// GET /console/fleet
pub async fn overview(State(state): State<AppState>, Signed { session, .. }: Signed) -> PageResult {
    let metrics = &state.metrics;
    let (blocks, minutes) = state.console.blocks.last_hour(metrics);
    let snapshot = state.published.get();
    let replica = state.control.replica();
    let body = html! {
        p { "Snapshot " (snapshot.version) " · " (snapshot.categories.len()) " listed domains · store "
            @if replica.is_shared() { "shared" @if replica.is_leader() { ", this node leads" } } @else { "embedded" } }
        div.columns {
            section aria-labelledby="groups" {
                h2 #groups { "Devices per group" }
                (table(&["Group", "Devices"], &series(&metrics.devices), &["group"]))
            }
            section aria-labelledby="blocks" {
                h2 #blocks { "Blocks by category, last hour" }
                p.hint { @if minutes == 0 { "Since the last minute: the hour fills as the server runs." }
                         @else { "Over the last " (minutes) " minutes." } }
                @if blocks.is_empty() { p.empty { "Nothing blocked." } } @else {
                    table {
                        thead { tr { th scope="col" { "Category or rule" } th scope="col" { "Blocked" } } }
                        tbody { @for (category, n) in &blocks { tr { td { (category) } td.number { (n) } } } }
                    }
                }
            }
        }
        div.columns {
            section aria-labelledby="webhooks" {
                h2 #webhooks { "Webhooks since start" }
                (table(&["Source", "Event", "Result", "Deliveries"], &series(&metrics.webhook_events),
                       &["source", "event", "result"]))
                h3 { "Shared Signals" }
                (table(&["Issuer", "Result", "Events"], &series(&metrics.ssf_events), &["issuer", "result"]))
            }
            section aria-labelledby="upstreams" {
                h2 #upstreams { "Upstreams since start" }
                (table(&["Upstream", "Result", "Queries"], &series(&metrics.upstream_requests),
                       &["upstream", "result"]))
            }
        }
    };
    render(page("Fleet", Some(&session), Section::Fleet, body))
}

/// A table of series: one column per label in `labels`, then the value.
fn table(heads: &[&str], rows: &[(Vec<(String, String)>, f64)], labels: &[&str]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "None yet." } } @else {
            table {
                thead { tr { @for h in heads { th scope="col" { (h) } } } }
                tbody {
                    @for (values, value) in rows {
                        tr {
                            @for name in labels { td { (label(values, name)) } }
                            td.number { (value) }
                        }
                    }
                }
            }
        }
    }
}
