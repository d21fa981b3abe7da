//! The Jamf Pro API, as reconciliation and inventory look-ups need it: OAuth client credentials, group members, one computer's inventory.
//!
//! Off the hot path and blocking (`ureq`): callers run it inside `tokio::task::spawn_blocking`.
//! Every request has connect, read and write timeouts of [`JamfConfig::timeout`].
//!
//! Authentication is an API client's credentials (`POST /api/oauth/token`). Jamf Pro issues no
//! refresh token, so the access token is cached and a new one is asked for once less than 60 s
//! (or a tenth of `expires_in`, whichever is smaller) remain. A data call answered 401 drops the
//! cached token and is retried once with a fresh one. Neither the client secret nor a token is
//! ever logged or put into an error.
//!
//! Parsing tolerates what Jamf Pro varies: ids as numbers or as strings, missing or null lists
//! (empty), unknown fields. An answer that lacks the essential part (no `computer_group`, a member
//! without an id) is a [`JamfApiError::Decode`] naming the URL, never an empty list: an empty
//! list would read as "nobody is in the group".

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::events::{DeviceKind, DeviceReport};

/// Answers larger than this are refused rather than read.
const MAX_BODY: u64 = 64 << 20;
/// A token is given up at most this long before `expires_in` runs out.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// `expires_in` is believed up to this long (guards `Instant` arithmetic against nonsense).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Assumed when the token answer has no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The inventory sections a [`ComputerRecord`] is made from. Jamf Pro returns only the sections
/// asked for, and `groupMemberships` is a section of its own.
const INVENTORY_SECTIONS: &str = "section=GENERAL&section=HARDWARE&section=GROUP_MEMBERSHIPS";

/// Where the Jamf Pro API is and how to authenticate to it.
#[derive(Clone)]
pub struct JamfConfig {
    /// The Jamf Pro base URL, e.g. `https://example.jamfcloud.com` (a trailing `/` is fine).
    pub url: String,
    /// The API client's id (Settings > API Roles and Clients).
    pub client_id: String,
    /// The API client's secret. Never logged: `Debug` shows it redacted.
    pub client_secret: String,
    /// Connect, read and write timeout of every request.
    pub timeout: Duration,
}

impl fmt::Debug for JamfConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JamfConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What went wrong talking to the Jamf Pro API. No variant carries the secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum JamfApiError {
    /// A data endpoint answered a non-success status (after the one retry on 401).
    #[error("Jamf Pro API: {url} answered HTTP {status}")]
    Http { status: u16, url: String },
    /// No answer: DNS, connect, TLS, timeout, a broken connection.
    #[error("Jamf Pro API: {0}")]
    Transport(String),
    /// An answer that is not the JSON shape expected.
    #[error("Jamf Pro API: unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// No access token: the client credentials were refused, or the token answer was unusable.
    #[error("Jamf Pro API authentication failed: {0}")]
    Auth(String),
}

/// One computer's inventory, as much of it as Cordon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputerRecord {
    /// What the record says about the device, in the same shape a webhook's device report has:
    /// `general.name`, `hardware.serialNumber`, `udid`, `general.managementId`,
    /// `hardware.macAddress` and `altMacAddress`, and as `own_ip` `general.lastReportedIp` (else
    /// `lastReportedIpV4`): the Mac's own LAN address, not the one Jamf Pro saw it come from.
    pub device: DeviceReport,
    /// `groupMemberships[].groupId`: the computer groups (smart and static) it is in.
    pub group_ids: Vec<i64>,
}

/// A blocking Jamf Pro API client. Cheap to share (`Arc`); the token cache is internal.
pub struct JamfClient {
    config: JamfConfig,
    /// `config.url` without trailing `/`.
    base: String,
    agent: ureq::Agent,
    /// The cached access token and the instant it stops being used (its expiry minus the margin).
    token: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for JamfClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        f.debug_struct("JamfClient")
            .field("config", &self.config)
            .field("token_cached", &cached)
            .finish()
    }
}

impl JamfClient {
    pub fn new(config: JamfConfig) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.timeout)
            .timeout_read(config.timeout)
            .timeout_write(config.timeout)
            .user_agent(concat!("cordon/", env!("CARGO_PKG_VERSION")))
            .build();
        let base = config.url.trim().trim_end_matches('/').to_string();
        JamfClient {
            config,
            base,
            agent,
            token: Mutex::new(None),
        }
    }

    /// Ids of the members of a computer group (smart or static):
    /// `GET /JSSResource/computergroups/id/{id}` → `computer_group.computers[].id`.
    pub fn computer_group_members(&self, group_id: i64) -> Result<Vec<i64>, JamfApiError> {
        let (url, body) = self.get(&format!("/JSSResource/computergroups/id/{group_id}"))?;
        parse_group_members(&body, &url, "computer_group", "computers")
    }

    /// Ids of the members of a mobile device group:
    /// `GET /JSSResource/mobiledevicegroups/id/{id}` → `mobile_device_group.mobile_devices[].id`.
    pub fn mobile_group_members(&self, group_id: i64) -> Result<Vec<i64>, JamfApiError> {
        let (url, body) = self.get(&format!("/JSSResource/mobiledevicegroups/id/{group_id}"))?;
        parse_group_members(&body, &url, "mobile_device_group", "mobile_devices")
    }

    /// One computer's inventory: `GET /api/v1/computers-inventory?section=GENERAL&section=HARDWARE
    /// &section=GROUP_MEMBERSHIPS&filter=id=={id}`. `None` when no computer has that id.
    pub fn computer(&self, id: i64) -> Result<Option<ComputerRecord>, JamfApiError> {
        let (url, body) = self.get(&format!(
            "/api/v1/computers-inventory?{INVENTORY_SECTIONS}&filter=id%3D%3D{id}"
        ))?;
        parse_computer(&body, &url, id)
    }

    /// GETs `path` with a bearer token; on a 401 drops the token and tries once more.
    /// Returns the full URL (for errors) and the body.
    fn get(&self, path: &str) -> Result<(String, Vec<u8>), JamfApiError> {
        let url = format!("{}{path}", self.base);
        let mut retried = false;
        loop {
            let token = self.token()?;
            let answer = self
                .agent
                .get(&url)
                .set("Accept", "application/json")
                .set("Authorization", &format!("Bearer {token}"))
                .call();
            match answer {
                Ok(response) => {
                    let body = read_body(response, &url)?;
                    return Ok((url, body));
                }
                Err(ureq::Error::Status(401, _)) if !retried => {
                    self.forget_token(&token);
                    retried = true;
                }
                Err(ureq::Error::Status(status, _)) => {
                    return Err(JamfApiError::Http { status, url });
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(JamfApiError::Transport(t.to_string()))
                }
            }
        }
    }

    /// The cached token while it is usable, else a new one. The lock is held while asking so
    /// that concurrent callers share one token request.
    fn token(&self) -> Result<String, JamfApiError> {
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((token, use_until)) = cached.as_ref() {
            if Instant::now() < *use_until {
                return Ok(token.clone());
            }
        }
        *cached = None;
        let asked = Instant::now();
        let (token, lifetime) = self.fetch_token()?;
        *cached = Some((token.clone(), token_use_until(asked, lifetime)));
        Ok(token)
    }

    /// Drops the cached token if it is still `used` (another caller may have replaced it).
    fn forget_token(&self, used: &str) {
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.as_ref().is_some_and(|(token, _)| token == used) {
            *cached = None;
        }
    }

    fn fetch_token(&self) -> Result<(String, Duration), JamfApiError> {
        let url = format!("{}/api/oauth/token", self.base);
        let answer = self
            .agent
            .post(&url)
            .set("Accept", "application/json")
            .send_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.config.client_id),
                ("client_secret", &self.config.client_secret),
            ]);
        match answer {
            Ok(response) => parse_token(&read_body(response, &url)?, &url),
            Err(ureq::Error::Status(status @ (400 | 401 | 403), _)) => Err(JamfApiError::Auth(
                format!("{url} refused the client credentials (HTTP {status})"),
            )),
            Err(ureq::Error::Status(status, _)) => Err(JamfApiError::Http { status, url }),
            Err(ureq::Error::Transport(t)) => Err(JamfApiError::Transport(t.to_string())),
        }
    }
}

/// How long before `expires_in` runs out a token stops being used: 60 s, or a tenth of its
/// lifetime when that is smaller.
fn token_margin(lifetime: Duration) -> Duration {
    TOKEN_MARGIN.min(lifetime / 10)
}

/// When a token asked for at `asked`, valid for `lifetime`, stops being used.
fn token_use_until(asked: Instant, lifetime: Duration) -> Instant {
    let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
    asked + (lifetime - token_margin(lifetime))
}

fn read_body(response: ureq::Response, url: &str) -> Result<Vec<u8>, JamfApiError> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| JamfApiError::Transport(format!("reading the answer from {url}: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(decode(url, format!("answer larger than {MAX_BODY} bytes")));
    }
    Ok(body)
}

fn decode(url: &str, message: impl Into<String>) -> JamfApiError {
    JamfApiError::Decode {
        url: url.to_string(),
        message: message.into(),
    }
}

fn parse_json(body: &[u8], url: &str) -> Result<Value, JamfApiError> {
    serde_json::from_slice(body).map_err(|e| decode(url, format!("not JSON: {e}")))
}

/// An id given as a number or as a string.
fn id_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A list that may be missing or null (empty); anything else but an array is an error.
fn list<'a>(
    parent: &'a Map<String, Value>,
    key: &str,
    url: &str,
) -> Result<&'a [Value], JamfApiError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(decode(url, format!("`{key}` is not a list"))),
    }
}

/// An object that may be missing or null.
fn object<'a>(parent: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    parent.get(key).and_then(Value::as_object)
}

/// A non-empty string field.
fn text(parent: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    let s = parent?.get(key)?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Keeps the first of each id, in order.
fn dedup(ids: &mut Vec<i64>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

/// `{root: {list: [{id, ...}, ...]}}` → the ids. `root` must be there; a member without a usable
/// id is an error rather than left out.
fn parse_group_members(
    body: &[u8],
    url: &str,
    root: &str,
    list_key: &str,
) -> Result<Vec<i64>, JamfApiError> {
    let json = parse_json(body, url)?;
    let group = json
        .as_object()
        .and_then(|o| object(o, root))
        .ok_or_else(|| decode(url, format!("no `{root}` object")))?;
    let mut ids = list(group, list_key, url)?
        .iter()
        .enumerate()
        .map(|(i, member)| {
            member
                .as_object()
                .and_then(|m| m.get("id"))
                .and_then(id_of)
                .ok_or_else(|| decode(url, format!("`{list_key}[{i}]` has no usable id")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    dedup(&mut ids);
    Ok(ids)
}

/// A computers-inventory page → the record whose id is `id`, if any.
fn parse_computer(body: &[u8], url: &str, id: i64) -> Result<Option<ComputerRecord>, JamfApiError> {
    let json = parse_json(body, url)?;
    let page = json
        .as_object()
        .filter(|o| o.contains_key("results") || o.contains_key("totalCount"))
        .ok_or_else(|| decode(url, "no `results`"))?;
    if page.get("totalCount").and_then(id_of) == Some(0) {
        return Ok(None);
    }
    // Pick by id rather than taking results[0]: a filter that was not applied must not hand back
    // some other computer.
    let Some(found) = list(page, "results", url)?
        .iter()
        .filter_map(Value::as_object)
        .find(|r| r.get("id").and_then(id_of) == Some(id))
    else {
        return Ok(None);
    };
    let general = object(found, "general");
    let hardware = object(found, "hardware");

    let mut mac_addresses: Vec<String> = ["macAddress", "altMacAddress"]
        .iter()
        .filter_map(|key| text(hardware, key))
        .collect();
    mac_addresses.dedup_by(|a, b| a.eq_ignore_ascii_case(b));

    let own_ip = ["lastReportedIp", "lastReportedIpV4"]
        .iter()
        .find_map(|key| text(general, key)?.parse::<IpAddr>().ok());

    let mut group_ids = list(found, "groupMemberships", url)?
        .iter()
        .enumerate()
        .map(|(i, membership)| {
            membership
                .as_object()
                .and_then(|m| m.get("groupId"))
                .and_then(id_of)
                .ok_or_else(|| {
                    decode(
                        url,
                        format!("`groupMemberships[{i}]` has no usable groupId"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    dedup(&mut group_ids);

    Ok(Some(ComputerRecord {
        device: DeviceReport {
            kind: Some(DeviceKind::Computer),
            jamf_id: id,
            name: text(general, "name"),
            serial: text(hardware, "serialNumber"),
            udid: text(Some(found), "udid"),
            management_id: text(general, "managementId"),
            mac_addresses,
            own_ip,
            seen_ip: None,
        },
        group_ids,
    }))
}

/// The token answer → the access token and its lifetime. Messages never quote the body.
fn parse_token(body: &[u8], url: &str) -> Result<(String, Duration), JamfApiError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| decode(url, "the token answer is not JSON"))?;
    let token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| JamfApiError::Auth(format!("the answer from {url} has no access_token")))?;
    // It goes into a header: refuse anything that is not visible ASCII rather than have the
    // HTTP library quote it in an error.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(JamfApiError::Auth(format!(
            "the answer from {url} has an access_token that cannot be sent in a header"
        )));
    }
    let lifetime = match json.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(v) => {
            let seconds =
                id_of(v).ok_or_else(|| decode(url, "`expires_in` is not a number of seconds"))?;
            Duration::from_secs(seconds.max(0).unsigned_abs())
        }
    };
    Ok((token.to_string(), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.jamfcloud.com/x";
    const CLASSIC_GROUP: &str =
        include_str!("../../tests/fixtures/jamf/classic-computergroup.json");
    const INVENTORY: &str = include_str!("../../tests/fixtures/jamf/computers-inventory.json");
    const TOKEN: &str = include_str!("../../tests/fixtures/jamf/oauth-token.json");
    const SMART_V2: &str = include_str!("../../tests/fixtures/jamf/smart-group-membership-v2.json");

    fn members(body: &str) -> Result<Vec<i64>, JamfApiError> {
        parse_group_members(body.as_bytes(), URL, "computer_group", "computers")
    }

    #[test]
    fn token_margin_is_a_minute_or_a_tenth() {
        let margin = |s| token_margin(Duration::from_secs(s)).as_millis();
        assert_eq!(margin(599), 59_900);
        assert_eq!(margin(600), 60_000);
        assert_eq!(margin(3600), 60_000);
        assert_eq!(margin(61), 6_100);
        assert_eq!(margin(1), 100);
        assert_eq!(margin(0), 0);
    }

    #[test]
    fn token_use_until_subtracts_the_margin() {
        let t0 = Instant::now();
        let until = |s| token_use_until(t0, Duration::from_secs(s)) - t0;
        assert_eq!(until(599), Duration::from_millis(539_100));
        assert_eq!(until(3600), Duration::from_secs(3540));
        assert_eq!(until(61), Duration::from_millis(54_900));
        assert_eq!(until(0), Duration::ZERO);
        // Nonsense lifetimes are capped instead of overflowing.
        assert_eq!(until(u64::MAX), MAX_TOKEN_LIFETIME - TOKEN_MARGIN);
    }

    #[test]
    fn token_fixture() {
        let (token, lifetime) = parse_token(TOKEN.as_bytes(), URL).unwrap();
        assert_eq!(
            token,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb3Jkb24tdGVzdCJ9.c2lnbmF0dXJl"
        );
        assert_eq!(lifetime, Duration::from_secs(599));
    }

    #[test]
    fn token_variants() {
        let parse = |s: &str| parse_token(s.as_bytes(), URL);
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":"300"}"#).unwrap(),
            ("t".to_string(), Duration::from_secs(300))
        );
        assert_eq!(
            parse(r#"{"access_token":"t"}"#).unwrap().1,
            DEFAULT_TOKEN_LIFETIME
        );
        assert_eq!(
            parse(r#"{"access_token":"t","expires_in":-5}"#).unwrap().1,
            Duration::ZERO
        );
        assert!(matches!(
            parse(r#"{"expires_in":599}"#),
            Err(JamfApiError::Auth(_))
        ));
        assert!(matches!(
            parse(r#"{"access_token":""}"#),
            Err(JamfApiError::Auth(_))
        ));
        assert!(matches!(parse("<html>"), Err(JamfApiError::Decode { .. })));
        // A token that could not go into a header is refused without being quoted.
        let err = parse(r#"{"access_token":"se cret\nX"}"#).unwrap_err();
        assert!(matches!(err, JamfApiError::Auth(_)));
        assert!(!err.to_string().contains("se cret"));
        let err = parse(r#"{"access_token":"secret-token","expires_in":"soon"}"#).unwrap_err();
        assert!(!err.to_string().contains("secret-token"));
    }

    #[test]
    fn classic_group_fixture() {
        assert_eq!(members(CLASSIC_GROUP).unwrap(), vec![1042]);
    }

    #[test]
    fn classic_group_variants() {
        let body = r#"{"computer_group":{"id":"7","computers":[{"id":"5"},{"id":3.0},{"id":5,"x":1}],"extra":{}}}"#;
        assert_eq!(members(body).unwrap(), vec![5, 3]);
        assert_eq!(
            members(r#"{"computer_group":{"id":7}}"#).unwrap(),
            Vec::<i64>::new()
        );
        assert_eq!(
            members(r#"{"computer_group":{"computers":null}}"#).unwrap(),
            Vec::<i64>::new()
        );
        let mobile = r#"{"mobile_device_group":{"id":9,"mobile_devices":[{"id":"11","udid":"u"},{"id":12}]}}"#;
        assert_eq!(
            parse_group_members(
                mobile.as_bytes(),
                URL,
                "mobile_device_group",
                "mobile_devices"
            )
            .unwrap(),
            vec![11, 12]
        );
    }

    #[test]
    fn classic_group_without_the_essential_part_is_a_decode_error() {
        for body in [
            SMART_V2,
            r#"{"computer_group":null}"#,
            r#"{"computer_group":{"computers":{"computer":{"id":1}}}}"#,
            r#"{"computer_group":{"computers":[{"name":"no id"}]}}"#,
            r#"{"computer_group":{"computers":[{"id":"abc"}]}}"#,
            r#"[]"#,
            "<computer_group/>",
        ] {
            match members(body) {
                Err(JamfApiError::Decode { url, .. }) => assert_eq!(url, URL, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn inventory_fixture() {
        let record = parse_computer(INVENTORY.as_bytes(), URL, 1042)
            .unwrap()
            .unwrap();
        assert_eq!(
            record,
            ComputerRecord {
                device: DeviceReport {
                    kind: Some(DeviceKind::Computer),
                    jamf_id: 1042,
                    name: Some("FIN-MBP-0142".into()),
                    serial: Some("C02ZK1ABMD6T".into()),
                    udid: Some("5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B".into()),
                    management_id: Some("3f6b2a10-8c4d-4e5f-9a7b-1c2d3e4f5a6b".into()),
                    mac_addresses: vec!["3C:22:FB:91:0A:42".into(), "72:00:04:1B:9C:11".into()],
                    own_ip: Some("10.20.30.142".parse().unwrap()),
                    seen_ip: None,
                },
                group_ids: vec![42, 1],
            }
        );
        // The page holds 1042 only: asking for another id finds nothing.
        assert_eq!(parse_computer(INVENTORY.as_bytes(), URL, 7).unwrap(), None);
    }

    #[test]
    fn inventory_variants() {
        let parse = |s: &str| parse_computer(s.as_bytes(), URL, 5);
        assert_eq!(parse(r#"{"totalCount":0,"results":[]}"#).unwrap(), None);
        assert_eq!(parse(r#"{"totalCount":0}"#).unwrap(), None);
        assert_eq!(parse(r#"{"results":null}"#).unwrap(), None);
        let bare = parse(
            r#"{"totalCount":1,"results":[{"id":5,"general":null,"groupMemberships":null}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            bare,
            ComputerRecord {
                device: DeviceReport {
                    kind: Some(DeviceKind::Computer),
                    jamf_id: 5,
                    ..DeviceReport::default()
                },
                group_ids: vec![],
            }
        );
        let v4 = parse(
            r#"{"totalCount":1,"results":[{"id":"5","general":{"lastReportedIp":"","lastReportedIpV4":"10.0.0.5","lastIpAddress":"198.51.100.1"},"groupMemberships":[{"groupId":3},{"groupId":"3"}]}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(v4.device.own_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(v4.group_ids, vec![3]);
        let bad_ip = parse(r#"{"results":[{"id":"5","general":{"lastReportedIp":"unknown"}}]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(bad_ip.device.own_ip, None);
        for body in [
            r#"{}"#,
            r#"{"httpStatus":404}"#,
            r#"{"totalCount":1,"results":{"id":"5"}}"#,
            r#"{"totalCount":1,"results":[{"id":"5","groupMemberships":[{"groupName":"x"}]}]}"#,
        ] {
            assert!(
                matches!(parse(body), Err(JamfApiError::Decode { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn debug_and_errors_hide_the_secret() {
        let client = JamfClient::new(JamfConfig {
            url: "http://127.0.0.1:9/".into(),
            client_id: "id".into(),
            client_secret: "hunter2-secret".into(),
            timeout: Duration::from_secs(1),
        });
        assert_eq!(client.base, "http://127.0.0.1:9");
        assert!(!format!("{client:?}").contains("hunter2"));
        let err = client.computer_group_members(1).unwrap_err();
        assert!(matches!(err, JamfApiError::Transport(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
