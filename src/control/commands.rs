//! What the API and background jobs may ask of the writer, and what it answers.

use tokio::sync::oneshot;

use super::state::{AuditEvent, Hold};
use super::writer::ReloadReport;
use crate::jamf::events::{DeviceKind, DeviceReport, Envelope};
use crate::policy::{DeviceId, PolicyErrors};

/// A change someone asks for.
#[derive(Debug)]
pub enum Request {
    /// A parsed Jamf Pro webhook.
    Jamf(Envelope),
    /// What the Jamf Pro API said about a device.
    Inventory {
        report: DeviceReport,
        actor: String,
    },
    /// The members a Jamf group has now, per the Jamf Pro API.
    Reconcile {
        kind: DeviceKind,
        group_id: i64,
        members: Vec<i64>,
    },
    /// Replace a device's UEM groups (generic MDMs); creates the device if it is unknown.
    SetGroups {
        device: String,
        groups: Vec<String>,
        actor: String,
    },
    Isolate {
        device: String,
        reason: String,
        ticket: String,
        actor: String,
    },
    Release {
        device: String,
        actor: String,
        reason: String,
    },
    Approve {
        approval: u64,
        actor: String,
    },
    SetCritical {
        device: String,
        critical: bool,
        actor: String,
    },
}

/// A read-only question.
#[derive(Debug)]
pub enum Query {
    Device(String),
    Timeline(String, usize),
    Isolations,
    /// The Jamf groups groups.toml maps, by id (name-only mappings resolved through the names
    /// the MDM has reported).
    MappedGroups,
}

#[derive(Debug)]
pub enum QueryReply {
    Device(Box<DeviceInfo>),
    Devices(Vec<DeviceInfo>),
    Timeline(Vec<AuditEvent>),
    Groups(Vec<(DeviceKind, i64)>),
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
    /// A legacy group event: this group's members must be re-read.
    #[serde(skip)]
    pub reconcile: Option<(DeviceKind, i64)>,
    /// Jamf computer ids DNS cannot recognise yet: look up their inventory.
    #[serde(skip)]
    pub lookups: Vec<i64>,
    #[serde(skip)]
    pub drift_added: usize,
    #[serde(skip)]
    pub drift_removed: usize,
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
    pub isolation: Option<Hold>,
}

pub(super) enum Command {
    Reload {
        reply: oneshot::Sender<Result<ReloadReport, PolicyErrors>>,
    },
    Apply {
        request: Box<Request>,
        reply: oneshot::Sender<Result<super::commands::Outcome, ApplyError>>,
    },
    Query {
        query: Query,
        reply: oneshot::Sender<Result<QueryReply, ApplyError>>,
    },
    /// Once a minute: lapse stale bindings.
    Tick,
}
