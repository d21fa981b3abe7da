//! What the query path tells those who watch queries: one [`QueryRecord`] per answered query,
//! for the trail of isolated and watched devices and for the query log (a file or dnstap).
//!
//! Records leave the query path through [`Tap`]s, bounded lock-free queues: a full queue drops
//! the record and counts it, so a slow disk, store or collector never blocks or slows an
//! answer. Nothing here knows where records go; `trail/` and `querylog/` drain the taps.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_queue::ArrayQueue;
use hickory_proto::rr::RecordType;
use prometheus::IntCounter;

use crate::identity::Transport;
use crate::metrics::Outcome;
use crate::policy::qname::wire_to_dotted;
use crate::policy::{Decision, DeviceId, GroupIdx, Reason, Snapshot};

/// One answered query, as its observers see it.
#[derive(Clone)]
pub struct QueryRecord {
    /// When the query came in.
    pub at: SystemTime,
    /// How long the answer took.
    pub took: Duration,
    pub client: IpAddr,
    /// The client's port.
    pub port: u16,
    pub transport: Transport,
    /// The device identified, if any.
    pub device: Option<DeviceId>,
    /// The question's name and, when an observer wants them, the query and the answer.
    pub wire: Wire,
    pub qtype: u16,
    /// The answer's RCODE.
    pub rcode: u8,
    pub outcome: Outcome,
    /// The decision that stands: for an answer blocked by a CNAME target, the target's.
    pub decision: Decision,
    /// The snapshot that decided, to put the decision into words off the query path.
    pub snapshot: Arc<Snapshot>,
}

impl QueryRecord {
    /// The name asked, dotted (`www.example.com`; the root is `.`).
    pub fn dotted_name(&self) -> String {
        wire_to_dotted(self.wire.name())
    }

    /// The decision in words: rule, category or default, with the policy and the group.
    pub fn reason(&self) -> String {
        match crate::policy::QName::from_wire(self.wire.name()) {
            Ok((name, _)) => self.decision.describe(&self.snapshot, &name),
            Err(_) => String::new(),
        }
    }
}

/// The question's name (wire form, lowercase) and, when an observer (dnstap) wants them, the
/// query and the answer as they went over the wire: one allocation, which the query path makes
/// and the writer's thread frees (a free of another thread's memory takes its arena's lock).
#[derive(Clone)]
pub struct Wire {
    bytes: Box<[u8]>,
    name_end: u16,
    /// Where the query ends and the answer begins; `None` without them.
    query_end: Option<u32>,
}

impl Wire {
    pub fn new(name: &[u8], messages: Option<(&[u8], &[u8])>) -> Wire {
        let (query, response) = messages.unwrap_or_default();
        let mut bytes = Vec::with_capacity(name.len() + query.len() + response.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(query);
        bytes.extend_from_slice(response);
        Wire {
            bytes: bytes.into_boxed_slice(),
            name_end: name.len() as u16,
            query_end: messages.map(|_| (name.len() + query.len()) as u32),
        }
    }

    /// The name asked, in wire form.
    pub fn name(&self) -> &[u8] {
        &self.bytes[..usize::from(self.name_end)]
    }

    /// The query and the answer, when they were kept.
    pub fn messages(&self) -> Option<(&[u8], &[u8])> {
        let query_end = self.query_end? as usize;
        let name_end = usize::from(self.name_end);
        Some((&self.bytes[name_end..query_end], &self.bytes[query_end..]))
    }
}

/// The words of decisions for those who write records down, made once for the decisions that
/// do not depend on the name (a category, uncategorised, the default: most of a device's
/// queries), per snapshot version, group and outcome; a rule's words name the rule's domain and
/// are made each time. One per consumer thread.
#[derive(Default)]
pub struct Words {
    memo: HashMap<(u64, GroupIdx, bool, u8), String>,
}

/// [`Words`]' reason kinds past the category ids (0..=63).
const UNCATEGORISED: u8 = 64;
const DEFAULT: u8 = 65;

impl Words {
    /// `record.reason()`, from the memo when it can be.
    pub fn of(&mut self, record: &QueryRecord) -> Cow<'_, str> {
        let d = &record.decision;
        let kind = match d.reason {
            Reason::Rule(_) => return Cow::Owned(record.reason()),
            Reason::Category(c) => c.get(),
            Reason::Uncategorised => UNCATEGORISED,
            Reason::Default => DEFAULT,
        };
        if self.memo.len() >= 4096 {
            // Versions come and go: the words of old snapshots are not asked for again.
            self.memo.clear();
        }
        let key = (record.snapshot.version, d.group, d.blocked, kind);
        Cow::Borrowed(self.memo.entry(key).or_insert_with(|| record.reason()))
    }
}

/// Lowers the calling thread's priority to nice 10 (Linux sets it per thread): a thread that
/// drains a tap yields to the query path's on a busy core, and catches up in the gaps while
/// its queue holds what waits. Best effort.
pub fn lower_thread_priority() {
    // SAFETY: gettid and setpriority take no pointers and act on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// A bounded queue of records from the query path to one consumer.
pub struct Tap {
    queue: ArrayQueue<QueryRecord>,
    dropped: IntCounter,
}

impl Tap {
    /// A tap that holds up to `capacity` records (at least one); a record that finds it full is
    /// dropped and counted on `dropped`.
    pub fn new(capacity: usize, dropped: IntCounter) -> Arc<Tap> {
        Arc::new(Tap {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped,
        })
    }

    /// Hands a record over, or drops it when the queue is full: never waits.
    pub fn offer(&self, record: QueryRecord) {
        if self.queue.push(record).is_err() {
            self.dropped.inc();
        }
    }

    /// Moves up to `max` records, oldest first, into `into`; returns how many.
    pub fn take(&self, max: usize, into: &mut Vec<QueryRecord>) -> usize {
        let mut n = 0;
        while n < max {
            let Some(record) = self.queue.pop() else {
                break;
            };
            into.push(record);
            n += 1;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Which queries the query log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogMode {
    /// Only the blocked ones.
    Blocked,
    /// Every answered query.
    All,
}

/// The query log's tap and what it wants.
pub struct LogTap {
    pub mode: LogMode,
    pub tap: Arc<Tap>,
    /// Whether records carry the query and answer messages (dnstap does).
    pub messages: bool,
}

/// Where the handler sends records: the trail's tap (queries of isolated devices, devices on
/// probation and devices a responder watches) and the query log's.
#[derive(Default)]
pub struct Observers {
    pub trail: Option<Arc<Tap>>,
    pub log: Option<LogTap>,
}

impl Observers {
    /// Whether a query of `device`, decided for `decision.group`, belongs in the trail: the
    /// device is in isolation (the isolation group or a stricter one) or marked in the
    /// snapshot as on probation or watched.
    #[inline]
    pub fn traced(snapshot: &Snapshot, device: Option<DeviceId>, decision: &Decision) -> bool {
        let Some(device) = device else {
            return false;
        };
        decision.group <= snapshot.isolation_group
            || (!snapshot.devices.watched.is_empty()
                && snapshot.devices.watched.contains_key(&device))
    }

    /// Whether the query log wants a query with this outcome.
    #[inline]
    pub fn logs(&self, outcome: Outcome) -> Option<&LogTap> {
        self.log.as_ref().filter(|l| match l.mode {
            LogMode::All => true,
            LogMode::Blocked => outcome == Outcome::Blocked,
        })
    }
}

/// A query type's mnemonic (`A`, `HTTPS`), or `TYPE65280` (RFC 3597) for one without.
pub fn type_name(qtype: u16) -> Cow<'static, str> {
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => Cow::Owned(format!("TYPE{n}")),
        known => Cow::Borrowed(known.into()),
    }
}

/// An RCODE's mnemonic (`NOERROR`, `NXDOMAIN`), or `RCODE12`.
pub fn rcode_name(rcode: u8) -> Cow<'static, str> {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    match NAMES.get(usize::from(rcode)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("RCODE{rcode}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{rcode_name, type_name};

    #[test]
    fn types_and_rcodes_read_as_their_mnemonics() {
        assert_eq!(type_name(28), "AAAA");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(65_280), "TYPE65280");
        assert_eq!(rcode_name(0), "NOERROR");
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(12), "RCODE12");
    }
}
