//! `jamf::events::parse`: a Jamf Pro webhook body, as the API hands it over once the token
//! and content type are checked. What it yields is then translated into neutral requests.
#![no_main]

use cordon::jamf::events::{parse, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse(body) {
        Ok(envelope) => {
            assert!(!envelope.name.ends_with("(TEST)"), "{:?}", envelope.name);
            let _ = cordon::jamf::events::known_event(&envelope.name);
            match &envelope.event {
                Event::GroupChange(_) | Event::Device(_) | Event::Unenrolled(_) | Event::Other => {}
            }
            let _ = format!("{envelope:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), e.field());
        }
    }
});
