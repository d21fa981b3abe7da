//! Jamf Pro webhook bodies, parsed into the events Cordon acts on, tolerant of what real senders vary.
//!
//! The rules (tests/fixtures/README.md): route on `webhook.webhookEvent` only, never on
//! `event.computer`; every `event` field may be missing or null and missing lists are empty;
//! the id key is `jssid` or `jssID` in either place; ids may be numbers or strings;
//! `eventTimestamp` may be milliseconds or seconds; console test events carry a `(TEST)` suffix;
//! unknown events and unknown fields are accepted.
//!
//! Only what an event is about can make it an error: the group id of a group change, the ids in
//! its id lists, the device id of a device event. A side field never costs the change: a device
//! object that cannot be used is skipped and counted ([`GroupChange::skipped`]), a placeholder
//! value (`"string"`, `XX:XX:XX:XX:XX:XX`, `0.0.0.0`, ...) is absent.
//!
//! The body is walked as a [`serde_json::Value`] rather than derived, so that each of those
//! tolerances is one small function; the values are read by the rules of [`super::json`], which
//! the API client shares.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::json::{self, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    Computer,
    Mobile,
}

/// What a device event or a filled device object tells about one device. Every field but the id
/// may be absent; placeholder values are absent (see [`super::json`]), so that no alias or
/// binding is made of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceReport {
    /// Set by the parser from the event type.
    pub kind: Option<DeviceKind>,
    pub jamf_id: i64,
    pub name: Option<String>,
    /// `serialNumber`: not masked, not all zeros.
    pub serial: Option<String>,
    /// `udid`: not masked, not all zeros.
    pub udid: Option<String>,
    /// `managementId`: not masked, not all zeros.
    pub management_id: Option<String>,
    /// `macAddress`, `alternateMacAddress`, `wifiMacAddress`, `bluetoothMacAddress`, in that
    /// order: the usable ones ([`json::mac`]: not empty, masked, all zeros or broadcast),
    /// uppercased, as given otherwise (without repeats).
    pub mac_addresses: Vec<String>,
    /// The address the device reports for itself: computers' `reportedIpAddress`, mobile devices' `ipAddress`. This is what gets bound.
    pub own_ip: Option<IpAddr>,
    /// The address Jamf saw the connection come from (computers' `ipAddress`): often a NAT, never bound.
    pub seen_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// SmartGroupComputerMembershipChange -> Computer, SmartGroupMobileDeviceMembershipChange -> Mobile.
    pub kind: DeviceKind,
    /// `event.jssid` (or `jssID`).
    pub group_id: i64,
    /// `event.name`.
    pub group_name: Option<String>,
    /// `event.smartGroup`.
    pub smart: Option<bool>,
    /// `groupAddedDevicesIds`, deduplicated, order kept. Membership comes from the id lists only.
    pub added: Vec<i64>,
    /// `groupRemovedDevicesIds`, deduplicated, order kept.
    pub removed: Vec<i64>,
    /// The usable device objects of `groupAddedDevices` (filled in mobile events), kind set: an
    /// object with a `jssID` that `added` holds (any, in the legacy form without id lists).
    pub added_devices: Vec<DeviceReport>,
    /// The usable device objects of `groupRemovedDevices`, kind set, likewise with `removed`.
    pub removed_devices: Vec<DeviceReport>,
    /// false for the legacy form (no id lists at all, README: "this group changed": re-read its members)
    pub has_id_lists: bool,
    /// Entries of `groupAddedDevices` and `groupRemovedDevices` left out because they could not
    /// be used: not an object (a device name, a bare id, null), no usable `jssID` (e.g. keyed
    /// `id`), or a device that the matching id list does not name. The change itself stands;
    /// this is for a metric.
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    GroupChange(GroupChange),
    /// A full device record, which refreshes the device's aliases and its address binding:
    /// ComputerAdded, ComputerCheckIn, ComputerInventoryCompleted, ComputerPolicyFinished,
    /// ComputerPatchPolicyCompleted, ComputerPushCapabilityChanged, MobileDeviceCheckIn,
    /// MobileDeviceCommandCompleted, MobileDeviceEnrolled, MobileDeviceInventoryCompleted,
    /// MobileDevicePushSent. Jamf nests the computer record under `event.computer` for
    /// ComputerCheckIn, ComputerPolicyFinished and ComputerPatchPolicyCompleted and puts the
    /// record flat in `event` for the others (and older Jamf Pro versions for all); either place
    /// is accepted for every one of these events (nested first, field by field).
    Device(DeviceReport),
    /// MobileDeviceUnEnrolled: the device left management, and its address bindings must go.
    /// The record (flat in `event`, read like [`Event::Device`]'s) says which device: by its
    /// `jssID` first, and by the aliases it reports.
    Unenrolled(DeviceReport),
    /// Any other webhookEvent: acknowledged and counted, never an error.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// webhook.webhookEvent without a trailing " (TEST)" / "(TEST)" suffix
    pub name: String,
    pub test: bool,
    pub webhook_id: Option<i64>,
    pub webhook_name: Option<String>,
    /// eventTimestamp normalised to epoch milliseconds (values below 10^11 are seconds)
    pub timestamp_ms: Option<i64>,
    pub event: Event,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// `field` is a path into the body, e.g. "webhook.webhookEvent", "event.jssid".
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ParseError {
    /// The path of the offending field, for [`ParseError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::NotJson(_) => None,
            ParseError::Invalid { field, .. } => Some(field),
        }
    }
}

/// Parses one webhook body. Unknown events give [`Event::Other`]; only a body that is not JSON,
/// not an object, has no `webhook.webhookEvent`, or lacks (or has a bad) group or device id
/// where the event needs one, or a bad entry in an id list, is an error.
pub fn parse(body: &[u8]) -> Result<Envelope, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let root: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| invalid("body", "expected a JSON object"))?;
    let webhook = json::object(root, &["webhook"])
        .ok_or_else(|| invalid("webhook", "missing or not an object"))?;
    let (name, test) = event_name(webhook)?;

    let no_fields = Map::new();
    let event_fields = json::object(root, &["event"]).unwrap_or(&no_fields);
    let event = match route(&name) {
        Route::Group(kind) => Event::GroupChange(group_change(event_fields, kind)?),
        Route::Device(kind) => Event::Device(device_event(event_fields, kind)?),
        Route::Unenrolled(kind) => Event::Unenrolled(device_event(event_fields, kind)?),
        Route::Other => Event::Other,
    };

    Ok(Envelope {
        name,
        test,
        webhook_id: json::value(webhook, &["id"]).and_then(json::id),
        webhook_name: json::text(webhook, &["name"]),
        timestamp_ms: json::value(webhook, &["eventTimestamp"]).and_then(timestamp_ms),
        event,
    })
}

const ID_KEYS: &[&str] = &["jssid", "jssID"];
const GROUP_ID_FIELD: &str = "event.jssid";
const DEVICE_ID_FIELD: &str = "event.jssID";
const MAC_KEYS: &[&str] = &[
    "macAddress",
    "alternateMacAddress",
    "wifiMacAddress",
    "bluetoothMacAddress",
];
const TEST_SUFFIX: &str = "(TEST)";

fn invalid(field: &str, message: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

// ---- envelope ----

/// `webhook.webhookEvent`, trimmed, without its `(TEST)` suffix, and whether it had one.
fn event_name(webhook: &Object) -> Result<(String, bool), ParseError> {
    const FIELD: &str = "webhook.webhookEvent";
    let raw = match json::value(webhook, &["webhookEvent"]) {
        None => return Err(invalid(FIELD, "missing")),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(invalid(
                FIELD,
                format!("expected a string, got {}", json::excerpt(other)),
            ))
        }
    };
    let (name, test) = strip_test_suffix(raw.trim());
    if name.is_empty() {
        return Err(invalid(FIELD, "empty event name"));
    }
    Ok((name.to_owned(), test))
}

/// The name without every trailing `(TEST)` (a test event resent from the console may carry
/// two), and whether it had one.
fn strip_test_suffix(mut name: &str) -> (&str, bool) {
    let mut test = false;
    loop {
        let cut = name.len().saturating_sub(TEST_SUFFIX.len());
        match (name.get(..cut), name.get(cut..)) {
            (Some(head), Some(tail)) if tail.eq_ignore_ascii_case(TEST_SUFFIX) => {
                name = head.trim_end();
                test = true;
            }
            _ => return (name, test),
        }
    }
}

#[derive(Clone, Copy)]
enum Route {
    Group(DeviceKind),
    Device(DeviceKind),
    Unenrolled(DeviceKind),
    Other,
}

/// The events Cordon acts on, by `webhookEvent` name.
const ROUTES: &[(&str, Route)] = &[
    (
        "SmartGroupComputerMembershipChange",
        Route::Group(DeviceKind::Computer),
    ),
    (
        "SmartGroupMobileDeviceMembershipChange",
        Route::Group(DeviceKind::Mobile),
    ),
    ("ComputerAdded", Route::Device(DeviceKind::Computer)),
    ("ComputerCheckIn", Route::Device(DeviceKind::Computer)),
    (
        "ComputerInventoryCompleted",
        Route::Device(DeviceKind::Computer),
    ),
    (
        "ComputerPolicyFinished",
        Route::Device(DeviceKind::Computer),
    ),
    (
        "ComputerPatchPolicyCompleted",
        Route::Device(DeviceKind::Computer),
    ),
    (
        "ComputerPushCapabilityChanged",
        Route::Device(DeviceKind::Computer),
    ),
    ("MobileDeviceCheckIn", Route::Device(DeviceKind::Mobile)),
    (
        "MobileDeviceCommandCompleted",
        Route::Device(DeviceKind::Mobile),
    ),
    ("MobileDeviceEnrolled", Route::Device(DeviceKind::Mobile)),
    (
        "MobileDeviceInventoryCompleted",
        Route::Device(DeviceKind::Mobile),
    ),
    ("MobileDevicePushSent", Route::Device(DeviceKind::Mobile)),
    (
        "MobileDeviceUnEnrolled",
        Route::Unenrolled(DeviceKind::Mobile),
    ),
];

/// The canonical spelling of an event Cordon acts on, for metric labels; `None` for the rest.
pub fn known_event(name: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(known, _)| *known)
}

fn route(name: &str) -> Route {
    ROUTES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map_or(Route::Other, |(_, route)| *route)
}

/// Epoch milliseconds from a number or numeric string; values below 10^11 are taken as seconds.
fn timestamp_ms(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => ms_from_int(i),
            None => n.as_f64().and_then(ms_from_float),
        },
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => ms_from_int(i),
                Err(_) => s.parse::<f64>().ok().and_then(ms_from_float),
            }
        }
        _ => None,
    }
}

const SECONDS_BELOW: i64 = 100_000_000_000;

fn ms_from_int(t: i64) -> Option<i64> {
    match t {
        t if t <= 0 => None,
        t if t < SECONDS_BELOW => t.checked_mul(1000),
        t => Some(t),
    }
}

fn ms_from_float(t: f64) -> Option<i64> {
    if !t.is_finite() || t <= 0.0 {
        return None;
    }
    let ms = if t < SECONDS_BELOW as f64 {
        t * 1000.0
    } else {
        t
    };
    let ms = ms.round();
    // i64::MAX as f64 rounds up to 2^63, so `<` keeps the cast exact.
    (ms >= 1.0 && ms < i64::MAX as f64).then_some(ms as i64)
}

// ---- group changes ----

fn group_change(event: &Object, kind: DeviceKind) -> Result<GroupChange, ParseError> {
    let group_id = match json::get(event, ID_KEYS) {
        None => return Err(invalid(GROUP_ID_FIELD, "missing group id")),
        Some((key, value)) => json::id(value)
            .ok_or_else(|| invalid(&format!("event.{key}"), json::id_error(value)))?,
    };
    let added = id_list(event, "groupAddedDevicesIds")?;
    let removed = id_list(event, "groupRemovedDevicesIds")?;
    let has_id_lists = added.is_some() || removed.is_some();
    let (added, removed) = (added.unwrap_or_default(), removed.unwrap_or_default());
    let mut skipped = 0;
    let added_devices = device_list(
        event,
        kind,
        "groupAddedDevices",
        has_id_lists.then_some(added.as_slice()),
        &mut skipped,
    );
    let removed_devices = device_list(
        event,
        kind,
        "groupRemovedDevices",
        has_id_lists.then_some(removed.as_slice()),
        &mut skipped,
    );
    Ok(GroupChange {
        kind,
        group_id,
        group_name: json::text(event, &["name"]),
        smart: json::value(event, &["smartGroup"]).and_then(json::flag),
        added,
        removed,
        added_devices,
        removed_devices,
        has_id_lists,
        skipped,
    })
}

/// The id list at `event.<key>`, deduplicated, order kept; `None` when missing or null. Null
/// items are skipped and a lone id is a list of one; any other item, or a list of another type,
/// is an error: the id lists are the change itself.
fn id_list(event: &Object, key: &str) -> Result<Option<Vec<i64>>, ParseError> {
    let Some((key, value)) = json::get(event, &[key]) else {
        return Ok(None);
    };
    let items: Vec<(String, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter(|(_, item)| !item.is_null())
            .map(|(i, item)| (format!("event.{key}[{i}]"), item))
            .collect(),
        Value::Number(_) | Value::String(_) => vec![(format!("event.{key}"), value)],
        other => {
            return Err(invalid(
                &format!("event.{key}"),
                format!("expected a list of ids, got {}", json::excerpt(other)),
            ))
        }
    };
    let mut ids = Vec::with_capacity(items.len());
    let mut seen = HashSet::with_capacity(items.len());
    for (path, item) in items {
        let id = json::id(item).ok_or_else(|| invalid(&path, json::id_error(item)))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(Some(ids))
}

/// The usable device objects at `event.<key>`: objects with a usable `jssID` that `members` holds
/// (when there are id lists). Every other entry (a device name, a bare id, null, an object keyed
/// `id`, ...) is counted in `skipped`. A lone object or value is an entry of its own.
fn device_list(
    event: &Object,
    kind: DeviceKind,
    key: &str,
    members: Option<&[i64]>,
    skipped: &mut usize,
) -> Vec<DeviceReport> {
    let entries: &[Value] = match json::value(event, &[key]) {
        None => &[],
        Some(Value::Array(items)) => items,
        Some(other) => std::slice::from_ref(other),
    };
    if entries.is_empty() {
        return Vec::new();
    }
    let members: Option<HashSet<i64>> = members.map(|ids| ids.iter().copied().collect());
    let mut devices = Vec::new();
    for entry in entries {
        let usable = entry
            .as_object()
            .and_then(|object| {
                let id = json::id(json::value(object, ID_KEYS)?)?;
                Some(device_fields(&[object], kind, id))
            })
            .filter(|report| {
                members
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&report.jamf_id))
            });
        match usable {
            Some(report) => devices.push(report),
            None => *skipped += 1,
        }
    }
    devices
}

// ---- devices ----

/// A device event: the record may sit under `event.computer` or flat in `event`; the nested
/// object is read first, field by field, then `event` itself. The device id is required.
fn device_event(event: &Object, kind: DeviceKind) -> Result<DeviceReport, ParseError> {
    let nested =
        json::get(event, &["computer"]).and_then(|(key, value)| Some((key, value.as_object()?)));
    let found_id = nested
        .and_then(|(key, object)| {
            json::get(object, ID_KEYS).map(|(id_key, v)| (format!("event.{key}.{id_key}"), v))
        })
        .or_else(|| json::get(event, ID_KEYS).map(|(key, v)| (format!("event.{key}"), v)));
    let jamf_id = match found_id {
        None => return Err(invalid(DEVICE_ID_FIELD, "missing device id")),
        Some((path, value)) => {
            json::id(value).ok_or_else(|| invalid(&path, json::id_error(value)))?
        }
    };
    let mut layers = Vec::with_capacity(2);
    layers.extend(nested.map(|(_, object)| object));
    layers.push(event);
    Ok(device_fields(&layers, kind, jamf_id))
}

/// Reads one device's fields from `layers` (the first layer with a usable value wins, field by
/// field).
fn device_fields(layers: &[&Object], kind: DeviceKind, jamf_id: i64) -> DeviceReport {
    fn first<T>(layers: &[&Object], read: impl Fn(&Object) -> Option<T>) -> Option<T> {
        layers.iter().find_map(|object| read(object))
    }
    let ip_in = |key: &str| first(layers, |o| json::ip(o, &[key]));
    let (own_ip, seen_ip) = match kind {
        DeviceKind::Computer => (ip_in("reportedIpAddress"), ip_in("ipAddress")),
        DeviceKind::Mobile => (ip_in("ipAddress"), None),
    };
    let mut mac_addresses: Vec<String> = Vec::new();
    for key in MAC_KEYS {
        if let Some(mac) = first(layers, |o| json::mac(o, &[key])) {
            if !mac_addresses.contains(&mac) {
                mac_addresses.push(mac);
            }
        }
    }
    DeviceReport {
        kind: Some(kind),
        jamf_id,
        name: first(layers, |o| json::text(o, &["deviceName", "name"])),
        serial: first(layers, |o| json::identifier(o, &["serialNumber"])),
        udid: first(layers, |o| json::identifier(o, &["udid"])),
        management_id: first(layers, |o| json::identifier(o, &["managementId"])),
        mac_addresses,
        own_ip,
        seen_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP_ADDED: &str =
        include_str!("../../tests/fixtures/jamf/smart-group-computer-added.json");
    const GROUP_REMOVED: &str =
        include_str!("../../tests/fixtures/jamf/smart-group-computer-removed.json");
    const GROUP_LEGACY: &str =
        include_str!("../../tests/fixtures/jamf/smart-group-computer-legacy.json");
    const MOBILE_GROUP_ADDED: &str =
        include_str!("../../tests/fixtures/jamf/smart-group-mobile-added.json");
    const CHECKIN: &str = include_str!("../../tests/fixtures/jamf/computer-checkin.json");
    const INVENTORY: &str =
        include_str!("../../tests/fixtures/jamf/computer-inventory-completed.json");
    // Jamf Pro API answers, not webhook bodies: they sit in the same folder.
    const API_ANSWERS: &[&str] = &[
        include_str!("../../tests/fixtures/jamf/classic-computergroup.json"),
        include_str!("../../tests/fixtures/jamf/computers-inventory.json"),
        include_str!("../../tests/fixtures/jamf/oauth-token.json"),
        include_str!("../../tests/fixtures/jamf/smart-group-membership-v2.json"),
    ];

    fn ok(body: &str) -> Envelope {
        parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e} for {body}"))
    }

    fn err(body: &str) -> ParseError {
        match parse(body.as_bytes()) {
            Ok(envelope) => panic!("expected an error, got {envelope:?} for {body}"),
            Err(e) => e,
        }
    }

    fn group(body: &str) -> GroupChange {
        match ok(body).event {
            Event::GroupChange(change) => change,
            other => panic!("expected a group change, got {other:?}"),
        }
    }

    fn device(body: &str) -> DeviceReport {
        match ok(body).event {
            Event::Device(report) => report,
            other => panic!("expected a device report, got {other:?}"),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A body with the given webhookEvent and `event` (raw JSON).
    fn body(name: &str, event: &str) -> String {
        format!(r#"{{"webhook":{{"id":1,"name":"t","webhookEvent":"{name}"}},"event":{event}}}"#)
    }

    const COMPUTER_GROUP: &str = "SmartGroupComputerMembershipChange";
    const MOBILE_GROUP: &str = "SmartGroupMobileDeviceMembershipChange";

    // ---- the fixtures ----

    #[test]
    fn fixture_computer_group_added() {
        let envelope = ok(GROUP_ADDED);
        assert_eq!(
            envelope,
            Envelope {
                name: COMPUTER_GROUP.into(),
                test: false,
                webhook_id: Some(11),
                webhook_name: Some("AD-Hoc UEM Connect Sync".into()),
                timestamp_ms: Some(1_763_712_000_123),
                event: Event::GroupChange(GroupChange {
                    kind: DeviceKind::Computer,
                    group_id: 42,
                    group_name: Some("Jamf Protect - High".into()),
                    smart: Some(true),
                    added: vec![1042],
                    removed: vec![],
                    added_devices: vec![],
                    removed_devices: vec![],
                    has_id_lists: true,
                    skipped: 0,
                }),
            }
        );
    }

    #[test]
    fn fixture_computer_group_removed() {
        let envelope = ok(GROUP_REMOVED);
        assert_eq!(envelope.timestamp_ms, Some(1_763_715_600_456));
        assert_eq!(
            envelope.event,
            Event::GroupChange(GroupChange {
                kind: DeviceKind::Computer,
                group_id: 42,
                group_name: Some("Jamf Protect - High".into()),
                smart: Some(true),
                added: vec![],
                removed: vec![1042],
                added_devices: vec![],
                removed_devices: vec![],
                has_id_lists: true,
                skipped: 0,
            })
        );
    }

    #[test]
    fn fixture_legacy_group_has_no_id_lists() {
        let envelope = ok(GROUP_LEGACY);
        assert_eq!(envelope.name, COMPUTER_GROUP);
        assert_eq!(envelope.timestamp_ms, None);
        assert_eq!(envelope.webhook_id, Some(11));
        assert_eq!(
            envelope.event,
            Event::GroupChange(GroupChange {
                kind: DeviceKind::Computer,
                group_id: 42,
                group_name: Some("Jamf Protect - High".into()),
                smart: Some(true),
                added: vec![],
                removed: vec![],
                added_devices: vec![],
                removed_devices: vec![],
                has_id_lists: false,
                skipped: 0,
            })
        );
    }

    #[test]
    fn fixture_mobile_group_added_has_filled_devices() {
        let envelope = ok(MOBILE_GROUP_ADDED);
        assert_eq!(envelope.name, MOBILE_GROUP);
        assert_eq!(envelope.webhook_id, Some(12));
        assert_eq!(envelope.webhook_name.as_deref(), Some("mobile isolation"));
        assert_eq!(envelope.timestamp_ms, Some(1_763_712_999_000));
        // `"computer": false` is not what makes it mobile: the event name is.
        assert_eq!(
            envelope.event,
            Event::GroupChange(GroupChange {
                kind: DeviceKind::Mobile,
                group_id: 77,
                group_name: Some("iOS - Outdated".into()),
                smart: Some(true),
                added: vec![310],
                removed: vec![],
                added_devices: vec![DeviceReport {
                    kind: Some(DeviceKind::Mobile),
                    jamf_id: 310,
                    name: Some("Field iPad 7".into()),
                    serial: Some("F9FXK2Q4LQ".into()),
                    udid: Some("00008101-000A1D2E3F40001E".into()),
                    management_id: None,
                    mac_addresses: strings(&["A4:83:E7:10:22:3A", "A4:83:E7:10:22:3B"]),
                    own_ip: ip("192.0.2.44"),
                    seen_ip: None,
                }],
                removed_devices: vec![],
                has_id_lists: true,
                skipped: 0,
            })
        );
    }

    #[test]
    fn fixture_computer_checkin_nested() {
        let envelope = ok(CHECKIN);
        assert_eq!(envelope.name, "ComputerCheckIn");
        assert!(!envelope.test);
        assert_eq!(envelope.webhook_id, Some(3));
        assert_eq!(envelope.webhook_name.as_deref(), Some("check-ins"));
        assert_eq!(envelope.timestamp_ms, Some(1_763_711_000_000));
        assert_eq!(
            envelope.event,
            Event::Device(DeviceReport {
                kind: Some(DeviceKind::Computer),
                jamf_id: 1042,
                name: Some("FIN-MBP-0142".into()),
                serial: Some("C02ZK1ABMD6T".into()),
                udid: Some("5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B".into()),
                management_id: None,
                mac_addresses: strings(&["3C:22:FB:91:0A:42", "72:00:04:1B:9C:11"]),
                own_ip: ip("10.20.30.142"),
                seen_ip: ip("198.51.100.23"),
            })
        );
    }

    #[test]
    fn fixture_inventory_completed_flat() {
        let envelope = ok(INVENTORY);
        assert_eq!(envelope.name, "ComputerInventoryCompleted");
        assert_eq!(envelope.webhook_id, Some(4));
        assert_eq!(envelope.timestamp_ms, Some(1_763_711_500_000));
        assert_eq!(
            envelope.event,
            Event::Device(DeviceReport {
                kind: Some(DeviceKind::Computer),
                jamf_id: 1007,
                name: Some("ENG-MBA-0007".into()),
                serial: Some("FVFH31XXQ6L4".into()),
                udid: Some("9C2D4E6F-1A3B-5C7D-8E9F-0A1B2C3D4E5F".into()),
                management_id: Some("8a1f0c2e-4b7d-4e21-9f3a-2c6d8e9b0a17".into()),
                // alternateMacAddress is "" and left out.
                mac_addresses: strings(&["F0:18:98:AA:07:07"]),
                own_ip: ip("10.20.31.7"),
                seen_ip: ip("198.51.100.61"),
            })
        );
    }

    #[test]
    fn fixture_api_answers_are_not_webhooks() {
        for answer in API_ANSWERS {
            assert_eq!(err(answer).field(), Some("webhook"), "{answer}");
        }
    }

    // The records that the new device-event fixtures carry.
    fn fin_mbp_0142(own_ip: &str) -> DeviceReport {
        DeviceReport {
            kind: Some(DeviceKind::Computer),
            jamf_id: 1042,
            name: Some("FIN-MBP-0142".into()),
            serial: Some("C02ZK1ABMD6T".into()),
            udid: Some("5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B".into()),
            management_id: Some("3f6b2a10-8c4d-4e5f-9a7b-1c2d3e4f5a6b".into()),
            mac_addresses: strings(&["3C:22:FB:91:0A:42", "72:00:04:1B:9C:11"]),
            own_ip: ip(own_ip),
            seen_ip: ip("198.51.100.23"),
        }
    }

    fn field_ipad_7(own_ip: &str, management_id: bool) -> DeviceReport {
        DeviceReport {
            kind: Some(DeviceKind::Mobile),
            jamf_id: 310,
            name: Some("Field iPad 7".into()),
            serial: Some("F9FXK2Q4LQ".into()),
            udid: Some("00008101-000A1D2E3F40001E".into()),
            management_id: management_id.then(|| "c2a9e7d4-5b1f-4a3e-8d6c-0f1e2d3c4b5a".into()),
            mac_addresses: strings(&["A4:83:E7:10:22:3A", "A4:83:E7:10:22:3B"]),
            own_ip: ip(own_ip),
            seen_ip: None,
        }
    }

    /// Every webhook fixture, with the event it must parse to.
    fn webhook_fixtures() -> Vec<(&'static str, &'static str, Event)> {
        vec![
            (
                "computer-policy-finished.json",
                include_str!("../../tests/fixtures/jamf/computer-policy-finished.json"),
                Event::Device(fin_mbp_0142("10.20.30.142")),
            ),
            (
                "computer-patch-policy-completed.json",
                include_str!("../../tests/fixtures/jamf/computer-patch-policy-completed.json"),
                Event::Device(DeviceReport {
                    kind: Some(DeviceKind::Computer),
                    jamf_id: 1007,
                    name: Some("ENG-MBA-0007".into()),
                    serial: Some("FVFH31XXQ6L4".into()),
                    udid: Some("9C2D4E6F-1A3B-5C7D-8E9F-0A1B2C3D4E5F".into()),
                    management_id: Some("8a1f0c2e-4b7d-4e21-9f3a-2c6d8e9b0a17".into()),
                    mac_addresses: strings(&["F0:18:98:AA:07:07"]),
                    own_ip: ip("10.20.31.7"),
                    seen_ip: ip("198.51.100.61"),
                }),
            ),
            (
                "computer-push-capability-changed.json",
                include_str!("../../tests/fixtures/jamf/computer-push-capability-changed.json"),
                Event::Device(fin_mbp_0142("10.20.30.143")),
            ),
            (
                "mobile-device-enrolled.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-enrolled.json"),
                Event::Device(field_ipad_7("192.0.2.44", true)),
            ),
            (
                "mobile-device-checkin.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-checkin.json"),
                Event::Device(field_ipad_7("192.0.2.45", true)),
            ),
            (
                "mobile-device-command-completed.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-command-completed.json"),
                Event::Device(field_ipad_7("192.0.2.46", true)),
            ),
            (
                "mobile-device-push-sent.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-push-sent.json"),
                Event::Device(field_ipad_7("192.0.2.47", true)),
            ),
            (
                "mobile-device-unenrolled.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-unenrolled.json"),
                Event::Unenrolled(field_ipad_7("192.0.2.47", true)),
            ),
            (
                "smart-group-computer-added-names.json",
                include_str!("../../tests/fixtures/jamf/smart-group-computer-added-names.json"),
                Event::GroupChange(GroupChange {
                    kind: DeviceKind::Computer,
                    group_id: 42,
                    group_name: Some("Jamf Protect - High".into()),
                    smart: Some(true),
                    added: vec![1042, 1007],
                    removed: vec![],
                    added_devices: vec![],
                    removed_devices: vec![],
                    has_id_lists: true,
                    skipped: 2,
                }),
            ),
            (
                "smart-group-computer-added-id-keyed.json",
                include_str!("../../tests/fixtures/jamf/smart-group-computer-added-id-keyed.json"),
                Event::GroupChange(GroupChange {
                    kind: DeviceKind::Computer,
                    group_id: 42,
                    group_name: Some("Jamf Protect - High".into()),
                    smart: Some(true),
                    added: vec![1042],
                    removed: vec![],
                    added_devices: vec![],
                    removed_devices: vec![],
                    has_id_lists: true,
                    skipped: 1,
                }),
            ),
            (
                "smart-group-mobile-removed-mixed.json",
                include_str!("../../tests/fixtures/jamf/smart-group-mobile-removed-mixed.json"),
                Event::GroupChange(GroupChange {
                    kind: DeviceKind::Mobile,
                    group_id: 77,
                    group_name: Some("iOS - Outdated".into()),
                    smart: Some(true),
                    added: vec![],
                    removed: vec![310, 311],
                    added_devices: vec![],
                    removed_devices: vec![field_ipad_7("192.0.2.44", false)],
                    has_id_lists: true,
                    skipped: 2,
                }),
            ),
            (
                "computer-checkin-docs-placeholders.json",
                include_str!("../../tests/fixtures/jamf/computer-checkin-docs-placeholders.json"),
                Event::Device(DeviceReport {
                    kind: Some(DeviceKind::Computer),
                    jamf_id: 999,
                    ..DeviceReport::default()
                }),
            ),
            (
                "computer-policy-finished-masked.json",
                include_str!("../../tests/fixtures/jamf/computer-policy-finished-masked.json"),
                Event::Device(DeviceReport {
                    kind: Some(DeviceKind::Computer),
                    jamf_id: 51,
                    // A name is a label, not an alias: kept as given.
                    name: Some("M-XXXXXX".into()),
                    ..DeviceReport::default()
                }),
            ),
            (
                "mobile-device-inventory-placeholders.json",
                include_str!("../../tests/fixtures/jamf/mobile-device-inventory-placeholders.json"),
                Event::Device(DeviceReport {
                    kind: Some(DeviceKind::Mobile),
                    jamf_id: 312,
                    name: Some("Loaner iPad 3".into()),
                    ..DeviceReport::default()
                }),
            ),
            (
                "smart-group-computer-added.json",
                GROUP_ADDED,
                ok(GROUP_ADDED).event,
            ),
            (
                "smart-group-computer-removed.json",
                GROUP_REMOVED,
                ok(GROUP_REMOVED).event,
            ),
            (
                "smart-group-computer-legacy.json",
                GROUP_LEGACY,
                ok(GROUP_LEGACY).event,
            ),
            (
                "smart-group-mobile-added.json",
                MOBILE_GROUP_ADDED,
                ok(MOBILE_GROUP_ADDED).event,
            ),
            ("computer-checkin.json", CHECKIN, ok(CHECKIN).event),
            (
                "computer-inventory-completed.json",
                INVENTORY,
                ok(INVENTORY).event,
            ),
        ]
    }

    #[test]
    fn every_webhook_fixture_parses_to_its_event() {
        for (file, text, expected) in webhook_fixtures() {
            let envelope = ok(text);
            assert!(!envelope.test, "{file}");
            // Only the legacy form predates eventTimestamp.
            assert_eq!(
                envelope.timestamp_ms.is_some(),
                !file.contains("legacy"),
                "{file}"
            );
            assert_eq!(envelope.event, expected, "{file}");
            // The name routes the event; the fixture's own name says which.
            let named = known_event(&envelope.name);
            match &envelope.event {
                Event::Other => assert_eq!(named, None, "{file}"),
                _ => assert_eq!(named, Some(envelope.name.as_str()), "{file}"),
            }
        }
    }

    #[test]
    fn no_fixture_in_the_folder_is_refused() {
        // Every file in tests/fixtures/jamf, also ones added later: a webhook body parses, an
        // API answer is refused for having no `webhook` only.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jamf");
        let listed: Vec<&str> = webhook_fixtures()
            .iter()
            .map(|(file, _, _)| *file)
            .collect();
        let mut webhooks = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            let bytes = std::fs::read(&path).unwrap();
            let value: Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
            if value.get("webhook").is_none() {
                assert_eq!(
                    parse(&bytes).unwrap_err().field(),
                    Some("webhook"),
                    "{file}"
                );
                continue;
            }
            webhooks += 1;
            let envelope = parse(&bytes).unwrap_or_else(|e| panic!("{file} refused: {e}"));
            assert!(
                listed.contains(&file.as_str()),
                "{file}: add it to webhook_fixtures()"
            );
            if let Event::Device(report) | Event::Unenrolled(report) = &envelope.event {
                for alias in [&report.serial, &report.udid, &report.management_id]
                    .into_iter()
                    .flatten()
                {
                    assert!(!json::is_placeholder_identifier(alias), "{file}: {alias}");
                }
            }
        }
        assert_eq!(webhooks, listed.len());
    }

    #[test]
    fn placeholders_make_no_alias_and_no_binding() {
        // Jamf's documentation sample: every text field "string".
        let report = device(include_str!(
            "../../tests/fixtures/jamf/computer-checkin-docs-placeholders.json"
        ));
        assert_eq!((report.jamf_id, report.name.as_deref()), (999, None));
        assert!(report.mac_addresses.is_empty());
        assert_eq!((report.own_ip, report.seen_ip), (None, None));
        // A placeholder in the nested record does not hide a real value in `event`.
        let report = device(&body(
            "ComputerPolicyFinished",
            r#"{"computer":{"jssID":7,"serialNumber":"string","udid":"XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX","reportedIpAddress":"0.0.0.0","macAddress":"00:00:00:00:00:00"},
                "serialNumber":"C02REAL0007","udid":"U-7","reportedIpAddress":"10.0.0.7","macAddress":"3c:22:fb:91:0a:07"}"#,
        ));
        assert_eq!(report.serial.as_deref(), Some("C02REAL0007"));
        assert_eq!(report.udid.as_deref(), Some("U-7"));
        assert_eq!(report.own_ip, ip("10.0.0.7"));
        assert_eq!(report.mac_addresses, strings(&["3C:22:FB:91:0A:07"]));
        // Inside group device objects too.
        let change = group(&body(
            MOBILE_GROUP,
            r#"{"jssid":77,"groupAddedDevicesIds":[5],"groupAddedDevices":[{"jssID":5,"serialNumber":"Not Available","udid":"","wifiMacAddress":"XX:XX:XX:XX:XX:XX","bluetoothMacAddress":"ff:ff:ff:ff:ff:ff","ipAddress":"255.255.255.255","managementId":"00000000-0000-0000-0000-000000000000"}]}"#,
        ));
        assert_eq!(
            change.added_devices,
            vec![DeviceReport {
                kind: Some(DeviceKind::Mobile),
                jamf_id: 5,
                ..DeviceReport::default()
            }]
        );
    }

    #[test]
    fn unenrolled_names_the_device_and_needs_its_id() {
        let envelope = ok(&body(
            "MobileDeviceUnEnrolled",
            r#"{"jssID":"310","udid":"U-310","ipAddress":"192.0.2.44","wifiMacAddress":"string"}"#,
        ));
        assert_eq!(known_event(&envelope.name), Some("MobileDeviceUnEnrolled"));
        assert_eq!(
            envelope.event,
            Event::Unenrolled(DeviceReport {
                kind: Some(DeviceKind::Mobile),
                jamf_id: 310,
                udid: Some("U-310".into()),
                own_ip: ip("192.0.2.44"),
                ..DeviceReport::default()
            })
        );
        // Jamf spells it with a capital E; any case routes.
        assert!(matches!(
            ok(&body("MobileDeviceUnenrolled", r#"{"jssID":1}"#)).event,
            Event::Unenrolled(_)
        ));
        let e = err(&body("MobileDeviceUnEnrolled", r#"{"deviceName":"no id"}"#));
        assert_eq!(e.field(), Some("event.jssID"));
    }

    #[test]
    fn device_events_read_the_record_nested_or_flat() {
        // Older Jamf Pro versions sent the policy events flat; newer ones nest the record.
        for name in [
            "ComputerPolicyFinished",
            "ComputerPatchPolicyCompleted",
            "ComputerPushCapabilityChanged",
        ] {
            for event in [
                r#"{"computer":{"jssID":1042,"reportedIpAddress":"10.20.30.142"},"policyId":3,"successful":true}"#,
                r#"{"jssID":1042,"reportedIpAddress":"10.20.30.142"}"#,
            ] {
                let report = device(&body(name, event));
                assert_eq!(report.kind, Some(DeviceKind::Computer), "{name}");
                assert_eq!((report.jamf_id, report.own_ip), (1042, ip("10.20.30.142")));
            }
            let e = err(&body(name, r#"{"policyId":3,"successful":true}"#));
            assert_eq!(e.field(), Some("event.jssID"), "{name}");
        }
        for name in ["MobileDeviceCommandCompleted", "MobileDevicePushSent"] {
            let report = device(&body(name, r#"{"jssID":"310","ipAddress":"192.0.2.44"}"#));
            assert_eq!(report.kind, Some(DeviceKind::Mobile), "{name}");
            assert_eq!(
                (report.jamf_id, report.own_ip, report.seen_ip),
                (310, ip("192.0.2.44"), None)
            );
        }
    }

    // ---- ids ----

    #[test]
    fn ids_as_strings() {
        let change = group(&body(
            COMPUTER_GROUP,
            r#"{"jssid":"42","groupAddedDevicesIds":["1042"," 1007 ",1042],"groupRemovedDevicesIds":["9"]}"#,
        ));
        assert_eq!(change.group_id, 42);
        assert_eq!(change.added, vec![1042, 1007]);
        assert_eq!(change.removed, vec![9]);

        let report = device(&body("ComputerAdded", r#"{"jssID":"1042"}"#));
        assert_eq!(report.jamf_id, 1042);
        let report = device(&body("ComputerAdded", r#"{"jssID":1042.0}"#));
        assert_eq!(report.jamf_id, 1042);
    }

    #[test]
    fn jss_id_spelling_in_group_event() {
        let change = group(&body(
            COMPUTER_GROUP,
            r#"{"jssID":42,"groupAddedDevicesIds":[1]}"#,
        ));
        assert_eq!(change.group_id, 42);
        let change = group(&body(COMPUTER_GROUP, r#"{"JSSID":"43"}"#));
        assert_eq!(change.group_id, 43);
    }

    #[test]
    fn jssid_spelling_in_device_object_and_event() {
        let change = group(&body(
            MOBILE_GROUP,
            r#"{"jssid":77,"groupAddedDevices":[{"jssid":311,"ipAddress":"192.0.2.45"}],"groupAddedDevicesIds":[310,311]}"#,
        ));
        assert_eq!(change.added, vec![310, 311]);
        assert_eq!(change.skipped, 0);
        assert_eq!(change.added_devices.len(), 1);
        assert_eq!(change.added_devices[0].jamf_id, 311);
        assert_eq!(change.added_devices[0].own_ip, ip("192.0.2.45"));

        let report = device(&body("MobileDeviceCheckIn", r#"{"jssid":5}"#));
        assert_eq!(report.jamf_id, 5);
        let report = device(&body("ComputerCheckIn", r#"{"computer":{"jssid":"6"}}"#));
        assert_eq!(report.jamf_id, 6);
    }

    #[test]
    fn group_without_id_is_invalid() {
        for event in [r#"{}"#, r#"{"jssid":null,"name":"x"}"#, "null", r#""text""#] {
            let e = err(&body(COMPUTER_GROUP, event));
            assert_eq!(e.field(), Some("event.jssid"), "{event}");
        }
        let e = err(r#"{"webhook":{"webhookEvent":"SmartGroupMobileDeviceMembershipChange"}}"#);
        assert_eq!(e.field(), Some("event.jssid"));
        assert_eq!(e.to_string(), "event.jssid: missing group id");
    }

    #[test]
    fn group_with_bad_id_is_invalid() {
        for (event, field) in [
            (r#"{"jssid":0}"#, "event.jssid"),
            (r#"{"jssID":"forty-two"}"#, "event.jssID"),
            (
                r#"{"jssid":42,"groupAddedDevicesIds":[1,-3]}"#,
                "event.groupAddedDevicesIds[1]",
            ),
            (
                r#"{"jssid":42,"groupRemovedDevicesIds":{"a":1}}"#,
                "event.groupRemovedDevicesIds",
            ),
            (
                r#"{"jssid":42,"groupAddedDevicesIds":[1,"x"]}"#,
                "event.groupAddedDevicesIds[1]",
            ),
            (
                r#"{"jssid":42,"groupRemovedDevicesIds":true}"#,
                "event.groupRemovedDevicesIds",
            ),
            (r#"{"jssid":9007199254740992}"#, "event.jssid"),
        ] {
            let e = err(&body(COMPUTER_GROUP, event));
            assert_eq!(e.field(), Some(field), "{event}: {e}");
        }
    }

    #[test]
    fn device_without_id_is_invalid() {
        for event in [
            r#"{}"#,
            r#"{"computer":{"deviceName":"x"}}"#,
            "null",
            r#"{"jssID":null}"#,
        ] {
            let e = err(&body("ComputerCheckIn", event));
            assert_eq!(e.field(), Some("event.jssID"), "{event}");
        }
        let e = err(r#"{"webhook":{"webhookEvent":"MobileDeviceEnrolled"}}"#);
        assert_eq!(e.field(), Some("event.jssID"));
    }

    #[test]
    fn device_id_must_be_a_positive_integer() {
        for (event, field) in [
            (r#"{"jssID":0}"#, "event.jssID"),
            (r#"{"jssID":-5}"#, "event.jssID"),
            (r#"{"jssID":"abc"}"#, "event.jssID"),
            (r#"{"jssID":""}"#, "event.jssID"),
            (r#"{"jssID":1.5}"#, "event.jssID"),
            (r#"{"jssID":true}"#, "event.jssID"),
            (r#"{"jssID":[1]}"#, "event.jssID"),
            (r#"{"jssID":18446744073709551615}"#, "event.jssID"),
            (r#"{"computer":{"jssID":"-1"}}"#, "event.computer.jssID"),
        ] {
            let e = err(&body("ComputerInventoryCompleted", event));
            assert_eq!(e.field(), Some(field), "{event}: {e}");
            assert!(e.to_string().contains("positive integer"), "{e}");
        }
    }

    // ---- lists ----

    #[test]
    fn null_lists_are_empty() {
        let change = group(&body(
            COMPUTER_GROUP,
            r#"{"jssid":42,"name":null,"smartGroup":null,"groupAddedDevicesIds":[1042],"groupRemovedDevicesIds":null,"groupAddedDevices":null,"groupRemovedDevices":[null]}"#,
        ));
        assert_eq!(change.added, vec![1042]);
        assert!(change.removed.is_empty());
        assert!(change.added_devices.is_empty() && change.removed_devices.is_empty());
        // The null among the device objects is an entry that could not be used.
        assert_eq!(change.skipped, 1);
        assert_eq!(change.group_name, None);
        assert_eq!(change.smart, None);
        assert!(change.has_id_lists);

        // Both id lists null: nothing tells who changed, so it reads as the legacy form.
        let change = group(&body(
            COMPUTER_GROUP,
            r#"{"jssid":42,"groupAddedDevicesIds":null,"groupRemovedDevicesIds":null}"#,
        ));
        assert!(!change.has_id_lists);
        assert!(change.added.is_empty() && change.removed.is_empty());

        // Empty lists are lists: the change is known to be empty.
        let change = group(&body(
            COMPUTER_GROUP,
            r#"{"jssid":42,"groupAddedDevicesIds":[]}"#,
        ));
        assert!(change.has_id_lists);
    }

    #[test]
    fn membership_comes_from_the_id_lists_only() {
        let change = group(&body(
            MOBILE_GROUP,
            r#"{"jssid":77,"groupAddedDevicesIds":[3,1,2],"groupAddedDevices":[{"jssID":1},{"jssID":"2"},7,{"jssID":8}],
                "groupRemovedDevicesIds":[9],"groupRemovedDevices":[{"jssID":9,"wifiMacAddress":"aa:bb:cc:dd:ee:ff"}]}"#,
        ));
        assert_eq!(change.added, vec![3, 1, 2]);
        assert_eq!(
            change
                .added_devices
                .iter()
                .map(|d| d.jamf_id)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        // The bare 7 and the object for 8, which the id list does not name, are left out.
        assert_eq!(change.skipped, 2);
        assert_eq!(change.removed, vec![9]);
        assert_eq!(change.removed_devices[0].kind, Some(DeviceKind::Mobile));
        assert_eq!(
            change.removed_devices[0].mac_addresses,
            strings(&["AA:BB:CC:DD:EE:FF"])
        );
        assert!(change.has_id_lists);

        // Device objects alone are not id lists: the event says "re-read the group", and the
        // objects are kept as details.
        let change = group(&body(
            MOBILE_GROUP,
            r#"{"jssid":77,"groupAddedDevices":[{"jssID":310}]}"#,
        ));
        assert!(change.added.is_empty());
        assert_eq!(change.added_devices.len(), 1);
        assert_eq!(change.skipped, 0);
        assert!(!change.has_id_lists);
    }

    #[test]
    fn unusable_device_entries_are_skipped_and_counted_never_refused() {
        for (devices, skipped) in [
            (r#"["FIN-MBP-0142","ENG-MBA-0007"]"#, 2),
            (r#"[{"id":1042,"name":"FIN-MBP-0142"}]"#, 1),
            (
                r#"[{"name":"no id"},{"jssID":true},{"jssID":-1},{"jssID":"abc"},{"jssID":1.5}]"#,
                5,
            ),
            (r#"[[1042],true,null,1042,"1042"]"#, 5),
            (r#""FIN-MBP-0142""#, 1),
            ("17", 1),
            ("true", 1),
            (r#"{"deviceName":"a lone object without an id"}"#, 1),
            (r#"{"jssID":1042,"deviceName":"a lone object"}"#, 0),
            ("[]", 0),
            ("null", 0),
        ] {
            let change = group(&body(
                COMPUTER_GROUP,
                &format!(
                    r#"{{"jssid":42,"groupAddedDevicesIds":[1042],"groupAddedDevices":{devices},"groupRemovedDevicesIds":[],"groupRemovedDevices":{devices}}}"#
                ),
            ));
            assert_eq!(change.added, vec![1042], "{devices}");
            assert!(change.removed.is_empty(), "{devices}");
            // On the removed side nothing is named by the (empty) id list.
            let on_removed = change.removed_devices.len();
            assert_eq!(on_removed, 0, "{devices}");
            let objects = change.added_devices.len();
            assert_eq!(
                change.skipped,
                skipped + skipped + objects,
                "{devices}: {change:?}"
            );
        }
    }

    #[test]
    fn mobile_group_change_fills_devices() {
        let change = group(MOBILE_GROUP_ADDED);
        assert_eq!(change.added_devices[0].own_ip, ip("192.0.2.44"));
        assert_eq!(change.added_devices[0].kind, Some(DeviceKind::Mobile));
    }

    // ---- envelope ----

    #[test]
    fn event_timestamp_in_seconds_or_as_string() {
        for (value, expected) in [
            ("1763712000", Some(1_763_712_000_000)),
            ("1763712000123", Some(1_763_712_000_123)),
            ("\"1763712000\"", Some(1_763_712_000_000)),
            ("1763712000.5", Some(1_763_712_000_500)),
            ("\"1763712000123\"", Some(1_763_712_000_123)),
            ("99999999999", Some(99_999_999_999_000)),
            ("100000000000", Some(100_000_000_000)),
            ("0", None),
            ("-5", None),
            ("null", None),
            ("\"soon\"", None),
            ("1e300", None),
            ("9223372036854775807", Some(i64::MAX)),
        ] {
            let body = format!(
                r#"{{"webhook":{{"webhookEvent":"JSSStartup","eventTimestamp":{value}}}}}"#
            );
            assert_eq!(ok(&body).timestamp_ms, expected, "{value}");
        }
    }

    #[test]
    fn test_suffix_is_stripped() {
        for (raw, name) in [
            ("ComputerCheckIn (TEST)", "ComputerCheckIn"),
            ("ComputerCheckIn(TEST)", "ComputerCheckIn"),
            ("ComputerCheckIn (test) ", "ComputerCheckIn"),
            ("ComputerCheckIn (TEST) (TEST)", "ComputerCheckIn"),
        ] {
            let envelope = ok(&body(raw, r#"{"computer":{"jssID":1042}}"#));
            assert_eq!(envelope.name, name);
            assert!(envelope.test);
            assert!(matches!(
                envelope.event,
                Event::Device(DeviceReport { jamf_id: 1042, .. })
            ));
        }
        let envelope = ok(&body(
            "SmartGroupComputerMembershipChange (TEST)",
            r#"{"jssid":1}"#,
        ));
        assert!(envelope.test);
        assert!(matches!(envelope.event, Event::GroupChange(_)));
        let envelope = ok(&body("JSSShutdown (TEST)", "{}"));
        assert_eq!(
            (envelope.name.as_str(), envelope.test),
            ("JSSShutdown", true)
        );
        assert_eq!(envelope.event, Event::Other);
    }

    #[test]
    fn unknown_event_is_other() {
        for name in [
            "PatchSoftwareTitleUpdated",
            "SCEPChallenge",
            "JSSStartup",
            "RestAPIOperation",
            "Über",
        ] {
            let envelope = ok(&body(name, r#"{"anything":[1,2,{"x":null}]}"#));
            assert_eq!(envelope.name, name);
            assert_eq!(envelope.event, Event::Other);
        }
        // An unknown event needs no event object at all, nor any id.
        let envelope = ok(r#"{"webhook":{"webhookEvent":"DeviceAddedToDEP"},"event":null}"#);
        assert_eq!(envelope.event, Event::Other);
        assert_eq!(envelope.webhook_id, None);
        assert_eq!(envelope.webhook_name, None);
    }

    #[test]
    fn not_json() {
        for body in ["", "not json", "{\"webhook\":", "\u{0}", "{'a':1}"] {
            let e = err(body);
            assert!(matches!(e, ParseError::NotJson(_)), "{body}: {e:?}");
            assert_eq!(e.field(), None);
            assert!(e.to_string().starts_with("body is not JSON: "));
        }
        let e = parse(&[0xff, 0xfe, b'{', b'}']).unwrap_err();
        assert!(matches!(e, ParseError::NotJson(_)));
    }

    #[test]
    fn json_but_not_an_object() {
        for body in ["[]", "42", "\"webhook\"", "null", "true"] {
            assert_eq!(err(body).field(), Some("body"), "{body}");
        }
    }

    #[test]
    fn missing_webhook_or_webhook_event() {
        assert_eq!(err(r#"{"event":{"jssid":1}}"#).field(), Some("webhook"));
        assert_eq!(err(r#"{"webhook":null}"#).field(), Some("webhook"));
        assert_eq!(
            err(r#"{"webhook":"ComputerCheckIn"}"#).field(),
            Some("webhook")
        );
        for webhook in [
            r#"{}"#,
            r#"{"id":3,"name":"x"}"#,
            r#"{"webhookEvent":null}"#,
            r#"{"webhookEvent":7}"#,
            r#"{"webhookEvent":""}"#,
            r#"{"webhookEvent":"  "}"#,
            r#"{"webhookEvent":"(TEST)"}"#,
        ] {
            let e = err(&format!(r#"{{"webhook":{webhook},"event":{{"jssid":1}}}}"#));
            assert_eq!(e.field(), Some("webhook.webhookEvent"), "{webhook}");
            assert!(e.to_string().starts_with("webhook.webhookEvent: "));
        }
    }

    #[test]
    fn leading_bom_is_accepted() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(GROUP_ADDED.as_bytes());
        assert_eq!(parse(&bytes).unwrap(), ok(GROUP_ADDED));
    }

    #[test]
    fn webhook_id_as_string_or_bad() {
        let envelope = ok(r#"{"webhook":{"id":"11","webhookEvent":"X"}}"#);
        assert_eq!(envelope.webhook_id, Some(11));
        let envelope = ok(r#"{"webhook":{"id":"eleven","name":"","webhookEvent":"X"}}"#);
        assert_eq!(envelope.webhook_id, None);
        assert_eq!(envelope.webhook_name, None);
    }

    // ---- device reports ----

    #[test]
    fn computer_checkin_binds_reported_ip_not_seen_ip() {
        let report = device(CHECKIN);
        assert_eq!(report.own_ip, ip("10.20.30.142"));
        assert_eq!(report.seen_ip, ip("198.51.100.23"));
    }

    #[test]
    fn inventory_completed_flat_has_management_id() {
        let report = device(INVENTORY);
        assert_eq!(
            report.management_id.as_deref(),
            Some("8a1f0c2e-4b7d-4e21-9f3a-2c6d8e9b0a17")
        );
    }

    #[test]
    fn routing_ignores_event_computer() {
        // A mobile group event that claims to be about computers.
        let change = group(&body(MOBILE_GROUP, r#"{"computer":true,"jssid":77}"#));
        assert_eq!(change.kind, DeviceKind::Mobile);
        // A computer group event that claims the opposite.
        let change = group(&body(COMPUTER_GROUP, r#"{"computer":false,"jssid":42}"#));
        assert_eq!(change.kind, DeviceKind::Computer);
        // A check-in whose `computer` is not an object: the fields are read flat.
        let report = device(&body(
            "ComputerCheckIn",
            r#"{"computer":false,"jssID":8,"reportedIpAddress":"10.0.0.8"}"#,
        ));
        assert_eq!((report.jamf_id, report.own_ip), (8, ip("10.0.0.8")));
    }

    #[test]
    fn device_fields_are_accepted_in_either_place() {
        // ComputerInventoryCompleted nested like a check-in.
        let nested = device(&body(
            "ComputerInventoryCompleted",
            r#"{"computer":{"jssID":1007,"managementId":"m-1","reportedIpAddress":"10.20.31.7"}}"#,
        ));
        assert_eq!(nested.jamf_id, 1007);
        assert_eq!(nested.management_id.as_deref(), Some("m-1"));
        assert_eq!(nested.own_ip, ip("10.20.31.7"));

        // ComputerCheckIn flat like an inventory.
        let flat = device(&body(
            "ComputerCheckIn",
            r#"{"jssID":1042,"reportedIpAddress":"10.20.30.142","ipAddress":"198.51.100.23"}"#,
        ));
        assert_eq!(
            (flat.own_ip, flat.seen_ip),
            (ip("10.20.30.142"), ip("198.51.100.23"))
        );

        // Split across both: the nested object wins field by field, the rest comes from event.
        let split = device(&body(
            "ComputerAdded",
            r#"{"computer":{"jssID":5,"deviceName":"inner","serialNumber":""},"jssID":6,"deviceName":"outer","serialNumber":"S-1"}"#,
        ));
        assert_eq!(split.jamf_id, 5);
        assert_eq!(split.name.as_deref(), Some("inner"));
        assert_eq!(split.serial.as_deref(), Some("S-1"));
    }

    #[test]
    fn mobile_device_events() {
        for name in [
            "MobileDeviceCheckIn",
            "MobileDeviceEnrolled",
            "MobileDeviceInventoryCompleted",
        ] {
            let report = device(&body(
                name,
                r#"{"jssID":310,"deviceName":"Field iPad 7","ipAddress":"192.0.2.44","wifiMacAddress":"a4:83:e7:10:22:3a","bluetoothMacAddress":"","udid":"U-1"}"#,
            ));
            assert_eq!(
                report,
                DeviceReport {
                    kind: Some(DeviceKind::Mobile),
                    jamf_id: 310,
                    name: Some("Field iPad 7".into()),
                    serial: None,
                    udid: Some("U-1".into()),
                    management_id: None,
                    mac_addresses: strings(&["A4:83:E7:10:22:3A"]),
                    own_ip: ip("192.0.2.44"),
                    seen_ip: None,
                },
                "{name}"
            );
        }
    }

    #[test]
    fn computer_added_is_a_device_event() {
        let report = device(&body("ComputerAdded", r#"{"jssID":"12"}"#));
        assert_eq!(report.kind, Some(DeviceKind::Computer));
        assert_eq!(
            report,
            DeviceReport {
                kind: Some(DeviceKind::Computer),
                jamf_id: 12,
                ..DeviceReport::default()
            }
        );
    }

    #[test]
    fn bad_and_empty_ips_are_absent() {
        for value in [
            r#""""#,
            r#""   ""#,
            r#""not an ip""#,
            r#""10.0.0.300""#,
            r#""0.0.0.0""#,
            "null",
            "17",
            "[]",
        ] {
            let report = device(&body(
                "ComputerCheckIn",
                &format!(
                    r#"{{"computer":{{"jssID":1,"reportedIpAddress":{value},"ipAddress":{value}}}}}"#
                ),
            ));
            assert_eq!((report.own_ip, report.seen_ip), (None, None), "{value}");
        }
        let report = device(&body(
            "ComputerCheckIn",
            r#"{"jssID":1,"reportedIpAddress":" 2001:db8::42 ","ipAddress":"[2001:db8::1]"}"#,
        ));
        assert_eq!(report.own_ip, ip("2001:db8::42"));
        assert_eq!(report.seen_ip, ip("2001:db8::1"));
    }

    #[test]
    fn mac_addresses_uppercased_non_empty_in_order() {
        let report = device(&body(
            "ComputerCheckIn",
            r#"{"computer":{"jssID":1,"bluetoothMacAddress":"de:ad:be:ef:00:04","wifiMacAddress":"","alternateMacAddress":"3c22.fb91.0a42","macAddress":"3c:22:fb:91:0a:42"}}"#,
        ));
        assert_eq!(
            report.mac_addresses,
            strings(&["3C:22:FB:91:0A:42", "3C22.FB91.0A42", "DE:AD:BE:EF:00:04"])
        );
    }

    #[test]
    fn ids_at_or_above_2_pow_53_are_refused() {
        let e = err(&body("ComputerAdded", r#"{"jssID":9007199254740992}"#));
        assert_eq!(e.field(), Some("event.jssID"));
        let e = err(&body(COMPUTER_GROUP, r#"{"jssid":"9007199254740992"}"#));
        assert_eq!(e.field(), Some("event.jssid"));
        assert_eq!(
            device(&body("ComputerAdded", r#"{"jssID":9007199254740991}"#)).jamf_id,
            9_007_199_254_740_991
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut value: Value = serde_json::from_str(CHECKIN).unwrap();
        value["extra"] = Value::from("x");
        value["webhook"]["future"] = serde_json::json!({"a": [1, 2]});
        value["event"]["computer"]["newField"] = Value::from(3);
        let bytes = serde_json::to_vec(&value).unwrap();
        assert_eq!(parse(&bytes).unwrap(), ok(CHECKIN));
    }

    // ---- robustness ----

    /// xorshift64*: a deterministic stand-in for a fuzzer, without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const KEYS: &[&str] = &[
        "webhook",
        "event",
        "webhookEvent",
        "id",
        "name",
        "eventTimestamp",
        "jssid",
        "jssID",
        "computer",
        "groupAddedDevices",
        "groupAddedDevicesIds",
        "groupRemovedDevices",
        "groupRemovedDevicesIds",
        "smartGroup",
        "deviceName",
        "serialNumber",
        "udid",
        "managementId",
        "macAddress",
        "alternateMacAddress",
        "wifiMacAddress",
        "bluetoothMacAddress",
        "ipAddress",
        "reportedIpAddress",
    ];
    const STRINGS: &[&str] = &[
        "",
        " ",
        "1042",
        "-1",
        "0",
        "abc",
        "10.0.0.1",
        "::1",
        "[::1]",
        "(TEST)",
        "é(TEST)",
        "ComputerCheckIn",
        "SmartGroupComputerMembershipChange (TEST)",
        "a4:83:e7:10:22:3a",
        "9999999999999999999999",
        "1e3",
        "ß",
        "🙂(TEST)",
        "true",
    ];
    const NAMES: &[&str] = &[
        "SmartGroupComputerMembershipChange",
        "SmartGroupMobileDeviceMembershipChange",
        "ComputerAdded",
        "ComputerCheckIn",
        "ComputerInventoryCompleted",
        "MobileDeviceCheckIn",
        "MobileDeviceEnrolled",
        "MobileDeviceInventoryCompleted",
        "ComputerPolicyFinished",
        "ComputerPatchPolicyCompleted",
        "ComputerPushCapabilityChanged",
        "MobileDeviceCommandCompleted",
        "MobileDevicePushSent",
        "MobileDeviceUnEnrolled",
        "JSSStartup",
        "",
    ];

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        let kinds = if depth == 0 { 6 } else { 8 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => {
                Value::from(*rng.pick(&[0i64, 1, -1, 42, 1042, i64::MAX, i64::MIN, 1_763_712_000]))
            }
            3 => serde_json::json!(*rng.pick(&[1.5f64, 1042.0, -0.0, 1e300, 1_763_712_000.25])),
            4 => Value::from(u64::MAX),
            5 => Value::from(*rng.pick(STRINGS)),
            6 => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => random_object(rng, depth - 1),
        }
    }

    fn random_object(rng: &mut Rng, depth: usize) -> Value {
        let mut object = Map::new();
        for _ in 0..rng.below(8) {
            object.insert(rng.pick(KEYS).to_string(), random_value(rng, depth));
        }
        Value::Object(object)
    }

    /// Checks what every successful parse promises.
    fn check(bytes: &[u8]) {
        let envelope = match parse(bytes) {
            Ok(envelope) => envelope,
            Err(e) => {
                let _ = e.to_string();
                if let ParseError::Invalid { field, .. } = &e {
                    assert!(!field.is_empty());
                }
                return;
            }
        };
        assert!(!envelope.name.is_empty());
        assert!(envelope.timestamp_ms.is_none_or(|t| t > 0));
        let check_device = |d: &DeviceReport| {
            assert!(d.jamf_id > 0 && d.jamf_id < json::ID_LIMIT && d.kind.is_some());
            for alias in [&d.serial, &d.udid, &d.management_id].into_iter().flatten() {
                assert!(!json::is_placeholder_identifier(alias), "{alias}");
            }
            assert!(d
                .mac_addresses
                .iter()
                .all(|m| !json::is_placeholder_identifier(m) && *m == m.to_ascii_uppercase()));
        };
        match &envelope.event {
            Event::GroupChange(change) => {
                assert!(change.group_id > 0);
                for ids in [&change.added, &change.removed] {
                    assert!(ids.iter().all(|&id| id > 0));
                    let mut unique = ids.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    assert_eq!(unique.len(), ids.len());
                }
                change.added_devices.iter().for_each(check_device);
                change.removed_devices.iter().for_each(check_device);
                if change.has_id_lists {
                    assert!(change
                        .added_devices
                        .iter()
                        .all(|d| change.added.contains(&d.jamf_id)));
                    assert!(change
                        .removed_devices
                        .iter()
                        .all(|d| change.removed.contains(&d.jamf_id)));
                }
            }
            Event::Device(report) | Event::Unenrolled(report) => check_device(report),
            Event::Other => {}
        }
    }

    #[test]
    fn never_panics_on_random_or_malformed_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let fixtures = [
            GROUP_ADDED,
            GROUP_REMOVED,
            GROUP_LEGACY,
            MOBILE_GROUP_ADDED,
            CHECKIN,
            INVENTORY,
        ];
        const JSONISH: &[u8] = b"{}[]\":,0123456789-.eE nulltruefalse\\u";

        // Random bytes.
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            check(&bytes);
        }
        // Fixtures mutated, truncated, spliced with JSON-ish bytes.
        for _ in 0..4000 {
            let mut bytes = rng.pick(&fixtures).as_bytes().to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes[at] = *rng.pick(JSONISH),
                    2 => bytes.truncate(at),
                    _ => {
                        bytes.insert(at, *rng.pick(JSONISH));
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            check(&bytes);
        }
        // Well-formed envelopes with random event contents of random types.
        for _ in 0..4000 {
            let mut webhook = random_object(&mut rng, 1);
            let mut name = rng.pick(NAMES).to_string();
            if rng.below(4) == 0 {
                name.push_str(" (TEST)");
            }
            webhook["webhookEvent"] = Value::from(name);
            let mut event = random_object(&mut rng, 3);
            if rng.below(2) == 0 {
                event["computer"] = random_object(&mut rng, 2);
            }
            let body = serde_json::json!({ "webhook": webhook, "event": event });
            check(&serde_json::to_vec(&body).unwrap());
        }
        // Deep nesting hits serde_json's recursion limit, not the stack.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(ParseError::NotJson(_))
        ));
        let deep = format!(
            r#"{{"webhook":{{"webhookEvent":"ComputerCheckIn"}},"event":{{"computer":{}}}}}"#,
            "{\"a\":".repeat(10_000)
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(ParseError::NotJson(_))
        ));
    }
}
