//! Reloading policies through the admin API, and what the API shows.

use hickory_proto::op::ResponseCode;

use crate::support::*;

const BROKEN: &str =
    "default = \"allow\"\nmax_ttl = 300\nblock_categories = [\n  \"malware\",\n  \"malwar\",\n]\n";

#[tokio::test]
async fn a_broken_policy_keeps_the_old_snapshot_and_says_where() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    std::fs::write(cordon.policies().join("standard.toml"), BROKEN).unwrap();
    let (status, body) = http(cordon.http, "POST", "/v1/reload", Some(ADMIN)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("standard.toml:5: unknown category \\\"malwar\\\""),
        "{body}"
    );
    // still the old behaviour
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode(&ask(cordon.dns, "tracker.ads.test.").await),
        ResponseCode::NXDomain
    );
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_config_reload_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cordon_snapshot_version 1"));
    let (_, status) = http(cordon.http, "GET", "/v1/status", Some(VIEWER)).await;
    assert!(
        status.contains("\"ok\":false") && status.contains("standard.toml"),
        "{status}"
    );

    // broken TOML syntax is reported with its line too
    std::fs::write(
        cordon.policies().join("standard.toml"),
        "default = \"allow\"\nmax_ttl = = 3\n",
    )
    .unwrap();
    let (status, body) = http(cordon.http, "POST", "/v1/reload", Some(ADMIN)).await;
    assert_eq!(status, 422);
    assert!(body.contains("standard.toml:2:"), "{body}");

    // a good file takes effect at once
    std::fs::write(
        cordon.policies().join("standard.toml"),
        "block_categories = [\"ads\"]\n",
    )
    .unwrap();
    let (status, body) = http(cordon.http, "POST", "/v1/reload", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\":2"), "{body}");
    assert_eq!(
        rcode(&ask(cordon.dns, "evil.test.").await),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(&ask(cordon.dns, "tracker.ads.test.").await),
        ResponseCode::NXDomain
    );
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(metrics.contains("cordon_config_reload_total{result=\"success\"} 1"));
    assert!(metrics.contains("cordon_snapshot_version 2"));
}

#[tokio::test]
async fn reload_needs_an_admin_token() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let (status, body) = http(cordon.http, "POST", "/v1/reload", None).await;
    assert_eq!(status, 401);
    assert!(body.contains("\"error\""), "{body}");
    assert_eq!(
        http(cordon.http, "POST", "/v1/reload", Some("wrong"))
            .await
            .0,
        401
    );
    assert_eq!(
        http(cordon.http, "POST", "/v1/reload", Some(VIEWER))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn explain_traces_the_decision() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let (status, body) = http(
        cordon.http,
        "GET",
        "/v1/explain?client=127.0.0.3&name=www.allowed.test",
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trace["device"], "C02ISOLATED");
    assert_eq!(trace["group"], "restricted");
    assert_eq!(trace["policy"], "isolation");
    assert_eq!(trace["decision"], "block");
    let (_, body) = http(
        cordon.http,
        "GET",
        "/v1/explain?client=127.0.0.1&name=sub.evil.test&type=AAAA",
        Some(VIEWER),
    )
    .await;
    let trace: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trace["group"], "standard");
    assert_eq!(trace["categories"][0], "malware");
    assert_eq!(trace["type"], "AAAA");
    let (status, body) = http(
        cordon.http,
        "GET",
        "/v1/explain?client=nonsense&name=x.test",
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("\"field\":\"client\""), "{body}");
    assert_eq!(
        http(cordon.http, "GET", "/v1/explain?name=x.test", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    assert_eq!(http(cordon.http, "GET", "/healthz", None).await.0, 200);
    assert_eq!(http(cordon.http, "GET", "/readyz", None).await.0, 200);
    ask(cordon.dns, "evil.test.").await;
    let (_, metrics) = http(cordon.http, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("cordon_dns_blocked_total{category=\"malware\",group=\"standard\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cordon_dns_queries_total{decision=\"blocked\",group=\"standard\",qtype=\"A\",transport=\"udp\"} 1"));
    assert!(metrics.contains("cordon_category_domains{category=\"malware\"} 2"));
    let (status, body) = http(cordon.http, "GET", "/nope", None).await;
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));
}

/// Isolates three devices, one per source: the MDM (the check-in Mac at 127.0.0.7 in group
/// 42), a responder's hold (C02HELD at 127.0.0.23), and config (C02ISOLATED at 127.0.0.3).
/// Returns their device ids.
async fn isolate_three(http_addr: std::net::SocketAddr) -> Vec<String> {
    let checkin = checkin("127.0.0.7");
    assert_eq!(webhook(http_addr, &checkin).await.0, 200);
    let added = fixture("smart-group-computer-added.json", &[]);
    assert_eq!(webhook(http_addr, &added).await.0, 200);
    let (status, body) = http_json(
        http_addr,
        "POST",
        "/v1/devices/C02HELD/isolation",
        Some(RESPONDER),
        r#"{"reason":"EDR alert","ticket":"IR-4"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut ids = Vec::new();
    for alias in ["C02ZK1ABMD6T", "C02HELD", "C02ISOLATED"] {
        let info = device_info(http_addr, alias).await.unwrap();
        assert_eq!(info["group"], "restricted", "{info}");
        ids.push(info["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids
}

/// The three devices of [`isolate_three`] are still isolated, by DNS and by the API.
async fn still_isolated(
    dns: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
    ids: &[String],
) {
    for from in [[127, 0, 0, 7], [127, 0, 0, 23], [127, 0, 0, 3]] {
        let answer = ask_from(dns, from, "www.allowed.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{from:?}");
        assert!(ede(&answer).unwrap().1.contains("group restricted"));
    }
    let mut isolated = isolated_ids(http_addr).await;
    isolated.sort();
    assert_eq!(isolated, ids);
    let held = device_info(http_addr, "C02HELD").await.unwrap();
    assert_eq!(held["isolation"]["ticket"], "IR-4", "{held}");
    let mac = device_info(http_addr, "C02ZK1ABMD6T").await.unwrap();
    assert_eq!(
        mac["uem_groups"],
        serde_json::json!(["jamf:computer-group:42 (Jamf Protect - High)"]),
        "{mac}"
    );
}

/// A standard.toml that also denies social.test, so that a reload shows.
const STANDARD_DENYING_SOCIAL: &str = r#"
default = "allow"
allow = ["allowed-ad.ads.test", "both.test"]
deny = ["both.test", "*.denied.test", "social.test"]
block_categories = ["malware", "ads"]
blocked_ttl = 7
max_ttl = 300
"#;

#[tokio::test]
async fn a_reload_keeps_every_isolation() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config
        .identity
        .static_bindings
        .push(cordon::config::StaticEntry {
            cidr: "127.0.0.23/32".into(),
            device: "C02HELD".into(),
        });
    let cordon = start_cordon_with(dir, config).await;
    let ids = isolate_three(cordon.http).await;
    assert_eq!(
        rcode(&ask(cordon.dns, "social.test.").await),
        ResponseCode::NoError
    );
    std::fs::write(
        cordon.policies().join("standard.toml"),
        STANDARD_DENYING_SOCIAL,
    )
    .unwrap();
    let (status, body) = http(cordon.http, "POST", "/v1/reload", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rcode(&ask(cordon.dns, "social.test.").await),
        ResponseCode::NXDomain,
        "the new policy is in force"
    );
    still_isolated(cordon.dns, cordon.http, &ids).await;
}

#[tokio::test]
async fn sighup_reloads_the_binary_and_keeps_every_isolation() {
    let upstream = start_upstream().await;
    let binary = Binary::start(
        upstream.addr,
        "[[identity.static]]\ncidr = \"127.0.0.3/32\"\ndevice = \"C02ISOLATED\"\n\
         [[identity.static]]\ncidr = \"127.0.0.23/32\"\ndevice = \"C02HELD\"\n",
    )
    .await;
    let ids = isolate_three(binary.http).await;
    assert_eq!(
        rcode(&ask(binary.dns, "social.test.").await),
        ResponseCode::NoError
    );
    std::fs::write(
        binary.dir.path().join("policies/standard.toml"),
        STANDARD_DENYING_SOCIAL,
    )
    .unwrap();
    binary.signal(libc::SIGHUP);
    let reloads = "cordon_config_reload_total{result=\"success\"}";
    assert!(
        eventually(std::time::Duration::from_secs(30), || async {
            metric(binary.http, reloads).await == 1.0
        })
        .await,
        "{}",
        binary.log_text()
    );
    assert_eq!(
        rcode(&ask(binary.dns, "social.test.").await),
        ResponseCode::NXDomain,
        "the new policy is in force"
    );
    still_isolated(binary.dns, binary.http, &ids).await;
}
