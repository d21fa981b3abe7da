//! Plain domain lists (`example.com`, `*.example.com`, as UT1 `domains` files and most domain
//! lists are written) and hosts files (`0.0.0.0 ads.example.com tracker.example.net`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::entry::{domain_of, ListEntry, Out, Parsed, SkipReason};

/// One label alone (`com`) would block a whole top-level domain, so a plain line must say
/// so on purpose (`*.com`). In AdBlock-style lists such lines (`advert`) are substring rules.
pub(super) fn domain(out: &mut Out<'_, impl FnMut(ListEntry)>, token: &str) -> Parsed {
    let domain = domain_of(token)?;
    if !domain.contains('.') && !token.starts_with("*.") {
        return Err(SkipReason::UnsupportedRule);
    }
    out.emit(domain, false);
    Ok(())
}

/// The names on a hosts line (`0.0.0.0 a.example b.example`), after its address. Each name that
/// gives no entry is counted as skipped; the line itself is not.
pub(super) fn hosts_names<'a>(
    out: &mut Out<'_, impl FnMut(ListEntry)>,
    names: impl Iterator<Item = &'a str>,
) -> Parsed {
    for name in names {
        if let Err(reason) = out.pattern(name, false) {
            out.skip(reason);
        }
    }
    Ok(())
}

/// The address column of a hosts line. `0` is what some lists use for 0.0.0.0.
pub(super) fn is_hosts_address(token: &str) -> bool {
    let address = token.split('%').next().unwrap_or(token);
    token == "0" || address.parse::<Ipv4Addr>().is_ok() || address.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_accounted, blocked, parse, skipped};
    use super::*;

    #[test]
    fn hosts_file() {
        let text = "\
# Title: StevenBlack/hosts
#
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
127.0.0.1 local
255.255.255.255 broadcasthost
::1 localhost ip6-localhost ip6-loopback
fe80::1%lo0 localhost
ff00::0 ip6-localnet
0.0.0.0 0.0.0.0

# Start StevenBlack
0.0.0.0 Ads.Example.com\r
0.0.0.0\tad.doubleclick.net   # tracking
127.0.0.1 a.example b.example c.example
:: ipv6.tracker.example
0 zero.example
::1 one.example
0.0.0.0 bad_label-.example 1.2.3.4
#0.0.0.0 disabled.example
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "ads.example.com",
                "ad.doubleclick.net",
                "a.example",
                "b.example",
                "c.example",
                "ipv6.tracker.example",
                "zero.example",
                "one.example",
            ]
        );
        assert_eq!(stats.lines, 20);
        assert_eq!(skipped(&stats, SkipReason::Localhost), 9);
        assert_eq!(skipped(&stats, SkipReason::IpAddress), 2);
        assert_eq!(skipped(&stats, SkipReason::InvalidName), 1);
        assert_eq!(skipped(&stats, SkipReason::Comment), 4);
        assert_eq!(skipped(&stats, SkipReason::Blank), 1);
        assert_accounted(&stats);
    }

    #[test]
    fn plain_domains_and_wildcards() {
        let text = "\
example.com
WWW.Example.ORG.
*.wild.example
bücher.de
ads*.example.com
*
1.2.3.4
_dmarc.example.net
not a domain
.dotted.example
com
*.zip
::1
localhost
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "example.com",
                "www.example.org",
                "wild.example",
                "xn--bcher-kva.de",
                "_dmarc.example.net",
                "zip",
            ]
        );
        // `com` alone would block a whole top-level domain; `*.zip` says so on purpose.
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 4);
        assert_eq!(skipped(&stats, SkipReason::IpAddress), 2);
        assert_eq!(skipped(&stats, SkipReason::InvalidName), 1);
        assert_eq!(skipped(&stats, SkipReason::Localhost), 1);
        assert_accounted(&stats);
    }
}
