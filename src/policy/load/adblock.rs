//! AdBlock-syntax lists, the part a DNS resolver can honour: `||example.com^` and the exception
//! `@@||example.com^`, with the options that keep the rule about the whole host. The rest of the
//! syntax (cosmetic, path and regex rules, options that narrow a rule) is recognised so that it
//! is skipped under its own reason rather than misread as a domain.

use super::entry::{contains_ignore_case, ListEntry, Out, Parsed, SkipReason};

/// AdBlock options that leave a blocking rule meaning "block this host": the rest narrow it to
/// some request types or sites, or are AdGuard DNS features (`$dnsrewrite`, `$client`, `$ctag`,
/// `$denyallow`, `$badfilter`, `$dnstype`) whose meaning a plain entry cannot carry.
const HOST_LEVEL_OPTIONS: &[&str] = &[
    "important",
    "all",
    "third-party",
    "3p",
    "first-party",
    "1p",
    "strict-first-party",
    "strict1p",
    "strict-third-party",
    "strict3p",
    "document",
    "doc",
    "popup",
    "popunder",
    "match-case",
];

/// Options that leave an exception meaning "allow this host". Fewer than for blocks: an
/// exception for popups or for first-party loads, widened to the whole host, would unblock it.
const EXCEPTION_OPTIONS: &[&str] = &["important", "all", "document", "doc", "match-case"];

/// The DNS-relevant part of AdBlock syntax: `||host^`, `@@||host^`, `|host^`, `host^`, each
/// with optional `$options`.
pub(super) fn rule(out: &mut Out<'_, impl FnMut(ListEntry)>, rule: &str) -> Parsed {
    let (exception, rule) = match rule.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, rule),
    };
    if is_regex(rule) {
        return Err(SkipReason::RegexRule);
    }
    let (domain_anchor, start_anchor, rule) = match rule.strip_prefix("||") {
        Some(rest) => (true, false, rest),
        None => match rule.strip_prefix('|') {
            Some(rest) => (false, true, rest),
            None => (false, false, rule),
        },
    };
    let pattern = match rule.rsplit_once('$') {
        Some((pattern, options)) => {
            check_options(options, exception)?;
            pattern
        }
        None => rule,
    };
    let pattern = pattern.strip_suffix('|').unwrap_or(pattern);
    let (host, tail) = pattern.split_at(pattern.find(['^', '/']).unwrap_or(pattern.len()));
    match tail {
        "" | "^" => {}
        // `||example.com/` is the whole host; `-ad-manager/` is a path fragment.
        "/" if domain_anchor => {}
        _ if tail.contains('/') => return Err(SkipReason::PathRule),
        _ => return Err(SkipReason::UnsupportedRule),
    }
    let anchored = domain_anchor || start_anchor || tail == "^";
    if host.is_empty() || !anchored {
        // A rule for every host, or a substring (`_reklama_$domain=~youtube.com`).
        return Err(SkipReason::UnsupportedRule);
    }
    out.pattern(host, exception)
}

/// `[Adblock Plus 2.0]`, `[uBlock Origin]`: a header, not an IPv6 literal like `[::1]`.
pub(super) fn is_header(line: &str) -> bool {
    line.ends_with(']') && line.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic)
}

/// A line that begins with an element-hiding marker and a selector (`##.ad`, `###banner`,
/// `#@#.ad`), as opposed to a `#` comment (`# Title`, `## Section`, `#####`).
pub(super) fn starts_cosmetic(line: &str) -> bool {
    let bytes = line.as_bytes();
    let Some(end) = cosmetic_marker_end(bytes, 0) else {
        return false;
    };
    match bytes.get(end) {
        None => false,
        Some(b) if b.is_ascii_whitespace() => false,
        // `###id` is an id selector; `####` is a banner.
        Some(b'#') => bytes
            .get(end + 1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'),
        Some(_) => true,
    }
}

/// Cosmetic and scriptlet rules (`example.com##.ad`, `#@#`, `#?#`, `#$#`, `#%#`) and HTML
/// filters (`example.com$$script`).
pub(super) fn has_cosmetic_marker(body: &str) -> bool {
    let bytes = body.as_bytes();
    let hash_marker = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'#' && cosmetic_marker_end(bytes, i).is_some());
    hash_marker || body.contains("$$") || body.contains("$@$")
}

/// The end of a `#[@][?$%]#` marker that starts at `at`.
fn cosmetic_marker_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    if bytes.get(i) != Some(&b'#') {
        return None;
    }
    i += 1;
    if bytes.get(i) == Some(&b'@') {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'?' | b'$' | b'%')) {
        i += 1;
    }
    (bytes.get(i) == Some(&b'#')).then_some(i + 1)
}

/// AdBlock treats a pattern between slashes as a regular expression (options may follow).
pub(super) fn is_regex(rule: &str) -> bool {
    let Some(rest) = rule.strip_prefix('/') else {
        return false;
    };
    match rest.rfind('/') {
        Some(end) => end + 1 == rest.len() || rest.as_bytes().get(end + 1) == Some(&b'$'),
        None => false,
    }
}

fn check_options(options: &str, exception: bool) -> Parsed {
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        if exception {
            if !contains_ignore_case(EXCEPTION_OPTIONS, name) {
                return Err(SkipReason::UnsupportedRule);
            }
            continue;
        }
        // Negated types (`~script`) and excluded sites (`domain=~a.com`) still block the host
        // everywhere else, which is what a DNS entry does.
        let host_level = name.starts_with('~')
            || contains_ignore_case(HOST_LEVEL_OPTIONS, name)
            || (is_domain_option(name)
                && !value.is_empty()
                && value.split('|').all(|site| site.starts_with('~')));
        if !host_level {
            return Err(SkipReason::UnsupportedRule);
        }
    }
    Ok(())
}

fn is_domain_option(name: &str) -> bool {
    name.eq_ignore_ascii_case("domain") || name.eq_ignore_ascii_case("from")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{allowed, assert_accounted, blocked, parse, skipped};
    use super::*;

    #[test]
    fn adblock_dns_rules() {
        let text = "\
[Adblock Plus 2.0]
! Title: EasyList
! Expires: 4 days
!#if env_firefox
||ads.example.com^
||tracker.example^$important
||pop.example^$popup,third-party
||doc.example^$document,all
||partner.example^$third-party,domain=~partner-site.example
||anchor.example^|
||noseparator.example
|start.example^
plain.example^
||*.wildcard.example^
@@||allowed.example^
@@||allowed2.example^$important
||172.255.103.171^$popup
";
        let (entries, stats) = parse(text);
        assert_eq!(
            blocked(&entries),
            [
                "ads.example.com",
                "tracker.example",
                "pop.example",
                "doc.example",
                "partner.example",
                "anchor.example",
                "noseparator.example",
                "start.example",
                "plain.example",
                "wildcard.example",
            ]
        );
        assert_eq!(allowed(&entries), ["allowed.example", "allowed2.example"]);
        assert_eq!(stats.exceptions, 2);
        assert_eq!(stats.entries, 12);
        assert_eq!(skipped(&stats, SkipReason::Comment), 4);
        assert_eq!(skipped(&stats, SkipReason::IpAddress), 1);
        assert_accounted(&stats);
    }

    #[test]
    fn adblock_rules_a_dns_entry_cannot_honour() {
        let text = "\
||blocked.example^$badfilter
||example.org^$denyallow=allowed.example
||example.org^$client=127.0.0.1
||example.org^$ctag=device_pc
||example.org^$dnsrewrite=NOERROR;A;1.2.3.4
||example.org^$dnstype=AAAA
||temu.com^$popup,domain=site.example
||cdn.example^$script,third-party
@@||sitekit.example^$generichide
@@||example.com^$elemhide
@@||dashboard.example^$popup
@@||first.example^$~third-party
_reklama_$domain=~youtube.com
.ad.example.$third-party
||ad*.example^
||example.com^*.js
$script,third-party,domain=example.com
*$image,redirect-rule=1x1.gif
";
        let (entries, stats) = parse(text);
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 18);
    }

    #[test]
    fn after_an_adblock_header_bare_lines_are_substring_rules() {
        let text = "[Adblock Plus 2.0]
! EasyPrivacy-style generic rules
_chartbeat.js
.v4.analytics.
skimlinks.js
||counted.example^
real.example^
";
        let (entries, stats) = parse(text);
        assert_eq!(blocked(&entries), ["counted.example", "real.example"]);
        assert_eq!(skipped(&stats, SkipReason::UnsupportedRule), 3);
        // Without the header the same line is a plain domain.
        let (entries, _) = parse(
            "_chartbeat.js
",
        );
        assert_eq!(blocked(&entries), ["_chartbeat.js"]);
    }

    #[test]
    fn adblock_path_cosmetic_and_regex_rules() {
        let text = "\
||example.com/ads/banner.js
||example.com^/track
|https://example.net^
-ad-manager/$~stylesheet
/banner/ads/*
/^https?:\\/\\/[a-z]{8}\\.com\\//$script,third-party
/ad[0-9]+\\.example/
@@/regex-exception/
##.adsbygoogle
###ad-banner
example.com##.sponsored
example.com#@#.ad
example.com#?#div:has(> .ad)
example.com#$#body { overflow: auto; }
example.com#%#//scriptlet('abort-on-property-read', 'ads')
example.com##+js(set-constant, ads, false)
example.com$$script[data-src=\"ads\"]
#@#.textad
";
        let (entries, stats) = parse(text);
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(skipped(&stats, SkipReason::PathRule), 5);
        assert_eq!(skipped(&stats, SkipReason::RegexRule), 3);
        assert_eq!(skipped(&stats, SkipReason::CosmeticRule), 10);
        assert_eq!(stats.skipped_total(), stats.lines);
    }

    #[test]
    fn hash_comments_are_not_cosmetic_rules() {
        let (entries, stats) = parse("# comment\n## Section\n####\n### Title\n#\nok.example\n");
        assert_eq!(blocked(&entries), ["ok.example"]);
        assert_eq!(skipped(&stats, SkipReason::Comment), 5);
    }
}
