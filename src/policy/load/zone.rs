//! Zone files as block lists ship them: RPZ records (`example.com CNAME .`, names relative to
//! `$ORIGIN`, `rpz-passthru.` for an exception) and Unbound `local-zone:` lines.

use super::entry::{contains_ignore_case, domain_of, ListEntry, Out, Parsed, SkipReason};
use super::plain::is_hosts_address;

/// Unbound local-zone types under which the zone's names do not resolve to their real addresses.
/// `redirect` counts: block lists pair it with a `local-data` sinkhole address.
const BLOCKING_ZONE_TYPES: &[&str] = &[
    "deny",
    "refuse",
    "static",
    "redirect",
    "inform_deny",
    "inform_redirect",
    "always_refuse",
    "always_nxdomain",
    "always_null",
    "always_nodata",
    "always_deny",
];

/// An SOA spread over lines has at most its five numbers and their comments after the `(`.
const MAX_SOA_LINES: u8 = 12;

/// RPZ owner-name suffixes that trigger on addresses or name servers, not on the query name.
const RPZ_TRIGGERS: &[&str] = &["rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"];

/// What a zone file's lines so far say about the lines after them.
#[derive(Default)]
pub(super) struct Zone {
    /// The RPZ `$ORIGIN`, lowercase without the trailing dot; absolute names are made relative
    /// to it. Only a `$ORIGIN` line sets it: a list cannot be assumed to be a zone.
    origin: Option<String>,
    /// Lines left of a parenthesised multi-line SOA, which hold numbers, not names. Bounded so
    /// that a missing `)` cannot swallow the rest of the list.
    soa_lines_left: u8,
}

impl Zone {
    /// True for a line inside a parenthesised multi-line SOA, which holds numbers, not names.
    pub(super) fn in_soa(&mut self, line: &str) -> bool {
        if self.soa_lines_left == 0 {
            return false;
        }
        self.soa_lines_left = match line.contains(')') {
            true => 0,
            false => self.soa_lines_left - 1,
        };
        true
    }

    /// `$ORIGIN`, `$TTL` and the other master-file directives.
    pub(super) fn directive(&mut self, body: &str) -> Parsed {
        let mut tokens = body.split_ascii_whitespace();
        let keyword = tokens.next().unwrap_or_default();
        if keyword.eq_ignore_ascii_case("$ORIGIN") {
            let origin = tokens.next().unwrap_or_default().trim_end_matches('.');
            self.origin = (!origin.is_empty()).then(|| origin.to_ascii_lowercase());
            Err(SkipReason::Comment)
        } else if keyword.eq_ignore_ascii_case("$TTL") {
            Err(SkipReason::Comment)
        } else {
            // `$INCLUDE`, `$GENERATE`, or an AdBlock rule made only of options.
            Err(SkipReason::UnsupportedRule)
        }
    }

    /// An RPZ record: `name [ttl] [class] type rdata`.
    pub(super) fn record<'a>(
        &mut self,
        out: &mut Out<'_, impl FnMut(ListEntry)>,
        body: &str,
        name: &str,
        mut fields: impl Iterator<Item = &'a str>,
    ) -> Parsed {
        let rtype = fields
            .find(|field| !is_ttl(field) && !is_class(field))
            .ok_or(SkipReason::UnsupportedRule)?;
        if rtype.eq_ignore_ascii_case("SOA") {
            if body.contains('(') && !body.contains(')') {
                self.soa_lines_left = MAX_SOA_LINES;
            }
            return Err(SkipReason::Comment);
        }
        if rtype.eq_ignore_ascii_case("NS") {
            return Err(SkipReason::Comment);
        }
        let rdata = fields.next();
        let name = self.relative_to_origin(name)?;
        let entry = rpz_policy(name, rtype, rdata)?;
        out.emit(entry.domain, entry.exception);
        Ok(())
    }

    /// A name ending in a dot is absolute, so the origin (if `$ORIGIN` gave one) comes off;
    /// anything else is already relative to the origin.
    fn relative_to_origin<'a>(&self, name: &'a str) -> Result<&'a str, SkipReason> {
        if name == "@" {
            return Err(SkipReason::UnsupportedRule);
        }
        let (Some(absolute), Some(origin)) = (name.strip_suffix('.'), &self.origin) else {
            return Ok(name);
        };
        if absolute.eq_ignore_ascii_case(origin) {
            // A policy for the zone apex itself: no real name.
            return Err(SkipReason::UnsupportedRule);
        }
        let Some(cut) = absolute.len().checked_sub(origin.len() + 1) else {
            return Ok(absolute);
        };
        let bytes = absolute.as_bytes();
        if bytes[cut] == b'.' && bytes[cut + 1..].eq_ignore_ascii_case(origin.as_bytes()) {
            // Cutting at an ASCII '.' always lands on a char boundary.
            Ok(&absolute[..cut])
        } else {
            Ok(absolute)
        }
    }
}

/// What an RPZ policy record means here, from a list file or a zone transfer alike: the domain
/// it blocks (with every name below it) or excepts, or why it cannot be honoured. `owner` is
/// relative to the zone's origin; `rdata` is the record's data as text (a CNAME's target, an A
/// record's address). Only QNAME triggers are honoured: IP, NSIP, NSDNAME and client-IP
/// triggers, TCP-only and local data other than a sinkhole address are skipped, never widened.
pub fn rpz_policy(owner: &str, rtype: &str, rdata: Option<&str>) -> Result<ListEntry, SkipReason> {
    let exception = if rtype.eq_ignore_ascii_case("CNAME") {
        cname_policy(rdata)?
    } else if rtype.eq_ignore_ascii_case("A") || rtype.eq_ignore_ascii_case("AAAA") {
        // Local data: the name answers with the list's sinkhole address. Requiring the
        // address keeps prose (`not a domain`) from reading as an A record.
        if !rdata.is_some_and(is_hosts_address) {
            return Err(SkipReason::UnsupportedRule);
        }
        false
    } else {
        return Err(SkipReason::UnsupportedRule);
    };
    if owner
        .split('.')
        .any(|label| contains_ignore_case(RPZ_TRIGGERS, label))
    {
        return Err(SkipReason::UnsupportedRule);
    }
    let domain = domain_of(owner)?;
    Ok(ListEntry { domain, exception })
}

/// `local-zone: "example.com" always_nxdomain` (the `local-zone:` already removed).
pub(super) fn unbound_zone(out: &mut Out<'_, impl FnMut(ListEntry)>, rest: &str) -> Parsed {
    let rest = rest.trim_start();
    let (name, rest) = match rest.as_bytes().first() {
        Some(&quote @ (b'"' | b'\'')) => rest[1..]
            .split_once(char::from(quote))
            .ok_or(SkipReason::InvalidName)?,
        _ => rest
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((rest, "")),
    };
    let zone_type = rest
        .split_ascii_whitespace()
        .next()
        .ok_or(SkipReason::UnsupportedRule)?;
    if !contains_ignore_case(BLOCKING_ZONE_TYPES, zone_type) {
        return Err(SkipReason::UnsupportedRule);
    }
    out.pattern(name, false)
}

/// The rdata of an RPZ CNAME: `Ok(true)` for an exception, `Ok(false)` for a block.
fn cname_policy(target: Option<&str>) -> Result<bool, SkipReason> {
    match target {
        Some(t) if t.eq_ignore_ascii_case("rpz-passthru.") => Ok(true),
        Some(t) if t.eq_ignore_ascii_case("rpz-tcp-only.") => Err(SkipReason::UnsupportedRule),
        // `.` is NXDOMAIN, `*.` NODATA, `rpz-drop.` no answer; any other target is a walled
        // garden. All keep the name from resolving to its real address.
        Some(_) => Ok(false),
        None => Err(SkipReason::UnsupportedRule),
    }
}

/// `server:`, `local-data:` and other Unbound (or YAML-ish) `key:` lines.
pub(super) fn is_config_directive(token: &str) -> bool {
    token.strip_suffix(':').is_some_and(|key| {
        !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && key.as_bytes()[0].is_ascii_alphabetic()
    })
}

/// A zone-file TTL: `300`, `1h`, `1d12h`.
fn is_ttl(field: &str) -> bool {
    field.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && field.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_class(field: &str) -> bool {
    contains_ignore_case(&["IN", "CH", "HS", "CS"], field)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{allowed, blocked, parse, skipped};
    use super::*;

    #[test]
    fn rpz_zone_with_origin() {
        let text = "\
$TTL 2h
$ORIGIN rpz.zone.
@ IN SOA localhost. root.localhost. (
        2024010101 ; serial
        1h         ; refresh
        15m        ; retry
        30d        ; expire
        2h )       ; minimum
@ IN NS localhost.
; malware
evil.example CNAME .
*.evil.example CNAME .
tracker.example 300 IN CNAME .
Nodata.Example IN 300 CNAME *.
abs.example.rpz.zone. CNAME .
other.example. CNAME .
drop.example CNAME rpz-drop.
garden.example CNAME walled.garden.example.
passthru.example CNAME rpz-passthru.
tcp.example CNAME rpz-tcp-only.
sink.example A 0.0.0.0
txt.example TXT \"blocked\"
32.1.2.0.192.rpz-ip CNAME .
ns.evil.example.rpz-nsdname CNAME .
rpz.zone. CNAME .
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "evil.example",
                "evil.example",
                "tracker.example",
                "nodata.example",
                "abs.example",
                "other.example",
                "drop.example",
                "garden.example",
                "sink.example",
            ]
        );
        assert_eq!(allowed(&entries), ["passthru.example"]);
        assert_eq!(skipped(&stats, SkipReason::Comment), 10);
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 5);
        assert_eq!(stats.entries + stats.skipped_total(), stats.lines);
    }

    #[test]
    fn rpz_origin_is_only_stripped_after_an_origin_line() {
        let (entries, _) = parse("abs.example.rpz.zone. CNAME .\n");
        assert_eq!(blocked(&entries), ["abs.example.rpz.zone"]);
        let (entries, _) = parse("$ORIGIN RPZ.Zone.\nabs.example.rpz.zone. CNAME .\n");
        assert_eq!(blocked(&entries), ["abs.example"]);
        // Relative names are used as they are, even when they happen to end like the origin.
        let (entries, _) = parse("$ORIGIN rpz.zone.\nrel.example.rpz.zone CNAME .\n");
        assert_eq!(blocked(&entries), ["rel.example.rpz.zone"]);
    }

    #[test]
    fn an_unclosed_soa_does_not_swallow_the_list() {
        let mut text = String::from("@ IN SOA ns. admin. ( 1 2 3\n");
        text.push_str(&"; no closing parenthesis\n".repeat(20));
        text.push_str("after.example CNAME .\n");
        let (entries, _) = parse(&text);
        assert_eq!(blocked(&entries), ["after.example"]);
    }

    #[test]
    fn unbound_local_zones() {
        let text = "\
server:
    local-zone: \"ads.example.com\" always_nxdomain
    local-zone: \"static.example.\" static
    local-zone: refuse.example. refuse
    local-zone: 'quoted.example' always_refuse
    local-zone: \"null.example\" always_null # sinkhole
    local-zone: \"inform.example\" inform_deny
    local-zone: \"deny.example\" deny
    local-zone: \"redirect.example\" redirect
    local-data: \"redirect.example A 0.0.0.0\"
    local-zone: \"transparent.example\" transparent
    local-zone: \"notype.example\"
    local-zone: \"unterminated.example static
    local-zone: \".\" static
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "ads.example.com",
                "static.example",
                "refuse.example",
                "quoted.example",
                "null.example",
                "inform.example",
                "deny.example",
                "redirect.example",
            ]
        );
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 4);
        assert_eq!(skipped(&stats, SkipReason::InvalidName), 2);
        assert_eq!(stats.entries + stats.skipped_total(), stats.lines);
    }
}
