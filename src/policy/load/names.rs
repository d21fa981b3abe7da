//! Domain names as Cordon stores and compares them: lowercase A-labels, no trailing dot.
//!
//! List entries and query names both go through [`normalize`], so two spellings of one name
//! (`Example.COM.`, `bücher.de` and `xn--bcher-kva.de`) compare equal as plain strings.

use std::net::Ipv6Addr;

/// The longest name in presentation form without the trailing dot (RFC 1035 allows 255 bytes on
/// the wire, which is 253 characters once the length bytes and root label are gone).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a domain name Cordon can store.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty domain name")]
    Empty,
    #[error("domain name longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "invalid label {0:?}: a label is 1 to {MAX_LABEL_LEN} of a-z, 0-9, '-' and '_', \
         not starting or ending with '-'"
    )]
    BadLabel(String),
    #[error("an IP address, not a domain name")]
    IpAddress,
    #[error("internationalised name that cannot be converted to punycode")]
    Idna,
}

/// Turns a name as written in a list or a query into Cordon's stored form.
///
/// Trims whitespace, drops one trailing dot, lowercases, converts IDNs to punycode A-labels and
/// checks the result: at most 253 characters, labels of 1 to 63 of `[a-z0-9_-]` not starting or
/// ending with `-`. Underscores are allowed because real names (`_dmarc.example.com`) and real
/// lists contain them. A single label (`localhost`, `com`) is a valid name.
pub fn normalize(input: &str) -> Result<String, NameError> {
    let trimmed = input.trim();
    let (name, had_dot) = match trimmed.strip_suffix('.') {
        Some(name) => (name, true),
        None => (trimmed, false),
    };
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if is_ip_literal(name) {
        return Err(NameError::IpAddress);
    }
    match plain_ascii(name) {
        Some(result) => result,
        None => from_unicode(name, had_dot),
    }
}

/// The common case, checked before its one allocation. `None` when the name needs UTS 46: it is
/// not ASCII, or it has a punycode label whose decoding must be checked. Skipping the mapping
/// matters because lists hold millions of plain names.
fn plain_ascii(name: &str) -> Option<Result<String, NameError>> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() > MAX_NAME_LEN {
        return Some(Err(NameError::TooLong));
    }
    // By hand rather than `split('.')`: a memchr per short label costs more than the check.
    let bytes = name.as_bytes();
    let mut start = 0;
    for end in 0..=bytes.len() {
        if bytes.get(end).is_some_and(|&b| b != b'.') {
            continue;
        }
        let label = &bytes[start..end];
        if label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
        {
            return None;
        }
        if !is_valid_label(label) {
            let label = String::from_utf8_lossy(label).to_ascii_lowercase();
            return Some(Err(NameError::BadLabel(label)));
        }
        start = end + 1;
    }
    Some(Ok(name.to_ascii_lowercase()))
}

fn from_unicode(name: &str, had_dot: bool) -> Result<String, NameError> {
    let mut out = idna::domain_to_ascii(name).map_err(|_| NameError::Idna)?;
    // UTS 46 maps other full stops (U+3002 and friends) to '.', so the dot may only show now.
    if !had_dot && out.ends_with('.') {
        out.pop();
    }
    if out.is_empty() {
        return Err(NameError::Empty);
    }
    // Full-width digits become ASCII in the mapping, so check the mapped form again.
    if is_ip_literal(&out) {
        return Err(NameError::IpAddress);
    }
    validate(&out)?;
    Ok(out)
}

/// An IPv4 or IPv6 address in any form a resolver or browser would read as one.
fn is_ip_literal(name: &str) -> bool {
    if !name.contains(':') {
        // Covers every dotted quad, so no IPv4 parse is needed on the common path.
        return is_numeric_dotted(name);
    }
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(name);
    // A zone index (`fe80::1%eth0`) is not part of the address syntax Rust parses.
    let address = unbracketed.split('%').next().unwrap_or(unbracketed);
    address.parse::<Ipv6Addr>().is_ok()
}

/// Names made only of digit labels (`1.2.3.4`, and `127.1` or `2130706433`, which inet_aton and
/// browsers read as IPv4 shorthand). No real domain has a numeric top-level label.
fn is_numeric_dotted(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.last().is_some_and(u8::is_ascii_digit)
        && !name.contains("..")
}

fn validate(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    match name
        .split('.')
        .find(|label| !is_valid_label(label.as_bytes()))
    {
        Some(label) => Err(NameError::BadLabel(label.to_owned())),
        None => Ok(()),
    }
}

/// Upper case passes here because [`plain_ascii`] checks before it lowercases.
fn is_valid_label(bytes: &[u8]) -> bool {
    (1..=MAX_LABEL_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        normalize(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"))
    }

    #[test]
    fn lowercases_and_trims() {
        assert_eq!(ok("  Example.COM \t"), "example.com");
        assert_eq!(ok("\u{a0}ads.example.net\r\n"), "ads.example.net");
    }

    #[test]
    fn strips_exactly_one_trailing_dot() {
        assert_eq!(ok("example.com."), "example.com");
        assert_eq!(
            normalize("example.com.."),
            Err(NameError::BadLabel(String::new()))
        );
    }

    #[test]
    fn single_labels_are_names() {
        assert_eq!(ok("localhost"), "localhost");
        assert_eq!(ok("COM."), "com");
    }

    #[test]
    fn underscores_are_allowed() {
        assert_eq!(
            ok("_dmarc.Example.com"),
            "_dmarc.example.com",
            "DKIM/DMARC-style names appear in real lists"
        );
        assert_eq!(ok("_sip._tcp.example.com"), "_sip._tcp.example.com");
    }

    #[test]
    fn converts_idns_to_a_labels() {
        assert_eq!(ok("bücher.de"), "xn--bcher-kva.de");
        assert_eq!(ok("BÜCHER.DE."), "xn--bcher-kva.de");
        assert_eq!(ok("пример.рф"), "xn--e1afmkfd.xn--p1ai");
        assert_eq!(ok("例え.テスト"), "xn--r8jz45g.xn--zckzah");
    }

    #[test]
    fn keeps_valid_punycode_and_rejects_broken_punycode() {
        assert_eq!(ok("XN--BCHER-KVA.de"), "xn--bcher-kva.de");
        assert_eq!(normalize("xn--a.com"), Err(NameError::Idna));
    }

    #[test]
    fn maps_full_width_forms_and_other_full_stops() {
        assert_eq!(ok("ｅｘａｍｐｌｅ．ｃｏｍ"), "example.com");
        assert_eq!(ok("example.com。"), "example.com");
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(normalize(""), Err(NameError::Empty));
        assert_eq!(normalize("   "), Err(NameError::Empty));
        assert_eq!(normalize("."), Err(NameError::Empty));
    }

    #[test]
    fn rejects_ip_literals() {
        for ip in [
            "1.2.3.4",
            "1.2.3.4.",
            "0.0.0.0",
            "::1",
            "::",
            "[::1]",
            "2001:db8::1",
            "fe80::1%lo0",
            "127.1",
            "2130706433",
            "１.２.３.４",
        ] {
            assert_eq!(normalize(ip), Err(NameError::IpAddress), "{ip}");
        }
        assert_eq!(ok("1.2.3.4.in-addr.arpa"), "1.2.3.4.in-addr.arpa");
        assert_eq!(ok("123.example"), "123.example");
        assert_eq!(ok("3com.com"), "3com.com");
    }

    #[test]
    fn enforces_label_rules() {
        assert_eq!(
            normalize("-ads.example.com"),
            Err(NameError::BadLabel("-ads".into()))
        );
        assert_eq!(
            normalize("ads-.example.com"),
            Err(NameError::BadLabel("ads-".into()))
        );
        assert_eq!(normalize("a..b"), Err(NameError::BadLabel(String::new())));
        assert_eq!(
            normalize("*.example.com"),
            Err(NameError::BadLabel("*".into()))
        );
        assert_eq!(
            normalize("ads.example.com/x"),
            Err(NameError::BadLabel("com/x".into()))
        );
        assert_eq!(normalize("a b.com"), Err(NameError::BadLabel("a b".into())));
        assert_eq!(ok("a-b--c.example"), "a-b--c.example");
    }

    #[test]
    fn enforces_lengths() {
        let label63 = "a".repeat(63);
        assert_eq!(ok(&format!("{label63}.com")), format!("{label63}.com"));
        let label64 = "a".repeat(64);
        assert_eq!(
            normalize(&format!("{label64}.com")),
            Err(NameError::BadLabel(label64))
        );
        let name253 = [label63.as_str(); 4].join(".")[..253].to_string();
        assert_eq!(ok(&name253), name253);
        assert_eq!(normalize(&format!("{name253}a")), Err(NameError::TooLong));
        assert_eq!(normalize(&format!("{name253}.")), Ok(name253));
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            NameError::BadLabel("-x".into()).to_string(),
            "invalid label \"-x\": a label is 1 to 63 of a-z, 0-9, '-' and '_', \
             not starting or ending with '-'"
        );
        assert_eq!(
            NameError::IpAddress.to_string(),
            "an IP address, not a domain name"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet: Vec<char> = "aZ0-_.*/:[]% \t\u{0}\u{ad}\u{200d}ü例。．ｘ-"
            .chars()
            .collect();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 80) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((state >> (i % 50)) as usize + i) % alphabet.len()])
                .collect();
            if let Ok(name) = normalize(&s) {
                assert_eq!(
                    normalize(&name).as_ref(),
                    Ok(&name),
                    "not idempotent: {s:?}"
                );
            }
        }
        let long = "ü".repeat(100_000);
        assert!(normalize(&long).is_err());
    }
}
