//! What a list gives, whatever its format: entries for the caller's sink and, for each line or
//! name that gives none, a counted reason; and the steps every format takes to turn a name into
//! an entry.

use std::collections::BTreeMap;
use std::fmt;

use super::names::{self, NameError};

/// One listed domain: it stands for the domain and every name below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub domain: String,
    /// An allow entry (AdBlock `@@||x^`, RPZ `rpz-passthru.`) that punches a hole in the list.
    pub exception: bool,
}

/// What a list gave and what it skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListStats {
    pub lines: usize,
    /// Entries handed to the sink, exceptions included.
    pub entries: usize,
    /// Of `entries`, those with `exception: true`.
    pub exceptions: usize,
    /// Lines (or, on a line with several names, names) that gave no entry.
    pub skipped: BTreeMap<SkipReason, usize>,
}

/// Why a line or a name gave no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    Blank,
    /// Comments, headers and zone boilerplate (`$ORIGIN`, `$TTL`, SOA, NS).
    Comment,
    /// `localhost` and the other loopback names hosts files start with.
    Localhost,
    CosmeticRule,
    PathRule,
    RegexRule,
    /// A rule that does not mean "block this domain and below": AdBlock options Cordon cannot
    /// honour and substring rules, non-blocking zone types, forwarding rules, RPZ IP triggers,
    /// wildcards inside names, and a lone label on a plain line (it would block a whole TLD).
    UnsupportedRule,
    IpAddress,
    InvalidName,
}

impl SkipReason {
    /// The snake_case name, for metrics labels and machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Blank => "blank",
            SkipReason::Comment => "comment",
            SkipReason::Localhost => "localhost",
            SkipReason::CosmeticRule => "cosmetic_rule",
            SkipReason::PathRule => "path_rule",
            SkipReason::RegexRule => "regex_rule",
            SkipReason::UnsupportedRule => "unsupported_rule",
            SkipReason::IpAddress => "ip_address",
            SkipReason::InvalidName => "invalid_name",
        }
    }
}

/// Words for people: `cosmetic rule`.
impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.as_str().split('_').enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

impl ListStats {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    pub fn merge(&mut self, other: &ListStats) {
        self.lines += other.lines;
        self.entries += other.entries;
        self.exceptions += other.exceptions;
        for (&reason, &count) in &other.skipped {
            *self.skipped.entry(reason).or_insert(0) += count;
        }
    }

    pub(super) fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_insert(0) += 1;
    }
}

/// `1234 entries, 2 exceptions, 45 skipped (5 blank, 30 comment, 8 cosmetic rule, 2 invalid name)`
impl fmt::Display for ListStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = if self.entries == 1 {
            "entry"
        } else {
            "entries"
        };
        let exceptions = if self.exceptions == 1 {
            "exception"
        } else {
            "exceptions"
        };
        write!(
            f,
            "{} {entries}, {} {exceptions}, {} skipped",
            self.entries,
            self.exceptions,
            self.skipped_total()
        )?;
        let mut counts = self.skipped.iter().filter(|(_, &count)| count > 0);
        if let Some((reason, count)) = counts.next() {
            write!(f, " ({count} {reason}")?;
            for (reason, count) in counts {
                write!(f, ", {count} {reason}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What parsing a line (or one name on it) came to: entries went to the sink, or nothing did,
/// for this reason.
pub(super) type Parsed = Result<(), SkipReason>;

/// Where a format puts what a line gives: each entry goes to the caller's sink and is counted.
pub(super) struct Out<'a, S> {
    pub(super) stats: &'a mut ListStats,
    pub(super) sink: &'a mut S,
}

impl<S: FnMut(ListEntry)> Out<'_, S> {
    /// Hands on the domain `pattern` names (`example.com` or `*.example.com`).
    pub(super) fn pattern(&mut self, pattern: &str, exception: bool) -> Parsed {
        let domain = domain_of(pattern)?;
        self.emit(domain, exception);
        Ok(())
    }

    pub(super) fn emit(&mut self, domain: String, exception: bool) {
        self.stats.entries += 1;
        self.stats.exceptions += usize::from(exception);
        (self.sink)(ListEntry { domain, exception });
    }

    /// Counts a name that gave no entry, on a line that names several.
    pub(super) fn skip(&mut self, reason: SkipReason) {
        self.stats.skip(reason);
    }
}

/// The domain a pattern names, possibly written `*.domain` (which means the same here: the
/// domain and everything below it).
pub(super) fn domain_of(pattern: &str) -> Result<String, SkipReason> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.contains('*') {
        return Err(SkipReason::UnsupportedRule);
    }
    let domain = names::normalize(name).map_err(|e| match e {
        NameError::IpAddress => SkipReason::IpAddress,
        _ => SkipReason::InvalidName,
    })?;
    if LOCAL_NAMES.contains(&domain.as_str()) {
        return Err(SkipReason::Localhost);
    }
    Ok(domain)
}

/// Names hosts files map to loopback for the machine itself; blocking them would be nonsense.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "localhost4",
    "localhost4.localdomain4",
    "localhost6",
    "localhost6.localdomain6",
];

/// `word` is one of `set`, ASCII case aside (list keywords and options are case-insensitive).
pub(super) fn contains_ignore_case(set: &[&str], word: &str) -> bool {
    set.iter().any(|item| item.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reason_names() {
        assert_eq!(SkipReason::CosmeticRule.as_str(), "cosmetic_rule");
        assert_eq!(SkipReason::IpAddress.as_str(), "ip_address");
        assert_eq!(SkipReason::InvalidName.to_string(), "invalid name");
    }
}
