//! A policy's own domain rules: deny, allow and allowed service bundles.
//!
//! Rules are few (tens to thousands), so they are kept by their exact wire-form name and
//! compared byte for byte: a rule can never match a name it was not written for.

use rustc_hash::FxHashMap;

use super::qname::QName;

/// Which list a rule came from, in the order contract 7 checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Deny,
    Allow,
    Service,
}

/// A rule that matched a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleHit {
    pub kind: RuleKind,
    /// Labels skipped from the queried name to reach the rule's domain.
    pub skip: usize,
    /// `*.domain` (the domain and all below) rather than the exact name.
    pub subtree: bool,
    /// For [`RuleKind::Service`], the bundle's index in the policy's service list.
    pub service: u16,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    exact: u8,
    subtree: u8,
    service: u16,
}

const fn bit(kind: RuleKind) -> u8 {
    1 << kind as u8
}

/// The rules of one policy.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    map: FxHashMap<Box<[u8]>, Entry>,
}

impl RuleSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Adds a rule for `name`: the exact name, or with `subtree` the name and all below it.
    pub fn add(&mut self, kind: RuleKind, name: &QName, subtree: bool, service: u16) {
        let entry = self.map.entry(name.wire().into()).or_default();
        if subtree {
            entry.subtree |= bit(kind);
        } else {
            entry.exact |= bit(kind);
        }
        if kind == RuleKind::Service {
            entry.service = service;
        }
    }

    /// The rule that decides `name`: deny before allow before service, and within a kind the
    /// rule for the longest suffix.
    pub fn first_match(&self, name: &QName) -> Option<RuleHit> {
        if self.map.is_empty() {
            return None;
        }
        let mut best: Option<RuleHit> = None;
        for skip in 0..=name.label_count() {
            let Some(entry) = self.map.get(name.suffix(skip)) else {
                continue;
            };
            let exact = if skip == 0 { entry.exact } else { 0 };
            for kind in [RuleKind::Deny, RuleKind::Allow, RuleKind::Service] {
                let subtree = entry.subtree & bit(kind) != 0;
                if exact & bit(kind) == 0 && !subtree {
                    continue;
                }
                if best.is_none_or(|b| kind < b.kind) {
                    best = Some(RuleHit {
                        kind,
                        skip,
                        subtree: exact & bit(kind) == 0,
                        service: entry.service,
                    });
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QName {
        QName::from_dotted(s).unwrap()
    }

    #[test]
    fn exact_rules_match_only_their_name() {
        let mut r = RuleSet::new();
        r.add(RuleKind::Allow, &q("example.com"), false, 0);
        assert_eq!(
            r.first_match(&q("example.com")).unwrap().kind,
            RuleKind::Allow
        );
        assert!(r.first_match(&q("www.example.com")).is_none());
    }

    #[test]
    fn subtree_rules_match_the_domain_and_below() {
        let mut r = RuleSet::new();
        r.add(RuleKind::Allow, &q("apple.com"), true, 0);
        let hit = r.first_match(&q("a.b.apple.com")).unwrap();
        assert_eq!(
            (hit.kind, hit.skip, hit.subtree),
            (RuleKind::Allow, 2, true)
        );
        assert!(r.first_match(&q("apple.com")).is_some());
        assert!(r.first_match(&q("pineapple.com")).is_none());
    }

    #[test]
    fn deny_beats_allow_whatever_the_depth() {
        let mut r = RuleSet::new();
        r.add(RuleKind::Allow, &q("x.example.com"), false, 0);
        r.add(RuleKind::Deny, &q("example.com"), true, 0);
        r.add(RuleKind::Service, &q("example.com"), true, 3);
        let hit = r.first_match(&q("x.example.com")).unwrap();
        assert_eq!(hit.kind, RuleKind::Deny);
        assert_eq!(hit.skip, 1);
    }

    #[test]
    fn services_come_last_and_carry_their_index() {
        let mut r = RuleSet::new();
        r.add(RuleKind::Service, &q("zoom.us"), true, 7);
        let hit = r.first_match(&q("eu01.zoom.us")).unwrap();
        assert_eq!((hit.kind, hit.service), (RuleKind::Service, 7));
    }
}
