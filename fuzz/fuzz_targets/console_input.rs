//! What a browser sends the console besides its forms (which serde_urlencoded reads): the
//! `Cookie` header, from which `session::cookie` picks the session id, and the values that
//! links carry back (`page::link`). Neither may panic; a session id never spans two cookies,
//! and every value a link carries reads back as it was.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use cordon::api::console::page::link;
use cordon::api::console::session::{cookie, COOKIE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value);
        if let Some(id) = cookie(&headers) {
            assert!(!id.contains(';'), "{id}");
            let text = String::from_utf8_lossy(data);
            assert!(text.contains(&format!("{COOKIE}={id}")), "{text}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let url = link("/console/device", &[("id", text)]);
        let (_, query) = url.split_once('?').expect("a query");
        let back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back, [("id".to_string(), text.to_string())], "{url}");
    }
});
