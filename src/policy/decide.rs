//! The decision: may this group's policy resolve this name, and if not, why not.
//!
//! Contract 7: deny rule, allow rule, allowed service bundle, blocked category,
//! block-uncategorised, the policy's default; the first that matches wins.

use super::categories::{CategoryId, CategorySet};
use super::qname::{wire_to_dotted, QName};
use super::rules::{RuleHit, RuleKind};
use super::snapshot::{DefaultAction, GroupIdx, Policy, Snapshot};

/// Why a name is allowed or blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A deny, allow or service rule matched.
    Rule(RuleHit),
    /// A blocked category matched (the lowest-numbered one of the name's blocked categories).
    Category(CategoryId),
    Uncategorised,
    Default,
}

/// The outcome for one name under one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub blocked: bool,
    pub reason: Reason,
    pub group: GroupIdx,
}

impl Decision {
    /// The reason in words, for the EDE text and explanations; `name` is the name decided.
    pub fn describe(&self, snapshot: &Snapshot, name: &QName) -> String {
        let group = snapshot.group(self.group);
        let whose = format!("policy {}, group {}", group.policy.name, group.name);
        match self.reason {
            Reason::Rule(hit) => {
                let domain = wire_to_dotted(name.suffix(hit.skip));
                let star = if hit.subtree { "*." } else { "" };
                let kind = match hit.kind {
                    RuleKind::Deny => "deny".to_string(),
                    RuleKind::Allow => "allow".to_string(),
                    RuleKind::Service => {
                        let service = group.policy.services.get(hit.service as usize);
                        format!("service {}", service.map_or("?", String::as_str))
                    }
                };
                format!("{kind} rule {star}{domain} ({whose})")
            }
            Reason::Category(id) => format!("category {} ({whose})", snapshot.taxonomy.name(id)),
            Reason::Uncategorised => format!("uncategorised name ({whose})"),
            Reason::Default if self.blocked => format!("not on the allow-list ({whose})"),
            Reason::Default => format!("default allow ({whose})"),
        }
    }

    /// The category that blocked, if a category did.
    pub fn category(&self) -> Option<CategoryId> {
        match self.reason {
            Reason::Category(c) if self.blocked => Some(c),
            _ => None,
        }
    }
}

/// Decides `name` for `group`.
#[inline]
pub fn decide(snapshot: &Snapshot, group: GroupIdx, name: &QName) -> Decision {
    decide_and_check(snapshot, group, name, false).0
}

/// Decides `name` for `group`, and says whether asking for it sets off a tripwire of the
/// group's policy: one rule lookup and at most one category lookup serve both.
#[inline]
pub fn decide_and_tripwire(
    snapshot: &Snapshot,
    group: GroupIdx,
    name: &QName,
) -> (Decision, Option<TripHit>) {
    decide_and_check(snapshot, group, name, true)
}

#[inline(always)]
fn decide_and_check(
    snapshot: &Snapshot,
    group: GroupIdx,
    name: &QName,
    tripwires: bool,
) -> (Decision, Option<TripHit>) {
    let policy = &snapshot.group(group).policy;
    let rule = policy.rules.first_match(name);
    let mut lookups = Lookups {
        snapshot,
        name,
        categories: None,
    };
    let (blocked, reason) = match rule {
        Some(hit) => (hit.kind == RuleKind::Deny, Reason::Rule(hit)),
        None => match category_reason(policy, &mut lookups) {
            Some(reason) => (true, reason),
            None => (policy.default == DefaultAction::Block, Reason::Default),
        },
    };
    let decision = Decision {
        blocked,
        reason,
        group,
    };
    let hit = match tripwires {
        true => tripwire(policy, rule, &mut lookups),
        false => None,
    };
    (decision, hit)
}

/// What the steps of a decision look up about a name, each at most once.
struct Lookups<'a> {
    snapshot: &'a Snapshot,
    name: &'a QName,
    categories: Option<CategorySet>,
}

impl Lookups<'_> {
    #[inline]
    fn categories(&mut self) -> CategorySet {
        if let Some(found) = self.categories {
            return found;
        }
        let found = self.snapshot.categorise(self.name);
        self.categories = Some(found);
        found
    }
}

/// Checks a name met inside an allowed answer (a CNAME target). Only an explicit deny or one of
/// the policy's target categories ([`Policy::target_categories`]: its blocked categories, and
/// for a default-block policy every security category unless it opts out) blocks it: an
/// allow-list policy must not break on the CDN names its allowed domains point to, but a tracker
/// cloaked behind a first-party name, or malware behind an allowed one, must not get through.
#[inline]
pub fn check_target(snapshot: &Snapshot, group: GroupIdx, target: &QName) -> Option<Decision> {
    let policy = &snapshot.group(group).policy;
    let blocked = |reason| Decision {
        blocked: true,
        reason,
        group,
    };
    match policy.rules.first_match(target) {
        Some(hit) if hit.kind == RuleKind::Deny => return Some(blocked(Reason::Rule(hit))),
        Some(_) => return None,
        None => {}
    }
    if policy.target_categories.is_empty() {
        return None;
    }
    let found = snapshot.categorise(target);
    let id = found.intersection(policy.target_categories).first()?;
    Some(blocked(Reason::Category(id)))
}

/// Why a name is a tripwire for a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripHit {
    /// In the policy's `tripwire` list.
    Listed,
    /// In one of its `tripwire_categories` (the lowest-numbered).
    Category(CategoryId),
}

/// Whether asking for the name sets off a tripwire of `policy`. Never for a name an allow rule
/// or an allowed service covers: an incident's list must not isolate every device that reaches
/// its MDM.
#[inline]
fn tripwire(policy: &Policy, rule: Option<RuleHit>, lookups: &mut Lookups<'_>) -> Option<TripHit> {
    if !policy.has_tripwires() || rule.is_some_and(|hit| hit.kind != RuleKind::Deny) {
        return None;
    }
    if policy.tripwires.first_match(lookups.name).is_some() {
        return Some(TripHit::Listed);
    }
    if policy.tripwire_categories.is_empty() {
        return None;
    }
    let id = lookups
        .categories()
        .intersection(policy.tripwire_categories)
        .first()?;
    Some(TripHit::Category(id))
}

/// The category step of contract 7: a blocked category, or block-uncategorised.
#[inline]
fn category_reason(policy: &Policy, lookups: &mut Lookups<'_>) -> Option<Reason> {
    if policy.block_categories.is_empty() && !policy.block_uncategorised {
        return None;
    }
    let found = lookups.categories();
    if let Some(id) = found.intersection(policy.block_categories).first() {
        return Some(Reason::Category(id));
    }
    (policy.block_uncategorised && found.is_empty()).then_some(Reason::Uncategorised)
}
