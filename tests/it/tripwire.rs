//! Tripwires and probation over real DNS: a device that asks for a name its policy calls a
//! tripwire is isolated before it hears the answer, so its very next query is isolated; an
//! allowed name never trips; the cooldown holds a device back; a device released into
//! probation that trips again goes straight back into isolation.

use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::support::*;

/// The test policies, with tripwires in `standard` (malware and ads; `allowed-ad.ads.test` is
/// allowed by a rule) and `probation_s`; tripwires on, with this cooldown.
async fn cordon_with_tripwires(upstream: &Upstream, cooldown_s: u64) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    let standard = config.policies.dir.join("standard.toml");
    let mut text = std::fs::read_to_string(&standard).unwrap();
    text.push_str(
        "tripwire_categories = [\"malware\", \"ads\"]\n\
         tripwire = [\"social.test\"]\n\
         probation_s = 600\n",
    );
    std::fs::write(&standard, text).unwrap();
    config.tripwire.enabled = true;
    config.tripwire.cooldown_s = cooldown_s;
    start_cordon_with(dir, config).await
}

const MAC: [u8; 4] = [127, 0, 0, 7];

async fn rcode_of(cordon: &Cordon, name: &str) -> ResponseCode {
    rcode(&ask_from(cordon.dns, MAC, name).await)
}

async fn timeline(cordon: &Cordon) -> String {
    let path = "/v1/devices/C02ZK1ABMD6T/timeline";
    http(cordon.http, "GET", path, Some(VIEWER)).await.1
}

#[tokio::test]
async fn a_query_for_a_tripwire_isolates_the_device_before_its_next_query() {
    let upstream = start_upstream().await;
    let cordon = cordon_with_tripwires(&upstream, 300).await;
    let (status, body) = webhook(cordon.http, &checkin("127.0.0.7")).await;
    assert_eq!(status, 200, "{body}");
    // Allowed by a rule of the policy, though in a tripwire category: no trip.
    assert_eq!(
        rcode_of(&cordon, "allowed-ad.ads.test").await,
        ResponseCode::NoError
    );
    assert!(!blocked_from(cordon.dns, MAC).await);
    // A malware name: blocked as always, and the device is held before that answer left.
    assert_eq!(rcode_of(&cordon, "evil.test").await, ResponseCode::NXDomain);
    assert!(
        blocked_from(cordon.dns, MAC).await,
        "the next query is isolated"
    );
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["group"], "restricted", "{info}");
    assert_eq!(info["isolation"]["by"], "tripwire", "{info}");
    let reason = info["isolation"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("evil.test") && reason.contains("malware"),
        "{info}"
    );
    let events = timeline(&cordon).await;
    assert!(events.contains("tripwire_fired"), "{events}");
    let fired = "cordon_tripwires_total{result=\"fired\"}";
    assert_eq!(metric(cordon.http, fired).await, 1.0);
    // Another device (not identified: no binding) trips nothing.
    let stranger = ask_from(cordon.dns, [127, 0, 0, 99], "evil.test").await;
    assert_eq!(rcode(&stranger), ResponseCode::NXDomain);
    assert_eq!(metric(cordon.http, fired).await, 1.0);

    // Released: on probation; a trip within the cooldown does not fire again.
    let path = "/v1/devices/C02ZK1ABMD6T/isolation";
    let (status, body) = http(cordon.http, "DELETE", path, Some(RESPONDER)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!blocked_from(cordon.dns, MAC).await);
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert!(info["probation_until"].as_i64().is_some(), "{info}");
    assert!(timeline(&cordon).await.contains("probation_started"));
    // The incident's tripwire name resolves (no category blocks it): the trip is held back.
    assert_eq!(
        rcode_of(&cordon, "social.test").await,
        ResponseCode::NoError
    );
    assert!(!blocked_from(cordon.dns, MAC).await, "within the cooldown");
    let cooling = "cordon_tripwires_total{result=\"cooldown\"}";
    assert_eq!(metric(cordon.http, cooling).await, 1.0);
}

#[tokio::test]
async fn a_device_on_probation_that_trips_goes_straight_back_into_isolation() {
    let upstream = start_upstream().await;
    let cordon = cordon_with_tripwires(&upstream, 0).await;
    webhook(cordon.http, &checkin("127.0.0.7")).await;
    let path = "/v1/devices/C02ZK1ABMD6T/isolation";
    let hold = r#"{"reason":"EDR alert","ticket":"IR-9"}"#;
    let (status, body) = http_json(cordon.http, "POST", path, Some(RESPONDER), hold).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(cordon.http, "DELETE", path, Some(RESPONDER)).await;
    assert_eq!(status, 200, "{body}");
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    let until = info["probation_until"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (590..=610).contains(&(until - now)),
        "probation_s 600: {info}"
    );
    assert!(!blocked_from(cordon.dns, MAC).await, "its full access back");
    // The incident's own tripwire name, which no category blocks: it resolves for everyone
    // else, but this device is isolated before it hears the answer.
    let other = ask_from(cordon.dns, [127, 0, 0, 99], "social.test").await;
    assert_eq!(rcode(&other), ResponseCode::NoError);
    let answer = ask_from(cordon.dns, MAC, "social.test").await;
    assert_eq!(
        rcode(&answer),
        ResponseCode::NXDomain,
        "answered under isolation"
    );
    assert!(
        eventually(Duration::from_secs(2), || blocked_from(cordon.dns, MAC)).await,
        "back in isolation"
    );
    let info = device_info(cordon.http, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(info["isolation"]["by"], "tripwire", "{info}");
    assert!(
        info["probation_until"].is_null(),
        "probation ends with the new hold: {info}"
    );
    let events = timeline(&cordon).await;
    for action in ["probation_started", "tripwire_fired", "probation_ended"] {
        assert!(events.contains(action), "{action}: {events}");
    }
}
