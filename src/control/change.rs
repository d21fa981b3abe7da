//! The control plane's one language of change: every durable mutation of device state is one of
//! these plain, serializable values. The writer commits them to the store (and its change log),
//! applies them to its state and its device view, and a replay of the same values into an empty
//! state gives the same state: nothing else changes what a snapshot says about devices.
//!
//! They name no vendor. Adapters (Jamf Pro, the API, reconciliation) say what they saw as
//! [`super::Request`]s; the writer turns those into changes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::alias::Alias;
use crate::policy::DeviceId;

/// A manual isolation: who placed it, when, why, and until when if it is time-boxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: String,
    pub ticket: String,
    pub by: String,
    /// Seconds since the epoch.
    pub at: i64,
    /// When the hold ends by itself (seconds since the epoch); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

impl Hold {
    /// The audit detail naming its ticket: `ticket IR-7`, or nothing without one.
    pub fn ticket_note(&self) -> String {
        match self.ticket.as_str() {
            "" => String::new(),
            ticket => format!("ticket {ticket}"),
        }
    }
}

/// One durable mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A device is known from now on, by this number and label.
    DeviceAdded {
        device: DeviceId,
        label: String,
    },
    LabelSet {
        device: DeviceId,
        label: String,
    },
    /// The device answers to this alias, which leaves any other device that had it.
    AliasSeen {
        alias: Alias,
        device: DeviceId,
    },
    /// The device is a member of this UEM group key.
    MembershipSet {
        device: DeviceId,
        group: String,
    },
    MembershipUnset {
        device: DeviceId,
        group: String,
    },
    /// The name the MDM gives a UEM group key.
    GroupNamed {
        group: String,
        name: String,
    },
    /// The address was seen at the device at `at` (seconds since the epoch); it leaves any other
    /// device.
    BindingSeen {
        addr: IpAddr,
        device: DeviceId,
        at: i64,
    },
    BindingLapsed {
        addr: IpAddr,
    },
    HoldPlaced {
        device: DeviceId,
        hold: Hold,
    },
    HoldReleased {
        device: DeviceId,
    },
    /// The device's isolation ended: it is on probation until `until` (seconds since the epoch).
    ProbationStarted {
        device: DeviceId,
        until: i64,
    },
    ProbationEnded {
        device: DeviceId,
    },
    /// A responder watches the device: its queries go to the trail though it is not isolated.
    /// The record says who asked, why, and until when, as a hold's does.
    WatchSet {
        device: DeviceId,
        watch: Hold,
    },
    WatchEnded {
        device: DeviceId,
    },
    /// A hold asked for a device no device answers to yet, by the alias `key` (`kind:value`,
    /// or a bare value of any kind): placed on the first device that comes with that alias.
    HoldWaiting {
        key: String,
        hold: Hold,
    },
    /// The waiting hold is placed on its device, released, or ran out.
    HoldWaitingEnded {
        key: String,
    },
    CriticalSet {
        device: DeviceId,
        critical: bool,
    },
    /// A responder asked to isolate a critical device; a second admin must grant it.
    ApprovalRequested {
        approval: u64,
        device: DeviceId,
        hold: Hold,
    },
    /// The approval is used up (the hold it asked for is placed by its own change).
    ApprovalGranted {
        approval: u64,
    },
    /// An admin turned it down: it goes, and no hold comes of it.
    ApprovalRefused {
        approval: u64,
    },
    /// A one-time key (a source's token id) is used until `until`; keys whose `until` is
    /// before `at` (both seconds since the epoch) are forgotten as this one comes, so that a
    /// replay of the log forgets the same.
    TokenSeen {
        key: String,
        until: i64,
        at: i64,
    },
}

/// An audit record: who changed what on which device, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub at: i64,
    pub device: Option<DeviceId>,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::alias::AliasKind;

    #[test]
    fn a_change_reads_back_as_it_was_written() {
        let hold = Hold {
            reason: "EDR alert".into(),
            ticket: "IR-7".into(),
            by: "alice".into(),
            at: 1_700_000_000,
            expires: None,
        };
        let changes = vec![
            Change::DeviceAdded {
                device: DeviceId(7),
                label: "FIN-MBP".into(),
            },
            Change::AliasSeen {
                alias: Alias::new(AliasKind::Serial, "C02ZK1ABMD6T"),
                device: DeviceId(7),
            },
            Change::BindingSeen {
                addr: "10.0.0.9".parse().unwrap(),
                device: DeviceId(7),
                at: 5,
            },
            Change::ApprovalRequested {
                approval: 99,
                device: DeviceId(7),
                hold: hold.clone(),
            },
            Change::HoldWaiting {
                key: "serial:c02new".into(),
                hold: Hold {
                    expires: Some(1_700_086_400),
                    ..hold
                },
            },
            Change::HoldWaitingEnded {
                key: "serial:c02new".into(),
            },
        ];
        let text = serde_json::to_string(&changes).unwrap();
        assert!(
            text.contains(r#""change":"alias_seen","alias":"serial:c02zk1abmd6t""#),
            "{text}"
        );
        assert!(text.contains(r#""device":"device#7""#), "{text}");
        // A hold without an end reads and writes as before time-boxed holds came.
        assert!(!text.contains(r#""expires":null"#), "{text}");
        assert!(text.contains(r#""expires":1700086400"#), "{text}");
        let back: Vec<Change> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, changes);
    }
}
