//! A store that cannot commit: the change is refused with a JSON error, nothing of it applies,
//! DNS keeps answering as before, and the next change once the store can be written applies.

use crate::support::*;

#[tokio::test]
async fn a_commit_that_fails_applies_nothing_and_the_writer_recovers() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let mac = [127, 0, 0, 7];
    let checkin = checkin("127.0.0.7");
    let (status, body) = webhook(cordon.http, &checkin).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(cordon.dns, mac).await);
    let version = metric(cordon.http, "cordon_snapshot_version").await;
    let added = fixture("smart-group-computer-added.json", &[]);
    let isolation = "/v1/devices/C02ZK1ABMD6T/isolation";
    let hold = r#"{"reason":"EDR alert","ticket":"IR-5"}"#;

    // Another connection holds SQLite's write lock: the writer's commit waits out the busy
    // timeout (rusqlite's default, 5 s; the store sets none) and fails.
    let lock = rusqlite::Connection::open(cordon.config.store_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = webhook(cordon.http, &added).await;
    assert_json_error(status, &body, 503);
    // Both say "nothing applied, try again": 503, from the webhook and the API alike.
    let (status, body) = http_json(cordon.http, "POST", isolation, Some(RESPONDER), hold).await;
    assert_json_error(status, &body, 503);
    // nothing of either applies, and DNS answers as before while the store is still locked
    assert!(!blocked_from(cordon.dns, mac).await);
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["group"], "standard", "{info}");
    assert_eq!(info["uem_groups"], serde_json::json!([]), "{info}");
    assert!(info["isolation"].is_null(), "{info}");
    assert_eq!(info["bindings"], serde_json::json!(["127.0.0.7"]), "{info}");
    assert_eq!(
        metric(cordon.http, "cordon_snapshot_version").await,
        version
    );
    assert_eq!(
        metric(
            cordon.http,
            "cordon_webhook_events_total{event=\"SmartGroupComputerMembershipChange\",result=\"error\",source=\"jamf\"}"
        )
        .await,
        1.0
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let (status, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/C02ZK1ABMD6T/timeline",
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    assert!(
        !timeline.contains("membership_added") && !timeline.contains("\"isolated\""),
        "no audit record of what failed: {timeline}"
    );

    // the store is usable again: the next changes apply
    let (status, body) = webhook(cordon.http, &added).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"changes\":1"), "{body}");
    assert!(blocked_from(cordon.dns, mac).await);
    let (status, body) = http_json(cordon.http, "POST", isolation, Some(RESPONDER), hold).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"changes\":1"), "{body}");
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["isolation"]["ticket"], "IR-5", "{info}");
    assert_eq!(
        metric(cordon.http, "cordon_snapshot_version").await,
        version + 2.0
    );
    // and they are in the store: a restart keeps them
    let cordon = cordon.restart().await;
    assert!(blocked_from(cordon.dns, mac).await);
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["isolation"]["ticket"], "IR-5", "{info}");
}
