//! What a verified SET says, in the control plane's neutral terms. CAEP's
//! `device-compliance-change` sets (`not-compliant`) or clears (`compliant`) the UEM group key
//! `ssf:<issuer>:not-compliant` of the device its subject names, so that groups.toml maps it
//! like any MDM group; every other event type is acknowledged and changes nothing. Nothing
//! else in Cordon knows these spellings.
//!
//! The device is named by its subject (RFC 9493): `iss_sub` (its `sub`), `opaque` (its `id`),
//! `complex` (its `device` member, one of those), or `aliases` (the first of its identifiers
//! that is one of those). The value is read as Cordon's API reads a device: `serial:…`,
//! `udid:…` or another alias kind when it says so, else a bare value that matches a device's
//! serial, UDID or any other alias; a device is created for it on first sight. Older
//! transmitters put the subject inside the event (`subject`); it is read there when the SET has
//! no `sub_id`. Subjects that name a user, an email address or a phone number name no device.

use crate::control::{Alias, DeviceRef, Request, Source, UemGroup};

use super::verify::Claims;

/// CAEP's device compliance change.
pub const DEVICE_COMPLIANCE_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";

/// The UEM group key a transmitter's non-compliant devices are in.
pub fn group_key(issuer: &str) -> String {
    format!("ssf:{issuer}:not-compliant")
}

/// What a SET asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The device the subject names is (not) compliant.
    Compliance { device: String, compliant: bool },
    /// Event types Cordon does not act on: acknowledged, counted.
    Other,
}

/// Why a SET's events cannot be applied (an `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// The signal of a verified SET's events.
pub fn signal(claims: &Claims) -> Result<Signal, EventError> {
    let Some(event) = claims.events.get(DEVICE_COMPLIANCE_CHANGE) else {
        return Ok(Signal::Other);
    };
    let status = event
        .get("current_status")
        .and_then(|s| s.as_str())
        .ok_or_else(|| EventError("device-compliance-change: current_status is missing".into()))?;
    let compliant = match status {
        "compliant" => true,
        "not-compliant" => false,
        other => {
            return Err(EventError(format!(
                "device-compliance-change: current_status \"{other}\" (compliant or not-compliant)"
            )))
        }
    };
    let subject = claims.sub_id.as_ref().or_else(|| event.get("subject"));
    let device = subject.and_then(device_of).ok_or_else(|| {
        EventError(
            "the subject names no device (iss_sub, opaque, or complex with a device member)".into(),
        )
    })?;
    Ok(Signal::Compliance { device, compliant })
}

/// The longest device value accepted (an alias).
const MAX_VALUE: usize = 256;

/// The device value a subject identifier names, if it names one.
fn device_of(subject: &serde_json::Value) -> Option<String> {
    let text = |field: &str| {
        subject
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_VALUE)
            .map(str::to_string)
    };
    match subject.get("format").and_then(|f| f.as_str())? {
        "iss_sub" => text("sub"),
        "opaque" => text("id"),
        "complex" => subject.get("device").and_then(device_of),
        "aliases" => subject
            .get("identifiers")?
            .as_array()?
            .iter()
            .find_map(device_of),
        _ => None,
    }
}

/// The request a verified SET means: its `jti` recorded once, and for a compliance change the
/// membership of the device in the issuer's non-compliant key, in the same commit.
pub fn request(claims: &Claims, signal: &Signal, remember_until: i64) -> Request {
    // The issuer and jti, unambiguously: neither may contain the other's delimiter.
    let key = serde_json::json!([claims.iss, claims.jti]).to_string();
    let then = match signal {
        Signal::Compliance { device, compliant } => {
            let group = UemGroup {
                key: group_key(&claims.iss),
                name: None,
            };
            let alias = Alias::parse(device);
            let reason = match &claims.txn {
                Some(txn) => format!(
                    "CAEP device-compliance-change, jti {} (txn {txn})",
                    claims.jti
                ),
                None => format!("CAEP device-compliance-change, jti {}", claims.jti),
            };
            let source = Source::new(format!("ssf:{}", claims.iss), reason);
            let (joined, left) = if *compliant {
                (Vec::new(), vec![alias])
            } else {
                let label = device.clone();
                (vec![DeviceRef { alias, label }], Vec::new())
            };
            Some(Box::new(Request::Members {
                group,
                joined,
                left,
                reports: Vec::new(),
                source,
            }))
        }
        Signal::Other => None,
    };
    Request::Once {
        key,
        until: remember_until,
        then,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::AliasKind;

    fn claims(edit: impl Fn(&mut serde_json::Value)) -> Claims {
        let text = include_str!("../../tests/fixtures/ssf/device-compliance-change.payload.json");
        let mut value: serde_json::Value = serde_json::from_str(text).unwrap();
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    fn event(v: &mut serde_json::Value) -> &mut serde_json::Value {
        &mut v["events"][DEVICE_COMPLIANCE_CHANGE]
    }

    #[test]
    fn the_fixture_marks_its_device_not_compliant_by_its_serial() {
        let c = claims(|_| {});
        let s = signal(&c).unwrap();
        assert_eq!(
            s,
            Signal::Compliance {
                device: "C02ZK1ABMD6T".into(),
                compliant: false
            }
        );
        let Request::Once { key, until, then } = request(&c, &s, 99) else {
            panic!("a one-time request");
        };
        assert_eq!(
            key,
            r#"["https://idp.example.com/tenant-7/","5d0b6f2c9e8a4b7d"]"#
        );
        assert_eq!(until, 99);
        let Some(Request::Members {
            group,
            joined,
            left,
            source,
            ..
        }) = then.as_deref()
        else {
            panic!("a membership");
        };
        assert_eq!(
            group.key,
            "ssf:https://idp.example.com/tenant-7/:not-compliant"
        );
        assert_eq!(joined[0].alias, Alias::new(AliasKind::Name, "C02ZK1ABMD6T"));
        assert!(left.is_empty());
        assert_eq!(source.actor, "ssf:https://idp.example.com/tenant-7/");
        assert!(source.reason.contains("trx-20261121-0007"), "{source:?}");
    }

    #[test]
    fn compliant_clears_and_other_events_change_nothing() {
        let c = claims(|v| event(v)["current_status"] = "compliant".into());
        let s = signal(&c).unwrap();
        let Request::Once {
            then: Some(then), ..
        } = request(&c, &s, 0)
        else {
            panic!("a membership");
        };
        let Request::Members { joined, left, .. } = *then else {
            panic!("a membership");
        };
        assert!(joined.is_empty());
        assert_eq!(left, [Alias::parse("C02ZK1ABMD6T")]);

        let other = claims(|v| {
            v["events"] = serde_json::json!({
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}
            })
        });
        assert_eq!(signal(&other).unwrap(), Signal::Other);
        assert!(matches!(
            request(&other, &Signal::Other, 0),
            Request::Once { then: None, .. }
        ));
    }

    #[test]
    fn subjects_in_each_format_and_in_the_event() {
        let with = |subject: serde_json::Value| {
            let c = claims(|v| v["sub_id"] = subject.clone());
            signal(&c)
        };
        let device = |d: &str| {
            Ok(Signal::Compliance {
                device: d.into(),
                compliant: false,
            })
        };
        assert_eq!(
            with(serde_json::json!({"format": "opaque", "id": "udid:5B1E6A7C"})),
            device("udid:5B1E6A7C")
        );
        assert_eq!(
            with(serde_json::json!({"format": "iss_sub", "iss": "x", "sub": " C02X "})),
            device("C02X")
        );
        assert_eq!(
            with(serde_json::json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "ana@example.com"},
                {"format": "opaque", "id": "serial:C02Y"}
            ]})),
            device("serial:C02Y")
        );
        // A user is no device; nor is a complex subject without a device member.
        for subject in [
            serde_json::json!({"format": "email", "email": "ana@example.com"}),
            serde_json::json!({"format": "complex", "user": {"format": "opaque", "id": "u1"}}),
            serde_json::json!({"format": "opaque", "id": ""}),
            serde_json::json!({"format": "opaque", "id": "x".repeat(MAX_VALUE + 1)}),
            serde_json::json!("C02ZK1ABMD6T"),
        ] {
            assert!(with(subject.clone()).is_err(), "{subject}");
        }
        // The legacy place: inside the event, when the SET has no sub_id.
        let legacy = claims(|v| {
            let subject = v["sub_id"].take();
            v.as_object_mut().unwrap().remove("sub_id");
            event(v)["subject"] = subject;
        });
        assert_eq!(signal(&legacy), device("C02ZK1ABMD6T"));
        let bad = claims(|v| event(v)["current_status"] = "unknown".into());
        assert!(signal(&bad).is_err());
        let none = claims(|v| _ = event(v).as_object_mut().unwrap().remove("current_status"));
        assert!(signal(&none).is_err());
    }
}
