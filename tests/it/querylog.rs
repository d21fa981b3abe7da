//! The query log over real DNS: `blocked` logs only blocked queries and `all` every one; the
//! client is shown as its address, a keyed hash (the same across restarts with a key file) or
//! not at all; the file rotates by size and keeps `keep` old files; a full disk is counted while
//! DNS goes on. dnstap goes to a real collector (`fstrm_capture`, over a Unix socket and over
//! TCP) and is read back with BIND's `dnstap-read`; a collector that is killed and started again
//! gets the queries asked after it is back, and DNS answers meanwhile. `cordon check` names a
//! mistake in `[query_log]` and describes a good one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prost::Message as _;

use cordon::querylog::{ClientSetting, Dnstap, ModeSetting, OutputSetting, QueryLogConfig};

use crate::support::*;

/// Cordon with `[query_log]` as `edit` makes it (paths relative to the temp dir).
async fn cordon_logging(
    upstream: &Upstream,
    edit: impl FnOnce(&mut QueryLogConfig, &Path),
) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.base_dir = dir.path().to_path_buf();
    edit(&mut config.query_log, dir.path());
    start_cordon_with(dir, config).await
}

fn to_file(log: &mut QueryLogConfig, mode: ModeSetting, client: ClientSetting) {
    log.mode = mode;
    log.client = client;
    log.output = OutputSetting::File;
    log.file = "queries.jsonl".into();
}

/// The JSON lines of `path` (none when it does not exist).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the log file holds at least `n` lines, and returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let found = eventually(Duration::from_secs(5), || async { lines(path).len() >= n }).await;
    let got = lines(path);
    assert!(found, "{n} lines in {}: {got:#?}", path.display());
    got
}

fn names(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().map(|l| l["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn blocked_mode_logs_only_blocked_queries_with_decision_and_reason() {
    let upstream = start_upstream().await;
    let cordon = cordon_logging(&upstream, |log, _| {
        to_file(log, ModeSetting::Blocked, ClientSetting::Address)
    })
    .await;
    let file = cordon.dir.path().join("queries.jsonl");
    assert_eq!(
        rcode(&ask(cordon.dns, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
    let tcp = Ask {
        tcp: true,
        ..Ask::default()
    };
    ask_with(cordon.dns, "tracker.ads.test.", RecordType::AAAA, tcp).await;
    // from the isolated device's bound address: its isolation policy blocks this name
    assert!(blocked_from(cordon.dns, [127, 0, 0, 3]).await);
    let got = wait_lines(&file, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_later = lines(&file);
    assert_eq!(got_later.len(), 3, "only the blocked: {got_later:#?}");
    assert_eq!(
        names(&got),
        ["evil.test", "tracker.ads.test", "www.allowed.test"]
    );
    let evil = &got[0];
    assert_eq!(evil["client"], "127.0.0.1");
    assert!(evil.get("client_hash").is_none());
    assert!(evil["device"].is_null());
    assert_eq!(evil["type"], "A");
    assert_eq!(evil["transport"], "udp");
    assert_eq!(evil["decision"], "blocked");
    assert_eq!(
        evil["reason"],
        "category malware (policy standard, group standard)"
    );
    assert_eq!(evil["group"], "standard");
    assert_eq!(evil["rcode"], "NXDOMAIN");
    assert!(evil["duration_ms"].as_f64().unwrap() >= 0.0);
    let time = evil["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "{time}"
    );
    let ads = &got[1];
    assert_eq!(
        (&ads["type"], &ads["transport"]),
        (&"AAAA".into(), &"tcp".into())
    );
    assert_eq!(
        ads["reason"],
        "category ads (policy standard, group standard)"
    );
    let isolated = &got[2];
    assert_eq!(isolated["client"], "127.0.0.3");
    assert!(
        isolated["device"].as_str().unwrap().starts_with("device#"),
        "{isolated}"
    );
    assert_eq!(isolated["group"], "restricted");
    assert_eq!(
        isolated["reason"],
        "not on the allow-list (policy isolation, group restricted)"
    );
    let written = metric(
        cordon.http,
        "cordon_query_log_written_total{output=\"file\"}",
    )
    .await;
    assert_eq!(written, 3.0);
    let (_, text) = http(cordon.http, "GET", "/metrics", None).await;
    let gauge = text
        .lines()
        .find(|l| l.starts_with("cordon_dnstap_connected"));
    assert_eq!(gauge, None, "no dnstap, no dnstap gauge");
}

#[tokio::test]
async fn all_mode_logs_every_query_and_a_keyed_hash_is_stable_across_restarts() {
    let upstream = start_upstream().await;
    let cordon = cordon_logging(&upstream, |log, dir| {
        to_file(log, ModeSetting::All, ClientSetting::Hash);
        std::fs::write(dir.join("hash.key"), "a-secret-key-of-32-random-bytes!\n").unwrap();
        log.hash_key_file = "hash.key".into();
    })
    .await;
    let file = cordon.dir.path().join("queries.jsonl");
    ask_from(cordon.dns, [127, 0, 0, 1], "www.allowed.test.").await;
    ask_from(cordon.dns, [127, 0, 0, 1], "evil.test.").await;
    ask_from(cordon.dns, [127, 0, 0, 2], "www.allowed.test.").await;
    let got = wait_lines(&file, 3).await;
    assert_eq!(
        names(&got),
        ["www.allowed.test", "evil.test", "www.allowed.test"]
    );
    assert_eq!(got[0]["decision"], "allowed");
    assert_eq!(got[0]["rcode"], "NOERROR");
    assert_eq!(
        got[0]["reason"],
        "default allow (policy standard, group standard)"
    );
    assert_eq!(got[1]["decision"], "blocked");
    for line in &got {
        assert!(line.get("client").is_none(), "no address: {line}");
        let hash = line["client_hash"].as_str().unwrap();
        assert!(
            hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{hash}"
        );
    }
    assert_eq!(
        got[0]["client_hash"], got[1]["client_hash"],
        "one client, one hash"
    );
    assert_ne!(got[0]["client_hash"], got[2]["client_hash"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("127.0.0."), "{text}");
    // the same key after a restart: the same hash
    let first = got[0]["client_hash"].clone();
    let cordon = cordon.restart().await;
    ask_from(cordon.dns, [127, 0, 0, 1], "short.allowed.test.").await;
    let got = wait_lines(&file, 4).await;
    assert_eq!(got[3]["name"], "short.allowed.test");
    assert_eq!(got[3]["client_hash"], first);
}

#[tokio::test]
async fn client_none_logs_no_client_at_all() {
    let upstream = start_upstream().await;
    let cordon = cordon_logging(&upstream, |log, _| {
        to_file(log, ModeSetting::All, ClientSetting::None)
    })
    .await;
    let file = cordon.dir.path().join("queries.jsonl");
    ask_from(cordon.dns, [127, 0, 0, 3], "x.mdm.test.").await;
    let got = wait_lines(&file, 1).await;
    assert!(got[0].get("client").is_none() && got[0].get("client_hash").is_none());
    assert!(got[0]["device"].as_str().unwrap().starts_with("device#"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("127.0.0.3"), "{text}");
}

#[tokio::test]
async fn the_file_rotates_by_size_and_keeps_keep_files() {
    let upstream = start_upstream().await;
    let cordon = cordon_logging(&upstream, |log, _| {
        to_file(log, ModeSetting::All, ClientSetting::Address);
        log.max_size_mb = 0.001; // 1048 bytes: about five lines
        log.keep = 2;
    })
    .await;
    let file = cordon.dir.path().join("queries.jsonl");
    let rotated = |n: usize| PathBuf::from(format!("{}.{n}", file.display()));
    for i in 0..30 {
        // one at a time, so that the writer sees several batches
        ask(cordon.dns, &format!("q{i}.allowed.test.")).await;
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let series = "cordon_query_log_written_total{output=\"file\"}";
    let all = eventually(Duration::from_secs(5), || async {
        metric(cordon.http, series).await == 30.0
    })
    .await;
    assert!(all, "30 records written");
    assert!(
        rotated(1).exists() && rotated(2).exists(),
        "rotated twice at least"
    );
    assert!(!rotated(3).exists(), "keep = 2");
    let (current, one, two) = (lines(&file), lines(&rotated(1)), lines(&rotated(2)));
    for path in [file.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 1048, "{}: {size} bytes", path.display());
    }
    // the newest lines are in the file, the ones before in .1, then .2, in order
    let kept: Vec<&str> = [&two, &one, &current]
        .into_iter()
        .flat_map(|l| names(l))
        .collect();
    let expected: Vec<String> = (30 - kept.len()..30)
        .map(|i| format!("q{i}.allowed.test"))
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(
        metric(
            cordon.http,
            "cordon_query_log_errors_total{kind=\"rotate\"}"
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn a_full_disk_is_counted_and_dns_goes_on() {
    let upstream = start_upstream().await;
    let cordon = cordon_logging(&upstream, |log, dir| {
        to_file(log, ModeSetting::All, ClientSetting::Address);
        // writing to /dev/full fails with ENOSPC, as a full disk does
        std::os::unix::fs::symlink("/dev/full", dir.join("queries.jsonl")).unwrap();
    })
    .await;
    for i in 0..5 {
        let answer = ask(cordon.dns, "www.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NoError, "query {i}");
        assert_eq!(addresses(&answer), [std::net::Ipv4Addr::new(192, 0, 2, 1)]);
    }
    let failed = "cordon_query_log_dropped_total{reason=\"failed\"}";
    let counted = eventually(Duration::from_secs(5), || async {
        metric(cordon.http, failed).await == 5.0
    })
    .await;
    assert!(
        counted,
        "5 records lost: {}",
        metric(cordon.http, failed).await
    );
    let errors = metric(cordon.http, "cordon_query_log_errors_total{kind=\"write\"}").await;
    assert!(errors >= 1.0, "{errors}");
    assert_eq!(
        metric(
            cordon.http,
            "cordon_query_log_written_total{output=\"file\"}"
        )
        .await,
        0.0
    );
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn a_log_file_that_cannot_be_opened_stops_the_start_with_its_path() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.query_log.mode = ModeSetting::All;
    config.query_log.file = dir.path().join("no-such-dir/queries.jsonl");
    let error = match cordon::app::start(config).await {
        Ok(_) => panic!("started with a log file it cannot open"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("query_log.file") && error.contains("no-such-dir"),
        "{error}"
    );
}

/// A real dnstap collector: `fstrm_capture` writing the frames it receives to a file.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(listen: &[&str], file: PathBuf) -> Capture {
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap"])
            .args(listen)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture (Debian package fstrm-bin) is installed");
        Capture { child, file }
    }

    async fn unix(socket: &Path, file: PathBuf) -> Capture {
        let capture = Capture::start(&["-u", socket.to_str().unwrap()], file);
        let bound = eventually(Duration::from_secs(5), || async { socket.exists() }).await;
        assert!(bound, "fstrm_capture listens on {}", socket.display());
        capture
    }

    fn tcp(port: u16, file: PathBuf) -> Capture {
        Capture::start(&["-a", "127.0.0.1", "-p", &port.to_string()], file)
    }

    /// Stops the collector as an operator would (SIGTERM: it closes its file), and returns
    /// the file.
    fn stop(mut self) -> PathBuf {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        self.file.clone()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the process this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dnstap-read` of `file` (short form, or YAML with `yaml`).
fn dnstap_read(file: &Path, yaml: bool) -> String {
    let mut command = Command::new("dnstap-read");
    if yaml {
        command.arg("-y");
    }
    let out = command
        .arg(file)
        .output()
        .expect("dnstap-read (Debian package bind9-dnsutils) is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The Dnstap payloads of a Frame Streams file, decoded.
fn payloads(file: &Path) -> Vec<Dnstap> {
    let bytes = std::fs::read(file).unwrap();
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        rest = &rest[4..];
        if len == 0 {
            // a control frame: its length, then its body
            let clen = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            rest = &rest[4 + clen..];
            continue;
        }
        out.push(Dnstap::decode(&rest[..len]).unwrap());
        rest = &rest[len..];
    }
    out
}

fn extras(file: &Path) -> Vec<String> {
    payloads(file)
        .into_iter()
        .map(|d| String::from_utf8(d.extra.unwrap_or_default()).unwrap())
        .collect()
}

async fn wait_connected(cordon: &Cordon, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    let seen = eventually(Duration::from_secs(10), || async {
        metric(cordon.http, "cordon_dnstap_connected").await == want
    })
    .await;
    assert!(seen, "cordon_dnstap_connected {want}");
}

async fn wait_written(cordon: &Cordon, n: f64) {
    let series = "cordon_query_log_written_total{output=\"dnstap\"}";
    let seen = eventually(Duration::from_secs(10), || async {
        metric(cordon.http, series).await >= n
    })
    .await;
    assert!(
        seen,
        "{n} records sent: {}",
        metric(cordon.http, series).await
    );
}

#[tokio::test]
async fn dnstap_over_a_unix_socket_is_read_back_by_dnstap_read() {
    let upstream = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("dnstap.sock");
    let capture = Capture::unix(&socket, tmp.path().join("capture.fstrm")).await;
    let cordon = cordon_logging(&upstream, |log, _| {
        log.mode = ModeSetting::All;
        log.output = OutputSetting::Dnstap;
        log.dnstap.unix = socket.clone();
        log.dnstap.identity = "cordon-test".into();
    })
    .await;
    wait_connected(&cordon, true).await;
    assert_eq!(
        rcode(&ask(cordon.dns, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
    wait_written(&cordon, 2.0).await;
    // Cordon ends the stream (STOP, FINISH), then the collector closes its file.
    drop(cordon);
    let file = capture.stop();
    let short = dnstap_read(&file, false);
    let lines: Vec<&str> = short.lines().collect();
    assert_eq!(lines.len(), 4, "{short}");
    for (line, (kind, name)) in lines.iter().zip([
        ("CQ", "www.allowed.test/IN/A"),
        ("CR", "www.allowed.test/IN/A"),
        ("CQ", "evil.test/IN/A"),
        ("CR", "evil.test/IN/A"),
    ]) {
        assert!(line.contains(&format!(" {kind} ")), "{kind} in {line}");
        assert!(line.contains(name), "{name} in {line}");
        assert!(line.contains("127.0.0.1"), "the client's address in {line}");
        assert!(line.contains("UDP"), "{line}");
    }
    let yaml = dnstap_read(&file, true);
    for want in [
        "type: CLIENT_QUERY",
        "type: CLIENT_RESPONSE",
        "identity: cordon-test",
        &format!("version: cordon {}", env!("CARGO_PKG_VERSION")),
        "socket_family: INET",
        "socket_protocol: UDP",
        "query_address: \"127.0.0.1\"",
        "evil.test.",
        "status: NXDOMAIN",
    ] {
        assert!(yaml.contains(want), "{want} in {yaml}");
    }
    // The client's port, as the query came from it (an ephemeral one: not 0).
    let ports: Vec<u32> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("query_port: "))
        .map(|p| p.trim().parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 4, "{yaml}");
    assert!(ports.iter().all(|&p| p > 0), "{ports:?}");
    let extras = extras(&file);
    assert_eq!(extras.len(), 4);
    assert_eq!(
        extras[0],
        "cordon decision=allowed reason=\"default allow (policy standard, group standard)\""
    );
    assert_eq!(
        extras[3],
        "cordon decision=blocked reason=\"category malware (policy standard, group standard)\""
    );
}

#[tokio::test]
async fn dnstap_over_tcp_with_hashed_clients() {
    let upstream = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let capture = Capture::tcp(port, tmp.path().join("capture.fstrm"));
    let cordon = cordon_logging(&upstream, |log, _| {
        log.mode = ModeSetting::Blocked;
        log.client = ClientSetting::Hash;
        log.output = OutputSetting::Dnstap;
        log.dnstap.tcp = format!("127.0.0.1:{port}");
    })
    .await;
    wait_connected(&cordon, true).await;
    ask(cordon.dns, "www.allowed.test.").await;
    ask(cordon.dns, "c2.test.").await;
    wait_written(&cordon, 1.0).await;
    drop(cordon);
    let file = capture.stop();
    let short = dnstap_read(&file, false);
    assert_eq!(short.lines().count(), 2, "the blocked query only: {short}");
    assert!(short.contains("c2.test/IN/A"), "{short}");
    assert!(!short.contains("127.0.0.1"), "no client address: {short}");
    let extras = extras(&file);
    assert!(extras[0].starts_with("cordon decision=blocked reason=\"category malware"));
    let hash = extras[0].rsplit_once(" client_hash=").unwrap().1;
    assert_eq!(hash.len(), 16, "{}", extras[0]);
}

#[tokio::test]
async fn a_collector_that_restarts_gets_the_queries_after_it_is_back() {
    let upstream = start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("dnstap.sock");
    let first = Capture::unix(&socket, tmp.path().join("first.fstrm")).await;
    let cordon = cordon_logging(&upstream, |log, _| {
        log.mode = ModeSetting::All;
        log.output = OutputSetting::Dnstap;
        log.dnstap.unix = socket.clone();
    })
    .await;
    wait_connected(&cordon, true).await;
    ask(cordon.dns, "www.allowed.test.").await;
    wait_written(&cordon, 1.0).await;
    // the collector dies
    first.signal(libc::SIGKILL);
    drop(first);
    wait_connected(&cordon, false).await;
    // DNS does not notice
    for _ in 0..3 {
        assert_eq!(
            rcode(&ask(cordon.dns, "evil.test.").await),
            ResponseCode::NXDomain
        );
    }
    let closed = metric(
        cordon.http,
        "cordon_query_log_errors_total{kind=\"closed\"}",
    )
    .await;
    assert_eq!(closed, 1.0);
    let connect = "cordon_query_log_errors_total{kind=\"connect\"}";
    let retried = eventually(Duration::from_secs(5), || async {
        metric(cordon.http, connect).await >= 1.0
    })
    .await;
    assert!(
        retried,
        "connecting again fails while the collector is down"
    );
    // it is back, on the same socket, writing a new file
    let _ = std::fs::remove_file(&socket);
    let second = Capture::unix(&socket, tmp.path().join("second.fstrm")).await;
    wait_connected(&cordon, true).await;
    ask(cordon.dns, "short.allowed.test.").await;
    wait_written(&cordon, 5.0).await;
    drop(cordon);
    let file = second.stop();
    let short = dnstap_read(&file, false);
    assert!(short.contains("short.allowed.test/IN/A"), "{short}");
    // what was asked while it was down waited in the queue and came through too
    assert_eq!(short.matches("evil.test/IN/A").count(), 6, "{short}");
}

#[tokio::test]
async fn cordon_check_names_a_query_log_mistake_and_describes_a_good_log() {
    let dir = tempfile::tempdir().unwrap();
    write_policies(&dir.path().join("policies"));
    std::fs::write(
        dir.path().join("hash.key"),
        "0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let check = |log: &str| {
        let config = dir.path().join("cordon.toml");
        let text = format!("[upstream]\nservers = [\"udp://127.0.0.1:53\"]\n[query_log]\n{log}");
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(
        "mode = \"all\"\noutput = \"dnstap\"\n[query_log.dnstap]\n\
         unix = \"/run/dnstap.sock\"\ntcp = \"127.0.0.1:6000\"\n",
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("query_log.dnstap: unix and tcp are both set"),
        "{text}"
    );
    let (ok, text) = check("mode = \"blocked\"\nclient = \"hash\"\nhash_key_file = \"missing.key\"\nfile = \"q.jsonl\"\n");
    assert!(!ok, "{text}");
    assert!(
        text.contains("query_log.hash_key_file") && text.contains("missing.key"),
        "{text}"
    );
    let (ok, text) = check(
        "mode = \"blocked\"\nclient = \"hash\"\nhash_key_file = \"hash.key\"\nfile = \"q.jsonl\"\n",
    );
    assert!(ok, "{text}");
    let want = format!(
        "query log: blocked queries with clients as keyed hashes, JSON lines to {}",
        dir.path().join("q.jsonl").display()
    );
    assert!(text.contains(&want), "{text}");
}
