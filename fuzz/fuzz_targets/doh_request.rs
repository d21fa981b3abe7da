//! DoH request decoding (src/dns/doh.rs): the first byte picks GET or POST. GET: the rest is
//! a request target: its path read by `dns::doh::token_in` (the device token after
//! `/dns-query/`, percent-decoded) and its query string by `dns::doh::dns_param`, whose value is
//! decoded by `dns::doh::decode_get_param` (base64url), then parsed as a query. POST: the rest
//! is the body, parsed as a query as it comes. A parsed query's answer gets
//! `dns::wire::min_ttl`, which sets the HTTP Cache-Control max-age.
#![no_main]

use cordon::dns::doh::{decode_get_param, dns_param, token_in};
use cordon::dns::wire;
use libfuzzer_sys::fuzz_target;

fn body(query: &[u8]) {
    if let Ok(q) = wire::parse_query(query) {
        let _ = q.edns_options();
        let mut out = Vec::new();
        cordon::dns::answer::error_for(&mut out, &q, 2, None);
        assert_eq!(wire::min_ttl(&out), None);
    }
    let _ = wire::min_ttl(query);
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    if method & 1 == 0 {
        // hyper hands the service a parsed URI: what is not UTF-8 never reaches it.
        let Ok(target) = std::str::from_utf8(rest) else {
            return;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if let Some(Some(token)) = token_in(path) {
            assert!(!token.is_empty(), "{path}");
        }
        let Some(param) = dns_param(query) else {
            return;
        };
        if let Ok(query) = decode_get_param(&param) {
            // The handler refuses more than a DNS message can hold (413).
            if query.len() <= 65535 {
                body(&query);
            }
        }
    } else {
        body(rest);
    }
});
