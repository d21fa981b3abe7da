//! The Jamf Pro API, as reconciliation and inventory look-ups need it: OAuth client credentials, group members, one computer's inventory.
//!
//! Off the hot path and blocking (`ureq`): callers run it inside `tokio::task::spawn_blocking`.
//! Every request has connect, read and write timeouts of [`JamfConfig::timeout_ms`].
//!
//! Authentication is an API client's credentials (`POST /api/oauth/token`). Jamf Pro issues no
//! refresh token, so the access token is cached and a new one is asked for once less than 60 s
//! (or a tenth of `expires_in`, whichever is smaller) remain. A data call answered 401 drops the
//! cached token and is retried once with a fresh one. Neither the client secret nor a token is
//! ever logged or put into an error.
//!
//! Parsing tolerates what Jamf Pro varies, by the same rules as the webhooks ([`super::json`]):
//! ids as numbers or as strings (a positive integer below 2^53), keys in any ASCII case, missing
//! or null lists (empty), unknown fields, placeholder values (`"Not Available"`, masked or
//! all-zero identifiers, unspecified addresses: absent). An answer that lacks the essential part
//! (no `computer_group`, a member without an id) is a [`JamfApiError::Decode`] naming the URL,
//! never an empty list: an empty list would read as "nobody is in the group".

use std::fmt;
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::events::{DeviceKind, DeviceReport};
use super::json::{self, Object};

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

/// `[jamf]` in the config: where the Jamf Pro API is and how to authenticate to it; an empty
/// `url` means it is not used.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JamfConfig {
    /// The Jamf Pro base URL, e.g. `https://example.jamfcloud.com` (a trailing `/` is fine).
    pub url: String,
    /// The API client's id (Settings > API Roles and Clients).
    pub client_id: String,
    /// The API client's secret. Never logged: `Debug` shows it redacted.
    pub client_secret: String,
    /// Seconds between reconciliation runs (0: only on demand).
    pub reconcile_interval_s: u64,
    /// Connect, read and write timeout of every request, milliseconds.
    pub timeout_ms: u64,
}

impl Default for JamfConfig {
    fn default() -> Self {
        JamfConfig {
            url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            reconcile_interval_s: 900,
            timeout_ms: 10_000,
        }
    }
}

/// A `[jamf]` section that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JamfConfigError {
    #[error("jamf.url \"{0}\" must start with https:// (http:// only for a loopback address: the client secret would cross the network in clear)")]
    Scheme(String),
    #[error("jamf.client_id and jamf.client_secret are needed with jamf.url")]
    Credentials,
    #[error("jamf.timeout_ms must be above 0")]
    Timeout,
}

impl JamfConfig {
    /// Whether the API is configured at all.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn validate(&self) -> Result<(), JamfConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let in_clear = self.url.strip_prefix("http://");
        if !(self.url.starts_with("https://")
            || in_clear.is_some_and(crate::tls::loopback_authority))
        {
            return Err(JamfConfigError::Scheme(self.url.clone()));
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(JamfConfigError::Credentials);
        }
        if self.timeout_ms == 0 {
            return Err(JamfConfigError::Timeout);
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_secs(self.reconcile_interval_s)
    }
}

impl fmt::Debug for JamfConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JamfConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("reconcile_interval_s", &self.reconcile_interval_s)
            .field("timeout_ms", &self.timeout_ms)
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
    /// What the record says about the device, in the same shape a webhook's device report has
    /// and read by the same rules: `general.name`, `hardware.serialNumber`, `udid`,
    /// `general.managementId`, `hardware.macAddress` and `altMacAddress` (uppercased), and as
    /// `own_ip` `general.lastReportedIp` (else `lastReportedIpV4`): the Mac's own LAN address,
    /// not the one Jamf Pro saw it come from.
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
            .timeout_connect(config.timeout())
            .timeout_read(config.timeout())
            .timeout_write(config.timeout())
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
        parse_computer(&body, &url, Pick::Id(id))
    }

    /// The computer with this serial number (`filter=hardware.serialNumber=="X"`), for a hold
    /// asked by serial before the Mac checked in. `None` when no computer has it.
    pub fn computer_by_serial(&self, serial: &str) -> Result<Option<ComputerRecord>, JamfApiError> {
        // RSQL quotes the value; a serial is letters and digits, anything else asks nothing.
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let (url, body) = self.get(&format!(
            "/api/v1/computers-inventory?{INVENTORY_SECTIONS}&filter=hardware.serialNumber%3D%3D%22{serial}%22"
        ))?;
        parse_computer(&body, &url, Pick::Serial(serial))
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

/// A list that may be missing or null (empty); anything else but an array is an error.
fn list<'a>(parent: &'a Object, key: &str, url: &str) -> Result<&'a [Value], JamfApiError> {
    match json::value(parent, &[key]) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(decode(url, format!("`{key}` is not a list"))),
    }
}

/// The id at `key` of each object in `items`; an item without a usable id is an error naming it.
fn ids_of(items: &[Value], key: &str, list_key: &str, url: &str) -> Result<Vec<i64>, JamfApiError> {
    let mut ids = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_object()
                .and_then(|o| json::value(o, &[key]))
                .and_then(json::id)
                .ok_or_else(|| decode(url, format!("`{list_key}[{i}]` has no usable {key}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    dedup(&mut ids);
    Ok(ids)
}

/// Keeps the first of each id, in order.
fn dedup(ids: &mut Vec<i64>) {
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

/// `{root: {list: [{id, ...}, ...]}}` → the ids. `root` must be there; a member without a usable
/// id is an error rather than left out.
pub fn parse_group_members(
    body: &[u8],
    url: &str,
    root: &str,
    list_key: &str,
) -> Result<Vec<i64>, JamfApiError> {
    let answer = parse_json(body, url)?;
    let group = answer
        .as_object()
        .and_then(|o| json::object(o, &[root]))
        .ok_or_else(|| decode(url, format!("no `{root}` object")))?;
    ids_of(list(group, list_key, url)?, "id", list_key, url)
}

/// Which record of a computers-inventory page is wanted.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    Id(i64),
    /// Case aside.
    Serial(&'a str),
}

/// A computers-inventory page → the record `pick` names, if any.
pub fn parse_computer(
    body: &[u8],
    url: &str,
    pick: Pick<'_>,
) -> Result<Option<ComputerRecord>, JamfApiError> {
    let answer = parse_json(body, url)?;
    let page = answer
        .as_object()
        .filter(|o| {
            // Present, even if null: a page with `"results": null` is an empty page.
            o.keys()
                .any(|k| k.eq_ignore_ascii_case("results") || k.eq_ignore_ascii_case("totalCount"))
        })
        .ok_or_else(|| decode(url, "no `results`"))?;
    if json::value(page, &["totalCount"]).and_then(json::integer) == Some(0) {
        return Ok(None);
    }
    // Pick by id or serial rather than taking results[0]: a filter that was not applied must
    // not hand back some other computer.
    let Some(found) = list(page, "results", url)?
        .iter()
        .filter_map(Value::as_object)
        .find(|r| match pick {
            Pick::Id(id) => json::value(r, &["id"]).and_then(json::id) == Some(id),
            Pick::Serial(serial) => json::object(r, &["hardware"])
                .and_then(|h| json::identifier(h, &["serialNumber"]))
                .is_some_and(|s| s.eq_ignore_ascii_case(serial)),
        })
    else {
        return Ok(None);
    };
    let Some(id) = json::value(found, &["id"]).and_then(json::id) else {
        return Err(decode(url, "a computer without an id"));
    };
    let no_fields = Object::new();
    let general = json::object(found, &["general"]).unwrap_or(&no_fields);
    let hardware = json::object(found, &["hardware"]).unwrap_or(&no_fields);

    let mut mac_addresses: Vec<String> = Vec::new();
    for key in ["macAddress", "altMacAddress"] {
        if let Some(mac) = json::mac(hardware, &[key]) {
            if !mac_addresses.contains(&mac) {
                mac_addresses.push(mac);
            }
        }
    }

    let own_ip = ["lastReportedIp", "lastReportedIpV4"]
        .iter()
        .find_map(|key| json::ip(general, &[key]));

    let group_ids = ids_of(
        list(found, "groupMemberships", url)?,
        "groupId",
        "groupMemberships",
        url,
    )?;

    Ok(Some(ComputerRecord {
        device: DeviceReport {
            kind: Some(DeviceKind::Computer),
            jamf_id: id,
            name: json::text(general, &["name"]),
            serial: json::identifier(hardware, &["serialNumber"]),
            udid: json::identifier(found, &["udid"]),
            management_id: json::identifier(general, &["managementId"]),
            mac_addresses,
            own_ip,
            seen_ip: None,
        },
        group_ids,
    }))
}

/// The token answer → the access token and its lifetime. Messages never quote the body.
pub fn parse_token(body: &[u8], url: &str) -> Result<(String, Duration), JamfApiError> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|_| decode(url, "the token answer is not JSON"))?;
    let token = answer
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
    let lifetime = match answer.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(v) => {
            let seconds = json::integer(v)
                .ok_or_else(|| decode(url, "`expires_in` is not a number of seconds"))?;
            Duration::from_secs(seconds.max(0).unsigned_abs())
        }
    };
    Ok((token.to_string(), lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_clear_is_refused_except_on_loopback() {
        let with_url = |url: &str| JamfConfig {
            url: url.into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            ..JamfConfig::default()
        };
        for url in [
            "http://example.jamfcloud.com",
            "http://10.0.0.5:8443/",
            "http://127.0.0.1.example.com/",
            "http://localhost.example.com",
            "http://[::2]:8080",
            "ftp://example.jamfcloud.com",
            "example.jamfcloud.com",
        ] {
            assert_eq!(
                with_url(url).validate(),
                Err(JamfConfigError::Scheme(url.into())),
                "{url}"
            );
        }
        for url in [
            "https://example.jamfcloud.com",
            "http://127.0.0.1:8080",
            "http://127.9.8.7/",
            "http://[::1]:8080/api",
            "http://localhost:9000",
            "http://LOCALHOST",
        ] {
            assert_eq!(with_url(url).validate(), Ok(()), "{url}");
        }
    }

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
        let record = parse_computer(INVENTORY.as_bytes(), URL, Pick::Id(1042))
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
        assert_eq!(
            parse_computer(INVENTORY.as_bytes(), URL, Pick::Id(7)).unwrap(),
            None
        );
        let by_serial = parse_computer(INVENTORY.as_bytes(), URL, Pick::Serial("c02zk1abmd6t"))
            .unwrap()
            .unwrap();
        assert_eq!(by_serial.device.jamf_id, 1042);
        assert_eq!(
            parse_computer(INVENTORY.as_bytes(), URL, Pick::Serial("NOPE")).unwrap(),
            None
        );
    }

    #[test]
    fn inventory_variants() {
        let parse = |s: &str| parse_computer(s.as_bytes(), URL, Pick::Id(5));
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
    fn ids_follow_the_webhooks_rule() {
        // A positive integer below 2^53, as a number or a string of digits: the same rule as
        // the webhook parser (jamf::json::id).
        let body = |id: &str| format!(r#"{{"computer_group":{{"computers":[{{"id":{id}}}]}}}}"#);
        for (id, expected) in [
            ("1042", Some(1042)),
            (r#""1042""#, Some(1042)),
            ("9007199254740991", Some(9_007_199_254_740_991)),
            ("9000000000000001", Some(9_000_000_000_000_001)),
            ("9007199254740992", None),
            (r#""9007199254740992""#, None),
            ("0", None),
            (r#""-1""#, None),
            ("-1", None),
            (r#""+7""#, None),
            ("7.5", None),
        ] {
            let got = members(&body(id)).ok();
            assert_eq!(got, expected.map(|id| vec![id]), "{id}");
        }
        let inventory = |id: &str| {
            format!(
                r#"{{"totalCount":1,"results":[{{"id":{id},"groupMemberships":[{{"groupId":{id}}}]}}]}}"#
            )
        };
        for id in ["1042", r#""1042""#, r#"" 1042 ""#] {
            let record = parse_computer(inventory(id).as_bytes(), URL, Pick::Id(1042))
                .unwrap()
                .unwrap();
            assert_eq!(record.group_ids, vec![1042], "{id}");
        }
        // A result whose id is not an id is not the computer asked for.
        assert_eq!(
            parse_computer(inventory(r#""1042x""#).as_bytes(), URL, Pick::Id(1042)).unwrap(),
            None
        );
    }

    #[test]
    fn keys_in_another_case_are_read() {
        let body = r#"{"Computer_Group":{"Computers":[{"ID":"5"}]}}"#;
        assert_eq!(members(body).unwrap(), vec![5]);
        let record = parse_computer(
            br#"{"TotalCount":1,"Results":[{"Id":5,"UDID":"U-5","General":{"Name":"n","LastReportedIP":"10.0.0.5"},"Hardware":{"SerialNumber":"S-5"}}]}"#,
            URL,
            Pick::Id(5),
        )
        .unwrap()
        .unwrap();
        assert_eq!(record.device.udid.as_deref(), Some("U-5"));
        assert_eq!(record.device.name.as_deref(), Some("n"));
        assert_eq!(record.device.serial.as_deref(), Some("S-5"));
        assert_eq!(record.device.own_ip, Some("10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn inventory_placeholders_make_no_alias_and_no_binding() {
        let body = br#"{"totalCount":1,"results":[{"id":"5","udid":"00000000-0000-0000-0000-000000000000",
            "general":{"name":"Not Available","managementId":"string","lastReportedIp":"0.0.0.0","lastReportedIpV4":"Not Available"},
            "hardware":{"serialNumber":"Not Available","macAddress":"XX:XX:XX:XX:XX:XX","altMacAddress":"00:00:00:00:00:00"}}]}"#;
        let record = parse_computer(body, URL, Pick::Id(5)).unwrap().unwrap();
        assert_eq!(
            record.device,
            DeviceReport {
                kind: Some(DeviceKind::Computer),
                jamf_id: 5,
                ..DeviceReport::default()
            }
        );
        // A placeholder lastReportedIp gives way to lastReportedIpV4; MACs are uppercased and
        // deduplicated like the webhooks'.
        let body = br#"{"totalCount":1,"results":[{"id":"5","general":{"lastReportedIp":"string","lastReportedIpV4":"10.0.0.5"},
            "hardware":{"macAddress":"3c:22:fb:91:0a:42","altMacAddress":"3C:22:FB:91:0A:42"}}]}"#;
        let record = parse_computer(body, URL, Pick::Id(5)).unwrap().unwrap();
        assert_eq!(record.device.own_ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(
            record.device.mac_addresses,
            vec!["3C:22:FB:91:0A:42".to_string()]
        );
    }

    #[test]
    fn debug_and_errors_hide_the_secret() {
        let client = JamfClient::new(JamfConfig {
            url: "http://127.0.0.1:9/".into(),
            client_id: "id".into(),
            client_secret: "hunter2-secret".into(),
            timeout_ms: 1000,
            ..JamfConfig::default()
        });
        assert_eq!(client.base, "http://127.0.0.1:9");
        assert!(!format!("{client:?}").contains("hunter2"));
        let err = client.computer_group_members(1).unwrap_err();
        assert!(matches!(err, JamfApiError::Transport(_)), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
