//! Jamf Pro's words in the control plane's neutral terms: its group ids become UEM group keys
//! (`jamf:computer-group:42`), its device ids aliases (`jamf-computer:1042`), its events
//! [`Request`]s. Nothing else in Cordon knows these spellings.

use crate::control::{self, Alias, AliasKind, DeviceRef, Request, Source, UemGroup};

use super::events::{DeviceKind, DeviceReport, Envelope, Event, GroupChange};

/// The UEM group key of a Jamf group, as groups.toml maps it.
pub fn group_key(kind: DeviceKind, id: i64) -> String {
    match kind {
        DeviceKind::Computer => format!("jamf:computer-group:{id}"),
        DeviceKind::Mobile => format!("jamf:mobile-group:{id}"),
    }
}

/// The Jamf group a UEM group key names, if it is a Jamf key.
pub fn parse_group_key(key: &str) -> Option<(DeviceKind, i64)> {
    if let Some(id) = key.strip_prefix("jamf:computer-group:") {
        return Some((DeviceKind::Computer, id.parse().ok()?));
    }
    let id = key.strip_prefix("jamf:mobile-group:")?;
    Some((DeviceKind::Mobile, id.parse().ok()?))
}

/// A Jamf device, by its Jamf id: what a device created for it is called until it reports a name.
pub fn device(kind: DeviceKind, id: i64) -> DeviceRef {
    let (alias, label) = match kind {
        DeviceKind::Computer => (AliasKind::JamfComputer, format!("jamf computer {id}")),
        DeviceKind::Mobile => (AliasKind::JamfMobile, format!("jamf mobile device {id}")),
    };
    DeviceRef {
        alias: Alias::new(alias, &id.to_string()),
        label,
    }
}

/// The Jamf id a device alias carries, for computers (the only ones the API looks up).
pub fn computer_id(alias: &Alias) -> Option<i64> {
    (alias.kind == AliasKind::JamfComputer)
        .then(|| alias.value.parse().ok())
        .flatten()
}

/// What a Jamf device record says, in neutral terms.
pub fn report(r: &DeviceReport) -> control::DeviceReport {
    let kind = r.kind.unwrap_or(DeviceKind::Computer);
    let mut aliases = Vec::new();
    aliases.extend(r.serial.iter().map(|v| Alias::new(AliasKind::Serial, v)));
    aliases.extend(r.udid.iter().map(|v| Alias::new(AliasKind::Udid, v)));
    let management = r.management_id.iter();
    aliases.extend(management.map(|v| Alias::new(AliasKind::ManagementId, v)));
    aliases.extend(
        r.mac_addresses
            .iter()
            .map(|v| Alias::new(AliasKind::Mac, v)),
    );
    control::DeviceReport {
        device: device(kind, r.jamf_id),
        name: r.name.clone(),
        aliases,
        address: r.own_ip,
    }
}

/// Who a webhook's changes are recorded as coming from.
pub fn webhook_source(envelope: &Envelope) -> Source {
    let name = envelope.webhook_name.as_deref().unwrap_or("unnamed");
    Source::new("jamf", format!("jamf webhook {} ({name})", envelope.name))
}

/// The request a webhook asks for; `None` for events that change nothing (console tests, events
/// Cordon does not act on).
pub fn webhook_request(envelope: &Envelope) -> Option<Request> {
    if envelope.test {
        return None;
    }
    let source = webhook_source(envelope);
    match &envelope.event {
        Event::GroupChange(change) => Some(members(change, source)),
        Event::Device(r) => Some(Request::Report {
            report: report(r),
            source,
        }),
        Event::Unenrolled(r) => Some(Request::Unenrolled {
            device: device(r.kind.unwrap_or(DeviceKind::Mobile), r.jamf_id).alias,
            source,
        }),
        Event::Other => None,
    }
}

/// A membership change. The legacy form (no id lists) only names the group; its members are
/// re-read from the API by the sync.
fn members(change: &GroupChange, source: Source) -> Request {
    let ids = |list: &[i64]| -> Vec<DeviceRef> {
        let known = change.has_id_lists;
        list.iter()
            .filter(|_| known)
            .map(|&id| device(change.kind, id))
            .collect()
    };
    let reports = change.added_devices.iter().chain(&change.removed_devices);
    Request::Members {
        group: UemGroup {
            key: group_key(change.kind, change.group_id),
            name: change.group_name.clone(),
        },
        joined: ids(&change.added),
        left: ids(&change.removed).into_iter().map(|d| d.alias).collect(),
        reports: if change.has_id_lists {
            reports.map(report).collect()
        } else {
            Vec::new()
        },
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jamf::events::parse;

    #[test]
    fn group_keys_read_back() {
        for (kind, id) in [(DeviceKind::Computer, 42), (DeviceKind::Mobile, 7)] {
            assert_eq!(parse_group_key(&group_key(kind, id)), Some((kind, id)));
        }
        assert_eq!(parse_group_key("jamf:computer-group-name:Isolate"), None);
        assert_eq!(parse_group_key("mdm:finance"), None);
    }

    #[test]
    fn a_smart_group_event_names_its_group_and_its_members_by_jamf_id() {
        let body = include_str!("../../tests/fixtures/jamf/smart-group-computer-added.json");
        let envelope = parse(body.as_bytes()).unwrap();
        let Some(Request::Members {
            group,
            joined,
            left,
            source,
            ..
        }) = webhook_request(&envelope)
        else {
            panic!("a membership request");
        };
        assert!(group.key.starts_with("jamf:computer-group:"), "{group:?}");
        assert!(!joined.is_empty());
        assert!(joined
            .iter()
            .all(|d| d.alias.kind == AliasKind::JamfComputer && computer_id(&d.alias).is_some()));
        assert!(left.is_empty());
        assert_eq!(source.actor, "jamf");
        assert!(source
            .reason
            .starts_with("jamf webhook SmartGroupComputerMembershipChange"));
    }

    #[test]
    fn a_check_in_reports_the_macs_own_address_and_aliases() {
        let body = include_str!("../../tests/fixtures/jamf/computer-checkin.json");
        let Some(Request::Report { report, .. }) =
            webhook_request(&parse(body.as_bytes()).unwrap())
        else {
            panic!("a report");
        };
        assert_eq!(report.address, Some("10.20.30.142".parse().unwrap()));
        assert!(report.aliases.iter().any(|a| a.kind == AliasKind::Serial));
        assert_eq!(report.device.alias.kind, AliasKind::JamfComputer);
    }

    #[test]
    fn an_unenrolment_names_the_mobile_device_by_its_jamf_id() {
        let body = include_str!("../../tests/fixtures/jamf/mobile-device-unenrolled.json");
        let envelope = parse(body.as_bytes()).unwrap();
        let Some(Request::Unenrolled { device, .. }) = webhook_request(&envelope) else {
            panic!("an unenrolment");
        };
        assert_eq!(device.kind, AliasKind::JamfMobile);
    }

    #[test]
    fn a_legacy_group_event_asks_for_no_member_change() {
        let body = include_str!("../../tests/fixtures/jamf/smart-group-computer-legacy.json");
        let Some(Request::Members { joined, left, .. }) =
            webhook_request(&parse(body.as_bytes()).unwrap())
        else {
            panic!("a membership request");
        };
        assert!(joined.is_empty() && left.is_empty());
    }
}
