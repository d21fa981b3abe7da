//! Group sync: Jamf webhooks move devices between groups, the next query sees it, nothing
//! acknowledged is lost, bad input changes nothing, and reconciliation heals what was missed.

use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::fake_jamf::FakeJamf;
use crate::support::*;

async fn device(cordon: &Cordon, id: &str) -> serde_json::Value {
    let (status, body) = http(
        cordon.http,
        "GET",
        &format!("/v1/devices/{id}"),
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_webhook_isolates_the_next_query_and_removal_frees_it() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let mac = [127, 0, 0, 7];
    assert!(!blocked_from(cordon.dns, mac).await);

    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = webhook(
        cordon.http,
        &fixture("smart-group-computer-added.json", &[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\":\"applied\""), "{body}");
    // 200 means in force: no waiting
    let answer = ask_from(cordon.dns, mac, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("group restricted"));
    // the allow-list still works for the isolated Mac, and other clients are untouched
    assert_eq!(
        rcode(&ask_from(cordon.dns, mac, "x.mdm.test.").await),
        ResponseCode::NoError
    );
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 1]).await);

    let info = device(&cordon, "C02ZK1ABMD6T").await;
    assert_eq!(info["group"], "restricted");
    assert_eq!(info["bindings"][0], "127.0.0.7");
    assert!(info["uem_groups"][0]
        .as_str()
        .unwrap()
        .contains("Jamf Protect - High"));

    let (status, _) = webhook(
        cordon.http,
        &fixture("smart-group-computer-removed.json", &[]),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !blocked_from(cordon.dns, mac).await,
        "removal gives the access back at once"
    );
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(metrics.contains("cordon_webhook_events_total{event=\"SmartGroupComputerMembershipChange\",result=\"applied\",source=\"jamf\"} 2"), "{metrics}");
    assert!(
        metrics.contains(
            "cordon_membership_changes_total{direction=\"added\",group=\"restricted\"} 1"
        ),
        "{metrics}"
    );
}

/// A change's answer as JSON.
fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Asserts a change answered 200 with `changes` changes, and returns the version it reported.
fn changed(status: u16, body: &str, changes: u64) -> u64 {
    assert_eq!(status, 200, "{body}");
    let answer = json(body);
    assert_eq!(answer["changes"], changes, "{body}");
    answer["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("a version: {body}"))
}

async fn version(cordon: &Cordon) -> f64 {
    metric(cordon.http, "cordon_snapshot_version").await
}

/// How many of a device's timeline events have `action`.
async fn events(cordon: &Cordon, id: &str, action: &str) -> usize {
    let (status, timeline) = http(
        cordon.http,
        "GET",
        &format!("/v1/devices/{id}/timeline"),
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    json(&timeline)
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count()
}

#[tokio::test]
async fn the_same_event_twice_is_one_change() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, first) = webhook(cordon.http, &added).await;
    let v1 = changed(status, &first, 1);
    assert_eq!(json(&first)["result"], "applied", "{first}");
    let (status, second) = webhook(cordon.http, &added).await;
    let v2 = changed(status, &second, 0);
    assert_eq!(json(&second)["result"], "unchanged", "{second}");
    assert_eq!(v2, v1, "a replay publishes no new snapshot");
    assert_eq!(version(&cordon).await, v1 as f64);
    assert_eq!(
        events(&cordon, "jamf-computer:1042", "membership_added").await,
        1
    );
}

#[tokio::test]
async fn the_same_removal_twice_is_one_change() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, body) = webhook(cordon.http, &added).await;
    changed(status, &body, 1);
    assert!(blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    let removed = fixture("smart-group-computer-removed.json", &[]);
    let (status, first) = webhook(cordon.http, &removed).await;
    let v1 = changed(status, &first, 1);
    let (status, second) = webhook(cordon.http, &removed).await;
    let v2 = changed(status, &second, 0);
    assert_eq!(json(&second)["result"], "unchanged", "{second}");
    assert_eq!(v2, v1, "a replay publishes no new snapshot");
    assert_eq!(version(&cordon).await, v1 as f64);
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    assert_eq!(
        events(&cordon, "jamf-computer:1042", "membership_removed").await,
        1
    );
}

#[tokio::test]
async fn a_replay_after_a_restart_on_the_same_store_changes_nothing() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let checkin = checkin("127.0.0.7");
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, body) = webhook(cordon.http, &checkin).await;
    changed(status, &body, 5);
    let (status, body) = webhook(cordon.http, &added).await;
    changed(status, &body, 1);
    let hold = r#"{"reason":"ransomware alert","ticket":"IR-7"}"#;
    let path = "/v1/devices/C02ISOLATED/isolation";
    let (status, body) = http_json(cordon.http, "POST", path, Some(RESPONDER), hold).await;
    changed(status, &body, 1);

    let cordon = cordon.restart().await;
    let before = version(&cordon).await;
    for body in [&added, &checkin] {
        let (status, answer) = webhook(cordon.http, body).await;
        let v = changed(status, &answer, 0);
        assert_eq!(json(&answer)["result"], "unchanged", "{answer}");
        assert_eq!(v as f64, before, "{answer}");
    }
    let (status, body) = http_json(cordon.http, "POST", path, Some(RESPONDER), hold).await;
    assert_eq!(changed(status, &body, 0) as f64, before, "{body}");
    assert_eq!(version(&cordon).await, before, "nothing was published");
    assert!(blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    for (id, action) in [
        ("jamf-computer:1042", "membership_added"),
        ("jamf-computer:1042", "binding_added"),
        ("C02ISOLATED", "isolated"),
    ] {
        assert_eq!(events(&cordon, id, action).await, 1, "{id} {action}");
    }
}

#[tokio::test]
async fn isolating_a_held_device_again_or_releasing_it_twice_changes_nothing() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    let path = "/v1/devices/C02ZK1ABMD6T/isolation";
    let (status, first) = http_json(
        cordon.http,
        "POST",
        path,
        Some(RESPONDER),
        r#"{"reason":"first reason","ticket":"IR-1"}"#,
    )
    .await;
    let v1 = changed(status, &first, 1);
    let (status, second) = http_json(
        cordon.http,
        "POST",
        path,
        Some(ADMIN),
        r#"{"reason":"second reason","ticket":"IR-2"}"#,
    )
    .await;
    assert_eq!(changed(status, &second, 0), v1, "no new snapshot");
    assert_eq!(version(&cordon).await, v1 as f64);
    let info = device(&cordon, "C02ZK1ABMD6T").await;
    assert_eq!(info["isolation"]["reason"], "first reason", "{info}");
    assert_eq!(info["isolation"]["ticket"], "IR-1", "{info}");
    assert_eq!(info["isolation"]["by"], "responder", "{info}");
    assert_eq!(events(&cordon, "C02ZK1ABMD6T", "isolated").await, 1);
    assert!(blocked_from(cordon.dns, [127, 0, 0, 7]).await);

    let bearer = format!("Bearer {RESPONDER}");
    let (status, first) = send_http(cordon.http, "DELETE", path, Some(&bearer), None, "").await;
    let v2 = changed(status, &first, 1);
    assert!(v2 > v1, "{first}");
    let (status, second) = send_http(cordon.http, "DELETE", path, Some(&bearer), None, "").await;
    assert_eq!(changed(status, &second, 0), v2, "no new snapshot");
    assert_eq!(version(&cordon).await, v2 as f64);
    assert_eq!(events(&cordon, "C02ZK1ABMD6T", "released").await, 1);
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 7]).await);
}

#[tokio::test]
async fn a_restart_keeps_every_isolation() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.7")).await.0, 200);
    assert_eq!(
        webhook(
            cordon.http,
            &fixture("smart-group-computer-added.json", &[]),
        )
        .await
        .0,
        200
    );
    let (status, _) = http_json(
        cordon.http,
        "POST",
        "/v1/devices/C02ISOLATED/isolation",
        Some(RESPONDER),
        r#"{"reason":"ransomware alert","ticket":"IR-7"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let cordon = cordon.restart().await;
    assert!(
        blocked_from(cordon.dns, [127, 0, 0, 7]).await,
        "the MDM's isolation survives a restart"
    );
    let info = device(&cordon, "C02ISOLATED").await;
    assert_eq!(info["isolation"]["ticket"], "IR-7");
    assert_eq!(info["isolation"]["by"], "responder");
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_change_nothing() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let added = fixture("smart-group-computer-added.json", &[]);
    let cases: Vec<(Option<String>, Option<&str>, String, u16)> = vec![
        (None, Some("application/json"), added.clone(), 401),
        (
            Some("Bearer wrong".into()),
            Some("application/json"),
            added.clone(),
            401,
        ),
        (
            Some(format!("Bearer {WEBHOOK}")),
            Some("text/plain"),
            added.clone(),
            415,
        ),
        (Some(format!("Bearer {WEBHOOK}")), None, added.clone(), 415),
        (
            Some(format!("Bearer {WEBHOOK}")),
            Some("application/json"),
            "{\"webhook\": ".into(),
            400,
        ),
        (
            Some(format!("Bearer {WEBHOOK}")),
            Some("application/json"),
            r#"{"webhook":{},"event":{}}"#.into(),
            400,
        ),
        (
            Some(format!("Bearer {WEBHOOK}")),
            Some("application/json"),
            added.replace("\"jssid\":42", "\"jssid\":\"forty-two\""),
            400,
        ),
        (
            Some(format!("Bearer {WEBHOOK}")),
            Some("application/json"),
            format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)),
            413,
        ),
    ];
    for (auth, ctype, body, expected) in cases {
        let (status, answer) = send_http(
            cordon.http,
            "POST",
            "/webhooks/jamf",
            auth.as_deref(),
            ctype,
            &body,
        )
        .await;
        assert_json_error(status, &answer, expected);
    }
    let (_, missing) = send_http(
        cordon.http,
        "POST",
        "/webhooks/jamf",
        Some(&format!("Bearer {WEBHOOK}")),
        Some("application/json"),
        r#"{"webhook":{},"event":{}}"#,
    )
    .await;
    assert!(
        missing.contains("\"field\":\"webhook.webhookEvent\""),
        "{missing}"
    );
    // Basic authentication with a webhook token as the password works too
    let basic = format!("Basic {}", base64_of(&format!("jamf:{WEBHOOK}")));
    let (status, _) = send_http(
        cordon.http,
        "POST",
        "/webhooks/jamf",
        Some(&basic),
        Some("application/json"),
        r#"{"webhook":{"webhookEvent":"RestAPIOperation"},"event":{}}"#,
    )
    .await;
    assert_eq!(status, 200);
    // nothing changed
    let (status, _) = http(
        cordon.http,
        "GET",
        "/v1/devices/jamf-computer:1042",
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 404);
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(metrics.contains("cordon_snapshot_version 1\n"), "{metrics}");
    assert!(metrics.contains("cordon_webhook_events_total{event=\"unknown\",result=\"unauthorized\",source=\"jamf\"} 2"), "{metrics}");
    assert!(
        metrics.contains(
            "cordon_webhook_events_total{event=\"other\",result=\"ignored\",source=\"jamf\"} 1"
        ),
        "{metrics}"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn test_events_from_the_console_are_acknowledged_not_applied() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let test = fixture(
        "smart-group-computer-added.json",
        &[(
            "SmartGroupComputerMembershipChange",
            "SmartGroupComputerMembershipChange (TEST)",
        )],
    );
    let (status, body) = webhook(cordon.http, &test).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        http(
            cordon.http,
            "GET",
            "/v1/devices/jamf-computer:1042",
            Some(VIEWER)
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_device_cannot_escape_isolation_through_a_second_identity() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    // config says 127.0.0.12 is a free device; the MDM will say it is an isolated one
    config
        .identity
        .static_bindings
        .push(cordon::config::StaticEntry {
            cidr: "127.0.0.12/32".into(),
            device: "C02FREE".into(),
        });
    let cordon = start_cordon_with(dir, config).await;
    let from = [127, 0, 0, 12];
    assert!(!blocked_from(cordon.dns, from).await);
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.12")).await.0, 200);
    assert!(
        !blocked_from(cordon.dns, from).await,
        "both identities are free so far"
    );
    assert_eq!(
        webhook(
            cordon.http,
            &fixture("smart-group-computer-added.json", &[]),
        )
        .await
        .0,
        200
    );
    assert!(
        blocked_from(cordon.dns, from).await,
        "the stricter of the two identities wins"
    );

    // DHCP hands the address to another Mac: the binding moves, and the innocent Mac is free
    let other = fixture(
        "computer-checkin.json",
        &[
            ("\"jssID\":1042", "\"jssID\":1043"),
            (
                "\"serialNumber\":\"C02ZK1ABMD6T\"",
                "\"serialNumber\":\"C02OTHER0001\"",
            ),
            (
                "\"udid\":\"5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B\"",
                "\"udid\":\"00000000-0000-0000-0000-000000000001\"",
            ),
            (
                "\"macAddress\":\"3C:22:FB:91:0A:42\"",
                "\"macAddress\":\"3C:22:FB:91:0A:43\"",
            ),
            (
                "\"alternateMacAddress\":\"72:00:04:1B:9C:11\"",
                "\"alternateMacAddress\":\"\"",
            ),
            (
                "\"reportedIpAddress\":\"10.20.30.142\"",
                "\"reportedIpAddress\":\"127.0.0.12\"",
            ),
        ],
    );
    assert_eq!(webhook(cordon.http, &other).await.0, 200);
    assert!(!blocked_from(cordon.dns, from).await);
    let (_, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/jamf-computer:1042/timeline",
        Some(VIEWER),
    )
    .await;
    assert!(timeline.contains("binding_moved"), "{timeline}");
}

#[tokio::test]
async fn responders_isolate_and_release_by_hand() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let body = r#"{"reason":"beaconing to a known C2","ticket":"IR-1"}"#;
    assert_eq!(
        http_json(
            cordon.http,
            "POST",
            "/v1/devices/C02ISOLATED/isolation",
            Some(VIEWER),
            body
        )
        .await
        .0,
        403
    );
    assert_eq!(
        http_json(
            cordon.http,
            "POST",
            "/v1/devices/device%23999/isolation",
            Some(RESPONDER),
            body
        )
        .await
        .0,
        404
    );
    // An alias no device has yet: the hold waits for it (tests/it/holds.rs).
    assert_eq!(
        http_json(
            cordon.http,
            "POST",
            "/v1/devices/NOSUCHDEVICE/isolation",
            Some(RESPONDER),
            body
        )
        .await
        .0,
        202
    );
    let cancel = http(
        cordon.http,
        "DELETE",
        "/v1/devices/NOSUCHDEVICE/isolation",
        Some(RESPONDER),
    );
    assert_eq!(cancel.await.0, 200);
    let (status, answer) = http_json(
        cordon.http,
        "POST",
        "/v1/devices/C02ISOLATED/isolation",
        Some(RESPONDER),
        r#"{"ticket":"IR-1"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    // C02ISOLATED (127.0.0.3) is in `restricted` by config already; isolate another: PUT creates it
    let (status, answer) = http_json(
        cordon.http,
        "PUT",
        "/v1/devices/serial:C02HAND0001/groups",
        Some(ADMIN),
        r#"{"groups":["intune:group:finance"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = http_json(
        cordon.http,
        "POST",
        "/v1/devices/C02HAND0001/isolation",
        Some(RESPONDER),
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let info = device(&cordon, "serial:c02hand0001").await;
    assert_eq!(info["group"], "restricted");
    let hand = info["id"].as_str().unwrap().to_string();
    let placed = device(&cordon, "C02ISOLATED").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut isolated = isolated_ids(cordon.http).await;
    isolated.sort();
    let mut expected = vec![hand.clone(), placed.clone()];
    expected.sort();
    assert_eq!(
        isolated, expected,
        "the held device and the one config places"
    );
    let (status, _) = send_http(
        cordon.http,
        "DELETE",
        "/v1/devices/C02HAND0001/isolation",
        Some(&format!("Bearer {RESPONDER}")),
        None,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(device(&cordon, "C02HAND0001").await["group"], "standard");
    assert_eq!(
        isolated_ids(cordon.http).await,
        vec![placed],
        "released: gone from the isolations"
    );
    let (_, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/C02HAND0001/timeline",
        Some(VIEWER),
    )
    .await;
    let events: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    // Newest first: each hold, then the device's move it caused.
    assert_eq!(events[0]["action"], "isolation_left", "{timeline}");
    assert_eq!(events[1]["action"], "released");
    assert_eq!(events[2]["action"], "isolation_entered");
    assert_eq!(events[2]["detail"], "restricted");
    assert_eq!(events[3]["action"], "isolated");
    assert_eq!(events[3]["reason"], "beaconing to a known C2");
    assert_eq!(events[3]["actor"], "responder");
}

#[tokio::test]
async fn a_critical_device_needs_a_second_admin() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.devices.critical = vec!["C02CEO00001".into()];
    config
        .identity
        .static_bindings
        .push(cordon::config::StaticEntry {
            cidr: "127.0.0.20/32".into(),
            device: "C02CEO00001".into(),
        });
    let cordon = start_cordon_with(dir, config).await;
    let body = r#"{"reason":"suspicious login","ticket":"IR-9"}"#;
    let (status, answer) = http_json(
        cordon.http,
        "POST",
        "/v1/devices/C02CEO00001/isolation",
        Some(ADMIN),
        body,
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        !blocked_from(cordon.dns, [127, 0, 0, 20]).await,
        "held until approved"
    );
    let approval: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = approval["field"]
        .as_str()
        .unwrap()
        .strip_prefix("approval:")
        .unwrap()
        .to_string();
    assert_eq!(
        http(
            cordon.http,
            "POST",
            &format!("/v1/approvals/{id}"),
            Some(ADMIN)
        )
        .await
        .0,
        403,
        "not by the one who asked"
    );
    assert_eq!(
        http(
            cordon.http,
            "POST",
            &format!("/v1/approvals/{id}"),
            Some(RESPONDER)
        )
        .await
        .0,
        403,
        "only an admin approves"
    );
    assert_eq!(
        http(
            cordon.http,
            "POST",
            &format!("/v1/approvals/{id}"),
            Some(ADMIN2)
        )
        .await
        .0,
        200
    );
    assert!(blocked_from(cordon.dns, [127, 0, 0, 20]).await);
    assert_eq!(
        http(
            cordon.http,
            "POST",
            &format!("/v1/approvals/{id}"),
            Some(ADMIN2)
        )
        .await
        .0,
        404,
        "used once"
    );
    // the MDM's automatic isolation is never held
    let (status, body) = webhook(
        cordon.http,
        &fixture(
            "computer-checkin.json",
            &[
                (
                    "\"reportedIpAddress\":\"10.20.30.142\"",
                    "\"reportedIpAddress\":\"127.0.0.21\"",
                ),
                ("C02ZK1ABMD6T", "C02CEO00002"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\":\"applied\""), "{body}");
    let (status, body) = http_json(
        cordon.http,
        "PUT",
        "/v1/devices/C02CEO00002/critical",
        Some(ADMIN),
        r#"{"critical":true}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"changes\":1"), "{body}");
    let info = device(&cordon, "C02CEO00002").await;
    assert_eq!(info["critical"], true, "{info}");
    assert_eq!(
        info["bindings"],
        serde_json::json!(["127.0.0.21"]),
        "{info}"
    );
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 21]).await);
    let (status, body) = webhook(
        cordon.http,
        &fixture("smart-group-computer-added.json", &[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\":\"applied\""), "{body}");
    assert!(blocked_from(cordon.dns, [127, 0, 0, 21]).await);
    let info = device(&cordon, "C02CEO00002").await;
    assert_eq!(info["group"], "restricted", "{info}");
    assert!(info["isolation"].is_null(), "not a hold: {info}");
}

async fn with_jamf(upstream: &Upstream) -> (Cordon, FakeJamf) {
    with_jamf_mapping(upstream, &["jamf:computer-group:42"]).await
}

/// A Cordon that reads the fake Jamf Pro API, with `restricted` mapping these UEM groups.
async fn with_jamf_mapping(upstream: &Upstream, restricted: &[&str]) -> (Cordon, FakeJamf) {
    let jamf = FakeJamf::start("cordon", "s3cret").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    map_to_restricted(&config.policies.dir, restricted);
    config.jamf.url = jamf.url.clone();
    config.jamf.client_id = "cordon".into();
    config.jamf.client_secret = "s3cret".into();
    config.jamf.reconcile_interval_s = 0;
    (start_cordon_with(dir, config).await, jamf)
}

#[tokio::test]
async fn reconciliation_heals_a_missed_add_and_a_missed_remove() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    // Cordon heard 1007 join group 42, then missed both 1007 leaving and 1042 joining.
    let joined = fixture(
        "smart-group-computer-added.json",
        &[(
            "\"groupAddedDevicesIds\":[1042]",
            "\"groupAddedDevicesIds\":[1007]",
        )],
    );
    webhook(cordon.http, &joined).await;
    webhook(cordon.http, &checkin("127.0.0.7")).await;
    jamf.set_computer_group(42, "Jamf Protect - High", &[1042]);
    let (status, report) = http(cordon.http, "POST", "/v1/reconcile", Some(ADMIN)).await;
    assert_eq!(status, 200, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        (report["added"].as_u64(), report["removed"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert!(blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    assert_eq!(
        device(&cordon, "jamf-computer:1007").await["group"],
        "standard"
    );
    let (_, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/jamf-computer:1007/timeline",
        Some(VIEWER),
    )
    .await;
    let events: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    assert_eq!(events[0]["action"], "isolation_left", "{timeline}");
    assert_eq!(events[1]["action"], "membership_removed");
    assert_eq!(events[1]["reason"], "reconcile");
    // a second run finds nothing to heal, and reuses its OAuth token
    let (_, again) = http(cordon.http, "POST", "/v1/reconcile", Some(ADMIN)).await;
    assert!(
        again.contains("\"added\":0") && again.contains("\"removed\":0"),
        "{again}"
    );
    assert_eq!(jamf.token_requests(), 1);
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_reconcile_drift_total{direction=\"added\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_legacy_group_event_rereads_the_group() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    webhook(cordon.http, &checkin("127.0.0.7")).await;
    jamf.set_computer_group(42, "Jamf Protect - High", &[1042]);
    let (status, body) = webhook(
        cordon.http,
        &fixture("smart-group-computer-legacy.json", &[]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || blocked_from(
            cordon.dns,
            [127, 0, 0, 7]
        ))
        .await
    );
}

#[tokio::test]
async fn an_unknown_computer_is_looked_up_so_that_dns_knows_it() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    jamf.set_computer(
        1042,
        "C02ZK1ABMD6T",
        "5B1E6A7C-0D3F-5E2A-9C4B-7A8D9E0F1A2B",
        "127.0.0.9",
        &[42],
    );
    // the group event names the computer by id alone
    webhook(
        cordon.http,
        &fixture("smart-group-computer-added.json", &[]),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || blocked_from(
            cordon.dns,
            [127, 0, 0, 9]
        ))
        .await
    );
    assert!(
        jamf.requests()
            .iter()
            .any(|r| r.contains("filter=id==1042")),
        "{:?}",
        jamf.requests()
    );
}

#[tokio::test]
async fn bad_admin_requests_are_refused_with_json_errors_and_change_nothing() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let path = "/v1/devices/C02ISOLATED/isolation";
    let bearer = format!("Bearer {RESPONDER}");
    let cases: Vec<(Option<&str>, Option<&str>, String, u16)> = vec![
        (
            Some(bearer.as_str()),
            Some("application/json"),
            "{\"reason\": ".into(),
            400,
        ),
        (
            Some(bearer.as_str()),
            Some("application/json"),
            r#"{"reason":"x","surprise":1}"#.into(),
            400,
        ),
        (
            Some(bearer.as_str()),
            Some("text/plain"),
            r#"{"reason":"x"}"#.into(),
            415,
        ),
        (
            Some(bearer.as_str()),
            Some("application/json"),
            format!("{{\"reason\":\"{}\"}}", "x".repeat(2 << 20)),
            413,
        ),
        (
            Some("Bearer nope"),
            Some("application/json"),
            r#"{"reason":"x"}"#.into(),
            401,
        ),
        (
            None,
            Some("application/json"),
            r#"{"reason":"x"}"#.into(),
            401,
        ),
    ];
    for (auth, ctype, body, expected) in cases {
        let (status, answer) = send_http(cordon.http, "POST", path, auth, ctype, &body).await;
        assert_json_error(status, &answer, expected);
    }
    let (status, answer) = http_json(
        cordon.http,
        "PUT",
        "/v1/devices/x/groups",
        Some(ADMIN),
        r#"{"groups":"not a list"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (_, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/C02ISOLATED/timeline",
        Some(VIEWER),
    )
    .await;
    assert_eq!(timeline, "[]", "nothing was recorded");
    assert_eq!(
        http(cordon.http, "GET", "/v1/devices/x", Some(VIEWER))
            .await
            .0,
        404,
        "the bad PUT created nothing"
    );
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_http_responses_total{code=\"415\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_release_lifts_only_the_hold_while_the_mdm_still_isolates() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let mac = [127, 0, 0, 7];
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.7")).await.0, 200);
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, body) = webhook(cordon.http, &added).await;
    changed(status, &body, 1);
    let path = "/v1/devices/C02ZK1ABMD6T/isolation";
    let (status, body) = http_json(
        cordon.http,
        "POST",
        path,
        Some(RESPONDER),
        r#"{"reason":"EDR alert","ticket":"IR-3"}"#,
    )
    .await;
    changed(status, &body, 1);
    let id = device(&cordon, "C02ZK1ABMD6T").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let bearer = format!("Bearer {RESPONDER}");
    let (status, body) = send_http(cordon.http, "DELETE", path, Some(&bearer), None, "").await;
    changed(status, &body, 1);
    assert!(
        blocked_from(cordon.dns, mac).await,
        "the MDM's group still isolates it"
    );
    let info = device(&cordon, "C02ZK1ABMD6T").await;
    assert_eq!(info["group"], "restricted", "{info}");
    assert!(info["isolation"].is_null(), "the hold is gone: {info}");
    assert_eq!(
        info["uem_groups"],
        serde_json::json!(["jamf:computer-group:42 (Jamf Protect - High)"]),
        "{info}"
    );
    assert!(isolated_ids(cordon.http).await.contains(&id));

    // free only once the MDM lets go too
    let removed = fixture("smart-group-computer-removed.json", &[]);
    let (status, body) = webhook(cordon.http, &removed).await;
    changed(status, &body, 1);
    assert!(!blocked_from(cordon.dns, mac).await);
    assert_eq!(device(&cordon, "C02ZK1ABMD6T").await["group"], "standard");
    assert!(!isolated_ids(cordon.http).await.contains(&id));
}

#[tokio::test]
async fn between_a_client_network_and_the_device_at_that_address_the_stricter_group_wins() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[upstream.addr]);
    add_watched_group(&config.policies.dir);
    let cordon = start_cordon_with(dir, config).await;
    // 127.0.0.5 is the `kids` group's clients network (priority 10, policy limited: social
    // networks refused); the Mac that reports it is in `standard` (priority 0)
    let kids = [127, 0, 0, 5];
    let kids_refuses_social = || async {
        let social = ask_from(cordon.dns, kids, "social.test.").await;
        assert_eq!(rcode(&social), ResponseCode::Refused);
        assert!(
            ede(&social).unwrap().1.contains("group kids"),
            "the network is stricter than the device: {:?}",
            ede(&social)
        );
    };
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.5")).await.0, 200);
    assert_eq!(device(&cordon, "C02ZK1ABMD6T").await["group"], "standard");
    kids_refuses_social().await;
    assert!(!blocked_from(cordon.dns, kids).await);
    // in `watched` (priority 5, policy standard) through the MDM: still below the network
    let watched = fixture(
        "smart-group-computer-added.json",
        &[("\"jssid\":42", "\"jssid\":7")],
    );
    let (status, body) = webhook(cordon.http, &watched).await;
    changed(status, &body, 1);
    assert_eq!(device(&cordon, "C02ZK1ABMD6T").await["group"], "watched");
    kids_refuses_social().await;

    // the MDM isolates the Mac: now the device is the stricter one
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, body) = webhook(cordon.http, &added).await;
    changed(status, &body, 1);
    let answer = ask_from(cordon.dns, kids, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(
        ede(&answer).unwrap().1.contains("group restricted"),
        "{:?}",
        ede(&answer)
    );

    // released by the MDM: the network's group again
    let removed = fixture("smart-group-computer-removed.json", &[]);
    let (status, body) = webhook(cordon.http, &removed).await;
    changed(status, &body, 1);
    assert!(!blocked_from(cordon.dns, kids).await);
    kids_refuses_social().await;
}

/// The mobile Smart Group fixture (group 77, iPad 310), reporting `ip` as the iPad's address.
fn mobile_added(ip: &str) -> String {
    fixture(
        "smart-group-mobile-added.json",
        &[(
            "\"ipAddress\":\"192.0.2.44\"",
            &format!("\"ipAddress\":\"{ip}\""),
        )],
    )
}

#[tokio::test]
async fn a_mobile_smart_group_event_isolates_the_mobile_device() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[upstream.addr]);
    map_to_restricted(
        &config.policies.dir,
        &["jamf:computer-group:42", "jamf:mobile-group:77"],
    );
    let cordon = start_cordon_with(dir, config).await;
    let ipad = [127, 0, 0, 44];
    assert!(!blocked_from(cordon.dns, ipad).await);

    let (status, body) = webhook(cordon.http, &mobile_added("127.0.0.44")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["result"], "applied", "{body}");
    let answer = ask_from(cordon.dns, ipad, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("group restricted"));
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 1]).await);
    let info = device(&cordon, "jamf-mobile:310").await;
    assert_eq!(info["group"], "restricted", "{info}");
    assert_eq!(info["label"], "Field iPad 7", "{info}");
    assert_eq!(
        info["bindings"],
        serde_json::json!(["127.0.0.44"]),
        "{info}"
    );
    assert_eq!(
        info["uem_groups"],
        serde_json::json!(["jamf:mobile-group:77 (iOS - Outdated)"]),
        "{info}"
    );
    for alias in [
        "serial:F9FXK2Q4LQ",
        "udid:00008101-000A1D2E3F40001E",
        "mac:a4:83:e7:10:22:3a",
    ] {
        assert!(
            info["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == alias),
            "{alias}: {info}"
        );
    }
    // a computer with the same Jamf id is another device
    assert_eq!(
        http(
            cordon.http,
            "GET",
            "/v1/devices/jamf-computer:310",
            Some(VIEWER)
        )
        .await
        .0,
        404
    );

    let removed = fixture(
        "smart-group-mobile-added.json",
        &[
            (
                "\"groupAddedDevices\":[{",
                "\"groupAddedDevices\":[],\"groupRemovedDevices\":[{",
            ),
            ("\"groupRemovedDevices\":[],", ""),
            (
                "\"groupAddedDevicesIds\":[310]",
                "\"groupAddedDevicesIds\":[]",
            ),
            (
                "\"groupRemovedDevicesIds\":[]",
                "\"groupRemovedDevicesIds\":[310]",
            ),
            (
                "\"ipAddress\":\"192.0.2.44\"",
                "\"ipAddress\":\"127.0.0.44\"",
            ),
        ],
    );
    let (status, body) = webhook(cordon.http, &removed).await;
    changed(status, &body, 1);
    assert!(!blocked_from(cordon.dns, ipad).await);
    assert_eq!(
        device(&cordon, "jamf-mobile:310").await["group"],
        "standard"
    );
}

/// The status and the JSON answer of `POST /v1/reconcile`.
async fn reconcile(cordon: &Cordon) -> (u16, serde_json::Value) {
    let (status, body) = http(cordon.http, "POST", "/v1/reconcile", Some(ADMIN)).await;
    (status, json(&body))
}

fn in_group_42(info: &serde_json::Value) -> bool {
    info["uem_groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g.as_str().unwrap().starts_with("jamf:computer-group:42"))
}

#[tokio::test]
async fn a_group_that_cannot_be_read_keeps_its_memberships() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf_mapping(
        &upstream,
        &["jamf:computer-group:42", "jamf:computer-group:43"],
    )
    .await;
    let mac = [127, 0, 0, 7];
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.7")).await.0, 200);
    let added = fixture("smart-group-computer-added.json", &[]);
    assert_eq!(webhook(cordon.http, &added).await.0, 200);
    assert!(blocked_from(cordon.dns, mac).await);
    jamf.set_computer_group(43, "Other", &[1043]);

    // Jamf Pro has no group 42 (404): an error, never "the group is empty"
    let (status, report) = reconcile(&cordon).await;
    assert_eq!(status, 200, "another group was read: {report}");
    assert_eq!(report["groups"], 1, "{report}");
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(report["removed"], 0, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    let error = errors[0].as_str().unwrap();
    assert!(error.contains("42") && error.contains("404"), "{error}");
    assert!(blocked_from(cordon.dns, mac).await, "still isolated");
    assert!(in_group_42(&device(&cordon, "C02ZK1ABMD6T").await));
    assert_eq!(
        device(&cordon, "jamf-computer:1043").await["group"],
        "restricted"
    );

    // group 42 exists and is empty now, but Jamf Pro answers 500 for it
    let path = "/JSSResource/computergroups/id/42";
    jamf.set_computer_group(42, "Jamf Protect - High", &[]);
    jamf.fail(path, 500);
    let (status, report) = reconcile(&cordon).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], 0, "{report}");
    let error = report["errors"][0].as_str().unwrap();
    assert!(error.contains("42") && error.contains("500"), "{report}");
    assert!(blocked_from(cordon.dns, mac).await, "still isolated");
    assert!(in_group_42(&device(&cordon, "C02ZK1ABMD6T").await));

    // once it can be read, the empty group releases its member
    jamf.heal(path);
    let (status, report) = reconcile(&cordon).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], 1, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(!blocked_from(cordon.dns, mac).await);
}

#[tokio::test]
async fn when_no_group_can_be_read_reconciliation_answers_502_and_changes_nothing() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    let mac = [127, 0, 0, 7];
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.7")).await.0, 200);
    let added = fixture("smart-group-computer-added.json", &[]);
    assert_eq!(webhook(cordon.http, &added).await.0, 200);
    let before = version(&cordon).await;

    // 404: Jamf Pro has no group 42
    let (status, body) = http(cordon.http, "POST", "/v1/reconcile", Some(ADMIN)).await;
    assert_json_error(status, &body, 502);
    assert!(body.contains("404"), "{body}");
    assert!(blocked_from(cordon.dns, mac).await);

    // 500, for a group that would read as empty
    let path = "/JSSResource/computergroups/id/42";
    jamf.set_computer_group(42, "Jamf Protect - High", &[]);
    jamf.fail(path, 500);
    let (status, body) = http(cordon.http, "POST", "/v1/reconcile", Some(ADMIN)).await;
    assert_json_error(status, &body, 502);
    assert!(body.contains("500"), "{body}");
    assert!(blocked_from(cordon.dns, mac).await);

    // a legacy group event re-reads the group in the background: it fails the same way
    let errors = "cordon_reconcile_runs_total{result=\"error\"}";
    let failed = metric(cordon.http, errors).await;
    let legacy = fixture("smart-group-computer-legacy.json", &[]);
    let (status, body) = webhook(cordon.http, &legacy).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["reconcile"], true, "{body}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric(cordon.http, errors).await > failed
        })
        .await,
        "the re-read ran and failed"
    );
    jamf.fail(path, 404);
    let (status, body) = webhook(cordon.http, &legacy).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric(cordon.http, errors).await > failed + 1.0
        })
        .await,
        "the re-read ran and failed"
    );
    assert!(blocked_from(cordon.dns, mac).await);
    assert!(in_group_42(&device(&cordon, "C02ZK1ABMD6T").await));
    assert_eq!(version(&cordon).await, before, "nothing was published");
    assert_eq!(
        events(&cordon, "C02ZK1ABMD6T", "membership_removed").await,
        0
    );
}

#[tokio::test]
async fn reconciliation_reads_mobile_groups_too() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf_mapping(
        &upstream,
        &["jamf:computer-group:42", "jamf:mobile-group:77"],
    )
    .await;
    let ipad = [127, 0, 0, 44];
    // the iPad checks in (binding its address), then Jamf Pro puts it in group 77 without a webhook
    let checkin = r#"{"webhook":{"id":5,"name":"mobile check-ins","webhookEvent":"MobileDeviceCheckIn"},
        "event":{"jssID":310,"deviceName":"Field iPad 7","serialNumber":"F9FXK2Q4LQ","udid":"00008101-000A1D2E3F40001E","ipAddress":"127.0.0.44"}}"#;
    let (status, body) = webhook(cordon.http, checkin).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(cordon.dns, ipad).await);
    jamf.set_computer_group(42, "Jamf Protect - High", &[]);
    jamf.set_mobile_group(77, "iOS - Outdated", &[310]);
    let (status, report) = reconcile(&cordon).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["groups"], 2, "{report}");
    assert_eq!(report["added"], 1, "{report}");
    assert!(blocked_from(cordon.dns, ipad).await);
    let info = device(&cordon, "jamf-mobile:310").await;
    assert_eq!(info["group"], "restricted", "{info}");
    assert_eq!(
        info["uem_groups"],
        serde_json::json!(["jamf:mobile-group:77"]),
        "{info}"
    );
    assert!(
        jamf.requests()
            .contains(&"GET /JSSResource/mobiledevicegroups/id/77".to_string()),
        "{:?}",
        jamf.requests()
    );
    // the mobile id is not a computer id: no computer 310 was created
    assert_eq!(
        http(
            cordon.http,
            "GET",
            "/v1/devices/jamf-computer:310",
            Some(VIEWER)
        )
        .await
        .0,
        404
    );

    jamf.set_mobile_group(77, "iOS - Outdated", &[]);
    let (status, report) = reconcile(&cordon).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], 1, "{report}");
    assert!(!blocked_from(cordon.dns, ipad).await);
}

#[tokio::test]
async fn the_jamf_client_asks_for_a_new_token_when_its_token_is_refused_or_runs_out() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    jamf.set_computer_group(42, "Jamf Protect - High", &[]);
    let group = "GET /JSSResource/computergroups/id/42".to_string();
    let token = "POST /api/oauth/token".to_string();
    let run = || async {
        let (status, report) = reconcile(&cordon).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["groups"], 1, "{report}");
    };
    run().await;
    assert_eq!(jamf.requests(), vec![token.clone(), group.clone()]);

    // Jamf Pro invalidates the token: the call is refused (401), and retried with a new token
    jamf.revoke_tokens();
    let seen = jamf.requests().len();
    run().await;
    assert_eq!(
        jamf.requests()[seen..],
        [group.clone(), token.clone(), group.clone()]
    );
    assert_eq!(jamf.token_requests(), 2);

    // a token that lives 2 s is replaced before it runs out (0.2 s before), without a refused
    // call first
    jamf.set_token_lifetime(2);
    jamf.revoke_tokens();
    run().await;
    assert_eq!(jamf.token_requests(), 3);
    // the passing of time is what is tested here: nothing to poll
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = jamf.requests().len();
    run().await;
    assert_eq!(jamf.requests()[seen..], [token.clone(), group.clone()]);
    assert_eq!(jamf.token_requests(), 4);
}

#[tokio::test]
async fn a_check_in_reporting_a_mapped_address_binds_the_ipv4_client() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let mac = [127, 0, 0, 45];
    let (status, body) = webhook(cordon.http, &checkin("::ffff:127.0.0.45")).await;
    assert_eq!(status, 200, "{body}");
    let added = fixture("smart-group-computer-added.json", &[]);
    let (status, body) = webhook(cordon.http, &added).await;
    assert_eq!(status, 200, "{body}");
    let answer = ask_from(cordon.dns, mac, "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("group restricted"));
    let info = device(&cordon, "C02ZK1ABMD6T").await;
    assert_eq!(info["bindings"][0], "127.0.0.45", "{info}");
}

#[tokio::test]
async fn a_hold_by_a_serial_jamf_knows_is_in_force_without_waiting_for_a_check_in() {
    let upstream = start_upstream().await;
    let (cordon, jamf) = with_jamf(&upstream).await;
    jamf.set_computer(2042, "C02PLAYBOOK", "UDID-2042", "127.0.0.42", &[]);
    let path = "/v1/devices/C02PLAYBOOK/isolation";
    let hold = r#"{"reason":"EDR playbook: C2 beacon"}"#;
    let (status, body) = http_json(cordon.http, "POST", path, Some(RESPONDER), hold).await;
    assert_eq!(status, 202, "{body}");
    // No webhook comes: Cordon asked Jamf Pro for the serial and recorded what it said.
    assert!(
        eventually(Duration::from_secs(10), || blocked_from(
            cordon.dns,
            [127, 0, 0, 42]
        ))
        .await,
        "{:?}",
        jamf.requests()
    );
    assert!(jamf
        .requests()
        .iter()
        .any(|r| r.contains("hardware.serialNumber")));
    let info = device(&cordon, "jamf-computer:2042").await;
    assert_eq!(info["group"], "restricted", "{info}");
}
