//! Why a name is allowed or blocked for a client: the decision trace that `cordon explain` prints
//! and `GET /v1/explain` returns, made by the same identify and decide the query path runs.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::rr::RecordType;

use crate::identity::{resolve, GroupSource};
use crate::policy::{decide, names, DeviceId, QName, Reason, Snapshot};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Trace {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub client: IpAddr,
    pub device: Option<String>,
    pub group: String,
    pub group_source: GroupSource,
    pub policy: String,
    pub decision: &'static str,
    pub reason: String,
    /// Every category the name is in, blocked or not.
    pub categories: Vec<String>,
    pub response: String,
    pub snapshot_version: u64,
}

/// Why a question cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("name \"{0}\": {1}")]
    Name(String, String),
    #[error("unknown record type \"{0}\"")]
    Type(String),
    #[error("unknown device \"{0}\"")]
    Device(String),
}

/// Traces the decision for `name` asked by `client` (and the device `device` names, if any).
pub fn explain(
    snapshot: &Snapshot,
    client: IpAddr,
    device: Option<&str>,
    name: &str,
    qtype: &str,
) -> Result<Trace, ExplainError> {
    let question = Question::parse(name, qtype)?;
    let claimed = match device {
        Some(alias) => Some(
            snapshot
                .devices
                .by_alias(alias)
                .ok_or_else(|| ExplainError::Device(alias.into()))?,
        ),
        None => None,
    };
    Ok(trace(snapshot, client, claimed, question))
}

/// Traces the decision for `name` asked by the device `device` from `client` (the console's
/// device page, which knows the device by its id).
pub fn explain_device(
    snapshot: &Snapshot,
    client: IpAddr,
    device: DeviceId,
    name: &str,
    qtype: &str,
) -> Result<Trace, ExplainError> {
    Ok(trace(
        snapshot,
        client,
        Some(device),
        Question::parse(name, qtype)?,
    ))
}

/// A question checked: its name in wire form and its type.
struct Question {
    qname: QName,
    rtype: RecordType,
}

impl Question {
    fn parse(name: &str, qtype: &str) -> Result<Question, ExplainError> {
        let normal =
            names::normalize(name).map_err(|e| ExplainError::Name(name.into(), e.to_string()))?;
        let qname = QName::from_dotted(&normal)
            .map_err(|e| ExplainError::Name(name.into(), e.to_string()))?;
        let rtype = RecordType::from_str(&qtype.to_ascii_uppercase())
            .map_err(|_| ExplainError::Type(qtype.into()))?;
        Ok(Question { qname, rtype })
    }
}

fn trace(
    snapshot: &Snapshot,
    client: IpAddr,
    claimed: Option<DeviceId>,
    Question { qname, rtype }: Question,
) -> Trace {
    let identity = resolve(snapshot, client, true, [claimed, None]);
    let decision = decide(snapshot, identity.group, &qname);
    let group = snapshot.group(identity.group);
    let found = snapshot.categorise(&qname);
    let response = if decision.blocked {
        format!("{:?}", group.policy.response).to_lowercase()
    } else {
        format!("forwarded, TTL capped at {} s", group.policy.max_ttl)
    };
    Trace {
        name: qname.to_dotted(),
        qtype: rtype.to_string(),
        client,
        device: identity.device.map(|d| snapshot.devices.label(d)),
        group: group.name.clone(),
        group_source: identity.source,
        policy: group.policy.name.clone(),
        decision: if decision.blocked { "block" } else { "allow" },
        reason: match decision.reason {
            Reason::Default if !decision.blocked => format!(
                "no rule or blocked category matched: {}",
                decision.describe(snapshot, &qname)
            ),
            _ => decision.describe(snapshot, &qname),
        },
        categories: found
            .iter()
            .map(|c| snapshot.taxonomy.name(c).to_string())
            .collect(),
        response,
        snapshot_version: snapshot.version,
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.group_source.describe();
        writeln!(f, "question:   {} {}", self.name, self.qtype)?;
        writeln!(f, "client:     {}", self.client)?;
        writeln!(
            f,
            "device:     {}",
            self.device.as_deref().unwrap_or("unknown")
        )?;
        writeln!(f, "group:      {} ({source})", self.group)?;
        writeln!(f, "policy:     {}", self.policy)?;
        let cats = if self.categories.is_empty() {
            "none (uncategorised)".to_string()
        } else {
            self.categories.join(", ")
        };
        writeln!(f, "categories: {cats}")?;
        writeln!(f, "decision:   {}: {}", self.decision, self.reason)?;
        writeln!(f, "answer:     {}", self.response)?;
        write!(f, "snapshot:   version {}", self.snapshot_version)
    }
}
