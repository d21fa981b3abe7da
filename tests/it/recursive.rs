//! Recursive mode: Cordon resolves from a root it is given (NSD servers on 127.0.53.x, see
//! hierarchy.rs) with the same cache and policy checks as forwarding.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::hierarchy::{Hierarchy, Signing, DEAD, NETWORK, ROOT};
use crate::support::*;

/// Cordon in recursive mode with `hints` as its root hints.
async fn start_recursive(hints: &[&str], tree: &Hierarchy, dnssec: bool) -> Cordon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &[]);
    config.upstream.mode = "recursive".into();
    config.upstream.root_hints = hints.iter().map(|h| h.to_string()).collect();
    config.upstream.allow_servers = vec![NETWORK.into()];
    config.upstream.timeout_ms = 4000;
    config.upstream.dnssec = dnssec;
    if let Some(anchor) = &tree.trust_anchor {
        config.upstream.trust_anchor = anchor.clone();
    }
    start_cordon_with(dir, config).await
}

#[tokio::test]
async fn a_name_under_the_leaf_resolves_through_the_hierarchy_then_from_the_cache() {
    let Some(tree) = Hierarchy::start(Signing::Unsigned).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, false).await;
    let before = tree.queries();
    let answer = ask(cordon.dns, "www.leaf.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert!(answer.metadata.recursion_available);
    assert!(!answer.metadata.authentic_data, "not validated");
    // the standard policy caps TTLs at 300 s
    assert_eq!(answer.answers[0].ttl, 300);
    let asked = tree.queries();
    assert!(asked > before, "the tree was asked");
    let hits = metric(cordon.http, "cordon_cache_hits_total").await;
    let again = ask_with(
        cordon.dns,
        "WWW.Leaf.Test.",
        RecordType::A,
        Ask {
            tcp: true,
            ..Ask::default()
        },
    )
    .await;
    assert_eq!(addresses(&again), vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert_eq!(
        metric(cordon.http, "cordon_cache_hits_total").await,
        hits + 1.0
    );
    assert_eq!(
        tree.queries(),
        asked,
        "the second answer came from the cache"
    );
    let ok = metric(
        cordon.http,
        "cordon_upstream_requests_total{result=\"ok\",upstream=\"recursive\"}",
    )
    .await;
    assert_eq!(ok, 1.0);
}

#[tokio::test]
async fn a_cname_across_zones_resolves_and_a_blocked_target_is_blocked() {
    let Some(tree) = Hierarchy::start(Signing::Unsigned).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, false).await;
    let answer = ask(cordon.dns, "alias.leaf.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 20)]);
    // lure.leaf.test is allowed, but its CNAME leads into evil.test, a malware domain
    for _ in 0..2 {
        let answer = ask(cordon.dns, "lure.leaf.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain);
        assert!(answer.answers.is_empty());
        let (_, why) = ede(&answer).expect("the reason");
        assert!(why.contains("CNAME target host.evil.test"), "{why}");
    }
}

#[tokio::test]
async fn nxdomain_from_the_leaf_comes_back_with_its_soa() {
    let Some(tree) = Hierarchy::start(Signing::Unsigned).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, false).await;
    for _ in 0..2 {
        let answer = ask(cordon.dns, "missing.leaf.test.").await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain);
        assert!(answer.answers.is_empty());
        assert_eq!(answer.authorities.len(), 1);
        assert_eq!(answer.authorities[0].name.to_string(), "leaf.test.");
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA);
    }
    // NODATA: the name is there, the type is not
    let answer = ask_with(
        cordon.dns,
        "www.leaf.test.",
        RecordType::AAAA,
        Ask::default(),
    )
    .await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert!(answer.answers.is_empty());
}

#[tokio::test]
async fn a_policy_blocked_name_never_leaves_cordon() {
    let Some(tree) = Hierarchy::start(Signing::Unsigned).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, false).await;
    let before = tree.queries();
    for name in ["host.evil.test.", "c2.test."] {
        let answer = ask(cordon.dns, name).await;
        assert_eq!(rcode(&answer), ResponseCode::NXDomain, "{name}");
        assert!(ede(&answer).is_some(), "{name}: the reason");
    }
    assert_eq!(tree.queries(), before, "the tree heard nothing");
    // and the count does move when a name is allowed
    ask(cordon.dns, "www.leaf.test.").await;
    assert!(tree.queries() > before);
}

#[tokio::test]
async fn a_dead_root_hint_with_a_live_second_one_still_resolves() {
    let Some(tree) = Hierarchy::start(Signing::Unsigned).await else {
        return;
    };
    let cordon = start_recursive(&[DEAD, ROOT], &tree, false).await;
    let answer = ask(cordon.dns, "www.leaf.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 10)]);
}

/// A query that asks for AD (RFC 6840 §5.7), over UDP from 127.0.0.1.
async fn ask_ad(cordon: &Cordon, name: &str) -> hickory_proto::op::Message {
    let mut query = query_message(name, RecordType::A, true);
    query.metadata.authentic_data = true;
    let raw = exchange_raw(cordon.dns, &query.to_vec().unwrap(), Ask::default())
        .await
        .expect("an answer");
    hickory_proto::op::Message::from_vec(&raw).unwrap()
}

#[tokio::test]
async fn a_signed_leaf_validates_with_the_test_roots_key() {
    let Some(tree) = Hierarchy::start(Signing::Signed).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, true).await;
    let answer = ask_ad(&cordon, "www.leaf.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::NoError);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert!(answer.metadata.authentic_data, "validated: AD");
    // from the cache, AD only for those who ask
    let plain = ask(cordon.dns, "www.leaf.test.").await;
    assert_eq!(addresses(&plain), vec![Ipv4Addr::new(192, 0, 2, 10)]);
    assert!(!plain.metadata.authentic_data);
    assert!(
        ask_ad(&cordon, "www.leaf.test.")
            .await
            .metadata
            .authentic_data
    );
}

#[tokio::test]
async fn a_tampered_signed_leaf_fails_validation_with_servfail() {
    let Some(tree) = Hierarchy::start(Signing::Tampered).await else {
        return;
    };
    let cordon = start_recursive(&[ROOT], &tree, true).await;
    let answer = ask_ad(&cordon, "www.leaf.test.").await;
    assert_eq!(rcode(&answer), ResponseCode::ServFail);
    assert!(answer.answers.is_empty(), "bogus data is never served");
    let (code, _) = ede(&answer).expect("the reason");
    assert_eq!(code, 6, "EDE 6: DNSSEC Bogus");
}
