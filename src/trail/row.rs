//! A query record as the trail keeps it, and a trail row as the API shows it.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::control::store::trail::chunk::{ChunkBuilder, EntryRef};
use crate::control::store::trail::TrailRow;
use crate::dns::record::{rcode_name, type_name, QueryRecord, Words};
use crate::policy::qname::push_dotted;
use crate::policy::QName;

/// Puts records into the trail's chunks: the decision in words, and every category the name is
/// listed in (an isolated device's queries are blocked by its allow-list, yet the name may be
/// command and control: the investigation wants to know). Its buffers are filled again for each
/// record, and the words of most decisions are made once ([`Words`]).
#[derive(Default)]
pub struct EntryMaker {
    words: Words,
    name: String,
    source: String,
}

impl EntryMaker {
    /// Adds `record` to `chunk`, its device's.
    pub fn add(&mut self, record: &QueryRecord, chunk: &mut ChunkBuilder) {
        let snapshot = &record.snapshot;
        let categories = match QName::from_wire(record.wire.name()) {
            Ok((name, _)) => snapshot.categorise(&name),
            Err(_) => Default::default(),
        };
        self.name.clear();
        push_dotted(record.wire.name(), &mut self.name);
        self.source.clear();
        let _ = write!(self.source, "{}", record.client);
        let d = &record.decision;
        let entry = EntryRef {
            at_ms: record
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            name: &self.name,
            qtype: record.qtype,
            transport: record.transport.as_str(),
            source: &self.source,
            decision: record.outcome.as_str(),
            reason: &self.words.of(record),
            group: &snapshot.group(d.group).name,
            category: d.category().map(|c| snapshot.taxonomy.name(c)),
            security: categories.iter().any(|c| c.is_security()),
            rcode: record.rcode,
        };
        chunk.push(&entry, categories.iter().map(|c| snapshot.taxonomy.name(c)));
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
