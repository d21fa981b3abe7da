//! A list file read line by line: the line reader every list goes through, and the detection of
//! each line's format, which hands the line to that format's parser.
//!
//! Real list files mix formats (a hosts file with AdBlock rules pasted in, an RPZ zone with
//! comments in three styles), so the format is detected per line. Every line or name that yields
//! no entry is counted under a [`SkipReason`], so `cordon check` can say why a list gave fewer
//! entries than it has lines. Lists run to millions of lines: the only allocation per line is the
//! domain `String` handed to the sink.
//!
//! Where a rule means less than "this domain and everything below it" (an AdBlock rule limited to
//! scripts or to some sites, an RPZ IP trigger), it is skipped rather than widened: blocking a
//! whole CDN because a list blocks one script on one site would break far more than it protects.

use std::io::{self, BufRead};

use super::adblock;
use super::dnsmasq::{self, Kind};
use super::entry::{ListEntry, ListStats, Out, Parsed, SkipReason};
use super::plain;
use super::zone::{self, Zone};

/// Parses a whole list held in memory, handing each entry to `sink`.
pub fn parse_list(text: &str, mut sink: impl FnMut(ListEntry)) -> ListStats {
    let mut parser = Parser::default();
    for line in text.lines() {
        parser.line(line, &mut sink);
    }
    parser.stats
}

/// Parses a list as it is read, so a file of millions of lines is never held whole. Bytes that
/// are not UTF-8 are replaced, which makes their line an invalid name (or a comment, if it is one).
pub fn parse_reader<R: BufRead>(
    mut reader: R,
    mut sink: impl FnMut(ListEntry),
) -> io::Result<ListStats> {
    let mut parser = Parser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(parser.stats);
        }
        parser.line(&String::from_utf8_lossy(&buf), &mut sink);
    }
}

#[derive(Default)]
struct Parser {
    stats: ListStats,
    state: State,
}

/// What the lines read so far say about the lines after them.
#[derive(Default)]
struct State {
    zone: Zone,
    /// After an `[Adblock Plus 2.0]` header a bare `example.com` is an AdBlock substring rule
    /// (it also matches `badexample.com/x`), not a domain: EasyList has hundreds such as
    /// `_chartbeat.js` and `.v4.analytics.` that would otherwise read as names.
    adblock_header: bool,
}

impl Parser {
    fn line(&mut self, raw: &str, sink: &mut impl FnMut(ListEntry)) {
        let raw = match self.stats.lines {
            0 => raw.strip_prefix('\u{feff}').unwrap_or(raw),
            _ => raw,
        };
        self.stats.lines += 1;
        let mut out = Out {
            stats: &mut self.stats,
            sink,
        };
        if let Err(reason) = self.state.parse_line(raw.trim(), &mut out) {
            out.skip(reason);
        }
    }
}

impl State {
    fn parse_line(&mut self, line: &str, out: &mut Out<'_, impl FnMut(ListEntry)>) -> Parsed {
        if self.zone.in_soa(line) {
            return Err(SkipReason::Comment);
        }
        match line.as_bytes().first() {
            None => return Err(SkipReason::Blank),
            Some(b'!' | b';') => return Err(SkipReason::Comment),
            Some(b'[') if adblock::is_header(line) => {
                self.adblock_header = true;
                return Err(SkipReason::Comment);
            }
            Some(b'#') if adblock::starts_cosmetic(line) => return Err(SkipReason::CosmeticRule),
            Some(b'#') => return Err(SkipReason::Comment),
            Some(_) => {}
        }
        let body = strip_comment(line);
        if adblock::has_cosmetic_marker(body) {
            return Err(SkipReason::CosmeticRule);
        }
        self.parse_body(body, out)
    }

    fn parse_body(&mut self, body: &str, out: &mut Out<'_, impl FnMut(ListEntry)>) -> Parsed {
        if let Some(rest) = body.strip_prefix("address=") {
            return dnsmasq::rule(out, Kind::Address, rest);
        }
        if let Some(rest) = body.strip_prefix("server=") {
            return dnsmasq::rule(out, Kind::Server, rest);
        }
        if let Some(rest) = body.strip_prefix("local=") {
            return dnsmasq::rule(out, Kind::Local, rest);
        }
        if let Some(rest) = body.strip_prefix("local-zone:") {
            return zone::unbound_zone(out, rest);
        }
        if body.starts_with("@@") || body.starts_with('|') {
            return adblock::rule(out, body);
        }
        match body.as_bytes().first() {
            Some(b'$') => return self.zone.directive(body),
            Some(b'/') if adblock::is_regex(body) => return Err(SkipReason::RegexRule),
            Some(b'/') => return Err(SkipReason::PathRule),
            _ => {}
        }
        let mut tokens = body.split_ascii_whitespace();
        let first = tokens.next().ok_or(SkipReason::Blank)?;
        if zone::is_config_directive(first) {
            return Err(SkipReason::UnsupportedRule);
        }
        let Some(second) = tokens.next() else {
            return self.single_token(first, out);
        };
        if plain::is_hosts_address(first) {
            return plain::hosts_names(out, std::iter::once(second).chain(tokens));
        }
        self.zone
            .record(out, body, first, std::iter::once(second).chain(tokens))
    }

    fn single_token(&self, token: &str, out: &mut Out<'_, impl FnMut(ListEntry)>) -> Parsed {
        if token.contains(['^', '$', '|']) {
            adblock::rule(out, token)
        } else if token.contains('/') {
            Err(SkipReason::PathRule)
        } else if self.adblock_header {
            Err(SkipReason::UnsupportedRule)
        } else {
            plain::domain(out, token)
        }
    }
}

/// Cuts a trailing `# comment` or `; comment`. A `#` glued to the text before it is not a
/// comment: it is part of a cosmetic rule or a dnsmasq `/#/`.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let cut = (1..bytes.len())
        .find(|&i| matches!(bytes[i], b'#' | b';') && bytes[i - 1].is_ascii_whitespace())
        .unwrap_or(bytes.len());
    // The cut is at an ASCII byte, so it is a char boundary.
    line[..cut].trim_end()
}

#[cfg(test)]
mod tests {
    use super::super::names;
    use super::*;

    #[test]
    fn mixed_formats_in_one_list() {
        let text = "\u{feff}||a.example^\r\n0.0.0.0 b.example\r\nc.example\r\n\
                    address=/d.example/0.0.0.0\r\ne.example CNAME .\r\n\
                    local-zone: \"f.example\" static\r\n";
        let mut domains = Vec::new();
        let stats = parse_list(text, |e| {
            assert!(!e.exception, "{e:?}");
            domains.push(e.domain);
        });
        assert_eq!(
            domains,
            [
                "a.example",
                "b.example",
                "c.example",
                "d.example",
                "e.example",
                "f.example"
            ]
        );
        assert_eq!(stats.lines, 6);
        assert_eq!(stats.skipped_total(), 0);
    }

    #[test]
    fn reader_matches_in_memory_parse() {
        let text = "# c\n0.0.0.0 a.example\n\n||b.example^\nbad..name\nlast.example";
        let mut from_text = Vec::new();
        let text_stats = parse_list(text, |e| from_text.push(e));
        let mut from_reader = Vec::new();
        let reader_stats = parse_reader(text.as_bytes(), |e| from_reader.push(e))
            .expect("reading from memory cannot fail");
        assert_eq!(from_text, from_reader);
        assert_eq!(text_stats, reader_stats);
        assert_eq!(reader_stats.lines, 6);
    }

    #[test]
    fn reader_survives_invalid_utf8() {
        let bytes = b"# caf\xe9\nok.example\nbad\xff.example\n";
        let mut domains = Vec::new();
        let stats = parse_reader(&bytes[..], |e| domains.push(e.domain)).expect("in memory");
        assert_eq!(domains, ["ok.example"]);
        assert_eq!(stats.skipped[&SkipReason::Comment], 1);
        assert_eq!(stats.skipped[&SkipReason::InvalidName], 1);
    }

    #[test]
    fn stats_display_and_merge() {
        let text = "! c\n! c\n\na.example\n||b.example^\n@@||c.example^\n##.ad\n-x-.example\n";
        let stats = parse_list(text, |_| {});
        assert_eq!(
            stats.to_string(),
            "3 entries, 1 exception, 5 skipped (1 blank, 2 comment, 1 cosmetic rule, 1 invalid name)"
        );
        let mut total = stats.clone();
        total.merge(&stats);
        assert_eq!(total.lines, 16);
        assert_eq!(total.entries, 6);
        assert_eq!(total.exceptions, 2);
        assert_eq!(total.skipped_total(), 10);
        assert_eq!(total.skipped[&SkipReason::Comment], 4);
        assert_eq!(
            ListStats::default().to_string(),
            "0 entries, 0 exceptions, 0 skipped"
        );
        let one = parse_list("a.example\n", |_| {});
        assert_eq!(one.to_string(), "1 entry, 0 exceptions, 0 skipped");
    }

    #[test]
    fn never_panics_on_random_input() {
        let pieces = [
            "||",
            "@@",
            "|",
            "^",
            "$",
            "$$",
            "#",
            "##",
            "#@#",
            "#?#",
            "/",
            "*",
            ".",
            "*.",
            ":",
            "::",
            "0.0.0.0",
            "address=",
            "server=",
            "local=",
            "local-zone:",
            "\"",
            "'",
            "$ORIGIN",
            "$TTL",
            "CNAME",
            "IN",
            "SOA",
            "(",
            ")",
            ";",
            "!",
            "[",
            "]",
            " ",
            "\t",
            "\r",
            "\n",
            "a",
            "example",
            "ü",
            "例",
            "。",
            "%",
            "~",
            "=",
            ",",
            "important",
            "domain=",
            "rpz-ip",
            "300",
            "\u{feff}",
            "\u{0}",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let mut text = String::new();
            for _ in 0..next() % 60 {
                text.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let mut entries = Vec::new();
            let stats = parse_list(&text, |e| entries.push(e));
            assert_eq!(stats.lines, text.lines().count());
            for entry in entries {
                assert_eq!(names::normalize(&entry.domain), Ok(entry.domain.clone()));
            }
            let bytes: Vec<u8> = (0..next() % 200).map(|_| next() as u8).collect();
            parse_reader(&bytes[..], |_| {}).expect("in memory");
        }
    }
}
