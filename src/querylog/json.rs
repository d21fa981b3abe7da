//! One query log record as one JSON line: when, who (as `client` decides), what was asked, over
//! what, and what Cordon decided and why.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::client::ClientShown;
use crate::dns::record::{rcode_name, type_name, QueryRecord, Words};

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_hash: Option<String>,
    device: Option<String>,
    name: String,
    #[serde(rename = "type")]
    qtype: Cow<'static, str>,
    transport: &'static str,
    decision: &'static str,
    reason: Cow<'a, str>,
    group: &'a str,
    rcode: Cow<'static, str>,
    duration_ms: f64,
}

/// Appends `record`'s line, newline included, to `out`.
pub fn write_line(
    record: &QueryRecord,
    client: &ClientShown,
    words: &mut Words,
    out: &mut Vec<u8>,
) {
    let (address, hash) = match client {
        ClientShown::Address => (Some(record.client.to_string()), None),
        ClientShown::Hash(key) => (None, Some(key.hash(record.client))),
        ClientShown::Hidden => (None, None),
    };
    let line = Line {
        time: rfc3339_millis(record.at),
        client: address,
        client_hash: hash,
        device: record.device.map(|d| d.to_string()),
        name: record.dotted_name(),
        qtype: type_name(record.qtype),
        transport: record.transport.as_str(),
        decision: record.outcome.as_str(),
        reason: words.of(record),
        group: &record.snapshot.group(record.decision.group).name,
        rcode: rcode_name(record.rcode),
        duration_ms: millis(record.took),
    };
    // Writing plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// `2026-11-30T01:02:03.456Z`.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::time::rfc3339_ms(since.as_millis() as i64)
}

/// Milliseconds, to the microsecond.
fn millis(took: Duration) -> f64 {
    (took.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::IpAddr;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::dns::record::{QueryRecord, Wire};
    use crate::identity::Transport;
    use crate::metrics::Outcome;
    use crate::policy::snapshot::Devices;
    use crate::policy::{
        cidr::PrefixTable, Decision, DeviceId, GroupIdx, PolicyParts, PolicySet, Reason,
    };
    use crate::querylog::client::HashKey;

    /// A blocked `A` query for `evil.example` by `device#7` from 192.0.2.1 over UDP, decided
    /// under the shipped policies.
    pub fn record() -> QueryRecord {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let parts = PolicyParts::new(PolicySet::load(&dir).unwrap());
        let snapshot = parts.snapshot(Devices::default(), Arc::new(PrefixTable::new()), 1);
        let malware = snapshot
            .taxonomy
            .id("malware")
            .expect("the shipped taxonomy");
        QueryRecord {
            at: UNIX_EPOCH + Duration::from_millis(1_796_000_523_456),
            took: Duration::from_micros(1_250),
            client: "192.0.2.1".parse::<IpAddr>().unwrap(),
            port: 49_152,
            transport: Transport::Udp,
            device: Some(DeviceId(7)),
            wire: Wire::new(b"\x04evil\x07example\x00", None),
            qtype: 1,
            rcode: 3,
            outcome: Outcome::Blocked,
            decision: Decision {
                blocked: true,
                reason: Reason::Category(malware),
                group: GroupIdx(0),
            },
            snapshot: Arc::new(snapshot),
        }
    }

    #[test]
    fn the_words_of_a_decision_are_made_once_and_are_the_records_own() {
        let mut words = Words::default();
        let blocked = record();
        assert_eq!(words.of(&blocked), blocked.reason());
        // Another name decided the same way: the same words, from the memo.
        let other = QueryRecord {
            wire: Wire::new(b"\x05other\x07example\x00", None),
            ..blocked.clone()
        };
        assert_eq!(words.of(&other), blocked.reason());
        assert!(words.of(&other).contains("category malware"));
    }

    fn line(record: &QueryRecord, client: &ClientShown) -> serde_json::Value {
        let mut out = Vec::new();
        write_line(record, client, &mut Words::default(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'), "one line");
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_record_is_one_json_line() {
        let record = record();
        let group = record.snapshot.group(GroupIdx(0)).name.clone();
        let v = line(&record, &ClientShown::Address);
        assert_eq!(v["time"], "2026-11-30T01:02:03.456Z");
        assert_eq!(v["client"], "192.0.2.1");
        assert!(v.get("client_hash").is_none());
        assert_eq!(v["device"], "device#7");
        assert_eq!(v["name"], "evil.example");
        assert_eq!(v["type"], "A");
        assert_eq!(v["transport"], "udp");
        assert_eq!(v["decision"], "blocked");
        assert_eq!(v["group"], group.as_str());
        assert_eq!(v["rcode"], "NXDOMAIN");
        assert_eq!(v["duration_ms"], 1.25);
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.starts_with("category malware (policy "), "{reason}");
        assert!(reason.ends_with(&format!("group {group})")), "{reason}");
    }

    #[test]
    fn the_client_is_shown_as_asked() {
        let mut record = record();
        record.device = None;
        let key = HashKey::new(b"0123456789abcdef");
        let hashed = line(&record, &ClientShown::Hash(key.clone()));
        assert!(hashed.get("client").is_none());
        assert_eq!(hashed["client_hash"], key.hash(record.client).as_str());
        assert!(hashed["device"].is_null());
        let hidden = line(&record, &ClientShown::Hidden);
        assert!(hidden.get("client").is_none() && hidden.get("client_hash").is_none());
    }
}
