//! EDNS options that carry a client's identity through a forwarder: Client Subnet (RFC 7871) and device-id options (Cisco Umbrella's layout, and a plain UTF-8 one on a configured code).
//!
//! Only queries from a configured trusted forwarder are read this way; the caller checks that.
//! The input is the RDATA of one OPT record: options of {code u16, length u16, data}.
//!
//! - **Client Subnet** (code 8, RFC 7871 §6): FAMILY u16 (1 = IPv4, 2 = IPv6), SOURCE
//!   PREFIX-LENGTH u8, SCOPE PREFIX-LENGTH u8, then ADDRESS cut to ceil(source / 8) bytes, with
//!   every bit past the prefix zero. Anything else is malformed, worth a FORMERR. SCOPE is not
//!   read: it means nothing in a query.
//! - **Umbrella device id** (code 26946, 0x6942), as Cisco's Umbrella Network Devices API
//!   documents it ("Identifying DNS traffic"): exactly 15 bytes, `"OpenDNS"` then the 8-byte
//!   device id, e.g. `4f 70 65 6e 44 4e 53 01 23 45 67 89 ab cd ef` for id `0123456789abcdef`.
//! - **Umbrella ident** (code 20292, 0x4F44), the other option that Umbrella's page names; what
//!   real forwarders put in it is dnsmasq's `--umbrella` layout (dnsmasq `src/edns0.c`,
//!   `add_umbrella_opt`): `"ODNS"`, version u8 (1), flags u8, then fields of {type u16, value}
//!   whose size the type fixes: asset id 0x0004 (4), organisation id 0x0008 (4), IPv4 0x0010
//!   (4), IPv6 0x0020 (16), device id 0x0040 (8). Only the device id is read: Umbrella uses the
//!   address for reporting, and the organisation and asset ids name no device.
//! - **Text device id** on the code that config names: the alias as UTF-8 text.
//!
//! Options of other codes are skipped. A second option that says something else than the first
//! (another subnet, another device id) is an error: a forwarder that names two clients for one
//! query is broken, and picking either could put the query in the wrong group.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS Client Subnet (RFC 7871).
pub const CLIENT_SUBNET_CODE: u16 = 8;
/// Umbrella's device id option: `"OpenDNS"` and 8 bytes.
pub const UMBRELLA_DEVICE_CODE: u16 = 26946;
/// Umbrella's identity option in dnsmasq's `--umbrella` layout.
pub const UMBRELLA_IDENT_CODE: u16 = 20292;

const UMBRELLA_DEVICE_MAGIC: &[u8] = b"OpenDNS";
const UMBRELLA_IDENT_MAGIC: &[u8] = b"ODNS";
const UMBRELLA_IDENT_VERSION: u8 = 1;
const UMBRELLA_FIELD_DEVICE: u16 = 0x0040;

/// The client network a forwarder reports, its address padded to a full `IpAddr`, as sent (so
/// that the echo matches the query, RFC 7871 §7.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    pub addr: IpAddr,
    pub source_prefix: u8,
}

impl ClientSubnet {
    /// The client address for identification: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`)
    /// is the IPv4 address it maps, as every binding and network is kept.
    pub fn client(&self) -> IpAddr {
        self.addr.to_canonical()
    }
}

/// A device id a forwarder attached to the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceIdOption {
    /// Umbrella's 8-byte device id (option 26946, or the device field of option 20292).
    Umbrella([u8; 8]),
    /// UTF-8 text on the configured code, as sent.
    Text(String),
}

impl DeviceIdOption {
    /// The device id as an alias value: Umbrella ids as 16 lowercase hex digits, text as given (trimmed, lowercased).
    pub fn alias(&self) -> String {
        match self {
            DeviceIdOption::Umbrella(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
            DeviceIdOption::Text(text) => text.trim().to_ascii_lowercase(),
        }
    }
}

/// What the identity options of one OPT record say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityOptions {
    pub subnet: Option<ClientSubnet>,
    pub device: Option<DeviceIdOption>,
}

/// Why an OPT record's identity options could not be read; each is worth a FORMERR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EdnsError {
    #[error("the OPT record ends inside an option header")]
    TruncatedHeader,
    #[error("EDNS option {code} says {declared} bytes but only {left} are left")]
    TruncatedOption {
        code: u16,
        declared: usize,
        left: usize,
    },
    #[error("client subnet option of {0} bytes is shorter than its 4-byte header")]
    SubnetTooShort(usize),
    #[error("client subnet family {0} is neither 1 (IPv4) nor 2 (IPv6)")]
    UnknownFamily(u16),
    #[error("client subnet source prefix /{prefix} is longer than the address (/{max})")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("client subnet address has {got} bytes where a /{prefix} takes {expected}")]
    AddressLength {
        prefix: u8,
        expected: usize,
        got: usize,
    },
    #[error("client subnet address has bits set past its /{0} prefix")]
    HostBitsSet(u8),
    #[error("two client subnet options disagree")]
    ConflictingSubnets,
    #[error("Umbrella device id option is not \"OpenDNS\" and 8 bytes")]
    UmbrellaDevice,
    #[error("Umbrella identity option is not \"ODNS\", version, flags and whole fields")]
    UmbrellaIdent,
    #[error("device id text is empty, not UTF-8 or has control characters")]
    DeviceIdText,
    #[error("two device id options name different devices")]
    ConflictingDeviceIds,
}

/// Reads the options of one OPT RDATA. Malformed options give Err; unknown options are ignored.
///
/// `text_code` is the configured code of the plain-text device id; it is matched before the
/// known codes, so that config has the last word on what a code means.
pub fn read_identity_options(
    rdata: &[u8],
    text_code: Option<u16>,
) -> Result<IdentityOptions, EdnsError> {
    let mut found = IdentityOptions::default();
    let mut rest = rdata;
    while !rest.is_empty() {
        let (code, data, tail) = split_option(rest)?;
        rest = tail;
        if Some(code) == text_code {
            add_device(&mut found, device_text(data)?)?;
            continue;
        }
        match code {
            CLIENT_SUBNET_CODE => add_subnet(&mut found, client_subnet(data)?)?,
            UMBRELLA_DEVICE_CODE => add_device(&mut found, Some(umbrella_device(data)?))?,
            UMBRELLA_IDENT_CODE => add_device(&mut found, umbrella_ident(data)?)?,
            _ => {}
        }
    }
    Ok(found)
}

/// The first option of `rdata`: its code, its data and what follows it.
fn split_option(rdata: &[u8]) -> Result<(u16, &[u8], &[u8]), EdnsError> {
    let [c0, c1, l0, l1, rest @ ..] = rdata else {
        return Err(EdnsError::TruncatedHeader);
    };
    let code = u16::from_be_bytes([*c0, *c1]);
    let declared = usize::from(u16::from_be_bytes([*l0, *l1]));
    if declared > rest.len() {
        return Err(EdnsError::TruncatedOption {
            code,
            declared,
            left: rest.len(),
        });
    }
    let (data, tail) = rest.split_at(declared);
    Ok((code, data, tail))
}

fn add_subnet(found: &mut IdentityOptions, subnet: Option<ClientSubnet>) -> Result<(), EdnsError> {
    let Some(subnet) = subnet else {
        return Ok(());
    };
    match found.subnet {
        Some(seen) if seen != subnet => Err(EdnsError::ConflictingSubnets),
        _ => {
            found.subnet = Some(subnet);
            Ok(())
        }
    }
}

fn add_device(
    found: &mut IdentityOptions,
    device: Option<DeviceIdOption>,
) -> Result<(), EdnsError> {
    let Some(device) = device else {
        return Ok(());
    };
    match &found.device {
        // Compared as alias values: option 26946 and dnsmasq's 20292 may both carry the same id.
        Some(seen) if seen.alias() != device.alias() => Err(EdnsError::ConflictingDeviceIds),
        Some(_) => Ok(()),
        None => {
            found.device = Some(device);
            Ok(())
        }
    }
}

/// RFC 7871 §6 OPTION-DATA.
fn client_subnet(data: &[u8]) -> Result<Option<ClientSubnet>, EdnsError> {
    let [f0, f1, source, _scope, address @ ..] = data else {
        return Err(EdnsError::SubnetTooShort(data.len()));
    };
    let (family, prefix) = (u16::from_be_bytes([*f0, *f1]), *source);
    let max: u8 = match family {
        1 => 32,
        2 => 128,
        other => return Err(EdnsError::UnknownFamily(other)),
    };
    if prefix > max {
        return Err(EdnsError::PrefixTooLong { prefix, max });
    }
    check_address(address, prefix)?;
    // A /0 names no client: RFC 7871 lets a stub send it to keep its address from being passed on.
    if prefix == 0 {
        return Ok(None);
    }
    let addr = match family {
        1 => IpAddr::V4(Ipv4Addr::from(padded::<4>(address))),
        _ => IpAddr::V6(Ipv6Addr::from(padded::<16>(address))),
    };
    Ok(Some(ClientSubnet {
        addr,
        source_prefix: prefix,
    }))
}

/// The address must be exactly as long as the prefix needs, with nothing set past the prefix.
fn check_address(address: &[u8], prefix: u8) -> Result<(), EdnsError> {
    let expected = usize::from(prefix).div_ceil(8);
    if address.len() != expected {
        return Err(EdnsError::AddressLength {
            prefix,
            expected,
            got: address.len(),
        });
    }
    let used_bits = prefix % 8;
    match address.last() {
        Some(last) if used_bits != 0 && last & (0xff >> used_bits) != 0 => {
            Err(EdnsError::HostBitsSet(prefix))
        }
        _ => Ok(()),
    }
}

/// `address` (at most N bytes, checked by the caller) followed by zeros.
fn padded<const N: usize>(address: &[u8]) -> [u8; N] {
    let mut full = [0; N];
    full[..address.len()].copy_from_slice(address);
    full
}

/// Option 26946: `"OpenDNS"` and the 8-byte device id, nothing more.
fn umbrella_device(data: &[u8]) -> Result<DeviceIdOption, EdnsError> {
    data.strip_prefix(UMBRELLA_DEVICE_MAGIC)
        .and_then(|id| id.try_into().ok())
        .map(DeviceIdOption::Umbrella)
        .ok_or(EdnsError::UmbrellaDevice)
}

/// Option 20292 in dnsmasq's layout: the device id field, if there is one.
fn umbrella_ident(data: &[u8]) -> Result<Option<DeviceIdOption>, EdnsError> {
    let Some([version, _flags, fields @ ..]) = data.strip_prefix(UMBRELLA_IDENT_MAGIC) else {
        return Err(EdnsError::UmbrellaIdent);
    };
    let mut fields: &[u8] = fields;
    if *version != UMBRELLA_IDENT_VERSION {
        // Another version's fields may mean anything: read nothing rather than guess.
        return Ok(None);
    }
    while let [t0, t1, rest @ ..] = fields {
        let field = u16::from_be_bytes([*t0, *t1]);
        let Some(size) = umbrella_field_size(field) else {
            // A field type this reader does not know has no known size, so nothing after it can
            // be found; it is not malformed, so the query is not refused for it.
            return Ok(None);
        };
        if rest.len() < size {
            return Err(EdnsError::UmbrellaIdent);
        }
        let (value, tail) = rest.split_at(size);
        if field == UMBRELLA_FIELD_DEVICE {
            let id = value.try_into().map_err(|_| EdnsError::UmbrellaIdent)?;
            return Ok(Some(DeviceIdOption::Umbrella(id)));
        }
        fields = tail;
    }
    // A lone odd byte is half a field type.
    match fields {
        [] => Ok(None),
        _ => Err(EdnsError::UmbrellaIdent),
    }
}

/// Value sizes of the field types dnsmasq's `--umbrella` writes.
fn umbrella_field_size(field: u16) -> Option<usize> {
    match field {
        0x0004 | 0x0008 | 0x0010 => Some(4), // asset id, organisation id, IPv4 address
        0x0020 => Some(16),                  // IPv6 address
        UMBRELLA_FIELD_DEVICE => Some(8),
        _ => None,
    }
}

/// The configured text option: a non-empty alias without control characters.
fn device_text(data: &[u8]) -> Result<Option<DeviceIdOption>, EdnsError> {
    let text = std::str::from_utf8(data).map_err(|_| EdnsError::DeviceIdText)?;
    if text.trim().is_empty() || text.chars().any(char::is_control) {
        return Err(EdnsError::DeviceIdText);
    }
    Ok(Some(DeviceIdOption::Text(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT_CODE: u16 = 65_100;

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut out = code.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn ecs(family: u16, source: u8, address: &[u8]) -> Vec<u8> {
        let mut data = family.to_be_bytes().to_vec();
        data.extend_from_slice(&[source, 0]);
        data.extend_from_slice(address);
        option(CLIENT_SUBNET_CODE, &data)
    }

    fn read(rdata: &[u8]) -> Result<IdentityOptions, EdnsError> {
        read_identity_options(rdata, Some(TEXT_CODE))
    }

    fn subnet(rdata: &[u8]) -> Result<Option<ClientSubnet>, EdnsError> {
        read(rdata).map(|found| found.subnet)
    }

    const UMBRELLA_ID: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];

    #[test]
    fn ecs_v4_slash_24() {
        let found = subnet(&ecs(1, 24, &[192, 0, 2])).unwrap().unwrap();
        assert_eq!(found.addr, "192.0.2.0".parse::<IpAddr>().unwrap());
        assert_eq!(found.source_prefix, 24);
    }

    #[test]
    fn ecs_v4_odd_prefix_and_full_address() {
        let found = subnet(&ecs(1, 20, &[10, 1, 0x30])).unwrap().unwrap();
        assert_eq!(found.addr, "10.1.48.0".parse::<IpAddr>().unwrap());
        let host = subnet(&ecs(1, 32, &[10, 1, 2, 3])).unwrap().unwrap();
        assert_eq!(host.addr, "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ecs_v6_slash_56() {
        let address = [0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56];
        let found = subnet(&ecs(2, 56, &address)).unwrap().unwrap();
        assert_eq!(
            found.addr,
            "2001:db8:1234:5600::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(found.source_prefix, 56);
    }

    #[test]
    fn ecs_slash_0_names_no_client() {
        assert_eq!(subnet(&ecs(1, 0, &[])), Ok(None));
        assert_eq!(subnet(&ecs(2, 0, &[])), Ok(None));
    }

    #[test]
    fn ecs_scope_is_not_read() {
        let mut rdata = ecs(1, 24, &[192, 0, 2]);
        rdata[7] = 24; // SCOPE PREFIX-LENGTH
        assert!(subnet(&rdata).unwrap().is_some());
    }

    #[test]
    fn ecs_malformed() {
        let cases: [(Vec<u8>, EdnsError); 8] = [
            (option(8, &[0, 1, 24]), EdnsError::SubnetTooShort(3)),
            (ecs(3, 8, &[10]), EdnsError::UnknownFamily(3)),
            (
                ecs(1, 33, &[10, 0, 0, 0, 0]),
                EdnsError::PrefixTooLong {
                    prefix: 33,
                    max: 32,
                },
            ),
            (
                ecs(2, 129, &[0; 17]),
                EdnsError::PrefixTooLong {
                    prefix: 129,
                    max: 128,
                },
            ),
            (
                ecs(1, 24, &[192, 0, 2, 0]),
                EdnsError::AddressLength {
                    prefix: 24,
                    expected: 3,
                    got: 4,
                },
            ),
            (
                ecs(1, 24, &[192, 0]),
                EdnsError::AddressLength {
                    prefix: 24,
                    expected: 3,
                    got: 2,
                },
            ),
            (ecs(1, 20, &[10, 1, 0x31]), EdnsError::HostBitsSet(20)),
            (
                ecs(2, 0, &[0]),
                EdnsError::AddressLength {
                    prefix: 0,
                    expected: 0,
                    got: 1,
                },
            ),
        ];
        for (rdata, error) in cases {
            assert_eq!(read(&rdata), Err(error), "{rdata:02x?}");
        }
    }

    #[test]
    fn ecs_twice_must_agree() {
        let one = ecs(1, 24, &[192, 0, 2]);
        assert!(read(&[one.clone(), one.clone()].concat()).is_ok());
        let other = ecs(1, 24, &[198, 51, 100]);
        assert_eq!(
            read(&[one, other].concat()),
            Err(EdnsError::ConflictingSubnets)
        );
    }

    #[test]
    fn umbrella_device_option() {
        // The example from Umbrella's documentation.
        let rdata = [
            0x69, 0x42, 0x00, 0x0f, 0x4f, 0x70, 0x65, 0x6e, 0x44, 0x4e, 0x53, 0x01, 0x23, 0x45,
            0x67, 0x89, 0xab, 0xcd, 0xef,
        ];
        let device = read(&rdata).unwrap().device.unwrap();
        assert_eq!(device, DeviceIdOption::Umbrella(UMBRELLA_ID));
        assert_eq!(device.alias(), "0123456789abcdef");
    }

    #[test]
    fn umbrella_device_option_malformed() {
        for data in [
            &b"OpenDNS\x01\x02"[..],
            b"OpenDNX\x01\x23\x45\x67\x89\xab\xcd\xef",
            b"",
        ] {
            let rdata = option(UMBRELLA_DEVICE_CODE, data);
            assert_eq!(read(&rdata), Err(EdnsError::UmbrellaDevice), "{data:02x?}");
        }
        let long = [b"OpenDNS".as_slice(), &UMBRELLA_ID, &[0]].concat();
        assert_eq!(
            read(&option(UMBRELLA_DEVICE_CODE, &long)),
            Err(EdnsError::UmbrellaDevice)
        );
    }

    /// What dnsmasq `--umbrella=orgid:1234,deviceid:0123456789abcdef` sends for 192.0.2.7.
    fn dnsmasq_ident(device: bool) -> Vec<u8> {
        let mut data = b"ODNS\x01\x00".to_vec();
        data.extend_from_slice(&[0x00, 0x08, 0x00, 0x00, 0x04, 0xd2]);
        data.extend_from_slice(&[0x00, 0x10, 192, 0, 2, 7]);
        if device {
            data.extend_from_slice(&[0x00, 0x40]);
            data.extend_from_slice(&UMBRELLA_ID);
        }
        data.extend_from_slice(&[0x00, 0x04, 0x00, 0x00, 0x00, 0x09]);
        option(UMBRELLA_IDENT_CODE, &data)
    }

    #[test]
    fn umbrella_ident_option() {
        let found = read(&dnsmasq_ident(true)).unwrap();
        assert_eq!(found.device, Some(DeviceIdOption::Umbrella(UMBRELLA_ID)));
        assert_eq!(read(&dnsmasq_ident(false)), Ok(IdentityOptions::default()));
    }

    #[test]
    fn umbrella_ident_malformed_or_unknown() {
        let mut truncated = dnsmasq_ident(true);
        truncated.truncate(truncated.len() - 11); // cut inside the device id
        truncated[3] -= 11;
        assert_eq!(read(&truncated), Err(EdnsError::UmbrellaIdent));

        let bad_magic = option(UMBRELLA_IDENT_CODE, b"OPEN\x01\x00");
        assert_eq!(read(&bad_magic), Err(EdnsError::UmbrellaIdent));

        let half_type = option(UMBRELLA_IDENT_CODE, b"ODNS\x01\x00\x00");
        assert_eq!(read(&half_type), Err(EdnsError::UmbrellaIdent));

        let version_2 = option(UMBRELLA_IDENT_CODE, b"ODNS\x02\x00\x00\x40abcdefgh");
        assert_eq!(read(&version_2), Ok(IdentityOptions::default()));

        let unknown_field = option(UMBRELLA_IDENT_CODE, b"ODNS\x01\x00\x00\x80xyz");
        assert_eq!(read(&unknown_field), Ok(IdentityOptions::default()));
    }

    #[test]
    fn both_umbrella_options_agreeing() {
        let device = option(
            UMBRELLA_DEVICE_CODE,
            &[b"OpenDNS".as_slice(), &UMBRELLA_ID].concat(),
        );
        let found = read(&[device, dnsmasq_ident(true)].concat()).unwrap();
        assert_eq!(found.device, Some(DeviceIdOption::Umbrella(UMBRELLA_ID)));
    }

    #[test]
    fn text_option() {
        let found = read(&option(TEXT_CODE, b" C02ABC123XYZ ")).unwrap();
        let device = found.device.unwrap();
        assert_eq!(device, DeviceIdOption::Text(" C02ABC123XYZ ".into()));
        assert_eq!(device.alias(), "c02abc123xyz");
    }

    #[test]
    fn text_option_only_on_the_configured_code() {
        let rdata = option(TEXT_CODE, b"C02ABC123XYZ");
        assert_eq!(
            read_identity_options(&rdata, None),
            Ok(IdentityOptions::default())
        );
    }

    #[test]
    fn text_option_malformed() {
        for data in [&b""[..], b"   ", b"\xff\xfe", b"abc\ndef", b"abc\0"] {
            assert_eq!(
                read(&option(TEXT_CODE, data)),
                Err(EdnsError::DeviceIdText),
                "{data:?}"
            );
        }
    }

    #[test]
    fn different_device_ids_conflict() {
        let umbrella = option(
            UMBRELLA_DEVICE_CODE,
            &[b"OpenDNS".as_slice(), &UMBRELLA_ID].concat(),
        );
        let text = option(TEXT_CODE, b"C02ABC123XYZ");
        assert_eq!(
            read(&[umbrella, text].concat()),
            Err(EdnsError::ConflictingDeviceIds)
        );
    }

    #[test]
    fn unknown_options_are_skipped() {
        let rdata = [
            option(10, &[1, 2, 3, 4, 5, 6, 7, 8]), // cookie
            option(12, &[]),                       // padding
            ecs(1, 24, &[192, 0, 2]),
            option(65_001, b"anything"),
            option(TEXT_CODE, b"C02ABC123XYZ"),
        ]
        .concat();
        let found = read(&rdata).unwrap();
        assert!(found.subnet.is_some());
        assert_eq!(
            found.device,
            Some(DeviceIdOption::Text("C02ABC123XYZ".into()))
        );
        assert_eq!(read(&[]), Ok(IdentityOptions::default()));
    }

    #[test]
    fn truncated_rdata() {
        assert_eq!(read(&[0, 8, 0]), Err(EdnsError::TruncatedHeader));
        let mut rdata = ecs(1, 24, &[192, 0, 2]);
        rdata.pop();
        assert_eq!(
            read(&rdata),
            Err(EdnsError::TruncatedOption {
                code: 8,
                declared: 7,
                left: 6
            })
        );
        let trailing = [ecs(1, 24, &[192, 0, 2]), vec![0, 10]].concat();
        assert_eq!(read(&trailing), Err(EdnsError::TruncatedHeader));
    }

    #[test]
    fn junk_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let codes = [8, UMBRELLA_DEVICE_CODE, UMBRELLA_IDENT_CODE, TEXT_CODE, 10];
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut rdata: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Steer half of the cases onto the codes that get parsed, with a plausible length.
            if len >= 4 && next() % 2 == 0 {
                let code = codes[(next() % codes.len() as u64) as usize];
                rdata[..2].copy_from_slice(&code.to_be_bytes());
                rdata[2..4].copy_from_slice(&((len - 4) as u16).to_be_bytes());
                if code == UMBRELLA_IDENT_CODE && len >= 10 {
                    rdata[4..9].copy_from_slice(b"ODNS\x01");
                }
            }
            let _ = read(&rdata);
        }
    }
}
