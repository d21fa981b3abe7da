//! The DNS trail's rows in the store (table `queries`, migrations SQLite V5 / PostgreSQL V6):
//! the queries of devices that are isolated, on probation or watched, written in batches by
//! `trail/`, read back a page at a time, summarised by name, and trimmed to the retention and a
//! cap per device. Every node writes the queries it answered; with a shared store, every node
//! reads them all.

use futures_util::FutureExt;
use rusqlite::params;

use super::{Fault, Store, StoreError};
use crate::policy::DeviceId;

/// One query in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailRow {
    /// Its place in the table: rows of one node are in the order they were written.
    pub id: i64,
    pub device: DeviceId,
    /// When the query came, in milliseconds since the epoch.
    pub at_ms: i64,
    /// Dotted, lowercase.
    pub name: String,
    pub qtype: u16,
    pub transport: String,
    /// The address the query came from.
    pub source: String,
    /// `allowed`, `blocked` or `error`.
    pub decision: String,
    /// The decision in words: rule, category or default, policy and group.
    pub reason: String,
    pub group: String,
    /// The category that blocked it, when one did.
    pub category: Option<String>,
    /// Every category the name is listed in, whatever the decision.
    pub categories: Vec<String>,
    /// Listed in a security category (malware, phishing, command and control, ...).
    pub security: bool,
    pub rcode: u8,
    /// The node that answered.
    pub node: String,
}

/// Which rows a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailFilter {
    pub device: DeviceId,
    /// Rows from this time on (milliseconds since the epoch).
    pub since_ms: i64,
    /// Rows after this id (the page cursor).
    pub after_id: i64,
    /// Only rows with this decision.
    pub decision: Option<String>,
    pub limit: usize,
    /// The newest rows first (and `after_id` then ignored), as a timeline shows them.
    pub newest_first: bool,
}

/// What a device asked of one name over a time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameSummary {
    pub name: String,
    pub count: i64,
    pub blocked: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub security: bool,
    pub categories: Vec<String>,
}

const COLUMNS: &str = "id, device, at_ms, name, qtype, transport, source, decision, reason, grp, \
                       category, categories, security, rcode, node";

/// Categories as one column: names joined by commas (names have none).
fn joined(categories: &[String]) -> String {
    categories.join(",")
}

fn split(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// Appends `rows` (their ids are given by the store) in one transaction.
    pub async fn record_queries(&mut self, rows: &[TrailRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => sqlite_record(&mut s.conn, rows).map_err(|e| s.err(e)),
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                let rows = rows.to_vec();
                s.run(timeout, move |c| pg_record(&c.client, rows).boxed())
                    .await
            }
        }
    }

    /// A page of a device's trail, oldest first.
    pub async fn queries(&mut self, filter: &TrailFilter) -> Result<Vec<TrailRow>, StoreError> {
        let order = match filter.newest_first {
            true => "id DESC",
            false => "id",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM queries WHERE device = $1 AND id > $2 AND at_ms >= $3
             AND ($4 IS NULL OR decision = $4) ORDER BY {order} LIMIT $5"
        );
        let device = filter.device.0 as i64;
        let after_id = if filter.newest_first {
            0
        } else {
            filter.after_id
        };
        let limit = filter.limit as i64;
        match self {
            Store::Sqlite(s) => {
                let read = || -> rusqlite::Result<Vec<TrailRow>> {
                    let mut stmt = s.conn.prepare_cached(&sql.replace('$', "?"))?;
                    let it = stmt.query_map(
                        params![device, after_id, filter.since_ms, filter.decision, limit],
                        sqlite_row,
                    )?;
                    it.collect()
                };
                read().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                let filter = filter.clone();
                let sql = sql.replace("$4 IS NULL", "$4::TEXT IS NULL");
                s.run(timeout, move |c| {
                    async move {
                        let rows = c
                            .client
                            .query(
                                &sql,
                                &[
                                    &device,
                                    &after_id,
                                    &filter.since_ms,
                                    &filter.decision,
                                    &limit,
                                ],
                            )
                            .await?;
                        rows.iter().map(pg_row).collect()
                    }
                    .boxed()
                })
                .await
            }
        }
    }

    /// The names a device asked for from `since_ms` on: names in a security category first,
    /// then the most asked; at most `limit`.
    pub async fn query_summary(
        &mut self,
        device: DeviceId,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<NameSummary>, StoreError> {
        let sql = "SELECT name, COUNT(*), SUM(CASE WHEN decision = 'blocked' THEN 1 ELSE 0 END),
                   MIN(at_ms), MAX(at_ms), MAX(CASE WHEN security THEN 1 ELSE 0 END),
                   MAX(categories)
                   FROM queries WHERE device = $1 AND at_ms >= $2 GROUP BY name
                   ORDER BY 6 DESC, 2 DESC, name LIMIT $3";
        let (device, limit) = (device.0 as i64, limit as i64);
        let summary =
            |name, count, blocked, first_ms, last_ms, security: i64, cats: String| NameSummary {
                name,
                count,
                blocked,
                first_ms,
                last_ms,
                security: security != 0,
                categories: split(&cats),
            };
        match self {
            Store::Sqlite(s) => {
                let read = || -> rusqlite::Result<Vec<NameSummary>> {
                    let mut stmt = s.conn.prepare_cached(&sql.replace('$', "?"))?;
                    let it = stmt.query_map(params![device, since_ms, limit], |r| {
                        Ok(summary(
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })?;
                    it.collect()
                };
                read().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                s.run(timeout, move |c| {
                    async move {
                        let rows = c.client.query(sql, &[&device, &since_ms, &limit]).await?;
                        Ok(rows
                            .iter()
                            .map(|r| {
                                summary(
                                    r.get(0),
                                    r.get(1),
                                    r.get(2),
                                    r.get(3),
                                    r.get(4),
                                    i64::from(r.get::<_, i32>(5)),
                                    r.get(6),
                                )
                            })
                            .collect())
                    }
                    .boxed()
                })
                .await
            }
        }
    }

    /// Deletes the rows written before the first row from `before_ms` on, and for each of
    /// `devices` all but its newest `cap`; returns how many rows went.
    pub async fn trim_queries(
        &mut self,
        before_ms: i64,
        devices: &[DeviceId],
        cap: u64,
    ) -> Result<u64, StoreError> {
        // Rows are written in time order (each node's; nodes' clocks agree within their skew),
        // so the old ones are those before the first row in time: no index on the time.
        let old = "DELETE FROM queries WHERE id < COALESCE(
                   (SELECT id FROM queries WHERE at_ms >= $1 ORDER BY id LIMIT 1),
                   (SELECT MAX(id) + 1 FROM queries), 0)";
        let over = "DELETE FROM queries WHERE device = $1 AND id <= (SELECT id FROM queries
                    WHERE device = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";
        let ids: Vec<i64> = devices.iter().map(|d| d.0 as i64).collect();
        let cap = cap.min(i64::MAX as u64) as i64;
        match self {
            Store::Sqlite(s) => {
                let trim = || -> rusqlite::Result<u64> {
                    let tx = s.conn.unchecked_transaction()?;
                    let mut gone = tx.execute(&old.replace('$', "?"), [before_ms])? as u64;
                    for id in &ids {
                        gone += tx.execute(&over.replace('$', "?"), params![id, cap])? as u64;
                    }
                    tx.commit()?;
                    Ok(gone)
                };
                trim().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                s.run(timeout, move |c| {
                    async move {
                        let mut gone = c.client.execute(old, &[&before_ms]).await?;
                        for id in &ids {
                            gone += c.client.execute(over, &[id, &cap]).await?;
                        }
                        Ok(gone)
                    }
                    .boxed()
                })
                .await
            }
        }
    }
}

/// Rows one SQLite statement inserts: many rows a statement spare the per-statement work,
/// which costs more than the row at this size.
const SQLITE_CHUNK: usize = 64;

fn sqlite_record(conn: &mut rusqlite::Connection, rows: &[TrailRow]) -> Result<(), Fault> {
    let tx = conn.transaction()?;
    for chunk in rows.chunks(SQLITE_CHUNK) {
        // Full chunks share one prepared statement, and so do the single rows of the rest.
        let (per_statement, sql) = match chunk.len() {
            SQLITE_CHUNK => (SQLITE_CHUNK, sqlite_insert(SQLITE_CHUNK)),
            _ => (1, sqlite_insert(1)),
        };
        let mut insert = tx.prepare_cached(&sql)?;
        let devices: Vec<i64> = chunk.iter().map(|r| r.device.0 as i64).collect();
        let categories: Vec<String> = chunk.iter().map(|r| joined(&r.categories)).collect();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(per_statement * 14);
        for ((r, device), categories) in chunk.iter().zip(&devices).zip(&categories) {
            values.extend_from_slice(&[
                device as &dyn rusqlite::ToSql,
                &r.at_ms,
                &r.name,
                &r.qtype,
                &r.transport,
                &r.source,
                &r.decision,
                &r.reason,
                &r.group,
                &r.category,
                categories,
                &r.security,
                &r.rcode,
                &r.node,
            ]);
            if values.len() == per_statement * 14 {
                insert.execute(values.as_slice())?;
                values.clear();
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// `INSERT INTO queries ... VALUES (...), (...)` for `n` rows.
fn sqlite_insert(n: usize) -> String {
    let row = format!("({})", vec!["?"; 14].join(","));
    format!(
        "INSERT INTO queries (device, at_ms, name, qtype, transport, source, decision, reason,
         grp, category, categories, security, rcode, node) VALUES {}",
        vec![row; n].join(",")
    )
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrailRow> {
    Ok(TrailRow {
        id: r.get(0)?,
        device: DeviceId(r.get::<_, i64>(1)? as u64),
        at_ms: r.get(2)?,
        name: r.get(3)?,
        qtype: r.get(4)?,
        transport: r.get(5)?,
        source: r.get(6)?,
        decision: r.get(7)?,
        reason: r.get(8)?,
        group: r.get(9)?,
        category: r.get(10)?,
        categories: split(&r.get::<_, String>(11)?),
        security: r.get(12)?,
        rcode: r.get(13)?,
        node: r.get(14)?,
    })
}

/// One statement for a whole batch: a column array each.
async fn pg_record(client: &tokio_postgres::Client, rows: Vec<TrailRow>) -> Result<(), Fault> {
    let col = |f: fn(&TrailRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let devices: Vec<i64> = rows.iter().map(|r| r.device.0 as i64).collect();
    let at: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
    let qtypes: Vec<i32> = rows.iter().map(|r| i32::from(r.qtype)).collect();
    let rcodes: Vec<i32> = rows.iter().map(|r| i32::from(r.rcode)).collect();
    let security: Vec<bool> = rows.iter().map(|r| r.security).collect();
    let category: Vec<Option<String>> = rows.iter().map(|r| r.category.clone()).collect();
    let (names, transports, sources) = (
        col(|r| r.name.clone()),
        col(|r| r.transport.clone()),
        col(|r| r.source.clone()),
    );
    let (decisions, reasons, groups) = (
        col(|r| r.decision.clone()),
        col(|r| r.reason.clone()),
        col(|r| r.group.clone()),
    );
    let (categories, nodes) = (col(|r| joined(&r.categories)), col(|r| r.node.clone()));
    client
        .execute(
            "INSERT INTO queries (device, at_ms, name, qtype, transport, source, decision, reason,
             grp, category, categories, security, rcode, node)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::INT[], $5::TEXT[],
             $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[],
             $12::BOOLEAN[], $13::INT[], $14::TEXT[])",
            &[
                &devices,
                &at,
                &names,
                &qtypes,
                &transports,
                &sources,
                &decisions,
                &reasons,
                &groups,
                &category,
                &categories,
                &security,
                &rcodes,
                &nodes,
            ],
        )
        .await?;
    Ok(())
}

fn pg_row(r: &tokio_postgres::Row) -> Result<TrailRow, Fault> {
    Ok(TrailRow {
        id: r.try_get(0)?,
        device: DeviceId(r.try_get::<_, i64>(1)? as u64),
        at_ms: r.try_get(2)?,
        name: r.try_get(3)?,
        qtype: r.try_get::<_, i32>(4)? as u16,
        transport: r.try_get(5)?,
        source: r.try_get(6)?,
        decision: r.try_get(7)?,
        reason: r.try_get(8)?,
        group: r.try_get(9)?,
        category: r.try_get(10)?,
        categories: split(&r.try_get::<_, String>(11)?),
        security: r.try_get(12)?,
        rcode: r.try_get::<_, i32>(13)? as u8,
        node: r.try_get(14)?,
    })
}
