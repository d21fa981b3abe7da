//! `dns::edns::read_identity_options`: the RDATA of a trusted forwarder's OPT record (Client
//! Subnet, Umbrella's device id options, the configured text option). The first two bytes
//! choose the configured text code (or none); the rest is the RDATA.
#![no_main]

use cordon::dns::edns::{read_identity_options, DeviceIdOption};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text_code, rdata) = match data {
        [a, b, rest @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // Code 0 stands for "no text option configured".
            ((code != 0).then_some(code), rest)
        }
        _ => (None, data),
    };
    if let Ok(found) = read_identity_options(rdata, text_code) {
        if let Some(subnet) = found.subnet {
            let max = if subnet.addr.is_ipv4() { 32 } else { 128 };
            assert!(subnet.source_prefix > 0 && subnet.source_prefix <= max);
        }
        if let Some(device) = &found.device {
            let alias = device.alias();
            if let DeviceIdOption::Umbrella(_) = device {
                assert_eq!(alias.len(), 16);
            }
        }
    }
});
