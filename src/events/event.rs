//! What the SOC hears: the audit actions that are events, and each event as the JSON every
//! sink starts from. The audit row's id is the event's id and its idempotency key.

use serde::Serialize;

use crate::control::shown_key;
use crate::control::store::Audited;

/// The audit actions that are events, and the event type each becomes. The control plane
/// writes the actions (`control/holds.rs`, and the tripwire and probation concerns); nothing
/// else here knows their spelling.
pub const TYPES: [(&str, &str); 12] = [
    ("isolated", "isolation_placed"),
    ("released", "isolation_released"),
    // The device's own state, whatever moved it (a hold, an MDM group, a placement).
    ("isolation_entered", "device_isolated"),
    ("isolation_left", "device_released"),
    ("tripwire_fired", "tripwire_fired"),
    ("isolation_requested", "approval_requested"),
    ("isolation_approved", "approval_granted"),
    ("isolation_waiting", "hold_waiting"),
    ("isolation_applied", "hold_applied"),
    ("isolation_waiting_ended", "hold_waiting_ended"),
    ("probation_started", "probation_started"),
    ("probation_ended", "probation_ended"),
];

/// The audit actions the outbox reads.
pub fn actions() -> Vec<&'static str> {
    TYPES.iter().map(|(action, _)| *action).collect()
}

/// One event, as every sink sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The audit row's id: increasing, and the same on every delivery of this event.
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The audit action it comes from.
    pub action: String,
    /// When it happened, RFC 3339 in UTC, and as seconds since the epoch.
    pub time: String,
    pub at: i64,
    /// The device, when the event names one (a hold waiting for a device names none).
    pub device: Option<Device>,
    /// Who did it: a responder's token name, `jamf`, `expiry`, `tripwire`, ...
    pub actor: String,
    pub reason: String,
    /// What the audit log says besides: the ticket, the approval's number, the alias waited for.
    pub detail: String,
}

/// The device an event names, as it is when the event is read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// `device#N`: Cordon's own number for it.
    pub id: String,
    pub label: Option<String>,
    /// `kind:value` (`serial:C02...`, `udid:...`, `jamf-computer:1042`, ...).
    pub aliases: Vec<String>,
}

impl Device {
    /// The alias a receiver is likeliest to know the device by: the serial, else the UDID (in
    /// upper case, as Apple writes both), else Cordon's own id.
    pub fn best_name(&self) -> String {
        ["serial:", "udid:"]
            .iter()
            .find_map(|kind| self.aliases.iter().find_map(|a| a.strip_prefix(kind)))
            .map_or_else(|| self.id.clone(), str::to_ascii_uppercase)
    }
}

impl Event {
    /// The event an audit row is, if its action is one.
    pub fn of(row: &Audited) -> Option<Event> {
        let a = &row.event;
        let &(_, kind) = TYPES.iter().find(|(action, _)| *action == a.action)?;
        Some(Event {
            id: row.id,
            kind,
            action: a.action.clone(),
            time: crate::time::rfc3339(a.at),
            at: a.at,
            device: a.device.map(|d| Device {
                id: d.to_string(),
                label: row.label.clone(),
                aliases: row.aliases.iter().map(|a| shown_key(a)).collect(),
            }),
            actor: a.actor.clone(),
            reason: a.reason.clone(),
            detail: a.detail.clone(),
        })
    }

    /// The JSON body the webhook sends (and the syslog message's text summarises).
    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event serialises")
    }

    /// One line for people: "isolation placed on device#7 (FIN-MBP) by alice: EDR alert".
    pub fn summary(&self) -> String {
        let what = self.kind.replace('_', " ");
        let on = match &self.device {
            Some(d) => match &d.label {
                Some(label) => format!(" on {} ({label})", d.id),
                None => format!(" on {}", d.id),
            },
            None => String::new(),
        };
        let detail = match self.detail.is_empty() {
            true => String::new(),
            false => format!(" [{}]", self.detail),
        };
        format!("{what}{on} by {}: {}{detail}", self.actor, self.reason)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::control::AuditEvent;
    use crate::policy::DeviceId;

    pub fn row(id: i64, action: &str) -> Audited {
        Audited {
            id,
            event: AuditEvent {
                at: 1_764_464_523,
                device: Some(DeviceId(7)),
                actor: "alice".into(),
                action: action.into(),
                detail: "ticket IR-42".into(),
                reason: "EDR: reverse shell".into(),
            },
            label: Some("FIN-MBP".into()),
            aliases: vec!["serial:c02zk1abmd6t".into(), "udid:abc".into()],
        }
    }

    #[test]
    fn events_come_only_from_the_actions_the_soc_hears_of() {
        let placed = Event::of(&row(42, "isolated")).unwrap();
        assert_eq!(placed.kind, "isolation_placed");
        assert_eq!(placed.time, "2025-11-30T01:02:03Z");
        let device = placed.device.as_ref().unwrap();
        assert_eq!(device.id, "device#7");
        assert_eq!(device.best_name(), "C02ZK1ABMD6T");
        let json: serde_json::Value = serde_json::from_slice(&placed.json()).unwrap();
        assert_eq!(json["id"], 42);
        assert_eq!(json["type"], "isolation_placed");
        assert_eq!(json["device"]["label"], "FIN-MBP");
        assert_eq!(json["detail"], "ticket IR-42");
        assert_eq!(
            placed.summary(),
            "isolation placed on device#7 (FIN-MBP) by alice: EDR: reverse shell [ticket IR-42]"
        );
        for (action, kind) in TYPES {
            assert_eq!(Event::of(&row(1, action)).unwrap().kind, kind);
        }
        for action in ["binding_added", "membership_added", "marked_critical"] {
            assert!(Event::of(&row(1, action)).is_none(), "{action}");
        }
    }
}
