//! One feed's copy of its RPZ zone, as much of it as a decision needs: for each listed domain,
//! how many of the zone's records block it and how many except it (`name` and `*.name` both
//! stand for the domain and everything below it, so one domain can have several), and how an
//! answer to AXFR or IXFR changes that copy.
//!
//! An answer is read record by record as it arrives ([`Receiver`]); nothing changes until its
//! last SOA has come and checked out: a full zone replaces the copy, an incremental one is
//! checked to apply (every serial follows the one before, every deleted record was there) and
//! only then applied.

use std::collections::BTreeMap;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::FxHashMap;

use crate::policy::feeds::Listing;
use crate::policy::load::{rpz_policy, SkipReason};
use crate::policy::qname::hash_dotted;
use crate::policy::{CategoryId, CategorySet};

/// How many of a zone's records block a domain, and how many except it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    block: u32,
    pass: u32,
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("IXFR gap: the answer starts at serial {got}, this copy is at {have}")]
    Gap { have: u32, got: u32 },
    #[error("IXFR gap: a change from serial {got} follows one to {expected}")]
    Broken { expected: u32, got: u32 },
    #[error("IXFR deletes a record this copy does not hold ({0})")]
    Unknown(String),
    #[error("the answer does not start with the zone's SOA")]
    NoSoa,
    #[error("the primary answered with its SOA alone (serial {0}): it cannot send the changes")]
    OnlySoa(u32),
    #[error("records after the closing SOA")]
    Trailing,
    #[error("the answer ended before its closing SOA")]
    Unfinished,
    #[error("{0} is not in the zone")]
    Outside(String),
}

/// A domain's record counts, keyed by the hash of its name.
type Entries = FxHashMap<u64, Counts>;

/// The feed's copy of its zone.
#[derive(Debug)]
pub struct FeedZone {
    origin: Name,
    category: CategoryId,
    entries: Entries,
    soa: Option<SOA>,
    /// Records that are no QNAME trigger Cordon can honour, by reason, over the zone's life.
    pub skipped: BTreeMap<SkipReason, u64>,
}

/// What an answer did to the copy.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The copy was at the primary's serial already.
    UpToDate,
    /// A whole zone replaced the copy: every domain may have changed.
    Full,
    /// These domains (by hash) changed.
    Changed(Vec<u64>),
}

impl FeedZone {
    pub fn new(origin: Name, category: CategoryId) -> FeedZone {
        FeedZone {
            origin,
            category,
            entries: Entries::default(),
            soa: None,
            skipped: BTreeMap::new(),
        }
    }

    /// The SOA of the copy, once a transfer has brought one.
    pub fn soa(&self) -> Option<&SOA> {
        self.soa.as_ref()
    }

    pub fn serial(&self) -> Option<u32> {
        self.soa.as_ref().map(|s| s.serial)
    }

    /// Listed domains.
    pub fn domains(&self) -> usize {
        self.entries.len()
    }

    /// This feed's listing of a domain.
    pub fn listing(&self, hash: u64) -> Listing {
        let mut listing = (CategorySet::EMPTY, CategorySet::EMPTY);
        if let Some(c) = self.entries.get(&hash) {
            if c.block > 0 {
                listing.0.insert(self.category);
            }
            if c.pass > 0 {
                listing.1.insert(self.category);
            }
        }
        listing
    }

    /// Every listed domain with this feed's listing of it.
    pub fn listings(&self) -> impl Iterator<Item = (u64, Listing)> + '_ {
        self.entries.keys().map(|&h| (h, self.listing(h)))
    }

    /// A reader for the answer to a transfer this copy asked for.
    pub fn receiver(&self) -> Receiver {
        Receiver {
            origin: self.origin.clone(),
            have: self.serial(),
            shape: Shape::Start,
            records: 0,
            full: Entries::default(),
            delta: FxHashMap::default(),
            skipped: BTreeMap::new(),
        }
    }

    /// Applies a finished answer, all of it or (on an error) none of it.
    pub fn apply(&mut self, answer: Received) -> Result<Applied, AnswerError> {
        match answer.kind {
            ReceivedKind::UpToDate => Ok(Applied::UpToDate),
            ReceivedKind::Full(entries) => {
                self.entries = entries;
                self.soa = Some(answer.soa);
                self.skipped = answer.skipped;
                Ok(Applied::Full)
            }
            ReceivedKind::Incremental(delta) => {
                let after = self.check(&delta)?;
                let changed: Vec<u64> = after.iter().map(|(h, _)| *h).collect();
                for (h, counts) in after {
                    if counts == Counts::default() {
                        self.entries.remove(&h);
                    } else {
                        self.entries.insert(h, counts);
                    }
                }
                self.soa = Some(answer.soa);
                for (reason, n) in answer.skipped {
                    *self.skipped.entry(reason).or_default() += n;
                }
                Ok(Applied::Changed(changed))
            }
        }
    }

    /// The counts the delta leaves, or the first record it deletes that is not there.
    fn check(&self, delta: &Delta) -> Result<Vec<(u64, Counts)>, AnswerError> {
        delta
            .iter()
            .map(|(&h, d)| {
                let now = self.entries.get(&h).copied().unwrap_or_default();
                let block = i64::from(now.block) + d.block;
                let pass = i64::from(now.pass) + d.pass;
                match (u32::try_from(block), u32::try_from(pass)) {
                    (Ok(block), Ok(pass)) => Ok((h, Counts { block, pass })),
                    _ => Err(AnswerError::Unknown(d.name.clone())),
                }
            })
            .collect()
    }
}

/// What an IXFR does to a domain's counts.
#[derive(Debug, Default)]
struct DeltaCounts {
    block: i64,
    pass: i64,
    /// For the error message when a deletion finds nothing.
    name: String,
}

type Delta = FxHashMap<u64, DeltaCounts>;

/// Where the reader is in the answer (RFC 5936 for AXFR, RFC 1995 for IXFR).
#[derive(Debug)]
enum Shape {
    /// Nothing read yet.
    Start,
    /// The opening SOA only.
    Opened(SOA),
    /// A whole zone, until the opening SOA comes again.
    Full(SOA),
    /// Changes: `deleting` until a change's new SOA, then adding until the next change's old
    /// SOA (or the closing SOA). `at` is the serial the changes so far lead to.
    Incremental {
        target: SOA,
        at: u32,
        deleting: bool,
    },
    /// The closing SOA has come; `incremental` tells which kind of answer it closed.
    Done { soa: SOA, incremental: bool },
}

/// Reads one answer, record by record, without touching the copy.
pub struct Receiver {
    origin: Name,
    have: Option<u32>,
    shape: Shape,
    records: u64,
    full: Entries,
    delta: Delta,
    skipped: BTreeMap<SkipReason, u64>,
}

/// A whole answer, checked as far as it can be without the copy.
#[derive(Debug)]
pub struct Received {
    soa: SOA,
    kind: ReceivedKind,
    skipped: BTreeMap<SkipReason, u64>,
    /// Records in the answer.
    pub records: u64,
}

#[derive(Debug)]
enum ReceivedKind {
    UpToDate,
    Full(Entries),
    Incremental(Delta),
}

impl Received {
    /// The serial the answer brings the copy to.
    pub fn serial(&self) -> u32 {
        self.soa.serial
    }

    pub fn is_full(&self) -> bool {
        matches!(self.kind, ReceivedKind::Full(_))
    }
}

impl Receiver {
    /// Whether the answer is whole: its closing SOA has come, or (read between messages) a
    /// first message held nothing but the copy's own SOA, IXFR's "nothing changed".
    pub fn done(&self) -> bool {
        match &self.shape {
            Shape::Done { .. } => true,
            Shape::Opened(soa) => self.have == Some(soa.serial),
            _ => false,
        }
    }

    /// Reads the next record of the answer.
    pub fn record(&mut self, record: &Record) -> Result<(), AnswerError> {
        self.records += 1;
        let soa = match &record.data {
            RData::SOA(soa) if record.name == self.origin => Some(soa.clone()),
            _ => None,
        };
        let shape = std::mem::replace(&mut self.shape, Shape::Start);
        self.shape = match (shape, soa) {
            (Shape::Start, Some(soa)) => Shape::Opened(soa),
            (Shape::Start, None) => return Err(AnswerError::NoSoa),
            (Shape::Opened(soa), Some(again)) if again.serial == soa.serial => {
                // A zone of nothing but its SOA.
                Shape::Done {
                    soa,
                    incremental: false,
                }
            }
            (Shape::Opened(target), Some(old)) => {
                let have = self.have.ok_or(AnswerError::NoSoa)?;
                if old.serial != have {
                    return Err(AnswerError::Gap {
                        have,
                        got: old.serial,
                    });
                }
                Shape::Incremental {
                    target,
                    at: old.serial,
                    deleting: true,
                }
            }
            (Shape::Opened(target) | Shape::Full(target), None) => {
                self.add_full(record)?;
                Shape::Full(target)
            }
            (Shape::Full(soa), Some(end)) if end.serial == soa.serial => Shape::Done {
                soa,
                incremental: false,
            },
            // Another SOA inside a zone: the apex's own records are no policy.
            (Shape::Full(target), Some(_)) => Shape::Full(target),
            (
                Shape::Incremental {
                    target,
                    deleting: true,
                    ..
                },
                Some(new),
            ) => Shape::Incremental {
                target,
                at: new.serial,
                deleting: false,
            },
            (Shape::Incremental { target, at, .. }, Some(soa)) => {
                if at == target.serial && soa.serial == at {
                    Shape::Done {
                        soa: target,
                        incremental: true,
                    }
                } else if soa.serial == at {
                    Shape::Incremental {
                        target,
                        at,
                        deleting: true,
                    }
                } else {
                    return Err(AnswerError::Broken {
                        expected: at,
                        got: soa.serial,
                    });
                }
            }
            (shape @ Shape::Incremental { deleting, .. }, None) => {
                self.add_change(record, deleting)?;
                shape
            }
            (Shape::Done { .. }, _) => return Err(AnswerError::Trailing),
        };
        Ok(())
    }

    /// The whole answer, once the stream of messages has ended.
    pub fn finish(self) -> Result<Received, AnswerError> {
        let (soa, kind) = match self.shape {
            Shape::Done {
                soa,
                incremental: true,
            } => (soa, ReceivedKind::Incremental(self.delta)),
            Shape::Done { soa, .. } => (soa, ReceivedKind::Full(self.full)),
            // An IXFR answered with the primary's SOA alone: nothing changed, or the primary
            // cannot tell what did.
            Shape::Opened(soa) if self.have == Some(soa.serial) => (soa, ReceivedKind::UpToDate),
            Shape::Opened(soa) => return Err(AnswerError::OnlySoa(soa.serial)),
            _ => return Err(AnswerError::Unfinished),
        };
        Ok(Received {
            soa,
            kind,
            skipped: self.skipped,
            records: self.records,
        })
    }

    fn add_full(&mut self, record: &Record) -> Result<(), AnswerError> {
        if let Some((hash, exception)) = self.trigger(record, true)? {
            let c = self.full.entry(hash).or_default();
            if exception {
                c.pass += 1;
            } else {
                c.block += 1;
            }
        }
        Ok(())
    }

    fn add_change(&mut self, record: &Record, deleting: bool) -> Result<(), AnswerError> {
        if let Some((hash, exception)) = self.trigger(record, !deleting)? {
            let by = if deleting { -1 } else { 1 };
            let d = self.delta.entry(hash).or_default();
            if exception {
                d.pass += by;
            } else {
                d.block += by;
            }
            if d.name.is_empty() {
                d.name = record.name.to_ascii();
            }
        }
        Ok(())
    }

    /// The domain (hash) a record blocks or excepts; `None` for the zone's own records and for
    /// triggers Cordon cannot honour (counted when `count` says so: not for deletions).
    fn trigger(
        &mut self,
        record: &Record,
        count: bool,
    ) -> Result<Option<(u64, bool)>, AnswerError> {
        let owner = &record.name;
        if !self.origin.zone_of(owner) {
            return Err(AnswerError::Outside(owner.to_ascii()));
        }
        if *owner == self.origin {
            // The apex's SOA, NS and the like describe the zone, not a policy.
            return Ok(None);
        }
        let relative = relative_name(owner, &self.origin);
        let rdata = rdata_text(&record.data);
        match rpz_policy(
            &relative,
            rtype_text(record.record_type()),
            rdata.as_deref(),
        ) {
            Ok(entry) => Ok(Some((hash_dotted(&entry.domain), entry.exception))),
            Err(reason) => {
                if count {
                    *self.skipped.entry(reason).or_default() += 1;
                }
                Ok(None)
            }
        }
    }
}

/// `owner` less the zone's labels, lowercase: `Evil.Example.rpz.test.` -> `evil.example`.
fn relative_name(owner: &Name, origin: &Name) -> String {
    // `num_labels` leaves a leading `*` out (it counts labels as RRSIG does): count them all.
    let keep = owner.iter().count().saturating_sub(origin.iter().count());
    let mut out = String::new();
    for (i, label) in owner.iter().take(keep).enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            // Bytes a name cannot hold end up invalid for `rpz_policy`, as in a list file.
            out.push(char::from(b.to_ascii_lowercase()));
        }
    }
    out
}

/// The rdata of the record types an RPZ policy uses, as a zone file writes it.
fn rdata_text(data: &RData) -> Option<String> {
    match data {
        RData::CNAME(target) => Some(target.0.to_ascii()),
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        _ => None,
    }
}

fn rtype_text(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::CNAME => "CNAME",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, NS};

    use super::*;

    const ZONE: &str = "rpz.test.";

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    fn soa(serial: u32) -> Record {
        let data = SOA::new(
            name("ns.test."),
            name("admin.test."),
            serial,
            60,
            30,
            600,
            60,
        );
        Record::from_rdata(name(ZONE), 60, RData::SOA(data))
    }

    fn cname(owner: &str, target: &str) -> Record {
        let owner = name(&format!("{owner}.{ZONE}"));
        Record::from_rdata(owner, 60, RData::CNAME(CNAME(name(target))))
    }

    fn zone() -> FeedZone {
        FeedZone::new(name(ZONE), CategoryId::new(0).unwrap())
    }

    fn answer(zone: &FeedZone, records: &[Record]) -> Result<Received, AnswerError> {
        let mut r = zone.receiver();
        for record in records {
            r.record(record)?;
        }
        r.finish()
    }

    fn listed(zone: &FeedZone, domain: &str) -> (bool, bool) {
        let (set, clear) = zone.listing(hash_dotted(domain));
        (!set.is_empty(), !clear.is_empty())
    }

    /// A zone at serial 1: two blocks (one written twice), an exception, and what is skipped.
    fn loaded() -> FeedZone {
        let mut z = zone();
        let ns = Record::from_rdata(name(ZONE), 60, RData::NS(NS(name("ns.test."))));
        let records = [
            soa(1),
            ns,
            cname("evil.example", "."),
            cname("*.evil.example", "."),
            cname("bad.example", "rpz-drop."),
            cname("ok.evil.example", "rpz-passthru."),
            cname("32.1.2.0.192.rpz-ip", "."),
            cname("tcp.example", "rpz-tcp-only."),
            soa(1),
        ];
        let received = answer(&z, &records).unwrap();
        assert!(received.is_full());
        assert_eq!(z.apply(received).unwrap(), Applied::Full);
        z
    }

    #[test]
    fn a_full_zone_lists_its_qname_triggers_and_counts_the_rest() {
        let z = loaded();
        assert_eq!(z.serial(), Some(1));
        assert_eq!(z.domains(), 3);
        assert_eq!(listed(&z, "evil.example"), (true, false));
        assert_eq!(listed(&z, "ok.evil.example"), (false, true));
        assert_eq!(listed(&z, "bad.example"), (true, false));
        assert_eq!(z.skipped.get(&SkipReason::UnsupportedRule), Some(&2));
    }

    #[test]
    fn changes_apply_only_when_the_whole_answer_checks_out() {
        let mut z = loaded();
        // 1 -> 2: `evil.example` loses one of its two records and stays; bad.example goes.
        // 2 -> 3: new.example comes.
        let records = [
            soa(3),
            soa(1),
            cname("*.evil.example", "."),
            cname("bad.example", "rpz-drop."),
            soa(2),
            soa(2),
            soa(3),
            cname("new.example", "."),
            Record::from_rdata(
                name(&format!("sink.example.{ZONE}")),
                60,
                RData::A(A::new(0, 0, 0, 0)),
            ),
            soa(3),
        ];
        let received = answer(&z, &records).unwrap();
        let Applied::Changed(changed) = z.apply(received).unwrap() else {
            panic!("not incremental");
        };
        assert_eq!(changed.len(), 4);
        assert_eq!(z.serial(), Some(3));
        assert_eq!(listed(&z, "evil.example"), (true, false));
        assert_eq!(listed(&z, "bad.example"), (false, false));
        assert_eq!(listed(&z, "new.example"), (true, false));
        assert_eq!(listed(&z, "sink.example"), (true, false));
        assert_eq!(z.domains(), 4);
    }

    #[test]
    fn a_gap_a_broken_chain_or_an_unknown_deletion_changes_nothing() {
        let mut z = loaded();
        let gap = [soa(5), soa(4), soa(5), cname("x.example", "."), soa(5)];
        assert_eq!(
            answer(&z, &gap).err(),
            Some(AnswerError::Gap { have: 1, got: 4 })
        );
        let broken = [soa(5), soa(1), soa(2), soa(3), soa(5), soa(5)];
        assert_eq!(
            answer(&z, &broken).err(),
            Some(AnswerError::Broken {
                expected: 2,
                got: 3
            })
        );
        let unknown = [soa(2), soa(1), cname("never.example", "."), soa(2), soa(2)];
        let received = answer(&z, &unknown).unwrap();
        assert!(matches!(z.apply(received), Err(AnswerError::Unknown(_))));
        assert_eq!(z.serial(), Some(1));
        assert_eq!(z.domains(), 3);
        let cut = [soa(2), soa(1), cname("bad.example", "rpz-drop."), soa(2)];
        assert_eq!(answer(&z, &cut).err(), Some(AnswerError::Unfinished));
        let trailing = [
            soa(1),
            cname("a.example", "."),
            soa(1),
            cname("b.example", "."),
        ];
        assert_eq!(answer(&z, &trailing).err(), Some(AnswerError::Trailing));
        let outside = [
            soa(1),
            Record::from_rdata(name("evil.other."), 60, RData::CNAME(CNAME(name(".")))),
        ];
        assert!(matches!(
            answer(&z, &outside).err(),
            Some(AnswerError::Outside(_))
        ));
    }

    #[test]
    fn an_soa_alone_is_up_to_date_or_asks_for_the_whole_zone() {
        let mut z = loaded();
        let same = answer(&z, &[soa(1)]).unwrap();
        assert_eq!(z.apply(same).unwrap(), Applied::UpToDate);
        assert_eq!(answer(&z, &[soa(9)]).err(), Some(AnswerError::OnlySoa(9)));
        // An IXFR answered with the whole zone replaces the copy.
        let full = [soa(7), cname("only.example", "."), soa(7)];
        let received = answer(&z, &full).unwrap();
        assert_eq!(z.apply(received).unwrap(), Applied::Full);
        assert_eq!(z.domains(), 1);
        assert_eq!(z.serial(), Some(7));
    }
}
