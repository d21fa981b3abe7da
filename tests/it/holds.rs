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

#[tokio::test]
async fn an_admin_lists_pending_approvals_and_refuses_one_through_the_api() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    assert_eq!(webhook(cordon.http, &checkin("127.0.0.42")).await.0, 200);
    let critical = "/v1/devices/C02ZK1ABMD6T/critical";
    let mark = r#"{"critical": true}"#;
    assert_eq!(
        http_json(cordon.http, "PUT", critical, Some(ADMIN), mark)
            .await
            .0,
        200
    );
    let isolation = "/v1/devices/c02zk1abmd6t/isolation";
    let hold = r#"{"reason":"impossible travel","ticket":"IR-5"}"#;
    let (status, _) = http_json(cordon.http, "POST", isolation, Some(RESPONDER), hold).await;
    assert_eq!(status, 409);

    let (status, list) = http(cordon.http, "GET", "/v1/approvals", Some(VIEWER)).await;
    assert_eq!(status, 200, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let pending = &list[0];
    assert_eq!(pending["label"], "FIN-MBP-0142", "{list}");
    assert_eq!(pending["hold"]["by"], "responder", "{list}");
    assert!(pending["lapses"].as_i64().unwrap() > pending["hold"]["at"].as_i64().unwrap());
    let refuse = format!("/v1/approvals/{}", pending["id"]);
    let reason = r#"{"reason":"the CEO was travelling"}"#;
    let as_responder = http_json(cordon.http, "DELETE", &refuse, Some(RESPONDER), reason).await;
    assert_eq!(as_responder.0, 403, "only an admin refuses");
    let (status, body) = http_json(cordon.http, "DELETE", &refuse, Some(ADMIN2), reason).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        http(cordon.http, "DELETE", &refuse, Some(ADMIN2)).await.0,
        404
    );
    assert_eq!(
        http(cordon.http, "POST", &refuse, Some(ADMIN2)).await.0,
        404
    );
    assert!(!blocked_from(cordon.dns, [127, 0, 0, 42]).await, "not held");
    let (_, list) = http(cordon.http, "GET", "/v1/approvals", Some(VIEWER)).await;
    assert_eq!(list, "[]");
    let timeline = "/v1/devices/C02ZK1ABMD6T/timeline";
    let (_, events) = http(cordon.http, "GET", timeline, Some(VIEWER)).await;
    assert!(events.contains("\"isolation_refused\""), "{events}");
    assert!(events.contains("the CEO was travelling"), "{events}");

    // Found by any alias, its address or part of its name; shown as the MDM wrote it.
    for q in ["c02zk1abmd6t", "127.0.0.42", "fin-mbp", "1042"] {
        let (status, found) = http(
            cordon.http,
            "GET",
            &format!("/v1/devices?q={q}"),
            Some(VIEWER),
        )
        .await;
        assert_eq!(status, 200, "{found}");
        let found: serde_json::Value = serde_json::from_str(&found).unwrap();
        assert_eq!(found[0]["label"], "FIN-MBP-0142", "{q}: {found}");
        assert!(found[0]["aliases"]
            .as_array()
            .unwrap()
            .contains(&"serial:C02ZK1ABMD6T".into()));
    }
    let (status, body) = http(cordon.http, "GET", "/v1/devices?q=", Some(VIEWER)).await;
    assert_json_error(status, &body, 400);
    let (status, body) = http(cordon.http, "GET", "/v1/devices?q=x&limit=0", Some(VIEWER)).await;
    assert_json_error(status, &body, 400);

    // Watched: traced though not isolated.
    let watch = "/v1/devices/C02ZK1ABMD6T/watch";
    let why = r#"{"reason":"odd lookups"}"#;
    assert_eq!(
        http_json(cordon.http, "PUT", watch, Some(RESPONDER), why)
            .await
            .0,
        200
    );
    let (_, traced) = http(cordon.http, "GET", "/v1/traced", Some(VIEWER)).await;
    let traced: serde_json::Value = serde_json::from_str(&traced).unwrap();
    assert_eq!(traced[0]["watch"]["reason"], "odd lookups", "{traced}");
    assert_eq!(traced[0]["isolated"], false, "{traced}");
}
