//! The store: where committed changes live, so that a restart, or another node, sees them.
//!
//! Two engines behind one interface: the embedded SQLite file that one node runs on
//! ([`sqlite`]), and a PostgreSQL database that several equal nodes share ([`postgres`]). Both
//! hold the same tables, created and upgraded by versioned migrations (`migrations/`), and the
//! same ordered change log: every committed [`Change`] is a row, with an id one above the last.
//! A node's *position* is the id of the last change it has applied; reading the rows after it
//! brings the node up to date.

pub mod postgres;
pub mod sqlite;
pub mod trail;

use std::net::IpAddr;
use std::time::Duration;

use super::state::{Alias, AliasKind, AuditEvent, Change, Hold, State};
use crate::policy::DeviceId;
pub use postgres::{PgSettings, PgStore};
pub use sqlite::SqliteStore;

/// Where the state lives, as config says.
#[derive(Debug, Clone)]
pub enum StoreTarget {
    Sqlite(std::path::PathBuf),
    Postgres(Box<PgSettings>),
}

/// One of the two engines.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

/// A change as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub id: i64,
    pub change: Change,
    /// When it was written, in milliseconds since the epoch, where the engine records it.
    pub committed_ms: Option<i64>,
}

/// An audit row as an outbox reader sees it: its id (which only grows, in commit order), the
/// record, and the device it names as the device is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Audited {
    pub id: i64,
    pub event: AuditEvent,
    /// The device's label, when the row names a device the devices table has.
    pub label: Option<String>,
    /// The device's aliases as `kind:value`, sorted; device tokens are left out.
    pub aliases: Vec<String>,
}

/// What a reader of the audit log finds after its position, read in one consistent view.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbox {
    /// The rows with the actions asked for, oldest first, at most as many as asked for.
    pub rows: Vec<Audited>,
    /// How many rows with those actions there are after the position in all.
    pub pending: i64,
    /// The id of the newest audit row of any action (0 for none): once every row asked for up
    /// to it is passed, the reader's position can move there.
    pub end: i64,
}

/// The whole state and the log position it reflects, read in one consistent view.
#[derive(Debug)]
pub struct Loaded {
    pub state: State,
    pub position: i64,
}

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("store {store}: {fault}")]
pub struct StoreError {
    /// The file, or the database URL without its password.
    pub store: String,
    pub fault: Fault,
}

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migrations: {0}")]
    Migration(#[from] refinery::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the transaction was lost with its connection")]
    NoTransaction,
    #[error("a logged change does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("device id {0} is outside 1..=4294967295")]
    DeviceRange(i64),
    /// The log no longer holds the rows after this node's position: it must load the state.
    #[error("the change log was trimmed past position {0}")]
    Behind(i64),
    #[error("TLS: {0}")]
    Tls(String),
    /// A chunk of the trail that does not decode.
    #[error("{0}")]
    Chunk(String),
}

impl StoreError {
    /// True when the log was trimmed past the reader's position.
    pub fn is_behind(&self) -> bool {
        matches!(self.fault, Fault::Behind(_))
    }
}

impl Store {
    /// Opens the store `target` names, creating or upgrading its tables.
    pub async fn open(target: &StoreTarget) -> Result<Store, StoreError> {
        Ok(match target {
            StoreTarget::Sqlite(path) => Store::Sqlite(SqliteStore::open(path)?),
            StoreTarget::Postgres(settings) => {
                Store::Postgres(Box::new(PgStore::open((**settings).clone()).await?))
            }
        })
    }

    /// How to reach it, when other nodes may write to it too.
    pub fn shared(&self) -> Option<&PgSettings> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.settings()),
        }
    }

    /// Reads the whole state and the log position it reflects.
    pub async fn load(&mut self) -> Result<Loaded, StoreError> {
        let mut loaded = match self {
            Store::Sqlite(s) => s.load(),
            Store::Postgres(s) => s.load().await,
        }?;
        // Loading added every alias one by one; packing them now is what keeps them small.
        loaded.state.aliases.merge();
        Ok(loaded)
    }

    /// Starts a write: from here until [`Store::commit`], no other node commits. Returns the
    /// changes other nodes committed after `position` (at most a [`PAGE`]: a full page means
    /// more follow), which the caller must apply first.
    pub async fn begin(&mut self, position: i64) -> Result<Vec<Logged>, StoreError> {
        match self {
            Store::Sqlite(s) => s.changes_after(position),
            Store::Postgres(s) => s.begin(position).await,
        }
    }

    /// Ends a write begun with [`Store::begin`] without committing anything.
    pub async fn abort(&mut self) {
        if let Store::Postgres(s) = self {
            s.abort().await;
        }
    }

    /// Commits `changes` (logged from `position + 1` up) and `audit` in one transaction; returns
    /// the new position.
    pub async fn commit(
        &mut self,
        position: i64,
        changes: &[Change],
        audit: &[AuditEvent],
        now: i64,
    ) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.commit(changes, audit, now),
            Store::Postgres(s) => s.commit(position, changes, audit, now).await,
        }
    }

    /// The logged changes after `position`, oldest first, at most a [`PAGE`] of them.
    pub async fn changes_after(&mut self, position: i64) -> Result<Vec<Logged>, StoreError> {
        match self {
            Store::Sqlite(s) => s.changes_after(position),
            Store::Postgres(s) => s.changes_after(position).await,
        }
    }

    /// The audit events of `device`, newest first.
    pub async fn timeline(
        &mut self,
        device: DeviceId,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.timeline(device, limit),
            Store::Postgres(s) => s.timeline(device, limit).await,
        }
    }
}

impl Store {
    /// The audit rows after `after` whose action is one of `actions` (at most `limit` of
    /// them), how many there are in all, and the newest row's id. Audit ids grow in commit order
    /// in both engines (PostgreSQL's are given under the log's lock), so a reader that moves its
    /// position past a row never misses one that commits later.
    pub async fn outbox(
        &mut self,
        after: i64,
        actions: &[&str],
        limit: usize,
    ) -> Result<Outbox, StoreError> {
        match self {
            Store::Sqlite(s) => s.outbox(after, actions, limit),
            Store::Postgres(s) => s.outbox(after, actions, limit).await,
        }
    }

    /// How far the events sink `sink` has been delivered (the last audit id it has passed). A
    /// sink the store has not heard of starts at the newest audit row: it hears what happens from
    /// now on, not the history.
    pub async fn sink_cursor(&mut self, sink: &str) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.sink_cursor(sink),
            Store::Postgres(s) => s.sink_cursor(sink).await,
        }
    }

    /// Records that `sink` has been delivered up to audit id `id`; a cursor never moves back.
    pub async fn set_sink_cursor(&mut self, sink: &str, id: i64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_sink_cursor(sink, id),
            Store::Postgres(s) => s.set_sink_cursor(sink, id).await,
        }
    }
}

/// Aliases as both engines read them for [`Audited`]: one `kind:value` a line, sorted.
fn alias_lines(text: Option<String>) -> Vec<String> {
    let mut aliases: Vec<String> = text
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    aliases.sort();
    aliases
}

/// Checks that `rows`, read after `position`, continue it without a hole: ids are dense, so
/// a hole means the log was trimmed past this reader.
fn continues(position: i64, rows: Vec<Logged>) -> Result<Vec<Logged>, Fault> {
    match rows.first() {
        Some(first) if first.id != position + 1 => Err(Fault::Behind(position)),
        _ => Ok(rows),
    }
}

/// Table rows read back into a [`State`], the same way for either engine: each row becomes
/// the change that wrote it.
#[derive(Default)]
struct Rows {
    state: State,
}

impl Rows {
    /// Ids are allocated from 1 up and index the writer's device table.
    fn id_range(&mut self, low: Option<i64>, high: Option<i64>) -> Result<(), Fault> {
        for id in [low, high].into_iter().flatten() {
            if !(1..=i64::from(u32::MAX)).contains(&id) {
                return Err(Fault::DeviceRange(id));
            }
        }
        if let Some(high) = high {
            self.state.devices.reserve_ids(DeviceId(high as u64));
        }
        Ok(())
    }

    fn device(
        &mut self,
        id: i64,
        label: String,
        critical: bool,
        hold: Option<Hold>,
        probation: Option<i64>,
    ) {
        let device = DeviceId(id as u64);
        let state = &mut self.state;
        state.apply(&Change::DeviceAdded { device, label });
        state.apply(&Change::CriticalSet { device, critical });
        if let Some(hold) = hold {
            state.apply(&Change::HoldPlaced { device, hold });
        }
        if let Some(until) = probation {
            state.apply(&Change::ProbationStarted { device, until });
        }
    }

    fn alias(&mut self, kind: &str, value: &str, device: i64) {
        if let Some(device) = self.known(device) {
            let kind = AliasKind::parse(kind).unwrap_or(AliasKind::Name);
            let alias = Alias::new(kind, value);
            self.state.apply(&Change::AliasSeen { alias, device });
        }
    }

    fn membership(&mut self, device: i64, group: String) {
        if let Some(device) = self.known(device) {
            self.state.apply(&Change::MembershipSet { device, group });
        }
    }

    fn group(&mut self, group: String, name: String) {
        self.state.apply(&Change::GroupNamed { group, name });
    }

    fn binding(&mut self, addr: &str, device: i64, at: i64) {
        // A binding stored in IPv4-mapped form (before addresses were normalised where they
        // enter) is the IPv4 address it maps.
        let addr = addr.parse::<IpAddr>().map(|a| a.to_canonical());
        if let (Ok(addr), Some(device)) = (addr, self.known(device)) {
            self.state.apply(&Change::BindingSeen { addr, device, at });
        }
    }

    fn waiting(&mut self, key: String, hold: Hold) {
        self.state.apply(&Change::HoldWaiting { key, hold });
    }

    fn watch(&mut self, device: i64, watch: Hold) {
        if let Some(device) = self.known(device) {
            self.state.apply(&Change::WatchSet { device, watch });
        }
    }

    fn approval(&mut self, approval: i64, device: i64, hold: Hold) {
        if let Some(device) = self.known(device) {
            let approval = approval as u64;
            self.state.apply(&Change::ApprovalRequested {
                approval,
                device,
                hold,
            });
        }
    }

    fn token(&mut self, key: String, until: i64) {
        // Rows past their time are left out when read, and deleted as new keys come.
        self.state.apply(&Change::TokenSeen {
            key,
            until,
            at: i64::MIN,
        });
    }

    /// A row's device, if the devices table has it: the foreign keys make every row's device
    /// exist, but a row that slipped past them must not invent a device.
    fn known(&self, device: i64) -> Option<DeviceId> {
        let id = DeviceId(u64::try_from(device).ok()?);
        if self.state.devices.contains_key(&id) {
            Some(id)
        } else {
            tracing::warn!("store: a row names {id}, which the devices table lacks; ignored");
            None
        }
    }
}

/// How many log rows one read returns at most: a node far behind catches up page by page, each
/// page well within the store's deadline.
pub const PAGE: usize = 10_000;

/// How many changes the log keeps: enough for any node that was away a while to catch up
/// from it, bounded so that hourly binding refreshes of a large fleet do not grow it without
/// end. A node further behind loads the state tables instead.
pub const CHANGE_LOG_KEEP: i64 = 1_000_000;

/// A hold read from nullable columns: a hold is there when it has a reason.
fn hold_of(
    reason: Option<String>,
    ticket: Option<String>,
    by: Option<String>,
    at: Option<i64>,
    expires: Option<i64>,
) -> Option<Hold> {
    Some(Hold {
        reason: reason?,
        ticket: ticket.unwrap_or_default(),
        by: by.unwrap_or_default(),
        at: at.unwrap_or_default(),
        expires,
    })
}
