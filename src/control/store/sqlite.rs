//! The embedded store: one SQLite file (WAL) holding devices, aliases, memberships, bindings,
//! pending approvals, an append-only audit log and the change log. Only the writer touches it; a
//! batch of changes is one transaction, which writes the state tables and appends each change,
//! as the neutral value it is, to the `changes` log.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, Transaction};

use super::{
    alias_lines, continues, hold_of, Audited, Fault, Loaded, Logged, Outbox, Rows, StoreError,
    CHANGE_LOG_KEEP, PAGE,
};
use crate::control::state::{AuditEvent, Change};
use crate::policy::DeviceId;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The SQLite file and its one connection.
pub struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if need be) the store at `path` and brings its tables to the current
    /// schema version.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |fault: Fault| StoreError {
            store: path.display().to_string(),
            fault,
        };
        let mut conn = Connection::open(path).map_err(|e| err(e.into()))?;
        // WAL: readers never block the writer; FULL: a commit survives power loss, not only a
        // crash of this process, before the caller hears 2xx (contract 2).
        let pragmas = [
            ("journal_mode", "WAL"),
            ("synchronous", "FULL"),
            ("foreign_keys", "ON"),
        ];
        for (pragma, value) in pragmas {
            conn.pragma_update(None, pragma, value)
                .map_err(|e| err(e.into()))?;
        }
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| err(e.into()))?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn err(&self, fault: impl Into<Fault>) -> StoreError {
        StoreError {
            store: self.path.display().to_string(),
            fault: fault.into(),
        }
    }

    /// Reads the whole store into memory.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let loaded = load_from(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(loaded)
    }

    /// Commits `changes` and `audit` as one transaction, the changes also to the change log;
    /// returns the id of the last change logged.
    pub fn commit(
        &mut self,
        changes: &[Change],
        audit: &[AuditEvent],
        now: i64,
    ) -> Result<i64, StoreError> {
        let result = (|| -> Result<i64, Fault> {
            let tx = self.conn.transaction()?;
            for c in changes {
                write_change(&tx, c)?;
                let text = serde_json::to_string(c)?;
                tx.execute(
                    "INSERT INTO changes (at, change) VALUES (?1, ?2)",
                    params![now, text],
                )?;
            }
            if !changes.is_empty() {
                let last = tx.last_insert_rowid();
                tx.execute(
                    "DELETE FROM changes WHERE id <= ?1",
                    [last - CHANGE_LOG_KEEP],
                )?;
            }
            for a in audit {
                tx.execute(
                    "INSERT INTO audit (at, device, actor, action, detail, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![a.at, a.device.map(|d| d.0 as i64), a.actor, a.action, a.detail, a.reason],
                )?;
            }
            let position = position(&tx)?;
            tx.commit()?;
            Ok(position)
        })();
        result.map_err(|e| self.err(e))
    }

    /// The logged changes after `after`, oldest first.
    pub fn changes_after(&self, after: i64) -> Result<Vec<Logged>, StoreError> {
        let read = || -> Result<Vec<Logged>, Fault> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, change FROM changes WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let mut rows = stmt.query([after, PAGE as i64])?;
            let mut logged = Vec::new();
            while let Some(r) = rows.next()? {
                let text: String = r.get(1)?;
                logged.push(Logged {
                    id: r.get(0)?,
                    change: serde_json::from_str(&text)?,
                    committed_ms: None,
                });
            }
            continues(after, logged)
        };
        read().map_err(|e| self.err(e))
    }

    /// The audit events of `device`, newest first.
    pub fn timeline(&self, device: DeviceId, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let read = || -> rusqlite::Result<Vec<AuditEvent>> {
            let mut stmt = self.conn.prepare(
                "SELECT at, device, actor, action, detail, reason FROM audit WHERE device = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![device.0 as i64, limit as i64], |r| {
                Ok(AuditEvent {
                    at: r.get(0)?,
                    device: r.get::<_, Option<i64>>(1)?.map(|d| DeviceId(d as u64)),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    detail: r.get(4)?,
                    reason: r.get(5)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.err(e))
    }
}

/// The audit log read as the events' outbox, and each sink's cursor (see [`super::Store`]).
/// The events task reads through a connection of its own: WAL lets it read while the writer
/// writes, and a cursor's update is one short transaction.
impl SqliteStore {
    pub fn outbox(&self, after: i64, actions: &[&str], limit: usize) -> Result<Outbox, StoreError> {
        let read = || -> Result<Outbox, Fault> {
            let actions = serde_json::to_string(actions)?;
            // One read transaction: the rows, the count and the end are one view.
            let tx = self.conn.unchecked_transaction()?;
            let end = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |r| r.get(0))?;
            let pending = tx.query_row(
                "SELECT COUNT(*) FROM audit
                 WHERE id > ?1 AND action IN (SELECT value FROM json_each(?2))",
                params![after, actions],
                |r| r.get(0),
            )?;
            let mut rows = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT a.id, a.at, a.device, a.actor, a.action, a.detail, a.reason, d.label,
                            (SELECT group_concat(kind || ':' || value, char(10)) FROM aliases
                             WHERE device = a.device AND kind <> 'token')
                     FROM audit a LEFT JOIN devices d ON d.id = a.device
                     WHERE a.id > ?1 AND a.action IN (SELECT value FROM json_each(?2))
                     ORDER BY a.id LIMIT ?3",
                )?;
                let mut it = stmt.query(params![after, actions, limit as i64])?;
                while let Some(r) = it.next()? {
                    rows.push(Audited {
                        id: r.get(0)?,
                        event: AuditEvent {
                            at: r.get(1)?,
                            device: r.get::<_, Option<i64>>(2)?.map(|d| DeviceId(d as u64)),
                            actor: r.get(3)?,
                            action: r.get(4)?,
                            detail: r.get(5)?,
                            reason: r.get(6)?,
                        },
                        label: r.get(7)?,
                        aliases: alias_lines(r.get(8)?),
                    });
                }
            }
            tx.commit()?;
            Ok(Outbox { rows, pending, end })
        };
        read().map_err(|e| self.err(e))
    }

    pub fn sink_cursor(&self, sink: &str) -> Result<i64, StoreError> {
        let read = || -> rusqlite::Result<i64> {
            self.conn.execute(
                "INSERT OR IGNORE INTO event_sinks (name, delivered)
                 SELECT ?1, COALESCE(MAX(id), 0) FROM audit",
                [sink],
            )?;
            self.conn.query_row(
                "SELECT delivered FROM event_sinks WHERE name = ?1",
                [sink],
                |r| r.get(0),
            )
        };
        read().map_err(|e| self.err(e))
    }

    pub fn set_sink_cursor(&self, sink: &str, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO event_sinks (name, delivered) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET delivered = MAX(delivered, excluded.delivered)",
                params![sink, id],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// The id of the last logged change (0 for none).
fn position(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM changes", [], |r| r.get(0))
}

fn load_from(conn: &Connection) -> Result<Loaded, Fault> {
    let mut rows = Rows::default();
    let (low, high) = conn.query_row("SELECT MIN(id), MAX(id) FROM devices", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.id_range(low, high)?;
    let mut stmt = conn.prepare(
        "SELECT id, label, critical, hold_reason, hold_ticket, hold_by, hold_at, hold_expires,
                probation_until
         FROM devices",
    )?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        let hold = hold_of(r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
        rows.device(r.get(0)?, r.get(1)?, r.get(2)?, hold, r.get(8)?);
    }
    let mut stmt = conn.prepare("SELECT kind, value, device FROM aliases")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        rows.alias(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, r.get(2)?);
    }
    let mut stmt = conn.prepare("SELECT device, uem_group FROM memberships")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        rows.membership(r.get(0)?, r.get(1)?);
    }
    let mut stmt = conn.prepare("SELECT key, name FROM uem_groups")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        rows.group(r.get(0)?, r.get(1)?);
    }
    let mut stmt = conn.prepare("SELECT addr, device, seen FROM bindings")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        rows.binding(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?);
    }
    let mut stmt = conn
        .prepare("SELECT id, device, reason, ticket, by, at, expires FROM approvals ORDER BY at")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        if let Some(hold) = hold_of(r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?) {
            rows.approval(r.get(0)?, r.get(1)?, hold);
        }
    }
    let mut stmt = conn.prepare("SELECT key, until FROM seen_tokens")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        rows.token(r.get(0)?, r.get(1)?);
    }
    let mut stmt =
        conn.prepare("SELECT key, reason, ticket, by, at, expires FROM waiting_holds")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        if let Some(hold) = hold_of(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?) {
            rows.waiting(r.get(0)?, hold);
        }
    }
    let mut stmt = conn.prepare("SELECT device, reason, ticket, by, at, expires FROM watches")?;
    let mut it = stmt.query([])?;
    while let Some(r) = it.next()? {
        if let Some(watch) = hold_of(r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?) {
            rows.watch(r.get(0)?, watch);
        }
    }
    Ok(Loaded {
        state: rows.state,
        position: position(conn)?,
    })
}

fn write_change(tx: &Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    let hold_sql =
        "UPDATE devices SET hold_reason = ?2, hold_ticket = ?3, hold_by = ?4, hold_at = ?5,
                    hold_expires = ?6 WHERE id = ?1";
    match change {
        Change::DeviceAdded { device, label } => {
            tx.execute(
                "INSERT OR IGNORE INTO devices (id, label) VALUES (?1, ?2)",
                params![device.0 as i64, label],
            )?;
        }
        Change::LabelSet { device, label } => {
            tx.execute(
                "UPDATE devices SET label = ?2 WHERE id = ?1",
                params![device.0 as i64, label],
            )?;
        }
        Change::AliasSeen { alias, device } => {
            tx.execute(
                "INSERT INTO aliases (kind, value, device) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, value) DO UPDATE SET device = excluded.device",
                params![alias.kind.as_str(), alias.value, device.0 as i64],
            )?;
        }
        Change::MembershipSet { device, group } => {
            tx.execute(
                "INSERT OR IGNORE INTO memberships (device, uem_group) VALUES (?1, ?2)",
                params![device.0 as i64, group],
            )?;
        }
        Change::MembershipUnset { device, group } => {
            tx.execute(
                "DELETE FROM memberships WHERE device = ?1 AND uem_group = ?2",
                params![device.0 as i64, group],
            )?;
        }
        Change::GroupNamed { group, name } => {
            tx.execute(
                "INSERT INTO uem_groups (key, name) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET name = excluded.name",
                params![group, name],
            )?;
        }
        Change::BindingSeen { addr, device, at } => {
            tx.execute(
                "INSERT INTO bindings (addr, device, seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (addr) DO UPDATE SET device = excluded.device, seen = excluded.seen",
                params![addr.to_string(), device.0 as i64, at],
            )?;
        }
        Change::BindingLapsed { addr } => {
            tx.execute(
                "DELETE FROM bindings WHERE addr = ?1",
                params![addr.to_string()],
            )?;
        }
        Change::HoldPlaced { device, hold: h } => {
            tx.execute(
                hold_sql,
                params![device.0 as i64, h.reason, h.ticket, h.by, h.at, h.expires],
            )?;
        }
        Change::HoldReleased { device } => {
            let none: Option<String> = None;
            let params = params![device.0 as i64, none, none, none, none, none];
            tx.execute(hold_sql, params)?;
        }
        Change::CriticalSet { device, critical } => {
            tx.execute(
                "UPDATE devices SET critical = ?2 WHERE id = ?1",
                params![device.0 as i64, critical],
            )?;
        }
        Change::ApprovalRequested {
            approval,
            device,
            hold: h,
        } => {
            // Lapsed ones go as a new one comes, as in the state.
            tx.execute(
                "DELETE FROM approvals WHERE at <= ?1",
                [h.at - crate::control::state::APPROVAL_LIFETIME],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO approvals (id, device, reason, ticket, by, at, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    *approval as i64,
                    device.0 as i64,
                    h.reason,
                    h.ticket,
                    h.by,
                    h.at,
                    h.expires
                ],
            )?;
        }
        Change::ApprovalGranted { approval } | Change::ApprovalRefused { approval } => {
            tx.execute("DELETE FROM approvals WHERE id = ?1", [*approval as i64])?;
        }
        Change::TokenSeen { key, until, at } => {
            // Lapsed ones go as a new one comes, as in the state.
            tx.execute("DELETE FROM seen_tokens WHERE until < ?1", [at])?;
            tx.execute(
                "INSERT INTO seen_tokens (key, until) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET until = excluded.until",
                params![key, until],
            )?;
        }
        Change::ProbationStarted { device, until } => {
            tx.execute(
                "UPDATE devices SET probation_until = ?2 WHERE id = ?1",
                params![device.0 as i64, until],
            )?;
        }
        Change::ProbationEnded { device } => {
            tx.execute(
                "UPDATE devices SET probation_until = NULL WHERE id = ?1",
                [device.0 as i64],
            )?;
        }
        Change::HoldWaiting { key, hold: h } => {
            tx.execute(
                "INSERT OR REPLACE INTO waiting_holds (key, reason, ticket, by, at, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, h.reason, h.ticket, h.by, h.at, h.expires],
            )?;
        }
        Change::HoldWaitingEnded { key } => {
            tx.execute("DELETE FROM waiting_holds WHERE key = ?1", [key])?;
        }
        Change::WatchSet { device, watch: h } => {
            tx.execute(
                "INSERT OR REPLACE INTO watches (device, reason, ticket, by, at, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![device.0 as i64, h.reason, h.ticket, h.by, h.at, h.expires],
            )?;
        }
        Change::WatchEnded { device } => {
            tx.execute("DELETE FROM watches WHERE device = ?1", [device.0 as i64])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::state::{Alias, AliasKind, Hold, State};

    #[test]
    fn committed_changes_come_back_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let id = DeviceId(1);
        let changes = vec![
            Change::DeviceAdded {
                device: id,
                label: "FIN-MBP".into(),
            },
            Change::AliasSeen {
                alias: Alias::new(AliasKind::Serial, "C02ZK1ABMD6T"),
                device: id,
            },
            Change::MembershipSet {
                device: id,
                group: "jamf:computer-group:42".into(),
            },
            Change::GroupNamed {
                group: "jamf:computer-group:42".into(),
                name: "Jamf Protect - High".into(),
            },
            Change::BindingSeen {
                addr: "10.20.30.142".parse().unwrap(),
                device: id,
                at: 100,
            },
            Change::HoldPlaced {
                device: id,
                hold: Hold {
                    reason: "r".into(),
                    ticket: "t".into(),
                    by: "me".into(),
                    at: 5,
                    expires: Some(86_405),
                },
            },
            Change::ApprovalRequested {
                approval: 77,
                device: id,
                hold: Hold {
                    reason: "second".into(),
                    ticket: "t2".into(),
                    by: "alice".into(),
                    at: 6,
                    expires: None,
                },
            },
            Change::TokenSeen {
                key: "old".into(),
                until: 5,
                at: 1,
            },
            Change::TokenSeen {
                key: "issuer jti".into(),
                until: 90,
                at: 7,
            },
        ];
        let audit = vec![AuditEvent {
            at: 1,
            device: Some(id),
            actor: "test".into(),
            action: "add".into(),
            detail: "{}".into(),
            reason: "why".into(),
        }];
        {
            let mut store = SqliteStore::open(&path).unwrap();
            store.commit(&changes, &audit, 1).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let state = store.load().unwrap().state;
        let mut expected = State::default();
        for c in &changes {
            expected.apply(c);
        }
        let d = &state.devices[&id];
        assert_eq!(&*d.label, "FIN-MBP");
        assert_eq!(d.memberships, expected.devices[&id].memberships);
        assert_eq!(d.aliases, expected.devices[&id].aliases);
        assert_eq!(d.hold, expected.devices[&id].hold);
        assert_eq!(state.bindings, expected.bindings);
        assert_eq!(state.group_names, expected.group_names);
        assert_eq!(state.approvals, expected.approvals);
        assert_eq!(
            state.seen, expected.seen,
            "the lapsed key is gone from both"
        );
        assert_eq!(state.seen.len(), 1);
        let logged: Vec<Change> = store
            .changes_after(0)
            .unwrap()
            .into_iter()
            .map(|l| l.change)
            .collect();
        assert_eq!(logged, changes);
        assert_eq!(state.next_id, 1);
        assert_eq!(store.timeline(id, 10).unwrap(), audit);
    }

    #[test]
    fn an_alias_moves_to_the_device_that_reports_it_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        let serial = Alias::new(AliasKind::Serial, "X1");
        let changes = vec![
            Change::DeviceAdded {
                device: DeviceId(1),
                label: "a".into(),
            },
            Change::DeviceAdded {
                device: DeviceId(2),
                label: "b".into(),
            },
            Change::AliasSeen {
                alias: serial.clone(),
                device: DeviceId(1),
            },
            Change::AliasSeen {
                alias: serial.clone(),
                device: DeviceId(2),
            },
        ];
        store.commit(&changes, &[], 1).unwrap();
        let state = store.load().unwrap().state;
        assert_eq!(state.device_by_alias(&serial), Some(DeviceId(2)));
        assert!(!state.devices[&DeviceId(1)]
            .aliases
            .contains(serial.as_ref()));
    }

    #[test]
    fn a_binding_stored_in_mapped_form_loads_as_its_ipv4_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO devices (id, label) VALUES (1, 'mac');
                 INSERT INTO bindings (addr, device, seen) VALUES ('::ffff:10.0.0.45', 1, 5);",
            )
            .unwrap();
        let state = store.load().unwrap().state;
        let v4: std::net::IpAddr = "10.0.0.45".parse().unwrap();
        assert_eq!(state.bindings.get(&v4).map(|b| b.device), Some(DeviceId(1)));
    }

    #[test]
    fn a_device_id_beyond_the_table_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO devices (id, label) VALUES (?1, 'far')",
                [i64::from(u32::MAX) + 1],
            )
            .unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("4294967296"), "{error}");
    }
}
