//! The DNS trail in the store (table `trail`, migrations SQLite V6 / PostgreSQL V7): the
//! queries of devices that are isolated, on probation or watched, written by `trail/` as
//! [`chunk`]s (a row for one device's queries of one flush), read back a page at a time,
//! summarised by name, and trimmed to the retention and a cap per device. Every node writes the
//! queries it answered; with a shared store, every node reads them all.

pub mod chunk;

use std::collections::HashMap;

use futures_util::FutureExt;
use rusqlite::params;

use super::{Fault, Store, StoreError};
use crate::policy::DeviceId;
use chunk::{rows_of, times_of, Chunk, StoredChunk, ENTRY_BITS};

/// One query in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailRow {
    /// Its place in the trail: its chunk's id and its place in the chunk ([`chunk`]); the rows
    /// of one node are in the order they were written.
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

/// Chunks one read of a page or a summary brings back.
const CHUNKS_A_READ: i64 = 64;

impl Store {
    /// Appends `chunks` (their ids are given by the store) in one transaction.
    pub async fn record_trail(&mut self, chunks: &[Chunk]) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(s) => sqlite_record(&mut s.conn, chunks).map_err(|e| s.err(e)),
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                let chunks = chunks.to_vec();
                s.run(timeout, move |c| pg_record(&c.client, chunks).boxed())
                    .await
            }
        }
    }

    /// A page of a device's trail, oldest first (or newest first, from the newest).
    pub async fn queries(&mut self, filter: &TrailFilter) -> Result<Vec<TrailRow>, StoreError> {
        let mut rows = Vec::new();
        let after = match filter.newest_first {
            true => 0,
            false => filter.after_id.max(0),
        };
        let mut span = match filter.newest_first {
            true => (0, i64::MAX),
            false => (after >> ENTRY_BITS, i64::MAX),
        };
        let wanted = |r: &TrailRow| {
            r.id > after
                && r.at_ms >= filter.since_ms
                && filter.decision.as_ref().is_none_or(|d| *d == r.decision)
        };
        loop {
            let read = ChunkRead {
                device: filter.device,
                span,
                since_ms: filter.since_ms,
                newest_first: filter.newest_first,
            };
            let chunks = self.read_chunks(&read).await?;
            for chunk in &chunks {
                let mut live = self.decode(chunk)?;
                if filter.newest_first {
                    live.reverse();
                }
                let room = filter.limit - rows.len();
                rows.extend(live.into_iter().filter(wanted).take(room));
                if rows.len() >= filter.limit {
                    return Ok(rows);
                }
            }
            match (chunks.last(), filter.newest_first) {
                (Some(last), false) if chunks.len() as i64 == CHUNKS_A_READ => span.0 = last.id + 1,
                (Some(last), true) if chunks.len() as i64 == CHUNKS_A_READ => span.1 = last.id - 1,
                _ => return Ok(rows),
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
        let mut names: HashMap<String, NameSummary> = HashMap::new();
        let mut span = (0, i64::MAX);
        loop {
            let read = ChunkRead {
                device,
                span,
                since_ms,
                newest_first: false,
            };
            let chunks = self.read_chunks(&read).await?;
            for chunk in &chunks {
                for row in self
                    .decode(chunk)?
                    .into_iter()
                    .filter(|r| r.at_ms >= since_ms)
                {
                    summarise(&mut names, row);
                }
            }
            match chunks.last() {
                Some(last) if chunks.len() as i64 == CHUNKS_A_READ => span.0 = last.id + 1,
                _ => break,
            }
        }
        let mut summary: Vec<NameSummary> = names.into_values().collect();
        summary.sort_by(|a, b| {
            (b.security, b.count)
                .cmp(&(a.security, a.count))
                .then_with(|| a.name.cmp(&b.name))
        });
        summary.truncate(limit);
        Ok(summary)
    }

    /// Deletes the queries from before `before_ms` (whole chunks, and the heads of chunks that
    /// straddle it), and for each of `devices` all but its newest `cap`; returns how many went.
    pub async fn trim_queries(
        &mut self,
        before_ms: i64,
        devices: &[DeviceId],
        cap: u64,
    ) -> Result<u64, StoreError> {
        let mut gone = self.delete_old_chunks(before_ms).await?;
        let mut trim = Trim::default();
        for chunk in self.chunks_before(before_ms).await? {
            let times = times_of(&chunk.body)
                .map_err(|e| self.error(chunk::ChunkError::Decode(chunk.id, e)))?;
            let old = times.iter().take_while(|&&t| t < before_ms).count() as u32;
            trim.head(&chunk, old.max(chunk.skip), &times);
        }
        gone += trim.apply(self).await?;
        for &device in devices {
            let sizes = self.chunk_sizes(device).await?;
            let mut trim = Trim::default();
            let mut kept = 0u64;
            for (id, live) in sizes {
                if kept >= cap {
                    trim.delete.push((id, live));
                } else if kept + live > cap {
                    let chunk = self.read_chunks(&ChunkRead::one(device, id)).await?;
                    if let Some(chunk) = chunk.first() {
                        let times = times_of(&chunk.body)
                            .map_err(|e| self.error(chunk::ChunkError::Decode(id, e)))?;
                        let drop = (kept + live - cap) as u32;
                        trim.head(chunk, chunk.skip + drop, &times);
                    }
                }
                kept += live;
            }
            gone += trim.apply(self).await?;
        }
        Ok(gone)
    }

    /// Deletes everything the trail holds of `device`; returns how many queries went.
    pub async fn erase_queries(&mut self, device: DeviceId) -> Result<u64, StoreError> {
        self.delete_chunks("device = $1", device.0 as i64).await
    }

    fn decode(&self, chunk: &StoredChunk) -> Result<Vec<TrailRow>, StoreError> {
        rows_of(chunk).map_err(|e| self.error(e))
    }

    fn error(&self, e: chunk::ChunkError) -> StoreError {
        let store = match self {
            Store::Sqlite(s) => s.path.display().to_string(),
            Store::Postgres(s) => s.settings().label().to_string(),
        };
        StoreError {
            store,
            fault: Fault::Chunk(e.to_string()),
        }
    }
}

/// Adds a row to the summary of its name.
fn summarise(names: &mut HashMap<String, NameSummary>, row: TrailRow) {
    let blocked = i64::from(row.decision == "blocked");
    match names.get_mut(&row.name) {
        Some(n) => {
            n.count += 1;
            n.blocked += blocked;
            n.first_ms = n.first_ms.min(row.at_ms);
            n.last_ms = n.last_ms.max(row.at_ms);
            n.security |= row.security;
            if n.categories.is_empty() {
                n.categories = row.categories;
            }
        }
        None => {
            let summary = NameSummary {
                name: row.name.clone(),
                count: 1,
                blocked,
                first_ms: row.at_ms,
                last_ms: row.at_ms,
                security: row.security,
                categories: row.categories,
            };
            names.insert(row.name, summary);
        }
    }
}

/// Which chunks of a device to read: ids within `span` (both ends in), with queries from
/// `since_ms` on, in id order or the reverse.
struct ChunkRead {
    device: DeviceId,
    span: (i64, i64),
    since_ms: i64,
    newest_first: bool,
}

impl ChunkRead {
    fn one(device: DeviceId, id: i64) -> ChunkRead {
        ChunkRead {
            device,
            span: (id, id),
            since_ms: i64::MIN,
            newest_first: false,
        }
    }

    fn sql(&self) -> String {
        let order = if self.newest_first { "DESC" } else { "" };
        format!(
            "SELECT id, device, skip, node, body FROM trail WHERE device = $1 AND id >= $2
             AND id <= $3 AND last_ms >= $4 ORDER BY id {order} LIMIT {CHUNKS_A_READ}"
        )
    }
}

/// What a trim deletes and which chunks lose their head.
#[derive(Default)]
struct Trim {
    /// Chunks deleted, with their live entries.
    delete: Vec<(i64, u64)>,
    /// (chunk, new skip, the time of its first live entry, entries this removes)
    heads: Vec<(i64, u32, i64, u64)>,
}

impl Trim {
    /// Trims `chunk` to skip its first `skip` entries (all of them: deletes it).
    fn head(&mut self, chunk: &StoredChunk, skip: u32, times: &[i64]) {
        let removed = u64::from(skip.saturating_sub(chunk.skip));
        match times.get(skip as usize) {
            _ if removed == 0 => {}
            Some(&first) => self.heads.push((chunk.id, skip, first, removed)),
            None => self.delete.push((chunk.id, removed)),
        }
    }

    async fn apply(self, store: &mut Store) -> Result<u64, StoreError> {
        if self.delete.is_empty() && self.heads.is_empty() {
            return Ok(0);
        }
        let gone = self.delete.iter().map(|d| d.1).sum::<u64>()
            + self.heads.iter().map(|h| h.3).sum::<u64>();
        let deleted: Vec<i64> = self.delete.iter().map(|d| d.0).collect();
        let heads: Vec<(i64, i64, i64)> = self
            .heads
            .iter()
            .map(|&(id, skip, first, _)| (id, i64::from(skip), first))
            .collect();
        match store {
            Store::Sqlite(s) => {
                let apply = || -> rusqlite::Result<()> {
                    let tx = s.conn.unchecked_transaction()?;
                    for id in &deleted {
                        tx.execute("DELETE FROM trail WHERE id = ?1", [id])?;
                    }
                    for (id, skip, first) in &heads {
                        tx.execute(
                            "UPDATE trail SET skip = ?2, first_ms = ?3 WHERE id = ?1",
                            params![id, skip, first],
                        )?;
                    }
                    tx.commit()
                };
                apply().map_err(|e| s.err(e))?;
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                s.run(timeout, move |c| {
                    async move {
                        c.client
                            .execute("DELETE FROM trail WHERE id = ANY($1)", &[&deleted])
                            .await?;
                        let (ids, skips, firsts): (Vec<i64>, Vec<i64>, Vec<i64>) =
                            heads.into_iter().fold(Default::default(), |mut v, h| {
                                v.0.push(h.0);
                                v.1.push(h.1);
                                v.2.push(h.2);
                                v
                            });
                        c.client
                            .execute(
                                "UPDATE trail SET skip = u.skip, first_ms = u.first
                                 FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[])
                                 AS u(id, skip, first) WHERE trail.id = u.id",
                                &[&ids, &skips, &firsts],
                            )
                            .await?;
                        Ok(())
                    }
                    .boxed()
                })
                .await?;
            }
        }
        Ok(gone)
    }
}

/// The engines' reads and deletes of chunks.
impl Store {
    async fn read_chunks(&mut self, read: &ChunkRead) -> Result<Vec<StoredChunk>, StoreError> {
        self.select_chunks(
            read.sql(),
            vec![
                read.device.0 as i64,
                read.span.0,
                read.span.1,
                read.since_ms,
            ],
        )
        .await
    }

    /// Chunks that straddle `before_ms` (the older ones are deleted first).
    async fn chunks_before(&mut self, before_ms: i64) -> Result<Vec<StoredChunk>, StoreError> {
        let sql = "SELECT id, device, skip, node, body FROM trail WHERE first_ms < $1";
        self.select_chunks(sql.to_string(), vec![before_ms]).await
    }

    async fn select_chunks(
        &mut self,
        sql: String,
        values: Vec<i64>,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let read = || -> rusqlite::Result<Vec<StoredChunk>> {
                    let mut stmt = s.conn.prepare_cached(&sql.replace('$', "?"))?;
                    let it = stmt.query_map(rusqlite::params_from_iter(&values), |r| {
                        Ok(StoredChunk {
                            id: r.get(0)?,
                            device: DeviceId(r.get::<_, i64>(1)? as u64),
                            skip: r.get(2)?,
                            node: r.get(3)?,
                            body: r.get(4)?,
                        })
                    })?;
                    it.collect()
                };
                read().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                s.run(timeout, move |c| {
                    async move {
                        let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                            .iter()
                            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                            .collect();
                        let rows = c.client.query(&sql, &values).await?;
                        rows.iter()
                            .map(|r| {
                                Ok(StoredChunk {
                                    id: r.try_get(0)?,
                                    device: DeviceId(r.try_get::<_, i64>(1)? as u64),
                                    skip: r.try_get::<_, i64>(2)? as u32,
                                    node: r.try_get(3)?,
                                    body: r.try_get(4)?,
                                })
                            })
                            .collect()
                    }
                    .boxed()
                })
                .await
            }
        }
    }

    /// Deletes the chunks whose every query is from before `before_ms`; returns the queries.
    async fn delete_old_chunks(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        self.delete_chunks("first_ms < $1 AND last_ms < $1", before_ms)
            .await
    }

    /// Deletes the chunks `condition` (on `$1`, `value`) picks; returns the queries they held.
    async fn delete_chunks(&mut self, condition: &str, value: i64) -> Result<u64, StoreError> {
        let count = format!("SELECT COALESCE(SUM(count - skip), 0) FROM trail WHERE {condition}");
        let delete = format!("DELETE FROM trail WHERE {condition}");
        match self {
            Store::Sqlite(s) => {
                let run = || -> rusqlite::Result<u64> {
                    let tx = s.conn.unchecked_transaction()?;
                    let gone: i64 =
                        tx.query_row(&count.replace('$', "?"), [value], |r| r.get(0))?;
                    tx.execute(&delete.replace('$', "?"), [value])?;
                    tx.commit()?;
                    Ok(gone as u64)
                };
                run().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                let sql = format!(
                    "WITH gone AS ({delete} RETURNING count - skip AS n)
                     SELECT COALESCE(SUM(n), 0)::BIGINT FROM gone"
                );
                s.run(timeout, move |c| {
                    async move {
                        let row = c.client.query_one(&sql, &[&value]).await?;
                        Ok(row.try_get::<_, i64>(0)? as u64)
                    }
                    .boxed()
                })
                .await
            }
        }
    }

    /// A device's chunks, newest first, with their live queries.
    async fn chunk_sizes(&mut self, device: DeviceId) -> Result<Vec<(i64, u64)>, StoreError> {
        let sql = "SELECT id, count - skip FROM trail WHERE device = $1 ORDER BY id DESC";
        let device = device.0 as i64;
        match self {
            Store::Sqlite(s) => {
                let read = || -> rusqlite::Result<Vec<(i64, u64)>> {
                    let mut stmt = s.conn.prepare_cached(&sql.replace('$', "?"))?;
                    let it =
                        stmt.query_map([device], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
                    it.collect()
                };
                read().map_err(|e| s.err(e))
            }
            Store::Postgres(s) => {
                let timeout = s.settings().timeout;
                s.run(timeout, move |c| {
                    async move {
                        let rows = c.client.query(sql, &[&device]).await?;
                        rows.iter()
                            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64)))
                            .collect()
                    }
                    .boxed()
                })
                .await
            }
        }
    }
}

fn sqlite_record(conn: &mut rusqlite::Connection, chunks: &[Chunk]) -> Result<(), Fault> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO trail (device, node, first_ms, last_ms, count, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for c in chunks {
            insert.execute(params![
                c.device.0 as i64,
                c.node,
                c.first_ms,
                c.last_ms,
                c.count,
                c.body
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// One statement for a whole batch: a column array each.
async fn pg_record(client: &tokio_postgres::Client, chunks: Vec<Chunk>) -> Result<(), Fault> {
    let devices: Vec<i64> = chunks.iter().map(|c| c.device.0 as i64).collect();
    let nodes: Vec<&str> = chunks.iter().map(|c| c.node.as_str()).collect();
    let firsts: Vec<i64> = chunks.iter().map(|c| c.first_ms).collect();
    let lasts: Vec<i64> = chunks.iter().map(|c| c.last_ms).collect();
    let counts: Vec<i64> = chunks.iter().map(|c| i64::from(c.count)).collect();
    let bodies: Vec<&[u8]> = chunks.iter().map(|c| c.body.as_slice()).collect();
    client
        .execute(
            "INSERT INTO trail (device, node, first_ms, last_ms, count, body)
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[],
             $5::BIGINT[], $6::BYTEA[])",
            &[&devices, &nodes, &firsts, &lasts, &counts, &bodies],
        )
        .await?;
    Ok(())
}
