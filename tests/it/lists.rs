//! Lists by URL: a local HTTPS server (rustls, a self-signed certificate given to Cordon as
//! `lists.ca_file`) serves list files with ETags and answers 304; Cordon fetches them, keeps the
//! last good copy on disk, and puts a changed list in force without a restart. Assertions are on
//! DNS answers, `/metrics` and `cordon check`'s output.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::support::*;

/// What the server answers for a path.
#[derive(Clone)]
struct Served {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Whether Content-Length is sent (else the body ends with the connection).
    length: bool,
}

impl Served {
    fn new(status: u16, content_type: &'static str, body: &[u8]) -> Served {
        Served {
            status,
            content_type,
            body: body.to_vec(),
            etag: None,
            last_modified: None,
            length: true,
        }
    }
}

/// One request the server saw: the path, its If-None-Match and If-Modified-Since, the status
/// answered.
type Seen = (String, Option<String>, Option<String>, u16);

/// An HTTPS server on 127.0.0.1 for list files; stops when dropped.
struct ListServer {
    addr: SocketAddr,
    /// The certificate, PEM: Cordon's `lists.ca_file`.
    ca_pem: String,
    routes: Arc<Mutex<HashMap<String, Served>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ListServer {
    async fn start() -> ListServer {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![cert.cert.der().clone()];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, r, s) = (acceptor.clone(), r.clone(), s.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls, &r, &s).await;
                    }
                });
            }
        });
        ListServer {
            addr,
            ca_pem: cert.cert.pem(),
            routes,
            seen,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn serve(&self, path: &str, status: u16, content_type: &'static str, body: &[u8], etag: &str) {
        let mut served = Served::new(status, content_type, body);
        served.etag = Some(format!("\"{etag}\""));
        self.route(path, served);
    }

    fn route(&self, path: &str, served: Served) {
        self.routes.lock().unwrap().insert(path.into(), served);
    }

    /// A list file, 200 text/plain, with this ETag.
    fn list(&self, path: &str, body: &str, etag: &str) {
        self.serve(
            path,
            200,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            etag,
        );
    }

    /// The requests for `path`: (If-None-Match, status).
    fn requests(&self, path: &str) -> Vec<(Option<String>, u16)> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(p, _, _, _)| p == path)
            .map(|(_, inm, _, status)| (inm.clone(), *status))
            .collect()
    }

    /// Waits until `path` was asked for with If-Modified-Since `date` and answered 304.
    async fn saw_304_since(&self, path: &str, date: &str) -> bool {
        let until = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < until {
            let seen = self.seen.lock().unwrap().clone();
            let found = seen.iter().any(|(p, _, since, status)| {
                p == path && since.as_deref() == Some(date) && *status == 304
            });
            if found {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request and answers it as the routes say (304 when If-None-Match is the ETag, or
/// If-Modified-Since the Last-Modified date).
async fn answer(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    routes: &Mutex<HashMap<String, Served>>,
    seen: &Mutex<Vec<Seen>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 << 10 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let header = |wanted: &str| {
        text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_string())
        })
    };
    let if_none_match = header("if-none-match");
    let if_modified_since = header("if-modified-since");
    let served = routes.lock().unwrap().get(&path).cloned();
    let served = served.unwrap_or(Served::new(404, "text/plain", b"not found\n"));
    let same_etag = served.etag.is_some() && if_none_match == served.etag;
    let same_date = served.last_modified.is_some() && if_modified_since == served.last_modified;
    let not_modified = served.status == 200 && (same_etag || same_date);
    let status = if not_modified { 304 } else { served.status };
    seen.lock()
        .unwrap()
        .push((path, if_none_match, if_modified_since, status));
    let mut response = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    if let Some(etag) = &served.etag {
        response.push_str(&format!("ETag: {etag}\r\n"));
    }
    if let Some(date) = &served.last_modified {
        response.push_str(&format!("Last-Modified: {date}\r\n"));
    }
    let body: &[u8] = if not_modified { b"" } else { &served.body };
    if !not_modified {
        response.push_str(&format!("Content-Type: {}\r\n", served.content_type));
    }
    if served.length || not_modified {
        response.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    response.push_str("\r\n");
    let _ = tls.write_all(response.as_bytes()).await;
    let _ = tls.write_all(body).await;
    let _ = tls.shutdown().await;
}

/// A config for the test policies with `urls` added to the malware category's lists, fetched
/// every second from `server` (trusted through `lists.ca_file`), copies under `lists-cache`.
fn config_with_lists(
    dir: &Path,
    upstream: &Upstream,
    server: &ListServer,
    urls: &[String],
) -> cordon::config::Config {
    let mut config = config(dir, &[upstream.addr]);
    add_lists(&config.policies.dir, urls);
    let ca = dir.join("lists-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    config.lists.ca_file = ca;
    config.lists.cache_dir = cache_dir(dir);
    config.lists.refresh_s = 1;
    config.lists.retry_s = 1;
    config.lists.timeout_ms = 5000;
    config.lists.max_bytes = 4096;
    config
}

fn cache_dir(dir: &Path) -> PathBuf {
    dir.join("lists-cache")
}

fn add_lists(policies: &Path, urls: &[String]) {
    let path = policies.join("categories.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "lists = [\"lists/malware.txt\"]";
    assert!(text.contains(from), "{text}");
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let to = format!("lists = [\"lists/malware.txt\", {}]", quoted.join(", "));
    std::fs::write(path, text.replace(from, &to)).unwrap();
}

/// Blocked as malware (NXDOMAIN with the category in the EDE), as a standard client sees it.
async fn blocked(dns: SocketAddr, name: &str) -> bool {
    let answer = ask(dns, name).await;
    rcode(&answer) == ResponseCode::NXDomain
        && ede(&answer).is_some_and(|(_, text)| text.contains("malware"))
}

async fn resolves(dns: SocketAddr, name: &str) -> bool {
    rcode(&ask(dns, name).await) == ResponseCode::NoError
}

fn fetches(url: &str, result: &str) -> String {
    format!("cordon_list_fetch_total{{list=\"{url}\",result=\"{result}\"}}")
}

/// Whether `/metrics` has a series that starts with `series` (whatever its value).
async fn has_series(http_addr: SocketAddr, series: &str) -> bool {
    let (_, text) = http(http_addr, "GET", "/metrics", None).await;
    text.lines().any(|l| l.starts_with(series))
}

const WAIT: Duration = Duration::from_secs(20);

/// Polls `/metrics` until `series` is at least `at_least`, or [`WAIT`] passes.
async fn metric_reaches(http_addr: SocketAddr, series: &str, at_least: f64) -> bool {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        if metric(http_addr, series).await >= at_least {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn lists_by_url_are_fetched_kept_on_304_and_a_change_is_enforced_without_restart() {
    let upstream = start_upstream().await;
    let server = ListServer::start().await;
    server.list("/feed.txt", "# a feed\n0.0.0.0 x.mdm.test\n", "v1");
    let url = server.url("/feed.txt");
    // a server that gives Last-Modified and no ETag
    const DATE: &str = "Sun, 29 Nov 2026 20:00:00 GMT";
    let mut dated = Served::new(200, "text/plain", b"edge.cdnprovider.test\n");
    dated.last_modified = Some(DATE.into());
    server.route("/dated.txt", dated);
    let urls = [url.clone(), server.url("/dated.txt")];
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_lists(dir.path(), &upstream, &server, &urls);
    let cordon = start_cordon_with(dir, config).await;

    // first fetch: the listed name is blocked, the file list still applies
    assert!(eventually(WAIT, || blocked(cordon.dns, "x.mdm.test.")).await);
    assert!(blocked(cordon.dns, "evil.test.").await);
    assert_eq!(metric(cordon.http, &fetches(&url, "updated")).await, 1.0);
    let first = server.requests("/feed.txt");
    assert_eq!(first[0], (None, 200), "the first fetch is not conditional");

    // the next fetches are conditional: 304, and the copy stays in force
    assert!(metric_reaches(cordon.http, &fetches(&url, "not_modified"), 2.0).await);
    assert!(server
        .requests("/feed.txt")
        .contains(&(Some("\"v1\"".into()), 304)));
    assert!(blocked(cordon.dns, "x.mdm.test.").await);
    assert_eq!(metric(cordon.http, &fetches(&url, "updated")).await, 1.0);
    // If-Modified-Since, from a server that gives Last-Modified and no ETag
    assert!(eventually(WAIT, || blocked(cordon.dns, "edge.cdnprovider.test.")).await);
    assert!(server.saw_304_since("/dated.txt", DATE).await);
    assert!(blocked(cordon.dns, "edge.cdnprovider.test.").await);
    let age = format!("cordon_list_age_seconds{{list=\"{url}\"}}");
    assert!(
        has_series(cordon.http, &age).await,
        "the copy's age is exported"
    );
    let version = metric(cordon.http, "cordon_snapshot_version").await;

    // a changed list is in force without a restart
    server.list("/feed.txt", "api.vendor.test\n", "v2");
    assert!(eventually(WAIT, || blocked(cordon.dns, "api.vendor.test.")).await);
    assert!(
        resolves(cordon.dns, "x.mdm.test.").await,
        "gone from the list"
    );
    assert_eq!(metric(cordon.http, &fetches(&url, "updated")).await, 2.0);
    assert!(metric(cordon.http, "cordon_snapshot_version").await > version);
    assert_eq!(
        metric(cordon.http, "cordon_config_reload_total{result=\"error\"}").await,
        0.0
    );
    // the copy is on disk with its validators
    let cached = std::fs::read_dir(cache_dir(cordon.dir.path()))
        .unwrap()
        .count();
    assert_eq!(cached, 4, "two lists and their records");
}

#[tokio::test]
async fn a_failed_or_malformed_fetch_keeps_the_copy_in_force() {
    let upstream = start_upstream().await;
    let server = ListServer::start().await;
    server.list("/gone.txt", "x.mdm.test\n", "v1");
    server.list("/big.txt", "api.vendor.test\n", "v1");
    server.list("/html.txt", "edge.cdnprovider.test\n", "v1");
    server.list("/empty.txt", "login.phish.test\n", "v1");
    server.list("/stream.txt", "www.allowed.test\n", "v1");
    // nothing listens there
    let unreachable = format!("https://127.0.0.1:{}/feed.txt", free_port());
    let paths = [
        "/gone.txt",
        "/big.txt",
        "/html.txt",
        "/empty.txt",
        "/stream.txt",
    ];
    let urls: Vec<String> = paths
        .iter()
        .map(|p| server.url(p))
        .chain([unreachable.clone()])
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_lists(dir.path(), &upstream, &server, &urls);
    let cordon = start_cordon_with(dir, config).await;
    let names = [
        "x.mdm.test.",
        "api.vendor.test.",
        "edge.cdnprovider.test.",
        "login.phish.test.",
        "www.allowed.test.",
    ];
    for name in names {
        assert!(
            eventually(WAIT, || blocked(cordon.dns, name)).await,
            "{name}"
        );
    }
    // the unreachable list has no copy: it is counted and has no age, and the rest work
    assert!(metric(cordon.http, &fetches(&unreachable, "unreachable")).await >= 1.0);
    let no_age = format!("cordon_list_age_seconds{{list=\"{unreachable}\"}}");
    assert!(!has_series(cordon.http, &no_age).await);

    // now every server answer is bad, each its own way
    server.serve("/gone.txt", 404, "text/plain", b"not found\n", "v2");
    let big = "a-listed-name.example\n".repeat(300);
    server.list("/big.txt", &big, "v2");
    let page = b"<!DOCTYPE html>\n<html><body><h1>Service unavailable</h1></body></html>\n";
    server.serve("/html.txt", 200, "text/html; charset=utf-8", page, "v2");
    server.list("/empty.txt", "# nothing here today\n", "v2");
    // over the cap with no Content-Length: the body is cut at the cap as it streams
    let mut streamed = Served::new(200, "text/plain", big.as_bytes());
    streamed.etag = Some("\"v2\"".into());
    streamed.length = false;
    server.route("/stream.txt", streamed);
    for (path, result) in [
        ("/stream.txt", "too_large"),
        ("/gone.txt", "http_error"),
        ("/big.txt", "too_large"),
        ("/html.txt", "malformed"),
        ("/empty.txt", "malformed"),
    ] {
        let series = fetches(&server.url(path), result);
        assert!(metric_reaches(cordon.http, &series, 1.0).await, "{series}");
    }
    // every copy stays in force
    for name in names {
        assert!(blocked(cordon.dns, name).await, "{name}");
    }
    for path in paths {
        let age = format!("cordon_list_age_seconds{{list=\"{}\"}}", server.url(path));
        assert!(has_series(cordon.http, &age).await, "{age}");
    }
    assert_eq!(
        metric(cordon.http, "cordon_config_reload_total{result=\"error\"}").await,
        0.0
    );
}

#[tokio::test]
async fn a_restart_without_network_serves_the_cached_copy() {
    let upstream = start_upstream().await;
    let server = ListServer::start().await;
    server.list("/feed.txt", "x.mdm.test\n", "v1");
    let url = server.url("/feed.txt");
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_lists(dir.path(), &upstream, &server, std::slice::from_ref(&url));
    let cordon = start_cordon_with(dir, config).await;
    assert!(eventually(WAIT, || blocked(cordon.dns, "x.mdm.test.")).await);

    drop(server);
    let cordon = cordon.restart().await;
    // in force from the first answer: the copy was read before the listeners opened
    assert!(blocked(cordon.dns, "x.mdm.test.").await);
    assert!(metric_reaches(cordon.http, &fetches(&url, "unreachable"), 1.0).await);
    assert!(blocked(cordon.dns, "x.mdm.test.").await);
    let age = format!("cordon_list_age_seconds{{list=\"{url}\"}}");
    assert!(has_series(cordon.http, &age).await);
}

/// `cordon check` (with `--fetch` when asked) on the test policies plus `url`; its exit status
/// and output.
async fn check(dir: &Path, fetch: bool) -> (Option<i32>, String) {
    let config = dir.join("cordon.toml");
    let mut args = vec!["check".to_string(), "--config".into()];
    args.push(config.display().to_string());
    if fetch {
        args.push("--fetch".into());
    }
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(args)
            .output()
            .expect("cordon check runs")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[tokio::test]
async fn check_reads_the_cached_copy_and_fetches_only_when_asked() {
    let server = ListServer::start().await;
    server.list("/feed.txt", "x.mdm.test\n", "v1");
    let url = server.url("/feed.txt");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(&policies);
    add_lists(&policies, std::slice::from_ref(&url));
    std::fs::write(dir.path().join("ca.pem"), &server.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("cordon.toml"),
        "[upstream]\nservers = [\"192.0.2.53\"]\n[policies]\ndir = \"policies\"\n\
         [lists]\nca_file = \"ca.pem\"\n",
    )
    .unwrap();

    let (code, text) = check(dir.path(), false).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{url}: no cached copy")), "{text}");
    assert!(
        server.requests("/feed.txt").is_empty(),
        "check alone never fetches"
    );

    let (code, text) = check(dir.path(), true).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("{url}: fetched a new copy")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{url}: 1 entry, 0 exceptions")),
        "{text}"
    );
    assert_eq!(server.requests("/feed.txt").len(), 1);
    assert!(dir.path().join("lists-cache").is_dir(), "beside the config");

    let (code, text) = check(dir.path(), false).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("1 entry") && text.contains("not fetched: cached copy"),
        "{text}"
    );
    assert_eq!(server.requests("/feed.txt").len(), 1);

    // a failed fetch fails the check, names the reason, and the copy stays
    server.serve("/feed.txt", 404, "text/plain", b"not found\n", "v2");
    let (code, text) = check(dir.path(), true).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("{url}: fetch failed: HTTP 404")),
        "{text}"
    );
    assert!(text.contains(&format!("{url}: 1 entry")), "{text}");
    let (code, text) = check(dir.path(), false).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("failed: HTTP 404"), "{text}");
}
