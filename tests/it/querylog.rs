//! The query log over real DNS: `blocked` logs only blocked queries and `all` every one; the
//! client is shown as its address, a keyed hash (the same across restarts with a key file) or
//! not at all; the file rotates by size and keeps `keep` old files; a full disk is counted while
//! DNS goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon::querylog::{ClientSetting, ModeSetting, QueryLogConfig};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

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
