//! The embedded store: one SQLite file (WAL) holding devices, aliases, memberships, bindings,
//! pending approvals, an append-only audit log and the change log. Only the writer touches it; a
//! batch of changes is one transaction, which writes the state tables and appends each change,
//! as the neutral value it is, to the `changes` log.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, Transaction};

use super::state::{Alias, AliasKind, AuditEvent, Change, Hold, State};
use super::Clock;
use crate::policy::DeviceId;

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("store {path}: {error}")]
pub struct StoreError {
    pub path: PathBuf,
    pub error: rusqlite::Error,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    critical INTEGER NOT NULL DEFAULT 0,
    hold_reason TEXT, hold_ticket TEXT, hold_by TEXT, hold_at INTEGER
);
CREATE TABLE IF NOT EXISTS aliases (
    kind TEXT NOT NULL, value TEXT NOT NULL,
    device INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS memberships (
    device INTEGER NOT NULL REFERENCES devices(id),
    uem_group TEXT NOT NULL,
    PRIMARY KEY (device, uem_group)
);
CREATE TABLE IF NOT EXISTS uem_groups (key TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
    addr TEXT PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES devices(id),
    seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    device INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_device ON audit (device, id);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES devices(id),
    reason TEXT NOT NULL, ticket TEXT NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    change TEXT NOT NULL
);
";

/// How many changes the log keeps: enough to replay any recent stretch, bounded so that hourly
/// binding refreshes of a large fleet do not grow the file without end.
const CHANGE_LOG_KEEP: i64 = 1_000_000;

impl Store {
    /// Opens (creating if need be) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |error| StoreError {
            path: path.to_path_buf(),
            error,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: readers never block the writer; FULL: a commit survives power loss, not only a
        // crash of this process, before the caller hears 2xx (contract 2).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, error: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            error,
        }
    }

    /// Reads the whole store into memory.
    pub fn load(&self) -> Result<State, StoreError> {
        self.load_inner().map_err(|e| self.err(e))
    }

    fn load_inner(&self) -> rusqlite::Result<State> {
        let mut state = State::default();
        // Ids are allocated from 1 up and index the writer's device table.
        let (low, high): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT MIN(id), MAX(id) FROM devices", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        for id in [low, high].into_iter().flatten() {
            if !(1..=i64::from(u32::MAX)).contains(&id) {
                return Err(rusqlite::Error::IntegralValueOutOfRange(0, id));
            }
        }
        if let Some(high) = high {
            state.devices.reserve_ids(DeviceId(high as u64));
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, label, critical, hold_reason, hold_ticket, hold_by, hold_at FROM devices",
        )?;
        let rows = stmt.query_map([], |r| {
            let id = DeviceId(r.get::<_, i64>(0)? as u64);
            let hold = match r.get::<_, Option<String>>(3)? {
                Some(reason) => Some(Hold {
                    reason,
                    ticket: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    by: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    at: r.get::<_, Option<i64>>(6)?.unwrap_or_default(),
                }),
                None => None,
            };
            Ok((id, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, hold))
        })?;
        for row in rows {
            let (id, label, critical, hold) = row?;
            state.apply(&Change::DeviceAdded { device: id, label });
            state.apply(&Change::CriticalSet {
                device: id,
                critical,
            });
            if let Some(hold) = hold {
                state.apply(&Change::HoldPlaced { device: id, hold });
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT kind, value, device FROM aliases")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (kind, value, device) = row?;
            let Some(device) = known(&state, device) else {
                continue;
            };
            let kind = AliasKind::parse(&kind).unwrap_or(AliasKind::Name);
            state.apply(&Change::AliasSeen {
                alias: Alias::new(kind, &value),
                device,
            });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT device, uem_group FROM memberships")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
            let (device, group) = row?;
            if let Some(device) = known(&state, device) {
                state.apply(&Change::MembershipSet { device, group });
            }
        }
        let mut stmt = self.conn.prepare("SELECT key, name FROM uem_groups")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (group, name) = row?;
            state.apply(&Change::GroupNamed { group, name });
        }
        let mut stmt = self
            .conn
            .prepare("SELECT addr, device, seen FROM bindings")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (addr, device, seen) = row?;
            // A binding stored in IPv4-mapped form (before addresses were normalised where
            // they enter) is the IPv4 address it maps.
            let addr = addr.parse::<IpAddr>().map(|a| a.to_canonical());
            if let (Ok(addr), Some(device)) = (addr, known(&state, device)) {
                state.apply(&Change::BindingSeen {
                    addr,
                    device,
                    at: seen,
                });
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, device, reason, ticket, by, at FROM approvals ORDER BY at")?;
        for row in stmt.query_map([], |r| {
            let hold = Hold {
                reason: r.get(2)?,
                ticket: r.get(3)?,
                by: r.get(4)?,
                at: r.get(5)?,
            };
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, hold))
        })? {
            let (approval, device, hold) = row?;
            if let Some(device) = known(&state, device) {
                state.apply(&Change::ApprovalRequested {
                    approval: approval as u64,
                    device,
                    hold,
                });
            }
        }
        Ok(state)
    }

    /// Commits `changes` and `audit` as one transaction, the changes also to the change log.
    pub fn commit(
        &mut self,
        changes: &[Change],
        audit: &[AuditEvent],
        clock: &dyn Clock,
    ) -> Result<(), StoreError> {
        let result = (|| {
            let tx = self.conn.transaction()?;
            for c in changes {
                write_change(&tx, c)?;
                let text = serde_json::to_string(c)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.execute(
                    "INSERT INTO changes (at, change) VALUES (?1, ?2)",
                    params![clock.now(), text],
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
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }

    /// The logged changes after `after`, oldest first, with their log ids.
    pub fn changes_after(&self, after: i64) -> Result<Vec<(i64, Change)>, StoreError> {
        let read = || -> rusqlite::Result<Vec<(i64, Change)>> {
            let mut stmt = self
                .conn
                .prepare("SELECT id, change FROM changes WHERE id > ?1 ORDER BY id")?;
            let rows = stmt.query_map([after], |r| {
                let text: String = r.get(1)?;
                let change = serde_json::from_str(&text).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                Ok((r.get(0)?, change))
            })?;
            rows.collect()
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

fn write_change(tx: &Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    let hold_sql = "UPDATE devices SET hold_reason = ?2, hold_ticket = ?3, hold_by = ?4, hold_at = ?5 WHERE id = ?1";
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
                params![device.0 as i64, h.reason, h.ticket, h.by, h.at],
            )?;
        }
        Change::HoldReleased { device } => {
            let none: Option<String> = None;
            tx.execute(hold_sql, params![device.0 as i64, none, none, none, none])?;
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
                [h.at - super::state::APPROVAL_LIFETIME],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO approvals (id, device, reason, ticket, by, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![*approval as i64, device.0 as i64, h.reason, h.ticket, h.by, h.at],
            )?;
        }
        Change::ApprovalGranted { approval } => {
            tx.execute("DELETE FROM approvals WHERE id = ?1", [*approval as i64])?;
        }
    }
    Ok(())
}

/// A row's device, if the devices table has it: the foreign keys make every row's device
/// exist, but a row that slipped past them must not invent a device.
fn known(state: &State, device: i64) -> Option<DeviceId> {
    let id = DeviceId(u64::try_from(device).ok()?);
    if state.devices.contains_key(&id) {
        Some(id)
    } else {
        tracing::warn!("store: a row names {id}, which the devices table lacks; ignored");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::SystemClock;

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
                },
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
            let mut store = Store::open(&path).unwrap();
            store.commit(&changes, &audit, &SystemClock).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let state = store.load().unwrap();
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
        let logged: Vec<Change> = store
            .changes_after(0)
            .unwrap()
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        assert_eq!(logged, changes);
        assert_eq!(state.next_id, 1);
        assert_eq!(store.timeline(id, 10).unwrap(), audit);
    }

    #[test]
    fn an_alias_moves_to_the_device_that_reports_it_last() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("c.db")).unwrap();
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
        store.commit(&changes, &[], &SystemClock).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.device_by_alias(&serial), Some(DeviceId(2)));
        assert!(!state.devices[&DeviceId(1)]
            .aliases
            .contains(serial.as_ref()));
    }

    #[test]
    fn a_binding_stored_in_mapped_form_loads_as_its_ipv4_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO devices (id, label) VALUES (1, 'mac');
                 INSERT INTO bindings (addr, device, seen) VALUES ('::ffff:10.0.0.45', 1, 5);",
            )
            .unwrap();
        let state = store.load().unwrap();
        let v4: IpAddr = "10.0.0.45".parse().unwrap();
        assert_eq!(state.bindings.get(&v4).map(|b| b.device), Some(DeviceId(1)));
    }

    #[test]
    fn a_device_id_beyond_the_table_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
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
