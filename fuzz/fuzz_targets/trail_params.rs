//! What a client puts in the trail's query string: the page cursor (`trail::Cursor::decode`,
//! which must refuse anything it did not write for this device) and `since` (seconds, an age or
//! an RFC 3339 time, `time::parse_since_ms`). Neither may panic; a cursor that decodes encodes
//! back to an equal one, and an RFC 3339 time that reads writes back to the same instant.
#![no_main]

use cordon::policy::DeviceId;
use cordon::time::{parse_rfc3339_ms, parse_since_ms, rfc3339_ms};
use cordon::trail::Cursor;
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cursor) = Cursor::decode(text, DeviceId(7)) {
        assert_eq!(cursor.device, DeviceId(7));
        assert!(cursor.after >= 0);
        assert_eq!(Cursor::decode(&cursor.encode(), DeviceId(7)), Ok(cursor));
    }
    if let Some(ms) = parse_since_ms(text, NOW_MS) {
        assert!(ms >= 0, "{text} -> {ms}");
    }
    if let Some(ms) = parse_rfc3339_ms(text) {
        assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms), "{text}");
    }
});
