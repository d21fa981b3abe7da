//! Helpers for the list formats' tests: parse a text as a list and pick out what it gave.

use super::entry::{ListEntry, ListStats, SkipReason};
use super::list::parse_list;

pub(super) fn parse(text: &str) -> (Vec<ListEntry>, ListStats) {
    let mut entries = Vec::new();
    let stats = parse_list(text, |entry| entries.push(entry));
    (entries, stats)
}

pub(super) fn blocked(entries: &[ListEntry]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| !e.exception)
        .map(|e| e.domain.as_str())
        .collect()
}

pub(super) fn allowed(entries: &[ListEntry]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e.exception)
        .map(|e| e.domain.as_str())
        .collect()
}

pub(super) fn skipped(stats: &ListStats, reason: SkipReason) -> usize {
    stats.skipped.get(&reason).copied().unwrap_or(0)
}

/// Every line is accounted for: it gave entries, or it (or its names) were counted skipped.
pub(super) fn assert_accounted(stats: &ListStats) {
    assert!(
        stats.entries + stats.skipped_total() >= stats.lines,
        "lines unaccounted for: {stats:?}"
    );
}
