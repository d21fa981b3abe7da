//! Every list format (`policy::load::parse_list` and `parse_reader`): plain domains and hosts
//! files, AdBlock, dnsmasq, RPZ and Unbound local-zone, detected line by line. Lists come from
//! the policy directory or a download, so any bytes may be in them. A list held in memory and
//! the same list read as a stream must give the same entries and the same counts.
#![no_main]

use cordon::policy::load::{parse_list, parse_reader, ListEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut streamed: Vec<ListEntry> = Vec::new();
    let stats = parse_reader(data, |e| streamed.push(e)).expect("reading a slice cannot fail");
    for e in &streamed {
        assert!(!e.domain.is_empty());
        assert_eq!(
            e.domain,
            e.domain.to_ascii_lowercase(),
            "names are normalised"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut held: Vec<ListEntry> = Vec::new();
        let stats_held = parse_list(text, |e| held.push(e));
        assert_eq!(held, streamed);
        assert_eq!(stats_held, stats);
    }
});
