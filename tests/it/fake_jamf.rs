//! A fake Jamf Pro API on 127.0.0.1 for reconciliation tests, serving the fixtures' shapes from state the test sets.
//!
//! The one stand-in in these tests, because Jamf Pro is hosted. It answers what the real one
//! would, as far as Cordon asks:
//! - `POST /api/oauth/token` (form `grant_type=client_credentials&client_id=..&client_secret=..`):
//!   401 on wrong credentials, else a fresh random-ish token valid for `expires_in` seconds;
//! - `GET /JSSResource/computergroups/id/{id}`, `GET /JSSResource/mobiledevicegroups/id/{id}`:
//!   the classic API's JSON (XML unless `Accept` asks for JSON), 404 for unknown ids;
//! - `GET /api/v1/computers-inventory?section=..&filter=id=={id}` (or
//!   `filter=hardware.serialNumber=="X"`): string ids, only the sections
//!   asked for (`GENERAL` when none is), `totalCount: 0` for unknown ids.
//!
//! Data endpoints want `Authorization: Bearer <token>` with a token issued and not yet expired
//! (401 otherwise). Groups and computers are independent: set each as the test needs. A path
//! can be made to fail with a status of the test's choice ([`FakeJamf::fail`]), as a Jamf Pro
//! that is down or misconfigured does.

#![allow(dead_code)] // each test uses part of it

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State as Shared};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running fake; dropping it stops the server.
pub struct FakeJamf {
    /// `http://127.0.0.1:PORT`, the base URL for `JamfConfig::url`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

struct Group {
    name: String,
    members: Vec<i64>,
}

struct Computer {
    serial: String,
    udid: String,
    own_ip: String,
    group_ids: Vec<i64>,
}

struct State {
    client_id: String,
    client_secret: String,
    token_lifetime: u64,
    /// Issued tokens and when they expire.
    tokens: HashMap<String, Instant>,
    issued: u64,
    token_requests: usize,
    requests: Vec<String>,
    computer_groups: BTreeMap<i64, Group>,
    mobile_groups: BTreeMap<i64, Group>,
    computers: BTreeMap<i64, Computer>,
    /// Paths answered with this status instead of what they would answer.
    failing: HashMap<String, u16>,
}

type SharedState = Arc<Mutex<State>>;

fn lock(state: &SharedState) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeJamf {
    /// Starts the fake on an ephemeral port, accepting these client credentials.
    pub async fn start(client_id: &str, client_secret: &str) -> FakeJamf {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            token_lifetime: 599,
            tokens: HashMap::new(),
            issued: 0,
            token_requests: 0,
            requests: Vec::new(),
            computer_groups: BTreeMap::new(),
            mobile_groups: BTreeMap::new(),
            computers: BTreeMap::new(),
            failing: HashMap::new(),
        }));
        let app = Router::new()
            .route("/api/oauth/token", post(token))
            .route("/JSSResource/computergroups/id/{id}", get(computer_group))
            .route("/JSSResource/mobiledevicegroups/id/{id}", get(mobile_group))
            .route("/api/v1/computers-inventory", get(computers_inventory))
            .layer(middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeJamf { url, state, task }
    }

    /// Creates or replaces computer group `id` with these member computer ids.
    pub fn set_computer_group(&self, id: i64, name: &str, members: &[i64]) {
        let group = Group {
            name: name.to_string(),
            members: members.to_vec(),
        };
        lock(&self.state).computer_groups.insert(id, group);
    }

    /// Creates or replaces mobile device group `id` with these member device ids.
    pub fn set_mobile_group(&self, id: i64, name: &str, members: &[i64]) {
        let group = Group {
            name: name.to_string(),
            members: members.to_vec(),
        };
        lock(&self.state).mobile_groups.insert(id, group);
    }

    /// Creates or replaces computer `id`'s inventory. `own_ip` becomes `general.lastReportedIp`
    /// as given (it may be empty or nonsense); `group_ids` its `groupMemberships`.
    pub fn set_computer(&self, id: i64, serial: &str, udid: &str, own_ip: &str, group_ids: &[i64]) {
        let computer = Computer {
            serial: serial.to_string(),
            udid: udid.to_string(),
            own_ip: own_ip.to_string(),
            group_ids: group_ids.to_vec(),
        };
        lock(&self.state).computers.insert(id, computer);
    }

    /// How many `POST /api/oauth/token` requests were made (refused ones included).
    pub fn token_requests(&self) -> usize {
        lock(&self.state).token_requests
    }

    /// Every request so far, in order, as `METHOD /path` plus `?query` (percent-decoded) when
    /// there is one: `"GET /JSSResource/computergroups/id/42"`, `"POST /api/oauth/token"`,
    /// `"GET /api/v1/computers-inventory?section=GENERAL&...&filter=id==1042"`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    /// `expires_in` (seconds) of tokens issued from now on; 599 unless set. The fake refuses a
    /// token once that long has passed since it was issued.
    pub fn set_token_lifetime(&self, seconds: u64) {
        lock(&self.state).token_lifetime = seconds;
    }

    /// Answers every request for `path` (exactly, without the query) with `status` and a JSON
    /// error body, until [`FakeJamf::heal`].
    pub fn fail(&self, path: &str, status: u16) {
        lock(&self.state).failing.insert(path.to_string(), status);
    }

    /// `path` answers as it would again.
    pub fn heal(&self, path: &str) {
        lock(&self.state).failing.remove(path);
    }

    /// Forgets every issued token, as Jamf Pro does when the API client's secret is rotated or
    /// its tokens are invalidated: the next data call with an old token gets 401.
    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }
}

impl Drop for FakeJamf {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Logs each request before it is handled.
async fn record(Shared(state): Shared<SharedState>, request: Request, next: Next) -> Response {
    let mut line = format!("{} {}", request.method(), request.uri().path());
    if let Some(query) = request.uri().query() {
        line.push('?');
        line.push_str(&percent_decode(query));
    }
    let failing = {
        let mut s = lock(&state);
        s.requests.push(line);
        s.failing.get(request.uri().path()).copied()
    };
    if let Some(status) = failing {
        let status = StatusCode::from_u16(status).expect("a valid status");
        let error = json!({"httpStatus": status.as_u16(), "errors": []});
        return (status, Json(error)).into_response();
    }
    next.run(request).await
}

async fn token(Shared(state): Shared<SharedState>, headers: HeaderMap, body: String) -> Response {
    let mut s = lock(&state);
    s.token_requests += 1;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let form = parse_pairs(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("client_credentials") {
        let error = json!({"error": "unsupported_grant_type"});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    if field("client_id") != Some(s.client_id.as_str())
        || field("client_secret") != Some(s.client_secret.as_str())
    {
        let error = json!({"error": "invalid_client"});
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    s.issued += 1;
    let token = new_token(s.issued);
    let lifetime = s.token_lifetime;
    let expires = Instant::now() + Duration::from_secs(lifetime);
    s.tokens.insert(token.clone(), expires);
    Json(json!({
        "access_token": token,
        "scope": "api-role:1",
        "token_type": "Bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}

async fn computer_group(
    Shared(state): Shared<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if !authorized(&mut s, &headers) {
        return unauthorized();
    }
    let Some((id, group)) = id
        .parse()
        .ok()
        .and_then(|id| Some((id, s.computer_groups.get(&id)?)))
    else {
        return not_found();
    };
    if !wants_json(&headers) {
        return xml(format!("<computer_group><id>{id}</id></computer_group>"));
    }
    let computers: Vec<Value> = group
        .members
        .iter()
        .map(|&member| {
            let computer = s.computers.get(&member);
            json!({
                "id": member,
                "name": computer_name(member),
                "mac_address": mac_address(member),
                "alt_mac_address": "",
                "serial_number": computer.map_or("", |c| c.serial.as_str()),
            })
        })
        .collect();
    Json(json!({"computer_group": {
        "id": id,
        "name": group.name,
        "is_smart": true,
        "site": {"id": -1, "name": "None"},
        "criteria": [],
        "computers": computers,
    }}))
    .into_response()
}

async fn mobile_group(
    Shared(state): Shared<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if !authorized(&mut s, &headers) {
        return unauthorized();
    }
    let Some((id, group)) = id
        .parse()
        .ok()
        .and_then(|id| Some((id, s.mobile_groups.get(&id)?)))
    else {
        return not_found();
    };
    if !wants_json(&headers) {
        return xml(format!(
            "<mobile_device_group><id>{id}</id></mobile_device_group>"
        ));
    }
    let devices: Vec<Value> = group
        .members
        .iter()
        .map(|&member| {
            json!({
                "id": member,
                "name": format!("IPHONE-{member:04}"),
                "mac_address": mac_address(member),
                "udid": format!("00008110-{member:016X}"),
                "wifi_mac_address": mac_address(member),
                "serial_number": format!("F2LMOBILE{member:04}"),
            })
        })
        .collect();
    Json(json!({"mobile_device_group": {
        "id": id,
        "name": group.name,
        "is_smart": true,
        "site": {"id": -1, "name": "None"},
        "criteria": [],
        "mobile_devices": devices,
    }}))
    .into_response()
}

async fn computers_inventory(
    Shared(state): Shared<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if !authorized(&mut s, &headers) {
        return unauthorized();
    }
    let query = parse_pairs(query.as_deref().unwrap_or(""));
    let mut sections: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "section")
        .map(|(_, v)| v.as_str())
        .collect();
    if sections.is_empty() {
        sections.push("GENERAL");
    }
    let has = |section: &str| sections.contains(&section) || sections.contains(&"ALL");
    // RSQL, as far as Cordon asks: `id==N` or `hardware.serialNumber=="X"`.
    let filter = query
        .iter()
        .find(|(k, _)| k == "filter")
        .map(|(_, f)| f.as_str());
    let by_id = filter
        .and_then(|f| f.strip_prefix("id=="))
        .and_then(|id| id.trim_matches('"').parse::<i64>().ok());
    let by_serial = filter
        .and_then(|f| f.strip_prefix("hardware.serialNumber=="))
        .map(|serial| serial.trim_matches('"').to_string());
    if filter.is_some() && by_id.is_none() && by_serial.is_none() {
        let error = json!({"httpStatus": 400, "errors": [
            {"code": "INVALID_RSQL_FILTER_FIELD", "description": "the fake knows id==N and hardware.serialNumber==\"X\" only"}
        ]});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let results: Vec<Value> = s
        .computers
        .iter()
        .filter(|(id, _)| by_id.is_none_or(|w| w == **id))
        .filter(|(_, c)| {
            by_serial
                .as_ref()
                .is_none_or(|w| c.serial.eq_ignore_ascii_case(w))
        })
        .map(|(&id, c)| {
            let general = has("GENERAL").then(|| {
                json!({
                    "name": computer_name(id),
                    "lastIpAddress": format!("198.51.100.{}", id.rem_euclid(254) + 1),
                    "lastReportedIp": c.own_ip,
                    "lastReportedIpV4": c.own_ip,
                    "managementId": format!("00000000-0000-4000-8000-{:012x}", id),
                    "lastContactTime": "2026-11-21T07:58:12Z",
                })
            });
            let hardware = has("HARDWARE").then(|| {
                json!({
                    "serialNumber": c.serial,
                    "macAddress": mac_address(id),
                    "altMacAddress": null,
                    "model": "MacBook Pro (16-inch, 2021)",
                })
            });
            let memberships = has("GROUP_MEMBERSHIPS").then(|| {
                c.group_ids
                    .iter()
                    .map(|g| {
                        let name = s
                            .computer_groups
                            .get(g)
                            .map_or_else(|| format!("Group {g}"), |group| group.name.clone());
                        json!({"groupId": g.to_string(), "groupName": name, "smartGroup": true})
                    })
                    .collect::<Vec<_>>()
            });
            json!({
                "id": id.to_string(),
                "udid": c.udid,
                "general": general,
                "hardware": hardware,
                "groupMemberships": memberships,
            })
        })
        .collect();
    Json(json!({"totalCount": results.len(), "results": results})).into_response()
}

/// Whether the request carries a bearer token the fake issued and that has not expired.
fn authorized(s: &mut State, headers: &HeaderMap) -> bool {
    let now = Instant::now();
    s.tokens.retain(|_, expires| *expires > now);
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| s.tokens.contains_key(token.trim()))
}

fn unauthorized() -> Response {
    let error = json!({"httpStatus": 401, "errors": []});
    (StatusCode::UNAUTHORIZED, Json(error)).into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

/// The classic API answers XML unless asked for JSON.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

fn xml(body: String) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/xml;charset=UTF-8")
        .body(Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>{body}"
        )))
        .unwrap()
}

fn computer_name(id: i64) -> String {
    format!("MAC-{id:04}")
}

fn mac_address(id: i64) -> String {
    let b = id.to_be_bytes();
    format!("3C:22:FB:{:02X}:{:02X}:{:02X}", b[5], b[6], b[7])
}

fn new_token(n: u64) -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(n);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    format!("fake-jamf-{n}-{:016x}", hasher.finish())
}

/// `a=1&b=x%20y` → `[("a", "1"), ("b", "x y")]` (form bodies and query strings alike).
fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || {
            let digits = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            u8::from_str_radix(digits, 16).ok()
        };
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if hex().is_some() => {
                out.extend(hex());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
