//! The DNS trail over real DNS and the real API: an isolated device's queries are recorded and
//! read back a page at a time, exported and summarised with command-and-control names first; a
//! device a responder watches is recorded, one nobody watches is not; old records go with the
//! retention; a full queue drops and counts, and DNS answers all the same.

use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::support::*;

const MAC: [u8; 4] = [127, 0, 0, 7];
const SERIAL: &str = "C02ZK1ABMD6T";

async fn cordon_with(
    upstream: &Upstream,
    edit: impl FnOnce(&mut cordon::config::Config),
) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    edit(&mut config);
    let cordon = start_cordon_with(dir, config).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    cordon
}

async fn isolate(cordon: &Cordon) {
    let path = format!("/v1/devices/{SERIAL}/isolation");
    let hold = r#"{"reason":"EDR alert","ticket":"IR-14"}"#;
    let (status, body) = http_json(cordon.http, "POST", &path, Some(RESPONDER), hold).await;
    assert_eq!(status, 200, "{body}");
}

async fn get_json(cordon: &Cordon, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(cordon.http, "GET", path, Some(VIEWER)).await;
    let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (status, value)
}

/// The names on the first page of the device's trail, oldest first.
async fn names_now(cordon: &Cordon) -> Vec<String> {
    let path = format!("/v1/devices/{SERIAL}/queries?limit=1000");
    let (_, page) = get_json(cordon, &path).await;
    page["queries"]
        .as_array()
        .map(|q| {
            q.iter()
                .map(|r| r["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The names in the device's trail once it holds `n` records or `deadline` passed.
async fn names_when(
    cordon: &Cordon,
    deadline: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let names = names_now(cordon).await;
        if done(&names) || tokio::time::Instant::now() >= until {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn trail_names(cordon: &Cordon, n: usize) -> Vec<String> {
    names_when(cordon, Duration::from_secs(5), |names| names.len() >= n).await
}

#[tokio::test]
async fn an_isolated_devices_queries_are_read_back_paged_exported_and_summarised() {
    let upstream = start_upstream().await;
    let cordon = cordon_with(&upstream, |_| {}).await;
    // Before the isolation nothing of this device is recorded.
    assert_eq!(
        rcode(&ask_from(cordon.dns, MAC, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    isolate(&cordon).await;
    let asked = [
        ("www.allowed.test.", ResponseCode::NXDomain),
        ("c2.test.", ResponseCode::NXDomain),
        ("x.mdm.test.", ResponseCode::NoError),
        ("c2.test.", ResponseCode::NXDomain),
        ("social.test.", ResponseCode::NXDomain),
    ];
    for (name, expected) in asked {
        assert_eq!(
            rcode(&ask_from(cordon.dns, MAC, name).await),
            expected,
            "{name}"
        );
    }
    // Another device's queries are not this one's trail.
    ask_from(cordon.dns, [127, 0, 0, 99], "evil.test.").await;
    let names = trail_names(&cordon, 5).await;
    assert_eq!(
        names,
        [
            "www.allowed.test",
            "c2.test",
            "x.mdm.test",
            "c2.test",
            "social.test"
        ]
    );

    let (status, page) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/queries")).await;
    assert_eq!(status, 200, "{page}");
    let first = &page["queries"][1];
    assert_eq!(first["name"], "c2.test", "{page}");
    assert_eq!(first["type"], "A");
    assert_eq!(first["transport"], "udp");
    assert_eq!(first["source"], "127.0.0.7");
    assert_eq!(first["decision"], "blocked");
    assert_eq!(first["group"], "restricted");
    assert_eq!(first["rcode"], "NXDOMAIN");
    assert_eq!(
        first["security"], true,
        "c2.test is listed as malware: {first}"
    );
    assert_eq!(first["categories"], serde_json::json!(["malware"]));
    let reason = first["reason"].as_str().unwrap();
    assert!(reason.contains("not on the allow-list"), "{reason}");
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    let allowed = &page["queries"][2];
    assert_eq!(
        (allowed["decision"].as_str(), allowed["rcode"].as_str()),
        (Some("allowed"), Some("NOERROR"))
    );
    assert!(page["next"].is_null(), "one page holds all: {page}");

    // Paging: two at a time, the cursor leading on, the last page without one.
    let mut seen = Vec::new();
    let mut path = format!("/v1/devices/{SERIAL}/queries?limit=2");
    loop {
        let (status, page) = get_json(&cordon, &path).await;
        assert_eq!(status, 200, "{page}");
        for q in page["queries"].as_array().unwrap() {
            seen.push(q["name"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/devices/{SERIAL}/queries?limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, names);
    let (_, page) = get_json(
        &cordon,
        &format!("/v1/devices/{SERIAL}/queries?decision=allowed"),
    )
    .await;
    assert_eq!(page["queries"].as_array().unwrap().len(), 1, "{page}");

    // Bad input: a malformed cursor, another device's cursor, a bad decision or since.
    let (_, page) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/queries?limit=1")).await;
    let cursor = page["next"].as_str().unwrap().to_string();
    let other = "serial:C02OTHERDEV1";
    let groups = r#"{"groups":[]}"#;
    let (status, body) = http_json(
        cordon.http,
        "PUT",
        &format!("/v1/devices/{other}/groups"),
        Some(ADMIN),
        groups,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (device, query, field) in [
        (SERIAL, "cursor=not-a-cursor".to_string(), "cursor"),
        (other, format!("cursor={cursor}"), "cursor"),
        (SERIAL, "decision=maybe".to_string(), "decision"),
        (SERIAL, "since=yesterday".to_string(), "since"),
        (SERIAL, "limit=0".to_string(), "limit"),
    ] {
        let path = format!("/v1/devices/{device}/queries?{query}");
        let (status, body) = http(cordon.http, "GET", &path, Some(VIEWER)).await;
        assert_json_error(status, &body, 400);
        assert!(body.contains(field), "{path}: {body}");
    }
    let path = format!("/v1/devices/{other}/queries?cursor={cursor}");
    let (_, body) = http(cordon.http, "GET", &path, Some(VIEWER)).await;
    assert!(body.contains("another device"), "{body}");
    let (status, body) = http(
        cordon.http,
        "GET",
        "/v1/devices/C02NOSUCH/queries",
        Some(VIEWER),
    )
    .await;
    assert_json_error(status, &body, 404);
    let (status, _) = http(
        cordon.http,
        "GET",
        &format!("/v1/devices/{SERIAL}/queries"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // The export: every record, one JSON object a line.
    let (status, body) = http(
        cordon.http,
        "GET",
        &format!("/v1/devices/{SERIAL}/queries.ndjson"),
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(exported, names);

    // The summary: the command-and-control name first, with its count.
    let (status, summary) =
        get_json(&cordon, &format!("/v1/devices/{SERIAL}/queries/summary")).await;
    assert_eq!(status, 200, "{summary}");
    let top = &summary["names"][0];
    assert_eq!(
        (
            top["name"].as_str(),
            top["count"].as_i64(),
            top["security"].as_bool()
        ),
        (Some("c2.test"), Some(2), Some(true)),
        "{summary}"
    );
    assert_eq!(summary["names"].as_array().unwrap().len(), 4, "{summary}");

    // The timeline shows the queries beside the isolation.
    let (status, timeline) = get_json(
        &cordon,
        &format!("/v1/devices/{SERIAL}/timeline?with=queries"),
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    let actions: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"isolated"), "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| **a == "query_blocked").count(),
        4,
        "{actions:?}"
    );
    let recorded = metric(cordon.http, "cordon_trail_recorded_total").await;
    assert_eq!(recorded, 5.0);
}

#[tokio::test]
async fn a_watched_device_is_recorded_until_the_watch_ends() {
    let upstream = start_upstream().await;
    let cordon = cordon_with(&upstream, |_| {}).await;
    ask_from(cordon.dns, MAC, "www.allowed.test.").await;
    let path = format!("/v1/devices/{SERIAL}/watch");
    // A watch must say why.
    let (status, body) = http_json(
        cordon.http,
        "PUT",
        &path,
        Some(RESPONDER),
        r#"{"reason":" "}"#,
    )
    .await;
    assert_json_error(status, &body, 400);
    let (status, body) = http_json(
        cordon.http,
        "PUT",
        &path,
        Some(VIEWER),
        r#"{"reason":"beacon"}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let watch = r#"{"reason":"odd beaconing","ticket":"IR-15"}"#;
    let (status, body) = http_json(cordon.http, "PUT", &path, Some(RESPONDER), watch).await;
    assert_eq!(status, 200, "{body}");
    let info = device_info(cordon.http, SERIAL).await.unwrap();
    assert_eq!(info["watch"]["ticket"], "IR-15", "{info}");
    assert_eq!(info["traced"], true);
    // Watched, not isolated: its answers are as before, and recorded.
    assert_eq!(
        rcode(&ask_from(cordon.dns, MAC, "www.allowed.test.").await),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(&ask_from(cordon.dns, MAC, "evil.test.").await),
        ResponseCode::NXDomain
    );
    let names = trail_names(&cordon, 2).await;
    assert_eq!(names, ["www.allowed.test", "evil.test"]);
    let (_, page) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/queries")).await;
    assert_eq!(page["queries"][1]["category"], "malware", "{page}");
    assert_eq!(page["queries"][1]["group"], "standard", "{page}");

    let (status, body) = http(cordon.http, "DELETE", &path, Some(RESPONDER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        device_info(cordon.http, SERIAL).await.unwrap()["traced"],
        false
    );
    ask_from(cordon.dns, MAC, "x.mdm.test.").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(trail_names(&cordon, 2).await.len(), 2, "no longer recorded");
    let (_, timeline) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/timeline")).await;
    let text = timeline.to_string();
    assert!(
        text.contains("watch_started") && text.contains("watch_ended"),
        "{text}"
    );
    // The watch survives a restart, as everything the control plane records does.
    let (status, _) = http_json(cordon.http, "PUT", &path, Some(RESPONDER), watch).await;
    assert_eq!(status, 200);
    let cordon = cordon.restart().await;
    assert_eq!(
        device_info(cordon.http, SERIAL).await.unwrap()["watch"]["reason"],
        "odd beaconing"
    );
    ask_from(cordon.dns, MAC, "short.allowed.test.").await;
    assert_eq!(
        trail_names(&cordon, 3).await.last().map(String::as_str),
        Some("short.allowed.test")
    );
}

#[tokio::test]
async fn an_admin_erases_a_devices_trail_and_the_timeline_says_so() {
    let upstream = start_upstream().await;
    let cordon = cordon_with(&upstream, |_| {}).await;
    isolate(&cordon).await;
    for name in ["c2.test.", "www.test."] {
        ask_from(cordon.dns, MAC, name).await;
    }
    assert_eq!(trail_names(&cordon, 2).await.len(), 2);
    let path = format!("/v1/devices/{SERIAL}/queries");
    let reason = r#"{"reason":"privacy request PR-7"}"#;
    // Evidence is not a responder's to erase, and a device no one knows has no trail.
    let (status, _) = http_json(cordon.http, "DELETE", &path, Some(RESPONDER), reason).await;
    assert_eq!(status, 403);
    let unknown = "/v1/devices/NO-SUCH-SERIAL/queries";
    let (status, _) = http(cordon.http, "DELETE", unknown, Some(ADMIN)).await;
    assert_eq!(status, 404);
    assert_eq!(names_now(&cordon).await.len(), 2, "nothing erased yet");

    let (status, body) = http_json(cordon.http, "DELETE", &path, Some(ADMIN), reason).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["erased"], 2, "{body}");
    assert!(names_now(&cordon).await.is_empty());
    let (_, timeline) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/timeline")).await;
    let erased = timeline
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "trail_erased")
        .cloned()
        .unwrap_or_default();
    assert_eq!(erased["detail"], "2 queries", "{timeline}");
    assert_eq!(erased["reason"], "privacy request PR-7", "{timeline}");
    // Still isolated, so still traced: what it asks next is recorded again.
    ask_from(cordon.dns, MAC, "again.test.").await;
    assert_eq!(trail_names(&cordon, 1).await, ["again.test"]);
}

#[tokio::test]
async fn records_past_the_retention_are_removed() {
    let upstream = start_upstream().await;
    // About two seconds.
    let cordon = cordon_with(&upstream, |c| c.trail.retention_days = 2.0 / 86_400.0).await;
    isolate(&cordon).await;
    ask_from(cordon.dns, MAC, "c2.test.").await;
    assert_eq!(trail_names(&cordon, 1).await, ["c2.test"]);
    let path = format!("/v1/devices/{SERIAL}/queries");
    let gone = eventually(Duration::from_secs(8), || async {
        let (_, page) = get_json(&cordon, &path).await;
        page["queries"].as_array().is_some_and(|q| q.is_empty())
    })
    .await;
    assert!(gone, "the record outlived the retention");
    assert!(metric(cordon.http, "cordon_trail_trimmed_total").await >= 1.0);
}

#[tokio::test]
async fn a_device_over_its_cap_keeps_its_newest_records() {
    let upstream = start_upstream().await;
    // A short retention, so that trims come every few seconds; longer than the test.
    let cordon = cordon_with(&upstream, |c| {
        c.trail.max_per_device = 3;
        c.trail.retention_days = 40.0 / 86_400.0;
    })
    .await;
    isolate(&cordon).await;
    for i in 0..6 {
        ask_from(cordon.dns, MAC, &format!("n{i}.allowed.test.")).await;
    }
    trail_names(&cordon, 6).await;
    let names = names_when(&cordon, Duration::from_secs(10), |n| n.len() == 3).await;
    assert_eq!(
        names,
        ["n3.allowed.test", "n4.allowed.test", "n5.allowed.test"]
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_dns_answers_all_the_same() {
    let upstream = start_upstream().await;
    let cordon = cordon_with(&upstream, |c| c.trail.queue = 1).await;
    isolate(&cordon).await;
    let asks = (0..40).map(|i| {
        let dns = cordon.dns;
        async move { rcode(&ask_from(dns, MAC, &format!("q{i}.mdm.test.")).await) }
    });
    let answers = futures_util::future::join_all(asks).await;
    assert!(
        answers
            .iter()
            .all(|r| *r == ResponseCode::NoError || *r == ResponseCode::NXDomain),
        "{answers:?}"
    );
    let dropped = metric(cordon.http, "cordon_trail_dropped_total").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let recorded = metric(cordon.http, "cordon_trail_recorded_total").await;
    assert!(dropped >= 1.0, "dropped {dropped}");
    assert_eq!(
        dropped + recorded,
        40.0,
        "every query either recorded or counted as dropped"
    );
}

#[tokio::test]
async fn a_device_on_probation_is_recorded_until_its_probation_ends() {
    let upstream = start_upstream().await;
    let cordon = cordon_with(&upstream, |c| {
        let standard = c.policies.dir.join("standard.toml");
        let text = std::fs::read_to_string(&standard).unwrap() + "probation_s = 600\n";
        std::fs::write(&standard, text).unwrap();
    })
    .await;
    isolate(&cordon).await;
    let path = format!("/v1/devices/{SERIAL}/isolation");
    let (status, body) = http(cordon.http, "DELETE", &path, Some(RESPONDER)).await;
    assert_eq!(status, 200, "{body}");
    let info = device_info(cordon.http, SERIAL).await.unwrap();
    assert!(
        info["probation_until"].is_i64() && info["traced"] == true,
        "{info}"
    );
    // Full access back, and every query in the trail: the proof that it is clean, or not.
    let answer = ask_from(cordon.dns, MAC, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(trail_names(&cordon, 1).await, ["www.allowed.test"]);
    let (_, page) = get_json(&cordon, &format!("/v1/devices/{SERIAL}/queries")).await;
    assert_eq!(page["queries"][0]["group"], "standard", "{page}");
}
