//! Events to the SOC, with the real binary and real receivers started by the test: an HTTP
//! receiver that checks the webhook's HMAC and records idempotency keys (and answers 500 at
//! first, to prove retries), a Shared Signals receiver that verifies each SET against the
//! public key, and syslog listeners on UDP and TCP that parse RFC 5424. At least once across a
//! SIGKILL while the receiver is down. And the outbox's reads on both store engines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

use cordon::control::store::{Store, StoreTarget};
use cordon::control::{AuditEvent, Change};
use cordon::policy::DeviceId;

use crate::pg::PgServer;
use crate::support::{
    checkin, eventually, free_port, http, http_json, send_http, start_upstream, webhook, Binary,
    RESPONDER,
};

const SECRET: &str = "webhook-hmac-secret";
const ISSUER: &str = "https://cordon.example.com/";
const AUDIENCE: &str = "https://idp.example.com/ssf";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";
const SERIAL: &str = "C02ZK1ABMD6T";

/// A request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

/// An HTTP/1.1 receiver: answers `first` in turn, then `then`, and records every request.
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: SocketAddr, first: Vec<u16>, then: u16) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let record = got.clone();
        let task = tokio::spawn(async move {
            let mut answers = first.into_iter();
            while let Ok((stream, _)) = listener.accept().await {
                let mut reader = BufReader::new(stream);
                let mut headers = HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let Some((name, value)) = line.trim_end().split_once(':') else {
                        break;
                    };
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
                }
                let length = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    continue;
                }
                let status = answers.next().unwrap_or(then);
                record.lock().unwrap().push(Got {
                    headers,
                    body,
                    status,
                });
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Receiver { got, task }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The bodies it took (2xx), in order.
    fn taken(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .collect()
    }

    /// The `type` of each event it took, in order.
    fn taken_types(&self) -> Vec<String> {
        self.taken()
            .iter()
            .map(|g| json(&g.body)["type"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}"))
}

/// Checks the webhook's signature the way a receiver would: HMAC over the raw body.
fn signed(got: &Got) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&got.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    got.headers.get("x-cordon-signature") == Some(&format!("sha256={hex}"))
}

/// An RFC 5424 message: PRI, header fields, structured data params, and the message.
#[derive(Debug)]
struct Syslog {
    pri: u16,
    header: Vec<String>,
    params: HashMap<String, String>,
    message: String,
}

fn parse_5424(text: &str) -> Syslog {
    let rest = text.strip_prefix('<').expect("starts with <PRI>");
    let (pri, rest) = rest.split_once('>').unwrap();
    let mut header = Vec::new();
    let mut rest = rest;
    for _ in 0..6 {
        let (field, after) = rest.split_once(' ').unwrap();
        header.push(field.to_string());
        rest = after;
    }
    assert_eq!(header[0], "1", "version: {text}");
    let sd = rest.strip_prefix('[').expect("structured data");
    let mut params = HashMap::new();
    let mut chars = sd.chars().peekable();
    let id: String = chars.by_ref().take_while(|c| *c != ' ').collect();
    assert_eq!(id, "cordon@32473");
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap()),
                '"' => break,
                c => value.push(c),
            }
        }
        params.insert(name.trim().to_string(), value);
        match chars.next() {
            Some(' ') => continue,
            Some(']') => break,
            other => panic!("{other:?} in {text}"),
        }
    }
    let message: String = chars.collect();
    let message = message
        .strip_prefix(" \u{feff}")
        .expect("a space and the BOM before the message")
        .to_string();
    Syslog {
        pri: pri.parse().unwrap(),
        header,
        params,
        message,
    }
}

/// Syslog over UDP: every datagram, as text.
async fn udp_listener() -> (
    SocketAddr,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = got.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = socket.recv(&mut buf).await {
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            record.lock().unwrap().push(text);
        }
    });
    (addr, got, task)
}

/// Syslog over TCP with octet counting: every frame, as text.
async fn tcp_listener() -> (
    SocketAddr,
    Arc<Mutex<Vec<String>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = got.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = Vec::new();
                    if reader.read_until(b' ', &mut length).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let length: usize = std::str::from_utf8(&length[..length.len() - 1])
                        .unwrap()
                        .parse()
                        .expect("an octet count");
                    let mut frame = vec![0; length];
                    reader.read_exact(&mut frame).await.unwrap();
                    record
                        .lock()
                        .unwrap()
                        .push(String::from_utf8(frame).unwrap());
                }
            });
        }
    });
    (addr, got, task)
}

/// The value of the metric line naming `name` with every one of `labels`.
async fn metric_with(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (status, text) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// A P-256 key in a PEM file for the SSF sink, and the key a receiver verifies with.
fn ssf_key(dir: &std::path::Path) -> (std::path::PathBuf, DecodingKey) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let path = dir.join("ssf-key.pem");
    std::fs::write(&path, pair.serialize_pem()).unwrap();
    let point = pair.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key =
        DecodingKey::from_ec_components(&b64.encode(&point[1..33]), &b64.encode(&point[33..]))
            .unwrap();
    (path, key)
}

/// A SET's claims, once its signature, type, issuer and audience check out.
fn verified_set(got: &Got, key: &DecodingKey) -> serde_json::Value {
    assert_eq!(
        got.headers.get("content-type").map(String::as_str),
        Some("application/secevent+jwt")
    );
    let token = std::str::from_utf8(&got.body).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    assert_eq!(header.kid.as_deref(), Some("cordon-1"));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
        .expect("the SET verifies against the transmitter's public key")
        .claims
}

async fn isolate(cordon: &Binary, device: &str, expected: u16) {
    let (status, body) = http_json(
        cordon.http,
        "POST",
        &format!("/v1/devices/{device}/isolation"),
        Some(RESPONDER),
        r#"{"reason":"EDR: reverse shell","ticket":"IR-42"}"#,
    )
    .await;
    assert_eq!(status, expected, "{body}");
}

async fn release(cordon: &Binary, device: &str) {
    let path = format!("/v1/devices/{device}/isolation");
    let bearer = format!("Bearer {RESPONDER}");
    let (status, body) = send_http(cordon.http, "DELETE", &path, Some(&bearer), None, "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn events_reach_a_webhook_after_500s_an_ssf_receiver_and_syslog_over_udp_and_tcp() {
    let upstream = start_upstream().await;
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hook = Receiver::start(hook_addr, vec![500, 500], 200).await;
    let ssf_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ssf = Receiver::start(ssf_addr, vec![], 202).await;
    let (udp, udp_got, udp_task) = udp_listener().await;
    let (tcp, tcp_got, tcp_task) = tcp_listener().await;
    let keys = tempfile::tempdir().unwrap();
    let (key_file, public) = ssf_key(keys.path());
    let sinks = format!(
        "[[events.sink]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hooks/cordon\"\nsecret = \"{SECRET}\"\n\
         [[events.sink]]\nname = \"caep\"\nkind = \"ssf\"\nurl = \"http://{ssf_addr}/ssf/push\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nkey_file = \"{}\"\nkid = \"cordon-1\"\n\
         [[events.sink]]\nname = \"siem-udp\"\nkind = \"syslog\"\naddress = \"udp://{udp}\"\n\
         [[events.sink]]\nname = \"siem-tcp\"\nkind = \"syslog\"\naddress = \"tcp://{tcp}\"\nfacility = \"local4\"\n",
        key_file.display()
    );
    let cordon = Binary::start(upstream.addr, &sinks).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    isolate(&cordon, SERIAL, 200).await;
    release(&cordon, SERIAL).await;
    // A hold for a device no one has seen: an event without a device.
    isolate(&cordon, "C02NOTSEENYET", 202).await;

    let expected = [
        "isolation_placed",
        "device_isolated",
        "isolation_released",
        "device_released",
        "hold_waiting",
    ];
    let all_taken = eventually(Duration::from_secs(30), || {
        let taken = hook.taken_types();
        async move { taken == expected }
    })
    .await;
    assert!(all_taken, "{:?}\n{}", hook.got(), cordon.log_text());

    // The webhook: the first event answered 500 twice, then taken; every try signed and with
    // the event's id as its idempotency key.
    let got = hook.got();
    assert_eq!(
        got.iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 500, 200, 200, 200, 200, 200]
    );
    for g in &got {
        assert!(signed(g), "a valid X-Cordon-Signature: {g:?}");
        assert_eq!(g.headers["content-type"], "application/json");
        let id = json(&g.body)["id"].as_i64().unwrap();
        assert_eq!(g.headers["idempotency-key"], id.to_string());
    }
    let first = json(&got[0].body);
    assert_eq!(json(&got[2].body), first, "a retry sends the same event");
    assert_eq!(first["device"]["label"], "FIN-MBP-0142");
    assert!(
        first["device"]["aliases"]
            .as_array()
            .unwrap()
            .contains(&format!("serial:{SERIAL}").into()),
        "{first}"
    );
    assert_eq!(first["actor"], "responder");
    assert_eq!(first["reason"], "EDR: reverse shell");
    assert_eq!(first["detail"], "ticket IR-42");
    let ids: Vec<i64> = hook
        .taken()
        .iter()
        .map(|g| json(&g.body)["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let waiting = json(&hook.taken()[4].body);
    assert!(waiting["device"].is_null(), "{waiting}");
    assert!(
        waiting["detail"]
            .as_str()
            .unwrap()
            .contains("c02notseenyet"),
        "{waiting}"
    );
    let counted = eventually(Duration::from_secs(10), || {
        let http = cordon.http;
        async move {
            let delivered = "cordon_events_delivered_total";
            let errors = metric_with(http, delivered, &["sink=\"soc\"", "result=\"error\""]);
            let ok = metric_with(http, delivered, &["sink=\"soc\"", "result=\"ok\""]);
            let pending = metric_with(http, "cordon_events_pending", &["sink=\"soc\""]);
            (errors.await, ok.await, pending.await) == (2.0, 5.0, 0.0)
        }
    })
    .await;
    assert!(counted, "errors, deliveries and pending counted");

    // Shared Signals: a signed SET for the isolation and one for the release, nothing for the
    // waiting hold.
    let two_sets = eventually(Duration::from_secs(20), || {
        let n = ssf.taken().len();
        async move { n >= 2 }
    })
    .await;
    assert!(two_sets, "{:?}", ssf.got());
    let sets: Vec<serde_json::Value> = ssf
        .taken()
        .iter()
        .map(|g| verified_set(g, &public))
        .collect();
    assert_eq!(sets.len(), 2, "{sets:?}");
    let statuses: Vec<&str> = sets
        .iter()
        .map(|s| s["events"][CAEP]["current_status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["not-compliant", "compliant"]);
    assert_eq!(sets[0]["sub_id"]["format"], "complex");
    assert_eq!(sets[0]["sub_id"]["device"]["id"], SERIAL);
    // The device's state, not the hold: the SET is the `device_isolated` event's.
    assert_eq!(sets[0]["jti"], format!("cordon-event-{}", ids[1]));
    assert_eq!(
        sets[0]["events"][CAEP]["reason_admin"]["en"],
        "EDR: reverse shell"
    );

    // Syslog: the same five events, RFC 5424 with structured data, over both transports.
    let five = eventually(Duration::from_secs(20), || {
        let (u, t) = (udp_got.lock().unwrap().len(), tcp_got.lock().unwrap().len());
        async move { u >= 5 && t >= 5 }
    })
    .await;
    assert!(
        five,
        "{:?} {:?}",
        udp_got.lock().unwrap(),
        tcp_got.lock().unwrap()
    );
    for (got, facility) in [(&udp_got, 4u16), (&tcp_got, 20)] {
        let messages: Vec<Syslog> = got.lock().unwrap().iter().map(|t| parse_5424(t)).collect();
        // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
        let kinds: Vec<&str> = messages.iter().map(|m| m.header[5].as_str()).collect();
        assert_eq!(kinds, expected);
        let placed = &messages[0];
        assert_eq!(placed.pri, facility * 8 + 4, "warning: {placed:?}");
        assert_eq!(
            messages[1].pri,
            facility * 8 + 4,
            "warning: the device is isolated"
        );
        assert_eq!(messages[2].pri, facility * 8 + 5, "notice");
        assert_eq!(placed.header[3], "cordon");
        assert!(placed.header[1].ends_with('Z'), "{placed:?}");
        assert_eq!(placed.params["id"], ids[0].to_string());
        assert_eq!(placed.params["actor"], "responder");
        assert_eq!(placed.params["label"], "FIN-MBP-0142");
        let serial = format!("serial:{SERIAL}");
        assert!(placed.params["aliases"].contains(&serial), "{placed:?}");
        assert!(
            placed.message.starts_with("isolation placed on device#"),
            "{placed:?}"
        );
    }
    udp_task.abort();
    tcp_task.abort();
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_across_a_kill_9() {
    let upstream = start_upstream().await;
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sink = format!(
        "[[events.sink]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hooks\"\nsecret = \"{SECRET}\"\ntimeout_ms = 2000\n"
    );
    let mut cordon = Binary::start(upstream.addr, &sink).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    // The receiver is down: the event waits in the outbox.
    isolate(&cordon, SERIAL, 200).await;
    let tried = eventually(Duration::from_secs(20), || {
        let http = cordon.http;
        async move {
            metric_with(http, "cordon_events_delivered_total", &["result=\"error\""]).await >= 1.0
        }
    })
    .await;
    assert!(tried, "{}", cordon.log_text());
    assert_eq!(
        metric_with(cordon.http, "cordon_events_pending", &["sink=\"soc\""]).await,
        2.0,
        "isolation_placed and device_isolated"
    );
    cordon.kill_9();

    let hook = Receiver::start(hook_addr, vec![], 204).await;
    cordon.spawn().await;
    let arrived = eventually(Duration::from_secs(20), || {
        let n = hook.taken().len();
        async move { n >= 1 }
    })
    .await;
    assert!(arrived, "{:?}\n{}", hook.got(), cordon.log_text());
    let taken = hook.taken();
    let event = json(&taken[0].body);
    assert_eq!(event["type"], "isolation_placed");
    assert!(signed(&taken[0]));
    assert_eq!(taken[0].headers["idempotency-key"], event["id"].to_string());
    // Delivered, the cursor moved: another restart sends nothing again.
    let passed = eventually(Duration::from_secs(10), || {
        let http = cordon.http;
        async move { metric_with(http, "cordon_events_pending", &["sink=\"soc\""]).await == 0.0 }
    })
    .await;
    assert!(passed);
    cordon.kill_9();
    cordon.spawn().await;
    release(&cordon, SERIAL).await;
    let released = eventually(Duration::from_secs(20), || {
        let n = hook.taken().len();
        async move { n >= 4 }
    })
    .await;
    assert!(released, "{:?}", hook.got());
    let types: Vec<String> = hook.taken_types();
    assert_eq!(
        types,
        [
            "isolation_placed",
            "device_isolated",
            "isolation_released",
            "device_released"
        ]
    );
}

/// Commits audit rows as the writer does: begin, then commit.
async fn audit(store: &mut Store, position: i64, changes: &[Change], rows: &[AuditEvent]) -> i64 {
    store.begin(position).await.unwrap();
    store.commit(position, changes, rows, 1_000).await.unwrap()
}

fn row(action: &str, device: Option<u64>) -> AuditEvent {
    AuditEvent {
        at: 1_000,
        device: device.map(DeviceId),
        actor: "alice".into(),
        action: action.into(),
        detail: "ticket IR-1".into(),
        reason: "why".into(),
    }
}

async fn outbox_suite(mut store: Store) {
    let actions = ["isolated", "released"];
    let empty = store.outbox(0, &actions, 10).await.unwrap();
    assert_eq!((empty.rows.len(), empty.pending, empty.end), (0, 0, 0));
    assert_eq!(
        store.sink_cursor("soc").await.unwrap(),
        0,
        "new, at the end"
    );

    let device = DeviceId(1);
    let changes = vec![
        Change::DeviceAdded {
            device,
            label: "FIN-MBP".into(),
        },
        Change::AliasSeen {
            alias: cordon::control::Alias::new(cordon::control::AliasKind::Serial, "C02AAA"),
            device,
        },
        Change::AliasSeen {
            alias: cordon::control::Alias::new(cordon::control::AliasKind::Token, "secret-tok"),
            device,
        },
    ];
    let rows = [
        row("binding_added", Some(1)),
        row("isolated", Some(1)),
        row("membership_added", Some(1)),
        row("released", Some(1)),
        row("isolated", None),
    ];
    let position = audit(&mut store, 0, &changes, &rows).await;
    let outbox = store.outbox(0, &actions, 10).await.unwrap();
    assert_eq!((outbox.pending, outbox.rows.len()), (3, 3));
    let ids: Vec<i64> = outbox.rows.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(outbox.end, *ids.last().unwrap());
    let first = &outbox.rows[0];
    assert_eq!(first.event, rows[1]);
    assert_eq!(first.label.as_deref(), Some("FIN-MBP"));
    assert_eq!(
        first.aliases,
        ["serial:c02aaa"],
        "no token leaves the store"
    );
    assert_eq!(outbox.rows[2].label, None);
    // A page, and the rest after its last id.
    let page = store.outbox(0, &actions, 2).await.unwrap();
    assert_eq!((page.rows.len(), page.pending), (2, 3));
    let rest = store.outbox(page.rows[1].id, &actions, 2).await.unwrap();
    assert_eq!((rest.rows.len(), rest.pending), (1, 1));
    assert_eq!(rest.rows[0].id, ids[2]);

    // The cursor: an existing sink keeps its own; a new one starts at the end; never back.
    assert_eq!(store.sink_cursor("soc").await.unwrap(), 0);
    assert_eq!(store.sink_cursor("new").await.unwrap(), outbox.end);
    store.set_sink_cursor("soc", ids[1]).await.unwrap();
    store.set_sink_cursor("soc", ids[0]).await.unwrap();
    assert_eq!(store.sink_cursor("soc").await.unwrap(), ids[1]);
    let after = store.outbox(ids[1], &actions, 10).await.unwrap();
    assert_eq!(after.pending, 1);
    // Rows after the end, of any action, move the end.
    audit(&mut store, position, &[], &[row("binding_added", Some(1))]).await;
    let later = store.outbox(outbox.end, &actions, 10).await.unwrap();
    assert_eq!((later.pending, later.end), (0, outbox.end + 1));
}

#[tokio::test]
async fn events_outbox_reads_the_audit_log_after_a_cursor_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StoreTarget::Sqlite(dir.path().join("cordon.db"));
    outbox_suite(Store::open(&sqlite).await.unwrap()).await;
    let pg = PgServer::start().await;
    let url = pg.database("events").await;
    let settings =
        cordon::control::store::PgSettings::new(&url, None, Duration::from_secs(5)).unwrap();
    let target = StoreTarget::Postgres(Box::new(settings));
    outbox_suite(Store::open(&target).await.unwrap()).await;
}

/// The nodes of `nodes` whose `cordon_leader` is 1.
async fn leaders(nodes: &[Binary]) -> Vec<usize> {
    let mut leaders = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if crate::support::metric(node.http, "cordon_leader").await == 1.0 {
            leaders.push(i);
        }
    }
    leaders
}

#[tokio::test]
async fn events_on_a_shared_store_are_sent_by_the_leader_alone_and_a_new_leader_goes_on() {
    let pg = PgServer::start().await;
    let url = pg.database("events_fleet").await;
    let upstream = start_upstream().await;
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hook = Receiver::start(hook_addr, vec![], 200).await;
    let sink = format!(
        "[[events.sink]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hooks\"\nsecret = \"{SECRET}\"\n"
    );
    let store = format!("url = \"{url}\"\ntimeout_ms = 5000");
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(Binary::start_on(upstream.addr, &store, &sink).await);
    }
    let one = eventually(Duration::from_secs(10), || {
        let nodes = &nodes;
        async move { leaders(nodes).await.len() == 1 }
    })
    .await;
    assert!(one, "one leader");
    let leader = leaders(&nodes).await[0];
    let other = 1 - leader;

    // A change taken by the other node: the leader sends it, once.
    let (status, body) = webhook(nodes[other].http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    isolate(&nodes[other], SERIAL, 200).await;
    let sent = eventually(Duration::from_secs(20), || {
        let n = hook.taken().len();
        async move { n >= 1 }
    })
    .await;
    assert!(sent, "{}", nodes[leader].log_text());
    let passed = eventually(Duration::from_secs(10), || {
        let http = nodes[leader].http;
        async move { metric_with(http, "cordon_events_pending", &["sink=\"soc\""]).await == 0.0 }
    })
    .await;
    assert!(passed);
    let counted = |i: usize| {
        let http = nodes[i].http;
        async move { metric_with(http, "cordon_events_delivered_total", &["result=\"ok\""]).await }
    };
    assert_eq!(
        counted(leader).await,
        2.0,
        "isolation_placed and device_isolated"
    );
    assert_eq!(counted(other).await, 0.0, "only the leader delivers");

    // The leader dies; the other node takes over and goes on from the shared cursor.
    nodes[leader].kill_9();
    release(&nodes[other], SERIAL).await;
    let took_over = eventually(Duration::from_secs(20), || {
        let n = hook.taken().len();
        async move { n >= 4 }
    })
    .await;
    assert!(took_over, "{}", nodes[other].log_text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let types: Vec<String> = hook.taken_types();
    assert_eq!(
        types,
        [
            "isolation_placed",
            "device_isolated",
            "isolation_released",
            "device_released"
        ],
        "each once"
    );
}

#[tokio::test]
async fn events_tell_of_a_tripwire_and_of_the_probation_after_release() {
    let upstream = start_upstream().await;
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hook = Receiver::start(hook_addr, vec![], 200).await;
    let extra = format!(
        "[tripwire]\nenabled = true\n\
         [[events.sink]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{hook_addr}/hooks\"\nsecret = \"{SECRET}\"\n"
    );
    let mut cordon = Binary::start(upstream.addr, &extra).await;
    let standard = cordon.dir.path().join("policies/standard.toml");
    let text = std::fs::read_to_string(&standard).unwrap()
        + "tripwire_categories = [\"malware\"]\nprobation_s = 600\n";
    std::fs::write(&standard, text).unwrap();
    // A restart reads the policies with the tripwire.
    cordon.kill_9();
    cordon.spawn().await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    crate::support::ask_from(cordon.dns, [127, 0, 0, 7], "evil.test").await;
    let held = eventually(Duration::from_secs(10), || {
        let dns = cordon.dns;
        async move { crate::support::blocked_from(dns, [127, 0, 0, 7]).await }
    })
    .await;
    assert!(held, "{}", cordon.log_text());
    release(&cordon, SERIAL).await;
    let expected = [
        "tripwire_fired",
        "isolation_placed",
        "device_isolated",
        "isolation_released",
        "device_released",
        "probation_started",
    ];
    let all = eventually(Duration::from_secs(20), || {
        let types: Vec<String> = hook.taken_types();
        async move { types == expected }
    })
    .await;
    assert!(all, "{:?}\n{}", hook.got(), cordon.log_text());
    let taken = hook.taken();
    let fired = json(&taken[0].body);
    assert_eq!(fired["actor"], "tripwire", "{fired}");
    assert_eq!(fired["detail"], "evil.test", "{fired}");
    assert!(fired["device"]["id"].is_string(), "{fired}");
    let placed = json(&taken[1].body);
    assert_eq!(placed["actor"], "tripwire", "{placed}");
    let probation = json(&taken[5].body);
    assert!(
        probation["detail"].as_str().unwrap().starts_with("until "),
        "{probation}"
    );
}
