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
