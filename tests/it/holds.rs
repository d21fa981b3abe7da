//! Holds through the API on the real binary: a playbook isolates a serial Cordon has not seen;
//! the hold waits (202, in the isolations list) and is in force from the device's first
//! check-in on. Time-boxed holds end at the leader's tick (unit tests in `control/holds.rs`
//! move the clock; here only the API's checks of `expires_in`).

use crate::support::*;

#[tokio::test]
async fn a_playbook_isolates_a_serial_not_seen_yet_and_its_first_check_in_is_isolated() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let isolation = "/v1/devices/C02ZK1ABMD6T/isolation";
    let hold = r#"{"reason":"EDR: C2 beacon","ticket":"IR-77","expires_in":86400}"#;
    let (status, body) = http_json(cordon.http, "POST", isolation, Some(RESPONDER), hold).await;
    assert_eq!(status, 202, "{body}");
    let outcome: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["waiting"], "c02zk1abmd6t", "{body}");
    let (_, list) = http(cordon.http, "GET", "/v1/isolations", Some(VIEWER)).await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let waiting = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "c02zk1abmd6t")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(waiting["status"], "waiting for device", "{list}");
    assert_eq!(waiting["isolation"]["ticket"], "IR-77", "{list}");
    assert!(
        waiting["isolation"]["expires"].as_i64().unwrap() > 0,
        "{list}"
    );

    let mac = [127, 0, 0, 7];
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        blocked_from(cordon.dns, mac).await,
        "isolated from its first check-in"
    );
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["group"], "restricted", "{info}");
    assert_eq!(info["isolation"]["reason"], "EDR: C2 beacon", "{info}");
    let ids = isolated_ids(cordon.http).await;
    let id = info["id"].as_str().unwrap().to_string();
    assert!(ids.contains(&id), "{ids:?}");
    assert!(
        !ids.contains(&"c02zk1abmd6t".to_string()),
        "no longer waiting: {ids:?}"
    );
    let (_, timeline) = http(
        cordon.http,
        "GET",
        "/v1/devices/C02ZK1ABMD6T/timeline",
        Some(VIEWER),
    )
    .await;
    assert!(timeline.contains("isolation_applied"), "{timeline}");

    // Bad `expires_in`: a clear 400, nothing recorded.
    for bad in [
        r#"{"reason":"x","expires_in":0}"#,
        r#"{"reason":"x","expires_in":99999999999}"#,
        r#"{"reason":"x","expires_in":-5}"#,
    ] {
        let path = "/v1/devices/C02OTHER/isolation";
        let (status, body) = http_json(cordon.http, "POST", path, Some(RESPONDER), bad).await;
        assert_json_error(status, &body, 400);
    }
    assert!(!isolated_ids(cordon.http)
        .await
        .contains(&"c02other".to_string()));
}

#[tokio::test]
async fn a_waiting_hold_is_released_by_its_alias() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let before = isolated_ids(cordon.http).await;
    let isolation = "/v1/devices/C02ZK1ABMD6T/isolation";
    let hold = r#"{"reason":"EDR alert"}"#;
    let (status, _) = http_json(cordon.http, "POST", isolation, Some(RESPONDER), hold).await;
    assert_eq!(status, 202);
    let (status, body) = http(cordon.http, "DELETE", isolation, Some(RESPONDER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(isolated_ids(cordon.http).await, before);
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 7]).await);
    // An unknown device with no waiting hold is still a 404.
    let (status, body) = http(
        cordon.http,
        "DELETE",
        "/v1/devices/C02NOBODY/isolation",
        Some(RESPONDER),
    )
    .await;
    assert_json_error(status, &body, 404);
}
