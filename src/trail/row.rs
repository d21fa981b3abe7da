//! A query record as the trail keeps it, and a trail row as the API shows it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::control::store::trail::TrailRow;
use crate::dns::record::{rcode_name, type_name, QueryRecord};
use crate::policy::{DeviceId, GroupIdx, QName, Reason};

/// Makes the rows the store keeps from records: the decision in words, and every category the
/// name is listed in (an isolated device's queries are blocked by its allow-list, yet the name
/// may be command and control: the investigation wants to know).
/// `RowMaker::words`' reason kinds past the category ids (0..=63).
const UNCATEGORISED: u8 = 64;
const DEFAULT: u8 = 65;

pub struct RowMaker {
    node: String,
    /// The words of decisions that do not depend on the name (a category, the default), by
    /// snapshot version, group, outcome and reason: a traced device asks for many names, and
    /// most are decided the same way.
    words: HashMap<(u64, GroupIdx, bool, u8), String>,
}

impl RowMaker {
    /// Rows written by `node`.
    pub fn new(node: &str) -> RowMaker {
        RowMaker {
            node: node.to_string(),
            words: HashMap::new(),
        }
    }

    pub fn row(&mut self, record: &QueryRecord) -> TrailRow {
        let snapshot = &record.snapshot;
        let name = QName::from_wire(&record.name).map(|(name, _)| name).ok();
        let categories = match &name {
            Some(name) => snapshot.categorise(name),
            None => Default::default(),
        };
        let at_ms = record
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let d = &record.decision;
        let reason = match (&name, d.reason) {
            (Some(name), Reason::Rule(_)) => d.describe(snapshot, name),
            (Some(name), reason) => {
                let kind = match reason {
                    Reason::Category(c) => c.get(),
                    Reason::Uncategorised => UNCATEGORISED,
                    _ => DEFAULT,
                };
                let key = (snapshot.version, d.group, d.blocked, kind);
                self.words
                    .entry(key)
                    .or_insert_with(|| d.describe(snapshot, name))
                    .clone()
            }
            (None, _) => String::new(),
        };
        if self.words.len() > 4096 {
            // Versions come and go: the words of old snapshots are not asked for again.
            self.words.clear();
        }
        TrailRow {
            id: 0,
            device: record.device.unwrap_or(DeviceId(0)),
            at_ms,
            name: record.dotted_name(),
            qtype: record.qtype,
            transport: record.transport.as_str().to_string(),
            source: record.client.to_string(),
            decision: record.outcome.as_str().to_string(),
            reason,
            group: snapshot.group(d.group).name.clone(),
            category: d.category().map(|c| snapshot.taxonomy.name(c).to_string()),
            categories: categories
                .iter()
                .map(|c| snapshot.taxonomy.name(c).to_string())
                .collect(),
            security: categories.iter().any(|c| c.is_security()),
            rcode: record.rcode,
            node: self.node.clone(),
        }
    }
}

/// A trail row as the API and the export show it.
#[derive(Debug, Serialize)]
pub struct TrailView<'a> {
    pub id: i64,
    pub at: String,
    pub at_ms: i64,
    pub device: String,
    pub name: &'a str,
    #[serde(rename = "type")]
    pub qtype: Cow<'static, str>,
    pub transport: &'a str,
    pub source: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub group: &'a str,
    pub category: Option<&'a str>,
    pub categories: &'a [String],
    pub security: bool,
    pub rcode: Cow<'static, str>,
    pub node: &'a str,
}

impl<'a> From<&'a TrailRow> for TrailView<'a> {
    fn from(r: &'a TrailRow) -> Self {
        TrailView {
            id: r.id,
            at: crate::time::rfc3339_ms(r.at_ms),
            at_ms: r.at_ms,
            device: r.device.to_string(),
            name: &r.name,
            qtype: type_name(r.qtype),
            transport: &r.transport,
            source: &r.source,
            decision: &r.decision,
            reason: &r.reason,
            group: &r.group,
            category: r.category.as_deref(),
            categories: &r.categories,
            security: r.security,
            rcode: rcode_name(r.rcode),
            node: &r.node,
        }
    }
}
