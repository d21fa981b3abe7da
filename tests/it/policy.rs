//! Decisions as a client sees them: which names resolve, and how a block is answered.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

#[tokio::test]
async fn a_listed_malware_domain_gets_nxdomain_with_soa_and_ede() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    for name in ["evil.test.", "sub.evil.test.", "c2.test."] {
        let answer = ask(cordon.dns, name).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{name}");
        assert!(answer.answers.is_empty());
        let soa = &answer.authorities[0];
        assert_eq!(soa.ttl, 7, "the SOA's TTL is the policy's blocked_ttl");
        let RData::SOA(soa) = &soa.data else {
            panic!("an SOA in the authority section")
        };
        assert_eq!(
            soa.minimum, 7,
            "the negative TTL is the policy's blocked_ttl"
        );
        let (code, text) = ede(&answer).expect("an Extended DNS Error");
        assert_eq!(code, 15);
        assert!(text.contains("category malware"), "{text}");
        assert!(text.contains("group standard"), "{text}");
    }
}

#[tokio::test]
async fn an_allow_rule_beats_a_blocked_category() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let ad = ask(cordon.dns, "tracker.ads.test.").await;
    assert_eq!(rcode(&ad), ResponseCode::NXDomain);
    assert_eq!(
        ede(&ad).unwrap().0,
        17,
        "a content category is Filtered, not Blocked"
    );
    let allowed = ask(cordon.dns, "allowed-ad.ads.test.").await;
    assert_eq!(addresses(&allowed), vec![Ipv4Addr::new(192, 0, 2, 17)]);
}

#[tokio::test]
async fn a_deny_rule_beats_an_allow_rule() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let answer = ask(cordon.dns, "both.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("deny rule both.test"));
    let wildcard = ask(cordon.dns, "a.b.denied.test.").await;
    assert!(ede(&wildcard)
        .unwrap()
        .1
        .contains("deny rule *.denied.test"));
}

#[tokio::test]
async fn the_isolation_policy_allows_only_its_allow_list() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let isolated = [127, 0, 0, 3];
    let blocked = ask_from(cordon.dns, isolated, "www.allowed.test.").await;
    assert_eq!(rcode(&blocked), ResponseCode::NXDomain);
    let (_, text) = ede(&blocked).unwrap();
    assert!(text.contains("group restricted"), "{text}");
    assert_eq!(
        addresses(&ask_from(cordon.dns, isolated, "x.mdm.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 50)]
    );
    assert_eq!(
        addresses(&ask_from(cordon.dns, isolated, "api.vendor.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 51)]
    );
    // an allowed name that points into a CDN keeps working: default-block does not apply to targets
    let cdn = ask_from(cordon.dns, isolated, "cdn.mdm.test.").await;
    assert_eq!(addresses(&cdn), vec![Ipv4Addr::new(192, 0, 2, 52)]);
    // the same names stay free for everyone else
    assert_eq!(
        addresses(&ask(cordon.dns, "www.allowed.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 1)]
    );
}

#[tokio::test]
async fn an_unknown_client_falls_to_the_default_group() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let answer = ask_from(cordon.dns, [127, 0, 0, 9], "evil.test.").await;
    assert!(ede(&answer).unwrap().1.contains("group standard"));
    assert_eq!(
        addresses(&ask_from(cordon.dns, [127, 0, 0, 9], "social.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 40)]
    );
}

#[tokio::test]
async fn a_client_network_puts_queries_in_its_group_with_its_response_mode() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let answer = ask_from(cordon.dns, [127, 0, 0, 5], "social.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::Refused);
    assert!(ede(&answer).unwrap().1.contains("category social_networks"));
}

#[tokio::test]
async fn a_cname_into_a_blocked_domain_is_blocked_from_upstream_and_from_the_cache() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let hits = || metric(cordon.http, "cordon_cache_hits_total");
    let misses = || metric(cordon.http, "cordon_cache_misses_total");
    let (hits0, misses0) = (hits().await, misses().await);
    // standard blocks the ads category, which holds the CNAME's target
    let standard_blocks = |answer: &hickory_proto::op::Message| {
        assert_eq!(rcode(answer), ResponseCode::NXDomain);
        assert!(
            answer.answers.is_empty(),
            "no record of the blocked chain leaks"
        );
        let (_, text) = ede(answer).unwrap();
        assert!(text.contains("CNAME target tracker.ads.test"), "{text}");
        assert!(text.contains("category ads"), "{text}");
        assert!(text.contains("group standard"), "{text}");
    };
    standard_blocks(&ask(cordon.dns, "cname.allowed.test.").await);
    assert_eq!(
        misses().await,
        misses0 + 1.0,
        "the first answer came from upstream"
    );
    assert_eq!(hits().await, hits0);
    standard_blocks(&ask(cordon.dns, "cname.allowed.test.").await);
    assert_eq!(hits().await, hits0 + 1.0, "the second came from the cache");

    // the same cached chain for a client in `kids` (policy limited: ads are not blocked)
    let kids = ask_from(cordon.dns, [127, 0, 0, 5], "cname.allowed.test.").await;
    assert_eq!(rcode(&kids), ResponseCode::NoError);
    assert_eq!(addresses(&kids), vec![Ipv4Addr::new(192, 0, 2, 16)]);
    assert!(
        kids.answers
            .iter()
            .any(|r| matches!(&r.data, RData::CNAME(c) if c.0.to_string() == "tracker.ads.test.")),
        "{:?}",
        kids.answers
    );
    assert_eq!(hits().await, hits0 + 2.0, "from the cache too");
    // and the kids' answer did not change what standard gets
    standard_blocks(&ask(cordon.dns, "cname.allowed.test.").await);
    assert_eq!(hits().await, hits0 + 3.0);
    assert_eq!(misses().await, misses0 + 1.0, "upstream was asked once");
}

#[tokio::test]
async fn blocks_answer_every_query_type() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    for qtype in [RecordType::AAAA, RecordType::TXT, RecordType::HTTPS] {
        let answer = ask_with(cordon.dns, "evil.test.", qtype, Ask::default()).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{qtype}");
    }
}

#[tokio::test]
async fn an_isolated_device_never_gets_a_chain_that_reaches_a_security_category() {
    let upstream = start_upstream().await;
    let cordon = start_cordon(&upstream).await;
    let isolated = [127, 0, 0, 3];
    let hits = || metric(cordon.http, "cordon_cache_hits_total");
    let misses = || metric(cordon.http, "cordon_cache_misses_total");
    // the test isolation policy names no category at all: a default-block policy checks CNAME
    // targets against every security category unless it opts out
    let chains = [
        ("one-hop.mdm.test.", "evil.test", "malware"),
        ("two-hops.mdm.test.", "sub.evil.test", "malware"),
        ("lure.mdm.test.", "login.phish.test", "phishing"),
    ];
    for (name, target, category) in chains {
        let blocked = |answer: &hickory_proto::op::Message| {
            assert_eq!(rcode(answer), ResponseCode::NXDomain, "{name}");
            assert!(
                answer.answers.is_empty(),
                "{name}: nothing of the chain leaks"
            );
            let (code, text) = ede(answer).expect("an Extended DNS Error");
            assert_eq!(code, 15, "{name}: a security category is Blocked");
            assert!(text.contains(&format!("CNAME target {target}")), "{text}");
            assert!(text.contains(&format!("category {category}")), "{text}");
            assert!(text.contains("group restricted"), "{text}");
        };
        let (hits0, misses0) = (hits().await, misses().await);
        blocked(&ask_from(cordon.dns, isolated, name).await);
        assert_eq!(misses().await, misses0 + 1.0, "{name}: from upstream");
        assert_eq!(hits().await, hits0);
        blocked(&ask_from(cordon.dns, isolated, name).await);
        assert_eq!(hits().await, hits0 + 1.0, "{name}: from the cache");
    }
    // standard does not block phishing: the same cached chain resolves for its devices
    let standard = ask(cordon.dns, "lure.mdm.test.").await;
    assert_eq!(rcode(&standard), ResponseCode::NoError);
    assert_eq!(addresses(&standard), vec![Ipv4Addr::new(192, 0, 2, 70)]);
    // and the isolated device still gets what its allow-list holds
    assert_eq!(
        addresses(&ask_from(cordon.dns, isolated, "cdn.mdm.test.").await),
        vec![Ipv4Addr::new(192, 0, 2, 52)]
    );
}

#[tokio::test]
async fn static_bindings_and_client_networks_written_as_mapped_addresses_match_ipv4_clients() {
    let upstream = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[upstream.addr]);
    config.identity.static_bindings = vec![cordon::config::StaticEntry {
        cidr: "::ffff:127.0.0.48".into(),
        device: "C02ISOLATED".into(),
    }];
    let groups = config.policies.dir.join("groups.toml");
    let text = std::fs::read_to_string(&groups).unwrap().replace(
        "clients = [\"127.0.0.5/32\"]",
        "clients = [\"::ffff:127.0.0.48/126\"]",
    );
    std::fs::write(&groups, text).unwrap();
    let cordon = start_cordon_with(dir, config).await;
    // 127.0.0.48 is C02ISOLATED's, by config: isolated
    let answer = ask_from(cordon.dns, [127, 0, 0, 48], "www.allowed.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NXDomain);
    assert!(ede(&answer).unwrap().1.contains("group restricted"));
    // 127.0.0.49 is in kids' network, ::ffff:127.0.0.48/126 (127.0.0.48/30)
    let social = ask_from(cordon.dns, [127, 0, 0, 49], "social.test.").await;
    assert_eq!(rcode(&social), ResponseCode::Refused);
    assert!(ede(&social).unwrap().1.contains("group kids"));
    // outside both
    let free = ask_from(cordon.dns, [127, 0, 0, 52], "social.test.").await;
    assert_eq!(rcode(&free), ResponseCode::NoError);
}

/// `cordon check` on the test policies, with `isolation` as given; its exit status and output.
fn check_with_isolation(isolation: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(&policies);
    std::fs::write(policies.join("isolation.toml"), isolation).unwrap();
    let config = dir.path().join("cordon.toml");
    std::fs::write(&config, "[policies]\ndir = \"policies\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("cordon check runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn check_warns_when_a_default_block_policy_leaves_cname_targets_unchecked() {
    let opted_out = "default = \"block\"\nallow = [\"*.mdm.test\"]\nblock_cname_categories = []\n";
    let (code, text) = check_with_isolation(opted_out);
    assert_eq!(code, Some(0), "a warning is not an error: {text}");
    assert!(text.contains("warning"), "{text}");
    assert!(text.contains("isolation.toml:3"), "{text}");
    assert!(text.contains("CNAME targets"), "{text}");
    assert!(
        text.contains("malware") && text.contains("phishing"),
        "{text}"
    );
    // listing only some security categories leaves the others unchecked
    let partial =
        "default = \"block\"\nallow = [\"*.mdm.test\"]\nblock_cname_categories = [\"malware\"]\n";
    let (code, text) = check_with_isolation(partial);
    assert_eq!(code, Some(0), "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("warning"))
        .unwrap_or_default();
    assert!(warning.contains("phishing"), "{text}");
    assert!(!warning.contains("malware"), "{text}");
    // the default checks them all, and so does a policy that lists them: no warning
    for quiet in [
        "default = \"block\"\nallow = [\"*.mdm.test\"]\n",
        "default = \"block\"\nblock_cname_categories = [\"malware\", \"phishing\"]\n",
    ] {
        let (code, text) = check_with_isolation(quiet);
        assert_eq!(code, Some(0), "{text}");
        assert!(!text.contains("warning"), "{quiet}: {text}");
    }
}
