//! Tolerant reading of the JSON Jamf Pro sends: webhook bodies ([`super::events`]) and API answers
//! ([`super::api`]). One rule per kind of value, so that both read Jamf alike:
//!
//! - keys: the exact spelling first, else one that differs only in ASCII case (`jssid`, `jssID`,
//!   `JSSID`); a key whose value is null counts as missing ([`get`]);
//! - ids: a positive integer below 2^53, as a JSON number (`1042`, also `1042.0`) or as a string
//!   of ASCII digits (`"1042"`, surrounding whitespace ignored); anything else is no id ([`id`]);
//! - text: a trimmed, non-empty string, or a number written out, that is not a placeholder such as
//!   Jamf's documentation's `"string"` or `"Not Available"` ([`text`]);
//! - identifiers (serial number, UDID, management id, MAC): text that is also not masked
//!   (`XX:XX:XX:XX:XX:XX`) nor all zeros, so that no two devices share one by accident
//!   ([`identifier`], [`mac`]);
//! - IP addresses: parsed (`[2001:db8::1]` too), never unspecified, broadcast or multicast ([`ip`]);
//! - flags: `true`/`false`, also as strings or 1/0 ([`flag`]).

use std::net::IpAddr;

use serde_json::{Map, Value};

/// A JSON object.
pub type Object = Map<String, Value>;

/// Ids are below this: 2^53, the largest range in which every integer survives a JSON number
/// read as a double (as JavaScript, and many Jamf clients, read them).
pub const ID_LIMIT: i64 = 1 << 53;

/// The first of `keys` present with a non-null value, with the key as spelled in the object;
/// failing an exact match, a key that differs only in ASCII case.
pub fn get<'a>(object: &'a Object, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
    let exact = keys
        .iter()
        .filter_map(|key| object.get_key_value(*key))
        .find(|(_, value)| !value.is_null());
    exact
        .or_else(|| {
            object.iter().find(|(key, value)| {
                !value.is_null() && keys.iter().any(|k| key.eq_ignore_ascii_case(k))
            })
        })
        .map(|(key, value)| (key.as_str(), value))
}

/// The value at the first of `keys` (see [`get`]).
pub fn value<'a>(object: &'a Object, keys: &[&str]) -> Option<&'a Value> {
    get(object, keys).map(|(_, value)| value)
}

/// The object at the first of `keys`; absent when missing, null or not an object.
pub fn object<'a>(object: &'a Object, keys: &[&str]) -> Option<&'a Object> {
    value(object, keys)?.as_object()
}

/// A Jamf id: a positive integer below 2^53, as a JSON number (integral floats too) or as a
/// string of ASCII digits (surrounding whitespace ignored). Signs, exponents, fractions, empty
/// strings and other types are no id.
pub fn id(value: &Value) -> Option<i64> {
    let id = match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => i,
            None => {
                // Not an i64: a float (or a u64 beyond i64, which is over the limit anyway).
                let f = n.as_f64()?;
                if f.fract() != 0.0 || !(1.0..ID_LIMIT as f64).contains(&f) {
                    return None;
                }
                f as i64
            }
        },
        Value::String(s) => {
            let digits = s.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // All digits: only an overflow can fail, and that is over the limit.
            digits.parse::<i64>().ok()?
        }
        _ => return None,
    };
    (1..ID_LIMIT).contains(&id).then_some(id)
}

/// Why `value` is not an id, for error messages.
pub fn id_error(value: &Value) -> String {
    format!(
        "expected a positive integer id below 2^53 (a number or a string of digits), got {}",
        excerpt(value)
    )
}

/// An integer that is not an id (a count, a number of seconds): a JSON number with no fraction,
/// or a string holding one. Any sign.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < ID_LIMIT as f64)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Text at the first of `keys`: a trimmed, non-empty string or a number written out, that is not
/// a placeholder ([`is_placeholder`]). Anything else is absent.
pub fn text(object: &Object, keys: &[&str]) -> Option<String> {
    let text = match value(object, keys)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!is_placeholder(&text)).then_some(text)
}

/// An identifier that names one device (serial number, UDID, management id): [`text`] that is
/// also not masked nor all zeros ([`is_placeholder_identifier`]).
pub fn identifier(object: &Object, keys: &[&str]) -> Option<String> {
    text(object, keys).filter(|t| !is_placeholder_identifier(t))
}

/// A MAC address, uppercased, as given otherwise: an [`identifier`] that is also not the
/// broadcast address nor `02:00:00:00:00:00`, the constant Apple's systems hand out in place of
/// the real address.
pub fn mac(object: &Object, keys: &[&str]) -> Option<String> {
    let mac = identifier(object, keys)?.to_ascii_uppercase();
    let hex: String = mac.chars().filter(char::is_ascii_alphanumeric).collect();
    let placeholder = (!hex.is_empty() && hex.chars().all(|c| c == 'F')) || hex == "020000000000";
    (!placeholder).then_some(mac)
}

/// An IP address at the first of `keys` (`[...]` around an IPv6 address is allowed). Text that
/// does not parse, and the unspecified (`0.0.0.0`, `::`), broadcast and multicast addresses, which
/// no device has as its own, are absent.
pub fn ip(object: &Object, keys: &[&str]) -> Option<IpAddr> {
    let text = text(object, keys)?;
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(&text);
    // An IPv4-mapped address (`::ffff:10.0.0.1`) is the IPv4 address: that is how the device's
    // queries arrive, and how every binding is kept.
    let ip = bare.parse::<IpAddr>().ok()?.to_canonical();
    let placeholder = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    (!placeholder).then_some(ip)
}

/// A boolean, also as "true"/"false" (any case) or 1/0, as a number or a string.
pub fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Words that stand in for a value rather than being one: Jamf's documentation fills every text
/// field of its sample payloads with `"string"`; Jamf Pro and the tools around it write
/// `"Not Available"`, `"N/A"`, `"null"`, ... where a device did not report a field.
const PLACEHOLDER_WORDS: &[&str] = &[
    "string",
    "not available",
    "n/a",
    "null",
    "nil",
    "none",
    "unknown",
    "undefined",
];

/// Whether `text` (already trimmed) is empty or a placeholder word ([`PLACEHOLDER_WORDS`], any case).
pub fn is_placeholder(text: &str) -> bool {
    text.is_empty()
        || PLACEHOLDER_WORDS
            .iter()
            .any(|word| text.eq_ignore_ascii_case(word))
}

/// Whether `text` cannot name one device: a [placeholder](is_placeholder), or its letters and
/// digits are none at all (`"-"`, `"***"`), all `X` (masked: `XX:XX:XX:XX:XX:XX`,
/// `XXXXXXXX-XXXX-...`) or all `0` (`00:00:00:00:00:00`, the all-zero UUID).
pub fn is_placeholder_identifier(text: &str) -> bool {
    if is_placeholder(text) {
        return true;
    }
    let mut alphanumerics = text.chars().filter(char::is_ascii_alphanumeric).peekable();
    match alphanumerics.peek().copied() {
        None => true,
        Some(first @ ('x' | 'X' | '0')) => alphanumerics.all(|c| c.eq_ignore_ascii_case(&first)),
        Some(_) => false,
    }
}

/// A short rendering of a value for an error message (bodies are not echoed whole).
pub fn excerpt(value: &Value) -> String {
    const MAX: usize = 40;
    let full = value.to_string();
    match full.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &full[..cut]),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Object {
        match value {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn get_prefers_the_exact_key_then_any_case_and_skips_nulls() {
        let o = obj(json!({"jssid": null, "JSSID": 3, "jssID": 2}));
        assert_eq!(get(&o, &["jssid", "jssID"]), Some(("jssID", &json!(2))));
        let o = obj(json!({"JssId": 4}));
        assert_eq!(get(&o, &["jssid", "jssID"]), Some(("JssId", &json!(4))));
        let o = obj(json!({"jssid": null}));
        assert_eq!(get(&o, &["jssid"]), None);
        assert_eq!(value(&o, &["other"]), None);
        let o = obj(json!({"general": {"name": "x"}, "hardware": "no"}));
        assert!(object(&o, &["GENERAL"]).is_some());
        assert!(object(&o, &["hardware"]).is_none());
    }

    #[test]
    fn ids_follow_one_rule() {
        for (value, expected) in [
            (json!(1), Some(1)),
            (json!(1042), Some(1042)),
            (json!(1042.0), Some(1042)),
            (json!("1042"), Some(1042)),
            (json!(" 1042 "), Some(1042)),
            (json!("007"), Some(7)),
            (json!(ID_LIMIT - 1), Some(ID_LIMIT - 1)),
            (json!((ID_LIMIT - 1).to_string()), Some(ID_LIMIT - 1)),
            (json!(ID_LIMIT), None),
            (json!(ID_LIMIT.to_string()), None),
            // The API client's old limit was 9e15: below 2^53, so an id now.
            (json!(9_000_000_000_000_001i64), Some(9_000_000_000_000_001)),
            (json!(9.0e15), Some(9_000_000_000_000_000)),
            (json!(i64::MAX), None),
            (json!(u64::MAX), None),
            (json!(9.1e15), None),
            (json!(1e300), None),
            (json!(0), None),
            (json!("0"), None),
            (json!(-5), None),
            (json!("-5"), None),
            (json!("+5"), None),
            (json!(1.5), None),
            (json!("1.0"), None),
            (json!("1e3"), None),
            (json!(""), None),
            (json!("  "), None),
            (json!("12a"), None),
            (json!("١٢"), None),
            (json!("99999999999999999999999"), None),
            (json!(true), None),
            (json!(null), None),
            (json!([1]), None),
            (json!({"id": 1}), None),
        ] {
            assert_eq!(id(&value), expected, "{value}");
        }
        assert!(id_error(&json!("abc")).contains("positive integer"));
    }

    #[test]
    fn integers_are_not_ids() {
        assert_eq!(integer(&json!(0)), Some(0));
        assert_eq!(integer(&json!(-5)), Some(-5));
        assert_eq!(integer(&json!("300")), Some(300));
        assert_eq!(integer(&json!(599.0)), Some(599));
        assert_eq!(integer(&json!(1.5)), None);
        assert_eq!(integer(&json!("soon")), None);
        assert_eq!(integer(&json!(null)), None);
    }

    #[test]
    fn text_drops_empty_and_placeholder_values() {
        let o = obj(json!({
            "a": " FIN-MBP-0142 ", "b": "", "c": "   ", "d": "string", "e": "Not Available",
            "f": "N/A", "g": 42, "h": true, "i": ["x"], "j": "STRING", "k": "null"
        }));
        assert_eq!(text(&o, &["a"]).as_deref(), Some("FIN-MBP-0142"));
        assert_eq!(text(&o, &["g"]).as_deref(), Some("42"));
        for key in ["b", "c", "d", "e", "f", "h", "i", "j", "k", "missing"] {
            assert_eq!(text(&o, &[key]), None, "{key}");
        }
    }

    #[test]
    fn identifiers_drop_masked_and_zero_values() {
        for placeholder in [
            "XX:XX:XX:XX:XX:XX",
            "xx:xx:xx:xx:xx:xx",
            "XXXXXXX",
            "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX",
            "00:00:00:00:00:00",
            "000000000000",
            "00000000-0000-0000-0000-000000000000",
            "0",
            "-",
            "***",
            "string",
            "Not Available",
        ] {
            assert!(is_placeholder_identifier(placeholder), "{placeholder}");
            let o = obj(json!({ "v": placeholder }));
            assert_eq!(identifier(&o, &["v"]), None, "{placeholder}");
            assert_eq!(mac(&o, &["v"]), None, "{placeholder}");
        }
        for real in [
            "C02ZK1ABMD6T",
            "00000000-0000-0000-0000-000000000001",
            "0X0",
            "X1",
            "5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B",
            "00008101-000A1D2E3F40001E",
        ] {
            assert!(!is_placeholder_identifier(real), "{real}");
        }
    }

    #[test]
    fn macs_are_uppercased_and_shared_constants_dropped() {
        let o = obj(json!({
            "a": "3c:22:fb:91:0a:42", "b": "3c22.fb91.0a42", "c": "ff:ff:ff:ff:ff:ff",
            "d": "02:00:00:00:00:00", "e": "FFFF.FFFF.FFFF"
        }));
        assert_eq!(mac(&o, &["a"]).as_deref(), Some("3C:22:FB:91:0A:42"));
        assert_eq!(mac(&o, &["b"]).as_deref(), Some("3C22.FB91.0A42"));
        for key in ["c", "d", "e"] {
            assert_eq!(mac(&o, &[key]), None, "{key}");
        }
    }

    #[test]
    fn ips_drop_what_no_device_has() {
        let o = obj(json!({
            "v4": " 10.20.30.142 ", "v6": "[2001:db8::42]", "loop": "127.0.0.12",
            "zero": "0.0.0.0", "zero6": "::", "bcast": "255.255.255.255", "mcast": "224.0.0.251",
            "mcast6": "ff02::1", "mapped0": "::ffff:0.0.0.0", "masked": "xx.xx.x.xx",
            "doc": "string", "bad": "10.0.0.300", "num": 17, "empty": ""
        }));
        let ip_of = |key: &str| ip(&o, &[key]);
        assert_eq!(ip_of("v4"), Some("10.20.30.142".parse().unwrap()));
        assert_eq!(ip_of("v6"), Some("2001:db8::42".parse().unwrap()));
        assert_eq!(ip_of("loop"), Some("127.0.0.12".parse().unwrap()));
        for key in [
            "zero", "zero6", "bcast", "mcast", "mcast6", "mapped0", "masked", "doc", "bad", "num",
            "empty", "missing",
        ] {
            assert_eq!(ip_of(key), None, "{key}");
        }
    }

    #[test]
    fn a_mapped_address_is_its_ipv4_address() {
        let o = obj(json!({"mapped": "::ffff:127.0.0.45", "bracketed": "[::ffff:10.0.0.7]"}));
        assert_eq!(ip(&o, &["mapped"]), Some("127.0.0.45".parse().unwrap()));
        assert_eq!(ip(&o, &["bracketed"]), Some("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn flags() {
        for (value, expected) in [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("TRUE"), Some(true)),
            (json!(" false "), Some(false)),
            (json!("1"), Some(true)),
            (json!(0), Some(false)),
            (json!(2), None),
            (json!("yes"), None),
            (json!(null), None),
        ] {
            assert_eq!(flag(&value), expected, "{value}");
        }
    }

    #[test]
    fn excerpt_is_short() {
        assert_eq!(excerpt(&json!("abc")), "\"abc\"");
        let long = excerpt(&json!("é".repeat(100)));
        assert!(
            long.ends_with("...") && long.chars().count() == 43,
            "{long}"
        );
    }
}
