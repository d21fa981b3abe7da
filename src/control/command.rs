//! What adapters and the API may ask of the writer, and what it answers. Requests say what a
//! source saw or what a responder wants, in no vendor's terms: an adapter (Jamf Pro, a generic
//! MDM through the API, reconciliation) translates its input into these.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::alias::Alias;
use super::change::{AuditEvent, Hold};
use crate::policy::{DeviceId, FileError, PolicyErrors};

/// Who asks, and why: every change is audited with both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub actor: String,
    pub reason: String,
}

impl Source {
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Source {
        Source {
            actor: actor.into(),
            reason: reason.into(),
        }
    }
}

/// A device as a source names it: by the alias the source knows it by (created on first sight,
/// with `label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub alias: Alias,
    /// The label a device created for this reference gets.
    pub label: String,
}

/// What a source reports about one device: the names it has and the address it was seen at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    pub device: DeviceRef,
    /// The device's own name (e.g. the computer name), which becomes its label.
    pub name: Option<String>,
    /// Other aliases it answers to (serial, UDID, MAC, ...).
    pub aliases: Vec<Alias>,
    /// The address the device reported for itself: bound to it, unless in a shared network.
    pub address: Option<IpAddr>,
}

/// A UEM group as a source names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UemGroup {
    /// The key groups.toml maps (`jamf:computer-group:42`, `mdm:finance`).
    pub key: String,
    pub name: Option<String>,
}

/// A change someone asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// What a source knows about one device (a check-in, an inventory read).
    Report {
        report: DeviceReport,
        source: Source,
    },
    /// Devices joined or left a UEM group. `reports` are device details that came with the news,
    /// recorded first.
    Members {
        group: UemGroup,
        joined: Vec<DeviceRef>,
        left: Vec<Alias>,
        reports: Vec<DeviceReport>,
        source: Source,
    },
    /// The complete member list of a UEM group, as the source reads it now: every other device
    /// leaves it (reconciliation).
    ReplaceMembers {
        group: String,
        members: Vec<DeviceRef>,
        source: Source,
    },
    /// The device left management: its address bindings go.
    Unenrolled {
        device: Alias,
        source: Source,
    },
    /// Replace a device's UEM groups (generic MDMs); creates the device if it is unknown.
    SetGroups {
        device: String,
        groups: Vec<String>,
        actor: String,
    },
    /// Isolate a device by hand; one not seen yet is held as soon as it comes.
    Isolate {
        device: String,
        reason: String,
        ticket: String,
        /// Seconds until the hold ends by itself; never when `None`.
        expires_in: Option<u64>,
        actor: String,
    },
    Release {
        device: String,
        actor: String,
        reason: String,
    },
    /// Record the device's queries in the trail though it is not isolated (a responder's
    /// watch), for a time if `expires_in` says so.
    Watch {
        device: String,
        reason: String,
        ticket: String,
        expires_in: Option<u64>,
        actor: String,
    },
    Unwatch {
        device: String,
        actor: String,
        reason: String,
    },
    /// Note in the device's timeline that its trail was erased (the API erases it, in the
    /// trail's store, and then says so here).
    TrailErased {
        device: DeviceId,
        queries: u64,
        actor: String,
        reason: String,
    },
    /// A device asked for a tripwire's name: isolate it (as a responder's hold by `tripwire`,
    /// approval and all for a critical device).
    Tripped {
        device: DeviceId,
        /// The name it asked for.
        name: String,
        /// Why the name is a tripwire: the policy's list, or a category.
        why: String,
    },
    Approve {
        approval: u64,
        actor: String,
    },
    /// An admin turns a pending isolation down: the device is not held.
    Refuse {
        approval: u64,
        actor: String,
        reason: String,
    },
    SetCritical {
        device: String,
        critical: bool,
        actor: String,
    },
    /// `then`, at most once per `key`: the key is checked and recorded in the same commit as
    /// what `then` changes, so a second request with the key is refused ([`ApplyError::Seen`])
    /// by any node, also after a restart, until `until` (seconds since the epoch). The key is
    /// the source's, opaque here (e.g. a signed token's issuer and id); `None` only records it.
    Once {
        key: String,
        until: i64,
        then: Option<Box<Request>>,
    },
}

/// What a responder wants held, and for how long ([`Request::Isolate`], taken apart).
pub(super) struct HoldRequest {
    pub reason: String,
    pub ticket: String,
    /// Seconds from now until the hold ends by itself.
    pub expires_in: Option<u64>,
}

/// A read-only question.
#[derive(Debug)]
pub enum Query {
    Device(String),
    Timeline(String, usize),
    Isolations,
    /// Devices traced though not isolated: on probation or watched by a responder.
    Traced,
    /// Devices whose alias, id or bound address is the text, then those whose label holds it
    /// (case aside), at most `limit`.
    Search(String, usize),
    /// Isolations of critical devices waiting for a second admin.
    Approvals,
    /// The UEM group keys groups.toml maps, name-only mappings resolved through the names the
    /// MDM has reported.
    MappedGroups,
}

#[derive(Debug)]
pub enum QueryReply {
    Device(Box<DeviceInfo>),
    Devices(Vec<DeviceInfo>),
    Timeline(Vec<AuditEvent>),
    Groups(Vec<String>),
    Approvals(Vec<ApprovalInfo>),
}

/// A pending approval as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApprovalInfo {
    pub id: u64,
    pub device: String,
    pub label: String,
    /// The hold it asks for: who asked, why, when, until when.
    pub hold: Hold,
    /// When it lapses unless granted (seconds since the epoch).
    pub lapses: i64,
}

/// What applying a request did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    /// Membership, alias, binding and hold changes made (0: it was already so).
    pub changes: usize,
    /// The snapshot version in force after it.
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// A hold that waits for a device not seen yet: the alias it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Memberships set and unset.
    #[serde(skip)]
    pub joined: usize,
    #[serde(skip)]
    pub left: usize,
    /// Devices that joined a group but that DNS cannot tell apart yet (no bound address, no
    /// alias a client presents): the source should look them up.
    #[serde(skip)]
    pub unrecognised: Vec<Alias>,
}

impl Outcome {
    /// Nothing changed yet, about `device`.
    pub fn of(device: DeviceId) -> Outcome {
        Outcome {
            device: Some(device),
            ..Outcome::default()
        }
    }
}

/// Why a request was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    #[error("unknown device \"{0}\"")]
    UnknownDevice(String),
    #[error(
        "this device is marked critical: a second admin must approve its isolation (approval {0})"
    )]
    NeedsApproval(u64),
    #[error("unknown approval {0}")]
    UnknownApproval(u64),
    #[error("the approval must come from another admin than the one who asked")]
    SameApprover,
    #[error("this one-time request was already applied")]
    Seen,
    #[error("the store could not commit the change: {0}")]
    Store(String),
    #[error("the control plane has stopped")]
    Stopped,
    #[error("an internal error stopped this change; nothing of it was applied")]
    Internal,
}

/// A device as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub label: String,
    pub aliases: Vec<String>,
    pub uem_groups: Vec<String>,
    pub group: String,
    pub policy: String,
    pub bindings: Vec<String>,
    pub critical: bool,
    /// In the isolation group (or a stricter one) now: by a hold, its UEM groups or config.
    pub isolated: bool,
    pub isolation: Option<Hold>,
    /// On probation after an isolation ended, until then (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probation_until: Option<i64>,
    /// A responder's watch: its queries go to the trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<Hold>,
    /// Whether its queries go to the trail now: isolated, on probation or watched.
    pub traced: bool,
    /// `"waiting for device"` for a hold asked for an alias no device has yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// What a successful reload put in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub version: u64,
    pub groups: usize,
    pub listed_domains: usize,
    pub lists: usize,
}

/// The outcome of the last reload, for the admin API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Seconds since the epoch.
    pub at: u64,
    pub ok: bool,
    pub errors: Vec<FileError>,
}

/// What travels to the writer: a request, a question or a duty, each with where to answer.
pub(super) enum Command {
    Reload {
        reply: oneshot::Sender<Result<ReloadReport, PolicyErrors>>,
    },
    Apply {
        request: Box<Request>,
        reply: oneshot::Sender<Result<Outcome, ApplyError>>,
    },
    Query {
        query: Query,
        reply: oneshot::Sender<Result<QueryReply, ApplyError>>,
    },
    /// The periodic duties: lapse stale bindings. Answered once done.
    Tick { reply: Option<oneshot::Sender<()>> },
    /// Apply what other nodes committed to the shared store since this node's position.
    Sync,
    /// Publish with the feeds' new DB; answered once it is in force.
    Feeds {
        db: Arc<crate::policy::FeedDb>,
        reply: oneshot::Sender<()>,
    },
}
