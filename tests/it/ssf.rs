//! Shared Signals: Security Event Tokens signed in the test with real keys (RS256 with an RSA key
//! openssl makes, ES256 with a P-256 key rcgen makes), one issuer's keys in a JWKS file and the
//! other's at a JWKS URL this test serves, pushed to the real binary. A device-compliance-change
//! to not-compliant restricts the device the MDM bound to an address, compliant releases it,
//! every bad SET is refused with its RFC 8935 code and changes nothing, and a replayed jti is
//! refused, also after a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The fixture's issuer: keys from a file, RS256.
const FILE_ISSUER: &str = "https://idp.example.com/tenant-7/";
/// Another transmitter: keys from a URL, ES256.
const URL_ISSUER: &str = "https://edr.example.net/";
const AUDIENCE: &str = "https://cordon.example.com/webhooks/ssf";
const NOT_COMPLIANT: &str = "not-compliant";
/// Where the MDM says the Mac is.
const MAC: [u8; 4] = [127, 0, 0, 77];

/// A key a transmitter signs with.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    fn sign(&self, payload: &serde_json::Value) -> String {
        self.sign_as(payload, Some(&self.kid), Some("secevent+jwt"))
    }

    fn sign_as(&self, payload: &serde_json::Value, kid: Option<&str>, typ: Option<&str>) -> String {
        let header = Header {
            alg: self.alg,
            kid: kid.map(str::to_string),
            typ: typ.map(str::to_string),
            ..Header::default()
        };
        jsonwebtoken::encode(&header, payload, &self.key).unwrap()
    }
}

fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A fresh 2048-bit RSA key (openssl genpkey) and its public JWK.
fn rsa_signer(dir: &Path, kid: &str) -> (Signer, serde_json::Value) {
    let pem = dir.join(format!("{kid}.pem"));
    let der = dir.join(format!("{kid}.der"));
    let (pem, der) = (pem.to_str().unwrap(), der.to_str().unwrap());
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem,
    ]);
    openssl(&[
        "rsa",
        "-in",
        pem,
        "-outform",
        "DER",
        "-traditional",
        "-out",
        der,
    ]);
    let modulus = openssl(&["rsa", "-in", pem, "-noout", "-modulus"]);
    let n = hex(modulus.trim().strip_prefix("Modulus=").unwrap());
    let jwk = serde_json::json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB",
    });
    let key = EncodingKey::from_rsa_der(&std::fs::read(der).unwrap());
    let signer = Signer {
        kid: kid.into(),
        alg: Algorithm::RS256,
        key,
    };
    (signer, jwk)
}

/// A fresh P-256 key (rcgen, on ring) and its public JWK.
fn ec_signer(kid: &str) -> (Signer, serde_json::Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed point");
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    });
    let signer = Signer {
        kid: kid.into(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&pair.serialize_der()),
    };
    (signer, jwk)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The shipped fixture's payload (tests/fixtures/ssf), issued now, with this jti and status.
fn payload(jti: &str, status: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ssf/device-compliance-change.payload.json");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    p["iat"] = now().into();
    p["jti"] = jti.into();
    let event = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";
    p["events"][event]["current_status"] = status.into();
    p
}

/// The same, from the URL issuer, naming the Mac by `serial:` in an opaque subject.
fn url_payload(jti: &str, status: &str) -> serde_json::Value {
    let mut p = payload(jti, status);
    p["iss"] = URL_ISSUER.into();
    p["sub_id"] = serde_json::json!({"format": "opaque", "id": "serial:C02ZK1ABMD6T"});
    p
}

async fn push(addr: SocketAddr, token: &str) -> (u16, serde_json::Value) {
    push_as(addr, "application/secevent+jwt", token).await
}

async fn push_as(addr: SocketAddr, content_type: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, text) = send_http(
        addr,
        "POST",
        "/webhooks/ssf",
        None,
        Some(content_type),
        body,
    )
    .await;
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {status} {text}"));
    (status, answer)
}

/// Asserts a refusal: `status` with RFC 8935's `err` and a description.
fn assert_refused(answer: (u16, serde_json::Value), status: u16, err: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["err"], err, "{}", answer.1);
    assert!(
        answer.1["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        answer.1
    );
}

/// A JWKS over HTTP: answers every request with `body`, and counts them.
struct JwksServer {
    addr: SocketAddr,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let count = fetches.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        JwksServer {
            addr,
            fetches,
            task,
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn series(issuer: &str, result: &str) -> String {
    format!("cordon_ssf_events_total{{issuer=\"{issuer}\",result=\"{result}\"}}")
}

/// The Mac's UEM groups, as the API shows them.
async fn groups_of_mac(addr: SocketAddr) -> Vec<String> {
    let info = device_info(addr, "C02ZK1ABMD6T")
        .await
        .expect("the Mac is known");
    info["uem_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn caep_compliance_changes_restrict_and_release_and_bad_sets_change_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa, rsa_jwk) = rsa_signer(keys.path(), "rsa-1");
    let (ec, ec_jwk) = ec_signer("ec-1");
    let jwks_file = keys.path().join("idp-jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::json!({ "keys": [rsa_jwk] }).to_string(),
    )
    .unwrap();
    let server = JwksServer::start(serde_json::json!({ "keys": [ec_jwk] }).to_string()).await;
    let upstream = start_upstream().await;
    let extra = format!(
        "[ssf]\n\
         [[ssf.issuer]]\nissuer = \"{FILE_ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n\
         [[ssf.issuer]]\nissuer = \"{URL_ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_url = \"http://{}/jwks\"\n",
        jwks_file.display(),
        server.addr
    );
    let mut binary = Binary::start(upstream.addr, &extra).await;
    assert!(
        server.fetches.load(Ordering::SeqCst) >= 1,
        "fetched at start"
    );
    // groups.toml maps both transmitters' keys to the restricted group, like any MDM group.
    let file_key = format!("ssf:{FILE_ISSUER}:not-compliant");
    let url_key = format!("ssf:{URL_ISSUER}:not-compliant");
    map_to_restricted(&binary.dir.path().join("policies"), &[&file_key, &url_key]);
    let (status, body) = http(binary.http, "POST", "/v1/reload", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    // The MDM binds the Mac (serial C02ZK1ABMD6T) to its address.
    let (status, body) = webhook(binary.http, &checkin("127.0.0.77")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(binary.dns, MAC).await);

    // RS256, keys from the file: not-compliant restricts the Mac, compliant releases it.
    let first = rsa.sign(&payload("jti-1", NOT_COMPLIANT));
    let (status, answer) = push(binary.http, &first).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "applied", "{answer}");
    assert!(
        blocked_from(binary.dns, MAC).await,
        "in force once answered"
    );
    assert_eq!(
        groups_of_mac(binary.http).await,
        std::slice::from_ref(&file_key)
    );
    let release = rsa.sign(&payload("jti-2", "compliant"));
    let (status, answer) = push(binary.http, &release).await;
    assert_eq!(status, 202, "{answer}");
    assert!(!blocked_from(binary.dns, MAC).await);

    // ES256, keys from the URL, the Mac named as serial:… in an opaque subject.
    let (status, answer) = push(binary.http, &ec.sign(&url_payload("e-1", NOT_COMPLIANT))).await;
    assert_eq!(status, 202, "{answer}");
    assert!(blocked_from(binary.dns, MAC).await);
    let (status, answer) = push(binary.http, &ec.sign(&url_payload("e-2", "compliant"))).await;
    assert_eq!(status, 202, "{answer}");
    assert!(!blocked_from(binary.dns, MAC).await);
    assert!(groups_of_mac(binary.http).await.is_empty());

    // Another event type: acknowledged and counted, nothing changes.
    let mut other = payload("jti-3", NOT_COMPLIANT);
    other["events"] = serde_json::json!({
        "https://schemas.openid.net/secevent/caep/event-type/session-revoked":
            {"event_timestamp": now()}
    });
    let (status, answer) = push(binary.http, &rsa.sign(&other)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["result"], "ignored", "{answer}");

    // Bad SETs: each refused with its code, none changes anything.
    let (stranger, _) = rsa_signer(keys.path(), "rsa-1-impostor");
    // Another key, claiming the issuer's kid.
    let forged = stranger.sign_as(&payload("bad-1", NOT_COMPLIANT), Some("rsa-1"), None);
    assert_refused(
        push(binary.http, &forged).await,
        400,
        "authentication_failed",
    );
    let unknown_kid = rsa.sign_as(&payload("bad-2", NOT_COMPLIANT), Some("rsa-9"), None);
    assert_refused(push(binary.http, &unknown_kid).await, 400, "invalid_key");
    let mut future = payload("bad-3", NOT_COMPLIANT);
    future["iat"] = (now() + 3600).into();
    assert_refused(
        push(binary.http, &rsa.sign(&future)).await,
        400,
        "invalid_request",
    );
    let mut expired = payload("bad-4", NOT_COMPLIANT);
    expired["iat"] = (now() - 2 * 86_400).into();
    assert_refused(
        push(binary.http, &rsa.sign(&expired)).await,
        400,
        "invalid_request",
    );
    let mut wrong_aud = payload("bad-5", NOT_COMPLIANT);
    wrong_aud["aud"] = "https://someone-else.example.com/ssf".into();
    assert_refused(
        push(binary.http, &rsa.sign(&wrong_aud)).await,
        400,
        "invalid_audience",
    );
    let mut unknown_iss = payload("bad-6", NOT_COMPLIANT);
    unknown_iss["iss"] = "https://evil.example/".into();
    assert_refused(
        push(binary.http, &rsa.sign(&unknown_iss)).await,
        400,
        "invalid_issuer",
    );
    let mut user = payload("bad-7", NOT_COMPLIANT);
    user["sub_id"] = serde_json::json!({"format": "email", "email": "ana.lopez@example.com"});
    assert_refused(
        push(binary.http, &rsa.sign(&user)).await,
        400,
        "invalid_request",
    );
    // An ES256 key claimed by the RS256 issuer's kid, and a token typed as an ordinary JWT.
    let (status, answer) = push(
        binary.http,
        &ec.sign_as(&payload("bad-8", NOT_COMPLIANT), Some("rsa-1"), None),
    )
    .await;
    assert_refused((status, answer), 400, "invalid_key");
    let typed = rsa.sign_as(&payload("bad-9", NOT_COMPLIANT), Some("rsa-1"), Some("JWT"));
    assert_refused(push(binary.http, &typed).await, 400, "invalid_request");
    assert_refused(
        push(binary.http, "this is not a JWT").await,
        400,
        "invalid_request",
    );
    let good_but_json = rsa.sign(&payload("bad-10", NOT_COMPLIANT));
    assert_refused(
        push_as(binary.http, "application/json", &good_but_json).await,
        415,
        "invalid_request",
    );
    let oversized = format!("{good_but_json}.{}", "A".repeat(1 << 20));
    assert_refused(push(binary.http, &oversized).await, 413, "invalid_request");
    assert!(
        !blocked_from(binary.dns, MAC).await,
        "no bad SET changed anything"
    );
    assert!(groups_of_mac(binary.http).await.is_empty());

    // A replayed jti is refused, however good its signature, and changes nothing.
    let replayed = push(binary.http, &first).await;
    assert_refused(replayed.clone(), 400, "invalid_request");
    assert!(
        replayed.1["description"]
            .as_str()
            .unwrap()
            .contains("already"),
        "{}",
        replayed.1
    );
    assert!(!blocked_from(binary.dns, MAC).await);

    // Every outcome counted, by issuer.
    let m = binary.http;
    for (issuer, result, n) in [
        (FILE_ISSUER, "applied", 2.0),
        (URL_ISSUER, "applied", 2.0),
        (FILE_ISSUER, "ignored", 1.0),
        (FILE_ISSUER, "authentication_failed", 1.0),
        (FILE_ISSUER, "invalid_key", 2.0),
        (FILE_ISSUER, "invalid_request", 3.0),
        (FILE_ISSUER, "invalid_audience", 1.0),
        (FILE_ISSUER, "replayed", 1.0),
        ("unknown", "invalid_issuer", 1.0),
        ("unknown", "invalid_request", 2.0),
        ("unknown", "unsupported_media_type", 1.0),
        ("unknown", "too_large", 1.0),
        (URL_ISSUER, "replayed", 0.0),
    ] {
        assert_eq!(
            metric(m, &series(issuer, result)).await,
            n,
            "{issuer} {result}"
        );
    }

    // After a restart the store still knows every jti: both the URL issuer's and the file's.
    binary.kill_9();
    binary.spawn().await;
    assert_refused(push(binary.http, &first).await, 400, "invalid_request");
    let again = ec.sign(&url_payload("e-1", NOT_COMPLIANT));
    assert_refused(push(binary.http, &again).await, 400, "invalid_request");
    assert!(
        !blocked_from(binary.dns, MAC).await,
        "{}",
        binary.log_text()
    );
    // A new jti still goes through.
    let (status, answer) = push(binary.http, &rsa.sign(&payload("jti-4", NOT_COMPLIANT))).await;
    assert_eq!(status, 202, "{answer}");
    assert!(blocked_from(binary.dns, MAC).await);
}

#[tokio::test]
async fn a_jwks_file_without_a_usable_key_stops_the_start() {
    let keys = tempfile::tempdir().unwrap();
    let jwks_file = keys.path().join("jwks.json");
    std::fs::write(&jwks_file, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let config = keys.path().join("cordon.toml");
    let text = format!(
        "[upstream]\nservers = [\"udp://127.0.0.1:53\"]\n\
         [ssf]\n[[ssf.issuer]]\nissuer = \"{FILE_ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n",
        jwks_file.display()
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no usable signature key"), "{stderr}");
}

#[tokio::test]
async fn a_jti_one_node_took_is_refused_by_another_sharing_its_store() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa, rsa_jwk) = rsa_signer(keys.path(), "rsa-1");
    let jwks_file = keys.path().join("idp-jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::json!({ "keys": [rsa_jwk] }).to_string(),
    )
    .unwrap();
    let extra = format!(
        "[ssf]\n[[ssf.issuer]]\nissuer = \"{FILE_ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{}\"\n",
        jwks_file.display()
    );
    let pg = crate::pg::PgServer::start().await;
    let url = pg.database("ssf").await;
    let store = format!("url = \"{url}\"\ntimeout_ms = 5000");
    let upstream = start_upstream().await;
    let one = Binary::start_on(upstream.addr, &store, &extra).await;
    let two = Binary::start_on(upstream.addr, &store, &extra).await;

    // The Mac is not known yet: the SET's subject creates it, by its serial.
    let token = rsa.sign(&payload("shared-1", NOT_COMPLIANT));
    let (status, answer) = push(one.http, &token).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["changes"], 1, "{answer}");
    assert_refused(push(two.http, &token).await, 400, "invalid_request");
    assert_eq!(
        metric(two.http, &series(FILE_ISSUER, "replayed")).await,
        1.0
    );
    let key = format!("ssf:{FILE_ISSUER}:not-compliant");
    assert_eq!(groups_of_mac(two.http).await, [key]);
}
