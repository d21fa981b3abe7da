//! The readers of Jamf Pro's API answers (src/jamf/api.rs): a Classic API group's members
//! (computer and mobile device groups), a computers-inventory page, and the OAuth token
//! answer. The first byte picks the reader (and for a computer, the next two its id).
#![no_main]

use cordon::jamf::api::{parse_computer, parse_group_members, parse_token, Pick};
use libfuzzer_sys::fuzz_target;

const URL: &str = "https://jamf.example/fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => {
            if let Ok(ids) = parse_group_members(body, URL, "computer_group", "computers") {
                let mut seen = std::collections::HashSet::new();
                assert!(
                    ids.iter().all(|id| seen.insert(*id)),
                    "ids are deduplicated"
                );
            }
        }
        1 => {
            let _ = parse_group_members(body, URL, "mobile_device_group", "mobile_devices");
        }
        2 => {
            // The computer looked for: the next two bytes.
            let [a, b, body @ ..] = body else {
                return;
            };
            let id = i64::from(u16::from_be_bytes([*a, *b]));
            if let Ok(Some(record)) = parse_computer(body, URL, Pick::Id(id)) {
                assert_eq!(record.device.jamf_id, id);
            }
        }
        _ => {
            if let Ok((token, _lifetime)) = parse_token(body, URL) {
                assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
});
